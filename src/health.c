/* health: sending health per subaccount or mailing (see health.h). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "util.h"

const char *const health_kinds[HK_COUNT] = {
        [HK_SENT] = "sent", [HK_FAILED_PERMANENT] = "failed_permanent",
        [HK_FAILED_TEMPORARY] = "failed_temporary", [HK_FAILED_SUPPRESSED] = "failed_suppressed",
        [HK_ASYNC_BOUNCES] = "async_bounces", [HK_DEFERRED] = "deferred", [HK_COMPLAINTS] = "complaints",
        [HK_UNSUBSCRIBES] = "unsubscribes", [HK_OPENS] = "opens", [HK_CLICKS] = "clicks",
};

const char *const health_rates[HR_COUNT] = {
        "bounce_rate", "complaint_rate", "unsubscribe_rate", "open_rate", "click_rate",
};

const char *const health_flags[HF_COUNT] = {
        "complaint_rate_warn", "complaint_rate_max", "bounce_rate_max",
};

int
health_event_kind(const struct event *ev)
{
        const char *t = ev->type, *f = ev->str[EVS_FAILURE_TYPE];

        if (t == NULL)
                return -1;
        if (strcmp(t, "Sent") == 0)
                return HK_SENT;
        if (strcmp(t, "Deferred") == 0)
                return HK_DEFERRED;
        if (strcmp(t, "Complaint") == 0)
                return HK_COMPLAINTS;
        if (strcmp(t, "Unsubscribe") == 0)
                return HK_UNSUBSCRIBES;
        if (strcmp(t, "Failed") != 0 || f == NULL)
                return -1;
        if (strcmp(f, "Permanent") == 0)
                return HK_FAILED_PERMANENT;
        if (strcmp(f, "Temporary") == 0)
                return HK_FAILED_TEMPORARY;
        if (strcmp(f, "Suppressed") == 0)
                return HK_FAILED_SUPPRESSED;
        return -1;
}

int
health_kind_of(const char *name)
{
        int k;

        for (k = 0; name && k < HK_COUNT; k++)
                if (strcmp(name, health_kinds[k]) == 0)
                        return k;
        return -1;
}

const char *
health_flag_names(unsigned flags, char *buf, size_t size)
{
        size_t len = 0;
        int i;

        buf[0] = '\0';
        for (i = 0; i < HF_COUNT; i++)
                if (flags & (1u << i) && len < size)
                        len += (size_t) snprintf(buf + len, size - len, "%s%s", len ? " " : "", health_flags[i]);
        return buf;
}

/* ---- gathering ---- */

struct gather {
        struct health_report *r;
        bool by_mailing;
        int sign;               /* what a count adds: 1, or -1 to take it off */
        size_t *slot;           /* open addressing: index + 1 into r->rows, 0 free */
        size_t nslots;          /* a power of two, more than twice r->n */
};

static size_t
group_hash(int64_t server_id, const char *mailing_id)
{
        uint64_t h = (uint64_t) server_id * 0x9e3779b97f4a7c15u;

        for (; mailing_id && *mailing_id; mailing_id++)
                h = (h ^ (unsigned char) *mailing_id) * 0x100000001b3u;
        return (size_t) (h ^ (h >> 29));
}

static void
slots_grow(struct gather *g)
{
        size_t i, j;

        free(g->slot);
        g->nslots = g->nslots ? 2 * g->nslots : 64;
        g->slot = xcalloc(g->nslots, sizeof(*g->slot));
        for (i = 0; i < g->r->n; i++) {
                const struct health_row *w = &g->r->rows[i];

                for (j = group_hash(w->server_id, w->mailing_id); g->slot[j & (g->nslots - 1)]; j++)
                        ;
                g->slot[j & (g->nslots - 1)] = i + 1;
        }
}

/* The row of (server_id, mailing_id), made when new. */
static struct health_row *
row_of(struct gather *g, int64_t server_id, const char *mailing_id)
{
        struct health_report *r = g->r;
        size_t j;

        if (!g->by_mailing)
                mailing_id = NULL;
        if (2 * (r->n + 1) > g->nslots)
                slots_grow(g);
        for (j = group_hash(server_id, mailing_id);; j++) {
                size_t k = g->slot[j & (g->nslots - 1)];
                struct health_row *w;

                if (k == 0)
                        break;
                w = &r->rows[k - 1];
                if (w->server_id == server_id && (mailing_id == NULL || strcmp(w->mailing_id, mailing_id) == 0))
                        return w;
        }
        g->slot[j & (g->nslots - 1)] = r->n + 1;
        r->rows = xreallocarray(r->rows, r->n + 1, sizeof(*r->rows));
        memset(&r->rows[r->n], 0, sizeof(r->rows[0]));
        r->rows[r->n].server_id = server_id;
        r->rows[r->n].mailing_id = mailing_id ? xstrdup(mailing_id) : NULL;
        return &r->rows[r->n++];
}

/* sql prepared and bound: ?1 from, ?2 to, ?3 server_id (-1: every one);
 * NULL on error. */
static struct db_stmt *
range_stmt(struct db *db, const char *sql, const char *from, const char *to, int64_t server_id)
{
        struct db_stmt *st;

        if (db_prepare(db, sql, 0, &st) < 0)
                return NULL;
        db_bind_text(st, 1, from);
        db_bind_text(st, 2, to);
        db_bind_int(st, 3, server_id);
        return st;
}

/* Run sql (rows: server_id, mailing_id, kind, count) over [from, to). */
static int
gather_sql(struct db *db, struct gather *g, const char *sql, const char *from, const char *to, int64_t server_id)
{
        struct db_stmt *st = range_stmt(db, sql, from, to, server_id);
        int rc, k;

        if (st == NULL)
                return -EIO;
        while ((rc = db_step(st)) > 0) {
                const char *kind = db_text(st, 2), *mailing = db_text(st, 1);

                if ((k = health_kind_of(kind)) >= 0)
                        row_of(g, db_int(st, 0), mailing ? mailing : "")->n[k] += g->sign * db_int(st, 3);
        }
        db_finalize(st);
        return rc < 0 ? -EIO : 0;
}

#define SERVER_FILTER(col) " AND (CAST(?3 AS bigint) < 0 OR " col " = CAST(?3 AS bigint))"

/* Whole hours by subaccount: health_hours, a column per kind. */
static const char whole_servers_sql[] =
        "SELECT server_id, sum(sent), sum(failed_permanent), sum(failed_temporary), sum(failed_suppressed), "
        "sum(async_bounces), sum(deferred), sum(complaints), sum(unsubscribes), sum(opens), sum(clicks) "
        "FROM health_hours WHERE hour >= ?1 AND hour < ?2" SERVER_FILTER("server_id") " GROUP BY server_id";

static int
gather_servers(struct db *db, struct gather *g, const char *from, const char *to, int64_t server_id)
{
        struct db_stmt *st = range_stmt(db, whole_servers_sql, from, to, server_id);
        int rc, k;

        if (st == NULL)
                return -EIO;
        while ((rc = db_step(st)) > 0) {
                struct health_row *w = row_of(g, db_int(st, 0), NULL);

                for (k = 0; k < HK_COUNT; k++)
                        w->n[k] += g->sign * db_int(st, 1 + k);
        }
        db_finalize(st);
        return rc < 0 ? -EIO : 0;
}

/* Whole hours by mailing: the writer's counts, summed by gather_sql (its hash
 * does it in half the time of a GROUP BY's sort). */
static const char whole_sql[] =
        "SELECT server_id, mailing_id, kind, n FROM health_counts WHERE hour >= ?1 AND hour < ?2"
        SERVER_FILTER("server_id");

/* The part of an hour the range cuts: its events through the (type,
 * occurred_at) index (received_at for those without a DateTime), and the
 * messages whose first open, first click or async bounce is one of them. */
#define CUT_EVENTS(types, cols)                                                                         \
        "WITH e AS (SELECT " cols ", occurred_at AS t FROM events WHERE type IN " types                   \
        " AND occurred_at >= ?1 AND occurred_at < ?2 AND is_test = 0"                                   \
        " UNION ALL SELECT " cols ", received_at FROM events WHERE occurred_at IS NULL"                  \
        " AND received_at >= ?1 AND received_at < ?2 AND type IN " types " AND is_test = 0) "
static const char cut_events_sql[] =
        CUT_EVENTS("('Sent', 'Failed', 'Deferred', 'Complaint', 'Unsubscribe')",
                   "coalesce(server_id, 0) AS s, coalesce(mailing_id, '') AS g, " HEALTH_KIND_SQL " AS k")
        "SELECT s, g, k, count(*) FROM e WHERE k IS NOT NULL" SERVER_FILTER("s") " GROUP BY s, g, k";
static const char cut_messages_sql[] =
        CUT_EVENTS("('Open', 'Click', 'Failed')", "type, message")
        "SELECT m.server_id, coalesce(m.mailing_id, ''), "
        "       CASE e.type WHEN 'Open' THEN 'opens' WHEN 'Click' THEN 'clicks' ELSE 'async_bounces' END AS k, "
        "       count(DISTINCT m.id) FROM e JOIN messages m ON m.id = e.message "
        " WHERE m.is_test = 0" SERVER_FILTER("m.server_id")
        "   AND ((e.type = 'Open' AND m.opened_at = e.t) OR (e.type = 'Click' AND m.clicked_at = e.t)"
        "     OR (e.type = 'Failed' AND m.failed_at = e.t AND m.failed_at > m.sent_at"
        "         AND coalesce(m.failure_type, '') <> 'Suppressed'"
        "         AND (m.message_id IS NOT NULL OR m.mailing_id IS NOT NULL)))"
        " GROUP BY 1, 2, 3";

/* [from, to) of one hour counted from its events and messages. */
static int
gather_part(struct db *db, struct gather *g, const char *from, const char *to, int64_t server_id)
{
        if (strcmp(from, to) >= 0)
                return 0;
        if (gather_sql(db, g, cut_events_sql, from, to, server_id) < 0 ||
            gather_sql(db, g, cut_messages_sql, from, to, server_id) < 0)
                return -EIO;
        return 0;
}

/* How many events of [from, to) gather_part would read, up to limit: the
 * (type, occurred_at) index alone, no row. */
static int
part_size(struct db *db, const char *from, const char *to, int64_t limit, int64_t *n)
{
        static const char sql[] = "SELECT count(*) FROM (SELECT 1 FROM events WHERE type IN ('Sent', 'Failed', "
                                  "'Deferred', 'Complaint', 'Unsubscribe', 'Open', 'Click') AND occurred_at >= ?1 "
                                  "AND occurred_at < ?2 LIMIT CAST(?3 AS bigint)) AS p";
        struct db_stmt *st;
        int rc;

        *n = 0;
        if (strcmp(from, to) >= 0)
                return 0;
        if (db_prepare(db, sql, 0, &st) < 0)
                return -EIO;
        db_bind_text(st, 1, from);
        db_bind_text(st, 2, to);
        db_bind_int(st, 3, limit);
        if ((rc = db_step(st)) > 0)
                *n = db_int(st, 0);
        db_finalize(st);
        return rc < 0 ? -EIO : 0;
}

/* The part [from, to) of one hour that the range cuts: counted from its
 * events, or, when the rest of the hour holds fewer, as the hour's counts
 * less the rest counted from its events. The range that ends now cuts the
 * current hour, where the rest (the events dated after now) is next to
 * nothing however busy the hour. */
static int
gather_cut(struct db *db, struct gather *g, const char *from, const char *to, int64_t server_id)
{
        char hour[14], start[TIME_ISO_LEN], end[TIME_ISO_LEN], next[14];
        int64_t in, before, after;
        int r;

        event_hour_of(from, hour);
        snprintf(start, sizeof(start), "%s:00:00.000000Z", hour);
        event_next_hour(hour, end);
        /* The rest first: the part is counted only as far as it matters. */
        if (part_size(db, start, from, INT64_MAX, &before) < 0 || part_size(db, to, end, INT64_MAX, &after) < 0 ||
            part_size(db, from, to, before + after + 1, &in) < 0)
                return -EIO;
        if (in <= before + after)
                return gather_part(db, g, from, to, server_id);
        snprintf(next, sizeof(next), "%.13s", end);
        r = g->by_mailing ? gather_sql(db, g, whole_sql, hour, next, server_id)
                          : gather_servers(db, g, hour, next, server_id);
        g->sign = -1;
        if (r == 0)
                r = gather_part(db, g, start, from, server_id);
        if (r == 0)
                r = gather_part(db, g, to, end, server_id);
        g->sign = 1;
        return r;
}

/* ---- rates, flags, order ---- */

static void
judge(struct health_row *w, const struct health_conf *c)
{
        int64_t sent = w->n[HK_SENT];
        int64_t tried = sent + w->n[HK_FAILED_PERMANENT] + w->n[HK_FAILED_TEMPORARY] + w->n[HK_FAILED_SUPPRESSED];
        static const int over_sent[] = { HK_COMPLAINTS, HK_UNSUBSCRIBES, HK_OPENS, HK_CLICKS };
        int i;

        if ((w->has_rate[HR_BOUNCE] = tried > 0))
                w->rate[HR_BOUNCE] = (double) w->n[HK_FAILED_PERMANENT] / (double) tried;
        for (i = 0; i < 4; i++)
                if ((w->has_rate[HR_COMPLAINT + i] = sent > 0))
                        w->rate[HR_COMPLAINT + i] = (double) w->n[over_sent[i]] / (double) sent;
        w->flags = 0;
        if (sent < (int64_t) c->min_sent)
                return;
        if (w->has_rate[HR_COMPLAINT] && w->rate[HR_COMPLAINT] >= c->complaint_rate_warn)
                w->flags |= 1u << HF_COMPLAINT_WARN;
        if (w->has_rate[HR_COMPLAINT] && w->rate[HR_COMPLAINT] >= c->complaint_rate_max)
                w->flags |= 1u << HF_COMPLAINT_WARN | 1u << HF_COMPLAINT_MAX;
        if (w->has_rate[HR_BOUNCE] && w->rate[HR_BOUNCE] >= c->bounce_rate_max)
                w->flags |= 1u << HF_BOUNCE_MAX;
}

static int
popcount(unsigned v)
{
        return __builtin_popcount(v);
}

static int
cmp_rate(const struct health_row *a, const struct health_row *b, int r)
{
        double x = a->has_rate[r] ? a->rate[r] : -1, y = b->has_rate[r] ? b->rate[r] : -1;

        return (x < y) - (x > y);
}

static int
row_cmp(const void *pa, const void *pb)
{
        const struct health_row *a = pa, *b = pb;
        int c = popcount(b->flags) - popcount(a->flags);

        if (c == 0)
                c = cmp_rate(a, b, HR_COMPLAINT);
        if (c == 0)
                c = cmp_rate(a, b, HR_BOUNCE);
        if (c == 0)
                c = (a->server_id > b->server_id) - (a->server_id < b->server_id);
        if (c == 0 && a->mailing_id && b->mailing_id)
                c = strcmp(a->mailing_id, b->mailing_id);
        return c;
}

int
health_report(struct db *db, const char *since, const char *until, bool by_mailing, int64_t server_id,
              const struct health_conf *c, struct health_report *ret)
{
        struct gather g = { .r = ret, .by_mailing = by_mailing, .sign = 1 };
        char hs[14], he[14], edge[TIME_ISO_LEN], cut_end[TIME_ISO_LEN];
        size_t i, k;
        int r = 0;

        memset(ret, 0, sizeof(*ret));
        if (strcmp(since, until) >= 0)
                return 0;
        /* One snapshot for the three parts. */
        if (db_exec(db, "BEGIN") < 0)
                return -EIO;
        if (!event_hour_of(since, hs)) {
                event_next_hour(hs, edge);
                snprintf(cut_end, sizeof(cut_end), "%s", strcmp(edge, until) < 0 ? edge : until);
                r = gather_cut(db, &g, since, cut_end, server_id);
                snprintf(hs, sizeof(hs), "%.13s", edge);
        }
        if (r == 0 && !event_hour_of(until, he) && strcmp(he, hs) >= 0) {
                snprintf(edge, sizeof(edge), "%s:00:00.000000Z", he);
                r = gather_cut(db, &g, strcmp(edge, since) > 0 ? edge : since, until, server_id);
        }
        if (r == 0 && strcmp(hs, he) < 0)
                r = by_mailing ? gather_sql(db, &g, whole_sql, hs, he, server_id)
                               : gather_servers(db, &g, hs, he, server_id);
        free(g.slot);
        if (r < 0) {
                char *err = xstrdup(db_errmsg(db));

                (void) db_exec(db, "ROLLBACK");
                db_set_error(db, err);
                free(err);
                health_report_done(ret);
                return -EIO;
        }
        (void) db_exec(db, "COMMIT");
        /* Groups whose counts all cancelled out (retention) are not shown. */
        for (i = k = 0; i < ret->n; i++) {
                int j;
                bool any = false;

                for (j = 0; j < HK_COUNT; j++)
                        any |= ret->rows[i].n[j] != 0;
                if (any) {
                        judge(&ret->rows[i], c);
                        ret->rows[k++] = ret->rows[i];
                } else {
                        free(ret->rows[i].mailing_id);
                }
        }
        ret->n = k;
        if (ret->n > 1)
                qsort(ret->rows, ret->n, sizeof(*ret->rows), row_cmp);
        return 0;
}

void
health_report_done(struct health_report *r)
{
        size_t i;

        for (i = 0; i < r->n; i++)
                free(r->rows[i].mailing_id);
        free(r->rows);
        memset(r, 0, sizeof(*r));
}
