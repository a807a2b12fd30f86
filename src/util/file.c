// SPDX-License-Identifier: Apache-2.0
/* Files re-read only when they change (util/file.h). */
#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/mem.h"

static bool file_same(const struct sp_file_stamp *a, const struct stat *sb)
{
    return a->set && a->dev == sb->st_dev && a->ino == sb->st_ino &&
           a->mtime.tv_sec == sb->st_mtim.tv_sec && a->mtime.tv_nsec == sb->st_mtim.tv_nsec &&
           a->size == sb->st_size;
}

int sp_file_read_changed(const char *path, const char *what, const struct sp_file_stamp *stamp,
                         bool force, size_t max, char **data, size_t *len,
                         struct sp_file_stamp *now, struct sp_err *err)
{
    *data = NULL;
    *len = 0;
    struct stat sb;
    if (!force && stamp->set && stat(path, &sb) == 0 && file_same(stamp, &sb)) {
        return 0; /* the common case, without opening it */
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return sp_err_errno(err, errno, "could not read %s %s", what, path);
    }
    /* The stamp of what is read: fstat of the open file, so a swap in between is seen next time. */
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return sp_err_errno(err, e, "could not read %s %s", what, path);
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        return sp_err_set(err, SP_EINVAL, "could not read %s %s: it is a directory", what, path);
    }
    if (!force && file_same(stamp, &sb)) {
        close(fd);
        return 0;
    }
    /* One buffer of the largest size allowed: a secret is never copied by a realloc. */
    char *buf = sp_xmalloc(max + 1);
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, max + 1 - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int e = errno;
            close(fd);
            free(buf);
            return sp_err_errno(err, e, "could not read %s %s", what, path);
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
        if (got > max) {
            close(fd);
            free(buf);
            return sp_err_set(err, SP_EINVAL, "%s %s is larger than %zu bytes", what, path, max);
        }
    }
    close(fd);
    buf[got] = '\0';
    *data = buf;
    *len = got;
    now->set = true;
    now->dev = sb.st_dev;
    now->ino = sb.st_ino;
    now->mtime = sb.st_mtim;
    now->size = sb.st_size;
    return 1;
}
