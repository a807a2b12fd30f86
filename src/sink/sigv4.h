/*
 * AWS Signature Version 4 (header form) and AWS credentials: what the sqs
 * sink needs to talk to AWS, and what the SQS test server needs to check it.
 *
 * Signing is pure: request parts, credentials and a timestamp in, the
 * Authorization header out; no I/O, no clock. Credentials come from the
 * shared credentials file format (INI: [profile] sections with
 * aws_access_key_id, aws_secret_access_key, aws_session_token).
 *
 * Threads: every function is reentrant.
 */
#ifndef SIPHON_SINK_SIGV4_H
#define SIPHON_SINK_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>
#include <time.h>

#include "core/err.h"
#include "util/buf.h"
#include "util/file.h"

#define SP_SHA256_LEN     32
#define SP_SHA256_HEX_LEN 64 /* without the NUL */

/* Lower-case hex SHA-256 of n bytes at p into out (SP_SHA256_HEX_LEN + 1 bytes). */
void sp_sha256_hex(const void *p, size_t n, char *out);
/* HMAC-SHA256 of msg under key into out (SP_SHA256_LEN bytes). */
void sp_hmac_sha256(const void *key, size_t klen, const void *msg, size_t n, uint8_t *out);

/* The signing key: HMAC chain "AWS4" + secret, date (YYYYMMDD), region, service, "aws4_request". */
void sp_sigv4_signing_key(const char *secret, const char *date, const char *region,
                          const char *service, uint8_t *out);

/* "20150830T123600Z" for t (UTC) into out (at least 17 bytes). */
void sp_sigv4_amz_date(time_t t, char *out);

struct sp_sigv4_header {
    const char *name; /* any case */
    const char *value;
};

/* One request, as it will be (or was) sent. */
struct sp_sigv4_req {
    const char *method;                    /* "POST" */
    const char *path;                      /* the URI path as sent, e.g. "/" ("" means "/") */
    const char *query;                     /* the raw query string without '?', or NULL */
    const struct sp_sigv4_header *headers; /* the headers to sign, Host and X-Amz-Date included */
    size_t nheaders;
    const char *payload_hash; /* hex SHA-256 of the body */
};

/*
 * The canonical query string of a raw query: each name and value decoded
 * and encoded again (RFC 3986 unreserved characters stay, everything else
 * %XX), sorted by name, then value. Appended to out.
 */
void sp_sigv4_canonical_query(const char *raw, struct sp_buf *out);

/*
 * The canonical request of rq into out (reset), and the signed header
 * list ("host;x-amz-date") into signed_headers (reset). Header names are
 * lower-cased and sorted, values trimmed with inner runs of spaces
 * collapsed; repeated names are joined with ','.
 */
void sp_sigv4_canonical_request(const struct sp_sigv4_req *rq, struct sp_buf *out,
                                struct sp_buf *signed_headers);

/* The string to sign for a canonical request (reset into out). */
void sp_sigv4_string_to_sign(const char *amz_date, const char *region, const char *service,
                             const char *creq, size_t creq_len, struct sp_buf *out);

/*
 * The hex signature (SP_SHA256_HEX_LEN + 1 bytes into sig) and the signed
 * header list (reset into signed_headers) of rq, signed at amz_date
 * ("YYYYMMDDTHHMMSSZ") with secret for region and service.
 */
void sp_sigv4_signature(const char *secret, const char *amz_date, const char *region,
                        const char *service, const struct sp_sigv4_req *rq, char *sig,
                        struct sp_buf *signed_headers);

/*
 * The Authorization header value (reset into out):
 * "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request,
 * SignedHeaders=host;x-amz-date, Signature=...". rq must already hold the
 * X-Amz-Date (and, with temporary credentials, X-Amz-Security-Token) header.
 */
void sp_sigv4_authorization(const char *access_key_id, const char *secret, const char *amz_date,
                            const char *region, const char *service, const struct sp_sigv4_req *rq,
                            struct sp_buf *out);

/* ---- credentials ---- */

struct sp_aws_creds {
    char *access_key_id;
    char *secret_access_key;
    char *session_token; /* NULL for long-term keys */
};

void sp_aws_creds_fini(struct sp_aws_creds *c);

/*
 * Reads profile from the text of a shared credentials file (len bytes;
 * origin names it in errors). Sections are "[name]" (or "[profile name]",
 * as in the config file); keys are case-insensitive, "#" and ";" start
 * comments. On success fills out (which the caller finis) and returns 0;
 * SP_EINVAL when the profile is missing or lacks a key (the error names the
 * file and the profile, never a secret).
 */
int sp_aws_creds_parse(const char *text, size_t len, const char *profile, const char *origin,
                       struct sp_aws_creds *out, struct sp_err *err);

/*
 * Where the credentials come from, decided once: file (a credentials file
 * the configuration names) with profile (else AWS_PROFILE, else
 * "default"); else the environment's AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; else the file
 * AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials names.
 */
struct sp_aws_creds_src {
    char *file; /* NULL: the environment */
    char *profile;
    char *origin;              /* for messages: "the environment", "<file>, profile \"<p>\"" */
    struct sp_aws_creds creds; /* current, once loaded */
    bool loaded;
    struct sp_file_stamp stamp; /* of the file as last read */
};

/* An AWS_* environment variable's value, or NULL when it is unset or empty. */
const char *sp_aws_env(const char *name);

/* Decides the source; SP_EINVAL when there is none. file and profile may be NULL. */
int sp_aws_creds_src_init(struct sp_aws_creds_src *cs, const char *file, const char *profile,
                          struct sp_err *err);
/*
 * Makes cs->creds current: from the environment once, or from the file
 * when it changed since it was last read (another inode, mtime or size),
 * or always when force. Returns 0, 1 when other keys than before were read
 * from the file, or a negative code with err (the previous keys stay).
 */
int sp_aws_creds_src_load(struct sp_aws_creds_src *cs, bool force, struct sp_err *err);
void sp_aws_creds_src_fini(struct sp_aws_creds_src *cs);

#endif
