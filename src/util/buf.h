/*
 * Growable byte string, always NUL-terminated, binary-safe (like
 * PostgreSQL's StringInfo). The struct is caller-owned storage: _init/_fini.
 */
#ifndef SIPHON_UTIL_BUF_H
#define SIPHON_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>
#include <string.h>

#include "util/mem.h"

struct sp_buf {
    char *data;
    size_t len;
    size_t cap;
};

void sp_buf_init(struct sp_buf *b);
void sp_buf_fini(struct sp_buf *b);
void sp_buf_reset(struct sp_buf *b);
/* Cuts b back to its first len bytes (len <= b->len). */
void sp_buf_truncate(struct sp_buf *b, size_t len);
/* Grow so that extra more bytes (and the NUL) fit; the slow path of sp_buf_reserve. */
void sp_buf_grow(struct sp_buf *b, size_t extra);
void sp_buf_printf(struct sp_buf *b, const char *fmt, ...) SP_PRINTF(2, 3);
void sp_buf_vprintf(struct sp_buf *b, const char *fmt, va_list ap);
void sp_buf_put_u64(struct sp_buf *b, uint64_t v);
/* v in decimal, zero-padded to at least width digits (printf's %0*llu), without printf. */
void sp_buf_put_u64_pad(struct sp_buf *b, uint64_t v, int width);
void sp_buf_put_i64(struct sp_buf *b, int64_t v);
/* Append s as a JSON string literal, quotes included; invalid UTF-8 bytes become U+FFFD. */
void sp_buf_put_json_str(struct sp_buf *b, const char *s, size_t n);
/*
 * Length (1..4) of the valid UTF-8 sequence at s (n > 0 bytes available), or 0
 * when it is invalid (overlong, surrogate, past U+10FFFF, truncated). Stores the
 * code point in *cp when cp is not NULL.
 */
size_t sp_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
/* True when the n bytes at s are valid UTF-8. */
bool sp_utf8_valid(const char *s, size_t n);
/*
 * The per-byte operations of every encoder, inline: formats call them for each
 * value and punctuation mark, and a call per byte showed up in profiles.
 */
static inline void sp_buf_reserve(struct sp_buf *b, size_t extra)
{
    if (b->len + extra + 1 > b->cap) {
        sp_buf_grow(b, extra);
    }
}

static inline void sp_buf_append(struct sp_buf *b, const void *p, size_t n)
{
    sp_buf_reserve(b, n);
    if (n > 0) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
}

static inline void sp_buf_putc(struct sp_buf *b, char c)
{
    sp_buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

/* Inline so that the length of a literal is known at compile time. */
static inline void sp_buf_puts(struct sp_buf *b, const char *s)
{
    sp_buf_append(b, s, strlen(s));
}

/* Detach the data: the caller frees it; b is left empty. */
char *sp_buf_steal(struct sp_buf *b);

#endif
