// SPDX-License-Identifier: Apache-2.0
/*
 * Subjects of the nats sink (sink/nats_subject.c): template parsing and its
 * refusals, expansion with values a subject token cannot hold, the source
 * name read from the event when the record lacks it, the stream-subjects
 * pattern used in hints, and NATS wildcard matching and overlap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "sink/nats_subject.h"

static struct sp_rec rec(const char *source, const char *schema, const char *table,
                         const char *value)
{
    struct sp_rec r;
    memset(&r, 0, sizeof(r));
    r.source = source;
    r.schema = schema;
    r.table = table;
    r.value = value;
    r.value_len = strlen(value);
    return r;
}

/* Expands tmpl for r; returns a malloc'd subject. */
static char *expand(const char *tmpl, const struct sp_rec *r)
{
    struct sp_nats_tmpl t = {NULL, 0};
    struct sp_err err;
    sp_err_clear(&err);
    assert_int_equal(sp_nats_tmpl_parse(&t, tmpl, "bus", &err), 0);
    struct sp_buf out;
    sp_buf_init(&out);
    sp_nats_tmpl_expand(&t, r, &out);
    sp_nats_tmpl_free(&t);
    return sp_buf_steal(&out);
}

static void default_template_gives_source_schema_table(void **state)
{
    (void)state;
    struct sp_rec r = rec("orders", "public", "order_items", "{}");
    char *s = expand("{source}.{schema}.{table}", &r);
    assert_string_equal(s, "orders.public.order_items");
    free(s);
    s = expand("cdc.{table}-v1.{schema}", &r);
    assert_string_equal(s, "cdc.order_items-v1.public");
    free(s);
    s = expand("fixed", &r);
    assert_string_equal(s, "fixed");
    free(s);
}

static void values_a_token_cannot_hold_become_underscores(void **state)
{
    (void)state;
    /* Quoted identifiers may hold dots, spaces and wildcards; messages have no schema. */
    struct sp_rec r = rec("db", "", "my.table *x>\t", "{}");
    char *s = expand("{source}.{schema}.{table}", &r);
    assert_string_equal(s, "db._.my_table__x__");
    free(s);
}

static void source_comes_from_the_event_when_the_record_lacks_it(void **state)
{
    (void)state;
    struct sp_rec r = rec(NULL, "public", "t",
                          "{\"before\":null,\"after\":{\"id\":1},\"source\":{\"connector\":"
                          "\"postgresql\",\"name\":\"orders\",\"db\":\"x\"},\"op\":\"c\"}");
    char *s = expand("{source}.{schema}.{table}", &r);
    assert_string_equal(s, "orders.public.t");
    free(s);
    struct sp_rec bare = rec(NULL, "public", "t", "{\"op\":\"c\"}");
    s = expand("{source}.{table}", &bare);
    assert_string_equal(s, "_.t");
    free(s);
}

static void expect_refused(const char *tmpl, const char *msg_part)
{
    struct sp_nats_tmpl t = {NULL, 0};
    struct sp_err err;
    sp_err_clear(&err);
    assert_int_equal(sp_nats_tmpl_parse(&t, tmpl, "bus", &err), SP_EINVAL);
    sp_nats_tmpl_free(&t);
    if (strstr(err.msg, msg_part) == NULL) {
        fail_msg("template \"%s\": message \"%s\" lacks \"%s\"", tmpl, err.msg, msg_part);
    }
    assert_non_null(strstr(err.msg, "sink \"bus\""));
}

static void bad_templates_are_refused_with_the_reason(void **state)
{
    (void)state;
    expect_refused("{source}.{tabel}", "unknown placeholder {tabel}");
    expect_refused("{source}.{table", "'{' without '}'");
    expect_refused("source}.x", "'}' without '{'");
    expect_refused("db.*.x", "contains '*'");
    expect_refused("db.>", "contains '>'");
    expect_refused("db .x", "contains '?'");
    expect_refused("db..{table}", "empty token");
    expect_refused(".{table}", "empty token");
    expect_refused("{table}.", "empty token");
    expect_refused("", "empty token");
}

static void pattern_replaces_tokens_with_placeholders(void **state)
{
    (void)state;
    const char *cases[][2] = {
        {"{source}.{schema}.{table}", "*.*.*"},
        {"cdc.{table}", "cdc.*"},
        {"x_{table}.y", "*.y"},
        {"fixed.name", "fixed.name"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *p = sp_nats_tmpl_pattern(cases[i][0]);
        assert_string_equal(p, cases[i][1]);
        free(p);
    }
}

static void stream_subjects_match_as_nats_does(void **state)
{
    (void)state;
    assert_true(sp_nats_subject_matches("db.>", "db.public.t"));
    assert_true(sp_nats_subject_matches("db.>", "db.x"));
    assert_false(sp_nats_subject_matches("db.>", "db"));
    assert_true(sp_nats_subject_matches(">", "a"));
    assert_true(sp_nats_subject_matches("db.*.t", "db.public.t"));
    assert_false(sp_nats_subject_matches("db.*", "db.public.t"));
    assert_false(sp_nats_subject_matches("db.public", "db.public.t"));
    assert_false(sp_nats_subject_matches("db.public.t.x", "db.public.t"));
    assert_true(sp_nats_subject_matches("db.public.t", "db.public.t"));
    assert_false(sp_nats_subject_matches("db.public.t", "db.public.u"));
    assert_false(sp_nats_subject_matches("db.pub", "db.public"));
}

static void overlap_finds_a_common_subject(void **state)
{
    (void)state;
    assert_true(sp_nats_subjects_overlap("db.>", "*.*.*"));
    assert_true(sp_nats_subjects_overlap("*.*.*", "db.>"));
    assert_true(sp_nats_subjects_overlap("*.x", "y.*"));
    assert_true(sp_nats_subjects_overlap(">", "a.b.c"));
    assert_false(sp_nats_subjects_overlap("db.*", "*.*.*"));
    assert_false(sp_nats_subjects_overlap("a.b", "a.c"));
    assert_false(sp_nats_subjects_overlap("orders.>", "*"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(default_template_gives_source_schema_table),
        cmocka_unit_test(values_a_token_cannot_hold_become_underscores),
        cmocka_unit_test(source_comes_from_the_event_when_the_record_lacks_it),
        cmocka_unit_test(bad_templates_are_refused_with_the_reason),
        cmocka_unit_test(pattern_replaces_tokens_with_placeholders),
        cmocka_unit_test(stream_subjects_match_as_nats_does),
        cmocka_unit_test(overlap_finds_a_common_subject),
    };
    return cmocka_run_group_tests_name("nats_subject", tests, NULL, NULL);
}
