/*
 * Option tables: every plugin (and the top-level settings) declares its
 * options as a table; one validator (config/schema.c) fills a conf struct
 * from YAML, checking types, ranges, enum values, sizes, durations, unknown
 * keys (with did-you-mean) and required options. docs/config.md is
 * generated from the same tables.
 *
 * Field types by option type:
 *   STR      char *          (heap, freed by sp_opt_free_conf)
 *   INT      int64_t
 *   BOOL     bool
 *   DURATION int64_t         milliseconds; YAML "250ms", "5s", "2m", "1h" or a bare number of ms
 *   SIZE     int64_t         bytes; YAML "64MiB", "512KiB", "1GiB", "10MB", or a bare number
 *   ENUM     int             index into enum_names
 *   STRLIST  struct sp_strlist   a YAML sequence of scalars (or one scalar)
 *   MAP      struct sp_strmap    a YAML mapping of scalar -> scalar
 */
#ifndef SIPHON_CORE_OPT_H
#define SIPHON_CORE_OPT_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

enum sp_opt_type {
    SP_OPT_T_END = 0,
    SP_OPT_T_STR,
    SP_OPT_T_INT,
    SP_OPT_T_BOOL,
    SP_OPT_T_DURATION,
    SP_OPT_T_SIZE,
    SP_OPT_T_ENUM,
    SP_OPT_T_STRLIST,
    SP_OPT_T_MAP,
};

#define SP_OPT_REQUIRED 0x1u
#define SP_OPT_SECRET   0x2u /* never printed (passwords, tokens) */

struct sp_strlist {
    char **items;
    int n;
};

struct sp_strmap {
    char **keys;
    char **values;
    int n;
};

struct sp_opt {
    const char *name;
    enum sp_opt_type type;
    size_t offset;
    const char *def; /* default in YAML text form; NULL: none (zero value) */
    unsigned flags;
    int64_t min, max;              /* INT, DURATION, SIZE: inclusive bounds (both 0: unbounded) */
    const char *const *enum_names; /* ENUM: NULL-terminated */
    const char *help;
};

#define SP_OPT_OFFSET(T, f, ctype) _Generic(((T *)0)->f, ctype : offsetof(T, f))

#define SP_OPT_STR(n, T, f, def, flags, help)                                              \
    {                                                                                      \
        (n), SP_OPT_T_STR, SP_OPT_OFFSET(T, f, char *), (def), (flags), 0, 0, NULL, (help) \
    }
#define SP_OPT_INT(n, T, f, def, lo, hi, help)                                              \
    {                                                                                       \
        (n), SP_OPT_T_INT, SP_OPT_OFFSET(T, f, int64_t), (def), 0, (lo), (hi), NULL, (help) \
    }
#define SP_OPT_BOOL(n, T, f, def, help)                                             \
    {                                                                               \
        (n), SP_OPT_T_BOOL, SP_OPT_OFFSET(T, f, bool), (def), 0, 0, 0, NULL, (help) \
    }
#define SP_OPT_DURATION(n, T, f, def, lo, hi, help)                                              \
    {                                                                                            \
        (n), SP_OPT_T_DURATION, SP_OPT_OFFSET(T, f, int64_t), (def), 0, (lo), (hi), NULL, (help) \
    }
#define SP_OPT_SIZE(n, T, f, def, lo, hi, help)                                              \
    {                                                                                        \
        (n), SP_OPT_T_SIZE, SP_OPT_OFFSET(T, f, int64_t), (def), 0, (lo), (hi), NULL, (help) \
    }
#define SP_OPT_ENUM(n, T, f, def, names, help)                                        \
    {                                                                                 \
        (n), SP_OPT_T_ENUM, SP_OPT_OFFSET(T, f, int), (def), 0, 0, 0, (names), (help) \
    }
#define SP_OPT_STRLIST(n, T, f, flags, help)                                                      \
    {                                                                                             \
        (n), SP_OPT_T_STRLIST, SP_OPT_OFFSET(T, f, struct sp_strlist), NULL, (flags), 0, 0, NULL, \
            (help)                                                                                \
    }
#define SP_OPT_MAP(n, T, f, help)                                                             \
    {                                                                                         \
        (n), SP_OPT_T_MAP, SP_OPT_OFFSET(T, f, struct sp_strmap), NULL, 0, 0, 0, NULL, (help) \
    }
#define SP_OPT_END                                       \
    {                                                    \
        NULL, SP_OPT_T_END, 0, NULL, 0, 0, 0, NULL, NULL \
    }

/* Free the heap members (STR, STRLIST, MAP) of a conf filled from opts; not conf itself. */
void sp_opt_free_conf(const struct sp_opt *opts, void *conf);

#endif
