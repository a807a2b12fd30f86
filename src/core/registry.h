/* Plugin registry: name -> ops, a static table per kind. */
#ifndef SIPHON_CORE_REGISTRY_H
#define SIPHON_CORE_REGISTRY_H

#include <stddef.h>

#include "core/plugin.h"

const struct sp_source_ops *sp_registry_source(const char *type);
const struct sp_sink_ops *sp_registry_sink(const char *type);
const struct sp_format_ops *sp_registry_format(const char *name);

/* For listings, docs and did-you-mean. Terminated by NULL. */
extern const struct sp_source_ops *const sp_registry_sources[];
extern const struct sp_sink_ops *const sp_registry_sinks[];
extern const struct sp_format_ops *const sp_registry_formats[];

#endif
