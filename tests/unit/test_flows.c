// SPDX-License-Identifier: Apache-2.0
/*
 * The flow chain and the select, mask, route and outbox flows on
 * hand-built events: what each passes, drops and changes, that the event
 * given to a chain is never changed (streams share it), what formats make of
 * the result, option errors at file:line:col, and that masked values and
 * outbox payloads never appear in error messages or dead-letter events.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "core/plugin.h"
#include "flow/flow.h"
#include "flow_events.h"

extern const struct sp_format_ops sp_format_json;
extern const struct sp_format_ops sp_format_debezium;

static const char *test_env(const char *name)
{
    if (strcmp(name, "SALT") == 0) {
        return "pepper";
    }
    return NULL;
}

/* Load a config whose only stream has the given flows; diagnostics into *diag (heap). */
static struct sp_config *load_flows(const char *flows, char **diag)
{
    char *yaml = sp_xasprintf("sources:\n"
                              "  db: {type: postgres, connection: \"dbname=x\"}\n"
                              "sinks:\n"
                              "  out: {type: stdout}\n"
                              "streams:\n"
                              "  - name: s\n"
                              "    source: db\n"
                              "    tables: [orders, outbox]\n"
                              "    sink: out\n"
                              "    flows:\n"
                              "%s",
                              flows);
    struct sp_config *cfg = NULL;
    struct sp_diag d;
    struct sp_buf b;
    sp_diag_init(&d);
    sp_buf_init(&b);
    sp_cfg_load_string("siphon.yaml", yaml, strlen(yaml), test_env, &cfg, &d);
    sp_diag_format(&d, &b);
    sp_diag_fini(&d);
    free(yaml);
    *diag = sp_buf_steal(&b);
    return cfg;
}

static struct sp_flows *chain_of(struct sp_config **cfg, const char *flows)
{
    char *diag = NULL;
    *cfg = load_flows(flows, &diag);
    if (*cfg == NULL) {
        fprintf(stderr, "%s", diag);
        free(diag);
        fail_msg("the flows did not load");
    }
    free(diag);
    assert_non_null((*cfg)->streams[0].chain);
    return (*cfg)->streams[0].chain;
}

static void expect_load_error(const char *flows, const char *expected)
{
    char *diag = NULL;
    struct sp_config *cfg = load_flows(flows, &diag);
    sp_cfg_free(cfg);
    if (cfg != NULL || strcmp(diag, expected) != 0) {
        fprintf(stderr, "---- got ----\n%s---- expected ----\n%s----\n", diag, expected);
        free(diag);
        fail();
    }
    free(diag);
}

static const char *col_text(const struct sp_event *ev, const struct sp_tuple *t, const char *name)
{
    int i = sp_event_col_index(ev, name);
    if (i < 0) {
        return "<no such column>";
    }
    return t->cols[i].kind == SP_DATUM_NULL ? NULL : t->cols[i].data;
}

/* The json format's value (and key) for ev, heap. */
static char *json_of(const struct sp_format_ops *ops, const struct sp_event *ev, char **key)
{
    struct sp_format fmt = {.ops = ops, .toast_placeholder = "__siphon_unavailable"};
    struct sp_buf k;
    struct sp_buf v;
    struct sp_err err;
    sp_buf_init(&k);
    sp_buf_init(&v);
    sp_err_clear(&err);
    assert_int_equal(ops->encode(&fmt, ev, &k, &v, &err), 0);
    if (key != NULL) {
        *key = sp_buf_steal(&k);
    }
    sp_buf_fini(&k);
    char *s = sp_buf_steal(&v);
    return s != NULL ? s : sp_xstrdup("");
}

static void select_include_and_exclude_keep_keys(void **state)
{
    (void)state;
    struct sp_config *cfg;
    struct sp_flows *fs = chain_of(&cfg, "      - select:\n"
                                         "          orders: {include: [status, total]}\n"
                                         "          \"*\": {exclude: [email, id]}\n");
    struct sp_relation *orders = fe_rel_named("public", "orders");
    struct sp_relation *other = fe_rel_named("public", "customers");
    struct sp_event *ev = fe_event(orders, SP_OP_INSERT, NULL, FE_ROW("42", "paid", "19.90"));
    const struct sp_event *failed;
    struct sp_err err;
    assert_int_equal(sp_flows_apply(fs, ev, &failed, &err), 1);
    const struct sp_event *out = sp_flows_result(fs, 0);
    assert_ptr_not_equal(out, ev);
    assert_int_equal(out->rel->ncols, 3); /* id (key) + status + total */
    assert_string_equal(out->rel->cols[0].name, "id");
    assert_string_equal(out->rel->cols[1].name, "status");
    assert_string_equal(out->rel->cols[2].name, "total");
    assert_string_equal(col_text(out, out->after, "total"), "19.90");
    char *json = json_of(&sp_format_json, out, NULL);
    assert_non_null(strstr(json, "\"after\":{\"id\":42,\"status\":\"paid\",\"total\":\"19.90\"}"));
    free(json);
    /* the shared event is untouched */
    assert_int_equal(ev->rel->ncols, C_NCOLS);
    sp_flows_done(fs);

    /* "*" applies to other tables; the key column "id" stays although excluded */
    struct sp_event *ev2 = fe_event(other, SP_OP_INSERT, NULL, FE_ROW("7", "x", "1"));
    assert_int_equal(sp_flows_apply(fs, ev2, &failed, &err), 1);
    out = sp_flows_result(fs, 0);
    assert_int_equal(out->rel->ncols, C_NCOLS - 1);
    assert_int_equal(sp_event_col_index(out, "email"), -1);
    assert_int_not_equal(sp_event_col_index(out, "id"), -1);
    sp_flows_done(fs);
    sp_event_free(ev);
    sp_event_free(ev2);
    sp_relation_unref(orders);
    sp_relation_unref(other);
    sp_cfg_free(cfg);
}

static void mask_replaces_hashes_and_truncates(void **state)
{
    (void)state;
    struct sp_config *cfg;
    struct sp_flows *fs = chain_of(&cfg, "      - mask:\n"
                                         "          public.orders:\n"
                                         "            email: {hash: sha256, salt: \"${SALT}\"}\n"
                                         "            status: {replace: 6}\n"
                                         "            total: {truncate: 2}\n"
                                         "            meta: {replace: 3}\n");
    struct sp_relation *rel = fe_rel_named("public", "orders");
    struct sp_event *ev = fe_event(rel, SP_OP_UPDATE, FE_ROW("42", "new", "5.25"),
                                   FE_ROW("42", "shipped-secretly", "19.90"));
    const struct sp_event *failed;
    struct sp_err err;
    assert_int_equal(sp_flows_apply(fs, ev, &failed, &err), 1);
    const struct sp_event *out = sp_flows_result(fs, 0);
    /* sha256("pepper" + "alice@example.com") */
    assert_string_equal(col_text(out, out->after, "email"),
                        "8b8d9adc4875c0dca816e3e17b7ac87b45e40945b731fa02e3b42bf101589e21");
    assert_string_equal(col_text(out, out->before, "email"),
                        "8b8d9adc4875c0dca816e3e17b7ac87b45e40945b731fa02e3b42bf101589e21");
    assert_string_equal(col_text(out, out->after, "status"), "******");
    assert_string_equal(col_text(out, out->before, "status"), "******");
    assert_string_equal(col_text(out, out->after, "total"), "19");
    assert_string_equal(col_text(out, out->before, "total"), "5.");
    /* masked columns are text now: valid JSON strings, in both formats */
    char *json = json_of(&sp_format_json, out, NULL);
    assert_non_null(strstr(json, "\"total\":\"19\""));
    assert_non_null(strstr(json, "\"meta\":\"***\""));
    assert_null(strstr(json, "alice"));
    assert_null(strstr(json, "secretly"));
    assert_null(strstr(json, "gift"));
    free(json);
    json = json_of(&sp_format_debezium, out, NULL);
    assert_null(strstr(json, "alice"));
    assert_non_null(strstr(json, "\"status\":\"******\""));
    free(json);
    /* the shared event is untouched */
    assert_string_equal(col_text(ev, ev->after, "email"), "alice@example.com");
    sp_flows_done(fs);
    sp_event_free(ev);
    sp_relation_unref(rel);
    sp_cfg_free(cfg);
}

static void a_failing_flow_after_a_mask_dead_letters_the_masked_event(void **state)
{
    (void)state;
    struct sp_config *cfg;
    /* the filter fails (no such column) before the mask ran: the chain masks the dead letter */
    struct sp_flows *fs = chain_of(&cfg, "      - filter: \"after.nosuch == 1\"\n"
                                         "      - mask:\n"
                                         "          orders: {email: {replace: 4}}\n");
    struct sp_relation *rel = fe_rel_named("public", "orders");
    struct sp_event *ev = fe_event(rel, SP_OP_INSERT, NULL, FE_ROW("42", "paid", "1"));
    const struct sp_event *failed = NULL;
    struct sp_err err;
    sp_err_clear(&err);
    assert_true(sp_flows_apply(fs, ev, &failed, &err) < 0);
    assert_non_null(strstr(err.msg, "flow #1 (filter)"));
    assert_non_null(strstr(err.msg, "has no column \"nosuch\""));
    assert_non_null(failed);
    assert_string_equal(col_text(failed, failed->after, "email"), "****");
    assert_string_equal(col_text(ev, ev->after, "email"), "alice@example.com");
    sp_flows_done(fs);
    sp_event_free(ev);
    sp_relation_unref(rel);
    sp_cfg_free(cfg);
}

static void route_sets_destination_key_and_type(void **state)
{
    (void)state;
    struct sp_config *cfg;
    struct sp_flows *fs =
        chain_of(&cfg, "      - filter: \"op != 'd'\"\n"
                       "      - route:\n"
                       "          destination: \"shop.{source.table}.{after.status}\"\n"
                       "          key: \"{after.id}\"\n"
                       "          event_type: \"order-{op}{{x}}\"\n");
    struct sp_relation *rel = fe_rel_named("public", "orders");
    struct sp_event *ev = fe_event(rel, SP_OP_INSERT, NULL, FE_ROW("42", "paid", "1"));
    struct sp_event *del = fe_event(rel, SP_OP_DELETE, FE_ROW("42", "paid", "1"), NULL);
    const struct sp_event *failed;
    struct sp_err err;
    assert_int_equal(sp_flows_apply(fs, ev, &failed, &err), 1);
    const struct sp_event *out = sp_flows_result(fs, 0);
    assert_string_equal(out->dest, "shop.orders.paid");
    assert_int_equal(out->key_override_len, 2);
    assert_memory_equal(out->key_override, "42", 2);
    assert_string_equal(out->event_type, "order-c{x}");
    assert_null(ev->dest);
    char *key = NULL;
    char *json = json_of(&sp_format_json, out, &key);
    assert_string_equal(key, "\"42\"");
    assert_non_null(strstr(json, "\"after\":{\"id\":42"));
    free(key);
    free(json);
    sp_flows_done(fs);
    assert_int_equal(sp_flows_apply(fs, del, &failed, &err), 0); /* filtered out */
    sp_flows_done(fs);
    /* a null placeholder is an event error, not an empty name */
    static const char *const nulls[C_NCOLS] = {"43"};
    struct sp_event *nul = fe_event(rel, SP_OP_INSERT, NULL, nulls);
    sp_err_clear(&err);
    assert_true(sp_flows_apply(fs, nul, &failed, &err) < 0);
    assert_non_null(strstr(err.msg, "{after.status} is null"));
    sp_flows_done(fs);
    sp_event_free(ev);
    sp_event_free(del);
    sp_event_free(nul);
    sp_relation_unref(rel);
    sp_cfg_free(cfg);
}

/* An outbox table with Debezium's columns. */
static struct sp_relation *outbox_rel(void)
{
    static const struct {
        const char *name;
        uint32_t oid;
    } cols[] = {
        {"id", 2950}, {"aggregatetype", 25}, {"aggregateid", 25}, {"type", 25}, {"payload", 3802}};
    struct sp_relation *rel = sp_xcalloc(1, sizeof(*rel));
    rel->oid = 16400;
    rel->version = 1;
    rel->schema = sp_xstrdup("public");
    rel->table = sp_xstrdup("outbox");
    rel->ncols = 5;
    rel->cols = sp_xcalloc(5, sizeof(*rel->cols));
    for (int i = 0; i < 5; i++) {
        rel->cols[i].name = sp_xstrdup(cols[i].name);
        rel->cols[i].type_oid = cols[i].oid;
        rel->cols[i].type = sp_type_builtin(cols[i].oid);
        rel->cols[i].key = i == 0;
    }
    rel->refs = 1;
    return rel;
}

static void outbox_debezium_router(void **state)
{
    (void)state;
    struct sp_config *cfg;
    struct sp_flows *fs = chain_of(&cfg, "      - outbox: {kind: debezium, table: outbox}\n");
    struct sp_relation *rel = outbox_rel();
    const char *row[] = {"b1d4f3c2-0000-4000-8000-000000000001", "Order", "order-42",
                         "OrderCreated", "{\"id\": 42,  \"total\": \"19.90\"}"};
    struct sp_event *ins = fe_event(rel, SP_OP_INSERT, NULL, NULL);
    ins->after = fe_tuple(ins, 5, row);
    const struct sp_event *failed;
    struct sp_err err;
    assert_int_equal(sp_flows_apply(fs, ins, &failed, &err), 1);
    const struct sp_event *out = sp_flows_result(fs, 0);
    assert_string_equal(out->dest, "outbox.event.Order");
    assert_memory_equal(out->key_override, "order-42", 8);
    assert_string_equal(out->id_override, "b1d4f3c2-0000-4000-8000-000000000001");
    assert_string_equal(out->event_type, "OrderCreated");
    assert_string_equal(out->payload, "{\"id\":42,\"total\":\"19.90\"}");
    char *key = NULL;
    char *json = json_of(&sp_format_json, out, &key);
    assert_string_equal(json, "{\"id\":42,\"total\":\"19.90\"}");
    assert_string_equal(key, "\"order-42\"");
    free(key);
    free(json);
    json = json_of(&sp_format_debezium, out, NULL);
    assert_string_equal(json, "{\"id\":42,\"total\":\"19.90\"}");
    free(json);
    sp_flows_done(fs);

    /* deletes (a cleanup job) and updates of outbox rows are dropped */
    struct sp_event *del = fe_event(rel, SP_OP_DELETE, NULL, NULL);
    del->before = fe_tuple(del, 5, row);
    assert_int_equal(sp_flows_apply(fs, del, &failed, &err), 0);
    sp_flows_done(fs);
    /* other tables pass unchanged */
    struct sp_relation *orders = fe_rel_named("public", "orders");
    struct sp_event *other = fe_event(orders, SP_OP_INSERT, NULL, FE_ROW("1", "a", "1"));
    assert_int_equal(sp_flows_apply(fs, other, &failed, &err), 1);
    assert_ptr_equal(sp_flows_result(fs, 0), other);
    sp_flows_done(fs);
    /* a payload that is not JSON is an event error that does not show it */
    const char *bad[] = {"b1d4f3c2-0000-4000-8000-000000000002", "Order", "order-42", "X",
                         "{secret-stuff"};
    struct sp_event *badev = fe_event(rel, SP_OP_INSERT, NULL, NULL);
    badev->after = fe_tuple(badev, 5, bad);
    sp_err_clear(&err);
    assert_true(sp_flows_apply(fs, badev, &failed, &err) < 0);
    assert_non_null(strstr(err.msg, "is not valid JSON"));
    assert_null(strstr(err.msg, "secret"));
    sp_flows_done(fs);
    sp_event_free(ins);
    sp_event_free(del);
    sp_event_free(other);
    sp_event_free(badev);
    sp_relation_unref(rel);
    sp_relation_unref(orders);
    sp_cfg_free(cfg);
}

static void outbox_fes_kinds(void **state)
{
    (void)state;
    struct sp_config *cfg;
    struct sp_flows *fs =
        chain_of(&cfg, "      - outbox: {kind: fes_generic, payload_column: aggregatetype}\n");
    struct sp_relation *rel = outbox_rel();
    const char *row[] = {"b1d4f3c2-0000-4000-8000-000000000001", "{\"order\": 42}", "x", "y",
                         "null"};
    struct sp_event *ins = fe_event(rel, SP_OP_INSERT, NULL, NULL);
    ins->after = fe_tuple(ins, 5, row);
    const struct sp_event *failed;
    struct sp_err err;
    assert_int_equal(sp_flows_apply(fs, ins, &failed, &err), 1);
    /* a text column holding JSON: validated and written on one line */
    assert_string_equal(sp_flows_result(fs, 0)->payload, "{\"order\":42}");
    assert_null(sp_flows_result(fs, 0)->dest);
    sp_flows_done(fs);
    sp_cfg_free(cfg);

    /* data events: data_type, data_op, metadata, data */
    fs = chain_of(&cfg, "      - outbox: {kind: fes_data}\n");
    struct sp_relation *drel = outbox_rel();
    const char *names[] = {"data_type", "data_op", "metadata", "data"};
    const uint32_t oids[] = {25, 25, 3802, 3802};
    for (int i = 0; i < 4; i++) {
        free(drel->cols[i + 1].name);
        drel->cols[i + 1].name = sp_xstrdup(names[i]);
        drel->cols[i + 1].type = sp_type_builtin(oids[i]);
    }
    const char *drow[] = {"1", "shop.order", "U", NULL, "{\"id\": 42}"};
    struct sp_event *dev = fe_event(drel, SP_OP_INSERT, NULL, NULL);
    dev->after = fe_tuple(dev, 5, drow);
    assert_int_equal(sp_flows_apply(fs, dev, &failed, &err), 1);
    assert_string_equal(sp_flows_result(fs, 0)->payload,
                        "{\"data_type\":\"shop.order\",\"data_op\":\"U\",\"metadata\":{},"
                        "\"data\":{\"id\":42}}");
    assert_string_equal(sp_flows_result(fs, 0)->event_type, "shop.order");
    sp_flows_done(fs);
    const char *badop[] = {"2", "shop.order", "X", NULL, "{}"};
    struct sp_event *bev = fe_event(drel, SP_OP_INSERT, NULL, NULL);
    bev->after = fe_tuple(bev, 5, badop);
    sp_err_clear(&err);
    assert_true(sp_flows_apply(fs, bev, &failed, &err) < 0);
    assert_non_null(strstr(err.msg, "data_op\" must be C, U, D or S"));
    sp_flows_done(fs);
    sp_event_free(ins);
    sp_event_free(dev);
    sp_event_free(bev);
    sp_relation_unref(rel);
    sp_relation_unref(drel);
    sp_cfg_free(cfg);
}

static void outbox_logical_messages(void **state)
{
    (void)state;
    struct sp_config *cfg;
    struct sp_flows *fs = chain_of(&cfg, "      - outbox:\n"
                                         "          kind: message\n"
                                         "          prefixes: [orders, payments]\n"
                                         "          destination: \"events.{message.prefix}\"\n");
    struct sp_event *msg = fe_message("orders", "{\"type\": \"OrderPaid\", \"id\": 42}", true);
    const struct sp_event *failed;
    struct sp_err err;
    assert_int_equal(sp_flows_apply(fs, msg, &failed, &err), 1);
    const struct sp_event *out = sp_flows_result(fs, 0);
    assert_string_equal(out->payload, "{\"type\":\"OrderPaid\",\"id\":42}");
    assert_string_equal(out->dest, "events.orders");
    assert_string_equal(out->event_type, "orders");
    sp_flows_done(fs);
    /* other prefixes pass unchanged */
    struct sp_event *other = fe_message("audit", "not json", true);
    assert_int_equal(sp_flows_apply(fs, other, &failed, &err), 1);
    assert_ptr_equal(sp_flows_result(fs, 0), other);
    sp_flows_done(fs);
    /* non-transactional messages would survive a rollback: an event error */
    struct sp_event *nt = fe_message("payments", "{}", false);
    sp_err_clear(&err);
    assert_true(sp_flows_apply(fs, nt, &failed, &err) < 0);
    assert_non_null(strstr(err.msg, "is not transactional"));
    sp_flows_done(fs);
    struct sp_event *bad = fe_message("payments", "card=4111", true);
    sp_err_clear(&err);
    assert_true(sp_flows_apply(fs, bad, &failed, &err) < 0);
    assert_null(strstr(err.msg, "4111"));
    sp_flows_done(fs);
    sp_event_free(msg);
    sp_event_free(other);
    sp_event_free(nt);
    sp_event_free(bad);
    sp_cfg_free(cfg);
}

static void transaction_metadata_blocks_and_boundaries(void **state)
{
    (void)state;
    struct sp_config *cfg;
    struct sp_flows *fs =
        chain_of(&cfg, "      - filter: \"op != 'd'\"\n"
                       "      - transaction: {destination: \"tx.{source.db}\"}\n");
    struct sp_relation *orders = fe_rel_named("public", "orders");
    struct sp_relation *items = fe_rel_named("public", "items");
    struct sp_event *a = fe_event(orders, SP_OP_INSERT, NULL, FE_ROW("1", "a", "1"));
    struct sp_event *b = fe_event(items, SP_OP_INSERT, NULL, FE_ROW("2", "b", "2"));
    struct sp_event *d = fe_event(orders, SP_OP_DELETE, FE_ROW("1", "a", "1"), NULL);
    struct sp_event *c = fe_event(orders, SP_OP_UPDATE, NULL, FE_ROW("1", "c", "3"));
    b->seq = 4;
    c->seq = 6;
    const struct sp_event *failed;
    struct sp_err err;
    sp_err_clear(&err);
    /* the first event: BEGIN, then the event with its block */
    assert_int_equal(sp_flows_apply(fs, a, &failed, &err), 2);
    const struct sp_event *begin = sp_flows_result(fs, 0);
    assert_string_equal(begin->payload, "{\"status\":\"BEGIN\",\"id\":\"771:24025856\","
                                        "\"ts_ms\":1763719200500,\"event_count\":null,"
                                        "\"data_collections\":null}");
    assert_string_equal(begin->dest, "tx.shop");
    assert_string_equal(begin->id_override, "771:24025856:BEGIN");
    const struct sp_event *ea = sp_flows_result(fs, 1);
    assert_null(ea->id_override); /* the event keeps its own id */
    assert_string_equal(ea->tx_id, "771:24025856");
    assert_int_equal(ea->tx_total_order, 1);
    assert_int_equal(ea->tx_collection_order, 1);
    char *json = json_of(&sp_format_debezium, ea, NULL);
    assert_non_null(strstr(json, "\"transaction\":{\"id\":\"771:24025856\",\"total_order\":1,"
                                 "\"data_collection_order\":1}}"));
    free(json);
    sp_flows_done(fs);
    assert_int_equal(sp_flows_apply(fs, b, &failed, &err), 1);
    assert_int_equal(sp_flows_result(fs, 0)->tx_total_order, 2);
    assert_int_equal(sp_flows_result(fs, 0)->tx_collection_order, 1);
    sp_flows_done(fs);
    assert_int_equal(sp_flows_apply(fs, d, &failed, &err), 0); /* filtered: not counted */
    sp_flows_done(fs);
    assert_int_equal(sp_flows_apply(fs, c, &failed, &err), 1);
    const struct sp_event *ec = sp_flows_result(fs, 0);
    assert_int_equal(ec->tx_total_order, 3);
    assert_int_equal(ec->tx_collection_order, 2);
    json = json_of(&sp_format_json, ec, NULL);
    assert_non_null(strstr(json, "\"transaction\":{\"id\":\"771:24025856\",\"total_order\":3,"
                                 "\"data_collection_order\":2}}"));
    free(json);
    sp_flows_done(fs);
    /* the commit: END with the counts per table */
    struct sp_event *commit = sp_event_new(SP_OP_COMMIT, 0);
    commit->commit_lsn = a->commit_lsn;
    commit->commit_time_us = a->commit_time_us;
    assert_int_equal(sp_flows_commit(fs, commit, &err), 1);
    assert_string_equal(sp_flows_result(fs, 0)->payload,
                        "{\"status\":\"END\",\"id\":\"771:24025856\",\"ts_ms\":1763719200500,"
                        "\"event_count\":3,\"data_collections\":[{\"data_collection\":"
                        "\"public.orders\",\"event_count\":2},{\"data_collection\":"
                        "\"public.items\",\"event_count\":1}]}");
    sp_flows_done(fs);
    /* a transaction with nothing for the stream has no BEGIN/END */
    assert_int_equal(sp_flows_commit(fs, commit, &err), 0);
    sp_flows_done(fs);
    sp_event_free(commit);
    sp_event_free(a);
    sp_event_free(b);
    sp_event_free(c);
    sp_event_free(d);
    sp_relation_unref(orders);
    sp_relation_unref(items);
    sp_cfg_free(cfg);
}

static void option_errors_are_located(void **state)
{
    (void)state;
    expect_load_error("      - outbox: {kind: debezum}\n",
                      "siphon.yaml:11:24: error: stream \"s\": flow \"outbox\": invalid value "
                      "\"debezum\" for option \"kind\" (allowed values: fes_generic, fes_data, "
                      "debezium, message)\n"
                      "   11 |       - outbox: {kind: debezum}\n"
                      "      |                        ^~~~~~~\n"
                      "  hint: did you mean \"debezium\"?\n");
    expect_load_error("      - route: {destination: \"a.{after.x\"}\n",
                      "siphon.yaml:11:33: error: stream \"s\": flow \"route\": destination: "
                      "unterminated \"{\" in template\n"
                      "   11 |       - route: {destination: \"a.{after.x\"}\n"
                      "      |                                 ^\n"
                      "  hint: close the placeholder, e.g. {after.tenant_id}; \"{{\" is a "
                      "literal brace\n");
    expect_load_error("      - route: {key: \"{aftr.id}\"}\n",
                      "siphon.yaml:11:24: error: stream \"s\": flow \"route\": key: unknown "
                      "name \"aftr\"\n"
                      "   11 |       - route: {key: \"{aftr.id}\"}\n"
                      "      |                        ^\n"
                      "  hint: did you mean \"after\"?\n");
    expect_load_error("      - mask: {orders: {email: {hash: sha256}}}\n",
                      "siphon.yaml:11:32: error: stream \"s\": flow \"mask\", column \"email\" of "
                      "\"orders\": a hash needs a salt\n"
                      "   11 |       - mask: {orders: {email: {hash: sha256}}}\n"
                      "      |                                ^~~~~~~~~~~~~~\n"
                      "  hint: an unsalted hash of e-mail addresses or phone numbers is reversed "
                      "by hashing candidates; set salt: \"${file:/run/secrets/mask_salt}\"\n");
    expect_load_error("      - select: {orders: {inclde: [a]}}\n",
                      "siphon.yaml:11:27: error: stream \"s\": flow \"select\", table \"orders\": "
                      "unknown option \"inclde\"\n"
                      "   11 |       - select: {orders: {inclde: [a]}}\n"
                      "      |                           ^~~~~~\n"
                      "  hint: did you mean \"include\"?\n");
    expect_load_error(
        "      - filter: \"op == 'u'\"\n"
        "        route: {key: x}\n",
        "siphon.yaml:11:9: error: stream \"s\": each flow must be a mapping with "
        "one key, the flow's name, not several keys\n"
        "   11 |       - filter: \"op == 'u'\"\n"
        "      |         ^\n"
        "  hint: write e.g. \"- filter: \\\"op == 'u'\\\"\" or \"- mask: {...}\", one "
        "flow per list item\n");
}

static void script_errors_are_located(void **state)
{
    (void)state;
    expect_load_error("      - script: {}\n",
                      "siphon.yaml:11:17: error: stream \"s\": flow \"script\" needs file or "
                      "inline\n"
                      "   11 |       - script: {}\n"
                      "      |                 ^~\n"
                      "  hint: file: orders.lua (next to the configuration file), or inline: | "
                      "followed by the Lua source\n");
    /* a syntax error in inline source is at the line of the configuration file */
    expect_load_error("      - script:\n"
                      "          inline: |\n"
                      "            function transform(e)\n"
                      "              return e +\n"
                      "            end\n",
                      "siphon.yaml:15:13: error: stream \"s\": flow \"script\": unexpected "
                      "symbol near 'end'\n"
                      "   15 |             end\n"
                      "      |             ^\n");
    expect_load_error("      - script: {inline: \"x = 1\", function: go}\n",
                      "siphon.yaml:11:26: error: stream \"s\": flow \"script\": script "
                      "siphon.yaml: no function \"go\" (it is nil)\n"
                      "   11 |       - script: {inline: \"x = 1\", function: go}\n"
                      "      |                          ^~~~~~~\n"
                      "  hint: define it as a global: function go(event) ... return event end\n");
    expect_load_error("      - script: {file: /nonexistent/x.lua, budget: 10}\n",
                      "siphon.yaml:11:52: error: stream \"s\": flow \"script\": option "
                      "\"budget\" must be between 1000 and 2147483647, not \"10\"\n"
                      "   11 |       - script: {file: /nonexistent/x.lua, budget: 10}\n"
                      "      |                                                    ^~\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(select_include_and_exclude_keep_keys),
        cmocka_unit_test(mask_replaces_hashes_and_truncates),
        cmocka_unit_test(a_failing_flow_after_a_mask_dead_letters_the_masked_event),
        cmocka_unit_test(route_sets_destination_key_and_type),
        cmocka_unit_test(outbox_debezium_router),
        cmocka_unit_test(outbox_fes_kinds),
        cmocka_unit_test(outbox_logical_messages),
        cmocka_unit_test(transaction_metadata_blocks_and_boundaries),
        cmocka_unit_test(option_errors_are_located),
        cmocka_unit_test(script_errors_are_located),
    };
    return cmocka_run_group_tests_name("flows", tests, NULL, NULL);
}
