// SPDX-License-Identifier: Apache-2.0
/*
 * Relation cache: an open-addressing hash table (linear probing) from
 * relation OID to the current struct sp_relation version.
 *
 * Entries are replaced, never removed: PostgreSQL has no "relation dropped"
 * message, and a walsender re-sends Relation messages for whatever it decodes.
 * Nothing here parses the protocol; pgoutput.c builds the versions.
 */
#include "source/pg/relcache.h"

#include <stdlib.h>

#include "util/mem.h"

struct rc_slot {
    uint32_t oid;
    struct sp_relation *rel; /* NULL: slot empty */
};

struct sp_relcache {
    struct rc_slot *slots;
    size_t cap; /* power of two */
    size_t count;
};

#define RC_INITIAL_CAP 16

static size_t rc_hash(uint32_t oid)
{
    /* Fibonacci hashing: OIDs are sequential, so spread their low bits. */
    return (size_t)((oid * UINT32_C(2654435769)) >> 7);
}

static struct rc_slot *rc_find(const struct sp_relcache *rc, uint32_t oid)
{
    size_t mask = rc->cap - 1;
    size_t i = rc_hash(oid) & mask;
    while (rc->slots[i].rel != NULL && rc->slots[i].oid != oid) {
        i = (i + 1) & mask;
    }
    return &rc->slots[i];
}

static void rc_grow(struct sp_relcache *rc)
{
    struct rc_slot *old = rc->slots;
    size_t old_cap = rc->cap;

    rc->cap = old_cap * 2;
    rc->slots = sp_xcalloc(rc->cap, sizeof(*rc->slots));
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].rel != NULL) {
            *rc_find(rc, old[i].oid) = old[i];
        }
    }
    free(old);
}

struct sp_relcache *sp_relcache_new(void)
{
    struct sp_relcache *rc = sp_xcalloc(1, sizeof(*rc));
    rc->cap = RC_INITIAL_CAP;
    rc->slots = sp_xcalloc(rc->cap, sizeof(*rc->slots));
    return rc;
}

void sp_relcache_free(struct sp_relcache *rc)
{
    if (rc == NULL) {
        return;
    }
    for (size_t i = 0; i < rc->cap; i++) {
        sp_relation_unref(rc->slots[i].rel);
    }
    free(rc->slots);
    free(rc);
}

struct sp_relation *sp_relcache_get(const struct sp_relcache *rc, uint32_t oid)
{
    return rc_find(rc, oid)->rel;
}

void sp_relcache_put(struct sp_relcache *rc, struct sp_relation *rel)
{
    struct rc_slot *slot = rc_find(rc, rel->oid);
    struct sp_relation *prev = slot->rel;

    if (prev == rel) {
        /* Already current: the cache holds a reference, drop the caller's. */
        sp_relation_unref(rel);
        return;
    }
    rel->version = prev != NULL ? prev->version + 1 : 1;
    slot->oid = rel->oid;
    slot->rel = rel;
    if (prev != NULL) {
        sp_relation_unref(prev);
        return;
    }
    /* Keep the load factor under 3/4 so probe sequences stay short. */
    if (++rc->count * 4 > rc->cap * 3) {
        rc_grow(rc);
    }
}

size_t sp_relcache_count(const struct sp_relcache *rc)
{
    return rc->count;
}
