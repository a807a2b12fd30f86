/*
 * Options every sink shares: how the pipeline batches records for it. Each
 * sink's conf struct starts with a struct sp_sink_batching and its option
 * table starts with SP_SINK_BATCH_OPTS(its conf type, "default partitions",
 * "default retry_hold"): sinks that promise commit order across keys (one
 * file, one Redis stream) hold their partition, the others only keys.
 */
#ifndef SIPHON_CORE_SINKCONF_H
#define SIPHON_CORE_SINKCONF_H

#include <stdint.h>

#include "core/opt.h"

struct sp_sink_batching {
    int64_t batch_size;  /* records */
    int64_t batch_bytes; /* bytes */
    int64_t linger_ms;   /* wait this long for more records while the sink is idle */
    int64_t partitions;  /* ordered lanes: one batch in flight each */
    int retry_hold;      /* enum sp_retry_hold: what waits while a batch is retried */
};

enum sp_retry_hold {
    SP_RETRY_HOLD_KEY = 0,   /* only the keys of the failing batch */
    SP_RETRY_HOLD_PARTITION, /* its whole partition (strict order across keys) */
};

extern const char *const sp_sink_retry_hold_names[]; /* "key", "partition" */

#define SP_SINK_BATCH_OPTS(T, partitions_default, retry_hold_default)                             \
    SP_OPT_INT("batch_size", T, batching.batch_size, "4096", 1, 1000000,                          \
               "most records handed to the sink at once"),                                        \
        SP_OPT_SIZE("batch_bytes", T, batching.batch_bytes, "4MiB", 1024, INT64_C(1) << 30,       \
                    "most bytes handed to the sink at once"),                                     \
        SP_OPT_DURATION("linger", T, batching.linger_ms, "0ms", 0, 60000,                         \
                        "how long to wait for more records before handing an idle sink a batch"), \
        SP_OPT_INT("partitions", T, batching.partitions, partitions_default, 1, 1024,             \
                   "ordered lanes by key hash: changes to one key stay in order, different "      \
                   "keys are delivered in parallel (one batch in flight per lane)"),              \
        SP_OPT_ENUM("retry_hold", T, batching.retry_hold, retry_hold_default,                     \
                    sp_sink_retry_hold_names,                                                     \
                    "what waits while a batch is retried: key (only its keys; the rest of its "   \
                    "lane goes on) or partition (its whole lane, so a lane's records keep "       \
                    "commit order across keys)")

#endif
