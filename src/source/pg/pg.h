/*
 * Shared pieces of the postgres source: its configuration, libpq helpers
 * and the setup steps (publication, slot) used by both `run` and `check`.
 */
#ifndef SIPHON_SOURCE_PG_PG_H
#define SIPHON_SOURCE_PG_PG_H

#include <stdint.h>

#include <libpq-fe.h>
#include <stdbool.h>

#include "core/err.h"
#include "core/plugin.h"

struct pg_conf {
    char *connection;
    char *slot;
    char *publication;
    int snapshot;
    bool create_slot;
    bool create_publication;
    int64_t status_interval_ms;
    int64_t connect_timeout_ms;
    int64_t reconnect_min_ms;
    int64_t reconnect_max_ms;
    int64_t wal_sender_timeout_ms;
    int64_t snapshot_chunk_size;
    int64_t snapshot_connections;
    int snapshot_watermark;
};

enum { SP_PG_SNAPSHOT_NEVER = 0, SP_PG_SNAPSHOT_INITIAL = 1 };
enum { SP_PG_WATERMARK_AUTO = 0, SP_PG_WATERMARK_MESSAGE = 1, SP_PG_WATERMARK_LSN = 2 };

/* Default slot/publication name for a source without one: siphon_<name>, sanitised. */
char *sp_pg_default_name(const char *source_name);

/* libpq's error text without its trailing newline (static buffer per thread). */
const char *sp_pq_connmsg(const PGconn *conn);
const char *sp_pq_resmsg(const PGresult *res);
/* conninfo with any password replaced by "********" (caller frees). */
char *sp_pg_mask_conninfo(const char *conninfo);

/*
 * Connect with the configured conninfo; replication selects a logical
 * walsender connection (replication=database). Session settings are not
 * applied here.
 */
PGconn *sp_pg_connect(const struct pg_conf *conf, bool replication, struct sp_err *err);

/*
 * Pin the session settings that decide how values are printed (TimeZone,
 * DateStyle, ...), so output never depends on the server's or role's
 * defaults; the replication connection and snapshot readers use the same.
 */
int sp_pg_pin_session(PGconn *conn, struct sp_err *err);

/* Run a query returning rows/commands; err on anything else. Caller PQclears. */
PGresult *sp_pg_exec(PGconn *conn, const char *sql, ExecStatusType want, struct sp_err *err);
PGresult *sp_pg_exec_params(PGconn *conn, const char *sql, int nparams, const char *const *values,
                            ExecStatusType want, struct sp_err *err);

/*
 * Make sure the publication exists and covers tables (creating it if
 * allowed). Returns 0, or an error naming what is missing and the fix.
 */
int sp_pg_ensure_publication(PGconn *conn, const struct pg_conf *conf,
                             const struct sp_table_ref *tables, int ntables, struct sp_err *err);

/* Look up the slot: 1 exists (and fits), 0 absent, negative: error (wrong plugin, ...). */
int sp_pg_slot_state(PGconn *conn, const char *slot, struct sp_err *err);

#endif
