// SPDX-License-Identifier: Apache-2.0
/*
 * The debezium format (format/debezium.c): whole keys and values for
 * hand-built events of every op, the value mapping of every type it maps,
 * TOAST placeholders, and conversion errors. The expected values of the Java
 * conversions (Double.toString, BigDecimal.toString, the ISO formatters,
 * MicroDuration, HashMap order) were checked against a JVM.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/event.h"
#include "core/plugin.h"
#include "source/pg/types.h"
#include "util/mem.h"

extern const struct sp_format_ops sp_format_debezium;
void sp_format_debezium_set_clock(int64_t (*now_us)(void));

#define NOW_US    INT64_C(1763719200512345)
#define COMMIT_US INT64_C(1763719200500000)

/* commit_lsn 24023400, lsn 24023128 */
#define SOURCE(schema, table)                                                          \
    ",\"source\":{\"version\":\"" SP_VERSION                                           \
    "\",\"connector\":\"postgresql\",\"name\":\"orders\","                             \
    "\"ts_ms\":1763719200500,\"snapshot\":\"false\",\"db\":\"orders\","                \
    "\"sequence\":\"[\\\"24023400\\\",\\\"24023128\\\"]\",\"ts_us\":1763719200500000," \
    "\"ts_ns\":1763719200500000000,\"schema\":\"" schema "\",\"table\":\"" table "\"," \
    "\"txId\":771,\"lsn\":24023128,\"xmin\":null}"
#define TAIL(op)                                                             \
    ",\"op\":\"" op "\",\"ts_ms\":1763719200512,\"ts_us\":1763719200512345," \
    "\"ts_ns\":1763719200512345000,\"transaction\":null}"

static int64_t fixed_now(void)
{
    return NOW_US;
}

/* Types the fake catalog knows beyond the built-in ones. */
enum {
    OID_POINT = 600,
    OID_POINT_ARRAY = 1017,
    OID_BIT = 1560,
    OID_VARBIT = 1562,
    OID_INT4RANGE = 3904,
    OID_HSTORE = 16500,
    OID_GEOMETRY = 16600,
    OID_MOOD = 16700,
    OID_POSINT = 16800,
};

static int fake_lookup(void *ctx, uint32_t oid, struct sp_typinfo *out, struct sp_err *err)
{
    (void)ctx;
    const char *nsp = "pg_catalog";
    const char *name = NULL;
    out->typtype = 'b';
    out->typcategory = 'U';
    switch (oid) {
    case OID_POINT:
        name = "point";
        out->typcategory = 'G';
        break;
    case OID_POINT_ARRAY:
        name = "_point";
        out->typcategory = 'A';
        out->typelem = OID_POINT;
        break;
    case OID_BIT:
        name = "bit";
        break;
    case OID_VARBIT:
        name = "varbit";
        break;
    case OID_INT4RANGE:
        name = "int4range";
        out->typtype = 'r';
        break;
    case OID_HSTORE:
        nsp = "public";
        name = "hstore";
        break;
    case OID_GEOMETRY:
        nsp = "gis";
        name = "geometry";
        break;
    case OID_MOOD:
        nsp = "public";
        name = "mood";
        out->typtype = 'e';
        break;
    case OID_POSINT:
        nsp = "public";
        name = "posint";
        out->typtype = 'd';
        out->typbasetype = 23;
        break;
    default:
        return sp_err_set(err, SP_EINVAL, "type %u does not exist", oid);
    }
    out->oid = oid;
    out->typdelim = ',';
    out->nspname = sp_xstrdup(nsp);
    out->typname = sp_xstrdup(name);
    return 0;
}

struct col_def {
    const char *name;
    uint32_t oid;
    int32_t typmod;
    bool key;
};

struct fixture {
    struct sp_typcache *tc;
    struct sp_relation *orders; /* id int4 (key), status text, total numeric, meta jsonb,
                                   created_at timestamptz */
    struct sp_relation *log;    /* no key: at timestamptz, line text */
    struct sp_format fmt;
    struct sp_buf key;
    struct sp_buf value;
    struct sp_err err;
};

static struct sp_relation *make_rel(struct sp_typcache *tc, const char *schema, const char *table,
                                    const struct col_def *defs, int ncols)
{
    struct sp_relation *rel = sp_xcalloc(1, sizeof(*rel));
    struct sp_err err;
    rel->oid = 16400;
    rel->schema = sp_xstrdup(schema);
    rel->table = sp_xstrdup(table);
    rel->replident = 'd';
    rel->ncols = ncols;
    rel->cols = sp_xcalloc((size_t)ncols, sizeof(*rel->cols));
    rel->refs = 1;
    for (int i = 0; i < ncols; i++) {
        rel->cols[i].name = sp_xstrdup(defs[i].name);
        rel->cols[i].type_oid = defs[i].oid;
        rel->cols[i].typmod = defs[i].typmod;
        rel->cols[i].type = sp_typcache_get(tc, defs[i].oid, &err);
        assert_non_null(rel->cols[i].type);
        rel->cols[i].key = defs[i].key;
    }
    return rel;
}

static int setup(void **state)
{
    static const struct col_def orders[] = {
        {"id", 23, -1, true},      {"status", 25, -1, false},       {"total", 1700, -1, false},
        {"meta", 3802, -1, false}, {"created_at", 1184, -1, false},
    };
    static const struct col_def log[] = {{"at", 1184, -1, false}, {"line", 25, -1, false}};
    struct fixture *fx = sp_xcalloc(1, sizeof(*fx));
    fx->tc = sp_typcache_new(fake_lookup, NULL);
    fx->orders = make_rel(fx->tc, "public", "orders", orders, 5);
    fx->log = make_rel(fx->tc, "audit", "log", log, 2);
    fx->fmt.ops = &sp_format_debezium;
    fx->fmt.toast_placeholder = "__siphon_unavailable";
    sp_buf_init(&fx->key);
    sp_buf_init(&fx->value);
    sp_err_clear(&fx->err);
    sp_format_debezium_set_clock(fixed_now);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    sp_relation_unref(fx->orders);
    sp_relation_unref(fx->log);
    sp_typcache_free(fx->tc);
    sp_buf_fini(&fx->key);
    sp_buf_fini(&fx->value);
    free(fx);
    sp_format_debezium_set_clock(NULL);
    return 0;
}

static struct sp_event *new_event(enum sp_op op, struct sp_relation *rel)
{
    struct sp_event *ev = sp_event_new(op, 256);
    if (rel != NULL) {
        ev->rel = sp_relation_ref(rel);
    }
    ev->lsn = 24023128;
    ev->commit_lsn = 24023400;
    ev->xid = 771;
    ev->commit_time_us = COMMIT_US;
    ev->seq = 3;
    ev->source_name = "orders";
    ev->db = "orders";
    return ev;
}

/* A tuple for ev's relation from n texts (NULL means SQL NULL); missing ones are NULL. */
static struct sp_tuple *row_n(struct sp_event *ev, const char *const *vals, size_t n)
{
    struct sp_tuple *t = sp_event_tuple(ev, ev->rel->ncols);
    for (int i = 0; i < ev->rel->ncols; i++) {
        if ((size_t)i >= n || vals[i] == NULL) {
            t->cols[i].kind = SP_DATUM_NULL;
            continue;
        }
        size_t len = strlen(vals[i]);
        char *p = sp_event_alloc(ev, len + 1);
        memcpy(p, vals[i], len + 1);
        t->cols[i].kind = SP_DATUM_TEXT;
        t->cols[i].data = p;
        t->cols[i].len = (uint32_t)len;
    }
    return t;
}

#define ROW(ev, vals) row_n((ev), (vals), SP_ARRAY_LEN(vals))

static void encode_ok(struct fixture *fx, struct sp_event *ev)
{
    sp_buf_reset(&fx->key);
    sp_buf_reset(&fx->value);
    int rc = fx->fmt.ops->encode(&fx->fmt, ev, &fx->key, &fx->value, &fx->err);
    if (rc != 0) {
        print_error("encode: %s\n", fx->err.msg);
    }
    assert_int_equal(rc, 0);
    assert_non_null(fx->value.data);
    assert_int_equal(strlen(fx->value.data), fx->value.len);
    assert_null(strchr(fx->value.data, '\n'));
}

/*
 * One insert into a table of the given columns (all in one relation), the
 * "after" object it produces.
 */
static void assert_after(struct fixture *fx, const struct col_def *defs, int ncols,
                         const char *const *vals, const char *expected_after)
{
    struct sp_relation *rel = make_rel(fx->tc, "public", "kinds", defs, ncols);
    struct sp_event *ev = new_event(SP_OP_INSERT, rel);
    ev->after = row_n(ev, vals, (size_t)ncols);
    encode_ok(fx, ev);
    const char *v = fx->value.data;
    const char *prefix = "{\"before\":null,\"after\":";
    assert_memory_equal(v, prefix, strlen(prefix));
    const char *src = strstr(v, ",\"source\":");
    assert_non_null(src);
    size_t n = (size_t)(src - v) - strlen(prefix);
    char *after = sp_xmalloc(n + 1);
    memcpy(after, v + strlen(prefix), n);
    after[n] = '\0';
    assert_string_equal(after, expected_after);
    free(after);
    sp_event_free(ev);
    sp_relation_unref(rel);
}

static const char *const order_42[] = {"42", "paid", "19.90", "{\"gift\": true}",
                                       "2026-11-21 10:00:00.5+00"};
static const char *const order_42_shipped[] = {"42", "shipped", "19.90", "{\"gift\": true}",
                                               "2026-11-21 10:00:00.5+00"};
static const char *const order_42_key[] = {"42", NULL, NULL, NULL, NULL};

#define AFTER_42                                                                            \
    "{\"id\":42,\"status\":\"paid\",\"total\":\"19.90\",\"meta\":\"{\\\"gift\\\": true}\"," \
    "\"created_at\":\"2026-11-21T10:00:00.500000Z\"}"
#define AFTER_42_SHIPPED                                                                       \
    "{\"id\":42,\"status\":\"shipped\",\"total\":\"19.90\",\"meta\":\"{\\\"gift\\\": true}\"," \
    "\"created_at\":\"2026-11-21T10:00:00.500000Z\"}"

/* ---- envelopes ---- */

static void insert_has_debezium_envelope_and_key(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_INSERT, fx->orders);
    ev->after = ROW(ev, order_42);
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"id\":42}");
    assert_string_equal(fx->value.data, "{\"before\":null,\"after\":" AFTER_42 SOURCE(
                                            "public", "orders") TAIL("c"));
    sp_event_free(ev);
}

static void snapshot_read_carries_snapshot_marker(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_READ, fx->orders);
    ev->after = ROW(ev, order_42);
    ev->snapshot = "last";
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"id\":42}");
    assert_non_null(strstr(fx->value.data, ",\"snapshot\":\"last\",\"db\":\"orders\","));
    assert_non_null(strstr(fx->value.data, ",\"op\":\"r\",\"ts_ms\":1763719200512,"));
    sp_event_free(ev);
}

static void update_with_key_only_old_row_nulls_other_columns(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_UPDATE, fx->orders);
    ev->before = ROW(ev, order_42_key);
    ev->before_key_only = true;
    ev->after = ROW(ev, order_42_shipped);
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"id\":42}");
    assert_string_equal(
        fx->value.data,
        "{\"before\":{\"id\":42,\"status\":null,\"total\":null,\"meta\":null,"
        "\"created_at\":null},\"after\":" AFTER_42_SHIPPED SOURCE("public", "orders") TAIL("u"));
    sp_event_free(ev);
}

static void update_without_old_row_has_null_before(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_UPDATE, fx->orders);
    ev->after = ROW(ev, order_42_shipped);
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"id\":42}");
    assert_string_equal(fx->value.data, "{\"before\":null,\"after\":" AFTER_42_SHIPPED SOURCE(
                                            "public", "orders") TAIL("u"));
    sp_event_free(ev);
}

static void delete_with_full_old_row(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_DELETE, fx->orders);
    ev->before = ROW(ev, order_42);
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"id\":42}");
    assert_string_equal(fx->value.data, "{\"before\":" AFTER_42
                                        ",\"after\":null" SOURCE("public", "orders") TAIL("d"));
    sp_event_free(ev);
}

static void truncate_has_null_rows_and_no_key(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_TRUNCATE, fx->orders);
    encode_ok(fx, ev);
    assert_int_equal(fx->key.len, 0);
    assert_string_equal(fx->value.data,
                        "{\"before\":null,\"after\":null" SOURCE("public", "orders") TAIL("t"));
    sp_event_free(ev);
}

static void table_without_key_has_no_key(void **state)
{
    struct fixture *fx = *state;
    static const char *const line[] = {"2026-11-21 10:00:00+00", "started"};
    struct sp_event *ev = new_event(SP_OP_INSERT, fx->log);
    ev->after = ROW(ev, line);
    encode_ok(fx, ev);
    assert_int_equal(fx->key.len, 0);
    assert_string_equal(fx->value.data,
                        "{\"before\":null,\"after\":{\"at\":\"2026-11-21T10:00:00.000000Z\","
                        "\"line\":\"started\"}" SOURCE("audit", "log") TAIL("c"));
    sp_event_free(ev);
}

static void transactional_message_is_message_value(void **state)
{
    struct fixture *fx = *state;
    static const char content[] = "{\"order\":42}";
    struct sp_event *ev = new_event(SP_OP_MESSAGE, NULL);
    ev->msg_prefix = "outbox";
    ev->msg_content = content;
    ev->msg_len = (uint32_t)strlen(content);
    ev->msg_transactional = true;
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"prefix\":\"outbox\"}");
    assert_string_equal(
        fx->value.data,
        "{\"op\":\"m\",\"ts_ms\":1763719200512" SOURCE(
            "", "") ",\"message\":{\"prefix\":\"outbox\",\"content\":\"eyJvcmRlciI6NDJ9\"}}");
    sp_event_free(ev);
}

static void non_transactional_message_has_no_txid(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_MESSAGE, NULL);
    ev->xid = 0;
    ev->lsn = 24023500;
    ev->commit_lsn = 24023500;
    ev->msg_prefix = "p\"x";
    ev->msg_content = "a\0\xff";
    ev->msg_len = 3;
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"prefix\":\"p\\\"x\"}");
    assert_string_equal(
        fx->value.data,
        "{\"op\":\"m\",\"ts_ms\":1763719200512,\"source\":{\"version\":\"" SP_VERSION
        "\",\"connector\":\"postgresql\",\"name\":\"orders\",\"ts_ms\":1763719200500,"
        "\"snapshot\":\"false\",\"db\":\"orders\","
        "\"sequence\":\"[\\\"24023500\\\",\\\"24023500\\\"]\",\"ts_us\":1763719200500000,"
        "\"ts_ns\":1763719200500000000,\"schema\":\"\",\"table\":\"\",\"txId\":null,"
        "\"lsn\":24023500,\"xmin\":null},\"message\":{\"prefix\":\"p\\\"x\",\"content\":\"YQD/"
        "\"}}");
    sp_event_free(ev);
}

static void times_before_1970_floor(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_TRUNCATE, fx->orders);
    ev->commit_time_us = -1500;
    encode_ok(fx, ev);
    assert_non_null(strstr(fx->value.data, "\"ts_ms\":-2,\"snapshot\""));
    assert_non_null(strstr(fx->value.data, "\"ts_us\":-1500,\"ts_ns\":-1500000,\"schema\""));
    sp_event_free(ev);
}

/* ---- values ---- */

static void numbers_as_java_prints_them(void **state)
{
    static const struct col_def defs[] = {
        {"b", 16, -1, false},    {"i2", 21, -1, false},   {"i8", 20, -1, false},
        {"o", 26, -1, false},    {"f4", 700, -1, false},  {"f4b", 700, -1, false},
        {"f8", 701, -1, false},  {"f8b", 701, -1, false}, {"f8c", 701, -1, false},
        {"f8d", 701, -1, false}, {"nan", 701, -1, false}, {"inf", 700, -1, false},
        {"n", 1700, -1, false},  {"n2", 1700, -1, false}, {"n3", 1700, -1, false},
        {"n4", 1700, -1, false}, {"nn", 1700, -1, false}, {"ni", 1700, -1, false},
        {"m", 790, -1, false},   {"m2", 790, -1, false},  {"pos", OID_POSINT, -1, false},
    };
    static const char *const vals[] = {
        "f",          "-32768", "9007199254740993",
        "4000000000", "0.1",    "3.4028235e+38",
        "100",        "1e-05",  "1234567.125",
        "1e+16",      "NaN",    "-Infinity",
        "0.0000001",  "-12.50", "0.0000000",
        "1000000",    "NaN",    "Infinity",
        "-$1,234.56", "$0.50",  "7",
    };
    assert_after(*state, defs, (int)SP_ARRAY_LEN(defs), vals,
                 "{\"b\":false,\"i2\":-32768,\"i8\":9007199254740993,\"o\":4000000000,"
                 "\"f4\":0.1,\"f4b\":3.4028235E38,\"f8\":100.0,\"f8b\":1.0E-5,"
                 "\"f8c\":1234567.125,\"f8d\":1.0E16,\"nan\":\"NaN\",\"inf\":\"-Infinity\","
                 "\"n\":\"1E-7\",\"n2\":\"-12.50\",\"n3\":\"0E-7\",\"n4\":\"1000000\","
                 "\"nn\":\"NAN\",\"ni\":\"POSITIVE_INFINITY\",\"m\":\"-1234.56\","
                 "\"m2\":\"0.50\",\"pos\":7}");
}

static void temporals_follow_adaptive_precision(void **state)
{
    static const struct col_def defs[] = {
        {"d", 1082, -1, false},    {"t", 1083, -1, false},    {"t3", 1083, 3, false},
        {"tz", 1266, -1, false},   {"ts", 1114, -1, false},   {"ts3", 1114, 3, false},
        {"tstz", 1184, -1, false}, {"tstz3", 1184, 3, false}, {"tstz0", 1184, 0, false},
        {"off", 1184, -1, false},  {"bc", 1184, -1, false},   {"iv", 1186, -1, false},
        {"iv2", 1186, -1, false},
    };
    static const char *const vals[] = {
        "2026-11-21",
        "10:00:00.5",
        "10:00:00.5",
        "10:00:00.5+02",
        "2026-11-21 10:00:00.5",
        "2026-11-21 10:00:00.5",
        "2026-11-21 10:00:00.5+00",
        "2026-11-21 10:00:00.5+00",
        "2026-11-21 10:00:01+00",
        "2026-11-21 00:30:00.123456-05:30",
        "0002-01-01 00:00:00+00 BC",
        "P1Y2M3DT4H5M6.5S",
        "P-1DT2H0.5S",
    };
    assert_after(*state, defs, (int)SP_ARRAY_LEN(defs), vals,
                 "{\"d\":20778,\"t\":36000500000,\"t3\":36000500,\"tz\":\"08:00:00.5Z\","
                 "\"ts\":1795255200500000,\"ts3\":1795255200500,"
                 "\"tstz\":\"2026-11-21T10:00:00.500000Z\","
                 "\"tstz3\":\"2026-11-21T10:00:00.500Z\",\"tstz0\":\"2026-11-21T10:00:01Z\","
                 "\"off\":\"2026-11-21T06:00:00.123456Z\","
                 "\"bc\":\"-0001-01-01T00:00:00.000000Z\",\"iv\":37091106500000,"
                 "\"iv2\":-79199500000}");
}

static void temporal_special_values(void **state)
{
    static const struct col_def defs[] = {
        {"d", 1082, -1, false},   {"dn", 1082, -1, false},   {"ts", 1114, -1, false},
        {"tsn", 1114, -1, false}, {"ts3", 1114, 3, false},   {"tstz", 1184, -1, false},
        {"t24", 1083, -1, false}, {"tz24", 1266, -1, false}, {"tzwrap", 1266, -1, false},
    };
    static const char *const vals[] = {
        "infinity",  "-infinity", "infinity",    "-infinity",   "infinity",
        "-infinity", "24:00:00",  "24:00:00+00", "01:00:00+02",
    };
    assert_after(*state, defs, (int)SP_ARRAY_LEN(defs), vals,
                 "{\"d\":-2147472692,\"dn\":-2147472691,\"ts\":9223372036825200000,"
                 "\"tsn\":-9223372036832400000,\"ts3\":9223372036825200,"
                 "\"tstz\":\"-infinity\",\"t24\":86400000000,\"tz24\":\"24:00:00Z\","
                 "\"tzwrap\":\"23:00:00Z\"}");
}

static void strings_bytes_bits_and_geometry(void **state)
{
    static const struct col_def defs[] = {
        {"u", 2950, -1, false},         {"j", 114, -1, false},
        {"x", 142, -1, false},          {"ip", 869, -1, false},
        {"mood", OID_MOOD, -1, false},  {"r", OID_INT4RANGE, -1, false},
        {"by", 17, -1, false},          {"b1", OID_BIT, 1, false},
        {"b10", OID_BIT, 10, false},    {"vb", OID_VARBIT, -1, false},
        {"vb0", OID_VARBIT, -1, false}, {"p", OID_POINT, -1, false},
        {"g", OID_GEOMETRY, -1, false}, {"ctl", 25, -1, false},
    };
    static const char *const vals[] = {
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "{\"a\": [1, 2]}",
        "<a>1</a>",
        "192.168.0.1/24",
        "happy",
        "[1,10)",
        "\\x00ff10",
        "1",
        "1000000001",
        "101",
        "000",
        "(1.5,-2)",
        "0101000020E6100000000000000000F03F0000000000000040",
        "tab\there \"q\" \\ \x01 \x1f \x7f \xc3\xbc",
    };
    assert_after(*state, defs, (int)SP_ARRAY_LEN(defs), vals,
                 "{\"u\":\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\",\"j\":\"{\\\"a\\\": [1, 2]}\","
                 "\"x\":\"<a>1</a>\",\"ip\":\"192.168.0.1/24\",\"mood\":\"happy\","
                 "\"r\":\"[1,10)\",\"by\":\"AP8Q\",\"b1\":true,\"b10\":\"AQI=\",\"vb\":\"BQ==\","
                 "\"vb0\":\"\",\"p\":{\"x\":1.5,\"y\":-2.0,"
                 "\"wkb\":\"AQEAAAAAAAAAAAD4PwAAAAAAAADA\",\"srid\":null},"
                 "\"g\":{\"wkb\":\"AQEAACDmEAAAAAAAAAAA8D8AAAAAAAAAQA==\",\"srid\":4326},"
                 "\"ctl\":\"tab\\there \\\"q\\\" \\\\ \\u0001 \\u001F \x7f \xc3\xbc\"}");
}

static void hstore_is_json_string_in_hashmap_order(void **state)
{
    static const struct col_def defs[] = {
        {"h", OID_HSTORE, -1, false}, {"h2", OID_HSTORE, -1, false}, {"h0", OID_HSTORE, -1, false}};
    static const char *const vals[] = {
        "\"b\"=>\"1\", \"a\"=>NULL, \"c\"=>\"q\\\"uo\\\\te\"",
        "\"a\"=>\"v\", \"b\"=>\"v\", \"key\"=>\"v\", \"value\"=>\"v\", \"x1\"=>\"v\", "
        "\"x2\"=>\"v\", \"x3\"=>\"v\", \"x4\"=>\"v\", \"x5\"=>\"v\", \"x6\"=>\"v\", "
        "\"x7\"=>\"v\", \"x8\"=>\"v\", \"x9\"=>\"v\", \"x10\"=>\"v\"",
        "",
    };
    assert_after(*state, defs, (int)SP_ARRAY_LEN(defs), vals,
                 "{\"h\":\"{\\\"a\\\":null,\\\"b\\\":\\\"1\\\","
                 "\\\"c\\\":\\\"q\\\\\\\"uo\\\\\\\\te\\\"}\","
                 "\"h2\":\"{\\\"x8\\\":\\\"v\\\",\\\"a\\\":\\\"v\\\",\\\"x9\\\":\\\"v\\\","
                 "\\\"b\\\":\\\"v\\\",\\\"x10\\\":\\\"v\\\",\\\"x1\\\":\\\"v\\\","
                 "\\\"x2\\\":\\\"v\\\",\\\"x3\\\":\\\"v\\\",\\\"x4\\\":\\\"v\\\","
                 "\\\"value\\\":\\\"v\\\",\\\"x5\\\":\\\"v\\\",\\\"key\\\":\\\"v\\\","
                 "\\\"x6\\\":\\\"v\\\",\\\"x7\\\":\\\"v\\\"}\",\"h0\":\"{}\"}");
}

static void arrays_convert_their_elements(void **state)
{
    static const struct col_def defs[] = {
        {"ia", 1007, -1, false},
        {"ta", 1009, -1, false},
        {"tsa", 1185, 3, false},
        {"na", 1231, -1, false},
        {"pa", OID_POINT_ARRAY, -1, false},
        {"ea", 1007, -1, false},
    };
    static const char *const vals[] = {
        "{1,NULL,3}",
        "{\"a,b\",\"q\\\"uote\",NULL,plain,\"NULL\"}",
        "{\"2026-11-21 10:00:00.5+00\",NULL}",
        "[0:1][1:2]={{1.5,NaN},{0.0000001,2}}",
        "{\"(1,2)\"}",
        "{}",
    };
    assert_after(*state, defs, (int)SP_ARRAY_LEN(defs), vals,
                 "{\"ia\":[1,null,3],\"ta\":[\"a,b\",\"q\\\"uote\",null,\"plain\",\"NULL\"],"
                 "\"tsa\":[\"2026-11-21T10:00:00.500Z\",null],"
                 "\"na\":[[\"1.5\",\"NAN\"],[\"1E-7\",\"2\"]],"
                 "\"pa\":[{\"x\":1.0,\"y\":2.0,\"wkb\":\"AQEAAAAAAAAAAADwPwAAAAAAAABA\","
                 "\"srid\":null}],\"ea\":[]}");
}

/* ---- TOAST ---- */

#define PLACEHOLDER_BYTES                                                                      \
    "[95,95,100,101,98,101,122,105,117,109,95,117,110,97,118,97,105,108,97,98,108,101,95,118," \
    "97,108,117,101]"

static void unchanged_toast_gets_debezium_placeholder_per_type(void **state)
{
    struct fixture *fx = *state;
    static const struct col_def defs[] = {
        {"id", 23, -1, true},         {"body", 25, -1, false},   {"doc", 3802, -1, false},
        {"blob", 17, -1, false},      {"tags", 1009, -1, false}, {"nums", 1007, -1, false},
        {"h", OID_HSTORE, -1, false}, {"n", 1700, -1, false},
    };
    static const char *const vals[] = {"1", "x", "{}", "\\x00", "{a}", "{1}", "", "1"};
    struct sp_relation *rel = make_rel(fx->tc, "public", "docs", defs, (int)SP_ARRAY_LEN(defs));
    struct sp_event *ev = new_event(SP_OP_UPDATE, rel);
    ev->after = ROW(ev, vals);
    for (int i = 1; i < rel->ncols; i++) {
        ev->after->cols[i].kind = SP_DATUM_UNCHANGED;
        ev->after->cols[i].data = NULL;
        ev->after->cols[i].len = 0;
    }
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"id\":1}");
    assert_string_equal(
        fx->value.data,
        "{\"before\":null,\"after\":{\"id\":1,\"body\":\"__debezium_unavailable_value\","
        "\"doc\":\"__debezium_unavailable_value\","
        "\"blob\":\"X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==\","
        "\"tags\":[\"__debezium_unavailable_value\"],\"nums\":" PLACEHOLDER_BYTES ","
        "\"h\":\"{\\\"__debezium_unavailable_value\\\":\\\"__debezium_unavailable_value\\\"}\","
        "\"n\":\"__debezium_unavailable_value\"}" SOURCE("public", "docs") TAIL("u"));

    /* a placeholder the stream configured replaces Debezium's */
    fx->fmt.toast_placeholder = "<gone>";
    encode_ok(fx, ev);
    assert_non_null(strstr(fx->value.data, "\"body\":\"<gone>\",\"doc\":\"<gone>\","
                                           "\"blob\":\"PGdvbmU+\",\"tags\":[\"<gone>\"],"
                                           "\"nums\":[60,103,111,110,101,62],"));
    fx->fmt.toast_placeholder = "__siphon_unavailable";
    sp_event_free(ev);
    sp_relation_unref(rel);
}

static void unchanged_toast_takes_value_from_full_old_row(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_UPDATE, fx->orders);
    ev->before = ROW(ev, order_42);
    ev->after = ROW(ev, order_42_shipped);
    ev->after->cols[3].kind = SP_DATUM_UNCHANGED;
    encode_ok(fx, ev);
    assert_string_equal(fx->value.data,
                        "{\"before\":" AFTER_42
                        ",\"after\":" AFTER_42_SHIPPED SOURCE("public", "orders") TAIL("u"));
    sp_event_free(ev);
}

/* ---- errors ---- */

static void bad_value_fails_and_leaves_buffers_alone(void **state)
{
    struct fixture *fx = *state;
    static const char *const bad[] = {"42", "paid", "19.9x", NULL, NULL};
    struct sp_event *ev = new_event(SP_OP_INSERT, fx->orders);
    ev->after = ROW(ev, bad);
    sp_buf_reset(&fx->key);
    sp_buf_reset(&fx->value);
    sp_buf_puts(&fx->key, "k");
    sp_buf_puts(&fx->value, "v");
    int rc = fx->fmt.ops->encode(&fx->fmt, ev, &fx->key, &fx->value, &fx->err);
    assert_int_equal(rc, SP_EINVAL);
    assert_string_equal(fx->key.data, "k");
    assert_string_equal(fx->value.data, "v");
    assert_non_null(strstr(fx->err.msg, "column \"total\" of table \"public.orders\""));
    assert_non_null(strstr(fx->err.msg, "\"19.9x\""));
    sp_event_free(ev);
}

static void malformed_temporal_and_array_values_fail(void **state)
{
    struct fixture *fx = *state;
    static const struct col_def defs[] = {{"v", 1184, -1, false}};
    static const char *const inputs[] = {"2026-02-30 10:00:00+00", "2026-11-21 25:00:00+00",
                                         "2026-11-21T10:00:00Z", "yesterday"};
    struct sp_relation *rel = make_rel(fx->tc, "public", "bad", defs, 1);
    for (size_t i = 0; i < SP_ARRAY_LEN(inputs); i++) {
        struct sp_event *ev = new_event(SP_OP_INSERT, rel);
        const char *vals[] = {inputs[i]};
        ev->after = ROW(ev, vals);
        assert_int_equal(fx->fmt.ops->encode(&fx->fmt, ev, &fx->key, &fx->value, &fx->err),
                         SP_EINVAL);
        sp_event_free(ev);
    }
    sp_relation_unref(rel);

    static const struct col_def adefs[] = {{"v", 1007, -1, false}};
    static const char *const ainputs[] = {"{1,2", "{1,x}", "1,2", "{{1},2}x"};
    rel = make_rel(fx->tc, "public", "bad", adefs, 1);
    for (size_t i = 0; i < SP_ARRAY_LEN(ainputs); i++) {
        struct sp_event *ev = new_event(SP_OP_INSERT, rel);
        const char *vals[] = {ainputs[i]};
        ev->after = ROW(ev, vals);
        assert_int_equal(fx->fmt.ops->encode(&fx->fmt, ev, &fx->key, &fx->value, &fx->err),
                         SP_EINVAL);
        sp_event_free(ev);
    }
    sp_relation_unref(rel);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(insert_has_debezium_envelope_and_key, setup, teardown),
        cmocka_unit_test_setup_teardown(snapshot_read_carries_snapshot_marker, setup, teardown),
        cmocka_unit_test_setup_teardown(update_with_key_only_old_row_nulls_other_columns, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(update_without_old_row_has_null_before, setup, teardown),
        cmocka_unit_test_setup_teardown(delete_with_full_old_row, setup, teardown),
        cmocka_unit_test_setup_teardown(truncate_has_null_rows_and_no_key, setup, teardown),
        cmocka_unit_test_setup_teardown(table_without_key_has_no_key, setup, teardown),
        cmocka_unit_test_setup_teardown(transactional_message_is_message_value, setup, teardown),
        cmocka_unit_test_setup_teardown(non_transactional_message_has_no_txid, setup, teardown),
        cmocka_unit_test_setup_teardown(times_before_1970_floor, setup, teardown),
        cmocka_unit_test_setup_teardown(numbers_as_java_prints_them, setup, teardown),
        cmocka_unit_test_setup_teardown(temporals_follow_adaptive_precision, setup, teardown),
        cmocka_unit_test_setup_teardown(temporal_special_values, setup, teardown),
        cmocka_unit_test_setup_teardown(strings_bytes_bits_and_geometry, setup, teardown),
        cmocka_unit_test_setup_teardown(hstore_is_json_string_in_hashmap_order, setup, teardown),
        cmocka_unit_test_setup_teardown(arrays_convert_their_elements, setup, teardown),
        cmocka_unit_test_setup_teardown(unchanged_toast_gets_debezium_placeholder_per_type, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(unchanged_toast_takes_value_from_full_old_row, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(bad_value_fails_and_leaves_buffers_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed_temporal_and_array_values_fail, setup, teardown),
    };
    return cmocka_run_group_tests_name("format_debezium", tests, NULL, NULL);
}
