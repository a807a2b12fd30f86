// SPDX-License-Identifier: Apache-2.0
/* libcurl pieces the HTTP sinks share (sink/http.h). */
#include "sink/http.h"

#include <pthread.h>
#include <string.h>
#include <strings.h>

#include "util/buf.h"

static pthread_once_t http_once = PTHREAD_ONCE_INIT;
static CURLcode http_init_rc;

static void http_global_init(void)
{
    http_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int sp_http_init(struct sp_err *err)
{
    pthread_once(&http_once, http_global_init);
    if (http_init_rc != CURLE_OK) {
        return sp_err_set(err, SP_EIO, "libcurl could not be initialised: %s",
                          curl_easy_strerror(http_init_rc));
    }
    return 0;
}

void sp_http_easy_common(CURL *e, int64_t connect_timeout_ms, int64_t request_timeout_ms,
                         bool tls_verify, const char *ca_file)
{
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)request_timeout_ms);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, tls_verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, tls_verify ? 2L : 0L);
    if (ca_file != NULL) {
        curl_easy_setopt(e, CURLOPT_CAINFO, ca_file);
    }
    curl_easy_setopt(e, CURLOPT_USERAGENT, "siphon/" SP_VERSION);
}

size_t sp_http_on_body(char *p, size_t size, size_t n, void *buf)
{
    struct sp_buf *b = buf;
    if (b->len < SP_HTTP_RESP_MAX) {
        sp_buf_append(b, p, size * n);
    }
    return size * n;
}

bool sp_http_header_value(const char *p, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (len <= nl || p[nl] != ':' || strncasecmp(p, name, nl) != 0) {
        return false;
    }
    const char *v = p + nl + 1;
    size_t vl = len - nl - 1;
    while (vl > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vl--;
    }
    while (vl > 0 && strchr(" \t\r\n", v[vl - 1]) != NULL) {
        vl--;
    }
    if (vl >= cap) {
        vl = cap - 1;
    }
    memcpy(out, v, vl);
    out[vl] = '\0';
    return true;
}

void sp_http_drive(CURLM *multi, void (*done)(void *ctx, void *priv, CURLcode cc), void *ctx)
{
    int running = 0;
    curl_multi_perform(multi, &running);
    CURLMsg *m;
    int left = 0;
    while ((m = curl_multi_info_read(multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) {
            continue;
        }
        void *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&priv);
        done(ctx, priv, m->data.result);
    }
}
