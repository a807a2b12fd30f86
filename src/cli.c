// SPDX-License-Identifier: Apache-2.0
/*
 * Pieces of the command line shared by `run` and `demo`: signal handling
 * (first SIGINT/SIGTERM drains and stops, a second one a second or more
 * later exits at once) and running a loaded configuration.
 */
#include "cli.h"

#include <signal.h>
#include <string.h>
#include <time.h>

#include "core/pipeline.h"
#include "telemetry/log.h"
#include "util/lsn.h"

/*
 * A signal this soon after the first is the same stop delivered twice: to
 * the process and to its process group, as `timeout` and supervisors that
 * signal a whole group do. Only a later one means "do not wait".
 */
#define CLI_REPEAT_MS 1000

static volatile sig_atomic_t cli_stop;
static struct timespec cli_first; /* when the first signal came */

static void cli_on_signal(int sig)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now); /* async-signal-safe */
    if (cli_stop) {
        long long ms = (long long)(now.tv_sec - cli_first.tv_sec) * 1000 +
                       (now.tv_nsec - cli_first.tv_nsec) / 1000000;
        if (ms < CLI_REPEAT_MS) {
            return;
        }
        /* A second signal: the user does not want to wait for the drain. */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    cli_first = now;
    cli_stop = 1;
}

void sp_cli_install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = cli_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

volatile sig_atomic_t *sp_cli_stop_flag(void)
{
    return &cli_stop;
}

int sp_cli_run_config(const struct sp_config *cfg, uint64_t until_lsn)
{
    struct sp_err err;
    sp_err_clear(&err);
    struct sp_pipeline *pl = sp_pipeline_new(cfg);
    int rc = sp_pipeline_open(pl, &err);
    if (rc == 0) {
        struct sp_run_opts opts = {.until_lsn = until_lsn};
        rc = sp_pipeline_run(pl, &opts, sp_cli_stop_flag(), &err);
    }
    if (rc != 0) {
        sp_log_emit_hint(&sp_log_main, SP_LOG_ERROR, err.hint, "%s", err.msg);
    }
    struct sp_pipeline_stats stats;
    sp_pipeline_stats(pl, &stats);
    sp_pipeline_free(pl);
    sp_log_info(&sp_log_main,
                "stopped: %llu events, %llu records delivered, %llu dead letters, %llu ignored, "
                "confirmed " SP_LSN_FMT,
                (unsigned long long)stats.events, (unsigned long long)stats.acked,
                (unsigned long long)stats.dead_letters, (unsigned long long)stats.ignored,
                SP_LSN_ARGS(stats.confirmed_lsn));
    return rc == 0 ? 0 : 1;
}
