// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for the pgoutput decoder. The input is a sequence of
 * messages, each a big-endian u32 length and that many bytes (a short final
 * length takes what is left), all fed through one decoder and relation cache
 * so Relation -> change order, replaced versions and stale-cache paths are
 * exercised. Events are kept to the end, so an event outliving its relation
 * version shows up under ASan.
 */
#include <stdint.h>

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/event.h"
#include "source/pg/pgoutput.h"
#include "source/pg/relcache.h"

/* libFuzzer's entry point: the name is libFuzzer's, hence no sp_ prefix. */
/* NOLINTNEXTLINE(readability-identifier-naming) */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Refuse relations and types named "fail", to drive the callbacks' error paths. */
static int fz_on_relation(void *ctx, struct sp_relation *rel, struct sp_err *err)
{
    (void)ctx;
    if (strcmp(rel->table, "fail") == 0) {
        return sp_err_set(err, SP_EINVAL, "refused");
    }
    return 0;
}

static int fz_on_type(void *ctx, uint32_t oid, const char *schema, const char *name,
                      struct sp_err *err)
{
    (void)ctx;
    if (strcmp(name, "fail") == 0) {
        return sp_err_set(err, SP_EINVAL, "type %u in \"%s\" refused", oid, schema);
    }
    return 0;
}

static void fz_check_tuple(const struct sp_event *ev, const struct sp_tuple *t)
{
    if (t == NULL) {
        return;
    }
    if (ev->rel == NULL || t->ncols != ev->rel->ncols) {
        abort();
    }
    for (int i = 0; i < t->ncols; i++) {
        const struct sp_datum *dt = &t->cols[i];
        if ((dt->kind == SP_DATUM_TEXT || dt->kind == SP_DATUM_BINARY) &&
            dt->data[dt->len] != '\0') {
            abort();
        }
    }
}

static void fz_check_event(const struct sp_event *ev)
{
    fz_check_tuple(ev, ev->before);
    fz_check_tuple(ev, ev->after);
    /* Reading a freed version is what ASan reports here. */
    if (ev->rel != NULL && (ev->rel->refs < 1 || ev->rel->schema == NULL)) {
        abort();
    }
    if (ev->op == SP_OP_MESSAGE && ev->msg_content[ev->msg_len] != '\0') {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sp_relcache *rc = sp_relcache_new();
    struct sp_pgo d;
    struct sp_event_list out;
    struct sp_err err;
    uint64_t lsn = 0x1000000;

    sp_pgo_init(&d, rc);
    d.on_relation = fz_on_relation;
    d.on_type = fz_on_type;
    d.source_name = "fuzz";
    sp_event_list_init(&out);
    while (size >= 4) {
        size_t len = (size_t)data[0] << 24 | (size_t)data[1] << 16 | (size_t)data[2] << 8 | data[3];
        data += 4;
        size -= 4;
        if (len > size) {
            len = size;
        }
        size_t before = out.count;
        sp_err_clear(&err);
        int r = sp_pgo_decode(&d, data, len, lsn, &out, &err);
        if (r > 0 || (r < 0 && (out.count != before || err.msg[0] == '\0'))) {
            abort();
        }
        data += len;
        size -= len;
        lsn += len + 1;
    }
    for (const struct sp_event *ev = out.head; ev != NULL; ev = ev->next) {
        fz_check_event(ev);
    }
    sp_event_list_free(&out);
    sp_pgo_fini(&d);
    sp_relcache_free(rc);
    return 0;
}
