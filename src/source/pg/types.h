/*
 * PostgreSQL types: which conversion a column's type OID gets (the type
 * cache) and the conversion itself, from PostgreSQL's text output to the
 * JSON value DESIGN.md's "Event format json" table prescribes.
 *
 * The text forms parsed here are those of a session with
 *     TimeZone = 'UTC', DateStyle = 'ISO', extra_float_digits = 3,
 *     bytea_output = 'hex', IntervalStyle = 'iso_8601' or 'postgres',
 *     client_encoding = 'UTF8', search_path = '' (reg* types schema-qualified).
 * Both interval styles give the same JSON ('iso_8601' is the cheaper one to
 * pin: PostgreSQL's own output is validated and passed through). A
 * timestamptz printed with another offset than +00 is converted to UTC, and
 * bytea's 'escape' output is accepted too, so a session that misses one of
 * these settings still converts correctly; 'sql_standard' and
 * 'postgres_verbose' intervals and non-ISO DateStyles are rejected.
 *
 * Thread: a type cache belongs to its replication source (pipeline thread);
 * the sp_type values it hands out are immutable and may be read anywhere
 * while the cache lives. sp_pgtext_to_json is reentrant.
 */
#ifndef SIPHON_SOURCE_PG_TYPES_H
#define SIPHON_SOURCE_PG_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/event.h"
#include "util/buf.h"

/*
 * One row of pg_type (joined with pg_namespace), as the lookup callback
 * reports it. nspname and typname are malloc'd; whoever holds the struct
 * frees them.
 */
struct sp_typinfo {
    uint32_t oid;
    char typtype;         /* 'b' base, 'c' composite, 'd' domain, 'e' enum, 'p', 'r', 'm' */
    char typcategory;     /* 'A' array, 'N' numeric, 'S' string, ... */
    uint32_t typelem;     /* element type of an array, else 0 */
    uint32_t typbasetype; /* base type of a domain, else 0 */
    char typdelim;        /* delimiter between elements of an array of this type */
    char *nspname;
    char *typname;
};

/*
 * Resolve a type the cache does not know, typically with
 *     SELECT t.typtype, t.typcategory, t.typelem, t.typbasetype, t.typdelim,
 *            n.nspname, t.typname
 *     FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1
 * Fill *out (zeroed by the caller) and return 0, or return a negative SP_E*
 * code with err filled (SP_EINVAL for an OID that does not exist). Strings
 * left in out->nspname/typname are freed by the cache, on success and on
 * error alike.
 */
typedef int (*sp_typ_lookup_fn)(void *ctx, uint32_t oid, struct sp_typinfo *out,
                                struct sp_err *err);

struct sp_typcache;

/*
 * A new cache. lookup may be NULL: types that are not built in then convert
 * as SP_TYPE_OTHER (their text form as a string).
 */
struct sp_typcache *sp_typcache_new(sp_typ_lookup_fn lookup, void *ctx);

/*
 * The conversion for type oid. Built-in types are answered statically;
 * others through the lookup callback, once, then from the cache: domains
 * convert as their base type, enums as strings, arrays (typcategory 'A' with
 * a typelem) element by element, everything else as SP_TYPE_OTHER. The
 * returned pointer stays valid until sp_typcache_free. Returns NULL with err
 * as the lookup filled it when the lookup fails (nothing is cached then, a
 * later call asks again), or SP_EINVAL for domains/arrays nesting past 32
 * levels (a cycle).
 */
SP_NODISCARD const struct sp_type *sp_typcache_get(struct sp_typcache *tc, uint32_t oid,
                                                   struct sp_err *err);

/* Number of types resolved through the lookup callback and cached. */
size_t sp_typcache_count(const struct sp_typcache *tc);

/* Frees the cache and every sp_type it handed out. NULL is a no-op. */
void sp_typcache_free(struct sp_typcache *tc);

/* The static description of a built-in type, or NULL if oid is not one. */
const struct sp_type *sp_type_builtin(uint32_t oid);

/* Append n bytes at data as a JSON string of their base64 encoding (RFC 4648, padded). */
void sp_json_put_base64(struct sp_buf *out, const void *data, size_t n);

/*
 * Append to out the JSON value for PostgreSQL's text output text (len
 * bytes, need not be NUL-terminated) of type t (NULL: SP_TYPE_OTHER).
 *
 * The output is always valid JSON. Text that is not a valid value of its
 * type (a number that is not a number, a malformed array literal or JSON
 * document, ...) is never passed through as a string: the function returns
 * SP_EINVAL with err naming the type and the value (cut at 64 bytes), and
 * leaves out as it was. SP_TYPE_OTHER and SP_TYPE_STRING accept any bytes;
 * invalid UTF-8 becomes U+FFFD.
 */
SP_NODISCARD int sp_pgtext_to_json(const struct sp_type *t, const char *text, size_t len,
                                   struct sp_buf *out, struct sp_err *err);

#endif
