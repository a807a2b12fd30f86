// SPDX-License-Identifier: Apache-2.0
/*
 * `siphon check -c FILE` against real servers: exit code 0 when everything
 * is in place (warnings allowed), 1 when a check fails, 2 on a bad config;
 * each failure names what is wrong and prints the fix. Covers wal_level
 * (and `siphon run` refusing the same server instead of hanging), a role
 * without REPLICATION, a missing table, a table without a primary key, a
 * publication that lacks a table, a slot of another output plugin, and
 * passwords in connection strings never being printed.
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

#include "lib/harness.h"

/* fail_msg jumps out of the test; abort(), never reached, tells analyzers it does not return. */
#define FAIL_MSG(...)          \
    do {                       \
        fail_msg(__VA_ARGS__); \
        abort();               \
    } while (0)

#define WAIT_EXIT_MS 60000
/* How long `siphon run` may take to refuse a setup it cannot use. */
#define WAIT_REFUSE_MS 20000
#define SECRET         "Secret123"

struct fixture {
    struct sp_pg *pg;      /* wal_level=logical */
    struct sp_pg *pg_repl; /* wal_level=replica */
    PGconn *conn;
    char *tmp;
    /* Per test, released by test_cleanup even when the test fails: */
    PGconn *conn_repl; /* to pg_repl */
    struct sp_proc *proc;
    char *cfg;
    char *out; /* the child's stdout */
    char *err; /* the child's stderr */
    char *stdout_text;
    char *stderr_text;
};

static const char *const replica_conf[] = {"wal_level=replica", NULL};

static int group_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    *state = fx;
    fx->tmp = sp_test_tmpdir("check");
    struct sp_pg_opts opts = {.tag = "pg-check", .extra_conf = NULL};
    fx->pg = sp_test_pg_start(&opts);
    struct sp_pg_opts ropts = {.tag = "pg-replica", .extra_conf = replica_conf};
    fx->pg_repl = sp_test_pg_start(&ropts);
    fx->conn = sp_test_pg_connect(fx->pg);
    return 0;
}

static int test_cleanup(void **state)
{
    struct fixture *fx = *state;
    PQfinish(fx->conn_repl);
    fx->conn_repl = NULL;
    if (fx->proc != NULL) {
        sp_test_proc_signal(fx->proc, SIGKILL);
        sp_test_proc_free(fx->proc);
        fx->proc = NULL;
    }
    free(fx->cfg);
    free(fx->out);
    free(fx->err);
    free(fx->stdout_text);
    free(fx->stderr_text);
    fx->cfg = fx->out = fx->err = fx->stdout_text = fx->stderr_text = NULL;
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
    sp_test_pg_stop(fx->pg_repl);
    sp_test_pg_stop(fx->pg);
    sp_test_tmpdir_cleanup(fx->tmp);
    free(fx);
    return 0;
}

/* ---- helpers --------------------------------------------------------------- */

/*
 * Writes <tmp>/<name>.yaml: source "db" with the given connection string,
 * slot s_<name> and publication p_<name>, a file sink and one stream of
 * tables (the body of a YAML flow list).
 */
static void write_config(struct fixture *fx, const char *name, const char *conninfo,
                         const char *tables)
{
    fx->cfg = sp_test_asprintf("%s/%s.yaml", fx->tmp, name);
    fx->out = sp_test_asprintf("%s/%s.stdout", fx->tmp, name);
    fx->err = sp_test_asprintf("%s/%s.stderr", fx->tmp, name);
    sp_test_write_file(fx->cfg,
                       "sources:\n"
                       "  db:\n"
                       "    type: postgres\n"
                       "    connection: \"%s\"\n"
                       "    slot: s_%s\n"
                       "    publication: p_%s\n"
                       "    snapshot: never\n"
                       "sinks:\n"
                       "  out:\n"
                       "    type: file\n"
                       "    path: %s/%s.jsonl\n"
                       "streams:\n"
                       "  - name: s\n"
                       "    source: db\n"
                       "    tables: [%s]\n"
                       "    sink: out\n",
                       conninfo, name, name, fx->tmp, name, tables);
}

/*
 * Runs `siphon <command> -c cfg [extra]` and waits for its exit (a run
 * that is still going after WAIT_REFUSE_MS gets SIGKILL: it was meant to
 * refuse); returns the exit code (SP_TEST_PROC_TIMEOUT then) and reads its
 * output.
 */
static int run_siphon(struct fixture *fx, const char *command, const char *extra)
{
    sp_test_proc_free(fx->proc); /* the previous run's, if any */
    fx->proc = NULL;
    const char *argv[] = {sp_test_siphon_bin(), command, "-c", fx->cfg, extra, NULL};
    fx->proc = sp_test_proc_start(argv, fx->out, fx->err);
    int rc =
        sp_test_proc_wait(fx->proc, strcmp(command, "run") == 0 ? WAIT_REFUSE_MS : WAIT_EXIT_MS);
    free(fx->stdout_text);
    free(fx->stderr_text);
    fx->stdout_text = sp_test_read_file(fx->out, NULL);
    fx->stderr_text = sp_test_read_file(fx->err, NULL);
    if (fx->stdout_text == NULL) {
        fx->stdout_text = sp_test_asprintf("%s", "");
    }
    if (fx->stderr_text == NULL) {
        fx->stderr_text = sp_test_asprintf("%s", "");
    }
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
    return rc;
}

static void print_output(const struct fixture *fx)
{
    fprintf(stderr, "---- siphon stdout ----\n%s---- siphon stderr ----\n%s----\n", fx->stdout_text,
            fx->stderr_text);
}

static void assert_exit(struct fixture *fx, int rc, int want)
{
    if (rc != want) {
        print_output(fx);
        FAIL_MSG("siphon exited with %d, expected %d", rc, want);
    }
}

/* Fails, printing siphon's output, unless text contains needle. */
static void assert_has(struct fixture *fx, const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL) {
        print_output(fx);
        FAIL_MSG("siphon's output does not contain \"%s\"", needle);
    }
}

/* The line of text that contains needle, and its length; fails when there is none. */
static const char *line_with(struct fixture *fx, const char *text, const char *needle, int *len)
{
    const char *p = strstr(text, needle);
    if (p == NULL) {
        print_output(fx);
        FAIL_MSG("siphon's output has no line with \"%s\"", needle);
    }
    const char *start = p;
    while (start > text && start[-1] != '\n') {
        start--;
    }
    const char *end = strchr(p, '\n');
    *len = (int)(end != NULL ? (size_t)(end - start) : strlen(start));
    return start;
}

/* Whether the first len bytes of s contain what. */
static bool span_has(const char *s, int len, const char *what)
{
    size_t n = strlen(what);
    for (int i = 0; i + (int)n <= len; i++) {
        if (memcmp(s + i, what, n) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * The stdout line that contains needle starts with tag ("ok", "warn",
 * "FAIL") and contains each of the NULL-terminated texts in want.
 */
static void assert_line(struct fixture *fx, const char *needle, const char *tag,
                        const char *const *want)
{
    int len = 0;
    const char *line = line_with(fx, fx->stdout_text, needle, &len);
    bool ok = strncmp(line, tag, strlen(tag)) == 0 && line[strlen(tag)] == ' ';
    for (size_t i = 0; ok && want != NULL && want[i] != NULL; i++) {
        ok = span_has(line, len, want[i]);
    }
    if (!ok) {
        print_output(fx);
        FAIL_MSG("the line with \"%s\" is not a %s line with the expected text: %.*s", needle, tag,
                 len, line);
    }
}

/* The "hint:" line right after the stdout line that contains needle contains each of want. */
static void assert_hint(struct fixture *fx, const char *needle, const char *const *want)
{
    const char *p = strstr(fx->stdout_text, needle);
    const char *nl = p != NULL ? strchr(p, '\n') : NULL;
    if (nl == NULL || strncmp(nl + 1, "      hint: ", 12) != 0) {
        print_output(fx);
        FAIL_MSG("no hint line after \"%s\"", needle);
    }
    int len = 0;
    const char *hint = line_with(fx, nl + 1, "hint: ", &len);
    for (size_t i = 0; want[i] != NULL; i++) {
        if (!span_has(hint, len, want[i])) {
            print_output(fx);
            FAIL_MSG("the hint after \"%s\" does not contain \"%s\"", needle, want[i]);
        }
    }
}

#define TEXTS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void assert_no_secret(struct fixture *fx)
{
    if (strstr(fx->stdout_text, SECRET) != NULL || strstr(fx->stderr_text, SECRET) != NULL) {
        print_output(fx);
        FAIL_MSG("the password appears in siphon's output");
    }
}

static void assert_summary(struct fixture *fx, int failures)
{
    char *want = sp_test_asprintf(" warnings, %d failures\n", failures);
    assert_has(fx, fx->stdout_text, want);
    free(want);
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

/* Nothing on the server changed: no slot and no publication of that name. */
static void assert_nothing_created(PGconn *c, const char *name)
{
    assert_int_equal(
        sp_test_sql_long(c, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 's_%s'",
                         name),
        0);
    assert_int_equal(
        sp_test_sql_long(c, "SELECT count(*) FROM pg_publication WHERE pubname = 'p_%s'", name), 0);
}

/* ---- tests ------------------------------------------------------------------- */

static void check_passes_and_changes_nothing_when_all_is_in_place(void **state)
{
    struct fixture *fx = *state;
    sp_test_sql(fx->conn, "CREATE TABLE chk_ok_a (id int PRIMARY KEY, v text);"
                          "CREATE TABLE chk_ok_b (id int PRIMARY KEY)");
    write_config(fx, "chk_ok", sp_test_pg_conninfo(fx->pg), "public.chk_ok_a, public.chk_ok_b");
    assert_exit(fx, run_siphon(fx, "check", NULL), 0);
    assert_summary(fx, 0);
    assert_has(fx, fx->stdout_text, "ok    [config]");
    assert_has(fx, fx->stdout_text, "wal_level is logical");
    assert_has(fx, fx->stdout_text, "slot \"s_chk_ok\" will be created");
    assert_has(fx, fx->stdout_text, "publication \"p_chk_ok\" will be created");
    assert_has(fx, fx->stdout_text, "table public.chk_ok_a: replica identity primary key");
    assert_null(strstr(fx->stdout_text, "FAIL"));
    assert_null(strstr(fx->stdout_text, "warn "));
    assert_nothing_created(fx->conn, "chk_ok");
}

static void check_fails_on_wal_level_replica_with_the_fix(void **state)
{
    struct fixture *fx = *state;
    fx->conn_repl = sp_test_pg_connect(fx->pg_repl);
    sp_test_sql(fx->conn_repl, "CREATE TABLE chk_wal (id int PRIMARY KEY)");
    write_config(fx, "chk_wal", sp_test_pg_conninfo(fx->pg_repl), "public.chk_wal");
    assert_exit(fx, run_siphon(fx, "check", NULL), 1);
    assert_line(fx, "wal_level is replica", "FAIL", TEXTS("needs wal_level = logical"));
    assert_hint(fx, "wal_level is replica",
                TEXTS("ALTER SYSTEM SET wal_level = logical", "restart"));
    assert_summary(fx, 1);
}

static void run_exits_on_wal_level_replica_with_the_fix(void **state)
{
    struct fixture *fx = *state;
    fx->conn_repl = sp_test_pg_connect(fx->pg_repl);
    sp_test_sql(fx->conn_repl, "CREATE TABLE chk_walrun (id int PRIMARY KEY)");
    write_config(fx, "chk_walrun", sp_test_pg_conninfo(fx->pg_repl), "public.chk_walrun");
    /* Bounded by run_siphon's wait: a siphon that retries forever fails here. */
    assert_exit(fx, run_siphon(fx, "run", NULL), 1);
    assert_has(fx, fx->stderr_text, "wal_level = replica");
    assert_has(fx, fx->stderr_text, "ALTER SYSTEM SET wal_level = logical");
    assert_has(fx, fx->stderr_text, "restart");
    assert_nothing_created(fx->conn_repl, "chk_walrun");
}

static void check_fails_for_a_role_without_replication(void **state)
{
    struct fixture *fx = *state;
    sp_test_sql(fx->conn, "CREATE TABLE chk_role (id int PRIMARY KEY);"
                          "CREATE ROLE chk_norepl LOGIN;"
                          "GRANT SELECT ON chk_role TO chk_norepl");
    char *ci = sp_test_asprintf("host=127.0.0.1 port=%d user=chk_norepl dbname=postgres",
                                sp_test_pg_port(fx->pg));
    write_config(fx, "chk_role", ci, "public.chk_role");
    free(ci);
    assert_exit(fx, run_siphon(fx, "check", NULL), 1);
    assert_line(fx, "has neither REPLICATION nor SUPERUSER", "FAIL", TEXTS("\"chk_norepl\""));
    assert_hint(fx, "has neither REPLICATION nor SUPERUSER",
                TEXTS("ALTER ROLE chk_norepl WITH REPLICATION"));

    /* `siphon run` gives up with the same fix instead of retrying forever. */
    assert_exit(fx, run_siphon(fx, "run", NULL), 1);
    assert_has(fx, fx->stderr_text, "WITH REPLICATION");
    assert_nothing_created(fx->conn, "chk_role");
}

static void check_fails_naming_a_missing_table(void **state)
{
    struct fixture *fx = *state;
    sp_test_sql(fx->conn, "CREATE TABLE chk_there (id int PRIMARY KEY)");
    write_config(fx, "chk_miss", sp_test_pg_conninfo(fx->pg),
                 "public.chk_there, public.chk_not_there");
    assert_exit(fx, run_siphon(fx, "check", NULL), 1);
    assert_line(fx, "chk_not_there", "FAIL", TEXTS("table public.chk_not_there does not exist"));
    assert_line(fx, "table public.chk_there:", "ok", NULL);
    assert_summary(fx, 1);
}

static void check_warns_about_a_table_without_primary_key_and_passes(void **state)
{
    struct fixture *fx = *state;
    sp_test_sql(fx->conn, "CREATE TABLE chk_nopk (a int, b text)");
    write_config(fx, "chk_nopk", sp_test_pg_conninfo(fx->pg), "public.chk_nopk");
    assert_exit(fx, run_siphon(fx, "check", NULL), 0);
    assert_line(fx, "chk_nopk has no primary key", "warn", TEXTS("UPDATE and DELETE"));
    assert_hint(fx, "chk_nopk has no primary key",
                TEXTS("primary key", "ALTER TABLE public.chk_nopk REPLICA IDENTITY FULL"));
    assert_has(fx, fx->stdout_text, ", 1 warnings, 0 failures\n");
}

static void check_fails_on_a_publication_missing_a_table(void **state)
{
    struct fixture *fx = *state;
    sp_test_sql(fx->conn, "CREATE TABLE chk_pub_a (id int PRIMARY KEY);"
                          "CREATE TABLE chk_pub_b (id int PRIMARY KEY);"
                          "CREATE PUBLICATION p_chk_pub FOR TABLE chk_pub_a");
    write_config(fx, "chk_pub", sp_test_pg_conninfo(fx->pg), "public.chk_pub_a, public.chk_pub_b");
    assert_exit(fx, run_siphon(fx, "check", NULL), 1);
    assert_line(fx, "publication \"p_chk_pub\" exists", "FAIL",
                TEXTS("does not include \"public\".\"chk_pub_b\""));
    assert_hint(fx, "publication \"p_chk_pub\" exists",
                TEXTS("ALTER PUBLICATION \"p_chk_pub\" ADD TABLE \"public\".\"chk_pub_b\""));
    assert_summary(fx, 1);
    /* check only reads: the publication still lacks the table. */
    assert_int_equal(sp_test_sql_long(fx->conn, "SELECT count(*) FROM pg_publication_tables "
                                                "WHERE pubname = 'p_chk_pub'"),
                     1);
}

static void check_fails_on_a_slot_of_another_plugin(void **state)
{
    struct fixture *fx = *state;
    sp_test_sql(fx->conn, "CREATE TABLE chk_td (id int PRIMARY KEY)");
    sp_test_sql(fx->conn, "SELECT pg_create_logical_replication_slot('s_chk_td', 'test_decoding')");
    write_config(fx, "chk_td", sp_test_pg_conninfo(fx->pg), "public.chk_td");
    assert_exit(fx, run_siphon(fx, "check", NULL), 1);
    assert_line(fx, "uses output plugin", "FAIL",
                TEXTS("\"s_chk_td\" uses output plugin \"test_decoding\""));
    assert_hint(fx, "uses output plugin", TEXTS("pg_drop_replication_slot('s_chk_td')"));
    assert_summary(fx, 1);

    /* `siphon run` refuses the slot too, and leaves it alone. */
    assert_exit(fx, run_siphon(fx, "run", NULL), 1);
    assert_has(fx, fx->stderr_text, "uses output plugin \"test_decoding\"");
    assert_int_equal(sp_test_sql_long(fx->conn, "SELECT count(*) FROM pg_replication_slots "
                                                "WHERE slot_name = 's_chk_td' "
                                                "AND plugin = 'test_decoding'"),
                     1);
    sp_test_sql(fx->conn, "SELECT pg_drop_replication_slot('s_chk_td')");
}

static void check_exits_2_on_a_config_error(void **state)
{
    struct fixture *fx = *state;
    fx->cfg = sp_test_asprintf("%s/chk_bad.yaml", fx->tmp);
    fx->out = sp_test_asprintf("%s/chk_bad.stdout", fx->tmp);
    fx->err = sp_test_asprintf("%s/chk_bad.stderr", fx->tmp);
    sp_test_write_file(fx->cfg,
                       "sources:\n"
                       "  db:\n"
                       "    type: postgres\n"
                       "    connection: \"%s\"\n"
                       "sinks:\n"
                       "  out:\n"
                       "    type: file\n"
                       "    path: %s/chk_bad.jsonl\n"
                       "streams:\n"
                       "  - name: s\n"
                       "    source: db\n"
                       "    tables: [public.chk_bad]\n"
                       "    sink: nowhere\n",
                       sp_test_pg_conninfo(fx->pg), fx->tmp);
    assert_exit(fx, run_siphon(fx, "check", NULL), 2);
    assert_has(fx, fx->stderr_text, "chk_bad.yaml:13:");
    assert_has(fx, fx->stderr_text, "error:");
    assert_has(fx, fx->stderr_text, "nowhere");
    assert_null(strstr(fx->stdout_text, "ok    ["));
}

/*
 * Runs `siphon run --log-level debug` until its stderr contains needle
 * (or it exits), then stops it and reads its output; the exit code is not
 * checked.
 */
static void run_until_logged(struct fixture *fx, const char *needle)
{
    const char *argv[] = {sp_test_siphon_bin(), "run", "-c", fx->cfg, "--log-level", "debug", NULL};
    fx->proc = sp_test_proc_start(argv, fx->out, fx->err);
    struct file_wait w = {.path = fx->err, .needle = needle, .proc = fx->proc};
    bool logged = sp_test_wait_until(file_ready, &w, WAIT_EXIT_MS);
    sp_test_proc_signal(fx->proc, SIGTERM);
    sp_test_proc_wait(fx->proc, WAIT_EXIT_MS);
    free(fx->stdout_text);
    free(fx->stderr_text);
    fx->stdout_text = sp_test_read_file(fx->out, NULL);
    fx->stderr_text = sp_test_read_file(fx->err, NULL);
    assert_non_null(fx->stdout_text);
    assert_non_null(fx->stderr_text);
    if (!logged) {
        print_output(fx);
        FAIL_MSG("siphon run did not log \"%s\"", needle);
    }
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
}

static void passwords_in_connection_strings_are_never_printed(void **state)
{
    struct fixture *fx = *state;
    int port = sp_test_pg_port(fx->pg);
    sp_test_sql(fx->conn, "CREATE TABLE chk_pw (id int PRIMARY KEY)");

    /* Trust auth ignores the password: the check passes and prints the connection. */
    char *ci = sp_test_asprintf(
        "host=127.0.0.1 port=%d user=postgres password=" SECRET " dbname=postgres", port);
    write_config(fx, "chk_pw", ci, "public.chk_pw");
    free(ci);
    assert_exit(fx, run_siphon(fx, "check", NULL), 0);
    assert_no_secret(fx);
    test_cleanup(state);

    /* Connection errors quote the connection string. */
    const char *bad[] = {
        "host=127.0.0.1 port=%d user=postgres password=" SECRET " dbname=chk_no_such_db",
        "host=127.0.0.1 port=%d user=postgres password='" SECRET " x' dbname=chk_no_such_db",
        "postgresql://postgres:" SECRET "@127.0.0.1:%d/chk_no_such_db",
        "password=" SECRET " host=127.0.0.1 port=%d user=postgres dbname=chk_no_such_db",
        "host=127.0.0.1 port=%d user=postgres password = " SECRET " dbname=chk_no_such_db",
        "postgresql://postgres@127.0.0.1:%d/chk_no_such_db?password=" SECRET,
        "postgresql://postgres@127.0.0.1:%d/chk_no_such_db?connect_timeout=5&password=" SECRET
        "&application_name=x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *bci = sp_test_asprintf(bad[i], port);
        char name[32];
        snprintf(name, sizeof(name), "chk_pw%zu", i);
        write_config(fx, name, bci, "public.chk_pw");
        free(bci);
        assert_exit(fx, run_siphon(fx, "check", NULL), 1);
        assert_has(fx, fx->stdout_text, "chk_no_such_db");
        assert_no_secret(fx);
        run_until_logged(fx, "chk_no_such_db");
        assert_no_secret(fx);
        test_cleanup(state);
    }

    /* A config error on the connection's line shows that line, masked. */
    fx->cfg = sp_test_asprintf("%s/chk_pwcfg.yaml", fx->tmp);
    fx->out = sp_test_asprintf("%s/chk_pwcfg.stdout", fx->tmp);
    fx->err = sp_test_asprintf("%s/chk_pwcfg.stderr", fx->tmp);
    unsetenv("SP_CHK_UNSET_VAR");
    sp_test_write_file(fx->cfg,
                       "sources:\n"
                       "  db:\n"
                       "    type: postgres\n"
                       "    connection: \"host=127.0.0.1 password=" SECRET
                       " port=${SP_CHK_UNSET_VAR}\"\n"
                       "sinks:\n"
                       "  out:\n"
                       "    type: file\n"
                       "    path: %s/chk_pwcfg.jsonl\n"
                       "streams:\n"
                       "  - name: s\n"
                       "    source: db\n"
                       "    tables: [public.chk_pw]\n"
                       "    sink: out\n",
                       fx->tmp);
    assert_exit(fx, run_siphon(fx, "check", NULL), 2);
    assert_has(fx, fx->stderr_text, "chk_pwcfg.yaml:4:");
    assert_has(fx, fx->stderr_text, "SP_CHK_UNSET_VAR");
    assert_no_secret(fx);

    /* A streaming run with debug logging. */
    test_cleanup(state);
    ci = sp_test_asprintf(
        "host=127.0.0.1 port=%d user=postgres password=" SECRET " dbname=postgres", port);
    write_config(fx, "chk_pwrun", ci, "public.chk_pw");
    free(ci);
    const char *argv[] = {sp_test_siphon_bin(), "run", "-c", fx->cfg, "--log-level", "debug", NULL};
    fx->proc = sp_test_proc_start(argv, fx->out, fx->err);
    char *jsonl = sp_test_asprintf("%s/chk_pwrun.jsonl", fx->tmp);
    struct file_wait w = {.path = fx->err, .needle = "streaming from slot", .proc = fx->proc};
    bool streaming =
        sp_test_wait_until(file_ready, &w, WAIT_EXIT_MS) && sp_test_proc_alive(fx->proc);
    if (streaming) {
        sp_test_sql(fx->conn, "INSERT INTO chk_pw VALUES (1)");
        struct file_wait ev = {.path = jsonl, .lines = 1, .proc = fx->proc};
        streaming =
            sp_test_wait_until(file_ready, &ev, WAIT_EXIT_MS) && sp_test_count_lines(jsonl) == 1;
    }
    free(jsonl);
    sp_test_proc_signal(fx->proc, SIGTERM);
    int rc = sp_test_proc_wait(fx->proc, WAIT_EXIT_MS);
    fx->stdout_text = sp_test_read_file(fx->out, NULL);
    fx->stderr_text = sp_test_read_file(fx->err, NULL);
    assert_non_null(fx->stdout_text);
    assert_non_null(fx->stderr_text);
    assert_true(streaming);
    assert_exit(fx, rc, 0);
    assert_has(fx, fx->stderr_text, "streaming from slot");
    assert_no_secret(fx);
    sp_test_sql(fx->conn, "SELECT pg_drop_replication_slot('s_chk_pwrun')");
}

/*
 * A config error on the connection's line shows the line. When the value
 * holds a ${...} reference it is shown as written, with only the password
 * masked; a password with a quote (written \" in a YAML double-quoted
 * string) must be masked whole, in keyword and URI form.
 */
static void password_with_a_quote_is_masked_in_config_errors(void **state)
{
    struct fixture *fx = *state;
    static const char *const conns[] = {
        "host=127.0.0.1 password=Se\\\"cret123 port=${SP_CHK_UNSET_VAR}",
        "postgresql://postgres:Se\\\"cret123@127.0.0.1/postgres?port=${SP_CHK_UNSET_VAR}",
        "postgresql://postgres:Se'cret123@127.0.0.1/postgres?port=${SP_CHK_UNSET_VAR}",
    };
    unsetenv("SP_CHK_UNSET_VAR");
    int leaks = 0;
    for (size_t i = 0; i < sizeof(conns) / sizeof(conns[0]); i++) {
        test_cleanup(state);
        char name[32];
        snprintf(name, sizeof(name), "chk_pwq%zu", i);
        write_config(fx, name, conns[i], "public.chk_pwq");
        assert_exit(fx, run_siphon(fx, "check", NULL), 2);
        assert_has(fx, fx->stderr_text, "SP_CHK_UNSET_VAR is not set");
        assert_has(fx, fx->stderr_text, "    4 |     connection: ");
        if (strstr(fx->stderr_text, "cret123") != NULL) {
            print_output(fx);
            fprintf(stderr, "the password of %s shows in the config error\n", conns[i]);
            leaks++;
        }
    }
    assert_int_equal(leaks, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(check_passes_and_changes_nothing_when_all_is_in_place,
                                  test_cleanup),
        cmocka_unit_test_teardown(check_fails_on_wal_level_replica_with_the_fix, test_cleanup),
        cmocka_unit_test_teardown(run_exits_on_wal_level_replica_with_the_fix, test_cleanup),
        cmocka_unit_test_teardown(check_fails_for_a_role_without_replication, test_cleanup),
        cmocka_unit_test_teardown(check_fails_naming_a_missing_table, test_cleanup),
        cmocka_unit_test_teardown(check_warns_about_a_table_without_primary_key_and_passes,
                                  test_cleanup),
        cmocka_unit_test_teardown(check_fails_on_a_publication_missing_a_table, test_cleanup),
        cmocka_unit_test_teardown(check_fails_on_a_slot_of_another_plugin, test_cleanup),
        cmocka_unit_test_teardown(check_exits_2_on_a_config_error, test_cleanup),
        cmocka_unit_test_teardown(passwords_in_connection_strings_are_never_printed, test_cleanup),
        cmocka_unit_test_teardown(password_with_a_quote_is_masked_in_config_errors, test_cleanup),
    };
    return SP_TEST_RUN_GROUP("check", tests, group_setup, group_teardown);
}
