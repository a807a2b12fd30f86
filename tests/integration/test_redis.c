// SPDX-License-Identifier: Apache-2.0
/*
 * The redis sink against a real redis-server and PostgreSQL 15, read back
 * with hiredis (XRANGE): every event of 100,000 changes to 1,000 keys in
 * commit order with the documented fields; a 30 s outage (SIGSTOP of
 * redis-server under a steady stream of inserts) that loses nothing, keeps
 * siphon's memory bounded and never lets the slot's confirmed position pass
 * an event Redis does not hold; a WRONGTYPE key whose events go to the
 * dead-letter file while the other table's keep flowing; MAXLEN ~ trimming;
 * ACL user, password and database selection, with NOPERM refusals,
 * `siphon check`, and a wrong password refused at start; an idle connection
 * the server closed; a user that may not run MULTI; bad options.
 *
 * Under ASan (SP_SANITIZED=1) the event counts are smaller, the assertions
 * the same, except the RSS bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "integration/cdc_helpers.h"
#include "lib/harness.h"

#define WAIT_START_MS    60000
#define WAIT_EVENTS_MS   180000
#define WAIT_EXIT_MS     60000
#define OUTAGE_MS        30000
#define RSS_LIMIT_KIB    (64L * 1024)
#define ACL_PASSWORD     "S3cret-pw-7731"
#define ACL_PASSWORD_PCT "S3cret%2Dpw%2D7731"

/* The fields of every stream entry, in this order (docs/sink-redis.md). */
enum { F_ID, F_OP, F_SCHEMA, F_TABLE, F_LSN, F_KEY, F_VALUE, F_COUNT };
static const char *const field_names[F_COUNT] = {"id",  "op",  "schema", "table",
                                                 "lsn", "key", "value"};

struct entry {
    char *sid;        /* the stream entry id */
    char *f[F_COUNT]; /* field values */
    uint64_t commit_lsn;
    uint32_t seq;
    long key; /* key.id */
    long v;   /* after.v */
};

struct entries {
    struct entry *e;
    size_t n;
};

struct fixture {
    struct sp_pg *pg;
    PGconn *conn;
    char *tmp;
    /* Per test, released by test_cleanup even when the test fails: */
    struct sp_redis *redis;
    bool redis_stopped;
    redisContext *rc;
    struct sp_proc *proc;
    char *slot;
    char *cfg;
    char *log;
    char *dead;
    PGconn *gen;
    struct entries ents;
    struct entries snap;
};

static void entries_free(struct entries *es)
{
    for (size_t i = 0; i < es->n; i++) {
        free(es->e[i].sid);
        for (int k = 0; k < F_COUNT; k++) {
            free(es->e[i].f[k]);
        }
    }
    free(es->e);
    es->e = NULL;
    es->n = 0;
}

static int group_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    *state = fx;
    fx->tmp = sp_test_tmpdir("redis");
    struct sp_pg_opts opts = {.tag = "pg-redis", .extra_conf = NULL};
    fx->pg = sp_test_pg_start(&opts);
    fx->conn = sp_test_pg_connect(fx->pg);
    return 0;
}

static int test_cleanup(void **state)
{
    struct fixture *fx = *state;
    if (fx->redis != NULL && fx->redis_stopped) {
        kill(sp_test_redis_pid(fx->redis), SIGCONT);
        fx->redis_stopped = false;
    }
    if (fx->proc != NULL) {
        sp_test_proc_signal(fx->proc, SIGKILL);
        sp_test_proc_free(fx->proc);
        fx->proc = NULL;
    }
    if (fx->gen != NULL) {
        PQfinish(fx->gen);
        fx->gen = NULL;
    }
    cdc_drop_slot(fx->conn, fx->slot);
    if (fx->rc != NULL) {
        redisFree(fx->rc);
        fx->rc = NULL;
    }
    sp_test_redis_stop(fx->redis);
    fx->redis = NULL;
    free(fx->slot);
    free(fx->cfg);
    free(fx->log);
    free(fx->dead);
    fx->slot = fx->cfg = fx->log = fx->dead = NULL;
    entries_free(&fx->ents);
    entries_free(&fx->snap);
    return 0;
}

static int group_teardown(void **state)
{
    struct fixture *fx = *state;
    if (fx == NULL) {
        return 0;
    }
    test_cleanup(state);
    PQfinish(fx->conn);
    sp_test_pg_stop(fx->pg);
    sp_test_tmpdir_cleanup(fx->tmp);
    free(fx);
    return 0;
}

/* ---- redis ---------------------------------------------------------------- */

static void redis_up(struct fixture *fx)
{
    fx->redis = sp_test_redis_start();
    struct timeval tv = {.tv_sec = 10, .tv_usec = 0};
    fx->rc = redisConnectWithTimeout("127.0.0.1", sp_test_redis_port(fx->redis), tv);
    assert_non_null(fx->rc);
    if (fx->rc->err != 0) {
        fail_msg("could not connect to redis-server: %s", fx->rc->errstr);
    }
    struct timeval cmd_tv = {.tv_sec = 60, .tv_usec = 0};
    redisSetTimeout(fx->rc, cmd_tv);
}

/* Runs a command (argv form); fails the test on a connection error. Free the reply. */
static redisReply *rd_cmdv(struct fixture *fx, int argc, const char **argv)
{
    redisReply *rep = redisCommandArgv(fx->rc, argc, argv, NULL);
    if (rep == NULL) {
        fail_msg("redis %s: %s", argv[0], fx->rc->errstr);
    }
    return rep;
}

/* A command whose reply must be an integer. */
static long long rd_int(struct fixture *fx, int argc, const char **argv)
{
    redisReply *rep = rd_cmdv(fx, argc, argv);
    if (rep->type != REDIS_REPLY_INTEGER) {
        char msg[256];
        snprintf(msg, sizeof(msg), "redis %s: expected an integer, got type %d (%s)", argv[0],
                 rep->type, rep->type == REDIS_REPLY_ERROR ? rep->str : "");
        freeReplyObject(rep);
        fail_msg("%s", msg);
    }
    long long v = rep->integer;
    freeReplyObject(rep);
    return v;
}

/* A command whose reply must be a status or string; returns it malloc'd. */
static char *rd_str(struct fixture *fx, int argc, const char **argv)
{
    redisReply *rep = rd_cmdv(fx, argc, argv);
    if (rep->type != REDIS_REPLY_STATUS && rep->type != REDIS_REPLY_STRING) {
        char msg[256];
        snprintf(msg, sizeof(msg), "redis %s: expected a string, got type %d (%s)", argv[0],
                 rep->type, rep->type == REDIS_REPLY_ERROR ? rep->str : "");
        freeReplyObject(rep);
        fail_msg("%s", msg);
    }
    char *s = strdup(rep->str);
    freeReplyObject(rep);
    return s;
}

static void rd_ok(struct fixture *fx, int argc, const char **argv)
{
    free(rd_str(fx, argc, argv));
}

static long long rd_xlen(struct fixture *fx, const char *key)
{
    const char *argv[] = {"XLEN", key};
    return rd_int(fx, 2, argv);
}

/* Copies one XRANGE entry ([id, [f1, v1, ...]]) into e; false if it is not one. */
static bool rd_copy_entry(const redisReply *it, struct entry *e)
{
    memset(e, 0, sizeof(*e));
    if (it->type != REDIS_REPLY_ARRAY || it->elements != 2 ||
        it->element[0]->type != REDIS_REPLY_STRING || it->element[1]->type != REDIS_REPLY_ARRAY) {
        return false;
    }
    e->sid = strdup(it->element[0]->str);
    const redisReply *kv = it->element[1];
    if (kv->elements != (size_t)2 * F_COUNT) {
        return false;
    }
    for (size_t k = 0; k < F_COUNT; k++) {
        const redisReply *name = kv->element[2 * k];
        const redisReply *val = kv->element[2 * k + 1];
        if (name->type != REDIS_REPLY_STRING || strcmp(name->str, field_names[k]) != 0 ||
            val->type != REDIS_REPLY_STRING) {
            return false;
        }
        e->f[k] = strdup(val->str);
    }
    return true;
}

/* Every entry of the stream key, oldest first (XRANGE in pages of 10,000). */
static void rd_read_stream(struct fixture *fx, const char *key, struct entries *out)
{
    entries_free(out);
    size_t cap = 1024;
    out->e = calloc(cap, sizeof(*out->e));
    assert_non_null(out->e);
    char start[64] = "-";
    for (;;) {
        const char *argv[] = {"XRANGE", key, start, "+", "COUNT", "10000"};
        redisReply *rep = rd_cmdv(fx, 6, argv);
        if (rep->type != REDIS_REPLY_ARRAY) {
            char msg[256];
            snprintf(msg, sizeof(msg), "XRANGE %s: type %d (%s)", key, rep->type,
                     rep->type == REDIS_REPLY_ERROR ? rep->str : "");
            freeReplyObject(rep);
            fail_msg("%s", msg);
        }
        size_t got = rep->elements;
        for (size_t i = 0; i < got; i++) {
            if (out->n == cap) {
                cap *= 2;
                out->e = realloc(out->e, cap * sizeof(*out->e));
                assert_non_null(out->e);
            }
            struct entry *e = &out->e[out->n++];
            if (!rd_copy_entry(rep->element[i], e)) {
                freeReplyObject(rep);
                fail_msg("stream %s: entry %zu does not have the fields id, op, schema, table, "
                         "lsn, key, value (in that order)",
                         key, out->n - 1);
            }
        }
        freeReplyObject(rep);
        if (got < 10000) {
            break;
        }
        snprintf(start, sizeof(start), "(%s", out->e[out->n - 1].sid);
    }
}

/*
 * Checks the fields of e against its value (the json event) and fills
 * commit_lsn, seq, key and v. op: the expected op, or 0 for any.
 */
static void check_entry(struct entry *e, const char *table, char op)
{
    const char *value = e->f[F_VALUE];
    char *id = sp_test_json_get(value, "id");
    if (strcmp(id, e->f[F_ID]) != 0) {
        fail_msg("entry %s: field id %s, event id %s", e->sid, e->f[F_ID], id);
    }
    /* "X/Y:n": commit LSN X<<32 | Y, sequence n */
    char *end = NULL;
    unsigned long hi = strtoul(id, &end, 16);
    assert_int_equal(*end, '/');
    unsigned long lo = strtoul(end + 1, &end, 16);
    assert_int_equal(*end, ':');
    unsigned long seq = strtoul(end + 1, &end, 10);
    assert_int_equal(*end, '\0');
    free(id);
    e->commit_lsn = ((uint64_t)hi << 32) | lo;
    e->seq = (uint32_t)seq;
    char *vop = sp_test_json_get(value, "op");
    assert_string_equal(e->f[F_OP], vop);
    free(vop);
    if (op != 0) {
        assert_int_equal(e->f[F_OP][0], op);
    }
    assert_string_equal(e->f[F_SCHEMA], "public");
    assert_string_equal(e->f[F_TABLE], table);
    char *stable = sp_test_json_get(value, "source.table");
    assert_string_equal(stable, table);
    free(stable);
    char *slsn = sp_test_json_get(value, "source.lsn");
    uint64_t lsn = strtoull(slsn, NULL, 10);
    free(slsn);
    char want_lsn[24];
    assert_string_equal(e->f[F_LSN], cdc_lsn_fmt(lsn, want_lsn));
    char *after_id = sp_test_json_get(value, "after.id");
    e->key = strtol(after_id, NULL, 10);
    free(after_id);
    char want_key[64];
    snprintf(want_key, sizeof(want_key), "{\"id\":%ld}", e->key);
    assert_string_equal(e->f[F_KEY], want_key);
    char *v = sp_test_json_get(value, "after.v");
    e->v = strtol(v, NULL, 10);
    free(v);
}

/* ---- siphon --------------------------------------------------------------- */

/* Prints siphon's log and the redis-server log, then fails with msg. */
static void siphon_fail(struct fixture *fx, const char *msg)
{
    if (fx->log != NULL) {
        cdc_print_log(fx->log);
    }
    if (fx->redis != NULL) {
        sp_test_redis_print_log(fx->redis);
    }
    sp_test_mark_failed();
    fail_msg("%s", msg);
}

/*
 * The config of test `name`: slot s_redis_<name>, sink "bus" of type redis
 * with sink_opts, file sink "dead" at dead as the stream's dead-letter sink.
 */
static char *config_text(struct fixture *fx, const char *name, const char *tables,
                         const char *sink_opts, const char *dead, const char *settings)
{
    return sp_test_asprintf("sources:\n"
                            "  db:\n"
                            "    type: postgres\n"
                            "    snapshot: never\n"
                            "    connection: \"%s\"\n"
                            "    slot: s_redis_%s\n"
                            "    publication: p_redis_%s\n"
                            "    status_interval: 1s\n"
                            "sinks:\n"
                            "  bus:\n"
                            "    type: redis\n"
                            "%s"
                            "  dead:\n"
                            "    type: file\n"
                            "    path: %s\n"
                            "streams:\n"
                            "  - name: s\n"
                            "    source: db\n"
                            "    tables: [%s]\n"
                            "    sink: bus\n"
                            "    recovery: { type: dead_letter, sink: dead }\n"
                            "settings:\n"
                            "  shutdown_timeout: 30s\n"
                            "%s",
                            sp_test_pg_conninfo(fx->pg), name, name, sink_opts, dead, tables,
                            settings != NULL ? settings : "");
}

/* Writes the config of test `name` to fx->cfg (log, dead-letter file and slot named after it). */
static void write_config(struct fixture *fx, const char *name, const char *tables,
                         const char *sink_opts, const char *settings)
{
    fx->cfg = sp_test_asprintf("%s/%s.yaml", fx->tmp, name);
    fx->log = sp_test_asprintf("%s/%s.log", fx->tmp, name);
    fx->dead = sp_test_asprintf("%s/%s.dead.jsonl", fx->tmp, name);
    fx->slot = sp_test_asprintf("s_redis_%s", name);
    char *text = config_text(fx, name, tables, sink_opts, fx->dead, settings);
    sp_test_write_file(fx->cfg, "%s", text);
    free(text);
}

/* Writes a config that siphon is not expected to stream with; returns its path. */
static char *write_other_config(struct fixture *fx, const char *name, const char *tables,
                                const char *sink_opts)
{
    char *path = sp_test_asprintf("%s/%s.yaml", fx->tmp, name);
    char *dead = sp_test_asprintf("%s/%s.dead.jsonl", fx->tmp, name);
    char *text = config_text(fx, name, tables, sink_opts, dead, NULL);
    sp_test_write_file(path, "%s", text);
    free(text);
    free(dead);
    return path;
}

static void siphon_run(struct fixture *fx)
{
    const char *argv[] = {sp_test_siphon_bin(), "run", "-c", fx->cfg, NULL};
    fx->proc = sp_test_proc_start(argv, fx->log, fx->log);
    if (!cdc_wait_log(fx->log, "streaming from slot", 1, WAIT_START_MS) ||
        !sp_test_proc_alive(fx->proc)) {
        siphon_fail(fx, "siphon did not start streaming");
    }
}

static void siphon_stop_clean(struct fixture *fx)
{
    int64_t took = 0;
    int st = cdc_siphon_stop(fx->proc, WAIT_EXIT_MS, &took);
    if (st != 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "siphon exited with %d after SIGTERM", st);
        siphon_fail(fx, msg);
    }
}

struct xlen_wait {
    struct fixture *fx;
    const char *key;
    long long n;
};

static bool xlen_reached(void *ctx)
{
    struct xlen_wait *w = ctx;
    return rd_xlen(w->fx, w->key) >= w->n || !sp_test_proc_alive(w->fx->proc);
}

static void wait_xlen(struct fixture *fx, const char *key, long long n)
{
    struct xlen_wait w = {fx, key, n};
    if (!sp_test_wait_until(xlen_reached, &w, WAIT_EVENTS_MS) || rd_xlen(fx, key) < n) {
        char msg[256];
        snprintf(msg, sizeof(msg), "stream %s has %lld entries, expected %lld", key,
                 rd_xlen(fx, key), n);
        siphon_fail(fx, msg);
    }
}

struct lines_wait {
    const char *path;
    size_t n;
};

static bool lines_reached(void *ctx)
{
    struct lines_wait *w = ctx;
    return sp_test_count_lines(w->path) >= w->n;
}

/* ---- 1: every event, in commit order, with the documented fields ---------- */

static void every_event_in_commit_order_with_documented_fields(void **state)
{
    struct fixture *fx = *state;
    const bool asan = cdc_sanitized();
    const int keys = 1000;
    const int updates = asan ? 19 : 99; /* per key: 100,000 events in all (20,000 under ASan) */
    const long long total = (long long)keys * (updates + 1);

    redis_up(fx);
    sp_test_sql(fx->conn, "CREATE TABLE t1 (id int PRIMARY KEY, v int NOT NULL)");
    char *opts = sp_test_asprintf("    url: %s\n", sp_test_redis_url(fx->redis));
    write_config(fx, "order", "public.t1", opts, NULL);
    free(opts);
    siphon_run(fx);

    int64_t t0 = cdc_now_ms();
    for (int i = 0; i < 10; i++) {
        sp_test_sql(fx->conn, "INSERT INTO t1 SELECT g, 0 FROM generate_series(%d, %d) g",
                    i * 100 + 1, i * 100 + 100);
    }
    /* Each transaction updates a tenth of the keys, spread over the key space. */
    for (int u = 0; u < updates; u++) {
        for (int part = 0; part < 10; part++) {
            sp_test_sql(fx->conn, "UPDATE t1 SET v = v + 1 WHERE id %% 10 = %d", part);
        }
    }
    int64_t t_written = cdc_now_ms();
    wait_xlen(fx, "db.public.t1", total);
    int64_t t_done = cdc_now_ms();
    fprintf(stderr,
            "redis: %lld events written in %lld ms, all in the stream %lld ms after the first "
            "(%.0f events/s end to end)\n",
            total, (long long)(t_written - t0), (long long)(t_done - t0),
            (double)total * 1000.0 / (double)(t_done - t0 > 0 ? t_done - t0 : 1));

    rd_read_stream(fx, "db.public.t1", &fx->ents);
    assert_int_equal(fx->ents.n, total); /* no duplicates without a failure */

    long *next_v = calloc((size_t)keys + 1, sizeof(*next_v));
    assert_non_null(next_v);
    uint64_t prev_lsn = 0;
    uint32_t prev_seq = 0;
    for (size_t i = 0; i < fx->ents.n; i++) {
        struct entry *e = &fx->ents.e[i];
        check_entry(e, "t1", 0);
        if (e->key < 1 || e->key > keys) {
            fail_msg("entry %s: key %ld out of range", e->sid, e->key);
        }
        /* Per key: inserted with 0, then every update adds 1, in stream order. */
        if (e->v != next_v[e->key]) {
            fail_msg("entry %s (#%zu): key %ld has v %ld, expected %ld", e->sid, i, e->key, e->v,
                     next_v[e->key]);
        }
        assert_int_equal(e->f[F_OP][0], e->v == 0 ? 'c' : 'u');
        next_v[e->key]++;
        /* One partition: the whole stream is in commit order. */
        if (i > 0 &&
            !(e->commit_lsn > prev_lsn || (e->commit_lsn == prev_lsn && e->seq > prev_seq))) {
            fail_msg("entry %s (#%zu) with id %s comes after %X/%X:%u", e->sid, i, e->f[F_ID],
                     (unsigned)(prev_lsn >> 32), (unsigned)prev_lsn, prev_seq);
        }
        prev_lsn = e->commit_lsn;
        prev_seq = e->seq;
    }
    for (int k = 1; k <= keys; k++) {
        assert_int_equal(next_v[k], updates + 1);
    }
    free(next_v);
    assert_int_equal(sp_test_count_lines(fx->dead), 0);

    assert_true(cdc_wait_confirmed(fx->conn, fx->slot, prev_lsn, 30000));
    siphon_stop_clean(fx);
}

/* ---- 2: an outage ------------------------------------------------------------ */

struct distinct_wait {
    struct fixture *fx;
    const char *key;
    size_t want;
    long long last_len;
    size_t distinct;
};

/* The number of different keys among the entries (inserts: one event per key). */
static size_t count_distinct_keys(struct entries *es, long max_key)
{
    unsigned char *seen = calloc((size_t)max_key + 1, 1);
    assert_non_null(seen);
    size_t n = 0;
    for (size_t i = 0; i < es->n; i++) {
        const char *k = es->e[i].f[F_KEY];
        long id = strtol(k + strlen("{\"id\":"), NULL, 10);
        if (id >= 1 && id <= max_key && !seen[id]) {
            seen[id] = 1;
            n++;
        }
    }
    free(seen);
    return n;
}

static bool all_distinct_present(void *ctx)
{
    struct distinct_wait *w = ctx;
    long long len = rd_xlen(w->fx, w->key);
    if (len < (long long)w->want || len == w->last_len) {
        return false;
    }
    w->last_len = len;
    rd_read_stream(w->fx, w->key, &w->fx->ents);
    w->distinct = count_distinct_keys(&w->fx->ents, (long)w->want);
    return w->distinct >= w->want;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t event_pos(const struct entry *e)
{
    return e->commit_lsn * 1024 + e->seq; /* (commit LSN, seq) as one sortable number */
}

static bool pos_in(const uint64_t *sorted, size_t n, uint64_t pos)
{
    return bsearch(&pos, sorted, n, sizeof(pos), cmp_u64) != NULL;
}

/*
 * After the outage: every entry (fx->ents, the final stream) is a
 * documented insert; the first occurrence of each event is in commit order
 * (a batch applied twice, once by the connection that timed out and once by
 * the retry, only repeats), and repeats are equal. Every event at or below
 * confirmed, the slot's position during the outage, was in fx->snap, read
 * right after it.
 */
static void check_outage_stream(struct fixture *fx, size_t rows, uint64_t confirmed)
{
    uint64_t *snap_pos = malloc((fx->snap.n + 1) * sizeof(*snap_pos));
    assert_non_null(snap_pos);
    for (size_t i = 0; i < fx->snap.n; i++) {
        check_entry(&fx->snap.e[i], "t2", 'c');
        snap_pos[i] = event_pos(&fx->snap.e[i]);
    }
    qsort(snap_pos, fx->snap.n, sizeof(*snap_pos), cmp_u64);
    char **first_value = calloc(rows + 1, sizeof(*first_value));
    assert_non_null(first_value);
    uint64_t prev = 0;
    size_t dups = 0;
    size_t below_confirmed = 0;
    for (size_t i = 0; i < fx->ents.n; i++) {
        struct entry *e = &fx->ents.e[i];
        check_entry(e, "t2", 'c');
        assert_true(e->key >= 1 && (size_t)e->key <= rows);
        assert_int_equal(e->v, e->key);
        if (first_value[e->key] != NULL) {
            assert_string_equal(e->f[F_VALUE], first_value[e->key]);
            dups++;
            continue;
        }
        first_value[e->key] = e->f[F_VALUE];
        uint64_t pos = event_pos(e);
        if (pos <= prev) {
            fail_msg("entry %s: event %s is out of commit order", e->sid, e->f[F_ID]);
        }
        prev = pos;
        if (e->commit_lsn <= confirmed) {
            below_confirmed++;
            if (!pos_in(snap_pos, fx->snap.n, pos)) {
                fail_msg("event %s (commit LSN at or below the confirmed %X/%X) was not in Redis "
                         "when the slot confirmed it",
                         e->f[F_ID], (unsigned)(confirmed >> 32), (unsigned)confirmed);
            }
        }
    }
    free(first_value);
    free(snap_pos);
    fprintf(stderr, "redis outage: %zu duplicates, %zu events at or below the confirmed position\n",
            dups, below_confirmed);
    /* The outage held events back: the slot stopped short of them. */
    assert_true(below_confirmed >= 1000);
    assert_true(below_confirmed < rows);
}

static void outage_loses_nothing_and_bounds_memory(void **state)
{
    struct fixture *fx = *state;
    const bool asan = cdc_sanitized();
    const int txns = 4000;
    const int per_txn = asan ? 5 : 10; /* 40,000 rows of ~1 KiB (20,000 under ASan) */
    const size_t rows = (size_t)txns * (size_t)per_txn;

    redis_up(fx);
    sp_test_sql(fx->conn, "CREATE TABLE t2 (id int PRIMARY KEY, v int NOT NULL, pad text)");
    char *opts = sp_test_asprintf("    url: %s\n"
                                  "    connect_timeout: 1s\n"
                                  "    command_timeout: 2s\n",
                                  sp_test_redis_url(fx->redis));
    write_config(fx, "outage", "public.t2", opts, "  memory_limit: 16MiB\n");
    free(opts);
    siphon_run(fx);

    /* A steady stream: per_txn rows every ~10 ms for ~45 s. */
    char *work = sp_test_asprintf("DO $$ BEGIN FOR i IN 0..%d LOOP "
                                  "INSERT INTO t2 SELECT g, g, repeat('x', 1000) "
                                  "FROM generate_series(i * %d + 1, (i + 1) * %d) g; "
                                  "COMMIT; PERFORM pg_sleep(0.01); END LOOP; END $$",
                                  txns - 1, per_txn, per_txn);
    fx->gen = cdc_async_start(fx->pg, work);
    free(work);
    wait_xlen(fx, "db.public.t2", 1000);

    /* Outage: redis-server stops answering (SIGSTOP keeps its data). */
    int pid = sp_test_redis_pid(fx->redis);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    fx->redis_stopped = true;
    int64_t t_stop = cdc_now_ms();
    uint64_t confirmed = 0;
    long rss_outage = 0;
    while (cdc_now_ms() - t_stop < OUTAGE_MS) {
        cdc_sleep_ms(500); /* the outage lasts a fixed time; nothing is awaited here */
        uint64_t c = cdc_confirmed_lsn(fx->conn, fx->slot);
        assert_true(c >= confirmed);
        confirmed = c;
        long rss = sp_test_proc_peak_rss_kib(fx->proc);
        rss_outage = rss > rss_outage ? rss : rss_outage;
        if (!sp_test_proc_alive(fx->proc)) {
            siphon_fail(fx, "siphon exited during the outage");
        }
    }
    long gen_rows = sp_test_sql_long(fx->conn, "SELECT count(*) FROM t2");
    assert_int_equal(kill(pid, SIGCONT), 0);
    fx->redis_stopped = false;
    int64_t t_cont = cdc_now_ms();

    /* Right away: what the slot confirmed during the outage must already be in Redis. */
    rd_read_stream(fx, "db.public.t2", &fx->snap);
    size_t retries = cdc_count_in_file(fx->log, "could not deliver");
    fprintf(stderr,
            "redis outage: %ld rows written by the end of the outage, %zu entries in the stream "
            "right after it, confirmed_flush_lsn during it %X/%X, %zu retry warnings, peak RSS "
            "%ld KiB\n",
            gen_rows, fx->snap.n, (unsigned)(confirmed >> 32), (unsigned)confirmed, retries,
            rss_outage);
    assert_true(retries > 0);
    /* The silent server was noticed by the command and connect timeouts. */
    assert_true(cdc_count_in_file(fx->log, "no answer to MULTI within 2000 ms") >= 1);
    assert_true(cdc_count_in_file(fx->log, "no answer to PING within 1000 ms") >= 1);

    cdc_async_finish(fx->gen, WAIT_EVENTS_MS);
    fx->gen = NULL;
    struct distinct_wait w = {fx, "db.public.t2", rows, -1, 0};
    if (!sp_test_wait_until(all_distinct_present, &w, WAIT_EVENTS_MS)) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%zu of %zu rows in the stream after the outage", w.distinct,
                 rows);
        siphon_fail(fx, msg);
    }
    int64_t t_all = cdc_now_ms();
    fprintf(stderr,
            "redis outage: all %zu rows in the stream %lld ms after SIGCONT (%zu entries)\n", rows,
            (long long)(t_all - t_cont), fx->ents.n);

    check_outage_stream(fx, rows, confirmed);
    assert_int_equal(sp_test_count_lines(fx->dead), 0);

    long peak = sp_test_proc_peak_rss_kib(fx->proc);
    siphon_stop_clean(fx);
    fprintf(stderr, "redis outage: siphon peak RSS %ld KiB\n", peak);
    if (!asan) {
        assert_true(peak > 0);
        assert_true(peak < RSS_LIMIT_KIB);
    }
}

/* ---- 3: WRONGTYPE ------------------------------------------------------------ */

static void wrongtype_goes_to_dead_letter_and_others_flow(void **state)
{
    struct fixture *fx = *state;
    redis_up(fx);
    sp_test_sql(fx->conn, "CREATE TABLE t3a (id int PRIMARY KEY, v int NOT NULL)");
    sp_test_sql(fx->conn, "CREATE TABLE t3b (id int PRIMARY KEY, v int NOT NULL)");
    const char *set[] = {"SET", "w.public.t3b", "not a stream"};
    rd_ok(fx, 3, set);
    char *opts = sp_test_asprintf("    url: %s\n"
                                  "    stream: \"w.{schema}.{table}\"\n",
                                  sp_test_redis_url(fx->redis));
    write_config(fx, "wrongtype", "public.t3a, public.t3b", opts, NULL);
    free(opts);
    siphon_run(fx);

    /* Rounds of: one transaction into both tables (one batch, good and bad
     * records mixed), then one into t3a alone. */
    for (int r = 0; r < 5; r++) {
        sp_test_sql(fx->conn,
                    "BEGIN; INSERT INTO t3b SELECT g, g FROM generate_series(%d, %d) g; "
                    "INSERT INTO t3a SELECT g, g FROM generate_series(%d, %d) g; COMMIT",
                    r * 20 + 1, r * 20 + 20, r * 40 + 1, r * 40 + 20);
        sp_test_sql(fx->conn, "INSERT INTO t3a SELECT g, g FROM generate_series(%d, %d) g",
                    r * 40 + 21, r * 40 + 40);
    }
    uint64_t end_lsn = cdc_current_lsn(fx->conn);
    wait_xlen(fx, "w.public.t3a", 200);
    struct lines_wait lw = {fx->dead, 100};
    if (!sp_test_wait_until(lines_reached, &lw, WAIT_EVENTS_MS)) {
        siphon_fail(fx, "the dead-letter file did not get 100 lines");
    }
    assert_true(cdc_wait_confirmed(fx->conn, fx->slot, end_lsn, 30000));
    assert_true(sp_test_proc_alive(fx->proc));

    rd_read_stream(fx, "w.public.t3a", &fx->ents);
    assert_int_equal(fx->ents.n, 200);
    for (size_t i = 0; i < fx->ents.n; i++) {
        check_entry(&fx->ents.e[i], "t3a", 'c');
        assert_int_equal(fx->ents.e[i].key, (long)i + 1);
    }
    const char *get[] = {"GET", "w.public.t3b"};
    char *still = rd_str(fx, 2, get);
    assert_string_equal(still, "not a stream");
    free(still);

    size_t n = 0;
    char **lines = sp_test_read_lines(fx->dead, &n);
    assert_int_equal(n, 100);
    for (size_t i = 0; i < n; i++) {
        char *sink = sp_test_json_get(lines[i], "sink");
        char *err = sp_test_json_get(lines[i], "error");
        char *table = sp_test_json_get(lines[i], "table");
        char *id = sp_test_json_get(lines[i], "event.after.id");
        char *eid = sp_test_json_get(lines[i], "event_id");
        char *vid = sp_test_json_get(lines[i], "event.id");
        assert_string_equal(sink, "bus");
        if (strstr(err, "WRONGTYPE") == NULL || strstr(err, "w.public.t3b") == NULL) {
            fail_msg("dead letter %zu: error \"%s\" names neither WRONGTYPE nor the key", i, err);
        }
        assert_string_equal(table, "t3b");
        assert_int_equal(strtol(id, NULL, 10), (long)i + 1);
        assert_string_equal(eid, vid);
        free(sink);
        free(err);
        free(table);
        free(id);
        free(eid);
        free(vid);
    }
    sp_test_free_lines(lines);
    assert_true(cdc_count_in_file(fx->log, "goes to dead-letter sink") >= 100);
    siphon_stop_clean(fx);
}

/* ---- 4: MAXLEN ~ ----------------------------------------------------------- */

static void max_len_trims_streams(void **state)
{
    struct fixture *fx = *state;
    const int rows = 5000;
    redis_up(fx);
    sp_test_sql(fx->conn, "CREATE TABLE t4 (id int PRIMARY KEY, v int NOT NULL)");
    char *opts = sp_test_asprintf("    url: %s\n"
                                  "    stream: \"m.{table}\"\n"
                                  "    max_len: 100\n",
                                  sp_test_redis_url(fx->redis));
    write_config(fx, "maxlen", "public.t4", opts, NULL);
    free(opts);
    siphon_run(fx);
    for (int i = 0; i < rows / 100; i++) {
        sp_test_sql(fx->conn, "INSERT INTO t4 SELECT g, g FROM generate_series(%d, %d) g",
                    i * 100 + 1, i * 100 + 100);
    }
    uint64_t end_lsn = cdc_current_lsn(fx->conn);
    if (!cdc_wait_confirmed(fx->conn, fx->slot, end_lsn, WAIT_EVENTS_MS)) {
        siphon_fail(fx, "the slot was not confirmed past the inserts");
    }

    /* XINFO STREAM: every event was added, about max_len are kept. */
    const char *xinfo[] = {"XINFO", "STREAM", "m.t4"};
    redisReply *rep = rd_cmdv(fx, 3, xinfo);
    assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
    long long added = -1;
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        if (strcmp(rep->element[i]->str, "entries-added") == 0) {
            added = rep->element[i + 1]->integer;
        }
    }
    freeReplyObject(rep);
    assert_int_equal(added, rows);
    long long len = rd_xlen(fx, "m.t4");
    fprintf(stderr, "redis max_len 100: %lld entries kept of %d\n", len, rows);
    /* "~": whole nodes of stream-node-max-entries (100) are trimmed at once. */
    assert_true(len >= 100);
    assert_true(len <= 300);

    /* What is kept is the newest, in order. */
    rd_read_stream(fx, "m.t4", &fx->ents);
    assert_int_equal(fx->ents.n, len);
    for (size_t i = 0; i < fx->ents.n; i++) {
        check_entry(&fx->ents.e[i], "t4", 'c');
        assert_int_equal(fx->ents.e[i].key, rows - (long)fx->ents.n + 1 + (long)i);
    }
    siphon_stop_clean(fx);
}

/* ---- 5: ACL user, password, database; check --------------------------------- */

static void acl_user_password_db_noperm_and_check(void **state)
{
    struct fixture *fx = *state;
    redis_up(fx);
    /* User "sip" may write keys ok_* only. */
    static const char pass_rule[] = ">" ACL_PASSWORD;
    const char *acl[] = {"ACL", "SETUSER", "sip", "on", pass_rule, "~ok_*", "+@all"};
    rd_ok(fx, 7, acl);
    sp_test_sql(fx->conn, "CREATE TABLE ok_t5 (id int PRIMARY KEY, v int NOT NULL)");
    sp_test_sql(fx->conn, "CREATE TABLE no_t5 (id int PRIMARY KEY, v int NOT NULL)");
    int port = sp_test_redis_port(fx->redis);
    /* The password in the url, percent-encoded ('-' is %2D). */
    char *opts = sp_test_asprintf("    url: redis://sip:%s@127.0.0.1:%d/3\n"
                                  "    stream: \"{table}\"\n",
                                  ACL_PASSWORD_PCT, port);
    write_config(fx, "acl", "public.ok_t5, public.no_t5", opts, NULL);
    free(opts);

    char *out = NULL;
    int st = cdc_siphon_check(fx->cfg, WAIT_EXIT_MS, &out);
    if (st != 0 || strstr(out, "sink redis \"bus\"") == NULL || strstr(out, "reachable") == NULL) {
        fprintf(stderr, "%s\n", out);
        fail_msg("siphon check exited with %d", st);
    }
    assert_null(strstr(out, ACL_PASSWORD));
    assert_null(strstr(out, ACL_PASSWORD_PCT));
    free(out);

    siphon_run(fx);
    /* Each transaction mixes both tables: NOPERM on a no_t5 key while
     * queueing aborts the transaction, and the ok_t5 records go again. */
    for (int r = 0; r < 5; r++) {
        sp_test_sql(fx->conn,
                    "BEGIN; INSERT INTO ok_t5 SELECT g, g FROM generate_series(%d, %d) g; "
                    "INSERT INTO no_t5 SELECT g, g FROM generate_series(%d, %d) g; "
                    "INSERT INTO ok_t5 SELECT g, g FROM generate_series(%d, %d) g; COMMIT",
                    r * 20 + 1, r * 20 + 10, r * 5 + 1, r * 5 + 5, r * 20 + 11, r * 20 + 20);
    }
    uint64_t end_lsn = cdc_current_lsn(fx->conn);
    if (!cdc_wait_confirmed(fx->conn, fx->slot, end_lsn, WAIT_EVENTS_MS)) {
        siphon_fail(fx, "the slot was not confirmed past the inserts");
    }
    /* Database 3 holds the stream; database 0 nothing. */
    assert_int_equal(rd_xlen(fx, "ok_t5"), 0);
    const char *sel3[] = {"SELECT", "3"};
    rd_ok(fx, 2, sel3);
    rd_read_stream(fx, "ok_t5", &fx->ents);
    assert_int_equal(fx->ents.n, 100);
    for (size_t i = 0; i < fx->ents.n; i++) {
        check_entry(&fx->ents.e[i], "ok_t5", 'c');
        assert_int_equal(fx->ents.e[i].key, (long)i + 1);
    }
    assert_int_equal(rd_xlen(fx, "no_t5"), 0);
    size_t n = 0;
    char **lines = sp_test_read_lines(fx->dead, &n);
    assert_int_equal(n, 25);
    for (size_t i = 0; i < n; i++) {
        char *err = sp_test_json_get(lines[i], "error");
        if (strstr(err, "NOPERM") == NULL) {
            fail_msg("dead letter %zu: error \"%s\" does not say NOPERM", i, err);
        }
        free(err);
        char *id = sp_test_json_get(lines[i], "event.after.id");
        assert_int_equal(strtol(id, NULL, 10), (long)i + 1);
        free(id);
    }
    sp_test_free_lines(lines);
    siphon_stop_clean(fx);
    char *text = sp_test_read_file(fx->log, NULL);
    assert_non_null(text);
    assert_null(strstr(text, ACL_PASSWORD));
    assert_null(strstr(text, ACL_PASSWORD_PCT));
    free(text);

    /* A wrong password (the password option): check fails naming it, run refuses to start. */
    opts = sp_test_asprintf("    url: redis://sip@127.0.0.1:%d/3\n"
                            "    password: wrong-pw-0000\n",
                            port);
    char *bad = write_other_config(fx, "acl_bad", "public.ok_t5", opts);
    free(opts);
    st = cdc_siphon_check(bad, WAIT_EXIT_MS, &out);
    if (st != 1 || strstr(out, "AUTH failed: WRONGPASS") == NULL || strstr(out, "hint:") == NULL) {
        fprintf(stderr, "%s\n", out);
        fail_msg("siphon check with a wrong password exited with %d", st);
    }
    assert_null(strstr(out, "wrong-pw-0000"));
    free(out);
    char *log = sp_test_asprintf("%s/acl_bad.log", fx->tmp);
    const char *argv[] = {sp_test_siphon_bin(), "run", "-c", bad, NULL};
    struct sp_proc *p = sp_test_proc_start(argv, log, log);
    st = sp_test_proc_wait(p, WAIT_EXIT_MS);
    sp_test_proc_free(p);
    out = sp_test_read_file(log, NULL);
    if (st != 1 || strstr(out, "AUTH failed: WRONGPASS") == NULL) {
        fprintf(stderr, "%s\n", out);
        fail_msg("siphon run with a wrong password exited with %d", st);
    }
    assert_null(strstr(out, "wrong-pw-0000"));
    free(out);
    free(log);
    free(bad);

    /* Nothing listening: check says so. */
    opts = sp_test_asprintf("    url: redis://127.0.0.1:%d\n", sp_test_free_port());
    char *none = write_other_config(fx, "acl_none", "public.ok_t5", opts);
    free(opts);
    st = cdc_siphon_check(none, WAIT_EXIT_MS, &out);
    if (st != 1 || strstr(out, "could not connect to redis at 127.0.0.1:") == NULL) {
        fprintf(stderr, "%s\n", out);
        fail_msg("siphon check against a closed port exited with %d", st);
    }
    free(out);
    free(none);
}

/* ---- 6: a connection closed while idle -------------------------------------- */

static void closed_idle_connection_is_replaced_at_once(void **state)
{
    struct fixture *fx = *state;
    redis_up(fx);
    sp_test_sql(fx->conn, "CREATE TABLE t6 (id int PRIMARY KEY, v int NOT NULL)");
    char *opts = sp_test_asprintf("    url: %s\n"
                                  "    stream: \"c.{table}\"\n",
                                  sp_test_redis_url(fx->redis));
    write_config(fx, "idle", "public.t6", opts, NULL);
    free(opts);
    siphon_run(fx);
    sp_test_sql(fx->conn, "INSERT INTO t6 SELECT g, g FROM generate_series(1, 10) g");
    wait_xlen(fx, "c.t6", 10);
    /* As the server's `timeout` does: close siphon's connection (not the test's). */
    const char *kill_cmd[] = {"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"};
    assert_true(rd_int(fx, 6, kill_cmd) >= 1);
    sp_test_sql(fx->conn, "INSERT INTO t6 SELECT g, g FROM generate_series(11, 20) g");
    wait_xlen(fx, "c.t6", 20);
    rd_read_stream(fx, "c.t6", &fx->ents);
    assert_int_equal(fx->ents.n, 20);
    for (size_t i = 0; i < fx->ents.n; i++) {
        check_entry(&fx->ents.e[i], "t6", 'c');
        assert_int_equal(fx->ents.e[i].key, (long)i + 1);
    }
    /* Replaced within the same delivery: no retry, no warning. */
    assert_int_equal(cdc_count_in_file(fx->log, "the server closed the connection"), 1);
    assert_int_equal(cdc_count_in_file(fx->log, "reconnected to"), 1);
    assert_int_equal(cdc_count_in_file(fx->log, "could not deliver"), 0);
    siphon_stop_clean(fx);
}

/* ---- 7: a user that may not run MULTI ------------------------------------------ */

static void without_multi_each_event_still_arrives_once(void **state)
{
    struct fixture *fx = *state;
    redis_up(fx);
    static const char pass_rule[] = ">" ACL_PASSWORD;
    const char *acl[] = {"ACL", "SETUSER", "plain", "on", pass_rule, "~*", "+@all", "-multi"};
    rd_ok(fx, 8, acl);
    sp_test_sql(fx->conn, "CREATE TABLE t7 (id int PRIMARY KEY, v int NOT NULL)");
    char *opts = sp_test_asprintf("    host: 127.0.0.1\n"
                                  "    port: %d\n"
                                  "    username: plain\n"
                                  "    password: %s\n",
                                  sp_test_redis_port(fx->redis), ACL_PASSWORD);
    write_config(fx, "nomulti", "public.t7", opts, NULL);
    free(opts);
    siphon_run(fx);
    for (int i = 0; i < 10; i++) {
        sp_test_sql(fx->conn, "INSERT INTO t7 SELECT g, g FROM generate_series(%d, %d) g",
                    i * 50 + 1, i * 50 + 50);
    }
    uint64_t end_lsn = cdc_current_lsn(fx->conn);
    if (!cdc_wait_confirmed(fx->conn, fx->slot, end_lsn, WAIT_EVENTS_MS)) {
        siphon_fail(fx, "the slot was not confirmed past the inserts");
    }
    rd_read_stream(fx, "db.public.t7", &fx->ents);
    assert_int_equal(fx->ents.n, 500);
    for (size_t i = 0; i < fx->ents.n; i++) {
        check_entry(&fx->ents.e[i], "t7", 'c');
        assert_int_equal(fx->ents.e[i].key, (long)i + 1);
    }
    assert_int_equal(cdc_count_in_file(fx->log, "MULTI refused"), 1);
    assert_int_equal(cdc_count_in_file(fx->log, "could not deliver"), 0);
    assert_int_equal(sp_test_count_lines(fx->dead), 0);
    siphon_stop_clean(fx);
}

/* ---- configuration errors ------------------------------------------------------- */

static void bad_urls_and_templates_are_refused(void **state)
{
    struct fixture *fx = *state;
    static const struct {
        const char *opts;
        const char *message;
    } cases[] = {
        {"    url: rediss://127.0.0.1:6379\n", "TLS (rediss://) is not supported"},
        {"    url: http://127.0.0.1\n", "url: expected redis://"},
        {"    url: redis://127.0.0.1:99999\n", "the port must be a number from 1 to 65535"},
        {"    url: redis://127.0.0.1:6379/x\n", "the path must be a database number"},
        {"    url: redis://127.0.0.1\n    host: localhost\n", "both url and host are set"},
        {"    url: redis://:pw@127.0.0.1\n    password: other\n", "the password is set twice"},
        {"    username: sip\n", "username \"sip\" is set without a password"},
        {"    url: redis://127.0.0.1/2\n    db: 3\n", "url names db 2 but db is 3"},
        {"    stream: \"{source}.{tabel}\"\n", "unknown placeholder \"{tabel}\""},
    };
    for (size_t i = 0; i < SP_ARRAY_LEN(cases); i++) {
        char *name = sp_test_asprintf("badconf%zu", i);
        char *cfg = write_other_config(fx, name, "public.t1", cases[i].opts);
        char *out = NULL;
        int st = cdc_siphon_check(cfg, WAIT_EXIT_MS, &out);
        if (st != 1 || strstr(out, cases[i].message) == NULL) {
            fprintf(stderr, "%s\n", out);
            fail_msg("case %zu: siphon check exited with %d, expected 1 and \"%s\"", i, st,
                     cases[i].message);
        }
        assert_null(strstr(out, "pw@"));
        free(out);
        free(cfg);
        free(name);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(every_event_in_commit_order_with_documented_fields, test_cleanup),
        cmocka_unit_test_teardown(outage_loses_nothing_and_bounds_memory, test_cleanup),
        cmocka_unit_test_teardown(wrongtype_goes_to_dead_letter_and_others_flow, test_cleanup),
        cmocka_unit_test_teardown(max_len_trims_streams, test_cleanup),
        cmocka_unit_test_teardown(acl_user_password_db_noperm_and_check, test_cleanup),
        cmocka_unit_test_teardown(closed_idle_connection_is_replaced_at_once, test_cleanup),
        cmocka_unit_test_teardown(without_multi_each_event_still_arrives_once, test_cleanup),
        cmocka_unit_test_teardown(bad_urls_and_templates_are_refused, test_cleanup),
    };
    return SP_TEST_RUN_GROUP("redis", tests, group_setup, group_teardown);
}
