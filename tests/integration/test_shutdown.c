// SPDX-License-Identifier: Apache-2.0
/*
 * Stopping siphon: SIGTERM while a stream flows drains, confirms exactly
 * what reached the file (never more), exits 0 within seconds, and a
 * restart delivers the rest; and a bad configuration is refused with exit
 * code 2 and file:line errors before anything touches the server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "integration/cdc_helpers.h"
#include "lib/harness.h"

struct fixture {
    struct sp_pg *pg;
    char *tmp;
    /* Per test, released by test_cleanup even when the test fails: */
    PGconn *conn;
    PGconn *work;
    struct sp_proc *proc;
    struct cdc_output out;
    unsigned char *seen;
    struct cdc_strs strs;
    int listen_fd;
};

static int group_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->listen_fd = -1;
    *state = fx;
    fx->tmp = sp_test_tmpdir("shutdown");
    struct sp_pg_opts opts = {.tag = "pg-shutdown", .extra_conf = NULL};
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
    cdc_output_free(&fx->out);
    free(fx->seen);
    fx->seen = NULL;
    cdc_strs_free(&fx->strs);
    if (fx->listen_fd >= 0) {
        close(fx->listen_fd);
        fx->listen_fd = -1;
    }
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

struct lines_ctx {
    const char *path;
    size_t want;
};

static bool has_lines(void *ctx)
{
    struct lines_ctx *l = ctx;
    return sp_test_count_lines(l->path) >= l->want;
}

/* The position siphon logged as confirmed when it closed the source; 0 if none. */
static uint64_t logged_final_position(const char *log)
{
    char *text = sp_test_read_file(log, NULL);
    uint64_t lsn = 0;
    const char *p = text;
    while (p != NULL && (p = strstr(p, "] confirmed ")) != NULL) {
        p += strlen("] confirmed ");
        if (strstr(p, " on slot") != NULL) {
            lsn = cdc_lsn_parse(p);
        }
    }
    free(text);
    return lsn;
}

static void sigterm_mid_stream_confirms_only_what_is_written(void **state)
{
    struct fixture *fx = *state;
    const bool asan = cdc_sanitized();
    const int slow = asan ? 3 : 1;
    const int txns = asan ? 500 : 2000;
    const int per_txn = 20;
    const size_t total = (size_t)txns * per_txn;
    const int exit_bound_ms = asan ? 20000 : 10000;
    const char *slot = "s_sd_flow";
    char *cfg = cdc_keep(&fx->strs, sp_test_asprintf("%s/flow.yaml", fx->tmp));
    char *out = cdc_keep(&fx->strs, sp_test_asprintf("%s/flow.jsonl", fx->tmp));
    char *log1 = cdc_keep(&fx->strs, sp_test_asprintf("%s/flow.run1.log", fx->tmp));
    char *log2 = cdc_keep(&fx->strs, sp_test_asprintf("%s/flow.run2.log", fx->tmp));

    fx->conn = sp_test_pg_connect(fx->pg);
    sp_test_sql(fx->conn, "CREATE TABLE sd_flow (id int PRIMARY KEY, txn int NOT NULL)");
    struct cdc_conf conf = {
        .conninfo = sp_test_pg_conninfo(fx->pg),
        .slot = slot,
        .publication = "p_sd_flow",
        .tables = "public.sd_flow",
        .out_path = out,
        .source_extra = "    status_interval: 1s\n",
    };
    cdc_write_config(cfg, &conf);
    fx->proc = cdc_siphon_start(cfg, log1);
    assert_true(cdc_wait_log(log1, "streaming from slot", 1, 30000 * slow));

    /* Paced (10 ms every 10 transactions) so the stream is still flowing at the SIGTERM. */
    char *work = sp_test_asprintf(
        "DO $$ BEGIN FOR i IN 0..%d LOOP "
        "INSERT INTO sd_flow SELECT g, i FROM generate_series(i * %d + 1, i * %d + %d) g; "
        "COMMIT; IF i %% 10 = 9 THEN PERFORM pg_sleep(0.01); END IF; END LOOP; END $$",
        txns - 1, per_txn, per_txn, per_txn);
    fx->work = cdc_async_start(fx->pg, work);
    free(work);

    struct lines_ctx some = {out, total / 5};
    if (!sp_test_wait_until(has_lines, &some, 60000 * slow)) {
        cdc_print_log(log1);
        fail_msg("siphon wrote %zu of %zu lines in time", sp_test_count_lines(out), total);
    }
    int64_t stop_ms = 0;
    int st = cdc_siphon_stop(fx->proc, exit_bound_ms, &stop_ms);
    if (st != 0) {
        cdc_print_log(log1);
    }
    assert_int_equal(st, 0);
    size_t lines_run1 = sp_test_count_lines(out);
    struct stat stt;
    assert_int_equal(stat(out, &stt), 0);
    size_t bytes_run1 = (size_t)stt.st_size;
    assert_true(lines_run1 < total); /* it was stopped mid-stream */
    assert_true(cdc_wait_slot_inactive(fx->conn, slot, 10000));
    uint64_t confirmed = cdc_confirmed_lsn(fx->conn, slot);
    uint64_t logged = logged_final_position(log1);
    bool workload_running = !cdc_async_done(fx->work);

    cdc_async_finish(fx->work, 120000 * slow);
    fx->work = NULL;
    uint64_t end_lsn = cdc_current_lsn(fx->conn);
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
    int64_t t0 = cdc_now_ms();
    fx->proc = cdc_siphon_start(cfg, log2);
    assert_true(cdc_wait_caught_up(fx->conn, slot, end_lsn, fx->proc, log2, 120000 * slow));
    int64_t catch_up_ms = cdc_now_ms() - t0;
    assert_int_equal(cdc_siphon_stop(fx->proc, exit_bound_ms, NULL), 0);

    struct cdc_output *o = &fx->out;
    cdc_output_load(out, NULL, o);
    if (o->invalid > 0) {
        fail_msg("%zu invalid lines; first: %s", o->invalid, o->first_invalid);
    }
    assert_false(o->partial_tail);
    size_t mismatch = 0;
    size_t distinct = cdc_mark_dups(o, &mismatch);
    assert_int_equal(mismatch, 0);
    assert_int_equal(distinct, total);
    fx->seen = calloc(total + 1, 1);
    assert_non_null(fx->seen);
    for (size_t i = 0; i < o->n; i++) {
        assert_true(o->ev[i].key >= 1 && (size_t)o->ev[i].key <= total);
        fx->seen[o->ev[i].key] = 1;
    }
    for (size_t id = 1; id <= total; id++) {
        assert_int_equal(fx->seen[id], 1);
    }

    /*
     * Transactions in commit order (first occurrences). One whose commit
     * record lies before the confirmed position must be whole in the first
     * run's output; the last whole one that the first run followed by
     * another must be covered by it (the drain confirmed what it wrote).
     */
    size_t confirmed_not_written = 0;
    uint64_t last_whole_followed = 0;
    uint64_t last_whole = 0;
    size_t run1_txns = 0;
    for (size_t i = 0; i < o->n;) {
        size_t j = i;
        size_t group = 0;
        size_t in_run1 = 0;
        while (j < o->n && (o->ev[j].dup || o->ev[j].commit_lsn == o->ev[i].commit_lsn)) {
            if (!o->ev[j].dup) {
                group++;
                in_run1 += o->ev[j].end <= bytes_run1;
            }
            j++;
        }
        assert_int_equal(group, per_txn);
        if (o->ev[i].commit_lsn < confirmed && in_run1 != group) {
            confirmed_not_written++;
        }
        if (in_run1 > 0) {
            run1_txns++;
            if (last_whole != 0) {
                last_whole_followed = last_whole; /* a later transaction reached the file */
            }
            last_whole = in_run1 == group ? o->ev[i].commit_lsn : 0;
        }
        i = j;
    }
    size_t resent_before_confirmed = 0;
    size_t resent = 0;
    for (size_t i = 0; i < o->n; i++) {
        if (o->ev[i].end > bytes_run1) {
            resent += o->ev[i].dup;
            resent_before_confirmed += o->ev[i].commit_lsn < confirmed;
        }
    }

    char a[24];
    char b[24];
    char c[24];
    printf("shutdown: SIGTERM after %zu of %zu lines (%zu transactions, workload %s), exit 0 in "
           "%lld ms; slot confirmed %s (logged %s), last whole transaction followed by another "
           "at %s; restart resent %zu lines and caught up in %lld ms\n",
           lines_run1, total, run1_txns, workload_running ? "still running" : "done",
           (long long)stop_ms, cdc_lsn_fmt(confirmed, a), cdc_lsn_fmt(logged, b),
           cdc_lsn_fmt(last_whole_followed, c), resent, (long long)catch_up_ms);
    assert_true(stop_ms < exit_bound_ms);
    assert_int_equal(confirmed_not_written, 0);
    assert_int_equal(resent_before_confirmed, 0);
    assert_true(last_whole_followed != 0);
    assert_true(confirmed > last_whole_followed);
    assert_true(logged == confirmed);
}

/* A listening TCP socket on 127.0.0.1 that never accepts: a server that records attempts. */
static int listen_local(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static void bad_config_exits_2_with_file_and_line_before_touching_the_server(void **state)
{
    struct fixture *fx = *state;
    char *cfg = cdc_keep(&fx->strs, sp_test_asprintf("%s/bad.yaml", fx->tmp));
    char *out = cdc_keep(&fx->strs, sp_test_asprintf("%s/bad.jsonl", fx->tmp));
    char *log = cdc_keep(&fx->strs, sp_test_asprintf("%s/bad.log", fx->tmp));
    int port = 0;
    fx->listen_fd = listen_local(&port);
    /* Two mistakes, on lines 8 and 19: both are reported in one run. */
    sp_test_write_file(cfg,
                       "sources:\n"
                       "  db:\n"
                       "    type: postgres\n"
                       "    snapshot: never\n"
                       "    connection: \"host=127.0.0.1 port=%d user=postgres dbname=postgres\"\n"
                       "    slot: s_sd_bad\n"
                       "    publication: p_sd_bad\n"
                       "    slott: s_sd_typo\n"
                       "sinks:\n"
                       "  out:\n"
                       "    type: file\n"
                       "    path: %s\n"
                       "streams:\n"
                       "  - name: s\n"
                       "    source: db\n"
                       "    tables: [public.sd_bad]\n"
                       "    sink: out\n"
                       "settings:\n"
                       "  memory_limit: lots\n",
                       port, out);

    const char *argv[] = {sp_test_siphon_bin(), "run", "-c", cfg, NULL};
    fx->proc = sp_test_proc_start(argv, log, log);
    int st = sp_test_proc_wait(fx->proc, 10000);
    char *text = sp_test_read_file(log, NULL);
    assert_non_null(text);
    cdc_keep(&fx->strs, text);
    fprintf(stderr, "%s", text);
    assert_int_equal(st, 2);
    char *at8 = cdc_keep(&fx->strs, sp_test_asprintf("%s:8:", cfg));
    char *at19 = cdc_keep(&fx->strs, sp_test_asprintf("%s:19:", cfg));
    assert_non_null(strstr(text, at8));
    assert_non_null(strstr(text, "slott"));
    assert_non_null(strstr(text, at19));
    assert_non_null(strstr(text, "memory_limit"));

    /* No connection was attempted ("the server" never saw one) and no file was created. */
    int conn = accept(fx->listen_fd, NULL, NULL);
    if (conn >= 0) {
        close(conn);
    }
    assert_true(conn < 0);
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    struct stat stt;
    assert_int_not_equal(stat(out, &stt), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(sigterm_mid_stream_confirms_only_what_is_written, test_cleanup),
        cmocka_unit_test_teardown(bad_config_exits_2_with_file_and_line_before_touching_the_server,
                                  test_cleanup),
    };
    return SP_TEST_RUN_GROUP("shutdown", tests, group_setup, group_teardown);
}
