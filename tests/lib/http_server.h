/*
 * The HTTP part of the local test servers (nakadi_server.c, sqs_server.c):
 * a libmicrohttpd daemon on 127.0.0.1 and a free port, one thread per
 * connection, that collects each request's body and hands the whole request
 * to the server's handler.
 */
#ifndef SIPHON_TESTS_HTTP_SERVER_H
#define SIPHON_TESTS_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>
#include <stdbool.h>

#include "util/buf.h"

/* A request, body complete: too_big when it passed max_body (the body is then cut). */
typedef enum MHD_Result (*sp_http_server_fn)(void *cls, struct MHD_Connection *c, const char *url,
                                             const char *method, const struct sp_buf *body,
                                             bool too_big);

struct sp_http_server;

/* Starts the daemon (fails the test when it cannot); what names it in that message. */
struct sp_http_server *sp_http_server_start(const char *what, size_t max_body,
                                            sp_http_server_fn handle, void *cls);
/* Stops it: no handler runs after this returns. */
void sp_http_server_stop(struct sp_http_server *h);
/* "http://127.0.0.1:<port>" */
const char *sp_http_server_url(const struct sp_http_server *h);

/* Monotonic milliseconds, for the servers' request logs. */
int64_t sp_http_server_now_ms(void);

#endif
