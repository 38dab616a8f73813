/* store_rows: an event's rows in the writer's transaction (see
 * store-private.h): the event, its message's row (found through the cache
 * or a SELECT, created, brought up to date), the hourly counts; and the
 * other transactions on those tables: retention and quarantine replay. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corr.h"
#include "health.h"
#include "metrics.h"
#include "msgcache.h"
#include "store-private.h"
#include "store_pg.h"

/* Add n to health_counts at (hour of t, server, mailing, kind) at the end
 * of the transaction. */
static void
health_add(struct store *s, const char *t, int64_t server_id, const char *mailing_id, int kind, int64_t n)
{
        struct hcount *h;
        size_t i;

        if (mailing_id == NULL)
                mailing_id = "";
        for (i = s->nhcounts; i > 0; i--) {
                h = &s->hcounts[i - 1];
                if (h->kind == kind && h->server_id == server_id && strncmp(h->hour, t, 13) == 0 &&
                    strcmp(h->mailing_id, mailing_id) == 0) {
                        h->n += n;
                        return;
                }
        }
        if (s->nhcounts == s->hcounts_cap) {
                s->hcounts_cap = s->hcounts_cap ? 2 * s->hcounts_cap : 16;
                s->hcounts = xreallocarray(s->hcounts, s->hcounts_cap, sizeof(*s->hcounts));
        }
        h = &s->hcounts[s->nhcounts++];
        snprintf(h->hour, sizeof(h->hour), "%.13s", t);
        h->server_id = server_id;
        h->mailing_id = xstrdup(mailing_id);
        h->kind = kind;
        h->n = n;
}

/* What a message row counts in health_counts: the times of its first open,
 * its first click, and its async bounce (as the async_bounces view: Failed
 * after Sent by event time, not Suppressed, with an id); "" for none. */
static void
health_marks(const struct corr_key *k, const struct corr_msg *m, const char *marks[3])
{
        bool async = (k->message_id || k->mailing_id) && m->t[CT_SENT][0] && m->t[CT_FAILED][0] &&
                     strcmp(m->t[CT_FAILED], m->t[CT_SENT]) > 0 &&
                     !(m->failure_type && strcmp(m->failure_type, "Suppressed") == 0);

        marks[0] = m->t[CT_OPENED];
        marks[1] = m->t[CT_CLICKED];
        marks[2] = async ? m->t[CT_FAILED] : "";
}

/* corr_apply, and what it moved in health_counts: a message's first open
 * or click, or its async bounce, may come or move to another hour (events
 * arrive in any order). */
static void
apply(struct store *s, const struct corr_key *k, struct corr_msg *m, const struct event *ev, const char *received_at)
{
        static const int kinds[3] = { HK_OPENS, HK_CLICKS, HK_ASYNC_BOUNCES };
        char was[3][TIME_ISO_LEN];
        const char *marks[3], *mailing = m->mailing_id ? m->mailing_id : "";
        bool same_group;
        int i;

        if (ev->is_test) {
                corr_apply(m, ev, received_at);
                return;
        }
        health_marks(k, m, marks);
        for (i = 0; i < 3; i++)
                snprintf(was[i], sizeof(was[i]), "%s", marks[i]);
        corr_apply(m, ev, received_at);
        health_marks(k, m, marks);
        same_group = strcmp(mailing, m->mailing_id ? m->mailing_id : "") == 0;
        for (i = 0; i < 3; i++) {
                if (same_group && strcmp(was[i], marks[i]) == 0)
                        continue;
                if (was[i][0])
                        health_add(s, was[i], k->server_id, mailing, kinds[i], -1);
                if (marks[i][0])
                        health_add(s, marks[i], k->server_id, m->mailing_id, kinds[i], 1);
        }
}

/* store_pg's corr_apply (the same, with the store as arg). */
static void
apply_pg(void *arg, const struct corr_key *k, struct corr_msg *m, const struct event *ev, const char *received_at)
{
        apply(arg, k, m, ev, received_at);
}

/* Read a messages row (columns from first on) into m; the strings stay
 * valid until st is reset. */
static void
msg_load(struct corr_msg *m, struct db_stmt *st, int i)
{
        const char *t;
        int k;

        m->mailing_id = db_text(st, i++);
        m->state = corr_state(db_text(st, i++));
        for (k = 0; k < CT_COUNT; k++, i++)
                if ((t = db_text(st, i)) != NULL)
                        snprintf(m->t[k], TIME_ISO_LEN, "%s", t);
        for (k = 0; k < CC_COUNT; k++)
                m->n[k] = db_int(st, i++);
        m->failure_type = db_text(st, i++);
        m->has_failure_code = !db_null(st, i);
        m->failure_code = db_int(st, i++);
        m->reason = db_text(st, i++);
}

/* Bind m from parameter i on; returns the next parameter. */
static int
msg_bind(struct db_stmt *st, int i, const struct corr_msg *m)
{
        int k;

        db_bind_text(st, i++, m->mailing_id);
        db_bind_text(st, i++, m->state);
        for (k = 0; k < CT_COUNT; k++)
                db_bind_text(st, i++, m->t[k][0] ? m->t[k] : NULL);
        for (k = 0; k < CC_COUNT; k++)
                db_bind_int(st, i++, m->n[k]);
        db_bind_text(st, i++, m->failure_type);
        db_bind_opt_int(st, i++, m->has_failure_code, m->failure_code);
        db_bind_text(st, i++, m->reason);
        return i;
}

/* The event's message row: found (*id set, m loaded, borrowing find's row
 * until find is reset) or not (*id 0, m empty). Returns find, or NULL when
 * the event belongs to no message, or on error (*id -1). */
static struct db_stmt *
message_find(struct store *s, const struct corr_key *k, struct corr_msg *m, int64_t *id)
{
        struct db_stmt *find;
        int rc, i = 1;

        *id = 0;
        corr_init(m);
        if (k->message_id)
                db_bind_text(find = s->st[ST_MSG_BY_MESSAGE], i++, k->message_id);
        else if (k->mailing_id)
                db_bind_text(find = s->st[ST_MSG_BY_MAILING], i++, k->mailing_id);
        else
                find = s->st[ST_MSG_BY_ADDRESS];
        db_bind_text(find, i++, k->address);
        db_bind_int(find, i++, k->server_id);
        rc = db_step(find);
        if (rc > 0) {
                *id = db_int(find, 0);
                msg_load(m, find, 1);
        } else if (rc < 0) {
                db_reset(find);
                *id = -1;
                return NULL;
        }
        return find;
}

/* Create the row of a message seen for the first time, with ev applied.
 * Returns its id, 0 when another instance created it first, or -1. */
static int64_t
message_create(struct store *s, const struct event *ev, const struct corr_key *k, struct corr_msg *m,
               const char *received_at)
{
        struct db_stmt *st = s->st[ST_MSG_INSERT];
        int64_t id = 0;
        int rc;

        apply(s, k, m, ev, received_at);
        db_bind_int(st, 1, k->server_id);
        db_bind_text(st, 2, k->message_id);
        db_bind_text(st, 3, k->address);
        db_bind_int(st, 4, ev->is_test);
        msg_bind(st, 5, m);
        if ((rc = db_step(st)) > 0)
                id = db_int(st, 0);
        db_reset(st);
        return rc < 0 ? -1 : id;
}

static int
message_update(struct store *s, const struct event *ev, const struct corr_key *k, struct corr_msg *m, int64_t id,
               const char *received_at)
{
        struct db_stmt *st = s->st[ST_MSG_UPDATE];
        int i;

        apply(s, k, m, ev, received_at);
        i = msg_bind(st, 1, m);
        db_bind_int(st, i++, ev->is_test);
        db_bind_int(st, i, id);
        return db_run(st) < 0 ? -1 : 0;
}

/* Count a stored event into event_counts and health_counts at the end of
 * the transaction. */
static void
count_event(struct store *s, const struct event *ev, const char *received_at)
{
        int kind = ev->is_test ? -1 : health_event_kind(ev);
        size_t i;

        if (kind >= 0)
                health_add(s, ev->occurred_at[0] ? ev->occurred_at : received_at,
                           ev->has_num[EVN_SERVER_ID] ? ev->num[EVN_SERVER_ID] : 0, ev->str[EVS_MAILING_ID], kind,
                           1);

        if (!ev->occurred_at[0])
                return;
        for (i = 0; i < s->ncounts; i++)
                if (strncmp(s->counts[i].hour, ev->occurred_at, 13) == 0 && strcmp(s->counts[i].type, ev->type) == 0) {
                        s->counts[i].n++;
                        return;
                }
        if (s->ncounts == s->counts_cap) {
                s->counts_cap = s->counts_cap ? 2 * s->counts_cap : 16;
                s->counts = xreallocarray(s->counts, s->counts_cap, sizeof(*s->counts));
        }
        snprintf(s->counts[s->ncounts].hour, sizeof(s->counts[0].hour), "%.13s", ev->occurred_at);
        s->counts[s->ncounts].type = xstrdup(ev->type);
        s->counts[s->ncounts++].n = 1;
}

static int
count_cmp(const void *a, const void *b)
{
        const struct count *x = a, *y = b;
        int c = strcmp(x->hour, y->hour);

        return c ? c : strcmp(x->type, y->type);
}

static int
hcount_cmp(const void *a, const void *b)
{
        const struct hcount *x = a, *y = b;
        int c = strcmp(x->hour, y->hour);

        if (c == 0)
                c = (x->server_id > y->server_id) - (x->server_id < y->server_id);
        if (c == 0)
                c = strcmp(x->mailing_id, y->mailing_id);
        return c ? c : x->kind - y->kind;
}

static void
counts_clear(struct store *s)
{
        size_t i;

        for (i = 0; i < s->ncounts; i++)
                free(s->counts[i].type);
        s->ncounts = 0;
        for (i = 0; i < s->nhcounts; i++)
                free(s->hcounts[i].mailing_id);
        s->nhcounts = 0;
}

/* PostgreSQL: one statement, its columns as arrays, sent to be answered
 * with the COMMIT, in its round trip (db_send copies the values). */
static int
send_arrays(struct db_stmt *st, struct buf *a, int n)
{
        int i, r;

        for (i = 0; i < n; i++) {
                store_pg_arr_end(&a[i]);
                db_bind_text(st, i + 1, a[i].data);
        }
        r = db_send(st) < 0 ? -1 : 0;
        for (i = 0; i < n; i++)
                buf_done(&a[i]);
        return r;
}

/* send_arrays() when send, else only free the arrays. */
static int
send_or_drop(struct db_stmt *st, struct buf *a, int n, bool send)
{
        int i;

        if (send)
                return send_arrays(st, a, n);
        for (i = 0; i < n; i++)
                buf_done(&a[i]);
        return 0;
}

/* The next (hour, ServerId) of the sorted hcounts from *i on: its kinds
 * summed over mailings into d; false past the end. */
static bool
hours_next(const struct store *s, size_t *i, const struct hcount **first, int64_t d[HK_COUNT])
{
        const struct hcount *h;

        if (*i >= s->nhcounts)
                return false;
        *first = h = &s->hcounts[*i];
        memset(d, 0, HK_COUNT * sizeof(d[0]));
        for (; *i < s->nhcounts && s->hcounts[*i].server_id == h->server_id &&
               strcmp(s->hcounts[*i].hour, h->hour) == 0; ++*i)
                d[s->hcounts[*i].kind] += s->hcounts[*i].n;
        return true;
}

/* Write the transaction's counts, in key order: two instances that count
 * the same hours lock their rows in the same order, and only while they
 * commit. health_hours gets the sums over mailings of health_counts'. */
static int
counts_flush(struct store *s)
{
        struct db_stmt *st = s->st[ST_COUNT_ADD], *hs = s->st[ST_HEALTH_ADD], *hh = s->st[ST_HOURS_ADD];
        const struct hcount *h;
        int64_t d[HK_COUNT];
        size_t i, k;
        int j, r = 0;

        if (s->ncounts > 1)
                qsort(s->counts, s->ncounts, sizeof(*s->counts), count_cmp);
        /* Moves that cancelled out (a first open moved within its hour) write nothing. */
        for (i = k = 0; i < s->nhcounts; i++)
                if (s->hcounts[i].n != 0)
                        s->hcounts[k++] = s->hcounts[i];
                else
                        free(s->hcounts[i].mailing_id);
        s->nhcounts = k;
        if (s->nhcounts > 1)
                qsort(s->hcounts, s->nhcounts, sizeof(*s->hcounts), hcount_cmp);
        if (pg(s)) {
                struct buf a[2 + HK_COUNT] = { 0 };

                for (i = 0; i < s->ncounts; i++) {
                        store_pg_arr_text(&a[0], s->counts[i].hour);
                        store_pg_arr_text(&a[1], s->counts[i].type);
                        store_pg_arr_int(&a[2], true, s->counts[i].n);
                }
                r = send_or_drop(st, a, 3, s->ncounts > 0);
                memset(a, 0, sizeof(a));
                for (i = 0; i < s->nhcounts; i++) {
                        store_pg_arr_text(&a[0], s->hcounts[i].hour);
                        store_pg_arr_int(&a[1], true, s->hcounts[i].server_id);
                        store_pg_arr_text(&a[2], s->hcounts[i].mailing_id);
                        store_pg_arr_text(&a[3], health_kinds[s->hcounts[i].kind]);
                        store_pg_arr_int(&a[4], true, s->hcounts[i].n);
                }
                if (send_or_drop(hs, a, 5, r == 0 && s->nhcounts > 0) < 0)
                        r = -1;
                memset(a, 0, sizeof(a));
                for (i = 0; hours_next(s, &i, &h, d);) {
                        store_pg_arr_text(&a[0], h->hour);
                        store_pg_arr_int(&a[1], true, h->server_id);
                        for (j = 0; j < HK_COUNT; j++)
                                store_pg_arr_int(&a[2 + j], true, d[j]);
                }
                if (send_or_drop(hh, a, 2 + HK_COUNT, r == 0 && s->nhcounts > 0) < 0)
                        r = -1;
                counts_clear(s);
                return r;
        }
        for (i = 0; i < s->ncounts && r == 0; i++) {
                db_bind_text(st, 1, s->counts[i].hour);
                db_bind_text(st, 2, s->counts[i].type);
                db_bind_int(st, 3, s->counts[i].n);
                r = db_run(st) < 0 ? -1 : 0;
        }
        for (i = 0; i < s->nhcounts && r == 0; i++) {
                db_bind_text(hs, 1, s->hcounts[i].hour);
                db_bind_int(hs, 2, s->hcounts[i].server_id);
                db_bind_text(hs, 3, s->hcounts[i].mailing_id);
                db_bind_text(hs, 4, health_kinds[s->hcounts[i].kind]);
                db_bind_int(hs, 5, s->hcounts[i].n);
                r = db_run(hs) < 0 ? -1 : 0;
        }
        for (i = 0; r == 0 && hours_next(s, &i, &h, d);) {
                db_bind_text(hh, 1, h->hour);
                db_bind_int(hh, 2, h->server_id);
                for (j = 0; j < HK_COUNT; j++)
                        db_bind_int(hh, 3 + j, d[j]);
                r = db_run(hh) < 0 ? -1 : 0;
        }
        counts_clear(s);
        return r;
}

/* ROLLBACK: what the cache took from this transaction is gone with it. */
void
store_rows_rollback(struct store *s)
{
        db_rollback(s->db);
        if (s->cache)
                msgcache_clear(s->cache);
}

/* BEGIN the writer's transaction. SQLite: when another connection
 * (slhookctl prune or quarantine replay) committed since the last one, the
 * message rows the cache holds may be gone or stale: forget them. BEGIN
 * IMMEDIATE holds the write lock, so none can commit while this runs. */
int
store_rows_begin(struct store *s)
{
        struct db_stmt *st = s->st[ST_DATA_VERSION];
        int64_t v;

        if (db_begin(s->db) < 0)
                return -1;
        if (s->cache == NULL)
                return 0;
        if (db_step(st) <= 0) {
                db_reset(st);
                store_rows_rollback(s);
                return -1;
        }
        v = db_int(st, 0);
        db_reset(st);
        if (v != s->data_version) {
                msgcache_clear(s->cache);
                s->data_version = v;
        }
        return 0;
}

/* Store a mail event and keep its message's row: the row is found (or
 * created) first, so that the event links to it. Returns the rows inserted
 * (0: a redelivery, which changes no message) or -1. */
/* PostgreSQL: whether the event is stored already. An INSERT that ends in
 * ON CONFLICT DO NOTHING still takes an id from the sequence; looking
 * first keeps ids without gaps from redeliveries, as SQLite's are. Returns
 * 1 stored, 0 not, -1 on error. */
static int
seen(struct store *s, int which, const struct event *ev)
{
        int rc;

        if (!pg(s))
                return 0;
        db_bind_text(s->st[which], 1, ev->digest);
        rc = db_step(s->st[which]);
        db_reset(s->st[which]);
        return rc < 0 ? -1 : rc;
}

static int
store_mail(struct store *s, const struct store_job *job, const struct event *ev)
{
        struct db_stmt *st = s->st[ST_EVENT], *find = NULL;
        struct corr_key k;
        struct corr_msg m;
        int64_t id = 0;
        bool created = false, keyed;
        int i = 1, c, n = -1, tries;

        if ((n = seen(s, ST_EVENT_SEEN, ev)) != 0)
                return n < 0 ? -1 : 0;
        n = -1;
        keyed = corr_key(ev, &k);
        if (keyed && s->cache)
                id = msgcache_get(s->cache, &k, &m);    /* the row, as this writer last left it */
        for (tries = 0; tries < 2 && keyed && id == 0; tries++) {
                if ((find = message_find(s, &k, &m, &id)) == NULL)
                        return -1;
                if (id != 0)
                        break;
                if ((id = message_create(s, ev, &k, &m, job->received_at)) != 0) {
                        created = id > 0;
                        break;
                }
                /* Another instance created the row since we looked; the
                 * insert waited for it to commit, so it is found now. */
                db_reset(find);
                find = NULL;
        }
        if (id < 0 || (keyed && id == 0)) {
                if (id == 0)
                        db_set_error(s->db, "the row of a message was neither found nor created");
                goto out;
        }
        db_bind_text(st, i++, job->received_at);
        db_bind_text(st, i++, job->endpoint);
        db_bind_text(st, i++, ev->type);
        db_bind_text(st, i++, ev->wire_type);
        db_bind_text(st, i++, ev->occurred_at[0] ? ev->occurred_at : NULL);
        db_bind_text(st, i++, ev->meta);
        db_bind_text(st, i++, ev->tags);
        db_bind_int(st, i++, ev->is_test);
        db_bind_text(st, i++, job->peer);
        db_bind_text(st, i++, ev->raw);
        db_bind_text(st, i++, ev->digest);
        db_bind_opt_int(st, i++, id > 0, id);
        for (c = 0; c < EVS_COUNT; c++)
                db_bind_text(st, i++, ev->str[c]);
        for (c = 0; c < EVN_COUNT; c++)
                db_bind_opt_int(st, i++, ev->has_num[c], ev->num[c]);
        if ((n = db_run(st)) < 0)
                goto out;
        if (n == 1)
                count_event(s, ev, job->received_at);
        if (n == 1 && id > 0 && !created && message_update(s, ev, &k, &m, id, job->received_at) < 0)
                n = -1;
        if (n == 0 && created) {
                /* A redelivery of an event whose message retention removed. */
                db_bind_int(s->st[ST_MSG_DELETE], 1, id);
                if (db_run(s->st[ST_MSG_DELETE]) < 0)
                        n = -1;
        } else if (n >= 0 && id > 0 && s->cache) {
                msgcache_put(s->cache, &k, id, &m);     /* before find's row goes */
        }
out:
        if (find)
                db_reset(find);
        return n;
}

static int
store_event(struct store *s, const struct store_job *job, const struct event *ev)
{
        struct db_stmt *st = s->st[ST_QUARANTINE];
        int i = 1;

        if (ev->kind != EVENT_QUARANTINE)
                return store_mail(s, job, ev);
        if ((i = seen(s, ST_QUARANTINE_SEEN, ev)) != 0)
                return i < 0 ? -1 : 0;
        i = 1;
        db_bind_text(st, i++, job->received_at);
        db_bind_text(st, i++, job->endpoint);
        db_bind_text(st, i++, job->peer);
        db_bind_text(st, i++, ev->reason);
        db_bind_text(st, i++, ev->raw);
        db_bind_text(st, i++, ev->digest);
        return db_run(st);
}

/* Link an event already stored to its message (the upgrade below). */
static int
message_link(struct store *s, const struct event *ev, int64_t event_id, const char *received_at)
{
        struct db_stmt *find, *st = s->st[ST_EVENT_MESSAGE];
        struct corr_key k;
        struct corr_msg m;
        int64_t id;

        if (!corr_key(ev, &k))
                return 0;
        if ((find = message_find(s, &k, &m, &id)) == NULL)
                return -1;
        if (id == 0)
                id = message_create(s, ev, &k, &m, received_at);
        else if (message_update(s, ev, &k, &m, id, received_at) < 0)
                id = -1;
        db_reset(find);
        if (id <= 0)
                return -1;
        db_bind_int(st, 1, id);
        db_bind_int(st, 2, event_id);
        return db_run(st) < 0 ? -1 : 0;
}

/* Fill messages from the events already stored (upgrade from a schema
 * without it), in id order as the writer would have. */
int
store_rows_rebuild(struct store *s, char **reterr)
{
        static const char sql[] =
                "SELECT type, occurred_at, received_at, is_test, server_id, message_id, mailing_id, "
                "address, failure_type, failure_code, reason, id FROM events ORDER BY id";
        struct db_stmt *st;
        uint64_t n = 0;
        int rc;

        if (db_prepare(s->db, sql, 0, &st) < 0)
                goto fail;
        while ((rc = db_step(st)) > 0) {
                struct event ev = { .kind = EVENT_MAIL };
                const char *t;

                ev.type = db_text(st, 0);
                if ((t = db_text(st, 1)) != NULL)
                        snprintf(ev.occurred_at, sizeof(ev.occurred_at), "%s", t);
                ev.is_test = db_int(st, 3) != 0;
                ev.has_num[EVN_SERVER_ID] = !db_null(st, 4);
                ev.num[EVN_SERVER_ID] = db_int(st, 4);
                ev.str[EVS_MESSAGE_ID] = db_text(st, 5);
                ev.str[EVS_MAILING_ID] = db_text(st, 6);
                ev.str[EVS_ADDRESS] = db_text(st, 7);
                ev.str[EVS_FAILURE_TYPE] = db_text(st, 8);
                ev.has_num[EVN_FAILURE_CODE] = !db_null(st, 9);
                ev.num[EVN_FAILURE_CODE] = db_int(st, 9);
                ev.str[EVS_REASON] = db_text(st, 10);
                if (ev.type == NULL || message_link(s, &ev, db_int(st, 11), db_text(st, 2)) < 0) {
                        rc = -1;
                        break;
                }
                n++;
        }
        db_finalize(st);
        if (rc == 0 && counts_flush(s) < 0)
                rc = -1;
        if (rc == 0) {
                if (n)
                        log_full(LOG_NOTICE, LOG_MID_STORE, NULL, "%s: message states filled from %llu events",
                                 db_name(s->db), (unsigned long long) n);
                return 0;
        }
fail:
        *reterr = xasprintf("%s: cannot fill messages from events: %s", db_name(s->db), db_errmsg(s->db));
        return -EIO;
}

/* On PostgreSQL, a mail event its indexes cannot take becomes a quarantined
 * one (store_pg_unindexable), in the writer and in a replay alike. */
static void
quarantine_unindexable(struct store *s, struct event *ev)
{
        const char *why;

        if (s->bulk && ev->kind == EVENT_MAIL && (why = store_pg_unindexable(ev)) != NULL) {
                ev->kind = EVENT_QUARANTINE;
                ev->reason = why;
        }
}

int
store_rows_job(struct store *s, struct store_job *job)
{
        bool test = false;
        size_t i;
        int n;

        job->stored = job->duplicates = job->quarantined = 0;
        if (job->validation) {
                struct db_stmt *st = s->st[ST_VALIDATION];

                db_bind_text(st, 1, job->endpoint);
                db_bind_text(st, 2, job->received_at);
                db_bind_text(st, 3, job->peer);
                if (db_run(st) < 0)
                        return -1;
        }
        if (job->status) {
                const struct store_webhook_status *w = job->status;
                struct db_stmt *st = s->st[ST_STATUS];

                db_bind_text(st, 1, job->endpoint);
                db_bind_text(st, 2, w->webhook_id);
                db_bind_text(st, 3, w->registered ? job->received_at : NULL);
                db_bind_text(st, 4, job->received_at);
                db_bind_text(st, 5, w->passed ? "passed" : "failed");
                db_bind_text(st, 6, w->step);
                db_bind_opt_int(st, 7, w->http_status > 0, w->http_status);
                if (w->rtt_ms >= 0)
                        db_bind_double(st, 8, w->rtt_ms);
                else
                        db_bind_null(st, 8);
                db_bind_text(st, 9, w->passed ? NULL : w->error);
                db_bind_text(st, 10, w->passed ? job->received_at : NULL);
                if (db_run(st) < 0)
                        return -1;
        }
        for (i = 0; job->batch && i < job->batch->n; i++) {
                struct event *ev = &job->batch->v[i];

                if (ev->kind == EVENT_VALIDATION)
                        continue;
                test |= ev->is_test;
                quarantine_unindexable(s, ev);
                if (s->bulk && ev->kind == EVENT_MAIL) {
                        store_pg_add(s->bulk, job, ev);
                        continue;
                }
                if ((n = store_event(s, job, ev)) < 0)
                        return -1;
                if (n == 0) {
                        job->duplicates++;
                        ev->outcome = 1 + METRIC_DUPLICATE;
                } else if (ev->kind == EVENT_QUARANTINE) {
                        job->quarantined++;
                        ev->outcome = 1 + METRIC_QUARANTINED;
                } else {
                        job->stored++;
                        ev->outcome = 1 + METRIC_STORED;
                }
        }
        if (test) {
                /* Seen by the instance running the self-test, wherever it arrived. */
                struct db_stmt *st = s->st[ST_TEST_EVENT];

                db_bind_text(st, 1, job->endpoint);
                db_bind_text(st, 2, job->received_at);
                if (db_run(st) < 0)
                        return -1;
        }
        return 0;
}

/* store_pg_flush's answer for one mail event (count_event's, row by row). */
static void
bulk_done(void *arg, struct store_job *job, struct event *ev, bool stored)
{
        if (stored) {
                job->stored++;
                ev->outcome = 1 + METRIC_STORED;
                count_event(arg, ev, job->received_at);
        } else {
                job->duplicates++;
                ev->outcome = 1 + METRIC_DUPLICATE;
        }
}

void
store_rows_clear(struct store *s)
{
        counts_clear(s);
        if (s->bulk)
                store_pg_clear(s->bulk);
}

int
store_rows_flush(struct store *s)
{
        if (s->bulk && store_pg_flush(s->bulk, apply_pg, bulk_done, s) < 0)
                return -1;
        return counts_flush(s);
}

/* Where the next walk over messages starts, and whether it wraps. */
static int
prune_cursor(struct store *s, int64_t *next, bool *wrapped)
{
        struct db_stmt *st = s->st[ST_PRUNE_CURSOR];
        int rc;

        db_bind_int(st, 1, s->prune_cursor);
        db_bind_int(st, 2, PRUNE_BATCH);
        rc = db_step(st);
        if (rc > 0) {
                *next = db_int(st, 0);
                *wrapped = db_int(st, 1) < PRUNE_BATCH;
        }
        db_reset(st);
        return rc > 0 ? 0 : -1;
}

/* Take what st's rows (hour, server, mailing, kind, n) count off the
 * health counts, at counts_flush(). */
static int
health_take(struct store *s, struct db_stmt *st)
{
        int rc, k;

        while ((rc = db_step(st)) > 0)
                if ((k = health_kind_of(db_text(st, 3))) >= 0)
                        health_add(s, db_text(st, 0), db_int(st, 1), db_text(st, 2), k, -db_int(st, 4));
        db_reset(st);
        return rc < 0 ? -1 : 0;
}

/* One retention step: up to PRUNE_BATCH events received before `before`,
 * and the messages with no event received since among the next PRUNE_BATCH
 * of the walk over messages, in one transaction. One instance at a time:
 * the counts are taken off before the events go. */
int
store_prune(struct store *s, const char *before, uint64_t *ret_events, uint64_t *ret_messages,
            uint64_t *ret_quarantine)
{
        struct db_stmt *ev = s->st[ST_PRUNE_EVENTS], *msg = s->st[ST_PRUNE_MESSAGES], *cnt = s->st[ST_PRUNE_COUNTS];
        struct db_stmt *qu = s->st[ST_PRUNE_QUARANTINE], *hev = s->st[ST_PRUNE_HEALTH_EVENTS];
        struct db_stmt *hmsg = s->st[ST_PRUNE_HEALTH_MESSAGES];
        int64_t next = 0;
        bool wrapped = true;
        int ne, nm, nq, locked;

        *ret_events = *ret_messages = *ret_quarantine = 0;
        if (store_rows_begin(s) < 0)
                return -EIO;
        if ((locked = db_lock(s->db, LOCK_RETENTION, false)) <= 0) {
                store_rows_rollback(s);
                return locked < 0 ? -EIO : 0;  /* another instance is at it */
        }
        db_bind_text(cnt, 1, before);
        db_bind_int(cnt, 2, PRUNE_BATCH);
        db_bind_text(ev, 1, before);
        db_bind_int(ev, 2, PRUNE_BATCH);
        db_bind_text(msg, 1, before);
        db_bind_int(msg, 2, PRUNE_BATCH);
        db_bind_int(msg, 3, s->prune_cursor);
        db_bind_text(qu, 1, before);
        db_bind_int(qu, 2, PRUNE_BATCH);
        db_bind_text(hev, 1, before);
        db_bind_int(hev, 2, PRUNE_BATCH);
        db_bind_text(hmsg, 1, before);
        db_bind_int(hmsg, 2, PRUNE_BATCH);
        db_bind_int(hmsg, 3, s->prune_cursor);
        if (db_run(cnt) < 0 || health_take(s, hev) < 0 || (ne = db_run(ev)) < 0 ||
            (ne > 0 && db_run(s->st[ST_PRUNE_ZERO]) < 0) || prune_cursor(s, &next, &wrapped) < 0 ||
            health_take(s, hmsg) < 0 || (nm = db_run(msg)) < 0 || counts_flush(s) < 0 || db_sync(s->db) < 0 ||
            ((ne > 0 || nm > 0) && (db_run(s->st[ST_PRUNE_HEALTH_ZERO]) < 0 ||
                                    db_run(s->st[ST_PRUNE_HOURS_ZERO]) < 0)) ||
            (nq = db_run(qu)) < 0 || db_commit(s->db) < 0) {
                counts_clear(s);
                store_rows_rollback(s);
                return -EIO;
        }
        if (nm > 0 && s->cache)
                msgcache_clear(s->cache);       /* the rows it deleted may be there */
        s->prune_cursor = wrapped ? 0 : next;
        *ret_events = (uint64_t) ne;
        *ret_messages = (uint64_t) nm;
        *ret_quarantine = (uint64_t) nq;
        return ne == PRUNE_BATCH || nq == PRUNE_BATCH || !wrapped;
}

/* Re-parse one quarantined payload; move it into events when it now parses.
 * Returns 1 moved, 0 kept, -1 on a database error. */
static int
replay_one(struct store *s, struct db_stmt *get, struct db_stmt *del, struct db_stmt *upd)
{
        struct store_job job = { 0 };
        struct event_batch b;
        struct event *ev;
        char *err = NULL;
        const char *raw = db_text(get, 4);
        int r = 0;

        job.endpoint = db_text(get, 2);
        job.peer = db_text(get, 3);
        snprintf(job.received_at, sizeof(job.received_at), "%s", db_text(get, 1));
        if (raw == NULL || job.endpoint == NULL)
                return 0;
        if (event_parse(raw, db_bytes(get, 4), false, &b, &err) < 0) {
                free(err);
                return 0;
        }
        ev = &b.v[0];
        if (b.n == 1)
                quarantine_unindexable(s, ev);  /* kept, as the writer keeps it */
        db_bind_int(del, 1, db_int(get, 0));
        db_bind_int(upd, 2, db_int(get, 0));
        if (b.n == 1 && ev->kind == EVENT_MAIL) {
                if (job.peer && strcmp(job.peer, EVENT_TEST_PEER) == 0)
                        ev->is_test = true;
                event_digest(ev, job.endpoint);
                r = store_event(s, &job, ev) < 0 || db_run(del) < 0 ? -1 : 1;
        } else if (b.n == 1 && ev->kind == EVENT_QUARANTINE) {
                db_bind_text(upd, 1, ev->reason);       /* the current parser's reason */
                r = db_run(upd) < 0 ? -1 : 0;
        }
        db_reset(del);
        db_reset(upd);
        event_batch_done(&b);
        return r;
}

int
store_replay_quarantine(struct store *s, unsigned *moved, unsigned *kept)
{
        struct db_stmt *get = NULL, *del = NULL, *upd = NULL;
        int64_t last = 0;
        int r = 0, rc, k, n;

        *moved = *kept = 0;
        if (db_prepare(s->db, "SELECT id, received_at, endpoint, peer, raw FROM quarantine "
                       "WHERE id > ? ORDER BY id LIMIT 100", 0, &get) < 0 ||
            db_prepare(s->db, "DELETE FROM quarantine WHERE id = ?", 0, &del) < 0 ||
            db_prepare(s->db, "UPDATE quarantine SET reason = ? WHERE id = ?", 0, &upd) < 0) {
                r = -EIO;
                goto out;
        }
        /* 100 rows a transaction, so a running daemon never waits long. */
        do {
                counts_clear(s);
                if (store_rows_begin(s) < 0) {
                        r = -EIO;
                        goto out;
                }
                db_bind_int(get, 1, last);
                for (n = 0; (rc = db_step(get)) > 0; n++) {
                        last = db_int(get, 0);
                        if ((k = replay_one(s, get, del, upd)) < 0) {
                                rc = -1;
                                break;
                        }
                        if (k)
                                (*moved)++;
                        else
                                (*kept)++;
                }
                db_reset(get);
                if (rc < 0 || counts_flush(s) < 0 || db_commit(s->db) < 0) {
                        store_rows_rollback(s);
                        r = -EIO;
                        goto out;
                }
        } while (n > 0);
out:
        db_finalize(get);
        db_finalize(del);
        db_finalize(upd);
        return r;
}
