// SPDX-License-Identifier: Apache-2.0
/*
 * Log emitter. Lines are formatted whole and written with one write(2) so
 * that lines from several threads never interleave.
 */
#include "telemetry/log.h"

#include <stdarg.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/time.h"

static enum sp_log_level log_level = SP_LOG_INFO;
static bool log_json;

const struct sp_logctx sp_log_main = {.prefix = ""};

static const char *const log_names[] = {"error", "warn", "info", "debug", "trace"};

void sp_logctx_init(struct sp_logctx *lc, const char *kind, const char *type, const char *name)
{
    snprintf(lc->prefix, sizeof(lc->prefix), "%s %s \"%s\"", kind, type, name);
}

void sp_log_setup(enum sp_log_level level, bool json)
{
    log_level = level;
    log_json = json;
}

int sp_log_parse_level(const char *s, enum sp_log_level *out)
{
    for (size_t i = 0; i < SP_ARRAY_LEN(log_names); i++) {
        if (strcmp(s, log_names[i]) == 0) {
            *out = (enum sp_log_level)i;
            return 0;
        }
    }
    return -1;
}

bool sp_log_enabled(const struct sp_logctx *lc, enum sp_log_level level)
{
    (void)lc;
    return level <= log_level;
}

static void log_vemit(const struct sp_logctx *lc, enum sp_log_level level, const char *hint,
                      const char *fmt, va_list ap)
{
    char ts[32];
    struct sp_buf line;
    struct sp_buf msg;
    sp_buf_init(&line);
    sp_buf_init(&msg);
    sp_buf_vprintf(&msg, fmt, ap);
    sp_time_iso_ms(sp_time_now_us(), ts);
    if (log_json) {
        sp_buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\"", ts, log_names[level]);
        if (lc->prefix[0] != '\0') {
            sp_buf_puts(&line, ",\"component\":");
            sp_buf_put_json_str(&line, lc->prefix, strlen(lc->prefix));
        }
        sp_buf_puts(&line, ",\"msg\":");
        sp_buf_put_json_str(&line, msg.data ? msg.data : "", msg.len);
        if (hint != NULL && hint[0] != '\0') {
            sp_buf_puts(&line, ",\"hint\":");
            sp_buf_put_json_str(&line, hint, strlen(hint));
        }
        sp_buf_puts(&line, "}\n");
    } else {
        sp_buf_printf(&line, "%s %s ", ts, log_names[level]);
        if (lc->prefix[0] != '\0') {
            sp_buf_printf(&line, "[%s] ", lc->prefix);
        }
        sp_buf_append(&line, msg.data ? msg.data : "", msg.len);
        sp_buf_putc(&line, '\n');
        if (hint != NULL && hint[0] != '\0') {
            sp_buf_printf(&line, "  hint: %s\n", hint);
        }
    }
    ssize_t off = 0;
    while ((size_t)off < line.len) {
        ssize_t w = write(STDERR_FILENO, line.data + off, line.len - (size_t)off);
        if (w <= 0) {
            break;
        }
        off += w;
    }
    sp_buf_fini(&line);
    sp_buf_fini(&msg);
}

void sp_log_emit(const struct sp_logctx *lc, enum sp_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vemit(lc, level, NULL, fmt, ap);
    va_end(ap);
}

void sp_log_emit_hint(const struct sp_logctx *lc, enum sp_log_level level, const char *hint,
                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vemit(lc, level, hint, fmt, ap);
    va_end(ap);
}
