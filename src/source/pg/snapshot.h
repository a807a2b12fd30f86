/*
 * Snapshots of the postgres source: the initial load of a stream's tables
 * and on-demand re-snapshots, read while the stream keeps flowing
 * (watermark algorithm of Netflix's DBLog, with visibility decided by the
 * chunk's MVCC snapshot).
 *
 * A job reads one table for a set of streams in primary-key order, one
 * chunk at a time, on one of `snapshot_connections` worker connections.
 * For each chunk:
 *   1. the pipeline thread registers the chunk: from now on every streamed
 *      change of the table is logged (xid, key) against it;
 *   2. the worker reads the chunk in a REPEATABLE READ transaction and
 *      records its snapshot (pg_current_snapshot) S, then places the high
 *      watermark P: a non-transactional logical message (mode message) or
 *      the WAL insert position (mode lsn);
 *   3. once the stream has passed P, every key logged by a transaction that
 *      S does not see is dropped from the chunk (the stream's newer value
 *      wins) and the remaining rows are emitted as op "r" events, at that
 *      point of the stream, in one pseudo-transaction;
 *   4. when that transaction is acknowledged by the sinks, the chunk's last
 *      key is written to the state file (state_dir/<source>.snapshot), so a
 *      restart resumes after it.
 * Tables without a primary key or unique not-null index are read whole:
 * at slot creation in the snapshot exported by the slot (consistent), the
 * stream held back meanwhile; that read cannot resume.
 *
 * Pipeline thread, except the workers' own connections.
 */
#ifndef SIPHON_SOURCE_PG_SNAPSHOT_H
#define SIPHON_SOURCE_PG_SNAPSHOT_H

#include <stdint.h>

#include <libpq-fe.h>
#include <stdbool.h>

#include "core/err.h"
#include "core/event.h"
#include "core/plugin.h"
#include "source/pg/pg.h"
#include "source/pg/types.h"
#include "util/buf.h"

struct sp_snap;

/* Prefix of siphon's own logical decoding messages (never delivered). */
#define SP_SNAP_MSG_PREFIX "siphon."
#define SP_SNAP_WATERMARK  "siphon.watermark"
#define SP_SNAP_REQUEST    "siphon.snapshot"

struct sp_snap_host {
    const struct pg_conf *conf;
    struct sp_source *src;
    struct sp_typcache *tc;
    const char *slot;
    char *const *db; /* the source's database name, known once connected */
};

struct sp_snap *sp_snap_new(const struct sp_snap_host *host);
void sp_snap_free(struct sp_snap *s);

/*
 * Before streaming, on the metadata connection meta: load the state file
 * and plan the jobs. creating: the slot does not exist yet and will be
 * created (initial snapshot of every table when snapshot: initial).
 * *export_wanted tells whether the slot should export its snapshot (tables
 * without a key to read whole).
 */
int sp_snap_prepare(struct sp_snap *s, PGconn *meta, bool creating, bool *export_wanted,
                    struct sp_err *err);
/* The stream starts at lsn (the new slot's consistent point). */
void sp_snap_set_start(struct sp_snap *s, uint64_t lsn);
/* The slot was created with EXPORT_SNAPSHOT name (NULL: none): import it now. */
int sp_snap_slot_created(struct sp_snap *s, const char *snapshot_name, struct sp_err *err);

/*
 * Every decoded event passes here before it is emitted. Returns true when
 * the event was siphon's own (watermark, request) and must not be emitted.
 * May emit snapshot chunks (at a transaction boundary) through src->emit.
 */
bool sp_snap_on_event(struct sp_snap *s, struct sp_event *ev, struct sp_err *err, int *rc);
/* A keepalive outside a transaction: everything before wal_end was handled. */
int sp_snap_on_position(struct sp_snap *s, uint64_t wal_end, struct sp_err *err);
/*
 * Start chunks, collect the workers' results, emit what may be emitted.
 * Called between transactions. Returns 1 when the stream must not be read
 * now (a table is being read whole), 0 otherwise, negative on a fatal error.
 */
int sp_snap_service(struct sp_snap *s, bool in_txn, struct sp_err *err);
/* The logical message `siphon snapshot` writes to ask for a re-snapshot (table, where may be NULL).
 */
int sp_snap_encode_request(struct sp_buf *out, const char *slot, const char *stream,
                           const char *table, const char *where, const char *id);
/*
 * `siphon snapshot`: write a request for the running siphon of src (a
 * configured, unopened postgres source) into the WAL. Prints what it did.
 */
int sp_pg_request_snapshot(struct sp_source *src, const char *stream, const char *table,
                           const char *where, struct sp_err *err);
/* ms until sp_snap_service wants to run again (-1: idle). */
int sp_snap_wait_ms(const struct sp_snap *s);

#endif
