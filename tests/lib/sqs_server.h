/*
 * An Amazon SQS endpoint for tests, in the test process (libmicrohttpd, one
 * thread per connection), speaking the AWS JSON 1.0 protocol of the actions
 * the sqs sink uses, errors included:
 *
 *   every request  POST / with X-Amz-Target: AmazonSQS.<action>, signed with
 *                  Signature Version 4 for the server's region and service
 *                  "sqs": an unknown access key gets 403 InvalidClientTokenId,
 *                  a signature that is not the one computed from the request
 *                  received (method, path, signed headers, body) with the
 *                  server's secret gets 403 SignatureDoesNotMatch;
 *   GetQueueUrl    {"QueueName"} -> {"QueueUrl"}, or 400 QueueDoesNotExist
 *                  (x-amzn-query-error: AWS.SimpleQueueService.NonExistentQueue;Sender);
 *   SendMessageBatch  1..10 entries with distinct Ids, at most 256 KiB in all
 *                  (EmptyBatchRequest, TooManyEntriesInBatchRequest,
 *                  BatchEntryIdsNotDistinct, BatchRequestTooLong otherwise);
 *                  per entry Successful or Failed: a FIFO queue (name ending in
 *                  .fifo) needs MessageGroupId and MessageDeduplicationId and
 *                  stores a deduplication id once within the deduplication
 *                  window (five minutes; a repeat is answered Successful and
 *                  not stored), a standard queue refuses both.
 *
 * Test controls inject faults: every Nth entry Failed with SenderFault false,
 * entries whose body contains a string Failed with SenderFault true, the next
 * N SendMessageBatch requests answered with a status and error type (500
 * InternalError, 400 ThrottlingException, ...), slow answers, a new secret.
 * Stored messages are read back through the C API.
 *
 * Threads: the controls and readers may be called from any thread; the
 * server's threads take the same lock.
 */
#ifndef SIPHON_TESTS_LIB_SQS_SERVER_H
#define SIPHON_TESTS_LIB_SQS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

struct sp_sqs_server;

/*
 * Listens on 127.0.0.1 on a port the kernel picks, accepting requests
 * signed for region with access_key/secret; fails the test on error.
 */
struct sp_sqs_server *sp_sqs_server_start(const char *region, const char *access_key,
                                          const char *secret);
/* Stops (waits for the connection threads) and frees. NULL is a no-op. */
void sp_sqs_server_stop(struct sp_sqs_server *s);
const char *sp_sqs_server_url(const struct sp_sqs_server *s); /* "http://127.0.0.1:N" */

/* Creates a queue (FIFO when the name ends in .fifo); its URL is {url}/000000000000/{name}. */
void sp_sqs_server_add_queue(struct sp_sqs_server *s, const char *name);
/* The secret requests must be signed with from now on. */
void sp_sqs_server_set_secret(struct sp_sqs_server *s, const char *secret);
/* Every nth entry reaching a queue fails with SenderFault false (InternalError); 0: none. */
void sp_sqs_server_fail_every(struct sp_sqs_server *s, int n);
/* Entries whose body contains needle fail with SenderFault true, code and message; NULL: none. */
void sp_sqs_server_reject_matching(struct sp_sqs_server *s, const char *needle, const char *code,
                                   const char *message);
/* The next count SendMessageBatch requests get status with error type (e.g. "InternalError"). */
void sp_sqs_server_respond(struct sp_sqs_server *s, int status, const char *type, int count);
/* The next count requests wait delay_ms before they are handled. */
void sp_sqs_server_delay(struct sp_sqs_server *s, int delay_ms, int count);

/* One stored message. */
struct sp_sqs_msg {
    char *body;
    char *group; /* MessageGroupId, NULL on standard queues */
    char *dedup; /* MessageDeduplicationId, NULL on standard queues */
    char *attr_names[10];
    char *attr_values[10];
    int nattrs;
    uint64_t seq; /* arrival order over the whole server */
};

/* The value of message attribute name, or NULL. */
const char *sp_sqs_msg_attr(const struct sp_sqs_msg *m, const char *name);

/* A copy of the messages stored in queue, in arrival order. Free with sp_sqs_msgs_free. */
size_t sp_sqs_server_messages(struct sp_sqs_server *s, const char *queue, struct sp_sqs_msg **out);
void sp_sqs_msgs_free(struct sp_sqs_msg *m, size_t n);
/* Messages stored in queue so far. */
size_t sp_sqs_server_count(struct sp_sqs_server *s, const char *queue);

struct sp_sqs_stats {
    long requests;      /* every request received */
    long batches;       /* SendMessageBatch requests answered 200 */
    long entries;       /* entries in those */
    long failed_retry;  /* Failed with SenderFault false */
    long failed_sender; /* Failed with SenderFault true */
    long deduplicated;  /* Successful without being stored again (FIFO) */
    long max_entries;   /* most entries in one request */
    long same_group;    /* requests holding two entries of one group */
};

void sp_sqs_server_stats(struct sp_sqs_server *s, struct sp_sqs_stats *out);
/* Requests answered with status. */
long sp_sqs_server_status_count(struct sp_sqs_server *s, int status);
/* Requests answered with error type (e.g. "SignatureDoesNotMatch"). */
long sp_sqs_server_error_count(struct sp_sqs_server *s, const char *type);

#endif
