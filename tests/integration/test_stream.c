// SPDX-License-Identifier: Apache-2.0
/*
 * End-to-end streaming through `siphon run` against a real PostgreSQL 15,
 * one file sink per test: every op type (insert, update, update of the
 * primary key, delete, a TRUNCATE of two tables, transactional and
 * non-transactional logical decoding messages), event ids and transaction
 * metadata, rolled-back transactions and tables outside the stream, schema
 * changes mid-stream, tables without a primary key, and unchanged TOASTed
 * values under REPLICA IDENTITY DEFAULT and FULL.
 *
 * Value conversion per type is covered by test_types_pg.c; crashes,
 * reconnects, memory and shutdown by their own binaries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/harness.h"

/* fail_msg jumps out of the test; abort(), never reached, tells analyzers it does not return. */
#define FAIL_MSG(...)          \
    do {                       \
        fail_msg(__VA_ARGS__); \
        abort();               \
    } while (0)

/* Bounds for waits that only run out when something is wrong (ASan builds are slow). */
#define WAIT_START_MS  60000
#define WAIT_EVENTS_MS 60000
#define WAIT_EXIT_MS   60000

/* 3200 md5 hex digests: 102400 bytes that pglz cannot shrink below the TOAST threshold. */
#define BIG_VALUE_SQL "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 3200) i)"
#define BIG_VALUE_LEN 102400

struct fixture {
    struct sp_pg *pg;
    PGconn *conn;
    char *tmp;
    /* Per test, released by test_cleanup even when the test fails: */
    struct sp_proc *proc;
    char *slot;
    char *cfg;
    char *out;
    char *err;
    char **lines;
    size_t nlines;
    char *text;
};

static int group_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    *state = fx;
    fx->tmp = sp_test_tmpdir("stream");
    struct sp_pg_opts opts = {.tag = "pg-stream", .extra_conf = NULL};
    fx->pg = sp_test_pg_start(&opts);
    fx->conn = sp_test_pg_connect(fx->pg);
    return 0;
}

static int test_cleanup(void **state)
{
    struct fixture *fx = *state;
    if (fx->proc != NULL) {
        sp_test_proc_signal(fx->proc, SIGKILL);
        sp_test_proc_free(fx->proc);
        fx->proc = NULL;
    }
    if (fx->slot != NULL) {
        /* The walsender may outlive siphon by a moment; the slot is dropped once it is free. */
        if (sp_test_sql_poll_until(fx->conn, "0", 10000,
                                   "SELECT count(*) FROM pg_replication_slots "
                                   "WHERE slot_name = '%s' AND active",
                                   fx->slot)) {
            sp_test_sql(fx->conn,
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                        "WHERE slot_name = '%s'",
                        fx->slot);
        }
    }
    free(fx->slot);
    free(fx->cfg);
    free(fx->out);
    free(fx->err);
    fx->slot = fx->cfg = fx->out = fx->err = NULL;
    sp_test_free_lines(fx->lines);
    fx->lines = NULL;
    fx->nlines = 0;
    free(fx->text);
    fx->text = NULL;
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

/* ---- running siphon ------------------------------------------------------ */

/* Prints siphon's stderr and output file, then fails the test with msg. */
static void siphon_fail(struct fixture *fx, const char *msg)
{
    char *err = fx->err != NULL ? sp_test_read_file(fx->err, NULL) : NULL;
    char *out = fx->out != NULL ? sp_test_read_file(fx->out, NULL) : NULL;
    fprintf(stderr, "---- siphon stderr ----\n%s\n---- siphon output ----\n%.20000s\n----\n",
            err != NULL ? err : "(none)", out != NULL ? out : "(none)");
    free(err);
    free(out);
    sp_test_mark_failed();
    FAIL_MSG("%s", msg);
}

struct file_wait {
    const char *path;
    const char *needle; /* wait for this text, or */
    size_t lines;       /* for at least this many lines */
    struct sp_proc *proc;
};

static bool file_ready(void *ctx)
{
    struct file_wait *w = ctx;
    if (w->needle != NULL) {
        char *text = sp_test_read_file(w->path, NULL);
        bool found = text != NULL && strstr(text, w->needle) != NULL;
        free(text);
        if (found) {
            return true;
        }
    } else if (sp_test_count_lines(w->path) >= w->lines) {
        return true;
    }
    /* A siphon that exited will not write more: stop waiting. */
    return w->proc != NULL && !sp_test_proc_alive(w->proc);
}

/*
 * Writes a config with one source (slot s_<name>, publication p_<name>),
 * the output file sink and one stream of tables (a YAML flow list body),
 * plus stream_extra (YAML lines indented for the stream's mapping), starts
 * `siphon run` and waits until it streams.
 */
static void siphon_start(struct fixture *fx, const char *name, const char *tables,
                         const char *stream_extra)
{
    fx->cfg = sp_test_asprintf("%s/%s.yaml", fx->tmp, name);
    fx->out = sp_test_asprintf("%s/%s.jsonl", fx->tmp, name);
    fx->err = sp_test_asprintf("%s/%s.stderr", fx->tmp, name);
    char *stdout_path = sp_test_asprintf("%s/%s.stdout", fx->tmp, name);
    fx->slot = sp_test_asprintf("s_%s", name);
    sp_test_write_file(fx->cfg,
                       "sources:\n"
                       "  db:\n"
                       "    type: postgres\n"
                       "    snapshot: never\n"
                       "    connection: \"%s\"\n"
                       "    slot: s_%s\n"
                       "    publication: p_%s\n"
                       "sinks:\n"
                       "  out:\n"
                       "    type: file\n"
                       "    path: %s\n"
                       "streams:\n"
                       "  - name: s\n"
                       "    source: db\n"
                       "    tables: [%s]\n"
                       "    sink: out\n"
                       "%s",
                       sp_test_pg_conninfo(fx->pg), name, name, fx->out, tables,
                       stream_extra != NULL ? stream_extra : "");
    const char *argv[] = {sp_test_siphon_bin(), "run", "-c", fx->cfg, NULL};
    fx->proc = sp_test_proc_start(argv, stdout_path, fx->err);
    free(stdout_path);
    struct file_wait w = {.path = fx->err, .needle = "streaming from slot", .proc = fx->proc};
    if (!sp_test_wait_until(file_ready, &w, WAIT_START_MS) || !sp_test_proc_alive(fx->proc)) {
        siphon_fail(fx, "siphon did not start streaming");
    }
}

/* Waits until the output file has n lines. */
static void siphon_wait_events(struct fixture *fx, size_t n)
{
    struct file_wait w = {.path = fx->out, .lines = n, .proc = fx->proc};
    if (!sp_test_wait_until(file_ready, &w, WAIT_EVENTS_MS) || sp_test_count_lines(fx->out) < n) {
        char msg[128];
        snprintf(msg, sizeof(msg), "expected %zu events, got %zu", n, sp_test_count_lines(fx->out));
        siphon_fail(fx, msg);
    }
}

/* SIGTERM, expects exit code 0, then reads exactly n events into fx->lines. */
static void siphon_stop(struct fixture *fx, size_t n)
{
    sp_test_proc_signal(fx->proc, SIGTERM);
    int rc = sp_test_proc_wait(fx->proc, WAIT_EXIT_MS);
    if (rc != 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "siphon exited with %d after SIGTERM, expected 0", rc);
        siphon_fail(fx, msg);
    }
    fx->lines = sp_test_read_lines(fx->out, &fx->nlines);
    if (fx->nlines != n) {
        char msg[128];
        snprintf(msg, sizeof(msg), "expected exactly %zu events, got %zu", n, fx->nlines);
        siphon_fail(fx, msg);
    }
}

/* ---- reading events ------------------------------------------------------ */

/* Fails with the (shortened) line unless the value at path is expected (NULL: JSON null). */
static void assert_ev(const char *line, const char *path, const char *expected)
{
    char *got = NULL;
    enum sp_test_json kind = sp_test_json_lookup(line, path, &got);
    bool ok =
        kind > SP_TEST_JSON_MISSING &&
        (expected == NULL ? kind == SP_TEST_JSON_NULL : got != NULL && strcmp(got, expected) == 0);
    char msg[3000] = "";
    if (!ok) {
        snprintf(msg, sizeof(msg), "at \"%s\": got %s (kind %d), expected %s in event %.1500s",
                 path, got != NULL ? got : "null/missing", (int)kind,
                 expected != NULL ? expected : "null", line);
    }
    free(got);
    if (!ok) {
        FAIL_MSG("%s", msg);
    }
}

/* The unescaped string or number at path as a malloc'd text; fails when missing or null. */
static char *ev_text(const char *line, const char *path)
{
    char *v = sp_test_json_get(line, path);
    if (v == NULL) {
        FAIL_MSG("at \"%s\": null in event %.1500s", path, line);
    }
    return v;
}

static uint64_t ev_u64(const char *line, const char *path)
{
    char *v = ev_text(line, path);
    char *end = NULL;
    uint64_t n = strtoull(v, &end, 10);
    bool ok = end != v && *end == '\0';
    free(v);
    if (!ok) {
        FAIL_MSG("at \"%s\": not an unsigned integer in event %.1500s", path, line);
    }
    return n;
}

struct ev_meta {
    char op;
    uint64_t lsn;
    uint64_t commit_lsn;
    uint64_t xid;
    uint64_t id_lsn; /* the LSN part of id */
    unsigned seq;    /* the sequence part of id */
};

/*
 * Parses "X/Y" (PostgreSQL's LSN text) at s; returns the position after it,
 * or NULL when s does not start with one.
 */
static const char *parse_lsn(const char *s, uint64_t *lsn)
{
    char *end = NULL;
    if (!isxdigit((unsigned char)s[0])) {
        return NULL;
    }
    unsigned long long hi = strtoull(s, &end, 16);
    if (*end != '/' || !isxdigit((unsigned char)end[1]) || hi > UINT32_MAX) {
        return NULL;
    }
    const char *lo_text = end + 1;
    unsigned long long lo = strtoull(lo_text, &end, 16);
    if (lo > UINT32_MAX) {
        return NULL;
    }
    *lsn = ((uint64_t)hi << 32) | (uint64_t)lo;
    return end;
}

static struct ev_meta ev_meta(const char *line)
{
    struct ev_meta m;
    char *op = ev_text(line, "op");
    m.op = '?';
    if (strlen(op) == 1) {
        m.op = op[0];
    }
    free(op);
    m.lsn = ev_u64(line, "source.lsn");
    m.commit_lsn = ev_u64(line, "source.commit_lsn");
    m.xid = ev_u64(line, "source.txId");
    char *id = ev_text(line, "id");
    const char *p = parse_lsn(id, &m.id_lsn);
    char *end = NULL;
    unsigned long long seq = 0;
    bool ok = p != NULL && p[0] == ':' && isdigit((unsigned char)p[1]);
    if (ok) {
        seq = strtoull(p + 1, &end, 10);
        ok = *end == '\0' && seq <= UINT32_MAX;
    }
    free(id);
    if (!ok) {
        FAIL_MSG("id is not \"<lsn>:<seq>\" in event %.1500s", line);
    }
    m.seq = (unsigned)seq;
    return m;
}

/*
 * Lines [from, from + n) are one transaction: the same commit_lsn, txId and
 * commit time, ids "<commit lsn>:<seq>" with seq strictly increasing
 * (1, 2, ... n when consecutive), change LSNs non-decreasing and not past
 * the commit. Returns the transaction's commit LSN.
 */
static uint64_t assert_txn(char **lines, size_t from, size_t n, bool consecutive)
{
    struct ev_meta first = ev_meta(lines[from]);
    char ts[32];
    char *ts_text = ev_text(lines[from], "source.ts_ms");
    snprintf(ts, sizeof(ts), "%s", ts_text);
    free(ts_text);
    assert_true(first.xid > 0);
    struct ev_meta prev = first;
    for (size_t i = from; i < from + n; i++) {
        struct ev_meta m = ev_meta(lines[i]);
        if (m.commit_lsn != first.commit_lsn || m.xid != first.xid || m.id_lsn != m.commit_lsn ||
            m.lsn > m.commit_lsn || (i > from && (m.seq <= prev.seq || m.lsn < prev.lsn)) ||
            (consecutive && m.seq != i - from + 1)) {
            FAIL_MSG("event %zu does not continue the transaction of event %zu: %.1500s", i, from,
                     lines[i]);
        }
        assert_ev(lines[i], "source.ts_ms", ts);
        prev = m;
    }
    return first.commit_lsn;
}

/*
 * A logical decoding message: before and after null, the message in a
 * top-level "message" member, the prefix as the key, no table.
 */
static void assert_message(const char *line, const char *prefix, const char *content,
                           bool transactional)
{
    assert_ev(line, "op", "m");
    char *key = sp_test_asprintf("{\"prefix\":\"%s\"}", prefix);
    assert_ev(line, "key", key);
    free(key);
    assert_ev(line, "before", NULL);
    assert_ev(line, "after", NULL);
    assert_ev(line, "message.prefix", prefix);
    assert_ev(line, "message.content", content);
    assert_ev(line, "message.transactional", transactional ? "true" : "false");
    assert_int_equal(sp_test_json_lookup(line, "message.encoding", NULL), SP_TEST_JSON_MISSING);
    assert_ev(line, "source.schema", "");
    assert_ev(line, "source.table", "");
}

static void assert_source(const char *line, const char *table)
{
    assert_ev(line, "source.connector", "postgresql");
    assert_ev(line, "source.name", "db");
    assert_ev(line, "source.db", "postgres");
    assert_ev(line, "source.schema", "public");
    assert_ev(line, "source.table", table);
    assert_ev(line, "source.snapshot", "false");
    assert_ev(line, "source.version", SP_VERSION);
}

/* Runs sql and returns the server's primary error message (malloc'd); fails if it succeeds. */
static char *sql_error(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    char *copy = sp_test_asprintf("%s", msg != NULL ? msg : "");
    PQclear(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        free(copy);
        FAIL_MSG("expected an error from: %s", sql);
    }
    return copy;
}

/* ---- every op type --------------------------------------------------------- */

/* The changes of every_op_type...; returns the LSN pg_logical_emit_message gave (malloc'd). */
static char *ops_write(PGconn *c)
{
    sp_test_sql(c, "BEGIN;"
                   "INSERT INTO ops_t VALUES (1, 'a');"
                   "INSERT INTO ops_t VALUES (2, 'b');"
                   "INSERT INTO ops_u VALUES (1, 10);"
                   "INSERT INTO ops_other VALUES (1);"
                   "UPDATE ops_t SET name = 'a2' WHERE id = 1;"
                   "COMMIT");
    sp_test_sql(c, "UPDATE ops_t SET id = 10 WHERE id = 2");
    sp_test_sql(c, "DELETE FROM ops_t WHERE id = 1");
    sp_test_sql(c, "BEGIN; INSERT INTO ops_t VALUES (3, 'rolled back'); ROLLBACK");
    sp_test_sql(c, "INSERT INTO ops_other VALUES (2)");
    sp_test_sql(c, "TRUNCATE ops_t, ops_other, ops_u");
    sp_test_sql(c, "BEGIN;"
                   "INSERT INTO ops_t VALUES (4, 'with message');"
                   "SELECT pg_logical_emit_message(true, 'ops-tx', 'in the transaction');"
                   "COMMIT");
    char *nt_lsn = sp_test_sql_value(
        c, "SELECT pg_logical_emit_message(false, 'ops-nt', 'outside \"any\" transaction')");
    /* Content that is not UTF-8 text goes out as base64. */
    sp_test_sql(c, "SELECT pg_logical_emit_message(false, 'ops-bin', '\\xff00fe'::bytea)");
    /* Commit order is output order: once this is out, everything before it is too. */
    sp_test_sql(c, "INSERT INTO ops_t VALUES (5, 'last')");
    return nt_lsn;
}

/* Lines 0-5: inserts and an update in one transaction, a key update, a delete. */
static void ops_check_rows(char **l, uint64_t *commit)
{
    /* One transaction: 3 inserts and an update; ops_other's insert left out. */
    commit[0] = assert_txn(l, 0, 4, false);
    assert_ev(l[0], "op", "c");
    assert_ev(l[0], "key", "{\"id\":1}");
    assert_ev(l[0], "before", NULL);
    assert_ev(l[0], "after", "{\"id\":1,\"name\":\"a\"}");
    assert_source(l[0], "ops_t");
    assert_ev(l[1], "op", "c");
    assert_ev(l[1], "after", "{\"id\":2,\"name\":\"b\"}");
    assert_source(l[1], "ops_t");
    assert_ev(l[2], "op", "c");
    assert_ev(l[2], "key", "{\"id\":1}");
    assert_ev(l[2], "after", "{\"id\":1,\"v\":10}");
    assert_source(l[2], "ops_u");
    assert_ev(l[3], "op", "u");
    assert_ev(l[3], "key", "{\"id\":1}");
    assert_ev(l[3], "before", NULL);
    assert_ev(l[3], "after", "{\"id\":1,\"name\":\"a2\"}");
    assert_source(l[3], "ops_t");

    /* Update of the primary key: before is the old key, the key is the new one. */
    commit[1] = assert_txn(l, 4, 1, true);
    assert_ev(l[4], "op", "u");
    assert_ev(l[4], "key", "{\"id\":10}");
    assert_ev(l[4], "before", "{\"id\":2}");
    assert_ev(l[4], "after", "{\"id\":10,\"name\":\"b\"}");

    /* Delete under REPLICA IDENTITY DEFAULT: before is the key. */
    commit[2] = assert_txn(l, 5, 1, true);
    assert_ev(l[5], "op", "d");
    assert_ev(l[5], "key", "{\"id\":1}");
    assert_ev(l[5], "before", "{\"id\":1}");
    assert_ev(l[5], "after", NULL);
}

/* Lines 6-11: the truncate, the transactional and non-transactional messages. */
static void ops_check_truncate_and_messages(char **l, const char *nt_lsn, uint64_t *commit)
{
    /* TRUNCATE of three tables, two in the stream: one event per streamed table. */
    commit[3] = assert_txn(l, 6, 2, false);
    char tables[64];
    char *t0 = ev_text(l[6], "source.table");
    char *t1 = ev_text(l[7], "source.table");
    snprintf(tables, sizeof(tables), "%s %s", t0, t1);
    free(t0);
    free(t1);
    assert_true(strcmp(tables, "ops_t ops_u") == 0 || strcmp(tables, "ops_u ops_t") == 0);
    for (size_t i = 6; i < 8; i++) {
        assert_ev(l[i], "op", "t");
        assert_ev(l[i], "key", NULL);
        assert_ev(l[i], "before", NULL);
        assert_ev(l[i], "after", NULL);
        assert_ev(l[i], "source.schema", "public");
    }

    /* A transactional message is an event of its transaction, after the insert. */
    commit[4] = assert_txn(l, 8, 2, true);
    assert_ev(l[8], "op", "c");
    assert_ev(l[8], "after", "{\"id\":4,\"name\":\"with message\"}");
    assert_message(l[9], "ops-tx", "in the transaction", true);

    /* A non-transactional message: no transaction, its own LSN, sequence 0. */
    assert_message(l[10], "ops-nt", "outside \"any\" transaction", false);
    struct ev_meta nt = ev_meta(l[10]);
    uint64_t want = 0;
    assert_non_null(parse_lsn(nt_lsn, &want));
    assert_true(nt.seq == 0 && nt.lsn == want && nt.commit_lsn == want && nt.id_lsn == want);
    assert_int_equal(nt.xid, 0);
    char *want_id = sp_test_asprintf("%s:0", nt_lsn);
    assert_ev(l[10], "id", want_id);
    free(want_id);

    assert_ev(l[11], "op", "m");
    assert_ev(l[11], "message.prefix", "ops-bin");
    assert_ev(l[11], "message.content", "/wD+");
    assert_ev(l[11], "message.encoding", "base64");
    assert_ev(l[11], "message.transactional", "false");
    struct ev_meta bin = ev_meta(l[11]);
    assert_true(bin.seq == 0 && bin.lsn == bin.commit_lsn && bin.lsn > nt.lsn);
    commit[5] = nt.lsn;
    commit[6] = bin.lsn;
}

static void every_op_type_streams_with_ids_and_transaction_metadata(void **state)
{
    struct fixture *fx = *state;
    PGconn *c = fx->conn;
    sp_test_sql(c, "CREATE TABLE ops_t (id int PRIMARY KEY, name text);"
                   "CREATE TABLE ops_u (id int PRIMARY KEY, v int);"
                   "CREATE TABLE ops_other (id int PRIMARY KEY);"
                   /* ops_other is published but in no stream: siphon must drop its changes. */
                   "CREATE PUBLICATION p_ops FOR TABLE ops_t, ops_u, ops_other");
    siphon_start(fx, "ops", "public.ops_t, public.ops_u", NULL);
    fx->text = ops_write(c);
    siphon_wait_events(fx, 13);
    siphon_stop(fx, 13);
    char **l = fx->lines;

    uint64_t commit[8];
    ops_check_rows(l, commit);
    ops_check_truncate_and_messages(l, fx->text, commit);
    commit[7] = assert_txn(l, 12, 1, true);
    assert_ev(l[12], "after", "{\"id\":5,\"name\":\"last\"}");

    /* Output in commit (WAL) order; each transaction its own txId; ids unique. */
    for (size_t i = 1; i < 8; i++) {
        assert_true(commit[i - 1] < commit[i]);
    }
    assert_true(ev_meta(l[0]).xid != ev_meta(l[4]).xid);
    for (size_t i = 0; i < fx->nlines; i++) {
        /* The first member of every line is the key. */
        assert_int_equal(strncmp(l[i], "{\"key\":", 7), 0);
        for (size_t j = i + 1; j < fx->nlines; j++) {
            struct ev_meta a = ev_meta(l[i]);
            struct ev_meta b = ev_meta(l[j]);
            assert_false(a.id_lsn == b.id_lsn && a.seq == b.seq);
        }
    }
}

/*
 * Aborted work never streams: a rolled-back transaction (with a
 * transactional message), a subtransaction rolled back to its savepoint.
 * A non-transactional message is out as soon as it is written, whatever
 * its transaction does later.
 */
static void rolled_back_work_produces_nothing(void **state)
{
    struct fixture *fx = *state;
    PGconn *c = fx->conn;
    sp_test_sql(c, "CREATE TABLE rb_t (id int PRIMARY KEY, v text)");
    siphon_start(fx, "rb", "public.rb_t", NULL);

    sp_test_sql(c, "BEGIN; INSERT INTO rb_t VALUES (1, 'no'); ROLLBACK");
    sp_test_sql(c, "BEGIN; INSERT INTO rb_t VALUES (2, 'no');"
                   "SELECT pg_logical_emit_message(true, 'rb', 'rolled back'); ROLLBACK");
    sp_test_sql(c, "BEGIN; INSERT INTO rb_t VALUES (3, 'yes');"
                   "SAVEPOINT a;"
                   "INSERT INTO rb_t VALUES (4, 'no');"
                   "UPDATE rb_t SET v = 'no' WHERE id = 3;"
                   "ROLLBACK TO SAVEPOINT a;"
                   "INSERT INTO rb_t VALUES (5, 'yes');"
                   "COMMIT");
    sp_test_sql(c, "BEGIN; INSERT INTO rb_t VALUES (6, 'no');"
                   "SELECT pg_logical_emit_message(false, 'rb-nt', 'kept'); ROLLBACK");
    sp_test_sql(c, "INSERT INTO rb_t VALUES (7, 'yes')");
    siphon_wait_events(fx, 4);
    siphon_stop(fx, 4);
    char **l = fx->lines;
    assert_txn(l, 0, 2, true);
    assert_ev(l[0], "after", "{\"id\":3,\"v\":\"yes\"}");
    assert_ev(l[1], "after", "{\"id\":5,\"v\":\"yes\"}");
    assert_message(l[2], "rb-nt", "kept", false);
    assert_ev(l[3], "after", "{\"id\":7,\"v\":\"yes\"}");
}

/* ---- schema changes ---------------------------------------------------------- */

static void alter_table_mid_stream_changes_the_columns_of_later_events(void **state)
{
    struct fixture *fx = *state;
    PGconn *c = fx->conn;
    sp_test_sql(c, "CREATE TABLE alt_t (id int PRIMARY KEY, a int, b text, note text)");
    siphon_start(fx, "alt", "public.alt_t", NULL);

    sp_test_sql(c, "INSERT INTO alt_t VALUES (1, 10, 'x', 'n1')");
    sp_test_sql(c, "ALTER TABLE alt_t ADD COLUMN c int DEFAULT 7");
    sp_test_sql(c, "INSERT INTO alt_t (id, a, b, note) VALUES (2, 20, 'y', 'n2')");
    sp_test_sql(c, "UPDATE alt_t SET a = 11 WHERE id = 1");
    sp_test_sql(c, "ALTER TABLE alt_t DROP COLUMN b");
    sp_test_sql(c, "INSERT INTO alt_t (id, a, note) VALUES (3, 30, 'n3')");
    sp_test_sql(c, "UPDATE alt_t SET note = 'n2b' WHERE id = 2");
    sp_test_sql(c, "ALTER TABLE alt_t RENAME COLUMN a TO amount");
    sp_test_sql(c, "INSERT INTO alt_t (id, amount, note) VALUES (4, 40, 'n4')");
    sp_test_sql(c, "ALTER TABLE alt_t ALTER COLUMN amount TYPE bigint");
    sp_test_sql(c, "INSERT INTO alt_t (id, amount, note) VALUES (5, 5000000000, 'n5')");
    sp_test_sql(c, "UPDATE alt_t SET amount = amount * 1000000000 WHERE id = 3");
    sp_test_sql(c, "ALTER TABLE alt_t ALTER COLUMN note TYPE varchar(40)");
    sp_test_sql(c, "INSERT INTO alt_t (id, amount, note) VALUES (6, 6, 'n6')");
    sp_test_sql(c, "UPDATE alt_t SET note = 'n6b' WHERE id = 6");
    /* DDL between two changes of one transaction. */
    sp_test_sql(c, "BEGIN;"
                   "INSERT INTO alt_t (id, amount, note) VALUES (7, 7, 'n7');"
                   "ALTER TABLE alt_t ADD COLUMN d text DEFAULT 'dd';"
                   "INSERT INTO alt_t (id, amount, note) VALUES (8, 8, 'n8');"
                   "ALTER TABLE alt_t DROP COLUMN c;"
                   "UPDATE alt_t SET note = 'n7b' WHERE id = 7;"
                   "COMMIT");
    sp_test_sql(c, "DELETE FROM alt_t WHERE id = 8");
    siphon_wait_events(fx, 14);
    siphon_stop(fx, 14);
    char **l = fx->lines;

    static const struct {
        const char *op;
        const char *after;
    } want[] = {
        {"c", "{\"id\":1,\"a\":10,\"b\":\"x\",\"note\":\"n1\"}"},
        {"c", "{\"id\":2,\"a\":20,\"b\":\"y\",\"note\":\"n2\",\"c\":7}"},
        {"u", "{\"id\":1,\"a\":11,\"b\":\"x\",\"note\":\"n1\",\"c\":7}"},
        {"c", "{\"id\":3,\"a\":30,\"note\":\"n3\",\"c\":7}"},
        {"u", "{\"id\":2,\"a\":20,\"note\":\"n2b\",\"c\":7}"},
        {"c", "{\"id\":4,\"amount\":40,\"note\":\"n4\",\"c\":7}"},
        {"c", "{\"id\":5,\"amount\":5000000000,\"note\":\"n5\",\"c\":7}"},
        {"u", "{\"id\":3,\"amount\":30000000000,\"note\":\"n3\",\"c\":7}"},
        {"c", "{\"id\":6,\"amount\":6,\"note\":\"n6\",\"c\":7}"},
        {"u", "{\"id\":6,\"amount\":6,\"note\":\"n6b\",\"c\":7}"},
        {"c", "{\"id\":7,\"amount\":7,\"note\":\"n7\",\"c\":7}"},
        {"c", "{\"id\":8,\"amount\":8,\"note\":\"n8\",\"c\":7,\"d\":\"dd\"}"},
        {"u", "{\"id\":7,\"amount\":7,\"note\":\"n7b\",\"d\":\"dd\"}"},
        {"d", NULL},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_ev(l[i], "op", want[i].op);
        assert_ev(l[i], "after", want[i].after);
        assert_source(l[i], "alt_t");
    }
    assert_ev(l[13], "before", "{\"id\":8}");
    assert_txn(l, 10, 3, true);
}

/* ---- tables without a primary key ---------------------------------------- */

static void table_without_primary_key_streams_inserts_and_needs_full_identity(void **state)
{
    struct fixture *fx = *state;
    PGconn *c = fx->conn;
    sp_test_sql(c, "CREATE TABLE nk_t (a int, b text)");
    siphon_start(fx, "nk", "public.nk_t", NULL);

    sp_test_sql(c, "INSERT INTO nk_t VALUES (1, 'x')");
    /* Published with REPLICA IDENTITY DEFAULT and no key: the server refuses these. */
    char *e = sql_error(c, "UPDATE nk_t SET b = 'y' WHERE a = 1");
    if (strstr(e, "replica identity") == NULL) {
        FAIL_MSG("UPDATE error does not mention the replica identity: %s", e);
    }
    free(e);
    e = sql_error(c, "DELETE FROM nk_t WHERE a = 1");
    if (strstr(e, "replica identity") == NULL) {
        FAIL_MSG("DELETE error does not mention the replica identity: %s", e);
    }
    free(e);

    sp_test_sql(c, "ALTER TABLE nk_t REPLICA IDENTITY FULL");
    sp_test_sql(c, "UPDATE nk_t SET b = 'y' WHERE a = 1");
    sp_test_sql(c, "DELETE FROM nk_t WHERE a = 1");
    sp_test_sql(c, "INSERT INTO nk_t VALUES (2, NULL)");
    siphon_wait_events(fx, 4);
    siphon_stop(fx, 4);
    char **l = fx->lines;

    assert_ev(l[0], "op", "c");
    assert_ev(l[0], "key", NULL);
    assert_ev(l[0], "after", "{\"a\":1,\"b\":\"x\"}");
    assert_source(l[0], "nk_t");

    /* REPLICA IDENTITY FULL: the whole old row, which is also the key. */
    assert_ev(l[1], "op", "u");
    assert_ev(l[1], "before", "{\"a\":1,\"b\":\"x\"}");
    assert_ev(l[1], "after", "{\"a\":1,\"b\":\"y\"}");
    assert_ev(l[1], "key", "{\"a\":1,\"b\":\"y\"}");
    assert_ev(l[2], "op", "d");
    assert_ev(l[2], "before", "{\"a\":1,\"b\":\"y\"}");
    assert_ev(l[2], "after", NULL);
    assert_ev(l[2], "key", "{\"a\":1,\"b\":\"y\"}");
    assert_ev(l[3], "op", "c");
    assert_ev(l[3], "after", "{\"a\":2,\"b\":null}");
    assert_ev(l[3], "key", "{\"a\":2,\"b\":null}");
}

/* ---- unchanged TOASTed values -------------------------------------------------- */

static void create_toast_table(PGconn *c, const char *table, bool full)
{
    sp_test_sql(c, "CREATE TABLE %s (id int PRIMARY KEY, n int, big text)", table);
    if (full) {
        sp_test_sql(c, "ALTER TABLE %s REPLICA IDENTITY FULL", table);
    }
}

/* Inserts the big row and checks the server really moved it out of line. */
static void insert_toasted_row(PGconn *c, const char *table)
{
    sp_test_sql(c, "INSERT INTO %s VALUES (1, 0, " BIG_VALUE_SQL ")", table);
    assert_int_equal(sp_test_sql_long(c, "SELECT octet_length(big) FROM %s", table), BIG_VALUE_LEN);
    assert_int_equal(sp_test_sql_long(c,
                                      "SELECT (pg_relation_size(reltoastrelid) > 0)::int "
                                      "FROM pg_class WHERE relname = '%s'",
                                      table),
                     1);
}

static void assert_big(const char *line, const char *path, const char *want)
{
    char *got = ev_text(line, path);
    bool same = strcmp(got, want) == 0;
    size_t len = strlen(got);
    free(got);
    if (!same) {
        FAIL_MSG("at \"%s\": a %zu-byte value, not the %zu-byte value in the table", path, len,
                 strlen(want));
    }
}

static void unchanged_toast_is_placeholder_under_default_and_value_under_full(void **state)
{
    struct fixture *fx = *state;
    PGconn *c = fx->conn;
    create_toast_table(c, "toast_d", false);
    create_toast_table(c, "toast_f", true);
    siphon_start(fx, "toast", "public.toast_d, public.toast_f", NULL);

    insert_toasted_row(c, "toast_d");
    insert_toasted_row(c, "toast_f");
    fx->text = sp_test_sql_value(c, "SELECT big FROM toast_d");
    assert_int_equal(strlen(fx->text), BIG_VALUE_LEN);
    sp_test_sql(c, "UPDATE toast_d SET n = 1");
    sp_test_sql(c, "UPDATE toast_f SET n = 1");
    /* A changed TOASTed value is sent, placeholder or not. */
    sp_test_sql(c, "UPDATE toast_d SET big = big || 'z', n = 2");
    siphon_wait_events(fx, 5);
    siphon_stop(fx, 5);
    char **l = fx->lines;
    const char *big = fx->text;

    assert_ev(l[0], "op", "c");
    assert_ev(l[0], "source.table", "toast_d");
    assert_big(l[0], "after.big", big);
    assert_ev(l[1], "op", "c");
    assert_ev(l[1], "source.table", "toast_f");
    assert_big(l[1], "after.big", big);

    /* DEFAULT: the unchanged value is not in the WAL. */
    assert_ev(l[2], "op", "u");
    assert_ev(l[2], "source.table", "toast_d");
    assert_ev(l[2], "before", NULL);
    assert_ev(l[2], "after.n", "1");
    assert_ev(l[2], "after.big", "__siphon_unavailable");

    /* FULL: filled in from the old row. */
    assert_ev(l[3], "op", "u");
    assert_ev(l[3], "source.table", "toast_f");
    assert_ev(l[3], "before.n", "0");
    assert_big(l[3], "before.big", big);
    assert_ev(l[3], "after.n", "1");
    assert_big(l[3], "after.big", big);

    char *changed = sp_test_asprintf("%sz", big);
    assert_ev(l[4], "op", "u");
    assert_ev(l[4], "after.n", "2");
    assert_big(l[4], "after.big", changed);
    free(changed);
}

static void custom_toast_placeholder_is_used(void **state)
{
    struct fixture *fx = *state;
    PGconn *c = fx->conn;
    create_toast_table(c, "toast_c", false);
    siphon_start(fx, "toastc", "public.toast_c",
                 "    toast_placeholder: \"<unchanged \\\"toast\\\">\"\n");
    insert_toasted_row(c, "toast_c");
    sp_test_sql(c, "UPDATE toast_c SET n = 1");
    siphon_wait_events(fx, 2);
    siphon_stop(fx, 2);
    assert_ev(fx->lines[1], "op", "u");
    assert_ev(fx->lines[1], "after.n", "1");
    assert_ev(fx->lines[1], "after.big", "<unchanged \"toast\">");
    assert_null(strstr(fx->lines[1], "__siphon_unavailable"));
}

/* ---- identifiers and replica identity USING INDEX ------------------------------ */

/*
 * Quoted schema, table and column names keep their case and spaces end to
 * end, and a table that differs only in case is not routed to the stream;
 * under REPLICA IDENTITY USING INDEX the key is the index's columns.
 */
static void quoted_names_and_index_identity_stream(void **state)
{
    struct fixture *fx = *state;
    PGconn *c = fx->conn;
    sp_test_sql(c,
                "CREATE SCHEMA \"Sch One\";"
                "CREATE TABLE \"Sch One\".\"Mixed Tab\" (\"Id\" int PRIMARY KEY, \"Väl ue\" text);"
                "CREATE TABLE idx_t (id int NOT NULL, code text NOT NULL, v text);"
                "CREATE UNIQUE INDEX idx_t_code ON idx_t (code);"
                "ALTER TABLE idx_t REPLICA IDENTITY USING INDEX idx_t_code;"
                /* Differs only in case: published, but in no stream. */
                "CREATE TABLE \"Sch One\".\"mixed tab\" (id int PRIMARY KEY);"
                "CREATE PUBLICATION p_quoted FOR TABLE \"Sch One\".\"Mixed Tab\", "
                "\"Sch One\".\"mixed tab\", idx_t");
    siphon_start(fx, "quoted", "'\"Sch One\".\"Mixed Tab\"', public.idx_t", NULL);
    sp_test_sql(c, "INSERT INTO \"Sch One\".\"Mixed Tab\" VALUES (1, 'x')");
    sp_test_sql(c, "INSERT INTO \"Sch One\".\"mixed tab\" VALUES (1)");
    sp_test_sql(c, "INSERT INTO idx_t VALUES (1, 'a', 'v1')");
    sp_test_sql(c, "UPDATE idx_t SET v = 'v2' WHERE code = 'a'");
    sp_test_sql(c, "UPDATE idx_t SET code = 'b' WHERE code = 'a'");
    sp_test_sql(c, "DELETE FROM idx_t WHERE code = 'b'");
    siphon_wait_events(fx, 5);
    siphon_stop(fx, 5);
    char **l = fx->lines;
    assert_ev(l[0], "key", "{\"Id\":1}");
    assert_ev(l[0], "after", "{\"Id\":1,\"Väl ue\":\"x\"}");
    assert_ev(l[0], "source.schema", "Sch One");
    assert_ev(l[0], "source.table", "Mixed Tab");
    assert_ev(l[1], "op", "c");
    assert_ev(l[1], "key", "{\"code\":\"a\"}");
    assert_ev(l[2], "op", "u");
    assert_ev(l[2], "key", "{\"code\":\"a\"}");
    assert_ev(l[2], "before", NULL);
    assert_ev(l[3], "op", "u");
    assert_ev(l[3], "key", "{\"code\":\"b\"}");
    assert_ev(l[3], "before", "{\"code\":\"a\"}");
    assert_ev(l[3], "after", "{\"id\":1,\"code\":\"b\",\"v\":\"v2\"}");
    assert_ev(l[4], "op", "d");
    assert_ev(l[4], "key", "{\"code\":\"b\"}");
    assert_ev(l[4], "before", "{\"code\":\"b\"}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(every_op_type_streams_with_ids_and_transaction_metadata,
                                  test_cleanup),
        cmocka_unit_test_teardown(rolled_back_work_produces_nothing, test_cleanup),
        cmocka_unit_test_teardown(alter_table_mid_stream_changes_the_columns_of_later_events,
                                  test_cleanup),
        cmocka_unit_test_teardown(table_without_primary_key_streams_inserts_and_needs_full_identity,
                                  test_cleanup),
        cmocka_unit_test_teardown(unchanged_toast_is_placeholder_under_default_and_value_under_full,
                                  test_cleanup),
        cmocka_unit_test_teardown(custom_toast_placeholder_is_used, test_cleanup),
        cmocka_unit_test_teardown(quoted_names_and_index_identity_stream, test_cleanup),
    };
    return SP_TEST_RUN_GROUP("stream", tests, group_setup, group_teardown);
}
