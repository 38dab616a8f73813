/* query: slhookctl's read-only questions. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "db.h"
#include "event.h"
#include "query.h"
#include "store.h"

struct query {
        struct db *db;
};

int
query_open(const struct db_conf *c, struct query **ret, char **reterr)
{
        struct query *q = xcalloc(1, sizeof(*q));
        int v, latest = store_schema_version();
        const char *name;

        if (db_open(c, DB_READONLY, &q->db, reterr) < 0) {
                free(q);
                return -EIO;
        }
        name = db_name(q->db);
        if ((v = db_schema_version(q->db)) < 0) {
                *reterr = xasprintf("%s: cannot read the database: %s", name, db_errmsg(q->db));
                goto fail;
        }
        if (v == 0) {
                *reterr = xasprintf("%s: not a slhookd database (no schema version)", name);
                goto fail;
        }
        if (v < latest) {
                *reterr = xasprintf("%s: schema version %d is older than this slhookctl's (%d); "
                                    "start slhookd once to upgrade it", name, v, latest);
                goto fail;
        }
        if (v > latest) {
                *reterr = xasprintf("%s: schema version %d is newer than this slhookctl knows (%d)",
                                    name, v, latest);
                goto fail;
        }
        *ret = q;
        return 0;
fail:
        query_close(q);
        return -EIO;
}

struct query *
query_close(struct query *q)
{
        if (q) {
                db_close(q->db);
                free(q);
        }
        return NULL;
}

/* ---- building a statement: SQL text plus its text parameters ---- */

struct stmt {
        struct buf sql;
        const char *params[256];
        int n;
        bool where;
        int64_t last_id;        /* run: column 0 of the last row written */
};

/* Add a condition to the WHERE clause. */
static void
where(struct stmt *s, const char *sql)
{
        buf_printf(&s->sql, " %s %s", s->where ? "AND" : "WHERE", sql);
        s->where = true;
}

/* col IN (the n values), when there are any. */
static void
cond_in(struct stmt *s, const char *col, char *const *v, size_t n, bool integer)
{
        size_t i;

        if (n == 0 || s->n + n > sizeof(s->params) / sizeof(s->params[0]))
                return;         /* the configuration keeps lists short: cfg.c */
        where(s, col);
        buf_puts(&s->sql, " IN (");
        for (i = 0; i < n; i++) {
                buf_puts(&s->sql, i ? ", " : "");
                buf_puts(&s->sql, integer ? "CAST(? AS bigint)" : "?");
                s->params[s->n++] = v[i];
        }
        buf_puts(&s->sql, ")");
}

/* Add a condition with one parameter, when the parameter is given. */
static void
cond(struct stmt *s, const char *sql, const char *param)
{
        if (param == NULL || s->n == (int) (sizeof(s->params) / sizeof(s->params[0])))
                return;
        where(s, sql);
        s->params[s->n++] = param;
}

static int
failed(struct query *q, char **reterr)
{
        *reterr = xasprintf("%s: query failed: %s", db_name(q->db), db_errmsg(q->db));
        return -EIO;
}

/* Run s (a limit of 0 is none), writing its rows under cols. The SQL names
 * its columns exactly as cols does: a mismatch is a bug, reported as one. */
static int
run(struct query *q, struct stmt *s, const struct out_col *cols, size_t ncols, long limit,
    struct out *o, bool *more, char **reterr)
{
        struct db_stmt *st = NULL;
        const char *vals[64];
        bool num[64];
        int rc, i, rows = 0;

        *more = false;
        if (limit > 0)
                buf_printf(&s->sql, " LIMIT %ld", limit + 1);
        rc = db_prepare(q->db, s->sql.data, DB_STREAM, &st);
        buf_done(&s->sql);
        if (rc < 0)
                return failed(q, reterr);
        for (i = 0; i < s->n; i++)
                db_bind_text(st, i + 1, s->params[i]);
        /* The columns are known once the statement has run. */
        if ((rc = db_step(st)) < 0) {
                db_finalize(st);
                return failed(q, reterr);
        }
        for (i = 0; i < db_columns(st) && (size_t) i < ncols; i++)
                if (strcmp(db_column_name(st, i), cols[i].name) != 0)
                        break;
        if ((size_t) db_columns(st) != ncols || (size_t) i != ncols || ncols > 64) {
                *reterr = xasprintf("internal error: query columns do not match (%s)", cols[0].name);
                db_finalize(st);
                return -EINVAL;
        }
        out_columns(o, cols, ncols);
        for (; rc > 0; rc = db_step(st)) {
                if (limit > 0 && rows == limit) {
                        *more = true;
                        break;
                }
                for (i = 0; i < (int) ncols; i++) {
                        vals[i] = db_text(st, i);
                        num[i] = db_numeric(st, i);
                }
                s->last_id = db_int(st, 0);
                out_row(o, vals, num);
                rows++;
        }
        if (rc < 0) {
                db_finalize(st);
                return failed(q, reterr);
        }
        db_finalize(st);
        return rows;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* What an event says in one line, for tables. */
#define DETAIL_SQL \
        "CASE type " \
        "WHEN 'Failed' THEN trim(coalesce(failure_type || ' ', '') || coalesce(failure_code || ' ', '') || " \
        "                        coalesce(reason, '')) " \
        "WHEN 'Deferred' THEN trim(coalesce(deferral_code || ' ', '') || coalesce(reason, '')) " \
        "WHEN 'Sent' THEN response WHEN 'Click' THEN url WHEN 'Complaint' THEN fbl_type END AS detail"

static const struct out_col event_cols[] = {
        { "id", true, false }, { "occurred_at", true, false }, { "type", true, false }, { "address", true, true },
        { "message_id", true, false }, { "mailing_id", false, false }, { "server_id", false, false }, { "detail", true, true },
        { "received_at", false, false }, { "endpoint", false, false }, { "wire_type", false, false }, { "subaccount_id", false, false },
        { "ip_pool_id", false, false }, { "from_address", false, false }, { "subject", false, true }, { "message_size", false, false },
        { "failure_type", false, false }, { "failure_code", false, false }, { "deferral_code", false, false }, { "reason", false, true },
        { "response", false, true }, { "local_ip", false, false }, { "remote_mta", false, false }, { "bounce_status", false, false },
        { "diagnostic_code", false, true }, { "tracking_type", false, false }, { "user_agent", false, true },
        { "client_ip", false, false }, { "url", false, true }, { "tag", false, false }, { "fbl_type", false, false },
        { "fbl_from", false, false }, { "fbl_to", false, false }, { "length", false, false }, { "date_time", false, false },
        { "meta", false, false }, { "tags", false, false }, { "is_test", false, false }, { "peer", false, false },
        { "raw", false, true },
};

static void
event_select(struct stmt *s)
{
        buf_puts(&s->sql, "SELECT id, occurred_at, type, address, message_id, mailing_id, server_id, "
                 DETAIL_SQL ", received_at, endpoint, wire_type, subaccount_id, ip_pool_id, from_address, "
                 "subject, message_size, failure_type, failure_code, deferral_code, reason, response, "
                 "local_ip, remote_mta, bounce_status, diagnostic_code, tracking_type, user_agent, "
                 "client_ip, url, tag, fbl_type, fbl_from, fbl_to, length, date_time, meta, tags, "
                 "is_test, peer, raw FROM events");
}

/* --since/--until on column col. */
static void
range(struct stmt *s, const char *col, const struct query_args *a)
{
        char sql[64];

        if (a->since[0]) {
                snprintf(sql, sizeof(sql), "%s >= ?", col);
                cond(s, sql, a->since);
        }
        if (a->until[0]) {
                snprintf(sql, sizeof(sql), "%s < ?", col);
                cond(s, sql, a->until);
        }
}

/* Filters on events go through messages for the address and the message id
 * (events has no index of either: see sql/schema.sql); on messages and its
 * views they apply directly. */
static void
common_filters(struct stmt *s, const struct query_args *a, const char *time_col, bool events)
{
        if (events) {
                cond(s, "message IN (SELECT id FROM messages WHERE address = ?)", a->address);
                cond(s, "message IN (SELECT id FROM messages WHERE message_id = ?)", a->message_id);
        } else {
                cond(s, "address = ?", a->address);
                cond(s, "message_id = ?", a->message_id);
        }
        cond(s, "mailing_id = ?", a->mailing_id);
        range(s, time_col, a);
}

/* The types events has, by a skip scan of the (type, occurred_at) index:
 * up to max of them, allocated into types[]. Returns how many, max + 1 when
 * there are more, or a negative errno with *reterr set. */
static int
event_types(struct query *q, char *types[], int max, char **reterr)
{
        static const char sql[] =
                "WITH RECURSIVE t(type) AS ("
                " SELECT min(type) FROM events"
                " UNION ALL SELECT (SELECT min(type) FROM events WHERE type > t.type) FROM t WHERE t.type IS NOT NULL)"
                " SELECT type FROM t WHERE type IS NOT NULL";
        struct db_stmt *st = NULL;
        int n = 0, rc;

        if (db_prepare(q->db, sql, DB_STREAM, &st) < 0)
                return failed(q, reterr);
        while ((rc = db_step(st)) > 0) {
                if (n == max) {
                        n++;
                        break;
                }
                types[n++] = xstrdup(db_text(st, 0));
        }
        db_finalize(st);
        if (rc < 0) {
                while (n > 0)
                        free(types[--n]);
                return failed(q, reterr);
        }
        return n;
}

/* Newest first; events of the same time in digest order, which is the order
 * of the index (type, occurred_at, digest) that also keeps digests unique:
 * so no time-range query sorts, however many events share a time. */
#define EVENTS_ORDER " ORDER BY occurred_at DESC NULLS LAST, digest DESC"

int
query_events(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr)
{
        struct stmt s = { 0 };
        char *types[16];
        int n = 0, i, r;

        /* Newest first with nothing narrower than a time range: events has
         * no index on occurred_at alone (events arrive seconds out of order,
         * so each would land on a random page of it: bench/README.md). Each
         * type's newest ids come from (type, occurred_at), merged here. */
        if (!a->type && !a->address && !a->message_id && !a->mailing_id &&
            (n = event_types(q, types, (int) N(types), reterr)) < 0)
                return n;
        if (n == 0 || n > (int) N(types)) {
                /* No events, or more types than branches: one plain scan. */
                for (i = 0; i < n && i < (int) N(types); i++)
                        free(types[i]);
                event_select(&s);
                cond(&s, "type = ?", a->type);
                common_filters(&s, a, "occurred_at", true);
                buf_puts(&s.sql, EVENTS_ORDER);
                return run(q, &s, event_cols, N(event_cols), a->limit, o, more, reterr);
        }
        /* The ids from the index alone, then only their rows. */
        event_select(&s);
        buf_puts(&s.sql, " WHERE id IN (SELECT id FROM (");
        for (i = 0; i < n; i++) {
                buf_printf(&s.sql, "%sSELECT * FROM (SELECT id, occurred_at, digest FROM events", i ? " UNION ALL " : "");
                s.where = false;
                cond(&s, "type = ?", types[i]);
                range(&s, "occurred_at", a);
                buf_puts(&s.sql, EVENTS_ORDER);
                if (a->limit > 0)
                        buf_printf(&s.sql, " LIMIT %ld", a->limit + 1);
                buf_printf(&s.sql, ") AS t%d", i);
        }
        buf_puts(&s.sql, ") AS merged");
        if (a->limit > 0)
                buf_printf(&s.sql, EVENTS_ORDER " LIMIT %ld", a->limit + 1);
        buf_puts(&s.sql, ")" EVENTS_ORDER);
        r = run(q, &s, event_cols, N(event_cols), a->limit, o, more, reterr);
        for (i = 0; i < n; i++)
                free(types[i]);
        return r;
}

/* ---- following: the events after an id, in id order, as they commit ---- */

/* The highest id up to which the ids are final: every event with an id up
 * to it that will ever be visible is visible now. On SQLite, whose one
 * writer commits its ids in order, the highest id. On PostgreSQL, where
 * several writers take ids from one sequence and commit in any order, the
 * end of the run of ids after the cursor that has no gap: a missing id
 * belongs to a transaction still running (or to one rolled back). Such a
 * gap is passed only once every transaction that may fill it has ended:
 * those of this database running when the gap was seen (slhookd's writers
 * take their xid before any event id: db_pg.c, so one that holds an id
 * shows its xid in pg_stat_activity). */
static int
follow_horizon(struct query *q, struct query_follow *f, int64_t *horizon, char **reterr)
{
        /* The xids running in this database now (pg_stat_activity's are
         * 32 bits: widened against this session's own), not the whole
         * cluster's: a long transaction of another database must not hold
         * the events back. */
        static const char gap_sql[] =
                "SELECT coalesce(array_agg((t.x::text::bigint - ((t.x::text::bigint - "
                "a.backend_xid::text::bigint) & 4294967295))::text::xid8), '{}')::text "
                "FROM (SELECT pg_current_xact_id() AS x) AS t, pg_stat_activity AS a "
                "WHERE a.datname = current_database() AND a.backend_xid IS NOT NULL AND a.pid <> pg_backend_pid()";
        struct db_stmt *st = NULL;
        char c[24];
        int64_t next, id;
        int rc;

        if (db_backend(q->db) == DB_SQLITE) {
                if (db_prepare(q->db, "SELECT coalesce(max(id), 0) FROM events", 0, &st) < 0 || db_step(st) < 0) {
                        db_finalize(st);
                        return failed(q, reterr);
                }
                *horizon = db_int(st, 0);
                db_finalize(st);
                return 0;
        }
        /* Inside the caller's REPEATABLE READ transaction: the snapshot the
         * rows are read with. */
        snprintf(c, sizeof(c), "%lld", (long long) f->cursor);
        if (db_prepare(q->db, "SELECT id FROM events WHERE id > ?1::bigint ORDER BY id LIMIT 10000", DB_STREAM,
                       &st) < 0)
                return failed(q, reterr);
        db_bind_text(st, 1, c);
        *horizon = f->cursor;
        next = f->cursor + 1;
        while ((rc = db_step(st)) > 0) {
                id = db_int(st, 0);
                if (id != next && !(f->gap_done && id <= f->gap_before))
                        break;
                *horizon = id;
                next = id + 1;
        }
        db_finalize(st);
        if (rc < 0)
                return failed(q, reterr);
        if (rc == 0 || (f->gap_before == id && f->gap_xids))
                return 0;       /* no gap, or the one already waited for */
        /* A new gap, below id: who may still fill it. */
        free(f->gap_xids);
        f->gap_xids = NULL;
        f->gap_done = false;
        f->gap_before = id;
        if (db_prepare(q->db, gap_sql, 0, &st) < 0 || db_step(st) <= 0) {
                db_finalize(st);
                return failed(q, reterr);
        }
        f->gap_xids = xstrdup(db_text(st, 0));
        db_finalize(st);
        return 0;
}

/* PostgreSQL, before the snapshot is taken: whether the transactions that
 * could fill the gap have all ended (then what they committed is in the
 * next snapshot, and the ids still missing never will be). */
static int
follow_gap_check(struct query *q, struct query_follow *f, char **reterr)
{
        struct db_stmt *st = NULL;

        if (f->gap_xids == NULL || f->gap_done)
                return 0;
        if (db_prepare(q->db, "SELECT coalesce(bool_and(pg_xact_status(x) IS DISTINCT FROM 'in progress'), true) "
                       "FROM unnest(?1::xid8[]) AS x", 0, &st) < 0)
                return failed(q, reterr);
        db_bind_text(st, 1, f->gap_xids);
        if (db_step(st) <= 0) {
                db_finalize(st);
                return failed(q, reterr);
        }
        f->gap_done = strcmp(db_text(st, 0), "t") == 0 || strcmp(db_text(st, 0), "1") == 0;
        db_finalize(st);
        return 0;
}

/* One read: the rows after the cursor up to the horizon. */
static int
follow_pass(struct query *q, const struct query_args *a, struct query_follow *f, long max, struct out *o,
            char **reterr)
{
        struct stmt s = { 0 };
        char c[24], h[24];
        int64_t horizon;
        bool pg = db_backend(q->db) == DB_POSTGRESQL, more;
        int r;

        if (pg && (follow_gap_check(q, f, reterr) < 0 ||
                   (db_exec(q->db, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") < 0 && failed(q, reterr))))
                return -EIO;
        if ((r = follow_horizon(q, f, &horizon, reterr)) < 0)
                goto out;
        snprintf(c, sizeof(c), "%lld", (long long) f->cursor);
        snprintf(h, sizeof(h), "%lld", (long long) horizon);
        event_select(&s);
        cond(&s, pg ? "id > CAST(? AS bigint)" : "id > CAST(? AS integer)", c);
        cond(&s, pg ? "id <= CAST(? AS bigint)" : "id <= CAST(? AS integer)", h);
        cond(&s, "type = ?", a->type);
        cond_in(&s, "type", a->types, a->n_types, false);
        cond_in(&s, "endpoint", a->endpoints, a->n_endpoints, false);
        cond_in(&s, "server_id", a->server_ids, a->n_server_ids, true);
        if (a->no_tests)
                where(&s, "is_test = 0");
        common_filters(&s, a, "occurred_at", true);
        buf_puts(&s.sql, " ORDER BY id");
        if ((r = run(q, &s, event_cols, N(event_cols), max, o, &more, reterr)) < 0)
                goto out;
        f->cursor = more ? s.last_id : horizon;
        if (f->gap_before && f->cursor >= f->gap_before) {
                free(f->gap_xids);
                f->gap_xids = NULL;
                f->gap_before = 0;
                f->gap_done = false;
        }
out:
        if (pg && db_exec(q->db, "COMMIT") < 0 && r >= 0)
                r = failed(q, reterr);
        return r;
}

int
query_follow(struct query *q, const struct query_args *a, struct query_follow *f, long max, struct out *o,
             char **reterr)
{
        int r = follow_pass(q, a, f, max, o, reterr), r2;

        /* Stopped at a gap just found: its transactions may have ended
         * already (a rolled-back one leaves a gap for good). */
        if (r < 0 || r == max || f->gap_xids == NULL || f->gap_done)
                return r;
        if (follow_gap_check(q, f, reterr) < 0)
                return -EIO;
        if (!f->gap_done || (r2 = follow_pass(q, a, f, max - r, o, reterr)) < 0)
                return f->gap_done ? -EIO : r;
        return r + r2;
}

int
query_follow_start(struct query *q, const struct query_args *a, long newest, int64_t *cursor, char **reterr)
{
        struct stmt s = { 0 };
        struct db_stmt *st = NULL;
        char n[24];
        int i, rc;

        *cursor = 0;
        if (newest <= 0)
                return 0;
        buf_puts(&s.sql, "SELECT coalesce(min(id) - 1, 0) FROM (SELECT id FROM events");
        cond(&s, "type = ?", a->type);
        common_filters(&s, a, "occurred_at", true);
        snprintf(n, sizeof(n), "%ld", newest);
        buf_printf(&s.sql, " ORDER BY id DESC LIMIT %s) AS t", n);
        rc = db_prepare(q->db, s.sql.data, 0, &st);
        buf_done(&s.sql);
        if (rc < 0)
                return failed(q, reterr);
        for (i = 0; i < s.n; i++)
                db_bind_text(st, i + 1, s.params[i]);
        if (db_step(st) <= 0) {
                db_finalize(st);
                return failed(q, reterr);
        }
        *cursor = db_int(st, 0);
        db_finalize(st);
        return 0;
}

int
query_newest_id(struct query *q, int64_t *ret)
{
        struct db_stmt *st = NULL;
        int rc;

        if (db_prepare(q->db, "SELECT coalesce(max(id), 0) FROM events", 0, &st) < 0)
                return -EIO;
        if ((rc = db_step(st)) > 0)
                *ret = db_int(st, 0);
        db_finalize(st);
        return rc > 0 ? 0 : -EIO;
}

void
query_follow_done(struct query_follow *f)
{
        free(f->gap_xids);
        f->gap_xids = NULL;
}

int
query_timeline(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr)
{
        struct stmt s = { 0 };

        event_select(&s);
        common_filters(&s, a, "occurred_at", true);
        buf_puts(&s.sql, " ORDER BY occurred_at NULLS FIRST, id");
        return run(q, &s, event_cols, N(event_cols), a->limit, o, more, reterr);
}

int
query_bounces(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr)
{
        static const struct out_col cols[] = {
                { "occurred_at", true, false }, { "server_id", false, false }, { "message_id", true, false }, { "mailing_id", false, false },
                { "address", true, true }, { "failure_type", true, false }, { "failure_code", true, false }, { "reason", true, true },
                { "remote_mta", false, false }, { "bounce_status", false, false }, { "diagnostic_code", false, true },
        };
        static const struct out_col async_cols[] = {
                { "server_id", false, false }, { "message_id", true, false }, { "mailing_id", false, false }, { "address", true, true },
                { "sent_at", false, false }, { "failed_at", true, false }, { "delay_seconds", true, false },
                { "failure_type", true, false }, { "failure_code", true, false }, { "reason", true, true },
        };
        struct stmt s = { 0 };

        if (a->async) {
                buf_puts(&s.sql, "SELECT server_id, message_id, mailing_id, address, sent_at, failed_at, "
                         "delay_seconds, failure_type, failure_code, reason FROM async_bounces");
                common_filters(&s, a, "failed_at", false);
                buf_puts(&s.sql, " ORDER BY failed_at DESC, message_id NULLS FIRST, mailing_id NULLS FIRST, address, "
                         "server_id");
                return run(q, &s, async_cols, N(async_cols), a->limit, o, more, reterr);
        }
        buf_puts(&s.sql, "SELECT occurred_at, server_id, message_id, mailing_id, address, failure_type, "
                 "failure_code, reason, remote_mta, bounce_status, diagnostic_code FROM events");
        where(&s, "type = 'Failed' AND is_test = 0 AND failure_type IS DISTINCT FROM 'Suppressed'");
        common_filters(&s, a, "occurred_at", true);
        buf_puts(&s.sql, EVENTS_ORDER);
        return run(q, &s, cols, N(cols), a->limit, o, more, reterr);
}

int
query_suppressions(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr)
{
        static const struct out_col cols[] = {
                { "address", true, true }, { "reasons", true, true }, { "since", true, false },
                { "bounced_at", false, false }, { "complained_at", false, false }, { "unsubscribed_at", false, false },
        };
        struct stmt s = { 0 };

        buf_puts(&s.sql, "SELECT address, reasons, since, bounced_at, complained_at, unsubscribed_at "
                 "FROM suppressions");
        cond(&s, "address = ?", a->address);
        range(&s, "since", a);
        buf_puts(&s.sql, " ORDER BY since DESC, address");
        return run(q, &s, cols, N(cols), a->limit, o, more, reterr);
}

/* ---- health: per subaccount or mailing (health.c does the counting) ---- */

int
query_health(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr)
{
        static const bool brief[HK_COUNT] = {
                [HK_SENT] = true, [HK_FAILED_PERMANENT] = true, [HK_ASYNC_BOUNCES] = true, [HK_COMPLAINTS] = true,
        };
        static const bool brief_rate[HR_COUNT] = { [HR_BOUNCE] = true, [HR_COMPLAINT] = true };
        const struct health_conf defaults = HEALTH_CONF_DEFAULT, *c = a->health ? a->health : &defaults;
        /* The table keeps the columns until it is written: not on the stack. */
        static struct out_col cols[2 + HK_COUNT + HR_COUNT + 1];
        char since[TIME_ISO_LEN], until[TIME_ISO_LEN], num[1 + HK_COUNT + HR_COUNT][32], flags[128];
        const char *vals[N(cols)];
        bool isnum[N(cols)];
        struct health_report r;
        size_t i, n = 0;
        int k, v;

        *more = false;
        /* Without --until, now; without --since, the window before it. */
        if (a->until[0])
                snprintf(until, sizeof(until), "%s", a->until);
        else
                time_now_iso(until);
        if (a->since[0]) {
                snprintf(since, sizeof(since), "%s", a->since);
        } else {
                int64_t us = 0;

                (void) event_parse_time(until, strlen(until), &us);
                time_format_iso(us - (int64_t) c->window * 1000000, since);
        }
        if (health_report(q->db, since, until, a->by == 'm', a->has_server_id ? a->server_id : -1, c, &r) < 0)
                return failed(q, reterr);
        cols[n++] = (struct out_col) { "server_id", true, false };
        if (a->by == 'm')
                cols[n++] = (struct out_col) { "mailing_id", true, true };
        for (k = 0; k < HK_COUNT; k++)
                cols[n++] = (struct out_col) { health_kinds[k], brief[k], false };
        for (k = 0; k < HR_COUNT; k++)
                cols[n++] = (struct out_col) { health_rates[k], brief_rate[k], false };
        cols[n++] = (struct out_col) { "flags", true, true };
        out_columns(o, cols, n);
        for (i = 0; i < r.n && (a->limit <= 0 || (long) i < a->limit); i++) {
                const struct health_row *w = &r.rows[i];

                n = v = 0;
                snprintf(num[v], sizeof(num[v]), "%lld", (long long) w->server_id);
                isnum[n] = true;
                vals[n++] = num[v++];
                if (a->by == 'm') {
                        isnum[n] = false;
                        vals[n++] = w->mailing_id && w->mailing_id[0] ? w->mailing_id : NULL;
                }
                for (k = 0; k < HK_COUNT; k++) {
                        snprintf(num[v], sizeof(num[v]), "%lld", (long long) w->n[k]);
                        isnum[n] = true;
                        vals[n++] = num[v++];
                }
                for (k = 0; k < HR_COUNT; k++) {
                        /* Ten significant digits: 1/20 prints as 0.05, not as its binary neighbour. */
                        snprintf(num[v], sizeof(num[v]), "%.10g", w->rate[k]);
                        isnum[n] = true;
                        vals[n++] = w->has_rate[k] ? num[v] : NULL;
                        v++;
                }
                isnum[n] = false;
                vals[n++] = health_flag_names(w->flags, flags, sizeof(flags));
                out_row(o, vals, isnum);
        }
        *more = i < r.n;
        health_report_done(&r);
        return (int) i;
}

int
query_quarantine_list(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr)
{
        static const struct out_col cols[] = {
                { "id", true, false }, { "received_at", true, false }, { "endpoint", true, false },
                { "peer", true, false }, { "reason", true, true },
        };
        struct stmt s = { 0 };

        buf_puts(&s.sql, "SELECT id, received_at, endpoint, peer, reason FROM quarantine");
        range(&s, "received_at", a);
        buf_puts(&s.sql, " ORDER BY id DESC");
        return run(q, &s, cols, N(cols), a->limit, o, more, reterr);
}

int
query_quarantine_show(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr)
{
        static const struct out_col cols[] = {
                { "id", true, false }, { "received_at", true, false }, { "endpoint", true, false }, { "peer", true, false },
                { "reason", true, true }, { "digest", true, false }, { "raw", true, true },
        };
        struct stmt s = { 0 };
        char id[24];
        int r;

        snprintf(id, sizeof(id), "%lld", (long long) a->id);
        buf_puts(&s.sql, "SELECT id, received_at, endpoint, peer, reason, digest, raw FROM quarantine");
        cond(&s, "id = ?", id);
        r = run(q, &s, cols, N(cols), 0, o, more, reterr);
        if (r == 0) {
                *reterr = xasprintf("quarantine: no entry with id %s", id);
                return -ENOENT;
        }
        return r;
}

int
query_forward_status(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr)
{
        static const struct out_col cols[] = {
                { "forward", true, false }, { "cursor", true, false }, { "lag_events", true, false },
                { "lag_seconds", true, false }, { "last_success_at", true, false }, { "last_error", true, true },
                { "delivered", false, false }, { "last_error_at", false, false }, { "updated_at", false, false },
        };
        struct db_stmt *st = NULL, *first = NULL;
        int64_t newest, at_us, now_us = time_now_us();
        char lag[24], secs[24], delivered[24], cursor[24];
        const char *v[9];
        bool num[9] = { false, true, true, true, false, false, true, false, false };
        int rc, rows = 0;

        (void) a;
        *more = false;
        if (query_newest_id(q, &newest) < 0 ||
            db_prepare(q->db, "SELECT forward, cursor, delivered, last_success_at, last_error, last_error_at, "
                       "updated_at FROM forward_cursors ORDER BY forward", 0, &st) < 0) {
                db_finalize(st);
                return failed(q, reterr);
        }
        out_columns(o, cols, N(cols));
        while ((rc = db_step(st)) > 0) {
                int64_t c = db_int(st, 1);

                snprintf(cursor, sizeof(cursor), "%lld", (long long) c);
                snprintf(lag, sizeof(lag), "%lld", (long long) (newest > c ? newest - c : 0));
                snprintf(delivered, sizeof(delivered), "%lld", (long long) db_int(st, 2));
                /* Since the oldest event not yet passed arrived. */
                snprintf(secs, sizeof(secs), "0");
                if (newest > c) {
                        char cs[24];

                        snprintf(cs, sizeof(cs), "%lld", (long long) c);
                        if (db_prepare(q->db, db_backend(q->db) == DB_POSTGRESQL
                                       ? "SELECT received_at FROM events WHERE id > CAST(?1 AS bigint) ORDER BY id LIMIT 1"
                                       : "SELECT received_at FROM events WHERE id > CAST(?1 AS integer) ORDER BY id LIMIT 1",
                                       0, &first) < 0) {
                                db_finalize(st);
                                return failed(q, reterr);
                        }
                        db_bind_text(first, 1, cs);
                        if (db_step(first) > 0 && db_text(first, 0) &&
                            event_parse_time(db_text(first, 0), strlen(db_text(first, 0)), &at_us) == 0)
                                snprintf(secs, sizeof(secs), "%lld",
                                         (long long) (now_us > at_us ? (now_us - at_us) / 1000000 : 0));
                        db_finalize(first);
                        first = NULL;
                }
                v[0] = db_text(st, 0);
                v[1] = cursor;
                v[2] = lag;
                v[3] = secs;
                v[4] = db_text(st, 3);
                v[5] = db_text(st, 4);
                v[6] = delivered;
                v[7] = db_text(st, 5);
                v[8] = db_text(st, 6);
                out_row(o, v, num);
                rows++;
        }
        db_finalize(st);
        if (rc < 0)
                return failed(q, reterr);
        return rows;
}

int
query_status(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr)
{
        static const struct out_col cols[] = {
                { "endpoint", true, false }, { "webhook_id", true, false }, { "last_test_result", true, false },
                { "last_test_at", true, false }, { "last_test_rtt_ms", true, false },
                { "last_error", true, true }, { "last_test_step", false, false },
                { "last_test_http_status", false, false }, { "last_passed_at", false, false },
                { "registered_at", false, false }, { "last_validation_at", false, false },
                { "last_validation_peer", false, false },
        };
        struct stmt s = { 0 };

        buf_puts(&s.sql, "SELECT endpoint, webhook_id, last_test_result, last_test_at, "
                 "round(CAST(last_test_rtt_ms AS numeric), 1) AS last_test_rtt_ms, last_error, last_test_step, "
                 "last_test_http_status, last_passed_at, registered_at, last_validation_at, "
                 "last_validation_peer FROM webhook_status ORDER BY endpoint");
        return run(q, &s, cols, N(cols), a->limit, o, more, reterr);
}

/* One row about the database itself. */
int
query_info(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr)
{
        static const struct out_col cols[] = {
                { "database", true, true }, { "backend", true, false }, { "schema_version", true, false },
                { "size_bytes", true, false }, { "events", true, false }, { "messages", true, false },
                { "quarantined", true, false }, { "newest_received_at", true, false },
        };
        struct stmt s = { 0 };
        bool pg = db_backend(q->db) == DB_POSTGRESQL;

        s.params[s.n++] = db_name(q->db);
        buf_printf(&s.sql, "SELECT CAST(?1 AS text) AS database, '%s' AS backend, %d AS schema_version, %s AS size_bytes, "
                   "(SELECT count(*) FROM events) AS events, (SELECT count(*) FROM messages) AS messages, "
                   "(SELECT count(*) FROM quarantine) AS quarantined, "
                   "(SELECT received_at FROM events ORDER BY id DESC LIMIT 1) AS newest_received_at",
                   pg ? "postgresql" : "sqlite", db_schema_version(q->db),
                   pg ? "pg_database_size(current_database())"
                      : "(SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size())");
        return run(q, &s, cols, N(cols), a->limit, o, more, reterr);
}

/* ---- stats: counts per type, pivoted into one row per period ----
 *
 * Whole hours come from event_counts (kept by the writer); only the parts
 * of the range's first and last hour that the range cuts are counted from
 * events, so the cost does not grow with the traffic. */

static const char *const stat_types[] = {
        "Queued", "Sent", "Failed", "Deferred", "Complaint", "Click", "Open", "Unsubscribe",
};
#define N_STAT (N(stat_types))

struct bucket {
        char key[TIME_ISO_LEN];         /* the hour's first 13, 10 or 0 characters */
        char first[14], last[14];       /* hours seen */
        long long n[N_STAT + 2];        /* types, other, total */
};

struct stats {
        struct bucket *b;
        size_t n;
        size_t keylen;
};

static void
stats_add(struct stats *st, const char *hour, const char *type, long long n)
{
        struct bucket *b = NULL;
        size_t i, k;

        for (i = st->n; i > 0; i--)
                if (strncmp(st->b[i - 1].key, hour, st->keylen) == 0) {
                        b = &st->b[i - 1];
                        break;
                }
        if (b == NULL) {
                st->b = xreallocarray(st->b, st->n + 1, sizeof(*st->b));
                b = &st->b[st->n++];
                memset(b, 0, sizeof(*b));
                snprintf(b->key, sizeof(b->key), "%.*s", (int) st->keylen, hour);
        }
        for (k = 0; k < N_STAT && strcmp(type, stat_types[k]) != 0; k++)
                ;
        b->n[k] += n;
        b->n[N_STAT + 1] += n;
        if (b->first[0] == '\0' || strcmp(hour, b->first) < 0)
                snprintf(b->first, sizeof(b->first), "%s", hour);
        if (strcmp(hour, b->last) > 0)
                snprintf(b->last, sizeof(b->last), "%s", hour);
}

/* Run sql (rows: hour, type, count) with the range [from, to) bound. */
static int
stats_sql(struct query *q, const char *sql, const char *from, const char *to, struct stats *st, char **reterr)
{
        struct db_stmt *s;
        int rc;

        if (db_prepare(q->db, sql, DB_STREAM, &s) < 0)
                return failed(q, reterr);
        db_bind_text(s, 1, from);
        db_bind_text(s, 2, to);
        while ((rc = db_step(s)) > 0) {
                const char *hour = db_text(s, 0);
                const char *type = db_text(s, 1);

                if (hour && type && strlen(hour) == 13)
                        stats_add(st, hour, type, db_int(s, 2));
        }
        db_finalize(s);
        return rc < 0 ? failed(q, reterr) : 0;
}

static int
bucket_cmp(const void *a, const void *b)
{
        return strcmp(((const struct bucket *) a)->key, ((const struct bucket *) b)->key);
}

int
query_stats(struct query *q, const struct query_args *a, struct out *o, bool *more, char **reterr)
{
        static const struct out_col cols[] = {
                { "from", true, false }, { "to", false, false }, { "total", true, false },
                { "queued", true, false }, { "sent", true, false }, { "failed", true, false },
                { "deferred", true, false }, { "complaint", true, false }, { "click", true, false },
                { "open", true, false }, { "unsubscribe", true, false }, { "other", true, false },
        };
        static const char whole_sql[] =
                "SELECT hour, type, events FROM event_counts WHERE hour >= ?1 AND hour < ?2 AND events > 0";
        /* Each type's events in [?1, ?2) through the (type, occurred_at)
         * index; the types themselves by a skip scan of that index. */
        static const char part_sql[] =
                "WITH RECURSIVE t(type) AS ("
                " SELECT min(type) FROM events"
                " UNION ALL SELECT (SELECT min(type) FROM events WHERE type > t.type) FROM t WHERE t.type IS NOT NULL)"
                " SELECT substr(e.occurred_at, 1, 13), t.type, count(*) FROM t JOIN events e ON e.type = t.type"
                " WHERE t.type IS NOT NULL AND e.occurred_at >= ?1 AND e.occurred_at < ?2"
                " GROUP BY 1, 2";
        struct stats st = { .keylen = a->by == 'h' ? 13 : a->by == 'd' ? 10 : 0 };
        char hs[14] = "", he[14] = "9", h[14], edge[TIME_ISO_LEN];
        const char *until = a->until[0] ? a->until : "9";
        bool s_aligned = true, u_aligned = true;
        size_t i, k;
        int r = 0, rows = 0;

        *more = false;
        if (a->since[0]) {
                s_aligned = event_hour_of(a->since, hs);
                if (!s_aligned) {
                        /* The cut first hour, counted exactly. */
                        event_next_hour(hs, edge);
                        r = stats_sql(q, part_sql, a->since, strcmp(edge, until) < 0 ? edge : until, &st, reterr);
                        snprintf(hs, sizeof(hs), "%.13s", edge);
                }
        }
        if (r == 0 && a->until[0]) {
                u_aligned = event_hour_of(a->until, he);
                /* The cut last hour, unless the first one already covered it. */
                if (!u_aligned && strcmp(he, hs) >= 0) {
                        snprintf(edge, sizeof(edge), "%s:00:00.000000Z", he);
                        r = stats_sql(q, part_sql, strcmp(edge, a->since) > 0 ? edge : a->since, a->until,
                                      &st, reterr);
                }
        }
        if (r == 0 && strcmp(hs, he) < 0)
                r = stats_sql(q, whole_sql, hs, he, &st, reterr);
        if (r < 0) {
                free(st.b);
                return r;
        }
        if (st.n > 1)
                qsort(st.b, st.n, sizeof(*st.b), bucket_cmp);
        out_columns(o, cols, N(cols));
        for (i = 0; i < st.n && (a->limit <= 0 || (long) i < a->limit); i++) {
                char from[TIME_ISO_LEN], to[TIME_ISO_LEN], num[N_STAT + 2][24];
                const char *vals[N(cols)];
                bool isnum[N(cols)];

                /* A period's bounds: its hour or day, or the range asked for
                 * (else the hours that have events). */
                snprintf(h, sizeof(h), "%s", st.b[i].first);
                if (st.keylen == 10)
                        snprintf(h, sizeof(h), "%.10sT00", st.b[i].first);
                snprintf(from, sizeof(from), "%s:00:00.000000Z", h);
                if (st.keylen == 0 && a->since[0])
                        snprintf(from, sizeof(from), "%s", a->since);
                if (st.keylen == 10) {
                        snprintf(h, sizeof(h), "%.10sT23", st.b[i].first);
                        event_next_hour(h, to);
                } else
                        event_next_hour(st.keylen == 13 ? st.b[i].first : st.b[i].last, to);
                if (st.keylen == 0 && a->until[0])
                        snprintf(to, sizeof(to), "%s", a->until);
                vals[0] = from;
                vals[1] = to;
                isnum[0] = isnum[1] = false;
                snprintf(num[0], sizeof(num[0]), "%lld", st.b[i].n[N_STAT + 1]);
                for (k = 0; k <= N_STAT; k++)
                        snprintf(num[k + 1], sizeof(num[k + 1]), "%lld", st.b[i].n[k]);
                for (k = 0; k < N_STAT + 2; k++) {
                        vals[k + 2] = num[k];
                        isnum[k + 2] = true;
                }
                out_row(o, vals, isnum);
                rows++;
        }
        *more = i < st.n;
        free(st.b);
        return rows;
}

/* ---- arguments ---- */

/* Wall-clock fields read as UTC (us) → the same fields in the local zone. */
static int64_t
utc_fields_as_local(int64_t us)
{
        time_t sec = (time_t) (us / 1000000);
        struct tm tm;

        gmtime_r(&sec, &tm);
        tm.tm_isdst = -1;
        return (int64_t) mktime(&tm) * 1000000 + us % 1000000;
}

int
query_parse_time(const char *s, int64_t now_us, bool local, char out[TIME_ISO_LEN])
{
        size_t len = strlen(s);
        int64_t n, unit, us;
        char *fixed = NULL;
        bool zoned;
        int r;

        /* What journalctl takes: now, today, yesterday, tomorrow, @UNIX. */
        if (strcmp(s, "now") == 0 || strcmp(s, "today") == 0 || strcmp(s, "yesterday") == 0 ||
            strcmp(s, "tomorrow") == 0) {
                n = s[0] == 'y' ? -1 : strcmp(s, "tomorrow") == 0 ? 1 : 0;
                us = now_us - now_us % (86400 * INT64_C(1000000)) + n * 86400 * INT64_C(1000000);
                if (s[0] == 'n') {
                        us = now_us;
                } else if (local) {     /* the local midnight (a day is not 24 h across DST) */
                        time_t now = (time_t) (now_us / 1000000);
                        struct tm tm;

                        localtime_r(&now, &tm);
                        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
                        tm.tm_mday += (int) n;
                        tm.tm_isdst = -1;
                        us = (int64_t) mktime(&tm) * 1000000;
                }
                time_format_iso(us, out);
                return 0;
        }
        if (s[0] == '@') {
                if (str_to_i64(s + 1, len - 1, 0, INT64_MAX / 1000000, &n) < 0)
                        return -EINVAL;
                time_format_iso(n * 1000000, out);
                return 0;
        }
        /* 2h or -2h: that long ago. */
        if (s[0] == '-' && len >= 3 && strchr("smhdw", s[len - 1])) {
                s++;
                len--;
        }
        if (len >= 2 && strchr("smhdw", s[len - 1]) && str_to_i64(s, len - 1, 0, 100000000, &n) == 0) {
                switch (s[len - 1]) {
                case 's': unit = 1; break;
                case 'm': unit = 60; break;
                case 'h': unit = 3600; break;
                case 'd': unit = 86400; break;
                default: unit = 7 * 86400; break;
                }
                if (n > INT64_MAX / 1000000 / unit)
                        return -EINVAL;
                time_format_iso(now_us - n * unit * 1000000, out);
                return 0;
        }
        if (len == 10)                  /* a date: its midnight */
                s = fixed = xasprintf("%sT00:00:00", s);
        else if (len >= 16 && s[13] == ':' && (len == 16 || s[16] != ':'))
                s = fixed = xasprintf("%.16s:00%s", s, s + 16);         /* 10:00 is 10:00:00 */
        /* No Z and no offset after the seconds: UTC, or local with --local. */
        zoned = strlen(s) < 19 || s[13] != ':' || strpbrk(s + 19, "Zz+-") != NULL;
        r = event_parse_time(s, strlen(s), &us);
        free(fixed);
        if (r < 0)
                return -EINVAL;
        if (local && !zoned)
                us = utc_fields_as_local(us);
        time_format_iso(us, out);
        return 0;
}

const char *
query_type(const char *s)
{
        static const char *const known[] = {
                "Queued", "Sent", "Failed", "Deferred", "Complaint", "Click", "Open", "Unsubscribe",
        };
        size_t i;

        if (strcasecmp(s, "Delivered") == 0)
                return "Sent";
        if (strcasecmp(s, "Tracking") == 0)
                return NULL;
        for (i = 0; i < N(known); i++)
                if (strcasecmp(s, known[i]) == 0)
                        return known[i];
        return s;
}
