// SPDX-License-Identifier: Apache-2.0
/*
 * The json format (format/json.c): whole envelopes for hand-built events of
 * every op, keys, TOAST placeholders and conversion errors.
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

extern const struct sp_format_ops sp_format_json;
void sp_format_json_set_clock(int64_t (*now_us)(void));

#define NOW_US    INT64_C(1763719200512000)
#define COMMIT_US INT64_C(1763719200500000)
/* commit_lsn 24023400 = 0/16E9168 */
#define TAIL(op) ",\"op\":\"" op "\",\"ts_ms\":1763719200512,\"id\":\"0/16E9168:3\"}"
#define SOURCE(schema, table)                                                              \
    ",\"source\":{\"connector\":\"postgresql\",\"name\":\"orders\",\"db\":\"orders\","     \
    "\"schema\":\"" schema "\",\"table\":\"" table "\",\"lsn\":24023128,"                  \
    "\"commit_lsn\":24023400,\"txId\":771,\"ts_ms\":1763719200500,\"snapshot\":\"false\"," \
    "\"version\":\"" SP_VERSION "\"}"

static int64_t fixed_now(void)
{
    return NOW_US;
}

struct fixture {
    struct sp_typcache *tc;
    struct sp_relation *orders;  /* id int4 (key), status text, total numeric, meta jsonb,
                                    created_at timestamptz */
    struct sp_relation *log;     /* no key: at timestamptz, line text */
    struct sp_relation *tenants; /* tenant text (key), id int8 (key), note text */
    struct sp_format fmt;
    struct sp_buf key;
    struct sp_buf value;
    struct sp_err err;
};

struct col_def {
    const char *name;
    uint32_t oid;
    bool key;
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
        rel->cols[i].typmod = -1;
        rel->cols[i].type = sp_typcache_get(tc, defs[i].oid, &err);
        assert_non_null(rel->cols[i].type);
        rel->cols[i].key = defs[i].key;
    }
    return rel;
}

static int setup(void **state)
{
    static const struct col_def orders[] = {
        {"id", 23, true},      {"status", 25, false},       {"total", 1700, false},
        {"meta", 3802, false}, {"created_at", 1184, false},
    };
    static const struct col_def log[] = {{"at", 1184, false}, {"line", 25, false}};
    static const struct col_def tenants[] = {
        {"tenant", 25, true}, {"id", 20, true}, {"note", 25, false}};
    struct fixture *fx = sp_xcalloc(1, sizeof(*fx));
    fx->tc = sp_typcache_new(NULL, NULL);
    fx->orders = make_rel(fx->tc, "public", "orders", orders, 5);
    fx->log = make_rel(fx->tc, "audit", "log", log, 2);
    fx->tenants = make_rel(fx->tc, "public", "tenants", tenants, 3);
    fx->fmt.ops = &sp_format_json;
    sp_buf_init(&fx->key);
    sp_buf_init(&fx->value);
    sp_err_clear(&fx->err);
    sp_format_json_set_clock(fixed_now);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    sp_relation_unref(fx->orders);
    sp_relation_unref(fx->log);
    sp_relation_unref(fx->tenants);
    sp_typcache_free(fx->tc);
    sp_buf_fini(&fx->key);
    sp_buf_fini(&fx->value);
    free(fx);
    sp_format_json_set_clock(NULL);
    return 0;
}

static struct sp_event *new_event(enum sp_op op, struct sp_relation *rel)
{
    struct sp_event *ev = sp_event_new(op, 256);
    ev->rel = sp_relation_ref(rel);
    ev->lsn = 24023128;
    ev->commit_lsn = 24023400;
    ev->xid = 771;
    ev->commit_time_us = COMMIT_US;
    ev->seq = 3;
    ev->source_name = "orders";
    ev->db = "orders";
    return ev;
}

/* A tuple for rel from texts; NULL means SQL NULL. */
static struct sp_tuple *row(struct sp_event *ev, const char *const *vals)
{
    struct sp_tuple *t = sp_event_tuple(ev, ev->rel->ncols);
    for (int i = 0; i < ev->rel->ncols; i++) {
        if (vals[i] == NULL) {
            t->cols[i].kind = SP_DATUM_NULL;
            continue;
        }
        size_t n = strlen(vals[i]);
        char *p = sp_event_alloc(ev, n + 1);
        memcpy(p, vals[i], n + 1);
        t->cols[i].kind = SP_DATUM_TEXT;
        t->cols[i].data = p;
        t->cols[i].len = (uint32_t)n;
    }
    return t;
}

static const char *const order_42[] = {"42", "paid", "19.90", "{\"gift\": true}",
                                       "2026-11-21 10:00:00.5+00"};
static const char *const order_42_shipped[] = {"42", "shipped", "19.90", "{\"gift\": true}",
                                               "2026-11-21 10:00:00.5+00"};
static const char *const order_42_key[] = {"42", NULL, NULL, NULL, NULL};

#define AFTER_42                                                                   \
    "{\"id\":42,\"status\":\"paid\",\"total\":\"19.90\",\"meta\":{\"gift\":true}," \
    "\"created_at\":\"2026-11-21T10:00:00.5Z\"}"
#define AFTER_42_SHIPPED                                                              \
    "{\"id\":42,\"status\":\"shipped\",\"total\":\"19.90\",\"meta\":{\"gift\":true}," \
    "\"created_at\":\"2026-11-21T10:00:00.5Z\"}"

static void encode_ok(struct fixture *fx, struct sp_event *ev)
{
    int rc = fx->fmt.ops->encode(&fx->fmt, ev, &fx->key, &fx->value, &fx->err);
    if (rc != 0) {
        print_error("encode: %s\n", fx->err.msg);
    }
    assert_int_equal(rc, 0);
    assert_non_null(fx->value.data);
    assert_int_equal(strlen(fx->value.data), fx->value.len);
    assert_null(strchr(fx->value.data, '\n'));
}

static void insert_matches_design_example(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_INSERT, fx->orders);
    ev->after = row(ev, order_42);
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"id\":42}");
    assert_string_equal(fx->value.data, "{\"before\":null,\"after\":" AFTER_42 SOURCE(
                                            "public", "orders") TAIL("c"));
    sp_event_free(ev);
}

static void snapshot_read_is_op_r(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_READ, fx->orders);
    ev->after = row(ev, order_42);
    ev->snapshot = "true";
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"id\":42}");
    assert_string_equal(
        fx->value.data,
        "{\"before\":null,\"after\":" AFTER_42
        ",\"source\":{\"connector\":\"postgresql\",\"name\":\"orders\",\"db\":\"orders\","
        "\"schema\":\"public\",\"table\":\"orders\",\"lsn\":24023128,\"commit_lsn\":24023400,"
        "\"txId\":771,\"ts_ms\":1763719200500,\"snapshot\":\"true\",\"version\":\"" SP_VERSION
        "\"}" TAIL("r"));
    sp_event_free(ev);
}

static void update_with_key_only_before(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_UPDATE, fx->orders);
    ev->before = row(ev, order_42_key);
    ev->before_key_only = true;
    ev->after = row(ev, order_42_shipped);
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"id\":42}");
    assert_string_equal(
        fx->value.data,
        "{\"before\":{\"id\":42},\"after\":" AFTER_42_SHIPPED SOURCE("public", "orders") TAIL("u"));
    sp_event_free(ev);
}

static void update_with_full_before(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_UPDATE, fx->orders);
    ev->before = row(ev, order_42);
    ev->after = row(ev, order_42_shipped);
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"id\":42}");
    assert_string_equal(fx->value.data,
                        "{\"before\":" AFTER_42
                        ",\"after\":" AFTER_42_SHIPPED SOURCE("public", "orders") TAIL("u"));
    sp_event_free(ev);
}

static void update_without_old_row_has_null_before_and_new_key(void **state)
{
    struct fixture *fx = *state;
    static const char *const moved[] = {"43", "paid", "19.90", "{\"gift\": true}",
                                        "2026-11-21 10:00:00.5+00"};
    struct sp_event *ev = new_event(SP_OP_UPDATE, fx->orders);
    ev->after = row(ev, moved);
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"id\":43}");
    assert_non_null(strstr(fx->value.data, "{\"before\":null,\"after\":{\"id\":43,"));
    sp_event_free(ev);
}

static void delete_with_key_only_before(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_DELETE, fx->orders);
    ev->before = row(ev, order_42_key);
    ev->before_key_only = true;
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"id\":42}");
    assert_string_equal(fx->value.data, "{\"before\":{\"id\":42},\"after\":null" SOURCE(
                                            "public", "orders") TAIL("d"));
    sp_event_free(ev);
}

static void delete_with_full_before(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_DELETE, fx->orders);
    ev->before = row(ev, order_42);
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"id\":42}");
    assert_string_equal(fx->value.data, "{\"before\":" AFTER_42
                                        ",\"after\":null" SOURCE("public", "orders") TAIL("d"));
    sp_event_free(ev);
}

static void truncate_has_no_rows_and_no_key(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_TRUNCATE, fx->orders);
    ev->truncate_flags = 1;
    encode_ok(fx, ev);
    assert_int_equal(fx->key.len, 0);
    assert_string_equal(fx->value.data,
                        "{\"before\":null,\"after\":null" SOURCE("public", "orders") TAIL("t"));
    sp_event_free(ev);
}

static void message_has_prefix_content_and_empty_table(void **state)
{
    struct fixture *fx = *state;
    static const char content[] = "{\"event\": \"paid\",\n \"q\": \"a\\\"b\"}";
    struct sp_event *ev = new_event(SP_OP_MESSAGE, fx->orders);
    sp_relation_unref(ev->rel);
    ev->rel = NULL;
    ev->msg_prefix = "outbox";
    ev->msg_content = content;
    ev->msg_len = (uint32_t)strlen(content);
    ev->msg_transactional = true;
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"prefix\":\"outbox\"}");
    assert_string_equal(fx->value.data,
                        "{\"before\":null,\"after\":null,\"message\":{\"prefix\":\"outbox\","
                        "\"content\":"
                        "\"{\\\"event\\\": \\\"paid\\\",\\n \\\"q\\\": \\\"a\\\\\\\"b\\\"}\","
                        "\"transactional\":true}" SOURCE("", "") TAIL("m"));

    /* non-transactional, binary content with invalid UTF-8 and a NUL byte: base64 */
    sp_buf_reset(&fx->value);
    ev->msg_transactional = false;
    ev->msg_content = "a\0\xff";
    ev->msg_len = 3;
    encode_ok(fx, ev);
    assert_string_equal(
        fx->value.data,
        "{\"before\":null,\"after\":null,\"message\":{\"prefix\":\"outbox\","
        "\"content\":\"YQD/\",\"encoding\":\"base64\",\"transactional\":false}" SOURCE("", "")
            TAIL("m"));
    sp_event_free(ev);
}

static void unchanged_toast_gets_placeholder(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_UPDATE, fx->orders);
    ev->after = row(ev, order_42_shipped);
    ev->after->cols[3].kind = SP_DATUM_UNCHANGED;
    ev->after->cols[3].data = NULL;
    ev->after->cols[3].len = 0;
    encode_ok(fx, ev);
    assert_string_equal(fx->value.data,
                        "{\"before\":null,\"after\":{\"id\":42,\"status\":\"shipped\","
                        "\"total\":\"19.90\",\"meta\":\"__siphon_unavailable\","
                        "\"created_at\":\"2026-11-21T10:00:00.5Z\"}" SOURCE("public", "orders")
                            TAIL("u"));

    /* a configured placeholder, and a key-only old row does not help */
    sp_buf_reset(&fx->key);
    sp_buf_reset(&fx->value);
    fx->fmt.toast_placeholder = "<unchanged \"toast\">";
    ev->before = row(ev, order_42_key);
    ev->before_key_only = true;
    encode_ok(fx, ev);
    assert_string_equal(fx->value.data,
                        "{\"before\":{\"id\":42},\"after\":{\"id\":42,\"status\":\"shipped\","
                        "\"total\":\"19.90\",\"meta\":\"<unchanged \\\"toast\\\">\","
                        "\"created_at\":\"2026-11-21T10:00:00.5Z\"}" SOURCE("public", "orders")
                            TAIL("u"));
    sp_event_free(ev);
}

static void unchanged_toast_takes_value_from_full_old_row(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_UPDATE, fx->orders);
    ev->before = row(ev, order_42);
    ev->after = row(ev, order_42_shipped);
    ev->after->cols[3].kind = SP_DATUM_UNCHANGED;
    encode_ok(fx, ev);
    assert_string_equal(fx->value.data,
                        "{\"before\":" AFTER_42
                        ",\"after\":" AFTER_42_SHIPPED SOURCE("public", "orders") TAIL("u"));
    sp_event_free(ev);
}

static void table_without_key_leaves_key_empty(void **state)
{
    struct fixture *fx = *state;
    static const char *const line[] = {"2026-11-21 10:00:00+00", "started"};
    struct sp_event *ev = new_event(SP_OP_INSERT, fx->log);
    ev->after = row(ev, line);
    encode_ok(fx, ev);
    assert_int_equal(fx->key.len, 0);
    assert_string_equal(fx->value.data,
                        "{\"before\":null,\"after\":{\"at\":\"2026-11-21T10:00:00Z\","
                        "\"line\":\"started\"}" SOURCE("audit", "log") TAIL("c"));

    /* REPLICA IDENTITY NOTHING: a delete carries no old row at all */
    sp_event_free(ev);
    sp_buf_reset(&fx->value);
    ev = new_event(SP_OP_DELETE, fx->log);
    encode_ok(fx, ev);
    assert_int_equal(fx->key.len, 0);
    assert_string_equal(fx->value.data,
                        "{\"before\":null,\"after\":null" SOURCE("audit", "log") TAIL("d"));
    sp_event_free(ev);
}

static void composite_key_in_column_order(void **state)
{
    struct fixture *fx = *state;
    static const char *const vals[] = {"acme \"inc\"", "9007199254740993", NULL};
    struct sp_event *ev = new_event(SP_OP_INSERT, fx->tenants);
    ev->after = row(ev, vals);
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"tenant\":\"acme \\\"inc\\\"\",\"id\":9007199254740993}");
    assert_string_equal(fx->value.data,
                        "{\"before\":null,\"after\":{\"tenant\":\"acme \\\"inc\\\"\","
                        "\"id\":9007199254740993,\"note\":null}" SOURCE("public", "tenants")
                            TAIL("c"));
    sp_event_free(ev);
}

static void null_binary_and_untyped_values(void **state)
{
    struct fixture *fx = *state;
    static const char *const vals[] = {"42", NULL, NULL, NULL, NULL};
    struct sp_event *ev = new_event(SP_OP_INSERT, fx->orders);
    ev->after = row(ev, vals);
    ev->after->cols[1].kind = SP_DATUM_BINARY;
    ev->after->cols[1].data = "\x00\xff\x10";
    ev->after->cols[1].len = 3;
    /* a column whose type the source did not resolve converts as text */
    const struct sp_type *saved = fx->orders->cols[2].type;
    fx->orders->cols[2].type = NULL;
    ev->after->cols[2].kind = SP_DATUM_TEXT;
    ev->after->cols[2].data = "(1,2)";
    ev->after->cols[2].len = 5;
    encode_ok(fx, ev);
    fx->orders->cols[2].type = saved;
    assert_string_equal(fx->value.data,
                        "{\"before\":null,\"after\":{\"id\":42,\"status\":\"AP8Q\","
                        "\"total\":\"(1,2)\",\"meta\":null,\"created_at\":null}" SOURCE(
                            "public", "orders") TAIL("c"));
    sp_event_free(ev);
}

static void values_of_many_types(void **state)
{
    struct fixture *fx = *state;
    static const struct col_def defs[] = {
        {"i", 20, true},    {"f", 701, false},  {"b", 16, false},
        {"by", 17, false},  {"d", 1082, false}, {"iv", 1186, false},
        {"a", 1009, false}, {"j", 114, false},  {"tz", 1266, false},
    };
    static const char *const vals[] = {"-1",
                                       "NaN",
                                       "f",
                                       "\\x0a0b",
                                       "0001-01-01 BC",
                                       "P1Y2M3DT4H5M6.5S",
                                       "{\"a,b\",NULL,\"c\\\"d\"}",
                                       "{\n  \"x\" : [1, 2]\n}",
                                       "10:00:00.5+02"};
    struct sp_relation *rel = make_rel(fx->tc, "public", "types", defs, 9);
    struct sp_event *ev = new_event(SP_OP_INSERT, rel);
    ev->after = row(ev, vals);
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "{\"i\":-1}");
    assert_string_equal(fx->value.data,
                        "{\"before\":null,\"after\":{\"i\":-1,\"f\":\"NaN\",\"b\":false,"
                        "\"by\":\"Cgs=\",\"d\":\"0000-01-01\",\"iv\":\"P1Y2M3DT4H5M6.5S\","
                        "\"a\":[\"a,b\",null,\"c\\\"d\"],\"j\":{\"x\":[1,2]},"
                        "\"tz\":\"10:00:00.5+02:00\"}" SOURCE("public", "types") TAIL("c"));
    sp_event_free(ev);
    sp_relation_unref(rel);
}

static void conversion_error_names_column_and_leaves_buffers(void **state)
{
    struct fixture *fx = *state;
    static const char *const bad[] = {"42", "paid", "abc", NULL, NULL};
    struct sp_event *ev = new_event(SP_OP_INSERT, fx->orders);
    ev->after = row(ev, bad);
    sp_buf_puts(&fx->key, "K");
    sp_buf_puts(&fx->value, "V");
    int rc = fx->fmt.ops->encode(&fx->fmt, ev, &fx->key, &fx->value, &fx->err);
    assert_int_equal(rc, SP_EINVAL);
    assert_int_equal(fx->err.code, SP_EINVAL);
    assert_string_equal(fx->err.msg, "column \"total\" of table \"public.orders\": invalid input "
                                     "syntax for type numeric: \"abc\"");
    assert_string_equal(fx->key.data, "K");
    assert_string_equal(fx->value.data, "V");
    sp_event_free(ev);

    /* an error in a key column fails before anything is written */
    static const char *const badkey[] = {"4x2", "paid", "1", NULL, NULL};
    ev = new_event(SP_OP_INSERT, fx->orders);
    ev->after = row(ev, badkey);
    rc = fx->fmt.ops->encode(&fx->fmt, ev, &fx->key, &fx->value, &fx->err);
    assert_int_equal(rc, SP_EINVAL);
    assert_string_equal(fx->err.msg, "column \"id\" of table \"public.orders\": invalid input "
                                     "syntax for type int4: \"4x2\"");
    assert_string_equal(fx->key.data, "K");
    assert_string_equal(fx->value.data, "V");
    sp_event_free(ev);
}

static void encode_appends_to_buffers(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_INSERT, fx->orders);
    ev->after = row(ev, order_42);
    sp_buf_puts(&fx->key, "K");
    sp_buf_puts(&fx->value, "V");
    encode_ok(fx, ev);
    assert_string_equal(fx->key.data, "K{\"id\":42}");
    assert_string_equal(fx->value.data, "V{\"before\":null,\"after\":" AFTER_42 SOURCE(
                                            "public", "orders") TAIL("c"));
    sp_event_free(ev);
}

static void transaction_boundaries_are_not_encoded(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_BEGIN, fx->orders);
    int rc = fx->fmt.ops->encode(&fx->fmt, ev, &fx->key, &fx->value, &fx->err);
    assert_int_equal(rc, SP_EINVAL);
    assert_int_equal(fx->value.len, 0);
    assert_int_equal(fx->key.len, 0);
    sp_event_free(ev);
}

static void missing_source_names_are_empty_strings(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(SP_OP_TRUNCATE, fx->orders);
    ev->source_name = NULL;
    ev->db = NULL;
    ev->commit_time_us = 0;
    encode_ok(fx, ev);
    assert_non_null(strstr(fx->value.data, "\"name\":\"\",\"db\":\"\","));
    assert_non_null(strstr(fx->value.data, "\"txId\":771,\"ts_ms\":0,"));
    sp_event_free(ev);
}

static void registered_name(void **state)
{
    (void)state;
    assert_string_equal(sp_format_json.name, "json");
    assert_non_null(sp_format_json.encode);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(insert_matches_design_example),
        T(snapshot_read_is_op_r),
        T(update_with_key_only_before),
        T(update_with_full_before),
        T(update_without_old_row_has_null_before_and_new_key),
        T(delete_with_key_only_before),
        T(delete_with_full_before),
        T(truncate_has_no_rows_and_no_key),
        T(message_has_prefix_content_and_empty_table),
        T(unchanged_toast_gets_placeholder),
        T(unchanged_toast_takes_value_from_full_old_row),
        T(table_without_key_leaves_key_empty),
        T(composite_key_in_column_order),
        T(null_binary_and_untyped_values),
        T(values_of_many_types),
        T(conversion_error_names_column_and_leaves_buffers),
        T(encode_appends_to_buffers),
        T(transaction_boundaries_are_not_encoded),
        T(missing_source_names_are_empty_strings),
        cmocka_unit_test(registered_name),
    };
#undef T
    return cmocka_run_group_tests_name("format json", tests, NULL, NULL);
}
