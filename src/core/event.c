// SPDX-License-Identifier: Apache-2.0
/* Change events, relations and event lists. */
#include "core/event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/lsn.h"
#include "util/mem.h"

char sp_op_char(enum sp_op op)
{
    static const char chars[] = {'c', 'u', 'd', 'r', 't', 'm', 'B', 'C'};
    return chars[op];
}

struct sp_relation *sp_relation_ref(struct sp_relation *rel)
{
    if (rel != NULL) {
        rel->refs++;
    }
    return rel;
}

void sp_relation_unref(struct sp_relation *rel)
{
    if (rel == NULL || --rel->refs > 0) {
        return;
    }
    for (int i = 0; i < rel->ncols; i++) {
        free(rel->cols[i].name);
        free(rel->cols[i].json_name);
    }
    free(rel->cols);
    free(rel->schema);
    free(rel->table);
    free(rel);
}

int sp_relation_nkeys(const struct sp_relation *rel)
{
    int n = 0;
    for (int i = 0; i < rel->ncols; i++) {
        n += rel->cols[i].key ? 1 : 0;
    }
    return n;
}

struct sp_event *sp_event_new(enum sp_op op, size_t hint)
{
    struct sp_arena arena;
    sp_arena_init(&arena);
    struct sp_event *ev = sp_arena_alloc(&arena, sizeof(*ev), sizeof(*ev) + hint + 128);
    memset(ev, 0, sizeof(*ev));
    ev->arena = arena;
    ev->op = op;
    ev->snapshot = "false";
    return ev;
}

void sp_event_free(struct sp_event *ev)
{
    if (ev == NULL) {
        return;
    }
    sp_relation_unref(ev->rel);
    struct sp_arena arena = ev->arena; /* ev itself lives in the arena */
    sp_arena_fini(&arena);
}

void *sp_event_alloc(struct sp_event *ev, size_t n)
{
    return sp_arena_alloc(&ev->arena, n, 0);
}

struct sp_tuple *sp_event_tuple(struct sp_event *ev, int ncols)
{
    struct sp_tuple *t = sp_event_alloc(ev, sizeof(*t));
    t->ncols = ncols;
    t->cols = sp_event_alloc(ev, sizeof(struct sp_datum) * (size_t)(ncols > 0 ? ncols : 1));
    memset(t->cols, 0, sizeof(struct sp_datum) * (size_t)(ncols > 0 ? ncols : 1));
    return t;
}

char *sp_event_id(const struct sp_event *ev, char *buf)
{
    if (ev->id_override != NULL) {
        snprintf(buf, SP_EVENT_ID_BUFSZ, "%s", ev->id_override);
        return buf;
    }
    /* SP_LSN_FMT ":%u", by hand: it runs for every event, twice. */
    static const char hex[] = "0123456789ABCDEF";
    char tmp[SP_EVENT_ID_BUFSZ];
    int i = (int)sizeof(tmp);
    tmp[--i] = '\0';
    uint32_t seq = ev->seq;
    do {
        tmp[--i] = (char)('0' + seq % 10);
        seq /= 10;
    } while (seq != 0);
    tmp[--i] = ':';
    uint32_t lo = (uint32_t)ev->commit_lsn;
    do {
        tmp[--i] = hex[lo & 15];
        lo >>= 4;
    } while (lo != 0);
    tmp[--i] = '/';
    uint32_t hi = (uint32_t)(ev->commit_lsn >> 32);
    do {
        tmp[--i] = hex[hi & 15];
        hi >>= 4;
    } while (hi != 0);
    memcpy(buf, tmp + i, sizeof(tmp) - (size_t)i);
    return buf;
}

const struct sp_tuple *sp_event_key_tuple(const struct sp_event *ev)
{
    if (ev->op == SP_OP_DELETE) {
        return ev->before;
    }
    return ev->after;
}

int sp_event_col_index(const struct sp_event *ev, const char *name)
{
    if (ev->rel == NULL) {
        return -1;
    }
    for (int i = 0; i < ev->rel->ncols; i++) {
        if (strcmp(ev->rel->cols[i].name, name) == 0) {
            return i;
        }
    }
    return -1;
}

void sp_event_list_init(struct sp_event_list *l)
{
    l->head = NULL;
    l->tail = NULL;
    l->count = 0;
}

void sp_event_list_push(struct sp_event_list *l, struct sp_event *ev)
{
    ev->next = NULL;
    if (l->tail != NULL) {
        l->tail->next = ev;
    } else {
        l->head = ev;
    }
    l->tail = ev;
    l->count++;
}

struct sp_event *sp_event_list_pop(struct sp_event_list *l)
{
    struct sp_event *ev = l->head;
    if (ev == NULL) {
        return NULL;
    }
    l->head = ev->next;
    if (l->head == NULL) {
        l->tail = NULL;
    }
    l->count--;
    ev->next = NULL;
    return ev;
}

void sp_event_list_free(struct sp_event_list *l)
{
    struct sp_event *ev;
    while ((ev = sp_event_list_pop(l)) != NULL) {
        sp_event_free(ev);
    }
}
