// SPDX-License-Identifier: Apache-2.0
/*
 * Paths into events, their values, templates and exact number comparison
 * (flow/value.h): the vocabulary the filter, route and outbox flows share.
 *
 * Column values are read from the event's text datums and typed by the
 * column's type: numbers stay text and compare exactly, booleans are 't'/'f',
 * json and jsonb are compacted (source/pg/types.c) and walked with
 * util/json.c, timestamps and other time types become the ISO text the json
 * format writes. Nothing here puts a value into an error message.
 */
#include "flow/value.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/schema.h"
#include "source/pg/types.h"
#include "util/json.h"
#include "util/mem.h"

const char *sp_ftype_name(enum sp_ftype t)
{
    switch (t) {
    case SP_FT_BOOL:
        return "boolean";
    case SP_FT_NUMBER:
        return "number";
    case SP_FT_STRING:
        return "string";
    case SP_FT_NULL:
        return "null";
    case SP_FT_ROW:
        return "row";
    case SP_FT_ANY:
    default:
        return "column value";
    }
}

/* ---- parsing ---- */

struct fp_name {
    const char *name;
    enum sp_fpath_root root;
};

static const struct fp_name fp_source_fields[] = {
    {"table", SP_FP_SOURCE_TABLE},
    {"schema", SP_FP_SOURCE_SCHEMA},
    {"db", SP_FP_SOURCE_DB},
    {"name", SP_FP_SOURCE_NAME},
    {"snapshot", SP_FP_SOURCE_SNAPSHOT},
    {"lsn", SP_FP_SOURCE_LSN},
    {"commit_lsn", SP_FP_SOURCE_COMMIT_LSN},
    {"txId", SP_FP_SOURCE_TXID},
    {"ts_ms", SP_FP_SOURCE_TS_MS},
};

static const struct fp_name fp_message_fields[] = {
    {"prefix", SP_FP_MSG_PREFIX},
    {"content", SP_FP_MSG_CONTENT},
};

static bool fp_ident_start(char c)
{
    return isalpha((unsigned char)c) || c == '_' || (unsigned char)c >= 0x80;
}

static bool fp_ident_char(char c)
{
    return fp_ident_start(c) || isdigit((unsigned char)c) || c == '$';
}

struct fp_rd {
    const char *s;
    size_t len;
    size_t pos;
    size_t *err_off;
    struct sp_err *err;
};

static int fp_fail(struct fp_rd *r, size_t at, const char *msg, const char *hint)
{
    *r->err_off = at;
    sp_err_set(r->err, SP_EINVAL, "%s", msg);
    if (hint != NULL) {
        sp_err_hint(r->err, "%s", hint);
    }
    return SP_EINVAL;
}

/* A name: an identifier, or a quoted string in brackets handled by the caller. */
static bool fp_read_ident(struct fp_rd *r, char **out, size_t *olen)
{
    size_t start = r->pos;
    if (r->pos >= r->len || !fp_ident_start(r->s[r->pos])) {
        return false;
    }
    while (r->pos < r->len && fp_ident_char(r->s[r->pos])) {
        r->pos++;
    }
    *olen = r->pos - start;
    *out = sp_xstrndup(r->s + start, *olen);
    return true;
}

/* ['name'], ["name"] or [123] at r->pos (the '['). */
static int fp_read_bracket(struct fp_rd *r, struct sp_fpath_seg *seg)
{
    size_t at = r->pos;
    r->pos++;
    if (r->pos < r->len && (r->s[r->pos] == '\'' || r->s[r->pos] == '"')) {
        char q = r->s[r->pos++];
        size_t start = r->pos;
        while (r->pos < r->len && r->s[r->pos] != q) {
            r->pos++;
        }
        if (r->pos >= r->len) {
            return fp_fail(r, at, "unterminated quoted name in brackets", NULL);
        }
        seg->klen = r->pos - start;
        seg->key = sp_xstrndup(r->s + start, seg->klen);
        r->pos++;
    } else {
        size_t start = r->pos;
        long v = 0;
        while (r->pos < r->len && isdigit((unsigned char)r->s[r->pos]) && v < 100000000) {
            v = v * 10 + (r->s[r->pos] - '0');
            r->pos++;
        }
        if (r->pos == start) {
            return fp_fail(r, at, "expected an array index or a quoted name after \"[\"",
                           "write e.g. after.tags[0] or after.meta['gift card']");
        }
        seg->idx = v;
    }
    if (r->pos >= r->len || r->s[r->pos] != ']') {
        return fp_fail(r, r->pos, "expected \"]\"", NULL);
    }
    r->pos++;
    return 0;
}

static int fp_parse_root(struct fp_rd *r, struct sp_fpath *p, bool *columns)
{
    char *name = NULL;
    size_t nlen = 0;
    size_t at = r->pos;
    if (!fp_read_ident(r, &name, &nlen)) {
        return fp_fail(r, at, "expected a path such as after.status, op or source.table", NULL);
    }
    int rc = 0;
    *columns = false;
    if (strcmp(name, "op") == 0) {
        p->root = SP_FP_OP;
    } else if (strcmp(name, "before") == 0 || strcmp(name, "OldImage") == 0) {
        p->root = SP_FP_BEFORE;
        *columns = true;
    } else if (strcmp(name, "after") == 0 || strcmp(name, "NewImage") == 0) {
        p->root = SP_FP_AFTER;
        *columns = true;
    } else if (strcmp(name, "source") == 0 || strcmp(name, "message") == 0) {
        bool src = name[0] == 's';
        const struct fp_name *fields = src ? fp_source_fields : fp_message_fields;
        size_t nf = src ? SP_ARRAY_LEN(fp_source_fields) : SP_ARRAY_LEN(fp_message_fields);
        char *field = NULL;
        size_t flen = 0;
        size_t fat = r->pos < r->len && r->s[r->pos] == '.' ? r->pos + 1 : at;
        if (r->pos >= r->len || r->s[r->pos] != '.' ||
            (r->pos++, !fp_read_ident(r, &field, &flen))) {
            free(name);
            return fp_fail(
                r, fat,
                src ? "expected a field after \"source.\"" : "expected a field after \"message.\"",
                src ? "fields: table, schema, db, name, snapshot, lsn, commit_lsn, txId, ts_ms"
                    : "fields: prefix, content");
        }
        bool found = false;
        for (size_t i = 0; i < nf && !found; i++) {
            if (strcmp(fields[i].name, field) == 0) {
                p->root = fields[i].root;
                found = true;
            }
        }
        if (!found) {
            char msg[160];
            char hint[200];
            const char *names[SP_ARRAY_LEN(fp_source_fields)];
            for (size_t i = 0; i < nf; i++) {
                names[i] = fields[i].name;
            }
            const char *near = sp_str_suggest(field, names, nf);
            snprintf(msg, sizeof(msg), "unknown field \"%s.%s\"", name, field);
            if (near != NULL) {
                snprintf(hint, sizeof(hint), "did you mean \"%s.%s\"?", name, near);
            } else {
                snprintf(hint, sizeof(hint), "fields of %s: %s", name,
                         src ? "table, schema, db, name, snapshot, lsn, commit_lsn, txId, ts_ms"
                             : "prefix, content");
            }
            rc = fp_fail(r, fat, msg, hint);
        }
        free(field);
    } else {
        static const char *const roots[] = {"op",      "before",   "after",   "source",
                                            "message", "OldImage", "NewImage"};
        char msg[200];
        char hint[200];
        const char *near = sp_str_suggest(name, roots, SP_ARRAY_LEN(roots));
        snprintf(msg, sizeof(msg), "unknown name \"%s\"", name);
        if (near != NULL) {
            snprintf(hint, sizeof(hint), "did you mean \"%s\"?", near);
        } else {
            snprintf(hint, sizeof(hint),
                     "a path starts with op, before, after, source or message "
                     "(or @.OldImage, @.NewImage), e.g. after.status");
        }
        rc = fp_fail(r, at, msg, hint);
    }
    free(name);
    return rc;
}

int sp_fpath_parse(const char *s, size_t len, struct sp_fpath **out, size_t *err_off,
                   struct sp_err *err)
{
    struct fp_rd r = {.s = s, .len = len, .pos = 0, .err_off = err_off, .err = err};
    struct sp_fpath *p = sp_xcalloc(1, sizeof(*p));
    bool columns = false;
    int rc;

    *out = NULL;
    *err_off = 0;
    p->col_index = -1;
    sp_buf_init(&p->scratch);
    sp_buf_init(&p->scratch2);
    p->text = sp_xstrndup(s, len);
    if (len >= 2 && s[0] == '@' && s[1] == '.') {
        r.pos = 2;
    }
    rc = fp_parse_root(&r, p, &columns);
    while (rc == 0 && r.pos < r.len) {
        struct sp_fpath_seg seg = {0};
        size_t at = r.pos;
        if (s[r.pos] == '.') {
            r.pos++;
            if (!fp_read_ident(&r, &seg.key, &seg.klen)) {
                rc = fp_fail(&r, r.pos, "expected a name after \".\"",
                             "names with other characters go in brackets: after['my col']");
                break;
            }
        } else if (s[r.pos] == '[') {
            rc = fp_read_bracket(&r, &seg);
            if (rc != 0) {
                break;
            }
        } else {
            rc = fp_fail(&r, at, "unexpected character in path", NULL);
            break;
        }
        if (!columns) {
            free(seg.key);
            rc = fp_fail(&r, at, "this value has no members",
                         "only before.<column> and after.<column> paths go deeper");
            break;
        }
        if (p->col == NULL) {
            if (seg.key == NULL) {
                rc = fp_fail(&r, at, "expected a column name, not an index", NULL);
                break;
            }
            p->col = seg.key;
            continue;
        }
        p->segs = sp_xrealloc(p->segs, sizeof(*p->segs) * (size_t)(p->nsegs + 1));
        p->segs[p->nsegs++] = seg;
    }
    if (rc != 0) {
        sp_fpath_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void sp_fpath_free(struct sp_fpath *p)
{
    if (p == NULL) {
        return;
    }
    for (int i = 0; i < p->nsegs; i++) {
        free(p->segs[i].key);
    }
    free(p->segs);
    free(p->col);
    free(p->text);
    sp_buf_fini(&p->scratch);
    sp_buf_fini(&p->scratch2);
    free(p);
}

enum sp_ftype sp_fpath_type(const struct sp_fpath *p)
{
    switch (p->root) {
    case SP_FP_OP:
    case SP_FP_SOURCE_TABLE:
    case SP_FP_SOURCE_SCHEMA:
    case SP_FP_SOURCE_DB:
    case SP_FP_SOURCE_NAME:
    case SP_FP_SOURCE_SNAPSHOT:
    case SP_FP_MSG_PREFIX:
    case SP_FP_MSG_CONTENT:
        return SP_FT_STRING;
    case SP_FP_SOURCE_LSN:
    case SP_FP_SOURCE_COMMIT_LSN:
    case SP_FP_SOURCE_TXID:
    case SP_FP_SOURCE_TS_MS:
        return SP_FT_NUMBER;
    case SP_FP_BEFORE:
    case SP_FP_AFTER:
    default:
        return p->col == NULL ? SP_FT_ROW : SP_FT_ANY;
    }
}

/* ---- evaluation ---- */

int sp_flow_col_find(const struct sp_relation *rel, const char *name)
{
    for (int i = 0; i < rel->ncols; i++) {
        if (strcmp(rel->cols[i].name, name) == 0) {
            return i;
        }
    }
    for (int i = 0; i < rel->ncols; i++) {
        if (strcasecmp(rel->cols[i].name, name) == 0) {
            return i;
        }
    }
    return -1;
}

static void fv_str(struct sp_fval *v, const char *s)
{
    v->kind = SP_FV_STRING;
    v->s = s != NULL ? s : "";
    v->len = strlen(v->s);
}

static void fv_num(struct sp_fpath *p, struct sp_fval *v, uint64_t n)
{
    sp_buf_reset(&p->scratch);
    sp_buf_put_u64(&p->scratch, n);
    v->kind = SP_FV_NUMBER;
    v->s = p->scratch.data;
    v->len = p->scratch.len;
}

/* The JSON value [s, e) (compact, valid) as a value. */
static int fv_from_json(struct sp_fpath *p, const char *s, const char *e, struct sp_fval *v,
                        struct sp_err *err)
{
    switch (*s) {
    case 'n':
        v->kind = SP_FV_NULL;
        return 0;
    case 't':
    case 'f':
        v->kind = SP_FV_BOOL;
        v->b = *s == 't';
        return 0;
    case '"':
        sp_buf_reset(&p->scratch2);
        if (sp_json_str((struct sp_json_span){s, (size_t)(e - s)}, &p->scratch2) != 0) {
            return sp_err_set(err, SP_EINVAL, "%s: invalid JSON string", p->text);
        }
        v->kind = SP_FV_STRING;
        v->s = p->scratch2.data != NULL ? p->scratch2.data : "";
        v->len = p->scratch2.len;
        return 0;
    case '{':
    case '[':
        v->kind = SP_FV_JSON;
        v->s = s;
        v->len = (size_t)(e - s);
        return 0;
    default:
        v->kind = SP_FV_NUMBER;
        v->s = s;
        v->len = (size_t)(e - s);
        return 0;
    }
}

static int fv_walk_json(struct sp_fpath *p, const struct sp_column *col, const struct sp_datum *d,
                        struct sp_fval *v, struct sp_err *err)
{
    sp_buf_reset(&p->scratch);
    if (sp_pgtext_to_json(col->type, d->data, d->len, &p->scratch, err) != 0) {
        return sp_err_set(err, SP_EINVAL, "%s: the column's value is not valid %s", p->text,
                          col->type != NULL && col->type->kind == SP_TYPE_ARRAY ? "array text"
                                                                                : "JSON");
    }
    const char *s = p->scratch.data;
    const char *e = s + p->scratch.len;
    for (int i = 0; i < p->nsegs; i++) {
        const struct sp_fpath_seg *seg = &p->segs[i];
        struct sp_json_span in = {s, (size_t)(e - s)};
        struct sp_json_span out;
        bool found = seg->key != NULL ? sp_json_member(in, seg->key, &out)
                                      : sp_json_elem(in, seg->idx, &out);
        if (!found) {
            v->kind = SP_FV_NULL;
            return 0;
        }
        s = out.p;
        e = out.p + out.len;
    }
    return fv_from_json(p, s, e, v, err);
}

static int fv_column(struct sp_fpath *p, const struct sp_event *ev, struct sp_fval *v,
                     struct sp_err *err)
{
    const struct sp_relation *rel = ev->rel;
    const struct sp_tuple *tup = p->root == SP_FP_BEFORE ? ev->before : ev->after;
    if (p->root == SP_FP_AFTER && ev->op == SP_OP_DELETE) {
        tup = NULL;
    }
    if (p->col == NULL) {
        v->kind = SP_FV_ROW;
        v->b = tup != NULL && rel != NULL;
        return 0;
    }
    v->kind = SP_FV_NULL;
    if (rel == NULL || tup == NULL) {
        return 0;
    }
    if (p->rel_cached != rel || p->rel_version != rel->version) {
        p->col_index = sp_flow_col_find(rel, p->col);
        p->rel_cached = rel;
        p->rel_version = rel->version;
    }
    int i = p->col_index;
    if (i < 0) {
        return sp_err_set(err, SP_EINVAL, "%s: table \"%s.%s\" has no column \"%s\"", p->text,
                          rel->schema, rel->table, p->col);
    }
    if (i >= tup->ncols) {
        return 0;
    }
    const struct sp_datum *d = &tup->cols[i];
    if (d->kind == SP_DATUM_UNCHANGED && tup == ev->after && ev->before != NULL &&
        !ev->before_key_only && i < ev->before->ncols) {
        d = &ev->before->cols[i];
    }
    const struct sp_column *col = &rel->cols[i];
    enum sp_type_kind kind = col->type != NULL ? col->type->kind : SP_TYPE_OTHER;
    if (d->kind == SP_DATUM_NULL || d->kind == SP_DATUM_UNCHANGED || d->data == NULL) {
        return 0;
    }
    if (p->nsegs > 0) {
        if (d->kind != SP_DATUM_TEXT || (kind != SP_TYPE_JSON && kind != SP_TYPE_ARRAY)) {
            return sp_err_set(err, SP_EINVAL,
                              "%s: column \"%s\" of table \"%s.%s\" is not json, jsonb or an "
                              "array, so it has no members",
                              p->text, col->name, rel->schema, rel->table);
        }
        return fv_walk_json(p, col, d, v, err);
    }
    if (d->kind != SP_DATUM_TEXT) {
        v->kind = SP_FV_STRING;
        v->s = d->data;
        v->len = d->len;
        return 0;
    }
    switch (kind) {
    case SP_TYPE_INT:
    case SP_TYPE_FLOAT:
    case SP_TYPE_NUMERIC:
        v->kind = SP_FV_NUMBER;
        v->s = d->data;
        v->len = d->len;
        return 0;
    case SP_TYPE_BOOL:
        v->kind = SP_FV_BOOL;
        v->b = d->len > 0 && d->data[0] == 't';
        return 0;
    case SP_TYPE_JSON:
    case SP_TYPE_ARRAY:
        return fv_walk_json(p, col, d, v, err);
    case SP_TYPE_DATE:
    case SP_TYPE_TIMESTAMP:
    case SP_TYPE_TIMESTAMPTZ:
    case SP_TYPE_TIME:
    case SP_TYPE_TIMETZ:
    case SP_TYPE_INTERVAL: {
        sp_buf_reset(&p->scratch);
        if (sp_pgtext_to_json(col->type, d->data, d->len, &p->scratch, err) != 0) {
            return sp_err_set(err, SP_EINVAL, "%s: the column's value is not a valid %s", p->text,
                              col->type->name != NULL ? col->type->name : "time value");
        }
        const char *s = p->scratch.data;
        return fv_from_json(p, s, s + p->scratch.len, v, err);
    }
    default:
        v->kind = SP_FV_STRING;
        v->s = d->data;
        v->len = d->len;
        return 0;
    }
}

int sp_fpath_eval(struct sp_fpath *p, const struct sp_event *ev, struct sp_fval *v,
                  struct sp_err *err)
{
    static const char *const op_names[] = {"c", "u", "d", "r", "t", "m", "B", "C"};
    v->kind = SP_FV_NULL;
    v->b = false;
    v->s = NULL;
    v->len = 0;
    switch (p->root) {
    case SP_FP_OP:
        fv_str(v, op_names[ev->op]);
        return 0;
    case SP_FP_BEFORE:
    case SP_FP_AFTER:
        return fv_column(p, ev, v, err);
    case SP_FP_SOURCE_TABLE:
        fv_str(v, ev->rel != NULL ? ev->rel->table : "");
        return 0;
    case SP_FP_SOURCE_SCHEMA:
        fv_str(v, ev->rel != NULL ? ev->rel->schema : "");
        return 0;
    case SP_FP_SOURCE_DB:
        fv_str(v, ev->db);
        return 0;
    case SP_FP_SOURCE_NAME:
        fv_str(v, ev->source_name);
        return 0;
    case SP_FP_SOURCE_SNAPSHOT:
        fv_str(v, ev->snapshot != NULL ? ev->snapshot : "false");
        return 0;
    case SP_FP_SOURCE_LSN:
        fv_num(p, v, ev->lsn);
        return 0;
    case SP_FP_SOURCE_COMMIT_LSN:
        fv_num(p, v, ev->commit_lsn);
        return 0;
    case SP_FP_SOURCE_TXID:
        fv_num(p, v, ev->xid);
        return 0;
    case SP_FP_SOURCE_TS_MS: {
        int64_t us = ev->commit_time_us;
        int64_t ms = us >= 0 ? us / 1000 : -((-us + 999) / 1000);
        sp_buf_reset(&p->scratch);
        sp_buf_put_i64(&p->scratch, ms);
        v->kind = SP_FV_NUMBER;
        v->s = p->scratch.data;
        v->len = p->scratch.len;
        return 0;
    }
    case SP_FP_MSG_PREFIX:
        if (ev->op == SP_OP_MESSAGE) {
            fv_str(v, ev->msg_prefix);
        }
        return 0;
    case SP_FP_MSG_CONTENT:
        if (ev->op == SP_OP_MESSAGE) {
            v->kind = SP_FV_STRING;
            v->s = ev->msg_content != NULL ? ev->msg_content : "";
            v->len = ev->msg_content != NULL ? ev->msg_len : 0;
        }
        return 0;
    default:
        return sp_err_set(err, SP_EINVAL, "%s: unknown path", p->text);
    }
}

/* ---- numbers ---- */

/* A finite decimal: sign, significant digits (no leading/trailing zeros), point position. */
struct fnum {
    int special; /* 0 finite, -1 -Infinity, 1 Infinity, 2 NaN */
    bool neg;
    const char *digits[2]; /* up to two runs (integer part, fraction) */
    size_t dlen[2];
    long exp; /* value = 0.DIGITS x 10^exp */
    size_t ndigits;
};

static char fnum_digit(const struct fnum *n, size_t i)
{
    if (i < n->dlen[0]) {
        return n->digits[0][i];
    }
    i -= n->dlen[0];
    if (i < n->dlen[1]) {
        return n->digits[1][i];
    }
    return '0';
}

static bool fnum_parse(const char *s, size_t len, struct fnum *n)
{
    memset(n, 0, sizeof(*n));
    const char *p = s;
    const char *e = s + len;
    if (p < e && (*p == '-' || *p == '+')) {
        n->neg = *p == '-';
        p++;
    }
    size_t rest = (size_t)(e - p);
    if ((rest == 8 && strncasecmp(p, "Infinity", 8) == 0) ||
        (rest == 3 && strncasecmp(p, "inf", 3) == 0)) {
        n->special = n->neg ? -1 : 1;
        return true;
    }
    if (rest == 3 && strncasecmp(p, "NaN", 3) == 0) {
        n->special = 2;
        return true;
    }
    const char *int_s = p;
    while (p < e && isdigit((unsigned char)*p)) {
        p++;
    }
    const char *int_e = p;
    const char *frac_s = p;
    const char *frac_e = p;
    if (p < e && *p == '.') {
        p++;
        frac_s = p;
        while (p < e && isdigit((unsigned char)*p)) {
            p++;
        }
        frac_e = p;
    }
    if (int_e == int_s && frac_e == frac_s) {
        return false;
    }
    long ex = 0;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        bool eneg = false;
        if (p < e && (*p == '-' || *p == '+')) {
            eneg = *p == '-';
            p++;
        }
        if (p >= e) {
            return false;
        }
        while (p < e && isdigit((unsigned char)*p)) {
            if (ex < 100000000) {
                ex = ex * 10 + (*p - '0');
            }
            p++;
        }
        ex = eneg ? -ex : ex;
    }
    if (p != e) {
        return false;
    }
    /* strip leading zeros of the integer part, then (if it is empty) of the fraction */
    while (int_s < int_e && *int_s == '0') {
        int_s++;
    }
    long point = (long)(int_e - int_s);
    if (int_s == int_e) {
        while (frac_s < frac_e && *frac_s == '0') {
            frac_s++;
            point--;
        }
    }
    /* strip trailing zeros */
    if (frac_s < frac_e) {
        while (frac_e > frac_s && frac_e[-1] == '0') {
            frac_e--;
        }
    }
    if (frac_s == frac_e) {
        while (int_e > int_s && int_e[-1] == '0') {
            int_e--;
        }
    }
    n->digits[0] = int_s;
    n->dlen[0] = (size_t)(int_e - int_s);
    n->digits[1] = frac_s;
    n->dlen[1] = (size_t)(frac_e - frac_s);
    n->ndigits = n->dlen[0] + n->dlen[1];
    n->exp = point + ex;
    if (n->ndigits == 0) {
        n->neg = false; /* -0 == 0 */
    }
    return true;
}

static int fnum_rank(const struct fnum *n)
{
    return n->special == 0 ? 0 : n->special;
}

int sp_flow_num_cmp(const char *a, size_t alen, const char *b, size_t blen, int *out)
{
    struct fnum x;
    struct fnum y;
    if (!fnum_parse(a, alen, &x) || !fnum_parse(b, blen, &y)) {
        return SP_EINVAL;
    }
    if (x.special != 0 || y.special != 0) {
        int rx = fnum_rank(&x);
        int ry = fnum_rank(&y);
        if (x.special == 0) {
            *out = ry > 0 ? -1 : 1;
        } else if (y.special == 0) {
            *out = rx > 0 ? 1 : -1;
        } else {
            *out = rx < ry ? -1 : (rx > ry ? 1 : 0);
        }
        return 0;
    }
    int sx = x.ndigits == 0 ? 0 : (x.neg ? -1 : 1);
    int sy = y.ndigits == 0 ? 0 : (y.neg ? -1 : 1);
    if (sx != sy) {
        *out = sx < sy ? -1 : 1;
        return 0;
    }
    if (sx == 0) {
        *out = 0;
        return 0;
    }
    int mag;
    if (x.exp != y.exp) {
        mag = x.exp < y.exp ? -1 : 1;
    } else {
        mag = 0;
        size_t n = x.ndigits > y.ndigits ? x.ndigits : y.ndigits;
        for (size_t i = 0; i < n && mag == 0; i++) {
            char cx = fnum_digit(&x, i);
            char cy = fnum_digit(&y, i);
            mag = cx < cy ? -1 : (cx > cy ? 1 : 0);
        }
    }
    *out = sx < 0 ? -mag : mag;
    return 0;
}

/* ---- templates ---- */

static void ftmpl_add_lit(struct sp_ftmpl *t, const char *s, size_t n)
{
    if (n == 0) {
        return;
    }
    if (t->n > 0 && t->parts[t->n - 1].lit != NULL) {
        struct sp_ftmpl_part *last = &t->parts[t->n - 1];
        last->lit = sp_xrealloc(last->lit, last->len + n + 1);
        memcpy(last->lit + last->len, s, n);
        last->len += n;
        last->lit[last->len] = '\0';
        return;
    }
    t->parts = sp_xrealloc(t->parts, sizeof(*t->parts) * (size_t)(t->n + 1));
    t->parts[t->n].lit = sp_xstrndup(s, n);
    t->parts[t->n].len = n;
    t->parts[t->n].path = NULL;
    t->n++;
}

int sp_ftmpl_parse(const char *s, size_t len, struct sp_ftmpl **out, size_t *err_off,
                   struct sp_err *err)
{
    struct sp_ftmpl *t = sp_xcalloc(1, sizeof(*t));
    t->text = sp_xstrndup(s, len);
    size_t i = 0;
    *out = NULL;
    while (i < len) {
        if ((s[i] == '{' || s[i] == '}') && i + 1 < len && s[i + 1] == s[i]) {
            ftmpl_add_lit(t, s + i, 1);
            i += 2;
            continue;
        }
        if (s[i] == '}') {
            *err_off = i;
            sp_ftmpl_free(t);
            sp_err_set(err, SP_EINVAL, "unmatched \"}\" in template");
            sp_err_hint(err, "write \"}}\" for a literal brace");
            return SP_EINVAL;
        }
        if (s[i] != '{') {
            size_t j = i;
            while (j < len && s[j] != '{' && s[j] != '}') {
                j++;
            }
            ftmpl_add_lit(t, s + i, j - i);
            i = j;
            continue;
        }
        const char *close = memchr(s + i, '}', len - i);
        if (close == NULL) {
            *err_off = i;
            sp_ftmpl_free(t);
            sp_err_set(err, SP_EINVAL, "unterminated \"{\" in template");
            sp_err_hint(err, "close the placeholder, e.g. {after.tenant_id}; \"{{\" is a literal "
                             "brace");
            return SP_EINVAL;
        }
        size_t plen = (size_t)(close - (s + i + 1));
        struct sp_fpath *p = NULL;
        size_t off = 0;
        if (sp_fpath_parse(s + i + 1, plen, &p, &off, err) != 0) {
            *err_off = i + 1 + off;
            sp_ftmpl_free(t);
            return SP_EINVAL;
        }
        if (sp_fpath_type(p) == SP_FT_ROW) {
            *err_off = i + 1;
            sp_fpath_free(p);
            sp_ftmpl_free(t);
            sp_err_set(err, SP_EINVAL, "a template placeholder must name a value, not a whole row");
            sp_err_hint(err, "name a column, e.g. {after.tenant_id}");
            return SP_EINVAL;
        }
        t->parts = sp_xrealloc(t->parts, sizeof(*t->parts) * (size_t)(t->n + 1));
        t->parts[t->n].lit = NULL;
        t->parts[t->n].len = 0;
        t->parts[t->n].path = p;
        t->n++;
        i = (size_t)(close - s) + 1;
    }
    *out = t;
    return 0;
}

void sp_ftmpl_free(struct sp_ftmpl *t)
{
    if (t == NULL) {
        return;
    }
    for (int i = 0; i < t->n; i++) {
        free(t->parts[i].lit);
        sp_fpath_free(t->parts[i].path);
    }
    free(t->parts);
    free(t->text);
    free(t);
}

int sp_ftmpl_expand(struct sp_ftmpl *t, const struct sp_event *ev, struct sp_buf *out,
                    struct sp_err *err)
{
    for (int i = 0; i < t->n; i++) {
        const struct sp_ftmpl_part *part = &t->parts[i];
        if (part->lit != NULL) {
            sp_buf_append(out, part->lit, part->len);
            continue;
        }
        struct sp_fval v;
        if (sp_fpath_eval(part->path, ev, &v, err) != 0) {
            return err->code;
        }
        switch (v.kind) {
        case SP_FV_BOOL:
            sp_buf_puts(out, v.b ? "true" : "false");
            break;
        case SP_FV_NUMBER:
        case SP_FV_STRING:
        case SP_FV_JSON:
            sp_buf_append(out, v.s, v.len);
            break;
        case SP_FV_NULL:
        case SP_FV_ROW:
        default:
            return sp_err_set(err, SP_EINVAL, "template \"%s\": {%s} is null for this event",
                              t->text, part->path->text);
        }
    }
    return 0;
}

int sp_ftmpl_expand_arena(struct sp_ftmpl *t, struct sp_event *ev, const char **s, uint32_t *len,
                          struct sp_err *err)
{
    struct sp_buf b;
    sp_buf_init(&b);
    int rc = sp_ftmpl_expand(t, ev, &b, err);
    if (rc == 0) {
        *s = sp_arena_strndup(&ev->arena, b.data != NULL ? b.data : "", b.len);
        if (len != NULL) {
            *len = (uint32_t)b.len;
        }
    }
    sp_buf_fini(&b);
    return rc;
}
