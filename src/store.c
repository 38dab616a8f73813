/* store: SQLite open/migrate, bounded queue, writer thread, group commit. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "corr.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

/* Built into schema.c from sql/: the schema of a new database, and the
 * upgrade steps of sql/migrate/ (index i takes version i+1 to i+2). */
extern const char store_schema_sql[];
extern const char *const store_migrations[];
extern const unsigned store_n_migrations;

/* The first schema version with the messages table: a database migrated
 * from before it gets messages filled from its events. */
#define MESSAGES_VERSION 2

enum {
        ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_EVENT, ST_QUARANTINE, ST_VALIDATION, ST_STATUS,
        ST_MSG_BY_MESSAGE, ST_MSG_BY_MAILING, ST_MSG_INSERT, ST_MSG_UPDATE, ST_MSG_DELETE, ST_EVENT_MESSAGE,
        ST_COUNT_ADD, ST_PRUNE_COUNTS, ST_PRUNE_ZERO, ST_PRUNE_EVENTS, ST_PRUNE_MESSAGES, ST_PRUNE_CURSOR,
        ST_COUNT
};

#define PRUNE_BATCH 1000

struct store {
        sqlite3 *db;
        char *path;
        sqlite3_stmt *st[ST_COUNT];

        pthread_t writer;
        bool started;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        struct store_job *head, *tail;
        unsigned queued, queue_size;
        bool stopping;
        bool failing;                   /* last transaction failed: log recovery once */
        atomic_bool failing_now;        /* the same, for other threads */
        atomic_uint_fast64_t commits;
        atomic_uint_fast64_t batches;   /* written, committed or not: progress */
        atomic_bool busy;               /* writing a batch now */

        unsigned retention_days;        /* 0: keep forever */
        uint64_t pruned_events, pruned_messages;        /* this retention pass */
        sqlite3_int64 prune_cursor;     /* messages are walked by id, PRUNE_BATCH a step */

        char *wal_path;                 /* and its identity when opened: see files_moved() */
        dev_t wal_dev;
        ino_t wal_ino;
};

static int
exec(sqlite3 *db, const char *sql, char **reterr, const char *path)
{
        char *msg = NULL;

        if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
                return 0;
        *reterr = xasprintf("%s: %s", path, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -EIO;
}

static int
user_version(sqlite3 *db)
{
        sqlite3_stmt *st;
        int v = -1;

        if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
                return -1;
        if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return v;
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
        int latest = store_schema_version(), v, r;

        *from = v = user_version(s->db);
        if (v < 0) {
                *reterr = xasprintf("%s: cannot read the schema version: %s", s->path, sqlite3_errmsg(s->db));
                return -EIO;
        }
        if (v > latest) {
                *reterr = xasprintf("%s: schema version %d is newer than this slhookd knows (%d)",
                                    s->path, v, latest);
                return -EPROTO;
        }
        if (v == 0)
                return exec(s->db, store_schema_sql, reterr, s->path);
        for (; v < latest; v++) {
                if (v - 1 >= (int) store_n_migrations) {
                        *reterr = xasprintf("%s: no upgrade step from schema version %d", s->path, v);
                        return -EPROTO;
                }
                if ((r = exec(s->db, store_migrations[v - 1], reterr, s->path)) < 0)
                        return r;
        }
        return 0;
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
msg_sql(int which)
{
        struct buf b = { 0 };
        int i;

        switch (which) {
        case ST_MSG_BY_MESSAGE:
        case ST_MSG_BY_MAILING:
                buf_puts(&b, "SELECT id, ");
                msg_columns(&b, ", ", "");
                /* The id test lets the planner pick the partial unique index. */
                buf_puts(&b, which == ST_MSG_BY_MESSAGE
                         ? " FROM messages WHERE message_id = ?1 AND address = ?2 AND server_id = ?3"
                           " AND message_id IS NOT NULL"
                         : " FROM messages WHERE mailing_id IS ?1 AND address = ?2 AND server_id = ?3"
                           " AND message_id IS NULL");
                break;
        case ST_MSG_INSERT:
                buf_puts(&b, "INSERT INTO messages (server_id, message_id, address, is_test, ");
                msg_columns(&b, ", ", "");
                buf_puts(&b, ") VALUES (?, ?, ?, ?");
                for (i = 0; i < MSG_NCOLS; i++)
                        buf_puts(&b, ", ?");
                buf_puts(&b, ")");
                break;
        default:
                buf_puts(&b, "UPDATE messages SET ");
                msg_columns(&b, ", ", " = ?");
                buf_puts(&b, " WHERE id = ?");
                break;
        }
        return b.data;
}

static int
prepare(struct store *s, char **reterr)
{
        char *dyn[ST_COUNT] = { 0 };
        const char *sql[ST_COUNT] = {
                [ST_BEGIN] = "BEGIN IMMEDIATE",
                [ST_COMMIT] = "COMMIT",
                [ST_ROLLBACK] = "ROLLBACK",
                [ST_QUARANTINE] = "INSERT INTO quarantine (received_at, endpoint, peer, reason, raw, digest) "
                                  "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING",
                [ST_VALIDATION] = "INSERT INTO webhook_status (endpoint, last_validation_at, last_validation_peer) "
                                  "VALUES (?, ?, ?) ON CONFLICT (endpoint) DO UPDATE SET "
                                  "last_validation_at = excluded.last_validation_at, "
                                  "last_validation_peer = excluded.last_validation_peer",
                [ST_STATUS] = "INSERT INTO webhook_status (endpoint, webhook_id, registered_at, last_test_at, "
                              "last_test_result, last_test_step, last_test_http_status, last_test_rtt_ms, "
                              "last_error, last_passed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
                              "ON CONFLICT (endpoint) DO UPDATE SET "
                              "webhook_id = coalesce(excluded.webhook_id, webhook_id), "
                              "registered_at = coalesce(excluded.registered_at, registered_at), "
                              "last_test_at = excluded.last_test_at, last_test_result = excluded.last_test_result, "
                              "last_test_step = excluded.last_test_step, "
                              "last_test_http_status = excluded.last_test_http_status, "
                              "last_test_rtt_ms = excluded.last_test_rtt_ms, last_error = excluded.last_error, "
                              "last_passed_at = coalesce(excluded.last_passed_at, last_passed_at)",
                [ST_MSG_DELETE] = "DELETE FROM messages WHERE id = ?",
                [ST_EVENT_MESSAGE] = "UPDATE events SET message = ? WHERE id = ?",
                [ST_COUNT_ADD] = "INSERT INTO event_counts (hour, type, events) VALUES (substr(?1, 1, 13), ?2, 1) "
                                 "ON CONFLICT (hour, type) DO UPDATE SET events = events + 1",
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
                                    "(SELECT id FROM messages WHERE id > ?1 ORDER BY id LIMIT ?2)",
        };
        int i, r = 0;

        sql[ST_EVENT] = dyn[ST_EVENT] = insert_event_sql();
        for (i = ST_MSG_BY_MESSAGE; i <= ST_MSG_UPDATE; i++)
                sql[i] = dyn[i] = msg_sql(i);
        for (i = 0; i < ST_COUNT; i++)
                if (sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) != SQLITE_OK) {
                        *reterr = xasprintf("%s: cannot prepare statement: %s", s->path, sqlite3_errmsg(s->db));
                        r = -EIO;
                        break;
                }
        for (i = 0; i < ST_COUNT; i++)
                free(dyn[i]);
        return r;
}

static int messages_rebuild(struct store *s, char **reterr);

int
store_open(const char *path, bool synchronous_full, struct store **ret, char **reterr)
{
        struct store *s = xcalloc(1, sizeof(*s));
        pthread_condattr_t ca;
        struct stat st;
        char *pragmas;
        int r, from;

        s->path = xstrdup(path);
        pthread_mutex_init(&s->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&s->wake, &ca);
        pthread_condattr_destroy(&ca);
        if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE, NULL) != SQLITE_OK) {
                *reterr = xasprintf("%s: cannot open database: %s", path,
                                    s->db ? sqlite3_errmsg(s->db) : "out of memory");
                r = -EIO;
                goto fail;
        }
        sqlite3_busy_timeout(s->db, 5000);
        /* SQLite's automatic checkpoint (every 1,000 pages) is kept: every
         * 10,000 gave the writer 20% more events/s but each checkpoint then
         * stalled it for ~20 ms (p99 6 -> 24 ms); bench/README.md. */
        /* 8 KiB pages (a new database only; set before WAL mode writes the
         * header): fewer page writes per commit, 12% more events/s from the
         * writer and 5-8% more over HTTP than SQLite's 4 KiB (bench/README.md). */
        /* journal_size_limit: a WAL that grew while a long reader kept the
         * checkpoint from restarting it shrinks back at the next restart. */
        pragmas = xasprintf("PRAGMA page_size = 8192; PRAGMA journal_mode = WAL; PRAGMA synchronous = %s; "
                            "PRAGMA journal_size_limit = %d; PRAGMA foreign_keys = ON;",
                            synchronous_full ? "FULL" : "NORMAL", STORE_WAL_LIMIT);
        r = exec(s->db, pragmas, reterr, path);
        free(pragmas);

        if (r < 0)
                goto fail;
        /* Migration, statements and the messages backfill: all or nothing. */
        if ((r = exec(s->db, "BEGIN IMMEDIATE", reterr, path)) < 0)
                goto fail;
        if ((r = migrate(s, &from, reterr)) < 0 || (r = prepare(s, reterr)) < 0)
                goto rollback;
        if (from > 0 && from < MESSAGES_VERSION && (r = messages_rebuild(s, reterr)) < 0)
                goto rollback;
        if ((r = exec(s->db, "COMMIT", reterr, path)) < 0)
                goto rollback;
        s->wal_path = xasprintf("%s-wal", path);
        if (stat(s->wal_path, &st) == 0) {
                s->wal_dev = st.st_dev;
                s->wal_ino = st.st_ino;
        }
        *ret = s;
        return 0;
rollback:
        (void) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
fail:
        store_close(s);
        return r;
}

static void
bind_text(sqlite3_stmt *st, int i, const char *v)
{
        if (v)
                sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
        else
                sqlite3_bind_null(st, i);
}

/* Run one prepared statement to completion; returns the rows it changed or -1. */
static int
run(struct store *s, sqlite3_stmt *st)
{
        int rc = sqlite3_step(st);

        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_DONE)
                return -1;
        return sqlite3_changes(s->db);
}

/* Read a messages row (columns from first on) into m; the strings stay
 * valid until st is reset. */
static void
msg_load(struct corr_msg *m, sqlite3_stmt *st, int i)
{
        const char *t;
        int k;

        m->mailing_id = (const char *) sqlite3_column_text(st, i++);
        m->state = corr_state((const char *) sqlite3_column_text(st, i++));
        for (k = 0; k < CT_COUNT; k++, i++)
                if ((t = (const char *) sqlite3_column_text(st, i)) != NULL)
                        snprintf(m->t[k], TIME_ISO_LEN, "%s", t);
        for (k = 0; k < CC_COUNT; k++)
                m->n[k] = sqlite3_column_int64(st, i++);
        m->failure_type = (const char *) sqlite3_column_text(st, i++);
        m->has_failure_code = sqlite3_column_type(st, i) != SQLITE_NULL;
        m->failure_code = sqlite3_column_int64(st, i++);
        m->reason = (const char *) sqlite3_column_text(st, i++);
}

/* Bind m from parameter i on; returns the next parameter. */
static int
msg_bind(sqlite3_stmt *st, int i, const struct corr_msg *m)
{
        int k;

        bind_text(st, i++, m->mailing_id);
        bind_text(st, i++, m->state);
        for (k = 0; k < CT_COUNT; k++)
                bind_text(st, i++, m->t[k][0] ? m->t[k] : NULL);
        for (k = 0; k < CC_COUNT; k++)
                sqlite3_bind_int64(st, i++, m->n[k]);
        bind_text(st, i++, m->failure_type);
        if (m->has_failure_code)
                sqlite3_bind_int64(st, i++, m->failure_code);
        else
                sqlite3_bind_null(st, i++);
        bind_text(st, i++, m->reason);
        return i;
}

/* The event's message row: found (*id set, m loaded, borrowing find's row
 * until find is reset) or not (*id 0, m empty). Returns find, or NULL when
 * the event belongs to no message, or on error (*id -1). */
static sqlite3_stmt *
message_find(struct store *s, const struct event *ev, struct corr_key *k, struct corr_msg *m, sqlite3_int64 *id)
{
        sqlite3_stmt *find;
        int rc;

        *id = 0;
        corr_init(m);
        if (!corr_key(ev, k))
                return NULL;
        find = s->st[k->message_id ? ST_MSG_BY_MESSAGE : ST_MSG_BY_MAILING];
        bind_text(find, 1, k->message_id ? k->message_id : k->mailing_id);
        bind_text(find, 2, k->address);
        sqlite3_bind_int64(find, 3, k->server_id);
        rc = sqlite3_step(find);
        if (rc == SQLITE_ROW) {
                *id = sqlite3_column_int64(find, 0);
                msg_load(m, find, 1);
        } else if (rc != SQLITE_DONE) {
                sqlite3_reset(find);
                *id = -1;
                return NULL;
        }
        return find;
}

/* Create the row of a message seen for the first time, with ev applied. */
static sqlite3_int64
message_create(struct store *s, const struct event *ev, const struct corr_key *k, struct corr_msg *m,
               const char *received_at)
{
        sqlite3_stmt *st = s->st[ST_MSG_INSERT];

        corr_apply(m, ev, received_at);
        sqlite3_bind_int64(st, 1, k->server_id);
        bind_text(st, 2, k->message_id);
        bind_text(st, 3, k->address);
        sqlite3_bind_int(st, 4, ev->is_test);
        msg_bind(st, 5, m);
        return run(s, st) == 1 ? sqlite3_last_insert_rowid(s->db) : -1;
}

static int
message_update(struct store *s, const struct event *ev, struct corr_msg *m, sqlite3_int64 id,
               const char *received_at)
{
        sqlite3_stmt *st = s->st[ST_MSG_UPDATE];

        corr_apply(m, ev, received_at);
        sqlite3_bind_int64(st, msg_bind(st, 1, m), id);
        return run(s, st) < 0 ? -1 : 0;
}

/* Store a mail event and keep its message's row: the row is found (or
 * created) first, so that the event links to it. Returns the rows inserted
 * (0: a redelivery, which changes no message) or -1. */
static int
store_mail(struct store *s, const struct store_job *job, const struct event *ev)
{
        sqlite3_stmt *st = s->st[ST_EVENT], *find;
        struct corr_key k;
        struct corr_msg m;
        sqlite3_int64 id;
        bool created = false;
        int i = 1, c, n = -1;

        find = message_find(s, ev, &k, &m, &id);
        if (id < 0)
                return -1;
        if (find && id == 0) {
                if ((id = message_create(s, ev, &k, &m, job->received_at)) < 0)
                        goto out;
                created = true;
        }
        bind_text(st, i++, job->received_at);
        bind_text(st, i++, job->endpoint);
        bind_text(st, i++, ev->type);
        bind_text(st, i++, ev->wire_type);
        bind_text(st, i++, ev->occurred_at[0] ? ev->occurred_at : NULL);
        bind_text(st, i++, ev->meta);
        bind_text(st, i++, ev->tags);
        sqlite3_bind_int(st, i++, ev->is_test);
        bind_text(st, i++, job->peer);
        sqlite3_bind_text(st, i++, ev->raw, (int) ev->raw_len, SQLITE_STATIC);
        bind_text(st, i++, ev->digest);
        if (id > 0)
                sqlite3_bind_int64(st, i++, id);
        else
                sqlite3_bind_null(st, i++);
        for (c = 0; c < EVS_COUNT; c++)
                bind_text(st, i++, ev->str[c]);
        for (c = 0; c < EVN_COUNT; c++) {
                if (ev->has_num[c])
                        sqlite3_bind_int64(st, i++, ev->num[c]);
                else
                        sqlite3_bind_null(st, i++);
        }
        if ((n = run(s, st)) < 0)
                goto out;
        if (n == 1 && ev->occurred_at[0]) {
                bind_text(s->st[ST_COUNT_ADD], 1, ev->occurred_at);
                bind_text(s->st[ST_COUNT_ADD], 2, ev->type);
                if (run(s, s->st[ST_COUNT_ADD]) < 0)
                        n = -1;
        }
        if (n == 1 && id > 0 && !created && message_update(s, ev, &m, id, job->received_at) < 0)
                n = -1;
        if (n == 0 && created) {
                /* A redelivery of an event whose message retention removed. */
                sqlite3_bind_int64(s->st[ST_MSG_DELETE], 1, id);
                if (run(s, s->st[ST_MSG_DELETE]) < 0)
                        n = -1;
        }
out:
        if (find)
                sqlite3_reset(find);
        return n;
}

static int
store_event(struct store *s, const struct store_job *job, const struct event *ev)
{
        sqlite3_stmt *st = s->st[ST_QUARANTINE];
        int i = 1;

        if (ev->kind != EVENT_QUARANTINE)
                return store_mail(s, job, ev);
        bind_text(st, i++, job->received_at);
        bind_text(st, i++, job->endpoint);
        bind_text(st, i++, job->peer);
        bind_text(st, i++, ev->reason);
        sqlite3_bind_text(st, i++, ev->raw, (int) ev->raw_len, SQLITE_STATIC);
        bind_text(st, i++, ev->digest);
        return run(s, st);
}

/* Link an event already stored to its message (the upgrade below). */
static int
message_link(struct store *s, const struct event *ev, sqlite3_int64 event_id, const char *received_at)
{
        sqlite3_stmt *find, *st = s->st[ST_EVENT_MESSAGE];
        struct corr_key k;
        struct corr_msg m;
        sqlite3_int64 id;

        find = message_find(s, ev, &k, &m, &id);
        if (find == NULL)
                return id < 0 ? -1 : 0;
        if (id == 0)
                id = message_create(s, ev, &k, &m, received_at);
        else if (message_update(s, ev, &m, id, received_at) < 0)
                id = -1;
        sqlite3_reset(find);
        if (id < 0)
                return -1;
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, event_id);
        return run(s, st) < 0 ? -1 : 0;
}

/* Fill messages from the events already stored (upgrade from a schema
 * without it), in id order as the writer would have. */
static int
messages_rebuild(struct store *s, char **reterr)
{
        static const char sql[] =
                "SELECT type, occurred_at, received_at, is_test, server_id, message_id, mailing_id, "
                "address, failure_type, failure_code, reason, id FROM events ORDER BY id";
        sqlite3_stmt *st;
        uint64_t n = 0;
        int rc;

        if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
                goto fail;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct event ev = { .kind = EVENT_MAIL };
                const char *t;

                ev.type = (const char *) sqlite3_column_text(st, 0);
                if ((t = (const char *) sqlite3_column_text(st, 1)) != NULL)
                        snprintf(ev.occurred_at, sizeof(ev.occurred_at), "%s", t);
                ev.is_test = sqlite3_column_int(st, 3) != 0;
                ev.has_num[EVN_SERVER_ID] = sqlite3_column_type(st, 4) != SQLITE_NULL;
                ev.num[EVN_SERVER_ID] = sqlite3_column_int64(st, 4);
                ev.str[EVS_MESSAGE_ID] = (const char *) sqlite3_column_text(st, 5);
                ev.str[EVS_MAILING_ID] = (const char *) sqlite3_column_text(st, 6);
                ev.str[EVS_ADDRESS] = (const char *) sqlite3_column_text(st, 7);
                ev.str[EVS_FAILURE_TYPE] = (const char *) sqlite3_column_text(st, 8);
                ev.has_num[EVN_FAILURE_CODE] = sqlite3_column_type(st, 9) != SQLITE_NULL;
                ev.num[EVN_FAILURE_CODE] = sqlite3_column_int64(st, 9);
                ev.str[EVS_REASON] = (const char *) sqlite3_column_text(st, 10);
                if (ev.type == NULL || message_link(s, &ev, sqlite3_column_int64(st, 11),
                                                    (const char *) sqlite3_column_text(st, 2)) < 0)
                        break;
                n++;
        }
        sqlite3_finalize(st);
        if (rc == SQLITE_DONE) {
                if (n)
                        log_full(LOG_NOTICE, LOG_MID_STORE, NULL, "%s: message states filled from %llu events",
                                 s->path, (unsigned long long) n);
                return 0;
        }
fail:
        *reterr = xasprintf("%s: cannot fill messages from events: %s", s->path, sqlite3_errmsg(s->db));
        return -EIO;
}

static int
store_job_rows(struct store *s, struct store_job *job)
{
        size_t i;
        int n;

        job->stored = job->duplicates = job->quarantined = 0;
        if (job->validation) {
                sqlite3_stmt *st = s->st[ST_VALIDATION];

                bind_text(st, 1, job->endpoint);
                bind_text(st, 2, job->received_at);
                bind_text(st, 3, job->peer);
                if (run(s, st) < 0)
                        return -1;
        }
        if (job->status) {
                const struct store_webhook_status *w = job->status;
                sqlite3_stmt *st = s->st[ST_STATUS];

                bind_text(st, 1, job->endpoint);
                bind_text(st, 2, w->webhook_id);
                bind_text(st, 3, w->registered ? job->received_at : NULL);
                bind_text(st, 4, job->received_at);
                bind_text(st, 5, w->passed ? "passed" : "failed");
                bind_text(st, 6, w->step);
                if (w->http_status > 0)
                        sqlite3_bind_int64(st, 7, w->http_status);
                else
                        sqlite3_bind_null(st, 7);
                if (w->rtt_ms >= 0)
                        sqlite3_bind_double(st, 8, w->rtt_ms);
                else
                        sqlite3_bind_null(st, 8);
                bind_text(st, 9, w->passed ? NULL : w->error);
                bind_text(st, 10, w->passed ? job->received_at : NULL);
                if (run(s, st) < 0)
                        return -1;
        }
        for (i = 0; job->batch && i < job->batch->n; i++) {
                struct event *ev = &job->batch->v[i];

                if (ev->kind == EVENT_VALIDATION)
                        continue;
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
        return 0;
}

/* Whether the database file or its WAL was deleted or replaced since it was
 * opened: a COMMIT would then go to a file nobody will open again. (SQLite
 * keeps the WAL while any connection is open, so its file stays the one
 * store_open saw.) */
static bool
files_moved(struct store *s)
{
        struct stat st;
        int moved = 0;

        if (sqlite3_file_control(s->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) != SQLITE_OK || moved)
                return true;
        return s->wal_ino && (stat(s->wal_path, &st) < 0 || st.st_ino != s->wal_ino || st.st_dev != s->wal_dev);
}

/* The system's error behind a failed write: the WAL's, else the database
 * file's (sqlite3_system_errno() reads errno too late to be sure of it). */
static int
last_errno(struct store *s)
{
        sqlite3_file *wal = NULL;
        int e = 0;

        if (sqlite3_file_control(s->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal) == SQLITE_OK &&
            wal && wal->pMethods && wal->pMethods->xFileControl(wal, SQLITE_FCNTL_LAST_ERRNO, &e) == SQLITE_OK && e)
                return e;
        if (sqlite3_file_control(s->db, "main", SQLITE_FCNTL_LAST_ERRNO, &e) == SQLITE_OK && e)
                return e;
        return 0;
}

/* One transaction over jobs [first, end). Returns 0 or -EIO. */
static int
transaction(struct store *s, struct store_job *first, struct store_job *end)
{
        int64_t t0 = time_mono_us();
        struct store_job *j;
        unsigned jobs = 0;
        bool moved = false;
        size_t i;

        if (run(s, s->st[ST_BEGIN]) < 0)
                goto fail;
        for (j = first; j != end; j = j->next, jobs++)
                if (store_job_rows(s, j) < 0)
                        goto fail;
        if ((moved = files_moved(s)) || run(s, s->st[ST_COMMIT]) < 0)
                goto fail;
        atomic_fetch_add(&s->commits, 1);
        metrics_commit(time_mono_us() - t0, jobs);
        for (j = first; j != end; j = j->next)
                for (i = 0; j->batch && i < j->batch->n; i++)
                        if (j->batch->v[i].outcome)
                                metrics_event(j->endpoint, j->batch->v[i].kind == EVENT_QUARANTINE ? NULL :
                                              j->batch->v[i].type, j->batch->v[i].outcome - 1);
        if (s->failing) {
                s->failing = false;
                atomic_store(&s->failing_now, false);
                log_full(LOG_NOTICE, LOG_MID_STORE, NULL, "storage works again: %s", s->path);
        }
        return 0;
fail:
        if (!s->failing) {
                int rc = sqlite3_errcode(s->db) & 0xff;
                int e = !moved && (rc == SQLITE_IOERR || rc == SQLITE_FULL || rc == SQLITE_CANTOPEN) ? last_errno(s) : 0;

                s->failing = true;
                atomic_store(&s->failing_now, true);
                log_full(LOG_ERR, LOG_MID_STORE, NULL, "storage failed, answering 503: %s: %s%s%s%s", s->path,
                         moved ? "the database file or its -wal was deleted or replaced while open; put it back, "
                                 "or stop slhookd, move the files aside and start it again" : sqlite3_errmsg(s->db),
                         e ? " (" : "", e ? strerror(e) : "", e ? ")" : "");
        }
        if (!sqlite3_get_autocommit(s->db))
                (void) run(s, s->st[ST_ROLLBACK]);
        return -EIO;
}

static void
write_batch(struct store *s, struct store_job *head)
{
        struct store_job *j, *next;
        int r;

        r = transaction(s, head, NULL);
        if (r < 0 && head->next) {
                /* Keep one bad job from failing the others: one transaction each. */
                for (j = head; j; j = j->next)
                        j->result = transaction(s, j, j->next);
        } else
                for (j = head; j; j = j->next)
                        j->result = r;
        for (j = head; j; j = next) {
                next = j->next;
                j->next = NULL;
                j->done(j);
        }
}

/* Where the next walk over messages starts, and whether it wraps. */
static int
prune_cursor(struct store *s, sqlite3_int64 *next, bool *wrapped)
{
        sqlite3_stmt *st = s->st[ST_PRUNE_CURSOR];
        int rc;

        sqlite3_bind_int64(st, 1, s->prune_cursor);
        sqlite3_bind_int(st, 2, PRUNE_BATCH);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                *next = sqlite3_column_int64(st, 0);
                *wrapped = sqlite3_column_int(st, 1) < PRUNE_BATCH;
        }
        sqlite3_reset(st);
        return rc == SQLITE_ROW ? 0 : -1;
}

/* One retention step: up to PRUNE_BATCH events received before `before`,
 * and the messages with no event received since among the next PRUNE_BATCH
 * of the walk over messages, in one transaction. */
int
store_prune(struct store *s, const char *before, uint64_t *ret_events, uint64_t *ret_messages)
{
        sqlite3_stmt *ev = s->st[ST_PRUNE_EVENTS], *msg = s->st[ST_PRUNE_MESSAGES], *cnt = s->st[ST_PRUNE_COUNTS];
        sqlite3_int64 next = 0;
        bool wrapped = true;
        int ne, nm;

        *ret_events = *ret_messages = 0;
        if (run(s, s->st[ST_BEGIN]) < 0)
                return -EIO;
        bind_text(cnt, 1, before);
        sqlite3_bind_int(cnt, 2, PRUNE_BATCH);
        bind_text(ev, 1, before);
        sqlite3_bind_int(ev, 2, PRUNE_BATCH);
        bind_text(msg, 1, before);
        sqlite3_bind_int(msg, 2, PRUNE_BATCH);
        sqlite3_bind_int64(msg, 3, s->prune_cursor);
        if (run(s, cnt) < 0 || (ne = run(s, ev)) < 0 || (ne > 0 && run(s, s->st[ST_PRUNE_ZERO]) < 0) ||
            prune_cursor(s, &next, &wrapped) < 0 || (nm = run(s, msg)) < 0 ||
            run(s, s->st[ST_COMMIT]) < 0) {
                if (!sqlite3_get_autocommit(s->db))
                        (void) run(s, s->st[ST_ROLLBACK]);
                return -EIO;
        }
        s->prune_cursor = wrapped ? 0 : next;
        *ret_events = (uint64_t) ne;
        *ret_messages = (uint64_t) nm;
        return ne == PRUNE_BATCH || !wrapped;
}

/* Re-parse one quarantined payload; move it into events when it now parses.
 * Returns 1 moved, 0 kept, -1 on a database error. */
static int
replay_one(struct store *s, sqlite3_stmt *get, sqlite3_stmt *del, sqlite3_stmt *upd)
{
        struct store_job job = { 0 };
        struct event_batch b;
        struct event *ev;
        char *err = NULL;
        const char *raw = (const char *) sqlite3_column_text(get, 4);
        int r = 0;

        job.endpoint = (const char *) sqlite3_column_text(get, 2);
        job.peer = (const char *) sqlite3_column_text(get, 3);
        snprintf(job.received_at, sizeof(job.received_at), "%s", (const char *) sqlite3_column_text(get, 1));
        if (raw == NULL || job.endpoint == NULL)
                return 0;
        if (event_parse(raw, (size_t) sqlite3_column_bytes(get, 4), false, &b, &err) < 0) {
                free(err);
                return 0;
        }
        ev = &b.v[0];
        sqlite3_bind_int64(del, 1, sqlite3_column_int64(get, 0));
        sqlite3_bind_int64(upd, 2, sqlite3_column_int64(get, 0));
        if (b.n == 1 && ev->kind == EVENT_MAIL) {
                if (job.peer && strcmp(job.peer, EVENT_TEST_PEER) == 0)
                        ev->is_test = true;
                event_digest(ev, job.endpoint);
                r = store_event(s, &job, ev) < 0 || run(s, del) < 0 ? -1 : 1;
        } else if (b.n == 1 && ev->kind == EVENT_QUARANTINE) {
                bind_text(upd, 1, ev->reason);  /* the current parser's reason */
                r = run(s, upd) < 0 ? -1 : 0;
        }
        sqlite3_reset(del);
        sqlite3_reset(upd);
        event_batch_done(&b);
        return r;
}

int
store_replay_quarantine(struct store *s, unsigned *moved, unsigned *kept)
{
        sqlite3_stmt *get = NULL, *del = NULL, *upd = NULL;
        sqlite3_int64 last = 0;
        int r = 0, rc, k, n;

        *moved = *kept = 0;
        if (sqlite3_prepare_v2(s->db, "SELECT id, received_at, endpoint, peer, raw FROM quarantine "
                               "WHERE id > ? ORDER BY id LIMIT 100", -1, &get, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(s->db, "DELETE FROM quarantine WHERE id = ?", -1, &del, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(s->db, "UPDATE quarantine SET reason = ? WHERE id = ?", -1, &upd, NULL) != SQLITE_OK) {
                r = -EIO;
                goto out;
        }
        /* 100 rows a transaction, so a running daemon never waits long. */
        do {
                if (run(s, s->st[ST_BEGIN]) < 0) {
                        r = -EIO;
                        goto out;
                }
                sqlite3_bind_int64(get, 1, last);
                for (n = 0; (rc = sqlite3_step(get)) == SQLITE_ROW; n++) {
                        last = sqlite3_column_int64(get, 0);
                        if ((k = replay_one(s, get, del, upd)) < 0)
                                break;
                        if (k)
                                (*moved)++;
                        else
                                (*kept)++;
                }
                sqlite3_reset(get);
                if (rc != SQLITE_DONE || run(s, s->st[ST_COMMIT]) < 0) {
                        if (!sqlite3_get_autocommit(s->db))
                                (void) run(s, s->st[ST_ROLLBACK]);
                        r = -EIO;
                        goto out;
                }
        } while (n > 0);
out:
        sqlite3_finalize(get);
        sqlite3_finalize(del);
        sqlite3_finalize(upd);
        return r;
}

const char *
store_error(const struct store *s)
{
        return sqlite3_errmsg(s->db);
}

/* Writer side of retention: one batch, then the delay until the next. */
static int64_t
retention_step(struct store *s)
{
        char before[TIME_ISO_LEN];
        uint64_t ne, nm;
        int r;

        time_format_iso(time_now_us() - (int64_t) s->retention_days * 86400 * 1000000, before);
        r = store_prune(s, before, &ne, &nm);
        if (r < 0) {
                log_full(LOG_WARNING, LOG_MID_STORE, NULL, "retention: cannot delete old events: %s: %s",
                         s->path, sqlite3_errmsg(s->db));
                return 60 * 1000000;
        }
        s->pruned_events += ne;
        s->pruned_messages += nm;
        if (r > 0)
                return 100 * 1000;      /* more to do: again soon, between batches */
        if (s->pruned_events || s->pruned_messages)
                log_full(LOG_INFO, LOG_MID_STORE, NULL,
                         "retention: deleted %llu events and %llu messages received before %s",
                         (unsigned long long) s->pruned_events, (unsigned long long) s->pruned_messages, before);
        s->pruned_events = s->pruned_messages = 0;
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
                pthread_cond_signal(&s->wake);
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

void
store_stop(struct store *s)
{
        if (s == NULL || !s->started)
                return;
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->writer, NULL);
        s->started = false;
}

struct store *
store_close(struct store *s)
{
        int i;

        if (s == NULL)
                return NULL;
        store_stop(s);
        for (i = 0; i < ST_COUNT; i++)
                sqlite3_finalize(s->st[i]);
        if (s->db)
                sqlite3_close(s->db);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->wake);
        free(s->path);
        free(s->wal_path);
        free(s);
        return NULL;
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
store_stats(struct store *s, unsigned *queued, bool *failing)
{
        pthread_mutex_lock(&s->lock);
        *queued = s->queued;
        pthread_mutex_unlock(&s->lock);
        *failing = atomic_load(&s->failing_now);
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
