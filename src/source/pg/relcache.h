/*
 * Relation cache: relation OID -> the current version of its shape, as the
 * last pgoutput Relation message described it.
 *
 * The cache holds one reference on each current version. A new version
 * replaces the old one; events decoded earlier keep their own reference and
 * so keep the shape they were decoded with (an ALTER TABLE mid-stream does not
 * change them). Pipeline thread only.
 */
#ifndef SIPHON_SOURCE_PG_RELCACHE_H
#define SIPHON_SOURCE_PG_RELCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "core/event.h"

struct sp_relcache;

/* An empty cache; never NULL (allocation failure aborts). */
struct sp_relcache *sp_relcache_new(void);

/* Drops the cache's reference on every version it holds, then frees rc. NULL is a no-op. */
void sp_relcache_free(struct sp_relcache *rc);

/*
 * The current version for oid, or NULL if no Relation message announced it.
 * Borrowed: valid until the next sp_relcache_put() for the same oid or
 * sp_relcache_free(); take sp_relation_ref() to keep it longer.
 */
struct sp_relation *sp_relcache_get(const struct sp_relcache *rc, uint32_t oid);

/*
 * Make rel the current version for rel->oid. Takes ownership of the caller's
 * reference. Sets rel->version to the previous version's + 1 (1 for the
 * first) and drops the cache's reference on the previous version.
 */
void sp_relcache_put(struct sp_relcache *rc, struct sp_relation *rel);

/* Number of relations cached. */
size_t sp_relcache_count(const struct sp_relcache *rc);

#endif
