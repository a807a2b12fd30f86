/*
 * In-memory plugins for pipeline tests, built the same way as real ones:
 * a source fed with prepared events, a sink that captures records and can
 * hold acknowledgements or fail on demand, and a format writing
 * {"id":"<event id>","op":"c","n":<seq>}.
 */
#ifndef SIPHON_TESTS_FAKES_H
#define SIPHON_TESTS_FAKES_H

#include <stdint.h>

#include <pthread.h>
#include <stdbool.h>

#include "core/plugin.h"
#include "core/sinkconf.h"

struct fake_source_conf {
    struct sp_event_list events; /* emitted in order, consumed */
    int reads;                   /* read calls that emitted something */
    int ticks;                   /* tick calls */
    int emitted;                 /* events emitted */
    uint64_t confirmed;          /* last confirmed LSN */
    int confirms;
};

struct fake_sink_conf {
    struct sp_sink_batching batching; /* must be first */
    pthread_mutex_t mu;
    /* captured (accepted) records, in delivery order */
    char **ids;
    char **values;
    int n;
    int cap;
    int submits;
    int batches;
    /* behaviour */
    int fail_retriable;    /* fail this many submits with a retriable error */
    const char *reject_id; /* reject this record id for good */
    const char *fail_key;  /* fail batches holding this key (retriable)... */
    int fail_key_times;    /* ...this many times */
    const char *soft_key;  /* give back records of this key (retriable rec->err)... */
    int soft_times;        /* ...in this many batches, acknowledging the others */
    bool hold;             /* keep batches without acknowledging them */
    struct sp_batch *held[4096];
    int nheld;
};

extern const struct sp_source_ops fake_source_ops;
extern const struct sp_sink_ops fake_sink_ops;
extern const struct sp_format_ops fake_format_ops;

void fake_sink_init(struct fake_sink_conf *c);
void fake_sink_fini(struct fake_sink_conf *c);
/* Acknowledge every held batch (from the test thread). */
void fake_sink_release(struct fake_sink_conf *c);
int fake_sink_count(struct fake_sink_conf *c);

/* Append a transaction of n inserts on table t with commit_lsn = base, end_lsn = base + 100. */
void fake_source_add_txn(struct fake_source_conf *c, struct sp_relation *rel, uint64_t base, int n);
struct sp_relation *fake_relation(const char *schema, const char *table);

#endif
