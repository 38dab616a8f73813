/* The PostgreSQL backend end to end: real slhookd processes on one database
 * of the throwaway cluster tests/pgtmp starts (SLHOOKD_TEST_PG). Without
 * that cluster, or in a build without libpq, the suite reports SKIP. */
#include "config.h"

#include <signal.h>
#include <sys/wait.h>

#include "daemon.h"
#include "fake_api.h"

#ifndef HAVE_POSTGRESQL
int
main(void)
{
        fprintf(stderr, "check_pg: SKIP: built without the PostgreSQL backend\n");
        return 77;
}
#else
#include <gnutls/crypto.h>
#include <sqlite3.h>

#include "pg.h"
#include "store.h"
#include "store_pg.h"

extern const char store_pg_schema_sql[];

static const char *cluster;     /* SLHOOKD_TEST_PG */
static char *dsn;               /* this test's own database */
static char *dbname;            /* its name */
static char *store_lines;       /* [store] lines for a daemon on it */

/* ---- the database ---- */

/* The one value sql answers on the test's database, as a number. */
static long long
pq(const char *sql)
{
        return pq_at(dsn, sql);
}

static void
pg_setup(void)
{
        setup();
        free(dbname);
        dbname = pg_test_db(cluster, &dsn, &store_lines);
}

static void
pg_teardown(void)
{
        teardown();
        free(dsn);
        free(store_lines);
}

/* Start a daemon on the test's database in the current d. */
static void
start_pg(void)
{
        d.store = store_lines;
        daemon_start("", "");
}

/* ---- posting ---- */

struct poster {
        pthread_t t;
        unsigned port;
        CURL *h;                        /* client(), made on the main thread */
        char **bodies;
        size_t n;
        long *status;
        atomic_bool *stop;              /* or NULL: post all */
        size_t posted;
};

static void *
poster_main(void *arg)
{
        struct poster *p = arg;
        CURL *h = p->h;
        struct curl_slist *ct = curl_slist_append(NULL, "Content-Type: application/json");
        char *url = xasprintf("https://127.0.0.1:%u/socketlabs/events", p->port);
        struct buf sink = { 0 };

        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, ct);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
        for (p->posted = 0; p->posted < p->n && !(p->stop && atomic_load(p->stop)); p->posted++) {
                long st = 0;

                curl_easy_setopt(h, CURLOPT_POSTFIELDS, p->bodies[p->posted]);
                if (curl_easy_perform(h) == CURLE_OK)
                        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
                p->status[p->posted] = st;
                sink.len = 0;
        }
        buf_done(&sink);
        curl_slist_free_all(ct);
        curl_easy_cleanup(h);
        free(url);
        return NULL;
}

static void
poster_start(struct poster *p, unsigned port, char **bodies, size_t n, atomic_bool *stop)
{
        memset(p, 0, sizeof(*p));
        p->port = port;
        p->h = client();
        p->bodies = bodies;
        p->n = n;
        p->status = xcalloc(n, sizeof(long));
        p->stop = stop;
        ck_assert_int_eq(pthread_create(&p->t, NULL, poster_main, p), 0);
}

static void
post_ok(const char *body)
{
        struct resp r = post(body);

        ck_assert_msg(r.status == 200, "%ld for %s", r.status, body);
        resp_done(&r);
}

static void
post_mail(const char *type, unsigned n, int at_s)
{
        char *body = mail_event(type, n, at_s);

        post_ok(body);
        free(body);
}

/* ---- tests ---- */

/* The PostgreSQL schema is at the version of the SQLite one. */
START_TEST(test_schema_version)
{
        const char *v = strstr(store_pg_schema_sql, "INSERT INTO slhookd_schema (version) VALUES (");

        ck_assert_ptr_nonnull(v);
        ck_assert_int_eq(atoi(v + strlen("INSERT INTO slhookd_schema (version) VALUES (")), store_schema_version());
}
END_TEST

/* The columns of every table and view, in order, with their types: one
 * text for the database dsn names. */
static char *
pg_columns(const char *conninfo)
{
        PGconn *c = pg_connect(conninfo);
        PGresult *r = PQexec(c, "SELECT string_agg(table_name || '.' || column_name || ' ' || data_type || ' ' || "
                                "is_nullable || ' ' || coalesce(column_default, ''), E'\\n' "
                                "ORDER BY table_name, ordinal_position) FROM information_schema.columns "
                                "WHERE table_schema = 'public'");
        char *v;

        ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
        v = xstrdup(PQgetvalue(r, 0, 0));
        PQclear(r);
        PQfinish(c);
        return v;
}

/* A database of schema 2 is upgraded at start-up to the columns a new one
 * gets, and keeps its rows. */
START_TEST(test_upgrade)
{
        char *old = t_data("pg-schema-v2.sql"), *fresh_dsn, *a, *b, *sql;

        pg_exec(dsn, old);
        pg_exec(dsn, "INSERT INTO webhook_status (endpoint, last_validation_at) VALUES ('main', '2026-01-01')");
        ck_assert_int_eq(pq("SELECT version FROM slhookd_schema"), 2);
        start_pg();
        ck_assert_int_eq(pq("SELECT version FROM slhookd_schema"), store_schema_version());
        ck_assert_int_eq(pq("SELECT count(*) FROM webhook_status WHERE last_validation_at = '2026-01-01' "
                            "AND test_events = 0"), 1);
        ck_assert_int_eq(daemon_stop(), 0);
        sql = xasprintf("CREATE DATABASE t_%ld_fresh", (long) getpid());
        pg_exec(cluster, sql);
        free(sql);
        fresh_dsn = xasprintf("%s dbname=t_%ld_fresh", cluster, (long) getpid());
        pg_exec(fresh_dsn, store_pg_schema_sql);
        a = pg_columns(dsn);
        b = pg_columns(fresh_dsn);
        ck_assert_msg(strcmp(a, b) == 0, "upgraded:\n%s\nnew:\n%s", a, b);
        ck_assert_ptr_nonnull(strstr(a, "webhook_status.test_events bigint NO 0"));
        free(a);
        free(b);
        free(fresh_dsn);
        free(old);
}
END_TEST

/* Two instances on one database, four clients. Every message is Queued
 * first; then its Sent goes to one instance while its Failed (a minute
 * later by event time) goes to the other at the same moment, and each is
 * delivered again to the other instance, in the opposite order (Failed
 * often before Sent). Each event is stored once, no instance's change to a
 * message is lost, and each message is an async bounce of 60 s. */
#define MSGS 400
START_TEST(test_two_instances)
{
        struct daemon a, b;
        struct poster p[4];
        char **sent = xcalloc(MSGS, sizeof(char *)), **failed = xcalloc(MSGS, sizeof(char *));
        char **sent_rev = xcalloc(MSGS, sizeof(char *)), **failed_rev = xcalloc(MSGS, sizeof(char *));
        char **queued = xcalloc(MSGS, sizeof(char *));
        unsigned i, k, ok = 0;

        start_pg();
        a = d;
        memset(&d, 0, sizeof(d));
        start_pg();
        b = d;
        for (i = 0; i < MSGS; i++) {
                queued[i] = mail_event("Queued", i, (int) i % 3000);
                sent[i] = mail_event("Delivered", i, (int) i % 3000 + 1);
                failed[i] = mail_event("Failed", i, (int) i % 3000 + 61);
                sent_rev[MSGS - 1 - i] = sent[i];
                failed_rev[MSGS - 1 - i] = failed[i];
        }
        poster_start(&p[0], a.port, queued, MSGS, NULL);
        pthread_join(p[0].t, NULL);
        for (i = 0; i < MSGS; i++)
                ck_assert_int_eq(p[0].status[i], 200);
        free(p[0].status);
        /* a: Sent in order, Failed backwards; b: Failed in order, Sent backwards. */
        poster_start(&p[0], a.port, sent, MSGS, NULL);
        poster_start(&p[1], a.port, failed_rev, MSGS, NULL);
        poster_start(&p[2], b.port, failed, MSGS, NULL);
        poster_start(&p[3], b.port, sent_rev, MSGS, NULL);
        for (k = 0; k < 4; k++) {
                pthread_join(p[k].t, NULL);
                for (i = 0; i < MSGS; i++)
                        ok += p[k].status[i] == 200;
                free(p[k].status);
        }
        ck_assert_uint_eq(ok, 4 * MSGS);
        ck_assert_int_eq(pq("SELECT count(*) FROM events"), 3 * MSGS);
        ck_assert_int_eq(pq("SELECT count(DISTINCT (message_id, type)) FROM events"), 3 * MSGS);
        ck_assert_int_eq(pq("SELECT count(*) FROM messages"), MSGS);
        ck_assert_int_eq(pq("SELECT count(*) FROM messages WHERE state = 'Failed' AND events = 3 "
                            "AND queued_at IS NOT NULL AND sent_at > queued_at AND failed_at > sent_at"), MSGS);
        ck_assert_int_eq(pq("SELECT count(*) FROM async_bounces WHERE delay_seconds = 60"), MSGS);
        ck_assert_int_eq(pq("SELECT sum(events) FROM event_counts"), 3 * MSGS);
        ck_assert_int_eq(pq("SELECT count(*) FROM events e JOIN messages m ON m.id = e.message "
                            "WHERE m.message_id = e.message_id"), 3 * MSGS);
        fprintf(stderr, "check_pg: 2 instances, 4 clients at once: %u posts of %u events, %u answered 200, "
                "%lld rows; every message Queued, Sent, Failed\n", 4 * MSGS, 2 * MSGS, ok,
                pq("SELECT count(*) FROM events") - MSGS);
        d = a;
        ck_assert_int_eq(daemon_stop(), 0);
        teardown();
        d = b;
        ck_assert_int_eq(daemon_stop(), 0);
        for (i = 0; i < MSGS; i++) {
                free(queued[i]);
                free(sent[i]);
                free(failed[i]);
        }
        free(queued);
        free(sent);
        free(failed);
        free(sent_rev);
        free(failed_rev);
}
END_TEST

/* Post events to x until its /metrics (on mport) counts want writers on
 * the database, or 100 tries (~11 s: they are counted after a batch, once
 * a second); the last count seen. */
static long
writers_seen(const struct daemon *x, unsigned mport, long want, unsigned first)
{
        struct daemon keep = d;
        long v = -1;
        unsigned i;

        d = *x;
        for (i = 0; i < 100 && v != want; i++) {
                post_mail("Queued", first + i, 0);
                if ((v = gauge(mport, "\nslhookd_store_writers ")) != want)
                        usleep(100 * 1000);
        }
        d = keep;
        return v;
}

/* Each instance counts the writers on its database (what lets a batch
 * gather when there are several, store_writer.c): one alone, two when a
 * second starts, one again once it stops. */
START_TEST(test_writers_counted)
{
        unsigned ma = free_port(), mb;
        char *sa = xasprintf("[metrics]\nlisten = 127.0.0.1:%u\n", ma), *sb;
        struct daemon a, b;

        d.store = store_lines;
        daemon_start("", sa);
        a = d;
        ck_assert_int_eq(writers_seen(&a, ma, 1, 0), 1);
        memset(&d, 0, sizeof(d));
        d.store = store_lines;
        mb = free_port();       /* once ma is taken */
        sb = xasprintf("[metrics]\nlisten = 127.0.0.1:%u\n", mb);
        daemon_start("", sb);
        b = d;
        ck_assert_int_eq(writers_seen(&b, mb, 2, 1000), 2);
        ck_assert_int_eq(writers_seen(&a, ma, 2, 2000), 2);
        ck_assert_int_eq(daemon_stop(), 0);
        teardown();
        d = a;
        ck_assert_int_eq(writers_seen(&a, ma, 1, 3000), 1);
        ck_assert_int_eq(daemon_stop(), 0);
        free(sa);
        free(sb);
}
END_TEST

/* Each event acknowledged with 200 is in the database exactly once. */
static void
assert_acked_stored(struct poster *p, size_t np, unsigned *acked)
{
        PGconn *c = pg_connect(dsn);
        size_t k, i;

        *acked = 0;
        for (k = 0; k < np; k++)
                for (i = 0; i < p[k].posted; i++) {
                        const char *id = strstr(p[k].bodies[i], "\"m-") + 1, *v[1];
                        char mid[32];
                        PGresult *r;

                        if (p[k].status[i] != 200)
                                continue;
                        snprintf(mid, sizeof(mid), "%.*s", (int) strcspn(id, "\""), id);
                        v[0] = mid;
                        r = PQexecParams(c, "SELECT count(*) FROM events WHERE message_id = $1", 1, NULL, v, NULL,
                                         NULL, 0);
                        ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
                        ck_assert_msg(strcmp(PQgetvalue(r, 0, 0), "1") == 0, "%s acknowledged, stored %s times",
                                      mid, PQgetvalue(r, 0, 0));
                        PQclear(r);
                        (*acked)++;
                }
        PQfinish(c);
}

/* One instance killed -9 in the middle of a load on both: nothing it (or
 * the other) acknowledged is lost, and the other goes on. */
START_TEST(test_kill_one)
{
        enum { N = 4000 };
        struct daemon a, b;
        struct poster p[2];
        char **ev_a = xcalloc(N, sizeof(char *)), **ev_b = xcalloc(N, sizeof(char *));
        atomic_bool stop = false;
        unsigned i, acked, tries, killed_acked;
        long long before;

        start_pg();
        a = d;
        memset(&d, 0, sizeof(d));
        start_pg();
        b = d;
        for (i = 0; i < N; i++) {
                ev_a[i] = mail_event("Delivered", i, (int) i % 3000);
                ev_b[i] = mail_event("Delivered", N + i, (int) i % 3000);
        }
        poster_start(&p[0], a.port, ev_a, N, NULL);
        poster_start(&p[1], b.port, ev_b, N, &stop);
        /* Kill a once it has stored a few hundred (bounded wait). */
        for (tries = 0; tries < 2000 && p[0].posted < 300; tries++)
                usleep(5000);
        d = a;
        daemon_kill();
        a = d;
        pthread_join(p[0].t, NULL);
        before = pq("SELECT count(*) FROM events");
        /* b still takes events after a died. */
        for (tries = 0; tries < 2000 && pq("SELECT count(*) FROM events") < before + 200; tries++)
                usleep(5000);
        atomic_store(&stop, true);
        pthread_join(p[1].t, NULL);
        ck_assert_int_ge(pq("SELECT count(*) FROM events"), before + 200);
        assert_acked_stored(p, 2, &acked);
        for (i = 0, killed_acked = 0; i < p[0].posted; i++)
                killed_acked += p[0].status[i] == 200;
        fprintf(stderr, "check_pg: kill -9 of one of 2 instances: %u events acknowledged (%u by the killed one), "
                "each stored once\n", acked, killed_acked);
        d = b;
        ck_assert_int_eq(daemon_stop(), 0);
        teardown();
        d = a;
        for (i = 0; i < N; i++) {
                free(ev_a[i]);
                free(ev_b[i]);
        }
        free(ev_a);
        free(ev_b);
        free(p[0].status);
        free(p[1].status);
}
END_TEST

/* The test's database out of reach (its sessions ended, new ones
 * refused) or back: as a server that stopped, for the daemon, without
 * stopping the cluster the other tests run on at the same time. */
static void
db_reachable(bool on)
{
        char *sql = xasprintf("ALTER DATABASE \"%s\" ALLOW_CONNECTIONS %s", dbname, on ? "true" : "false");

        /* Committed before the sessions end: in one query string both ran
         * in one transaction, and a daemon that connected again between
         * the sessions' end and that COMMIT kept a session, and stored on. */
        pg_exec(cluster, sql);
        free(sql);
        if (on)
                return;
        sql = xasprintf("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'", dbname);
        pg_exec(cluster, sql);
        free(sql);
}

/* The database out of reach under load: 503s (never a 200 for an event
 * not stored), then, once it is back, 200s again on the same daemon. */
START_TEST(test_db_restart)
{
        enum { N = 100000 };
        struct poster p;
        char **ev = xcalloc(N, sizeof(char *));
        atomic_bool stop = false;
        unsigned i, acked, tries, n503 = 0, after = 0, ok_cut;
        size_t at_stop, at_start;

        start_pg();
        for (i = 0; i < N; i++)
                ev[i] = mail_event("Delivered", i, (int) i % 3000);
        poster_start(&p, d.port, ev, N, &stop);
        for (tries = 0; tries < 2000 && p.posted < 200; tries++)
                usleep(5000);
        db_reachable(false);
        at_stop = p.posted;
        /* Until the poster has seen 503s (bounded). */
        for (tries = 0; tries < 2000; tries++) {
                for (i = at_stop, n503 = 0; i < p.posted; i++)
                        n503 += p.status[i] == 503;
                if (n503 >= 20)
                        break;
                usleep(5000);
        }
        at_start = p.posted;
        for (i = at_stop, ok_cut = 0; i < at_start; i++)
                ok_cut += p.status[i] == 200;
        db_reachable(true);
        for (tries = 0; tries < 4000; tries++) {
                for (i = at_start, after = 0; i < p.posted; i++)
                        after += p.status[i] == 200;
                if (after >= 50)
                        break;
                usleep(5000);
        }
        atomic_store(&stop, true);
        pthread_join(p.t, NULL);
        ck_assert_msg(n503 >= 20, "database cut off: %u of %zu posts answered 503, %u answered 200", n503,
                      at_start - at_stop, ok_cut);
        ck_assert_msg(after >= 50, "database back: %u of %zu posts answered 200", after, p.posted - at_start);
        for (i = 0; i < p.posted; i++)
                ck_assert_msg(p.status[i] == 200 || p.status[i] == 503, "post %u: status %ld", i, p.status[i]);
        assert_acked_stored(&p, 1, &acked);
        ck_assert_int_eq(pq("SELECT count(*) FROM events"), acked);
        still_running();
        ck_assert(log_has("storage failed, answering 503"));
        ck_assert(log_has("storage works again"));
        fprintf(stderr, "check_pg: database out of reach under load: %u answered 503 while down, %u 200 after it "
                "came back; %u acknowledged, all stored once\n", n503, after, acked);
        ck_assert_int_eq(daemon_stop(), 0);
        for (i = 0; i < N; i++)
                free(ev[i]);
        free(ev);
        free(p.status);
}
END_TEST

/* Another session holds a lock the writer needs: the request gets 503 and
 * Retry-After once lock_timeout ([store] statement_timeout, 5 s by
 * default) runs out, well before the watchdog (30 s) would kill the
 * service; once the lock goes, events are stored again. */
START_TEST(test_lock_timeout)
{
        PGconn *c;
        PGresult *r;
        bool retry_after = false;
        int64_t t0;
        long status;
        double waited;

        start_pg();
        post_mail("Delivered", 1, 1);
        c = pg_connect(dsn);
        r = PQexec(c, "BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE");
        ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
        PQclear(r);
        t0 = time_mono_us();
        {
                char *body = mail_event("Delivered", 2, 2);
                CURL *h = client();
                struct resp rp = request(h, "POST", "/socketlabs/events", body, strlen(body), "application/json");

                status = rp.status;
                retry_after = t_contains(rp.headers.data, rp.headers.len, "Retry-After: ");
                resp_done(&rp);
                curl_easy_cleanup(h);
                free(body);
        }
        waited = (double) (time_mono_us() - t0) / 1e6;
        fprintf(stderr, "check_pg: a post behind another session's lock: %ld after %.1f s\n", status, waited);
        ck_assert_msg(status == 503 && retry_after, "status %ld after %.1f s (Retry-After: %d)", status, waited,
                      retry_after);
        still_running();
        ck_assert_msg(log_has("storage failed, answering 503"), "no storage failure logged");
        r = PQexec(c, "ROLLBACK");
        PQclear(r);
        PQfinish(c);
        post_mail("Delivered", 3, 3);
        ck_assert_int_eq(pq("SELECT count(*) FROM events"), 2);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

/* Signal sig to the daemon's own sessions of the test database. */
static unsigned
signal_sessions(int sig)
{
        PGconn *c = pg_connect(dsn);
        PGresult *r = PQexec(c, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                "AND application_name = 'slhookd' AND pid <> pg_backend_pid()");
        int i, n = PQntuples(r);

        ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
        for (i = 0; i < n; i++)
                ck_assert_int_eq(kill((pid_t) atoi(PQgetvalue(r, i, 0)), sig), 0);
        PQclear(r);
        PQfinish(c);
        return (unsigned) n;
}

/* A server that stops answering (its backend stopped: as a COMMIT that
 * waits for a synchronous standby that never confirms, or a disk that
 * hangs) holds a request no longer than statement_timeout and a second:
 * 503 + Retry-After, and the daemon works again once it answers. */
START_TEST(test_db_silent)
{
        char *body = mail_event("Delivered", 2, 2);
        CURL *h;
        struct resp rp;
        bool retry_after;
        unsigned stopped;
        int64_t t0;
        long status;
        double waited;

        d.store = xasprintf("%sstatement_timeout = 1\n", store_lines);
        daemon_start("", "");
        post_mail("Delivered", 1, 1);
        stopped = signal_sessions(SIGSTOP);
        t0 = time_mono_us();
        h = client();
        rp = request(h, "POST", "/socketlabs/events", body, strlen(body), "application/json");
        waited = (double) (time_mono_us() - t0) / 1e6;
        status = rp.status;
        retry_after = t_contains(rp.headers.data, rp.headers.len, "Retry-After: ");
        resp_done(&rp);
        curl_easy_cleanup(h);
        /* Before any assertion: a stopped backend would hold the cluster's shutdown. */
        ck_assert_uint_eq(signal_sessions(SIGCONT), stopped);
        fprintf(stderr, "check_pg: a post while the database's %u sessions of the daemon were stopped: %ld after "
                "%.1f s\n", stopped, status, waited);
        ck_assert_uint_ge(stopped, 1);
        ck_assert_msg(status == 503 && retry_after, "status %ld after %.1f s (Retry-After: %d)", status, waited,
                      retry_after);
        ck_assert_msg(waited < 5, "503 after %.1f s", waited);
        ck_assert_msg(log_has("no answer from the database in 2000 ms"), "the timeout was not logged");
        still_running();
        post_ok(body);
        post_mail("Delivered", 3, 3);
        ck_assert_int_eq(pq("SELECT count(*) FROM events"), 3);
        ck_assert_int_eq(daemon_stop(), 0);
        free(body);
}
END_TEST

/* One request holding many events is one transaction, written set-based:
 * redeliveries within it and of earlier events are stored once, events of
 * one message (the address differing in case only) are applied in the
 * order they came, a message stored before is found and brought up to
 * date, messages keyed by mailing id or by address alone too; the same
 * array again changes nothing. */
START_TEST(test_batch)
{
        static const char *const ev[] = {
                "\"Type\":\"Queued\",\"DateTime\":\"2026-03-01T10:00:00Z\",\"MessageId\":\"x\",\"Address\":\"a@x.org\"",
                "\"Type\":\"Delivered\",\"DateTime\":\"2026-03-01T10:00:01Z\",\"MessageId\":\"x\",\"Address\":\"A@X.org\"",
                "\"Type\":\"Delivered\",\"DateTime\":\"2026-03-01T10:00:01Z\",\"MessageId\":\"x\",\"Address\":\"A@X.org\"",
                "\"Type\":\"Failed\",\"DateTime\":\"2026-03-01T10:01:01Z\",\"MessageId\":\"x\",\"Address\":\"a@x.org\","
                "\"FailureType\":\"Permanent\",\"FailureCode\":5001,\"Reason\":\"gone\"",
                "\"Type\":\"Delivered\",\"DateTime\":\"2026-03-01T10:00:05Z\",\"MessageId\":\"old\",\"Address\":\"o@x.org\"",
                "\"Type\":\"Open\",\"DateTime\":\"2026-03-01T11:00:00Z\",\"MailingId\":\"ml\",\"Address\":\"m@x.org\"",
                "\"Type\":\"Open\",\"DateTime\":\"2026-03-01T11:00:01Z\",\"MailingId\":\"ml\",\"Address\":\"m@x.org\"",
                "\"Type\":\"Complaint\",\"DateTime\":\"2026-03-01T12:00:00Z\",\"Address\":\"c@x.org\"",
        };
        struct buf b = { 0 };
        size_t i;

        start_pg();
        expect("{\"Type\":\"Queued\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"2026-03-01T10:00:00Z\","
               "\"ServerId\":7,\"MessageId\":\"old\",\"Address\":\"O@x.org\"}", 200);
        buf_puts(&b, "[");
        for (i = 0; i < sizeof(ev) / sizeof(ev[0]); i++)
                buf_printf(&b, "%s{\"SecretKey\":\"" T_SECRET "\",\"ServerId\":7,%s}", i ? "," : "", ev[i]);
        buf_puts(&b, "]");
        expect(b.data, 200);
        ck_assert_int_eq(pq("SELECT count(*) FROM events"), 8);
        ck_assert_int_eq(pq("SELECT count(*) FROM messages"), 4);
        ck_assert_int_eq(pq("SELECT count(*) FROM messages WHERE message_id = 'x' AND state = 'Failed' AND events = 3 "
                            "AND queued_at = '2026-03-01T10:00:00.000000Z' AND sent_at = '2026-03-01T10:00:01.000000Z' "
                            "AND failed_at = '2026-03-01T10:01:01.000000Z' AND failure_code = 5001 "
                            "AND reason = 'gone'"), 1);
        ck_assert_int_eq(pq("SELECT count(*) FROM messages WHERE message_id = 'old' AND address = 'o@x.org' "
                            "AND state = 'Sent' AND events = 2 AND queued_at IS NOT NULL"), 1);
        ck_assert_int_eq(pq("SELECT count(*) FROM messages WHERE mailing_id = 'ml' AND message_id IS NULL "
                            "AND open_count = 2 AND events = 2"), 1);
        ck_assert_int_eq(pq("SELECT count(*) FROM messages WHERE mailing_id IS NULL AND message_id IS NULL "
                            "AND address = 'c@x.org' AND complained_at IS NOT NULL"), 1);
        ck_assert_int_eq(pq("SELECT count(*) FROM events e JOIN messages m ON m.id = e.message"), 8);
        ck_assert_int_eq(pq("SELECT count(*) FROM async_bounces WHERE delay_seconds = 60"), 1);
        ck_assert_int_eq(pq("SELECT sum(events) FROM event_counts"), 8);
        /* Events keep the order they came in. */
        ck_assert_int_eq(pq("SELECT count(*) FROM (SELECT type, lag(wire_type) OVER (ORDER BY id) AS prev FROM events "
                            "WHERE message_id = 'x') AS t WHERE type = 'Failed' AND prev = 'Delivered'"), 1);
        expect(b.data, 200);
        ck_assert_int_eq(pq("SELECT count(*) FROM events"), 8);
        ck_assert_int_eq(pq("SELECT sum(events) FROM messages"), 8);
        ck_assert_int_eq(pq("SELECT sum(events) FROM event_counts"), 8);
        ck_assert_int_eq(pq("SELECT max(id) FROM events"), 8);  /* no id taken by a redelivery */
        /* 150 events in one request: more than one statement's rows (64),
         * ids in the order they came. */
        b.len = 0;
        buf_puts(&b, "[");
        for (i = 0; i < 150; i++)
                buf_printf(&b, "%s{\"Type\":\"Queued\",\"SecretKey\":\"" T_SECRET "\",\"ServerId\":7,"
                           "\"DateTime\":\"2026-03-01T10:00:00Z\",\"MessageId\":\"c-%03zu\",\"Address\":\"c@x.org\"}",
                           i ? "," : "", i);
        buf_puts(&b, "]");
        expect(b.data, 200);
        ck_assert_int_eq(pq("SELECT count(*) FROM events WHERE message_id LIKE 'c-%'"), 150);
        ck_assert_int_eq(pq("SELECT count(*) FROM messages WHERE message_id LIKE 'c-%' AND events = 1"), 150);
        ck_assert_int_eq(pq("SELECT count(*) FROM (SELECT message_id, row_number() OVER (ORDER BY id) AS r FROM events "
                            "WHERE message_id LIKE 'c-%') AS t WHERE message_id = 'c-' || lpad((r - 1)::text, 3, '0')"),
                         150);
        ck_assert_int_eq(pq("SELECT max(id) FROM events"), 158);
        ck_assert_int_eq(daemon_stop(), 0);
        buf_done(&b);
}
END_TEST

/* Another instance creates a message's row while this one's transaction
 * is about to: the insert waits for it, skips the row, and the transaction
 * runs again, finding the row and bringing it up to date. */
START_TEST(test_message_race)
{
        PGconn *c;
        PGresult *r;
        pid_t pid;
        int i, status = 0;

        start_pg();
        post_mail("Queued", 1, 0);
        c = pg_connect(dsn);
        r = PQexec(c, "BEGIN; INSERT INTO messages (server_id, message_id, address, state, first_at, last_at, "
                      "updated_at, events, queued_at) VALUES (7, 'm-2', 'rcpt2@example.com', 'Queued', "
                      "'2026-03-01T10:00:00.000000Z', '2026-03-01T10:00:00.000000Z', "
                      "'2026-03-01T10:00:00.000000Z', 1, '2026-03-01T10:00:00.000000Z')");
        ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
        PQclear(r);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                char *body = mail_event("Delivered", 2, 1);
                CURL *h = client();
                struct resp rp = request(h, "POST", "/socketlabs/events", body, strlen(body), "application/json");

                _exit(rp.status == 200 ? 0 : 1);
        }
        /* The daemon's insert waits for this transaction (10 s at most). */
        for (i = 0; i < 1000 && pq("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                   "AND query LIKE 'INSERT INTO messages%'") == 0; i++)
                usleep(10 * 1000);
        ck_assert_msg(i < 1000, "the daemon's insert did not wait for the other transaction");
        r = PQexec(c, "COMMIT");
        ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
        PQclear(r);
        PQfinish(c);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the post was not answered 200");
        ck_assert_int_eq(pq("SELECT count(*) FROM messages WHERE message_id = 'm-2'"), 1);
        ck_assert_int_eq(pq("SELECT count(*) FROM messages WHERE message_id = 'm-2' AND events = 2 AND state = 'Sent' "
                            "AND queued_at IS NOT NULL AND sent_at IS NOT NULL"), 1);
        ck_assert_int_eq(pq("SELECT count(*) FROM events e JOIN messages m ON m.id = e.message "
                            "WHERE e.message_id = 'm-2'"), 1);
        ck_assert_msg(pq("SELECT count(*) FROM events") == 2, "events stored: %lld", pq("SELECT count(*) FROM events"));
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

/* Addresses that differ only in the case of letters beyond ASCII. citext
 * folds case as the database's LC_CTYPE does: every letter in a UTF-8
 * database (Debian's default), ASCII letters only in a "C" one (each test
 * makes one of these). The store keys messages as its database does,
 * whether the two spellings come in one request or in two, and whatever
 * the kind of key: every event is stored, once, on one message row where
 * the database folds the two spellings together and on two where it does
 * not. (Before, the first Failed here was answered 503 for good: the row
 * of "Émile" was not taken for the message of "émile", whose insert then
 * hit the unique index.) */
static void
address_fold(const char *ctype)
{
        char *sql = xasprintf("CREATE DATABASE %s_c TEMPLATE template0 LC_CTYPE '%s'", dbname, ctype);
        long long folds, rows;

        pg_exec(cluster, sql);
        free(sql);
        free(dsn);
        free(store_lines);
        dsn = xasprintf("%s dbname=%s_c", cluster, dbname);
        store_lines = xasprintf("backend = postgresql\ndsn = %s\n", dsn);
        folds = pq("SELECT CAST(lower('ÉMILE') = 'émile' AS integer)");
        ck_assert_int_eq(folds, strcmp(ctype, "C") != 0);
        rows = folds ? 1 : 2;
        start_pg();
        /* One message, its events in two requests. */
        expect("{\"Type\":\"Delivered\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"2026-03-01T10:00:00Z\","
               "\"ServerId\":7,\"MessageId\":\"f1\",\"Address\":\"Émile@x.org\"}", 200);
        expect("{\"Type\":\"Failed\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"2026-03-01T10:05:00Z\","
               "\"ServerId\":7,\"MessageId\":\"f1\",\"Address\":\"émile@x.org\",\"FailureType\":\"Permanent\","
               "\"FailureCode\":5001,\"Reason\":\"gone\"}", 200);
        /* New messages, both spellings in one request: by message
         * id, by mailing id, by address alone. */
        expect("[{\"Type\":\"Queued\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"2026-03-01T10:00:00Z\","
               "\"ServerId\":7,\"MessageId\":\"f2\",\"Address\":\"Zoë@x.org\"},"
               "{\"Type\":\"Delivered\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"2026-03-01T10:00:01Z\","
               "\"ServerId\":7,\"MessageId\":\"f2\",\"Address\":\"ZOË@x.org\"},"
               "{\"Type\":\"Open\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"2026-03-01T11:00:00Z\","
               "\"ServerId\":7,\"MailingId\":\"ml\",\"Address\":\"Åsa@x.org\"},"
               "{\"Type\":\"Open\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"2026-03-01T11:00:01Z\","
               "\"ServerId\":7,\"MailingId\":\"ml\",\"Address\":\"åsa@x.org\"},"
               "{\"Type\":\"Complaint\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"2026-03-01T12:00:00Z\","
               "\"ServerId\":7,\"Address\":\"Ødegård@x.org\"},"
               "{\"Type\":\"Complaint\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"2026-03-01T12:00:01Z\","
               "\"ServerId\":7,\"Address\":\"ødegård@x.org\"}]", 200);
        ck_assert_int_eq(pq("SELECT count(*) FROM events"), 8);
        ck_assert_int_eq(pq("SELECT count(*) FROM events e JOIN messages m ON m.id = e.message"), 8);
        ck_assert_int_eq(pq("SELECT sum(events) FROM messages"), 8);
        ck_assert_int_eq(pq("SELECT count(*) FROM messages WHERE message_id = 'f1'"), rows);
        ck_assert_int_eq(pq("SELECT count(*) FROM messages WHERE message_id = 'f1' AND state = 'Failed' "
                            "AND sent_at IS NOT NULL AND failure_code = 5001"), folds);
        ck_assert_int_eq(pq("SELECT count(*) FROM messages WHERE message_id = 'f2'"), rows);
        ck_assert_int_eq(pq("SELECT count(*) FROM messages WHERE message_id = 'f2' AND state = 'Sent' "
                            "AND queued_at IS NOT NULL AND events = 2"), folds);
        ck_assert_int_eq(pq("SELECT count(*) FROM messages WHERE mailing_id = 'ml'"), rows);
        ck_assert_int_eq(pq("SELECT max(open_count) FROM messages WHERE mailing_id = 'ml'"), 2 - !folds);
        ck_assert_int_eq(pq("SELECT count(*) FROM messages WHERE mailing_id IS NULL AND message_id IS NULL"),
                         rows);
        ck_assert_int_eq(daemon_stop(), 0);
        ck_assert_int_eq(pq("SELECT count(*) FROM messages"), 4 * rows);
}

START_TEST(test_address_fold)
{
        address_fold("C.UTF-8");
}
END_TEST

START_TEST(test_address_fold_c)
{
        address_fold("C");
}
END_TEST

/* SIGHUP while requests wait behind another session's lock (each
 * statement may wait 10 s): the reload is done at once, the daemon keeps
 * running (libmicrohttpd would abort if the replaced listener stopped with
 * their connections suspended), every one of them gets 503, and the new
 * secret works once the lock goes. */
START_TEST(test_hup_behind_lock)
{
        unsigned port = free_port();
        char *metrics = xasprintf("[metrics]\nlisten = 127.0.0.1:%u\n", port);
        char *stores = xasprintf("%sstatement_timeout = 10\n", store_lines);
        struct waiters *w;
        PGconn *c;
        PGresult *r;
        int i, n503, n200, before = 0;

        d.store = stores;
        daemon_start("max_connections_per_ip = 0", metrics);
        post_mail("Delivered", 1, 1);
        c = pg_connect(dsn);
        r = PQexec(c, "BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE");
        ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
        PQclear(r);
        w = waiters_start("pghup");
        waiters_ready(w, port, NULL);
        {
                char *secret = file_in("secret");

                t_write(secret, T_SECRET "\nafter-lock\n");
                free(secret);
        }
        before = log_count("\"message\":\"reloaded ");
        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
        for (i = 0; i < 1000 && log_count("\"message\":\"reloaded ") == before; i++)
                usleep(10 * 1000);
        ck_assert_msg(log_count("\"message\":\"reloaded ") > before, "no reload while the writer waited");
        ck_assert_int_eq(atomic_load(&w->done), 0);
        waiters_answers(w, 40, &n503, &n200);
        fprintf(stderr, "check_pg: SIGHUP with %d requests behind a lock: %d answered 503, %d 200\n", WAITERS, n503,
                n200);
        ck_assert_int_eq(n503, WAITERS);
        still_running();
        r = PQexec(c, "ROLLBACK");
        PQclear(r);
        PQfinish(c);
        expect("{\"Type\":\"Queued\",\"MessageId\":\"after\",\"SecretKey\":\"after-lock\"}", 200);
        ck_assert_int_eq(pq("SELECT count(*) FROM events WHERE message_id LIKE 'pghup-%'"), 0);
        ck_assert_int_eq(daemon_stop(), 0);
        waiters_free(w);
        free(stores);
        free(metrics);
}
END_TEST

/* slhookctl's output (stdout and stderr) for args, and its exit status. */
static char *
ctl_run(const char *args, int *status)
{
        char *cmd = xasprintf("%s %s 2>&1", SLHOOKCTL_BIN, args);
        FILE *f = popen(cmd, "r");
        struct buf b = { 0 };
        char chunk[4096];
        size_t n;
        int st;

        ck_assert_ptr_nonnull(f);
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
                buf_append(&b, chunk, n);
        buf_append(&b, "", 0);
        st = pclose(f);
        *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
        free(cmd);
        return b.data;
}

/* slhookctl's answer on conf, for args (it must succeed). */
static char *
ctl(const char *conf, const char *args)
{
        char *a = xasprintf("-c %s %s", conf, args), *out;
        int st;

        out = ctl_run(a, &st);
        ck_assert_msg(st == 0, "slhookctl %s: exit %d: %s", a, st, out);
        free(a);
        return out;
}

/* A MessageId too long for the database's indexes (3,000 bytes that do
 * not compress), with an event beside it in one request: 200, the one
 * stored, the other quarantined with the field named (SQLite, which has
 * no such bound, stores it: check_barrage), and a quarantine replay keeps
 * it there. Before, PostgreSQL refused the row, "index row size exceeds
 * btree version 4 maximum 2704": the request, with the event beside it,
 * was answered 503 on every retry, and a replay failed at it. */
START_TEST(test_long_key)
{
        char *id = xmalloc(3001), *body, *out;
        unsigned moved, kept;
        uint32_t x = 12345;
        size_t i;

        for (i = 0; i < 3000; i++) {    /* letters that do not compress */
                x = x * 1103515245 + 12345;
                id[i] = (char) ('a' + (x >> 16) % 26);
        }
        id[3000] = '\0';
        body = xasprintf("[{\"Type\":\"Queued\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"2026-03-01T10:00:00Z\","
                         "\"ServerId\":7,\"MessageId\":\"%s\",\"Address\":\"a@x.org\"},"
                         "{\"Type\":\"Queued\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"2026-03-01T10:00:00Z\","
                         "\"ServerId\":7,\"MessageId\":\"short\",\"Address\":\"a@x.org\"}]", id);
        start_pg();
        expect(body, 200);
        ck_assert_int_eq(pq("SELECT count(*) FROM events WHERE message_id = 'short'"), 1);
        ck_assert_int_eq(pq("SELECT count(*) FROM events"), 1);
        ck_assert_int_eq(pq("SELECT count(*) FROM quarantine WHERE reason LIKE '%''MessageId'' is longer than%' "
                            "AND length(raw) > 3000"), 1);
        ck_assert_int_eq(daemon_stop(), 0);
        /* A replay keeps it there (it stopped at it, failing, before). */
        out = ctl(d.conf, "quarantine replay");
        ck_assert_msg(strchr(out, '\n') && sscanf(strchr(out, '\n'), "%u %u", &moved, &kept) == 2 && moved == 0 &&
                      kept == 1, "replay: %s", out);
        ck_assert_int_eq(pq("SELECT count(*) FROM quarantine"), 1);
        ck_assert_int_eq(pq("SELECT count(*) FROM events"), 1);
        free(out);
        free(body);
        free(id);
}
END_TEST

/* Each of the four fields, at the bound and one byte over it. */
START_TEST(test_unindexable)
{
        static const char *const fields[] = { "Type", "MessageId", "MailingId", "Address" };
        char *v = xmalloc(STORE_PG_MAX_KEY + 2);
        size_t i, len;

        for (i = 0; i < ARRAY_SIZE(fields); i++)
                for (len = STORE_PG_MAX_KEY; len <= STORE_PG_MAX_KEY + 1; len++) {
                        char *body, *err = NULL;
                        struct event_batch b;
                        const char *why;

                        memset(v, 'q', len);
                        v[len] = '\0';
                        body = i == 0 ? xasprintf("{\"Type\":\"%s\",\"SecretKey\":\"k\"}", v) :
                               xasprintf("{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"%s\":\"%s\"}", fields[i], v);
                        ck_assert_int_eq(event_parse(body, strlen(body), false, &b, &err), 0);
                        ck_assert_int_eq(b.v[0].kind, EVENT_MAIL);
                        why = store_pg_unindexable(&b.v[0]);
                        if (len > STORE_PG_MAX_KEY) {
                                ck_assert_msg(why && strstr(why, fields[i]) && strstr(why, "longer than 1000 bytes"),
                                              "%s of %zu bytes: %s", fields[i], len, why ? why : "(none)");
                        } else
                                ck_assert_msg(why == NULL, "%s of %zu bytes: %s", fields[i], len, why);
                        event_batch_done(&b);
                        free(body);
                }
        free(v);
}
END_TEST

/* health_hours as rows (hour, server_id, kind, n), n not 0. */
#define HOURS_ROWS                                                                                              \
        "SELECT hour, server_id, k, v FROM health_hours, LATERAL (VALUES ('sent', sent), "                      \
        "('failed_permanent', failed_permanent), ('failed_temporary', failed_temporary), "                     \
        "('failed_suppressed', failed_suppressed), ('async_bounces', async_bounces), ('deferred', deferred), "  \
        "('complaints', complaints), ('unsubscribes', unsubscribes), ('opens', opens), ('clicks', clicks)) "    \
        "AS u(k, v) WHERE v <> 0"
#define COUNTS_ROWS "SELECT hour, server_id, kind, sum(n) FROM health_counts GROUP BY 1, 2, 3 HAVING sum(n) <> 0"

/* Retention on PostgreSQL takes what it deletes off event_counts,
 * health_counts and health_hours in the transaction that deletes it, and
 * drops the rows it empties. */
START_TEST(test_prune_counts)
{
        char when[TIME_ISO_LEN], *args, *out;
        int64_t t;
        unsigned i;

        start_pg();
        for (i = 0; i < 10; i++)
                post_mail("Delivered", i, (int) i * 60);
        for (i = 0; i < 3; i++)
                post_mail("Failed", i, 3000 + (int) i);
        /* Received before `when`: those; after it: the rest. m-5's Failed
         * keeps its message, and so its async bounce. */
        t = time_now_us();
        time_format_iso(t, when);
        while (time_now_us() <= t)
                ;
        for (i = 20; i < 25; i++)
                post_mail("Delivered", i, 1200 + (int) i);
        post_mail("Failed", 5, 3500);
        ck_assert_int_eq(pq("SELECT sum(sent) FROM health_hours"), 15);
        ck_assert_int_eq(pq("SELECT sum(failed_permanent) FROM health_hours"), 4);
        args = xasprintf("prune --before %s", when);
        free(ctl(d.conf, args));
        free(args);
        ck_assert_int_eq(pq("SELECT count(*) FROM events"), 6);
        ck_assert_int_eq(pq("SELECT sum(n) FROM health_counts WHERE kind = 'sent'"), 5);
        ck_assert_int_eq(pq("SELECT sum(n) FROM health_counts WHERE kind = 'failed_permanent'"), 1);
        ck_assert_int_eq(pq("SELECT count(*) FROM health_counts WHERE n <= 0"), 0);
        ck_assert_int_eq(pq("SELECT sum(sent) FROM health_hours"), 5);
        ck_assert_int_eq(pq("SELECT sum(failed_permanent) FROM health_hours"), 1);
        ck_assert_int_eq(pq("SELECT sum(async_bounces) FROM health_hours"), 1);
        ck_assert_int_eq(pq("SELECT count(*) FROM health_hours WHERE sent + failed_permanent + async_bounces = 0"), 0);
        ck_assert_int_eq(pq("SELECT count(*) FROM (" HOURS_ROWS " EXCEPT " COUNTS_ROWS ") AS x"), 0);
        ck_assert_int_eq(pq("SELECT count(*) FROM (" COUNTS_ROWS " EXCEPT " HOURS_ROWS ") AS x"), 0);
        ck_assert_int_eq(pq("SELECT sum(events) FROM event_counts"), 6);
        out = ctl(d.conf, "-f csv health --since 2026-03-01 --until 2026-03-02");
        ck_assert_str_eq(out, "server_id,sent,failed_permanent,failed_temporary,failed_suppressed,async_bounces,"
                              "deferred,complaints,unsubscribes,opens,clicks,bounce_rate,complaint_rate,"
                              "unsubscribe_rate,open_rate,click_rate,flags\n"
                              "7,5,1,0,0,1,0,0,0,0,0,0.1666666667,0,0,0,0,\n");
        free(out);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

/* The same events into a SQLite daemon and a PostgreSQL one: every
 * slhookctl question gets the same answer, byte for byte. */
START_TEST(test_ctl_same)
{
        static const char *const cmds[] = {
                /* Not csv or json of events or quarantine: those hold received_at. */
                "events", "events --type failed", "events --address RCPT3@example.com",
                "bounces", "bounces --async", "bounces --async -f json", "timeline --message-id m-3",
                "timeline --address rcpt5@EXAMPLE.com", "stats", "stats --by hour", "stats --since 2026-03-01T10:00:30Z",
                "suppressions", "suppressions -f json", "events --limit 3", "status",
                "health --since 2000-01-01 -f csv", "health --since 2026-03-01T10:00:30Z --until 2026-03-02 -f json",
                "health --since 2000-01-01 --by mailing",
        };
        static const char *const files[] = {
                "delivered.json", "failed.json", "deferred.json", "complaint.json", "click.json", "open.json",
                "queued.json",
        };
        struct daemon lite, pgd;
        char *bodies[64], *conf_lite, *conf_pg;
        size_t n = 0, i;

        for (i = 0; i < ARRAY_SIZE(files); i++)
                bodies[n++] = t_data(files[i]);
        for (i = 0; i < 12; i++) {
                bodies[n++] = mail_event("Delivered", (unsigned) i % 7, (int) i * 7);
                bodies[n++] = mail_event(i % 3 ? "Failed" : "Deferred", (unsigned) i % 7, (int) i * 7 + 95);
        }
        bodies[n++] = mail_event("Failed", 3, 5);                       /* a redelivery */
        /* A delay of 37065.5 s: one rounding rule on both (halves up). */
        bodies[n++] = xstrdup("{\"Type\":\"Delivered\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":"
                              "\"2026-03-01T00:00:00Z\",\"ServerId\":7,\"MessageId\":\"half\",\"Address\":\"h@example.com\"}");
        bodies[n++] = xstrdup("{\"Type\":\"Failed\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":"
                              "\"2026-03-01T10:17:45.5Z\",\"ServerId\":7,\"MessageId\":\"half\",\"Address\":\"h@example.com\","
                              "\"FailureType\":\"Permanent\",\"FailureCode\":5001}");
        bodies[n++] = xstrdup("{\"Type\":\"Delivered\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"nope\"}");
        bodies[n++] = xstrdup("{\"Type\":\"Failed\",\"SecretKey\":\"" T_SECRET "\",\"MessageId\":7}");
        daemon_start("", "");
        lite = d;
        memset(&d, 0, sizeof(d));
        start_pg();
        pgd = d;
        for (i = 0; i < n; i++) {
                d = lite;
                post_ok(bodies[i]);
                d = pgd;
                post_ok(bodies[i]);
        }
        conf_lite = lite.conf;
        conf_pg = pgd.conf;
        for (i = 0; i < ARRAY_SIZE(cmds); i++) {
                char *a = ctl(conf_lite, cmds[i]), *b = ctl(conf_pg, cmds[i]);

                if (strcmp(a, b) != 0)
                        fprintf(stderr, "slhookctl %s:\n-- sqlite --\n%s-- postgresql --\n%s", cmds[i], a, b);
                ck_assert_msg(strcmp(a, b) == 0, "slhookctl %s: the answers differ (above)", cmds[i]);
                ck_assert_msg(strlen(a) > 40 || strcmp(cmds[i], "status") == 0, "slhookctl %s: %s", cmds[i], a);
                free(a);
                free(b);
        }
        fprintf(stderr, "check_pg: %zu slhookctl commands answer the same on SQLite and PostgreSQL (%zu posts)\n",
                ARRAY_SIZE(cmds), n);
        /* info: the same rows; the name, backend and size are each its own. */
        {
                char *a = ctl(conf_lite, "-f csv info"), *b = ctl(conf_pg, "-f csv info");
                char *fa[8] = { 0 }, *fb[8] = { 0 }, *pa = strchr(a, '\n'), *pb = strchr(b, '\n');
                int k;

                ck_assert_msg(pa && pb, "%s%s", a, b);
                for (k = 0, pa++, pb++; k < 8; k++) {
                        fa[k] = strsep(&pa, ",\n");
                        fb[k] = strsep(&pb, ",\n");
                        ck_assert_msg(fa[k] && fb[k], "info: %d columns", k);
                }
                ck_assert_str_eq(fa[1], "sqlite");
                ck_assert_str_eq(fb[1], "postgresql");
                for (k = 2; k < 7; k++)
                        if (k != 3)     /* schema_version, events, messages, quarantined */
                                ck_assert_msg(strcmp(fa[k], fb[k]) == 0, "info column %d: %s, %s", k, fa[k], fb[k]);
                ck_assert_msg(atoll(fb[3]) > 0 && atoll(fb[4]) > 0, "size %s, events %s", fb[3], fb[4]);
                fprintf(stderr, "check_pg: info: %s events, %s messages, %s bytes on PostgreSQL\n", fb[4], fb[5], fb[3]);
                free(a);
                free(b);
        }
        ck_assert_int_eq(daemon_stop(), 0);
        teardown();
        d = lite;
        ck_assert_int_eq(daemon_stop(), 0);
        for (i = 0; i < n; i++)
                free(bodies[i]);
}
END_TEST

/* ---- migrate ---- */

/* The test database as a postgresql:// URI (slhookctl -d takes URIs). */
static char *
pg_uri(void)
{
        PQconninfoOption *o = PQconninfoParse(dsn, NULL), *i;
        const char *host = NULL, *user = NULL, *db = NULL;
        char *u;

        ck_assert_ptr_nonnull(o);
        for (i = o; i->keyword; i++) {
                if (strcmp(i->keyword, "host") == 0)
                        host = i->val;
                else if (strcmp(i->keyword, "user") == 0)
                        user = i->val;
                else if (strcmp(i->keyword, "dbname") == 0)
                        db = i->val;
        }
        ck_assert(host && user && db);
        u = xasprintf("postgresql://%s@/%s?host=%s", user, db, host);
        PQconninfoFree(o);
        return u;
}

/* bench/fill takes a postgresql:// URI for its DB (bench/README.md: the
 * writer alone): the same generated traffic stored through either store
 * gives the same events, message states and counts. */
START_TEST(test_fill)
{
        static const char *const qs[] = {
                "SELECT count(*) FROM events",
                "SELECT count(*) FROM messages",
                "SELECT count(*) FROM messages WHERE state = 'Sent'",
                "SELECT count(*) FROM messages WHERE state = 'Failed'",
                "SELECT count(*) FROM messages WHERE state = 'Deferred'",
                "SELECT count(*) FROM messages WHERE sent_at IS NOT NULL AND failed_at IS NOT NULL",
                "SELECT sum(open_count) + 1000 * sum(click_count) + 1000000 * sum(deferred_count) FROM messages",
                "SELECT sum(events) FROM event_counts",
        };
        char *dir = t_tmpdir(), *lite = xasprintf("%s/fill.db", dir), *uri = pg_uri(), *cmd;
        size_t i;

        cmd = xasprintf("%s '%s' rate 3000 32 >/dev/null", FILL_BIN, uri);
        ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
        free(cmd);
        cmd = xasprintf("%s %s rate 3000 32 >/dev/null", FILL_BIN, lite);
        ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
        free(cmd);
        ck_assert_int_eq(pq(qs[0]), 3000);
        ck_assert_int_gt(pq(qs[5]), 0);         /* Sent and Failed: an asynchronous bounce */
        for (i = 0; i < ARRAY_SIZE(qs); i++)
                ck_assert_msg(pq(qs[i]) == t_query(lite, qs[i]), "%s: %lld on PostgreSQL, %lld on SQLite",
                              qs[i], pq(qs[i]), t_query(lite, qs[i]));
        t_rm_rf(dir);
        free(lite);
        free(dir);
        free(uri);
}
END_TEST

/* Feed one value (NULL apart from every text) into h. */
static void
hash_value(gnutls_hash_hd_t h, const char *v, size_t n)
{
        if (v == NULL)
                gnutls_hash(h, "\001", 1);
        else
                gnutls_hash(h, v, n + 1);       /* with its NUL */
}

/* SHA-256 of every row of table (in key order) on both backends, the
 * columns the SQLite database has, as text; ck_assert that they are equal.
 * Returns the rows. */
static long long
assert_same_table(const char *db, const char *table, const char *key)
{
        gnutls_hash_hd_t hl, hp;
        unsigned char ml[32], mp[32];
        sqlite3 *lh;
        sqlite3_stmt *st;
        struct buf sql = { 0 };
        PGconn *c = pg_connect(dsn);
        PGresult *r;
        long long n = 0;
        int i, k, rows;

        ck_assert_int_eq(sqlite3_open_v2(db, &lh, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        buf_printf(&sql, "SELECT * FROM %s LIMIT 0", table);
        buf_append(&sql, "", 0);
        ck_assert_int_eq(sqlite3_prepare_v2(lh, sql.data, -1, &st, NULL), SQLITE_OK);
        sql.len = 0;
        buf_puts(&sql, "SELECT ");
        for (i = 0; i < sqlite3_column_count(st); i++)
                buf_printf(&sql, "%s\"%s\"", i ? ", " : "", sqlite3_column_name(st, i));
        buf_printf(&sql, " FROM %s ORDER BY %s", table, key);
        buf_append(&sql, "", 0);
        sqlite3_finalize(st);
        ck_assert_int_eq(sqlite3_prepare_v2(lh, sql.data, -1, &st, NULL), SQLITE_OK);
        ck_assert_int_eq(gnutls_hash_init(&hl, GNUTLS_DIG_SHA256), 0);
        ck_assert_int_eq(gnutls_hash_init(&hp, GNUTLS_DIG_SHA256), 0);
        while ((k = sqlite3_step(st)) == SQLITE_ROW) {
                for (i = 0; i < sqlite3_column_count(st); i++)
                        hash_value(hl, (const char *) sqlite3_column_text(st, i),
                                   (size_t) sqlite3_column_bytes(st, i));
                n++;
        }
        ck_assert_int_eq(k, SQLITE_DONE);
        sqlite3_finalize(st);
        sqlite3_close(lh);
        r = PQexec(c, sql.data);
        ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql.data, PQresultErrorMessage(r));
        rows = PQntuples(r);
        for (k = 0; k < rows; k++)
                for (i = 0; i < PQnfields(r); i++)
                        hash_value(hp, PQgetisnull(r, k, i) ? NULL : PQgetvalue(r, k, i),
                                   (size_t) PQgetlength(r, k, i));
        PQclear(r);
        PQfinish(c);
        gnutls_hash_deinit(hl, ml);
        gnutls_hash_deinit(hp, mp);
        ck_assert_msg(rows == n, "%s: %lld rows in SQLite, %d in PostgreSQL", table, n, rows);
        ck_assert_msg(memcmp(ml, mp, sizeof(ml)) == 0, "%s: the %lld rows differ", table, n);
        buf_done(&sql);
        return n;
}

static const struct { const char *name, *key; } migrate_tables[] = {
        { "events", "id" }, { "messages", "id" }, { "event_counts", "hour, type" }, { "quarantine", "id" },
        { "webhook_status", "endpoint" }, { "health_counts", "hour, server_id, mailing_id, kind" },
        { "health_hours", "hour, server_id" },
};

/* slhookctl -d db migrate --to dsn -f csv: its csv line for table, e.g.
 * "events,100,100,0,0", from out (NULL when absent). */
static char *
csv_line(const char *out, const char *table)
{
        char *want = xasprintf("\n%s,", table);
        const char *p = strstr(out, want);

        free(want);
        return p ? xstrndup(p + 1, strcspn(p + 1, "\n")) : NULL;
}

static char *
migrate(const char *db, int want_status)
{
        char *args = xasprintf("-d %s -f csv migrate --to '%s'", db, dsn), *out;
        int st;

        out = ctl_run(args, &st);
        ck_assert_msg(st == want_status, "slhookctl %s: exit %d: %s", args, st, out);
        free(args);
        return out;
}

/* Start a migration and kill -9 it once it has committed `at` events (its
 * progress says so). */
static void
migrate_killed(const char *db, unsigned at)
{
        int err[2], status;
        pid_t pid;
        FILE *f;
        char line[512];
        bool seen = false;

        ck_assert_int_eq(pipe(err), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                int null = open("/dev/null", O_WRONLY);

                dup2(null, 1);
                dup2(err[1], 2);
                close(err[0]);
                execl(SLHOOKCTL_BIN, "slhookctl", "-d", db, "migrate", "--to", dsn, (char *) NULL);
                _exit(127);
        }
        close(err[1]);
        f = fdopen(err[0], "r");
        while (!seen && fgets(line, sizeof(line), f)) {
                unsigned done;

                seen = sscanf(line, "slhookctl: events: %u of", &done) == 1 && done >= at;
        }
        ck_assert_msg(seen, "the migration ended before it had copied %u events", at);
        kill(pid, SIGKILL);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFSIGNALED(status));
        fclose(f);
}

/* A 100,000-event SQLite database (the real write path: bench/fill, after a
 * daemon stored the sample events, a validation and two quarantined
 * payloads) moved to PostgreSQL: killed -9 on the way and run again, every
 * row of every table is there once with its id and its columns, slhookctl
 * answers the same on both, and a third run adds nothing. The source grows
 * and a run copies only that; an instance on PostgreSQL takes ids past the
 * copied ones; a database with rows of its own under the source's ids is
 * refused, not overwritten. */
START_TEST(test_migrate)
{
        static const char *const files[] = {
                "delivered.json", "failed.json", "deferred.json", "complaint.json", "click.json", "open.json",
                "queued.json", "validation.json",
        };
        const char *cmds[] = {
                "events", "events --type failed --limit 20", NULL, "bounces", "bounces --async", NULL,
                "stats", "stats --by hour", "suppressions", "quarantine", "status", "health --since 2000-01-01",
        };
        char *cmd, *out, *line, *uri = pg_uri(), *db, *address, *message;
        long long events, src_max, after;
        size_t i;
        int st;

        daemon_start("", "");
        db = d.db;
        for (i = 0; i < ARRAY_SIZE(files); i++) {
                char *body = t_data(files[i]);

                post_ok(body);
                free(body);
        }
        post_ok("{\"Type\":\"Delivered\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"nope\"}");
        post_ok("{\"Type\":\"Failed\",\"SecretKey\":\"" T_SECRET "\",\"MessageId\":7}");
        ck_assert_int_eq(daemon_stop(), 0);
        cmd = xasprintf("%s %s fill 100000 12000 30 >/dev/null", FILL_BIN, db);
        ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
        free(cmd);
        events = t_query(db, "SELECT count(*) FROM events");
        ck_assert_int_ge(events, 99000);
        ck_assert_int_ge(t_query(db, "SELECT count(*) FROM quarantine"), 1);
        ck_assert_int_eq(t_query(db, "SELECT count(*) FROM webhook_status"), 1);
        /* The busiest address and a message with an async bounce. */
        line = t_rows(db, "SELECT address FROM messages GROUP BY address ORDER BY count(*) DESC, address LIMIT 1");
        address = xasprintf("events --address %.*s", (int) strcspn(line, "\n"), line);
        free(line);
        line = t_rows(db, "SELECT message_id FROM async_bounces ORDER BY message_id LIMIT 1");
        message = xasprintf("timeline --message-id %.*s", (int) strcspn(line, "\n"), line);
        free(line);
        cmds[2] = address;
        cmds[5] = message;

        migrate_killed(db, 20000);
        after = pq("SELECT count(*) FROM events");
        ck_assert_msg(after >= 20000 && after < events, "%lld of %lld events after the kill", after, events);
        out = migrate(db, 0);
        line = csv_line(out, "events");
        ck_assert_ptr_nonnull(line);
        cmd = xasprintf("events,%lld,%lld,0,%lld", events, events - after, after);
        ck_assert_msg(strcmp(line, cmd) == 0, "%s, not %s", line, cmd);
        free(cmd);
        free(line);
        ck_assert_ptr_nonnull(strstr(out, "slhookctl: messages: "));      /* progress */
        free(out);
        for (i = 0; i < ARRAY_SIZE(migrate_tables); i++)
                ck_assert_int_gt(assert_same_table(db, migrate_tables[i].name, migrate_tables[i].key), 0);
        for (i = 0; i < ARRAY_SIZE(cmds); i++) {
                char *a = xasprintf("-d %s %s", db, cmds[i]), *b = xasprintf("-d '%s' %s", uri, cmds[i]);
                char *ra = ctl_run(a, &st), *rb;

                ck_assert_int_eq(st, 0);
                rb = ctl_run(b, &st);
                ck_assert_int_eq(st, 0);
                if (strcmp(ra, rb) != 0)
                        fprintf(stderr, "slhookctl %s:\n-- sqlite --\n%s-- postgresql --\n%s", cmds[i], ra, rb);
                ck_assert_msg(strcmp(ra, rb) == 0, "slhookctl %s: the answers differ (above)", cmds[i]);
                ck_assert_msg(strlen(ra) > 60, "slhookctl %s: %s", cmds[i], ra);
                free(a);
                free(b);
                free(ra);
                free(rb);
        }

        /* Again: nothing to copy. */
        out = migrate(db, 0);
        for (i = 0; i < ARRAY_SIZE(migrate_tables); i++) {
                line = csv_line(out, migrate_tables[i].name);
                ck_assert_ptr_nonnull(line);
                ck_assert_msg(strstr(line, ",0,0,") != NULL, "a second run changed %s: %s", migrate_tables[i].name,
                              line);
                free(line);
        }
        free(out);
        fprintf(stderr, "check_pg: migrate: %lld events, killed -9 after %lld and run again: every row of the "
                "6 tables equal, %zu slhookctl answers equal; a third run copied nothing\n", events, after,
                ARRAY_SIZE(cmds));

        /* The source goes on: a message of the sample bounces later. */
        daemon_rebind();
        daemon_start("", "");
        post_mail("Delivered", 1, 10);
        post_mail("Failed", 1, 70);
        ck_assert_int_eq(daemon_stop(), 0);
        out = migrate(db, 0);
        line = csv_line(out, "events");
        cmd = xasprintf("events,%lld,2,0,%lld", events + 2, events);
        ck_assert_msg(line && strcmp(line, cmd) == 0, "%s, not %s", line, cmd);
        free(cmd);
        free(line);
        line = csv_line(out, "messages");
        ck_assert_msg(line && strstr(line, ",1,0,"), "messages: %s", line);     /* one new message */
        free(line);
        free(out);
        for (i = 0; i < ARRAY_SIZE(migrate_tables); i++)
                assert_same_table(db, migrate_tables[i].name, migrate_tables[i].key);
        ck_assert_int_eq(pq("SELECT count(*) FROM async_bounces WHERE message_id = 'm-1'"), 1);

        /* An instance on PostgreSQL: its ids come after the copied ones. */
        src_max = t_query(db, "SELECT max(id) FROM events");
        {
                struct daemon lite = d;

                memset(&d, 0, sizeof(d));
                start_pg();
                post_mail("Delivered", 2, 20);
                ck_assert_int_eq(pq("SELECT min(id) FROM events WHERE message_id = 'm-2'"), src_max + 1);
                ck_assert_int_eq(daemon_stop(), 0);
                teardown();
                d = lite;
        }
        /* The source gets an event of its own under that same id: refused. */
        daemon_rebind();
        daemon_start("", "");
        post_mail("Delivered", 3, 30);
        ck_assert_int_eq(daemon_stop(), 0);
        ck_assert_int_eq(t_query(db, "SELECT max(id) FROM events"), src_max + 1);
        out = migrate(db, 1);
        ck_assert_msg(strstr(out, "events id ") && strstr(out, "holds another row"), "%s", out);
        ck_assert_ptr_null(strstr(out, T_SECRET));
        free(out);
        ck_assert_int_eq(pq("SELECT count(*) FROM events WHERE message_id = 'm-3'"), 0);
        ck_assert_int_eq(pq("SELECT count(*) FROM events WHERE message_id = 'm-2'"), 1);
        free(uri);
        free(address);
        free(message);
}
END_TEST

/* ---- the self-test on several instances ---- */

/* A new daemon in d on the test's database with [api] on the fake API
 * (start_pg_api_on), API calls bounded by 4 s. */
static void
start_pg_api(struct fake_api *f, unsigned port, unsigned interval)
{
        start_pg_api_on(store_lines, f, port, interval, 4);
}

#define PASSED "SELECT count(*) FROM webhook_status WHERE last_test_result = 'passed'"

/* Three instances on one database behind one URL (a's). b registers and
 * self-tests: the fake API's test event lands on a, and b sees it in the
 * database. While b is at it (the API hangs), c, started with the same
 * [api], leaves the self-test to it, and calls the API not at all; once b
 * passed, the webhook was registered once and tested once. */
START_TEST(test_self_test_once)
{
        char *cert = xasprintf("%s/cert.pem", certdir), *key = xasprintf("%s/key.pem", certdir);
        struct fake_api *f = fake_api_start(cert, key, API_KEY, cert);
        struct daemon a, b, c;
        struct fake_counts n;
        unsigned i;

        ck_assert_ptr_nonnull(f);
        fake_api_mode(f, FAKE_HANG);
        start_pg();
        a = d;
        start_pg_api(f, a.port, 3600);
        b = d;
        /* b holds the self-test's lock while the API hangs. */
        for (i = 0; i < 400 && fake_api_counts(f).hung < 1; i++)
                usleep(10 * 1000);
        ck_assert_int_eq(fake_api_counts(f).hung, 1);
        ck_assert_int_eq(pq(HELD), 1);
        start_pg_api(f, a.port, 3600);
        c = d;
        wait_log("self-test left to the other instances: another instance is running it", 20);
        n = fake_api_counts(f);
        ck_assert_int_eq(n.hung, 1);            /* b's call only */
        fake_api_mode(f, FAKE_OK);
        /* b's call times out (4 s: c had that long to start), it fails, and
         * passes at its retry 5 s later. */
        for (i = 0; i < 600 && pq(PASSED) < 1; i++)
                usleep(50 * 1000);
        ck_assert_int_eq(pq(PASSED), 1);
        d = b;
        wait_log("self-test passed: webhook 1001", 20);
        n = fake_api_counts(f);
        ck_assert_int_eq(n.creates, 1);
        ck_assert_int_eq(n.tests, 1);
        ck_assert_int_eq(n.posted, 1);
        ck_assert_int_eq(fake_api_last_post_status(f), 200);
        ck_assert_int_eq(pq("SELECT test_events FROM webhook_status"), 1);
        ck_assert_int_eq(pq("SELECT count(*) FROM events WHERE is_test = 1"), 1);
        d = c;
        ck_assert_int_eq(log_count("self-test passed"), 0);
        /* A fourth instance, started now, finds it passed a moment ago. */
        start_pg_api(f, a.port, 3600);
        wait_log("self-test left to the other instances: it passed at ", 20);
        ck_assert_int_eq(fake_api_counts(f).tests, 1);
        ck_assert_int_eq(daemon_stop(), 0);
        teardown();
        fprintf(stderr, "check_pg: self-test on 3 instances of one database: registered once, tested once (by b, "
                "the test event stored by a), c and a fourth left it to b\n");
        d = c;
        ck_assert_int_eq(daemon_stop(), 0);
        teardown();
        d = b;
        ck_assert_int_eq(daemon_stop(), 0);
        teardown();
        d = a;
        ck_assert_int_eq(daemon_stop(), 0);
        fake_api_stop(f);
        free(cert);
        free(key);
}
END_TEST

/* The sum of the fake API's counters: how many calls it had. */
static unsigned
api_calls(struct fake_api *f)
{
        struct fake_counts n = fake_api_counts(f);

        return n.lists + n.gets + n.creates + n.updates + n.secrets + n.tests + n.unauthorized + n.hung;
}

/* The database lost: the self-test's run fails without a call to the API
 * (without the database there is no lock to say which instance runs it),
 * and passes once the database is back. */
START_TEST(test_self_test_db_lost)
{
        char *cert = xasprintf("%s/cert.pem", certdir), *key = xasprintf("%s/key.pem", certdir);
        struct fake_api *f = fake_api_start(cert, key, API_KEY, cert);
        unsigned calls, i;

        ck_assert_ptr_nonnull(f);
        start_pg_api(f, 0, 10);
        wait_log("self-test passed: webhook 1001", 20);
        calls = api_calls(f);
        db_reachable(false);
        /* The next run, 10 s after the first. */
        for (i = 0; i < 400 && !log_has("self-test postponed") && !log_has("self-test failed"); i++)
                usleep(50 * 1000);
        ck_assert_msg(log_has("self-test postponed: the database is not reachable"), "no run postponed in 20 s "
                      "without the database (%s)", log_has("self-test failed") ? "it ran and failed" : "no run");
        ck_assert_uint_eq(api_calls(f), calls);
        db_reachable(true);
        /* The retry, 5 s later: the last pass is older than 9 s by then. */
        for (i = 0; i < 600 && log_count("self-test passed") < 2; i++)
                usleep(50 * 1000);
        ck_assert_int_eq(log_count("self-test passed"), 2);
        ck_assert_int_eq(daemon_stop(), 0);
        fake_api_stop(f);
        free(cert);
        free(key);
}
END_TEST

/* An event inserted by a transaction of its own that stays open: its id
 * is taken (after its xid, as slhookd's writers do). */
static PGconn *
open_insert(const char *digest)
{
        PGconn *c = pg_connect(dsn);
        char *sql = xasprintf("BEGIN; SELECT pg_current_xact_id(); INSERT INTO events (received_at, endpoint, type, "
                              "wire_type, occurred_at, raw, digest) VALUES ('2026-03-01T10:00:00.000000Z', 'main', "
                              "'Queued', 'Queued', '2026-03-01T10:00:00.000000Z', '{}', '%s')", digest);
        PGresult *r = PQexec(c, sql);

        ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
        PQclear(r);
        free(sql);
        return c;
}

static void
end_tx(PGconn *c, const char *how)
{
        PGresult *r = PQexec(c, how);

        ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
        PQclear(r);
        PQfinish(c);
}

/* The ids of `events --after ID` (csv), as "1 2 3". */
static char *
ids_after(int after)
{
        char *args = xasprintf("-c '%s' -f csv events --after %d", d.conf, after), *out, *line, *save = NULL;
        struct buf b = { 0 };
        int st;

        out = ctl_run(args, &st);
        ck_assert_msg(st == 0, "slhookctl %s: exit %d: %s", args, st, out);
        for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                if (strncmp(line, "id,", 3) != 0)
                        buf_printf(&b, "%s%lld", b.len ? " " : "", strtoll(line, NULL, 10));
        buf_append(&b, "", 0);
        free(out);
        free(args);
        return b.data;
}

/* Several writers take ids from one sequence and commit in any order: a
 * reader of the ids in order never passes an id a transaction still
 * running may commit, and passes the gap a rolled-back one left. */
START_TEST(test_follow_gaps)
{
        PGconn *open2, *open4, *other;
        PGresult *r;
        char *ids;

        start_pg();
        post_mail("Queued", 1, 0);                      /* id 1 */
        open2 = open_insert("gap-2");                   /* id 2, not committed */
        post_mail("Delivered", 1, 1);                   /* id 3, committed */
        ck_assert_int_eq(pq("SELECT max(id) FROM events"), 3);
        ck_assert_str_eq(ids = ids_after(0), "1");      /* not 3 while 2 may still come */
        free(ids);
        end_tx(open2, "COMMIT");
        ck_assert_str_eq(ids = ids_after(0), "1 2 3");
        free(ids);
        open4 = open_insert("gap-4");                   /* id 4 */
        post_mail("Queued", 2, 2);                      /* id 5 */
        ck_assert_str_eq(ids = ids_after(3), "");
        free(ids);
        end_tx(open4, "ROLLBACK");                      /* 4 never comes */
        ck_assert_str_eq(ids = ids_after(3), "5");
        free(ids);
        ck_assert_str_eq(ids = ids_after(1), "2 3 5");
        free(ids);
        /* A transaction running in another database of the cluster cannot
         * fill a gap here: it holds nothing back. */
        other = pg_connect(cluster);
        r = PQexec(other, "BEGIN; SELECT pg_current_xact_id()");
        ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
        PQclear(r);
        end_tx(open_insert("gap-6"), "ROLLBACK");      /* id 6 */
        post_mail("Queued", 3, 3);                      /* id 7 */
        ck_assert_str_eq(ids = ids_after(5), "7");
        free(ids);
        end_tx(other, "ROLLBACK");
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

int
main(void)
{
        Suite *s = suite_create("pg");
        TCase *tc = tcase_create("pg");

        cluster = getenv("SLHOOKD_TEST_PG");
        if (cluster == NULL || cluster[0] == '\0') {
                fprintf(stderr, "check_pg: SKIP: no PostgreSQL cluster (run the tests under tests/pgtmp)\n");
                return 77;
        }
        tcase_add_unchecked_fixture(tc, make_certs, drop_certs);
        tcase_add_checked_fixture(tc, pg_setup, pg_teardown);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, test_schema_version);
        tcase_add_test(tc, test_lock_timeout);
        tcase_add_test(tc, test_db_silent);
        tcase_add_test(tc, test_hup_behind_lock);
        tcase_add_test(tc, test_upgrade);
        tcase_add_test(tc, test_batch);
        tcase_add_test(tc, test_message_race);
        tcase_add_test(tc, test_long_key);
        tcase_add_test(tc, test_unindexable);
        tcase_add_test(tc, test_address_fold);
        tcase_add_test(tc, test_address_fold_c);
        tcase_add_test(tc, test_two_instances);
        tcase_add_test(tc, test_writers_counted);
        tcase_add_test(tc, test_ctl_same);
        tcase_add_test(tc, test_prune_counts);
        tcase_add_test(tc, test_kill_one);
        tcase_add_test(tc, test_db_restart);
        tcase_add_test(tc, test_migrate);
        tcase_add_test(tc, test_fill);
        tcase_add_test(tc, test_self_test_once);
        tcase_add_test(tc, test_self_test_db_lost);
        tcase_add_test(tc, test_follow_gaps);
        return t_run(s, tc);
}
#endif
