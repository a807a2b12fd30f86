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

static int mask_push(int **ranges, int n, int start, int end)
{
    if (end <= start) {
        return n;
    }
    *ranges = sp_xrealloc(*ranges, sizeof(int) * 2 * (size_t)(n + 1));
    (*ranges)[2 * n] = start;
    (*ranges)[2 * n + 1] = end;
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
static int mask_find_userinfo(const char *s, int **ranges, int n)
{
    const char *p = s;
    while ((p = strstr(p, "://")) != NULL) {
        const char *start = p + 3;
        const char *q = start;
        const char *at = NULL;
        while (*q != '\0' && *q != '/' && *q != '?' && *q != '#' && *q != '"' && *q != '\'' &&
               !isspace((unsigned char)*q)) {
            if (*q == '@') {
                at = q;
            }
            q++;
        }
        if (at != NULL) {
            const char *colon = memchr(start, ':', (size_t)(at - start));
            if (colon != NULL) {
                n = mask_push(ranges, n, (int)(colon + 1 - s), (int)(at - s));
            }
        }
        p = q;
    }
    return n;
}

/* `password=value`, `password = 'quoted value'`, `?password=value&...`. */
static int mask_find_keyword(const char *s, int **ranges, int n)
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
                q++;
            }
        }
        n = mask_push(ranges, n, (int)(v - s), (int)(q - s));
        p = (*q == '\0') ? q - 1 : q;
    }
    return n;
}

static int mask_cmp(const void *a, const void *b)
{
    const int *x = a;
    const int *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

int sp_mask_find(const char *s, int **ranges, int n)
{
    n = mask_find_userinfo(s, ranges, n);
    n = mask_find_keyword(s, ranges, n);
    return n;
}

char *sp_cfg_mask_conninfo(const char *s)
{
    int *ranges = NULL;
    int n = sp_mask_find(s, &ranges, 0);
    struct sp_buf out;
    int pos = 0;

    if (n > 1) {
        qsort(ranges, (size_t)n, sizeof(int) * 2, mask_cmp);
    }
    sp_buf_init(&out);
    for (int i = 0; i < n; i++) {
        int start = ranges[2 * i];
        int end = ranges[2 * i + 1];
        if (end <= pos) {
            continue;
        }
        if (start < pos) {
            start = pos;
        }
        sp_buf_append(&out, s + pos, (size_t)(start - pos));
        sp_buf_puts(&out, "****");
        pos = end;
    }
    sp_buf_puts(&out, s + pos);
    free(ranges);
    return sp_buf_steal(&out);
}
