// SPDX-License-Identifier: Apache-2.0
/*
 * Flow "route": where an event goes and under which key and event type,
 * from templates over the event:
 *
 *   - route:
 *       destination: "orders.{after.tenant_id}"   # Kafka topic, NATS subject,
 *                                                 # Redis stream, event type
 *       key: "{after.tenant_id}"
 *       event_type: "order.{source.table}"
 *
 * {path} placeholders take any path of the filter language; {{ and }} are
 * literal braces. A placeholder whose value is null is an event error (the
 * stream's recovery policy decides), never an empty name.
 *
 * The destination overrides the sink's own template (topic, subject,
 * stream); the key replaces the format's key (partitioning follows it).
 */
#include <stdlib.h>
#include <string.h>

#include "config/diag.h"
#include "config/schema.h"
#include "config/yaml.h"
#include "flow/flow.h"
#include "flow/value.h"
#include "util/mem.h"

struct route_conf {
    char *destination;
    char *key;
    char *event_type;
};

static const struct sp_opt route_opts[] = {
    SP_OPT_STR("destination", struct route_conf, destination, NULL, 0,
               "template of the destination: Kafka topic, NATS subject, Redis stream key or "
               "event type, overriding the sink's template"),
    SP_OPT_STR("key", struct route_conf, key, NULL, 0,
               "template of the record key (and so of the partition)"),
    SP_OPT_STR("event_type", struct route_conf, event_type, NULL, 0,
               "template of the event type (Nakadi event type, CloudEvents type)"),
    SP_OPT_END,
};

struct route_state {
    struct sp_ftmpl *dest;
    struct sp_ftmpl *key;
    struct sp_ftmpl *type;
};

int sp_flow_template(const struct sp_flow_cctx *cc, const char *label, struct sp_node *map,
                     const char *name, struct sp_ftmpl **out)
{
    *out = NULL;
    struct sp_node *node = sp_node_get(map, name);
    if (node == NULL || node->kind != SP_NODE_SCALAR || sp_node_is_null(node)) {
        return 0;
    }
    struct sp_err err;
    size_t off = 0;
    sp_err_clear(&err);
    if (node->len == 0) {
        sp_diag_error(cc->d, &node->loc, node->span, "%s: %s: %s must not be empty", cc->what,
                      label, name);
        return SP_EINVAL;
    }
    if (sp_ftmpl_parse(node->str, node->len, out, &off, &err) != 0) {
        struct sp_loc loc;
        sp_flow_scalar_loc(cc, node, off, &loc);
        struct sp_diag_item *it =
            sp_diag_error(cc->d, &loc, 1, "%s: %s: %s: %s", cc->what, label, name, err.msg);
        if (err.hint[0] != '\0') {
            sp_diag_hint(it, "%s", err.hint);
        }
        return SP_EINVAL;
    }
    return 0;
}

static int route_compile(struct sp_flow *fl, struct sp_node *node, const struct sp_flow_cctx *cc)
{
    struct route_state *st = sp_xcalloc(1, sizeof(*st));
    struct route_conf conf = {0};
    fl->state = st;
    if (node == NULL || node->kind != SP_NODE_MAP) {
        struct sp_diag_item *it =
            sp_diag_error(cc->d, node != NULL ? &node->loc : NULL, node != NULL ? node->span : 0,
                          "%s: flow \"route\" takes a mapping, not %s", cc->what,
                          node != NULL ? sp_node_kind_name(node) : "nothing");
        sp_diag_hint(it, "e.g. route: {destination: \"orders.{after.tenant_id}\", key: "
                         "\"{after.id}\"}");
        return SP_EINVAL;
    }
    int errs = sp_flow_opts(cc, "flow \"route\"", route_opts, node, &conf);
    if (errs == 0 && conf.destination == NULL && conf.key == NULL && conf.event_type == NULL) {
        struct sp_diag_item *it =
            sp_diag_error(cc->d, &node->loc, node->span,
                          "%s: flow \"route\" needs destination, key or event_type", cc->what);
        sp_diag_hint(it, "e.g. destination: \"orders.{after.tenant_id}\"");
        errs++;
    }
    sp_opt_free_conf(route_opts, &conf);
    if (errs > 0) {
        return SP_EINVAL;
    }
    int rc = sp_flow_template(cc, "flow \"route\"", node, "destination", &st->dest);
    rc |= sp_flow_template(cc, "flow \"route\"", node, "key", &st->key);
    rc |= sp_flow_template(cc, "flow \"route\"", node, "event_type", &st->type);
    return rc != 0 ? SP_EINVAL : 0;
}

static int route_apply(struct sp_flow *fl, const struct sp_event *ev, struct sp_event_list *out,
                       struct sp_err *err)
{
    struct route_state *st = fl->state;
    struct sp_event *cp = sp_flow_copy(ev);
    int rc = 0;
    if (st->dest != NULL) {
        rc = sp_ftmpl_expand_arena(st->dest, cp, &cp->dest, NULL, err);
    }
    if (rc == 0 && st->key != NULL) {
        rc = sp_ftmpl_expand_arena(st->key, cp, &cp->key_override, &cp->key_override_len, err);
    }
    if (rc == 0 && st->type != NULL) {
        rc = sp_ftmpl_expand_arena(st->type, cp, &cp->event_type, NULL, err);
    }
    if (rc != 0) {
        sp_event_free(cp);
        return rc;
    }
    if (st->dest != NULL && cp->dest != NULL && cp->dest[0] == '\0') {
        sp_event_free(cp);
        return sp_err_set(err, SP_EINVAL, "destination template \"%s\" gave an empty name",
                          st->dest->text);
    }
    sp_event_list_push(out, cp);
    return SP_FLOW_EMIT;
}

static void route_free(struct sp_flow *fl)
{
    struct route_state *st = fl->state;
    if (st == NULL) {
        return;
    }
    sp_ftmpl_free(st->dest);
    sp_ftmpl_free(st->key);
    sp_ftmpl_free(st->type);
    free(st);
    fl->state = NULL;
}

const struct sp_flow_ops sp_flow_route = {
    .name = "route",
    .usage = "a mapping of templates (docs/flow-route.md), e.g. `{destination: "
             "\"orders.{after.tenant_id}\", key: \"{after.id}\"}`",
    .opts = route_opts,
    .summary = "destination, key and event type from templates over the event",
    .compile = route_compile,
    .apply = route_apply,
    .free = route_free,
};
