/* store: the database the writer owns (see store-private.h): open it,
 * bring its schema up to date, prepare the writer's statements, close it. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "corr.h"
#include "health.h"
#include "log.h"
#include "msgcache.h"
#include "store-private.h"
#include "store_pg.h"

/* Built into schema.c from sql/: the schema of a new database, and the
 * upgrade steps (index i takes version i+1 to i+2), for each backend. */
extern const char store_schema_sql[], store_pg_schema_sql[];
extern const char *const store_migrations[], *const store_pg_migrations[];
extern const unsigned store_n_migrations, store_pg_n_migrations;

/* The first schema version with the messages table: a database migrated
 * from before it gets messages filled from its events. */
#define MESSAGES_VERSION 2

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
        if (v > 0 && v < latest) {
                /* A step may rebuild a table: minutes on a large database. */
                log_notice("%s: upgrading the schema from version %d to %d", db_name(s->db), v, latest);
                if (s->conf.upgrading)
                        db_progress(s->db, s->conf.upgrading, s->conf.upgrading_arg);
        }
        for (; v > 0 && v < latest; v++) {
                if (v < first || v - first >= (int) nsteps) {
                        *reterr = xasprintf("%s: no upgrade step from schema version %d", db_name(s->db), v);
                        db_progress(s->db, NULL, NULL);
                        return -EPROTO;
                }
                if (db_exec(s->db, steps[v - first]) < 0)
                        goto fail;
        }
        db_progress(s->db, NULL, NULL);
        return 0;
fail:
        db_progress(s->db, NULL, NULL);
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
        /* No conflict target: on SQLite the digest is unique through
         * (type, occurred_at, digest) or, without a time, its own index. */
        sql = xasprintf("INSERT INTO events (%s) VALUES (%s) ON CONFLICT DO NOTHING",
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
                [ST_HEALTH_ADD] = "INSERT INTO health_counts (hour, server_id, mailing_id, kind, n) "
                                  "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (hour, server_id, mailing_id, kind) "
                                  "DO UPDATE SET n = health_counts.n + excluded.n",
                /* What the batch of ST_PRUNE_EVENTS and the messages of
                 * ST_PRUNE_MESSAGES count in health_counts (hour, server,
                 * mailing, kind, n), read before they go and taken off. */
                [ST_PRUNE_HEALTH_EVENTS] =
                        "SELECT substr(coalesce(occurred_at, received_at), 1, 13) AS h, coalesce(server_id, 0) AS s, "
                        "       coalesce(mailing_id, '') AS g, " HEALTH_KIND_SQL " AS k, count(*) AS c FROM events "
                        " WHERE id IN (SELECT id FROM events WHERE received_at < ?1 ORDER BY received_at, id LIMIT ?2) "
                        " AND is_test = 0 GROUP BY h, s, g, k",
                [ST_PRUNE_HEALTH_MESSAGES] =
                        "WITH m AS (SELECT * FROM messages WHERE id IN (SELECT id FROM messages WHERE id > ?3 "
                        "           ORDER BY id LIMIT ?2) AND updated_at < ?1 AND is_test = 0) "
                        "SELECT h, s, g, k, count(*) AS c FROM ("
                        "  SELECT substr(opened_at, 1, 13) AS h, server_id AS s, coalesce(mailing_id, '') AS g, "
                        "         'opens' AS k FROM m WHERE opened_at IS NOT NULL "
                        "  UNION ALL SELECT substr(clicked_at, 1, 13), server_id, coalesce(mailing_id, ''), 'clicks' "
                        "         FROM m WHERE clicked_at IS NOT NULL "
                        "  UNION ALL SELECT substr(failed_at, 1, 13), server_id, coalesce(mailing_id, ''), "
                        "         'async_bounces' FROM m WHERE failed_at > sent_at "
                        "         AND coalesce(failure_type, '') <> 'Suppressed' "
                        "         AND (message_id IS NOT NULL OR mailing_id IS NOT NULL)) AS x "
                        " GROUP BY h, s, g, k",
                [ST_PRUNE_HEALTH_ZERO] = "DELETE FROM health_counts WHERE n <= 0",
                [ST_HOURS_ADD] = "INSERT INTO health_hours (hour, server_id, " HEALTH_HOURS_COLUMNS ") "
                                 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
                                 "ON CONFLICT (hour, server_id) DO UPDATE SET " HEALTH_HOURS_ADD,
                /* The writers' connections, LOCK_WRITERS held shared. */
                [ST_WRITERS] = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                               "AND mode = 'ShareLock' AND classid = ?1 AND objid = ?2 AND objsubid = 1 "
                               "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                [ST_PRUNE_HOURS_ZERO] = "DELETE FROM health_hours WHERE sent = 0 AND failed_permanent = 0 "
                                        "AND failed_temporary = 0 AND failed_suppressed = 0 AND async_bounces = 0 "
                                        "AND deferred = 0 AND complaints = 0 AND unsubscribes = 0 AND opens = 0 "
                                        "AND clicks = 0",
        };
        int i, r = 0;

        sql[ST_EVENT] = dyn[ST_EVENT] = insert_event_sql();
        if (pg(s))
                sql[ST_DATA_VERSION] = NULL;    /* SQLite's (the message cache) */
        else
                sql[ST_WRITERS] = NULL;         /* PostgreSQL's */
        if (pg(s))
                sql[ST_COUNT_ADD] = "INSERT INTO event_counts (hour, type, events) "
                                    "SELECT * FROM unnest(CAST(?1 AS text[]), CAST(?2 AS text[]), CAST(?3 AS bigint[])) "
                                    "ON CONFLICT (hour, type) DO UPDATE SET events = event_counts.events + excluded.events";
        if (pg(s))
                sql[ST_HEALTH_ADD] = "INSERT INTO health_counts (hour, server_id, mailing_id, kind, n) "
                                     "SELECT * FROM unnest(CAST(?1 AS text[]), CAST(?2 AS bigint[]), "
                                     "CAST(?3 AS text[]), CAST(?4 AS text[]), CAST(?5 AS bigint[])) "
                                     "ON CONFLICT (hour, server_id, mailing_id, kind) "
                                     "DO UPDATE SET n = health_counts.n + excluded.n";
        if (pg(s))
                sql[ST_HOURS_ADD] = "INSERT INTO health_hours (hour, server_id, " HEALTH_HOURS_COLUMNS ") "
                                    "SELECT * FROM unnest(CAST(?1 AS text[]), CAST(?2 AS bigint[]), "
                                    "CAST(?3 AS bigint[]), CAST(?4 AS bigint[]), CAST(?5 AS bigint[]), "
                                    "CAST(?6 AS bigint[]), CAST(?7 AS bigint[]), CAST(?8 AS bigint[]), "
                                    "CAST(?9 AS bigint[]), CAST(?10 AS bigint[]), CAST(?11 AS bigint[]), "
                                    "CAST(?12 AS bigint[])) "
                                    "ON CONFLICT (hour, server_id) DO UPDATE SET " HEALTH_HOURS_ADD;
        for (i = ST_MSG_BY_MESSAGE; i <= ST_MSG_UPDATE; i++)
                sql[i] = dyn[i] = msg_sql(i, pg(s));
        for (i = 0; i < ST_COUNT; i++)
                if (sql[i] && db_prepare(s->db, sql[i], 0, &s->st[i]) < 0) {
                        *reterr = xasprintf("%s: cannot prepare statement: %s", db_name(s->db), db_errmsg(s->db));
                        r = -EIO;
                        break;
                }
        for (i = 0; i < ST_COUNT; i++)
                free(dyn[i]);
        return r;
}

int
store_open(const struct db_conf *c, struct store **ret, char **reterr)
{
        struct store *s = xcalloc(1, sizeof(*s));
        struct db_conf writer_conf;
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
        s->conf.share_lock = 0;         /* store_connect()'s are not writers */
        s->writers = 1;
        writer_conf = *c;
        writer_conf.share_lock = LOCK_WRITERS;
        if ((r = db_open(&writer_conf, 0, &s->db, reterr)) < 0)
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
        if (from > 0 && from < MESSAGES_VERSION && (r = store_rows_rebuild(s, reterr)) < 0)
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

struct store *
store_close(struct store *s)
{
        int i;

        if (s == NULL)
                return NULL;
        (void) store_stop(s, UINT_MAX / 2);
        store_rows_clear(s);
        for (i = 0; i < ST_COUNT; i++)
                db_finalize(s->st[i]);
        store_pg_close(s->bulk);
        msgcache_free(s->cache);
        db_close(s->db);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->wake);
        pthread_cond_destroy(&s->gone);
        free(s->counts);
        free(s->hcounts);
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

