/* store: open/migrate through db.h, bounded queue, writer thread, group commit. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "corr.h"
#include "log.h"
#include "metrics.h"
#include "msgcache.h"
#include "store.h"
#include "store_pg.h"

/* Built into schema.c from sql/: the schema of a new database, and the
 * upgrade steps (index i takes version i+1 to i+2), for each backend. */
extern const char store_schema_sql[], store_pg_schema_sql[];
extern const char *const store_migrations[], *const store_pg_migrations[];
extern const unsigned store_n_migrations, store_pg_n_migrations;

/* The first schema version with the messages table: a database migrated
 * from before it gets messages filled from its events. */
#define MESSAGES_VERSION 2

/* Advisory locks (PostgreSQL) that keep instances on one database from
 * doing the same work at once. */
#define LOCK_SCHEMA     STORE_LOCK(1)
#define LOCK_RETENTION  STORE_LOCK(2)

/* Times a transaction that lost a deadlock to another instance is tried. */
#define CONFLICT_TRIES 8

enum {
        ST_EVENT, ST_QUARANTINE, ST_VALIDATION, ST_STATUS, ST_TEST_EVENT,
        ST_MSG_BY_MESSAGE, ST_MSG_BY_MAILING, ST_MSG_BY_ADDRESS, ST_MSG_INSERT, ST_MSG_UPDATE, ST_MSG_DELETE,
        ST_EVENT_MESSAGE, ST_COUNT_ADD, ST_PRUNE_COUNTS, ST_PRUNE_ZERO, ST_PRUNE_EVENTS, ST_PRUNE_MESSAGES,
        ST_PRUNE_CURSOR, ST_PRUNE_QUARANTINE, ST_EVENT_SEEN, ST_QUARANTINE_SEEN, ST_DATA_VERSION,
        ST_COUNT
};

/* Message rows the SQLite writer keeps in memory, per generation (see
 * msgcache.h): about 4 MB at most. */
#define MSGCACHE_ROWS 4096

#define PRUNE_BATCH 1000

/* Events a transaction adds to event_counts, written at its end. */
struct count {
        char hour[14];
        char *type;             /* a copy: the event may go before the counts are written */
        int64_t n;
};

struct store {
        struct db *db;
        struct db_stmt *st[ST_COUNT];
        struct db_conf conf;            /* for store_connect(): its strings are the store's */

        pthread_t writer;
        bool started;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        pthread_cond_t gone;            /* the writer has returned (exited) */
        bool exited;
        unsigned pending;               /* jobs queued or in the writer's batch */
        struct store_job *head, *tail;
        unsigned queued, queue_size;
        bool stopping;
        bool failing;                   /* last transaction failed: log recovery once */
        atomic_uint_fast64_t commits;
        atomic_uint_fast64_t batches;   /* written, committed or not: progress */
        atomic_uint_fast64_t conflicts; /* transactions run again after a deadlock */
        atomic_bool busy;               /* writing a batch now */

        struct store_pg *bulk;          /* PostgreSQL: the mail events, set-based */
        struct msgcache *cache;         /* SQLite: message rows lately touched */
        int64_t data_version;           /* SQLite: PRAGMA data_version the cache is good for */
        struct count *counts;           /* this transaction's, unsorted */
        size_t ncounts, counts_cap;

        unsigned retention_days;        /* 0: keep forever */
        uint64_t pruned_events, pruned_messages, pruned_quarantine;     /* this retention pass */
        int64_t prune_cursor;           /* messages are walked by id, PRUNE_BATCH a step */
};

static bool
pg(const struct store *s)
{
        return db_backend(s->db) == DB_POSTGRESQL;
}

static const char *
schema_sql(enum db_backend b)
{
        return b == DB_POSTGRESQL ? store_pg_schema_sql : store_schema_sql;
}

int
store_schema_version(void)
{
        const char *p = strstr(store_schema_sql, "PRAGMA user_version = ");

        return p ? atoi(p + 22) : -1;
}

/* Bring the database to the current schema; inside store_open's transaction.
 * *from is the version it had. */
static int
migrate(struct store *s, int *from, char **reterr)
{
        const char *const *steps = pg(s) ? store_pg_migrations : store_migrations;
        unsigned nsteps = pg(s) ? store_pg_n_migrations : store_n_migrations;
        int first = pg(s) ? 2 : 1;     /* the version the first step starts from */
        int latest = store_schema_version(), v;

        *from = v = db_schema_version(s->db);
        if (v < 0) {
                *reterr = xasprintf("%s: cannot read the schema version: %s", db_name(s->db), db_errmsg(s->db));
                return -EIO;
        }
        if (v > latest) {
                *reterr = xasprintf("%s: schema version %d is newer than this slhookd knows (%d)",
                                    db_name(s->db), v, latest);
                return -EPROTO;
        }
        if (v == 0 && db_exec(s->db, schema_sql(db_backend(s->db))) < 0)
                goto fail;
        for (; v > 0 && v < latest; v++) {
                if (v < first || v - first >= (int) nsteps) {
                        *reterr = xasprintf("%s: no upgrade step from schema version %d", db_name(s->db), v);
                        return -EPROTO;
                }
                if (db_exec(s->db, steps[v - first]) < 0)
                        goto fail;
        }
        return 0;
fail:
        *reterr = xasprintf("%s: %s", db_name(s->db), db_errmsg(s->db));
        return -EIO;
}

static char *
insert_event_sql(void)
{
        struct buf cols = { 0 }, vals = { 0 };
        char *sql;
        size_t i;

        buf_puts(&cols, "received_at, endpoint, type, wire_type, occurred_at, meta, tags, is_test, peer, raw, digest, "
                 "message");
        buf_puts(&vals, "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?");
        for (i = 0; i < EVS_COUNT; i++) {
                buf_printf(&cols, ", %s", event_str_fields[i].column);
                buf_puts(&vals, ", ?");
        }
        for (i = 0; i < EVN_COUNT; i++) {
                buf_printf(&cols, ", %s", event_num_fields[i].column);
                buf_puts(&vals, ", ?");
        }
        sql = xasprintf("INSERT INTO events (%s) VALUES (%s) ON CONFLICT (digest) DO NOTHING",
                        cols.data, vals.data);
        buf_done(&cols);
        buf_done(&vals);
        return sql;
}

/* The columns of messages that corr_msg holds, in bind order. */
static void
msg_columns(struct buf *b, const char *sep, const char *suffix)
{
        size_t i;

        buf_printf(b, "mailing_id%s%sstate%s", suffix, sep, suffix);
        for (i = 0; i < CT_COUNT; i++)
                buf_printf(b, "%s%s%s", sep, corr_time_columns[i], suffix);
        for (i = 0; i < CC_COUNT; i++)
                buf_printf(b, "%s%s%s", sep, corr_count_columns[i], suffix);
        buf_printf(b, "%sfailure_type%s%sfailure_code%s%sreason%s", sep, suffix, sep, suffix, sep, suffix);
}
#define MSG_NCOLS (2 + CT_COUNT + CC_COUNT + 3)

static char *
msg_sql(int which, bool for_update)
{
        static const char *const where[] = {
                /* The id tests let the planner pick the partial unique indexes. */
                [ST_MSG_BY_MESSAGE] = "message_id = ?1 AND address = ?2 AND server_id = ?3 AND message_id IS NOT NULL",
                [ST_MSG_BY_MAILING] = "mailing_id = ?1 AND address = ?2 AND server_id = ?3 AND message_id IS NULL",
                [ST_MSG_BY_ADDRESS] = "mailing_id IS NULL AND address = ?1 AND server_id = ?2 AND message_id IS NULL",
        };
        struct buf b = { 0 };
        int i;

        switch (which) {
        case ST_MSG_BY_MESSAGE:
        case ST_MSG_BY_MAILING:
        case ST_MSG_BY_ADDRESS:
                buf_puts(&b, "SELECT id, ");
                msg_columns(&b, ", ", "");
                /* FOR UPDATE: another instance writing the same message's
                 * row waits for this transaction, then reads its result. */
                buf_printf(&b, " FROM messages WHERE %s%s", where[which], for_update ? " FOR UPDATE" : "");
                break;
        case ST_MSG_INSERT:
                buf_puts(&b, "INSERT INTO messages (server_id, message_id, address, is_test, ");
                msg_columns(&b, ", ", "");
                buf_puts(&b, ") VALUES (?, ?, ?, ?");
                for (i = 0; i < MSG_NCOLS; i++)
                        buf_puts(&b, ", ?");
                /* Another instance may have created it since we looked. */
                buf_puts(&b, ") ON CONFLICT DO NOTHING RETURNING id");
                break;
        default:
                /* A message any of whose events is a test is a test
                 * message, as its events are. */
                buf_puts(&b, "UPDATE messages SET ");
                msg_columns(&b, ", ", " = ?");
                buf_puts(&b, ", is_test = CASE WHEN ? <> 0 THEN 1 ELSE is_test END WHERE id = ?");
                break;
        }
        return b.data;
}

static int
prepare(struct store *s, char **reterr)
{
        char *dyn[ST_COUNT] = { 0 };
        const char *sql[ST_COUNT] = {
                [ST_QUARANTINE] = "INSERT INTO quarantine (received_at, endpoint, peer, reason, raw, digest) "
                                  "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING",
                [ST_VALIDATION] = "INSERT INTO webhook_status (endpoint, last_validation_at, last_validation_peer) "
                                  "VALUES (?, ?, ?) ON CONFLICT (endpoint) DO UPDATE SET "
                                  "last_validation_at = excluded.last_validation_at, "
                                  "last_validation_peer = excluded.last_validation_peer",
                [ST_TEST_EVENT] = "INSERT INTO webhook_status (endpoint, test_events, last_test_event_at) "
                                  "VALUES (?, 1, ?) ON CONFLICT (endpoint) DO UPDATE SET "
                                  "test_events = webhook_status.test_events + 1, "
                                  "last_test_event_at = excluded.last_test_event_at",
                [ST_STATUS] = "INSERT INTO webhook_status (endpoint, webhook_id, registered_at, last_test_at, "
                              "last_test_result, last_test_step, last_test_http_status, last_test_rtt_ms, "
                              "last_error, last_passed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
                              "ON CONFLICT (endpoint) DO UPDATE SET "
                              "webhook_id = coalesce(excluded.webhook_id, webhook_status.webhook_id), "
                              "registered_at = coalesce(excluded.registered_at, webhook_status.registered_at), "
                              "last_test_at = excluded.last_test_at, last_test_result = excluded.last_test_result, "
                              "last_test_step = excluded.last_test_step, "
                              "last_test_http_status = excluded.last_test_http_status, "
                              "last_test_rtt_ms = excluded.last_test_rtt_ms, last_error = excluded.last_error, "
                              "last_passed_at = coalesce(excluded.last_passed_at, webhook_status.last_passed_at)",
                [ST_MSG_DELETE] = "DELETE FROM messages WHERE id = ?",
                [ST_EVENT_MESSAGE] = "UPDATE events SET message = ? WHERE id = ?",
                [ST_COUNT_ADD] = "INSERT INTO event_counts (hour, type, events) VALUES (?1, ?2, ?3) "
                                 "ON CONFLICT (hour, type) DO UPDATE SET events = event_counts.events + excluded.events",
                /* The same batch as ST_PRUNE_EVENTS, taken off the counts first. */
                [ST_PRUNE_COUNTS] = "UPDATE event_counts SET events = events - d.n FROM "
                                    "(SELECT substr(occurred_at, 1, 13) AS h, type AS t, count(*) AS n FROM events "
                                    " WHERE id IN (SELECT id FROM events WHERE received_at < ?1 "
                                    "              ORDER BY received_at, id LIMIT ?2) "
                                    " AND occurred_at IS NOT NULL GROUP BY h, t) AS d "
                                    "WHERE event_counts.hour = d.h AND event_counts.type = d.t",
                [ST_PRUNE_ZERO] = "DELETE FROM event_counts WHERE events <= 0",
                [ST_PRUNE_EVENTS] = "DELETE FROM events WHERE id IN "
                                    "(SELECT id FROM events WHERE received_at < ?1 ORDER BY received_at, id LIMIT ?2)",
                /* messages has no index on updated_at (every event would move
                 * an entry of it): retention walks the table by id instead. */
                [ST_PRUNE_MESSAGES] = "DELETE FROM messages WHERE id IN (SELECT id FROM messages "
                                      "WHERE id > ?3 ORDER BY id LIMIT ?2) AND updated_at < ?1",
                [ST_PRUNE_CURSOR] = "SELECT max(id), count(*) FROM "
                                    "(SELECT id FROM messages WHERE id > ?1 ORDER BY id LIMIT ?2) AS w",
                /* It holds raw payloads, addresses among them: the same rule
                 * as events, by arrival time. */
                [ST_PRUNE_QUARANTINE] = "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine "
                                        "WHERE received_at < ?1 ORDER BY received_at, id LIMIT ?2)",
                [ST_EVENT_SEEN] = "SELECT 1 FROM events WHERE digest = ?",
                [ST_QUARANTINE_SEEN] = "SELECT 1 FROM quarantine WHERE digest = ?",
                [ST_DATA_VERSION] = "PRAGMA data_version",
        };
        int i, r = 0;

        sql[ST_EVENT] = dyn[ST_EVENT] = insert_event_sql();
        if (pg(s))
                sql[ST_DATA_VERSION] = "SELECT 0";
        if (pg(s))
                sql[ST_COUNT_ADD] = "INSERT INTO event_counts (hour, type, events) "
                                    "SELECT * FROM unnest(CAST(?1 AS text[]), CAST(?2 AS text[]), CAST(?3 AS bigint[])) "
                                    "ON CONFLICT (hour, type) DO UPDATE SET events = event_counts.events + excluded.events";
        for (i = ST_MSG_BY_MESSAGE; i <= ST_MSG_UPDATE; i++)
                sql[i] = dyn[i] = msg_sql(i, pg(s));
        for (i = 0; i < ST_COUNT; i++)
                if (db_prepare(s->db, sql[i], 0, &s->st[i]) < 0) {
                        *reterr = xasprintf("%s: cannot prepare statement: %s", db_name(s->db), db_errmsg(s->db));
                        r = -EIO;
                        break;
                }
        for (i = 0; i < ST_COUNT; i++)
                free(dyn[i]);
        return r;
}

static int messages_rebuild(struct store *s, char **reterr);

int
store_open(const struct db_conf *c, struct store **ret, char **reterr)
{
        struct store *s = xcalloc(1, sizeof(*s));
        pthread_condattr_t ca;
        int r, from;

        pthread_mutex_init(&s->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&s->wake, &ca);
        pthread_cond_init(&s->gone, &ca);
        pthread_condattr_destroy(&ca);
        s->conf = *c;
        s->conf.path = c->path ? xstrdup(c->path) : NULL;
        s->conf.dsn = c->dsn ? xstrdup(c->dsn) : NULL;
        s->conf.password = c->password ? xstrdup(c->password) : NULL;
        if ((r = db_open(c, 0, &s->db, reterr)) < 0)
                goto fail;
        /* Migration, statements and the messages backfill: all or nothing,
         * and one instance at a time. */
        if (db_begin(s->db) < 0 || db_lock(s->db, LOCK_SCHEMA, true) < 0) {
                *reterr = xasprintf("%s: %s", db_name(s->db), db_errmsg(s->db));
                r = -EIO;
                goto rollback;
        }
        if ((r = migrate(s, &from, reterr)) < 0 || (r = prepare(s, reterr)) < 0)
                goto rollback;
        if (!pg(s))
                s->cache = msgcache_new(MSGCACHE_ROWS);
        if (pg(s) && store_pg_open(s->db, &s->bulk) < 0) {
                *reterr = xasprintf("%s: %s", db_name(s->db), db_errmsg(s->db));
                r = -EIO;
                goto rollback;
        }
        if (from > 0 && from < MESSAGES_VERSION && (r = messages_rebuild(s, reterr)) < 0)
                goto rollback;
        if (db_commit(s->db) < 0) {
                *reterr = xasprintf("%s: %s", db_name(s->db), db_errmsg(s->db));
                r = -EIO;
                goto rollback;
        }
        *ret = s;
        return 0;
rollback:
        if (s->db)
                db_rollback(s->db);
fail:
        store_close(s);
        return r;
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

        corr_apply(m, ev, received_at);
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
message_update(struct store *s, const struct event *ev, struct corr_msg *m, int64_t id, const char *received_at)
{
        struct db_stmt *st = s->st[ST_MSG_UPDATE];

        int i;

        corr_apply(m, ev, received_at);
        i = msg_bind(st, 1, m);
        db_bind_int(st, i++, ev->is_test);
        db_bind_int(st, i, id);
        return db_run(st) < 0 ? -1 : 0;
}

/* Count a stored event into event_counts at the end of the transaction. */
static void
count_event(struct store *s, const struct event *ev)
{
        size_t i;

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

static void
counts_clear(struct store *s)
{
        size_t i;

        for (i = 0; i < s->ncounts; i++)
                free(s->counts[i].type);
        s->ncounts = 0;
}

/* Write the transaction's counts, in key order: two instances that count
 * the same hours lock their rows in the same order, and only while they
 * commit. */
static int
counts_flush(struct store *s)
{
        struct db_stmt *st = s->st[ST_COUNT_ADD];
        size_t i;
        int r = 0;

        if (s->ncounts > 1)
                qsort(s->counts, s->ncounts, sizeof(*s->counts), count_cmp);
        if (pg(s) && s->ncounts > 0) {
                /* One statement: three arrays, in key order. */
                struct buf a[3] = { 0 };

                for (i = 0; i < s->ncounts; i++) {
                        store_pg_arr_text(&a[0], s->counts[i].hour);
                        store_pg_arr_text(&a[1], s->counts[i].type);
                        store_pg_arr_int(&a[2], true, s->counts[i].n);
                }
                for (i = 0; i < 3; i++) {
                        store_pg_arr_end(&a[i]);
                        db_bind_text(st, (int) i + 1, a[i].data);
                }
                /* With the COMMIT, in its round trip (db_send copies the values). */
                r = db_send(st) < 0 ? -1 : 0;
                for (i = 0; i < 3; i++)
                        buf_done(&a[i]);
                counts_clear(s);
                return r;
        }
        for (i = 0; i < s->ncounts && r == 0; i++) {
                db_bind_text(st, 1, s->counts[i].hour);
                db_bind_text(st, 2, s->counts[i].type);
                db_bind_int(st, 3, s->counts[i].n);
                r = db_run(st) < 0 ? -1 : 0;
        }
        counts_clear(s);
        return r;
}

/* ROLLBACK: what the cache took from this transaction is gone with it. */
static void
rollback(struct store *s)
{
        db_rollback(s->db);
        if (s->cache)
                msgcache_clear(s->cache);
}

/* BEGIN the writer's transaction. SQLite: when another connection
 * (slhookctl prune or quarantine replay) committed since the last one, the
 * message rows the cache holds may be gone or stale: forget them. BEGIN
 * IMMEDIATE holds the write lock, so none can commit while this runs. */
static int
begin(struct store *s)
{
        struct db_stmt *st = s->st[ST_DATA_VERSION];
        int64_t v;

        if (db_begin(s->db) < 0)
                return -1;
        if (s->cache == NULL)
                return 0;
        if (db_step(st) <= 0) {
                db_reset(st);
                rollback(s);
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
                count_event(s, ev);
        if (n == 1 && id > 0 && !created && message_update(s, ev, &m, id, job->received_at) < 0)
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
        else if (message_update(s, ev, &m, id, received_at) < 0)
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
static int
messages_rebuild(struct store *s, char **reterr)
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

static int
store_job_rows(struct store *s, struct store_job *job)
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
                count_event(arg, ev);
        } else {
                job->duplicates++;
                ev->outcome = 1 + METRIC_DUPLICATE;
        }
}

/* One attempt at a transaction over jobs [first, end). */
static int
attempt(struct store *s, struct store_job *first, struct store_job *end)
{
        struct store_job *j;

        counts_clear(s);
        if (s->bulk)
                store_pg_clear(s->bulk);
        if (begin(s) < 0)
                return -EIO;
        for (j = first; j != end; j = j->next)
                if (store_job_rows(s, j) < 0)
                        goto fail;
        if ((s->bulk && store_pg_flush(s->bulk, bulk_done, s) < 0) || counts_flush(s) < 0 ||
            db_commit(s->db) < 0)
                goto fail;
        return 0;
fail:
        rollback(s);
        return -EIO;
}

/* One transaction over jobs [first, end), run again while it loses
 * deadlocks to another instance. Returns 0 or -EIO. */
static int
transaction(struct store *s, struct store_job *first, struct store_job *end)
{
        int64_t t0 = time_mono_us();
        struct store_job *j;
        unsigned jobs = 0, tries;
        size_t i;

        for (j = first; j != end; j = j->next)
                jobs++;
        for (tries = 1; attempt(s, first, end) < 0; tries++) {
                if (!db_conflict(s->db) || tries == CONFLICT_TRIES)
                        goto fail;
                atomic_fetch_add(&s->conflicts, 1);
        }
        atomic_fetch_add(&s->commits, 1);
        metrics_commit(time_mono_us() - t0, jobs);
        for (j = first; j != end; j = j->next)
                for (i = 0; j->batch && i < j->batch->n; i++)
                        if (j->batch->v[i].outcome)
                                metrics_event(j->endpoint, j->batch->v[i].kind == EVENT_QUARANTINE ? NULL :
                                              j->batch->v[i].type, j->batch->v[i].outcome - 1);
        if (s->failing) {
                s->failing = false;
                metrics_storage(false);
                log_full(LOG_NOTICE, LOG_MID_STORE, NULL, "storage works again: %s", db_name(s->db));
        }
        return 0;
fail:
        if (!s->failing) {
                s->failing = true;
                metrics_storage(true);
                log_full(LOG_ERR, LOG_MID_STORE, NULL, "storage failed, answering 503: %s: %s",
                         db_name(s->db), db_errmsg(s->db));
        }
        return -EIO;
}

/* Whether the last transaction failed in a way every other one would now:
 * the connection is down, or a wait ran out (another process holds the
 * lock). */
static bool
stalled(struct store *s)
{
        return db_broken(s->db) || db_timeout(s->db);
}

static void
write_batch(struct store *s, struct store_job *head)
{
        struct store_job *j, *next;
        unsigned n = 0;
        int r;

        r = transaction(s, head, NULL);
        if (r < 0 && head->next && !stalled(s)) {
                /* Keep one bad job from failing the others: one transaction
                 * each, until one finds the database stalled: the rest then
                 * fail at once rather than wait a timeout each. */
                for (j = head, r = 0; j; j = j->next)
                        r = j->result = r < 0 && stalled(s) ? -EIO : transaction(s, j, j->next);
        } else
                for (j = head; j; j = j->next)
                        j->result = r;
        for (j = head; j; j = next) {
                next = j->next;
                j->next = NULL;
                j->done(j);
                n++;
        }
        pthread_mutex_lock(&s->lock);
        s->pending -= n;
        metrics_queue(s->pending);
        pthread_mutex_unlock(&s->lock);
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

/* One retention step: up to PRUNE_BATCH events received before `before`,
 * and the messages with no event received since among the next PRUNE_BATCH
 * of the walk over messages, in one transaction. One instance at a time:
 * the counts are taken off before the events go. */
int
store_prune(struct store *s, const char *before, uint64_t *ret_events, uint64_t *ret_messages,
            uint64_t *ret_quarantine)
{
        struct db_stmt *ev = s->st[ST_PRUNE_EVENTS], *msg = s->st[ST_PRUNE_MESSAGES], *cnt = s->st[ST_PRUNE_COUNTS];
        struct db_stmt *qu = s->st[ST_PRUNE_QUARANTINE];
        int64_t next = 0;
        bool wrapped = true;
        int ne, nm, nq, locked;

        *ret_events = *ret_messages = *ret_quarantine = 0;
        if (begin(s) < 0)
                return -EIO;
        if ((locked = db_lock(s->db, LOCK_RETENTION, false)) <= 0) {
                rollback(s);
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
        if (db_run(cnt) < 0 || (ne = db_run(ev)) < 0 || (ne > 0 && db_run(s->st[ST_PRUNE_ZERO]) < 0) ||
            prune_cursor(s, &next, &wrapped) < 0 || (nm = db_run(msg)) < 0 || (nq = db_run(qu)) < 0 ||
            db_commit(s->db) < 0) {
                rollback(s);
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
                if (begin(s) < 0) {
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
                        rollback(s);
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

const char *
store_name(const struct store *s)
{
        return db_name(s->db);
}

const char *
store_error(const struct store *s)
{
        return db_errmsg(s->db);
}

/* Writer side of retention: one batch, then the delay until the next. */
static int64_t
retention_step(struct store *s)
{
        char before[TIME_ISO_LEN];
        uint64_t ne, nm, nq;
        int r;

        time_format_iso(time_now_us() - (int64_t) s->retention_days * 86400 * 1000000, before);
        r = store_prune(s, before, &ne, &nm, &nq);
        if (r < 0) {
                log_full(LOG_WARNING, LOG_MID_STORE, NULL, "retention: cannot delete old events: %s: %s",
                         db_name(s->db), db_errmsg(s->db));
                return 60 * 1000000;
        }
        s->pruned_events += ne;
        s->pruned_messages += nm;
        s->pruned_quarantine += nq;
        if (r > 0)
                return 100 * 1000;      /* more to do: again soon, between batches */
        if (s->pruned_events || s->pruned_messages || s->pruned_quarantine)
                log_full(LOG_INFO, LOG_MID_STORE, NULL,
                         "retention: deleted %llu events, %llu messages and %llu quarantined payloads received "
                         "before %s", (unsigned long long) s->pruned_events, (unsigned long long) s->pruned_messages,
                         (unsigned long long) s->pruned_quarantine, before);
        s->pruned_events = s->pruned_messages = s->pruned_quarantine = 0;
        return 1000000;         /* an idle check is one index probe */
}

static void *
writer_main(void *arg)
{
        struct store *s = arg;
        struct store_job *batch;
        int64_t next_prune = s->retention_days ? time_mono_us() : INT64_MAX;
        struct timespec ts;

        pthread_mutex_lock(&s->lock);
        for (;;) {
                while (s->head == NULL && !s->stopping && time_mono_us() < next_prune) {
                        if (next_prune == INT64_MAX) {
                                pthread_cond_wait(&s->wake, &s->lock);
                                continue;
                        }
                        ts.tv_sec = next_prune / 1000000;
                        ts.tv_nsec = (next_prune % 1000000) * 1000;
                        pthread_cond_timedwait(&s->wake, &s->lock, &ts);
                }
                if (s->head == NULL && s->stopping)
                        break;
                /* Everything that queued while we were busy is one batch. */
                batch = s->head;
                s->head = s->tail = NULL;
                s->queued = 0;
                atomic_store(&s->busy, batch != NULL);
                pthread_mutex_unlock(&s->lock);
                if (batch) {
                        write_batch(s, batch);
                        atomic_store(&s->busy, false);
                        atomic_fetch_add(&s->batches, 1);
                }
                /* Retention runs between batches, one small transaction at a
                 * time, so ingestion waits for at most one of them. */
                if (time_mono_us() >= next_prune)
                        next_prune = time_mono_us() + retention_step(s);
                pthread_mutex_lock(&s->lock);
        }
        s->exited = true;
        pthread_cond_broadcast(&s->gone);
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

int
store_start(struct store *s, unsigned queue_size, unsigned retention_days)
{
        int r;

        s->queue_size = queue_size;
        s->retention_days = retention_days;
        r = pthread_create(&s->writer, NULL, writer_main, s);
        if (r != 0)
                return -r;
        s->started = true;
        return 0;
}

int
store_submit(struct store *s, struct store_job *job)
{
        int r = 0;

        job->next = NULL;
        job->result = 0;
        pthread_mutex_lock(&s->lock);
        if (s->stopping)
                r = -ESHUTDOWN;
        else if (s->queued >= s->queue_size)
                r = -EAGAIN;
        else {
                if (s->tail)
                        s->tail->next = job;
                else
                        s->head = job;
                s->tail = job;
                s->queued++;
                s->pending++;
                metrics_queue(s->pending);
                pthread_cond_signal(&s->wake);
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

unsigned
store_stop(struct store *s, unsigned seconds)
{
        int64_t until = time_mono_us() + (int64_t) seconds * 1000000;
        struct timespec ts = { .tv_sec = until / 1000000, .tv_nsec = (until % 1000000) * 1000 };
        unsigned left;

        if (s == NULL || !s->started)
                return 0;
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_signal(&s->wake);
        while (!s->exited && time_mono_us() < until)
                pthread_cond_timedwait(&s->gone, &s->lock, &ts);
        left = s->exited ? 0 : s->pending;
        pthread_mutex_unlock(&s->lock);
        if (left == 0) {
                pthread_join(s->writer, NULL);
                s->started = false;
        }
        return left;
}

struct store *
store_close(struct store *s)
{
        int i;

        if (s == NULL)
                return NULL;
        (void) store_stop(s, UINT_MAX / 2);
        counts_clear(s);
        for (i = 0; i < ST_COUNT; i++)
                db_finalize(s->st[i]);
        store_pg_close(s->bulk);
        msgcache_free(s->cache);
        db_close(s->db);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->wake);
        pthread_cond_destroy(&s->gone);
        free(s->counts);
        free((char *) s->conf.path);
        free((char *) s->conf.dsn);
        if (s->conf.password)
                freezero((char *) s->conf.password, strlen(s->conf.password));
        free(s);
        return NULL;
}

int
store_connect(struct store *s, unsigned flags, struct db **ret, char **reterr)
{
        return db_open(&s->conf, flags, ret, reterr);
}

bool
store_full(struct store *s)
{
        bool full;

        pthread_mutex_lock(&s->lock);
        full = s->queued >= s->queue_size;
        pthread_mutex_unlock(&s->lock);
        return full;
}

void
store_progress(struct store *s, uint64_t *batches, bool *idle)
{
        pthread_mutex_lock(&s->lock);
        *idle = s->queued == 0 && !atomic_load(&s->busy);
        pthread_mutex_unlock(&s->lock);
        *batches = atomic_load(&s->batches);
}

uint64_t
store_commits(const struct store *s)
{
        return atomic_load(&((struct store *) s)->commits);
}
