/* Command-line helpers shared by main.c and the demo. */
#ifndef SIPHON_CLI_H
#define SIPHON_CLI_H

#include <stdint.h>

#include <signal.h>

#include "config/config.h"

/* SIGINT/SIGTERM set the stop flag; a second one kills at once. SIGPIPE ignored. */
void sp_cli_install_signals(void);
volatile sig_atomic_t *sp_cli_stop_flag(void);
/* Run cfg until stopped; logs the outcome. Returns the exit code (0 or 1). */
int sp_cli_run_config(const struct sp_config *cfg, uint64_t until_lsn);
/* `siphon demo`: duration_s 0 runs until Ctrl-C. Returns the exit code. */
int sp_cli_demo(int duration_s, int rate);

#endif
