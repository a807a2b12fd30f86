// SPDX-License-Identifier: Apache-2.0
/*
 * Loading the configuration (DESIGN.md, "Configuration"): YAML file ->
 * node tree (config/yaml.c) -> ${...} substitution (config/env.c) -> the
 * top-level sections, each plugin instance validated against its type's
 * option table (config/schema.c) -> references between streams, sources and
 * sinks checked. Every problem found becomes a diagnostic with a location;
 * up to SP_DIAG_MAX are kept, and loading goes on after an error so that
 * one run reports them all.
 *
 * This file knows the shape of the document; it does not open sources or
 * sinks (plugins check what needs a connection in `siphon check`).
 */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/diag.h"
#include "config/env.h"
#include "config/fes.h"
#include "config/schema.h"
#include "config/yaml.h"
#include "core/registry.h"
#include "flow/flow.h"

#define CFG_MAX_IDENT 63 /* PostgreSQL's NAMEDATALEN - 1 */

const struct sp_opt sp_cfg_settings_opts[] = {
    SP_OPT_SIZE("memory_limit", struct sp_config, memory_limit, "16MiB", INT64_C(1) << 20, 0,
                "bytes of events in flight (decoded but not yet acknowledged by every sink); "
                "reading pauses while it is reached"),
    SP_OPT_DURATION("shutdown_timeout", struct sp_config, shutdown_timeout, "30s", 0,
                    INT64_C(3600000),
                    "on SIGTERM or SIGINT, how long to wait for sinks to acknowledge what is in "
                    "flight before stopping anyway"),
    SP_OPT_STR("state_dir", struct sp_config, state_dir, NULL, 0,
               "directory for local state; none is kept when not set"),
    SP_OPT_END,
};

/* What a stream mapping is validated into before references are resolved. */
struct cfg_stream_conf {
    char *name;
    char *source;
    struct sp_strlist tables;
    char *format;
    char *sink;
    bool messages;
    char *toast_placeholder;
};

const struct sp_opt sp_cfg_stream_opts[] = {
    SP_OPT_STR("name", struct cfg_stream_conf, name, NULL, SP_OPT_REQUIRED,
               "name of the stream, unique in the file; used in logs and metrics"),
    SP_OPT_STR("source", struct cfg_stream_conf, source, NULL, SP_OPT_REQUIRED,
               "the source (a name under `sources`) to read changes from"),
    SP_OPT_STRLIST("tables", struct cfg_stream_conf, tables, SP_OPT_REQUIRED,
                   "tables to stream: `table` (schema public), `schema.table`, or double-quoted "
                   "parts to keep case, e.g. `\"My Schema\".\"Order\"`; unquoted names are "
                   "folded to lower case as in PostgreSQL"),
    SP_OPT_STR("format", struct cfg_stream_conf, format, "json", 0,
               "how events are encoded (see Formats)"),
    SP_OPT_STR("sink", struct cfg_stream_conf, sink, NULL, SP_OPT_REQUIRED,
               "the sink (a name under `sinks`) to deliver events to"),
    SP_OPT_BOOL("messages", struct cfg_stream_conf, messages, "true",
                "also deliver logical decoding messages (`pg_logical_emit_message`)"),
    SP_OPT_STR("toast_placeholder", struct cfg_stream_conf, toast_placeholder,
               "__siphon_unavailable", 0,
               "value given to unchanged TOASTed columns, which PostgreSQL does not send"),
    SP_OPT_END,
};

struct cfg_recovery_conf {
    int type;
    char *sink;
};

static const char *const cfg_recovery_names[] = {"fail", "ignore", "dead_letter", NULL};

const struct sp_opt sp_cfg_recovery_opts[] = {
    SP_OPT_ENUM("type", struct cfg_recovery_conf, type, "fail", cfg_recovery_names,
                "what to do with an event a sink rejects for good: `fail` stops the stream, "
                "`ignore` drops and counts it, `dead_letter` writes it to `sink`"),
    SP_OPT_STR("sink", struct cfg_recovery_conf, sink, NULL, 0,
               "with `dead_letter`: the sink (a name under `sinks`, not the stream's own) that "
               "receives rejected events"),
    SP_OPT_END,
};

static const char *const cfg_stream_skip[] = {"recovery", "flows", NULL};
static const char *const cfg_type_skip[] = {"type", NULL};
static const char *const cfg_top_keys[] = {"sources", "sinks", "streams", "settings"};

/* Loading state. */
struct cfg {
    struct sp_config *cfg;
    struct sp_diag *d;
    struct sp_node *root;
    bool *source_used;
    bool *sink_used;
};

/* ---- small helpers ---- */

static void cfg_names_list(struct sp_buf *b, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sp_buf_printf(b, "%s%s", i > 0 ? ", " : "", names[i]);
    }
}

/* hint: did you mean "x"? — or the list of what exists. */
static void cfg_hint_names(struct sp_diag_item *it, const char *word, const char *const *names,
                           size_t n, const char *what)
{
    const char *s = sp_str_suggest(word, names, n);
    if (s != NULL) {
        sp_diag_hint(it, "did you mean \"%s\"?", s);
        return;
    }
    if (what != NULL && n > 0) {
        struct sp_buf b;
        sp_buf_init(&b);
        cfg_names_list(&b, names, n);
        sp_diag_hint(it, "%s: %s", what, b.data);
        sp_buf_fini(&b);
    }
}

static struct sp_diag_item *cfg_err(struct cfg *c, const struct sp_node *at, const char *fmt, ...)
    SP_PRINTF(3, 4);

static struct sp_diag_item *cfg_err(struct cfg *c, const struct sp_node *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct sp_diag_item *it = sp_diag_addv(c->d, false, &at->loc, at->span, fmt, ap);
    va_end(ap);
    return it;
}

/* ---- table names ---- */

static bool cfg_ident_start(unsigned char ch)
{
    return isalpha(ch) || ch == '_' || ch >= 0x80;
}

static bool cfg_ident_char(unsigned char ch)
{
    return cfg_ident_start(ch) || isdigit(ch) || ch == '$';
}

/* One identifier at *p: quoted ("" is a quote) or unquoted (folded to lower case). */
static int cfg_parse_ident(const char **p, char **out, const char *whole, struct sp_err *err)
{
    struct sp_buf b;
    const char *s = *p;
    sp_buf_init(&b);
    if (*s == '"') {
        s++;
        for (;;) {
            if (*s == '\0') {
                sp_buf_fini(&b);
                return sp_err_set(err, SP_EINVAL, "invalid table name \"%s\": unterminated quote",
                                  whole);
            }
            if (*s == '"' && s[1] == '"') {
                sp_buf_putc(&b, '"');
                s += 2;
            } else if (*s == '"') {
                s++;
                break;
            } else {
                sp_buf_putc(&b, *s++);
            }
        }
        if (b.len == 0) {
            sp_buf_fini(&b);
            return sp_err_set(err, SP_EINVAL, "invalid table name \"%s\": empty quoted name",
                              whole);
        }
    } else {
        if (!cfg_ident_start((unsigned char)*s)) {
            sp_buf_fini(&b);
            if (*s == '\0' || *s == '.') {
                return sp_err_set(err, SP_EINVAL, "invalid table name \"%s\": empty name part",
                                  whole);
            }
            return sp_err_set(err, SP_EINVAL, "invalid table name \"%s\": unexpected \"%c\"", whole,
                              *s);
        }
        while (cfg_ident_char((unsigned char)*s)) {
            static const char lower[] = "abcdefghijklmnopqrstuvwxyz";
            char ch = *s++;
            if (ch >= 'A' && ch <= 'Z') {
                ch = lower[ch - 'A'];
            }
            sp_buf_putc(&b, ch);
        }
    }
    if (b.len > CFG_MAX_IDENT) {
        sp_buf_fini(&b);
        return sp_err_set(err, SP_EINVAL,
                          "invalid table name \"%s\": a name part is longer than "
                          "%d bytes",
                          whole, CFG_MAX_IDENT);
    }
    *p = s;
    *out = sp_buf_steal(&b);
    return 0;
}

/* Append ident as PostgreSQL would need it written: quoted unless plain lower case. */
void sp_cfg_put_ident(struct sp_buf *b, const char *ident)
{
    bool plain = ident[0] != '\0' && !isdigit((unsigned char)ident[0]) && ident[0] != '$';
    for (const char *p = ident; *p != '\0' && plain; p++) {
        plain = (*p >= 'a' && *p <= 'z') || isdigit((unsigned char)*p) || *p == '_' || *p == '$' ||
                (unsigned char)*p >= 0x80;
    }
    if (plain) {
        sp_buf_puts(b, ident);
        return;
    }
    sp_buf_putc(b, '"');
    for (const char *p = ident; *p != '\0'; p++) {
        if (*p == '"') {
            sp_buf_putc(b, '"');
        }
        sp_buf_putc(b, *p);
    }
    sp_buf_putc(b, '"');
}

int sp_cfg_parse_table(const char *s, char **schema, char **table, struct sp_err *err)
{
    char *first = NULL;
    char *second = NULL;
    const char *p = s;

    *schema = NULL;
    *table = NULL;
    if (*s == '\0') {
        return sp_err_set(err, SP_EINVAL, "empty table name");
    }
    if (cfg_parse_ident(&p, &first, s, err) != 0) {
        return SP_EINVAL;
    }
    if (*p == '.') {
        p++;
        if (cfg_parse_ident(&p, &second, s, err) != 0) {
            free(first);
            return SP_EINVAL;
        }
    }
    if (*p != '\0') {
        free(first);
        free(second);
        if (*p == '.') {
            return sp_err_set(err, SP_EINVAL,
                              "invalid table name \"%s\": more than two parts (schema.table)", s);
        }
        return sp_err_set(err, SP_EINVAL, "invalid table name \"%s\": unexpected \"%c\"", s, *p);
    }
    if (second == NULL) {
        *schema = sp_xstrdup("public");
        *table = first;
    } else {
        *schema = first;
        *table = second;
    }
    return 0;
}

/* ---- sources and sinks ---- */

/*
 * The `type` of instance `name` of kind ("source"/"sink") among types[0..n):
 * its index, or -1 after reporting why not.
 */
static int cfg_instance_type(struct cfg *c, const char *kind, const char *name, struct sp_node *key,
                             struct sp_node *value, const char *const *types, size_t ntypes)
{
    char *avail = sp_xasprintf("available %s types", kind);
    int idx = -1;

    if (value->kind != SP_NODE_MAP) {
        struct sp_diag_item *it =
            cfg_err(c, sp_node_is_null(value) ? key : value,
                    "%s \"%s\" must be a mapping with a \"type\" and its options, not %s", kind,
                    name, sp_node_kind_name(value));
        cfg_hint_names(it, "", types, ntypes, avail);
        goto out;
    }
    struct sp_node *type = sp_node_get(value, "type");
    if (type == NULL || sp_node_is_null(type)) {
        struct sp_diag_item *it =
            cfg_err(c, type != NULL ? sp_node_get_pair(value, "type")->key : value,
                    "%s \"%s\": missing required option \"type\"", kind, name);
        cfg_hint_names(it, "", types, ntypes, avail);
        goto out;
    }
    if (type->invalid) {
        goto out;
    }
    if (type->kind != SP_NODE_SCALAR) {
        cfg_err(c, type, "%s \"%s\": option \"type\" must be a string, not %s", kind, name,
                sp_node_kind_name(type));
        goto out;
    }
    for (size_t i = 0; i < ntypes; i++) {
        if (strcmp(types[i], type->str) == 0) {
            idx = (int)i;
            goto out;
        }
    }
    struct sp_diag_item *it =
        cfg_err(c, type, "%s \"%s\": unknown %s type \"%s\"", kind, name, kind, type->str);
    cfg_hint_names(it, type->str, types, ntypes, avail);
out:
    free(avail);
    return idx;
}

static void *cfg_instance_conf(struct cfg *c, const char *kind, const char *name, const char *type,
                               const struct sp_opt *opts, size_t conf_size, struct sp_node *value)
{
    void *conf = sp_xcalloc(1, conf_size > 0 ? conf_size : 1);
    char *what = sp_xasprintf("%s \"%s\" (%s)", kind, name, type);
    struct sp_opt_ctx ctx = {.what = what, .noun = "option", .skip = cfg_type_skip, .d = c->d};
    static const struct sp_opt none[] = {SP_OPT_END};
    sp_opt_apply(opts != NULL ? opts : none, value, &ctx, conf);
    free(what);
    return conf;
}

/* Check the mapping of instances: a mapping of non-empty names. Returns false to skip it. */
static bool cfg_check_instances(struct cfg *c, struct sp_node *node, const char *section,
                                const char *kind)
{
    if (node == NULL || sp_node_is_null(node) || node->invalid) {
        return false;
    }
    if (node->kind != SP_NODE_MAP) {
        struct sp_diag_item *it =
            cfg_err(c, node, "\"%s\" must be a mapping of %s names to their options, not %s",
                    section, kind, sp_node_kind_name(node));
        sp_diag_hint(it,
                     "write \"%s:\", then on each indented line \"NAME:\" followed by the "
                     "%s's options",
                     section, kind);
        return false;
    }
    for (int i = 0; i < node->n; i++) {
        if (node->pairs[i].key->len == 0) {
            cfg_err(c, node->pairs[i].key, "%s name must not be empty", kind);
        }
    }
    return true;
}

static void cfg_load_sources(struct cfg *c, struct sp_node *node)
{
    struct sp_config *cfg = c->cfg;
    size_t ntypes = 0;
    while (sp_registry_sources[ntypes] != NULL) {
        ntypes++;
    }
    const char **types = sp_xcalloc(ntypes + 1, sizeof(char *));
    for (size_t i = 0; i < ntypes; i++) {
        types[i] = sp_registry_sources[i]->type;
    }
    if (cfg_check_instances(c, node, "sources", "source")) {
        cfg->sources = sp_xcalloc((size_t)node->n + 1, sizeof(*cfg->sources));
        for (int i = 0; i < node->n; i++) {
            struct sp_node *key = node->pairs[i].key;
            struct sp_node *value = node->pairs[i].value;
            struct sp_cfg_source *src = &cfg->sources[cfg->nsources++];
            src->name = sp_xstrdup(key->str);
            src->loc = key->loc;
            int t = cfg_instance_type(c, "source", key->str, key, value, types, ntypes);
            if (t < 0) {
                continue;
            }
            src->ops = sp_registry_sources[t];
            src->conf = cfg_instance_conf(c, "source", key->str, src->ops->type, src->ops->opts,
                                          src->ops->conf_size, value);
        }
    }
    free(types);
}

static void cfg_load_sinks(struct cfg *c, struct sp_node *node)
{
    struct sp_config *cfg = c->cfg;
    size_t ntypes = 0;
    while (sp_registry_sinks[ntypes] != NULL) {
        ntypes++;
    }
    const char **types = sp_xcalloc(ntypes + 1, sizeof(char *));
    for (size_t i = 0; i < ntypes; i++) {
        types[i] = sp_registry_sinks[i]->type;
    }
    if (cfg_check_instances(c, node, "sinks", "sink")) {
        cfg->sinks = sp_xcalloc((size_t)node->n + 1, sizeof(*cfg->sinks));
        for (int i = 0; i < node->n; i++) {
            struct sp_node *key = node->pairs[i].key;
            struct sp_node *value = node->pairs[i].value;
            struct sp_cfg_sink *sk = &cfg->sinks[cfg->nsinks++];
            sk->name = sp_xstrdup(key->str);
            sk->loc = key->loc;
            int t = cfg_instance_type(c, "sink", key->str, key, value, types, ntypes);
            if (t < 0) {
                continue;
            }
            sk->ops = sp_registry_sinks[t];
            sk->conf = cfg_instance_conf(c, "sink", key->str, sk->ops->type, sk->ops->opts,
                                         sk->ops->conf_size, value);
        }
    }
    free(types);
}

/* ---- streams ---- */

static int cfg_find_source(const struct sp_config *cfg, const char *name)
{
    for (int i = 0; i < cfg->nsources; i++) {
        if (strcmp(cfg->sources[i].name, name) == 0) {
            return i;
        }
    }
    return -1;
}

static int cfg_find_sink(const struct sp_config *cfg, const char *name)
{
    for (int i = 0; i < cfg->nsinks; i++) {
        if (strcmp(cfg->sinks[i].name, name) == 0) {
            return i;
        }
    }
    return -1;
}

/* "source "ordrs" is not defined (defined sources: orders)" + did you mean. */
static void cfg_undefined(struct cfg *c, const char *what, const struct sp_node *at,
                          const char *role, const char *plural, const char *const *names, size_t n)
{
    struct sp_buf list;
    sp_buf_init(&list);
    if (n > 0) {
        sp_buf_printf(&list, "defined %s: ", plural);
        cfg_names_list(&list, names, n);
    } else {
        sp_buf_printf(&list, "no %s are defined", plural);
    }
    struct sp_diag_item *it =
        cfg_err(c, at, "%s: %s \"%s\" is not defined (%s)", what, role, at->str, list.data);
    cfg_hint_names(it, at->str, names, n, NULL);
    sp_buf_fini(&list);
}

static int cfg_resolve_source(struct cfg *c, const char *what, const struct sp_node *at)
{
    if (at == NULL || at->kind != SP_NODE_SCALAR || at->invalid || sp_node_is_null(at)) {
        return -1;
    }
    int idx = cfg_find_source(c->cfg, at->str);
    if (idx >= 0) {
        c->source_used[idx] = true;
        return idx;
    }
    const char **names = sp_xcalloc((size_t)c->cfg->nsources + 1, sizeof(char *));
    for (int i = 0; i < c->cfg->nsources; i++) {
        names[i] = c->cfg->sources[i].name;
    }
    cfg_undefined(c, what, at, "source", "sources", names, (size_t)c->cfg->nsources);
    free(names);
    return -1;
}

static int cfg_resolve_sink(struct cfg *c, const char *what, const struct sp_node *at,
                            const char *role)
{
    if (at == NULL || at->kind != SP_NODE_SCALAR || at->invalid || sp_node_is_null(at)) {
        return -1;
    }
    int idx = cfg_find_sink(c->cfg, at->str);
    if (idx >= 0) {
        c->sink_used[idx] = true;
        return idx;
    }
    const char **names = sp_xcalloc((size_t)c->cfg->nsinks + 1, sizeof(char *));
    for (int i = 0; i < c->cfg->nsinks; i++) {
        names[i] = c->cfg->sinks[i].name;
    }
    cfg_undefined(c, what, at, role, "sinks", names, (size_t)c->cfg->nsinks);
    free(names);
    return -1;
}

static void cfg_stream_format(struct cfg *c, const char *what, struct sp_node *item,
                              const char *format, struct sp_cfg_stream *st)
{
    struct sp_node *node = sp_node_get(item, "format");
    if (format == NULL || (node != NULL && node->invalid)) {
        return;
    }
    st->format = sp_registry_format(format);
    if (st->format != NULL) {
        return;
    }
    size_t n = 0;
    while (sp_registry_formats[n] != NULL) {
        n++;
    }
    const char **names = sp_xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        names[i] = sp_registry_formats[i]->name;
    }
    struct sp_buf list;
    sp_buf_init(&list);
    cfg_names_list(&list, names, n);
    struct sp_diag_item *it =
        cfg_err(c, node != NULL ? node : item, "%s: unknown format \"%s\" (available formats: %s)",
                what, format, list.data != NULL ? list.data : "");
    cfg_hint_names(it, format, names, n, NULL);
    sp_buf_fini(&list);
    free(names);
}

static void cfg_stream_tables(struct cfg *c, const char *what, struct sp_node *item,
                              struct sp_cfg_stream *st)
{
    struct sp_node *node = sp_node_get(item, "tables");
    struct sp_node *single[1];
    struct sp_node **items;
    int n;

    if (node == NULL || node->invalid || sp_node_is_null(node)) {
        return;
    }
    if (node->kind == SP_NODE_SCALAR) {
        single[0] = node;
        items = single;
        n = 1;
    } else if (node->kind == SP_NODE_SEQ) {
        items = node->items;
        n = node->n;
    } else {
        return; /* reported by the validator */
    }
    st->tables = sp_xcalloc((size_t)n + 1, sizeof(*st->tables));
    int *where = sp_xcalloc((size_t)n + 1, sizeof(int)); /* item index of each table */
    int ntables = 0;
    for (int i = 0; i < n; i++) {
        struct sp_node *t = items[i];
        if (t->kind != SP_NODE_SCALAR || sp_node_is_null(t) || t->invalid) {
            continue; /* reported by the validator */
        }
        struct sp_err err;
        char *schema = NULL;
        char *table = NULL;
        sp_err_clear(&err);
        /* (a NULL result never comes with 0; checked so analyzers can see it) */
        if (sp_cfg_parse_table(t->str, &schema, &table, &err) != 0 || schema == NULL ||
            table == NULL) {
            struct sp_diag_item *it = cfg_err(c, t, "%s: %s", what, err.msg);
            sp_diag_hint(it, "write table, schema.table or \"Quoted Schema\".\"Quoted Table\"");
            free(schema);
            free(table);
            continue;
        }
        int dup = -1;
        for (int j = 0; j < ntables; j++) {
            if (strcmp(st->tables[j].schema, schema) == 0 &&
                strcmp(st->tables[j].table, table) == 0) {
                dup = j;
                break;
            }
        }
        if (dup >= 0) {
            const struct sp_node *first = items[where[dup]];
            struct sp_buf qname;
            sp_buf_init(&qname);
            sp_cfg_put_ident(&qname, schema);
            sp_buf_putc(&qname, '.');
            sp_cfg_put_ident(&qname, table);
            struct sp_diag_item *it =
                cfg_err(c, t, "%s: table %s is listed twice", what, qname.data);
            sp_buf_fini(&qname);
            if (strcmp(first->str, t->str) == 0) {
                sp_diag_hint(it, "first listed at line %d, column %d", first->loc.line,
                             first->loc.col);
            } else {
                sp_diag_hint(it, "first listed at line %d, column %d as \"%s\"", first->loc.line,
                             first->loc.col, first->str);
            }
            free(schema);
            free(table);
            continue;
        }
        where[ntables] = i;
        struct sp_cfg_table *ct = &st->tables[ntables++];
        ct->schema = schema;
        ct->table = table;
        ct->loc = t->loc;
    }
    free(where);
    st->ntables = ntables;
}

static void cfg_stream_recovery(struct cfg *c, const char *what, struct sp_node *item,
                                struct sp_cfg_stream *st)
{
    struct sp_node *node = sp_node_get(item, "recovery");
    struct cfg_recovery_conf rc = {0};

    st->recovery = SP_RECOVERY_FAIL;
    st->recovery_sink = -1;
    if (node == NULL || sp_node_is_null(node) || node->invalid) {
        return;
    }
    char *rwhat = sp_xasprintf("%s: recovery", what);
    struct sp_opt_ctx ctx = {.what = rwhat, .noun = "key", .d = c->d};
    if (sp_opt_apply(sp_cfg_recovery_opts, node, &ctx, &rc) > 0 || node->kind != SP_NODE_MAP) {
        goto out;
    }
    st->recovery = (enum sp_recovery)rc.type;
    struct sp_node *sink = sp_node_get(node, "sink");
    if (st->recovery != SP_RECOVERY_DEAD_LETTER) {
        if (rc.sink != NULL) {
            struct sp_diag_item *it = cfg_err(
                c, sink, "%s: a recovery sink is only used with type \"dead_letter\"", what);
            sp_diag_hint(it, "set \"type: dead_letter\", or remove the sink");
        }
        goto out;
    }
    if (rc.sink == NULL) {
        struct sp_diag_item *it =
            cfg_err(c, node, "%s: recovery type \"dead_letter\" needs a \"sink\"", what);
        sp_diag_hint(it, "name the sink that receives events the stream's sink rejects");
        goto out;
    }
    st->recovery_sink = cfg_resolve_sink(c, what, sink, "recovery sink");
    if (st->recovery_sink >= 0 && st->recovery_sink == st->sink) {
        struct sp_diag_item *it = cfg_err(c, sink,
                                          "%s: recovery sink \"%s\" is the stream's own "
                                          "sink",
                                          what, rc.sink);
        sp_diag_hint(it, "dead letters must go to a different sink, e.g. a file");
    }
out:
    sp_opt_free_conf(sp_cfg_recovery_opts, &rc);
    free(rwhat);
}

static void cfg_stream_flows(struct cfg *c, const char *what, struct sp_node *item,
                             struct sp_cfg_stream *st)
{
    struct sp_node_pair *pair = sp_node_get_pair(item, "flows");
    if (pair == NULL || sp_node_is_null(pair->value) || pair->value->invalid) {
        return;
    }
    st->flows = pair->value;
    struct sp_flow_cctx cc = {
        .d = c->d,
        .what = what,
        .text = c->cfg->doc->text,
        .len = c->cfg->doc->len,
    };
    sp_flows_compile(pair->value, &cc, &st->chain);
}

static void cfg_load_stream(struct cfg *c, struct sp_node *item, int index)
{
    struct sp_config *cfg = c->cfg;
    struct cfg_stream_conf sc = {0};
    struct sp_node *name = sp_node_get(item, "name");
    char *what;

    if (name != NULL && name->kind == SP_NODE_SCALAR && name->len > 0 && !sp_node_is_null(name)) {
        what = sp_xasprintf("stream \"%s\"", name->str);
    } else {
        what = sp_xasprintf("stream #%d", index + 1);
    }
    struct sp_opt_ctx ctx = {.what = what, .noun = "key", .skip = cfg_stream_skip, .d = c->d};
    sp_opt_apply(sp_cfg_stream_opts, item, &ctx, &sc);

    struct sp_cfg_stream *st = &cfg->streams[cfg->nstreams++];
    st->name = sc.name != NULL ? sc.name : sp_xstrdup("");
    sc.name = NULL;
    st->loc = item->loc;
    st->source = -1;
    st->sink = -1;
    st->recovery_sink = -1;
    st->messages = sc.messages;
    st->toast_placeholder = sc.toast_placeholder;
    sc.toast_placeholder = NULL;

    if (st->name[0] != '\0') {
        for (int i = 0; i < cfg->nstreams - 1; i++) {
            if (strcmp(cfg->streams[i].name, st->name) == 0) {
                struct sp_diag_item *it =
                    cfg_err(c, name, "duplicate stream name \"%s\"", st->name);
                sp_diag_hint(it, "the first stream named \"%s\" is at line %d", st->name,
                             cfg->streams[i].loc.line);
                break;
            }
        }
    }
    st->source = cfg_resolve_source(c, what, sp_node_get(item, "source"));
    st->sink = cfg_resolve_sink(c, what, sp_node_get(item, "sink"), "sink");
    cfg_stream_format(c, what, item, sc.format, st);
    cfg_stream_tables(c, what, item, st);
    cfg_stream_recovery(c, what, item, st);
    cfg_stream_flows(c, what, item, st);

    sp_opt_free_conf(sp_cfg_stream_opts, &sc);
    free(what);
}

static void cfg_load_streams(struct cfg *c, struct sp_node *key, struct sp_node *node)
{
    struct sp_config *cfg = c->cfg;

    if (node != NULL && node->invalid) {
        return;
    }
    if (node == NULL || sp_node_is_null(node) || (node->kind == SP_NODE_SEQ && node->n == 0)) {
        const struct sp_node *at = node != NULL && !sp_node_is_null(node) ? node
                                   : key != NULL                          ? key
                                                                          : c->root;
        struct sp_diag_item *it = cfg_err(c, at, "no streams are defined");
        sp_diag_hint(it, "add a \"streams:\" list; each stream connects a source to a sink, "
                         "e.g. \"- {name: s, source: SOURCE, tables: [t], sink: SINK}\"");
        return;
    }
    if (node->kind != SP_NODE_SEQ) {
        struct sp_diag_item *it = cfg_err(c, node, "\"streams\" must be a list of streams, not %s",
                                          sp_node_kind_name(node));
        sp_diag_hint(it, "start each stream with \"- name: ...\"");
        return;
    }
    cfg->streams = sp_xcalloc((size_t)node->n, sizeof(*cfg->streams));
    for (int i = 0; i < node->n; i++) {
        struct sp_node *item = node->items[i];
        if (item->kind != SP_NODE_MAP) {
            cfg_err(c, item,
                    "each stream must be a mapping with name, source, tables and sink, "
                    "not %s",
                    sp_node_kind_name(item));
            continue;
        }
        cfg_load_stream(c, item, i);
    }
}

/* ---- the document ---- */

static void cfg_check_top_keys(struct cfg *c)
{
    struct sp_node *root = c->root;
    for (int i = 0; i < root->n; i++) {
        struct sp_node *key = root->pairs[i].key;
        bool known = false;
        for (size_t k = 0; k < SP_ARRAY_LEN(cfg_top_keys); k++) {
            known = known || strcmp(key->str, cfg_top_keys[k]) == 0;
        }
        if (!known) {
            struct sp_diag_item *it = cfg_err(c, key, "unknown top-level key \"%s\"", key->str);
            cfg_hint_names(it, key->str, cfg_top_keys, SP_ARRAY_LEN(cfg_top_keys), "valid keys");
        }
    }
}

static void cfg_warn_unused(struct cfg *c)
{
    const struct sp_config *cfg = c->cfg;
    for (int i = 0; i < cfg->nsources; i++) {
        if (!c->source_used[i] && cfg->sources[i].ops != NULL) {
            sp_diag_warn(c->d, &cfg->sources[i].loc, (int)strlen(cfg->sources[i].name),
                         "source \"%s\" is not used by any stream", cfg->sources[i].name);
        }
    }
    for (int i = 0; i < cfg->nsinks; i++) {
        if (!c->sink_used[i] && cfg->sinks[i].ops != NULL) {
            sp_diag_warn(c->d, &cfg->sinks[i].loc, (int)strlen(cfg->sinks[i].name),
                         "sink \"%s\" is not used by any stream", cfg->sinks[i].name);
        }
    }
}

static void cfg_load_doc(struct cfg *c, sp_env_fn lookup_env, const char *base_dir)
{
    struct sp_config *cfg = c->cfg;
    struct sp_node *root = cfg->doc->root;
    struct sp_err err;

    sp_err_clear(&err);
    if (sp_opt_defaults(sp_cfg_settings_opts, cfg, &err) != 0) {
        sp_diag_error(c->d, NULL, 0, "internal error: settings: %s", err.msg);
    }
    if (root == NULL) {
        struct sp_loc loc = {cfg->file, 0, 0};
        struct sp_diag_item *it = sp_diag_error(c->d, &loc, 0, "the configuration file is empty");
        sp_diag_hint(it, "define sources, sinks and the streams connecting them");
        return;
    }
    int before = c->d->nerrors;
    if (sp_fes_detect(root)) {
        /* Resources: substituted as written, then translated (docs/fes.md). */
        if (sp_env_substitute(root, lookup_env, base_dir, c->d) > 0) {
            return;
        }
        struct sp_node *translated = sp_fes_translate(root, lookup_env, c->d);
        if (translated == NULL) {
            return;
        }
        sp_node_free(cfg->doc->root);
        cfg->doc->root = translated;
        cfg->fes = true;
        root = translated;
    }
    c->root = root;
    if (root->kind != SP_NODE_MAP) {
        cfg_err(c, root,
                "the configuration must be a mapping with sources, sinks and streams, "
                "not %s",
                sp_node_kind_name(root));
        return;
    }
    if (!cfg->fes) {
        sp_env_substitute(root, lookup_env, base_dir, c->d);
    }
    cfg_check_top_keys(c);

    struct sp_node *settings = sp_node_get(root, "settings");
    if (settings != NULL && !settings->invalid) {
        struct sp_opt_ctx ctx = {.what = "settings", .noun = "option", .d = c->d};
        sp_opt_apply(sp_cfg_settings_opts, settings, &ctx, cfg);
    }
    cfg_load_sources(c, sp_node_get(root, "sources"));
    cfg_load_sinks(c, sp_node_get(root, "sinks"));

    c->source_used = sp_xcalloc((size_t)cfg->nsources + 1, sizeof(bool));
    c->sink_used = sp_xcalloc((size_t)cfg->nsinks + 1, sizeof(bool));
    struct sp_node_pair *streams = sp_node_get_pair(root, "streams");
    cfg_load_streams(c, streams != NULL ? streams->key : NULL,
                     streams != NULL ? streams->value : NULL);
    /* an unresolved reference would make these misleading */
    if (c->d->nerrors == before) {
        cfg_warn_unused(c);
    }
}

/* Secret nodes, so their text is masked in the source lines shown. */
static void cfg_collect_secrets(const struct sp_node *node, struct sp_diag_span **spans, int *n)
{
    if (node == NULL) {
        return;
    }
    if (node->secret && node->span > 0) {
        *spans = sp_xrealloc(*spans, sizeof(**spans) * (size_t)(*n + 1));
        (*spans)[*n].line = node->loc.line;
        (*spans)[*n].col = node->loc.col;
        (*spans)[*n].len = node->span;
        (*n)++;
    }
    for (int i = 0; node->kind == SP_NODE_SEQ && i < node->n; i++) {
        cfg_collect_secrets(node->items[i], spans, n);
    }
    for (int i = 0; node->kind == SP_NODE_MAP && i < node->n; i++) {
        cfg_collect_secrets(node->pairs[i].key, spans, n);
        cfg_collect_secrets(node->pairs[i].value, spans, n);
    }
}

/* Names of every secret option of every plugin type (NULL-terminated; free the array only). */
static const char **cfg_secret_keys(void)
{
    const char **keys = NULL;
    size_t n = 0;
    const struct sp_opt *tables[64];
    size_t ntables = 0;
    for (size_t i = 0; sp_registry_sources[i] != NULL && ntables < SP_ARRAY_LEN(tables); i++) {
        tables[ntables++] = sp_registry_sources[i]->opts;
    }
    for (size_t i = 0; sp_registry_sinks[i] != NULL && ntables < SP_ARRAY_LEN(tables); i++) {
        tables[ntables++] = sp_registry_sinks[i]->opts;
    }
    for (size_t t = 0; t < ntables; t++) {
        for (const struct sp_opt *o = tables[t]; o != NULL && o->name != NULL; o++) {
            if ((o->flags & SP_OPT_SECRET) == 0) {
                continue;
            }
            bool have = false;
            for (size_t k = 0; k < n && !have; k++) {
                have = strcmp(keys[k], o->name) == 0;
            }
            if (!have) {
                keys = sp_xrealloc(keys, sizeof(char *) * (n + 2));
                keys[n++] = o->name;
            }
        }
    }
    if (keys == NULL) {
        keys = sp_xcalloc(1, sizeof(char *));
    }
    keys[n] = NULL;
    return keys;
}

static char *cfg_base_dir(const char *name)
{
    const char *slash = strrchr(name, '/');
    if (slash == NULL) {
        return sp_xstrdup(".");
    }
    if (slash == name) {
        return sp_xstrdup("/");
    }
    return sp_xstrndup(name, (size_t)(slash - name));
}

int sp_cfg_load_string(const char *name, const char *text, size_t len, sp_env_fn lookup_env,
                       struct sp_config **out, struct sp_diag *diag)
{
    struct sp_config *cfg = sp_xcalloc(1, sizeof(*cfg));
    struct cfg c = {.cfg = cfg, .d = diag};
    char *base_dir = cfg_base_dir(name);
    int before = diag->nerrors;
    int first_item = diag->n;

    *out = NULL;
    cfg->file = sp_xstrdup(name);
    if (sp_yaml_parse(cfg->file, text, len, &cfg->doc, diag) == 0) {
        cfg_load_doc(&c, lookup_env, base_dir);
    }

    struct sp_diag_span *spans = NULL;
    int nspans = 0;
    if (cfg->doc != NULL) {
        cfg_collect_secrets(cfg->doc->root, &spans, &nspans);
    }
    const char **keys = cfg_secret_keys();
    sp_diag_attach_source(diag, cfg->file, text, len, spans, nspans, keys);
    free(keys);
    free(spans);
    /* sort what this load added into file order */
    if (diag->items != NULL && diag->n > first_item) {
        struct sp_diag tail = *diag;
        tail.items += first_item;
        tail.n -= first_item;
        sp_diag_sort(&tail);
    }

    free(c.source_used);
    free(c.sink_used);
    free(base_dir);
    if (diag->nerrors > before) {
        sp_cfg_free(cfg);
        return SP_EINVAL;
    }
    *out = cfg;
    return 0;
}

int sp_cfg_load(const char *path, sp_env_fn lookup_env, struct sp_config **out,
                struct sp_diag *diag)
{
    struct sp_buf text;
    FILE *f = NULL;
    int rc;

    *out = NULL;
    sp_buf_init(&text);
    f = fopen(path, "rb");
    if (f == NULL) {
        struct sp_loc loc = {path, 0, 0};
        sp_diag_error(diag, &loc, 0, "could not open the configuration file: %s", strerror(errno));
        return SP_EINVAL;
    }
    char chunk[8192];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        sp_buf_append(&text, chunk, got);
    }
    if (ferror(f)) {
        struct sp_loc loc = {path, 0, 0};
        sp_diag_error(diag, &loc, 0, "could not read the configuration file: %s", strerror(errno));
        fclose(f);
        sp_buf_fini(&text);
        return SP_EINVAL;
    }
    fclose(f);
    rc = sp_cfg_load_string(path, text.data != NULL ? text.data : "", text.len, lookup_env, out,
                            diag);
    sp_buf_fini(&text);
    return rc;
}

void sp_cfg_free(struct sp_config *cfg)
{
    if (cfg == NULL) {
        return;
    }
    for (int i = 0; i < cfg->nsources; i++) {
        struct sp_cfg_source *src = &cfg->sources[i];
        if (src->ops != NULL) {
            sp_opt_free_conf(src->ops->opts, src->conf);
        }
        free(src->conf);
        free(src->name);
    }
    free(cfg->sources);
    for (int i = 0; i < cfg->nsinks; i++) {
        struct sp_cfg_sink *sk = &cfg->sinks[i];
        if (sk->ops != NULL) {
            sp_opt_free_conf(sk->ops->opts, sk->conf);
        }
        free(sk->conf);
        free(sk->name);
    }
    free(cfg->sinks);
    for (int i = 0; i < cfg->nstreams; i++) {
        struct sp_cfg_stream *st = &cfg->streams[i];
        for (int t = 0; t < st->ntables; t++) {
            free(st->tables[t].schema);
            free(st->tables[t].table);
        }
        free(st->tables);
        free(st->name);
        free(st->toast_placeholder);
        sp_flows_free(st->chain);
    }
    free(cfg->streams);
    sp_opt_free_conf(sp_cfg_settings_opts, cfg);
    sp_yaml_free(cfg->doc);
    free(cfg->file);
    free(cfg);
}
