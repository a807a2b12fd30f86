// SPDX-License-Identifier: Apache-2.0
/*
 * Signature Version 4 against the values AWS publishes: the signing key of
 * the "derive a signing key" example (secret wJalr.../20120215/us-east-1/
 * iam) and requests of the SigV4 test suite (AKIDEXAMPLE, 20150830T123600Z,
 * us-east-1, service "service"), so the signing is checked against AWS's
 * own answers, not only against the SQS test server that shares this code.
 * Also the shared credentials file reader.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sink/sigv4.h"

#define SUITE_KEY    "AKIDEXAMPLE"
#define SUITE_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_DATE   "20150830T123600Z"
#define SUITE_SCOPE  "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SUITE_TOKEN                                                                               \
    "AQoDYXdzEPT//////////"                                                                       \
    "wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwt" \
    "hAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9H" \
    "FvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+"                          \
    "scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = "0123456789abcdef"[p[i] >> 4];
        out[2 * i + 1] = "0123456789abcdef"[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* "Examples of how to derive a signing key for Signature Version 4". */
static void signing_key_matches_the_documented_example(void **state)
{
    (void)state;
    uint8_t key[SP_SHA256_LEN];
    char h[2 * SP_SHA256_LEN + 1];
    sp_sigv4_signing_key(SUITE_SECRET, "20120215", "us-east-1", "iam", key);
    hex(key, sizeof(key), h);
    assert_string_equal(h, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
}

static void sha256_and_amz_date(void **state)
{
    (void)state;
    char h[SP_SHA256_HEX_LEN + 1];
    sp_sha256_hex("", 0, h);
    assert_string_equal(h, EMPTY_SHA256);
    sp_sha256_hex("Param1=value1", 13, h);
    assert_string_equal(h, "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e");
    char d[17];
    sp_sigv4_amz_date(1440938160, d);
    assert_string_equal(d, SUITE_DATE);
}

/* Signs a suite request and returns the Authorization value (malloc'd). */
static char *suite_sign(const char *method, const char *query, const struct sp_sigv4_header *hdrs,
                        size_t n, const char *body)
{
    char ph[SP_SHA256_HEX_LEN + 1];
    sp_sha256_hex(body, strlen(body), ph);
    struct sp_sigv4_req rq = {method, "/", query, hdrs, n, ph};
    struct sp_buf out;
    sp_buf_init(&out);
    sp_sigv4_authorization(SUITE_KEY, SUITE_SECRET, SUITE_DATE, "us-east-1", "service", &rq, &out);
    return sp_buf_steal(&out);
}

static void get_vanilla(void **state)
{
    (void)state;
    const struct sp_sigv4_header h[] = {{"Host", "example.amazonaws.com"},
                                        {"X-Amz-Date", SUITE_DATE}};
    struct sp_sigv4_req rq = {"GET", "/", NULL, h, 2, EMPTY_SHA256};
    struct sp_buf creq;
    struct sp_buf sh;
    sp_buf_init(&creq);
    sp_buf_init(&sh);
    sp_sigv4_canonical_request(&rq, &creq, &sh);
    assert_string_equal(creq.data, "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:" SUITE_DATE
                                   "\n\nhost;x-amz-date\n" EMPTY_SHA256);
    assert_string_equal(sh.data, "host;x-amz-date");
    sp_buf_fini(&creq);
    sp_buf_fini(&sh);
    char *a = suite_sign("GET", NULL, h, 2, "");
    assert_string_equal(
        a, "AWS4-HMAC-SHA256 Credential=" SUITE_SCOPE ", SignedHeaders=host;x-amz-date, "
           "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    free(a);
}

static void post_vanilla(void **state)
{
    (void)state;
    const struct sp_sigv4_header h[] = {{"X-Amz-Date", SUITE_DATE},
                                        {"Host", "example.amazonaws.com"}};
    char *a = suite_sign("POST", NULL, h, 2, "");
    assert_non_null(
        strstr(a, "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"));
    free(a);
}

static void get_vanilla_query_order_key_case(void **state)
{
    (void)state;
    const struct sp_sigv4_header h[] = {{"Host", "example.amazonaws.com"},
                                        {"X-Amz-Date", SUITE_DATE}};
    char *a = suite_sign("GET", "Param2=value2&Param1=value1", h, 2, "");
    assert_non_null(
        strstr(a, "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"));
    free(a);
    struct sp_buf q;
    sp_buf_init(&q);
    sp_sigv4_canonical_query("b=2&a=x%20y&a=1&c", &q);
    assert_string_equal(q.data, "a=1&a=x%20y&b=2&c=");
    sp_buf_fini(&q);
}

/* A body, as SQS requests have: the payload hash and the string to sign. */
static void post_x_www_form_urlencoded(void **state)
{
    (void)state;
    const struct sp_sigv4_header h[] = {{"Content-Type", "application/x-www-form-urlencoded"},
                                        {"Host", "example.amazonaws.com"},
                                        {"X-Amz-Date", SUITE_DATE}};
    char ph[SP_SHA256_HEX_LEN + 1];
    sp_sha256_hex("Param1=value1", 13, ph);
    struct sp_sigv4_req rq = {"POST", "/", "", h, 3, ph};
    struct sp_buf creq;
    struct sp_buf sh;
    struct sp_buf sts;
    sp_buf_init(&creq);
    sp_buf_init(&sh);
    sp_buf_init(&sts);
    sp_sigv4_canonical_request(&rq, &creq, &sh);
    sp_sigv4_string_to_sign(SUITE_DATE, "us-east-1", "service", creq.data, creq.len, &sts);
    assert_string_equal(
        sts.data, "AWS4-HMAC-SHA256\n" SUITE_DATE "\n20150830/us-east-1/service/aws4_request\n"
                  "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281");
    sp_buf_fini(&creq);
    sp_buf_fini(&sh);
    sp_buf_fini(&sts);
    char *a = suite_sign("POST", NULL, h, 3, "Param1=value1");
    assert_string_equal(
        a,
        "AWS4-HMAC-SHA256 Credential=" SUITE_SCOPE ", SignedHeaders=content-type;host;x-amz-date, "
        "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a");
    free(a);
}

/* Temporary credentials: the session token is a signed header. */
static void post_sts_header_before(void **state)
{
    (void)state;
    const struct sp_sigv4_header h[] = {{"Host", "example.amazonaws.com"},
                                        {"X-Amz-Date", SUITE_DATE},
                                        {"X-Amz-Security-Token", SUITE_TOKEN}};
    char *a = suite_sign("POST", NULL, h, 3, "");
    assert_string_equal(
        a, "AWS4-HMAC-SHA256 Credential=" SUITE_SCOPE
           ", SignedHeaders=host;x-amz-date;x-amz-security-token, "
           "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead");
    free(a);
}

/* Header names in any case, values trimmed with inner runs of spaces collapsed. */
static void header_names_and_values_are_canonicalised(void **state)
{
    (void)state;
    const struct sp_sigv4_header h1[] = {
        {"Host", "example.amazonaws.com"}, {"My-Header1", "VALUE1"}, {"X-Amz-Date", SUITE_DATE}};
    char *a = suite_sign("POST", NULL, h1, 3, "");
    assert_non_null(strstr(a, "SignedHeaders=host;my-header1;x-amz-date, Signature="
                              "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"));
    free(a);
    const struct sp_sigv4_header h2[] = {{"Host", "example.amazonaws.com"},
                                         {"My-Header1", " value1"},
                                         {"My-Header2", "\"a   b   c\""},
                                         {"X-Amz-Date", SUITE_DATE}};
    a = suite_sign("GET", NULL, h2, 4, "");
    assert_non_null(strstr(a, "SignedHeaders=host;my-header1;my-header2;x-amz-date, Signature="
                              "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"));
    free(a);
}

/* ---- the credentials file ---- */

static const char creds_file[] = "# shared credentials\n"
                                 "[default]\n"
                                 "aws_access_key_id = AKIDDEFAULT\n"
                                 "aws_secret_access_key=secret-default\n"
                                 "\n"
                                 "[profile ci]\n"
                                 "; temporary\n"
                                 "AWS_ACCESS_KEY_ID = AKIDCI  \r\n"
                                 "aws_secret_access_key = s/ci+x==\n"
                                 "aws_session_token = tok en\n"
                                 "region = eu-central-1\n"
                                 "[broken]\n"
                                 "aws_access_key_id = AKIDBROKEN\n";

static void credentials_file_profiles(void **state)
{
    (void)state;
    struct sp_aws_creds c;
    struct sp_err err;
    sp_err_clear(&err);
    assert_int_equal(sp_aws_creds_parse(creds_file, strlen(creds_file), "default", "f", &c, &err),
                     0);
    assert_string_equal(c.access_key_id, "AKIDDEFAULT");
    assert_string_equal(c.secret_access_key, "secret-default");
    assert_null(c.session_token);
    sp_aws_creds_fini(&c);
    assert_int_equal(sp_aws_creds_parse(creds_file, strlen(creds_file), "ci", "f", &c, &err), 0);
    assert_string_equal(c.access_key_id, "AKIDCI");
    assert_string_equal(c.secret_access_key, "s/ci+x==");
    assert_string_equal(c.session_token, "tok en");
    sp_aws_creds_fini(&c);
}

static void credentials_file_errors_name_the_profile(void **state)
{
    (void)state;
    struct sp_aws_creds c;
    struct sp_err err;
    sp_err_clear(&err);
    assert_int_equal(
        sp_aws_creds_parse(creds_file, strlen(creds_file), "prod", "/x/credentials", &c, &err),
        SP_EINVAL);
    assert_string_equal(err.msg, "/x/credentials has no profile \"prod\"");
    sp_err_clear(&err);
    assert_int_equal(
        sp_aws_creds_parse(creds_file, strlen(creds_file), "broken", "/x/credentials", &c, &err),
        SP_EINVAL);
    assert_string_equal(err.msg,
                        "profile \"broken\" in /x/credentials has no aws_secret_access_key");
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void clear_aws_env(void)
{
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
}

/* A configured file first, else the environment's keys, else its file; a changed file is read
 * again. */
static void credentials_source_order_and_reload(void **state)
{
    (void)state;
    clear_aws_env();
    char dir[] = "/tmp/sp-sigv4-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/credentials", dir);
    write_text(path, "[default]\naws_access_key_id = A\naws_secret_access_key = B\n");
    struct sp_aws_creds_src cs;
    struct sp_err err;
    sp_err_clear(&err);
    setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    assert_int_equal(sp_aws_creds_src_init(&cs, path, NULL, &err), 0);
    char want[96];
    snprintf(want, sizeof(want), "%s, profile \"default\"", path);
    assert_string_equal(cs.origin, want);
    assert_int_equal(sp_aws_creds_src_load(&cs, false, &err), 0);
    assert_string_equal(cs.creds.access_key_id, "A");
    write_text(path, "[default]\naws_access_key_id = AA\naws_secret_access_key = BB\n");
    assert_int_equal(sp_aws_creds_src_load(&cs, false, &err), 1);
    assert_string_equal(cs.creds.access_key_id, "AA");
    assert_int_equal(sp_aws_creds_src_load(&cs, false, &err), 0);
    unlink(path);
    assert_true(sp_aws_creds_src_load(&cs, false, &err) < 0);
    assert_string_equal(cs.creds.access_key_id, "AA"); /* the previous keys stay */
    sp_aws_creds_src_fini(&cs);

    setenv("AWS_SESSION_TOKEN", "envtoken", 1);
    assert_int_equal(sp_aws_creds_src_init(&cs, NULL, NULL, &err), 0);
    assert_string_equal(cs.origin, "the environment");
    assert_int_equal(sp_aws_creds_src_load(&cs, false, &err), 0);
    assert_string_equal(cs.creds.access_key_id, "ENVKEY");
    assert_string_equal(cs.creds.secret_access_key, "envsecret");
    assert_string_equal(cs.creds.session_token, "envtoken");
    sp_aws_creds_src_fini(&cs);

    clear_aws_env();
    write_text(path, "[ci]\naws_access_key_id = CI\naws_secret_access_key = S\n");
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    setenv("AWS_PROFILE", "ci", 1);
    assert_int_equal(sp_aws_creds_src_init(&cs, NULL, NULL, &err), 0);
    assert_int_equal(sp_aws_creds_src_load(&cs, false, &err), 0);
    assert_string_equal(cs.creds.access_key_id, "CI");
    sp_aws_creds_src_fini(&cs);

    clear_aws_env();
    const char *home_env = getenv("HOME");
    char *home = home_env != NULL ? strdup(home_env) : NULL;
    setenv("HOME", dir, 1);
    assert_int_equal(sp_aws_creds_src_init(&cs, NULL, NULL, &err), SP_EINVAL);
    assert_string_equal(err.msg, "no AWS credentials");
    if (home != NULL) {
        setenv("HOME", home, 1);
        free(home);
    }
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(signing_key_matches_the_documented_example),
        cmocka_unit_test(sha256_and_amz_date),
        cmocka_unit_test(get_vanilla),
        cmocka_unit_test(post_vanilla),
        cmocka_unit_test(get_vanilla_query_order_key_case),
        cmocka_unit_test(post_x_www_form_urlencoded),
        cmocka_unit_test(post_sts_header_before),
        cmocka_unit_test(header_names_and_values_are_canonicalised),
        cmocka_unit_test(credentials_file_profiles),
        cmocka_unit_test(credentials_file_errors_name_the_profile),
        cmocka_unit_test(credentials_source_order_and_reload),
    };
    return cmocka_run_group_tests_name("sigv4", tests, NULL, NULL);
}
