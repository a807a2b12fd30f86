/*
 * The one validator: fills a conf struct from a YAML mapping and an option
 * table (core/opt.h), with errors at file:line:col. Also the value parsers
 * (sizes, durations, booleans) and the did-you-mean helper, which the rest of
 * the configuration code and the command line share.
 */
#ifndef SIPHON_CONFIG_SCHEMA_H
#define SIPHON_CONFIG_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

#include "config/config.h"
#include "config/yaml.h"
#include "core/err.h"
#include "core/opt.h"

struct sp_opt_ctx {
    const char *what;        /* message prefix, e.g. `sink "bus" (kafka)`; NULL: none */
    const char *noun;        /* "option" (when NULL) or e.g. "key" */
    const char *const *skip; /* keys the caller handles; NULL-terminated; may be NULL */
    struct sp_diag *d;
};

/*
 * Fill conf (zeroed by the caller) from map using opts: every key must be
 * an option (or in ctx->skip), every value must fit its type and bounds,
 * required options must be present (reported at map's location); options
 * not given get their default. A null map (absent or `key:`) counts as
 * empty. SP_OPT_SECRET values are marked secret in the tree and never appear
 * in a message. Returns the number of errors added to ctx->d; conf may then
 * be partly filled (free it with sp_opt_free_conf either way).
 */
int sp_opt_apply(const struct sp_opt *opts, struct sp_node *map, const struct sp_opt_ctx *ctx,
                 void *conf);

/* Apply every default of opts to conf (zeroed by the caller). SP_EINVAL if a default is bad. */
int sp_opt_defaults(const struct sp_opt *opts, void *conf, struct sp_err *err);

/* Check a table for mistakes: duplicate names, defaults that do not parse or fit the bounds,
 * required options with a default, enums without names. For tests. */
int sp_opt_check_table(const struct sp_opt *opts, struct sp_err *err);

/* Bounds of an INT, DURATION or SIZE option: false when unbounded (min == max == 0).
 * max == 0 with min > 0 means no upper bound. */
bool sp_opt_bounds(const struct sp_opt *o, int64_t *lo, int64_t *hi);

/*
 * Value parsers: 0 on success; -1 bad syntax; -2 too large.
 * Sizes: "64MiB", "512KiB", "1GiB", "10MB", "100kB", "8B" or bare bytes
 * (units B kB KB KiB MB MiB GB GiB TB TiB, optional space before the unit).
 * Durations: "250ms", "5s", "2m", "1h" or bare milliseconds.
 * Booleans: true/false, yes/no, on/off, any case.
 * Integers: optional sign and decimal digits.
 */
int sp_opt_parse_int(const char *s, int64_t *out);
int sp_opt_parse_size(const char *s, int64_t *out);
int sp_opt_parse_duration(const char *s, int64_t *out);
int sp_opt_parse_bool(const char *s, bool *out);
/* Shortest exact spelling: 16777216 -> "16MiB", 30000 -> "30s", 1500 -> "1500ms". */
void sp_opt_format_size(int64_t v, char *buf, size_t n);
void sp_opt_format_duration(int64_t v, char *buf, size_t n);

/* Edit distance (Levenshtein, with adjacent transpositions counting one), ignoring case. */
int sp_str_distance(const char *a, const char *b);
/* The name in names[0..n) closest to word, if close enough to be a likely typo; else NULL. */
const char *sp_str_suggest(const char *word, const char *const *names, size_t n);

#endif
