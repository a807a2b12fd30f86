/*
 * Helpers shared by the integration tests that run the siphon binary
 * against a real PostgreSQL: a configuration with one postgres source
 * streaming to one file sink, starting `siphon run`, slot positions and
 * waits on them, log lines, statements sent without waiting for their
 * result, and reading siphon's JSON Lines output into events.
 *
 * Header-only (static functions) because tests/CMakeLists.txt builds one
 * executable per tests/integration/test_*.c. The rules of lib/harness.h
 * apply: call from the test's main thread; an infrastructure problem fails
 * the current test.
 */
#ifndef SIPHON_TESTS_INTEGRATION_CDC_HELPERS_H
#define SIPHON_TESTS_INTEGRATION_CDC_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/harness.h"

#define CDC_UNUSED __attribute__((unused))

/* ---- environment ---------------------------------------------------------- */

/* Whether siphon was built with ASan+UBSan (SP_SANITIZED=1): slower, bigger. */
static CDC_UNUSED bool cdc_sanitized(void)
{
    const char *s = getenv("SP_SANITIZED");
    return s != NULL && strcmp(s, "1") == 0;
}

static CDC_UNUSED int64_t cdc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A pause that lets something else run; never used to wait for a condition. */
static CDC_UNUSED void cdc_sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/*
 * Strings a test allocates, freed by its cleanup even when an assertion
 * ends the test early (cmocka longjmps out; LeakSanitizer would report them).
 */
struct cdc_strs {
    char *s[32];
    int n;
};

/* Takes ownership of s and returns it. */
static CDC_UNUSED char *cdc_keep(struct cdc_strs *p, char *s)
{
    assert_true(p->n < (int)(sizeof(p->s) / sizeof(p->s[0])));
    p->s[p->n++] = s;
    return s;
}

static CDC_UNUSED void cdc_strs_free(struct cdc_strs *p)
{
    for (int i = 0; i < p->n; i++) {
        free(p->s[i]);
    }
    p->n = 0;
}

/* ---- configuration and the siphon process ---------------------------------- */

struct cdc_conf {
    const char *conninfo;
    const char *slot;
    const char *publication;
    const char *tables;       /* the body of a YAML flow list: "public.a, public.b" */
    const char *out_path;     /* the file sink's path */
    const char *source_extra; /* more source options, "    key: value\n" lines, or NULL */
    const char *sink_extra;   /* more sink options, same form, or NULL */
    const char *settings;     /* settings lines "  key: value\n", or NULL */
};

/* Writes the configuration to path (source "db", sink "out", stream "s"). */
static CDC_UNUSED void cdc_write_config(const char *path, const struct cdc_conf *c)
{
    sp_test_write_file(path,
                       "sources:\n"
                       "  db:\n"
                       "    type: postgres\n"
                       "    connection: \"%s\"\n"
                       "    slot: %s\n"
                       "    publication: %s\n"
                       "%s"
                       "%s"
                       "sinks:\n"
                       "  out:\n"
                       "    type: file\n"
                       "    path: %s\n"
                       "%s"
                       "streams:\n"
                       "  - name: s\n"
                       "    source: db\n"
                       "    tables: [%s]\n"
                       "    sink: out\n"
                       "settings:\n"
                       "  shutdown_timeout: 30s\n"
                       "%s",
                       c->conninfo, c->slot, c->publication,
                       c->source_extra != NULL && strstr(c->source_extra, "snapshot:") != NULL
                           ? ""
                           : "    snapshot: never\n",
                       c->source_extra ? c->source_extra : "",
                       c->out_path, c->sink_extra ? c->sink_extra : "", c->tables,
                       c->settings ? c->settings : "");
}

/* `siphon run -c config`, stdout and stderr both to log_path (truncated). */
static CDC_UNUSED struct sp_proc *cdc_siphon_start(const char *config, const char *log_path)
{
    const char *argv[] = {sp_test_siphon_bin(), "run", "-c", config, NULL};
    return sp_test_proc_start(argv, log_path, log_path);
}

/* `siphon check -c config`: its exit status (waiting up to timeout_ms); *out gets stdout and
 * stderr (malloc'd), also kept in <config>.check.out. */
static CDC_UNUSED int cdc_siphon_check(const char *config, int timeout_ms, char **out)
{
    char *path = sp_test_asprintf("%s.check.out", config);
    const char *argv[] = {sp_test_siphon_bin(), "check", "-c", config, NULL};
    struct sp_proc *p = sp_test_proc_start(argv, path, path);
    int st = sp_test_proc_wait(p, timeout_ms);
    sp_test_proc_free(p);
    *out = sp_test_read_file(path, NULL);
    assert_non_null(*out);
    free(path);
    return st;
}

/* How many times needle occurs in the file (0 when it cannot be read). */
static CDC_UNUSED size_t cdc_count_in_file(const char *path, const char *needle)
{
    char *text = sp_test_read_file(path, NULL);
    size_t n = 0;
    if (text != NULL) {
        for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle)) {
            n++;
        }
    }
    free(text);
    return n;
}

struct cdc_log_wait {
    const char *path;
    const char *needle;
    size_t times;
};

static CDC_UNUSED bool cdc_log_has(void *ctx)
{
    struct cdc_log_wait *w = ctx;
    return cdc_count_in_file(w->path, w->needle) >= w->times;
}

/* Waits until needle occurs at least times times in the log; prints the log if not. */
static CDC_UNUSED bool cdc_wait_log(const char *path, const char *needle, size_t times,
                                    int timeout_ms)
{
    struct cdc_log_wait w = {path, needle, times};
    bool ok = sp_test_wait_until(cdc_log_has, &w, timeout_ms);
    if (!ok) {
        char *text = sp_test_read_file(path, NULL);
        fprintf(stderr, "\"%s\" not seen %zu times in %s:\n%s\n", needle, times, path,
                text ? text : "(unreadable)");
        free(text);
    }
    return ok;
}

/* Prints the log to stderr (for failures). */
static CDC_UNUSED void cdc_print_log(const char *path)
{
    char *text = sp_test_read_file(path, NULL);
    fprintf(stderr, "---- %s ----\n%s---- end ----\n", path, text ? text : "(unreadable)\n");
    free(text);
}

/*
 * Sends SIGTERM and waits up to timeout_ms; returns the exit status as
 * sp_test_proc_wait does. *took_ms (if not NULL) gets how long it took.
 */
static CDC_UNUSED int cdc_siphon_stop(struct sp_proc *p, int timeout_ms, int64_t *took_ms)
{
    int64_t t0 = cdc_now_ms();
    sp_test_proc_signal(p, SIGTERM);
    int st = sp_test_proc_wait(p, timeout_ms);
    if (took_ms != NULL) {
        *took_ms = cdc_now_ms() - t0;
    }
    return st;
}

/* ---- LSNs and the slot --------------------------------------------------- */

/* "16/B374D848" -> 0x16B374D848; 0 for NULL or garbage. */
static CDC_UNUSED uint64_t cdc_lsn_parse(const char *s)
{
    unsigned int hi = 0;
    unsigned int lo = 0;
    if (s == NULL || sscanf(s, "%X/%X", &hi, &lo) != 2) {
        return 0;
    }
    return ((uint64_t)hi << 32) | lo;
}

/* Formats an LSN as PostgreSQL does, into buf (at least 24 bytes). */
static CDC_UNUSED const char *cdc_lsn_fmt(uint64_t lsn, char *buf)
{
    snprintf(buf, 24, "%X/%X", (unsigned int)(lsn >> 32), (unsigned int)lsn);
    return buf;
}

static CDC_UNUSED uint64_t cdc_current_lsn(PGconn *c)
{
    char *v = sp_test_sql_value(c, "SELECT pg_current_wal_lsn()");
    uint64_t lsn = cdc_lsn_parse(v);
    free(v);
    return lsn;
}

/* The slot's confirmed_flush_lsn; 0 when the slot does not exist or has none. */
static CDC_UNUSED uint64_t cdc_confirmed_lsn(PGconn *c, const char *slot)
{
    char *v = sp_test_sql_value(c,
                                "SELECT (SELECT confirmed_flush_lsn::text FROM pg_replication_slots"
                                " WHERE slot_name = '%s')",
                                slot);
    uint64_t lsn = cdc_lsn_parse(v);
    free(v);
    return lsn;
}

/* Waits until the slot's confirmed_flush_lsn >= lsn. */
static CDC_UNUSED bool cdc_wait_confirmed(PGconn *c, const char *slot, uint64_t lsn, int timeout_ms)
{
    char buf[24];
    return sp_test_sql_poll_until(c, "t", timeout_ms,
                                  "SELECT coalesce((SELECT confirmed_flush_lsn >= '%s'::pg_lsn"
                                  " FROM pg_replication_slots WHERE slot_name = '%s'), false)",
                                  cdc_lsn_fmt(lsn, buf), slot);
}

struct cdc_confirm_wait {
    PGconn *conn;
    const char *slot;
    uint64_t lsn;
    struct sp_proc *proc;
    bool exited;
};

static CDC_UNUSED bool cdc_confirmed_or_exited(void *ctx)
{
    struct cdc_confirm_wait *w = ctx;
    if (!sp_test_proc_alive(w->proc)) {
        w->exited = true;
        return true;
    }
    return cdc_confirmed_lsn(w->conn, w->slot) >= w->lsn;
}

/*
 * Waits until the slot's confirmed_flush_lsn >= lsn while siphon (proc)
 * runs. Returns false at the timeout or as soon as siphon has exited, and
 * then prints its log (log_path).
 */
static CDC_UNUSED bool cdc_wait_caught_up(PGconn *c, const char *slot, uint64_t lsn,
                                          struct sp_proc *proc, const char *log_path,
                                          int timeout_ms)
{
    struct cdc_confirm_wait w = {c, slot, lsn, proc, false};
    bool ok = sp_test_wait_until(cdc_confirmed_or_exited, &w, timeout_ms) && !w.exited;
    if (!ok) {
        char want[24];
        char got[24];
        fprintf(stderr, "slot %s: confirmed %s, waited for %s%s\n", slot,
                cdc_lsn_fmt(cdc_confirmed_lsn(c, slot), got), cdc_lsn_fmt(lsn, want),
                w.exited ? "; siphon exited" : "");
        cdc_print_log(log_path);
    }
    return ok;
}

/* Waits until no walsender holds the slot (so its position is final). */
static CDC_UNUSED bool cdc_wait_slot_inactive(PGconn *c, const char *slot, int timeout_ms)
{
    return sp_test_sql_poll_until(c, "f", timeout_ms,
                                  "SELECT coalesce((SELECT active FROM pg_replication_slots"
                                  " WHERE slot_name = '%s'), false)",
                                  slot);
}

/* Drops slot (NULL: none) if it exists, once no walsender holds it: one may outlive siphon
 * by a moment. */
static CDC_UNUSED void cdc_drop_slot(PGconn *c, const char *slot)
{
    if (slot != NULL && cdc_wait_slot_inactive(c, slot, 10000)) {
        sp_test_sql(c,
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = '%s'",
                    slot);
    }
}

/* ---- statements that run while the test goes on ---------------------------- */

/* Opens a connection and sends sql on it without waiting for the result. */
static CDC_UNUSED PGconn *cdc_async_start(const struct sp_pg *pg, const char *sql)
{
    PGconn *c = sp_test_pg_connect(pg);
    if (PQsendQuery(c, sql) != 1) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "could not send %s: %s", sql, PQerrorMessage(c));
        PQfinish(c);
        fail_msg("%s", msg);
    }
    return c;
}

/* Whether the statement sent by cdc_async_start has finished (its result is ready). */
static CDC_UNUSED bool cdc_async_done(PGconn *c)
{
    if (PQconsumeInput(c) != 1) {
        return true; /* the connection failed: cdc_async_finish reports it */
    }
    return PQisBusy(c) == 0;
}

/* Waits up to timeout_ms for the statement, fails the test unless it succeeded, closes c. */
static CDC_UNUSED void cdc_async_finish(PGconn *c, int timeout_ms)
{
    int64_t deadline = cdc_now_ms() + timeout_ms;
    while (!cdc_async_done(c)) {
        int64_t left = deadline - cdc_now_ms();
        if (left <= 0) {
            PQfinish(c);
            fail_msg("statement still running after %d ms", timeout_ms);
        }
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN, .revents = 0};
        poll(&pfd, 1, left > 100 ? 100 : (int)left);
    }
    char msg[1024] = "";
    PGresult *res;
    while ((res = PQgetResult(c)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && msg[0] == '\0') {
            snprintf(msg, sizeof(msg), "statement failed: %s", PQresultErrorMessage(res));
        }
        PQclear(res);
    }
    if (msg[0] == '\0' && PQstatus(c) != CONNECTION_OK) {
        snprintf(msg, sizeof(msg), "connection lost: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    if (msg[0] != '\0') {
        fail_msg("%s", msg);
    }
}

/* ---- siphon's output --------------------------------------------------------- */

/* One output line, reduced to what the tests check. */
struct cdc_ev {
    uint64_t commit_lsn; /* from "id": "<commit LSN>:<seq>" */
    uint32_t seq;
    char op;
    long key;    /* key.id */
    long val;    /* after.<val_col>, or 0 without val_col or for a delete */
    size_t line; /* 0-based line number in the file */
    size_t end;  /* byte offset just past the line's '\n' */
    bool dup;    /* an earlier line has the same id (set by cdc_mark_dups) */
};

struct cdc_output {
    struct cdc_ev *ev; /* the valid lines, in file order */
    size_t n;
    size_t lines;        /* complete lines in the file */
    size_t invalid;      /* lines that are not valid JSON or lack a field */
    char *first_invalid; /* the first of them (malloc'd, cut to 300 bytes), or NULL */
    size_t first_invalid_line;
    bool partial_tail; /* the file ends with bytes after the last '\n' */
    size_t bytes;
};

/* The number at path of json; fails the test when json has nothing there (sp_test_json_get). */
static CDC_UNUSED long cdc_json_get_long(const char *json, const char *path)
{
    char *s = sp_test_json_get(json, path);
    long v = strtol(s, NULL, 10);
    free(s);
    return v;
}

static CDC_UNUSED bool cdc_json_long(const char *line, const char *path, long *out)
{
    char *text = NULL;
    enum sp_test_json k = sp_test_json_lookup(line, path, &text);
    bool ok = k == SP_TEST_JSON_NUMBER && text != NULL;
    if (ok) {
        char *endp = NULL;
        *out = strtol(text, &endp, 10);
        ok = *endp == '\0';
    }
    free(text);
    return ok;
}

/*
 * Parses one line. The first lookup validates the whole line (strict JSON),
 * so a line cut short or two lines run together are invalid. val_col: the
 * column of "after" to read into val, or NULL.
 */
static CDC_UNUSED bool cdc_parse_event(const char *line, const char *val_col, struct cdc_ev *ev)
{
    memset(ev, 0, sizeof(*ev));
    char *id = NULL;
    if (sp_test_json_lookup(line, "id", &id) != SP_TEST_JSON_STRING || id == NULL) {
        free(id);
        return false;
    }
    unsigned int hi = 0;
    unsigned int lo = 0;
    unsigned int seq = 0;
    int got = sscanf(id, "%X/%X:%u", &hi, &lo, &seq);
    free(id);
    if (got != 3) {
        return false;
    }
    ev->commit_lsn = ((uint64_t)hi << 32) | lo;
    ev->seq = seq;
    char *op = NULL;
    if (sp_test_json_lookup(line, "op", &op) != SP_TEST_JSON_STRING || op == NULL ||
        strlen(op) != 1) {
        free(op);
        return false;
    }
    ev->op = op[0];
    free(op);
    if (!cdc_json_long(line, "key.id", &ev->key)) {
        return false;
    }
    if (val_col != NULL && ev->op != 'd') {
        char path[128];
        snprintf(path, sizeof(path), "after.%s", val_col);
        if (!cdc_json_long(line, path, &ev->val)) {
            return false;
        }
    }
    return true;
}

static CDC_UNUSED void cdc_output_free(struct cdc_output *o)
{
    free(o->ev);
    free(o->first_invalid);
    memset(o, 0, sizeof(*o));
}

/*
 * Parses the bytes of an output file (or what was read from a FIFO) line by
 * line. Lines must end with '\n'; bytes after the last one are a partial
 * tail, not a line.
 */
static CDC_UNUSED void cdc_output_parse(const char *data, size_t len, const char *val_col,
                                        struct cdc_output *o)
{
    memset(o, 0, sizeof(*o));
    o->bytes = len;
    size_t cap = 1024;
    o->ev = malloc(cap * sizeof(*o->ev));
    assert_non_null(o->ev);
    char *line = NULL;
    size_t line_cap = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        if (nl == NULL) {
            o->partial_tail = true;
            break;
        }
        size_t n = (size_t)(nl - (data + pos));
        if (n + 1 > line_cap) {
            line_cap = n + 1 > 2 * line_cap ? n + 1 : 2 * line_cap;
            line = realloc(line, line_cap);
            assert_non_null(line);
        }
        memcpy(line, data + pos, n);
        line[n] = '\0';
        struct cdc_ev ev;
        if (memchr(line, '\0', n) == NULL && cdc_parse_event(line, val_col, &ev)) {
            if (o->n == cap) {
                cap *= 2;
                o->ev = realloc(o->ev, cap * sizeof(*o->ev));
                assert_non_null(o->ev);
            }
            ev.line = o->lines;
            ev.end = pos + n + 1;
            o->ev[o->n++] = ev;
        } else {
            if (o->invalid == 0) {
                size_t cut = n > 300 ? 300 : n;
                o->first_invalid = malloc(cut + 1);
                assert_non_null(o->first_invalid);
                memcpy(o->first_invalid, line, cut);
                o->first_invalid[cut] = '\0';
                o->first_invalid_line = o->lines;
            }
            o->invalid++;
        }
        o->lines++;
        pos += n + 1;
    }
    free(line);
}

/* Reads and parses an output file (missing: no lines). */
static CDC_UNUSED void cdc_output_load(const char *path, const char *val_col, struct cdc_output *o)
{
    size_t len = 0;
    char *data = sp_test_read_file(path, &len);
    cdc_output_parse(data != NULL ? data : "", data != NULL ? len : 0, val_col, o);
    free(data);
}

static CDC_UNUSED int cdc_cmp_id_then_line(const void *a, const void *b)
{
    const struct cdc_ev *x = *(const struct cdc_ev *const *)a;
    const struct cdc_ev *y = *(const struct cdc_ev *const *)b;
    if (x->commit_lsn != y->commit_lsn) {
        return x->commit_lsn < y->commit_lsn ? -1 : 1;
    }
    if (x->seq != y->seq) {
        return x->seq < y->seq ? -1 : 1;
    }
    return x->line < y->line ? -1 : (x->line > y->line ? 1 : 0);
}

/*
 * Marks every line whose id appeared on an earlier line as dup and returns
 * the number of distinct ids. *mismatch (if not NULL) gets the number of
 * duplicates that differ from the first line with their id in op, key or
 * val: a replay must repeat the same change.
 */
static CDC_UNUSED size_t cdc_mark_dups(struct cdc_output *o, size_t *mismatch)
{
    size_t distinct = 0;
    size_t bad = 0;
    struct cdc_ev **idx = malloc((o->n ? o->n : 1) * sizeof(*idx));
    assert_non_null(idx);
    for (size_t i = 0; i < o->n; i++) {
        idx[i] = &o->ev[i];
        o->ev[i].dup = false;
    }
    qsort(idx, o->n, sizeof(*idx), cdc_cmp_id_then_line);
    for (size_t i = 0; i < o->n; i++) {
        if (i > 0 && idx[i]->commit_lsn == idx[i - 1]->commit_lsn &&
            idx[i]->seq == idx[i - 1]->seq) {
            idx[i]->dup = true;
            /* Equal to the previous one of the run, hence to the first. */
            if (idx[i]->op != idx[i - 1]->op || idx[i]->key != idx[i - 1]->key ||
                idx[i]->val != idx[i - 1]->val) {
                bad++;
            }
        } else {
            distinct++;
        }
    }
    free(idx);
    if (mismatch != NULL) {
        *mismatch = bad;
    }
    return distinct;
}

#endif
