// SPDX-License-Identifier: Apache-2.0
/*
 * PostgreSQL text -> JSON conversion and the type cache (source/pg/types.c).
 * Inputs are what PostgreSQL 15 prints with the session settings types.h
 * lists; expected outputs follow DESIGN.md's "Event format json" table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "source/pg/types.h"

/* ---- helpers ---- */

static const struct sp_type *bt(uint32_t oid)
{
    const struct sp_type *t = sp_type_builtin(oid);
    assert_non_null(t);
    return t;
}

static void check_t(const struct sp_type *t, const char *in, const char *want)
{
    struct sp_buf out;
    struct sp_err err;
    sp_buf_init(&out);
    sp_err_clear(&err);
    int rc = sp_pgtext_to_json(t, in, strlen(in), &out, &err);
    if (rc != 0) {
        print_error("type %s, input \"%s\": %s\n", t ? t->name : "NULL", in, err.msg);
    } else if (strcmp(out.data, want) != 0) {
        print_error("type %s, input \"%s\"\n", t ? t->name : "NULL", in);
    }
    assert_int_equal(rc, 0);
    assert_string_equal(out.data, want);
    sp_buf_fini(&out);
}

static void check(uint32_t oid, const char *in, const char *want)
{
    check_t(bt(oid), in, want);
}

/* Conversion fails with SP_EINVAL, the message contains msg, and out is left as it was. */
static void check_bad_t(const struct sp_type *t, const char *in, const char *msg)
{
    struct sp_buf out;
    struct sp_err err;
    sp_buf_init(&out);
    sp_err_clear(&err);
    sp_buf_puts(&out, "[1,");
    int rc = sp_pgtext_to_json(t, in, strlen(in), &out, &err);
    if (rc != SP_EINVAL) {
        print_error("type %s, input \"%s\" was accepted as %s\n", t->name, in, out.data);
    }
    assert_int_equal(rc, SP_EINVAL);
    assert_string_equal(out.data, "[1,");
    assert_int_equal(out.len, 3);
    if (strstr(err.msg, msg) == NULL) {
        print_error("message \"%s\" lacks \"%s\"\n", err.msg, msg);
    }
    assert_non_null(strstr(err.msg, msg));
    sp_buf_fini(&out);

    /* the same into a buffer that has never been written to */
    rc = sp_pgtext_to_json(t, in, strlen(in), &out, &err);
    assert_int_equal(rc, SP_EINVAL);
    assert_int_equal(out.len, 0);
    sp_buf_fini(&out);
}

static void check_bad(uint32_t oid, const char *in)
{
    check_bad_t(bt(oid), in, bt(oid)->name);
}

/* ---- scalars ---- */

static void integers_are_numbers(void **state)
{
    (void)state;
    check(21, "-32768", "-32768");
    check(21, "0", "0");
    check(23, "42", "42");
    check(23, "-2147483648", "-2147483648");
    check(20, "9223372036854775807", "9223372036854775807");
    check(20, "-9223372036854775808", "-9223372036854775808");
    check(26, "4294967295", "4294967295");
}

static void malformed_integers_are_rejected(void **state)
{
    (void)state;
    check_bad(23, "");
    check_bad(23, "abc");
    check_bad(23, "1.5");
    check_bad(23, "01");
    check_bad(23, "-");
    check_bad(23, " 1");
    check_bad(23, "1 ");
    check_bad(20, "1e5");
    check_bad(21, "+1");
    check_bad_t(bt(23), "12x", "invalid input syntax for type int4: \"12x\"");
}

static void floats_are_numbers_with_special_values_as_strings(void **state)
{
    (void)state;
    check(701, "1.1", "1.1");
    check(701, "1e+100", "1e+100");
    check(701, "1.5e-07", "1.5e-07");
    check(701, "-0", "-0");
    check(701, "1e-320", "1e-320");
    check(701, "-1.7976931348623157e+308", "-1.7976931348623157e+308");
    check(700, "0.1", "0.1");
    check(701, "NaN", "\"NaN\"");
    check(701, "Infinity", "\"Infinity\"");
    check(701, "-Infinity", "\"-Infinity\"");
    check(700, "NaN", "\"NaN\"");
    check(700, "Infinity", "\"Infinity\"");
    check(700, "-Infinity", "\"-Infinity\"");
}

static void malformed_floats_are_rejected(void **state)
{
    (void)state;
    check_bad(701, "nan");
    check_bad(701, "inf");
    check_bad(701, "1e");
    check_bad(701, ".5");
    check_bad(701, "5.");
    check_bad(701, "1,5");
    check_bad(700, "");
    check_bad(700, "+Infinity");
}

static void numerics_are_strings_with_exact_digits(void **state)
{
    (void)state;
    check(1700, "19.90", "\"19.90\"");
    check(1700, "0", "\"0\"");
    check(1700, "0.0", "\"0.0\"");
    check(1700, "-0.00100", "\"-0.00100\"");
    check(1700, "0.00000000000000000001", "\"0.00000000000000000001\"");
    check(1700, "123456789012345678901234567890.000000001",
          "\"123456789012345678901234567890.000000001\"");
    check(1700, "-99999999999999999999999999999999999999999999999999",
          "\"-99999999999999999999999999999999999999999999999999\"");
    check(1700, "NaN", "\"NaN\"");
    check(1700, "Infinity", "\"Infinity\"");
    check(1700, "-Infinity", "\"-Infinity\"");
}

static void malformed_numerics_are_rejected(void **state)
{
    (void)state;
    check_bad(1700, "");
    check_bad(1700, "1e5");
    check_bad(1700, "1.");
    check_bad(1700, ".1");
    check_bad(1700, "--1");
    check_bad(1700, "nan");
    check_bad(1700, "1,000");
    check_bad(1700, "12 ");
}

static void booleans(void **state)
{
    (void)state;
    check(16, "t", "true");
    check(16, "f", "false");
    check_bad(16, "x");
    check_bad(16, "");
    check_bad(16, "T");
}

static void text_types_are_strings(void **state)
{
    (void)state;
    check(25, "paid", "\"paid\"");
    check(25, "", "\"\"");
    check(25, "say \"hi\"", "\"say \\\"hi\\\"\"");
    check(25, "back\\slash", "\"back\\\\slash\"");
    check(25, "line\nnext\ttab\r\x01\x1f", "\"line\\nnext\\ttab\\r\\u0001\\u001f\"");
    check(25, "caf\xc3\xa9 \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
    check(25, "bad\xff\xfe utf8 \xc3", "\"bad\xef\xbf\xbd\xef\xbf\xbd utf8 \xef\xbf\xbd\"");
    check(25, "{\"not\": \"json\"}", "\"{\\\"not\\\": \\\"json\\\"}\"");
    check(1043, "varchar", "\"varchar\"");
    check(1042, "pad  ", "\"pad  \"");
    check(18, "c", "\"c\"");
    check(19, "pg_catalog", "\"pg_catalog\"");
    check(2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"");
    check(869, "192.168.0.1/24", "\"192.168.0.1/24\"");
    check(650, "10.0.0.0/8", "\"10.0.0.0/8\"");
    check(829, "08:00:2b:01:02:03", "\"08:00:2b:01:02:03\"");
    check(774, "08:00:2b:01:02:03:04:05", "\"08:00:2b:01:02:03:04:05\"");
    check(142, "<a href=\"x\">t</a>", "\"<a href=\\\"x\\\">t</a>\"");
    check(790, "$12.50", "\"$12.50\"");
    check(790, "-$1,000.00", "\"-$1,000.00\"");
}

static void other_types_are_their_text_as_string(void **state)
{
    (void)state;
    check_t(NULL, "(1,2)", "\"(1,2)\"");
    check(603, "(1,1),(0,0)", "\"(1,1),(0,0)\"");
    check(22, "1 2 3", "\"1 2 3\"");
    check(30, "1 2", "\"1 2\"");
    const struct sp_type point = {600, SP_TYPE_OTHER, ',', NULL, "point"};
    check_t(&point, "(1.5,2)", "\"(1.5,2)\"");
    check_t(&point, "bad\xff", "\"bad\xef\xbf\xbd\"");
}

static void bytea_is_base64(void **state)
{
    (void)state;
    check(17, "\\x", "\"\"");
    check(17, "\\x0a0b", "\"Cgs=\"");
    check(17, "\\x00ff10", "\"AP8Q\"");
    check(17, "\\xdeadbeef", "\"3q2+7w==\"");
    check(17, "\\xDEADBEEF", "\"3q2+7w==\"");
    check(17, "\\x00", "\"AA==\"");
    check(17, "\\x000000", "\"AAAA\"");
    check(17, "\\xfbff", "\"+/8=\"");
    /* bytea_output = escape */
    check(17, "a\\\\b\\001", "\"YVxiAQ==\"");
    check(17, "\\000\\377", "\"AP8=\"");
    check(17, "", "\"\"");
}

static void malformed_bytea_is_rejected(void **state)
{
    (void)state;
    check_bad(17, "\\x0");
    check_bad(17, "\\xzz");
    check_bad(17, "\\x0g");
    check_bad(17, "\\q");
    check_bad(17, "a\\");
    check_bad(17, "\\400");
}

/* ---- json ---- */

static void jsonb_is_embedded_compactly(void **state)
{
    (void)state;
    check(3802, "{\"a\": [1, 2.50, {\"b\": null}], \"c\": \"x\\\"y\\\\u0041\\n\"}",
          "{\"a\":[1,2.50,{\"b\":null}],\"c\":\"x\\\"y\\\\u0041\\n\"}");
    check(3802, "{\"gift\": true}", "{\"gift\":true}");
    check(3802,
          "{\"big\": 123456789012345678901234567890.123456789012345678901234567890, "
          "\"neg\": -0.000000000000000000001, \"exp\": 1E+400}",
          "{\"big\":123456789012345678901234567890.123456789012345678901234567890,"
          "\"neg\":-0.000000000000000000001,\"exp\":1E+400}");
    check(3802, "{\"a\": {\"b\": {\"c\": [[], {}, [[1]]]}}, \"k y\": \"v, :{}[]\"}",
          "{\"a\":{\"b\":{\"c\":[[],{},[[1]]]}},\"k y\":\"v, :{}[]\"}");
    check(3802, "{\"u\": \"\\u00e9\\ud83d\\ude00 \xc3\xa9\", \"s\": \"\\/\\b\\f\\r\\t\"}",
          "{\"u\":\"\\u00e9\\ud83d\\ude00 \xc3\xa9\",\"s\":\"\\/\\b\\f\\r\\t\"}");
    check(3802, "[1, \"x\"]", "[1,\"x\"]");
    check(3802, "\"just a string\"", "\"just a string\"");
    check(3802, "42", "42");
    check(3802, "-1.5e-3", "-1.5e-3");
    check(3802, "null", "null");
    check(3802, "true", "true");
    check(3802, "false", "false");
    check(3802, "{}", "{}");
    check(3802, "[]", "[]");
}

static void json_whitespace_outside_strings_is_dropped(void **state)
{
    (void)state;
    check(114, "{\"a\" :\n 1,  \"b\":[ 1 , 2 ] }", "{\"a\":1,\"b\":[1,2]}");
    check(114, "\r\n\t [ { } , [ ] , \"a  b\" ]\n", "[{},[],\"a  b\"]");
    check(114, "{ \"k\" : \"line1\\nline2\" , \"n\" : 1.000 }",
          "{\"k\":\"line1\\nline2\",\"n\":1.000}");
    /* json keeps duplicate keys and \u0000 as written */
    check(114, "{\"a\":1,\"a\":2,\"z\":\"\\u0000\"}", "{\"a\":1,\"a\":2,\"z\":\"\\u0000\"}");
    /* raw control characters and invalid UTF-8 inside strings still give valid JSON */
    check(114, "[\"a\tb\", \"\xff\"]", "[\"a\\u0009b\",\"\xef\xbf\xbd\"]");
}

static void malformed_json_is_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",         " ",           "{",         "}",
        "[1,]",     "[,1]",        "{\"a\" 1}", "{1:2}",
        "{\"a\":}", "{\"a\":1,}",  "01",        "1.",
        ".5",       "-",           "1e",        "tru",
        "nul",      "True",        "[1 2]",     "\"abc",
        "\"\\x\"",  "\"\\u12g4\"", "{}}",       "[]]",
        "{]",       "[}",          "1 2",       "NaN",
        "'a'",      "[1]x",        "\"\\u12\"", "{\"a\":1 \"b\":2}",
    };
    for (size_t i = 0; i < SP_ARRAY_LEN(bad); i++) {
        check_bad(3802, bad[i]);
        check_bad(114, bad[i]);
    }
}

/* ---- dates and times ---- */

static void dates(void **state)
{
    (void)state;
    check(1082, "2026-11-21", "\"2026-11-21\"");
    check(1082, "2024-02-29", "\"2024-02-29\"");
    check(1082, "infinity", "\"infinity\"");
    check(1082, "-infinity", "\"-infinity\"");
    check(1082, "0001-01-01", "\"0001-01-01\"");
    check(1082, "0001-01-01 BC", "\"0000-01-01\"");
    check(1082, "0002-01-01 BC", "\"-0001-01-01\"");
    check(1082, "0044-03-15 BC", "\"-0043-03-15\"");
    check(1082, "4713-01-01 BC", "\"-4712-01-01\"");
    check(1082, "0001-02-29 BC", "\"0000-02-29\""); /* 1 BC is a leap year */
    check(1082, "5874897-12-31", "\"5874897-12-31\"");
}

static void malformed_dates_are_rejected(void **state)
{
    (void)state;
    check_bad(1082, "");
    check_bad(1082, "2023-02-29");
    check_bad(1082, "2026-13-01");
    check_bad(1082, "2026-00-01");
    check_bad(1082, "2026-11-00");
    check_bad(1082, "2026-11-31");
    check_bad(1082, "2026-11-21x");
    check_bad(1082, "26-11-21");
    check_bad(1082, "0000-01-01 BC");
    check_bad(1082, "2026-11-21 AD");
    check_bad(1082, "11/21/2026");
    check_bad(1082, "Infinity");
}

static void timestamps(void **state)
{
    (void)state;
    check(1114, "2026-11-21 10:00:00.5", "\"2026-11-21T10:00:00.5\"");
    check(1114, "2026-11-21 10:00:00", "\"2026-11-21T10:00:00\"");
    check(1114, "2026-11-21 23:59:59.999999", "\"2026-11-21T23:59:59.999999\"");
    check(1114, "infinity", "\"infinity\"");
    check(1114, "-infinity", "\"-infinity\"");
    check(1114, "0001-01-01 10:00:00.5 BC", "\"0000-01-01T10:00:00.5\"");
    check(1114, "0002-06-30 00:00:00 BC", "\"-0001-06-30T00:00:00\"");
    check(1114, "294276-12-31 23:59:59.999999", "\"294276-12-31T23:59:59.999999\"");
    check_bad(1114, "2026-11-21T10:00:00");
    check_bad(1114, "2026-11-21 10:00:00+00");
    check_bad(1114, "2026-11-21 24:00:00");
    check_bad(1114, "2026-11-21 10:60:00");
    check_bad(1114, "2026-11-21 10:00");
    check_bad(1114, "2026-11-21 10:00:00.");
    check_bad(1114, "2026-11-21");
}

static void timestamptz_is_utc_with_z(void **state)
{
    (void)state;
    check(1184, "2026-11-21 10:00:00.5+00", "\"2026-11-21T10:00:00.5Z\"");
    check(1184, "2026-11-21 10:00:00+00", "\"2026-11-21T10:00:00Z\"");
    check(1184, "infinity", "\"infinity\"");
    check(1184, "-infinity", "\"-infinity\"");
    check(1184, "0001-01-01 10:00:00.5+00 BC", "\"0000-01-01T10:00:00.5Z\"");
    check(1184, "0002-12-31 23:30:00+00 BC", "\"-0001-12-31T23:30:00Z\"");
    /* Offsets other than +00 (a session not pinned to UTC) are converted. */
    check(1184, "2026-06-01 00:00:00.25+02", "\"2026-05-31T22:00:00.25Z\"");
    check(1184, "2026-06-01 00:00:00.25+05:30", "\"2026-05-31T18:30:00.25Z\"");
    check(1184, "2026-12-31 23:00:00-01", "\"2027-01-01T00:00:00Z\"");
    check(1184, "1800-01-01 00:00:00+00:19:32", "\"1799-12-31T23:40:28Z\"");
    check(1184, "2024-03-01 00:30:00+01", "\"2024-02-29T23:30:00Z\"");
    check(1184, "0001-01-01 00:30:00+01 BC", "\"-0001-12-31T23:30:00Z\"");
    check_bad(1184, "2026-11-21 10:00:00");
    check_bad(1184, "2026-11-21 10:00:00+16");
    check_bad(1184, "2026-11-21 10:00:00+0");
    check_bad(1184, "2026-11-21 10:00:00Z");
    check_bad(1184, "2026-11-21 10:00:00+00 BC x");
}

static void times(void **state)
{
    (void)state;
    check(1083, "10:00:00.5", "\"10:00:00.5\"");
    check(1083, "00:00:00", "\"00:00:00\"");
    check(1083, "23:59:59.999999", "\"23:59:59.999999\"");
    check(1083, "24:00:00", "\"24:00:00\"");
    check_bad(1083, "10:00");
    check_bad(1083, "25:00:00");
    check_bad(1083, "24:00:01");
    check_bad(1083, "10:00:00+02");
    check_bad(1083, "1:00:00");
}

static void timetz_offsets_are_normalized(void **state)
{
    (void)state;
    check(1266, "10:00:00.5+02", "\"10:00:00.5+02:00\"");
    check(1266, "10:00:00+00", "\"10:00:00+00:00\"");
    check(1266, "10:00:00+05:30", "\"10:00:00+05:30\"");
    check(1266, "10:00:00-03:00:15", "\"10:00:00-03:00:15\"");
    check(1266, "23:59:59.999999-15:59", "\"23:59:59.999999-15:59\"");
    check(1266, "24:00:00-12", "\"24:00:00-12:00\"");
    check_bad(1266, "10:00:00");
    check_bad(1266, "10:00:00+2");
    check_bad(1266, "10:00:00+02:");
    check_bad(1266, "10:00:00+02:60");
}

/* ---- intervals ---- */

static void intervals_in_iso_8601_style_pass_through(void **state)
{
    (void)state;
    static const char *const same[] = {
        "P1Y2M3DT4H5M6.5S",
        "P-1Y-2M3DT-4H-5M-6.5S",
        "PT0S",
        "PT-0.5S",
        "PT100H",
        "P1M",
        "P-1D",
        "P1DT-1S",
        "PT-1S",
        "PT5M",
        "PT-4M-57S",
        "P178000000Y",
        "P-178000000Y",
        "PT2562047788H",
        "PT-5M-3.000001S",
        "P-1DT2H",
        "P11M",
        "P1Y",
        "PT0.000001S",
    };
    for (size_t i = 0; i < SP_ARRAY_LEN(same); i++) {
        char want[64];
        snprintf(want, sizeof(want), "\"%s\"", same[i]);
        check(1186, same[i], want);
    }
}

static void intervals_in_postgres_style_become_iso_8601(void **state)
{
    (void)state;
    /* Pairs printed by PostgreSQL 15 for the same value in both styles. */
    static const char *const pairs[][2] = {
        {"1 year 2 mons 3 days 04:05:06.5", "P1Y2M3DT4H5M6.5S"},
        {"-1 years -2 mons +3 days -04:05:06.5", "P-1Y-2M3DT-4H-5M-6.5S"},
        {"00:00:00", "PT0S"},
        {"-00:00:00.5", "PT-0.5S"},
        {"100:00:00", "PT100H"},
        {"1 mon", "P1M"},
        {"11 mons", "P11M"},
        {"-1 days", "P-1D"},
        {"-1 years", "P-1Y"},
        {"1 day -00:00:01", "P1DT-1S"},
        {"-00:00:01", "PT-1S"},
        {"-00:04:57", "PT-4M-57S"},
        {"00:05:00", "PT5M"},
        {"-00:05:03.000001", "PT-5M-3.000001S"},
        {"-1 days +02:00:00", "P-1DT2H"},
        {"1 mon 00:00:00.000001", "P1MT0.000001S"},
        {"178000000 years", "P178000000Y"},
        {"-178000000 years", "P-178000000Y"},
        {"2562047788:00:00", "PT2562047788H"},
    };
    for (size_t i = 0; i < SP_ARRAY_LEN(pairs); i++) {
        char want[64];
        snprintf(want, sizeof(want), "\"%s\"", pairs[i][1]);
        check(1186, pairs[i][0], want);
    }
}

static void malformed_intervals_are_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "P",
        "PT",
        "P1H",
        "PT1D",
        "P1.5Y",
        "P1Y1Y",
        "PT1S1M",
        "P1M1Y",
        "PT+1S",
        "P1YT",
        "PTT1S",
        "P1",
        "1 fortnight",
        "1 year 2",
        "1 year  2 mons",
        "@ 1 year",
        "1-2",
        "1 day 1 year",
        "1:2:3",
        "00:00:60",
        "00:60:00",
        "1 year ",
        " 1 year",
        "00:00:00 ",
        "1 days 00:00:00 x",
    };
    for (size_t i = 0; i < SP_ARRAY_LEN(bad); i++) {
        check_bad(1186, bad[i]);
    }
}

/* ---- arrays ---- */

static void arrays_of_numbers(void **state)
{
    (void)state;
    check(1007, "{1,NULL,3}", "[1,null,3]");
    check(1007, "{{1,2},{3,4}}", "[[1,2],[3,4]]");
    check(1007, "{{NULL}}", "[[null]]");
    check(1007, "{{{1,NULL},{NULL,4}},{{5,6},{7,8}}}", "[[[1,null],[null,4]],[[5,6],[7,8]]]");
    check(1007, "{}", "[]");
    check(1007, "[0:1]={1,2}", "[1,2]");
    check(1007, "[1:2][3:4]={{1,2},{3,4}}", "[[1,2],[3,4]]");
    check(1007, "[-2:-1]={7,8}", "[7,8]");
    check(1007, " { 1 , 2 } ", "[1,2]");
    check(1016, "{9223372036854775807,-9223372036854775808}",
          "[9223372036854775807,-9223372036854775808]");
    check(1022, "{1.5,NaN,Infinity,-Infinity,1e+100}",
          "[1.5,\"NaN\",\"Infinity\",\"-Infinity\",1e+100]");
    check(1231, "{1.50,NaN,-Infinity,123456789012345678901234567890.000000001}",
          "[\"1.50\",\"NaN\",\"-Infinity\",\"123456789012345678901234567890.000000001\"]");
    check(1000, "{t,f,NULL}", "[true,false,null]");
}

static void arrays_of_text(void **state)
{
    (void)state;
    check(1009, "{\"a b\",\"c\\\"d\",\"e\\\\f\",\"\",\"NULL\",\"null\",\"{x}\",\"a,b\",\" \"}",
          "[\"a b\",\"c\\\"d\",\"e\\\\f\",\"\",\"NULL\",\"null\",\"{x}\",\"a,b\",\" \"]");
    check(1009, "{abc,def}", "[\"abc\",\"def\"]");
    check(1009, "{NULL,null,Null}", "[null,null,null]");
    check(1009, "{ a , b }", "[\"a\",\"b\"]");
    check(1009, "{a\\,b,c\\ }", "[\"a,b\",\"c \"]");
    check(1009, "{\"\xf0\x9f\x98\x80\",\"\\\\u0041\",\"tab\there\"}",
          "[\"\xf0\x9f\x98\x80\",\"\\\\u0041\",\"tab\\there\"]");
    check(1009, "{{a,\"}\"},{\"{\",NULL}}", "[[\"a\",\"}\"],[\"{\",null]]");
    check(1015, "{\"x,y\"}", "[\"x,y\"]");
    check(1182, "{2026-11-21,\"0001-01-01 BC\",infinity}",
          "[\"2026-11-21\",\"0000-01-01\",\"infinity\"]");
    check(1185, "{\"2026-01-01 10:00:00.5+00\",infinity}",
          "[\"2026-01-01T10:00:00.5Z\",\"infinity\"]");
    check(1187, "{P1D,PT0S}", "[\"P1D\",\"PT0S\"]");
    check(1187, "{\"1 day\",\"-00:00:01\"}", "[\"P1D\",\"PT-1S\"]");
    check(1270, "{10:00:00+02}", "[\"10:00:00+02:00\"]");
    check(1001, "{\"\\\\x00ff\",\"\\\\x\"}", "[\"AP8=\",\"\"]");
    check(2951, "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
          "[\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"]");
}

static void arrays_of_json(void **state)
{
    (void)state;
    check(3807, "{\"{\\\"a\\\": 1}\",\"[1, \\\"x\\\"]\",NULL}", "[{\"a\":1},[1,\"x\"],null]");
    check(3807, "{\"{\\\"s\\\": \\\"q\\\\\\\"uote\\\"}\",\"12345678901234567890.5\"}",
          "[{\"s\":\"q\\\"uote\"},12345678901234567890.5]");
    check(199, "{\"{ \\\"a\\\" :\n 1 }\"}", "[{\"a\":1}]");
}

static void arrays_of_box_use_semicolons(void **state)
{
    (void)state;
    check(1020, "{(1,1),(0,0);(2,2),(1,1)}", "[\"(1,1),(0,0)\",\"(2,2),(1,1)\"]");
    assert_int_equal(bt(1020)->delim, ';');
    assert_ptr_equal(bt(1020)->elem, bt(603));
}

static void malformed_arrays_are_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",         "{1,2",       "{1,,2}",   "1,2",
        "{1}x",     "{{1},2}",    "{1,{2}}",  "{\"a}",
        "{\"a\"b}", "[0:1]{1,2}", "[0:1={1}", "[a:1]={1}",
        "{,}",      "{1,}",       "{{1}{2}}", "{{{{{{{1}}}}}}}",
        "{a\\}",    "}",          "{1\"2\"}",
    };
    for (size_t i = 0; i < SP_ARRAY_LEN(bad); i++) {
        check_bad(1009, bad[i]);
    }
    check(1009, "{{{{{{1}}}}}}", "[[[[[[\"1\"]]]]]]");
    check_bad_t(bt(1007), "{1,x,3}", "element of _int4: invalid input syntax for type int4: \"x\"");
    check_bad_t(bt(3807), "{\"{bad\"}", "element of _jsonb: invalid input syntax for type jsonb");
    check_bad(1007, "{1,2");
    check_bad(1007, "{1;2}");
}

static void long_bad_values_are_cut_in_messages(void **state)
{
    (void)state;
    char in[200];
    memset(in, 'x', sizeof(in) - 1);
    in[sizeof(in) - 1] = '\0';
    char want[120];
    snprintf(want, sizeof(want), "invalid input syntax for type int4: \"%.64s...\"", in);
    struct sp_buf out;
    struct sp_err err;
    sp_buf_init(&out);
    assert_int_equal(sp_pgtext_to_json(bt(23), in, strlen(in), &out, &err), SP_EINVAL);
    assert_string_equal(err.msg, want);
    sp_buf_fini(&out);
}

static void text_need_not_be_nul_terminated(void **state)
{
    (void)state;
    struct sp_buf out;
    struct sp_err err;
    sp_buf_init(&out);
    assert_int_equal(sp_pgtext_to_json(bt(23), "12345", 3, &out, &err), 0);
    assert_string_equal(out.data, "123");
    sp_buf_reset(&out);
    assert_int_equal(sp_pgtext_to_json(bt(1007), "{1,2}xyz", 5, &out, &err), 0);
    assert_string_equal(out.data, "[1,2]");
    sp_buf_reset(&out);
    assert_int_equal(sp_pgtext_to_json(bt(3802), "[1, 2]]", 6, &out, &err), 0);
    assert_string_equal(out.data, "[1,2]");
    sp_buf_fini(&out);
}

/* ---- type cache ---- */

struct fake_type {
    uint32_t oid;
    char typtype;
    char typcategory;
    uint32_t typelem;
    uint32_t typbasetype;
    char typdelim;
    const char *typname;
};

static const struct fake_type fake_types[] = {
    {16384, 'e', 'E', 0, 0, ',', "mood"},
    {16385, 'b', 'A', 16384, 0, ',', "_mood"},
    {16390, 'd', 'N', 0, 1700, ',', "amount"},
    {16391, 'b', 'A', 16390, 0, ',', "_amount"},
    {16392, 'd', 'N', 0, 16390, ',', "positive_amount"},
    {16393, 'd', 'A', 0, 1007, ',', "int_list"},
    {16394, 'b', 'G', 0, 0, ';', "mybox"},
    {16395, 'b', 'A', 16394, 0, ',', "_mybox"},
    {16396, 'c', 'C', 0, 0, ',', "address"},
    {16397, 'd', 'S', 0, 16397, ',', "loop"},
    {16398, 'd', 'D', 0, 1184, ',', "stamp"},
    {16399, 'b', 'A', 16393, 0, ',', "_int_list"},
};

struct fake_ctx {
    int calls;
};

static int fake_lookup(void *ctx, uint32_t oid, struct sp_typinfo *out, struct sp_err *err)
{
    struct fake_ctx *fc = ctx;
    fc->calls++;
    for (size_t i = 0; i < SP_ARRAY_LEN(fake_types); i++) {
        const struct fake_type *ft = &fake_types[i];
        if (ft->oid == oid) {
            out->oid = oid;
            out->typtype = ft->typtype;
            out->typcategory = ft->typcategory;
            out->typelem = ft->typelem;
            out->typbasetype = ft->typbasetype;
            out->typdelim = ft->typdelim;
            out->nspname = sp_xstrdup("public");
            out->typname = sp_xstrdup(ft->typname);
            return 0;
        }
    }
    /* Strings left behind on failure are the cache's to free. */
    out->typname = sp_xstrdup("half-filled");
    return sp_err_set(err, SP_EINVAL, "type %u does not exist", oid);
}

static int cache_setup(void **state)
{
    struct fake_ctx *fc = calloc(1, sizeof(*fc));
    *state = fc;
    return fc == NULL ? -1 : 0;
}

static int cache_teardown(void **state)
{
    free(*state);
    return 0;
}

static void builtins_are_known_without_lookup(void **state)
{
    struct fake_ctx *fc = *state;
    static const uint32_t pairs[][2] = {
        {16, 1000},   {17, 1001},   {18, 1002},   {19, 1003},   {20, 1016},   {21, 1005},
        {23, 1007},   {25, 1009},   {26, 1028},   {114, 199},   {142, 143},   {650, 651},
        {700, 1021},  {701, 1022},  {774, 775},   {790, 791},   {829, 1040},  {869, 1041},
        {1042, 1014}, {1043, 1015}, {1082, 1182}, {1083, 1183}, {1114, 1115}, {1184, 1185},
        {1186, 1187}, {1266, 1270}, {1700, 1231}, {2950, 2951}, {3802, 3807}, {22, 1006},
        {30, 1013},
    };
    struct sp_typcache *tc = sp_typcache_new(fake_lookup, fc);
    struct sp_err err;
    for (size_t i = 0; i < SP_ARRAY_LEN(pairs); i++) {
        const struct sp_type *t = sp_typcache_get(tc, pairs[i][0], &err);
        const struct sp_type *a = sp_typcache_get(tc, pairs[i][1], &err);
        assert_non_null(t);
        assert_non_null(a);
        assert_int_equal(t->oid, pairs[i][0]);
        assert_int_equal(a->oid, pairs[i][1]);
        assert_int_equal(a->kind, SP_TYPE_ARRAY);
        assert_ptr_equal(a->elem, t);
        assert_int_equal(a->delim, ',');
        assert_int_not_equal(t->kind, SP_TYPE_ARRAY);
        assert_int_equal(a->name[0], '_');
        assert_string_equal(a->name + 1, t->name);
    }
    assert_int_equal(fc->calls, 0);
    assert_int_equal(sp_typcache_count(tc), 0);
    assert_int_equal(sp_typcache_get(tc, 23, &err)->kind, SP_TYPE_INT);
    assert_int_equal(sp_typcache_get(tc, 26, &err)->kind, SP_TYPE_INT);
    assert_int_equal(sp_typcache_get(tc, 700, &err)->kind, SP_TYPE_FLOAT);
    assert_int_equal(sp_typcache_get(tc, 1700, &err)->kind, SP_TYPE_NUMERIC);
    assert_int_equal(sp_typcache_get(tc, 16, &err)->kind, SP_TYPE_BOOL);
    assert_int_equal(sp_typcache_get(tc, 2950, &err)->kind, SP_TYPE_STRING);
    assert_int_equal(sp_typcache_get(tc, 790, &err)->kind, SP_TYPE_STRING);
    assert_int_equal(sp_typcache_get(tc, 17, &err)->kind, SP_TYPE_BYTEA);
    assert_int_equal(sp_typcache_get(tc, 114, &err)->kind, SP_TYPE_JSON);
    assert_int_equal(sp_typcache_get(tc, 3802, &err)->kind, SP_TYPE_JSON);
    assert_int_equal(sp_typcache_get(tc, 1082, &err)->kind, SP_TYPE_DATE);
    assert_int_equal(sp_typcache_get(tc, 1114, &err)->kind, SP_TYPE_TIMESTAMP);
    assert_int_equal(sp_typcache_get(tc, 1184, &err)->kind, SP_TYPE_TIMESTAMPTZ);
    assert_int_equal(sp_typcache_get(tc, 1083, &err)->kind, SP_TYPE_TIME);
    assert_int_equal(sp_typcache_get(tc, 1266, &err)->kind, SP_TYPE_TIMETZ);
    assert_int_equal(sp_typcache_get(tc, 1186, &err)->kind, SP_TYPE_INTERVAL);
    assert_string_equal(sp_typcache_get(tc, 3807, &err)->name, "_jsonb");
    assert_int_equal(fc->calls, 0);
    sp_typcache_free(tc);
}

static void enum_converts_as_string(void **state)
{
    struct fake_ctx *fc = *state;
    struct sp_typcache *tc = sp_typcache_new(fake_lookup, fc);
    struct sp_err err;
    const struct sp_type *t = sp_typcache_get(tc, 16384, &err);
    assert_non_null(t);
    assert_int_equal(t->kind, SP_TYPE_STRING);
    assert_string_equal(t->name, "public.mood");
    check_t(t, "happy", "\"happy\"");
    const struct sp_type *a = sp_typcache_get(tc, 16385, &err);
    assert_non_null(a);
    assert_int_equal(a->kind, SP_TYPE_ARRAY);
    assert_ptr_equal(a->elem, t);
    check_t(a, "{happy,NULL,\"so so\"}", "[\"happy\",null,\"so so\"]");
    /* cached: asking again does not call the lookup */
    assert_int_equal(fc->calls, 2);
    assert_ptr_equal(sp_typcache_get(tc, 16384, &err), t);
    assert_ptr_equal(sp_typcache_get(tc, 16385, &err), a);
    assert_int_equal(fc->calls, 2);
    assert_int_equal(sp_typcache_count(tc), 2);
    sp_typcache_free(tc);
}

static void domain_over_numeric_converts_as_numeric(void **state)
{
    struct fake_ctx *fc = *state;
    struct sp_typcache *tc = sp_typcache_new(fake_lookup, fc);
    struct sp_err err;
    const struct sp_type *t = sp_typcache_get(tc, 16390, &err);
    assert_non_null(t);
    assert_int_equal(t->kind, SP_TYPE_NUMERIC);
    assert_int_equal(t->oid, 16390);
    assert_string_equal(t->name, "public.amount");
    check_t(t, "19.90", "\"19.90\"");
    check_t(t, "NaN", "\"NaN\"");
    check_bad_t(t, "abc", "invalid input syntax for type public.amount: \"abc\"");

    /* a domain over a domain, resolved recursively */
    const struct sp_type *t2 = sp_typcache_get(tc, 16392, &err);
    assert_non_null(t2);
    assert_int_equal(t2->kind, SP_TYPE_NUMERIC);
    check_t(t2, "0.001", "\"0.001\"");

    /* an array of the domain */
    const struct sp_type *a = sp_typcache_get(tc, 16391, &err);
    assert_non_null(a);
    assert_int_equal(a->kind, SP_TYPE_ARRAY);
    assert_ptr_equal(a->elem, t);
    check_t(a, "{1.50,NULL,Infinity}", "[\"1.50\",null,\"Infinity\"]");

    /* domain over timestamptz */
    const struct sp_type *ts = sp_typcache_get(tc, 16398, &err);
    assert_non_null(ts);
    assert_int_equal(ts->kind, SP_TYPE_TIMESTAMPTZ);
    check_t(ts, "2026-11-21 10:00:00.5+00", "\"2026-11-21T10:00:00.5Z\"");
    assert_int_equal(fc->calls, 4);
    sp_typcache_free(tc);
}

static void domain_over_array_and_array_of_it(void **state)
{
    struct fake_ctx *fc = *state;
    struct sp_typcache *tc = sp_typcache_new(fake_lookup, fc);
    struct sp_err err;
    const struct sp_type *d = sp_typcache_get(tc, 16393, &err);
    assert_non_null(d);
    assert_int_equal(d->kind, SP_TYPE_ARRAY);
    assert_ptr_equal(d->elem, sp_type_builtin(23));
    check_t(d, "{1,2,NULL}", "[1,2,null]");
    /* An array of a domain over int4[]: each element is an array literal, quoted. */
    const struct sp_type *a = sp_typcache_get(tc, 16399, &err);
    assert_non_null(a);
    assert_int_equal(a->kind, SP_TYPE_ARRAY);
    assert_ptr_equal(a->elem, d);
    check_t(a, "{\"{1,2}\",NULL,\"{}\"}", "[[1,2],null,[]]");
    sp_typcache_free(tc);
}

static void array_delimiter_comes_from_element_type(void **state)
{
    struct fake_ctx *fc = *state;
    struct sp_typcache *tc = sp_typcache_new(fake_lookup, fc);
    struct sp_err err;
    const struct sp_type *a = sp_typcache_get(tc, 16395, &err);
    assert_non_null(a);
    assert_int_equal(a->kind, SP_TYPE_ARRAY);
    assert_int_equal(a->delim, ';');
    assert_int_equal(a->elem->kind, SP_TYPE_OTHER);
    check_t(a, "{(1,1),(0,0);(3,3),(2,2)}", "[\"(1,1),(0,0)\",\"(3,3),(2,2)\"]");
    sp_typcache_free(tc);
}

static void unknown_types_are_strings(void **state)
{
    struct fake_ctx *fc = *state;
    struct sp_typcache *tc = sp_typcache_new(fake_lookup, fc);
    struct sp_err err;
    const struct sp_type *t = sp_typcache_get(tc, 16396, &err);
    assert_non_null(t);
    assert_int_equal(t->kind, SP_TYPE_OTHER);
    assert_string_equal(t->name, "public.address");
    check_t(t, "(\"1 Main St\",Springfield)", "\"(\\\"1 Main St\\\",Springfield)\"");
    sp_typcache_free(tc);

    /* Without a lookup callback every non-built-in type is OTHER. */
    tc = sp_typcache_new(NULL, NULL);
    t = sp_typcache_get(tc, 99999, &err);
    assert_non_null(t);
    assert_int_equal(t->kind, SP_TYPE_OTHER);
    assert_string_equal(t->name, "99999");
    assert_ptr_equal(sp_typcache_get(tc, 99999, &err), t);
    assert_int_equal(sp_typcache_get(tc, 23, &err)->kind, SP_TYPE_INT);
    check_t(t, "anything", "\"anything\"");
    sp_typcache_free(tc);
}

static void failed_lookup_is_an_error_and_not_cached(void **state)
{
    struct fake_ctx *fc = *state;
    struct sp_typcache *tc = sp_typcache_new(fake_lookup, fc);
    struct sp_err err;
    sp_err_clear(&err);
    assert_null(sp_typcache_get(tc, 12345, &err));
    assert_int_equal(err.code, SP_EINVAL);
    assert_string_equal(err.msg, "type 12345 does not exist");
    assert_null(sp_typcache_get(tc, 12345, &err));
    assert_int_equal(fc->calls, 2);
    assert_int_equal(sp_typcache_count(tc), 0);
    /* a domain whose base type cannot be resolved is not cached either */
    sp_typcache_free(tc);
}

static void cyclic_domain_is_an_error(void **state)
{
    struct fake_ctx *fc = *state;
    struct sp_typcache *tc = sp_typcache_new(fake_lookup, fc);
    struct sp_err err;
    sp_err_clear(&err);
    assert_null(sp_typcache_get(tc, 16397, &err));
    assert_int_equal(err.code, SP_EINVAL);
    assert_non_null(strstr(err.msg, "nest too deep"));
    assert_int_equal(sp_typcache_count(tc), 0);
    sp_typcache_free(tc);
}

static void cache_grows_and_keeps_pointers(void **state)
{
    (void)state;
    struct sp_typcache *tc = sp_typcache_new(NULL, NULL);
    struct sp_err err;
    const struct sp_type *first = sp_typcache_get(tc, 100000, &err);
    for (uint32_t oid = 100001; oid < 101000; oid++) {
        assert_non_null(sp_typcache_get(tc, oid, &err));
    }
    assert_int_equal(sp_typcache_count(tc), 1000);
    assert_ptr_equal(sp_typcache_get(tc, 100000, &err), first);
    assert_int_equal(first->oid, 100000);
    for (uint32_t oid = 100000; oid < 101000; oid++) {
        assert_int_equal(sp_typcache_get(tc, oid, &err)->oid, oid);
    }
    sp_typcache_free(tc);
    sp_typcache_free(NULL);
}

int main(void)
{
    const struct CMUnitTest conv_tests[] = {
        cmocka_unit_test(integers_are_numbers),
        cmocka_unit_test(malformed_integers_are_rejected),
        cmocka_unit_test(floats_are_numbers_with_special_values_as_strings),
        cmocka_unit_test(malformed_floats_are_rejected),
        cmocka_unit_test(numerics_are_strings_with_exact_digits),
        cmocka_unit_test(malformed_numerics_are_rejected),
        cmocka_unit_test(booleans),
        cmocka_unit_test(text_types_are_strings),
        cmocka_unit_test(other_types_are_their_text_as_string),
        cmocka_unit_test(bytea_is_base64),
        cmocka_unit_test(malformed_bytea_is_rejected),
        cmocka_unit_test(jsonb_is_embedded_compactly),
        cmocka_unit_test(json_whitespace_outside_strings_is_dropped),
        cmocka_unit_test(malformed_json_is_rejected),
        cmocka_unit_test(dates),
        cmocka_unit_test(malformed_dates_are_rejected),
        cmocka_unit_test(timestamps),
        cmocka_unit_test(timestamptz_is_utc_with_z),
        cmocka_unit_test(times),
        cmocka_unit_test(timetz_offsets_are_normalized),
        cmocka_unit_test(intervals_in_iso_8601_style_pass_through),
        cmocka_unit_test(intervals_in_postgres_style_become_iso_8601),
        cmocka_unit_test(malformed_intervals_are_rejected),
        cmocka_unit_test(arrays_of_numbers),
        cmocka_unit_test(arrays_of_text),
        cmocka_unit_test(arrays_of_json),
        cmocka_unit_test(arrays_of_box_use_semicolons),
        cmocka_unit_test(malformed_arrays_are_rejected),
        cmocka_unit_test(long_bad_values_are_cut_in_messages),
        cmocka_unit_test(text_need_not_be_nul_terminated),
    };
    const struct CMUnitTest cache_tests[] = {
        cmocka_unit_test_setup_teardown(builtins_are_known_without_lookup, cache_setup,
                                        cache_teardown),
        cmocka_unit_test_setup_teardown(enum_converts_as_string, cache_setup, cache_teardown),
        cmocka_unit_test_setup_teardown(domain_over_numeric_converts_as_numeric, cache_setup,
                                        cache_teardown),
        cmocka_unit_test_setup_teardown(domain_over_array_and_array_of_it, cache_setup,
                                        cache_teardown),
        cmocka_unit_test_setup_teardown(array_delimiter_comes_from_element_type, cache_setup,
                                        cache_teardown),
        cmocka_unit_test_setup_teardown(unknown_types_are_strings, cache_setup, cache_teardown),
        cmocka_unit_test_setup_teardown(failed_lookup_is_an_error_and_not_cached, cache_setup,
                                        cache_teardown),
        cmocka_unit_test_setup_teardown(cyclic_domain_is_an_error, cache_setup, cache_teardown),
        cmocka_unit_test(cache_grows_and_keeps_pointers),
    };
    int failed = cmocka_run_group_tests_name("pgtext to json", conv_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("type cache", cache_tests, NULL, NULL);
    return failed != 0;
}
