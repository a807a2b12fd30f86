// SPDX-License-Identifier: Apache-2.0
/*
 * Reading compact JSON text (util/json.h). Bounds-checked everywhere; no
 * recursion (nesting is counted, not followed), so deep documents cost
 * nothing on the stack.
 */
#include "util/json.h"

#include <stdint.h>

#include <string.h>

static const char *json_skip_string(const char *p, const char *e)
{
    p++; /* the opening quote */
    while (p < e) {
        if (*p == '\\') {
            p += 2;
            continue;
        }
        if (*p == '"') {
            return p + 1;
        }
        p++;
    }
    return NULL;
}

const char *sp_json_skip(const char *p, const char *e)
{
    long depth = 0;
    if (p >= e) {
        return NULL;
    }
    do {
        if (p >= e) {
            return NULL;
        }
        switch (*p) {
        case '"':
            p = json_skip_string(p, e);
            if (p == NULL) {
                return NULL;
            }
            break;
        case '{':
        case '[':
            depth++;
            p++;
            break;
        case '}':
        case ']':
            depth--;
            p++;
            if (depth < 0) {
                return NULL;
            }
            break;
        case ',':
        case ':':
            if (depth == 0) {
                return NULL;
            }
            p++;
            break;
        default: {
            const char *s = p;
            while (p < e && *p != ',' && *p != ':' && *p != '}' && *p != ']' && *p != '"' &&
                   *p != '{' && *p != '[') {
                p++;
            }
            if (p == s) {
                return NULL;
            }
            break;
        }
        }
    } while (depth > 0);
    return p;
}

/* Whether the string literal [p, q) equals key once unescaped. */
static bool json_key_eq(const char *p, const char *q, const char *key, size_t klen)
{
    if (memchr(p, '\\', (size_t)(q - p)) == NULL) {
        return (size_t)(q - p) == klen + 2 && memcmp(p + 1, key, klen) == 0;
    }
    struct sp_buf b;
    sp_buf_init(&b);
    bool eq = sp_json_unescape(p, q, &b) && b.len == klen && memcmp(b.data, key, klen) == 0;
    sp_buf_fini(&b);
    return eq;
}

bool sp_json_member(const char *p, const char *e, const char *key, size_t klen, const char **vp,
                    const char **ve)
{
    if (p >= e || *p != '{') {
        return false;
    }
    p++;
    while (p < e && *p != '}') {
        if (*p != '"') {
            return false;
        }
        const char *k = p;
        p = json_skip_string(p, e);
        if (p == NULL || p >= e || *p != ':') {
            return false;
        }
        const char *kend = p;
        p++;
        const char *v = p;
        p = sp_json_skip(p, e);
        if (p == NULL) {
            return false;
        }
        if (json_key_eq(k, kend, key, klen)) {
            *vp = v;
            *ve = p;
            return true;
        }
        if (p < e && *p == ',') {
            p++;
        }
    }
    return false;
}

bool sp_json_elem(const char *p, const char *e, long idx, const char **vp, const char **ve)
{
    if (p >= e || *p != '[' || idx < 0) {
        return false;
    }
    p++;
    for (long i = 0; p < e && *p != ']'; i++) {
        const char *v = p;
        p = sp_json_skip(p, e);
        if (p == NULL) {
            return false;
        }
        if (i == idx) {
            *vp = v;
            *ve = p;
            return true;
        }
        if (p < e && *p == ',') {
            p++;
        }
    }
    return false;
}

static int json_hex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static bool json_u4(const char *p, const char *e, uint32_t *out)
{
    if (e - p < 4) {
        return false;
    }
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = json_hex(p[i]);
        if (h < 0) {
            return false;
        }
        v = v << 4 | (uint32_t)h;
    }
    *out = v;
    return true;
}

static void json_put_utf8(struct sp_buf *out, uint32_t cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | cp >> 6);
        b[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | cp >> 12);
        b[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | cp >> 18);
        b[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        b[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    sp_buf_append(out, b, n);
}

bool sp_json_unescape(const char *p, const char *e, struct sp_buf *out)
{
    if (e - p < 2 || *p != '"' || e[-1] != '"') {
        return false;
    }
    p++;
    e--;
    while (p < e) {
        const char *run = p;
        while (p < e && *p != '\\') {
            p++;
        }
        sp_buf_append(out, run, (size_t)(p - run));
        if (p >= e) {
            break;
        }
        if (e - p < 2) {
            return false;
        }
        char c = p[1];
        p += 2;
        static const char from[] = "\"\\/bfnrt";
        static const char to[] = "\"\\/\b\f\n\r\t";
        const char *f = c != '\0' ? strchr(from, c) : NULL;
        if (f != NULL) {
            sp_buf_putc(out, to[f - from]);
            continue;
        }
        uint32_t cp;
        if (c != 'u' || !json_u4(p, e, &cp)) {
            return false;
        }
        p += 4;
        if (cp >= 0xD800 && cp < 0xDC00) {
            uint32_t lo;
            if (e - p >= 6 && p[0] == '\\' && p[1] == 'u' && json_u4(p + 2, e, &lo) &&
                lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else {
                cp = 0xFFFD;
            }
        } else if (cp >= 0xDC00 && cp < 0xE000) {
            cp = 0xFFFD;
        }
        json_put_utf8(out, cp);
    }
    return true;
}
