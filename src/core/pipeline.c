// SPDX-License-Identifier: Apache-2.0
/*
 * Stream runtime: routing, formatting, batching, delivery threads,
 * acknowledgements, recovery policies and backpressure.
 *
 * Threads: everything here runs on the pipeline thread except pl_on_done,
 * which sinks reach through sp_batch_done from any thread: it queues the
 * batch on the done list (pl->done_mu) and wakes the pipeline thread through
 * an eventfd. Delivery to each sink (partitions, batching, retries, its
 * thread) is core/delivery.c.
 *
 * What this file does not do: decode (sources), encode (formats) or talk
 * to destinations (sinks).
 */
#include "core/pipeline.h"

#include <stddef.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/check.h"
#include "core/checkpoint.h"
#include "core/delivery.h"
#include "core/sinkconf.h"
#include "flow/flow.h"
#include "telemetry/log.h"
#include "util/hash.h"
#include "util/lsn.h"
#include "util/mem.h"
#include "util/time.h"

#define PL_READ_BUDGET 256 /* messages per source read call */

struct pl_sink;
struct pl_stream;
struct pl_source;

/* A record plus what the pipeline needs to settle it. */
struct pl_rec {
    struct sp_rec r;
    struct pl_source *ps; /* whose checkpoint tracker holds r.txn */
    struct pl_stream *st; /* the stream that produced it */
    bool dead_letter;     /* this record is a dead letter */
    int attempts;
};

struct pl_sink {
    struct sp_sink sk;
    const struct sp_cfg_sink *cfg;
    const struct sp_sink_batching *batching;
    struct sp_pipeline *pl;
    struct sp_delivery *dl;
    bool opened;
};

struct pl_stream {
    const struct sp_cfg_stream *cfg;
    struct sp_format fmt;
    bool fmt_ready;
    struct pl_source *src;
    struct pl_sink *sink;
    struct pl_sink *dlq;
};

struct pl_source {
    struct sp_source src;
    const struct sp_cfg_source *cfg;
    struct sp_pipeline *pl;
    struct sp_ckpt *ck;
    struct sp_ckpt_txn *txn; /* open transaction, NULL between transactions */
    struct pl_stream **streams;
    int nstreams;
    bool opened;
    uint64_t confirmed;
    int64_t next_tick_ms;
    bool want_read; /* the last read found data: read again before polling */
};

struct sp_pipeline {
    const struct sp_config *cfg;
    struct pl_source *sources;
    int nsources;
    struct pl_sink *sinks;
    int nsinks;
    struct pl_stream *streams;
    int nstreams;
    /* done list, filled by sp_batch_done from any thread */
    pthread_mutex_t done_mu;
    struct sp_batch *done_head;
    struct sp_batch *done_tail;
    bool wake_pending; /* under done_mu: wake_fd was written and not read yet */
    int wake_fd;
    bool stopped; /* delivery threads stopped: retriable outcomes are final */
    /* pipeline thread only */
    uint64_t inflight_bytes;
    uint64_t inflight_recs;
    bool fatal;
    uint64_t until_lsn; /* sp_run_opts.until_lsn: stop once confirmed; 0 never */
    struct sp_err fatal_err;
    struct sp_buf key;
    struct sp_buf value;
    struct sp_pipeline_stats stats;
};

/* ---- records ---- */

static struct pl_rec *pl_rec_new(const char *id, const char *schema, const char *table,
                                 const char *key, size_t key_len, const char *value,
                                 size_t value_len)
{
    size_t id_len = strlen(id);
    size_t s_len = strlen(schema);
    size_t t_len = strlen(table);
    size_t total = sizeof(struct pl_rec) + id_len + s_len + t_len + key_len + value_len + 5;
    struct pl_rec *pr = sp_xmalloc(total);
    memset(pr, 0, sizeof(*pr));
    char *p = (char *)(pr + 1);
    memcpy(p, id, id_len + 1);
    pr->r.id = p;
    p += id_len + 1;
    memcpy(p, schema, s_len + 1);
    pr->r.schema = p;
    p += s_len + 1;
    memcpy(p, table, t_len + 1);
    pr->r.table = p;
    p += t_len + 1;
    if (key != NULL && key_len > 0) {
        memcpy(p, key, key_len);
        p[key_len] = '\0';
        pr->r.key = p;
        pr->r.key_len = key_len;
        pr->r.key_hash = sp_hash_fnv1a(key, key_len);
        p += key_len + 1;
    } else {
        /* No key: keep the table's changes in one partition, in order. */
        pr->r.key_hash = sp_hash_fnv1a(schema, s_len) ^ sp_hash_fnv1a(table, t_len);
    }
    memcpy(p, value, value_len);
    p[value_len] = '\0';
    pr->r.value = p;
    pr->r.value_len = value_len;
    pr->r.mem = total;
    return pr;
}

static void pl_rec_free(struct sp_pipeline *pl, struct pl_rec *pr)
{
    pl->inflight_bytes -= pr->r.mem;
    pl->inflight_recs--;
    free(pr->r.err);
    if (pr->r.dest != NULL) {
        free((char *)pr->r.dest); /* set by pl_flow_deliver only */
    }
    free(pr);
}

static void pl_rec_free_cb(void *ctx, struct sp_rec *r)
{
    pl_rec_free(ctx, (struct pl_rec *)r);
}

/* ---- sinks ---- */

/* sp_delivery_done_fn: queue the batch for the pipeline thread and wake it. */
static void pl_on_done(void *ctx, struct sp_batch *b)
{
    struct sp_pipeline *pl = ctx;
    pthread_mutex_lock(&pl->done_mu);
    b->next = NULL;
    if (pl->done_tail != NULL) {
        pl->done_tail->next = b;
    } else {
        pl->done_head = b;
    }
    pl->done_tail = b;
    /* One wake-up per drain is enough: the pipeline takes the whole list. */
    bool wake = !pl->wake_pending;
    pl->wake_pending = true;
    pthread_mutex_unlock(&pl->done_mu);
    if (wake) {
        uint64_t one = 1;
        ssize_t w = write(pl->wake_fd, &one, sizeof(one));
        (void)w; /* the eventfd only fails when its counter would overflow: still awake */
    }
}

static void sink_add(struct pl_sink *ps, struct pl_rec *pr)
{
    ps->pl->inflight_bytes += pr->r.mem;
    ps->pl->inflight_recs++;
    ps->pl->stats.records++;
    sp_delivery_add(ps->dl, &pr->r);
}

/* ---- recovery ---- */

static void pl_fail(struct sp_pipeline *pl, const struct sp_err *err)
{
    if (!pl->fatal) {
        pl->fatal = true;
        pl->fatal_err = *err;
    }
}

/* The dead-letter record: the original event, the error and where it happened. */
static struct pl_rec *pl_dead_letter_rec(struct pl_stream *st, const struct sp_rec *orig,
                                         const char *event_json, size_t event_len,
                                         const struct sp_err *err, int attempts)
{
    struct sp_buf v;
    char ts[32];
    sp_buf_init(&v);
    sp_buf_puts(&v, "{\"stream\":");
    sp_buf_put_json_str(&v, st->cfg->name, strlen(st->cfg->name));
    sp_buf_puts(&v, ",\"sink\":");
    sp_buf_put_json_str(&v, st->sink->sk.name, strlen(st->sink->sk.name));
    sp_buf_puts(&v, ",\"error\":");
    sp_buf_put_json_str(&v, err->msg, strlen(err->msg));
    sp_buf_printf(&v, ",\"attempts\":%d,\"ts\":\"%s\",\"event_id\":", attempts,
                  sp_time_iso_ms(sp_time_now_us(), ts));
    sp_buf_put_json_str(&v, orig->id, strlen(orig->id));
    sp_buf_puts(&v, ",\"schema\":");
    sp_buf_put_json_str(&v, orig->schema, strlen(orig->schema));
    sp_buf_puts(&v, ",\"table\":");
    sp_buf_put_json_str(&v, orig->table, strlen(orig->table));
    sp_buf_puts(&v, ",\"key\":");
    if (orig->key != NULL) {
        sp_buf_append(&v, orig->key, orig->key_len);
    } else {
        sp_buf_puts(&v, "null");
    }
    sp_buf_puts(&v, ",\"event\":");
    sp_buf_append(&v, event_json, event_len);
    sp_buf_putc(&v, '}');
    struct pl_rec *pr =
        pl_rec_new(orig->id, orig->schema, orig->table, orig->key, orig->key_len, v.data, v.len);
    sp_buf_fini(&v);
    pr->r.lsn = orig->lsn;
    pr->r.commit_lsn = orig->commit_lsn;
    pr->r.seq = orig->seq;
    pr->r.op = orig->op;
    pr->r.commit_time_us = orig->commit_time_us;
    pr->r.source = orig->source;
    pr->dead_letter = true;
    return pr;
}

/*
 * A record was rejected for good. Apply the stream's recovery policy. The
 * record's hold on its transaction is passed on (dead letter) or released
 * (ignore); under `fail` it is kept, so nothing past it is ever confirmed.
 * event_json: the event as JSON for the dead letter (the record's value).
 */
static void pl_recover(struct sp_pipeline *pl, struct pl_rec *pr, const struct sp_err *err,
                       const char *event_json, size_t event_len)
{
    struct pl_stream *st = pr->st;
    if (pr->dead_letter) {
        struct sp_err e = *err;
        sp_err_prefix(&e, "stream \"%s\": could not write dead letter for event %s to sink \"%s\"",
                      st->cfg->name, pr->r.id, st->dlq->sk.name);
        sp_log_emit_hint(&sp_log_main, SP_LOG_ERROR, e.hint, "%s", e.msg);
        pl_fail(pl, &e);
        return;
    }
    switch (st->cfg->recovery) {
    case SP_RECOVERY_IGNORE:
        sp_log_warn(&sp_log_main,
                    "stream \"%s\": dropped event %s (%s.%s) under recovery "
                    "policy ignore: %s",
                    st->cfg->name, pr->r.id, pr->r.schema, pr->r.table, err->msg);
        pl->stats.ignored++;
        sp_ckpt_release(pr->ps->ck, pr->r.txn);
        break;
    case SP_RECOVERY_DEAD_LETTER: {
        struct pl_rec *dl =
            pl_dead_letter_rec(st, &pr->r, event_json, event_len, err, pr->attempts);
        dl->ps = pr->ps;
        dl->st = st;
        dl->r.txn = pr->r.txn; /* the hold moves to the dead letter */
        sp_log_warn(&sp_log_main,
                    "stream \"%s\": event %s (%s.%s) goes to dead-letter sink "
                    "\"%s\": %s",
                    st->cfg->name, pr->r.id, pr->r.schema, pr->r.table, st->dlq->sk.name, err->msg);
        pl->stats.dead_letters++;
        sink_add(st->dlq, dl);
        break;
    }
    case SP_RECOVERY_FAIL:
    default: {
        struct sp_err e = *err;
        sp_err_prefix(&e, "stream \"%s\": event %s (%s.%s) failed under recovery policy fail",
                      st->cfg->name, pr->r.id, pr->r.schema, pr->r.table);
        if (e.hint[0] == '\0') {
            sp_err_hint(&e,
                        "nothing past this event is confirmed; fix the cause and restart, or "
                        "set recovery to dead_letter or ignore for stream \"%s\"",
                        st->cfg->name);
        }
        sp_log_emit_hint(&sp_log_main, SP_LOG_ERROR, e.hint, "%s", e.msg);
        pl_fail(pl, &e);
        break;
    }
    }
}

/* ---- acknowledgements ---- */

static void pl_settle_batch(struct sp_pipeline *pl, struct sp_batch *b)
{
    struct pl_sink *ps = (struct pl_sink *)(void *)b->sk;
    if (b->rc != 0 && b->err.retriable && !pl->stopped) {
        /* An asynchronous sink gave the batch back: its partition retries it. */
        sp_delivery_retry(ps->dl, b);
        return;
    }
    if (b->rc == 0 && !pl->stopped) {
        /* Records the sink could not deliver this time: retried apart, their keys held. */
        sp_delivery_retry_failed(ps->dl, b);
    }
    struct sp_rec *r = b->head;
    while (r != NULL) {
        struct sp_rec *next = r->next;
        struct pl_rec *pr = (struct pl_rec *)r;
        pr->attempts = b->attempt;
        if (b->rc == 0 && r->err == NULL) {
            pl->stats.acked++;
            sp_ckpt_release(pr->ps->ck, r->txn);
        } else if ((b->rc != 0 && b->err.retriable) || (r->err != NULL && r->err->retriable)) {
            /* Stopped with the sink unreachable: stays unconfirmed. */
        } else {
            pl_recover(pl, pr, r->err != NULL ? r->err : &b->err, r->value, r->value_len);
        }
        pl_rec_free(pl, pr);
        r = next;
    }
    sp_delivery_release(ps->dl, b);
}

static void pl_drain_done(struct sp_pipeline *pl)
{
    /*
     * The eventfd is read only when it was written (no syscall per loop turn).
     * A batch queued between taking the list and reading the eventfd found
     * wake_pending set again and wrote it, and that write may be consumed by
     * this read: so after a read, look at the list once more.
     */
    for (;;) {
        pthread_mutex_lock(&pl->done_mu);
        struct sp_batch *b = pl->done_head;
        pl->done_head = NULL;
        pl->done_tail = NULL;
        bool signalled = pl->wake_pending;
        pl->wake_pending = false;
        pthread_mutex_unlock(&pl->done_mu);
        if (signalled) {
            uint64_t n;
            ssize_t rd = read(pl->wake_fd, &n, sizeof(n));
            (void)rd; /* nonblocking: EAGAIN when a previous read took the count */
        }
        while (b != NULL) {
            struct sp_batch *next = b->next;
            pl_settle_batch(pl, b);
            b = next;
        }
        if (!signalled) {
            return;
        }
    }
}

static void pl_confirm(struct sp_pipeline *pl)
{
    for (int i = 0; i < pl->nsources; i++) {
        struct pl_source *ps = &pl->sources[i];
        if (!ps->opened) {
            continue;
        }
        uint64_t lsn = sp_ckpt_confirmable(ps->ck);
        bool idle = sp_ckpt_idle(ps->ck) && ps->txn == NULL;
        if (idle && ps->src.idle_lsn > lsn) {
            lsn = ps->src.idle_lsn;
        }
        if (lsn > ps->confirmed) {
            struct sp_err err;
            sp_err_clear(&err);
            ps->confirmed = lsn;
            pl->stats.confirmed_lsn = lsn;
            /* A moved position is reported promptly: let the source's tick decide now. */
            ps->next_tick_ms = 0;
            if (ps->src.ops->confirm(&ps->src, lsn, idle, &err) != 0) {
                sp_log_warn(&ps->src.log, "could not confirm " SP_LSN_FMT ": %s", SP_LSN_ARGS(lsn),
                            err.msg);
            }
        }
    }
}

static bool pl_backpressured(const struct sp_pipeline *pl)
{
    return pl->inflight_bytes >= (uint64_t)pl->cfg->memory_limit;
}

/* ---- routing and formatting ---- */

static bool pl_stream_wants(const struct pl_stream *st, const struct sp_event *ev)
{
    if (ev->op == SP_OP_MESSAGE) {
        return st->cfg->messages;
    }
    if (ev->rel == NULL) {
        return false;
    }
    if (ev->streams != NULL) {
        bool named = false;
        for (const char *const *n = ev->streams; *n != NULL && !named; n++) {
            named = strcmp(*n, st->cfg->name) == 0;
        }
        if (!named) {
            return false;
        }
    }
    for (int i = 0; i < st->cfg->ntables; i++) {
        const struct sp_cfg_table *t = &st->cfg->tables[i];
        if (strcmp(t->table, ev->rel->table) == 0 && strcmp(t->schema, ev->rel->schema) == 0) {
            return true;
        }
    }
    return false;
}

/* Columns as their text form, for a dead letter of an event no format could encode. */
static void pl_raw_tuple(struct sp_buf *out, const struct sp_relation *rel,
                         const struct sp_tuple *t)
{
    if (t == NULL || rel == NULL) {
        sp_buf_puts(out, "null");
        return;
    }
    sp_buf_putc(out, '{');
    for (int i = 0; i < t->ncols && i < rel->ncols; i++) {
        if (i > 0) {
            sp_buf_putc(out, ',');
        }
        sp_buf_put_json_str(out, rel->cols[i].name, strlen(rel->cols[i].name));
        sp_buf_putc(out, ':');
        const struct sp_datum *d = &t->cols[i];
        if (d->kind == SP_DATUM_TEXT) {
            sp_buf_put_json_str(out, d->data, d->len);
        } else if (d->kind == SP_DATUM_UNCHANGED) {
            sp_buf_puts(out, "\"__unchanged_toast\"");
        } else {
            sp_buf_puts(out, "null");
        }
    }
    sp_buf_putc(out, '}');
}

static void pl_raw_event(struct sp_buf *out, const struct sp_event *ev)
{
    sp_buf_printf(out, "{\"op\":\"%c\",\"before\":", sp_op_char(ev->op));
    pl_raw_tuple(out, ev->rel, ev->before);
    sp_buf_puts(out, ",\"after\":");
    pl_raw_tuple(out, ev->rel, ev->after);
    sp_buf_putc(out, '}');
}

/*
 * ---- flows ----
 * A stream with flows (src/flow) routes here instead of the plain path of
 * pl_route: the chain gives zero or more events (the source's own, or
 * changed copies), each formatted and delivered like a plain event, with
 * the destination, key and id the flows set. A flow error is an event error
 * for the recovery policy; its dead letter shows the event as it entered
 * the failing flow, with the stream's masks applied.
 */

static void pl_flow_rec_fill(struct pl_source *src, struct pl_stream *st, struct pl_rec *pr,
                             const struct sp_event *ev)
{
    pr->r.lsn = ev->lsn;
    pr->r.commit_lsn = ev->commit_lsn;
    pr->r.seq = ev->seq;
    pr->r.op = sp_op_char(ev->op);
    pr->r.commit_time_us = ev->commit_time_us;
    pr->r.txn = src->txn;
    pr->r.source = src->src.name;
    pr->ps = src;
    pr->st = st;
    sp_ckpt_hold(src->txn);
}

/* The record goes to recovery instead of the sink (format or flow error). */
static void pl_flow_reject(struct sp_pipeline *pl, struct pl_rec *pr, const struct sp_err *err)
{
    pl->inflight_bytes += pr->r.mem;
    pl->inflight_recs++;
    pl_recover(pl, pr, err, pl->value.data, pl->value.len);
    pl_rec_free(pl, pr);
}

static void pl_flow_deliver(struct pl_source *src, struct pl_stream *st, const struct sp_event *ev)
{
    struct sp_pipeline *pl = src->pl;
    char idbuf[SP_EVENT_ID_BUFSZ];
    const char *id = ev->id_override != NULL ? ev->id_override : sp_event_id(ev, idbuf);
    const char *schema = ev->rel != NULL ? ev->rel->schema : "";
    const char *table = ev->rel != NULL ? ev->rel->table : (ev->msg_prefix ? ev->msg_prefix : "");
    struct sp_err err;
    sp_err_clear(&err);
    sp_buf_reset(&pl->key);
    sp_buf_reset(&pl->value);
    int rc = st->fmt.ops->encode(&st->fmt, ev, &pl->key, &pl->value, &err);
    if (rc != 0) {
        sp_buf_reset(&pl->value);
        pl_raw_event(&pl->value, ev);
        struct pl_rec *pr = pl_rec_new(id, schema, table, NULL, 0, "", 0);
        pl_flow_rec_fill(src, st, pr, ev);
        sp_err_prefix(&err, "could not format event %s with format \"%s\"", id, st->fmt.ops->name);
        pl_flow_reject(pl, pr, &err);
        return;
    }
    struct pl_rec *pr = pl_rec_new(id, schema, table, pl->key.data, pl->key.len,
                                   pl->value.data ? pl->value.data : "", pl->value.len);
    pl_flow_rec_fill(src, st, pr, ev);
    if (ev->dest != NULL) {
        size_t n = strlen(ev->dest);
        pr->r.dest = sp_xstrndup(ev->dest, n);
        pr->r.mem += n + 1;
    }
    sink_add(st->sink, pr);
}

static void pl_route_flows(struct pl_source *src, struct pl_stream *st, struct sp_event *ev)
{
    struct sp_pipeline *pl = src->pl;
    struct sp_flows *chain = st->cfg->chain;
    const struct sp_event *failed = NULL;
    struct sp_err err;
    sp_err_clear(&err);
    int n = sp_flows_apply(chain, ev, &failed, &err);
    if (n < 0) {
        const struct sp_event *at = failed != NULL ? failed : ev;
        char id[SP_EVENT_ID_BUFSZ];
        sp_event_id(ev, id);
        sp_buf_reset(&pl->value);
        pl_raw_event(&pl->value, at);
        struct pl_rec *pr =
            pl_rec_new(id, at->rel != NULL ? at->rel->schema : "",
                       at->rel != NULL ? at->rel->table : (at->msg_prefix ? at->msg_prefix : ""),
                       NULL, 0, "", 0);
        pl_flow_rec_fill(src, st, pr, at);
        pl_flow_reject(pl, pr, &err);
    }
    for (int i = 0; i < n; i++) {
        pl_flow_deliver(src, st, sp_flows_result(chain, i));
    }
    sp_flows_done(chain);
}

/* A transaction's COMMIT: what flows emit for it (transaction END events), held by it. */
static void pl_flows_commit(struct pl_source *src, const struct sp_event *commit)
{
    for (int i = 0; i < src->nstreams; i++) {
        struct pl_stream *st = src->streams[i];
        struct sp_flows *chain = st->cfg->chain;
        if (chain == NULL) {
            continue;
        }
        struct sp_err err;
        sp_err_clear(&err);
        int n = sp_flows_commit(chain, commit, &err);
        if (n < 0) {
            sp_log_warn(&sp_log_main, "stream \"%s\": %s", st->cfg->name, err.msg);
        }
        for (int k = 0; k < n; k++) {
            pl_flow_deliver(src, st, sp_flows_result(chain, k));
        }
        sp_flows_done(chain);
    }
}

static void pl_route(struct pl_source *src, struct sp_event *ev)
{
    struct sp_pipeline *pl = src->pl;
    bool routed = false;
    for (int i = 0; i < src->nstreams; i++) {
        struct pl_stream *st = src->streams[i];
        if (!pl_stream_wants(st, ev)) {
            continue;
        }
        routed = true;
        if (st->cfg->chain != NULL) {
            pl_route_flows(src, st, ev);
        } else {
            pl_flow_deliver(src, st, ev);
        }
    }
    if (routed) {
        pl->stats.events++;
    }
    src->src.backpressure = pl_backpressured(pl);
}

/* sp_emit_fn: every event of a source comes through here, in WAL order. */
static int pl_emit(void *ctx, struct sp_event *ev, struct sp_err *err)
{
    struct pl_source *src = ctx;
    (void)err;
    switch (ev->op) {
    case SP_OP_BEGIN:
        if (src->txn != NULL) {
            /* The connection was lost mid-transaction; the server resends it whole. */
            sp_ckpt_abort(src->ck, src->txn);
        }
        src->txn = sp_ckpt_begin(src->ck, ev->commit_lsn);
        break;
    case SP_OP_COMMIT:
        if (src->txn != NULL) {
            if (ev->on_done != NULL) {
                sp_ckpt_on_done(src->txn, ev->on_done, ev->on_done_ctx);
            }
            pl_flows_commit(src, ev);
            sp_ckpt_commit(src->ck, src->txn, ev->end_lsn);
            src->txn = NULL;
        }
        break;
    default:
        if (src->txn == NULL) {
            /* Non-transactional message: a transaction of its own. */
            src->txn = sp_ckpt_begin(src->ck, ev->commit_lsn);
            pl_route(src, ev);
            sp_ckpt_commit(src->ck, src->txn, ev->end_lsn ? ev->end_lsn : ev->lsn);
            src->txn = NULL;
        } else {
            pl_route(src, ev);
        }
        break;
    }
    sp_event_free(ev);
    return 0;
}

/* ---- lifecycle ---- */

struct sp_pipeline *sp_pipeline_new(const struct sp_config *cfg)
{
    struct sp_pipeline *pl = sp_xcalloc(1, sizeof(*pl));
    pl->cfg = cfg;
    /* In-flight records are bounded by memory_limit: freed ones may stay in the heap. */
    sp_mem_keep_freed((size_t)cfg->memory_limit);
    pl->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&pl->done_mu, NULL);
    sp_buf_init(&pl->key);
    sp_buf_init(&pl->value);

    pl->nsinks = cfg->nsinks;
    pl->sinks = sp_xcalloc((size_t)cfg->nsinks, sizeof(*pl->sinks));
    for (int i = 0; i < cfg->nsinks; i++) {
        struct pl_sink *ps = &pl->sinks[i];
        ps->cfg = &cfg->sinks[i];
        ps->pl = pl;
        ps->sk.ops = ps->cfg->ops;
        ps->sk.name = ps->cfg->name;
        ps->sk.conf = ps->cfg->conf;
        ps->sk.pl = pl;
        ps->batching = ps->cfg->conf;
        sp_logctx_init(&ps->sk.log, "sink", ps->cfg->ops->type, ps->cfg->name);
        ps->dl = sp_delivery_new(&ps->sk, ps->batching, pl_on_done, pl);
    }

    pl->nsources = cfg->nsources;
    pl->sources = sp_xcalloc((size_t)cfg->nsources, sizeof(*pl->sources));
    for (int i = 0; i < cfg->nsources; i++) {
        struct pl_source *ps = &pl->sources[i];
        ps->cfg = &cfg->sources[i];
        ps->pl = pl;
        ps->ck = sp_ckpt_new();
        ps->src.ops = ps->cfg->ops;
        ps->src.name = ps->cfg->name;
        ps->src.conf = ps->cfg->conf;
        ps->src.emit = pl_emit;
        ps->src.state_dir = cfg->state_dir;
        ps->src.emit_ctx = ps;
        sp_logctx_init(&ps->src.log, "source", ps->cfg->ops->type, ps->cfg->name);
    }

    pl->nstreams = cfg->nstreams;
    pl->streams = sp_xcalloc((size_t)cfg->nstreams, sizeof(*pl->streams));
    for (int i = 0; i < cfg->nstreams; i++) {
        const struct sp_cfg_stream *cs = &cfg->streams[i];
        struct pl_stream *st = &pl->streams[i];
        st->cfg = cs;
        st->src = &pl->sources[cs->source];
        st->sink = &pl->sinks[cs->sink];
        st->dlq = cs->recovery_sink >= 0 ? &pl->sinks[cs->recovery_sink] : NULL;
        st->fmt.ops = cs->format;
        st->fmt.toast_placeholder = cs->toast_placeholder;
        struct pl_source *src = st->src;
        src->streams =
            sp_xrealloc(src->streams, sizeof(*src->streams) * (size_t)(src->nstreams + 1));
        src->streams[src->nstreams++] = st;
        src->src.streams = sp_xrealloc(src->src.streams, sizeof(*src->src.streams) *
                                                             (size_t)(src->src.nstreams + 1));
        struct sp_stream_ref *sr = &src->src.streams[src->src.nstreams++];
        sr->name = cs->name;
        sr->ntables = cs->ntables;
        sr->tables = sp_xcalloc((size_t)cs->ntables + 1, sizeof(*sr->tables));
        for (int t = 0; t < cs->ntables; t++) {
            sr->tables[t].schema = cs->tables[t].schema;
            sr->tables[t].table = cs->tables[t].table;
        }
        /* The source's table list is the union of its streams' tables. */
        for (int t = 0; t < cs->ntables; t++) {
            bool dup = false;
            for (int k = 0; k < src->src.ntables; k++) {
                if (strcmp(src->src.tables[k].schema, cs->tables[t].schema) == 0 &&
                    strcmp(src->src.tables[k].table, cs->tables[t].table) == 0) {
                    dup = true;
                    break;
                }
            }
            if (!dup) {
                src->src.tables = sp_xrealloc(src->src.tables, sizeof(*src->src.tables) *
                                                                   (size_t)(src->src.ntables + 1));
                src->src.tables[src->src.ntables].schema = cs->tables[t].schema;
                src->src.tables[src->src.ntables].table = cs->tables[t].table;
                src->src.ntables++;
            }
        }
    }
    return pl;
}

static bool pl_sink_used(const struct sp_pipeline *pl, const struct pl_sink *ps)
{
    for (int i = 0; i < pl->nstreams; i++) {
        if (pl->streams[i].sink == ps || pl->streams[i].dlq == ps) {
            return true;
        }
    }
    return false;
}

int sp_pipeline_open(struct sp_pipeline *pl, struct sp_err *err)
{
    for (int i = 0; i < pl->nstreams; i++) {
        struct pl_stream *st = &pl->streams[i];
        if (st->fmt.ops->init != NULL && st->fmt.ops->init(&st->fmt, err) != 0) {
            sp_err_prefix(err, "stream \"%s\": format \"%s\"", st->cfg->name, st->fmt.ops->name);
            return err->code;
        }
        st->fmt_ready = true;
    }
    for (int i = 0; i < pl->nsinks; i++) {
        struct pl_sink *ps = &pl->sinks[i];
        if (!pl_sink_used(pl, ps)) {
            continue;
        }
        if (ps->sk.ops->open(&ps->sk, err) != 0) {
            sp_err_prefix(err, "sink \"%s\"", ps->sk.name);
            return err->code;
        }
        ps->opened = true;
        if (sp_delivery_start(ps->dl, err) != 0) {
            return err->code;
        }
    }
    for (int i = 0; i < pl->nsources; i++) {
        struct pl_source *ps = &pl->sources[i];
        if (ps->nstreams == 0) {
            continue;
        }
        if (ps->src.ops->open(&ps->src, err) != 0) {
            sp_err_prefix(err, "source \"%s\"", ps->src.name);
            return err->code;
        }
        ps->opened = true;
        ps->want_read = true;
    }
    return 0;
}

/* One turn of the loop: read, flush batches, settle acks, confirm, wait. */
static int pl_turn(struct sp_pipeline *pl, bool reading, struct sp_err *err)
{
    int64_t now = sp_time_mono_ms();
    int timeout = 1000;
    struct pollfd fds[16];
    int nfds = 0;
    bool again = false;

    for (int i = 0; i < pl->nsources; i++) {
        struct pl_source *ps = &pl->sources[i];
        if (!ps->opened) {
            continue;
        }
        ps->src.backpressure = pl_backpressured(pl);
        if (reading && !ps->src.backpressure) {
            int n = ps->src.ops->read(&ps->src, PL_READ_BUDGET, err);
            if (n < 0) {
                sp_err_prefix(err, "source \"%s\"", ps->src.name);
                return n;
            }
            ps->want_read = n > 0;
            again = again || ps->want_read;
        }
        if (now >= ps->next_tick_ms || ps->next_tick_ms == 0) {
            int wait = ps->src.ops->tick(&ps->src, err);
            if (wait < 0) {
                sp_err_prefix(err, "source \"%s\"", ps->src.name);
                return wait;
            }
            ps->next_tick_ms = now + wait;
        }
        int64_t until_tick = ps->next_tick_ms - now;
        if (until_tick < timeout) {
            timeout = until_tick < 0 ? 0 : (int)until_tick;
        }
        int fd = ps->src.ops->fd(&ps->src);
        if (fd >= 0 && reading && !pl_backpressured(pl) && nfds < 15) {
            fds[nfds].fd = fd;
            fds[nfds].events = POLLIN;
            fds[nfds].revents = 0;
            nfds++;
        }
    }
    now = sp_time_mono_ms(); /* reading may have taken a while */
    for (int i = 0; i < pl->nsinks; i++) {
        struct pl_sink *ps = &pl->sinks[i];
        if (!ps->opened) {
            continue;
        }
        int t = sp_delivery_flush(ps->dl, !reading, again, now);
        if (t >= 0 && t < timeout) {
            timeout = t;
        }
    }
    pl_drain_done(pl);
    pl_confirm(pl);
    if (again && !pl_backpressured(pl)) {
        return 0;
    }
    if (pl->until_lsn != 0 && pl->stats.confirmed_lsn >= pl->until_lsn) {
        return 0; /* done: the caller stops, no need to wait for anything */
    }
    fds[nfds].fd = pl->wake_fd;
    fds[nfds].events = POLLIN;
    fds[nfds].revents = 0;
    nfds++;
    if (poll(fds, (nfds_t)nfds, timeout) < 0 && errno != EINTR) {
        return sp_err_errno(err, errno, "poll failed");
    }
    return 0;
}

int sp_pipeline_run(struct sp_pipeline *pl, const struct sp_run_opts *opts,
                    volatile sig_atomic_t *stop, struct sp_err *err)
{
    int rc = 0;
    pl->until_lsn = opts != NULL ? opts->until_lsn : 0;
    while (!*stop && !pl->fatal) {
        rc = pl_turn(pl, true, err);
        if (rc != 0) {
            break;
        }
        if (opts != NULL && opts->until_lsn != 0 && pl->stats.confirmed_lsn >= opts->until_lsn) {
            sp_log_info(&sp_log_main, "reached " SP_LSN_FMT ", stopping",
                        SP_LSN_ARGS(opts->until_lsn));
            break;
        }
    }
    /* Drain: stop reading, hand over what is batched, wait for the sinks. */
    struct sp_err derr;
    sp_err_clear(&derr);
    int64_t deadline = sp_time_mono_ms() + pl->cfg->shutdown_timeout;
    for (int i = 0; i < pl->nsinks; i++) {
        /* The sinks' final flush (sp_pipeline_free) gets what the drain leaves of the budget. */
        sp_delivery_set_deadline(pl->sinks[i].dl, deadline);
    }
    if (pl->inflight_recs > 0) {
        sp_log_info(&sp_log_main, "draining %llu records in flight",
                    (unsigned long long)pl->inflight_recs);
    }
    while (pl->inflight_recs > 0 && sp_time_mono_ms() < deadline) {
        if (pl_turn(pl, false, &derr) != 0) {
            break;
        }
        if (pl->fatal && rc == 0) {
            /* Other keys may still settle, but a failed record never will. */
            bool only_failed = true;
            for (int i = 0; i < pl->nsinks; i++) {
                if (pl->sinks[i].opened && !sp_delivery_idle(pl->sinks[i].dl)) {
                    only_failed = false;
                }
            }
            if (only_failed) {
                break;
            }
        }
    }
    if (pl->inflight_recs > 0 && !pl->fatal) {
        sp_log_warn(&sp_log_main,
                    "shutdown timeout: %llu records not acknowledged; they will be "
                    "sent again on the next start",
                    (unsigned long long)pl->inflight_recs);
    }
    pl_confirm(pl);
    if (rc == 0 && pl->fatal) {
        *err = pl->fatal_err;
        rc = err->code != 0 ? err->code : SP_EINVAL;
    }
    return rc;
}

void sp_pipeline_check(struct sp_pipeline *pl, struct sp_check *chk)
{
    char component[200];
    for (int i = 0; i < pl->nsources; i++) {
        struct pl_source *ps = &pl->sources[i];
        snprintf(component, sizeof(component), "source %s \"%s\"", ps->src.ops->type, ps->src.name);
        chk->component = component;
        if (ps->nstreams == 0) {
            sp_check_warn(chk, "remove it, or add a stream that reads it",
                          "no stream reads this source");
            continue;
        }
        if (ps->src.ops->check != NULL) {
            ps->src.ops->check(&ps->src, chk);
        }
    }
    for (int i = 0; i < pl->nsinks; i++) {
        struct pl_sink *ps = &pl->sinks[i];
        snprintf(component, sizeof(component), "sink %s \"%s\"", ps->sk.ops->type, ps->sk.name);
        chk->component = component;
        if (!pl_sink_used(pl, ps)) {
            sp_check_warn(chk, "remove it, or use it in a stream", "no stream uses this sink");
            continue;
        }
        struct sp_err err;
        sp_err_clear(&err);
        int rc;
        if (ps->sk.ops->check != NULL) {
            rc = ps->sk.ops->check(&ps->sk, &err);
        } else {
            rc = ps->sk.ops->open(&ps->sk, &err);
            if (ps->sk.ops->close != NULL) {
                ps->sk.ops->close(&ps->sk);
            }
        }
        if (rc != 0) {
            sp_check_fail(chk, err.hint, "%s", err.msg);
        } else {
            sp_check_ok(chk, "reachable");
        }
    }
    chk->component = "";
}

void sp_pipeline_stats(const struct sp_pipeline *pl, struct sp_pipeline_stats *out)
{
    *out = pl->stats;
    out->inflight_bytes = pl->inflight_bytes;
}

void sp_pipeline_free(struct sp_pipeline *pl)
{
    if (pl == NULL) {
        return;
    }
    for (int i = 0; i < pl->nsinks; i++) {
        sp_delivery_stop(pl->sinks[i].dl);
    }
    pl->stopped = true;
    pl_drain_done(pl);
    for (int i = 0; i < pl->nsinks; i++) {
        struct pl_sink *ps = &pl->sinks[i];
        if (ps->opened && ps->sk.ops->close != NULL) {
            ps->sk.ops->close(&ps->sk);
        }
    }
    /* Closing may report the outcome of batches a sink still held. */
    pl_drain_done(pl);
    for (int i = 0; i < pl->nsinks; i++) {
        /* Batches never handed over or never delivered: freed unconfirmed. */
        sp_delivery_free(pl->sinks[i].dl, pl_rec_free_cb, pl);
    }
    for (int i = 0; i < pl->nsources; i++) {
        struct pl_source *ps = &pl->sources[i];
        if (ps->opened && ps->src.ops->close != NULL) {
            ps->src.ops->close(&ps->src);
        }
        sp_ckpt_free(ps->ck);
        free(ps->streams);
        free(ps->src.tables);
        for (int k = 0; k < ps->src.nstreams; k++) {
            free(ps->src.streams[k].tables);
        }
        free(ps->src.streams);
    }
    for (int i = 0; i < pl->nstreams; i++) {
        struct pl_stream *st = &pl->streams[i];
        if (st->fmt_ready && st->fmt.ops->fini != NULL) {
            st->fmt.ops->fini(&st->fmt);
        }
    }
    free(pl->sources);
    free(pl->sinks);
    free(pl->streams);
    sp_buf_fini(&pl->key);
    sp_buf_fini(&pl->value);
    pthread_mutex_destroy(&pl->done_mu);
    close(pl->wake_fd);
    free(pl);
}
