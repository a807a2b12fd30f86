// SPDX-License-Identifier: Apache-2.0
/*
 * Snapshots: see snapshot.h for the algorithm. This file holds the jobs and
 * their state file, the worker threads that read chunks, the change log
 * kept against open chunks, and the emission of chunk rows as "r" events.
 */
#include "source/pg/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/lsn.h"
#include "util/mem.h"
#include "util/time.h"

#define SNAP_RING         1024 /* recently streamed xids, for the visibility race check */
#define SNAP_LOG_EVERY_MS 5000 /* progress lines */

enum snap_mode { SNAP_WM_MESSAGE, SNAP_WM_LSN };
enum job_kind { JOB_INITIAL, JOB_INCREMENTAL };
enum job_status { JOB_PENDING, JOB_DONE, JOB_FAILED };
enum chunk_state { CH_READING, CH_READY, CH_FAILED };

struct snap_logent {
    uint32_t xid;
    char *key;
};

struct snap_job;

struct snap_chunk {
    struct snap_job *job;
    int state; /* enum chunk_state; written by the worker under s->mu */
    uint64_t id;
    uint64_t reg_seq; /* s->ring_seq when registered */
    char *sql;
    int nparams;
    char **params;
    /* Results (worker), read by the pipeline once state != CH_READING. */
    PGresult *res;
    uint32_t xmax;
    uint32_t *xip;
    int nxip;
    uint64_t pos; /* high watermark */
    bool marker_seen;
    struct sp_err err;
    /* Pipeline thread: changes streamed since registration. */
    struct snap_logent *log;
    size_t nlog, caplog;
};

struct snap_job {
    struct sp_snap *s;
    int id;
    enum job_kind kind;
    enum job_status status;
    char *schema;
    char *table;
    char **streams; /* NULL-terminated */
    char *where;    /* extra condition (on demand), or NULL */
    int nkey;
    char **last_key; /* resume after this key; NULL: from the start */
    uint64_t rows;   /* rows acknowledged */
    /* Runtime */
    bool setup;
    bool whole; /* no usable key: read whole */
    struct sp_relation *rel;
    int *keyidx; /* nkey indexes into rel->cols */
    char *sql_first;
    char *sql_next;
    int64_t est_rows;
    struct snap_chunk *chunk;
    bool awaiting_ack; /* a keyed job reads its next chunk once this one is acknowledged */
    bool final_emitted;
    /* Chunks emitted and not yet acknowledged, oldest first (acknowledged in order). */
    struct snap_pending {
        uint64_t rows;
        bool final;
        char **key; /* last key read, or NULL */
    } * pend;
    int npend;
    int64_t started_ms;
    uint64_t rows_at_start;
    int64_t last_log_ms;
    int64_t retry_at_ms;
    int failures;
};

struct snap_worker {
    struct sp_snap *s;
    pthread_t th;
    bool started;
    PGconn *conn;
    struct snap_chunk *task;
};

struct sp_snap {
    struct sp_snap_host h;
    struct sp_logctx *log;
    enum snap_mode mode;
    char runid[20];
    struct snap_job **jobs;
    int njobs;
    int next_job_id;
    char *state_path;
    bool state_loaded;

    struct snap_worker *workers;
    int nworkers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    uint64_t next_chunk_id;

    /* Stream position: every transaction committed before pos has been handled. */
    uint64_t pos;
    bool in_txn;
    uint32_t xid;
    uint32_t ring[SNAP_RING];
    uint64_t ring_seq;
    int nopen; /* chunks registered and not yet emitted */

    PGconn *meta; /* catalog lookups for on-demand requests */
    /* Whole-table reads (no key): the stream waits for them. */
    PGconn *whole;
    bool whole_imported; /* whole is inside the slot's exported snapshot */
    struct snap_job *whole_job;
    bool whole_cursor;

    uint64_t id_lsn; /* ids of emitted rows: "<lsn>:r<n>", n continues at the same lsn */
    uint64_t id_n;
};

/* ---- small helpers ---- */

static bool xid_precedes(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}

static void strv_free(char **v, int n)
{
    if (v == NULL) {
        return;
    }
    for (int i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

static char **strv_dup(char *const *v, int n)
{
    char **out = sp_xcalloc((size_t)n + 1, sizeof(*out));
    for (int i = 0; i < n; i++) {
        out[i] = sp_xstrdup(v[i]);
    }
    return out;
}

/* The comparison key of a row: each key column's text, length-prefixed. */
static void key_put(struct sp_buf *b, const char *v, size_t n)
{
    sp_buf_printf(b, "%zu:", n);
    sp_buf_append(b, v, n);
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Percent-encoding for the state file and request messages: one token, no spaces. */
static void enc_put(struct sp_buf *b, const char *v)
{
    if (v == NULL) {
        sp_buf_putc(b, '-');
        return;
    }
    if (*v == '\0') {
        sp_buf_puts(b, "%");
        return;
    }
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p <= ' ' || *p == '%' || *p == '-' || *p >= 0x7f || *p == ',') {
            sp_buf_printf(b, "%%%02X", *p);
        } else {
            sp_buf_putc(b, (char)*p);
        }
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

/* Decode a token of enc_put; NULL for "-" (and *ok false on a malformed one). */
static char *enc_get(const char *tok, bool *ok)
{
    if (strcmp(tok, "-") == 0) {
        return NULL;
    }
    if (strcmp(tok, "%") == 0) {
        return sp_xstrdup("");
    }
    struct sp_buf b;
    sp_buf_init(&b);
    for (const char *p = tok; *p; p++) {
        if (*p == '%') {
            int h = p[1] ? hexval(p[1]) : -1;
            int l = h >= 0 && p[2] ? hexval(p[2]) : -1;
            if (h < 0 || l < 0) {
                *ok = false;
                break;
            }
            sp_buf_putc(&b, (char)(h * 16 + l));
            p += 2;
        } else {
            sp_buf_putc(&b, *p);
        }
    }
    sp_buf_putc(&b, '\0');
    return sp_buf_steal(&b);
}

/* ---- jobs ---- */

static struct snap_job *job_new(struct sp_snap *s, enum job_kind kind, const char *schema,
                                const char *table)
{
    struct snap_job *j = sp_xcalloc(1, sizeof(*j));
    j->s = s;
    j->id = ++s->next_job_id;
    j->kind = kind;
    j->schema = sp_xstrdup(schema);
    j->table = sp_xstrdup(table);
    j->streams = sp_xcalloc(1, sizeof(char *));
    s->jobs = sp_xrealloc(s->jobs, sizeof(*s->jobs) * (size_t)(s->njobs + 1));
    s->jobs[s->njobs++] = j;
    return j;
}

static void job_add_stream(struct snap_job *j, const char *stream)
{
    int n = 0;
    while (j->streams[n] != NULL) {
        if (strcmp(j->streams[n], stream) == 0) {
            return;
        }
        n++;
    }
    j->streams = sp_xrealloc(j->streams, sizeof(char *) * (size_t)(n + 2));
    j->streams[n] = sp_xstrdup(stream);
    j->streams[n + 1] = NULL;
}

static int strv_len(char *const *v)
{
    int n = 0;
    while (v != NULL && v[n] != NULL) {
        n++;
    }
    return n;
}

static void chunk_free(struct snap_chunk *c)
{
    if (c == NULL) {
        return;
    }
    free(c->sql);
    strv_free(c->params, c->nparams);
    PQclear(c->res);
    free(c->xip);
    for (size_t i = 0; i < c->nlog; i++) {
        free(c->log[i].key);
    }
    free(c->log);
    free(c);
}

static void job_free(struct snap_job *j)
{
    strv_free(j->streams, strv_len(j->streams));
    strv_free(j->last_key, j->nkey);
    for (int i = 0; i < j->npend; i++) {
        strv_free(j->pend[i].key, j->nkey);
    }
    free(j->pend);
    free(j->schema);
    free(j->table);
    free(j->where);
    free(j->keyidx);
    free(j->sql_first);
    free(j->sql_next);
    sp_relation_unref(j->rel);
    chunk_free(j->chunk);
    free(j);
}

static const char *job_name(const struct snap_job *j)
{
    static __thread char buf[300];
    snprintf(buf, sizeof(buf), "%s.%s%s", j->schema, j->table,
             j->kind == JOB_INCREMENTAL ? " (on demand)" : "");
    return buf;
}

/* ---- state file ---- */

/*
 * Format (one record per line, tokens percent-encoded):
 *   siphon-snapshot-state 1 <slot>
 *   job <id> <initial|incremental> <pending|done|failed> <rows> <schema> <table>
 *       <streams,comma,separated> <where|-> <nkey> <key values...>
 */
static int state_save(struct sp_snap *s, struct sp_err *err)
{
    if (s->state_path == NULL) {
        return 0;
    }
    struct sp_buf b;
    sp_buf_init(&b);
    sp_buf_puts(&b, "siphon-snapshot-state 1 ");
    enc_put(&b, s->h.slot);
    sp_buf_putc(&b, '\n');
    for (int i = 0; i < s->njobs; i++) {
        const struct snap_job *j = s->jobs[i];
        sp_buf_printf(&b, "job %d %s %s %llu ", j->id,
                      j->kind == JOB_INITIAL ? "initial" : "incremental",
                      j->status == JOB_PENDING ? "pending"
                      : j->status == JOB_DONE  ? "done"
                                               : "failed",
                      (unsigned long long)j->rows);
        enc_put(&b, j->schema);
        sp_buf_putc(&b, ' ');
        enc_put(&b, j->table);
        sp_buf_putc(&b, ' ');
        for (int k = 0; j->streams[k] != NULL; k++) {
            if (k > 0) {
                sp_buf_putc(&b, ',');
            }
            enc_put(&b, j->streams[k]);
        }
        sp_buf_putc(&b, ' ');
        enc_put(&b, j->where);
        sp_buf_printf(&b, " %d", j->last_key != NULL ? j->nkey : 0);
        for (int k = 0; j->last_key != NULL && k < j->nkey; k++) {
            sp_buf_putc(&b, ' ');
            enc_put(&b, j->last_key[k]);
        }
        sp_buf_putc(&b, '\n');
    }
    char *tmp = sp_xasprintf("%s.tmp", s->state_path);
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = sp_err_errno(err, errno, "could not write snapshot state %s", tmp);
        goto out;
    }
    size_t off = 0;
    while (off < b.len) {
        ssize_t w = write(fd, b.data + off, b.len - off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            rc = sp_err_errno(err, errno, "could not write snapshot state %s", tmp);
            close(fd);
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        rc = sp_err_errno(err, errno, "could not fsync snapshot state %s", tmp);
        close(fd);
        goto out;
    }
    close(fd);
    if (rename(tmp, s->state_path) != 0) {
        rc = sp_err_errno(err, errno, "could not rename %s to %s", tmp, s->state_path);
        goto out;
    }
    /* The rename itself must survive a crash. */
    char *dir = sp_xstrdup(s->state_path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL) {
        *slash = '\0';
        int dfd = open(slash == dir ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    free(dir);
out:
    free(tmp);
    sp_buf_fini(&b);
    return rc;
}

static void state_save_or_warn(struct sp_snap *s)
{
    struct sp_err err;
    sp_err_clear(&err);
    if (state_save(s, &err) != 0) {
        sp_log_warn(s->log, "%s (progress is kept in memory only)", err.msg);
    }
}

/* Split a line into tokens in place. */
static int split(char *line, char **tok, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(line, " \n", &save); t != NULL && n < max;
         t = strtok_r(NULL, " \n", &save)) {
        tok[n++] = t;
    }
    return n;
}

/* 1: loaded (for this slot), 0: no file or another slot's, negative: unreadable. */
static int state_load(struct sp_snap *s, struct sp_err *err)
{
    FILE *f = fopen(s->state_path, "r");
    if (f == NULL) {
        if (errno == ENOENT) {
            return 0;
        }
        return sp_err_errno(err, errno, "could not read snapshot state %s", s->state_path);
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;
    int rc = 1;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        char *tok[64];
        int n = split(line, tok, 64);
        bool ok = true;
        if (lineno == 1) {
            char *slot = n == 3 ? enc_get(tok[2], &ok) : NULL;
            if (n != 3 || strcmp(tok[0], "siphon-snapshot-state") != 0 ||
                strcmp(tok[1], "1") != 0) {
                rc = sp_err_set(err, SP_EINVAL, "%s:1: not a siphon snapshot state file",
                                s->state_path);
            } else if (slot == NULL || strcmp(slot, s->h.slot) != 0) {
                sp_log_warn(s->log, "snapshot state %s belongs to slot \"%s\", not \"%s\": ignored",
                            s->state_path, slot ? slot : "?", s->h.slot);
                rc = 0;
            }
            free(slot);
            if (rc != 1) {
                break;
            }
            continue;
        }
        if (n < 10 || strcmp(tok[0], "job") != 0) {
            rc = sp_err_set(err, SP_EINVAL, "%s:%d: malformed line", s->state_path, lineno);
            break;
        }
        char *schema = enc_get(tok[5], &ok);
        char *table = enc_get(tok[6], &ok);
        struct snap_job *j =
            job_new(s, strcmp(tok[2], "initial") == 0 ? JOB_INITIAL : JOB_INCREMENTAL,
                    schema ? schema : "", table ? table : "");
        free(schema);
        free(table);
        j->id = atoi(tok[1]);
        if (j->id >= s->next_job_id) {
            s->next_job_id = j->id;
        }
        j->status = strcmp(tok[3], "pending") == 0 ? JOB_PENDING
                    : strcmp(tok[3], "done") == 0  ? JOB_DONE
                                                   : JOB_FAILED;
        j->rows = strtoull(tok[4], NULL, 10);
        char *save = NULL;
        for (char *st = strtok_r(tok[7], ",", &save); st != NULL; st = strtok_r(NULL, ",", &save)) {
            char *name = enc_get(st, &ok);
            if (name != NULL) {
                job_add_stream(j, name);
            }
            free(name);
        }
        j->where = enc_get(tok[8], &ok);
        int nkey = atoi(tok[9]);
        if (nkey < 0 || nkey > n - 10) {
            ok = false;
        } else if (nkey > 0) {
            j->nkey = nkey;
            j->last_key = sp_xcalloc((size_t)nkey + 1, sizeof(char *));
            for (int k = 0; k < nkey; k++) {
                j->last_key[k] = enc_get(tok[10 + k], &ok);
            }
        }
        if (!ok) {
            rc = sp_err_set(err, SP_EINVAL, "%s:%d: malformed value", s->state_path, lineno);
            break;
        }
    }
    free(line);
    fclose(f);
    if (rc < 0) {
        sp_err_hint(err, "the file is written by siphon only; remove it to snapshot again from "
                         "the start");
    }
    return rc;
}

/* ---- catalog ---- */

static int job_setup(struct sp_snap *s, struct snap_job *j, PGconn *meta, struct sp_err *err)
{
    const char *params[2] = {j->schema, j->table};
    PGresult *res = sp_pg_exec_params(
        meta,
        "SELECT c.oid, c.relkind, "
        "(SELECT coalesce(sum(greatest(p.reltuples, 0)), 0)::bigint FROM pg_class p "
        "  WHERE p.oid IN (SELECT relid FROM pg_partition_tree(c.oid))) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2",
        2, params, PGRES_TUPLES_OK, err);
    if (res == NULL) {
        sp_err_prefix(err, "snapshot of %s.%s", j->schema, j->table);
        return err->code;
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        return sp_err_set(err, SP_EINVAL, "snapshot of %s.%s: the table does not exist", j->schema,
                          j->table);
    }
    char oid[16];
    snprintf(oid, sizeof(oid), "%s", PQgetvalue(res, 0, 0));
    j->est_rows = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    PQclear(res);

    const char *op[1] = {oid};
    res = sp_pg_exec_params(meta,
                            "SELECT a.attname, a.atttypid, a.atttypmod, "
                            "format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                            "WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped "
                            "AND a.attgenerated = '' ORDER BY a.attnum",
                            1, op, PGRES_TUPLES_OK, err);
    if (res == NULL) {
        return err->code;
    }
    int ncols = PQntuples(res);
    struct sp_relation *rel = sp_xcalloc(1, sizeof(*rel));
    rel->oid = (uint32_t)strtoul(oid, NULL, 10);
    rel->version = 0;
    rel->schema = sp_xstrdup(j->schema);
    rel->table = sp_xstrdup(j->table);
    rel->replident = 'd';
    rel->ncols = ncols;
    rel->cols = sp_xcalloc((size_t)(ncols > 0 ? ncols : 1), sizeof(*rel->cols));
    rel->refs = 1;
    char **types = sp_xcalloc((size_t)ncols + 1, sizeof(char *));
    for (int i = 0; i < ncols; i++) {
        rel->cols[i].name = sp_xstrdup(PQgetvalue(res, i, 0));
        rel->cols[i].type_oid = (uint32_t)strtoul(PQgetvalue(res, i, 1), NULL, 10);
        rel->cols[i].typmod = (int32_t)strtol(PQgetvalue(res, i, 2), NULL, 10);
        types[i] = sp_xstrdup(PQgetvalue(res, i, 3));
    }
    PQclear(res);
    sp_relation_unref(j->rel);
    j->rel = rel;
    for (int i = 0; i < ncols; i++) {
        rel->cols[i].type = sp_typcache_get(s->h.tc, rel->cols[i].type_oid, err);
        if (rel->cols[i].type == NULL) {
            sp_err_prefix(err, "column \"%s\" of %s.%s", rel->cols[i].name, j->schema, j->table);
            strv_free(types, ncols);
            return err->code;
        }
    }

    /* The key: the primary key, else a unique, immediate, non-partial index on NOT NULL columns. */
    res = sp_pg_exec_params(
        meta,
        "SELECT array_to_string(array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY "
        "  k(attnum, ord) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "  ORDER BY k.ord), chr(1)) "
        "FROM pg_index i WHERE i.indrelid = $1::oid AND i.indisunique AND i.indimmediate "
        "AND i.indpred IS NULL AND i.indexprs IS NULL AND NOT EXISTS (SELECT 1 FROM "
        "  unnest(i.indkey) k(attnum) JOIN pg_attribute a ON a.attrelid = i.indrelid AND "
        "  a.attnum = k.attnum WHERE NOT a.attnotnull) "
        "ORDER BY i.indisprimary DESC, i.indisreplident DESC, i.indnatts, i.indexrelid LIMIT 1",
        1, op, PGRES_TUPLES_OK, err);
    if (res == NULL) {
        strv_free(types, ncols);
        return err->code;
    }
    free(j->keyidx);
    j->keyidx = NULL;
    int nkey = 0;
    if (PQntuples(res) == 1) {
        char *names = sp_xstrdup(PQgetvalue(res, 0, 0));
        char *save = NULL;
        for (char *n = strtok_r(names, "\x01", &save); n != NULL;
             n = strtok_r(NULL, "\x01", &save)) {
            int idx = -1;
            for (int i = 0; i < ncols; i++) {
                if (strcmp(rel->cols[i].name, n) == 0) {
                    idx = i;
                }
            }
            if (idx < 0) {
                nkey = 0;
                break;
            }
            j->keyidx = sp_xrealloc(j->keyidx, sizeof(int) * (size_t)(nkey + 1));
            j->keyidx[nkey++] = idx;
        }
        free(names);
    }
    PQclear(res);
    if (j->last_key != NULL && j->nkey != nkey) {
        sp_log_warn(s->log,
                    "%s: the key changed since the snapshot started; reading it again from "
                    "the start",
                    job_name(j));
        strv_free(j->last_key, j->nkey);
        j->last_key = NULL;
    }
    j->nkey = nkey;
    j->whole = nkey == 0;
    for (int k = 0; k < nkey; k++) {
        rel->cols[j->keyidx[k]].key = true;
    }

    /* SELECT "c1", "c2" FROM "s"."t" WHERE (k1, k2) > ($1::t1, $2::t2) AND (where) ORDER BY k1, k2
     */
    struct sp_buf sel, keys, args;
    sp_buf_init(&sel);
    sp_buf_init(&keys);
    sp_buf_init(&args);
    sp_buf_puts(&sel, "SELECT ");
    for (int i = 0; i < ncols; i++) {
        char *q = PQescapeIdentifier(meta, rel->cols[i].name, strlen(rel->cols[i].name));
        sp_buf_printf(&sel, "%s%s", i > 0 ? ", " : "", q);
        PQfreemem(q);
    }
    if (ncols == 0) {
        sp_buf_puts(&sel, "NULL");
    }
    char *qs = PQescapeIdentifier(meta, j->schema, strlen(j->schema));
    char *qt = PQescapeIdentifier(meta, j->table, strlen(j->table));
    sp_buf_printf(&sel, " FROM %s.%s", qs, qt);
    PQfreemem(qs);
    PQfreemem(qt);
    for (int k = 0; k < nkey; k++) {
        const char *name = rel->cols[j->keyidx[k]].name;
        char *q = PQescapeIdentifier(meta, name, strlen(name));
        sp_buf_printf(&keys, "%s%s", k > 0 ? ", " : "", q);
        sp_buf_printf(&args, "%s$%d::%s", k > 0 ? ", " : "", k + 1, types[j->keyidx[k]]);
        PQfreemem(q);
    }
    strv_free(types, ncols);
    int chunk = (int)s->h.conf->snapshot_chunk_size;
    free(j->sql_first);
    free(j->sql_next);
    if (j->whole) {
        j->sql_first = sp_xasprintf("%s%s%s%s", sel.data, j->where ? " WHERE (" : "",
                                    j->where ? j->where : "", j->where ? ")" : "");
        j->sql_next = NULL;
    } else {
        j->sql_first =
            sp_xasprintf("%s%s%s%s ORDER BY %s LIMIT %d", sel.data, j->where ? " WHERE (" : "",
                         j->where ? j->where : "", j->where ? ")" : "", keys.data, chunk + 1);
        j->sql_next =
            sp_xasprintf("%s WHERE (%s) > (%s)%s%s%s ORDER BY %s LIMIT %d", sel.data, keys.data,
                         args.data, j->where ? " AND (" : "", j->where ? j->where : "",
                         j->where ? ")" : "", keys.data, chunk + 1);
    }
    sp_buf_fini(&sel);
    sp_buf_fini(&keys);
    sp_buf_fini(&args);
    j->setup = true;
    return 0;
}

/* ---- workers ---- */

static PGresult *w_exec(PGconn *c, const char *sql, int n, char *const *params, ExecStatusType want,
                        struct sp_err *err)
{
    return n > 0 ? sp_pg_exec_params(c, sql, n, (const char *const *)params, want, err)
                 : sp_pg_exec(c, sql, want, err);
}

static int w_cmd(PGconn *c, const char *sql, struct sp_err *err)
{
    PGresult *r = sp_pg_exec(c, sql, PGRES_COMMAND_OK, err);
    if (r == NULL) {
        return err->code;
    }
    PQclear(r);
    return 0;
}

/* "xmin:xmax:xip,xip" (xid8 values) -> 32-bit xmax and in-progress list. */
static int parse_snapshot(struct snap_chunk *c, const char *text, struct sp_err *err)
{
    char *end;
    (void)strtoull(text, &end, 10);
    if (*end != ':') {
        return sp_err_set(err, SP_EPROTO, "unexpected snapshot \"%s\"", text);
    }
    c->xmax = (uint32_t)strtoull(end + 1, &end, 10);
    if (*end != ':') {
        return sp_err_set(err, SP_EPROTO, "unexpected snapshot \"%s\"", text);
    }
    const char *p = end + 1;
    while (*p != '\0') {
        uint64_t x = strtoull(p, &end, 10);
        if (end == p) {
            break;
        }
        c->xip = sp_xrealloc(c->xip, sizeof(uint32_t) * (size_t)(c->nxip + 1));
        c->xip[c->nxip++] = (uint32_t)x;
        p = *end == ',' ? end + 1 : end;
    }
    return 0;
}

static int w_read_chunk(struct sp_snap *s, struct snap_worker *w, struct snap_chunk *c,
                        struct sp_err *err)
{
    if (w->conn == NULL || PQstatus(w->conn) != CONNECTION_OK) {
        if (w->conn != NULL) {
            PQfinish(w->conn);
        }
        w->conn = sp_pg_connect(s->h.conf, false, err);
        if (w->conn == NULL) {
            return err->code;
        }
        if (sp_pg_pin_session(w->conn, err) != 0) {
            return err->code;
        }
    }
    PGconn *conn = w->conn;
    if (w_cmd(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", err) != 0) {
        return err->code;
    }
    PGresult *r = sp_pg_exec(conn, "SELECT pg_current_snapshot()::text", PGRES_TUPLES_OK, err);
    if (r == NULL) {
        return err->code;
    }
    int rc = parse_snapshot(c, PQgetvalue(r, 0, 0), err);
    PQclear(r);
    if (rc != 0) {
        return rc;
    }
    c->res = w_exec(conn, c->sql, c->nparams, c->params, PGRES_TUPLES_OK, err);
    if (c->res == NULL) {
        PGresult *rb = PQexec(conn, "ROLLBACK");
        PQclear(rb);
        return err->code;
    }
    if (w_cmd(conn, "COMMIT", err) != 0) {
        return err->code;
    }
    if (s->mode == SNAP_WM_MESSAGE) {
        char content[96];
        snprintf(content, sizeof(content), "%s %s %llu", s->h.slot, s->runid,
                 (unsigned long long)c->id);
        const char *p[2] = {SP_SNAP_WATERMARK, content};
        r = sp_pg_exec_params(conn, "SELECT pg_logical_emit_message(false, $1, $2)::text", 2, p,
                              PGRES_TUPLES_OK, err);
    } else {
        r = sp_pg_exec(conn, "SELECT pg_current_wal_insert_lsn()::text", PGRES_TUPLES_OK, err);
    }
    if (r == NULL) {
        return err->code;
    }
    bool ok = sp_lsn_parse(PQgetvalue(r, 0, 0), &c->pos);
    PQclear(r);
    if (!ok) {
        return sp_err_set(err, SP_EPROTO, "unexpected watermark position");
    }
    if (s->mode == SNAP_WM_LSN) {
        /* A commit record after the watermark, so the stream passes it even on an idle server. */
        r = sp_pg_exec(conn, "SELECT txid_current()", PGRES_TUPLES_OK, err);
        if (r == NULL) {
            return err->code;
        }
        PQclear(r);
    }
    return 0;
}

static void *w_main(void *arg)
{
    struct snap_worker *w = arg;
    struct sp_snap *s = w->s;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && w->task == NULL) {
            pthread_cond_wait(&s->cv, &s->mu);
        }
        if (s->stop) {
            break;
        }
        struct snap_chunk *c = w->task;
        pthread_mutex_unlock(&s->mu);
        struct sp_err err;
        sp_err_clear(&err);
        int rc = w_read_chunk(s, w, c, &err);
        pthread_mutex_lock(&s->mu);
        if (rc != 0) {
            c->err = err;
            c->state = CH_FAILED;
            if (w->conn != NULL && PQstatus(w->conn) != CONNECTION_OK) {
                PQfinish(w->conn);
                w->conn = NULL;
            } else if (w->conn != NULL && PQtransactionStatus(w->conn) != PQTRANS_IDLE) {
                PGresult *rb = PQexec(w->conn, "ROLLBACK");
                PQclear(rb);
            }
        } else {
            c->state = CH_READY;
        }
        w->task = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    if (w->conn != NULL) {
        PQfinish(w->conn);
        w->conn = NULL;
    }
    return NULL;
}

static void workers_start(struct sp_snap *s)
{
    for (int i = 0; i < s->nworkers; i++) {
        struct snap_worker *w = &s->workers[i];
        if (!w->started) {
            w->s = s;
            if (pthread_create(&w->th, NULL, w_main, w) == 0) {
                w->started = true;
            }
        }
    }
}

/* ---- lifecycle ---- */

struct sp_snap *sp_snap_new(const struct sp_snap_host *host)
{
    struct sp_snap *s = sp_xcalloc(1, sizeof(*s));
    s->h = *host;
    s->log = &host->src->log;
    s->nworkers = (int)host->conf->snapshot_connections;
    s->workers = sp_xcalloc((size_t)s->nworkers, sizeof(*s->workers));
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    snprintf(s->runid, sizeof(s->runid), "%08x%08x", (unsigned)getpid(),
             (unsigned)(sp_time_now_us() & 0xFFFFFFFF));
    if (host->src->state_dir != NULL) {
        s->state_path = sp_xasprintf("%s/%s.snapshot", host->src->state_dir, host->src->name);
    }
    return s;
}

void sp_snap_free(struct sp_snap *s)
{
    if (s == NULL) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nworkers; i++) {
        if (s->workers[i].started) {
            pthread_join(s->workers[i].th, NULL);
        }
    }
    free(s->workers);
    for (int i = 0; i < s->njobs; i++) {
        job_free(s->jobs[i]);
    }
    free(s->jobs);
    if (s->whole != NULL) {
        PQfinish(s->whole);
    }
    if (s->meta != NULL) {
        PQfinish(s->meta);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->state_path);
    free(s);
}

static bool state_knows(const struct sp_snap *s, const char *stream, const char *schema,
                        const char *table)
{
    for (int i = 0; i < s->njobs; i++) {
        const struct snap_job *j = s->jobs[i];
        if (j->kind != JOB_INITIAL || strcmp(j->schema, schema) != 0 ||
            strcmp(j->table, table) != 0) {
            continue;
        }
        for (int k = 0; j->streams[k] != NULL; k++) {
            if (strcmp(j->streams[k], stream) == 0) {
                return true;
            }
        }
    }
    return false;
}

/* Initial jobs for every (stream, table) the state does not know yet; done = already had. */
static int plan_initial(struct sp_snap *s, bool done)
{
    const struct sp_source *src = s->h.src;
    int added = 0;
    for (int i = 0; i < src->nstreams; i++) {
        const struct sp_stream_ref *st = &src->streams[i];
        for (int t = 0; t < st->ntables; t++) {
            const struct sp_table_ref *tr = &st->tables[t];
            if (state_knows(s, st->name, tr->schema, tr->table)) {
                continue;
            }
            struct snap_job *j = NULL;
            for (int k = 0; k < s->njobs && !done; k++) {
                struct snap_job *o = s->jobs[k];
                if (o->kind == JOB_INITIAL && o->status == JOB_PENDING && o->rows == 0 &&
                    o->last_key == NULL && strcmp(o->schema, tr->schema) == 0 &&
                    strcmp(o->table, tr->table) == 0) {
                    j = o;
                }
            }
            if (j == NULL) {
                j = job_new(s, JOB_INITIAL, tr->schema, tr->table);
                j->status = done ? JOB_DONE : JOB_PENDING;
            }
            job_add_stream(j, st->name);
            added++;
        }
    }
    return added;
}

static bool any_whole_pending(const struct sp_snap *s)
{
    for (int i = 0; i < s->njobs; i++) {
        if (s->jobs[i]->status == JOB_PENDING && s->jobs[i]->whole) {
            return true;
        }
    }
    return false;
}

int sp_snap_prepare(struct sp_snap *s, PGconn *meta, bool creating, bool *export_wanted,
                    struct sp_err *err)
{
    *export_wanted = false;
    if (s->state_loaded) {
        /* A reconnect: the jobs are already planned. */
        return 0;
    }
    const struct pg_conf *conf = s->h.conf;
    /* Watermarks: a logical message when the role may emit one, else WAL positions. */
    if (conf->snapshot_watermark == SP_PG_WATERMARK_AUTO) {
        PGresult *r = sp_pg_exec(meta,
                                 "SELECT has_function_privilege("
                                 "'pg_logical_emit_message(boolean,text,text)', 'EXECUTE')",
                                 PGRES_TUPLES_OK, err);
        if (r == NULL) {
            return err->code;
        }
        s->mode = strcmp(PQgetvalue(r, 0, 0), "t") == 0 ? SNAP_WM_MESSAGE : SNAP_WM_LSN;
        PQclear(r);
    } else {
        s->mode =
            conf->snapshot_watermark == SP_PG_WATERMARK_MESSAGE ? SNAP_WM_MESSAGE : SNAP_WM_LSN;
    }

    int loaded = 0;
    if (s->state_path != NULL) {
        if (mkdir(s->h.src->state_dir, 0700) != 0 && errno != EEXIST) {
            return sp_err_errno(err, errno, "could not create state_dir %s", s->h.src->state_dir);
        }
        if (!creating) {
            loaded = state_load(s, err);
            if (loaded < 0) {
                return loaded;
            }
        }
    }
    bool initial = conf->snapshot == SP_PG_SNAPSHOT_INITIAL;
    if (initial && creating && s->state_path == NULL) {
        int rc = sp_err_set(err, SP_EINVAL,
                            "snapshot: initial needs state_dir, where the snapshot's progress is "
                            "kept so that a restart resumes it");
        sp_err_hint(err, "set state_dir (e.g. state_dir: /var/lib/siphon) or snapshot: never");
        return rc;
    }
    if (initial) {
        if (creating) {
            plan_initial(s, false);
        } else if (loaded == 1) {
            int n = plan_initial(s, false);
            if (n > 0) {
                sp_log_info(s->log,
                            "%d table(s) new to their stream since the last start: "
                            "snapshotting them",
                            n);
            }
        } else if (s->state_path != NULL) {
            /* The slot exists but no state: whatever was there was read before. */
            sp_log_warn(s->log,
                        "no snapshot state in %s for existing slot \"%s\": assuming "
                        "every table was read before; use siphon snapshot to read one "
                        "again",
                        s->state_path, s->h.slot);
            plan_initial(s, true);
        }
    }
    s->state_loaded = true;
    for (int i = 0; i < s->njobs; i++) {
        struct snap_job *j = s->jobs[i];
        if (j->status != JOB_PENDING) {
            continue;
        }
        if (job_setup(s, j, meta, err) != 0) {
            return err->code;
        }
        if (j->whole) {
            if (creating) {
                *export_wanted = true;
                sp_log_info(s->log,
                            "%s has no primary key or unique NOT NULL index: it is read "
                            "whole in the slot's snapshot; this read cannot resume "
                            "after a crash",
                            job_name(j));
            } else {
                sp_log_warn(s->log,
                            "%s has no primary key or unique NOT NULL index and its "
                            "snapshot was interrupted: reading it whole again, outside "
                            "the slot's snapshot (rows changed meanwhile may appear "
                            "twice)",
                            job_name(j));
            }
        }
    }
    if (s->state_path != NULL && s->njobs > 0) {
        if (state_save(s, err) != 0) {
            return err->code;
        }
    }
    return 0;
}

void sp_snap_set_start(struct sp_snap *s, uint64_t lsn)
{
    if (lsn > s->pos) {
        s->pos = lsn;
    }
}

int sp_snap_slot_created(struct sp_snap *s, const char *snapshot_name, struct sp_err *err)
{
    if (!any_whole_pending(s)) {
        return 0;
    }
    if (s->whole != NULL) {
        PQfinish(s->whole);
    }
    s->whole = sp_pg_connect(s->h.conf, false, err);
    if (s->whole == NULL) {
        return err->code;
    }
    if (sp_pg_pin_session(s->whole, err) != 0 ||
        w_cmd(s->whole, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", err) != 0) {
        return err->code;
    }
    if (snapshot_name != NULL) {
        char *lit = PQescapeLiteral(s->whole, snapshot_name, strlen(snapshot_name));
        char *sql = sp_xasprintf("SET TRANSACTION SNAPSHOT %s", lit);
        PQfreemem(lit);
        int rc = w_cmd(s->whole, sql, err);
        free(sql);
        if (rc != 0) {
            return rc;
        }
        s->whole_imported = true;
    }
    return 0;
}

/* ---- the stream side ---- */

static int snap_request(struct sp_snap *s, const char *msg, uint32_t len, struct sp_err *err);

static struct snap_chunk *open_chunk_for(struct sp_snap *s, const struct sp_relation *rel,
                                         int *from)
{
    for (int i = *from; i < s->njobs; i++) {
        struct snap_job *j = s->jobs[i];
        if (j->chunk != NULL && strcmp(j->table, rel->table) == 0 &&
            strcmp(j->schema, rel->schema) == 0) {
            *from = i + 1;
            return j->chunk;
        }
    }
    *from = s->njobs;
    return NULL;
}

/* The key of a streamed row, in the chunk's key columns (by name). */
static bool stream_key(const struct snap_job *j, const struct sp_relation *rel,
                       const struct sp_tuple *t, struct sp_buf *out)
{
    if (t == NULL) {
        return false;
    }
    sp_buf_reset(out);
    for (int k = 0; k < j->nkey; k++) {
        const char *name = j->rel->cols[j->keyidx[k]].name;
        int idx = -1;
        for (int i = 0; i < rel->ncols; i++) {
            if (strcmp(rel->cols[i].name, name) == 0) {
                idx = i;
                break;
            }
        }
        if (idx < 0 || idx >= t->ncols || t->cols[idx].kind != SP_DATUM_TEXT) {
            return false;
        }
        key_put(out, t->cols[idx].data, t->cols[idx].len);
    }
    sp_buf_putc(out, '\0');
    return true;
}

static void log_change(struct sp_snap *s, const struct sp_event *ev)
{
    struct sp_buf key;
    sp_buf_init(&key);
    int from = 0;
    struct snap_chunk *c;
    while ((c = open_chunk_for(s, ev->rel, &from)) != NULL) {
        if (ev->op == SP_OP_TRUNCATE) {
            /* Every key of the table changed: logged as the empty key. */
            if (c->nlog == c->caplog) {
                c->caplog = c->caplog ? c->caplog * 2 : 64;
                c->log = sp_xrealloc(c->log, sizeof(*c->log) * c->caplog);
            }
            c->log[c->nlog].xid = s->xid;
            c->log[c->nlog].key = sp_xstrdup("");
            c->nlog++;
            continue;
        }
        const struct sp_tuple *tuples[2] = {ev->before, ev->after};
        for (int i = 0; i < 2; i++) {
            if (!stream_key(c->job, ev->rel, tuples[i], &key)) {
                continue;
            }
            if (c->nlog == c->caplog) {
                c->caplog = c->caplog ? c->caplog * 2 : 64;
                c->log = sp_xrealloc(c->log, sizeof(*c->log) * c->caplog);
            }
            c->log[c->nlog].xid = s->xid;
            c->log[c->nlog].key = sp_xstrdup(key.data);
            c->nlog++;
        }
    }
    sp_buf_fini(&key);
}

static bool chunk_sees(const struct snap_chunk *c, uint32_t xid)
{
    if (!xid_precedes(xid, c->xmax)) {
        return false;
    }
    for (int i = 0; i < c->nxip; i++) {
        if (c->xip[i] == xid) {
            return false;
        }
    }
    return true;
}

static void job_log_progress(struct sp_snap *s, struct snap_job *j, bool force)
{
    int64_t now = sp_time_mono_ms();
    if (!force && now - j->last_log_ms < SNAP_LOG_EVERY_MS) {
        return;
    }
    j->last_log_ms = now;
    double secs = (double)(now - j->started_ms) / 1000.0;
    double rate = secs > 0 ? (double)(j->rows - j->rows_at_start) / secs : 0;
    if (j->status == JOB_DONE) {
        sp_log_info(s->log, "snapshot of %s done: %llu rows in %.1f s (%.0f rows/s)", job_name(j),
                    (unsigned long long)j->rows, secs, rate);
        return;
    }
    if (j->est_rows > 0 && j->where == NULL) {
        double pct = 100.0 * (double)j->rows / (double)j->est_rows;
        double eta = rate > 0 && (double)j->est_rows > (double)j->rows
                         ? ((double)j->est_rows - (double)j->rows) / rate
                         : 0;
        sp_log_info(s->log, "snapshot of %s: %llu rows, %.0f rows/s, %.0f%% of ~%lld, ETA %.0f s",
                    job_name(j), (unsigned long long)j->rows, rate, pct > 100 ? 100 : pct,
                    (long long)j->est_rows, eta);
    } else {
        sp_log_info(s->log, "snapshot of %s: %llu rows, %.0f rows/s", job_name(j),
                    (unsigned long long)j->rows, rate);
    }
}

static bool initial_others_pending(const struct sp_snap *s, const struct snap_job *self)
{
    for (int i = 0; i < s->njobs; i++) {
        const struct snap_job *j = s->jobs[i];
        if (j != self && j->kind == JOB_INITIAL && j->status == JOB_PENDING && !j->final_emitted) {
            return true;
        }
    }
    return false;
}

/* Acknowledged: the chunk's rows are durable downstream; advance and save. */
static void job_done_cb(void *ctx)
{
    struct snap_job *j = ctx;
    struct sp_snap *s = j->s;
    if (j->npend == 0) {
        return;
    }
    struct snap_pending p = j->pend[0];
    memmove(j->pend, j->pend + 1, sizeof(*j->pend) * (size_t)(j->npend - 1));
    j->npend--;
    j->awaiting_ack = j->npend > 0;
    j->rows += p.rows;
    if (p.key != NULL) {
        strv_free(j->last_key, j->nkey);
        j->last_key = p.key;
    }
    if (p.final) {
        j->status = JOB_DONE;
    }
    state_save_or_warn(s);
    job_log_progress(s, j, j->status == JOB_DONE);
}

/* Emit rows [0, n) of res as one pseudo-transaction at the current stream position. */
static int emit_rows(struct sp_snap *s, struct snap_job *j, PGresult *res, int n, char **dropset,
                     size_t ndrop, bool final, struct sp_err *err)
{
    struct sp_source *src = s->h.src;
    uint64_t at = s->pos;
    if (at != s->id_lsn) {
        s->id_lsn = at;
        s->id_n = 0;
    }
    struct sp_event *b = sp_event_new(SP_OP_BEGIN, 64);
    b->commit_lsn = at;
    b->lsn = at;
    b->source_name = src->name;
    b->db = *s->h.db;
    int rc = src->emit(src->emit_ctx, b, err);
    if (rc != 0) {
        return rc;
    }
    bool last_overall = final && j->kind == JOB_INITIAL && !initial_others_pending(s, j);
    int64_t now_us = sp_time_now_us();
    struct sp_buf key;
    sp_buf_init(&key);
    int ncols = PQnfields(res);
    uint64_t emitted = 0;
    int last_kept = -1;
    for (int r = 0; r < n; r++) {
        if (ndrop > 0 && j->nkey > 0) {
            sp_buf_reset(&key);
            for (int k = 0; k < j->nkey; k++) {
                key_put(&key, PQgetvalue(res, r, j->keyidx[k]),
                        (size_t)PQgetlength(res, r, j->keyidx[k]));
            }
            sp_buf_putc(&key, '\0');
            const char *kp = key.data;
            if (bsearch(&kp, dropset, ndrop, sizeof(char *), key_cmp) != NULL) {
                continue;
            }
        }
        last_kept = r;
    }
    for (int r = 0; r <= last_kept; r++) {
        if (ndrop > 0 && j->nkey > 0) {
            sp_buf_reset(&key);
            for (int k = 0; k < j->nkey; k++) {
                key_put(&key, PQgetvalue(res, r, j->keyidx[k]),
                        (size_t)PQgetlength(res, r, j->keyidx[k]));
            }
            sp_buf_putc(&key, '\0');
            const char *kp = key.data;
            if (bsearch(&kp, dropset, ndrop, sizeof(char *), key_cmp) != NULL) {
                continue;
            }
        }
        size_t hint = 256;
        for (int c = 0; c < ncols; c++) {
            hint += (size_t)PQgetlength(res, r, c) + 1;
        }
        struct sp_event *ev = sp_event_new(SP_OP_READ, hint);
        ev->rel = sp_relation_ref(j->rel);
        ev->after = sp_event_tuple(ev, j->rel->ncols);
        for (int c = 0; c < ncols && c < j->rel->ncols; c++) {
            struct sp_datum *d = &ev->after->cols[c];
            if (PQgetisnull(res, r, c)) {
                d->kind = SP_DATUM_NULL;
                continue;
            }
            int len = PQgetlength(res, r, c);
            char *v = sp_event_alloc(ev, (size_t)len + 1);
            memcpy(v, PQgetvalue(res, r, c), (size_t)len);
            v[len] = '\0';
            d->kind = SP_DATUM_TEXT;
            d->len = (uint32_t)len;
            d->data = v;
        }
        ev->lsn = at;
        ev->commit_lsn = at;
        ev->seq = (uint32_t)(++emitted);
        ev->commit_time_us = now_us;
        ev->source_name = src->name;
        ev->db = *s->h.db;
        ev->streams = (const char *const *)j->streams;
        ev->snapshot = j->kind == JOB_INCREMENTAL         ? "incremental"
                       : (last_overall && r == last_kept) ? "last"
                                                          : "true";
        char idbuf[SP_EVENT_ID_BUFSZ];
        snprintf(idbuf, sizeof(idbuf), SP_LSN_FMT ":r%llu", SP_LSN_ARGS(at),
                 (unsigned long long)++s->id_n);
        char *id = sp_event_alloc(ev, strlen(idbuf) + 1);
        memcpy(id, idbuf, strlen(idbuf) + 1);
        ev->id_override = id;
        rc = src->emit(src->emit_ctx, ev, err);
        if (rc != 0) {
            sp_buf_fini(&key);
            return rc;
        }
    }
    sp_buf_fini(&key);
    j->final_emitted = final;
    j->pend = sp_xrealloc(j->pend, sizeof(*j->pend) * (size_t)(j->npend + 1));
    struct snap_pending *p = &j->pend[j->npend++];
    p->rows = emitted;
    p->final = final;
    p->key = NULL;
    if (n > 0 && j->nkey > 0) {
        p->key = sp_xcalloc((size_t)j->nkey + 1, sizeof(char *));
        for (int k = 0; k < j->nkey; k++) {
            p->key[k] = sp_xstrdup(PQgetvalue(res, n - 1, j->keyidx[k]));
        }
    }
    j->awaiting_ack = true;
    struct sp_event *cm = sp_event_new(SP_OP_COMMIT, 64);
    cm->commit_lsn = at;
    cm->end_lsn = at;
    cm->lsn = at;
    cm->on_done = job_done_cb;
    cm->on_done_ctx = j;
    return src->emit(src->emit_ctx, cm, err);
}

static int emit_chunk(struct sp_snap *s, struct snap_job *j, struct sp_err *err)
{
    struct snap_chunk *c = j->chunk;
    int rows = PQntuples(c->res);
    int chunk = (int)s->h.conf->snapshot_chunk_size;
    bool final = rows <= chunk;
    int n = final ? rows : chunk;
    /* Keys changed by a transaction this chunk's snapshot does not see: the stream wins. */
    char **drop = NULL;
    size_t ndrop = 0;
    for (size_t i = 0; i < c->nlog; i++) {
        if (!chunk_sees(c, c->log[i].xid) && c->log[i].key[0] == '\0') {
            /* Truncated meanwhile: none of the chunk's rows is current. */
            n = 0;
        }
        if (!chunk_sees(c, c->log[i].xid)) {
            drop = sp_xrealloc(drop, sizeof(char *) * (ndrop + 1));
            drop[ndrop++] = c->log[i].key;
        }
    }
    if (ndrop > 1) {
        qsort(drop, ndrop, sizeof(char *), key_cmp);
    }
    if (ndrop > 0) {
        sp_log_debug(s->log,
                     "%s: %zu key(s) changed while the chunk was read; the stream's "
                     "values win",
                     job_name(j), ndrop);
    }
    int rc = emit_rows(s, j, c->res, n, drop, ndrop, final, err);
    free(drop);
    j->chunk = NULL;
    s->nopen--;
    chunk_free(c);
    return rc;
}

/* Did a transaction streamed before the chunk was registered stay invisible to it? */
static bool chunk_raced(const struct sp_snap *s, const struct snap_chunk *c)
{
    for (int i = 0; i < c->nxip; i++) {
        uint64_t lo = s->ring_seq > SNAP_RING ? s->ring_seq - SNAP_RING : 0;
        for (uint64_t q = lo; q < c->reg_seq && q < s->ring_seq; q++) {
            if (s->ring[q % SNAP_RING] == c->xip[i]) {
                return true;
            }
        }
    }
    return false;
}

static int chunks_emit_ready(struct sp_snap *s, struct sp_err *err)
{
    if (s->in_txn || s->nopen == 0) {
        return 0;
    }
    for (int i = 0; i < s->njobs; i++) {
        struct snap_job *j = s->jobs[i];
        struct snap_chunk *c = j->chunk;
        if (c == NULL) {
            continue;
        }
        pthread_mutex_lock(&s->mu);
        int state = c->state;
        pthread_mutex_unlock(&s->mu);
        if (state != CH_READY || (s->pos < c->pos && !c->marker_seen)) {
            continue;
        }
        int rc = emit_chunk(s, j, err);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

bool sp_snap_on_event(struct sp_snap *s, struct sp_event *ev, struct sp_err *err, int *rc)
{
    *rc = 0;
    switch (ev->op) {
    case SP_OP_BEGIN:
        /* A transaction cut by a lost connection is resent whole: not inside one now. */
        s->in_txn = false;
        /* Every transaction committed before this one has been handled. */
        if (ev->commit_lsn > s->pos) {
            s->pos = ev->commit_lsn;
        }
        *rc = chunks_emit_ready(s, err);
        s->in_txn = true;
        s->xid = ev->xid;
        s->ring[s->ring_seq % SNAP_RING] = ev->xid;
        s->ring_seq++;
        return false;
    case SP_OP_COMMIT:
        s->in_txn = false;
        if (ev->end_lsn > s->pos) {
            s->pos = ev->end_lsn;
        }
        return false;
    case SP_OP_MESSAGE:
        if (ev->msg_prefix == NULL ||
            strncmp(ev->msg_prefix, SP_SNAP_MSG_PREFIX, strlen(SP_SNAP_MSG_PREFIX)) != 0) {
            return false;
        }
        if (strcmp(ev->msg_prefix, SP_SNAP_WATERMARK) == 0) {
            char want[96];
            for (int i = 0; i < s->njobs; i++) {
                struct snap_chunk *c = s->jobs[i]->chunk;
                if (c == NULL) {
                    continue;
                }
                int n = snprintf(want, sizeof(want), "%s %s %llu", s->h.slot, s->runid,
                                 (unsigned long long)c->id);
                if (n > 0 && (uint32_t)n == ev->msg_len &&
                    memcmp(want, ev->msg_content, ev->msg_len) == 0) {
                    c->marker_seen = true;
                }
            }
            if (!ev->msg_transactional && ev->lsn > s->pos) {
                s->pos = ev->lsn;
            }
            *rc = chunks_emit_ready(s, err);
        } else if (strcmp(ev->msg_prefix, SP_SNAP_REQUEST) == 0) {
            *rc = snap_request(s, ev->msg_content, ev->msg_len, err);
        }
        return true;
    case SP_OP_INSERT:
    case SP_OP_UPDATE:
    case SP_OP_DELETE:
    case SP_OP_TRUNCATE:
        if (s->nopen > 0 && ev->rel != NULL) {
            log_change(s, ev);
        }
        return false;
    default:
        return false;
    }
}

int sp_snap_on_position(struct sp_snap *s, uint64_t wal_end, struct sp_err *err)
{
    if (s->in_txn) {
        return 0;
    }
    if (wal_end > s->pos) {
        s->pos = wal_end;
    }
    return chunks_emit_ready(s, err);
}

/* ---- on-demand requests: a logical message written by `siphon snapshot` ---- */

static PGconn *snap_meta(struct sp_snap *s, struct sp_err *err)
{
    if (s->meta != NULL && PQstatus(s->meta) == CONNECTION_OK) {
        return s->meta;
    }
    if (s->meta != NULL) {
        PQfinish(s->meta);
    }
    s->meta = sp_pg_connect(s->h.conf, false, err);
    return s->meta;
}

/*
 * The message: lines "key value" (values percent-encoded): slot, stream,
 * table (schema.table, optional: every table of the stream), where
 * (optional), id.
 */
static int snap_request(struct sp_snap *s, const char *msg, uint32_t len, struct sp_err *err)
{
    (void)err;
    char *text = sp_xstrndup(msg, len);
    char *slot = NULL, *stream = NULL, *table = NULL, *where = NULL, *id = NULL;
    bool ok = true;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *sp = strchr(line, ' ');
        if (sp == NULL) {
            continue;
        }
        *sp = '\0';
        char **dst = strcmp(line, "slot") == 0     ? &slot
                     : strcmp(line, "stream") == 0 ? &stream
                     : strcmp(line, "table") == 0  ? &table
                     : strcmp(line, "where") == 0  ? &where
                     : strcmp(line, "id") == 0     ? &id
                                                   : NULL;
        if (dst != NULL) {
            free(*dst);
            *dst = enc_get(sp + 1, &ok);
        }
    }
    free(text);
    if (slot == NULL || strcmp(slot, s->h.slot) != 0) {
        goto out; /* for another siphon */
    }
    const struct sp_stream_ref *st = NULL;
    for (int i = 0; i < s->h.src->nstreams; i++) {
        if (stream != NULL && strcmp(s->h.src->streams[i].name, stream) == 0) {
            st = &s->h.src->streams[i];
        }
    }
    if (!ok || st == NULL) {
        sp_log_error(s->log, "snapshot request %s ignored: %s", id ? id : "?",
                     !ok ? "malformed request" : "no such stream on this source");
        goto out;
    }
    int added = 0;
    for (int t = 0; t < st->ntables; t++) {
        const struct sp_table_ref *tr = &st->tables[t];
        if (table != NULL) {
            char *q = sp_xasprintf("%s.%s", tr->schema, tr->table);
            bool match = strcmp(q, table) == 0 ||
                         (strchr(table, '.') == NULL && strcmp(tr->table, table) == 0);
            free(q);
            if (!match) {
                continue;
            }
        }
        struct snap_job *j = job_new(s, JOB_INCREMENTAL, tr->schema, tr->table);
        job_add_stream(j, st->name);
        j->where = where != NULL ? sp_xstrdup(where) : NULL;
        struct sp_err jerr;
        sp_err_clear(&jerr);
        PGconn *meta = snap_meta(s, &jerr);
        if (meta == NULL || job_setup(s, j, meta, &jerr) != 0) {
            sp_log_error(s->log, "snapshot request %s: %s", id ? id : "?", jerr.msg);
            j->status = JOB_FAILED;
            continue;
        }
        if (j->whole) {
            sp_log_error(s->log,
                         "snapshot request %s: %s has no primary key or unique NOT NULL "
                         "index; on-demand snapshots read by key",
                         id ? id : "?", job_name(j));
            j->status = JOB_FAILED;
            continue;
        }
        sp_log_info(s->log, "snapshot request %s: re-reading %s for stream \"%s\"%s%s",
                    id ? id : "?", job_name(j), st->name, where ? " where " : "",
                    where ? where : "");
        added++;
    }
    if (added == 0 && table != NULL) {
        sp_log_error(s->log, "snapshot request %s: stream \"%s\" has no table %s", id ? id : "?",
                     st->name, table);
    }
    state_save_or_warn(s);
out:
    free(slot);
    free(stream);
    free(table);
    free(where);
    free(id);
    return 0;
}

int sp_snap_encode_request(struct sp_buf *out, const char *slot, const char *stream,
                           const char *table, const char *where, const char *id)
{
    const char *keys[] = {"slot", "stream", "table", "where", "id"};
    const char *vals[] = {slot, stream, table, where, id};
    for (size_t i = 0; i < 5; i++) {
        if (vals[i] == NULL) {
            continue;
        }
        sp_buf_printf(out, "%s ", keys[i]);
        enc_put(out, vals[i]);
        sp_buf_putc(out, '\n');
    }
    return 0;
}

/* ---- service ---- */

static struct snap_job *whole_job(const struct sp_snap *s)
{
    for (int i = 0; i < s->njobs; i++) {
        if (s->jobs[i]->status == JOB_PENDING && s->jobs[i]->whole && !s->jobs[i]->final_emitted) {
            return s->jobs[i];
        }
    }
    return NULL;
}

/* One batch of a table read whole; the stream waits until every such table is read. */
static int whole_step(struct sp_snap *s, struct snap_job *j, struct sp_err *err)
{
    if (s->whole == NULL) {
        if (sp_snap_slot_created(s, NULL, err) != 0) {
            return err->code;
        }
    }
    if (!s->whole_cursor) {
        char *sql = sp_xasprintf("DECLARE siphon_whole NO SCROLL CURSOR FOR %s", j->sql_first);
        int rc = w_cmd(s->whole, sql, err);
        free(sql);
        if (rc != 0) {
            return rc;
        }
        s->whole_cursor = true;
        j->started_ms = sp_time_mono_ms();
        j->rows_at_start = j->rows;
        sp_log_info(s->log, "snapshot of %s started (~%lld rows, read whole)", job_name(j),
                    (long long)j->est_rows);
    }
    char sql[64];
    int chunk = (int)s->h.conf->snapshot_chunk_size;
    snprintf(sql, sizeof(sql), "FETCH %d FROM siphon_whole", chunk);
    PGresult *res = sp_pg_exec(s->whole, sql, PGRES_TUPLES_OK, err);
    if (res == NULL) {
        return err->code;
    }
    int n = PQntuples(res);
    bool final = n < chunk;
    int rc = emit_rows(s, j, res, n, NULL, 0, final, err);
    PQclear(res);
    if (rc != 0) {
        return rc;
    }
    if (!final) {
        job_log_progress(s, j, false);
        return 0;
    }
    w_cmd(s->whole, "CLOSE siphon_whole", err);
    s->whole_cursor = false;
    if (whole_job(s) == NULL) {
        sp_err_clear(err);
        PGresult *r = PQexec(s->whole, "COMMIT");
        PQclear(r);
        PQfinish(s->whole);
        s->whole = NULL;
    }
    return 0;
}

static struct snap_worker *free_worker(struct sp_snap *s)
{
    for (int i = 0; i < s->nworkers; i++) {
        bool busy = s->workers[i].task != NULL;
        /* A worker whose last chunk is still being emitted is free to read the next. */
        if (!busy) {
            return &s->workers[i];
        }
    }
    return NULL;
}

static void chunk_start(struct sp_snap *s, struct snap_job *j, struct snap_worker *w)
{
    struct snap_chunk *c = sp_xcalloc(1, sizeof(*c));
    c->job = j;
    c->state = CH_READING;
    c->id = ++s->next_chunk_id;
    c->reg_seq = s->ring_seq;
    if (j->last_key != NULL) {
        c->sql = sp_xstrdup(j->sql_next);
        c->nparams = j->nkey;
        c->params = strv_dup(j->last_key, j->nkey);
    } else {
        c->sql = sp_xstrdup(j->sql_first);
    }
    if (j->started_ms == 0) {
        j->started_ms = sp_time_mono_ms();
        j->rows_at_start = j->rows;
        j->last_log_ms = j->started_ms;
        sp_log_info(s->log, "snapshot of %s %s (~%lld rows, chunks of %d, %s watermarks)",
                    job_name(j), j->last_key != NULL ? "resumed" : "started",
                    (long long)j->est_rows, (int)s->h.conf->snapshot_chunk_size,
                    s->mode == SNAP_WM_MESSAGE ? "message" : "lsn");
    }
    j->chunk = c;
    s->nopen++;
    workers_start(s);
    pthread_mutex_lock(&s->mu);
    w->task = c;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int sp_snap_service(struct sp_snap *s, bool in_txn, struct sp_err *err)
{
    if (!s->state_loaded || s->njobs == 0) {
        return 0;
    }
    struct snap_job *wj = whole_job(s);
    if (wj != NULL) {
        if (in_txn) {
            return 1;
        }
        int rc = whole_step(s, wj, err);
        if (rc != 0) {
            sp_err_prefix(err, "snapshot of %s", job_name(wj));
            return rc;
        }
        return whole_job(s) != NULL ? 1 : 0;
    }
    int64_t now = sp_time_mono_ms();
    for (int i = 0; i < s->njobs; i++) {
        struct snap_job *j = s->jobs[i];
        struct snap_chunk *c = j->chunk;
        if (c == NULL) {
            continue;
        }
        pthread_mutex_lock(&s->mu);
        int state = c->state;
        pthread_mutex_unlock(&s->mu);
        if (state == CH_FAILED) {
            bool permanent = c->err.code == SP_ESERVER;
            j->failures++;
            j->chunk = NULL;
            s->nopen--;
            if (permanent) {
                sp_log_error(s->log, "snapshot of %s failed: %s", job_name(j), c->err.msg);
                j->status = JOB_FAILED;
                state_save_or_warn(s);
            } else {
                int64_t backoff = 500;
                for (int k = 1; k < j->failures && backoff < 30000; k++) {
                    backoff *= 2;
                }
                j->retry_at_ms = now + (backoff > 30000 ? 30000 : backoff);
                sp_log_warn(s->log,
                            "snapshot of %s: reading a chunk failed (%s); retrying in %lld ms",
                            job_name(j), c->err.msg, (long long)(j->retry_at_ms - now));
            }
            chunk_free(c);
        } else if (state == CH_READY && chunk_raced(s, c)) {
            /* A transaction already streamed was still in progress for the chunk's snapshot. */
            sp_log_debug(s->log, "%s: chunk raced a commit; reading it again", job_name(j));
            j->chunk = NULL;
            s->nopen--;
            chunk_free(c);
        }
    }
    if (!in_txn) {
        int rc = chunks_emit_ready(s, err);
        if (rc != 0) {
            return rc;
        }
    }
    for (int i = 0; i < s->njobs; i++) {
        struct snap_job *j = s->jobs[i];
        if (j->status != JOB_PENDING || j->whole || !j->setup || j->chunk != NULL ||
            j->awaiting_ack || j->final_emitted || now < j->retry_at_ms) {
            continue;
        }
        struct snap_worker *w = free_worker(s);
        if (w == NULL) {
            break;
        }
        chunk_start(s, j, w);
    }
    return 0;
}

int sp_snap_wait_ms(const struct sp_snap *s)
{
    for (int i = 0; i < s->njobs; i++) {
        if (s->jobs[i]->status == JOB_PENDING) {
            return 20;
        }
    }
    return -1;
}

int sp_pg_request_snapshot(struct sp_source *src, const char *stream, const char *table,
                           const char *where, struct sp_err *err)
{
    struct pg_conf *conf = src->conf;
    char *slot = conf->slot != NULL ? sp_xstrdup(conf->slot) : sp_pg_default_name(src->name);
    PGconn *conn = sp_pg_connect(conf, false, err);
    if (conn == NULL) {
        free(slot);
        return err->code;
    }
    char id[40];
    snprintf(id, sizeof(id), "%08x%08x", (unsigned)getpid(),
             (unsigned)(sp_time_now_us() & 0xFFFFFFFF));
    struct sp_buf msg;
    sp_buf_init(&msg);
    sp_snap_encode_request(&msg, slot, stream, table, where, id);
    sp_buf_putc(&msg, '\0');
    const char *p[2] = {SP_SNAP_REQUEST, msg.data};
    PGresult *r = sp_pg_exec_params(conn, "SELECT pg_logical_emit_message(true, $1, $2)::text", 2,
                                    p, PGRES_TUPLES_OK, err);
    int rc = 0;
    if (r == NULL) {
        sp_err_prefix(err, "could not write the snapshot request into the WAL");
        sp_err_hint(err, "the role needs EXECUTE on pg_logical_emit_message (granted to PUBLIC "
                         "by default)");
        rc = err->code;
    } else {
        printf("requested snapshot %s of stream \"%s\"%s%s%s%s at %s through slot \"%s\"; the "
               "running siphon logs its progress\n",
               id, stream, table ? ", table " : "", table ? table : "", where ? " where " : "",
               where ? where : "", PQgetvalue(r, 0, 0), slot);
        PQclear(r);
    }
    sp_buf_fini(&msg);
    PQfinish(conn);
    free(slot);
    return rc;
}
