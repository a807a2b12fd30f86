/*
 * Logging: one line per message to stderr, human ("2026-...Z info [source
 * postgres "orders"] connected") or JSON. Every component logs through a
 * context naming its kind, type and instance. Thread-safe.
 */
#ifndef SIPHON_TELEMETRY_LOG_H
#define SIPHON_TELEMETRY_LOG_H

#include <stdbool.h>

#include "util/mem.h"

enum sp_log_level {
    SP_LOG_ERROR = 0,
    SP_LOG_WARN,
    SP_LOG_INFO,
    SP_LOG_DEBUG,
    SP_LOG_TRACE,
};

struct sp_logctx {
    char prefix[160]; /* e.g. `sink file "dead"`; empty for the process itself */
};

void sp_logctx_init(struct sp_logctx *lc, const char *kind, const char *type, const char *name);
void sp_log_setup(enum sp_log_level level, bool json);
int sp_log_parse_level(const char *s, enum sp_log_level *out);
bool sp_log_enabled(const struct sp_logctx *lc, enum sp_log_level level);
void sp_log_emit(const struct sp_logctx *lc, enum sp_log_level level, const char *fmt, ...)
    SP_PRINTF(3, 4);
/* Like sp_log_emit, then "  hint: ..." when hint is non-empty. */
void sp_log_emit_hint(const struct sp_logctx *lc, enum sp_log_level level, const char *hint,
                      const char *fmt, ...) SP_PRINTF(4, 5);

extern const struct sp_logctx sp_log_main;

#define SP_LOG_AT(lc, lvl, ...)                    \
    do {                                           \
        if (sp_log_enabled((lc), (lvl))) {         \
            sp_log_emit((lc), (lvl), __VA_ARGS__); \
        }                                          \
    } while (0)
#define sp_log_error(lc, ...) SP_LOG_AT(lc, SP_LOG_ERROR, __VA_ARGS__)
#define sp_log_warn(lc, ...)  SP_LOG_AT(lc, SP_LOG_WARN, __VA_ARGS__)
#define sp_log_info(lc, ...)  SP_LOG_AT(lc, SP_LOG_INFO, __VA_ARGS__)
#define sp_log_debug(lc, ...) SP_LOG_AT(lc, SP_LOG_DEBUG, __VA_ARGS__)
#define sp_log_trace(lc, ...) SP_LOG_AT(lc, SP_LOG_TRACE, __VA_ARGS__)

#endif
