// SPDX-License-Identifier: Apache-2.0
/*
 * Pipeline runtime with in-memory plugins: delivery order, confirmation only
 * after acknowledgement, backpressure, retries and the recovery policies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "core/pipeline.h"
#include "core/sinkconf.h"
#include "lib/fakes.h"
#include "telemetry/log.h"
#include "util/hash.h"

struct fx {
    struct sp_config cfg;
    struct sp_cfg_source src;
    struct sp_cfg_sink sinks[2];
    struct sp_cfg_stream stream;
    struct sp_cfg_table table;
    struct fake_source_conf sconf;
    struct fake_sink_conf kconf;
    struct fake_sink_conf dconf;
    struct sp_relation *rel;
    struct sp_pipeline *pl;
    volatile sig_atomic_t stop;
    int rc;
    struct sp_err err;
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    sp_log_setup(SP_LOG_ERROR, false);
    f->src = (struct sp_cfg_source){.name = "src", .ops = &fake_source_ops, .conf = &f->sconf};
    fake_sink_init(&f->kconf);
    fake_sink_init(&f->dconf);
    f->sinks[0] = (struct sp_cfg_sink){.name = "main", .ops = &fake_sink_ops, .conf = &f->kconf};
    f->sinks[1] = (struct sp_cfg_sink){.name = "dead", .ops = &fake_sink_ops, .conf = &f->dconf};
    f->table = (struct sp_cfg_table){.schema = "public", .table = "t"};
    f->stream = (struct sp_cfg_stream){.name = "s",
                                       .source = 0,
                                       .tables = &f->table,
                                       .ntables = 1,
                                       .format = &fake_format_ops,
                                       .sink = 0,
                                       .recovery = SP_RECOVERY_FAIL,
                                       .recovery_sink = -1,
                                       .messages = true};
    f->cfg = (struct sp_config){.sources = &f->src,
                                .nsources = 1,
                                .sinks = f->sinks,
                                .nsinks = 2,
                                .streams = &f->stream,
                                .nstreams = 1,
                                .memory_limit = 16 << 20,
                                .shutdown_timeout = 5000};
    sp_event_list_init(&f->sconf.events);
    f->rel = fake_relation("public", "t");
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    if (f->pl != NULL) {
        sp_pipeline_free(f->pl);
    }
    sp_event_list_free(&f->sconf.events);
    sp_relation_unref(f->rel);
    fake_sink_fini(&f->kconf);
    fake_sink_fini(&f->dconf);
    free(f);
    return 0;
}

static int fx_run(struct fx *f, uint64_t until)
{
    f->pl = sp_pipeline_new(&f->cfg);
    sp_err_clear(&f->err);
    int rc = sp_pipeline_open(f->pl, &f->err);
    if (rc == 0) {
        struct sp_run_opts o = {.until_lsn = until};
        rc = sp_pipeline_run(f->pl, &o, &f->stop, &f->err);
    }
    return rc;
}

static void *fx_thread(void *arg)
{
    struct fx *f = arg;
    f->rc = fx_run(f, 0);
    return NULL;
}

static void fx_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void delivers_in_order_and_confirms_last_commit(void **state)
{
    struct fx *f = *state;
    for (int t = 0; t < 50; t++) {
        fake_source_add_txn(&f->sconf, f->rel, 1000 + (uint64_t)t * 1000, 20);
    }
    assert_int_equal(fx_run(f, 50000 + 100), 0);
    assert_int_equal(f->kconf.n, 1000);
    for (int t = 0; t < 50; t++) {
        for (int i = 0; i < 20; i++) {
            char want[64];
            snprintf(want, sizeof(want), "0/%X:%d", 1000 + t * 1000, i + 1);
            assert_string_equal(f->kconf.ids[t * 20 + i], want);
        }
    }
    assert_int_equal(f->sconf.confirmed, 50000 + 100);
}

static void events_of_other_tables_are_not_delivered(void **state)
{
    struct fx *f = *state;
    struct sp_relation *other = fake_relation("public", "other");
    fake_source_add_txn(&f->sconf, other, 1000, 5);
    fake_source_add_txn(&f->sconf, f->rel, 2000, 3);
    sp_relation_unref(other);
    assert_int_equal(fx_run(f, 2100), 0);
    assert_int_equal(f->kconf.n, 3);
    assert_string_equal(f->kconf.ids[0], "0/7D0:1");
}

static void nothing_confirmed_until_sink_acknowledges(void **state)
{
    struct fx *f = *state;
    f->kconf.hold = true;
    fake_source_add_txn(&f->sconf, f->rel, 1000, 10);
    pthread_t th;
    pthread_create(&th, NULL, fx_thread, f);
    for (int i = 0; i < 200 && f->sconf.emitted < 12; i++) {
        fx_sleep_ms(5);
    }
    fx_sleep_ms(50);
    assert_int_equal(f->sconf.emitted, 12);
    assert_int_equal(f->sconf.confirmed, 0);
    fake_sink_release(&f->kconf);
    for (int i = 0; i < 400 && f->sconf.confirmed == 0; i++) {
        fx_sleep_ms(5);
    }
    assert_int_equal(f->sconf.confirmed, 1100);
    f->stop = 1;
    pthread_join(th, NULL);
    assert_int_equal(f->rc, 0);
}

static void backpressure_stops_reading_but_keeps_ticking(void **state)
{
    struct fx *f = *state;
    f->cfg.memory_limit = 64 * 1024;
    f->kconf.hold = true;
    fake_source_add_txn(&f->sconf, f->rel, 1000, 100000);
    pthread_t th;
    pthread_create(&th, NULL, fx_thread, f);
    fx_sleep_ms(300);
    int emitted = f->sconf.emitted;
    int ticks = f->sconf.ticks;
    fx_sleep_ms(200);
    /* Reading has stopped well short of the 100,000 events... */
    assert_true(emitted < 5000);
    assert_int_equal(f->sconf.emitted, emitted);
    /* ...while the source's timers (keepalives) still run. */
    assert_true(f->sconf.ticks > ticks);
    struct sp_pipeline_stats st;
    sp_pipeline_stats(f->pl, &st);
    assert_true(st.inflight_bytes <= 64 * 1024 + 4096);
    f->stop = 1;
    fake_sink_release(&f->kconf);
    pthread_join(th, NULL);
}

static void retriable_failures_are_retried_in_order(void **state)
{
    struct fx *f = *state;
    f->kconf.fail_retriable = 2;
    fake_source_add_txn(&f->sconf, f->rel, 1000, 5);
    fake_source_add_txn(&f->sconf, f->rel, 2000, 5);
    assert_int_equal(fx_run(f, 2100), 0);
    assert_int_equal(f->kconf.n, 10);
    assert_true(f->kconf.submits >= 3);
    assert_string_equal(f->kconf.ids[0], "0/3E8:1");
    assert_string_equal(f->kconf.ids[9], "0/7D0:5");
}

static void rejected_record_goes_to_dead_letter_sink(void **state)
{
    struct fx *f = *state;
    f->stream.recovery = SP_RECOVERY_DEAD_LETTER;
    f->stream.recovery_sink = 1;
    f->kconf.reject_id = "0/3E8:2";
    fake_source_add_txn(&f->sconf, f->rel, 1000, 3);
    fake_source_add_txn(&f->sconf, f->rel, 2000, 3);
    assert_int_equal(fx_run(f, 2100), 0);
    assert_int_equal(f->kconf.n, 5);
    assert_int_equal(f->dconf.n, 1);
    assert_string_equal(f->dconf.ids[0], "0/3E8:2");
    assert_non_null(strstr(f->dconf.values[0], "\"error\":\"record too large for the fake sink\""));
    assert_non_null(strstr(f->dconf.values[0], "\"stream\":\"s\",\"sink\":\"main\""));
    assert_non_null(strstr(f->dconf.values[0], "\"event\":{\"id\":\"0/3E8:2\""));
    assert_int_equal(f->sconf.confirmed, 2100);
}

static void format_error_goes_to_dead_letter_with_raw_event(void **state)
{
    struct fx *f = *state;
    f->stream.recovery = SP_RECOVERY_DEAD_LETTER;
    f->stream.recovery_sink = 1;
    fake_source_add_txn(&f->sconf, f->rel, 1000, 2);
    /* make the second insert unformattable */
    struct sp_event *ev = f->sconf.events.head->next->next;
    ev->after->cols[0].data = "bad";
    ev->after->cols[0].len = 3;
    assert_int_equal(fx_run(f, 1100), 0);
    assert_int_equal(f->kconf.n, 1);
    assert_int_equal(f->dconf.n, 1);
    assert_non_null(strstr(f->dconf.values[0], "cannot be formatted"));
    assert_non_null(strstr(f->dconf.values[0], "\"after\":{\"id\":\"bad\"}"));
    assert_int_equal(f->sconf.confirmed, 1100);
}

static void ignore_policy_drops_and_confirms(void **state)
{
    struct fx *f = *state;
    f->stream.recovery = SP_RECOVERY_IGNORE;
    f->kconf.reject_id = "0/3E8:1";
    fake_source_add_txn(&f->sconf, f->rel, 1000, 3);
    assert_int_equal(fx_run(f, 1100), 0);
    assert_int_equal(f->kconf.n, 2);
    struct sp_pipeline_stats st;
    sp_pipeline_stats(f->pl, &st);
    assert_int_equal(st.ignored, 1);
    assert_int_equal(f->sconf.confirmed, 1100);
}

static void fail_policy_stops_without_confirming_past_event(void **state)
{
    struct fx *f = *state;
    f->kconf.reject_id = "0/7D0:2";
    fake_source_add_txn(&f->sconf, f->rel, 1000, 3);
    fake_source_add_txn(&f->sconf, f->rel, 2000, 3);
    fake_source_add_txn(&f->sconf, f->rel, 3000, 3);
    int rc = fx_run(f, 3100);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(f->err.msg, "event 0/7D0:2"));
    assert_non_null(strstr(f->err.msg, "recovery policy fail"));
    assert_true(f->sconf.confirmed <= 1100);
}

static int fx_count_key(struct fx *f, unsigned seq)
{
    char want[32];
    snprintf(want, sizeof(want), "\"n\":%u}", seq);
    int n = 0;
    pthread_mutex_lock(&f->kconf.mu);
    for (int i = 0; i < f->kconf.n; i++) {
        size_t vl = strlen(f->kconf.values[i]);
        size_t wl = strlen(want);
        n += vl >= wl && strcmp(f->kconf.values[i] + vl - wl, want) == 0;
    }
    pthread_mutex_unlock(&f->kconf.mu);
    return n;
}

static void retrying_partition_does_not_block_other_partitions(void **state)
{
    struct fx *f = *state;
    /* Keys {"id":1}..{"id":8} repeat in every transaction; 4 partitions. */
    f->kconf.batching.partitions = 4;
    f->kconf.batching.batch_size = 8;
    f->kconf.fail_key = "{\"id\":3}";
    f->kconf.fail_key_times = 4; /* about 100+200+400+800 ms of backoff */
    for (int t = 0; t < 20; t++) {
        fake_source_add_txn(&f->sconf, f->rel, 1000 + (uint64_t)t * 1000, 8);
    }
    pthread_t th;
    pthread_create(&th, NULL, fx_thread, f);
    /* Find a key on another partition than key 3 (same hash as the pipeline). */
    int other = -1;
    for (unsigned k = 1; k <= 8 && other < 0; k++) {
        char key[32];
        char k3[] = "{\"id\":3}";
        snprintf(key, sizeof(key), "{\"id\":%u}", k);
        if (sp_hash_fnv1a(key, strlen(key)) % 4 != sp_hash_fnv1a(k3, strlen(k3)) % 4) {
            other = (int)k;
        }
    }
    assert_true(other > 0);
    for (int i = 0; i < 400 && fx_count_key(f, (unsigned)other) < 20; i++) {
        fx_sleep_ms(5);
    }
    /* Another partition has delivered all its 20 changes while key 3 is still retrying. */
    assert_int_equal(fx_count_key(f, (unsigned)other), 20);
    assert_int_equal(fx_count_key(f, 3), 0);
    for (int i = 0; i < 1000 && fx_count_key(f, 3) < 20; i++) {
        fx_sleep_ms(5);
    }
    assert_int_equal(fx_count_key(f, 3), 20);
    for (int i = 0; i < 400 && f->sconf.confirmed < 20100; i++) {
        fx_sleep_ms(5);
    }
    assert_int_equal(f->sconf.confirmed, 20100);
    f->stop = 1;
    pthread_join(th, NULL);
    /* Per key, commit order: the ids of key 3 increase. */
    char last[64] = "";
    for (int i = 0; i < f->kconf.n; i++) {
        if (strstr(f->kconf.values[i], "\"n\":3}") != NULL) {
            char id[64];
            snprintf(id, sizeof(id), "%s", f->kconf.ids[i]);
            assert_true(strlen(id) > strlen(last) ||
                        (strlen(id) == strlen(last) && strcmp(id, last) > 0));
            snprintf(last, sizeof(last), "%s", id);
        }
    }
}

/* The commit LSN in an id "0/3E8:1". */
static unsigned long fx_id_lsn(const char *id)
{
    const char *slash = strchr(id, '/');
    return slash != NULL ? strtoul(slash + 1, NULL, 16) : 0;
}

/* The key ("n") of a captured value {"id":"...","op":"c","n":3}. */
static unsigned fx_value_key(const char *value)
{
    const char *n = strstr(value, "\"n\":");
    return n != NULL ? (unsigned)strtoul(n + 4, NULL, 10) : 0;
}

/* Every key's records were captured in commit order, each once. */
static void fx_check_key_order(struct fx *f, unsigned nkeys)
{
    unsigned long *last = calloc(nkeys + 1, sizeof(*last));
    assert_non_null(last);
    for (int i = 0; i < f->kconf.n; i++) {
        unsigned k = fx_value_key(f->kconf.values[i]);
        assert_true(k >= 1 && k <= nkeys);
        unsigned long lsn = fx_id_lsn(f->kconf.ids[i]);
        assert_true(lsn > last[k]);
        last[k] = lsn;
    }
    free(last);
}

static void fx_set_fail_key_times(struct fx *f, int times)
{
    pthread_mutex_lock(&f->kconf.mu);
    f->kconf.fail_key_times = times;
    pthread_mutex_unlock(&f->kconf.mu);
}

/*
 * One lane, 101 keys, 100 transactions: every batch holding key 3 fails
 * (retriable) until the test lets it through. The 10,000 events of the 100
 * other keys, all in the same lane, are delivered meanwhile; key 3's later
 * events wait behind its failing batch, and once it succeeds all 100 arrive
 * in commit order. Nothing is confirmed past the first transaction before.
 */
static void failing_key_holds_only_itself_within_its_lane(void **state)
{
    struct fx *f = *state;
    f->kconf.batching.partitions = 1;
    f->kconf.batching.batch_size = 100;
    f->kconf.fail_key = "{\"id\":3}";
    f->kconf.fail_key_times = 1 << 30;
    for (int t = 0; t < 100; t++) {
        fake_source_add_txn(&f->sconf, f->rel, 1000 + (uint64_t)t * 1000, 101);
    }
    pthread_t th;
    pthread_create(&th, NULL, fx_thread, f);
    for (int i = 0; i < 3000 && fake_sink_count(&f->kconf) - fx_count_key(f, 3) < 10000; i++) {
        fx_sleep_ms(5);
    }
    assert_int_equal(fake_sink_count(&f->kconf) - fx_count_key(f, 3), 10000);
    assert_int_equal(fx_count_key(f, 3), 0);
    /* The first transaction holds a change of key 3: nothing is confirmed. */
    assert_int_equal(f->sconf.confirmed, 0);
    fx_set_fail_key_times(f, 0);
    for (int i = 0; i < 2000 && fx_count_key(f, 3) < 100; i++) {
        fx_sleep_ms(5);
    }
    assert_int_equal(fx_count_key(f, 3), 100);
    for (int i = 0; i < 400 && f->sconf.confirmed < 100100; i++) {
        fx_sleep_ms(5);
    }
    assert_int_equal(f->sconf.confirmed, 100100);
    f->stop = 1;
    pthread_join(th, NULL);
    assert_int_equal(f->rc, 0);
    assert_int_equal(f->kconf.n, 10100);
    fx_check_key_order(f, 101);
}

/*
 * retry_hold: partition: a failing batch stops its whole lane, so the lane's
 * records reach the sink in commit order across keys.
 */
static void retry_hold_partition_keeps_lane_order_across_keys(void **state)
{
    struct fx *f = *state;
    f->kconf.batching.partitions = 1;
    f->kconf.batching.batch_size = 5;
    f->kconf.batching.retry_hold = SP_RETRY_HOLD_PARTITION;
    f->kconf.fail_key = "{\"id\":3}";
    f->kconf.fail_key_times = 3;
    for (int t = 0; t < 10; t++) {
        fake_source_add_txn(&f->sconf, f->rel, 1000 + (uint64_t)t * 1000, 10);
    }
    assert_int_equal(fx_run(f, 10100), 0);
    assert_int_equal(f->kconf.n, 100);
    for (int i = 1; i < f->kconf.n; i++) {
        unsigned long a = fx_id_lsn(f->kconf.ids[i - 1]);
        unsigned long b = fx_id_lsn(f->kconf.ids[i]);
        assert_true(a < b || (a == b && fx_value_key(f->kconf.values[i - 1]) <
                                            fx_value_key(f->kconf.values[i])));
    }
}

/*
 * A sink that gives back only the records it could not deliver (a
 * retriable rec->err, as the kafka sink does): those are sent again, with
 * their key's later records; the rest of each batch is acknowledged once,
 * never sent twice; every key stays in commit order.
 */
static void undelivered_records_alone_are_retried(void **state)
{
    struct fx *f = *state;
    f->kconf.batching.partitions = 1;
    f->kconf.batching.batch_size = 50;
    f->kconf.soft_key = "{\"id\":2}";
    f->kconf.soft_times = 3;
    for (int t = 0; t < 20; t++) {
        fake_source_add_txn(&f->sconf, f->rel, 1000 + (uint64_t)t * 1000, 10);
    }
    assert_int_equal(fx_run(f, 20100), 0);
    assert_int_equal(f->kconf.n, 200); /* each event once */
    assert_int_equal(fx_count_key(f, 2), 20);
    assert_int_equal(f->kconf.soft_times, 0);
    fx_check_key_order(f, 10);
    assert_int_equal(f->sconf.confirmed, 20100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(delivers_in_order_and_confirms_last_commit, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(events_of_other_tables_are_not_delivered, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(nothing_confirmed_until_sink_acknowledges, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(backpressure_stops_reading_but_keeps_ticking, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(retriable_failures_are_retried_in_order, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(rejected_record_goes_to_dead_letter_sink, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(format_error_goes_to_dead_letter_with_raw_event, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(ignore_policy_drops_and_confirms, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(retrying_partition_does_not_block_other_partitions,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(fail_policy_stops_without_confirming_past_event, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(failing_key_holds_only_itself_within_its_lane, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(retry_hold_partition_keeps_lane_order_across_keys, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(undelivered_records_alone_are_retried, fx_setup,
                                        fx_teardown),
    };
    return cmocka_run_group_tests_name("pipeline", tests, NULL, NULL);
}
