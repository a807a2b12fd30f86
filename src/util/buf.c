// SPDX-License-Identifier: Apache-2.0
/*
 * Growable byte buffers and the JSON string escaper shared by every format.
 */
#include "util/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

void sp_buf_init(struct sp_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void sp_buf_fini(struct sp_buf *b)
{
    free(b->data);
    sp_buf_init(b);
}

void sp_buf_reset(struct sp_buf *b)
{
    b->len = 0;
    if (b->data != NULL) {
        b->data[0] = '\0';
    }
}

void sp_buf_truncate(struct sp_buf *b, size_t len)
{
    if (len <= b->len) {
        b->len = len;
        if (b->data != NULL) {
            b->data[len] = '\0';
        }
    }
}

void sp_buf_grow(struct sp_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap) {
        return;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        cap *= 2;
    }
    b->data = sp_xrealloc(b->data, cap);
    b->cap = cap;
}

void sp_buf_vprintf(struct sp_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n <= 0) {
        return;
    }
    sp_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void sp_buf_printf(struct sp_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sp_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void sp_buf_put_u64(struct sp_buf *b, uint64_t v)
{
    /* Two digits per division: LSNs, xids and timestamps in every event. */
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233"
        "34353637383940414243444546474849505152535455565758596061626364656667"
        "6869707172737475767778798081828384858687888990919293949596979899";
    char tmp[24];
    int i = (int)sizeof(tmp);
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        tmp[--i] = pairs[2 * r + 1];
        tmp[--i] = pairs[2 * r];
    }
    if (v >= 10) {
        tmp[--i] = pairs[2 * v + 1];
        tmp[--i] = pairs[2 * v];
    } else {
        tmp[--i] = (char)('0' + v);
    }
    sp_buf_append(b, tmp + i, sizeof(tmp) - (size_t)i);
}

void sp_buf_put_u64_pad(struct sp_buf *b, uint64_t v, int width)
{
    char tmp[24];
    int i = (int)sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while ((int)sizeof(tmp) - i < width && i > 0) {
        tmp[--i] = '0';
    }
    sp_buf_append(b, tmp + i, sizeof(tmp) - (size_t)i);
}

void sp_buf_put_i64(struct sp_buf *b, int64_t v)
{
    if (v < 0) {
        sp_buf_putc(b, '-');
        sp_buf_put_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        sp_buf_put_u64(b, (uint64_t)v);
    }
}

size_t sp_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp_out)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
        len = 1;
        cp = c;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* Overlong forms, surrogates and code points past U+10FFFF are invalid. */
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return 0;
    }
    if (cp_out != NULL) {
        *cp_out = cp;
    }
    return len;
}

void sp_buf_put_json_str(struct sp_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    sp_buf_reserve(b, n + 2);
    /*
     * Fast path: bytes that need no escaping map one to one, and room for all
     * n of them and both quotes is reserved, so copy without further checks
     * until the first byte that needs care.
     */
    char *d = b->data + b->len;
    *d++ = '"';
    size_t i = 0;
    /*
     * Sixteen (SSE2) or eight bytes at a time while none of them is a control
     * byte, non-ASCII, '"' or '\\' (large text values, TOASTed columns).
     */
#if defined(__SSE2__)
    const __m128i quote16 = _mm_set1_epi8('"');
    const __m128i bslash16 = _mm_set1_epi8('\\');
    const __m128i space16 = _mm_set1_epi8(0x20);
    while (n - i >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        /* Signed: bytes 0x80..0xFF are negative, so "< 0x20" also catches non-ASCII. */
        __m128i bad =
            _mm_or_si128(_mm_cmplt_epi8(x, space16),
                         _mm_or_si128(_mm_cmpeq_epi8(x, quote16), _mm_cmpeq_epi8(x, bslash16)));
        if (_mm_movemask_epi8(bad) != 0) {
            break;
        }
        _mm_storeu_si128((__m128i *)(void *)d, x);
        d += 16;
        i += 16;
    }
#endif
    const uint64_t ones = UINT64_C(0x0101010101010101);
    const uint64_t highs = UINT64_C(0x8080808080808080);
    while (n - i >= 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        uint64_t quote = x ^ (ones * '"');
        uint64_t bslash = x ^ (ones * '\\');
        uint64_t special =
            ((x - ones * 0x20) & ~x) | x | ((quote - ones) & ~quote) | ((bslash - ones) & ~bslash);
        if ((special & highs) != 0) {
            break;
        }
        memcpy(d, p + i, 8);
        d += 8;
        i += 8;
    }
    while (i < n && p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\') {
        *d++ = (char)p[i++];
    }
    b->len = (size_t)(d - b->data);
    if (i == n) {
        b->data[b->len++] = '"';
        b->data[b->len] = '\0';
        return;
    }
    while (i < n) {
        /* Copy the run of bytes that need no escaping in one go. */
        size_t j = i;
        while (j < n && p[j] >= 0x20 && p[j] < 0x80 && p[j] != '"' && p[j] != '\\') {
            j++;
        }
        if (j > i) {
            sp_buf_append(b, p + i, j - i);
            i = j;
            continue;
        }
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t ul = sp_utf8_decode(p + i, n - i, NULL);
            if (ul == 0) {
                sp_buf_append(b, "\xEF\xBF\xBD", 3);
                i++;
            } else {
                sp_buf_append(b, p + i, ul);
                i += ul;
            }
            continue;
        }
        switch (c) {
        case '"':
            sp_buf_append(b, "\\\"", 2);
            break;
        case '\\':
            sp_buf_append(b, "\\\\", 2);
            break;
        case '\n':
            sp_buf_append(b, "\\n", 2);
            break;
        case '\r':
            sp_buf_append(b, "\\r", 2);
            break;
        case '\t':
            sp_buf_append(b, "\\t", 2);
            break;
        case '\b':
            sp_buf_append(b, "\\b", 2);
            break;
        case '\f':
            sp_buf_append(b, "\\f", 2);
            break;
        default: {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sp_buf_append(b, esc, 6);
            break;
        }
        }
        i++;
    }
    sp_buf_putc(b, '"');
}

bool sp_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t ul = sp_utf8_decode(p + i, n - i, NULL);
        if (ul == 0) {
            return false;
        }
        i += ul;
    }
    return true;
}

char *sp_buf_steal(struct sp_buf *b)
{
    char *p = b->data ? b->data : sp_xstrdup("");
    sp_buf_init(b);
    return p;
}
