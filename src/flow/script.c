// SPDX-License-Identifier: Apache-2.0
/*
 * The Lua engine of the `script` flow (flow/script.h): a sandboxed Lua 5.4
 * state per script, the event as a Lua table in, zero or more events out.
 *
 * Sandbox: only the base functions that cannot reach outside the state
 * (no load, loadfile, dofile, require, collectgarbage), string (without
 * string.dump), table, math and utf8; no io, os, debug, package, coroutine
 * (a coroutine gets a fresh instruction count). Scripts are loaded as text
 * only, never as bytecode. A count hook stops a call after `budget` VM
 * instructions; it stays installed between calls, so finalizers (__gc) are
 * bounded too. The allocator refuses to grow the state past memory_limit,
 * which Lua turns into a "not enough memory" error.
 *
 * Values keep their identity through the script: a column whose value the
 * script did not change (not assigned, or rawequal to what it read; json
 * values compared by their serialization) keeps its PostgreSQL text and
 * type, even when it was renamed, so only what the script wrote is
 * converted anew. Rows reach the script as row tables (script_row.h) whose
 * columns are converted when read, so a column the script leaves alone is
 * never converted at all.
 *
 * What it does not do: read the flow's configuration or decide what an
 * error becomes (the flow and the stream's recovery policy do).
 *
 * Naming: the lua_State is `L` here and in script_json.c, as in Lua's own
 * code and manual, although clang-tidy's naming check wants lower case.
 */
#include "flow/script.h"

#include <errno.h>
#include <inttypes.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow/script_json.h"
#include "flow/script_row.h"
#include "source/pg/types.h"
#include "telemetry/log.h"
#include "util/buf.h"
#include "util/mem.h"

#define SC_DEFAULT_BUDGET   1000000
#define SC_DEFAULT_MEMORY   (64u << 20)
#define SC_JSON_MAX_DEPTH   200
#define SC_DEFAULT_FUNCTION "transform"
#define SC_OID_BOOL         16
#define SC_OID_INT8         20
#define SC_OID_TEXT         25
#define SC_OID_JSON         114
#define SC_OID_FLOAT8       701
#define SC_NAMES_CACHE      8
#define SC_RELS_CACHE       8

/* Registry keys (addresses of these statics). */
static const char sc_key_env = 0;      /* the sandbox's global table */
static const char sc_key_event_mt = 0; /* the metatable of event tables */

/* The names table of a relation's columns (script_row.h), kept for the next events. */
struct sc_names {
    uint32_t oid;
    uint32_t version;
    int ncols;
    char **names;
    int ref; /* registry ref of the table; LUA_NOREF: unused */
};

struct sp_script {
    lua_State *L;
    size_t mem_used;
    size_t mem_limit;
    bool unlimited; /* while C code converts a result (it must not fail half way) */
    int64_t budget;
    char *function;
    char where[128]; /* "<chunk>:<line of the function>" for return-value errors */
    char chunk[96];  /* short source name as Lua prints it */
    int fn_ref;      /* registry ref of the function */
    struct sp_buf buf;
    const struct sp_event *cur; /* the event of the call in progress, for event.source */
    const char *cur_key;        /* and its key as JSON (NULL: none), for event.key */
    size_t cur_key_len;
    enum { SC_KEY_UNTOUCHED, SC_KEY_MADE, SC_KEY_ASSIGNED } key_state; /* event.key, this call */
    struct sc_names names[SC_NAMES_CACHE];
    int names_next; /* the entry replaced next */
    /* The input rows as the script left them, while its result is converted: [0] before,
     * [1] after; ncols 0 when absent. */
    struct sp_script_row_view rv[2];
    /* Relations of changed events, shared by the events of one shape (a reference each). */
    struct sp_relation *rels[SC_RELS_CACHE];
    int rels_next;
};

/* ---- allocator and budget ---- */

static void *sc_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct sp_script *s = ud;
    size_t old = ptr != NULL ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        s->mem_used -= old;
        return NULL;
    }
    if (nsize > old && !s->unlimited && s->mem_used + (nsize - old) > s->mem_limit) {
        return NULL; /* Lua raises "not enough memory" */
    }
    void *p = realloc(ptr, nsize);
    if (p != NULL) {
        s->mem_used = s->mem_used - old + nsize;
    }
    return p;
}

static void sc_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct sp_script *s = *(struct sp_script **)lua_getextraspace(L);
    luaL_error(L, "instruction budget of %I exceeded", (lua_Integer)s->budget);
}

static void sc_arm(struct sp_script *s)
{
    /* lua_sethook resets the count: each call starts with the whole budget. */
    lua_sethook(s->L, sc_hook, LUA_MASKCOUNT, (int)s->budget);
}

/*
 * Message handler: errors raised where Lua knows no position (memory, a C
 * function's argument check) get the innermost Lua function's file:line.
 */
static int sc_msgh(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    struct sp_script *s = *(struct sp_script **)lua_getextraspace(L);
    size_t cl = strlen(s->chunk);
    if (strncmp(msg, s->chunk, cl) == 0 && msg[cl] == ':') {
        lua_pushstring(L, msg);
        return 1;
    }
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, msg);
            return 1;
        }
    }
    lua_pushfstring(L, "%s: %s", s->chunk, msg);
    return 1;
}

/* ---- sandbox ---- */

static int sc_print(lua_State *L)
{
    struct sp_script *s = *(struct sp_script **)lua_getextraspace(L);
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) {
            luaL_addchar(&b, '\t');
        }
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    sp_log_info(&sp_log_main, "script %s: %s", s->chunk, lua_tostring(L, -1));
    return 0;
}

static int sc_null_tostring(lua_State *L)
{
    lua_pushliteral(L, "null");
    return 1;
}

static int sc_readonly(lua_State *L)
{
    return luaL_error(L, "null is read-only");
}

/* siphon.array(t): marks t as a JSON array (so an empty one is written as []). */
static int sc_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &sp_script_key_array);
    lua_setmetatable(L, -2);
    return 1;
}

static const char *const sc_base_allowed[] = {
    "assert",   "error",  "ipairs", "next",     "pairs",        "pcall",        "rawequal",
    "rawget",   "rawlen", "rawset", "select",   "setmetatable", "getmetatable", "tonumber",
    "tostring", "type",   "xpcall", "_VERSION", NULL,
};

static int sc_event_index(lua_State *L);
static int sc_event_newindex(lua_State *L);

static int sc_setup(lua_State *L)
{
    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
    lua_settop(L, 0);
    /* string.dump would hand out bytecode; the string metatable shares this table. */
    lua_getglobal(L, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);

    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, sc_event_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, sc_event_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &sc_key_event_mt);

    lua_newtable(L); /* env */
    lua_pushglobaltable(L);
    for (const char *const *n = sc_base_allowed; *n != NULL; n++) {
        lua_getfield(L, -1, *n);
        lua_setfield(L, -3, *n);
    }
    static const char *const libs[] = {LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME,
                                       LUA_UTF8LIBNAME, NULL};
    for (const char *const *n = libs; *n != NULL; n++) {
        lua_getfield(L, -1, *n);
        lua_setfield(L, -3, *n);
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, sc_print);
    lua_setfield(L, -2, "print");
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "_G");

    /* null: one read-only table, compared with == */
    lua_newtable(L);
    lua_newtable(L);
    lua_pushcfunction(L, sc_null_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, sc_readonly);
    lua_setfield(L, -2, "__newindex");
    lua_pushliteral(L, "siphon.null");
    lua_setfield(L, -2, "__name");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &sp_script_key_null);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "null");

    lua_newtable(L); /* siphon */
    lua_insert(L, -2);
    lua_setfield(L, -2, "null");
    lua_pushcfunction(L, sc_array);
    lua_setfield(L, -2, "array");
    lua_setfield(L, -2, "siphon");

    lua_newtable(L); /* array marker metatable */
    lua_pushliteral(L, "siphon.array");
    lua_setfield(L, -2, "__name");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &sp_script_key_array);

    lua_newtable(L); /* object member order, weak keys */
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &sp_script_key_order);

    sp_script_row_setup(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &sc_key_env);
    return 0;
}

/* ---- compile ---- */

static int sc_fail(struct sp_err *err, const char *msg)
{
    return sp_err_set(err, SP_EINVAL, "%s", msg);
}

struct sp_script *sp_script_compile(const struct sp_script_opts *opts, struct sp_err *err)
{
    if ((opts->path == NULL) == (opts->source == NULL)) {
        sp_err_set(err, SP_EINVAL, "a script needs a file or inline source, not both");
        return NULL;
    }
    struct sp_script *s = sp_xcalloc(1, sizeof(*s));
    s->budget = opts->budget > 0 ? opts->budget : SC_DEFAULT_BUDGET;
    if (s->budget > INT32_MAX) {
        s->budget = INT32_MAX;
    }
    s->mem_limit = opts->memory_limit > 0 ? opts->memory_limit : SC_DEFAULT_MEMORY;
    s->function = sp_xstrdup(opts->function != NULL ? opts->function : SC_DEFAULT_FUNCTION);
    s->fn_ref = LUA_NOREF;
    for (int i = 0; i < SC_NAMES_CACHE; i++) {
        s->names[i].ref = LUA_NOREF;
    }
    sp_buf_init(&s->buf);
    s->L = lua_newstate(sc_alloc, s);
    if (s->L == NULL) {
        sp_err_set(err, SP_EINVAL, "could not create a Lua state within %zu bytes", s->mem_limit);
        sp_script_free(s);
        return NULL;
    }
    lua_State *L = s->L;
    /* Each call leaves a few small tables behind: young garbage, which the generational mode
     * collects for less than the incremental one. */
    lua_gc(L, LUA_GCGEN, 0, 0);
    *(struct sp_script **)lua_getextraspace(L) = s;
    char *chunkname =
        opts->path != NULL
            ? sp_xasprintf("@%s", opts->path)
            : sp_xasprintf("=%s", opts->chunkname != NULL ? opts->chunkname : "script");
    lua_Debug ar;
    memset(&ar, 0, sizeof(ar));
    /* The short name Lua prints in messages (what sc_msgh looks for); long names are cut
     * by Lua, and then only sc_msgh's fallback is less tidy. */
    snprintf(s->chunk, sizeof(s->chunk), "%s", chunkname + 1);
    lua_pushcfunction(L, sc_setup);
    int rc = lua_pcall(L, 0, 0, 0);
    if (rc == LUA_OK) {
        rc = opts->path != NULL
                 ? luaL_loadfilex(L, opts->path, "t")
                 : luaL_loadbufferx(L, opts->source, strlen(opts->source), chunkname, "t");
    }
    free(chunkname);
    if (rc != LUA_OK) {
        sc_fail(err, lua_tostring(L, -1) != NULL ? lua_tostring(L, -1) : "could not load");
        sp_err_prefix(err, "script");
        sp_script_free(s);
        return NULL;
    }
    /* The chunk's globals are the sandbox's. */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &sc_key_env);
    lua_setupvalue(L, -2, 1);
    lua_pushcfunction(L, sc_msgh);
    lua_insert(L, -2);
    sc_arm(s);
    rc = lua_pcall(L, 0, 0, -2);
    if (rc != LUA_OK) {
        sc_fail(err, lua_tostring(L, -1) != NULL ? lua_tostring(L, -1) : "error");
        sp_err_prefix(err, "script");
        sp_script_free(s);
        return NULL;
    }
    lua_settop(L, 0);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &sc_key_env);
    lua_pushstring(L, s->function);
    lua_rawget(L, -2); /* raw: a metatable on _G must not run outside a protected call */
    if (!lua_isfunction(L, -1)) {
        sp_err_set(err, SP_EINVAL, "script %s: no function \"%s\" (it is %s)", s->chunk,
                   s->function, luaL_typename(L, -1));
        sp_err_hint(err, "define it as a global: function %s(event) ... return event end",
                    s->function);
        sp_script_free(s);
        return NULL;
    }
    lua_pushvalue(L, -1);
    if (lua_getinfo(L, ">S", &ar)) {
        snprintf(s->where, sizeof(s->where), "%s:%d", ar.short_src, ar.linedefined);
    } else {
        snprintf(s->where, sizeof(s->where), "%s", s->chunk);
    }
    s->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    return s;
}

void sp_script_free(struct sp_script *s)
{
    if (s == NULL) {
        return;
    }
    if (s->L != NULL) {
        lua_close(s->L);
    }
    for (int i = 0; i < SC_RELS_CACHE; i++) {
        sp_relation_unref(s->rels[i]);
    }
    for (int i = 0; i < SC_NAMES_CACHE; i++) {
        for (int c = 0; s->names[i].names != NULL && c < s->names[i].ncols; c++) {
            free(s->names[i].names[c]);
        }
        free(s->names[i].names);
    }
    free(s->function);
    sp_buf_fini(&s->buf);
    free(s);
}

/* ---- the event table ---- */

/*
 * Stack layout during a call (absolute indexes).
 */
enum {
    SC_I_MSGH = 1,
    SC_I_FN,
    SC_I_EVENT,
    SC_I_ORIG_BEFORE, /* the row tables given to the script (script_row.h), or nil */
    SC_I_ORIG_AFTER,
    SC_I_NAMES, /* the names table of the event's relation, or nil */
};

static void sc_set_str(lua_State *L, const char *name, const char *v)
{
    if (v != NULL) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, name);
    }
}

static void sc_set_int(lua_State *L, const char *name, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, name);
}

/* Pushes the source table of ev. */
static void sc_push_source(lua_State *L, const struct sp_event *ev)
{
    const struct sp_relation *rel = ev->rel;
    lua_createtable(L, 0, 10);
    sc_set_str(L, "name", ev->source_name);
    sc_set_str(L, "db", ev->db);
    sc_set_str(L, "schema", rel != NULL ? rel->schema : "");
    sc_set_str(L, "table", rel != NULL ? rel->table : (ev->msg_prefix ? ev->msg_prefix : ""));
    sc_set_int(L, "lsn", (lua_Integer)ev->lsn);
    sc_set_int(L, "commit_lsn", (lua_Integer)ev->commit_lsn);
    sc_set_int(L, "txId", (lua_Integer)ev->xid);
    sc_set_int(L, "ts_ms", (lua_Integer)(ev->commit_time_us / 1000));
    sc_set_str(L, "snapshot", ev->snapshot != NULL ? ev->snapshot : "false");
}

/*
 * __index of event tables: `source` and `key` are made on first use (most
 * scripts read neither) and kept in the table. Once its call is over an
 * event table has no metatable, so one kept by the script does not describe
 * a later event.
 */
static int sc_event_index(lua_State *L)
{
    struct sp_script *s = *(struct sp_script **)lua_getextraspace(L);
    const char *name = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "";
    if (s->cur != NULL && strcmp(name, "source") == 0) {
        sc_push_source(L, s->cur);
    } else if (s->cur != NULL && strcmp(name, "key") == 0 && s->cur_key != NULL &&
               s->key_state == SC_KEY_UNTOUCHED) {
        s->key_state = SC_KEY_MADE;
        if (sp_script_push_json(L, s->cur_key, s->cur_key_len) != 0) {
            return luaL_error(L, "the key of this event is not valid JSON");
        }
    } else {
        lua_pushnil(L);
        return 1;
    }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
}

/* __newindex of event tables: notes that the script set key before reading it. */
static int sc_event_newindex(lua_State *L)
{
    struct sp_script *s = *(struct sp_script **)lua_getextraspace(L);
    if (lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "key") == 0 &&
        s->key_state == SC_KEY_UNTOUCHED) {
        s->key_state = SC_KEY_ASSIGNED;
    }
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 0;
}

static bool sc_names_match(const struct sc_names *n, const struct sp_relation *rel)
{
    if (n->ref == LUA_NOREF || n->oid != rel->oid || n->version != rel->version ||
        n->ncols != rel->ncols) {
        return false;
    }
    for (int i = 0; i < rel->ncols; i++) {
        if (strcmp(n->names[i], rel->cols[i].name) != 0) {
            return false;
        }
    }
    return true;
}

/*
 * Pushes the names table of rel, made once per relation: the columns'
 * names are compared, as a flow before this one may have given events of
 * one relation other columns.
 */
static void sc_push_names(struct sp_script *s, const struct sp_relation *rel)
{
    lua_State *L = s->L;
    for (int i = 0; i < SC_NAMES_CACHE; i++) {
        if (sc_names_match(&s->names[i], rel)) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, s->names[i].ref);
            return;
        }
    }
    struct sc_names *n = &s->names[s->names_next];
    s->names_next = (s->names_next + 1) % SC_NAMES_CACHE;
    if (n->ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, n->ref);
        n->ref = LUA_NOREF;
    }
    for (int c = 0; n->names != NULL && c < n->ncols; c++) {
        free(n->names[c]);
    }
    free(n->names);
    n->names = NULL;
    sp_script_row_names(L, rel);
    lua_pushvalue(L, -1);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    n->names = sp_xcalloc((size_t)(rel->ncols > 0 ? rel->ncols : 1), sizeof(*n->names));
    for (int c = 0; c < rel->ncols; c++) {
        n->names[c] = sp_xstrdup(rel->cols[c].name);
    }
    n->oid = rel->oid;
    n->version = rel->version;
    n->ncols = rel->ncols;
    n->ref = ref;
}

static void sc_push_event(struct sp_script *s, const struct sp_script_input *in)
{
    lua_State *L = s->L;
    const struct sp_event *ev = in->ev;
    const struct sp_relation *rel = ev->rel;
    lua_createtable(L, 0, 8); /* SC_I_EVENT */
    lua_pushnil(L);           /* SC_I_ORIG_BEFORE */
    lua_pushnil(L);           /* SC_I_ORIG_AFTER */
    lua_pushnil(L);           /* SC_I_NAMES */
    char op[2] = {sp_op_char(ev->op), '\0'};
    lua_pushstring(L, op);
    lua_setfield(L, SC_I_EVENT, "op");
    char id[SP_EVENT_ID_BUFSZ];
    lua_pushstring(L, ev->id_override != NULL ? ev->id_override : sp_event_id(ev, id));
    lua_setfield(L, SC_I_EVENT, "id");

    /* event.source is built when the script first reads it (sc_event_index). */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &sc_key_event_mt);
    lua_setmetatable(L, SC_I_EVENT);

    if (ev->op == SP_OP_MESSAGE) {
        lua_createtable(L, 0, 3);
        sc_set_str(L, "prefix", ev->msg_prefix != NULL ? ev->msg_prefix : "");
        lua_pushlstring(L, ev->msg_content != NULL ? ev->msg_content : "", ev->msg_len);
        lua_setfield(L, -2, "content");
        lua_pushboolean(L, ev->msg_transactional);
        lua_setfield(L, -2, "transactional");
        lua_setfield(L, SC_I_EVENT, "message");
    }
    if (ev->dest != NULL) {
        lua_pushstring(L, ev->dest);
        lua_setfield(L, SC_I_EVENT, "destination");
    }
    if (rel != NULL) {
        /* Rows convert their columns when the script reads them (script_row.h). */
        sc_push_names(s, rel);
        lua_replace(L, SC_I_NAMES);
        const struct sp_script_row *rows[2] = {in->before, in->after};
        static const int slots[2] = {SC_I_ORIG_BEFORE, SC_I_ORIG_AFTER};
        static const char *const fields[2] = {"before", "after"};
        for (int k = 0; k < 2; k++) {
            if (rows[k] != NULL) {
                sp_script_row_push(L, SC_I_NAMES, rel->ncols, rows[k]->json, rows[k]->len);
                lua_pushvalue(L, -1);
                lua_replace(L, slots[k]);
                lua_setfield(L, SC_I_EVENT, fields[k]);
            }
        }
    }
    /* event.key is made when the script reads it (sc_event_index). */
    s->cur_key = in->key != NULL && in->key_len > 0 ? in->key : NULL;
    s->cur_key_len = in->key_len;
    s->key_state = SC_KEY_UNTOUCHED;
}

/* ---- the returned event -> struct sp_event ---- */

/* t[name] without metamethods: nothing the script set may run outside a protected call. */
static int sc_rawfield(lua_State *L, int t, const char *name)
{
    lua_pushstring(L, name);
    return lua_rawget(L, t);
}

/* The input column a value is, unchanged: its row (SC_I_ORIG_BEFORE/AFTER, 0: none) and index. */
struct sc_same {
    int img;
    int col;
};

struct sc_col {
    const char *name;           /* anchored by the returned table */
    int orig;                   /* index in the input relation, or -1 */
    const struct sp_type *type; /* resolved */
    uint32_t type_oid;
    int32_t typmod;
    bool key;
    bool has[2];            /* the returned after [0] and before [1] have a value */
    struct sc_same same[2]; /* and the input column it is unchanged */
};

struct sc_build {
    struct sp_script *s;
    const struct sp_script_input *in;
    int t;      /* the returned event table (absolute index) */
    int images; /* before/after tables present: indexes, 0 when absent */
    int before;
    int after;
    struct sc_col *cols;
    int ncols;
    int cap;
    bool changed;
};

static int sc_ret_err(struct sc_build *bd, struct sp_err *err, const char *fmt, const char *what)
{
    char msg[256];
    snprintf(msg, sizeof(msg), fmt, what);
    return sp_err_set(err, SP_EINVAL, "%s: %s returned %s", bd->s->where, bd->s->function, msg);
}

/* The input row of an input row table's slot (NULL for 0). */
static const struct sp_script_row *sc_in_row(const struct sc_build *bd, int img)
{
    return img == SC_I_ORIG_AFTER ? bd->in->after : img == SC_I_ORIG_BEFORE ? bd->in->before : NULL;
}

/* The view of an input row (SC_I_ORIG_BEFORE/AFTER), NULL when there is none. */
static const struct sp_script_row_view *sc_view(const struct sc_build *bd, int img)
{
    const struct sp_script_row_view *v = img == SC_I_ORIG_BEFORE  ? &bd->s->rv[0]
                                         : img == SC_I_ORIG_AFTER ? &bd->s->rv[1]
                                                                  : NULL;
    return v != NULL && v->names != 0 ? v : NULL;
}

/* SC_I_ORIG_AFTER/BEFORE when the table at idx is that input row table, else 0. */
static int sc_own_row(const struct sc_build *bd, int idx)
{
    lua_State *L = bd->s->L;
    if (lua_istable(L, SC_I_ORIG_AFTER) && lua_rawequal(L, idx, SC_I_ORIG_AFTER)) {
        return SC_I_ORIG_AFTER;
    }
    if (lua_istable(L, SC_I_ORIG_BEFORE) && lua_rawequal(L, idx, SC_I_ORIG_BEFORE)) {
        return SC_I_ORIG_BEFORE;
    }
    return 0;
}

/* The input relation's column named like the string at kidx, or -1. */
static int sc_orig_col(const struct sc_build *bd, int kidx)
{
    lua_State *L = bd->s->L;
    if (!lua_istable(L, SC_I_NAMES)) {
        return -1;
    }
    lua_pushvalue(L, kidx);
    int col = lua_rawget(L, SC_I_NAMES) == LUA_TNUMBER ? (int)lua_tointeger(L, -1) - 1 : -1;
    lua_pop(L, 1);
    return col;
}

/*
 * lua_next over the written table of an input row, skipping its columns and
 * removed names: pops a key, pushes the next added name and returns 1, or
 * returns 0 at the end.
 */
static bool sc_next_added(lua_State *L, const struct sp_script_row_view *v)
{
    while (lua_next(L, v->written) != 0) {
        bool skip = sp_script_row_is_removed(L, -1);
        lua_pop(L, 1);
        if (!skip && lua_type(L, -1) == LUA_TSTRING) {
            lua_pushvalue(L, -1);
            skip = lua_rawget(L, v->names) == LUA_TNUMBER;
            lua_pop(L, 1);
        }
        if (!skip) {
            return true;
        }
    }
    return false;
}

/* Columns of an image: the input's, in order, then new ones sorted. */
static int sc_collect(struct sc_build *bd, int img, struct sp_err *err)
{
    lua_State *L = bd->s->L;
    int earlier = bd->ncols; /* names are unique within one image */
    const struct sp_script_row_view *v = sc_view(bd, sc_own_row(bd, img));
    bool row = v == NULL && sp_script_row_is(L, img);
    int next_col = 0;
    lua_pushnil(L);
    for (;;) {
        int col = -1;
        if (v != NULL) {
            /* an input row: its columns in order, then the names it was given */
            /* next_col: the column looked at next; ncols + 1 once the added names are walked */
            while (next_col < v->ncols) {
                int c = next_col++;
                enum sp_script_row_state st = sp_script_row_view_col(L, v, c);
                if (st == SP_SCRIPT_ROW_WRITTEN) {
                    lua_pop(L, 1);
                }
                if (st != SP_SCRIPT_ROW_ABSENT) {
                    col = c;
                    break;
                }
            }
            if (col >= 0) {
                lua_pop(L, 1);
                lua_rawgeti(L, v->names, col + 1);
            } else {
                if (next_col == v->ncols) {
                    next_col++; /* the columns are done: walk the written names from the start */
                    lua_pop(L, 1);
                    lua_pushnil(L);
                }
                if (v->written == 0) {
                    lua_pop(L, 1);
                    break;
                }
                if (!sc_next_added(L, v)) {
                    break;
                }
            }
        } else if (row) {
            if (!sp_script_row_next_name(L, img, &col)) {
                break;
            }
        } else {
            if (lua_next(L, img) == 0) {
                break;
            }
            lua_pop(L, 1);
        }
        if (lua_type(L, -1) != LUA_TSTRING) {
            char what[32];
            snprintf(what, sizeof(what), "%s", luaL_typename(L, -1));
            lua_pop(L, 1);
            return sc_ret_err(bd, err, "a row with a %s key (columns are named by strings)", what);
        }
        const char *name = lua_tostring(L, -1);
        bool seen = false;
        for (int i = 0; i < earlier && !seen; i++) {
            seen = strcmp(bd->cols[i].name, name) == 0;
        }
        if (seen) {
            continue;
        }
        if (bd->ncols == bd->cap) {
            bd->cap = bd->cap == 0 ? 16 : bd->cap * 2;
            bd->cols = sp_xrealloc(bd->cols, (size_t)bd->cap * sizeof(*bd->cols));
        }
        struct sc_col *c = &bd->cols[bd->ncols++];
        memset(c, 0, sizeof(*c));
        c->name = name;
        c->orig = v != NULL ? col : sc_orig_col(bd, lua_gettop(L));
    }
    return 0;
}

static int sc_col_order(const void *a, const void *b)
{
    const struct sc_col *x = a;
    const struct sc_col *y = b;
    if (x->orig >= 0 && y->orig >= 0) {
        return x->orig - y->orig;
    }
    if ((x->orig >= 0) != (y->orig >= 0)) {
        return x->orig >= 0 ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

/* The input datum a value is unchanged from. */
static const struct sp_datum *sc_orig_datum(const struct sc_build *bd, struct sc_same same)
{
    const struct sp_event *ev = bd->in->ev;
    const struct sp_tuple *t = same.img == SC_I_ORIG_AFTER    ? ev->after
                               : same.img == SC_I_ORIG_BEFORE ? ev->before
                                                              : NULL;
    return t != NULL && same.col >= 0 && same.col < t->ncols ? &t->cols[same.col] : NULL;
}

/* Whether the json value (a table) at vidx still is column i of row: it may have been changed
 * in place. */
static bool sc_json_same(struct sc_build *bd, int vidx, const struct sp_script_row *row, int i)
{
    lua_State *L = bd->s->L;
    if (lua_type(L, vidx) != LUA_TTABLE || sp_script_is_null(L, vidx)) {
        return true;
    }
    const char *why = NULL;
    sp_buf_reset(&bd->s->buf);
    return sp_script_put_json(L, vidx, &bd->s->buf, 0, &why) == 0 &&
           bd->s->buf.len == row->len[i] && memcmp(bd->s->buf.data, row->json[i], row->len[i]) == 0;
}

/*
 * Which input column the value at vidx is, unchanged, among the values the
 * script read: column prefer of row prefer_img first, then any other.
 */
static struct sc_same sc_same_as(struct sc_build *bd, int vidx, int prefer_img, int prefer)
{
    lua_State *L = bd->s->L;
    struct sc_same none = {0, -1};
    int imgs[2] = {prefer_img, prefer_img == SC_I_ORIG_BEFORE ? SC_I_ORIG_AFTER : SC_I_ORIG_BEFORE};
    /* null is one value for every NULL: it is only the same as the column of its own name */
    bool null = sp_script_is_null(L, vidx);
    for (int k = 0; k < (null ? 1 : 2); k++) {
        const struct sp_script_row *row = sc_in_row(bd, imgs[k]);
        const struct sp_script_row_view *v = sc_view(bd, imgs[k]);
        if (row == NULL || v == NULL || v->read == 0) {
            continue;
        }
        int read = v->read;
        int ncols = v->ncols;
        for (int pass = 0; pass < (null ? 1 : 2); pass++) {
            int pref = k == 0 ? prefer : -1;
            if (pass == 0 && pref < 0) {
                continue;
            }
            for (int i = pass == 0 ? pref : 0; i < ncols; i++) {
                if (pass == 0 && i != pref) {
                    break;
                }
                if (row->json[i] == NULL || (pass == 1 && i == pref)) {
                    continue;
                }
                lua_rawgeti(L, read, i + 1);
                bool same = !lua_isnil(L, -1) && lua_rawequal(L, vidx, -1);
                lua_pop(L, 1);
                if (same && sc_json_same(bd, vidx, row, i)) {
                    return (struct sc_same){imgs[k], i};
                }
            }
        }
    }
    return none;
}

/*
 * Column col of the returned image img: whether it has a value, and which
 * input column it is unchanged (*same; its datum is copied). Pushes the
 * value, or nil when it has none or is an input column the script did not
 * assign.
 */
static bool sc_lookup(struct sc_build *bd, int img, const struct sc_col *col, int natural,
                      struct sc_same *same)
{
    lua_State *L = bd->s->L;
    same->img = 0;
    same->col = -1;
    int own = sc_own_row(bd, img);
    const struct sp_script_row_view *v = sc_view(bd, own);
    if (v != NULL) {
        int c = col->orig;
        enum sp_script_row_state st =
            c >= 0 ? sp_script_row_view_col(L, v, c) : sp_script_row_get(L, img, col->name, &c);
        switch (st) {
        case SP_SCRIPT_ROW_ABSENT:
            lua_pushnil(L);
            return false;
        case SP_SCRIPT_ROW_ORIGINAL:
            if (v->read != 0) {
                lua_rawgeti(L, v->read, c + 1);
                if (!sc_json_same(bd, lua_gettop(L), sc_in_row(bd, own), c)) {
                    return true; /* a json value changed in place */
                }
                lua_pop(L, 1);
            }
            lua_pushnil(L);
            same->img = own;
            same->col = c;
            return true;
        case SP_SCRIPT_ROW_WRITTEN:
            break;
        }
    } else if (sp_script_row_is(L, img)) {
        sp_script_row_value(L, img, col->name);
    } else {
        sc_rawfield(L, img, col->name);
    }
    if (lua_isnil(L, -1)) {
        return false;
    }
    *same = sc_same_as(bd, lua_gettop(L), natural, col->orig);
    return true;
}

/* Pushes the value of column name of image img as the script sees it. */
static void sc_push_value(struct sc_build *bd, int img, const char *name)
{
    if (sp_script_row_is(bd->s->L, img)) {
        sp_script_row_value(bd->s->L, img, name);
    } else {
        sc_rawfield(bd->s->L, img, name);
    }
}

/* The type a new value gets, given the column's original type (or NULL). */
static const struct sp_type *sc_infer(lua_State *L, int vidx, const struct sp_type *orig)
{
    enum sp_type_kind k = orig != NULL ? orig->kind : SP_TYPE_OTHER;
    switch (lua_type(L, vidx)) {
    case LUA_TNUMBER:
        if (orig != NULL && (k == SP_TYPE_NUMERIC || (k == SP_TYPE_INT && lua_isinteger(L, vidx)) ||
                             k == SP_TYPE_FLOAT)) {
            return orig;
        }
        return sp_type_builtin(lua_isinteger(L, vidx) ? SC_OID_INT8 : SC_OID_FLOAT8);
    case LUA_TBOOLEAN:
        return sp_type_builtin(SC_OID_BOOL);
    case LUA_TSTRING:
        if (orig != NULL && (k == SP_TYPE_STRING || k == SP_TYPE_OTHER || k == SP_TYPE_NUMERIC)) {
            return orig;
        }
        return sp_type_builtin(SC_OID_TEXT);
    default:
        if (sp_script_is_null(L, vidx)) {
            return orig != NULL ? orig : sp_type_builtin(SC_OID_TEXT);
        }
        return orig != NULL && k == SP_TYPE_JSON ? orig : sp_type_builtin(SC_OID_JSON);
    }
}

/* PostgreSQL's text form of the value at vidx for type t, into buf. -1 with *why. */
static int sc_text(lua_State *L, int vidx, const struct sp_type *t, struct sp_buf *buf,
                   const char **why)
{
    sp_buf_reset(buf);
    switch (lua_type(L, vidx)) {
    case LUA_TBOOLEAN:
        sp_buf_puts(buf, lua_toboolean(L, vidx) ? (t->kind == SP_TYPE_BOOL ? "t" : "true")
                                                : (t->kind == SP_TYPE_BOOL ? "f" : "false"));
        return 0;
    case LUA_TNUMBER:
        if (!lua_isinteger(L, vidx) && !isfinite(lua_tonumber(L, vidx))) {
            double d = lua_tonumber(L, vidx);
            sp_buf_puts(buf, isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity");
            return 0;
        }
        return sp_script_put_number(L, vidx, buf);
    case LUA_TSTRING: {
        size_t len;
        const char *str = lua_tolstring(L, vidx, &len);
        if (t->kind == SP_TYPE_JSON) {
            sp_buf_put_json_str(buf, str, len);
        } else {
            sp_buf_append(buf, str, len);
        }
        return 0;
    }
    default:
        return sp_script_put_json(L, vidx, buf, 0, why);
    }
}

/* Fills tuple tup of ev from the image table img (k: 0 after, 1 before; natural: its input). */
static int sc_fill(struct sc_build *bd, struct sp_event *ev, struct sp_tuple *tup, int img, int k,
                   int natural, struct sp_err *err)
{
    lua_State *L = bd->s->L;
    const struct sp_relation *rel = bd->in->ev->rel;
    const struct sp_script_row *nrow = sc_in_row(bd, natural);
    for (int c = 0; c < bd->ncols; c++) {
        struct sc_col *col = &bd->cols[c];
        struct sp_datum *d = &tup->cols[c];
        if (!col->has[k]) {
            d->kind = SP_DATUM_NULL;
            if (col->orig >= 0 && nrow != NULL && nrow->json[col->orig] != NULL) {
                bd->changed = true; /* a column was removed from this image */
            }
            continue;
        }
        struct sc_same same = col->same[k];
        const struct sp_datum *od = sc_orig_datum(bd, same);
        if (od != NULL && rel->cols[same.col].type == col->type) {
            d->kind = od->kind;
            d->len = od->len;
            if (od->data != NULL) {
                char *p = sp_event_alloc(ev, od->len + 1);
                memcpy(p, od->data, od->len);
                p[od->len] = '\0';
                d->data = p;
            }
            if (same.img != natural || same.col != col->orig) {
                bd->changed = true;
            }
            continue;
        }
        bd->changed = true;
        sc_push_value(bd, img, col->name);
        int v = lua_gettop(L);
        if (lua_isnil(L, v) || sp_script_is_null(L, v)) {
            d->kind = SP_DATUM_NULL;
            lua_pop(L, 1);
            continue;
        }
        const char *why = NULL;
        if (sc_text(L, v, col->type, &bd->s->buf, &why) != 0) {
            lua_pop(L, 1);
            char what[200];
            snprintf(what, sizeof(what), "column \"%.80s\" holding %s", col->name, why);
            return sc_ret_err(bd, err, "%s", what);
        }
        char *p = sp_event_alloc(ev, bd->s->buf.len + 1);
        memcpy(p, bd->s->buf.data, bd->s->buf.len);
        p[bd->s->buf.len] = '\0';
        d->kind = SP_DATUM_TEXT;
        d->data = p;
        d->len = (uint32_t)bd->s->buf.len;
        lua_pop(L, 1);
    }
    return 0;
}

/*
 * Looks each column up in the returned images and decides its type: kept
 * when the after (else before) value is an unchanged input.
 */
static void sc_types(struct sc_build *bd)
{
    lua_State *L = bd->s->L;
    const struct sp_relation *rel = bd->in->ev->rel;
    int imgs[2] = {bd->after, bd->before};
    static const int naturals[2] = {SC_I_ORIG_AFTER, SC_I_ORIG_BEFORE};
    for (int c = 0; c < bd->ncols; c++) {
        struct sc_col *col = &bd->cols[c];
        const struct sp_column *oc = col->orig >= 0 ? &rel->cols[col->orig] : NULL;
        const struct sp_type *type = NULL;
        int src = -1;
        for (int k = 0; k < 2; k++) {
            if (imgs[k] == 0) {
                continue;
            }
            col->has[k] = sc_lookup(bd, imgs[k], col, naturals[k], &col->same[k]);
            if (col->has[k] && type == NULL) {
                if (col->same[k].img != 0) {
                    src = col->same[k].col;
                    type = rel->cols[src].type;
                } else if (!sp_script_is_null(L, -1) || oc == NULL) {
                    type = sc_infer(L, lua_gettop(L), oc != NULL ? oc->type : NULL);
                }
            }
            lua_pop(L, 1);
        }
        if (type == NULL) {
            type = oc != NULL ? oc->type : sp_type_builtin(SC_OID_TEXT);
        }
        col->type = type;
        if (src >= 0 && rel->cols[src].type == type) {
            col->type_oid = rel->cols[src].type_oid;
            col->typmod = rel->cols[src].typmod;
        } else if (oc != NULL && oc->type == type) {
            col->type_oid = oc->type_oid;
            col->typmod = oc->typmod;
        } else {
            col->type_oid = type != NULL ? type->oid : SC_OID_TEXT;
            col->typmod = -1;
        }
        col->key = oc != NULL && oc->key;
    }
}

static bool sc_rel_is(const struct sp_relation *r, const struct sc_build *bd)
{
    const struct sp_relation *in = bd->in->ev->rel;
    if (r == NULL || r->ncols != bd->ncols || r->oid != (in != NULL ? in->oid : 0) ||
        r->version != (in != NULL ? in->version : 0) ||
        r->replident != (in != NULL ? in->replident : 'n') ||
        strcmp(r->schema, in != NULL ? in->schema : "") != 0 ||
        strcmp(r->table, in != NULL ? in->table : "") != 0) {
        return false;
    }
    for (int c = 0; c < bd->ncols; c++) {
        const struct sp_column *rc = &r->cols[c];
        const struct sc_col *bc = &bd->cols[c];
        if (rc->type != bc->type || rc->type_oid != bc->type_oid || rc->typmod != bc->typmod ||
            rc->key != bc->key || strcmp(rc->name, bc->name) != 0) {
            return false;
        }
    }
    return true;
}

/*
 * The relation of an event whose columns the script changed: the one made
 * for an earlier event of the same shape, or a new one (kept for the next).
 * Owned by the cache; the caller takes its own reference.
 */
static struct sp_relation *sc_out_rel(struct sc_build *bd)
{
    struct sp_script *s = bd->s;
    for (int i = 0; i < SC_RELS_CACHE; i++) {
        if (sc_rel_is(s->rels[i], bd)) {
            return s->rels[i];
        }
    }
    const struct sp_relation *rel = bd->in->ev->rel;
    struct sp_relation *nr = sp_xcalloc(1, sizeof(*nr));
    nr->oid = rel != NULL ? rel->oid : 0;
    nr->version = rel != NULL ? rel->version : 0;
    nr->schema = sp_xstrdup(rel != NULL ? rel->schema : "");
    nr->table = sp_xstrdup(rel != NULL ? rel->table : "");
    nr->replident = rel != NULL ? rel->replident : 'n';
    nr->ncols = bd->ncols;
    nr->cols = sp_xcalloc((size_t)(bd->ncols > 0 ? bd->ncols : 1), sizeof(*nr->cols));
    struct sp_buf jn;
    sp_buf_init(&jn);
    for (int c = 0; c < bd->ncols; c++) {
        struct sp_column *col = &nr->cols[c];
        col->name = sp_xstrdup(bd->cols[c].name);
        col->type_oid = bd->cols[c].type_oid;
        col->typmod = bd->cols[c].typmod;
        col->type = bd->cols[c].type;
        col->key = bd->cols[c].key;
        sp_buf_put_json_str(&jn, col->name, strlen(col->name));
        sp_buf_putc(&jn, ':');
        col->json_name_len = jn.len;
        col->json_name = sp_buf_steal(&jn);
    }
    nr->refs = 1;
    sp_relation_unref(s->rels[s->rels_next]);
    s->rels[s->rels_next] = nr;
    s->rels_next = (s->rels_next + 1) % SC_RELS_CACHE;
    return nr;
}

static bool sc_op_from(const char *s, enum sp_op *op)
{
    static const struct {
        char c;
        enum sp_op op;
    } ops[] = {{'c', SP_OP_INSERT}, {'u', SP_OP_UPDATE},   {'d', SP_OP_DELETE},
               {'r', SP_OP_READ},   {'t', SP_OP_TRUNCATE}, {'m', SP_OP_MESSAGE}};
    if (s == NULL || s[0] == '\0' || s[1] != '\0') {
        return false;
    }
    for (size_t i = 0; i < SP_ARRAY_LEN(ops); i++) {
        if (ops[i].c == s[0]) {
            *op = ops[i].op;
            return true;
        }
    }
    return false;
}

static char *sc_arena_str(struct sp_event *ev, const char *s, size_t len)
{
    char *p = sp_event_alloc(ev, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

/* The event metadata the script does not see as fields is copied from the input. */
static struct sp_event *sc_new_event(const struct sp_event *in, enum sp_op op)
{
    struct sp_event *ev = sp_event_new(op, 512);
    ev->lsn = in->lsn;
    ev->commit_lsn = in->commit_lsn;
    ev->end_lsn = in->end_lsn;
    ev->xid = in->xid;
    ev->commit_time_us = in->commit_time_us;
    ev->seq = in->seq;
    ev->snapshot = in->snapshot;       /* static strings */
    ev->source_name = in->source_name; /* owned by the configuration */
    ev->db = in->db;
    ev->truncate_flags = in->truncate_flags;
    ev->msg_transactional = in->msg_transactional;
    ev->before_key_only = in->before_key_only;
    if (in->msg_prefix != NULL) {
        ev->msg_prefix = sc_arena_str(ev, in->msg_prefix, strlen(in->msg_prefix));
    }
    if (in->msg_content != NULL) {
        ev->msg_content = sc_arena_str(ev, in->msg_content, in->msg_len);
        ev->msg_len = in->msg_len;
    }
    if (in->origin != NULL) {
        ev->origin = sc_arena_str(ev, in->origin, strlen(in->origin));
    }
    if (in->payload != NULL) {
        ev->payload = sc_arena_str(ev, in->payload, in->payload_len);
        ev->payload_len = in->payload_len;
    }
    if (in->event_type != NULL) {
        ev->event_type = sc_arena_str(ev, in->event_type, strlen(in->event_type));
    }
    return ev;
}

/* An optional string field of the returned table; false when it is there but not a string. */
static bool sc_opt_string(lua_State *L, int t, const char *name, const char **out, size_t *len)
{
    sc_rawfield(L, t, name);
    *out = NULL;
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return true;
    }
    if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        return false;
    }
    *out = lua_tolstring(L, -1, len);
    lua_pop(L, 1); /* anchored by the table */
    return true;
}

/*
 * The returned event table at t -> a new event (*out), or NULL in *out when
 * it is the input unchanged. idx: its place in a fan-out (0: not one).
 */
static int sc_build_event(struct sp_script *s, const struct sp_script_input *in, int t, int idx,
                          struct sp_event **out, struct sp_err *err)
{
    lua_State *L = s->L;
    const struct sp_event *iev = in->ev;
    struct sc_build bd = {.s = s, .in = in, .t = t};
    *out = NULL;
    const char *ops;
    size_t opl;
    enum sp_op op = iev->op;
    if (!sc_opt_string(L, t, "op", &ops, &opl) || (ops != NULL && !sc_op_from(ops, &op))) {
        sc_rawfield(L, t, "op");
        char what[64];
        snprintf(what, sizeof(what), "an event whose op is %s", luaL_typename(L, -1));
        lua_pop(L, 1);
        return sc_ret_err(&bd, err, "%s (c, u, d, r, t or m)", what);
    }
    if (op != iev->op) {
        bd.changed = true;
    }
    sc_rawfield(L, t, "before");
    sc_rawfield(L, t, "after");
    int rc = 0;
    for (int k = 0; k < 2; k++) {
        int img = lua_gettop(L) - 1 + k;
        if (lua_istable(L, img)) {
            if (k == 0) {
                bd.before = img;
            } else {
                bd.after = img;
            }
        } else if (!lua_isnil(L, img)) {
            return sc_ret_err(&bd, err, "%s that is not a table", k == 0 ? "a before" : "an after");
        }
    }
    if ((bd.before != 0) != (in->before != NULL) || (bd.after != 0) != (in->after != NULL)) {
        bd.changed = true;
    }
    if (bd.after != 0) {
        rc = sc_collect(&bd, bd.after, err);
    }
    if (rc == 0 && bd.before != 0) {
        rc = sc_collect(&bd, bd.before, err);
    }
    if (rc != 0) {
        free(bd.cols);
        return rc;
    }
    bool sorted = true;
    for (int c = 1; c < bd.ncols && sorted; c++) {
        sorted = sc_col_order(&bd.cols[c - 1], &bd.cols[c]) < 0;
    }
    if (!sorted) {
        qsort(bd.cols, (size_t)bd.ncols, sizeof(*bd.cols), sc_col_order);
    }
    sc_types(&bd);
    const struct sp_relation *rel = iev->rel;
    bool same_shape = rel != NULL && bd.ncols == rel->ncols;
    for (int c = 0; same_shape && c < bd.ncols; c++) {
        same_shape = bd.cols[c].orig == c && bd.cols[c].type == rel->cols[c].type &&
                     bd.cols[c].type_oid == rel->cols[c].type_oid;
    }
    if (!same_shape && (bd.before != 0 || bd.after != 0 || rel != NULL)) {
        bd.changed = true;
    }
    struct sp_event *ev = sc_new_event(iev, op);
    if (rel != NULL || bd.ncols > 0) {
        ev->rel = sp_relation_ref(same_shape ? (struct sp_relation *)rel : sc_out_rel(&bd));
    }
    if (bd.before != 0) {
        ev->before = sp_event_tuple(ev, bd.ncols);
        rc = sc_fill(&bd, ev, ev->before, bd.before, 1, SC_I_ORIG_BEFORE, err);
    }
    if (rc == 0 && bd.after != 0) {
        ev->after = sp_event_tuple(ev, bd.ncols);
        rc = sc_fill(&bd, ev, ev->after, bd.after, 0, SC_I_ORIG_AFTER, err);
    }
    free(bd.cols);
    lua_pop(L, 2);
    if (rc != 0) {
        sp_event_free(ev);
        return rc;
    }

    /* key: an override when it differs from the input's (or the columns changed) */
    sp_buf_reset(&s->buf);
    if (s->key_state == SC_KEY_UNTOUCHED && lua_rawequal(L, t, SC_I_EVENT)) {
        sp_buf_append(&s->buf, in->key != NULL ? in->key : "", in->key != NULL ? in->key_len : 0);
    } else {
        sc_rawfield(L, t, "key");
        const char *why = NULL;
        if (!lua_isnil(L, -1) && sp_script_put_json(L, lua_gettop(L), &s->buf, 0, &why) != 0) {
            lua_pop(L, 1);
            sp_event_free(ev);
            return sc_ret_err(&bd, err, "a key holding %s", why);
        }
        lua_pop(L, 1);
    }
    bool key_same = s->buf.len == in->key_len &&
                    (in->key_len == 0 || memcmp(s->buf.data, in->key, in->key_len) == 0);
    if (!key_same || (bd.changed && !same_shape) || iev->key_override != NULL) {
        ev->key_override = sc_arena_str(ev, s->buf.len > 0 ? s->buf.data : "", s->buf.len);
        ev->key_override_len = (uint32_t)s->buf.len;
        ev->key_override_json = true;
        bd.changed = bd.changed || !key_same;
    }

    const char *str;
    size_t len;
    if (!sc_opt_string(L, t, "destination", &str, &len)) {
        sp_event_free(ev);
        return sc_ret_err(&bd, err, "%s", "a destination that is not a string");
    }
    if (str != NULL) {
        ev->dest = sc_arena_str(ev, str, len);
        bd.changed = bd.changed || iev->dest == NULL || strcmp(iev->dest, str) != 0;
    } else if (iev->dest != NULL) {
        bd.changed = true; /* removed */
    }
    char idbuf[SP_EVENT_ID_BUFSZ];
    const char *orig_id = iev->id_override != NULL ? iev->id_override : sp_event_id(iev, idbuf);
    if (!sc_opt_string(L, t, "id", &str, &len)) {
        sp_event_free(ev);
        return sc_ret_err(&bd, err, "%s", "an id that is not a string");
    }
    if (str != NULL && strcmp(str, orig_id) != 0) {
        ev->id_override = sc_arena_str(ev, str, len);
        bd.changed = true;
    } else if (idx > 0) {
        /* A fan-out: distinct, stable ids, so sinks that deduplicate keep every copy. */
        char *fid = sp_event_alloc(ev, strlen(orig_id) + 16);
        sprintf(fid, "%s.%d", orig_id, idx);
        ev->id_override = fid;
    } else if (iev->id_override != NULL) {
        ev->id_override = sc_arena_str(ev, iev->id_override, strlen(iev->id_override));
    }
    if (!bd.changed && idx == 0) {
        sp_event_free(ev);
        return 0;
    }
    *out = ev;
    return 0;
}

/* ---- calls ---- */

static void sc_result_add(struct sp_script_result *res, struct sp_event *ev)
{
    res->out = sp_xrealloc(res->out, (size_t)(res->n + 1) * sizeof(*res->out));
    res->out[res->n++] = ev;
}

void sp_script_result_fini(struct sp_script_result *res)
{
    for (int i = 0; i < res->n; i++) {
        sp_event_free(res->out[i]);
    }
    free(res->out);
    res->out = NULL;
    res->n = 0;
    res->verdict = SP_SCRIPT_UNCHANGED;
}

static int sc_convert(struct sp_script *s, const struct sp_script_input *in, int ret,
                      struct sp_script_result *res, struct sp_err *err)
{
    lua_State *L = s->L;
    struct sc_build bd = {.s = s, .in = in};
    if (lua_isnil(L, ret)) {
        res->verdict = SP_SCRIPT_CHANGED; /* dropped: no events */
        return 0;
    }
    if (!lua_istable(L, ret) || sp_script_is_null(L, ret)) {
        return sc_ret_err(&bd, err, "a %s (an event table, a list of them, or nil)",
                          luaL_typename(L, ret));
    }
    sc_rawfield(L, ret, "op");
    bool is_event = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (!is_event && lua_rawlen(L, ret) == 1) {
        /* A list of one is that event. */
        lua_rawgeti(L, ret, 1);
        if (lua_istable(L, -1)) {
            ret = lua_gettop(L);
            is_event = true;
        } else {
            lua_pop(L, 1);
        }
    }
    if (is_event) {
        struct sp_event *ev = NULL;
        int rc = sc_build_event(s, in, ret, 0, &ev, err);
        if (rc != 0) {
            return rc;
        }
        if (ev != NULL) {
            res->verdict = SP_SCRIPT_CHANGED;
            sc_result_add(res, ev);
        }
        return 0;
    }
    /* A list: fan out (an empty one drops the event). */
    res->verdict = SP_SCRIPT_CHANGED;
    lua_Integer n = (lua_Integer)lua_rawlen(L, ret);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, ret, i);
        int t = lua_gettop(L);
        if (!lua_istable(L, t)) {
            char what[64];
            snprintf(what, sizeof(what), "a list whose item %lld is a %s", (long long)i,
                     luaL_typename(L, t));
            return sc_ret_err(&bd, err, "%s (events are tables)", what);
        }
        struct sp_event *ev = NULL;
        int rc = sc_build_event(s, in, t, (int)i, &ev, err); /* idx > 0: always a copy */
        if (rc != 0) {
            return rc;
        }
        sc_result_add(res, ev);
        lua_pop(L, 1);
    }
    return 0;
}

struct sc_call {
    struct sp_script *s;
    const struct sp_script_input *in;
    struct sp_script_result *res;
    struct sp_err *err;
    int rc;
};

/*
 * The whole call, inside a protected call: a memory error while the event
 * is being built ends here instead of in Lua's panic handler. The result
 * is converted with the memory limit lifted, as that C code holds
 * allocations of its own; what it allocates from Lua is bounded by the
 * returned tables, which were built under the limit.
 */
static int sc_call_p(lua_State *L)
{
    struct sc_call *c = lua_touserdata(L, 1);
    struct sp_script *s = c->s;
    lua_settop(L, 0);
    lua_pushcfunction(L, sc_msgh);                /* SC_I_MSGH */
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->fn_ref); /* SC_I_FN */
    sc_push_event(s, c->in);                      /* SC_I_EVENT .. SC_I_NAMES */
    lua_pushvalue(L, SC_I_FN);
    lua_pushvalue(L, SC_I_EVENT);
    sc_arm(s);
    s->cur = c->in->ev;
    int st = lua_pcall(L, 1, 1, SC_I_MSGH);
    s->cur = NULL;
    lua_pushnil(L);
    lua_setmetatable(L, SC_I_EVENT);
    if (st != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        if (st == LUA_ERRMEM) {
            /* Lua calls no message handler for memory errors: name the function. */
            c->rc =
                sp_err_set(c->err, SP_EINVAL, "%s: %s: not enough memory", s->where, s->function);
        } else {
            c->rc = sp_err_set(c->err, SP_EINVAL, "%s",
                               st == LUA_ERRERR ? "error in the script's error handling"
                               : msg != NULL    ? msg
                                                : "error");
        }
        if (st == LUA_ERRMEM || (msg != NULL && strstr(msg, "not enough memory") != NULL)) {
            sp_err_hint(c->err, "the script's memory limit is %zu bytes", s->mem_limit);
        }
        return 0;
    }
    s->unlimited = true;
    int ret = lua_gettop(L);
    static const int slots[2] = {SC_I_ORIG_BEFORE, SC_I_ORIG_AFTER};
    for (int k = 0; k < 2; k++) {
        memset(&s->rv[k], 0, sizeof(s->rv[k]));
        if (lua_istable(L, slots[k])) {
            sp_script_row_view(L, slots[k], &s->rv[k]);
        }
    }
    c->rc = sc_convert(s, c->in, ret, c->res, c->err);
    memset(s->rv, 0, sizeof(s->rv));
    s->unlimited = false;
    return 0;
}

int sp_script_call(struct sp_script *s, const struct sp_script_input *in,
                   struct sp_script_result *res, struct sp_err *err)
{
    lua_State *L = s->L;
    memset(res, 0, sizeof(*res));
    struct sc_call c = {s, in, res, err, 0};
    lua_settop(L, 0);
    lua_pushcfunction(L, sc_call_p);
    lua_pushlightuserdata(L, &c);
    int st = lua_pcall(L, 1, 0, 0);
    s->unlimited = false;
    if (st != LUA_OK) {
        c.rc = sp_err_set(err, SP_EINVAL, "script %s: %s while preparing the event", s->chunk,
                          lua_tostring(L, -1) != NULL ? lua_tostring(L, -1) : "error");
        sp_err_hint(err, "the script's memory limit is %zu bytes", s->mem_limit);
    }
    if (c.rc != 0) {
        sp_script_result_fini(res);
    }
    lua_settop(L, 0);
    return c.rc;
}
