// SPDX-License-Identifier: Apache-2.0
/*
 * Sink "nats" against a real nats-server with JetStream: siphon streams a
 * table into a JetStream stream the test creates (libnats js_AddStream,
 * subjects "db.>", duplicate window 2 minutes), and the test reads the
 * stream back in stream order with an ordered consumer.
 *
 * - every event arrives once, per key in commit order, with the documented
 *   subject and headers (100,000 events over 1,000 keys; 20,000 under ASan);
 * - SIGKILL mid-stream and a restart: the stream holds each event exactly
 *   once (the restart resends, JetStream drops by Nats-Msg-Id);
 * - nats-server frozen (SIGSTOP) for 30 s under a steady stream of changes:
 *   nothing lost, memory bounded, and the slot's confirmed_flush_lsn never
 *   covers an event that was not yet stored in the stream;
 * - a message larger than the stream's max_msg_size goes to the dead-letter
 *   file while other keys, and later changes of the same key, keep flowing;
 * - a missing stream stops siphon at start with the fix in the message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "integration/cdc_helpers.h"
#include "lib/harness.h"

#define RSS_LIMIT_KIB (64L * 1024)

struct fixture {
    struct sp_pg *pg;
    char *tmp;
    /* Per test, released by test_cleanup even when the test fails: */
    struct sp_nats *nats;
    bool nats_stopped;        /* SIGSTOPped by the test */
    struct sp_proc *own_nats; /* a nats-server the test runs itself (restarts) */
    char *own_url;
    natsConnection *nc;
    jsCtx *js;
    PGconn *conn;
    PGconn *work;
    struct sp_proc *proc;
    struct nmsg *msgs;
    size_t nmsgs;
    long *next_v;
};

/* One message of the stream, reduced to what the tests check. */
struct nmsg {
    uint64_t sseq;  /* stream sequence */
    int64_t ts_ns;  /* when the server stored it */
    char *msg_id;   /* Nats-Msg-Id header */
    char *event_id; /* "id" of the event */
    uint64_t commit_lsn;
    uint32_t seq;
    char op;
    long key;        /* after.id (before.id for deletes) */
    long v;          /* after.v */
    bool headers_ok; /* subject and Siphon-* headers as documented */
    char *bad;       /* why headers_ok is false (first message only) */
};

static void msgs_free(struct fixture *fx)
{
    for (size_t i = 0; i < fx->nmsgs; i++) {
        free(fx->msgs[i].msg_id);
        free(fx->msgs[i].event_id);
        free(fx->msgs[i].bad);
    }
    free(fx->msgs);
    fx->msgs = NULL;
    fx->nmsgs = 0;
}

static int group_setup(void **state)
{
    if (!sp_test_nats_available()) {
        fprintf(stderr, "nats-server is not installed\n");
        return -1;
    }
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    *state = fx;
    fx->tmp = sp_test_tmpdir("nats");
    struct sp_pg_opts opts = {.tag = "pg-nats", .extra_conf = NULL};
    fx->pg = sp_test_pg_start(&opts);
    return 0;
}

static int test_cleanup(void **state)
{
    struct fixture *fx = *state;
    PQfinish(fx->conn);
    fx->conn = NULL;
    PQfinish(fx->work);
    fx->work = NULL;
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
    jsCtx_Destroy(fx->js);
    fx->js = NULL;
    if (fx->nc != NULL) {
        natsConnection_Close(fx->nc);
        natsConnection_Destroy(fx->nc);
        fx->nc = NULL;
    }
    if (fx->nats != NULL && fx->nats_stopped) {
        kill(sp_test_nats_pid(fx->nats), SIGCONT);
    }
    fx->nats_stopped = false;
    sp_test_nats_stop(fx->nats);
    fx->nats = NULL;
    sp_test_proc_free(fx->own_nats);
    fx->own_nats = NULL;
    free(fx->own_url);
    fx->own_url = NULL;
    msgs_free(fx);
    free(fx->next_v);
    fx->next_v = NULL;
    return 0;
}

static int group_teardown(void **state)
{
    struct fixture *fx = *state;
    if (fx == NULL) {
        return 0;
    }
    test_cleanup(state);
    sp_test_pg_stop(fx->pg);
    sp_test_tmpdir_cleanup(fx->tmp);
    free(fx);
    return 0;
}

/* ---- nats-server and the stream ------------------------------------------ */

/* The test's own client, which rides out the server being frozen or restarted. */
static void client_connect(struct fixture *fx, const char *url)
{
    natsOptions *o = NULL;
    assert_int_equal(natsOptions_Create(&o), NATS_OK);
    assert_int_equal(natsOptions_SetURL(o, url), NATS_OK);
    /* The test's own client must survive the server being frozen. */
    assert_int_equal(natsOptions_SetMaxReconnect(o, -1), NATS_OK);
    assert_int_equal(natsOptions_SetReconnectWait(o, 200), NATS_OK);
    natsStatus s = natsConnection_Connect(&fx->nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        fail_msg("test client could not connect to %s: %s", url, natsStatus_GetText(s));
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 10000;
    assert_int_equal(natsConnection_JetStream(&fx->js, fx->nc, &jo), NATS_OK);
}

static void nats_up(struct fixture *fx)
{
    fx->nats = sp_test_nats_start();
    client_connect(fx, sp_test_nats_url(fx->nats));
}

/* Whether a NATS client can connect to the URL (ctx) and JetStream answers. */
static bool jetstream_answers(void *ctx)
{
    natsConnection *nc = NULL;
    if (natsConnection_ConnectTo(&nc, ctx) != NATS_OK) {
        return false;
    }
    jsCtx *js = NULL;
    jsAccountInfo *ai = NULL;
    bool ok = natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
              js_GetAccountInfo(&ai, js, NULL, NULL) == NATS_OK;
    jsAccountInfo_Destroy(ai);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return ok;
}

/*
 * nats-server with JetStream on a fixed port and store dir, run by the test
 * so that it can be stopped and started again where it was (the harness
 * picks a new port and dir each time).
 */
static void own_nats_start(struct fixture *fx, int port, const char *dir, const char *log)
{
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%d", port);
    const char *argv[] = {"nats-server", "-a", "127.0.0.1", "-p", portbuf, "-js", "-sd", dir, NULL};
    fx->own_nats = sp_test_proc_start(argv, log, log);
    free(fx->own_url);
    fx->own_url = sp_test_asprintf("nats://127.0.0.1:%d", port);
    if (!sp_test_wait_until(jetstream_answers, fx->own_url, 30000)) {
        cdc_print_log(log);
        fail_msg("nats-server on port %d did not come up", port);
    }
}

/* A file-backed stream capturing "db.>", dropping duplicates for 2 minutes. */
static void stream_create(struct fixture *fx, const char *name, int32_t max_msg_size)
{
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[] = {"db.>"};
    cfg.Name = name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Duplicates = INT64_C(120) * 1000000000;
    if (max_msg_size > 0) {
        cfg.MaxMsgSize = max_msg_size;
    }
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(&si, fx->js, &cfg, NULL, &jerr);
    if (s != NATS_OK) {
        fail_msg("js_AddStream %s: %s (%d)", name, natsStatus_GetText(s), (int)jerr);
    }
    jsStreamInfo_Destroy(si);
}

static uint64_t stream_count(struct fixture *fx, const char *name)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_GetStreamInfo(&si, fx->js, name, NULL, &jerr) != NATS_OK) {
        return 0;
    }
    uint64_t n = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return n;
}

struct count_wait {
    struct fixture *fx;
    const char *stream;
    uint64_t want;
};

static bool stream_has(void *ctx)
{
    struct count_wait *w = ctx;
    return stream_count(w->fx, w->stream) >= w->want;
}

/* The value of a header, malloc'd, or NULL. */
static char *header(natsMsg *m, const char *name)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, name, &v) == NATS_OK && v != NULL ? strdup(v) : NULL;
}

static void mark_bad(struct nmsg *e, const char *fmt, ...) SP_PRINTF(2, 3);
static void mark_bad(struct nmsg *e, const char *fmt, ...)
{
    if (!e->headers_ok) {
        return;
    }
    e->headers_ok = false;
    va_list ap;
    va_start(ap, fmt);
    char buf[512];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    e->bad = strdup(buf);
}

static long json_long(const char *json, const char *path)
{
    char *t = NULL;
    long v = -1;
    if (sp_test_json_lookup(json, path, &t) == SP_TEST_JSON_NUMBER && t != NULL) {
        v = strtol(t, NULL, 10);
    }
    free(t);
    return v;
}

/* Parses one stream message and checks its subject and headers against the event. */
static void parse_msg(natsMsg *m, const char *table, struct nmsg *e)
{
    memset(e, 0, sizeof(*e));
    e->headers_ok = true;
    jsMsgMetaData *meta = NULL;
    if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
        e->sseq = meta->Sequence.Stream;
        e->ts_ns = meta->Timestamp;
        jsMsgMetaData_Destroy(meta);
    }
    int len = natsMsg_GetDataLength(m);
    char *json = strndup(natsMsg_GetData(m), (size_t)len);
    assert_non_null(json);
    char *id = NULL;
    char *op = NULL;
    if (sp_test_json_lookup(json, "id", &id) == SP_TEST_JSON_STRING && id != NULL) {
        unsigned hi = 0;
        unsigned lo = 0;
        unsigned seq = 0;
        if (sscanf(id, "%X/%X:%u", &hi, &lo, &seq) == 3) {
            e->commit_lsn = ((uint64_t)hi << 32) | lo;
            e->seq = seq;
        }
        e->event_id = id;
    } else {
        free(id);
        mark_bad(e, "payload without id: %.200s", json);
    }
    if (sp_test_json_lookup(json, "op", &op) == SP_TEST_JSON_STRING && op != NULL) {
        e->op = op[0];
    }
    free(op);
    e->key = json_long(json, e->op == 'd' ? "before.id" : "after.id");
    e->v = e->op == 'd' ? 0 : json_long(json, "after.v");

    e->msg_id = header(m, "Nats-Msg-Id");
    char *h_op = header(m, "Siphon-Op");
    char *h_table = header(m, "Siphon-Table");
    char *h_lsn = header(m, "Siphon-Lsn");
    char *h_key = header(m, "Siphon-Key");
    char *h_source = header(m, "Siphon-Source");
    char *want_subject = sp_test_asprintf("db.public.%s", table);
    char *want_table = sp_test_asprintf("public.%s", table);
    char *want_key = sp_test_asprintf("{\"id\":%ld}", e->key);
    long src_lsn = json_long(json, "source.lsn");
    if (strcmp(natsMsg_GetSubject(m), want_subject) != 0) {
        mark_bad(e, "subject %s, expected %s", natsMsg_GetSubject(m), want_subject);
    }
    if (e->msg_id == NULL || e->event_id == NULL || strcmp(e->msg_id, e->event_id) != 0) {
        mark_bad(e, "Nats-Msg-Id %s, event id %s", e->msg_id ? e->msg_id : "(none)",
                 e->event_id ? e->event_id : "(none)");
    }
    if (h_op == NULL || strlen(h_op) != 1 || h_op[0] != e->op) {
        mark_bad(e, "Siphon-Op %s, op %c", h_op ? h_op : "(none)", e->op);
    }
    if (h_table == NULL || strcmp(h_table, want_table) != 0) {
        mark_bad(e, "Siphon-Table %s, expected %s", h_table ? h_table : "(none)", want_table);
    }
    if (h_lsn == NULL || src_lsn < 0 || cdc_lsn_parse(h_lsn) != (uint64_t)src_lsn) {
        mark_bad(e, "Siphon-Lsn %s, source.lsn %ld", h_lsn ? h_lsn : "(none)", src_lsn);
    }
    if (h_key == NULL || strcmp(h_key, want_key) != 0) {
        mark_bad(e, "Siphon-Key %s, expected %s", h_key ? h_key : "(none)", want_key);
    }
    if (h_source == NULL || strcmp(h_source, "db") != 0) {
        mark_bad(e, "Siphon-Source %s, expected db", h_source ? h_source : "(none)");
    }
    free(want_subject);
    free(want_table);
    free(want_key);
    free(h_op);
    free(h_table);
    free(h_lsn);
    free(h_key);
    free(h_source);
    free(json);
}

/* Reads the whole stream, in stream order, into fx->msgs. */
static void stream_read(struct fixture *fx, const char *stream, const char *table)
{
    msgs_free(fx);
    uint64_t n = stream_count(fx, stream);
    fx->msgs = calloc(n > 0 ? n : 1, sizeof(*fx->msgs));
    assert_non_null(fx->msgs);
    if (n == 0) {
        return;
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream;
    so.Ordered = true;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_SubscribeSync(&sub, fx->js, "db.>", NULL, &so, &jerr);
    if (s != NATS_OK) {
        fail_msg("js_SubscribeSync on %s: %s (%d)", stream, natsStatus_GetText(s), (int)jerr);
    }
    natsSubscription_SetPendingLimits(sub, -1, -1);
    while (fx->nmsgs < n) {
        natsMsg *m = NULL;
        s = natsSubscription_NextMsg(&m, sub, 10000);
        if (s != NATS_OK) {
            natsSubscription_Destroy(sub);
            fail_msg("read %zu of %" PRIu64 " messages of %s: %s", fx->nmsgs, n, stream,
                     natsStatus_GetText(s));
        }
        parse_msg(m, table, &fx->msgs[fx->nmsgs++]);
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
}

static int cmp_str(const void *a, const void *b)
{
    const char *x = *(const char *const *)a;
    const char *y = *(const char *const *)b;
    return strcmp(x ? x : "", y ? y : "");
}

/* Distinct Nats-Msg-Id values among fx->msgs. */
static size_t distinct_msg_ids(const struct fixture *fx)
{
    if (fx->nmsgs == 0) {
        return 0;
    }
    char **ids = calloc(fx->nmsgs, sizeof(char *));
    assert_non_null(ids);
    for (size_t i = 0; i < fx->nmsgs; i++) {
        ids[i] = fx->msgs[i].msg_id;
    }
    qsort(ids, fx->nmsgs, sizeof(char *), cmp_str);
    size_t d = 1;
    for (size_t i = 1; i < fx->nmsgs; i++) {
        d += cmp_str(&ids[i - 1], &ids[i]) != 0;
    }
    free(ids);
    return d;
}

struct order_report {
    size_t bad_headers;
    size_t wrong_keys;
    size_t order_errors;  /* v not the next expected value for its key */
    size_t commit_errors; /* commit LSN going backwards for a key */
    size_t incomplete;    /* keys that did not reach their final value */
};

/*
 * Checks per key, in stream order: the first event is the insert with
 * v = first_v and every next event has v one more, commit LSNs never go
 * back, and each key ends at last_v[key] (or last_v_all when last_v is NULL).
 */
static void check_order(struct fixture *fx, long keys, long first_v, long last_v_all,
                        struct order_report *rep)
{
    memset(rep, 0, sizeof(*rep));
    free(fx->next_v);
    fx->next_v = calloc((size_t)keys + 1, sizeof(long));
    uint64_t *last_commit = calloc((size_t)keys + 1, sizeof(uint64_t));
    assert_non_null(fx->next_v);
    assert_non_null(last_commit);
    for (long k = 0; k <= keys; k++) {
        fx->next_v[k] = first_v;
    }
    for (size_t i = 0; i < fx->nmsgs; i++) {
        const struct nmsg *e = &fx->msgs[i];
        if (!e->headers_ok) {
            if (rep->bad_headers < 3) {
                fprintf(stderr, "nats: message %" PRIu64 ": %s\n", e->sseq, e->bad);
            }
            rep->bad_headers++;
        }
        if (e->key < 1 || e->key > keys) {
            rep->wrong_keys++;
            continue;
        }
        long want = fx->next_v[e->key];
        char want_op = want == first_v ? 'c' : 'u';
        if (e->v != want || e->op != want_op) {
            if (rep->order_errors < 5) {
                fprintf(stderr,
                        "nats: key %ld: stream seq %" PRIu64 " has op %c v %ld, expected %c v "
                        "%ld\n",
                        e->key, e->sseq, e->op, e->v, want_op, want);
            }
            rep->order_errors++;
        }
        if (e->commit_lsn < last_commit[e->key]) {
            rep->commit_errors++;
        }
        last_commit[e->key] = e->commit_lsn;
        fx->next_v[e->key] = e->v + 1;
    }
    for (long k = 1; k <= keys; k++) {
        if (fx->next_v[k] != last_v_all + 1) {
            rep->incomplete++;
        }
    }
    free(last_commit);
}

static char *write_config(const struct fixture *fx, const char *name, const char *stream,
                          const char *slot, const char *table, const char *sink_extra,
                          const char *recovery, const char *settings)
{
    char *cfg = sp_test_asprintf("%s/%s.yaml", fx->tmp, name);
    char *dead = sp_test_asprintf("%s/%s.dead.jsonl", fx->tmp, name);
    sp_test_write_file(cfg,
                       "sources:\n"
                       "  db:\n"
                       "    type: postgres\n"
                       "    snapshot: never\n"
                       "    connection: \"%s\"\n"
                       "    slot: %s\n"
                       "    publication: p_%s\n"
                       "    status_interval: 1s\n"
                       "sinks:\n"
                       "  bus:\n"
                       "    type: nats\n"
                       "    url: \"%s\"\n"
                       "    stream: %s\n"
                       "%s"
                       "  dead:\n"
                       "    type: file\n"
                       "    path: %s\n"
                       "streams:\n"
                       "  - name: s\n"
                       "    source: db\n"
                       "    tables: [public.%s]\n"
                       "    sink: bus\n"
                       "%s"
                       "settings:\n"
                       "  shutdown_timeout: 30s\n"
                       "%s",
                       sp_test_pg_conninfo(fx->pg), slot, slot,
                       fx->own_url != NULL ? fx->own_url : sp_test_nats_url(fx->nats), stream,
                       sink_extra ? sink_extra : "", dead, table, recovery ? recovery : "",
                       settings ? settings : "");
    free(dead);
    return cfg;
}

/* ---- 1. order and headers ------------------------------------------------- */

/*
 * 1,000 keys inserted (v = 0) in 10 transactions, then 990 transactions
 * that each add 1 to v of a tenth of the keys: every key goes 0, 1, ..., 99.
 */
static void every_event_once_in_key_order_with_headers(void **state)
{
    struct fixture *fx = *state;
    const bool asan = cdc_sanitized();
    const int slow = asan ? 3 : 1;
    const long keys = 1000;
    const int rounds = asan ? 190 : 990; /* 20,000 or 100,000 events */
    const long last_v = rounds / 10;
    const uint64_t total = (uint64_t)keys + (uint64_t)rounds * (uint64_t)(keys / 10);

    nats_up(fx);
    stream_create(fx, "ORDER", 0);
    fx->conn = sp_test_pg_connect(fx->pg);
    sp_test_sql(fx->conn, "CREATE TABLE t_order (id int PRIMARY KEY, v int NOT NULL)");
    char *cfg = write_config(fx, "order", "ORDER", "s_nats_order", "t_order", NULL, NULL,
                             "  memory_limit: 16MiB\n");
    char *log = sp_test_asprintf("%s/order.log", fx->tmp);
    fx->proc = cdc_siphon_start(cfg, log);
    assert_true(cdc_wait_log(log, "streaming from slot", 1, 30000 * slow));
    assert_true(cdc_count_in_file(log, "connected to nats://127.0.0.1:") == 1);

    int64_t t0 = cdc_now_ms();
    char *work = sp_test_asprintf("DO $$ BEGIN "
                                  "FOR i IN 0..9 LOOP "
                                  "INSERT INTO t_order SELECT g, 0 FROM generate_series(i * 100 + "
                                  "1, i * 100 + 100) g; COMMIT; END LOOP; "
                                  "FOR i IN 0..%d LOOP "
                                  "UPDATE t_order SET v = v + 1 WHERE id %% 10 = i %% 10; COMMIT; "
                                  "END LOOP; END $$",
                                  rounds - 1);
    fx->work = cdc_async_start(fx->pg, work);
    free(work);
    cdc_async_finish(fx->work, 120000 * slow);
    fx->work = NULL;
    int64_t t_sql = cdc_now_ms() - t0;
    struct count_wait w = {fx, "ORDER", total};
    if (!sp_test_wait_until(stream_has, &w, 120000 * slow)) {
        cdc_print_log(log);
        fail_msg("stream ORDER has %" PRIu64 " of %" PRIu64 " messages", stream_count(fx, "ORDER"),
                 total);
    }
    int64_t t_all = cdc_now_ms() - t0;
    int64_t stop_ms = 0;
    int st = cdc_siphon_stop(fx->proc, 30000, &stop_ms);
    if (st != 0) {
        cdc_print_log(log);
    }
    assert_int_equal(st, 0);

    stream_read(fx, "ORDER", "t_order");
    size_t distinct = distinct_msg_ids(fx);
    struct order_report rep;
    check_order(fx, keys, 0, last_v, &rep);
    fprintf(stderr,
            "nats order: %" PRIu64 " events, SQL %lld ms, all in JetStream after %lld ms "
            "(%.0f events/s), stop %lld ms, peak RSS %ld KiB\n",
            total, (long long)t_sql, (long long)t_all, (double)total * 1000.0 / (double)t_all,
            (long long)stop_ms, sp_test_proc_peak_rss_kib(fx->proc));
    assert_int_equal(fx->nmsgs, total);
    assert_int_equal(distinct, total);
    assert_int_equal(rep.bad_headers, 0);
    assert_int_equal(rep.wrong_keys, 0);
    assert_int_equal(rep.order_errors, 0);
    assert_int_equal(rep.commit_errors, 0);
    assert_int_equal(rep.incomplete, 0);
    free(cfg);
    free(log);
}

/* ---- 2. SIGKILL and restart ----------------------------------------------- */

struct progress_ctx {
    struct fixture *fx;
    const char *stream;
    uint64_t msgs;
    const char *slot;
    uint64_t confirmed;
};

static bool has_progress(void *ctx)
{
    struct progress_ctx *p = ctx;
    return stream_count(p->fx, p->stream) >= p->msgs &&
           cdc_confirmed_lsn(p->fx->conn, p->slot) > p->confirmed;
}

static void kill_and_restart_stores_each_event_once(void **state)
{
    struct fixture *fx = *state;
    const bool asan = cdc_sanitized();
    const int slow = asan ? 3 : 1;
    const long keys = 1000;
    const int rounds = asan ? 190 : 490;
    const long last_v = rounds / 10;
    const uint64_t total = (uint64_t)keys + (uint64_t)rounds * (uint64_t)(keys / 10);

    nats_up(fx);
    stream_create(fx, "CRASH", 0);
    fx->conn = sp_test_pg_connect(fx->pg);
    sp_test_sql(fx->conn, "CREATE TABLE t_crash (id int PRIMARY KEY, v int NOT NULL)");
    char *cfg = write_config(fx, "crash", "CRASH", "s_nats_crash", "t_crash", NULL, NULL,
                             "  memory_limit: 16MiB\n");
    char *log1 = sp_test_asprintf("%s/crash.run1.log", fx->tmp);
    char *log2 = sp_test_asprintf("%s/crash.run2.log", fx->tmp);
    fx->proc = cdc_siphon_start(cfg, log1);
    assert_true(cdc_wait_log(log1, "streaming from slot", 1, 30000 * slow));
    uint64_t created_at = cdc_confirmed_lsn(fx->conn, "s_nats_crash");

    /* Paced so that the stream lasts a few seconds and the kill lands in the middle. */
    char *work = sp_test_asprintf("DO $$ BEGIN "
                                  "INSERT INTO t_crash SELECT g, 0 FROM generate_series(1, %ld) g; "
                                  "COMMIT; "
                                  "FOR i IN 0..%d LOOP "
                                  "UPDATE t_crash SET v = v + 1 WHERE id %% 10 = i %% 10; COMMIT; "
                                  "IF i %% 10 = 9 THEN PERFORM pg_sleep(0.05); END IF; "
                                  "END LOOP; END $$",
                                  keys, rounds - 1);
    fx->work = cdc_async_start(fx->pg, work);
    free(work);

    struct progress_ctx some = {fx, "CRASH", total / 4, "s_nats_crash", created_at};
    if (!sp_test_wait_until(has_progress, &some, 120000 * slow)) {
        cdc_print_log(log1);
        fail_msg("no progress before the kill");
    }
    assert_int_equal(sp_test_proc_signal(fx->proc, SIGKILL), 0);
    assert_int_equal(sp_test_proc_wait(fx->proc, 10000), SP_TEST_PROC_BY_SIGNAL(SIGKILL));
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
    assert_true(cdc_wait_slot_inactive(fx->conn, "s_nats_crash", 10000));
    uint64_t confirmed_at_kill = cdc_confirmed_lsn(fx->conn, "s_nats_crash");
    uint64_t in_stream_at_kill = stream_count(fx, "CRASH");
    assert_true(in_stream_at_kill < total);

    /* What the restart will send again: events already in the stream past the confirmed LSN. */
    stream_read(fx, "CRASH", "t_crash");
    size_t resent = 0;
    for (size_t i = 0; i < fx->nmsgs; i++) {
        resent += fx->msgs[i].commit_lsn >= confirmed_at_kill;
    }

    cdc_async_finish(fx->work, 120000 * slow);
    fx->work = NULL;
    uint64_t end_lsn = cdc_current_lsn(fx->conn);
    fx->proc = cdc_siphon_start(cfg, log2);
    if (!cdc_wait_confirmed(fx->conn, "s_nats_crash", end_lsn, 120000 * slow)) {
        cdc_print_log(log2);
        fail_msg("slot not confirmed up to the end of the workload after the restart");
    }
    int st = cdc_siphon_stop(fx->proc, 30000, NULL);
    if (st != 0) {
        cdc_print_log(log2);
    }
    assert_int_equal(st, 0);

    stream_read(fx, "CRASH", "t_crash");
    size_t distinct = distinct_msg_ids(fx);
    struct order_report rep;
    check_order(fx, keys, 0, last_v, &rep);
    fprintf(stderr,
            "nats crash: %" PRIu64 " events, %" PRIu64 " in the stream at the kill, %zu of them "
            "past the confirmed position (sent again, dropped as duplicates)\n",
            total, in_stream_at_kill, resent);
    /* Confirmations go out within about a second, so a kill can land right after one:
     * then nothing is sent again and the counts below hold trivially. Say so. */
    if (resent == 0) {
        fprintf(stderr, "nats crash: the kill landed right after a confirmation; nothing was "
                        "sent again this run\n");
    }
    assert_int_equal(fx->nmsgs, total);
    assert_int_equal(distinct, total);
    assert_int_equal(rep.bad_headers, 0);
    assert_int_equal(rep.order_errors, 0);
    assert_int_equal(rep.commit_errors, 0);
    assert_int_equal(rep.incomplete, 0);
    free(cfg);
    free(log1);
    free(log2);
}

/*
 * The hot-key workload (tests 3 and 6): transaction i adds 1 to v of key
 * i % keys + 1 and inserts 9 new rows (ids above 1,000,000). Checks, in
 * stream order, that each hot key's updates come with v 1, 2, ... up to
 * txns / keys; returns the number of inserts seen.
 */
static size_t check_hot_keys(struct fixture *fx, long keys, int txns, struct order_report *rep)
{
    memset(rep, 0, sizeof(*rep));
    free(fx->next_v);
    fx->next_v = calloc((size_t)keys + 1, sizeof(long));
    assert_non_null(fx->next_v);
    size_t inserts = 0;
    for (size_t i = 0; i < fx->nmsgs; i++) {
        const struct nmsg *e = &fx->msgs[i];
        rep->bad_headers += !e->headers_ok;
        if (e->key > 1000000) {
            inserts += e->op == 'c' && e->v == 0;
            continue;
        }
        if (e->key < 1 || e->key > keys) {
            rep->wrong_keys++;
            continue;
        }
        if (e->op != 'u' || e->v != fx->next_v[e->key] + 1) {
            if (rep->order_errors < 5) {
                fprintf(stderr,
                        "nats: key %ld: stream seq %" PRIu64 " has op %c v %ld after v %ld\n",
                        e->key, e->sseq, e->op, e->v, fx->next_v[e->key]);
            }
            rep->order_errors++;
        }
        fx->next_v[e->key] = e->v;
    }
    for (long k = 1; k <= keys; k++) {
        rep->incomplete += fx->next_v[k] != txns / keys;
    }
    return inserts;
}

static char *hot_keys_workload(const char *table, long keys, int txns)
{
    return sp_test_asprintf(
        "DO $$ BEGIN "
        "FOR i IN 0..%d LOOP "
        "UPDATE %s SET v = v + 1 WHERE id = i %% %ld + 1; "
        "INSERT INTO %s SELECT 1000000 + i * 9 + g, 0 FROM generate_series(1, 9) g; "
        "COMMIT; PERFORM pg_sleep(0.02); END LOOP; END $$",
        txns - 1, table, keys, table);
}

/* ---- 3. nats-server frozen for 30 s ---------------------------------------- */

static void outage_loses_nothing_and_confirms_only_what_is_stored(void **state)
{
    struct fixture *fx = *state;
    const bool asan = cdc_sanitized();
    const int slow = asan ? 3 : 1;
    const long keys = 100;
    const int outage_s = 30;
    /* ~50 s of changes at 10 rows every 20 ms: an update of a key and 9 new rows. */
    const int txns = 2500;

    nats_up(fx);
    stream_create(fx, "OUTAGE", 0);
    fx->conn = sp_test_pg_connect(fx->pg);
    sp_test_sql(fx->conn, "CREATE TABLE t_outage (id int PRIMARY KEY, v int NOT NULL)");
    sp_test_sql(fx->conn, "INSERT INTO t_outage SELECT g, 0 FROM generate_series(1, %ld) g", keys);
    char *cfg = write_config(fx, "outage", "OUTAGE", "s_nats_outage", "t_outage",
                             "    ack_timeout: 2s\n    reconnect_wait: 500ms\n", NULL,
                             "  memory_limit: 16MiB\n");
    char *log = sp_test_asprintf("%s/outage.log", fx->tmp);
    fx->proc = cdc_siphon_start(cfg, log);
    assert_true(cdc_wait_log(log, "streaming from slot", 1, 30000 * slow));

    char *work = hot_keys_workload("t_outage", keys, txns);
    fx->work = cdc_async_start(fx->pg, work);
    free(work);

    /* Running normally first. */
    struct count_wait w = {fx, "OUTAGE", 2000};
    assert_true(sp_test_wait_until(stream_has, &w, 60000 * slow));
    long rss_before = sp_test_proc_peak_rss_kib(fx->proc);

    int nats_pid = sp_test_nats_pid(fx->nats);
    assert_int_equal(kill(nats_pid, SIGSTOP), 0);
    fx->nats_stopped = true;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t stopped_at_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    uint64_t confirmed_at_stop = cdc_confirmed_lsn(fx->conn, "s_nats_outage");
    uint64_t confirmed_in_outage = confirmed_at_stop;
    int64_t until = cdc_now_ms() + outage_s * 1000;
    while (cdc_now_ms() < until) {
        cdc_sleep_ms(500);
        uint64_t c = cdc_confirmed_lsn(fx->conn, "s_nats_outage");
        confirmed_in_outage = c > confirmed_in_outage ? c : confirmed_in_outage;
        assert_true(sp_test_proc_alive(fx->proc));
    }
    uint64_t lsn_at_resume = cdc_current_lsn(fx->conn);
    long rss_outage = sp_test_proc_peak_rss_kib(fx->proc);
    assert_int_equal(kill(nats_pid, SIGCONT), 0);
    fx->nats_stopped = false;

    cdc_async_finish(fx->work, 120000 * slow);
    fx->work = NULL;
    uint64_t end_lsn = cdc_current_lsn(fx->conn);
    if (!cdc_wait_confirmed(fx->conn, "s_nats_outage", end_lsn, 120000 * slow)) {
        cdc_print_log(log);
        fail_msg("slot not confirmed up to the end of the workload after the outage");
    }
    int st = cdc_siphon_stop(fx->proc, 30000, NULL);
    if (st != 0) {
        cdc_print_log(log);
    }
    assert_int_equal(st, 0);

    const uint64_t total = (uint64_t)txns * 10;
    stream_read(fx, "OUTAGE", "t_outage");
    size_t distinct = distinct_msg_ids(fx);
    struct order_report rep;
    size_t inserts = check_hot_keys(fx, keys, txns, &rep);
    size_t confirmed_not_stored = 0;
    size_t held_back = 0;
    for (size_t i = 0; i < fx->nmsgs; i++) {
        const struct nmsg *e = &fx->msgs[i];
        /* Confirmed while the server was frozen: must have been stored before it froze. */
        if (e->commit_lsn <= confirmed_in_outage && e->ts_ns >= stopped_at_ns) {
            if (confirmed_not_stored < 3) {
                fprintf(stderr, "nats outage: event %s confirmed but stored after the stop\n",
                        e->event_id);
            }
            confirmed_not_stored++;
        }
        held_back += e->commit_lsn > confirmed_in_outage && e->commit_lsn < lsn_at_resume;
    }
    fprintf(stderr,
            "nats outage: %" PRIu64 " events, %zu held back during the %d s outage, peak RSS "
            "%ld KiB before, %ld KiB through the outage; retries logged: %zu\n",
            total, held_back, outage_s, rss_before, rss_outage,
            cdc_count_in_file(log, "could not deliver"));
    assert_int_equal(fx->nmsgs, total);
    assert_int_equal(distinct, total);
    assert_int_equal(inserts, (size_t)txns * 9);
    assert_int_equal(rep.bad_headers, 0);
    assert_int_equal(rep.wrong_keys, 0);
    assert_int_equal(rep.order_errors, 0);
    assert_int_equal(rep.incomplete, 0);
    assert_int_equal(confirmed_not_stored, 0);
    /* The outage really held events back, and the sink said why. */
    assert_true(held_back > 1000);
    assert_true(cdc_count_in_file(log, "no acknowledgement from JetStream") > 0);
    if (!asan) {
        assert_true(rss_outage > 0 && rss_outage < RSS_LIMIT_KIB);
    }
    free(cfg);
    free(log);
}

/* ---- 4. permanent rejection --------------------------------------------------- */

static void oversized_event_goes_to_dead_letter_and_others_flow(void **state)
{
    struct fixture *fx = *state;
    const int slow = cdc_sanitized() ? 3 : 1;
    nats_up(fx);
    stream_create(fx, "SMALL", 2048);
    fx->conn = sp_test_pg_connect(fx->pg);
    sp_test_sql(fx->conn, "CREATE TABLE t_big (id int PRIMARY KEY, v int NOT NULL, pad text)");
    char *cfg = write_config(fx, "big", "SMALL", "s_nats_big", "t_big", NULL,
                             "    recovery: { type: dead_letter, sink: dead }\n", NULL);
    char *dead = sp_test_asprintf("%s/big.dead.jsonl", fx->tmp);
    char *log = sp_test_asprintf("%s/big.log", fx->tmp);
    fx->proc = cdc_siphon_start(cfg, log);
    assert_true(cdc_wait_log(log, "streaming from slot", 1, 30000 * slow));

    /* Keys 1..100 small; 5 and 50 get a 4 KB value, then a small update each. */
    sp_test_sql(fx->conn, "INSERT INTO t_big SELECT g, 0, 'x' FROM generate_series(1, 100) g");
    sp_test_sql(fx->conn, "UPDATE t_big SET v = 1, pad = repeat('y', 4000) WHERE id IN (5, 50)");
    sp_test_sql(fx->conn, "UPDATE t_big SET v = 2, pad = 'z' WHERE id IN (5, 50)");
    sp_test_sql(fx->conn, "INSERT INTO t_big SELECT g, 0, 'x' FROM generate_series(101, 200) g");

    struct count_wait w = {fx, "SMALL", 202};
    if (!sp_test_wait_until(stream_has, &w, 60000 * slow) ||
        !cdc_wait_log(dead, "\n", 2, 30000 * slow)) {
        cdc_print_log(log);
        fail_msg("stream SMALL has %" PRIu64 " of 202 messages", stream_count(fx, "SMALL"));
    }
    int st = cdc_siphon_stop(fx->proc, 30000, NULL);
    if (st != 0) {
        cdc_print_log(log);
    }
    assert_int_equal(st, 0);

    stream_read(fx, "SMALL", "t_big");
    assert_int_equal(fx->nmsgs, 202);
    assert_int_equal(distinct_msg_ids(fx), 202);
    size_t big_in_stream = 0;
    long last_v_5 = -1;
    long last_v_50 = -1;
    for (size_t i = 0; i < fx->nmsgs; i++) {
        const struct nmsg *e = &fx->msgs[i];
        assert_true(e->headers_ok);
        big_in_stream += e->v == 1;
        if (e->key == 5) {
            last_v_5 = e->v;
        }
        if (e->key == 50) {
            last_v_50 = e->v;
        }
    }
    assert_int_equal(big_in_stream, 0);
    assert_int_equal(last_v_5, 2); /* the key went on after its rejected change */
    assert_int_equal(last_v_50, 2);

    size_t n = 0;
    char **lines = sp_test_read_lines(dead, &n);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        char *err = sp_test_json_get(lines[i], "error");
        char *sink = sp_test_json_get(lines[i], "sink");
        char *v = sp_test_json_get(lines[i], "event.after.v");
        fprintf(stderr, "nats dead letter: %s\n", err);
        assert_non_null(strstr(err, "message size exceeds maximum allowed"));
        assert_non_null(strstr(err, "10054"));
        assert_string_equal(sink, "bus");
        assert_string_equal(v, "1");
        free(err);
        free(sink);
        free(v);
    }
    sp_test_free_lines(lines);
    free(cfg);
    free(dead);
    free(log);
}

/* ---- 6. nats-server stopped and started again -------------------------------- */

/*
 * A real disconnect: nats-server stops (SIGTERM) for 5 s under a steady
 * stream of changes and starts again on the same port with the same store.
 * libnats reconnects, publishes lost with the old connection time out and
 * are sent again; nothing is lost or stored twice, each key stays in order,
 * and siphon logs the disconnect and the reconnect.
 */
static void server_restart_reconnects_without_loss_or_reorder(void **state)
{
    struct fixture *fx = *state;
    const int slow = cdc_sanitized() ? 3 : 1;
    const long keys = 100;
    const int txns = 1000; /* ~20 s of changes */
    int port = sp_test_free_port();
    char *dir = sp_test_asprintf("%s/restart-js", fx->tmp);
    char *nlog1 = sp_test_asprintf("%s/restart.nats1.log", fx->tmp);
    char *nlog2 = sp_test_asprintf("%s/restart.nats2.log", fx->tmp);
    own_nats_start(fx, port, dir, nlog1);
    client_connect(fx, fx->own_url);
    stream_create(fx, "RESTART", 0);

    fx->conn = sp_test_pg_connect(fx->pg);
    sp_test_sql(fx->conn, "CREATE TABLE t_restart (id int PRIMARY KEY, v int NOT NULL)");
    sp_test_sql(fx->conn, "INSERT INTO t_restart SELECT g, 0 FROM generate_series(1, %ld) g", keys);
    char *cfg = write_config(fx, "restart", "RESTART", "s_nats_restart", "t_restart",
                             "    ack_timeout: 2s\n    reconnect_wait: 250ms\n", NULL,
                             "  memory_limit: 16MiB\n");
    char *log = sp_test_asprintf("%s/restart.log", fx->tmp);
    fx->proc = cdc_siphon_start(cfg, log);
    assert_true(cdc_wait_log(log, "streaming from slot", 1, 30000 * slow));
    char *work = hot_keys_workload("t_restart", keys, txns);
    fx->work = cdc_async_start(fx->pg, work);
    free(work);

    struct count_wait w = {fx, "RESTART", 1500};
    assert_true(sp_test_wait_until(stream_has, &w, 60000 * slow));
    assert_int_equal(sp_test_proc_signal(fx->own_nats, SIGTERM), 0);
    /* nats-server exits with status 1 after a SIGTERM shutdown. */
    assert_int_not_equal(sp_test_proc_wait(fx->own_nats, 15000), SP_TEST_PROC_TIMEOUT);
    sp_test_proc_free(fx->own_nats);
    fx->own_nats = NULL;
    assert_true(cdc_wait_log(log, "disconnected from nats://127.0.0.1:", 1, 15000));
    cdc_sleep_ms(5000);
    own_nats_start(fx, port, dir, nlog2);
    assert_true(cdc_wait_log(log, "reconnected to nats://127.0.0.1:", 1, 30000 * slow));

    cdc_async_finish(fx->work, 120000 * slow);
    fx->work = NULL;
    uint64_t end_lsn = cdc_current_lsn(fx->conn);
    if (!cdc_wait_confirmed(fx->conn, "s_nats_restart", end_lsn, 120000 * slow)) {
        cdc_print_log(log);
        fail_msg("slot not confirmed up to the end of the workload after the restart");
    }
    int st = cdc_siphon_stop(fx->proc, 30000, NULL);
    if (st != 0) {
        cdc_print_log(log);
    }
    assert_int_equal(st, 0);

    const uint64_t total = (uint64_t)txns * 10;
    stream_read(fx, "RESTART", "t_restart");
    size_t distinct = distinct_msg_ids(fx);
    struct order_report rep;
    size_t inserts = check_hot_keys(fx, keys, txns, &rep);
    fprintf(stderr, "nats restart: %" PRIu64 " events, %zu in the stream, retries logged: %zu\n",
            total, fx->nmsgs, cdc_count_in_file(log, "could not deliver"));
    assert_int_equal(fx->nmsgs, total);
    assert_int_equal(distinct, total);
    assert_int_equal(inserts, (size_t)txns * 9);
    assert_int_equal(rep.bad_headers, 0);
    assert_int_equal(rep.wrong_keys, 0);
    assert_int_equal(rep.order_errors, 0);
    assert_int_equal(rep.incomplete, 0);
    free(dir);
    free(nlog1);
    free(nlog2);
    free(cfg);
    free(log);
}

/* ---- 5. a missing stream ------------------------------------------------------ */

static void missing_stream_stops_siphon_with_the_fix(void **state)
{
    struct fixture *fx = *state;
    nats_up(fx);
    fx->conn = sp_test_pg_connect(fx->pg);
    sp_test_sql(fx->conn, "CREATE TABLE t_none (id int PRIMARY KEY, v int NOT NULL)");
    char *cfg = write_config(fx, "none", "NOPE", "s_nats_none", "t_none", NULL, NULL, NULL);
    char *log = sp_test_asprintf("%s/none.log", fx->tmp);
    fx->proc = cdc_siphon_start(cfg, log);
    int st = sp_test_proc_wait(fx->proc, 30000);
    char *text = sp_test_read_file(log, NULL);
    assert_non_null(text);
    fprintf(stderr, "nats missing stream: exit %d:\n%s", st, text);
    assert_int_equal(st, 1);
    assert_non_null(strstr(text, "JetStream stream \"NOPE\" does not exist"));
    assert_non_null(strstr(text, "nats stream add NOPE --subjects '*.*.*'"));
    free(text);

    /* siphon check says the same without streaming. */
    char *check_log = sp_test_asprintf("%s/none.check.log", fx->tmp);
    const char *argv[] = {sp_test_siphon_bin(), "check", "-c", cfg, NULL};
    struct sp_proc *p = sp_test_proc_start(argv, check_log, check_log);
    int cst = sp_test_proc_wait(p, 30000);
    sp_test_proc_free(p);
    text = sp_test_read_file(check_log, NULL);
    assert_non_null(text);
    assert_int_not_equal(cst, 0);
    assert_non_null(strstr(text, "JetStream stream \"NOPE\" does not exist"));
    free(text);
    free(check_log);
    free(cfg);
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(every_event_once_in_key_order_with_headers, test_cleanup),
        cmocka_unit_test_teardown(kill_and_restart_stores_each_event_once, test_cleanup),
        cmocka_unit_test_teardown(outage_loses_nothing_and_confirms_only_what_is_stored,
                                  test_cleanup),
        cmocka_unit_test_teardown(oversized_event_goes_to_dead_letter_and_others_flow,
                                  test_cleanup),
        cmocka_unit_test_teardown(server_restart_reconnects_without_loss_or_reorder, test_cleanup),
        cmocka_unit_test_teardown(missing_stream_stops_siphon_with_the_fix, test_cleanup),
    };
    return SP_TEST_RUN_GROUP("nats", tests, group_setup, group_teardown);
}
