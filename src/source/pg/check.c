// SPDX-License-Identifier: Apache-2.0
/*
 * `siphon check` for the postgres source: verifies, without changing
 * anything on the server, what `siphon run` will need: connectivity,
 * wal_level, the REPLICATION privilege, the slot (or room for one), the
 * publication, the tables and their replica identity.
 */
#include "core/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/plugin.h"
#include "source/pg/pg.h"
#include "util/mem.h"

/* What snapshots need: SELECT on the tables, a watermark mode, a state_dir for the initial one. */
static void check_snapshots(PGconn *conn, const struct pg_conf *conf, const struct sp_source *src,
                            struct sp_check *chk)
{
    struct sp_err err;
    sp_err_clear(&err);
    PGresult *res = sp_pg_exec(conn,
                               "SELECT has_function_privilege("
                               "'pg_logical_emit_message(boolean,text,text)', 'EXECUTE')",
                               PGRES_TUPLES_OK, &err);
    if (res == NULL) {
        sp_check_fail(chk, NULL, "%s", err.msg);
        return;
    }
    bool can_emit = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (conf->snapshot_watermark == SP_PG_WATERMARK_MESSAGE && !can_emit) {
        sp_check_fail(chk,
                      "GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO "
                      "the role, or set snapshot_watermark: lsn (or auto)",
                      "snapshot_watermark: message, but the role may not call "
                      "pg_logical_emit_message");
    } else {
        bool msg = conf->snapshot_watermark == SP_PG_WATERMARK_MESSAGE ||
                   (conf->snapshot_watermark == SP_PG_WATERMARK_AUTO && can_emit);
        sp_check_ok(chk, "snapshots use %s watermarks%s", msg ? "message" : "lsn",
                    msg ? " (pg_logical_emit_message)"
                        : " (WAL positions; the role may not call pg_logical_emit_message)");
    }
    if (!can_emit) {
        sp_check_warn(chk,
                      "GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO "
                      "the role that runs siphon snapshot",
                      "siphon snapshot (on-demand re-snapshots) writes its request with "
                      "pg_logical_emit_message, which this role may not call");
    }
    for (int i = 0; i < src->ntables; i++) {
        const struct sp_table_ref *t = &src->tables[i];
        char *q = sp_xasprintf("%s.%s", t->schema, t->table);
        const char *params[1] = {q};
        sp_err_clear(&err);
        res = sp_pg_exec_params(conn,
                                "SELECT CASE WHEN to_regclass(quote_ident(split_part($1, '.', 1)) "
                                "|| '.' || quote_ident(split_part($1, '.', 2))) IS NULL THEN NULL "
                                "ELSE has_table_privilege(quote_ident(split_part($1, '.', 1)) || "
                                "'.' || quote_ident(split_part($1, '.', 2)), 'SELECT') END",
                                1, params, PGRES_TUPLES_OK, &err);
        if (res != NULL && !PQgetisnull(res, 0, 0) && strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
            sp_check_fail(chk, "GRANT SELECT ON the table TO the role",
                          "table %s: the role may not SELECT from it (snapshots read it)", q);
        }
        PQclear(res);
        free(q);
    }
    if (conf->snapshot == SP_PG_SNAPSHOT_INITIAL && src->state_dir == NULL) {
        sp_check_warn(chk, "set state_dir (settings), or snapshot: never",
                      "snapshot: initial needs state_dir when siphon creates the slot");
    }
}

int sp_pg_check(struct sp_source *src, struct sp_check *chk);

static void check_wal_level(PGconn *conn, struct sp_check *chk)
{
    struct sp_err err;
    PGresult *res = sp_pg_exec(conn,
                               "SELECT current_setting('wal_level'), "
                               "current_setting('max_replication_slots')::int, "
                               "(SELECT count(*) FROM pg_replication_slots), "
                               "current_setting('max_wal_senders')::int",
                               PGRES_TUPLES_OK, &err);
    if (res == NULL) {
        sp_check_fail(chk, NULL, "could not read server settings: %s", err.msg);
        return;
    }
    const char *level = PQgetvalue(res, 0, 0);
    if (strcmp(level, "logical") == 0) {
        sp_check_ok(chk, "wal_level is logical");
    } else {
        sp_check_fail(chk,
                      "run ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL "
                      "(on managed services: set the parameter group's or flag's "
                      "logical decoding option)",
                      "wal_level is %s; logical replication needs wal_level = logical", level);
    }
    if (atoi(PQgetvalue(res, 0, 3)) < 1) {
        sp_check_fail(chk, "set max_wal_senders to at least 1 and restart PostgreSQL",
                      "max_wal_senders is 0");
    }
    PQclear(res);
}

static void check_privileges(PGconn *conn, struct sp_check *chk)
{
    struct sp_err err;
    PGresult *res = sp_pg_exec(conn,
                               "SELECT rolreplication OR rolsuper, current_user "
                               "FROM pg_roles WHERE rolname = current_user",
                               PGRES_TUPLES_OK, &err);
    if (res == NULL || PQntuples(res) == 0) {
        sp_check_fail(chk, NULL, "could not read the role's privileges: %s",
                      res == NULL ? err.msg : "role not found");
        PQclear(res);
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
        sp_check_ok(chk, "role \"%s\" may replicate", PQgetvalue(res, 0, 1));
    } else {
        char hint[200];
        snprintf(hint, sizeof(hint), "run: ALTER ROLE %s WITH REPLICATION", PQgetvalue(res, 0, 1));
        sp_check_fail(chk, hint, "role \"%s\" has neither REPLICATION nor SUPERUSER",
                      PQgetvalue(res, 0, 1));
    }
    PQclear(res);
}

static void check_slot(PGconn *conn, const struct pg_conf *conf, struct sp_check *chk)
{
    struct sp_err err;
    sp_err_clear(&err);
    int st = sp_pg_slot_state(conn, conf->slot, &err);
    if (st < 0) {
        sp_check_fail(chk, err.hint, "%s", err.msg);
        return;
    }
    if (st == 1) {
        const char *params[1] = {conf->slot};
        PGresult *res = sp_pg_exec_params(
            conn,
            "SELECT active_pid, confirmed_flush_lsn, "
            "pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)), wal_status "
            "FROM pg_replication_slots WHERE slot_name = $1",
            1, params, PGRES_TUPLES_OK, &err);
        if (res == NULL || PQntuples(res) == 0) {
            sp_check_fail(chk, NULL, "could not read slot \"%s\": %s", conf->slot, err.msg);
            PQclear(res);
            return;
        }
        if (!PQgetisnull(res, 0, 0)) {
            sp_check_warn(chk, "each slot has one reader; stop the other process first",
                          "slot \"%s\" is in use by server process %s", conf->slot,
                          PQgetvalue(res, 0, 0));
        } else if (strcmp(PQgetvalue(res, 0, 3), "lost") == 0) {
            sp_check_fail(chk, "drop the slot (siphon slots --drop) and start again",
                          "slot \"%s\" has lost required WAL (wal_status lost)", conf->slot);
        } else {
            sp_check_ok(chk,
                        "slot \"%s\" exists (pgoutput), confirmed up to %s, retaining %s "
                        "of WAL",
                        conf->slot, PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
        }
        PQclear(res);
        return;
    }
    PGresult *res = sp_pg_exec(conn,
                               "SELECT current_setting('max_replication_slots')::int - "
                               "(SELECT count(*) FROM pg_replication_slots)",
                               PGRES_TUPLES_OK, &err);
    if (res == NULL) {
        sp_check_fail(chk, NULL, "%s", err.msg);
        return;
    }
    int free_slots = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!conf->create_slot) {
        sp_check_fail(chk, "create it, or set create_slot: true",
                      "slot \"%s\" does not exist and create_slot is false", conf->slot);
    } else if (free_slots <= 0) {
        sp_check_fail(chk, "raise max_replication_slots (restart needed) or drop unused slots",
                      "slot \"%s\" does not exist and all replication slots are in use",
                      conf->slot);
    } else {
        sp_check_ok(chk, "slot \"%s\" will be created (%d slots free)", conf->slot, free_slots);
    }
}

static void check_tables(PGconn *conn, const struct sp_source *src, struct sp_check *chk)
{
    for (int i = 0; i < src->ntables; i++) {
        const struct sp_table_ref *t = &src->tables[i];
        struct sp_err err;
        char *s = PQescapeIdentifier(conn, t->schema, strlen(t->schema));
        char *n = PQescapeIdentifier(conn, t->table, strlen(t->table));
        char *q = sp_xasprintf("%s.%s", s, n);
        PQfreemem(s);
        PQfreemem(n);
        const char *params[1] = {q};
        PGresult *res = sp_pg_exec_params(
            conn,
            "SELECT c.relreplident, "
            "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), "
            "has_table_privilege(c.oid, 'SELECT'), c.relkind "
            "FROM pg_class c WHERE c.oid = to_regclass($1)",
            1, params, PGRES_TUPLES_OK, &err);
        free(q);
        if (res == NULL) {
            sp_check_fail(chk, NULL, "could not inspect table %s.%s: %s", t->schema, t->table,
                          err.msg);
            continue;
        }
        if (PQntuples(res) == 0) {
            sp_check_fail(chk, "create it, or remove it from the streams' tables",
                          "table %s.%s does not exist", t->schema, t->table);
            PQclear(res);
            continue;
        }
        char ident = PQgetvalue(res, 0, 0)[0];
        bool has_pk = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
        if (ident == 'n') {
            char hint[300];
            snprintf(hint, sizeof(hint),
                     "run ALTER TABLE %s.%s REPLICA IDENTITY FULL (or add a primary key)",
                     t->schema, t->table);
            sp_check_fail(chk, hint,
                          "table %s.%s has REPLICA IDENTITY NOTHING: once published, "
                          "its UPDATEs and DELETEs fail on the server",
                          t->schema, t->table);
        } else if (ident == 'd' && !has_pk) {
            char hint[400];
            snprintf(hint, sizeof(hint),
                     "add a primary key, or run ALTER TABLE %s.%s REPLICA IDENTITY FULL "
                     "(old rows are then logged whole)",
                     t->schema, t->table);
            sp_check_warn(chk, hint,
                          "table %s.%s has no primary key: once it is in a "
                          "publication, UPDATE and DELETE on it fail on the server, and its "
                          "events have no key",
                          t->schema, t->table);
        } else {
            sp_check_ok(chk, "table %s.%s: replica identity %s", t->schema, t->table,
                        ident == 'f'   ? "full"
                        : ident == 'i' ? "index"
                                       : "primary key");
        }
        PQclear(res);
    }
}

static void check_publication(PGconn *conn, const struct pg_conf *conf, const struct sp_source *src,
                              struct sp_check *chk)
{
    struct sp_err err;
    const char *params[1] = {conf->publication};
    PGresult *res = sp_pg_exec_params(conn,
                                      "SELECT puballtables FROM pg_publication "
                                      "WHERE pubname = $1",
                                      1, params, PGRES_TUPLES_OK, &err);
    if (res == NULL) {
        sp_check_fail(chk, NULL, "%s", err.msg);
        return;
    }
    bool exists = PQntuples(res) > 0;
    PQclear(res);
    if (!exists) {
        if (conf->create_publication) {
            sp_check_ok(chk, "publication \"%s\" will be created for %d tables", conf->publication,
                        src->ntables);
        } else {
            sp_check_fail(chk, "create it, or set create_publication: true",
                          "publication \"%s\" does not exist", conf->publication);
        }
        return;
    }
    /* Reuse the run-time verification, which only reads when the publication exists. */
    struct pg_conf c = *conf;
    c.create_publication = false;
    sp_err_clear(&err);
    if (sp_pg_ensure_publication(conn, &c, src->tables, src->ntables, &err) != 0) {
        sp_check_fail(chk, err.hint, "%s", err.msg);
    } else {
        sp_check_ok(chk, "publication \"%s\" covers the streams' tables", conf->publication);
    }
}

int sp_pg_check(struct sp_source *src, struct sp_check *chk)
{
    struct pg_conf *conf = src->conf;
    char *slot = conf->slot;
    char *pub = conf->publication;
    char *dslot = NULL;
    char *dpub = NULL;
    if (slot == NULL) {
        conf->slot = dslot = sp_pg_default_name(src->name);
    }
    if (pub == NULL) {
        conf->publication = dpub = sp_pg_default_name(src->name);
    }
    struct sp_err err;
    sp_err_clear(&err);
    PGconn *conn = sp_pg_connect(conf, false, &err);
    if (conn == NULL) {
        sp_check_fail(chk, err.hint, "%s", err.msg);
    } else {
        sp_check_ok(chk, "connected to database \"%s\" (server %d)", PQdb(conn),
                    PQserverVersion(conn));
        if (PQserverVersion(conn) < 100000) {
            sp_check_fail(chk, "upgrade PostgreSQL",
                          "PostgreSQL %d is too old: pgoutput "
                          "needs 10 or later",
                          PQserverVersion(conn));
        }
        check_wal_level(conn, chk);
        check_privileges(conn, chk);
        PGconn *repl = sp_pg_connect(conf, true, &err);
        if (repl == NULL) {
            sp_check_fail(chk, err.hint, "replication connection refused: %s", err.msg);
        } else {
            sp_check_ok(chk, "replication connection accepted");
            PQfinish(repl);
        }
        check_slot(conn, conf, chk);
        check_publication(conn, conf, src, chk);
        check_tables(conn, src, chk);
        check_snapshots(conn, conf, src, chk);
        PQfinish(conn);
    }
    conf->slot = slot;
    conf->publication = pub;
    free(dslot);
    free(dpub);
    return chk->failures > 0 ? SP_EINVAL : 0;
}
