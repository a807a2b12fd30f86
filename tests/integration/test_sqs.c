// SPDX-License-Identifier: Apache-2.0
/*
 * The sqs sink against PostgreSQL 15 and the SQS test server
 * (tests/lib/sqs_server.c), which checks every request's Signature
 * Version 4 and deduplicates FIFO messages as SQS does: 10,000 events over
 * 100 keys into a FIFO queue, each stored once and each key in commit order
 * with its group and attributes; entries failed with SenderFault false, 5xx,
 * throttling and slow answers retried without loss or reordering; entries
 * refused with SenderFault true and an oversized event in the dead-letter
 * file with the error; a wrong secret retried until the credentials file is
 * rotated; a SIGKILL mid-stream and a restart, after which FIFO
 * deduplication leaves each event once; a missing queue as a start error and
 * in `siphon check`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "integration/cdc_helpers.h"
#include "lib/harness.h"
#include "lib/sqs_server.h"

#define WAIT_START_MS  60000
#define WAIT_EVENTS_MS 120000
#define WAIT_EXIT_MS   60000

#define REGION     "eu-central-1"
#define ACCESS_KEY "AKIDSIPHONTEST"
#define SECRET     "siphon/test+secret"

struct fixture {
    struct sp_pg *pg;
    PGconn *conn;
    char *tmp;
    /* per test */
    struct sp_sqs_server *srv;
    struct sp_proc *proc;
    char *name;
    char *queue;
    char *slot;
    char *cfg;
    char *log;
    char *dead;
    char *creds;
};

static int group_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    *state = fx;
    fx->tmp = sp_test_tmpdir("sqs");
    struct sp_pg_opts opts = {.tag = "pg-sqs", .extra_conf = NULL};
    fx->pg = sp_test_pg_start(&opts);
    fx->conn = sp_test_pg_connect(fx->pg);
    /* Credentials come from the file only. */
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_ENDPOINT_URL_SQS");
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
    cdc_drop_slot(fx->conn, fx->slot);
    sp_sqs_server_stop(fx->srv);
    fx->srv = NULL;
    free(fx->name);
    free(fx->queue);
    free(fx->slot);
    free(fx->cfg);
    free(fx->log);
    free(fx->dead);
    free(fx->creds);
    fx->name = fx->queue = fx->slot = fx->cfg = fx->log = fx->dead = fx->creds = NULL;
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

static void sqs_fail(struct fixture *fx, const char *fmt, ...) SP_PRINTF(2, 3);

static void sqs_fail(struct fixture *fx, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (fx->log != NULL) {
        cdc_print_log(fx->log);
    }
    sp_test_mark_failed();
    fail_msg("%s", msg);
}

static void write_creds(struct fixture *fx, const char *secret)
{
    sp_test_write_file(fx->creds,
                       "[default]\n"
                       "aws_access_key_id = AKIDOTHER\n"
                       "aws_secret_access_key = other\n"
                       "\n"
                       "[siphon]\n"
                       "aws_access_key_id = " ACCESS_KEY "\n"
                       "aws_secret_access_key = %s\n",
                       secret);
}

/*
 * Test `name`: table t_<name> (id key, v version, flag, pad), its
 * publication, the server with queue `queue` (created unless missing), and
 * the config: sink "bus" (sqs, sink_opts added), dead letters to a file.
 */
static void setup_test(struct fixture *fx, const char *name, const char *queue, bool create,
                       const char *sink_opts)
{
    fx->name = strdup(name);
    fx->queue = strdup(queue);
    fx->slot = sp_test_asprintf("s_sqs_%s", name);
    fx->cfg = sp_test_asprintf("%s/%s.yaml", fx->tmp, name);
    fx->log = sp_test_asprintf("%s/%s.log", fx->tmp, name);
    fx->dead = sp_test_asprintf("%s/%s.dead.jsonl", fx->tmp, name);
    fx->creds = sp_test_asprintf("%s/%s.credentials", fx->tmp, name);
    sp_test_sql(fx->conn,
                "DROP TABLE IF EXISTS t_%s;"
                "CREATE TABLE t_%s (id int PRIMARY KEY, v int NOT NULL, flag text, pad text);"
                "CREATE PUBLICATION p_sqs_%s FOR TABLE t_%s WITH (publish = 'insert, update, "
                "delete')",
                name, name, name, name);
    fx->srv = sp_sqs_server_start(REGION, ACCESS_KEY, SECRET);
    if (create) {
        sp_sqs_server_add_queue(fx->srv, queue);
    }
    write_creds(fx, SECRET);
    sp_test_write_file(fx->cfg,
                       "sources:\n"
                       "  db:\n"
                       "    type: postgres\n"
                       "    snapshot: never\n"
                       "    connection: \"%s\"\n"
                       "    slot: %s\n"
                       "    publication: p_sqs_%s\n"
                       "    status_interval: 1s\n"
                       "sinks:\n"
                       "  bus:\n"
                       "    type: sqs\n"
                       "    queue: %s\n"
                       "    region: " REGION "\n"
                       "    endpoint: %s\n"
                       "    credentials_file: %s\n"
                       "    profile: siphon\n"
                       "%s"
                       "  dead:\n"
                       "    type: file\n"
                       "    path: %s\n"
                       "streams:\n"
                       "  - name: s\n"
                       "    source: db\n"
                       "    tables: [public.t_%s]\n"
                       "    sink: bus\n"
                       "    recovery: { type: dead_letter, sink: dead }\n"
                       "settings:\n"
                       "  shutdown_timeout: 30s\n",
                       sp_test_pg_conninfo(fx->pg), fx->slot, name, queue,
                       sp_sqs_server_url(fx->srv), fx->creds, sink_opts != NULL ? sink_opts : "",
                       fx->dead, name);
}

static void siphon_start(struct fixture *fx, bool truncate_log)
{
    char *log = truncate_log ? strdup(fx->log) : sp_test_asprintf("%s.2", fx->log);
    fx->proc = cdc_siphon_start(fx->cfg, log);
    if (!cdc_wait_log(log, "streaming from slot", 1, WAIT_START_MS) ||
        !sp_test_proc_alive(fx->proc)) {
        free(fx->log);
        fx->log = log;
        sqs_fail(fx, "siphon did not start streaming");
    }
    if (!truncate_log) {
        free(fx->log);
        fx->log = log;
    } else {
        free(log);
    }
}

static void siphon_stop(struct fixture *fx)
{
    int st = cdc_siphon_stop(fx->proc, WAIT_EXIT_MS, NULL);
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
    if (st != 0) {
        sqs_fail(fx, "siphon exited with %d after SIGTERM", st);
    }
}

/* Waits until the slot confirmed everything written so far. */
static void wait_caught_up(struct fixture *fx)
{
    uint64_t lsn = cdc_current_lsn(fx->conn);
    if (!cdc_wait_caught_up(fx->conn, fx->slot, lsn, fx->proc, fx->log, WAIT_EVENTS_MS)) {
        sqs_fail(fx, "siphon did not confirm everything");
    }
}

/* nkeys inserts (v 0) in one transaction, then rounds transactions each updating every key. */
static void generate(struct fixture *fx, int first_key, int nkeys, int rounds)
{
    sp_test_sql(fx->conn,
                "INSERT INTO t_%s (id, v) SELECT k, 0 FROM generate_series(%d, %d) k ORDER BY k",
                fx->name, first_key, first_key + nkeys - 1);
    for (int r = 1; r <= rounds; r++) {
        sp_test_sql(fx->conn, "UPDATE t_%s SET v = v + 1 WHERE id BETWEEN %d AND %d", fx->name,
                    first_key, first_key + nkeys - 1);
    }
}

/*
 * Every key in [1, nkeys] has versions 0..rounds stored exactly once, in
 * order (omit: versions that must be absent); on a FIFO queue each message's
 * group is its key. Returns the number of messages.
 */
static size_t check_messages(struct fixture *fx, int nkeys, int rounds, bool fifo,
                             bool (*omit)(long id, long v))
{
    struct sp_sqs_msg *m;
    size_t n = sp_sqs_server_messages(fx->srv, fx->queue, &m);
    long *last = malloc(((size_t)nkeys + 1) * sizeof(*last));
    long *count = calloc((size_t)nkeys + 1, sizeof(*count));
    for (int k = 0; k <= nkeys; k++) {
        last[k] = -1;
    }
    char *table = sp_test_asprintf("public.t_%s", fx->name);
    for (size_t i = 0; i < n; i++) {
        long id = cdc_json_get_long(m[i].body, "after.id");
        long v = cdc_json_get_long(m[i].body, "after.v");
        if (id < 1 || id > nkeys) {
            sqs_fail(fx, "message for key %ld, outside 1..%d", id, nkeys);
        }
        if (v <= last[id]) {
            sqs_fail(fx, "key %ld: version %ld stored after version %ld", id, v, last[id]);
        }
        if (omit != NULL && omit(id, v)) {
            sqs_fail(fx, "key %ld version %ld should not have been stored", id, v);
        }
        last[id] = v;
        count[id]++;
        char *key = sp_test_asprintf("{\"id\":%ld}", id);
        if (fifo && (m[i].group == NULL || strcmp(m[i].group, key) != 0)) {
            sqs_fail(fx, "key %ld in group %s", id, m[i].group != NULL ? m[i].group : "(none)");
        }
        if (!fifo && (m[i].group != NULL || m[i].dedup != NULL)) {
            sqs_fail(fx, "a standard queue's message has a group or deduplication id");
        }
        free(key);
        const char *op = sp_sqs_msg_attr(&m[i], "op");
        const char *tab = sp_sqs_msg_attr(&m[i], "table");
        const char *lsn = sp_sqs_msg_attr(&m[i], "lsn");
        const char *eid = sp_sqs_msg_attr(&m[i], "event_id");
        char *want_id = sp_test_json_get(m[i].body, "id");
        if (op == NULL || strcmp(op, v == 0 ? "c" : "u") != 0 || tab == NULL ||
            strcmp(tab, table) != 0 || lsn == NULL || strchr(lsn, '/') == NULL || eid == NULL ||
            strcmp(eid, want_id) != 0) {
            sqs_fail(fx, "message attributes op=%s table=%s lsn=%s event_id=%s (event id %s)",
                     op ? op : "-", tab ? tab : "-", lsn ? lsn : "-", eid ? eid : "-", want_id);
        }
        free(want_id);
    }
    free(table);
    for (int k = 1; k <= nkeys; k++) {
        long want = rounds + 1;
        if (omit != NULL) {
            for (long ver = 0; ver <= rounds; ver++) {
                want -= omit(k, ver);
            }
        }
        if (count[k] != want) {
            sqs_fail(fx, "key %d: %ld versions stored, expected %ld", k, count[k], want);
        }
    }
    free(last);
    free(count);
    sp_sqs_msgs_free(m, n);
    return n;
}

/* ---- tests ---- */

/* 10,000 events over 100 keys into a FIFO queue: each once, each key in commit order. */
static void fifo_queue_gets_each_event_once_in_key_order(void **state)
{
    struct fixture *fx = *state;
    setup_test(fx, "fifo", "orders.fifo", true, NULL);
    siphon_start(fx, true);
    int64_t t0 = cdc_now_ms();
    generate(fx, 1, 100, 99);
    wait_caught_up(fx);
    int64_t took = cdc_now_ms() - t0;
    siphon_stop(fx);

    size_t n = check_messages(fx, 100, 99, true, NULL);
    assert_int_equal(n, 10000);
    struct sp_sqs_stats st;
    sp_sqs_server_stats(fx->srv, &st);
    print_message("fifo: %zu events in %lld ms, %ld requests, %ld SendMessageBatch, %.1f "
                  "messages per request\n",
                  n, (long long)took, st.requests, st.batches,
                  st.batches > 0 ? (double)st.entries / (double)st.batches : 0.0);
    assert_int_equal(st.same_group, 0);
    assert_true(st.max_entries <= 10);
    assert_true(st.entries >= 10000);
    assert_true(st.batches < 5000); /* messages are batched */
    assert_int_equal(sp_sqs_server_error_count(fx->srv, "SignatureDoesNotMatch"), 0);
    assert_int_equal(sp_test_count_lines(fx->dead), 0);
}

/*
 * SenderFault false entries, 500s, throttling and answers slower than
 * request_timeout: retried, nothing lost or stored twice, keys in order.
 */
static void retriable_failures_lose_nothing(void **state)
{
    struct fixture *fx = *state;
    setup_test(fx, "retry", "retry.fifo", true,
               "    partitions: 4\n"
               "    request_timeout: 1s\n");
    sp_sqs_server_fail_every(fx->srv, 7);
    sp_sqs_server_respond(fx->srv, 500, "InternalError", 3);
    siphon_start(fx, true);
    generate(fx, 1, 50, 9);
    wait_caught_up(fx);
    sp_sqs_server_respond(fx->srv, 400, "ThrottlingException", 3);
    sp_test_sql(fx->conn, "UPDATE t_retry SET v = v + 1");
    wait_caught_up(fx);
    /* Answers slower than request_timeout: SQS stores what siphon gave up on; the copies
     * sent again are deduplicated. */
    sp_sqs_server_delay(fx->srv, 1500, 2);
    sp_test_sql(fx->conn, "UPDATE t_retry SET v = v + 1");
    wait_caught_up(fx);
    siphon_stop(fx);

    size_t n = check_messages(fx, 50, 11, true, NULL);
    struct sp_sqs_stats st;
    sp_sqs_server_stats(fx->srv, &st);
    print_message("retry: %zu events, %ld entries failed with SenderFault false, %ld answers "
                  "500, %ld throttled, %ld deduplicated\n",
                  n, st.failed_retry, sp_sqs_server_status_count(fx->srv, 500),
                  sp_sqs_server_error_count(fx->srv, "ThrottlingException"), st.deduplicated);
    assert_true(st.failed_retry > 0);
    assert_int_equal(sp_sqs_server_status_count(fx->srv, 500), 3);
    assert_int_equal(sp_sqs_server_error_count(fx->srv, "ThrottlingException"), 3);
    assert_int_equal(st.same_group, 0);
    assert_int_equal(sp_test_count_lines(fx->dead), 0);
    assert_true(cdc_count_in_file(fx->log, "InternalError") >= 1);
    assert_true(cdc_count_in_file(fx->log, "ThrottlingException") >= 1);
    assert_true(cdc_count_in_file(fx->log, "Timeout was reached") >= 1);
    assert_true(st.deduplicated > 0);
}

static bool is_bad_version(long id, long v)
{
    return v == 1 && id % 10 == 3;
}

static bool is_refused(long id, long v)
{
    return is_bad_version(id, v) || (id == 5 && v == 2);
}

/*
 * SenderFault true entries and an event over max_message_bytes go to the
 * dead-letter file with the error; a standard queue gets no group.
 */
static void refused_events_go_to_dead_letters(void **state)
{
    struct fixture *fx = *state;
    setup_test(fx, "refused", "events", true, "    max_message_bytes: 4KiB\n");
    sp_sqs_server_reject_matching(fx->srv, "\"flag\":\"bad\"", "InvalidMessageContents",
                                  "Invalid binary character in the message body.");
    siphon_start(fx, true);
    generate(fx, 1, 50, 0);
    sp_test_sql(fx->conn, "UPDATE t_refused SET v = v + 1,"
                          " flag = CASE WHEN id %% 10 = 3 THEN 'bad' END");
    sp_test_sql(fx->conn, "UPDATE t_refused SET v = v + 1, flag = NULL,"
                          " pad = CASE WHEN id = 5 THEN repeat('x', 5000) END");
    wait_caught_up(fx);
    siphon_stop(fx);

    check_messages(fx, 50, 2, false, is_refused);
    size_t n = 0;
    char **lines = sp_test_read_lines(fx->dead, &n);
    if (n != 6) {
        sp_test_free_lines(lines);
        sqs_fail(fx, "%zu dead letters, expected 6", n);
    }
    size_t refused = 0;
    size_t large = 0;
    for (size_t i = 0; i < n; i++) {
        char *err = sp_test_json_get(lines[i], "error");
        long id = cdc_json_get_long(lines[i], "event.after.id");
        if (id == 5) {
            assert_non_null(strstr(err, "more than max_message_bytes (4096)"));
            assert_non_null(strstr(err, "queue \"events\""));
            large++;
        } else {
            assert_int_equal(id % 10, 3);
            assert_non_null(strstr(err, "sqs refused event"));
            assert_non_null(strstr(err, "for queue \"events\": InvalidMessageContents: Invalid "
                                        "binary character in the message body."));
            refused++;
        }
        free(err);
    }
    sp_test_free_lines(lines);
    assert_int_equal(refused, 5);
    assert_int_equal(large, 1);
}

/* A wrong secret: 403 SignatureDoesNotMatch, retried until the credentials file is rotated. */
static void wrong_secret_is_retried_until_rotated(void **state)
{
    struct fixture *fx = *state;
    setup_test(fx, "creds", "creds.fifo", true, "    partitions: 2\n");
    siphon_start(fx, true);
    generate(fx, 1, 20, 0);
    wait_caught_up(fx);
    /* The secret is rotated on the server first, in the file a little later. */
    sp_sqs_server_set_secret(fx->srv, "rotated-secret");
    sp_test_sql(fx->conn, "UPDATE t_creds SET v = v + 1");
    int64_t t0 = cdc_now_ms();
    while (sp_sqs_server_error_count(fx->srv, "SignatureDoesNotMatch") < 3 &&
           cdc_now_ms() - t0 < 30000) {
        cdc_sleep_ms(50);
    }
    assert_true(sp_sqs_server_error_count(fx->srv, "SignatureDoesNotMatch") >= 3);
    assert_int_equal(sp_sqs_server_count(fx->srv, "creds.fifo"), 20);
    write_creds(fx, "rotated-secret");
    wait_caught_up(fx);
    siphon_stop(fx);

    check_messages(fx, 20, 1, true, NULL);
    assert_true(cdc_count_in_file(fx->log, "SignatureDoesNotMatch") >= 1);
    assert_true(cdc_count_in_file(fx->log, "siphon reads a changed credentials_file again") >= 1);
    assert_int_equal(sp_test_count_lines(fx->dead), 0);
}

struct count_wait {
    struct sp_sqs_server *srv;
    const char *queue;
    size_t n;
};

static bool count_reached(void *ctx)
{
    struct count_wait *w = ctx;
    return sp_sqs_server_count(w->srv, w->queue) >= w->n;
}

/* SIGKILL while sending, then a restart: the replayed events are deduplicated by SQS. */
static void sigkill_and_restart_store_each_event_once(void **state)
{
    struct fixture *fx = *state;
    setup_test(fx, "kill", "kill.fifo", true, "    partitions: 4\n");
    sp_sqs_server_delay(fx->srv, 15, 1000000);
    siphon_start(fx, true);
    int nkeys = 100;
    int rounds = 19;
    generate(fx, 1, nkeys, rounds);
    struct count_wait w = {fx->srv, "kill.fifo", 600};
    if (!sp_test_wait_until(count_reached, &w, WAIT_EVENTS_MS)) {
        sqs_fail(fx, "nothing stored before the kill");
    }
    size_t before = sp_sqs_server_count(fx->srv, "kill.fifo");
    sp_test_proc_signal(fx->proc, SIGKILL);
    sp_test_proc_wait(fx->proc, WAIT_EXIT_MS);
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
    size_t total = (size_t)nkeys * (size_t)(rounds + 1);
    if (before >= total) {
        sqs_fail(fx, "everything was stored before the kill (%zu events)", before);
    }
    sp_sqs_server_delay(fx->srv, 0, 0);
    siphon_start(fx, false);
    wait_caught_up(fx);
    siphon_stop(fx);

    size_t n = check_messages(fx, nkeys, rounds, true, NULL);
    assert_int_equal(n, total);
    struct sp_sqs_stats st;
    sp_sqs_server_stats(fx->srv, &st);
    print_message("kill: %zu stored before the kill, %zu events, %ld sent again and "
                  "deduplicated\n",
                  before, n, st.deduplicated);
    assert_true(st.deduplicated > 0);
}

/*
 * A queue that does not exist stops siphon at start, naming the sink and the
 * queue, and fails `siphon check`; once it exists, the check passes.
 */
static void missing_queue_is_a_start_error(void **state)
{
    struct fixture *fx = *state;
    setup_test(fx, "missing", "nothere.fifo", false, NULL);
    const char *argv[] = {sp_test_siphon_bin(), "run", "-c", fx->cfg, NULL};
    fx->proc = sp_test_proc_start(argv, fx->log, fx->log);
    int st = sp_test_proc_wait(fx->proc, WAIT_EXIT_MS);
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
    char *log = sp_test_read_file(fx->log, NULL);
    bool ok = st == 1 && log != NULL &&
              strstr(log, "sink \"bus\": queue \"nothere.fifo\" does not exist") != NULL &&
              strstr(log, "hint: create the queue (a FIFO queue: FifoQueue=true), or correct "
                          "queue, region or endpoint in sink \"bus\"") != NULL;
    if (!ok) {
        fprintf(stderr, "exit %d:\n%s\n", st, log != NULL ? log : "(no log)");
    }
    free(log);
    assert_true(ok);
    assert_int_equal(sp_sqs_server_error_count(fx->srv, "QueueDoesNotExist"), 1);

    char *out = NULL;
    st = cdc_siphon_check(fx->cfg, WAIT_EXIT_MS, &out);
    ok = st != 0 && strstr(out, "[sink sqs \"bus\"] queue \"nothere.fifo\" does not exist") != NULL;
    if (!ok) {
        fprintf(stderr, "check: exit %d:\n%s\n", st, out);
    }
    free(out);
    assert_true(ok);
    sp_sqs_server_add_queue(fx->srv, "nothere.fifo");
    st = cdc_siphon_check(fx->cfg, WAIT_EXIT_MS, &out);
    ok = st == 0 && strstr(out, "ok    [sink sqs \"bus\"] reachable") != NULL;
    if (!ok) {
        fprintf(stderr, "check: exit %d:\n%s\n", st, out);
    }
    free(out);
    assert_true(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(fifo_queue_gets_each_event_once_in_key_order, test_cleanup),
        cmocka_unit_test_teardown(retriable_failures_lose_nothing, test_cleanup),
        cmocka_unit_test_teardown(refused_events_go_to_dead_letters, test_cleanup),
        cmocka_unit_test_teardown(wrong_secret_is_retried_until_rotated, test_cleanup),
        cmocka_unit_test_teardown(sigkill_and_restart_store_each_event_once, test_cleanup),
        cmocka_unit_test_teardown(missing_queue_is_a_start_error, test_cleanup),
    };
    return SP_TEST_RUN_GROUP("sqs", tests, group_setup, group_teardown);
}
