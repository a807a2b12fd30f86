// SPDX-License-Identifier: Apache-2.0
/*
 * Derived relations and per-table rules (flow/relmap.h), shared by the
 * select and mask flows.
 */
#include "flow/relmap.h"

#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/diag.h"
#include "config/yaml.h"
#include "flow/flow.h"
#include "util/mem.h"

static void relmap_entry_fini(struct sp_relmap_entry *en)
{
    sp_relation_unref(en->src);
    sp_relation_unref(en->rel);
    free(en->map);
    free(en->rules);
    memset(en, 0, sizeof(*en));
}

struct sp_relmap_entry *sp_relmap_get(struct sp_relmap *m, struct sp_relation *src,
                                      sp_relmap_build_fn build, void *ctx)
{
    for (int i = 0; i < m->n; i++) {
        if (m->e[i].src == src && m->e[i].version == src->version) {
            return &m->e[i];
        }
    }
    /* a newer version of a table replaces the older one's entry */
    struct sp_relmap_entry *en = NULL;
    for (int i = 0; i < m->n && en == NULL; i++) {
        if (m->e[i].src->oid == src->oid) {
            relmap_entry_fini(&m->e[i]);
            en = &m->e[i];
        }
    }
    if (en == NULL) {
        m->e = sp_xrealloc(m->e, sizeof(*m->e) * (size_t)(m->n + 1));
        en = &m->e[m->n++];
        memset(en, 0, sizeof(*en));
    }
    en->src = sp_relation_ref(src);
    en->version = src->version;
    build(ctx, src, en);
    return en;
}

void sp_relmap_free(struct sp_relmap *m)
{
    for (int i = 0; i < m->n; i++) {
        relmap_entry_fini(&m->e[i]);
    }
    free(m->e);
    m->e = NULL;
    m->n = 0;
}

struct sp_relation *sp_relmap_new_rel(const struct sp_relation *src, int ncols)
{
    struct sp_relation *rel = sp_xcalloc(1, sizeof(*rel));
    rel->oid = src->oid;
    rel->version = src->version;
    rel->schema = sp_xstrdup(src->schema);
    rel->table = sp_xstrdup(src->table);
    rel->replident = src->replident;
    rel->ncols = ncols;
    rel->cols = sp_xcalloc((size_t)(ncols > 0 ? ncols : 1), sizeof(*rel->cols));
    rel->refs = 1;
    return rel;
}

static struct sp_tuple *relmap_tuple(struct sp_event *cp, const struct sp_relmap_entry *en,
                                     const struct sp_tuple *src)
{
    if (src == NULL) {
        return NULL;
    }
    struct sp_tuple *t = sp_event_tuple(cp, en->rel->ncols);
    for (int i = 0; i < en->rel->ncols; i++) {
        int s = en->map[i];
        if (s < src->ncols) {
            t->cols[i] = src->cols[s];
        }
    }
    return t;
}

struct sp_event *sp_relmap_apply(const struct sp_relmap_entry *en, const struct sp_event *ev)
{
    struct sp_event *cp = sp_flow_copy(ev);
    sp_relation_unref(cp->rel);
    cp->rel = sp_relation_ref(en->rel);
    cp->before = relmap_tuple(cp, en, ev->before);
    cp->after = relmap_tuple(cp, en, ev->after);
    return cp;
}

void *sp_table_rule_find(const struct sp_table_rule *rules, int n, const struct sp_relation *rel)
{
    void *any = NULL;
    for (int i = 0; i < n; i++) {
        if (rules[i].table == NULL) {
            any = any != NULL ? any : rules[i].rule;
        } else if (strcmp(rules[i].table, rel->table) == 0 &&
                   strcmp(rules[i].schema, rel->schema) == 0) {
            return rules[i].rule;
        }
    }
    return any;
}

int sp_table_rules_compile(struct sp_node *node, const struct sp_flow_cctx *cc, const char *flow,
                           const char *example, sp_table_rule_fn fn, void *ctx,
                           struct sp_table_rule **rules, int *n)
{
    *rules = NULL;
    *n = 0;
    if (node == NULL || node->kind != SP_NODE_MAP || node->n == 0) {
        const struct sp_loc *loc = node != NULL ? &node->loc : NULL;
        struct sp_diag_item *it =
            sp_diag_error(cc->d, loc, node != NULL ? node->span : 0,
                          "%s: flow \"%s\" takes a mapping of tables to their settings, not %s",
                          cc->what, flow, node != NULL ? sp_node_kind_name(node) : "nothing");
        sp_diag_hint(it, "e.g. %s", example);
        return SP_EINVAL;
    }
    int rc = 0;
    *rules = sp_xcalloc((size_t)node->n, sizeof(**rules));
    for (int i = 0; i < node->n; i++) {
        struct sp_node *key = node->pairs[i].key;
        struct sp_table_rule *r = &(*rules)[*n];
        if (strcmp(key->str, "*") != 0) {
            struct sp_err err;
            sp_err_clear(&err);
            if (sp_cfg_parse_table(key->str, &r->schema, &r->table, &err) != 0) {
                struct sp_diag_item *it = sp_diag_error(
                    cc->d, &key->loc, key->span, "%s: flow \"%s\": %s", cc->what, flow, err.msg);
                sp_diag_hint(it, "name a table as in \"tables\" (orders, public.orders), or "
                                 "\"*\" for every table");
                rc = SP_EINVAL;
                continue;
            }
        }
        r->rule = fn(ctx, node->pairs[i].value, key->str);
        if (r->rule == NULL) {
            free(r->schema);
            free(r->table);
            r->schema = r->table = NULL;
            rc = SP_EINVAL;
            continue;
        }
        (*n)++;
    }
    return rc;
}

void sp_table_rules_free(struct sp_table_rule *rules, int n, void (*free_rule)(void *))
{
    for (int i = 0; i < n; i++) {
        free(rules[i].schema);
        free(rules[i].table);
        if (free_rule != NULL) {
            free_rule(rules[i].rule);
        }
    }
    free(rules);
}
