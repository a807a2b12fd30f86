/*
 * The change event: what a source produces and every flow, format and sink
 * consumes. Independent of PostgreSQL's wire format; values stay in
 * PostgreSQL's text form and are converted by the format.
 *
 * Ownership: an event owns its arena (tuples, strings) and holds one reference
 * on its relation. Events are created, flowed, formatted and freed on the
 * pipeline thread; sinks only ever see formatted records (core/plugin.h).
 */
#ifndef SIPHON_CORE_EVENT_H
#define SIPHON_CORE_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

#include "core/arena.h"

enum sp_op {
    SP_OP_INSERT,   /* 'c' */
    SP_OP_UPDATE,   /* 'u' */
    SP_OP_DELETE,   /* 'd' */
    SP_OP_READ,     /* 'r' snapshot read */
    SP_OP_TRUNCATE, /* 't' */
    SP_OP_MESSAGE,  /* 'm' logical decoding message */
    SP_OP_BEGIN,    /* transaction boundaries: drive checkpoints, not delivered */
    SP_OP_COMMIT,
};

/* 'c', 'u', 'd', 'r', 't', 'm'; 'B'/'C' for the boundaries. */
char sp_op_char(enum sp_op op);

/* How a column's text value becomes JSON (DESIGN.md, "Event format json"). */
enum sp_type_kind {
    SP_TYPE_OTHER = 0, /* text form as a JSON string */
    SP_TYPE_INT,       /* smallint, integer, bigint, oid */
    SP_TYPE_FLOAT,     /* real, double precision */
    SP_TYPE_NUMERIC,   /* exact digits as a string */
    SP_TYPE_BOOL,
    SP_TYPE_STRING, /* text, varchar, uuid, enum, inet, ...: string */
    SP_TYPE_BYTEA,  /* hex text form -> base64 */
    SP_TYPE_JSON,   /* json, jsonb: embedded as JSON */
    SP_TYPE_DATE,
    SP_TYPE_TIMESTAMP,
    SP_TYPE_TIMESTAMPTZ,
    SP_TYPE_TIME,
    SP_TYPE_TIMETZ,
    SP_TYPE_INTERVAL,
    SP_TYPE_ARRAY, /* elem says how elements convert */
};

struct sp_type {
    uint32_t oid;
    enum sp_type_kind kind;
    char delim;                 /* array element delimiter, ',' for all but box */
    const struct sp_type *elem; /* SP_TYPE_ARRAY only */
    const char *name;           /* "int4", "public.mood" */
};

struct sp_column {
    char *name;
    /* The name as a JSON object member prefix, "\"name\":" (escaped); NULL when
     * the source did not prepare it. Formats use it to skip escaping per event. */
    char *json_name;
    size_t json_name_len;
    uint32_t type_oid;
    int32_t typmod;
    const struct sp_type *type; /* resolved by the source; owned by its type cache */
    bool key;                   /* part of the replica identity key */
};

/*
 * One version of a table's shape. A new Relation message creates a new
 * version; events keep the version they were decoded with. Refcounted,
 * pipeline thread only.
 */
struct sp_relation {
    uint32_t oid;
    uint32_t version;
    char *schema;
    char *table;
    char replident; /* 'd' default, 'n' nothing, 'f' full, 'i' index */
    int ncols;
    struct sp_column *cols;
    int refs;
};

struct sp_relation *sp_relation_ref(struct sp_relation *rel);
void sp_relation_unref(struct sp_relation *rel);
/* Number of key columns (replica identity). */
int sp_relation_nkeys(const struct sp_relation *rel);

enum sp_datum_kind {
    SP_DATUM_NULL = 0,
    SP_DATUM_TEXT,      /* data: NUL-terminated text form, len bytes */
    SP_DATUM_UNCHANGED, /* unchanged TOASTed value the server did not send */
    SP_DATUM_BINARY,
};

struct sp_datum {
    uint8_t kind;
    uint32_t len;
    const char *data;
};

struct sp_tuple {
    int ncols;
    struct sp_datum *cols;
};

struct sp_event {
    enum sp_op op;
    struct sp_relation *rel; /* reference held; NULL for message/begin/commit */
    struct sp_tuple *before; /* old row ('O') or old key ('K'); NULL if not sent */
    bool before_key_only;    /* 'K': only key columns carry values */
    struct sp_tuple *after;  /* new row: insert, update, read */
    uint64_t lsn;            /* WAL position of the change */
    uint64_t commit_lsn;     /* the transaction's commit LSN (Begin's final_lsn) */
    uint64_t end_lsn;        /* COMMIT: end of the commit record; what gets confirmed */
    uint32_t xid;
    int64_t commit_time_us;  /* Unix epoch microseconds */
    uint32_t seq;            /* 1-based position among the transaction's events */
    const char *snapshot;    /* "false", "true", "last", "incremental" */
    const char *source_name; /* configured source name, set by the source */
    const char *db;          /* database name, set by the source */
    uint8_t truncate_flags;  /* TRUNCATE: 1 CASCADE, 2 RESTART IDENTITY */
    bool msg_transactional;  /* MESSAGE */
    const char *msg_prefix;
    const char *msg_content;
    uint32_t msg_len;
    const char *origin; /* replication origin, if the server sent one */
    /* Snapshot rows: only these streams (NULL-terminated) get the event; NULL: every
     * stream that wants the table. */
    const char *const *streams;
    /* COMMIT: called once the transaction is acknowledged (core/checkpoint.h). */
    void (*on_done)(void *ctx);
    void *on_done_ctx;
    /* Set by flows (src/flow); NULL/0 unless a flow set them. Strings live in
     * the event's arena. */
    const char *payload; /* outbox: the business event's JSON, emitted instead of the row */
    uint32_t payload_len;
    const char *event_type; /* outbox/route: event type (Nakadi, Debezium outbox `type`) */
    const char
        *dest; /* route/outbox: topic/subject/stream/event type; overrides the sink's template */
    const char *key_override; /* route/outbox: the key; overrides the format's key */
    uint32_t key_override_len;
    bool key_override_json; /* key_override is JSON text (script flow), not a plain string */
    const char
        *id_override; /* outbox: event id (e.g. the outbox row's id) instead of <lsn>:<seq> */
    /* transaction metadata (flow "transaction"); tx_id NULL unless set */
    const char *tx_id;       /* "<xid>:<commit lsn>", Debezium's transaction id */
    uint64_t tx_total_order; /* 1-based position among the stream's events of the transaction */
    uint64_t tx_collection_order; /* the same among those of the event's table */
    struct sp_event *next;        /* list link */
    struct sp_arena arena;        /* owns everything above except rel */
};

/* A new zeroed event; hint sizes the arena's first chunk. */
struct sp_event *sp_event_new(enum sp_op op, size_t hint);
void sp_event_free(struct sp_event *ev);
void *sp_event_alloc(struct sp_event *ev, size_t n);
struct sp_tuple *sp_event_tuple(struct sp_event *ev, int ncols);
/* Stable id: "<commit lsn>:<seq>", e.g. "0/16E9A48:3", or id_override (truncated to
 * SP_EVENT_ID_BUFSZ - 1 bytes). buf >= SP_EVENT_ID_BUFSZ. */
#define SP_EVENT_ID_BUFSZ 64
char *sp_event_id(const struct sp_event *ev, char *buf);
/* The tuple that carries the key: before for deletes, else after (may be NULL). */
const struct sp_tuple *sp_event_key_tuple(const struct sp_event *ev);
/* Column index by name in ev->rel, or -1. */
int sp_event_col_index(const struct sp_event *ev, const char *name);

struct sp_event_list {
    struct sp_event *head;
    struct sp_event *tail;
    size_t count;
};

void sp_event_list_init(struct sp_event_list *l);
void sp_event_list_push(struct sp_event_list *l, struct sp_event *ev);
struct sp_event *sp_event_list_pop(struct sp_event_list *l);
void sp_event_list_free(struct sp_event_list *l);

#endif
