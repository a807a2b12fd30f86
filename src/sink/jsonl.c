// SPDX-License-Identifier: Apache-2.0
/* JSON Lines rendering for the file and stdout sinks. */
#include "sink/jsonl.h"

const char *const sp_jsonl_key_names[] = {"field", "prefix", "none", NULL};

void sp_jsonl_append(struct sp_buf *out, const struct sp_rec *rec, enum sp_jsonl_key mode)
{
    const char *key = rec->key != NULL ? rec->key : "null";
    size_t key_len = rec->key != NULL ? rec->key_len : 4;
    switch (mode) {
    case SP_JSONL_KEY_FIELD:
        /* Values are JSON objects: splice the key in as their first member. */
        if (rec->value_len >= 2 && rec->value[0] == '{') {
            sp_buf_puts(out, "{\"key\":");
            sp_buf_append(out, key, key_len);
            if (rec->value[1] != '}') {
                sp_buf_putc(out, ',');
            }
            sp_buf_append(out, rec->value + 1, rec->value_len - 1);
        } else {
            sp_buf_puts(out, "{\"key\":");
            sp_buf_append(out, key, key_len);
            sp_buf_puts(out, ",\"value\":");
            sp_buf_append(out, rec->value, rec->value_len);
            sp_buf_putc(out, '}');
        }
        break;
    case SP_JSONL_KEY_PREFIX:
        sp_buf_append(out, key, key_len);
        sp_buf_putc(out, '\t');
        sp_buf_append(out, rec->value, rec->value_len);
        break;
    case SP_JSONL_KEY_NONE:
    default:
        sp_buf_append(out, rec->value, rec->value_len);
        break;
    }
    sp_buf_putc(out, '\n');
}
