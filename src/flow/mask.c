// SPDX-License-Identifier: Apache-2.0
/*
 * Flow "mask": per table and column, replace values before they leave
 * siphon:
 *
 *   - mask:
 *       public.customers:
 *         email: {hash: sha256, salt: "${file:/run/secrets/mask_salt}"}
 *         phone: {replace: 8}      # "********", whatever the length
 *         note:  {truncate: 16}    # the first 16 characters
 *
 * A masked column becomes a text column (its JSON value a string). NULL
 * stays NULL; an unchanged TOASTed value PostgreSQL did not send stays the
 * placeholder. Masks are applied to the old and the new row, and the chain
 * applies them to the dead letter of an event that a later flow rejects, so
 * the original value reaches no sink, dead letter, log line or error.
 */
#include <stdint.h>

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "config/diag.h"
#include "config/schema.h"
#include "config/yaml.h"
#include "flow/flow.h"
#include "flow/relmap.h"
#include "telemetry/log.h"
#include "util/buf.h"
#include "util/mem.h"

#define MASK_MAX_LEN 4096

enum mask_kind {
    MASK_REPLACE,
    MASK_HASH,
    MASK_TRUNCATE,
};

struct mask_col_conf {
    int64_t replace;
    char *hash;
    char *salt;
    int64_t truncate;
};

static const struct sp_opt mask_col_opts[] = {
    SP_OPT_INT("replace", struct mask_col_conf, replace, NULL, 1, MASK_MAX_LEN,
               "replace the value with this many '*' characters, whatever its length"),
    SP_OPT_STR("hash", struct mask_col_conf, hash, NULL, 0,
               "replace the value with the hex SHA-256 of salt + value: \"sha256\""),
    {"salt", SP_OPT_T_STR, offsetof(struct mask_col_conf, salt), NULL, SP_OPT_SECRET, 0, 0, NULL,
     "with hash: the secret salt (use ${file:PATH} or ${NAME})"},
    SP_OPT_INT("truncate", struct mask_col_conf, truncate, NULL, 1, MASK_MAX_LEN,
               "keep only the first this many characters"),
    SP_OPT_END,
};

struct mask_col {
    char *name;
    enum mask_kind kind;
    int64_t n;
    char *salt;
};

struct mask_table {
    struct mask_col *cols;
    int ncols;
};

struct mask_state {
    struct sp_table_rule *rules;
    int nrules;
    struct sp_relmap cache;
    EVP_MD_CTX *md;
    struct sp_buf buf;
};

static const struct sp_type mask_text_type = {
    .oid = 25, .kind = SP_TYPE_STRING, .delim = ',', .elem = NULL, .name = "text"};

static void mask_table_free(void *p)
{
    struct mask_table *t = p;
    if (t == NULL) {
        return;
    }
    for (int i = 0; i < t->ncols; i++) {
        free(t->cols[i].name);
        if (t->cols[i].salt != NULL) {
            memset(t->cols[i].salt, 0, strlen(t->cols[i].salt));
        }
        free(t->cols[i].salt);
    }
    free(t->cols);
    free(t);
}

static bool mask_col_compile(const struct sp_flow_cctx *cc, const char *table, struct sp_node *key,
                             struct sp_node *value, struct mask_col *mc)
{
    struct mask_col_conf conf = {0};
    char *what = sp_xasprintf("flow \"mask\", column \"%s\" of \"%s\"", key->str, table);
    int errs = sp_flow_opts(cc, what, mask_col_opts, value, &conf);
    int kinds = (conf.replace > 0) + (conf.hash != NULL) + (conf.truncate > 0);
    bool ok = errs == 0;
    if (ok && kinds != 1) {
        struct sp_diag_item *it =
            sp_diag_error(cc->d, &value->loc, value->span,
                          "%s: %s: give exactly one of replace, hash or truncate", cc->what, what);
        sp_diag_hint(it, "e.g. {replace: 8}, {hash: sha256, salt: \"${file:/run/secrets/salt}\"} "
                         "or {truncate: 16}");
        ok = false;
    }
    if (ok && conf.hash != NULL && strcmp(conf.hash, "sha256") != 0) {
        struct sp_node *h = sp_node_get(value, "hash");
        struct sp_diag_item *it = sp_diag_error(
            cc->d, &h->loc, h->span, "%s: %s: unknown hash \"%s\"", cc->what, what, conf.hash);
        sp_diag_hint(it, "the hash is \"sha256\"");
        ok = false;
    }
    if (ok && conf.hash != NULL && (conf.salt == NULL || conf.salt[0] == '\0')) {
        struct sp_diag_item *it = sp_diag_error(cc->d, &value->loc, value->span,
                                                "%s: %s: a hash needs a salt", cc->what, what);
        sp_diag_hint(it, "an unsalted hash of e-mail addresses or phone numbers is reversed by "
                         "hashing candidates; set salt: \"${file:/run/secrets/mask_salt}\"");
        ok = false;
    }
    if (ok && conf.salt != NULL && conf.hash == NULL) {
        struct sp_node *s = sp_node_get(value, "salt");
        sp_diag_error(cc->d, &s->loc, s->span, "%s: %s: salt is only used with hash", cc->what,
                      what);
        ok = false;
    }
    free(what);
    if (ok) {
        mc->name = sp_xstrdup(key->str);
        if (conf.replace > 0) {
            mc->kind = MASK_REPLACE;
            mc->n = conf.replace;
        } else if (conf.truncate > 0) {
            mc->kind = MASK_TRUNCATE;
            mc->n = conf.truncate;
        } else {
            mc->kind = MASK_HASH;
            mc->salt = conf.salt;
            conf.salt = NULL;
        }
    }
    sp_opt_free_conf(mask_col_opts, &conf);
    return ok;
}

static void *mask_table_compile(void *ctx, struct sp_node *value, const char *table)
{
    const struct sp_flow_cctx *cc = ctx;
    if (value->kind != SP_NODE_MAP || value->n == 0) {
        struct sp_diag_item *it =
            sp_diag_error(cc->d, &value->loc, value->span,
                          "%s: flow \"mask\", table \"%s\": expected a mapping of columns to "
                          "masks, not %s",
                          cc->what, table, sp_node_kind_name(value));
        sp_diag_hint(it, "e.g. {email: {hash: sha256, salt: \"${MASK_SALT}\"}, phone: {replace: "
                         "8}}");
        return NULL;
    }
    struct mask_table *t = sp_xcalloc(1, sizeof(*t));
    t->cols = sp_xcalloc((size_t)value->n, sizeof(*t->cols));
    bool ok = true;
    for (int i = 0; i < value->n; i++) {
        if (mask_col_compile(cc, table, value->pairs[i].key, value->pairs[i].value,
                             &t->cols[t->ncols])) {
            t->ncols++;
        } else {
            ok = false;
        }
    }
    if (!ok) {
        mask_table_free(t);
        return NULL;
    }
    return t;
}

static int mask_compile(struct sp_flow *fl, struct sp_node *node, const struct sp_flow_cctx *cc)
{
    struct mask_state *st = sp_xcalloc(1, sizeof(*st));
    fl->state = st;
    sp_buf_init(&st->buf);
    st->md = EVP_MD_CTX_new();
    if (st->md == NULL) {
        sp_diag_error(cc->d, &node->loc, node->span, "%s: flow \"mask\": out of memory", cc->what);
        return SP_EINVAL;
    }
    return sp_table_rules_compile(node, cc, "mask",
                                  "mask: {public.customers: {email: {replace: 8}}}",
                                  mask_table_compile, (void *)cc, &st->rules, &st->nrules);
}

static void mask_build(void *ctx, const struct sp_relation *src, struct sp_relmap_entry *en)
{
    struct mask_state *st = ctx;
    const struct mask_table *t = sp_table_rule_find(st->rules, st->nrules, src);
    if (t == NULL) {
        return;
    }
    int nmasked = 0;
    const void **rules = sp_xcalloc((size_t)(src->ncols > 0 ? src->ncols : 1), sizeof(void *));
    for (int c = 0; c < t->ncols; c++) {
        bool found = false;
        for (int i = 0; i < src->ncols; i++) {
            if (strcmp(src->cols[i].name, t->cols[c].name) == 0) {
                rules[i] = &t->cols[c];
                found = true;
                nmasked++;
            }
        }
        if (!found) {
            sp_log_warn(&sp_log_main, "flow mask: table \"%s.%s\" has no column \"%s\"",
                        src->schema, src->table, t->cols[c].name);
        }
    }
    if (nmasked == 0) {
        free(rules);
        return;
    }
    en->rel = sp_relmap_new_rel(src, src->ncols);
    en->map = sp_xcalloc((size_t)(src->ncols > 0 ? src->ncols : 1), sizeof(int));
    for (int i = 0; i < src->ncols; i++) {
        en->rel->cols[i] = src->cols[i];
        en->rel->cols[i].name = sp_xstrdup(src->cols[i].name);
        en->rel->cols[i].json_name = NULL; /* owned by src; the format falls back to name */
        en->rel->cols[i].json_name_len = 0;
        if (rules[i] != NULL) {
            en->rel->cols[i].type_oid = mask_text_type.oid;
            en->rel->cols[i].typmod = -1;
            en->rel->cols[i].type = &mask_text_type;
        }
        en->map[i] = i;
    }
    en->rules = rules;
}

/* The first n UTF-8 characters of s. */
static size_t mask_utf8_prefix(const char *s, size_t len, int64_t n)
{
    size_t i = 0;
    for (int64_t k = 0; k < n && i < len; k++) {
        size_t l = sp_utf8_decode((const unsigned char *)s + i, len - i, NULL);
        i += l > 0 ? l : 1;
    }
    return i;
}

static void mask_value(struct mask_state *st, const struct mask_col *mc, struct sp_event *ev,
                       struct sp_datum *d)
{
    if (d->kind != SP_DATUM_TEXT && d->kind != SP_DATUM_BINARY) {
        return;
    }
    const char *s = d->data != NULL ? d->data : "";
    size_t len = d->data != NULL ? d->len : 0;
    sp_buf_reset(&st->buf);
    switch (mc->kind) {
    case MASK_REPLACE:
        for (int64_t i = 0; i < mc->n; i++) {
            sp_buf_putc(&st->buf, '*');
        }
        break;
    case MASK_TRUNCATE:
        if (d->kind == SP_DATUM_BINARY) {
            /* bytes: keep the first n bytes as hex text */
            static const char hex[] = "0123456789abcdef";
            for (size_t i = 0; i < len && (int64_t)i < mc->n; i++) {
                sp_buf_putc(&st->buf, hex[(unsigned char)s[i] >> 4]);
                sp_buf_putc(&st->buf, hex[(unsigned char)s[i] & 15]);
            }
        } else {
            sp_buf_append(&st->buf, s, mask_utf8_prefix(s, len, mc->n));
        }
        break;
    case MASK_HASH:
    default: {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        static const char hex[] = "0123456789abcdef";
        if (EVP_DigestInit_ex(st->md, EVP_sha256(), NULL) != 1 ||
            EVP_DigestUpdate(st->md, mc->salt, strlen(mc->salt)) != 1 ||
            EVP_DigestUpdate(st->md, s, len) != 1 || EVP_DigestFinal_ex(st->md, md, &mdlen) != 1) {
            /* never leave the original: an unhashable value becomes the replacement */
            sp_buf_puts(&st->buf, "********");
            break;
        }
        for (unsigned int i = 0; i < mdlen; i++) {
            sp_buf_putc(&st->buf, hex[md[i] >> 4]);
            sp_buf_putc(&st->buf, hex[md[i] & 15]);
        }
        break;
    }
    }
    d->kind = SP_DATUM_TEXT;
    d->data = sp_arena_strndup(&ev->arena, st->buf.data != NULL ? st->buf.data : "", st->buf.len);
    d->len = (uint32_t)st->buf.len;
}

static int mask_apply(struct sp_flow *fl, const struct sp_event *ev, struct sp_event_list *out,
                      struct sp_err *err)
{
    (void)err;
    struct mask_state *st = fl->state;
    if (ev->rel == NULL) {
        return SP_FLOW_PASS;
    }
    const struct sp_relmap_entry *en = sp_relmap_get(&st->cache, ev->rel, mask_build, st);
    if (en->rel == NULL) {
        return SP_FLOW_PASS;
    }
    struct sp_event *cp = sp_relmap_apply(en, ev);
    struct sp_tuple *tups[2] = {cp->before, cp->after};
    for (int t = 0; t < 2; t++) {
        for (int i = 0; tups[t] != NULL && i < tups[t]->ncols && i < en->rel->ncols; i++) {
            if (en->rules[i] != NULL) {
                mask_value(st, en->rules[i], cp, &tups[t]->cols[i]);
            }
        }
    }
    sp_event_list_push(out, cp);
    return SP_FLOW_EMIT;
}

static void mask_free(struct sp_flow *fl)
{
    struct mask_state *st = fl->state;
    if (st == NULL) {
        return;
    }
    sp_table_rules_free(st->rules, st->nrules, mask_table_free);
    sp_relmap_free(&st->cache);
    EVP_MD_CTX_free(st->md);
    sp_buf_fini(&st->buf);
    free(st);
    fl->state = NULL;
}

const struct sp_flow_ops sp_flow_mask = {
    .name = "mask",
    .usage = "a mapping of tables to a mapping of columns to one mask each, e.g. "
             "`{public.customers: {email: {hash: sha256, salt: \"${MASK_SALT}\"}, phone: {replace: "
             "8}}}` (docs/flow-select-mask.md)",
    .opts = mask_col_opts,
    .summary = "replace, hash (salted SHA-256) or truncate column values per table",
    .compile = mask_compile,
    .apply = mask_apply,
    .free = mask_free,
    .redacts = true,
};
