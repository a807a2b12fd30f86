/*
 * Hand-built events for the flow unit tests: one relation "public.orders"
 * with a column of each kind the flows care about, and events whose old and
 * new rows are given as text (NULL: SQL NULL). Header-only; each test
 * binary includes it once.
 */
#ifndef SIPHON_TESTS_UNIT_FLOW_EVENTS_H
#define SIPHON_TESTS_UNIT_FLOW_EVENTS_H

#include <stdlib.h>
#include <string.h>

#include "core/event.h"
#include "source/pg/types.h"
#include "util/mem.h"

/* Columns of public.orders, in order. */
enum {
    C_ID,      /* int4, key */
    C_STATUS,  /* text */
    C_TOTAL,   /* numeric */
    C_PAID,    /* bool */
    C_META,    /* jsonb */
    C_CREATED, /* timestamptz */
    C_SCORE,   /* float8 */
    C_TAGS,    /* int4[] */
    C_EMAIL,   /* text */
    C_NCOLS
};

static struct sp_relation *fe_rel_named(const char *schema, const char *table)
{
    static const struct {
        const char *name;
        uint32_t oid;
    } cols[C_NCOLS] = {
        {"id", 23},        {"status", 25}, {"total", 1700}, {"paid", 16},  {"meta", 3802},
        {"created", 1184}, {"score", 701}, {"tags", 1007},  {"email", 25},
    };
    struct sp_relation *rel = sp_xcalloc(1, sizeof(*rel));
    rel->oid = 16384;
    rel->version = 1;
    rel->schema = sp_xstrdup(schema);
    rel->table = sp_xstrdup(table);
    rel->replident = 'd';
    rel->ncols = C_NCOLS;
    rel->cols = sp_xcalloc(C_NCOLS, sizeof(*rel->cols));
    for (int i = 0; i < C_NCOLS; i++) {
        rel->cols[i].name = sp_xstrdup(cols[i].name);
        rel->cols[i].type_oid = cols[i].oid;
        rel->cols[i].typmod = -1;
        rel->cols[i].type = sp_type_builtin(cols[i].oid);
        rel->cols[i].key = i == C_ID;
    }
    rel->refs = 1;
    return rel;
}

static struct sp_tuple *fe_tuple(struct sp_event *ev, int ncols, const char *const *vals)
{
    if (vals == NULL) {
        return NULL;
    }
    struct sp_tuple *t = sp_event_tuple(ev, ncols);
    for (int i = 0; i < ncols; i++) {
        if (vals[i] != NULL) {
            t->cols[i].kind = SP_DATUM_TEXT;
            t->cols[i].data = sp_arena_strndup(&ev->arena, vals[i], strlen(vals[i]));
            t->cols[i].len = (uint32_t)strlen(vals[i]);
        }
    }
    return t;
}

/* An event of rel; before/after are rel->ncols texts (NULL entries: SQL NULL) or NULL. */
static struct sp_event *fe_event(struct sp_relation *rel, enum sp_op op, const char *const *before,
                                 const char *const *after)
{
    struct sp_event *ev = sp_event_new(op, 0);
    ev->rel = sp_relation_ref(rel);
    ev->before = fe_tuple(ev, rel->ncols, before);
    ev->after = fe_tuple(ev, rel->ncols, after);
    ev->lsn = 0x16E9A48;
    ev->commit_lsn = 0x16E9B00;
    ev->seq = 3;
    ev->xid = 771;
    ev->commit_time_us = INT64_C(1763719200500000);
    ev->source_name = "orders";
    ev->db = "shop";
    return ev;
}

static struct sp_event *fe_message(const char *prefix, const char *content, bool transactional)
{
    struct sp_event *ev = sp_event_new(SP_OP_MESSAGE, 0);
    ev->msg_prefix = sp_arena_strndup(&ev->arena, prefix, strlen(prefix));
    ev->msg_content = sp_arena_strndup(&ev->arena, content, strlen(content));
    ev->msg_len = (uint32_t)strlen(content);
    ev->msg_transactional = transactional;
    ev->lsn = 0x1000;
    ev->commit_lsn = transactional ? 0x1100 : 0;
    ev->seq = 1;
    ev->source_name = "orders";
    ev->db = "shop";
    return ev;
}

/* A typical row: id 42, paid order. */
#define FE_ROW(id, status, total)                                                             \
    (const char *const[C_NCOLS])                                                              \
    {                                                                                         \
        (id), (status), (total), "t", "{\"gift\": true, \"tags\": [\"a\", \"b\"], \"n\": 2}", \
            "2026-11-21 10:00:00.5+00", "0.5", "{1,2,3}", "alice@example.com"                 \
    }

#endif
