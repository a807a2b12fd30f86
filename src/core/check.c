// SPDX-License-Identifier: Apache-2.0
/* `siphon check` reporting. */
#include "core/check.h"

#include <stdarg.h>

void sp_check_init(struct sp_check *chk, FILE *out)
{
    chk->out = out;
    chk->component = "";
    chk->oks = 0;
    chk->warnings = 0;
    chk->failures = 0;
}

static void check_vline(struct sp_check *chk, const char *tag, const char *hint, const char *fmt,
                        va_list ap)
{
    fprintf(chk->out, "%-5s [%s] ", tag, chk->component);
    vfprintf(chk->out, fmt, ap);
    fputc('\n', chk->out);
    if (hint != NULL && hint[0] != '\0') {
        fprintf(chk->out, "      hint: %s\n", hint);
    }
    fflush(chk->out);
}

void sp_check_ok(struct sp_check *chk, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    check_vline(chk, "ok", NULL, fmt, ap);
    va_end(ap);
    chk->oks++;
}

void sp_check_warn(struct sp_check *chk, const char *hint, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    check_vline(chk, "warn", hint, fmt, ap);
    va_end(ap);
    chk->warnings++;
}

void sp_check_fail(struct sp_check *chk, const char *hint, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    check_vline(chk, "FAIL", hint, fmt, ap);
    va_end(ap);
    chk->failures++;
}
