/*
 * Integration-test harness: real PostgreSQL, redis-server and nats-server
 * instances in temp dirs, child processes with redirected output, bounded
 * waits, file helpers and a JSON path reader for siphon's JSON Lines output.
 *
 * Threads: call everything from the test's main thread. Helpers that start
 * or query something never return a failure value for an infrastructure
 * problem: they print what went wrong (command output, server log) and fail
 * the current cmocka test, group setup or teardown. They do not depend on
 * siphon_core; the header only borrows SP_PRINTF from util/mem.h.
 *
 * Temp dirs and logs: every server lives in /tmp/sp-<tag>-XXXXXX. Run the
 * group with SP_TEST_RUN_GROUP: when a test fails, the dirs of everything
 * started during the run are kept and the server logs printed at the end;
 * otherwise they are removed. SP_KEEP_TMP=1 keeps them in any case.
 *
 * Safety net: anything still running when the group ends, or at exit(), is
 * stopped. If the test process dies without cleaning up (crash, SIGKILL,
 * ctest timeout), a small watchdog process it forked stops the PostgreSQL
 * servers (SIGQUIT to the postmaster); other children (redis, nats, siphon)
 * get SIGKILL from the kernel (PR_SET_PDEATHSIG).
 */
#ifndef SIPHON_TESTS_LIB_HARNESS_H
#define SIPHON_TESTS_LIB_HARNESS_H

#include <stddef.h>

#include <libpq-fe.h>
#include <stdbool.h>

#include "util/mem.h"

/* ---- running a group ---------------------------------------------------- */

/*
 * Runs a cmocka group like cmocka_run_group_tests_name and returns its
 * result (the number of failed tests), then keeps or removes the temp dirs
 * as described above. Use as `return SP_TEST_RUN_GROUP("harness", tests,
 * setup, teardown);`. The caller includes <cmocka.h>.
 */
#define SP_TEST_RUN_GROUP(name, tests, setup, teardown) \
    (sp_test_begin(),                                   \
     sp_test_finish(cmocka_run_group_tests_name((name), (tests), (setup), (teardown))))

void sp_test_begin(void);
/* failed: the number of failed tests; returns it. Stops what is still running. */
int sp_test_finish(int failed);
/* Records a failure, so temp dirs are kept and logs printed. */
void sp_test_mark_failed(void);

/* malloc'd, aborts on allocation failure. */
char *sp_test_asprintf(const char *fmt, ...) SP_PRINTF(1, 2);
/* $SP_SIPHON_BIN, the siphon binary under test (fails the test when unset). */
const char *sp_test_siphon_bin(void);

/* ---- PostgreSQL ---------------------------------------------------------- */

struct sp_pg;

struct sp_pg_opts {
    const char *tag; /* in the temp dir name; default "pg" */
    /*
     * NULL-terminated list of postgresql.conf lines appended after the
     * harness's own settings, so they win: "wal_level=replica",
     * "TimeZone='Asia/Kolkata'", "DateStyle='SQL, DMY'" (config-file syntax).
     */
    const char *const *extra_conf;
};

/*
 * initdb (-A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8) into a
 * fresh temp dir and start the server with pg_ctl -w -t 60, listening on
 * 127.0.0.1 at a free port and on a unix socket in the temp dir, with
 * wal_level=logical, max_replication_slots=20, max_wal_senders=20 and
 * fsync=off (written to postgresql.conf, followed by opts->extra_conf). As
 * root, initdb and pg_ctl run as the `postgres` user, which owns the temp
 * dir. The binaries come from $SP_PG_BINDIR, `pg_config --bindir` or
 * /usr/lib/postgresql/15/bin. A failed start is retried once on another
 * port. opts may be NULL. Never returns NULL.
 */
struct sp_pg *sp_test_pg_start(const struct sp_pg_opts *opts);
/* pg_ctl stop -m fast, then the temp dir is handled as described above. NULL is a no-op. */
void sp_test_pg_stop(struct sp_pg *pg);
/* Stops (-m fast) and starts the server again on the same port. */
void sp_test_pg_restart(struct sp_pg *pg);
/* Stops the server with mode "smart", "fast" or "immediate"; sp_test_pg_up starts it again. */
void sp_test_pg_down(struct sp_pg *pg, const char *mode);
void sp_test_pg_up(struct sp_pg *pg);

/* "host=127.0.0.1 port=N user=postgres dbname=postgres"; valid until sp_test_pg_stop. */
const char *sp_test_pg_conninfo(const struct sp_pg *pg);
/* The same over the unix socket: "host=/tmp/sp-pg-XXXXXX port=N user=postgres dbname=postgres". */
const char *sp_test_pg_conninfo_unix(const struct sp_pg *pg);
int sp_test_pg_port(const struct sp_pg *pg);
/* The temp dir, which holds data/, server.log and ctl.log (initdb and pg_ctl output). */
const char *sp_test_pg_dir(const struct sp_pg *pg);
const char *sp_test_pg_datadir(const struct sp_pg *pg);
const char *sp_test_pg_log_path(const struct sp_pg *pg);
/* The postmaster's pid from postmaster.pid, or -1 when it is not running. */
int sp_test_pg_pid(const struct sp_pg *pg);
/* Copies the server log (its last 256 KiB) to stderr. */
void sp_test_pg_print_log(const struct sp_pg *pg);

/* Connects over TCP (connect_timeout=10) or fails the test. Free with PQfinish. */
PGconn *sp_test_pg_connect(const struct sp_pg *pg);
PGconn *sp_test_pg_connect_db(const struct sp_pg *pg, const char *dbname);

/* Runs SQL; on error fails the test with the SQL and the server's message. */
void sp_test_sql(PGconn *c, const char *fmt, ...) SP_PRINTF(2, 3);
/*
 * First column of the first row, malloc'd; NULL for SQL NULL. Fails the
 * test on error or when the query returns no rows.
 */
char *sp_test_sql_value(PGconn *c, const char *fmt, ...) SP_PRINTF(2, 3);
/* The same, parsed as an integer; fails the test on NULL or non-integers. */
long sp_test_sql_long(PGconn *c, const char *fmt, ...) SP_PRINTF(2, 3);
/*
 * Repeats the query until its first value equals expected (NULL: SQL NULL)
 * or timeout_ms passes; returns whether it matched. Fails on SQL errors.
 */
bool sp_test_sql_poll_until(PGconn *c, const char *expected, int timeout_ms, const char *fmt, ...)
    SP_PRINTF(4, 5);

/* ---- child processes ----------------------------------------------------- */

struct sp_proc;

/* What sp_test_proc_wait returns besides an exit code 0..255. */
#define SP_TEST_PROC_TIMEOUT      (-1)
#define SP_TEST_PROC_SIGNALED     256 /* + signal number: killed by that signal */
#define SP_TEST_PROC_BY_SIGNAL(s) (SP_TEST_PROC_SIGNALED + (s))

/*
 * fork + exec argv (NULL-terminated; argv[0] is searched in PATH when it has
 * no '/'), with stdin from /dev/null and stdout/stderr truncated and
 * redirected to the given files (NULL: inherit the test's). The child gets
 * the test's environment (setenv before calling to add to it) and dies with
 * SIGKILL if the test process dies. Fails the test if the files cannot be
 * opened or exec fails. Never returns NULL.
 */
struct sp_proc *sp_test_proc_start(const char *const argv[], const char *stdout_path,
                                   const char *stderr_path);
/* Sends sig; returns 0, or -1 with errno ESRCH once the process has exited. */
int sp_test_proc_signal(struct sp_proc *p, int sig);
/*
 * Waits up to timeout_ms (0: just look). Returns the exit code 0..255,
 * SP_TEST_PROC_BY_SIGNAL(sig) when killed by a signal, or
 * SP_TEST_PROC_TIMEOUT. Once it has exited, every call returns the same.
 */
int sp_test_proc_wait(struct sp_proc *p, int timeout_ms);
/*
 * Peak resident set size in KiB: the largest VmHWM read from
 * /proc/PID/status. A watcher thread reads it every 10 ms until the
 * process exits, and every call here and in sp_test_proc_signal reads it
 * too, so after exit this is the peak up to at most 10 ms before the end.
 * wait4's ru_maxrss is not used: Linux keeps the high-water mark of the
 * pre-exec image in it, i.e. the test process's own RSS copied by fork.
 * -1 if it was never read (the process exited right after exec).
 */
long sp_test_proc_peak_rss_kib(struct sp_proc *p);
/* true until the process has exited (a stopped process is alive). */
bool sp_test_proc_alive(struct sp_proc *p);
int sp_test_proc_pid(const struct sp_proc *p);
/* SIGKILLs the process if still running, reaps it and frees p. NULL is a no-op. */
void sp_test_proc_free(struct sp_proc *p);

/* Whether pid names a process that has not exited (zombies count as exited). */
bool sp_test_pid_alive(int pid);

/* ---- waiting, ports ------------------------------------------------------ */

/*
 * Calls cond(ctx) every 10-50 ms until it returns true (then returns true)
 * or timeout_ms has passed (returns cond's value at the deadline).
 */
bool sp_test_wait_until(bool (*cond)(void *ctx), void *ctx, int timeout_ms);
/* A port on 127.0.0.1 that was free a moment ago (bind to port 0, read, close). */
int sp_test_free_port(void);
/* A connected TCP socket to 127.0.0.1:port with 5 s send/receive timeouts, or -1. */
int sp_test_tcp_connect(int port);

/* ---- files --------------------------------------------------------------- */

/* A fresh dir /tmp/sp-<tag>-XXXXXX (mode 0755), malloc'd. */
char *sp_test_tmpdir(const char *tag);
/* Removes the dir made by sp_test_tmpdir (or keeps it, as above) and frees dir. */
void sp_test_tmpdir_cleanup(char *dir);
/* rm -rf path; refuses anything not under /tmp/sp-. */
void sp_test_rm_rf(const char *path);
/* Creates or truncates path with the formatted text; fails the test on error. */
void sp_test_write_file(const char *path, const char *fmt, ...) SP_PRINTF(2, 3);
/*
 * The whole file, malloc'd and NUL-terminated (len, if not NULL, gets its
 * size); NULL with errno set if it cannot be read, e.g. does not exist yet.
 */
char *sp_test_read_file(const char *path, size_t *len);
/* Number of '\n' in the file (a partly written last line does not count); 0 if missing. */
size_t sp_test_count_lines(const char *path);
/*
 * The file's complete lines without their '\n', as a NULL-terminated array
 * (n, if not NULL, gets the count); an empty array if the file is missing.
 * Free with sp_test_free_lines.
 */
char **sp_test_read_lines(const char *path, size_t *n);
void sp_test_free_lines(char **lines);

/* ---- JSON ---------------------------------------------------------------- */

enum sp_test_json {
    SP_TEST_JSON_INVALID = -1, /* the text is not one valid JSON value */
    SP_TEST_JSON_MISSING = 0,  /* valid, but nothing at that path */
    SP_TEST_JSON_NULL,
    SP_TEST_JSON_FALSE,
    SP_TEST_JSON_TRUE,
    SP_TEST_JSON_NUMBER,
    SP_TEST_JSON_STRING,
    SP_TEST_JSON_ARRAY,
    SP_TEST_JSON_OBJECT,
};

/*
 * Validates json (one value, surrounding whitespace allowed; strict RFC
 * 8259, strings must be valid UTF-8 and \u escapes may not be lone
 * surrogates) and finds the value at path: keys separated by '.', array
 * elements by index ("after.tags.0" or "after.tags[0]"); "" is the whole
 * value. With a duplicate key the first one counts. If out is not NULL it
 * gets a malloc'd text for a found value: strings unescaped (a \u0000 ends
 * the C string), numbers and true/false as written, objects and arrays as
 * compact JSON (whitespace outside strings removed), NULL for null.
 */
enum sp_test_json sp_test_json_lookup(const char *json, const char *path, char **out);
/*
 * The same text (NULL for null); fails the test when json is invalid or has
 * nothing at path, so a missing field never passes for null.
 */
char *sp_test_json_get(const char *json, const char *path);

/* ---- redis-server, nats-server ----------------------------------------- */

struct sp_redis;
struct sp_nats;

/* Whether the server binary is installed (PATH, /usr/sbin, /usr/bin, /usr/local/bin). */
bool sp_test_redis_available(void);
bool sp_test_nats_available(void);

/*
 * redis-server --port N --bind 127.0.0.1 --save "" --appendonly no, with
 * its dir and log in a temp dir; returns once it answers INFO with its own
 * process id (so a server that lost the port race is noticed and the start
 * retried on another port). Fails the test if it cannot be started.
 */
struct sp_redis *sp_test_redis_start(void);
/* SIGTERM, SIGKILL after 10 s, then the temp dir as above. NULL is a no-op. */
void sp_test_redis_stop(struct sp_redis *r);
int sp_test_redis_port(const struct sp_redis *r);
int sp_test_redis_pid(const struct sp_redis *r);
const char *sp_test_redis_url(const struct sp_redis *r); /* "redis://127.0.0.1:N" */
void sp_test_redis_print_log(const struct sp_redis *r);

/*
 * nats-server -a 127.0.0.1 -p N -js -sd DIR/js -n <unique name>; returns
 * once a client gets its INFO with that name and JetStream enabled.
 */
struct sp_nats *sp_test_nats_start(void);
void sp_test_nats_stop(struct sp_nats *n);
int sp_test_nats_port(const struct sp_nats *n);
int sp_test_nats_pid(const struct sp_nats *n);
const char *sp_test_nats_url(const struct sp_nats *n); /* "nats://127.0.0.1:N" */
void sp_test_nats_print_log(const struct sp_nats *n);

#endif
