/*
 * The stream runtime: connects sources to sinks as the config's streams
 * say. On the pipeline thread it reads sources, routes each event to the
 * streams that want its table, formats it, and batches the records per
 * sink; each sink delivers on its own thread. Acknowledgements come back to
 * the pipeline thread, which feeds the checkpoint trackers and confirms
 * positions to the sources.
 *
 * Bounded memory: records in flight are accounted; past the limit the
 * pipeline stops reading sources (the sources still run their timers, so
 * the server's keepalives are answered).
 */
#ifndef SIPHON_CORE_PIPELINE_H
#define SIPHON_CORE_PIPELINE_H

#include <stdint.h>

#include <signal.h>

#include "config/config.h"
#include "core/err.h"

struct sp_pipeline;

struct sp_run_opts {
    uint64_t until_lsn; /* stop once everything up to it is confirmed; 0: never */
};

/* Build the runtime from cfg (borrowed; must outlive the pipeline). */
struct sp_pipeline *sp_pipeline_new(const struct sp_config *cfg);
/* Open sinks (starting their delivery threads), then sources. */
int sp_pipeline_open(struct sp_pipeline *pl, struct sp_err *err);
/*
 * Run until *stop is set (then drain and confirm within the configured
 * shutdown timeout), until opts->until_lsn, or until a fatal error.
 * Returns 0 on a clean stop, negative with err otherwise.
 */
int sp_pipeline_run(struct sp_pipeline *pl, const struct sp_run_opts *opts,
                    volatile sig_atomic_t *stop, struct sp_err *err);
void sp_pipeline_free(struct sp_pipeline *pl);

struct sp_check;
/* `siphon check`: run every used source's and sink's check, opening nothing for good. */
void sp_pipeline_check(struct sp_pipeline *pl, struct sp_check *chk);

/* Counters (for tests, logs and metrics). */
struct sp_pipeline_stats {
    uint64_t events;  /* change events routed to at least one stream */
    uint64_t records; /* records handed to sinks */
    uint64_t acked;   /* records durably accepted */
    uint64_t dead_letters;
    uint64_t ignored;
    uint64_t inflight_bytes;
    uint64_t confirmed_lsn;
};
void sp_pipeline_stats(const struct sp_pipeline *pl, struct sp_pipeline_stats *out);

#endif
