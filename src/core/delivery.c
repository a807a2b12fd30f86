// SPDX-License-Identifier: Apache-2.0
/*
 * Per-sink delivery: key-hash partitions, batching (count, bytes, linger),
 * one batch in flight per partition, and the delivery thread that calls
 * the sink.
 *
 * Retries hold keys, not partitions (retry_hold: key, the default). A batch
 * that fails with a retriable error leaves its partition's ordered flow and
 * becomes "held": it is retried on its own with backoff, and the keys of its
 * records are held. The partition goes on with its next batches, minus the
 * records whose key is held: those are deferred, in order, behind the held
 * batch, and flow again (ahead of anything later) once every held batch
 * with their key has been delivered. So a poison key waits alone, and the
 * changes to every key still reach the sink in commit order. Keys are told
 * apart by their 32-bit hash: a collision makes an innocent key wait with a
 * failing one, never reorders anything.
 *
 * A held batch that fails again while other batches of the sink were
 * delivered in the meantime (so the sink is up, and something about the
 * batch is the problem) is split in two by key, both halves retried apart:
 * after a few rounds the failing key is alone and the others are delivered.
 * While nothing gets through (the destination is down) batches are not
 * split, so an outage does not multiply requests.
 *
 * retry_hold: partition keeps the strict behaviour: a failing batch blocks
 * its partition until delivered, so a partition's records reach the sink in
 * commit order across keys too.
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
#define DL_POLL_MS 100 /* longest poll of an asynchronous sink without a wake op */

const char *const sp_sink_retry_hold_names[] = {"key", "partition", NULL};

/* A batch as the runtime keeps it; sinks and the pipeline see the sp_batch. */
struct dl_batch {
    struct sp_batch b;      /* first */
    struct dl_batch *hnext; /* in its partition's held list */
    bool held;              /* retrying apart from the ordered flow */
    bool inflight;          /* held batches: handed to the sink */
    uint64_t ok_mark;       /* d->delivered when it last failed */
    int level;              /* held batches: backoff step, 1 after a split */
    /*
     * Held batches: the key hashes of their records, taken when they are held
     * (under mu, while the records are theirs). Once a held batch is handed to
     * the sink its records belong to the sink and then to the pipeline, which
     * frees them before releasing the batch; its keys stay held from this copy.
     */
    uint32_t *hkeys;
    size_t nhkeys;
};

/* Key hashes of the records in a partition's held batches (insert only; rebuilt on change). */
struct dl_keys {
    uint32_t *slot;
    bool *used;
    size_t cap; /* power of two, or 0 */
    size_t n;
};

struct dl_part {
    /* pipeline thread only */
    struct dl_batch *open;
    int64_t open_since_ms;
    /* under d->mu */
    struct dl_batch *q_head; /* the ordered flow: ready to submit, in order */
    struct dl_batch *q_tail;
    bool inflight;           /* a batch of the ordered flow is with the sink */
    struct dl_batch *held;   /* held batches (retry_hold: key) */
    struct dl_keys keys;     /* their keys */
    struct sp_rec *def_head; /* deferred records (key held), in order */
    struct sp_rec *def_tail;
    uint64_t fail_mark; /* d->delivered at the partition's last failure */
};

struct sp_delivery {
    struct sp_sink *sk;
    const struct sp_sink_batching *batching;
    sp_delivery_done_fn done;
    void *ctx;
    int nparts;
    struct dl_part *parts;
    bool hold_keys; /* retry_hold: key */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started;
    bool stopping;       /* under mu */
    bool polling;        /* under mu: the thread is in the sink's poll */
    uint64_t delivered;  /* under mu: batches settled with rc 0 */
    int64_t deadline_ms; /* under mu: end of the shutdown budget, 0 none */
    int next;            /* round-robin start, delivery thread only */
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

static struct dl_batch *dl_batch_new(struct sp_delivery *d, int part)
{
    struct dl_batch *db = sp_xcalloc(1, sizeof(*db));
    db->b.sk = d->sk;
    db->b.dl = d;
    db->b.part = part;
    return db;
}

static void dl_batch_push(struct sp_batch *b, struct sp_rec *r)
{
    r->next = NULL;
    if (b->tail != NULL) {
        b->tail->next = r;
    } else {
        b->head = r;
    }
    b->tail = r;
    b->count++;
    b->bytes += r->key_len + r->value_len;
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

/* ---- held keys ---- */

static uint32_t dl_mix(uint32_t h)
{
    /* murmur3's finalizer: FNV's low bits alone spread poorly over a small table. */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static bool dl_keys_has(const struct dl_keys *k, uint32_t h)
{
    if (k->n == 0) {
        return false;
    }
    for (size_t i = dl_mix(h) & (k->cap - 1);; i = (i + 1) & (k->cap - 1)) {
        if (!k->used[i]) {
            return false;
        }
        if (k->slot[i] == h) {
            return true;
        }
    }
}

static void dl_keys_add(struct dl_keys *k, uint32_t h)
{
    size_t i = dl_mix(h) & (k->cap - 1);
    while (k->used[i]) {
        if (k->slot[i] == h) {
            return;
        }
        i = (i + 1) & (k->cap - 1);
    }
    k->used[i] = true;
    k->slot[i] = h;
    k->n++;
}

/* Empties k, with room for recs keys. */
static void dl_keys_reset(struct dl_keys *k, size_t recs)
{
    size_t cap = 16;
    while (cap < recs * 2) {
        cap *= 2;
    }
    if (cap != k->cap) {
        free(k->slot);
        free(k->used);
        k->slot = sp_xcalloc(cap, sizeof(*k->slot));
        k->used = sp_xcalloc(cap, sizeof(*k->used));
        k->cap = cap;
    } else {
        memset(k->used, 0, cap * sizeof(*k->used));
    }
    k->n = 0;
}

/* The keys of every held batch of p. Rebuilt whenever a batch is held or let go: rare. */
static void dl_keys_rebuild(struct dl_part *p)
{
    struct dl_keys *k = &p->keys;
    size_t recs = 0;
    for (struct dl_batch *hb = p->held; hb != NULL; hb = hb->hnext) {
        recs += hb->nhkeys;
    }
    dl_keys_reset(k, recs);
    for (struct dl_batch *hb = p->held; hb != NULL; hb = hb->hnext) {
        for (size_t i = 0; i < hb->nhkeys; i++) {
            dl_keys_add(k, hb->hkeys[i]);
        }
    }
}

/* Takes db's key hashes (see struct dl_batch). Its records must be its own. */
static void dl_snap_keys(struct dl_batch *db)
{
    free(db->hkeys);
    db->hkeys = sp_xmalloc((db->b.count > 0 ? db->b.count : 1) * sizeof(*db->hkeys));
    size_t n = 0;
    for (const struct sp_rec *r = db->b.head; r != NULL; r = r->next) {
        db->hkeys[n++] = r->key_hash;
    }
    db->nhkeys = n;
}

static void dl_batch_free(struct dl_batch *db)
{
    free(db->hkeys);
    free(db);
}

/* ---- the ordered flow and held batches (under mu) ---- */

/* Wakes the delivery thread: from its condition variable, or from the sink's poll. */
static void dl_kick_locked(struct sp_delivery *d)
{
    pthread_cond_signal(&d->cv);
    if (d->polling && d->sk->ops->wake != NULL) {
        d->polling = false; /* once per poll is enough */
        d->sk->ops->wake(d->sk);
    }
}

static void dl_q_push_head(struct dl_part *p, struct dl_batch *db)
{
    db->b.next = p->q_head != NULL ? &p->q_head->b : NULL;
    p->q_head = db;
    if (p->q_tail == NULL) {
        p->q_tail = db;
    }
}

static void dl_q_push_tail(struct dl_part *p, struct dl_batch *db)
{
    db->b.next = NULL;
    if (p->q_tail != NULL) {
        p->q_tail->b.next = &db->b;
    } else {
        p->q_head = db;
    }
    p->q_tail = db;
}

static void dl_log_retry(struct sp_delivery *d, const struct dl_batch *db, int64_t wait,
                         const char *how)
{
    sp_log_emit_hint(&d->sk->log, SP_LOG_WARN, db->b.err.hint,
                     "could not deliver %zu records (partition %d, attempt %d), retrying in "
                     "%lld ms%s: %s",
                     db->b.count, db->b.part, db->b.attempt, (long long)wait, how, db->b.err.msg);
}

/* Put db back at the head of its partition, due after a backoff: the partition waits. */
static void dl_requeue_locked(struct sp_delivery *d, struct dl_batch *db, const char *how)
{
    struct dl_part *p = &d->parts[db->b.part];
    int64_t wait = dl_backoff_ms(db->b.attempt);
    db->b.not_before_ms = sp_time_mono_ms() + wait;
    dl_log_retry(d, db, wait, how);
    db->b.rc = 0;
    dl_q_push_head(p, db);
    p->inflight = false;
    dl_kick_locked(d);
}

/*
 * Splits db in two by key (a bit of the mixed key hash, the first bit that
 * separates them), keeping each key's records in order. Returns the second
 * half, or NULL when every record has the same key hash.
 */
static struct dl_batch *dl_split(struct sp_delivery *d, struct dl_batch *db)
{
    uint32_t first = dl_mix(db->b.head->key_hash);
    uint32_t diff = 0;
    for (struct sp_rec *r = db->b.head; r != NULL; r = r->next) {
        diff |= dl_mix(r->key_hash) ^ first;
    }
    if (diff == 0) {
        return NULL;
    }
    uint32_t bit = diff & (~diff + 1); /* lowest bit on which two keys differ */
    struct dl_batch *other = dl_batch_new(d, db->b.part);
    struct sp_rec *r = db->b.head;
    db->b.head = db->b.tail = NULL;
    db->b.count = 0;
    db->b.bytes = 0;
    while (r != NULL) {
        struct sp_rec *next = r->next;
        dl_batch_push((dl_mix(r->key_hash) & bit) == (first & bit) ? &db->b : &other->b, r);
        r = next;
    }
    other->b.attempt = db->b.attempt;
    other->b.err = db->b.err;
    other->held = true;
    other->level = 1;
    db->level = 1;
    return other;
}

/*
 * retry_hold: key: db failed with a retriable error. It is held (its keys
 * wait, its partition goes on without them) and retried after a backoff.
 */
static void dl_hold_locked(struct sp_delivery *d, struct dl_batch *db)
{
    struct dl_part *p = &d->parts[db->b.part];
    const char *how = "";
    struct dl_batch *half = NULL;
    if (!db->held && p->held != NULL && d->delivered == p->fail_mark) {
        /*
         * Nothing got through since this partition's last failure: more likely the
         * destination is down than a second poison key. Pause the ordered flow (as
         * retry_hold: partition does) rather than hold batch after batch, each retried
         * on its own; it moves on again once something is delivered.
         */
        dl_requeue_locked(d, db,
                          "; nothing was delivered since the last failure, so its "
                          "partition waits");
        return;
    }
    p->fail_mark = d->delivered;
    if (!db->held) {
        /* It was the ordered flow's batch: the partition moves on. */
        db->held = true;
        db->level = db->b.attempt;
        p->inflight = false;
        db->hnext = p->held;
        p->held = db;
        how = "; its keys wait, other keys go on";
    } else if (d->delivered != db->ok_mark && (half = dl_split(d, db)) != NULL) {
        /* The sink takes other batches: quick rounds (backoff from the start) find the
         * failing key in log2(keys) steps. */
        half->hnext = p->held;
        p->held = half;
        half->ok_mark = d->delivered;
        half->b.not_before_ms = sp_time_mono_ms() + dl_backoff_ms(half->level);
        how = "; other batches got through, so it is split by key to isolate the failing one";
    } else {
        db->level++;
    }
    int64_t wait = dl_backoff_ms(db->level);
    db->inflight = false;
    db->ok_mark = d->delivered;
    db->b.rc = 0;
    db->b.not_before_ms = sp_time_mono_ms() + wait;
    dl_log_retry(d, db, wait, how);
    dl_snap_keys(db);
    if (half != NULL) {
        dl_snap_keys(half);
    }
    dl_keys_rebuild(p);
    dl_kick_locked(d);
}

static void dl_retry_locked(struct sp_delivery *d, struct dl_batch *db)
{
    if (d->hold_keys) {
        dl_hold_locked(d, db);
    } else {
        dl_requeue_locked(d, db, "");
    }
}

/* A held batch was settled: its keys are free, and deferred records of them flow first. */
static void dl_unhold_locked(struct sp_delivery *d, struct dl_batch *db)
{
    struct dl_part *p = &d->parts[db->b.part];
    struct dl_batch **pp = &p->held;
    while (*pp != db) {
        pp = &(*pp)->hnext;
    }
    *pp = db->hnext;
    dl_keys_rebuild(p);
    struct dl_batch *go = NULL;
    struct sp_rec *keep_head = NULL;
    struct sp_rec *keep_tail = NULL;
    struct sp_rec *r = p->def_head;
    while (r != NULL) {
        struct sp_rec *next = r->next;
        r->next = NULL;
        if (dl_keys_has(&p->keys, r->key_hash)) {
            if (keep_tail != NULL) {
                keep_tail->next = r;
            } else {
                keep_head = r;
            }
            keep_tail = r;
        } else {
            if (go == NULL) {
                go = dl_batch_new(d, db->b.part);
            }
            dl_batch_push(&go->b, r);
        }
        r = next;
    }
    p->def_head = keep_head;
    p->def_tail = keep_tail;
    if (go != NULL) {
        /* Earlier than anything queued for these keys: ahead of the queue. */
        dl_q_push_head(p, go);
    }
}

/* Moves the records of db whose key is held to the deferred list. Returns db's new count. */
static size_t dl_defer_held(struct dl_part *p, struct dl_batch *db)
{
    struct sp_rec *r = db->b.head;
    db->b.head = db->b.tail = NULL;
    db->b.count = 0;
    db->b.bytes = 0;
    while (r != NULL) {
        struct sp_rec *next = r->next;
        if (dl_keys_has(&p->keys, r->key_hash)) {
            r->next = NULL;
            if (p->def_tail != NULL) {
                p->def_tail->next = r;
            } else {
                p->def_head = r;
            }
            p->def_tail = r;
        } else {
            dl_batch_push(&db->b, r);
        }
        r = next;
    }
    return db->b.count;
}

/* ---- the delivery thread ---- */

static void dl_submit(struct sp_delivery *d, struct dl_batch *db)
{
    struct sp_err err;
    sp_err_clear(&err);
    db->b.attempt++;
    int rc = d->sk->ops->submit(d->sk, &db->b, &err);
    if (rc == 0) {
        return; /* the sink calls sp_batch_done */
    }
    pthread_mutex_lock(&d->mu);
    bool stopping = d->stopping;
    if (err.retriable && !stopping) {
        db->b.err = err;
        dl_retry_locked(d, db);
        pthread_mutex_unlock(&d->mu);
        return;
    }
    pthread_mutex_unlock(&d->mu);
    /* Permanent, or shutting down: the pipeline decides (a retriable error at
     * shutdown leaves the records unconfirmed). */
    sp_batch_done(&db->b, rc, &err);
}

static void dl_wait_min(int64_t *wait_ms, int64_t w)
{
    if (*wait_ms < 0 || w < *wait_ms) {
        *wait_ms = w;
    }
}

/* A held batch of p that is due, or NULL. Under mu. */
static struct dl_batch *dl_pick_held(struct dl_part *p, int64_t now, int64_t *wait_ms)
{
    for (struct dl_batch *hb = p->held; hb != NULL; hb = hb->hnext) {
        if (hb->inflight) {
            continue;
        }
        if (hb->b.not_before_ms > now) {
            dl_wait_min(wait_ms, hb->b.not_before_ms - now);
            continue;
        }
        hb->inflight = true;
        return hb;
    }
    return NULL;
}

/* The next batch of p's ordered flow, without records of held keys, or NULL. Under mu. */
static struct dl_batch *dl_pick_flow(struct dl_part *p, int64_t now, int64_t *wait_ms)
{
    while (!p->inflight && p->q_head != NULL) {
        struct dl_batch *db = p->q_head;
        if (db->b.not_before_ms > now) {
            dl_wait_min(wait_ms, db->b.not_before_ms - now);
            return NULL;
        }
        p->q_head = (struct dl_batch *)(void *)db->b.next;
        if (p->q_head == NULL) {
            p->q_tail = NULL;
        }
        db->b.next = NULL;
        if (p->keys.n > 0 && dl_defer_held(p, db) == 0) {
            dl_batch_free(db);
            continue;
        }
        p->inflight = true;
        return db;
    }
    return NULL;
}

/* The next batch that may go. Under mu. *wait_ms: how long until one may be due, -1 unknown. */
static struct dl_batch *dl_pick_locked(struct sp_delivery *d, int64_t now, int64_t *wait_ms)
{
    *wait_ms = -1;
    for (int i = 0; i < d->nparts; i++) {
        int idx = (d->next + i) % d->nparts;
        struct dl_part *p = &d->parts[idx];
        struct dl_batch *db = p->held != NULL ? dl_pick_held(p, now, wait_ms) : NULL;
        if (db == NULL) {
            db = dl_pick_flow(p, now, wait_ms);
        }
        if (db != NULL) {
            d->next = (idx + 1) % d->nparts;
            return db;
        }
    }
    return NULL;
}

static void dl_wait_locked(struct sp_delivery *d, int64_t wait_ms)
{
    if (d->sk->ops->poll != NULL) {
        /* Asynchronous sinks deliver their acknowledgements from poll; a sink with a wake op
         * is woken when there is work, so it may wait longer. */
        int64_t cap = d->sk->ops->wake != NULL ? 10 * DL_POLL_MS : DL_POLL_MS;
        int t = wait_ms < 0 || wait_ms > cap ? (int)cap : (int)wait_ms;
        d->polling = true;
        pthread_mutex_unlock(&d->mu);
        d->sk->ops->poll(d->sk, t);
        pthread_mutex_lock(&d->mu);
        d->polling = false;
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
        struct dl_batch *db = dl_pick_locked(d, sp_time_mono_ms(), &wait_ms);
        if (db != NULL) {
            pthread_mutex_unlock(&d->mu);
            dl_submit(d, db);
            pthread_mutex_lock(&d->mu);
            continue;
        }
        dl_wait_locked(d, wait_ms);
    }
    int64_t left = d->deadline_ms > 0 ? d->deadline_ms - sp_time_mono_ms() : 0;
    pthread_mutex_unlock(&d->mu);
    if (d->sk->ops->flush != NULL) {
        /* Whatever is left of the shutdown budget (settings.shutdown_timeout). */
        struct sp_err err;
        sp_err_clear(&err);
        if (d->sk->ops->flush(d->sk, left > 0 ? (int)left : 0, &err) != 0) {
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
    d->hold_keys = batching->retry_hold == SP_RETRY_HOLD_KEY;
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

static void dl_enqueue(struct sp_delivery *d, struct dl_part *p, struct dl_batch *db)
{
    pthread_mutex_lock(&d->mu);
    dl_q_push_tail(p, db);
    dl_kick_locked(d);
    pthread_mutex_unlock(&d->mu);
}

/* The ordered flow has nothing queued or in flight (held batches do not count). */
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
        p->open = dl_batch_new(d, part);
        p->open_since_ms = sp_time_mono_ms();
    }
    struct dl_batch *db = p->open;
    dl_batch_push(&db->b, r);
    if (dl_full(d, &db->b)) {
        p->open = NULL;
        dl_enqueue(d, p, db);
    }
}

int sp_delivery_flush(struct sp_delivery *d, bool force, bool more, int64_t now_ms)
{
    int next_ms = -1;
    for (int i = 0; i < d->nparts; i++) {
        struct dl_part *p = &d->parts[i];
        struct dl_batch *db = p->open;
        if (db == NULL) {
            continue;
        }
        int64_t age = now_ms - p->open_since_ms;
        int64_t left = d->batching->linger_ms - age;
        if (more && left < DL_FILL_MS - age) {
            left = DL_FILL_MS - age;
        }
        /* While the partition is busy, keep filling: the next batch grows
         * instead of queueing many small ones (fewer fsyncs, fewer requests). */
        if (force || dl_full(d, &db->b) || (left <= 0 && dl_part_idle(d, p))) {
            p->open = NULL;
            dl_enqueue(d, p, db);
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
    struct dl_batch *db = (struct dl_batch *)(void *)b;
    pthread_mutex_lock(&d->mu);
    if (b->rc == 0) {
        d->delivered++;
    }
    if (db->held) {
        dl_unhold_locked(d, db);
    } else {
        d->parts[b->part].inflight = false;
    }
    dl_kick_locked(d);
    pthread_mutex_unlock(&d->mu);
    dl_batch_free(db);
}

static bool dl_rec_retriable(const struct sp_rec *r)
{
    return r->err != NULL && r->err->retriable;
}

void sp_delivery_retry_failed(struct sp_delivery *d, struct sp_batch *b)
{
    struct sp_rec *r = b->head;
    while (r != NULL && !dl_rec_retriable(r)) {
        r = r->next;
    }
    if (r == NULL) {
        return;
    }
    /* The failed records, and every later record of their keys (order per key). */
    struct dl_batch *nb = dl_batch_new(d, b->part);
    struct dl_keys failed = {0};
    dl_keys_reset(&failed, b->count);
    r = b->head;
    b->head = b->tail = NULL;
    b->count = 0;
    b->bytes = 0;
    while (r != NULL) {
        struct sp_rec *next = r->next;
        if (dl_rec_retriable(r) || dl_keys_has(&failed, r->key_hash)) {
            dl_keys_add(&failed, r->key_hash);
            if (r->err != NULL) {
                if (nb->b.err.code == 0) {
                    nb->b.err = *r->err;
                }
                free(r->err);
                r->err = NULL;
            }
            dl_batch_push(&nb->b, r);
        } else {
            dl_batch_push(b, r);
        }
        r = next;
    }
    free(failed.slot);
    free(failed.used);
    nb->b.attempt = b->attempt;
    pthread_mutex_lock(&d->mu);
    if (!d->hold_keys) {
        /* First in its partition once b is released (b still counts as in flight). */
        int64_t wait = dl_backoff_ms(nb->b.attempt);
        nb->b.not_before_ms = sp_time_mono_ms() + wait;
        dl_log_retry(d, nb, wait, "; the rest of the batch was delivered");
        dl_q_push_head(&d->parts[b->part], nb);
        pthread_mutex_unlock(&d->mu);
        return;
    }
    /* Held before b is released, so its keys never come free in between. */
    struct dl_part *p = &d->parts[b->part];
    nb->held = true;
    nb->level = nb->b.attempt;
    nb->ok_mark = d->delivered;
    nb->hnext = p->held;
    p->held = nb;
    int64_t wait = dl_backoff_ms(nb->level);
    nb->b.not_before_ms = sp_time_mono_ms() + wait;
    dl_log_retry(d, nb, wait, "; the rest of the batch was delivered, these keys wait");
    dl_snap_keys(nb);
    dl_keys_rebuild(p);
    dl_kick_locked(d);
    pthread_mutex_unlock(&d->mu);
}

void sp_delivery_retry(struct sp_delivery *d, struct sp_batch *b)
{
    pthread_mutex_lock(&d->mu);
    dl_retry_locked(d, (struct dl_batch *)(void *)b);
    pthread_mutex_unlock(&d->mu);
}

bool sp_delivery_idle(struct sp_delivery *d)
{
    pthread_mutex_lock(&d->mu);
    bool idle = true;
    for (int i = 0; i < d->nparts && idle; i++) {
        const struct dl_part *p = &d->parts[i];
        idle = !p->inflight && p->q_head == NULL && p->held == NULL && p->def_head == NULL;
    }
    pthread_mutex_unlock(&d->mu);
    return idle;
}

void sp_delivery_set_deadline(struct sp_delivery *d, int64_t deadline_ms)
{
    pthread_mutex_lock(&d->mu);
    d->deadline_ms = deadline_ms;
    pthread_mutex_unlock(&d->mu);
}

void sp_delivery_stop(struct sp_delivery *d)
{
    if (!d->started) {
        return;
    }
    pthread_mutex_lock(&d->mu);
    d->stopping = true;
    dl_kick_locked(d);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    d->started = false;
}

static void dl_free_recs(struct sp_rec *r, void (*free_rec)(void *ctx, struct sp_rec *r), void *ctx)
{
    while (r != NULL) {
        struct sp_rec *next = r->next;
        free_rec(ctx, r);
        r = next;
    }
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
            dl_free_recs(p->open->b.head, free_rec, ctx);
            free(p->open);
        }
        struct dl_batch *db = p->q_head;
        while (db != NULL) {
            struct dl_batch *next = (struct dl_batch *)(void *)db->b.next;
            dl_free_recs(db->b.head, free_rec, ctx);
            dl_batch_free(db);
            db = next;
        }
        db = p->held;
        while (db != NULL) {
            struct dl_batch *next = db->hnext;
            /* One the sink still holds is freed when it reports (sp_pipeline_free). */
            if (!db->inflight) {
                dl_free_recs(db->b.head, free_rec, ctx);
                dl_batch_free(db);
            }
            db = next;
        }
        dl_free_recs(p->def_head, free_rec, ctx);
        free(p->keys.slot);
        free(p->keys.used);
    }
    free(d->parts);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d);
}
