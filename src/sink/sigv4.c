// SPDX-License-Identifier: Apache-2.0
/*
 * AWS Signature Version 4 in the Authorization header, as the AWS
 * documentation ("Create a signed AWS API request") describes it:
 * canonical request, string to sign, signing key, signature. SHA-256 and
 * HMAC come from OpenSSL's libcrypto. Also the shared credentials file
 * reader (INI).
 *
 * What it does not do: presigned URLs (query-string signing), chunked
 * (streaming) payload signing, SigV4a, or S3's single encoding of paths:
 * paths are encoded a second time, as every service but S3 expects.
 */
#include "sink/sigv4.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char sv_hex[] = "0123456789abcdef";

static void sv_hex_encode(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = sv_hex[p[i] >> 4];
        out[2 * i + 1] = sv_hex[p[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

void sp_sha256_hex(const void *p, size_t n, char *out)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(p, n, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != SP_SHA256_LEN) {
        /* Only an allocation failure inside libcrypto gets here. */
        fprintf(stderr, "siphon: SHA-256 from libcrypto failed\n");
        abort();
    }
    sv_hex_encode(md, SP_SHA256_LEN, out);
}

void sp_hmac_sha256(const void *key, size_t klen, const void *msg, size_t n, uint8_t *out)
{
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), key, (int)klen, msg, n, out, &len) == NULL || len != SP_SHA256_LEN) {
        fprintf(stderr, "siphon: HMAC-SHA256 from libcrypto failed\n");
        abort();
    }
}

void sp_sigv4_signing_key(const char *secret, const char *date, const char *region,
                          const char *service, uint8_t *out)
{
    size_t slen = strlen(secret);
    char *k = sp_xasprintf("AWS4%s", secret);
    uint8_t a[SP_SHA256_LEN];
    uint8_t b[SP_SHA256_LEN];
    sp_hmac_sha256(k, slen + 4, date, strlen(date), a);
    sp_hmac_sha256(a, sizeof(a), region, strlen(region), b);
    sp_hmac_sha256(b, sizeof(b), service, strlen(service), a);
    sp_hmac_sha256(a, sizeof(a), "aws4_request", 12, out);
    /* The secret and the keys derived from it do not outlive the call. */
    OPENSSL_cleanse(k, slen + 4);
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    free(k);
}

void sp_sigv4_amz_date(time_t t, char *out)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* ---- canonical forms ---- */

static bool sv_unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

static void sv_encode(struct sp_buf *out, const char *s, size_t n, bool keep_slash)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (sv_unreserved(c) || (keep_slash && c == '/')) {
            sp_buf_putc(out, (char)c);
        } else {
            char e[4] = {'%', "0123456789ABCDEF"[c >> 4], "0123456789ABCDEF"[c & 0x0f], '\0'};
            sp_buf_append(out, e, 3);
        }
    }
}

static int sv_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes n bytes at s into out (reset); a '%' not followed by two hex digits stays. */
static void sv_decode(struct sp_buf *out, const char *s, size_t n)
{
    sp_buf_reset(out);
    for (size_t i = 0; i < n; i++) {
        int hi;
        int lo;
        if (s[i] == '%' && i + 2 < n && (hi = sv_hexval(s[i + 1])) >= 0 &&
            (lo = sv_hexval(s[i + 2])) >= 0) {
            sp_buf_putc(out, (char)(hi * 16 + lo));
            i += 2;
        } else {
            sp_buf_putc(out, s[i]);
        }
    }
}

struct sv_pair {
    char *name;
    char *value;
};

static int sv_pair_cmp(const void *a, const void *b)
{
    const struct sv_pair *x = a;
    const struct sv_pair *y = b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : strcmp(x->value, y->value);
}

void sp_sigv4_canonical_query(const char *raw, struct sp_buf *out)
{
    if (raw == NULL || raw[0] == '\0') {
        return;
    }
    size_t cap = 1;
    for (const char *p = raw; *p != '\0'; p++) {
        cap += *p == '&';
    }
    struct sv_pair *pairs = sp_xcalloc(cap, sizeof(*pairs));
    size_t n = 0;
    struct sp_buf dec;
    struct sp_buf enc;
    sp_buf_init(&dec);
    sp_buf_init(&enc);
    const char *p = raw;
    while (*p != '\0') {
        size_t len = strcspn(p, "&");
        if (len > 0) {
            const char *eq = memchr(p, '=', len);
            size_t nlen = eq != NULL ? (size_t)(eq - p) : len;
            sv_decode(&dec, p, nlen);
            sp_buf_reset(&enc);
            sv_encode(&enc, dec.data, dec.len, false);
            pairs[n].name = sp_xstrdup(enc.data);
            sp_buf_reset(&enc);
            if (eq != NULL) {
                sv_decode(&dec, eq + 1, len - nlen - 1);
                sv_encode(&enc, dec.data, dec.len, false);
            }
            pairs[n].value = sp_xstrdup(enc.data != NULL ? enc.data : "");
            n++;
        }
        p += len;
        if (*p == '&') {
            p++;
        }
    }
    qsort(pairs, n, sizeof(*pairs), sv_pair_cmp);
    for (size_t i = 0; i < n; i++) {
        sp_buf_printf(out, "%s%s=%s", i > 0 ? "&" : "", pairs[i].name, pairs[i].value);
        free(pairs[i].name);
        free(pairs[i].value);
    }
    free(pairs);
    sp_buf_fini(&dec);
    sp_buf_fini(&enc);
}

struct sv_hdr {
    char *name; /* lower case */
    const char *value;
    size_t idx; /* original position: repeated names keep their order */
};

static int sv_hdr_cmp(const void *a, const void *b)
{
    const struct sv_hdr *x = a;
    const struct sv_hdr *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0) {
        return c;
    }
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The value trimmed, runs of spaces and tabs inside collapsed to one space. */
static void sv_put_trimmed(struct sp_buf *out, const char *v)
{
    while (*v == ' ' || *v == '\t') {
        v++;
    }
    bool space = false;
    for (; *v != '\0'; v++) {
        if (*v == ' ' || *v == '\t') {
            space = true;
            continue;
        }
        if (space) {
            sp_buf_putc(out, ' ');
            space = false;
        }
        sp_buf_putc(out, *v);
    }
}

static char *sv_lower(const char *s)
{
    char *r = sp_xstrdup(s);
    for (char *c = r; *c != '\0'; c++) {
        *c = (char)tolower((unsigned char)*c);
    }
    return r;
}

/* The canonical header lines (without the last newline) into out, their names into signed. */
static void sv_canonical_headers(const struct sp_sigv4_req *rq, struct sp_buf *out,
                                 struct sp_buf *signed_headers)
{
    struct sv_hdr *h = sp_xcalloc(rq->nheaders ? rq->nheaders : 1, sizeof(*h));
    for (size_t i = 0; i < rq->nheaders; i++) {
        h[i].name = sv_lower(rq->headers[i].name);
        h[i].value = rq->headers[i].value != NULL ? rq->headers[i].value : "";
        h[i].idx = i;
    }
    qsort(h, rq->nheaders, sizeof(*h), sv_hdr_cmp);
    for (size_t i = 0; i < rq->nheaders; i++) {
        bool repeat = i > 0 && strcmp(h[i].name, h[i - 1].name) == 0;
        if (repeat) {
            sp_buf_putc(out, ',');
        } else {
            if (i > 0) {
                sp_buf_putc(out, '\n');
                sp_buf_putc(signed_headers, ';');
            }
            sp_buf_puts(out, h[i].name);
            sp_buf_putc(out, ':');
            sp_buf_puts(signed_headers, h[i].name);
        }
        sv_put_trimmed(out, h[i].value);
    }
    for (size_t i = 0; i < rq->nheaders; i++) {
        free(h[i].name);
    }
    free(h);
}

void sp_sigv4_canonical_request(const struct sp_sigv4_req *rq, struct sp_buf *out,
                                struct sp_buf *signed_headers)
{
    sp_buf_reset(out);
    sp_buf_reset(signed_headers);
    sp_buf_puts(out, rq->method);
    sp_buf_putc(out, '\n');
    const char *path = rq->path != NULL && rq->path[0] != '\0' ? rq->path : "/";
    sv_encode(out, path, strlen(path), true);
    sp_buf_putc(out, '\n');
    sp_sigv4_canonical_query(rq->query, out);
    sp_buf_putc(out, '\n');
    sv_canonical_headers(rq, out, signed_headers);
    sp_buf_puts(out, "\n\n");
    sp_buf_append(out, signed_headers->data != NULL ? signed_headers->data : "",
                  signed_headers->len);
    sp_buf_putc(out, '\n');
    sp_buf_puts(out, rq->payload_hash);
}

void sp_sigv4_string_to_sign(const char *amz_date, const char *region, const char *service,
                             const char *creq, size_t creq_len, struct sp_buf *out)
{
    char hash[SP_SHA256_HEX_LEN + 1];
    sp_sha256_hex(creq, creq_len, hash);
    sp_buf_reset(out);
    sp_buf_printf(out, "AWS4-HMAC-SHA256\n%s\n%.8s/%s/%s/aws4_request\n%s", amz_date, amz_date,
                  region, service, hash);
}

void sp_sigv4_signature(const char *secret, const char *amz_date, const char *region,
                        const char *service, const struct sp_sigv4_req *rq, char *sig,
                        struct sp_buf *signed_headers)
{
    struct sp_buf creq;
    struct sp_buf sts;
    sp_buf_init(&creq);
    sp_buf_init(&sts);
    sp_sigv4_canonical_request(rq, &creq, signed_headers);
    sp_sigv4_string_to_sign(amz_date, region, service, creq.data, creq.len, &sts);
    char date[9];
    snprintf(date, sizeof(date), "%.8s", amz_date);
    uint8_t key[SP_SHA256_LEN];
    uint8_t mac[SP_SHA256_LEN];
    sp_sigv4_signing_key(secret, date, region, service, key);
    sp_hmac_sha256(key, sizeof(key), sts.data, sts.len, mac);
    OPENSSL_cleanse(key, sizeof(key));
    sv_hex_encode(mac, sizeof(mac), sig);
    sp_buf_fini(&creq);
    sp_buf_fini(&sts);
}

void sp_sigv4_authorization(const char *access_key_id, const char *secret, const char *amz_date,
                            const char *region, const char *service, const struct sp_sigv4_req *rq,
                            struct sp_buf *out)
{
    char sig[SP_SHA256_HEX_LEN + 1];
    struct sp_buf sh;
    sp_buf_init(&sh);
    sp_sigv4_signature(secret, amz_date, region, service, rq, sig, &sh);
    sp_buf_reset(out);
    sp_buf_printf(out,
                  "AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=%s, "
                  "Signature=%s",
                  access_key_id, amz_date, region, service, sh.data != NULL ? sh.data : "", sig);
    sp_buf_fini(&sh);
}

/* ---- credentials ---- */

void sp_aws_creds_fini(struct sp_aws_creds *c)
{
    if (c->secret_access_key != NULL) {
        OPENSSL_cleanse(c->secret_access_key, strlen(c->secret_access_key));
    }
    free(c->access_key_id);
    free(c->secret_access_key);
    free(c->session_token);
    c->access_key_id = c->secret_access_key = c->session_token = NULL;
}

/* s..e trimmed of spaces and tabs, as a new string. */
static char *sv_strip(const char *s, const char *e)
{
    while (s < e && (*s == ' ' || *s == '\t')) {
        s++;
    }
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) {
        e--;
    }
    return sp_xstrndup(s, (size_t)(e - s));
}

int sp_aws_creds_parse(const char *text, size_t len, const char *profile, const char *origin,
                       struct sp_aws_creds *out, struct sp_err *err)
{
    struct sp_aws_creds c = {NULL, NULL, NULL};
    bool in = false;
    bool found = false;
    const char *p = text;
    const char *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl != NULL ? nl : end;
        char *line = sv_strip(p, le);
        p = nl != NULL ? nl + 1 : end;
        if (line[0] == '\0' || line[0] == '#' || line[0] == ';') {
            free(line);
            continue;
        }
        if (line[0] == '[') {
            char *close = strchr(line, ']');
            char *name = sv_strip(line + 1, close != NULL ? close : line + strlen(line));
            const char *n = name;
            if (strncmp(n, "profile ", 8) == 0 && strcmp(profile, "default") != 0) {
                n += 8;
                while (*n == ' ') {
                    n++;
                }
            }
            in = strcmp(n, profile) == 0;
            found = found || in;
            free(name);
            free(line);
            continue;
        }
        char *eq = strchr(line, '=');
        if (in && eq != NULL) {
            char *key = sv_strip(line, eq);
            char *val = sv_strip(eq + 1, line + strlen(line));
            char **slot = NULL;
            if (strcasecmp(key, "aws_access_key_id") == 0) {
                slot = &c.access_key_id;
            } else if (strcasecmp(key, "aws_secret_access_key") == 0) {
                slot = &c.secret_access_key;
            } else if (strcasecmp(key, "aws_session_token") == 0) {
                slot = &c.session_token;
            }
            if (slot != NULL && val[0] != '\0') {
                free(*slot);
                *slot = val;
                val = NULL;
            }
            free(key);
            if (val != NULL) {
                OPENSSL_cleanse(val, strlen(val));
                free(val);
            }
        }
        OPENSSL_cleanse(line, strlen(line));
        free(line);
    }
    if (!found) {
        sp_aws_creds_fini(&c);
        sp_err_set(err, SP_EINVAL, "%s has no profile \"%s\"", origin, profile);
        sp_err_hint(err, "add a [%s] section, or set profile to one of its sections", profile);
        return SP_EINVAL;
    }
    if (c.access_key_id == NULL || c.secret_access_key == NULL) {
        const char *missing =
            c.access_key_id == NULL ? "aws_access_key_id" : "aws_secret_access_key";
        sp_aws_creds_fini(&c);
        sp_err_set(err, SP_EINVAL, "profile \"%s\" in %s has no %s", profile, origin, missing);
        return SP_EINVAL;
    }
    *out = c;
    return 0;
}

/* ---- where the credentials come from ---- */

#define SV_CREDS_MAX ((size_t)1024 * 1024)

const char *sp_aws_env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

int sp_aws_creds_src_init(struct sp_aws_creds_src *cs, const char *file, const char *profile,
                          struct sp_err *err)
{
    memset(cs, 0, sizeof(*cs));
    if (file == NULL && sp_aws_env("AWS_ACCESS_KEY_ID") == NULL) {
        file = sp_aws_env("AWS_SHARED_CREDENTIALS_FILE");
        if (file == NULL && sp_aws_env("HOME") != NULL) {
            char *def = sp_xasprintf("%s/.aws/credentials", sp_aws_env("HOME"));
            if (access(def, F_OK) == 0) {
                cs->file = def;
            } else {
                free(def);
            }
        }
        if (file == NULL && cs->file == NULL) {
            sp_err_set(err, SP_EINVAL, "no AWS credentials");
            sp_err_hint(err, "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the "
                             "environment, or credentials_file in the sink");
            return SP_EINVAL;
        }
    }
    if (file != NULL) {
        cs->file = sp_xstrdup(file);
    }
    if (cs->file != NULL) {
        if (profile == NULL) {
            profile = sp_aws_env("AWS_PROFILE");
        }
        cs->profile = sp_xstrdup(profile != NULL ? profile : "default");
        cs->origin = sp_xasprintf("%s, profile \"%s\"", cs->file, cs->profile);
    } else {
        cs->origin = sp_xstrdup("the environment");
    }
    return 0;
}

void sp_aws_creds_src_fini(struct sp_aws_creds_src *cs)
{
    sp_aws_creds_fini(&cs->creds);
    free(cs->file);
    free(cs->profile);
    free(cs->origin);
    memset(cs, 0, sizeof(*cs));
}

static int sv_creds_from_env(struct sp_aws_creds_src *cs, struct sp_err *err)
{
    const char *id = sp_aws_env("AWS_ACCESS_KEY_ID");
    const char *secret = sp_aws_env("AWS_SECRET_ACCESS_KEY");
    if (id == NULL || secret == NULL) {
        sp_err_set(err, SP_EINVAL, "environment variable %s is not set",
                   id == NULL ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY");
        sp_err_hint(err, "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                         "credentials_file in the sink");
        return SP_EINVAL;
    }
    if (!cs->loaded) {
        const char *token = sp_aws_env("AWS_SESSION_TOKEN");
        cs->creds.access_key_id = sp_xstrdup(id);
        cs->creds.secret_access_key = sp_xstrdup(secret);
        cs->creds.session_token = token != NULL ? sp_xstrdup(token) : NULL;
        cs->loaded = true;
    }
    return 0;
}

int sp_aws_creds_src_load(struct sp_aws_creds_src *cs, bool force, struct sp_err *err)
{
    if (cs->file == NULL) {
        return sv_creds_from_env(cs, err);
    }
    char *buf = NULL;
    size_t len = 0;
    struct sp_file_stamp now;
    int rc = sp_file_read_changed(cs->file, "credentials file", &cs->stamp, force, SV_CREDS_MAX,
                                  &buf, &len, &now, err);
    if (rc <= 0) {
        return rc;
    }
    struct sp_aws_creds c;
    rc = sp_aws_creds_parse(buf, len, cs->profile, cs->file, &c, err);
    OPENSSL_cleanse(buf, len);
    free(buf);
    if (rc != 0) {
        return rc;
    }
    bool changed = cs->loaded && (strcmp(c.access_key_id, cs->creds.access_key_id) != 0 ||
                                  strcmp(c.secret_access_key, cs->creds.secret_access_key) != 0);
    sp_aws_creds_fini(&cs->creds);
    cs->creds = c;
    cs->loaded = true;
    cs->stamp = now;
    return changed ? 1 : 0;
}
