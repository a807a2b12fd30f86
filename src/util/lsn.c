// SPDX-License-Identifier: Apache-2.0
/* LSN parsing and printing. */
#include "util/lsn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

bool sp_lsn_parse(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long hi = strtoul(s, &end, 16);
    if (end == s || *end != '/' || errno != 0 || hi > 0xFFFFFFFFul) {
        return false;
    }
    const char *lo_s = end + 1;
    unsigned long lo = strtoul(lo_s, &end, 16);
    if (end == lo_s || *end != '\0' || errno != 0 || lo > 0xFFFFFFFFul) {
        return false;
    }
    *out = ((uint64_t)hi << 32) | (uint64_t)lo;
    return true;
}

char *sp_lsn_str(uint64_t lsn, char *buf)
{
    snprintf(buf, SP_LSN_BUFSZ, SP_LSN_FMT, SP_LSN_ARGS(lsn));
    return buf;
}
