// SPDX-License-Identifier: Apache-2.0
/*
 * pgoutput decoder and relation cache: decodes messages recorded from
 * PostgreSQL 15 (data/pgoutput/<scenario>.txt, see record.sh there) and hand-made
 * malformed ones. Runs with tests/unit as the working directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/event.h"
#include "source/pg/pgoutput.h"
#include "source/pg/relcache.h"
#include "util/lsn.h"
#include "util/mem.h"
#include "util/time.h"

/* ---- Recorded messages ---- */

struct rec_msg {
    uint64_t lsn;
    uint8_t *data;
    size_t len;
};

struct rec {
    struct rec_msg *msgs;
    size_t n;
};

static int hexval(int c)
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

/* Reads data/pgoutput/<name>.txt: "<lsn> <hex>" per line, '#' comments. */
static struct rec rec_load(const char *name)
{
    struct rec rec = {0};
    char path[256];
    snprintf(path, sizeof(path), "data/pgoutput/%s.txt", name);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fail_msg("cannot open %s", path);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
            line[--n] = '\0';
        }
        if (n == 0 || line[0] == '#') {
            continue;
        }
        char *sp = strchr(line, ' ');
        assert_non_null(sp);
        *sp = '\0';
        const char *hex = sp + 1;
        size_t hexlen = strlen(hex);
        assert_int_equal(hexlen % 2, 0);
        struct rec_msg m = {.len = hexlen / 2};
        assert_true(sp_lsn_parse(line, &m.lsn));
        m.data = sp_xmalloc(m.len > 0 ? m.len : 1);
        for (size_t i = 0; i < m.len; i++) {
            int hi = hexval(hex[2 * i]);
            int lo = hexval(hex[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                fail_msg("%s: bad hex digit", path);
                abort(); /* not reached: cmocka's _fail() is not declared noreturn */
            }
            m.data[i] = (uint8_t)((unsigned)hi << 4 | (unsigned)lo);
        }
        rec.msgs = sp_xrealloc(rec.msgs, (rec.n + 1) * sizeof(*rec.msgs));
        rec.msgs[rec.n++] = m;
    }
    free(line);
    fclose(f);
    if (rec.n == 0) {
        fail_msg("%s holds no messages", path);
        abort(); /* not reached */
    }
    return rec;
}

static void rec_free(struct rec *rec)
{
    for (size_t i = 0; i < rec->n; i++) {
        free(rec->msgs[i].data);
    }
    free(rec->msgs);
    rec->msgs = NULL;
    rec->n = 0;
}

/* Index of the k-th (0-based) message with this tag. */
static size_t rec_find(const struct rec *rec, uint8_t tag, int k)
{
    for (size_t i = 0; i < rec->n; i++) {
        if (rec->msgs[i].data[0] == tag && k-- == 0) {
            return i;
        }
    }
    fail_msg("no message '%c'", tag);
    abort(); /* not reached */
}

/* ---- Fixture ---- */

struct fx {
    struct sp_relcache *rc;
    struct sp_pgo d;
    struct sp_event_list out;
    struct sp_err err;
    struct rec rec;
    /* on_type / on_relation records */
    int ntypes;
    uint32_t type_oid;
    char type_schema[64];
    char type_name[64];
    int nrelations;
    bool fail_relation;
};

static int fx_setup(void **state)
{
    struct fx *fx = sp_xcalloc(1, sizeof(*fx));
    fx->rc = sp_relcache_new();
    sp_pgo_init(&fx->d, fx->rc);
    fx->d.source_name = "orders";
    fx->d.db = "shop";
    sp_event_list_init(&fx->out);
    sp_err_clear(&fx->err);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;
    sp_event_list_free(&fx->out);
    sp_pgo_fini(&fx->d);
    sp_relcache_free(fx->rc);
    rec_free(&fx->rec);
    free(fx);
    return 0;
}

static int fx_decode(struct fx *fx, const struct rec_msg *m)
{
    return sp_pgo_decode(&fx->d, m->data, m->len, m->lsn, &fx->out, &fx->err);
}

static void fx_decode_ok(struct fx *fx, const struct rec_msg *m)
{
    int rc = fx_decode(fx, m);
    if (rc != 0) {
        fail_msg("decode failed: %s", fx->err.msg);
    }
}

/* Loads a recording and decodes all of it; the events are in fx->out. */
static void fx_decode_file(struct fx *fx, const char *name)
{
    rec_free(&fx->rec);
    fx->rec = rec_load(name);
    for (size_t i = 0; i < fx->rec.n; i++) {
        fx_decode_ok(fx, &fx->rec.msgs[i]);
    }
    assert_false(fx->d.in_txn);
}

static int fx_decode_bytes(struct fx *fx, const uint8_t *msg, size_t len)
{
    return sp_pgo_decode(&fx->d, msg, len, 0x1000, &fx->out, &fx->err);
}

static struct sp_event *ev_at(const struct fx *fx, size_t i)
{
    struct sp_event *ev = fx->out.head;
    for (; ev != NULL && i > 0; i--) {
        ev = ev->next;
    }
    assert_non_null(ev);
    return ev;
}

static void assert_ops(const struct fx *fx, const char *ops)
{
    char got[64] = {0};
    size_t n = 0;
    for (const struct sp_event *ev = fx->out.head; ev != NULL && n < sizeof(got) - 1;
         ev = ev->next) {
        got[n++] = sp_op_char(ev->op);
    }
    assert_string_equal(got, ops);
    assert_int_equal(fx->out.count, strlen(ops));
}

static const struct sp_datum *col(const struct sp_event *ev, const struct sp_tuple *t,
                                  const char *name)
{
    int i = sp_event_col_index(ev, name);
    if (i < 0) {
        fail_msg("no column %s", name);
    }
    assert_non_null(t);
    assert_int_equal(t->ncols, ev->rel->ncols);
    return &t->cols[i];
}

static void assert_text(const struct sp_event *ev, const struct sp_tuple *t, const char *name,
                        const char *want)
{
    const struct sp_datum *dt = col(ev, t, name);
    assert_int_equal(dt->kind, SP_DATUM_TEXT);
    assert_int_equal(dt->len, strlen(want));
    assert_string_equal(dt->data, want);
}

static void assert_col_null(const struct sp_event *ev, const struct sp_tuple *t, const char *name)
{
    assert_int_equal(col(ev, t, name)->kind, SP_DATUM_NULL);
}

/* Begin/commit pair around the change events at [first, last]. */
static void assert_txn(const struct fx *fx, size_t begin, size_t commit)
{
    const struct sp_event *b = ev_at(fx, begin);
    const struct sp_event *c = ev_at(fx, commit);
    assert_int_equal(b->op, SP_OP_BEGIN);
    assert_int_equal(c->op, SP_OP_COMMIT);
    assert_true(b->commit_lsn != 0);
    assert_true(c->commit_lsn == b->commit_lsn);
    assert_true(c->end_lsn > c->commit_lsn);
    assert_int_equal(c->xid, b->xid);
    assert_true(b->commit_time_us == c->commit_time_us);
    for (size_t i = begin + 1; i < commit; i++) {
        const struct sp_event *ev = ev_at(fx, i);
        assert_true(ev->commit_lsn == b->commit_lsn);
        assert_int_equal(ev->xid, b->xid);
        assert_true(ev->commit_time_us == b->commit_time_us);
        assert_int_equal(ev->seq, i - begin);
        assert_ptr_equal(ev->source_name, fx->d.source_name);
        assert_ptr_equal(ev->db, fx->d.db);
        assert_string_equal(ev->snapshot, "false");
    }
}

/* ---- Recorded: transactions and rows ---- */

static void begin_commit_bracket_an_insert(void **state)
{
    struct fx *fx = *state;
    fx_decode_file(fx, "insert_null");
    assert_ops(fx, "BcC");
    assert_txn(fx, 0, 2);

    const struct sp_event *b = ev_at(fx, 0);
    const struct rec_msg *bm = &fx->rec.msgs[rec_find(&fx->rec, 'B', 0)];
    assert_true(b->lsn == bm->lsn);
    assert_null(b->rel);
    assert_int_equal(b->seq, 0);
    /* Recorded after 2020-01-01 and before 2100-01-01, Unix epoch. */
    assert_true(b->commit_time_us > INT64_C(1577836800000000));
    assert_true(b->commit_time_us < INT64_C(4102444800000000));

    const struct sp_event *c = ev_at(fx, 2);
    const struct rec_msg *cm = &fx->rec.msgs[rec_find(&fx->rec, 'C', 0)];
    assert_true(c->lsn == cm->lsn);
    assert_true(c->end_lsn == cm->lsn); /* the SQL interface reports the end LSN */
    assert_false(fx->d.in_txn);
}

static void insert_copies_values_and_null(void **state)
{
    struct fx *fx = *state;
    fx_decode_file(fx, "insert_null");
    const struct sp_event *ev = ev_at(fx, 1);
    assert_int_equal(ev->op, SP_OP_INSERT);
    assert_null(ev->before);
    assert_false(ev->before_key_only);
    assert_true(ev->lsn == fx->rec.msgs[rec_find(&fx->rec, 'I', 0)].lsn);
    assert_string_equal(ev->rel->schema, "public");
    assert_string_equal(ev->rel->table, "t_basic");
    assert_int_equal(ev->rel->replident, 'd');
    assert_int_equal(ev->rel->ncols, 4);
    assert_int_equal(ev->rel->version, 1);
    assert_int_equal(sp_relation_nkeys(ev->rel), 1);
    assert_true(ev->rel->cols[0].key);
    assert_string_equal(ev->rel->cols[0].name, "id");
    assert_int_equal(ev->rel->cols[0].type_oid, 23); /* int4 */
    assert_int_equal(ev->rel->cols[0].typmod, -1);
    assert_int_equal(ev->rel->cols[1].type_oid, 25); /* text */
    assert_null(ev->rel->cols[0].type);
    assert_text(ev, ev->after, "id", "1");
    assert_text(ev, ev->after, "name", "alpha");
    assert_text(ev, ev->after, "qty", "10");
    assert_col_null(ev, ev->after, "note");
    assert_null(ev->origin);

    /* The values live in the event, not in the message buffer. */
    const struct rec_msg *im = &fx->rec.msgs[rec_find(&fx->rec, 'I', 0)];
    const char *name = col(ev, ev->after, "name")->data;
    assert_false(name >= (const char *)im->data && name < (const char *)im->data + im->len);
}

static void update_without_old_tuple(void **state)
{
    struct fx *fx = *state;
    fx_decode_file(fx, "update_plain");
    assert_ops(fx, "BuC");
    assert_txn(fx, 0, 2);
    const struct sp_event *ev = ev_at(fx, 1);
    assert_null(ev->before);
    assert_false(ev->before_key_only);
    assert_text(ev, ev->after, "id", "1");
    assert_text(ev, ev->after, "qty", "11");
    assert_col_null(ev, ev->after, "note");
}

static void update_of_key_sends_old_key(void **state)
{
    struct fx *fx = *state;
    fx_decode_file(fx, "update_key");
    assert_ops(fx, "BuC");
    const struct sp_event *ev = ev_at(fx, 1);
    assert_true(ev->before_key_only);
    assert_text(ev, ev->before, "id", "1");
    assert_col_null(ev, ev->before, "name");
    assert_col_null(ev, ev->before, "qty");
    assert_text(ev, ev->after, "id", "2");
    assert_text(ev, ev->after, "name", "beta");
    assert_ptr_equal(sp_event_key_tuple(ev), ev->after);
}

static void update_under_replica_identity_full_sends_old_row(void **state)
{
    struct fx *fx = *state;
    fx_decode_file(fx, "update_full");
    assert_ops(fx, "BcCBuC");
    assert_txn(fx, 0, 2);
    assert_txn(fx, 3, 5);
    const struct sp_event *ev = ev_at(fx, 4);
    assert_int_equal(ev->rel->replident, 'f');
    assert_int_equal(sp_relation_nkeys(ev->rel), 3);
    assert_false(ev->before_key_only);
    assert_text(ev, ev->before, "name", "one");
    assert_text(ev, ev->before, "qty", "1");
    assert_text(ev, ev->after, "name", "uno");
    assert_text(ev, ev->after, "qty", "2");
    /* The second transaction needs no new Relation message: both share the version. */
    assert_ptr_equal(ev->rel, ev_at(fx, 1)->rel);
}

static void unchanged_toast_stays_unchanged_under_default(void **state)
{
    struct fx *fx = *state;
    fx_decode_file(fx, "toast_default");
    assert_ops(fx, "BcCBuC");
    const struct sp_event *ins = ev_at(fx, 1);
    const struct sp_datum *body = col(ins, ins->after, "body");
    assert_int_equal(body->kind, SP_DATUM_TEXT);
    assert_int_equal(body->len, 3000);
    assert_int_equal(strlen(body->data), 3000);
    assert_memory_equal(body->data, "toast-toast-", 12);

    const struct sp_event *up = ev_at(fx, 4);
    assert_null(up->before);
    assert_text(up, up->after, "flag", "1");
    assert_int_equal(col(up, up->after, "body")->kind, SP_DATUM_UNCHANGED);
}

static void unchanged_toast_comes_from_old_row_under_full(void **state)
{
    struct fx *fx = *state;
    fx_decode_file(fx, "toast_full");
    assert_ops(fx, "BcCBuC");
    const struct sp_event *up = ev_at(fx, 4);
    assert_non_null(up->before);
    assert_false(up->before_key_only);
    const struct sp_datum *old = col(up, up->before, "body");
    const struct sp_datum *now = col(up, up->after, "body");
    assert_int_equal(old->kind, SP_DATUM_TEXT);
    assert_int_equal(now->kind, SP_DATUM_TEXT);
    assert_int_equal(now->len, 3000);
    assert_memory_equal(now->data, old->data, 3000);
    assert_int_equal(now->data[3000], '\0');
    assert_text(up, up->before, "flag", "0");
    assert_text(up, up->after, "flag", "1");
}

static void unchanged_toast_is_kept_when_old_row_lacks_it(void **state)
{
    struct fx *fx = *state;
    /* A full old row whose own value is 'u' has nothing to copy. */
    fx_decode_file(fx, "toast_full");
    const struct rec_msg *rel = &fx->rec.msgs[rec_find(&fx->rec, 'R', 0)];
    uint8_t begin[] = {'B', 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7};
    uint8_t up[64];
    size_t n = 0;
    up[n++] = 'U';
    memcpy(up + n, rel->data + 1, 4); /* relation oid */
    n += 4;
    const uint8_t tup[] = {0, 3, 't', 0, 0, 0, 1, '1', 'n', 'u'};
    up[n++] = 'O';
    memcpy(up + n, tup, sizeof(tup));
    n += sizeof(tup);
    up[n++] = 'N';
    memcpy(up + n, tup, sizeof(tup));
    n += sizeof(tup);
    sp_event_list_free(&fx->out);
    assert_int_equal(fx_decode_bytes(fx, begin, sizeof(begin)), 0);
    assert_int_equal(fx_decode_bytes(fx, up, n), 0);
    const struct sp_event *ev = ev_at(fx, 1);
    assert_int_equal(col(ev, ev->after, "body")->kind, SP_DATUM_UNCHANGED);
    assert_int_equal(col(ev, ev->after, "flag")->kind, SP_DATUM_NULL);
    assert_int_equal(ev->xid, 7);
}

static void delete_sends_old_key(void **state)
{
    struct fx *fx = *state;
    fx_decode_file(fx, "delete_key");
    assert_ops(fx, "BdC");
    assert_txn(fx, 0, 2);
    const struct sp_event *ev = ev_at(fx, 1);
    assert_null(ev->after);
    assert_true(ev->before_key_only);
    assert_text(ev, ev->before, "id", "2");
    assert_col_null(ev, ev->before, "name");
    assert_ptr_equal(sp_event_key_tuple(ev), ev->before);
}

static void delete_under_replica_identity_full_sends_old_row(void **state)
{
    struct fx *fx = *state;
    fx_decode_file(fx, "delete_full");
    assert_ops(fx, "BdC");
    const struct sp_event *ev = ev_at(fx, 1);
    assert_null(ev->after);
    assert_false(ev->before_key_only);
    assert_text(ev, ev->before, "id", "1");
    assert_text(ev, ev->before, "name", "uno");
    assert_text(ev, ev->before, "qty", "2");
}

static void truncate_yields_one_event_per_relation(void **state)
{
    struct fx *fx = *state;
    fx_decode_file(fx, "truncate");
    assert_ops(fx, "BcCBcCBttC");
    assert_txn(fx, 6, 9);
    const struct sp_event *t1 = ev_at(fx, 7);
    const struct sp_event *t2 = ev_at(fx, 8);
    assert_string_equal(t1->rel->table, "t_parent");
    assert_string_equal(t2->rel->table, "t_child");
    assert_int_equal(t1->truncate_flags, 3); /* CASCADE | RESTART IDENTITY */
    assert_int_equal(t2->truncate_flags, 3);
    assert_int_equal(t1->seq, 1);
    assert_int_equal(t2->seq, 2);
    assert_null(t1->before);
    assert_null(t1->after);
    assert_true(t1->lsn == t2->lsn);
    char id1[SP_EVENT_ID_BUFSZ];
    char id2[SP_EVENT_ID_BUFSZ];
    assert_string_not_equal(sp_event_id(t1, id1), sp_event_id(t2, id2));
    /* The Relation messages of the third transaction replaced the first versions. */
    assert_int_equal(t1->rel->version, 2);
    assert_int_equal(ev_at(fx, 1)->rel->version, 1);
}

static void transactional_and_plain_messages(void **state)
{
    struct fx *fx = *state;
    fx_decode_file(fx, "message");
    assert_ops(fx, "BcmCm");
    assert_txn(fx, 0, 3);

    const struct sp_event *tm = ev_at(fx, 2);
    const struct rec_msg *tmm = &fx->rec.msgs[rec_find(&fx->rec, 'M', 0)];
    assert_true(tm->msg_transactional);
    assert_int_equal(tm->seq, 2);
    assert_null(tm->rel);
    assert_string_equal(tm->msg_prefix, "outbox");
    const char *payload = "{\"event\":\"created\",\"id\":10}";
    assert_int_equal(tm->msg_len, strlen(payload));
    assert_string_equal(tm->msg_content, payload);
    assert_true(tm->lsn == tmm->lsn);

    const struct sp_event *nm = ev_at(fx, 4);
    const struct rec_msg *nmm = &fx->rec.msgs[rec_find(&fx->rec, 'M', 1)];
    assert_false(nm->msg_transactional);
    assert_int_equal(nm->seq, 0);
    assert_int_equal(nm->xid, 0);
    assert_true(nm->commit_time_us == 0);
    assert_true(nm->lsn == nmm->lsn);
    assert_true(nm->commit_lsn == nm->lsn);
    assert_true(nm->end_lsn == nm->lsn);
    assert_string_equal(nm->msg_prefix, "audit");
    assert_int_equal(nm->msg_len, 5);
    assert_memory_equal(nm->msg_content, "hello", 6);
    assert_ptr_equal(nm->source_name, fx->d.source_name);
}

static int fx_on_type(void *ctx, uint32_t oid, const char *schema, const char *name,
                      struct sp_err *err)
{
    struct fx *fx = ctx;
    (void)err;
    fx->ntypes++;
    fx->type_oid = oid;
    snprintf(fx->type_schema, sizeof(fx->type_schema), "%s", schema);
    snprintf(fx->type_name, sizeof(fx->type_name), "%s", name);
    return 0;
}

static void type_message_reaches_callback(void **state)
{
    struct fx *fx = *state;
    fx->d.on_type = fx_on_type;
    fx->d.ctx = fx;
    fx_decode_file(fx, "type_enum");
    assert_ops(fx, "BcC");
    assert_int_equal(fx->ntypes, 1);
    assert_string_equal(fx->type_schema, "public");
    assert_string_equal(fx->type_name, "mood");
    const struct sp_event *ev = ev_at(fx, 1);
    assert_int_equal(ev->rel->cols[sp_event_col_index(ev, "m")].type_oid, fx->type_oid);
    assert_text(ev, ev->after, "m", "happy");
}

static void type_message_without_callback_is_accepted(void **state)
{
    struct fx *fx = *state;
    fx_decode_file(fx, "type_enum");
    assert_ops(fx, "BcC");
}

static void alter_table_keeps_old_versions_in_old_events(void **state)
{
    struct fx *fx = *state;
    fx_decode_file(fx, "alter");
    assert_ops(fx, "BcCBcCBcCBcC");
    static const char *const shapes[4][4] = {
        {"id", "a", "b", NULL},
        {"id", "a", "b", "c"},
        {"id", "b", "c", NULL},
        {"id", "bb", "c", NULL},
    };
    const struct sp_relation *prev = NULL;
    for (int k = 0; k < 4; k++) {
        const struct sp_event *ev = ev_at(fx, (size_t)k * 3 + 1);
        assert_int_equal(ev->op, SP_OP_INSERT);
        assert_int_equal(ev->rel->version, k + 1);
        assert_true(ev->rel != prev);
        int ncols = shapes[k][3] != NULL ? 4 : 3;
        assert_int_equal(ev->rel->ncols, ncols);
        assert_int_equal(ev->after->ncols, ncols);
        for (int i = 0; i < ncols; i++) {
            assert_string_equal(ev->rel->cols[i].name, shapes[k][i]);
        }
        char id[2] = {(char)('1' + k), '\0'};
        assert_text(ev, ev->after, "id", id);
        prev = ev->rel;
    }
    const struct sp_event *first = ev_at(fx, 1);
    assert_text(first, first->after, "a", "a1");
    const struct sp_event *last = ev_at(fx, 10);
    assert_text(last, last->after, "bb", "b4");
    assert_int_equal(sp_event_col_index(last, "a"), -1);
    /* Old events hold their own reference; the cache holds the newest only. */
    assert_int_equal(first->rel->refs, 1);
    assert_ptr_equal(sp_relcache_get(fx->rc, last->rel->oid), last->rel);
    assert_int_equal(last->rel->refs, 2);
}

static void table_without_primary_key(void **state)
{
    struct fx *fx = *state;
    fx_decode_file(fx, "nopk");
    assert_ops(fx, "BccC");
    assert_txn(fx, 0, 3);
    const struct sp_event *ev = ev_at(fx, 1);
    assert_int_equal(sp_relation_nkeys(ev->rel), 0);
    assert_text(ev, ev->after, "x", "1");
    assert_col_null(ev, ev->after, "y");
    const struct sp_event *ev2 = ev_at(fx, 2);
    assert_text(ev2, ev2->after, "y", "two");
}

static void origin_applies_to_rest_of_transaction(void **state)
{
    struct fx *fx = *state;
    rec_free(&fx->rec);
    fx->rec = rec_load("origin");
    for (size_t i = 0; i + 1 < fx->rec.n; i++) {
        fx_decode_ok(fx, &fx->rec.msgs[i]);
    }
    assert_non_null(fx->d.origin);
    assert_string_equal(fx->d.origin, "upstream");
    assert_true(fx->d.origin_lsn == 0xABCDEF);
    fx_decode_ok(fx, &fx->rec.msgs[fx->rec.n - 1]);
    assert_null(fx->d.origin);
    assert_ops(fx, "BcC");
    assert_null(ev_at(fx, 0)->origin); /* Origin follows Begin */
    assert_string_equal(ev_at(fx, 1)->origin, "upstream");
    assert_string_equal(ev_at(fx, 2)->origin, "upstream");
    assert_ptr_not_equal(ev_at(fx, 1)->origin, ev_at(fx, 2)->origin);

    /* The next transaction starts without one. */
    sp_event_list_free(&fx->out);
    for (size_t i = 0; i < fx->rec.n; i++) {
        if (fx->rec.msgs[i].data[0] != 'O') {
            fx_decode_ok(fx, &fx->rec.msgs[i]);
        }
    }
    assert_null(ev_at(fx, 1)->origin);
}

static int fx_on_relation(void *ctx, struct sp_relation *rel, struct sp_err *err)
{
    struct fx *fx = ctx;
    fx->nrelations++;
    if (fx->fail_relation) {
        return sp_err_set(err, SP_EINVAL, "no type for column \"%s\"", rel->cols[0].name);
    }
    return 0;
}

static void relation_callback_sees_each_version(void **state)
{
    struct fx *fx = *state;
    fx->d.on_relation = fx_on_relation;
    fx->d.ctx = fx;
    fx_decode_file(fx, "alter");
    assert_int_equal(fx->nrelations, 4);
}

static void relation_callback_failure_fails_decode(void **state)
{
    struct fx *fx = *state;
    fx->d.on_relation = fx_on_relation;
    fx->d.ctx = fx;
    fx->fail_relation = true;
    fx->rec = rec_load("insert_null");
    fx_decode_ok(fx, &fx->rec.msgs[0]);
    const struct rec_msg *rel = &fx->rec.msgs[rec_find(&fx->rec, 'R', 0)];
    assert_int_equal(fx_decode(fx, rel), SP_EINVAL);
    assert_non_null(strstr(fx->err.msg, "Relation message"));
    assert_non_null(strstr(fx->err.msg, "no type for column \"id\""));
    assert_int_equal(sp_relcache_count(fx->rc), 0);
    /* The insert that follows now refers to an unknown relation. */
    assert_int_equal(fx_decode(fx, &fx->rec.msgs[rec_find(&fx->rec, 'I', 0)]), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "not in cache"));
}

/* ---- Malformed input ---- */

static const char *const rec_names[] = {
    "insert_null", "update_plain",  "update_key", "update_full", "delete_key",
    "delete_full", "toast_default", "toast_full", "truncate",    "message",
    "type_enum",   "alter",         "nopk",       "origin",
};

/*
 * Decodes every proper prefix of m, each of which must fail without output.
 * A failed decode leaves the decoder's state alone, so one decoder serves
 * every cut. Returns the number of cuts.
 */
static size_t fx_decode_cuts(struct fx *fx, const char *file, size_t i)
{
    const struct rec_msg *m = &fx->rec.msgs[i];
    size_t before = fx->out.count;
    for (size_t cut = 0; cut < m->len; cut++) {
        uint8_t *copy = sp_xmalloc(cut > 0 ? cut : 1); /* exact size: ASan sees overreads */
        memcpy(copy, m->data, cut);
        sp_err_clear(&fx->err);
        int rc = sp_pgo_decode(&fx->d, copy, cut, m->lsn, &fx->out, &fx->err);
        free(copy);
        if (rc != SP_EPROTO) {
            fail_msg("%s message %zu cut at %zu: rc %d", file, i, cut, rc);
        }
        assert_int_equal(fx->out.count, before);
        assert_non_null(strstr(fx->err.msg, "pgoutput"));
    }
    return m->len;
}

static void truncated_messages_are_refused(void **state)
{
    struct fx *fx = *state;
    size_t cuts = 0;
    for (size_t f = 0; f < SP_ARRAY_LEN(rec_names); f++) {
        rec_free(&fx->rec);
        fx->rec = rec_load(rec_names[f]);
        for (size_t i = 0; i < fx->rec.n; i++) {
            cuts += fx_decode_cuts(fx, rec_names[f], i);
            fx_decode_ok(fx, &fx->rec.msgs[i]);
        }
        sp_event_list_free(&fx->out);
    }
    assert_true(cuts > 10000);
}

static void truncated_message_error_names_type_lsn_and_offset(void **state)
{
    struct fx *fx = *state;
    fx->rec = rec_load("insert_null");
    fx_decode_ok(fx, &fx->rec.msgs[0]);
    fx_decode_ok(fx, &fx->rec.msgs[1]);
    const struct rec_msg *m = &fx->rec.msgs[2];
    assert_int_equal(m->data[0], 'I');
    assert_int_equal(sp_pgo_decode(&fx->d, m->data, 8, m->lsn, &fx->out, &fx->err), SP_EPROTO);
    char want[128];
    snprintf(want, sizeof(want), "invalid pgoutput Insert message at " SP_LSN_FMT ", byte 8 of 8",
             SP_LSN_ARGS(m->lsn));
    assert_non_null(strstr(fx->err.msg, want));
    assert_non_null(strstr(fx->err.msg, "ends early"));
}

/* Recorded Begin + Relation of t_basic, then the caller's message. */
static void fx_open_basic(struct fx *fx)
{
    fx->rec = rec_load("insert_null");
    fx_decode_ok(fx, &fx->rec.msgs[0]);
    fx_decode_ok(fx, &fx->rec.msgs[1]);
}

static uint8_t *msg_copy(const struct rec_msg *m, size_t extra)
{
    uint8_t *p = sp_xmalloc(m->len + extra);
    memcpy(p, m->data, m->len);
    return p;
}

static void wrong_column_count_names_relation(void **state)
{
    struct fx *fx = *state;
    fx_open_basic(fx);
    const struct rec_msg *im = &fx->rec.msgs[2];
    uint8_t *p = msg_copy(im, 0);
    assert_int_equal(p[5], 'N');
    p[7] = 3; /* ncols 4 -> 3 */
    assert_int_equal(fx_decode_bytes(fx, p, im->len), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "relation \"public.t_basic\""));
    assert_non_null(strstr(fx->err.msg, "3 columns"));
    assert_non_null(strstr(fx->err.msg, "byte 6"));
    p[6] = 0x80; /* negative */
    assert_int_equal(fx_decode_bytes(fx, p, im->len), SP_EPROTO);
    free(p);
    assert_int_equal(fx->out.count, 1);
}

static void unknown_relation_is_refused(void **state)
{
    struct fx *fx = *state;
    fx->rec = rec_load("insert_null");
    fx_decode_ok(fx, &fx->rec.msgs[0]);
    const struct rec_msg *im = &fx->rec.msgs[2];
    assert_int_equal(fx_decode(fx, im), SP_EPROTO);
    char want[64];
    uint32_t oid = (uint32_t)im->data[1] << 24 | (uint32_t)im->data[2] << 16 |
                   (uint32_t)im->data[3] << 8 | im->data[4];
    snprintf(want, sizeof(want), "relation %u not in cache", oid);
    assert_non_null(strstr(fx->err.msg, want));

    /* Truncate of a known and an unknown relation delivers neither. */
    fx_decode_ok(fx, &fx->rec.msgs[1]);
    uint8_t t[] = {'T',         0,           0,           0, 2, 0, im->data[1],
                   im->data[2], im->data[3], im->data[4], 0, 0, 0, 1};
    assert_int_equal(fx_decode_bytes(fx, t, sizeof(t)), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "relation 1 not in cache"));
    assert_int_equal(fx->out.count, 1);
    assert_int_equal(fx->d.seq, 0);
}

static void unknown_message_types_are_refused(void **state)
{
    struct fx *fx = *state;
    /* 'S' stream start, 'b' begin prepare: not in protocol version 1. */
    const uint8_t tags[] = {'X', 0, 'S', 'E', 'c', 'A', 'b', 'P', 'K', 'r', 0xff, 'k', 'w'};
    for (size_t i = 0; i < sizeof(tags); i++) {
        uint8_t msg[24] = {tags[i]};
        assert_int_equal(fx_decode_bytes(fx, msg, sizeof(msg)), SP_EPROTO);
        assert_non_null(strstr(fx->err.msg, "unknown pgoutput message type"));
    }
    assert_int_equal(fx_decode_bytes(fx, (const uint8_t *)"", 0), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "empty"));
    assert_int_equal(fx->out.count, 0);
}

static void negative_length_is_refused(void **state)
{
    struct fx *fx = *state;
    fx_open_basic(fx);
    const struct rec_msg *im = &fx->rec.msgs[2];
    uint8_t *p = msg_copy(im, 0);
    assert_int_equal(p[8], 't');
    memset(p + 9, 0xff, 4); /* length -1 */
    assert_int_equal(fx_decode_bytes(fx, p, im->len), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "negative length"));
    assert_non_null(strstr(fx->err.msg, "\"id\""));
    /* A length past the end is a short read. */
    p[9] = 0x7f;
    assert_int_equal(fx_decode_bytes(fx, p, im->len), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "ends early"));
    free(p);
}

static void bad_bytes_inside_messages_are_refused(void **state)
{
    struct fx *fx = *state;
    fx_open_basic(fx);
    const struct rec_msg *im = &fx->rec.msgs[2];
    uint8_t *p = msg_copy(im, 1);

    p[im->len] = 0;
    assert_int_equal(fx_decode_bytes(fx, p, im->len + 1), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "1 unexpected bytes after the end"));

    p[8] = 'x'; /* column kind */
    assert_int_equal(fx_decode_bytes(fx, p, im->len), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "unknown kind 0x78"));
    p[8] = 't';

    p[5] = 'K'; /* insert needs 'N' */
    assert_int_equal(fx_decode_bytes(fx, p, im->len), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "expected new tuple"));
    p[0] = 'D'; /* delete with 'N' */
    p[5] = 'N';
    assert_int_equal(fx_decode_bytes(fx, p, im->len), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "Delete"));
    p[0] = 'U'; /* update with 'K' and no new tuple */
    p[5] = 'K';
    assert_int_equal(fx_decode_bytes(fx, p, im->len), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "Update"));
    p[0] = 'I';
    p[5] = 'N';
    assert_int_equal(fx_decode_bytes(fx, p, im->len), 0);
    free(p);

    /* A string without its terminator. */
    uint8_t origin[] = {'O', 0, 0, 0, 0, 0, 0, 0, 1, 'a', 'b'};
    assert_int_equal(fx_decode_bytes(fx, origin, sizeof(origin)), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "string without terminator"));
    /* A Relation claiming more columns than it could hold. */
    uint8_t rel[] = {'R', 0,   0, 0, 9, 0, 't', 0, 'd', 0x7f, 0xff,
                     0,   'a', 0, 0, 0, 0, 23,  0, 0,   0,    0};
    assert_int_equal(fx_decode_bytes(fx, rel, sizeof(rel)), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "32767 columns"));
    rel[9] = 0;
    rel[10] = 1;
    assert_int_equal(fx_decode_bytes(fx, rel, sizeof(rel)), 0);
    struct sp_relation *r9 = sp_relcache_get(fx->rc, 9);
    assert_non_null(r9);
    assert_string_equal(r9->schema, "pg_catalog");
    assert_string_equal(r9->table, "t");
    assert_false(r9->cols[0].key);
    assert_int_equal(r9->cols[0].typmod, 0);
    /* Truncate whose count does not match its bytes. */
    uint8_t trunc[] = {'T', 0, 0, 0, 2, 0, 0, 0, 0, 9};
    assert_int_equal(fx_decode_bytes(fx, trunc, sizeof(trunc)), SP_EPROTO);
    trunc[4] = 0;
    assert_int_equal(fx_decode_bytes(fx, trunc, sizeof(trunc)), SP_EPROTO);
    trunc[4] = 1;
    assert_int_equal(fx_decode_bytes(fx, trunc, sizeof(trunc)), 0);
    assert_int_equal(fx->out.count, 3);
}

static void transaction_order_is_enforced(void **state)
{
    struct fx *fx = *state;
    fx->rec = rec_load("insert_null");
    const struct rec_msg *b = &fx->rec.msgs[0];
    const struct rec_msg *r = &fx->rec.msgs[1];
    const struct rec_msg *i = &fx->rec.msgs[2];
    const struct rec_msg *c = &fx->rec.msgs[3];

    assert_int_equal(fx_decode(fx, c), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "commit outside a transaction"));
    fx_decode_ok(fx, r); /* Relation needs no transaction */
    assert_int_equal(fx_decode(fx, i), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "outside a transaction"));
    uint8_t tm[] = {'M', 1, 0, 0, 0, 0, 0, 0, 0, 1, 'p', 0, 0, 0, 0, 0};
    assert_int_equal(fx_decode_bytes(fx, tm, sizeof(tm)), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "transactional message outside"));
    uint8_t tr[] = {'T', 0, 0, 0, 1, 0, r->data[1], r->data[2], r->data[3], r->data[4]};
    assert_int_equal(fx_decode_bytes(fx, tr, sizeof(tr)), SP_EPROTO);
    uint8_t origin[] = {'O', 0, 0, 0, 0, 0, 0, 0, 1, 'a', 0};
    assert_int_equal(fx_decode_bytes(fx, origin, sizeof(origin)), SP_EPROTO);
    assert_int_equal(fx->out.count, 0);

    fx_decode_ok(fx, b);
    assert_int_equal(fx_decode(fx, b), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "began inside transaction"));
    fx_decode_ok(fx, i);

    uint8_t *p = msg_copy(c, 0);
    p[9] ^= 1; /* commit LSN */
    assert_int_equal(fx_decode_bytes(fx, p, c->len), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "differs from the final LSN"));
    p[9] ^= 1;
    p[1] = 1; /* flags */
    assert_int_equal(fx_decode_bytes(fx, p, c->len), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "unknown flags"));
    p[1] = 0;
    memset(p + 10, 0, 8); /* end LSN before commit LSN */
    assert_int_equal(fx_decode_bytes(fx, p, c->len), SP_EPROTO);
    free(p);
    assert_true(fx->d.in_txn);
    fx_decode_ok(fx, c);
    assert_ops(fx, "BcC");
}

static void begin_fields_are_checked(void **state)
{
    struct fx *fx = *state;
    uint8_t b[21] = {'B'};
    assert_int_equal(fx_decode_bytes(fx, b, sizeof(b)), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "final LSN not set"));
    b[8] = 1;
    b[9] = 0x7f; /* timestamp INT64_MAX */
    memset(b + 10, 0xff, 7);
    assert_int_equal(fx_decode_bytes(fx, b, sizeof(b)), SP_EPROTO);
    assert_non_null(strstr(fx->err.msg, "out of range"));
    memset(b + 9, 0xff, 8); /* -1: 1999-12-31T23:59:59.999999 */
    b[20] = 42;
    assert_int_equal(fx_decode_bytes(fx, b, sizeof(b)), 0);
    const struct sp_event *ev = ev_at(fx, 0);
    assert_true(ev->commit_time_us == SP_PG_EPOCH_OFFSET_US - 1);
    assert_int_equal(ev->xid, 42);
    assert_true(ev->commit_lsn == 1);
    assert_true(ev->lsn == 0x1000);
}

static void plain_message_inside_transaction_keeps_seq(void **state)
{
    struct fx *fx = *state;
    uint8_t b[21] = {'B', 0, 0, 0, 0, 0, 0, 0, 5};
    uint8_t nm[] = {'M', 0, 0, 0, 0, 0, 0, 0, 0, 3, 'p', 0, 0, 0, 0, 2, 0, 'z'};
    uint8_t tm[] = {'M', 1, 0, 0, 0, 0, 0, 0, 0, 4, 'p', 0, 0, 0, 0, 0};
    assert_int_equal(fx_decode_bytes(fx, b, sizeof(b)), 0);
    assert_int_equal(fx_decode_bytes(fx, nm, sizeof(nm)), 0);
    assert_int_equal(fx_decode_bytes(fx, tm, sizeof(tm)), 0);
    assert_ops(fx, "Bmm");
    const struct sp_event *n = ev_at(fx, 1);
    assert_int_equal(n->seq, 0);
    assert_true(n->commit_lsn == 3);
    assert_int_equal(n->msg_len, 2);
    assert_memory_equal(n->msg_content, "\0z", 3); /* binary-safe, NUL-terminated */
    const struct sp_event *t = ev_at(fx, 2);
    assert_int_equal(t->seq, 1);
    assert_true(t->commit_lsn == 5);
    assert_true(t->lsn == 4);
    assert_int_equal(t->msg_len, 0);
    assert_string_equal(t->msg_content, "");
}

/* ---- Relation cache ---- */

static struct sp_relation *rel_new(uint32_t oid, const char *table)
{
    struct sp_relation *rel = sp_xcalloc(1, sizeof(*rel));
    rel->oid = oid;
    rel->schema = sp_xstrdup("public");
    rel->table = sp_xstrdup(table);
    rel->refs = 1;
    return rel;
}

static void relcache_versions_and_growth(void **state)
{
    (void)state;
    struct sp_relcache *rc = sp_relcache_new();
    assert_null(sp_relcache_get(rc, 1));
    for (uint32_t oid = 16384; oid < 16384 + 200; oid++) {
        sp_relcache_put(rc, rel_new(oid, "t"));
    }
    assert_int_equal(sp_relcache_count(rc), 200);
    for (uint32_t oid = 16384; oid < 16384 + 200; oid++) {
        struct sp_relation *rel = sp_relcache_get(rc, oid);
        assert_non_null(rel);
        assert_int_equal(rel->oid, oid);
        assert_int_equal(rel->version, 1);
    }
    assert_null(sp_relcache_get(rc, 16383));
    assert_null(sp_relcache_get(rc, 0));

    struct sp_relation *old = sp_relation_ref(sp_relcache_get(rc, 16400));
    sp_relcache_put(rc, rel_new(16400, "t2"));
    struct sp_relation *cur = sp_relcache_get(rc, 16400);
    assert_int_equal(cur->version, 2);
    assert_string_equal(cur->table, "t2");
    assert_int_equal(old->refs, 1); /* only ours is left */
    assert_string_equal(old->table, "t");
    sp_relation_unref(old);
    sp_relcache_put(rc, sp_relation_ref(cur)); /* same version again: no change */
    assert_int_equal(cur->version, 2);
    assert_int_equal(cur->refs, 1);
    assert_int_equal(sp_relcache_count(rc), 200);
    sp_relcache_free(rc);
    sp_relcache_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)
        T(begin_commit_bracket_an_insert),
        T(insert_copies_values_and_null),
        T(update_without_old_tuple),
        T(update_of_key_sends_old_key),
        T(update_under_replica_identity_full_sends_old_row),
        T(unchanged_toast_stays_unchanged_under_default),
        T(unchanged_toast_comes_from_old_row_under_full),
        T(unchanged_toast_is_kept_when_old_row_lacks_it),
        T(delete_sends_old_key),
        T(delete_under_replica_identity_full_sends_old_row),
        T(truncate_yields_one_event_per_relation),
        T(transactional_and_plain_messages),
        T(type_message_reaches_callback),
        T(type_message_without_callback_is_accepted),
        T(alter_table_keeps_old_versions_in_old_events),
        T(table_without_primary_key),
        T(origin_applies_to_rest_of_transaction),
        T(relation_callback_sees_each_version),
        T(relation_callback_failure_fails_decode),
        T(truncated_messages_are_refused),
        T(truncated_message_error_names_type_lsn_and_offset),
        T(wrong_column_count_names_relation),
        T(unknown_relation_is_refused),
        T(unknown_message_types_are_refused),
        T(negative_length_is_refused),
        T(bad_bytes_inside_messages_are_refused),
        T(transaction_order_is_enforced),
        T(begin_fields_are_checked),
        T(plain_message_inside_transaction_keeps_seq),
        cmocka_unit_test(relcache_versions_and_growth),
#undef T
    };
    return cmocka_run_group_tests_name("pgoutput", tests, NULL, NULL);
}
