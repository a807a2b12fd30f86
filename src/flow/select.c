// SPDX-License-Identifier: Apache-2.0
/*
 * Flow "select": per table, keep only some columns (include) or drop some
 * (exclude). Key columns (the replica identity) always stay, as in
 * Debezium's column.include.list, so keys and partitioning keep working.
 *
 *   - select:
 *       public.orders: {include: [id, status, total]}
 *       public.customers: {exclude: [ssn]}
 *       "*": {exclude: [internal_note]}
 *
 * Events of tables without a rule pass unchanged. A listed column the table
 * does not have is reported once per table version, as a warning.
 */
#include <stdlib.h>
#include <string.h>

#include "config/diag.h"
#include "config/schema.h"
#include "config/yaml.h"
#include "flow/flow.h"
#include "flow/relmap.h"
#include "telemetry/log.h"
#include "util/mem.h"

struct select_rule {
    struct sp_strlist include;
    struct sp_strlist exclude;
};

static const struct sp_opt select_rule_opts[] = {
    SP_OPT_STRLIST("include", struct select_rule, include, 0,
                   "the columns to keep (key columns are always kept)"),
    SP_OPT_STRLIST("exclude", struct select_rule, exclude, 0,
                   "the columns to drop (key columns cannot be dropped)"),
    SP_OPT_END,
};

struct select_state {
    struct sp_table_rule *rules;
    int nrules;
    struct sp_relmap cache;
};

static void select_rule_free(void *p)
{
    struct select_rule *r = p;
    if (r != NULL) {
        sp_opt_free_conf(select_rule_opts, r);
        free(r);
    }
}

static void *select_rule_compile(void *ctx, struct sp_node *value, const char *table)
{
    const struct sp_flow_cctx *cc = ctx;
    struct select_rule *r = sp_xcalloc(1, sizeof(*r));
    char *what = sp_xasprintf("flow \"select\", table \"%s\"", table);
    int errs = sp_flow_opts(cc, what, select_rule_opts, value, r);
    free(what);
    if (errs > 0) {
        select_rule_free(r);
        return NULL;
    }
    if ((r->include.n > 0) == (r->exclude.n > 0)) {
        struct sp_diag_item *it = sp_diag_error(
            cc->d, &value->loc, value->span,
            "%s: flow \"select\": table \"%s\" needs either \"include\" or \"exclude\"", cc->what,
            table);
        sp_diag_hint(it, "e.g. {include: [id, status]} or {exclude: [ssn]}");
        select_rule_free(r);
        return NULL;
    }
    return r;
}

static int select_compile(struct sp_flow *fl, struct sp_node *node, const struct sp_flow_cctx *cc)
{
    struct select_state *st = sp_xcalloc(1, sizeof(*st));
    fl->state = st;
    return sp_table_rules_compile(node, cc, "select",
                                  "select: {public.orders: {include: [id, status]}}",
                                  select_rule_compile, (void *)cc, &st->rules, &st->nrules);
}

static bool select_listed(const struct sp_strlist *l, const char *name)
{
    for (int i = 0; i < l->n; i++) {
        if (strcmp(l->items[i], name) == 0) {
            return true;
        }
    }
    return false;
}

static void select_build(void *ctx, const struct sp_relation *src, struct sp_relmap_entry *en)
{
    struct select_state *st = ctx;
    const struct select_rule *r = sp_table_rule_find(st->rules, st->nrules, src);
    if (r == NULL) {
        return;
    }
    const struct sp_strlist *list = r->include.n > 0 ? &r->include : &r->exclude;
    for (int i = 0; i < list->n; i++) {
        int c = -1;
        for (int k = 0; k < src->ncols && c < 0; k++) {
            c = strcmp(src->cols[k].name, list->items[i]) == 0 ? k : -1;
        }
        if (c < 0) {
            sp_log_warn(&sp_log_main, "flow select: table \"%s.%s\" has no column \"%s\"",
                        src->schema, src->table, list->items[i]);
        } else if (r->exclude.n > 0 && src->cols[c].key) {
            sp_log_warn(&sp_log_main,
                        "flow select: column \"%s\" of table \"%s.%s\" is a key column and is "
                        "kept",
                        list->items[i], src->schema, src->table);
        }
    }
    int *keep = sp_xcalloc((size_t)(src->ncols > 0 ? src->ncols : 1), sizeof(int));
    int n = 0;
    for (int i = 0; i < src->ncols; i++) {
        const char *name = src->cols[i].name;
        bool in =
            r->include.n > 0 ? select_listed(&r->include, name) : !select_listed(&r->exclude, name);
        if (in || src->cols[i].key) {
            keep[n++] = i;
        }
    }
    if (n == src->ncols) {
        free(keep);
        return;
    }
    en->rel = sp_relmap_new_rel(src, n);
    for (int i = 0; i < n; i++) {
        const struct sp_column *c = &src->cols[keep[i]];
        en->rel->cols[i] = *c;
        en->rel->cols[i].name = sp_xstrdup(c->name);
        en->rel->cols[i].json_name = NULL; /* owned by src; the format falls back to name */
        en->rel->cols[i].json_name_len = 0;
    }
    en->map = keep;
}

static int select_apply(struct sp_flow *fl, const struct sp_event *ev, struct sp_event_list *out,
                        struct sp_err *err)
{
    (void)err;
    struct select_state *st = fl->state;
    if (ev->rel == NULL) {
        return SP_FLOW_PASS;
    }
    const struct sp_relmap_entry *en = sp_relmap_get(&st->cache, ev->rel, select_build, st);
    if (en->rel == NULL) {
        return SP_FLOW_PASS;
    }
    sp_event_list_push(out, sp_relmap_apply(en, ev));
    return SP_FLOW_EMIT;
}

static void select_free(struct sp_flow *fl)
{
    struct select_state *st = fl->state;
    if (st == NULL) {
        return;
    }
    sp_table_rules_free(st->rules, st->nrules, select_rule_free);
    sp_relmap_free(&st->cache);
    free(st);
    fl->state = NULL;
}

const struct sp_flow_ops sp_flow_select = {
    .name = "select",
    .usage = "a mapping of tables (`orders`, `public.orders`, `\"*\"`) to `{include: [...]}` or "
             "`{exclude: [...]}` (docs/flow-select-mask.md)",
    .opts = select_rule_opts,
    .summary = "keep (include) or drop (exclude) columns per table",
    .compile = select_compile,
    .apply = select_apply,
    .free = select_free,
};
