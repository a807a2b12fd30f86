// SPDX-License-Identifier: Apache-2.0
/*
 * PostgreSQL type conversion: the type cache (OID -> struct sp_type, built-in
 * types statically, the rest through a pg_type lookup) and the text -> JSON
 * conversion of every kind in DESIGN.md's table, including array literals
 * and a validating JSON re-writer for json/jsonb.
 *
 * Parsers here are strict about the shapes PostgreSQL prints (types.h lists
 * the session settings) and never trust their input to be well formed: they
 * run on server data and under the fuzzer. They do no I/O; the cache reaches
 * the server only through its lookup callback.
 */
#include "source/pg/types.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/mem.h"

/* PostgreSQL's MAXDIM: array literals nest at most this deep. */
#define TC_ARRAY_MAXDIM 6
/* Bound on domain/array chains while resolving types and converting values. */
#define TC_MAX_DEPTH 32
/* How much of a bad value an error message shows. */
#define TC_ERR_VALUE_MAX 64

/* ------------------------------------------------------------------------ */
/* Built-in types                                                           */
/* ------------------------------------------------------------------------ */

/* A built-in scalar type and its array type; the array's elem points at the scalar. */
struct tc_builtin {
    struct sp_type scalar;
    struct sp_type array;
};

#define TC_PAIR(i, oid, kind, delim, name, array_oid)                                  \
    {                                                                                  \
        {(oid), (kind), (delim), NULL, name},                                          \
            {(array_oid), SP_TYPE_ARRAY, (delim), &tc_builtins[(i)].scalar, "_" name}, \
    }

/*
 * OIDs from PostgreSQL's pg_type.dat (stable across versions). int2vector
 * and oidvector are listed so that they are never mistaken for arrays: their
 * typcategory is 'A' but they print as space-separated lists.
 */
static const struct tc_builtin tc_builtins[] = {
    TC_PAIR(0, 16, SP_TYPE_BOOL, ',', "bool", 1000),
    TC_PAIR(1, 17, SP_TYPE_BYTEA, ',', "bytea", 1001),
    TC_PAIR(2, 18, SP_TYPE_STRING, ',', "char", 1002),
    TC_PAIR(3, 19, SP_TYPE_STRING, ',', "name", 1003),
    TC_PAIR(4, 20, SP_TYPE_INT, ',', "int8", 1016),
    TC_PAIR(5, 21, SP_TYPE_INT, ',', "int2", 1005),
    TC_PAIR(6, 22, SP_TYPE_OTHER, ',', "int2vector", 1006),
    TC_PAIR(7, 23, SP_TYPE_INT, ',', "int4", 1007),
    TC_PAIR(8, 25, SP_TYPE_STRING, ',', "text", 1009),
    TC_PAIR(9, 26, SP_TYPE_INT, ',', "oid", 1028),
    TC_PAIR(10, 30, SP_TYPE_OTHER, ',', "oidvector", 1013),
    TC_PAIR(11, 114, SP_TYPE_JSON, ',', "json", 199),
    TC_PAIR(12, 142, SP_TYPE_STRING, ',', "xml", 143),
    TC_PAIR(13, 603, SP_TYPE_OTHER, ';', "box", 1020),
    TC_PAIR(14, 650, SP_TYPE_STRING, ',', "cidr", 651),
    TC_PAIR(15, 700, SP_TYPE_FLOAT, ',', "float4", 1021),
    TC_PAIR(16, 701, SP_TYPE_FLOAT, ',', "float8", 1022),
    TC_PAIR(17, 774, SP_TYPE_STRING, ',', "macaddr8", 775),
    TC_PAIR(18, 790, SP_TYPE_STRING, ',', "money", 791),
    TC_PAIR(19, 829, SP_TYPE_STRING, ',', "macaddr", 1040),
    TC_PAIR(20, 869, SP_TYPE_STRING, ',', "inet", 1041),
    TC_PAIR(21, 1042, SP_TYPE_STRING, ',', "bpchar", 1014),
    TC_PAIR(22, 1043, SP_TYPE_STRING, ',', "varchar", 1015),
    TC_PAIR(23, 1082, SP_TYPE_DATE, ',', "date", 1182),
    TC_PAIR(24, 1083, SP_TYPE_TIME, ',', "time", 1183),
    TC_PAIR(25, 1114, SP_TYPE_TIMESTAMP, ',', "timestamp", 1115),
    TC_PAIR(26, 1184, SP_TYPE_TIMESTAMPTZ, ',', "timestamptz", 1185),
    TC_PAIR(27, 1186, SP_TYPE_INTERVAL, ',', "interval", 1187),
    TC_PAIR(28, 1266, SP_TYPE_TIMETZ, ',', "timetz", 1270),
    TC_PAIR(29, 1700, SP_TYPE_NUMERIC, ',', "numeric", 1231),
    TC_PAIR(30, 2950, SP_TYPE_STRING, ',', "uuid", 2951),
    TC_PAIR(31, 3802, SP_TYPE_JSON, ',', "jsonb", 3807),
};

const struct sp_type *sp_type_builtin(uint32_t oid)
{
    for (size_t i = 0; i < SP_ARRAY_LEN(tc_builtins); i++) {
        if (tc_builtins[i].scalar.oid == oid) {
            return &tc_builtins[i].scalar;
        }
        if (tc_builtins[i].array.oid == oid) {
            return &tc_builtins[i].array;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Type cache                                                               */
/* ------------------------------------------------------------------------ */

/* A resolved non-built-in type; type.name points at name. */
struct tc_entry {
    struct sp_type type;
    char *name;
};

struct sp_typcache {
    sp_typ_lookup_fn lookup;
    void *ctx;
    struct tc_entry **slots; /* open addressing by oid, cap a power of two */
    size_t cap;
    size_t count;
};

struct sp_typcache *sp_typcache_new(sp_typ_lookup_fn lookup, void *ctx)
{
    struct sp_typcache *tc = sp_xcalloc(1, sizeof(*tc));
    tc->lookup = lookup;
    tc->ctx = ctx;
    tc->cap = 64;
    tc->slots = sp_xcalloc(tc->cap, sizeof(struct tc_entry *));
    return tc;
}

void sp_typcache_free(struct sp_typcache *tc)
{
    if (tc == NULL) {
        return;
    }
    for (size_t i = 0; i < tc->cap; i++) {
        if (tc->slots[i] != NULL) {
            free(tc->slots[i]->name);
            free(tc->slots[i]);
        }
    }
    free(tc->slots);
    free(tc);
}

size_t sp_typcache_count(const struct sp_typcache *tc)
{
    return tc->count;
}

static size_t tc_slot(const struct sp_typcache *tc, uint32_t oid)
{
    size_t i = (size_t)(oid * UINT32_C(2654435761)) & (tc->cap - 1);
    while (tc->slots[i] != NULL && tc->slots[i]->type.oid != oid) {
        i = (i + 1) & (tc->cap - 1);
    }
    return i;
}

static void tc_insert(struct sp_typcache *tc, struct tc_entry *ent)
{
    if ((tc->count + 1) * 2 > tc->cap) {
        struct tc_entry **old = tc->slots;
        size_t oldcap = tc->cap;
        tc->cap *= 2;
        tc->slots = sp_xcalloc(tc->cap, sizeof(struct tc_entry *));
        for (size_t i = 0; i < oldcap; i++) {
            if (old[i] != NULL) {
                tc->slots[tc_slot(tc, old[i]->type.oid)] = old[i];
            }
        }
        free(old);
    }
    tc->slots[tc_slot(tc, ent->type.oid)] = ent;
    tc->count++;
}

static void tc_typinfo_fini(struct sp_typinfo *ti)
{
    free(ti->nspname);
    free(ti->typname);
    ti->nspname = NULL;
    ti->typname = NULL;
}

static const struct sp_type *tc_get(struct sp_typcache *tc, uint32_t oid, int depth,
                                    struct sp_err *err)
{
    const struct sp_type *bt = sp_type_builtin(oid);
    if (bt != NULL) {
        return bt;
    }
    struct tc_entry *hit = tc->slots[tc_slot(tc, oid)];
    if (hit != NULL) {
        return &hit->type;
    }
    if (depth > TC_MAX_DEPTH) {
        sp_err_set(err, SP_EINVAL, "type %u: domain or array definitions nest too deep", oid);
        return NULL;
    }

    struct tc_entry *ent = sp_xcalloc(1, sizeof(*ent));
    ent->type.oid = oid;
    ent->type.kind = SP_TYPE_OTHER;
    ent->type.delim = ',';
    if (tc->lookup == NULL) {
        ent->name = sp_xasprintf("%u", oid);
        ent->type.name = ent->name;
        tc_insert(tc, ent);
        return &ent->type;
    }

    struct sp_typinfo ti;
    memset(&ti, 0, sizeof(ti));
    int rc = tc->lookup(tc->ctx, oid, &ti, err);
    if (rc < 0) {
        tc_typinfo_fini(&ti);
        free(ent);
        return NULL;
    }
    ent->name = sp_xasprintf("%s.%s", ti.nspname ? ti.nspname : "", ti.typname ? ti.typname : "");
    ent->type.name = ent->name;
    if (ti.typdelim != '\0') {
        ent->type.delim = ti.typdelim;
    }

    bool ok = true;
    if (ti.typtype == 'd' && ti.typbasetype != 0) {
        /* A domain prints exactly as its base type does. */
        const struct sp_type *base = tc_get(tc, ti.typbasetype, depth + 1, err);
        ok = base != NULL;
        if (ok) {
            ent->type.kind = base->kind;
            ent->type.elem = base->elem;
            if (base->kind == SP_TYPE_ARRAY) {
                ent->type.delim = base->delim;
            }
        }
    } else if (ti.typtype == 'e') {
        ent->type.kind = SP_TYPE_STRING;
    } else if (ti.typcategory == 'A' && ti.typelem != 0) {
        /* array_out separates elements with the element type's typdelim. */
        const struct sp_type *elem = tc_get(tc, ti.typelem, depth + 1, err);
        ok = elem != NULL;
        if (ok) {
            ent->type.kind = SP_TYPE_ARRAY;
            ent->type.elem = elem;
            ent->type.delim = elem->delim;
        }
    }
    tc_typinfo_fini(&ti);
    if (!ok) {
        free(ent->name);
        free(ent);
        return NULL;
    }
    tc_insert(tc, ent);
    return &ent->type;
}

const struct sp_type *sp_typcache_get(struct sp_typcache *tc, uint32_t oid, struct sp_err *err)
{
    return tc_get(tc, oid, 0, err);
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static bool tc_isdigit(char c)
{
    return c >= '0' && c <= '9';
}

static const char *tc_type_name(const struct sp_type *t)
{
    if (t == NULL || t->name == NULL) {
        return "unknown";
    }
    return t->name;
}

/* SP_EINVAL naming the type and (the start of) the value. */
static int tc_bad(struct sp_err *err, const struct sp_type *t, const char *text, size_t len)
{
    char shown[TC_ERR_VALUE_MAX + 1];
    size_t n = 0;
    while (n < len) {
        size_t ul = sp_utf8_decode((const unsigned char *)text + n, len - n, NULL);
        if (ul == 0) {
            ul = 1;
        }
        if (n + ul > TC_ERR_VALUE_MAX) {
            break;
        }
        n += ul;
    }
    memcpy(shown, text, n);
    shown[n] = '\0';
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)shown[i] < 0x20 || shown[i] == 0x7F) {
            shown[i] = '?';
        }
    }
    return sp_err_set(err, SP_EINVAL, "invalid input syntax for type %s: \"%s%s\"", tc_type_name(t),
                      shown, n < len ? "..." : "");
}

/* True if [p, e) is exactly s. */
static bool tc_eq(const char *p, const char *e, const char *s)
{
    size_t n = strlen(s);
    return (size_t)(e - p) == n && memcmp(p, s, n) == 0;
}

/*
 * Scan a JSON number at p (RFC 8259 grammar); returns its end, or NULL. With
 * int_only, fraction and exponent are refused.
 */
static const char *tc_scan_number(const char *p, const char *e, bool int_only)
{
    if (p < e && *p == '-') {
        p++;
    }
    if (p >= e || !tc_isdigit(*p)) {
        return NULL;
    }
    if (*p == '0') {
        p++;
    } else {
        while (p < e && tc_isdigit(*p)) {
            p++;
        }
    }
    if (int_only) {
        return p;
    }
    if (p < e && *p == '.') {
        p++;
        if (p >= e || !tc_isdigit(*p)) {
            return NULL;
        }
        while (p < e && tc_isdigit(*p)) {
            p++;
        }
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) {
            p++;
        }
        if (p >= e || !tc_isdigit(*p)) {
            return NULL;
        }
        while (p < e && tc_isdigit(*p)) {
            p++;
        }
    }
    return p;
}

/*
 * Read between min and max decimal digits into *v. Returns false if there
 * are fewer than min; stops after max even if more digits follow.
 */
static bool tc_digits(const char **pp, const char *e, int min, int max, int64_t *v)
{
    const char *p = *pp;
    int64_t acc = 0;
    int n = 0;
    while (p < e && n < max && tc_isdigit(*p)) {
        acc = acc * 10 + (*p - '0');
        p++;
        n++;
    }
    if (n < min) {
        return false;
    }
    *pp = p;
    *v = acc;
    return true;
}

static bool tc_char(const char **pp, const char *e, char c)
{
    if (*pp < e && **pp == c) {
        (*pp)++;
        return true;
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* Dates and times                                                          */
/* ------------------------------------------------------------------------ */

struct tc_ts {
    int64_t year; /* astronomical once BC is applied */
    int mon, day;
    int hour, min, sec;
    const char *frac; /* digits after '.', fraclen of them */
    size_t fraclen;
    int tzsign; /* +1 / -1 */
    int tzh, tzm, tzs;
};

static bool tc_leap(int64_t y)
{
    return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

static int tc_mdays(int64_t y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && tc_leap(y) ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (astronomical year). */
static int64_t tc_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void tc_civil_from_days(int64_t z, struct tc_ts *ts)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    ts->day = (int)(doy - (153 * mp + 2) / 5 + 1);
    ts->mon = (int)(mp < 10 ? mp + 3 : mp - 9);
    ts->year = yoe + era * 400 + (ts->mon <= 2);
}

/* "YYYY-MM-DD", year of 4 or more digits. */
static bool tc_parse_date(const char **pp, const char *e, struct tc_ts *ts)
{
    int64_t y, m, d;
    if (!tc_digits(pp, e, 4, 9, &y) || !tc_char(pp, e, '-') || !tc_digits(pp, e, 2, 2, &m) ||
        !tc_char(pp, e, '-') || !tc_digits(pp, e, 2, 2, &d)) {
        return false;
    }
    ts->year = y;
    ts->mon = (int)m;
    ts->day = (int)d;
    return m >= 1 && m <= 12 && d >= 1;
}

/* "HH:MM:SS[.ffffff]"; hour 24 only as 24:00:00 and only when allow24. */
static bool tc_parse_time(const char **pp, const char *e, struct tc_ts *ts, bool allow24)
{
    int64_t h, mi, s;
    if (!tc_digits(pp, e, 2, 2, &h) || !tc_char(pp, e, ':') || !tc_digits(pp, e, 2, 2, &mi) ||
        !tc_char(pp, e, ':') || !tc_digits(pp, e, 2, 2, &s)) {
        return false;
    }
    ts->frac = NULL;
    ts->fraclen = 0;
    if (tc_char(pp, e, '.')) {
        ts->frac = *pp;
        while (*pp < e && tc_isdigit(**pp)) {
            (*pp)++;
        }
        ts->fraclen = (size_t)(*pp - ts->frac);
        if (ts->fraclen == 0 || ts->fraclen > 9) {
            return false;
        }
    }
    ts->hour = (int)h;
    ts->min = (int)mi;
    ts->sec = (int)s;
    if (mi > 59 || s > 60) {
        return false;
    }
    if (h == 24) {
        return allow24 && mi == 0 && s == 0 && ts->fraclen == 0;
    }
    return h < 24;
}

/* "+HH", "+HH:MM" or "+HH:MM:SS" (or '-'). */
static bool tc_parse_offset(const char **pp, const char *e, struct tc_ts *ts)
{
    int64_t h = 0, m = 0, s = 0;
    if (tc_char(pp, e, '+')) {
        ts->tzsign = 1;
    } else if (tc_char(pp, e, '-')) {
        ts->tzsign = -1;
    } else {
        return false;
    }
    if (!tc_digits(pp, e, 2, 2, &h)) {
        return false;
    }
    if (tc_char(pp, e, ':')) {
        if (!tc_digits(pp, e, 2, 2, &m)) {
            return false;
        }
        if (tc_char(pp, e, ':') && !tc_digits(pp, e, 2, 2, &s)) {
            return false;
        }
    }
    ts->tzh = (int)h;
    ts->tzm = (int)m;
    ts->tzs = (int)s;
    return h <= 15 && m <= 59 && s <= 59;
}

/* Optional " BC": turns the year astronomical (1 BC is year 0). */
static bool tc_parse_era(const char **pp, const char *e, struct tc_ts *ts)
{
    if (tc_eq(*pp, e, " BC")) {
        if (ts->year < 1) {
            return false;
        }
        ts->year = 1 - ts->year;
        *pp = e;
    }
    return *pp == e;
}

/* printf's %02d for the non-negative fields of a date or time. */
static void tc_put_2d(struct sp_buf *out, int v)
{
    if (v >= 0 && v < 100) {
        char d[2] = {(char)('0' + v / 10), (char)('0' + v % 10)};
        sp_buf_append(out, d, 2);
    } else {
        sp_buf_printf(out, "%02d", v); /* never for parsed fields; kept exact */
    }
}

/* Formatted by hand: printf was a third of the instructions of a W1 run. */
static void tc_put_date(struct sp_buf *out, const struct tc_ts *ts)
{
    if (ts->year < 0) {
        sp_buf_putc(out, '-');
        sp_buf_put_u64_pad(out, (uint64_t)-ts->year, 4);
    } else {
        sp_buf_put_u64_pad(out, (uint64_t)ts->year, 4);
    }
    sp_buf_putc(out, '-');
    tc_put_2d(out, ts->mon);
    sp_buf_putc(out, '-');
    tc_put_2d(out, ts->day);
}

static void tc_put_time(struct sp_buf *out, const struct tc_ts *ts)
{
    tc_put_2d(out, ts->hour);
    sp_buf_putc(out, ':');
    tc_put_2d(out, ts->min);
    sp_buf_putc(out, ':');
    tc_put_2d(out, ts->sec);
    if (ts->fraclen > 0) {
        sp_buf_putc(out, '.');
        sp_buf_append(out, ts->frac, ts->fraclen);
    }
}

/* Shift a timestamp with an offset to UTC; the fraction is unaffected. */
static void tc_to_utc(struct tc_ts *ts)
{
    int64_t off = (int64_t)ts->tzsign * ((int64_t)ts->tzh * 3600 + (int64_t)ts->tzm * 60 + ts->tzs);
    if (off == 0) {
        return;
    }
    int64_t days = tc_days_from_civil(ts->year, ts->mon, ts->day);
    int64_t secs = (int64_t)ts->hour * 3600 + (int64_t)ts->min * 60 + ts->sec - off;
    int64_t q = secs / 86400;
    int64_t r = secs % 86400;
    if (r < 0) {
        r += 86400;
        q--;
    }
    tc_civil_from_days(days + q, ts);
    ts->hour = (int)(r / 3600);
    ts->min = (int)(r / 60 % 60);
    ts->sec = (int)(r % 60);
    ts->tzh = ts->tzm = ts->tzs = 0;
}

static bool tc_is_infinity(const char *p, const char *e, struct sp_buf *out)
{
    if (tc_eq(p, e, "infinity") || tc_eq(p, e, "-infinity")) {
        sp_buf_put_json_str(out, p, (size_t)(e - p));
        return true;
    }
    return false;
}

static int tc_conv_datetime(const struct sp_type *t, const char *text, size_t len,
                            struct sp_buf *out, struct sp_err *err)
{
    const char *p = text;
    const char *e = text + len;
    struct tc_ts ts;
    memset(&ts, 0, sizeof(ts));

    switch (t->kind) {
    case SP_TYPE_DATE:
        if (tc_is_infinity(p, e, out)) {
            return 0;
        }
        if (!tc_parse_date(&p, e, &ts) || !tc_parse_era(&p, e, &ts) ||
            ts.day > tc_mdays(ts.year, ts.mon)) {
            return tc_bad(err, t, text, len);
        }
        sp_buf_putc(out, '"');
        tc_put_date(out, &ts);
        sp_buf_putc(out, '"');
        return 0;
    case SP_TYPE_TIMESTAMP:
    case SP_TYPE_TIMESTAMPTZ: {
        bool tz = t->kind == SP_TYPE_TIMESTAMPTZ;
        if (tc_is_infinity(p, e, out)) {
            return 0;
        }
        if (!tc_parse_date(&p, e, &ts) || !tc_char(&p, e, ' ') ||
            !tc_parse_time(&p, e, &ts, false) || (tz && !tc_parse_offset(&p, e, &ts)) ||
            !tc_parse_era(&p, e, &ts) || ts.day > tc_mdays(ts.year, ts.mon)) {
            return tc_bad(err, t, text, len);
        }
        if (tz) {
            tc_to_utc(&ts);
        }
        sp_buf_putc(out, '"');
        tc_put_date(out, &ts);
        sp_buf_putc(out, 'T');
        tc_put_time(out, &ts);
        sp_buf_puts(out, tz ? "Z\"" : "\"");
        return 0;
    }
    case SP_TYPE_TIME:
    case SP_TYPE_TIMETZ: {
        bool tz = t->kind == SP_TYPE_TIMETZ;
        if (!tc_parse_time(&p, e, &ts, true) || (tz && !tc_parse_offset(&p, e, &ts)) || p != e) {
            return tc_bad(err, t, text, len);
        }
        sp_buf_putc(out, '"');
        tc_put_time(out, &ts);
        if (tz) {
            sp_buf_putc(out, ts.tzsign < 0 ? '-' : '+');
            tc_put_2d(out, ts.tzh);
            sp_buf_putc(out, ':');
            tc_put_2d(out, ts.tzm);
            if (ts.tzs != 0) {
                sp_buf_putc(out, ':');
                tc_put_2d(out, ts.tzs);
            }
        }
        sp_buf_putc(out, '"');
        return 0;
    }
    default:
        return tc_bad(err, t, text, len);
    }
}

/* ------------------------------------------------------------------------ */
/* Intervals                                                                */
/* ------------------------------------------------------------------------ */

/* An interval as PostgreSQL's iso_8601 style prints it: each field signed. */
struct tc_iv {
    int64_t year, mon, day, hour, min, sec;
    bool secneg;      /* seconds (and fraction) are negative */
    const char *frac; /* fraction digits of the seconds, without trailing zeros */
    size_t fraclen;
};

/* An optionally signed integer of at most 18 digits (PostgreSQL's fields fit in int64). */
static bool tc_signed(const char **pp, const char *e, int64_t *v, char *sign)
{
    *sign = '\0';
    if (*pp < e && (**pp == '-' || **pp == '+')) {
        *sign = **pp;
        (*pp)++;
    }
    if (!tc_digits(pp, e, 1, 18, v) || (*pp < e && tc_isdigit(**pp))) {
        return false;
    }
    if (*sign == '-') {
        *v = -*v;
    }
    return true;
}

static bool tc_frac(const char **pp, const char *e, struct tc_iv *iv)
{
    iv->frac = NULL;
    iv->fraclen = 0;
    if (!tc_char(pp, e, '.')) {
        return true;
    }
    const char *f = *pp;
    while (*pp < e && tc_isdigit(**pp)) {
        (*pp)++;
    }
    size_t n = (size_t)(*pp - f);
    if (n == 0 || n > 9) {
        return false;
    }
    while (n > 0 && f[n - 1] == '0') {
        n--;
    }
    iv->frac = f;
    iv->fraclen = n;
    return true;
}

/* IntervalStyle iso_8601: "P1Y2M3DT4H5M6.5S", "P-1Y-2M3DT-4H-5M-6.5S", "PT0S". */
static bool tc_parse_iv_iso(const char *p, const char *e, struct tc_iv *iv)
{
    static const char units[] = "YMDHMS";
    int64_t *fields[] = {&iv->year, &iv->mon, &iv->day, &iv->hour, &iv->min, &iv->sec};
    int next = 0; /* index of the next unit allowed */
    bool in_time = false;
    bool any = false;
    if (!tc_char(&p, e, 'P')) {
        return false;
    }
    while (p < e) {
        if (*p == 'T') {
            /* Date units come before 'T', time units after it; 'M' is both. */
            if (in_time) {
                return false;
            }
            in_time = true;
            next = 3;
            p++;
            if (p >= e) {
                return false;
            }
            continue;
        }
        int64_t v;
        char sign;
        if (!tc_signed(&p, e, &v, &sign) || sign == '+') {
            return false;
        }
        bool frac = false;
        if (p < e && *p == '.') {
            if (!tc_frac(&p, e, iv)) {
                return false;
            }
            frac = true;
        }
        if (p >= e) {
            return false;
        }
        int u = -1;
        for (int i = next; i < (in_time ? 6 : 3); i++) {
            if (units[i] == *p) {
                u = i;
                break;
            }
        }
        if (u < 0 || (frac && u != 5)) {
            return false;
        }
        p++;
        *fields[u] = v;
        if (u == 5) {
            iv->secneg = sign == '-';
            iv->sec = v < 0 ? -v : v;
        }
        next = u + 1;
        any = true;
    }
    return any;
}

/* IntervalStyle postgres: "1 year 2 mons 3 days 04:05:06.5", "-1 days +02:00:00", "00:00:00". */
static bool tc_parse_iv_pg(const char *p, const char *e, struct tc_iv *iv)
{
    static const char *const units[][2] = {{"year", "years"}, {"mon", "mons"}, {"day", "days"}};
    int64_t *fields[] = {&iv->year, &iv->mon, &iv->day};
    int next = 0;
    while (p < e) {
        int64_t v;
        char sign;
        if (!tc_signed(&p, e, &v, &sign)) {
            return false;
        }
        if (p < e && *p == ':') {
            /* The time part, last; its one sign covers hours, minutes and seconds. */
            int64_t mi, s;
            p++;
            if (v < 0) {
                v = -v;
            }
            if (!tc_digits(&p, e, 2, 2, &mi) || !tc_char(&p, e, ':') ||
                !tc_digits(&p, e, 2, 2, &s) || !tc_frac(&p, e, iv) || p != e || mi > 59 || s > 59) {
                return false;
            }
            int neg = sign == '-' ? -1 : 1;
            iv->hour = neg * v;
            iv->min = neg * mi;
            iv->sec = s;
            iv->secneg = sign == '-';
            return true;
        }
        if (!tc_char(&p, e, ' ')) {
            return false;
        }
        const char *w = p;
        while (p < e && *p != ' ') {
            p++;
        }
        int u = -1;
        for (int i = next; i < 3; i++) {
            if (tc_eq(w, p, units[i][0]) || tc_eq(w, p, units[i][1])) {
                u = i;
                break;
            }
        }
        if (u < 0) {
            return false;
        }
        *fields[u] = v;
        next = u + 1;
        if (p < e && (!tc_char(&p, e, ' ') || p >= e)) {
            return false;
        }
    }
    return next > 0;
}

static void tc_put_iv(struct sp_buf *out, const struct tc_iv *iv)
{
    static const char units[] = "YMDHM";
    const int64_t fields[] = {iv->year, iv->mon, iv->day, iv->hour, iv->min};
    bool time = iv->hour != 0 || iv->min != 0 || iv->sec != 0 || iv->fraclen > 0;
    sp_buf_putc(out, '"');
    if (!time && iv->year == 0 && iv->mon == 0 && iv->day == 0) {
        sp_buf_puts(out, "PT0S\"");
        return;
    }
    sp_buf_putc(out, 'P');
    for (int i = 0; i < 5; i++) {
        if (i == 3 && time) {
            sp_buf_putc(out, 'T');
        }
        if (fields[i] != 0) {
            sp_buf_printf(out, "%lld%c", (long long)fields[i], units[i]);
        }
    }
    if (iv->sec != 0 || iv->fraclen > 0) {
        int64_t s = iv->sec < 0 ? -iv->sec : iv->sec;
        sp_buf_printf(out, "%s%lld", iv->secneg ? "-" : "", (long long)s);
        if (iv->fraclen > 0) {
            sp_buf_putc(out, '.');
            sp_buf_append(out, iv->frac, iv->fraclen);
        }
        sp_buf_putc(out, 'S');
    }
    sp_buf_putc(out, '"');
}

static int tc_conv_interval(const struct sp_type *t, const char *text, size_t len,
                            struct sp_buf *out, struct sp_err *err)
{
    struct tc_iv iv;
    memset(&iv, 0, sizeof(iv));
    bool ok = len > 0 && text[0] == 'P' ? tc_parse_iv_iso(text, text + len, &iv)
                                        : tc_parse_iv_pg(text, text + len, &iv);
    if (!ok) {
        return tc_bad(err, t, text, len);
    }
    tc_put_iv(out, &iv);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* bytea                                                                    */
/* ------------------------------------------------------------------------ */

void sp_json_put_base64(struct sp_buf *out, const void *data, size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = data;
    sp_buf_reserve(out, (n + 2) / 3 * 4 + 2);
    char *d = out->data + out->len;
    *d++ = '"';
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *d++ = b64[v >> 18];
        *d++ = b64[(v >> 12) & 63];
        *d++ = b64[(v >> 6) & 63];
        *d++ = b64[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        *d++ = b64[v >> 18];
        *d++ = b64[(v >> 12) & 63];
        *d++ = (char)(i + 1 < n ? b64[(v >> 6) & 63] : '=');
        *d++ = '=';
    }
    *d++ = '"';
    out->len = (size_t)(d - out->data);
    out->data[out->len] = '\0';
}

static int tc_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* bytea_output hex ("\x0a0b") or escape ("a\\b\001"); both decode to bytes. */
static int tc_conv_bytea(const struct sp_type *t, const char *text, size_t len, struct sp_buf *out,
                         struct sp_err *err)
{
    unsigned char *bytes = sp_xmalloc(len + 1);
    size_t n = 0;
    bool ok = true;
    if (len >= 2 && text[0] == '\\' && text[1] == 'x') {
        ok = len % 2 == 0;
        for (size_t i = 2; ok && i < len; i += 2) {
            int hi = tc_hexval(text[i]);
            int lo = tc_hexval(text[i + 1]);
            ok = hi >= 0 && lo >= 0;
            if (ok) {
                bytes[n++] = (unsigned char)(hi << 4 | lo);
            }
        }
    } else {
        for (size_t i = 0; ok && i < len; i++) {
            if (text[i] != '\\') {
                bytes[n++] = (unsigned char)text[i];
            } else if (i + 1 < len && text[i + 1] == '\\') {
                bytes[n++] = '\\';
                i++;
            } else if (i + 3 < len && text[i + 1] >= '0' && text[i + 1] <= '3' &&
                       text[i + 2] >= '0' && text[i + 2] <= '7' && text[i + 3] >= '0' &&
                       text[i + 3] <= '7') {
                bytes[n++] = (unsigned char)((text[i + 1] - '0') << 6 | (text[i + 2] - '0') << 3 |
                                             (text[i + 3] - '0'));
                i += 3;
            } else {
                ok = false;
            }
        }
    }
    if (ok) {
        sp_json_put_base64(out, bytes, n);
    }
    free(bytes);
    return ok ? 0 : tc_bad(err, t, text, len);
}

/* ------------------------------------------------------------------------ */
/* json / jsonb                                                             */
/* ------------------------------------------------------------------------ */

static bool tc_json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Copy the escape sequence at *pp (a backslash) as written, if it is valid JSON. */
static bool tc_json_escape(const char **pp, const char *e, struct sp_buf *out)
{
    const char *p = *pp;
    if (e - p < 2) {
        return false;
    }
    if (p[1] == 'u') {
        if (e - p < 6) {
            return false;
        }
        for (int i = 2; i < 6; i++) {
            if (tc_hexval(p[i]) < 0) {
                return false;
            }
        }
        sp_buf_append(out, p, 6);
        *pp = p + 6;
        return true;
    }
    if (p[1] == '\0' || strchr("\"\\/bfnrt", p[1]) == NULL) {
        return false;
    }
    sp_buf_append(out, p, 2);
    *pp = p + 2;
    return true;
}

/*
 * Copy the JSON string at *pp (opening quote included). Escapes are kept as
 * written; raw control characters get escaped and invalid UTF-8 becomes
 * U+FFFD, so the copy is always valid JSON.
 */
static bool tc_json_string(const char **pp, const char *e, struct sp_buf *out)
{
    static const char hex[] = "0123456789abcdef";
    const char *p = *pp + 1;
    sp_buf_putc(out, '"');
    while (p < e) {
        const char *run = p;
        while (p < e && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x80 && *p != '"' &&
               *p != '\\') {
            p++;
        }
        sp_buf_append(out, run, (size_t)(p - run));
        if (p >= e) {
            break;
        }
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            sp_buf_putc(out, '"');
            *pp = p + 1;
            return true;
        }
        if (c == '\\') {
            if (!tc_json_escape(&p, e, out)) {
                return false;
            }
        } else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sp_buf_append(out, esc, sizeof(esc));
            p++;
        } else {
            size_t ul = sp_utf8_decode((const unsigned char *)p, (size_t)(e - p), NULL);
            if (ul == 0) {
                sp_buf_append(out, "\xEF\xBF\xBD", 3);
                p++;
            } else {
                sp_buf_append(out, p, ul);
                p += ul;
            }
        }
    }
    return false;
}

enum tc_json_state {
    TJ_VALUE,          /* a value must follow */
    TJ_VALUE_OR_CLOSE, /* just after '[' */
    TJ_KEY,            /* after ',' in an object */
    TJ_KEY_OR_CLOSE,   /* just after '{' */
    TJ_COLON,
    TJ_AFTER, /* after a value: ',', a closing bracket or the end */
};

/*
 * Validate one JSON document and write it without insignificant whitespace.
 * Iterative (the open brackets live in a buffer), so deep nesting costs heap,
 * not stack. Numbers and string escapes are copied as written.
 */
static bool tc_json_rewrite(const char *p, const char *e, struct sp_buf *out)
{
    struct sp_buf stack;
    enum tc_json_state st = TJ_VALUE;
    bool ok = false;
    sp_buf_init(&stack);
    for (;;) {
        while (p < e && tc_json_ws(*p)) {
            p++;
        }
        if (p >= e) {
            ok = st == TJ_AFTER && stack.len == 0;
            break;
        }
        char c = *p;
        char top = (char)(stack.len > 0 ? stack.data[stack.len - 1] : '\0');
        if (st == TJ_AFTER) {
            if (c == ',' && top != '\0') {
                sp_buf_putc(out, ',');
                st = top == '{' ? TJ_KEY : TJ_VALUE;
            } else if ((c == '}' && top == '{') || (c == ']' && top == '[')) {
                sp_buf_putc(out, c);
                stack.len--;
            } else {
                break;
            }
            p++;
            continue;
        }
        if (st == TJ_COLON) {
            if (c != ':') {
                break;
            }
            sp_buf_putc(out, ':');
            p++;
            st = TJ_VALUE;
            continue;
        }
        if (st == TJ_KEY || st == TJ_KEY_OR_CLOSE) {
            if (c == '}' && st == TJ_KEY_OR_CLOSE) {
                sp_buf_putc(out, '}');
                stack.len--;
                p++;
                st = TJ_AFTER;
            } else if (c == '"' && tc_json_string(&p, e, out)) {
                st = TJ_COLON;
            } else {
                break;
            }
            continue;
        }
        /* TJ_VALUE or TJ_VALUE_OR_CLOSE */
        if (c == ']' && st == TJ_VALUE_OR_CLOSE) {
            sp_buf_putc(out, ']');
            stack.len--;
            p++;
            st = TJ_AFTER;
        } else if (c == '{' || c == '[') {
            sp_buf_putc(out, c);
            sp_buf_putc(&stack, c);
            p++;
            st = c == '{' ? TJ_KEY_OR_CLOSE : TJ_VALUE_OR_CLOSE;
        } else if (c == '"') {
            if (!tc_json_string(&p, e, out)) {
                break;
            }
            st = TJ_AFTER;
        } else if (c == '-' || tc_isdigit(c)) {
            const char *end = tc_scan_number(p, e, false);
            if (end == NULL) {
                break;
            }
            sp_buf_append(out, p, (size_t)(end - p));
            p = end;
            st = TJ_AFTER;
        } else {
            static const char *const lits[] = {"true", "false", "null"};
            size_t i = 0;
            while (i < SP_ARRAY_LEN(lits) && ((size_t)(e - p) < strlen(lits[i]) ||
                                              memcmp(p, lits[i], strlen(lits[i])) != 0)) {
                i++;
            }
            if (i == SP_ARRAY_LEN(lits)) {
                break;
            }
            sp_buf_puts(out, lits[i]);
            p += strlen(lits[i]);
            st = TJ_AFTER;
        }
    }
    sp_buf_fini(&stack);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* Arrays                                                                   */
/* ------------------------------------------------------------------------ */

static int tc_convert(const struct sp_type *t, const char *text, size_t len, struct sp_buf *out,
                      int depth, struct sp_err *err);

struct tc_arr {
    const struct sp_type *t; /* the array type */
    const char *p;
    const char *e;
    char delim;
    struct sp_buf elem; /* scratch: the current element, unescaped */
    struct sp_buf *out;
    int depth;        /* conversion depth of the array value */
    bool elem_failed; /* err was filled by an element's conversion */
};

/* array_in's notion of whitespace. */
static bool tc_arr_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void tc_arr_skip_ws(struct tc_arr *a)
{
    while (a->p < a->e && tc_arr_ws(*a->p)) {
        a->p++;
    }
}

/*
 * Read one element into a->elem. Returns 1 for a value, 0 for an unquoted
 * NULL, -1 on a syntax error.
 */
static int tc_arr_elem(struct tc_arr *a)
{
    sp_buf_reset(&a->elem);
    if (a->p < a->e && *a->p == '"') {
        a->p++;
        while (a->p < a->e && *a->p != '"') {
            if (*a->p == '\\') {
                a->p++;
                if (a->p >= a->e) {
                    return -1;
                }
            }
            sp_buf_putc(&a->elem, *a->p++);
        }
        if (a->p >= a->e) {
            return -1;
        }
        a->p++;
        return 1;
    }
    /* Unquoted: up to the delimiter or '}', trailing unescaped whitespace dropped. */
    size_t keep = 0;
    bool escaped = false;
    while (a->p < a->e && *a->p != a->delim && *a->p != '}') {
        char c = *a->p++;
        if (c == '{' || c == '"') {
            return -1;
        }
        if (c == '\\') {
            if (a->p >= a->e) {
                return -1;
            }
            sp_buf_putc(&a->elem, *a->p++);
            keep = a->elem.len;
            escaped = true;
        } else {
            sp_buf_putc(&a->elem, c);
            if (!tc_arr_ws(c)) {
                keep = a->elem.len;
            }
        }
    }
    if (keep == 0 && !escaped) {
        return -1; /* empty elements are always quoted */
    }
    a->elem.len = keep;
    a->elem.data[keep] = '\0';
    if (!escaped && keep == 4 && strncasecmp(a->elem.data, "NULL", 4) == 0) {
        return 0;
    }
    return 1;
}

/* One brace level at a->p; writes a JSON array. */
static int tc_arr_level(struct tc_arr *a, int dim, struct sp_err *err)
{
    if (dim > TC_ARRAY_MAXDIM || a->p >= a->e || *a->p != '{') {
        return SP_EINVAL;
    }
    a->p++;
    sp_buf_putc(a->out, '[');
    tc_arr_skip_ws(a);
    if (a->p < a->e && *a->p == '}') {
        a->p++;
        sp_buf_putc(a->out, ']');
        return 0;
    }
    bool nested = a->p < a->e && *a->p == '{';
    for (;;) {
        tc_arr_skip_ws(a);
        if (a->p >= a->e) {
            return SP_EINVAL;
        }
        if (nested) {
            int rc = tc_arr_level(a, dim + 1, err);
            if (rc < 0) {
                return rc;
            }
        } else {
            int kind = tc_arr_elem(a);
            if (kind < 0) {
                return SP_EINVAL;
            }
            if (kind == 0) {
                sp_buf_puts(a->out, "null");
            } else {
                int rc =
                    tc_convert(a->t->elem, a->elem.data, a->elem.len, a->out, a->depth + 1, err);
                if (rc < 0) {
                    a->elem_failed = true;
                    sp_err_prefix(err, "element of %s", tc_type_name(a->t));
                    return rc;
                }
            }
        }
        tc_arr_skip_ws(a);
        if (a->p >= a->e) {
            return SP_EINVAL;
        }
        char c = *a->p++;
        if (c == '}') {
            sp_buf_putc(a->out, ']');
            return 0;
        }
        if (c != a->delim) {
            return SP_EINVAL;
        }
        sp_buf_putc(a->out, ',');
    }
}

/* Optional dimension decoration "[lo:hi][lo:hi]=", which JSON has no place for. */
static bool tc_arr_bounds(struct tc_arr *a)
{
    if (a->p >= a->e || *a->p != '[') {
        return true;
    }
    while (a->p < a->e && *a->p == '[') {
        int64_t v;
        char sign;
        a->p++;
        if (!tc_signed(&a->p, a->e, &v, &sign) || !tc_char(&a->p, a->e, ':') ||
            !tc_signed(&a->p, a->e, &v, &sign) || !tc_char(&a->p, a->e, ']')) {
            return false;
        }
    }
    return tc_char(&a->p, a->e, '=');
}

static int tc_conv_array(const struct sp_type *t, const char *text, size_t len, struct sp_buf *out,
                         int depth, struct sp_err *err)
{
    struct tc_arr a = {
        .t = t,
        .p = text,
        .e = text + len,
        .delim = (char)(t->delim != '\0' ? t->delim : ','),
        .out = out,
        .depth = depth,
    };
    sp_buf_init(&a.elem);
    sp_buf_reserve(&a.elem, 32);
    int rc = 0;
    tc_arr_skip_ws(&a);
    if (!tc_arr_bounds(&a)) {
        rc = SP_EINVAL;
    }
    if (rc == 0) {
        tc_arr_skip_ws(&a);
        rc = tc_arr_level(&a, 1, err);
    }
    if (rc == 0) {
        tc_arr_skip_ws(&a);
        if (a.p != a.e) {
            rc = SP_EINVAL;
        }
    }
    sp_buf_fini(&a.elem);
    if (rc < 0 && !a.elem_failed) {
        return tc_bad(err, t, text, len);
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                 */
/* ------------------------------------------------------------------------ */

static bool tc_is_special_float(const char *p, const char *e)
{
    return tc_eq(p, e, "NaN") || tc_eq(p, e, "Infinity") || tc_eq(p, e, "-Infinity");
}

/* numeric_out never uses an exponent: [-]digits[.digits], or a special value. */
static bool tc_valid_numeric(const char *p, const char *e)
{
    if (tc_is_special_float(p, e)) {
        return true;
    }
    tc_char(&p, e, '-');
    const char *d = p;
    while (p < e && tc_isdigit(*p)) {
        p++;
    }
    if (p == d) {
        return false;
    }
    if (tc_char(&p, e, '.')) {
        d = p;
        while (p < e && tc_isdigit(*p)) {
            p++;
        }
        if (p == d) {
            return false;
        }
    }
    return p == e;
}

/* Kinds whose text is validated, then written as is or as a string. */
static int tc_conv_scalar(const struct sp_type *t, const char *text, size_t len, struct sp_buf *out,
                          struct sp_err *err)
{
    const char *e = text + len;
    switch (t->kind) {
    case SP_TYPE_INT:
        if (tc_scan_number(text, e, true) != e) {
            return tc_bad(err, t, text, len);
        }
        sp_buf_append(out, text, len);
        return 0;
    case SP_TYPE_FLOAT:
        if (tc_is_special_float(text, e)) {
            sp_buf_put_json_str(out, text, len);
        } else if (tc_scan_number(text, e, false) == e) {
            sp_buf_append(out, text, len);
        } else {
            return tc_bad(err, t, text, len);
        }
        return 0;
    case SP_TYPE_NUMERIC:
        if (!tc_valid_numeric(text, e)) {
            return tc_bad(err, t, text, len);
        }
        sp_buf_put_json_str(out, text, len);
        return 0;
    case SP_TYPE_BOOL:
        if (tc_eq(text, e, "t") || tc_eq(text, e, "true")) {
            sp_buf_puts(out, "true");
        } else if (tc_eq(text, e, "f") || tc_eq(text, e, "false")) {
            sp_buf_puts(out, "false");
        } else {
            return tc_bad(err, t, text, len);
        }
        return 0;
    case SP_TYPE_JSON:
        /* On failure sp_pgtext_to_json drops what the re-writer wrote. */
        if (!tc_json_rewrite(text, e, out)) {
            return tc_bad(err, t, text, len);
        }
        return 0;
    default:
        return tc_bad(err, t, text, len);
    }
}

static int tc_convert(const struct sp_type *t, const char *text, size_t len, struct sp_buf *out,
                      int depth, struct sp_err *err)
{
    enum sp_type_kind kind = t != NULL ? t->kind : SP_TYPE_OTHER;
    if (depth > TC_MAX_DEPTH) {
        return sp_err_set(err, SP_EINVAL, "value of type %s nests too deep", tc_type_name(t));
    }
    switch (kind) {
    case SP_TYPE_OTHER:
    case SP_TYPE_STRING:
        sp_buf_put_json_str(out, text, len);
        return 0;
    case SP_TYPE_INT:
    case SP_TYPE_FLOAT:
    case SP_TYPE_NUMERIC:
    case SP_TYPE_BOOL:
    case SP_TYPE_JSON:
        return tc_conv_scalar(t, text, len, out, err);
    case SP_TYPE_BYTEA:
        return tc_conv_bytea(t, text, len, out, err);
    case SP_TYPE_DATE:
    case SP_TYPE_TIMESTAMP:
    case SP_TYPE_TIMESTAMPTZ:
    case SP_TYPE_TIME:
    case SP_TYPE_TIMETZ:
        return tc_conv_datetime(t, text, len, out, err);
    case SP_TYPE_INTERVAL:
        return tc_conv_interval(t, text, len, out, err);
    case SP_TYPE_ARRAY:
        if (t->elem == NULL) {
            return sp_err_set(err, SP_EINVAL, "array type %s has no element type", tc_type_name(t));
        }
        return tc_conv_array(t, text, len, out, depth, err);
    }
    return tc_bad(err, t, text, len);
}

int sp_pgtext_to_json(const struct sp_type *t, const char *text, size_t len, struct sp_buf *out,
                      struct sp_err *err)
{
    size_t mark = out->len;
    if (text == NULL) {
        text = "";
        len = 0;
    }
    int rc = tc_convert(t, text, len, out, 0, err);
    if (rc < 0) {
        out->len = mark;
        if (out->data != NULL) {
            out->data[mark] = '\0';
        }
    }
    return rc;
}
