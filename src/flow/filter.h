/*
 * The filter expression language (docs/flow-filter.md), compiled once and
 * evaluated per event. Also accepts the FabricEventStream JSONPath form
 * `[?(<expr>)]` with @.OldImage / @.NewImage.
 *
 * A compiled filter holds scratch state: evaluate it on one thread.
 */
#ifndef SIPHON_FLOW_FILTER_H
#define SIPHON_FLOW_FILTER_H

#include <stddef.h>

#include <stdbool.h>

#include "core/err.h"
#include "core/event.h"

struct sp_filter;

/*
 * Compile expr (len bytes). On a syntax or type error returns SP_EINVAL with
 * err (message and hint) and the byte offset and length of the offending
 * part of expr in *err_off and *err_len.
 */
int sp_filter_compile(const char *expr, size_t len, struct sp_filter **out, size_t *err_off,
                      size_t *err_len, struct sp_err *err);
/* Whether ev matches. Errors (a missing column, a value of the wrong type) never show values. */
int sp_filter_eval(struct sp_filter *f, const struct sp_event *ev, bool *match, struct sp_err *err);
void sp_filter_free(struct sp_filter *f);

#endif
