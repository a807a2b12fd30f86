/*
 * A Nakadi server for tests, in the test process (libmicrohttpd, one thread
 * per connection): the publishing API of the spec digest
 * (/work/shared/specs/nakadi.md), errors included.
 *
 *   POST /event-types/{name}/events  a JSON array of events. Bearer token
 *        checked (401), event type known (404) and allowed (403), every
 *        event validated (eid a UUID, occurred_at, no received_at; data_type,
 *        data_op and data for category data; partition_compaction_key present
 *        iff the type is compacted): any failure -> 422 and nothing
 *        published; else each event goes to a partition (hash of
 *        partition_compaction_key, else of the value at the type's partition
 *        field) and is stored -> 200, or, with injected broker failures, 207
 *        where a failed event's later events in the same partition are
 *        `aborted`, as Nakadi does.
 *   GET  /event-types/{name}, GET /event-types.
 *
 * Test controls inject faults: every Nth event fails while publishing, 422
 * for events containing a string, the next N requests answered with a
 * status (429 with Retry-After, 5xx, ...), slow answers, a forbidden event
 * type, the current token.
 *
 * Threads: the controls and readers may be called from any thread; the
 * server's threads take the same lock.
 */
#ifndef SIPHON_TESTS_LIB_NAKADI_SERVER_H
#define SIPHON_TESTS_LIB_NAKADI_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

struct sp_nk_server;

/* Listens on 127.0.0.1 on a port the kernel picks; fails the test on error. */
struct sp_nk_server *sp_nk_server_start(void);
/* Stops (waits for the connection threads) and frees. NULL is a no-op. */
void sp_nk_server_stop(struct sp_nk_server *s);
const char *sp_nk_server_url(const struct sp_nk_server *s); /* "http://127.0.0.1:N" */

/*
 * Creates an event type: category "data", "business" or "undefined";
 * nparts partitions; compacted: partition_compaction_key required (and
 * refused otherwise); partition_field: path of the partition key value when
 * there is no compaction key ("data.id"), or NULL (partition 0).
 */
void sp_nk_server_add_type(struct sp_nk_server *s, const char *name, const char *category,
                           int nparts, bool compacted, const char *partition_field);

/* Accept only "Authorization: Bearer <token>"; NULL: no authentication. */
void sp_nk_server_set_token(struct sp_nk_server *s, const char *token);
/* Every nth event reaching the publishing step fails (207); 0: none. */
void sp_nk_server_fail_every(struct sp_nk_server *s, int n);
/* Events whose JSON contains needle fail validation with detail (422); NULL: none. */
void sp_nk_server_reject_matching(struct sp_nk_server *s, const char *needle, const char *detail);
/* The same in event type `type` only. */
void sp_nk_server_reject_matching_in(struct sp_nk_server *s, const char *type, const char *needle,
                                     const char *detail);
/* The next count POSTs are answered with status and a Problem JSON; Retry-After if >= 0. */
void sp_nk_server_respond(struct sp_nk_server *s, int status, int count, int retry_after_s);
/* The next count requests wait delay_ms before they are handled. */
void sp_nk_server_delay(struct sp_nk_server *s, int delay_ms, int count);
/* POSTs to this event type get 403. */
void sp_nk_server_forbid(struct sp_nk_server *s, const char *type);

/* One stored event. */
struct sp_nk_event {
    char *eid;
    char *json; /* as received */
    int partition;
    uint64_t order; /* arrival order over the whole server */
};

/* A copy of the events stored for type, in arrival order. Free with sp_nk_events_free. */
size_t sp_nk_server_events(struct sp_nk_server *s, const char *type, struct sp_nk_event **out);
void sp_nk_events_free(struct sp_nk_event *ev, size_t n);
/* Events stored for type so far. */
size_t sp_nk_server_count(struct sp_nk_server *s, const char *type);

/* How often an event with this eid was sent (in any POST body that was parsed) and answered
 * failed or aborted. */
void sp_nk_server_eid_stats(struct sp_nk_server *s, const char *eid, long *sent, long *failed);

/* One POST. */
struct sp_nk_request {
    int64_t at_ms;       /* CLOCK_MONOTONIC when it arrived */
    int64_t answered_ms; /* when the answer was queued */
    int status;
    size_t nevents; /* events in the body (0 if it was not parsed) */
};

/* A copy of every POST so far (free()). */
size_t sp_nk_server_requests(struct sp_nk_server *s, struct sp_nk_request **out);
/* POSTs answered with status. */
long sp_nk_server_status_count(struct sp_nk_server *s, int status);

#endif
