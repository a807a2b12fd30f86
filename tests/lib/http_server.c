// SPDX-License-Identifier: Apache-2.0
/* The HTTP part of the local test servers (http_server.h). */
#include "lib/http_server.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sp_http_server {
    struct MHD_Daemon *d;
    char url[64];
    size_t max_body;
    sp_http_server_fn handle;
    void *cls;
};

struct hs_conn {
    struct sp_buf body;
    bool too_big;
};

int64_t sp_http_server_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static enum MHD_Result hs_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct sp_http_server *h = cls;
    struct hs_conn *cc = *con_cls;
    if (cc == NULL) {
        cc = calloc(1, sizeof(*cc));
        sp_buf_init(&cc->body);
        *con_cls = cc;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (cc->body.len + *upload_data_size > h->max_body) {
            cc->too_big = true;
        } else {
            sp_buf_append(&cc->body, upload_data, *upload_data_size);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    return h->handle(h->cls, c, url, method, &cc->body, cc->too_big);
}

static void hs_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct hs_conn *cc = *con_cls;
    if (cc != NULL) {
        sp_buf_fini(&cc->body);
        free(cc);
        *con_cls = NULL;
    }
}

struct sp_http_server *sp_http_server_start(const char *what, size_t max_body,
                                            sp_http_server_fn handle, void *cls)
{
    struct sp_http_server *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    h->max_body = max_body;
    h->handle = handle;
    h->cls = cls;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = 0;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    h->d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, hs_access, h, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED,
        hs_completed, h, MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_END);
    if (h->d == NULL) {
        free(h);
        fail_msg("could not start the %s test server", what);
        return NULL; /* not reached: fail_msg does not return */
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(h->url, sizeof(h->url), "http://127.0.0.1:%u", (unsigned)info->port);
    return h;
}

void sp_http_server_stop(struct sp_http_server *h)
{
    if (h == NULL) {
        return;
    }
    MHD_stop_daemon(h->d);
    free(h);
}

const char *sp_http_server_url(const struct sp_http_server *h)
{
    return h->url;
}
