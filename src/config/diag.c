// SPDX-License-Identifier: Apache-2.0
/*
 * Configuration diagnostics: collecting errors and warnings with their
 * location, and printing them the way a compiler does:
 *
 *   siphon.yaml:14:5: error: sink "bus" (kafka): unknown option "topci"
 *      14 |     topci: "orders"
 *         |     ^~~~~
 *     hint: did you mean "topic"?
 *
 * Source lines are shown with secrets masked (config/mask.c). This file does
 * not decide what is an error; the loader and the validator do.
 */
#include "config/diag.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "util/buf.h"

void sp_diag_init(struct sp_diag *d)
{
    memset(d, 0, sizeof(*d));
}

void sp_diag_fini(struct sp_diag *d)
{
    for (int i = 0; i < d->n; i++) {
        free(d->items[i].msg);
        free(d->items[i].hint);
        free(d->items[i].source_line);
    }
    free(d->items);
    for (int i = 0; i < d->nfiles; i++) {
        free(d->files[i]);
    }
    free(d->files);
    sp_diag_init(d);
}

static const char *diag_intern(struct sp_diag *d, const char *file)
{
    if (file == NULL) {
        return NULL;
    }
    for (int i = 0; i < d->nfiles; i++) {
        if (strcmp(d->files[i], file) == 0) {
            return d->files[i];
        }
    }
    d->files = sp_xrealloc(d->files, sizeof(char *) * (size_t)(d->nfiles + 1));
    d->files[d->nfiles] = sp_xstrdup(file);
    return d->files[d->nfiles++];
}

struct sp_diag_item *sp_diag_addv(struct sp_diag *d, bool warning, const struct sp_loc *loc,
                                  int caret_len, const char *fmt, va_list ap)
{
    int kept = 0;
    for (int i = 0; i < d->n; i++) {
        kept += d->items[i].warning == warning;
    }
    if (warning) {
        d->nwarnings++;
    } else {
        d->nerrors++;
    }
    if (kept >= SP_DIAG_MAX) {
        d->dropped++;
        return NULL;
    }

    struct sp_buf msg;
    sp_buf_init(&msg);
    sp_buf_vprintf(&msg, fmt, ap);

    d->items = sp_xrealloc(d->items, sizeof(*d->items) * (size_t)(d->n + 1));
    struct sp_diag_item *it = &d->items[d->n++];
    memset(it, 0, sizeof(*it));
    if (loc != NULL) {
        it->loc = *loc;
        it->loc.file = diag_intern(d, loc->file);
    }
    it->warning = warning;
    it->msg = sp_buf_steal(&msg);
    it->caret_len = caret_len > 0 ? caret_len : 1;
    it->caret_col = it->loc.col;
    return it;
}

struct sp_diag_item *sp_diag_error(struct sp_diag *d, const struct sp_loc *loc, int caret_len,
                                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct sp_diag_item *it = sp_diag_addv(d, false, loc, caret_len, fmt, ap);
    va_end(ap);
    return it;
}

struct sp_diag_item *sp_diag_warn(struct sp_diag *d, const struct sp_loc *loc, int caret_len,
                                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct sp_diag_item *it = sp_diag_addv(d, true, loc, caret_len, fmt, ap);
    va_end(ap);
    return it;
}

void sp_diag_hint(struct sp_diag_item *it, const char *fmt, ...)
{
    if (it == NULL) {
        return;
    }
    struct sp_buf b;
    va_list ap;
    sp_buf_init(&b);
    va_start(ap, fmt);
    sp_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    free(it->hint);
    it->hint = sp_buf_steal(&b);
}

/* ---- source lines ---- */

/* Byte offset of 1-based character column col in line (UTF-8), clamped to its end. */
static int diag_col_to_byte(const char *line, int col)
{
    int chars = 0;
    int i = 0;
    for (; line[i] != '\0'; i++) {
        if (((unsigned char)line[i] & 0xC0) != 0x80) {
            if (chars == col - 1) {
                return i;
            }
            chars++;
        }
    }
    return i;
}

/* Number of characters in the first n bytes of line. */
static int diag_chars(const char *line, int n)
{
    int chars = 0;
    for (int i = 0; i < n && line[i] != '\0'; i++) {
        chars += ((unsigned char)line[i] & 0xC0) != 0x80;
    }
    return chars;
}

/*
 * Where byte offset pos of the original line lands in the masked line, given
 * the sorted, non-overlapping ranges each replaced by "****". An offset inside
 * a range lands at its start (or after the mask when is_end).
 */
static int diag_map_pos(const struct sp_mask_range *r, int n, int pos, bool is_end)
{
    int shift = 0;
    for (int i = 0; i < n; i++) {
        if (pos >= r[i].end) {
            shift += 4 - (r[i].end - r[i].start);
        } else if (pos > r[i].start) {
            return r[i].start + shift + (is_end ? 4 : 0);
        } else {
            break;
        }
    }
    return pos + shift;
}

/* Mask the ranges in line; returns the new line (heap) and maps the caret. */
static char *diag_mask_line(const char *line, struct sp_mask_range *r, int n,
                            struct sp_diag_item *it)
{
    int m = sp_mask_normalize(r, n);
    int start = diag_col_to_byte(line, it->loc.col);
    int end = start;
    for (int c = 0; c < it->caret_len && line[end] != '\0'; c++) {
        end++;
        while (((unsigned char)line[end] & 0xC0) == 0x80) {
            end++;
        }
    }

    struct sp_buf out;
    int pos = 0;
    sp_buf_init(&out);
    for (int i = 0; i < m; i++) {
        sp_buf_append(&out, line + pos, (size_t)(r[i].start - pos));
        sp_buf_puts(&out, "****");
        pos = r[i].end;
    }
    sp_buf_puts(&out, line + pos);
    char *masked = sp_buf_steal(&out);

    int nstart = diag_map_pos(r, m, start, false);
    int nend = diag_map_pos(r, m, end, true);
    it->caret_col = diag_chars(masked, nstart) + 1;
    it->caret_len = diag_chars(masked + nstart, nend - nstart);
    if (it->caret_len < 1) {
        it->caret_len = 1;
    }
    return masked;
}

/* The value after "key:" on line: quoted, up to , or } in a flow mapping, or to the end. */
static int diag_find_key_values(const char *line, const char *key, struct sp_mask_range **r, int n)
{
    size_t klen = strlen(key);
    bool flow = false;
    for (const char *p = line; *p != '\0'; p++) {
        if (*p == '{') {
            flow = true;
        }
        if (strncmp(p, key, klen) != 0 ||
            (p > line && strchr(" \t{,\"'", p[-1]) == NULL && p[-1] != '-')) {
            continue;
        }
        const char *q = p + klen;
        if (*q == '"' || *q == '\'') {
            q++;
        }
        while (*q == ' ' || *q == '\t') {
            q++;
        }
        if (*q != ':' || (q[1] != ' ' && q[1] != '\t' && q[1] != '\0')) {
            continue;
        }
        q++;
        while (*q == ' ' || *q == '\t') {
            q++;
        }
        const char *v = q;
        if (*q == '"' || *q == '\'') {
            char quote = *q++;
            while (*q != '\0' && *q != quote) {
                q += (*q == '\\' && quote == '"' && q[1] != '\0') ? 2 : 1;
            }
            if (*q == quote) {
                q++;
            }
        } else {
            while (*q != '\0' && !(flow && (*q == ',' || *q == '}'))) {
                q++;
            }
        }
        /* a reference is shown as written, as for spans */
        char *raw = sp_xstrndup(v, (size_t)(q - v));
        if (strstr(raw, "${") == NULL) {
            n = sp_mask_push(r, n, (int)(v - line), (int)(q - line));
        }
        free(raw);
        p = q - 1;
    }
    return n;
}

void sp_diag_attach_source(struct sp_diag *d, const char *file, const char *text, size_t len,
                           const struct sp_diag_span *secrets, int nsecrets,
                           const char *const *secret_keys)
{
    for (int i = 0; i < d->n; i++) {
        struct sp_diag_item *it = &d->items[i];
        if (it->source_line != NULL || it->loc.line <= 0 || it->loc.file == NULL ||
            strcmp(it->loc.file, file) != 0) {
            continue;
        }
        /* find the line */
        size_t pos = 0;
        if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
            pos = 3; /* a byte order mark: libyaml does not count it as a column */
        }
        for (int ln = 1; ln < it->loc.line && pos < len; pos++) {
            if (text[pos] == '\n') {
                ln++;
            }
        }
        if (pos >= len && !(pos == len && it->loc.line == 1)) {
            continue;
        }
        size_t eol = pos;
        while (eol < len && text[eol] != '\n') {
            eol++;
        }
        if (eol > pos && text[eol - 1] == '\r') {
            eol--;
        }
        char *line = sp_xstrndup(text + pos, eol - pos);
        if (strlen(line) != eol - pos) {
            free(line); /* NUL bytes: not shown */
            continue;
        }

        struct sp_mask_range *ranges = NULL;
        int n = 0;
        for (int s = 0; s < nsecrets; s++) {
            if (secrets[s].line != it->loc.line) {
                continue;
            }
            int b0 = diag_col_to_byte(line, secrets[s].col);
            int b1 = diag_col_to_byte(line, secrets[s].col + secrets[s].len);
            char *raw = sp_xstrndup(line + b0, (size_t)(b1 - b0));
            if (strstr(raw, "${") == NULL) {
                n = sp_mask_push(&ranges, n, b0, b1);
            }
            free(raw);
        }
        for (size_t k = 0; secret_keys != NULL && secret_keys[k] != NULL; k++) {
            n = diag_find_key_values(line, secret_keys[k], &ranges, n);
        }
        n = sp_mask_find(line, &ranges, n);
        it->source_line = diag_mask_line(line, ranges, n, it);
        free(ranges);
        free(line);
    }
}

void sp_diag_sort(struct sp_diag *d)
{
    /* insertion sort: stable, and there are at most 2 * SP_DIAG_MAX items */
    for (int i = 1; i < d->n; i++) {
        struct sp_diag_item tmp = d->items[i];
        int j = i;
        while (j > 0) {
            const struct sp_diag_item *p = &d->items[j - 1];
            bool after = p->loc.line > tmp.loc.line ||
                         (p->loc.line == tmp.loc.line && p->loc.col > tmp.loc.col);
            if (!after) {
                break;
            }
            d->items[j] = d->items[j - 1];
            j--;
        }
        d->items[j] = tmp;
    }
}

/* ---- printing ---- */

/* Longer source lines are cut to this many characters around the caret. */
#define DIAG_LINE_MAX    160
#define DIAG_LINE_BEFORE 60

static void diag_format_source(const struct sp_diag_item *it, struct sp_buf *out)
{
    const char *line = it->source_line;
    int nchars = diag_chars(line, (int)strlen(line));
    int first = 0; /* first character shown (0-based) */
    int count = nchars;
    if (nchars > DIAG_LINE_MAX) {
        count = DIAG_LINE_MAX;
        first = it->caret_col - 1 - DIAG_LINE_BEFORE;
        if (first > nchars - count) {
            first = nchars - count;
        }
        if (first < 0) {
            first = 0;
        }
    }
    bool cut_left = first > 0;
    bool cut_right = first + count < nchars;
    int b0 = diag_col_to_byte(line, first + 1);
    int b1 = diag_col_to_byte(line, first + count + 1);
    sp_buf_printf(out, "%5d | %s%.*s%s\n", it->loc.line, cut_left ? "..." : "", b1 - b0, line + b0,
                  cut_right ? "..." : "");

    sp_buf_printf(out, "%5s | %s", "", cut_left ? "   " : "");
    /* copy tabs so the caret lines up however the terminal shows them */
    int col = first; /* 0-based character column of the next output */
    for (int i = b0; i < b1 && col < it->caret_col - 1; i++) {
        if (((unsigned char)line[i] & 0xC0) == 0x80) {
            continue;
        }
        sp_buf_putc(out, line[i] == '\t' ? '\t' : ' ');
        col++;
    }
    while (col < it->caret_col - 1) {
        sp_buf_putc(out, ' ');
        col++;
    }
    int len = it->caret_len;
    if (cut_right && col + len > first + count) {
        len = first + count - col;
    }
    sp_buf_putc(out, '^');
    for (int i = 1; i < len; i++) {
        sp_buf_putc(out, '~');
    }
    sp_buf_putc(out, '\n');
}

static void diag_format_item(const struct sp_diag_item *it, struct sp_buf *out)
{
    const char *sev = it->warning ? "warning" : "error";
    if (it->loc.file != NULL && it->loc.line > 0) {
        sp_buf_printf(out, "%s:%d:%d: %s: %s\n", it->loc.file, it->loc.line, it->loc.col, sev,
                      it->msg);
    } else if (it->loc.file != NULL) {
        sp_buf_printf(out, "%s: %s: %s\n", it->loc.file, sev, it->msg);
    } else {
        sp_buf_printf(out, "%s: %s\n", sev, it->msg);
    }
    if (it->source_line != NULL && it->loc.line > 0) {
        diag_format_source(it, out);
    }
    if (it->hint != NULL && it->hint[0] != '\0') {
        sp_buf_printf(out, "  hint: %s\n", it->hint);
    }
}

void sp_diag_format(const struct sp_diag *d, struct sp_buf *out)
{
    for (int i = 0; i < d->n; i++) {
        diag_format_item(&d->items[i], out);
    }
    if (d->dropped > 0) {
        const char *file = d->n > 0 ? d->items[d->n - 1].loc.file : NULL;
        sp_buf_printf(out, "%s%snote: %d more errors and warnings not shown\n",
                      file != NULL ? file : "", file != NULL ? ": " : "", d->dropped);
    }
}

void sp_diag_print(const struct sp_diag *d, FILE *out)
{
    struct sp_buf b;
    sp_buf_init(&b);
    sp_diag_format(d, &b);
    if (b.len > 0) {
        fwrite(b.data, 1, b.len, out);
    }
    fflush(out);
    sp_buf_fini(&b);
}
