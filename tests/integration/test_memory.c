// SPDX-License-Identifier: Apache-2.0
/*
 * Bounded memory: a single transaction of 1,000,000 rows streams through
 * siphon with a peak RSS under 64 MiB and every row arrives; and a sink
 * that stops taking data (a FIFO nobody reads) makes siphon stop reading
 * the source at its memory_limit, with the slot confirmed no further than
 * what the reader has taken, until the reader drains it and everything
 * arrives.
 *
 * Under ASan (SP_SANITIZED=1) the rows are fewer (100,000 in the single
 * transaction) and RSS is reported but not asserted: the sanitizer's
 * shadow memory and quarantine make it meaningless.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "integration/cdc_helpers.h"
#include "lib/harness.h"

#define RSS_LIMIT_KIB (64L * 1024)

struct fixture {
    struct sp_pg *pg;
    char *tmp;
    /* Per test, released by test_cleanup even when the test fails: */
    PGconn *conn;
    struct sp_proc *proc;
    int fifo_fd;
    char *buf; /* what was read from the FIFO */
    size_t len;
    size_t cap;
    struct cdc_output out;
    unsigned char *seen;
    struct cdc_strs strs;
};

static int group_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->fifo_fd = -1;
    *state = fx;
    fx->tmp = sp_test_tmpdir("memory");
    struct sp_pg_opts opts = {.tag = "pg-memory", .extra_conf = NULL};
    fx->pg = sp_test_pg_start(&opts);
    return 0;
}

static int test_cleanup(void **state)
{
    struct fixture *fx = *state;
    PQfinish(fx->conn);
    fx->conn = NULL;
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
    if (fx->fifo_fd >= 0) {
        close(fx->fifo_fd);
        fx->fifo_fd = -1;
    }
    free(fx->buf);
    fx->buf = NULL;
    fx->len = fx->cap = 0;
    cdc_output_free(&fx->out);
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

/* ---- one transaction of a million rows --------------------------------------- */

struct scan {
    size_t lines;
    size_t invalid;
    size_t out_of_order; /* id is not the previous one + 1, or seq does not grow */
    long first_id;
    long last_id;
    char *first_bad; /* malloc'd */
};

/*
 * Reads the output line by line (it is hundreds of megabytes): every line
 * must be a valid insert event, ids 1, 2, ..., n in order, one transaction
 * with growing sequence numbers.
 */
static void scan_output(const char *path, struct scan *s)
{
    memset(s, 0, sizeof(*s));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t commit_lsn = 0;
    uint32_t seq = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] != '\n') {
            s->invalid++; /* a partial last line */
            break;
        }
        line[n - 1] = '\0';
        struct cdc_ev ev;
        if (!cdc_parse_event(line, NULL, &ev) || ev.op != 'c') {
            if (s->invalid++ == 0) {
                s->first_bad = strndup(line, 300);
                assert_non_null(s->first_bad);
            }
            s->lines++;
            continue;
        }
        if (s->lines == 0) {
            s->first_id = ev.key;
            commit_lsn = ev.commit_lsn;
        } else if (ev.key != s->last_id + 1 || ev.commit_lsn != commit_lsn || ev.seq <= seq) {
            s->out_of_order++;
        }
        seq = ev.seq;
        s->last_id = ev.key;
        s->lines++;
    }
    free(line);
    fclose(f);
}

static void million_row_transaction_streams_in_bounded_memory(void **state)
{
    struct fixture *fx = *state;
    const bool asan = cdc_sanitized();
    const int slow = asan ? 3 : 1;
    const long rows = asan ? 100000 : 1000000;
    char *cfg = cdc_keep(&fx->strs, sp_test_asprintf("%s/big.yaml", fx->tmp));
    char *out = cdc_keep(&fx->strs, sp_test_asprintf("%s/big.jsonl", fx->tmp));
    char *log = cdc_keep(&fx->strs, sp_test_asprintf("%s/big.log", fx->tmp));

    fx->conn = sp_test_pg_connect(fx->pg);
    sp_test_sql(fx->conn, "CREATE TABLE mem_big (id int PRIMARY KEY, pad text NOT NULL)");
    struct cdc_conf conf = {
        .conninfo = sp_test_pg_conninfo(fx->pg),
        .slot = "s_mem_big",
        .publication = "p_mem_big",
        .tables = "public.mem_big",
        .out_path = out,
        .source_extra = "    status_interval: 1s\n",
        .settings = "  memory_limit: 16MiB\n",
    };
    cdc_write_config(cfg, &conf);
    fx->proc = cdc_siphon_start(cfg, log);
    assert_true(cdc_wait_log(log, "streaming from slot", 1, 30000 * slow));
    long idle_rss = sp_test_proc_peak_rss_kib(fx->proc);

    int64_t t0 = cdc_now_ms();
    sp_test_sql(fx->conn,
                "INSERT INTO mem_big SELECT g, repeat('x', 100) FROM generate_series(1, %ld) g",
                rows);
    int64_t insert_ms = cdc_now_ms() - t0;
    uint64_t end_lsn = cdc_current_lsn(fx->conn);
    assert_true(cdc_wait_caught_up(fx->conn, "s_mem_big", end_lsn, fx->proc, log, 300000 * slow));
    int64_t stream_ms = cdc_now_ms() - t0;
    int64_t stop_ms = 0;
    int st = cdc_siphon_stop(fx->proc, 30000, &stop_ms);
    if (st != 0) {
        cdc_print_log(log);
    }
    assert_int_equal(st, 0);
    long peak = sp_test_proc_peak_rss_kib(fx->proc);

    struct scan s;
    scan_output(out, &s);
    if (s.first_bad != NULL) {
        cdc_keep(&fx->strs, s.first_bad);
    }
    struct stat stt;
    assert_int_equal(stat(out, &stt), 0);
    printf("memory[big]: %ld rows in one transaction (insert %lld ms), %zu lines, %lld MiB of "
           "output, committed to confirmed in %lld ms, stopped in %lld ms; siphon RSS %ld KiB "
           "idle, peak %ld KiB%s\n",
           rows, (long long)insert_ms, s.lines, (long long)(stt.st_size >> 20),
           (long long)stream_ms, (long long)stop_ms, idle_rss, peak,
           asan ? " (ASan: not asserted)" : "");
    if (s.invalid > 0) {
        fail_msg("%zu invalid lines; first: %s", s.invalid, s.first_bad ? s.first_bad : "");
    }
    assert_int_equal(s.lines, (size_t)rows);
    assert_int_equal(s.first_id, 1);
    assert_int_equal(s.last_id, rows);
    assert_int_equal(s.out_of_order, 0);
    if (!asan) {
        assert_true(peak > 0);
        assert_true(peak < RSS_LIMIT_KIB);
    }
}

/* ---- a sink that stops taking data ------------------------------------------- */

/* Reads what the FIFO has, up to max bytes (0: no limit); returns the bytes read. */
static size_t fifo_read(struct fixture *fx, size_t max)
{
    size_t got = 0;
    for (;;) {
        if (fx->cap - fx->len < 65536) {
            fx->cap = fx->cap ? fx->cap * 2 : (size_t)1 << 20;
            fx->buf = realloc(fx->buf, fx->cap);
            assert_non_null(fx->buf);
        }
        size_t want = fx->cap - fx->len;
        if (max > 0 && want > max - got) {
            want = max - got;
        }
        ssize_t n = read(fx->fifo_fd, fx->buf + fx->len, want);
        if (n > 0) {
            fx->len += (size_t)n;
            got += (size_t)n;
            if (max > 0 && got >= max) {
                return got;
            }
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        return got; /* EAGAIN: empty; 0: no writer at the moment */
    }
}

static int fifo_pending(const struct fixture *fx)
{
    int n = 0;
    assert_int_equal(ioctl(fx->fifo_fd, FIONREAD, &n), 0);
    return n;
}

struct fifo_full_ctx {
    struct fixture *fx;
    int size;
};

static bool fifo_full(void *ctx)
{
    struct fifo_full_ctx *c = ctx;
    /* Partly filled pages keep a blocked writer's FIFO below its nominal size. */
    return fifo_pending(c->fx) >= c->size / 2;
}

struct sent_ctx {
    PGconn *conn;
    const char *slot;
    char *last;
    int64_t since_ms;
};

/* The walsender's sent_lsn has not moved for a second: it is blocked on siphon. */
static bool sender_stalled(void *ctx)
{
    struct sent_ctx *s = ctx;
    char *now = sp_test_sql_value(s->conn,
                                  "SELECT coalesce((SELECT r.sent_lsn::text FROM "
                                  "pg_stat_replication r JOIN pg_replication_slots s ON "
                                  "s.active_pid = r.pid WHERE s.slot_name = '%s'), '')",
                                  s->slot);
    if (s->last == NULL || strcmp(now, s->last) != 0) {
        free(s->last);
        s->last = now;
        s->since_ms = cdc_now_ms();
        return false;
    }
    free(now);
    return cdc_now_ms() - s->since_ms >= 1000;
}

/*
 * Reads the FIFO as fast as siphon writes it until it has lines lines and
 * the slot is confirmed up to lsn, or timeout_ms passes.
 */
static bool drain(struct fixture *fx, size_t lines, const char *slot, uint64_t lsn, int timeout_ms)
{
    int64_t deadline = cdc_now_ms() + timeout_ms;
    int64_t next_check = 0;
    size_t counted = 0;
    size_t scanned = 0;
    while (cdc_now_ms() < deadline) {
        struct pollfd pfd = {.fd = fx->fifo_fd, .events = POLLIN, .revents = 0};
        poll(&pfd, 1, 100);
        fifo_read(fx, 0);
        while (scanned < fx->len) {
            const char *nl = memchr(fx->buf + scanned, '\n', fx->len - scanned);
            if (nl == NULL) {
                scanned = fx->len;
                break;
            }
            counted++;
            scanned = (size_t)(nl - fx->buf) + 1;
        }
        /* Back up to the start of a partial line so it is counted when complete. */
        while (scanned > 0 && fx->buf[scanned - 1] != '\n') {
            scanned--;
        }
        if (counted >= lines && cdc_now_ms() >= next_check) {
            if (cdc_confirmed_lsn(fx->conn, slot) >= lsn) {
                return true;
            }
            next_check = cdc_now_ms() + 100;
        }
    }
    return false;
}

#define SLOW_STEPS 60

static void slow_fifo_sink_holds_memory_and_confirmation(void **state)
{
    struct fixture *fx = *state;
    const bool asan = cdc_sanitized();
    const int slow = asan ? 3 : 1;
    const int txns = asan ? 100 : 200;
    const int per_txn = 1000;
    const long rows = (long)txns * per_txn;
    const char *slot = "s_mem_fifo";
    char *cfg = cdc_keep(&fx->strs, sp_test_asprintf("%s/fifo.yaml", fx->tmp));
    char *fifo = cdc_keep(&fx->strs, sp_test_asprintf("%s/fifo.jsonl", fx->tmp));
    char *log = cdc_keep(&fx->strs, sp_test_asprintf("%s/fifo.log", fx->tmp));

    /* The reader end exists (non-blocking) before siphon opens the FIFO for writing. */
    assert_int_equal(mkfifo(fifo, 0600), 0);
    fx->fifo_fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    assert_true(fx->fifo_fd >= 0);
    int pipe_size = fcntl(fx->fifo_fd, F_GETPIPE_SZ);
    assert_true(pipe_size > 0);

    fx->conn = sp_test_pg_connect(fx->pg);
    sp_test_sql(fx->conn, "CREATE TABLE mem_fifo (id int PRIMARY KEY, pad text NOT NULL)");
    struct cdc_conf conf = {
        .conninfo = sp_test_pg_conninfo(fx->pg),
        .slot = slot,
        .publication = "p_mem_fifo",
        .tables = "public.mem_fifo",
        .out_path = fifo,
        .source_extra = "    status_interval: 1s\n",
        /* A FIFO cannot be fsynced; small batches so acknowledgements follow the reader. */
        .sink_extra = "    fsync: false\n    batch_size: 256\n",
        .settings = "  memory_limit: 8MiB\n",
    };
    cdc_write_config(cfg, &conf);
    fx->proc = cdc_siphon_start(cfg, log);
    assert_true(cdc_wait_log(log, "streaming from slot", 1, 30000 * slow));
    uint64_t created = cdc_confirmed_lsn(fx->conn, slot);
    assert_true(created > 0);

    char *work = sp_test_asprintf(
        "DO $$ BEGIN FOR i IN 0..%d LOOP "
        "INSERT INTO mem_fifo SELECT g, repeat('x', 100) FROM generate_series(i * %d + 1, "
        "i * %d + %d) g; COMMIT; END LOOP; END $$",
        txns - 1, per_txn, per_txn, per_txn);
    sp_test_sql(fx->conn, "%s", work);
    free(work);
    uint64_t end_lsn = cdc_current_lsn(fx->conn);

    /* Nobody reads: the FIFO fills, then siphon's memory, then it stops reading. */
    struct fifo_full_ctx full = {fx, pipe_size};
    assert_true(sp_test_wait_until(fifo_full, &full, 30000 * slow));
    struct sent_ctx sent = {fx->conn, slot, NULL, 0};
    bool stalled = sp_test_wait_until(sender_stalled, &sent, 30000 * slow);
    uint64_t sent_lsn = cdc_lsn_parse(sent.last);
    free(sent.last);
    assert_true(stalled);
    assert_true(sp_test_proc_alive(fx->proc));
    long blocked_rss = sp_test_proc_peak_rss_kib(fx->proc);
    uint64_t blocked_confirmed = cdc_confirmed_lsn(fx->conn, slot);
    char a[24];
    char b[24];
    char c[24];
    char e[24];
    printf("memory[fifo]: %ld rows in %d transactions; reader stopped: walsender stalled at %s "
           "of %s, siphon peak RSS %ld KiB, slot confirmed %s (created at %s)\n",
           rows, txns, cdc_lsn_fmt(sent_lsn, a), cdc_lsn_fmt(end_lsn, b), blocked_rss,
           cdc_lsn_fmt(blocked_confirmed, c), cdc_lsn_fmt(created, e));
    /*
     * Nothing was read, so no transaction can be confirmed. The position may
     * pass the creation point (a keepalive while nothing is in flight reports
     * how far the server has decoded), but never the first commit: that is
     * checked once the output is parsed below.
     */
    assert_true(blocked_confirmed >= created);
    /* siphon stopped reading: the server could not send it everything. */
    assert_true(sent_lsn < end_lsn);
    if (!asan) {
        assert_true(blocked_rss < RSS_LIMIT_KIB);
    }

    /*
     * Read slowly (at most a pipe's worth every 50 ms). Before each read
     * note the confirmed position: everything it covers was written before,
     * so it is in what has been read once the pipe's content has been read.
     */
    uint64_t confirmed_at[SLOW_STEPS];
    size_t read_at[SLOW_STEPS];
    for (int i = 0; i < SLOW_STEPS; i++) {
        confirmed_at[i] = cdc_confirmed_lsn(fx->conn, slot);
        fifo_read(fx, (size_t)pipe_size);
        read_at[i] = fx->len;
        cdc_sleep_ms(50); /* the slow reader's pace */
    }
    size_t slow_bytes = fx->len;

    /* Drain everything. */
    int64_t t0 = cdc_now_ms();
    if (!drain(fx, (size_t)rows, slot, end_lsn, 120000 * slow)) {
        cdc_print_log(log);
        fail_msg("read %zu bytes; slot confirmed %s of %s", fx->len,
                 cdc_lsn_fmt(cdc_confirmed_lsn(fx->conn, slot), a), cdc_lsn_fmt(end_lsn, b));
    }
    int64_t drain_ms = cdc_now_ms() - t0;
    int64_t stop_ms = 0;
    int st = cdc_siphon_stop(fx->proc, 30000, &stop_ms);
    fifo_read(fx, 0);
    if (st != 0) {
        cdc_print_log(log);
    }
    assert_int_equal(st, 0);
    long peak = sp_test_proc_peak_rss_kib(fx->proc);

    /* Everything arrived, once, in order. */
    struct cdc_output *o = &fx->out;
    cdc_output_parse(fx->buf, fx->len, NULL, o);
    if (o->invalid > 0) {
        fail_msg("%zu invalid lines; first: %s", o->invalid, o->first_invalid);
    }
    assert_false(o->partial_tail);
    assert_int_equal(o->n, (size_t)rows);
    for (size_t i = 0; i < o->n; i++) {
        assert_int_equal(o->ev[i].key, (long)i + 1);
    }
    if (blocked_confirmed > o->ev[0].commit_lsn) {
        fail_msg("confirmed %s while blocked, past the first transaction's commit at %s, "
                 "which nobody had read",
                 cdc_lsn_fmt(blocked_confirmed, a), cdc_lsn_fmt(o->ev[0].commit_lsn, b));
    }

    /*
     * For each slow step: the first transaction not wholly in what had been
     * read by then must not have been confirmed (its commit record lies at
     * or after the confirmed position).
     */
    int moved = 0;
    for (int i = 0; i < SLOW_STEPS; i++) {
        if (i > 0 && confirmed_at[i] > confirmed_at[i - 1]) {
            moved++;
        }
        for (size_t k = 0; k < o->n; k++) {
            bool last_of_txn = k + 1 == o->n || o->ev[k + 1].commit_lsn != o->ev[k].commit_lsn;
            if (last_of_txn && o->ev[k].end > read_at[i]) {
                if (confirmed_at[i] > o->ev[k].commit_lsn) {
                    fail_msg("step %d: confirmed %s but transaction %s was not read yet (%zu "
                             "bytes read)",
                             i, cdc_lsn_fmt(confirmed_at[i], a),
                             cdc_lsn_fmt(o->ev[k].commit_lsn, b), read_at[i]);
                }
                break;
            }
        }
    }
    printf("memory[fifo]: slow reader took %zu KiB in %d steps, the slot moved %d times; drained "
           "in %lld ms, stopped in %lld ms, siphon peak RSS %ld KiB%s\n",
           slow_bytes >> 10, SLOW_STEPS, moved, (long long)drain_ms, (long long)stop_ms, peak,
           asan ? " (ASan: not asserted)" : "");
    assert_true(moved >= 1);
    if (!asan) {
        assert_true(peak < RSS_LIMIT_KIB);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(million_row_transaction_streams_in_bounded_memory, test_cleanup),
        cmocka_unit_test_teardown(slow_fifo_sink_holds_memory_and_confirmation, test_cleanup),
    };
    return SP_TEST_RUN_GROUP("memory", tests, group_setup, group_teardown);
}
