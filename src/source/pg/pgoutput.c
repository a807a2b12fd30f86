// SPDX-License-Identifier: Apache-2.0
/*
 * pgoutput decoder, protocol version 1: one pgo_read_<message>() per message
 * type, mirroring PostgreSQL's proto.c, over a bounds-checked cursor whose
 * short-read flag is sticky, so each reader checks once at the end.
 *
 * It does not frame CopyData, answer keepalives, convert values (text stays
 * text; types.c converts) or know about streaming and two-phase messages,
 * which protocol version 1 never sends.
 */
#include "source/pg/pgoutput.h"

#include <stdarg.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/lsn.h"
#include "util/mem.h"
#include "util/time.h"

/* ---- Cursor ---- */

struct sp_rd {
    const uint8_t *start; /* first byte of the message (the tag) */
    const uint8_t *p;     /* next unread byte */
    const uint8_t *end;   /* one past the last byte */
    bool short_read;      /* sticky: set by the first read that failed */
    size_t bad_off;       /* offset of that read */
    const char *why;      /* and what it found */
};

static void sp_rd_init(struct sp_rd *r, const uint8_t *msg, size_t len)
{
    r->start = msg;
    r->p = msg;
    r->end = msg + len;
    r->short_read = false;
    r->bad_off = 0;
    r->why = NULL;
}

static size_t sp_rd_off(const struct sp_rd *r)
{
    return (size_t)(r->p - r->start);
}

static size_t sp_rd_left(const struct sp_rd *r)
{
    return (size_t)(r->end - r->p);
}

static void sp_rd_fail(struct sp_rd *r, const char *why)
{
    if (!r->short_read) {
        r->short_read = true;
        r->bad_off = sp_rd_off(r);
        r->why = why;
    }
}

/* True if n more bytes can be read; otherwise marks the cursor failed. */
static bool sp_rd_need(struct sp_rd *r, size_t n)
{
    if (r->short_read) {
        return false;
    }
    if (sp_rd_left(r) < n) {
        sp_rd_fail(r, "message ends early");
        return false;
    }
    return true;
}

static inline uint64_t sp_rd_be(struct sp_rd *r, size_t n)
{
    uint64_t v = 0;
    if (!sp_rd_need(r, n)) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | r->p[i];
    }
    r->p += n;
    return v;
}

static uint8_t sp_rd_u8(struct sp_rd *r)
{
    return (uint8_t)sp_rd_be(r, 1);
}

static int sp_rd_i16(struct sp_rd *r)
{
    int v = (int)sp_rd_be(r, 2);
    return v >= 0x8000 ? v - 0x10000 : v;
}

static uint32_t sp_rd_u32(struct sp_rd *r)
{
    return (uint32_t)sp_rd_be(r, 4);
}

static int64_t sp_rd_i32(struct sp_rd *r)
{
    int64_t v = (int64_t)sp_rd_be(r, 4);
    return v >= INT64_C(0x80000000) ? v - INT64_C(0x100000000) : v;
}

static uint64_t sp_rd_u64(struct sp_rd *r)
{
    return sp_rd_be(r, 8);
}

static int64_t sp_rd_i64(struct sp_rd *r)
{
    uint64_t v = sp_rd_be(r, 8);
    /* Two's complement without an implementation-defined conversion. */
    return v > (uint64_t)INT64_MAX ? -(int64_t)(~v) - 1 : (int64_t)v;
}

/* A NUL-terminated string inside the message; "" after a failure. */
static const char *sp_rd_str(struct sp_rd *r)
{
    if (r->short_read) {
        return "";
    }
    const uint8_t *nul = memchr(r->p, '\0', sp_rd_left(r));
    if (nul == NULL) {
        sp_rd_fail(r, "string without terminator");
        return "";
    }
    const char *s = (const char *)r->p;
    r->p = nul + 1;
    return s;
}

/* n raw bytes inside the message; NULL after a failure. */
static const uint8_t *sp_rd_bytes(struct sp_rd *r, size_t n)
{
    if (!sp_rd_need(r, n)) {
        return NULL;
    }
    const uint8_t *b = r->p;
    r->p += n;
    return b;
}

/* ---- Messages ---- */

/* One message being decoded. */
struct pgo_msg {
    struct sp_pgo *d;
    const char *name; /* "Insert" */
    uint64_t lsn;     /* wal_start */
    size_t len;
    struct sp_rd r;
    struct sp_err *err;
};

static int pgo_fail(struct pgo_msg *m, size_t off, const char *fmt, ...) SP_PRINTF(3, 4);

static int pgo_fail(struct pgo_msg *m, size_t off, const char *fmt, ...)
{
    char detail[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return sp_err_set(m->err, SP_EPROTO,
                      "invalid pgoutput %s message at " SP_LSN_FMT ", byte %zu of %zu: %s", m->name,
                      SP_LSN_ARGS(m->lsn), off, m->len, detail);
}

/* The cursor's sticky failure, if any, as an error. */
static int pgo_check_read(struct pgo_msg *m)
{
    if (m->r.short_read) {
        return pgo_fail(m, m->r.bad_off, "%s", m->r.why);
    }
    return 0;
}

/* Like pgo_check_read(), and the whole message must have been consumed. */
static int pgo_check_end(struct pgo_msg *m)
{
    int rc = pgo_check_read(m);
    if (rc == 0 && sp_rd_left(&m->r) != 0) {
        rc = pgo_fail(m, sp_rd_off(&m->r), "%zu unexpected bytes after the end of the message",
                      sp_rd_left(&m->r));
    }
    return rc;
}

static int pgo_need_txn(struct pgo_msg *m)
{
    if (!m->d->in_txn) {
        return pgo_fail(m, 0, "change outside a transaction");
    }
    return 0;
}

/* PostgreSQL sends an empty namespace for pg_catalog. */
static const char *pgo_namespace(const char *nsp)
{
    return nsp[0] == '\0' ? "pg_catalog" : nsp;
}

/* PostgreSQL-epoch microseconds -> Unix epoch, refusing values that would overflow. */
static int pgo_time(struct pgo_msg *m, size_t off, int64_t pg_us, int64_t *out)
{
    if (pg_us > INT64_MAX - SP_PG_EPOCH_OFFSET_US) {
        return pgo_fail(m, off, "timestamp %lld out of range", (long long)pg_us);
    }
    *out = pg_us + SP_PG_EPOCH_OFFSET_US;
    return 0;
}

static struct sp_relation *pgo_lookup(struct pgo_msg *m, uint32_t oid, size_t off, int *rc)
{
    struct sp_relation *rel = sp_relcache_get(m->d->rc, oid);
    if (rel == NULL) {
        *rc = pgo_fail(m, off, "relation %u not in cache", oid);
    }
    return rel;
}

/* A new event carrying the open transaction's position, time and origin. */
static struct sp_event *pgo_event(struct sp_pgo *d, enum sp_op op, uint64_t lsn, size_t hint)
{
    struct sp_event *ev = sp_event_new(op, hint);
    ev->lsn = lsn;
    ev->commit_lsn = d->final_lsn;
    ev->xid = d->xid;
    ev->commit_time_us = d->commit_time_us;
    ev->source_name = d->source_name;
    ev->db = d->db;
    if (d->origin != NULL) {
        ev->origin = sp_arena_strndup(&ev->arena, d->origin, strlen(d->origin));
    }
    return ev;
}

/* Arena bytes a change event needs: the copied values plus per-column overhead. */
static size_t pgo_change_hint(const struct pgo_msg *m, const struct sp_relation *rel)
{
    return m->len + (size_t)rel->ncols * (2 * sizeof(struct sp_datum) + 32) + 64;
}

static void pgo_deliver(struct sp_pgo *d, struct sp_event *ev, struct sp_event_list *out)
{
    ev->seq = ++d->seq;
    sp_event_list_push(out, ev);
}

/*
 * TupleData into ev's arena. The column count must match the relation's:
 * proto.c writes every attribute that is neither dropped nor generated, which
 * is exactly the set the Relation message listed.
 */
static int pgo_read_tuple(struct pgo_msg *m, struct sp_event *ev, const struct sp_relation *rel,
                          struct sp_tuple **out)
{
    struct sp_rd *r = &m->r;
    size_t off = sp_rd_off(r);
    int ncols = sp_rd_i16(r);
    int rc = pgo_check_read(m);
    if (rc != 0) {
        return rc;
    }
    if (ncols != rel->ncols) {
        return pgo_fail(m, off, "tuple has %d columns but relation \"%s.%s\" (OID %u) has %d",
                        ncols, rel->schema, rel->table, rel->oid, rel->ncols);
    }
    struct sp_tuple *t = sp_event_tuple(ev, ncols);
    for (int i = 0; i < ncols && !r->short_read; i++) {
        struct sp_datum *dt = &t->cols[i];
        off = sp_rd_off(r);
        uint8_t kind = sp_rd_u8(r);
        switch (kind) {
        case 'n':
            dt->kind = SP_DATUM_NULL;
            break;
        case 'u':
            dt->kind = SP_DATUM_UNCHANGED;
            break;
        case 't':
        case 'b': {
            size_t len_off = sp_rd_off(r);
            int64_t len = sp_rd_i32(r);
            if (len < 0) {
                return pgo_fail(m, len_off, "column \"%s\" has negative length %lld",
                                rel->cols[i].name, (long long)len);
            }
            const uint8_t *bytes = sp_rd_bytes(r, (size_t)len);
            if (bytes == NULL) {
                break;
            }
            dt->kind = kind == 't' ? SP_DATUM_TEXT : SP_DATUM_BINARY;
            dt->len = (uint32_t)len;
            dt->data = sp_arena_strndup(&ev->arena, (const char *)bytes, (size_t)len);
            break;
        }
        default:
            if (r->short_read) {
                break;
            }
            return pgo_fail(m, off, "column \"%s\" has unknown kind 0x%02x", rel->cols[i].name,
                            kind);
        }
    }
    rc = pgo_check_read(m);
    if (rc == 0) {
        *out = t;
    }
    return rc;
}

static int pgo_read_begin(struct pgo_msg *m, struct sp_event_list *out)
{
    struct sp_pgo *d = m->d;
    struct sp_rd *r = &m->r;
    uint64_t final_lsn = sp_rd_u64(r);
    size_t ts_off = sp_rd_off(r);
    int64_t pg_time = sp_rd_i64(r);
    uint32_t xid = sp_rd_u32(r);
    int64_t commit_time = 0;
    int rc = pgo_check_end(m);

    if (rc == 0 && d->in_txn) {
        rc = pgo_fail(m, 0, "transaction %u began inside transaction %u", xid, d->xid);
    }
    if (rc == 0 && final_lsn == 0) {
        rc = pgo_fail(m, 1, "final LSN not set");
    }
    if (rc == 0) {
        rc = pgo_time(m, ts_off, pg_time, &commit_time);
    }
    if (rc != 0) {
        return rc;
    }
    free(d->origin);
    d->origin = NULL;
    d->origin_lsn = 0;
    d->in_txn = true;
    d->final_lsn = final_lsn;
    d->commit_time_us = commit_time;
    d->xid = xid;
    d->seq = 0;
    sp_event_list_push(out, pgo_event(d, SP_OP_BEGIN, m->lsn, 0));
    return 0;
}

static int pgo_read_commit(struct pgo_msg *m, struct sp_event_list *out)
{
    struct sp_pgo *d = m->d;
    struct sp_rd *r = &m->r;
    uint8_t flags = sp_rd_u8(r);
    uint64_t commit_lsn = sp_rd_u64(r);
    uint64_t end_lsn = sp_rd_u64(r);
    size_t ts_off = sp_rd_off(r);
    int64_t pg_time = sp_rd_i64(r);
    int64_t commit_time = 0;
    int rc = pgo_check_end(m);

    if (rc == 0 && !d->in_txn) {
        rc = pgo_fail(m, 0, "commit outside a transaction");
    }
    if (rc == 0 && flags != 0) {
        rc = pgo_fail(m, 1, "unknown flags 0x%02x", flags);
    }
    if (rc == 0 && commit_lsn != d->final_lsn) {
        rc = pgo_fail(m, 2,
                      "commit LSN " SP_LSN_FMT " differs from the final LSN " SP_LSN_FMT
                      " announced by Begin of transaction %u",
                      SP_LSN_ARGS(commit_lsn), SP_LSN_ARGS(d->final_lsn), d->xid);
    }
    if (rc == 0 && end_lsn < commit_lsn) {
        rc = pgo_fail(m, 10, "end LSN " SP_LSN_FMT " precedes commit LSN " SP_LSN_FMT,
                      SP_LSN_ARGS(end_lsn), SP_LSN_ARGS(commit_lsn));
    }
    if (rc == 0) {
        rc = pgo_time(m, ts_off, pg_time, &commit_time);
    }
    if (rc != 0) {
        return rc;
    }
    d->commit_time_us = commit_time;
    struct sp_event *ev = pgo_event(d, SP_OP_COMMIT, m->lsn, 0);
    ev->end_lsn = end_lsn;
    sp_event_list_push(out, ev);

    free(d->origin);
    d->origin = NULL;
    d->origin_lsn = 0;
    d->in_txn = false;
    d->final_lsn = 0;
    d->commit_time_us = 0;
    d->xid = 0;
    d->seq = 0;
    return 0;
}

static int pgo_read_origin(struct pgo_msg *m)
{
    struct sp_pgo *d = m->d;
    uint64_t origin_lsn = sp_rd_u64(&m->r);
    const char *name = sp_rd_str(&m->r);
    int rc = pgo_check_end(m);

    if (rc == 0 && !d->in_txn) {
        rc = pgo_fail(m, 0, "origin outside a transaction");
    }
    if (rc != 0) {
        return rc;
    }
    /* A transaction may carry several; the latest applies from here on. */
    free(d->origin);
    d->origin = sp_xstrdup(name);
    d->origin_lsn = origin_lsn;
    return 0;
}

static int pgo_read_relation(struct pgo_msg *m)
{
    struct sp_pgo *d = m->d;
    struct sp_rd *r = &m->r;
    struct sp_relation *rel = sp_xcalloc(1, sizeof(*rel)); /* sp_relation_unref */
    int rc;

    rel->refs = 1;
    rel->oid = sp_rd_u32(r);
    const char *nsp = sp_rd_str(r);
    const char *name = sp_rd_str(r);
    rel->replident = (char)sp_rd_u8(r);
    size_t ncols_off = sp_rd_off(r);
    int ncols = sp_rd_i16(r);
    rc = pgo_check_read(m);
    if (rc != 0) {
        goto out;
    }
    rel->schema = sp_xstrdup(pgo_namespace(nsp));
    rel->table = sp_xstrdup(name);
    /* Each column takes at least 10 bytes: refuse counts the message cannot hold. */
    if (ncols < 0 || (size_t)ncols > sp_rd_left(r) / 10) {
        rc = pgo_fail(m, ncols_off, "relation \"%s.%s\" has %d columns in %zu bytes", rel->schema,
                      rel->table, ncols, sp_rd_left(r));
        goto out;
    }
    rel->cols = sp_xcalloc(ncols > 0 ? (size_t)ncols : 1, sizeof(*rel->cols));
    rel->ncols = ncols;
    for (int i = 0; i < ncols && !r->short_read; i++) {
        struct sp_column *col = &rel->cols[i];
        col->key = (sp_rd_u8(r) & 1) != 0;
        const char *colname = sp_rd_str(r);
        col->type_oid = sp_rd_u32(r);
        col->typmod = (int32_t)sp_rd_i32(r);
        if (!r->short_read) {
            col->name = sp_xstrdup(colname);
            struct sp_buf jn;
            sp_buf_init(&jn);
            sp_buf_put_json_str(&jn, colname, strlen(colname));
            sp_buf_putc(&jn, ':');
            col->json_name_len = jn.len;
            col->json_name = sp_buf_steal(&jn);
        }
    }
    rc = pgo_check_end(m);
    if (rc == 0 && d->on_relation != NULL) {
        rc = d->on_relation(d->ctx, rel, m->err);
        if (rc != 0) {
            sp_err_prefix(m->err, "pgoutput Relation message at " SP_LSN_FMT, SP_LSN_ARGS(m->lsn));
        }
    }
    if (rc == 0) {
        sp_relcache_put(d->rc, rel);
        rel = NULL;
    }
out:
    sp_relation_unref(rel);
    return rc;
}

static int pgo_read_type(struct pgo_msg *m)
{
    struct sp_pgo *d = m->d;
    uint32_t oid = sp_rd_u32(&m->r);
    const char *nsp = sp_rd_str(&m->r);
    const char *name = sp_rd_str(&m->r);
    int rc = pgo_check_end(m);

    if (rc == 0 && d->on_type != NULL) {
        rc = d->on_type(d->ctx, oid, pgo_namespace(nsp), name, m->err);
        if (rc != 0) {
            sp_err_prefix(m->err, "pgoutput Type message at " SP_LSN_FMT, SP_LSN_ARGS(m->lsn));
        }
    }
    return rc;
}

/* Relation OID and the relation it names, for Insert, Update and Delete. */
static struct sp_relation *pgo_read_relid(struct pgo_msg *m, int *rc)
{
    *rc = pgo_need_txn(m);
    if (*rc != 0) {
        return NULL;
    }
    size_t off = sp_rd_off(&m->r);
    uint32_t oid = sp_rd_u32(&m->r);
    *rc = pgo_check_read(m);
    if (*rc != 0) {
        return NULL;
    }
    return pgo_lookup(m, oid, off, rc);
}

static int pgo_read_insert(struct pgo_msg *m, struct sp_event_list *out)
{
    struct sp_event *ev = NULL; /* sp_event_free */
    int rc;
    struct sp_relation *rel = pgo_read_relid(m, &rc);
    if (rel == NULL) {
        return rc;
    }
    ev = pgo_event(m->d, SP_OP_INSERT, m->lsn, pgo_change_hint(m, rel));
    ev->rel = sp_relation_ref(rel);

    size_t off = sp_rd_off(&m->r);
    uint8_t action = sp_rd_u8(&m->r);
    rc = pgo_check_read(m);
    if (rc == 0 && action != 'N') {
        rc = pgo_fail(m, off, "expected new tuple 'N', got 0x%02x", action);
    }
    if (rc == 0) {
        rc = pgo_read_tuple(m, ev, rel, &ev->after);
    }
    if (rc == 0) {
        rc = pgo_check_end(m);
    }
    if (rc != 0) {
        sp_event_free(ev);
        return rc;
    }
    pgo_deliver(m->d, ev, out);
    return 0;
}

/*
 * Under REPLICA IDENTITY FULL the old row is complete, so a TOASTed column the
 * new row left out ('u') has the same value as in the old row.
 */
static void pgo_fill_unchanged(struct sp_tuple *after, const struct sp_tuple *before)
{
    for (int i = 0; i < after->ncols; i++) {
        if (after->cols[i].kind == SP_DATUM_UNCHANGED &&
            before->cols[i].kind != SP_DATUM_UNCHANGED) {
            after->cols[i] = before->cols[i];
        }
    }
}

static int pgo_read_update(struct pgo_msg *m, struct sp_event_list *out)
{
    struct sp_rd *r = &m->r;
    struct sp_event *ev = NULL; /* sp_event_free */
    int rc;
    struct sp_relation *rel = pgo_read_relid(m, &rc);
    if (rel == NULL) {
        return rc;
    }
    ev = pgo_event(m->d, SP_OP_UPDATE, m->lsn, pgo_change_hint(m, rel));
    ev->rel = sp_relation_ref(rel);

    size_t off = sp_rd_off(r);
    uint8_t action = sp_rd_u8(r);
    rc = pgo_check_read(m);
    if (rc == 0 && (action == 'K' || action == 'O')) {
        ev->before_key_only = action == 'K';
        rc = pgo_read_tuple(m, ev, rel, &ev->before);
        off = sp_rd_off(r);
        action = sp_rd_u8(r);
        if (rc == 0) {
            rc = pgo_check_read(m);
        }
    }
    if (rc == 0 && action != 'N') {
        rc = pgo_fail(m, off, "expected old tuple 'K' or 'O' or new tuple 'N', got 0x%02x", action);
    }
    if (rc == 0) {
        rc = pgo_read_tuple(m, ev, rel, &ev->after);
    }
    if (rc == 0) {
        rc = pgo_check_end(m);
    }
    if (rc != 0) {
        sp_event_free(ev);
        return rc;
    }
    if (ev->before != NULL && !ev->before_key_only) {
        pgo_fill_unchanged(ev->after, ev->before);
    }
    pgo_deliver(m->d, ev, out);
    return 0;
}

static int pgo_read_delete(struct pgo_msg *m, struct sp_event_list *out)
{
    struct sp_event *ev = NULL; /* sp_event_free */
    int rc;
    struct sp_relation *rel = pgo_read_relid(m, &rc);
    if (rel == NULL) {
        return rc;
    }
    ev = pgo_event(m->d, SP_OP_DELETE, m->lsn, pgo_change_hint(m, rel));
    ev->rel = sp_relation_ref(rel);

    size_t off = sp_rd_off(&m->r);
    uint8_t action = sp_rd_u8(&m->r);
    rc = pgo_check_read(m);
    if (rc == 0 && action != 'K' && action != 'O') {
        rc = pgo_fail(m, off, "expected old tuple 'K' or 'O', got 0x%02x", action);
    }
    if (rc == 0) {
        ev->before_key_only = action == 'K';
        rc = pgo_read_tuple(m, ev, rel, &ev->before);
    }
    if (rc == 0) {
        rc = pgo_check_end(m);
    }
    if (rc != 0) {
        sp_event_free(ev);
        return rc;
    }
    pgo_deliver(m->d, ev, out);
    return 0;
}

static int pgo_read_truncate(struct pgo_msg *m, struct sp_event_list *out)
{
    struct sp_rd *r = &m->r;
    struct sp_event_list evs; /* sp_event_list_free */
    int rc = pgo_need_txn(m);

    sp_event_list_init(&evs);
    if (rc != 0) {
        return rc;
    }
    uint32_t nrels = sp_rd_u32(r);
    uint8_t flags = sp_rd_u8(r);
    rc = pgo_check_read(m);
    if (rc == 0 && (nrels == 0 || nrels != sp_rd_left(r) / 4 || sp_rd_left(r) % 4 != 0)) {
        rc = pgo_fail(m, 1, "%u relations in %zu bytes", nrels, sp_rd_left(r));
    }
    for (uint32_t i = 0; rc == 0 && i < nrels; i++) {
        size_t off = sp_rd_off(r);
        struct sp_relation *rel = pgo_lookup(m, sp_rd_u32(r), off, &rc);
        if (rel != NULL) {
            struct sp_event *ev = pgo_event(m->d, SP_OP_TRUNCATE, m->lsn, 0);
            ev->rel = sp_relation_ref(rel);
            ev->truncate_flags = flags;
            sp_event_list_push(&evs, ev);
        }
    }
    if (rc == 0) {
        rc = pgo_check_end(m);
    }
    if (rc != 0) {
        sp_event_list_free(&evs);
        return rc;
    }
    struct sp_event *ev;
    while ((ev = sp_event_list_pop(&evs)) != NULL) {
        pgo_deliver(m->d, ev, out);
    }
    return 0;
}

static int pgo_read_message(struct pgo_msg *m, struct sp_event_list *out)
{
    struct sp_pgo *d = m->d;
    struct sp_rd *r = &m->r;
    uint8_t flags = sp_rd_u8(r);
    uint64_t lsn = sp_rd_u64(r);
    const char *prefix = sp_rd_str(r);
    uint32_t len = sp_rd_u32(r);
    const uint8_t *content = sp_rd_bytes(r, len);
    bool transactional = (flags & 1) != 0;
    int rc = pgo_check_end(m);

    if (rc == 0 && transactional && !d->in_txn) {
        rc = pgo_fail(m, 1, "transactional message outside a transaction");
    }
    if (rc != 0) {
        return rc;
    }
    struct sp_event *ev = NULL;
    if (transactional) {
        ev = pgo_event(d, SP_OP_MESSAGE, lsn, m->len);
    } else {
        /* Decoded as soon as it is read from WAL: no transaction, no commit time. */
        ev = sp_event_new(SP_OP_MESSAGE, m->len);
        ev->lsn = lsn;
        ev->commit_lsn = lsn;
        ev->end_lsn = lsn;
        ev->source_name = d->source_name;
        ev->db = d->db;
    }
    ev->msg_transactional = transactional;
    ev->msg_prefix = sp_arena_strndup(&ev->arena, prefix, strlen(prefix));
    ev->msg_content = sp_arena_strndup(&ev->arena, (const char *)content, len);
    ev->msg_len = len;
    if (transactional) {
        pgo_deliver(d, ev, out);
    } else {
        sp_event_list_push(out, ev);
    }
    return 0;
}

static const char *pgo_msg_name(uint8_t tag)
{
    switch (tag) {
    case 'B':
        return "Begin";
    case 'C':
        return "Commit";
    case 'O':
        return "Origin";
    case 'R':
        return "Relation";
    case 'Y':
        return "Type";
    case 'I':
        return "Insert";
    case 'U':
        return "Update";
    case 'D':
        return "Delete";
    case 'T':
        return "Truncate";
    case 'M':
        return "Message";
    default:
        return NULL;
    }
}

void sp_pgo_init(struct sp_pgo *d, struct sp_relcache *rc)
{
    memset(d, 0, sizeof(*d));
    d->rc = rc;
}

void sp_pgo_fini(struct sp_pgo *d)
{
    free(d->origin);
    d->origin = NULL;
}

int sp_pgo_decode(struct sp_pgo *d, const uint8_t *msg, size_t len, uint64_t wal_start,
                  struct sp_event_list *out, struct sp_err *err)
{
    if (len == 0) {
        return sp_err_set(err, SP_EPROTO, "empty pgoutput message at " SP_LSN_FMT,
                          SP_LSN_ARGS(wal_start));
    }
    uint8_t tag = msg[0];
    struct pgo_msg m = {
        .d = d, .name = pgo_msg_name(tag), .lsn = wal_start, .len = len, .err = err};
    if (m.name == NULL) {
        if (tag >= 0x20 && tag < 0x7f) {
            return sp_err_set(err, SP_EPROTO,
                              "unknown pgoutput message type '%c' at " SP_LSN_FMT " (%zu bytes)",
                              tag, SP_LSN_ARGS(wal_start), len);
        }
        return sp_err_set(err, SP_EPROTO,
                          "unknown pgoutput message type 0x%02x at " SP_LSN_FMT " (%zu bytes)", tag,
                          SP_LSN_ARGS(wal_start), len);
    }
    sp_rd_init(&m.r, msg, len);
    m.r.p++; /* the tag */

    switch (tag) {
    case 'B':
        return pgo_read_begin(&m, out);
    case 'C':
        return pgo_read_commit(&m, out);
    case 'O':
        return pgo_read_origin(&m);
    case 'R':
        return pgo_read_relation(&m);
    case 'Y':
        return pgo_read_type(&m);
    case 'I':
        return pgo_read_insert(&m, out);
    case 'U':
        return pgo_read_update(&m, out);
    case 'D':
        return pgo_read_delete(&m, out);
    case 'T':
        return pgo_read_truncate(&m, out);
    default: /* 'M'; pgo_msg_name() refused every other tag */
        return pgo_read_message(&m, out);
    }
}
