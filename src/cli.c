// SPDX-License-Identifier: Apache-2.0
/*
 * Pieces of the command line shared by `run` and `demo`: signal handling
 * (first SIGINT/SIGTERM drains and stops, a second one exits at once) and
 * running a loaded configuration.
 */
#include "cli.h"

#include <signal.h>
#include <string.h>

#include "core/pipeline.h"
#include "telemetry/log.h"
#include "util/lsn.h"

static volatile sig_atomic_t cli_stop;

static void cli_on_signal(int sig)
{
    if (cli_stop) {
        /* Second signal: the user does not want to wait for the drain. */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
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
