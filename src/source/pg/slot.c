// SPDX-License-Identifier: Apache-2.0
/*
 * Setup of the postgres source on the server: connections, the publication
 * and the replication slot, with errors that say what to do. Used by the
 * source at start and by `siphon check`.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "source/pg/pg.h"
#include "util/buf.h"
#include "util/mem.h"

char *sp_pg_default_name(const char *source_name)
{
    char *s = sp_xasprintf("siphon_%s", source_name);
    for (char *p = s; *p != '\0'; p++) {
        if (!isalnum((unsigned char)*p) && *p != '_') {
            *p = '_';
        } else {
            *p = (char)tolower((unsigned char)*p);
        }
    }
    if (strlen(s) > 63) {
        s[63] = '\0';
    }
    return s;
}

static _Thread_local char pq_msgbuf[1024];

static const char *pq_trim(const char *msg)
{
    if (msg == NULL || msg[0] == '\0') {
        return "unknown error";
    }
    snprintf(pq_msgbuf, sizeof(pq_msgbuf), "%s", msg);
    size_t n = strlen(pq_msgbuf);
    while (n > 0 && (pq_msgbuf[n - 1] == '\n' || pq_msgbuf[n - 1] == ' ')) {
        pq_msgbuf[--n] = '\0';
    }
    /* libpq may prefix "ERROR:  "; keep just the text */
    if (strncmp(pq_msgbuf, "ERROR:  ", 8) == 0) {
        memmove(pq_msgbuf, pq_msgbuf + 8, strlen(pq_msgbuf + 8) + 1);
    }
    return pq_msgbuf;
}

const char *sp_pq_connmsg(const PGconn *conn)
{
    return pq_trim(PQerrorMessage(conn));
}

const char *sp_pq_resmsg(const PGresult *res)
{
    return pq_trim(PQresultErrorMessage(res));
}

char *sp_pg_mask_conninfo(const char *conninfo)
{
    struct sp_buf b;
    sp_buf_init(&b);
    const char *p = conninfo;
    if (strncmp(p, "postgres://", 11) == 0 || strncmp(p, "postgresql://", 13) == 0) {
        /* URI: scheme://user:password@host */
        const char *start = strstr(p, "://") + 3;
        const char *at = strchr(start, '@');
        const char *colon = strchr(start, ':');
        if (at != NULL && colon != NULL && colon < at) {
            sp_buf_append(&b, p, (size_t)(colon - p) + 1);
            sp_buf_puts(&b, "********");
            p = at;
        }
        sp_buf_puts(&b, p);
        const char *pw = strstr(b.data, "password=");
        if (pw != NULL) {
            size_t off = (size_t)(pw - b.data) + 9;
            size_t end = off;
            while (end < b.len && b.data[end] != '&') {
                end++;
            }
            struct sp_buf m;
            sp_buf_init(&m);
            sp_buf_append(&m, b.data, off);
            sp_buf_puts(&m, "********");
            sp_buf_append(&m, b.data + end, b.len - end);
            sp_buf_fini(&b);
            return sp_buf_steal(&m);
        }
        return sp_buf_steal(&b);
    }
    /* key=value form */
    while (*p != '\0') {
        const char *kw = strstr(p, "password");
        if (kw == NULL) {
            sp_buf_puts(&b, p);
            break;
        }
        const char *q = kw + 8;
        while (*q == ' ') {
            q++;
        }
        if (*q != '=' || (kw > conninfo && !isspace((unsigned char)kw[-1]))) {
            sp_buf_append(&b, p, (size_t)(kw - p) + 8);
            p = kw + 8;
            continue;
        }
        q++;
        while (*q == ' ') {
            q++;
        }
        sp_buf_append(&b, p, (size_t)(q - p));
        sp_buf_puts(&b, "********");
        if (*q == '\'') {
            q++;
            while (*q != '\0' && *q != '\'') {
                q += (*q == '\\' && q[1] != '\0') ? 2 : 1;
            }
            if (*q == '\'') {
                q++;
            }
        } else {
            while (*q != '\0' && !isspace((unsigned char)*q)) {
                q++;
            }
        }
        p = q;
    }
    return sp_buf_steal(&b);
}

PGconn *sp_pg_connect(const struct pg_conf *conf, bool replication, struct sp_err *err)
{
    char timeout[32];
    snprintf(timeout, sizeof(timeout), "%lld",
             (long long)((conf->connect_timeout_ms + 999) / 1000));
    const char *keys[] = {
        "dbname", "replication", "connect_timeout", "application_name", "fallback_application_name",
        NULL};
    const char *vals[] = {
        conf->connection, replication ? "database" : NULL, timeout, NULL, "siphon", NULL};
    /* Leave out keys whose value is NULL: libpq stops at the first NULL key. */
    const char *k2[6];
    const char *v2[6];
    int n = 0;
    for (int i = 0; keys[i] != NULL; i++) {
        if (vals[i] != NULL) {
            k2[n] = keys[i];
            v2[n] = vals[i];
            n++;
        }
    }
    k2[n] = NULL;
    v2[n] = NULL;
    PGconn *conn = PQconnectdbParams(k2, v2, 1);
    if (PQstatus(conn) != CONNECTION_OK) {
        const char *msg = sp_pq_connmsg(conn);
        char *masked = sp_pg_mask_conninfo(conf->connection);
        sp_err_set(err, SP_ECONN, "could not connect to \"%s\": %s", masked, msg);
        free(masked);
        if (strstr(msg, "replication") != NULL && strstr(msg, "pg_hba.conf") != NULL) {
            sp_err_hint(err, "allow replication connections for this user and database in "
                             "pg_hba.conf (\"host <db> <user> <address> <method>\" lines cover "
                             "database replication connections)");
            err->retriable = false;
        } else if (strstr(msg, "must be superuser or replication role") != NULL ||
                   strstr(msg, "permission denied to start WAL sender") != NULL) {
            sp_err_hint(err, "grant it with: ALTER ROLE <user> WITH REPLICATION");
            err->retriable = false;
        } else if (strstr(msg, "password authentication failed") != NULL ||
                   strstr(msg, "does not exist") != NULL) {
            err->retriable = false;
        }
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

PGresult *sp_pg_exec(PGconn *conn, const char *sql, ExecStatusType want, struct sp_err *err)
{
    return sp_pg_exec_params(conn, sql, 0, NULL, want, err);
}

PGresult *sp_pg_exec_params(PGconn *conn, const char *sql, int nparams, const char *const *values,
                            ExecStatusType want, struct sp_err *err)
{
    PGresult *res = nparams > 0 ? PQexecParams(conn, sql, nparams, NULL, values, NULL, NULL, 0)
                                : PQexec(conn, sql);
    if (PQresultStatus(res) != want) {
        bool lost = PQstatus(conn) != CONNECTION_OK;
        sp_err_set(err, lost ? SP_ECONN : SP_ESERVER, "%s",
                   res != NULL ? sp_pq_resmsg(res) : sp_pq_connmsg(conn));
        PQclear(res);
        return NULL;
    }
    return res;
}

static char *pg_qualified(PGconn *conn, const struct sp_table_ref *t)
{
    char *s = PQescapeIdentifier(conn, t->schema, strlen(t->schema));
    char *n = PQescapeIdentifier(conn, t->table, strlen(t->table));
    char *q = sp_xasprintf("%s.%s", s ? s : "?", n ? n : "?");
    PQfreemem(s);
    PQfreemem(n);
    return q;
}

int sp_pg_ensure_publication(PGconn *conn, const struct pg_conf *conf,
                             const struct sp_table_ref *tables, int ntables, struct sp_err *err)
{
    int rc = 0;
    PGresult *res = NULL;
    struct sp_buf missing;
    struct sp_buf list;
    sp_buf_init(&missing);
    sp_buf_init(&list);

    /* Every table must exist first: a publication cannot name a missing one. */
    for (int i = 0; i < ntables; i++) {
        char *q = pg_qualified(conn, &tables[i]);
        const char *params[1] = {q};
        res = sp_pg_exec_params(conn, "SELECT to_regclass($1) IS NOT NULL", 1, params,
                                PGRES_TUPLES_OK, err);
        if (res == NULL) {
            free(q);
            rc = err->code;
            goto out;
        }
        bool exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        res = NULL;
        if (!exists) {
            rc = sp_err_set(err, SP_EINVAL, "table %s.%s does not exist", tables[i].schema,
                            tables[i].table);
            sp_err_hint(err, "create it, or remove it from the streams' tables");
            free(q);
            goto out;
        }
        if (list.len > 0) {
            sp_buf_puts(&list, ", ");
        }
        sp_buf_puts(&list, q);
        free(q);
    }

    const char *pub[1] = {conf->publication};
    res = sp_pg_exec_params(conn, "SELECT puballtables FROM pg_publication WHERE pubname = $1", 1,
                            pub, PGRES_TUPLES_OK, err);
    if (res == NULL) {
        rc = err->code;
        goto out;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        res = NULL;
        char *ident = PQescapeIdentifier(conn, conf->publication, strlen(conf->publication));
        /* Partitions publish as their root, the table the streams name. */
        char *sql = sp_xasprintf("CREATE PUBLICATION %s FOR TABLE %s WITH "
                                 "(publish_via_partition_root = true)",
                                 ident, list.data);
        PQfreemem(ident);
        if (!conf->create_publication) {
            rc = sp_err_set(err, SP_EINVAL, "publication \"%s\" does not exist", conf->publication);
            sp_err_hint(err, "create it with: %s", sql);
            free(sql);
            goto out;
        }
        res = sp_pg_exec(conn, sql, PGRES_COMMAND_OK, err);
        if (res == NULL) {
            sp_err_prefix(err, "could not create publication \"%s\"", conf->publication);
            if (strstr(err->msg, "permission denied") != NULL ||
                strstr(err->msg, "must be owner") != NULL) {
                sp_err_hint(err, "run as a table owner: %s, or create it once as one", sql);
            }
            free(sql);
            rc = err->code;
            goto out;
        }
        free(sql);
        goto out;
    }
    bool all_tables = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    res = NULL;
    if (all_tables) {
        goto out;
    }
    for (int i = 0; i < ntables; i++) {
        const char *params[3] = {conf->publication, tables[i].schema, tables[i].table};
        res = sp_pg_exec_params(conn,
                                "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND "
                                "schemaname = $2 AND tablename = $3",
                                3, params, PGRES_TUPLES_OK, err);
        if (res == NULL) {
            rc = err->code;
            goto out;
        }
        if (PQntuples(res) == 0) {
            char *q = pg_qualified(conn, &tables[i]);
            if (missing.len > 0) {
                sp_buf_puts(&missing, ", ");
            }
            sp_buf_puts(&missing, q);
            free(q);
        }
        PQclear(res);
        res = NULL;
    }
    if (missing.len > 0) {
        char *ident = PQescapeIdentifier(conn, conf->publication, strlen(conf->publication));
        rc = sp_err_set(err, SP_EINVAL, "publication \"%s\" exists but does not include %s",
                        conf->publication, missing.data);
        sp_err_hint(err, "add them with: ALTER PUBLICATION %s ADD TABLE %s", ident, missing.data);
        PQfreemem(ident);
    }
out:
    PQclear(res);
    sp_buf_fini(&missing);
    sp_buf_fini(&list);
    return rc;
}

int sp_pg_slot_state(PGconn *conn, const char *slot, struct sp_err *err)
{
    const char *params[1] = {slot};
    PGresult *res = sp_pg_exec_params(
        conn,
        "SELECT s.plugin, s.slot_type, s.database, current_database(), "
        "s.active_pid, s.temporary FROM pg_replication_slots s WHERE s.slot_name = $1",
        1, params, PGRES_TUPLES_OK, err);
    if (res == NULL) {
        return err->code;
    }
    int rc = 1;
    if (PQntuples(res) == 0) {
        rc = 0;
    } else if (strcmp(PQgetvalue(res, 0, 1), "logical") != 0) {
        rc = sp_err_set(err, SP_EINVAL, "replication slot \"%s\" is a physical slot", slot);
        sp_err_hint(err, "choose another slot name for this source");
    } else if (strcmp(PQgetvalue(res, 0, 0), "pgoutput") != 0) {
        rc = sp_err_set(err, SP_EINVAL,
                        "replication slot \"%s\" uses output plugin \"%s\", not pgoutput", slot,
                        PQgetvalue(res, 0, 0));
        sp_err_hint(err,
                    "choose another slot name, or drop the slot if nothing else uses it: "
                    "SELECT pg_drop_replication_slot('%s')",
                    slot);
    } else if (strcmp(PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3)) != 0) {
        rc = sp_err_set(err, SP_EINVAL, "replication slot \"%s\" belongs to database \"%s\"", slot,
                        PQgetvalue(res, 0, 2));
        sp_err_hint(err, "choose another slot name for this source");
    }
    PQclear(res);
    return rc;
}
