/*
 * NATS subjects for the nats sink: the subject template ({source},
 * {schema}, {table}) parsed once and expanded per record, the stream
 * subjects a template corresponds to (for hints), and NATS wildcard
 * matching ('*' one token, a final '>' one or more). Pure functions, no
 * I/O; any thread.
 */
#ifndef SIPHON_SINK_NATS_SUBJECT_H
#define SIPHON_SINK_NATS_SUBJECT_H

#include <stddef.h>

#include <stdbool.h>

#include "core/err.h"
#include "core/plugin.h"
#include "util/buf.h"

enum sp_nats_part_kind {
    SP_NATS_LIT,
    SP_NATS_SOURCE,
    SP_NATS_SCHEMA,
    SP_NATS_TABLE,
};

struct sp_nats_part {
    enum sp_nats_part_kind kind;
    char *text; /* SP_NATS_LIT only */
    size_t len;
};

/* Caller-owned storage; zero-initialise, free with sp_nats_tmpl_free. */
struct sp_nats_tmpl {
    struct sp_nats_part *parts;
    int n;
};

/*
 * Parses a template such as "{source}.{schema}.{table}". Refuses unknown
 * placeholders, unbalanced braces, whitespace, control characters and the
 * wildcards '*' and '>', and empty tokens. Returns 0, or SP_EINVAL with err
 * naming the sink and the template (and a hint). t may hold parts on error:
 * free it either way.
 */
int sp_nats_tmpl_parse(struct sp_nats_tmpl *t, const char *tmpl, const char *sink,
                       struct sp_err *err);
void sp_nats_tmpl_free(struct sp_nats_tmpl *t);

/*
 * The subject of r, into out (reset first). Placeholder values have the
 * bytes a token cannot hold (control characters, space, '.', '*', '>')
 * replaced by '_'; an empty value becomes "_". {source} is r->source, or,
 * when that is NULL, source.name read from the json event.
 */
void sp_nats_tmpl_expand(const struct sp_nats_tmpl *t, const struct sp_rec *r, struct sp_buf *out);

/* The template with every token that holds a placeholder turned into '*' (malloc'd). */
char *sp_nats_tmpl_pattern(const char *tmpl);

/* Whether the stream subject pattern captures the (wildcard-free) subject. */
bool sp_nats_subject_matches(const char *pattern, const char *subj);
/* Whether some subject matches both patterns. */
bool sp_nats_subjects_overlap(const char *a, const char *b);

#endif
