/* corr: which message an event belongs to, and how an event moves that
 * message's state (the messages table). Pure: the store loads a row, applies
 * the event here and writes the row back in the event's transaction.
 *
 * Key: (ServerId, MessageId, Address); when MessageId is empty,
 * (ServerId, MailingId, Address); with neither id, (ServerId, Address) holds
 * them, never correlated. Without an Address, no message. Every milestone is
 * placed by event time, so applying a message's events in any order gives
 * the same row. */
#ifndef SLHOOKD_CORR_H
#define SLHOOKD_CORR_H

#include <stdbool.h>
#include <stdint.h>

#include "event.h"
#include "util.h"

/* Time columns of messages, in column order; "" in struct corr_msg is NULL. */
enum corr_time {
        CT_FIRST, CT_LAST, CT_UPDATED, CT_QUEUED, CT_DEFERRED, CT_SENT, CT_FAILED,
        CT_COMPLAINED, CT_OPENED, CT_CLICKED, CT_UNSUBSCRIBED,
        CT_COUNT
};

/* Counter columns of messages, in column order. */
enum corr_count { CC_EVENTS, CC_DEFERRED, CC_OPENS, CC_CLICKS, CC_COUNT };

extern const char *const corr_time_columns[CT_COUNT];
extern const char *const corr_count_columns[CC_COUNT];

struct corr_key {
        int64_t server_id;              /* 0 when the event has none */
        const char *message_id;         /* NULL: keyed by mailing_id */
        const char *mailing_id;         /* NULL with message_id NULL: neither id */
        const char *address;
};

/* One messages row. Strings are borrowed from whoever filled them (the
 * database row being read, or the event being applied). */
struct corr_msg {
        const char *mailing_id;
        const char *state;              /* a static string from corr_state(), or NULL */
        char t[CT_COUNT][TIME_ISO_LEN];
        int64_t n[CC_COUNT];
        const char *failure_type;
        const char *reason;
        int64_t failure_code;
        bool has_failure_code;
};

/* The message ev belongs to; false when it belongs to none. */
bool corr_key(const struct event *ev, struct corr_key *ret);

/* The static state name equal to s (case-sensitive), or NULL. */
const char *corr_state(const char *s);

/* Start an empty row (a message seen for the first time). */
void corr_init(struct corr_msg *m);

/* Apply one newly stored event (never a redelivery) received at received_at. */
void corr_apply(struct corr_msg *m, const struct event *ev, const char *received_at);

#endif
