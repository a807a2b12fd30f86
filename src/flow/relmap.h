/*
 * Derived relations for flows that change a table's columns (select, mask):
 * per source relation version, the relation events leave the flow with,
 * which source column each of its columns comes from and the flow's rule
 * for it. Built on first sight of a relation version, cached by the flow.
 *
 * The cache holds a reference on each source relation it has seen (so a
 * pointer cannot be reused by another relation while cached) and drops it
 * when a newer version of the same table arrives. Pipeline thread only.
 */
#ifndef SIPHON_FLOW_RELMAP_H
#define SIPHON_FLOW_RELMAP_H

#include "core/event.h"

struct sp_relmap_entry {
    struct sp_relation *src; /* reference held */
    uint32_t version;
    struct sp_relation *rel; /* derived, reference held; NULL: the table passes unchanged */
    int *map;                /* derived column i comes from source column map[i] */
    const void **rules;      /* per derived column: the flow's rule, or NULL */
};

struct sp_relmap {
    struct sp_relmap_entry *e;
    int n;
};

/* Fill out->rel/map/rules for src (leave rel NULL to pass events unchanged). */
typedef void (*sp_relmap_build_fn)(void *ctx, const struct sp_relation *src,
                                   struct sp_relmap_entry *out);

struct sp_relmap_entry *sp_relmap_get(struct sp_relmap *m, struct sp_relation *src,
                                      sp_relmap_build_fn build, void *ctx);
void sp_relmap_free(struct sp_relmap *m);
/* A new relation (refs 1) named like src with room for ncols columns (zeroed). */
struct sp_relation *sp_relmap_new_rel(const struct sp_relation *src, int ncols);
/* A copy of ev with en's relation and its tuples rearranged by en->map. */
struct sp_event *sp_relmap_apply(const struct sp_relmap_entry *en, const struct sp_event *ev);

/* ---- per-table rules, keyed by table name in YAML ("orders", "public.orders", "*") ---- */

struct sp_table_rule {
    char *schema; /* NULL with table NULL: every table */
    char *table;
    void *rule;
};

/* The rule for rel: an exact table match first, then "*"; NULL if none. */
void *sp_table_rule_find(const struct sp_table_rule *rules, int n, const struct sp_relation *rel);

struct sp_node;
struct sp_flow_cctx;
/* Compile one table's value into a rule (heap), or report to cc->d and return NULL. */
typedef void *(*sp_table_rule_fn)(void *ctx, struct sp_node *value, const char *table);
/*
 * A mapping of table names to per-table values: keys parsed like `tables:`
 * entries ("*" for every table), values compiled by fn. Returns 0, or
 * SP_EINVAL with diagnostics. *rules is heap (free with sp_table_rules_free).
 */
int sp_table_rules_compile(struct sp_node *node, const struct sp_flow_cctx *cc, const char *flow,
                           const char *example, sp_table_rule_fn fn, void *ctx,
                           struct sp_table_rule **rules, int *n);
/* Frees the names and the array; each rule with free_rule (may be NULL). */
void sp_table_rules_free(struct sp_table_rule *rules, int n, void (*free_rule)(void *));

#endif
