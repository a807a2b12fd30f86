/*
 * A small JSON reader for values siphon already holds as text (json and
 * jsonb columns, outbox payloads): skip a value, find an object member or
 * an array element, unescape a string. Works on compact, valid JSON as
 * sp_pgtext_to_json writes it (no whitespace outside strings); on anything
 * else the functions fail rather than read past the end. No allocation
 * except into the caller's buffer; reentrant.
 */
#ifndef SIPHON_UTIL_JSON_H
#define SIPHON_UTIL_JSON_H

#include <stddef.h>

#include <stdbool.h>

#include "util/buf.h"

/* The end of the value starting at p (before e), or NULL if it is not one valid value. */
const char *sp_json_skip(const char *p, const char *e);
/*
 * If [p, e) is an object with member key (klen bytes, compared after
 * unescaping), sets [*vp, *ve) to its value and returns true. The first of
 * duplicate keys wins.
 */
bool sp_json_member(const char *p, const char *e, const char *key, size_t klen, const char **vp,
                    const char **ve);
/* If [p, e) is an array with an element idx (0-based), sets [*vp, *ve) to it. */
bool sp_json_elem(const char *p, const char *e, long idx, const char **vp, const char **ve);
/* Appends the UTF-8 text of the JSON string literal [p, e) (quotes included); false if invalid. */
bool sp_json_unescape(const char *p, const char *e, struct sp_buf *out);

#endif
