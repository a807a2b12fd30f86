/*
 * Bump allocator for one unit of work (an event and its tuples). Freed as a
 * whole. Not thread-safe; an arena belongs to whoever owns the unit.
 */
#ifndef SIPHON_CORE_ARENA_H
#define SIPHON_CORE_ARENA_H

#include <stddef.h>

struct sp_arena_chunk;

struct sp_arena {
    struct sp_arena_chunk *head; /* newest chunk first */
    size_t bytes;                /* total bytes allocated from malloc */
};

void sp_arena_init(struct sp_arena *a);
void sp_arena_fini(struct sp_arena *a);
/* Returns n bytes aligned for any type; never NULL. */
void *sp_arena_alloc(struct sp_arena *a, size_t n, size_t size_hint);
char *sp_arena_strndup(struct sp_arena *a, const char *s, size_t n);

#endif
