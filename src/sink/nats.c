// SPDX-License-Identifier: Apache-2.0
/*
 * Sink "nats": publishes events to NATS JetStream (libnats). One message per
 * event on a subject made from a template ({source}, {schema}, {table}),
 * with the event id as `Nats-Msg-Id` so the stream drops what a restart
 * sends again, and headers for op, source, table, LSN and key. An event is
 * acknowledged to the pipeline only after JetStream acknowledged it (the
 * PubAck says it is stored in the stream).
 *
 * Publishing: messages go out with a reply subject in our own inbox,
 * "<inbox>.<partition>.<generation>.<index>", and the PubAcks are read from
 * a synchronous subscription on the delivery thread (poll), so every piece
 * of batch state lives on that one thread and no libnats thread ever calls
 * into it. Changes to different keys are pipelined; a change is published
 * only once the previous change of the same key in the batch has been
 * acknowledged. That fence is what keeps per-key order in the stream when a
 * publish is lost (a connection drops, a stream leader changes) while later
 * ones get through: without it, the retry would store the lost change after
 * a newer one of the same key.
 *
 * Outcomes: a PubAck (new or duplicate) settles a record; a refusal that
 * cannot change on retry (message larger than the stream's max_msg_size or
 * the server's max_payload, subject captured by another stream or by none)
 * rejects that record for good (SP_EREJECTED, the stream's recovery policy
 * decides); anything else (no PubAck within ack_timeout, lost connection,
 * JetStream unavailable) fails the whole batch as retriable, and the
 * runtime sends it again, duplicates being dropped by the stream.
 *
 * Reconnecting is libnats's job (unlimited attempts, reconnect_wait apart,
 * publishes buffered meanwhile up to reconnect_buffer); the sink logs
 * disconnects and reconnects.
 *
 * Subject templates and wildcard matching are in sink/nats_subject.c.
 * What it does not do: create or change streams (the operator owns them;
 * open checks that the configured one exists and says how to create it).
 */
#include <errno.h>
#include <limits.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/plugin.h"
#include "core/sinkconf.h"
#include "sink/nats_subject.h"
#include "util/lsn.h"
#include "util/time.h"

#define NATS_PING_INTERVAL_MS 10000 /* stale connection after 3 unanswered pings */
#define NATS_MAX_PINGS_OUT    3
#define NATS_IDLE_POLL_MS     5    /* poll's wait when nothing is in flight */
#define NATS_REFRESH_MS       2000 /* at most one stream-info refresh this often */
#define NATS_CLOSE_WAIT_MS    5000
#define NATS_MIN_DUP_WINDOW_S 60

struct nats_conf {
    struct sp_sink_batching batching;
    char *url;
    char *subject;
    char *stream;
    int64_t ack_timeout_ms;
    char *credentials;
    char *token;
    int64_t connect_timeout_ms;
    int64_t reconnect_wait_ms;
    int64_t reconnect_buffer;
};

static const struct sp_opt nats_opts[] = {
    SP_SINK_BATCH_OPTS(struct nats_conf, "8", "key"),
    SP_OPT_STR("url", struct nats_conf, url, NULL, SP_OPT_REQUIRED,
               "NATS server URL, or several separated by commas (nats://host:4222); may carry "
               "user:password@ or token@, which logs never show"),
    SP_OPT_STR("subject", struct nats_conf, subject, "{source}.{schema}.{table}", 0,
               "subject template; {source}, {schema} and {table} are replaced (characters a "
               "subject token cannot hold become _)"),
    SP_OPT_STR("stream", struct nats_conf, stream, NULL, SP_OPT_REQUIRED,
               "the JetStream stream that must capture the subjects; checked at start"),
    SP_OPT_DURATION("ack_timeout", struct nats_conf, ack_timeout_ms, "5s", 100, 600000,
                    "how long to wait for JetStream's acknowledgement of a message before the "
                    "batch is retried"),
    SP_OPT_STR("credentials", struct nats_conf, credentials, NULL, 0,
               "path of a .creds file (user JWT and NKey seed) to authenticate with"),
    SP_OPT_STR("token", struct nats_conf, token, NULL, SP_OPT_SECRET,
               "authentication token, for servers that use token authentication"),
    SP_OPT_DURATION("connect_timeout", struct nats_conf, connect_timeout_ms, "5s", 100, 600000,
                    "how long one connection attempt may take"),
    SP_OPT_DURATION("reconnect_wait", struct nats_conf, reconnect_wait_ms, "2s", 10, 600000,
                    "pause between reconnection attempts after the connection is lost (attempts "
                    "never stop)"),
    SP_OPT_SIZE("reconnect_buffer", struct nats_conf, reconnect_buffer, "8MiB", INT64_C(64) * 1024,
                INT64_C(1) << 30,
                "bytes of messages buffered while reconnecting; publishing past it fails the "
                "batch, which is retried"),
    SP_OPT_END,
};

/* ---- URLs in logs ---- */

/* The URL list with every userinfo (user:password@ or token@) replaced by "***@". */
static char *nats_mask_url(const char *url)
{
    struct sp_buf out;
    sp_buf_init(&out);
    const char *p = url;
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        const char *scheme = NULL;
        for (size_t i = 0; i + 2 < len; i++) {
            if (memcmp(p + i, "://", 3) == 0) {
                scheme = p + i + 3;
                break;
            }
        }
        const char *host = scheme != NULL ? scheme : p;
        const char *at = NULL;
        for (const char *q = host; q < p + len && *q != '/'; q++) {
            if (*q == '@') {
                at = q;
            }
        }
        if (at != NULL) {
            sp_buf_append(&out, p, (size_t)(host - p));
            sp_buf_puts(&out, "***");
            sp_buf_append(&out, at, (size_t)(p + len - at));
        } else {
            sp_buf_append(&out, p, len);
        }
        if (comma == NULL) {
            break;
        }
        sp_buf_putc(&out, ',');
        p = comma + 1;
    }
    return sp_buf_steal(&out);
}

/* ---- state ---- */

enum nats_rec_state {
    NR_WAITING = 0, /* behind an unacknowledged change of the same key */
    NR_READY,       /* first of its key in the batch: published by submit */
    NR_INFLIGHT,
    NR_ACKED,
    NR_REJECTED,
};

/* One batch while it is being published (a partition may have several). */
struct nats_slot {
    struct sp_batch *b; /* NULL: idle */
    uint32_t gen;       /* in reply subjects; bumped per submit, so late acks are ignored */
    size_t n;
    size_t cap;
    struct sp_rec **recs;
    unsigned char *state;
    int32_t *next;       /* the next record of the same key in the batch, or -1 */
    int64_t *sent_ms;    /* when it was published */
    struct sp_err **rej; /* why a record was rejected for good */
    int32_t *fifo;       /* records in publish order, for ack timeouts */
    size_t fifo_head;
    size_t fifo_tail;
    size_t settled;
    size_t dups;
    int64_t start_ms;
};

/*
 * What libnats's own threads may touch (connection event callbacks): kept
 * apart from the delivery thread's state and outliving the connection until
 * its closed callback has run.
 */
struct nats_events {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sp_logctx log;
    char *url_masked;
    int64_t reconnect_wait_ms;
    bool closing;
    bool closed;
    bool down; /* disconnected, not yet reconnected */
};

struct nats_state {
    const struct nats_conf *conf;
    struct sp_nats_tmpl tmpl;
    char *url_masked;
    char *pattern; /* the template as stream subjects, for hints */
    natsOptions *opts;
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *acks;
    char *inbox;
    struct nats_events *ev;
    /* the stream, as last read */
    char **stream_subjects;
    int nstream_subjects;
    int64_t stream_refreshed_ms;
    int64_t max_msg_size;
    /* the subject of the last record and whether the stream captures it */
    struct sp_buf subj;
    struct sp_buf last_subj;
    bool last_captured;
    struct sp_buf scratch;
    int nslots;
    struct nats_slot *slots;
    int busy;                 /* slots with a batch */
    int64_t no_responders_ms; /* last time a publish found no stream (NATS 503) */
    /* key chaining scratch: open addressing, index+1 of the last record per key */
    int32_t *keytab;
    size_t keytab_cap;
};

/* ---- connection events (libnats threads) ---- */

static void nats_on_disconnected(natsConnection *nc, void *closure)
{
    struct nats_events *ev = closure;
    const char *last = NULL;
    natsConnection_GetLastError(nc, &last);
    pthread_mutex_lock(&ev->mu);
    bool closing = ev->closing;
    ev->down = true;
    pthread_mutex_unlock(&ev->mu);
    if (closing) {
        sp_log_debug(&ev->log, "disconnected from %s", ev->url_masked);
        return;
    }
    sp_log_warn(&ev->log, "disconnected from %s%s%s; reconnecting every %lld ms", ev->url_masked,
                last != NULL && *last != '\0' ? ": " : "", last != NULL ? last : "",
                (long long)ev->reconnect_wait_ms);
}

static void nats_on_reconnected(natsConnection *nc, void *closure)
{
    struct nats_events *ev = closure;
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    char *masked = nats_mask_url(url);
    pthread_mutex_lock(&ev->mu);
    ev->down = false;
    pthread_mutex_unlock(&ev->mu);
    sp_log_info(&ev->log, "reconnected to %s", masked);
    free(masked);
}

static void nats_on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    struct nats_events *ev = closure;
    pthread_mutex_lock(&ev->mu);
    bool closing = ev->closing;
    pthread_mutex_unlock(&ev->mu);
    if (!closing) {
        sp_log_error(&ev->log, "connection to %s closed for good", ev->url_masked);
    }
    /* Last touch of ev: once closed is set, nats_disconnect may free it. */
    pthread_mutex_lock(&ev->mu);
    ev->closed = true;
    pthread_cond_broadcast(&ev->cv);
    pthread_mutex_unlock(&ev->mu);
}

static void nats_on_error(natsConnection *nc, natsSubscription *sub, natsStatus s, void *closure)
{
    (void)nc;
    (void)sub;
    struct nats_events *ev = closure;
    sp_log_warn(&ev->log, "asynchronous error: %s", natsStatus_GetText(s));
}

static void nats_events_free(struct nats_events *ev)
{
    if (ev == NULL) {
        return;
    }
    pthread_mutex_destroy(&ev->mu);
    pthread_cond_destroy(&ev->cv);
    free(ev->url_masked);
    free(ev);
}

/* ---- connecting ---- */

static const char *nats_last_error(natsStatus s)
{
    natsStatus ls = NATS_OK;
    const char *txt = nats_GetLastError(&ls);
    return txt != NULL && *txt != '\0' ? txt : natsStatus_GetText(s);
}

/* The client options; with ev, reconnect forever and report events to ev (else: check). */
static int nats_make_opts(struct sp_sink *sk, struct nats_events *ev, natsOptions **out,
                          struct sp_err *err)
{
    const struct nats_conf *conf = sk->conf;
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    /* Several URLs: split here rather than rely on libnats parsing a list in one URL. */
    char *urls = sp_xstrdup(conf->url);
    const char *list[64];
    int n = 0;
    for (char *save = NULL, *u = strtok_r(urls, ",", &save); u != NULL && n < 64;
         u = strtok_r(NULL, ",", &save)) {
        while (*u == ' ') {
            u++;
        }
        if (*u != '\0') {
            list[n++] = u;
        }
    }
    if (s == NATS_OK) {
        s = n > 0 ? natsOptions_SetServers(o, list, n) : NATS_INVALID_ARG;
    }
    free(urls);
    char *name = sp_xasprintf("siphon/%s", sk->name);
    if (s == NATS_OK) {
        s = natsOptions_SetName(o, name);
    }
    free(name);
    if (s == NATS_OK) {
        s = natsOptions_SetTimeout(o, conf->connect_timeout_ms);
    }
    if (s == NATS_OK && conf->credentials != NULL) {
        s = natsOptions_SetUserCredentialsFromFiles(o, conf->credentials, NULL);
    }
    if (s == NATS_OK && conf->token != NULL) {
        s = natsOptions_SetToken(o, conf->token);
    }
    /* Every publish is written at once: acks gate the next change of a key, so latency counts. */
    if (s == NATS_OK) {
        s = natsOptions_SetSendAsap(o, true);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetPingInterval(o, NATS_PING_INTERVAL_MS);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetMaxPingsOut(o, NATS_MAX_PINGS_OUT);
    }
    if (ev != NULL) {
        if (s == NATS_OK) {
            s = natsOptions_SetAllowReconnect(o, true);
        }
        if (s == NATS_OK) {
            s = natsOptions_SetMaxReconnect(o, -1);
        }
        if (s == NATS_OK) {
            s = natsOptions_SetReconnectWait(o, conf->reconnect_wait_ms);
        }
        if (s == NATS_OK) {
            s = natsOptions_SetReconnectBufSize(o, (int)conf->reconnect_buffer);
        }
        if (s == NATS_OK) {
            s = natsOptions_SetDisconnectedCB(o, nats_on_disconnected, ev);
        }
        if (s == NATS_OK) {
            s = natsOptions_SetReconnectedCB(o, nats_on_reconnected, ev);
        }
        if (s == NATS_OK) {
            s = natsOptions_SetClosedCB(o, nats_on_closed, ev);
        }
        if (s == NATS_OK) {
            s = natsOptions_SetErrorHandler(o, nats_on_error, ev);
        }
    } else if (s == NATS_OK) {
        s = natsOptions_SetAllowReconnect(o, false);
    }
    if (s != NATS_OK) {
        sp_err_set(err, SP_EINVAL, "could not set up the NATS client options: %s",
                   nats_last_error(s));
        if (conf->credentials != NULL) {
            sp_err_hint(err, "check that the credentials file \"%s\" exists and is readable",
                        conf->credentials);
        }
        natsOptions_Destroy(o);
        return err->code;
    }
    *out = o;
    return 0;
}

static int nats_connect_err(const char *url_masked, natsStatus s, struct sp_err *err)
{
    sp_err_set(err, SP_ECONN, "could not connect to NATS at %s: %s", url_masked,
               nats_last_error(s));
    if (s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED) {
        sp_err_hint(err, "check the user, password, token or credentials file");
    } else {
        sp_err_hint(err, "check that nats-server runs there (with JetStream, -js) and that the "
                         "url is right");
    }
    err->retriable = true;
    return err->code;
}

/* Reads the stream's subjects; explains a missing stream or JetStream. */
static int nats_stream_info(struct sp_sink *sk, jsCtx *js, const char *pattern, jsStreamInfo **out,
                            struct sp_err *err)
{
    const struct nats_conf *conf = sk->conf;
    jsErrCode jerr = 0;
    jsStreamInfo *si = NULL;
    natsStatus s = js_GetStreamInfo(&si, js, conf->stream, NULL, &jerr);
    if (s == NATS_OK) {
        *out = si;
        return 0;
    }
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
        sp_err_set(err, SP_EUNSUPP, "JetStream stream \"%s\" does not exist", conf->stream);
        sp_err_hint(err,
                    "create it, e.g. nats stream add %s --subjects '%s' --storage file "
                    "--dupe-window 2m --defaults; or set stream in sink \"%s\" to one that "
                    "captures the subjects",
                    conf->stream, pattern, sk->name);
        return err->code;
    }
    if (s == NATS_NO_RESPONDERS || jerr == JSNotEnabledErr || jerr == JSNotEnabledForAccountErr) {
        sp_err_set(err, SP_EUNSUPP, "JetStream is not enabled on the NATS server (%s)",
                   nats_last_error(s));
        sp_err_hint(err, "start nats-server with -js, or add a jetstream {} block to its "
                         "configuration (and enable it for the account)");
        return err->code;
    }
    sp_err_set(err, SP_ESERVER, "could not read JetStream stream \"%s\": %s", conf->stream,
               nats_last_error(s));
    if (s == NATS_TIMEOUT) {
        err->retriable = true;
    }
    return err->code;
}

static void nats_set_stream(struct nats_state *st, const jsStreamInfo *si)
{
    for (int i = 0; i < st->nstream_subjects; i++) {
        free(st->stream_subjects[i]);
    }
    free(st->stream_subjects);
    st->stream_subjects = NULL;
    st->nstream_subjects = 0;
    const jsStreamConfig *c = si->Config;
    if (c != NULL) {
        if (c->SubjectsLen > 0) {
            st->stream_subjects = sp_xcalloc((size_t)c->SubjectsLen, sizeof(char *));
            for (int i = 0; i < c->SubjectsLen; i++) {
                st->stream_subjects[i] = sp_xstrdup(c->Subjects[i]);
            }
            st->nstream_subjects = c->SubjectsLen;
        } else if (c->Name != NULL) {
            /* A stream created without subjects captures its own name. */
            st->stream_subjects = sp_xcalloc(1, sizeof(char *));
            st->stream_subjects[0] = sp_xstrdup(c->Name);
            st->nstream_subjects = 1;
        }
        st->max_msg_size = c->MaxMsgSize;
    }
    st->stream_refreshed_ms = sp_time_mono_ms();
    sp_buf_reset(&st->last_subj);
}

static char *nats_subjects_list(const struct nats_state *st)
{
    struct sp_buf b;
    sp_buf_init(&b);
    for (int i = 0; i < st->nstream_subjects; i++) {
        sp_buf_printf(&b, "%s%s", i > 0 ? ", " : "", st->stream_subjects[i]);
    }
    if (st->nstream_subjects == 0) {
        sp_buf_puts(&b, "none");
    }
    return sp_buf_steal(&b);
}

/* Takes the connection down (no callbacks left running) and frees libnats objects. */
static void nats_disconnect(struct nats_state *st)
{
    if (st->acks != NULL) {
        natsSubscription_Destroy(st->acks);
        st->acks = NULL;
    }
    if (st->js != NULL) {
        jsCtx_Destroy(st->js);
        st->js = NULL;
    }
    if (st->nc != NULL) {
        if (st->ev != NULL) {
            pthread_mutex_lock(&st->ev->mu);
            st->ev->closing = true;
            pthread_mutex_unlock(&st->ev->mu);
        }
        natsConnection_Close(st->nc);
        natsConnection_Destroy(st->nc);
        st->nc = NULL;
        if (st->ev != NULL) {
            /* The closed callback is the connection's last one: wait for it before freeing ev. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += NATS_CLOSE_WAIT_MS / 1000;
            pthread_mutex_lock(&st->ev->mu);
            int rc = 0;
            while (!st->ev->closed && rc != ETIMEDOUT) {
                rc = pthread_cond_timedwait(&st->ev->cv, &st->ev->mu, &ts);
            }
            bool closed = st->ev->closed;
            pthread_mutex_unlock(&st->ev->mu);
            if (!closed) {
                /* A callback may still come: leave ev allocated rather than risk it. */
                st->ev = NULL;
            }
        }
    }
    nats_events_free(st->ev);
    st->ev = NULL;
}

static void nats_slot_clear(struct nats_slot *s)
{
    if (s->rej != NULL) {
        for (size_t i = 0; i < s->n; i++) {
            free(s->rej[i]);
            s->rej[i] = NULL;
        }
    }
    s->b = NULL;
    s->n = 0;
    s->settled = 0;
    s->dups = 0;
    s->fifo_head = 0;
    s->fifo_tail = 0;
    s->gen++;
}

static void nats_state_free(struct nats_state *st)
{
    if (st == NULL) {
        return;
    }
    nats_disconnect(st);
    natsOptions_Destroy(st->opts);
    natsInbox_Destroy(st->inbox);
    sp_nats_tmpl_free(&st->tmpl);
    for (int i = 0; i < st->nstream_subjects; i++) {
        free(st->stream_subjects[i]);
    }
    free(st->stream_subjects);
    for (int i = 0; i < st->nslots; i++) {
        struct nats_slot *s = &st->slots[i];
        nats_slot_clear(s);
        free(s->recs);
        free(s->state);
        free(s->next);
        free(s->sent_ms);
        free(s->rej);
        free(s->fifo);
    }
    free(st->slots);
    free(st->keytab);
    free(st->url_masked);
    free(st->pattern);
    sp_buf_fini(&st->subj);
    sp_buf_fini(&st->last_subj);
    sp_buf_fini(&st->scratch);
    free(st);
}

static int nats_open(struct sp_sink *sk, struct sp_err *err)
{
    const struct nats_conf *conf = sk->conf;
    struct nats_state *st = sp_xcalloc(1, sizeof(*st));
    st->conf = conf;
    sp_buf_init(&st->subj);
    sp_buf_init(&st->last_subj);
    sp_buf_init(&st->scratch);
    st->url_masked = nats_mask_url(conf->url);
    st->pattern = sp_nats_tmpl_pattern(conf->subject);
    int rc = sp_nats_tmpl_parse(&st->tmpl, conf->subject, sk->name, err);
    if (rc != 0) {
        nats_state_free(st);
        return rc;
    }
    st->ev = sp_xcalloc(1, sizeof(*st->ev));
    pthread_mutex_init(&st->ev->mu, NULL);
    pthread_cond_init(&st->ev->cv, NULL);
    st->ev->log = sk->log;
    st->ev->url_masked = sp_xstrdup(st->url_masked);
    st->ev->reconnect_wait_ms = conf->reconnect_wait_ms;
    rc = nats_make_opts(sk, st->ev, &st->opts, err);
    if (rc != 0) {
        nats_state_free(st);
        return rc;
    }
    natsStatus s = natsConnection_Connect(&st->nc, st->opts);
    if (s != NATS_OK) {
        st->nc = NULL;
        rc = nats_connect_err(st->url_masked, s, err);
        nats_state_free(st);
        return rc;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = conf->ack_timeout_ms;
    s = natsConnection_JetStream(&st->js, st->nc, &jo);
    if (s != NATS_OK) {
        sp_err_set(err, SP_EIO, "could not create a JetStream context: %s", nats_last_error(s));
        nats_state_free(st);
        return err->code;
    }
    jsStreamInfo *si = NULL;
    rc = nats_stream_info(sk, st->js, st->pattern, &si, err);
    if (rc != 0 || si == NULL) {
        nats_state_free(st);
        return rc != 0 ? rc : sp_err_set(err, SP_ESERVER, "no stream information");
    }
    nats_set_stream(st, si);
    int64_t dup_s = si->Config != NULL ? si->Config->Duplicates / INT64_C(1000000000) : 0;
    jsStreamInfo_Destroy(si);

    s = natsInbox_Create(&st->inbox);
    if (s == NATS_OK) {
        char *subj = sp_xasprintf("%s.>", st->inbox);
        s = natsConnection_SubscribeSync(&st->acks, st->nc, subj);
        free(subj);
    }
    if (s == NATS_OK) {
        /* Acks are bounded by what is in flight: never drop one as a slow consumer. */
        s = natsSubscription_SetPendingLimits(st->acks, -1, -1);
    }
    if (s != NATS_OK) {
        sp_err_set(err, SP_EIO, "could not subscribe to acknowledgements: %s", nats_last_error(s));
        nats_state_free(st);
        return err->code;
    }
    st->nslots = (int)conf->batching.partitions;
    st->slots = sp_xcalloc((size_t)st->nslots, sizeof(*st->slots));
    sk->state = st;

    char *subjects = nats_subjects_list(st);
    sp_log_info(&sk->log,
                "connected to %s; stream \"%s\" captures %s (duplicate window %llds), "
                "subject \"%s\"",
                st->url_masked, conf->stream, subjects, (long long)dup_s, conf->subject);
    free(subjects);
    if (dup_s < NATS_MIN_DUP_WINDOW_S) {
        sp_log_warn(&sk->log,
                    "stream \"%s\" drops duplicates only within %llds: events sent again after "
                    "a restart later than that are stored twice",
                    conf->stream, (long long)dup_s);
    }
    return 0;
}

static int nats_check(struct sp_sink *sk, struct sp_err *err)
{
    const struct nats_conf *conf = sk->conf;
    struct sp_nats_tmpl t = {NULL, 0};
    int rc = sp_nats_tmpl_parse(&t, conf->subject, sk->name, err);
    sp_nats_tmpl_free(&t);
    if (rc != 0) {
        return rc;
    }
    char *masked = nats_mask_url(conf->url);
    char *pattern = sp_nats_tmpl_pattern(conf->subject);
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    rc = nats_make_opts(sk, NULL, &o, err);
    if (rc == 0) {
        natsStatus s = natsConnection_Connect(&nc, o);
        if (s != NATS_OK) {
            nc = NULL;
            rc = nats_connect_err(masked, s, err);
        }
    }
    if (rc == 0) {
        natsStatus s = natsConnection_JetStream(&js, nc, NULL);
        if (s != NATS_OK) {
            rc = sp_err_set(err, SP_EIO, "could not create a JetStream context: %s",
                            nats_last_error(s));
        }
    }
    if (rc == 0) {
        jsStreamInfo *si = NULL;
        rc = nats_stream_info(sk, js, pattern, &si, err);
        if (rc == 0 && si != NULL) {
            const jsStreamConfig *c = si->Config;
            bool any = c == NULL || c->SubjectsLen == 0;
            for (int i = 0; c != NULL && i < c->SubjectsLen && !any; i++) {
                any = sp_nats_subjects_overlap(c->Subjects[i], pattern);
            }
            if (!any) {
                rc = sp_err_set(err, SP_EUNSUPP,
                                "stream \"%s\" captures none of the subjects \"%s\" produces",
                                conf->stream, conf->subject);
                sp_err_hint(err,
                            "add '%s' to the stream's subjects (nats stream edit %s), or "
                            "change subject",
                            pattern, conf->stream);
            }
            jsStreamInfo_Destroy(si);
        }
    }
    jsCtx_Destroy(js);
    if (nc != NULL) {
        natsConnection_Close(nc);
        natsConnection_Destroy(nc);
    }
    natsOptions_Destroy(o);
    free(masked);
    free(pattern);
    return rc;
}

/* ---- batches ---- */

static void nats_slot_reserve(struct nats_slot *s, size_t n)
{
    if (n <= s->cap) {
        return;
    }
    size_t cap = s->cap > 0 ? s->cap : 64;
    while (cap < n) {
        cap *= 2;
    }
    size_t old = s->cap;
    s->recs = sp_xrealloc(s->recs, cap * sizeof(struct sp_rec *));
    s->state = sp_xrealloc(s->state, cap * sizeof(*s->state));
    s->next = sp_xrealloc(s->next, cap * sizeof(*s->next));
    s->sent_ms = sp_xrealloc(s->sent_ms, cap * sizeof(*s->sent_ms));
    s->fifo = sp_xrealloc(s->fifo, cap * sizeof(*s->fifo));
    s->rej = sp_xrealloc(s->rej, cap * sizeof(struct sp_err *));
    memset(s->rej + old, 0, (cap - old) * sizeof(struct sp_err *));
    s->cap = cap;
}

static bool nats_same_key(const struct sp_rec *a, const struct sp_rec *b)
{
    if (a->key == NULL || b->key == NULL) {
        return a->key == NULL && b->key == NULL;
    }
    return a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0;
}

/*
 * Links each record to the next one of the same key (keyless records form
 * one chain): s->next, and s->state READY for the first record of each key,
 * WAITING for the others.
 */
static void nats_chain_keys(struct nats_state *st, struct nats_slot *s)
{
    size_t need = 16;
    while (need < s->n * 2) {
        need *= 2;
    }
    if (need > st->keytab_cap) {
        free(st->keytab);
        st->keytab = sp_xcalloc(need, sizeof(*st->keytab));
        st->keytab_cap = need;
    } else {
        memset(st->keytab, 0, need * sizeof(*st->keytab));
    }
    size_t mask = need - 1;
    for (size_t i = 0; i < s->n; i++) {
        const struct sp_rec *r = s->recs[i];
        s->next[i] = -1;
        s->state[i] = NR_WAITING;
        s->sent_ms[i] = 0;
        uint32_t h = r->key != NULL ? r->key_hash : 0u;
        size_t pos = (size_t)h & mask;
        int32_t prev = -1;
        while (st->keytab[pos] != 0) {
            int32_t j = st->keytab[pos] - 1;
            if (nats_same_key(s->recs[j], r)) {
                prev = j;
                break;
            }
            pos = (pos + 1) & mask;
        }
        st->keytab[pos] = (int32_t)i + 1;
        if (prev >= 0) {
            s->next[prev] = (int32_t)i;
        } else {
            s->state[i] = NR_READY;
        }
    }
}

/* Whether the configured stream captures subj; refreshes the stream once in a while. */
static bool nats_captured(struct sp_sink *sk, struct nats_state *st, const char *subj)
{
    if (st->last_subj.len > 0 && strcmp(st->last_subj.data, subj) == 0) {
        return st->last_captured;
    }
    bool captured = false;
    for (int i = 0; i < st->nstream_subjects && !captured; i++) {
        captured = sp_nats_subject_matches(st->stream_subjects[i], subj);
    }
    if (!captured && sp_time_mono_ms() - st->stream_refreshed_ms >= NATS_REFRESH_MS) {
        /* The stream may have been edited since it was read. */
        jsStreamInfo *si = NULL;
        struct sp_err e;
        sp_err_clear(&e);
        if (nats_stream_info(sk, st->js, st->pattern, &si, &e) == 0) {
            nats_set_stream(st, si);
            jsStreamInfo_Destroy(si);
            for (int i = 0; i < st->nstream_subjects && !captured; i++) {
                captured = sp_nats_subject_matches(st->stream_subjects[i], subj);
            }
        } else {
            st->stream_refreshed_ms = sp_time_mono_ms();
            /* Cannot tell now: let the server decide (Nats-Expected-Stream). */
            captured = true;
            sp_log_warn(&sk->log, "%s", e.msg);
        }
    }
    sp_buf_reset(&st->last_subj);
    sp_buf_puts(&st->last_subj, subj);
    st->last_captured = captured;
    return captured;
}

static void nats_reject(struct nats_slot *s, size_t i, struct sp_err *e)
{
    s->state[i] = NR_REJECTED;
    s->rej[i] = sp_xmalloc(sizeof(struct sp_err));
    *s->rej[i] = *e;
    s->rej[i]->code = SP_EREJECTED;
    s->rej[i]->retriable = false;
    s->settled++;
}

static natsStatus nats_build_msg(struct nats_state *st, const struct sp_rec *r, const char *reply,
                                 natsMsg **out)
{
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, st->subj.data, reply, r->value, (int)r->value_len);
    char buf[SP_LSN_BUFSZ];
    char op[2] = {r->op, '\0'};
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "Nats-Msg-Id", r->id);
    }
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "Nats-Expected-Stream", st->conf->stream);
    }
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "Siphon-Op", op);
    }
    if (s == NATS_OK && r->source != NULL) {
        s = natsMsgHeader_Set(m, "Siphon-Source", r->source);
    }
    if (s == NATS_OK) {
        struct sp_buf *t = &st->scratch;
        sp_buf_reset(t);
        if (r->schema != NULL && *r->schema != '\0') {
            sp_buf_printf(t, "%s.", r->schema);
        }
        sp_buf_puts(t, r->table != NULL ? r->table : "");
        s = natsMsgHeader_Set(m, "Siphon-Table", t->data);
    }
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "Siphon-Lsn", sp_lsn_str(r->lsn, buf));
    }
    if (s == NATS_OK && r->key != NULL) {
        /* Header values end at a line break; the json format's keys have none. */
        char *key = sp_xstrndup(r->key, r->key_len);
        for (char *p = key; *p != '\0'; p++) {
            if (*p == '\r' || *p == '\n') {
                *p = ' ';
            }
        }
        s = natsMsgHeader_Set(m, "Siphon-Key", key);
        free(key);
    }
    if (s != NATS_OK) {
        natsMsg_Destroy(m);
        return s;
    }
    *out = m;
    return NATS_OK;
}

/*
 * The destination a flow set (route, outbox) as the subject: characters a
 * subject token cannot hold (whitespace, '*', '>') become '_', as with the
 * template, and an empty token becomes "_".
 */
static void nats_subject_from_dest(const char *dest, struct sp_buf *out)
{
    sp_buf_reset(out);
    bool token_empty = true;
    for (const char *p = dest; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '.') {
            if (token_empty) {
                sp_buf_putc(out, '_');
            }
            sp_buf_putc(out, '.');
            token_empty = true;
            continue;
        }
        char ch = *p;
        if (c <= ' ' || c == 0x7f || c == '*' || c == '>') {
            ch = '_';
        }
        sp_buf_putc(out, ch);
        token_empty = false;
    }
    if (token_empty) {
        sp_buf_putc(out, '_');
    }
}

/*
 * Publishes record i of slot si, or settles it at once if the destination
 * can never take it; then, for a record settled at once, moves on to the
 * next record of its key. Returns 0, or a retriable error for the batch.
 */
static int nats_publish(struct sp_sink *sk, int si, size_t i, struct sp_err *err)
{
    struct nats_state *st = sk->state;
    const struct nats_conf *conf = sk->conf;
    struct nats_slot *s = &st->slots[si];
    while (true) {
        const struct sp_rec *r = s->recs[i];
        if (r->dest != NULL) {
            nats_subject_from_dest(r->dest, &st->subj);
        } else {
            sp_nats_tmpl_expand(&st->tmpl, r, &st->subj);
        }
        struct sp_err e;
        sp_err_clear(&e);
        bool settled_now = false;
        if (!nats_captured(sk, st, st->subj.data)) {
            char *subjects = nats_subjects_list(st);
            sp_err_set(&e, SP_EREJECTED,
                       "stream \"%s\" does not capture subject \"%s\" (it "
                       "captures %s)",
                       conf->stream, st->subj.data, subjects);
            sp_err_hint(&e,
                        "add the subject to the stream (nats stream edit %s --subjects ...), "
                        "or change subject in sink \"%s\"",
                        conf->stream, sk->name);
            free(subjects);
            nats_reject(s, i, &e);
            settled_now = true;
        } else if (r->value_len > INT_MAX) {
            sp_err_set(&e, SP_EREJECTED, "event of %zu bytes is too large for NATS", r->value_len);
            nats_reject(s, i, &e);
            settled_now = true;
        } else {
            char reply[160];
            snprintf(reply, sizeof(reply), "%s.%d.%u.%zu", st->inbox, si, (unsigned)s->gen, i);
            natsMsg *m = NULL;
            natsStatus ps = nats_build_msg(st, r, reply, &m);
            if (ps == NATS_OK) {
                ps = natsConnection_PublishMsg(st->nc, m);
                natsMsg_Destroy(m);
            }
            if (ps == NATS_OK) {
                s->state[i] = NR_INFLIGHT;
                s->sent_ms[i] = sp_time_mono_ms();
                s->fifo[s->fifo_tail++] = (int32_t)i;
            } else if (ps == NATS_MAX_PAYLOAD) {
                sp_err_set(&e, SP_EREJECTED,
                           "event of %zu bytes is larger than the server's max_payload (%lld "
                           "bytes)",
                           r->value_len, (long long)natsConnection_GetMaxPayload(st->nc));
                sp_err_hint(&e, "raise max_payload in nats-server's configuration");
                nats_reject(s, i, &e);
                settled_now = true;
            } else if (ps == NATS_INVALID_SUBJECT) {
                sp_err_set(&e, SP_EREJECTED, "\"%s\" is not a valid subject", st->subj.data);
                nats_reject(s, i, &e);
                settled_now = true;
            } else {
                sp_err_set(err, SP_ECONN, "could not publish to \"%s\" at %s: %s", st->subj.data,
                           st->url_masked, nats_last_error(ps));
                if (ps == NATS_INSUFFICIENT_BUFFER) {
                    sp_err_hint(err, "the connection is down and reconnect_buffer is full; "
                                     "delivery resumes after the reconnect");
                }
                err->retriable = true;
                return err->code;
            }
        }
        if (!settled_now || s->next[i] < 0) {
            return 0;
        }
        i = (size_t)s->next[i];
    }
}

/* The batch of slot si is settled: hand it back. */
static void nats_slot_done(struct sp_sink *sk, int si)
{
    struct nats_state *st = sk->state;
    struct nats_slot *s = &st->slots[si];
    struct sp_batch *b = s->b;
    size_t rejected = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->rej[i] != NULL) {
            s->recs[i]->err = s->rej[i]; /* the pipeline frees it */
            s->rej[i] = NULL;
            rejected++;
        }
    }
    sp_log_debug(&sk->log,
                 "partition %d: %zu events acknowledged by JetStream in %lld ms (%zu duplicates, "
                 "%zu rejected)",
                 b->part, s->n - rejected, (long long)(sp_time_mono_ms() - s->start_ms), s->dups,
                 rejected);
    nats_slot_clear(s);
    st->busy--;
    sp_batch_done(b, 0, NULL);
}

/* The batch of slot si failed as a whole (retriable): hand it back for a retry. */
static void nats_slot_fail(struct sp_sink *sk, int si, const struct sp_err *err)
{
    struct nats_state *st = sk->state;
    struct nats_slot *s = &st->slots[si];
    struct sp_batch *b = s->b;
    nats_slot_clear(s);
    st->busy--;
    sp_batch_done(b, err->code != 0 ? err->code : SP_ECONN, err);
}

static int nats_submit(struct sp_sink *sk, struct sp_batch *b, struct sp_err *err)
{
    struct nats_state *st = sk->state;
    /* A free slot; a partition may have several batches in flight (a retried one beside
     * the next), never two with the same key, so slots are not tied to partitions. */
    int si = 0;
    while (si < st->nslots && st->slots[si].b != NULL) {
        si++;
    }
    if (si == st->nslots) {
        st->slots = sp_xrealloc(st->slots, (size_t)(st->nslots + 1) * sizeof(*st->slots));
        memset(&st->slots[st->nslots], 0, sizeof(*st->slots));
        st->nslots++;
    }
    if (natsConnection_Status(st->nc) == NATS_CONN_STATUS_CLOSED) {
        sp_err_set(err, SP_ECONN, "the connection to %s is closed", st->url_masked);
        err->retriable = true;
        return err->code;
    }
    struct nats_slot *s = &st->slots[si];
    nats_slot_reserve(s, b->count);
    size_t n = 0;
    for (struct sp_rec *r = b->head; r != NULL && n < b->count; r = r->next) {
        s->recs[n++] = r;
    }
    s->b = b;
    s->n = n;
    s->settled = 0;
    s->dups = 0;
    s->fifo_head = 0;
    s->fifo_tail = 0;
    s->start_ms = sp_time_mono_ms();
    st->busy++;
    nats_chain_keys(st, s);
    for (size_t i = 0; i < n; i++) {
        if (s->state[i] != NR_READY) {
            continue; /* waits for its key's previous change */
        }
        int rc = nats_publish(sk, si, i, err);
        if (rc != 0) {
            /* Acks of what did go out are ignored from now on (generation bumped). */
            nats_slot_clear(s);
            st->busy--;
            return rc;
        }
    }
    if (s->settled == s->n) {
        nats_slot_done(sk, si);
    }
    return 0;
}

/* ---- acknowledgements ---- */

/* The integer after "name": in json, or -1. */
static long long nats_json_int(const char *json, const char *name)
{
    const char *p = strstr(json, name);
    if (p == NULL) {
        return -1;
    }
    p += strlen(name);
    while (*p == ' ') {
        p++;
    }
    char *end = NULL;
    long long v = strtoll(p, &end, 10);
    return end == p ? -1 : v;
}

/* The string after "name": in json (escapes kept), into buf. */
static void nats_json_str(const char *json, const char *name, char *buf, size_t cap)
{
    buf[0] = '\0';
    const char *p = strstr(json, name);
    if (p == NULL) {
        return;
    }
    p += strlen(name);
    while (*p == ' ') {
        p++;
    }
    if (*p != '"') {
        return;
    }
    p++;
    size_t n = 0;
    while (*p != '\0' && *p != '"' && n + 1 < cap) {
        if (*p == '\\' && p[1] != '\0') {
            p++;
        }
        buf[n++] = *p++;
    }
    buf[n] = '\0';
}

/* The decimal number at *p, up to the next '.' (or the end when last); advances *p. */
static bool nats_parse_num(const char **p, bool last, unsigned long long *out)
{
    const char *s = *p;
    if (*s < '0' || *s > '9') {
        return false;
    }
    errno = 0;
    char *end = NULL;
    *out = strtoull(s, &end, 10);
    if (errno != 0 || (last ? *end != '\0' : *end != '.')) {
        return false;
    }
    *p = last ? end : end + 1;
    return true;
}

/* Parses "<inbox>.<slot>.<gen>.<index>"; false for anything else. */
static bool nats_parse_reply(const struct nats_state *st, const char *subj, int *si, uint32_t *gen,
                             size_t *idx)
{
    size_t plen = strlen(st->inbox);
    if (strncmp(subj, st->inbox, plen) != 0 || subj[plen] != '.') {
        return false;
    }
    const char *p = subj + plen + 1;
    unsigned long long a = 0;
    unsigned long long g = 0;
    unsigned long long i = 0;
    if (!nats_parse_num(&p, false, &a) || !nats_parse_num(&p, false, &g) ||
        !nats_parse_num(&p, true, &i) || a >= (unsigned long long)st->nslots || g > UINT32_MAX ||
        i > SIZE_MAX) {
        return false;
    }
    *si = (int)a;
    *gen = (uint32_t)g;
    *idx = (size_t)i;
    return true;
}

/* A JetStream refusal that a retry cannot change. */
static bool nats_permanent(long long code)
{
    return code == JSStreamMessageExceedsMaximumErr || code == JSStreamNotMatchErr;
}

static void nats_handle_ack(struct sp_sink *sk, natsMsg *m)
{
    struct nats_state *st = sk->state;
    const struct nats_conf *conf = sk->conf;
    int si = 0;
    uint32_t gen = 0;
    size_t i = 0;
    if (!nats_parse_reply(st, natsMsg_GetSubject(m), &si, &gen, &i)) {
        return;
    }
    struct nats_slot *s = &st->slots[si];
    if (s->b == NULL || s->gen != gen || i >= s->n || s->state[i] != NR_INFLIGHT) {
        return; /* for an earlier attempt, or a second answer */
    }
    int len = natsMsg_GetDataLength(m);
    const char *data = natsMsg_GetData(m);
    char *json = sp_xstrndup(data != NULL ? data : "", len > 0 ? (size_t)len : 0);
    const struct sp_rec *r = s->recs[i];
    struct sp_err e;
    sp_err_clear(&e);
    if (strstr(json, "\"error\"") != NULL) {
        long long code = nats_json_int(json, "\"err_code\":");
        char desc[256];
        nats_json_str(json, "\"description\":", desc, sizeof(desc));
        if (nats_permanent(code)) {
            if (code == JSStreamMessageExceedsMaximumErr) {
                sp_err_set(&e, SP_EREJECTED,
                           "JetStream refused the event (%zu bytes): %s (error %lld)", r->value_len,
                           desc, code);
                sp_err_hint(&e, "raise max_msg_size of stream \"%s\" (now %lld bytes)",
                            conf->stream, (long long)st->max_msg_size);
            } else {
                sp_err_set(&e, SP_EREJECTED,
                           "JetStream refused the event: %s (error %lld); its subject is "
                           "captured by a stream other than \"%s\"",
                           desc, code, conf->stream);
                sp_err_hint(&e, "change subject in sink \"%s\", or stream", sk->name);
            }
            nats_reject(s, i, &e);
            if (s->next[i] >= 0) {
                struct sp_err perr;
                sp_err_clear(&perr);
                if (nats_publish(sk, si, (size_t)s->next[i], &perr) != 0) {
                    free(json);
                    nats_slot_fail(sk, si, &perr);
                    return;
                }
            }
        } else {
            sp_err_set(&e, SP_ESERVER,
                       "JetStream did not store event %s in stream \"%s\": %s (error %lld)", r->id,
                       conf->stream, desc, code);
            e.retriable = true;
            free(json);
            nats_slot_fail(sk, si, &e);
            return;
        }
    } else if (nats_json_int(json, "\"seq\":") < 0) {
        sp_err_set(&e, SP_EPROTO, "unexpected answer to a publish: %.200s", json);
        e.retriable = true;
        free(json);
        nats_slot_fail(sk, si, &e);
        return;
    } else {
        s->state[i] = NR_ACKED;
        s->settled++;
        if (strstr(json, "\"duplicate\":true") != NULL) {
            s->dups++;
        }
        if (s->next[i] >= 0) {
            struct sp_err perr;
            sp_err_clear(&perr);
            if (nats_publish(sk, si, (size_t)s->next[i], &perr) != 0) {
                free(json);
                nats_slot_fail(sk, si, &perr);
                return;
            }
        }
    }
    free(json);
    if (s->settled == s->n) {
        nats_slot_done(sk, si);
    }
}

/* Fails every batch with a publish older than ack_timeout; returns ms until the next deadline. */
static int64_t nats_check_timeouts(struct sp_sink *sk, int64_t now)
{
    struct nats_state *st = sk->state;
    const struct nats_conf *conf = sk->conf;
    int64_t next = -1;
    for (int si = 0; si < st->nslots; si++) {
        struct nats_slot *s = &st->slots[si];
        if (s->b == NULL) {
            continue;
        }
        while (s->fifo_head < s->fifo_tail && s->state[s->fifo[s->fifo_head]] != NR_INFLIGHT) {
            s->fifo_head++;
        }
        if (s->fifo_head == s->fifo_tail) {
            continue;
        }
        size_t i = (size_t)s->fifo[s->fifo_head];
        int64_t left = s->sent_ms[i] + conf->ack_timeout_ms - now;
        if (left > 0) {
            next = next < 0 || left < next ? left : next;
            continue;
        }
        struct sp_err e;
        sp_err_set(&e, SP_ETIMEDOUT,
                   "no acknowledgement from JetStream within %lld ms for event %s (%zu of %zu "
                   "events of the batch settled)",
                   (long long)conf->ack_timeout_ms, s->recs[i]->id, s->settled, s->n);
        e.retriable = true;
        pthread_mutex_lock(&st->ev->mu);
        bool down = st->ev->down;
        pthread_mutex_unlock(&st->ev->mu);
        if (down) {
            sp_err_hint(&e, "the connection to %s is down; libnats is reconnecting",
                        st->url_masked);
        } else if (st->no_responders_ms > 0 && now - st->no_responders_ms < conf->ack_timeout_ms) {
            sp_err_hint(&e,
                        "no JetStream stream answered (no responders): is stream \"%s\" "
                        "available and does it capture the subject?",
                        conf->stream);
        } else {
            sp_err_hint(&e,
                        "check that nats-server and stream \"%s\" are healthy, or raise "
                        "ack_timeout",
                        conf->stream);
        }
        nats_slot_fail(sk, si, &e);
    }
    return next;
}

static int nats_poll(struct sp_sink *sk, int timeout_ms)
{
    struct nats_state *st = sk->state;
    if (st == NULL || st->acks == NULL) {
        return 0;
    }
    int64_t now = sp_time_mono_ms();
    int64_t next = nats_check_timeouts(sk, now);
    int64_t wait = timeout_ms;
    if (st->busy == 0) {
        /* Nothing in flight: return soon, the runtime may have a batch for us. */
        wait = wait > NATS_IDLE_POLL_MS ? NATS_IDLE_POLL_MS : wait;
    } else if (next >= 0 && next < wait) {
        wait = next;
    }
    natsMsg *m = NULL;
    natsStatus s = natsSubscription_NextMsg(&m, st->acks, wait > 0 ? wait : 1);
    int handled = 0;
    while (s == NATS_OK || s == NATS_NO_RESPONDERS) {
        if (s == NATS_OK) {
            nats_handle_ack(sk, m);
            natsMsg_Destroy(m);
            m = NULL;
            handled++;
        } else {
            /* libnats swallows the 503 and its reply subject: the ack timeout settles it. */
            st->no_responders_ms = sp_time_mono_ms();
        }
        s = natsSubscription_NextMsg(&m, st->acks, 0);
    }
    if (s != NATS_TIMEOUT && handled == 0) {
        /* Subscription or connection gone: do not spin. */
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(wait > 0 ? wait : 1) * 1000000L};
        nanosleep(&ts, NULL);
    }
    nats_check_timeouts(sk, sp_time_mono_ms());
    return handled;
}

static int nats_flush(struct sp_sink *sk, int timeout_ms, struct sp_err *err)
{
    (void)err;
    struct nats_state *st = sk->state;
    if (st == NULL) {
        return 0;
    }
    const struct nats_conf *conf = sk->conf;
    int64_t limit = conf->ack_timeout_ms + 1000;
    int64_t deadline = sp_time_mono_ms() + (timeout_ms < limit ? timeout_ms : limit);
    while (st->busy > 0 && sp_time_mono_ms() < deadline) {
        nats_poll(sk, 100);
    }
    if (st->busy > 0) {
        struct sp_err e;
        sp_err_set(&e, SP_ESTOPPED, "stopped before JetStream acknowledged every event");
        e.retriable = true;
        for (int si = 0; si < st->nslots; si++) {
            if (st->slots[si].b != NULL) {
                nats_slot_fail(sk, si, &e);
            }
        }
    }
    return 0;
}

static void nats_close(struct sp_sink *sk)
{
    struct nats_state *st = sk->state;
    if (st == NULL) {
        return;
    }
    if (st->busy > 0) {
        struct sp_err e;
        sp_err_set(&e, SP_ESTOPPED, "closed before JetStream acknowledged every event");
        e.retriable = true;
        for (int si = 0; si < st->nslots; si++) {
            if (st->slots[si].b != NULL) {
                nats_slot_fail(sk, si, &e);
            }
        }
    }
    nats_state_free(st);
    sk->state = NULL;
}

const struct sp_sink_ops sp_sink_nats = {
    .type = "nats",
    .summary = "publish events to a NATS JetStream stream, deduplicated by event id",
    .opts = nats_opts,
    .conf_size = sizeof(struct nats_conf),
    .open = nats_open,
    .submit = nats_submit,
    .poll = nats_poll,
    .flush = nats_flush,
    .check = nats_check,
    .close = nats_close,
};
