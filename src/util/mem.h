/*
 * Allocation that never returns NULL: on failure it prints "out of memory"
 * and aborts (STYLE.md, "Memory ownership"). Bounded memory is enforced by the
 * pipeline's own accounting, not by malloc failing.
 */
#ifndef SIPHON_UTIL_MEM_H
#define SIPHON_UTIL_MEM_H

#include <stddef.h>

#define SP_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define SP_NODISCARD         __attribute__((warn_unused_result))
#define SP_ARRAY_LEN(a)      (sizeof(a) / sizeof((a)[0]))

void *sp_xmalloc(size_t n);
void *sp_xcalloc(size_t count, size_t n);
void *sp_xrealloc(void *p, size_t n);
char *sp_xstrdup(const char *s);
char *sp_xstrndup(const char *s, size_t n);
char *sp_xasprintf(const char *fmt, ...) SP_PRINTF(1, 2);
/*
 * Let the allocator keep up to bytes of freed memory instead of returning it
 * to the kernel at once, and serve blocks of up to a few MiB from its heap.
 * Process-wide; call once at start, before other threads exist. No effect
 * outside glibc.
 */
void sp_mem_keep_freed(size_t bytes);

#endif
