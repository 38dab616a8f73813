/* health: sending health per subaccount (ServerId) or mailing — what
 * slhookctl health prints, what the daemon watches ([health]) and what
 * /dashboard shows.
 *
 * The figures come from health_counts (schema 8), which the writer keeps per
 * (hour of event time, ServerId, MailingId, kind) in the transaction that
 * stores each event, and health_hours (schema 9), the same summed per (hour,
 * ServerId), which a report by subaccount reads. The parts of the range's
 * first and last hour that the range cuts are counted from events and
 * messages (or as the hour less the rest of it, when the rest holds fewer
 * events), so the cost follows the number of subaccounts and hours, not the
 * traffic. Test events are never counted.
 *
 * Definitions (DESIGN.md section 10): sent, failed_*, deferred, complaints,
 * unsubscribes count events; opens and clicks count messages (at their first
 * open or click), async_bounces the messages of the async_bounces view (at
 * the time they failed). bounce_rate = failed_permanent / (sent + failed_*);
 * the other rates divide by sent; a rate with nothing to divide is NULL. A
 * rate at or above its threshold is crossed; crossing complaint_rate_max
 * also names complaint_rate_warn; below min_sent sent, no rate is flagged. */
#ifndef SLHOOKD_HEALTH_H
#define SLHOOKD_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "event.h"

enum health_kind {
        HK_SENT, HK_FAILED_PERMANENT, HK_FAILED_TEMPORARY, HK_FAILED_SUPPRESSED, HK_ASYNC_BOUNCES,
        HK_DEFERRED, HK_COMPLAINTS, HK_UNSUBSCRIBES, HK_OPENS, HK_CLICKS,
        HK_COUNT
};

/* The kinds' names: health_counts.kind, and the columns of slhookctl health. */
extern const char *const health_kinds[HK_COUNT];

/* The kind an event row counts as (its columns type and failure_type), in SQL. */
#define HEALTH_KIND_SQL                                                                                   \
        "CASE type WHEN 'Sent' THEN 'sent' WHEN 'Deferred' THEN 'deferred' WHEN 'Complaint' THEN "         \
        "'complaints' WHEN 'Unsubscribe' THEN 'unsubscribes' WHEN 'Failed' THEN CASE failure_type WHEN "   \
        "'Permanent' THEN 'failed_permanent' WHEN 'Temporary' THEN 'failed_temporary' WHEN 'Suppressed' " \
        "THEN 'failed_suppressed' END END"

/* health_hours' columns of counts, in enum order, and an upsert's SET of them. */
#define HEALTH_HOURS_COLUMNS                                                                            \
        "sent, failed_permanent, failed_temporary, failed_suppressed, async_bounces, deferred, "          \
        "complaints, unsubscribes, opens, clicks"
#define HEALTH_HOURS_ADD                                                                                \
        "sent = health_hours.sent + excluded.sent, "                                                      \
        "failed_permanent = health_hours.failed_permanent + excluded.failed_permanent, "                  \
        "failed_temporary = health_hours.failed_temporary + excluded.failed_temporary, "                  \
        "failed_suppressed = health_hours.failed_suppressed + excluded.failed_suppressed, "               \
        "async_bounces = health_hours.async_bounces + excluded.async_bounces, "                           \
        "deferred = health_hours.deferred + excluded.deferred, "                                          \
        "complaints = health_hours.complaints + excluded.complaints, "                                    \
        "unsubscribes = health_hours.unsubscribes + excluded.unsubscribes, "                              \
        "opens = health_hours.opens + excluded.opens, clicks = health_hours.clicks + excluded.clicks"

/* The same for a parsed event: an enum health_kind, or -1 (not counted). */
int health_event_kind(const struct event *ev);

/* The kind named name, or -1. */
int health_kind_of(const char *name);

enum health_rate { HR_BOUNCE, HR_COMPLAINT, HR_UNSUBSCRIBE, HR_OPEN, HR_CLICK, HR_COUNT };
extern const char *const health_rates[HR_COUNT];       /* bounce_rate, ... */

enum health_flag { HF_COMPLAINT_WARN, HF_COMPLAINT_MAX, HF_BOUNCE_MAX, HF_COUNT };
extern const char *const health_flags[HF_COUNT];       /* complaint_rate_warn, ... */

/* [health] */
struct health_conf {
        double complaint_rate_warn;
        double complaint_rate_max;
        double bounce_rate_max;
        unsigned min_sent;
        unsigned window;        /* seconds */
        unsigned interval;      /* seconds */
};

#define HEALTH_CONF_DEFAULT \
        { .complaint_rate_warn = 0.001, .complaint_rate_max = 0.003, .bounce_rate_max = 0.02, \
          .min_sent = 100, .window = 7 * 86400, .interval = 300 }

struct health_row {
        int64_t server_id;
        char *mailing_id;               /* --by mailing only ("" none); else NULL */
        int64_t n[HK_COUNT];
        double rate[HR_COUNT];
        bool has_rate[HR_COUNT];        /* false: NULL, nothing to divide by */
        unsigned flags;                 /* 1u << enum health_flag */
};

struct health_report {
        struct health_row *rows;        /* worst first: more flags, then higher rates, then id */
        size_t n;
};

/* The figures of [since, until) (UTC ISO-8601 as the database keeps them),
 * by server (by_mailing false) or by (server, mailing), of one ServerId
 * when server_id >= 0, flagged by c. 0, or -EIO with db_errmsg(db). One read
 * transaction of its own. */
int health_report(struct db *db, const char *since, const char *until, bool by_mailing, int64_t server_id,
                  const struct health_conf *c, struct health_report *ret);
void health_report_done(struct health_report *r);

/* The space-separated names of flags into buf ("" none). */
const char *health_flag_names(unsigned flags, char *buf, size_t size);

#endif
