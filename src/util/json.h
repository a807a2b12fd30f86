/*
 * A small strict JSON (RFC 8259) scanner: validates values and walks the
 * members of objects and the elements of arrays in place, without building
 * a tree. For JSON that siphon edits or reads a few fields of (outbox
 * payloads, HTTP responses); values it does not look at stay byte for byte
 * as they were.
 */
#ifndef SIPHON_UTIL_JSON_H
#define SIPHON_UTIL_JSON_H

#include <stddef.h>

#include <stdbool.h>

#include "util/buf.h"

/* A piece of the input: a whole value, or a member name with its quotes. */
struct sp_json_span {
    const char *p;
    size_t len;
};

/* The first byte of p..end that is not JSON whitespace (end if none). */
const char *sp_json_ws(const char *p, const char *end);
/*
 * Validates one value starting at p (no leading whitespace) and returns the
 * byte after it, or NULL when it is not valid JSON (strings must be valid
 * UTF-8; nesting is limited to 256 levels).
 */
const char *sp_json_skip(const char *p, const char *end);
/* Whether the n bytes at p are exactly one JSON value, whitespace around it allowed. */
bool sp_json_valid(const char *p, size_t n);

/* Walks an object or an array. */
struct sp_json_iter {
    const char *p;
    const char *end;
    char close; /* '}' or ']' */
    bool first;
};

/*
 * Starts walking the object or array in v (whitespace around it allowed).
 * Returns 0, or -1 when v does not start with '{' or '[' as kind asks
 * ('{', '[').
 */
int sp_json_iter_init(struct sp_json_iter *it, struct sp_json_span v, char kind);
/*
 * The next member (key: the name as written, quotes included; NULL for
 * arrays) and its value. Returns 1, 0 at the end, -1 on invalid JSON.
 */
int sp_json_iter_next(struct sp_json_iter *it, struct sp_json_span *key, struct sp_json_span *val);

/* Whether the member name key (quotes included) is name; escapes in key are decoded. */
bool sp_json_key_is(struct sp_json_span key, const char *name);
/* Appends the decoded text of the string literal v to out; -1 if v is not a string. */
int sp_json_str(struct sp_json_span v, struct sp_buf *out);
/* The value of member name of object obj; false when obj is no object or has no such member. */
bool sp_json_member(struct sp_json_span obj, const char *name, struct sp_json_span *val);
/* Element idx (0-based) of array arr; false when arr is no array or is shorter. */
bool sp_json_elem(struct sp_json_span arr, long idx, struct sp_json_span *val);

#endif
