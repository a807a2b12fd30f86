// SPDX-License-Identifier: Apache-2.0
/*
 * Flow "transaction": transaction metadata, as Debezium's
 * provide.transaction.metadata gives it.
 *
 *   - transaction: {destination: "orders.transaction"}
 *
 * Every event that reaches this flow gets a `transaction` block (id
 * "<xid>:<commit lsn>", total_order, data_collection_order: its 1-based
 * position among the transaction's events of this stream, and among those of
 * its table), and each transaction with at least one such event gets a
 * BEGIN event before its first one and an END event (event_count, per-table
 * data_collections) at its commit, both to the destination:
 *
 *   {"status":"BEGIN","id":"771:24023400","ts_ms":1763719200500,"event_count":null,
 *    "data_collections":null}
 *   {"status":"END","id":"771:24023400","ts_ms":1763719200500,"event_count":2,
 *    "data_collections":[{"data_collection":"public.orders","event_count":2}]}
 *
 * Counts are of the events this flow sees: after a filter, of what the
 * stream delivers. Put it last in the list. A transaction resent after a
 * reconnect starts again (BEGIN again, counts from 1), within at-least-once.
 */
#include <stdint.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/diag.h"
#include "config/schema.h"
#include "config/yaml.h"
#include "flow/flow.h"
#include "flow/value.h"
#include "util/buf.h"
#include "util/mem.h"

struct txmeta_conf {
    char *destination;
};

static const struct sp_opt txmeta_opts[] = {
    SP_OPT_STR("destination", struct txmeta_conf, destination, "{source.name}.transaction", 0,
               "template of the destination of BEGIN and END events (Debezium: "
               "<topic.prefix>.transaction)"),
    SP_OPT_END,
};

struct txmeta_table {
    char *name; /* "schema.table" */
    uint64_t count;
};

struct txmeta_state {
    struct sp_ftmpl *dest;
    /* the open transaction */
    bool open;
    uint64_t commit_lsn;
    uint32_t xid;
    int64_t commit_time_us;
    const char *source_name;
    const char *db;
    char id[48];
    uint64_t total;
    struct txmeta_table *tables;
    int ntables;
    int cap;
    struct sp_buf buf;
};

static int txmeta_compile(struct sp_flow *fl, struct sp_node *node, const struct sp_flow_cctx *cc)
{
    struct txmeta_state *st = sp_xcalloc(1, sizeof(*st));
    struct txmeta_conf conf = {0};
    sp_buf_init(&st->buf);
    fl->state = st;
    if (node != NULL && !sp_node_is_null(node) && node->kind != SP_NODE_MAP) {
        struct sp_diag_item *it = sp_diag_error(cc->d, &node->loc, node->span,
                                                "%s: flow \"transaction\" takes a mapping, not %s",
                                                cc->what, sp_node_kind_name(node));
        sp_diag_hint(it, "e.g. transaction: {destination: \"orders.transaction\"}, or "
                         "transaction: {} for the default");
        return SP_EINVAL;
    }
    if (sp_flow_opts(cc, "flow \"transaction\"", txmeta_opts, node, &conf) > 0) {
        sp_opt_free_conf(txmeta_opts, &conf);
        return SP_EINVAL;
    }
    int rc = 0;
    if (node != NULL && sp_node_get(node, "destination") != NULL) {
        rc = sp_flow_template(cc, "flow \"transaction\"", node, "destination", &st->dest);
    } else {
        struct sp_err err;
        size_t off;
        sp_err_clear(&err);
        rc = sp_ftmpl_parse(conf.destination, strlen(conf.destination), &st->dest, &off, &err);
    }
    sp_opt_free_conf(txmeta_opts, &conf);
    return rc;
}

static void txmeta_reset(struct txmeta_state *st)
{
    for (int i = 0; i < st->ntables; i++) {
        free(st->tables[i].name);
    }
    st->ntables = 0;
    st->total = 0;
    st->open = false;
}

static uint64_t txmeta_count_table(struct txmeta_state *st, const struct sp_event *ev)
{
    char name[300];
    if (ev->rel != NULL) {
        snprintf(name, sizeof(name), "%s.%s", ev->rel->schema, ev->rel->table);
    } else {
        snprintf(name, sizeof(name), "%s", ev->msg_prefix != NULL ? ev->msg_prefix : "");
    }
    for (int i = 0; i < st->ntables; i++) {
        if (strcmp(st->tables[i].name, name) == 0) {
            return ++st->tables[i].count;
        }
    }
    if (st->ntables == st->cap) {
        st->cap = st->cap == 0 ? 8 : st->cap * 2;
        st->tables = sp_xrealloc(st->tables, sizeof(*st->tables) * (size_t)st->cap);
    }
    st->tables[st->ntables].name = sp_xstrdup(name);
    st->tables[st->ntables].count = 1;
    st->ntables++;
    return 1;
}

/* A BEGIN or END event: payload, destination, key and id set; source fields copied. */
static int txmeta_boundary(struct txmeta_state *st, bool end, struct sp_event_list *out,
                           struct sp_err *err)
{
    struct sp_event *ev = sp_event_new(SP_OP_MESSAGE, 256);
    ev->msg_transactional = true;
    ev->commit_lsn = st->commit_lsn;
    ev->lsn = st->commit_lsn;
    ev->xid = st->xid;
    ev->commit_time_us = st->commit_time_us;
    ev->source_name = st->source_name;
    ev->db = st->db;
    ev->seq = end ? UINT32_MAX : 0;
    int64_t us = st->commit_time_us;
    int64_t ms = us >= 0 ? us / 1000 : -((-us + 999) / 1000);
    struct sp_buf *b = &st->buf;
    sp_buf_reset(b);
    sp_buf_printf(b, "{\"status\":\"%s\",\"id\":", end ? "END" : "BEGIN");
    sp_buf_put_json_str(b, st->id, strlen(st->id));
    sp_buf_puts(b, ",\"ts_ms\":");
    sp_buf_put_i64(b, ms);
    if (!end) {
        sp_buf_puts(b, ",\"event_count\":null,\"data_collections\":null}");
    } else {
        sp_buf_puts(b, ",\"event_count\":");
        sp_buf_put_u64(b, st->total);
        sp_buf_puts(b, ",\"data_collections\":[");
        for (int i = 0; i < st->ntables; i++) {
            sp_buf_puts(b, i > 0 ? ",{\"data_collection\":" : "{\"data_collection\":");
            sp_buf_put_json_str(b, st->tables[i].name, strlen(st->tables[i].name));
            sp_buf_puts(b, ",\"event_count\":");
            sp_buf_put_u64(b, st->tables[i].count);
            sp_buf_putc(b, '}');
        }
        sp_buf_puts(b, "]}");
    }
    ev->payload = sp_arena_strndup(&ev->arena, b->data, b->len);
    ev->payload_len = (uint32_t)b->len;
    ev->key_override = sp_arena_strndup(&ev->arena, st->id, strlen(st->id));
    ev->key_override_len = (uint32_t)strlen(st->id);
    char id[64];
    int n = snprintf(id, sizeof(id), "%s:%s", st->id, end ? "END" : "BEGIN");
    ev->id_override = sp_arena_strndup(&ev->arena, id, (size_t)n);
    ev->event_type = end ? "END" : "BEGIN";
    int rc = sp_ftmpl_expand_arena(st->dest, ev, &ev->dest, NULL, err);
    if (rc != 0) {
        sp_event_free(ev);
        return rc;
    }
    sp_event_list_push(out, ev);
    return 0;
}

static int txmeta_apply(struct sp_flow *fl, const struct sp_event *ev, struct sp_event_list *out,
                        struct sp_err *err)
{
    struct txmeta_state *st = fl->state;
    if (ev->commit_lsn == 0 || (ev->op == SP_OP_MESSAGE && !ev->msg_transactional)) {
        return SP_FLOW_PASS; /* no transaction (a non-transactional message) */
    }
    bool first = !st->open || st->commit_lsn != ev->commit_lsn;
    if (first) {
        txmeta_reset(st);
        st->open = true;
        st->commit_lsn = ev->commit_lsn;
        st->xid = ev->xid;
        st->commit_time_us = ev->commit_time_us;
        st->source_name = ev->source_name;
        st->db = ev->db;
        snprintf(st->id, sizeof(st->id), "%u:%llu", ev->xid, (unsigned long long)ev->commit_lsn);
        int rc = txmeta_boundary(st, false, out, err);
        if (rc != 0) {
            st->open = false;
            return rc;
        }
    }
    struct sp_event *cp = sp_flow_copy(ev);
    cp->tx_total_order = ++st->total;
    cp->tx_collection_order = txmeta_count_table(st, ev);
    cp->tx_id = sp_arena_strndup(&cp->arena, st->id, strlen(st->id));
    sp_event_list_push(out, cp);
    return SP_FLOW_EMIT;
}

static int txmeta_commit(struct sp_flow *fl, const struct sp_event *commit,
                         struct sp_event_list *out, struct sp_err *err)
{
    struct txmeta_state *st = fl->state;
    if (!st->open || st->commit_lsn != commit->commit_lsn) {
        txmeta_reset(st);
        return 0; /* nothing of this transaction reached the flow */
    }
    if (commit->commit_time_us != 0) {
        st->commit_time_us = commit->commit_time_us;
    }
    int rc = txmeta_boundary(st, true, out, err);
    txmeta_reset(st);
    return rc;
}

static void txmeta_free(struct sp_flow *fl)
{
    struct txmeta_state *st = fl->state;
    if (st == NULL) {
        return;
    }
    txmeta_reset(st);
    free(st->tables);
    sp_ftmpl_free(st->dest);
    sp_buf_fini(&st->buf);
    free(st);
    fl->state = NULL;
}

const struct sp_flow_ops sp_flow_transaction = {
    .name = "transaction",
    .summary = "transaction metadata: a transaction block on every event, BEGIN and END events",
    .usage = "a mapping (docs/flow-transaction-metadata.md), e.g. `{destination: "
             "\"orders.transaction\"}`, or `{}`",
    .opts = txmeta_opts,
    .compile = txmeta_compile,
    .apply = txmeta_apply,
    .commit = txmeta_commit,
    .free = txmeta_free,
};
