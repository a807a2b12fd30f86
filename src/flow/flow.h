/*
 * Flows (DESIGN.md, "Data flow"): per-stream steps between the router and
 * the format. A stream's `flows:` list is compiled once at config load into
 * a chain (struct sp_flows) and applied to every event the stream wants, in
 * order. Each flow can pass an event on unchanged, drop it, change it or fan
 * it out into several events.
 *
 * A flow type is a name, a compile function (YAML -> private state, with
 * every mistake reported at file:line:col), an apply function and a free
 * function; types are registered by name in core/registry.c.
 *
 * Events are shared: the source's event may be routed to several streams,
 * so apply never changes the event it is given. A flow that changes an
 * event returns a copy (sp_flow_copy) with the change; the chain keeps the
 * copies alive until the pipeline has formatted them (copies share the
 * bytes of the event they were made from).
 *
 * Errors: an apply error is an event error: the pipeline hands the event to
 * the stream's recovery policy (dead letter, ignore, fail). Error messages
 * must never contain column values (they reach logs and dead letters).
 *
 * Threads: compile and free run on the loading thread, apply on the
 * pipeline thread; a chain and its flows' state belong to one pipeline.
 */
#ifndef SIPHON_FLOW_FLOW_H
#define SIPHON_FLOW_FLOW_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

#include "core/err.h"
#include "core/event.h"

struct sp_node;
struct sp_diag;
struct sp_flow;

/* What compile gets besides its node: where to report and the YAML text. */
struct sp_flow_cctx {
    struct sp_diag *d;
    const char *what; /* message prefix, e.g. `stream "orders"` */
    const char *text; /* the whole YAML document, to place errors inside scalars; may be NULL */
    size_t len;
};

/* What apply returns (or a negative SP_E* code with err). */
enum sp_flow_rc {
    SP_FLOW_PASS = 0, /* the event goes on unchanged */
    SP_FLOW_DROP = 1, /* the event stops here */
    SP_FLOW_EMIT = 2, /* the events pushed to out (new ones, zero or more) replace it */
};

struct sp_opt;

struct sp_flow_ops {
    const char *name;          /* the key in a `flows:` item, e.g. "filter" */
    const char *summary;       /* one line, for docs */
    const char *usage;         /* for docs: the value the flow takes, with an example */
    const struct sp_opt *opts; /* for docs: the options of that value (or of each table's
                                * value), if it is a mapping; may be NULL */
    /*
     * Build fl->state from node (the value under the flow's name). Reports
     * every problem to cc->d with its location and returns SP_EINVAL, or 0.
     * fl->ops->free is called on fl either way.
     */
    int (*compile)(struct sp_flow *fl, struct sp_node *node, const struct sp_flow_cctx *cc);
    /* See enum sp_flow_rc. ev is read-only; events pushed to out are owned by out. */
    int (*apply)(struct sp_flow *fl, const struct sp_event *ev, struct sp_event_list *out,
                 struct sp_err *err);
    /* Optional: the transaction's COMMIT (commit->commit_lsn, end_lsn, commit_time_us) was
     * read; events pushed to out are delivered before it is confirmed, without passing
     * later flows. Returns 0 or a negative SP_E* code. */
    int (*commit)(struct sp_flow *fl, const struct sp_event *commit, struct sp_event_list *out,
                  struct sp_err *err);
    void (*free)(struct sp_flow *fl);
    /* A flow that redacts values (mask): it is also applied to the dead letter of an
     * event that fails in a later flow, so what it hides never reaches one. */
    bool redacts;
};

struct sp_flow {
    const struct sp_flow_ops *ops;
    int index;    /* position in the stream's list, 0-based */
    void *state;  /* owned by the flow type */
    uint64_t in;  /* events applied */
    uint64_t out; /* events passed on (emitted events count each) */
};

/* A compiled `flows:` list plus what applying it needs. */
struct sp_flows {
    struct sp_flow *items;
    int n;
    /* run state, reused from event to event (pipeline thread) */
    struct sp_event **cur;
    bool *cur_owned;
    int ncur;
    int cap;
    struct sp_event_list owned; /* copies made while applying; freed by sp_flows_done */
};

/* The registered flow types (core/registry.c). */
const struct sp_flow_ops *sp_registry_flow(const char *name);
extern const struct sp_flow_ops *const sp_registry_flows[];

/*
 * Compile a `flows:` list (node: a YAML sequence of one-key mappings such as
 * `- filter: "op == 'u'"`). Unknown names get a did-you-mean. Returns 0 and
 * *out (NULL for an empty list), or SP_EINVAL with diagnostics in cc->d.
 */
int sp_flows_compile(struct sp_node *node, const struct sp_flow_cctx *cc, struct sp_flows **out);
void sp_flows_free(struct sp_flows *fs);

/*
 * Apply the chain to ev. Returns the number of resulting events (0: all
 * dropped), which sp_flows_result gives, or a negative SP_E* code with err
 * (prefixed with the flow's name and position) and *failed the event as it
 * entered the failing flow (already redacted with sp_flows_redact for the
 * dead letter; valid until sp_flows_done). Results may be ev itself.
 * Call sp_flows_done after the results have been formatted, in any case.
 */
int sp_flows_apply(struct sp_flows *fs, struct sp_event *ev, const struct sp_event **failed,
                   struct sp_err *err);
struct sp_event *sp_flows_result(struct sp_flows *fs, int i);
/*
 * The transaction's COMMIT: events the flows emit for it (e.g. a transaction
 * END event). Returns their number (results as above; call sp_flows_done) or
 * a negative code with err.
 */
int sp_flows_commit(struct sp_flows *fs, const struct sp_event *commit, struct sp_err *err);
void sp_flows_done(struct sp_flows *fs);

/* ---- helpers for flow types ---- */

/*
 * A copy of ev that flows may change: the struct, the tuple arrays and the
 * relation reference are its own; column bytes and strings are shared with
 * ev (and whatever ev shares), which must outlive the copy. id_override
 * keeps ev's id. Never NULL.
 */
struct sp_event *sp_flow_copy(const struct sp_event *ev);

/* Whether ev's table is schema.table (NULL schema or table: any). */
bool sp_flow_table_is(const struct sp_event *ev, const char *schema, const char *table);

struct sp_loc;
/*
 * Where byte off of scalar node's value was written in the YAML text (plain,
 * quoted or block scalars), so errors inside an expression or a template
 * point at the character. Falls back to the node's own location.
 */
void sp_flow_scalar_loc(const struct sp_flow_cctx *cc, const struct sp_node *node, size_t off,
                        struct sp_loc *out);

/* A flow's option mapping filled from an option table (config/schema.c); label (e.g.
 * `flow "route"`) follows cc->what in messages. Returns the number of errors. */
int sp_flow_opts(const struct sp_flow_cctx *cc, const char *label, const struct sp_opt *opts,
                 struct sp_node *node, void *conf);

struct sp_ftmpl;
/*
 * Compile the template (flow/value.h) in option name of map; *out NULL if
 * the option is absent. Errors point at the character inside the YAML
 * scalar. Returns 0 or SP_EINVAL with a diagnostic.
 */
int sp_flow_template(const struct sp_flow_cctx *cc, const char *label, struct sp_node *map,
                     const char *name, struct sp_ftmpl **out);

#endif
