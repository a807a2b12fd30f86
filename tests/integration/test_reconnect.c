// SPDX-License-Identifier: Apache-2.0
/*
 * siphon against a PostgreSQL that goes away while a writer keeps
 * committing: a restart (fast shutdown, two seconds down, start), a crash
 * (immediate shutdown) and pg_terminate_backend() of the walsender. siphon
 * must log the loss and the reconnection, keep running, and in the end
 * hold every committed row and none that was not committed.
 *
 * Also source safety: traffic on tables no stream reads must not pin WAL
 * (the slot follows the server's keepalives), and delivered changes are
 * confirmed within seconds, not only every status_interval.
 *
 * The writer is a thread with its own libpq connection (it never calls
 * the harness, which belongs to the main thread); it reconnects on its own
 * and never reuses an id, so a row whose COMMIT outcome it did not learn
 * is judged by the table's contents at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "integration/cdc_helpers.h"
#include "lib/harness.h"

#define WRITER_ROWS 10 /* rows per transaction */

struct writer {
    pthread_t thread;
    bool started;
    char *conninfo;
    char *table;
    atomic_bool stop;
    atomic_long committed; /* transactions whose COMMIT succeeded */
    atomic_long failed;    /* attempts that failed: server down, connection lost */
    atomic_long next_id;   /* ids below this were tried */
};

struct fixture {
    struct sp_pg *pg;
    char *tmp;
    /* Per test, released by test_cleanup even when the test fails: */
    PGconn *conn;
    struct sp_proc *proc;
    struct writer w;
    struct cdc_output out;
    PGresult *res;
    unsigned char *seen;
    struct cdc_strs strs;
};

static int group_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    *state = fx;
    fx->tmp = sp_test_tmpdir("reconnect");
    struct sp_pg_opts opts = {.tag = "pg-reconnect", .extra_conf = NULL};
    fx->pg = sp_test_pg_start(&opts);
    return 0;
}

static void writer_stop(struct writer *w)
{
    if (w->started) {
        atomic_store(&w->stop, true);
        pthread_join(w->thread, NULL);
        w->started = false;
    }
}

static int test_cleanup(void **state)
{
    struct fixture *fx = *state;
    writer_stop(&fx->w);
    free(fx->w.conninfo);
    free(fx->w.table);
    memset(&fx->w, 0, sizeof(fx->w));
    PQfinish(fx->conn);
    fx->conn = NULL;
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
    cdc_output_free(&fx->out);
    PQclear(fx->res);
    fx->res = NULL;
    free(fx->seen);
    fx->seen = NULL;
    cdc_strs_free(&fx->strs);
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

/* ---- the writer ------------------------------------------------------------ */

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    PGconn *c = NULL;
    char sql[512];
    long txn = 0;
    while (!atomic_load(&w->stop)) {
        if (c == NULL) {
            c = PQconnectdb(w->conninfo);
            if (PQstatus(c) != CONNECTION_OK) {
                PQfinish(c);
                c = NULL;
                atomic_fetch_add(&w->failed, 1);
                cdc_sleep_ms(50);
                continue;
            }
        }
        long first = atomic_fetch_add(&w->next_id, WRITER_ROWS);
        snprintf(sql, sizeof(sql), "INSERT INTO %s SELECT g, %ld FROM generate_series(%ld, %ld) g",
                 w->table, txn++, first, first + WRITER_ROWS - 1);
        PGresult *r = PQexec(c, sql);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (ok) {
            atomic_fetch_add(&w->committed, 1);
            cdc_sleep_ms(5);
        } else {
            atomic_fetch_add(&w->failed, 1);
            if (PQstatus(c) != CONNECTION_OK) {
                PQfinish(c);
                c = NULL;
            }
            cdc_sleep_ms(50);
        }
    }
    PQfinish(c);
    return NULL;
}

static void writer_start(struct fixture *fx, const char *table)
{
    struct writer *w = &fx->w;
    w->conninfo = sp_test_asprintf("%s connect_timeout=2", sp_test_pg_conninfo(fx->pg));
    w->table = sp_test_asprintf("%s", table);
    atomic_store(&w->stop, false);
    atomic_store(&w->committed, 0);
    atomic_store(&w->failed, 0);
    atomic_store(&w->next_id, 1);
    assert_int_equal(pthread_create(&w->thread, NULL, writer_main, w), 0);
    w->started = true;
}

struct committed_ctx {
    struct writer *w;
    long at_least;
};

static bool writer_committed(void *ctx)
{
    struct committed_ctx *c = ctx;
    return atomic_load(&c->w->committed) >= c->at_least;
}

struct lines_ctx {
    const char *path;
    size_t want;
};

static bool has_lines(void *ctx)
{
    struct lines_ctx *l = ctx;
    return sp_test_count_lines(l->path) >= l->want;
}

/* ---- checks ---------------------------------------------------------------- */

/*
 * Every row in the table is in the output (as an insert), and every insert
 * in the output is a row of the table: nothing lost, nothing invented from
 * a transaction that did not commit. Returns the number of table rows.
 */
static long assert_output_matches_table(struct fixture *fx, const char *table, const char *out,
                                        long max_id)
{
    cdc_output_load(out, NULL, &fx->out);
    struct cdc_output *o = &fx->out;
    if (o->invalid > 0) {
        fail_msg("%zu invalid lines in %s; first: %s", o->invalid, out, o->first_invalid);
    }
    assert_false(o->partial_tail);
    fx->seen = calloc((size_t)max_id + 1, 1);
    assert_non_null(fx->seen);
    for (size_t i = 0; i < o->n; i++) {
        const struct cdc_ev *e = &o->ev[i];
        assert_int_equal(e->op, 'c');
        assert_true(e->key >= 1 && e->key <= max_id);
        fx->seen[e->key] |= 1;
    }
    char *sql = cdc_keep(&fx->strs, sp_test_asprintf("SELECT id FROM %s ORDER BY id", table));
    fx->res = PQexec(fx->conn, sql);
    assert_int_equal(PQresultStatus(fx->res), PGRES_TUPLES_OK);
    long rows = PQntuples(fx->res);
    long missing = 0;
    long first_missing = 0;
    for (long i = 0; i < rows; i++) {
        long id = strtol(PQgetvalue(fx->res, (int)i, 0), NULL, 10);
        assert_true(id >= 1 && id <= max_id);
        if (!(fx->seen[id] & 1) && missing++ == 0) {
            first_missing = id;
        }
        fx->seen[id] |= 2;
    }
    long invented = 0;
    for (long id = 1; id <= max_id; id++) {
        invented += fx->seen[id] == 1;
    }
    if (missing > 0 || invented > 0) {
        fail_msg("%ld committed rows missing from the output (first id %ld), %ld rows in the "
                 "output that are not in the table",
                 missing, first_missing, invented);
    }
    return rows;
}

/* ---- outages under load ------------------------------------------------------ */

enum outage {
    OUTAGE_RESTART,   /* pg_ctl stop -m fast, 2 s down, start */
    OUTAGE_CRASH,     /* pg_ctl stop -m immediate, start */
    OUTAGE_TERMINATE, /* pg_terminate_backend() of the walsender */
};

static void outage_under_load(struct fixture *fx, const char *name, enum outage kind)
{
    const int slow = cdc_sanitized() ? 3 : 1;
    char *table = cdc_keep(&fx->strs, sp_test_asprintf("rc_%s", name));
    char *slot = cdc_keep(&fx->strs, sp_test_asprintf("s_rc_%s", name));
    char *pub = cdc_keep(&fx->strs, sp_test_asprintf("p_rc_%s", name));
    char *cfg = cdc_keep(&fx->strs, sp_test_asprintf("%s/%s.yaml", fx->tmp, name));
    char *out = cdc_keep(&fx->strs, sp_test_asprintf("%s/%s.jsonl", fx->tmp, name));
    char *log = cdc_keep(&fx->strs, sp_test_asprintf("%s/%s.log", fx->tmp, name));
    char *tables = cdc_keep(&fx->strs, sp_test_asprintf("public.%s", table));

    fx->conn = sp_test_pg_connect(fx->pg);
    sp_test_sql(fx->conn, "CREATE TABLE %s (id int PRIMARY KEY, txn int NOT NULL)", table);
    struct cdc_conf conf = {
        .conninfo = sp_test_pg_conninfo(fx->pg),
        .slot = slot,
        .publication = pub,
        .tables = tables,
        .out_path = out,
        /* Confirmations reach the server every second (the default is 10 s). */
        .source_extra = "    status_interval: 1s\n",
    };
    cdc_write_config(cfg, &conf);
    fx->proc = cdc_siphon_start(cfg, log);
    assert_true(cdc_wait_log(log, "streaming from slot", 1, 30000 * slow));
    long old_walsender =
        sp_test_sql_long(fx->conn,
                         "SELECT active_pid FROM pg_replication_slots WHERE slot_name "
                         "= '%s'",
                         slot);

    writer_start(fx, table);
    struct committed_ctx before = {&fx->w, 30};
    assert_true(sp_test_wait_until(writer_committed, &before, 30000));
    struct lines_ctx flowing = {out, 100};
    assert_true(sp_test_wait_until(has_lines, &flowing, 30000 * slow));

    int64_t t0 = cdc_now_ms();
    switch (kind) {
    case OUTAGE_RESTART:
        PQfinish(fx->conn);
        fx->conn = NULL;
        sp_test_pg_down(fx->pg, "fast");
        cdc_sleep_ms(2000); /* the outage: the server stays down this long */
        sp_test_pg_up(fx->pg);
        fx->conn = sp_test_pg_connect(fx->pg);
        break;
    case OUTAGE_CRASH:
        PQfinish(fx->conn);
        fx->conn = NULL;
        sp_test_pg_down(fx->pg, "immediate");
        sp_test_pg_up(fx->pg);
        fx->conn = sp_test_pg_connect(fx->pg);
        break;
    case OUTAGE_TERMINATE:
        assert_true(sp_test_sql_poll_until(
            fx->conn, "t", 1000,
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
            "WHERE slot_name = '%s'",
            slot));
        break;
    }
    if (!cdc_wait_log(log, "reconnected", 1, 60000 * slow)) {
        fail_msg("siphon did not reconnect");
    }
    int64_t reconnect_ms = cdc_now_ms() - t0;
    assert_true(sp_test_proc_alive(fx->proc));
    long new_walsender =
        sp_test_sql_long(fx->conn,
                         "SELECT coalesce((SELECT active_pid FROM pg_replication_slots"
                         " WHERE slot_name = '%s'), 0)",
                         slot);
    assert_true(new_walsender != 0 && new_walsender != old_walsender);

    /* The writer goes on committing after the outage, and siphon keeps streaming. */
    struct committed_ctx after = {&fx->w, atomic_load(&fx->w.committed) + 30};
    assert_true(sp_test_wait_until(writer_committed, &after, 30000));
    writer_stop(&fx->w);
    long failed = atomic_load(&fx->w.failed);
    long committed = atomic_load(&fx->w.committed);
    long max_id = atomic_load(&fx->w.next_id) - 1;

    uint64_t end_lsn = cdc_current_lsn(fx->conn);
    int64_t t1 = cdc_now_ms();
    assert_true(cdc_wait_caught_up(fx->conn, slot, end_lsn, fx->proc, log, 60000 * slow));
    int64_t catch_up_ms = cdc_now_ms() - t1;

    size_t lost = cdc_count_in_file(log, "lost the replication connection") +
                  cdc_count_in_file(log, "the server ended replication");
    size_t retries = cdc_count_in_file(log, "reconnecting in");
    size_t streams = cdc_count_in_file(log, "streaming from slot");
    if (lost < 1 || retries < 1 || streams < 2) {
        cdc_print_log(log);
    }
    assert_true(lost >= 1);
    assert_true(retries >= 1);
    assert_true(streams >= 2);

    long rows = assert_output_matches_table(fx, table, out, max_id);
    printf("reconnect[%s]: reconnected after %lld ms (%zu attempts logged), writer committed %ld "
           "transactions (%ld failed attempts), %ld rows, %zu lines, caught up in %lld ms\n",
           name, (long long)reconnect_ms, retries, committed, failed, rows, fx->out.lines,
           (long long)catch_up_ms);
    assert_true(rows >= (committed)*WRITER_ROWS);

    int64_t stop_ms = 0;
    int st = cdc_siphon_stop(fx->proc, 30000, &stop_ms);
    if (st != 0) {
        cdc_print_log(log);
    }
    assert_int_equal(st, 0);
}

static void server_restart_under_load_loses_nothing(void **state)
{
    outage_under_load(*state, "restart", OUTAGE_RESTART);
}

static void server_crash_under_load_loses_nothing(void **state)
{
    outage_under_load(*state, "crash", OUTAGE_CRASH);
}

static void walsender_terminated_under_load_loses_nothing(void **state)
{
    outage_under_load(*state, "terminate", OUTAGE_TERMINATE);
}

/* ---- source safety ------------------------------------------------------------- */

/*
 * Starts siphon on table <name>_pub (in the stream; <name>_other exists but
 * no stream reads it) and waits for it to stream.
 */
static void start_pub_and_other(struct fixture *fx, const char *name, const char *source_extra,
                                char **out, char **log, char **slot)
{
    const int slow = cdc_sanitized() ? 3 : 1;
    *slot = cdc_keep(&fx->strs, sp_test_asprintf("s_rc_%s", name));
    char *pub = cdc_keep(&fx->strs, sp_test_asprintf("p_rc_%s", name));
    char *cfg = cdc_keep(&fx->strs, sp_test_asprintf("%s/%s.yaml", fx->tmp, name));
    char *tables = cdc_keep(&fx->strs, sp_test_asprintf("public.rc_%s_pub", name));
    *out = cdc_keep(&fx->strs, sp_test_asprintf("%s/%s.jsonl", fx->tmp, name));
    *log = cdc_keep(&fx->strs, sp_test_asprintf("%s/%s.log", fx->tmp, name));
    fx->conn = sp_test_pg_connect(fx->pg);
    sp_test_sql(fx->conn, "CREATE TABLE rc_%s_pub (id int PRIMARY KEY, txn int NOT NULL)", name);
    sp_test_sql(fx->conn, "CREATE TABLE rc_%s_other (id int PRIMARY KEY, pad text)", name);
    struct cdc_conf conf = {
        .conninfo = sp_test_pg_conninfo(fx->pg),
        .slot = *slot,
        .publication = pub,
        .tables = tables,
        .out_path = *out,
        .source_extra = source_extra,
    };
    cdc_write_config(cfg, &conf);
    fx->proc = cdc_siphon_start(cfg, *log);
    assert_true(cdc_wait_log(*log, "streaming from slot", 1, 30000 * slow));
}

static void unpublished_traffic_does_not_pin_wal(void **state)
{
    struct fixture *fx = *state;
    const int slow = cdc_sanitized() ? 3 : 1;
    char *out = NULL;
    char *log = NULL;
    char *slot = NULL;
    start_pub_and_other(fx, "safety", "    status_interval: 1s\n", &out, &log, &slot);

    /* Some published traffic first, delivered and confirmed. */
    sp_test_sql(fx->conn, "INSERT INTO rc_safety_pub SELECT g, 0 FROM generate_series(1, 10) g");
    uint64_t published = cdc_current_lsn(fx->conn);
    assert_true(cdc_wait_caught_up(fx->conn, slot, published, fx->proc, log, 30000 * slow));
    assert_int_equal(sp_test_count_lines(out), 10);

    /* Then only traffic no stream reads: nothing to deliver, nothing in flight. */
    uint64_t before = cdc_confirmed_lsn(fx->conn, slot);
    for (int i = 0; i < 20; i++) {
        sp_test_sql(fx->conn,
                    "INSERT INTO rc_safety_other SELECT g, repeat('x', 100) "
                    "FROM generate_series(%d, %d) g",
                    i * 500 + 1, i * 500 + 500);
    }
    uint64_t after = cdc_current_lsn(fx->conn);
    assert_true(after > before);
    int64_t t0 = cdc_now_ms();
    assert_true(cdc_wait_caught_up(fx->conn, slot, after, fx->proc, log, 15000 * slow));
    int64_t took = cdc_now_ms() - t0;
    char a[24];
    char b[24];
    printf("safety: confirmed moved from %s past %s (%llu bytes of unpublished WAL) in %lld ms\n",
           cdc_lsn_fmt(before, a), cdc_lsn_fmt(after, b), (unsigned long long)(after - before),
           (long long)took);
    assert_int_equal(sp_test_count_lines(out), 10); /* nothing from the other table */

    assert_int_equal(cdc_siphon_stop(fx->proc, 30000, NULL), 0);
}

/*
 * With the default status_interval (10 s), a delivered change is confirmed
 * within a few seconds: updates go out at most once a second while the
 * position moves (docs/guarantees.md, "Source safety").
 */
static void delivered_changes_are_confirmed_within_seconds(void **state)
{
    struct fixture *fx = *state;
    const int slow = cdc_sanitized() ? 3 : 1;
    char *out = NULL;
    char *log = NULL;
    char *slot = NULL;
    start_pub_and_other(fx, "prompt", NULL, &out, &log, &slot);

    sp_test_sql(fx->conn, "INSERT INTO rc_prompt_pub SELECT g, 0 FROM generate_series(1, 10) g");
    uint64_t lsn = cdc_current_lsn(fx->conn);
    struct lines_ctx ten = {out, 10};
    assert_true(sp_test_wait_until(has_lines, &ten, 10000 * slow));
    int64_t t0 = cdc_now_ms();
    bool prompt = cdc_wait_caught_up(fx->conn, slot, lsn, fx->proc, log, 3000);
    int64_t took = cdc_now_ms() - t0;
    /* For the report: when does it get there at all? */
    bool eventually = prompt || cdc_wait_caught_up(fx->conn, slot, lsn, fx->proc, log, 15000);
    int64_t total = cdc_now_ms() - t0;
    printf("prompt: written changes %s %lld ms after they were in the file\n",
           eventually ? "confirmed" : "still not confirmed", (long long)(prompt ? took : total));
    assert_true(prompt);

    assert_int_equal(cdc_siphon_stop(fx->proc, 30000, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(server_restart_under_load_loses_nothing, test_cleanup),
        cmocka_unit_test_teardown(server_crash_under_load_loses_nothing, test_cleanup),
        cmocka_unit_test_teardown(walsender_terminated_under_load_loses_nothing, test_cleanup),
        cmocka_unit_test_teardown(unpublished_traffic_does_not_pin_wal, test_cleanup),
        cmocka_unit_test_teardown(delivered_changes_are_confirmed_within_seconds, test_cleanup),
    };
    return SP_TEST_RUN_GROUP("reconnect", tests, group_setup, group_teardown);
}
