// SPDX-License-Identifier: Apache-2.0
/*
 * Strict JSON scanning in place (util/json.h). Validation follows RFC 8259:
 * no trailing commas, no leading zeros, no control characters or invalid
 * UTF-8 in strings, \u escapes with four hex digits and paired surrogates.
 */
#include "util/json.h"

#include <stdint.h>

#include <string.h>

#define JSON_MAX_DEPTH 256

const char *sp_json_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }
    return p;
}

static int json_hex4(const char *p, const char *end, uint32_t *out)
{
    if (end - p < 4) {
        return -1;
    }
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d;
        if (c >= '0' && c <= '9') {
            d = c - '0';
        } else if (c >= 'a' && c <= 'f') {
            d = c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
            d = c - 'A' + 10;
        } else {
            return -1;
        }
        v = v * 16 + (uint32_t)d;
    }
    *out = v;
    return 0;
}

/*
 * The string literal at p (which is '"'): returns the byte after its closing
 * quote, or NULL. When out is not NULL, the decoded text is appended to it.
 */
static const char *json_string(const char *p, const char *end, struct sp_buf *out)
{
    p++;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            return p + 1;
        }
        if (c < 0x20) {
            return NULL;
        }
        if (c == '\\') {
            if (end - p < 2) {
                return NULL;
            }
            char e = p[1];
            const char *simple = strchr("\"\\/bfnrt", e);
            if (e != '\0' && simple != NULL) {
                if (out != NULL) {
                    static const char decoded[] = "\"\\/\b\f\n\r\t";
                    sp_buf_putc(out, decoded[simple - "\"\\/bfnrt"]);
                }
                p += 2;
                continue;
            }
            if (e != 'u') {
                return NULL;
            }
            uint32_t cp;
            if (json_hex4(p + 2, end, &cp) != 0) {
                return NULL;
            }
            p += 6;
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                return NULL; /* a low surrogate on its own */
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo;
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || json_hex4(p + 2, end, &lo) != 0 ||
                    lo < 0xdc00 || lo > 0xdfff) {
                    return NULL;
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }
            if (out != NULL) {
                char u[4];
                size_t n;
                if (cp < 0x80) {
                    u[0] = (char)cp;
                    n = 1;
                } else if (cp < 0x800) {
                    u[0] = (char)(0xc0 | (cp >> 6));
                    u[1] = (char)(0x80 | (cp & 0x3f));
                    n = 2;
                } else if (cp < 0x10000) {
                    u[0] = (char)(0xe0 | (cp >> 12));
                    u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                    u[2] = (char)(0x80 | (cp & 0x3f));
                    n = 3;
                } else {
                    u[0] = (char)(0xf0 | (cp >> 18));
                    u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
                    u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
                    u[3] = (char)(0x80 | (cp & 0x3f));
                    n = 4;
                }
                sp_buf_append(out, u, n);
            }
            continue;
        }
        if (c < 0x80) {
            if (out != NULL) {
                sp_buf_putc(out, (char)c);
            }
            p++;
            continue;
        }
        size_t n = sp_utf8_decode((const unsigned char *)p, (size_t)(end - p), NULL);
        if (n == 0) {
            return NULL;
        }
        if (out != NULL) {
            sp_buf_append(out, p, n);
        }
        p += n;
    }
    return NULL;
}

static const char *json_digits(const char *p, const char *end)
{
    const char *start = p;
    while (p < end && *p >= '0' && *p <= '9') {
        p++;
    }
    return p > start ? p : NULL;
}

static const char *json_number(const char *p, const char *end)
{
    if (p < end && *p == '-') {
        p++;
    }
    if (p < end && *p == '0') {
        p++;
    } else if ((p = json_digits(p, end)) == NULL) {
        return NULL;
    }
    if (p < end && *p == '.' && (p = json_digits(p + 1, end)) == NULL) {
        return NULL;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }
        if ((p = json_digits(p, end)) == NULL) {
            return NULL;
        }
    }
    return p;
}

static const char *json_literal(const char *p, const char *end, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(end - p) < n || memcmp(p, word, n) != 0) {
        return NULL;
    }
    return p + n;
}

static const char *json_value(const char *p, const char *end, int depth);

static const char *json_container(const char *p, const char *end, int depth)
{
    if (depth >= JSON_MAX_DEPTH) {
        return NULL;
    }
    char close = *p == '{' ? '}' : ']';
    bool object = *p == '{';
    p = sp_json_ws(p + 1, end);
    if (p < end && *p == close) {
        return p + 1;
    }
    for (;;) {
        if (object) {
            if (p >= end || *p != '"' || (p = json_string(p, end, NULL)) == NULL) {
                return NULL;
            }
            p = sp_json_ws(p, end);
            if (p >= end || *p != ':') {
                return NULL;
            }
            p = sp_json_ws(p + 1, end);
        }
        if ((p = json_value(p, end, depth + 1)) == NULL) {
            return NULL;
        }
        p = sp_json_ws(p, end);
        if (p < end && *p == ',') {
            p = sp_json_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == close) {
            return p + 1;
        }
        return NULL;
    }
}

static const char *json_value(const char *p, const char *end, int depth)
{
    if (p >= end) {
        return NULL;
    }
    switch (*p) {
    case '{':
    case '[':
        return json_container(p, end, depth);
    case '"':
        return json_string(p, end, NULL);
    case 't':
        return json_literal(p, end, "true");
    case 'f':
        return json_literal(p, end, "false");
    case 'n':
        return json_literal(p, end, "null");
    default:
        return json_number(p, end);
    }
}

const char *sp_json_skip(const char *p, const char *end)
{
    return json_value(p, end, 0);
}

bool sp_json_valid(const char *p, size_t n)
{
    const char *end = p + n;
    const char *q = sp_json_skip(sp_json_ws(p, end), end);
    return q != NULL && sp_json_ws(q, end) == end;
}

int sp_json_iter_init(struct sp_json_iter *it, struct sp_json_span v, char kind)
{
    const char *end = v.p + v.len;
    const char *p = sp_json_ws(v.p, end);
    if (p >= end || *p != kind || (kind != '{' && kind != '[')) {
        return -1;
    }
    it->p = p + 1;
    it->end = end;
    it->close = kind == '{' ? '}' : ']';
    it->first = true;
    return 0;
}

int sp_json_iter_next(struct sp_json_iter *it, struct sp_json_span *key, struct sp_json_span *val)
{
    const char *p = sp_json_ws(it->p, it->end);
    if (p < it->end && *p == it->close) {
        it->p = p;
        return 0;
    }
    if (!it->first) {
        if (p >= it->end || *p != ',') {
            return -1;
        }
        p = sp_json_ws(p + 1, it->end);
    }
    it->first = false;
    if (it->close == '}') {
        const char *k = p;
        if (p >= it->end || *p != '"' || (p = json_string(p, it->end, NULL)) == NULL) {
            return -1;
        }
        if (key != NULL) {
            *key = (struct sp_json_span){k, (size_t)(p - k)};
        }
        p = sp_json_ws(p, it->end);
        if (p >= it->end || *p != ':') {
            return -1;
        }
        p = sp_json_ws(p + 1, it->end);
    } else if (key != NULL) {
        *key = (struct sp_json_span){NULL, 0};
    }
    const char *v = p;
    if ((p = sp_json_skip(p, it->end)) == NULL) {
        return -1;
    }
    *val = (struct sp_json_span){v, (size_t)(p - v)};
    it->p = p;
    return 1;
}

bool sp_json_key_is(struct sp_json_span key, const char *name)
{
    size_t n = strlen(name);
    if (key.len == n + 2 && memchr(key.p, '\\', key.len) == NULL) {
        return memcmp(key.p + 1, name, n) == 0;
    }
    if (memchr(key.p, '\\', key.len) == NULL) {
        return false;
    }
    struct sp_buf b;
    sp_buf_init(&b);
    bool eq = sp_json_str(key, &b) == 0 && b.len == n && memcmp(b.data, name, n) == 0;
    sp_buf_fini(&b);
    return eq;
}

int sp_json_str(struct sp_json_span v, struct sp_buf *out)
{
    const char *end = v.p + v.len;
    const char *p = sp_json_ws(v.p, end);
    if (p >= end || *p != '"') {
        return -1;
    }
    size_t mark = out->len;
    const char *q = json_string(p, end, out);
    if (q == NULL || sp_json_ws(q, end) != end) {
        sp_buf_truncate(out, mark);
        return -1;
    }
    return 0;
}

bool sp_json_member(struct sp_json_span obj, const char *name, struct sp_json_span *val)
{
    struct sp_json_iter it;
    if (sp_json_iter_init(&it, obj, '{') != 0) {
        return false;
    }
    struct sp_json_span k;
    struct sp_json_span v;
    while (sp_json_iter_next(&it, &k, &v) == 1) {
        if (sp_json_key_is(k, name)) {
            *val = v;
            return true;
        }
    }
    return false;
}

bool sp_json_elem(struct sp_json_span arr, long idx, struct sp_json_span *val)
{
    struct sp_json_iter it;
    if (idx < 0 || sp_json_iter_init(&it, arr, '[') != 0) {
        return false;
    }
    struct sp_json_span v;
    for (long i = 0; sp_json_iter_next(&it, NULL, &v) == 1; i++) {
        if (i == idx) {
            *val = v;
            return true;
        }
    }
    return false;
}
