// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: PostgreSQL text -> JSON conversion. The first byte picks the
 * type (built-ins and arrays of them), the rest is the text. Whatever the
 * input, the conversion either fails cleanly or appends valid output and
 * leaves the buffer's earlier contents alone.
 */
#include <stddef.h>
#include <stdint.h>

#include <stdlib.h>
#include <string.h>

#include "source/pg/types.h"

/* NOLINTNEXTLINE(readability-identifier-naming) */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint32_t fuzz_oids[] = {
    21,   23,   20,   26,   700,  701,  1700, 16,   25,   1043, 1042, 19,   2950,
    869,  650,  829,  774,  142,  790,  17,   114,  3802, 1082, 1114, 1184, 1083,
    1266, 1186, 1005, 1007, 1016, 1021, 1022, 1231, 1000, 1009, 1015, 1001, 199,
    3807, 1182, 1115, 1185, 1183, 1270, 1187, 603,  1020, 22,   30,   600,  3904,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    const struct sp_type *t =
        sp_type_builtin(fuzz_oids[data[0] % (sizeof(fuzz_oids) / sizeof(fuzz_oids[0]))]);
    struct sp_buf out;
    struct sp_err err;
    sp_buf_init(&out);
    sp_buf_puts(&out, "prefix");
    if (sp_pgtext_to_json(t, (const char *)data + 1, size - 1, &out, &err) != 0) {
        if (out.len != 6 || memcmp(out.data, "prefix", 6) != 0) {
            abort(); /* a failed conversion must leave the buffer as it was */
        }
    } else if (out.len == 6) {
        abort(); /* a successful conversion always writes a value */
    }
    sp_buf_fini(&out);
    return 0;
}
