/*
 * Delivery to one sink instance: records are spread over the sink's
 * partitions by key hash; each partition is a strictly ordered queue of
 * batches with at most one batch in flight, so changes to one key arrive in
 * order while different keys are delivered in parallel. A batch that fails
 * with a retriable error is retried with exponential backoff and jitter;
 * meanwhile only its keys wait (retry_hold: key; the rest of its partition
 * flows on) or its whole partition (retry_hold: partition). A partition can
 * thus have several batches with the sink at once, never two with the same
 * key.
 *
 * Threads: sp_delivery_add/flush/retry/release run on the pipeline thread;
 * the sink's submit and poll run on the delivery's own thread; the sink
 * reports outcomes with sp_batch_done from any thread, which hands the
 * batch to the done callback (the pipeline queues it for its thread).
 */
#ifndef SIPHON_CORE_DELIVERY_H
#define SIPHON_CORE_DELIVERY_H

#include <stdint.h>

#include <stdbool.h>

#include "core/plugin.h"
#include "core/sinkconf.h"

struct sp_delivery;

/* Called from any thread when the sink reports a batch's outcome. */
typedef void (*sp_delivery_done_fn)(void *ctx, struct sp_batch *b);

struct sp_delivery *sp_delivery_new(struct sp_sink *sk, const struct sp_sink_batching *batching,
                                    sp_delivery_done_fn done, void *ctx);
/* Start the delivery thread (the sink is open). */
int sp_delivery_start(struct sp_delivery *d, struct sp_err *err);

/* Append a record to the open batch of its partition (key_hash % partitions). */
void sp_delivery_add(struct sp_delivery *d, struct sp_rec *r);
/*
 * Hand over open batches that are full, or whose partition is idle and whose
 * linger time has passed; all of them when force. more: the caller has more
 * records ready to add right away, so a batch of an idle partition may keep
 * growing for a couple of milliseconds even without linger. Returns the ms
 * until the next linger deadline, or -1 when no batch is open.
 */
int sp_delivery_flush(struct sp_delivery *d, bool force, bool more, int64_t now_ms);
/* The pipeline settled b for good (delivered or rejected): its partition moves on; frees b. */
void sp_delivery_release(struct sp_delivery *d, struct sp_batch *b);
/*
 * b was reported with rc 0 but some records carry a retriable rec->err:
 * those, and every later record of b with the same key, move to a batch of
 * their own that is retried later (the errors are freed); b keeps the rest,
 * to be settled and released as usual. No-op when there is none.
 */
void sp_delivery_retry_failed(struct sp_delivery *d, struct sp_batch *b);
/* b failed with a retriable error reported through sp_batch_done: submit it again later. */
void sp_delivery_retry(struct sp_delivery *d, struct sp_batch *b);
/* True when no batch is queued or in flight (open, unflushed batches aside). */
bool sp_delivery_idle(struct sp_delivery *d);
/*
 * The shutdown budget ends at deadline_ms (sp_time_mono_ms): the sink's
 * final flush, when the thread stops, gets what is left of it (none if
 * never set).
 */
void sp_delivery_set_deadline(struct sp_delivery *d, int64_t deadline_ms);
/* Stop the thread (after the sink's flush) and wait for it. */
void sp_delivery_stop(struct sp_delivery *d);
/* Free d; every record never settled goes to free_rec first. */
void sp_delivery_free(struct sp_delivery *d, void (*free_rec)(void *ctx, struct sp_rec *r),
                      void *ctx);

#endif
