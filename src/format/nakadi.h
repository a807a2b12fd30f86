/*
 * Nakadi event ids: every eid siphon makes is a version 5 UUID in one
 * fixed namespace over "<destination>\n<event id>", so an event sent again
 * (a retry, a replay after a crash) carries the same eid.
 */
#ifndef SIPHON_FORMAT_NAKADI_H
#define SIPHON_FORMAT_NAKADI_H

#include <stddef.h>

#include "core/event.h"

/* out: SP_UUID_STRLEN bytes (util/uuid.h). Returns out. */
char *sp_nakadi_eid(const char *dest, size_t dest_len, const char *id, char *out);

/* The eid of ev (its destination, event type or table; its id). */
char *sp_format_nakadi_eid(const struct sp_event *ev, char *out);

#endif
