// SPDX-License-Identifier: Apache-2.0
/*
 * Per-sink delivery: key-hash partitions, batching (count, bytes, linger),
 * one batch in flight per partition, retries with backoff that block only
 * their partition, and the delivery thread that calls the sink.
 *
 * What it does not do: decide what a rejected record becomes (the
 * pipeline's recovery policies) or what may be confirmed (checkpoints).
 */
#include "core/delivery.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "telemetry/log.h"
#include "util/mem.h"
#include "util/time.h"

#define DL_FIRST_RETRY_MS 100
#define DL_MAX_RETRY_MS   30000
/*
 * While the pipeline has more records at hand (its source has data ready),
 * an idle partition's open batch keeps growing for up to this long, linger
 * or not: those records wait for nothing, and every hand-over costs two
 * thread wake-ups (to the delivery thread and back).
 */
#define DL_FILL_MS 2

struct dl_part {
    /* pipeline thread only */
    struct sp_batch *open;
    int64_t open_since_ms;
    /* under d->mu */
    struct sp_batch *q_head; /* ready to submit, in order */
    struct sp_batch *q_tail;
    bool inflight;
};

struct sp_delivery {
    struct sp_sink *sk;
    const struct sp_sink_batching *batching;
    sp_delivery_done_fn done;
    void *ctx;
    int nparts;
    struct dl_part *parts;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started;
    bool stopping; /* under mu */
    int next;      /* round-robin start, delivery thread only */
};

/* ---- batches ---- */

void sp_batch_done(struct sp_batch *b, int rc, const struct sp_err *err)
{
    b->rc = rc;
    if (rc != 0 && err != NULL) {
        b->err = *err;
    } else if (rc != 0) {
        sp_err_set(&b->err, rc, "the sink reported a failure without details");
    }
    b->dl->done(b->dl->ctx, b);
}

static int64_t dl_backoff_ms(int attempt)
{
    int64_t cap = DL_FIRST_RETRY_MS;
    for (int i = 1; i < attempt && cap < DL_MAX_RETRY_MS; i++) {
        cap *= 2;
    }
    if (cap > DL_MAX_RETRY_MS) {
        cap = DL_MAX_RETRY_MS;
    }
    /* Jitter: somewhere in the upper half, so partitions and processes do not retry in step. */
    return cap / 2 + (int64_t)(rand() % (int)(cap / 2 + 1));
}

/* Put b back at the head of its partition, due after a backoff. Under mu. */
static void dl_requeue_locked(struct sp_delivery *d, struct sp_batch *b)
{
    struct dl_part *p = &d->parts[b->part];
    int64_t wait = dl_backoff_ms(b->attempt);
    b->not_before_ms = sp_time_mono_ms() + wait;
    sp_log_emit_hint(&d->sk->log, SP_LOG_WARN, b->err.hint,
                     "could not deliver %zu records (partition %d, attempt %d), retrying in "
                     "%lld ms: %s",
                     b->count, b->part, b->attempt, (long long)wait, b->err.msg);
    b->rc = 0;
    b->next = p->q_head;
    p->q_head = b;
    if (p->q_tail == NULL) {
        p->q_tail = b;
    }
    p->inflight = false;
    pthread_cond_signal(&d->cv);
}

/* ---- the delivery thread ---- */

static void dl_submit(struct sp_delivery *d, struct sp_batch *b)
{
    struct sp_err err;
    sp_err_clear(&err);
    b->attempt++;
    int rc = d->sk->ops->submit(d->sk, b, &err);
    if (rc == 0) {
        return; /* the sink calls sp_batch_done */
    }
    pthread_mutex_lock(&d->mu);
    bool stopping = d->stopping;
    if (err.retriable && !stopping) {
        b->err = err;
        dl_requeue_locked(d, b);
        pthread_mutex_unlock(&d->mu);
        return;
    }
    pthread_mutex_unlock(&d->mu);
    /* Permanent, or shutting down: the pipeline decides (a retriable error at
     * shutdown leaves the records unconfirmed). */
    sp_batch_done(b, rc, &err);
}

/* The next batch that may go: its partition has nothing in flight and its
 * backoff is over. Under mu. *wait_ms: how long until one may be due. */
static struct sp_batch *dl_pick_locked(struct sp_delivery *d, int64_t now, int64_t *wait_ms)
{
    *wait_ms = -1;
    for (int i = 0; i < d->nparts; i++) {
        int idx = (d->next + i) % d->nparts;
        struct dl_part *p = &d->parts[idx];
        if (p->inflight || p->q_head == NULL) {
            continue;
        }
        struct sp_batch *b = p->q_head;
        if (b->not_before_ms > now) {
            int64_t w = b->not_before_ms - now;
            if (*wait_ms < 0 || w < *wait_ms) {
                *wait_ms = w;
            }
            continue;
        }
        p->q_head = b->next;
        if (p->q_head == NULL) {
            p->q_tail = NULL;
        }
        b->next = NULL;
        p->inflight = true;
        d->next = (idx + 1) % d->nparts;
        return b;
    }
    return NULL;
}

static void dl_wait_locked(struct sp_delivery *d, int64_t wait_ms)
{
    if (d->sk->ops->poll != NULL) {
        /* Asynchronous sinks deliver their acknowledgements from poll. */
        int t = wait_ms < 0 || wait_ms > 100 ? 100 : (int)wait_ms;
        pthread_mutex_unlock(&d->mu);
        d->sk->ops->poll(d->sk, t);
        pthread_mutex_lock(&d->mu);
        return;
    }
    if (wait_ms < 0) {
        pthread_cond_wait(&d->cv, &d->mu);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += wait_ms / 1000;
    ts.tv_nsec += (wait_ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&d->cv, &d->mu, &ts);
}

static void *dl_main(void *arg)
{
    struct sp_delivery *d = arg;
    pthread_mutex_lock(&d->mu);
    while (!d->stopping) {
        int64_t wait_ms;
        struct sp_batch *b = dl_pick_locked(d, sp_time_mono_ms(), &wait_ms);
        if (b != NULL) {
            pthread_mutex_unlock(&d->mu);
            dl_submit(d, b);
            pthread_mutex_lock(&d->mu);
            continue;
        }
        dl_wait_locked(d, wait_ms);
    }
    pthread_mutex_unlock(&d->mu);
    if (d->sk->ops->flush != NULL) {
        struct sp_err err;
        sp_err_clear(&err);
        if (d->sk->ops->flush(d->sk, 10000, &err) != 0) {
            sp_log_error(&d->sk->log, "could not flush: %s", err.msg);
        }
    }
    return NULL;
}

/* ---- pipeline side ---- */

struct sp_delivery *sp_delivery_new(struct sp_sink *sk, const struct sp_sink_batching *batching,
                                    sp_delivery_done_fn done, void *ctx)
{
    struct sp_delivery *d = sp_xcalloc(1, sizeof(*d));
    d->sk = sk;
    d->batching = batching;
    d->done = done;
    d->ctx = ctx;
    d->nparts = batching->partitions > 0 ? (int)batching->partitions : 1;
    d->parts = sp_xcalloc((size_t)d->nparts, sizeof(*d->parts));
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    return d;
}

int sp_delivery_start(struct sp_delivery *d, struct sp_err *err)
{
    if (pthread_create(&d->thread, NULL, dl_main, d) != 0) {
        return sp_err_set(err, SP_EIO, "could not start the delivery thread of sink \"%s\"",
                          d->sk->name);
    }
    d->started = true;
    return 0;
}

static void dl_enqueue(struct sp_delivery *d, struct dl_part *p, struct sp_batch *b)
{
    pthread_mutex_lock(&d->mu);
    b->next = NULL;
    if (p->q_tail != NULL) {
        p->q_tail->next = b;
    } else {
        p->q_head = b;
    }
    p->q_tail = b;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static bool dl_part_idle(struct sp_delivery *d, const struct dl_part *p)
{
    pthread_mutex_lock(&d->mu);
    bool idle = !p->inflight && p->q_head == NULL;
    pthread_mutex_unlock(&d->mu);
    return idle;
}

static bool dl_full(const struct sp_delivery *d, const struct sp_batch *b)
{
    return b->count >= (size_t)d->batching->batch_size ||
           b->bytes >= (size_t)d->batching->batch_bytes;
}

void sp_delivery_add(struct sp_delivery *d, struct sp_rec *r)
{
    int part = (int)(r->key_hash % (uint32_t)d->nparts);
    struct dl_part *p = &d->parts[part];
    if (p->open == NULL) {
        p->open = sp_xcalloc(1, sizeof(*p->open));
        p->open->sk = d->sk;
        p->open->dl = d;
        p->open->part = part;
        p->open_since_ms = sp_time_mono_ms();
    }
    struct sp_batch *b = p->open;
    r->next = NULL;
    if (b->tail != NULL) {
        b->tail->next = r;
    } else {
        b->head = r;
    }
    b->tail = r;
    b->count++;
    b->bytes += r->key_len + r->value_len;
    if (dl_full(d, b)) {
        p->open = NULL;
        dl_enqueue(d, p, b);
    }
}

int sp_delivery_flush(struct sp_delivery *d, bool force, bool more, int64_t now_ms)
{
    int next_ms = -1;
    for (int i = 0; i < d->nparts; i++) {
        struct dl_part *p = &d->parts[i];
        struct sp_batch *b = p->open;
        if (b == NULL) {
            continue;
        }
        int64_t age = now_ms - p->open_since_ms;
        int64_t left = d->batching->linger_ms - age;
        if (more && left < DL_FILL_MS - age) {
            left = DL_FILL_MS - age;
        }
        /* While the partition is busy, keep filling: the next batch grows
         * instead of queueing many small ones (fewer fsyncs, fewer requests). */
        if (force || dl_full(d, b) || (left <= 0 && dl_part_idle(d, p))) {
            p->open = NULL;
            dl_enqueue(d, p, b);
            continue;
        }
        int t = left > 0 ? (int)left : 1;
        if (next_ms < 0 || t < next_ms) {
            next_ms = t;
        }
    }
    return next_ms;
}

void sp_delivery_release(struct sp_delivery *d, struct sp_batch *b)
{
    pthread_mutex_lock(&d->mu);
    d->parts[b->part].inflight = false;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    free(b);
}

void sp_delivery_retry(struct sp_delivery *d, struct sp_batch *b)
{
    pthread_mutex_lock(&d->mu);
    dl_requeue_locked(d, b);
    pthread_mutex_unlock(&d->mu);
}

bool sp_delivery_idle(struct sp_delivery *d)
{
    pthread_mutex_lock(&d->mu);
    bool idle = true;
    for (int i = 0; i < d->nparts && idle; i++) {
        idle = !d->parts[i].inflight && d->parts[i].q_head == NULL;
    }
    pthread_mutex_unlock(&d->mu);
    return idle;
}

void sp_delivery_stop(struct sp_delivery *d)
{
    if (!d->started) {
        return;
    }
    pthread_mutex_lock(&d->mu);
    d->stopping = true;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    d->started = false;
}

static void dl_free_batch(struct sp_batch *b, void (*free_rec)(void *ctx, struct sp_rec *r),
                          void *ctx)
{
    struct sp_rec *r = b->head;
    while (r != NULL) {
        struct sp_rec *next = r->next;
        free_rec(ctx, r);
        r = next;
    }
    free(b);
}

void sp_delivery_free(struct sp_delivery *d, void (*free_rec)(void *ctx, struct sp_rec *r),
                      void *ctx)
{
    if (d == NULL) {
        return;
    }
    sp_delivery_stop(d);
    for (int i = 0; i < d->nparts; i++) {
        struct dl_part *p = &d->parts[i];
        if (p->open != NULL) {
            dl_free_batch(p->open, free_rec, ctx);
        }
        struct sp_batch *b = p->q_head;
        while (b != NULL) {
            struct sp_batch *next = b->next;
            dl_free_batch(b, free_rec, ctx);
            b = next;
        }
    }
    free(d->parts);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d);
}
