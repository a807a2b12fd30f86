// SPDX-License-Identifier: Apache-2.0
/*
 * siphon's command line: run, check, demo, version.
 *
 * Exit codes (DESIGN.md): 0 clean stop, 1 runtime failure, 2 bad usage or
 * configuration.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config/config.h"
#include "config/fes.h"
#include "config/yaml.h"
#include "core/check.h"
#include "core/pipeline.h"
#include "core/registry.h"
#include "source/pg/snapshot.h"
#include "telemetry/log.h"
#include "util/lsn.h"

static void main_usage(FILE *out)
{
    fprintf(out, "usage: siphon <command> [options]\n"
                 "\n"
                 "commands:\n"
                 "  run -c FILE        stream until SIGTERM/SIGINT, then drain and confirm\n"
                 "  check -c FILE      validate the config, reach every source and sink, check\n"
                 "                     wal_level, privileges, slot, publication and tables\n"
                 "  snapshot -c FILE --stream NAME [--table T] [--where SQL]\n"
                 "                     ask the running siphon to re-read tables of a stream\n"
                 "                     (all, or T; only rows matching the SQL condition)\n"
                 "  demo               a private PostgreSQL, a generator, live output\n"
                 "  version            print the version\n"
                 "\n"
                 "options:\n"
                 "  -c, --config FILE        configuration file (YAML)\n"
                 "      --log-level LEVEL    error, warn, info (default), debug, trace\n"
                 "      --log-format FORMAT  text (default) or json\n"
                 "      --until-lsn LSN      run: stop once everything up to LSN is confirmed\n"
                 "      --duration SECONDS   demo: stop after this long (default: until Ctrl-C)\n"
                 "      --rate N             demo: transactions per second (default 5)\n"
                 "\n"
                 "exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or configuration\n");
}

struct main_args {
    const char *command;
    const char *config;
    uint64_t until_lsn;
    int duration;
    int rate;
    const char *stream;
    const char *table;
    const char *where;
};

static int main_parse(int argc, char **argv, struct main_args *a)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"log-level", required_argument, NULL, 'L'},
        {"log-format", required_argument, NULL, 'F'},
        {"until-lsn", required_argument, NULL, 'U'},
        {"duration", required_argument, NULL, 'D'},
        {"rate", required_argument, NULL, 'R'},
        {"stream", required_argument, NULL, 'S'},
        {"table", required_argument, NULL, 'T'},
        {"where", required_argument, NULL, 'W'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    enum sp_log_level level = SP_LOG_INFO;
    bool json = false;
    memset(a, 0, sizeof(*a));
    a->rate = 5;
    if (argc < 2) {
        main_usage(stderr);
        return 2;
    }
    a->command = argv[1];
    if (strcmp(a->command, "-h") == 0 || strcmp(a->command, "--help") == 0 ||
        strcmp(a->command, "help") == 0) {
        main_usage(stdout);
        exit(0);
    }
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            a->config = optarg;
            break;
        case 'L':
            if (sp_log_parse_level(optarg, &level) != 0) {
                fprintf(stderr,
                        "siphon: unknown log level \"%s\" (use error, warn, info, "
                        "debug or trace)\n",
                        optarg);
                return 2;
            }
            break;
        case 'F':
            if (strcmp(optarg, "json") == 0) {
                json = true;
            } else if (strcmp(optarg, "text") != 0) {
                fprintf(stderr, "siphon: unknown log format \"%s\" (use text or json)\n", optarg);
                return 2;
            }
            break;
        case 'U':
            if (!sp_lsn_parse(optarg, &a->until_lsn)) {
                fprintf(stderr, "siphon: --until-lsn: \"%s\" is not an LSN (like 0/16B3748)\n",
                        optarg);
                return 2;
            }
            break;
        case 'D':
            a->duration = atoi(optarg);
            if (a->duration <= 0) {
                fprintf(stderr, "siphon: --duration needs a positive number of seconds\n");
                return 2;
            }
            break;
        case 'R':
            a->rate = atoi(optarg);
            if (a->rate <= 0 || a->rate > 10000) {
                fprintf(stderr, "siphon: --rate needs a number from 1 to 10000\n");
                return 2;
            }
            break;
        case 'S':
            a->stream = optarg;
            break;
        case 'T':
            a->table = optarg;
            break;
        case 'W':
            a->where = optarg;
            break;
        case 'h':
            main_usage(stdout);
            exit(0);
        default:
            main_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "siphon: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    sp_log_setup(level, json);
    return 0;
}

static int main_load(const char *path, struct sp_config **cfg)
{
    struct sp_diag diag;
    sp_diag_init(&diag);
    if (path == NULL) {
        fprintf(stderr, "siphon: missing -c FILE (the configuration to use)\n");
        return 2;
    }
    int rc = sp_cfg_load(path, NULL, cfg, &diag);
    sp_diag_print(&diag, stderr);
    sp_diag_fini(&diag);
    return rc == 0 ? 0 : 2;
}

static int main_run(const struct main_args *a)
{
    struct sp_config *cfg = NULL;
    int rc = main_load(a->config, &cfg);
    if (rc != 0) {
        return rc;
    }
    sp_cli_install_signals();
    sp_log_info(&sp_log_main, "siphon %s starting with \"%s\": %d sources, %d sinks, %d streams",
                SP_VERSION, a->config, cfg->nsources, cfg->nsinks, cfg->nstreams);
    rc = sp_cli_run_config(cfg, a->until_lsn);
    sp_cfg_free(cfg);
    return rc;
}

static int main_check(const struct main_args *a)
{
    struct sp_config *cfg = NULL;
    int rc = main_load(a->config, &cfg);
    if (rc != 0) {
        return rc;
    }
    printf("ok    [config] \"%s\": %d sources, %d sinks, %d streams\n", a->config, cfg->nsources,
           cfg->nsinks, cfg->nstreams);
    if (cfg->fes) {
        /* What the resources became, as a siphon configuration (secrets hidden). */
        struct sp_buf y;
        sp_buf_init(&y);
        sp_node_write_yaml(cfg->doc->root, &y);
        printf("\n# FabricEventStream resources translated (docs/fes.md):\n%s\n",
               y.data != NULL ? y.data : "");
        sp_buf_fini(&y);
    }
    struct sp_check chk;
    sp_check_init(&chk, stdout);
    /* The pipeline computes each source's table list; open nothing. */
    struct sp_pipeline *pl = sp_pipeline_new(cfg);
    sp_pipeline_check(pl, &chk);
    sp_pipeline_free(pl);
    printf("\n%d ok, %d warnings, %d failures\n", chk.oks, chk.warnings, chk.failures);
    sp_cfg_free(cfg);
    return chk.failures > 0 ? 1 : 0;
}

static int main_snapshot(const struct main_args *a)
{
    if (a->stream == NULL) {
        fprintf(stderr, "siphon: snapshot needs --stream NAME (the stream whose tables to read)\n");
        return 2;
    }
    struct sp_config *cfg = NULL;
    int rc = main_load(a->config, &cfg);
    if (rc != 0) {
        return rc;
    }
    const struct sp_cfg_stream *st = NULL;
    for (int i = 0; i < cfg->nstreams; i++) {
        if (strcmp(cfg->streams[i].name, a->stream) == 0) {
            st = &cfg->streams[i];
        }
    }
    rc = 2;
    if (st == NULL) {
        fprintf(stderr, "siphon: %s has no stream \"%s\"\n", a->config, a->stream);
    } else if (strcmp(cfg->sources[st->source].ops->type, "postgres") != 0) {
        fprintf(stderr, "siphon: stream \"%s\" reads from a %s source; snapshots need postgres\n",
                a->stream, cfg->sources[st->source].ops->type);
    } else {
        bool found = a->table == NULL;
        for (int t = 0; t < st->ntables && !found; t++) {
            char q[300];
            snprintf(q, sizeof(q), "%s.%s", st->tables[t].schema, st->tables[t].table);
            found = strcmp(q, a->table) == 0 || strcmp(st->tables[t].table, a->table) == 0;
        }
        if (!found) {
            fprintf(stderr, "siphon: stream \"%s\" has no table \"%s\"\n", a->stream, a->table);
        } else {
            struct sp_source src = {.ops = cfg->sources[st->source].ops,
                                    .name = cfg->sources[st->source].name,
                                    .conf = cfg->sources[st->source].conf};
            sp_logctx_init(&src.log, "source", src.ops->type, src.name);
            struct sp_err err;
            sp_err_clear(&err);
            rc = sp_pg_request_snapshot(&src, a->stream, a->table, a->where, &err) == 0 ? 0 : 1;
            if (rc != 0) {
                sp_log_emit_hint(&sp_log_main, SP_LOG_ERROR, err.hint, "%s", err.msg);
            }
        }
    }
    sp_cfg_free(cfg);
    return rc;
}

int main(int argc, char **argv)
{
    struct main_args a;
    int rc = main_parse(argc, argv, &a);
    if (rc != 0) {
        return rc;
    }
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    if (strcmp(a.command, "version") == 0) {
        printf("siphon %s\n", SP_VERSION);
        return 0;
    }
    if (strcmp(a.command, "run") == 0) {
        return main_run(&a);
    }
    if (strcmp(a.command, "check") == 0) {
        return main_check(&a);
    }
    if (strcmp(a.command, "snapshot") == 0) {
        return main_snapshot(&a);
    }
    if (strcmp(a.command, "demo") == 0) {
        return sp_cli_demo(a.duration, a.rate);
    }
    fprintf(stderr, "siphon: unknown command \"%s\"\n\n", a.command);
    main_usage(stderr);
    return 2;
}
