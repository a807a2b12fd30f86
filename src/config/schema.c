// SPDX-License-Identifier: Apache-2.0
/*
 * The generic option validator: one table per plugin (core/opt.h), one
 * function that checks a YAML mapping against it and fills the plugin's conf
 * struct. Types, bounds, enum values, sizes, durations, booleans, unknown keys
 * (with a did-you-mean by edit distance), required options and defaults are
 * all handled here, so plugins only check what spans several options.
 *
 * Messages never contain the value of an SP_OPT_SECRET option. Duplicate
 * keys are caught earlier, by the YAML loader.
 */
#include "config/schema.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/diag.h"
#include "util/buf.h"

#define OPT_FIELD(conf, o, T) ((T *)(void *)((char *)(conf) + (o)->offset))

/* ---- value parsers ---- */

/* Decimal digits of s into *out; returns the position after them, or NULL. */
static const char *opt_digits(const char *s, uint64_t limit, uint64_t *out, bool *overflow)
{
    uint64_t v = 0;
    const char *p = s;
    *overflow = false;
    if (!isdigit((unsigned char)*p)) {
        return NULL;
    }
    for (; isdigit((unsigned char)*p); p++) {
        unsigned dig = (unsigned)(*p - '0');
        if (v > (limit - dig) / 10) {
            *overflow = true;
            v = limit;
        } else {
            v = v * 10 + dig;
        }
    }
    *out = v;
    return p;
}

int sp_opt_parse_int(const char *s, int64_t *out)
{
    bool neg = false;
    bool overflow;
    uint64_t v;
    if (*s == '+' || *s == '-') {
        neg = *s == '-';
        s++;
    }
    const char *end =
        opt_digits(s, neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, &v, &overflow);
    if (end == NULL || *end != '\0') {
        return -1;
    }
    if (overflow) {
        return -2;
    }
    if (neg) {
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        *out = (int64_t)v;
    }
    return 0;
}

struct opt_unit {
    const char *name;
    int64_t mult;
};

static const struct opt_unit size_units[] = {
    {"B", 1},
    {"kB", INT64_C(1000)},
    {"KB", INT64_C(1000)},
    {"KiB", INT64_C(1024)},
    {"MB", INT64_C(1000000)},
    {"MiB", INT64_C(1024) * 1024},
    {"GB", INT64_C(1000000000)},
    {"GiB", INT64_C(1024) * 1024 * 1024},
    {"TB", INT64_C(1000000000000)},
    {"TiB", INT64_C(1024) * 1024 * 1024 * 1024},
};

static const struct opt_unit duration_units[] = {
    {"ms", 1},
    {"s", 1000},
    {"m", INT64_C(60000)},
    {"h", INT64_C(3600000)},
};

static int opt_parse_units(const char *s, const struct opt_unit *units, size_t nunits, int64_t *out)
{
    bool overflow;
    uint64_t v;
    const char *p = opt_digits(s, (uint64_t)INT64_MAX, &v, &overflow);
    if (p == NULL) {
        return -1;
    }
    if (*p == ' ') {
        p++;
        if (*p == '\0') {
            return -1;
        }
    }
    int64_t mult = 1;
    if (*p != '\0') {
        size_t i = 0;
        for (; i < nunits; i++) {
            if (strcmp(p, units[i].name) == 0) {
                break;
            }
        }
        if (i == nunits) {
            return -1;
        }
        mult = units[i].mult;
    }
    if (overflow || v > (uint64_t)(INT64_MAX / mult)) {
        return -2;
    }
    *out = (int64_t)v * mult;
    return 0;
}

int sp_opt_parse_size(const char *s, int64_t *out)
{
    return opt_parse_units(s, size_units, SP_ARRAY_LEN(size_units), out);
}

int sp_opt_parse_duration(const char *s, int64_t *out)
{
    return opt_parse_units(s, duration_units, SP_ARRAY_LEN(duration_units), out);
}

int sp_opt_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < SP_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

void sp_opt_format_size(int64_t v, char *buf, size_t n)
{
    static const struct opt_unit units[] = {
        {"TiB", INT64_C(1024) * 1024 * 1024 * 1024},
        {"GiB", INT64_C(1024) * 1024 * 1024},
        {"MiB", INT64_C(1024) * 1024},
        {"KiB", INT64_C(1024)},
    };
    for (size_t i = 0; i < SP_ARRAY_LEN(units); i++) {
        if (v != 0 && v % units[i].mult == 0) {
            snprintf(buf, n, "%" PRId64 "%s", v / units[i].mult, units[i].name);
            return;
        }
    }
    snprintf(buf, n, "%" PRId64 "B", v);
}

void sp_opt_format_duration(int64_t v, char *buf, size_t n)
{
    for (size_t i = SP_ARRAY_LEN(duration_units); i-- > 1;) {
        if (v != 0 && v % duration_units[i].mult == 0) {
            snprintf(buf, n, "%" PRId64 "%s", v / duration_units[i].mult, duration_units[i].name);
            return;
        }
    }
    snprintf(buf, n, "%" PRId64 "ms", v);
}

/* ---- did you mean ---- */

/* Lower-case copy of s into buf (size bytes); returns its length, or -1 when s is too long. */
static int opt_lower(const char *s, char *buf, size_t size)
{
    size_t n = strlen(s);
    if (n >= size) {
        return -1;
    }
    for (size_t i = 0; i <= n; i++) {
        buf[i] = (char)tolower((unsigned char)s[i]);
    }
    return (int)n;
}

int sp_str_distance(const char *a, const char *b)
{
    enum { MAXLEN = 64 };
    char x[MAXLEN + 1] = {0};
    char y[MAXLEN + 1] = {0};
    int xl = opt_lower(a, x, sizeof(x));
    int yl = opt_lower(b, y, sizeof(y));
    if (xl < 0 || yl < 0) {
        return MAXLEN;
    }
    size_t la = (size_t)xl;
    size_t lb = (size_t)yl;
    /* three rows: i-2, i-1, i (optimal string alignment distance) */
    int rows[3][MAXLEN + 1];
    for (size_t j = 0; j <= lb; j++) {
        rows[0][j] = (int)j;
    }
    for (size_t i = 1; i <= la; i++) {
        int *cur = rows[i % 3];
        const int *prev = rows[(i - 1) % 3];
        const int *prev2 = rows[(i + 1) % 3];
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int best = prev[j] + 1;
            if (cur[j - 1] + 1 < best) {
                best = cur[j - 1] + 1;
            }
            if (prev[j - 1] + (x[i - 1] != y[j - 1]) < best) {
                best = prev[j - 1] + (x[i - 1] != y[j - 1]);
            }
            bool swapped = i > 1 && j > 1 && x[i - 1] == y[j - 2] && x[i - 2] == y[j - 1];
            if (swapped && prev2[j - 2] + 1 < best) {
                best = prev2[j - 2] + 1;
            }
            cur[j] = best;
        }
    }
    return rows[la % 3][lb];
}

const char *sp_str_suggest(const char *word, const char *const *names, size_t n)
{
    size_t len = strlen(word);
    int limit = len <= 3 ? 1 : 2;
    const char *best = NULL;
    int best_d = limit + 1;
    for (size_t i = 0; i < n; i++) {
        if (names[i] == NULL || strcmp(names[i], word) == 0) {
            continue;
        }
        int d = sp_str_distance(word, names[i]);
        if (d < best_d) {
            best = names[i];
            best_d = d;
        }
    }
    return best;
}

/* ---- the validator ---- */

bool sp_opt_bounds(const struct sp_opt *o, int64_t *lo, int64_t *hi)
{
    if (o->min == 0 && o->max == 0) {
        return false;
    }
    *lo = o->min;
    *hi = (o->max == 0 && o->min > 0) ? INT64_MAX : o->max;
    return true;
}

static void opt_format_value(const struct sp_opt *o, int64_t v, char *buf, size_t n)
{
    if (o->type == SP_OPT_T_SIZE) {
        sp_opt_format_size(v, buf, n);
    } else if (o->type == SP_OPT_T_DURATION) {
        sp_opt_format_duration(v, buf, n);
    } else {
        snprintf(buf, n, "%" PRId64, v);
    }
}

static size_t opt_count(const struct sp_opt *opts)
{
    size_t n = 0;
    while (opts[n].name != NULL) {
        n++;
    }
    return n;
}

static const char *opt_expected(const struct sp_opt *o)
{
    switch (o->type) {
    case SP_OPT_T_INT:
        return "an integer";
    case SP_OPT_T_BOOL:
        return "true or false";
    case SP_OPT_T_DURATION:
        return "a duration";
    case SP_OPT_T_SIZE:
        return "a size";
    case SP_OPT_T_STRLIST:
        return "a list of strings";
    case SP_OPT_T_MAP:
        return "a mapping of names to strings";
    case SP_OPT_T_STR:
    case SP_OPT_T_ENUM:
    default:
        return "a string";
    }
}

/* Message prefix "what: " (or nothing). */
static void opt_prefix(const struct sp_opt_ctx *ctx, struct sp_buf *b)
{
    if (ctx->what != NULL && ctx->what[0] != '\0') {
        sp_buf_printf(b, "%s: ", ctx->what);
    }
}

static struct sp_diag_item *opt_err(const struct sp_opt_ctx *ctx, const struct sp_node *at,
                                    const char *fmt, ...) SP_PRINTF(3, 4);

static struct sp_diag_item *opt_err(const struct sp_opt_ctx *ctx, const struct sp_node *at,
                                    const char *fmt, ...)
{
    struct sp_buf b;
    va_list ap;
    sp_buf_init(&b);
    opt_prefix(ctx, &b);
    va_start(ap, fmt);
    sp_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    struct sp_diag_item *it = sp_diag_error(ctx->d, &at->loc, at->span, "%s", b.data);
    sp_buf_fini(&b);
    return it;
}

static const char *opt_noun(const struct sp_opt_ctx *ctx)
{
    return ctx->noun != NULL ? ctx->noun : "option";
}

/* ", not \"value\"" for messages, or nothing for secrets. */
static void opt_not_value(const struct sp_opt *o, const struct sp_node *v, char *buf, size_t n)
{
    if ((o->flags & SP_OPT_SECRET) != 0) {
        buf[0] = '\0';
        return;
    }
    snprintf(buf, n, ", not \"%.200s%s\"", v->str, v->len > 200 ? "..." : "");
}

static int opt_check_range(const struct sp_opt_ctx *ctx, const struct sp_opt *o,
                           const struct sp_node *v, int64_t val)
{
    int64_t lo;
    int64_t hi;
    if (!sp_opt_bounds(o, &lo, &hi) || (val >= lo && val <= hi)) {
        return 0;
    }
    char los[32];
    char his[32];
    char notv[256];
    opt_format_value(o, lo, los, sizeof(los));
    opt_format_value(o, hi, his, sizeof(his));
    opt_not_value(o, v, notv, sizeof(notv));
    if (hi == INT64_MAX) {
        opt_err(ctx, v, "%s \"%s\" must be at least %s%s", opt_noun(ctx), o->name, los, notv);
    } else {
        opt_err(ctx, v, "%s \"%s\" must be between %s and %s%s", opt_noun(ctx), o->name, los, his,
                notv);
    }
    return 1;
}

static void opt_enum_list(const struct sp_opt *o, struct sp_buf *b)
{
    for (size_t i = 0; o->enum_names != NULL && o->enum_names[i] != NULL; i++) {
        sp_buf_printf(b, "%s%s", i > 0 ? ", " : "", o->enum_names[i]);
    }
}

static int opt_enum_index(const struct sp_opt *o, const char *s)
{
    for (int i = 0; o->enum_names != NULL && o->enum_names[i] != NULL; i++) {
        if (strcmp(o->enum_names[i], s) == 0) {
            return i;
        }
    }
    return -1;
}

static int opt_set_number(const struct sp_opt_ctx *ctx, const struct sp_opt *o,
                          const struct sp_node *v, void *conf)
{
    char notv[256];
    int64_t num = 0;
    int rc;

    opt_not_value(o, v, notv, sizeof(notv));
    if (o->type == SP_OPT_T_INT) {
        rc = sp_opt_parse_int(v->str, &num);
    } else if (o->type == SP_OPT_T_SIZE) {
        rc = sp_opt_parse_size(v->str, &num);
    } else {
        rc = sp_opt_parse_duration(v->str, &num);
    }
    if (rc == -2) {
        opt_err(ctx, v, "%s \"%s\" is too large%s", opt_noun(ctx), o->name, notv);
        return 1;
    }
    if (rc != 0) {
        struct sp_diag_item *it = opt_err(ctx, v, "%s \"%s\" must be %s%s", opt_noun(ctx), o->name,
                                          opt_expected(o), notv);
        if (o->type == SP_OPT_T_SIZE) {
            sp_diag_hint(it, "write a number with a unit: 512KiB, 64MiB, 1GiB, 10MB or "
                             "100kB (a bare number means bytes)");
        } else if (o->type == SP_OPT_T_DURATION) {
            sp_diag_hint(it, "write a number with a unit: 250ms, 5s, 2m or 1h (a bare "
                             "number means milliseconds)");
        }
        return 1;
    }
    if (opt_check_range(ctx, o, v, num) != 0) {
        return 1;
    }
    *OPT_FIELD(conf, o, int64_t) = num;
    return 0;
}

static int opt_set_enum(const struct sp_opt_ctx *ctx, const struct sp_opt *o,
                        const struct sp_node *v, void *conf)
{
    int idx = opt_enum_index(o, v->str);
    if (idx >= 0) {
        *OPT_FIELD(conf, o, int) = idx;
        return 0;
    }
    struct sp_buf list;
    sp_buf_init(&list);
    opt_enum_list(o, &list);
    if ((o->flags & SP_OPT_SECRET) != 0) {
        opt_err(ctx, v, "invalid value for %s \"%s\" (allowed values: %s)", opt_noun(ctx), o->name,
                list.data);
    } else {
        struct sp_diag_item *it =
            opt_err(ctx, v, "invalid value \"%s\" for %s \"%s\" (allowed values: %s)", v->str,
                    opt_noun(ctx), o->name, list.data);
        size_t n = 0;
        while (o->enum_names[n] != NULL) {
            n++;
        }
        const char *s = sp_str_suggest(v->str, o->enum_names, n);
        if (s != NULL) {
            sp_diag_hint(it, "did you mean \"%s\"?", s);
        }
    }
    sp_buf_fini(&list);
    return 1;
}

/* Parse a scalar value of a scalar-typed option into its field. */
static int opt_set_scalar(const struct sp_opt_ctx *ctx, const struct sp_opt *o, struct sp_node *v,
                          void *conf)
{
    char notv[256];
    bool bv;

    switch (o->type) {
    case SP_OPT_T_STR:
        if (v->len == 0 && (o->flags & SP_OPT_REQUIRED) != 0) {
            opt_err(ctx, v, "%s \"%s\" must not be empty", opt_noun(ctx), o->name);
            return 1;
        }
        free(*OPT_FIELD(conf, o, char *));
        *OPT_FIELD(conf, o, char *) = sp_xstrdup(v->str);
        return 0;
    case SP_OPT_T_BOOL:
        if (sp_opt_parse_bool(v->str, &bv) != 0) {
            opt_not_value(o, v, notv, sizeof(notv));
            struct sp_diag_item *it =
                opt_err(ctx, v, "%s \"%s\" must be true or false%s", opt_noun(ctx), o->name, notv);
            sp_diag_hint(it, "write true or false (yes/no and on/off work too)");
            return 1;
        }
        *OPT_FIELD(conf, o, bool) = bv;
        return 0;
    case SP_OPT_T_INT:
    case SP_OPT_T_DURATION:
    case SP_OPT_T_SIZE:
        return opt_set_number(ctx, o, v, conf);
    case SP_OPT_T_ENUM:
        return opt_set_enum(ctx, o, v, conf);
    default:
        return 0;
    }
}

static int opt_set_strlist(const struct sp_opt_ctx *ctx, const struct sp_opt *o, struct sp_node *v,
                           void *conf)
{
    struct sp_strlist *sl = OPT_FIELD(conf, o, struct sp_strlist);
    int errors = 0;

    if (v->kind == SP_NODE_SCALAR) {
        sl->items = sp_xcalloc(1, sizeof(char *));
        sl->items[0] = sp_xstrdup(v->str);
        sl->n = 1;
        return 0;
    }
    if (v->kind != SP_NODE_SEQ) {
        opt_err(ctx, v, "%s \"%s\" must be a list of strings, not %s", opt_noun(ctx), o->name,
                sp_node_kind_name(v));
        return 1;
    }
    if (v->n == 0 && (o->flags & SP_OPT_REQUIRED) != 0) {
        opt_err(ctx, v, "%s \"%s\" must not be empty", opt_noun(ctx), o->name);
        return 1;
    }
    sl->items = sp_xcalloc((size_t)(v->n > 0 ? v->n : 1), sizeof(char *));
    for (int i = 0; i < v->n; i++) {
        struct sp_node *item = v->items[i];
        if (item->kind != SP_NODE_SCALAR || sp_node_is_null(item)) {
            opt_err(ctx, item, "%s \"%s\" must be a list of strings; item %d is %s", opt_noun(ctx),
                    o->name, i + 1, sp_node_kind_name(item));
            errors++;
            continue;
        }
        sl->items[sl->n++] = sp_xstrdup(item->str);
    }
    return errors;
}

static int opt_set_map(const struct sp_opt_ctx *ctx, const struct sp_opt *o, struct sp_node *v,
                       void *conf)
{
    struct sp_strmap *sm = OPT_FIELD(conf, o, struct sp_strmap);
    int errors = 0;

    if (v->kind != SP_NODE_MAP) {
        opt_err(ctx, v, "%s \"%s\" must be a mapping of names to strings, not %s", opt_noun(ctx),
                o->name, sp_node_kind_name(v));
        return 1;
    }
    size_t cap = (size_t)(v->n > 0 ? v->n : 1);
    sm->keys = sp_xcalloc(cap, sizeof(char *));
    sm->values = sp_xcalloc(cap, sizeof(char *));
    for (int i = 0; i < v->n; i++) {
        struct sp_node *val = v->pairs[i].value;
        if (val->kind != SP_NODE_SCALAR) {
            opt_err(ctx, val, "%s \"%s\": the value of \"%s\" must be a string, not %s",
                    opt_noun(ctx), o->name, v->pairs[i].key->str, sp_node_kind_name(val));
            errors++;
            continue;
        }
        sm->keys[sm->n] = sp_xstrdup(v->pairs[i].key->str);
        sm->values[sm->n] = sp_xstrdup(sp_node_is_null(val) ? "" : val->str);
        sm->n++;
    }
    return errors;
}

/* Mark v and everything under it secret, whatever its shape (even a wrong one). */
static void opt_mark_secret(struct sp_node *v)
{
    v->secret = true;
    for (int i = 0; v->kind == SP_NODE_SEQ && i < v->n; i++) {
        opt_mark_secret(v->items[i]);
    }
    for (int i = 0; v->kind == SP_NODE_MAP && i < v->n; i++) {
        opt_mark_secret(v->pairs[i].key);
        opt_mark_secret(v->pairs[i].value);
    }
}

static int opt_set(const struct sp_opt_ctx *ctx, const struct sp_opt *o, struct sp_node *v,
                   void *conf)
{
    if ((o->flags & SP_OPT_SECRET) != 0) {
        opt_mark_secret(v);
    }
    if (o->type == SP_OPT_T_STRLIST) {
        return opt_set_strlist(ctx, o, v, conf);
    }
    if (o->type == SP_OPT_T_MAP) {
        return opt_set_map(ctx, o, v, conf);
    }
    if (v->kind != SP_NODE_SCALAR) {
        opt_err(ctx, v, "%s \"%s\" must be %s, not %s", opt_noun(ctx), o->name, opt_expected(o),
                sp_node_kind_name(v));
        return 1;
    }
    return opt_set_scalar(ctx, o, v, conf);
}

static bool opt_skipped(const struct sp_opt_ctx *ctx, const char *key)
{
    for (size_t i = 0; ctx->skip != NULL && ctx->skip[i] != NULL; i++) {
        if (strcmp(ctx->skip[i], key) == 0) {
            return true;
        }
    }
    return false;
}

static void opt_unknown(const struct sp_opt_ctx *ctx, const struct sp_opt *opts,
                        const struct sp_node *key)
{
    size_t nopts = opt_count(opts);
    size_t nskip = 0;
    while (ctx->skip != NULL && ctx->skip[nskip] != NULL) {
        nskip++;
    }
    const char **names = sp_xcalloc(nopts + nskip + 1, sizeof(char *));
    size_t n = 0;
    for (size_t i = 0; i < nopts; i++) {
        names[n++] = opts[i].name;
    }
    for (size_t i = 0; i < nskip; i++) {
        names[n++] = ctx->skip[i];
    }
    struct sp_diag_item *it = opt_err(ctx, key, "unknown %s \"%s\"", opt_noun(ctx), key->str);
    const char *s = sp_str_suggest(key->str, names, n);
    if (s != NULL) {
        sp_diag_hint(it, "did you mean \"%s\"?", s);
    } else if (n > 0) {
        struct sp_buf list;
        sp_buf_init(&list);
        for (size_t i = 0; i < n; i++) {
            sp_buf_printf(&list, "%s%s", i > 0 ? ", " : "", names[i]);
        }
        sp_diag_hint(it, "valid %ss: %s", opt_noun(ctx), list.data);
        sp_buf_fini(&list);
    }
    free(names);
}

/* Apply the default of o (from its text) to conf. */
static int opt_default(const struct sp_opt *o, void *conf)
{
    int64_t num = 0;
    int rc = 0;
    if (o->def == NULL) {
        return 0;
    }
    switch (o->type) {
    case SP_OPT_T_STR:
        free(*OPT_FIELD(conf, o, char *));
        *OPT_FIELD(conf, o, char *) = sp_xstrdup(o->def);
        return 0;
    case SP_OPT_T_BOOL:
        return sp_opt_parse_bool(o->def, OPT_FIELD(conf, o, bool));
    case SP_OPT_T_INT:
    case SP_OPT_T_DURATION:
    case SP_OPT_T_SIZE:
        if (o->type == SP_OPT_T_INT) {
            rc = sp_opt_parse_int(o->def, &num);
        } else if (o->type == SP_OPT_T_SIZE) {
            rc = sp_opt_parse_size(o->def, &num);
        } else {
            rc = sp_opt_parse_duration(o->def, &num);
        }
        if (rc == 0) {
            int64_t lo;
            int64_t hi;
            if (sp_opt_bounds(o, &lo, &hi) && (num < lo || num > hi)) {
                return -1;
            }
            *OPT_FIELD(conf, o, int64_t) = num;
        }
        return rc;
    case SP_OPT_T_ENUM: {
        int idx = opt_enum_index(o, o->def);
        if (idx < 0) {
            return -1;
        }
        *OPT_FIELD(conf, o, int) = idx;
        return 0;
    }
    case SP_OPT_T_STRLIST:
    case SP_OPT_T_MAP:
    default:
        return -1; /* these have no text default */
    }
}

int sp_opt_apply(const struct sp_opt *opts, struct sp_node *map, const struct sp_opt_ctx *ctx,
                 void *conf)
{
    int before = ctx->d->nerrors;
    size_t nopts = opt_count(opts);
    bool *seen = sp_xcalloc(nopts + 1, sizeof(bool));

    if (map != NULL && !sp_node_is_null(map) && map->kind != SP_NODE_MAP) {
        opt_err(ctx, map, "must be a mapping of %ss, not %s", opt_noun(ctx),
                sp_node_kind_name(map));
        free(seen);
        return ctx->d->nerrors - before;
    }
    for (int i = 0; map != NULL && map->kind == SP_NODE_MAP && i < map->n; i++) {
        struct sp_node *key = map->pairs[i].key;
        struct sp_node *v = map->pairs[i].value;
        if (opt_skipped(ctx, key->str)) {
            continue;
        }
        size_t j = 0;
        while (j < nopts && strcmp(opts[j].name, key->str) != 0) {
            j++;
        }
        if (j == nopts) {
            opt_unknown(ctx, opts, key);
            continue;
        }
        const struct sp_opt *o = &opts[j];
        if (seen[j]) {
            continue; /* a duplicate key, reported by the YAML loader */
        }
        if (v->invalid) {
            seen[j] = true; /* reported already (e.g. a failed ${...}) */
            continue;
        }
        if (sp_node_is_null(v)) {
            if ((o->flags & SP_OPT_REQUIRED) != 0) {
                seen[j] = true;
                opt_err(ctx, key, "%s \"%s\" needs a value", opt_noun(ctx), o->name);
            }
            continue; /* the default applies */
        }
        seen[j] = true;
        opt_set(ctx, o, v, conf);
    }
    for (size_t j = 0; j < nopts; j++) {
        const struct sp_opt *o = &opts[j];
        if (seen[j]) {
            continue;
        }
        if ((o->flags & SP_OPT_REQUIRED) != 0) {
            struct sp_loc none = {NULL, 0, 0};
            const struct sp_loc *loc = map != NULL ? &map->loc : &none;
            struct sp_buf b;
            sp_buf_init(&b);
            opt_prefix(ctx, &b);
            struct sp_diag_item *it =
                sp_diag_error(ctx->d, loc, 1, "%smissing required %s \"%s\"",
                              b.data != NULL ? b.data : "", opt_noun(ctx), o->name);
            if (o->help != NULL) {
                sp_diag_hint(it, "%s: %s", o->name, o->help);
            }
            sp_buf_fini(&b);
            continue;
        }
        if (opt_default(o, conf) != 0) {
            struct sp_loc none = {NULL, 0, 0};
            sp_diag_error(ctx->d, map != NULL ? &map->loc : &none, 1,
                          "internal error: bad default \"%s\" for %s \"%s\"", o->def, opt_noun(ctx),
                          o->name);
        }
    }
    free(seen);
    return ctx->d->nerrors - before;
}

int sp_opt_defaults(const struct sp_opt *opts, void *conf, struct sp_err *err)
{
    for (const struct sp_opt *o = opts; o->name != NULL; o++) {
        if (opt_default(o, conf) != 0) {
            return sp_err_set(err, SP_EINVAL, "bad default \"%s\" for option \"%s\"", o->def,
                              o->name);
        }
    }
    return 0;
}

int sp_opt_check_table(const struct sp_opt *opts, struct sp_err *err)
{
    for (const struct sp_opt *o = opts; o->name != NULL; o++) {
        if (o->name[0] == '\0') {
            return sp_err_set(err, SP_EINVAL, "option with an empty name");
        }
        for (const struct sp_opt *p = opts; p != o; p++) {
            if (strcmp(p->name, o->name) == 0) {
                return sp_err_set(err, SP_EINVAL, "option \"%s\" is listed twice", o->name);
            }
        }
        if (o->type < SP_OPT_T_STR || o->type > SP_OPT_T_MAP) {
            return sp_err_set(err, SP_EINVAL, "option \"%s\" has no valid type", o->name);
        }
        if (o->type == SP_OPT_T_ENUM && (o->enum_names == NULL || o->enum_names[0] == NULL)) {
            return sp_err_set(err, SP_EINVAL, "enum option \"%s\" has no names", o->name);
        }
        if (o->def != NULL && (o->flags & SP_OPT_REQUIRED) != 0) {
            return sp_err_set(err, SP_EINVAL, "required option \"%s\" has a default", o->name);
        }
        if (o->help == NULL || o->help[0] == '\0') {
            return sp_err_set(err, SP_EINVAL, "option \"%s\" has no help text", o->name);
        }
        if (o->def != NULL) {
            /* parse the default into a scratch conf big enough for any field */
            union {
                char *s;
                int64_t i;
                bool b;
                int e;
            } scratch = {0};
            struct sp_opt tmp = *o;
            tmp.offset = 0;
            int rc = opt_default(&tmp, &scratch);
            if (o->type == SP_OPT_T_STR) {
                free(scratch.s);
            }
            if (rc != 0) {
                return sp_err_set(err, SP_EINVAL, "option \"%s\": bad default \"%s\"", o->name,
                                  o->def);
            }
        }
    }
    return 0;
}

void sp_opt_free_conf(const struct sp_opt *opts, void *conf)
{
    if (opts == NULL || conf == NULL) {
        return;
    }
    for (const struct sp_opt *o = opts; o->name != NULL; o++) {
        switch (o->type) {
        case SP_OPT_T_STR:
            free(*OPT_FIELD(conf, o, char *));
            *OPT_FIELD(conf, o, char *) = NULL;
            break;
        case SP_OPT_T_STRLIST: {
            struct sp_strlist *sl = OPT_FIELD(conf, o, struct sp_strlist);
            for (int i = 0; i < sl->n; i++) {
                free(sl->items[i]);
            }
            free(sl->items);
            sl->items = NULL;
            sl->n = 0;
            break;
        }
        case SP_OPT_T_MAP: {
            struct sp_strmap *sm = OPT_FIELD(conf, o, struct sp_strmap);
            for (int i = 0; i < sm->n; i++) {
                free(sm->keys[i]);
                free(sm->values[i]);
            }
            free(sm->keys);
            free(sm->values);
            sm->keys = NULL;
            sm->values = NULL;
            sm->n = 0;
            break;
        }
        default:
            break;
        }
    }
}
