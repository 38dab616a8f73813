/* query: the read side of the store — slhookctl's questions as SQL over a
 * read-only connection (db.h: SQLite or PostgreSQL). Readers never block the
 * daemon's writers (SQLite's WAL, PostgreSQL's MVCC) and keep each read
 * transaction to one statement. */
#ifndef SLHOOKD_QUERY_H
#define SLHOOKD_QUERY_H

#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "health.h"
#include "out.h"
#include "util.h"

struct query;

struct query_args {
        const char *type;               /* canonical type (see query_type) */
        const char *address;            /* case-insensitive */
        const char *message_id;
        const char *mailing_id;
        char since[TIME_ISO_LEN];       /* "" = open; event time unless said otherwise */
        char until[TIME_ISO_LEN];
        long limit;                     /* rows; 0 = all */
        bool async;                     /* bounces: async_bounces instead of Failed events */
        char by;                        /* stats: 0, 'h' (hour) or 'd' (day); health: 0 or 's' (server),
                                         * 'm' (mailing) */
        int64_t server_id;              /* health --server-id */
        bool has_server_id;
        const struct health_conf *health;       /* health: thresholds and window (NULL: the defaults) */
        int64_t id;                     /* quarantine show */
        /* query_follow only: any of these (NULL: every one), and no test events */
        char *const *types;
        size_t n_types;
        char *const *endpoints;
        size_t n_endpoints;
        char *const *server_ids;        /* decimal */
        size_t n_server_ids;
        bool no_tests;
};

/* Open the database read-only and check its schema version. Returns 0 or a
 * negative errno with *reterr an allocated one-line message. */
int query_open(const struct db_conf *c, struct query **ret, char **reterr);
struct query *query_close(struct query *q);

/* Each writes the columns and rows of its answer to o. Returns the number of
 * rows written, or a negative errno with *reterr set. *more is set when the
 * limit cut rows off. */
int query_events(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr);
int query_bounces(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr);
int query_timeline(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr);
int query_stats(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr);
/* Sending health per ServerId (or mailing) over [since, until) (default:
 * the window ending now), worst first (see health.h). */
int query_health(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr);
int query_suppressions(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr);
int query_quarantine_list(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr);
/* Each [forward NAME]'s cursor, how far behind it is (events stored after
 * it, seconds since the first of them arrived), last success and error. */
int query_forward_status(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr);
int query_status(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr);
/* The database: its name, backend, schema version, size, rows of events,
 * messages and quarantine, newest arrival. */
int query_info(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr);
int query_quarantine_show(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr);

/* Following the events as they commit: where the reading stands. */
struct query_follow {
        int64_t cursor;         /* every event with an id up to it has been passed */
        /* PostgreSQL: a gap in the ids after cursor, below gap_before, and the
         * transactions that may still fill it (xid8[] as text) */
        int64_t gap_before;
        char *gap_xids;
        bool gap_done;          /* they have all ended */
};

/* The events after f->cursor that match a (its type, address, message,
 * mailing and time filters), in id order, at most max (> 0) of them, as
 * query_events writes them; f->cursor moves past every event read, shown or
 * not, and never past an id another writer may still commit (PostgreSQL).
 * Returns the rows written (max: call again at once), or a negative errno. */
int query_follow(struct query *q, const struct query_args *a, struct query_follow *f, long max, struct out *o,
                 char **reterr);
/* Where to start to show the newest `newest` events that match a (0: from
 * the first). */
int query_follow_start(struct query *q, const struct query_args *a, long newest, int64_t *cursor, char **reterr);
void query_follow_done(struct query_follow *f);
/* The highest event id (0: none). 0 or -EIO. */
int query_newest_id(struct query *q, int64_t *ret);

/* TIME for --since/--until/--before: ISO-8601 ("2026-01-31",
 * "2026-01-31 10:00", "2026-01-31T10:00:00Z", with an offset or fraction),
 * now, today, yesterday, tomorrow, @UNIX, or relative to now_us ("30s",
 * "90m", "2h", "7d", "2w"). A time without Z or an offset, and the
 * midnights, are UTC, or in the local zone (TZ) when local. Writes the UTC
 * form the database uses. */
int query_parse_time(const char *s, int64_t now_us, bool local, char out[TIME_ISO_LEN]);

/* The stored type for a --type argument, matched case-insensitively
 * ("delivered" is "Sent"); unknown names are returned as given (unknown wire
 * types are stored as sent). NULL for "Tracking", which is never stored. */
const char *query_type(const char *s);

#endif
