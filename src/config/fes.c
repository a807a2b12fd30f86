// SPDX-License-Identifier: Apache-2.0
/*
 * FabricEventStream -> siphon configuration (config/fes.h, docs/fes.md).
 *
 * Each event stream of each resource becomes one siphon stream:
 *   source.jdbcConnection        -> a postgres source (one per connection and slot)
 *   source.schema/table.name     -> the stream's table
 *   source.filter                -> a filter flow (the JSONPath form compiles as is)
 *   flow                         -> an outbox flow (fes_generic or fes_data)
 *   sink                         -> a nakadi or sqs sink, format nakadi
 *   recovery                     -> the stream's recovery policy and dead-letter sink
 * New nodes take the location of the field they come from.
 */
#include "config/fes.h"

#include <stdarg.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/diag.h"
#include "config/env.h"
#include "util/mem.h"

struct fes_src {
    char *name;
    char *where; /* host, port and database: where the slot lives */
    char *conninfo;
    char *slot;
    char *publication; /* NULL: siphon's default */
};

struct fes {
    struct sp_diag *d;
    sp_env_fn lookup;
    struct sp_node *sources; /* mapping */
    struct sp_node *sinks;   /* mapping */
    struct sp_node *streams; /* sequence */
    struct fes_src *srcs;
    int nsrcs;
    int errors;
};

/* ---- new nodes ---- */

static struct sp_node *fes_node(enum sp_node_kind kind, const struct sp_node *at)
{
    struct sp_node *n = sp_xcalloc(1, sizeof(*n));
    n->kind = kind;
    n->span = 1;
    if (at != NULL) {
        n->loc = at->loc;
        n->span = at->span;
    }
    return n;
}

static struct sp_node *fes_scalar(const struct sp_node *at, const char *s, bool plain)
{
    struct sp_node *n = fes_node(SP_NODE_SCALAR, at);
    n->str = sp_xstrdup(s);
    n->len = strlen(s);
    n->plain = plain;
    return n;
}

/* A copy of a scalar, with its location, flags and text. */
static struct sp_node *fes_copy(const struct sp_node *src)
{
    struct sp_node *n = fes_node(SP_NODE_SCALAR, src);
    n->str = sp_xstrndup(src->str, src->len);
    n->len = src->len;
    n->plain = src->plain;
    n->substituted = src->substituted;
    n->secret = src->secret;
    return n;
}

static void fes_put(struct sp_node *map, const struct sp_node *at, const char *key,
                    struct sp_node *value)
{
    map->pairs = sp_xrealloc(map->pairs, sizeof(*map->pairs) * (size_t)(map->n + 1));
    map->pairs[map->n].key = fes_scalar(at, key, true);
    map->pairs[map->n].value = value;
    map->n++;
}

static void fes_push(struct sp_node *seq, struct sp_node *item)
{
    seq->items = sp_xrealloc(seq->items, sizeof(*seq->items) * (size_t)(seq->n + 1));
    seq->items[seq->n++] = item;
}

/* ---- reading the resource ---- */

SP_PRINTF(3, 4)
static struct sp_diag_item *fes_err(struct fes *f, const struct sp_node *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct sp_diag_item *it =
        sp_diag_addv(f->d, false, at != NULL ? &at->loc : NULL, at != NULL ? at->span : 0, fmt, ap);
    va_end(ap);
    f->errors++;
    return it;
}

static bool fes_is_map(struct fes *f, const struct sp_node *n, const char *path)
{
    if (n != NULL && n->kind == SP_NODE_MAP) {
        return true;
    }
    fes_err(f, n, "%s must be a mapping, not %s", path, sp_node_kind_name(n));
    return false;
}

/* Every key of map must be in keys (NULL-terminated). */
static void fes_known_keys(struct fes *f, const struct sp_node *map, const char *path,
                           const char *const *keys)
{
    for (int i = 0; i < map->n; i++) {
        const struct sp_node *k = map->pairs[i].key;
        bool known = false;
        for (const char *const *p = keys; *p != NULL && !known; p++) {
            known = strcmp(k->str, *p) == 0;
        }
        if (known) {
            continue;
        }
        struct sp_diag_item *it = fes_err(f, k, "%s: unknown field \"%s\"", path, k->str);
        struct sp_buf b;
        sp_buf_init(&b);
        for (const char *const *p = keys; *p != NULL; p++) {
            sp_buf_printf(&b, "%s%s", p == keys ? "" : ", ", *p);
        }
        sp_diag_hint(it,
                     "fields of %s that siphon knows: %s; siphon stops rather than ignore a field "
                     "it cannot honour",
                     path, b.data);
        sp_buf_fini(&b);
    }
}

/*
 * The scalar under key in map: NULL when absent (an error when required) or
 * not a non-empty scalar (an error).
 */
static const struct sp_node *fes_get(struct fes *f, const struct sp_node *map, const char *key,
                                     const char *path, bool required)
{
    const struct sp_node *v = sp_node_get(map, key);
    if (v == NULL || sp_node_is_null(v)) {
        if (required) {
            struct sp_diag_item *it =
                fes_err(f, v != NULL ? v : map, "%s.%s is required", path, key);
            sp_diag_hint(it, "add %s: to %s", key, path);
        }
        return NULL;
    }
    if (v->kind != SP_NODE_SCALAR) {
        fes_err(f, v, "%s.%s must be a string, not %s", path, key, sp_node_kind_name(v));
        return NULL;
    }
    if (v->len == 0) {
        fes_err(f, v, "%s.%s is empty", path, key);
        return NULL;
    }
    return v;
}

/*
 * The mapping under key in parent, its path written to path: NULL (after an
 * error) when it is missing or not a mapping. Its keys are checked.
 */
static const struct sp_node *fes_section(struct fes *f, const struct sp_node *parent,
                                         const char *key, const char *parent_path, char *path,
                                         size_t pathsz, const char *const *keys)
{
    snprintf(path, pathsz, "%s.%s", parent_path, key);
    const struct sp_node *n = sp_node_get(parent, key);
    if (n == NULL) {
        fes_err(f, parent, "%s is required", path);
        return NULL;
    }
    if (!fes_is_map(f, n, path)) {
        return NULL;
    }
    fes_known_keys(f, n, path, keys);
    return n;
}

/* ---- jdbcUrl -> libpq connection string ---- */

static void fes_conn_put(struct sp_buf *b, const char *key, const char *value, size_t len)
{
    sp_buf_printf(b, "%s%s='", b->len > 0 ? " " : "", key);
    for (size_t i = 0; i < len; i++) {
        if (value[i] == '\'' || value[i] == '\\') {
            sp_buf_putc(b, '\\');
        }
        sp_buf_putc(b, value[i]);
    }
    sp_buf_putc(b, '\'');
}

static int fes_hex(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes s[0..n) into a new string; NULL on a bad escape. */
static char *fes_pct_decode(const char *s, size_t n)
{
    char *out = sp_xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? fes_hex(s[i + 1]) : -1;
            int lo = i + 2 < n ? fes_hex(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* pgjdbc parameters siphon takes over, and the libpq keyword each becomes. */
static const struct {
    const char *jdbc;
    const char *libpq;
} fes_jdbc_same[] = {
    {"user", "user"},
    {"password", "password"},
    {"sslmode", "sslmode"},
    {"sslrootcert", "sslrootcert"},
    {"sslcert", "sslcert"},
    {"sslkey", "sslkey"},
    {"sslpassword", "sslpassword"},
    {"connectTimeout", "connect_timeout"},
    {"loginTimeout", "connect_timeout"},
    {"ApplicationName", "application_name"},
    {"applicationName", "application_name"},
    {"options", "options"},
};

/* pgjdbc parameters that tune the JDBC driver only: accepted with a warning. */
static const char *const fes_jdbc_driver_only[] = {
    "socketTimeout",
    "prepareThreshold",
    "reWriteBatchedInserts",
    "stringtype",
    "binaryTransfer",
    "preferQueryMode",
    "assumeMinServerVersion",
    "defaultRowFetchSize",
    "currentSchema",
    "cancelSignalTimeout",
    "readOnly",
    "logUnclosedConnections",
};

struct fes_conn {
    struct sp_buf s;
    bool have_ssl;    /* sslmode set */
    bool ssl_true;    /* ssl=true seen */
    bool secret_auth; /* user and password come from databaseAuthentication */
    bool have_timeout;
};

static void fes_jdbc_param(struct fes *f, const struct sp_node *at, struct fes_conn *c,
                           const char *key, const char *value)
{
    for (size_t i = 0; i < SP_ARRAY_LEN(fes_jdbc_same); i++) {
        if (strcmp(key, fes_jdbc_same[i].jdbc) != 0) {
            continue;
        }
        const char *kw = fes_jdbc_same[i].libpq;
        if (strcmp(kw, "sslmode") == 0) {
            static const char *const modes[] = {"disable", "allow",     "prefer",
                                                "require", "verify-ca", "verify-full"};
            bool ok = false;
            for (size_t m = 0; m < SP_ARRAY_LEN(modes); m++) {
                ok = ok || strcmp(value, modes[m]) == 0;
            }
            if (!ok) {
                struct sp_diag_item *it =
                    fes_err(f, at, "jdbcUrl: sslmode \"%s\" is not a PostgreSQL sslmode", value);
                sp_diag_hint(it, "use disable, allow, prefer, require, verify-ca or verify-full");
                return;
            }
            c->have_ssl = true;
        }
        if (strcmp(kw, "connect_timeout") == 0) {
            if (c->have_timeout) {
                return; /* connectTimeout and loginTimeout: the first one given */
            }
            c->have_timeout = true;
        }
        if (c->secret_auth && (strcmp(kw, "user") == 0 || strcmp(kw, "password") == 0)) {
            return; /* the secret's */
        }
        fes_conn_put(&c->s, kw, value, strlen(value));
        return;
    }
    if (strcmp(key, "ssl") == 0) {
        if (strcmp(value, "true") == 0) {
            c->ssl_true = true;
        } else if (strcmp(value, "false") != 0) {
            fes_err(f, at, "jdbcUrl: ssl must be true or false, not \"%s\"", value);
        }
        return;
    }
    if (strcmp(key, "tcpKeepAlive") == 0) {
        fes_conn_put(&c->s, "keepalives", strcmp(value, "false") == 0 ? "0" : "1", 1);
        return;
    }
    if (strcmp(key, "targetServerType") == 0) {
        if (strcmp(value, "primary") == 0 || strcmp(value, "master") == 0) {
            fes_conn_put(&c->s, "target_session_attrs", "read-write", 10);
        } else if (strcmp(value, "any") == 0) {
            fes_conn_put(&c->s, "target_session_attrs", "any", 3);
        } else {
            struct sp_diag_item *it =
                fes_err(f, at, "jdbcUrl: targetServerType \"%s\" cannot be honoured", value);
            sp_diag_hint(it, "logical replication reads from the primary: use primary or any");
        }
        return;
    }
    for (size_t i = 0; i < SP_ARRAY_LEN(fes_jdbc_driver_only); i++) {
        if (strcmp(key, fes_jdbc_driver_only[i]) == 0) {
            sp_diag_warn(f->d, &at->loc, at->span,
                         "jdbcUrl: parameter %s tunes the JDBC driver and has no effect in siphon",
                         key);
            return;
        }
    }
    struct sp_diag_item *it = fes_err(f, at, "jdbcUrl: parameter \"%s\" is not supported", key);
    sp_diag_hint(it, "supported: user, password, ssl, sslmode, sslrootcert, sslcert, sslkey, "
                     "sslpassword, connectTimeout, loginTimeout, ApplicationName, options, "
                     "tcpKeepAlive, targetServerType");
}

/*
 * jdbc:postgresql:[//host[:port][,host[:port]...]/][database][?k=v&...]
 * as a libpq key=value string. NULL after an error.
 */
static char *fes_jdbc(struct fes *f, const struct sp_node *url, bool secret_auth, char **where)
{
    static const char prefix[] = "jdbc:postgresql:";
    const char *s = url->str;
    if (strncmp(s, prefix, sizeof(prefix) - 1) != 0) {
        struct sp_diag_item *it = fes_err(f, url, "jdbcUrl must start with \"jdbc:postgresql:\"");
        sp_diag_hint(it, "e.g. jdbc:postgresql://db.example.org:5432/orders?sslmode=require");
        return NULL;
    }
    s += sizeof(prefix) - 1;
    struct fes_conn c = {.secret_auth = secret_auth};
    sp_buf_init(&c.s);
    struct sp_buf at;
    sp_buf_init(&at);
    int before = f->errors;
    const char *q = strchr(s, '?');
    const char *end = q != NULL ? q : s + strlen(s);
    const char *db = s;
    if (strncmp(s, "//", 2) == 0) {
        const char *hp = s + 2;
        const char *slash = memchr(hp, '/', (size_t)(end - hp));
        const char *hend = slash != NULL ? slash : end;
        db = slash != NULL ? slash + 1 : end;
        struct sp_buf hosts;
        struct sp_buf ports;
        sp_buf_init(&hosts);
        sp_buf_init(&ports);
        bool any_port = false;
        const char *p = hp;
        while (p < hend) {
            const char *comma = memchr(p, ',', (size_t)(hend - p));
            const char *e = comma != NULL ? comma : hend;
            const char *h = p;
            const char *he;
            const char *port = NULL;
            if (*h == '[') { /* [IPv6]:port */
                const char *rb = memchr(h, ']', (size_t)(e - h));
                if (rb == NULL) {
                    fes_err(f, url, "jdbcUrl: \"[\" without \"]\" in the host list");
                    break;
                }
                h++;
                he = rb;
                if (rb + 1 < e && rb[1] == ':') {
                    port = rb + 2;
                }
            } else {
                const char *colon = memchr(h, ':', (size_t)(e - h));
                he = colon != NULL ? colon : e;
                port = colon != NULL ? colon + 1 : NULL;
            }
            if (he == h) {
                fes_err(f, url, "jdbcUrl: empty host name in \"%.*s\"", (int)(hend - hp), hp);
                break;
            }
            if (port != NULL) {
                for (const char *d = port; d < e; d++) {
                    if (!isdigit((unsigned char)*d)) {
                        fes_err(f, url, "jdbcUrl: port \"%.*s\" is not a number", (int)(e - port),
                                port);
                        break;
                    }
                }
                any_port = true;
            }
            sp_buf_printf(&hosts, "%s%.*s", hosts.len > 0 ? "," : "", (int)(he - h), h);
            if (port != NULL && port < e) {
                sp_buf_printf(&ports, "%s%.*s", p == hp ? "" : ",", (int)(e - port), port);
            } else {
                sp_buf_printf(&ports, "%s5432", p == hp ? "" : ",");
            }
            p = comma != NULL ? comma + 1 : hend;
        }
        if (hosts.len > 0) {
            fes_conn_put(&c.s, "host", hosts.data, hosts.len);
            sp_buf_printf(&at, "%s:%s", hosts.data, ports.len > 0 ? ports.data : "");
        }
        if (any_port && ports.len > 0) {
            fes_conn_put(&c.s, "port", ports.data, ports.len);
        }
        sp_buf_fini(&hosts);
        sp_buf_fini(&ports);
    } else if (*s == '/') {
        db = s + 1;
    }
    if (db < end) {
        char *name = fes_pct_decode(db, (size_t)(end - db));
        if (name == NULL) {
            fes_err(f, url, "jdbcUrl: bad %%-escape in the database name");
        } else {
            fes_conn_put(&c.s, "dbname", name, strlen(name));
            sp_buf_printf(&at, "/%s", name);
            free(name);
        }
    }
    const char *p = q != NULL ? q + 1 : end;
    while (*p != '\0') {
        const char *amp = strchr(p, '&');
        const char *e = amp != NULL ? amp : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(e - p));
        if (e > p) {
            char *key = fes_pct_decode(p, (size_t)((eq != NULL ? eq : e) - p));
            char *value = eq != NULL ? fes_pct_decode(eq + 1, (size_t)(e - eq - 1)) : NULL;
            if (key == NULL || (eq != NULL && value == NULL)) {
                fes_err(f, url, "jdbcUrl: bad %%-escape in \"%.*s\"", (int)(e - p), p);
            } else if (value == NULL) {
                fes_err(f, url, "jdbcUrl: parameter \"%s\" has no value", key);
            } else {
                fes_jdbc_param(f, url, &c, key, value);
            }
            free(key);
            free(value);
        }
        p = amp != NULL ? amp + 1 : e;
    }
    if (c.ssl_true && !c.have_ssl) {
        fes_conn_put(&c.s, "sslmode", "require", 7);
    }
    if (f->errors > before) {
        sp_buf_fini(&c.s);
        sp_buf_fini(&at);
        return NULL;
    }
    sp_buf_putc(&at, '\0');
    *where = sp_buf_steal(&at);
    return sp_buf_steal(&c.s);
}

/* ---- secrets (databaseAuthentication) ---- */

static const char *fes_env(struct fes *f, const char *name)
{
    return f->lookup != NULL ? f->lookup(name) : getenv(name);
}

/*
 * The value of key in the secret named name: the environment variable
 * SIPHON_SECRET_<NAME>_<KEY> (upper case, other characters as _), else the
 * file <SIPHON_SECRETS_DIR>/<name>/<key> (default /var/run/secrets/siphon),
 * as Kubernetes mounts a secret. NULL after an error at at.
 */
static char *fes_secret(struct fes *f, const struct sp_node *at, const char *name, const char *key)
{
    struct sp_buf var;
    sp_buf_init(&var);
    sp_buf_puts(&var, "SIPHON_SECRET_");
    for (const char *p = name; *p != '\0'; p++) {
        sp_buf_putc(&var, isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_');
    }
    sp_buf_putc(&var, '_');
    for (const char *p = key; *p != '\0'; p++) {
        sp_buf_putc(&var, isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_');
    }
    const char *v = fes_env(f, var.data);
    if (v != NULL) {
        sp_buf_fini(&var);
        return sp_xstrdup(v);
    }
    const char *dir = fes_env(f, "SIPHON_SECRETS_DIR");
    if (dir == NULL || dir[0] == '\0') {
        dir = "/var/run/secrets/siphon";
    }
    char *path = sp_xasprintf("%s/%s/%s", dir, name, key);
    char *out = NULL;
    struct sp_buf b;
    struct sp_err rerr;
    sp_buf_init(&b);
    sp_err_clear(&rerr);
    if (strchr(name, '/') != NULL || strchr(key, '/') != NULL ||
        sp_env_read_file(path, NULL, &b, &rerr) != 0) {
        struct sp_diag_item *it =
            fes_err(f, at, "secret \"%s\": key \"%s\" is neither in the environment nor in a file",
                    name, key);
        sp_diag_hint(it, "set %s, or write the value to %s (SIPHON_SECRETS_DIR sets the directory)",
                     var.data, path);
        if (rerr.msg[0] != '\0' && access(path, F_OK) == 0) {
            sp_diag_hint(it, "%s", rerr.msg); /* there, but not usable (too large, NUL bytes) */
        }
        sp_buf_fini(&b);
    } else {
        sp_buf_putc(&b, '\0');
        out = sp_buf_steal(&b);
    }
    free(path);
    sp_buf_fini(&var);
    return out;
}

/* ---- one event stream ---- */

static const char *const fes_resource_keys[] = {"apiVersion", "kind",   "metadata",
                                                "spec",       "status", NULL};
static const char *const fes_spec_keys[] = {"applicationId", "eventStreams", NULL};
static const char *const fes_es_keys[] = {"source", "flow", "sink", "recovery", NULL};
static const char *const fes_source_keys[] = {"type",   "schema",         "table",
                                              "filter", "jdbcConnection", NULL};
static const char *const fes_table_keys[] = {"name", "idColumn", NULL};
static const char *const fes_conn_keys[] = {
    "jdbcUrl", "slotName", "publicationName", "pluginType", "databaseAuthentication", NULL};
static const char *const fes_auth_keys[] = {"type", "name", "userKey", "passwordKey", NULL};
static const char *const fes_flow_keys[] = {"type", "payloadColumn", NULL};
static const char *const fes_sink_keys[] = {"type", "eventType", "maxBatchSize", "queueName", NULL};
static const char *const fes_recovery_keys[] = {"type", "sink", NULL};

/* The source for conninfo and slot: an existing one, or a new one. */
static const char *fes_source(struct fes *f, const struct sp_node *conn_at,
                              const struct sp_node *url, const char *conninfo, const char *where,
                              const struct sp_node *slot, const struct sp_node *publication)
{
    for (int i = 0; i < f->nsrcs; i++) {
        struct fes_src *s = &f->srcs[i];
        if (strcmp(s->where, where) != 0 || strcmp(s->slot, slot->str) != 0) {
            continue;
        }
        if (strcmp(s->conninfo, conninfo) != 0) {
            struct sp_diag_item *it = fes_err(
                f, url, "slot \"%s\" of this database is used with two different connections",
                slot->str);
            sp_diag_hint(it,
                         "one slot is read by one connection: give every event stream of "
                         "slot \"%s\" the same jdbcUrl and databaseAuthentication",
                         slot->str);
            return s->name;
        }
        const char *pub = publication != NULL ? publication->str : NULL;
        if ((pub == NULL) != (s->publication == NULL) ||
            (pub != NULL && strcmp(pub, s->publication) != 0)) {
            struct sp_diag_item *it =
                fes_err(f, publication != NULL ? publication : slot,
                        "slot \"%s\" is used with two publications (\"%s\" and \"%s\")", slot->str,
                        s->publication != NULL ? s->publication : "(default)",
                        pub != NULL ? pub : "(default)");
            sp_diag_hint(it, "one slot streams one publication: give every event stream of this "
                             "slot the same publicationName");
        }
        return s->name;
    }
    /* The slot's name, unless another connection already has a source of that name. */
    char *name = sp_xstrdup(slot->str);
    for (int n = 2;; n++) {
        bool taken = false;
        for (int i = 0; i < f->nsrcs && !taken; i++) {
            taken = strcmp(f->srcs[i].name, name) == 0;
        }
        if (!taken) {
            break;
        }
        free(name);
        name = sp_xasprintf("%s-%d", slot->str, n);
    }
    f->srcs = sp_xrealloc(f->srcs, sizeof(*f->srcs) * (size_t)(f->nsrcs + 1));
    struct fes_src *s = &f->srcs[f->nsrcs++];
    s->name = name;
    s->where = sp_xstrdup(where);
    s->conninfo = sp_xstrdup(conninfo);
    s->slot = sp_xstrdup(slot->str);
    s->publication = publication != NULL ? sp_xstrdup(publication->str) : NULL;

    struct sp_node *src = fes_node(SP_NODE_MAP, conn_at);
    fes_put(src, conn_at, "type", fes_scalar(conn_at, "postgres", true));
    /*
     * Secret, so never printed. In the file it is the jdbcUrl, whose text is
     * hidden from diagnostics only when it holds a password itself.
     */
    struct sp_node *ci = fes_scalar(url, conninfo, false);
    ci->secret = true;
    if (strstr(url->str, "password=") == NULL) {
        ci->span = 0;
    }
    fes_put(src, conn_at, "connection", ci);
    fes_put(src, slot, "slot", fes_copy(slot));
    if (publication != NULL) {
        fes_put(src, publication, "publication", fes_copy(publication));
    }
    /* Outbox streams: rows written before the slot existed are not events. */
    fes_put(src, conn_at, "snapshot", fes_scalar(conn_at, "never", true));
    fes_put(f->sources, conn_at, name, src);
    return name;
}

/* The connection string of an event stream's jdbcConnection, credentials included. */
static char *fes_connection(struct fes *f, const struct sp_node *jc, const char *path, char **where)
{
    const struct sp_node *url = fes_get(f, jc, "jdbcUrl", path, true);
    if (url == NULL) {
        return NULL;
    }
    const struct sp_node *auth = sp_node_get(jc, "databaseAuthentication");
    bool secret_auth = auth != NULL && !sp_node_is_null(auth);
    char *conninfo = fes_jdbc(f, url, secret_auth, where);
    if (!secret_auth) {
        return conninfo;
    }
    char apath[256];
    snprintf(apath, sizeof(apath), "%s.databaseAuthentication", path);
    if (!fes_is_map(f, auth, apath)) {
        free(conninfo);
        return NULL;
    }
    fes_known_keys(f, auth, apath, fes_auth_keys);
    const struct sp_node *type = fes_get(f, auth, "type", apath, true);
    const struct sp_node *name = fes_get(f, auth, "name", apath, true);
    const struct sp_node *ukey = fes_get(f, auth, "userKey", apath, false);
    const struct sp_node *pkey = fes_get(f, auth, "passwordKey", apath, false);
    if (type != NULL && strcmp(type->str, "DatabaseAuthenticationSecret") != 0) {
        struct sp_diag_item *it =
            fes_err(f, type, "%s.type \"%s\" is not supported", apath, type->str);
        sp_diag_hint(it, "use DatabaseAuthenticationSecret (a secret read from the environment "
                         "or a file, docs/fes.md)");
        type = NULL;
    }
    if (conninfo == NULL || type == NULL || name == NULL) {
        free(conninfo);
        return NULL;
    }
    char *user =
        fes_secret(f, ukey != NULL ? ukey : name, name->str, ukey != NULL ? ukey->str : "username");
    char *password =
        fes_secret(f, pkey != NULL ? pkey : name, name->str, pkey != NULL ? pkey->str : "password");
    char *out = NULL;
    if (user != NULL && password != NULL) {
        struct sp_buf b;
        sp_buf_init(&b);
        sp_buf_puts(&b, conninfo);
        fes_conn_put(&b, "user", user, strlen(user));
        fes_conn_put(&b, "password", password, strlen(password));
        out = sp_buf_steal(&b);
    }
    free(conninfo);
    free(user);
    if (password != NULL) {
        memset(password, 0, strlen(password));
    }
    free(password);
    return out;
}

/*
 * A sink of the resource (the event stream's, or its recovery's) as a siphon
 * sink named name. dlq_of: for a recovery sink, the stream's own sink
 * mapping (whose event type names the default dead-letter event type).
 * Returns false after an error.
 */
static bool fes_sink(struct fes *f, const struct sp_node *sk, const char *path, const char *name,
                     const struct sp_node *default_event_type)
{
    if (!fes_is_map(f, sk, path)) {
        return false;
    }
    fes_known_keys(f, sk, path, fes_sink_keys);
    const struct sp_node *type = fes_get(f, sk, "type", path, true);
    if (type == NULL) {
        return false;
    }
    const struct sp_node *event_type = fes_get(f, sk, "eventType", path, false);
    const struct sp_node *max_batch = fes_get(f, sk, "maxBatchSize", path, false);
    const struct sp_node *queue = fes_get(f, sk, "queueName", path, false);
    struct sp_node *out = fes_node(SP_NODE_MAP, sk);
    bool ok = true;
    if (strcmp(type->str, "Nakadi") == 0) {
        if (queue != NULL) {
            const struct sp_node *k = sp_node_get_pair(sk, "queueName")->key;
            sp_diag_warn(f->d, &k->loc, k->span,
                         "%s: queueName is for SQS sinks; this Nakadi sink does not use it", path);
        }
        const char *url = fes_env(f, "SIPHON_NAKADI_URL");
        if (url == NULL || url[0] == '\0') {
            struct sp_diag_item *it =
                fes_err(f, type, "%s: a Nakadi sink needs SIPHON_NAKADI_URL", path);
            sp_diag_hint(it, "set SIPHON_NAKADI_URL to the Nakadi API's base URL, e.g. "
                             "https://nakadi.example.org (a resource does not carry it)");
            ok = false;
        }
        fes_put(out, type, "type", fes_scalar(type, "nakadi", true));
        if (ok) {
            fes_put(out, type, "url", fes_scalar(type, url, false));
        }
        if (event_type != NULL) {
            fes_put(out, event_type, "event_type", fes_copy(event_type));
        } else if (default_event_type != NULL) {
            char *dl = sp_xasprintf("%s-dead-letter-queue", default_event_type->str);
            fes_put(out, default_event_type, "event_type", fes_scalar(type, dl, false));
            free(dl);
        } else {
            fes_get(f, sk, "eventType", path, true);
            ok = false;
        }
        if (max_batch != NULL) {
            fes_put(out, max_batch, "max_batch_size", fes_copy(max_batch));
        }
        const char *token_file = fes_env(f, "SIPHON_NAKADI_TOKEN_FILE");
        const char *token = fes_env(f, "SIPHON_NAKADI_TOKEN");
        if (token_file != NULL && token_file[0] != '\0') {
            fes_put(out, type, "token_file", fes_scalar(type, token_file, false));
        } else if (token != NULL) {
            fes_put(out, type, "token_env", fes_scalar(type, "SIPHON_NAKADI_TOKEN", false));
        }
        const char *ca = fes_env(f, "SIPHON_NAKADI_CA_FILE");
        if (ca != NULL && ca[0] != '\0') {
            fes_put(out, type, "ca_file", fes_scalar(type, ca, false));
        }
    } else if (strcmp(type->str, "SqsStandard") == 0 || strcmp(type->str, "SqsFifo") == 0) {
        if (event_type != NULL) {
            const struct sp_node *k = sp_node_get_pair(sk, "eventType")->key;
            sp_diag_warn(f->d, &k->loc, k->span,
                         "%s: eventType is for Nakadi sinks; this SQS sink does not use it", path);
        }
        if (max_batch != NULL) {
            const struct sp_node *k = sp_node_get_pair(sk, "maxBatchSize")->key;
            sp_diag_warn(f->d, &k->loc, k->span,
                         "%s: maxBatchSize is for Nakadi sinks; SQS takes at most 10 messages "
                         "per SendMessageBatch",
                         path);
        }
        if (queue == NULL) {
            fes_get(f, sk, "queueName", path, true);
            ok = false;
        }
        fes_put(out, type, "type", fes_scalar(type, "sqs", true));
        if (queue != NULL) {
            fes_put(out, queue, "queue", fes_copy(queue));
        }
        if (strcmp(type->str, "SqsFifo") == 0) {
            fes_put(out, type, "fifo", fes_scalar(type, "true", true));
        }
    } else {
        struct sp_diag_item *it =
            fes_err(f, type, "%s.type \"%s\" is not a sink siphon has", path, type->str);
        sp_diag_hint(it, "use Nakadi, SqsStandard or SqsFifo; for other sinks write a siphon "
                         "configuration (docs/config.md)");
        ok = false;
    }
    if (!ok) {
        sp_node_free(out);
        return false;
    }
    fes_put(f->sinks, sk, name, out);
    return true;
}

static void fes_event_stream(struct fes *f, const struct sp_node *es, const char *res_name, int ri,
                             int si)
{
    char path[96];
    snprintf(path, sizeof(path), "spec.eventStreams[%d]", si);
    if (!fes_is_map(f, es, path)) {
        return;
    }
    fes_known_keys(f, es, path, fes_es_keys);
    int before = f->errors;

    /* source */
    char spath[128];
    const struct sp_node *source =
        fes_section(f, es, "source", path, spath, sizeof(spath), fes_source_keys);
    if (source == NULL) {
        return;
    }
    const struct sp_node *stype = fes_get(f, source, "type", spath, true);
    if (stype != NULL && strcmp(stype->str, "PostgresLogicalReplication") != 0) {
        struct sp_diag_item *it =
            fes_err(f, stype, "%s.type \"%s\" is not supported", spath, stype->str);
        sp_diag_hint(it, "siphon reads PostgreSQL: use PostgresLogicalReplication");
    }
    const struct sp_node *schema = fes_get(f, source, "schema", spath, false);
    char tpath[160];
    const struct sp_node *table =
        fes_section(f, source, "table", spath, tpath, sizeof(tpath), fes_table_keys);
    const struct sp_node *tname = NULL;
    const struct sp_node *id_column = NULL;
    if (table != NULL) {
        tname = fes_get(f, table, "name", tpath, true);
        id_column = fes_get(f, table, "idColumn", tpath, false);
    }
    const struct sp_node *filter = sp_node_get(source, "filter");
    if (filter != NULL && sp_node_is_null(filter)) {
        filter = NULL;
    }
    if (filter != NULL && filter->kind != SP_NODE_SCALAR) {
        fes_err(f, filter, "%s.filter must be a string", spath);
        filter = NULL;
    }
    char cpath[160];
    const struct sp_node *jc =
        fes_section(f, source, "jdbcConnection", spath, cpath, sizeof(cpath), fes_conn_keys);
    char *conninfo = NULL;
    char *where = NULL;
    const struct sp_node *slot = NULL;
    const struct sp_node *publication = NULL;
    if (jc != NULL) {
        slot = fes_get(f, jc, "slotName", cpath, true);
        publication = fes_get(f, jc, "publicationName", cpath, false);
        const struct sp_node *plugin = fes_get(f, jc, "pluginType", cpath, false);
        if (plugin != NULL && strcmp(plugin->str, "pgoutput") != 0) {
            struct sp_diag_item *it =
                fes_err(f, plugin, "%s.pluginType \"%s\" is not supported", cpath, plugin->str);
            sp_diag_hint(it, "siphon decodes pgoutput: remove pluginType or set it to pgoutput");
        }
        conninfo = fes_connection(f, jc, cpath, &where);
    }

    /* flow */
    char fpath[128];
    snprintf(fpath, sizeof(fpath), "%s.flow", path);
    const struct sp_node *flow = sp_node_get(es, "flow");
    const struct sp_node *ftype = NULL;
    const struct sp_node *payload = NULL;
    if (flow == NULL) {
        struct sp_diag_item *it = fes_err(f, es, "%s.flow is required", path);
        sp_diag_hint(it, "PostgresWalToGenericNakadiEvent or PostgresWalToNakadiDataEvent");
    } else if (fes_is_map(f, flow, fpath)) {
        fes_known_keys(f, flow, fpath, fes_flow_keys);
        ftype = fes_get(f, flow, "type", fpath, true);
        payload = fes_get(f, flow, "payloadColumn", fpath, false);
        if (ftype != NULL && strcmp(ftype->str, "PostgresWalToGenericNakadiEvent") != 0 &&
            strcmp(ftype->str, "PostgresWalToNakadiDataEvent") != 0) {
            struct sp_diag_item *it =
                fes_err(f, ftype, "%s.type \"%s\" is not supported", fpath, ftype->str);
            if (strcmp(ftype->str, "AwsLambdaConversion") == 0) {
                sp_diag_hint(it, "write a siphon configuration with a script flow instead "
                                 "(docs/flow-script.md)");
            } else {
                sp_diag_hint(it, "use PostgresWalToGenericNakadiEvent or "
                                 "PostgresWalToNakadiDataEvent");
            }
            ftype = NULL;
        } else if (ftype != NULL && payload != NULL &&
                   strcmp(ftype->str, "PostgresWalToGenericNakadiEvent") != 0) {
            fes_err(f, sp_node_get_pair(flow, "payloadColumn")->key,
                    "%s.payloadColumn is only for PostgresWalToGenericNakadiEvent", fpath);
        }
    }

    /* names */
    struct sp_buf qtable;
    sp_buf_init(&qtable);
    if (tname != NULL) {
        sp_cfg_put_ident(&qtable, schema != NULL ? schema->str : "public");
        sp_buf_putc(&qtable, '.');
        sp_cfg_put_ident(&qtable, tname->str);
    }
    char *stream_name = sp_xasprintf("%s.%s.%s", res_name, schema != NULL ? schema->str : "public",
                                     tname != NULL ? tname->str : "?");
    for (int i = 0; i < f->streams->n; i++) {
        const struct sp_node *nm = sp_node_get(f->streams->items[i], "name");
        if (nm != NULL && strcmp(nm->str, stream_name) == 0) {
            char *again = sp_xasprintf("%s.%d.%d", stream_name, ri, si);
            free(stream_name);
            stream_name = again;
            break;
        }
    }

    /* sink and recovery */
    char kpath[128];
    snprintf(kpath, sizeof(kpath), "%s.sink", path);
    const struct sp_node *sink = sp_node_get(es, "sink");
    char *sink_name = sp_xasprintf("%s.sink", stream_name);
    char *dl_name = sp_xasprintf("%s.dead-letter", stream_name);
    bool sink_ok = false;
    if (sink == NULL) {
        fes_err(f, es, "%s.sink is required", path);
    } else {
        sink_ok = fes_sink(f, sink, kpath, sink_name, NULL);
    }
    const struct sp_node *recovery = sp_node_get(es, "recovery");
    const char *policy = "fail";
    const struct sp_node *rtype = NULL;
    bool dl_ok = false;
    if (recovery != NULL && !sp_node_is_null(recovery)) {
        char rpath[128];
        snprintf(rpath, sizeof(rpath), "%s.recovery", path);
        if (fes_is_map(f, recovery, rpath)) {
            fes_known_keys(f, recovery, rpath, fes_recovery_keys);
            rtype = fes_get(f, recovery, "type", rpath, true);
            const struct sp_node *rsink = sp_node_get(recovery, "sink");
            if (rsink != NULL && sp_node_is_null(rsink)) {
                rsink = NULL;
            }
            if (rtype == NULL) {
            } else if (strcmp(rtype->str, "DeadLetter") == 0) {
                policy = "dead_letter";
                char dpath[160];
                snprintf(dpath, sizeof(dpath), "%s.sink", rpath);
                const struct sp_node *main_type =
                    sink != NULL && sink->kind == SP_NODE_MAP ? sp_node_get(sink, "type") : NULL;
                const struct sp_node *main_et = sink != NULL && sink->kind == SP_NODE_MAP
                                                    ? sp_node_get(sink, "eventType")
                                                    : NULL;
                if (rsink != NULL) {
                    dl_ok = fes_sink(f, rsink, dpath, dl_name,
                                     main_et != NULL && main_et->kind == SP_NODE_SCALAR ? main_et
                                                                                        : NULL);
                } else if (main_type != NULL && main_type->kind == SP_NODE_SCALAR &&
                           strcmp(main_type->str, "Nakadi") == 0 && main_et != NULL &&
                           main_et->kind == SP_NODE_SCALAR) {
                    /* The operator's default: <eventType>-dead-letter-queue on Nakadi. */
                    struct sp_node *dl = fes_node(SP_NODE_MAP, rtype);
                    fes_put(dl, rtype, "type", fes_scalar(main_type, "Nakadi", true));
                    dl_ok = fes_sink(f, dl, dpath, dl_name, main_et);
                    sp_node_free(dl);
                } else if (sink_ok) {
                    struct sp_diag_item *it =
                        fes_err(f, rtype, "%s: DeadLetter needs a sink here", rpath);
                    sp_diag_hint(it, "add recovery.sink (a Nakadi event type or an SQS queue); "
                                     "only Nakadi sinks have a default dead-letter event type");
                }
            } else if (strcmp(rtype->str, "Ignore") == 0) {
                policy = "ignore";
            } else if (strcmp(rtype->str, "None") == 0) {
                policy = "fail";
            } else {
                struct sp_diag_item *it =
                    fes_err(f, rtype, "%s.type \"%s\" is not a recovery type", rpath, rtype->str);
                sp_diag_hint(it, "use DeadLetter, Ignore or None");
            }
            if (rsink != NULL && rtype != NULL && strcmp(rtype->str, "DeadLetter") != 0) {
                fes_err(f, sp_node_get_pair(recovery, "sink")->key,
                        "%s.sink is only for DeadLetter", rpath);
            }
        }
    }

    if (f->errors > before || conninfo == NULL || slot == NULL || tname == NULL || ftype == NULL ||
        !sink_ok) {
        goto out;
    }
    const char *src_name =
        fes_source(f, jc, sp_node_get(jc, "jdbcUrl"), conninfo, where, slot, publication);

    struct sp_node *st = fes_node(SP_NODE_MAP, es);
    fes_put(st, es, "name", fes_scalar(es, stream_name, false));
    fes_put(st, es, "source", fes_scalar(jc, src_name, false));
    struct sp_node *tables = fes_node(SP_NODE_SEQ, tname);
    fes_push(tables, fes_scalar(tname, qtable.data, false));
    fes_put(st, tname, "tables", tables);
    fes_put(st, sink, "format", fes_scalar(sink, "nakadi", true));
    fes_put(st, sink, "sink", fes_scalar(sink, sink_name, false));
    /* Only the outbox table's rows are events: no logical decoding messages. */
    fes_put(st, es, "messages", fes_scalar(es, "false", true));
    struct sp_node *flows = fes_node(SP_NODE_SEQ, flow);
    if (filter != NULL) {
        struct sp_node *item = fes_node(SP_NODE_MAP, filter);
        fes_put(item, filter, "filter", fes_copy(filter));
        fes_push(flows, item);
    }
    struct sp_node *ob = fes_node(SP_NODE_MAP, ftype);
    bool generic = strcmp(ftype->str, "PostgresWalToGenericNakadiEvent") == 0;
    fes_put(ob, ftype, "kind", fes_scalar(ftype, generic ? "fes_generic" : "fes_data", true));
    fes_put(ob, tname, "table", fes_scalar(tname, qtable.data, false));
    if (generic) {
        fes_put(ob, payload != NULL ? payload : ftype, "payload_column",
                payload != NULL ? fes_copy(payload) : fes_scalar(ftype, "payload", true));
    }
    if (id_column != NULL) {
        fes_put(ob, id_column, "id_column", fes_copy(id_column));
    }
    struct sp_node *item = fes_node(SP_NODE_MAP, ftype);
    fes_put(item, ftype, "outbox", ob);
    fes_push(flows, item);
    fes_put(st, flow, "flows", flows);
    struct sp_node *rec = fes_node(SP_NODE_MAP, rtype != NULL ? rtype : es);
    fes_put(rec, rtype, "type", fes_scalar(rtype, policy, true));
    if (dl_ok) {
        fes_put(rec, rtype, "sink", fes_scalar(rtype, dl_name, false));
    }
    fes_put(st, rtype != NULL ? rtype : es, "recovery", rec);
    fes_push(f->streams, st);

out:
    free(conninfo);
    free(where);
    free(stream_name);
    free(sink_name);
    free(dl_name);
    sp_buf_fini(&qtable);
}

/* ---- resources ---- */

static bool fes_is_resource(const struct sp_node *n)
{
    const struct sp_node *kind = sp_node_get(n, "kind");
    return kind != NULL && kind->kind == SP_NODE_SCALAR &&
           strcmp(kind->str, "FabricEventStream") == 0;
}

bool sp_fes_detect(const struct sp_node *root)
{
    if (root == NULL) {
        return false;
    }
    if (root->kind == SP_NODE_MAP) {
        if (fes_is_resource(root)) {
            return true;
        }
        const struct sp_node *kind = sp_node_get(root, "kind");
        const struct sp_node *items = sp_node_get(root, "items");
        if (kind != NULL && kind->kind == SP_NODE_SCALAR && strcmp(kind->str, "List") == 0 &&
            items != NULL && items->kind == SP_NODE_SEQ && items->n > 0) {
            return fes_is_resource(items->items[0]);
        }
        return false;
    }
    return root->kind == SP_NODE_SEQ && root->n > 0 && fes_is_resource(root->items[0]);
}

static void fes_resource(struct fes *f, const struct sp_node *res, int ri)
{
    char path[64];
    snprintf(path, sizeof(path), "resource %d", ri + 1);
    if (!fes_is_map(f, res, path)) {
        return;
    }
    if (!fes_is_resource(res)) {
        const struct sp_node *kind = sp_node_get(res, "kind");
        struct sp_diag_item *it =
            fes_err(f, kind != NULL ? kind : res, "%s is not a FabricEventStream", path);
        sp_diag_hint(it, "a file holds either FabricEventStream resources or a siphon "
                         "configuration, not both");
        return;
    }
    fes_known_keys(f, res, "a FabricEventStream", fes_resource_keys);
    const struct sp_node *api = fes_get(f, res, "apiVersion", "a FabricEventStream", true);
    if (api != NULL && strcmp(api->str, "zalando.org/v1") != 0) {
        struct sp_diag_item *it = fes_err(f, api, "apiVersion \"%s\" is not supported", api->str);
        sp_diag_hint(it, "siphon reads FabricEventStream resources of zalando.org/v1");
    }
    const struct sp_node *meta = sp_node_get(res, "metadata");
    const struct sp_node *name = NULL;
    if (meta == NULL) {
        fes_err(f, res, "metadata is required (metadata.name names the streams)");
    } else if (fes_is_map(f, meta, "metadata")) {
        /* Other metadata (namespace, labels, uid...) belongs to Kubernetes and is not used. */
        name = fes_get(f, meta, "name", "metadata", true);
    }
    const struct sp_node *spec = sp_node_get(res, "spec");
    if (spec == NULL) {
        fes_err(f, res, "spec is required");
        return;
    }
    if (!fes_is_map(f, spec, "spec")) {
        return;
    }
    fes_known_keys(f, spec, "spec", fes_spec_keys);
    fes_get(f, spec, "applicationId", "spec", true);
    const struct sp_node *streams = sp_node_get(spec, "eventStreams");
    if (streams == NULL || sp_node_is_null(streams)) {
        fes_err(f, streams != NULL ? streams : spec, "spec.eventStreams is required");
        return;
    }
    if (streams->kind != SP_NODE_SEQ || streams->n == 0) {
        fes_err(f, streams, "spec.eventStreams must be a non-empty list");
        return;
    }
    if (name == NULL) {
        return;
    }
    for (int i = 0; i < streams->n; i++) {
        fes_event_stream(f, streams->items[i], name->str, ri, i);
    }
}

struct sp_node *sp_fes_translate(const struct sp_node *root, sp_env_fn lookup, struct sp_diag *d)
{
    struct fes f = {.d = d, .lookup = lookup};
    f.sources = fes_node(SP_NODE_MAP, root);
    f.sinks = fes_node(SP_NODE_MAP, root);
    f.streams = fes_node(SP_NODE_SEQ, root);
    if (root->kind == SP_NODE_SEQ) {
        for (int i = 0; i < root->n; i++) {
            fes_resource(&f, root->items[i], i);
        }
    } else if (fes_is_resource(root)) {
        fes_resource(&f, root, 0);
    } else {
        const struct sp_node *items = sp_node_get(root, "items");
        for (int i = 0; i < items->n; i++) {
            fes_resource(&f, items->items[i], i);
        }
    }
    struct sp_node *out = fes_node(SP_NODE_MAP, root);
    fes_put(out, root, "sources", f.sources);
    fes_put(out, root, "sinks", f.sinks);
    fes_put(out, root, "streams", f.streams);
    for (int i = 0; i < f.nsrcs; i++) {
        free(f.srcs[i].name);
        free(f.srcs[i].where);
        if (f.srcs[i].conninfo != NULL) {
            memset(f.srcs[i].conninfo, 0, strlen(f.srcs[i].conninfo));
        }
        free(f.srcs[i].conninfo);
        free(f.srcs[i].slot);
        free(f.srcs[i].publication);
    }
    free(f.srcs);
    if (f.errors > 0) {
        sp_node_free(out);
        return NULL;
    }
    return out;
}

/* ---- YAML out ---- */

static bool fes_plain_ok(const char *s, size_t len)
{
    if (len == 0) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '_' && c != '-' && c != '.' && c != '/') {
            return false;
        }
    }
    return true;
}

static void fes_yaml_scalar(const struct sp_node *n, struct sp_buf *out)
{
    if (n->secret) {
        sp_buf_puts(out, "\"****\"");
    } else if (n->plain && fes_plain_ok(n->str, n->len)) {
        sp_buf_append(out, n->str, n->len);
    } else {
        sp_buf_put_json_str(out, n->str, n->len);
    }
}

static void fes_yaml_indent(struct sp_buf *out, int indent)
{
    for (int i = 0; i < indent; i++) {
        sp_buf_putc(out, ' ');
    }
}

static void fes_yaml(const struct sp_node *n, int indent, bool inline_first, struct sp_buf *out);

/* After "key:" or "-": the value on the same line or the lines below. */
static void fes_yaml_value(const struct sp_node *v, int indent, bool in_seq, struct sp_buf *out)
{
    if (v->kind == SP_NODE_SCALAR) {
        sp_buf_putc(out, ' ');
        fes_yaml_scalar(v, out);
        sp_buf_putc(out, '\n');
    } else if (v->n == 0) {
        sp_buf_puts(out, v->kind == SP_NODE_MAP ? " {}\n" : " []\n");
    } else if (in_seq && v->kind == SP_NODE_MAP) {
        sp_buf_putc(out, ' ');
        fes_yaml(v, indent, true, out);
    } else {
        sp_buf_putc(out, '\n');
        fes_yaml(v, indent, false, out);
    }
}

static void fes_yaml(const struct sp_node *n, int indent, bool inline_first, struct sp_buf *out)
{
    for (int i = 0; i < n->n; i++) {
        if (i > 0 || !inline_first) {
            fes_yaml_indent(out, indent);
        }
        if (n->kind == SP_NODE_MAP) {
            const struct sp_node *k = n->pairs[i].key;
            if (fes_plain_ok(k->str, k->len)) {
                sp_buf_append(out, k->str, k->len);
            } else {
                sp_buf_put_json_str(out, k->str, k->len);
            }
            sp_buf_putc(out, ':');
            fes_yaml_value(n->pairs[i].value, indent + 2, false, out);
        } else {
            sp_buf_putc(out, '-');
            fes_yaml_value(n->items[i], indent + 2, true, out);
        }
    }
}

void sp_node_write_yaml(const struct sp_node *node, struct sp_buf *out)
{
    if (node == NULL) {
        return;
    }
    if (node->kind == SP_NODE_SCALAR) {
        fes_yaml_scalar(node, out);
        sp_buf_putc(out, '\n');
        return;
    }
    fes_yaml(node, 0, false, out);
}
