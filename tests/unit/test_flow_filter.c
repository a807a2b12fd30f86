// SPDX-License-Identifier: Apache-2.0
/*
 * The filter language (flow/filter.c, flow/value.c): grammar and
 * precedence, every operator on every value type, json paths, changed(),
 * the FES JSONPath form, compile errors with their positions (in the
 * expression and in the YAML file), run-time errors that never show values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "flow/filter.h"
#include "flow/value.h"
#include "flow_events.h"

struct fx_fixture {
    struct sp_relation *rel;
    struct sp_event *ins; /* insert of id 42, status paid, total 19.90 */
    struct sp_event *upd; /* update: status new -> paid, total 5 -> 19.90 */
    struct sp_event *del; /* delete of id 7 */
    struct sp_event *nul; /* insert with every column but id NULL */
    struct sp_event *msg; /* a logical decoding message */
};

static int setup(void **state)
{
    struct fx_fixture *fx = calloc(1, sizeof(*fx));
    fx->rel = fe_rel_named("public", "orders");
    fx->ins = fe_event(fx->rel, SP_OP_INSERT, NULL, FE_ROW("42", "paid", "19.90"));
    fx->upd =
        fe_event(fx->rel, SP_OP_UPDATE, FE_ROW("42", "new", "5"), FE_ROW("42", "paid", "19.90"));
    fx->del = fe_event(fx->rel, SP_OP_DELETE, FE_ROW("7", "gone", "1"), NULL);
    static const char *const nulls[C_NCOLS] = {"43"};
    fx->nul = fe_event(fx->rel, SP_OP_INSERT, NULL, nulls);
    fx->msg = fe_message("orders", "{\"a\":1}", true);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx_fixture *fx = *state;
    sp_event_free(fx->ins);
    sp_event_free(fx->upd);
    sp_event_free(fx->del);
    sp_event_free(fx->nul);
    sp_event_free(fx->msg);
    sp_relation_unref(fx->rel);
    free(fx);
    return 0;
}

/* Compile expr (must succeed) and evaluate it on ev (must not fail). */
static bool match(const char *expr, const struct sp_event *ev)
{
    struct sp_filter *f = NULL;
    struct sp_err err;
    size_t off = 0;
    size_t len = 0;
    sp_err_clear(&err);
    if (sp_filter_compile(expr, strlen(expr), &f, &off, &len, &err) != 0) {
        fail_msg("\"%s\" did not compile: %s at offset %zu", expr, err.msg, off);
    }
    bool m = false;
    int rc = sp_filter_eval(f, ev, &m, &err);
    sp_filter_free(f);
    if (rc != 0) {
        fail_msg("\"%s\" failed: %s", expr, err.msg);
    }
    return m;
}

/* Compile expr, which must fail at offset off with a message containing what. */
static void compile_error(const char *expr, size_t off, const char *what)
{
    struct sp_filter *f = NULL;
    struct sp_err err;
    size_t eoff = 0;
    size_t elen = 0;
    sp_err_clear(&err);
    int rc = sp_filter_compile(expr, strlen(expr), &f, &eoff, &elen, &err);
    if (rc == 0) {
        sp_filter_free(f);
        fail_msg("\"%s\" compiled, expected an error", expr);
    }
    if (strstr(err.msg, what) == NULL || eoff != off) {
        fail_msg("\"%s\": got \"%s\" at offset %zu; expected \"%s\" at offset %zu", expr, err.msg,
                 eoff, what, off);
    }
    assert_true(elen >= 1);
}

static void precedence_and_binds_tighter_than_or(void **state)
{
    struct fx_fixture *fx = *state;
    /* op == 'd' || (op == 'c' && total > 100): false for the insert of 19.90 */
    assert_false(match("op == 'd' || op == 'c' && after.total > 100", fx->ins));
    /* (op == 'c' || op == 'd') && total > 100 would be false too; this one is true: */
    assert_true(match("op == 'c' || op == 'd' && after.total > 100", fx->ins));
    assert_false(match("(op == 'c' || op == 'd') && after.total > 100", fx->ins));
    /* ! binds tighter than && and looser than comparisons */
    assert_true(match("!op == 'u' && op == 'c'", fx->ins));
    assert_false(match("!(op == 'c' || op == 'u')", fx->ins));
    assert_true(match("!!(op == 'c')", fx->ins));
    assert_true(match("  ( ( op=='c' ) )  ", fx->ins));
}

static void every_comparison_on_numbers(void **state)
{
    struct fx_fixture *fx = *state;
    const struct sp_event *ev = fx->ins; /* total 19.90, id 42, score 0.5 */
    assert_true(match("after.total == 19.9", ev));
    assert_true(match("after.total == 19.900", ev));
    assert_false(match("after.total != 19.9", ev));
    assert_true(match("after.total < 20", ev));
    assert_true(match("after.total <= 19.90", ev));
    assert_false(match("after.total > 19.9", ev));
    assert_true(match("after.total >= 1.99e1", ev));
    assert_true(match("after.total > -100", ev));
    assert_true(match("after.id == 42", ev));
    assert_true(match("after.id > 4.2e1 || after.id == 42", ev));
    assert_true(match("after.score < 1", ev));
    assert_true(match("after.score == 5e-1", ev));
    assert_true(match("0 == -0", ev));
}

static void numeric_is_compared_exactly(void **state)
{
    struct fx_fixture *fx = *state;
    struct sp_event *ev = fe_event(fx->rel, SP_OP_INSERT, NULL,
                                   FE_ROW("9007199254740993", "x", "0.30000000000000000001"));
    /* doubles cannot tell these apart; siphon must */
    assert_false(match("after.id == 9007199254740992", ev));
    assert_true(match("after.id > 9007199254740992", ev));
    assert_false(match("after.total == 0.3", ev));
    assert_true(match("after.total > 0.3", ev));
    assert_true(match("after.total < 0.30000000000000000002", ev));
    sp_event_free(ev);

    int c = 2;
    assert_int_equal(sp_flow_num_cmp("NaN", 3, "1e308", 5, &c), 0);
    assert_int_equal(c, 1);
    assert_int_equal(sp_flow_num_cmp("-Infinity", 9, "-1e308", 6, &c), 0);
    assert_int_equal(c, -1);
    assert_int_equal(sp_flow_num_cmp("Infinity", 8, "NaN", 3, &c), 0);
    assert_int_equal(c, -1);
    assert_int_equal(sp_flow_num_cmp("-0.0010", 7, "-1e-3", 5, &c), 0);
    assert_int_equal(c, 0);
    assert_int_equal(sp_flow_num_cmp("-2", 2, "-10", 3, &c), 0);
    assert_int_equal(c, 1);
    assert_int_equal(sp_flow_num_cmp("100", 3, "99.999", 6, &c), 0);
    assert_int_equal(c, 1);
    assert_int_not_equal(sp_flow_num_cmp("1x", 2, "1", 1, &c), 0);
}

static void strings_booleans_and_timestamps(void **state)
{
    struct fx_fixture *fx = *state;
    const struct sp_event *ev = fx->ins;
    assert_true(match("after.status == 'paid'", ev));
    assert_true(match("after.status == \"paid\"", ev));
    assert_true(match("after.status != 'new'", ev));
    assert_true(match("after.status < 'pbid' && after.status > 'paa'", ev));
    assert_true(match("after.status >= 'paid' && after.status <= 'paid'", ev));
    assert_false(match("after.status == 'Paid'", ev));
    /* a number column is never equal to a string */
    assert_false(match("after.total == '19.90'", ev));
    assert_true(match("after.paid == true", ev));
    assert_true(match("after.paid", ev));
    assert_false(match("!after.paid", ev));
    assert_false(match("after.paid == false", ev));
    /* timestamptz as ISO text in UTC, as the json format writes it */
    assert_true(match("after.created == '2026-11-21T10:00:00.5Z'", ev));
    assert_true(match("after.created >= '2026-11-21' && after.created < '2026-11-22'", ev));
    assert_true(match("'a\\'b' == \"a'b\" && 'caf\\u00e9' == 'café'", ev));
}

static void in_lists_and_null_tests(void **state)
{
    struct fx_fixture *fx = *state;
    assert_true(match("op in ['c', 'u']", fx->ins));
    assert_false(match("op in ['d']", fx->ins));
    assert_true(match("after.id in [1, 42.0, 7]", fx->ins));
    assert_true(match("after.status in ['new', 'paid']", fx->ins));
    assert_true(match("after.status in [null, 'x']", fx->nul));
    assert_true(match("after.status is null", fx->nul));
    assert_false(match("after.status is not null", fx->nul));
    assert_true(match("after.status == null", fx->nul));
    assert_true(match("after.status != 'x'", fx->nul));
    /* ordering with null is false, both ways */
    assert_false(match("after.total < 1", fx->nul));
    assert_false(match("after.total >= 1", fx->nul));
    /* rows: before is null for inserts, after for deletes */
    assert_true(match("before is null && after is not null", fx->ins));
    assert_true(match("after is null && before.id == 7", fx->del));
    assert_true(match("after.id is null", fx->del));
    assert_true(match("after.paid is null", fx->nul));
    assert_false(match("after.paid", fx->nul));
}

static void json_paths(void **state)
{
    struct fx_fixture *fx = *state;
    const struct sp_event *ev = fx->ins;
    assert_true(match("after.meta.gift == true", ev));
    assert_true(match("after.meta.gift", ev));
    assert_true(match("after.meta.tags[1] == 'b'", ev));
    assert_true(match("after.meta['tags'][0] == 'a'", ev));
    assert_true(match("after.meta.n >= 2 && after.meta.n < 2.5", ev));
    assert_true(match("after.meta.missing is null", ev));
    assert_true(match("after.meta.tags[9] is null", ev));
    assert_true(match("after.meta.tags is not null", ev));
    assert_true(match("after.tags[2] == 3", ev));
    assert_true(match("after.meta is not null", ev));
}

static void changed_compares_old_and_new(void **state)
{
    struct fx_fixture *fx = *state;
    assert_true(match("changed(status)", fx->upd));
    assert_true(match("changed(total)", fx->upd));
    assert_false(match("changed(email)", fx->upd));
    assert_false(match("changed(id)", fx->upd));
    assert_true(match("changed(status)", fx->ins));
    assert_false(match("changed(status)", fx->msg));
    /* without an old row: a key column did not change, other columns may have */
    struct sp_event *ev = fe_event(fx->rel, SP_OP_UPDATE, NULL, FE_ROW("42", "paid", "1"));
    assert_false(match("changed(id)", ev));
    assert_true(match("changed(status)", ev));
    sp_event_free(ev);
    assert_true(match("op == 'u' && before.status != after.status", fx->upd));
}

static void source_and_message_fields(void **state)
{
    struct fx_fixture *fx = *state;
    assert_true(match("source.table == 'orders' && source.schema == 'public'", fx->ins));
    assert_true(match("source.db == 'shop' && source.name == 'orders'", fx->ins));
    assert_true(match("source.lsn == 24025672 && source.commit_lsn > source.lsn", fx->ins));
    assert_true(match("source.txId == 771 && source.ts_ms == 1763719200500", fx->ins));
    assert_true(match("source.snapshot == 'false'", fx->ins));
    assert_true(match("op == 'm' && message.prefix == 'orders'", fx->msg));
    assert_true(match("message.content == '{\"a\":1}'", fx->msg));
    assert_true(match("message.prefix is null", fx->ins));
    assert_true(match("after is null && source.table == ''", fx->msg));
}

static void fes_jsonpath_form(void **state)
{
    struct fx_fixture *fx = *state;
    /* the spec's example: a jsonb column "Status" with an "Id" member */
    struct sp_relation *rel = fe_rel_named("public", "orders");
    free(rel->cols[C_META].name);
    rel->cols[C_META].name = sp_xstrdup("Status");
    const char *old_row[C_NCOLS] = {"1", "a", "1", "t", "{\"Id\": 1, \"Name\": \"new\"}"};
    const char *new_row[C_NCOLS] = {"1", "a", "1", "t", "{\"Id\": 2, \"Name\": \"paid\"}"};
    const char *same_row[C_NCOLS] = {"1", "b", "1", "t", "{\"Id\": 1, \"Name\": \"renamed\"}"};
    struct sp_event *changed = fe_event(rel, SP_OP_UPDATE, old_row, new_row);
    struct sp_event *same = fe_event(rel, SP_OP_UPDATE, old_row, same_row);
    const char *fes = "[?(@.OldImage.Status.Id != @.NewImage.Status.Id)]";
    assert_true(match(fes, changed));
    assert_false(match(fes, same));
    assert_true(
        match("[?(@.before.Status.Name == 'new' && @.after.Status.Name == 'paid')]", changed));
    assert_true(match(" [?( @.NewImage.Status.Id > 1 )] ", changed));
    /* the same as the plain form */
    assert_int_equal(match("before.Status.Id != after.Status.Id", same), match(fes, same));
    sp_event_free(changed);
    sp_event_free(same);
    sp_relation_unref(rel);
    (void)fx;
}

static void compile_errors_have_positions(void **state)
{
    (void)state;
    compile_error("op == 'x'", 6, "op is never equal to this string");
    compile_error("op == 1", 6, "cannot compare string with number");
    compile_error("source.lsn == 'a'", 14, "cannot compare number with string");
    compile_error("after.x < true", 10, "boolean cannot be ordered");
    compile_error("null > after.x", 0, "null cannot be ordered");
    compile_error("op == 'u' &&", 12, "expected a value, found the end");
    compile_error("after.x = 1", 8, "unexpected \"=\"");
    compile_error("after.x & 1", 8, "unexpected \"&\"");
    compile_error("foo.bar == 1", 0, "unknown name \"foo\"");
    compile_error("op == 'c' && source.tabel == 'x'", 20, "unknown field \"source.tabel\"");
    compile_error("(op == 'u'", 10, "expected \")\"");
    compile_error("op == 'u')", 9, "unexpected \")\" after the expression");
    compile_error("after.s == 'abc", 11, "unterminated string");
    compile_error("after.x in [1, after.y]", 15, "expected a literal in the list");
    compile_error("after.x in [1, 'a']", 15, "cannot compare number with string");
    compile_error("op in ['u', 'z']", 12, "op is never equal");
    compile_error("op", 0, "string is not a condition");
    compile_error("after.x == 1 && 42", 16, "number is not a condition");
    compile_error("after == 1", 0, "a whole row cannot be compared");
    compile_error("1 < 2 < 3", 6, "comparisons cannot be chained");
    compile_error("changed(after.x)", 8, "changed() takes a column name");
    compile_error("changed status", 8, "expected \"(\" after changed");
    compile_error("after.x is 3", 11, "expected null");
    compile_error("after.x == 1.", 11, "invalid number");
    compile_error("after.meta[x] == 1", 10, "unterminated \"[\" in path");
    compile_error("source == 1", 0, "expected a field after \"source.\"");
    compile_error("[?(op == 'u')", 12, "must end with \")]\"");
    compile_error("", 0, "expected a value, found the end");
    compile_error("'a' == 'b' || after.s == 'x\\q'", 27, "invalid escape");
}

static void runtime_errors_never_show_values(void **state)
{
    struct fx_fixture *fx = *state;
    struct sp_filter *f = NULL;
    struct sp_err err;
    size_t off;
    size_t len;
    bool m;
    const char *exprs[] = {"after.nosuch == 1", "after.email.x == 1", "after.email < 5",
                           "after.status"};
    const char *what[] = {"has no column \"nosuch\"", "is not json",
                          "cannot order a string and a number",
                          "after.status is used as a condition but is a string"};
    for (size_t i = 0; i < sizeof(exprs) / sizeof(exprs[0]); i++) {
        sp_err_clear(&err);
        assert_int_equal(sp_filter_compile(exprs[i], strlen(exprs[i]), &f, &off, &len, &err), 0);
        assert_int_not_equal(sp_filter_eval(f, fx->ins, &m, &err), 0);
        sp_filter_free(f);
        if (strstr(err.msg, what[i]) == NULL) {
            fail_msg("\"%s\": \"%s\" lacks \"%s\"", exprs[i], err.msg, what[i]);
        }
        assert_null(strstr(err.msg, "alice@example.com"));
        assert_null(strstr(err.msg, "paid"));
    }
    /* && short-circuits: the guard keeps other tables' events from the missing column */
    assert_false(match("source.table == 'invoices' && after.nosuch == 1", fx->ins));
}

/* Load a config whose stream has flows; return the printed diagnostics (heap). */
static char *config_errors(const char *flows)
{
    char *yaml = sp_xasprintf("sources:\n"
                              "  db: {type: postgres, connection: \"dbname=x\"}\n"
                              "sinks:\n"
                              "  out: {type: stdout}\n"
                              "streams:\n"
                              "  - name: s\n"
                              "    source: db\n"
                              "    tables: [orders]\n"
                              "    sink: out\n"
                              "    flows:\n"
                              "%s",
                              flows);
    struct sp_config *cfg = NULL;
    struct sp_diag d;
    struct sp_buf b;
    sp_diag_init(&d);
    sp_buf_init(&b);
    int rc = sp_cfg_load_string("siphon.yaml", yaml, strlen(yaml), NULL, &cfg, &d);
    sp_diag_format(&d, &b);
    sp_diag_fini(&d);
    sp_cfg_free(cfg);
    free(yaml);
    if (rc == 0) {
        sp_buf_puts(&b, "(loaded)");
    }
    return sp_buf_steal(&b);
}

static void expect_config(const char *flows, const char *expected)
{
    char *out = config_errors(flows);
    if (strcmp(out, expected) != 0) {
        fprintf(stderr, "---- got ----\n%s---- expected ----\n%s----\n", out, expected);
        free(out);
        fail();
    }
    free(out);
}

static void config_errors_point_into_the_expression(void **state)
{
    (void)state;
    /* plain, double-quoted, single-quoted and block scalars */
    expect_config("      - filter: op == 'u' && after.x = 1\n",
                  "siphon.yaml:11:38: error: stream \"s\": filter: unexpected \"=\"\n"
                  "   11 |       - filter: op == 'u' && after.x = 1\n"
                  "      |                                      ^\n"
                  "  hint: compare with \"==\"\n");
    expect_config("      - filter: \"op == 'x'\"\n",
                  "siphon.yaml:11:24: error: stream \"s\": filter: op is never equal to this "
                  "string\n"
                  "   11 |       - filter: \"op == 'x'\"\n"
                  "      |                        ^~~\n"
                  "  hint: op is 'c' (insert), 'u' (update), 'd' (delete), 'r' (snapshot read), "
                  "'t' (truncate) or 'm' (message)\n");
    expect_config("      - filter: 'after.s == ''a'' && sourc.table == 1'\n",
                  "siphon.yaml:11:38: error: stream \"s\": filter: unknown name \"sourc\"\n"
                  "   11 |       - filter: 'after.s == ''a'' && sourc.table == 1'\n"
                  "      |                                      ^\n"
                  "  hint: did you mean \"source\"?\n");
    expect_config("      - filter: |\n"
                  "          op == 'u'\n"
                  "            && source.lsn < 'x'\n",
                  "siphon.yaml:13:29: error: stream \"s\": filter: cannot compare number with "
                  "string\n"
                  "   13 |             && source.lsn < 'x'\n"
                  "      |                             ^~~\n"
                  "  hint: compare values of the same type\n");
    expect_config("      - filter: \"[?(@.OldImage.Status.Id != @.NewImage.Status.Id)]\"\n",
                  "(loaded)");
    expect_config("      - filtre: \"op == 'u'\"\n",
                  "siphon.yaml:11:9: error: stream \"s\": unknown flow \"filtre\"\n"
                  "   11 |       - filtre: \"op == 'u'\"\n"
                  "      |         ^~~~~~\n"
                  "  hint: did you mean \"filter\"?\n");
    expect_config("      - filter: [a]\n",
                  "siphon.yaml:11:17: error: stream \"s\": flow \"filter\" takes an expression "
                  "string, not a list\n"
                  "   11 |       - filter: [a]\n"
                  "      |                 ^~~\n"
                  "  hint: write e.g. - filter: \"op == 'u' && after.status != before.status\"\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(precedence_and_binds_tighter_than_or),
        cmocka_unit_test(every_comparison_on_numbers),
        cmocka_unit_test(numeric_is_compared_exactly),
        cmocka_unit_test(strings_booleans_and_timestamps),
        cmocka_unit_test(in_lists_and_null_tests),
        cmocka_unit_test(json_paths),
        cmocka_unit_test(changed_compares_old_and_new),
        cmocka_unit_test(source_and_message_fields),
        cmocka_unit_test(fes_jsonpath_form),
        cmocka_unit_test(compile_errors_have_positions),
        cmocka_unit_test(runtime_errors_never_show_values),
        cmocka_unit_test(config_errors_point_into_the_expression),
    };
    return cmocka_run_group_tests_name("flow_filter", tests, setup, teardown);
}
