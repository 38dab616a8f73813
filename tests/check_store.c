/* store: migration, rows, dedup, bounded queue, group commit, failure. */
#include "config.h"

#include <pthread.h>

#include <sqlite3.h>

#include "lib.h"
#include "msgcache.h"
#include "store.h"
#include "walbuf.h"

static char *dir, *db;
static struct store *st;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int done_count, hold, holding;

static void
setup(void)
{
        char *err = NULL;

        dir = t_tmpdir();
        db = xasprintf("%s/events.db", dir);
        ck_assert_msg(store_open(T_SQLITE(db, true), &st, &err) == 0, "%s", err);
        done_count = hold = holding = 0;
}

static void
teardown(void)
{
        store_close(st);
        t_rm_rf(dir);
        free(db);
        free(dir);
}

static void
on_done(struct store_job *job)
{
        pthread_mutex_lock(&mu);
        done_count++;
        if (hold) {
                holding = 1;
                pthread_cond_broadcast(&cv);
                while (hold)
                        pthread_cond_wait(&cv, &mu);
        }
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
}

static void
wait_done(int n)
{
        pthread_mutex_lock(&mu);
        while (done_count < n)
                pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
}

static struct store_job *
job_new(const char *body)
{
        struct store_job *j = xcalloc(1, sizeof(*j));
        char *err = NULL;
        size_t i;

        j->batch = xcalloc(1, sizeof(*j->batch));
        ck_assert_msg(event_parse(body, strlen(body), false, j->batch, &err) == 0, "%s", err);
        for (i = 0; i < j->batch->n; i++) {
                event_digest(&j->batch->v[i], "main");
                j->validation |= j->batch->v[i].kind == EVENT_VALIDATION;
        }
        j->endpoint = "main";
        j->peer = "127.0.0.1";
        time_now_iso(j->received_at);
        j->done = on_done;
        return j;
}

static void
job_free(struct store_job *j)
{
        event_batch_done(j->batch);
        free(j->batch);
        free(j);
}

#define query(sql) t_query(db, sql)
#define exec_rw(sql) t_exec(db, sql)

START_TEST(test_migrate)
{
        struct store *again = NULL;
        char *err = NULL, *other = xasprintf("%s/from-schema.db", dir), *cmd;

        ck_assert_int_eq(query("PRAGMA user_version"), store_schema_version());
        ck_assert_int_eq(query("SELECT count(*) FROM sqlite_master WHERE name IN "
                               "('events','quarantine','webhook_status','messages','async_bounces',"
                               "'suppressions')"), 6);
        ck_assert_int_eq(query("SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"), 1);
        ck_assert_int_eq(query("PRAGMA page_size"), 8192);     /* a new database */
        /* Opening again migrates nothing and fails nothing. */
        ck_assert_msg(store_open(T_SQLITE(db, true), &again, &err) == 0, "%s", err);
        store_close(again);
        ck_assert_int_eq(query("PRAGMA user_version"), store_schema_version());

        /* sql/schema.sql, applied by sqlite3 itself, gives the same schema. */
        cmd = xasprintf("sqlite3 '%s' < '%s'", other, SCHEMA_SQL);
        ck_assert_int_eq(system(cmd), 0);
        free(cmd);
        cmd = xasprintf("test \"$(sqlite3 '%s' 'SELECT sql FROM sqlite_master ORDER BY name')\" = "
                        "\"$(sqlite3 '%s' 'SELECT sql FROM sqlite_master ORDER BY name')\"", other, db);
        ck_assert_int_eq(system(cmd), 0);
        free(cmd);
        free(other);
}
END_TEST

/* A database made by the first release: its events survive the upgrade
 * and their messages and bounces are filled in. */
START_TEST(test_migrate_from_v1)
{
        struct store *old = NULL;
        char *err = NULL, *v1 = xasprintf("%s/v1.db", dir), *fresh = xasprintf("%s/fresh.db", dir), *cmd;
        static const char rows[] =
                "INSERT INTO events (received_at, endpoint, type, wire_type, occurred_at, server_id, "
                "message_id, mailing_id, address, failure_type, failure_code, reason, is_test, raw, digest) VALUES "
                "('2025-03-06T09:00:01.000000Z','main','Failed','Failed','2025-03-06T09:00:00.000000Z',40111,"
                " 'o1','M','bob@example.org','Permanent',2001,'550 user unknown',0,'{}','d1'),"
                "('2025-03-06T09:00:02.000000Z','main','Sent','Delivered','2025-03-04T08:15:41.000000Z',40111,"
                " 'o1','M','BOB@example.org',NULL,NULL,NULL,0,'{}','d2'),"
                /* tests/data/delivered.json as schema 1 stored it: SHA-256 digest */
                "('2025-03-06T09:00:04.000000Z','main','Sent','Delivered','2025-03-04T08:15:41.773000Z',40111,"
                " 'o5521-r1','ORDERSHIP','alice@example.net',NULL,NULL,NULL,0,'{}',"
                " '89dba062c3073d00e5a08673a9c400f8a1f6f9048956800fb92d170165cbc347'),"
                "('2025-03-06T09:00:03.000000Z','main','Sent','Delivered','2025-03-04T08:15:41.000000Z',40111,"
                " 'SampleMessageId','M','t@example.org',NULL,NULL,NULL,1,'{}','d3');";

        cmd = xasprintf("sqlite3 '%s' < '%s/schema-v1.sql' && sqlite3 '%s' \"%s\"", v1, TEST_DATA_DIR, v1, rows);
        ck_assert_int_eq(system(cmd), 0);
        free(cmd);
        ck_assert_int_eq(t_query(v1, "PRAGMA user_version"), 1);
        ck_assert_msg(store_open(T_SQLITE(v1, true), &old, &err) == 0, "%s", err);
        store_close(old);
        ck_assert_int_eq(t_query(v1, "PRAGMA user_version"), store_schema_version());
        ck_assert_int_eq(t_query(v1, "PRAGMA page_size"), 4096);       /* an existing one keeps its pages */
        ck_assert_int_eq(t_query(v1, "SELECT count(*) FROM events"), 4);
        ck_assert_int_eq(t_query(v1, "SELECT count(*) FROM messages WHERE is_test = 0"), 2);
        ck_assert_int_eq(t_query(v1, "SELECT count(*) FROM events WHERE message IS NULL"), 0);
        ck_assert_int_eq(t_query(v1, "SELECT sum(events) FROM event_counts"), 4);
        ck_assert_int_eq(t_query(v1, "SELECT delay_seconds FROM async_bounces WHERE message_id = 'o1'"), 175459);
        ck_assert_int_eq(t_query(v1, "SELECT count(*) FROM events WHERE address = 'bob@EXAMPLE.org'"), 2);
        /* The upgraded schema is the fresh one, statement for statement. */
        /* A redelivery of an event schema 1 stored is still recognised. */
        ck_assert_msg(store_open(T_SQLITE(v1, true), &old, &err) == 0, "%s", err);
        ck_assert_int_eq(store_start(old, 8, 0), 0);
        {
                char *body = t_data("delivered.json");
                struct store_job *j = job_new(body);

                ck_assert_int_eq(store_submit(old, j), 0);
                wait_done(1);
                ck_assert_int_eq(j->result, 0);
                ck_assert_int_eq(j->duplicates, 1);
                job_free(j);
                free(body);
        }
        store_close(old);
        ck_assert_int_eq(t_query(v1, "SELECT count(*) FROM events"), 4);
        cmd = xasprintf("sqlite3 '%s' < '%s' && test \"$(sqlite3 '%s' 'SELECT sql FROM sqlite_master ORDER BY name')\" = "
                        "\"$(sqlite3 '%s' 'SELECT sql FROM sqlite_master ORDER BY name')\"", fresh, SCHEMA_SQL, fresh, v1);
        ck_assert_int_eq(system(cmd), 0);
        free(cmd);
        free(fresh);
        free(v1);
}
END_TEST

static void
count_call(void *arg)
{
        (*(int *) arg)++;
}

/* Schema 5 to 6 rebuilds events (ids, rows and the redelivery check kept),
 * and while it runs the caller hears from it now and then (slhookd tells
 * systemd that start-up goes on). */
START_TEST(test_migrate_rebuild)
{
        char *path = xasprintf("%s/v5.db", dir), *cmd, *err = NULL;
        struct db_conf c = *T_SQLITE(path, true);
        struct store *old = NULL;
        int calls = 0;

        ck_assert_msg(store_open(&c, &old, &err) == 0, "%s", err);
        store_close(old);
        cmd = xasprintf("sqlite3 '%s' \"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000) "
                        "INSERT INTO events (received_at, endpoint, type, wire_type, occurred_at, raw, digest) "
                        "SELECT 'r', 'main', 'Sent', 'Delivered', printf('2025-03-04T08:%%02d:00.000000Z', i %% 60), "
                        "'{}', printf('%%016x', i) FROM n; DELETE FROM events WHERE id = 7; DROP TABLE forward_cursors; DROP TABLE health_counts; DROP TABLE health_hours; PRAGMA user_version = 5;\"",
                        path);
        ck_assert_int_eq(system(cmd), 0);
        free(cmd);
        c.upgrading = count_call;
        c.upgrading_arg = &calls;
        ck_assert_msg(store_open(&c, &old, &err) == 0, "%s", err);
        store_close(old);
        ck_assert_int_gt(calls, 0);
        ck_assert_int_eq(t_query(path, "PRAGMA user_version"), store_schema_version());
        ck_assert_int_eq(t_query(path, "SELECT count(*) FROM events"), 29999);
        ck_assert_int_eq(t_query(path, "SELECT count(*) FROM events WHERE id = 7"), 0);
        /* Schema 8 filled health_counts from the events there. */
        ck_assert_int_eq(t_query(path, "SELECT n FROM health_counts WHERE hour = '2025-03-04T08' AND server_id = 0 "
                                       "AND mailing_id = '' AND kind = 'sent'"), 29999);
        ck_assert_int_eq(t_query(path, "SELECT count(*) FROM health_counts"), 1);
        /* Schema 9 summed them per (hour, ServerId). */
        ck_assert_int_eq(t_query(path, "SELECT sent FROM health_hours WHERE hour = '2025-03-04T08' AND server_id = 0 "
                                       "AND failed_permanent + opens = 0"), 29999);
        ck_assert_int_eq(t_query(path, "SELECT count(*) FROM health_hours"), 1);
        ck_assert_int_eq(t_query(path, "SELECT max(id) FROM events"), 30000);
        ck_assert_int_eq(t_query(path, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check <> 'ok'"), 0);
        /* The digest is still unique. */
        cmd = xasprintf("sqlite3 '%s' \"INSERT INTO events (received_at, endpoint, type, wire_type, occurred_at, raw, "
                        "digest) VALUES ('r', 'main', 'Sent', 'Delivered', '2025-03-04T08:01:00.000000Z', '{}', "
                        "printf('%%016x', 1))\" 2>/dev/null", path);
        ck_assert_int_ne(system(cmd), 0);
        free(cmd);
        free(path);
}
END_TEST

/* Schema 3 to 4: a message one of whose events is a test becomes a test
 * message (schema 3 kept the first event's flag). */
START_TEST(test_migrate_test_messages)
{
        struct store *old = NULL;
        char *err = NULL, *path = xasprintf("%s/v3.db", dir), *cmd;

        ck_assert_msg(store_open(T_SQLITE(path, true), &old, &err) == 0, "%s", err);
        store_close(old);
        cmd = xasprintf("sqlite3 '%s' \"INSERT INTO messages (id, server_id, message_id, address, is_test, state, "
                        "first_at, last_at, updated_at, events) VALUES "
                        "(1, 7, 'm1', 'a@example.com', 0, 'Sent', 'x', 'x', 'x', 2), "
                        "(2, 7, 'm2', 'b@example.com', 0, 'Sent', 'x', 'x', 'x', 1); "
                        "INSERT INTO events (received_at, endpoint, type, wire_type, is_test, raw, digest, message) VALUES "
                        "('x', 'main', 'Sent', 'Sent', 0, '{}', 'd1', 1), ('x', 'main', 'Failed', 'Failed', 1, '{}', 'd2', 1), "
                        "('x', 'main', 'Sent', 'Sent', 0, '{}', 'd3', 2); DROP TABLE forward_cursors; DROP TABLE health_counts; DROP TABLE health_hours; PRAGMA user_version = 3;\"", path);
        ck_assert_int_eq(system(cmd), 0);
        free(cmd);
        ck_assert_msg(store_open(T_SQLITE(path, true), &old, &err) == 0, "%s", err);
        store_close(old);
        ck_assert_int_eq(t_query(path, "PRAGMA user_version"), store_schema_version());
        ck_assert_int_eq(t_query(path, "SELECT count(*) FROM messages WHERE is_test = 1 AND message_id = 'm1'"), 1);
        ck_assert_int_eq(t_query(path, "SELECT count(*) FROM messages WHERE is_test = 0 AND message_id = 'm2'"), 1);
        free(path);
}
END_TEST

START_TEST(test_newer_schema_refused)
{
        struct store *again = NULL;
        char *err = NULL;

        exec_rw("PRAGMA user_version = 99");
        ck_assert_int_lt(store_open(T_SQLITE(db, true), &again, &err), 0);
        ck_assert_msg(strstr(err, "schema version 99 is newer") != NULL, "%s", err);
        ck_assert_ptr_nonnull(strstr(err, db));
        free(err);
}
END_TEST

/* A redelivery is stored once with a DateTime (unique through (type,
 * occurred_at, digest)) and without one (its own index), in one batch too. */
START_TEST(test_dedup_undated)
{
        static const char undated[] = "{\"SecretKey\":\"k\",\"Type\":\"Delivered\",\"ServerId\":1,"
                                      "\"MessageId\":\"u1\",\"Address\":\"u@example.org\"}";
        static const char dated[] = "{\"SecretKey\":\"k\",\"Type\":\"Delivered\",\"ServerId\":1,"
                                    "\"DateTime\":\"2025-03-04T08:15:41Z\",\"MessageId\":\"u1\","
                                    "\"Address\":\"u@example.org\"}";
        struct store_job *j[6];
        int i;

        ck_assert_int_eq(store_start(st, 64, 0), 0);
        j[0] = job_new(undated);
        j[1] = job_new(dated);
        ck_assert_int_eq(store_submit(st, j[0]), 0);
        ck_assert_int_eq(store_submit(st, j[1]), 0);
        wait_done(2);
        for (i = 2; i < 6; i++) {
                j[i] = job_new(i % 2 ? dated : undated);
                ck_assert_int_eq(store_submit(st, j[i]), 0);
        }
        wait_done(6);
        for (i = 0; i < 6; i++) {
                ck_assert_int_eq(j[i]->result, 0);
                ck_assert_uint_eq(j[i]->stored, i < 2);
                ck_assert_uint_eq(j[i]->duplicates, i >= 2);
                job_free(j[i]);
        }
        ck_assert_int_eq(query("SELECT count(*) FROM events"), 2);
        ck_assert_int_eq(query("SELECT count(*) FROM events WHERE occurred_at IS NULL"), 1);
        ck_assert_int_eq(query("SELECT events FROM messages WHERE message_id = 'u1'"), 2);
}
END_TEST

START_TEST(test_rows_and_dedup)
{
        char *queued = t_data("queued.json"), *failed = t_data("failed.json");
        struct store_job *a, *b, *c, *d, *v;

        ck_assert_int_eq(store_start(st, 64, 0), 0);
        a = job_new(queued);
        b = job_new(failed);
        c = job_new(queued);            /* redelivery */
        d = job_new("{\"SecretKey\":\"k\",\"ServerId\":1}");
        v = job_new("{\"Type\":\"Validation\",\"SecretKey\":\"k\"}");
        ck_assert_int_eq(store_submit(st, a), 0);
        ck_assert_int_eq(store_submit(st, b), 0);
        wait_done(2);
        ck_assert_int_eq(store_submit(st, c), 0);
        ck_assert_int_eq(store_submit(st, d), 0);
        ck_assert_int_eq(store_submit(st, v), 0);
        wait_done(5);
        ck_assert_int_eq(a->result, 0);
        ck_assert_uint_eq(a->stored, 1);
        ck_assert_uint_eq(c->stored, 0);
        ck_assert_uint_eq(c->duplicates, 1);
        ck_assert_uint_eq(d->quarantined, 1);
        ck_assert_int_eq(query("SELECT count(*) FROM events"), 2);
        ck_assert_int_eq(query("SELECT count(*) FROM quarantine WHERE reason LIKE '%Type%missing%'"), 1);
        ck_assert_int_eq(query("SELECT count(*) FROM webhook_status WHERE endpoint = 'main' "
                               "AND last_validation_at IS NOT NULL"), 1);
        ck_assert_int_eq(query("SELECT message_size FROM events WHERE type = 'Queued'"), 18432);
        ck_assert_int_eq(query("SELECT failure_code FROM events WHERE type = 'Failed' "
                               "AND failure_type = 'Permanent' AND server_id = 40111"), 2001);
        ck_assert_int_eq(query("SELECT count(*) FROM events WHERE raw LIKE '%" T_SECRET "%'"), 0);
        ck_assert_int_eq(query("SELECT count(*) FROM events WHERE occurred_at = '2025-03-04T08:15:02.512003Z'"), 1);
        job_free(a);
        job_free(b);
        job_free(c);
        job_free(d);
        job_free(v);
        free(queued);
        free(failed);
}
END_TEST

START_TEST(test_group_commit_and_bounded_queue)
{
        struct store_job *first, *jobs[40], *extra;
        uint64_t before;
        int i;

        ck_assert_int_eq(store_start(st, 40, 0), 0);
        /* Hold the writer inside the first job's callback. */
        hold = 1;
        first = job_new("{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"MessageId\":\"first\"}");
        ck_assert_int_eq(store_submit(st, first), 0);
        pthread_mutex_lock(&mu);
        while (!holding)
                pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
        before = store_commits(st);

        for (i = 0; i < 40; i++) {
                char *body = xasprintf("{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"MessageId\":\"m%d\"}", i);

                jobs[i] = job_new(body);
                ck_assert_int_eq(store_submit(st, jobs[i]), 0);
                free(body);
        }
        extra = job_new("{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"MessageId\":\"extra\"}");
        ck_assert_int_eq(store_submit(st, extra), -EAGAIN);     /* bounded: 40 waiting */

        pthread_mutex_lock(&mu);
        hold = 0;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
        wait_done(41);
        /* The 40 jobs that queued while the writer was busy took one COMMIT. */
        ck_assert_uint_eq(store_commits(st) - before, 1);
        for (i = 0; i < 40; i++) {
                ck_assert_int_eq(jobs[i]->result, 0);
                job_free(jobs[i]);
        }
        ck_assert_int_eq(query("SELECT count(*) FROM events"), 41);
        job_free(first);
        job_free(extra);
}
END_TEST

START_TEST(test_failure_and_recovery)
{
        struct store_job *a, *b, *c;

        ck_assert_int_eq(store_start(st, 8, 0), 0);
        exec_rw("CREATE TRIGGER fail BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk trouble'); END");
        a = job_new("{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"MessageId\":\"a\"}");
        ck_assert_int_eq(store_submit(st, a), 0);
        wait_done(1);
        ck_assert_int_eq(a->result, -EIO);
        ck_assert_int_eq(query("SELECT count(*) FROM events"), 0);

        exec_rw("DROP TRIGGER fail");
        b = job_new("{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"MessageId\":\"a\"}");
        ck_assert_int_eq(store_submit(st, b), 0);
        wait_done(2);
        ck_assert_int_eq(b->result, 0);
        ck_assert_int_eq(query("SELECT count(*) FROM events"), 1);

        /* After stop, nothing more is taken. */
        store_stop(st, 60);
        c = job_new("{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"MessageId\":\"c\"}");
        ck_assert_int_eq(store_submit(st, c), -ESHUTDOWN);
        job_free(a);
        job_free(b);
        job_free(c);
}
END_TEST

/* One job, run to its end: its result. */
static int
store_one(const char *body)
{
        struct store_job *j = job_new(body);
        int r, want;

        pthread_mutex_lock(&mu);
        want = done_count + 1;
        pthread_mutex_unlock(&mu);
        ck_assert_int_eq(store_submit(st, j), 0);
        wait_done(want);
        r = j->result;
        job_free(j);
        return r;
}

#define EV(type, id, when) "{\"Type\":\"" type "\",\"SecretKey\":\"k\",\"ServerId\":7,\"MessageId\":\"" id "\"," \
                           "\"Address\":\"Ann@Example.com\",\"DateTime\":\"2026-01-31T10:0" when ":00Z\"}"

/* The writer's cache of message rows never outlives what the table holds:
 * a transaction that fails takes its changes to the cache with it. */
START_TEST(test_msgcache_rollback)
{
        ck_assert_int_eq(store_start(st, 8, 0), 0);
        exec_rw("CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.message_id = 'boom' "
                "BEGIN SELECT RAISE(ABORT, 'disk trouble'); END");
        ck_assert_int_eq(store_one(EV("Queued", "m1", "0")), 0);
        /* One job: m1's Sent, then an event that fails the transaction. */
        ck_assert_int_eq(store_one("[" EV("Delivered", "m1", "1") "," EV("Queued", "boom", "1") "]"), -EIO);
        ck_assert_int_eq(store_one(EV("Tracking", "m1", "2")), 0);
        ck_assert_int_eq(query("SELECT count(*) FROM events WHERE message_id = 'm1'"), 2);
        /* Not 3 events and a sent_at: the Sent was never stored. */
        ck_assert_int_eq(query("SELECT events FROM messages WHERE message_id = 'm1'"), 2);
        ck_assert_int_eq(query("SELECT count(*) FROM messages WHERE message_id = 'm1' AND sent_at IS NULL "
                               "AND state = 'Queued'"), 1);
}
END_TEST

/* ... and a row another connection deleted or changed (slhookctl prune,
 * quarantine replay) is read again. */
START_TEST(test_msgcache_other_writer)
{
        ck_assert_int_eq(store_start(st, 8, 0), 0);
        ck_assert_int_eq(store_one(EV("Queued", "m2", "0")), 0);
        ck_assert_int_eq(store_one(EV("Deferred", "m3", "0")), 0);
        exec_rw("DELETE FROM messages WHERE message_id = 'm2'");
        exec_rw("UPDATE messages SET deferred_count = 5 WHERE message_id = 'm3'");
        ck_assert_int_eq(store_one(EV("Delivered", "m2", "1")), 0);
        ck_assert_int_eq(store_one(EV("Deferred", "m3", "1")), 0);
        ck_assert_int_eq(query("SELECT count(*) FROM events e JOIN messages m ON m.id = e.message "
                               "WHERE e.message_id = 'm2' AND e.type = 'Sent'"), 1);
        ck_assert_int_eq(query("SELECT events FROM messages WHERE message_id = 'm2'"), 1);
        ck_assert_int_eq(query("SELECT deferred_count FROM messages WHERE message_id = 'm3'"), 6);
}
END_TEST

/* The cache alone: keys as messages' unique indexes compare them (address
 * without ASCII case), its own copies of the strings, two generations. */
/* sqlite3 one-value query on c. */
static sqlite3_int64
lite_one(sqlite3 *c, const char *sql)
{
        sqlite3_stmt *q = NULL;
        sqlite3_int64 v;

        ck_assert_msg(sqlite3_prepare_v2(c, sql, -1, &q, NULL) == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(c));
        ck_assert_msg(sqlite3_step(q) == SQLITE_ROW, "%s: %s", sql, sqlite3_errmsg(c));
        v = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
        return v;
}

/* The WAL write buffer: transactions from one row to several buffers' worth
 * (a full buffer, writes split for the default VFS), rolled back ones (their
 * frames overwritten), checkpoints that restart the WAL; after every commit
 * another connection, through the default VFS, sees exactly what was
 * committed, and the file is whole at the end. */
START_TEST(test_walbuf)
{
        char *path = xasprintf("%s/walbuf.db", dir);
        sqlite3 *w = NULL, *r = NULL;
        sqlite3_file *wal = NULL, *main = NULL;
        sqlite3_int64 rows = 0, bytes = 0;
        unsigned seed = 7;
        int i, n;

        ck_assert_int_eq(walbuf_register(), SQLITE_OK);
        ck_assert_int_eq(sqlite3_open_v2(path, &w, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, WALBUF_VFS), SQLITE_OK);
        ck_assert_int_eq(sqlite3_exec(w, "PRAGMA page_size = 8192; PRAGMA journal_mode = WAL; "
                                      "PRAGMA synchronous = FULL; PRAGMA cache_size = 20; "
                                      "CREATE TABLE t (n INTEGER, b BLOB);", NULL, NULL, NULL), SQLITE_OK);
        /* The WAL has the buffer's methods, the database file the default's. */
        ck_assert_int_eq(sqlite3_file_control(w, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal), SQLITE_OK);
        ck_assert_int_eq(sqlite3_file_control(w, "main", SQLITE_FCNTL_FILE_POINTER, &main), SQLITE_OK);
        ck_assert(wal && main && wal->pMethods && main->pMethods && wal->pMethods != main->pMethods);
        ck_assert_int_eq(sqlite3_open_v2(path, &r, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        for (i = 0; i < 60; i++) {
                /* 1 row up to 300 rows of 10 KiB: 3 MiB, three buffers. */
                int k = i % 3 == 0 ? 1 : 1 + (int) (rand_r(&seed) % 300), size = 10240;
                bool commit = i % 7 != 3;
                char *sql = xasprintf("BEGIN IMMEDIATE; WITH RECURSIVE s(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM s "
                                      "WHERE v < %d) INSERT INTO t SELECT v, randomblob(%d) FROM s; %s", k, size, commit ? "COMMIT" : "ROLLBACK");

                ck_assert_msg(sqlite3_exec(w, sql, NULL, NULL, NULL) == SQLITE_OK, "%s", sqlite3_errmsg(w));
                free(sql);
                if (commit) {
                        rows += k;
                        bytes += (sqlite3_int64) k * size;
                }
                ck_assert_int_eq(lite_one(r, "SELECT count(*) FROM t"), rows);
                ck_assert_int_eq(lite_one(r, "SELECT coalesce(sum(length(b)), 0) FROM t"), bytes);
                if (i % 13 == 12)
                        ck_assert_int_eq(sqlite3_exec(w, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL), SQLITE_OK);
        }
        n = (int) lite_one(w, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check <> 'ok'");
        ck_assert_int_eq(n, 0);
        sqlite3_close(r);
        sqlite3_close(w);
        /* And read again from the files alone. */
        ck_assert_int_eq(t_query(path, "SELECT count(*) FROM t"), rows);
        free(path);
}
END_TEST

START_TEST(test_msgcache_unit)
{
        struct msgcache *c = msgcache_new(4);
        struct corr_key k1 = { .server_id = 7, .message_id = "m1", .address = "Ann@Example.com" };
        struct corr_key k1b = { .server_id = 7, .message_id = "m1", .address = "ann@example.COM" };
        struct corr_key k2 = { .server_id = 8, .message_id = "m1", .address = "ann@example.com" };
        struct corr_key k3 = { .server_id = 7, .mailing_id = "m1", .address = "ann@example.com" };
        struct corr_msg m, got;
        char reason[] = "550 no such user", key[16];
        uint64_t hits, misses;
        size_t rows;
        int i;

        corr_init(&m);
        m.reason = reason;
        m.n[CC_EVENTS] = 3;
        msgcache_put(c, &k1, 11, &m);
        reason[0] = 'X';                /* the cache holds its own copy */
        ck_assert_int_eq(msgcache_get(c, &k1b, &got), 11);
        ck_assert_str_eq(got.reason, "550 no such user");
        ck_assert_int_eq(got.n[CC_EVENTS], 3);
        ck_assert_int_eq(msgcache_get(c, &k2, &got), 0);        /* another ServerId */
        ck_assert_int_eq(msgcache_get(c, &k3, &got), 0);        /* a mailing id is not a message id */
        /* Its own strings given back to it. */
        ck_assert_int_eq(msgcache_get(c, &k1, &got), 11);
        got.n[CC_EVENTS] = 4;
        msgcache_put(c, &k1, 11, &got);
        ck_assert_int_eq(msgcache_get(c, &k1, &got), 11);
        ck_assert_str_eq(got.reason, "550 no such user");
        ck_assert_int_eq(got.n[CC_EVENTS], 4);
        /* 4 rows a generation: k1, used last, survives 4 more; a row not
         * used within 8 puts is gone; at most 8 are held. */
        corr_init(&m);
        for (i = 0; i < 12; i++) {
                struct corr_key k = { .server_id = 1, .message_id = key, .address = "x@example.com" };

                snprintf(key, sizeof(key), "k%d", i);
                msgcache_put(c, &k, 100 + i, &m);
                if (i == 3)
                        ck_assert_int_eq(msgcache_get(c, &k1, &got), 11);
        }
        msgcache_stats(c, &rows, &hits, &misses);
        ck_assert_uint_le(rows, 8);
        {
                struct corr_key old = { .server_id = 1, .message_id = "k0", .address = "x@example.com" };
                struct corr_key recent = { .server_id = 1, .message_id = "k11", .address = "X@EXAMPLE.COM" };

                ck_assert_int_eq(msgcache_get(c, &old, &got), 0);
                ck_assert_int_eq(msgcache_get(c, &recent, &got), 111);
        }
        msgcache_clear(c);
        ck_assert_int_eq(msgcache_get(c, &k1, &got), 0);
        msgcache_stats(c, &rows, &hits, &misses);
        ck_assert_uint_eq(rows, 0);
        msgcache_free(c);
}
END_TEST

START_TEST(test_open_errors)
{
        struct store *s = NULL;
        char *err = NULL;

        ck_assert_int_lt(store_open(T_SQLITE("/nonexistent-dir/x/events.db", true), &s, &err), 0);
        ck_assert_msg(strstr(err, "/nonexistent-dir/x/events.db: cannot open database") != NULL, "%s", err);
        free(err);
}
END_TEST

int
main(void)
{
        Suite *s = suite_create("store");
        TCase *tc = tcase_create("store");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_migrate);
        tcase_add_test(tc, test_migrate_from_v1);
        tcase_add_test(tc, test_migrate_test_messages);
        tcase_add_test(tc, test_migrate_rebuild);
        tcase_add_test(tc, test_newer_schema_refused);
        tcase_add_test(tc, test_rows_and_dedup);
        tcase_add_test(tc, test_dedup_undated);
        tcase_add_test(tc, test_group_commit_and_bounded_queue);
        tcase_add_test(tc, test_failure_and_recovery);
        tcase_add_test(tc, test_msgcache_rollback);
        tcase_add_test(tc, test_msgcache_other_writer);
        tcase_add_test(tc, test_msgcache_unit);
        tcase_add_test(tc, test_walbuf);
        tcase_add_test(tc, test_open_errors);
        return t_run(s, tc);
}
