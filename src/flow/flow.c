// SPDX-License-Identifier: Apache-2.0
/*
 * The flow chain (flow/flow.h): compiling a stream's `flows:` list, applying
 * it to an event with copy-on-change, and the helpers flow types share
 * (event copies, locations inside YAML scalars, option tables).
 *
 * What this file does not do: any particular flow (one file each), or
 * formatting and delivery (core/pipeline.c calls sp_flows_apply).
 */
#include "flow/flow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/diag.h"
#include "config/schema.h"
#include "config/yaml.h"
#include "util/mem.h"

/* ---- helpers ---- */

struct sp_event *sp_flow_copy(const struct sp_event *ev)
{
    struct sp_event *cp = sp_event_new(ev->op, 256);
    struct sp_arena arena = cp->arena;
    *cp = *ev;
    cp->arena = arena;
    cp->next = NULL;
    cp->rel = sp_relation_ref(ev->rel);
    const struct sp_tuple *src[2] = {ev->before, ev->after};
    struct sp_tuple **dst[2] = {&cp->before, &cp->after};
    for (int i = 0; i < 2; i++) {
        if (src[i] == NULL) {
            continue;
        }
        struct sp_tuple *t = sp_event_tuple(cp, src[i]->ncols);
        if (src[i]->ncols > 0) {
            memcpy(t->cols, src[i]->cols, sizeof(struct sp_datum) * (size_t)src[i]->ncols);
        }
        *dst[i] = t;
    }
    return cp;
}

bool sp_flow_table_is(const struct sp_event *ev, const char *schema, const char *table)
{
    if (ev->rel == NULL) {
        return false;
    }
    return (schema == NULL || strcmp(ev->rel->schema, schema) == 0) &&
           (table == NULL || strcmp(ev->rel->table, table) == 0);
}

void sp_flow_scalar_loc(const struct sp_flow_cctx *cc, const struct sp_node *node, size_t off,
                        struct sp_loc *out)
{
    *out = node->loc;
    if (cc->text == NULL || node->loc.line <= 0 || node->substituted) {
        return;
    }
    const char *t = cc->text;
    const char *e = t + cc->len;
    const char *ls = t;
    for (int line = 1; line < node->loc.line && ls < e; line++) {
        const char *nl = memchr(ls, '\n', (size_t)(e - ls));
        if (nl == NULL) {
            return;
        }
        ls = nl + 1;
    }
    const char *sp = ls + (node->loc.col - 1);
    if (sp >= e) {
        return;
    }
    int line = node->loc.line;
    char q = *sp;
    if (q == '|' || q == '>') {
        /* block scalar: the content starts on the next line, after its indentation */
        const char *nl = memchr(sp, '\n', (size_t)(e - sp));
        if (nl == NULL) {
            return;
        }
        ls = nl + 1;
        line++;
        int indent = 0;
        while (ls + indent < e && ls[indent] == ' ') {
            indent++;
        }
        sp = ls + indent;
        for (size_t c = 0; c < off && sp < e; c++) {
            if (*sp == '\n') {
                ls = sp + 1;
                line++;
                sp = ls + indent;
            } else {
                sp++;
            }
        }
    } else {
        bool quoted = q == '"' || q == '\'';
        if (quoted) {
            sp++;
        }
        for (size_t c = 0; c < off && sp < e; c++) {
            if (q == '"' && *sp == '\\' && sp + 1 < e) {
                sp += sp[1] == 'u' ? 6 : (sp[1] == 'x' ? 4 : 2);
            } else if (q == '\'' && sp[0] == '\'' && sp + 1 < e && sp[1] == '\'') {
                sp += 2;
            } else if (*sp == '\n') {
                ls = sp + 1;
                line++;
                sp = ls;
                while (sp < e && (*sp == ' ' || *sp == '\t')) {
                    sp++;
                }
            } else {
                sp++;
            }
        }
    }
    out->line = line;
    out->col = (int)(sp - ls) + 1;
}

int sp_flow_opts(const struct sp_flow_cctx *cc, const char *label, const struct sp_opt *opts,
                 struct sp_node *node, void *conf)
{
    char *what = sp_xasprintf("%s: %s", cc->what, label);
    struct sp_opt_ctx ctx = {.what = what, .noun = "option", .d = cc->d};
    int n = sp_opt_apply(opts, node, &ctx, conf);
    free(what);
    return n;
}

/* ---- the chain ---- */

static void flows_names(struct sp_buf *b, const char **names, size_t *n)
{
    *n = 0;
    for (size_t i = 0; sp_registry_flows[i] != NULL; i++) {
        names[(*n)++] = sp_registry_flows[i]->name;
        sp_buf_printf(b, "%s%s", i > 0 ? ", " : "", sp_registry_flows[i]->name);
    }
}

static int flows_compile_item(struct sp_flows *fs, struct sp_node *item,
                              const struct sp_flow_cctx *cc)
{
    if (item->kind != SP_NODE_MAP || item->n != 1) {
        struct sp_diag_item *it = sp_diag_error(
            cc->d, &item->loc, item->span,
            "%s: each flow must be a mapping with one key, the flow's name, not %s", cc->what,
            item->kind == SP_NODE_MAP ? "several keys" : sp_node_kind_name(item));
        sp_diag_hint(it, "write e.g. \"- filter: \\\"op == 'u'\\\"\" or \"- mask: {...}\", one "
                         "flow per list item");
        return SP_EINVAL;
    }
    struct sp_node *key = item->pairs[0].key;
    const struct sp_flow_ops *ops = sp_registry_flow(key->str);
    if (ops == NULL) {
        const char *names[32];
        size_t n = 0;
        struct sp_buf b;
        sp_buf_init(&b);
        flows_names(&b, names, &n);
        struct sp_diag_item *it = sp_diag_error(cc->d, &key->loc, key->span,
                                                "%s: unknown flow \"%s\"", cc->what, key->str);
        const char *s = sp_str_suggest(key->str, names, n);
        if (s != NULL) {
            sp_diag_hint(it, "did you mean \"%s\"?", s);
        } else {
            sp_diag_hint(it, "flows: %s", b.data);
        }
        sp_buf_fini(&b);
        return SP_EINVAL;
    }
    struct sp_flow *fl = &fs->items[fs->n++];
    fl->ops = ops;
    fl->index = fs->n - 1;
    int before = cc->d->nerrors;
    int rc = ops->compile(fl, item->pairs[0].value, cc);
    if (rc == 0 && cc->d->nerrors > before) {
        rc = SP_EINVAL;
    }
    return rc;
}

int sp_flows_compile(struct sp_node *node, const struct sp_flow_cctx *cc, struct sp_flows **out)
{
    *out = NULL;
    if (node == NULL || sp_node_is_null(node)) {
        return 0;
    }
    if (node->kind != SP_NODE_SEQ) {
        struct sp_diag_item *it = sp_diag_error(cc->d, &node->loc, node->span,
                                                "%s: \"flows\" must be a list of flows, not %s",
                                                cc->what, sp_node_kind_name(node));
        sp_diag_hint(it, "start each flow with \"- \", e.g. \"- filter: \\\"op == 'u'\\\"\"");
        return SP_EINVAL;
    }
    if (node->n == 0) {
        return 0;
    }
    struct sp_flows *fs = sp_xcalloc(1, sizeof(*fs));
    fs->items = sp_xcalloc((size_t)node->n, sizeof(*fs->items));
    int rc = 0;
    for (int i = 0; i < node->n; i++) {
        if (flows_compile_item(fs, node->items[i], cc) != 0) {
            rc = SP_EINVAL;
        }
    }
    if (rc != 0) {
        sp_flows_free(fs);
        return rc;
    }
    sp_event_list_init(&fs->owned);
    *out = fs;
    return 0;
}

void sp_flows_free(struct sp_flows *fs)
{
    if (fs == NULL) {
        return;
    }
    sp_flows_done(fs);
    for (int i = 0; i < fs->n; i++) {
        if (fs->items[i].ops->free != NULL) {
            fs->items[i].ops->free(&fs->items[i]);
        }
    }
    free(fs->items);
    free(fs->cur);
    free(fs->cur_owned);
    free(fs);
}

static void flows_reserve(struct sp_flows *fs, int n)
{
    if (n <= fs->cap) {
        return;
    }
    int cap = fs->cap == 0 ? 8 : fs->cap;
    while (cap < n) {
        cap *= 2;
    }
    fs->cur = sp_xrealloc(fs->cur, sizeof(struct sp_event *) * (size_t)cap);
    fs->cur_owned = sp_xrealloc(fs->cur_owned, sizeof(*fs->cur_owned) * (size_t)cap);
    fs->cap = cap;
}

/*
 * Events emitted for one input that would share its id (no id_override)
 * get distinct ones when there are several, so sinks that deduplicate by id
 * (NATS Msg-Id) keep them all.
 */
static void flows_fanout_ids(struct sp_event_list *out)
{
    int shared = 0;
    for (struct sp_event *e = out->head; e != NULL; e = e->next) {
        shared += e->id_override == NULL;
    }
    if (shared < 2) {
        return;
    }
    int i = 0;
    for (struct sp_event *e = out->head; e != NULL; e = e->next) {
        if (e->id_override != NULL) {
            continue;
        }
        char id[SP_EVENT_ID_BUFSZ];
        char buf[SP_EVENT_ID_BUFSZ + 16];
        int n = snprintf(buf, sizeof(buf), "%s.%d", sp_event_id(e, id), i++);
        e->id_override = sp_arena_strndup(&e->arena, buf, (size_t)(n > 0 ? n : 0));
    }
}

/* For a dead letter: apply the redacting flows after index `from` to ev. */
static const struct sp_event *flows_redact(struct sp_flows *fs, int from, struct sp_event *ev)
{
    struct sp_event *cur = ev;
    for (int i = from; i < fs->n; i++) {
        struct sp_flow *fl = &fs->items[i];
        if (!fl->ops->redacts) {
            continue;
        }
        struct sp_event_list out;
        struct sp_err err;
        sp_event_list_init(&out);
        sp_err_clear(&err);
        int rc = fl->ops->apply(fl, cur, &out, &err);
        if (rc == SP_FLOW_EMIT && out.head != NULL) {
            struct sp_event *e;
            cur = out.head;
            while ((e = sp_event_list_pop(&out)) != NULL) {
                sp_event_list_push(&fs->owned, e);
            }
        } else {
            sp_event_list_free(&out);
        }
    }
    return cur;
}

int sp_flows_apply(struct sp_flows *fs, struct sp_event *ev, const struct sp_event **failed,
                   struct sp_err *err)
{
    flows_reserve(fs, 1);
    fs->cur[0] = ev;
    fs->cur_owned[0] = false;
    fs->ncur = 1;
    *failed = NULL;
    for (int f = 0; f < fs->n && fs->ncur > 0; f++) {
        struct sp_flow *fl = &fs->items[f];
        int n = fs->ncur;
        int w = 0;
        for (int i = 0; i < n; i++) {
            struct sp_event *e = fs->cur[i];
            struct sp_event_list out;
            sp_event_list_init(&out);
            fl->in++;
            int rc = fl->ops->apply(fl, e, &out, err);
            if (rc < 0) {
                sp_event_list_free(&out);
                sp_err_prefix(err, "flow #%d (%s)", f + 1, fl->ops->name);
                *failed = flows_redact(fs, f, e);
                fs->ncur = 0;
                return rc;
            }
            if (rc == SP_FLOW_PASS) {
                fs->cur[w] = e;
                fs->cur_owned[w] = fs->cur_owned[i];
                w++;
                fl->out++;
                continue;
            }
            if (rc != SP_FLOW_EMIT) {
                continue; /* dropped; an owned copy stays in fs->owned until done */
            }
            flows_fanout_ids(&out);
            /* emitted events take e's place; later ones shift the rest right */
            int extra = (int)out.count - 1;
            if (extra > 0) {
                flows_reserve(fs, fs->ncur + extra);
                memmove(&fs->cur[i + 1 + extra], &fs->cur[i + 1],
                        sizeof(struct sp_event *) * (size_t)(n - i - 1));
                memmove(&fs->cur_owned[i + 1 + extra], &fs->cur_owned[i + 1],
                        sizeof(*fs->cur_owned) * (size_t)(n - i - 1));
                fs->ncur += extra;
                n += extra;
            }
            struct sp_event *x;
            while ((x = sp_event_list_pop(&out)) != NULL) {
                sp_event_list_push(&fs->owned, x);
                fs->cur[w] = x;
                fs->cur_owned[w] = true;
                w++;
                fl->out++;
            }
            i += extra > 0 ? extra : 0; /* extra < 0: nothing emitted, like a drop */
        }
        fs->ncur = w;
    }
    return fs->ncur;
}

int sp_flows_commit(struct sp_flows *fs, const struct sp_event *commit, struct sp_err *err)
{
    fs->ncur = 0;
    for (int f = 0; f < fs->n; f++) {
        struct sp_flow *fl = &fs->items[f];
        if (fl->ops->commit == NULL) {
            continue;
        }
        struct sp_event_list out;
        sp_event_list_init(&out);
        int rc = fl->ops->commit(fl, commit, &out, err);
        if (rc < 0) {
            sp_event_list_free(&out);
            sp_err_prefix(err, "flow #%d (%s)", f + 1, fl->ops->name);
            fs->ncur = 0;
            return rc;
        }
        struct sp_event *x;
        while ((x = sp_event_list_pop(&out)) != NULL) {
            flows_reserve(fs, fs->ncur + 1);
            sp_event_list_push(&fs->owned, x);
            fs->cur[fs->ncur] = x;
            fs->cur_owned[fs->ncur] = true;
            fs->ncur++;
        }
    }
    return fs->ncur;
}

struct sp_event *sp_flows_result(struct sp_flows *fs, int i)
{
    return fs->cur[i];
}

void sp_flows_done(struct sp_flows *fs)
{
    fs->ncur = 0;
    sp_event_list_free(&fs->owned);
    sp_event_list_init(&fs->owned);
}
