// SPDX-License-Identifier: Apache-2.0
/*
 * Proves the integration-test harness (tests/lib/harness.c) works: real
 * PostgreSQL servers with default and extra settings, restarts, child
 * processes (exit codes, signals, output files, peak RSS), bounded waits,
 * the JSON path reader, file helpers, redis-server and nats-server, and the
 * watchdog that stops PostgreSQL when a test process dies.
 *
 * Run with `--die-holding-server FILE` the binary is the victim of that last
 * test instead: it starts a server, writes its pid and dir to FILE and
 * SIGKILLs itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/harness.h"

struct fixture {
    struct sp_pg *pg;  /* defaults */
    struct sp_pg *pg2; /* extra_conf */
    char *tmp;
    /* Per test, released by test_cleanup even when the test fails: */
    PGconn *conn;
    struct sp_proc *proc;
    struct sp_redis *redis;
    struct sp_nats *nats;
    char *text;
    char **lines;
};

static const char *const pg2_conf[] = {"wal_level=replica", "TimeZone='Asia/Kolkata'",
                                       "DateStyle='SQL, DMY'", NULL};

static int group_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    *state = fx;
    fx->tmp = sp_test_tmpdir("harness");
    fx->pg = sp_test_pg_start(NULL);
    struct sp_pg_opts opts = {.tag = "pg-extra", .extra_conf = pg2_conf};
    fx->pg2 = sp_test_pg_start(&opts);
    return 0;
}

static int test_cleanup(void **state)
{
    struct fixture *fx = *state;
    PQfinish(fx->conn);
    fx->conn = NULL;
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
    sp_test_redis_stop(fx->redis);
    fx->redis = NULL;
    sp_test_nats_stop(fx->nats);
    fx->nats = NULL;
    free(fx->text);
    fx->text = NULL;
    sp_test_free_lines(fx->lines);
    fx->lines = NULL;
    return 0;
}

static int group_teardown(void **state)
{
    struct fixture *fx = *state;
    if (fx == NULL) {
        return 0;
    }
    test_cleanup(state);
    sp_test_pg_stop(fx->pg2);
    sp_test_pg_stop(fx->pg);
    sp_test_tmpdir_cleanup(fx->tmp);
    free(fx);
    return 0;
}

static char *path_in(const struct fixture *fx, const char *name)
{
    return sp_test_asprintf("%s/%s", fx->tmp, name);
}

static void assert_sql_value(PGconn *c, const char *expected, const char *sql)
{
    char *v = sp_test_sql_value(c, "%s", sql);
    bool same = expected == NULL ? v == NULL : v != NULL && strcmp(v, expected) == 0;
    char msg[512];
    snprintf(msg, sizeof(msg), "%s returned %s, expected %s", sql, v ? v : "NULL",
             expected ? expected : "NULL");
    free(v);
    if (!same) {
        fail_msg("%s", msg);
    }
}

/* ---- PostgreSQL ---------------------------------------------------------- */

static void pg_default_server_is_logical_and_runs_sql(void **state)
{
    struct fixture *fx = *state;
    fx->conn = sp_test_pg_connect(fx->pg);
    PGconn *c = fx->conn;

    assert_sql_value(c, "logical", "SHOW wal_level");
    assert_sql_value(c, "20", "SHOW max_replication_slots");
    assert_sql_value(c, "20", "SHOW max_wal_senders");
    assert_sql_value(c, "off", "SHOW fsync");
    assert_sql_value(c, "127.0.0.1", "SHOW listen_addresses");
    assert_sql_value(c, "UTF8", "SHOW server_encoding");
    assert_int_equal(sp_test_sql_long(c, "SHOW port"), sp_test_pg_port(fx->pg));

    sp_test_sql(c, "CREATE TABLE harness_t (id int PRIMARY KEY, v text)");
    sp_test_sql(c, "INSERT INTO harness_t VALUES (1, 'a'), (2, NULL), (%d, '%s')", 3, "c");
    assert_int_equal(sp_test_sql_long(c, "SELECT count(*) FROM harness_t"), 3);
    assert_sql_value(c, "c", "SELECT v FROM harness_t WHERE id = 3");
    assert_sql_value(c, NULL, "SELECT v FROM harness_t WHERE id = 2");
    assert_int_equal(sp_test_sql_long(c, "SELECT -42"), -42);
    assert_true(sp_test_sql_poll_until(c, "3", 1000, "SELECT count(*) FROM harness_t"));
    assert_false(sp_test_sql_poll_until(c, "4", 100, "SELECT count(*) FROM harness_t"));
    assert_true(sp_test_sql_poll_until(c, NULL, 100, "SELECT NULL"));

    char *want = sp_test_asprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres",
                                  sp_test_pg_port(fx->pg));
    assert_string_equal(sp_test_pg_conninfo(fx->pg), want);
    free(want);
}

static void pg_accepts_replication_connections(void **state)
{
    struct fixture *fx = *state;
    char *ci = sp_test_asprintf("%s replication=database", sp_test_pg_conninfo(fx->pg));
    fx->conn = PQconnectdb(ci);
    free(ci);
    assert_int_equal(PQstatus(fx->conn), CONNECTION_OK);
    PGresult *res = PQexec(fx->conn, "IDENTIFY_SYSTEM");
    int st = PQresultStatus(res);
    int rows = PQntuples(res);
    PQclear(res);
    assert_int_equal(st, PGRES_TUPLES_OK);
    assert_int_equal(rows, 1);
}

static void pg_unix_socket_conninfo_connects(void **state)
{
    struct fixture *fx = *state;
    const char *ci = sp_test_pg_conninfo_unix(fx->pg);
    assert_non_null(strstr(ci, sp_test_pg_dir(fx->pg)));
    fx->conn = PQconnectdb(ci);
    assert_int_equal(PQstatus(fx->conn), CONNECTION_OK);
    /* NULL server address: the session is on the unix socket, not TCP */
    assert_sql_value(fx->conn, NULL, "SELECT inet_server_addr()");
}

static void pg_extra_conf_overrides_defaults(void **state)
{
    struct fixture *fx = *state;
    fx->conn = sp_test_pg_connect(fx->pg2);
    PGconn *c = fx->conn;
    assert_sql_value(c, "replica", "SHOW wal_level");
    assert_sql_value(c, "Asia/Kolkata", "SHOW TimeZone");
    assert_sql_value(c, "SQL, DMY", "SHOW DateStyle");
    assert_sql_value(c, "20", "SHOW max_replication_slots");
    assert_sql_value(c, "21/11/2026 15:30:00 IST",
                     "SELECT '2026-11-21 10:00:00+00'::timestamptz::text");
    assert_int_not_equal(sp_test_pg_port(fx->pg), sp_test_pg_port(fx->pg2));
}

static void pg_restart_keeps_port_and_data(void **state)
{
    struct fixture *fx = *state;
    fx->conn = sp_test_pg_connect(fx->pg);
    sp_test_sql(fx->conn, "CREATE TABLE harness_r (id int); INSERT INTO harness_r VALUES (7)");
    int port = sp_test_pg_port(fx->pg);
    int pid = sp_test_pg_pid(fx->pg);
    assert_true(pid > 0);

    sp_test_pg_restart(fx->pg);
    assert_int_equal(sp_test_pg_port(fx->pg), port);
    assert_int_not_equal(sp_test_pg_pid(fx->pg), pid);
    assert_false(sp_test_pid_alive(pid));
    /* The old session died with the old server. */
    PGresult *res = PQexec(fx->conn, "SELECT 1");
    int st = PQresultStatus(res);
    PQclear(res);
    assert_int_not_equal(st, PGRES_TUPLES_OK);
    PQfinish(fx->conn);
    fx->conn = sp_test_pg_connect(fx->pg);
    assert_int_equal(sp_test_sql_long(fx->conn, "SELECT id FROM harness_r"), 7);

    /* A crash (immediate stop) and recovery keep committed data too. */
    PQfinish(fx->conn);
    fx->conn = NULL;
    sp_test_pg_down(fx->pg, "immediate");
    assert_int_equal(sp_test_pg_pid(fx->pg), -1);
    PGconn *down = PQconnectdb(sp_test_pg_conninfo(fx->pg));
    int down_status = PQstatus(down);
    PQfinish(down);
    assert_int_equal(down_status, CONNECTION_BAD);
    sp_test_pg_up(fx->pg);
    fx->conn = sp_test_pg_connect(fx->pg);
    assert_int_equal(sp_test_sql_long(fx->conn, "SELECT id FROM harness_r"), 7);
    sp_test_sql(fx->conn, "DROP TABLE harness_r");
}

/* ---- processes ----------------------------------------------------------- */

static void proc_reports_exit_status_and_output(void **state)
{
    struct fixture *fx = *state;
    char *out = path_in(fx, "sh.out");
    char *err = path_in(fx, "sh.err");
    const char *argv[] = {"/bin/sh", "-c", "echo hi; echo oops >&2; exit 3", NULL};
    fx->proc = sp_test_proc_start(argv, out, err);
    assert_int_equal(sp_test_proc_wait(fx->proc, 10000), 3);
    assert_int_equal(sp_test_proc_wait(fx->proc, 0), 3);
    assert_false(sp_test_proc_alive(fx->proc));
    assert_int_equal(sp_test_proc_signal(fx->proc, SIGTERM), -1);
    assert_int_equal(errno, ESRCH);

    size_t len = 0;
    fx->text = sp_test_read_file(out, &len);
    assert_non_null(fx->text);
    assert_string_equal(fx->text, "hi\n");
    assert_int_equal(len, 3);
    free(fx->text);
    fx->text = sp_test_read_file(err, NULL);
    assert_non_null(fx->text);
    assert_string_equal(fx->text, "oops\n");
    free(out);
    free(err);
}

static void proc_shares_one_file_for_both_streams(void **state)
{
    struct fixture *fx = *state;
    char *log = path_in(fx, "both.log");
    const char *argv[] = {"sh", "-c", "echo a; echo b >&2; echo c", NULL};
    fx->proc = sp_test_proc_start(argv, log, log);
    assert_int_equal(sp_test_proc_wait(fx->proc, 10000), 0);
    fx->text = sp_test_read_file(log, NULL);
    free(log);
    assert_non_null(fx->text);
    assert_string_equal(fx->text, "a\nb\nc\n");
}

static void proc_signals_timeouts_and_stops(void **state)
{
    struct fixture *fx = *state;
    const char *argv[] = {"sleep", "30", NULL};
    fx->proc = sp_test_proc_start(argv, NULL, NULL);
    assert_true(sp_test_proc_pid(fx->proc) > 0);
    assert_int_equal(sp_test_proc_wait(fx->proc, 100), SP_TEST_PROC_TIMEOUT);
    assert_true(sp_test_proc_alive(fx->proc));

    assert_int_equal(sp_test_proc_signal(fx->proc, SIGSTOP), 0);
    assert_int_equal(sp_test_proc_wait(fx->proc, 100), SP_TEST_PROC_TIMEOUT);
    assert_true(sp_test_proc_alive(fx->proc)); /* stopped is not dead */
    assert_int_equal(sp_test_proc_signal(fx->proc, SIGCONT), 0);

    assert_int_equal(sp_test_proc_signal(fx->proc, SIGTERM), 0);
    assert_int_equal(sp_test_proc_wait(fx->proc, 10000), SP_TEST_PROC_BY_SIGNAL(SIGTERM));
    assert_false(sp_test_proc_alive(fx->proc));
    assert_false(sp_test_pid_alive(sp_test_proc_pid(fx->proc)));
}

static void proc_peak_rss_is_the_child_s_own(void **state)
{
    struct fixture *fx = *state;
    /*
     * Make the test process big first: ru_maxrss would include this (it is
     * what fork copies), VmHWM of the exec'd image must not.
     */
    size_t big = 192u << 20;
    char *ballast = malloc(big);
    assert_non_null(ballast);
    memset(ballast, 1, big);
    const char *small_argv[] = {"sleep", "30", NULL};
    fx->proc = sp_test_proc_start(small_argv, NULL, NULL);
    free(ballast);
    long small = sp_test_proc_peak_rss_kib(fx->proc);
    assert_true(small > 0);
    assert_true(small < 32L * 1024);
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;

    /* dd holds a 64 MiB buffer for the whole copy; the peak survives its exit. */
    const char *dd_argv[] = {"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=40", NULL};
    fx->proc = sp_test_proc_start(dd_argv, NULL, "/dev/null");
    assert_int_equal(sp_test_proc_wait(fx->proc, 60000), 0);
    long peak = sp_test_proc_peak_rss_kib(fx->proc);
    assert_true(peak >= 64L * 1024);
    assert_true(peak < 160L * 1024);
}

/* ---- waiting ------------------------------------------------------------- */

struct counter {
    int calls;
    int true_at; /* 0: never */
};

static bool count_calls(void *ctx)
{
    struct counter *c = ctx;
    c->calls++;
    return c->true_at != 0 && c->calls >= c->true_at;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wait_until_times_out_and_succeeds(void **state)
{
    (void)state;
    struct counter never = {0, 0};
    int64_t t0 = mono_ms();
    assert_false(sp_test_wait_until(count_calls, &never, 300));
    int64_t took = mono_ms() - t0;
    assert_true(took >= 300);
    assert_true(took < 2000);
    assert_true(never.calls >= 5);  /* polled, not one fixed sleep */
    assert_true(never.calls <= 32); /* but not spinning either */

    struct counter third = {0, 3};
    t0 = mono_ms();
    assert_true(sp_test_wait_until(count_calls, &third, 10000));
    assert_int_equal(third.calls, 3);
    assert_true(mono_ms() - t0 < 1000);
}

struct file_ctx {
    const char *path;
    size_t lines;
};

static bool has_lines(void *ctx)
{
    struct file_ctx *f = ctx;
    return sp_test_count_lines(f->path) >= f->lines;
}

static void wait_until_sees_a_child_write(void **state)
{
    struct fixture *fx = *state;
    char *out = path_in(fx, "slow.out");
    const char *argv[] = {"/bin/sh", "-c", "sleep 0.2; echo one; echo two", NULL};
    fx->proc = sp_test_proc_start(argv, out, NULL);
    struct file_ctx ctx = {out, 2};
    assert_true(sp_test_wait_until(has_lines, &ctx, 10000));
    assert_int_equal(sp_test_count_lines(out), 2);
    free(out);
}

/* ---- files --------------------------------------------------------------- */

static void file_helpers_read_write_and_count(void **state)
{
    struct fixture *fx = *state;
    char *p = path_in(fx, "conf.yaml");
    sp_test_write_file(p, "sources:\n  pg:\n    port: %d\npartial", 5432);
    assert_int_equal(sp_test_count_lines(p), 3);
    size_t n = 0;
    fx->lines = sp_test_read_lines(p, &n);
    assert_int_equal(n, 3);
    assert_string_equal(fx->lines[0], "sources:");
    assert_string_equal(fx->lines[2], "    port: 5432");
    assert_null(fx->lines[3]); /* the unterminated "partial" is not a line yet */
    sp_test_free_lines(fx->lines);
    fx->lines = NULL;

    char *missing = path_in(fx, "missing");
    errno = 0;
    assert_null(sp_test_read_file(missing, NULL));
    assert_int_equal(errno, ENOENT);
    assert_int_equal(sp_test_count_lines(missing), 0);
    fx->lines = sp_test_read_lines(missing, &n);
    assert_int_equal(n, 0);
    assert_null(fx->lines[0]);
    free(missing);
    free(p);

    char *dir = sp_test_tmpdir("a/b c");
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(strncmp(dir, "/tmp/sp-a_b_c-", 14), 0);
    char *sub = sp_test_asprintf("%s/x/y", dir);
    char *subdir = sp_test_asprintf("%s/x", dir);
    assert_int_equal(mkdir(subdir, 0700), 0);
    assert_int_equal(mkdir(sub, 0700), 0);
    sp_test_rm_rf(subdir);
    assert_int_not_equal(stat(subdir, &st), 0);
    sp_test_rm_rf("/etc/passwd"); /* refused: only /tmp/sp-* */
    assert_int_equal(stat("/etc/passwd", &st), 0);
    free(sub);
    free(subdir);
    sp_test_tmpdir_cleanup(dir);
}

/* ---- JSON ---------------------------------------------------------------- */

static void assert_json(const char *json, const char *path, enum sp_test_json kind,
                        const char *text)
{
    char *out = NULL;
    enum sp_test_json got = sp_test_json_lookup(json, path, &out);
    bool same = got == kind && (text == NULL ? out == NULL : out != NULL && strcmp(text, out) == 0);
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s at \"%s\": kind %d text \"%s\", expected kind %d \"%s\"", json,
             path, (int)got, out ? out : "(null)", (int)kind, text ? text : "(null)");
    free(out);
    if (!same) {
        fail_msg("%s", msg);
    }
}

static void json_reader_handles_tricky_lines(void **state)
{
    (void)state;
    const char *ev =
        "{\"before\":null,\"after\":{\"id\":42,\"status\":\"paid\",\"total\":\"19.90\","
        "\"meta\":{\"gift\":true,\"tags\":[\"a\",{\"k\":[1,2.5e-3,-0]}]}},"
        "\"source\":{\"lsn\":24023128,\"snapshot\":\"false\"},\"op\":\"c\","
        "\"id\":\"0/16E9A48:3\"}";
    assert_json(ev, "op", SP_TEST_JSON_STRING, "c");
    assert_json(ev, "after.id", SP_TEST_JSON_NUMBER, "42");
    assert_json(ev, "source.lsn", SP_TEST_JSON_NUMBER, "24023128");
    assert_json(ev, "source.snapshot", SP_TEST_JSON_STRING, "false");
    assert_json(ev, "before", SP_TEST_JSON_NULL, NULL);
    assert_json(ev, "after.meta.gift", SP_TEST_JSON_TRUE, "true");
    assert_json(ev, "after.meta.tags.0", SP_TEST_JSON_STRING, "a");
    assert_json(ev, "after.meta.tags[1].k[1]", SP_TEST_JSON_NUMBER, "2.5e-3");
    assert_json(ev, "after.meta.tags.1.k.2", SP_TEST_JSON_NUMBER, "-0");
    assert_json(ev, "after.meta.tags.1", SP_TEST_JSON_OBJECT, "{\"k\":[1,2.5e-3,-0]}");
    assert_json(ev, "after.meta.tags.2", SP_TEST_JSON_MISSING, NULL);
    assert_json(ev, "after.nope", SP_TEST_JSON_MISSING, NULL);
    assert_json(ev, "op.deeper", SP_TEST_JSON_MISSING, NULL);
    assert_json(ev, "after.meta[0]", SP_TEST_JSON_MISSING, NULL); /* [N] needs an array */
    assert_json(ev, "id", SP_TEST_JSON_STRING, "0/16E9A48:3");

    /* Whitespace, escapes, keys that look like other keys, nesting in strings. */
    const char *odd = " { \"a.b\" : 1 , \"a\" : { \"b\" : [ 1 , { } , [ ] , \"x\\\" }]\" ] } ,"
                      " \"esc\" : \"q\\\"b\\\\s\\/n\\nt\\tu\\u00e9\\ud83d\\ude00\" ,"
                      " \"k\\u0065y\" : false , \"0\" : \"zero\" , \"dup\":1, \"dup\":2 } \n";
    assert_json(odd, "a.b", SP_TEST_JSON_ARRAY, "[1,{},[],\"x\\\" }]\"]");
    assert_json(odd, "a.b.3", SP_TEST_JSON_STRING, "x\" }]");
    assert_json(odd, "a.b.1", SP_TEST_JSON_OBJECT, "{}");
    assert_json(odd, "esc", SP_TEST_JSON_STRING, "q\"b\\s/n\nt\tu\xc3\xa9\xf0\x9f\x98\x80");
    assert_json(odd, "key", SP_TEST_JSON_FALSE, "false");
    assert_json(odd, "0", SP_TEST_JSON_STRING, "zero");
    assert_json(odd, "dup", SP_TEST_JSON_NUMBER, "1");
    assert_json("[10,[20,[30]]]", "1.1.0", SP_TEST_JSON_NUMBER, "30");
    assert_json("[10,[20,[30]]]", "", SP_TEST_JSON_ARRAY, "[10,[20,[30]]]");
    assert_json("\"caf\xc3\xa9\"", "", SP_TEST_JSON_STRING, "caf\xc3\xa9");
    assert_json("{\"big\":123456789012345678901234567890}", "big", SP_TEST_JSON_NUMBER,
                "123456789012345678901234567890");

    const char *invalid[] = {
        "",
        "{",
        "{\"a\":1,}",
        "[1,]",
        "{\"a\" 1}",
        "{'a':1}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":+1}",
        "{\"a\":1e}",
        "{\"a\":tru}",
        "{\"a\":\"tab\there\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12g4\"}",
        "{\"a\":\"\\ud83d\"}",      /* lone high surrogate */
        "{\"a\":\"\\ude00\"}",      /* lone low surrogate */
        "{\"a\":\"\xc3\"}",         /* truncated UTF-8 */
        "{\"a\":\"\xc0\xaf\"}",     /* overlong */
        "{\"a\":\"\xed\xa0\x80\"}", /* encoded surrogate */
        "{\"a\":1} {\"b\":2}",
        "{\"a\":1}x",
        "nul",
    };
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        assert_json(invalid[i], "a", SP_TEST_JSON_INVALID, NULL);
    }
    char deep[2100];
    memset(deep, '[', 1000);
    memset(deep + 1000, ']', 1000);
    deep[2000] = '\0';
    assert_json(deep, "", SP_TEST_JSON_INVALID, NULL); /* deeper than the 512 limit */

    char *v = sp_test_json_get(ev, "after.status");
    assert_string_equal(v, "paid");
    free(v);
    assert_null(sp_test_json_get(ev, "before"));
}

/* ---- redis, nats --------------------------------------------------------- */

/* Sends req on a fresh connection and reads until want appears; false otherwise. */
static bool tcp_exchange(int port, const char *req, const char *want)
{
    int fd = sp_test_tcp_connect(port);
    if (fd < 0) {
        return false;
    }
    bool ok = false;
    if (send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req)) {
        char buf[8192];
        size_t n = 0;
        ssize_t got;
        while (!ok && n + 1 < sizeof(buf) &&
               (got = recv(fd, buf + n, sizeof(buf) - 1 - n, 0)) > 0) {
            n += (size_t)got;
            buf[n] = '\0';
            ok = strstr(buf, want) != NULL;
        }
    }
    close(fd);
    return ok;
}

static bool port_closed(void *ctx)
{
    int fd = sp_test_tcp_connect(*(int *)ctx);
    if (fd >= 0) {
        close(fd);
        return false;
    }
    return true;
}

static void redis_starts_answers_and_stops(void **state)
{
    struct fixture *fx = *state;
    if (!sp_test_redis_available()) {
        skip();
    }
    fx->redis = sp_test_redis_start();
    int port = sp_test_redis_port(fx->redis);
    int pid = sp_test_redis_pid(fx->redis);
    char *url = sp_test_asprintf("redis://127.0.0.1:%d", port);
    assert_string_equal(sp_test_redis_url(fx->redis), url);
    free(url);
    assert_true(tcp_exchange(port, "PING\r\n", "+PONG\r\n"));
    assert_true(tcp_exchange(port, "SET k v\r\nGET k\r\n", "$1\r\nv\r\n"));

    sp_test_redis_stop(fx->redis);
    fx->redis = NULL;
    assert_false(sp_test_pid_alive(pid));
    assert_true(sp_test_wait_until(port_closed, &port, 5000));
}

static void nats_starts_with_jetstream_and_stops(void **state)
{
    struct fixture *fx = *state;
    if (!sp_test_nats_available()) {
        skip();
    }
    fx->nats = sp_test_nats_start();
    int port = sp_test_nats_port(fx->nats);
    int pid = sp_test_nats_pid(fx->nats);
    assert_true(tcp_exchange(port, "", "\"jetstream\":true"));
    assert_true(tcp_exchange(port, "CONNECT {\"verbose\":false}\r\nPING\r\n", "PONG\r\n"));
    char *url = sp_test_asprintf("nats://127.0.0.1:%d", port);
    assert_string_equal(sp_test_nats_url(fx->nats), url);
    free(url);

    sp_test_nats_stop(fx->nats);
    fx->nats = NULL;
    assert_false(sp_test_pid_alive(pid));
    assert_true(sp_test_wait_until(port_closed, &port, 5000));
}

/* ---- the watchdog -------------------------------------------------------- */

/* Victim mode: start a server, say where it is, die without any cleanup. */
static int die_holding_server(const char *report)
{
    struct sp_pg_opts opts = {.tag = "victim", .extra_conf = NULL};
    struct sp_pg *pg = sp_test_pg_start(&opts);
    sp_test_write_file(report, "%d\n%s\n", sp_test_pg_pid(pg), sp_test_pg_dir(pg));
    kill(getpid(), SIGKILL);
    return 1;
}

struct pid_ctx {
    int pid;
};

static bool pid_gone(void *ctx)
{
    return !sp_test_pid_alive(((struct pid_ctx *)ctx)->pid);
}

static bool file_mentions_stop(void *ctx)
{
    char *text = sp_test_read_file(ctx, NULL);
    bool found = text != NULL && strstr(text, "stopped PostgreSQL in") != NULL;
    free(text);
    return found;
}

static void watchdog_stops_postgres_when_test_process_dies(void **state)
{
    struct fixture *fx = *state;
    char *report = path_in(fx, "victim.txt");
    char *err = path_in(fx, "victim.err");
    const char *argv[] = {"/proc/self/exe", "--die-holding-server", report, NULL};
    fx->proc = sp_test_proc_start(argv, err, err);
    int st = sp_test_proc_wait(fx->proc, 180000);
    if (st != SP_TEST_PROC_BY_SIGNAL(SIGKILL)) {
        fx->text = sp_test_read_file(err, NULL);
        fprintf(stderr, "victim output:\n%s\n", fx->text ? fx->text : "(none)");
    }
    assert_int_equal(st, SP_TEST_PROC_BY_SIGNAL(SIGKILL));

    fx->lines = sp_test_read_lines(report, NULL);
    assert_non_null(fx->lines[0]);
    assert_non_null(fx->lines[1]);
    struct pid_ctx pc = {(int)strtol(fx->lines[0], NULL, 10)};
    assert_true(pc.pid > 0);
    assert_true(sp_test_wait_until(pid_gone, &pc, 30000));
    assert_true(sp_test_wait_until(file_mentions_stop, err, 10000));
    sp_test_rm_rf(fx->lines[1]); /* the victim's server dir, kept because it crashed */
    free(report);
    free(err);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--die-holding-server") == 0) {
        return die_holding_server(argv[2]);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(pg_default_server_is_logical_and_runs_sql, test_cleanup),
        cmocka_unit_test_teardown(pg_accepts_replication_connections, test_cleanup),
        cmocka_unit_test_teardown(pg_unix_socket_conninfo_connects, test_cleanup),
        cmocka_unit_test_teardown(pg_extra_conf_overrides_defaults, test_cleanup),
        cmocka_unit_test_teardown(pg_restart_keeps_port_and_data, test_cleanup),
        cmocka_unit_test_teardown(proc_reports_exit_status_and_output, test_cleanup),
        cmocka_unit_test_teardown(proc_shares_one_file_for_both_streams, test_cleanup),
        cmocka_unit_test_teardown(proc_signals_timeouts_and_stops, test_cleanup),
        cmocka_unit_test_teardown(proc_peak_rss_is_the_child_s_own, test_cleanup),
        cmocka_unit_test_teardown(wait_until_times_out_and_succeeds, test_cleanup),
        cmocka_unit_test_teardown(wait_until_sees_a_child_write, test_cleanup),
        cmocka_unit_test_teardown(file_helpers_read_write_and_count, test_cleanup),
        cmocka_unit_test_teardown(json_reader_handles_tricky_lines, test_cleanup),
        cmocka_unit_test_teardown(redis_starts_answers_and_stops, test_cleanup),
        cmocka_unit_test_teardown(nats_starts_with_jetstream_and_stops, test_cleanup),
        cmocka_unit_test_teardown(watchdog_stops_postgres_when_test_process_dies, test_cleanup),
    };
    return SP_TEST_RUN_GROUP("harness", tests, group_setup, group_teardown);
}
