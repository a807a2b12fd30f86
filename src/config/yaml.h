/*
 * YAML -> a node tree where every node remembers where it was written.
 *
 * Built with libyaml's document API. Scalars keep their text (after
 * ${...} substitution, config/env.h) and whether they were plain (unquoted),
 * which is what tells a null (`key:`, `~`, `null`) from the string "".
 * Aliases are expanded into copies that keep the anchored node's location.
 *
 * Ownership: the document owns every node; sp_yaml_free frees them all.
 */
#ifndef SIPHON_CONFIG_YAML_H
#define SIPHON_CONFIG_YAML_H

#include <stddef.h>

#include <stdbool.h>

#include "config/config.h"

enum sp_node_kind {
    SP_NODE_SCALAR = 1,
    SP_NODE_SEQ,
    SP_NODE_MAP,
};

struct sp_node_pair {
    struct sp_node *key; /* always a scalar */
    struct sp_node *value;
};

struct sp_node {
    enum sp_node_kind kind;
    struct sp_loc loc; /* where the node starts; file points to the document's name */
    int span;          /* characters the node covers on its first line (>= 1), for the caret */
    /* SP_NODE_SCALAR */
    char *str; /* NUL-terminated (NUL bytes inside are rejected while loading) */
    size_t len;
    bool plain;       /* written without quotes or block indicator */
    bool substituted; /* str came from ${...} substitution */
    bool secret;      /* the value of an SP_OPT_SECRET option: never shown */
    bool invalid;     /* an error was reported for this value already: do not report more */
    /* SP_NODE_SEQ */
    struct sp_node **items;
    /* SP_NODE_MAP */
    struct sp_node_pair *pairs;
    int n; /* items or pairs */
};

struct sp_yaml_doc {
    const char *file; /* not owned: must outlive the document */
    char *text;       /* copy of the source, for diagnostics */
    size_t len;
    struct sp_node *root; /* NULL for an empty document */
};

/*
 * Parse text (len bytes) named file. Returns 0 and *out (root may be NULL
 * for an empty file) whenever a tree could be built: duplicate keys,
 * non-scalar keys (left out of the tree) and NUL bytes are reported to d but
 * do not stop loading, so later checks can report more. Syntax errors and
 * alias loops or bombs return SP_EINVAL with *out NULL.
 */
int sp_yaml_parse(const char *file, const char *text, size_t len, struct sp_yaml_doc **out,
                  struct sp_diag *d);
void sp_yaml_free(struct sp_yaml_doc *doc);
/* Frees node and everything under it (for trees built outside a document). */
void sp_node_free(struct sp_node *node);

/* The value for key in map, or NULL (also when map is not a mapping). */
struct sp_node *sp_node_get(const struct sp_node *map, const char *key);
/* The pair for key in map, or NULL. */
struct sp_node_pair *sp_node_get_pair(const struct sp_node *map, const char *key);
/* True for a plain empty scalar, `~`, `null`, `Null` or `NULL`. */
bool sp_node_is_null(const struct sp_node *node);
/* "a string", "a list", "a mapping" or "empty" (null), for messages. */
const char *sp_node_kind_name(const struct sp_node *node);

#endif
