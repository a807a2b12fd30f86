// SPDX-License-Identifier: Apache-2.0
/*
 * Sink "null": acknowledges every batch at once and discards it. Events are
 * still decoded, routed and formatted, so it measures everything but the
 * destination (benchmarks), and lets a stream be switched off without
 * losing its slot position.
 */
#include "core/plugin.h"
#include "core/sinkconf.h"

struct null_conf {
    struct sp_sink_batching batching;
};

static const struct sp_opt null_opts[] = {
    SP_SINK_BATCH_OPTS(struct null_conf, "1", "key"),
    SP_OPT_END,
};

static int null_open(struct sp_sink *sk, struct sp_err *err)
{
    (void)sk;
    (void)err;
    return 0;
}

static int null_submit(struct sp_sink *sk, struct sp_batch *b, struct sp_err *err)
{
    (void)sk;
    (void)err;
    sp_batch_done(b, 0, NULL);
    return 0;
}

const struct sp_sink_ops sp_sink_null = {
    .type = "null",
    .summary = "discard events after formatting them (benchmarks, switched-off streams)",
    .opts = null_opts,
    .conf_size = sizeof(struct null_conf),
    .open = null_open,
    .submit = null_submit,
};
