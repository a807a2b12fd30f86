/*
 * Files re-read only when they change: mounted secrets (a bearer token, AWS
 * credentials) that the platform rotates by replacing the file, or, in a
 * Kubernetes secret volume, by swapping a symlink to a new one.
 */
#ifndef SIPHON_UTIL_FILE_H
#define SIPHON_UTIL_FILE_H

#include <stddef.h>

#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "core/err.h"

/* What a file was when it was last read: another inode, mtime or size is a change. */
struct sp_file_stamp {
    bool set;
    dev_t dev;
    ino_t ino;
    struct timespec mtime;
    off_t size;
};

/*
 * Reads path whole when it is not what *stamp describes, or always when
 * force: returns 1 with its bytes in *data (malloc'ed, NUL-terminated, *len
 * bytes; the caller frees it) and what it is now in *now, 0 when it is
 * unchanged (nothing allocated), or a negative code with err naming it as
 * "<what> <path>". A file of more than max bytes is an error. The caller
 * keeps *now as its stamp once it has accepted the contents.
 */
int sp_file_read_changed(const char *path, const char *what, const struct sp_file_stamp *stamp,
                         bool force, size_t max, char **data, size_t *len,
                         struct sp_file_stamp *now, struct sp_err *err);

#endif
