/* Name-based UUIDs (RFC 9562 version 5, SHA-1). */
#ifndef SIPHON_UTIL_UUID_H
#define SIPHON_UTIL_UUID_H

#include <stddef.h>
#include <stdint.h>

/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" and its NUL. */
#define SP_UUID_STRLEN 37

/*
 * The version 5 UUID of name (n bytes) in namespace ns (16 bytes, network
 * order), written in lower case into out (SP_UUID_STRLEN bytes). The same
 * namespace and name always give the same UUID. Returns out.
 */
char *sp_uuid_v5(const uint8_t ns[16], const void *name, size_t n, char *out);

#endif
