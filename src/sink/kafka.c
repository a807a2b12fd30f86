// SPDX-License-Identifier: Apache-2.0
/*
 * Sink "kafka": produces each event to a Kafka topic with librdkafka's
 * idempotent producer (enable.idempotence=true, acks=all). The topic comes
 * from a template ("{source}.{schema}.{table}"), the Kafka key is the
 * event key, and headers carry the op, the table, the commit LSN and the
 * event id. Optionally a tombstone (same key, no value) follows a delete.
 *
 * Acknowledgement is driven by delivery reports: a batch is done once every
 * message produced for it has been reported. A record the cluster refuses
 * for good (message too large, invalid record, policy violation) gets
 * rec->err and goes to the stream's recovery policy; any other failure
 * (a timeout with delivery_timeout set, a missing topic, an authorization
 * error, a purge at shutdown, a fatal producer error) gives the whole batch
 * back to the runtime, which retries it with backoff. Transient broker
 * errors never get that far: with message.timeout.ms 0 librdkafka retries
 * them itself, in order, without duplicates, thanks to idempotence.
 *
 * What it does not do: transactions (exactly-once across topics), or
 * choosing Kafka partitions itself (librdkafka's partitioner hashes the key).
 *
 * Threads: open, check and close run on the pipeline thread while the
 * delivery thread is not running; submit, poll and flush run on the
 * delivery thread, which is also the only thread that serves delivery
 * reports (rd_kafka_poll/rd_kafka_flush), so the batch bookkeeping needs no
 * lock. librdkafka's log callback runs on its own threads and only logs.
 */
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/plugin.h"
#include "core/sinkconf.h"
#include "util/lsn.h"
#include "util/time.h"

#define KAFKA_TOPIC_MAX          249   /* Kafka's limit on topic name length */
#define KAFKA_CHECK_TIMEOUT_MS   10000 /* `siphon check`: how long to try to reach the brokers */
#define KAFKA_QUEUE_FULL_WAIT_MS 1000  /* how long submit waits for room in librdkafka's queue */
#define KAFKA_CLOSE_WAIT_MS      5000  /* close: how long to wait for purged messages' reports */

static const char *const kafka_compression_names[] = {"none", "gzip", "snappy",
                                                      "lz4",  "zstd", NULL};

struct kafka_conf {
    struct sp_sink_batching batching;
    char *brokers;
    char *topic;
    int compression;
    bool tombstones;
    struct sp_strmap properties;
    int64_t delivery_timeout_ms;
    char *client_id;
};

static const struct sp_opt kafka_opts[] = {
    SP_SINK_BATCH_OPTS(struct kafka_conf, "16", "key"),
    SP_OPT_STR("brokers", struct kafka_conf, brokers, NULL, SP_OPT_REQUIRED,
               "bootstrap brokers, comma-separated host:port list"),
    SP_OPT_STR("topic", struct kafka_conf, topic, "{source}.{schema}.{table}", 0,
               "topic name template: {source}, {schema} and {table} are replaced by the "
               "event's source name, schema and table; characters Kafka does not allow in "
               "topic names become _"),
    SP_OPT_ENUM("compression", struct kafka_conf, compression, "none", kafka_compression_names,
                "compression of the produce requests (librdkafka's compression.codec)"),
    SP_OPT_BOOL("tombstones", struct kafka_conf, tombstones, "false",
                "after a delete, also produce a tombstone (the same key with no value) so "
                "log compaction removes the key"),
    SP_OPT_MAP("properties", struct kafka_conf, properties,
               "librdkafka properties passed through as they are, e.g. "
               "security.protocol, sasl.username, linger.ms (see librdkafka's "
               "CONFIGURATION.md)"),
    SP_OPT_DURATION("delivery_timeout", struct kafka_conf, delivery_timeout_ms, "0ms", 0,
                    INT64_C(7) * 24 * 3600 * 1000,
                    "how long librdkafka may try to deliver a message before the batch is "
                    "retried from siphon (duplicates possible); 0 retries forever, in order"),
    SP_OPT_STR("client_id", struct kafka_conf, client_id, "siphon", 0,
               "client.id the brokers see in their logs and quotas"),
    SP_OPT_END,
};

/* Properties that an option of this sink sets: a clear error instead of two sources of truth. */
static const struct {
    const char *property;
    const char *option;
} kafka_owned_props[] = {
    {"bootstrap.servers", "brokers"},
    {"metadata.broker.list", "brokers"},
    {"client.id", "client_id"},
    {"compression.codec", "compression"},
    {"compression.type", "compression"},
    {"message.timeout.ms", "delivery_timeout"},
    {"delivery.timeout.ms", "delivery_timeout"},
};

/* What librdkafka's callbacks see (the conf opaque). */
struct kafka_client {
    struct sp_sink *sk;
    bool quiet;           /* `siphon check`: errors are reported once, not logged */
    bool all_down;        /* an ALL_BROKERS_DOWN error was seen (served by poll) */
    char last_error[256]; /* the first broker connection error seen */
};

struct kafka_batch;

/* One produced message: what its delivery report settles. */
struct kafka_msg {
    struct kafka_batch *kb;
    struct sp_rec *r;
};

/* A batch in flight. Delivery thread only. */
struct kafka_batch {
    struct kafka_batch *prev;
    struct kafka_batch *next;
    struct sp_batch *b;
    size_t pending; /* produced, not yet reported */
    bool producing; /* submit is still producing its messages */
    bool failed;    /* a retriable failure: the whole batch goes back */
    struct sp_err err;
    size_t nmsgs;
    struct kafka_msg msgs[];
};

struct kafka_topic {
    char *name;
    rd_kafka_topic_t *rkt;
};

struct kafka_state {
    struct kafka_client cl;
    rd_kafka_t *rk;
    struct kafka_topic *topics; /* topic handles by name, in creation order */
    int ntopics;
    int topics_cap;
    int last_topic;              /* index of the last one used, -1 */
    struct kafka_batch *batches; /* in flight */
    bool closing;                /* delivery reports are no longer settled */
    struct sp_buf scratch;       /* header values */
    /*
     * Wakes poll: librdkafka writes to it when its main queue (delivery
     * reports, errors, logs) goes from empty to non-empty
     * (rd_kafka_queue_io_event_enable), and wake writes to it when the
     * runtime has a batch. An eventfd, so writes from any thread are safe.
     */
    int efd;
    rd_kafka_queue_t *mainq;
};

/* ---- topic templates ---- */

static bool kafka_topic_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* The value of {name} for r, or NULL when name is not a placeholder. */
static const char *kafka_placeholder(const char *name, size_t len, const struct sp_rec *r)
{
    static const struct sp_rec empty = {0};
    if (r == NULL) {
        r = &empty;
    }
    if (len == 6 && memcmp(name, "source", 6) == 0) {
        return r->source != NULL ? r->source : "";
    }
    if (len == 6 && memcmp(name, "schema", 6) == 0) {
        return r->schema != NULL ? r->schema : "";
    }
    if (len == 5 && memcmp(name, "table", 5) == 0) {
        return r->table != NULL ? r->table : "";
    }
    return NULL;
}

/* Checks a topic template; *literal tells whether it has no placeholder. */
static int kafka_topic_validate(const char *tmpl, bool *literal, struct sp_err *err)
{
    *literal = true;
    if (tmpl[0] == '\0') {
        return sp_err_set(err, SP_EINVAL, "topic must not be empty");
    }
    for (const char *p = tmpl; *p != '\0'; p++) {
        if (*p == '{') {
            const char *end = strchr(p, '}');
            if (end == NULL) {
                int rc =
                    sp_err_set(err, SP_EINVAL, "unterminated placeholder in topic \"%s\"", tmpl);
                sp_err_hint(err, "placeholders are {source}, {schema} and {table}");
                return rc;
            }
            if (kafka_placeholder(p + 1, (size_t)(end - p - 1), NULL) == NULL) {
                int rc = sp_err_set(err, SP_EINVAL, "unknown placeholder \"%.*s\" in topic \"%s\"",
                                    (int)(end - p + 1), p, tmpl);
                sp_err_hint(err, "placeholders are {source}, {schema} and {table}");
                return rc;
            }
            *literal = false;
            p = end;
            continue;
        }
        if (!kafka_topic_char_ok(*p)) {
            int rc = sp_err_set(err, SP_EINVAL, "topic \"%s\" has a character Kafka does not allow",
                                tmpl);
            sp_err_hint(err, "topic names may use letters, digits, '.', '_' and '-'");
            return rc;
        }
    }
    if (*literal &&
        (strlen(tmpl) > KAFKA_TOPIC_MAX || strcmp(tmpl, ".") == 0 || strcmp(tmpl, "..") == 0)) {
        return sp_err_set(err, SP_EINVAL, "\"%s\" is not a valid Kafka topic name", tmpl);
    }
    return 0;
}

/*
 * Expands the (validated) template for r into out (KAFKA_TOPIC_MAX + 1
 * bytes). Characters Kafka does not allow become '_'. Returns false when the
 * name would be empty, too long, "." or "..".
 */
static bool kafka_topic_expand(const char *tmpl, const struct sp_rec *r, char *out)
{
    size_t n = 0;
    for (const char *p = tmpl; *p != '\0'; p++) {
        const char *v = NULL;
        char lit[2] = {*p, '\0'};
        if (*p == '{') {
            const char *end = strchr(p, '}');
            v = kafka_placeholder(p + 1, (size_t)(end - p - 1), r);
            p = end;
        } else {
            v = lit;
        }
        for (; *v != '\0'; v++) {
            if (n == KAFKA_TOPIC_MAX) {
                out[n] = '\0';
                return false;
            }
            char c = *v;
            if (!kafka_topic_char_ok(c)) {
                c = '_';
            }
            out[n++] = c;
        }
    }
    out[n] = '\0';
    return n > 0 && strcmp(out, ".") != 0 && strcmp(out, "..") != 0;
}

/*
 * The destination a flow set (route, outbox) as the topic: the same
 * character rule and limits as an expanded template.
 */
static bool kafka_topic_from_dest(const char *dest, char *out)
{
    size_t n = 0;
    for (const char *p = dest; *p != '\0'; p++) {
        if (n == KAFKA_TOPIC_MAX) {
            out[n] = '\0';
            return false;
        }
        char c = *p;
        if (!kafka_topic_char_ok(c)) {
            c = '_';
        }
        out[n++] = c;
    }
    out[n] = '\0';
    return n > 0 && strcmp(out, ".") != 0 && strcmp(out, "..") != 0;
}

/* The topic handle for name, created on first use; NULL if librdkafka refuses it. */
static rd_kafka_topic_t *kafka_topic_get(struct kafka_state *st, const char *name)
{
    if (st->last_topic >= 0 && strcmp(st->topics[st->last_topic].name, name) == 0) {
        return st->topics[st->last_topic].rkt;
    }
    for (int i = 0; i < st->ntopics; i++) {
        if (strcmp(st->topics[i].name, name) == 0) {
            st->last_topic = i;
            return st->topics[i].rkt;
        }
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(st->rk, name, NULL);
    if (rkt == NULL) {
        return NULL;
    }
    if (st->ntopics == st->topics_cap) {
        st->topics_cap = st->topics_cap == 0 ? 8 : st->topics_cap * 2;
        st->topics = sp_xrealloc(st->topics, (size_t)st->topics_cap * sizeof(*st->topics));
    }
    st->topics[st->ntopics].name = sp_xstrdup(name);
    st->topics[st->ntopics].rkt = rkt;
    st->last_topic = st->ntopics++;
    return rkt;
}

static void kafka_topics_free(struct kafka_state *st)
{
    for (int i = 0; i < st->ntopics; i++) {
        rd_kafka_topic_destroy(st->topics[i].rkt);
        free(st->topics[i].name);
    }
    free(st->topics);
    st->topics = NULL;
    st->ntopics = 0;
    st->topics_cap = 0;
    st->last_topic = -1;
}

/* ---- librdkafka callbacks ---- */

static void kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const struct kafka_client *cl = rd_kafka_opaque(rk);
    /* syslog levels; librdkafka recovers from what it logs as errors, hence warn. */
    enum sp_log_level lv = level <= 2   ? SP_LOG_ERROR
                           : level <= 4 ? SP_LOG_WARN
                           : level <= 6 ? SP_LOG_INFO
                                        : SP_LOG_DEBUG;
    /* Quiet in `check` (the outcome is reported once), and fatal errors are logged by
     * kafka_on_error with what happens next. */
    if ((cl->quiet || strcmp(fac, "FATAL") == 0) && lv < SP_LOG_DEBUG) {
        lv = SP_LOG_DEBUG;
    }
    SP_LOG_AT(&cl->sk->log, lv, "librdkafka %s: %s", fac, buf);
}

static void kafka_on_error(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
    struct kafka_client *cl = opaque;
    if (code == RD_KAFKA_RESP_ERR__FATAL) {
        char msg[512];
        rd_kafka_fatal_error(rk, msg, sizeof(msg));
        sp_log_emit_hint(&cl->sk->log, SP_LOG_ERROR,
                         "the batches in flight are retried on a new producer",
                         "the kafka producer failed: %s", msg);
        return;
    }
    if ((code == RD_KAFKA_RESP_ERR__TRANSPORT || code == RD_KAFKA_RESP_ERR__RESOLVE ||
         code == RD_KAFKA_RESP_ERR__AUTHENTICATION || code == RD_KAFKA_RESP_ERR__SSL) &&
        cl->last_error[0] == '\0') {
        snprintf(cl->last_error, sizeof(cl->last_error), "%s", reason);
    }
    if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        cl->all_down = true;
        if (!cl->quiet) {
            sp_log_emit_hint(&cl->sk->log, SP_LOG_WARN,
                             "delivery resumes when a broker is reachable; nothing is confirmed "
                             "meanwhile",
                             "all kafka brokers are down: %s", reason);
        }
        return;
    }
    sp_log_debug(&cl->sk->log, "librdkafka error %s: %s", rd_kafka_err2name(code), reason);
}

/* ---- the producer ---- */

static int kafka_conf_set(rd_kafka_conf_t *kc, const char *name, const char *value,
                          struct sp_err *err)
{
    char errstr[512];
    if (rd_kafka_conf_set(kc, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        /* librdkafka's message may quote the value: keep secrets out of it. */
        bool secret = strstr(name, "password") != NULL || strstr(name, "secret") != NULL ||
                      strstr(name, "key") != NULL || strstr(name, "token") != NULL;
        int rc = sp_err_set(err, SP_EINVAL, "invalid kafka property \"%s\"%s%s", name,
                            secret ? "" : ": ", secret ? "" : errstr);
        sp_err_hint(err, "see librdkafka's CONFIGURATION.md for the properties and their values");
        return rc;
    }
    return 0;
}

static const char *kafka_prop(const struct kafka_conf *conf, const char *name)
{
    for (int i = 0; i < conf->properties.n; i++) {
        if (strcmp(conf->properties.keys[i], name) == 0) {
            return conf->properties.values[i];
        }
    }
    return NULL;
}

/* The sink's defaults, then the user's properties (which may override them). */
static int kafka_conf_build(struct sp_sink *sk, rd_kafka_conf_t *kc, struct sp_err *err)
{
    const struct kafka_conf *conf = sk->conf;
    char num[32];
    for (int i = 0; i < conf->properties.n; i++) {
        for (size_t j = 0; j < SP_ARRAY_LEN(kafka_owned_props); j++) {
            if (strcmp(conf->properties.keys[i], kafka_owned_props[j].property) == 0) {
                int rc = sp_err_set(err, SP_EINVAL, "property \"%s\" is set by option \"%s\"",
                                    kafka_owned_props[j].property, kafka_owned_props[j].option);
                sp_err_hint(err, "remove it from properties and set %s instead",
                            kafka_owned_props[j].option);
                return rc;
            }
        }
        if (strcmp(conf->properties.keys[i], "transactional.id") == 0) {
            int rc = sp_err_set(err, SP_EUNSUPP, "property \"transactional.id\" is not supported");
            sp_err_hint(err, "siphon uses the idempotent producer without transactions; remove "
                             "transactional.id");
            return rc;
        }
    }
    /* Room for every batch the runtime can have in flight (tombstones double it). */
    int64_t room =
        conf->batching.partitions * conf->batching.batch_size * (conf->tombstones ? 2 : 1) + 1024;
    room = room < 100000 ? 100000 : (room > 10000000 ? 10000000 : room);
    snprintf(num, sizeof(num), "%lld", (long long)room);
    char timeout[32];
    snprintf(timeout, sizeof(timeout), "%lld", (long long)conf->delivery_timeout_ms);
    const char *defaults[][2] = {
        {"bootstrap.servers", conf->brokers},
        {"client.id", conf->client_id},
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"compression.codec", kafka_compression_names[conf->compression]},
        {"message.timeout.ms", timeout},
        {"queue.buffering.max.messages", num},
        /* Brokers close idle connections; that is not worth a warning each time. */
        {"log.connection.close", "false"},
    };
    for (size_t i = 0; i < SP_ARRAY_LEN(defaults); i++) {
        if (kafka_conf_set(kc, defaults[i][0], defaults[i][1], err) != 0) {
            sp_err_prefix(err, "option for %s", defaults[i][0]);
            return err->code;
        }
    }
    for (int i = 0; i < conf->properties.n; i++) {
        if (kafka_conf_set(kc, conf->properties.keys[i], conf->properties.values[i], err) != 0) {
            return err->code;
        }
    }
    return 0;
}

static void kafka_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

/* A producer whose callbacks see cl; dr: with delivery reports (not for `check`). */
static rd_kafka_t *kafka_producer_new(struct sp_sink *sk, struct kafka_client *cl, bool dr,
                                      struct sp_err *err)
{
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    if (kafka_conf_build(sk, kc, err) != 0) {
        rd_kafka_conf_destroy(kc);
        return NULL;
    }
    rd_kafka_conf_set_opaque(kc, cl);
    rd_kafka_conf_set_log_cb(kc, kafka_on_log);
    rd_kafka_conf_set_error_cb(kc, kafka_on_error);
    if (dr) {
        rd_kafka_conf_set_dr_msg_cb(kc, kafka_on_delivery);
    }
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(kc);
        sp_err_set(err, SP_EINVAL, "could not create the kafka producer: %s", errstr);
        sp_err_hint(err, "check properties against librdkafka's CONFIGURATION.md");
        return NULL;
    }
    return rk;
}

/* ---- delivery reports ---- */

/* Errors that concern this one record and will not go away by retrying it. */
static bool kafka_err_permanent(rd_kafka_resp_err_t code)
{
    switch (code) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return true;
    default:
        return false;
    }
}

static int kafka_err_code(rd_kafka_resp_err_t code)
{
    switch (code) {
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        return SP_ETIMEDOUT;
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE:
        return SP_ECONN;
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
        return SP_ESTOPPED;
    default:
        return SP_ESERVER;
    }
}

static const char *kafka_err_hint(rd_kafka_resp_err_t code)
{
    switch (code) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
        return "raise message.max.bytes in properties and the topic's max.message.bytes, or "
               "keep such rows out of the stream";
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
        return "the brokers did not accept it within delivery_timeout; set delivery_timeout "
               "to 0 to let librdkafka retry without a limit";
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        return "create the topic, or let the brokers create topics "
               "(auto.create.topics.enable=true)";
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
        return "grant this principal WRITE and DESCRIBE on the topic";
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        return "the idempotent producer needs IDEMPOTENT_WRITE on the cluster (Kafka < 2.8)";
    default:
        return "";
    }
}

static void kafka_batch_unlink(struct kafka_state *st, struct kafka_batch *kb)
{
    if (kb->prev != NULL) {
        kb->prev->next = kb->next;
    } else {
        st->batches = kb->next;
    }
    if (kb->next != NULL) {
        kb->next->prev = kb->prev;
    }
    kb->prev = NULL;
    kb->next = NULL;
}

/* Every message of kb is reported (kb is unlinked): tell the runtime, free kb. */
static void kafka_batch_report(struct sp_sink *sk, struct kafka_batch *kb)
{
    struct sp_batch *b = kb->b;
    bool failed = kb->failed;
    struct sp_err err = kb->err;
    size_t nmsgs = kb->nmsgs;
    free(kb);
    if (failed) {
        sp_batch_done(b, err.code, &err);
        return;
    }
    sp_log_debug(&sk->log, "delivered a batch of %zu records (%zu messages, partition %d)",
                 b->count, nmsgs, b->part);
    sp_batch_done(b, 0, NULL);
}

static void kafka_batch_finish(struct sp_sink *sk, struct kafka_batch *kb)
{
    kafka_batch_unlink(sk->state, kb);
    kafka_batch_report(sk, kb);
}

/* A message of kb failed with code: reject its record, or fail the batch. */
static void kafka_msg_failed(struct kafka_batch *kb, struct sp_rec *r, rd_kafka_resp_err_t code,
                             const char *topic, const char *detail)
{
    if (kafka_err_permanent(code)) {
        if (r->err == NULL) {
            r->err = sp_xcalloc(1, sizeof(*r->err));
            sp_err_set(r->err, SP_EREJECTED, "kafka refused event %s for topic \"%s\": %s", r->id,
                       topic, detail);
            sp_err_hint(r->err, "%s", kafka_err_hint(code));
        }
        return;
    }
    if (!kb->failed) {
        kb->failed = true;
        sp_err_set(&kb->err, kafka_err_code(code), "could not deliver event %s to topic \"%s\": %s",
                   r->id, topic, detail);
        sp_err_hint(&kb->err, "%s", kafka_err_hint(code));
        kb->err.retriable = true;
    }
}

/*
 * A produced message was not delivered, for a reason a later attempt may
 * not have (delivery_timeout passed, a partition without a leader, a
 * missing topic, a purge, a fatal producer error): its record alone is
 * given back (a retriable rec->err), so the records of the batch that did
 * reach the brokers are not sent twice and only the keys of the
 * undelivered ones wait (core/delivery.c).
 */
static void kafka_msg_undelivered(struct sp_rec *r, rd_kafka_resp_err_t code, const char *topic,
                                  const char *detail)
{
    if (r->err != NULL) {
        return; /* its other message (delete + tombstone) already decided */
    }
    r->err = sp_xcalloc(1, sizeof(*r->err));
    sp_err_set(r->err, kafka_err_code(code), "could not deliver event %s to topic \"%s\": %s",
               r->id, topic, detail);
    sp_err_hint(r->err, "%s", kafka_err_hint(code));
    r->err->retriable = true;
}

static void kafka_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct kafka_client *cl = opaque;
    struct kafka_state *st = cl->sk->state;
    if (st->closing) {
        return; /* close settles whatever is left itself */
    }
    struct kafka_msg *km = m->_private;
    struct kafka_batch *kb = km->kb;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR && kafka_err_permanent(m->err)) {
        kafka_msg_failed(kb, km->r, m->err, rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
    } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kafka_msg_undelivered(km->r, m->err, rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
    }
    kb->pending--;
    if (kb->pending == 0 && !kb->producing) {
        kafka_batch_finish(cl->sk, kb);
    }
}

/* ---- open, submit, poll, flush, close ---- */

/* Hands the main queue's events to st->efd (see struct kafka_state). */
static void kafka_events_attach(struct kafka_state *st)
{
    static const uint64_t one = 1;
    st->mainq = rd_kafka_queue_get_main(st->rk);
    rd_kafka_queue_io_event_enable(st->mainq, st->efd, &one, sizeof(one));
}

/* Before the producer is destroyed: librdkafka must not write to efd any more. */
static void kafka_events_detach(struct kafka_state *st)
{
    if (st->mainq != NULL) {
        rd_kafka_queue_io_event_enable(st->mainq, -1, NULL, 0);
        rd_kafka_queue_destroy(st->mainq);
        st->mainq = NULL;
    }
}

static void kafka_state_free(struct kafka_state *st)
{
    kafka_events_detach(st);
    kafka_topics_free(st);
    if (st->rk != NULL) {
        rd_kafka_destroy(st->rk);
    }
    if (st->efd >= 0) {
        close(st->efd);
    }
    sp_buf_fini(&st->scratch);
    free(st);
}

static int kafka_open(struct sp_sink *sk, struct sp_err *err)
{
    const struct kafka_conf *conf = sk->conf;
    bool literal;
    if (kafka_topic_validate(conf->topic, &literal, err) != 0) {
        return err->code;
    }
    struct kafka_state *st = sp_xcalloc(1, sizeof(*st));
    st->cl.sk = sk;
    st->last_topic = -1;
    sp_buf_init(&st->scratch);
    st->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (st->efd < 0) {
        int rc = sp_err_errno(err, errno, "could not create an eventfd");
        st->efd = -1;
        kafka_state_free(st);
        return rc;
    }
    sk->state = st;
    st->rk = kafka_producer_new(sk, &st->cl, true, err);
    if (st->rk == NULL) {
        kafka_state_free(st);
        sk->state = NULL;
        return err->code;
    }
    kafka_events_attach(st);
    const char *idem = kafka_prop(conf, "enable.idempotence");
    if (idem != NULL && strcasecmp(idem, "true") != 0) {
        sp_log_warn(&sk->log,
                    "enable.idempotence is %s: broker errors may duplicate or reorder "
                    "changes to one key",
                    idem);
    }
    const char *acks = kafka_prop(conf, "acks");
    if (acks != NULL && strcmp(acks, "all") != 0 && strcmp(acks, "-1") != 0) {
        sp_log_warn(&sk->log, "acks is %s: an acknowledged event can be lost when a broker fails",
                    acks);
    }
    sp_log_info(&sk->log, "producing to %s, topic \"%s\"", conf->brokers, conf->topic);
    return 0;
}

/* Brings the producer back after a fatal error, once nothing is in flight on it. */
static int kafka_recover(struct sp_sink *sk, struct sp_err *err)
{
    struct kafka_state *st = sk->state;
    if (st->rk != NULL) {
        char msg[512];
        if (rd_kafka_fatal_error(st->rk, msg, sizeof(msg)) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            return 0;
        }
        if (st->batches != NULL) {
            rd_kafka_poll(st->rk, 0);
            int rc = sp_err_set(err, SP_ESERVER, "the kafka producer failed: %s", msg);
            sp_err_hint(err, "a new producer is created once the batches in flight have settled");
            err->retriable = true;
            return rc;
        }
        sp_log_warn(&sk->log, "creating a new kafka producer after a fatal error: %s", msg);
        kafka_events_detach(st);
        kafka_topics_free(st);
        rd_kafka_destroy(st->rk);
        st->rk = NULL;
    }
    st->rk = kafka_producer_new(sk, &st->cl, true, err);
    if (st->rk == NULL) {
        err->retriable = true;
        return err->code;
    }
    kafka_events_attach(st);
    return 0;
}

/*
 * Produces one message for r (tombstone: no value). Returns 0 when it was
 * queued or r was rejected for good, -1 after a retriable failure (kb->failed).
 */
static int kafka_produce(struct sp_sink *sk, struct kafka_batch *kb, struct sp_rec *r,
                         bool tombstone)
{
    const struct kafka_conf *conf = sk->conf;
    struct kafka_state *st = sk->state;
    char topic[KAFKA_TOPIC_MAX + 1];
    bool named = r->dest != NULL ? kafka_topic_from_dest(r->dest, topic)
                                 : kafka_topic_expand(conf->topic, r, topic);
    if (!named) {
        kafka_msg_failed(kb, r, RD_KAFKA_RESP_ERR__INVALID_ARG, topic,
                         "no valid topic name (empty, \".\", \"..\" or longer than 249)");
        return 0;
    }
    rd_kafka_topic_t *rkt = kafka_topic_get(st, topic);
    if (rkt == NULL) {
        kafka_msg_failed(kb, r, RD_KAFKA_RESP_ERR__INVALID_ARG, topic,
                         rd_kafka_err2str(rd_kafka_last_error()));
        return 0;
    }
    struct kafka_msg *km = &kb->msgs[kb->nmsgs];
    km->kb = kb;
    km->r = r;
    char op[16];
    snprintf(op, sizeof(op), "%s", tombstone ? "tombstone" : (char[2]){r->op, '\0'});
    char lsn[SP_LSN_BUFSZ];
    sp_lsn_str(r->commit_lsn != 0 ? r->commit_lsn : r->lsn, lsn);
    sp_buf_reset(&st->scratch);
    if (r->schema != NULL && r->schema[0] != '\0') {
        sp_buf_puts(&st->scratch, r->schema);
        sp_buf_putc(&st->scratch, '.');
    }
    sp_buf_puts(&st->scratch, r->table != NULL ? r->table : "");
    void *value = tombstone ? NULL : (void *)r->value;
    size_t value_len = tombstone ? 0 : r->value_len;
    void *key = (void *)r->key;
    size_t key_len = r->key != NULL ? r->key_len : 0;
    int64_t deadline = 0;
    for (;;) {
        rd_kafka_resp_err_t code = rd_kafka_producev(
            st->rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, key_len),
            RD_KAFKA_V_VALUE(value, value_len), RD_KAFKA_V_HEADER("op", op, -1),
            RD_KAFKA_V_HEADER("table", st->scratch.data, (ssize_t)st->scratch.len),
            RD_KAFKA_V_HEADER("lsn", lsn, -1), RD_KAFKA_V_HEADER("id", r->id, -1),
            RD_KAFKA_V_OPAQUE(km), RD_KAFKA_V_END);
        if (code == RD_KAFKA_RESP_ERR_NO_ERROR) {
            kb->nmsgs++;
            kb->pending++;
            return 0;
        }
        if (code == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            int64_t now = sp_time_mono_ms();
            if (deadline == 0) {
                deadline = now + KAFKA_QUEUE_FULL_WAIT_MS;
            }
            if (now < deadline) {
                rd_kafka_poll(st->rk, 10); /* reports free room */
                continue;
            }
        }
        kafka_msg_failed(kb, r, code, topic, rd_kafka_err2str(code));
        return kafka_err_permanent(code) ? 0 : -1;
    }
}

static int kafka_submit(struct sp_sink *sk, struct sp_batch *b, struct sp_err *err)
{
    const struct kafka_conf *conf = sk->conf;
    struct kafka_state *st = sk->state;
    if (kafka_recover(sk, err) != 0) {
        return err->code;
    }
    size_t nmsgs = 0;
    for (struct sp_rec *r = b->head; r != NULL; r = r->next) {
        /* A retried batch: what was rejected last time is judged again. */
        free(r->err);
        r->err = NULL;
        nmsgs += conf->tombstones && r->op == 'd' && r->key != NULL ? 2 : 1;
    }
    struct kafka_batch *kb = sp_xcalloc(1, sizeof(*kb) + nmsgs * sizeof(struct kafka_msg));
    kb->b = b;
    kb->producing = true;
    kb->next = st->batches;
    if (st->batches != NULL) {
        st->batches->prev = kb;
    }
    st->batches = kb;
    for (struct sp_rec *r = b->head; r != NULL; r = r->next) {
        if (kafka_produce(sk, kb, r, false) != 0) {
            break;
        }
        if (conf->tombstones && r->op == 'd' && r->key != NULL && r->err == NULL &&
            kafka_produce(sk, kb, r, true) != 0) {
            break;
        }
    }
    kb->producing = false;
    if (kb->pending == 0 && kb->failed && kb->nmsgs == 0) {
        /* Nothing went out: hand the failure back directly. */
        *err = kb->err;
        kafka_batch_unlink(st, kb);
        free(kb);
        return err->code;
    }
    if (kb->pending == 0) {
        kafka_batch_finish(sk, kb);
    }
    rd_kafka_poll(st->rk, 0);
    return 0;
}

/*
 * Serves librdkafka's events, waiting up to timeout_ms for one, or for a
 * wake. (rd_kafka_poll alone could not be interrupted when the runtime
 * has a new batch: rd_kafka_yield may only be called from a callback.)
 */
static int kafka_poll(struct sp_sink *sk, int timeout_ms)
{
    struct kafka_state *st = sk->state;
    int n = st->rk != NULL ? rd_kafka_poll(st->rk, 0) : 0;
    if (n > 0) {
        return n;
    }
    /* With no producer (its re-creation failed) this only waits: submit tries again. */
    struct pollfd pfd = {.fd = st->efd, .events = POLLIN, .revents = 0};
    if (poll(&pfd, 1, timeout_ms) > 0) {
        uint64_t v;
        ssize_t rd = read(st->efd, &v, sizeof(v));
        (void)rd; /* EAGAIN: another read took it */
    }
    return st->rk != NULL ? rd_kafka_poll(st->rk, 0) : 0;
}

/* wake: a batch is ready; from the pipeline thread. */
static void kafka_wake(struct sp_sink *sk)
{
    struct kafka_state *st = sk->state;
    uint64_t one = 1;
    ssize_t w = write(st->efd, &one, sizeof(one));
    (void)w; /* fails only when the counter would overflow: poll wakes anyway */
}

static int kafka_flush(struct sp_sink *sk, int timeout_ms, struct sp_err *err)
{
    struct kafka_state *st = sk->state;
    if (st->rk == NULL) {
        return 0;
    }
    if (rd_kafka_flush(st->rk, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        int rc = sp_err_set(err, SP_ETIMEDOUT, "%d kafka messages still not delivered after %d ms",
                            rd_kafka_outq_len(st->rk), timeout_ms);
        sp_err_hint(err, "they are not confirmed, so they are sent again on the next start");
        return rc;
    }
    return 0;
}

static void kafka_close(struct sp_sink *sk)
{
    struct kafka_state *st = sk->state;
    if (st == NULL) {
        return;
    }
    if (st->batches != NULL && st->rk != NULL) {
        /* Undelivered messages are given back unconfirmed; in-flight ones may still have
         * reached the brokers, so they may be sent twice (at-least-once). */
        sp_log_info(&sk->log, "giving back the batches still in flight");
        rd_kafka_purge(st->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(st->rk, KAFKA_CLOSE_WAIT_MS);
        rd_kafka_poll(st->rk, 0);
    }
    st->closing = true;
    kafka_events_detach(st);
    kafka_topics_free(st);
    if (st->rk != NULL) {
        rd_kafka_destroy(st->rk);
        st->rk = NULL;
    }
    while (st->batches != NULL) {
        struct kafka_batch *kb = st->batches;
        st->batches = kb->next;
        if (!kb->failed) {
            kb->failed = true;
            sp_err_set(&kb->err, SP_ESTOPPED,
                       "the kafka producer closed before %zu messages were reported", kb->pending);
            kb->err.retriable = true;
        }
        kafka_batch_report(sk, kb);
    }
    kafka_state_free(st);
    sk->state = NULL;
}

/* ---- check ---- */

static int kafka_check(struct sp_sink *sk, struct sp_err *err)
{
    const struct kafka_conf *conf = sk->conf;
    bool literal;
    if (kafka_topic_validate(conf->topic, &literal, err) != 0) {
        return err->code;
    }
    struct kafka_client cl = {.sk = sk, .quiet = true};
    rd_kafka_t *rk = kafka_producer_new(sk, &cl, false, err);
    if (rk == NULL) {
        return err->code;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR__TIMED_OUT;
    int64_t deadline = sp_time_mono_ms() + KAFKA_CHECK_TIMEOUT_MS;
    while (sp_time_mono_ms() < deadline) {
        code = rd_kafka_metadata(rk, 1, NULL, &md, 500);
        if (code == RD_KAFKA_RESP_ERR_NO_ERROR) {
            break;
        }
        md = NULL;
        rd_kafka_poll(rk, 0); /* errors: connection refused, name not resolved */
        if (cl.all_down) {
            break;
        }
    }
    int rc = 0;
    if (md == NULL) {
        rc =
            sp_err_set(err, SP_ECONN, "could not reach the kafka brokers \"%s\": %s", conf->brokers,
                       cl.last_error[0] != '\0' ? cl.last_error : rd_kafka_err2str(code));
        sp_err_hint(err, "check brokers (host:port, comma-separated), that the brokers run and "
                         "that this host can reach them");
    } else if (literal) {
        bool found = false;
        for (int i = 0; i < md->topic_cnt && !found; i++) {
            if (strcmp(md->topics[i].topic, conf->topic) != 0) {
                continue;
            }
            found = true;
            if (md->topics[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                rc = sp_err_set(err, SP_ESERVER, "topic \"%s\": %s", conf->topic,
                                rd_kafka_err2str(md->topics[i].err));
                sp_err_hint(err, "%s", kafka_err_hint(md->topics[i].err));
            }
        }
        if (!found) {
            rc = sp_err_set(err, SP_ESERVER, "topic \"%s\" does not exist", conf->topic);
            sp_err_hint(err, "%s", kafka_err_hint(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART));
        }
    }
    if (md != NULL) {
        sp_log_debug(&sk->log, "reached %d kafka brokers, %d topics", md->broker_cnt,
                     md->topic_cnt);
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_destroy(rk);
    return rc;
}

const struct sp_sink_ops sp_sink_kafka = {
    .type = "kafka",
    .summary = "produce events to Kafka topics with the idempotent producer",
    .opts = kafka_opts,
    .conf_size = sizeof(struct kafka_conf),
    .open = kafka_open,
    .submit = kafka_submit,
    .poll = kafka_poll,
    .wake = kafka_wake,
    .flush = kafka_flush,
    .check = kafka_check,
    .close = kafka_close,
};
