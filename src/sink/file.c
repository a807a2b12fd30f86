// SPDX-License-Identifier: Apache-2.0
/*
 * Sink "file": appends events as JSON Lines to a file. A batch is
 * acknowledged only after it has been written and fsynced (fdatasync), so
 * an acknowledged event survives a crash of siphon or of the machine.
 * Optional rotation by size: the full file is renamed with a UTC timestamp
 * suffix and a new one is started.
 *
 * A failed write is undone (the file is truncated back to where the batch
 * started), so the file never holds a partial line; the batch is retried.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/plugin.h"
#include "core/sinkconf.h"
#include "sink/jsonl.h"
#include "util/time.h"

struct file_conf {
    struct sp_sink_batching batching;
    char *path;
    int key;
    bool fsync;
    int64_t rotate_bytes;
    int64_t mode;
};

static const struct sp_opt file_opts[] = {
    SP_SINK_BATCH_OPTS(struct file_conf, "1", "partition"),
    SP_OPT_STR("path", struct file_conf, path, NULL, SP_OPT_REQUIRED,
               "file to append JSON Lines to; created if absent"),
    SP_OPT_ENUM("key", struct file_conf, key, "field", sp_jsonl_key_names,
                "where the event key goes: field (a \"key\" member), prefix (key, tab, value) "
                "or none"),
    SP_OPT_BOOL("fsync", struct file_conf, fsync, "true",
                "fsync after each batch before acknowledging it (turning it off gives up "
                "durability on power loss)"),
    SP_OPT_SIZE("rotate_bytes", struct file_conf, rotate_bytes, "0", 0, INT64_C(1) << 50,
                "start a new file once the current one is larger than this; 0 never rotates"),
    SP_OPT_INT("mode", struct file_conf, mode, "416", 0, 4095,
               "permission bits for new files, as a decimal number (416 = 0640)"),
    SP_OPT_END,
};

struct file_state {
    int fd;
    off_t size;
    struct sp_buf out;
};

static int file_open_fd(struct sp_sink *sk, struct sp_err *err)
{
    const struct file_conf *conf = sk->conf;
    struct file_state *st = sk->state;
    st->fd = open(conf->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, (mode_t)conf->mode);
    if (st->fd < 0) {
        int rc = sp_err_errno(err, errno, "could not open \"%s\"", conf->path);
        sp_err_hint(err, "check that the directory exists and siphon may write to it");
        return rc;
    }
    struct stat stt;
    if (fstat(st->fd, &stt) != 0) {
        return sp_err_errno(err, errno, "could not stat \"%s\"", conf->path);
    }
    st->size = stt.st_size;
    /*
     * A crash during write() can leave part of a batch at the end. It was
     * never acknowledged, so it will be delivered again: cut the file back
     * to its last whole line rather than append to half of one.
     */
    if (S_ISREG(stt.st_mode) && st->size > 0) {
        int rfd = open(conf->path, O_RDONLY | O_CLOEXEC);
        if (rfd < 0) {
            return sp_err_errno(err, errno, "could not open \"%s\" for reading", conf->path);
        }
        char tail[4096];
        off_t end = st->size;
        while (end > 0) {
            size_t n = end < (off_t)sizeof(tail) ? (size_t)end : sizeof(tail);
            ssize_t r = pread(rfd, tail, n, end - (off_t)n);
            if (r != (ssize_t)n) {
                int e = r < 0 ? errno : EIO;
                close(rfd);
                return sp_err_errno(err, e, "could not read \"%s\"", conf->path);
            }
            char *nl = memrchr(tail, '\n', n);
            if (nl != NULL) {
                end -= (off_t)n - (off_t)(nl - tail) - 1;
                break;
            }
            end -= (off_t)n;
        }
        close(rfd);
        if (end != st->size) {
            if (ftruncate(st->fd, end) != 0) {
                return sp_err_errno(err, errno, "could not truncate \"%s\"", conf->path);
            }
            sp_log_warn(&sk->log,
                        "removed %lld bytes of a partly written line at the end of \"%s\"",
                        (long long)(st->size - end), conf->path);
            st->size = end;
        }
    }
    return 0;
}

static int file_open(struct sp_sink *sk, struct sp_err *err)
{
    struct file_state *st = sp_xcalloc(1, sizeof(*st));
    st->fd = -1;
    sp_buf_init(&st->out);
    sk->state = st;
    return file_open_fd(sk, err);
}

static int file_rotate(struct sp_sink *sk, struct sp_err *err)
{
    const struct file_conf *conf = sk->conf;
    struct file_state *st = sk->state;
    char ts[32];
    sp_time_iso_ms(sp_time_now_us(), ts);
    /* "2026-11-21T10:00:00.512Z" -> "20261121T100000.512Z": no colons in file names */
    char stamp[32];
    size_t j = 0;
    for (size_t i = 0; ts[i] != '\0' && j + 1 < sizeof(stamp); i++) {
        if (ts[i] != '-' && ts[i] != ':') {
            stamp[j++] = ts[i];
        }
    }
    stamp[j] = '\0';
    char *dest = sp_xasprintf("%s.%s", conf->path, stamp);
    int rc = 0;
    if (rename(conf->path, dest) != 0) {
        rc = sp_err_errno(err, errno, "could not rotate \"%s\" to \"%s\"", conf->path, dest);
    } else {
        sp_log_info(&sk->log, "rotated \"%s\" to \"%s\" at %lld bytes", conf->path, dest,
                    (long long)st->size);
        close(st->fd);
        st->fd = -1;
        rc = file_open_fd(sk, err);
    }
    free(dest);
    return rc;
}

static int file_submit(struct sp_sink *sk, struct sp_batch *b, struct sp_err *err)
{
    const struct file_conf *conf = sk->conf;
    struct file_state *st = sk->state;
    if (st->fd < 0 && file_open_fd(sk, err) != 0) {
        err->retriable = true;
        return err->code;
    }
    sp_buf_reset(&st->out);
    for (const struct sp_rec *r = b->head; r != NULL; r = r->next) {
        sp_jsonl_append(&st->out, r, (enum sp_jsonl_key)conf->key);
    }
    off_t start = st->size;
    size_t off = 0;
    while (off < st->out.len) {
        ssize_t w = write(st->fd, st->out.data + off, st->out.len - off);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            int rc = sp_err_errno(err, errno, "could not write %zu bytes to \"%s\"", st->out.len,
                                  conf->path);
            err->retriable = true;
            if (errno == ENOSPC) {
                sp_err_hint(err, "the disk is full; delivery resumes when space is freed");
            }
            /* Undo the partial batch so the file never holds half a line. */
            if (ftruncate(st->fd, start) != 0) {
                sp_log_error(&sk->log, "could not truncate \"%s\" after a failed write: %s",
                             conf->path, strerror(errno));
            }
            return rc;
        }
        off += (size_t)w;
    }
    /* FIFOs, character devices and sockets cannot be fsynced (EINVAL): nothing to make durable. */
    if (conf->fsync && fdatasync(st->fd) != 0 && errno != EINVAL && errno != EROFS) {
        int rc = sp_err_errno(err, errno, "could not fsync \"%s\"", conf->path);
        err->retriable = true;
        /* After a failed fsync the page cache state is unknown: reopen. */
        close(st->fd);
        st->fd = -1;
        return rc;
    }
    st->size += (off_t)st->out.len;
    sp_batch_done(b, 0, NULL);
    if (conf->rotate_bytes > 0 && st->size >= conf->rotate_bytes) {
        struct sp_err rerr;
        sp_err_clear(&rerr);
        if (file_rotate(sk, &rerr) != 0) {
            sp_log_warn(&sk->log, "%s", rerr.msg);
        }
    }
    return 0;
}

static int file_check(struct sp_sink *sk, struct sp_err *err)
{
    const struct file_conf *conf = sk->conf;
    int fd = open(conf->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, (mode_t)conf->mode);
    if (fd < 0) {
        int rc = sp_err_errno(err, errno, "could not open \"%s\" for appending", conf->path);
        sp_err_hint(err, "check that the directory exists and siphon may write to it");
        return rc;
    }
    close(fd);
    return 0;
}

static void file_close(struct sp_sink *sk)
{
    struct file_state *st = sk->state;
    if (st == NULL) {
        return;
    }
    if (st->fd >= 0) {
        close(st->fd);
    }
    sp_buf_fini(&st->out);
    free(st);
    sk->state = NULL;
}

const struct sp_sink_ops sp_sink_file = {
    .type = "file",
    .summary = "append events as JSON Lines to a file, fsynced before acknowledging",
    .opts = file_opts,
    .conf_size = sizeof(struct file_conf),
    .open = file_open,
    .submit = file_submit,
    .check = file_check,
    .close = file_close,
};
