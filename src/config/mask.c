// SPDX-License-Identifier: Apache-2.0
/*
 * Finding passwords in connection strings so they are never shown: the
 * `password=...` keyword (libpq keyword/value form, or a URI query
 * parameter) and the `user:pass@` userinfo of a URI. Used for diagnostics'
 * source lines and by anyone printing a connection string.
 *
 * This is a display filter, not a parser: it errs on the side of hiding.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "config/diag.h"
#include "util/buf.h"

int sp_mask_push(struct sp_mask_range **r, int n, int start, int end)
{
    if (end <= start) {
        return n;
    }
    *r = sp_xrealloc(*r, sizeof(**r) * (size_t)(n + 1));
    (*r)[n].start = start;
    (*r)[n].end = end;
    return n + 1;
}

static bool mask_is_value_end(char c, bool uri)
{
    if (c == '\0' || isspace((unsigned char)c) || c == '"') {
        return true;
    }
    return uri && (c == '&' || c == '#' || c == '\'');
}

/* `scheme://user:pass@host`: the part between the first ':' of the userinfo and its last '@'. */
static int mask_find_userinfo(const char *s, struct sp_mask_range **r, int n)
{
    const char *p = s;
    while ((p = strstr(p, "://")) != NULL) {
        const char *start = p + 3;
        const char *q = start;
        const char *at = NULL;
        while (*q != '\0' && *q != '/' && *q != '?' && *q != '#' && *q != '"' &&
               !isspace((unsigned char)*q)) {
            if (*q == '\\' && q[1] != '\0') {
                q += 2; /* an escaped character (\" in a YAML double-quoted line) */
                continue;
            }
            if (*q == '@') {
                at = q;
            }
            q++;
        }
        if (at != NULL) {
            const char *colon = memchr(start, ':', (size_t)(at - start));
            if (colon != NULL) {
                n = sp_mask_push(r, n, (int)(colon + 1 - s), (int)(at - s));
            }
        }
        p = q;
    }
    return n;
}

/* `password=value`, `password = 'quoted value'`, `?password=value&...`. */
static int mask_find_keyword(const char *s, struct sp_mask_range **r, int n)
{
    static const char kw[] = "password";
    const size_t kwlen = sizeof(kw) - 1;
    bool uri = strstr(s, "://") != NULL;

    for (const char *p = s; *p != '\0'; p++) {
        if (strncasecmp(p, kw, kwlen) != 0) {
            continue;
        }
        const char *q = p + kwlen;
        while (*q == ' ' || *q == '\t') {
            q++;
        }
        if (*q != '=') {
            continue;
        }
        q++;
        while (*q == ' ' || *q == '\t') {
            q++;
        }
        const char *v = q;
        if (*q == '\'' && !uri) {
            /* libpq: single-quoted, backslash escapes */
            v = ++q;
            while (*q != '\0' && *q != '\'') {
                if (*q == '\\' && q[1] != '\0') {
                    q++;
                }
                q++;
            }
        } else {
            while (!mask_is_value_end(*q, uri)) {
                q += (*q == '\\' && q[1] != '\0') ? 2 : 1;
            }
        }
        n = sp_mask_push(r, n, (int)(v - s), (int)(q - s));
        p = (*q == '\0') ? q - 1 : q;
    }
    return n;
}

static int mask_cmp(const void *a, const void *b)
{
    const struct sp_mask_range *x = a;
    const struct sp_mask_range *y = b;
    if (x->start != y->start) {
        return (x->start > y->start) - (x->start < y->start);
    }
    return (x->end > y->end) - (x->end < y->end);
}

int sp_mask_normalize(struct sp_mask_range *r, int n)
{
    if (n > 1) {
        qsort(r, (size_t)n, sizeof(*r), mask_cmp);
    }
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m > 0 && r[i].start <= r[m - 1].end) {
            if (r[i].end > r[m - 1].end) {
                r[m - 1].end = r[i].end;
            }
            continue;
        }
        r[m++] = r[i];
    }
    return m;
}

int sp_mask_find(const char *s, struct sp_mask_range **r, int n)
{
    n = mask_find_userinfo(s, r, n);
    n = mask_find_keyword(s, r, n);
    return n;
}

char *sp_cfg_mask_conninfo(const char *s)
{
    struct sp_mask_range *r = NULL;
    struct sp_buf out;
    int pos = 0;
    int n = sp_mask_find(s, &r, 0);

    n = sp_mask_normalize(r, n);
    sp_buf_init(&out);
    for (int i = 0; r != NULL && i < n; i++) {
        sp_buf_append(&out, s + pos, (size_t)(r[i].start - pos));
        sp_buf_puts(&out, "****");
        pos = r[i].end;
    }
    sp_buf_puts(&out, s + pos);
    free(r);
    return sp_buf_steal(&out);
}
