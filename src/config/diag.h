/*
 * Collecting configuration diagnostics (the struct sp_diag of config.h):
 * adding errors and warnings with a location, attaching the source lines
 * for the caret display, sorting them into file order.
 *
 * Item pointers returned by sp_diag_error/sp_diag_warn are valid until the
 * next item is added: use them at once to set a hint.
 */
#ifndef SIPHON_CONFIG_DIAG_H
#define SIPHON_CONFIG_DIAG_H

#include <stdarg.h>

#include <stdbool.h>

#include "config/config.h"

/* A region of a line that holds a secret, masked when the line is shown. */
struct sp_diag_span {
    int line; /* 1-based */
    int col;  /* 1-based, in characters */
    int len;  /* characters */
};

/*
 * Add an error or warning at loc (NULL or line 0: the file as a whole, or
 * nothing) with a caret caret_len characters wide. The file name is copied.
 * Returns the item, or NULL when the limit was reached and it was only
 * counted.
 */
struct sp_diag_item *sp_diag_error(struct sp_diag *d, const struct sp_loc *loc, int caret_len,
                                   const char *fmt, ...) SP_PRINTF(4, 5);
struct sp_diag_item *sp_diag_warn(struct sp_diag *d, const struct sp_loc *loc, int caret_len,
                                  const char *fmt, ...) SP_PRINTF(4, 5);
struct sp_diag_item *sp_diag_addv(struct sp_diag *d, bool warning, const struct sp_loc *loc,
                                  int caret_len, const char *fmt, va_list ap);
/* Set (replace) the hint of it; it may be NULL (then nothing happens). */
void sp_diag_hint(struct sp_diag_item *it, const char *fmt, ...) SP_PRINTF(2, 3);

/*
 * Give every item located in file (and still without one) its source line
 * from text, with secrets masked: the spans given, anything
 * sp_cfg_mask_conninfo would mask, and the value after any of secret_keys
 * (NULL-terminated option names such as "connection"; may be NULL) written
 * as a YAML key on the line, for lines whose secrets are not known as spans
 * (a syntax error stops loading before options are known). Spans whose text
 * holds a "${" reference are shown as written.
 */
void sp_diag_attach_source(struct sp_diag *d, const char *file, const char *text, size_t len,
                           const struct sp_diag_span *secrets, int nsecrets,
                           const char *const *secret_keys);

/* Sort items by file position (stable; items without a line first). */
void sp_diag_sort(struct sp_diag *d);

/* A byte range [start, end) of a line or string, to be shown as "****". */
struct sp_mask_range {
    int start;
    int end;
};

/* Append [start, end) to *r (heap, grown as needed) unless empty; returns the new count. */
int sp_mask_push(struct sp_mask_range **r, int n, int start, int end);
/*
 * Where passwords are in s (NUL-terminated): `password=...` and the
 * `user:pass@` of URIs. Appends their ranges to *r; returns the new count.
 */
int sp_mask_find(const char *s, struct sp_mask_range **r, int n);
/* Sort r and merge overlapping ranges; returns the new count. */
int sp_mask_normalize(struct sp_mask_range *r, int n);

#endif
