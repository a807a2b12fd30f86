// SPDX-License-Identifier: Apache-2.0
/*
 * Sink "nakadi": publishes events to Nakadi (docs/sink-nakadi.md) with
 * libcurl: POST {url}/event-types/{name}/events, a JSON array per request.
 *
 * A batch from the runtime (one partition lane, in order) is split by event
 * type (rec->dest, else the event_type template); each event type's events
 * go in requests of at most max_batch_size events and max_batch_bytes
 * bytes, one request at a time per event type and batch, so events of one
 * event type reach Nakadi in the order of the lane. Event types of one
 * batch and different batches are published in parallel (curl multi).
 *
 * Outcomes, per request:
 *   200      every event published;
 *   207/422  per event (BatchItemResponse, in request order): `submitted`
 *            is done; `failed` at step validating, enriching or
 *            partitioning is rejected for good (rec->err: the stream's
 *            recovery policy decides); everything else (`aborted`, or
 *            `failed` while publishing) is sent again, the same bytes and
 *            so the same eid, before any later event of that event type;
 *   429/5xx  sent again after a backoff, at least Retry-After;
 *   401      the token is read again, then sent again;
 *   403      every event of that event type in the batch is rejected for
 *            good with the server's problem detail;
 *   network errors and timeouts are retried like 5xx.
 * Retries happen here, without limit, so only the affected lane waits; the
 * runtime sees the batch once, when every event is published or rejected.
 *
 * Threads: open, check and close on the pipeline thread; submit, poll and
 * flush on the delivery thread, which owns every curl handle and all state.
 *
 * What it does not do: create event types, or compress requests.
 */
#include "format/nakadi.h"

#include <stdarg.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/plugin.h"
#include "core/sinkconf.h"
#include "sink/http.h"
#include "util/file.h"
#include "util/json.h"
#include "util/time.h"
#include "util/uuid.h"

#define NK_FIRST_RETRY_MS 100
#define NK_MAX_RETRY_MS   30000
#define NK_IDLE_POLL_MS   5 /* poll's wait when nothing is in flight */
#define NK_TOKEN_MAX      65536
#define NK_DETAIL_MAX     300

struct nakadi_conf {
    struct sp_sink_batching batching;
    char *url;
    char *event_type;
    char *data_type;
    bool partition_compaction_key;
    int64_t max_batch_size;
    int64_t max_batch_bytes;
    int64_t max_event_bytes;
    char *token_file;
    char *token_env;
    bool tls_verify;
    char *ca_file;
    char *flow_id;
    int64_t connect_timeout_ms;
    int64_t request_timeout_ms;
};

static const struct sp_opt nakadi_opts[] = {
    SP_SINK_BATCH_OPTS(struct nakadi_conf, "8", "key"),
    SP_OPT_STR("url", struct nakadi_conf, url, NULL, SP_OPT_REQUIRED,
               "base URL of the Nakadi API, e.g. https://nakadi.example.org"),
    SP_OPT_STR("event_type", struct nakadi_conf, event_type, NULL, SP_OPT_REQUIRED,
               "event type name template: {source}, {schema} and {table} are replaced; an "
               "event's destination set by a flow takes precedence"),
    SP_OPT_STR("data_type", struct nakadi_conf, data_type, NULL, 0,
               "data_type template for the data change events the nakadi format writes "
               "({source}, {schema}, {table}); default: what the format wrote, "
               "\"{schema}.{table}\""),
    SP_OPT_BOOL("partition_compaction_key", struct nakadi_conf, partition_compaction_key, "false",
                "set metadata.partition_compaction_key from the event's key (the value of a "
                "one-column key, else the key as JSON), unless the event has one; needed for "
                "event types with cleanup_policy compact"),
    SP_OPT_INT("max_batch_size", struct nakadi_conf, max_batch_size, "500", 1, 100000,
               "most events in one publishing request"),
    SP_OPT_SIZE("max_batch_bytes", struct nakadi_conf, max_batch_bytes, "900KiB", 1024,
                INT64_C(1) << 30,
                "most bytes in one publishing request (a larger single event is sent alone)"),
    SP_OPT_SIZE("max_event_bytes", struct nakadi_conf, max_event_bytes, "999000", 1,
                INT64_C(1) << 30,
                "larger events are rejected without being sent (Nakadi's event.max.bytes)"),
    SP_OPT_STR("token_file", struct nakadi_conf, token_file, NULL, 0,
               "file holding the OAuth2 bearer token, read again whenever it changes (as "
               "mounted platform credentials are rotated) and after a 401"),
    SP_OPT_STR("token_env", struct nakadi_conf, token_env, NULL, 0,
               "name of the environment variable holding the bearer token (instead of "
               "token_file)"),
    SP_OPT_BOOL("tls_verify", struct nakadi_conf, tls_verify, "true",
                "verify the server's certificate and host name; false is logged as a warning"),
    SP_OPT_STR("ca_file", struct nakadi_conf, ca_file, NULL, 0,
               "PEM file of the certificate authorities to trust instead of the system's"),
    SP_OPT_STR("flow_id", struct nakadi_conf, flow_id, NULL, 0,
               "X-Flow-Id header sent with every request (Nakadi puts it in metadata.flow_id)"),
    SP_OPT_DURATION("connect_timeout", struct nakadi_conf, connect_timeout_ms, "5s", 1, 600000,
                    "how long to wait for a connection (and TLS handshake)"),
    SP_OPT_DURATION("request_timeout", struct nakadi_conf, request_timeout_ms, "30s", 1, 3600000,
                    "how long one publishing request may take before it is abandoned and "
                    "sent again"),
    SP_OPT_END,
};

/* ---- templates ---- */

static const char *const nk_placeholders[] = {"{source}", "{schema}", "{table}"};

/* Refuses placeholders other than {source}, {schema} and {table}. */
static int nk_template_check(const char *opt, const char *tpl, struct sp_err *err)
{
    if (tpl[0] == '\0') {
        return sp_err_set(err, SP_EINVAL, "%s is empty", opt);
    }
    for (const char *p = strchr(tpl, '{'); p != NULL; p = strchr(p + 1, '{')) {
        bool known = false;
        for (size_t i = 0; i < SP_ARRAY_LEN(nk_placeholders); i++) {
            known = known || strncmp(p, nk_placeholders[i], strlen(nk_placeholders[i])) == 0;
        }
        if (!known) {
            size_t len = strcspn(p, "}");
            sp_err_set(err, SP_EINVAL, "%s: unknown placeholder \"%.*s%s\"", opt, (int)len, p,
                       p[len] == '}' ? "}" : "");
            sp_err_hint(err, "use {source}, {schema} and {table}");
            return SP_EINVAL;
        }
    }
    return 0;
}

static void nk_template_expand(const char *tpl, const struct sp_rec *r, struct sp_buf *out)
{
    const char *vals[] = {r->source != NULL ? r->source : "", r->schema, r->table};
    sp_buf_reset(out);
    const char *p = tpl;
    while (*p != '\0') {
        bool done = false;
        if (*p == '{') {
            for (size_t i = 0; i < SP_ARRAY_LEN(nk_placeholders) && !done; i++) {
                size_t n = strlen(nk_placeholders[i]);
                if (strncmp(p, nk_placeholders[i], n) == 0) {
                    sp_buf_puts(out, vals[i]);
                    p += n;
                    done = true;
                }
            }
        }
        if (!done) {
            sp_buf_putc(out, *p++);
        }
    }
}

/* ---- the bearer token ---- */

struct nk_token {
    const char *file;           /* from the conf, or NULL */
    const char *env;            /* from the conf, or NULL */
    char *value;                /* NULL: no Authorization header */
    struct sp_file_stamp stamp; /* of the file as last read */
};

/*
 * Makes t->value current: the environment variable, or the file when it
 * changed since it was last read (another inode, mtime or size), or always
 * when force. Errors are retriable at run time: a mounted secret may be
 * replaced any moment.
 */
static int nk_token_load(struct nk_token *t, bool force, struct sp_err *err)
{
    if (t->env != NULL) {
        const char *v = getenv(t->env);
        if (v == NULL || v[0] == '\0') {
            return sp_err_set(err, SP_EINVAL, "environment variable %s (token_env) is %s", t->env,
                              v == NULL ? "not set" : "empty");
        }
        if (t->value == NULL || strcmp(t->value, v) != 0) {
            free(t->value);
            t->value = sp_xstrdup(v);
        }
        return 0;
    }
    if (t->file == NULL) {
        return 0;
    }
    char *buf = NULL;
    size_t len = 0;
    struct sp_file_stamp now;
    int rc = sp_file_read_changed(t->file, "token_file", &t->stamp, force, NK_TOKEN_MAX, &buf, &len,
                                  &now, err);
    if (rc <= 0) {
        return rc;
    }
    /* A mounted secret often ends with a newline; tokens never hold whitespace. */
    while (len > 0 && strchr(" \t\r\n", buf[len - 1]) != NULL) {
        len--;
    }
    size_t start = strspn(buf, " \t\r\n");
    buf[len] = '\0';
    if (start >= len) {
        free(buf);
        return sp_err_set(err, SP_EINVAL, "token_file %s is empty", t->file);
    }
    if (strpbrk(buf + start, "\r\n") != NULL) {
        free(buf);
        return sp_err_set(err, SP_EINVAL, "token_file %s holds more than one line", t->file);
    }
    free(t->value);
    t->value = sp_xstrdup(buf + start);
    free(buf);
    t->stamp = now;
    return 0;
}

/* ---- state ---- */

struct nk_item {
    struct sp_rec *r;
    char *json; /* the event as sent: the record's value, edited as the options say */
    size_t len;
};

struct nk_job;

/* The events of one batch for one event type. */
struct nk_group {
    struct nk_job *job;
    char *name;
    char *url; /* {base}/event-types/{name}/events */
    struct nk_item *items;
    size_t nitems;
    size_t *pend; /* indexes of the items not yet published or rejected, in order */
    size_t npend;
    size_t nsent; /* the first nsent of pend are in the request in flight */
    size_t cap;   /* most items per request (lowered by a 413) */
    CURL *easy;
    struct curl_slist *hdrs;
    struct sp_buf body;
    struct sp_buf resp;
    int64_t retry_after_ms; /* from the response's Retry-After, -1 if none */
    int64_t due_ms;         /* monotonic: not sent before */
    int attempt;            /* failed attempts in a row */
    bool auth_retry;        /* the last answer was a 401 */
};

struct nk_job {
    struct sp_batch *b;
    struct nk_group *groups;
    int ngroups;
    int open; /* groups with items left */
    struct nk_job *next;
};

struct nk_state {
    const struct nakadi_conf *conf;
    struct sp_logctx *log;
    char *base; /* url without a trailing '/' */
    CURLM *multi;
    struct nk_job *jobs;
    int inflight; /* requests in flight */
    struct nk_token tok;
    struct sp_buf tmp;
};

static void nk_group_free(struct nk_group *g)
{
    for (size_t i = 0; i < g->nitems; i++) {
        free(g->items[i].json);
    }
    free(g->items);
    free(g->pend);
    free(g->name);
    free(g->url);
    curl_slist_free_all(g->hdrs);
    sp_buf_fini(&g->body);
    sp_buf_fini(&g->resp);
}

static void nk_job_free(struct nk_job *job)
{
    for (int i = 0; i < job->ngroups; i++) {
        nk_group_free(&job->groups[i]);
    }
    free(job->groups);
    free(job);
}

static int nk_state_new(struct sp_sink *sk, struct nk_state **out, struct sp_err *err)
{
    const struct nakadi_conf *conf = sk->conf;
    *out = NULL;
    if (strncmp(conf->url, "http://", 7) != 0 && strncmp(conf->url, "https://", 8) != 0) {
        sp_err_set(err, SP_EINVAL, "url: expected http://host[:port][/path] or https://...");
        return SP_EINVAL;
    }
    if (nk_template_check("event_type", conf->event_type, err) != 0 ||
        (conf->data_type != NULL && nk_template_check("data_type", conf->data_type, err) != 0)) {
        return SP_EINVAL;
    }
    if (conf->token_file != NULL && conf->token_env != NULL) {
        sp_err_set(err, SP_EINVAL, "token_file and token_env are both set");
        sp_err_hint(err, "keep one of them");
        return SP_EINVAL;
    }
    int rc = sp_http_init(err);
    if (rc != 0) {
        return rc;
    }
    struct nk_state *st = sp_xcalloc(1, sizeof(*st));
    st->conf = conf;
    st->log = &sk->log;
    st->base = sp_xstrdup(conf->url);
    size_t n = strlen(st->base);
    while (n > 0 && st->base[n - 1] == '/') {
        st->base[--n] = '\0';
    }
    st->tok.file = conf->token_file;
    st->tok.env = conf->token_env;
    sp_buf_init(&st->tmp);
    *out = st;
    return 0;
}

/* Removes the job's requests in flight and frees it. */
static void nk_job_drop(struct nk_state *st, struct nk_job *job)
{
    for (int i = 0; i < job->ngroups; i++) {
        if (job->groups[i].easy != NULL) {
            curl_multi_remove_handle(st->multi, job->groups[i].easy);
            curl_easy_cleanup(job->groups[i].easy);
            job->groups[i].easy = NULL;
            st->inflight--;
        }
    }
    nk_job_free(job);
}

static void nk_state_free(struct nk_state *st)
{
    if (st == NULL) {
        return;
    }
    while (st->jobs != NULL) {
        struct nk_job *job = st->jobs;
        st->jobs = job->next;
        nk_job_drop(st, job);
    }
    if (st->multi != NULL) {
        curl_multi_cleanup(st->multi);
    }
    free(st->tok.value);
    free(st->base);
    sp_buf_fini(&st->tmp);
    free(st);
}

/* ---- HTTP plumbing ---- */

static size_t nk_on_header(char *p, size_t size, size_t n, void *ctx)
{
    struct nk_group *g = ctx;
    size_t len = size * n;
    char v[128];
    if (sp_http_header_value(p, len, "retry-after", v, sizeof(v))) {
        char *end = NULL;
        long secs = strtol(v, &end, 10);
        if (end != v && *end == '\0' && secs >= 0) {
            g->retry_after_ms = (int64_t)secs * 1000;
        } else {
            time_t when = curl_getdate(v, NULL);
            if (when >= 0) {
                int64_t ms = ((int64_t)when - (int64_t)time(NULL)) * 1000;
                g->retry_after_ms = ms > 0 ? ms : 0;
            }
        }
    }
    return len;
}

/* Options every request shares: TLS, timeouts, token. */
static int nk_easy_common(struct nk_state *st, CURL *e, struct curl_slist **hdrs)
{
    const struct nakadi_conf *conf = st->conf;
    sp_http_easy_common(e, conf->connect_timeout_ms, conf->request_timeout_ms, conf->tls_verify,
                        conf->ca_file);
    *hdrs = curl_slist_append(*hdrs, "Accept: application/json, application/problem+json");
    if (st->tok.value != NULL) {
        sp_buf_reset(&st->tmp);
        sp_buf_printf(&st->tmp, "Authorization: Bearer %s", st->tok.value);
        *hdrs = curl_slist_append(*hdrs, st->tmp.data);
    }
    if (conf->flow_id != NULL) {
        sp_buf_reset(&st->tmp);
        sp_buf_printf(&st->tmp, "X-Flow-Id: %s", conf->flow_id);
        *hdrs = curl_slist_append(*hdrs, st->tmp.data);
    }
    return 0;
}

/* url-encoded name appended to out. */
static void nk_put_escaped(struct sp_buf *out, const char *name)
{
    char *esc = curl_easy_escape(NULL, name, 0);
    sp_buf_puts(out, esc != NULL ? esc : name);
    curl_free(esc);
}

/*
 * A readable summary of an error answer: a Problem JSON's title and detail,
 * else the start of the body. Into out (reset).
 */
static void nk_problem(const struct sp_buf *resp, struct sp_buf *out)
{
    sp_buf_reset(out);
    struct sp_json_span body = {resp->data != NULL ? resp->data : "", resp->len};
    struct sp_json_span v;
    if (sp_json_valid(body.p, body.len)) {
        if (sp_json_member(body, "title", &v)) {
            sp_json_str(v, out);
        }
        if (sp_json_member(body, "detail", &v)) {
            if (out->len > 0) {
                sp_buf_puts(out, ": ");
            }
            if (sp_json_str(v, out) != 0) {
                sp_buf_append(out, v.p, v.len);
            }
        }
        if (out->len > 0) {
            return;
        }
    }
    size_t n = resp->len < NK_DETAIL_MAX ? resp->len : NK_DETAIL_MAX;
    for (size_t i = 0; i < n; i++) {
        char c = resp->data[i];
        sp_buf_putc(out, c == '\n' || c == '\r' ? ' ' : c);
    }
    if (out->len == 0) {
        sp_buf_puts(out, "no details");
    }
}

/* ---- preparing a batch ---- */

/*
 * The compaction key from the record's key: the value of a one-column key
 * (strings unquoted), else the key's JSON text. False without a key.
 */
static bool nk_compaction_key(const struct sp_rec *r, struct sp_buf *out)
{
    sp_buf_reset(out);
    if (r->key == NULL || r->key_len == 0) {
        return false;
    }
    struct sp_json_span key = {r->key, r->key_len};
    struct sp_json_iter it;
    struct sp_json_span k;
    struct sp_json_span v;
    struct sp_json_span only = {NULL, 0};
    int n = 0;
    if (sp_json_iter_init(&it, key, '{') == 0) {
        int rc;
        while ((rc = sp_json_iter_next(&it, &k, &v)) == 1) {
            only = v;
            n++;
        }
        if (rc < 0) {
            n = 0;
        }
    }
    if (n == 1 && only.p[0] != '{' && only.p[0] != '[') {
        if (sp_json_str(only, out) != 0) {
            sp_buf_append(out, only.p, only.len);
        }
        return true;
    }
    sp_buf_append(out, r->key, r->key_len);
    return true;
}

static void nk_reject(struct sp_rec *r, int code, const char *fmt, ...) SP_PRINTF(3, 4);

static void nk_reject(struct sp_rec *r, int code, const char *fmt, ...)
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
}

/*
 * The event as it will be sent: the record's value with data_type replaced
 * (events the nakadi format wrote for row changes start with it) and the
 * partition compaction key added to metadata, as the options say. Returns
 * false when the record was rejected instead.
 */
static bool nk_render(struct nk_state *st, const char *type, struct sp_rec *r, struct nk_item *it)
{
    const struct nakadi_conf *conf = st->conf;
    static const char dt_prefix[] = "{\"data_type\":\"";
    struct sp_buf out;
    sp_buf_init(&out);
    const char *v = r->value;
    size_t len = r->value_len;
    if (conf->data_type != NULL && len > sizeof(dt_prefix) - 1 &&
        memcmp(v, dt_prefix, sizeof(dt_prefix) - 1) == 0) {
        struct sp_json_span s = {v + sizeof(dt_prefix) - 2, 0};
        const char *end = sp_json_skip(s.p, v + len);
        if (end != NULL) {
            nk_template_expand(conf->data_type, r, &st->tmp);
            sp_buf_puts(&out, "{\"data_type\":");
            sp_buf_put_json_str(&out, st->tmp.data, st->tmp.len);
            sp_buf_append(&out, end, (size_t)(v + len - end));
            v = out.data;
            len = out.len;
        }
    }
    if (conf->partition_compaction_key && nk_compaction_key(r, &st->tmp)) {
        struct sp_json_span obj = {v, len};
        struct sp_json_span meta;
        struct sp_json_span tmp;
        if (sp_json_member(obj, "metadata", &meta) && meta.p[0] == '{' &&
            !sp_json_member(meta, "partition_compaction_key", &tmp)) {
            struct sp_buf ed;
            sp_buf_init(&ed);
            size_t at = (size_t)(meta.p - v) + 1;
            sp_buf_append(&ed, v, at);
            sp_buf_puts(&ed, "\"partition_compaction_key\":");
            sp_buf_put_json_str(&ed, st->tmp.data, st->tmp.len);
            if (sp_json_ws(meta.p + 1, v + len)[0] != '}') {
                sp_buf_putc(&ed, ',');
            }
            sp_buf_append(&ed, v + at, len - at);
            sp_buf_fini(&out);
            out = ed;
            v = out.data;
            len = out.len;
        }
    }
    struct sp_json_span whole = {v, len};
    struct sp_json_span meta_at;
    if (len > 0 && v[0] == '{' && !sp_json_member(whole, "metadata", &meta_at)) {
        /*
         * An object without metadata (a dead letter, say): Nakadi needs one.
         * The eid is derived from the event type and the record's id, so a
         * retry publishes the same one.
         */
        struct sp_buf ed;
        char eid[SP_UUID_STRLEN];
        char ts[32];
        sp_buf_init(&ed);
        sp_buf_puts(&ed, "{\"metadata\":{\"eid\":\"");
        sp_buf_puts(&ed, sp_nakadi_eid(type, strlen(type), r->id, eid));
        sp_buf_puts(&ed, "\",\"occurred_at\":\"");
        sp_buf_puts(&ed, sp_time_iso_ms(r->commit_time_us, ts));
        sp_buf_puts(&ed, "\"}");
        if (sp_json_ws(v + 1, v + len)[0] != '}') {
            sp_buf_putc(&ed, ',');
        }
        sp_buf_append(&ed, v + 1, len - 1);
        sp_buf_fini(&out);
        out = ed;
        v = out.data;
        len = out.len;
    }
    if (len == 0 || v[0] != '{') {
        nk_reject(r, SP_EREJECTED,
                  "event type \"%s\": the event is not a JSON object; use format nakadi", type);
        sp_buf_fini(&out);
        return false;
    }
    if ((int64_t)len > conf->max_event_bytes) {
        nk_reject(r, SP_EREJECTED,
                  "event type \"%s\": the event has %zu bytes, more than max_event_bytes (%lld)",
                  type, len, (long long)conf->max_event_bytes);
        sp_buf_fini(&out);
        return false;
    }
    if (v == out.data) {
        it->json = sp_buf_steal(&out);
    } else {
        it->json = sp_xmalloc(len + 1);
        memcpy(it->json, v, len);
        it->json[len] = '\0';
    }
    it->len = len;
    it->r = r;
    sp_buf_fini(&out);
    return true;
}

static struct nk_job *nk_job_new(struct nk_state *st, struct sp_batch *b)
{
    struct nk_job *job = sp_xcalloc(1, sizeof(*job));
    job->b = b;
    struct sp_buf name;
    sp_buf_init(&name);
    for (struct sp_rec *r = b->head; r != NULL; r = r->next) {
        free(r->err); /* never set on a first submit; a retried batch is decided again */
        r->err = NULL;
        if (r->dest != NULL) {
            sp_buf_reset(&name);
            sp_buf_puts(&name, r->dest);
        } else {
            nk_template_expand(st->conf->event_type, r, &name);
        }
        struct nk_group *g = NULL;
        for (int i = 0; i < job->ngroups && g == NULL; i++) {
            if (strcmp(job->groups[i].name, name.data) == 0) {
                g = &job->groups[i];
            }
        }
        struct nk_item it;
        if (!nk_render(st, name.data, r, &it)) {
            continue;
        }
        if (g == NULL) {
            job->groups =
                sp_xrealloc(job->groups, sizeof(*job->groups) * (size_t)(job->ngroups + 1));
            g = &job->groups[job->ngroups++];
            memset(g, 0, sizeof(*g));
            g->name = sp_xstrdup(name.data);
            struct sp_buf url;
            sp_buf_init(&url);
            sp_buf_printf(&url, "%s/event-types/", st->base);
            nk_put_escaped(&url, g->name);
            sp_buf_puts(&url, "/events");
            g->url = sp_buf_steal(&url);
            g->cap = (size_t)st->conf->max_batch_size;
            sp_buf_init(&g->body);
            sp_buf_init(&g->resp);
        }
        g->items = sp_xrealloc(g->items, sizeof(*g->items) * (g->nitems + 1));
        g->items[g->nitems++] = it;
    }
    sp_buf_fini(&name);
    /* Group pointers are stable from here on. */
    for (int i = 0; i < job->ngroups; i++) {
        struct nk_group *g = &job->groups[i];
        g->job = job;
        g->pend = sp_xmalloc(sizeof(*g->pend) * g->nitems);
        for (size_t k = 0; k < g->nitems; k++) {
            g->pend[k] = k;
        }
        g->npend = g->nitems;
    }
    job->open = job->ngroups;
    return job;
}

/* ---- requests ---- */

static int64_t nk_backoff_ms(int attempt)
{
    int64_t cap = NK_FIRST_RETRY_MS;
    for (int i = 1; i < attempt && cap < NK_MAX_RETRY_MS; i++) {
        cap *= 2;
    }
    if (cap > NK_MAX_RETRY_MS) {
        cap = NK_MAX_RETRY_MS;
    }
    return cap / 2 + (int64_t)(rand() % (int)(cap / 2 + 1));
}

/* The group is sent again later: backoff, or Retry-After when the server said so. */
static void nk_retry_later(struct sp_sink *sk, struct nk_group *g, const char *why)
{
    g->attempt++;
    int64_t wait = nk_backoff_ms(g->attempt);
    if (g->retry_after_ms >= 0) {
        wait = g->retry_after_ms;
    }
    g->due_ms = sp_time_mono_ms() + wait;
    sp_log_warn(&sk->log, "event type \"%s\": %s; sending %zu events again in %lld ms (attempt %d)",
                g->name, why, g->npend, (long long)wait, g->attempt + 1);
}

/* Starts the request for the first events of g->pend. */
static void nk_send(struct sp_sink *sk, struct nk_group *g)
{
    struct nk_state *st = sk->state;
    const struct nakadi_conf *conf = st->conf;
    struct sp_err err;
    sp_err_clear(&err);
    if (nk_token_load(&st->tok, g->auth_retry, &err) != 0) {
        g->retry_after_ms = -1;
        nk_retry_later(sk, g, err.msg);
        return;
    }
    g->auth_retry = false;
    sp_buf_reset(&g->body);
    sp_buf_reset(&g->resp);
    sp_buf_putc(&g->body, '[');
    size_t n = 0;
    while (n < g->npend && n < g->cap) {
        const struct nk_item *it = &g->items[g->pend[n]];
        if (n > 0 && (int64_t)(g->body.len + it->len + 2) > conf->max_batch_bytes) {
            break;
        }
        if (n > 0) {
            sp_buf_putc(&g->body, ',');
        }
        sp_buf_append(&g->body, it->json, it->len);
        n++;
    }
    sp_buf_putc(&g->body, ']');
    g->nsent = n;
    g->retry_after_ms = -1;
    CURL *e = curl_easy_init();
    if (e == NULL) {
        nk_retry_later(sk, g, "libcurl could not make a request handle");
        return;
    }
    curl_slist_free_all(g->hdrs);
    g->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    nk_easy_common(st, e, &g->hdrs);
    curl_easy_setopt(e, CURLOPT_URL, g->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, g->hdrs);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, g->body.data);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)g->body.len);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sp_http_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &g->resp);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, nk_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, g);
    curl_easy_setopt(e, CURLOPT_PRIVATE, g);
    CURLMcode mc = curl_multi_add_handle(st->multi, e);
    if (mc != CURLM_OK) {
        curl_easy_cleanup(e);
        nk_retry_later(sk, g, curl_multi_strerror(mc));
        return;
    }
    g->easy = e;
    st->inflight++;
    sp_log_debug(&sk->log, "event type \"%s\": publishing %zu events (%zu bytes, partition %d)",
                 g->name, n, g->body.len, g->job->b->part);
}

/* Removes the first nsent entries of pend, keeping those keep[i] says, in order. */
static void nk_settle_sent(struct nk_group *g, const bool *keep)
{
    size_t w = 0;
    for (size_t i = 0; i < g->nsent; i++) {
        if (keep != NULL && keep[i]) {
            g->pend[w++] = g->pend[i];
        }
    }
    for (size_t i = g->nsent; i < g->npend; i++) {
        g->pend[w++] = g->pend[i];
    }
    g->npend = w;
    g->nsent = 0;
}

static bool nk_step_is_validation(struct sp_json_span step)
{
    return sp_json_key_is(step, "validating") || sp_json_key_is(step, "enriching") ||
           sp_json_key_is(step, "partitioning");
}

/*
 * A 207 or 422: the BatchItemResponse array, one per event sent, in order.
 * Returns the number of events settled (published or rejected), or -1 when
 * the answer cannot be read (then nothing is settled).
 */
static long nk_items(struct sp_sink *sk, struct nk_group *g, long status, size_t *failed)
{
    struct nk_state *st = sk->state;
    struct sp_json_span body = {g->resp.data != NULL ? g->resp.data : "", g->resp.len};
    struct sp_json_iter it;
    *failed = 0;
    if (!sp_json_valid(body.p, body.len) || sp_json_iter_init(&it, body, '[') != 0) {
        return -1;
    }
    bool *keep = sp_xcalloc(g->nsent ? g->nsent : 1, sizeof(*keep));
    struct sp_json_span v;
    size_t i = 0;
    int rc;
    while ((rc = sp_json_iter_next(&it, NULL, &v)) == 1 && i < g->nsent) {
        struct sp_json_span ps;
        struct sp_json_span step = {"\"none\"", 6};
        if (!sp_json_member(v, "publishing_status", &ps)) {
            break;
        }
        sp_json_member(v, "step", &step);
        if (sp_json_key_is(ps, "submitted")) {
            i++;
            continue;
        }
        struct sp_rec *r = g->items[g->pend[i]].r;
        if (sp_json_key_is(ps, "failed") && nk_step_is_validation(step)) {
            struct sp_json_span d;
            sp_buf_reset(&st->tmp);
            if (!sp_json_member(v, "detail", &d) || sp_json_str(d, &st->tmp) != 0) {
                sp_buf_puts(&st->tmp, "no details");
            }
            struct sp_buf sname;
            sp_buf_init(&sname);
            sp_json_str(step, &sname);
            nk_reject(r, SP_EREJECTED,
                      "nakadi rejected the event for event type \"%s\" (HTTP %ld, step %s): %s",
                      g->name, status, sname.data != NULL ? sname.data : "?", st->tmp.data);
            sp_log_warn(&sk->log, "event type \"%s\": event %s rejected (HTTP %ld, step %s): %s",
                        g->name, r->id, status, sname.data != NULL ? sname.data : "?",
                        st->tmp.data);
            sp_buf_fini(&sname);
        } else {
            keep[i] = true;
            (*failed)++;
        }
        i++;
    }
    if (rc < 0 || i != g->nsent) {
        /* Not the answer the API describes: decide nothing from it. */
        for (size_t k = 0; k < g->nsent; k++) {
            struct sp_rec *r = g->items[g->pend[k]].r;
            free(r->err);
            r->err = NULL;
        }
        free(keep);
        return -1;
    }
    size_t before = g->npend;
    nk_settle_sent(g, keep);
    free(keep);
    return (long)(before - g->npend);
}

/* Rejects every event g has left (403 and other permanent answers). */
static void nk_reject_all(struct nk_group *g, long status, const char *detail)
{
    for (size_t i = 0; i < g->npend; i++) {
        nk_reject(g->items[g->pend[i]].r, SP_EREJECTED,
                  "nakadi refused event type \"%s\" (HTTP %ld): %s", g->name, status, detail);
    }
    g->npend = 0;
    g->nsent = 0;
}

static void nk_group_done(struct sp_sink *sk, struct nk_group *g)
{
    struct nk_state *st = sk->state;
    struct nk_job *job = g->job;
    if (--job->open > 0) {
        return;
    }
    struct nk_job **pp = &st->jobs;
    while (*pp != job) {
        pp = &(*pp)->next;
    }
    *pp = job->next;
    struct sp_batch *b = job->b;
    nk_job_free(job);
    sp_batch_done(b, 0, NULL);
}

/* What an answer (or a transport failure) means for the request's events. */
static void nk_finish(struct sp_sink *sk, struct nk_group *g, CURLcode cc)
{
    struct nk_state *st = sk->state;
    long status = 0;
    curl_easy_getinfo(g->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(st->multi, g->easy);
    curl_easy_cleanup(g->easy);
    g->easy = NULL;
    st->inflight--;
    char why[NK_DETAIL_MAX + 128];
    if (cc != CURLE_OK) {
        snprintf(why, sizeof(why), "could not reach %s: %s", st->base, curl_easy_strerror(cc));
        g->retry_after_ms = -1;
        nk_retry_later(sk, g, why);
        return;
    }
    struct sp_buf detail;
    sp_buf_init(&detail);
    if (status == 200) {
        g->attempt = 0;
        nk_settle_sent(g, NULL);
    } else if (status == 207 || status == 422) {
        size_t failed = 0;
        long settled = nk_items(sk, g, status, &failed);
        if (settled < 0) {
            nk_problem(&g->resp, &detail);
            snprintf(why, sizeof(why),
                     "HTTP %ld with an answer that is not a BatchItemResponse "
                     "array of the events sent: %s",
                     status, detail.data);
            nk_retry_later(sk, g, why);
        } else if (failed > 0) {
            snprintf(why, sizeof(why), "HTTP %ld: %zu of %zu events not published", status, failed,
                     (size_t)settled + failed);
            if (settled > 0 && status == 422) {
                /* The rejected ones are out: the rest may go at once. */
                g->attempt = 0;
                g->due_ms = 0;
                sp_log_info(&sk->log,
                            "event type \"%s\": %s; sending them again without the "
                            "rejected ones",
                            g->name, why);
            } else {
                if (settled > 0) {
                    /* Progress: a partly failing broker, not a dead one; keep the backoff short. */
                    g->attempt = 0;
                }
                nk_retry_later(sk, g, why);
            }
        } else {
            g->attempt = 0;
        }
    } else if (status == 401) {
        nk_problem(&g->resp, &detail);
        snprintf(why, sizeof(why), "HTTP 401 (%s); reading the token again", detail.data);
        g->auth_retry = true;
        g->retry_after_ms = -1;
        nk_retry_later(sk, g, why);
    } else if (status == 429 || status >= 500 || status == 404 || status == 408) {
        nk_problem(&g->resp, &detail);
        snprintf(why, sizeof(why), "HTTP %ld: %s", status, detail.data);
        nk_retry_later(sk, g, why);
    } else if (status == 413 && g->nsent > 1) {
        g->cap = g->nsent / 2;
        sp_log_warn(&sk->log,
                    "event type \"%s\": HTTP 413, request too large; sending at most "
                    "%zu events per request",
                    g->name, g->cap);
    } else {
        /* 403, 400, 413 for one event, anything else: the same request would fail again. */
        nk_problem(&g->resp, &detail);
        sp_log_error(&sk->log,
                     "event type \"%s\": HTTP %ld: %s; %zu events go to the stream's "
                     "recovery policy",
                     g->name, status, detail.data, g->npend);
        nk_reject_all(g, status, detail.data);
    }
    sp_buf_fini(&detail);
    if (g->npend == 0) {
        nk_group_done(sk, g);
    }
}

/* Starts every group that is due and idle; returns ms until the next one is due, or -1. */
static int64_t nk_kick(struct sp_sink *sk)
{
    struct nk_state *st = sk->state;
    int64_t now = sp_time_mono_ms();
    int64_t next = -1;
    struct nk_job *job = st->jobs;
    while (job != NULL) {
        struct nk_job *jnext = job->next;
        for (int i = 0; i < job->ngroups; i++) {
            struct nk_group *g = &job->groups[i];
            if (g->easy != NULL || g->npend == 0) {
                continue;
            }
            if (g->due_ms <= now) {
                nk_send(sk, g);
            }
            if (g->easy == NULL && g->npend > 0) {
                int64_t w = g->due_ms > now ? g->due_ms - now : 0;
                next = next < 0 || w < next ? w : next;
            }
        }
        job = jnext;
    }
    return next;
}

static void nk_done(void *sk, void *group, CURLcode cc)
{
    nk_finish(sk, group, cc);
}

static void nk_drive(struct sp_sink *sk)
{
    struct nk_state *st = sk->state;
    sp_http_drive(st->multi, nk_done, sk);
}

/* ---- ops ---- */

static int nakadi_open(struct sp_sink *sk, struct sp_err *err)
{
    const struct nakadi_conf *conf = sk->conf;
    struct nk_state *st;
    int rc = nk_state_new(sk, &st, err);
    if (rc != 0) {
        return rc;
    }
    if (nk_token_load(&st->tok, true, err) != 0) {
        nk_state_free(st);
        return err->code;
    }
    st->multi = curl_multi_init();
    if (st->multi == NULL) {
        nk_state_free(st);
        return sp_err_set(err, SP_EIO, "libcurl could not make a multi handle");
    }
    if (!conf->tls_verify) {
        sp_log_warn(&sk->log, "tls_verify is false: the server's certificate is not checked, "
                              "so anyone in between can read the events and the token");
    }
    sk->state = st;
    sp_log_info(&sk->log, "publishing to %s, event type \"%s\"%s", st->base, conf->event_type,
                st->tok.value != NULL ? ", with a bearer token" : "");
    return 0;
}

static int nakadi_submit(struct sp_sink *sk, struct sp_batch *b, struct sp_err *err)
{
    (void)err;
    struct nk_state *st = sk->state;
    struct nk_job *job = nk_job_new(st, b);
    if (job->ngroups == 0) {
        /* Every record was rejected before sending. */
        nk_job_free(job);
        sp_batch_done(b, 0, NULL);
        return 0;
    }
    job->next = st->jobs;
    st->jobs = job;
    nk_kick(sk);
    nk_drive(sk);
    return 0;
}

static int nakadi_poll(struct sp_sink *sk, int timeout_ms)
{
    struct nk_state *st = sk->state;
    int64_t next = nk_kick(sk);
    int wait = timeout_ms;
    if (st->inflight == 0 && st->jobs == NULL && wait > NK_IDLE_POLL_MS) {
        wait = NK_IDLE_POLL_MS; /* new batches are handed over between polls */
    }
    if (next >= 0 && next < wait) {
        wait = (int)next;
    }
    if (wait > 0) {
        curl_multi_poll(st->multi, NULL, 0, wait, NULL);
    }
    nk_drive(sk);
    nk_kick(sk);
    return 0;
}

/* Hands back every batch not done as retriable: they stay unconfirmed. */
static void nk_give_back(struct sp_sink *sk, const char *why)
{
    struct nk_state *st = sk->state;
    struct sp_err e;
    sp_err_set(&e, SP_ESTOPPED, "%s", why);
    e.retriable = true;
    while (st->jobs != NULL) {
        struct nk_job *job = st->jobs;
        st->jobs = job->next;
        struct sp_batch *b = job->b;
        nk_job_drop(st, job);
        sp_batch_done(b, SP_ESTOPPED, &e);
    }
}

static int nakadi_flush(struct sp_sink *sk, int timeout_ms, struct sp_err *err)
{
    (void)err;
    struct nk_state *st = sk->state;
    if (st == NULL) {
        return 0;
    }
    int64_t deadline = sp_time_mono_ms() + timeout_ms;
    /* Wait for answers to requests in flight; a retry waiting for its backoff is not started. */
    while (st->inflight > 0 && sp_time_mono_ms() < deadline) {
        curl_multi_poll(st->multi, NULL, 0, 100, NULL);
        nk_drive(sk);
    }
    if (st->jobs != NULL) {
        nk_give_back(sk, "stopped before Nakadi acknowledged every event");
    }
    return 0;
}

static int nakadi_check(struct sp_sink *sk, struct sp_err *err)
{
    const struct nakadi_conf *conf = sk->conf;
    struct nk_state *st;
    int rc = nk_state_new(sk, &st, err);
    if (rc == 0) {
        rc = nk_token_load(&st->tok, true, err);
    }
    if (rc != 0) {
        nk_state_free(st);
        return rc;
    }
    struct sp_buf url;
    struct sp_buf resp;
    sp_buf_init(&url);
    sp_buf_init(&resp);
    bool one = strchr(conf->event_type, '{') == NULL;
    sp_buf_printf(&url, "%s/event-types", st->base);
    if (one) {
        sp_buf_putc(&url, '/');
        nk_put_escaped(&url, conf->event_type);
    }
    CURL *e = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    nk_easy_common(st, e, &hdrs);
    curl_easy_setopt(e, CURLOPT_URL, url.data);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sp_http_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &resp);
    CURLcode cc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    struct sp_buf detail;
    sp_buf_init(&detail);
    if (cc != CURLE_OK) {
        rc = sp_err_set(err, SP_ECONN, "could not reach %s: %s", st->base, curl_easy_strerror(cc));
    } else if (status == 404 && one) {
        rc = sp_err_set(err, SP_EINVAL, "event type \"%s\" does not exist on %s", conf->event_type,
                        st->base);
        sp_err_hint(err, "create it (POST /event-types), or correct event_type");
    } else if (status != 200) {
        nk_problem(&resp, &detail);
        rc = sp_err_set(err, SP_ESERVER, "GET %s: HTTP %ld: %s", url.data, status, detail.data);
        if (status == 401 || status == 403) {
            sp_err_hint(err, "check the token (token_file or token_env) and its scopes "
                             "(nakadi.event_stream.write)");
        }
    }
    sp_buf_fini(&detail);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(e);
    sp_buf_fini(&url);
    sp_buf_fini(&resp);
    nk_state_free(st);
    return rc;
}

static void nakadi_close(struct sp_sink *sk)
{
    struct nk_state *st = sk->state;
    if (st == NULL) {
        return;
    }
    if (st->jobs != NULL) {
        nk_give_back(sk, "closed before Nakadi acknowledged every event");
    }
    nk_state_free(st);
    sk->state = NULL;
}

const struct sp_sink_ops sp_sink_nakadi = {
    .type = "nakadi",
    .summary = "publish events to Nakadi event types (HTTP, per-event outcomes, retries with "
               "the same eid)",
    .opts = nakadi_opts,
    .conf_size = sizeof(struct nakadi_conf),
    .open = nakadi_open,
    .submit = nakadi_submit,
    .poll = nakadi_poll,
    .flush = nakadi_flush,
    .check = nakadi_check,
    .close = nakadi_close,
};
