/*
 * libcurl pieces the HTTP sinks (nakadi, sqs) share: process-wide
 * initialisation, the options every request has, the response body and
 * header callbacks, and reaping finished transfers of a multi handle.
 */
#ifndef SIPHON_SINK_HTTP_H
#define SIPHON_SINK_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <stdbool.h>

#include "core/err.h"

/* Answers are small; a runaway one is cut at this size, not buffered. */
#define SP_HTTP_RESP_MAX ((size_t)4 * 1024 * 1024)

/* curl_global_init, once per process: 0, or SP_EIO with err when libcurl could not start. */
int sp_http_init(struct sp_err *err);

/* What every request has: no signals, the timeouts, TLS verification (ca_file may be NULL),
 * siphon's User-Agent. */
void sp_http_easy_common(CURL *e, int64_t connect_timeout_ms, int64_t request_timeout_ms,
                         bool tls_verify, const char *ca_file);

/* CURLOPT_WRITEFUNCTION appending to the struct sp_buf given as CURLOPT_WRITEDATA, up to
 * SP_HTTP_RESP_MAX bytes. */
size_t sp_http_on_body(char *p, size_t size, size_t n, void *buf);

/*
 * Whether the header line p (len bytes, as CURLOPT_HEADERFUNCTION gets it)
 * is the header name (without ':', any case); if so, its value without the
 * surrounding white space goes to out (cap bytes, NUL-terminated, cut if
 * longer).
 */
bool sp_http_header_value(const char *p, size_t len, const char *name, char *out, size_t cap);

/* curl_multi_perform, then done(ctx, CURLINFO_PRIVATE of the handle, result) for each finished
 * transfer. */
void sp_http_drive(CURLM *multi, void (*done)(void *ctx, void *priv, CURLcode cc), void *ctx);

#endif
