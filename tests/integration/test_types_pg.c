// SPDX-License-Identifier: Apache-2.0
/*
 * Value conversion of the json format against a real PostgreSQL 15, as a
 * golden test: tests/golden/types.sql covers every row of DESIGN.md's type
 * table with edge values; siphon's output for it, with the volatile members
 * normalised, must equal tests/golden/types.json.jsonl line by line
 * (SP_UPDATE_GOLDEN=1 rewrites that file instead). The same SQL against a
 * server whose TimeZone, DateStyle, IntervalStyle, extra_float_digits and
 * bytea_output differ (in postgresql.conf, for the database and for the
 * role) must give byte-for-byte the same output, because siphon pins them on
 * its replication connection. A few fields are also asserted one by one, so
 * that a broken conversion reads plainly in the failure message. Last, a
 * database whose client_encoding, search_path and quote_all_identifiers
 * differ must not change text or regclass/regtype values either.
 *
 * Op types, ids, transactions and TOAST are covered by test_stream.c; this
 * file only looks at values.
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

#include "lib/harness.h"

/* Bounds for waits that only run out when something is wrong (ASan builds are slow). */
#define WAIT_START_MS  60000
#define WAIT_EVENTS_MS 60000
#define WAIT_EXIT_MS   60000

/* The line in types.sql between the schema and the changes siphon must stream. */
#define CHANGES_MARKER "\n-- @changes\n"
/* Prefix of the logical decoding message that marks the end of the changes. */
#define END_PREFIX "siphon-golden-end"
/* Events types.sql produces: 10 + 3 inserts, 2 updates, 2 deletes. */
#define TYPES_EVENTS 17

/* Session settings of the second server, its database and its role, all unlike siphon's. */
static const char *const other_settings[] = {
    "TimeZone='Asia/Kolkata'", "DateStyle='SQL, DMY'",  "IntervalStyle='sql_standard'",
    "extra_float_digits=0",    "bytea_output='escape'", NULL,
};

struct fixture {
    struct sp_pg *pg;    /* defaults */
    struct sp_pg *other; /* other_settings */
    char *tmp;
    char *schema_sql;  /* types.sql up to the marker */
    char *changes_sql; /* after it */
    char **golden;     /* normalised output of the default server, once a test got it */
    size_t ngolden;
    /* Per test, released by test_cleanup even when the test fails: */
    PGconn *conn;
    struct sp_proc *proc;
    char *out;
    char *err;
    char **lines;
    size_t nlines;
};

static char *source_path(const char *rel)
{
    const char *dir = getenv("SP_SOURCE_DIR");
    if (dir == NULL || *dir == '\0') {
        fail_msg("SP_SOURCE_DIR is not set (ctest sets it to the repository root)");
    }
    return sp_test_asprintf("%s/%s", dir, rel);
}

static bool update_golden(void)
{
    const char *v = getenv("SP_UPDATE_GOLDEN");
    return v != NULL && strcmp(v, "1") == 0;
}

static int group_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    *state = fx;
    fx->tmp = sp_test_tmpdir("types");

    char *path = source_path("tests/golden/types.sql");
    char *sql = sp_test_read_file(path, NULL);
    if (sql == NULL) {
        fail_msg("cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    free(path);
    char *mark = strstr(sql, CHANGES_MARKER);
    if (mark == NULL) {
        free(sql);
        fail_msg("tests/golden/types.sql has no line \"-- @changes\"");
        return -1;
    }
    *mark = '\0';
    fx->changes_sql = sp_test_asprintf("%s", mark + strlen(CHANGES_MARKER));
    fx->schema_sql = sql;

    struct sp_pg_opts opts = {.tag = "pg-types", .extra_conf = NULL};
    fx->pg = sp_test_pg_start(&opts);
    struct sp_pg_opts other = {.tag = "pg-types-other", .extra_conf = other_settings};
    fx->other = sp_test_pg_start(&other);
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
    PQfinish(fx->conn);
    fx->conn = NULL;
    free(fx->out);
    free(fx->err);
    fx->out = fx->err = NULL;
    sp_test_free_lines(fx->lines);
    fx->lines = NULL;
    fx->nlines = 0;
    return 0;
}

static int group_teardown(void **state)
{
    struct fixture *fx = *state;
    if (fx == NULL) {
        return 0;
    }
    test_cleanup(state);
    sp_test_free_lines(fx->golden);
    sp_test_pg_stop(fx->other);
    sp_test_pg_stop(fx->pg);
    sp_test_tmpdir_cleanup(fx->tmp);
    free(fx->schema_sql);
    free(fx->changes_sql);
    free(fx);
    return 0;
}

/* ---- running siphon ------------------------------------------------------ */

/* Prints siphon's stderr and output file, then fails the test with msg. */
static void siphon_fail(struct fixture *fx, const char *msg)
{
    char *err = fx->err != NULL ? sp_test_read_file(fx->err, NULL) : NULL;
    char *out = fx->out != NULL ? sp_test_read_file(fx->out, NULL) : NULL;
    fprintf(stderr, "---- siphon stderr ----\n%s\n---- siphon output ----\n%.20000s\n----\n",
            err != NULL ? err : "(none)", out != NULL ? out : "(none)");
    free(err);
    free(out);
    sp_test_mark_failed();
    fail_msg("%s", msg);
}

struct file_wait {
    const char *path;
    const char *needle;
    struct sp_proc *proc;
};

static bool file_has(void *ctx)
{
    struct file_wait *w = ctx;
    char *text = sp_test_read_file(w->path, NULL);
    bool found = text != NULL && strstr(text, w->needle) != NULL;
    free(text);
    /* A siphon that exited will not write more: stop waiting. */
    return found || !sp_test_proc_alive(w->proc);
}

/*
 * Writes a config streaming tables (a YAML flow list body) of database db
 * of pg through slot s_<name> and publication p_<name> to a file sink
 * without keys, starts `siphon run` and waits until it streams. The tables
 * must exist: siphon creates the publication for them.
 */
static void siphon_start(struct fixture *fx, struct sp_pg *pg, const char *db, const char *name,
                         const char *tables)
{
    char *cfg = sp_test_asprintf("%s/%s.yaml", fx->tmp, name);
    char *stdout_path = sp_test_asprintf("%s/%s.stdout", fx->tmp, name);
    fx->out = sp_test_asprintf("%s/%s.jsonl", fx->tmp, name);
    fx->err = sp_test_asprintf("%s/%s.stderr", fx->tmp, name);
    sp_test_write_file(cfg,
                       "sources:\n"
                       "  db:\n"
                       "    type: postgres\n"
                       "    snapshot: never\n"
                       "    connection: \"host=127.0.0.1 port=%d user=postgres dbname=%s\"\n"
                       "    slot: s_%s\n"
                       "    publication: p_%s\n"
                       "sinks:\n"
                       "  out:\n"
                       "    type: file\n"
                       "    path: %s\n"
                       "    key: none\n"
                       "streams:\n"
                       "  - name: s\n"
                       "    source: db\n"
                       "    tables: [%s]\n"
                       "    sink: out\n",
                       sp_test_pg_port(pg), db, name, name, fx->out, tables);
    const char *argv[] = {sp_test_siphon_bin(), "run", "-c", cfg, NULL};
    fx->proc = sp_test_proc_start(argv, stdout_path, fx->err);
    free(stdout_path);
    free(cfg);
    struct file_wait started = {fx->err, "streaming from slot", fx->proc};
    if (!sp_test_wait_until(file_has, &started, WAIT_START_MS) || !sp_test_proc_alive(fx->proc)) {
        siphon_fail(fx, "siphon did not start streaming");
    }
}

/*
 * Once the changes are committed (through fx->conn): emits a transactional
 * logical decoding message, waits until siphon has written it, stops siphon
 * (SIGTERM, exit 0) and leaves its output lines in fx->lines, without the
 * message. Every line must be a valid JSON object.
 */
static void siphon_finish(struct fixture *fx)
{
    sp_test_sql(fx->conn, "SELECT pg_logical_emit_message(true, '" END_PREFIX "', 'end')");
    struct file_wait ended = {fx->out, "\"prefix\":\"" END_PREFIX "\"", fx->proc};
    if (!sp_test_wait_until(file_has, &ended, WAIT_EVENTS_MS) || !sp_test_proc_alive(fx->proc)) {
        siphon_fail(fx, "siphon did not write all events");
    }
    sp_test_proc_signal(fx->proc, SIGTERM);
    int rc = sp_test_proc_wait(fx->proc, WAIT_EXIT_MS);
    if (rc != 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "siphon exited with %d after SIGTERM, expected 0", rc);
        siphon_fail(fx, msg);
    }

    fx->lines = sp_test_read_lines(fx->out, &fx->nlines);
    if (fx->nlines == 0 || strstr(fx->lines[fx->nlines - 1], END_PREFIX) == NULL) {
        siphon_fail(fx, "the end marker message is not the last line of the output");
    }
    fx->nlines--;
    free(fx->lines[fx->nlines]);
    fx->lines[fx->nlines] = NULL;
    for (size_t i = 0; i < fx->nlines; i++) {
        if (sp_test_json_lookup(fx->lines[i], "", NULL) != SP_TEST_JSON_OBJECT) {
            char msg[128];
            snprintf(msg, sizeof(msg), "output line %zu is not a valid JSON object", i + 1);
            siphon_fail(fx, msg);
        }
    }
}

/*
 * Runs types.sql in database db of pg with siphon streaming it and leaves
 * siphon's output lines in fx->lines. The schema part runs before siphon
 * starts, the changes once it streams.
 */
static void capture(struct fixture *fx, struct sp_pg *pg, const char *db, const char *name)
{
    if (strcmp(db, "postgres") != 0) {
        fx->conn = sp_test_pg_connect(pg);
        sp_test_sql(fx->conn, "CREATE DATABASE %s", db);
        PQfinish(fx->conn);
    }
    fx->conn = sp_test_pg_connect_db(pg, db);
    sp_test_sql(fx->conn, "%s", fx->schema_sql);
    siphon_start(fx, pg, db, name, "public.types, public.arrays");
    sp_test_sql(fx->conn, "%s", fx->changes_sql);
    siphon_finish(fx);
}

/* ---- reading events without a full parser --------------------------------- */

/* The line is valid JSON (checked in siphon_finish), so these only need to find boundaries. */

static const char *json_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
        p++;
    }
    return p;
}

/* The end of the JSON value at p. */
static const char *json_skip(const char *p)
{
    if (*p == '"') {
        for (p++; *p != '\0' && *p != '"'; p++) {
            if (*p == '\\' && p[1] != '\0') {
                p++;
            }
        }
        return *p == '"' ? p + 1 : p;
    }
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (*p != '\0') {
            if (*p == '"') {
                p = json_skip(p);
                continue;
            }
            if (*p == '{' || *p == '[') {
                depth++;
            } else if (*p == '}' || *p == ']') {
                depth--;
            }
            p++;
            if (depth == 0) {
                break;
            }
        }
        return p;
    }
    while (*p != '\0' && strchr(",}] \t\r\n", *p) == NULL) {
        p++;
    }
    return p;
}

/* A member of a JSON object: key (without quotes, escapes as written) and raw value. */
struct member {
    const char *key;
    size_t keylen;
    const char *val;
    size_t vallen;
};

struct obj_iter {
    const char *p;
};

/* Starts iterating the object at obj; false if obj is not an object. */
static bool obj_begin(struct obj_iter *it, const char *obj)
{
    obj = json_ws(obj);
    if (*obj != '{') {
        return false;
    }
    it->p = obj + 1;
    return true;
}

static bool obj_next(struct obj_iter *it, struct member *m)
{
    const char *p = json_ws(it->p);
    if (*p == ',') {
        p = json_ws(p + 1);
    }
    if (*p != '"') {
        return false;
    }
    const char *end = json_skip(p);
    m->key = p + 1;
    m->keylen = (size_t)(end - p) - 2;
    p = json_ws(end);
    if (*p != ':') {
        return false;
    }
    m->val = json_ws(p + 1);
    it->p = json_skip(m->val);
    m->vallen = (size_t)(it->p - m->val);
    return true;
}

static bool key_is(const struct member *m, const char *key)
{
    return m->keylen == strlen(key) && memcmp(m->key, key, m->keylen) == 0;
}

static bool find_member(const char *obj, const char *key, struct member *m)
{
    struct obj_iter it;
    if (!obj_begin(&it, obj)) {
        return false;
    }
    while (obj_next(&it, m)) {
        if (key_is(m, key)) {
            return true;
        }
    }
    return false;
}

/* ---- normalising --------------------------------------------------------- */

struct norm {
    const char *copied; /* input up to here is in out */
    char *out;
    size_t len;
};

static void norm_replace(struct norm *n, const struct member *m, const char *with)
{
    size_t keep = (size_t)(m->val - n->copied);
    memcpy(n->out + n->len, n->copied, keep);
    n->len += keep;
    memcpy(n->out + n->len, with, strlen(with));
    n->len += strlen(with);
    n->copied = m->val + m->vallen;
}

static bool all_digits(const char *p, size_t n)
{
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
    }
    return true;
}

/* An unsigned number becomes 0; anything else stays, so the comparison shows it. */
static void norm_number(struct norm *n, const struct member *m)
{
    if (all_digits(m->val, m->vallen)) {
        norm_replace(n, m, "0");
    }
}

/* "<hex>/<hex>:<seq>" becomes "0/0:<seq>": the commit LSN varies, the sequence does not. */
static void norm_id(struct norm *n, const struct member *m)
{
    const char *p = m->val;
    const char *e = m->val + m->vallen;
    if (m->vallen < 2 || *p != '"' || e[-1] != '"') {
        return;
    }
    const char *slash = memchr(p, '/', m->vallen);
    const char *colon = memchr(p, ':', m->vallen);
    if (slash == NULL || colon == NULL || slash < p + 2 || colon < slash + 2 ||
        strspn(p + 1, "0123456789ABCDEF") != (size_t)(slash - p - 1) ||
        strspn(slash + 1, "0123456789ABCDEF") != (size_t)(colon - slash - 1) ||
        !all_digits(colon + 1, (size_t)(e - colon - 2))) {
        return;
    }
    char with[64];
    snprintf(with, sizeof(with), "\"0/0:%.*s\"", (int)(e - colon - 2), colon + 1);
    norm_replace(n, m, with);
}

static void norm_source(struct norm *n, const char *source)
{
    struct obj_iter it;
    struct member m;
    if (!obj_begin(&it, source)) {
        return;
    }
    while (obj_next(&it, &m)) {
        if (key_is(&m, "lsn") || key_is(&m, "commit_lsn") || key_is(&m, "txId") ||
            key_is(&m, "ts_ms")) {
            norm_number(n, &m);
        }
    }
}

/*
 * The event line with what differs from run to run replaced: ts_ms,
 * source.ts_ms, source.lsn, source.commit_lsn and source.txId become 0, id
 * "0/0:<seq>". Every other byte is kept. malloc'd.
 */
static char *normalise(const char *line)
{
    struct norm n = {line, malloc(strlen(line) + 1), 0};
    assert_non_null(n.out);
    struct obj_iter it;
    struct member m;
    if (obj_begin(&it, line)) {
        while (obj_next(&it, &m)) {
            if (key_is(&m, "ts_ms")) {
                norm_number(&n, &m);
            } else if (key_is(&m, "id")) {
                norm_id(&n, &m);
            } else if (key_is(&m, "source")) {
                norm_source(&n, m.val);
            }
        }
    }
    size_t rest = strlen(n.copied);
    memcpy(n.out + n.len, n.copied, rest + 1);
    return n.out;
}

/* The normalised lines of fx->lines, as a NULL-terminated array for sp_test_free_lines. */
static char **normalise_all(char **lines, size_t n)
{
    char **out = calloc(n + 1, sizeof(char *));
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        out[i] = normalise(lines[i]);
    }
    return out;
}

/* ---- comparing ----------------------------------------------------------- */

/* Prints "prefix.key: expected X, got Y" for each member that differs; returns how many. */
static int diff_members(const char *prefix, const char *want, const char *got, int depth)
{
    struct obj_iter it;
    struct obj_iter git;
    struct member wm;
    struct member gm;
    int found = 0;
    if (!obj_begin(&it, want) || !obj_begin(&git, got)) {
        return 0;
    }
    while (obj_next(&it, &wm)) {
        char *key =
            sp_test_asprintf("%s%s%.*s", prefix, *prefix ? "." : "", (int)wm.keylen, wm.key);
        char *k = sp_test_asprintf("%.*s", (int)wm.keylen, wm.key);
        if (!find_member(got, k, &gm)) {
            fprintf(stderr, "    %s: missing, expected %.*s\n", key, (int)wm.vallen, wm.val);
            found++;
        } else if (gm.vallen != wm.vallen || memcmp(gm.val, wm.val, wm.vallen) != 0) {
            int inner = depth == 0 ? diff_members(key, wm.val, gm.val, depth + 1) : 0;
            if (inner == 0) {
                fprintf(stderr, "    %s: expected %.*s\n    %*s  got      %.*s\n", key,
                        (int)wm.vallen, wm.val, (int)strlen(key), "", (int)gm.vallen, gm.val);
                inner = 1;
            }
            found += inner;
        }
        free(k);
        free(key);
    }
    while (obj_next(&git, &gm)) {
        char *k = sp_test_asprintf("%.*s", (int)gm.keylen, gm.key);
        if (!find_member(want, k, &wm)) {
            fprintf(stderr, "    %s%s%s: unexpected member %.*s\n", prefix, *prefix ? "." : "", k,
                    (int)gm.vallen, gm.val);
            found++;
        }
        free(k);
    }
    return found;
}

/* Explains on stderr how line number lineno (from 1) differs. */
static void explain_line(size_t lineno, const char *want, const char *got)
{
    fprintf(stderr, "  line %zu:\n", lineno);
    if (want == NULL || got == NULL) {
        fprintf(stderr, "    expected %.2000s\n    got      %.2000s\n",
                want != NULL ? want : "(no line)", got != NULL ? got : "(no line)");
        return;
    }
    if (diff_members("", want, got, 0) == 0) {
        size_t at = 0;
        while (want[at] != '\0' && want[at] == got[at]) {
            at++;
        }
        size_t from = at > 60 ? at - 60 : 0;
        fprintf(
            stderr,
            "    first difference at byte %zu:\n    expected ...%.160s\n    got      ...%.160s\n",
            at, want + from, got + from);
    }
}

/*
 * Fails unless got (n lines) equals want (nwant lines) byte for byte,
 * explaining the first few differences; what names the comparison.
 */
static void assert_same_lines(struct fixture *fx, const char *what, char **want, size_t nwant,
                              char **got, size_t n)
{
    size_t differ = 0;
    size_t first = 0;
    size_t max = n > nwant ? n : nwant;
    for (size_t i = 0; i < max; i++) {
        const char *w = i < nwant ? want[i] : NULL;
        const char *g = i < n ? got[i] : NULL;
        if (w != NULL && g != NULL && strcmp(w, g) == 0) {
            continue;
        }
        if (differ == 0) {
            fprintf(stderr, "%s: output differs:\n", what);
            first = i + 1;
        }
        if (differ < 5) {
            explain_line(i + 1, w, g);
        }
        differ++;
    }
    if (differ == 0) {
        return;
    }
    char *actual = sp_test_asprintf("%s/actual.json.jsonl", fx->tmp);
    FILE *f = fopen(actual, "w");
    for (size_t i = 0; f != NULL && i < n; i++) {
        fprintf(f, "%s\n", got[i]);
    }
    if (f != NULL) {
        fclose(f);
    }
    fprintf(stderr,
            "the normalised output is in %s; if the change is intended, rerun with "
            "SP_UPDATE_GOLDEN=1 and review the diff of tests/golden/types.json.jsonl\n",
            actual);
    free(actual);
    sp_test_mark_failed();
    fail_msg("%s: %zu of %zu lines differ (expected %zu lines, got %zu), first at line %zu", what,
             differ, max, nwant, n, first);
}

static void write_golden(const char *path, char **lines, size_t n)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fail_msg("cannot write %s: %s", path, strerror(errno));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s\n", lines[i]);
    }
    if (fclose(f) != 0) {
        fail_msg("cannot write %s: %s", path, strerror(errno));
    }
    fprintf(stderr, "SP_UPDATE_GOLDEN=1: wrote %zu lines to %s\n", n, path);
}

/* ---- (a) golden output --------------------------------------------------- */

static void default_server_output_matches_golden_file(void **state)
{
    struct fixture *fx = *state;
    capture(fx, fx->pg, "postgres", "types");
    char **norm = normalise_all(fx->lines, fx->nlines);
    sp_test_free_lines(fx->golden);
    fx->golden = norm;
    fx->ngolden = fx->nlines;

    char *path = source_path("tests/golden/types.json.jsonl");
    if (update_golden()) {
        write_golden(path, norm, fx->nlines);
        free(path);
        return;
    }
    size_t nwant = 0;
    char **want = sp_test_read_lines(path, &nwant);
    if (nwant == 0) {
        sp_test_free_lines(want);
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s is missing or empty; create it with SP_UPDATE_GOLDEN=1",
                 path);
        free(path);
        fail_msg("%s", msg);
        return;
    }
    free(path);
    /* Kept in fx so that a failed comparison does not leak it. */
    sp_test_free_lines(fx->lines);
    fx->lines = want;
    assert_same_lines(fx, "tests/golden/types.json.jsonl", want, nwant, norm, fx->ngolden);
}

/* ---- (b) other session settings ------------------------------------------ */

static void assert_setting(PGconn *c, const char *name, const char *want)
{
    char *got = sp_test_sql_value(c, "SHOW %s", name);
    bool same = got != NULL && strcmp(got, want) == 0;
    char msg[512];
    snprintf(msg, sizeof(msg), "SHOW %s gives %s, expected %s", name, got ? got : "NULL", want);
    free(got);
    if (!same) {
        fail_msg("%s", msg);
    }
}

static void other_session_settings_give_identical_output(void **state)
{
    struct fixture *fx = *state;
    fx->conn = sp_test_pg_connect(fx->other);
    for (size_t i = 0; other_settings[i] != NULL; i++) {
        sp_test_sql(fx->conn, "ALTER DATABASE postgres SET %s", other_settings[i]);
        sp_test_sql(fx->conn, "ALTER ROLE postgres SET %s", other_settings[i]);
    }
    PQfinish(fx->conn);
    /* A new session has them: unpinned, values would print differently. */
    fx->conn = sp_test_pg_connect(fx->other);
    assert_setting(fx->conn, "TimeZone", "Asia/Kolkata");
    assert_setting(fx->conn, "DateStyle", "SQL, DMY");
    assert_setting(fx->conn, "IntervalStyle", "sql_standard");
    assert_setting(fx->conn, "extra_float_digits", "0");
    assert_setting(fx->conn, "bytea_output", "escape");
    char *shown = sp_test_sql_value(fx->conn, "SELECT '2026-11-21 10:00:00.5+00'::timestamptz::text"
                                              " || ' ' || '-1 days +2 hours'::interval::text");
    bool unpinned = strcmp(shown, "21/11/2026 15:30:00.5 IST +0-0 -1 +2:00:00") == 0;
    char msg[512];
    snprintf(msg, sizeof(msg), "the settings did not take: the server prints \"%s\"", shown);
    free(shown);
    if (!unpinned) {
        fail_msg("%s", msg);
    }
    PQfinish(fx->conn);
    /* Walsender sessions get them too, before siphon pins its own. */
    char *repl = sp_test_asprintf("%s replication=database", sp_test_pg_conninfo(fx->other));
    fx->conn = PQconnectdb(repl);
    free(repl);
    if (PQstatus(fx->conn) != CONNECTION_OK) {
        fail_msg("replication connection failed: %s", PQerrorMessage(fx->conn));
    }
    assert_setting(fx->conn, "TimeZone", "Asia/Kolkata");
    assert_setting(fx->conn, "IntervalStyle", "sql_standard");
    PQfinish(fx->conn);
    fx->conn = NULL;

    capture(fx, fx->other, "postgres", "types_other");
    char **norm = normalise_all(fx->lines, fx->nlines);
    size_t n = fx->nlines;
    sp_test_free_lines(fx->lines);
    fx->lines = norm;
    fx->nlines = n;

    if (fx->golden != NULL) {
        assert_same_lines(fx, "output with other session settings vs. the default server's",
                          fx->golden, fx->ngolden, norm, n);
        return;
    }
    /* The default server's run failed before its output was read: use the golden file. */
    char *path = source_path("tests/golden/types.json.jsonl");
    fx->golden = sp_test_read_lines(path, &fx->ngolden);
    free(path);
    assert_same_lines(fx, "output with other session settings vs. tests/golden/types.json.jsonl",
                      fx->golden, fx->ngolden, norm, n);
}

/* ---- (c) selected fields ------------------------------------------------- */

/* The event for table/op whose row (after, or before for deletes) has that id; fails if none. */
static const char *event(char **lines, size_t n, const char *table, const char *op, int id)
{
    char want_id[16];
    snprintf(want_id, sizeof(want_id), "%d", id);
    const char *row = strcmp(op, "d") == 0 ? "before.id" : "after.id";
    for (size_t i = 0; i < n; i++) {
        char *t = NULL;
        char *o = NULL;
        char *r = NULL;
        sp_test_json_lookup(lines[i], "source.table", &t);
        sp_test_json_lookup(lines[i], "op", &o);
        sp_test_json_lookup(lines[i], row, &r);
        bool hit = t != NULL && o != NULL && r != NULL && strcmp(t, table) == 0 &&
                   strcmp(o, op) == 0 && strcmp(r, want_id) == 0;
        free(t);
        free(o);
        free(r);
        if (hit) {
            return lines[i];
        }
    }
    fail_msg("no event op \"%s\" for %s id %d", op, table, id);
    return NULL;
}

static const char *kind_name(enum sp_test_json k)
{
    static const char *const names[] = {"missing", "null",   "false", "true",
                                        "number",  "string", "array", "object"};
    return k >= SP_TEST_JSON_MISSING && k <= SP_TEST_JSON_OBJECT ? names[k] : "invalid JSON";
}

/*
 * Fails unless the value at path is of kind and (text != NULL) reads text:
 * strings unescaped, numbers as written, arrays and objects compact.
 */
static void assert_field(const char *ev, const char *path, enum sp_test_json kind, const char *text)
{
    char *got = NULL;
    enum sp_test_json k = sp_test_json_lookup(ev, path, &got);
    bool ok = k == kind && (text == NULL || (got != NULL && strcmp(got, text) == 0));
    if (ok) {
        free(got);
        return;
    }
    char *id = NULL;
    char *table = NULL;
    sp_test_json_lookup(ev, "after.id", &id);
    if (id == NULL) {
        sp_test_json_lookup(ev, "before.id", &id);
    }
    sp_test_json_lookup(ev, "source.table", &table);
    char msg[4096];
    snprintf(msg, sizeof(msg), "%s of %s id %s: got %s %s, expected %s %s", path,
             table ? table : "?", id ? id : "?", kind_name(k), got ? got : "", kind_name(kind),
             text ? text : "");
    free(got);
    free(id);
    free(table);
    fail_msg("%s", msg);
}

static void str_field(const char *ev, const char *path, const char *text)
{
    assert_field(ev, path, SP_TEST_JSON_STRING, text);
}

static void num_field(const char *ev, const char *path, const char *text)
{
    assert_field(ev, path, SP_TEST_JSON_NUMBER, text);
}

static void null_field(const char *ev, const char *path)
{
    assert_field(ev, path, SP_TEST_JSON_NULL, NULL);
}

static void scalar_fields(char **l, size_t n)
{
    const char *e = event(l, n, "types", "c", 1);
    num_field(e, "after.i8", "9007199254740993");
    num_field(e, "after.f8", "0.1");
    str_field(e, "after.num", "19.90");
    str_field(e, "after.dnum", "19.90");
    assert_field(e, "after.b", SP_TEST_JSON_TRUE, "true");
    str_field(e, "after.c5", "ab   ");
    str_field(e, "after.mo", "happy");
    str_field(e, "after.m", "$19.90");
    str_field(e, "after.by", "AP9/gA==");
    assert_field(
        e, "after.j", SP_TEST_JSON_OBJECT,
        "{\"a\":1,\"b\":[1,2.50,1e400,-0,1E+2],\"s\":\"x\\ny \\\"q\\\" \\u00e9 \xc3\xbc\"}");
    num_field(e, "after.jb.dec", "12345678901234567890.123");
    assert_field(e, "after.jb.nested.arr", SP_TEST_JSON_ARRAY, "[1,[2,{\"deep\":true}],null]");
    str_field(e, "after.jb.esc", "tab\t quote\" backslash\\ nl\n ctrl\x01 \xf0\x9f\x98\x80");
    str_field(e, "after.d", "2026-11-21");
    str_field(e, "after.ts", "2026-11-21T10:00:00.5");
    str_field(e, "after.tstz", "2026-11-21T10:00:00.5Z");
    str_field(e, "after.tm", "10:00:00.5");
    str_field(e, "after.tmtz", "10:00:00.5+02:00");
    str_field(e, "after.iv", "P1Y2M3DT4H5M6.5S");
    str_field(e, "after.pt", "(1.5,-2)");
    str_field(e, "after.r", "[1,10)");
    str_field(e, "after.comp", "(1,x)");
    str_field(e, "after.rc", "extra.thing");
    str_field(e, "after.rt", "extra.color");

    e = event(l, n, "types", "c", 2);
    num_field(e, "after.i8", "-9223372036854775808");
    str_field(e, "after.num", "0.000");
    str_field(e, "after.by", "");
    str_field(e, "after.c5", "\xe6\xbc\xa2\xe5\xad\x97   ");
    str_field(e, "after.d", "0000-01-01");
    str_field(e, "after.ts", "-0043-03-15T12:30:00");
    str_field(e, "after.tstz", "-0043-03-15T12:30:00Z");
    str_field(e, "after.tmtz", "23:59:59.999999-08:00");
    str_field(e, "after.iv", "P-1Y-2M3DT-4H-5M-6.5S");

    e = event(l, n, "types", "c", 3);
    num_field(e, "after.o", "4294967295");
    str_field(e, "after.num", "123456789012345678901234567890.000000001");
    str_field(
        e, "after.t",
        "quote \" backslash \\ tab \t newline \n cr \r bell \x07 esc \x1b unit \x1f del \x7f");
    str_field(e, "after.by", "AA==");
    str_field(e, "after.d", "9999-12-31");
    str_field(e, "after.tm", "24:00:00");
    str_field(e, "after.j", "just a string");
    str_field(e, "after.comp", "(-1,\"x \"\"y\"\", z\\\\\")");

    e = event(l, n, "types", "c", 4);
    str_field(e, "after.f4", "NaN");
    str_field(e, "after.f8", "NaN");
    str_field(e, "after.num", "NaN");
    str_field(e, "after.d", "infinity");
    str_field(e, "after.tstz", "infinity");
    str_field(e, "after.iv", "PT0S");
    null_field(e, "after.j"); /* json 'null' */

    e = event(l, n, "types", "c", 5);
    str_field(e, "after.f8", "Infinity");
    str_field(e, "after.num", "Infinity");
    str_field(e, "after.ts", "-infinity");
    str_field(e, "after.tmtz", "01:02:03-03:30");

    e = event(l, n, "types", "c", 6);
    str_field(e, "after.f4", "-Infinity");
    str_field(e, "after.num", "-Infinity");

    e = event(l, n, "types", "c", 7);
    num_field(e, "after.f8", "1e-300");
    assert_field(e, "after.j", SP_TEST_JSON_OBJECT, "{\"nul\":\"\\u0000\",\"solidus\":\"\\/\"}");
    str_field(e, "after.tmtz", "06:07:08+05:30:15");
    str_field(e, "after.tstz", "2026-02-28T20:30:00Z");
    str_field(e, "after.iv", "P-1Y-1M-1DT-1H-1M-1.000001S");

    e = event(l, n, "types", "c", 8);
    str_field(e, "after.ts", "0000-01-01T00:00:00");
    str_field(e, "after.tstz", "2026-01-01T07:00:00Z");

    e = event(l, n, "types", "c", 10);
    struct obj_iter it;
    struct member m;
    struct member after;
    if (!find_member(e, "after", &after) || !obj_begin(&it, after.val)) {
        fail_msg("types id 10 has no \"after\" object");
        return;
    }
    int columns = 0;
    while (obj_next(&it, &m)) {
        columns++;
        if (!key_is(&m, "id") && !(m.vallen == 4 && memcmp(m.val, "null", 4) == 0)) {
            fail_msg("after.%.*s of types id 10 is %.*s, expected null", (int)m.keylen, m.key,
                     (int)m.vallen, m.val);
        }
    }
    assert_int_equal(columns, 38);
}

static void array_fields(char **l, size_t n)
{
    const char *e = event(l, n, "arrays", "c", 1);
    assert_field(e, "after.ia", SP_TEST_JSON_ARRAY, "[1,null,3]");
    assert_field(e, "after.iaa", SP_TEST_JSON_ARRAY, "[[1,2],[3,4]]");
    assert_field(e, "after.ie", SP_TEST_JSON_ARRAY, "[]");
    assert_field(e, "after.lb", SP_TEST_JSON_ARRAY, "[1,2]");
    str_field(e, "after.ta.1", "with \"quotes\"");
    str_field(e, "after.ta.3", "{braces}");
    str_field(e, "after.ta.4", "NULL");
    null_field(e, "after.ta.5");
    str_field(e, "after.ta.6", "back\\slash");
    str_field(e, "after.ta.8", " spaced ");
    assert_field(e, "after.na", SP_TEST_JSON_ARRAY,
                 "[\"1.50\",\"NaN\",\"-0.001\",\"123456789012345678901234567890.000000001\","
                 "\"Infinity\",\"-Infinity\"]");
    assert_field(e, "after.fa", SP_TEST_JSON_ARRAY,
                 "[\"NaN\",\"Infinity\",\"-Infinity\",0.1,1e-300,-0]");
    assert_field(e, "after.ja", SP_TEST_JSON_ARRAY,
                 "[{\"a\":[1,2],\"s\":\"q\\\"b\\\\\"},\"str\",null,12345678901234567890.123]");
    assert_field(e, "after.da", SP_TEST_JSON_ARRAY,
                 "[\"2026-11-21\",\"infinity\",\"-infinity\",\"-0043-03-15\",\"0000-01-01\"]");
    assert_field(e, "after.tsa", SP_TEST_JSON_ARRAY,
                 "[\"2026-11-21T10:00:00.5Z\",\"infinity\",\"0000-01-01T00:00:00Z\"]");
    assert_field(e, "after.ba", SP_TEST_JSON_ARRAY, "[true,false,null]");
    assert_field(e, "after.bya", SP_TEST_JSON_ARRAY, "[\"\",\"AP8=\",null,\"YVxi\"]");
    assert_field(e, "after.iva", SP_TEST_JSON_ARRAY, "[\"P1Y2M3DT4H5M6.5S\",\"PT0S\",\"P-1D\"]");
    str_field(e, "after.ea.1", "sad \xf0\x9f\x98\xa2");
    assert_field(e, "after.bxa", SP_TEST_JSON_ARRAY, "[\"(1,1),(0,0)\",\"(2,2),(1,1)\"]");
    str_field(e, "after.ca.0", "(1,\"x \"\"y\"\", z\")");
    assert_field(e, "after.dna", SP_TEST_JSON_ARRAY, "[\"19.90\",\"0.00\"]");
    assert_field(e, "after.dia", SP_TEST_JSON_ARRAY, "[7,null]");

    e = event(l, n, "arrays", "c", 2);
    assert_field(e, "after.ia", SP_TEST_JSON_ARRAY, "[null]");
    assert_field(e, "after.iaa", SP_TEST_JSON_ARRAY, "[[[1],[2]],[[3],[4]]]");
    assert_field(e, "after.lb", SP_TEST_JSON_ARRAY, "[[1,2],[3,4]]");
    assert_field(e, "after.ta", SP_TEST_JSON_ARRAY, "[]");

    e = event(l, n, "arrays", "c", 3);
    null_field(e, "after.ia");
    null_field(e, "after.dia");
}

static void change_fields(char **l, size_t n)
{
    const char *e = event(l, n, "types", "u", 1);
    str_field(e, "before.t", "hello");
    str_field(e, "after.t", "updated");
    str_field(e, "before.tstz", "2026-11-21T10:00:00.5Z");
    str_field(e, "after.tstz", "2026-11-21T10:00:01Z");
    assert_field(e, "before.jb.nested.obj", SP_TEST_JSON_OBJECT, "{}");
    null_field(e, "after.jb");
    null_field(e, "after.iv");

    e = event(l, n, "types", "d", 2);
    null_field(e, "after");
    num_field(e, "before.i2", "-32768");
    str_field(e, "before.tstz", "-0043-03-15T12:30:00Z");

    e = event(l, n, "arrays", "u", 1);
    assert_field(e, "before.ia", SP_TEST_JSON_ARRAY, "[1,null,3]");
    assert_field(e, "after.ia", SP_TEST_JSON_ARRAY, "[4,5,6]");
    null_field(e, "after.ta");

    e = event(l, n, "arrays", "d", 2);
    assert_field(e, "before.iaa", SP_TEST_JSON_ARRAY, "[[[1],[2]],[[3],[4]]]");
}

static void selected_fields_convert_as_documented(void **state)
{
    struct fixture *fx = *state;
    char **l = fx->golden;
    size_t n = fx->ngolden;
    if (l == NULL) {
        /* The golden test failed before its output was read: stream into a database of our own. */
        capture(fx, fx->pg, "types_fields", "types_fields");
        l = fx->lines;
        n = fx->nlines;
    }
    assert_int_equal(n, TYPES_EVENTS);
    scalar_fields(l, n);
    array_fields(l, n);
    change_fields(l, n);
}

/* ---- (d) settings that change values' text but are not in the list above --- */

/*
 * For a database of the default server: the walsender converts every value
 * to the session's client_encoding, and regclass/regtype print names
 * qualified and quoted as search_path and quote_all_identifiers say.
 */
static const char *const db_settings[] = {
    "client_encoding='LATIN1'",
    "search_path=public, extra",
    "quote_all_identifiers=on",
    NULL,
};

/* Appends "path: got X, expected Y" to *report when the string at path is not want. */
static void check_string(const char *ev, const char *path, const char *want, char **report)
{
    char *got = NULL;
    enum sp_test_json k = sp_test_json_lookup(ev, path, &got);
    if (k != SP_TEST_JSON_STRING || strcmp(got, want) != 0) {
        char *more = sp_test_asprintf("%s\n  %s: got %s \"%s\", expected string \"%s\"", *report,
                                      path, kind_name(k), got ? got : "", want);
        free(*report);
        *report = more;
    }
    free(got);
}

static void database_encoding_and_search_path_do_not_change_values(void **state)
{
    struct fixture *fx = *state;
    fx->conn = sp_test_pg_connect(fx->pg);
    sp_test_sql(fx->conn, "CREATE DATABASE unpinned");
    for (size_t i = 0; db_settings[i] != NULL; i++) {
        sp_test_sql(fx->conn, "ALTER DATABASE unpinned SET %s", db_settings[i]);
    }
    PQfinish(fx->conn);
    fx->conn = sp_test_pg_connect_db(fx->pg, "unpinned");
    assert_setting(fx->conn, "client_encoding", "LATIN1");
    assert_setting(fx->conn, "search_path", "public, extra");
    assert_setting(fx->conn, "quote_all_identifiers", "on");
    PQfinish(fx->conn);

    /* This session sends UTF-8, whatever the database's default. */
    char *ci = sp_test_asprintf("host=127.0.0.1 port=%d user=postgres dbname=unpinned "
                                "client_encoding=UTF8 connect_timeout=10",
                                sp_test_pg_port(fx->pg));
    fx->conn = PQconnectdb(ci);
    free(ci);
    if (PQstatus(fx->conn) != CONNECTION_OK) {
        fail_msg("cannot connect: %s", PQerrorMessage(fx->conn));
    }
    sp_test_sql(fx->conn, "CREATE SCHEMA extra;"
                          "CREATE TYPE extra.color AS ENUM ('red');"
                          "CREATE TABLE extra.thing (id integer);"
                          "CREATE TABLE public.latin (id integer PRIMARY KEY, t text, "
                          "                           rc regclass, rt regtype)");
    siphon_start(fx, fx->pg, "unpinned", "unpinned", "public.latin");
    /* Only characters LATIN1 has: others make the walsender fail instead. */
    sp_test_sql(fx->conn, "INSERT INTO public.latin VALUES (1, 'caf\xc3\xa9 \xc3\xbc', "
                          "'extra.thing', 'extra.color')");
    siphon_finish(fx);
    if (fx->nlines != 1) {
        siphon_fail(fx, "expected exactly 1 event");
    }

    char *report = sp_test_asprintf("values depend on the database's session settings:");
    size_t clean = strlen(report);
    check_string(fx->lines[0], "after.t", "caf\xc3\xa9 \xc3\xbc", &report);
    check_string(fx->lines[0], "after.rc", "extra.thing", &report);
    check_string(fx->lines[0], "after.rt", "extra.color", &report);
    char msg[4096];
    snprintf(msg, sizeof(msg), "%s", report);
    free(report);
    if (strlen(msg) != clean) {
        fail_msg("%s", msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(default_server_output_matches_golden_file, test_cleanup),
        cmocka_unit_test_teardown(other_session_settings_give_identical_output, test_cleanup),
        cmocka_unit_test_teardown(selected_fields_convert_as_documented, test_cleanup),
        cmocka_unit_test_teardown(database_encoding_and_search_path_do_not_change_values,
                                  test_cleanup),
    };
    return SP_TEST_RUN_GROUP("types_pg", tests, group_setup, group_teardown);
}
