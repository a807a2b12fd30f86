/*
 * The plugin seams: sources, formats and sinks are a static type (ops +
 * option table) and configured instances. Adding a sink is one file, one
 * line in core/registry.c.
 *
 * Threads: sources, formats and the pipeline run on the pipeline thread.
 * A sink's open/check/close run on the pipeline thread; submit, poll and
 * flush run on the sink's own delivery thread; sp_batch_done and wake may be
 * called from any thread.
 */
#ifndef SIPHON_CORE_PLUGIN_H
#define SIPHON_CORE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

#include "core/err.h"
#include "core/event.h"
#include "core/opt.h"
#include "telemetry/log.h"
#include "util/buf.h"

struct sp_pipeline;
struct sp_ckpt_txn;
struct sp_check;

/* ---- records and batches: what sinks see ---- */

/*
 * One formatted event on its way to a sink. Allocated in one block; the
 * strings point into it. Owned by the pipeline; a sink must not keep a
 * pointer to it after sp_batch_done.
 */
struct sp_rec {
    struct sp_rec *next;
    struct sp_ckpt_txn *txn; /* checkpoint handle, released when acknowledged */
    uint64_t lsn;
    uint64_t commit_lsn;
    uint32_t seq;
    char op;            /* 'c' 'u' 'd' 'r' 't' 'm' */
    uint32_t key_hash;  /* partitioning hash of the key */
    const char *id;     /* stable event id "<commit lsn>:<seq>" */
    const char *source; /* the configured source name, for topic templates */
    const char *schema; /* "" for messages */
    const char *table;  /* "" for messages; the prefix for 'm' */
    const char
        *dest; /* from a route/outbox flow: overrides the sink's destination template; NULL: none */
    const char *key; /* may be NULL */
    size_t key_len;
    const char *value;
    size_t value_len;
    int64_t commit_time_us;
    struct sp_err *err; /* set by a sink that rejects this record for good */
    size_t mem;         /* bytes accounted against the memory limit */
};

struct sp_sink;

struct sp_delivery;

struct sp_batch {
    struct sp_sink *sk;
    struct sp_rec *head;
    struct sp_rec *tail;
    size_t count;
    size_t bytes;
    int attempt; /* 1 on the first submit */
    int part;    /* the sink partition it belongs to (key hash % partitions) */
    /* Owned by the runtime (core/delivery.c), not by sinks: */
    struct sp_batch *next;
    struct sp_delivery *dl;
    int rc;
    struct sp_err err;
    int64_t not_before_ms;
};

/*
 * A sink reports a batch's outcome exactly once: rc 0 (every record
 * durably accepted, except those whose rec->err it set: rejected for good,
 * or, with err->retriable, not delivered this time: the runtime sends those
 * again, with every later record of their keys), or a negative code with
 * err (the whole batch failed; retriable or not as err says). Thread-safe.
 */
void sp_batch_done(struct sp_batch *b, int rc, const struct sp_err *err);

/* ---- sinks ---- */

struct sp_sink_ops {
    const char *type;          /* matches `type:` in YAML */
    const char *summary;       /* one line, for docs and `siphon check` */
    const struct sp_opt *opts; /* option table, ends with SP_OPT_END */
    size_t conf_size;

    int (*open)(struct sp_sink *sk, struct sp_err *err);
    /* Queue a batch. On 0 the sink calls sp_batch_done() exactly once, later
     * or before returning; on error it never does. */
    int (*submit)(struct sp_sink *sk, struct sp_batch *b, struct sp_err *err);
    int (*poll)(struct sp_sink *sk, int timeout_ms); /* drive I/O, deliver acks */
    /* Optional, with poll: make a poll in progress return soon (the runtime has a batch
     * for the sink). Called from another thread, with the runtime's lock held: it must
     * not block, nor call back into the runtime. A wake with no poll in progress may make
     * the next poll return at once. */
    void (*wake)(struct sp_sink *sk);
    int (*flush)(struct sp_sink *sk, int timeout_ms, struct sp_err *err);
    int (*check)(struct sp_sink *sk, struct sp_err *err); /* `siphon check` */
    void (*close)(struct sp_sink *sk);
};

struct sp_sink {
    const struct sp_sink_ops *ops;
    const char *name;
    void *conf;  /* conf_size bytes, filled from opts */
    void *state; /* owned by the plugin, freed in close */
    struct sp_logctx log;
    struct sp_pipeline *pl;
};

/* ---- formats ---- */

struct sp_format;

struct sp_format_ops {
    const char *name;
    const char *summary;
    int (*init)(struct sp_format *fmt, struct sp_err *err);
    /* Append the key (may leave it empty: no key) and the value of ev. */
    int (*encode)(struct sp_format *fmt, const struct sp_event *ev, struct sp_buf *key,
                  struct sp_buf *value, struct sp_err *err);
    void (*fini)(struct sp_format *fmt);
};

struct sp_format {
    const struct sp_format_ops *ops;
    const char *toast_placeholder; /* value for unchanged TOASTed columns */
    void *state;
};

/* ---- sources ---- */

struct sp_source;

/* Where a source delivers events: takes ownership of ev. */
typedef int (*sp_emit_fn)(void *ctx, struct sp_event *ev, struct sp_err *err);

struct sp_table_ref {
    char *schema;
    char *table;
};

/* A stream reading from a source (for snapshots, which are per stream and table). */
struct sp_stream_ref {
    const char *name;
    struct sp_table_ref *tables;
    int ntables;
};

struct sp_source_ops {
    const char *type;
    const char *summary;
    const struct sp_opt *opts;
    size_t conf_size;

    /* Connect, verify the setup, create slot/publication if needed. */
    int (*open)(struct sp_source *src, struct sp_err *err);
    /* Socket to wait on for reading, or -1 (e.g. while reconnecting). */
    int (*fd)(struct sp_source *src);
    /* Decode what is available without blocking, at most budget messages;
     * events go to src->emit. Returns the number of messages handled (0: none
     * available) or a negative code on a fatal error. Transient connection
     * errors are handled inside (reconnect), never returned. */
    int (*read)(struct sp_source *src, int budget, struct sp_err *err);
    /* Timers (status updates, keepalives, reconnects); returns ms until it
     * wants to be called again. Also called while the pipeline backpressures. */
    int (*tick)(struct sp_source *src, struct sp_err *err);
    /* Everything up to lsn is durable downstream: report it to the server. */
    int (*confirm)(struct sp_source *src, uint64_t lsn, bool idle, struct sp_err *err);
    /* `siphon check`: report findings through chk. */
    int (*check)(struct sp_source *src, struct sp_check *chk);
    void (*close)(struct sp_source *src);
};

struct sp_source {
    const struct sp_source_ops *ops;
    const char *name;
    void *conf;
    void *state;
    struct sp_logctx log;
    struct sp_table_ref *tables; /* union of the tables of every stream on this source */
    int ntables;
    struct sp_stream_ref *streams; /* the streams on this source */
    int nstreams;
    const char *state_dir; /* the config's state_dir, or NULL */
    sp_emit_fn emit;
    void *emit_ctx;
    /* Set by the source when the server's position moves while nothing is
     * in flight (keepalive); the pipeline may confirm it. */
    uint64_t idle_lsn;
    /* Set by the pipeline while over its memory limit: read must return after
     * the message it is handling, so memory stays bounded. */
    bool backpressure;
};

#endif
