// SPDX-License-Identifier: Apache-2.0
/* Chunked bump allocator. */
#include "core/arena.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "util/mem.h"

struct sp_arena_chunk {
    struct sp_arena_chunk *next;
    size_t used;
    size_t cap;
    alignas(max_align_t) unsigned char data[];
};

void sp_arena_init(struct sp_arena *a)
{
    a->head = NULL;
    a->bytes = 0;
}

void sp_arena_fini(struct sp_arena *a)
{
    struct sp_arena_chunk *c = a->head;
    while (c != NULL) {
        struct sp_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    sp_arena_init(a);
}

void *sp_arena_alloc(struct sp_arena *a, size_t n, size_t size_hint)
{
    const size_t align = alignof(max_align_t);
    n = (n + align - 1) & ~(align - 1);
    struct sp_arena_chunk *c = a->head;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = size_hint > n ? size_hint : n;
        if (cap < 256) {
            cap = 256;
        }
        cap = (cap + align - 1) & ~(align - 1);
        c = sp_xmalloc(sizeof(*c) + cap);
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
        a->bytes += sizeof(*c) + cap;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

char *sp_arena_strndup(struct sp_arena *a, const char *s, size_t n)
{
    char *p = sp_arena_alloc(a, n + 1, 0);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
