// SPDX-License-Identifier: Apache-2.0
/*
 * The static plugin tables. Adding a plugin is one file and one line here.
 */
#include "core/registry.h"

#include <string.h>

#include "flow/flow.h"

extern const struct sp_source_ops sp_source_postgres;
extern const struct sp_sink_ops sp_sink_stdout;
extern const struct sp_sink_ops sp_sink_file;
extern const struct sp_sink_ops sp_sink_null;
extern const struct sp_sink_ops sp_sink_nats;
extern const struct sp_sink_ops sp_sink_kafka;
extern const struct sp_sink_ops sp_sink_redis;
extern const struct sp_sink_ops sp_sink_nakadi;
extern const struct sp_sink_ops sp_sink_sqs;
extern const struct sp_format_ops sp_format_json;
extern const struct sp_format_ops sp_format_debezium;
extern const struct sp_format_ops sp_format_nakadi;
extern const struct sp_flow_ops sp_flow_filter;
extern const struct sp_flow_ops sp_flow_select;
extern const struct sp_flow_ops sp_flow_mask;
extern const struct sp_flow_ops sp_flow_route;
extern const struct sp_flow_ops sp_flow_outbox;
extern const struct sp_flow_ops sp_flow_transaction;
extern const struct sp_flow_ops sp_flow_script;

const struct sp_source_ops *const sp_registry_sources[] = {
    &sp_source_postgres,
    NULL,
};

const struct sp_sink_ops *const sp_registry_sinks[] = {
    &sp_sink_file,  &sp_sink_kafka, &sp_sink_nakadi, &sp_sink_nats, &sp_sink_null,
    &sp_sink_redis, &sp_sink_sqs,   &sp_sink_stdout, NULL,
};

const struct sp_format_ops *const sp_registry_formats[] = {
    &sp_format_json,
    &sp_format_debezium,
    &sp_format_nakadi,
    NULL,
};

/* Flow types by the key of a `flows:` item. */
const struct sp_flow_ops *const sp_registry_flows[] = {
    &sp_flow_filter, &sp_flow_select,      &sp_flow_mask,   &sp_flow_route,
    &sp_flow_outbox, &sp_flow_transaction, &sp_flow_script, NULL,
};

const struct sp_flow_ops *sp_registry_flow(const char *name)
{
    for (size_t i = 0; sp_registry_flows[i] != NULL; i++) {
        if (strcmp(sp_registry_flows[i]->name, name) == 0) {
            return sp_registry_flows[i];
        }
    }
    return NULL;
}

const struct sp_source_ops *sp_registry_source(const char *type)
{
    for (size_t i = 0; sp_registry_sources[i] != NULL; i++) {
        if (strcmp(sp_registry_sources[i]->type, type) == 0) {
            return sp_registry_sources[i];
        }
    }
    return NULL;
}

const struct sp_sink_ops *sp_registry_sink(const char *type)
{
    for (size_t i = 0; sp_registry_sinks[i] != NULL; i++) {
        if (strcmp(sp_registry_sinks[i]->type, type) == 0) {
            return sp_registry_sinks[i];
        }
    }
    return NULL;
}

const struct sp_format_ops *sp_registry_format(const char *name)
{
    for (size_t i = 0; sp_registry_formats[i] != NULL; i++) {
        if (strcmp(sp_registry_formats[i]->name, name) == 0) {
            return sp_registry_formats[i];
        }
    }
    return NULL;
}
