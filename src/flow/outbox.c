// SPDX-License-Identifier: Apache-2.0
/*
 * Flow "outbox": the transactional outbox pattern (docs/outbox.md). An
 * application writes its business event in the same transaction as its
 * business rows; this flow turns what it wrote into the event siphon
 * delivers (ev->payload and friends), so the event exists iff the
 * transaction committed. Four kinds:
 *
 *   fes_generic  FES PostgresWalToGenericNakadiEvent: the JSON in
 *                payload_column of each inserted row is the event.
 *   fes_data     FES PostgresWalToNakadiDataEvent: columns data_type,
 *                data_op, metadata, data make a Nakadi data change event.
 *   debezium     Debezium's outbox event router: id, aggregatetype,
 *                aggregateid, payload, type; destination
 *                outbox.event.{aggregatetype}, key aggregateid, event id id.
 *   message      pg_logical_emit_message(true, prefix, payload): the
 *                message is the event, routed by its prefix. No table.
 *
 * Row kinds read inserts of the outbox table (`table`, or every table of the
 * stream); its updates, deletes and snapshot reads are dropped and counted,
 * so a cleanup job deleting old rows sends nothing. Events of other tables
 * pass unchanged. siphon never writes to the source, so it never deletes
 * outbox rows either.
 */
#include <stdint.h>

#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/diag.h"
#include "config/schema.h"
#include "config/yaml.h"
#include "flow/flow.h"
#include "flow/value.h"
#include "source/pg/types.h"
#include "telemetry/log.h"
#include "util/buf.h"
#include "util/mem.h"

enum outbox_kind {
    OUTBOX_FES_GENERIC,
    OUTBOX_FES_DATA,
    OUTBOX_DEBEZIUM,
    OUTBOX_MESSAGE,
};

static const char *const outbox_kind_names[] = {"fes_generic", "fes_data", "debezium", "message",
                                                NULL};

struct outbox_conf {
    int kind;
    char *table;
    char *payload_column;
    char *id_column;
    char *aggregate_type_column;
    char *aggregate_id_column;
    char *type_column;
    char *destination;
    char *key;
    struct sp_strlist prefixes;
};

static const struct sp_opt outbox_opts[] = {
    SP_OPT_ENUM("kind", struct outbox_conf, kind, NULL, outbox_kind_names,
                "fes_generic, fes_data, debezium or message (docs/outbox.md says which to choose)"),
    SP_OPT_STR("table", struct outbox_conf, table, NULL, 0,
               "row kinds: the outbox table; default: every table of the stream"),
    SP_OPT_STR("payload_column", struct outbox_conf, payload_column, "payload", 0,
               "fes_generic, debezium: the column holding the event's JSON"),
    SP_OPT_STR("id_column", struct outbox_conf, id_column, NULL, 0,
               "the column whose value is the event id (debezium: default \"id\"; fes kinds: "
               "none, the event id is the WAL position)"),
    SP_OPT_STR("aggregate_type_column", struct outbox_conf, aggregate_type_column, "aggregatetype",
               0, "debezium: the column naming the destination"),
    SP_OPT_STR("aggregate_id_column", struct outbox_conf, aggregate_id_column, "aggregateid", 0,
               "debezium: the column that is the record key"),
    SP_OPT_STR("type_column", struct outbox_conf, type_column, "type", 0,
               "debezium: the column that is the event type"),
    SP_OPT_STR("destination", struct outbox_conf, destination, NULL, 0,
               "destination template; default outbox.event.{after.aggregatetype} (debezium), "
               "{message.prefix} (message), the sink's own (fes kinds)"),
    SP_OPT_STR("key", struct outbox_conf, key, NULL, 0,
               "key template; default the aggregate id (debezium), none otherwise"),
    SP_OPT_STRLIST("prefixes", struct outbox_conf, prefixes, 0,
                   "message: the message prefixes that are outbox events; default every prefix"),
    SP_OPT_END,
};

struct outbox_state {
    enum outbox_kind kind;
    char *schema; /* NULL: every table of the stream */
    char *table;
    char *payload_col;
    char *id_col;
    char *agg_type_col;
    char *agg_id_col;
    char *type_col;
    struct sp_strlist prefixes;
    struct sp_ftmpl *dest;
    struct sp_ftmpl *key;
    uint64_t ignored; /* updates, deletes, reads of outbox rows */
    struct sp_buf buf;
};

static void outbox_state_free(struct outbox_state *st)
{
    free(st->schema);
    free(st->table);
    free(st->payload_col);
    free(st->id_col);
    free(st->agg_type_col);
    free(st->agg_id_col);
    free(st->type_col);
    for (int i = 0; i < st->prefixes.n; i++) {
        free(st->prefixes.items[i]);
    }
    free(st->prefixes.items);
    sp_ftmpl_free(st->dest);
    sp_ftmpl_free(st->key);
    sp_buf_fini(&st->buf);
    free(st);
}

static char *outbox_take(char **s)
{
    char *v = *s;
    *s = NULL;
    return v;
}

static int outbox_compile_options(struct outbox_state *st, struct sp_node *node,
                                  const struct sp_flow_cctx *cc)
{
    struct outbox_conf conf = {0};
    struct sp_node *kind = sp_node_get(node, "kind");
    int errs = sp_flow_opts(cc, "flow \"outbox\"", outbox_opts, node, &conf);
    if (kind == NULL && errs == 0) {
        struct sp_diag_item *it = sp_diag_error(cc->d, &node->loc, node->span,
                                                "%s: flow \"outbox\" needs a kind", cc->what);
        sp_diag_hint(it, "kind: fes_generic, fes_data, debezium or message (docs/outbox.md)");
        errs++;
    }
    st->kind = (enum outbox_kind)conf.kind;
    if (errs == 0 && conf.table != NULL) {
        struct sp_node *t = sp_node_get(node, "table");
        struct sp_err err;
        sp_err_clear(&err);
        if (st->kind == OUTBOX_MESSAGE) {
            struct sp_diag_item *it =
                sp_diag_error(cc->d, &t->loc, t->span,
                              "%s: flow \"outbox\": kind message reads no table", cc->what);
            sp_diag_hint(it, "remove \"table\"; choose the messages with \"prefixes\"");
            errs++;
        } else if (sp_cfg_parse_table(conf.table, &st->schema, &st->table, &err) != 0) {
            sp_diag_error(cc->d, &t->loc, t->span, "%s: flow \"outbox\": %s", cc->what, err.msg);
            errs++;
        }
    }
    if (errs == 0 && conf.prefixes.n > 0 && st->kind != OUTBOX_MESSAGE) {
        struct sp_node *p = sp_node_get(node, "prefixes");
        sp_diag_error(cc->d, &p->loc, p->span,
                      "%s: flow \"outbox\": prefixes are only used with kind message", cc->what);
        errs++;
    }
    st->payload_col = outbox_take(&conf.payload_column);
    st->id_col = outbox_take(&conf.id_column);
    if (st->id_col == NULL && st->kind == OUTBOX_DEBEZIUM) {
        st->id_col = sp_xstrdup("id");
    }
    st->agg_type_col = outbox_take(&conf.aggregate_type_column);
    st->agg_id_col = outbox_take(&conf.aggregate_id_column);
    st->type_col = outbox_take(&conf.type_column);
    st->prefixes = conf.prefixes;
    conf.prefixes.items = NULL;
    conf.prefixes.n = 0;
    sp_opt_free_conf(outbox_opts, &conf);
    return errs > 0 ? SP_EINVAL : 0;
}

static int outbox_compile(struct sp_flow *fl, struct sp_node *node, const struct sp_flow_cctx *cc)
{
    struct outbox_state *st = sp_xcalloc(1, sizeof(*st));
    sp_buf_init(&st->buf);
    fl->state = st;
    if (node == NULL || node->kind != SP_NODE_MAP) {
        struct sp_diag_item *it =
            sp_diag_error(cc->d, node != NULL ? &node->loc : NULL, node != NULL ? node->span : 0,
                          "%s: flow \"outbox\" takes a mapping, not %s", cc->what,
                          node != NULL ? sp_node_kind_name(node) : "nothing");
        sp_diag_hint(it, "e.g. outbox: {kind: debezium, table: public.outbox}");
        return SP_EINVAL;
    }
    if (outbox_compile_options(st, node, cc) != 0) {
        return SP_EINVAL;
    }
    int rc = sp_flow_template(cc, "flow \"outbox\"", node, "destination", &st->dest);
    rc |= sp_flow_template(cc, "flow \"outbox\"", node, "key", &st->key);
    if (rc != 0) {
        return SP_EINVAL;
    }
    /* defaults: Debezium's route.topic.replacement, the message's prefix */
    struct sp_err err;
    size_t off;
    sp_err_clear(&err);
    if (st->dest == NULL && st->kind == OUTBOX_DEBEZIUM) {
        char *t = sp_xasprintf("outbox.event.{after['%s']}", st->agg_type_col);
        rc = sp_ftmpl_parse(t, strlen(t), &st->dest, &off, &err);
        free(t);
    } else if (st->dest == NULL && st->kind == OUTBOX_MESSAGE) {
        rc = sp_ftmpl_parse("{message.prefix}", 16, &st->dest, &off, &err);
    }
    if (rc == 0 && st->key == NULL && st->kind == OUTBOX_DEBEZIUM) {
        char *t = sp_xasprintf("{after['%s']}", st->agg_id_col);
        rc = sp_ftmpl_parse(t, strlen(t), &st->key, &off, &err);
        free(t);
    }
    if (rc != 0) {
        struct sp_diag_item *it = sp_diag_error(
            cc->d, &node->loc, node->span, "%s: flow \"outbox\": a column name cannot be used: %s",
            cc->what, err.msg);
        sp_diag_hint(it, "column names may not contain quotes or braces");
    }
    return rc;
}

/* ---- applying ---- */

/* The datum and column of name in ev's new row; an event error if the table has no such column. */
static int outbox_col(const struct sp_event *ev, const char *name, const struct sp_datum **d,
                      const struct sp_column **col, struct sp_err *err)
{
    int i = sp_flow_col_find(ev->rel, name);
    if (i < 0) {
        sp_err_set(err, SP_EINVAL, "outbox table \"%s.%s\" has no column \"%s\"", ev->rel->schema,
                   ev->rel->table, name);
        sp_err_hint(err, "add the column, or name the right one in the outbox flow's options");
        return SP_EINVAL;
    }
    *col = &ev->rel->cols[i];
    *d = i < ev->after->ncols ? &ev->after->cols[i] : NULL;
    return 0;
}

/* The column's text, or NULL for SQL NULL. */
static int outbox_text(const struct sp_event *ev, const char *name, const char **s, uint32_t *len,
                       struct sp_err *err)
{
    const struct sp_datum *d;
    const struct sp_column *col;
    if (outbox_col(ev, name, &d, &col, err) != 0) {
        return SP_EINVAL;
    }
    *s = NULL;
    *len = 0;
    if (d != NULL && (d->kind == SP_DATUM_TEXT || d->kind == SP_DATUM_BINARY) && d->data != NULL) {
        *s = d->data;
        *len = d->len;
    }
    return 0;
}

/*
 * Append the JSON value of column name (json, jsonb or text holding JSON),
 * on one line; SQL NULL is null. The error never shows the value.
 */
static int outbox_put_json(const struct sp_event *ev, const char *name, struct sp_buf *out,
                           struct sp_err *err)
{
    const struct sp_datum *d;
    const struct sp_column *col;
    if (outbox_col(ev, name, &d, &col, err) != 0) {
        return SP_EINVAL;
    }
    if (d == NULL || d->kind == SP_DATUM_NULL || d->data == NULL) {
        sp_buf_puts(out, "null");
        return 0;
    }
    if (d->kind != SP_DATUM_TEXT) {
        return sp_err_set(err, SP_EINVAL, "outbox column \"%s\" has no value in the change", name);
    }
    const struct sp_type *t = col->type;
    if (t == NULL || t->kind != SP_TYPE_JSON) {
        t = sp_type_builtin(114); /* json: validate and compact */
    }
    struct sp_err jerr;
    sp_err_clear(&jerr);
    if (sp_pgtext_to_json(t, d->data, d->len, out, &jerr) != 0) {
        return sp_err_set(err, SP_EINVAL,
                          "outbox column \"%s\" of table \"%s.%s\" is not valid JSON", name,
                          ev->rel->schema, ev->rel->table);
    }
    return 0;
}

static void outbox_set_payload(struct outbox_state *st, struct sp_event *cp)
{
    cp->payload =
        sp_arena_strndup(&cp->arena, st->buf.data != NULL ? st->buf.data : "", st->buf.len);
    cp->payload_len = (uint32_t)st->buf.len;
}

static int outbox_fes_data(struct outbox_state *st, const struct sp_event *ev, struct sp_event *cp,
                           struct sp_err *err)
{
    const char *type;
    const char *op;
    uint32_t tlen;
    uint32_t olen;
    if (outbox_text(ev, "data_type", &type, &tlen, err) != 0 ||
        outbox_text(ev, "data_op", &op, &olen, err) != 0) {
        return SP_EINVAL;
    }
    if (type == NULL || tlen == 0) {
        return sp_err_set(err, SP_EINVAL, "outbox column \"data_type\" is empty or null");
    }
    if (op == NULL || olen != 1 || strchr("CUDS", op[0]) == NULL) {
        sp_err_set(err, SP_EINVAL, "outbox column \"data_op\" must be C, U, D or S");
        sp_err_hint(err, "C create, U update, D delete, S snapshot (Nakadi data_op)");
        return SP_EINVAL;
    }
    sp_buf_puts(&st->buf, "{\"data_type\":");
    sp_buf_put_json_str(&st->buf, type, tlen);
    sp_buf_printf(&st->buf, ",\"data_op\":\"%c\",\"metadata\":", op[0]);
    size_t mark = st->buf.len;
    if (outbox_put_json(ev, "metadata", &st->buf, err) != 0) {
        return SP_EINVAL;
    }
    if (st->buf.len - mark == 4 && memcmp(st->buf.data + mark, "null", 4) == 0) {
        st->buf.len = mark;
        sp_buf_puts(&st->buf, "{}");
    } else if (st->buf.data[mark] != '{') {
        return sp_err_set(err, SP_EINVAL, "outbox column \"metadata\" must be a JSON object");
    }
    sp_buf_puts(&st->buf, ",\"data\":");
    if (outbox_put_json(ev, "data", &st->buf, err) != 0) {
        return SP_EINVAL;
    }
    sp_buf_putc(&st->buf, '}');
    cp->event_type = sp_arena_strndup(&cp->arena, type, tlen);
    return 0;
}

static int outbox_row(struct outbox_state *st, const struct sp_event *ev, struct sp_event *cp,
                      struct sp_err *err)
{
    int rc = 0;
    switch (st->kind) {
    case OUTBOX_FES_GENERIC:
        rc = outbox_put_json(ev, st->payload_col, &st->buf, err);
        break;
    case OUTBOX_FES_DATA:
        rc = outbox_fes_data(st, ev, cp, err);
        break;
    case OUTBOX_DEBEZIUM:
    default: {
        const char *type;
        uint32_t tlen;
        rc = outbox_put_json(ev, st->payload_col, &st->buf, err);
        if (rc == 0) {
            rc = outbox_text(ev, st->type_col, &type, &tlen, err);
        }
        if (rc == 0 && type != NULL) {
            cp->event_type = sp_arena_strndup(&cp->arena, type, tlen);
        }
        break;
    }
    }
    if (rc == 0 && st->id_col != NULL) {
        const char *id;
        uint32_t ilen;
        rc = outbox_text(ev, st->id_col, &id, &ilen, err);
        if (rc == 0 && (id == NULL || ilen == 0)) {
            rc = sp_err_set(err, SP_EINVAL, "outbox id column \"%s\" is null", st->id_col);
        }
        if (rc == 0) {
            cp->id_override = sp_arena_strndup(&cp->arena, id, ilen);
        }
    }
    return rc;
}

static int outbox_message(struct outbox_state *st, const struct sp_event *ev, struct sp_event *cp,
                          struct sp_err *err)
{
    if (!ev->msg_transactional) {
        sp_err_set(err, SP_EINVAL,
                   "outbox message with prefix \"%s\" is not transactional: it would be "
                   "delivered even if its transaction rolled back",
                   ev->msg_prefix != NULL ? ev->msg_prefix : "");
        sp_err_hint(err, "emit it with pg_logical_emit_message(true, prefix, payload)");
        return SP_EINVAL;
    }
    struct sp_err jerr;
    sp_err_clear(&jerr);
    const char *content = ev->msg_content != NULL ? ev->msg_content : "";
    if (sp_pgtext_to_json(sp_type_builtin(114), content, ev->msg_content != NULL ? ev->msg_len : 0,
                          &st->buf, &jerr) != 0) {
        return sp_err_set(err, SP_EINVAL, "outbox message with prefix \"%s\" is not valid JSON",
                          ev->msg_prefix != NULL ? ev->msg_prefix : "");
    }
    cp->event_type = ev->msg_prefix;
    return 0;
}

static bool outbox_prefix_wanted(const struct outbox_state *st, const char *prefix)
{
    if (st->prefixes.n == 0) {
        return true;
    }
    for (int i = 0; i < st->prefixes.n; i++) {
        if (prefix != NULL && strcmp(st->prefixes.items[i], prefix) == 0) {
            return true;
        }
    }
    return false;
}

static int outbox_apply(struct sp_flow *fl, const struct sp_event *ev, struct sp_event_list *out,
                        struct sp_err *err)
{
    struct outbox_state *st = fl->state;
    if (st->kind == OUTBOX_MESSAGE) {
        if (ev->op != SP_OP_MESSAGE || !outbox_prefix_wanted(st, ev->msg_prefix)) {
            return SP_FLOW_PASS;
        }
    } else {
        if (ev->rel == NULL ||
            (st->table != NULL && !sp_flow_table_is(ev, st->schema, st->table))) {
            return SP_FLOW_PASS;
        }
        if (ev->op != SP_OP_INSERT || ev->after == NULL) {
            st->ignored++;
            sp_log_debug(&sp_log_main,
                         "flow outbox: ignored a '%c' of outbox table \"%s.%s\" (%llu so far)",
                         sp_op_char(ev->op), ev->rel->schema, ev->rel->table,
                         (unsigned long long)st->ignored);
            return SP_FLOW_DROP;
        }
    }
    struct sp_event *cp = sp_flow_copy(ev);
    sp_buf_reset(&st->buf);
    int rc =
        st->kind == OUTBOX_MESSAGE ? outbox_message(st, ev, cp, err) : outbox_row(st, ev, cp, err);
    if (rc == 0) {
        outbox_set_payload(st, cp);
        if (st->dest != NULL) {
            rc = sp_ftmpl_expand_arena(st->dest, cp, &cp->dest, NULL, err);
        }
    }
    if (rc == 0 && st->key != NULL) {
        rc = sp_ftmpl_expand_arena(st->key, cp, &cp->key_override, &cp->key_override_len, err);
    }
    if (rc != 0) {
        sp_event_free(cp);
        return rc;
    }
    sp_event_list_push(out, cp);
    return SP_FLOW_EMIT;
}

static void outbox_free(struct sp_flow *fl)
{
    if (fl->state != NULL) {
        outbox_state_free(fl->state);
        fl->state = NULL;
    }
}

const struct sp_flow_ops sp_flow_outbox = {
    .name = "outbox",
    .usage = "a mapping (docs/flow-outbox.md), e.g. `{kind: debezium, table: public.outbox}`",
    .opts = outbox_opts,
    .summary = "transactional outbox: rows of an outbox table or logical decoding messages "
               "become the business events delivered",
    .compile = outbox_compile,
    .apply = outbox_apply,
    .free = outbox_free,
};
