// SPDX-License-Identifier: Apache-2.0
/*
 * Checkpoint tracker. A FIFO of transactions in decode order; done ones are
 * popped from the front, advancing the confirmable LSN. Acknowledgements
 * arrive in any order, so a done transaction behind an unfinished one waits
 * in the queue.
 */
#include "core/checkpoint.h"

#include <assert.h>
#include <stdlib.h>

#include "util/mem.h"

struct sp_ckpt_txn {
    struct sp_ckpt_txn *next;
    uint64_t commit_lsn;
    uint64_t end_lsn;
    uint64_t held;  /* records in flight */
    bool committed; /* commit seen: no more records will be added */
    bool aborted;   /* never confirms; freed once nothing is held */
    sp_ckpt_done_fn done_fn;
    void *done_ctx;
};

struct sp_ckpt {
    struct sp_ckpt_txn *head; /* oldest */
    struct sp_ckpt_txn *tail;
    size_t pending;
    uint64_t confirmable;
};

struct sp_ckpt *sp_ckpt_new(void)
{
    return sp_xcalloc(1, sizeof(struct sp_ckpt));
}

void sp_ckpt_free(struct sp_ckpt *ck)
{
    if (ck == NULL) {
        return;
    }
    struct sp_ckpt_txn *t = ck->head;
    while (t != NULL) {
        struct sp_ckpt_txn *next = t->next;
        free(t);
        t = next;
    }
    free(ck);
}

/* Pop every done transaction from the front. */
static void ckpt_advance(struct sp_ckpt *ck)
{
    while (ck->head != NULL) {
        struct sp_ckpt_txn *t = ck->head;
        if (t->held > 0 || !(t->committed || t->aborted)) {
            break;
        }
        if (!t->aborted && t->end_lsn > ck->confirmable) {
            ck->confirmable = t->end_lsn;
        }
        ck->head = t->next;
        if (ck->head == NULL) {
            ck->tail = NULL;
        }
        ck->pending--;
        if (!t->aborted && t->done_fn != NULL) {
            t->done_fn(t->done_ctx);
        }
        free(t);
    }
}

void sp_ckpt_on_done(struct sp_ckpt_txn *t, sp_ckpt_done_fn fn, void *ctx)
{
    t->done_fn = fn;
    t->done_ctx = ctx;
}

struct sp_ckpt_txn *sp_ckpt_begin(struct sp_ckpt *ck, uint64_t commit_lsn)
{
    struct sp_ckpt_txn *t = sp_xcalloc(1, sizeof(*t));
    t->commit_lsn = commit_lsn;
    if (ck->tail != NULL) {
        ck->tail->next = t;
    } else {
        ck->head = t;
    }
    ck->tail = t;
    ck->pending++;
    return t;
}

void sp_ckpt_hold(struct sp_ckpt_txn *t)
{
    assert(!t->committed);
    t->held++;
}

void sp_ckpt_release(struct sp_ckpt *ck, struct sp_ckpt_txn *t)
{
    assert(t->held > 0);
    t->held--;
    if (t->held == 0 && t == ck->head) {
        ckpt_advance(ck);
    }
}

void sp_ckpt_commit(struct sp_ckpt *ck, struct sp_ckpt_txn *t, uint64_t end_lsn)
{
    t->end_lsn = end_lsn;
    t->committed = true;
    if (t == ck->head) {
        ckpt_advance(ck);
    }
}

void sp_ckpt_abort(struct sp_ckpt *ck, struct sp_ckpt_txn *t)
{
    t->aborted = true;
    if (t == ck->head) {
        ckpt_advance(ck);
    }
}

uint64_t sp_ckpt_confirmable(const struct sp_ckpt *ck)
{
    return ck->confirmable;
}

bool sp_ckpt_idle(const struct sp_ckpt *ck)
{
    return ck->head == NULL;
}

size_t sp_ckpt_pending(const struct sp_ckpt *ck)
{
    return ck->pending;
}
