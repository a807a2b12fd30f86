// SPDX-License-Identifier: Apache-2.0
/*
 * SIGKILL of siphon in the middle of a stream, then a restart: nothing
 * committed is lost, changes to each key stay in commit order, replays
 * repeat the same ids, the slot never gets ahead of the file, and the file
 * only ever holds whole JSON lines.
 *
 * The workload is 1,000 transactions that each update a tenth of the keys
 * of crash_*(id int primary key, v int) by incrementing v, after one
 * transaction that inserts the keys with v = 0; every key therefore goes
 * 0, 1, ..., 100 and any loss or reordering shows in its sequence. 100
 * rows per transaction (101,000 changes), 20 under ASan (20,200).
 *
 * The first test kills siphon once a fifth of the changes are out and some
 * are confirmed, whatever it is doing then. The second aims the SIGKILL at
 * a batch write in progress (the file does not end with '\n'); when the
 * write completes before the signal lands, the test appends half a line
 * itself, the state such a kill leaves behind, so the restart always
 * starts from it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "integration/cdc_helpers.h"
#include "lib/harness.h"

#define CRASH_TXNS         1000
#define CRASH_UPDATES_EACH 100 /* every key is updated in a tenth of the transactions */

struct fixture {
    struct sp_pg *pg;
    char *tmp;
    /* Per test, released by test_cleanup even when the test fails: */
    PGconn *conn;
    PGconn *work;
    struct sp_proc *proc;
    struct cdc_output out;
    long *next_v;
    struct cdc_strs strs;
};

static int group_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    *state = fx;
    fx->tmp = sp_test_tmpdir("crash");
    struct sp_pg_opts opts = {.tag = "pg-crash", .extra_conf = NULL};
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
    free(fx->next_v);
    fx->next_v = NULL;
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

struct progress_ctx {
    const char *path;
    size_t lines;
    PGconn *conn;
    const char *slot;
    uint64_t confirmed; /* wait for the slot to pass this */
};

/* The output has the lines and the slot has been confirmed past the start. */
static bool has_progress(void *ctx)
{
    struct progress_ctx *p = ctx;
    return sp_test_count_lines(p->path) >= p->lines &&
           cdc_confirmed_lsn(p->conn, p->slot) > p->confirmed;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : 0;
}

/*
 * Watches the end of the file for up to timeout_ms and SIGKILLs the process
 * the moment the file does not end with '\n' (a batch write in progress),
 * or at the deadline. Returns whether it saw a write in progress.
 */
static bool kill_during_write(struct sp_proc *p, const char *path, int timeout_ms)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    int64_t deadline = cdc_now_ms() + timeout_ms;
    bool caught = false;
    while (!caught && cdc_now_ms() < deadline) {
        struct stat st;
        char last = '\n';
        if (fstat(fd, &st) == 0 && st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) == 1) {
            caught = last != '\n';
        }
        if (!caught) {
            struct timespec pause = {.tv_sec = 0, .tv_nsec = 100000};
            nanosleep(&pause, NULL);
        }
    }
    close(fd);
    assert_int_equal(sp_test_proc_signal(p, SIGKILL), 0);
    return caught;
}

/*
 * Leaves the file as a SIGKILL during write() does: ending in part of a
 * line. Appends the first half of its last line without the '\n'.
 */
static void append_cut_line(const char *path)
{
    size_t len = 0;
    char *text = sp_test_read_file(path, &len);
    bool whole = text != NULL && len > 1 && text[len - 1] == '\n';
    size_t start = whole ? len - 1 : 0;
    while (start > 0 && text[start - 1] != '\n') {
        start--;
    }
    size_t cut = whole ? (len - 1 - start) / 2 : 0;
    FILE *f = fopen(path, "a");
    size_t wrote = f != NULL ? fwrite(text + start, 1, cut, f) : 0;
    int closed = f != NULL ? fclose(f) : -1;
    free(text);
    assert_true(whole && cut > 0);
    assert_int_equal(wrote, cut);
    assert_int_equal(closed, 0);
}

/*
 * One crash and restart. mid_write: aim the SIGKILL at a moment when the
 * file does not end with '\n' (a batch write in progress) rather than at
 * whatever moment the output passes a fifth of the rows.
 */
static void crash_and_restart(struct fixture *fx, const char *name, bool mid_write)
{
    const bool asan = cdc_sanitized();
    const int per_txn = asan ? 20 : 100;
    const int keys = per_txn * 10;
    const size_t total = (size_t)keys + (size_t)CRASH_TXNS * (size_t)per_txn;
    const int slow = asan ? 3 : 1; /* timeouts scale with the ASan slowdown */

    char *table = cdc_keep(&fx->strs, sp_test_asprintf("crash_%s", name));
    char *slot = cdc_keep(&fx->strs, sp_test_asprintf("s_crash_%s", name));
    char *pub = cdc_keep(&fx->strs, sp_test_asprintf("p_crash_%s", name));
    char *cfg = cdc_keep(&fx->strs, sp_test_asprintf("%s/%s.yaml", fx->tmp, name));
    char *out = cdc_keep(&fx->strs, sp_test_asprintf("%s/%s.jsonl", fx->tmp, name));
    char *log1 = cdc_keep(&fx->strs, sp_test_asprintf("%s/%s.run1.log", fx->tmp, name));
    char *log2 = cdc_keep(&fx->strs, sp_test_asprintf("%s/%s.run2.log", fx->tmp, name));
    char *tables = cdc_keep(&fx->strs, sp_test_asprintf("public.%s", table));

    fx->conn = sp_test_pg_connect(fx->pg);
    sp_test_sql(fx->conn, "CREATE TABLE %s (id int PRIMARY KEY, v int NOT NULL)", table);
    struct cdc_conf conf = {
        .conninfo = sp_test_pg_conninfo(fx->pg),
        .slot = slot,
        .publication = pub,
        .tables = tables,
        .out_path = out,
        .source_extra = "    status_interval: 1s\n",
        .settings = "  memory_limit: 16MiB\n",
    };
    cdc_write_config(cfg, &conf);

    fx->proc = cdc_siphon_start(cfg, log1);
    assert_true(cdc_wait_log(log1, "streaming from slot", 1, 30000 * slow));
    uint64_t created_at = cdc_confirmed_lsn(fx->conn, slot);
    assert_true(created_at > 0);

    /* Paced (30 ms every 10 transactions) so the stream lasts a few seconds. */
    char *work =
        sp_test_asprintf("DO $$ BEGIN "
                         "INSERT INTO %s SELECT g, 0 FROM generate_series(1, %d) g; COMMIT; "
                         "FOR i IN 0..%d LOOP "
                         "UPDATE %s SET v = v + 1 WHERE id %% 10 = i %% 10; COMMIT; "
                         "IF i %% 10 = 9 THEN PERFORM pg_sleep(0.03); END IF; "
                         "END LOOP; END $$",
                         table, keys, CRASH_TXNS - 1, table);
    fx->work = cdc_async_start(fx->pg, work);
    free(work);

    /*
     * Kill once a fifth of the changes are out and some of them confirmed,
     * so the restart resumes from a position siphon chose.
     */
    struct progress_ctx some = {out, total / 5, fx->conn, slot, created_at};
    if (!sp_test_wait_until(has_progress, &some, 120000 * slow)) {
        cdc_print_log(log1);
        fail_msg("siphon wrote %zu of %zu lines and confirmed nothing in time",
                 sp_test_count_lines(out), total);
    }
    if (mid_write) {
        kill_during_write(fx->proc, out, 5000 * slow);
    } else {
        assert_int_equal(sp_test_proc_signal(fx->proc, SIGKILL), 0);
    }
    assert_int_equal(sp_test_proc_wait(fx->proc, 10000), SP_TEST_PROC_BY_SIGNAL(SIGKILL));
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
    off_t killed_at = file_size(out);
    size_t lines_at_kill = sp_test_count_lines(out);
    char *text = sp_test_read_file(out, NULL);
    bool partial_at_kill = text != NULL && killed_at > 0 && text[killed_at - 1] != '\n';
    free(text);
    bool cut_by_test = false;
    if (mid_write && !partial_at_kill) {
        /* The write finished before the signal landed: cut a line as the kernel would have. */
        append_cut_line(out);
        cut_by_test = true;
        partial_at_kill = true;
        killed_at = file_size(out);
    }
    /* Mid-stream: some of the output but not all of it. */
    assert_true(lines_at_kill >= total / 5);
    assert_true(lines_at_kill < total);

    assert_true(cdc_wait_slot_inactive(fx->conn, slot, 10000));
    uint64_t confirmed_at_kill = cdc_confirmed_lsn(fx->conn, slot);
    assert_true(confirmed_at_kill > created_at);

    cdc_async_finish(fx->work, 120000 * slow);
    fx->work = NULL;
    uint64_t end_lsn = cdc_current_lsn(fx->conn);
    assert_int_equal(sp_test_sql_long(fx->conn, "SELECT sum(v) FROM %s", table),
                     (long)keys * CRASH_UPDATES_EACH);

    int64_t t0 = cdc_now_ms();
    fx->proc = cdc_siphon_start(cfg, log2);
    assert_true(cdc_wait_caught_up(fx->conn, slot, end_lsn, fx->proc, log2, 120000 * slow));
    int64_t catch_up_ms = cdc_now_ms() - t0;
    int64_t stop_ms = 0;
    int st = cdc_siphon_stop(fx->proc, 30000, &stop_ms);
    if (st != 0) {
        cdc_print_log(log2);
    }
    assert_int_equal(st, 0);

    /* ---- the output ---- */
    struct cdc_output *o = &fx->out;
    cdc_output_load(out, "v", o);
    size_t mismatch = 0;
    size_t distinct = cdc_mark_dups(o, &mismatch);

    /* Per key: v must run 0, 1, ..., 100 over first occurrences, c then u. */
    fx->next_v = calloc((size_t)keys + 1, sizeof(long));
    assert_non_null(fx->next_v);
    size_t order_errors = 0;
    size_t wrong_keys = 0;
    size_t commit_order_errors = 0;
    const struct cdc_ev *prev = NULL;
    for (size_t i = 0; i < o->n; i++) {
        const struct cdc_ev *e = &o->ev[i];
        if (e->dup) {
            continue;
        }
        if (prev != NULL && (e->commit_lsn < prev->commit_lsn ||
                             (e->commit_lsn == prev->commit_lsn && e->seq <= prev->seq))) {
            commit_order_errors++;
        }
        prev = e;
        if (e->key < 1 || e->key > keys) {
            wrong_keys++;
            continue;
        }
        long want = fx->next_v[e->key];
        if (e->val != want || e->op != (want == 0 ? 'c' : 'u')) {
            if (order_errors < 5) {
                fprintf(stderr, "crash[%s]: key %ld: line %zu has op %c v %ld, expected v %ld\n",
                        name, e->key, e->line + 1, e->op, e->val, want);
            }
            order_errors++;
        }
        fx->next_v[e->key] = e->val + 1;
    }
    size_t incomplete_keys = 0;
    for (int k = 1; k <= keys; k++) {
        if (fx->next_v[k] != CRASH_UPDATES_EACH + 1) {
            incomplete_keys++;
        }
    }

    /*
     * Transactions (first occurrences, in commit order) whose commit record
     * lies before the position confirmed at the kill must be whole in what
     * the first run wrote; nothing before that position may be resent.
     */
    size_t confirmed_not_written = 0;
    size_t resent_before_confirmed = 0;
    size_t dups = 0;
    for (size_t i = 0; i < o->n;) {
        size_t j = i;
        size_t in_run1 = 0;
        size_t group = 0;
        while (j < o->n && (o->ev[j].dup || o->ev[j].commit_lsn == o->ev[i].commit_lsn)) {
            if (!o->ev[j].dup) {
                group++;
                in_run1 += o->ev[j].end <= (size_t)killed_at;
            }
            j++;
        }
        if (o->ev[i].commit_lsn < confirmed_at_kill && in_run1 != group) {
            confirmed_not_written++;
        }
        i = j;
    }
    for (size_t i = 0; i < o->n; i++) {
        if (o->ev[i].end > (size_t)killed_at && o->ev[i].commit_lsn < confirmed_at_kill) {
            resent_before_confirmed++;
        }
        dups += o->ev[i].dup;
    }

    char lsn_buf[24];
    printf("crash[%s]: %zu changes, killed at %zu lines%s (confirmed %s), %zu lines after the "
           "restart (%zu replayed), caught up in %lld ms, stopped in %lld ms\n",
           name, total, lines_at_kill,
           cut_by_test ? " + a cut line" : (partial_at_kill ? " mid-line" : ""),
           cdc_lsn_fmt(confirmed_at_kill, lsn_buf), o->lines, dups, (long long)catch_up_ms,
           (long long)stop_ms);
    if (o->invalid > 0 || o->partial_tail) {
        fprintf(stderr,
                "crash[%s]: %zu of %zu lines are not valid JSON events (killed %s); first, line "
                "%zu: %s\n",
                name, o->invalid, o->lines, partial_at_kill ? "mid-line" : "between lines",
                o->first_invalid_line + 1, o->first_invalid ? o->first_invalid : "");
    }
    assert_int_equal(o->invalid, 0);
    assert_false(o->partial_tail);
    assert_int_equal(mismatch, 0);
    assert_int_equal(wrong_keys, 0);
    assert_int_equal(order_errors, 0);
    assert_int_equal(commit_order_errors, 0);
    assert_int_equal(incomplete_keys, 0);
    assert_int_equal(distinct, total);
    assert_int_equal(confirmed_not_written, 0);
    assert_int_equal(resent_before_confirmed, 0);
}

static void sigkill_mid_stream_loses_nothing_and_keeps_key_order(void **state)
{
    crash_and_restart(*state, "any", false);
}

static void sigkill_during_a_batch_write_leaves_only_whole_lines(void **state)
{
    crash_and_restart(*state, "midwrite", true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(sigkill_mid_stream_loses_nothing_and_keeps_key_order,
                                  test_cleanup),
        cmocka_unit_test_teardown(sigkill_during_a_batch_write_leaves_only_whole_lines,
                                  test_cleanup),
    };
    return SP_TEST_RUN_GROUP("crash", tests, group_setup, group_teardown);
}
