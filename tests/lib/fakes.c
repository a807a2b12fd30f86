// SPDX-License-Identifier: Apache-2.0
/* In-memory source, sink and format for pipeline tests. */
#include "fakes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/mem.h"

/* ---- source ---- */

static int fsrc_open(struct sp_source *src, struct sp_err *err)
{
    (void)src;
    (void)err;
    return 0;
}

static int fsrc_fd(struct sp_source *src)
{
    (void)src;
    return -1;
}

static int fsrc_read(struct sp_source *src, int budget, struct sp_err *err)
{
    struct fake_source_conf *c = src->conf;
    int n = 0;
    struct sp_event *ev;
    while (n < budget && !src->backpressure && (ev = sp_event_list_pop(&c->events)) != NULL) {
        c->emitted++;
        int rc = src->emit(src->emit_ctx, ev, err);
        if (rc != 0) {
            return rc;
        }
        n++;
    }
    if (n > 0) {
        c->reads++;
    }
    return n;
}

static int fsrc_tick(struct sp_source *src, struct sp_err *err)
{
    struct fake_source_conf *c = src->conf;
    (void)err;
    c->ticks++;
    return 5;
}

static int fsrc_confirm(struct sp_source *src, uint64_t lsn, bool idle, struct sp_err *err)
{
    struct fake_source_conf *c = src->conf;
    (void)idle;
    (void)err;
    c->confirmed = lsn;
    c->confirms++;
    return 0;
}

static void fsrc_close(struct sp_source *src)
{
    struct fake_source_conf *c = src->conf;
    sp_event_list_free(&c->events);
}

const struct sp_source_ops fake_source_ops = {
    .type = "fake",
    .summary = "events prepared by a test",
    .open = fsrc_open,
    .fd = fsrc_fd,
    .read = fsrc_read,
    .tick = fsrc_tick,
    .confirm = fsrc_confirm,
    .close = fsrc_close,
};

struct sp_relation *fake_relation(const char *schema, const char *table)
{
    struct sp_relation *rel = sp_xcalloc(1, sizeof(*rel));
    rel->oid = 16384;
    rel->schema = sp_xstrdup(schema);
    rel->table = sp_xstrdup(table);
    rel->replident = 'd';
    rel->ncols = 1;
    rel->cols = sp_xcalloc(1, sizeof(*rel->cols));
    rel->cols[0].name = sp_xstrdup("id");
    rel->cols[0].type_oid = 23;
    rel->cols[0].key = true;
    rel->refs = 1;
    return rel;
}

void fake_source_add_txn(struct fake_source_conf *c, struct sp_relation *rel, uint64_t base, int n)
{
    struct sp_event *b = sp_event_new(SP_OP_BEGIN, 0);
    b->commit_lsn = base;
    sp_event_list_push(&c->events, b);
    for (int i = 0; i < n; i++) {
        struct sp_event *ev = sp_event_new(SP_OP_INSERT, 64);
        ev->rel = sp_relation_ref(rel);
        ev->commit_lsn = base;
        ev->lsn = base - 50 + (uint64_t)i;
        ev->seq = (uint32_t)i + 1;
        ev->after = sp_event_tuple(ev, 1);
        char *txt = sp_event_alloc(ev, 16);
        int len = snprintf(txt, 16, "%d", i + 1);
        ev->after->cols[0].kind = SP_DATUM_TEXT;
        ev->after->cols[0].data = txt;
        ev->after->cols[0].len = (uint32_t)len;
        sp_event_list_push(&c->events, ev);
    }
    struct sp_event *cm = sp_event_new(SP_OP_COMMIT, 0);
    cm->commit_lsn = base;
    cm->end_lsn = base + 100;
    sp_event_list_push(&c->events, cm);
}

/* ---- format ---- */

static int ffmt_encode(struct sp_format *fmt, const struct sp_event *ev, struct sp_buf *key,
                       struct sp_buf *value, struct sp_err *err)
{
    (void)fmt;
    char id[SP_EVENT_ID_BUFSZ];
    if (ev->after != NULL && ev->after->cols[0].len == 3 &&
        memcmp(ev->after->cols[0].data, "bad", 3) == 0) {
        return sp_err_set(err, SP_EINVAL, "value \"bad\" cannot be formatted");
    }
    sp_buf_printf(key, "{\"id\":%u}", ev->seq);
    sp_buf_printf(value, "{\"id\":\"%s\",\"op\":\"%c\",\"n\":%u}", sp_event_id(ev, id),
                  sp_op_char(ev->op), ev->seq);
    return 0;
}

const struct sp_format_ops fake_format_ops = {
    .name = "fake",
    .summary = "test format",
    .encode = ffmt_encode,
};

/* ---- sink ---- */

void fake_sink_init(struct fake_sink_conf *c)
{
    memset(c, 0, sizeof(*c));
    c->batching.batch_size = 100;
    c->batching.batch_bytes = 1 << 20;
    c->batching.linger_ms = 0;
    pthread_mutex_init(&c->mu, NULL);
}

void fake_sink_fini(struct fake_sink_conf *c)
{
    for (int i = 0; i < c->n; i++) {
        free(c->ids[i]);
        free(c->values[i]);
    }
    free(c->ids);
    free(c->values);
    pthread_mutex_destroy(&c->mu);
}

int fake_sink_count(struct fake_sink_conf *c)
{
    pthread_mutex_lock(&c->mu);
    int n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static void fsink_capture(struct fake_sink_conf *c, struct sp_batch *b)
{
    for (struct sp_rec *r = b->head; r != NULL; r = r->next) {
        if (r->err != NULL) {
            continue;
        }
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 64;
            c->ids = sp_xrealloc(c->ids, sizeof(char *) * (size_t)c->cap);
            c->values = sp_xrealloc(c->values, sizeof(char *) * (size_t)c->cap);
        }
        c->ids[c->n] = sp_xstrdup(r->id);
        c->values[c->n] = sp_xstrndup(r->value, r->value_len);
        c->n++;
    }
}

void fake_sink_release(struct fake_sink_conf *c)
{
    pthread_mutex_lock(&c->mu);
    int n = c->nheld;
    struct sp_batch *held[4096];
    memcpy(held, c->held, sizeof(held[0]) * (size_t)n);
    c->nheld = 0;
    c->hold = false;
    for (int i = 0; i < n; i++) {
        fsink_capture(c, held[i]);
    }
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; i < n; i++) {
        sp_batch_done(held[i], 0, NULL);
    }
}

static int fsink_open(struct sp_sink *sk, struct sp_err *err)
{
    (void)sk;
    (void)err;
    return 0;
}

static int fsink_submit(struct sp_sink *sk, struct sp_batch *b, struct sp_err *err)
{
    struct fake_sink_conf *c = sk->conf;
    pthread_mutex_lock(&c->mu);
    c->submits++;
    if (c->fail_retriable > 0) {
        c->fail_retriable--;
        pthread_mutex_unlock(&c->mu);
        sp_err_set(err, SP_ECONN, "fake sink is down");
        err->retriable = true;
        return err->code;
    }
    if (c->fail_key != NULL && c->fail_key_times > 0) {
        for (struct sp_rec *r = b->head; r != NULL; r = r->next) {
            if (r->key != NULL && strcmp(r->key, c->fail_key) == 0) {
                c->fail_key_times--;
                pthread_mutex_unlock(&c->mu);
                sp_err_set(err, SP_ETIMEDOUT, "fake sink timed out on key %s", r->key);
                return err->code;
            }
        }
    }
    c->batches++;
    if (c->soft_key != NULL && c->soft_times > 0) {
        bool hit = false;
        for (struct sp_rec *r = b->head; r != NULL; r = r->next) {
            if (r->key != NULL && strcmp(r->key, c->soft_key) == 0) {
                r->err = sp_xcalloc(1, sizeof(*r->err));
                sp_err_set(r->err, SP_ETIMEDOUT, "fake sink did not deliver key %s", r->key);
                hit = true;
            }
        }
        c->soft_times -= hit;
    }
    if (c->reject_id != NULL) {
        for (struct sp_rec *r = b->head; r != NULL; r = r->next) {
            if (strcmp(r->id, c->reject_id) == 0) {
                r->err = sp_xcalloc(1, sizeof(*r->err));
                sp_err_set(r->err, SP_EREJECTED, "record too large for the fake sink");
            }
        }
    }
    if (c->hold && c->nheld < 4096) {
        c->held[c->nheld++] = b;
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    fsink_capture(c, b);
    pthread_mutex_unlock(&c->mu);
    sp_batch_done(b, 0, NULL);
    return 0;
}

const struct sp_sink_ops fake_sink_ops = {
    .type = "fake",
    .summary = "captures records in memory",
    .open = fsink_open,
    .submit = fsink_submit,
};
