/*
 * The validated configuration (DESIGN.md, "Configuration"): what `siphon run`
 * and `siphon check` work from. Produced by sp_cfg_load from one YAML file.
 *
 * Ownership: everything hangs off struct sp_config and is freed by
 * sp_cfg_free. Locations point into the config's own file name copy.
 */
#ifndef SIPHON_CONFIG_CONFIG_H
#define SIPHON_CONFIG_CONFIG_H

#include <stdint.h>

#include <stdbool.h>
#include <stdio.h>

#include "core/plugin.h"
#include "util/buf.h"
#include "util/mem.h"

struct sp_loc {
    const char *file;
    int line; /* 1-based; 0 when unknown */
    int col;  /* 1-based */
};

/* Diagnostics collected while loading: every error found, up to a limit. */
struct sp_diag_item {
    struct sp_loc loc;
    bool warning;
    char *msg;
    char *hint;        /* may be NULL */
    char *source_line; /* the line of the file at loc, for the caret; may be NULL */
    int caret_len;     /* width of the ~~~ marker */
    int caret_col;     /* 1-based column of the caret in source_line (secrets masked there) */
};

/* At most this many errors (and as many warnings) are kept; later ones are counted. */
#define SP_DIAG_MAX 20

struct sp_diag {
    struct sp_diag_item *items;
    int n;       /* items kept */
    int nerrors; /* errors found, kept or not */
    int nwarnings;
    int dropped;  /* errors and warnings found past SP_DIAG_MAX, not kept */
    char **files; /* owned copies of the file names items point to */
    int nfiles;
};

void sp_diag_init(struct sp_diag *d);
void sp_diag_fini(struct sp_diag *d);
/* Print every item compiler-style ("file:line:col: error: msg", line, caret, hint). */
void sp_diag_print(const struct sp_diag *d, FILE *out);
/* Same into a buffer (appends). */
void sp_diag_format(const struct sp_diag *d, struct sp_buf *out);

enum sp_recovery {
    SP_RECOVERY_FAIL = 0,   /* stop the stream, confirm nothing past the event */
    SP_RECOVERY_IGNORE,     /* drop, count, log */
    SP_RECOVERY_DEAD_LETTER /* write to another sink */
};

struct sp_cfg_source {
    char *name;
    struct sp_loc loc;
    const struct sp_source_ops *ops;
    void *conf; /* ops->conf_size bytes filled from ops->opts */
};

struct sp_cfg_sink {
    char *name;
    struct sp_loc loc;
    const struct sp_sink_ops *ops;
    void *conf;
};

struct sp_cfg_table {
    char *schema; /* "public" when not given */
    char *table;
    struct sp_loc loc;
};

struct sp_node;
struct sp_yaml_doc;
struct sp_flows;

struct sp_cfg_stream {
    char *name;
    struct sp_loc loc;
    int source; /* index into sp_config.sources */
    struct sp_cfg_table *tables;
    int ntables;
    const struct sp_format_ops *format;
    int sink; /* index into sp_config.sinks */
    enum sp_recovery recovery;
    int recovery_sink;           /* dead_letter only; else -1 */
    bool messages;               /* deliver logical decoding messages (default true) */
    char *toast_placeholder;     /* default "__siphon_unavailable" */
    const struct sp_node *flows; /* raw `flows:` YAML (config/yaml.h); may be NULL */
    struct sp_flows *chain;      /* flows compiled from it (flow/flow.h); NULL: none */
};

struct sp_config {
    char *file;
    struct sp_cfg_source *sources;
    int nsources;
    struct sp_cfg_sink *sinks;
    int nsinks;
    struct sp_cfg_stream *streams;
    int nstreams;
    /* top-level settings */
    int64_t memory_limit;     /* bytes of in-flight events; default 16MiB */
    int64_t shutdown_timeout; /* ms to drain on SIGTERM; default 30s */
    char *state_dir;          /* may be NULL */
    struct sp_yaml_doc *doc;  /* the parsed file (owns the flows nodes) */
    bool fes;                 /* translated from FabricEventStream resources (config/fes.h) */
};

/*
 * Load and validate path. On success returns 0 and *out. On failure returns
 * SP_EINVAL with every problem found in diag (which may also hold warnings
 * on success). lookup_env resolves ${NAME}; NULL means getenv.
 */
typedef const char *(*sp_env_fn)(const char *name);
int sp_cfg_load(const char *path, sp_env_fn lookup_env, struct sp_config **out,
                struct sp_diag *diag);
/* Same from a string; name is used in locations. */
int sp_cfg_load_string(const char *name, const char *text, size_t len, sp_env_fn lookup_env,
                       struct sp_config **out, struct sp_diag *diag);
void sp_cfg_free(struct sp_config *cfg);

/* Option table of the top-level `settings:` section (for docs). */
extern const struct sp_opt sp_cfg_settings_opts[];
/* The keys of a stream and of its `recovery:` mapping (for docs; `flows` is not in them). */
extern const struct sp_opt sp_cfg_stream_opts[];
extern const struct sp_opt sp_cfg_recovery_opts[];

/* ident as PostgreSQL reads it back: plain when it may be, else double-quoted. */
struct sp_buf;
void sp_cfg_put_ident(struct sp_buf *b, const char *ident);

/*
 * Parse a table name as written in `tables:` (or on the command line):
 * `table` (schema public), `schema.table`, either part double-quoted to keep
 * case and special characters (`"My Schema"."Order"`, `""` for a quote).
 * Unquoted parts are folded to lower case, as PostgreSQL does. On success
 * *schema and *table are heap strings; on failure SP_EINVAL with err.
 */
int sp_cfg_parse_table(const char *s, char **schema, char **table, struct sp_err *err);

/*
 * Copy of s with passwords replaced by "****": `password=...` (libpq
 * keyword form or URI query parameter) and `user:pass@` in URIs. For
 * showing connection strings to people. The caller frees the result.
 */
char *sp_cfg_mask_conninfo(const char *s);

/*
 * Markdown reference of one option table: "### title" (none when title is
 * NULL), the summary (may be NULL) and a table of name, type, default and
 * description. Appends to out.
 */
void sp_opt_doc_markdown(const char *title, const char *summary, const struct sp_opt *opts,
                         struct sp_buf *out);
/* The whole configuration reference (docs/config.md): settings, every
 * registered source, sink and format, and the stream keys. Appends to out. */
void sp_cfg_doc_markdown(struct sp_buf *out);

#endif
