// SPDX-License-Identifier: Apache-2.0
/*
 * ${NAME}, ${file:PATH} and $$ in configuration values, so that secrets can
 * stay out of the file. Substitution happens on the node tree before
 * validation and keeps each scalar's location, so "environment variable
 * ORDERS_DSN is not set" points at the value that asked for it.
 *
 * Values read here may be secrets: no message ever includes them.
 */
#include "config/env.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/diag.h"

static bool env_valid_name(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_')) {
        return false;
    }
    for (size_t i = 1; i < n; i++) {
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_')) {
            return false;
        }
    }
    return true;
}

int sp_env_read_file(const char *path, const char *base_dir, struct sp_buf *out, struct sp_err *err)
{
    char *full = NULL;
    int fd = -1;
    int rc = 0;
    struct sp_buf data;

    sp_buf_init(&data);
    if (path[0] == '/' || base_dir == NULL || base_dir[0] == '\0') {
        full = sp_xstrdup(path);
    } else {
        full = sp_xasprintf("%s/%s", base_dir, path);
    }
    fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        sp_err_errno(err, errno, "could not read file \"%s\"", full);
        err->code = SP_EINVAL;
        rc = SP_EINVAL;
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = sp_err_set(err, SP_EINVAL, "could not read file \"%s\": it is a directory", full);
        goto out;
    }
    for (;;) {
        sp_buf_reserve(&data, 4096);
        ssize_t got = read(fd, data.data + data.len, 4096);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            sp_err_errno(err, errno, "could not read file \"%s\"", full);
            err->code = SP_EINVAL;
            rc = SP_EINVAL;
            goto out;
        }
        if (got == 0) {
            break;
        }
        data.len += (size_t)got;
        data.data[data.len] = '\0';
        if (data.len > SP_ENV_FILE_MAX) {
            rc = sp_err_set(err, SP_EINVAL, "file \"%s\" is larger than %zu bytes", full,
                            SP_ENV_FILE_MAX);
            goto out;
        }
    }
    if (data.len > 0 && memchr(data.data, '\0', data.len) != NULL) {
        rc = sp_err_set(err, SP_EINVAL, "file \"%s\" contains NUL bytes", full);
        goto out;
    }
    if (data.len > 0 && data.data[data.len - 1] == '\n') {
        data.len--;
        if (data.len > 0 && data.data[data.len - 1] == '\r') {
            data.len--;
        }
    }
    if (data.len > 0) {
        sp_buf_append(out, data.data, data.len);
    }
out:
    if (rc != 0 && path[0] != '/' && base_dir != NULL && base_dir[0] != '\0') {
        sp_err_hint(err, "a relative path is taken from the configuration file's directory (%s)",
                    base_dir);
    }
    if (fd >= 0) {
        close(fd);
    }
    free(full);
    sp_buf_fini(&data);
    return rc;
}

int sp_env_expand(const char *s, size_t len, sp_env_fn lookup, const char *base_dir,
                  struct sp_buf *out, bool *used, struct sp_err *err)
{
    size_t i = 0;
    if (used != NULL) {
        *used = false;
    }
    while (i < len) {
        const char *dollar = memchr(s + i, '$', len - i);
        if (dollar == NULL) {
            sp_buf_append(out, s + i, len - i);
            break;
        }
        size_t at = (size_t)(dollar - s);
        sp_buf_append(out, s + i, at - i);
        if (at + 1 < len && s[at + 1] == '$') {
            sp_buf_putc(out, '$');
            i = at + 2;
            if (used != NULL) {
                *used = true;
            }
            continue;
        }
        if (at + 1 >= len || s[at + 1] != '{') {
            sp_buf_putc(out, '$');
            i = at + 1;
            continue;
        }
        const char *open = s + at + 2;
        const char *close = memchr(open, '}', len - at - 2);
        if (close == NULL) {
            sp_err_set(err, SP_EINVAL, "unterminated \"${\" in value");
            sp_err_hint(err, "write ${NAME} or ${file:PATH}, or $$ for a literal \"$\"");
            return SP_EINVAL;
        }
        size_t n = (size_t)(close - open);
        if (used != NULL) {
            *used = true;
        }
        if (n >= 5 && memcmp(open, "file:", 5) == 0) {
            char *path = sp_xstrndup(open + 5, n - 5);
            int rc = 0;
            if (path[0] == '\0') {
                rc = sp_err_set(err, SP_EINVAL, "empty file name in \"${file:}\"");
            } else {
                rc = sp_env_read_file(path, base_dir, out, err);
            }
            free(path);
            if (rc != 0) {
                return rc;
            }
        } else if (env_valid_name(open, n)) {
            char *name = sp_xstrndup(open, n);
            const char *value = lookup != NULL ? lookup(name) : getenv(name);
            if (value == NULL) {
                sp_err_set(err, SP_EINVAL, "environment variable %s is not set", name);
                sp_err_hint(
                    err, "export %s before starting siphon, or write $$ for a literal \"$\"", name);
                free(name);
                return SP_EINVAL;
            }
            sp_buf_puts(out, value);
            free(name);
        } else {
            sp_err_set(err, SP_EINVAL, "invalid reference \"${%.*s}\"", (int)(n > 64 ? 64 : n),
                       open);
            sp_err_hint(err, "write ${NAME} (letters, digits and _) or ${file:PATH}, or $$ for a "
                             "literal \"$\"");
            return SP_EINVAL;
        }
        i = (size_t)(close - s) + 1;
    }
    return 0;
}

static int env_subst_scalar(struct sp_node *node, sp_env_fn lookup, const char *base_dir,
                            struct sp_diag *d)
{
    if (memchr(node->str, '$', node->len) == NULL) {
        return 0;
    }
    struct sp_buf out;
    struct sp_err err;
    bool used = false;
    sp_buf_init(&out);
    sp_err_clear(&err);
    if (sp_env_expand(node->str, node->len, lookup, base_dir, &out, &used, &err) != 0) {
        struct sp_diag_item *it = sp_diag_error(d, &node->loc, node->span, "%s", err.msg);
        if (err.hint[0] != '\0') {
            sp_diag_hint(it, "%s", err.hint);
        }
        sp_buf_fini(&out);
        node->invalid = true;
        return 1;
    }
    if (used) {
        free(node->str);
        node->len = out.len;
        node->str = sp_buf_steal(&out);
        node->substituted = true;
    }
    sp_buf_fini(&out);
    return 0;
}

int sp_env_substitute(struct sp_node *node, sp_env_fn lookup, const char *base_dir,
                      struct sp_diag *d)
{
    int errors = 0;
    if (node == NULL) {
        return 0;
    }
    switch (node->kind) {
    case SP_NODE_SCALAR:
        errors += env_subst_scalar(node, lookup, base_dir, d);
        break;
    case SP_NODE_SEQ:
        for (int i = 0; i < node->n; i++) {
            errors += sp_env_substitute(node->items[i], lookup, base_dir, d);
        }
        break;
    case SP_NODE_MAP:
        for (int i = 0; i < node->n; i++) {
            errors += sp_env_substitute(node->pairs[i].value, lookup, base_dir, d);
        }
        break;
    default:
        break;
    }
    return errors;
}
