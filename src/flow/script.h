/*
 * The Lua engine of the `script` flow: compiles a user's Lua function once
 * and calls it on each event, sandboxed, with a per-event instruction
 * budget and a memory limit. docs/flow-script.md describes what the script
 * sees and may return.
 *
 * Lua 5.4 (Debian's liblua5.4), not LuaJIT: 5.4 has real 64-bit integers
 * (bigint keys and LSNs stay exact, LuaJIT's numbers are doubles), a
 * supported allocator hook per state (LuaJIT's own allocator ignores
 * lua_newstate's on x86-64 with GC64), count hooks that fire in every
 * loop (LuaJIT's JIT-compiled traces skip them unless the JIT is off), and
 * it is maintained upstream and in Debian. LuaJIT's speed is not needed:
 * a call that renames a field runs about 180,000 times a second on one
 * core, event table in and new event out included (test_script).
 *
 * Threads: a struct sp_script is one Lua state; use it from one thread at
 * a time (the pipeline thread).
 */
#ifndef SIPHON_FLOW_SCRIPT_H
#define SIPHON_FLOW_SCRIPT_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/event.h"

struct sp_script;

struct sp_script_opts {
    const char *path;      /* a .lua file, or NULL when source is given */
    const char *source;    /* inline source, or NULL */
    const char *chunkname; /* inline source: how errors name it, e.g. "siphon.yaml:12" */
    const char *function;  /* the global function called per event; NULL: "transform" */
    int64_t budget;        /* Lua VM instructions per event; 0: 1,000,000 */
    size_t memory_limit;   /* bytes for the Lua state; 0: 64 MiB */
};

/*
 * Loads and runs the script (its top level, under the budget), then checks
 * that the function exists. Errors (syntax, top-level runtime error, a
 * missing function, a file that cannot be read, bytecode) name the
 * script's file:line. Returns NULL with err set.
 */
struct sp_script *sp_script_compile(const struct sp_script_opts *opts, struct sp_err *err);
void sp_script_free(struct sp_script *s);

/*
 * A row as the json format would write it: per column of ev->rel, the JSON
 * text of its value (what sp_pgtext_to_json produced, "null" for SQL NULL),
 * or NULL when the column is not part of this row (not sent, e.g. the
 * non-key columns of a key-only old row). json[i] holds len[i] bytes.
 */
struct sp_script_row {
    const char *const *json;
    const size_t *len;
};

struct sp_script_input {
    const struct sp_event *ev;
    const struct sp_script_row *before; /* NULL: no old row */
    const struct sp_script_row *after;  /* NULL: no new row */
    const char *key;                    /* the key as JSON ({"id":42}), or NULL */
    size_t key_len;
};

enum sp_script_verdict {
    SP_SCRIPT_UNCHANGED, /* pass the event on as it was */
    SP_SCRIPT_CHANGED,   /* replace it by out[0..n-1] (n == 0: drop) */
};

struct sp_script_result {
    enum sp_script_verdict verdict;
    int n;                 /* SP_SCRIPT_CHANGED: number of events */
    struct sp_event **out; /* owned by the caller: sp_event_free each, then free(out) */
};

/*
 * Calls the function on one event. On 0, res says what became of it. On
 * error (a runtime error, the instruction budget or the memory limit
 * exceeded, a return value that is not an event) returns SP_EINVAL with err
 * naming the script's file:line where Lua knows it; the state stays usable
 * for the next event.
 */
int sp_script_call(struct sp_script *s, const struct sp_script_input *in,
                   struct sp_script_result *res, struct sp_err *err);

/* Frees what a result holds (safe on a zeroed or UNCHANGED result). */
void sp_script_result_fini(struct sp_script_result *res);

#endif
