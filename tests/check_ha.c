/* Failover on a real high-availability cluster: pg_auto_failover's monitor
 * and two data nodes with synchronous replication (tests/pgha), and two
 * slhookd instances on its multi-host dsn under load from 8 keep-alive
 * clients that post each event again after a 503, as SocketLabs does. The
 * primary is lost (SIGKILL of its keeper, then of its postmaster) or handed
 * over (pg_autoctl perform failover); the standby is promoted. Then: every
 * answer was 200 or 503 + Retry-After; within 30 s of the promotion both
 * instances answer 200 again; every event that got a 200 is on the
 * promoted node exactly once; the old primary, back as a standby, holds
 * the same rows; and the self-test still runs on exactly one instance.
 *
 * make check runs it as it runs the others: without SLHOOKD_TEST_PGHA it
 * runs itself again under tests/pgha, which starts the cluster; without
 * pg_autoctl installed, or in a build without libpq, it reports SKIP. */
#include "config.h"

#include <sys/wait.h>

#include "daemon.h"
#include "fake_api.h"

#ifndef HAVE_POSTGRESQL
int
main(void)
{
        fprintf(stderr, "check_ha: SKIP: built without the PostgreSQL backend\n");
        return 77;
}
#else
#include "pg.h"

#define CLIENTS 8               /* keep-alive, half on each instance */
#define MAX_ATTEMPTS 400000     /* per client: bounds the load */

static const char *ha_dsn;      /* SLHOOKD_TEST_PGHA_DSN: both nodes, read-write */
static const char *monitor;     /* SLHOOKD_TEST_PGHA_MONITOR */
static char *pgha;              /* tests/pgha, to call back */
static char *dbname;            /* this test's database */
static char *dsn;               /* ha_dsn on it */
static char *store_lines;       /* [store] lines for a daemon on it */

/* ---- the cluster ---- */

static void
pgha_call(const char *args)
{
        char *cmd = xasprintf("'%s' %s", pgha, args);

        ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
        free(cmd);
}

/* The test's database on one node only (not the multi-host dsn). */
static char *
node_dsn(unsigned port)
{
        return xasprintf("host=127.0.0.1 port=%u user=slhookd dbname=%s", port, dbname);
}

/* The node the monitor has as primary, settled (reported state = goal
 * state, primary or wait_primary): its port, and its name in *name (n1 or
 * n2); 0 when there is none now. */
static unsigned
primary(char name[8])
{
        PGconn *c = pg_connect(monitor);
        PGresult *r = PQexec(c, "SELECT nodeport, nodename FROM pgautofailover.node WHERE reportedstate = goalstate "
                                "AND reportedstate IN ('primary', 'wait_primary')");
        unsigned port = 0;

        ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "monitor: %s", PQresultErrorMessage(r));
        if (PQntuples(r) == 1) {
                port = (unsigned) strtoul(PQgetvalue(r, 0, 0), NULL, 10);
                snprintf(name, 8, "%s", PQgetvalue(r, 0, 1));
        }
        PQclear(r);
        PQfinish(c);
        return port;
}

/* Wait (secs at most) until one node is primary and the other its
 * secondary; the primary's port. When it runs out, the failure says what
 * the wait was for (what) and the monitor's view of each node, and the
 * end of each node's keeper log goes to stderr. */
static unsigned
wait_healthy(char name[8], const char *what, unsigned secs)
{
        const char *sql = "SELECT count(*) FILTER (WHERE reportedstate = 'primary' AND goalstate = 'primary') = 1 "
                          "AND count(*) FILTER (WHERE reportedstate = 'secondary' AND goalstate = 'secondary') = 1 "
                          "FROM pgautofailover.node";
        unsigned i;
        char *ok = NULL;

        for (i = 0;; i++) {
                free(ok);
                ok = pq_text(monitor, sql);
                if (strcmp(ok, "t") == 0 || i >= secs * 10)
                        break;
                usleep(100 * 1000);
        }
        if (strcmp(ok, "t") != 0) {
                char *nodes = pq_text(monitor, "SELECT string_agg(format('%s (port %s): reported %s, goal %s, "
                                               "health %s', nodename, nodeport, reportedstate, goalstate, health), "
                                               "'; ' ORDER BY nodeid) FROM pgautofailover.node");
                char *cmd = xasprintf("for n in 1 2; do echo \"== n$n\"; tail -n 15 \"$SLHOOKD_TEST_PGHA/n$n.run.log\"; "
                                      "done >&2");

                if (system(cmd) != 0)
                        fprintf(stderr, "check_ha: no keeper logs\n");
                free(cmd);
                ck_abort_msg("%s: no primary and secondary after %u s: %s", what, secs, nodes);
        }
        free(ok);
        return primary(name);
}

/* ---- the clients ---- */

struct attempt {
        uint32_t ev;                    /* the client's event number */
        int16_t status;                 /* 0: no answer */
        bool retry_after;
        int64_t t0, t1;                 /* sent, answered (now_ms) */
};

struct client {
        pthread_t t;
        unsigned id, port;
        CURL *h;                        /* client(), made on the main thread */
        const atomic_bool *stop;
        struct attempt *a;              /* MAX_ATTEMPTS */
        atomic_size_t n;                /* a[0..n) are written */
        atomic_uint acked;              /* events 0..acked-1 got a 200 */
};

static size_t
on_header(char *p, size_t size, size_t n, void *userdata)
{
        if (size * n >= 12 && strncasecmp(p, "Retry-After:", 12) == 0)
                *(bool *) userdata = true;
        return size * n;
}

static unsigned
message_of(unsigned client, unsigned ev)
{
        return client * 1000000u + ev;
}

/* Post event after event on one connection; after anything but a 200,
 * wait 50 ms and post the same event again. */
static void *
client_main(void *arg)
{
        struct client *c = arg;
        struct curl_slist *ct = curl_slist_append(NULL, "Content-Type: application/json");
        char *url = xasprintf("https://127.0.0.1:%u/socketlabs/events", c->port);
        struct buf sink = { 0 };
        unsigned ev = 0;
        size_t n;
        bool retry_after;

        curl_easy_setopt(c->h, CURLOPT_URL, url);
        curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, ct);
        curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &sink);
        curl_easy_setopt(c->h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c->h, CURLOPT_HEADERDATA, &retry_after);
        for (n = 0; n < MAX_ATTEMPTS && !atomic_load(c->stop); n++) {
                char *body = mail_event("Delivered", message_of(c->id, ev), (int) (ev % 3000));
                struct attempt *a = &c->a[n];
                long st = 0;

                retry_after = false;
                a->ev = ev;
                a->t0 = time_mono_us() / 1000;
                curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body);
                if (curl_easy_perform(c->h) == CURLE_OK)
                        curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &st);
                a->t1 = time_mono_us() / 1000;
                a->status = (int16_t) st;
                a->retry_after = retry_after;
                atomic_store(&c->n, n + 1);
                free(body);
                sink.len = 0;
                if (st == 200)
                        atomic_store(&c->acked, ++ev);
                else
                        usleep(50 * 1000);
        }
        buf_done(&sink);
        curl_slist_free_all(ct);
        curl_easy_cleanup(c->h);
        free(url);
        return NULL;
}

static void
clients_start(struct client *c, unsigned port_a, unsigned port_b, const atomic_bool *stop)
{
        unsigned k;

        for (k = 0; k < CLIENTS; k++) {
                memset(&c[k], 0, sizeof(c[k]));
                c[k].id = k + 1;
                c[k].port = k % 2 ? port_b : port_a;
                c[k].h = client();
                c[k].stop = stop;
                c[k].a = xcalloc(MAX_ATTEMPTS, sizeof(struct attempt));
                ck_assert_int_eq(pthread_create(&c[k].t, NULL, client_main, &c[k]), 0);
        }
}

/* Whether every client had at least n 200s to requests sent at or after
 * since; *first[i] (i: 0 for a, 1 for b): when the first of them came. */
static bool
clients_acked_since(struct client *c, int64_t since, unsigned n, int64_t first[2])
{
        bool all = true;
        unsigned k;

        first[0] = first[1] = INT64_MAX;
        for (k = 0; k < CLIENTS; k++) {
                size_t i, m = atomic_load(&c[k].n);
                unsigned ok = 0;

                for (i = 0; i < m; i++)
                        if (c[k].a[i].status == 200 && c[k].a[i].t0 >= since) {
                                if (ok++ == 0 && c[k].a[i].t1 < first[k % 2])
                                        first[k % 2] = c[k].a[i].t1;
                        }
                all = all && ok >= n;
        }
        return all;
}

/* ---- the daemons ---- */

/* A daemon in d on the test's database, with [api] on the fake API and
 * url_port the instance the test event goes to (0: its own): a self-test
 * every 10 s, an API call that hangs holds the lock for 15 s. */
static void
start_instance(struct fake_api *f, unsigned url_port)
{
        start_pg_api_on(store_lines, f, url_port, 10, 15);
}

/* Wait (bounded) until sql on the test's database answers at least min. */
static void
wait_pq(const char *conninfo, const char *sql, long long min, unsigned seconds)
{
        unsigned i;

        for (i = 0; i < seconds * 20 && pq_at(conninfo, sql) < min; i++)
                usleep(50 * 1000);
        ck_assert_msg(pq_at(conninfo, sql) >= min, "'%s' below %lld after %u s", sql, min, seconds);
}

/* ---- the checks after the run ---- */

/* Every event that got a 200 is on the node at conninfo exactly once, and
 * nothing else is there but the few whose 503 came after their COMMIT
 * (one a client at most: each posts its event again until a 200). */
static unsigned
assert_stored_once(struct client *c, const char *conninfo)
{
        struct buf ids = { 0 };
        unsigned k, ev, acked = 0;
        const char *v[1];
        PGconn *pc = pg_connect(conninfo);
        PGresult *r;
        long long total, distinct, found;

        buf_puts(&ids, "{");
        for (k = 0; k < CLIENTS; k++)
                for (ev = 0; ev < atomic_load(&c[k].acked); ev++) {
                        char id[32];

                        snprintf(id, sizeof(id), "%sm-%u", acked++ ? "," : "", message_of(c[k].id, ev));
                        buf_puts(&ids, id);
                }
        buf_puts(&ids, "}");
        v[0] = ids.data;
        r = PQexecParams(pc, "SELECT count(*) FILTER (WHERE message_id = ANY($1::text[])), count(*), "
                             "count(DISTINCT message_id) FROM events", 1, NULL, v, NULL, NULL, 0);
        ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
        found = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        total = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        distinct = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
        PQclear(r);
        PQfinish(pc);
        buf_done(&ids);
        ck_assert_msg(found == acked, "%u events acknowledged, %lld of them on the promoted node", acked, found);
        ck_assert_msg(total == distinct, "%lld events stored for %lld messages: some twice", total, distinct);
        ck_assert_msg(total <= acked + CLIENTS, "%lld events stored, %u acknowledged", total, acked);
        return acked;
}

/* The rows of events and messages, as one text: the same on two nodes
 * when they hold the same rows. */
#define FINGERPRINT "SELECT (SELECT count(*) || ' ' || md5(coalesce(string_agg(e::text, ',' ORDER BY id), '')) " \
                    "FROM events e) || ' ' || (SELECT count(*) || ' ' || " \
                    "md5(coalesce(string_agg(m::text, ',' ORDER BY id), '')) FROM messages m)"

/* The old primary, a standby again, has replayed all the new primary
 * wrote, and holds the same rows. */
static void
assert_standby_same(unsigned new_port, unsigned old_port)
{
        char *new_dsn = node_dsn(new_port), *old_dsn = node_dsn(old_port), *lsn, *sql, *a, *b;
        unsigned i;

        ck_assert_int_eq(pq_at(old_dsn, "SELECT pg_is_in_recovery()::int"), 1);
        lsn = pq_text(new_dsn, "SELECT pg_current_wal_lsn()");
        sql = xasprintf("SELECT (pg_last_wal_replay_lsn() >= '%s')::int", lsn);
        for (i = 0; i < 600 && pq_at(old_dsn, sql) == 0; i++)
                usleep(50 * 1000);
        ck_assert_msg(pq_at(old_dsn, sql) == 1, "the old primary did not replay up to %s in 30 s", lsn);
        a = pq_text(new_dsn, FINGERPRINT);
        b = pq_text(old_dsn, FINGERPRINT);
        ck_assert_msg(strcmp(a, b) == 0, "the promoted node has %s, the old primary %s", a, b);
        free(a);
        free(b);
        free(sql);
        free(lsn);
        free(new_dsn);
        free(old_dsn);
}

/* ---- the test ---- */

static void
ha_setup(void)
{
        setup();
        PGconn *c = NULL;
        int i;

        dbname = pg_test_db(ha_dsn, &dsn, &store_lines);
        /* libpq tries the hosts in order and stops at the first that
         * refuses the startup: a standby that has not yet replayed the
         * CREATE DATABASE answers "does not exist" and the primary after
         * it is never asked. Wait (bounded) until the standby has it. */
        for (i = 0; i < 600; i++) {
                c = PQconnectdb(dsn);
                if (PQstatus(c) == CONNECTION_OK)
                        break;
                PQfinish(c);
                c = NULL;
                usleep(50 * 1000);
        }
        ck_assert_msg(c != NULL, "%s: not reachable on every node 30 s after CREATE DATABASE", dbname);
        PQfinish(c);
}

static void
ha_teardown(void)
{
        teardown();
        free(store_lines);
        free(dsn);
        free(dbname);
}

/* The self-test after the failover: with the API hanging, the instance
 * that runs it holds the advisory lock on the new primary, the other one
 * leaves it to it and calls the API not at all; then it passes. */
static void
assert_self_test_once(struct fake_api *f, struct daemon *ab)
{
        const char *left = "self-test left to the other instances: another instance is running it";
        int before[2], i, k;
        struct fake_counts n0 = fake_api_counts(f), n;
        long long passed;

        for (k = 0; k < 2; k++) {
                d = ab[k];
                before[k] = log_count(left);
        }
        passed = pq_at(dsn, "SELECT coalesce(extract(epoch FROM max(last_passed_at::timestamptz))::bigint, 0) "
                            "FROM webhook_status");
        fake_api_mode(f, FAKE_HANG);
        for (i = 0; i < 400 && fake_api_counts(f).hung == n0.hung; i++)
                usleep(50 * 1000);
        ck_assert_msg(fake_api_counts(f).hung == n0.hung + 1, "no self-test called the API in 20 s");
        ck_assert_int_eq(pq_at(dsn, HELD), 1);
        /* The other instance wakes within its 10 s interval and finds the
         * lock taken (the call hangs 15 s). */
        for (i = 0; i < 300; i++) {
                d = ab[0];
                if (log_count(left) > before[0])
                        break;
                d = ab[1];
                if (log_count(left) > before[1])
                        break;
                usleep(50 * 1000);
        }
        ck_assert_msg(i < 300, "no instance left the self-test to the other in 15 s");
        n = fake_api_counts(f);
        ck_assert_int_eq(n.hung, n0.hung + 1);
        fake_api_mode(f, FAKE_OK);
        /* The hung call times out; a retry passes. */
        {
                char *sql = xasprintf("SELECT (coalesce(extract(epoch FROM max(last_passed_at::timestamptz))::bigint, 0) "
                                      "> %lld)::int FROM webhook_status", passed);

                wait_pq(dsn, sql, 1, 40);
                free(sql);
        }
}

static void
failover(bool planned)
{
        char *cert = xasprintf("%s/cert.pem", certdir), *key = xasprintf("%s/key.pem", certdir);
        char old_name[8], new_name[8] = "", *new_dsn, *cmd;
        struct fake_api *f = fake_api_start(cert, key, API_KEY, cert);
        struct daemon ab[2];
        struct client c[CLIENTS];
        atomic_bool stop = false;
        unsigned old_port, new_port = 0, now_port = 0, i, k, acked, n503 = 0;
        char now_name[8] = "";
        int64_t t_fault, t_promoted, back[2], first_bad = INT64_MAX, last_bad = 0;
        pid_t pid = 0;

        ck_assert_ptr_nonnull(f);
        pgha_call("revive");            /* after a test that failed half-way */
        old_port = wait_healthy(old_name, "before the fault", 60);
        ck_assert_uint_gt(old_port, 0);
        ck_assert_msg(pq_at(dsn, "SELECT (current_setting('synchronous_standby_names') <> '')::int") == 1,
                      "the primary has no synchronous standby");
        start_instance(f, 0);
        ab[0] = d;
        start_instance(f, ab[0].port);
        ab[1] = d;
        wait_pq(dsn, "SELECT count(*) FROM webhook_status WHERE last_test_result = 'passed'", 1, 30);
        clients_start(c, ab[0].port, ab[1].port, &stop);
        for (i = 0; i < 1200 && !clients_acked_since(c, 0, 50, back); i++)
                usleep(50 * 1000);
        ck_assert_msg(clients_acked_since(c, 0, 50, back), "not 50 events acknowledged a client in 60 s");

        /* The fault, and the promotion as the monitor sees it. */
        t_fault = time_mono_us() / 1000;
        if (planned) {
                cmd = xasprintf("exec '%s' failover", pgha);
                pid = fork();
                ck_assert_int_ge(pid, 0);
                if (pid == 0) {
                        execl("/bin/sh", "sh", "-c", cmd, (char *) NULL);
                        _exit(127);
                }
                free(cmd);
        } else {
                cmd = xasprintf("kill %s", old_name + 1);
                pgha_call(cmd);
                free(cmd);
        }
        for (i = 0; i < 1200; i++) {
                if ((new_port = primary(new_name)) != 0 && new_port != old_port)
                        break;
                usleep(50 * 1000);
        }
        t_promoted = time_mono_us() / 1000;
        ck_assert_msg(new_port != 0 && new_port != old_port, "no node promoted in 60 s");
        if (planned) {
                int status;

                ck_assert_int_eq(waitpid(pid, &status, 0), pid);
                ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "pg_autoctl perform failover failed");
        }

        /* Both instances answer 200 again within 30 s of the promotion,
         * then each client has 50 more. */
        for (i = 0; i < 1200 && !clients_acked_since(c, t_promoted, 50, back); i++)
                usleep(50 * 1000);
        ck_assert_msg(clients_acked_since(c, t_promoted, 1, back), "an instance answered no 200 in 60 s after "
                      "the promotion");
        for (k = 0; k < 2; k++)
                ck_assert_msg(back[k] - t_promoted <= 30000, "instance %u answered 200 again only %.1f s after the "
                              "promotion", k, (double) (back[k] - t_promoted) / 1000);
        ck_assert(clients_acked_since(c, t_promoted, 50, back));
        assert_self_test_once(f, ab);
        atomic_store(&stop, true);
        for (k = 0; k < CLIENTS; k++)
                pthread_join(c[k].t, NULL);

        /* Every answer a 200, or a 503 with Retry-After. */
        for (k = 0; k < CLIENTS; k++)
                for (i = 0; i < atomic_load(&c[k].n); i++) {
                        struct attempt *a = &c[k].a[i];

                        if (a->status == 200)
                                continue;
                        n503++;
                        if (a->t0 < first_bad)
                                first_bad = a->t0;
                        if (a->t1 > last_bad)
                                last_bad = a->t1;
                        ck_assert_msg(a->status == 503, "client %u, event %u: status %d", c[k].id, a->ev, a->status);
                        ck_assert_msg(a->retry_after, "client %u, event %u: 503 without Retry-After", c[k].id, a->ev);
                }
        /* The primary now: the promoted node, unless the monitor (its
         * health checks shortened for tests) failed over once more since;
         * every acknowledged event must be on it either way. */
        for (i = 0; i < 1200 && (now_port = primary(now_name)) == 0; i++)
                usleep(50 * 1000);
        ck_assert_msg(now_port != 0, "no primary 60 s after the run");
        if (now_port != new_port) {
                ck_assert_msg(planned, "%s (:%u) is primary, not the promoted %s", now_name, now_port, new_name);
                fprintf(stderr, "check_ha: the monitor failed over again after the promotion of %s: %s (:%u) is "
                        "primary now\n", new_name, now_name, now_port);
                old_port = new_port;
                new_port = now_port;
                snprintf(new_name, sizeof(new_name), "%s", now_name);
        }
        new_dsn = node_dsn(new_port);
        acked = assert_stored_once(c, new_dsn);
        /* The log says which server it works with again. */
        cmd = xasprintf("storage works again: postgresql://slhookd@127.0.0.1:%u/%s", new_port, dbname);
        for (k = 0; k < 2; k++) {
                d = ab[k];
                ck_assert(log_has("storage failed, answering 503"));
                ck_assert_msg(log_has(cmd), "no '%s' in %s", cmd, d.log);
        }
        free(cmd);

        /* The old primary rejoins as a standby, with the same rows. */
        if (!planned) {
                cmd = xasprintf("start %s", old_name + 1);
                pgha_call(cmd);
                free(cmd);
        }
        /* A rejoin may need pg_rewind: longer than a failover, on a busy machine. */
        ck_assert_uint_eq(wait_healthy(new_name, "the old primary rejoining", 180), new_port);
        assert_standby_same(new_port, old_port);

        fprintf(stderr, "check_ha: %s of the primary (%s) under load (2 instances, %d keep-alive clients): %s "
                "promoted %.1f s after; %u answers 503 + Retry-After, from %.1f to %.1f s after the fault; 200 again "
                "from both instances %.1f and %.1f s after the fault (%.1f and %.1f s after the promotion); %u events "
                "acknowledged, 0 missing, 0 twice on the new primary; the old primary rejoined as a standby with the "
                "same rows; the self-test ran on one instance, the other left it to it\n",
                planned ? "pg_autoctl perform failover" : "SIGKILL", old_name, CLIENTS, new_name,
                (double) (t_promoted - t_fault) / 1000, n503, n503 ? (double) (first_bad - t_fault) / 1000 : 0.0,
                n503 ? (double) (last_bad - t_fault) / 1000 : 0.0, (double) (back[0] - t_fault) / 1000,
                (double) (back[1] - t_fault) / 1000, (double) (back[0] - t_promoted) / 1000,
                (double) (back[1] - t_promoted) / 1000, acked);
        for (k = 0; k < 2; k++) {
                d = ab[k];
                ck_assert_int_eq(daemon_stop(), 0);
                if (k == 0)
                        teardown();
        }
        fake_api_stop(f);
        for (k = 0; k < CLIENTS; k++)
                free(c[k].a);
        free(new_dsn);
        free(cert);
        free(key);
}

START_TEST(test_kill_primary)
{
        failover(false);
}
END_TEST

START_TEST(test_perform_failover)
{
        failover(true);
}
END_TEST

int
main(int argc, char **argv)
{
        Suite *s = suite_create("ha");
        TCase *tc = tcase_create("ha");
        const char *srcdir = getenv("top_srcdir");

        (void) argc;
        pgha = xasprintf("%s/tests/pgha", srcdir ? srcdir : ".");
        if (getenv("SLHOOKD_TEST_PGHA") == NULL) {
                if (system("command -v pg_autoctl >/dev/null") != 0) {
                        fprintf(stderr, "check_ha: SKIP: no pg_autoctl (apt-get install "
                                        "postgresql-15-auto-failover)\n");
                        return 77;
                }
                execl("/bin/sh", "sh", pgha, argv[0], (char *) NULL);
                fprintf(stderr, "check_ha: cannot run %s: %s\n", pgha, strerror(errno));
                return 99;
        }
        ha_dsn = getenv("SLHOOKD_TEST_PGHA_DSN");
        monitor = getenv("SLHOOKD_TEST_PGHA_MONITOR");
        if (ha_dsn == NULL || monitor == NULL) {
                fprintf(stderr, "check_ha: SLHOOKD_TEST_PGHA_DSN and _MONITOR are not set (run it under tests/pgha)\n");
                return 99;
        }
        tcase_set_timeout(tc, 480);
        tcase_add_unchecked_fixture(tc, make_certs, drop_certs);
        tcase_add_checked_fixture(tc, ha_setup, ha_teardown);
        tcase_add_test(tc, test_kill_primary);
        tcase_add_test(tc, test_perform_failover);
        return t_run(s, tc);
}
#endif
