// SPDX-License-Identifier: Apache-2.0
/*
 * Name-based UUIDs, version 5 (RFC 9562, section 5.5): SHA-1 over the
 * namespace and the name, with the version and variant bits set. SHA-1
 * comes from OpenSSL's libcrypto; it is used as RFC 9562 prescribes, not
 * for security.
 */
#include "util/uuid.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *sp_uuid_v5(const uint8_t ns[16], const void *name, size_t n, char *out)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, ns, 16) != 1 || EVP_DigestUpdate(ctx, name, n) != 1 ||
        EVP_DigestFinal_ex(ctx, md, &md_len) != 1 || md_len < 16) {
        /* Only an allocation failure inside libcrypto gets here. */
        fprintf(stderr, "siphon: SHA-1 from libcrypto failed\n");
        abort();
    }
    EVP_MD_CTX_free(ctx);
    md[6] = (uint8_t)((md[6] & 0x0f) | 0x50); /* version 5 */
    md[8] = (uint8_t)((md[8] & 0x3f) | 0x80); /* variant 10 */
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            *p++ = '-';
        }
        *p++ = hex[md[i] >> 4];
        *p++ = hex[md[i] & 0x0f];
    }
    *p = '\0';
    return out;
}
