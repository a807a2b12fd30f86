/*
 * FabricEventStream resources (zalando.org/v1, as postgres-operator
 * defines them) as a siphon configuration.
 *
 * A file whose document is a `kind: FabricEventStream` resource, a YAML
 * list of them, a `kind: List` holding them, or several `---`-separated
 * resources is translated into the sources, sinks and streams siphon runs
 * (docs/fes.md maps every field). The translated tree is made of new nodes
 * that keep the locations of the fields they came from, so every later
 * error (a filter's syntax, an option's range) points into the resource.
 * Fields siphon cannot honour are errors, never ignored.
 */
#ifndef SIPHON_CONFIG_FES_H
#define SIPHON_CONFIG_FES_H

#include <stdbool.h>

#include "config/config.h"
#include "config/yaml.h"
#include "util/buf.h"

/* True when root holds FabricEventStream resources (and nothing else would be valid). */
bool sp_fes_detect(const struct sp_node *root);

/*
 * The siphon configuration for the resources in root, or NULL after
 * reporting every problem to d. lookup resolves environment variables
 * (NULL: getenv); see docs/fes.md for the ones read. The result is owned by
 * the caller (sp_node_free).
 */
struct sp_node *sp_fes_translate(const struct sp_node *root, sp_env_fn lookup, struct sp_diag *d);

/* node as YAML (block style, strings double-quoted), secrets as "****". */
void sp_node_write_yaml(const struct sp_node *node, struct sp_buf *out);

#endif
