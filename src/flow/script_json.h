/*
 * JSON <-> Lua values for the script engine (flow/script.c): the row values
 * the json format produced become Lua values, and what a script returns
 * becomes JSON again. Internal to the engine; docs/flow-script.md has the
 * mapping users see.
 *
 * SQL/JSON null is one sentinel table (registry key sp_script_key_null);
 * JSON arrays carry the metatable at sp_script_key_array; an object's
 * member order is kept in a weak table (sp_script_key_order) so that it is
 * written back in the same order. Every function works on the stack of L
 * and raises Lua errors only on memory exhaustion.
 */
#ifndef SIPHON_FLOW_SCRIPT_JSON_H
#define SIPHON_FLOW_SCRIPT_JSON_H

#include <stddef.h>

#include <lua.h>
#include <stdbool.h>

#include "util/buf.h"

#define SP_SCRIPT_JSON_MAX_DEPTH 200

/* Registry keys: their addresses index LUA_REGISTRYINDEX (lua_rawgetp). */
extern const char sp_script_key_null;
extern const char sp_script_key_array;
extern const char sp_script_key_order;

/* Pushes the JSON value of json (len bytes); -1 (nothing pushed) when it is not one. */
int sp_script_push_json(lua_State *L, const char *json, size_t len);
/*
 * Appends the Lua value at idx as JSON. -1 with *why when it has none (a
 * function, NaN, non-string object keys, nesting past 200 levels); the
 * stack is left as it was either way.
 */
int sp_script_put_json(lua_State *L, int idx, struct sp_buf *out, int depth, const char **why);
/* A number as JSON: integers exactly, floats in the fewest digits that read back the same. */
int sp_script_put_number(lua_State *L, int idx, struct sp_buf *out);
bool sp_script_is_null(lua_State *L, int idx);

#endif
