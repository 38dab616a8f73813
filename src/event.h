/* event: request bodies (JSON via yajl's callback API, or legacy form posts)
 * turned into SocketLabs events: canonical type, typed fields, raw JSON
 * without the SecretKey, dedup digest. Pure: no I/O, no logging; any thread
 * may parse, each batch belongs to one thread at a time. */
#ifndef SLHOOKD_EVENT_H
#define SLHOOKD_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* The address SocketLabs sends validation and test posts from: events from
 * it are test events. */
#define EVENT_TEST_PEER "52.152.150.178"

#define EVENT_MAX_DEPTH 32
#define EVENT_MAX_NODES 100000

enum event_kind {
        EVENT_MAIL,             /* a storable event */
        EVENT_VALIDATION,       /* Type "Validation": answered, not stored as an event */
        EVENT_QUARANTINE,       /* authenticated later, but not an event row: reason says why */
};

/* String columns, in column order. */
enum event_str {
        EVS_ADDRESS, EVS_FROM_ADDRESS, EVS_SUBJECT, EVS_MAILING_ID, EVS_MESSAGE_ID,
        EVS_REASON, EVS_RESPONSE, EVS_LOCAL_IP, EVS_REMOTE_MTA, EVS_BOUNCE_STATUS,
        EVS_DIAGNOSTIC_CODE, EVS_FAILURE_TYPE, EVS_TRACKING_TYPE, EVS_USER_AGENT,
        EVS_CLIENT_IP, EVS_URL, EVS_TAG, EVS_FBL_TYPE, EVS_FBL_FROM, EVS_FBL_TO,
        EVS_DATE_TIME,
        EVS_COUNT
};

/* Integer columns, in column order. */
enum event_num {
        EVN_SERVER_ID, EVN_SUBACCOUNT_ID, EVN_IP_POOL_ID, EVN_MESSAGE_SIZE,
        EVN_DEFERRAL_CODE, EVN_FAILURE_CODE, EVN_LENGTH,
        EVN_COUNT
};

/* Wire name (matched case-insensitively), an alternative spelling, column. */
struct event_field {
        const char *wire;
        const char *alt;
        const char *column;
};
extern const struct event_field event_str_fields[EVS_COUNT];
extern const struct event_field event_num_fields[EVN_COUNT];

struct event {
        enum event_kind kind;
        const char *secret;             /* SecretKey as sent, or NULL; wiped with the batch */
        size_t secret_len;
        bool secret_bad;                /* SecretKey given twice or not a string */
        const char *reason;             /* EVENT_QUARANTINE: why */
        const char *type;               /* canonical: Queued Sent Failed ... or the wire Type */
        const char *wire_type;
        const char *str[EVS_COUNT];     /* NULL when absent */
        int64_t num[EVN_COUNT];
        bool has_num[EVN_COUNT];
        char occurred_at[TIME_ISO_LEN]; /* "" when DateTime is absent */
        int64_t occurred_us;
        const char *meta;               /* Data.Meta as JSON, or NULL */
        const char *tags;               /* Data.Tags as JSON, or NULL */
        bool is_test;                   /* MessageId "SampleMessageId" (the peer is the caller's) */
        char *raw;                      /* the JSON object without SecretKey */
        size_t raw_len;
        char digest[81];                /* set by event_digest() */
        int outcome;                    /* set by the store: 0, or 1 + enum metrics_outcome */
};

struct event_batch {
        struct event *v;
        size_t n;
        struct arena *arena;
};

/* Parse a request body. form: the body is application/x-www-form-urlencoded.
 * Returns 0 with every element of the body in ret (one for an object, one per
 * element of an array, the {"data":{...}} wrapper removed), or -EINVAL when
 * the body is not acceptable (not JSON, too deep, empty array...) with
 * *reterr set to an allocated short message that quotes none of the body. */
int event_parse(const char *body, size_t len, bool form, struct event_batch *ret, char **reterr);

/* Free everything the batch holds, wiping secrets; NULL-safe. */
void event_batch_done(struct event_batch *b);

/* Compute ev->digest: hex SHA-256 over the endpoint name and the raw JSON
 * (the SecretKey is not part of it, so a redelivery after a secret rotation
 * is still recognised); for EVENT_MAIL led by the event time in
 * microseconds as 16 hex digits (0 without a DateTime), which the raw JSON
 * determines too, so a redelivery still has the same digest. */
void event_digest(struct event *ev, const char *endpoint);

/* Parse an ISO-8601 time (date, 'T' or ' ', time, 0-9 fractional digits,
 * 'Z' / +HH:MM / none for UTC) or an RFC-1123 time ("Tue, 14 Aug 2018
 * 16:35:37 GMT") into microseconds since the epoch. Returns 0 or -EINVAL. */
int event_parse_time(const char *s, size_t len, int64_t *ret_us);

/* The hour of t (a stored time, "YYYY-MM-DDTHH:MM:SS.ffffffZ") as
 * "YYYY-MM-DDTHH", and whether t is its first instant. */
bool event_hour_of(const char *t, char hour[14]);
/* The first instant of the hour after hour ("YYYY-MM-DDTHH"), stored form. */
void event_next_hour(const char *hour, char out[TIME_ISO_LEN]);

#endif
