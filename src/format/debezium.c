// SPDX-License-Identifier: Apache-2.0
/*
 * The `debezium` format: the record key and value Debezium's PostgreSQL
 * connector (2.6 and later) produces through Kafka Connect's JsonConverter
 * with schemas.enable=false, under the connector's defaults for the value
 * mapping (time.precision.mode=adaptive, interval.handling.mode=numeric,
 * binary.handling.mode=bytes, hstore.handling.mode=json) except
 * decimal.handling.mode=string. docs/format-debezium.md lists every type
 * mapping and every known difference.
 *
 * Values are produced from PostgreSQL's text output (the session settings
 * source/pg/types.h lists), re-creating the Java conversions Debezium applies:
 * Double.toString for floating point numbers, BigDecimal.toString for numeric,
 * java.time's ISO formatters for zoned timestamps and times, MicroDuration's
 * floating point arithmetic for intervals, HashMap iteration order for hstore,
 * and Jackson's string escaping.
 *
 * This file only encodes; it does not decide which events exist nor where the
 * records go. It keeps no state between events. Flows may override parts:
 * an outbox event's payload is the whole value, a route's key the key.
 */
#include <stddef.h>
#include <stdint.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/event.h"
#include "core/plugin.h"
#include "source/pg/types.h"
#include "util/buf.h"
#include "util/mem.h"
#include "util/time.h"

/* Debezium's default unavailable.value.placeholder. */
#define DBZ_PLACEHOLDER "__debezium_unavailable_value"
/* The stream option's default; a stream that keeps it gets Debezium's. */
#define DBZ_SIPHON_PLACEHOLDER "__siphon_unavailable"

/* How much of a bad value an error message shows. */
#define DBZ_ERR_VALUE_MAX 64
/* PostgreSQL's MAXDIM. */
#define DBZ_ARRAY_MAXDIM 6
/* Bound on arrays of arrays (domains over arrays) while converting. */
#define DBZ_MAX_DEPTH 32

#define DBZ_US_PER_DAY INT64_C(86400000000)

/* Type OIDs from PostgreSQL's pg_type.dat. */
enum {
    DBZ_OID_BOOL = 16,
    DBZ_OID_BYTEA = 17,
    DBZ_OID_CHAR = 18,
    DBZ_OID_NAME = 19,
    DBZ_OID_INT8 = 20,
    DBZ_OID_INT2 = 21,
    DBZ_OID_INT4 = 23,
    DBZ_OID_TEXT = 25,
    DBZ_OID_OID = 26,
    DBZ_OID_JSON = 114,
    DBZ_OID_XML = 142,
    DBZ_OID_POINT = 600,
    DBZ_OID_CIDR = 650,
    DBZ_OID_FLOAT4 = 700,
    DBZ_OID_FLOAT8 = 701,
    DBZ_OID_MACADDR8 = 774,
    DBZ_OID_MONEY = 790,
    DBZ_OID_MACADDR = 829,
    DBZ_OID_INET = 869,
    DBZ_OID_BPCHAR = 1042,
    DBZ_OID_VARCHAR = 1043,
    DBZ_OID_DATE = 1082,
    DBZ_OID_TIME = 1083,
    DBZ_OID_TIMESTAMP = 1114,
    DBZ_OID_TIMESTAMPTZ = 1184,
    DBZ_OID_INTERVAL = 1186,
    DBZ_OID_TIMETZ = 1266,
    DBZ_OID_BIT = 1560,
    DBZ_OID_VARBIT = 1562,
    DBZ_OID_NUMERIC = 1700,
    DBZ_OID_UUID = 2950,
    DBZ_OID_TSVECTOR = 3614,
    DBZ_OID_JSONB = 3802,
    DBZ_OID_INT4RANGE = 3904,
    DBZ_OID_NUMRANGE = 3906,
    DBZ_OID_TSRANGE = 3908,
    DBZ_OID_TSTZRANGE = 3910,
    DBZ_OID_DATERANGE = 3912,
    DBZ_OID_INT8RANGE = 3926,
};

/* How a value is written; see the mapping table in docs/format-debezium.md. */
enum dbz_kind {
    DBZ_TEXT = 0,    /* the text form as a string */
    DBZ_BOOL,        /* true / false */
    DBZ_INT,         /* INT16/INT32/INT64 */
    DBZ_FLOAT4,      /* FLOAT32: Float.toString */
    DBZ_FLOAT8,      /* FLOAT64: Double.toString */
    DBZ_NUMERIC,     /* string: BigDecimal.toString */
    DBZ_MONEY,       /* string: BigDecimal.toPlainString */
    DBZ_BYTEA,       /* base64 */
    DBZ_DATE,        /* io.debezium.time.Date: days */
    DBZ_TIME,        /* io.debezium.time.Time (ms) or MicroTime (us) */
    DBZ_TIMETZ,      /* io.debezium.time.ZonedTime: "HH:MM:SS[.f]Z" */
    DBZ_TIMESTAMP,   /* io.debezium.time.Timestamp (ms) or MicroTimestamp (us) */
    DBZ_TIMESTAMPTZ, /* io.debezium.time.ZonedTimestamp */
    DBZ_INTERVAL,    /* io.debezium.time.MicroDuration */
    DBZ_BITS,        /* bit, varbit: boolean for length 1, else io.debezium.data.Bits */
    DBZ_POINT,       /* io.debezium.data.geometry.Point */
    DBZ_HSTORE,      /* io.debezium.data.Json string */
    DBZ_GEOMETRY,    /* PostGIS geometry/geography: {wkb, srid} */
    DBZ_ARRAY,
};

/*
 * The clock for the envelope's ts_ms/ts_us/ts_ns (Unix epoch microseconds).
 * A test hook: tests pin it to get byte-exact output; NULL restores the wall
 * clock. Not thread-safe; set it before encoding starts.
 */
void sp_format_debezium_set_clock(int64_t (*now_us)(void));

static int64_t (*dbz_clock)(void) = sp_time_now_us;

void sp_format_debezium_set_clock(int64_t (*now_us)(void))
{
    dbz_clock = now_us != NULL ? now_us : sp_time_now_us;
}

/* ------------------------------------------------------------------------ */
/* JSON output as Jackson writes it                                         */
/* ------------------------------------------------------------------------ */

/*
 * A JSON string literal as Jackson escapes it: '"' and '\\' with a backslash,
 * \b \t \n \f \r by letter, other control characters as \u00XX with upper-case
 * hex digits; everything else, DEL and non-ASCII included, as is. Invalid
 * UTF-8 becomes U+FFFD.
 */
static void dbz_put_str(struct sp_buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s;
    sp_buf_reserve(out, n + 2);
    sp_buf_putc(out, '"');
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && p[j] >= 0x20 && p[j] < 0x80 && p[j] != '"' && p[j] != '\\') {
            j++;
        }
        if (j > i) {
            sp_buf_append(out, p + i, j - i);
            i = j;
            continue;
        }
        unsigned char c = p[i];
        if (c >= 0x80) {
            uint32_t cp;
            size_t ul = sp_utf8_decode(p + i, n - i, &cp);
            if (ul == 0) {
                sp_buf_append(out, "\xEF\xBF\xBD", 3);
                i++;
            } else {
                sp_buf_append(out, p + i, ul);
                i += ul;
            }
            continue;
        }
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        size_t esc_len = 2;
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        default:
            esc_len = 6;
            break;
        }
        sp_buf_append(out, esc, esc_len);
        i++;
    }
    sp_buf_putc(out, '"');
}

static void dbz_put_cstr(struct sp_buf *out, const char *s)
{
    if (s == NULL) {
        s = "";
    }
    dbz_put_str(out, s, strlen(s));
}

/*
 * Java's Double.toString / Float.toString (the shortest-digits algorithm of
 * Java 19 and later): the fewest significant digits that read back as the
 * same value, at least two when one would do, written as plain decimals for
 * 1e-3 <= |v| < 1e7 ("0.001", "1234.5") and as d.dddE<n> otherwise
 * ("1.0E7", "1.2E-5"), always with a digit after the point. Jackson writes
 * NaN and the infinities as strings.
 */
static void dbz_put_java_fp(struct sp_buf *out, double v, bool single)
{
    if (isnan(v)) {
        sp_buf_puts(out, "\"NaN\"");
        return;
    }
    if (isinf(v)) {
        sp_buf_puts(out, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        return;
    }
    if (v == 0) {
        sp_buf_puts(out, signbit(v) ? "-0.0" : "0.0");
        return;
    }
    char buf[40];
    int maxp = single ? 9 : 17;
    int p = 1;
    for (; p <= maxp; p++) {
        snprintf(buf, sizeof(buf), "%.*e", p - 1, v);
        double back = single ? (double)strtof(buf, NULL) : strtod(buf, NULL);
        if (back == v) {
            break;
        }
    }
    if (p == 1) {
        snprintf(buf, sizeof(buf), "%.*e", 1, v);
    } else if (p > maxp) {
        snprintf(buf, sizeof(buf), "%.*e", maxp - 1, v);
    }
    /* buf is "[-]d[.ddd]e[+-]xx": collect the digits and the exponent. */
    char digits[24];
    int nd = 0;
    const char *s = buf;
    bool neg = *s == '-';
    if (neg) {
        s++;
    }
    for (; *s != 'e' && *s != '\0'; s++) {
        if (*s >= '0' && *s <= '9' && nd < (int)sizeof(digits) - 1) {
            digits[nd++] = *s;
        }
    }
    int exp10 = *s == 'e' ? (int)strtol(s + 1, NULL, 10) : 0;
    while (nd > 1 && digits[nd - 1] == '0') {
        nd--;
    }
    digits[nd] = '\0';
    if (neg) {
        sp_buf_putc(out, '-');
    }
    if (exp10 >= -3 && exp10 < 7) {
        if (exp10 < 0) {
            sp_buf_puts(out, "0.");
            for (int i = exp10 + 1; i < 0; i++) {
                sp_buf_putc(out, '0');
            }
            sp_buf_append(out, digits, (size_t)nd);
            return;
        }
        for (int i = 0; i <= exp10; i++) {
            char c = '0';
            if (i < nd) {
                c = digits[i];
            }
            sp_buf_putc(out, c);
        }
        sp_buf_putc(out, '.');
        if (nd > exp10 + 1) {
            sp_buf_append(out, digits + exp10 + 1, (size_t)(nd - exp10 - 1));
        } else {
            sp_buf_putc(out, '0');
        }
        return;
    }
    sp_buf_putc(out, digits[0]);
    sp_buf_putc(out, '.');
    if (nd > 1) {
        sp_buf_append(out, digits + 1, (size_t)(nd - 1));
    } else {
        sp_buf_putc(out, '0');
    }
    sp_buf_printf(out, "E%d", exp10);
}

/* Floor division and modulo, as Math.floorDiv / Math.floorMod. */
static int64_t dbz_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t dbz_floor_mod(int64_t a, int64_t b)
{
    return a - dbz_floor_div(a, b) * b;
}

/* Java's long arithmetic wraps around; C's signed arithmetic must not overflow. */
static int64_t dbz_wrap_add(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

static int64_t dbz_wrap_mul(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a * (uint64_t)b);
}

/* TimeUnit's conversions saturate at Long.MIN_VALUE / Long.MAX_VALUE. */
static int64_t dbz_sat_mul(int64_t v, int64_t m)
{
    if (v > INT64_MAX / m) {
        return INT64_MAX;
    }
    if (v < -(INT64_MAX / m)) {
        return INT64_MIN;
    }
    return v * m;
}

/* A Java (long) cast of a double: truncation, NaN to 0, saturating. */
static int64_t dbz_java_d2l(double v)
{
    if (isnan(v)) {
        return 0;
    }
    if (v >= 9223372036854775807.0) {
        return INT64_MAX;
    }
    if (v <= -9223372036854775807.0 - 1.0) {
        return INT64_MIN;
    }
    return (int64_t)v;
}

/*
 * An Instant given in epoch microseconds as Debezium writes it: "ts_ms" is
 * toEpochMilli(), "ts_us" and "ts_ns" are getEpochSecond() * 10^6 or 10^9 plus
 * getNano() in that unit (with Java's wrap-around on overflow).
 */
static void dbz_put_ts_ms(struct sp_buf *out, int64_t us)
{
    sp_buf_puts(out, "\"ts_ms\":");
    sp_buf_put_i64(out, dbz_floor_div(us, 1000));
}

static void dbz_put_ts_us_ns(struct sp_buf *out, int64_t us)
{
    int64_t secs = dbz_floor_div(us, 1000000);
    int64_t nanos = dbz_floor_mod(us, 1000000) * 1000;
    sp_buf_puts(out, ",\"ts_us\":");
    sp_buf_put_i64(out, dbz_wrap_add(dbz_wrap_mul(secs, 1000000), nanos / 1000));
    sp_buf_puts(out, ",\"ts_ns\":");
    sp_buf_put_i64(out, dbz_wrap_add(dbz_wrap_mul(secs, 1000000000), nanos));
}

/* ------------------------------------------------------------------------ */
/* Types                                                                    */
/* ------------------------------------------------------------------------ */

static const char *dbz_type_name(const struct sp_type *t)
{
    return t != NULL && t->name != NULL ? t->name : "unknown";
}

/* The type's name without its schema ("public.hstore" -> "hstore"). */
static const char *dbz_short_name(const struct sp_type *t)
{
    const char *name = dbz_type_name(t);
    const char *dot = strrchr(name, '.');
    return dot != NULL ? dot + 1 : name;
}

static enum dbz_kind dbz_kind_of_oid(uint32_t oid, bool *known)
{
    *known = true;
    switch (oid) {
    case DBZ_OID_BOOL:
        return DBZ_BOOL;
    case DBZ_OID_BYTEA:
        return DBZ_BYTEA;
    case DBZ_OID_INT2:
    case DBZ_OID_INT4:
    case DBZ_OID_INT8:
    case DBZ_OID_OID:
        return DBZ_INT;
    case DBZ_OID_FLOAT4:
        return DBZ_FLOAT4;
    case DBZ_OID_FLOAT8:
        return DBZ_FLOAT8;
    case DBZ_OID_NUMERIC:
        return DBZ_NUMERIC;
    case DBZ_OID_MONEY:
        return DBZ_MONEY;
    case DBZ_OID_DATE:
        return DBZ_DATE;
    case DBZ_OID_TIME:
        return DBZ_TIME;
    case DBZ_OID_TIMETZ:
        return DBZ_TIMETZ;
    case DBZ_OID_TIMESTAMP:
        return DBZ_TIMESTAMP;
    case DBZ_OID_TIMESTAMPTZ:
        return DBZ_TIMESTAMPTZ;
    case DBZ_OID_INTERVAL:
        return DBZ_INTERVAL;
    case DBZ_OID_BIT:
    case DBZ_OID_VARBIT:
        return DBZ_BITS;
    case DBZ_OID_POINT:
        return DBZ_POINT;
    case DBZ_OID_CHAR:
    case DBZ_OID_NAME:
    case DBZ_OID_TEXT:
    case DBZ_OID_JSON:
    case DBZ_OID_XML:
    case DBZ_OID_CIDR:
    case DBZ_OID_MACADDR8:
    case DBZ_OID_MACADDR:
    case DBZ_OID_INET:
    case DBZ_OID_BPCHAR:
    case DBZ_OID_VARCHAR:
    case DBZ_OID_UUID:
    case DBZ_OID_TSVECTOR:
    case DBZ_OID_JSONB:
    case DBZ_OID_INT4RANGE:
    case DBZ_OID_NUMRANGE:
    case DBZ_OID_TSRANGE:
    case DBZ_OID_TSTZRANGE:
    case DBZ_OID_DATERANGE:
    case DBZ_OID_INT8RANGE:
        return DBZ_TEXT;
    default:
        *known = false;
        return DBZ_TEXT;
    }
}

/*
 * Built-in types by OID; domains (which keep their base type's kind but not
 * its OID) and extension types by the type cache's kind and by name.
 */
static enum dbz_kind dbz_kind_of(const struct sp_type *t)
{
    if (t == NULL) {
        return DBZ_TEXT;
    }
    bool known;
    enum dbz_kind k = dbz_kind_of_oid(t->oid, &known);
    if (known) {
        return k;
    }
    switch (t->kind) {
    case SP_TYPE_ARRAY:
        return t->elem != NULL ? DBZ_ARRAY : DBZ_TEXT;
    case SP_TYPE_INT:
        return DBZ_INT;
    case SP_TYPE_FLOAT:
        return DBZ_FLOAT8;
    case SP_TYPE_NUMERIC:
        return DBZ_NUMERIC;
    case SP_TYPE_BOOL:
        return DBZ_BOOL;
    case SP_TYPE_BYTEA:
        return DBZ_BYTEA;
    case SP_TYPE_DATE:
        return DBZ_DATE;
    case SP_TYPE_TIMESTAMP:
        return DBZ_TIMESTAMP;
    case SP_TYPE_TIMESTAMPTZ:
        return DBZ_TIMESTAMPTZ;
    case SP_TYPE_TIME:
        return DBZ_TIME;
    case SP_TYPE_TIMETZ:
        return DBZ_TIMETZ;
    case SP_TYPE_INTERVAL:
        return DBZ_INTERVAL;
    case SP_TYPE_STRING:
    case SP_TYPE_JSON:
        return DBZ_TEXT;
    case SP_TYPE_OTHER:
        break;
    }
    const char *name = dbz_short_name(t);
    if (strcmp(name, "hstore") == 0) {
        return DBZ_HSTORE;
    }
    if (strcmp(name, "geometry") == 0 || strcmp(name, "geography") == 0) {
        return DBZ_GEOMETRY;
    }
    return DBZ_TEXT;
}

/* Fractional second digits of a time/timestamp column: its typmod, 6 when it has none. */
static int dbz_time_precision(int32_t typmod)
{
    return typmod >= 0 ? typmod : 6;
}

/* SP_EINVAL naming the type and (the start of) the value. */
static int dbz_bad(struct sp_err *err, const struct sp_type *t, const char *text, size_t len)
{
    char shown[DBZ_ERR_VALUE_MAX + 1];
    size_t n = len < DBZ_ERR_VALUE_MAX ? len : DBZ_ERR_VALUE_MAX;
    /* Do not cut a UTF-8 sequence. */
    while (n < len && n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80) {
        n--;
    }
    memcpy(shown, text, n);
    shown[n] = '\0';
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)shown[i] < 0x20 || shown[i] == 0x7F) {
            shown[i] = '?';
        }
    }
    return sp_err_set(err, SP_EINVAL, "invalid input syntax for type %s: \"%s%s\"",
                      dbz_type_name(t), shown, n < len ? "..." : "");
}

/* ------------------------------------------------------------------------ */
/* Text parsing                                                             */
/* ------------------------------------------------------------------------ */

struct dbz_rd {
    const char *p;
    const char *e;
};

static bool dbz_isdigit(char c)
{
    return c >= '0' && c <= '9';
}

static bool rd_char(struct dbz_rd *r, char c)
{
    if (r->p < r->e && *r->p == c) {
        r->p++;
        return true;
    }
    return false;
}

/* Between min and max decimal digits into *v. */
static bool rd_digits(struct dbz_rd *r, int min, int max, int64_t *v)
{
    int64_t acc = 0;
    int n = 0;
    while (r->p < r->e && n < max && dbz_isdigit(*r->p)) {
        acc = acc * 10 + (*r->p - '0');
        r->p++;
        n++;
    }
    *v = acc;
    return n >= min;
}

/* The rest of the input is exactly s. */
static bool rd_rest_is(const struct dbz_rd *r, const char *s)
{
    size_t n = strlen(s);
    return (size_t)(r->e - r->p) == n && memcmp(r->p, s, n) == 0;
}

/* ".ffffff" (1 to 6 digits) as microseconds; none is 0. */
static bool rd_micros(struct dbz_rd *r, int64_t *us)
{
    *us = 0;
    if (!rd_char(r, '.')) {
        return true;
    }
    int n = 0;
    while (r->p < r->e && dbz_isdigit(*r->p) && n < 6) {
        *us = *us * 10 + (*r->p - '0');
        r->p++;
        n++;
    }
    if (n == 0 || (r->p < r->e && dbz_isdigit(*r->p))) {
        return false;
    }
    for (; n < 6; n++) {
        *us *= 10;
    }
    return true;
}

static bool dbz_leap(int64_t y)
{
    return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

static int dbz_mdays(int64_t y, int64_t m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && dbz_leap(y) ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (astronomical year). */
static int64_t dbz_days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void dbz_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* A parsed date, time, timestamp or timestamptz (DateStyle ISO, TimeZone UTC). */
struct dbz_dt {
    int64_t days;   /* since 1970-01-01 */
    int64_t tod_us; /* time of day, 0 .. 24h */
    int64_t off_s;  /* UTC offset, east positive */
};

/* "YYYY-MM-DD"; the era comes at the very end of the text. */
static bool dbz_parse_ymd(struct dbz_rd *r, int64_t *y, int64_t *m, int64_t *d)
{
    return rd_digits(r, 4, 9, y) && rd_char(r, '-') && rd_digits(r, 2, 2, m) && rd_char(r, '-') &&
           rd_digits(r, 2, 2, d) && *m >= 1 && *m <= 12 && *d >= 1;
}

/* "HH:MM:SS[.ffffff]"; 24:00:00 only when allow24. */
static bool dbz_parse_hms(struct dbz_rd *r, bool allow24, int64_t *tod_us)
{
    int64_t h, mi, s, us;
    if (!rd_digits(r, 2, 2, &h) || !rd_char(r, ':') || !rd_digits(r, 2, 2, &mi) ||
        !rd_char(r, ':') || !rd_digits(r, 2, 2, &s) || !rd_micros(r, &us)) {
        return false;
    }
    if (mi > 59 || s > 59 || h > 24 || (h == 24 && (!allow24 || mi != 0 || s != 0 || us != 0))) {
        return false;
    }
    *tod_us = ((h * 60 + mi) * 60 + s) * 1000000 + us;
    return true;
}

/* "+HH", "+HH:MM", "+HH:MM:SS" or with '-'. */
static bool dbz_parse_offset(struct dbz_rd *r, int64_t *off_s)
{
    int sign = 1;
    if (rd_char(r, '-')) {
        sign = -1;
    } else if (!rd_char(r, '+')) {
        return false;
    }
    int64_t h, m = 0, s = 0;
    if (!rd_digits(r, 2, 2, &h)) {
        return false;
    }
    if (rd_char(r, ':')) {
        if (!rd_digits(r, 2, 2, &m) || m > 59) {
            return false;
        }
        if (rd_char(r, ':') && (!rd_digits(r, 2, 2, &s) || s > 59)) {
            return false;
        }
    }
    *off_s = sign * ((h * 60 + m) * 60 + s);
    return true;
}

/* A date (with_time false) or timestamp[tz] (with_time true); not the infinities. */
static bool dbz_parse_dt(const char *text, size_t len, bool with_time, bool with_tz,
                         struct dbz_dt *dt)
{
    struct dbz_rd r = {text, text + len};
    int64_t y, m, d;
    dt->tod_us = 0;
    dt->off_s = 0;
    if (!dbz_parse_ymd(&r, &y, &m, &d)) {
        return false;
    }
    if (with_time && (!rd_char(&r, ' ') || !dbz_parse_hms(&r, false, &dt->tod_us) ||
                      (with_tz && !dbz_parse_offset(&r, &dt->off_s)))) {
        return false;
    }
    if (rd_rest_is(&r, " BC")) {
        if (y < 1) {
            return false;
        }
        y = 1 - y;
        r.p = r.e;
    }
    if (r.p != r.e || d > dbz_mdays(y, m)) {
        return false;
    }
    dt->days = dbz_days_from_civil(y, m, d);
    return true;
}

/* Move a date-time with an offset to UTC. */
static void dbz_dt_to_utc(struct dbz_dt *dt)
{
    int64_t tod = dt->tod_us - dt->off_s * 1000000;
    dt->days += dbz_floor_div(tod, DBZ_US_PER_DAY);
    dt->tod_us = dbz_floor_mod(tod, DBZ_US_PER_DAY);
    dt->off_s = 0;
}

/* Epoch microseconds as Conversions.toEpochMicros computes them from an Instant. */
static int64_t dbz_dt_epoch_us(const struct dbz_dt *dt)
{
    int64_t secs = dt->days * 86400 + dt->tod_us / 1000000;
    return dbz_wrap_add(dbz_sat_mul(secs, 1000000), dt->tod_us % 1000000);
}

static int64_t dbz_dt_epoch_ms(const struct dbz_dt *dt)
{
    return dt->days * 86400000 + dt->tod_us / 1000;
}

/* "HH:MM:SS" and the fraction: exactly width digits (1..9), or as few as needed (width <= 0). */
static void dbz_put_hms(struct sp_buf *out, int64_t tod_us, int width)
{
    int64_t secs = tod_us / 1000000;
    int64_t us = tod_us % 1000000;
    sp_buf_printf(out, "%02d:%02d:%02d", (int)(secs / 3600), (int)(secs / 60 % 60),
                  (int)(secs % 60));
    char frac[16];
    snprintf(frac, sizeof(frac), "%06d000", (int)us);
    int n = width;
    if (width <= 0 || width > 9) {
        n = 9;
        while (n > 0 && frac[n - 1] == '0') {
            n--;
        }
    }
    if (n > 0) {
        sp_buf_putc(out, '.');
        sp_buf_append(out, frac, (size_t)n);
    }
}

/* ISO_LOCAL_DATE's year: at least four digits, '+' past 9999, '-' before year 0. */
static void dbz_put_ymd(struct sp_buf *out, int64_t days)
{
    int64_t y;
    int m, d;
    dbz_civil_from_days(days, &y, &m, &d);
    if (y > 9999) {
        sp_buf_printf(out, "+%lld-%02d-%02d", (long long)y, m, d);
    } else if (y < 0) {
        sp_buf_printf(out, "-%04lld-%02d-%02d", (long long)-y, m, d);
    } else {
        sp_buf_printf(out, "%04lld-%02d-%02d", (long long)y, m, d);
    }
}

/* ------------------------------------------------------------------------ */
/* Scalar conversions                                                       */
/* ------------------------------------------------------------------------ */

static bool dbz_is_integer(const char *p, const char *e)
{
    if (p < e && *p == '-') {
        p++;
    }
    if (p >= e) {
        return false;
    }
    for (; p < e; p++) {
        if (!dbz_isdigit(*p)) {
            return false;
        }
    }
    return true;
}

/* An integer as Long.toString prints it: no leading zeros, no "-0". */
static int dbz_conv_int(const struct sp_type *t, const char *text, size_t len, struct sp_buf *out,
                        struct sp_err *err)
{
    if (!dbz_is_integer(text, text + len)) {
        return dbz_bad(err, t, text, len);
    }
    bool neg = text[0] == '-';
    size_t i = neg ? 1 : 0;
    while (i + 1 < len && text[i] == '0') {
        i++;
    }
    if (neg && !(len - i == 1 && text[i] == '0')) {
        sp_buf_putc(out, '-');
    }
    sp_buf_append(out, text + i, len - i);
    return 0;
}

static int dbz_conv_float(const struct sp_type *t, bool single, const char *text, size_t len,
                          struct sp_buf *out, struct sp_err *err)
{
    char buf[64];
    if (len == 0 || len >= sizeof(buf)) {
        return dbz_bad(err, t, text, len);
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    double v;
    if (strcmp(buf, "NaN") == 0) {
        v = NAN;
    } else if (strcmp(buf, "Infinity") == 0) {
        v = INFINITY;
    } else if (strcmp(buf, "-Infinity") == 0) {
        v = -INFINITY;
    } else {
        /* Only what float4out/float8out print: digits, '.', 'e', signs. */
        for (size_t i = 0; i < len; i++) {
            if (strchr("0123456789.e+-", buf[i]) == NULL) {
                return dbz_bad(err, t, text, len);
            }
        }
        char *end;
        v = single ? (double)strtof(buf, &end) : strtod(buf, &end);
        if (end != buf + len) {
            return dbz_bad(err, t, text, len);
        }
    }
    dbz_put_java_fp(out, v, single);
    return 0;
}

/*
 * numeric_out's text ("-12.50", "NaN", "Infinity") as SpecialValueDecimal
 * prints it: BigDecimal.toString for numbers, which switches to E-notation
 * when the exponent of the leading digit is below -6 ("0.0000001" is "1E-7"),
 * and the enum names NAN, POSITIVE_INFINITY, NEGATIVE_INFINITY.
 */
static int dbz_conv_numeric(const struct sp_type *t, const char *text, size_t len,
                            struct sp_buf *out, struct sp_err *err)
{
    const char *p = text;
    const char *e = text + len;
    struct dbz_rd r = {p, e};
    if (rd_rest_is(&r, "NaN")) {
        sp_buf_puts(out, "\"NAN\"");
        return 0;
    }
    if (rd_rest_is(&r, "Infinity")) {
        sp_buf_puts(out, "\"POSITIVE_INFINITY\"");
        return 0;
    }
    if (rd_rest_is(&r, "-Infinity")) {
        sp_buf_puts(out, "\"NEGATIVE_INFINITY\"");
        return 0;
    }
    bool neg = p < e && *p == '-';
    if (neg) {
        p++;
    }
    const char *ip = p;
    while (p < e && dbz_isdigit(*p)) {
        p++;
    }
    size_t ilen = (size_t)(p - ip);
    const char *fp = p;
    size_t flen = 0;
    if (p < e && *p == '.') {
        fp = ++p;
        while (p < e && dbz_isdigit(*p)) {
            p++;
        }
        flen = (size_t)(p - fp);
        if (flen == 0) {
            return dbz_bad(err, t, text, len);
        }
    }
    if (p != e || ilen + flen == 0) {
        return dbz_bad(err, t, text, len);
    }
    /* The unscaled value's digits without leading zeros, and the scale. */
    struct sp_buf coef;
    sp_buf_init(&coef);
    sp_buf_append(&coef, ip, ilen);
    sp_buf_append(&coef, fp, flen);
    size_t skip = 0;
    while (skip + 1 < coef.len && coef.data[skip] == '0') {
        skip++;
    }
    const char *c = coef.data + skip;
    size_t clen = coef.len - skip;
    bool zero = clen == 1 && c[0] == '0';
    int64_t scale = (int64_t)flen;
    int64_t adjusted = -scale + (int64_t)(clen - 1);
    sp_buf_putc(out, '"');
    if (neg && !zero) {
        sp_buf_putc(out, '-');
    }
    if (scale == 0) {
        sp_buf_append(out, c, clen);
    } else if (adjusted >= -6) {
        if ((int64_t)clen > scale) {
            sp_buf_append(out, c, clen - (size_t)scale);
            sp_buf_putc(out, '.');
            sp_buf_append(out, c + clen - (size_t)scale, (size_t)scale);
        } else {
            sp_buf_puts(out, "0.");
            for (int64_t i = (int64_t)clen; i < scale; i++) {
                sp_buf_putc(out, '0');
            }
            sp_buf_append(out, c, clen);
        }
    } else {
        sp_buf_putc(out, c[0]);
        if (clen > 1) {
            sp_buf_putc(out, '.');
            sp_buf_append(out, c + 1, clen - 1);
        }
        sp_buf_printf(out, "E%lld", (long long)adjusted);
    }
    sp_buf_putc(out, '"');
    sp_buf_fini(&coef);
    return 0;
}

/*
 * cash_out's text under lc_monetary C ("$1,234.56", "-$1,234.56") as
 * Debezium's money parser reads it: a leading '-' or parentheses make it
 * negative, one leading currency character and the group separators go, and
 * BigDecimal.toPlainString prints the rest.
 */
static int dbz_conv_money(const struct sp_type *t, const char *text, size_t len, struct sp_buf *out,
                          struct sp_err *err)
{
    const char *p = text;
    const char *e = text + len;
    bool neg = false;
    if (p < e && (*p == '-' || *p == '(')) {
        neg = true;
        bool paren = *p == '(';
        p++;
        if (paren) {
            if (e - p < 1 || e[-1] != ')') {
                return dbz_bad(err, t, text, len);
            }
            e--;
        }
    }
    if (p < e && !dbz_isdigit(*p) && *p != '.') {
        p++;
    }
    struct sp_buf num;
    sp_buf_init(&num);
    bool dot = false;
    bool nonzero = false;
    size_t digits = 0;
    for (; p < e; p++) {
        if (*p == ',') {
            continue;
        }
        if (*p == '.' && !dot) {
            dot = true;
        } else if (dbz_isdigit(*p)) {
            digits++;
            nonzero = nonzero || *p != '0';
        } else {
            sp_buf_fini(&num);
            return dbz_bad(err, t, text, len);
        }
        sp_buf_putc(&num, *p);
    }
    if (digits == 0) {
        sp_buf_fini(&num);
        return dbz_bad(err, t, text, len);
    }
    sp_buf_putc(out, '"');
    if (neg && nonzero) {
        sp_buf_putc(out, '-');
    }
    /* toPlainString drops leading zeros of the integer part but keeps one. */
    size_t skip = 0;
    while (skip + 1 < num.len && num.data[skip] == '0' && num.data[skip + 1] != '.') {
        skip++;
    }
    if (num.data[skip] == '.') {
        sp_buf_putc(out, '0');
    }
    sp_buf_append(out, num.data + skip, num.len - skip);
    if (num.data[num.len - 1] == '.') {
        out->len--;
        out->data[out->len] = '\0';
    }
    sp_buf_putc(out, '"');
    sp_buf_fini(&num);
    return 0;
}

static int dbz_conv_date(const struct sp_type *t, const char *text, size_t len, struct sp_buf *out,
                         struct sp_err *err)
{
    struct dbz_rd r = {text, text + len};
    /*
     * Debezium maps the infinities to the LocalDates -5877611-06-21 and
     * -5877611-06-22, whose epoch days these are.
     */
    if (rd_rest_is(&r, "infinity")) {
        sp_buf_puts(out, "-2147472692");
        return 0;
    }
    if (rd_rest_is(&r, "-infinity")) {
        sp_buf_puts(out, "-2147472691");
        return 0;
    }
    struct dbz_dt dt;
    if (!dbz_parse_dt(text, len, false, false, &dt)) {
        return dbz_bad(err, t, text, len);
    }
    sp_buf_put_i64(out, (int64_t)(int32_t)(uint32_t)dt.days);
    return 0;
}

/* PGStatement.DATE_POSITIVE_INFINITY / DATE_NEGATIVE_INFINITY, used as epoch microseconds. */
#define DBZ_TS_POS_INF_US INT64_C(9223372036825200000)
#define DBZ_TS_NEG_INF_US INT64_C(-9223372036832400000)

/* timestamp: Timestamp (epoch ms) for precision 0-3, MicroTimestamp (epoch us) otherwise. */
static int dbz_conv_timestamp(const struct sp_type *t, int32_t typmod, const char *text, size_t len,
                              struct sp_buf *out, struct sp_err *err)
{
    bool millis = dbz_time_precision(typmod) <= 3;
    struct dbz_rd r = {text, text + len};
    int64_t inf = 0;
    if (rd_rest_is(&r, "infinity")) {
        inf = DBZ_TS_POS_INF_US;
    } else if (rd_rest_is(&r, "-infinity")) {
        inf = DBZ_TS_NEG_INF_US;
    }
    if (inf != 0) {
        sp_buf_put_i64(out, millis ? dbz_floor_div(inf, 1000) : inf);
        return 0;
    }
    struct dbz_dt dt;
    if (!dbz_parse_dt(text, len, true, false, &dt)) {
        return dbz_bad(err, t, text, len);
    }
    sp_buf_put_i64(out, millis ? dbz_dt_epoch_ms(&dt) : dbz_dt_epoch_us(&dt));
    return 0;
}

/*
 * timestamptz: ZonedTimestamp, in UTC with 'Z', the fraction with exactly as
 * many digits as the column's precision (6 when it has none), no fraction at
 * precision 0.
 */
static int dbz_conv_timestamptz(const struct sp_type *t, int32_t typmod, const char *text,
                                size_t len, struct sp_buf *out, struct sp_err *err)
{
    struct dbz_rd r = {text, text + len};
    if (rd_rest_is(&r, "infinity") || rd_rest_is(&r, "-infinity")) {
        dbz_put_str(out, text, len);
        return 0;
    }
    struct dbz_dt dt;
    if (!dbz_parse_dt(text, len, true, true, &dt)) {
        return dbz_bad(err, t, text, len);
    }
    dbz_dt_to_utc(&dt);
    sp_buf_putc(out, '"');
    dbz_put_ymd(out, dt.days);
    sp_buf_putc(out, 'T');
    dbz_put_hms(out, dt.tod_us, dbz_time_precision(typmod));
    sp_buf_puts(out, "Z\"");
    return 0;
}

/* time: Time (ms of the day, an int) for precision 0-3, MicroTime (us) otherwise. */
static int dbz_conv_time(const struct sp_type *t, int32_t typmod, const char *text, size_t len,
                         struct sp_buf *out, struct sp_err *err)
{
    struct dbz_rd r = {text, text + len};
    int64_t tod;
    if (!dbz_parse_hms(&r, true, &tod) || r.p != r.e) {
        return dbz_bad(err, t, text, len);
    }
    sp_buf_put_i64(out, dbz_time_precision(typmod) <= 3 ? tod / 1000 : tod);
    return 0;
}

/* timetz: ZonedTime, moved to UTC: "HH:MM:SS[.f]Z" with as few fraction digits as needed. */
static int dbz_conv_timetz(const struct sp_type *t, const char *text, size_t len,
                           struct sp_buf *out, struct sp_err *err)
{
    struct dbz_rd r = {text, text + len};
    int64_t tod;
    int64_t off;
    if (!dbz_parse_hms(&r, true, &tod) || !dbz_parse_offset(&r, &off) || r.p != r.e) {
        return dbz_bad(err, t, text, len);
    }
    sp_buf_putc(out, '"');
    if (tod == DBZ_US_PER_DAY && off == 0) {
        /* The end-of-day boundary, which LocalTime cannot hold. */
        sp_buf_puts(out, "24:00:00");
    } else {
        dbz_put_hms(out, dbz_floor_mod(tod - off * 1000000, DBZ_US_PER_DAY), 0);
    }
    sp_buf_puts(out, "Z\"");
    return 0;
}

/* An interval's fields as PGInterval holds them. */
struct dbz_iv {
    int64_t years, months, days, hours, minutes;
    int64_t sec_us; /* seconds and fraction, in microseconds, signed */
};

/* "[-]N[.ffffff]" seconds as signed microseconds. */
static bool dbz_iv_seconds(struct dbz_rd *r, int64_t *us)
{
    bool neg = rd_char(r, '-');
    int64_t whole, frac;
    if (!rd_digits(r, 1, 18, &whole) || !rd_micros(r, &frac)) {
        return false;
    }
    *us = (neg ? -1 : 1) * (whole * 1000000 + frac);
    return true;
}

/* The index of unit c in units at or after from, or -1. */
static int dbz_unit_index(const char *units, int from, char c)
{
    for (int i = from; units[i] != '\0'; i++) {
        if (units[i] == c) {
            return i;
        }
    }
    return -1;
}

/* IntervalStyle iso_8601: "P1Y2M3DT4H5M6.5S", "P-1Y-2M3DT-4H-5M-6.5S", "PT0S". */
static bool dbz_parse_iv_iso(struct dbz_rd *r, struct dbz_iv *iv)
{
    int64_t *fields[] = {&iv->years, &iv->months, &iv->days, &iv->hours, &iv->minutes};
    static const char date_units[] = "YMD";
    static const char time_units[] = "HM";
    if (!rd_char(r, 'P') || r->p >= r->e) {
        return false;
    }
    bool in_time = false;
    int next = 0;
    while (r->p < r->e) {
        if (!in_time && rd_char(r, 'T')) {
            in_time = true;
            next = 0;
            if (r->p >= r->e) {
                return false;
            }
            continue;
        }
        const char *start = r->p;
        bool neg = rd_char(r, '-');
        int64_t v;
        if (!rd_digits(r, 1, 18, &v) || r->p >= r->e) {
            return false;
        }
        if (in_time && (*r->p == '.' || *r->p == 'S')) {
            /* Seconds come last. */
            r->p = start;
            return dbz_iv_seconds(r, &iv->sec_us) && rd_char(r, 'S') && r->p == r->e;
        }
        int u = dbz_unit_index(in_time ? time_units : date_units, next, *r->p);
        if (u < 0) {
            return false;
        }
        next = u + 1;
        *fields[in_time ? 3 + u : u] = neg ? -v : v;
        r->p++;
    }
    return true;
}

/* IntervalStyle postgres: "1 year 2 mons -3 days +04:05:06.5", "-00:00:00.5". */
static bool dbz_parse_iv_pg(struct dbz_rd *r, struct dbz_iv *iv)
{
    static const char *const units[] = {"year", "years", "mon", "mons", "day", "days"};
    int64_t *fields[] = {&iv->years, &iv->months, &iv->days};
    while (r->p < r->e) {
        bool neg = rd_char(r, '-');
        if (!neg) {
            rd_char(r, '+');
        }
        int64_t v;
        if (!rd_digits(r, 1, 18, &v)) {
            return false;
        }
        if (rd_char(r, ':')) {
            int64_t mi, sec;
            if (!rd_digits(r, 2, 2, &mi) || !rd_char(r, ':') || !dbz_iv_seconds(r, &sec) ||
                r->p != r->e || sec < 0) {
                return false;
            }
            iv->hours = neg ? -v : v;
            iv->minutes = neg ? -mi : mi;
            iv->sec_us = neg ? -sec : sec;
            return true;
        }
        if (!rd_char(r, ' ')) {
            return false;
        }
        const char *w = r->p;
        while (r->p < r->e && *r->p != ' ') {
            r->p++;
        }
        size_t wl = (size_t)(r->p - w);
        int u = -1;
        for (int i = 0; i < 6 && u < 0; i++) {
            if (strlen(units[i]) == wl && memcmp(units[i], w, wl) == 0) {
                u = i / 2;
            }
        }
        if (u < 0) {
            return false;
        }
        *fields[u] = neg ? -v : v;
        if (r->p < r->e && (!rd_char(r, ' ') || r->p == r->e)) {
            return false;
        }
    }
    return true;
}

/*
 * interval: MicroDuration, computed as Debezium does, in double precision
 * with a month of 365.25 / 12 days, then truncated to a long:
 * (((((years * 12 + months) * 30.4375 + days) * 24 + hours) * 60 + minutes)
 * * 60 + seconds) * 1e6, where seconds is PGInterval's
 * wholeSeconds + microSeconds / 1e6. Every intermediate result goes through
 * a volatile double so that no compiler fuses a multiply and an add (which
 * Java never does) and the result stays bit-for-bit Java's.
 */
static int64_t dbz_duration_micros(const struct dbz_iv *iv)
{
    const double days_per_month = 365.25 / 12.0;
    /* years * 12 + months is Java int arithmetic. */
    int32_t months = (int32_t)((uint32_t)iv->years * 12u + (uint32_t)iv->months);
    int64_t whole = iv->sec_us / 1000000;
    int64_t micros = iv->sec_us % 1000000;
    double seconds = (double)whole + (double)micros / 1e6;
    volatile double v = (double)months * days_per_month;
    v = v + (double)iv->days;
    v = v * 24;
    v = v + (double)iv->hours;
    v = v * 60;
    v = v + (double)iv->minutes;
    v = v * 60;
    v = v + seconds;
    v = v * 1e6;
    v = v + 0.0;
    return dbz_java_d2l(v);
}

static int dbz_conv_interval(const struct sp_type *t, const char *text, size_t len,
                             struct sp_buf *out, struct sp_err *err)
{
    struct dbz_iv iv;
    memset(&iv, 0, sizeof(iv));
    struct dbz_rd r = {text, text + len};
    bool ok = len > 0 && text[0] == 'P' ? dbz_parse_iv_iso(&r, &iv) : dbz_parse_iv_pg(&r, &iv);
    if (!ok || len == 0) {
        return dbz_bad(err, t, text, len);
    }
    sp_buf_put_i64(out, dbz_duration_micros(&iv));
    return 0;
}

/*
 * bit(n) and varbit(n): a boolean when n is 1 (any bit set), otherwise the
 * Bits bytes: bit i counted from the right of the text is bit i % 8 of
 * byte i / 8 (little-endian), as many bytes as the highest set bit needs
 * (BitSet.toByteArray), base64.
 */
static int dbz_conv_bits(const struct sp_type *t, int32_t typmod, const char *text, size_t len,
                         struct sp_buf *out, struct sp_err *err)
{
    for (size_t i = 0; i < len; i++) {
        if (text[i] != '0' && text[i] != '1') {
            return dbz_bad(err, t, text, len);
        }
    }
    if (typmod == 1) {
        if (len == 0) {
            return dbz_bad(err, t, text, len);
        }
        sp_buf_puts(out, memchr(text, '1', len) != NULL ? "true" : "false");
        return 0;
    }
    size_t nbytes = 0;
    unsigned char *bytes = sp_xcalloc(len / 8 + 1, 1);
    for (size_t i = 0; i < len; i++) {
        if (text[len - 1 - i] == '1') {
            bytes[i / 8] |= (unsigned char)(1u << (i % 8));
            nbytes = i / 8 + 1;
        }
    }
    sp_json_put_base64(out, bytes, nbytes);
    free(bytes);
    return 0;
}

static void dbz_put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static void dbz_put_le_double(unsigned char *p, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(bits >> (8 * i));
    }
}

/* One float8out number of a geometric value, up to a delimiter. */
static bool dbz_read_double(struct dbz_rd *r, double *v)
{
    char buf[64];
    size_t n = 0;
    while (r->p < r->e && *r->p != ',' && *r->p != ')' && n + 1 < sizeof(buf)) {
        buf[n++] = *r->p++;
    }
    buf[n] = '\0';
    if (n == 0) {
        return false;
    }
    if (strcmp(buf, "NaN") == 0) {
        *v = NAN;
        return true;
    }
    char *end;
    *v = strtod(buf, &end);
    return end == buf + n;
}

/* point "(x,y)": Point {x, y, wkb (little-endian WKB POINT), srid null}. */
static int dbz_conv_point(const struct sp_type *t, const char *text, size_t len, struct sp_buf *out,
                          struct sp_err *err)
{
    struct dbz_rd r = {text, text + len};
    double x, y;
    if (!rd_char(&r, '(') || !dbz_read_double(&r, &x) || !rd_char(&r, ',') ||
        !dbz_read_double(&r, &y) || !rd_char(&r, ')') || r.p != r.e) {
        return dbz_bad(err, t, text, len);
    }
    unsigned char wkb[21];
    wkb[0] = 1;
    dbz_put_le32(wkb + 1, 1);
    dbz_put_le_double(wkb + 5, x);
    dbz_put_le_double(wkb + 13, y);
    sp_buf_puts(out, "{\"x\":");
    dbz_put_java_fp(out, x, false);
    sp_buf_puts(out, ",\"y\":");
    dbz_put_java_fp(out, y, false);
    sp_buf_puts(out, ",\"wkb\":");
    sp_json_put_base64(out, wkb, sizeof(wkb));
    sp_buf_puts(out, ",\"srid\":null}");
    return 0;
}

static int dbz_hexval(char c)
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

/*
 * PostGIS geometry/geography, whose text form is hex EWKB: {wkb: the EWKB
 * bytes as they are, srid: the SRID the EWKB carries, or 0}.
 */
static int dbz_conv_geometry(const struct sp_type *t, const char *text, size_t len,
                             struct sp_buf *out, struct sp_err *err)
{
    if (len < 18 || len % 2 != 0) {
        return dbz_bad(err, t, text, len);
    }
    size_t n = len / 2;
    unsigned char *b = sp_xmalloc(n);
    for (size_t i = 0; i < n; i++) {
        int hi = dbz_hexval(text[2 * i]);
        int lo = dbz_hexval(text[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(b);
            return dbz_bad(err, t, text, len);
        }
        b[i] = (unsigned char)(hi << 4 | lo);
    }
    bool le = b[0] != 0;
    uint32_t type = 0;
    int32_t srid = 0;
    for (int i = 0; i < 4; i++) {
        type |= (uint32_t)b[le ? 1 + i : 4 - i] << (8 * i);
    }
    if ((type & 0x20000000u) != 0) {
        uint32_t s = 0;
        for (int i = 0; i < 4; i++) {
            s |= (uint32_t)b[le ? 5 + i : 8 - i] << (8 * i);
        }
        srid = (int32_t)s;
    }
    sp_buf_puts(out, "{\"wkb\":");
    sp_json_put_base64(out, b, n);
    sp_buf_printf(out, ",\"srid\":%d}", (int)srid);
    free(b);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* hstore                                                                   */
/* ------------------------------------------------------------------------ */

struct dbz_hs_entry {
    size_t key_off, key_len;
    size_t val_off, val_len;
    bool val_null;
    uint32_t hash; /* HashMap.hash(key) */
    uint32_t bucket;
};

/* String.hashCode over the UTF-16 code units, spread as HashMap.hash does. */
static uint32_t dbz_java_hash(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t h = 0;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t ul = sp_utf8_decode(p + i, n - i, &cp);
        if (ul == 0) {
            cp = 0xFFFD;
            ul = 1;
        }
        i += ul;
        if (cp >= 0x10000) {
            h = 31 * h + (0xD800 + ((cp - 0x10000) >> 10));
            h = 31 * h + (0xDC00 + ((cp - 0x10000) & 0x3FF));
        } else {
            h = 31 * h + cp;
        }
    }
    return h ^ (h >> 16);
}

/* A quoted hstore string into buf (backslash escapes removed). */
static bool dbz_hs_quoted(struct dbz_rd *r, struct sp_buf *buf, size_t *off, size_t *len)
{
    if (!rd_char(r, '"')) {
        return false;
    }
    *off = buf->len;
    while (r->p < r->e && *r->p != '"') {
        if (*r->p == '\\') {
            r->p++;
            if (r->p >= r->e) {
                return false;
            }
        }
        sp_buf_putc(buf, *r->p++);
    }
    *len = buf->len - *off;
    return rd_char(r, '"');
}

/* Count the entries [0, n) per bin of a table of cap bins. */
static void dbz_hashmap_count(const struct dbz_hs_entry *ents, size_t n, uint32_t cap,
                              uint32_t *bins)
{
    memset(bins, 0, cap * sizeof(*bins));
    for (size_t j = 0; j < n; j++) {
        bins[ents[j].hash & (cap - 1)]++;
    }
}

/*
 * The table size java.util.HashMap ends up with after inserting the entries
 * in order: 16 at first, doubled when the size passes 3/4 of it, and doubled
 * instead of turning a bin into a tree while the table is below 64 bins and
 * a bin reaches nine entries. Sets *treeified when a bin would have become a
 * tree, whose iteration order this does not model.
 */
static uint32_t dbz_hashmap_capacity(const struct dbz_hs_entry *ents, size_t n, bool *treeified)
{
    uint32_t cap = 16;
    uint32_t *bins = sp_xcalloc(cap, sizeof(*bins));
    *treeified = false;
    for (size_t i = 0; i < n; i++) {
        uint32_t b = ents[i].hash & (cap - 1);
        uint32_t old = cap;
        if (bins[b] >= 8) {
            if (cap < 64) {
                cap *= 2;
            } else {
                *treeified = true;
            }
        }
        bins[b]++;
        if ((uint64_t)(i + 1) * 4 > (uint64_t)cap * 3) {
            cap *= 2;
        }
        if (cap != old) {
            bins = sp_xrealloc(bins, cap * sizeof(*bins));
            dbz_hashmap_count(ents, i + 1, cap, bins);
        }
    }
    free(bins);
    return cap;
}

static int dbz_hs_cmp(const void *a, const void *b)
{
    const struct dbz_hs_entry *x = a;
    const struct dbz_hs_entry *y = b;
    if (x->bucket != y->bucket) {
        return x->bucket < y->bucket ? -1 : 1;
    }
    /* Within a bin, insertion order (key_off grows with it). */
    return x->key_off < y->key_off ? -1 : (x->key_off > y->key_off ? 1 : 0);
}

/*
 * hstore under hstore.handling.mode=json: a string holding the JSON object
 * Jackson writes from the HashMap pgjdbc parses the text into, so the keys
 * come in HashMap iteration order; NULL values are null.
 */
static int dbz_conv_hstore(const struct sp_type *t, const char *text, size_t len,
                           struct sp_buf *out, struct sp_err *err)
{
    struct dbz_rd r = {text, text + len};
    struct sp_buf strs, json;
    struct dbz_hs_entry *ents = NULL;
    size_t n = 0, cap = 0;
    bool ok = true;
    sp_buf_init(&strs);
    while (ok && r.p < r.e) {
        struct dbz_hs_entry en;
        memset(&en, 0, sizeof(en));
        ok = dbz_hs_quoted(&r, &strs, &en.key_off, &en.key_len) && rd_char(&r, '=') &&
             rd_char(&r, '>');
        if (ok && r.e - r.p >= 4 && memcmp(r.p, "NULL", 4) == 0) {
            r.p += 4;
            en.val_null = true;
        } else if (ok) {
            ok = dbz_hs_quoted(&r, &strs, &en.val_off, &en.val_len);
        }
        if (ok && r.p < r.e) {
            ok = rd_char(&r, ',') && rd_char(&r, ' ') && r.p < r.e;
        }
        if (ok) {
            if (n == cap) {
                cap = cap != 0 ? cap * 2 : 8;
                ents = sp_xrealloc(ents, cap * sizeof(*ents));
            }
            ents[n++] = en;
        }
    }
    if (!ok) {
        free(ents);
        sp_buf_fini(&strs);
        return dbz_bad(err, t, text, len);
    }
    for (size_t i = 0; i < n; i++) {
        ents[i].hash = dbz_java_hash(strs.data + ents[i].key_off, ents[i].key_len);
    }
    bool treeified;
    uint32_t tcap = dbz_hashmap_capacity(ents, n, &treeified);
    for (size_t i = 0; i < n; i++) {
        ents[i].bucket = ents[i].hash & (tcap - 1);
    }
    if (n > 1) {
        qsort(ents, n, sizeof(*ents), dbz_hs_cmp);
    }
    sp_buf_init(&json);
    sp_buf_putc(&json, '{');
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            sp_buf_putc(&json, ',');
        }
        dbz_put_str(&json, strs.data + ents[i].key_off, ents[i].key_len);
        sp_buf_putc(&json, ':');
        if (ents[i].val_null) {
            sp_buf_puts(&json, "null");
        } else {
            dbz_put_str(&json, strs.data + ents[i].val_off, ents[i].val_len);
        }
    }
    sp_buf_putc(&json, '}');
    dbz_put_str(out, json.data, json.len);
    sp_buf_fini(&json);
    sp_buf_fini(&strs);
    free(ents);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Arrays                                                                   */
/* ------------------------------------------------------------------------ */

static int dbz_convert(const struct sp_type *t, int32_t typmod, const char *text, size_t len,
                       struct sp_buf *out, int depth, struct sp_err *err);

struct dbz_arr {
    const struct sp_type *t; /* the array type */
    int32_t typmod;          /* the column's, which applies to the elements */
    struct dbz_rd r;
    char delim;
    struct sp_buf elem; /* the current element, unescaped */
    struct sp_buf *out;
    int depth;
    bool elem_failed; /* err was filled by an element's conversion */
};

static bool dbz_arr_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void dbz_arr_skip_ws(struct dbz_arr *a)
{
    while (a->r.p < a->r.e && dbz_arr_ws(*a->r.p)) {
        a->r.p++;
    }
}

/* One element into a->elem: 1 for a value, 0 for NULL, -1 on a syntax error. */
static int dbz_arr_elem(struct dbz_arr *a)
{
    struct dbz_rd *r = &a->r;
    sp_buf_reset(&a->elem);
    if (rd_char(r, '"')) {
        while (r->p < r->e && *r->p != '"') {
            if (*r->p == '\\' && ++r->p >= r->e) {
                return -1;
            }
            sp_buf_putc(&a->elem, *r->p++);
        }
        return rd_char(r, '"') ? 1 : -1;
    }
    size_t keep = 0;
    bool escaped = false;
    while (r->p < r->e && *r->p != a->delim && *r->p != '}') {
        char c = *r->p++;
        if (c == '{' || c == '"') {
            return -1;
        }
        if (c == '\\') {
            if (r->p >= r->e) {
                return -1;
            }
            c = *r->p++;
            escaped = true;
            sp_buf_putc(&a->elem, c);
            keep = a->elem.len;
        } else {
            sp_buf_putc(&a->elem, c);
            if (!dbz_arr_ws(c)) {
                keep = a->elem.len;
            }
        }
    }
    if (keep == 0 && !escaped) {
        return -1;
    }
    a->elem.len = keep;
    a->elem.data[keep] = '\0';
    if (!escaped && keep == 4 && (a->elem.data[0] | 0x20) == 'n' &&
        (a->elem.data[1] | 0x20) == 'u' && (a->elem.data[2] | 0x20) == 'l' &&
        (a->elem.data[3] | 0x20) == 'l') {
        return 0;
    }
    return 1;
}

/* One brace level: a JSON array of the converted elements. */
static int dbz_arr_level(struct dbz_arr *a, int dim, struct sp_err *err)
{
    if (dim > DBZ_ARRAY_MAXDIM || !rd_char(&a->r, '{')) {
        return SP_EINVAL;
    }
    sp_buf_putc(a->out, '[');
    dbz_arr_skip_ws(a);
    if (rd_char(&a->r, '}')) {
        sp_buf_putc(a->out, ']');
        return 0;
    }
    for (;;) {
        dbz_arr_skip_ws(a);
        int rc = 0;
        if (a->r.p < a->r.e && *a->r.p == '{') {
            rc = dbz_arr_level(a, dim + 1, err);
        } else {
            int kind = dbz_arr_elem(a);
            if (kind < 0) {
                return SP_EINVAL;
            }
            if (kind == 0) {
                sp_buf_puts(a->out, "null");
            } else {
                rc = dbz_convert(a->t->elem, a->typmod, a->elem.data, a->elem.len, a->out,
                                 a->depth + 1, err);
                if (rc < 0) {
                    a->elem_failed = true;
                    sp_err_prefix(err, "element of %s", dbz_type_name(a->t));
                }
            }
        }
        if (rc < 0) {
            return rc;
        }
        dbz_arr_skip_ws(a);
        if (rd_char(&a->r, '}')) {
            sp_buf_putc(a->out, ']');
            return 0;
        }
        if (!rd_char(&a->r, a->delim)) {
            return SP_EINVAL;
        }
        sp_buf_putc(a->out, ',');
    }
}

static int dbz_conv_array(const struct sp_type *t, int32_t typmod, const char *text, size_t len,
                          struct sp_buf *out, int depth, struct sp_err *err)
{
    struct dbz_arr a = {
        .t = t,
        .typmod = typmod,
        .r = {text, text + len},
        .delim = (char)(t->delim != '\0' ? t->delim : ','),
        .out = out,
        .depth = depth,
    };
    sp_buf_init(&a.elem);
    sp_buf_reserve(&a.elem, 32);
    int rc = 0;
    dbz_arr_skip_ws(&a);
    /* Dimension decoration "[1:3]=", which JSON has no place for. */
    while (rc == 0 && rd_char(&a.r, '[')) {
        while (a.r.p < a.r.e && *a.r.p != ']') {
            a.r.p++;
        }
        if (!rd_char(&a.r, ']') || (a.r.p < a.r.e && *a.r.p != '[' && !rd_char(&a.r, '='))) {
            rc = SP_EINVAL;
        }
    }
    if (rc == 0) {
        dbz_arr_skip_ws(&a);
        rc = dbz_arr_level(&a, 1, err);
    }
    if (rc == 0) {
        dbz_arr_skip_ws(&a);
        if (a.r.p != a.r.e) {
            rc = SP_EINVAL;
        }
    }
    sp_buf_fini(&a.elem);
    if (rc < 0 && !a.elem_failed) {
        return dbz_bad(err, t, text, len);
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                 */
/* ------------------------------------------------------------------------ */

static int dbz_convert(const struct sp_type *t, int32_t typmod, const char *text, size_t len,
                       struct sp_buf *out, int depth, struct sp_err *err)
{
    if (depth > DBZ_MAX_DEPTH) {
        return sp_err_set(err, SP_EINVAL, "value of type %s nests too deep", dbz_type_name(t));
    }
    switch (dbz_kind_of(t)) {
    case DBZ_TEXT:
        dbz_put_str(out, text, len);
        return 0;
    case DBZ_BOOL:
        if (len != 1 || (text[0] != 't' && text[0] != 'f')) {
            return dbz_bad(err, t, text, len);
        }
        sp_buf_puts(out, text[0] == 't' ? "true" : "false");
        return 0;
    case DBZ_INT:
        return dbz_conv_int(t, text, len, out, err);
    case DBZ_FLOAT4:
    case DBZ_FLOAT8:
        return dbz_conv_float(t, dbz_kind_of(t) == DBZ_FLOAT4, text, len, out, err);
    case DBZ_NUMERIC:
        return dbz_conv_numeric(t, text, len, out, err);
    case DBZ_MONEY:
        return dbz_conv_money(t, text, len, out, err);
    case DBZ_BYTEA:
        return sp_pgtext_to_json(sp_type_builtin(DBZ_OID_BYTEA), text, len, out, err);
    case DBZ_DATE:
        return dbz_conv_date(t, text, len, out, err);
    case DBZ_TIME:
        return dbz_conv_time(t, typmod, text, len, out, err);
    case DBZ_TIMETZ:
        return dbz_conv_timetz(t, text, len, out, err);
    case DBZ_TIMESTAMP:
        return dbz_conv_timestamp(t, typmod, text, len, out, err);
    case DBZ_TIMESTAMPTZ:
        return dbz_conv_timestamptz(t, typmod, text, len, out, err);
    case DBZ_INTERVAL:
        return dbz_conv_interval(t, text, len, out, err);
    case DBZ_BITS:
        return dbz_conv_bits(t, typmod, text, len, out, err);
    case DBZ_POINT:
        return dbz_conv_point(t, text, len, out, err);
    case DBZ_HSTORE:
        return dbz_conv_hstore(t, text, len, out, err);
    case DBZ_GEOMETRY:
        return dbz_conv_geometry(t, text, len, out, err);
    case DBZ_ARRAY:
        return dbz_conv_array(t, typmod, text, len, out, depth, err);
    }
    return dbz_bad(err, t, text, len);
}

/* The value of PostgreSQL's text output text of type t; out is left as it was on error. */
static int dbz_put_text_value(const struct sp_type *t, int32_t typmod, const char *text, size_t len,
                              struct sp_buf *out, struct sp_err *err)
{
    size_t mark = out->len;
    int rc = dbz_convert(t, typmod, text != NULL ? text : "", text != NULL ? len : 0, out, 0, err);
    if (rc < 0) {
        out->len = mark;
        if (out->data != NULL) {
            out->data[mark] = '\0';
        }
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Unchanged TOASTed values                                                 */
/* ------------------------------------------------------------------------ */

/* The stream's placeholder when it set one, else Debezium's default. */
static const char *dbz_placeholder(const struct sp_format *fmt)
{
    const char *p = fmt->toast_placeholder;
    if (p == NULL || strcmp(p, DBZ_SIPHON_PLACEHOLDER) == 0) {
        return DBZ_PLACEHOLDER;
    }
    return p;
}

/*
 * An array column's placeholder, in the element type: the placeholder as the
 * one element for string-valued elements, its bytes for bytea elements, and
 * one element per byte of the placeholder for numeric and boolean elements.
 */
static void dbz_put_array_placeholder(const struct sp_type *elem, const char *ph,
                                      struct sp_buf *out)
{
    enum dbz_kind k = dbz_kind_of(elem);
    size_t n = strlen(ph);
    if (k == DBZ_BYTEA) {
        sp_buf_putc(out, '[');
        sp_json_put_base64(out, ph, n);
        sp_buf_putc(out, ']');
        return;
    }
    bool per_byte = k == DBZ_INT || k == DBZ_FLOAT4 || k == DBZ_FLOAT8 || k == DBZ_BOOL ||
                    k == DBZ_DATE || k == DBZ_TIME || k == DBZ_TIMESTAMP || k == DBZ_INTERVAL;
    if (!per_byte) {
        sp_buf_putc(out, '[');
        dbz_put_cstr(out, ph);
        sp_buf_putc(out, ']');
        return;
    }
    sp_buf_putc(out, '[');
    for (size_t i = 0; i < n; i++) {
        /* Java's byte is signed. */
        int b = (unsigned char)ph[i];
        if (b > 127) {
            b -= 256;
        }
        if (i > 0) {
            sp_buf_putc(out, ',');
        }
        if (k == DBZ_BOOL) {
            sp_buf_puts(out, b != 0 ? "true" : "false");
        } else if (k == DBZ_FLOAT4 || k == DBZ_FLOAT8) {
            sp_buf_printf(out, "%d.0", b);
        } else {
            sp_buf_printf(out, "%d", b);
        }
    }
    sp_buf_putc(out, ']');
}

static void dbz_put_placeholder(const struct sp_type *t, const char *ph, struct sp_buf *out)
{
    switch (dbz_kind_of(t)) {
    case DBZ_BYTEA:
        sp_json_put_base64(out, ph, strlen(ph));
        return;
    case DBZ_HSTORE: {
        struct sp_buf json;
        sp_buf_init(&json);
        sp_buf_putc(&json, '{');
        dbz_put_cstr(&json, ph);
        sp_buf_putc(&json, ':');
        dbz_put_cstr(&json, ph);
        sp_buf_putc(&json, '}');
        dbz_put_str(out, json.data, json.len);
        sp_buf_fini(&json);
        return;
    }
    case DBZ_ARRAY:
        dbz_put_array_placeholder(t->elem, ph, out);
        return;
    default:
        dbz_put_cstr(out, ph);
        return;
    }
}

/* ------------------------------------------------------------------------ */
/* Envelope                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * The value of column i. An unchanged TOASTed value takes the old tuple's
 * value when the server sent a full old row (REPLICA IDENTITY FULL), as
 * Debezium does, else the placeholder.
 */
static int dbz_put_column(const struct sp_format *fmt, const struct sp_event *ev,
                          const struct sp_tuple *tup, int i, struct sp_buf *out, struct sp_err *err)
{
    const struct sp_column *col = &ev->rel->cols[i];
    const struct sp_datum *d = &tup->cols[i];
    if (d->kind == SP_DATUM_UNCHANGED && tup == ev->after && ev->before != NULL &&
        !ev->before_key_only && i < ev->before->ncols &&
        ev->before->cols[i].kind != SP_DATUM_UNCHANGED) {
        d = &ev->before->cols[i];
    }
    switch (d->kind) {
    case SP_DATUM_NULL:
        sp_buf_puts(out, "null");
        return 0;
    case SP_DATUM_UNCHANGED:
        dbz_put_placeholder(col->type, dbz_placeholder(fmt), out);
        return 0;
    case SP_DATUM_BINARY:
        sp_json_put_base64(out, d->data, d->data != NULL ? d->len : 0);
        return 0;
    case SP_DATUM_TEXT: {
        int rc = dbz_put_text_value(col->type, col->typmod, d->data, d->len, out, err);
        if (rc < 0) {
            sp_err_prefix(err, "column \"%s\" of table \"%s.%s\"", col->name, ev->rel->schema,
                          ev->rel->table);
        }
        return rc;
    }
    default:
        return sp_err_set(err, SP_EINVAL, "column \"%s\" of table \"%s.%s\": unknown datum kind %d",
                          col->name, ev->rel->schema, ev->rel->table, d->kind);
    }
}

/*
 * {"col": value, ...}: every column of the relation, or only the key columns
 * when keys_only. Columns an old key tuple ('K') does not carry are null.
 */
static int dbz_put_row(const struct sp_format *fmt, const struct sp_event *ev,
                       const struct sp_tuple *tup, bool keys_only, struct sp_buf *out,
                       struct sp_err *err)
{
    const struct sp_relation *rel = ev->rel;
    if (tup->ncols != rel->ncols) {
        return sp_err_set(err, SP_EINVAL, "table \"%s.%s\": row has %d columns, relation has %d",
                          rel->schema, rel->table, tup->ncols, rel->ncols);
    }
    bool first = true;
    sp_buf_putc(out, '{');
    for (int i = 0; i < rel->ncols; i++) {
        if (keys_only && !rel->cols[i].key) {
            continue;
        }
        if (!first) {
            sp_buf_putc(out, ',');
        }
        first = false;
        dbz_put_cstr(out, rel->cols[i].name);
        sp_buf_putc(out, ':');
        int rc = dbz_put_column(fmt, ev, tup, i, out, err);
        if (rc < 0) {
            return rc;
        }
    }
    sp_buf_putc(out, '}');
    return 0;
}

static int dbz_put_row_or_null(const struct sp_format *fmt, const struct sp_event *ev,
                               const struct sp_tuple *tup, struct sp_buf *out, struct sp_err *err)
{
    if (tup == NULL || ev->rel == NULL) {
        sp_buf_puts(out, "null");
        return 0;
    }
    return dbz_put_row(fmt, ev, tup, false, out, err);
}

/* An LSN as a JSON number, or null when unknown (0). */
static void dbz_put_lsn_or_null(struct sp_buf *out, uint64_t lsn)
{
    if (lsn == 0) {
        sp_buf_puts(out, "null");
    } else {
        sp_buf_put_u64(out, lsn);
    }
}

/*
 * Debezium's sequence, the string of the JSON array
 * ["<last committed LSN>","<LSN>"]. siphon formats each event on its own and
 * does not know the previous transaction's commit, so the first element is
 * the commit LSN of the event's own transaction: like Debezium's, constant
 * within a transaction and increasing in commit order (docs/format-debezium.md).
 */
static void dbz_put_sequence(struct sp_buf *out, const struct sp_event *ev)
{
    sp_buf_puts(out, "\"[");
    if (ev->commit_lsn == 0) {
        sp_buf_puts(out, "null");
    } else {
        sp_buf_printf(out, "\\\"%llu\\\"", (unsigned long long)ev->commit_lsn);
    }
    sp_buf_putc(out, ',');
    if (ev->lsn == 0) {
        sp_buf_puts(out, "null");
    } else {
        sp_buf_printf(out, "\\\"%llu\\\"", (unsigned long long)ev->lsn);
    }
    sp_buf_puts(out, "]\"");
}

/* The io.debezium.connector.postgresql.Source struct, fields in schema order. */
static void dbz_put_source(const struct sp_event *ev, struct sp_buf *out)
{
    sp_buf_puts(out, "{\"version\":\"" SP_VERSION "\",\"connector\":\"postgresql\",\"name\":");
    dbz_put_cstr(out, ev->source_name);
    sp_buf_putc(out, ',');
    dbz_put_ts_ms(out, ev->commit_time_us);
    sp_buf_puts(out, ",\"snapshot\":");
    dbz_put_cstr(out, ev->snapshot != NULL ? ev->snapshot : "false");
    sp_buf_puts(out, ",\"db\":");
    dbz_put_cstr(out, ev->db);
    sp_buf_puts(out, ",\"sequence\":");
    dbz_put_sequence(out, ev);
    /* ts_us and ts_ns come after sequence in the schema, ts_ms before snapshot. */
    dbz_put_ts_us_ns(out, ev->commit_time_us);
    sp_buf_puts(out, ",\"schema\":");
    dbz_put_cstr(out, ev->rel != NULL ? ev->rel->schema : "");
    sp_buf_puts(out, ",\"table\":");
    dbz_put_cstr(out, ev->rel != NULL ? ev->rel->table : "");
    sp_buf_puts(out, ",\"txId\":");
    if (ev->xid == 0) {
        sp_buf_puts(out, "null");
    } else {
        sp_buf_put_u64(out, ev->xid);
    }
    sp_buf_puts(out, ",\"lsn\":");
    dbz_put_lsn_or_null(out, ev->lsn);
    sp_buf_puts(out, ",\"xmin\":null}");
}

/*
 * A logical decoding message: Debezium's MessageValue, {op, ts_ms, source,
 * message: {prefix, content}}, content in base64 (binary.handling.mode=bytes).
 */
static void dbz_put_message_value(const struct sp_event *ev, struct sp_buf *out)
{
    sp_buf_puts(out, "{\"op\":\"m\",");
    dbz_put_ts_ms(out, dbz_clock());
    sp_buf_puts(out, ",\"source\":");
    dbz_put_source(ev, out);
    sp_buf_puts(out, ",\"message\":{\"prefix\":");
    dbz_put_cstr(out, ev->msg_prefix);
    sp_buf_puts(out, ",\"content\":");
    sp_json_put_base64(out, ev->msg_content != NULL ? ev->msg_content : "",
                       ev->msg_content != NULL ? ev->msg_len : 0);
    sp_buf_puts(out, "}}");
}

/* The Envelope: before, after, source, op, ts_ms, ts_us, ts_ns, transaction. */
static int dbz_encode_value(struct sp_format *fmt, const struct sp_event *ev, struct sp_buf *value,
                            struct sp_err *err)
{
    int rc = 0;
    if (ev->op == SP_OP_MESSAGE) {
        dbz_put_message_value(ev, value);
        return 0;
    }
    sp_buf_puts(value, "{\"before\":");
    switch (ev->op) {
    case SP_OP_INSERT:
    case SP_OP_READ:
        sp_buf_puts(value, "null,\"after\":");
        rc = dbz_put_row_or_null(fmt, ev, ev->after, value, err);
        break;
    case SP_OP_UPDATE:
    case SP_OP_DELETE:
        rc = dbz_put_row_or_null(fmt, ev, ev->before, value, err);
        if (rc == 0) {
            sp_buf_puts(value, ",\"after\":");
            rc =
                dbz_put_row_or_null(fmt, ev, ev->op == SP_OP_UPDATE ? ev->after : NULL, value, err);
        }
        break;
    case SP_OP_TRUNCATE:
        sp_buf_puts(value, "null,\"after\":null");
        break;
    default:
        return sp_err_set(err, SP_EINVAL, "debezium format: cannot encode a '%c' event",
                          sp_op_char(ev->op));
    }
    if (rc < 0) {
        return rc;
    }
    sp_buf_puts(value, ",\"source\":");
    dbz_put_source(ev, value);
    sp_buf_printf(value, ",\"op\":\"%c\",", sp_op_char(ev->op));
    int64_t now = dbz_clock();
    dbz_put_ts_ms(value, now);
    dbz_put_ts_us_ns(value, now);
    if (ev->tx_id != NULL) {
        /* provide.transaction.metadata (flow "transaction") */
        sp_buf_puts(value, ",\"transaction\":{\"id\":");
        dbz_put_cstr(value, ev->tx_id);
        sp_buf_puts(value, ",\"total_order\":");
        sp_buf_put_u64(value, ev->tx_total_order);
        sp_buf_puts(value, ",\"data_collection_order\":");
        sp_buf_put_u64(value, ev->tx_collection_order);
        sp_buf_puts(value, "}}");
    } else {
        sp_buf_puts(value, ",\"transaction\":null}");
    }
    return 0;
}

/* The key: the key columns' object; none for tables without one and for truncates. */
static int dbz_encode_key(struct sp_format *fmt, const struct sp_event *ev, struct sp_buf *key,
                          struct sp_err *err)
{
    if (ev->op == SP_OP_MESSAGE) {
        sp_buf_puts(key, "{\"prefix\":");
        dbz_put_cstr(key, ev->msg_prefix);
        sp_buf_putc(key, '}');
        return 0;
    }
    if (ev->op == SP_OP_TRUNCATE || ev->rel == NULL || sp_relation_nkeys(ev->rel) == 0) {
        return 0;
    }
    const struct sp_tuple *tup = sp_event_key_tuple(ev);
    if (tup == NULL) {
        return 0;
    }
    return dbz_put_row(fmt, ev, tup, true, key, err);
}

static int dbz_encode(struct sp_format *fmt, const struct sp_event *ev, struct sp_buf *key,
                      struct sp_buf *value, struct sp_err *err)
{
    size_t key_mark = key->len;
    size_t value_mark = value->len;
    int rc = 0;
    if (ev->key_override != NULL) {
        /* a JSON string, as the JSON converter writes the outbox router's key; a
         * script's key as the JSON it returned */
        if (ev->key_override_json) {
            sp_buf_append(key, ev->key_override, ev->key_override_len);
        } else {
            dbz_put_str(key, ev->key_override, ev->key_override_len);
        }
    } else {
        rc = dbz_encode_key(fmt, ev, key, err);
    }
    if (rc == 0 && ev->payload != NULL) {
        /* an outbox event: the business event is the value (Debezium's outbox event router) */
        sp_buf_append(value, ev->payload, ev->payload_len);
        return 0;
    }
    if (rc == 0) {
        rc = dbz_encode_value(fmt, ev, value, err);
    }
    if (rc < 0) {
        /* Leave both buffers as they were: the event goes to the recovery policy. */
        key->len = key_mark;
        value->len = value_mark;
        if (key->data != NULL) {
            key->data[key_mark] = '\0';
        }
        if (value->data != NULL) {
            value->data[value_mark] = '\0';
        }
    }
    return rc;
}

const struct sp_format_ops sp_format_debezium = {
    .name = "debezium",
    .summary = "what Debezium's PostgreSQL connector writes through the JSON converter "
               "(schemas.enable=false, decimal.handling.mode=string)",
    .encode = dbz_encode,
};
