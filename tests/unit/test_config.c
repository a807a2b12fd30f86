// SPDX-License-Identifier: Apache-2.0
/*
 * Configuration: the option validator on a test table with every option
 * type, the value parsers, ${...} substitution, and sp_cfg_load on whole
 * files with the real plugin registry. Diagnostics are compared as printed,
 * caret lines included, because that text is the interface users see.
 * Also checks that docs/config.md matches the option tables.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config/diag.h"
#include "config/env.h"
#include "config/schema.h"
#include "config/yaml.h"
#include "core/registry.h"

#define DOCS_PATH "../../docs/config.md"

/* ---- helpers ---- */

static const char *test_env(const char *name)
{
    static const char *const vars[][2] = {
        {"SINK_PATH", "/var/lib/siphon/out.jsonl"},
        {"PLACEHOLDER", "<unchanged>"},
        {"PG_DSN", "postgres://siphon:hunter2@db:5432/orders"},
        {"EMPTY", ""},
        {"MEMORY", "64MiB"},
    };
    for (size_t i = 0; i < SP_ARRAY_LEN(vars); i++) {
        if (strcmp(vars[i][0], name) == 0) {
            return vars[i][1];
        }
    }
    return NULL;
}

/* Load yaml as "siphon.yaml"; the diagnostics as printed go to out (heap; caller frees). */
static int load(const char *yaml, struct sp_config **cfg, char **out)
{
    struct sp_diag d;
    struct sp_buf b;
    sp_diag_init(&d);
    sp_buf_init(&b);
    int rc = sp_cfg_load_string("siphon.yaml", yaml, strlen(yaml), test_env, cfg, &d);
    sp_diag_format(&d, &b);
    sp_diag_fini(&d);
    *out = sp_buf_steal(&b);
    return rc;
}

/* yaml must fail to load with exactly the diagnostics expected. */
static void expect_diag(const char *yaml, const char *expected)
{
    struct sp_config *cfg = NULL;
    char *out = NULL;
    int rc = load(yaml, &cfg, &out);
    if (strcmp(out, expected) != 0) {
        print_error("--- expected ---\n%s--- got ---\n%s---\n", expected, out);
    }
    assert_string_equal(out, expected);
    assert_int_equal(rc, SP_EINVAL);
    assert_null(cfg);
    free(out);
}

/* ---- the validator, on a table with every option type ---- */

struct t_conf {
    char *name;
    char *token;
    int64_t count;
    bool flag;
    int64_t wait_ms;
    int64_t memory;
    int mode;
    struct sp_strlist tags;
    struct sp_strmap headers;
    int64_t pin;
};

static const char *const t_modes[] = {"fast", "safe", "paranoid", NULL};

static const struct sp_opt t_opts[] = {
    SP_OPT_STR("name", struct t_conf, name, NULL, SP_OPT_REQUIRED, "what to call it"),
    SP_OPT_STR("token", struct t_conf, token, NULL, SP_OPT_SECRET, "API token"),
    SP_OPT_INT("count", struct t_conf, count, "10", 1, 100, "how many"),
    SP_OPT_BOOL("flag", struct t_conf, flag, "true", "a switch"),
    SP_OPT_DURATION("wait", struct t_conf, wait_ms, "250ms", 0, 3600000, "how long"),
    SP_OPT_SIZE("memory", struct t_conf, memory, "64MiB", 1024, 0, "how much"),
    SP_OPT_ENUM("mode", struct t_conf, mode, "safe", t_modes, "how careful"),
    SP_OPT_STRLIST("tags", struct t_conf, tags, 0, "labels"),
    SP_OPT_MAP("headers", struct t_conf, headers, "extra headers"),
    {"pin", SP_OPT_T_INT, SP_OPT_OFFSET(struct t_conf, pin, int64_t), NULL, SP_OPT_SECRET, 0, 9999,
     NULL, "a secret number"},
    SP_OPT_END,
};

/* Validate yaml (a mapping) against t_opts as "t.yaml"; returns the errors, printed. */
static char *validate(const char *yaml, struct t_conf *conf)
{
    struct sp_diag d;
    struct sp_yaml_doc *doc = NULL;
    struct sp_buf b;
    sp_diag_init(&d);
    sp_buf_init(&b);
    memset(conf, 0, sizeof(*conf));
    assert_int_equal(sp_yaml_parse("t.yaml", yaml, strlen(yaml), &doc, &d), 0);
    struct sp_opt_ctx ctx = {.what = "thing \"t\"", .d = &d};
    int n = sp_opt_apply(t_opts, doc->root, &ctx, conf);
    assert_int_equal(n, d.nerrors);

    struct sp_diag_span spans[8];
    int nspans = 0;
    for (int i = 0;
         doc->root != NULL && doc->root->kind == SP_NODE_MAP && i < doc->root->n && nspans < 8;
         i++) {
        const struct sp_node *v = doc->root->pairs[i].value;
        if (v->secret) {
            spans[nspans].line = v->loc.line;
            spans[nspans].col = v->loc.col;
            spans[nspans].len = v->span;
            nspans++;
        }
    }
    sp_diag_attach_source(&d, "t.yaml", yaml, strlen(yaml), spans, nspans, NULL);
    sp_diag_sort(&d);
    sp_diag_format(&d, &b);
    sp_diag_fini(&d);
    sp_yaml_free(doc);
    return sp_buf_steal(&b);
}

static void expect_invalid(const char *yaml, const char *expected)
{
    struct t_conf conf;
    char *out = validate(yaml, &conf);
    if (strcmp(out, expected) != 0) {
        print_error("--- expected ---\n%s--- got ---\n%s---\n", expected, out);
    }
    assert_string_equal(out, expected);
    sp_opt_free_conf(t_opts, &conf);
    free(out);
}

static void validator_fills_every_type(void **state)
{
    (void)state;
    struct t_conf conf;
    char *out = validate("name: widget\n"
                         "token: s3cret\n"
                         "count: 42\n"
                         "flag: off\n"
                         "wait: 2m\n"
                         "memory: 512KiB\n"
                         "mode: paranoid\n"
                         "tags: [a, b]\n"
                         "headers: {X-One: \"1\", X-Two: two}\n"
                         "pin: 1234\n",
                         &conf);
    assert_string_equal(out, "");
    assert_string_equal(conf.name, "widget");
    assert_string_equal(conf.token, "s3cret");
    assert_int_equal(conf.count, 42);
    assert_false(conf.flag);
    assert_int_equal(conf.wait_ms, 120000);
    assert_int_equal(conf.memory, 512 * 1024);
    assert_int_equal(conf.mode, 2);
    assert_int_equal(conf.tags.n, 2);
    assert_string_equal(conf.tags.items[0], "a");
    assert_string_equal(conf.tags.items[1], "b");
    assert_int_equal(conf.headers.n, 2);
    assert_string_equal(conf.headers.keys[1], "X-Two");
    assert_string_equal(conf.headers.values[1], "two");
    assert_int_equal(conf.pin, 1234);
    sp_opt_free_conf(t_opts, &conf);
    assert_null(conf.name);
    assert_null(conf.tags.items);
    free(out);
}

static void validator_applies_defaults(void **state)
{
    (void)state;
    struct t_conf conf;
    char *out = validate("name: widget\ncount:\ntags: one\n", &conf);
    assert_string_equal(out, "");
    assert_null(conf.token);
    assert_int_equal(conf.count, 10); /* a null value means "not given" */
    assert_true(conf.flag);
    assert_int_equal(conf.wait_ms, 250);
    assert_int_equal(conf.memory, 64 * 1024 * 1024);
    assert_int_equal(conf.mode, 1);
    assert_int_equal(conf.tags.n, 1); /* one scalar is a list of one */
    assert_string_equal(conf.tags.items[0], "one");
    assert_int_equal(conf.headers.n, 0);
    sp_opt_free_conf(t_opts, &conf);
    free(out);
}

static void validator_unknown_key_suggests_closest(void **state)
{
    (void)state;
    expect_invalid("name: x\ncuont: 3\n",
                   "t.yaml:2:1: error: thing \"t\": unknown option \"cuont\"\n"
                   "    2 | cuont: 3\n"
                   "      | ^~~~~\n"
                   "  hint: did you mean \"count\"?\n");
}

static void validator_unknown_key_lists_options_when_nothing_is_close(void **state)
{
    (void)state;
    expect_invalid("name: x\nvolume: 3\n",
                   "t.yaml:2:1: error: thing \"t\": unknown option \"volume\"\n"
                   "    2 | volume: 3\n"
                   "      | ^~~~~~\n"
                   "  hint: valid options: name, token, count, flag, wait, memory, mode, tags, "
                   "headers, pin\n");
}

static void validator_wrong_type(void **state)
{
    (void)state;
    expect_invalid("name: x\ncount: [1, 2]\nflag: maybe\ntags: {a: b}\nheaders: [a]\n",
                   "t.yaml:2:8: error: thing \"t\": option \"count\" must be an integer, not a "
                   "list\n"
                   "    2 | count: [1, 2]\n"
                   "      |        ^~~~~~\n"
                   "t.yaml:3:7: error: thing \"t\": option \"flag\" must be true or false, not "
                   "\"maybe\"\n"
                   "    3 | flag: maybe\n"
                   "      |       ^~~~~\n"
                   "  hint: write true or false (yes/no and on/off work too)\n"
                   "t.yaml:4:7: error: thing \"t\": option \"tags\" must be a list of strings, not "
                   "a mapping\n"
                   "    4 | tags: {a: b}\n"
                   "      |       ^~~~~~\n"
                   "t.yaml:5:10: error: thing \"t\": option \"headers\" must be a mapping of names "
                   "to strings, not a list\n"
                   "    5 | headers: [a]\n"
                   "      |          ^~~\n");
}

static void validator_out_of_range(void **state)
{
    (void)state;
    expect_invalid("name: x\ncount: 500\nwait: 2h\nmemory: 100\n",
                   "t.yaml:2:8: error: thing \"t\": option \"count\" must be between 1 and 100, "
                   "not \"500\"\n"
                   "    2 | count: 500\n"
                   "      |        ^~~\n"
                   "t.yaml:3:7: error: thing \"t\": option \"wait\" must be between 0ms and 1h, "
                   "not \"2h\"\n"
                   "    3 | wait: 2h\n"
                   "      |       ^~\n"
                   "t.yaml:4:9: error: thing \"t\": option \"memory\" must be at least 1KiB, not "
                   "\"100\"\n"
                   "    4 | memory: 100\n"
                   "      |         ^~~\n");
}

static void validator_bad_enum_lists_allowed_values(void **state)
{
    (void)state;
    expect_invalid("name: x\nmode: fsat\n",
                   "t.yaml:2:7: error: thing \"t\": invalid value \"fsat\" for option \"mode\" "
                   "(allowed values: fast, safe, paranoid)\n"
                   "    2 | mode: fsat\n"
                   "      |       ^~~~\n"
                   "  hint: did you mean \"fast\"?\n");
}

static void validator_bad_size_and_duration(void **state)
{
    (void)state;
    expect_invalid("name: x\nmemory: 12XB\nwait: 5 sec\ncount: 99999999999999999999\n",
                   "t.yaml:2:9: error: thing \"t\": option \"memory\" must be a size, not "
                   "\"12XB\"\n"
                   "    2 | memory: 12XB\n"
                   "      |         ^~~~\n"
                   "  hint: write a number with a unit: 512KiB, 64MiB, 1GiB, 10MB or 100kB (a bare "
                   "number means bytes)\n"
                   "t.yaml:3:7: error: thing \"t\": option \"wait\" must be a duration, not \"5 "
                   "sec\"\n"
                   "    3 | wait: 5 sec\n"
                   "      |       ^~~~~\n"
                   "  hint: write a number with a unit: 250ms, 5s, 2m or 1h (a bare number means "
                   "milliseconds)\n"
                   "t.yaml:4:8: error: thing \"t\": option \"count\" is too large, not "
                   "\"99999999999999999999\"\n"
                   "    4 | count: 99999999999999999999\n"
                   "      |        ^~~~~~~~~~~~~~~~~~~~\n");
}

static void validator_missing_required_at_mapping(void **state)
{
    (void)state;
    expect_invalid("count: 5\nflag: true\n",
                   "t.yaml:1:1: error: thing \"t\": missing required option \"name\"\n"
                   "    1 | count: 5\n"
                   "      | ^\n"
                   "  hint: name: what to call it\n");
    expect_invalid("name:\n", "t.yaml:1:1: error: thing \"t\": option \"name\" needs a value\n"
                              "    1 | name:\n"
                              "      | ^~~~\n");
    expect_invalid("name: \"\"\n",
                   "t.yaml:1:7: error: thing \"t\": option \"name\" must not be empty\n"
                   "    1 | name: \"\"\n"
                   "      |       ^~\n");
}

static void validator_never_prints_secret_values(void **state)
{
    (void)state;
    /* the value is neither in the message nor in the line shown */
    expect_invalid("name: x\npin: 12345x\n",
                   "t.yaml:2:6: error: thing \"t\": option \"pin\" must be an integer\n"
                   "    2 | pin: ****\n"
                   "      |      ^~~~\n");
    expect_invalid("{name: x, token: \"hunter2\", cuont: 1}\n",
                   "t.yaml:1:29: error: thing \"t\": unknown option \"cuont\"\n"
                   "    1 | {name: x, token: ****, cuont: 1}\n"
                   "      |                        ^~~~~\n"
                   "  hint: did you mean \"count\"?\n");
}

static void validator_not_a_mapping(void **state)
{
    (void)state;
    expect_invalid("[1, 2]\n",
                   "t.yaml:1:1: error: thing \"t\": must be a mapping of options, not a list\n"
                   "    1 | [1, 2]\n"
                   "      | ^~~~~~\n");
}

static void value_parsers(void **state)
{
    (void)state;
    int64_t v = 0;
    bool b = false;
    assert_int_equal(sp_opt_parse_size("64MiB", &v), 0);
    assert_int_equal(v, INT64_C(64) << 20);
    assert_int_equal(sp_opt_parse_size("512KiB", &v), 0);
    assert_int_equal(v, 512 * 1024);
    assert_int_equal(sp_opt_parse_size("1GiB", &v), 0);
    assert_int_equal(v, INT64_C(1) << 30);
    assert_int_equal(sp_opt_parse_size("10MB", &v), 0);
    assert_int_equal(v, 10000000);
    assert_int_equal(sp_opt_parse_size("100kB", &v), 0);
    assert_int_equal(v, 100000);
    assert_int_equal(sp_opt_parse_size("4096", &v), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(sp_opt_parse_size("2 TiB", &v), 0);
    assert_int_equal(v, INT64_C(2) << 40);
    assert_int_equal(sp_opt_parse_size("12XB", &v), -1);
    assert_int_equal(sp_opt_parse_size("-1", &v), -1);
    assert_int_equal(sp_opt_parse_size("1.5MiB", &v), -1);
    assert_int_equal(sp_opt_parse_size("MiB", &v), -1);
    assert_int_equal(sp_opt_parse_size("", &v), -1);
    assert_int_equal(sp_opt_parse_size("64 ", &v), -1);
    assert_int_equal(sp_opt_parse_size("9999999TiB", &v), -2);

    assert_int_equal(sp_opt_parse_duration("250ms", &v), 0);
    assert_int_equal(v, 250);
    assert_int_equal(sp_opt_parse_duration("5s", &v), 0);
    assert_int_equal(v, 5000);
    assert_int_equal(sp_opt_parse_duration("2m", &v), 0);
    assert_int_equal(v, 120000);
    assert_int_equal(sp_opt_parse_duration("1h", &v), 0);
    assert_int_equal(v, 3600000);
    assert_int_equal(sp_opt_parse_duration("15", &v), 0);
    assert_int_equal(v, 15);
    assert_int_equal(sp_opt_parse_duration("5x", &v), -1);
    assert_int_equal(sp_opt_parse_duration("1m30s", &v), -1);

    assert_int_equal(sp_opt_parse_int("-42", &v), 0);
    assert_int_equal(v, -42);
    assert_int_equal(sp_opt_parse_int("9223372036854775807", &v), 0);
    assert_int_equal(v, INT64_MAX);
    assert_int_equal(sp_opt_parse_int("-9223372036854775808", &v), 0);
    assert_true(v == INT64_MIN);
    assert_int_equal(sp_opt_parse_int("9223372036854775808", &v), -2);
    assert_int_equal(sp_opt_parse_int(" 1", &v), -1);
    assert_int_equal(sp_opt_parse_int("1e3", &v), -1);

    static const char *const yes[] = {"true", "True", "yes", "YES", "on"};
    static const char *const no[] = {"false", "FALSE", "no", "No", "off"};
    for (size_t i = 0; i < SP_ARRAY_LEN(yes); i++) {
        assert_int_equal(sp_opt_parse_bool(yes[i], &b), 0);
        assert_true(b);
        assert_int_equal(sp_opt_parse_bool(no[i], &b), 0);
        assert_false(b);
    }
    assert_int_equal(sp_opt_parse_bool("1", &b), -1);
    assert_int_equal(sp_opt_parse_bool("maybe", &b), -1);

    char buf[32];
    sp_opt_format_size(INT64_C(16) << 20, buf, sizeof(buf));
    assert_string_equal(buf, "16MiB");
    sp_opt_format_size(1000, buf, sizeof(buf));
    assert_string_equal(buf, "1000B");
    sp_opt_format_duration(30000, buf, sizeof(buf));
    assert_string_equal(buf, "30s");
    sp_opt_format_duration(1500, buf, sizeof(buf));
    assert_string_equal(buf, "1500ms");
    sp_opt_format_duration(7200000, buf, sizeof(buf));
    assert_string_equal(buf, "2h");
}

static void did_you_mean_by_edit_distance(void **state)
{
    (void)state;
    static const char *const names[] = {"topic", "brokers", "slot", "snapshot", "path"};
    assert_int_equal(sp_str_distance("topci", "topic"), 1); /* a transposition */
    assert_int_equal(sp_str_distance("kitten", "sitting"), 3);
    assert_int_equal(sp_str_distance("", "abc"), 3);
    assert_int_equal(sp_str_distance("Slot", "slot"), 0);
    assert_string_equal(sp_str_suggest("topci", names, SP_ARRAY_LEN(names)), "topic");
    assert_string_equal(sp_str_suggest("broker", names, SP_ARRAY_LEN(names)), "brokers");
    assert_string_equal(sp_str_suggest("slto", names, SP_ARRAY_LEN(names)), "slot");
    assert_string_equal(sp_str_suggest("snapshoot", names, SP_ARRAY_LEN(names)), "snapshot");
    assert_string_equal(sp_str_suggest("PATH", names, SP_ARRAY_LEN(names)), "path");
    assert_null(sp_str_suggest("xyz", names, SP_ARRAY_LEN(names)));
    assert_null(sp_str_suggest("compression", names, SP_ARRAY_LEN(names)));
}

static void every_option_table_is_well_formed(void **state)
{
    (void)state;
    struct sp_err err;
    sp_err_clear(&err);
    assert_int_equal(sp_opt_check_table(t_opts, &err), 0);
    assert_int_equal(sp_opt_check_table(sp_cfg_settings_opts, &err), 0);
    assert_int_equal(sp_opt_check_table(sp_cfg_stream_opts, &err), 0);
    assert_int_equal(sp_opt_check_table(sp_cfg_recovery_opts, &err), 0);
    for (size_t i = 0; sp_registry_sources[i] != NULL; i++) {
        if (sp_opt_check_table(sp_registry_sources[i]->opts, &err) != 0) {
            fail_msg("source \"%s\": %s", sp_registry_sources[i]->type, err.msg);
        }
    }
    for (size_t i = 0; sp_registry_sinks[i] != NULL; i++) {
        if (sp_opt_check_table(sp_registry_sinks[i]->opts, &err) != 0) {
            fail_msg("sink \"%s\": %s", sp_registry_sinks[i]->type, err.msg);
        }
    }

    static const struct sp_opt bad_default[] = {
        SP_OPT_SIZE("memory", struct t_conf, memory, "lots", 0, 0, "how much"),
        SP_OPT_END,
    };
    static const struct sp_opt twice[] = {
        SP_OPT_INT("count", struct t_conf, count, "1", 0, 0, "how many"),
        SP_OPT_INT("count", struct t_conf, count, "1", 0, 0, "how many"),
        SP_OPT_END,
    };
    static const struct sp_opt out_of_bounds[] = {
        SP_OPT_INT("count", struct t_conf, count, "0", 1, 10, "how many"),
        SP_OPT_END,
    };
    assert_int_equal(sp_opt_check_table(bad_default, &err), SP_EINVAL);
    assert_string_equal(err.msg, "option \"memory\": bad default \"lots\"");
    assert_int_equal(sp_opt_check_table(twice, &err), SP_EINVAL);
    assert_string_equal(err.msg, "option \"count\" is listed twice");
    assert_int_equal(sp_opt_check_table(out_of_bounds, &err), SP_EINVAL);
}

/* ---- substitution ---- */

static char *expand(const char *s, const char *base_dir, struct sp_err *err, int *rc)
{
    struct sp_buf out;
    sp_buf_init(&out);
    sp_err_clear(err);
    *rc = sp_env_expand(s, strlen(s), test_env, base_dir, &out, NULL, err);
    return sp_buf_steal(&out);
}

static void substitution_forms(void **state)
{
    (void)state;
    struct sp_err err;
    int rc;
    char *s = expand("${SINK_PATH}", NULL, &err, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(s, "/var/lib/siphon/out.jsonl");
    free(s);
    s = expand("cost: $$5, ${EMPTY}[${PLACEHOLDER}] $x $", NULL, &err, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(s, "cost: $5, [<unchanged>] $x $");
    free(s);
    s = expand("$${NOT_A_VAR}", NULL, &err, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(s, "${NOT_A_VAR}");
    free(s);
    s = expand("${MISSING}", NULL, &err, &rc);
    assert_int_equal(rc, SP_EINVAL);
    assert_string_equal(err.msg, "environment variable MISSING is not set");
    free(s);
    s = expand("abc ${SINK_PATH", NULL, &err, &rc);
    assert_int_equal(rc, SP_EINVAL);
    assert_string_equal(err.msg, "unterminated \"${\" in value");
    free(s);
    s = expand("${1X}", NULL, &err, &rc);
    assert_int_equal(rc, SP_EINVAL);
    assert_string_equal(err.msg, "invalid reference \"${1X}\"");
    free(s);
    s = expand("${file:}", NULL, &err, &rc);
    assert_int_equal(rc, SP_EINVAL);
    free(s);
}

/* A temporary directory with files; removed by rm_tree. */
static char *make_dir(void)
{
    char tmpl[] = "/tmp/siphon-test-config-XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    return sp_xstrdup(dir);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char *path = sp_xasprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    free(path);
}

static void remove_files(const char *dir, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *path = sp_xasprintf("%s/%s", dir, names[i]);
        unlink(path);
        free(path);
    }
    rmdir(dir);
}

/* ---- whole files ---- */

static const char full_example[] =
    "# a complete configuration\n"
    "sources:\n"
    "  orders:\n"
    "    type: postgres\n"
    "    connection: \"${PG_DSN}\"\n"
    "    slot: siphon_orders\n"
    "    publication: siphon_orders\n"
    "    snapshot: never\n"
    "  billing: {type: postgres, connection: \"host=db2 password=hunter2 dbname=billing\"}\n"
    "sinks:\n"
    "  bus:\n"
    "    type: file\n"
    "    path: ${SINK_PATH}\n"
    "  dead:\n"
    "    type: file\n"
    "    path: /var/lib/siphon/dead-letters.jsonl\n"
    "    fsync: yes\n"
    "  screen: {type: stdout}\n"
    "streams:\n"
    "  - name: orders-to-bus\n"
    "    source: orders\n"
    "    tables: [public.orders, order_items, '\"My Schema\".\"Order\"', Sales.Invoices]\n"
    "    format: json\n"
    "    sink: bus\n"
    "    recovery: { type: dead_letter, sink: dead }\n"
    "    messages: false\n"
    "    toast_placeholder: \"${PLACEHOLDER}\"\n"
    "    flows: []\n"
    "  - name: billing\n"
    "    source: billing\n"
    "    tables: invoices\n"
    "    sink: screen\n"
    "    recovery: {type: ignore}\n"
    "  - name: orders-audit\n"
    "    source: orders\n"
    "    tables:\n"
    "      - public.orders\n"
    "    sink: screen\n"
    "settings:\n"
    "  memory_limit: ${MEMORY}\n"
    "  shutdown_timeout: 5s\n"
    "  state_dir: /var/lib/siphon\n";

static void full_example_parses_into_structs(void **state)
{
    (void)state;
    struct sp_config *cfg = NULL;
    char *out = NULL;
    assert_int_equal(load(full_example, &cfg, &out), 0);
    assert_string_equal(out, "");
    assert_non_null(cfg);
    assert_string_equal(cfg->file, "siphon.yaml");

    assert_int_equal(cfg->nsources, 2);
    assert_string_equal(cfg->sources[0].name, "orders");
    assert_ptr_equal(cfg->sources[0].ops, sp_registry_source("postgres"));
    assert_non_null(cfg->sources[0].conf);
    assert_int_equal(cfg->sources[0].loc.line, 3);
    assert_int_equal(cfg->sources[0].loc.col, 3);
    assert_string_equal(cfg->sources[1].name, "billing");

    assert_int_equal(cfg->nsinks, 3);
    assert_string_equal(cfg->sinks[0].name, "bus");
    assert_ptr_equal(cfg->sinks[0].ops, sp_registry_sink("file"));
    assert_string_equal(cfg->sinks[2].name, "screen");
    assert_ptr_equal(cfg->sinks[2].ops, sp_registry_sink("stdout"));

    assert_int_equal(cfg->nstreams, 3);
    const struct sp_cfg_stream *st = &cfg->streams[0];
    assert_string_equal(st->name, "orders-to-bus");
    assert_int_equal(st->loc.line, 20);
    assert_int_equal(st->source, 0);
    assert_int_equal(st->sink, 0);
    assert_ptr_equal(st->format, sp_registry_format("json"));
    assert_int_equal(st->recovery, SP_RECOVERY_DEAD_LETTER);
    assert_int_equal(st->recovery_sink, 1);
    assert_false(st->messages);
    assert_string_equal(st->toast_placeholder, "<unchanged>");
    assert_non_null(st->flows);
    assert_int_equal(st->ntables, 4);
    assert_string_equal(st->tables[0].schema, "public");
    assert_string_equal(st->tables[0].table, "orders");
    assert_string_equal(st->tables[1].schema, "public");
    assert_string_equal(st->tables[1].table, "order_items");
    assert_string_equal(st->tables[2].schema, "My Schema");
    assert_string_equal(st->tables[2].table, "Order");
    assert_string_equal(st->tables[3].schema, "sales");
    assert_string_equal(st->tables[3].table, "invoices");
    assert_int_equal(st->tables[3].loc.line, 22);

    st = &cfg->streams[1];
    assert_string_equal(st->name, "billing");
    assert_int_equal(st->source, 1);
    assert_int_equal(st->sink, 2);
    assert_int_equal(st->recovery, SP_RECOVERY_IGNORE);
    assert_int_equal(st->recovery_sink, -1);
    assert_true(st->messages);
    assert_string_equal(st->toast_placeholder, "__siphon_unavailable");
    assert_null(st->flows);
    assert_int_equal(st->ntables, 1);
    assert_string_equal(st->tables[0].table, "invoices");

    st = &cfg->streams[2];
    assert_int_equal(st->source, 0); /* two streams on one source */
    assert_int_equal(st->recovery, SP_RECOVERY_FAIL);
    assert_ptr_equal(st->format, sp_registry_format("json"));

    assert_int_equal(cfg->memory_limit, INT64_C(64) << 20);
    assert_int_equal(cfg->shutdown_timeout, 5000);
    assert_string_equal(cfg->state_dir, "/var/lib/siphon");
    sp_cfg_free(cfg);
    free(out);
}

static void settings_have_defaults(void **state)
{
    (void)state;
    struct sp_config *cfg = NULL;
    char *out = NULL;
    assert_int_equal(load("sources: {db: {type: postgres, connection: x}}\n"
                          "sinks: {out: {type: stdout}}\n"
                          "streams: [{name: s, source: db, tables: [t], sink: out}]\n",
                          &cfg, &out),
                     0);
    assert_string_equal(out, "");
    assert_int_equal(cfg->memory_limit, INT64_C(16) << 20);
    assert_int_equal(cfg->shutdown_timeout, 30000);
    assert_null(cfg->state_dir);
    sp_cfg_free(cfg);
    free(out);
}

/* The prefix every whole-file case below shares: lines 1-9. */
#define BASE                                            \
    "sources:\n"                                        \
    "  orders:\n"                                       \
    "    type: postgres\n"                              \
    "    connection: \"postgres://siphon@db/orders\"\n" \
    "sinks:\n"                                          \
    "  bus:\n"                                          \
    "    type: file\n"                                  \
    "    path: /tmp/out.jsonl\n"                        \
    "  dead: {type: file, path: /tmp/dead.jsonl}\n"

#define STREAM                  \
    "streams:\n"                \
    "  - name: orders-to-bus\n" \
    "    source: orders\n"      \
    "    tables: [orders]\n"    \
    "    sink: bus\n"           \
    "    recovery: {type: dead_letter, sink: dead}\n"

static void base_is_valid(void **state)
{
    (void)state;
    struct sp_config *cfg = NULL;
    char *out = NULL;
    assert_int_equal(load(BASE STREAM, &cfg, &out), 0);
    assert_string_equal(out, "");
    sp_cfg_free(cfg);
    free(out);
}

static void plugin_unknown_option_did_you_mean(void **state)
{
    (void)state;
    expect_diag("sources:\n"
                "  orders:\n"
                "    type: postgres\n"
                "    connection: \"postgres://siphon@db/orders\"\n"
                "    slto: siphon_orders\n"
                "sinks:\n"
                "  bus:\n"
                "    type: file\n"
                "    paht: /tmp/out.jsonl\n"
                "  dead: {type: file, path: /tmp/dead.jsonl}\n" STREAM,
                "siphon.yaml:5:5: error: source \"orders\" (postgres): unknown option \"slto\"\n"
                "    5 |     slto: siphon_orders\n"
                "      |     ^~~~\n"
                "  hint: did you mean \"slot\"?\n"
                "siphon.yaml:8:5: error: sink \"bus\" (file): missing required option \"path\"\n"
                "    8 |     type: file\n"
                "      |     ^\n"
                "  hint: path: file to append JSON Lines to; created if absent\n"
                "siphon.yaml:9:5: error: sink \"bus\" (file): unknown option \"paht\"\n"
                "    9 |     paht: /tmp/out.jsonl\n"
                "      |     ^~~~\n"
                "  hint: did you mean \"path\"?\n");
}

static void plugin_option_wrong_type_range_enum(void **state)
{
    (void)state;
    expect_diag(
        BASE STREAM "settings:\n"
                    "  memory_limit: 512KiB\n"
                    "  shutdown_timeout: 5 minutes\n"
                    "  state_dir: [a]\n",
        "siphon.yaml:17:17: error: settings: option \"memory_limit\" must be at least 1MiB, "
        "not \"512KiB\"\n"
        "   17 |   memory_limit: 512KiB\n"
        "      |                 ^~~~~~\n"
        "siphon.yaml:18:21: error: settings: option \"shutdown_timeout\" must be a duration, "
        "not \"5 minutes\"\n"
        "   18 |   shutdown_timeout: 5 minutes\n"
        "      |                     ^~~~~~~~~\n"
        "  hint: write a number with a unit: 250ms, 5s, 2m or 1h (a bare number means "
        "milliseconds)\n"
        "siphon.yaml:19:14: error: settings: option \"state_dir\" must be a string, not a "
        "list\n"
        "   19 |   state_dir: [a]\n"
        "      |              ^~~\n");
    expect_diag(
        "sources:\n"
        "  orders:\n"
        "    type: postgres\n"
        "    connection: \"postgres://siphon@db/orders\"\n"
        "    snapshot: inital\n"
        "    status_interval: 1ms\n"
        "sinks:\n"
        "  bus:\n"
        "    type: file\n"
        "    path: /tmp/out.jsonl\n"
        "    fsync: maybe\n"
        "  dead: {type: file, path: /tmp/dead.jsonl}\n" STREAM,
        "siphon.yaml:5:15: error: source \"orders\" (postgres): invalid value \"inital\" for "
        "option \"snapshot\" (allowed values: never, initial)\n"
        "    5 |     snapshot: inital\n"
        "      |               ^~~~~~\n"
        "  hint: did you mean \"initial\"?\n"
        "siphon.yaml:6:22: error: source \"orders\" (postgres): option \"status_interval\" "
        "must be between 100ms and 1h, not \"1ms\"\n"
        "    6 |     status_interval: 1ms\n"
        "      |                      ^~~\n"
        "siphon.yaml:11:12: error: sink \"bus\" (file): option \"fsync\" must be true or "
        "false, not \"maybe\"\n"
        "   11 |     fsync: maybe\n"
        "      |            ^~~~~\n"
        "  hint: write true or false (yes/no and on/off work too)\n");
}

static void unknown_plugin_type(void **state)
{
    (void)state;
    /* The hint lists the registered sink types, which grow as sinks are added;
     * "carrier-pigeon" is close to none of them. */
    char sinks[512] = "";
    size_t len = 0;
    for (size_t i = 0; sp_registry_sinks[i] != NULL && len < sizeof(sinks); i++) {
        len += (size_t)snprintf(sinks + len, sizeof(sinks) - len, "%s%s", i > 0 ? ", " : "",
                                sp_registry_sinks[i]->type);
    }
    char *expected = sp_xasprintf(
        "siphon.yaml:3:11: error: source \"orders\": unknown source type \"postgress\"\n"
        "    3 |     type: postgress\n"
        "      |           ^~~~~~~~~\n"
        "  hint: did you mean \"postgres\"?\n"
        "siphon.yaml:7:11: error: sink \"bus\": unknown sink type \"carrier-pigeon\"\n"
        "    7 |     type: carrier-pigeon\n"
        "      |           ^~~~~~~~~~~~~~\n"
        "  hint: available sink types: %s\n"
        "siphon.yaml:9:9: error: sink \"dead\": missing required option \"type\"\n"
        "    9 |   dead: {path: /tmp/dead.jsonl}\n"
        "      |         ^~~~~~~~~~~~~~~~~~~~~~~\n"
        "  hint: available sink types: %s\n",
        sinks, sinks);
    expect_diag("sources:\n"
                "  orders:\n"
                "    type: postgress\n"
                "    connection: \"postgres://siphon@db/orders\"\n"
                "sinks:\n"
                "  bus:\n"
                "    type: carrier-pigeon\n"
                "    brokers: localhost:9092\n"
                "  dead: {path: /tmp/dead.jsonl}\n" STREAM,
                expected);
    free(expected);
}

static void undefined_references(void **state)
{
    (void)state;
    expect_diag(
        BASE "streams:\n"
             "  - name: orders-to-bus\n"
             "    source: order\n"
             "    tables: [orders]\n"
             "    sink: buss\n"
             "    recovery: {type: dead_letter, sink: letters}\n"
             "    format: jsonl\n",
        "siphon.yaml:12:13: error: stream \"orders-to-bus\": source \"order\" is not defined "
        "(defined sources: orders)\n"
        "   12 |     source: order\n"
        "      |             ^~~~~\n"
        "  hint: did you mean \"orders\"?\n"
        "siphon.yaml:14:11: error: stream \"orders-to-bus\": sink \"buss\" is not defined "
        "(defined sinks: bus, dead)\n"
        "   14 |     sink: buss\n"
        "      |           ^~~~\n"
        "  hint: did you mean \"bus\"?\n"
        "siphon.yaml:15:41: error: stream \"orders-to-bus\": recovery sink \"letters\" is not "
        "defined (defined sinks: bus, dead)\n"
        "   15 |     recovery: {type: dead_letter, sink: letters}\n"
        "      |                                         ^~~~~~~\n"
        "siphon.yaml:16:13: error: stream \"orders-to-bus\": unknown format \"jsonl\" "
        "(available formats: json, debezium, nakadi)\n"
        "   16 |     format: jsonl\n"
        "      |             ^~~~~\n"
        "  hint: did you mean \"json\"?\n");
}

static void duplicate_key(void **state)
{
    (void)state;
    expect_diag(BASE STREAM "    sink: dead\n", "siphon.yaml:16:5: error: duplicate key \"sink\"\n"
                                                "   16 |     sink: dead\n"
                                                "      |     ^~~~\n"
                                                "  hint: \"sink\" is first defined at line 14\n");
}

static void duplicate_stream_name(void **state)
{
    (void)state;
    expect_diag(BASE STREAM "  - name: orders-to-bus\n"
                            "    source: orders\n"
                            "    tables: [items]\n"
                            "    sink: dead\n",
                "siphon.yaml:16:11: error: duplicate stream name \"orders-to-bus\"\n"
                "   16 |   - name: orders-to-bus\n"
                "      |           ^~~~~~~~~~~~~\n"
                "  hint: the first stream named \"orders-to-bus\" is at line 11\n");
}

static void stream_checks(void **state)
{
    (void)state;
    /* tables: syntax, duplicates (after folding), empty; recovery rules; flows */
    expect_diag(
        BASE "streams:\n"
             "  - name: a\n"
             "    source: orders\n"
             "    tables: [public.orders, Orders, '\"x', a.b.c, '\"\"']\n"
             "    sink: bus\n"
             "    recovery: {type: dead_letter, sink: bus}\n"
             "  - name: b\n"
             "    source: orders\n"
             "    tables: []\n"
             "    sink: bus\n"
             "    recovery: {type: dead_letter}\n"
             "  - name: \"\"\n"
             "    source: orders\n"
             "    tables: [t]\n"
             "    sink: dead\n"
             "    recovery: {type: ignore, sink: bus}\n"
             "    flows:\n"
             "      - filtr: \"op == 'u'\"\n",
        "siphon.yaml:13:29: error: stream \"a\": table public.orders is listed twice\n"
        "   13 |     tables: [public.orders, Orders, '\"x', a.b.c, '\"\"']\n"
        "      |                             ^~~~~~\n"
        "  hint: first listed at line 13, column 14 as \"public.orders\"\n"
        "siphon.yaml:13:37: error: stream \"a\": invalid table name \"\"x\": unterminated "
        "quote\n"
        "   13 |     tables: [public.orders, Orders, '\"x', a.b.c, '\"\"']\n"
        "      |                                     ^~~~\n"
        "  hint: write table, schema.table or \"Quoted Schema\".\"Quoted Table\"\n"
        "siphon.yaml:13:43: error: stream \"a\": invalid table name \"a.b.c\": more than two "
        "parts (schema.table)\n"
        "   13 |     tables: [public.orders, Orders, '\"x', a.b.c, '\"\"']\n"
        "      |                                           ^~~~~\n"
        "  hint: write table, schema.table or \"Quoted Schema\".\"Quoted Table\"\n"
        "siphon.yaml:13:50: error: stream \"a\": invalid table name \"\"\"\": empty quoted "
        "name\n"
        "   13 |     tables: [public.orders, Orders, '\"x', a.b.c, '\"\"']\n"
        "      |                                                  ^~~~\n"
        "  hint: write table, schema.table or \"Quoted Schema\".\"Quoted Table\"\n"
        "siphon.yaml:15:41: error: stream \"a\": recovery sink \"bus\" is the stream's own "
        "sink\n"
        "   15 |     recovery: {type: dead_letter, sink: bus}\n"
        "      |                                         ^~~\n"
        "  hint: dead letters must go to a different sink, e.g. a file\n"
        "siphon.yaml:18:13: error: stream \"b\": key \"tables\" must not be empty\n"
        "   18 |     tables: []\n"
        "      |             ^~\n"
        "siphon.yaml:20:15: error: stream \"b\": recovery type \"dead_letter\" needs a "
        "\"sink\"\n"
        "   20 |     recovery: {type: dead_letter}\n"
        "      |               ^~~~~~~~~~~~~~~~~~~\n"
        "  hint: name the sink that receives events the stream's sink rejects\n"
        "siphon.yaml:21:11: error: stream #3: key \"name\" must not be empty\n"
        "   21 |   - name: \"\"\n"
        "      |           ^~\n"
        "siphon.yaml:25:36: error: stream #3: a recovery sink is only used with type "
        "\"dead_letter\"\n"
        "   25 |     recovery: {type: ignore, sink: bus}\n"
        "      |                                    ^~~\n"
        "  hint: set \"type: dead_letter\", or remove the sink\n"
        "siphon.yaml:27:9: error: stream #3: unknown flow \"filtr\"\n"
        "   27 |       - filtr: \"op == 'u'\"\n"
        "      |         ^~~~~\n"
        "  hint: did you mean \"filter\"?\n");
}

static void missing_env_var(void **state)
{
    (void)state;
    expect_diag("sources:\n"
                "  orders:\n"
                "    type: postgres\n"
                "    slot: siphon_orders\n"
                "    connection: ${ORDERS_DSN}\n"
                "sinks:\n"
                "  bus:\n"
                "    type: file\n"
                "    path: /tmp/out.jsonl\n"
                "  dead: {type: file, path: /tmp/dead.jsonl}\n" STREAM,
                "siphon.yaml:5:17: error: environment variable ORDERS_DSN is not set\n"
                "    5 |     connection: ${ORDERS_DSN}\n"
                "      |                 ^~~~~~~~~~~~~\n"
                "  hint: export ORDERS_DSN before starting siphon, or write $$ for a literal "
                "\"$\"\n");
}

static void file_substitution_and_dollar_escape(void **state)
{
    (void)state;
    char *dir = make_dir();
    static const char *const files[] = {"siphon.yaml", "placeholder.txt"};
    write_file(dir, "placeholder.txt", "from a file\n");
    write_file(dir, "siphon.yaml",
               BASE STREAM "    toast_placeholder: \"${file:placeholder.txt} costs $$5\"\n"
                           "  - name: second\n"
                           "    source: orders\n"
                           "    tables: [t]\n"
                           "    sink: bus\n"
                           "    toast_placeholder: \"${file:missing.txt}\"\n");
    char *path = sp_xasprintf("%s/siphon.yaml", dir);
    struct sp_diag d;
    struct sp_config *cfg = NULL;
    struct sp_buf b;
    sp_diag_init(&d);
    sp_buf_init(&b);
    assert_int_equal(sp_cfg_load(path, test_env, &cfg, &d), SP_EINVAL);
    sp_diag_format(&d, &b);
    char *expected = sp_xasprintf(
        "%s:21:24: error: could not read file \"%s/missing.txt\": No such file or directory\n"
        "   21 |     toast_placeholder: \"${file:missing.txt}\"\n"
        "      |                        ^~~~~~~~~~~~~~~~~~~~~\n"
        "  hint: a relative path is taken from the configuration file's directory (%s)\n",
        path, dir, dir);
    assert_string_equal(b.data, expected);
    free(expected);
    sp_buf_fini(&b);
    sp_diag_fini(&d);

    /* without the second stream it loads, with the file's text substituted */
    write_file(dir, "siphon.yaml",
               BASE STREAM "    toast_placeholder: \"${file:placeholder.txt} costs $$5\"\n");
    sp_diag_init(&d);
    assert_int_equal(sp_cfg_load(path, test_env, &cfg, &d), 0);
    assert_int_equal(d.n, 0);
    assert_string_equal(cfg->streams[0].toast_placeholder, "from a file costs $5");
    sp_cfg_free(cfg);
    sp_diag_fini(&d);

    free(path);
    remove_files(dir, files, SP_ARRAY_LEN(files));
    free(dir);
}

static void load_from_file_resolves_relative_paths(void **state)
{
    (void)state;
    struct sp_diag d;
    struct sp_config *cfg = NULL;
    sp_diag_init(&d);
    assert_int_equal(sp_cfg_load("data/config/valid.yaml", NULL, &cfg, &d), 0);
    assert_int_equal(d.n, 0);
    assert_string_equal(cfg->file, "data/config/valid.yaml");
    assert_int_equal(cfg->nstreams, 1);
    assert_string_equal(cfg->streams[0].toast_placeholder, "<unchanged>");
    assert_int_equal(cfg->streams[0].recovery_sink, 1);
    assert_int_equal(cfg->memory_limit, INT64_C(32) << 20);
    assert_int_equal(cfg->shutdown_timeout, 60000);
    assert_ptr_equal(cfg->streams[0].loc.file, cfg->file);
    sp_cfg_free(cfg);
    sp_diag_fini(&d);
}

static void missing_config_file(void **state)
{
    (void)state;
    struct sp_diag d;
    struct sp_config *cfg = NULL;
    struct sp_buf b;
    sp_diag_init(&d);
    sp_buf_init(&b);
    assert_int_equal(sp_cfg_load("/nonexistent/siphon.yaml", NULL, &cfg, &d), SP_EINVAL);
    assert_null(cfg);
    sp_diag_format(&d, &b);
    assert_string_equal(b.data, "/nonexistent/siphon.yaml: error: could not open the "
                                "configuration file: No such file or directory\n");
    sp_buf_fini(&b);
    sp_diag_fini(&d);
}

static void yaml_syntax_errors(void **state)
{
    (void)state;
    expect_diag("sources:\n"
                "  orders:\n"
                "    type: postgres\n"
                "    publication: orders: all\n",
                "siphon.yaml:4:24: error: invalid YAML: mapping values are not allowed in this "
                "context\n"
                "    4 |     publication: orders: all\n"
                "      |                        ^\n"
                "  hint: a value containing \": \" must be quoted\n");
    expect_diag("sinks:\n"
                "\tbus: {type: stdout}\n",
                "siphon.yaml:2:1: error: invalid YAML: found character that cannot start any token "
                "(while scanning for the next token at line 2)\n"
                "    2 | \tbus: {type: stdout}\n"
                "      | ^\n"
                "  hint: YAML does not allow tabs for indentation; use spaces\n");
    expect_diag(
        "streams: [{name: a, tables: [x, y}]\n",
        "siphon.yaml:1:34: error: invalid YAML: did not find expected ',' or ']' (while "
        "parsing a flow sequence at line 1)\n"
        "    1 | streams: [{name: a, tables: [x, y}]\n"
        "      |                                  ^\n"
        "  hint: check the brackets; inside { } or [ ], values containing { } [ ] or , (such "
        "as ${...}) must be quoted\n");
    expect_diag("", "siphon.yaml: error: the configuration file is empty\n"
                    "  hint: define sources, sinks and the streams connecting them\n");
    expect_diag(
        "- a\n- b\n",
        "siphon.yaml:1:1: error: the configuration must be a mapping with sources, sinks and "
        "streams, not a list\n"
        "    1 | - a\n"
        "      | ^\n");
    expect_diag(BASE STREAM "---\nsources: {}\n",
                "siphon.yaml:16:1: error: only one YAML document is allowed in a configuration "
                "file\n"
                "   16 | ---\n"
                "      | ^~~\n"
                "  hint: remove this \"---\" and what follows, or merge the documents\n");
    expect_diag("a: &x [1, *x]\n", "siphon.yaml:1:4: error: YAML alias refers to a node that "
                                   "contains it\n"
                                   "    1 | a: &x [1, *x]\n"
                                   "      |    ^\n");
}

static void secrets_are_never_printed(void **state)
{
    (void)state;
    static const char *const cases[] = {
        /* a wrong type for the secret itself */
        "sources:\n  orders: {type: postgres, connection: {password: hunter2}}\n",
        /* an error on the line that holds it */
        "sources:\n  orders: {type: postgres, connection: \"postgres://u:hunter2@db/x\", x: 1}\n",
        "sources:\n  orders: {type: postgres, connection: 'password=hunter2 host=db', x: 1}\n",
        /* a duplicate key: the line shown is the second definition */
        ("sources:\n  orders:\n    type: postgres\n    connection: \"password=hunter1\"\n"
         "    connection: \"host=db password=hunter2\"\n"),
        /* the secret under an unknown type: not known to be secret, masked as a DSN */
        "sources:\n  orders: {type: pg, connection: \"dbname=x password = 'hun ter2'\"}\n",
        /* a syntax error: options are unknown, but "connection" is a secret of some type */
        "sources:\n  orders:\n    type: postgres\n    connection: user=u pass: hunter2\n",
        "sources:\n  orders: {type: postgres, connection: \"a hunter2\", x: [}\n",
        /* from the environment, with an error on the same line */
        "sources:\n  orders: {type: postgres, connection: \"${PG_DSN}\", slto: 1}\n",
    };
    for (size_t i = 0; i < SP_ARRAY_LEN(cases); i++) {
        struct sp_config *cfg = NULL;
        char *out = NULL;
        assert_int_equal(load(cases[i], &cfg, &out), SP_EINVAL);
        if (strstr(out, "hunter") != NULL || strstr(out, "hun ter") != NULL) {
            fail_msg("case %zu printed a secret:\n%s", i, out);
        }
        assert_non_null(strstr(out, "error:"));
        free(out);
    }
}

static void mask_conninfo(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"postgres://siphon:hunter2@db:5432/orders?sslmode=require",
         "postgres://siphon:****@db:5432/orders?sslmode=require"},
        {"postgres://siphon@db/orders", "postgres://siphon@db/orders"},
        {"postgresql://u:p@ss@db/x", "postgresql://u:****@db/x"},
        {"postgres://db/x?user=u&password=secret&sslmode=require",
         "postgres://db/x?user=u&password=****&sslmode=require"},
        {"host=db password=secret user=u", "host=db password=**** user=u"},
        {"host=db password = 'it\\'s secret' user=u", "host=db password = '****' user=u"},
        {"PASSWORD=x", "PASSWORD=****"},
        {"no secrets here", "no secrets here"},
        {"password=", "password="},
    };
    for (size_t i = 0; i < SP_ARRAY_LEN(cases); i++) {
        char *m = sp_cfg_mask_conninfo(cases[i][0]);
        assert_string_equal(m, cases[i][1]);
        free(m);
    }
}

static void table_names(void **state)
{
    (void)state;
    static const char *const ok[][3] = {
        {"orders", "public", "orders"},
        {"Sales.Invoices", "sales", "invoices"},
        {"\"My Schema\".\"Order\"", "My Schema", "Order"},
        {"s.\"a.b\"", "s", "a.b"},
        {"\"say \"\"hi\"\"\"", "public", "say \"hi\""},
        {"_x$1", "public", "_x$1"},
    };
    for (size_t i = 0; i < SP_ARRAY_LEN(ok); i++) {
        struct sp_err err;
        char *schema;
        char *table;
        sp_err_clear(&err);
        assert_int_equal(sp_cfg_parse_table(ok[i][0], &schema, &table, &err), 0);
        assert_string_equal(schema, ok[i][1]);
        assert_string_equal(table, ok[i][2]);
        free(schema);
        free(table);
    }
    static const char *const bad[][2] = {
        {"", "empty table name"},
        {"a.b.c", "invalid table name \"a.b.c\": more than two parts (schema.table)"},
        {"\"open", "invalid table name \"\"open\": unterminated quote"},
        {"\"\".t", "invalid table name \"\"\".t\": empty quoted name"},
        {"a.", "invalid table name \"a.\": empty name part"},
        {".a", "invalid table name \".a\": empty name part"},
        {"a b", "invalid table name \"a b\": unexpected \" \""},
        {"1abc", "invalid table name \"1abc\": unexpected \"1\""},
        {"a234567890123456789012345678901234567890123456789012345678901234",
         "invalid table name \"a234567890123456789012345678901234567890123456789012345678901234\""
         ": a name part is longer than 63 bytes"},
    };
    for (size_t i = 0; i < SP_ARRAY_LEN(bad); i++) {
        struct sp_err err;
        char *schema;
        char *table;
        sp_err_clear(&err);
        assert_int_equal(sp_cfg_parse_table(bad[i][0], &schema, &table, &err), SP_EINVAL);
        assert_string_equal(err.msg, bad[i][1]);
        assert_null(schema);
        assert_null(table);
    }
}

static void multiple_errors_reported_together_in_file_order(void **state)
{
    (void)state;
    expect_diag(
        "settings:\n"
        "  memory_limt: 1GiB\n"
        "sources:\n"
        "  orders:\n"
        "    type: postgres\n"
        "    connection: ${NOPE}\n"
        "sinks:\n"
        "  bus: {type: file, path: /tmp/x, fsync: sometimes}\n"
        "streams:\n"
        "  - name: s\n"
        "    source: orders\n"
        "    tables: [t]\n"
        "    sink: bsu\n"
        "stream: []\n",
        "siphon.yaml:2:3: error: settings: unknown option \"memory_limt\"\n"
        "    2 |   memory_limt: 1GiB\n"
        "      |   ^~~~~~~~~~~\n"
        "  hint: did you mean \"memory_limit\"?\n"
        "siphon.yaml:6:17: error: environment variable NOPE is not set\n"
        "    6 |     connection: ${NOPE}\n"
        "      |                 ^~~~~~~\n"
        "  hint: export NOPE before starting siphon, or write $$ for a literal \"$\"\n"
        "siphon.yaml:8:42: error: sink \"bus\" (file): option \"fsync\" must be true or "
        "false, not \"sometimes\"\n"
        "    8 |   bus: {type: file, path: /tmp/x, fsync: sometimes}\n"
        "      |                                          ^~~~~~~~~\n"
        "  hint: write true or false (yes/no and on/off work too)\n"
        "siphon.yaml:13:11: error: stream \"s\": sink \"bsu\" is not defined (defined sinks: "
        "bus)\n"
        "   13 |     sink: bsu\n"
        "      |           ^~~\n"
        "  hint: did you mean \"bus\"?\n"
        "siphon.yaml:14:1: error: unknown top-level key \"stream\"\n"
        "   14 | stream: []\n"
        "      | ^~~~~~\n"
        "  hint: did you mean \"streams\"?\n");
}

static void error_limit(void **state)
{
    (void)state;
    struct sp_buf yaml;
    sp_buf_init(&yaml);
    sp_buf_puts(&yaml, BASE STREAM "settings:\n");
    for (int i = 0; i < 25; i++) {
        sp_buf_printf(&yaml, "  opt%02d: x\n", i);
    }
    struct sp_config *cfg = NULL;
    char *out = NULL;
    struct sp_diag d;
    sp_diag_init(&d);
    assert_int_equal(sp_cfg_load_string("siphon.yaml", yaml.data, yaml.len, NULL, &cfg, &d),
                     SP_EINVAL);
    assert_int_equal(d.nerrors, 25);
    assert_int_equal(d.n, SP_DIAG_MAX);
    assert_int_equal(d.dropped, 5);
    struct sp_buf b;
    sp_buf_init(&b);
    sp_diag_format(&d, &b);
    out = sp_buf_steal(&b);
    assert_non_null(strstr(out, "unknown option \"opt19\""));
    assert_null(strstr(out, "unknown option \"opt20\""));
    const char *note = "siphon.yaml: note: 5 more errors and warnings not shown\n";
    assert_string_equal(out + strlen(out) - strlen(note), note);
    free(out);
    sp_diag_fini(&d);
    sp_buf_fini(&yaml);
}

static void unused_source_and_sink_are_warnings(void **state)
{
    (void)state;
    struct sp_config *cfg = NULL;
    char *out = NULL;
    assert_int_equal(load(BASE "  spare: {type: stdout}\n"
                               "streams:\n"
                               "  - {name: s, source: orders, tables: [t], sink: bus}\n",
                          &cfg, &out),
                     0);
    assert_non_null(cfg);
    assert_string_equal(out, "siphon.yaml:9:3: warning: sink \"dead\" is not used by any stream\n"
                             "    9 |   dead: {type: file, path: /tmp/dead.jsonl}\n"
                             "      |   ^~~~\n"
                             "siphon.yaml:10:3: warning: sink \"spare\" is not used by any stream\n"
                             "   10 |   spare: {type: stdout}\n"
                             "      |   ^~~~~\n");
    sp_cfg_free(cfg);
    free(out);
}

static void long_lines_are_cut_around_the_caret(void **state)
{
    (void)state;
    struct sp_buf yaml;
    sp_buf_init(&yaml);
    sp_buf_puts(&yaml, "sources: {db: {type: postgres, connection: x}}\n"
                       "sinks: {out: {type: stdout}}\n"
                       "streams: [{name: s, source: db, sink: out, tables: [");
    for (int i = 0; i < 40; i++) {
        sp_buf_printf(&yaml, "t%02d, ", i);
    }
    sp_buf_puts(&yaml, "a.b.c]}]\n");
    expect_diag(
        yaml.data,
        "siphon.yaml:3:253: error: stream \"s\": invalid table name \"a.b.c\": more than "
        "two parts (schema.table)\n"
        "    3 | ..., t10, t11, t12, t13, t14, t15, t16, t17, t18, t19, t20, t21, t22, t23, "
        "t24, t25, t26, t27, t28, t29, t30, t31, t32, t33, t34, t35, t36, t37, t38, t39, "
        "a.b.c]}]\n"
        "      |                                                                           "
        "                                                                                 ^"
        "~~~~\n"
        "  hint: write table, schema.table or \"Quoted Schema\".\"Quoted Table\"\n");
    sp_buf_fini(&yaml);
}

static void aliases_are_expanded(void **state)
{
    (void)state;
    struct sp_config *cfg = NULL;
    char *out = NULL;
    assert_int_equal(load(BASE "streams:\n"
                               "  - &stream\n"
                               "    name: one\n"
                               "    source: orders\n"
                               "    tables: &tables [a, b]\n"
                               "    sink: bus\n"
                               "    recovery: {type: dead_letter, sink: dead}\n"
                               "  - name: two\n"
                               "    source: orders\n"
                               "    tables: *tables\n"
                               "    sink: dead\n",
                          &cfg, &out),
                     0);
    assert_string_equal(out, "");
    assert_int_equal(cfg->nstreams, 2);
    assert_int_equal(cfg->streams[1].ntables, 2);
    assert_string_equal(cfg->streams[1].tables[1].table, "b");
    assert_int_equal(cfg->streams[1].tables[1].loc.line, 14); /* where the anchor's text is */
    sp_cfg_free(cfg);
    free(out);
}

#define NO_STREAMS_HINT                                                                   \
    "  hint: add a \"streams:\" list; each stream connects a source to a sink, e.g. \"- " \
    "{name: s, source: SOURCE, tables: [t], sink: SINK}\"\n"

static void no_streams(void **state)
{
    (void)state;
    expect_diag(BASE, "siphon.yaml:1:1: error: no streams are defined\n"
                      "    1 | sources:\n"
                      "      | ^\n" NO_STREAMS_HINT);
    expect_diag(BASE "streams:\n", "siphon.yaml:10:1: error: no streams are defined\n"
                                   "   10 | streams:\n"
                                   "      | ^~~~~~~\n" NO_STREAMS_HINT);
}

/* ---- generated documentation ---- */

static void docs_match_option_tables(void **state)
{
    (void)state;
    struct sp_buf gen;
    struct sp_buf cur;
    sp_buf_init(&gen);
    sp_buf_init(&cur);
    sp_cfg_doc_markdown(&gen);

    const char *update = getenv("SP_UPDATE_DOCS");
    if (update != NULL && strcmp(update, "1") == 0) {
        FILE *f = fopen(DOCS_PATH, "w");
        if (f == NULL) {
            fail_msg("could not write %s: %s", DOCS_PATH, strerror(errno));
        }
        fwrite(gen.data, 1, gen.len, f);
        assert_int_equal(fclose(f), 0);
    }

    FILE *f = fopen(DOCS_PATH, "r");
    if (f != NULL) {
        char chunk[4096];
        size_t got;
        while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
            sp_buf_append(&cur, chunk, got);
        }
        fclose(f);
    }
    if (f == NULL || cur.len != gen.len || memcmp(cur.data, gen.data, gen.len) != 0) {
        fail_msg("docs/config.md is out of date with the option tables; regenerate it with\n"
                 "  SP_UPDATE_DOCS=1 ctest --test-dir build -R unit.test_config\n"
                 "(or run test_config with SP_UPDATE_DOCS=1 from tests/unit) and review the diff");
    }
    sp_buf_fini(&gen);
    sp_buf_fini(&cur);
}

static void docs_describe_every_plugin(void **state)
{
    (void)state;
    struct sp_buf gen;
    sp_buf_init(&gen);
    sp_cfg_doc_markdown(&gen);
    for (size_t i = 0; sp_registry_sources[i] != NULL; i++) {
        char *h = sp_xasprintf("### `%s`\n", sp_registry_sources[i]->type);
        assert_non_null(strstr(gen.data, h));
        free(h);
    }
    for (size_t i = 0; sp_registry_sinks[i] != NULL; i++) {
        char *h = sp_xasprintf("### `%s`\n", sp_registry_sinks[i]->type);
        assert_non_null(strstr(gen.data, h));
        free(h);
    }
    assert_non_null(strstr(gen.data, "| `memory_limit` | size, at least `1MiB` | `16MiB` |"));
    assert_non_null(strstr(gen.data, "| `connection` | string, secret | **required** |"));

    struct sp_buf one;
    sp_buf_init(&one);
    sp_opt_doc_markdown("`thing`", "A test table.", t_opts, &one);
    assert_non_null(strstr(one.data, "### `thing`\n\nA test table.\n\n| option | type | default "
                                     "| description |\n|---|---|---|---|\n"
                                     "| `name` | string | **required** | what to call it |\n"));
    assert_non_null(strstr(one.data, "| `mode` | one of `fast`, `safe`, `paranoid` | `safe` |"));
    assert_non_null(strstr(one.data, "| `count` | integer, `1` to `100` | `10` | how many |"));
    sp_buf_fini(&one);
    sp_buf_fini(&gen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(validator_fills_every_type),
        cmocka_unit_test(validator_applies_defaults),
        cmocka_unit_test(validator_unknown_key_suggests_closest),
        cmocka_unit_test(validator_unknown_key_lists_options_when_nothing_is_close),
        cmocka_unit_test(validator_wrong_type),
        cmocka_unit_test(validator_out_of_range),
        cmocka_unit_test(validator_bad_enum_lists_allowed_values),
        cmocka_unit_test(validator_bad_size_and_duration),
        cmocka_unit_test(validator_missing_required_at_mapping),
        cmocka_unit_test(validator_never_prints_secret_values),
        cmocka_unit_test(validator_not_a_mapping),
        cmocka_unit_test(value_parsers),
        cmocka_unit_test(did_you_mean_by_edit_distance),
        cmocka_unit_test(every_option_table_is_well_formed),
        cmocka_unit_test(substitution_forms),
        cmocka_unit_test(full_example_parses_into_structs),
        cmocka_unit_test(settings_have_defaults),
        cmocka_unit_test(base_is_valid),
        cmocka_unit_test(plugin_unknown_option_did_you_mean),
        cmocka_unit_test(plugin_option_wrong_type_range_enum),
        cmocka_unit_test(unknown_plugin_type),
        cmocka_unit_test(undefined_references),
        cmocka_unit_test(duplicate_key),
        cmocka_unit_test(duplicate_stream_name),
        cmocka_unit_test(stream_checks),
        cmocka_unit_test(missing_env_var),
        cmocka_unit_test(file_substitution_and_dollar_escape),
        cmocka_unit_test(load_from_file_resolves_relative_paths),
        cmocka_unit_test(missing_config_file),
        cmocka_unit_test(yaml_syntax_errors),
        cmocka_unit_test(secrets_are_never_printed),
        cmocka_unit_test(mask_conninfo),
        cmocka_unit_test(table_names),
        cmocka_unit_test(multiple_errors_reported_together_in_file_order),
        cmocka_unit_test(error_limit),
        cmocka_unit_test(unused_source_and_sink_are_warnings),
        cmocka_unit_test(long_lines_are_cut_around_the_caret),
        cmocka_unit_test(aliases_are_expanded),
        cmocka_unit_test(no_streams),
        cmocka_unit_test(docs_match_option_tables),
        cmocka_unit_test(docs_describe_every_plugin),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
