/*
 * What flows read from an event: paths such as `op`, `after.total`,
 * `after.meta.gift`, `before.tags[0]`, `source.table`, `message.prefix`
 * (and the FES spellings `@.NewImage.x`, `@.OldImage.x`), evaluated to a
 * value typed by the column's type; templates over such paths
 * ("orders.{after.tenant_id}"); exact comparison of decimal numbers.
 *
 * Values point into the event or into the path's scratch buffer: they stay
 * valid until the same path is evaluated again. Pipeline thread only.
 */
#ifndef SIPHON_FLOW_VALUE_H
#define SIPHON_FLOW_VALUE_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

#include "core/err.h"
#include "core/event.h"
#include "util/buf.h"

enum sp_fv_kind {
    SP_FV_NULL = 0, /* SQL NULL, JSON null, a missing member, no such row */
    SP_FV_BOOL,
    SP_FV_NUMBER, /* s: the number's text, e.g. "19.90", "-1e+20", "NaN" */
    SP_FV_STRING, /* s: UTF-8 text */
    SP_FV_JSON,   /* s: a JSON object or array, compact */
    SP_FV_ROW,    /* `before` or `after` as a whole: b tells whether the row is there */
};

struct sp_fval {
    enum sp_fv_kind kind;
    bool b;
    const char *s;
    size_t len;
};

/* Static types, known at compile time. */
enum sp_ftype {
    SP_FT_ANY = 0, /* a column value: known only per event */
    SP_FT_BOOL,
    SP_FT_NUMBER,
    SP_FT_STRING,
    SP_FT_NULL,
    SP_FT_ROW,
};

const char *sp_ftype_name(enum sp_ftype t);

enum sp_fpath_root {
    SP_FP_OP,
    SP_FP_BEFORE,
    SP_FP_AFTER,
    SP_FP_SOURCE_TABLE,
    SP_FP_SOURCE_SCHEMA,
    SP_FP_SOURCE_DB,
    SP_FP_SOURCE_NAME,
    SP_FP_SOURCE_SNAPSHOT,
    SP_FP_SOURCE_LSN,
    SP_FP_SOURCE_COMMIT_LSN,
    SP_FP_SOURCE_TXID,
    SP_FP_SOURCE_TS_MS,
    SP_FP_MSG_PREFIX,
    SP_FP_MSG_CONTENT,
};

struct sp_fpath_seg {
    char *key; /* member name; NULL for an array index */
    size_t klen;
    long idx;
};

struct sp_fpath {
    enum sp_fpath_root root;
    char *col; /* before/after: the column */
    struct sp_fpath_seg *segs;
    int nsegs;
    char *text; /* the path as written, for messages */
    /* column index cache: valid for rel_cached */
    const struct sp_relation *rel_cached;
    uint32_t rel_version;
    int col_index;
    struct sp_buf scratch;  /* converted column text */
    struct sp_buf scratch2; /* an unescaped JSON string */
};

/*
 * Parse the path in s[0..len). On error returns SP_EINVAL with err and
 * *err_off the byte offset of the problem in s. *out is heap; free with
 * sp_fpath_free.
 */
int sp_fpath_parse(const char *s, size_t len, struct sp_fpath **out, size_t *err_off,
                   struct sp_err *err);
void sp_fpath_free(struct sp_fpath *p);
enum sp_ftype sp_fpath_type(const struct sp_fpath *p);
/* The value of p in ev. Errors (a column the table does not have, a path into a column that
 * is not json, text that does not convert) name the path, never a value. */
int sp_fpath_eval(struct sp_fpath *p, const struct sp_event *ev, struct sp_fval *v,
                  struct sp_err *err);
/* Column index of name in ev's relation (exact, then ignoring case), or -1. */
int sp_flow_col_find(const struct sp_relation *rel, const char *name);

/*
 * Compare two decimal numbers in text form exactly (any length, optional
 * exponent; NaN sorts above everything and equals itself, as in
 * PostgreSQL; Infinity and -Infinity). Returns -1, 0 or 1 in *out; SP_EINVAL
 * if either is not a number.
 */
int sp_flow_num_cmp(const char *a, size_t alen, const char *b, size_t blen, int *out);

/* ---- templates: text with {path} placeholders; {{ and }} are literal braces ---- */

struct sp_ftmpl_part {
    char *lit; /* literal text, or NULL for a path */
    size_t len;
    struct sp_fpath *path;
};

struct sp_ftmpl {
    struct sp_ftmpl_part *parts;
    int n;
    char *text;
};

int sp_ftmpl_parse(const char *s, size_t len, struct sp_ftmpl **out, size_t *err_off,
                   struct sp_err *err);
void sp_ftmpl_free(struct sp_ftmpl *t);
/* Expand t for ev, appending to out. A null value is an error naming the placeholder. */
int sp_ftmpl_expand(struct sp_ftmpl *t, const struct sp_event *ev, struct sp_buf *out,
                    struct sp_err *err);
/* Expand t for ev into a NUL-terminated string in ev's arena (*len, if not NULL, its length). */
int sp_ftmpl_expand_arena(struct sp_ftmpl *t, struct sp_event *ev, const char **s, uint32_t *len,
                          struct sp_err *err);

#endif
