// SPDX-License-Identifier: Apache-2.0
/*
 * The `nakadi` format (docs/format-nakadi.md): Nakadi events, one JSON
 * object per event.
 *
 * Row changes become DataChangeEvents:
 *   {"data_type":"<schema>.<table>","data_op":"C|U|D|S",
 *    "metadata":{"eid":"<uuid>","occurred_at":"<commit time>"},"data":{row}}
 * with data the new row (the old row, or its key columns, for deletes), its
 * values converted exactly as the json format converts them. data_type is
 * always the first member: the nakadi sink relies on that to replace it
 * when its `data_type` option is set.
 *
 * Events a flow gave a payload (the outbox's business events) are that
 * JSON object with metadata.eid and metadata.occurred_at added when the
 * payload lacks them; metadata is moved to the front, every other member
 * is kept byte for byte.
 *
 * eid is a version 5 UUID of the event's id (a flow's id, else "<commit
 * LSN>:<seq>") and of where it goes (a flow's destination or event type,
 * else "<source>/<schema>.<table>"), so the same change always gets the
 * same eid, after a crash and a replay too.
 *
 * Not encoded (an error: the stream's recovery policy decides): truncates,
 * and logical decoding messages without a payload. The key is the json
 * format's key, or a flow's key.
 */
#include "format/nakadi.h"

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>
#include <string.h>

#include "core/err.h"
#include "core/event.h"
#include "core/plugin.h"
#include "format/json.h"
#include "util/buf.h"
#include "util/json.h"
#include "util/time.h"
#include "util/uuid.h"

/* The fixed namespace of every eid siphon makes (a random version 4 UUID, chosen once). */
static const uint8_t nk_eid_namespace[16] = {0x6f, 0x0c, 0x2b, 0x8e, 0x4d, 0x71, 0x4a, 0x35,
                                             0x9b, 0x52, 0x17, 0xe3, 0xc8, 0x60, 0x5d, 0xa4};

char *sp_nakadi_eid(const char *dest, size_t dest_len, const char *id, char *out)
{
    struct sp_buf name;
    sp_buf_init(&name);
    sp_buf_append(&name, dest, dest_len);
    sp_buf_putc(&name, '\n');
    sp_buf_puts(&name, id);
    sp_uuid_v5(nk_eid_namespace, name.data, name.len, out);
    sp_buf_fini(&name);
    return out;
}

char *sp_format_nakadi_eid(const struct sp_event *ev, char *out)
{
    struct sp_buf dest;
    sp_buf_init(&dest);
    if (ev->dest != NULL) {
        sp_buf_puts(&dest, ev->dest);
    } else if (ev->event_type != NULL) {
        sp_buf_puts(&dest, ev->event_type);
    } else {
        sp_buf_puts(&dest, ev->source_name != NULL ? ev->source_name : "");
        sp_buf_putc(&dest, '/');
        if (ev->rel != NULL) {
            sp_buf_printf(&dest, "%s.%s", ev->rel->schema, ev->rel->table);
        } else {
            sp_buf_puts(&dest, ev->msg_prefix != NULL ? ev->msg_prefix : "");
        }
    }
    char id[SP_EVENT_ID_BUFSZ];
    sp_nakadi_eid(dest.data != NULL ? dest.data : "", dest.len,
                  ev->id_override != NULL ? ev->id_override : sp_event_id(ev, id), out);
    sp_buf_fini(&dest);
    return out;
}

static void nk_put_eid(const struct sp_event *ev, struct sp_buf *out)
{
    char eid[SP_UUID_STRLEN];
    sp_buf_puts(out, "\"eid\":\"");
    sp_buf_puts(out, sp_format_nakadi_eid(ev, eid));
    sp_buf_putc(out, '"');
}

static void nk_put_occurred_at(const struct sp_event *ev, struct sp_buf *out)
{
    char ts[32];
    sp_buf_puts(out, "\"occurred_at\":\"");
    sp_buf_puts(out, sp_time_iso_ms(ev->commit_time_us, ts));
    sp_buf_putc(out, '"');
}

static int nk_encode_row(const struct sp_format *fmt, const struct sp_event *ev,
                         struct sp_buf *value, struct sp_err *err)
{
    char op;
    const struct sp_tuple *tup;
    bool keys_only = false;
    switch (ev->op) {
    case SP_OP_INSERT:
        op = 'C';
        tup = ev->after;
        break;
    case SP_OP_UPDATE:
        op = 'U';
        tup = ev->after;
        break;
    case SP_OP_READ:
        op = 'S';
        tup = ev->after;
        break;
    case SP_OP_DELETE:
        op = 'D';
        tup = ev->before;
        keys_only = ev->before_key_only;
        break;
    case SP_OP_TRUNCATE:
        sp_err_set(err, SP_EINVAL,
                   "nakadi format: a truncate of \"%s.%s\" has no Nakadi data change event",
                   ev->rel != NULL ? ev->rel->schema : "", ev->rel != NULL ? ev->rel->table : "");
        sp_err_hint(err, "leave truncates out of the publication (publish = 'insert, update, "
                         "delete'), or use recovery ignore for them");
        return SP_EINVAL;
    default:
        sp_err_set(err, SP_EINVAL,
                   "nakadi format: a logical decoding message (prefix \"%s\") "
                   "needs an outbox flow that makes it a business event",
                   ev->msg_prefix != NULL ? ev->msg_prefix : "");
        return SP_EINVAL;
    }
    if (ev->rel == NULL || tup == NULL) {
        return sp_err_set(err, SP_EINVAL, "nakadi format: a '%c' event without a row",
                          sp_op_char(ev->op));
    }
    sp_buf_puts(value, "{\"data_type\":");
    struct sp_buf dt;
    sp_buf_init(&dt);
    sp_buf_printf(&dt, "%s.%s", ev->rel->schema, ev->rel->table);
    sp_buf_put_json_str(value, dt.data, dt.len);
    sp_buf_fini(&dt);
    sp_buf_printf(value, ",\"data_op\":\"%c\",\"metadata\":{", op);
    nk_put_eid(ev, value);
    sp_buf_putc(value, ',');
    nk_put_occurred_at(ev, value);
    sp_buf_puts(value, "},\"data\":");
    int rc = sp_format_json_row(fmt, ev, tup, keys_only, value, err);
    if (rc == 0) {
        sp_buf_putc(value, '}');
    }
    return rc;
}

/* Appends "key":val to out, with a comma unless it is the first member. */
static void nk_put_member(struct sp_buf *out, bool *first, struct sp_json_span k,
                          struct sp_json_span v)
{
    if (!*first) {
        sp_buf_putc(out, ',');
    }
    *first = false;
    sp_buf_append(out, k.p, k.len);
    sp_buf_putc(out, ':');
    sp_buf_append(out, v.p, v.len);
}

/* A business event: the payload with metadata first and eid/occurred_at filled in. */
static int nk_encode_payload(const struct sp_event *ev, struct sp_buf *value, struct sp_err *err)
{
    struct sp_json_span pl = {ev->payload, ev->payload_len};
    struct sp_json_iter it;
    if (!sp_json_valid(pl.p, pl.len) || sp_json_iter_init(&it, pl, '{') != 0) {
        return sp_err_set(err, SP_EINVAL,
                          "nakadi format: the event's payload is not a JSON object: %.80s",
                          ev->payload);
    }
    struct sp_json_span k;
    struct sp_json_span v;
    struct sp_json_span meta = {NULL, 0};
    while (sp_json_iter_next(&it, &k, &v) == 1) {
        if (sp_json_key_is(k, "metadata")) {
            meta = v;
            break;
        }
    }
    struct sp_json_iter mit;
    if (meta.p != NULL && sp_json_iter_init(&mit, meta, '{') != 0) {
        return sp_err_set(err, SP_EINVAL,
                          "nakadi format: the payload's metadata is not a JSON object");
    }
    struct sp_json_span tmp;
    bool has_eid = meta.p != NULL && sp_json_member(meta, "eid", &tmp);
    bool has_at = meta.p != NULL && sp_json_member(meta, "occurred_at", &tmp);
    sp_buf_puts(value, "{\"metadata\":{");
    bool first = true;
    if (!has_eid) {
        nk_put_eid(ev, value);
        first = false;
    }
    if (!has_at) {
        if (!first) {
            sp_buf_putc(value, ',');
        }
        nk_put_occurred_at(ev, value);
        first = false;
    }
    if (meta.p != NULL) {
        while (sp_json_iter_next(&mit, &k, &v) == 1) {
            nk_put_member(value, &first, k, v);
        }
    }
    sp_buf_putc(value, '}');
    first = false;
    sp_json_iter_init(&it, pl, '{');
    bool seen_meta = false;
    while (sp_json_iter_next(&it, &k, &v) == 1) {
        if (!seen_meta && sp_json_key_is(k, "metadata")) {
            seen_meta = true; /* a later duplicate is kept: Nakadi decides about it */
            continue;
        }
        nk_put_member(value, &first, k, v);
    }
    sp_buf_putc(value, '}');
    return 0;
}

static int nk_encode(struct sp_format *fmt, const struct sp_event *ev, struct sp_buf *key,
                     struct sp_buf *value, struct sp_err *err)
{
    size_t key_mark = key->len;
    size_t value_mark = value->len;
    int rc = 0;
    if (ev->key_override != NULL) {
        sp_buf_append(key, ev->key_override, ev->key_override_len);
    } else {
        rc = sp_format_json_key(fmt, ev, key, err);
    }
    if (rc == 0) {
        rc = ev->payload != NULL ? nk_encode_payload(ev, value, err)
                                 : nk_encode_row(fmt, ev, value, err);
    }
    if (rc < 0) {
        /* Leave both buffers as they were: the event goes to the recovery policy. */
        sp_buf_truncate(key, key_mark);
        sp_buf_truncate(value, value_mark);
    }
    return rc;
}

const struct sp_format_ops sp_format_nakadi = {
    .name = "nakadi",
    .summary = "Nakadi data change events (data_op, data_type, data, metadata.eid, "
               "metadata.occurred_at); business events for outbox payloads",
    .encode = nk_encode,
};
