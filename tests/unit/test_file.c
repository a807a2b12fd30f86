// SPDX-License-Identifier: Apache-2.0
/*
 * Files re-read only when they change (util/file.c): unchanged, rewritten,
 * replaced by a rename (as a Kubernetes secret volume swaps its files),
 * forced, too large, missing, a directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/file.h"

struct fx {
    char dir[64];
    char path[96];
    struct sp_file_stamp stamp;
};

static void fx_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* Reads the file; returns what sp_file_read_changed did and keeps the stamp when it read. */
static int fx_read(struct fx *f, bool force, size_t max, char *got, size_t cap, struct sp_err *err)
{
    char *data = NULL;
    size_t len = 0;
    struct sp_file_stamp now;
    sp_err_clear(err);
    int rc =
        sp_file_read_changed(f->path, "token_file", &f->stamp, force, max, &data, &len, &now, err);
    if (rc == 1) {
        assert_int_equal(strlen(data), len);
        snprintf(got, cap, "%s", data);
        free(data);
        f->stamp = now;
    } else {
        assert_null(data);
    }
    return rc;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/sp-file-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/token", f->dir);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void read_again_only_when_changed(void **state)
{
    struct fx *f = *state;
    struct sp_err err;
    char got[64];
    fx_write(f->path, "one\n");
    assert_int_equal(fx_read(f, false, 64, got, sizeof(got), &err), 1);
    assert_string_equal(got, "one\n");
    /* unchanged: not read */
    assert_int_equal(fx_read(f, false, 64, got, sizeof(got), &err), 0);
    /* forced: read */
    assert_int_equal(fx_read(f, true, 64, got, sizeof(got), &err), 1);
    /* rewritten in place with another size */
    fx_write(f->path, "three\n");
    assert_int_equal(fx_read(f, false, 64, got, sizeof(got), &err), 1);
    assert_string_equal(got, "three\n");
    /* replaced by a rename, same size: another inode */
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "%s/new", f->dir);
    fx_write(tmp, "four!\n");
    assert_int_equal(rename(tmp, f->path), 0);
    assert_int_equal(fx_read(f, false, 64, got, sizeof(got), &err), 1);
    assert_string_equal(got, "four!\n");
    assert_int_equal(fx_read(f, false, 64, got, sizeof(got), &err), 0);
}

static void bad_files_are_errors_that_name_them(void **state)
{
    struct fx *f = *state;
    struct sp_err err;
    char got[64];
    char want[160];
    /* missing */
    assert_true(fx_read(f, false, 64, got, sizeof(got), &err) < 0);
    snprintf(want, sizeof(want), "could not read token_file %s", f->path);
    assert_non_null(strstr(err.msg, want));
    /* larger than allowed; exactly the limit is fine */
    fx_write(f->path, "0123456789");
    assert_true(fx_read(f, false, 9, got, sizeof(got), &err) < 0);
    assert_non_null(strstr(err.msg, "is larger than 9 bytes"));
    assert_int_equal(fx_read(f, false, 10, got, sizeof(got), &err), 1);
    assert_string_equal(got, "0123456789");
    /* an empty file is read (the caller decides what it means) */
    fx_write(f->path, "");
    assert_int_equal(fx_read(f, false, 10, got, sizeof(got), &err), 1);
    assert_string_equal(got, "");
    /* a directory */
    assert_int_equal(unlink(f->path), 0);
    snprintf(f->path, sizeof(f->path), "%s", f->dir);
    assert_true(fx_read(f, false, 10, got, sizeof(got), &err) < 0);
    assert_non_null(strstr(err.msg, "it is a directory"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(read_again_only_when_changed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(bad_files_are_errors_that_name_them, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("file", tests, NULL, NULL);
}
