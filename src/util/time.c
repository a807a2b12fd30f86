// SPDX-License-Identifier: Apache-2.0
/* Clocks. */
#include "util/time.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t sp_time_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sp_time_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t sp_time_now_pg_us(void)
{
    return sp_time_now_us() - SP_PG_EPOCH_OFFSET_US;
}

char *sp_time_iso_ms(int64_t unix_us, char *buf)
{
    time_t secs = (time_t)(unix_us / 1000000);
    int ms = (int)((unix_us % 1000000) / 1000);
    if (unix_us < 0 && unix_us % 1000000 != 0) {
        secs -= 1;
        ms = (int)((1000000 + unix_us % 1000000) / 1000);
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    char tmp[96];
    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    memcpy(buf, tmp, 31);
    buf[31] = '\0';
    return buf;
}
