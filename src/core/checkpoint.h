/*
 * Checkpoint tracker: turns asynchronous, out-of-order acknowledgements into
 * the one LSN that may be confirmed to PostgreSQL (DESIGN.md guarantee 1).
 *
 * Transactions are registered in decode order (sp_ckpt_begin). Each
 * delivered record holds the transaction (sp_ckpt_hold) until its sink, or
 * the dead-letter sink, has it durably (sp_ckpt_release). Once the commit
 * is seen (sp_ckpt_commit) and nothing is held, the transaction is done; the
 * confirmable LSN is the end LSN of the last transaction of the longest
 * done prefix, so a finished later transaction never confirms past an
 * unfinished earlier one.
 *
 * Single-threaded: the pipeline thread owns the tracker.
 */
#ifndef SIPHON_CORE_CHECKPOINT_H
#define SIPHON_CORE_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

struct sp_ckpt;
struct sp_ckpt_txn;

struct sp_ckpt *sp_ckpt_new(void);
void sp_ckpt_free(struct sp_ckpt *ck);

/* Register the next transaction (commit_lsn identifies it, for logs). */
struct sp_ckpt_txn *sp_ckpt_begin(struct sp_ckpt *ck, uint64_t commit_lsn);
/* One more record of t is in flight. */
void sp_ckpt_hold(struct sp_ckpt_txn *t);
/* One record of t is durable. */
void sp_ckpt_release(struct sp_ckpt *ck, struct sp_ckpt_txn *t);
/* The whole of t has been emitted; end_lsn is what confirms it. */
void sp_ckpt_commit(struct sp_ckpt *ck, struct sp_ckpt_txn *t, uint64_t end_lsn);
/* Call fn(ctx) once t is done (acknowledged, and so is everything before it);
 * never called for an aborted t or one still pending when the tracker is freed. */
typedef void (*sp_ckpt_done_fn)(void *ctx);
void sp_ckpt_on_done(struct sp_ckpt_txn *t, sp_ckpt_done_fn fn, void *ctx);
/* Drop an uncommitted transaction (the connection was lost mid-transaction:
 * the server will resend it whole). Records still held keep t alive until
 * released, but it never confirms anything. */
void sp_ckpt_abort(struct sp_ckpt *ck, struct sp_ckpt_txn *t);

/* Highest LSN that may be confirmed (0 if none yet); monotonic. */
uint64_t sp_ckpt_confirmable(const struct sp_ckpt *ck);
/* True when no transaction is open or in flight. */
bool sp_ckpt_idle(const struct sp_ckpt *ck);
/* Transactions registered but not yet done. */
size_t sp_ckpt_pending(const struct sp_ckpt *ck);

#endif
