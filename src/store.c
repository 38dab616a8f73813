/* store: SQLite open/migrate, bounded queue, writer thread, group commit. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"
#include "store.h"

extern const char store_schema_sql[];   /* sql/schema.sql, built into schema.c */

/* Upgrade steps from sql/migrate/, index i takes version i+1 to i+2. */
static const char *const migrations[] = { NULL };
#define N_MIGRATIONS 0

enum { ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_EVENT, ST_QUARANTINE, ST_VALIDATION, ST_COUNT };

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
        atomic_uint_fast64_t commits;
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

static int
schema_version(void)
{
        const char *p = strstr(store_schema_sql, "PRAGMA user_version = ");

        return p ? atoi(p + 22) : -1;
}

/* Bring the database to the current schema, in one transaction. */
static int
migrate(struct store *s, char **reterr)
{
        int latest = schema_version(), v, r;

        if (exec(s->db, "BEGIN IMMEDIATE", reterr, s->path) < 0)
                return -EIO;
        v = user_version(s->db);
        if (v < 0) {
                *reterr = xasprintf("%s: cannot read the schema version: %s", s->path, sqlite3_errmsg(s->db));
                r = -EIO;
                goto fail;
        }
        if (v > latest) {
                *reterr = xasprintf("%s: schema version %d is newer than this slhookd knows (%d)",
                                    s->path, v, latest);
                r = -EPROTO;
                goto fail;
        }
        if (v == 0) {
                if ((r = exec(s->db, store_schema_sql, reterr, s->path)) < 0)
                        goto fail;
        } else {
                for (; v < latest; v++) {
                        if (v - 1 >= N_MIGRATIONS || migrations[v - 1] == NULL) {
                                *reterr = xasprintf("%s: no upgrade step from schema version %d", s->path, v);
                                r = -EPROTO;
                                goto fail;
                        }
                        if ((r = exec(s->db, migrations[v - 1], reterr, s->path)) < 0)
                                goto fail;
                }
        }
        if ((r = exec(s->db, "COMMIT", reterr, s->path)) < 0)
                goto fail;
        return 0;
fail:
        (void) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return r;
}

static char *
insert_event_sql(void)
{
        struct buf cols = { 0 }, vals = { 0 };
        char *sql;
        size_t i;

        buf_puts(&cols, "received_at, endpoint, type, wire_type, occurred_at, meta, tags, is_test, peer, raw, digest");
        buf_puts(&vals, "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?");
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

static int
prepare(struct store *s, char **reterr)
{
        char *ev_sql = insert_event_sql();
        const char *sql[ST_COUNT] = {
                [ST_BEGIN] = "BEGIN IMMEDIATE",
                [ST_COMMIT] = "COMMIT",
                [ST_ROLLBACK] = "ROLLBACK",
                [ST_EVENT] = ev_sql,
                [ST_QUARANTINE] = "INSERT INTO quarantine (received_at, endpoint, peer, reason, raw, digest) "
                                  "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING",
                [ST_VALIDATION] = "INSERT INTO webhook_status (endpoint, last_validation_at, last_validation_peer) "
                                  "VALUES (?, ?, ?) ON CONFLICT (endpoint) DO UPDATE SET "
                                  "last_validation_at = excluded.last_validation_at, "
                                  "last_validation_peer = excluded.last_validation_peer",
        };
        int i, r = 0;

        for (i = 0; i < ST_COUNT; i++)
                if (sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) != SQLITE_OK) {
                        *reterr = xasprintf("%s: cannot prepare statement: %s", s->path, sqlite3_errmsg(s->db));
                        r = -EIO;
                        break;
                }
        free(ev_sql);
        return r;
}

int
store_open(const char *path, bool synchronous_full, struct store **ret, char **reterr)
{
        struct store *s = xcalloc(1, sizeof(*s));
        char *pragmas;
        int r;

        s->path = xstrdup(path);
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->wake, NULL);
        if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE, NULL) != SQLITE_OK) {
                *reterr = xasprintf("%s: cannot open database: %s", path,
                                    s->db ? sqlite3_errmsg(s->db) : "out of memory");
                r = -EIO;
                goto fail;
        }
        sqlite3_busy_timeout(s->db, 5000);
        pragmas = xasprintf("PRAGMA journal_mode = WAL; PRAGMA synchronous = %s; PRAGMA foreign_keys = ON;",
                            synchronous_full ? "FULL" : "NORMAL");
        r = exec(s->db, pragmas, reterr, path);
        free(pragmas);
        if (r < 0)
                goto fail;
        if ((r = migrate(s, reterr)) < 0 || (r = prepare(s, reterr)) < 0)
                goto fail;
        *ret = s;
        return 0;
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

static int
store_event(struct store *s, const struct store_job *job, const struct event *ev)
{
        sqlite3_stmt *st;
        int i = 1, k;

        if (ev->kind == EVENT_QUARANTINE) {
                st = s->st[ST_QUARANTINE];
                bind_text(st, i++, job->received_at);
                bind_text(st, i++, job->endpoint);
                bind_text(st, i++, job->peer);
                bind_text(st, i++, ev->reason);
                sqlite3_bind_text(st, i++, ev->raw, (int) ev->raw_len, SQLITE_STATIC);
                bind_text(st, i++, ev->digest);
                return run(s, st);
        }
        st = s->st[ST_EVENT];
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
        for (k = 0; k < EVS_COUNT; k++)
                bind_text(st, i++, ev->str[k]);
        for (k = 0; k < EVN_COUNT; k++) {
                if (ev->has_num[k])
                        sqlite3_bind_int64(st, i++, ev->num[k]);
                else
                        sqlite3_bind_null(st, i++);
        }
        return run(s, st);
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
        for (i = 0; job->batch && i < job->batch->n; i++) {
                const struct event *ev = &job->batch->v[i];

                if (ev->kind == EVENT_VALIDATION)
                        continue;
                if ((n = store_event(s, job, ev)) < 0)
                        return -1;
                if (n == 0)
                        job->duplicates++;
                else if (ev->kind == EVENT_QUARANTINE)
                        job->quarantined++;
                else
                        job->stored++;
        }
        return 0;
}

/* One transaction over jobs [first, end). Returns 0 or -EIO. */
static int
transaction(struct store *s, struct store_job *first, struct store_job *end)
{
        struct store_job *j;

        if (run(s, s->st[ST_BEGIN]) < 0)
                goto fail;
        for (j = first; j != end; j = j->next)
                if (store_job_rows(s, j) < 0)
                        goto fail;
        if (run(s, s->st[ST_COMMIT]) < 0)
                goto fail;
        atomic_fetch_add(&s->commits, 1);
        if (s->failing) {
                s->failing = false;
                log_full(LOG_NOTICE, LOG_MID_STORE, NULL, "storage works again: %s", s->path);
        }
        return 0;
fail:
        if (!s->failing) {
                s->failing = true;
                log_full(LOG_ERR, LOG_MID_STORE, NULL, "storage failed, answering 503: %s: %s",
                         s->path, sqlite3_errmsg(s->db));
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

static void *
writer_main(void *arg)
{
        struct store *s = arg;
        struct store_job *batch;

        pthread_mutex_lock(&s->lock);
        for (;;) {
                while (s->head == NULL && !s->stopping)
                        pthread_cond_wait(&s->wake, &s->lock);
                if (s->head == NULL)
                        break;
                /* Everything that queued while we were busy is one batch. */
                batch = s->head;
                s->head = s->tail = NULL;
                s->queued = 0;
                pthread_mutex_unlock(&s->lock);
                write_batch(s, batch);
                pthread_mutex_lock(&s->lock);
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

int
store_start(struct store *s, unsigned queue_size)
{
        int r;

        s->queue_size = queue_size;
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
        free(s);
        return NULL;
}

uint64_t
store_commits(const struct store *s)
{
        return atomic_load(&((struct store *) s)->commits);
}
