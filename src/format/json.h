/*
 * What other formats borrow from the `json` format, so that every format
 * converts values the same way (DESIGN.md, "Event format json").
 */
#ifndef SIPHON_FORMAT_JSON_H
#define SIPHON_FORMAT_JSON_H

#include <stdbool.h>

#include "core/err.h"
#include "core/event.h"
#include "core/plugin.h"
#include "util/buf.h"

/*
 * {"col": value, ...} of tup (a tuple of ev), with natural JSON values;
 * only the key columns when keys_only. Unchanged TOASTed values as the json
 * format writes them. On error out may hold part of the row.
 */
int sp_format_json_row(const struct sp_format *fmt, const struct sp_event *ev,
                       const struct sp_tuple *tup, bool keys_only, struct sp_buf *out,
                       struct sp_err *err);
/* The key a flow set: JSON text as it is, a plain string as a JSON string. */
void sp_format_key_override(const struct sp_event *ev, struct sp_buf *key);
/* The JSON of column i of tup (a tuple of ev), as sp_format_json_row writes it. */
int sp_format_json_column(const struct sp_format *fmt, const struct sp_event *ev,
                          const struct sp_tuple *tup, int i, struct sp_buf *out,
                          struct sp_err *err);
/*
 * The json format's key of ev: the key a flow set (as a JSON string), else
 * the object of the replica identity columns, {"prefix": ...} for logical
 * decoding messages, nothing for tables without a key and for truncates.
 */
int sp_format_json_key(const struct sp_format *fmt, const struct sp_event *ev, struct sp_buf *key,
                       struct sp_err *err);

#endif
