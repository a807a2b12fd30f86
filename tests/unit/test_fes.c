// SPDX-License-Identifier: Apache-2.0
/*
 * FabricEventStream resources: the translation into a siphon configuration
 * (compared as `siphon check` prints it), jdbcUrl -> libpq, secrets from the
 * environment and from files, several resources per file, and the errors
 * for fields siphon cannot honour, located in the resource.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config/diag.h"
#include "config/fes.h"
#include "config/yaml.h"

/* ---- helpers ---- */

static char secrets_dir[64];

static const char *test_env(const char *name)
{
    static const char *const vars[][2] = {
        {"SIPHON_NAKADI_URL", "https://nakadi.example.org"},
        {"SIPHON_NAKADI_TOKEN_FILE", "/meta/credentials/nakadi-token-secret"},
        {"SIPHON_SECRET_MY_DB_SECRET_USERNAME", "app_user"},
        {"SIPHON_SECRET_MY_DB_SECRET_PASSWORD", "s3cr'et"},
        {"DB_HOST", "db.example.org"},
    };
    for (size_t i = 0; i < SP_ARRAY_LEN(vars); i++) {
        if (strcmp(vars[i][0], name) == 0) {
            return vars[i][1];
        }
    }
    if (strcmp(name, "SIPHON_SECRETS_DIR") == 0 && secrets_dir[0] != '\0') {
        return secrets_dir;
    }
    return NULL;
}

/* Loads yaml as "fes.yaml": rc, the configuration, the diagnostics as printed. */
static int load(const char *yaml, struct sp_config **cfg, char **diag)
{
    struct sp_diag d;
    struct sp_buf b;
    sp_diag_init(&d);
    sp_buf_init(&b);
    int rc = sp_cfg_load_string("fes.yaml", yaml, strlen(yaml), test_env, cfg, &d);
    sp_diag_format(&d, &b);
    sp_diag_fini(&d);
    *diag = sp_buf_steal(&b);
    if (*diag == NULL) {
        *diag = calloc(1, 1);
    }
    return rc;
}

/* yaml loads, with diagnostics warnings, and translates to expected. */
static struct sp_config *expect_translation(const char *yaml, const char *expected,
                                            const char *warnings)
{
    struct sp_config *cfg = NULL;
    char *diag = NULL;
    int rc = load(yaml, &cfg, &diag);
    if (rc != 0 || strcmp(diag, warnings) != 0) {
        print_error("--- diagnostics ---\n%s---\n", diag);
    }
    assert_int_equal(rc, 0);
    assert_string_equal(diag, warnings);
    free(diag);
    assert_true(cfg->fes);
    struct sp_buf y;
    sp_buf_init(&y);
    sp_node_write_yaml(cfg->doc->root, &y);
    if (strcmp(y.data, expected) != 0) {
        print_error("--- expected ---\n%s--- got ---\n%s---\n", expected, y.data);
    }
    assert_string_equal(y.data, expected);
    sp_buf_fini(&y);
    return cfg;
}

static void expect_error(const char *yaml, const char *expected)
{
    struct sp_config *cfg = NULL;
    char *diag = NULL;
    int rc = load(yaml, &cfg, &diag);
    if (strcmp(diag, expected) != 0) {
        print_error("--- expected ---\n%s--- got ---\n%s---\n", expected, diag);
    }
    assert_string_equal(diag, expected);
    assert_int_equal(rc, SP_EINVAL);
    assert_null(cfg);
    free(diag);
}

/* The connection string the translation gave source name. */
static const char *conninfo_of(const struct sp_config *cfg, const char *name)
{
    const struct sp_node *src = sp_node_get(sp_node_get(cfg->doc->root, "sources"), name);
    assert_non_null(src);
    const struct sp_node *c = sp_node_get(src, "connection");
    assert_non_null(c);
    assert_true(c->secret);
    return c->str;
}

/* A resource around one event stream (its lines indented by 4). */
#define FES_HEAD                   \
    "apiVersion: zalando.org/v1\n" \
    "kind: FabricEventStream\n"    \
    "metadata:\n"                  \
    "  name: shop\n"               \
    "spec:\n"                      \
    "  applicationId: shop-app\n"  \
    "  eventStreams:\n"

#define FES_SOURCE(url)                          \
    "    - source:\n"                            \
    "        type: PostgresLogicalReplication\n" \
    "        table:\n"                           \
    "          name: outbox\n"                   \
    "        jdbcConnection:\n"                  \
    "          jdbcUrl: \"" url "\"\n"           \
    "          slotName: fes_shop\n"

#define FES_FLOW_SINK                                 \
    "      flow:\n"                                   \
    "        type: PostgresWalToGenericNakadiEvent\n" \
    "      sink:\n"                                   \
    "        type: Nakadi\n"                          \
    "        eventType: shop-events\n"

/* ---- tests ---- */

/* The spec digest's resource, with every field, as siphon's configuration. */
static void spec_example_translates(void **state)
{
    (void)state;
    const char *yaml =
        "apiVersion: zalando.org/v1\n"
        "kind: FabricEventStream\n"
        "metadata:\n"
        "  name: my-app-streams\n"
        "spec:\n"
        "  applicationId: my-application\n"
        "  eventStreams:\n"
        "    - source:\n"
        "        type: PostgresLogicalReplication\n"
        "        schema: public\n"
        "        table:\n"
        "          name: my_events_outbox\n"
        "          idColumn: id\n"
        "        filter: \"[?(@.OldImage.Status.Id != @.NewImage.Status.Id)]\"\n"
        "        jdbcConnection:\n"
        "          jdbcUrl: \"jdbc:postgresql://host:5432/db?user=u&ssl=true&sslmode=require\"\n"
        "          slotName: fes\n"
        "          publicationName: fes_pub\n"
        "          pluginType: pgoutput\n"
        "          databaseAuthentication:\n"
        "            type: DatabaseAuthenticationSecret\n"
        "            name: my-db-secret\n"
        "            userKey: username\n"
        "            passwordKey: password\n"
        "      flow:\n"
        "        type: PostgresWalToGenericNakadiEvent\n"
        "        payloadColumn: my_event_payload\n"
        "      sink:\n"
        "        type: Nakadi\n"
        "        eventType: my-important-business-events\n"
        "        maxBatchSize: 100\n"
        "      recovery:\n"
        "        type: DeadLetter\n";
    struct sp_config *cfg =
        expect_translation(yaml,
                           "sources:\n"
                           "  fes:\n"
                           "    type: postgres\n"
                           "    connection: \"****\"\n"
                           "    slot: fes\n"
                           "    publication: fes_pub\n"
                           "    snapshot: never\n"
                           "sinks:\n"
                           "  my-app-streams.public.my_events_outbox.sink:\n"
                           "    type: nakadi\n"
                           "    url: \"https://nakadi.example.org\"\n"
                           "    event_type: my-important-business-events\n"
                           "    max_batch_size: 100\n"
                           "    token_file: \"/meta/credentials/nakadi-token-secret\"\n"
                           "  my-app-streams.public.my_events_outbox.dead-letter:\n"
                           "    type: nakadi\n"
                           "    url: \"https://nakadi.example.org\"\n"
                           "    event_type: \"my-important-business-events-dead-letter-queue\"\n"
                           "    token_file: \"/meta/credentials/nakadi-token-secret\"\n"
                           "streams:\n"
                           "  - name: \"my-app-streams.public.my_events_outbox\"\n"
                           "    source: \"fes\"\n"
                           "    tables:\n"
                           "      - \"public.my_events_outbox\"\n"
                           "    format: nakadi\n"
                           "    sink: \"my-app-streams.public.my_events_outbox.sink\"\n"
                           "    messages: false\n"
                           "    flows:\n"
                           "      - filter: \"[?(@.OldImage.Status.Id != @.NewImage.Status.Id)]\"\n"
                           "      - outbox:\n"
                           "          kind: fes_generic\n"
                           "          table: \"public.my_events_outbox\"\n"
                           "          payload_column: my_event_payload\n"
                           "          id_column: id\n"
                           "    recovery:\n"
                           "      type: dead_letter\n"
                           "      sink: \"my-app-streams.public.my_events_outbox.dead-letter\"\n",
                           "");
    /* ssl=true with sslmode given: sslmode wins; the secret's user replaces the URL's. */
    assert_string_equal(conninfo_of(cfg, "fes"),
                        "host='host' port='5432' dbname='db' sslmode='require' user='app_user' "
                        "password='s3cr\\'et'");
    assert_int_equal(cfg->nstreams, 1);
    assert_int_equal(cfg->streams[0].recovery, SP_RECOVERY_DEAD_LETTER);
    assert_string_equal(cfg->streams[0].tables[0].table, "my_events_outbox");
    sp_cfg_free(cfg);
}

/* The data event flow, an SQS-less Nakadi pair, Ignore and None, quoted names. */
static void data_events_and_policies(void **state)
{
    (void)state;
    const char *yaml = FES_HEAD "    - source:\n"
                                "        type: PostgresLogicalReplication\n"
                                "        schema: Sales\n"
                                "        table: {name: Order Events}\n"
                                "        jdbcConnection:\n"
                                "          jdbcUrl: jdbc:postgresql://${DB_HOST}/shop\n"
                                "          slotName: fes_shop\n"
                                "      flow: {type: PostgresWalToNakadiDataEvent}\n"
                                "      sink: {type: Nakadi, eventType: order-events}\n"
                                "      recovery: {type: Ignore}\n"
                                "    - source:\n"
                                "        type: PostgresLogicalReplication\n"
                                "        table: {name: outbox}\n"
                                "        jdbcConnection:\n"
                                "          jdbcUrl: jdbc:postgresql://${DB_HOST}/shop\n"
                                "          slotName: fes_shop\n"
                                "      flow: {type: PostgresWalToGenericNakadiEvent}\n"
                                "      sink: {type: Nakadi, eventType: shop-events}\n"
                                "      recovery: {type: None}\n";
    struct sp_config *cfg =
        expect_translation(yaml,
                           "sources:\n"
                           "  fes_shop:\n"
                           "    type: postgres\n"
                           "    connection: \"****\"\n"
                           "    slot: fes_shop\n"
                           "    snapshot: never\n"
                           "sinks:\n"
                           "  \"shop.Sales.Order Events.sink\":\n"
                           "    type: nakadi\n"
                           "    url: \"https://nakadi.example.org\"\n"
                           "    event_type: order-events\n"
                           "    token_file: \"/meta/credentials/nakadi-token-secret\"\n"
                           "  shop.public.outbox.sink:\n"
                           "    type: nakadi\n"
                           "    url: \"https://nakadi.example.org\"\n"
                           "    event_type: shop-events\n"
                           "    token_file: \"/meta/credentials/nakadi-token-secret\"\n"
                           "streams:\n"
                           "  - name: \"shop.Sales.Order Events\"\n"
                           "    source: \"fes_shop\"\n"
                           "    tables:\n"
                           "      - \"\\\"Sales\\\".\\\"Order Events\\\"\"\n"
                           "    format: nakadi\n"
                           "    sink: \"shop.Sales.Order Events.sink\"\n"
                           "    messages: false\n"
                           "    flows:\n"
                           "      - outbox:\n"
                           "          kind: fes_data\n"
                           "          table: \"\\\"Sales\\\".\\\"Order Events\\\"\"\n"
                           "    recovery:\n"
                           "      type: ignore\n"
                           "  - name: \"shop.public.outbox\"\n"
                           "    source: \"fes_shop\"\n"
                           "    tables:\n"
                           "      - \"public.outbox\"\n"
                           "    format: nakadi\n"
                           "    sink: \"shop.public.outbox.sink\"\n"
                           "    messages: false\n"
                           "    flows:\n"
                           "      - outbox:\n"
                           "          kind: fes_generic\n"
                           "          table: \"public.outbox\"\n"
                           "          payload_column: payload\n"
                           "    recovery:\n"
                           "      type: fail\n",
                           "");
    /* One slot, one source: both tables in its publication. */
    assert_int_equal(cfg->nsources, 1);
    assert_int_equal(cfg->nstreams, 2);
    assert_string_equal(cfg->streams[0].tables[0].schema, "Sales");
    assert_string_equal(cfg->streams[0].tables[0].table, "Order Events");
    assert_int_equal(cfg->streams[0].recovery, SP_RECOVERY_IGNORE);
    assert_int_equal(cfg->streams[1].recovery, SP_RECOVERY_FAIL);
    assert_string_equal(conninfo_of(cfg, "fes_shop"), "host='db.example.org' dbname='shop'");
    sp_cfg_free(cfg);
}

/* jdbcUrl forms and parameters. */
static void jdbc_urls(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"jdbc:postgresql://a:5433,b/db%20x?ApplicationName=shop%26co&connectTimeout=7",
         "host='a,b' port='5433,5432' dbname='db x' application_name='shop&co' "
         "connect_timeout='7'"},
        {"jdbc:postgresql://[::1]:6543/db?ssl=true&targetServerType=primary&tcpKeepAlive=true",
         "host='::1' port='6543' dbname='db' target_session_attrs='read-write' keepalives='1' "
         "sslmode='require'"},
        {"jdbc:postgresql:orders?user=me&password=pw&sslmode=verify-full&sslrootcert=/ca.pem",
         "dbname='orders' user='me' password='pw' sslmode='verify-full' sslrootcert='/ca.pem'"},
        {"jdbc:postgresql://h/db?loginTimeout=3&connectTimeout=9", "host='h' dbname='db' "
                                                                   "connect_timeout='3'"},
    };
    for (size_t i = 0; i < SP_ARRAY_LEN(cases); i++) {
        char yaml[2048];
        snprintf(yaml, sizeof(yaml),
                 "%s    - source:\n"
                 "        type: PostgresLogicalReplication\n"
                 "        table: {name: outbox}\n"
                 "        jdbcConnection: {jdbcUrl: \"%s\", slotName: s}\n" FES_FLOW_SINK,
                 FES_HEAD, cases[i][0]);
        struct sp_config *cfg = NULL;
        char *diag = NULL;
        int rc = load(yaml, &cfg, &diag);
        if (rc != 0) {
            print_error("%s\n", diag);
        }
        assert_int_equal(rc, 0);
        free(diag);
        assert_string_equal(conninfo_of(cfg, "s"), cases[i][1]);
        sp_cfg_free(cfg);
    }
    /* A parameter for the JDBC driver alone is a warning. */
    struct sp_config *cfg = NULL;
    char *diag = NULL;
    assert_int_equal(load(FES_HEAD FES_SOURCE("jdbc:postgresql://h/db?prepareThreshold=0")
                              FES_FLOW_SINK,
                          &cfg, &diag),
                     0);
    assert_string_equal(diag, "fes.yaml:13:20: warning: jdbcUrl: parameter prepareThreshold tunes "
                              "the JDBC driver and has no effect in siphon\n"
                              "   13 |           jdbcUrl: \"jdbc:postgresql://h/db?"
                              "prepareThreshold=0\"\n"
                              "      |                    "
                              "^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\n");
    free(diag);
    sp_cfg_free(cfg);
}

static void jdbc_errors(void **state)
{
    (void)state;
    expect_error(FES_HEAD FES_SOURCE("postgresql://h/db") FES_FLOW_SINK,
                 "fes.yaml:13:20: error: jdbcUrl must start with \"jdbc:postgresql:\"\n"
                 "   13 |           jdbcUrl: \"postgresql://h/db\"\n"
                 "      |                    ^~~~~~~~~~~~~~~~~~~\n"
                 "  hint: e.g. jdbc:postgresql://db.example.org:5432/orders?sslmode=require\n");
    expect_error(FES_HEAD FES_SOURCE("jdbc:postgresql://h/db?socketFactory=x&sslmode=maybe")
                     FES_FLOW_SINK,
                 "fes.yaml:13:20: error: jdbcUrl: parameter \"socketFactory\" is not supported\n"
                 "   13 |           jdbcUrl: \"jdbc:postgresql://h/db?socketFactory=x&"
                 "sslmode=maybe\"\n"
                 "      |                    "
                 "^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\n"
                 "  hint: supported: user, password, ssl, sslmode, sslrootcert, sslcert, sslkey, "
                 "sslpassword, connectTimeout, loginTimeout, ApplicationName, options, "
                 "tcpKeepAlive, targetServerType\n"
                 "fes.yaml:13:20: error: jdbcUrl: sslmode \"maybe\" is not a PostgreSQL sslmode\n"
                 "   13 |           jdbcUrl: \"jdbc:postgresql://h/db?socketFactory=x&"
                 "sslmode=maybe\"\n"
                 "      |                    "
                 "^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\n"
                 "  hint: use disable, allow, prefer, require, verify-ca or verify-full\n");
    expect_error(FES_HEAD FES_SOURCE("jdbc:postgresql://h:54x/db?targetServerType=secondary")
                     FES_FLOW_SINK,
                 "fes.yaml:13:20: error: jdbcUrl: port \"54x\" is not a number\n"
                 "   13 |           jdbcUrl: \"jdbc:postgresql://h:54x/db?targetServerType="
                 "secondary\"\n"
                 "      |                    "
                 "^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\n"
                 "fes.yaml:13:20: error: jdbcUrl: targetServerType \"secondary\" cannot be "
                 "honoured\n"
                 "   13 |           jdbcUrl: \"jdbc:postgresql://h:54x/db?targetServerType="
                 "secondary\"\n"
                 "      |                    "
                 "^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\n"
                 "  hint: logical replication reads from the primary: use primary or any\n");
}

/* Secrets from files under SIPHON_SECRETS_DIR, and the error when neither place has one. */
static void secrets_from_files(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/sp-fes-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    snprintf(secrets_dir, sizeof(secrets_dir), "%s", tmpl);
    char path[256];
    snprintf(path, sizeof(path), "%s/db-creds", tmpl);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/db-creds/user", tmpl);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("file_user\n", f);
    fclose(f);
    const char *head = FES_HEAD FES_SOURCE(
        "jdbc:postgresql://h/db?user=url_user&password=x") "          databaseAuthentication:\n"
                                                           "            type: "
                                                           "DatabaseAuthenticationSecret\n"
                                                           "            name: db-creds\n"
                                                           "            userKey: user\n"
                                                           "            passwordKey: "
                                                           "pass\n" FES_FLOW_SINK;
    char expected[1024];
    snprintf(expected, sizeof(expected),
             "fes.yaml:19:26: error: secret \"db-creds\": key \"pass\" is neither in the "
             "environment nor in a file\n"
             "   19 |             passwordKey: pass\n"
             "      |                          ^~~~\n"
             "  hint: set SIPHON_SECRET_DB_CREDS_PASS, or write the value to %s/db-creds/pass "
             "(SIPHON_SECRETS_DIR sets the directory)\n",
             tmpl);
    expect_error(head, expected);

    snprintf(path, sizeof(path), "%s/db-creds/pass", tmpl);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("file pass", f);
    fclose(f);
    struct sp_config *cfg = NULL;
    char *diag = NULL;
    assert_int_equal(load(head, &cfg, &diag), 0);
    free(diag);
    assert_string_equal(conninfo_of(cfg, "fes_shop"),
                        "host='h' dbname='db' user='file_user' password='file pass'");
    sp_cfg_free(cfg);
    unlink(path);
    snprintf(path, sizeof(path), "%s/db-creds/user", tmpl);
    unlink(path);
    snprintf(path, sizeof(path), "%s/db-creds", tmpl);
    rmdir(path);
    rmdir(tmpl);
    secrets_dir[0] = '\0';
}

/* Fields siphon cannot honour stop the load, each at its line. */
static void unsupported_fields(void **state)
{
    (void)state;
    expect_error(
        FES_HEAD "    - source:\n"
                 "        type: DynamoDbStreamsSubscription\n"
                 "        table: {name: outbox}\n"
                 "        jdbcConnection: {jdbcUrl: \"jdbc:postgresql://h/db\", slotName: s, "
                 "pluginType: wal2json}\n"
                 "        leaseTableName: leases\n"
                 "      flow: {type: AwsLambdaConversion}\n"
                 "      sink: {type: Kinesis}\n"
                 "      recovery: {type: Retry}\n",
        "fes.yaml:9:15: error: spec.eventStreams[0].source.type \"DynamoDbStreamsSubscription\" "
        "is not supported\n"
        "    9 |         type: DynamoDbStreamsSubscription\n"
        "      |               ^~~~~~~~~~~~~~~~~~~~~~~~~~~\n"
        "  hint: siphon reads PostgreSQL: use PostgresLogicalReplication\n"
        "fes.yaml:11:86: error: spec.eventStreams[0].source.jdbcConnection.pluginType "
        "\"wal2json\" is not supported\n"
        "   11 |         jdbcConnection: {jdbcUrl: \"jdbc:postgresql://h/db\", slotName: s, "
        "pluginType: wal2json}\n"
        "      |                                                                             "
        "         ^~~~~~~~\n"
        "  hint: siphon decodes pgoutput: remove pluginType or set it to pgoutput\n"
        "fes.yaml:12:9: error: spec.eventStreams[0].source: unknown field \"leaseTableName\"\n"
        "   12 |         leaseTableName: leases\n"
        "      |         ^~~~~~~~~~~~~~\n"
        "  hint: fields of spec.eventStreams[0].source that siphon knows: type, schema, table, "
        "filter, jdbcConnection; siphon stops rather than ignore a field it cannot honour\n"
        "fes.yaml:13:20: error: spec.eventStreams[0].flow.type \"AwsLambdaConversion\" is not "
        "supported\n"
        "   13 |       flow: {type: AwsLambdaConversion}\n"
        "      |                    ^~~~~~~~~~~~~~~~~~~\n"
        "  hint: write a siphon configuration with a script flow instead (docs/flow-script.md)\n"
        "fes.yaml:14:20: error: spec.eventStreams[0].sink.type \"Kinesis\" is not a sink siphon "
        "has\n"
        "   14 |       sink: {type: Kinesis}\n"
        "      |                    ^~~~~~~\n"
        "  hint: use Nakadi, SqsStandard or SqsFifo; for other sinks write a siphon "
        "configuration (docs/config.md)\n"
        "fes.yaml:15:24: error: spec.eventStreams[0].recovery.type \"Retry\" is not a recovery "
        "type\n"
        "   15 |       recovery: {type: Retry}\n"
        "      |                        ^~~~~\n"
        "  hint: use DeadLetter, Ignore or None\n");
}

/* A filter error points into the resource, at the character. */
static void filter_errors_are_located(void **state)
{
    (void)state;
    expect_error(
        FES_HEAD FES_SOURCE(
            "jdbc:postgresql://h/db") "        filter: \"[?(@.NewImage.x = 1)]\"\n" FES_FLOW_SINK,
        "fes.yaml:15:34: error: stream \"shop.public.outbox\": filter: unexpected \"=\"\n"
        "   15 |         filter: \"[?(@.NewImage.x = 1)]\"\n"
        "      |                                  ^\n"
        "  hint: compare with \"==\"\n");
}

/* Several resources: `---` documents, a YAML list, a `kind: List`. */
static void several_resources(void **state)
{
    (void)state;
    const char *one = FES_HEAD FES_SOURCE("jdbc:postgresql://h/db") FES_FLOW_SINK;
    char yaml[4096];
    snprintf(yaml, sizeof(yaml), "%s---\n%s", one, one);
    /* The same name twice: the second stream gets the resource and stream indexes. */
    struct sp_config *cfg = NULL;
    char *diag = NULL;
    assert_int_equal(load(yaml, &cfg, &diag), 0);
    free(diag);
    assert_int_equal(cfg->nstreams, 2);
    assert_string_equal(cfg->streams[0].name, "shop.public.outbox");
    assert_string_equal(cfg->streams[1].name, "shop.public.outbox.1.0");
    assert_int_equal(cfg->nsources, 1);
    sp_cfg_free(cfg);

    const char *list = "apiVersion: v1\n"
                       "kind: List\n"
                       "items:\n"
                       "  - apiVersion: zalando.org/v1\n"
                       "    kind: FabricEventStream\n"
                       "    metadata: {name: a}\n"
                       "    spec:\n"
                       "      applicationId: x\n"
                       "      eventStreams:\n"
                       "        - source:\n"
                       "            type: PostgresLogicalReplication\n"
                       "            table: {name: t1}\n"
                       "            jdbcConnection: {jdbcUrl: \"jdbc:postgresql://h/db\", "
                       "slotName: s1, publicationName: p1}\n"
                       "          flow: {type: PostgresWalToNakadiDataEvent}\n"
                       "          sink: {type: Nakadi, eventType: e1}\n"
                       "  - apiVersion: zalando.org/v1\n"
                       "    kind: FabricEventStream\n"
                       "    metadata: {name: b}\n"
                       "    spec:\n"
                       "      applicationId: x\n"
                       "      eventStreams:\n"
                       "        - source:\n"
                       "            type: PostgresLogicalReplication\n"
                       "            table: {name: t2}\n"
                       "            jdbcConnection: {jdbcUrl: \"jdbc:postgresql://h/db\", "
                       "slotName: s1, publicationName: p2}\n"
                       "          flow: {type: PostgresWalToNakadiDataEvent}\n"
                       "          sink: {type: Nakadi, eventType: e2}\n";
    expect_error(list,
                 "fes.yaml:25:96: error: slot \"s1\" is used with two publications (\"p1\" and "
                 "\"p2\")\n"
                 "   25 |             jdbcConnection: {jdbcUrl: \"jdbc:postgresql://h/db\", "
                 "slotName: s1, publicationName: p2}\n"
                 "      |                                                                       "
                 "                         ^~\n"
                 "  hint: one slot streams one publication: give every event stream of this slot "
                 "the same publicationName\n");

    /* One slot of one database, two connection strings. */
    snprintf(yaml, sizeof(yaml), "%s---\n%s", one,
             FES_HEAD FES_SOURCE("jdbc:postgresql://h/db?ApplicationName=x") FES_FLOW_SINK);
    expect_error(yaml, "fes.yaml:33:20: error: slot \"fes_shop\" of this database is used with "
                       "two different connections\n"
                       "   33 |           jdbcUrl: \"jdbc:postgresql://h/db?ApplicationName=x\"\n"
                       "      |                    ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\n"
                       "  hint: one slot is read by one connection: give every event stream of "
                       "slot \"fes_shop\" the same jdbcUrl and databaseAuthentication\n");

    /* A siphon configuration after a resource is not mixed in. */
    snprintf(yaml, sizeof(yaml), "%s---\nsources: {}\n", one);
    expect_error(yaml, "fes.yaml:21:1: error: resource 2 is not a FabricEventStream\n"
                       "   21 | sources: {}\n"
                       "      | ^\n"
                       "  hint: a file holds either FabricEventStream resources or a siphon "
                       "configuration, not both\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spec_example_translates),
        cmocka_unit_test(data_events_and_policies),
        cmocka_unit_test(jdbc_urls),
        cmocka_unit_test(jdbc_errors),
        cmocka_unit_test(secrets_from_files),
        cmocka_unit_test(unsupported_fields),
        cmocka_unit_test(filter_errors_are_located),
        cmocka_unit_test(several_resources),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
