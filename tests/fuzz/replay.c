// SPDX-License-Identifier: Apache-2.0
/*
 * Runs a libFuzzer target's LLVMFuzzerTestOneInput() once over each file named
 * on the command line, for compilers without libFuzzer (gcc). Link with one
 * fuzz_<target>.c. It does not fuzz: it replays a corpus or a crash.
 */
#include <stdint.h>

#include <stdio.h>
#include <stdlib.h>

/* libFuzzer's entry point: the name is libFuzzer's, hence no sp_ prefix. */
/* NOLINTNEXTLINE(readability-identifier-naming) */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    size_t cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap != 0 ? cap * 2 : 4096;
            uint8_t *p = realloc(buf, cap);
            if (p == NULL) {
                fprintf(stderr, "%s: out of memory\n", path);
                free(buf);
                fclose(f);
                return -1;
            }
            buf = p;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            break;
        }
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        fprintf(stderr, "%s: read error\n", path);
        free(buf);
        return -1;
    }
    /* An exact-size copy, so ASan catches reads past the input. */
    uint8_t *exact = malloc(len > 0 ? len : 1);
    if (exact == NULL) {
        free(buf);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        exact[i] = buf[i];
    }
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

int main(int argc, char **argv)
{
    int failures = 0;
    for (int i = 1; i < argc; i++) {
        if (replay_file(argv[i]) != 0) {
            failures++;
        }
    }
    printf("replayed %d file(s), %d unreadable\n", argc - 1 - failures, failures);
    return failures != 0 ? 1 : 0;
}
