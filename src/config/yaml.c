// SPDX-License-Identifier: Apache-2.0
/*
 * YAML loading: libyaml's document API (yaml_parser_load) turned into our
 * own node tree, every node with its file:line:col (libyaml's marks are
 * 0-based; ours are 1-based). Reports syntax errors, duplicate keys,
 * non-scalar keys and more than one document as diagnostics.
 *
 * Aliases are expanded into copies (so "first defined at" messages point at
 * the anchored text), bounded by a node budget against alias bombs, and an
 * alias that refers to a node containing itself is an error. Merge keys
 * (`<<`) are plain keys here. No YAML typing happens here: scalars stay text
 * and the validator (config/schema.c) decides what they mean.
 */
#include "config/yaml.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config/diag.h"
#include "core/err.h"

#define YAML_MAX_NODES 100000 /* after alias expansion */
#define YAML_MAX_DEPTH 64

struct yb {
    yaml_document_t *ydoc;
    const char *file;
    struct sp_diag *d;
    unsigned char *active; /* per libyaml node index: on the path being built */
    size_t nodes;          /* built so far, aliases counted again */
    bool stop;             /* a limit was hit: build nothing more */
    int errors;
};

static struct sp_loc yb_loc(const char *file, yaml_mark_t m)
{
    struct sp_loc loc = {file, (int)m.line + 1, (int)m.column + 1};
    return loc;
}

static void yb_free_node(struct sp_node *node)
{
    if (node == NULL) {
        return;
    }
    free(node->str);
    for (int i = 0; node->kind == SP_NODE_SEQ && i < node->n; i++) {
        yb_free_node(node->items[i]);
    }
    for (int i = 0; node->kind == SP_NODE_MAP && i < node->n; i++) {
        yb_free_node(node->pairs[i].key);
        yb_free_node(node->pairs[i].value);
    }
    free(node->items);
    free(node->pairs);
    free(node);
}

struct yb_key {
    const struct sp_node *key;
    int pos;
};

static int yb_key_cmp(const void *a, const void *b)
{
    const struct yb_key *x = a;
    const struct yb_key *y = b;
    int c = strcmp(x->key->str, y->key->str);
    if (c != 0) {
        return c;
    }
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static void yb_check_duplicates(struct yb *b, const struct sp_node *map)
{
    if (map->n < 2) {
        return;
    }
    struct yb_key *keys = sp_xcalloc((size_t)map->n, sizeof(*keys));
    for (int i = 0; i < map->n; i++) {
        keys[i].key = map->pairs[i].key;
        keys[i].pos = i;
    }
    qsort(keys, (size_t)map->n, sizeof(*keys), yb_key_cmp);
    int first = 0;
    for (int i = 1; i < map->n; i++) {
        if (strcmp(keys[i].key->str, keys[first].key->str) != 0) {
            first = i;
            continue;
        }
        const struct sp_node *k = keys[i].key;
        struct sp_diag_item *it =
            sp_diag_error(b->d, &k->loc, k->span, "duplicate key \"%s\"", k->str);
        sp_diag_hint(it, "\"%s\" is first defined at line %d", k->str, keys[first].key->loc.line);
        b->errors++;
    }
    free(keys);
}

static struct sp_node *yb_build(struct yb *b, int index, int depth);

static void yb_build_seq(struct yb *b, yaml_node_t *yn, struct sp_node *node, int depth)
{
    size_t n = (size_t)(yn->data.sequence.items.top - yn->data.sequence.items.start);
    node->items = sp_xcalloc(n > 0 ? n : 1, sizeof(struct sp_node *));
    for (size_t i = 0; i < n && !b->stop; i++) {
        struct sp_node *item = yb_build(b, yn->data.sequence.items.start[i], depth + 1);
        if (item == NULL) {
            break;
        }
        node->items[node->n++] = item;
    }
}

static void yb_build_map(struct yb *b, yaml_node_t *yn, struct sp_node *node, int depth)
{
    size_t n = (size_t)(yn->data.mapping.pairs.top - yn->data.mapping.pairs.start);
    node->pairs = sp_xcalloc(n > 0 ? n : 1, sizeof(*node->pairs));
    for (size_t i = 0; i < n && !b->stop; i++) {
        yaml_node_pair_t *yp = &yn->data.mapping.pairs.start[i];
        struct sp_node *key = yb_build(b, yp->key, depth + 1);
        if (key == NULL) {
            break;
        }
        struct sp_node *value = yb_build(b, yp->value, depth + 1);
        if (value == NULL) {
            yb_free_node(key);
            break;
        }
        if (key->kind != SP_NODE_SCALAR) {
            sp_diag_error(b->d, &key->loc, key->span, "mapping keys must be strings, not %s",
                          sp_node_kind_name(key));
            b->errors++;
            yb_free_node(key);
            yb_free_node(value);
            continue;
        }
        node->pairs[node->n].key = key;
        node->pairs[node->n].value = value;
        node->n++;
    }
    yb_check_duplicates(b, node);
}

static struct sp_node *yb_build(struct yb *b, int index, int depth)
{
    yaml_node_t *yn = yaml_document_get_node(b->ydoc, index);
    if (yn == NULL || b->stop) {
        return NULL;
    }
    struct sp_loc loc = yb_loc(b->file, yn->start_mark);
    if (b->active[index]) {
        sp_diag_error(b->d, &loc, 1, "YAML alias refers to a node that contains it");
        b->errors++;
        b->stop = true;
        return NULL;
    }
    if (depth > YAML_MAX_DEPTH) {
        sp_diag_error(b->d, &loc, 1, "YAML nesting is deeper than %d levels", YAML_MAX_DEPTH);
        b->errors++;
        b->stop = true;
        return NULL;
    }
    if (++b->nodes > YAML_MAX_NODES) {
        sp_diag_error(b->d, &loc, 1, "configuration has more than %d YAML nodes (aliases expanded)",
                      YAML_MAX_NODES);
        b->errors++;
        b->stop = true;
        return NULL;
    }

    struct sp_node *node = sp_xcalloc(1, sizeof(*node));
    node->loc = loc;
    node->span = 1;
    if (yn->end_mark.line == yn->start_mark.line && yn->end_mark.column > yn->start_mark.column) {
        node->span = (int)(yn->end_mark.column - yn->start_mark.column);
    }

    b->active[index] = 1;
    switch (yn->type) {
    case YAML_SCALAR_NODE:
        node->kind = SP_NODE_SCALAR;
        node->len = yn->data.scalar.length;
        node->str = sp_xstrndup((const char *)yn->data.scalar.value, node->len);
        node->plain = yn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (memchr(yn->data.scalar.value, '\0', node->len) != NULL) {
            sp_diag_error(b->d, &loc, node->span, "NUL characters are not allowed in values");
            b->errors++;
        }
        break;
    case YAML_SEQUENCE_NODE:
        node->kind = SP_NODE_SEQ;
        if (yn->data.sequence.style != YAML_FLOW_SEQUENCE_STYLE) {
            node->span = 1;
        }
        yb_build_seq(b, yn, node, depth);
        break;
    case YAML_MAPPING_NODE:
        node->kind = SP_NODE_MAP;
        if (yn->data.mapping.style != YAML_FLOW_MAPPING_STYLE) {
            node->span = 1;
        }
        yb_build_map(b, yn, node, depth);
        break;
    case YAML_NO_NODE:
    default:
        node->kind = SP_NODE_SCALAR;
        node->str = sp_xstrdup("");
        node->plain = true;
        break;
    }
    b->active[index] = 0;
    return node;
}

/* Line and column (1-based, in characters) of byte offset off in text. */
static struct sp_loc yb_offset_loc(const char *file, const char *text, size_t len, size_t off)
{
    struct sp_loc loc = {file, 1, 1};
    for (size_t i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            loc.line++;
            loc.col = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            loc.col++;
        }
    }
    return loc;
}

static void yb_syntax_error(const yaml_parser_t *p, const char *file, const char *text, size_t len,
                            struct sp_diag *d)
{
    const char *problem = p->problem != NULL ? p->problem : "unknown error";
    struct sp_diag_item *it;

    if (p->error == YAML_MEMORY_ERROR) {
        sp_diag_error(d, NULL, 0, "%s: out of memory while parsing YAML", file);
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        struct sp_loc loc = yb_offset_loc(file, text, len, p->problem_offset);
        it = sp_diag_error(d, &loc, 1, "invalid YAML: %s", problem);
        sp_diag_hint(it, "the file must be UTF-8 text without control characters");
        return;
    }
    struct sp_loc loc = yb_loc(file, p->problem_mark);
    if (p->context != NULL) {
        it = sp_diag_error(d, &loc, 1, "invalid YAML: %s (%s at line %d)", problem, p->context,
                           (int)p->context_mark.line + 1);
    } else {
        it = sp_diag_error(d, &loc, 1, "invalid YAML: %s", problem);
    }
    if (p->problem_mark.index < len && text[p->problem_mark.index] == '\t') {
        sp_diag_hint(it, "YAML does not allow tabs for indentation; use spaces");
    } else if (strstr(problem, "mapping values are not allowed") != NULL) {
        sp_diag_hint(it, "a value containing \": \" must be quoted");
    } else if (strstr(problem, "did not find expected ','") != NULL) {
        sp_diag_hint(it, "check the brackets; inside { } or [ ], values containing { } [ ] or , "
                         "(such as ${...}) must be quoted");
    }
}

/* The tree of a loaded document (NULL when empty); *rc = SP_EINVAL when building stopped. */
static struct sp_node *yb_doc_root(yaml_document_t *ydoc, const char *file, struct sp_diag *d,
                                   int *rc)
{
    yaml_node_t *root = yaml_document_get_root_node(ydoc);
    if (root == NULL) {
        return NULL;
    }
    size_t count = (size_t)(ydoc->nodes.top - ydoc->nodes.start);
    struct yb b = {
        .ydoc = ydoc,
        .file = file,
        .d = d,
        .active = sp_xcalloc(count + 1, 1),
    };
    struct sp_node *node = yb_build(&b, 1, 0);
    free(b.active);
    if (b.stop) {
        yb_free_node(node);
        *rc = SP_EINVAL;
        return NULL;
    }
    return node;
}

/* A `kind: FabricEventStream` mapping. */
static bool yb_is_fes(const struct sp_node *n)
{
    const struct sp_node *kind = sp_node_get(n, "kind");
    return kind != NULL && kind->kind == SP_NODE_SCALAR &&
           strcmp(kind->str, "FabricEventStream") == 0;
}

int sp_yaml_parse(const char *file, const char *text, size_t len, struct sp_yaml_doc **out,
                  struct sp_diag *d)
{
    yaml_parser_t parser;
    yaml_document_t ydoc;
    struct sp_yaml_doc *doc = NULL;
    bool have_ydoc = false;
    int rc = 0;

    *out = NULL;
    if (!yaml_parser_initialize(&parser)) {
        sp_diag_error(d, NULL, 0, "%s: could not initialise the YAML parser", file);
        return SP_EINVAL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);

    doc = sp_xcalloc(1, sizeof(*doc));
    doc->file = file;
    doc->text = sp_xstrndup(text, len);
    doc->len = len;

    if (!yaml_parser_load(&parser, &ydoc)) {
        yb_syntax_error(&parser, file, text, len, d);
        rc = SP_EINVAL;
        goto out;
    }
    have_ydoc = true;

    doc->root = yb_doc_root(&ydoc, file, d, &rc);
    if (rc != 0) {
        goto out;
    }

    /*
     * One document per file: a second one is almost always a mistake. Only
     * FabricEventStream resources come several to a file, as Kubernetes
     * manifests do; they are gathered into a list.
     */
    struct sp_node *first = doc->root;
    for (;;) {
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            yb_syntax_error(&parser, file, text, len, d);
            rc = SP_EINVAL;
            goto out;
        }
        yaml_node_t *next_root = yaml_document_get_root_node(&next);
        if (next_root == NULL) {
            yaml_document_delete(&next);
            break;
        }
        if (!yb_is_fes(first)) {
            struct sp_loc loc = yb_loc(file, next.start_mark);
            struct sp_diag_item *it = sp_diag_error(
                d, &loc, 3, "only one YAML document is allowed in a configuration file");
            sp_diag_hint(it, "remove this \"---\" and what follows, or merge the documents");
            yaml_document_delete(&next);
            rc = SP_EINVAL;
            break;
        }
        struct sp_node *n = yb_doc_root(&next, file, d, &rc);
        yaml_document_delete(&next);
        if (rc != 0) {
            goto out;
        }
        if (doc->root == first) {
            struct sp_node *list = sp_xcalloc(1, sizeof(*list));
            list->kind = SP_NODE_SEQ;
            list->loc = first->loc;
            list->span = 1;
            list->items = sp_xcalloc(1, sizeof(*list->items));
            list->items[0] = first;
            list->n = 1;
            doc->root = list;
        }
        doc->root->items =
            sp_xrealloc(doc->root->items, sizeof(*doc->root->items) * (size_t)(doc->root->n + 1));
        doc->root->items[doc->root->n++] = n;
    }

out:
    if (have_ydoc) {
        yaml_document_delete(&ydoc);
    }
    yaml_parser_delete(&parser);
    if (rc != 0) {
        sp_yaml_free(doc);
        return rc;
    }
    *out = doc;
    return 0;
}

void sp_node_free(struct sp_node *node)
{
    yb_free_node(node);
}

void sp_yaml_free(struct sp_yaml_doc *doc)
{
    if (doc == NULL) {
        return;
    }
    yb_free_node(doc->root);
    free(doc->text);
    free(doc);
}

struct sp_node_pair *sp_node_get_pair(const struct sp_node *map, const char *key)
{
    if (map == NULL || map->kind != SP_NODE_MAP) {
        return NULL;
    }
    for (int i = 0; i < map->n; i++) {
        if (strcmp(map->pairs[i].key->str, key) == 0) {
            return &map->pairs[i];
        }
    }
    return NULL;
}

struct sp_node *sp_node_get(const struct sp_node *map, const char *key)
{
    struct sp_node_pair *p = sp_node_get_pair(map, key);
    return p != NULL ? p->value : NULL;
}

bool sp_node_is_null(const struct sp_node *node)
{
    if (node == NULL) {
        return true;
    }
    if (node->kind != SP_NODE_SCALAR || !node->plain || node->substituted) {
        return false;
    }
    return node->len == 0 || strcmp(node->str, "~") == 0 || strcmp(node->str, "null") == 0 ||
           strcmp(node->str, "Null") == 0 || strcmp(node->str, "NULL") == 0;
}

const char *sp_node_kind_name(const struct sp_node *node)
{
    if (sp_node_is_null(node)) {
        return "empty";
    }
    switch (node->kind) {
    case SP_NODE_SEQ:
        return "a list";
    case SP_NODE_MAP:
        return "a mapping";
    case SP_NODE_SCALAR:
    default:
        return "a string";
    }
}
