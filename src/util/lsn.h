/* LSNs: 64-bit WAL positions printed as PostgreSQL does, "16/B374D848". */
#ifndef SIPHON_UTIL_LSN_H
#define SIPHON_UTIL_LSN_H

#include <stdint.h>

#include <stdbool.h>

#define SP_LSN_FMT       "%X/%X"
#define SP_LSN_ARGS(lsn) (unsigned)((uint64_t)(lsn) >> 32), (unsigned)((uint64_t)(lsn)&0xFFFFFFFFu)
#define SP_LSN_BUFSZ     24

/* Parse "X/X"; returns false on anything else. */
bool sp_lsn_parse(const char *s, uint64_t *out);
/* Format into buf (at least SP_LSN_BUFSZ bytes); returns buf. */
char *sp_lsn_str(uint64_t lsn, char *buf);

#endif
