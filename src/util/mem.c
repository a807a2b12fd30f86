// SPDX-License-Identifier: Apache-2.0
/*
 * Aborting allocators. Every allocation in siphon goes through these.
 */
#include "util/mem.h"

#include <stdarg.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

static void mem_oom(size_t n)
{
    fprintf(stderr, "siphon: out of memory allocating %zu bytes\n", n);
    abort();
}

void *sp_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        mem_oom(n);
    }
    return p;
}

void *sp_xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (p == NULL) {
        mem_oom(count * n);
    }
    return p;
}

void *sp_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL) {
        mem_oom(n);
    }
    return q;
}

char *sp_xstrdup(const char *s)
{
    return sp_xstrndup(s, strlen(s));
}

char *sp_xstrndup(const char *s, size_t n)
{
    char *p = sp_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *sp_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        abort();
    }
    char *p = sp_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void sp_mem_keep_freed(size_t bytes)
{
#if defined(__GLIBC__)
    /*
     * Records live from decoding until their batch is acknowledged, then go
     * together. With glibc's defaults the heap top is trimmed after nearly
     * every batch and faulted in again for the next: with 20 KiB rows (W6)
     * that page-fault churn cost more system time than reading the socket.
     * Setting the trim threshold fixes the mmap threshold too (no dynamic
     * adjustment), so set that explicitly: records and batch buffers of up to
     * 4 MiB come from the heap.
     */
    int keep = bytes > (size_t)(1 << 30) ? 1 << 30 : (int)bytes;
    mallopt(M_TRIM_THRESHOLD, keep);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
#else
    (void)bytes;
#endif
}
