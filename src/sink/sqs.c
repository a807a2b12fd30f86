// SPDX-License-Identifier: Apache-2.0
/*
 * Sink "sqs": sends events to an Amazon SQS queue (docs/sink-sqs.md) with
 * SendMessageBatch over the AWS JSON 1.0 protocol (POST /, X-Amz-Target:
 * AmazonSQS.SendMessageBatch), signed with Signature Version 4
 * (sink/sigv4.c), on libcurl.
 *
 * A batch from the runtime (one partition lane, in order) goes out in
 * requests of at most max_batch_entries messages and max_batch_bytes
 * bytes, one request at a time, so the lane's events reach SQS in order;
 * lanes send in parallel (curl multi). On a FIFO queue the message group
 * is the event's key and the deduplication id a hash of the source and the
 * event id, so a copy sent again (a retry, or a replay after a crash) within
 * SQS's five-minute window is stored once. Once a record is given back,
 * no later record of its key is sent in this batch (they go back with it);
 * and on a FIFO queue a request never holds two messages of one group, so
 * when one fails none of its later messages has been stored: each group
 * keeps commit order.
 *
 * Outcomes:
 *   entry Successful               delivered;
 *   entry Failed, SenderFault true rejected for good (rec->err: the stream's
 *                                  recovery policy), with SQS's code and message;
 *   entry Failed, SenderFault false given back (a retriable rec->err, with
 *                                  every later record of its key): the runtime
 *                                  sends them again after a backoff;
 *   HTTP 5xx, throttling, network errors, timeouts, authentication and
 *                                  authorization errors, a missing queue:
 *                                  the request's records and the rest of the
 *                                  batch are given back (the whole batch, when
 *                                  nothing of it was settled yet);
 *   other HTTP 4xx                 the request is split into one message per
 *                                  request; a single message refused so is
 *                                  rejected for good.
 * Retries happen in the runtime (core/delivery.c), which holds only the keys
 * of the given-back records.
 *
 * Threads: open, check and close on the pipeline thread; submit, poll and
 * flush on the delivery thread, which owns every curl handle and all state.
 *
 * What it does not do: create queues, send to a queue named per event (a
 * flow's destination is ignored), fetch credentials from instance metadata
 * or web identity tokens, or check MD5OfMessageBody (TLS protects the body).
 */
#include <stdarg.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/plugin.h"
#include "core/sinkconf.h"
#include "sink/http.h"
#include "sink/sigv4.h"
#include "util/json.h"
#include "util/lsn.h"
#include "util/time.h"

#define SQS_IDLE_POLL_MS  5 /* poll's wait when nothing is in flight */
#define SQS_DETAIL_MAX    300
#define SQS_ID_MAX        128 /* MessageGroupId, MessageDeduplicationId */
#define SQS_ENTRIES_LIMIT 10  /* SendMessageBatch's limit */

enum sqs_fifo { SQS_FIFO_AUTO = 0, SQS_FIFO_TRUE, SQS_FIFO_FALSE };
static const char *const sqs_fifo_names[] = {"auto", "true", "false", NULL};

struct sqs_conf {
    struct sp_sink_batching batching;
    char *queue;
    char *queue_url;
    char *region;
    char *endpoint;
    char *credentials_file;
    char *profile;
    int fifo;
    bool message_attributes;
    int64_t max_batch_entries;
    int64_t max_batch_bytes;
    int64_t max_message_bytes;
    bool tls_verify;
    char *ca_file;
    int64_t connect_timeout_ms;
    int64_t request_timeout_ms;
};

static const struct sp_opt sqs_opts[] = {
    SP_SINK_BATCH_OPTS(struct sqs_conf, "8", "key"),
    SP_OPT_STR("queue", struct sqs_conf, queue, NULL, 0,
               "queue name, e.g. orders.fifo; its URL is looked up (GetQueueUrl) at start. Set "
               "queue or queue_url"),
    SP_OPT_STR("queue_url", struct sqs_conf, queue_url, NULL, 0,
               "queue URL, e.g. https://sqs.eu-central-1.amazonaws.com/123456789012/orders.fifo "
               "(instead of queue)"),
    SP_OPT_STR("region", struct sqs_conf, region, NULL, 0,
               "AWS region, e.g. eu-central-1; default: the environment's AWS_REGION, then "
               "AWS_DEFAULT_REGION"),
    SP_OPT_STR("endpoint", struct sqs_conf, endpoint, NULL, 0,
               "SQS endpoint URL; default: the environment's AWS_ENDPOINT_URL_SQS, then "
               "AWS_ENDPOINT_URL, then https://sqs.<region>.amazonaws.com"),
    SP_OPT_STR("credentials_file", struct sqs_conf, credentials_file, NULL, 0,
               "AWS shared credentials file (INI), read again whenever it changes; default: the "
               "environment's AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, "
               "else AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials"),
    SP_OPT_STR("profile", struct sqs_conf, profile, NULL, 0,
               "profile of the credentials file; default: the environment's AWS_PROFILE, then "
               "default"),
    SP_OPT_ENUM("fifo", struct sqs_conf, fifo, "auto", sqs_fifo_names,
                "auto (a FIFO queue when its name ends in .fifo), true or false"),
    SP_OPT_BOOL("message_attributes", struct sqs_conf, message_attributes, "true",
                "send op, table, lsn and event_id as String message attributes"),
    SP_OPT_INT("max_batch_entries", struct sqs_conf, max_batch_entries, "10", 1, SQS_ENTRIES_LIMIT,
               "most messages in one SendMessageBatch request"),
    SP_OPT_SIZE("max_batch_bytes", struct sqs_conf, max_batch_bytes, "256KiB", 1024,
                INT64_C(1) << 20,
                "most message bytes (bodies and attributes) in one SendMessageBatch request"),
    SP_OPT_SIZE("max_message_bytes", struct sqs_conf, max_message_bytes, "256KiB", 1024,
                INT64_C(1) << 20,
                "larger messages (body and attributes) are rejected without being sent: the "
                "queue's maximum message size"),
    SP_OPT_BOOL("tls_verify", struct sqs_conf, tls_verify, "true",
                "verify the server's certificate and host name; false is logged as a warning"),
    SP_OPT_STR("ca_file", struct sqs_conf, ca_file, NULL, 0,
               "PEM file of the certificate authorities to trust instead of the system's"),
    SP_OPT_DURATION("connect_timeout", struct sqs_conf, connect_timeout_ms, "5s", 1, 600000,
                    "how long to wait for a connection (and TLS handshake)"),
    SP_OPT_DURATION("request_timeout", struct sqs_conf, request_timeout_ms, "30s", 1, 3600000,
                    "how long one request may take before it is abandoned and its messages "
                    "sent again"),
    SP_OPT_END,
};

/* ---- state ---- */

struct sqs_item {
    struct sp_rec *r;
    char *group; /* FIFO: MessageGroupId */
    char dedup[SP_SHA256_HEX_LEN + 1];
    size_t size; /* as SQS counts it: body and attributes */
    bool done;   /* delivered, rejected or given back */
};

/* An HTTP exchange: the answer and the headers siphon reads. */
struct sqs_http {
    struct sp_buf resp;
    char
        query_error[160]; /* x-amzn-query-error: "AWS.SimpleQueueService.NonExistentQueue;Sender" */
};

/* One batch of the runtime on its way. */
struct sqs_job {
    struct sp_batch *b;
    struct sqs_item *items;
    size_t nitems;
    size_t pos;   /* items before it are done or in the request in flight */
    size_t *sent; /* indexes of the items in the request in flight */
    size_t nsent;
    size_t cap;     /* most entries per request (1 after a refused request) */
    size_t settled; /* delivered or rejected */
    uint32_t *held; /* FIFO: key hashes with a record given back */
    size_t nheld;
    CURL *easy;
    struct curl_slist *hdrs;
    struct sp_buf body;
    struct sqs_http http;
    struct sqs_job *next;
};

struct sqs_state {
    const struct sqs_conf *conf;
    struct sp_logctx *log;
    const char *sink_name;
    char *region;
    char *endpoint;  /* as requests are sent */
    char *authority; /* the Host header */
    char *path;      /* the endpoint's path, "/" */
    char *queue_name;
    char *queue_url;
    char *queue_owner; /* account id from queue_url, or NULL */
    bool fifo;
    struct sp_aws_creds_src cs;
    bool creds_force; /* read the file again before the next request */
    CURLM *multi;
    struct sqs_job *jobs;
    int inflight;
    bool warned_dest;
    struct sp_buf tmp;
};

static void sqs_job_free(struct sqs_job *job)
{
    for (size_t i = 0; i < job->nitems; i++) {
        free(job->items[i].group);
    }
    free(job->items);
    free(job->sent);
    free(job->held);
    curl_slist_free_all(job->hdrs);
    sp_buf_fini(&job->body);
    sp_buf_fini(&job->http.resp);
    free(job);
}

static void sqs_state_free(struct sqs_state *st)
{
    if (st == NULL) {
        return;
    }
    while (st->jobs != NULL) {
        struct sqs_job *job = st->jobs;
        st->jobs = job->next;
        if (job->easy != NULL) {
            curl_multi_remove_handle(st->multi, job->easy);
            curl_easy_cleanup(job->easy);
        }
        sqs_job_free(job);
    }
    if (st->multi != NULL) {
        curl_multi_cleanup(st->multi);
    }
    sp_aws_creds_src_fini(&st->cs);
    free(st->region);
    free(st->endpoint);
    free(st->authority);
    free(st->path);
    free(st->queue_name);
    free(st->queue_url);
    free(st->queue_owner);
    sp_buf_fini(&st->tmp);
    free(st);
}

/* ---- configuration ---- */

/* Splits an http(s) URL into authority (without a default port) and path ("/" if none). */
static int sqs_parse_url(const char *what, const char *url, char **authority, char **path,
                         struct sp_err *err)
{
    size_t skip = 0;
    const char *default_port = NULL;
    if (strncmp(url, "https://", 8) == 0) {
        skip = 8;
        default_port = ":443";
    } else if (strncmp(url, "http://", 7) == 0) {
        skip = 7;
        default_port = ":80";
    } else {
        sp_err_set(err, SP_EINVAL, "%s \"%s\": expected http://host[:port] or https://...", what,
                   url);
        return SP_EINVAL;
    }
    const char *host = url + skip;
    size_t alen = strcspn(host, "/?#");
    if (alen == 0) {
        return sp_err_set(err, SP_EINVAL, "%s \"%s\" has no host", what, url);
    }
    size_t dlen = strlen(default_port);
    if (alen > dlen && memcmp(host + alen - dlen, default_port, dlen) == 0) {
        alen -= dlen;
    }
    *authority = sp_xstrndup(host, alen);
    const char *p = host + strcspn(host, "/?#");
    size_t plen = strcspn(p, "?#");
    *path = plen > 0 ? sp_xstrndup(p, plen) : sp_xstrdup("/");
    return 0;
}

/* The queue name and, for AWS URLs (/<account>/<name>), the owner account of a queue URL. */
static void sqs_name_from_url(struct sqs_state *st, const char *url)
{
    const char *p = strstr(url, "://");
    p = p != NULL ? p + 3 : url;
    p += strcspn(p, "/");
    /* Segments: /<account>/<name> (AWS) or anything ending in the name. */
    const char *last = strrchr(p, '/');
    const char *name = last != NULL ? last + 1 : p;
    st->queue_name = sp_xstrdup(name);
    if (last != NULL && last > p) {
        const char *prev = last - 1;
        while (prev > p && *prev != '/') {
            prev--;
        }
        size_t n = (size_t)(last - prev - 1);
        if (n > 0 && strspn(prev + 1, "0123456789") == n) {
            st->queue_owner = sp_xstrndup(prev + 1, n);
        }
    }
}

static int sqs_state_new(struct sp_sink *sk, struct sqs_state **out, struct sp_err *err)
{
    const struct sqs_conf *conf = sk->conf;
    *out = NULL;
    if ((conf->queue == NULL) == (conf->queue_url == NULL)) {
        sp_err_set(err, SP_EINVAL, "%s",
                   conf->queue == NULL ? "neither queue nor queue_url is set"
                                       : "queue and queue_url are both set");
        sp_err_hint(err, "set queue (the name) or queue_url");
        return SP_EINVAL;
    }
    if (sp_http_init(err) != 0) {
        return SP_EIO;
    }
    struct sqs_state *st = sp_xcalloc(1, sizeof(*st));
    st->conf = conf;
    st->log = &sk->log;
    st->sink_name = sk->name;
    sp_buf_init(&st->tmp);
    int rc = 0;
    const char *region = conf->region;
    if (region == NULL) {
        region = sp_aws_env("AWS_REGION");
    }
    if (region == NULL) {
        region = sp_aws_env("AWS_DEFAULT_REGION");
    }
    if (region == NULL) {
        rc = sp_err_set(err, SP_EINVAL, "no AWS region");
        sp_err_hint(err, "set region in the sink, or AWS_REGION in the environment");
        goto fail;
    }
    st->region = sp_xstrdup(region);
    const char *ep = conf->endpoint;
    const char *ep_what = "endpoint";
    if (ep == NULL && (ep = sp_aws_env("AWS_ENDPOINT_URL_SQS")) != NULL) {
        ep_what = "AWS_ENDPOINT_URL_SQS";
    } else if (ep == NULL && (ep = sp_aws_env("AWS_ENDPOINT_URL")) != NULL) {
        ep_what = "AWS_ENDPOINT_URL";
    }
    if (ep != NULL) {
        st->endpoint = sp_xstrdup(ep);
    } else {
        st->endpoint = sp_xasprintf("https://sqs.%s.amazonaws.com%s", region,
                                    strncmp(region, "cn-", 3) == 0 ? ".cn" : "");
    }
    if ((rc = sqs_parse_url(ep_what, st->endpoint, &st->authority, &st->path, err)) != 0) {
        goto fail;
    }
    if (conf->queue_url != NULL) {
        char *a = NULL;
        char *p = NULL;
        if ((rc = sqs_parse_url("queue_url", conf->queue_url, &a, &p, err)) != 0) {
            goto fail;
        }
        free(a);
        free(p);
        st->queue_url = sp_xstrdup(conf->queue_url);
        sqs_name_from_url(st, conf->queue_url);
    } else {
        st->queue_name = sp_xstrdup(conf->queue);
    }
    if (st->queue_name[0] == '\0') {
        rc = sp_err_set(err, SP_EINVAL, "queue_url \"%s\" names no queue", conf->queue_url);
        goto fail;
    }
    size_t qn = strlen(st->queue_name);
    bool dotfifo = qn > 5 && strcmp(st->queue_name + qn - 5, ".fifo") == 0;
    st->fifo = conf->fifo == SQS_FIFO_TRUE || (conf->fifo == SQS_FIFO_AUTO && dotfifo);
    if (conf->fifo == SQS_FIFO_FALSE && dotfifo) {
        rc = sp_err_set(err, SP_EINVAL, "fifo is false, but queue \"%s\" is a FIFO queue",
                        st->queue_name);
        sp_err_hint(err, "FIFO queue names end in .fifo and need a message group per "
                         "message; remove fifo: false");
        goto fail;
    }
    if (st->fifo && !dotfifo) {
        sp_log_warn(&sk->log,
                    "fifo is true, but queue \"%s\" does not end in .fifo as the names of AWS "
                    "FIFO queues do",
                    st->queue_name);
    }
    if ((rc = sp_aws_creds_src_init(&st->cs, conf->credentials_file, conf->profile, err)) != 0) {
        goto fail;
    }
    *out = st;
    return 0;
fail:
    sqs_state_free(st);
    return rc != 0 ? rc : SP_EINVAL;
}

/* ---- credentials ---- */

/* sp_aws_creds_src_load, and a log line when the keys changed. */
static int sqs_creds_load(struct sqs_state *st, bool force, struct sp_err *err)
{
    int rc = sp_aws_creds_src_load(&st->cs, force, err);
    if (rc == 1) {
        sp_log_info(st->log, "read new credentials from %s (access key %s)", st->cs.origin,
                    st->cs.creds.access_key_id);
    }
    return rc < 0 ? rc : 0;
}

/* ---- HTTP plumbing ---- */

static size_t sqs_on_header(char *p, size_t size, size_t n, void *ctx)
{
    struct sqs_http *h = ctx;
    size_t len = size * n;
    sp_http_header_value(p, len, "x-amzn-query-error", h->query_error, sizeof(h->query_error));
    return len;
}

/*
 * Prepares easy handle e for an AWS JSON 1.0 call of target ("SendMessageBatch")
 * with body: URL, TLS, timeouts and the signed headers (into *hdrs, which the
 * caller frees after the request). Fails only when no credentials can be read.
 */
static int sqs_easy_prepare(struct sqs_state *st, CURL *e, const char *target,
                            const struct sp_buf *body, struct sqs_http *h, struct curl_slist **hdrs,
                            struct sp_err *err)
{
    const struct sqs_conf *conf = st->conf;
    int rc = sqs_creds_load(st, st->creds_force, err);
    if (rc != 0) {
        return rc;
    }
    st->creds_force = false;
    char amz_date[17];
    sp_sigv4_amz_date(time(NULL), amz_date);
    char *xtarget = sp_xasprintf("AmazonSQS.%s", target);
    char payload_hash[SP_SHA256_HEX_LEN + 1];
    sp_sha256_hex(body->data != NULL ? body->data : "", body->len, payload_hash);
    struct sp_sigv4_header sh[5] = {
        {"Content-Type", "application/x-amz-json-1.0"},
        {"Host", st->authority},
        {"X-Amz-Date", amz_date},
        {"X-Amz-Target", xtarget},
        {"X-Amz-Security-Token", st->cs.creds.session_token},
    };
    size_t nsh = st->cs.creds.session_token != NULL ? 5 : 4;
    struct sp_sigv4_req rq = {"POST", st->path, NULL, sh, nsh, payload_hash};
    struct sp_buf auth;
    sp_buf_init(&auth);
    sp_sigv4_authorization(st->cs.creds.access_key_id, st->cs.creds.secret_access_key, amz_date,
                           st->region, "sqs", &rq, &auth);
    for (size_t i = 0; i < nsh; i++) {
        sp_buf_reset(&st->tmp);
        sp_buf_printf(&st->tmp, "%s: %s", sh[i].name, sh[i].value);
        *hdrs = curl_slist_append(*hdrs, st->tmp.data);
    }
    sp_buf_reset(&st->tmp);
    sp_buf_printf(&st->tmp, "Authorization: %s", auth.data);
    *hdrs = curl_slist_append(*hdrs, st->tmp.data);
    *hdrs = curl_slist_append(*hdrs, "Accept: application/x-amz-json-1.0");
    *hdrs = curl_slist_append(*hdrs, "Expect:"); /* no 100-continue round trip */
    sp_buf_fini(&auth);
    free(xtarget);
    sp_http_easy_common(e, conf->connect_timeout_ms, conf->request_timeout_ms, conf->tls_verify,
                        conf->ca_file);
    curl_easy_setopt(e, CURLOPT_URL, st->endpoint);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, *hdrs);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body->data != NULL ? body->data : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    sp_buf_reset(&h->resp);
    h->query_error[0] = '\0';
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sp_http_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &h->resp);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, sqs_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, h);
    return 0;
}

/* An error answer: its code (the __type after '#', else x-amzn-query-error's) and message. */
struct sqs_error {
    char type[96];  /* "QueueDoesNotExist" */
    char query[96]; /* "AWS.SimpleQueueService.NonExistentQueue" */
    char message[SQS_DETAIL_MAX + 1];
};

static void sqs_error_parse(const struct sqs_http *h, struct sqs_error *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->query, sizeof(out->query), "%.*s", (int)strcspn(h->query_error, ";"),
             h->query_error);
    struct sp_json_span body = {h->resp.data != NULL ? h->resp.data : "", h->resp.len};
    struct sp_json_span v;
    struct sp_buf s;
    sp_buf_init(&s);
    if (sp_json_valid(body.p, body.len)) {
        if (sp_json_member(body, "__type", &v) && sp_json_str(v, &s) == 0) {
            const char *hash = strrchr(s.data, '#');
            snprintf(out->type, sizeof(out->type), "%s", hash != NULL ? hash + 1 : s.data);
        }
        sp_buf_reset(&s);
        if ((sp_json_member(body, "message", &v) || sp_json_member(body, "Message", &v)) &&
            sp_json_str(v, &s) == 0) {
            snprintf(out->message, sizeof(out->message), "%s", s.data);
        }
    } else {
        size_t n = h->resp.len < SQS_DETAIL_MAX ? h->resp.len : SQS_DETAIL_MAX;
        for (size_t i = 0; i < n && h->resp.data != NULL; i++) {
            char c = h->resp.data[i];
            out->message[i] = (char)(c == '\n' || c == '\r' ? ' ' : c);
        }
    }
    if (out->message[0] == '\0') {
        snprintf(out->message, sizeof(out->message), "no details");
    }
    sp_buf_fini(&s);
}

static const char *sqs_error_code(const struct sqs_error *e)
{
    return e->type[0] != '\0' ? e->type : e->query[0] != '\0' ? e->query : "no error code";
}

static bool sqs_error_is(const struct sqs_error *e, const char *const *codes)
{
    for (size_t i = 0; codes[i] != NULL; i++) {
        if (strcmp(e->type, codes[i]) == 0 || strcmp(e->query, codes[i]) == 0) {
            return true;
        }
    }
    return false;
}

static const char *const sqs_throttling_codes[] = {
    "ThrottlingException",
    "RequestThrottled",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
    "KmsThrottled",
    NULL,
};

static const char *const sqs_auth_codes[] = {
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "InvalidSecurity",
    "RequestExpired",
    "AuthFailure",
    "InvalidAccessKeyId",
    "OptInRequired",
    NULL,
};

static const char *const sqs_missing_codes[] = {
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
    "NonExistentQueue",
    NULL,
};

static bool sqs_is_auth(long status, const struct sqs_error *e)
{
    return status == 401 || status == 403 || sqs_error_is(e, sqs_auth_codes);
}

static const char sqs_auth_hint[] =
    "check the credentials (credentials_file and profile, or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY), the region and the queue's sqs:SendMessage permission; siphon "
    "reads a changed credentials_file again and keeps retrying";

/* ---- the queue's URL ---- */

/* GetQueueUrl, synchronously: the queue's URL into *url (malloc'd). */
static int sqs_get_queue_url(struct sqs_state *st, char **url, struct sp_err *err)
{
    *url = NULL;
    struct sp_buf body;
    sp_buf_init(&body);
    sp_buf_puts(&body, "{\"QueueName\":");
    sp_buf_put_json_str(&body, st->queue_name, strlen(st->queue_name));
    if (st->queue_owner != NULL) {
        sp_buf_puts(&body, ",\"QueueOwnerAWSAccountId\":");
        sp_buf_put_json_str(&body, st->queue_owner, strlen(st->queue_owner));
    }
    sp_buf_putc(&body, '}');
    struct sqs_http h;
    memset(&h, 0, sizeof(h));
    sp_buf_init(&h.resp);
    struct curl_slist *hdrs = NULL;
    CURL *e = curl_easy_init();
    int rc = 0;
    if (e == NULL) {
        sp_err_set(err, SP_EIO, "libcurl could not make a request handle");
        rc = SP_EIO;
        goto out;
    }
    if (sqs_easy_prepare(st, e, "GetQueueUrl", &body, &h, &hdrs, err) != 0) {
        rc = err->code != 0 ? err->code : SP_EINVAL;
        goto out;
    }
    CURLcode cc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    struct sqs_error qe;
    struct sp_json_span v;
    struct sp_json_span resp = {h.resp.data != NULL ? h.resp.data : "", h.resp.len};
    if (cc != CURLE_OK) {
        sp_err_set(err, SP_ECONN, "could not look up queue \"%s\": could not reach %s: %s",
                   st->queue_name, st->endpoint, curl_easy_strerror(cc));
        rc = SP_ECONN;
    } else if (status == 200) {
        struct sp_buf u;
        sp_buf_init(&u);
        if (sp_json_valid(resp.p, resp.len) && sp_json_member(resp, "QueueUrl", &v) &&
            sp_json_str(v, &u) == 0 && u.len > 0) {
            *url = sp_buf_steal(&u);
        } else {
            rc = sp_err_set(err, SP_EPROTO,
                            "GetQueueUrl for queue \"%s\" at %s: no QueueUrl in "
                            "the answer",
                            st->queue_name, st->endpoint);
        }
        sp_buf_fini(&u);
    } else {
        sqs_error_parse(&h, &qe);
        if (sqs_error_is(&qe, sqs_missing_codes)) {
            rc = sp_err_set(err, SP_EINVAL,
                            "queue \"%s\" does not exist (region %s, endpoint %s): %s",
                            st->queue_name, st->region, st->endpoint, qe.message);
            sp_err_hint(err,
                        "create the queue%s, or correct queue, region or endpoint in sink "
                        "\"%s\"",
                        st->fifo ? " (a FIFO queue: FifoQueue=true)" : "", st->sink_name);
        } else {
            rc =
                sp_err_set(err, SP_ESERVER, "could not look up queue \"%s\" at %s: HTTP %ld %s: %s",
                           st->queue_name, st->endpoint, status, sqs_error_code(&qe), qe.message);
            if (sqs_is_auth(status, &qe)) {
                sp_err_hint(err,
                            "check the credentials (%s), the region and the "
                            "sqs:GetQueueUrl permission",
                            st->cs.origin);
            }
        }
    }
out:
    curl_slist_free_all(hdrs);
    if (e != NULL) {
        curl_easy_cleanup(e);
    }
    sp_buf_fini(&h.resp);
    sp_buf_fini(&body);
    return rc;
}

/* ---- preparing a batch ---- */

static void sqs_reject(struct sp_rec *r, int code, bool retriable, const char *hint,
                       const char *fmt, ...) SP_PRINTF(5, 6);

static void sqs_reject(struct sp_rec *r, int code, bool retriable, const char *hint,
                       const char *fmt, ...)
{
    if (r->err == NULL) {
        r->err = sp_xcalloc(1, sizeof(*r->err));
    }
    va_list ap;
    va_start(ap, fmt);
    char msg[sizeof(r->err->msg)];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sp_err_set(r->err, code, "%s", msg);
    if (hint != NULL) {
        sp_err_hint(r->err, "%s", hint);
    }
    r->err->retriable = retriable;
}

/* Whether SQS accepts s as a MessageGroupId or MessageDeduplicationId: printable ASCII. */
static bool sqs_id_ok(const char *s, size_t n)
{
    if (n == 0 || n > SQS_ID_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

/*
 * The message group of a record: its key's JSON text ({"id":42}), or for
 * events without a key the table ("public.orders", a message's prefix).
 * Text SQS does not take as a group id (over 128 characters, spaces, non
 * ASCII) becomes "sha256:" and its hash, the same for the same key.
 */
static char *sqs_group_id(const struct sp_rec *r)
{
    struct sp_buf g;
    sp_buf_init(&g);
    if (r->key != NULL && r->key_len > 0) {
        sp_buf_append(&g, r->key, r->key_len);
    } else if (r->schema[0] != '\0') {
        sp_buf_printf(&g, "%s.%s", r->schema, r->table);
    } else {
        sp_buf_puts(&g, r->table[0] != '\0' ? r->table : "-");
    }
    if (!sqs_id_ok(g.data, g.len)) {
        char h[SP_SHA256_HEX_LEN + 1];
        sp_sha256_hex(g.data, g.len, h);
        sp_buf_reset(&g);
        sp_buf_printf(&g, "sha256:%s", h);
    }
    return sp_buf_steal(&g);
}

/*
 * Whether SQS takes body as a message: valid UTF-8 of the characters it
 * allows (#x9, #xA, #xD, #x20 to #xD7FF, #xE000 to #xFFFD, #x10000 and up).
 */
static bool sqs_body_ok(const char *s, size_t n)
{
    if (!sp_utf8_valid(s, n)) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
            return false;
        }
        if (c == 0xef && i + 2 < n && (unsigned char)s[i + 1] == 0xbf &&
            ((unsigned char)s[i + 2] == 0xbe || (unsigned char)s[i + 2] == 0xbf)) {
            return false; /* U+FFFE, U+FFFF */
        }
    }
    return true;
}

/* The message attributes of r: names and values (empty values are not sent). */
struct sqs_attrs {
    const char *name[4];
    const char *value[4];
    char table[512];
    char lsn[SP_LSN_BUFSZ];
    char op[2];
    int n;
};

static void sqs_attrs_of(const struct sp_rec *r, struct sqs_attrs *a)
{
    a->n = 0;
    a->op[0] = r->op;
    a->op[1] = '\0';
    if (r->schema[0] != '\0') {
        snprintf(a->table, sizeof(a->table), "%s.%s", r->schema, r->table);
    } else {
        snprintf(a->table, sizeof(a->table), "%s", r->table);
    }
    sp_lsn_str(r->lsn, a->lsn);
    const char *names[] = {"op", "table", "lsn", "event_id"};
    const char *values[] = {a->op, a->table, a->lsn, r->id != NULL ? r->id : ""};
    for (int i = 0; i < 4; i++) {
        if (values[i][0] != '\0') {
            a->name[a->n] = names[i];
            a->value[a->n] = values[i];
            a->n++;
        }
    }
}

/* Prepares r as item it; false when r was rejected instead. */
static bool sqs_item_prepare(struct sp_sink *sk, struct sp_rec *r, struct sqs_item *it)
{
    struct sqs_state *st = sk->state;
    const struct sqs_conf *conf = st->conf;
    memset(it, 0, sizeof(*it));
    it->r = r;
    free(r->err); /* never set on a first submit; a retried batch is decided again */
    r->err = NULL;
    if (r->dest != NULL && !st->warned_dest) {
        st->warned_dest = true;
        sp_log_warn(&sk->log,
                    "a flow set destination \"%s\" for event %s; the sqs sink sends every event "
                    "to queue \"%s\"",
                    r->dest, r->id, st->queue_name);
    }
    it->size = r->value_len;
    if (conf->message_attributes) {
        struct sqs_attrs a;
        sqs_attrs_of(r, &a);
        for (int i = 0; i < a.n; i++) {
            it->size += strlen(a.name[i]) + strlen("String") + strlen(a.value[i]);
        }
    }
    if (r->value_len == 0) {
        sqs_reject(r, SP_EREJECTED, false, NULL,
                   "event %s is empty; SQS does not take empty messages", r->id);
        return false;
    }
    if ((int64_t)it->size > conf->max_message_bytes) {
        sqs_reject(r, SP_EREJECTED, false,
                   "raise the queue's MaximumMessageSize and max_message_bytes, or leave large "
                   "columns out with a select flow",
                   "event %s has %zu bytes (body and attributes), more than max_message_bytes "
                   "(%lld) of queue \"%s\"",
                   r->id, it->size, (long long)conf->max_message_bytes, st->queue_name);
        return false;
    }
    if (!sqs_body_ok(r->value, r->value_len)) {
        sqs_reject(r, SP_EREJECTED, false, NULL,
                   "event %s holds characters SQS does not take in a message (invalid UTF-8, "
                   "control characters, U+FFFE or U+FFFF)",
                   r->id);
        return false;
    }
    if (st->fifo) {
        it->group = sqs_group_id(r);
        sp_buf_reset(&st->tmp);
        sp_buf_printf(&st->tmp, "%s\n%s", r->source != NULL ? r->source : "",
                      r->id != NULL ? r->id : "");
        sp_sha256_hex(st->tmp.data, st->tmp.len, it->dedup);
    }
    return true;
}

static struct sqs_job *sqs_job_new(struct sp_sink *sk, struct sp_batch *b)
{
    struct sqs_state *st = sk->state;
    struct sqs_job *job = sp_xcalloc(1, sizeof(*job));
    job->b = b;
    job->items = sp_xcalloc(b->count ? b->count : 1, sizeof(*job->items));
    job->sent = sp_xcalloc(SQS_ENTRIES_LIMIT, sizeof(*job->sent));
    job->cap = (size_t)st->conf->max_batch_entries;
    sp_buf_init(&job->body);
    sp_buf_init(&job->http.resp);
    for (struct sp_rec *r = b->head; r != NULL; r = r->next) {
        struct sqs_item *it = &job->items[job->nitems++];
        if (!sqs_item_prepare(sk, r, it)) {
            it->done = true;
            job->settled++;
            sp_log_warn(&sk->log, "queue \"%s\": %s", st->queue_name, r->err->msg);
        }
    }
    return job;
}

/* ---- requests ---- */

static bool sqs_job_holds(const struct sqs_job *job, uint32_t key_hash)
{
    for (size_t i = 0; i < job->nheld; i++) {
        if (job->held[i] == key_hash) {
            return true;
        }
    }
    return false;
}

static void sqs_job_hold(struct sqs_job *job, uint32_t key_hash)
{
    if (!sqs_job_holds(job, key_hash)) {
        job->held = sp_xrealloc(job->held, sizeof(*job->held) * (job->nheld + 1));
        job->held[job->nheld++] = key_hash;
    }
}

/* Gives r back to the runtime (sent again later, with every later record of its key). */
static void sqs_give_back(struct sqs_job *job, struct sqs_item *it, int code, const char *hint,
                          const char *msg)
{
    sqs_reject(it->r, code, true, hint, "%s", msg);
    it->done = true;
    sqs_job_hold(job, it->r->key_hash);
}

/*
 * The batch is decided: tell the runtime. When nothing of it was delivered
 * or rejected, the whole batch goes back as one failure, so an outage is
 * seen as one (core/delivery.c waits instead of splitting).
 */
static void sqs_job_done(struct sp_sink *sk, struct sqs_job *job)
{
    struct sqs_state *st = sk->state;
    struct sqs_job **pp = &st->jobs;
    while (*pp != job) {
        pp = &(*pp)->next;
    }
    *pp = job->next;
    struct sp_batch *b = job->b;
    size_t settled = job->settled;
    sqs_job_free(job);
    struct sp_err first;
    sp_err_clear(&first);
    size_t back = 0;
    for (struct sp_rec *r = b->head; r != NULL; r = r->next) {
        if (r->err != NULL && r->err->retriable) {
            if (back++ == 0) {
                first = *r->err;
            }
        }
    }
    if (back > 0 && settled == 0) {
        for (struct sp_rec *r = b->head; r != NULL; r = r->next) {
            free(r->err);
            r->err = NULL;
        }
        sp_batch_done(b, first.code != 0 ? first.code : SP_ESERVER, &first);
        return;
    }
    sp_log_debug(&sk->log, "batch of %zu records settled (%zu given back, partition %d)", b->count,
                 back, b->part);
    sp_batch_done(b, 0, NULL);
}

/* Every item not done yet goes back to the runtime with this error. */
static void sqs_give_back_rest(struct sqs_job *job, int code, const char *hint, const char *msg)
{
    for (size_t i = 0; i < job->nitems; i++) {
        if (!job->items[i].done) {
            sqs_give_back(job, &job->items[i], code, hint, msg);
        }
    }
    job->nsent = 0;
    job->pos = job->nitems;
}

static void sqs_put_entry(struct sqs_state *st, struct sp_buf *out, size_t idx,
                          const struct sqs_item *it)
{
    const struct sp_rec *r = it->r;
    sp_buf_printf(out, "{\"Id\":\"%zu\",\"MessageBody\":", idx);
    sp_buf_put_json_str(out, r->value, r->value_len);
    if (st->fifo) {
        sp_buf_puts(out, ",\"MessageGroupId\":");
        sp_buf_put_json_str(out, it->group, strlen(it->group));
        sp_buf_printf(out, ",\"MessageDeduplicationId\":\"%s\"", it->dedup);
    }
    if (st->conf->message_attributes) {
        struct sqs_attrs a;
        sqs_attrs_of(r, &a);
        sp_buf_puts(out, ",\"MessageAttributes\":{");
        for (int i = 0; i < a.n; i++) {
            sp_buf_printf(out, "%s\"%s\":{\"DataType\":\"String\",\"StringValue\":", i ? "," : "",
                          a.name[i]);
            sp_buf_put_json_str(out, a.value[i], strlen(a.value[i]));
            sp_buf_putc(out, '}');
        }
        sp_buf_putc(out, '}');
    }
    sp_buf_putc(out, '}');
}

static void sqs_advance(struct sp_sink *sk, struct sqs_job *job);

/*
 * Starts the request for the next items of job: in order, at most cap
 * entries and max_batch_bytes, none of a key given back earlier in this
 * batch (those go back too), and on a FIFO queue no two of one key.
 * Returns false when there was nothing left to send.
 */
static bool sqs_send(struct sp_sink *sk, struct sqs_job *job)
{
    struct sqs_state *st = sk->state;
    const struct sqs_conf *conf = st->conf;
    job->nsent = 0;
    size_t bytes = 0;
    size_t i = job->pos;
    for (; i < job->nitems && job->nsent < job->cap; i++) {
        struct sqs_item *it = &job->items[i];
        if (it->done) {
            continue;
        }
        if (sqs_job_holds(job, it->r->key_hash)) {
            sqs_give_back(job, it, SP_ESERVER, NULL,
                          "not sent: an earlier event of its key was not stored");
            continue;
        }
        if (job->nsent > 0 && (int64_t)(bytes + it->size) > conf->max_batch_bytes) {
            break;
        }
        bool same_key = false;
        for (size_t k = 0; k < job->nsent && st->fifo; k++) {
            same_key = same_key || job->items[job->sent[k]].r->key_hash == it->r->key_hash;
        }
        if (same_key) {
            break;
        }
        job->sent[job->nsent++] = i;
        bytes += it->size;
    }
    job->pos = i;
    if (job->nsent == 0) {
        return false;
    }
    sp_buf_reset(&job->body);
    sp_buf_puts(&job->body, "{\"QueueUrl\":");
    sp_buf_put_json_str(&job->body, st->queue_url, strlen(st->queue_url));
    sp_buf_puts(&job->body, ",\"Entries\":[");
    for (size_t k = 0; k < job->nsent; k++) {
        if (k > 0) {
            sp_buf_putc(&job->body, ',');
        }
        sqs_put_entry(st, &job->body, job->sent[k], &job->items[job->sent[k]]);
    }
    sp_buf_puts(&job->body, "]}");
    struct sp_err err;
    sp_err_clear(&err);
    CURL *e = curl_easy_init();
    if (e == NULL) {
        sqs_give_back_rest(job, SP_EIO, NULL, "libcurl could not make a request handle");
        return false;
    }
    curl_slist_free_all(job->hdrs);
    job->hdrs = NULL;
    if (sqs_easy_prepare(st, e, "SendMessageBatch", &job->body, &job->http, &job->hdrs, &err) !=
        0) {
        curl_easy_cleanup(e);
        sqs_give_back_rest(job, err.code, err.hint[0] != '\0' ? err.hint : NULL, err.msg);
        return false;
    }
    curl_easy_setopt(e, CURLOPT_PRIVATE, job);
    CURLMcode mc = curl_multi_add_handle(st->multi, e);
    if (mc != CURLM_OK) {
        curl_easy_cleanup(e);
        sqs_give_back_rest(job, SP_EIO, NULL, curl_multi_strerror(mc));
        return false;
    }
    job->easy = e;
    st->inflight++;
    sp_log_debug(&sk->log, "queue \"%s\": sending %zu messages (%zu bytes, partition %d)",
                 st->queue_name, job->nsent, bytes, job->b->part);
    return true;
}

/* Sends the next request of job, or reports it when every item is decided. */
static void sqs_advance(struct sp_sink *sk, struct sqs_job *job)
{
    while (job->easy == NULL) {
        if (sqs_send(sk, job)) {
            return;
        }
        if (job->pos >= job->nitems) {
            sqs_job_done(sk, job);
            return;
        }
    }
}

/* Index into job->items of a result entry's Id, or -1 when it names no entry sent. */
static long sqs_entry_index(const struct sqs_job *job, struct sp_json_span entry,
                            struct sp_buf *tmp)
{
    struct sp_json_span v;
    sp_buf_reset(tmp);
    if (!sp_json_member(entry, "Id", &v) || sp_json_str(v, tmp) != 0 || tmp->len == 0) {
        return -1;
    }
    char *end = NULL;
    unsigned long idx = strtoul(tmp->data, &end, 10);
    if (*end != '\0') {
        return -1;
    }
    for (size_t k = 0; k < job->nsent; k++) {
        if (job->sent[k] == idx && !job->items[idx].done) {
            return (long)idx;
        }
    }
    return -1;
}

static void sqs_entry_text(struct sp_json_span entry, const char *name, struct sp_buf *out,
                           const char *dflt)
{
    struct sp_json_span v;
    sp_buf_reset(out);
    if (!sp_json_member(entry, name, &v) || sp_json_str(v, out) != 0 || out->len == 0) {
        sp_buf_reset(out);
        sp_buf_puts(out, dflt);
    }
}

/*
 * A Failed entry of a SendMessageBatch answer: SenderFault true rejects the
 * message for good, false gives it back. Returns 1 when it was given back.
 */
static size_t sqs_result_failed(struct sp_sink *sk, struct sqs_job *job, struct sqs_item *item,
                                struct sp_json_span entry, struct sp_buf *tmp)
{
    struct sqs_state *st = sk->state;
    struct sp_json_span sf;
    bool sender =
        sp_json_member(entry, "SenderFault", &sf) && sf.len == 4 && memcmp(sf.p, "true", 4) == 0;
    struct sp_buf code;
    struct sp_buf msg;
    sp_buf_init(&code);
    sp_buf_init(&msg);
    sqs_entry_text(entry, "Code", &code, "no error code");
    sqs_entry_text(entry, "Message", &msg, "no details");
    size_t back = 0;
    if (sender) {
        sqs_reject(item->r, SP_EREJECTED, false, NULL,
                   "sqs refused event %s for queue \"%s\": %s: %s", item->r->id, st->queue_name,
                   code.data, msg.data);
        item->done = true;
        job->settled++;
        sp_log_warn(&sk->log, "queue \"%s\": event %s refused (%s): %s", st->queue_name,
                    item->r->id, code.data, msg.data);
    } else {
        sp_buf_reset(tmp);
        sp_buf_printf(tmp, "sqs could not store event %s in queue \"%s\": %s: %s", item->r->id,
                      st->queue_name, code.data, msg.data);
        sqs_give_back(job, item, SP_ESERVER, NULL, tmp->data);
        back = 1;
    }
    sp_buf_fini(&code);
    sp_buf_fini(&msg);
    return back;
}

/*
 * A 200 answer to SendMessageBatch: Successful and Failed entries. Returns
 * false when it is not such an answer (then nothing was decided).
 */
static bool sqs_results(struct sp_sink *sk, struct sqs_job *job)
{
    struct sqs_state *st = sk->state;
    struct sp_json_span body = {job->http.resp.data != NULL ? job->http.resp.data : "",
                                job->http.resp.len};
    struct sp_json_span ok;
    struct sp_json_span failed;
    bool has_ok = false;
    bool has_failed = false;
    if (!sp_json_valid(body.p, body.len) || body.p[0] != '{') {
        return false;
    }
    has_ok = sp_json_member(body, "Successful", &ok) && ok.p[0] == '[';
    has_failed = sp_json_member(body, "Failed", &failed) && failed.p[0] == '[';
    if (!has_ok && !has_failed) {
        return false;
    }
    struct sp_buf tmp;
    sp_buf_init(&tmp);
    struct sp_json_iter it;
    struct sp_json_span v;
    if (has_ok && sp_json_iter_init(&it, ok, '[') == 0) {
        while (sp_json_iter_next(&it, NULL, &v) == 1) {
            long idx = sqs_entry_index(job, v, &tmp);
            if (idx >= 0) {
                job->items[idx].done = true;
                job->settled++;
            }
        }
    }
    size_t nback = 0;
    if (has_failed && sp_json_iter_init(&it, failed, '[') == 0) {
        while (sp_json_iter_next(&it, NULL, &v) == 1) {
            long idx = sqs_entry_index(job, v, &tmp);
            if (idx >= 0) {
                nback += sqs_result_failed(sk, job, &job->items[idx], v, &tmp);
            }
        }
    }
    /* An entry the answer does not mention is sent again. */
    for (size_t k = 0; k < job->nsent; k++) {
        struct sqs_item *item = &job->items[job->sent[k]];
        if (!item->done) {
            sp_buf_reset(&tmp);
            sp_buf_printf(&tmp, "the answer from queue \"%s\" did not mention event %s",
                          st->queue_name, item->r->id);
            sqs_give_back(job, item, SP_EPROTO, NULL, tmp.data);
            nback++;
        }
    }
    if (nback > 0) {
        sp_log_debug(&sk->log, "queue \"%s\": %zu of %zu messages not stored; they go back",
                     st->queue_name, nback, job->nsent);
    }
    job->nsent = 0;
    sp_buf_fini(&tmp);
    return true;
}

/* What an answer (or a transport failure) means for the request's messages. */
static void sqs_finish(struct sp_sink *sk, struct sqs_job *job, CURLcode cc)
{
    struct sqs_state *st = sk->state;
    long status = 0;
    curl_easy_getinfo(job->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(st->multi, job->easy);
    curl_easy_cleanup(job->easy);
    job->easy = NULL;
    st->inflight--;
    char why[SQS_DETAIL_MAX + 512];
    struct sqs_error qe;
    if (cc != CURLE_OK) {
        snprintf(why, sizeof(why), "could not reach %s: %s", st->endpoint, curl_easy_strerror(cc));
        sqs_give_back_rest(job, cc == CURLE_OPERATION_TIMEDOUT ? SP_ETIMEDOUT : SP_ECONN, NULL,
                           why);
    } else if (status == 200) {
        if (!sqs_results(sk, job)) {
            snprintf(why, sizeof(why),
                     "HTTP 200 from %s with an answer that is not a SendMessageBatch result",
                     st->endpoint);
            sqs_give_back_rest(job, SP_EPROTO, NULL, why);
        }
    } else {
        sqs_error_parse(&job->http, &qe);
        snprintf(why, sizeof(why), "SendMessageBatch to queue \"%s\": HTTP %ld %s: %s",
                 st->queue_name, status, sqs_error_code(&qe), qe.message);
        if (status == 429 || sqs_error_is(&qe, sqs_throttling_codes) ||
            strncmp(qe.type, "Kms", 3) == 0) {
            sqs_give_back_rest(job, SP_ESERVER,
                               "SQS throttles requests beyond its quotas; siphon backs off and "
                               "retries",
                               why);
        } else if (status >= 500) {
            sqs_give_back_rest(job, SP_ESERVER, NULL, why);
        } else if (sqs_is_auth(status, &qe)) {
            st->creds_force = true;
            sqs_give_back_rest(job, SP_ESERVER, sqs_auth_hint, why);
        } else if (sqs_error_is(&qe, sqs_missing_codes)) {
            sqs_give_back_rest(job, SP_ESERVER,
                               "the queue was deleted or cannot be seen with these credentials; "
                               "siphon keeps retrying until it can send to it",
                               why);
        } else if (job->nsent > 1) {
            /* One of the messages, or the request as a whole, was refused: find out which. */
            sp_log_warn(&sk->log, "%s; sending one message per request to find the one refused",
                        why);
            job->pos = job->sent[0];
            job->nsent = 0;
            job->cap = 1;
        } else {
            struct sqs_item *item = &job->items[job->sent[0]];
            sqs_reject(item->r, SP_EREJECTED, false, NULL,
                       "sqs refused event %s for queue \"%s\" (HTTP %ld): %s: %s", item->r->id,
                       st->queue_name, status, sqs_error_code(&qe), qe.message);
            item->done = true;
            job->settled++;
            job->nsent = 0;
            sp_log_warn(&sk->log, "queue \"%s\": event %s refused (HTTP %ld %s): %s",
                        st->queue_name, item->r->id, status, sqs_error_code(&qe), qe.message);
        }
    }
    sqs_advance(sk, job);
}

static void sqs_done(void *sk, void *job, CURLcode cc)
{
    sqs_finish(sk, job, cc);
}

static void sqs_drive(struct sp_sink *sk)
{
    struct sqs_state *st = sk->state;
    sp_http_drive(st->multi, sqs_done, sk);
}

/* ---- ops ---- */

/* State, credentials and the queue's URL: what open and check share. */
static int sqs_start(struct sp_sink *sk, struct sqs_state **out, struct sp_err *err)
{
    struct sqs_state *st;
    int rc = sqs_state_new(sk, &st, err);
    if (rc != 0) {
        return rc;
    }
    if ((rc = sqs_creds_load(st, true, err)) != 0) {
        sqs_state_free(st);
        return rc;
    }
    if (st->queue_url == NULL && (rc = sqs_get_queue_url(st, &st->queue_url, err)) != 0) {
        sqs_state_free(st);
        return rc;
    }
    *out = st;
    return 0;
}

static int sqs_open(struct sp_sink *sk, struct sp_err *err)
{
    const struct sqs_conf *conf = sk->conf;
    struct sqs_state *st;
    int rc = sqs_start(sk, &st, err);
    if (rc != 0) {
        return rc;
    }
    st->multi = curl_multi_init();
    if (st->multi == NULL) {
        sqs_state_free(st);
        return sp_err_set(err, SP_EIO, "libcurl could not make a multi handle");
    }
    if (!conf->tls_verify) {
        sp_log_warn(&sk->log, "tls_verify is false: the server's certificate is not checked, "
                              "so anyone in between can read and change the events");
    }
    sk->state = st;
    sp_log_info(&sk->log, "sending to %s queue %s (region %s, endpoint %s, credentials from %s)",
                st->fifo ? "FIFO" : "standard", st->queue_url, st->region, st->endpoint,
                st->cs.origin);
    return 0;
}

static int sqs_submit(struct sp_sink *sk, struct sp_batch *b, struct sp_err *err)
{
    (void)err;
    struct sqs_state *st = sk->state;
    struct sqs_job *job = sqs_job_new(sk, b);
    job->next = st->jobs;
    st->jobs = job;
    sqs_advance(sk, job); /* may report it at once: every record rejected before sending */
    sqs_drive(sk);
    return 0;
}

static int sqs_poll(struct sp_sink *sk, int timeout_ms)
{
    struct sqs_state *st = sk->state;
    int wait = timeout_ms;
    if (st->inflight == 0 && wait > SQS_IDLE_POLL_MS) {
        wait = SQS_IDLE_POLL_MS; /* new batches are handed over between polls */
    }
    if (wait > 0) {
        curl_multi_poll(st->multi, NULL, 0, wait, NULL);
    }
    sqs_drive(sk);
    return 0;
}

/* Hands back every batch not done as retriable: they stay unconfirmed. */
static void sqs_give_back_all(struct sp_sink *sk, const char *why)
{
    struct sqs_state *st = sk->state;
    struct sp_err e;
    sp_err_set(&e, SP_ESTOPPED, "%s", why);
    e.retriable = true;
    while (st->jobs != NULL) {
        struct sqs_job *job = st->jobs;
        st->jobs = job->next;
        struct sp_batch *b = job->b;
        if (job->easy != NULL) {
            curl_multi_remove_handle(st->multi, job->easy);
            curl_easy_cleanup(job->easy);
            job->easy = NULL;
            st->inflight--;
        }
        sqs_job_free(job);
        sp_batch_done(b, SP_ESTOPPED, &e);
    }
}

static int sqs_flush(struct sp_sink *sk, int timeout_ms, struct sp_err *err)
{
    (void)err;
    struct sqs_state *st = sk->state;
    if (st == NULL) {
        return 0;
    }
    int64_t deadline = sp_time_mono_ms() + timeout_ms;
    while (st->inflight > 0 && sp_time_mono_ms() < deadline) {
        curl_multi_poll(st->multi, NULL, 0, 100, NULL);
        sqs_drive(sk);
    }
    if (st->jobs != NULL) {
        sqs_give_back_all(sk, "stopped before SQS stored every message");
    }
    return 0;
}

/* `siphon check`: credentials and the queue, looked up by name (GetQueueUrl). */
static int sqs_check(struct sp_sink *sk, struct sp_err *err)
{
    struct sqs_state *st;
    int rc = sqs_state_new(sk, &st, err);
    if (rc == 0) {
        rc = sqs_creds_load(st, true, err);
    }
    char *url = NULL;
    if (rc == 0) {
        rc = sqs_get_queue_url(st, &url, err);
    }
    if (rc == 0 && url != NULL && st->queue_url != NULL && strcmp(url, st->queue_url) != 0) {
        sp_log_warn(&sk->log, "queue_url is %s, but SQS names the queue's URL %s", st->queue_url,
                    url);
    }
    free(url);
    sqs_state_free(st);
    return rc;
}

static void sqs_close(struct sp_sink *sk)
{
    struct sqs_state *st = sk->state;
    if (st == NULL) {
        return;
    }
    if (st->jobs != NULL) {
        sqs_give_back_all(sk, "closed before SQS stored every message");
    }
    sqs_state_free(st);
    sk->state = NULL;
}

const struct sp_sink_ops sp_sink_sqs = {
    .type = "sqs",
    .summary = "send events to an Amazon SQS queue (standard or FIFO; SendMessageBatch, "
               "per-message outcomes, retries with the same deduplication id)",
    .opts = sqs_opts,
    .conf_size = sizeof(struct sqs_conf),
    .open = sqs_open,
    .submit = sqs_submit,
    .poll = sqs_poll,
    .flush = sqs_flush,
    .check = sqs_check,
    .close = sqs_close,
};
