// SPDX-License-Identifier: Apache-2.0
/*
 * The Lua engine of the script flow (flow/script.c): transform, drop, fan
 * out, errors with the script's file:line, the instruction budget, the
 * memory limit, the sandbox, and how values keep their PostgreSQL type.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "flow/script.h"
#include "source/pg/types.h"
#include "telemetry/log.h"
#include "util/buf.h"
#include "util/mem.h"

#define NCOLS 6

/* A table orders(id int4 key, status text, total numeric, meta jsonb, created timestamptz,
 * note text) and one insert of it. */
struct fx {
    struct sp_relation *rel;
    struct sp_event *ev;
    char *json[NCOLS];
    size_t len[NCOLS];
    struct sp_script_row after;
    struct sp_script_input in;
    char key[32];
    char path[64];
    struct sp_script *s;
    struct sp_script_result res;
    struct sp_err err;
};

static const struct {
    const char *name;
    uint32_t oid;
    const char *text; /* NULL: SQL NULL */
} cols[NCOLS] = {
    {"id", 23, "42"},
    {"status", 25, "paid"},
    {"total", 1700, "19.90"},
    {"meta", 3802, "{\"gift\": true, \"tags\": [\"a\", \"b\"]}"},
    {"created", 1184, "2026-11-21 10:00:00.5+00"},
    {"note", 25, NULL},
};

static void fx_set_id(struct fx *f, const char *id)
{
    f->ev->after->cols[0].data = id;
    f->ev->after->cols[0].len = (uint32_t)strlen(id);
    free(f->json[0]);
    f->json[0] = sp_xstrdup(id);
    f->len[0] = strlen(id);
    snprintf(f->key, sizeof(f->key), "{\"id\":%s}", id);
    f->in.key_len = strlen(f->key);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    sp_log_setup(SP_LOG_ERROR, false);
    struct sp_relation *rel = sp_xcalloc(1, sizeof(*rel));
    rel->oid = 16400;
    rel->schema = sp_xstrdup("public");
    rel->table = sp_xstrdup("orders");
    rel->replident = 'd';
    rel->ncols = NCOLS;
    rel->cols = sp_xcalloc(NCOLS, sizeof(*rel->cols));
    rel->refs = 1;
    struct sp_event *ev = sp_event_new(SP_OP_INSERT, 256);
    ev->rel = sp_relation_ref(rel);
    ev->commit_lsn = 1000;
    ev->lsn = 950;
    ev->seq = 1;
    ev->xid = 771;
    ev->commit_time_us = INT64_C(1763719200500000);
    ev->source_name = "db";
    ev->after = sp_event_tuple(ev, NCOLS);
    struct sp_buf b;
    sp_buf_init(&b);
    for (int i = 0; i < NCOLS; i++) {
        rel->cols[i].name = sp_xstrdup(cols[i].name);
        rel->cols[i].type_oid = cols[i].oid;
        rel->cols[i].typmod = -1;
        rel->cols[i].type = sp_type_builtin(cols[i].oid);
        rel->cols[i].key = i == 0;
        struct sp_datum *d = &ev->after->cols[i];
        sp_buf_reset(&b);
        if (cols[i].text == NULL) {
            d->kind = SP_DATUM_NULL;
            sp_buf_puts(&b, "null");
        } else {
            d->kind = SP_DATUM_TEXT;
            d->data = cols[i].text;
            d->len = (uint32_t)strlen(cols[i].text);
            struct sp_err err;
            assert_int_equal(sp_pgtext_to_json(rel->cols[i].type, d->data, d->len, &b, &err), 0);
        }
        f->json[i] = sp_xstrndup(b.data, b.len);
        f->len[i] = b.len;
    }
    sp_buf_fini(&b);
    f->rel = rel;
    f->ev = ev;
    f->after.json = (const char *const *)f->json;
    f->after.len = f->len;
    f->in.ev = ev;
    f->in.after = &f->after;
    snprintf(f->key, sizeof(f->key), "{\"id\":42}");
    f->in.key = f->key;
    f->in.key_len = strlen(f->key);
    sp_err_clear(&f->err);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    sp_script_result_fini(&f->res);
    sp_script_free(f->s);
    if (f->path[0] != '\0') {
        unlink(f->path);
    }
    for (int i = 0; i < NCOLS; i++) {
        free(f->json[i]);
    }
    sp_event_free(f->ev);
    sp_relation_unref(f->rel);
    free(f);
    return 0;
}

/* Writes src to a temp .lua file and compiles it. */
static struct sp_script *fx_file(struct fx *f, const char *src, int64_t budget, size_t mem)
{
    if (f->path[0] != '\0') {
        unlink(f->path);
    }
    snprintf(f->path, sizeof(f->path), "/tmp/sp-script-XXXXXX.lua");
    int fd = mkstemps(f->path, 4);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, src, strlen(src)), (ssize_t)strlen(src));
    close(fd);
    struct sp_script_opts o = {.path = f->path, .budget = budget, .memory_limit = mem};
    f->s = sp_script_compile(&o, &f->err);
    return f->s;
}

static struct sp_script *fx_inline(struct fx *f, const char *src)
{
    struct sp_script_opts o = {.source = src, .chunkname = "inline"};
    f->s = sp_script_compile(&o, &f->err);
    if (f->s == NULL) {
        fail_msg("compile: %s", f->err.msg);
    }
    return f->s;
}

static int fx_call(struct fx *f)
{
    sp_script_result_fini(&f->res);
    sp_err_clear(&f->err);
    return sp_script_call(f->s, &f->in, &f->res, &f->err);
}

static int col_of(const struct sp_event *ev, const char *name)
{
    for (int i = 0; i < ev->rel->ncols; i++) {
        if (strcmp(ev->rel->cols[i].name, name) == 0) {
            return i;
        }
    }
    fail_msg("no column %s", name);
    return -1;
}

static const char *text_of(const struct sp_event *ev, const char *name)
{
    const struct sp_datum *d = &ev->after->cols[col_of(ev, name)];
    return d->kind == SP_DATUM_TEXT ? d->data : NULL;
}

static void has_error_at(struct fx *f, const char *where)
{
    char want[192];
    snprintf(want, sizeof(want), "%s:", where);
    if (strstr(f->err.msg, want) != f->err.msg) {
        fail_msg("error \"%s\" does not start with \"%s\"", f->err.msg, want);
    }
}

static void renames_a_field_and_changes_a_value(void **state)
{
    struct fx *f = *state;
    fx_inline(f, "function transform(e)\n"
                 "  e.after.state = e.after.status\n"
                 "  e.after.status = nil\n"
                 "  e.after.total = '20.00'\n"
                 "  e.after.count = 3\n"
                 "  return e\n"
                 "end\n");
    assert_int_equal(fx_call(f), 0);
    assert_int_equal(f->res.verdict, SP_SCRIPT_CHANGED);
    assert_int_equal(f->res.n, 1);
    const struct sp_event *ev = f->res.out[0];
    assert_int_equal(ev->op, SP_OP_INSERT);
    /* The input's columns in their order, then new ones by name. */
    const char *names[] = {"id", "total", "meta", "created", "note", "count", "state"};
    assert_int_equal(ev->rel->ncols, 7);
    for (int i = 0; i < 7; i++) {
        assert_string_equal(ev->rel->cols[i].name, names[i]);
    }
    /* Unchanged values keep their PostgreSQL text and type, renamed or not. */
    assert_string_equal(text_of(ev, "state"), "paid");
    assert_int_equal(ev->rel->cols[col_of(ev, "state")].type_oid, 25);
    assert_string_equal(text_of(ev, "created"), "2026-11-21 10:00:00.5+00");
    assert_int_equal(ev->rel->cols[col_of(ev, "created")].type_oid, 1184);
    assert_string_equal(text_of(ev, "id"), "42");
    assert_true(ev->rel->cols[col_of(ev, "id")].key);
    assert_null(text_of(ev, "note"));
    /* Changed values keep a compatible type; new ones get one from their Lua type. */
    assert_string_equal(text_of(ev, "total"), "20.00");
    assert_int_equal(ev->rel->cols[col_of(ev, "total")].type_oid, 1700);
    assert_string_equal(text_of(ev, "count"), "3");
    assert_int_equal(ev->rel->cols[col_of(ev, "count")].type_oid, 20);
    /* The columns changed: the key stays the one the script saw. */
    assert_non_null(ev->key_override);
    assert_string_equal(ev->key_override, "{\"id\":42}");
    assert_null(ev->id_override);
    assert_int_equal(ev->commit_lsn, 1000);
    assert_int_equal(ev->seq, 1);
}

static void json_values_and_null_reach_the_script_typed(void **state)
{
    struct fx *f = *state;
    fx_inline(f, "function transform(e)\n"
                 "  assert(e.op == 'c' and e.before == nil)\n"
                 "  assert(math.type(e.after.id) == 'integer' and e.after.id == 42)\n"
                 "  assert(e.after.total == '19.90')\n"
                 "  assert(e.after.meta.gift == true and e.after.meta.tags[2] == 'b')\n"
                 "  assert(e.after.note == null and siphon.null == null)\n"
                 "  assert(e.after.created == '2026-11-21T10:00:00.5Z')\n"
                 "  assert(e.key.id == 42 and e.id == '0/3E8:1')\n"
                 "  assert(e.source.table == 'orders' and e.source.schema == 'public')\n"
                 "  assert(e.source.commit_lsn == 1000 and e.source.txId == 771)\n"
                 "  assert(e.source.ts_ms == 1763719200500 and e.source.name == 'db')\n"
                 "  e.after.meta.gift = false\n"
                 "  return e\n"
                 "end\n");
    assert_int_equal(fx_call(f), 0);
    assert_int_equal(f->res.n, 1);
    const struct sp_event *ev = f->res.out[0];
    /* Changed in place: written anew as JSON, member order kept, type kept. */
    assert_string_equal(text_of(ev, "meta"), "{\"gift\":false,\"tags\":[\"a\",\"b\"]}");
    assert_int_equal(ev->rel->cols[col_of(ev, "meta")].type_oid, 3802);
    /* Same columns: the relation is the input's, and the key is not overridden. */
    assert_ptr_equal(ev->rel, f->rel);
    assert_null(ev->key_override);
}

static void returning_the_event_untouched_leaves_it_unchanged(void **state)
{
    struct fx *f = *state;
    fx_inline(f, "function transform(e) local m = e.after.meta; e.after.meta = m; return e end");
    assert_int_equal(fx_call(f), 0);
    assert_int_equal(f->res.verdict, SP_SCRIPT_UNCHANGED);
    assert_int_equal(f->res.n, 0);
}

static void nil_drops_the_event(void **state)
{
    struct fx *f = *state;
    fx_inline(f, "function transform(e) if e.after.id == 42 then return nil end return e end");
    assert_int_equal(fx_call(f), 0);
    assert_int_equal(f->res.verdict, SP_SCRIPT_CHANGED);
    assert_int_equal(f->res.n, 0);
    fx_set_id(f, "7");
    assert_int_equal(fx_call(f), 0);
    assert_int_equal(f->res.verdict, SP_SCRIPT_UNCHANGED);
}

static void a_list_fans_out_with_distinct_ids(void **state)
{
    struct fx *f = *state;
    fx_inline(f, "function transform(e)\n"
                 "  local copy = {op = 'c', after = {id = 43, status = 'copy'},\n"
                 "                key = {id = 43}, destination = 'audit'}\n"
                 "  return {e, copy}\n"
                 "end\n");
    assert_int_equal(fx_call(f), 0);
    assert_int_equal(f->res.verdict, SP_SCRIPT_CHANGED);
    assert_int_equal(f->res.n, 2);
    assert_string_equal(f->res.out[0]->id_override, "0/3E8:1.1");
    assert_string_equal(f->res.out[1]->id_override, "0/3E8:1.2");
    assert_string_equal(text_of(f->res.out[0], "status"), "paid");
    const struct sp_event *c = f->res.out[1];
    assert_int_equal(c->rel->ncols, 2);
    assert_string_equal(text_of(c, "id"), "43");
    assert_int_equal(c->rel->cols[col_of(c, "id")].type_oid, 23);
    assert_string_equal(text_of(c, "status"), "copy");
    assert_string_equal(c->key_override, "{\"id\":43}");
    assert_string_equal(c->dest, "audit");
}

static void runtime_error_names_file_and_line(void **state)
{
    struct fx *f = *state;
    assert_non_null(fx_file(f,
                            "-- orders\n"
                            "function transform(e)\n"
                            "  return e.after.nothing.here\n"
                            "end\n",
                            0, 0));
    assert_int_not_equal(fx_call(f), 0);
    char where[160];
    snprintf(where, sizeof(where), "%s:3", f->path);
    has_error_at(f, where);
    assert_non_null(strstr(f->err.msg, "attempt to index a nil value"));
    /* A C function's argument error gets the calling line too. */
    sp_script_free(f->s);
    assert_non_null(fx_file(f, "function transform(e)\n\n  return string.rep()\nend\n", 0, 0));
    assert_int_not_equal(fx_call(f), 0);
    snprintf(where, sizeof(where), "%s:3", f->path);
    has_error_at(f, where);
    assert_non_null(strstr(f->err.msg, "bad argument #1 to 'rep'"));
}

static void syntax_error_names_file_and_line(void **state)
{
    struct fx *f = *state;
    assert_null(fx_file(f, "function transform(e)\n  local x = \n  return e\nend\n", 0, 0));
    char where[160];
    snprintf(where, sizeof(where), "script: %s:3:", f->path);
    assert_non_null(strstr(f->err.msg, where));
    assert_non_null(strstr(f->err.msg, "unexpected symbol"));
    unlink(f->path);
    /* A missing function, a top-level error. */
    assert_null(fx_file(f, "function other(e) return e end\n", 0, 0));
    assert_non_null(strstr(f->err.msg, "no function \"transform\""));
    unlink(f->path);
    assert_null(fx_file(f, "local a = 1\nerror('refused')\n", 0, 0));
    snprintf(where, sizeof(where), "script: %s:2: refused", f->path);
    assert_string_equal(f->err.msg, where);
}

static void returning_a_non_event_is_an_error_at_the_function(void **state)
{
    struct fx *f = *state;
    assert_non_null(fx_file(f, "\nfunction transform(e)\n  return 42\nend\n", 0, 0));
    assert_int_not_equal(fx_call(f), 0);
    char where[160];
    snprintf(where, sizeof(where), "%s:2", f->path);
    has_error_at(f, where);
    assert_non_null(strstr(f->err.msg, "transform returned a number"));
}

static void runaway_loop_is_stopped_by_the_budget(void **state)
{
    struct fx *f = *state;
    assert_non_null(fx_file(f,
                            "function transform(e)\n"
                            "  if e.after.id == 42 then\n"
                            "    while true do end\n"
                            "  end\n"
                            "  return e\n"
                            "end\n",
                            100000, 0));
    struct timespec t0;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_not_equal(fx_call(f), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    char where[160];
    snprintf(where, sizeof(where), "%s:3", f->path);
    has_error_at(f, where);
    if (strstr(f->err.msg, "instruction budget of 100000 exceeded") == NULL) {
        fail_msg("%s", f->err.msg);
    }
    assert_true(t1.tv_sec - t0.tv_sec < 2);
    /* The state is still good for the next event. */
    fx_set_id(f, "7");
    assert_int_equal(fx_call(f), 0);
    assert_int_equal(f->res.verdict, SP_SCRIPT_UNCHANGED);
}

static void memory_bomb_is_stopped_by_the_limit(void **state)
{
    struct fx *f = *state;
    assert_non_null(fx_file(f,
                            "keep = {}\n"
                            "function transform(e)\n"
                            "  if e.after.id == 42 then\n"
                            "    for i = 1, 1e9 do keep[i] = string.rep('x', 1000) .. i end\n"
                            "  end\n"
                            "  if e.after.id == 43 then return string.rep('x', 1 << 30) end\n"
                            "  keep = {}\n"
                            "  return e\n"
                            "end\n",
                            INT32_MAX, 8 << 20));
    assert_int_not_equal(fx_call(f), 0);
    assert_non_null(strstr(f->err.msg, "not enough memory"));
    /* Lua reports no line for memory errors: the function's definition is named. */
    char where[160];
    snprintf(where, sizeof(where), "%s:2", f->path);
    has_error_at(f, where);
    assert_non_null(strstr(f->err.hint, "memory limit is 8388608 bytes"));
    fx_set_id(f, "43");
    assert_int_not_equal(fx_call(f), 0);
    if (strstr(f->err.msg, "not enough memory") == NULL) {
        fail_msg("%s", f->err.msg);
    }
    /* The next event runs (and frees what the bomb kept). */
    fx_set_id(f, "7");
    assert_int_equal(fx_call(f), 0);
    assert_int_equal(f->res.verdict, SP_SCRIPT_UNCHANGED);
}

static void sandbox_has_no_io_os_load_or_debug(void **state)
{
    struct fx *f = *state;
    fx_inline(f, "function transform(e)\n"
                 "  local gone = {io, os, require, load, loadfile, dofile, debug, package,\n"
                 "                collectgarbage, coroutine, string.dump}\n"
                 "  for i = 1, 11 do assert(gone[i] == nil, i) end\n"
                 "  assert(('x'):upper() == 'X' and table.concat({1, 2}) == '12')\n"
                 "  assert(math.floor(2.5) == 2 and utf8.char(228) == '\\u{e4}')\n"
                 "  e.after.status = 'sandboxed'\n"
                 "  return e\n"
                 "end\n");
    assert_int_equal(fx_call(f), 0);
    assert_string_equal(text_of(f->res.out[0], "status"), "sandboxed");
    sp_script_free(f->s);
    f->s = NULL;
    /* Reaching for them is an error at the line that does. */
    assert_null(fx_file(f, "function transform(e) return e end\nos.execute('true')\n", 0, 0));
    char where[160];
    snprintf(where, sizeof(where), "%s:2", f->path);
    assert_non_null(strstr(f->err.msg, where));
    assert_non_null(strstr(f->err.msg, "global 'os'"));
    /* Bytecode is refused. */
    struct sp_script_opts o = {.source = "\x1bLua\x54\x00", .chunkname = "bin"};
    assert_null(sp_script_compile(&o, &f->err));
    assert_non_null(strstr(f->err.msg, "binary chunk"));
}

/* event.source is made when read; an event kept past its call has none (no stale values). */
static void source_is_made_when_read(void **state)
{
    struct fx *f = *state;
    fx_inline(f, "function transform(e)\n"
                 "  assert(rawget(e, 'source') == nil)\n"
                 "  if kept then\n"
                 "    assert(kept.source == nil) -- not read in its own call: none later\n"
                 "    assert(e.source.table == 'orders' and rawget(e, 'source') == e.source)\n"
                 "  else\n"
                 "    kept = e\n"
                 "  end\n"
                 "  return e\n"
                 "end\n");
    for (int i = 0; i < 2; i++) {
        int rc = fx_call(f);
        if (rc != 0) {
            fail_msg("call %d: %s", i + 1, f->err.msg);
        }
    }
}

/* event.key is made when read; set before or after reading, the returned one counts. */
static void key_is_made_when_read(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *body;
        const char *key; /* the key override, NULL: none */
        enum sp_script_verdict verdict;
    } cases[] = {
        {"assert(rawget(e, 'key') == nil); return e", NULL, SP_SCRIPT_UNCHANGED},
        {"assert(e.key.id == 42 and rawget(e, 'key') == e.key); return e", NULL,
         SP_SCRIPT_UNCHANGED},
        {"e.key = nil; assert(e.key == nil); return e", "", SP_SCRIPT_CHANGED},
        {"local k = e.key; e.key = nil; assert(e.key == nil); return e", "", SP_SCRIPT_CHANGED},
        {"e.key = {id = 7}; return e", "{\"id\":7}", SP_SCRIPT_CHANGED},
        {"e.key.id = 8; return e", "{\"id\":8}", SP_SCRIPT_CHANGED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char src[256];
        snprintf(src, sizeof(src), "function transform(e) %s end", cases[i].body);
        sp_script_free(f->s);
        fx_inline(f, src);
        if (fx_call(f) != 0) {
            fail_msg("%s: %s", cases[i].body, f->err.msg);
        }
        assert_int_equal(f->res.verdict, cases[i].verdict);
        if (cases[i].verdict == SP_SCRIPT_CHANGED) {
            assert_int_equal(f->res.n, 1);
            assert_non_null(f->res.out[0]->key_override);
            assert_string_equal(f->res.out[0]->key_override, cases[i].key);
        }
    }
}

/* A row copied into a plain table keeps its values' types; cleared in a loop, it is empty. */
static void a_row_copied_and_cleared_in_loops(void **state)
{
    struct fx *f = *state;
    fx_inline(f, "function transform(e)\n"
                 "  local copy = {}\n"
                 "  for k, v in pairs(e.after) do copy[k] = v end\n"
                 "  for k in pairs(e.after) do e.after[k] = nil end\n"
                 "  assert(next(e.after) == nil and e.after.id == nil)\n"
                 "  copy.extra = true\n"
                 "  return {op = 'c', after = copy, key = e.key}\n"
                 "end\n");
    if (fx_call(f) != 0) {
        fail_msg("%s", f->err.msg);
    }
    assert_int_equal(f->res.n, 1);
    const struct sp_event *ev = f->res.out[0];
    assert_int_equal(ev->rel->ncols, NCOLS + 1);
    assert_string_equal(ev->rel->cols[NCOLS].name, "extra");
    assert_int_equal(ev->rel->cols[NCOLS].type_oid, 16);
    for (int i = 0; i < NCOLS; i++) {
        assert_string_equal(ev->rel->cols[i].name, cols[i].name);
        assert_int_equal(ev->rel->cols[i].type_oid, cols[i].oid);
        if (cols[i].text == NULL) {
            assert_int_equal(ev->after->cols[i].kind, SP_DATUM_NULL);
        } else {
            assert_string_equal(ev->after->cols[i].data, cols[i].text);
        }
    }
}

/* Rows are converted when read, yet behave as tables: pairs, next, a row kept past its call. */
static void rows_behave_as_tables(void **state)
{
    struct fx *f = *state;
    fx_inline(f, "local kept\n"
                 "local function names(row)\n"
                 "  local n = {}\n"
                 "  for k in pairs(row) do n[#n + 1] = k end\n"
                 "  return table.concat(n, ',')\n"
                 "end\n"
                 "function transform(e)\n"
                 "  assert(names(e.after) == 'id,status,total,meta,created,note', names(e.after))\n"
                 "  assert(next(e.after) == 'id' and next(e.after, 'note') == nil)\n"
                 "  assert(type(e.after) == 'table' and getmetatable(e.after) == 'siphon.row')\n"
                 "  e.after.status = nil\n"
                 "  e.after.extra = 1\n"
                 "  local got = names(e.after)\n"
                 "  assert(got == 'id,total,meta,created,note,extra', got)\n"
                 "  if kept == nil then kept = e.after return e end\n"
                 "  assert(kept.id == 42 and kept.status == nil and kept.extra == 1)\n"
                 "  assert(kept.total == '19.90' and e.after.id == 7)\n"
                 "  e.after.prev = kept\n"
                 "  e.after.total = null\n"
                 "  return {e, {op = 'c', after = e.after, key = e.key}}\n"
                 "end\n");
    char want[512];
    snprintf(want, sizeof(want),
             "{\"id\":42,\"total\":%s,\"meta\":%s,\"created\":%s,\"note\":null,"
             "\"extra\":1}",
             f->json[2], f->json[3], f->json[4]);
    assert_int_equal(fx_call(f), 0);
    assert_int_equal(f->res.n, 1);
    fx_set_id(f, "7");
    if (fx_call(f) != 0) {
        fail_msg("%s", f->err.msg);
    }
    assert_int_equal(f->res.n, 2);
    for (int i = 0; i < 2; i++) {
        const struct sp_event *ev = f->res.out[i];
        const char *cols_want[] = {"id", "total", "meta", "created", "note", "extra", "prev"};
        assert_int_equal(ev->rel->ncols, 7);
        for (int c = 0; c < 7; c++) {
            assert_string_equal(ev->rel->cols[c].name, cols_want[c]);
        }
        assert_string_equal(text_of(ev, "id"), "7");
        /* set to null: SQL NULL, the column keeps its type */
        assert_int_equal(ev->after->cols[col_of(ev, "total")].kind, SP_DATUM_NULL);
        assert_int_equal(ev->rel->cols[col_of(ev, "total")].type_oid, 1700);
        /* untouched: the PostgreSQL text and type as they came */
        assert_string_equal(text_of(ev, "created"), "2026-11-21 10:00:00.5+00");
        assert_int_equal(ev->rel->cols[col_of(ev, "created")].type_oid, 1184);
        /* the row of the first call, as JSON */
        assert_string_equal(text_of(ev, "prev"), want);
        assert_int_equal(ev->rel->cols[col_of(ev, "prev")].type_oid, 114);
    }
    assert_string_equal(f->res.out[1]->id_override, "0/3E8:1.2");
}

/* A function that renames one field, called many times: every call gives one event. */
static void rename_runs_fast_enough(void **state)
{
    struct fx *f = *state;
    fx_inline(f, "function transform(e)\n"
                 "  e.after.state = e.after.status\n"
                 "  e.after.status = nil\n"
                 "  return e\n"
                 "end\n");
    int n = 100000;
    struct timespec t0;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++) {
        assert_int_equal(fx_call(f), 0);
        assert_int_equal(f->res.n, 1);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    double rate = n / secs;
    /* A figure for people; speed targets are checked by bench/, not by timed tests. */
    fprintf(stderr, "script: %d calls renaming a field of a 6-column row in %.3f s: %.0f/s\n", n,
            secs, rate);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(renames_a_field_and_changes_a_value, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(json_values_and_null_reach_the_script_typed, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(returning_the_event_untouched_leaves_it_unchanged, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(nil_drops_the_event, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(a_list_fans_out_with_distinct_ids, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(runtime_error_names_file_and_line, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(syntax_error_names_file_and_line, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(returning_a_non_event_is_an_error_at_the_function, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(runaway_loop_is_stopped_by_the_budget, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(memory_bomb_is_stopped_by_the_limit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(sandbox_has_no_io_os_load_or_debug, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(source_is_made_when_read, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(key_is_made_when_read, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(rows_behave_as_tables, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(a_row_copied_and_cleared_in_loops, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(rename_runs_fast_enough, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("script", tests, NULL, NULL);
}
