// SPDX-License-Identifier: Apache-2.0
/*
 * The sqs sink driven by the real delivery runtime (core/delivery.c) with
 * hand-made records, against the SQS test server, for what a PostgreSQL
 * stream does not show: the errors at start (no region, no credentials, a
 * profile missing from the credentials file, queue and queue_url both or
 * neither, fifo: false on a .fifo queue), credentials, region and endpoint
 * from the environment with a session token, message groups of events
 * without a key and of keys SQS does not take as group ids, two events of
 * one key never in one request, a request refused as a whole split into one
 * message per request, and a batch still being retried when delivery stops
 * not acknowledged.
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
#include "lib/sqs_server.h"
#include "util/hash.h"

#define REGION     "eu-west-1"
#define ACCESS_KEY "AKIDSINKTEST"
#define SECRET     "sink-secret"

struct run {
    struct sp_sqs_server *srv;
    struct sp_config *cfg;
    struct sp_sink sk;
    struct sp_delivery *dl;
    pthread_mutex_t mu;
    struct sp_batch *done; /* reported batches, released by the test thread */
    size_t acked;
    size_t rejected;
    size_t given_back;
    size_t retried; /* batches given back and retried */
    bool stopped;
    char last_err[512];
    char *tmp;
};

static void on_done(void *ctx, struct sp_batch *b)
{
    struct run *rn = ctx;
    pthread_mutex_lock(&rn->mu);
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
    free((void *)r->id);
    free(r);
}

/*
 * Settles reported batches as the pipeline does (core/pipeline.c): a batch
 * given back is retried, records given back are retried apart, the rest
 * counted and freed. Once stopped, what is given back stays unconfirmed.
 */
static void release_done(struct run *rn)
{
    pthread_mutex_lock(&rn->mu);
    struct sp_batch *b = rn->done;
    rn->done = NULL;
    pthread_mutex_unlock(&rn->mu);
    while (b != NULL) {
        struct sp_batch *next = b->next;
        if (b->rc != 0 && b->err.retriable && !rn->stopped) {
            rn->retried++;
            snprintf(rn->last_err, sizeof(rn->last_err), "%s", b->err.msg);
            sp_delivery_retry(rn->dl, b);
            b = next;
            continue;
        }
        if (b->rc == 0 && !rn->stopped) {
            sp_delivery_retry_failed(rn->dl, b);
        }
        struct sp_rec *r = b->head;
        while (r != NULL) {
            struct sp_rec *rnext = r->next;
            if (b->rc != 0 || (r->err != NULL && r->err->retriable)) {
                rn->given_back++;
                snprintf(rn->last_err, sizeof(rn->last_err), "%.400s%s",
                         b->rc != 0 ? b->err.msg : r->err->msg,
                         (b->rc != 0 ? b->err.retriable : r->err->retriable) ? " (retriable)" : "");
            } else if (r->err != NULL) {
                rn->rejected++;
                snprintf(rn->last_err, sizeof(rn->last_err), "%s", r->err->msg);
            } else {
                rn->acked++;
            }
            free_rec(NULL, r);
            r = rnext;
        }
        sp_delivery_release(rn->dl, b);
        b = next;
    }
}

static size_t settled(struct run *rn)
{
    return rn->acked + rn->rejected + rn->given_back;
}

static void clear_env(void)
{
    const char *vars[] = {
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
        "AWS_REGION",        "AWS_DEFAULT_REGION",    "AWS_PROFILE",
        "AWS_ENDPOINT_URL",  "AWS_ENDPOINT_URL_SQS",  "AWS_SHARED_CREDENTIALS_FILE"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        unsetenv(vars[i]);
    }
}

/* Starts the server and makes a temp dir; no config yet. */
static void run_begin(struct run *rn)
{
    memset(rn, 0, sizeof(*rn));
    pthread_mutex_init(&rn->mu, NULL);
    rn->srv = sp_sqs_server_start(REGION, ACCESS_KEY, SECRET);
    rn->tmp = sp_test_tmpdir("sqs-sink");
}

/* Loads a config with sink "bus" (sqs, the given option lines); the sink is not opened. */
static void run_load(struct run *rn, const char *sink_opts)
{
    char *yaml = sp_test_asprintf("sources:\n"
                                  "  db:\n"
                                  "    type: postgres\n"
                                  "    connection: \"host=127.0.0.1\"\n"
                                  "    slot: s\n"
                                  "    publication: p\n"
                                  "sinks:\n"
                                  "  bus:\n"
                                  "    type: sqs\n"
                                  "%s"
                                  "streams:\n"
                                  "  - name: s\n"
                                  "    source: db\n"
                                  "    tables: [public.a]\n"
                                  "    sink: bus\n",
                                  sink_opts);
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
    sp_logctx_init(&rn->sk.log, "sink", "sqs", "bus");
}

static void run_config(struct run *rn, const char *sink_opts)
{
    run_begin(rn);
    run_load(rn, sink_opts);
}

static void run_start(struct run *rn)
{
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
    if (rn->dl != NULL) {
        rn->stopped = true;
        sp_delivery_stop(rn->dl);
        release_done(rn);
        rn->sk.ops->close(&rn->sk);
        release_done(rn);
        sp_delivery_free(rn->dl, free_rec, NULL);
    }
    sp_cfg_free(rn->cfg);
    sp_sqs_server_stop(rn->srv);
    sp_test_tmpdir_cleanup(rn->tmp);
    pthread_mutex_destroy(&rn->mu);
    clear_env();
}

/* The error open reports (the test fails if open succeeds). */
static void open_fails(struct run *rn, const char *msg, const char *hint)
{
    struct sp_err err;
    sp_err_clear(&err);
    if (rn->sk.ops->open(&rn->sk, &err) == 0) {
        rn->sk.ops->close(&rn->sk);
        fail_msg("open succeeded, expected: %s", msg);
    }
    if (strstr(err.msg, msg) == NULL || (hint != NULL && strstr(err.hint, hint) == NULL)) {
        fail_msg("open: %s (hint: %s); expected %s (hint: %s)", err.msg, err.hint, msg,
                 hint != NULL ? hint : "-");
    }
}

static int seq_no;

static void add(struct run *rn, const char *schema, const char *table, char op, const char *key,
                const char *value)
{
    struct sp_rec *r = calloc(1, sizeof(*r));
    r->id = sp_test_asprintf("0/16E9A48:%d", ++seq_no);
    r->lsn = 0x16E9A48;
    r->source = "db";
    r->schema = schema;
    r->table = table;
    r->op = op;
    if (key != NULL) {
        r->key = strdup(key);
        r->key_len = strlen(key);
        r->key_hash = sp_hash_fnv1a(key, strlen(key));
    } else {
        r->key_hash = sp_hash_fnv1a(schema, strlen(schema)) ^ sp_hash_fnv1a(table, strlen(table));
    }
    r->value = strdup(value);
    r->value_len = strlen(value);
    sp_delivery_add(rn->dl, r);
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

static char *base_opts(struct run *rn, const char *queue, const char *extra)
{
    (void)rn;
    return sp_test_asprintf("    queue: %s\n"
                            "    region: " REGION "\n"
                            "    endpoint: %s\n"
                            "%s",
                            queue, sp_sqs_server_url(rn->srv), extra);
}

/* Errors at start name what is missing and how to fix it. */
static void start_errors_say_what_is_missing(void **state)
{
    (void)state;
    clear_env();
    struct run rn;
    run_config(&rn, "    queue: q.fifo\n");
    open_fails(&rn, "no AWS region", "set region in the sink, or AWS_REGION");
    run_stop(&rn);

    run_config(&rn, "    queue: q\n    queue_url: http://127.0.0.1:1/000000000000/q\n");
    open_fails(&rn, "queue and queue_url are both set", NULL);
    run_stop(&rn);

    run_config(&rn, "    region: " REGION "\n");
    open_fails(&rn, "neither queue nor queue_url is set", "set queue (the name) or queue_url");
    run_stop(&rn);

    run_config(&rn, "    queue: q.fifo\n    region: " REGION "\n    fifo: false\n");
    open_fails(&rn, "fifo is false, but queue \"q.fifo\" is a FIFO queue", NULL);
    run_stop(&rn);

    /* No credentials anywhere: HOME without ~/.aws/credentials. */
    const char *home_env = getenv("HOME");
    char *home = home_env != NULL ? strdup(home_env) : NULL;
    run_config(&rn, "    queue: q\n    region: " REGION "\n");
    setenv("HOME", rn.tmp, 1);
    open_fails(&rn, "no AWS credentials", "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    if (home != NULL) {
        setenv("HOME", home, 1);
        free(home);
    }
    run_stop(&rn);

    run_begin(&rn);
    char *creds = sp_test_asprintf("%s/credentials", rn.tmp);
    sp_test_write_file(creds, "[default]\naws_access_key_id = A\naws_secret_access_key = B\n");
    char *opts = sp_test_asprintf("    queue: q\n    region: " REGION "\n"
                                  "    credentials_file: %s\n    profile: prod\n",
                                  creds);
    run_load(&rn, opts);
    open_fails(&rn, "has no profile \"prod\"", "add a [prod] section");
    free(opts);
    free(creds);
    run_stop(&rn);
}

/*
 * Keys from the environment (with a session token, signed as
 * X-Amz-Security-Token), region and endpoint too, and queue_url: no lookup.
 * Groups: an event without a key uses its table, a key SQS does not take
 * as a group id its hash; two events of one key never share a request.
 */
static void environment_credentials_and_message_groups(void **state)
{
    (void)state;
    clear_env();
    struct run rn;
    run_begin(&rn);
    sp_sqs_server_add_queue(rn.srv, "env.fifo");
    setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY, 1);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    setenv("AWS_SESSION_TOKEN", "session/token+1", 1);
    setenv("AWS_REGION", REGION, 1);
    setenv("AWS_ENDPOINT_URL_SQS", sp_sqs_server_url(rn.srv), 1);
    char *opts = sp_test_asprintf("    queue_url: %s/000000000000/env.fifo\n"
                                  "    partitions: 1\n",
                                  sp_sqs_server_url(rn.srv));
    run_load(&rn, opts);
    free(opts);
    run_start(&rn);
    add(&rn, "public", "a", 'c', "{\"id\":1}", "{\"n\":1}");
    add(&rn, "public", "a", 'u', "{\"id\":1}", "{\"n\":2}");
    add(&rn, "public", "nokey", 'c', NULL, "{\"n\":3}");
    add(&rn, "public", "a", 'c', "{\"name\":\"with space\"}", "{\"n\":4}");
    add(&rn, "", "audit", 'm', NULL, "{\"n\":5}");
    wait_settled(&rn, 5);
    assert_int_equal(rn.acked, 5);
    struct sp_sqs_msg *m;
    size_t n = sp_sqs_server_messages(rn.srv, "env.fifo", &m);
    assert_int_equal(n, 5);
    assert_string_equal(m[0].group, "{\"id\":1}");
    assert_string_equal(m[0].body, "{\"n\":1}");
    assert_string_equal(m[1].body, "{\"n\":2}");
    assert_string_equal(m[2].group, "public.nokey");
    assert_int_equal(strncmp(m[3].group, "sha256:", 7), 0);
    assert_int_equal(strlen(m[3].group), 7 + 64);
    assert_string_equal(m[4].group, "audit");
    assert_string_equal(sp_sqs_msg_attr(&m[4], "table"), "audit");
    assert_string_equal(sp_sqs_msg_attr(&m[4], "op"), "m");
    assert_string_equal(sp_sqs_msg_attr(&m[0], "lsn"), "0/16E9A48");
    assert_int_equal(strlen(m[0].dedup), 64);
    assert_string_not_equal(m[0].dedup, m[1].dedup);
    sp_sqs_msgs_free(m, n);
    struct sp_sqs_stats st;
    sp_sqs_server_stats(rn.srv, &st);
    assert_int_equal(st.same_group, 0);
    assert_int_equal(st.requests, st.batches); /* queue_url: no GetQueueUrl */
    assert_int_equal(sp_sqs_server_status_count(rn.srv, 403), 0);
    run_stop(&rn);
}

/* A request refused as a whole is split; a single message refused so is rejected. */
static void refused_request_is_split_then_rejected(void **state)
{
    (void)state;
    clear_env();
    struct run rn;
    run_begin(&rn);
    char *creds = sp_test_asprintf("%s/credentials", rn.tmp);
    sp_test_write_file(creds, "[default]\naws_access_key_id = " ACCESS_KEY
                              "\naws_secret_access_key = " SECRET "\n");
    char *extra = sp_test_asprintf("    credentials_file: %s\n    partitions: 1\n", creds);
    char *opts = base_opts(&rn, "plain", extra);
    run_load(&rn, opts);
    free(opts);
    free(extra);
    free(creds);
    sp_sqs_server_add_queue(rn.srv, "plain");
    run_start(&rn);
    /* One refusal: the request of four goes again one message at a time. */
    sp_sqs_server_respond(rn.srv, 400, "InvalidParameterValue", 1);
    for (int i = 0; i < 4; i++) {
        char *k = sp_test_asprintf("{\"id\":%d}", i);
        add(&rn, "public", "a", 'c', k, "{}");
        free(k);
    }
    wait_settled(&rn, 4);
    assert_int_equal(rn.acked, 4);
    struct sp_sqs_stats st;
    sp_sqs_server_stats(rn.srv, &st);
    assert_int_equal(st.batches, 4);
    assert_int_equal(st.max_entries, 1);
    /* Refused every time: a single message is rejected with SQS's type and message. */
    sp_sqs_server_respond(rn.srv, 400, "InvalidParameterValue", 1000);
    add(&rn, "public", "a", 'c', "{\"id\":9}", "{}");
    wait_settled(&rn, 5);
    sp_sqs_server_respond(rn.srv, 400, "InvalidParameterValue", 0);
    assert_int_equal(rn.rejected, 1);
    assert_non_null(strstr(rn.last_err, "sqs refused event 0/16E9A48:"));
    assert_non_null(strstr(rn.last_err, "for queue \"plain\" (HTTP 400): InvalidParameterValue: "
                                        "injected"));
    run_stop(&rn);
}

/* A batch being retried (503s) when delivery stops is not acknowledged. */
static void batch_in_retry_is_not_acknowledged_at_stop(void **state)
{
    (void)state;
    clear_env();
    setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY, 1);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    struct run rn;
    run_begin(&rn);
    char *opts = base_opts(&rn, "stop.fifo", "");
    run_load(&rn, opts);
    free(opts);
    sp_sqs_server_add_queue(rn.srv, "stop.fifo");
    run_start(&rn);
    sp_sqs_server_respond(rn.srv, 503, "ServiceUnavailable", 1000000);
    add(&rn, "public", "a", 'c', "{\"id\":1}", "{}");
    sp_delivery_flush(rn.dl, true, false, 0);
    for (int i = 0; i < 3000 && sp_sqs_server_status_count(rn.srv, 503) < 2; i++) {
        release_done(&rn);
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    assert_true(sp_sqs_server_status_count(rn.srv, 503) >= 2);
    assert_true(rn.retried >= 1);
    rn.stopped = true;
    sp_delivery_stop(rn.dl);
    release_done(&rn);
    /* Given back by the sink's flush, or still held by the runtime: never acknowledged. */
    assert_true(rn.given_back <= 1);
    assert_int_equal(rn.acked, 0);
    assert_int_equal(rn.rejected, 0);
    assert_non_null(strstr(rn.last_err, "HTTP 503 ServiceUnavailable"));
    assert_int_equal(sp_sqs_server_count(rn.srv, "stop.fifo"), 0);
    run_stop(&rn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(start_errors_say_what_is_missing),
        cmocka_unit_test(environment_credentials_and_message_groups),
        cmocka_unit_test(refused_request_is_split_then_rejected),
        cmocka_unit_test(batch_in_retry_is_not_acknowledged_at_stop),
    };
    return SP_TEST_RUN_GROUP("sqs_sink", tests, NULL, NULL);
}
