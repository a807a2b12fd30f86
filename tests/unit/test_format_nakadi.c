// SPDX-License-Identifier: Apache-2.0
/*
 * The nakadi format (format/nakadi.c) and what it is built on: version 5
 * UUIDs (util/uuid.c, RFC 9562's example) and the JSON scanner
 * (util/json.c). Expected eids were computed independently with Python's
 * uuid.uuid5 in siphon's namespace.
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
#include "util/json.h"
#include "util/mem.h"
#include "util/uuid.h"

extern const struct sp_format_ops sp_format_nakadi;

#define COMMIT_US INT64_C(1763719200500000) /* 2025-11-21T10:00:00.500Z */
/* uuid5(ns, "orders/public.orders\n0/16E9168:3") */
#define EID_ROW "253c521f-409a-5a43-b1e0-d4449807a3ab"
#define META_ROW \
    "\"metadata\":{\"eid\":\"" EID_ROW "\",\"occurred_at\":\"2025-11-21T10:00:00.500Z\"}"

struct fixture {
    struct sp_typcache *tc;
    struct sp_relation *orders; /* id int4 (key), status text, total numeric, meta jsonb */
    struct sp_format fmt;
    struct sp_buf key;
    struct sp_buf value;
    struct sp_err err;
};

static int setup(void **state)
{
    static const struct {
        const char *name;
        uint32_t oid;
        bool key;
    } defs[] = {
        {"id", 23, true}, {"status", 25, false}, {"total", 1700, false}, {"meta", 3802, false}};
    struct fixture *fx = sp_xcalloc(1, sizeof(*fx));
    fx->tc = sp_typcache_new(NULL, NULL);
    struct sp_relation *rel = sp_xcalloc(1, sizeof(*rel));
    rel->oid = 16400;
    rel->schema = sp_xstrdup("public");
    rel->table = sp_xstrdup("orders");
    rel->replident = 'd';
    rel->ncols = 4;
    rel->cols = sp_xcalloc(4, sizeof(*rel->cols));
    rel->refs = 1;
    for (int i = 0; i < 4; i++) {
        struct sp_err err;
        rel->cols[i].name = sp_xstrdup(defs[i].name);
        rel->cols[i].type_oid = defs[i].oid;
        rel->cols[i].typmod = -1;
        rel->cols[i].type = sp_typcache_get(fx->tc, defs[i].oid, &err);
        rel->cols[i].key = defs[i].key;
    }
    fx->orders = rel;
    fx->fmt.ops = &sp_format_nakadi;
    sp_buf_init(&fx->key);
    sp_buf_init(&fx->value);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    sp_relation_unref(fx->orders);
    sp_typcache_free(fx->tc);
    sp_buf_fini(&fx->key);
    sp_buf_fini(&fx->value);
    free(fx);
    return 0;
}

static struct sp_event *new_event(struct fixture *fx, enum sp_op op)
{
    struct sp_event *ev = sp_event_new(op, 256);
    ev->rel = sp_relation_ref(fx->orders);
    ev->lsn = 24023128;
    ev->commit_lsn = 24023400;
    ev->commit_time_us = COMMIT_US;
    ev->seq = 3;
    ev->source_name = "orders";
    ev->db = "orders";
    return ev;
}

static struct sp_tuple *row(struct sp_event *ev, const char *const *vals)
{
    struct sp_tuple *t = sp_event_tuple(ev, ev->rel->ncols);
    for (int i = 0; i < ev->rel->ncols; i++) {
        if (vals[i] == NULL) {
            t->cols[i].kind = SP_DATUM_NULL;
            continue;
        }
        t->cols[i].kind = SP_DATUM_TEXT;
        t->cols[i].data = vals[i];
        t->cols[i].len = (uint32_t)strlen(vals[i]);
    }
    return t;
}

static const char *const order_42[] = {"42", "paid", "19.90", "{\"gift\": true}"};
static const char *const key_42[] = {"42", NULL, NULL, NULL};

static int encode(struct fixture *fx, struct sp_event *ev)
{
    sp_buf_reset(&fx->key);
    sp_buf_reset(&fx->value);
    sp_err_clear(&fx->err);
    return fx->fmt.ops->encode(&fx->fmt, ev, &fx->key, &fx->value, &fx->err);
}

static void uuid_v5_matches_rfc_example(void **state)
{
    (void)state;
    /* RFC 9562 appendix A.4: DNS namespace, "www.example.com". */
    static const uint8_t dns[16] = {0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1,
                                    0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8};
    char out[SP_UUID_STRLEN];
    assert_string_equal(sp_uuid_v5(dns, "www.example.com", 15, out),
                        "2ed6657d-e927-568b-95e1-2665a8aea6a2");
}

static void json_scanner_validates_and_walks(void **state)
{
    (void)state;
    const char *good = " {\"a\":[1,2.5e3,-0,true,null],\"b\":\"\\u00e9\\ud83d\\ude00\"} ";
    assert_true(sp_json_valid(good, strlen(good)));
    static const char *const bad[] = {"{\"a\":1,}", "[01]",      "{\"a\" 1}",   "\"\\ud800\"",
                                      "[1] [2]",    "\"a\x01\"", "{\"a\":tru}", "\"\xff\""};
    for (size_t i = 0; i < SP_ARRAY_LEN(bad); i++) {
        if (sp_json_valid(bad[i], strlen(bad[i]))) {
            fail_msg("accepted invalid JSON %s", bad[i]);
        }
    }
    const char *obj = "{\"x\":{\"y\":[1,{\"z\":\"w\"}]},\"m\\u0065ta\":\"q\\n\"}";
    struct sp_json_span v;
    struct sp_json_span o = {obj, strlen(obj)};
    assert_true(sp_json_member(o, "meta", &v));
    struct sp_buf b;
    sp_buf_init(&b);
    assert_int_equal(sp_json_str(v, &b), 0);
    assert_string_equal(b.data, "q\n");
    assert_true(sp_json_member(o, "x", &v));
    assert_int_equal(v.len, strlen("{\"y\":[1,{\"z\":\"w\"}]}"));
    assert_false(sp_json_member(o, "y", &v));
    sp_buf_fini(&b);
}

static void insert_is_a_data_change_event(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(fx, SP_OP_INSERT);
    ev->after = row(ev, order_42);
    assert_int_equal(encode(fx, ev), 0);
    assert_string_equal(fx->value.data,
                        "{\"data_type\":\"public.orders\",\"data_op\":\"C\"," META_ROW
                        ",\"data\":{\"id\":42,\"status\":\"paid\",\"total\":\"19.90\","
                        "\"meta\":{\"gift\":true}}}");
    assert_string_equal(fx->key.data, "{\"id\":42}");
    sp_event_free(ev);
}

static void ops_map_to_data_op(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(fx, SP_OP_UPDATE);
    ev->after = row(ev, order_42);
    assert_int_equal(encode(fx, ev), 0);
    assert_non_null(strstr(fx->value.data, "\"data_op\":\"U\""));
    sp_event_free(ev);

    ev = new_event(fx, SP_OP_READ);
    ev->after = row(ev, order_42);
    assert_int_equal(encode(fx, ev), 0);
    assert_non_null(strstr(fx->value.data, "\"data_op\":\"S\""));
    sp_event_free(ev);

    /* A delete carries the old key: data is the key columns. */
    ev = new_event(fx, SP_OP_DELETE);
    ev->before = row(ev, key_42);
    ev->before_key_only = true;
    assert_int_equal(encode(fx, ev), 0);
    assert_string_equal(fx->value.data,
                        "{\"data_type\":\"public.orders\",\"data_op\":\"D\"," META_ROW
                        ",\"data\":{\"id\":42}}");
    sp_event_free(ev);
}

static void eid_is_stable_and_depends_on_id_and_destination(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(fx, SP_OP_INSERT);
    ev->after = row(ev, order_42);
    assert_int_equal(encode(fx, ev), 0);
    char *first = sp_xstrdup(fx->value.data);
    assert_int_equal(encode(fx, ev), 0);
    assert_string_equal(first, fx->value.data);
    free(first);
    ev->dest = "order-events";
    assert_int_equal(encode(fx, ev), 0);
    assert_non_null(strstr(fx->value.data, "1c739aa1-b6d9-5f03-87c0-de47507d2d92"));
    ev->id_override = "evt-7";
    assert_int_equal(encode(fx, ev), 0);
    assert_non_null(strstr(fx->value.data, "08a350b5-2949-5c3f-bed1-666fced1f7d5"));
    ev->seq = 4; /* the id override wins over the position */
    assert_int_equal(encode(fx, ev), 0);
    assert_non_null(strstr(fx->value.data, "08a350b5-2949-5c3f-bed1-666fced1f7d5"));
    sp_event_free(ev);
}

static void payload_gets_metadata_first_and_keeps_the_rest(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(fx, SP_OP_INSERT);
    ev->after = row(ev, order_42);
    ev->dest = "order-events";
    ev->id_override = "evt-7";
    ev->key_override = "order-42";
    ev->key_override_len = 8;
    const char *pl =
        "{\"order\":{\"n\":1.50}, \"metadata\":{\"span_ctx\":{\"a\":\"b\"}},\"x\":[1]}";
    ev->payload = pl;
    ev->payload_len = (uint32_t)strlen(pl);
    assert_int_equal(encode(fx, ev), 0);
    assert_string_equal(fx->value.data,
                        "{\"metadata\":{\"eid\":\"08a350b5-2949-5c3f-bed1-666fced1f7d5\","
                        "\"occurred_at\":\"2025-11-21T10:00:00.500Z\",\"span_ctx\":{\"a\":\"b\"}},"
                        "\"order\":{\"n\":1.50},\"x\":[1]}");
    assert_string_equal(fx->key.data, "order-42");

    /* eid and occurred_at the payload has are kept. */
    pl = "{\"metadata\":{\"occurred_at\":\"2020-01-01T00:00:00Z\",\"eid\":\"x\"},\"a\":1}";
    ev->payload = pl;
    ev->payload_len = (uint32_t)strlen(pl);
    assert_int_equal(encode(fx, ev), 0);
    assert_string_equal(fx->value.data, pl);

    /* No metadata at all. */
    pl = "{}";
    ev->payload = pl;
    ev->payload_len = 2;
    assert_int_equal(encode(fx, ev), 0);
    assert_string_equal(fx->value.data,
                        "{\"metadata\":{\"eid\":\"08a350b5-2949-5c3f-bed1-666fced1f7d5\","
                        "\"occurred_at\":\"2025-11-21T10:00:00.500Z\"}}");
    sp_event_free(ev);
}

static void what_cannot_be_encoded_is_an_error(void **state)
{
    struct fixture *fx = *state;
    struct sp_event *ev = new_event(fx, SP_OP_INSERT);
    ev->after = row(ev, order_42);
    static const char *const bad[] = {"[1,2]", "{\"a\":1", "{\"metadata\":[]}", "\"s\""};
    for (size_t i = 0; i < SP_ARRAY_LEN(bad); i++) {
        ev->payload = bad[i];
        ev->payload_len = (uint32_t)strlen(bad[i]);
        assert_int_not_equal(encode(fx, ev), 0);
        assert_int_equal(fx->value.len, 0);
        assert_int_equal(fx->key.len, 0);
    }
    sp_event_free(ev);

    ev = new_event(fx, SP_OP_TRUNCATE);
    assert_int_not_equal(encode(fx, ev), 0);
    assert_non_null(strstr(fx->err.msg, "truncate of \"public.orders\""));
    sp_event_free(ev);

    ev = sp_event_new(SP_OP_MESSAGE, 64);
    ev->msg_prefix = "outbox";
    ev->msg_content = "{}";
    ev->msg_len = 2;
    assert_int_not_equal(encode(fx, ev), 0);
    assert_non_null(strstr(fx->err.msg, "outbox flow"));
    sp_event_free(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uuid_v5_matches_rfc_example),
        cmocka_unit_test(json_scanner_validates_and_walks),
        cmocka_unit_test(insert_is_a_data_change_event),
        cmocka_unit_test(ops_map_to_data_op),
        cmocka_unit_test(eid_is_stable_and_depends_on_id_and_destination),
        cmocka_unit_test(payload_gets_metadata_first_and_keeps_the_rest),
        cmocka_unit_test(what_cannot_be_encoded_is_an_error),
    };
    return cmocka_run_group_tests_name("format_nakadi", tests, setup, teardown);
}
