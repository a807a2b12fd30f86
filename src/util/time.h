/* Clocks and PostgreSQL epoch conversion. */
#ifndef SIPHON_UTIL_TIME_H
#define SIPHON_UTIL_TIME_H

#include <stdint.h>

/* Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch). */
#define SP_PG_EPOCH_OFFSET_US INT64_C(946684800000000)

int64_t sp_time_mono_ms(void);   /* monotonic, for timers */
int64_t sp_time_now_us(void);    /* wall clock, Unix epoch */
int64_t sp_time_now_pg_us(void); /* wall clock, PostgreSQL epoch (for standby status) */
/* Format Unix-epoch microseconds as "2026-11-21T10:00:00.512Z" into buf (>= 32 bytes). */
char *sp_time_iso_ms(int64_t unix_us, char *buf);

#endif
