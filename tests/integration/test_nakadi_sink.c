// SPDX-License-Identifier: Apache-2.0
/*
 * The nakadi sink driven by the real delivery runtime (core/delivery.c)
 * with hand-made records, against the Nakadi test server, for what a
 * PostgreSQL stream cannot produce without flows: a destination set on the
 * record overrides the event_type template, events are grouped by event
 * type with their order kept, business events keep their own compaction
 * key, a composite key becomes the compaction key's JSON text, an event
 * over max_event_bytes is rejected without being sent, and a batch still
 * being retried when delivery stops is given back as retriable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "config/diag.h"
#include "core/delivery.h"
#include "core/plugin.h"
#include "core/sinkconf.h"
#include "lib/harness.h"
#include "lib/nakadi_server.h"
#include "util/hash.h"

struct run {
    struct sp_nk_server *srv;
    struct sp_config *cfg;
    struct sp_sink sk;
    struct sp_delivery *dl;
    pthread_mutex_t mu;
    struct sp_batch *done; /* reported batches, released by the test thread */
    size_t acked;
    size_t rejected;
    size_t given_back;
    char last_err[512];
};

static void on_done(void *ctx, struct sp_batch *b)
{
    struct run *rn = ctx;
    pthread_mutex_lock(&rn->mu);
    for (struct sp_rec *r = b->head; r != NULL; r = r->next) {
        if (b->rc != 0) {
            rn->given_back++;
        } else if (r->err != NULL) {
            rn->rejected++;
            snprintf(rn->last_err, sizeof(rn->last_err), "%s", r->err->msg);
        } else {
            rn->acked++;
        }
    }
    if (b->rc != 0) {
        snprintf(rn->last_err, sizeof(rn->last_err), "%.400s%s", b->err.msg,
                 b->err.retriable ? " (retriable)" : "");
    }
    b->next = rn->done;
    rn->done = b;
    pthread_mutex_unlock(&rn->mu);
}

static void free_rec(void *ctx, struct sp_rec *r)
{
    (void)ctx;
    free(r->err);
    free((void *)r->value);
    free((void *)r->key);
    free(r);
}

/* Releases reported batches and frees their records. */
static void release_done(struct run *rn)
{
    pthread_mutex_lock(&rn->mu);
    struct sp_batch *b = rn->done;
    rn->done = NULL;
    pthread_mutex_unlock(&rn->mu);
    while (b != NULL) {
        struct sp_batch *next = b->next;
        struct sp_rec *r = b->head;
        while (r != NULL) {
            struct sp_rec *rnext = r->next;
            free_rec(NULL, r);
            r = rnext;
        }
        sp_delivery_release(rn->dl, b);
        b = next;
    }
}

static void run_start(struct run *rn, const char *sink_opts)
{
    memset(rn, 0, sizeof(*rn));
    pthread_mutex_init(&rn->mu, NULL);
    rn->srv = sp_nk_server_start();
    char *yaml = sp_test_asprintf("sources:\n"
                                  "  db:\n"
                                  "    type: postgres\n"
                                  "    connection: \"host=127.0.0.1\"\n"
                                  "    slot: s\n"
                                  "    publication: p\n"
                                  "sinks:\n"
                                  "  bus:\n"
                                  "    type: nakadi\n"
                                  "    url: %s/\n"
                                  "    event_type: \"{table}\"\n"
                                  "%s"
                                  "streams:\n"
                                  "  - name: s\n"
                                  "    source: db\n"
                                  "    tables: [public.a]\n"
                                  "    format: nakadi\n"
                                  "    sink: bus\n",
                                  sp_nk_server_url(rn->srv), sink_opts);
    struct sp_diag d;
    sp_diag_init(&d);
    int rc = sp_cfg_load_string("test.yaml", yaml, strlen(yaml), NULL, &rn->cfg, &d);
    if (rc != 0) {
        sp_diag_print(&d, stderr);
    }
    sp_diag_fini(&d);
    free(yaml);
    assert_int_equal(rc, 0);
    rn->sk.ops = rn->cfg->sinks[0].ops;
    rn->sk.name = rn->cfg->sinks[0].name;
    rn->sk.conf = rn->cfg->sinks[0].conf;
    sp_logctx_init(&rn->sk.log, "sink", "nakadi", "bus");
    struct sp_err err;
    sp_err_clear(&err);
    if (rn->sk.ops->open(&rn->sk, &err) != 0) {
        fail_msg("open: %s", err.msg);
    }
    rn->dl = sp_delivery_new(&rn->sk, rn->sk.conf, on_done, rn);
    assert_int_equal(sp_delivery_start(rn->dl, &err), 0);
}

static void run_stop(struct run *rn)
{
    sp_delivery_stop(rn->dl);
    release_done(rn);
    rn->sk.ops->close(&rn->sk);
    release_done(rn);
    sp_delivery_free(rn->dl, free_rec, NULL);
    sp_cfg_free(rn->cfg);
    sp_nk_server_stop(rn->srv);
    pthread_mutex_destroy(&rn->mu);
}

static void add(struct run *rn, const char *table, const char *dest, const char *key,
                const char *value)
{
    struct sp_rec *r = calloc(1, sizeof(*r));
    r->id = "0/1:1";
    r->source = "db";
    r->schema = "public";
    r->table = table;
    r->dest = dest;
    r->op = 'c';
    if (key != NULL) {
        r->key = strdup(key);
        r->key_len = strlen(key);
        r->key_hash = sp_hash_fnv1a(key, strlen(key));
    }
    r->value = strdup(value);
    r->value_len = strlen(value);
    sp_delivery_add(rn->dl, r);
}

static size_t settled(struct run *rn)
{
    pthread_mutex_lock(&rn->mu);
    size_t n = rn->acked + rn->rejected + rn->given_back;
    pthread_mutex_unlock(&rn->mu);
    return n;
}

static void wait_settled(struct run *rn, size_t n)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        sp_delivery_flush(rn->dl, true, false, 0);
        release_done(rn);
        if (settled(rn) >= n) {
            return;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > 60) {
            fail_msg("%zu of %zu records settled (last error: %s)", settled(rn), n, rn->last_err);
        }
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
}

#define EID_FMT "\"eid\":\"00000000-0000-5000-8000-%012d\""

/* A data change event as the nakadi format writes it. */
static char *row_event(int i)
{
    return sp_test_asprintf("{\"data_type\":\"public.a\",\"data_op\":\"C\",\"metadata\":{" EID_FMT
                            ",\"occurred_at\":\"2026-11-21T10:00:00.500Z\"},\"data\":{\"id\":%d}}",
                            i, i);
}

static void destination_overrides_template_and_types_keep_order(void **state)
{
    (void)state;
    struct run rn;
    run_start(&rn, "    partitions: 1\n"
                   "    partition_compaction_key: true\n"
                   "    data_type: \"sales.{table}\"\n");
    sp_nk_server_add_type(rn.srv, "a", "data", 4, true, NULL);
    sp_nk_server_add_type(rn.srv, "orders-out", "business", 4, true, NULL);
    for (int i = 0; i < 20; i++) {
        char *v;
        if (i % 2 == 0) {
            char *key = i % 4 == 0 ? sp_test_asprintf("{\"id\":%d}", i)
                                   : sp_test_asprintf("{\"tenant\":\"t\\\"1\",\"id\":%d}", i);
            v = row_event(i);
            add(&rn, "a", NULL, key, v);
            free(key);
        } else {
            v = sp_test_asprintf("{\"metadata\":{" EID_FMT
                                 ",\"occurred_at\":\"2026-11-21T10:00:00Z\""
                                 ",\"partition_compaction_key\":\"own-%d\"},\"n\":%d}",
                                 i, i, i);
            add(&rn, "outbox", "orders-out", "{\"id\":1}", v);
        }
        free(v);
    }
    wait_settled(&rn, 20);
    assert_int_equal(rn.acked, 20);
    struct sp_nk_event *ev;
    size_t n = sp_nk_server_events(rn.srv, "a", &ev);
    assert_int_equal(n, 10);
    for (size_t k = 0; k < n; k++) {
        int i = (int)k * 2;
        char *dt = sp_test_json_get(ev[k].json, "data_type");
        assert_string_equal(dt, "sales.a");
        free(dt);
        char *pck = sp_test_json_get(ev[k].json, "metadata.partition_compaction_key");
        char *want = i % 4 == 0 ? sp_test_asprintf("%d", i)
                                : sp_test_asprintf("{\"tenant\":\"t\\\"1\",\"id\":%d}", i);
        assert_string_equal(pck, want);
        free(pck);
        free(want);
        char *id = sp_test_json_get(ev[k].json, "data.id");
        assert_int_equal(atoi(id), i);
        free(id);
    }
    sp_nk_events_free(ev, n);
    n = sp_nk_server_events(rn.srv, "orders-out", &ev);
    assert_int_equal(n, 10);
    for (size_t k = 0; k < n; k++) {
        int i = (int)k * 2 + 1;
        char *pck = sp_test_json_get(ev[k].json, "metadata.partition_compaction_key");
        char *want = sp_test_asprintf("own-%d", i);
        assert_string_equal(pck, want);
        free(pck);
        free(want);
        char *num = sp_test_json_get(ev[k].json, "n");
        assert_int_equal(atoi(num), i);
        free(num);
        /* data_type is only replaced in data change events. */
        assert_int_equal(sp_test_json_lookup(ev[k].json, "data_type", NULL), SP_TEST_JSON_MISSING);
    }
    sp_nk_events_free(ev, n);
    run_stop(&rn);
}

static void oversized_event_is_rejected_without_sending(void **state)
{
    (void)state;
    struct run rn;
    run_start(&rn, "    max_event_bytes: 500\n");
    sp_nk_server_add_type(rn.srv, "a", "data", 2, false, "data.id");
    char *small = row_event(1);
    add(&rn, "a", NULL, "{\"id\":1}", small);
    free(small);
    char *big = calloc(1, 2000);
    memset(big, 'x', 1000);
    char *v =
        sp_test_asprintf("{\"data_type\":\"public.a\",\"data_op\":\"C\",\"metadata\":{" EID_FMT
                         ",\"occurred_at\":\"2026-11-21T10:00:00Z\"},\"data\":{\"id\":2,"
                         "\"blob\":\"%s\"}}",
                         2, big);
    add(&rn, "a", NULL, "{\"id\":2}", v);
    free(v);
    free(big);
    wait_settled(&rn, 2);
    assert_int_equal(rn.acked, 1);
    assert_int_equal(rn.rejected, 1);
    assert_non_null(strstr(rn.last_err, "more than max_event_bytes (500)"));
    assert_non_null(strstr(rn.last_err, "event type \"a\""));
    assert_int_equal(sp_nk_server_count(rn.srv, "a"), 1);
    run_stop(&rn);
}

static void batch_in_retry_is_given_back_at_stop(void **state)
{
    (void)state;
    struct run rn;
    run_start(&rn, "");
    sp_nk_server_add_type(rn.srv, "a", "data", 2, false, "data.id");
    sp_nk_server_respond(rn.srv, 503, 1000000, -1);
    char *v = row_event(1);
    add(&rn, "a", NULL, "{\"id\":1}", v);
    free(v);
    sp_delivery_flush(rn.dl, true, false, 0);
    while (sp_nk_server_status_count(rn.srv, 503) < 2) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    sp_delivery_stop(rn.dl);
    release_done(&rn);
    assert_int_equal(rn.given_back, 1);
    assert_int_equal(rn.acked, 0);
    assert_non_null(strstr(rn.last_err, "(retriable)"));
    assert_int_equal(sp_nk_server_count(rn.srv, "a"), 0);
    run_stop(&rn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(destination_overrides_template_and_types_keep_order),
        cmocka_unit_test(oversized_event_is_rejected_without_sending),
        cmocka_unit_test(batch_in_retry_is_given_back_at_stop),
    };
    return SP_TEST_RUN_GROUP("nakadi_sink", tests, NULL, NULL);
}
