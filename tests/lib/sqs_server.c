// SPDX-License-Identifier: Apache-2.0
/*
 * The SQS endpoint for tests (sqs_server.h): GetQueueUrl and
 * SendMessageBatch of the AWS JSON 1.0 protocol, Signature Version 4
 * checked on every request, FIFO deduplication, fault injection; on
 * libmicrohttpd.
 */
#include "lib/sqs_server.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <microhttpd.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/http_server.h"
#include "sink/sigv4.h"
#include "util/buf.h"
#include "util/hash.h"
#include "util/json.h"

#define SQSS_MAX_QUEUES    8
#define SQSS_DEDUP_BUCKETS 8192
#define SQSS_DEDUP_MS      ((int64_t)5 * 60 * 1000)
#define SQSS_MAX_BODY      ((size_t)8 * 1024 * 1024)
#define SQSS_MSG_MAX       262144
#define SQSS_SKEW_S        (15L * 60)

struct sqss_dedup {
    struct sqss_dedup *next;
    char *id;
    int64_t at_ms;
    char message_id[40];
};

struct sqss_queue {
    char *name;
    bool fifo;
    struct sp_sqs_msg *msgs;
    size_t n;
    size_t cap;
    struct sqss_dedup *dedup[SQSS_DEDUP_BUCKETS];
};

struct sqss_status {
    int status;
    char type[64];
};

struct sp_sqs_server {
    struct sp_http_server *http;
    char *region;
    char *access_key;
    char *secret;
    pthread_mutex_t mu;
    struct sqss_queue queues[SQSS_MAX_QUEUES];
    int nqueues;
    int fail_every;
    uint64_t entries_seen;
    char *reject_needle;
    char *reject_code;
    char *reject_message;
    int respond_status;
    char respond_type[64];
    int respond_count;
    int delay_ms;
    int delay_count;
    uint64_t seq;
    uint64_t msg_ids;
    struct sp_sqs_stats stats;
    struct sqss_status *answers;
    size_t nanswers;
    size_t answers_cap;
};

static struct sqss_queue *sqss_queue(struct sp_sqs_server *s, const char *name, size_t len)
{
    for (int i = 0; i < s->nqueues; i++) {
        if (strlen(s->queues[i].name) == len && memcmp(s->queues[i].name, name, len) == 0) {
            return &s->queues[i];
        }
    }
    return NULL;
}

/* ---- answers ---- */

/* Under s->mu. */
static void sqss_record(struct sp_sqs_server *s, int status, const char *type)
{
    if (s->nanswers == s->answers_cap) {
        s->answers_cap = s->answers_cap ? 2 * s->answers_cap : 256;
        s->answers = realloc(s->answers, s->answers_cap * sizeof(*s->answers));
    }
    struct sqss_status *a = &s->answers[s->nanswers++];
    a->status = status;
    snprintf(a->type, sizeof(a->type), "%s", type != NULL ? type : "");
}

static enum MHD_Result sqss_answer(struct MHD_Connection *c, unsigned status, const char *body,
                                   const char *query_error)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/x-amz-json-1.0");
    MHD_add_response_header(r, "x-amzn-RequestId", "00000000-0000-4000-8000-000000000000");
    if (query_error != NULL) {
        MHD_add_response_header(r, "x-amzn-query-error", query_error);
    }
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* An error answer as SQS writes it; recorded. Takes s->mu itself. */
static enum MHD_Result sqss_error(struct sp_sqs_server *s, struct MHD_Connection *c, int status,
                                  const char *type, const char *query_code, const char *message)
{
    pthread_mutex_lock(&s->mu);
    sqss_record(s, status, type);
    pthread_mutex_unlock(&s->mu);
    struct sp_buf b;
    sp_buf_init(&b);
    sp_buf_printf(&b, "{\"__type\":\"com.amazonaws.sqs#%s\",\"message\":", type);
    sp_buf_put_json_str(&b, message, strlen(message));
    sp_buf_putc(&b, '}');
    char qe[160];
    snprintf(qe, sizeof(qe), "%s;%s", query_code != NULL ? query_code : type,
             status >= 500 ? "Receiver" : "Sender");
    enum MHD_Result rc = sqss_answer(c, (unsigned)status, b.data, qe);
    sp_buf_fini(&b);
    return rc;
}

/* ---- Signature Version 4 ---- */

/* Copies the value of "Name=" (up to ',' or the end) from the Authorization header. */
static bool sqss_auth_part(const char *auth, const char *name, char *out, size_t cap)
{
    const char *p = strstr(auth, name);
    if (p == NULL) {
        return false;
    }
    p += strlen(name);
    size_t n = strcspn(p, ", ");
    if (n == 0 || n >= cap) {
        return false;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

/* NULL when the request is signed right, else the error type; *msg gets the message. */
static const char *sqss_check_signature(struct sp_sqs_server *s, struct MHD_Connection *c,
                                        const char *url, const struct sp_buf *body,
                                        const char **msg)
{
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *date = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Amz-Date");
    char cred[256];
    char signed_headers[512];
    char sig[128];
    if (auth == NULL || strncmp(auth, "AWS4-HMAC-SHA256 ", 17) != 0 || date == NULL) {
        *msg = "Request is missing Authentication Token";
        return "MissingAuthenticationToken";
    }
    if (!sqss_auth_part(auth, "Credential=", cred, sizeof(cred)) ||
        !sqss_auth_part(auth, "SignedHeaders=", signed_headers, sizeof(signed_headers)) ||
        !sqss_auth_part(auth, "Signature=", sig, sizeof(sig))) {
        *msg = "Authorization header requires Credential, SignedHeaders and Signature";
        return "IncompleteSignature";
    }
    /* AKID/20150830/us-east-1/sqs/aws4_request */
    char *parts[5] = {NULL};
    char *save = NULL;
    int np = 0;
    for (char *t = strtok_r(cred, "/", &save); t != NULL && np < 5;
         t = strtok_r(NULL, "/", &save)) {
        parts[np++] = t;
    }
    pthread_mutex_lock(&s->mu);
    char *secret = strdup(s->secret);
    bool known = np == 5 && strcmp(parts[0], s->access_key) == 0;
    bool scope_ok = np == 5 && strcmp(parts[2], s->region) == 0 && strcmp(parts[3], "sqs") == 0 &&
                    strcmp(parts[4], "aws4_request") == 0 && strncmp(parts[1], date, 8) == 0;
    pthread_mutex_unlock(&s->mu);
    const char *type = NULL;
    if (!known) {
        *msg = "The security token included in the request is invalid.";
        type = "InvalidClientTokenId";
    } else if (!scope_ok) {
        *msg = "Credential should be scoped to a valid region, service sqs and the request's "
               "date.";
        type = "SignatureDoesNotMatch";
    } else if (strstr(signed_headers, "host") == NULL ||
               strstr(signed_headers, "x-amz-date") == NULL) {
        *msg = "Host and X-Amz-Date must be signed.";
        type = "SignatureDoesNotMatch";
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (type == NULL && (strptime(date, "%Y%m%dT%H%M%SZ", &tm) == NULL ||
                         llabs((long long)(timegm(&tm) - time(NULL))) > (long long)SQSS_SKEW_S)) {
        *msg = "Signature expired: the request's X-Amz-Date is more than 15 minutes off.";
        type = "SignatureDoesNotMatch";
    }
    if (type == NULL) {
        struct sp_sigv4_header h[16];
        size_t nh = 0;
        char *names = strdup(signed_headers);
        save = NULL;
        for (char *t = strtok_r(names, ";", &save); t != NULL && nh < 16;
             t = strtok_r(NULL, ";", &save)) {
            const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, t);
            h[nh].name = t;
            h[nh].value = v != NULL ? v : "";
            nh++;
        }
        char ph[SP_SHA256_HEX_LEN + 1];
        sp_sha256_hex(body->data != NULL ? body->data : "", body->len, ph);
        struct sp_sigv4_req rq = {"POST", url, NULL, h, nh, ph};
        char want[SP_SHA256_HEX_LEN + 1];
        struct sp_buf sh;
        sp_buf_init(&sh);
        sp_sigv4_signature(secret, date, parts[2], "sqs", &rq, want, &sh);
        if (strcmp(want, sig) != 0 || strcmp(sh.data, signed_headers) != 0) {
            *msg = "The request signature we calculated does not match the signature you "
                   "provided. Check your AWS Secret Access Key and signing method.";
            type = "SignatureDoesNotMatch";
        }
        sp_buf_fini(&sh);
        free(names);
    }
    free(secret);
    return type;
}

/* ---- actions ---- */

static void sqss_queue_url(const struct sp_sqs_server *s, const char *name, struct sp_buf *out)
{
    sp_buf_printf(out, "%s/000000000000/%s", sp_http_server_url(s->http), name);
}

/* The queue a QueueUrl names (its last path segment), or NULL. Under s->mu. */
static struct sqss_queue *sqss_queue_of_url(struct sp_sqs_server *s, struct sp_json_span req,
                                            struct sp_buf *tmp)
{
    struct sp_json_span v;
    sp_buf_reset(tmp);
    if (!sp_json_member(req, "QueueUrl", &v) || sp_json_str(v, tmp) != 0) {
        return NULL;
    }
    const char *slash = strrchr(tmp->data, '/');
    const char *name = slash != NULL ? slash + 1 : tmp->data;
    return sqss_queue(s, name, strlen(name));
}

static enum MHD_Result sqss_get_queue_url(struct sp_sqs_server *s, struct MHD_Connection *c,
                                          struct sp_json_span req)
{
    struct sp_json_span v;
    struct sp_buf name;
    sp_buf_init(&name);
    if (!sp_json_member(req, "QueueName", &v) || sp_json_str(v, &name) != 0) {
        sp_buf_fini(&name);
        return sqss_error(s, c, 400, "MissingParameter", NULL,
                          "The request must contain the parameter QueueName.");
    }
    pthread_mutex_lock(&s->mu);
    struct sqss_queue *q = sqss_queue(s, name.data, name.len);
    if (q == NULL) {
        pthread_mutex_unlock(&s->mu);
        sp_buf_fini(&name);
        return sqss_error(s, c, 400, "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue",
                          "The specified queue does not exist.");
    }
    sqss_record(s, 200, NULL);
    struct sp_buf out;
    sp_buf_init(&out);
    struct sp_buf u;
    sp_buf_init(&u);
    sqss_queue_url(s, q->name, &u);
    pthread_mutex_unlock(&s->mu);
    sp_buf_puts(&out, "{\"QueueUrl\":");
    sp_buf_put_json_str(&out, u.data, u.len);
    sp_buf_putc(&out, '}');
    enum MHD_Result rc = sqss_answer(c, 200, out.data, NULL);
    sp_buf_fini(&out);
    sp_buf_fini(&u);
    sp_buf_fini(&name);
    return rc;
}

struct sqss_entry {
    char id[96];
    struct sp_json_span json;
    struct sp_buf body;
    char *group;
    char *dedup;
    char *attr_names[10];
    char *attr_values[10];
    int nattrs;
    size_t size;
};

static char *sqss_str_member(struct sp_json_span obj, const char *name)
{
    struct sp_json_span v;
    struct sp_buf b;
    sp_buf_init(&b);
    if (!sp_json_member(obj, name, &v) || sp_json_str(v, &b) != 0) {
        sp_buf_fini(&b);
        return NULL;
    }
    if (b.data == NULL) {
        return strdup("");
    }
    return sp_buf_steal(&b);
}

static void sqss_entry_fini(struct sqss_entry *e)
{
    sp_buf_fini(&e->body);
    free(e->group);
    free(e->dedup);
    for (int i = 0; i < e->nattrs; i++) {
        free(e->attr_names[i]);
        free(e->attr_values[i]);
    }
}

/* Reads entry v; NULL or the reason it is malformed. */
static const char *sqss_entry_read(struct sp_json_span v, struct sqss_entry *e)
{
    memset(e, 0, sizeof(*e));
    sp_buf_init(&e->body);
    e->json = v;
    struct sp_json_span x;
    struct sp_buf tmp;
    sp_buf_init(&tmp);
    if (!sp_json_member(v, "Id", &x) || sp_json_str(x, &tmp) != 0 || tmp.len == 0 ||
        tmp.len >= sizeof(e->id)) {
        sp_buf_fini(&tmp);
        return "InvalidBatchEntryId";
    }
    memcpy(e->id, tmp.data, tmp.len + 1);
    sp_buf_fini(&tmp);
    if (!sp_json_member(v, "MessageBody", &x) || sp_json_str(x, &e->body) != 0) {
        return "MissingParameter";
    }
    e->group = sqss_str_member(v, "MessageGroupId");
    e->dedup = sqss_str_member(v, "MessageDeduplicationId");
    e->size = e->body.len;
    struct sp_json_span attrs;
    if (sp_json_member(v, "MessageAttributes", &attrs)) {
        struct sp_json_iter it;
        struct sp_json_span k;
        if (sp_json_iter_init(&it, attrs, '{') != 0) {
            return "InvalidParameterValue";
        }
        while (sp_json_iter_next(&it, &k, &x) == 1) {
            if (e->nattrs == 10) {
                return "InvalidParameterValue";
            }
            struct sp_buf name;
            sp_buf_init(&name);
            sp_json_str(k, &name);
            char *type = sqss_str_member(x, "DataType");
            char *value = sqss_str_member(x, "StringValue");
            bool ok = name.len > 0 && type != NULL && strcmp(type, "String") == 0 &&
                      value != NULL && value[0] != '\0';
            if (ok) {
                e->size += name.len + strlen(type) + strlen(value);
                e->attr_names[e->nattrs] = sp_buf_steal(&name);
                e->attr_values[e->nattrs] = value;
                e->nattrs++;
                value = NULL;
            }
            sp_buf_fini(&name);
            free(type);
            free(value);
            if (!ok) {
                return "InvalidParameterValue";
            }
        }
    }
    return NULL;
}

static void sqss_md5_hex(const char *p, size_t n, char *out)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(p, n, md, &len, EVP_md5(), NULL);
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[(size_t)len * 2] = '\0';
}

/* Under s->mu: the deduplication entry of id in q within the window, or NULL. */
static struct sqss_dedup *sqss_dedup_find(struct sqss_queue *q, const char *id, int64_t now)
{
    uint32_t h = sp_hash_fnv1a(id, strlen(id)) % SQSS_DEDUP_BUCKETS;
    for (struct sqss_dedup *d = q->dedup[h]; d != NULL; d = d->next) {
        if (strcmp(d->id, id) == 0 && now - d->at_ms < SQSS_DEDUP_MS) {
            return d;
        }
    }
    return NULL;
}

static void sqss_dedup_add(struct sqss_queue *q, const char *id, int64_t now, const char *msg_id)
{
    uint32_t h = sp_hash_fnv1a(id, strlen(id)) % SQSS_DEDUP_BUCKETS;
    struct sqss_dedup *d = calloc(1, sizeof(*d));
    d->id = strdup(id);
    d->at_ms = now;
    snprintf(d->message_id, sizeof(d->message_id), "%s", msg_id);
    d->next = q->dedup[h];
    q->dedup[h] = d;
}

/* Under s->mu: stores e in q (takes its strings). */
static void sqss_store(struct sp_sqs_server *s, struct sqss_queue *q, struct sqss_entry *e)
{
    if (q->n == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 1024;
        q->msgs = realloc(q->msgs, q->cap * sizeof(*q->msgs));
    }
    struct sp_sqs_msg *m = &q->msgs[q->n++];
    memset(m, 0, sizeof(*m));
    m->body = e->body.data != NULL ? sp_buf_steal(&e->body) : strdup("");
    m->group = e->group;
    m->dedup = e->dedup;
    e->group = e->dedup = NULL;
    for (int i = 0; i < e->nattrs; i++) {
        m->attr_names[i] = e->attr_names[i];
        m->attr_values[i] = e->attr_values[i];
    }
    m->nattrs = e->nattrs;
    e->nattrs = 0;
    m->seq = ++s->seq;
}

static void sqss_failed(struct sp_buf *failed, const char *id, bool sender, const char *code,
                        const char *message)
{
    sp_buf_printf(failed, "%s{\"Id\":", failed->len > 0 ? "," : "");
    sp_buf_put_json_str(failed, id, strlen(id));
    sp_buf_printf(failed,
                  ",\"SenderFault\":%s,\"Code\":\"%s\",\"Message\":", sender ? "true" : "false",
                  code);
    sp_buf_put_json_str(failed, message, strlen(message));
    sp_buf_putc(failed, '}');
}

/* Under s->mu: the outcome of entry x of a batch for q, appended to ok or failed. */
static void sqss_entry_outcome(struct sp_sqs_server *s, struct sqss_queue *q, struct sqss_entry *x,
                               int64_t now, struct sp_buf *ok, struct sp_buf *failed)
{
    const char *body = x->body.data != NULL ? x->body.data : "";
    if (x->body.len == 0 || x->size > SQSS_MSG_MAX) {
        sqss_failed(failed, x->id, true, "InvalidParameterValue",
                    "One or more parameters are invalid. Reason: Message must be shorter "
                    "than 262144 bytes and not empty.");
        s->stats.failed_sender++;
        return;
    }
    if (q->fifo && (x->group == NULL || x->dedup == NULL)) {
        sqss_failed(failed, x->id, true, "MissingParameter",
                    "The request must contain the parameters MessageGroupId and "
                    "MessageDeduplicationId.");
        s->stats.failed_sender++;
        return;
    }
    if (!q->fifo && (x->group != NULL || x->dedup != NULL)) {
        sqss_failed(failed, x->id, true, "InvalidParameterValue",
                    "The request include parameter that is not valid for this queue type.");
        s->stats.failed_sender++;
        return;
    }
    if (s->reject_needle != NULL && strstr(body, s->reject_needle) != NULL) {
        sqss_failed(failed, x->id, true, s->reject_code, s->reject_message);
        s->stats.failed_sender++;
        return;
    }
    s->entries_seen++;
    if (s->fail_every > 0 && s->entries_seen % (uint64_t)s->fail_every == 0) {
        sqss_failed(failed, x->id, false, "InternalError",
                    "We encountered an internal error. Please try again.");
        s->stats.failed_retry++;
        return;
    }
    char msg_id[40];
    struct sqss_dedup *d = q->fifo ? sqss_dedup_find(q, x->dedup, now) : NULL;
    if (d != NULL) {
        snprintf(msg_id, sizeof(msg_id), "%s", d->message_id);
        s->stats.deduplicated++;
    } else {
        snprintf(msg_id, sizeof(msg_id), "00000000-0000-4000-8000-%012llu",
                 (unsigned long long)++s->msg_ids);
        if (q->fifo) {
            sqss_dedup_add(q, x->dedup, now, msg_id);
        }
        sqss_store(s, q, x);
    }
    char md5[40];
    sqss_md5_hex(body, strlen(body), md5);
    sp_buf_printf(ok, "%s{\"Id\":", ok->len > 0 ? "," : "");
    sp_buf_put_json_str(ok, x->id, strlen(x->id));
    sp_buf_printf(ok, ",\"MessageId\":\"%s\",\"MD5OfMessageBody\":\"%s\"", msg_id, md5);
    if (q->fifo) {
        sp_buf_printf(ok, ",\"SequenceNumber\":\"%020llu\"", (unsigned long long)s->seq);
    }
    sp_buf_putc(ok, '}');
}

static enum MHD_Result sqss_send_batch(struct sp_sqs_server *s, struct MHD_Connection *c,
                                       struct sp_json_span req)
{
    struct sp_json_span arr;
    struct sp_json_iter it;
    struct sp_json_span v;
    struct sqss_entry e[11];
    int n = 0;
    const char *bad = NULL;
    if (!sp_json_member(req, "Entries", &arr) || sp_json_iter_init(&it, arr, '[') != 0) {
        return sqss_error(s, c, 400, "MissingParameter", NULL,
                          "The request must contain the parameter Entries.");
    }
    while (sp_json_iter_next(&it, NULL, &v) == 1 && n < 11 && bad == NULL) {
        bad = sqss_entry_read(v, &e[n]);
        n++;
    }
    const char *type = NULL;
    const char *message = NULL;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        total += e[i].size;
        for (int k = 0; k < i; k++) {
            if (strcmp(e[i].id, e[k].id) == 0 && type == NULL) {
                type = "BatchEntryIdsNotDistinct";
                message = "Two or more batch entries in the request have the same Id.";
            }
        }
    }
    if (bad != NULL) {
        type = bad;
        message = "A batch entry is malformed.";
    } else if (n == 0) {
        type = "EmptyBatchRequest";
        message = "There should be at least one SendMessageBatchRequestEntry in the request.";
    } else if (n > 10) {
        type = "TooManyEntriesInBatchRequest";
        message = "Maximum number of entries per request are 10.";
    } else if (type == NULL && total > SQSS_MSG_MAX) {
        type = "BatchRequestTooLong";
        message = "Batch requests cannot be longer than 262144 bytes.";
    }
    struct sp_buf tmp;
    sp_buf_init(&tmp);
    pthread_mutex_lock(&s->mu);
    struct sqss_queue *q = type == NULL ? sqss_queue_of_url(s, req, &tmp) : NULL;
    pthread_mutex_unlock(&s->mu);
    if (type == NULL && q == NULL) {
        type = "QueueDoesNotExist";
        message = "The specified queue does not exist.";
    }
    if (type != NULL) {
        for (int i = 0; i < n; i++) {
            sqss_entry_fini(&e[i]);
        }
        sp_buf_fini(&tmp);
        return sqss_error(s, c, 400, type,
                          strcmp(type, "QueueDoesNotExist") == 0
                              ? "AWS.SimpleQueueService.NonExistentQueue"
                              : NULL,
                          message);
    }
    struct sp_buf ok;
    struct sp_buf failed;
    sp_buf_init(&ok);
    sp_buf_init(&failed);
    int64_t now = sp_http_server_now_ms();
    pthread_mutex_lock(&s->mu);
    s->stats.batches++;
    s->stats.entries += n;
    if (n > s->stats.max_entries) {
        s->stats.max_entries = n;
    }
    bool same_group = false;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < i && e[i].group != NULL; k++) {
            same_group = same_group || (e[k].group != NULL && strcmp(e[i].group, e[k].group) == 0);
        }
    }
    s->stats.same_group += same_group;
    for (int i = 0; i < n; i++) {
        sqss_entry_outcome(s, q, &e[i], now, &ok, &failed);
    }
    sqss_record(s, 200, NULL);
    pthread_mutex_unlock(&s->mu);
    struct sp_buf out;
    sp_buf_init(&out);
    sp_buf_printf(&out, "{\"Successful\":[%s],\"Failed\":[%s]}", ok.data != NULL ? ok.data : "",
                  failed.data != NULL ? failed.data : "");
    enum MHD_Result rc = sqss_answer(c, 200, out.data, NULL);
    sp_buf_fini(&out);
    sp_buf_fini(&ok);
    sp_buf_fini(&failed);
    sp_buf_fini(&tmp);
    for (int i = 0; i < n; i++) {
        sqss_entry_fini(&e[i]);
    }
    return rc;
}

/* ---- requests ---- */

static enum MHD_Result sqss_handle(void *cls, struct MHD_Connection *c, const char *url,
                                   const char *method, const struct sp_buf *body, bool too_big)
{
    struct sp_sqs_server *s = cls;
    pthread_mutex_lock(&s->mu);
    s->stats.requests++;
    int delay = 0;
    if (s->delay_count > 0) {
        s->delay_count--;
        delay = s->delay_ms;
    }
    pthread_mutex_unlock(&s->mu);
    if (delay > 0) {
        struct timespec ts = {.tv_sec = delay / 1000, .tv_nsec = (long)(delay % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    if (strcmp(method, "POST") != 0 || strcmp(url, "/") != 0) {
        return sqss_error(s, c, 404, "UnknownOperationException", NULL, "Not found.");
    }
    if (too_big) {
        return sqss_error(s, c, 413, "RequestEntityTooLarge", NULL, "Request too large.");
    }
    const char *msg = NULL;
    const char *bad = sqss_check_signature(s, c, url, body, &msg);
    if (bad != NULL) {
        return sqss_error(s, c, 403, bad, NULL, msg);
    }
    const char *target = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Amz-Target");
    const char *ctype = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    if (ctype == NULL || strcmp(ctype, "application/x-amz-json-1.0") != 0) {
        return sqss_error(s, c, 400, "InvalidParameterValue", NULL,
                          "Content-Type must be application/x-amz-json-1.0.");
    }
    struct sp_json_span req = {body->data != NULL ? body->data : "", body->len};
    if (!sp_json_valid(req.p, req.len) || req.p[0] != '{') {
        return sqss_error(s, c, 400, "SerializationException", NULL, "Malformed JSON body.");
    }
    if (target != NULL && strcmp(target, "AmazonSQS.GetQueueUrl") == 0) {
        return sqss_get_queue_url(s, c, req);
    }
    if (target != NULL && strcmp(target, "AmazonSQS.SendMessageBatch") == 0) {
        pthread_mutex_lock(&s->mu);
        if (s->respond_count > 0) {
            s->respond_count--;
            int status = s->respond_status;
            char type[64];
            snprintf(type, sizeof(type), "%s", s->respond_type);
            pthread_mutex_unlock(&s->mu);
            return sqss_error(s, c, status, type, NULL, "injected");
        }
        pthread_mutex_unlock(&s->mu);
        return sqss_send_batch(s, c, req);
    }
    return sqss_error(s, c, 400, "UnknownOperationException", NULL,
                      "The action or operation requested is invalid.");
}

/* ---- lifecycle and controls ---- */

struct sp_sqs_server *sp_sqs_server_start(const char *region, const char *access_key,
                                          const char *secret)
{
    struct sp_sqs_server *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    pthread_mutex_init(&s->mu, NULL);
    s->region = strdup(region);
    s->access_key = strdup(access_key);
    s->secret = strdup(secret);
    s->http = sp_http_server_start("SQS", SQSS_MAX_BODY, sqss_handle, s);
    return s;
}

void sp_sqs_server_stop(struct sp_sqs_server *s)
{
    if (s == NULL) {
        return;
    }
    sp_http_server_stop(s->http);
    for (int i = 0; i < s->nqueues; i++) {
        struct sqss_queue *q = &s->queues[i];
        sp_sqs_msgs_free(q->msgs, q->n);
        for (int b = 0; b < SQSS_DEDUP_BUCKETS; b++) {
            struct sqss_dedup *d = q->dedup[b];
            while (d != NULL) {
                struct sqss_dedup *next = d->next;
                free(d->id);
                free(d);
                d = next;
            }
        }
        free(q->name);
    }
    free(s->region);
    free(s->access_key);
    free(s->secret);
    free(s->reject_needle);
    free(s->reject_code);
    free(s->reject_message);
    free(s->answers);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const char *sp_sqs_server_url(const struct sp_sqs_server *s)
{
    return sp_http_server_url(s->http);
}

void sp_sqs_server_add_queue(struct sp_sqs_server *s, const char *name)
{
    pthread_mutex_lock(&s->mu);
    assert_true(s->nqueues < SQSS_MAX_QUEUES);
    struct sqss_queue *q = &s->queues[s->nqueues++];
    memset(q, 0, sizeof(*q));
    q->name = strdup(name);
    size_t n = strlen(name);
    q->fifo = n > 5 && strcmp(name + n - 5, ".fifo") == 0;
    pthread_mutex_unlock(&s->mu);
}

static void sqss_set_str(struct sp_sqs_server *s, char **field, const char *v)
{
    pthread_mutex_lock(&s->mu);
    free(*field);
    *field = v != NULL ? strdup(v) : NULL;
    pthread_mutex_unlock(&s->mu);
}

void sp_sqs_server_set_secret(struct sp_sqs_server *s, const char *secret)
{
    sqss_set_str(s, &s->secret, secret);
}

void sp_sqs_server_fail_every(struct sp_sqs_server *s, int n)
{
    pthread_mutex_lock(&s->mu);
    s->fail_every = n;
    pthread_mutex_unlock(&s->mu);
}

void sp_sqs_server_reject_matching(struct sp_sqs_server *s, const char *needle, const char *code,
                                   const char *message)
{
    sqss_set_str(s, &s->reject_needle, needle);
    sqss_set_str(s, &s->reject_code, code);
    sqss_set_str(s, &s->reject_message, message);
}

void sp_sqs_server_respond(struct sp_sqs_server *s, int status, const char *type, int count)
{
    pthread_mutex_lock(&s->mu);
    s->respond_status = status;
    snprintf(s->respond_type, sizeof(s->respond_type), "%s", type);
    s->respond_count = count;
    pthread_mutex_unlock(&s->mu);
}

void sp_sqs_server_delay(struct sp_sqs_server *s, int delay_ms, int count)
{
    pthread_mutex_lock(&s->mu);
    s->delay_ms = delay_ms;
    s->delay_count = count;
    pthread_mutex_unlock(&s->mu);
}

const char *sp_sqs_msg_attr(const struct sp_sqs_msg *m, const char *name)
{
    for (int i = 0; i < m->nattrs; i++) {
        if (strcmp(m->attr_names[i], name) == 0) {
            return m->attr_values[i];
        }
    }
    return NULL;
}

static char *sqss_dup(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

size_t sp_sqs_server_messages(struct sp_sqs_server *s, const char *queue, struct sp_sqs_msg **out)
{
    pthread_mutex_lock(&s->mu);
    struct sqss_queue *q = sqss_queue(s, queue, strlen(queue));
    size_t n = q != NULL ? q->n : 0;
    *out = calloc(n ? n : 1, sizeof(**out));
    for (size_t i = 0; i < n; i++) {
        struct sp_sqs_msg *m = &(*out)[i];
        const struct sp_sqs_msg *src = &q->msgs[i];
        *m = *src;
        m->body = sqss_dup(src->body);
        m->group = sqss_dup(src->group);
        m->dedup = sqss_dup(src->dedup);
        for (int k = 0; k < src->nattrs; k++) {
            m->attr_names[k] = sqss_dup(src->attr_names[k]);
            m->attr_values[k] = sqss_dup(src->attr_values[k]);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

void sp_sqs_msgs_free(struct sp_sqs_msg *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].body);
        free(m[i].group);
        free(m[i].dedup);
        for (int k = 0; k < m[i].nattrs; k++) {
            free(m[i].attr_names[k]);
            free(m[i].attr_values[k]);
        }
    }
    free(m);
}

size_t sp_sqs_server_count(struct sp_sqs_server *s, const char *queue)
{
    pthread_mutex_lock(&s->mu);
    struct sqss_queue *q = sqss_queue(s, queue, strlen(queue));
    size_t n = q != NULL ? q->n : 0;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void sp_sqs_server_stats(struct sp_sqs_server *s, struct sp_sqs_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}

long sp_sqs_server_status_count(struct sp_sqs_server *s, int status)
{
    pthread_mutex_lock(&s->mu);
    long n = 0;
    for (size_t i = 0; i < s->nanswers; i++) {
        n += s->answers[i].status == status;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

long sp_sqs_server_error_count(struct sp_sqs_server *s, const char *type)
{
    pthread_mutex_lock(&s->mu);
    long n = 0;
    for (size_t i = 0; i < s->nanswers; i++) {
        n += strcmp(s->answers[i].type, type) == 0;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}
