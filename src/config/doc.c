// SPDX-License-Identifier: Apache-2.0
/*
 * The configuration reference in Markdown (docs/config.md), generated from
 * the same option tables the validator uses, so the two cannot drift; a unit
 * test compares the file with this output. Only text here: no validation.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/schema.h"
#include "core/registry.h"
#include "flow/flow.h"

/* Append s with what would break a table cell (or read as HTML) escaped. */
static void doc_cell(struct sp_buf *out, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '|') {
            sp_buf_puts(out, "\\|");
        } else if (*s == '<') {
            sp_buf_puts(out, "&lt;"); /* not an HTML tag */
        } else if (*s == '\n') {
            sp_buf_putc(out, ' ');
        } else {
            sp_buf_putc(out, *s);
        }
    }
}

static void doc_bound(const struct sp_opt *o, int64_t v, struct sp_buf *out)
{
    char buf[32];
    if (o->type == SP_OPT_T_SIZE) {
        sp_opt_format_size(v, buf, sizeof(buf));
    } else if (o->type == SP_OPT_T_DURATION) {
        sp_opt_format_duration(v, buf, sizeof(buf));
    } else {
        snprintf(buf, sizeof(buf), "%" PRId64, v);
    }
    sp_buf_printf(out, "`%s`", buf);
}

static void doc_type(const struct sp_opt *o, struct sp_buf *out)
{
    int64_t lo;
    int64_t hi;
    switch (o->type) {
    case SP_OPT_T_STR:
        sp_buf_puts(out, "string");
        break;
    case SP_OPT_T_INT:
        sp_buf_puts(out, "integer");
        break;
    case SP_OPT_T_BOOL:
        sp_buf_puts(out, "boolean");
        break;
    case SP_OPT_T_DURATION:
        sp_buf_puts(out, "duration");
        break;
    case SP_OPT_T_SIZE:
        sp_buf_puts(out, "size");
        break;
    case SP_OPT_T_ENUM:
        sp_buf_puts(out, "one of ");
        for (size_t i = 0; o->enum_names[i] != NULL; i++) {
            sp_buf_printf(out, "%s`%s`", i > 0 ? ", " : "", o->enum_names[i]);
        }
        break;
    case SP_OPT_T_STRLIST:
        sp_buf_puts(out, "list of strings");
        break;
    case SP_OPT_T_MAP:
        sp_buf_puts(out, "mapping of strings");
        break;
    default:
        break;
    }
    if ((o->type == SP_OPT_T_INT || o->type == SP_OPT_T_DURATION || o->type == SP_OPT_T_SIZE) &&
        sp_opt_bounds(o, &lo, &hi)) {
        if (hi == INT64_MAX) {
            sp_buf_puts(out, ", at least ");
            doc_bound(o, lo, out);
        } else {
            sp_buf_puts(out, ", ");
            doc_bound(o, lo, out);
            sp_buf_puts(out, " to ");
            doc_bound(o, hi, out);
        }
    }
    if ((o->flags & SP_OPT_SECRET) != 0) {
        sp_buf_puts(out, ", secret");
    }
}

void sp_opt_doc_markdown(const char *title, const char *summary, const struct sp_opt *opts,
                         struct sp_buf *out)
{
    if (title != NULL) {
        sp_buf_printf(out, "### %s\n\n", title);
    }
    if (summary != NULL && summary[0] != '\0') {
        sp_buf_printf(out, "%s\n\n", summary);
    }
    if (opts == NULL || opts[0].name == NULL) {
        sp_buf_puts(out, "No options.\n\n");
        return;
    }
    sp_buf_puts(out, "| option | type | default | description |\n");
    sp_buf_puts(out, "|---|---|---|---|\n");
    for (const struct sp_opt *o = opts; o->name != NULL; o++) {
        sp_buf_printf(out, "| `%s` | ", o->name);
        doc_type(o, out);
        sp_buf_puts(out, " | ");
        if ((o->flags & SP_OPT_REQUIRED) != 0) {
            sp_buf_puts(out, "**required**");
        } else if (o->def != NULL) {
            sp_buf_puts(out, "`");
            doc_cell(out, o->def);
            sp_buf_puts(out, "`");
        }
        sp_buf_puts(out, " | ");
        doc_cell(out, o->help != NULL ? o->help : "");
        sp_buf_puts(out, " |\n");
    }
    sp_buf_puts(out, "\n");
}

static const char doc_intro[] =
    "<!-- Generated from the option tables (src/config/doc.c); do not edit.\n"
    "     Regenerate: SP_UPDATE_DOCS=1 ctest --test-dir build -R unit.test_config -->\n"
    "# Configuration reference\n"
    "\n"
    "siphon reads one YAML file (`siphon run -c siphon.yaml`; `siphon check -c siphon.yaml`\n"
    "validates it). It has four top-level keys: `sources` and `sinks` map names to\n"
    "instances (a `type` and that type's options), `streams` connect a source's tables to a\n"
    "sink, and `settings` tune the process.\n"
    "\n"
    "```yaml\n"
    "sources:\n"
    "  orders:\n"
    "    type: postgres\n"
    "    connection: \"${ORDERS_DSN}\"\n"
    "sinks:\n"
    "  out:\n"
    "    type: file\n"
    "    path: /var/lib/siphon/orders.jsonl\n"
    "  dead:\n"
    "    type: file\n"
    "    path: /var/lib/siphon/dead-letters.jsonl\n"
    "streams:\n"
    "  - name: orders-to-file\n"
    "    source: orders\n"
    "    tables: [public.orders, public.order_items]\n"
    "    sink: out\n"
    "    recovery: { type: dead_letter, sink: dead }\n"
    "settings:\n"
    "  memory_limit: 64MiB\n"
    "```\n"
    "\n"
    "Errors are reported like a compiler's, all of them (up to 20) in one run, each as\n"
    "`file:line:col` with the line, a caret and often a hint. Unused sources and sinks are\n"
    "warnings.\n"
    "\n"
    "## Values\n"
    "\n"
    "- **string**: any scalar; quote it when it contains `: ` or starts with a special\n"
    "  character.\n"
    "- **size**: a number with a unit, `512KiB`, `64MiB`, `1GiB`, `1TiB` (powers of 1024) or\n"
    "  `100kB`, `10MB`, `1GB`, `1TB` (powers of 1000); a bare number is bytes.\n"
    "- **duration**: `250ms`, `5s`, `2m` or `1h`; a bare number is milliseconds.\n"
    "- **boolean**: `true`/`false`, `yes`/`no` or `on`/`off`.\n"
    "- **Substitution** in any value: `${NAME}` is replaced by the environment variable\n"
    "  `NAME` (an error when it is not set), `${file:PATH}` by the contents of the file\n"
    "  (without its trailing newline; a relative path is taken from the configuration\n"
    "  file's directory), and `$$` by a single `$`. Errors point at the value.\n"
    "- A **secret** option's value (and any password in a connection string) is never\n"
    "  printed, in errors or logs.\n"
    "- Duplicate keys are errors. YAML anchors and aliases work; merge keys (`<<`) do not.\n"
    "\n";

void sp_cfg_doc_markdown(struct sp_buf *out)
{
    sp_buf_puts(out, doc_intro);

    sp_buf_puts(out, "## Settings\n\n");
    sp_opt_doc_markdown(NULL, "Top-level `settings:`; all optional.", sp_cfg_settings_opts, out);

    sp_buf_puts(out, "## Sources\n\n"
                     "`sources:` maps a name to a source: its `type` and that type's options.\n"
                     "Several streams may share a source (one replication slot).\n\n");
    for (size_t i = 0; sp_registry_sources[i] != NULL; i++) {
        const struct sp_source_ops *ops = sp_registry_sources[i];
        char *title = sp_xasprintf("`%s`", ops->type);
        sp_opt_doc_markdown(title, ops->summary, ops->opts, out);
        free(title);
    }

    sp_buf_puts(out, "## Sinks\n\n"
                     "`sinks:` maps a name to a sink: its `type` and that type's options.\n\n");
    for (size_t i = 0; sp_registry_sinks[i] != NULL; i++) {
        const struct sp_sink_ops *ops = sp_registry_sinks[i];
        char *title = sp_xasprintf("`%s`", ops->type);
        sp_opt_doc_markdown(title, ops->summary, ops->opts, out);
        free(title);
    }

    sp_buf_puts(out, "## Formats\n\n"
                     "A stream's `format` names one of these.\n\n"
                     "| format | description |\n"
                     "|---|---|\n");
    for (size_t i = 0; sp_registry_formats[i] != NULL; i++) {
        const struct sp_format_ops *ops = sp_registry_formats[i];
        sp_buf_printf(out, "| `%s` | ", ops->name);
        doc_cell(out, ops->summary != NULL ? ops->summary : "");
        sp_buf_puts(out, " |\n");
    }
    sp_buf_puts(out, "\n");

    sp_buf_puts(out, "## Streams\n\n"
                     "`streams:` is a list; each stream reads the changes to its tables from a\n"
                     "source, encodes them in a format and delivers them to a sink. There must be\n"
                     "at least one.\n\n");
    sp_opt_doc_markdown(NULL, NULL, sp_cfg_stream_opts, out);
    sp_opt_doc_markdown("`recovery`",
                        "A mapping: what happens to an event the sink rejects for good (a "
                        "retriable failure is retried, never handed to recovery). Default: "
                        "`{type: fail}`.",
                        sp_cfg_recovery_opts, out);
    sp_buf_puts(out, "### `flows`\n\n"
                     "A list of flows applied to the stream's events in order, each item a\n"
                     "mapping with one key, the flow's name (docs/flows.md):\n"
                     "`- filter: \"op == 'u'\"`.\n\n");
    for (size_t i = 0; sp_registry_flows[i] != NULL; i++) {
        const struct sp_flow_ops *ops = sp_registry_flows[i];
        char *title = sp_xasprintf("flow `%s`", ops->name);
        char *summary = sp_xasprintf("%s. Takes %s.", ops->summary, ops->usage);
        if (ops->opts != NULL) {
            sp_opt_doc_markdown(title, summary, ops->opts, out);
        } else {
            sp_buf_printf(out, "### %s\n\n%s\n\n", title, summary);
        }
        free(title);
        free(summary);
    }
}
