// SPDX-License-Identifier: Apache-2.0
/*
 * FabricEventStream resources run by siphon against PostgreSQL 15, the
 * Nakadi test server (tests/lib/nakadi_server.c) and the SQS test server
 * (tests/lib/sqs_server.c): the spec digest's resource as written (SQS dead
 * letters) and a resource with a data event stream and an audit stream
 * (Nakadi's default dead-letter event type), in one file of two documents,
 * credentials from the documented secret variables, outbox rows written
 * with business rows in the same transaction (a rolled-back transaction
 * delivers nothing), the JSONPath filter, a rejected event in the default
 * dead-letter event type, eids stable across a restart, and `siphon check`
 * printing the translation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "integration/cdc_helpers.h"
#include "lib/harness.h"
#include "lib/nakadi_server.h"
#include "lib/sqs_server.h"

#define WAIT_START_MS  60000
#define WAIT_EVENTS_MS 120000

#define BUSINESS_TYPE "my-important-business-events"
#define DEAD_QUEUE    "my-dead-letter-queue"
#define DATA_TYPE     "shop.order-changed"
#define AUDIT_TYPE    "shop.audit"
#define DEAD_TYPE     "shop.audit-dead-letter-queue"

struct fixture {
    struct sp_pg *pg;
    PGconn *conn;
    char *tmp;
    struct sp_nk_server *srv;
    struct sp_sqs_server *sqs;
    struct sp_proc *proc;
    char *cfg;
    char *log;
};

static int group_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    *state = fx;
    fx->tmp = sp_test_tmpdir("fes");
    struct sp_pg_opts opts = {.tag = "pg-fes", .extra_conf = NULL};
    fx->pg = sp_test_pg_start(&opts);
    fx->conn = sp_test_pg_connect(fx->pg);
    fx->srv = sp_nk_server_start();
    fx->sqs = sp_sqs_server_start("eu-central-1", "AKIDFESTEST", "fes-test-secret");
    fx->cfg = sp_test_asprintf("%s/fes.yaml", fx->tmp);
    fx->log = sp_test_asprintf("%s/siphon.log", fx->tmp);
    return 0;
}

static int group_teardown(void **state)
{
    struct fixture *fx = *state;
    if (fx == NULL) {
        return 0;
    }
    if (fx->proc != NULL) {
        sp_test_proc_signal(fx->proc, SIGKILL);
        sp_test_proc_free(fx->proc);
    }
    sp_nk_server_stop(fx->srv);
    sp_sqs_server_stop(fx->sqs);
    PQfinish(fx->conn);
    sp_test_pg_stop(fx->pg);
    sp_test_tmpdir_cleanup(fx->tmp);
    free(fx->cfg);
    free(fx->log);
    free(fx);
    return 0;
}

/*
 * The spec digest's resource exactly as written there, but for the
 * jdbcUrl's host, port, database and TLS parameters (the test server's);
 * then a second resource: a data event stream and an audit stream whose
 * dead letters go to the operator's default Nakadi event type.
 */
static void write_resources(struct fixture *fx)
{
    int port = sp_test_pg_port(fx->pg);
    sp_test_write_file(
        fx->cfg,
        "apiVersion: zalando.org/v1\n"
        "kind: FabricEventStream\n"
        "metadata:\n"
        "  name: my-app-streams\n"
        "spec:\n"
        "  applicationId: my-application\n"
        "  eventStreams:\n"
        "    - source:\n"
        "        type: PostgresLogicalReplication\n"
        "        schema: public                    # default \"public\"\n"
        "        table:\n"
        "          name: my_events_outbox\n"
        "          idColumn: id                    # default \"id\"\n"
        "        filter: \"[?(@.OldImage.Status.Id != @.NewImage.Status.Id)]\"   # optional, "
        "JSONPath\n"
        "        jdbcConnection:\n"
        "          jdbcUrl: \"jdbc:postgresql://127.0.0.1:%d/postgres?user=u&ssl=false\"\n"
        "          slotName: fes                   # operator prefix \"fes\"\n"
        "          publicationName: fes_pub        # optional\n"
        "          pluginType: pgoutput            # optional\n"
        "          databaseAuthentication:\n"
        "            type: DatabaseAuthenticationSecret\n"
        "            name: my-db-secret            # Kubernetes secret\n"
        "            userKey: username\n"
        "            passwordKey: password\n"
        "      flow:\n"
        "        type: PostgresWalToGenericNakadiEvent\n"
        "        payloadColumn: my_event_payload   # default \"payload\"\n"
        "      sink:\n"
        "        type: Nakadi                      # or SqsStandard, SqsFifo\n"
        "        eventType: my-important-business-events\n"
        "        maxBatchSize: 100                 # optional\n"
        "        queueName: my-queue               # SQS sinks\n"
        "      recovery:\n"
        "        type: DeadLetter                  # DeadLetter | Ignore | None\n"
        "        sink:\n"
        "          type: SqsStandard\n"
        "          queueName: my-dead-letter-queue\n"
        "---\n"
        "apiVersion: zalando.org/v1\n"
        "kind: FabricEventStream\n"
        "metadata:\n"
        "  name: shop\n"
        "spec:\n"
        "  applicationId: shop\n"
        "  eventStreams:\n"
        "    - source:\n"
        "        type: PostgresLogicalReplication\n"
        "        table: {name: order_events}\n"
        "        jdbcConnection: &conn\n"
        "          jdbcUrl: \"jdbc:postgresql://127.0.0.1:%d/postgres?user=u&ssl=false\"\n"
        "          slotName: fes\n"
        "          publicationName: fes_pub\n"
        "          databaseAuthentication:\n"
        "            type: DatabaseAuthenticationSecret\n"
        "            name: my-db-secret\n"
        "            userKey: username\n"
        "            passwordKey: password\n"
        "      flow:\n"
        "        type: PostgresWalToNakadiDataEvent\n"
        "      sink:\n"
        "        type: Nakadi\n"
        "        eventType: " DATA_TYPE "\n"
        "      recovery:\n"
        "        type: Ignore\n"
        "    - source:\n"
        "        type: PostgresLogicalReplication\n"
        "        table: {name: audit_outbox}\n"
        "        jdbcConnection: *conn\n"
        "      flow: {type: PostgresWalToGenericNakadiEvent}\n"
        "      sink: {type: Nakadi, eventType: " AUDIT_TYPE "}\n"
        "      recovery: {type: DeadLetter}\n",
        port, port);
}

static void start(struct fixture *fx)
{
    fx->proc = cdc_siphon_start(fx->cfg, fx->log);
    if (!cdc_wait_log(fx->log, "streaming from slot", 1, WAIT_START_MS)) {
        cdc_print_log(fx->log);
        fail_msg("siphon did not start streaming");
    }
}

static void stop(struct fixture *fx)
{
    assert_int_equal(cdc_siphon_stop(fx->proc, 60000, NULL), 0);
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
}

struct count_wait {
    struct fixture *fx;
    const char *type;
    size_t n;
};

static bool count_reached(void *ctx)
{
    struct count_wait *w = ctx;
    return sp_nk_server_count(w->fx->srv, w->type) >= w->n;
}

struct sqs_wait {
    struct fixture *fx;
    const char *queue;
    size_t n;
};

static bool sqs_reached(void *ctx)
{
    struct sqs_wait *w = ctx;
    return sp_sqs_server_count(w->fx->sqs, w->queue) >= w->n;
}

static void wait_count(struct fixture *fx, const char *type, size_t n)
{
    struct count_wait w = {fx, type, n};
    if (!sp_test_wait_until(count_reached, &w, WAIT_EVENTS_MS)) {
        cdc_print_log(fx->log);
        fail_msg("%s holds %zu events, expected %zu", type, sp_nk_server_count(fx->srv, type), n);
    }
}

/*
 * Writes outbox rows for orders from..to: a business row and its outbox row
 * (with a Status, so the filter passes it) and a data event row, in one
 * transaction per order.
 */
static void write_orders(struct fixture *fx, int from, int to)
{
    for (int i = from; i <= to; i++) {
        sp_test_sql(fx->conn,
                    "BEGIN;"
                    "INSERT INTO orders VALUES (%d, 'new');"
                    "INSERT INTO my_events_outbox (\"Status\", my_event_payload) VALUES "
                    "('{\"Id\": %d}', '{\"order_id\": %d, \"kind\": \"%s\"}');"
                    "INSERT INTO order_events (data_type, data_op, metadata, data) VALUES "
                    "('shop.order', 'C', NULL, '{\"id\": %d, \"state\": \"new\"}');"
                    "COMMIT",
                    i, i, i, i == 7 ? "poison" : "order-created", i);
    }
}

static void resources_run(void **state)
{
    struct fixture *fx = *state;
    sp_test_sql(fx->conn,
                "CREATE ROLE fes_user LOGIN REPLICATION PASSWORD 'pw';"
                "CREATE TABLE orders (id int PRIMARY KEY, state text);"
                "CREATE TABLE my_events_outbox (id bigserial PRIMARY KEY, \"Status\" jsonb,"
                " my_event_payload jsonb NOT NULL);"
                "CREATE TABLE order_events (id bigserial PRIMARY KEY, data_type text,"
                " data_op text, metadata jsonb, data jsonb);"
                "CREATE TABLE audit_outbox (id bigserial PRIMARY KEY, payload jsonb);"
                "ALTER TABLE audit_outbox OWNER TO fes_user;"
                "GRANT SELECT ON ALL TABLES IN SCHEMA public TO fes_user;"
                "ALTER TABLE my_events_outbox OWNER TO fes_user;"
                "ALTER TABLE order_events OWNER TO fes_user;"
                "GRANT CREATE ON DATABASE postgres TO fes_user");
    sp_nk_server_add_type(fx->srv, BUSINESS_TYPE, "business", 4, false, "order_id");
    sp_nk_server_add_type(fx->srv, DATA_TYPE, "data", 4, false, "data.id");
    /* Audit events are refused for good (403); their dead letters, in a business event type,
     * need metadata, which the sink adds. */
    sp_nk_server_add_type(fx->srv, AUDIT_TYPE, "business", 1, false, NULL);
    sp_nk_server_forbid(fx->srv, AUDIT_TYPE);
    sp_nk_server_add_type(fx->srv, DEAD_TYPE, "business", 1, false, NULL);
    sp_nk_server_reject_matching_in(fx->srv, BUSINESS_TYPE, "\"poison\"",
                                    "#/kind: poison is not allowed");
    sp_sqs_server_add_queue(fx->sqs, DEAD_QUEUE);
    write_resources(fx);
    setenv("SIPHON_NAKADI_URL", sp_nk_server_url(fx->srv), 1);
    setenv("AWS_REGION", "eu-central-1", 1);
    setenv("AWS_ACCESS_KEY_ID", "AKIDFESTEST", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "fes-test-secret", 1);
    setenv("AWS_ENDPOINT_URL_SQS", sp_sqs_server_url(fx->sqs), 1);
    setenv("SIPHON_SECRET_MY_DB_SECRET_USERNAME", "fes_user", 1);
    setenv("SIPHON_SECRET_MY_DB_SECRET_PASSWORD", "pw", 1);

    /* siphon check: the translation, with the connection hidden. */
    char *check_log = sp_test_asprintf("%s/check.log", fx->tmp);
    const char *argv[] = {sp_test_siphon_bin(), "check", "-c", fx->cfg, NULL};
    struct sp_proc *chk = sp_test_proc_start(argv, check_log, check_log);
    int st = sp_test_proc_wait(chk, 60000);
    sp_test_proc_free(chk);
    if (st != 0) {
        cdc_print_log(check_log);
    }
    assert_int_equal(st, 0);
    assert_int_equal(cdc_count_in_file(check_log, "FabricEventStream resources translated"), 1);
    assert_int_equal(cdc_count_in_file(check_log, "kind: fes_generic"), 2);
    assert_int_equal(cdc_count_in_file(check_log, "queue: " DEAD_QUEUE), 1);
    assert_int_equal(cdc_count_in_file(check_log, "kind: fes_data"), 1);
    assert_int_equal(cdc_count_in_file(check_log, "event_type: \"" DEAD_TYPE "\""), 1);
    assert_int_equal(cdc_count_in_file(check_log, "password"), 0);
    assert_int_equal(cdc_count_in_file(check_log, "connection: \"****\""), 1);
    assert_int_equal(cdc_count_in_file(check_log, "source: \"fes\""), 3);
    free(check_log);

    start(fx);
    /* One slot for both resources, read by the secret's user. */
    assert_true(sp_test_sql_poll_until(fx->conn, "fes_user", 10000,
                                       "SELECT string_agg(usename, ',') FROM pg_stat_replication"));
    write_orders(fx, 1, 20);
    /* SIGKILL once they are published, before the position is confirmed: replayed, same eids. */
    wait_count(fx, BUSINESS_TYPE, 19);
    sp_test_proc_signal(fx->proc, SIGKILL);
    sp_test_proc_wait(fx->proc, 30000);
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
    assert_true(cdc_wait_slot_inactive(fx->conn, "fes", 10000));
    start(fx);
    /* Rolled back: nothing. Without a Status: filtered out (null == null). */
    sp_test_sql(fx->conn, "BEGIN;"
                          "INSERT INTO orders VALUES (1000, 'lost');"
                          "INSERT INTO my_events_outbox (\"Status\", my_event_payload) VALUES "
                          "('{\"Id\": 1000}', '{\"order_id\": 1000, \"kind\": \"rolled-back\"}');"
                          "INSERT INTO order_events (data_type, data_op, data) VALUES "
                          "('shop.order', 'C', '{\"id\": 1000}');"
                          "ROLLBACK");
    sp_test_sql(fx->conn, "INSERT INTO my_events_outbox (my_event_payload) VALUES "
                          "('{\"order_id\": 2000, \"kind\": \"no-status\"}')");
    /* Cleanup of delivered rows and an update: not events. */
    sp_test_sql(fx->conn, "DELETE FROM my_events_outbox WHERE id <= 3;"
                          "UPDATE order_events SET data_op = 'U' WHERE id = 4");
    write_orders(fx, 21, 30);
    sp_test_sql(fx->conn, "INSERT INTO audit_outbox (payload) VALUES ('{\"audit\": 1}'),"
                          " ('{\"audit\": 2}'), ('{\"audit\": 3}')");
    wait_count(fx, BUSINESS_TYPE, 29);
    wait_count(fx, DEAD_TYPE, 3);
    struct sqs_wait sw = {fx, DEAD_QUEUE, 1};
    if (!sp_test_wait_until(sqs_reached, &sw, WAIT_EVENTS_MS)) {
        cdc_print_log(fx->log);
        fail_msg("no dead letter in the SQS queue");
    }
    wait_count(fx, DATA_TYPE, 30);
    uint64_t end = cdc_current_lsn(fx->conn);
    assert_true(cdc_wait_confirmed(fx->conn, "fes", end, WAIT_EVENTS_MS));
    stop(fx);

    /* Business events: the payloads with metadata; an order sent twice has the same eid. */
    struct sp_nk_event *ev = NULL;
    size_t n = sp_nk_server_events(fx->srv, BUSINESS_TYPE, &ev);
    assert_true(n >= 29);
    char *eids[31] = {0};
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        char *order = sp_test_json_get(ev[i].json, "order_id");
        char *kind = sp_test_json_get(ev[i].json, "kind");
        char *occurred = sp_test_json_get(ev[i].json, "metadata.occurred_at");
        int id = atoi(order);
        assert_true(id >= 1 && id <= 30 && id != 7);
        if (eids[id] == NULL) {
            eids[id] = strdup(ev[i].eid);
            distinct++;
        } else {
            assert_string_equal(eids[id], ev[i].eid);
        }
        assert_string_equal(kind, "order-created");
        assert_non_null(occurred);
        assert_int_equal((int)strlen(ev[i].eid), 36);
        free(order);
        free(kind);
        free(occurred);
    }
    fprintf(stderr, "fes: %zu business events published, %zu orders, %zu sent again\n", n, distinct,
            n - distinct);
    assert_int_equal(distinct, 29);
    for (int i = 0; i < 31; i++) {
        free(eids[i]);
    }
    sp_nk_events_free(ev, n);

    /* The rejected one, in the SQS dead-letter queue with Nakadi's detail. */
    struct sp_sqs_msg *msgs = NULL;
    size_t nm = sp_sqs_server_messages(fx->sqs, DEAD_QUEUE, &msgs);
    assert_true(nm >= 1);
    for (size_t i = 0; i < nm; i++) {
        char *err = sp_test_json_get(msgs[i].body, "error");
        char *payload = sp_test_json_get(msgs[i].body, "event.kind");
        char *stream = sp_test_json_get(msgs[i].body, "stream");
        assert_non_null(strstr(err, "poison is not allowed"));
        assert_string_equal(payload, "poison");
        assert_string_equal(stream, "my-app-streams.public.my_events_outbox");
        free(err);
        free(payload);
        free(stream);
    }
    sp_sqs_msgs_free(msgs, nm);

    /* The refused audit events, in the default dead-letter event type, with metadata. */
    n = sp_nk_server_events(fx->srv, DEAD_TYPE, &ev);
    assert_int_equal(n, 3);
    int audits = 0;
    for (size_t i = 0; i < n; i++) {
        char *audit = sp_test_json_get(ev[i].json, "event.audit");
        char *stream = sp_test_json_get(ev[i].json, "stream");
        char *occurred = sp_test_json_get(ev[i].json, "metadata.occurred_at");
        audits |= 1 << atoi(audit); /* different keys: any order */
        assert_string_equal(stream, "shop.public.audit_outbox");
        assert_non_null(occurred);
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(ev[i].eid, ev[j].eid);
        }
        free(audit);
        free(stream);
        free(occurred);
    }
    assert_int_equal(audits, 0xE);
    sp_nk_events_free(ev, n);

    /* Data events: data_op C, data_type from the row, the row's data; each row once per eid. */
    n = sp_nk_server_events(fx->srv, DATA_TYPE, &ev);
    assert_true(n >= 30);
    char *data_eids[31] = {0};
    size_t rows = 0;
    for (size_t i = 0; i < n; i++) {
        char *op = sp_test_json_get(ev[i].json, "data_op");
        char *type = sp_test_json_get(ev[i].json, "data_type");
        char *row_state = sp_test_json_get(ev[i].json, "data.state");
        char *id = sp_test_json_get(ev[i].json, "data.id");
        int k = atoi(id);
        assert_true(k >= 1 && k <= 30);
        if (data_eids[k] == NULL) {
            data_eids[k] = strdup(ev[i].eid);
            rows++;
        } else {
            assert_string_equal(data_eids[k], ev[i].eid);
        }
        assert_string_equal(op, "C");
        assert_string_equal(type, "shop.order");
        assert_string_equal(row_state, "new");
        free(op);
        free(type);
        free(row_state);
        free(id);
    }
    assert_int_equal(rows, 30);
    for (int i = 0; i < 31; i++) {
        free(data_eids[i]);
    }
    sp_nk_events_free(ev, n);
}

/* Errors in a resource stop the start with the resource's line. */
static void bad_resource_is_refused(void **state)
{
    struct fixture *fx = *state;
    char *bad = sp_test_asprintf("%s/bad.yaml", fx->tmp);
    char *bad_log = sp_test_asprintf("%s/bad.log", fx->tmp);
    sp_test_write_file(bad, "apiVersion: zalando.org/v1\n"
                            "kind: FabricEventStream\n"
                            "metadata: {name: x}\n"
                            "spec:\n"
                            "  applicationId: x\n"
                            "  eventStreams:\n"
                            "    - source:\n"
                            "        type: PostgresLogicalReplication\n"
                            "        table: {name: t}\n"
                            "        jdbcConnection: {jdbcUrl: \"jdbc:postgresql://h/db\", "
                            "slotName: s}\n"
                            "      flow: {type: PostgresWalToApiCallHomeEvent}\n"
                            "      sink: {type: Nakadi, eventType: e}\n");
    const char *argv[] = {sp_test_siphon_bin(), "run", "-c", bad, NULL};
    struct sp_proc *p = sp_test_proc_start(argv, bad_log, bad_log);
    assert_int_equal(sp_test_proc_wait(p, 30000), 2);
    sp_test_proc_free(p);
    assert_int_equal(cdc_count_in_file(bad_log, "bad.yaml:11:20: error: "
                                                "spec.eventStreams[0].flow.type "
                                                "\"PostgresWalToApiCallHomeEvent\" is not "
                                                "supported"),
                     1);
    free(bad);
    free(bad_log);
}

int main(void)
{
    sp_test_begin();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(resources_run),
        cmocka_unit_test(bad_resource_is_refused),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    return sp_test_finish(failed);
}
