// SPDX-License-Identifier: Apache-2.0
/*
 * Sink "redis": appends every event to a Redis stream (XADD) whose key comes
 * from a template ({source}, {schema}, {table}), optionally capped with
 * MAXLEN ~ N. One connection (hiredis, blocking with timeouts); a batch is
 * one pipelined MULTI, XADD..., EXEC round trip, so Redis applies it whole
 * or not at all, and it is acknowledged only after EXEC's reply.
 *
 * Failures: a lost or silent connection and error replies about the
 * server's state (LOADING, BUSY, READONLY, MASTERDOWN, OOM, ...) fail the
 * batch as retriable; the connection is dropped and made again, with a PING
 * answered before any data is sent, on the next submit. An error reply
 * about one command (WRONGTYPE, NOPERM on its key, ...) rejects that record
 * for good: the others are sent again without it when the error came while
 * queueing (it aborted the transaction), or are already applied when it
 * came from EXEC.
 *
 * What it does not do: deduplicate (XADD with automatic ids cannot; every
 * entry carries the event id for consumers), Redis Cluster, TLS.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "core/plugin.h"
#include "core/sinkconf.h"
#include "util/lsn.h"
#include "util/time.h"

#define REDIS_DEFAULT_HOST "127.0.0.1"
#define REDIS_NFIELDS      7 /* id op schema table lsn key value */
/* XADD key [MAXLEN ~ N] * and the field-value pairs */
#define REDIS_MAX_ARGS (2 + 3 + 1 + 2 * REDIS_NFIELDS)

struct redis_conf {
    struct sp_sink_batching batching;
    char *url;
    char *host;
    int64_t port;
    char *stream;
    int64_t max_len;
    char *username;
    char *password;
    int64_t db;
    int64_t connect_timeout_ms;
    int64_t command_timeout_ms;
};

static const struct sp_opt redis_opts[] = {
    SP_SINK_BATCH_OPTS(struct redis_conf, "1", "partition"),
    SP_OPT_STR("url", struct redis_conf, url, NULL, 0,
               "redis://[user[:password]@]host[:port][/db] (user and password percent-encoded); "
               "instead of host, port, username, password and db"),
    SP_OPT_STR("host", struct redis_conf, host, NULL, 0,
               "server host name or address, when url is not set (default 127.0.0.1)"),
    SP_OPT_INT("port", struct redis_conf, port, "6379", 1, 65535, "server port, with host"),
    SP_OPT_STR("stream", struct redis_conf, stream, "{source}.{schema}.{table}", 0,
               "stream key template: {source}, {schema} and {table} are replaced by the event's "
               "source name, schema and table (the prefix for logical decoding messages)"),
    SP_OPT_INT("max_len", struct redis_conf, max_len, "0", 0, INT64_C(1000000000000),
               "trim each stream to about this many entries (XADD MAXLEN ~); 0 keeps everything"),
    SP_OPT_STR("username", struct redis_conf, username, NULL, 0,
               "ACL user to authenticate as (needs password); default: the default user"),
    SP_OPT_STR("password", struct redis_conf, password, NULL, SP_OPT_SECRET,
               "password for AUTH (requirepass, or the ACL user's)"),
    SP_OPT_INT("db", struct redis_conf, db, "0", 0, INT32_MAX, "database number to SELECT"),
    SP_OPT_DURATION("connect_timeout", struct redis_conf, connect_timeout_ms, "5s", 1, 600000,
                    "how long to wait for the TCP connection and for the answers to AUTH, "
                    "SELECT and PING"),
    SP_OPT_DURATION("command_timeout", struct redis_conf, command_timeout_ms, "10s", 1, 3600000,
                    "how long a batch may wait on a silent server (no bytes taken or answered) "
                    "before the connection counts as lost and the batch is retried"),
    SP_OPT_END,
};

/* ---- where to connect ---- */

struct redis_target {
    char *host;
    int port;
    char *user; /* NULL: no ACL user */
    char *pass; /* NULL: no AUTH */
    int64_t db;
    char label[320]; /* "redis at host:port", for messages; never holds secrets */
};

static void redis_target_fini(struct redis_target *t)
{
    free(t->host);
    free(t->user);
    free(t->pass);
    memset(t, 0, sizeof(*t));
}

static int redis_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Percent-decodes n bytes of s into a new string; NULL on a bad escape. */
static char *redis_pct_decode(const char *s, size_t n)
{
    char *out = sp_xmalloc(n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[j++] = s[i];
            continue;
        }
        int hi = i + 2 < n ? redis_hexval(s[i + 1]) : -1;
        int lo = i + 2 < n ? redis_hexval(s[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            free(out);
            return NULL;
        }
        out[j++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[j] = '\0';
    return out;
}

/* Parses an unsigned decimal of n bytes in [lo, hi]; false otherwise. */
static bool redis_parse_num(const char *s, size_t n, int64_t lo, int64_t hi, int64_t *out)
{
    if (n == 0 || n > 18) {
        return false;
    }
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi) {
        return false;
    }
    *out = v;
    return true;
}

#define REDIS_URL_FORM "redis://[user[:password]@]host[:port][/db]"

/*
 * url -> t (host, port, user, pass, db). *has_db: the url names a database.
 * Messages never quote the url: it may hold a password.
 */
static int redis_parse_url(const char *url, struct redis_target *t, bool *has_db,
                           struct sp_err *err)
{
    static const char scheme[] = "redis://";
    *has_db = false;
    if (strncmp(url, "rediss://", 9) == 0) {
        sp_err_set(err, SP_EUNSUPP, "url: TLS (rediss://) is not supported");
        sp_err_hint(err, "use redis:// through a TLS tunnel such as stunnel, or a private network");
        return SP_EUNSUPP;
    }
    if (strncmp(url, scheme, sizeof(scheme) - 1) != 0) {
        sp_err_set(err, SP_EINVAL, "url: expected " REDIS_URL_FORM);
        return SP_EINVAL;
    }
    const char *p = url + sizeof(scheme) - 1;
    const char *auth_end = NULL;
    for (const char *q = p; *q != '\0' && *q != '/'; q++) {
        if (*q == '@') {
            auth_end = q; /* the last '@' before the path: passwords may hold '@' encoded or not */
        }
    }
    if (auth_end != NULL) {
        const char *colon = memchr(p, ':', (size_t)(auth_end - p));
        const char *user_end = colon != NULL ? colon : auth_end;
        if (user_end > p) {
            t->user = redis_pct_decode(p, (size_t)(user_end - p));
        }
        if (colon != NULL) {
            t->pass = redis_pct_decode(colon + 1, (size_t)(auth_end - colon - 1));
        }
        if ((user_end > p && t->user == NULL) || (colon != NULL && t->pass == NULL)) {
            sp_err_set(err, SP_EINVAL, "url: bad percent-encoding in the user or password");
            return SP_EINVAL;
        }
        p = auth_end + 1;
    }
    const char *host = p;
    const char *host_end;
    if (*p == '[') {
        host = p + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL) {
            sp_err_set(err, SP_EINVAL, "url: unterminated [ in the host");
            return SP_EINVAL;
        }
        p = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/");
        p = host_end;
    }
    if (host_end == host) {
        sp_err_set(err, SP_EINVAL, "url: no host; expected " REDIS_URL_FORM);
        return SP_EINVAL;
    }
    t->host = sp_xstrndup(host, (size_t)(host_end - host));
    t->port = 6379;
    if (*p == ':') {
        size_t n = strcspn(p + 1, "/");
        int64_t port = 0;
        if (!redis_parse_num(p + 1, n, 1, 65535, &port)) {
            sp_err_set(err, SP_EINVAL, "url: the port must be a number from 1 to 65535");
            return SP_EINVAL;
        }
        t->port = (int)port;
        p += 1 + n;
    }
    if (*p == '/') {
        p++;
        if (*p != '\0') {
            if (!redis_parse_num(p, strlen(p), 0, INT32_MAX, &t->db)) {
                sp_err_set(err, SP_EINVAL,
                           "url: the path must be a database number, as in redis://host:6379/2");
                return SP_EINVAL;
            }
            *has_db = true;
        }
    } else if (*p != '\0') {
        sp_err_set(err, SP_EINVAL, "url: unexpected text after the host; expected " REDIS_URL_FORM);
        return SP_EINVAL;
    }
    return 0;
}

/*
 * The conf's url or host/port/username/password/db, checked for conflicts.
 * t needs redis_target_fini afterwards, also on failure.
 */
static int redis_target_init(const struct redis_conf *conf, struct redis_target *t,
                             struct sp_err *err)
{
    memset(t, 0, sizeof(*t));
    bool url_db = false;
    if (conf->url != NULL) {
        if (conf->host != NULL) {
            sp_err_set(err, SP_EINVAL, "both url and host are set");
            sp_err_hint(err, "set url, or host and port, not both");
            return SP_EINVAL;
        }
        int rc = redis_parse_url(conf->url, t, &url_db, err);
        if (rc != 0) {
            return rc;
        }
    } else {
        t->host = sp_xstrdup(conf->host != NULL ? conf->host : REDIS_DEFAULT_HOST);
        t->port = (int)conf->port;
    }
    if (conf->password != NULL) {
        if (t->pass != NULL) {
            sp_err_set(err, SP_EINVAL, "the password is set twice, in url and in password");
            sp_err_hint(err, "keep one: the password option keeps it out of the url");
            return SP_EINVAL;
        }
        t->pass = sp_xstrdup(conf->password);
    }
    if (conf->username != NULL) {
        if (t->user != NULL && strcmp(t->user, conf->username) != 0) {
            sp_err_set(err, SP_EINVAL, "url and username name different users");
            return SP_EINVAL;
        }
        free(t->user);
        t->user = sp_xstrdup(conf->username);
    }
    if (t->user != NULL && t->pass == NULL) {
        sp_err_set(err, SP_EINVAL, "username \"%s\" is set without a password", t->user);
        sp_err_hint(err, "set password (e.g. password: ${REDIS_PASSWORD})");
        return SP_EINVAL;
    }
    if (url_db && conf->db != 0 && conf->db != t->db) {
        sp_err_set(err, SP_EINVAL, "url names db %" PRId64 " but db is %" PRId64, t->db, conf->db);
        return SP_EINVAL;
    }
    if (!url_db) {
        t->db = conf->db;
    }
    bool v6 = strchr(t->host, ':') != NULL;
    snprintf(t->label, sizeof(t->label), "redis at %s%s%s:%d", v6 ? "[" : "", t->host,
             v6 ? "]" : "", t->port);
    return 0;
}

/* ---- the stream key template ---- */

enum redis_seg_kind {
    REDIS_SEG_TEXT,
    REDIS_SEG_SOURCE,
    REDIS_SEG_SCHEMA,
    REDIS_SEG_TABLE,
};

struct redis_seg {
    enum redis_seg_kind kind;
    const char *text; /* REDIS_SEG_TEXT: points into the template */
    size_t len;
};

/* Splits tpl into segments (*segs heap, n out). Unknown placeholders are errors. */
static int redis_parse_template(const char *tpl, struct redis_seg **segs, int *n,
                                struct sp_err *err)
{
    static const struct {
        const char *name;
        enum redis_seg_kind kind;
    } names[] = {
        {"{source}", REDIS_SEG_SOURCE},
        {"{schema}", REDIS_SEG_SCHEMA},
        {"{table}", REDIS_SEG_TABLE},
    };
    *segs = NULL;
    *n = 0;
    if (tpl[0] == '\0') {
        return sp_err_set(err, SP_EINVAL, "stream is empty");
    }
    const char *p = tpl;
    while (*p != '\0') {
        *segs = sp_xrealloc(*segs, sizeof(**segs) * (size_t)(*n + 1));
        struct redis_seg *s = &(*segs)[*n];
        if (*p != '{') {
            size_t len = strcspn(p, "{");
            *s = (struct redis_seg){REDIS_SEG_TEXT, p, len};
            p += len;
            (*n)++;
            continue;
        }
        bool found = false;
        for (size_t i = 0; i < SP_ARRAY_LEN(names); i++) {
            size_t len = strlen(names[i].name);
            if (strncmp(p, names[i].name, len) == 0) {
                *s = (struct redis_seg){names[i].kind, NULL, 0};
                p += len;
                found = true;
                break;
            }
        }
        if (!found) {
            size_t len = strcspn(p, "}");
            sp_err_set(err, SP_EINVAL, "stream: unknown placeholder \"%.*s%s\"", (int)len, p,
                       p[len] == '}' ? "}" : "");
            sp_err_hint(err, "use {source}, {schema} and {table}");
            free(*segs);
            *segs = NULL;
            *n = 0;
            return SP_EINVAL;
        }
        (*n)++;
    }
    return 0;
}

/*
 * The source name as the json format writes it ("source":{"connector":
 * "postgresql","name":"..."), for records that do not carry it.
 */
static bool redis_source_from_value(const struct sp_rec *r, struct sp_buf *out)
{
    static const char needle[] = "\"source\":{\"connector\":\"postgresql\",\"name\":\"";
    const char *p = memmem(r->value, r->value_len, needle, sizeof(needle) - 1);
    if (p == NULL) {
        return false;
    }
    const char *end = r->value + r->value_len;
    for (p += sizeof(needle) - 1; p < end && *p != '"'; p++) {
        if (*p == '\\' && p + 1 < end) {
            p++;
            if (*p != '"' && *p != '\\' && *p != '/') {
                sp_buf_putc(out, '\\'); /* rare in a config name: kept as written */
            }
        }
        sp_buf_putc(out, *p);
    }
    return p < end;
}

static void redis_expand(const struct redis_seg *segs, int n, const struct sp_rec *r,
                         struct sp_buf *out)
{
    sp_buf_reset(out);
    for (int i = 0; i < n; i++) {
        switch (segs[i].kind) {
        case REDIS_SEG_TEXT:
            sp_buf_append(out, segs[i].text, segs[i].len);
            break;
        case REDIS_SEG_SOURCE:
            if (r->source != NULL) {
                sp_buf_puts(out, r->source);
            } else {
                redis_source_from_value(r, out);
            }
            break;
        case REDIS_SEG_SCHEMA:
            sp_buf_puts(out, r->schema);
            break;
        case REDIS_SEG_TABLE:
            sp_buf_puts(out, r->table);
            break;
        }
    }
}

/* ---- replies and connection errors ---- */

/*
 * Error replies about the server's state rather than the command: another
 * attempt (after a reconnect) may succeed.
 */
static bool redis_reply_transient(const char *msg)
{
    static const char *const codes[] = {
        "LOADING",     "BUSY",       "MASTERDOWN", "READONLY", "TRYAGAIN",
        "CLUSTERDOWN", "NOREPLICAS", "MISCONF",    "OOM",      "UNBLOCKED",
    };
    size_t n = strcspn(msg, " ");
    for (size_t i = 0; i < SP_ARRAY_LEN(codes); i++) {
        if (strlen(codes[i]) == n && strncmp(msg, codes[i], n) == 0) {
            return true;
        }
    }
    return strncmp(msg, "ERR max number of clients", 25) == 0;
}

/*
 * For a data command, also a connection that lost its authentication (the
 * server restarted with another password: reconnecting says so) and an
 * aborted transaction. Everything else is about the command or its key and
 * fails the same way every time.
 */
static bool redis_reply_retriable(const char *msg)
{
    return redis_reply_transient(msg) || strncmp(msg, "NOAUTH", 6) == 0 ||
           strncmp(msg, "WRONGPASS", 9) == 0 || strncmp(msg, "EXECABORT", 9) == 0;
}

static const char *redis_reject_hint(const char *msg)
{
    if (strncmp(msg, "WRONGTYPE", 9) == 0) {
        return "the key exists and is not a stream: delete or rename it, or route these events "
               "to another key with the stream template";
    }
    if (strncmp(msg, "NOPERM", 6) == 0) {
        return "the redis user may not run XADD on this key: extend its ACL (e.g. ~prefix*)";
    }
    if (strncmp(msg, "MOVED", 5) == 0 || strncmp(msg, "ASK", 3) == 0) {
        return "Redis Cluster is not supported: point the sink at a standalone server";
    }
    return "";
}

/*
 * err from a failed hiredis call on c, waiting for the reply to cmd (NULL:
 * while queueing the batch); sys_errno: errno right after the call;
 * timeout_opt: the option that set the socket timeout. Retriable.
 */
static int redis_io_err(const struct redis_target *t, const redisContext *c, int sys_errno,
                        const char *timeout_opt, int64_t timeout_ms, const char *cmd,
                        struct sp_err *err)
{
    if (cmd == NULL) {
        sp_err_set(err, SP_ECONN, "%s: could not queue the batch: %s", t->label, c->errstr);
    } else if (c->err == REDIS_ERR_IO && (sys_errno == EAGAIN || sys_errno == EWOULDBLOCK)) {
        sp_err_set(err, SP_ETIMEDOUT, "%s: no answer to %s within %" PRId64 " ms", t->label, cmd,
                   timeout_ms);
        sp_err_hint(err,
                    "the server is stopped, overloaded or unreachable; a longer %s helps only "
                    "with slow servers",
                    timeout_opt);
    } else if (c->err == REDIS_ERR_EOF) {
        sp_err_set(err, SP_ECONN, "%s: the server closed the connection before answering %s",
                   t->label, cmd);
    } else {
        sp_err_set(err, SP_ECONN, "%s: %s (waiting for the answer to %s)", t->label, c->errstr,
                   cmd);
    }
    err->retriable = true;
    return err->code;
}

static struct timeval redis_tv(int64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/*
 * Connects and authenticates: AUTH (when a password is set), SELECT (db not
 * 0) and PING, pipelined, each answered before the context is returned, so
 * no data is ever sent to a server that does not answer. err->retriable
 * tells a transient failure (unreachable, LOADING, ...) from a refusal that
 * needs a person (wrong password, no such database).
 */
static int redis_connect(const struct redis_conf *conf, const struct redis_target *t,
                         redisContext **out, struct sp_err *err)
{
    *out = NULL;
    redisContext *c = redisConnectWithTimeout(t->host, t->port, redis_tv(conf->connect_timeout_ms));
    if (c == NULL) {
        sp_err_set(err, SP_ECONN, "%s: could not allocate a connection", t->label);
        err->retriable = true;
        return err->code;
    }
    if (c->err != 0) {
        sp_err_set(err, SP_ECONN, "could not connect to %s: %s", t->label, c->errstr);
        sp_err_hint(err, "check that redis-server runs there and that url (or host and port) "
                         "points at it");
        err->retriable = true;
        redisFree(c);
        return err->code;
    }
    redisSetTimeout(c, redis_tv(conf->connect_timeout_ms));
    redisEnableKeepAlive(c);

    const char *steps[3];
    int nsteps = 0;
    if (t->pass != NULL) {
        if (t->user != NULL) {
            const char *argv[] = {"AUTH", t->user, t->pass};
            redisAppendCommandArgv(c, 3, argv, NULL);
        } else {
            const char *argv[] = {"AUTH", t->pass};
            redisAppendCommandArgv(c, 2, argv, NULL);
        }
        steps[nsteps++] = "AUTH";
    }
    if (t->db != 0) {
        char db[24];
        snprintf(db, sizeof(db), "%" PRId64, t->db);
        const char *argv[] = {"SELECT", db};
        redisAppendCommandArgv(c, 2, argv, NULL);
        steps[nsteps++] = "SELECT";
    }
    const char *ping[] = {"PING"};
    redisAppendCommandArgv(c, 1, ping, NULL);
    steps[nsteps++] = "PING";

    for (int i = 0; i < nsteps; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(c, (void **)&rep) != REDIS_OK) {
            redis_io_err(t, c, errno, "connect_timeout", conf->connect_timeout_ms, steps[i], err);
            redisFree(c);
            return err->code;
        }
        if (rep->type == REDIS_REPLY_ERROR) {
            sp_err_set(err, SP_ESERVER, "%s: %s failed: %s", t->label, steps[i], rep->str);
            err->retriable = redis_reply_transient(rep->str);
            if (strcmp(steps[i], "AUTH") == 0) {
                sp_err_hint(err, "check password (and username for an ACL user)");
            } else if (strcmp(steps[i], "SELECT") == 0) {
                sp_err_hint(err, "the server has fewer databases than db (its `databases` "
                                 "setting); choose a smaller db");
            } else if (strncmp(rep->str, "NOAUTH", 6) == 0) {
                sp_err_hint(err, "the server requires a password: set password (and username "
                                 "for an ACL user)");
            }
            freeReplyObject(rep);
            redisFree(c);
            return err->code;
        }
        freeReplyObject(rep);
    }
    redisSetTimeout(c, redis_tv(conf->command_timeout_ms));
    *out = c;
    return 0;
}

/* ---- the sink ---- */

struct redis_state {
    struct redis_target tgt;
    struct redis_seg *segs;
    int nsegs;
    redisContext *c; /* NULL while disconnected: the next submit connects */
    bool lost;       /* the last connection failed: log the next connect */
    bool warned_multi;
    struct sp_buf key;
    char max_len[24];
};

static void redis_state_free(struct redis_state *st)
{
    if (st == NULL) {
        return;
    }
    if (st->c != NULL) {
        redisFree(st->c);
    }
    redis_target_fini(&st->tgt);
    free(st->segs);
    sp_buf_fini(&st->key);
    free(st);
}

/* Everything open and check need from the conf: target and template. */
static int redis_state_new(struct sp_sink *sk, struct redis_state **out, struct sp_err *err)
{
    const struct redis_conf *conf = sk->conf;
    struct redis_state *st = sp_xcalloc(1, sizeof(*st));
    sp_buf_init(&st->key);
    *out = NULL;
    int rc = redis_target_init(conf, &st->tgt, err);
    if (rc == 0) {
        rc = redis_parse_template(conf->stream, &st->segs, &st->nsegs, err);
    }
    if (rc != 0) {
        redis_state_free(st);
        return rc;
    }
    snprintf(st->max_len, sizeof(st->max_len), "%" PRId64, conf->max_len);
    *out = st;
    return 0;
}

static void redis_drop(struct redis_state *st)
{
    if (st->c != NULL) {
        redisFree(st->c);
        st->c = NULL;
    }
    st->lost = true;
}

static int redis_open(struct sp_sink *sk, struct sp_err *err)
{
    const struct redis_conf *conf = sk->conf;
    struct redis_state *st;
    int rc = redis_state_new(sk, &st, err);
    if (rc != 0) {
        return rc;
    }
    sk->state = st;
    if (conf->batching.partitions > 1) {
        sp_log_warn(&sk->log,
                    "partitions is %" PRId64 ": batches still go one at a time over one "
                    "connection, so this adds no parallelism and keeps commit order only per key, "
                    "not per stream",
                    conf->batching.partitions);
    }
    rc = redis_connect(conf, &st->tgt, &st->c, err);
    if (rc != 0 && !err->retriable) {
        /* Refused (password, database): a person has to fix the configuration. */
        redis_state_free(st);
        sk->state = NULL;
        return rc;
    }
    if (rc != 0) {
        /* Unreachable for now: start anyway; delivery retries with backoff and
         * backpressure holds the rest. */
        sp_log_emit_hint(&sk->log, SP_LOG_WARN, err->hint, "%s; delivery will retry", err->msg);
        sp_err_clear(err);
        return 0;
    }
    sp_log_info(&sk->log, "connected to %s, db %" PRId64, st->tgt.label, st->tgt.db);
    return 0;
}

/* The stream key of r: the destination a flow set (route, outbox), else the template's. */
static void redis_key_for(struct redis_state *st, const struct sp_rec *r)
{
    if (r->dest != NULL) {
        sp_buf_reset(&st->key);
        sp_buf_puts(&st->key, r->dest);
    } else {
        redis_expand(st->segs, st->nsegs, r, &st->key);
    }
}

/* Appends XADD for r to the pipeline. */
static void redis_append_xadd(struct sp_sink *sk, const struct sp_rec *r)
{
    const struct redis_conf *conf = sk->conf;
    struct redis_state *st = sk->state;
    const char *argv[REDIS_MAX_ARGS];
    size_t lens[REDIS_MAX_ARGS];
    int n = 0;
    char op[2] = {r->op, '\0'};
    char lsn[SP_LSN_BUFSZ];
/* Bounds-checked: a field added without growing REDIS_MAX_ARGS aborts below. */
#define REDIS_ARG(s, l) (n < REDIS_MAX_ARGS ? (void)(argv[n] = (s), lens[n] = (l)) : (void)0, n++)
#define REDIS_STR(s)    REDIS_ARG((s), strlen(s))
    redis_key_for(st, r);
    REDIS_STR("XADD");
    REDIS_ARG(st->key.data, st->key.len);
    if (conf->max_len > 0) {
        REDIS_STR("MAXLEN");
        REDIS_STR("~");
        REDIS_STR(st->max_len);
    }
    REDIS_STR("*");
    REDIS_STR("id");
    REDIS_STR(r->id);
    REDIS_STR("op");
    REDIS_STR(op);
    REDIS_STR("schema");
    REDIS_STR(r->schema);
    REDIS_STR("table");
    REDIS_STR(r->table);
    REDIS_STR("lsn");
    REDIS_STR(sp_lsn_str(r->lsn, lsn));
    REDIS_STR("key");
    if (r->key != NULL) {
        REDIS_ARG(r->key, r->key_len);
    } else {
        REDIS_STR("null");
    }
    REDIS_STR("value");
    REDIS_ARG(r->value, r->value_len);
#undef REDIS_STR
#undef REDIS_ARG
    if (n > REDIS_MAX_ARGS) {
        abort();
    }
    redisAppendCommandArgv(st->c, n, argv, lens);
}

/* Marks r rejected for good with the server's error text. */
static void redis_reject(struct sp_sink *sk, struct sp_rec *r, const char *msg)
{
    struct redis_state *st = sk->state;
    redis_key_for(st, r);
    r->err = sp_xcalloc(1, sizeof(*r->err));
    sp_err_set(r->err, SP_EREJECTED, "redis stream \"%s\": %s", st->key.data, msg);
    sp_err_hint(r->err, "%s", redis_reject_hint(msg));
}

/* A reply that fits no step of the protocol: resynchronise by reconnecting. */
static int redis_unexpected(const struct redis_state *st, const char *where, const redisReply *rep,
                            struct sp_err *err)
{
    sp_err_set(err, SP_EPROTO, "%s: unexpected reply (type %d%s%s) to %s", st->tgt.label, rep->type,
               rep->type == REDIS_REPLY_ERROR ? ": " : "",
               rep->type == REDIS_REPLY_ERROR ? rep->str : "", where);
    err->retriable = true;
    return err->code;
}

/* What the replies of one round said so far. */
struct redis_round {
    bool tx;              /* MULTI was accepted */
    bool refused;         /* some XADD was refused while queueing */
    struct sp_err retry;  /* the first retriable refusal, if any */
    struct sp_rec *first; /* the first record of the round */
    size_t n;             /* records in the round */
};

/* Appends MULTI, an XADD per record not yet rejected, and EXEC. */
static int redis_round_send(struct sp_sink *sk, struct sp_batch *b, struct redis_round *rd,
                            struct sp_err *err)
{
    const struct redis_conf *conf = sk->conf;
    struct redis_state *st = sk->state;
    const char *multi[] = {"MULTI"};
    const char *exec[] = {"EXEC"};
    redisAppendCommandArgv(st->c, 1, multi, NULL);
    for (struct sp_rec *r = b->head; r != NULL; r = r->next) {
        if (r->err == NULL) {
            rd->first = rd->first != NULL ? rd->first : r;
            rd->n++;
            redis_append_xadd(sk, r);
        }
    }
    redisAppendCommandArgv(st->c, 1, exec, NULL);
    if (st->c->err != 0) {
        return redis_io_err(&st->tgt, st->c, errno, "command_timeout", conf->command_timeout_ms,
                            NULL, err);
    }
    return 0;
}

/*
 * The replies to MULTI and to each XADD: QUEUED, or (when MULTI was
 * refused, as for an ACL user without +multi, and Redis ran each XADD at
 * once) the entry id, or a refusal. *again: a refusal aborted the
 * transaction, so the records not refused must go again.
 */
static int redis_read_queued(struct sp_sink *sk, struct redis_round *rd, bool *again,
                             struct sp_err *err)
{
    const struct redis_conf *conf = sk->conf;
    struct redis_state *st = sk->state;
    redisReply *rep = NULL;
    /* The first read sends the whole pipeline, then waits. */
    if (redisGetReply(st->c, (void **)&rep) != REDIS_OK) {
        return redis_io_err(&st->tgt, st->c, errno, "command_timeout", conf->command_timeout_ms,
                            "MULTI", err);
    }
    rd->tx = rep->type == REDIS_REPLY_STATUS;
    if (!rd->tx && rep->type != REDIS_REPLY_ERROR) {
        int rc = redis_unexpected(st, "MULTI", rep, err);
        freeReplyObject(rep);
        return rc;
    }
    if (!rd->tx && !st->warned_multi) {
        sp_log_warn(&sk->log,
                    "%s: MULTI refused (%s): batches are not atomic; grant the user +multi and "
                    "+exec",
                    st->tgt.label, rep->str);
        st->warned_multi = true;
    }
    freeReplyObject(rep);
    size_t i = 0;
    for (struct sp_rec *r = rd->first; i < rd->n; r = r->next) {
        if (r->err != NULL) {
            continue;
        }
        i++;
        if (redisGetReply(st->c, (void **)&rep) != REDIS_OK) {
            return redis_io_err(&st->tgt, st->c, errno, "command_timeout", conf->command_timeout_ms,
                                "XADD", err);
        }
        if (rep->type == REDIS_REPLY_ERROR) {
            rd->refused = true;
            if (!redis_reply_retriable(rep->str)) {
                redis_reject(sk, r, rep->str);
                *again = rd->tx;
            } else if (rd->retry.code == 0) {
                sp_err_set(&rd->retry, SP_ESERVER, "%s: %s", st->tgt.label, rep->str);
            }
        } else if (rep->type != (rd->tx ? REDIS_REPLY_STATUS : REDIS_REPLY_STRING)) {
            int rc = redis_unexpected(st, "XADD", rep, err);
            freeReplyObject(rep);
            return rc;
        }
        freeReplyObject(rep);
    }
    return 0;
}

/* EXEC's reply: the outcome of each XADD of a transaction nothing aborted. */
static int redis_read_exec(struct sp_sink *sk, struct redis_round *rd, const redisReply *rep,
                           struct sp_err *err)
{
    struct redis_state *st = sk->state;
    if (rep->type == REDIS_REPLY_ERROR && redis_reply_retriable(rep->str)) {
        sp_err_set(err, SP_ESERVER, "%s: EXEC failed: %s", st->tgt.label, rep->str);
        err->retriable = true;
        return err->code;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != rd->n) {
        return redis_unexpected(st, "EXEC", rep, err);
    }
    size_t i = 0;
    for (struct sp_rec *r = rd->first; i < rd->n; r = r->next) {
        if (r->err != NULL) {
            continue;
        }
        const redisReply *e = rep->element[i++];
        if (e->type == REDIS_REPLY_STRING) {
            continue;
        }
        if (e->type != REDIS_REPLY_ERROR) {
            return redis_unexpected(st, "XADD in EXEC", e, err);
        }
        /*
         * The server's state was checked when the command was queued and
         * when EXEC ran, so an error here is about this command. The others
         * are applied: retrying the batch would repeat them behind this one,
         * out of order.
         */
        redis_reject(sk, r, e->str);
    }
    return 0;
}

/*
 * One round: MULTI, XADD for every record not yet rejected, EXEC, then all
 * the replies. *again: some XADD was refused while queueing, which aborted
 * the transaction; those records are now rejected and the others must be
 * sent again. Returns 0 or a retriable error (the caller drops the
 * connection).
 */
static int redis_round(struct sp_sink *sk, struct sp_batch *b, bool *again, struct sp_err *err)
{
    const struct redis_conf *conf = sk->conf;
    struct redis_state *st = sk->state;
    struct redis_round rd = {0};
    sp_err_clear(&rd.retry);
    *again = false;
    if (st->c == NULL) {
        sp_err_set(err, SP_ECONN, "%s: not connected", st->tgt.label);
        err->retriable = true;
        return err->code;
    }
    int rc = redis_round_send(sk, b, &rd, err);
    if (rc != 0 || rd.n == 0) {
        return rc;
    }
    rc = redis_read_queued(sk, &rd, again, err);
    if (rc != 0) {
        return rc;
    }
    redisReply *rep = NULL;
    if (redisGetReply(st->c, (void **)&rep) != REDIS_OK) {
        return redis_io_err(&st->tgt, st->c, errno, "command_timeout", conf->command_timeout_ms,
                            "EXEC", err);
    }
    if (rd.tx && !rd.refused) {
        rc = redis_read_exec(sk, &rd, rep, err);
    } else if (rd.tx && rep->type != REDIS_REPLY_ERROR) {
        rc = redis_unexpected(st, "EXEC after a refused command", rep, err);
    } else if (rd.retry.code != 0) {
        /* EXECABORT (nothing applied), or no transaction: the batch goes again. */
        *err = rd.retry;
        err->retriable = true;
        rc = err->code;
        *again = false;
    }
    freeReplyObject(rep);
    return rc;
}

static void redis_clear_rejects(struct sp_batch *b)
{
    for (struct sp_rec *r = b->head; r != NULL; r = r->next) {
        free(r->err);
        r->err = NULL;
    }
}

/* Connects if there is no connection; *fresh: this call made it. */
static int redis_ensure(struct sp_sink *sk, bool *fresh, struct sp_err *err)
{
    const struct redis_conf *conf = sk->conf;
    struct redis_state *st = sk->state;
    *fresh = false;
    if (st->c != NULL) {
        return 0;
    }
    if (redis_connect(conf, &st->tgt, &st->c, err) != 0) {
        err->retriable = true;
        return err->code;
    }
    sp_log_info(&sk->log, "%s %s, db %" PRId64, st->lost ? "reconnected to" : "connected to",
                st->tgt.label, st->tgt.db);
    st->lost = false;
    *fresh = true;
    return 0;
}

/* Rounds until every record is applied or rejected; each round rejects at least one more. */
static int redis_deliver(struct sp_sink *sk, struct sp_batch *b, struct sp_err *err)
{
    for (;;) {
        bool again = false;
        int rc = redis_round(sk, b, &again, err);
        if (rc != 0 || !again) {
            return rc;
        }
    }
}

static int redis_submit(struct sp_sink *sk, struct sp_batch *b, struct sp_err *err)
{
    struct redis_state *st = sk->state;
    int64_t t0 = sp_time_mono_ms();
    bool fresh = false;
    /* A retried batch starts over: earlier rejections are decided again. */
    redis_clear_rejects(b);
    if (redis_ensure(sk, &fresh, err) != 0) {
        return err->code;
    }
    while (redis_deliver(sk, b, err) != 0) {
        redis_drop(st);
        redis_clear_rejects(b);
        if (fresh || err->code != SP_ECONN) {
            return err->code;
        }
        /*
         * The server (its `timeout`), a proxy or a NAT closed a connection
         * that sat idle: try once more on a new one rather than after a
         * backoff. A silent server (a timeout) is not retried here.
         */
        sp_log_info(&sk->log, "%s; reconnecting", err->msg);
        sp_err_clear(err);
        if (redis_ensure(sk, &fresh, err) != 0) {
            return err->code;
        }
    }
    sp_log_debug(&sk->log, "delivered %zu records (partition %d, attempt %d) in %lld ms", b->count,
                 b->part, b->attempt, (long long)(sp_time_mono_ms() - t0));
    sp_batch_done(b, 0, NULL);
    return 0;
}

static int redis_check(struct sp_sink *sk, struct sp_err *err)
{
    const struct redis_conf *conf = sk->conf;
    struct redis_state *st;
    int rc = redis_state_new(sk, &st, err);
    if (rc == 0) {
        rc = redis_connect(conf, &st->tgt, &st->c, err);
    }
    redis_state_free(st);
    return rc;
}

static void redis_close(struct sp_sink *sk)
{
    redis_state_free(sk->state);
    sk->state = NULL;
}

const struct sp_sink_ops sp_sink_redis = {
    .type = "redis",
    .summary = "append events to Redis streams (XADD), one MULTI/EXEC pipeline per batch",
    .opts = redis_opts,
    .conf_size = sizeof(struct redis_conf),
    .open = redis_open,
    .submit = redis_submit,
    .check = redis_check,
    .close = redis_close,
};
