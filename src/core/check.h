/*
 * Findings of `siphon check`: each component reports what it verified,
 * warnings (works, but a person should act) and failures (will not work).
 */
#ifndef SIPHON_CORE_CHECK_H
#define SIPHON_CORE_CHECK_H

#include <stdio.h>

#include "util/mem.h"

struct sp_check {
    FILE *out;
    const char *component; /* e.g. `source postgres "orders"` */
    int oks;
    int warnings;
    int failures;
};

void sp_check_init(struct sp_check *chk, FILE *out);
void sp_check_ok(struct sp_check *chk, const char *fmt, ...) SP_PRINTF(2, 3);
/* hint may be NULL */
void sp_check_warn(struct sp_check *chk, const char *hint, const char *fmt, ...) SP_PRINTF(3, 4);
void sp_check_fail(struct sp_check *chk, const char *hint, const char *fmt, ...) SP_PRINTF(3, 4);

#endif
