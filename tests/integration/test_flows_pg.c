// SPDX-License-Identifier: Apache-2.0
/*
 * Flows end to end through `siphon run` against a real PostgreSQL 15: a
 * filtered stream delivers exactly the matching events; the four outbox
 * kinds deliver an event iff its transaction committed (business rows and
 * the outbox write in one transaction; a rollback delivers nothing; cleanup
 * deletes deliver nothing), the Debezium router's destination checked in a
 * real redis-server; a masked column's original value appears in no output,
 * dead letter or log of a run that also dead-letters a poison event; Lua
 * scripts (inline and from a file) change, drop and fan out events, and a
 * script error dead-letters the event naming the configuration's line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/harness.h"

#define FAIL_MSG(...)          \
    do {                       \
        fail_msg(__VA_ARGS__); \
        abort();               \
    } while (0)

#define WAIT_START_MS  60000
#define WAIT_EVENTS_MS 60000
#define WAIT_EXIT_MS   60000

struct fixture {
    struct sp_pg *pg;
    PGconn *conn;
    char *tmp;
    struct sp_proc *proc;
    char *slot;
    char *dir; /* per test: config, outputs and logs */
    char *err;
    struct sp_redis *redis;
};

static int group_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    *state = fx;
    fx->tmp = sp_test_tmpdir("flows");
    struct sp_pg_opts opts = {.tag = "pg-flows", .extra_conf = NULL};
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
    if (fx->slot != NULL && sp_test_sql_poll_until(fx->conn, "0", 10000,
                                                   "SELECT count(*) FROM pg_replication_slots "
                                                   "WHERE slot_name = '%s' AND active",
                                                   fx->slot)) {
        sp_test_sql(fx->conn,
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = '%s'",
                    fx->slot);
    }
    sp_test_redis_stop(fx->redis);
    fx->redis = NULL;
    free(fx->slot);
    free(fx->dir);
    free(fx->err);
    fx->slot = fx->dir = fx->err = NULL;
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

static char *path_of(struct fixture *fx, const char *name)
{
    return sp_test_asprintf("%s/%s", fx->dir, name);
}

static void siphon_fail(struct fixture *fx, const char *msg)
{
    char *err = fx->err != NULL ? sp_test_read_file(fx->err, NULL) : NULL;
    fprintf(stderr, "---- siphon stderr ----\n%s\n----\n", err != NULL ? err : "(none)");
    free(err);
    sp_test_mark_failed();
    FAIL_MSG("%s", msg);
}

struct file_wait {
    const char *path;
    const char *needle;
    size_t lines;
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
    return w->proc != NULL && !sp_test_proc_alive(w->proc);
}

/* text with every "@DIR@" replaced by the test's dir (heap). */
static char *subst_dir(struct fixture *fx, const char *text)
{
    size_t dl = strlen(fx->dir);
    size_t n = 0;
    for (const char *p = strstr(text, "@DIR@"); p != NULL; p = strstr(p + 5, "@DIR@")) {
        n++;
    }
    char *out = malloc(strlen(text) + n * dl + 1);
    assert_non_null(out);
    char *o = out;
    const char *p = text;
    const char *q;
    while ((q = strstr(p, "@DIR@")) != NULL) {
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, fx->dir, dl);
        o += dl;
        p = q + 5;
    }
    strcpy(o, p);
    return out;
}

/*
 * Writes <dir>/siphon.yaml: source db (slot s_<name>) plus the given sinks
 * and streams sections, starts `siphon run` with stdout and stderr captured
 * in the test's dir, and waits until it streams.
 */
static void siphon_start(struct fixture *fx, const char *name, const char *sinks,
                         const char *streams)
{
    fx->dir = sp_test_asprintf("%s/%s", fx->tmp, name);
    char *mk = sp_test_asprintf("mkdir -p %s", fx->dir);
    assert_int_equal(system(mk), 0);
    free(mk);
    char *cfg = path_of(fx, "siphon.yaml");
    char *out = path_of(fx, "siphon.stdout");
    fx->err = path_of(fx, "siphon.stderr");
    fx->slot = sp_test_asprintf("s_%s", name);
    char *sinks_text = subst_dir(fx, sinks);
    sp_test_write_file(cfg,
                       "sources:\n"
                       "  db:\n"
                       "    type: postgres\n"
                       "    snapshot: never\n"
                       "    connection: \"%s\"\n"
                       "    slot: s_%s\n"
                       "    publication: p_%s\n"
                       "sinks:\n%s"
                       "streams:\n%s",
                       sp_test_pg_conninfo(fx->pg), name, name, sinks_text, streams);
    free(sinks_text);
    const char *argv[] = {sp_test_siphon_bin(), "run", "-c", cfg, NULL};
    fx->proc = sp_test_proc_start(argv, out, fx->err);
    free(cfg);
    free(out);
    struct file_wait w = {.path = fx->err, .needle = "streaming from slot", .proc = fx->proc};
    if (!sp_test_wait_until(file_ready, &w, WAIT_START_MS) || !sp_test_proc_alive(fx->proc)) {
        siphon_fail(fx, "siphon did not start streaming");
    }
}

static void wait_lines(struct fixture *fx, const char *file, size_t n)
{
    char *path = path_of(fx, file);
    struct file_wait w = {.path = path, .lines = n, .proc = fx->proc};
    bool ok = sp_test_wait_until(file_ready, &w, WAIT_EVENTS_MS) && sp_test_count_lines(path) >= n;
    size_t got = sp_test_count_lines(path);
    free(path);
    if (!ok) {
        char msg[200];
        snprintf(msg, sizeof(msg), "%s: expected %zu events, got %zu", file, n, got);
        siphon_fail(fx, msg);
    }
}

static void siphon_stop(struct fixture *fx)
{
    sp_test_proc_signal(fx->proc, SIGTERM);
    int rc = sp_test_proc_wait(fx->proc, WAIT_EXIT_MS);
    if (rc != 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "siphon exited with %d after SIGTERM, expected 0", rc);
        siphon_fail(fx, msg);
    }
}

/* The lines of an output file, exactly n of them. Free with sp_test_free_lines. */
static char **lines_of(struct fixture *fx, const char *file, size_t n)
{
    char *path = path_of(fx, file);
    size_t got = 0;
    char **lines = sp_test_read_lines(path, &got);
    free(path);
    if (got != n) {
        for (size_t i = 0; i < got; i++) {
            fprintf(stderr, "%s: %s\n", file, lines[i]);
        }
        sp_test_free_lines(lines);
        char msg[200];
        snprintf(msg, sizeof(msg), "%s: expected exactly %zu events, got %zu", file, n, got);
        siphon_fail(fx, msg);
    }
    return lines;
}

static void assert_at(const char *line, const char *path, const char *expected)
{
    char *got = NULL;
    enum sp_test_json kind = sp_test_json_lookup(line, path, &got);
    bool ok =
        kind > SP_TEST_JSON_MISSING &&
        (expected == NULL ? kind == SP_TEST_JSON_NULL : got != NULL && strcmp(got, expected) == 0);
    char msg[2000] = "";
    if (!ok) {
        snprintf(msg, sizeof(msg), "at \"%s\": got %s, expected %s in %.1500s", path,
                 got != NULL ? got : "null/missing", expected != NULL ? expected : "null", line);
    }
    free(got);
    if (!ok) {
        FAIL_MSG("%s", msg);
    }
}

/* ---- filter ---------------------------------------------------------------- */

static void filtered_stream_delivers_exactly_the_matching_events(void **state)
{
    struct fixture *fx = *state;
    sp_test_sql(fx->conn, "CREATE TABLE f_orders (id int PRIMARY KEY, status text, "
                          "total numeric(10,2), meta jsonb);"
                          "ALTER TABLE f_orders REPLICA IDENTITY FULL");
    siphon_start(fx, "filter", "  out: {type: file, path: @DIR@/out.jsonl}\n",
                 "  - name: s\n"
                 "    source: db\n"
                 "    tables: [f_orders]\n"
                 "    sink: out\n"
                 "    flows:\n"
                 "      - filter: >-\n"
                 "          op == 'c' && after.meta.gift == true\n"
                 "          || op == 'u' && changed(status)\n"
                 "          || op == 'd' && before.total >= 100\n");
    sp_test_sql(fx->conn, "INSERT INTO f_orders VALUES (1, 'new', 10, '{\"gift\": true}')");
    sp_test_sql(fx->conn, "INSERT INTO f_orders VALUES (2, 'new', 200, '{\"gift\": false}')");
    sp_test_sql(fx->conn, "INSERT INTO f_orders VALUES (3, 'new', 5, NULL)");
    sp_test_sql(fx->conn, "UPDATE f_orders SET total = 11 WHERE id = 1");
    sp_test_sql(fx->conn, "UPDATE f_orders SET status = 'paid' WHERE id = 2");
    sp_test_sql(fx->conn, "UPDATE f_orders SET status = 'paid' WHERE id = 2"); /* unchanged */
    sp_test_sql(fx->conn, "DELETE FROM f_orders WHERE id = 3");
    sp_test_sql(fx->conn, "DELETE FROM f_orders WHERE id = 2");
    sp_test_sql(fx->conn, "INSERT INTO f_orders SELECT i, 'bulk', i, '{}' FROM "
                          "generate_series(10, 50) i");
    /* the last matching event: everything before it has been filtered when it arrives */
    sp_test_sql(fx->conn, "INSERT INTO f_orders VALUES (99, 'end', 0, '{\"gift\": true}')");
    wait_lines(fx, "out.jsonl", 4);
    siphon_stop(fx);
    char **lines = lines_of(fx, "out.jsonl", 4);
    static const char *const want[][3] = {
        {"c", "1", "new"}, {"u", "2", "paid"}, {"d", "2", NULL}, {"c", "99", "end"}};
    for (int i = 0; i < 4; i++) {
        assert_at(lines[i], "op", want[i][0]);
        assert_at(lines[i], "key.id", want[i][1]);
        assert_at(lines[i], want[i][2] != NULL ? "after.status" : "after", want[i][2]);
    }
    assert_at(lines[1], "before.status", "new");
    assert_at(lines[2], "before.total", "200.00");
    sp_test_free_lines(lines);
}

/* ---- outbox ------------------------------------------------------------------ */

/* One transaction writing a business row and every kind of outbox event for order n. */
static void outbox_txn(struct fixture *fx, int n, bool commit)
{
    sp_test_sql(fx->conn,
                "BEGIN;"
                "INSERT INTO biz_orders VALUES (%d, 'new');"
                "INSERT INTO ob_dbz VALUES ('00000000-0000-4000-8000-%012d', 'Order', "
                "'order-%d', 'OrderCreated', '{\"order\": %d}');"
                "INSERT INTO ob_gen (event_payload) VALUES "
                "('{\"metadata\": {\"eid\": \"e%d\"}, \"order\": %d}');"
                "INSERT INTO ob_data (data_type, data_op, metadata, data) VALUES "
                "('shop.order', 'C', NULL, '{\"order\": %d}');"
                "SELECT pg_logical_emit_message(true, 'shop', '{\"order\": %d}');"
                "%s",
                n, n, n, n, n, n, n, n, commit ? "COMMIT" : "ROLLBACK");
}

/* Every XRANGE entry's field value; n entries expected. */
static char **redis_values(struct fixture *fx, const char *key, const char *field, size_t n)
{
    struct timeval tv = {.tv_sec = 10, .tv_usec = 0};
    redisContext *rc = redisConnectWithTimeout("127.0.0.1", sp_test_redis_port(fx->redis), tv);
    assert_non_null(rc);
    if (rc->err != 0) {
        FAIL_MSG("redis: %s", rc->errstr);
    }
    redisReply *rep = redisCommand(rc, "XRANGE %s - +", key);
    assert_non_null(rep);
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n) {
        char msg[200];
        snprintf(msg, sizeof(msg), "redis stream %s: type %d, %zu entries, expected %zu", key,
                 rep->type, rep->type == REDIS_REPLY_ARRAY ? rep->elements : 0, n);
        freeReplyObject(rep);
        redisFree(rc);
        FAIL_MSG("%s", msg);
    }
    char **out = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        redisReply *fields = rep->element[i]->element[1];
        for (size_t f = 0; f + 1 < fields->elements; f += 2) {
            if (strcmp(fields->element[f]->str, field) == 0) {
                out[i] = strdup(fields->element[f + 1]->str);
            }
        }
        assert_non_null(out[i]);
    }
    freeReplyObject(rep);
    redisFree(rc);
    return out;
}

static void outbox_kinds_deliver_iff_committed(void **state)
{
    struct fixture *fx = *state;
    if (!sp_test_redis_available()) {
        FAIL_MSG("redis-server is not installed (scripts/setup.sh installs it)");
    }
    fx->redis = sp_test_redis_start();
    sp_test_sql(fx->conn,
                "CREATE TABLE biz_orders (id int PRIMARY KEY, status text);"
                "CREATE TABLE ob_dbz (id uuid PRIMARY KEY, aggregatetype text, aggregateid text, "
                "type text, payload jsonb);"
                "CREATE TABLE ob_gen (id bigserial PRIMARY KEY, event_payload json);"
                "CREATE TABLE ob_data (id bigserial PRIMARY KEY, data_type text, data_op text, "
                "metadata jsonb, data jsonb)");
    char *sinks = sp_test_asprintf("  bus: {type: redis, url: \"%s\"}\n"
                                   "  gen: {type: file, path: @DIR@/gen.jsonl}\n"
                                   "  data: {type: file, path: @DIR@/data.jsonl}\n"
                                   "  msg: {type: file, path: @DIR@/msg.jsonl}\n"
                                   "  biz: {type: file, path: @DIR@/biz.jsonl}\n",
                                   sp_test_redis_url(fx->redis));
    siphon_start(fx, "outbox", sinks,
                 "  - name: dbz\n"
                 "    source: db\n"
                 "    tables: [ob_dbz]\n"
                 "    messages: false\n"
                 "    sink: bus\n"
                 "    flows:\n"
                 "      - outbox: {kind: debezium}\n"
                 "  - name: gen\n"
                 "    source: db\n"
                 "    tables: [ob_gen]\n"
                 "    messages: false\n"
                 "    sink: gen\n"
                 "    flows:\n"
                 "      - outbox: {kind: fes_generic, payload_column: event_payload}\n"
                 "  - name: data\n"
                 "    source: db\n"
                 "    tables: [ob_data]\n"
                 "    messages: false\n"
                 "    sink: data\n"
                 "    flows:\n"
                 "      - outbox: {kind: fes_data, table: public.ob_data}\n"
                 "  - name: msg\n"
                 "    source: db\n"
                 "    tables: [biz_orders]\n"
                 "    sink: msg\n"
                 "    flows:\n"
                 "      - filter: \"op == 'm'\"\n"
                 "      - outbox: {kind: message, prefixes: [shop]}\n"
                 "  - name: biz\n"
                 "    source: db\n"
                 "    tables: [biz_orders]\n"
                 "    messages: false\n"
                 "    sink: biz\n");
    free(sinks);
    outbox_txn(fx, 1, true);
    outbox_txn(fx, 2, false);
    /* a cleanup job and an update of outbox rows: nothing is delivered */
    sp_test_sql(fx->conn, "DELETE FROM ob_dbz; DELETE FROM ob_gen; UPDATE ob_data SET data_op = "
                          "'U'; DELETE FROM ob_data");
    outbox_txn(fx, 3, true);
    wait_lines(fx, "gen.jsonl", 2);
    wait_lines(fx, "data.jsonl", 2);
    wait_lines(fx, "msg.jsonl", 2);
    wait_lines(fx, "biz.jsonl", 2);
    siphon_stop(fx);

    const int committed[] = {1, 3};
    char **gen = lines_of(fx, "gen.jsonl", 2);
    char **data = lines_of(fx, "data.jsonl", 2);
    char **msg = lines_of(fx, "msg.jsonl", 2);
    char **biz = lines_of(fx, "biz.jsonl", 2);
    char **dbz_values = redis_values(fx, "outbox.event.Order", "value", 2);
    char **dbz_ids = redis_values(fx, "outbox.event.Order", "id", 2);
    char **dbz_keys = redis_values(fx, "outbox.event.Order", "key", 2);
    for (int i = 0; i < 2; i++) {
        char n[16];
        char eid[16];
        char *v;
        snprintf(n, sizeof(n), "%d", committed[i]);
        snprintf(eid, sizeof(eid), "e%d", committed[i]);
        /* (a) the payload column's JSON is the event */
        assert_at(gen[i], "order", n);
        assert_at(gen[i], "metadata.eid", eid);
        assert_at(gen[i], "key", NULL);
        /* (b) a Nakadi data change event */
        assert_at(data[i], "data_type", "shop.order");
        assert_at(data[i], "data_op", "C");
        assert_at(data[i], "data.order", n);
        /* (c) Debezium's router: destination, key aggregateid, id the row's id */
        assert_at(dbz_values[i], "order", n);
        v = sp_test_asprintf("00000000-0000-4000-8000-%012d", committed[i]);
        assert_string_equal(dbz_ids[i], v);
        free(v);
        v = sp_test_asprintf("\"order-%d\"", committed[i]);
        assert_string_equal(dbz_keys[i], v);
        free(v);
        /* (d) the logical decoding message is the event */
        assert_at(msg[i], "order", n);
        assert_at(msg[i], "key", NULL);
        /* the business rows of the same transactions */
        assert_at(biz[i], "after.id", n);
    }
    sp_test_free_lines(gen);
    sp_test_free_lines(data);
    sp_test_free_lines(msg);
    sp_test_free_lines(biz);
    sp_test_free_lines(dbz_values);
    sp_test_free_lines(dbz_ids);
    sp_test_free_lines(dbz_keys);
}

/* ---- masking --------------------------------------------------------------- */

/* Fails if any file in dir holds needle (files of the run: outputs, dead letters, logs). */
static void assert_nowhere(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') {
            continue;
        }
        char *path = sp_test_asprintf("%s/%s", dir, de->d_name);
        size_t len = 0;
        char *text = sp_test_read_file(path, &len);
        bool found = text != NULL && memmem(text, len, needle, strlen(needle)) != NULL;
        free(text);
        files++;
        if (found) {
            closedir(d);
            FAIL_MSG("\"%s\" appears in %s", needle, path);
        }
        free(path);
    }
    closedir(d);
    assert_true(files >= 5); /* config, stdout, stderr, output, dead letters */
}

static void masked_values_reach_no_output_dead_letter_or_log(void **state)
{
    struct fixture *fx = *state;
    /* sha256("s3cr3t-salt" + "very.secret@example.com") */
    const char *hash = "c96d8c31d2665a1cae643b43cf9188bd9144673ec928c961a20ffef3b2ba22d8";
    sp_test_sql(fx->conn, "CREATE TABLE m_customers (id int PRIMARY KEY, region text, email text, "
                          "card text, note text);"
                          "ALTER TABLE m_customers REPLICA IDENTITY FULL");
    setenv("MASK_SALT", "s3cr3t-salt", 1);
    siphon_start(fx, "mask",
                 "  out: {type: file, path: @DIR@/out.jsonl}\n"
                 "  dead: {type: file, path: @DIR@/dead.jsonl}\n",
                 "  - name: s\n"
                 "    source: db\n"
                 "    tables: [m_customers]\n"
                 "    sink: out\n"
                 "    recovery: {type: dead_letter, sink: dead}\n"
                 "    flows:\n"
                 "      - route: {key: \"{after.region}\"}\n"
                 "      - mask:\n"
                 "          m_customers:\n"
                 "            email: {hash: sha256, salt: \"${MASK_SALT}\"}\n"
                 "            card: {replace: 4}\n"
                 "            note: {truncate: 3}\n");
    unsetenv("MASK_SALT");
    sp_test_sql(fx->conn, "INSERT INTO m_customers VALUES (1, 'eu', 'very.secret@example.com', "
                          "'4111111111111111', 'confidential-note')");
    /* the poison event: no region for the key template, so the route flow rejects it */
    sp_test_sql(fx->conn, "UPDATE m_customers SET region = NULL WHERE id = 1");
    sp_test_sql(fx->conn, "INSERT INTO m_customers VALUES (2, 'us', 'very.secret@example.com', "
                          "'4111111111111111', 'confidential-note')");
    wait_lines(fx, "out.jsonl", 2);
    wait_lines(fx, "dead.jsonl", 1);
    siphon_stop(fx);

    char **out = lines_of(fx, "out.jsonl", 2);
    char **dead = lines_of(fx, "dead.jsonl", 1);
    assert_at(out[0], "key", "eu");
    assert_at(out[0], "after.email", hash);
    assert_at(out[0], "after.card", "****");
    assert_at(out[0], "after.note", "con");
    assert_at(out[1], "key", "us");
    /* the dead letter: the error, and the event masked although it failed before the mask */
    char *err = sp_test_json_get(dead[0], "error");
    assert_non_null(strstr(err, "{after.region} is null"));
    free(err);
    assert_at(dead[0], "event.before.email", hash);
    assert_at(dead[0], "event.after.card", "****");
    assert_at(dead[0], "event.after.note", "con");
    sp_test_free_lines(out);
    sp_test_free_lines(dead);
    char *log = sp_test_read_file(fx->err, NULL);
    assert_non_null(strstr(log, "goes to dead-letter sink \"dead\""));
    free(log);

    assert_nowhere(fx->dir, "very.secret");
    assert_nowhere(fx->dir, "4111111111111111");
    assert_nowhere(fx->dir, "confidential");
    assert_nowhere(fx->dir, "s3cr3t-salt");
}

/* ---- transaction metadata ---------------------------------------------------- */

static void transaction_metadata_frames_each_transaction(void **state)
{
    struct fixture *fx = *state;
    sp_test_sql(fx->conn, "CREATE TABLE t_a (id int PRIMARY KEY); "
                          "CREATE TABLE t_b (id int PRIMARY KEY)");
    siphon_start(fx, "txmeta", "  out: {type: file, path: @DIR@/out.jsonl}\n",
                 "  - name: s\n"
                 "    source: db\n"
                 "    tables: [t_a, t_b]\n"
                 "    sink: out\n"
                 "    flows:\n"
                 "      - transaction: {}\n");
    sp_test_sql(fx->conn, "BEGIN; INSERT INTO t_a VALUES (1), (2); INSERT INTO t_b VALUES (3); "
                          "COMMIT");
    sp_test_sql(fx->conn, "BEGIN; INSERT INTO t_a VALUES (5); ROLLBACK");
    sp_test_sql(fx->conn, "INSERT INTO t_b VALUES (4)");
    wait_lines(fx, "out.jsonl", 8);
    siphon_stop(fx);
    char **l = lines_of(fx, "out.jsonl", 8);
    char *id1 = sp_test_json_get(l[1], "transaction.id");
    char *id2 = sp_test_json_get(l[6], "transaction.id");
    char *txid = sp_test_json_get(l[1], "source.txId");
    char *lsn = sp_test_json_get(l[1], "source.commit_lsn");
    char *want = sp_test_asprintf("%s:%s", txid, lsn);
    assert_string_equal(id1, want);
    assert_string_not_equal(id1, id2);
    assert_at(l[0], "status", "BEGIN");
    assert_at(l[0], "id", id1);
    assert_at(l[0], "event_count", NULL);
    static const char *const order[][4] = {{"1", "1", "1", "public.t_a"},
                                           {"2", "2", "2", "public.t_a"},
                                           {"3", "3", "1", "public.t_b"}};
    for (int i = 0; i < 3; i++) {
        assert_at(l[1 + i], "after.id", order[i][0]);
        assert_at(l[1 + i], "transaction.total_order", order[i][1]);
        assert_at(l[1 + i], "transaction.data_collection_order", order[i][2]);
    }
    assert_at(l[4], "status", "END");
    assert_at(l[4], "id", id1);
    assert_at(l[4], "event_count", "3");
    assert_at(l[4], "data_collections.0.data_collection", "public.t_a");
    assert_at(l[4], "data_collections.0.event_count", "2");
    assert_at(l[4], "data_collections.1.data_collection", "public.t_b");
    assert_at(l[4], "data_collections.1.event_count", "1");
    /* the rolled-back transaction left nothing; the next one is framed on its own */
    assert_at(l[5], "status", "BEGIN");
    assert_at(l[6], "after.id", "4");
    assert_at(l[6], "transaction.total_order", "1");
    assert_at(l[7], "status", "END");
    assert_at(l[7], "event_count", "1");
    free(id1);
    free(id2);
    free(txid);
    free(lsn);
    free(want);
    sp_test_free_lines(l);
}

/* ---- script ------------------------------------------------------------------- */

/* The 1-based line of path that contains needle, 0 if none. */
static int line_with(const char *path, const char *needle)
{
    size_t n = 0;
    char **lines = sp_test_read_lines(path, &n);
    int at = 0;
    for (size_t i = 0; i < n && at == 0; i++) {
        if (strstr(lines[i], needle) != NULL) {
            at = (int)i + 1;
        }
    }
    sp_test_free_lines(lines);
    return at;
}

static void script_flows_change_drop_fan_out_and_dead_letter(void **state)
{
    struct fixture *fx = *state;
    sp_test_sql(fx->conn, "CREATE TABLE sc_orders (id int PRIMARY KEY, status text, "
                          "total numeric(10,2), placed timestamptz)");
    /* a script file next to the configuration, named relative to it */
    char *dir = sp_test_asprintf("%s/script", fx->tmp);
    char *mk = sp_test_asprintf("mkdir -p %s", dir);
    assert_int_equal(system(mk), 0);
    free(mk);
    char *lua = sp_test_asprintf("%s/tag.lua", dir);
    sp_test_write_file(lua, "-- tags each row and keys it by a new field\n"
                            "function tag(e)\n"
                            "  if e.after == nil then return e end\n"
                            "  e.after.tag = 'x' .. e.after.id\n"
                            "  e.key = {k = e.after.id}\n"
                            "  return e\n"
                            "end\n");
    free(lua);
    free(dir);
    siphon_start(fx, "script",
                 "  out: {type: file, path: @DIR@/out.jsonl}\n"
                 "  out2: {type: file, path: @DIR@/out2.jsonl}\n"
                 "  dead: {type: file, path: @DIR@/dead.jsonl}\n",
                 "  - name: inline\n"
                 "    source: db\n"
                 "    tables: [sc_orders]\n"
                 "    sink: out\n"
                 "    recovery: {type: dead_letter, sink: dead}\n"
                 "    flows:\n"
                 "      - script:\n"
                 "          inline: |\n"
                 "            function transform(event)\n"
                 "              if event.op == 'd' then return nil end\n"
                 "              if event.after.id == 13 then error('unlucky order') end\n"
                 "              event.after.state = event.after.status\n"
                 "              event.after.status = nil\n"
                 "              if tonumber(event.after.total) > 1000 then\n"
                 "                local audit = {op = 'c', after = {order_id = event.after.id},\n"
                 "                               key = {order_id = event.after.id}}\n"
                 "                return {event, audit}\n"
                 "              end\n"
                 "              return event\n"
                 "            end\n"
                 "  - name: file\n"
                 "    source: db\n"
                 "    tables: [sc_orders]\n"
                 "    sink: out2\n"
                 "    flows:\n"
                 "      - script: {file: ../script/tag.lua, function: tag}\n");
    sp_test_sql(fx->conn, "INSERT INTO sc_orders VALUES (1, 'new', 10, '2026-11-21 10:00:00.5+01')");
    sp_test_sql(fx->conn, "INSERT INTO sc_orders VALUES (2, 'new', 5000, NULL)");
    sp_test_sql(fx->conn, "UPDATE sc_orders SET status = 'paid' WHERE id = 1");
    sp_test_sql(fx->conn, "DELETE FROM sc_orders WHERE id = 1");
    sp_test_sql(fx->conn, "INSERT INTO sc_orders VALUES (13, 'new', 1, NULL)");
    sp_test_sql(fx->conn, "INSERT INTO sc_orders VALUES (99, 'end', 0, NULL)");
    wait_lines(fx, "out.jsonl", 5);
    wait_lines(fx, "out2.jsonl", 6);
    wait_lines(fx, "dead.jsonl", 1);
    siphon_stop(fx);

    char **l = lines_of(fx, "out.jsonl", 5);
    /* renamed: the value keeps its text, the old name is gone, other columns as before */
    assert_at(l[0], "op", "c");
    assert_at(l[0], "key.id", "1");
    assert_at(l[0], "after.state", "new");
    assert_at(l[0], "after.total", "10.00");
    assert_at(l[0], "after.placed", "2026-11-21T09:00:00.5Z");
    assert_true(sp_test_json_lookup(l[0], "after.status", NULL) == SP_TEST_JSON_MISSING);
    /* fanned out: the event and an audit event, ids <id>.1 and <id>.2 */
    assert_at(l[1], "after.state", "new");
    assert_at(l[2], "after.order_id", "2");
    assert_at(l[2], "key.order_id", "2");
    char *id1 = sp_test_json_get(l[1], "id");
    char *id2 = sp_test_json_get(l[2], "id");
    size_t n1 = strlen(id1);
    assert_true(n1 > 2 && strcmp(id1 + n1 - 2, ".1") == 0);
    assert_int_equal(strlen(id2), n1);
    assert_int_equal(strncmp(id1, id2, n1 - 1), 0);
    assert_string_equal(id2 + n1 - 2, ".2");
    free(id1);
    free(id2);
    assert_at(l[3], "op", "u");
    assert_at(l[3], "after.state", "paid");
    /* the delete was dropped; 13 failed; 99 is the last */
    assert_at(l[4], "after.id", "99");
    sp_test_free_lines(l);

    /* the error names the configuration file's line of the error() call */
    char **dead = lines_of(fx, "dead.jsonl", 1);
    char *cfg = path_of(fx, "siphon.yaml");
    int line = line_with(cfg, "unlucky order");
    assert_true(line > 0);
    char *where = sp_test_asprintf("siphon.yaml:%d: unlucky order", line);
    char *err = sp_test_json_get(dead[0], "error");
    if (strstr(err, where) == NULL) {
        FAIL_MSG("dead letter error \"%s\" does not contain \"%s\"", err, where);
    }
    assert_at(dead[0], "event.after.id", "13");
    free(err);
    free(where);
    free(cfg);
    sp_test_free_lines(dead);

    /* the file script saw every event; deletes have no after and pass unchanged */
    char **f = lines_of(fx, "out2.jsonl", 6);
    static const char *const ids[] = {"1", "2", "1", NULL, "13", "99"};
    for (int i = 0; i < 6; i++) {
        if (ids[i] == NULL) {
            assert_at(f[i], "op", "d");
            assert_at(f[i], "key.id", "1");
            continue;
        }
        char *tag = sp_test_asprintf("x%s", ids[i]);
        assert_at(f[i], "after.tag", tag);
        assert_at(f[i], "key.k", ids[i]);
        free(tag);
    }
    sp_test_free_lines(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(filtered_stream_delivers_exactly_the_matching_events,
                                  test_cleanup),
        cmocka_unit_test_teardown(outbox_kinds_deliver_iff_committed, test_cleanup),
        cmocka_unit_test_teardown(masked_values_reach_no_output_dead_letter_or_log, test_cleanup),
        cmocka_unit_test_teardown(transaction_metadata_frames_each_transaction, test_cleanup),
        cmocka_unit_test_teardown(script_flows_change_drop_fan_out_and_dead_letter, test_cleanup),
    };
    return SP_TEST_RUN_GROUP("flows_pg", tests, group_setup, group_teardown);
}
