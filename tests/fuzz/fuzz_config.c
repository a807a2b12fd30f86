// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzz target: YAML bytes -> validated configuration. Environment lookups
 * are stubbed (every ${NAME} resolves to "x"), so runs are deterministic.
 */
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* libFuzzer's entry point: the name is libFuzzer's, hence no sp_ prefix. */
/* NOLINTNEXTLINE(readability-identifier-naming) */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *fuzz_env(const char *name)
{
    (void)name;
    return "x";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sp_config *cfg = NULL;
    struct sp_diag diag;
    sp_diag_init(&diag);
    if (sp_cfg_load_string("fuzz.yaml", (const char *)data, size, fuzz_env, &cfg, &diag) == 0) {
        sp_cfg_free(cfg);
    }
    sp_diag_fini(&diag);
    return 0;
}
