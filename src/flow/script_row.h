/*
 * Row tables of the script engine (flow/script.c): event.before and
 * event.after are tables whose columns become Lua values when the script
 * first reads them. A row holds its columns as the json format wrote them
 * (a copy, so a row kept past its call still reads the same), what the
 * script read (so a value can be recognised when it comes back, also under
 * another name) and what it wrote. A column the script never touched goes
 * back to the event as it was, without a conversion either way.
 *
 * To the script a row is a table: indexing, assignment, pairs and next work
 * as on any table (columns in table order, then added ones); rawget,
 * rawset and # see an empty table, and its metatable is protected.
 *
 * Internal to the engine. Every function works on the stack of L; the ones
 * that convert values raise Lua errors (invalid JSON, memory) and must run
 * inside a protected call.
 */
#ifndef SIPHON_FLOW_SCRIPT_ROW_H
#define SIPHON_FLOW_SCRIPT_ROW_H

#include <stddef.h>

#include <lua.h>
#include <stdbool.h>

#include "core/event.h"
#include "util/buf.h"

/* Registry key of the rows' metatable (lua_rawgetp on LUA_REGISTRYINDEX). */
extern const char sp_script_key_row;

/* Creates the rows' metatable in the registry; env_idx: the sandbox's global table, whose
 * next is replaced by one that also walks rows. */
void sp_script_row_setup(lua_State *L, int env_idx);

/*
 * Pushes a new row of ncols columns named by the table at names_idx
 * ({[i] = name, [name] = i}, 1-based; sp_script_row_names), column i being
 * json[i] (len[i] bytes), or absent when json[i] is NULL.
 */
void sp_script_row_push(lua_State *L, int names_idx, int ncols, const char *const *json,
                        const size_t *len);

/* Pushes the names table of rel's columns. */
void sp_script_row_names(lua_State *L, const struct sp_relation *rel);

bool sp_script_row_is(lua_State *L, int idx);

enum sp_script_row_state {
    SP_SCRIPT_ROW_ABSENT,   /* not a column, or removed: nothing pushed */
    SP_SCRIPT_ROW_ORIGINAL, /* the column as given, not assigned: nothing pushed, *col set */
    SP_SCRIPT_ROW_WRITTEN,  /* assigned: the value pushed */
};

/* What the row at idx holds under name (a string). */
enum sp_script_row_state sp_script_row_get(lua_State *L, int idx, const char *name, int *col);

/*
 * A row's parts on the stack, for looking many columns up: names, read
 * and written are absolute stack indexes (read and written 0 when the row
 * has none yet).
 */
struct sp_script_row_view {
    int ncols;
    int names;
    int read;
    int written;
    const size_t *off; /* SIZE_MAX: the row has no such column */
};

/* Pushes the names, read and written tables of the row at idx (3 slots) and describes them. */
void sp_script_row_view(lua_State *L, int idx, struct sp_script_row_view *v);

/* What a viewed row holds in column col (0-based); WRITTEN pushes the value. */
enum sp_script_row_state sp_script_row_view_col(lua_State *L, const struct sp_script_row_view *v,
                                                int col);

/* Whether the value at idx stands for a column removed by the script (in a written table). */
bool sp_script_row_is_removed(lua_State *L, int idx);

/* Pushes the table of values the script read ([column + 1] = value), or nil if it read none. */
void sp_script_row_read(lua_State *L, int idx);

/* Pushes the value of name as the script reads it (nil when absent). */
void sp_script_row_value(lua_State *L, int idx, const char *name);

/*
 * Walks the names of the row at idx, like lua_next without values: pops a
 * key (nil to start), pushes the next one and returns 1 with *col its
 * column (0-based) or -1 for an added one; returns 0 at the end.
 */
int sp_script_row_next_name(lua_State *L, int idx, int *col);

/* Appends the row at idx as a JSON object; -1 with *why when a value has no JSON. */
int sp_script_row_put_json(lua_State *L, int idx, struct sp_buf *out, int depth, const char **why);

#endif
