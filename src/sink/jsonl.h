/*
 * JSON Lines rendering shared by the line-oriented sinks (file, stdout):
 * one record per line, the key either a field of the object, a prefix
 * separated by a tab, or left out.
 */
#ifndef SIPHON_SINK_JSONL_H
#define SIPHON_SINK_JSONL_H

#include "core/plugin.h"
#include "util/buf.h"

enum sp_jsonl_key {
    SP_JSONL_KEY_FIELD = 0, /* {"key":{...},"before":...}: the key as the first member */
    SP_JSONL_KEY_PREFIX,    /* {"id":1}<TAB>{"before":...} */
    SP_JSONL_KEY_NONE,      /* the value alone */
};

extern const char *const sp_jsonl_key_names[];

/* Append rec as one line (with '\n'). */
void sp_jsonl_append(struct sp_buf *out, const struct sp_rec *rec, enum sp_jsonl_key mode);

#endif
