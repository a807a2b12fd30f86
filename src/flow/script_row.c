// SPDX-License-Identifier: Apache-2.0
/*
 * Row tables of the script engine (flow/script_row.h).
 *
 * A row is an empty table with the shared metatable at sp_script_key_row;
 * its state hangs off it under light-userdata keys, which a script cannot
 * make, so every column name misses the raw table and goes through
 * __index / __newindex:
 *
 *   ROW_DATA     userdata: the columns' JSON, copied (struct row_data)
 *   ROW_NAMES    {[i] = name, [name] = i} of the relation, shared by rows
 *   ROW_READ     [column + 1] = the value the script read (made on first read)
 *   ROW_WRITTEN  [name] = the value assigned, or ROW_REMOVED for nil
 *                (made on first write; entries are never deleted, so a
 *                walk over it stays valid)
 */
#include "flow/script_row.h"

#include <stdint.h>

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "flow/script_json.h"
#include "util/mem.h"

const char sp_script_key_row = 0;

static const char row_k_data = 0;
static const char row_k_names = 0;
static const char row_k_read = 0;
static const char row_k_written = 0;
static const char row_k_removed = 0;

#define ROW_ABSENT SIZE_MAX

struct row_data {
    int ncols;
    size_t *off; /* into bytes; ROW_ABSENT: the row has no such column */
    size_t *len;
    char *bytes;
};

static struct row_data *row_data(lua_State *L, int p)
{
    lua_rawgetp(L, p, &row_k_data);
    struct row_data *d = lua_touserdata(L, -1);
    lua_pop(L, 1); /* anchored by the row */
    return d;
}

bool sp_script_row_is_removed(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == &row_k_removed;
}

/* The column (0-based) the key at kidx names in the names table at names, or -1. */
static int row_col(lua_State *L, int names, int kidx)
{
    if (lua_type(L, kidx) != LUA_TSTRING) {
        return -1;
    }
    lua_pushvalue(L, kidx);
    int col = lua_rawget(L, names) == LUA_TNUMBER ? (int)lua_tointeger(L, -1) - 1 : -1;
    lua_pop(L, 1);
    return col;
}

bool sp_script_row_is(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) {
        return false;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &sp_script_key_row);
    bool is = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return is;
}

/* Pushes the value of column col of the row at p as given to the script (converted once). */
static void row_original(lua_State *L, int p, int col)
{
    int read = lua_gettop(L) + 1;
    if (lua_rawgetp(L, p, &row_k_read) == LUA_TTABLE) {
        if (lua_rawgeti(L, read, col + 1) != LUA_TNIL) {
            lua_remove(L, read);
            return;
        }
        lua_pop(L, 1);
    }
    struct row_data *d = row_data(L, p);
    if (col >= d->ncols || d->off[col] == ROW_ABSENT) {
        lua_pop(L, 1);
        lua_pushnil(L);
        return;
    }
    if (sp_script_push_json(L, d->bytes + d->off[col], d->len[col]) != 0) {
        lua_rawgetp(L, p, &row_k_names);
        lua_rawgeti(L, -1, col + 1);
        luaL_error(L, "column \"%s\" is not valid JSON", lua_tostring(L, -1));
    }
    if (lua_isnil(L, read)) {
        lua_createtable(L, d->ncols, 0);
        lua_replace(L, read);
        lua_pushvalue(L, read);
        lua_rawsetp(L, p, &row_k_read);
    }
    lua_pushvalue(L, -1);
    lua_rawseti(L, read, col + 1);
    lua_remove(L, read);
}

/* Pushes row[key] for the row at p and the key at kidx. */
static void row_get(lua_State *L, int p, int kidx)
{
    if (lua_rawgetp(L, p, &row_k_written) == LUA_TTABLE) {
        lua_pushvalue(L, kidx);
        if (lua_rawget(L, -2) != LUA_TNIL) {
            if (sp_script_row_is_removed(L, -1)) {
                lua_pop(L, 1);
                lua_pushnil(L);
            }
            lua_remove(L, -2);
            return;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_rawgetp(L, p, &row_k_names);
    int col = row_col(L, lua_gettop(L), kidx);
    lua_pop(L, 1);
    if (col < 0) {
        lua_pushnil(L);
        return;
    }
    row_original(L, p, col);
}

static int row_index(lua_State *L)
{
    row_get(L, 1, 2);
    return 1;
}

static int row_newindex(lua_State *L)
{
    if (lua_rawgetp(L, 1, &row_k_written) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, 1, &row_k_written);
    }
    lua_pushvalue(L, 2);
    if (lua_isnil(L, 3)) {
        lua_pushlightuserdata(L, (void *)&row_k_removed);
    } else {
        lua_pushvalue(L, 3);
    }
    lua_rawset(L, -3); /* a nil or NaN key raises, as on any table */
    return 0;
}

int sp_script_row_next_name(lua_State *L, int idx, int *col)
{
    idx = lua_absindex(L, idx);
    int key = lua_gettop(L);
    lua_rawgetp(L, idx, &row_k_names);
    int names = key + 1;
    lua_rawgetp(L, idx, &row_k_written);
    int w = key + 2;
    bool has_w = lua_istable(L, w);
    struct row_data *d = row_data(L, idx);
    int start = 0;
    bool added = false;
    if (!lua_isnil(L, key)) {
        int c = row_col(L, names, key);
        if (c >= 0) {
            start = c + 1;
        } else {
            added = true;
        }
    }
    if (!added) {
        for (int i = start; i < d->ncols; i++) {
            lua_rawgeti(L, names, i + 1);
            bool written = false;
            bool removed = false;
            if (has_w) {
                lua_pushvalue(L, -1);
                written = lua_rawget(L, w) != LUA_TNIL;
                removed = sp_script_row_is_removed(L, -1);
                lua_pop(L, 1);
            }
            if (!removed && (written || d->off[i] != ROW_ABSENT)) {
                lua_replace(L, key);
                lua_settop(L, key);
                *col = i;
                return 1;
            }
            lua_pop(L, 1);
        }
        lua_pushnil(L);
        lua_replace(L, key);
    }
    if (!has_w) {
        lua_settop(L, key - 1);
        return 0;
    }
    lua_pushvalue(L, key);
    while (lua_next(L, w) != 0) {
        bool skip = sp_script_row_is_removed(L, -1) || row_col(L, names, -2) >= 0;
        lua_pop(L, 1);
        if (!skip) {
            lua_replace(L, key);
            lua_settop(L, key);
            *col = -1;
            return 1;
        }
    }
    lua_settop(L, key - 1);
    return 0;
}

/* next(row, key) for Lua: the name after key and its value. */
static int row_next(lua_State *L)
{
    lua_settop(L, 2);
    int col;
    if (!sp_script_row_next_name(L, 1, &col)) {
        lua_pushnil(L);
        return 1;
    }
    row_get(L, 1, 2);
    return 2;
}

static int row_pairs(lua_State *L)
{
    lua_pushcfunction(L, row_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* The sandbox's next: rows are walked by their columns, other tables as by Lua's next. */
static int row_env_next(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (sp_script_row_is(L, 1)) {
        return row_next(L);
    }
    lua_settop(L, 2);
    if (lua_next(L, 1) != 0) {
        return 2;
    }
    lua_pushnil(L);
    return 1;
}

void sp_script_row_setup(lua_State *L, int env_idx)
{
    env_idx = lua_absindex(L, env_idx);
    lua_createtable(L, 0, 5);
    lua_pushcfunction(L, row_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, row_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, row_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, "siphon.row");
    lua_setfield(L, -2, "__name");
    lua_pushliteral(L, "siphon.row");
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &sp_script_key_row);
    lua_pushcfunction(L, row_env_next);
    lua_setfield(L, env_idx, "next");
}

void sp_script_row_names(lua_State *L, const struct sp_relation *rel)
{
    lua_createtable(L, rel->ncols, rel->ncols);
    for (int i = 0; i < rel->ncols; i++) {
        lua_pushstring(L, rel->cols[i].name);
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, i + 1);
        lua_pushinteger(L, i + 1);
        lua_rawset(L, -3);
    }
}

void sp_script_row_push(lua_State *L, int names_idx, int ncols, const char *const *json,
                        const size_t *len)
{
    names_idx = lua_absindex(L, names_idx);
    size_t total = 0;
    for (int i = 0; i < ncols; i++) {
        total += json[i] != NULL ? len[i] : 0;
    }
    size_t arrays = sizeof(size_t) * (size_t)ncols * 2;
    struct row_data *d = lua_newuserdatauv(L, sizeof(*d) + arrays + total, 0);
    d->ncols = ncols;
    d->off = (size_t *)(d + 1);
    d->len = d->off + ncols;
    d->bytes = (char *)(d->len + ncols);
    size_t at = 0;
    for (int i = 0; i < ncols; i++) {
        if (json[i] == NULL) {
            d->off[i] = ROW_ABSENT;
            d->len[i] = 0;
            continue;
        }
        d->off[i] = at;
        d->len[i] = len[i];
        memcpy(d->bytes + at, json[i], len[i]);
        at += len[i];
    }
    lua_createtable(L, 0, 4);
    lua_insert(L, -2);
    lua_rawsetp(L, -2, &row_k_data);
    lua_pushvalue(L, names_idx);
    lua_rawsetp(L, -2, &row_k_names);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &sp_script_key_row);
    lua_setmetatable(L, -2);
}

enum sp_script_row_state sp_script_row_get(lua_State *L, int idx, const char *name, int *col)
{
    idx = lua_absindex(L, idx);
    lua_pushstring(L, name);
    int k = lua_gettop(L);
    if (lua_rawgetp(L, idx, &row_k_written) == LUA_TTABLE) {
        lua_pushvalue(L, k);
        if (lua_rawget(L, -2) != LUA_TNIL) {
            if (sp_script_row_is_removed(L, -1)) {
                lua_settop(L, k - 1);
                return SP_SCRIPT_ROW_ABSENT;
            }
            lua_replace(L, k);
            lua_settop(L, k);
            return SP_SCRIPT_ROW_WRITTEN;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_rawgetp(L, idx, &row_k_names);
    int c = row_col(L, lua_gettop(L), k);
    lua_settop(L, k - 1);
    if (c < 0 || row_data(L, idx)->off[c] == ROW_ABSENT) {
        return SP_SCRIPT_ROW_ABSENT;
    }
    *col = c;
    return SP_SCRIPT_ROW_ORIGINAL;
}

void sp_script_row_view(lua_State *L, int idx, struct sp_script_row_view *v)
{
    idx = lua_absindex(L, idx);
    struct row_data *d = row_data(L, idx);
    v->ncols = d->ncols;
    v->off = d->off;
    lua_rawgetp(L, idx, &row_k_names);
    v->names = lua_gettop(L);
    v->read = lua_rawgetp(L, idx, &row_k_read) == LUA_TTABLE ? lua_gettop(L) : 0;
    v->written = lua_rawgetp(L, idx, &row_k_written) == LUA_TTABLE ? lua_gettop(L) : 0;
}

enum sp_script_row_state sp_script_row_view_col(lua_State *L, const struct sp_script_row_view *v,
                                                int col)
{
    if (v->written != 0) {
        lua_rawgeti(L, v->names, col + 1);
        if (lua_rawget(L, v->written) != LUA_TNIL) {
            if (!sp_script_row_is_removed(L, -1)) {
                return SP_SCRIPT_ROW_WRITTEN;
            }
            lua_pop(L, 1);
            return SP_SCRIPT_ROW_ABSENT;
        }
        lua_pop(L, 1);
    }
    return v->off[col] != ROW_ABSENT ? SP_SCRIPT_ROW_ORIGINAL : SP_SCRIPT_ROW_ABSENT;
}

void sp_script_row_read(lua_State *L, int idx)
{
    if (lua_rawgetp(L, idx, &row_k_read) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_pushnil(L);
    }
}

void sp_script_row_value(lua_State *L, int idx, const char *name)
{
    idx = lua_absindex(L, idx);
    lua_pushstring(L, name);
    row_get(L, idx, lua_gettop(L));
    lua_remove(L, -2);
}

static int row_namecmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends the value of column col (the key at kidx) of the row at p as JSON. */
static int row_put_value(lua_State *L, int p, int kidx, int col, struct sp_buf *out, int depth,
                         const char **why)
{
    int top = lua_gettop(L);
    bool lua_value = col < 0;
    if (!lua_value) {
        /* written, or read (a json value may have been changed in place): from Lua */
        if (lua_rawgetp(L, p, &row_k_written) == LUA_TTABLE) {
            lua_pushvalue(L, kidx);
            lua_value = lua_rawget(L, -2) != LUA_TNIL;
        }
        lua_settop(L, top);
        if (!lua_value && lua_rawgetp(L, p, &row_k_read) == LUA_TTABLE) {
            lua_value = lua_rawgeti(L, -1, col + 1) != LUA_TNIL;
        }
        lua_settop(L, top);
    }
    if (!lua_value) {
        struct row_data *d = row_data(L, p);
        sp_buf_append(out, d->bytes + d->off[col], d->len[col]);
        return 0;
    }
    row_get(L, p, kidx);
    int rc = sp_script_put_json(L, lua_gettop(L), out, depth + 1, why);
    lua_settop(L, top);
    return rc;
}

int sp_script_row_put_json(lua_State *L, int idx, struct sp_buf *out, int depth, const char **why)
{
    idx = lua_absindex(L, idx);
    int top = lua_gettop(L);
    bool first = true;
    size_t nadded = 0;
    size_t cap = 0;
    const char **added = NULL;
    sp_buf_putc(out, '{');
    lua_pushnil(L);
    int col;
    int rc = 0;
    while (rc == 0 && sp_script_row_next_name(L, idx, &col)) {
        if (lua_type(L, -1) != LUA_TSTRING) {
            *why = "an object key that is not a string";
            rc = -1;
            break;
        }
        if (col < 0) {
            /* added names, sorted after the columns: anchored by the written table */
            if (nadded == cap) {
                cap = cap == 0 ? 8 : cap * 2;
                added = sp_xrealloc(added, cap * sizeof(*added));
            }
            added[nadded++] = lua_tostring(L, -1);
            continue;
        }
        size_t kl;
        const char *k = lua_tolstring(L, -1, &kl);
        if (!first) {
            sp_buf_putc(out, ',');
        }
        first = false;
        sp_buf_put_json_str(out, k, kl);
        sp_buf_putc(out, ':');
        rc = row_put_value(L, idx, lua_gettop(L), col, out, depth, why);
    }
    lua_settop(L, top);
    if (nadded > 1) {
        qsort(added, nadded, sizeof(*added), row_namecmp);
    }
    for (size_t i = 0; rc == 0 && i < nadded; i++) {
        if (!first) {
            sp_buf_putc(out, ',');
        }
        first = false;
        sp_buf_put_json_str(out, added[i], strlen(added[i]));
        sp_buf_putc(out, ':');
        lua_pushstring(L, added[i]);
        rc = row_put_value(L, idx, lua_gettop(L), -1, out, depth, why);
        lua_settop(L, top);
    }
    free(added);
    if (rc == 0) {
        sp_buf_putc(out, '}');
    }
    return rc;
}
