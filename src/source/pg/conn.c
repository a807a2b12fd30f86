// SPDX-License-Identifier: Apache-2.0
/*
 * Source "postgres": the logical replication connection. Sets up the
 * publication and the slot, starts pgoutput streaming, frames CopyData
 * ('w' XLogData, 'k' keepalive), feeds the decoder, answers keepalives,
 * sends standby status updates with the confirmed position, and reconnects
 * with backoff when the connection is lost.
 *
 * What it does not do: decode message bodies (pgoutput.c), convert values
 * (types.c), or decide what may be confirmed (core/checkpoint.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/plugin.h"
#include "source/pg/pg.h"
#include "source/pg/pgoutput.h"
#include "source/pg/relcache.h"
#include "source/pg/snapshot.h"
#include "source/pg/types.h"
#include "util/lsn.h"
#include "util/mem.h"
#include "util/time.h"

static const char *const pg_snapshot_names[] = {"never", "initial", NULL};
static const char *const pg_watermark_names[] = {"auto", "message", "lsn", NULL};

static const struct sp_opt pg_opts[] = {
    SP_OPT_STR("connection", struct pg_conf, connection, NULL, SP_OPT_REQUIRED | SP_OPT_SECRET,
               "libpq connection string or URI of the database (its password is never printed)"),
    SP_OPT_STR("slot", struct pg_conf, slot, NULL, 0,
               "logical replication slot (pgoutput); created if absent; default siphon_<source>"),
    SP_OPT_STR("publication", struct pg_conf, publication, NULL, 0,
               "publication for the streams' tables; created if absent; default siphon_<source>"),
    SP_OPT_ENUM("snapshot", struct pg_conf, snapshot, "initial", pg_snapshot_names,
                "initial: when siphon creates the slot, read every table of its streams (and "
                "later, tables added to a stream) while streaming; never: changes only"),
    SP_OPT_INT("snapshot_chunk_size", struct pg_conf, snapshot_chunk_size, "4096", 1, 1000000,
               "rows per snapshot chunk (read in primary key order)"),
    SP_OPT_INT("snapshot_connections", struct pg_conf, snapshot_connections, "2", 1, 64,
               "connections reading snapshot chunks of different tables in parallel"),
    SP_OPT_ENUM("snapshot_watermark", struct pg_conf, snapshot_watermark, "auto",
                pg_watermark_names,
                "how chunk watermarks travel through the slot: message "
                "(pg_logical_emit_message), lsn (WAL positions; no privilege needed) or auto "
                "(message when the role may call pg_logical_emit_message)"),
    SP_OPT_BOOL("create_slot", struct pg_conf, create_slot, "true",
                "create the slot when it does not exist (false: missing slot is an error)"),
    SP_OPT_BOOL("create_publication", struct pg_conf, create_publication, "true",
                "create the publication when it does not exist"),
    SP_OPT_DURATION("status_interval", struct pg_conf, status_interval_ms, "10s", 100, 3600000,
                    "how often to send standby status updates (the confirmed position)"),
    SP_OPT_DURATION("connect_timeout", struct pg_conf, connect_timeout_ms, "10s", 1000, 600000,
                    "give up a connection attempt after this long"),
    SP_OPT_DURATION("reconnect_min", struct pg_conf, reconnect_min_ms, "500ms", 10, 600000,
                    "first wait before reconnecting after the connection is lost"),
    SP_OPT_DURATION("reconnect_max", struct pg_conf, reconnect_max_ms, "30s", 100, 3600000,
                    "longest wait between reconnection attempts (exponential backoff, jittered)"),
    SP_OPT_END,
};

struct pg_state {
    struct pg_conf *conf;
    struct sp_source *src;
    char *slot;        /* owned: conf->slot or the default */
    char *publication; /* owned */
    PGconn *repl;      /* replication connection */
    PGconn *meta;      /* normal connection: pg_type lookups */
    char *db;
    struct sp_relcache *rc;
    struct sp_typcache *tc;
    struct sp_pgo dec;
    bool streaming;
    uint64_t received;  /* highest WAL position seen */
    uint64_t confirmed; /* flush position to report */
    uint64_t reported;  /* flush position last sent */
    int64_t last_status_ms;
    int64_t reconnect_at_ms; /* when streaming == false */
    int attempts;
    struct sp_event_list out;
    struct sp_snap *snap;
};

static int pg_lookup_type(void *ctx, uint32_t oid, struct sp_typinfo *out, struct sp_err *err);

/* ---- connection setup ---- */

int sp_pg_pin_session(PGconn *conn, struct sp_err *err)
{
    /*
     * Values are formatted by the server with its session settings; pin
     * them so the output never depends on the server's or role's defaults.
     */
    static const char *const sets[] = {
        "SET TimeZone = 'UTC'",
        "SET DateStyle = 'ISO, MDY'",
        "SET IntervalStyle = 'iso_8601'",
        "SET extra_float_digits = 3",
        "SET bytea_output = 'hex'",
        "SET lc_monetary = 'C'",
        /* Text reaches us in the server's UTF-8 whatever the role or database says. */
        "SET client_encoding = 'UTF8'",
        /* reg* values (regclass, regtype...) printed schema-qualified, never quoted at will. */
        "SET search_path = ''",
        "SET quote_all_identifiers = off",
    };
    for (size_t i = 0; i < SP_ARRAY_LEN(sets); i++) {
        PGresult *res = sp_pg_exec(conn, sets[i], PGRES_COMMAND_OK, err);
        if (res == NULL) {
            sp_err_prefix(err, "could not pin session setting (%s)", sets[i]);
            return err->code;
        }
        PQclear(res);
    }
    return 0;
}

static int pg_check_wal_level(PGconn *conn, struct sp_err *err)
{
    PGresult *res = sp_pg_exec(conn, "SHOW wal_level", PGRES_TUPLES_OK, err);
    if (res == NULL) {
        return err->code;
    }
    int rc = 0;
    if (strcmp(PQgetvalue(res, 0, 0), "logical") != 0) {
        rc = sp_err_set(err, SP_EUNSUPP,
                        "the server runs with wal_level = %s; logical "
                        "replication needs wal_level = logical",
                        PQgetvalue(res, 0, 0));
        sp_err_hint(err, "run ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL");
    }
    PQclear(res);
    return rc;
}

static int pg_create_slot(struct pg_state *st, bool export_snapshot, struct sp_err *err)
{
    char *ident = PQescapeIdentifier(st->repl, st->slot, strlen(st->slot));
    char *sql = sp_xasprintf("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput %s", ident,
                             export_snapshot ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT");
    PQfreemem(ident);
    PGresult *res = sp_pg_exec(st->repl, sql, PGRES_TUPLES_OK, err);
    free(sql);
    if (res == NULL) {
        sp_err_prefix(err, "could not create replication slot \"%s\"", st->slot);
        if (strstr(err->msg, "max_replication_slots") != NULL ||
            strstr(err->msg, "all replication slots are in use") != NULL) {
            sp_err_hint(err, "raise max_replication_slots, or drop unused slots (siphon slots "
                             "--drop)");
        }
        return err->code;
    }
    sp_log_info(&st->src->log, "created replication slot \"%s\" at %s", st->slot,
                PQgetvalue(res, 0, 1));
    uint64_t start = 0;
    if (sp_lsn_parse(PQgetvalue(res, 0, 1), &start)) {
        sp_snap_set_start(st->snap, start);
    }
    /* Import the exported snapshot before the next command on this connection ends it. */
    int rc = sp_snap_slot_created(
        st->snap, export_snapshot && !PQgetisnull(res, 0, 2) ? PQgetvalue(res, 0, 2) : NULL, err);
    PQclear(res);
    if (rc != 0) {
        sp_err_prefix(err, "could not read the slot's snapshot");
    }
    return rc;
}

static int pg_start(struct pg_state *st, struct sp_err *err)
{
    char *ident = PQescapeIdentifier(st->repl, st->slot, strlen(st->slot));
    char *pubident = PQescapeIdentifier(st->repl, st->publication, strlen(st->publication));
    char *publit = PQescapeLiteral(st->repl, pubident, strlen(pubident));
    char *sql = sp_xasprintf("START_REPLICATION SLOT %s LOGICAL 0/0 (proto_version '1', "
                             "publication_names %s, messages 'true')",
                             ident, publit);
    PQfreemem(ident);
    PQfreemem(pubident);
    PQfreemem(publit);
    PGresult *res = PQexec(st->repl, sql);
    free(sql);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_COPY_BOTH) {
        rc = sp_err_set(err, PQstatus(st->repl) == CONNECTION_OK ? SP_ESERVER : SP_ECONN,
                        "could not start replication on slot \"%s\": %s", st->slot,
                        res ? sp_pq_resmsg(res) : sp_pq_connmsg(st->repl));
        if (strstr(err->msg, "is active for PID") != NULL) {
            /* After a lost connection the old walsender may not have noticed yet. */
            err->retriable = true;
            sp_err_hint(err, "another process streams from this slot; each slot can have one "
                             "reader");
        }
    }
    PQclear(res);
    return rc;
}

static void pg_disconnect(struct pg_state *st)
{
    if (st->repl != NULL) {
        PQfinish(st->repl);
        st->repl = NULL;
    }
    if (st->meta != NULL) {
        PQfinish(st->meta);
        st->meta = NULL;
    }
    st->streaming = false;
}

/* Connect both connections, set up publication and slot, start streaming. */
static int pg_connect_and_start(struct pg_state *st, struct sp_err *err)
{
    const struct pg_conf *conf = st->conf;
    int rc;
    st->meta = sp_pg_connect(conf, false, err);
    if (st->meta == NULL) {
        return err->code;
    }
    st->repl = sp_pg_connect(conf, true, err);
    if (st->repl == NULL) {
        return err->code;
    }
    if ((rc = pg_check_wal_level(st->repl, err)) != 0) {
        err->retriable = false;
        return rc;
    }
    PGresult *res = sp_pg_exec(st->repl, "IDENTIFY_SYSTEM", PGRES_TUPLES_OK, err);
    if (res == NULL) {
        sp_err_prefix(err, "IDENTIFY_SYSTEM failed");
        return err->code;
    }
    free(st->db);
    st->db = sp_xstrdup(PQgetisnull(res, 0, 3) ? PQdb(st->repl) : PQgetvalue(res, 0, 3));
    sp_log_debug(&st->src->log, "connected: system %s, timeline %s, WAL at %s, database %s",
                 PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2), st->db);
    PQclear(res);
    st->dec.db = st->db;

    if ((rc = sp_pg_ensure_publication(st->meta, conf, st->src->tables, st->src->ntables, err)) !=
        0) {
        err->retriable = err->code == SP_ECONN;
        return rc;
    }
    rc = sp_pg_slot_state(st->meta, st->slot, err);
    if (rc < 0) {
        err->retriable = err->code == SP_ECONN;
        return rc;
    }
    if (rc == 0) {
        if (!conf->create_slot) {
            rc = sp_err_set(err, SP_EINVAL, "replication slot \"%s\" does not exist", st->slot);
            sp_err_hint(err,
                        "create it (SELECT pg_create_logical_replication_slot('%s', "
                        "'pgoutput')) or set create_slot: true",
                        st->slot);
            return rc;
        }
    }
    bool creating = rc == 0;
    bool export_snapshot = false;
    if ((rc = sp_snap_prepare(st->snap, st->meta, creating, &export_snapshot, err)) != 0) {
        err->retriable = err->code == SP_ECONN;
        return rc;
    }
    if (creating && (rc = pg_create_slot(st, export_snapshot, err)) != 0) {
        return rc;
    }
    if ((rc = sp_pg_pin_session(st->repl, err)) != 0) {
        return rc;
    }
    if ((rc = pg_start(st, err)) != 0) {
        return rc;
    }
    if (PQsetnonblocking(st->repl, 1) != 0) {
        return sp_err_set(err, SP_ECONN, "could not make the connection nonblocking: %s",
                          sp_pq_connmsg(st->repl));
    }
    st->streaming = true;
    st->attempts = 0;
    st->last_status_ms = 0;
    /* A transaction cut off by the lost connection is resent whole. */
    st->dec.in_txn = false;
    st->dec.seq = 0;
    sp_log_info(&st->src->log, "streaming from slot \"%s\" (publication \"%s\", database \"%s\")",
                st->slot, st->publication, st->db);
    return 0;
}

/* ---- status updates ---- */

static void pg_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xFF);
        v >>= 8;
    }
}

static uint64_t pg_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Standby status update: written = received, flushed = applied = confirmed. */
static int pg_send_status(struct pg_state *st, bool reply, struct sp_err *err)
{
    uint8_t msg[1 + 8 + 8 + 8 + 8 + 1];
    msg[0] = 'r';
    uint64_t write_pos = st->received > st->confirmed ? st->received : st->confirmed;
    pg_put_u64(msg + 1, write_pos);
    pg_put_u64(msg + 9, st->confirmed);
    pg_put_u64(msg + 17, st->confirmed);
    pg_put_u64(msg + 25, (uint64_t)sp_time_now_pg_us());
    msg[33] = reply ? 1 : 0;
    if (PQputCopyData(st->repl, (const char *)msg, sizeof(msg)) != 1 || PQflush(st->repl) < 0) {
        return sp_err_set(err, SP_ECONN, "could not send status update: %s",
                          sp_pq_connmsg(st->repl));
    }
    st->last_status_ms = sp_time_mono_ms();
    if (st->confirmed != st->reported) {
        sp_log_debug(&st->src->log, "confirmed " SP_LSN_FMT, SP_LSN_ARGS(st->confirmed));
        st->reported = st->confirmed;
    }
    return 0;
}

static void pg_lost(struct pg_state *st, const char *why)
{
    int64_t backoff = st->conf->reconnect_min_ms;
    for (int i = 0; i < st->attempts && backoff < st->conf->reconnect_max_ms; i++) {
        backoff *= 2;
    }
    if (backoff > st->conf->reconnect_max_ms) {
        backoff = st->conf->reconnect_max_ms;
    }
    /* Jitter: between half and all of the backoff, so many sources do not retry in step. */
    backoff = backoff / 2 + rand() % (backoff / 2 + 1);
    st->attempts++;
    sp_log_warn(&st->src->log, "%s; reconnecting in %lld ms (attempt %d)", why, (long long)backoff,
                st->attempts);
    pg_disconnect(st);
    st->reconnect_at_ms = sp_time_mono_ms() + backoff;
}

/* ---- reading ---- */

static int pg_handle_copydata(struct pg_state *st, const uint8_t *buf, size_t len,
                              struct sp_err *err)
{
    if (len < 1) {
        return sp_err_set(err, SP_EPROTO, "empty CopyData message from the server");
    }
    if (buf[0] == 'k') {
        if (len < 18) {
            return sp_err_set(err, SP_EPROTO, "keepalive message of %zu bytes (expected 18)", len);
        }
        uint64_t wal_end = pg_get_u64(buf + 1);
        bool reply = buf[17] != 0;
        if (wal_end > st->received) {
            st->received = wal_end;
        }
        if (!st->dec.in_txn && wal_end > st->src->idle_lsn) {
            /* Everything before wal_end has been sent and handled: if nothing is in
             * flight, the pipeline may confirm it (unpublished traffic must not pin WAL). */
            st->src->idle_lsn = wal_end;
        }
        if (!st->dec.in_txn) {
            int rc = sp_snap_on_position(st->snap, wal_end, err);
            if (rc != 0) {
                return rc;
            }
        }
        if (reply) {
            return pg_send_status(st, false, err);
        }
        return 0;
    }
    if (buf[0] != 'w') {
        return sp_err_set(err, SP_EPROTO, "unexpected CopyData message type '%c' (0x%02x)",
                          buf[0] >= 0x20 && buf[0] < 0x7f ? buf[0] : '?', buf[0]);
    }
    if (len < 25) {
        return sp_err_set(err, SP_EPROTO, "XLogData message of %zu bytes (at least 25 expected)",
                          len);
    }
    uint64_t start = pg_get_u64(buf + 1);
    if (start > st->received) {
        st->received = start;
    }
    int rc = sp_pgo_decode(&st->dec, buf + 25, len - 25, start, &st->out, err);
    if (rc != 0) {
        return rc;
    }
    struct sp_event *ev;
    while ((ev = sp_event_list_pop(&st->out)) != NULL) {
        ev->source_name = st->src->name;
        if (ev->op == SP_OP_MESSAGE && !ev->msg_transactional) {
            /* Not part of a transaction: no commit time; use the time it was seen. */
            ev->commit_time_us = sp_time_now_us();
        }
        if (sp_snap_on_event(st->snap, ev, err, &rc)) {
            sp_event_free(ev); /* siphon's own message */
        } else if (rc == 0) {
            rc = st->src->emit(st->src->emit_ctx, ev, err);
        } else {
            sp_event_free(ev);
        }
        if (rc != 0) {
            sp_event_list_free(&st->out);
            return rc;
        }
    }
    return 0;
}

static int pg_read(struct sp_source *src, int budget, struct sp_err *err)
{
    struct pg_state *st = src->state;
    if (!st->streaming) {
        return 0;
    }
    int gate = sp_snap_service(st->snap, st->dec.in_txn, err);
    if (gate != 0) {
        /* 1: a table is being read whole, the stream waits (keepalives are still answered). */
        return gate;
    }
    bool consumed = false;
    int n = 0;
    while (n < budget && !src->backpressure) {
        char *buf = NULL;
        int len = PQgetCopyData(st->repl, &buf, 1);
        if (len == 0) {
            if (consumed) {
                break;
            }
            if (PQconsumeInput(st->repl) == 0) {
                char why[600];
                snprintf(why, sizeof(why), "lost the replication connection: %s",
                         sp_pq_connmsg(st->repl));
                pg_lost(st, why);
                return n;
            }
            consumed = true;
            continue;
        }
        if (len < 0) {
            char why[700];
            if (len == -1) {
                PGresult *res = PQgetResult(st->repl);
                snprintf(why, sizeof(why), "the server ended replication: %s",
                         res != NULL && PQresultStatus(res) == PGRES_FATAL_ERROR ? sp_pq_resmsg(res)
                                                                                 : "end of stream");
                PQclear(res);
            } else {
                snprintf(why, sizeof(why), "lost the replication connection: %s",
                         sp_pq_connmsg(st->repl));
            }
            pg_lost(st, why);
            return n;
        }
        int rc = pg_handle_copydata(st, (const uint8_t *)buf, (size_t)len, err);
        PQfreemem(buf);
        if (rc != 0) {
            if (err->code == SP_ECONN) {
                pg_lost(st, err->msg);
                return n;
            }
            return rc;
        }
        n++;
    }
    return n;
}

static int pg_fd(struct sp_source *src)
{
    struct pg_state *st = src->state;
    return st->streaming ? PQsocket(st->repl) : -1;
}

static int pg_tick(struct sp_source *src, struct sp_err *err)
{
    struct pg_state *st = src->state;
    int64_t now = sp_time_mono_ms();
    if (!st->streaming) {
        if (now < st->reconnect_at_ms) {
            return (int)(st->reconnect_at_ms - now);
        }
        struct sp_err cerr;
        sp_err_clear(&cerr);
        if (pg_connect_and_start(st, &cerr) != 0) {
            if (!cerr.retriable && cerr.code != SP_ECONN && cerr.code != SP_ESERVER) {
                *err = cerr;
                pg_disconnect(st);
                return err->code;
            }
            sp_log_emit_hint(&src->log, SP_LOG_WARN, cerr.hint, "reconnect failed: %s", cerr.msg);
            pg_lost(st, "still not connected");
            return (int)(st->reconnect_at_ms - sp_time_mono_ms());
        }
        sp_log_info(&src->log, "reconnected; resuming from " SP_LSN_FMT,
                    SP_LSN_ARGS(st->confirmed));
    }
    int64_t due = st->last_status_ms + st->conf->status_interval_ms;
    /* Report progress promptly (at most once a second) when the position moved. */
    if (st->confirmed != st->reported && st->last_status_ms + 1000 < due) {
        due = st->last_status_ms + 1000;
    }
    if (now >= due) {
        struct sp_err serr;
        sp_err_clear(&serr);
        if (pg_send_status(st, false, &serr) != 0) {
            pg_lost(st, serr.msg);
            return (int)st->conf->reconnect_min_ms;
        }
        due = now + (st->confirmed != st->reported ? 1000 : st->conf->status_interval_ms);
        now = sp_time_mono_ms();
    }
    int wait = due > now ? (int)(due - now) : 0;
    int snap = sp_snap_wait_ms(st->snap);
    return snap >= 0 && snap < wait ? snap : wait;
}

static int pg_confirm(struct sp_source *src, uint64_t lsn, bool idle, struct sp_err *err)
{
    struct pg_state *st = src->state;
    (void)idle;
    (void)err;
    if (lsn > st->confirmed) {
        st->confirmed = lsn;
    }
    return 0;
}

/* ---- type lookups on the normal connection ---- */

static int pg_lookup_type(void *ctx, uint32_t oid, struct sp_typinfo *out, struct sp_err *err)
{
    struct pg_state *st = ctx;
    if (st->meta == NULL || PQstatus(st->meta) != CONNECTION_OK) {
        if (st->meta != NULL) {
            PQfinish(st->meta);
        }
        st->meta = sp_pg_connect(st->conf, false, err);
        if (st->meta == NULL) {
            return err->code;
        }
    }
    char oidbuf[16];
    snprintf(oidbuf, sizeof(oidbuf), "%u", oid);
    const char *params[1] = {oidbuf};
    PGresult *res = sp_pg_exec_params(
        st->meta,
        "SELECT t.typtype, t.typcategory, t.typelem, t.typbasetype, t.typdelim, n.nspname, "
        "t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE t.oid = $1::oid",
        1, params, PGRES_TUPLES_OK, err);
    if (res == NULL) {
        sp_err_prefix(err, "could not look up type %u", oid);
        return err->code;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        return sp_err_set(err, SP_EINVAL, "type %u does not exist", oid);
    }
    out->oid = oid;
    out->typtype = PQgetvalue(res, 0, 0)[0];
    out->typcategory = PQgetvalue(res, 0, 1)[0];
    out->typelem = (uint32_t)strtoul(PQgetvalue(res, 0, 2), NULL, 10);
    out->typbasetype = (uint32_t)strtoul(PQgetvalue(res, 0, 3), NULL, 10);
    out->typdelim = PQgetvalue(res, 0, 4)[0];
    out->nspname = sp_xstrdup(PQgetvalue(res, 0, 5));
    out->typname = sp_xstrdup(PQgetvalue(res, 0, 6));
    PQclear(res);
    return 0;
}

static int pg_on_relation(void *ctx, struct sp_relation *rel, struct sp_err *err)
{
    struct pg_state *st = ctx;
    for (int i = 0; i < rel->ncols; i++) {
        rel->cols[i].type = sp_typcache_get(st->tc, rel->cols[i].type_oid, err);
        if (rel->cols[i].type == NULL) {
            sp_err_prefix(err, "column \"%s\" of table %s.%s", rel->cols[i].name, rel->schema,
                          rel->table);
            return err->code;
        }
    }
    return 0;
}

/* ---- lifecycle ---- */

static void pg_close(struct sp_source *src);

static int pg_open(struct sp_source *src, struct sp_err *err)
{
    struct pg_conf *conf = src->conf;
    struct pg_state *st = sp_xcalloc(1, sizeof(*st));
    st->conf = conf;
    st->src = src;
    st->slot = conf->slot != NULL ? sp_xstrdup(conf->slot) : sp_pg_default_name(src->name);
    st->publication =
        conf->publication != NULL ? sp_xstrdup(conf->publication) : sp_pg_default_name(src->name);
    /* Let the setup helpers see the resolved names. */
    conf->slot = conf->slot != NULL ? conf->slot : sp_xstrdup(st->slot);
    conf->publication = conf->publication != NULL ? conf->publication : sp_xstrdup(st->publication);
    st->rc = sp_relcache_new();
    st->tc = sp_typcache_new(pg_lookup_type, st);
    sp_pgo_init(&st->dec, st->rc);
    st->dec.on_relation = pg_on_relation;
    st->dec.ctx = st;
    st->dec.source_name = src->name;
    sp_event_list_init(&st->out);
    struct sp_snap_host host = {
        .conf = conf, .src = src, .tc = st->tc, .slot = st->slot, .db = &st->db};
    st->snap = sp_snap_new(&host);
    src->state = st;

    int rc = pg_connect_and_start(st, err);
    if (rc != 0) {
        if (err->retriable) {
            /* The server may just be down: keep trying in the background. */
            sp_log_emit_hint(&src->log, SP_LOG_WARN, err->hint, "%s", err->msg);
            pg_lost(st, "could not start streaming");
            return 0;
        }
        pg_close(src); /* frees st: the pipeline closes only sources that opened */
        return rc;
    }
    return 0;
}

static void pg_close(struct sp_source *src)
{
    struct pg_state *st = src->state;
    if (st == NULL) {
        return;
    }
    if (st->streaming) {
        /* Tell the server the final position before leaving. */
        struct sp_err err;
        sp_err_clear(&err);
        if (pg_send_status(st, false, &err) != 0) {
            sp_log_warn(&src->log, "could not send the final status update: %s", err.msg);
        } else {
            sp_log_info(&src->log, "confirmed " SP_LSN_FMT " on slot \"%s\"",
                        SP_LSN_ARGS(st->confirmed), st->slot);
        }
        PQputCopyEnd(st->repl, NULL);
        PQflush(st->repl);
    }
    sp_snap_free(st->snap);
    pg_disconnect(st);
    sp_event_list_free(&st->out);
    sp_pgo_fini(&st->dec);
    sp_relcache_free(st->rc);
    sp_typcache_free(st->tc);
    free(st->db);
    free(st->slot);
    free(st->publication);
    free(st);
    src->state = NULL;
}

int sp_pg_check(struct sp_source *src, struct sp_check *chk);

const struct sp_source_ops sp_source_postgres = {
    .type = "postgres",
    .summary = "PostgreSQL logical replication (pgoutput)",
    .opts = pg_opts,
    .conf_size = sizeof(struct pg_conf),
    .open = pg_open,
    .fd = pg_fd,
    .read = pg_read,
    .tick = pg_tick,
    .confirm = pg_confirm,
    .check = sp_pg_check,
    .close = pg_close,
};
