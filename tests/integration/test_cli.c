// SPDX-License-Identifier: Apache-2.0
/*
 * siphon's command line as a user meets it: `version`, usage errors and
 * their exit code 2, config errors reported compiler-style with a
 * did-you-mean hint, ${NAME} / ${file:PATH} / $$ substitution end to end,
 * and `siphon demo`, which runs its own PostgreSQL (as the postgres user
 * when started as root) and must leave neither its directory nor a server
 * process behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <glob.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/harness.h"

/* fail_msg jumps out of the test; abort(), never reached, tells analyzers it does not return. */
#define FAIL_MSG(...)          \
    do {                       \
        fail_msg(__VA_ARGS__); \
        abort();               \
    } while (0)

#define WAIT_EXIT_MS   60000
#define WAIT_EVENTS_MS 60000
/* The demo runs 8 s, plus initdb and the server's start and stop (slow under ASan). */
#define WAIT_DEMO_MS 180000

struct fixture {
    struct sp_pg *pg;
    PGconn *conn;
    char *tmp;
    /* Per test, released by test_cleanup even when the test fails: */
    struct sp_proc *proc;
    char *out;
    char *err;
    char *stdout_text;
    char *stderr_text;
    char **lines;
    glob_t demo_before;
    bool have_demo_before;
};

static int group_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    *state = fx;
    fx->tmp = sp_test_tmpdir("cli");
    struct sp_pg_opts opts = {.tag = "pg-cli", .extra_conf = NULL};
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
    free(fx->out);
    free(fx->err);
    free(fx->stdout_text);
    free(fx->stderr_text);
    fx->out = fx->err = fx->stdout_text = fx->stderr_text = NULL;
    sp_test_free_lines(fx->lines);
    fx->lines = NULL;
    if (fx->have_demo_before) {
        globfree(&fx->demo_before);
        fx->have_demo_before = false;
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
    PQfinish(fx->conn);
    sp_test_pg_stop(fx->pg);
    sp_test_tmpdir_cleanup(fx->tmp);
    free(fx);
    return 0;
}

/* ---- helpers --------------------------------------------------------------- */

static char *path_in(const struct fixture *fx, const char *name)
{
    return sp_test_asprintf("%s/%s", fx->tmp, name);
}

static void read_output(struct fixture *fx)
{
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
}

static void print_output(const struct fixture *fx)
{
    fprintf(stderr, "---- siphon stdout ----\n%.20000s\n---- siphon stderr ----\n%.20000s\n----\n",
            fx->stdout_text != NULL ? fx->stdout_text : "",
            fx->stderr_text != NULL ? fx->stderr_text : "");
}

/* Runs siphon with args (NULL-terminated, after the binary) to its exit; returns the exit code. */
static int run_siphon(struct fixture *fx, const char *name, const char *const *args)
{
    const char *argv[16] = {sp_test_siphon_bin()};
    size_t n = 1;
    for (size_t i = 0; args[i] != NULL && n + 1 < sizeof(argv) / sizeof(argv[0]); i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    sp_test_proc_free(fx->proc); /* the previous run's, if any */
    fx->proc = NULL;
    free(fx->out);
    free(fx->err);
    fx->out = sp_test_asprintf("%s/%s.stdout", fx->tmp, name);
    fx->err = sp_test_asprintf("%s/%s.stderr", fx->tmp, name);
    fx->proc = sp_test_proc_start(argv, fx->out, fx->err);
    int rc = sp_test_proc_wait(fx->proc, WAIT_EXIT_MS);
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
    read_output(fx);
    return rc;
}

static void assert_exit(struct fixture *fx, int rc, int want)
{
    if (rc != want) {
        print_output(fx);
        FAIL_MSG("siphon exited with %d, expected %d", rc, want);
    }
}

static void assert_has(struct fixture *fx, const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL) {
        print_output(fx);
        FAIL_MSG("siphon's output does not contain \"%s\"", needle);
    }
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

/* ---- version and usage ------------------------------------------------------- */

static void version_prints_the_version(void **state)
{
    struct fixture *fx = *state;
    const char *args[] = {"version", NULL};
    assert_exit(fx, run_siphon(fx, "version", args), 0);
    assert_string_equal(fx->stdout_text, "siphon " SP_VERSION "\n");
    assert_string_equal(fx->stderr_text, "");
}

static void usage_errors_exit_2_with_usage(void **state)
{
    struct fixture *fx = *state;
    const char *unknown[] = {"frobnicate", NULL};
    assert_exit(fx, run_siphon(fx, "unknown", unknown), 2);
    assert_has(fx, fx->stderr_text, "unknown command \"frobnicate\"");
    assert_has(fx, fx->stderr_text, "usage: siphon <command>");
    assert_string_equal(fx->stdout_text, "");

    const char *none[] = {NULL};
    assert_exit(fx, run_siphon(fx, "none", none), 2);
    assert_has(fx, fx->stderr_text, "usage: siphon <command>");

    const char *no_config[] = {"run", NULL};
    assert_exit(fx, run_siphon(fx, "noconfig", no_config), 2);
    assert_has(fx, fx->stderr_text, "-c");
    assert_string_equal(fx->stdout_text, "");

    const char *check_no_config[] = {"check", NULL};
    assert_exit(fx, run_siphon(fx, "checknoconfig", check_no_config), 2);
    assert_has(fx, fx->stderr_text, "-c");

    const char *bad_flag[] = {"run", "--no-such-flag", NULL};
    assert_exit(fx, run_siphon(fx, "badflag", bad_flag), 2);
    assert_has(fx, fx->stderr_text, "usage: siphon <command>");

    char *missing = path_in(fx, "does-not-exist.yaml");
    const char *missing_file[] = {"run", "-c", missing, NULL};
    assert_exit(fx, run_siphon(fx, "missingfile", missing_file), 2);
    assert_has(fx, fx->stderr_text, "does-not-exist.yaml");
    free(missing);

    const char *help[] = {"--help", NULL};
    assert_exit(fx, run_siphon(fx, "help", help), 0);
    assert_has(fx, fx->stdout_text, "usage: siphon <command>");
}

static void unknown_option_is_reported_at_file_line_col_with_a_hint(void **state)
{
    struct fixture *fx = *state;
    char *cfg = path_in(fx, "typo.yaml");
    sp_test_write_file(cfg,
                       "sources:\n"
                       "  db:\n"
                       "    type: postgres\n"
                       "    connection: \"%s\"\n"
                       "sinks:\n"
                       "  out:\n"
                       "    type: file\n"
                       "    path: %s/typo.jsonl\n"
                       "    fsnyc: false\n"
                       "streams:\n"
                       "  - name: s\n"
                       "    source: db\n"
                       "    tables: [public.cli_typo]\n"
                       "    sink: out\n",
                       sp_test_pg_conninfo(fx->pg), fx->tmp);
    const char *args[] = {"run", "-c", cfg, NULL};
    assert_exit(fx, run_siphon(fx, "typo", args), 2);
    char *want = sp_test_asprintf("%s:9:5: error:", cfg);
    assert_has(fx, fx->stderr_text, want);
    free(want);
    assert_has(fx, fx->stderr_text, "unknown option \"fsnyc\"");
    assert_has(fx, fx->stderr_text, "    fsnyc: false\n");
    assert_has(fx, fx->stderr_text, "did you mean \"fsync\"?");
    /* Nothing was started: no slot. */
    assert_int_equal(sp_test_sql_long(fx->conn, "SELECT count(*) FROM pg_replication_slots"), 0);
    free(cfg);
}

/* ---- substitution --------------------------------------------------------------- */

static void env_and_file_substitution_work_end_to_end(void **state)
{
    struct fixture *fx = *state;
    sp_test_sql(fx->conn, "CREATE TABLE cli_env (id int PRIMARY KEY, v text)");
    char *cfg = path_in(fx, "env.yaml");
    char *slot_file = path_in(fx, "slot-name.txt");
    char *jsonl = path_in(fx, "env.jsonl");
    setenv("SP_CLI_TEST_DSN", sp_test_pg_conninfo(fx->pg), 1);
    sp_test_write_file(slot_file, "s_cli_from_file\n");
    sp_test_write_file(cfg,
                       "sources:\n"
                       "  db:\n"
                       "    type: postgres\n"
                       "    connection: \"${SP_CLI_TEST_DSN}\"\n"
                       "    slot: \"${file:slot-name.txt}\"\n"
                       "    publication: \"p_cli$$env\"\n"
                       "    snapshot: never\n"
                       "sinks:\n"
                       "  out:\n"
                       "    type: file\n"
                       "    path: %s\n"
                       "streams:\n"
                       "  - name: s\n"
                       "    source: db\n"
                       "    tables: [public.cli_env]\n"
                       "    sink: out\n",
                       jsonl);
    fx->out = path_in(fx, "env.stdout");
    fx->err = path_in(fx, "env.stderr");
    const char *argv[] = {sp_test_siphon_bin(), "run", "-c", cfg, NULL};
    fx->proc = sp_test_proc_start(argv, fx->out, fx->err);
    unsetenv("SP_CLI_TEST_DSN");
    struct file_wait w = {.path = fx->err, .needle = "streaming from slot", .proc = fx->proc};
    if (!sp_test_wait_until(file_ready, &w, WAIT_EVENTS_MS) || !sp_test_proc_alive(fx->proc)) {
        read_output(fx);
        print_output(fx);
        FAIL_MSG("siphon did not start streaming");
    }
    sp_test_sql(fx->conn, "INSERT INTO cli_env VALUES (1, 'from env')");
    struct file_wait ev = {.path = jsonl, .lines = 1, .proc = fx->proc};
    bool got =
        sp_test_wait_until(file_ready, &ev, WAIT_EVENTS_MS) && sp_test_count_lines(jsonl) == 1;
    sp_test_proc_signal(fx->proc, SIGTERM);
    int rc = sp_test_proc_wait(fx->proc, WAIT_EXIT_MS);
    read_output(fx);
    if (!got) {
        print_output(fx);
        FAIL_MSG("the insert was not streamed");
    }
    assert_exit(fx, rc, 0);
    fx->lines = sp_test_read_lines(jsonl, NULL);
    char *after = sp_test_json_get(fx->lines[0], "after");
    assert_string_equal(after, "{\"id\":1,\"v\":\"from env\"}");
    free(after);

    /* The slot name came from the file (newline dropped), $$ made a single $. */
    assert_int_equal(sp_test_sql_long(fx->conn, "SELECT count(*) FROM pg_replication_slots "
                                                "WHERE slot_name = 's_cli_from_file'"),
                     1);
    assert_int_equal(sp_test_sql_long(fx->conn, "SELECT count(*) FROM pg_publication "
                                                "WHERE pubname = 'p_cli$env'"),
                     1);
    assert_has(fx, fx->stderr_text, "streaming from slot \"s_cli_from_file\"");
    sp_test_sql(fx->conn, "SELECT pg_drop_replication_slot('s_cli_from_file')");

    /* An unset variable is a config error pointing at the value. */
    const char *args[] = {"check", "-c", cfg, NULL};
    assert_exit(fx, run_siphon(fx, "env_unset", args), 2);
    char *want = sp_test_asprintf("%s:4:", cfg);
    assert_has(fx, fx->stderr_text, want);
    free(want);
    assert_has(fx, fx->stderr_text, "SP_CLI_TEST_DSN");
    free(cfg);
    free(slot_file);
    free(jsonl);
}

/* ---- demo ------------------------------------------------------------------------ */

/* Whether path starts with dir followed by '/' or its end. */
static bool under_dir(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/' || path[n] == ' ');
}

/*
 * A process whose working directory is under dir or whose command line
 * names it (the postmaster runs in its data directory, its children too),
 * or -1. uid (if not NULL) gets its owner.
 */
static int find_process_in(const char *dir, uid_t *uid)
{
    DIR *proc = opendir("/proc");
    if (proc == NULL) {
        return -1;
    }
    int found = -1;
    struct dirent *de;
    while (found < 0 && (de = readdir(proc)) != NULL) {
        char *end = NULL;
        long pid = strtol(de->d_name, &end, 10);
        if (end == de->d_name || *end != '\0' || pid == getpid()) {
            continue;
        }
        char path[64];
        char target[PATH_MAX];
        snprintf(path, sizeof(path), "/proc/%ld/cwd", pid);
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        bool match = false;
        if (n > 0) {
            target[n] = '\0';
            match = under_dir(target, dir);
        }
        if (!match) {
            snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
            size_t len = 0;
            char *cmd = sp_test_read_file(path, &len);
            for (size_t i = 0; cmd != NULL && i < len; i++) {
                if (cmd[i] == '\0') {
                    cmd[i] = ' ';
                }
            }
            match = cmd != NULL && strstr(cmd, dir) != NULL;
            free(cmd);
        }
        if (match && sp_test_pid_alive((int)pid)) {
            snprintf(path, sizeof(path), "/proc/%ld", pid);
            struct stat st;
            if (uid != NULL && stat(path, &st) == 0) {
                *uid = st.st_uid;
            }
            found = (int)pid;
        }
    }
    closedir(proc);
    return found;
}

struct demo_wait {
    const char *dir;
    int pid;
    uid_t uid;
    struct sp_proc *proc;
};

static bool demo_server_seen(void *ctx)
{
    struct demo_wait *w = ctx;
    w->pid = find_process_in(w->dir, &w->uid);
    return w->pid > 0 || !sp_test_proc_alive(w->proc);
}

struct pid_wait {
    const char *dir;
};

static bool demo_server_gone(void *ctx)
{
    return find_process_in(((struct pid_wait *)ctx)->dir, NULL) < 0;
}

/* Best effort after a failure: stop the demo's server so that it does not outlive the test. */
static void demo_stop_leftover(const char *dir)
{
    char *pidfile = sp_test_asprintf("%s/data/postmaster.pid", dir);
    char *text = sp_test_read_file(pidfile, NULL);
    long pid = text != NULL ? strtol(text, NULL, 10) : 0;
    if (pid > 1) {
        kill((pid_t)pid, SIGQUIT);
        fprintf(stderr, "stopped the demo's leftover server %ld\n", pid);
    }
    free(text);
    free(pidfile);
}

/* Counts the pretty output's header lines "<op_word> <table> ...", checking the event below each.
 */
static int count_pretty(struct fixture *fx, const char *op_word, const char *table, char op)
{
    int count = 0;
    size_t wlen = strlen(op_word);
    for (size_t i = 0; fx->lines[i] != NULL; i++) {
        const char *l = fx->lines[i];
        if (strncmp(l, op_word, wlen) != 0) {
            continue;
        }
        const char *p = l + wlen;
        while (*p == ' ') {
            p++;
        }
        if (strncmp(p, table, strlen(table)) != 0 || p[strlen(table)] != ' ') {
            continue;
        }
        /* The next line is the event, indented. */
        const char *ev = fx->lines[i + 1];
        if (ev == NULL || strncmp(ev, "  {", 3) != 0) {
            print_output(fx);
            FAIL_MSG("no event line after \"%s\"", l);
        }
        char *got_op = sp_test_json_get(ev + 2, "op");
        char *got_table = sp_test_json_get(ev + 2, "source.table");
        bool ok = got_op != NULL && got_op[0] == op && got_op[1] == '\0' && got_table != NULL &&
                  strcmp(got_table, strchr(table, '.') + 1) == 0;
        free(got_op);
        free(got_table);
        if (!ok) {
            FAIL_MSG("event does not match its header \"%s\": %s", l, ev);
        }
        count++;
    }
    return count;
}

/* Waits until the demo says where its cluster is and copies that directory to dir. */
static void demo_wait_dir(struct fixture *fx, char *dir, size_t size)
{
    struct file_wait w = {
        .path = fx->err, .needle = "cluster in /tmp/siphon-demo-", .proc = fx->proc};
    bool announced = sp_test_wait_until(file_ready, &w, WAIT_EXIT_MS);
    read_output(fx);
    const char *at = strstr(fx->stderr_text, "cluster in /tmp/siphon-demo-");
    if (!announced || at == NULL) {
        print_output(fx);
        FAIL_MSG("the demo did not say where its cluster is");
    }
    at += strlen("cluster in ");
    size_t n = strcspn(at, " \n");
    assert_true(n < size);
    memcpy(dir, at, n);
    dir[n] = '\0';
}

/* Whether a /tmp/siphon-demo-* exists that did not before the test; copies its name to out. */
static bool demo_new_dir(const struct fixture *fx, char *out, size_t size)
{
    glob_t after;
    bool found = false;
    if (glob("/tmp/siphon-demo-*", 0, NULL, &after) != 0) {
        return false;
    }
    for (size_t i = 0; i < after.gl_pathc && !found; i++) {
        bool old = false;
        for (size_t j = 0; fx->have_demo_before && j < fx->demo_before.gl_pathc; j++) {
            old = old || strcmp(after.gl_pathv[i], fx->demo_before.gl_pathv[j]) == 0;
        }
        if (!old) {
            snprintf(out, size, "%s", after.gl_pathv[i]);
            found = true;
        }
    }
    globfree(&after);
    return found;
}

/* After the demo: no process of its server, no directory of its own under /tmp. */
static void demo_assert_nothing_left(struct fixture *fx, const char *dir)
{
    /* Nothing left behind: the server stopped, its directory gone. */
    struct pid_wait pw = {.dir = dir};
    if (!sp_test_wait_until(demo_server_gone, &pw, 5000)) {
        int pid = find_process_in(dir, NULL);
        demo_stop_leftover(dir);
        FAIL_MSG("process %d of the demo's server is still running", pid);
    }
    struct stat st;
    assert_int_not_equal(stat(dir, &st), 0);
    char left[PATH_MAX];
    if (demo_new_dir(fx, left, sizeof(left))) {
        FAIL_MSG("the demo left %s behind", left);
    }
}

/*
 * Runs `siphon demo` with args; with sig, sends it times times back to back
 * (SIGINT: Ctrl-C; SIGTERM twice: as `timeout` does, to the process and its
 * group) once an order update is out. Then checks: exit code 0, the server
 * ran as the postgres user when we are root, inserts and updates of both
 * tables in the output, and nothing left behind.
 */
static void demo_run(struct fixture *fx, const char *name, const char *const *args, int sig,
                     int times)
{
    fx->have_demo_before = glob("/tmp/siphon-demo-*", 0, NULL, &fx->demo_before) == 0;
    fx->out = sp_test_asprintf("%s/%s.stdout", fx->tmp, name);
    fx->err = sp_test_asprintf("%s/%s.stderr", fx->tmp, name);
    const char *argv[16] = {sp_test_siphon_bin(), "demo"};
    size_t na = 2;
    for (size_t i = 0; args[i] != NULL && na + 1 < sizeof(argv) / sizeof(argv[0]); i++) {
        argv[na++] = args[i];
    }
    argv[na] = NULL;
    fx->proc = sp_test_proc_start(argv, fx->out, fx->err);

    char dir[64];
    demo_wait_dir(fx, dir, sizeof(dir));

    /* While it runs, its server is found by the same scan that later must find nothing. */
    struct demo_wait dw = {.dir = dir, .pid = -1, .proc = fx->proc};
    bool seen = sp_test_wait_until(demo_server_seen, &dw, WAIT_EXIT_MS) && dw.pid > 0;

    if (sig != 0) {
        struct file_wait upd = {
            .path = fx->out, .needle = "\nupdate   public.orders ", .proc = fx->proc};
        sp_test_wait_until(file_ready, &upd, WAIT_EVENTS_MS);
        for (int i = 0; i < times; i++) {
            if (i > 0) {
                usleep(100 * 1000); /* handled one by one, not merged into one pending signal */
            }
            sp_test_proc_signal(fx->proc, sig);
        }
    }
    int rc = sp_test_proc_wait(fx->proc, WAIT_DEMO_MS);
    read_output(fx);
    if (rc != 0) {
        sp_test_proc_free(fx->proc);
        fx->proc = NULL;
        demo_stop_leftover(dir);
        print_output(fx);
        FAIL_MSG("siphon demo exited with %d, expected 0", rc);
    }
    if (!seen) {
        print_output(fx);
        FAIL_MSG("no process of the demo's server was ever found under %s", dir);
    }
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        assert_non_null(pw);
        assert_int_equal(dw.uid, pw->pw_uid);
    }

    /* Events of both tables, inserts and updates. */
    fx->lines = sp_test_read_lines(fx->out, NULL);
    int cust = count_pretty(fx, "insert", "public.customers", 'c');
    int ord = count_pretty(fx, "insert", "public.orders", 'c');
    int upd = count_pretty(fx, "update", "public.orders", 'u');
    if (cust < 1 || ord < 1 || upd < 1) {
        print_output(fx);
        FAIL_MSG("demo output: %d customer inserts, %d order inserts, %d order updates", cust, ord,
                 upd);
    }

    demo_assert_nothing_left(fx, dir);
    assert_has(fx, fx->stderr_text, "removed the private cluster");
}

static void demo_streams_and_cleans_up_after_itself(void **state)
{
    const char *args[] = {"--duration", "8", "--rate", "20", NULL};
    demo_run(*state, "demo", args, 0, 0);
}

static void demo_interrupted_cleans_up_too(void **state)
{
    const char *args[] = {"--rate", "20", NULL};
    demo_run(*state, "demo_int", args, SIGINT, 1);
}

/* The same stop delivered twice at once (`timeout`, a supervisor signalling the group) drains. */
static void demo_terminated_twice_at_once_cleans_up(void **state)
{
    const char *args[] = {"--rate", "20", NULL};
    demo_run(*state, "demo_term2", args, SIGTERM, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(version_prints_the_version, test_cleanup),
        cmocka_unit_test_teardown(usage_errors_exit_2_with_usage, test_cleanup),
        cmocka_unit_test_teardown(unknown_option_is_reported_at_file_line_col_with_a_hint,
                                  test_cleanup),
        cmocka_unit_test_teardown(env_and_file_substitution_work_end_to_end, test_cleanup),
        cmocka_unit_test_teardown(demo_streams_and_cleans_up_after_itself, test_cleanup),
        cmocka_unit_test_teardown(demo_interrupted_cleans_up_too, test_cleanup),
        cmocka_unit_test_teardown(demo_terminated_twice_at_once_cleans_up, test_cleanup),
    };
    return SP_TEST_RUN_GROUP("cli", tests, group_setup, group_teardown);
}
