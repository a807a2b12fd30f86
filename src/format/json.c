// SPDX-License-Identifier: Apache-2.0
/*
 * The `json` format (DESIGN.md, "Event format json"): one Debezium-shaped
 * envelope per change, on one line without a trailing newline, with natural
 * JSON values converted by source/pg/types.c. The key is the object of the
 * replica identity columns.
 *
 * Flows (src/flow) may override parts: an outbox event's payload is the
 * whole value; a route's key replaces the key (as a JSON string, like
 * Debezium's outbox router under the JSON converter); an outbox row id
 * replaces the id.
 *
 * This file only encodes; it does not decide which events exist (BEGIN and
 * COMMIT never reach a format) nor where records go.
 */
#include "format/json.h"

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>
#include <string.h>

#include "core/err.h"
#include "core/event.h"
#include "core/plugin.h"
#include "source/pg/types.h"
#include "util/buf.h"
#include "util/time.h"

#define JSON_DEFAULT_PLACEHOLDER "__siphon_unavailable"

/*
 * The clock for the envelope's top-level ts_ms (Unix epoch microseconds).
 * A test hook: tests pin it to get byte-exact output; NULL restores the wall
 * clock. Not thread-safe; set it before encoding starts.
 */
void sp_format_json_set_clock(int64_t (*now_us)(void));

static int64_t (*json_clock)(void) = sp_time_now_us;

void sp_format_json_set_clock(int64_t (*now_us)(void))
{
    json_clock = now_us != NULL ? now_us : sp_time_now_us;
}

static void json_put_str(struct sp_buf *out, const char *s)
{
    if (s == NULL) {
        s = "";
    }
    sp_buf_put_json_str(out, s, strlen(s));
}

/* Floor division, so that times before 1970 round towards the past too. */
static int64_t json_us_to_ms(int64_t us)
{
    return us >= 0 ? us / 1000 : -((-us + 999) / 1000);
}

/*
 * The value of column i. An unchanged TOASTed value takes the old tuple's
 * value when the server sent a full old row (REPLICA IDENTITY FULL), else
 * the placeholder.
 */
int sp_format_json_column(const struct sp_format *fmt, const struct sp_event *ev,
                          const struct sp_tuple *tup, int i, struct sp_buf *out,
                          struct sp_err *err)
{
    const struct sp_column *col = &ev->rel->cols[i];
    const struct sp_datum *d = &tup->cols[i];
    if (d->kind == SP_DATUM_UNCHANGED && tup == ev->after && ev->before != NULL &&
        !ev->before_key_only && i < ev->before->ncols &&
        ev->before->cols[i].kind != SP_DATUM_UNCHANGED) {
        d = &ev->before->cols[i];
    }
    switch (d->kind) {
    case SP_DATUM_NULL:
        sp_buf_puts(out, "null");
        return 0;
    case SP_DATUM_UNCHANGED:
        json_put_str(out, fmt->toast_placeholder != NULL ? fmt->toast_placeholder
                                                         : JSON_DEFAULT_PLACEHOLDER);
        return 0;
    case SP_DATUM_BINARY:
        sp_json_put_base64(out, d->data, d->data != NULL ? d->len : 0);
        return 0;
    case SP_DATUM_TEXT: {
        int rc = sp_pgtext_to_json(col->type, d->data, d->data != NULL ? d->len : 0, out, err);
        if (rc < 0) {
            sp_err_prefix(err, "column \"%s\" of table \"%s.%s\"", col->name, ev->rel->schema,
                          ev->rel->table);
        }
        return rc;
    }
    default:
        return sp_err_set(err, SP_EINVAL, "column \"%s\" of table \"%s.%s\": unknown datum kind %d",
                          col->name, ev->rel->schema, ev->rel->table, d->kind);
    }
}

int sp_format_json_row(const struct sp_format *fmt, const struct sp_event *ev,
                       const struct sp_tuple *tup, bool keys_only, struct sp_buf *out,
                       struct sp_err *err)
{
    const struct sp_relation *rel = ev->rel;
    if (tup->ncols != rel->ncols) {
        return sp_err_set(err, SP_EINVAL, "table \"%s.%s\": row has %d columns, relation has %d",
                          rel->schema, rel->table, tup->ncols, rel->ncols);
    }
    bool first = true;
    sp_buf_putc(out, '{');
    for (int i = 0; i < rel->ncols; i++) {
        if (keys_only && !rel->cols[i].key) {
            continue;
        }
        if (!first) {
            sp_buf_putc(out, ',');
        }
        first = false;
        if (rel->cols[i].json_name != NULL) {
            sp_buf_append(out, rel->cols[i].json_name, rel->cols[i].json_name_len);
        } else {
            json_put_str(out, rel->cols[i].name);
            sp_buf_putc(out, ':');
        }
        int rc = sp_format_json_column(fmt, ev, tup, i, out, err);
        if (rc < 0) {
            return rc;
        }
    }
    sp_buf_putc(out, '}');
    return 0;
}

static int json_put_tuple_or_null(const struct sp_format *fmt, const struct sp_event *ev,
                                  const struct sp_tuple *tup, bool keys_only, struct sp_buf *out,
                                  struct sp_err *err)
{
    if (tup == NULL || ev->rel == NULL) {
        sp_buf_puts(out, "null");
        return 0;
    }
    return sp_format_json_row(fmt, ev, tup, keys_only, out, err);
}

/*
 * Message events ('m', pg_logical_emit_message) belong to no table: before and
 * after are null, source.schema/source.table are "", and the message goes in
 * a "message" member, {"prefix","content","transactional"}. The content is a
 * JSON string when it is valid UTF-8; otherwise it is base64 and the member
 * says "encoding":"base64", so no byte is lost. The key is {"prefix":...}.
 */
static void json_put_message(const struct sp_event *ev, struct sp_buf *out)
{
    sp_buf_puts(out, "{\"prefix\":");
    json_put_str(out, ev->msg_prefix);
    sp_buf_puts(out, ",\"content\":");
    const char *content = ev->msg_content != NULL ? ev->msg_content : "";
    size_t len = ev->msg_content != NULL ? ev->msg_len : 0;
    bool text = sp_utf8_valid(content, len) && memchr(content, '\0', len) == NULL;
    if (text) {
        sp_buf_put_json_str(out, content, len);
    } else {
        sp_json_put_base64(out, content, len);
        sp_buf_puts(out, ",\"encoding\":\"base64\"");
    }
    sp_buf_puts(out,
                ev->msg_transactional ? ",\"transactional\":true}" : ",\"transactional\":false}");
}

static void json_put_source(const struct sp_event *ev, struct sp_buf *out)
{
    sp_buf_puts(out, "{\"connector\":\"postgresql\",\"name\":");
    json_put_str(out, ev->source_name);
    sp_buf_puts(out, ",\"db\":");
    json_put_str(out, ev->db);
    sp_buf_puts(out, ",\"schema\":");
    json_put_str(out, ev->rel != NULL ? ev->rel->schema : "");
    sp_buf_puts(out, ",\"table\":");
    json_put_str(out, ev->rel != NULL ? ev->rel->table : "");
    sp_buf_puts(out, ",\"lsn\":");
    sp_buf_put_u64(out, ev->lsn);
    sp_buf_puts(out, ",\"commit_lsn\":");
    sp_buf_put_u64(out, ev->commit_lsn);
    sp_buf_puts(out, ",\"txId\":");
    sp_buf_put_u64(out, ev->xid);
    sp_buf_puts(out, ",\"ts_ms\":");
    sp_buf_put_i64(out, json_us_to_ms(ev->commit_time_us));
    sp_buf_puts(out, ",\"snapshot\":");
    json_put_str(out, ev->snapshot != NULL ? ev->snapshot : "false");
    sp_buf_puts(out, ",\"version\":\"" SP_VERSION "\"}");
}

void sp_format_key_override(const struct sp_event *ev, struct sp_buf *key)
{
    if (ev->key_override_json) {
        sp_buf_append(key, ev->key_override, ev->key_override_len);
    } else {
        sp_buf_put_json_str(key, ev->key_override, ev->key_override_len);
    }
}

/* The key object, or the key a flow set as a JSON string; left empty when the relation has
 * no key columns or no row carries them. */
int sp_format_json_key(const struct sp_format *fmt, const struct sp_event *ev, struct sp_buf *key,
                       struct sp_err *err)
{
    if (ev->key_override != NULL) {
        sp_format_key_override(ev, key);
        return 0;
    }
    if (ev->op == SP_OP_MESSAGE) {
        sp_buf_puts(key, "{\"prefix\":");
        json_put_str(key, ev->msg_prefix);
        sp_buf_putc(key, '}');
        return 0;
    }
    if (ev->rel == NULL || sp_relation_nkeys(ev->rel) == 0) {
        return 0;
    }
    const struct sp_tuple *tup = sp_event_key_tuple(ev);
    if (tup == NULL) {
        return 0;
    }
    return sp_format_json_row(fmt, ev, tup, true, key, err);
}

static int json_encode_value(struct sp_format *fmt, const struct sp_event *ev, struct sp_buf *value,
                             struct sp_err *err)
{
    int rc = 0;
    sp_buf_puts(value, "{\"before\":");
    switch (ev->op) {
    case SP_OP_INSERT:
    case SP_OP_READ:
        sp_buf_puts(value, "null,\"after\":");
        rc = json_put_tuple_or_null(fmt, ev, ev->after, false, value, err);
        break;
    case SP_OP_UPDATE:
    case SP_OP_DELETE:
        rc = json_put_tuple_or_null(fmt, ev, ev->before, ev->before_key_only, value, err);
        if (rc == 0) {
            sp_buf_puts(value, ",\"after\":");
            rc = json_put_tuple_or_null(fmt, ev, ev->op == SP_OP_UPDATE ? ev->after : NULL, false,
                                        value, err);
        }
        break;
    case SP_OP_TRUNCATE:
        sp_buf_puts(value, "null,\"after\":null");
        break;
    case SP_OP_MESSAGE:
        sp_buf_puts(value, "null,\"after\":null,\"message\":");
        json_put_message(ev, value);
        break;
    default:
        return sp_err_set(err, SP_EINVAL, "json format: cannot encode a '%c' event",
                          sp_op_char(ev->op));
    }
    if (rc < 0) {
        return rc;
    }
    sp_buf_puts(value, ",\"source\":");
    json_put_source(ev, value);
    sp_buf_puts(value, ",\"op\":\"");
    sp_buf_putc(value, sp_op_char(ev->op));
    sp_buf_puts(value, "\",\"ts_ms\":");
    sp_buf_put_i64(value, json_us_to_ms(json_clock()));
    char id[SP_EVENT_ID_BUFSZ];
    sp_buf_puts(value, ",\"id\":");
    json_put_str(value, ev->id_override != NULL ? ev->id_override : sp_event_id(ev, id));
    if (ev->tx_id != NULL) {
        /* transaction metadata (flow "transaction"), as Debezium writes it */
        sp_buf_puts(value, ",\"transaction\":{\"id\":");
        json_put_str(value, ev->tx_id);
        sp_buf_puts(value, ",\"total_order\":");
        sp_buf_put_u64(value, ev->tx_total_order);
        sp_buf_puts(value, ",\"data_collection_order\":");
        sp_buf_put_u64(value, ev->tx_collection_order);
        sp_buf_putc(value, '}');
    }
    sp_buf_putc(value, '}');
    return 0;
}

static int json_encode(struct sp_format *fmt, const struct sp_event *ev, struct sp_buf *key,
                       struct sp_buf *value, struct sp_err *err)
{
    size_t key_mark = key->len;
    size_t value_mark = value->len;
    if (ev->payload != NULL) {
        /* an outbox event: the business event is the value, as the application wrote it */
        if (ev->key_override != NULL) {
            sp_format_key_override(ev, key);
        }
        sp_buf_append(value, ev->payload, ev->payload_len);
        return 0;
    }
    int rc = sp_format_json_key(fmt, ev, key, err);
    if (rc == 0) {
        rc = json_encode_value(fmt, ev, value, err);
    }
    if (rc < 0) {
        /* Leave both buffers as they were: the event goes to the recovery policy. */
        sp_buf_truncate(key, key_mark);
        sp_buf_truncate(value, value_mark);
    }
    return rc;
}

const struct sp_format_ops sp_format_json = {
    .name = "json",
    .summary = "Debezium-style envelope with natural JSON values (DESIGN.md)",
    .encode = json_encode,
};
