/*
 * pgoutput decoder: turns the messages of PostgreSQL's pgoutput plugin,
 * protocol version 1 (the payload of an XLogData 'w' CopyData message), into
 * change events.
 *
 * Pure: bytes and the relation cache in, events out. No I/O, no libpq, no
 * clock; the caller frames messages and passes each one's WAL position.
 * Pipeline thread only.
 */
#ifndef SIPHON_SOURCE_PG_PGOUTPUT_H
#define SIPHON_SOURCE_PG_PGOUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

#include "core/err.h"
#include "core/event.h"
#include "source/pg/relcache.h"

/*
 * Called for each decoded Relation message before the new version is stored,
 * so the caller can resolve rel->cols[i].type (the decoder leaves it NULL).
 * rel is borrowed for the call; its version is set only when it is stored. A
 * non-zero return (with err filled) fails the decode with that code and the
 * version is not stored.
 */
typedef int (*sp_pgo_relation_fn)(void *ctx, struct sp_relation *rel, struct sp_err *err);

/*
 * Called for each Type message: PostgreSQL announces a non-built-in type
 * (an enum, a domain's base type, ...) before the Relation that uses it.
 * schema ("pg_catalog" when the server sent an empty namespace) and name are
 * borrowed for the call. A non-zero return fails the decode like on_relation.
 */
typedef int (*sp_pgo_type_fn)(void *ctx, uint32_t oid, const char *schema, const char *name,
                              struct sp_err *err);

/*
 * Decoder state for one replication stream; caller-owned storage, set up with
 * sp_pgo_init(). The caller may set on_relation, on_type, ctx, source_name and
 * db after init; the transaction fields are the decoder's.
 */
struct sp_pgo {
    struct sp_relcache *rc;         /* borrowed; outlives the decoder */
    sp_pgo_relation_fn on_relation; /* optional */
    sp_pgo_type_fn on_type;         /* optional */
    void *ctx;                      /* passed to the callbacks */
    const char *source_name;        /* copied by pointer into every event */
    const char *db;                 /* copied by pointer into every event */

    /* The open transaction, between Begin and Commit. */
    bool in_txn;
    uint64_t final_lsn;     /* Begin's final LSN: the commit record's LSN */
    int64_t commit_time_us; /* Unix epoch microseconds */
    uint32_t xid;
    uint32_t seq;        /* change events delivered so far in this transaction */
    char *origin;        /* owned; from an Origin message, NULL if none */
    uint64_t origin_lsn; /* the commit's LSN on the origin server */
};

/* Zero d and attach rc, which must outlive d. */
void sp_pgo_init(struct sp_pgo *d, struct sp_relcache *rc);

/* Free what d owns (the origin name); rc and the strings set by the caller stay. */
void sp_pgo_fini(struct sp_pgo *d);

/*
 * Decode one pgoutput message of len bytes; wal_start is the XLogData's WAL
 * start (or the lsn column of pg_logical_slot_*_binary_changes()).
 *
 * Appends 0 or more new events to out; the caller owns and frees them. Each
 * event holds its own reference on its relation version and owns copies of
 * every byte it points to, so msg may be reused as soon as this returns.
 *
 *   Begin      one SP_OP_BEGIN (commit_lsn = final LSN, xid, commit time)
 *   Commit     one SP_OP_COMMIT (commit_lsn, end_lsn)
 *   Insert, Update, Delete
 *              one event, seq 1, 2, 3, ... within the transaction
 *   Truncate   one SP_OP_TRUNCATE per relation, each with its own seq
 *   Message    one SP_OP_MESSAGE; a transactional one takes the next seq, a
 *              non-transactional one has seq 0, xid 0, commit time 0 and
 *              commit_lsn = end_lsn = its own LSN
 *   Relation   none; stores a new version in rc (after on_relation)
 *   Type       none; calls on_type
 *   Origin     none; sets the origin of the rest of the transaction
 *
 * In an update, a column the server left out as an unchanged TOASTed value
 * ('u') takes the old row's value when the old row is a full 'O' tuple that
 * has it; otherwise it stays SP_DATUM_UNCHANGED.
 *
 * On error returns SP_EPROTO (or an error from a callback), fills err with a
 * message naming the message type, its LSN and the byte offset, appends
 * nothing to out and leaves the transaction state as it was.
 */
SP_NODISCARD int sp_pgo_decode(struct sp_pgo *d, const uint8_t *msg, size_t len, uint64_t wal_start,
                               struct sp_event_list *out, struct sp_err *err);

#endif
