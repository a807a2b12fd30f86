/* Non-cryptographic hashing for partitioning and tables. */
#ifndef SIPHON_UTIL_HASH_H
#define SIPHON_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

/* 32-bit FNV-1a. Stable across versions: partition assignment depends on it. */
uint32_t sp_hash_fnv1a(const void *p, size_t n);

#endif
