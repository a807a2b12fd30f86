// SPDX-License-Identifier: Apache-2.0
/* Error values. */
#include "core/err.h"

#include <stdio.h>
#include <string.h>

void sp_err_clear(struct sp_err *err)
{
    err->code = 0;
    err->retriable = false;
    err->sys_errno = 0;
    err->msg[0] = '\0';
    err->hint[0] = '\0';
}

int sp_err_set(struct sp_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    err->code = code;
    err->retriable = (code == SP_ECONN || code == SP_ETIMEDOUT);
    err->sys_errno = 0;
    err->hint[0] = '\0';
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

int sp_err_errno(struct sp_err *err, int sys_errno, const char *fmt, ...)
{
    va_list ap;
    char tmp[sizeof(err->msg)];
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    sp_err_set(err, SP_EIO, "%s: %s", tmp, strerror(sys_errno));
    err->sys_errno = sys_errno;
    return SP_EIO;
}

void sp_err_hint(struct sp_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->hint, sizeof(err->hint), fmt, ap);
    va_end(ap);
}

void sp_err_prefix(struct sp_err *err, const char *fmt, ...)
{
    char pre[256];
    char tmp[sizeof(pre) + sizeof(err->msg) + 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof(pre), fmt, ap);
    va_end(ap);
    snprintf(tmp, sizeof(tmp), "%s: %s", pre, err->msg);
    /* Keep the start (the context) when the whole does not fit. */
    memcpy(err->msg, tmp, sizeof(err->msg) - 1);
    err->msg[sizeof(err->msg) - 1] = '\0';
}

const char *sp_err_name(int code)
{
    switch (code) {
    case SP_OK:
        return "ok";
    case SP_EINVAL:
        return "invalid";
    case SP_EPROTO:
        return "protocol error";
    case SP_EIO:
        return "i/o error";
    case SP_ECONN:
        return "connection error";
    case SP_ETIMEDOUT:
        return "timed out";
    case SP_ESERVER:
        return "server error";
    case SP_EREJECTED:
        return "rejected";
    case SP_ESTOPPED:
        return "stopped";
    case SP_EUNSUPP:
        return "unsupported";
    default:
        return "unknown error";
    }
}
