// SPDX-License-Identifier: Apache-2.0
/*
 * The Nakadi server for tests (nakadi_server.h): publishing API of the
 * spec digest with fault injection, on libmicrohttpd.
 */
#include "lib/nakadi_server.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/http_server.h"
#include "util/buf.h"
#include "util/hash.h"
#include "util/json.h"

#define NKS_MAX_TYPES   16
#define NKS_EID_BUCKETS 8192
#define NKS_MAX_BODY    (64u * 1024 * 1024)

struct nks_type {
    char *name;
    char *category;
    int nparts;
    bool compacted;
    char *partition_field;
    bool forbidden;
    struct sp_nk_event *ev;
    size_t n;
    size_t cap;
};

struct nks_eid {
    struct nks_eid *next;
    char *eid;
    long sent;
    long failed;
};

struct sp_nk_server {
    struct sp_http_server *http;
    pthread_mutex_t mu;
    struct nks_type types[NKS_MAX_TYPES];
    int ntypes;
    char *token;
    int fail_every;
    uint64_t published_seen; /* events that reached the publishing step */
    char *reject_needle;
    char *reject_detail;
    char *reject_type; /* NULL: every event type */
    int respond_status;
    int respond_count;
    int respond_retry_after;
    int delay_ms;
    int delay_count;
    uint64_t order;
    struct nks_eid *eids[NKS_EID_BUCKETS];
    struct sp_nk_request *reqs;
    size_t nreqs;
    size_t reqs_cap;
};

static struct nks_type *nks_type(struct sp_nk_server *s, const char *name, size_t len)
{
    for (int i = 0; i < s->ntypes; i++) {
        if (strlen(s->types[i].name) == len && memcmp(s->types[i].name, name, len) == 0) {
            return &s->types[i];
        }
    }
    return NULL;
}

static struct nks_eid *nks_eid(struct sp_nk_server *s, const char *eid)
{
    uint32_t h = sp_hash_fnv1a(eid, strlen(eid)) % NKS_EID_BUCKETS;
    for (struct nks_eid *e = s->eids[h]; e != NULL; e = e->next) {
        if (strcmp(e->eid, eid) == 0) {
            return e;
        }
    }
    struct nks_eid *e = calloc(1, sizeof(*e));
    e->eid = strdup(eid);
    e->next = s->eids[h];
    s->eids[h] = e;
    return e;
}

/* ---- answers ---- */

static enum MHD_Result nks_answer(struct MHD_Connection *c, unsigned status, const char *body,
                                  int retry_after, const char *ctype)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", ctype);
    if (retry_after >= 0) {
        char v[32];
        snprintf(v, sizeof(v), "%d", retry_after);
        MHD_add_response_header(r, "Retry-After", v);
    }
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static const char *nks_title(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

static enum MHD_Result nks_problem(struct MHD_Connection *c, int status, const char *detail,
                                   int retry_after)
{
    struct sp_buf b;
    sp_buf_init(&b);
    sp_buf_printf(&b,
                  "{\"type\":\"http://httpstatus.es/%d\",\"title\":\"%s\",\"status\":%d,"
                  "\"detail\":",
                  status, nks_title(status), status);
    sp_buf_put_json_str(&b, detail, strlen(detail));
    sp_buf_putc(&b, '}');
    enum MHD_Result rc =
        nks_answer(c, (unsigned)status, b.data, retry_after, "application/problem+json");
    sp_buf_fini(&b);
    return rc;
}

/* ---- validation ---- */

static bool nks_is_uuid(struct sp_json_span v, struct sp_buf *tmp)
{
    sp_buf_reset(tmp);
    if (sp_json_str(v, tmp) != 0 || tmp->len != 36) {
        return false;
    }
    for (int i = 0; i < 36; i++) {
        char ch = tmp->data[i];
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? ch != '-' : strchr("0123456789abcdefABCDEF", ch) == NULL || ch == '\0') {
            return false;
        }
    }
    return true;
}

/* NULL when ev is a valid event of t, else why not (a static string). */
static const char *nks_validate(const struct sp_nk_server *s, const struct nks_type *t,
                                struct sp_json_span ev, struct sp_buf *tmp)
{
    struct sp_json_span meta;
    struct sp_json_span v;
    if (ev.p[0] != '{') {
        return "#: expected an object";
    }
    if (s->reject_needle != NULL &&
        (s->reject_type == NULL || strcmp(s->reject_type, t->name) == 0) &&
        memmem(ev.p, ev.len, s->reject_needle, strlen(s->reject_needle)) != NULL) {
        return s->reject_detail;
    }
    if (strcmp(t->category, "undefined") == 0) {
        return NULL;
    }
    if (!sp_json_member(ev, "metadata", &meta) || meta.p[0] != '{') {
        return "#/metadata: required object is missing";
    }
    if (!sp_json_member(meta, "eid", &v) || !nks_is_uuid(v, tmp)) {
        return "#/metadata/eid: must be a UUID";
    }
    if (!sp_json_member(meta, "occurred_at", &v) || v.p[0] != '"') {
        return "#/metadata/occurred_at: required date-time is missing";
    }
    if (sp_json_member(meta, "received_at", &v)) {
        return "#/metadata/received_at: is set by Nakadi and must not be sent";
    }
    bool pck = sp_json_member(meta, "partition_compaction_key", &v);
    if (t->compacted && (!pck || v.p[0] != '"')) {
        return "#/metadata/partition_compaction_key: required for compacted event types";
    }
    if (!t->compacted && pck) {
        return "#/metadata/partition_compaction_key: only allowed for compacted event types";
    }
    if (strcmp(t->category, "data") == 0) {
        if (!sp_json_member(ev, "data_type", &v) || v.p[0] != '"') {
            return "#/data_type: required string is missing";
        }
        if (!sp_json_member(ev, "data_op", &v) ||
            !(sp_json_key_is(v, "C") || sp_json_key_is(v, "U") || sp_json_key_is(v, "D") ||
              sp_json_key_is(v, "S"))) {
            return "#/data_op: must be one of C, U, D, S";
        }
        if (!sp_json_member(ev, "data", &v) || v.p[0] != '{') {
            return "#/data: required object is missing";
        }
    }
    return NULL;
}

/* The partition of a valid event. */
static int nks_partition(const struct nks_type *t, struct sp_json_span ev)
{
    struct sp_json_span meta;
    struct sp_json_span v;
    struct sp_json_span key = {"", 0};
    if (sp_json_member(ev, "metadata", &meta) &&
        sp_json_member(meta, "partition_compaction_key", &v)) {
        key = v;
    } else if (t->partition_field != NULL) {
        struct sp_json_span cur = ev;
        char *path = strdup(t->partition_field);
        bool found = true;
        for (char *save = NULL, *part = strtok_r(path, ".", &save); part != NULL && found;
             part = strtok_r(NULL, ".", &save)) {
            found = sp_json_member(cur, part, &cur);
        }
        free(path);
        if (found) {
            key = cur;
        }
    }
    return (int)(sp_hash_fnv1a(key.p, key.len) % (uint32_t)t->nparts);
}

/* ---- publishing ---- */

struct nks_item {
    struct sp_json_span json;
    char eid[64];
    const char *status; /* submitted, failed, aborted */
    const char *step;
    const char *detail;
    int partition;
};

static void nks_eid_of(struct sp_json_span ev, char *out, size_t cap, struct sp_buf *tmp)
{
    struct sp_json_span meta;
    struct sp_json_span v;
    out[0] = '\0';
    sp_buf_reset(tmp);
    if (ev.p[0] == '{' && sp_json_member(ev, "metadata", &meta) &&
        sp_json_member(meta, "eid", &v) && sp_json_str(v, tmp) == 0) {
        snprintf(out, cap, "%s", tmp->data);
    }
}

static void nks_items_json(struct sp_buf *out, const struct nks_item *items, size_t n)
{
    sp_buf_putc(out, '[');
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            sp_buf_putc(out, ',');
        }
        sp_buf_puts(out, "{\"eid\":");
        sp_buf_put_json_str(out, items[i].eid, strlen(items[i].eid));
        sp_buf_printf(out, ",\"publishing_status\":\"%s\",\"step\":\"%s\"", items[i].status,
                      items[i].step);
        if (items[i].detail != NULL) {
            sp_buf_puts(out, ",\"detail\":");
            sp_buf_put_json_str(out, items[i].detail, strlen(items[i].detail));
        }
        sp_buf_putc(out, '}');
    }
    sp_buf_putc(out, ']');
}

static void nks_store(struct sp_nk_server *s, struct nks_type *t, const struct nks_item *it)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 1024;
        t->ev = realloc(t->ev, t->cap * sizeof(*t->ev));
    }
    struct sp_nk_event *e = &t->ev[t->n++];
    e->eid = strdup(it->eid);
    e->json = strndup(it->json.p, it->json.len);
    e->partition = it->partition;
    e->order = ++s->order;
}

/* Under s->mu. Returns the status; *out gets the answer's body. */
static int nks_publish(struct sp_nk_server *s, struct nks_type *t, const struct sp_buf *body,
                       struct sp_buf *out, size_t *nevents)
{
    struct sp_json_span arr = {body->data != NULL ? body->data : "", body->len};
    struct sp_json_iter it;
    if (!sp_json_valid(arr.p, arr.len) || sp_json_iter_init(&it, arr, '[') != 0) {
        sp_buf_puts(out, "the body is not a JSON array");
        return 400;
    }
    size_t n = 0;
    size_t cap = 64;
    struct nks_item *items = calloc(cap, sizeof(*items));
    struct sp_json_span v;
    struct sp_buf tmp;
    sp_buf_init(&tmp);
    bool invalid = false;
    while (sp_json_iter_next(&it, NULL, &v) == 1) {
        if (n == cap) {
            cap *= 2;
            items = realloc(items, cap * sizeof(*items));
        }
        struct nks_item *item = &items[n++];
        memset(item, 0, sizeof(*item));
        item->json = v;
        nks_eid_of(v, item->eid, sizeof(item->eid), &tmp);
        if (item->eid[0] != '\0') {
            nks_eid(s, item->eid)->sent++;
        }
        item->detail = nks_validate(s, t, v, &tmp);
        invalid = invalid || item->detail != NULL;
    }
    *nevents = n;
    int status = 200;
    if (invalid) {
        /* Nothing is published when any event is invalid. */
        for (size_t i = 0; i < n; i++) {
            items[i].status = items[i].detail != NULL ? "failed" : "aborted";
            items[i].step = "validating";
        }
        status = 422;
    } else {
        bool failed_part[256] = {false};
        for (size_t i = 0; i < n; i++) {
            struct nks_item *item = &items[i];
            item->partition = nks_partition(t, item->json);
            item->step = "publishing";
            if (failed_part[item->partition % 256]) {
                item->status = "aborted";
                status = 207;
                continue;
            }
            s->published_seen++;
            if (s->fail_every > 0 && s->published_seen % (uint64_t)s->fail_every == 0) {
                item->status = "failed";
                item->detail = "injected broker failure";
                failed_part[item->partition % 256] = true;
                status = 207;
                continue;
            }
            item->status = "submitted";
            item->step = "none";
            nks_store(s, t, item);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(items[i].status, "submitted") != 0 && items[i].eid[0] != '\0') {
            nks_eid(s, items[i].eid)->failed++;
        }
    }
    if (status != 200) {
        nks_items_json(out, items, n);
    }
    sp_buf_fini(&tmp);
    free(items);
    return status;
}

/* ---- requests ---- */

static bool nks_authorized(struct sp_nk_server *s, struct MHD_Connection *c)
{
    if (s->token == NULL) {
        return true;
    }
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    return h != NULL && strncmp(h, "Bearer ", 7) == 0 && strcmp(h + 7, s->token) == 0;
}

static void nks_log_request(struct sp_nk_server *s, int64_t at, int status, size_t nevents)
{
    if (s->nreqs == s->reqs_cap) {
        s->reqs_cap = s->reqs_cap ? 2 * s->reqs_cap : 256;
        s->reqs = realloc(s->reqs, s->reqs_cap * sizeof(*s->reqs));
    }
    s->reqs[s->nreqs++] = (struct sp_nk_request){
        .at_ms = at, .answered_ms = sp_http_server_now_ms(), .status = status, .nevents = nevents};
}

static enum MHD_Result nks_handle(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const struct sp_buf *body, bool too_big)
{
    struct sp_nk_server *s = cls;
    int64_t at = sp_http_server_now_ms();
    pthread_mutex_lock(&s->mu);
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
    static const char prefix[] = "/event-types";
    if (strncmp(url, prefix, sizeof(prefix) - 1) != 0) {
        return nks_problem(c, 404, "no such resource", -1);
    }
    const char *name = url + sizeof(prefix) - 1;
    bool post = strcmp(method, "POST") == 0;
    pthread_mutex_lock(&s->mu);
    enum MHD_Result rc;
    if (!nks_authorized(s, c)) {
        if (post) {
            nks_log_request(s, at, 401, 0);
        }
        pthread_mutex_unlock(&s->mu);
        return nks_problem(c, 401, "Access Token not valid", -1);
    }
    if (!post) {
        struct sp_buf b;
        sp_buf_init(&b);
        if (name[0] == '\0') {
            sp_buf_putc(&b, '[');
            for (int i = 0; i < s->ntypes; i++) {
                sp_buf_printf(&b, "%s{\"name\":\"%s\"}", i ? "," : "", s->types[i].name);
            }
            sp_buf_putc(&b, ']');
            rc = nks_answer(c, 200, b.data, -1, "application/json");
        } else {
            const struct nks_type *t = nks_type(s, name + 1, strlen(name + 1));
            if (t == NULL) {
                rc = nks_problem(c, 404, "EventType does not exist", -1);
            } else {
                sp_buf_printf(&b, "{\"name\":\"%s\",\"category\":\"%s\"}", t->name, t->category);
                rc = nks_answer(c, 200, b.data, -1, "application/json");
            }
        }
        sp_buf_fini(&b);
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    /* POST /event-types/{name}/events */
    static const char suffix[] = "/events";
    size_t nl = strlen(name);
    if (name[0] != '/' || nl < sizeof(suffix) ||
        strcmp(name + nl - (sizeof(suffix) - 1), suffix) != 0) {
        pthread_mutex_unlock(&s->mu);
        return nks_problem(c, 404, "no such resource", -1);
    }
    struct nks_type *t = nks_type(s, name + 1, nl - 1 - (sizeof(suffix) - 1));
    int status;
    size_t nevents = 0;
    struct sp_buf out;
    sp_buf_init(&out);
    if (s->respond_count > 0) {
        s->respond_count--;
        status = s->respond_status;
        sp_buf_puts(&out, "injected");
        nks_log_request(s, at, status, 0);
        int ra = s->respond_retry_after;
        pthread_mutex_unlock(&s->mu);
        rc = nks_problem(c, status, out.data, ra);
        sp_buf_fini(&out);
        return rc;
    }
    if (t == NULL) {
        status = 404;
        sp_buf_puts(&out, "EventType does not exist");
    } else if (t->forbidden) {
        status = 403;
        sp_buf_printf(&out, "application is not authorized to publish to event type %s", t->name);
    } else if (too_big) {
        status = 413;
        sp_buf_puts(&out, "request too large");
    } else {
        status = nks_publish(s, t, body, &out, &nevents);
    }
    nks_log_request(s, at, status, nevents);
    pthread_mutex_unlock(&s->mu);
    if (status == 200) {
        rc = nks_answer(c, 200, "", -1, "application/json");
    } else if (status == 207 || status == 422) {
        rc = nks_answer(c, (unsigned)status, out.data, -1, "application/json");
    } else {
        rc = nks_problem(c, status, out.data, -1);
    }
    sp_buf_fini(&out);
    return rc;
}

/* ---- lifecycle and controls ---- */

struct sp_nk_server *sp_nk_server_start(void)
{
    struct sp_nk_server *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    pthread_mutex_init(&s->mu, NULL);
    s->http = sp_http_server_start("Nakadi", NKS_MAX_BODY, nks_handle, s);
    return s;
}

void sp_nk_server_stop(struct sp_nk_server *s)
{
    if (s == NULL) {
        return;
    }
    sp_http_server_stop(s->http);
    for (int i = 0; i < s->ntypes; i++) {
        struct nks_type *t = &s->types[i];
        sp_nk_events_free(t->ev, t->n);
        free(t->name);
        free(t->category);
        free(t->partition_field);
    }
    for (int i = 0; i < NKS_EID_BUCKETS; i++) {
        struct nks_eid *e = s->eids[i];
        while (e != NULL) {
            struct nks_eid *next = e->next;
            free(e->eid);
            free(e);
            e = next;
        }
    }
    free(s->token);
    free(s->reject_needle);
    free(s->reject_detail);
    free(s->reject_type);
    free(s->reqs);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const char *sp_nk_server_url(const struct sp_nk_server *s)
{
    return sp_http_server_url(s->http);
}

void sp_nk_server_add_type(struct sp_nk_server *s, const char *name, const char *category,
                           int nparts, bool compacted, const char *partition_field)
{
    pthread_mutex_lock(&s->mu);
    assert_true(s->ntypes < NKS_MAX_TYPES);
    struct nks_type *t = &s->types[s->ntypes++];
    memset(t, 0, sizeof(*t));
    t->name = strdup(name);
    t->category = strdup(category);
    t->nparts = nparts > 0 ? nparts : 1;
    t->compacted = compacted;
    t->partition_field = partition_field != NULL ? strdup(partition_field) : NULL;
    pthread_mutex_unlock(&s->mu);
}

static void nks_set_str(struct sp_nk_server *s, char **field, const char *v)
{
    pthread_mutex_lock(&s->mu);
    free(*field);
    *field = v != NULL ? strdup(v) : NULL;
    pthread_mutex_unlock(&s->mu);
}

void sp_nk_server_set_token(struct sp_nk_server *s, const char *token)
{
    nks_set_str(s, &s->token, token);
}

void sp_nk_server_fail_every(struct sp_nk_server *s, int n)
{
    pthread_mutex_lock(&s->mu);
    s->fail_every = n;
    pthread_mutex_unlock(&s->mu);
}

void sp_nk_server_reject_matching(struct sp_nk_server *s, const char *needle, const char *detail)
{
    nks_set_str(s, &s->reject_needle, needle);
    nks_set_str(s, &s->reject_detail, detail);
    nks_set_str(s, &s->reject_type, NULL);
}

void sp_nk_server_reject_matching_in(struct sp_nk_server *s, const char *type, const char *needle,
                                     const char *detail)
{
    nks_set_str(s, &s->reject_needle, needle);
    nks_set_str(s, &s->reject_detail, detail);
    nks_set_str(s, &s->reject_type, type);
}

void sp_nk_server_respond(struct sp_nk_server *s, int status, int count, int retry_after_s)
{
    pthread_mutex_lock(&s->mu);
    s->respond_status = status;
    s->respond_count = count;
    s->respond_retry_after = retry_after_s;
    pthread_mutex_unlock(&s->mu);
}

void sp_nk_server_delay(struct sp_nk_server *s, int delay_ms, int count)
{
    pthread_mutex_lock(&s->mu);
    s->delay_ms = delay_ms;
    s->delay_count = count;
    pthread_mutex_unlock(&s->mu);
}

void sp_nk_server_forbid(struct sp_nk_server *s, const char *type)
{
    pthread_mutex_lock(&s->mu);
    struct nks_type *t = nks_type(s, type, strlen(type));
    assert_non_null(t);
    t->forbidden = true;
    pthread_mutex_unlock(&s->mu);
}

size_t sp_nk_server_events(struct sp_nk_server *s, const char *type, struct sp_nk_event **out)
{
    pthread_mutex_lock(&s->mu);
    struct nks_type *t = nks_type(s, type, strlen(type));
    size_t n = t != NULL ? t->n : 0;
    *out = calloc(n ? n : 1, sizeof(**out));
    for (size_t i = 0; i < n; i++) {
        (*out)[i] = t->ev[i];
        (*out)[i].eid = strdup(t->ev[i].eid);
        (*out)[i].json = strdup(t->ev[i].json);
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

void sp_nk_events_free(struct sp_nk_event *ev, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(ev[i].eid);
        free(ev[i].json);
    }
    free(ev);
}

size_t sp_nk_server_count(struct sp_nk_server *s, const char *type)
{
    pthread_mutex_lock(&s->mu);
    struct nks_type *t = nks_type(s, type, strlen(type));
    size_t n = t != NULL ? t->n : 0;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void sp_nk_server_eid_stats(struct sp_nk_server *s, const char *eid, long *sent, long *failed)
{
    pthread_mutex_lock(&s->mu);
    struct nks_eid *e = nks_eid(s, eid);
    *sent = e->sent;
    *failed = e->failed;
    pthread_mutex_unlock(&s->mu);
}

size_t sp_nk_server_requests(struct sp_nk_server *s, struct sp_nk_request **out)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->nreqs;
    *out = calloc(n ? n : 1, sizeof(**out));
    memcpy(*out, s->reqs, n * sizeof(**out));
    pthread_mutex_unlock(&s->mu);
    return n;
}

long sp_nk_server_status_count(struct sp_nk_server *s, int status)
{
    pthread_mutex_lock(&s->mu);
    long n = 0;
    for (size_t i = 0; i < s->nreqs; i++) {
        n += s->reqs[i].status == status;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}
