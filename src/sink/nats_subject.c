// SPDX-License-Identifier: Apache-2.0
/*
 * Subjects for the nats sink: the subject template, its expansion for a
 * record, and NATS wildcard matching (see sink/nats_subject.h). Only string
 * work here; what the sink does with subjects (checking them against the
 * stream, publishing) is in sink/nats.c.
 */
#include "sink/nats_subject.h"

#include <stdlib.h>
#include <string.h>

void sp_nats_tmpl_free(struct sp_nats_tmpl *t)
{
    for (int i = 0; i < t->n; i++) {
        free(t->parts[i].text);
    }
    free(t->parts);
    t->parts = NULL;
    t->n = 0;
}

static void subj_push(struct sp_nats_tmpl *t, enum sp_nats_part_kind kind, const char *s,
                      size_t len)
{
    t->parts = sp_xrealloc(t->parts, sizeof(*t->parts) * (size_t)(t->n + 1));
    struct sp_nats_part *p = &t->parts[t->n++];
    p->kind = kind;
    p->text = kind == SP_NATS_LIT ? sp_xstrndup(s, len) : NULL;
    p->len = len;
}

/* A byte that may not appear inside a subject token. */
static bool subj_bad_char(unsigned char c)
{
    return c <= ' ' || c == 0x7f || c == '.' || c == '*' || c == '>';
}

int sp_nats_tmpl_parse(struct sp_nats_tmpl *t, const char *tmpl, const char *sink,
                       struct sp_err *err)
{
    const char *s = tmpl;
    const char *lit = s;
    const char *p = s;
    while (*p != '\0') {
        if (*p == '}') {
            sp_err_set(err, SP_EINVAL, "sink \"%s\": subject \"%s\" has a '}' without '{'", sink,
                       s);
            return err->code;
        }
        if (*p != '{') {
            unsigned char c = (unsigned char)*p;
            if (c <= ' ' || c == 0x7f || c == '*' || c == '>') {
                sp_err_set(err, SP_EINVAL,
                           "sink \"%s\": subject \"%s\" contains '%c', which a published "
                           "subject cannot hold",
                           sink, s, c > ' ' && c != 0x7f ? c : '?');
                sp_err_hint(err, "use letters, digits, '-', '_' and '.' between tokens");
                return err->code;
            }
            p++;
            continue;
        }
        const char *end = strchr(p, '}');
        if (end == NULL) {
            sp_err_set(err, SP_EINVAL, "sink \"%s\": subject \"%s\" has a '{' without '}'", sink,
                       s);
            return err->code;
        }
        if (p > lit) {
            subj_push(t, SP_NATS_LIT, lit, (size_t)(p - lit));
        }
        size_t nlen = (size_t)(end - p - 1);
        enum sp_nats_part_kind kind;
        if (nlen == 6 && memcmp(p + 1, "source", 6) == 0) {
            kind = SP_NATS_SOURCE;
        } else if (nlen == 6 && memcmp(p + 1, "schema", 6) == 0) {
            kind = SP_NATS_SCHEMA;
        } else if (nlen == 5 && memcmp(p + 1, "table", 5) == 0) {
            kind = SP_NATS_TABLE;
        } else {
            sp_err_set(err, SP_EINVAL, "sink \"%s\": unknown placeholder {%.*s} in subject \"%s\"",
                       sink, (int)nlen, p + 1, s);
            sp_err_hint(err, "the placeholders are {source}, {schema} and {table}");
            return err->code;
        }
        subj_push(t, kind, NULL, 0);
        p = end + 1;
        lit = p;
    }
    if (p > lit) {
        subj_push(t, SP_NATS_LIT, lit, (size_t)(p - lit));
    }
    /* Placeholders never expand to "" (see nats_put_token), so empty tokens come from dots. */
    size_t len = strlen(s);
    if (len == 0 || s[0] == '.' || s[len - 1] == '.' || strstr(s, "..") != NULL) {
        sp_err_set(err, SP_EINVAL, "sink \"%s\": subject \"%s\" has an empty token", sink, s);
        sp_err_hint(err, "tokens are separated by single dots, e.g. \"{source}.{schema}.{table}\"");
        return err->code;
    }
    return 0;
}

/* Appends v as part of a token: bytes a token cannot hold become '_', "" becomes "_". */
static void subj_put_token(struct sp_buf *out, const char *v)
{
    if (v == NULL || *v == '\0') {
        sp_buf_putc(out, '_');
        return;
    }
    size_t start = out->len;
    sp_buf_puts(out, v);
    for (size_t i = start; i < out->len; i++) {
        if (subj_bad_char((unsigned char)out->data[i])) {
            out->data[i] = '_';
        }
    }
}

/*
 * The source name from the event itself, for records that do not carry it:
 * the json format writes "source":{"connector":"postgresql","name":"...".
 */
static const char *subj_source_from_value(const struct sp_rec *r, char *buf, size_t cap)
{
    const char *v = r->value;
    const char *end = v + r->value_len;
    static const char marker[] = "\"source\":{\"connector\":\"postgresql\",\"name\":\"";
    const char *p = strstr(v, marker);
    if (p == NULL) {
        return "";
    }
    p += sizeof(marker) - 1;
    size_t n = 0;
    while (p < end && *p != '"' && *p != '\\' && n + 1 < cap) {
        buf[n++] = *p++;
    }
    buf[n] = '\0';
    return buf;
}

void sp_nats_tmpl_expand(const struct sp_nats_tmpl *t, const struct sp_rec *r, struct sp_buf *out)
{
    char srcbuf[128];
    sp_buf_reset(out);
    for (int i = 0; i < t->n; i++) {
        const struct sp_nats_part *p = &t->parts[i];
        switch (p->kind) {
        case SP_NATS_LIT:
            sp_buf_append(out, p->text, p->len);
            break;
        case SP_NATS_SOURCE:
            subj_put_token(out, r->source != NULL
                                    ? r->source
                                    : subj_source_from_value(r, srcbuf, sizeof(srcbuf)));
            break;
        case SP_NATS_SCHEMA:
            subj_put_token(out, r->schema);
            break;
        case SP_NATS_TABLE:
            subj_put_token(out, r->table);
            break;
        }
    }
}

/*
 * The stream subjects that would capture every subject of the template: a
 * token holding a placeholder becomes '*' (for hints).
 */
char *sp_nats_tmpl_pattern(const char *tmpl)
{
    struct sp_buf out;
    sp_buf_init(&out);
    const char *tok = tmpl;
    for (;;) {
        const char *dot = strchr(tok, '.');
        size_t len = dot != NULL ? (size_t)(dot - tok) : strlen(tok);
        if (memchr(tok, '{', len) != NULL) {
            sp_buf_putc(&out, '*');
        } else {
            sp_buf_append(&out, tok, len);
        }
        if (dot == NULL) {
            break;
        }
        sp_buf_putc(&out, '.');
        tok = dot + 1;
    }
    return sp_buf_steal(&out);
}

/* NATS subject matching: '*' is one token, a final '>' one or more. */
bool sp_nats_subject_matches(const char *pattern, const char *subj)
{
    const char *p = pattern;
    const char *s = subj;
    for (;;) {
        const char *pe = strchr(p, '.');
        const char *se = strchr(s, '.');
        size_t plen = pe != NULL ? (size_t)(pe - p) : strlen(p);
        size_t slen = se != NULL ? (size_t)(se - s) : strlen(s);
        if (plen == 1 && p[0] == '>' && pe == NULL) {
            return slen > 0;
        }
        if (!(plen == 1 && p[0] == '*') && (plen != slen || memcmp(p, s, plen) != 0)) {
            return false;
        }
        if (pe == NULL || se == NULL) {
            return pe == NULL && se == NULL;
        }
        p = pe + 1;
        s = se + 1;
    }
}

/* Whether some subject matches both patterns (each may hold '*' and a final '>'). */
bool sp_nats_subjects_overlap(const char *a, const char *b)
{
    for (;;) {
        const char *ae = strchr(a, '.');
        const char *be = strchr(b, '.');
        size_t alen = ae != NULL ? (size_t)(ae - a) : strlen(a);
        size_t blen = be != NULL ? (size_t)(be - b) : strlen(b);
        if ((alen == 1 && a[0] == '>') || (blen == 1 && b[0] == '>')) {
            return true;
        }
        bool any = (alen == 1 && a[0] == '*') || (blen == 1 && b[0] == '*');
        if (!any && (alen != blen || memcmp(a, b, alen) != 0)) {
            return false;
        }
        if (ae == NULL || be == NULL) {
            return ae == NULL && be == NULL;
        }
        a = ae + 1;
        b = be + 1;
    }
}
