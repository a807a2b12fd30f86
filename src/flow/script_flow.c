// SPDX-License-Identifier: Apache-2.0
/*
 * Flow "script": each event through a Lua function (engine: flow/script.c,
 * docs/flow-script.md).
 *
 *   - script:
 *       file: orders.lua          # relative to the configuration file
 *       function: transform       # default
 *       budget: 1000000           # Lua VM instructions per event
 *       memory_limit: 64MiB       # for the whole Lua state
 *
 *   - script:
 *       inline: |
 *         function transform(event) ... end
 *
 * Inline source keeps the configuration file's line numbers: an error in
 * the third line of the script is reported at that line of the file.
 *
 * The flow hands the engine each row as the json format writes it (the
 * toast placeholder for an unchanged TOASTed value; a value the script
 * leaves alone keeps its PostgreSQL text, so the stream's format writes it
 * as it would have).
 */
#include <stdint.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/diag.h"
#include "config/schema.h"
#include "config/yaml.h"
#include "core/plugin.h"
#include "flow/flow.h"
#include "flow/script.h"
#include "format/json.h"
#include "util/buf.h"
#include "util/mem.h"

struct script_conf {
    char *file;
    char *inline_src;
    char *function;
    int64_t budget;
    int64_t memory_limit;
};

static const struct sp_opt script_opts[] = {
    SP_OPT_STR("file", struct script_conf, file, NULL, 0,
               "the Lua script, relative to the configuration file (or inline)"),
    SP_OPT_STR("inline", struct script_conf, inline_src, NULL, 0,
               "the Lua source itself (a block scalar, `inline: |`), instead of file; errors "
               "name the configuration file's lines"),
    SP_OPT_STR("function", struct script_conf, function, "transform", 0,
               "the global function called with each event"),
    SP_OPT_INT("budget", struct script_conf, budget, "1000000", 1000, INT32_MAX,
               "Lua VM instructions one call may run before it is stopped (an event error)"),
    SP_OPT_SIZE("memory_limit", struct script_conf, memory_limit, "64MiB", 1 << 20,
                INT64_C(1) << 34, "memory of the flow's Lua state, globals included"),
    SP_OPT_END,
};

/* One row's columns as JSON, for the engine. */
struct script_row {
    const char **json;
    size_t *len;
    size_t *off; /* where column i starts in buf; SIZE_MAX: not part of the row */
    int cap;
    struct sp_buf buf;
    struct sp_script_row row;
};

struct script_state {
    struct sp_script *s;
    struct sp_format fmt; /* a json format with default options, for values and keys */
    struct script_row before;
    struct script_row after;
    struct sp_buf key;
};

/* A path written in the configuration: relative ones are taken from the file's directory. */
static char *script_path(const char *file, const char *cfg_file)
{
    if (file[0] == '/' || cfg_file == NULL) {
        return sp_xstrdup(file);
    }
    const char *slash = strrchr(cfg_file, '/');
    if (slash == NULL) {
        return sp_xstrdup(file);
    }
    return sp_xasprintf("%.*s/%s", (int)(slash - cfg_file), cfg_file, file);
}

/* The indentation of line (1-based) of the YAML text, 0 if unknown. */
static int script_indent(const struct sp_flow_cctx *cc, int line)
{
    if (cc->text == NULL) {
        return 0;
    }
    const char *p = cc->text;
    const char *end = cc->text + cc->len;
    for (int l = 1; l < line && p < end; l++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl != NULL ? nl + 1 : end;
    }
    int n = 0;
    while (p + n < end && p[n] == ' ') {
        n++;
    }
    return n;
}

/*
 * Where a compile error of inline source is: Lua names the configuration
 * file and a line of it ("siphon.yaml:15: unexpected symbol"), so the
 * diagnostic points at that line instead of the start of the scalar.
 */
static void script_compile_error(const struct sp_flow_cctx *cc, const struct sp_node *at,
                                 bool is_inline, const struct sp_err *err)
{
    struct sp_loc loc = at->loc;
    int span = at->span;
    const char *msg = err->msg;
    const char *file = at->loc.file;
    size_t fl = file != NULL ? strlen(file) : 0;
    const char *p = strstr(msg, file != NULL ? file : "");
    if (is_inline && file != NULL && p != NULL && p[fl] == ':' && p[fl + 1] >= '1' &&
        p[fl + 1] <= '9') {
        char *end = NULL;
        long line = strtol(p + fl + 1, &end, 10);
        if (*end == ':' && line > at->loc.line && line < INT_MAX) {
            loc.line = (int)line;
            loc.col = script_indent(cc, (int)line) + 1;
            span = 1;
            msg = end[1] == ' ' ? end + 2 : end + 1;
        }
    }
    struct sp_diag_item *it =
        sp_diag_error(cc->d, &loc, span, "%s: flow \"script\": %s", cc->what, msg);
    if (err->hint[0] != '\0') {
        sp_diag_hint(it, "%s", err->hint);
    }
}

static int script_compile(struct sp_flow *fl, struct sp_node *node, const struct sp_flow_cctx *cc)
{
    struct script_state *st = sp_xcalloc(1, sizeof(*st));
    fl->state = st;
    sp_buf_init(&st->before.buf);
    sp_buf_init(&st->after.buf);
    sp_buf_init(&st->key);
    if (node == NULL || node->kind != SP_NODE_MAP) {
        struct sp_diag_item *it =
            sp_diag_error(cc->d, node != NULL ? &node->loc : NULL, node != NULL ? node->span : 0,
                          "%s: flow \"script\" takes a mapping, not %s", cc->what,
                          node != NULL ? sp_node_kind_name(node) : "nothing");
        sp_diag_hint(it, "e.g. script: {file: orders.lua} or script: {inline: \"function "
                         "transform(event) return event end\"}");
        return SP_EINVAL;
    }
    struct script_conf conf = {0};
    int errs = sp_flow_opts(cc, "flow \"script\"", script_opts, node, &conf);
    if (errs == 0 && (conf.file == NULL) == (conf.inline_src == NULL)) {
        struct sp_diag_item *it =
            sp_diag_error(cc->d, &node->loc, node->span, "%s: flow \"script\" needs %s", cc->what,
                          conf.file == NULL ? "file or inline" : "file or inline, not both");
        sp_diag_hint(it, "file: orders.lua (next to the configuration file), or inline: | "
                         "followed by the Lua source");
        errs++;
    }
    if (errs > 0) {
        sp_opt_free_conf(script_opts, &conf);
        return SP_EINVAL;
    }
    struct sp_script_opts so = {
        .function = conf.function,
        .budget = conf.budget,
        .memory_limit = (size_t)conf.memory_limit,
    };
    char *path = NULL;
    char *src = NULL;
    char *chunk = NULL;
    const struct sp_node *at = sp_node_get(node, conf.file != NULL ? "file" : "inline");
    if (conf.file != NULL) {
        path = script_path(conf.file, node->loc.file);
        so.path = path;
    } else {
        /* Pad with the lines before the source so that Lua's line numbers are the file's. */
        struct sp_loc loc;
        sp_flow_scalar_loc(cc, at, 0, &loc);
        int pad = loc.line > 1 ? loc.line - 1 : 0;
        src = sp_xmalloc((size_t)pad + strlen(conf.inline_src) + 1);
        memset(src, '\n', (size_t)pad);
        strcpy(src + pad, conf.inline_src);
        so.source = src;
        chunk = sp_xstrdup(node->loc.file != NULL ? node->loc.file : "inline");
        so.chunkname = chunk;
    }
    struct sp_err err;
    sp_err_clear(&err);
    st->s = sp_script_compile(&so, &err);
    bool conf_inline = conf.inline_src != NULL;
    free(path);
    free(src);
    free(chunk);
    sp_opt_free_conf(script_opts, &conf);
    if (st->s == NULL) {
        script_compile_error(cc, at, conf_inline, &err);
        return SP_EINVAL;
    }
    return 0;
}

/* The JSON of each column of tup (key_only: only key columns are part of it). */
static int script_row_fill(struct script_state *st, struct script_row *r, const struct sp_event *ev,
                           const struct sp_tuple *tup, bool key_only, struct sp_err *err)
{
    const struct sp_relation *rel = ev->rel;
    if (tup->ncols != rel->ncols) {
        return sp_err_set(err, SP_EINVAL, "table \"%s.%s\": row has %d columns, relation has %d",
                          rel->schema, rel->table, tup->ncols, rel->ncols);
    }
    if (r->cap < rel->ncols) {
        r->cap = rel->ncols;
        r->json = sp_xrealloc(r->json, sizeof(*r->json) * (size_t)r->cap);
        r->len = sp_xrealloc(r->len, sizeof(*r->len) * (size_t)r->cap);
        r->off = sp_xrealloc(r->off, sizeof(*r->off) * (size_t)r->cap);
    }
    sp_buf_reset(&r->buf);
    for (int i = 0; i < rel->ncols; i++) {
        if (key_only && !rel->cols[i].key) {
            r->off[i] = SIZE_MAX;
            continue;
        }
        r->off[i] = r->buf.len;
        int rc = sp_format_json_column(&st->fmt, ev, tup, i, &r->buf, err);
        if (rc < 0) {
            return rc;
        }
        r->len[i] = r->buf.len - r->off[i];
    }
    /* The buffer is complete: now its address is final. */
    for (int i = 0; i < rel->ncols; i++) {
        r->json[i] = r->off[i] == SIZE_MAX ? NULL : r->buf.data + r->off[i];
    }
    r->row.json = r->json;
    r->row.len = r->len;
    return 0;
}

static int script_apply(struct sp_flow *fl, const struct sp_event *ev, struct sp_event_list *out,
                        struct sp_err *err)
{
    struct script_state *st = fl->state;
    struct sp_script_input in = {.ev = ev};
    int rc = 0;
    if (ev->rel != NULL) {
        if (ev->before != NULL) {
            rc = script_row_fill(st, &st->before, ev, ev->before, ev->before_key_only, err);
            in.before = &st->before.row;
        }
        if (rc == 0 && ev->after != NULL) {
            rc = script_row_fill(st, &st->after, ev, ev->after, false, err);
            in.after = &st->after.row;
        }
    }
    if (rc == 0 && ev->op != SP_OP_TRUNCATE) {
        sp_buf_reset(&st->key);
        rc = sp_format_json_key(&st->fmt, ev, &st->key, err);
        if (rc == 0 && st->key.len > 0) {
            /* a key set by an earlier flow is a string; the script sees it as one */
            in.key = st->key.data;
            in.key_len = st->key.len;
        }
    }
    if (rc < 0) {
        return rc;
    }
    struct sp_script_result res = {0};
    rc = sp_script_call(st->s, &in, &res, err);
    if (rc < 0) {
        sp_script_result_fini(&res);
        return rc;
    }
    if (res.verdict == SP_SCRIPT_UNCHANGED) {
        sp_script_result_fini(&res);
        return SP_FLOW_PASS;
    }
    for (int i = 0; i < res.n; i++) {
        sp_event_list_push(out, res.out[i]);
    }
    free(res.out);
    return res.n == 0 ? SP_FLOW_DROP : SP_FLOW_EMIT;
}

static void script_row_fini(struct script_row *r)
{
    free(r->json);
    free(r->len);
    free(r->off);
    sp_buf_fini(&r->buf);
}

static void script_free(struct sp_flow *fl)
{
    struct script_state *st = fl->state;
    if (st == NULL) {
        return;
    }
    sp_script_free(st->s);
    script_row_fini(&st->before);
    script_row_fini(&st->after);
    sp_buf_fini(&st->key);
    free(st);
    fl->state = NULL;
}

const struct sp_flow_ops sp_flow_script = {
    .name = "script",
    .usage = "a mapping (docs/flow-script.md), e.g. `{file: orders.lua, function: transform}`",
    .opts = script_opts,
    .summary = "a Lua function that changes, drops or fans out each event",
    .compile = script_compile,
    .apply = script_apply,
    .free = script_free,
};
