// SPDX-License-Identifier: Apache-2.0
/*
 * JSON <-> Lua values for the script engine (flow/script_json.h). The
 * parser takes the compact JSON siphon's converters write but accepts any
 * valid JSON; it does not validate beyond what it needs to build values.
 */
#include "flow/script_json.h"

#include <stdint.h>

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow/script_row.h"
#include "util/mem.h"

#define SC_JSON_MAX_DEPTH SP_SCRIPT_JSON_MAX_DEPTH

const char sp_script_key_null = 0;
const char sp_script_key_array = 0;
const char sp_script_key_order = 0;

/* ---- JSON -> Lua ---- */

struct sc_json {
    const char *p;
    const char *e;
};

static void sc_json_ws(struct sc_json *j)
{
    while (j->p < j->e && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) {
        j->p++;
    }
}

static int sc_hex4(const char *p, uint32_t *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) {
            return -1;
        }
        *v = *v * 16 + (uint32_t)d;
    }
    return 0;
}

static void sc_put_utf8(luaL_Buffer *b, uint32_t cp)
{
    char u[4];
    int n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    luaL_addlstring(b, u, (size_t)n);
}

/* Pushes the JSON string at j->p (on the opening quote). */
static int sc_json_string(lua_State *L, struct sc_json *j)
{
    j->p++;
    const char *start = j->p;
    while (j->p < j->e && *j->p != '"' && *j->p != '\\') {
        j->p++;
    }
    if (j->p < j->e && *j->p == '"') {
        lua_pushlstring(L, start, (size_t)(j->p - start)); /* no escapes: the common case */
        j->p++;
        return 0;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, start, (size_t)(j->p - start));
    while (j->p < j->e && *j->p != '"') {
        if (*j->p != '\\') {
            luaL_addchar(&b, *j->p++);
            continue;
        }
        if (j->e - j->p < 2) {
            return -1;
        }
        char c = j->p[1];
        j->p += 2;
        switch (c) {
        case 'b':
            luaL_addchar(&b, '\b');
            break;
        case 'f':
            luaL_addchar(&b, '\f');
            break;
        case 'n':
            luaL_addchar(&b, '\n');
            break;
        case 'r':
            luaL_addchar(&b, '\r');
            break;
        case 't':
            luaL_addchar(&b, '\t');
            break;
        case 'u': {
            uint32_t cp;
            if (j->e - j->p < 4 || sc_hex4(j->p, &cp) != 0) {
                return -1;
            }
            j->p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && j->e - j->p >= 6 && j->p[0] == '\\' &&
                j->p[1] == 'u') {
                uint32_t lo;
                if (sc_hex4(j->p + 2, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    j->p += 6;
                }
            }
            if (cp >= 0xD800 && cp < 0xE000) {
                cp = 0xFFFD; /* a lone surrogate */
            }
            sc_put_utf8(&b, cp);
            break;
        }
        default:
            luaL_addchar(&b, c); /* \" \\ \/ */
            break;
        }
    }
    if (j->p >= j->e) {
        return -1;
    }
    j->p++;
    luaL_pushresult(&b);
    return 0;
}

static int sc_json_value(lua_State *L, struct sc_json *j, int depth);

static int sc_json_container(lua_State *L, struct sc_json *j, int depth)
{
    bool object = *j->p == '{';
    char close = object ? '}' : ']';
    j->p++;
    lua_newtable(L);
    int order = 0;
    if (object) {
        lua_newtable(L); /* member names in order */
        order = lua_gettop(L);
    } else {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &sp_script_key_array);
        lua_setmetatable(L, -2);
    }
    lua_Integer n = 0;
    sc_json_ws(j);
    if (j->p < j->e && *j->p == close) {
        j->p++;
    } else {
        for (;;) {
            sc_json_ws(j);
            if (object) {
                if (j->p >= j->e || *j->p != '"' || sc_json_string(L, j) != 0) {
                    return -1;
                }
                sc_json_ws(j);
                if (j->p >= j->e || *j->p != ':') {
                    return -1;
                }
                j->p++;
                lua_pushvalue(L, -1);
                lua_rawseti(L, order, ++n);
                if (sc_json_value(L, j, depth + 1) != 0) {
                    return -1;
                }
                lua_rawset(L, order - 1);
            } else {
                if (sc_json_value(L, j, depth + 1) != 0) {
                    return -1;
                }
                lua_rawseti(L, -2, ++n);
            }
            sc_json_ws(j);
            if (j->p < j->e && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->e && *j->p == close) {
                j->p++;
                break;
            }
            return -1;
        }
    }
    if (object) {
        /* order[t] = names */
        lua_rawgetp(L, LUA_REGISTRYINDEX, &sp_script_key_order);
        lua_pushvalue(L, order - 1);
        lua_pushvalue(L, order);
        lua_rawset(L, -3);
        lua_pop(L, 2);
    }
    return 0;
}

/* Pushes the JSON value at j->p; -1 when it is not valid JSON. */
static int sc_json_value(lua_State *L, struct sc_json *j, int depth)
{
    if (depth > SC_JSON_MAX_DEPTH || !lua_checkstack(L, 6)) {
        return -1;
    }
    sc_json_ws(j);
    if (j->p >= j->e) {
        return -1;
    }
    char c = *j->p;
    if (c == '"') {
        return sc_json_string(L, j);
    }
    if (c == '{' || c == '[') {
        return sc_json_container(L, j, depth);
    }
    if (j->e - j->p >= 4 && memcmp(j->p, "null", 4) == 0) {
        j->p += 4;
        lua_rawgetp(L, LUA_REGISTRYINDEX, &sp_script_key_null);
        return 0;
    }
    if (j->e - j->p >= 4 && memcmp(j->p, "true", 4) == 0) {
        j->p += 4;
        lua_pushboolean(L, 1);
        return 0;
    }
    if (j->e - j->p >= 5 && memcmp(j->p, "false", 5) == 0) {
        j->p += 5;
        lua_pushboolean(L, 0);
        return 0;
    }
    const char *start = j->p;
    while (j->p < j->e && (strchr("+-.eE", *j->p) != NULL || (*j->p >= '0' && *j->p <= '9'))) {
        j->p++;
    }
    char num[64];
    size_t n = (size_t)(j->p - start);
    if (n == 0 || n >= sizeof(num)) {
        /* Longer than any int64 or double needs: exact digits do not fit a Lua number. */
        if (n == 0) {
            return -1;
        }
        char *big = sp_xstrndup(start, n);
        double d = strtod(big, NULL);
        free(big);
        lua_pushnumber(L, d);
        return 0;
    }
    memcpy(num, start, n);
    num[n] = '\0';
    /* Integers that fit stay integers; others become floats (lua_stringtonumber's rule). */
    if (lua_stringtonumber(L, num) == 0) {
        return -1;
    }
    return 0;
}

int sp_script_push_json(lua_State *L, const char *json, size_t len)
{
    struct sc_json j = {json, json + len};
    if (sc_json_value(L, &j, 0) != 0) {
        return -1;
    }
    sc_json_ws(&j);
    return j.p == j.e ? 0 : -1;
}

/* ---- Lua -> JSON ---- */

int sp_script_put_number(lua_State *L, int idx, struct sp_buf *out)
{
    if (lua_isinteger(L, idx)) {
        sp_buf_put_i64(out, (int64_t)lua_tointeger(L, idx));
        return 0;
    }
    double d = lua_tonumber(L, idx);
    if (!isfinite(d)) {
        return -1;
    }
    char num[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(num, sizeof(num), "%.*g", prec, d);
        if (strtod(num, NULL) == d) {
            break;
        }
    }
    sp_buf_puts(out, num);
    return 0;
}

static int sc_keycmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int sc_put_json_r(lua_State *L, int idx, struct sp_buf *out, int depth, const char **why);

/*
 * An object: the names recorded when it was parsed (or given in order_idx),
 * in that order, then any other string keys sorted. Non-string keys are an
 * error.
 */
static int sc_put_object(lua_State *L, int idx, int order_idx, struct sp_buf *out, int depth,
                         const char **why)
{
    sp_buf_putc(out, '{');
    bool first = true;
    lua_newtable(L); /* names written */
    int done = lua_gettop(L);
    if (order_idx != 0) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, order_idx);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, order_idx, i);
            lua_pushvalue(L, -1);
            lua_rawget(L, idx);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 2);
                continue;
            }
            size_t kl;
            const char *k = lua_tolstring(L, -2, &kl);
            if (!first) {
                sp_buf_putc(out, ',');
            }
            first = false;
            sp_buf_put_json_str(out, k, kl);
            sp_buf_putc(out, ':');
            if (sc_put_json_r(L, lua_gettop(L), out, depth + 1, why) != 0) {
                return -1;
            }
            lua_pop(L, 1);
            lua_pushboolean(L, 1);
            lua_rawset(L, done);
        }
    }
    /* The rest, sorted so the output does not depend on the hash order. */
    size_t nrest = 0;
    size_t cap = 0;
    const char **rest = NULL;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            free(rest);
            *why = "an object key that is not a string";
            return -1;
        }
        lua_pushvalue(L, -1);
        lua_rawget(L, done);
        bool written = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (!written) {
            if (nrest == cap) {
                cap = cap == 0 ? 8 : cap * 2;
                rest = sp_xrealloc(rest, cap * sizeof(*rest));
            }
            rest[nrest++] = lua_tostring(L, -1); /* anchored by the table */
        }
    }
    if (nrest > 1) {
        qsort(rest, nrest, sizeof(*rest), sc_keycmp);
    }
    for (size_t i = 0; i < nrest; i++) {
        if (!first) {
            sp_buf_putc(out, ',');
        }
        first = false;
        sp_buf_put_json_str(out, rest[i], strlen(rest[i]));
        sp_buf_putc(out, ':');
        lua_pushstring(L, rest[i]);
        lua_rawget(L, idx);
        if (sc_put_json_r(L, lua_gettop(L), out, depth + 1, why) != 0) {
            free(rest);
            return -1;
        }
        lua_pop(L, 1);
    }
    free(rest);
    lua_pop(L, 1);
    sp_buf_putc(out, '}');
    return 0;
}

bool sp_script_is_null(lua_State *L, int idx)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &sp_script_key_null);
    bool is = lua_rawequal(L, idx, -1);
    lua_pop(L, 1);
    return is;
}

static bool sc_is_array(lua_State *L, int idx)
{
    if (lua_getmetatable(L, idx)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &sp_script_key_array);
        bool marked = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (marked) {
            return true;
        }
    }
    return lua_rawlen(L, idx) > 0;
}

/* Appends the Lua value at idx as JSON; -1 with *why when it has none. */
static int sc_put_json_r(lua_State *L, int idx, struct sp_buf *out, int depth, const char **why)
{
    if (depth > SC_JSON_MAX_DEPTH || !lua_checkstack(L, 8)) {
        *why = "nesting deeper than 200 levels (a cycle?)";
        return -1;
    }
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        sp_buf_puts(out, "null");
        return 0;
    case LUA_TBOOLEAN:
        sp_buf_puts(out, lua_toboolean(L, idx) ? "true" : "false");
        return 0;
    case LUA_TNUMBER:
        if (sp_script_put_number(L, idx, out) != 0) {
            *why = "NaN or infinity, which JSON cannot hold";
            return -1;
        }
        return 0;
    case LUA_TSTRING: {
        size_t len;
        const char *str = lua_tolstring(L, idx, &len);
        sp_buf_put_json_str(out, str, len);
        return 0;
    }
    case LUA_TTABLE:
        break;
    default:
        *why = "a value of a type JSON cannot hold (function, userdata, thread)";
        return -1;
    }
    if (sp_script_is_null(L, idx)) {
        sp_buf_puts(out, "null");
        return 0;
    }
    if (sp_script_row_is(L, idx)) {
        return sp_script_row_put_json(L, idx, out, depth, why);
    }
    if (sc_is_array(L, idx)) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        sp_buf_putc(out, '[');
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1) {
                sp_buf_putc(out, ',');
            }
            lua_rawgeti(L, idx, i);
            if (sc_put_json_r(L, lua_gettop(L), out, depth + 1, why) != 0) {
                return -1;
            }
            lua_pop(L, 1);
        }
        sp_buf_putc(out, ']');
        return 0;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &sp_script_key_order);
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    int order = lua_istable(L, -1) ? lua_gettop(L) : 0;
    return sc_put_object(L, idx, order, out, depth, why);
}

/* sc_put_json_r, leaving the stack as it was, whatever happens. */
int sp_script_put_json(lua_State *L, int idx, struct sp_buf *out, int depth, const char **why)
{
    int top = lua_gettop(L);
    int rc = sc_put_json_r(L, idx, out, depth, why);
    lua_settop(L, top);
    return rc;
}
