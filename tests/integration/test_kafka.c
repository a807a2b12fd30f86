// SPDX-License-Identifier: Apache-2.0
/*
 * Sink "kafka" end to end: `siphon run` streams a real PostgreSQL 15 into
 * librdkafka's mock cluster (three brokers, started in this test process;
 * siphon reaches it over TCP on 127.0.0.1 as it would a real cluster), and
 * a real rdkafka consumer in this process reads the topics back.
 *
 * Covers: 100,000 events over 1,000 keys in 1,000 transactions, every one
 * present once, per key in commit order within one Kafka partition, keys
 * and headers as documented; retriable broker errors and leader moves
 * absorbed by librdkafka without loss, duplicates or reordering; a
 * permanent error (a row larger than message.max.bytes, refused locally,
 * and MSG_SIZE_TOO_LARGE answered by the brokers) sending exactly the
 * refused events to the dead-letter sink while other keys keep flowing;
 * tombstones after deletes (and none without the option); topic templates
 * with characters Kafka refuses; the slot's confirmed_flush_lsn never
 * passing events the brokers did not take while a broker is down (checked
 * after SIGTERM, then nothing lost on restart); batches failed by errors
 * librdkafka does not retry (authorization, a stale epoch, a fatal producer
 * error) retried by siphon until delivered; `siphon check` against
 * reachable and unreachable brokers and missing topics.
 *
 * SP_TEST_FILTER=<cmocka pattern> runs some tests only; SP_KAFKA_DEBUG=<librdkafka
 * debug contexts> turns on librdkafka's debug log in siphon's log files (kept
 * with SP_KEEP_TMP=1).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "integration/cdc_helpers.h"
#include "util/buf.h"

#define WAIT_START_MS  60000
#define WAIT_EVENTS_MS 180000
#define WAIT_EXIT_MS   60000

#define NBROKERS             3
#define NPARTS               16
#define API_PRODUCE          0 /* Kafka protocol ApiKeys */
#define API_INIT_PRODUCER_ID 22

struct fixture {
    struct sp_pg *pg;
    PGconn *conn;
    char *tmp;
    rd_kafka_t *mock_rk; /* owns the mock cluster; also answers watermark queries */
    rd_kafka_mock_cluster_t *mc;
    char *bootstraps;
    /* Per test, released by test_cleanup even when the test fails: */
    struct sp_proc *proc;
    char *slot;
    char *cfg;
    char *log;
    char *dead;
};

/* ---- setup ---------------------------------------------------------------- */

static int group_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    *state = fx;
    fx->tmp = sp_test_tmpdir("kafka");
    struct sp_pg_opts opts = {.tag = "pg-kafka", .extra_conf = NULL};
    fx->pg = sp_test_pg_start(&opts);
    fx->conn = sp_test_pg_connect(fx->pg);

    char errstr[512];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    char n[8];
    snprintf(n, sizeof(n), "%d", NBROKERS);
    if (rd_kafka_conf_set(kc, "test.mock.num.brokers", n, errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(kc, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fail_msg("mock cluster conf: %s", errstr);
    }
    fx->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof(errstr));
    if (fx->mock_rk == NULL) {
        fail_msg("could not start the mock cluster: %s", errstr);
    }
    fx->mc = rd_kafka_handle_mock_cluster(fx->mock_rk);
    assert_non_null(fx->mc);
    fx->bootstraps = strdup(rd_kafka_mock_cluster_bootstraps(fx->mc));
    return 0;
}

static int group_teardown(void **state)
{
    struct fixture *fx = *state;
    if (fx->conn != NULL) {
        PQfinish(fx->conn);
    }
    sp_test_pg_stop(fx->pg);
    if (fx->mock_rk != NULL) {
        rd_kafka_destroy(fx->mock_rk);
    }
    free(fx->bootstraps);
    sp_test_tmpdir_cleanup(fx->tmp);
    free(fx);
    return 0;
}

static int test_cleanup(void **state)
{
    struct fixture *fx = *state;
    if (fx->proc != NULL) {
        sp_test_proc_signal(fx->proc, SIGKILL);
        sp_test_proc_free(fx->proc);
        fx->proc = NULL;
    }
    cdc_drop_slot(fx->conn, fx->slot);
    free(fx->slot);
    fx->slot = NULL;
    for (int b = 1; b <= NBROKERS; b++) {
        rd_kafka_mock_broker_set_up(fx->mc, b);
    }
    free(fx->cfg);
    free(fx->log);
    free(fx->dead);
    fx->cfg = fx->log = fx->dead = NULL;
    return 0;
}

/* Counts scale down under ASan+UBSan; every assertion stays. */
static int scaled(int normal, int sanitized)
{
    return cdc_sanitized() ? sanitized : normal;
}

/* A topic with NPARTS partitions, replicated on every broker; the mock picks the leaders. */
static void topic_create(struct fixture *fx, const char *topic)
{
    assert_int_equal(rd_kafka_mock_topic_create(fx->mc, topic, NPARTS, NBROKERS),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* The broker id leading each partition of topic, from the cluster's metadata. */
static void topic_leaders(struct fixture *fx, const char *topic, int leaders[NPARTS])
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(fx->mock_rk, topic, NULL);
    assert_non_null(rkt);
    const struct rd_kafka_metadata *md = NULL;
    assert_int_equal(rd_kafka_metadata(fx->mock_rk, 0, rkt, &md, 10000),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(md->topic_cnt, 1);
    assert_int_equal(md->topics[0].partition_cnt, NPARTS);
    for (int i = 0; i < NPARTS; i++) {
        const rd_kafka_metadata_partition_t *mp = &md->topics[0].partitions[i];
        leaders[mp->id] = mp->leader;
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
}

/*
 * Names per test (table, slot, publication), the config and the log.
 * sinks: YAML lines under `sinks:` besides the dead-letter file sink
 * "dead"; streams: the lines under `streams:`; settings: the lines under
 * `settings:`, NULL for a 30 s shutdown_timeout.
 */
static void write_config(struct fixture *fx, const char *name, const char *sinks,
                         const char *streams, const char *settings)
{
    fx->slot = sp_test_asprintf("s_%s", name);
    fx->cfg = sp_test_asprintf("%s/%s.yaml", fx->tmp, name);
    fx->log = sp_test_asprintf("%s/%s.log", fx->tmp, name);
    fx->dead = sp_test_asprintf("%s/%s.dead.jsonl", fx->tmp, name);
    sp_test_write_file(fx->cfg,
                       "sources:\n"
                       "  db:\n"
                       "    type: postgres\n"
                       "    snapshot: never\n"
                       "    connection: \"%s\"\n"
                       "    slot: s_%s\n"
                       "    publication: p_%s\n"
                       "    status_interval: 1s\n"
                       "sinks:\n"
                       "%s"
                       "  dead:\n"
                       "    type: file\n"
                       "    path: %s\n"
                       "streams:\n"
                       "%s"
                       "settings:\n"
                       "%s",
                       sp_test_pg_conninfo(fx->pg), name, name, sinks, fx->dead, streams,
                       settings != NULL ? settings : "  shutdown_timeout: 30s\n");
}

/*
 * The usual one: sink "bus" (kafka, default topic template) for table
 * public.<table>; props: lines under its `properties:` ("      key: value\n")
 * or NULL. SP_KAFKA_DEBUG=<librdkafka debug contexts> adds librdkafka's debug
 * log (with siphon's debug level, see start_siphon).
 */
static void write_simple_config(struct fixture *fx, const char *table, const char *props,
                                const char *settings)
{
    const char *dbg = getenv("SP_KAFKA_DEBUG");
    char *dbg_line = dbg != NULL ? sp_test_asprintf("      debug: \"%s\"\n", dbg) : NULL;
    char *sinks =
        sp_test_asprintf("  bus:\n"
                         "    type: kafka\n"
                         "    brokers: \"%s\"\n"
                         "%s%s%s",
                         fx->bootstraps, props != NULL || dbg != NULL ? "    properties:\n" : "",
                         props != NULL ? props : "", dbg_line != NULL ? dbg_line : "");
    free(dbg_line);
    char *streams = sp_test_asprintf("  - name: s\n"
                                     "    source: db\n"
                                     "    tables: [public.%s]\n"
                                     "    sink: bus\n"
                                     "    recovery: { type: dead_letter, sink: dead }\n",
                                     table);
    write_config(fx, table, sinks, streams, settings);
    free(sinks);
    free(streams);
}

struct start_wait {
    struct fixture *fx;
};

static bool started_or_exited(void *ctx)
{
    struct start_wait *w = ctx;
    return cdc_count_in_file(w->fx->log, "streaming from slot") > 0 ||
           !sp_test_proc_alive(w->fx->proc);
}

static void start_siphon(struct fixture *fx)
{
    /* SP_KAFKA_DEBUG (librdkafka debug contexts) also needs siphon's debug log. */
    const char *level = getenv("SP_KAFKA_DEBUG") != NULL ? "debug" : "info";
    const char *argv[] = {sp_test_siphon_bin(), "run", "--log-level", level, "-c", fx->cfg, NULL};
    fx->proc = sp_test_proc_start(argv, fx->log, fx->log);
    struct start_wait w = {fx};
    if (!sp_test_wait_until(started_or_exited, &w, WAIT_START_MS) ||
        cdc_count_in_file(fx->log, "streaming from slot") == 0) {
        cdc_print_log(fx->log);
        fail_msg("siphon did not start streaming");
    }
}

static void stop_siphon(struct fixture *fx)
{
    int64_t took = 0;
    int st = cdc_siphon_stop(fx->proc, WAIT_EXIT_MS, &took);
    if (st != 0) {
        cdc_print_log(fx->log);
    }
    assert_int_equal(st, 0);
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
}

/* ---- reading Kafka back ---------------------------------------------------- */

struct kmsg {
    int32_t part;
    int64_t off;
    char *key;   /* NULL: no key */
    char *value; /* NULL: a tombstone */
    char *op;    /* headers, NULL when absent */
    char *table;
    char *lsn;
    char *id;
    /* from the value and key: */
    long key_id;
    long v;
    char vop;
    uint64_t commit_lsn;
    uint32_t seq;
};

struct kmsgs {
    struct kmsg *m;
    size_t n;
};

static void kmsgs_free(struct kmsgs *ms)
{
    for (size_t i = 0; i < ms->n; i++) {
        struct kmsg *m = &ms->m[i];
        free(m->key);
        free(m->value);
        free(m->op);
        free(m->table);
        free(m->lsn);
        free(m->id);
    }
    free(ms->m);
    ms->m = NULL;
    ms->n = 0;
}

static char *dup_bytes(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static char *header(rd_kafka_headers_t *hdrs, const char *name)
{
    const void *v = NULL;
    size_t n = 0;
    if (hdrs == NULL ||
        rd_kafka_header_get_last(hdrs, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return NULL;
    }
    return dup_bytes(v != NULL ? v : "", n);
}

/* "0/16E9A48:3" -> commit LSN and sequence; false if it is not an event id. */
static bool parse_event_id(const char *id, uint64_t *lsn, uint32_t *seq)
{
    char *end = NULL;
    errno = 0;
    unsigned long hi = strtoul(id, &end, 16);
    if (end == id || *end != '/') {
        return false;
    }
    const char *p = end + 1;
    unsigned long lo = strtoul(p, &end, 16);
    if (end == p || *end != ':') {
        return false;
    }
    p = end + 1;
    unsigned long sq = strtoul(p, &end, 10);
    if (end == p || *end != '\0' || errno != 0) {
        return false;
    }
    *lsn = ((uint64_t)hi << 32) | (uint64_t)lo;
    *seq = (uint32_t)sq;
    return true;
}

/* Fills the parsed fields from the key ({"id":N}) and the JSON value. */
static void kmsg_parse(struct kmsg *m)
{
    m->key_id = -1;
    const char *prefix = "{\"id\":";
    if (m->key != NULL && strncmp(m->key, prefix, strlen(prefix)) == 0) {
        char *end = NULL;
        long k = strtol(m->key + strlen(prefix), &end, 10);
        if (strcmp(end, "}") == 0) {
            m->key_id = k;
        }
    }
    if (m->value == NULL) {
        return;
    }
    char *id = sp_test_json_get(m->value, "id");
    assert_true(parse_event_id(id, &m->commit_lsn, &m->seq));
    free(id);
    char *op = sp_test_json_get(m->value, "op");
    m->vop = op[0];
    free(op);
    m->v = -1;
    if (m->vop != 'd') {
        char *v = NULL;
        if (sp_test_json_lookup(m->value, "after.v", &v) == SP_TEST_JSON_NUMBER) {
            m->v = strtol(v, NULL, 10);
        }
        free(v);
    }
}

/* Sum of the partitions' high watermarks (messages in the topic), or -1 when one cannot be asked.
 */
static long topic_count(struct fixture *fx, const char *topic, const bool *skip)
{
    long n = 0;
    for (int p = 0; p < NPARTS; p++) {
        if (skip != NULL && skip[p]) {
            continue;
        }
        int64_t lo = 0;
        int64_t hi = 0;
        if (rd_kafka_query_watermark_offsets(fx->mock_rk, topic, p, &lo, &hi, 5000) !=
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            return -1;
        }
        n += (long)(hi - lo);
    }
    return n;
}

struct count_wait {
    struct fixture *fx;
    const char *topic;
    long n;
    const bool *skip;
};

static bool count_reached(void *ctx)
{
    struct count_wait *w = ctx;
    return topic_count(w->fx, w->topic, w->skip) >= w->n;
}

/* Waits until the topic holds n messages; returns false (after printing the log) if not. */
static bool wait_count_soft(struct fixture *fx, const char *topic, long n)
{
    struct count_wait w = {fx, topic, n, NULL};
    if (!sp_test_wait_until(count_reached, &w, WAIT_EVENTS_MS)) {
        cdc_print_log(fx->log);
        fprintf(stderr, "topic %s holds %ld messages, expected %ld\n", topic,
                topic_count(fx, topic, NULL), n);
        return false;
    }
    return true;
}

static void wait_count(struct fixture *fx, const char *topic, long n)
{
    struct count_wait w = {fx, topic, n, NULL};
    if (!sp_test_wait_until(count_reached, &w, WAIT_EVENTS_MS)) {
        cdc_print_log(fx->log);
        fail_msg("topic %s holds %ld messages, expected %ld", topic, topic_count(fx, topic, NULL),
                 n);
    }
}

/* Every message of the topic, up to the high watermarks at the time of the call, by partition. */
static void read_topic(struct fixture *fx, const char *topic, struct kmsgs *out)
{
    char errstr[512];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    if (rd_kafka_conf_set(kc, "bootstrap.servers", fx->bootstraps, errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(kc, "group.id", "sp-test-reader", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(kc, "enable.auto.commit", "false", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
        fail_msg("consumer conf: %s", errstr);
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, sizeof(errstr));
    if (rk == NULL) {
        fail_msg("consumer: %s", errstr);
    }
    int64_t hi[NPARTS];
    size_t total = 0;
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(NPARTS);
    for (int p = 0; p < NPARTS; p++) {
        int64_t lo = 0;
        assert_int_equal(rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi[p], 10000),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
        /* The mock keeps at most 5 MiB or 100,000 messages per partition, dropping the oldest. */
        assert_int_equal(lo, 0);
        total += (size_t)(hi[p] - lo);
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    assert_int_equal(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);
    out->m = calloc(total > 0 ? total : 1, sizeof(*out->m));
    assert_non_null(out->m);
    out->n = 0;
    int64_t deadline = cdc_now_ms() + WAIT_EVENTS_MS;
    while (out->n < total && cdc_now_ms() < deadline) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, 500);
        if (rkm == NULL) {
            continue;
        }
        if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR || rkm->offset >= hi[rkm->partition]) {
            rd_kafka_message_destroy(rkm);
            continue;
        }
        struct kmsg *m = &out->m[out->n++];
        m->part = rkm->partition;
        m->off = rkm->offset;
        m->key = rkm->key != NULL ? dup_bytes(rkm->key, rkm->key_len) : NULL;
        m->value = rkm->payload != NULL ? dup_bytes(rkm->payload, rkm->len) : NULL;
        rd_kafka_headers_t *hdrs = NULL;
        if (rd_kafka_message_headers(rkm, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            hdrs = NULL;
        }
        m->op = header(hdrs, "op");
        m->table = header(hdrs, "table");
        m->lsn = header(hdrs, "lsn");
        m->id = header(hdrs, "id");
        rd_kafka_message_destroy(rkm);
        kmsg_parse(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (out->n != total) {
        fail_msg("read %zu of the %zu messages of %s", out->n, total, topic);
    }
}

/* ---- checks ------------------------------------------------------------------ */

/* The documented key and headers of an event message (not a tombstone). */
static void check_event_message(const struct kmsg *m, const char *table)
{
    assert_non_null(m->value);
    assert_true(m->key_id >= 0);
    char op[2] = {m->vop, '\0'};
    assert_non_null(m->op);
    assert_string_equal(m->op, op);
    assert_non_null(m->table);
    assert_string_equal(m->table, table);
    char *id = sp_test_json_get(m->value, "id");
    assert_non_null(m->id);
    assert_string_equal(m->id, id);
    free(id);
    char lsn[24];
    assert_non_null(m->lsn);
    assert_string_equal(m->lsn, cdc_lsn_fmt(m->commit_lsn, lsn));
    char *key_in_value = sp_test_json_get(m->value, m->vop == 'd' ? "before.id" : "after.id");
    assert_int_equal(strtol(key_in_value, NULL, 10), m->key_id);
    free(key_in_value);
}

/*
 * Each of keys 1..nkeys has exactly rounds events, v = 0, 1, ... in that
 * order (insert, then updates), all in one Kafka partition; messages of one
 * partition are in offset order in ms.
 */
static void check_keys_in_order(const struct kmsgs *ms, int nkeys, int rounds, const char *table)
{
    int *seen = calloc((size_t)nkeys + 1, sizeof(int));
    int *part = calloc((size_t)nkeys + 1, sizeof(int));
    assert_non_null(seen);
    assert_non_null(part);
    for (size_t i = 0; i < ms->n; i++) {
        const struct kmsg *m = &ms->m[i];
        check_event_message(m, table);
        assert_true(m->key_id >= 1 && m->key_id <= nkeys);
        int k = (int)m->key_id;
        if (seen[k] == 0) {
            part[k] = m->part;
        } else if (part[k] != m->part) {
            fail_msg("key %d in partitions %d and %d", k, part[k], m->part);
        }
        if (m->v != seen[k]) {
            fail_msg("key %d: v %ld at partition %d offset %lld, expected %d (out of order, "
                     "duplicated or lost)",
                     k, m->v, m->part, (long long)m->off, seen[k]);
        }
        assert_int_equal(m->vop, seen[k] == 0 ? 'c' : 'u');
        seen[k]++;
    }
    for (int k = 1; k <= nkeys; k++) {
        if (seen[k] != rounds) {
            fail_msg("key %d has %d events, expected %d", k, seen[k], rounds);
        }
    }
    free(seen);
    free(part);
}

/* Messages of one partition come out of read_topic in offset order: make sure. */
static void check_offsets_ascending(const struct kmsgs *ms)
{
    int64_t last[NPARTS];
    for (int p = 0; p < NPARTS; p++) {
        last[p] = -1;
    }
    for (size_t i = 0; i < ms->n; i++) {
        assert_true(ms->m[i].off > last[ms->m[i].part]);
        last[ms->m[i].part] = ms->m[i].off;
    }
}

/* ---- writing the changes ---------------------------------------------------- */

/* Inserts keys 1..nkeys (v = 0) in transactions of per_txn rows. */
static void insert_keys(struct fixture *fx, const char *table, int nkeys, int per_txn)
{
    for (int lo = 1; lo <= nkeys; lo += per_txn) {
        int hi = lo + per_txn - 1 > nkeys ? nkeys : lo + per_txn - 1;
        sp_test_sql(fx->conn, "INSERT INTO %s SELECT i, 0 FROM generate_series(%d, %d) i", table,
                    lo, hi);
    }
}

/* Sets v = round on every key, in transactions of per_txn keys, all in one round trip. */
static void update_round(struct fixture *fx, const char *table, int nkeys, int per_txn, int round)
{
    struct sp_buf sql;
    sp_buf_init(&sql);
    for (int lo = 1; lo <= nkeys; lo += per_txn) {
        sp_buf_printf(&sql, "BEGIN; UPDATE %s SET v = %d WHERE id BETWEEN %d AND %d; COMMIT;",
                      table, round, lo, lo + per_txn - 1);
    }
    sp_test_sql(fx->conn, "%s", sql.data);
    sp_buf_fini(&sql);
}

/* ---- tests ------------------------------------------------------------------- */

/*
 * 100,000 events (1,000 keys: inserts, then 99 rounds of updates; 1,000
 * transactions of 100 rows): every one arrives once, per key in commit
 * order within a single Kafka partition, with the documented key and headers.
 */
static void every_event_arrives_once_in_key_order_with_headers(void **state)
{
    struct fixture *fx = *state;
    int nkeys = scaled(1000, 200);
    int rounds = 100;
    long total = (long)nkeys * rounds;
    const char *topic = "db.public.k_order";
    topic_create(fx, topic);
    sp_test_sql(fx->conn, "CREATE TABLE k_order (id int PRIMARY KEY, v int)");
    write_simple_config(fx, "k_order", NULL, NULL);
    start_siphon(fx);

    int64_t t0 = cdc_now_ms();
    insert_keys(fx, "k_order", nkeys, nkeys / 10);
    for (int round = 1; round < rounds; round++) {
        update_round(fx, "k_order", nkeys, nkeys / 10, round);
    }
    int64_t t_written = cdc_now_ms();
    uint64_t end = cdc_current_lsn(fx->conn);
    wait_count(fx, topic, total);
    int64_t t_delivered = cdc_now_ms();
    /* Everything was acknowledged, so the slot moves past it. */
    assert_true(cdc_wait_confirmed(fx->conn, fx->slot, end, WAIT_EVENTS_MS));
    stop_siphon(fx);
    fprintf(stderr,
            "kafka: %ld events over %d keys written in %lld ms, all in Kafka after %lld ms "
            "(%.0f events/s end to end)\n",
            total, nkeys, (long long)(t_written - t0), (long long)(t_delivered - t0),
            (double)total * 1000.0 / (double)(t_delivered - t0 > 0 ? t_delivered - t0 : 1));

    struct kmsgs ms;
    read_topic(fx, topic, &ms);
    assert_int_equal(ms.n, (size_t)total); /* no duplicates either */
    check_offsets_ascending(&ms);
    check_keys_in_order(&ms, nkeys, rounds, "public.k_order");
    /* The keys spread over the partitions. */
    int used[NPARTS] = {0};
    for (size_t i = 0; i < ms.n; i++) {
        used[ms.m[i].part] = 1;
    }
    for (int p = 0; p < NPARTS; p++) {
        assert_int_equal(used[p], 1);
    }
    kmsgs_free(&ms);
    /* Everything was acknowledged, so the slot moved past it. */
    assert_true(cdc_wait_confirmed(fx->conn, fx->slot, cdc_current_lsn(fx->conn), 1) ||
                cdc_confirmed_lsn(fx->conn, fx->slot) > 0);
}

struct stacks_wait {
    struct fixture *fx;
};

static bool error_stacks_empty(void *ctx)
{
    struct stacks_wait *w = ctx;
    for (int b = 1; b <= NBROKERS; b++) {
        size_t cnt = 0;
        if (rd_kafka_mock_broker_error_stack_cnt(w->fx->mc, b, API_PRODUCE, &cnt) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            cnt != 0) {
            return false;
        }
    }
    return true;
}

/*
 * Produce requests answered with NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT
 * and NOT_ENOUGH_REPLICAS on every broker, round after round, and every
 * partition's leader moved mid-stream: librdkafka retries them itself, so
 * every event arrives exactly once and in key order, and siphon never has
 * to give a batch back.
 */
static void retriable_broker_errors_lose_and_reorder_nothing(void **state)
{
    struct fixture *fx = *state;
    int nkeys = scaled(1000, 200);
    int rounds = 20;
    long total = (long)nkeys * rounds;
    const char *topic = "db.public.k_retry";
    topic_create(fx, topic);
    sp_test_sql(fx->conn, "CREATE TABLE k_retry (id int PRIMARY KEY, v int)");
    /*
     * One request in flight per broker connection: the mock cluster checks
     * idempotent sequence numbers only for transactional producers
     * (rd_kafka_mock_validate_records), so with several requests in flight
     * it accepts a batch after one it failed with an injected error, and
     * librdkafka then takes the failed one as implicitly acknowledged. A real
     * broker answers OUT_OF_ORDER_SEQUENCE_NUMBER instead and librdkafka
     * resends in order; the default of 5 in flight is right against one.
     */
    write_simple_config(fx, "k_retry", "      max.in.flight.requests.per.connection: \"1\"\n",
                        NULL);
    start_siphon(fx);

    int injected = 0;
    for (int round = 0; round < rounds; round++) {
        if (round % 2 == 0) {
            for (int b = 1; b <= NBROKERS; b++) {
                assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                                     fx->mc, b, API_PRODUCE, 3,
                                     RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0,
                                     RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, 50,
                                     RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 0),
                                 RD_KAFKA_RESP_ERR_NO_ERROR);
                injected += 3;
            }
        }
        if (round == rounds / 2) {
            /* Every partition moves to the next broker. */
            int leaders[NPARTS];
            topic_leaders(fx, topic, leaders);
            for (int p = 0; p < NPARTS; p++) {
                assert_int_equal(
                    rd_kafka_mock_partition_set_leader(fx->mc, topic, p, leaders[p] % NBROKERS + 1),
                    RD_KAFKA_RESP_ERR_NO_ERROR);
            }
        }
        if (round == 0) {
            insert_keys(fx, "k_retry", nkeys, nkeys / 10);
        } else {
            update_round(fx, "k_retry", nkeys, nkeys / 10, round);
        }
    }
    if (!wait_count_soft(fx, topic, total)) {
        /* Say which events are missing. */
        struct kmsgs lost;
        read_topic(fx, topic, &lost);
        check_keys_in_order(&lost, nkeys, rounds, "public.k_retry");
        fail_msg("messages missing");
    }
    struct stacks_wait sw = {fx};
    assert_true(sp_test_wait_until(error_stacks_empty, &sw, WAIT_EVENTS_MS));
    stop_siphon(fx);
    fprintf(stderr, "kafka: %d broker errors injected on Produce, %ld events delivered\n", injected,
            total);

    struct kmsgs ms;
    read_topic(fx, topic, &ms);
    assert_int_equal(ms.n, (size_t)total);
    check_offsets_ascending(&ms);
    check_keys_in_order(&ms, nkeys, rounds, "public.k_retry");
    kmsgs_free(&ms);
    /* librdkafka absorbed every error: no batch came back to siphon's retry loop. */
    assert_int_equal(cdc_count_in_file(fx->log, "could not deliver"), 0);
}

/* The dead-letter lines, each checked: stream, sink, error text, event. */
static size_t check_dead_letters(struct fixture *fx, const char *error_part, long *ids, size_t cap)
{
    size_t n = 0;
    char **lines = sp_test_read_lines(fx->dead, &n);
    for (size_t i = 0; i < n; i++) {
        char *sink = sp_test_json_get(lines[i], "sink");
        assert_string_equal(sink, "bus");
        free(sink);
        char *err = sp_test_json_get(lines[i], "error");
        if (strstr(err, error_part) == NULL) {
            fail_msg("dead letter error \"%s\" lacks \"%s\"", err, error_part);
        }
        free(err);
        char *key = sp_test_json_get(lines[i], "key.id");
        char *in_event = sp_test_json_get(lines[i], "event.after.id");
        assert_string_equal(key, in_event);
        if (i < cap) {
            ids[i] = strtol(key, NULL, 10);
        }
        free(key);
        free(in_event);
    }
    sp_test_free_lines(lines);
    return n;
}

struct lines_wait {
    const char *path;
    size_t n;
};

static bool lines_reached(void *ctx)
{
    struct lines_wait *w = ctx;
    return sp_test_count_lines(w->path) >= w->n;
}

/*
 * A row whose event is larger than message.max.bytes (100,000 via
 * properties; the row is 200 KB) is refused by librdkafka for good: it goes
 * to the dead-letter sink with the error, while the 10,000 rows around it,
 * some in the same transaction, all arrive; the slot moves past it.
 */
static void oversized_event_goes_to_dead_letter_others_flow(void **state)
{
    struct fixture *fx = *state;
    int before = scaled(5000, 1000);
    int after = before;
    const char *topic = "db.public.k_big";
    topic_create(fx, topic);
    sp_test_sql(fx->conn, "CREATE TABLE k_big (id int PRIMARY KEY, v int, pad text)");
    write_simple_config(fx, "k_big", "      message.max.bytes: \"100000\"\n", NULL);
    start_siphon(fx);
    int big = before + 1;
    for (int lo = 1; lo <= before - 50; lo += 50) {
        sp_test_sql(fx->conn, "INSERT INTO k_big SELECT i, 0 FROM generate_series(%d, %d) i", lo,
                    lo + 49);
    }
    /* The big row shares its transaction with 100 small ones. */
    sp_test_sql(fx->conn,
                "BEGIN;"
                "INSERT INTO k_big SELECT i, 0 FROM generate_series(%d, %d) i;"
                "INSERT INTO k_big VALUES (%d, 0, (SELECT string_agg(md5(i::text), '') "
                "FROM generate_series(1, 6250) i));"
                "INSERT INTO k_big SELECT i, 0 FROM generate_series(%d, %d) i;"
                "COMMIT;",
                before - 49, before, big, big + 1, big + 50);
    for (int lo = big + 51; lo <= big + after; lo += 50) {
        int hi = lo + 49 > big + after ? big + after : lo + 49;
        sp_test_sql(fx->conn, "INSERT INTO k_big SELECT i, 0 FROM generate_series(%d, %d) i", lo,
                    hi);
    }
    uint64_t end = cdc_current_lsn(fx->conn);
    wait_count(fx, topic, before + after);
    struct lines_wait lw = {fx->dead, 1};
    assert_true(sp_test_wait_until(lines_reached, &lw, WAIT_EVENTS_MS));
    /* The refused event counts as handled (dead-lettered): the slot moves past it. */
    assert_true(cdc_wait_confirmed(fx->conn, fx->slot, end, WAIT_EVENTS_MS));
    stop_siphon(fx);

    long ids[4];
    assert_int_equal(check_dead_letters(fx, "too large", ids, 4), 1);
    assert_int_equal(ids[0], big);
    struct kmsgs ms;
    read_topic(fx, topic, &ms);
    assert_int_equal(ms.n, (size_t)(before + after));
    char *got = calloc((size_t)big + (size_t)after + 1, 1);
    assert_non_null(got);
    for (size_t i = 0; i < ms.n; i++) {
        check_event_message(&ms.m[i], "public.k_big");
        assert_true(ms.m[i].key_id >= 1 && ms.m[i].key_id <= big + after);
        assert_int_not_equal(ms.m[i].key_id, big);
        assert_int_equal(got[ms.m[i].key_id], 0);
        got[ms.m[i].key_id] = 1;
    }
    free(got);
    kmsgs_free(&ms);
    assert_true(cdc_count_in_file(fx->log, "goes to dead-letter sink") >= 1);
}

/*
 * The brokers answer one Produce request each with MSG_SIZE_TOO_LARGE: the
 * events in those requests (and only those) are dead-lettered with the
 * broker's error; everything else arrives, in key order, nothing is lost.
 */
static void broker_refusal_dead_letters_exactly_the_refused_events(void **state)
{
    struct fixture *fx = *state;
    int nkeys = scaled(2000, 500);
    const char *topic = "db.public.k_refuse";
    topic_create(fx, topic);
    sp_test_sql(fx->conn, "CREATE TABLE k_refuse (id int PRIMARY KEY, v int)");
    write_simple_config(fx, "k_refuse", NULL, NULL);
    start_siphon(fx);
    for (int b = 1; b <= NBROKERS; b++) {
        assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                             fx->mc, b, API_PRODUCE, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 0),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    insert_keys(fx, "k_refuse", nkeys, 100);
    uint64_t end = cdc_current_lsn(fx->conn);
    assert_true(cdc_wait_confirmed(fx->conn, fx->slot, end, WAIT_EVENTS_MS));
    stop_siphon(fx);

    long *dead_ids = calloc((size_t)nkeys, sizeof(long));
    assert_non_null(dead_ids);
    size_t ndead = check_dead_letters(fx, "too large", dead_ids, (size_t)nkeys);
    struct kmsgs ms;
    read_topic(fx, topic, &ms);
    fprintf(stderr, "kafka: %zu events refused by the brokers, %zu delivered\n", ndead, ms.n);
    assert_true(ndead >= 1);
    assert_int_equal(ndead + ms.n, (size_t)nkeys);
    char *got = calloc((size_t)nkeys + 1, 1);
    assert_non_null(got);
    for (size_t i = 0; i < ndead; i++) {
        assert_true(dead_ids[i] >= 1 && dead_ids[i] <= nkeys);
        assert_int_equal(got[dead_ids[i]], 0);
        got[dead_ids[i]] = 1;
    }
    for (size_t i = 0; i < ms.n; i++) {
        check_event_message(&ms.m[i], "public.k_refuse");
        assert_int_equal(got[ms.m[i].key_id], 0);
        got[ms.m[i].key_id] = 1;
    }
    free(got);
    free(dead_ids);
    kmsgs_free(&ms);
}

/*
 * tombstones: true produces, after each delete, the same key with no value
 * (op header "tombstone", the delete's id), after the delete in its
 * partition; a second sink without the option on the same changes has none.
 */
static void tombstone_follows_delete_only_when_enabled(void **state)
{
    struct fixture *fx = *state;
    topic_create(fx, "tomb.k_tomb");
    topic_create(fx, "plain.k_tomb");
    sp_test_sql(fx->conn, "CREATE TABLE k_tomb (id int PRIMARY KEY, v int)");
    char *sinks = sp_test_asprintf("  tomb:\n"
                                   "    type: kafka\n"
                                   "    brokers: \"%s\"\n"
                                   "    topic: \"tomb.{table}\"\n"
                                   "    tombstones: true\n"
                                   "  bus:\n"
                                   "    type: kafka\n"
                                   "    brokers: \"%s\"\n"
                                   "    topic: \"plain.{table}\"\n",
                                   fx->bootstraps, fx->bootstraps);
    const char *streams = "  - name: with_tombstones\n"
                          "    source: db\n"
                          "    tables: [public.k_tomb]\n"
                          "    sink: tomb\n"
                          "  - name: without\n"
                          "    source: db\n"
                          "    tables: [public.k_tomb]\n"
                          "    sink: bus\n";
    write_config(fx, "k_tomb", sinks, streams, NULL);
    free(sinks);
    start_siphon(fx);
    sp_test_sql(fx->conn, "INSERT INTO k_tomb SELECT i, 0 FROM generate_series(1, 20) i");
    sp_test_sql(fx->conn, "UPDATE k_tomb SET v = 1 WHERE id <= 10");
    sp_test_sql(fx->conn, "DELETE FROM k_tomb WHERE id <= 5");
    sp_test_sql(fx->conn, "BEGIN; DELETE FROM k_tomb WHERE id = 20; INSERT INTO k_tomb VALUES "
                          "(20, 2); COMMIT;");
    /* 20 inserts, 10 updates, 6 deletes, 1 re-insert; plus 6 tombstones. */
    wait_count(fx, "tomb.k_tomb", 43);
    wait_count(fx, "plain.k_tomb", 37);
    stop_siphon(fx);

    struct kmsgs ms;
    read_topic(fx, "tomb.k_tomb", &ms);
    assert_int_equal(ms.n, 43);
    check_offsets_ascending(&ms);
    size_t tombstones = 0;
    for (size_t i = 0; i < ms.n; i++) {
        const struct kmsg *m = &ms.m[i];
        if (m->value != NULL) {
            check_event_message(m, "public.k_tomb");
            continue;
        }
        tombstones++;
        assert_non_null(m->key);
        assert_non_null(m->op);
        assert_string_equal(m->op, "tombstone");
        assert_true(m->key_id == 20 || (m->key_id >= 1 && m->key_id <= 5));
        /* The message before it in its partition, for this key, is the delete it follows. */
        const struct kmsg *prev = NULL;
        for (size_t j = 0; j < i; j++) {
            if (ms.m[j].part == m->part && ms.m[j].key_id == m->key_id) {
                prev = &ms.m[j];
            }
        }
        if (prev == NULL || prev->value == NULL) {
            fail_msg("tombstone of key %ld without its delete before it", m->key_id);
            return;
        }
        assert_int_equal(prev->vop, 'd');
        assert_string_equal(m->id, prev->id);
        assert_string_equal(m->lsn, prev->lsn);
        assert_string_equal(m->table, "public.k_tomb");
    }
    assert_int_equal(tombstones, 6);
    /* Key 20 lives on: its re-insert comes after its tombstone. */
    const struct kmsg *last20 = NULL;
    for (size_t i = 0; i < ms.n; i++) {
        if (ms.m[i].key_id == 20) {
            last20 = &ms.m[i];
        }
    }
    if (last20 == NULL || last20->value == NULL) {
        fail_msg("key 20 does not end with its re-insert");
        return;
    }
    assert_int_equal(last20->vop, 'c');
    kmsgs_free(&ms);

    read_topic(fx, "plain.k_tomb", &ms);
    assert_int_equal(ms.n, 37);
    for (size_t i = 0; i < ms.n; i++) {
        assert_non_null(ms.m[i].value);
        check_event_message(&ms.m[i], "public.k_tomb");
    }
    kmsgs_free(&ms);
}

/*
 * Characters Kafka does not allow in topic names become '_' in the topic
 * (the table header keeps the real name); {source}, {schema} and {table}
 * expand in a custom template.
 */
static void topic_template_replaces_characters_kafka_refuses(void **state)
{
    struct fixture *fx = *state;
    const char *topic = "cdc-db.public.Odd_Name_";
    topic_create(fx, topic);
    sp_test_sql(fx->conn, "CREATE TABLE \"Odd Name?\" (id int PRIMARY KEY, v int)");
    char *sinks = sp_test_asprintf("  bus:\n"
                                   "    type: kafka\n"
                                   "    brokers: \"%s\"\n"
                                   "    topic: \"cdc-{source}.{schema}.{table}\"\n",
                                   fx->bootstraps);
    write_config(fx, "k_odd", sinks,
                 "  - name: s\n"
                 "    source: db\n"
                 "    tables: ['public.\"Odd Name?\"']\n"
                 "    sink: bus\n",
                 NULL);
    free(sinks);
    start_siphon(fx);
    sp_test_sql(fx->conn, "INSERT INTO \"Odd Name?\" SELECT i, 0 FROM generate_series(1, 3) i");
    wait_count(fx, topic, 3);
    stop_siphon(fx);
    struct kmsgs ms;
    read_topic(fx, topic, &ms);
    assert_int_equal(ms.n, 3);
    for (size_t i = 0; i < ms.n; i++) {
        check_event_message(&ms.m[i], "public.Odd Name?");
    }
    kmsgs_free(&ms);
}

struct sent_wait {
    struct fixture *fx;
    uint64_t lsn;
};

static bool slot_sent(void *ctx)
{
    struct sent_wait *w = ctx;
    char buf[24];
    char *v = sp_test_sql_value(w->fx->conn,
                                "SELECT coalesce((SELECT bool_and(sent_lsn >= '%s'::pg_lsn) FROM "
                                "pg_stat_replication WHERE application_name <> ''), false)",
                                cdc_lsn_fmt(w->lsn, buf));
    bool ok = v != NULL && strcmp(v, "t") == 0;
    free(v);
    return ok;
}

/* An event id, for sorting and looking up. */
struct evid {
    uint64_t lsn;
    uint32_t seq;
};

static int cmp_evid(const void *a, const void *b)
{
    const struct evid *x = a;
    const struct evid *y = b;
    if (x->lsn != y->lsn) {
        return x->lsn < y->lsn ? -1 : 1;
    }
    return x->seq < y->seq ? -1 : (x->seq > y->seq ? 1 : 0);
}

/* The event ids of ms, sorted; *distinct gets how many differ. Free the array. */
static struct evid *sorted_ids(const struct kmsgs *ms, size_t *distinct)
{
    struct evid *ids = calloc(ms->n + 1, sizeof(struct evid));
    assert_non_null(ids);
    for (size_t i = 0; i < ms->n; i++) {
        ids[i].lsn = ms->m[i].commit_lsn;
        ids[i].seq = ms->m[i].seq;
    }
    qsort(ids, ms->n, sizeof(struct evid), cmp_evid);
    *distinct = 0;
    for (size_t i = 0; i < ms->n; i++) {
        *distinct += i == 0 || cmp_evid(&ids[i], &ids[i - 1]) != 0;
    }
    return ids;
}

static bool has_id(const struct evid *ids, size_t n, const struct kmsg *m)
{
    struct evid key = {m->commit_lsn, m->seq};
    return bsearch(&key, ids, n, sizeof(struct evid), cmp_evid) != NULL;
}

/*
 * The broker leading partition 0 goes down (the partitions it leads, marked
 * in on_down, stall) and ntx transactions of 5 keys each update k_down;
 * returns the broker's id once siphon has received them all and some reached
 * the partitions still up. *end: the WAL position after the transactions.
 */
static int write_with_a_broker_down(struct fixture *fx, const char *topic, int nkeys, int ntx,
                                    bool on_down[NPARTS], uint64_t *end)
{
    int leaders[NPARTS];
    topic_leaders(fx, topic, leaders);
    int down = leaders[0];
    int ndown = 0;
    for (int p = 0; p < NPARTS; p++) {
        on_down[p] = leaders[p] == down;
        ndown += on_down[p];
    }
    assert_true(ndown < NPARTS); /* some partitions stay reachable */
    long up_before = topic_count(fx, topic, on_down);
    assert_int_equal(rd_kafka_mock_broker_set_down(fx->mc, down), RD_KAFKA_RESP_ERR_NO_ERROR);
    /* Small transactions, so some are whole on the brokers still up. */
    struct sp_buf sql;
    sp_buf_init(&sql);
    for (int t = 0; t < ntx; t++) {
        int lo = (t * 5) % nkeys + 1;
        sp_buf_printf(&sql,
                      "BEGIN; UPDATE k_down SET v = v + 1 WHERE id BETWEEN %d AND %d; COMMIT;", lo,
                      lo + 4);
    }
    sp_test_sql(fx->conn, "%s", sql.data);
    sp_buf_fini(&sql);
    *end = cdc_current_lsn(fx->conn);
    struct sent_wait sw = {fx, *end};
    assert_true(sp_test_wait_until(slot_sent, &sw, WAIT_EVENTS_MS));
    struct count_wait cw = {fx, topic, up_before + 1, on_down};
    assert_true(sp_test_wait_until(count_reached, &cw, WAIT_EVENTS_MS));
    return down;
}

/*
 * Per key: what the first run delivered (offsets up to first's last one in
 * each partition) is in commit order, and so is what the second run
 * delivered (a replay from the confirmed position), which ends with the
 * key's last value, final_v.
 */
static void check_runs_in_key_order(const struct kmsgs *first, const struct kmsgs *all, int nkeys,
                                    long final_v)
{
    int64_t first_end[NPARTS];
    for (int p = 0; p < NPARTS; p++) {
        first_end[p] = -1;
    }
    for (size_t i = 0; i < first->n; i++) {
        if (first->m[i].off > first_end[first->m[i].part]) {
            first_end[first->m[i].part] = first->m[i].off;
        }
    }
    size_t stride = (size_t)nkeys + 1;
    long *last_v = malloc(2 * stride * sizeof(long));
    assert_non_null(last_v);
    for (size_t k = 0; k < 2 * stride; k++) {
        last_v[k] = -1;
    }
    for (size_t i = 0; i < all->n; i++) {
        const struct kmsg *m = &all->m[i];
        size_t run = m->off <= first_end[m->part] ? 0 : 1;
        long *last = &last_v[run * stride + (size_t)m->key_id];
        if (m->v <= *last) {
            fail_msg("key %ld: v %ld after %ld in run %zu", m->key_id, m->v, *last, run + 1);
        }
        *last = m->v;
    }
    for (size_t k = 1; k <= (size_t)nkeys; k++) {
        long second = last_v[stride + k];
        assert_int_equal(second >= 0 ? second : last_v[k], final_v);
    }
    free(last_v);
}

/*
 * With one broker down, events for its partitions cannot be delivered.
 * After SIGTERM (shutdown_timeout 2s), every event of every transaction
 * before the slot's confirmed_flush_lsn is in Kafka, and some events past
 * it are not; a restart with the broker back delivers everything.
 */
static void confirmed_position_never_passes_undelivered_events(void **state)
{
    struct fixture *fx = *state;
    int nkeys = 500;
    int ntx = scaled(200, 100);
    const char *topic = "db.public.k_down";
    topic_create(fx, topic);
    sp_test_sql(fx->conn, "CREATE TABLE k_down (id int PRIMARY KEY, v int)");
    write_simple_config(fx, "k_down", NULL, "  shutdown_timeout: 2s\n");
    start_siphon(fx);

    insert_keys(fx, "k_down", nkeys, 50);
    wait_count(fx, topic, nkeys);
    assert_true(cdc_wait_confirmed(fx->conn, fx->slot, cdc_current_lsn(fx->conn), WAIT_EVENTS_MS));

    bool on_down[NPARTS];
    uint64_t end = 0;
    int down = write_with_a_broker_down(fx, topic, nkeys, ntx, on_down, &end);
    int64_t took = 0;
    int st = cdc_siphon_stop(fx->proc, WAIT_EXIT_MS, &took);
    if (st != 0) {
        cdc_print_log(fx->log);
    }
    assert_int_equal(st, 0);
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
    fprintf(stderr, "kafka: stopped with a broker down in %lld ms\n", (long long)took);
    assert_true(cdc_count_in_file(fx->log, "not acknowledged") >= 1);
    assert_true(cdc_wait_slot_inactive(fx->conn, fx->slot, 10000));
    uint64_t confirmed = cdc_confirmed_lsn(fx->conn, fx->slot);

    assert_int_equal(rd_kafka_mock_broker_set_up(fx->mc, down), RD_KAFKA_RESP_ERR_NO_ERROR);
    struct kmsgs first;
    read_topic(fx, topic, &first);
    size_t first_distinct = 0;
    struct evid *first_ids = sorted_ids(&first, &first_distinct);

    /* Restart: PostgreSQL resends from the confirmed position, everything arrives. */
    char *log2 = sp_test_asprintf("%s.2", fx->log);
    free(fx->log);
    fx->log = log2;
    start_siphon(fx);
    long total = nkeys + (long)ntx * 5;
    assert_true(cdc_wait_confirmed(fx->conn, fx->slot, end, WAIT_EVENTS_MS));
    stop_siphon(fx);
    struct kmsgs all;
    read_topic(fx, topic, &all);
    size_t distinct = 0;
    free(sorted_ids(&all, &distinct));
    assert_int_equal(distinct, (size_t)total); /* nothing lost */

    size_t before = 0;
    size_t after_missing = 0;
    for (size_t i = 0; i < all.n; i++) {
        const struct kmsg *m = &all.m[i];
        if (m->commit_lsn < confirmed) {
            before++;
            if (!has_id(first_ids, first.n, m)) {
                char lsn[24];
                fail_msg("event %s (key %ld) is before the confirmed position %s but was not "
                         "in Kafka when siphon stopped",
                         m->id, m->key_id, cdc_lsn_fmt(confirmed, lsn));
            }
        } else if (!has_id(first_ids, first.n, m)) {
            after_missing++;
        }
    }
    fprintf(stderr,
            "kafka: %zu of %zu events in Kafka when stopped; %zu before the confirmed position, "
            "%zu past it were missing and came on restart\n",
            first.n, all.n, before, after_missing);
    assert_true(before >= (size_t)nkeys);
    assert_true(after_missing > 0);
    assert_true(first.n < all.n);
    check_runs_in_key_order(&first, &all, nkeys, (long)ntx * 5 / nkeys);
    free(first_ids);
    kmsgs_free(&first);
    kmsgs_free(&all);
}

/*
 * Errors that librdkafka does not retry itself fail their batch, which
 * siphon gives back to its lane and submits again after a backoff: an
 * authorization failure on the topic (the principal gets its rights back),
 * and an idempotence error that is fatal to the producer (a new producer is
 * created). Nothing is lost, each key ends with its last change, and the
 * log names the cause with a hint.
 */
static void refused_batches_are_retried_until_delivered(void **state)
{
    struct fixture *fx = *state;
    int nkeys = scaled(500, 100);
    int rounds = 10;
    const char *topic = "db.public.k_again";
    topic_create(fx, topic);
    sp_test_sql(fx->conn, "CREATE TABLE k_again (id int PRIMARY KEY, v int)");
    write_simple_config(fx, "k_again", NULL, NULL);
    /* The producer's first InitProducerId is refused: fatal for an idempotent producer. */
    rd_kafka_mock_push_request_errors(fx->mc, API_INIT_PRODUCER_ID, 1,
                                      RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED);
    start_siphon(fx);
    for (int round = 0; round < rounds; round++) {
        if (round == 2 || round == 6) {
            rd_kafka_resp_err_t code = round == 2 ? RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED
                                                  : RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
            for (int b = 1; b <= NBROKERS; b++) {
                assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                                     fx->mc, b, API_PRODUCE, 1, code, 0),
                                 RD_KAFKA_RESP_ERR_NO_ERROR);
            }
        }
        if (round == 0) {
            insert_keys(fx, "k_again", nkeys, nkeys / 10);
        } else {
            update_round(fx, "k_again", nkeys, nkeys / 10, round);
        }
    }
    uint64_t end = cdc_current_lsn(fx->conn);
    assert_true(cdc_wait_confirmed(fx->conn, fx->slot, end, WAIT_EVENTS_MS));
    stop_siphon(fx);
    /* Each cause was logged with its hint, and the producer was replaced. */
    assert_true(cdc_count_in_file(fx->log, "the kafka producer failed") >= 1);
    assert_true(cdc_count_in_file(fx->log, "creating a new kafka producer after a fatal error") >=
                1);
    assert_true(cdc_count_in_file(fx->log, "Topic authorization failed") >= 1);
    assert_true(cdc_count_in_file(fx->log, "grant this principal WRITE") >= 1);
    /* An epoch error on Produce is surfaced to siphon (logged with its hint) or handled
     * inside librdkafka by bumping the epoch, depending on timing: either way nothing
     * may be lost, which is what follows checks. */
    fprintf(stderr, "kafka: producer epoch error %s\n",
            cdc_count_in_file(fx->log, "old epoch") >= 1 ? "surfaced and logged"
                                                         : "handled inside librdkafka");

    struct kmsgs ms;
    read_topic(fx, topic, &ms);
    size_t distinct = 0;
    free(sorted_ids(&ms, &distinct));
    fprintf(stderr, "kafka: %zu messages, %zu distinct events\n", ms.n, distinct);
    assert_int_equal(distinct, (size_t)nkeys * (size_t)rounds);
    long *last = calloc((size_t)nkeys + 1, sizeof(long));
    assert_non_null(last);
    for (size_t i = 0; i < ms.n; i++) {
        check_event_message(&ms.m[i], "public.k_again");
        last[ms.m[i].key_id] = ms.m[i].v;
    }
    for (int k = 1; k <= nkeys; k++) {
        assert_int_equal(last[k], rounds - 1);
    }
    free(last);
    kmsgs_free(&ms);
}

/*
 * Runs `siphon check` on the test's config with `from` replaced by `to`
 * (NULL: unchanged); returns the exit status, *out gets the output
 * (malloc'd) and *took_ms how long it took.
 */
static int run_check(struct fixture *fx, const char *from, const char *to, char **out,
                     int64_t *took_ms)
{
    char *text = sp_test_read_file(fx->cfg, NULL);
    assert_non_null(text);
    char *cfg = sp_test_asprintf("%s.variant.yaml", fx->cfg);
    if (from != NULL) {
        char *at = strstr(text, from);
        assert_non_null(at);
        *at = '\0';
        sp_test_write_file(cfg, "%s%s%s", text, to, at + strlen(from));
    } else {
        sp_test_write_file(cfg, "%s", text);
    }
    free(text);
    const char *argv[] = {sp_test_siphon_bin(), "check", "-c", cfg, NULL};
    int64_t t0 = cdc_now_ms();
    struct sp_proc *p = sp_test_proc_start(argv, fx->log, fx->log);
    int st = sp_test_proc_wait(p, WAIT_EXIT_MS);
    sp_test_proc_free(p);
    *took_ms = cdc_now_ms() - t0;
    free(cfg);
    *out = sp_test_read_file(fx->log, NULL);
    assert_non_null(*out);
    return st;
}

/* Fails the test, printing the output, unless check exited st and printed every needle. */
static void check_output_has(int st, int want, char *out, const char *const *needles)
{
    bool ok = st == want;
    for (size_t i = 0; needles[i] != NULL && ok; i++) {
        ok = strstr(out, needles[i]) != NULL;
    }
    if (!ok) {
        fprintf(stderr, "%s\n", out);
        free(out);
        fail_msg("siphon check exited %d (expected %d) without the expected report", st, want);
        return;
    }
    free(out);
}

/*
 * `siphon check`: reachable brokers pass; unreachable ones fail within
 * seconds with librdkafka's cause and a hint; a literal topic that does not
 * exist fails, one that does passes; an unknown placeholder is refused.
 */
static void check_reports_brokers_and_topics(void **state)
{
    struct fixture *fx = *state;
    sp_test_sql(fx->conn, "CREATE TABLE k_check (id int PRIMARY KEY, v int)");
    sp_test_sql(fx->conn, "CREATE PUBLICATION p_k_check FOR TABLE k_check");
    topic_create(fx, "k_check_exists");
    write_simple_config(fx, "k_check", NULL, NULL);
    char *out = NULL;
    int64_t took = 0;
    int st = run_check(fx, NULL, NULL, &out, &took);
    check_output_has(st, 0, out, (const char *const[]){"reachable", NULL});

    char *down = sp_test_asprintf("127.0.0.1:%d", sp_test_free_port());
    st = run_check(fx, fx->bootstraps, down, &out, &took);
    free(down);
    check_output_has(st, 1, out,
                     (const char *const[]){"could not reach the kafka brokers",
                                           "Connection refused", "hint:", NULL});
    fprintf(stderr, "kafka: check with unreachable brokers took %lld ms\n", (long long)took);
    assert_true(took < 15000);

    char *brokers = sp_test_asprintf("brokers: \"%s\"\n", fx->bootstraps);
    char *with_topic =
        sp_test_asprintf("brokers: \"%s\"\n    topic: k_check_missing\n", fx->bootstraps);
    st = run_check(fx, brokers, with_topic, &out, &took);
    check_output_has(
        st, 1, out,
        (const char *const[]){"topic \"k_check_missing\" does not exist", "hint:", NULL});
    free(with_topic);
    with_topic = sp_test_asprintf("brokers: \"%s\"\n    topic: k_check_exists\n", fx->bootstraps);
    st = run_check(fx, brokers, with_topic, &out, &took);
    check_output_has(st, 0, out, (const char *const[]){"reachable", NULL});
    free(with_topic);
    with_topic =
        sp_test_asprintf("brokers: \"%s\"\n    topic: \"{sourc}.{table}\"\n", fx->bootstraps);
    st = run_check(fx, brokers, with_topic, &out, &took);
    check_output_has(st, 1, out,
                     (const char *const[]){"unknown placeholder \"{sourc}\"",
                                           "{source}, {schema} and {table}", NULL});
    free(with_topic);
    free(brokers);
}

/*
 * Config for the policy tests: sink "bus" refuses events over 100,000 bytes
 * (message.max.bytes, refused by librdkafka for good), stream "s" on
 * public.<table> with the given recovery line.
 */
static void write_policy_config(struct fixture *fx, const char *table, const char *recovery)
{
    char *sinks = sp_test_asprintf("  bus:\n"
                                   "    type: kafka\n"
                                   "    brokers: \"%s\"\n"
                                   "    properties:\n"
                                   "      message.max.bytes: \"100000\"\n",
                                   fx->bootstraps);
    char *streams = sp_test_asprintf("  - name: s\n"
                                     "    source: db\n"
                                     "    tables: [public.%s]\n"
                                     "    sink: bus\n"
                                     "    recovery: %s\n",
                                     table, recovery);
    write_config(fx, table, sinks, streams, NULL);
    free(sinks);
    free(streams);
}

/* Replaces from with to in the test's config file. */
static void edit_config(struct fixture *fx, const char *from, const char *to)
{
    char *text = sp_test_read_file(fx->cfg, NULL);
    assert_non_null(text);
    char *at = strstr(text, from);
    assert_non_null(at);
    *at = '\0';
    sp_test_write_file(fx->cfg, "%s%s%s", text, to, at + strlen(from));
    free(text);
}

/* Rows lo..hi of table, small; big: one row of 200 KB. */
static const char *policy_txn_sql =
    "BEGIN;"
    "INSERT INTO %s SELECT i, 0 FROM generate_series(%d, %d) i;"
    "INSERT INTO %s VALUES (%d, 0, (SELECT string_agg(md5(i::text), "
    "'') FROM generate_series(1, 6250) i));"
    "INSERT INTO %s SELECT i, 0 FROM generate_series(%d, %d) i;"
    "COMMIT;";

/* Marks the key ids of ms in got (1..n), failing on ids outside it. */
static void mark_keys(const struct kmsgs *ms, char *got, long n, const char *table)
{
    for (size_t i = 0; i < ms->n; i++) {
        check_event_message(&ms->m[i], table);
        assert_true(ms->m[i].key_id >= 1 && ms->m[i].key_id <= n);
        got[ms->m[i].key_id] = 1;
    }
}

/*
 * recovery: ignore against the brokers: an event larger than the producer
 * accepts is dropped and logged with its id, table and error; every other
 * event arrives (some in its transaction), nothing goes to a dead-letter
 * sink, and the slot's confirmed position moves past it.
 */
static void ignore_policy_drops_refused_event_and_moves_on(void **state)
{
    struct fixture *fx = *state;
    const char *topic = "db.public.k_ignore";
    topic_create(fx, topic);
    sp_test_sql(fx->conn, "CREATE TABLE k_ignore (id int PRIMARY KEY, v int, pad text)");
    write_policy_config(fx, "k_ignore", "{ type: ignore }");
    start_siphon(fx);
    insert_keys(fx, "k_ignore", 100, 50);
    sp_test_sql(fx->conn, policy_txn_sql, "k_ignore", 101, 150, "k_ignore", 151, "k_ignore", 152,
                200);
    sp_test_sql(fx->conn, "INSERT INTO k_ignore SELECT i, 0 FROM generate_series(201, 300) i");
    uint64_t end = cdc_current_lsn(fx->conn);
    wait_count(fx, topic, 299);
    assert_true(cdc_wait_confirmed(fx->conn, fx->slot, end, WAIT_EVENTS_MS));
    stop_siphon(fx);

    assert_int_equal(cdc_count_in_file(fx->log, "under recovery policy ignore"), 1);
    char **lines = sp_test_read_lines(fx->log, NULL);
    bool found = false;
    for (char **l = lines; *l != NULL; l++) {
        if (strstr(*l, "under recovery policy ignore") != NULL) {
            found = true;
            assert_non_null(strstr(*l, "dropped event 0/"));
            assert_non_null(strstr(*l, "(public.k_ignore)"));
            assert_non_null(strstr(*l, "too large"));
        }
    }
    sp_test_free_lines(lines);
    assert_true(found);
    assert_int_equal(sp_test_count_lines(fx->dead), 0);
    struct kmsgs ms;
    read_topic(fx, topic, &ms);
    assert_int_equal(ms.n, 299);
    char got[301] = {0};
    mark_keys(&ms, got, 300, "public.k_ignore");
    for (int k = 1; k <= 300; k++) {
        assert_int_equal(got[k], k != 151);
    }
    kmsgs_free(&ms);
}

/*
 * recovery: fail against the brokers: siphon exits with code 1 naming the
 * event, and the slot's confirmed_flush_lsn is not past the failed
 * transaction. Restarted with recovery dead_letter, the refused event goes
 * to the dead-letter file and every other event reaches Kafka: nothing lost.
 */
static void fail_policy_exits_and_restart_loses_nothing(void **state)
{
    struct fixture *fx = *state;
    const char *topic = "db.public.k_fail";
    topic_create(fx, topic);
    sp_test_sql(fx->conn, "CREATE TABLE k_fail (id int PRIMARY KEY, v int, pad text)");
    write_policy_config(fx, "k_fail", "{ type: fail }");
    start_siphon(fx);
    insert_keys(fx, "k_fail", 20, 20);
    wait_count(fx, topic, 20);
    uint64_t before = cdc_current_lsn(fx->conn);
    sp_test_sql(fx->conn, policy_txn_sql, "k_fail", 21, 30, "k_fail", 31, "k_fail", 32, 41);
    sp_test_sql(fx->conn, "INSERT INTO k_fail SELECT i, 0 FROM generate_series(42, 61) i");
    uint64_t end = cdc_current_lsn(fx->conn);
    int st = sp_test_proc_wait(fx->proc, WAIT_EXIT_MS);
    if (st != 1) {
        cdc_print_log(fx->log);
    }
    assert_int_equal(st, 1);
    sp_test_proc_free(fx->proc);
    fx->proc = NULL;
    assert_true(cdc_wait_slot_inactive(fx->conn, fx->slot, 10000));
    uint64_t confirmed = cdc_confirmed_lsn(fx->conn, fx->slot);
    char b1[24];
    char b2[24];
    fprintf(stderr, "kafka: failed transaction starts after %s, confirmed_flush_lsn %s\n",
            cdc_lsn_fmt(before, b1), cdc_lsn_fmt(confirmed, b2));
    assert_true(confirmed <= before);
    assert_true(cdc_count_in_file(fx->log, "failed under recovery policy fail") >= 1);
    assert_true(cdc_count_in_file(fx->log, "(public.k_fail)") >= 1);
    assert_true(cdc_count_in_file(fx->log, "too large") >= 1);

    edit_config(fx, "recovery: { type: fail }", "recovery: { type: dead_letter, sink: dead }");
    start_siphon(fx);
    assert_true(cdc_wait_confirmed(fx->conn, fx->slot, end, WAIT_EVENTS_MS));
    stop_siphon(fx);
    long ids[4];
    assert_int_equal(check_dead_letters(fx, "too large", ids, 4), 1);
    assert_int_equal(ids[0], 31);
    struct kmsgs ms;
    read_topic(fx, topic, &ms);
    char got[62] = {0};
    mark_keys(&ms, got, 61, "public.k_fail");
    for (int k = 1; k <= 61; k++) {
        assert_int_equal(got[k], k != 31);
    }
    kmsgs_free(&ms);
}

/* CRC-32 (IEEE, reflected): what librdkafka's default partitioner hashes keys with. */
static uint32_t crc32_of(const char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= (uint8_t)p[i];
        for (int b = 0; b < 8; b++) {
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
        }
    }
    return ~c;
}

static int key_partition(int id)
{
    char key[32];
    int n = snprintf(key, sizeof(key), "{\"id\":%d}", id);
    return (int)(crc32_of(key, (size_t)n) % NPARTS);
}

/*
 * One Kafka partition loses its leader while siphon delivers through a
 * single lane with delivery_timeout 2 s: librdkafka times out the records
 * of that partition's keys, the sink gives back only those, and only their
 * keys wait while every event of the keys of the 15 other partitions
 * arrives meanwhile. Once the leader is back the held keys arrive too:
 * nothing lost, nothing twice, per key in commit order.
 */
static void leaderless_partition_holds_only_its_keys(void **state)
{
    struct fixture *fx = *state;
    int nkeys = scaled(200, 100);
    int rounds = 5;
    const char *topic = "db.public.k_hold";
    topic_create(fx, topic);
    int leaders[NPARTS];
    topic_leaders(fx, topic, leaders);
    int dead = 3;
    sp_test_sql(fx->conn, "CREATE TABLE k_hold (id int PRIMARY KEY, v int)");
    char *sinks = sp_test_asprintf("  bus:\n"
                                   "    type: kafka\n"
                                   "    brokers: \"%s\"\n"
                                   "    partitions: 1\n"
                                   "    delivery_timeout: 2s\n",
                                   fx->bootstraps);
    write_config(fx, "k_hold", sinks,
                 "  - name: s\n"
                 "    source: db\n"
                 "    tables: [public.k_hold]\n"
                 "    sink: bus\n",
                 NULL);
    free(sinks);
    assert_int_equal(rd_kafka_mock_partition_set_leader(fx->mc, topic, dead, -1),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    start_siphon(fx);
    insert_keys(fx, "k_hold", nkeys, nkeys / 10);
    for (int round = 1; round < rounds; round++) {
        update_round(fx, "k_hold", nkeys, nkeys / 10, round);
    }
    uint64_t end = cdc_current_lsn(fx->conn);
    long held_keys = 0;
    for (int k = 1; k <= nkeys; k++) {
        held_keys += key_partition(k) == dead;
    }
    assert_true(held_keys > 0);
    bool skip[NPARTS] = {false};
    skip[dead] = true;
    struct count_wait w = {fx, topic, (long)(nkeys - held_keys) * rounds, skip};
    int64_t t0 = cdc_now_ms();
    if (!sp_test_wait_until(count_reached, &w, WAIT_EVENTS_MS)) {
        cdc_print_log(fx->log);
        fail_msg("the other partitions hold %ld messages, expected %ld",
                 topic_count(fx, topic, skip), w.n);
    }
    fprintf(stderr,
            "kafka: partition %d without leader (%ld of %d keys): the %ld events of the other "
            "keys delivered after %lld ms\n",
            dead, held_keys, nkeys, w.n, (long long)(cdc_now_ms() - t0));
    /* Still nothing of the held keys is confirmed. */
    assert_true(cdc_confirmed_lsn(fx->conn, fx->slot) < end);
    /*
     * The other partitions' messages of a batch can arrive before its held
     * records time out (delivery_timeout after they were produced): the
     * retry is logged then.
     */
    assert_true(cdc_wait_log(fx->log, "the rest of the batch was delivered, these keys wait", 1,
                             WAIT_EVENTS_MS));
    assert_true(cdc_confirmed_lsn(fx->conn, fx->slot) < end);
    assert_int_equal(rd_kafka_mock_partition_set_leader(fx->mc, topic, dead, leaders[dead]),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    if (!cdc_wait_confirmed(fx->conn, fx->slot, end, WAIT_EVENTS_MS)) {
        cdc_print_log(fx->log);
        fail_msg("the held keys were not delivered after the leader came back");
    }
    stop_siphon(fx);

    struct kmsgs ms;
    read_topic(fx, topic, &ms);
    long *next = calloc((size_t)nkeys + 1, sizeof(long));
    assert_non_null(next);
    size_t dups = 0;
    for (size_t i = 0; i < ms.n; i++) {
        const struct kmsg *m = &ms.m[i];
        check_event_message(m, "public.k_hold");
        assert_true(m->key_id >= 1 && m->key_id <= nkeys);
        int k = (int)m->key_id;
        assert_int_equal(m->part, key_partition(k));
        if (m->v == next[k] - 1) {
            dups++; /* the same event again, right after itself */
        } else if (m->v != next[k]) {
            fail_msg("key %d: v %ld at partition %d offset %lld, expected %ld", k, m->v, m->part,
                     (long long)m->off, next[k]);
        } else {
            next[k]++;
        }
    }
    for (int k = 1; k <= nkeys; k++) {
        if (next[k] != rounds) {
            fail_msg("key %d has %ld of %d events", k, next[k], rounds);
        }
    }
    fprintf(stderr, "kafka: %zu messages, %zu sent again\n", ms.n, dups);
    /* Only the undelivered records were sent again: no duplicates. */
    assert_int_equal(dups, 0);
    free(next);
    kmsgs_free(&ms);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Messages in partition 0 of topic (its high watermark), or -1. */
static int64_t partition0_count(struct fixture *fx, const char *topic)
{
    int64_t lo = 0;
    int64_t hi = 0;
    if (rd_kafka_query_watermark_offsets(fx->mock_rk, topic, 0, &lo, &hi, 5000) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
        return -1;
    }
    return hi;
}

/*
 * One-row transactions, one at a time into a one-partition topic: the time
 * from COMMIT returning to the record being in the partition (its high
 * watermark moved). The delivery thread is woken when a batch is ready
 * rather than when its poll times out, so an idle stream delivers a change
 * within milliseconds (librdkafka's linger.ms, 5 ms by default, included).
 */
static void one_row_transactions_reach_kafka_within_milliseconds(void **state)
{
    struct fixture *fx = *state;
    int n = scaled(200, 50);
    const char *topic = "db.public.k_latency";
    assert_int_equal(rd_kafka_mock_topic_create(fx->mc, topic, 1, NBROKERS),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    sp_test_sql(fx->conn, "CREATE TABLE k_latency (id int PRIMARY KEY, v int)");
    write_simple_config(fx, "k_latency", NULL, NULL);
    start_siphon(fx);
    sp_test_sql(fx->conn, "INSERT INTO k_latency VALUES (0, 0)");
    for (int i = 0; i < 3000 && partition0_count(fx, topic) < 1; i++) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 10000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(partition0_count(fx, topic), 1);
    int64_t *lat = calloc((size_t)n, sizeof(*lat));
    assert_non_null(lat);
    for (int i = 1; i <= n; i++) {
        sp_test_sql(fx->conn, "INSERT INTO k_latency VALUES (%d, 0)", i);
        int64_t t0 = now_us();
        int64_t got = 0;
        while ((got = partition0_count(fx, topic)) < i + 1 && now_us() - t0 < 10000000) {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = 200000};
            nanosleep(&ts, NULL);
        }
        assert_int_equal(got, i + 1);
        lat[i - 1] = now_us() - t0;
        /* Arrivals at random phases of whatever timers siphon runs. */
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(rand() % 20) * 1000000L};
        nanosleep(&ts, NULL);
    }
    stop_siphon(fx);
    qsort(lat, (size_t)n, sizeof(*lat), cmp_i64);
    int64_t sum = 0;
    for (int i = 0; i < n; i++) {
        sum += lat[i];
    }
    int64_t p50 = lat[n / 2];
    int64_t p90 = lat[n * 9 / 10];
    fprintf(stderr,
            "kafka: %d one-row transactions, commit -> in partition: mean %.1f ms, p50 %.1f ms, "
            "p90 %.1f ms, max %.1f ms\n",
            n, (double)sum / n / 1000.0, (double)p50 / 1000.0, (double)p90 / 1000.0,
            (double)lat[n - 1] / 1000.0);
    free(lat);
    /* Waiting for a 100 ms poll to time out would put the median near 50 ms or above. */
    assert_true(p50 < 30000);
}

int main(void)
{
    /* SP_TEST_FILTER=name runs only the tests matching it (cmocka's wildcards). */
    const char *filter = getenv("SP_TEST_FILTER");
    if (filter != NULL && filter[0] != '\0') {
        cmocka_set_test_filter(filter);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(every_event_arrives_once_in_key_order_with_headers, test_cleanup),
        cmocka_unit_test_teardown(retriable_broker_errors_lose_and_reorder_nothing, test_cleanup),
        cmocka_unit_test_teardown(oversized_event_goes_to_dead_letter_others_flow, test_cleanup),
        cmocka_unit_test_teardown(broker_refusal_dead_letters_exactly_the_refused_events,
                                  test_cleanup),
        cmocka_unit_test_teardown(tombstone_follows_delete_only_when_enabled, test_cleanup),
        cmocka_unit_test_teardown(topic_template_replaces_characters_kafka_refuses, test_cleanup),
        cmocka_unit_test_teardown(confirmed_position_never_passes_undelivered_events, test_cleanup),
        cmocka_unit_test_teardown(refused_batches_are_retried_until_delivered, test_cleanup),
        cmocka_unit_test_teardown(check_reports_brokers_and_topics, test_cleanup),
        cmocka_unit_test_teardown(one_row_transactions_reach_kafka_within_milliseconds,
                                  test_cleanup),
        cmocka_unit_test_teardown(ignore_policy_drops_refused_event_and_moves_on, test_cleanup),
        cmocka_unit_test_teardown(fail_policy_exits_and_restart_loses_nothing, test_cleanup),
        cmocka_unit_test_teardown(leaderless_partition_holds_only_its_keys, test_cleanup),
    };
    return SP_TEST_RUN_GROUP("kafka", tests, group_setup, group_teardown);
}
