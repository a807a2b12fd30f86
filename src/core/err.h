/*
 * Errors: fallible functions return 0 or a negative SP_E* code and fill a
 * caller-owned struct sp_err (STYLE.md, "Errors").
 */
#ifndef SIPHON_CORE_ERR_H
#define SIPHON_CORE_ERR_H

#include <stdarg.h>

#include <stdbool.h>

#include "util/mem.h"

enum sp_errcode {
    SP_OK = 0,
    SP_EINVAL = -1,    /* bad argument, config or data */
    SP_EPROTO = -2,    /* protocol violation by the peer */
    SP_EIO = -3,       /* local I/O, sys_errno set */
    SP_ECONN = -4,     /* connection failed or lost */
    SP_ETIMEDOUT = -5, /* gave up waiting */
    SP_ESERVER = -6,   /* the server answered with an error */
    SP_EREJECTED = -7, /* the destination refused this item for good */
    SP_ESTOPPED = -8,  /* shutting down */
    SP_EUNSUPP = -9,   /* unsupported setup */
};

struct sp_err {
    int code;
    bool retriable; /* a later attempt may succeed */
    int sys_errno;  /* errno when code == SP_EIO, else 0 */
    char msg[512];  /* primary: lowercase, no trailing period */
    char hint[256]; /* optional: what the user can do */
};

void sp_err_clear(struct sp_err *err);
/* Fill err and return code (negative), so callers can `return sp_err_set(...)`. */
int sp_err_set(struct sp_err *err, int code, const char *fmt, ...) SP_PRINTF(3, 4);
/* Same, with errno's text appended as ": <strerror>" and sys_errno set. */
int sp_err_errno(struct sp_err *err, int sys_errno, const char *fmt, ...) SP_PRINTF(3, 4);
void sp_err_hint(struct sp_err *err, const char *fmt, ...) SP_PRINTF(2, 3);
/* Prepend "<context>: " to the message. */
void sp_err_prefix(struct sp_err *err, const char *fmt, ...) SP_PRINTF(2, 3);
const char *sp_err_name(int code);

#endif
