/* The PostgreSQL backend end to end: real slhookd processes on one database
 * of the throwaway cluster tests/pgtmp starts (SLHOOKD_TEST_PG). Without
 * that cluster, or in a build without libpq, the suite reports SKIP. */
#include "config.h"

#include <sys/wait.h>

#include "daemon.h"

#ifndef HAVE_POSTGRESQL
int
main(void)
{
        fprintf(stderr, "check_pg: SKIP: built without the PostgreSQL backend\n");
        return 77;
}
#else
#include <libpq-fe.h>

#include "store.h"

extern const char store_pg_schema_sql[];

static const char *cluster;     /* SLHOOKD_TEST_PG */
static char *dsn;               /* this test's own database */
static char *store_lines;       /* [store] lines for a daemon on it */
static unsigned dbs;

/* ---- the database ---- */

static PGconn *
pg_connect(const char *conninfo)
{
        PGconn *c = PQconnectdb(conninfo);

        ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s: %s", conninfo, PQerrorMessage(c));
        return c;
}

static void
pg_exec(const char *conninfo, const char *sql)
{
        PGconn *c = pg_connect(conninfo);
        PGresult *r = PQexec(c, sql);

        ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
                      "%s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(c);
}

/* The one value sql answers, as a number. */
static long long
pq(const char *sql)
{
        PGconn *c = pg_connect(dsn);
        PGresult *r = PQexec(c, sql);
        long long v;

        ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "%s: %s", sql,
                      PQresultErrorMessage(r));
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        PQfinish(c);
        return v;
}

static void
pg_setup(void)
{
        char *sql, name[64];

        setup();
        snprintf(name, sizeof(name), "t_%ld_%u", (long) getpid(), ++dbs);
        sql = xasprintf("CREATE DATABASE %s", name);
        pg_exec(cluster, sql);
        free(sql);
        /* A later keyword wins: the cluster's, with our database. */
        dsn = xasprintf("%s dbname=%s", cluster, name);
        store_lines = xasprintf("backend = postgresql\ndsn = %s\n", dsn);
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

/* A Sent or Failed event of message n, at a time of its own. */
static char *
mail_event(const char *type, unsigned n, int at_s)
{
        return xasprintf("{\"Type\":\"%s\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"2026-03-01T10:%02d:%02dZ\","
                         "\"ServerId\":7,\"MessageId\":\"m-%u\",\"Address\":\"rcpt%u@example.com\""
                         "%s}", type, at_s / 60 % 60, at_s % 60, n, n,
                         strcmp(type, "Failed") == 0 ? ",\"FailureType\":\"Permanent\",\"FailureCode\":5001,"
                                                       "\"Reason\":\"mailbox gone\"" : "");
}

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

/* ---- tests ---- */

/* The PostgreSQL schema is at the version of the SQLite one. */
START_TEST(test_schema_version)
{
        const char *v = strstr(store_pg_schema_sql, "INSERT INTO slhookd_schema (version) VALUES (");

        ck_assert_ptr_nonnull(v);
        ck_assert_int_eq(atoi(v + strlen("INSERT INTO slhookd_schema (version) VALUES (")), store_schema_version());
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

/* Run pg_ctl (as the cluster's owner) with args. */
static void
pg_ctl(const char *args)
{
        const char *ctl = getenv("SLHOOKD_TEST_PG_CTL"), *owner = getenv("SLHOOKD_TEST_PG_OWNER");
        char *cmd;

        ck_assert_ptr_nonnull(ctl);
        cmd = getuid() == 0 ? xasprintf("runuser -u %s -- %s %s >/dev/null", owner, ctl, args)
                            : xasprintf("%s %s >/dev/null", ctl, args);
        ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
        free(cmd);
}

/* The database stopped under load: 503s (never a 200 for an event not
 * stored), then, once it is back, 200s again on the same daemon. */
START_TEST(test_db_restart)
{
        enum { N = 100000 };
        struct poster p;
        char **ev = xcalloc(N, sizeof(char *));
        atomic_bool stop = false;
        unsigned i, acked, tries, n503 = 0, after = 0;
        size_t at_stop, at_start;

        start_pg();
        for (i = 0; i < N; i++)
                ev[i] = mail_event("Delivered", i, (int) i % 3000);
        poster_start(&p, d.port, ev, N, &stop);
        for (tries = 0; tries < 2000 && p.posted < 200; tries++)
                usleep(5000);
        pg_ctl("-m fast -w stop");
        at_stop = p.posted;
        /* Until the poster has seen 503s (bounded). */
        for (tries = 0; tries < 2000; tries++) {
                for (i = at_stop, n503 = 0; i < p.posted; i++)
                        n503 += p.status[i] == 503;
                if (n503 >= 20)
                        break;
                usleep(5000);
        }
        pg_ctl("-w start");
        at_start = p.posted;
        for (tries = 0; tries < 4000; tries++) {
                for (i = at_start, after = 0; i < p.posted; i++)
                        after += p.status[i] == 200;
                if (after >= 50)
                        break;
                usleep(5000);
        }
        atomic_store(&stop, true);
        pthread_join(p.t, NULL);
        ck_assert_uint_ge(n503, 20);
        ck_assert_uint_ge(after, 50);
        for (i = 0; i < p.posted; i++)
                ck_assert_msg(p.status[i] == 200 || p.status[i] == 503, "post %u: status %ld", i, p.status[i]);
        assert_acked_stored(&p, 1, &acked);
        ck_assert_int_eq(pq("SELECT count(*) FROM events"), acked);
        still_running();
        ck_assert(log_has("storage failed, answering 503"));
        ck_assert(log_has("storage works again"));
        fprintf(stderr, "check_pg: database stopped under load: %u answered 503 while down, %u 200 after it "
                "came back; %u acknowledged, all stored once\n", n503, after, acked);
        ck_assert_int_eq(daemon_stop(), 0);
        for (i = 0; i < N; i++)
                free(ev[i]);
        free(ev);
        free(p.status);
}
END_TEST

/* slhookctl's answer on conf, for args. */
static char *
ctl(const char *conf, const char *args)
{
        char *cmd = xasprintf("%s -c %s %s 2>&1", SLHOOKCTL_BIN, conf, args), *out;
        FILE *f = popen(cmd, "r");
        struct buf b = { 0 };
        char chunk[4096];
        size_t n;

        ck_assert_ptr_nonnull(f);
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
                buf_append(&b, chunk, n);
        buf_append(&b, "", 0);
        ck_assert_int_eq(pclose(f), 0);
        free(cmd);
        out = b.data;
        return out;
}

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
        ck_assert_int_eq(daemon_stop(), 0);
        teardown();
        d = lite;
        ck_assert_int_eq(daemon_stop(), 0);
        for (i = 0; i < n; i++)
                free(bodies[i]);
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
        tcase_add_test(tc, test_two_instances);
        tcase_add_test(tc, test_ctl_same);
        tcase_add_test(tc, test_kill_one);
        tcase_add_test(tc, test_db_restart);
        return t_run(s, tc);
}
#endif
