// SPDX-License-Identifier: Apache-2.0
/*
 * Sink "stdout": JSON Lines on standard output. A batch is acknowledged once
 * written to the file descriptor (and fsynced when `fsync` is set and
 * stdout is a file). Meant for pipes, demos and debugging.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/plugin.h"
#include "core/sinkconf.h"
#include "sink/jsonl.h"

struct stdout_conf {
    struct sp_sink_batching batching;
    int key;
    bool fsync;
    int style;
};

static const char *const stdout_style_names[] = {"jsonl", "pretty", NULL};
enum { STDOUT_JSONL = 0, STDOUT_PRETTY = 1 };

static const struct sp_opt stdout_opts[] = {
    SP_SINK_BATCH_OPTS(struct stdout_conf, "1", "partition"),
    SP_OPT_ENUM("key", struct stdout_conf, key, "field", sp_jsonl_key_names,
                "where the event key goes: field (a \"key\" member), prefix (key, tab, value) "
                "or none"),
    SP_OPT_BOOL("fsync", struct stdout_conf, fsync, "false",
                "fsync standard output after each batch (when it is a file)"),
    SP_OPT_ENUM("style", struct stdout_conf, style, "jsonl", stdout_style_names,
                "jsonl (one JSON object per line) or pretty (a header line per event for "
                "people, colored on a terminal)"),
    SP_OPT_END,
};

struct stdout_state {
    struct sp_buf out;
    bool color;
};

/* A line for people: "insert public.orders {"id":5} 0/16E9A48:3", then the event. */
static void stdout_pretty(struct sp_buf *out, const struct sp_rec *r, bool color)
{
    const char *name = "change";
    const char *hue = "1";
    switch (r->op) {
    case 'c':
        name = "insert";
        hue = "1;32";
        break;
    case 'u':
        name = "update";
        hue = "1;33";
        break;
    case 'd':
        name = "delete";
        hue = "1;31";
        break;
    case 'r':
        name = "read";
        hue = "1;36";
        break;
    case 't':
        name = "truncate";
        hue = "1;35";
        break;
    case 'm':
        name = "message";
        hue = "1;34";
        break;
    default:
        break;
    }
    if (color) {
        sp_buf_printf(out, "\033[%sm%-8s\033[0m \033[1m", hue, name);
    } else {
        sp_buf_printf(out, "%-8s ", name);
    }
    if (r->schema[0] != '\0') {
        sp_buf_printf(out, "%s.", r->schema);
    }
    sp_buf_puts(out, r->table);
    sp_buf_puts(out, color ? "\033[0m " : " ");
    if (r->key != NULL) {
        sp_buf_append(out, r->key, r->key_len);
        sp_buf_putc(out, ' ');
    }
    sp_buf_printf(out, "%s(%s)%s\n  ", color ? "\033[2m" : "", r->id, color ? "\033[0m" : "");
    sp_buf_append(out, r->value, r->value_len);
    sp_buf_puts(out, "\n");
}

static int stdout_open(struct sp_sink *sk, struct sp_err *err)
{
    (void)err;
    struct stdout_state *st = sp_xcalloc(1, sizeof(*st));
    sp_buf_init(&st->out);
    const char *term = getenv("TERM");
    st->color = isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL && term != NULL &&
                strcmp(term, "dumb") != 0;
    sk->state = st;
    return 0;
}

static int stdout_submit(struct sp_sink *sk, struct sp_batch *b, struct sp_err *err)
{
    const struct stdout_conf *conf = sk->conf;
    struct stdout_state *st = sk->state;
    sp_buf_reset(&st->out);
    for (const struct sp_rec *r = b->head; r != NULL; r = r->next) {
        if (conf->style == STDOUT_PRETTY) {
            stdout_pretty(&st->out, r, st->color);
        } else {
            sp_jsonl_append(&st->out, r, (enum sp_jsonl_key)conf->key);
        }
    }
    size_t off = 0;
    while (off < st->out.len) {
        ssize_t w = write(STDOUT_FILENO, st->out.data + off, st->out.len - off);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            int rc = sp_err_errno(err, errno, "could not write to standard output");
            err->retriable = errno == EAGAIN || errno == ENOSPC;
            return rc;
        }
        off += (size_t)w;
    }
    if (conf->fsync && fsync(STDOUT_FILENO) != 0 && errno != EINVAL && errno != EROFS) {
        return sp_err_errno(err, errno, "could not fsync standard output");
    }
    sp_batch_done(b, 0, NULL);
    return 0;
}

static void stdout_close(struct sp_sink *sk)
{
    struct stdout_state *st = sk->state;
    if (st != NULL) {
        sp_buf_fini(&st->out);
        free(st);
        sk->state = NULL;
    }
}

const struct sp_sink_ops sp_sink_stdout = {
    .type = "stdout",
    .summary = "write events as JSON Lines to standard output",
    .opts = stdout_opts,
    .conf_size = sizeof(struct stdout_conf),
    .open = stdout_open,
    .submit = stdout_submit,
    .close = stdout_close,
};
