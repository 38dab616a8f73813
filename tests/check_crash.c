/* Crash consistency: slhookd killed with SIGKILL at random moments under
 * load, and during a schema upgrade. Whatever the moment, every event that
 * got a 200 is in the database exactly once after the restart, and the
 * database passes PRAGMA integrity_check. */
#include "config.h"

#include <stdatomic.h>

#include "daemon.h"
#include "store.h"

#define ROUNDS 20
#define CLIENTS 8
#define MAX_PER_CLIENT 4000     /* bounds a round even if the kill came late */

struct client {
        int round, id;
        atomic_bool *stop;
        unsigned sent;                  /* requests begun: ids 0 .. sent-1 */
        unsigned char acked[MAX_PER_CLIENT];
};

static char *
event_body(int round, int client, unsigned i)
{
        static const char *const types[] = { "Queued", "Delivered", "Failed", "Deferred" };

        return xasprintf("{\"Type\":\"%s\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"2026-01-01T00:00:%02uZ\","
                         "\"ServerId\":1,\"MessageId\":\"k%d-%d-%u\",\"Address\":\"r%u@example.com\","
                         "\"FailureType\":\"Permanent\",\"Reason\":\"550 no such user\"}",
                         types[i % 4], i % 60, round, client, i, i % 97);
}

static void *
client_main(void *arg)
{
        struct client *c = arg;
        CURL *h = client();

        curl_easy_setopt(h, CURLOPT_TIMEOUT, 5L);
        while (!atomic_load(c->stop) && c->sent < MAX_PER_CLIENT) {
                char *body = event_body(c->round, c->id, c->sent);
                struct resp r = request(h, "POST", "/socketlabs/events", body, strlen(body), "application/json");

                c->acked[c->sent++] = r.status == 200;
                free(body);
                resp_done(&r);
                if (r.status != 200)
                        break;          /* the daemon is gone */
        }
        curl_easy_cleanup(h);
        return NULL;
}

/* The message ids of round r stored now, sorted. */
static char **
stored_ids(int round, size_t *n)
{
        char *sql = xasprintf("SELECT message_id FROM events WHERE message_id LIKE 'k%d-%%' ORDER BY message_id", round);
        char *rows = t_rows(d.db, sql), *line, *save = NULL, **v = NULL;

        *n = 0;
        for (line = strtok_r(rows, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                v = xreallocarray(v, *n + 1, sizeof(*v));
                v[(*n)++] = xstrdup(line);
        }
        free(rows);
        free(sql);
        return v;
}

static int
cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static void
kill9(void)
{
        ck_assert_int_eq(kill(d.pid, SIGKILL), 0);
        ck_assert_int_eq(waitpid(d.pid, NULL, 0), d.pid);
        d.pid = 0;
}

/* Eight keep-alive clients post unique events; SIGKILL after a random
 * 10-400 ms; restart on the same database. Every acknowledged event is
 * there, and once the unacknowledged ones are posted again (as SocketLabs
 * retries), every event is there exactly once. */
START_TEST(test_kill9_under_load)
{
        unsigned seed = (unsigned) time(NULL) ^ (unsigned) getpid();
        unsigned long acked_total = 0, sent_total = 0;
        struct client *c = xcalloc(CLIENTS, sizeof(*c));
        pthread_t t[CLIENTS];
        atomic_bool stop;
        int round, i;

        printf("check_crash: seed %u\n", seed);
        srand(seed);
        daemon_start("", "");
        for (round = 0; round < ROUNDS; round++) {
                unsigned delay_ms = 10 + (unsigned) rand() % 391, j;
                size_t n_stored, k;
                char **ids;

                atomic_store(&stop, false);
                for (i = 0; i < CLIENTS; i++) {
                        memset(&c[i], 0, sizeof(c[i]));
                        c[i].round = round;
                        c[i].id = i;
                        c[i].stop = &stop;
                        ck_assert_int_eq(pthread_create(&t[i], NULL, client_main, &c[i]), 0);
                }
                usleep(delay_ms * 1000);
                kill9();
                atomic_store(&stop, true);
                for (i = 0; i < CLIENTS; i++)
                        pthread_join(t[i], NULL);

                daemon_rebind();
                daemon_start("", "");
                ck_assert_int_eq(q("SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"), 1);
                ids = stored_ids(round, &n_stored);
                for (i = 0; i < CLIENTS; i++)
                        for (j = 0; j < c[i].sent; j++) {
                                char want[64], *key = want;

                                if (!c[i].acked[j])
                                        continue;
                                acked_total++;
                                snprintf(want, sizeof(want), "k%d-%d-%u", round, i, j);
                                ck_assert_msg(bsearch(&key, ids, n_stored, sizeof(*ids), cmp_str) != NULL,
                                              "seed %u round %d (kill after %u ms): acknowledged %s is missing",
                                              seed, round, delay_ms, want);
                        }
                for (k = 0; k < n_stored; k++)
                        free(ids[k]);
                free(ids);

                /* SocketLabs posts again what got no 200. */
                for (i = 0; i < CLIENTS; i++)
                        for (j = 0; j < c[i].sent; j++)
                                if (!c[i].acked[j]) {
                                        char *body = event_body(round, i, j);

                                        expect(body, 200);
                                        free(body);
                                }
                for (i = 0; i < CLIENTS; i++)
                        sent_total += c[i].sent;
                ck_assert_msg(q("SELECT count(*) FROM events") == (long long) sent_total,
                              "seed %u round %d: %lld rows for %lu events", seed, round,
                              q("SELECT count(*) FROM events"), sent_total);
                ck_assert_int_eq(q("SELECT count(DISTINCT message_id) FROM events"), (long long) sent_total);
        }
        ck_assert_int_eq(daemon_stop(), 0);
        ck_assert_int_eq(q("SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"), 1);
        ck_assert_int_eq(q("SELECT count(*) FROM messages WHERE message_id LIKE 'k%'"), (long long) sent_total);
        ck_assert_int_eq(q("SELECT sum(events) FROM event_counts"), (long long) sent_total);
        printf("check_crash: %d kill -9 rounds, %lu events acknowledged before a kill, %lu events checked\n",
               ROUNDS, acked_total, sent_total);
        free(c);
}
END_TEST

/* What the upgraded database holds, row for row. */
static char *
upgraded_rows(void)
{
        struct buf b = { 0 };
        static const char *const sql[] = {
                "SELECT * FROM messages ORDER BY id",
                "SELECT id, message FROM events ORDER BY id",
                "SELECT * FROM async_bounces ORDER BY message_id",
                "SELECT * FROM event_counts ORDER BY 1, 2",
        };
        size_t i;

        buf_puts(&b, "");
        for (i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
                char *rows = t_rows(d.db, sql[i]);

                buf_puts(&b, rows);
                free(rows);
        }
        return b.data;
}

/* A schema 1 database of 30,000 events, upgraded at start-up, killed at
 * random moments of the upgrade: each time it is still wholly schema 1 or
 * wholly schema 2, and the start that completes leaves the same rows as an
 * upgrade that was never interrupted. */
START_TEST(test_kill9_during_upgrade)
{
        unsigned seed = (unsigned) time(NULL) ^ (unsigned) getpid();
        char *cmd, *want, *got;
        int64_t t0, upgrade_us;
        int round, interrupted = 0;

        srand(seed);
        daemon_listen();
        cmd = xasprintf("sqlite3 '%s' < '%s/schema-v1.sql' && sqlite3 '%s' \""
                        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000) "
                        "INSERT INTO events (received_at, endpoint, type, wire_type, occurred_at, server_id, "
                        "message_id, address, is_test, raw, digest) "
                        "SELECT '2026-01-01T00:00:00.000000Z', 'main', CASE i %% 3 WHEN 0 THEN 'Failed' ELSE 'Sent' END, "
                        "CASE i %% 3 WHEN 0 THEN 'Failed' ELSE 'Delivered' END, "
                        "printf('2026-01-01T%%02d:00:00.000000Z', (i * 7) %% 24), 1, 'u' || (i / 3), "
                        "'a' || (i / 3) || '@example.com', 0, '{}', 'd' || i FROM n\" && cp '%s' '%s.v1'",
                        d.db, TEST_DATA_DIR, d.db, d.db, d.db);
        ck_assert_int_eq(system(cmd), 0);
        free(cmd);

        /* An upgrade left alone: how long it takes here, and what it makes. */
        t0 = time_mono_us();
        daemon_start("", "");
        upgrade_us = time_mono_us() - t0;
        ck_assert_int_eq(daemon_stop(), 0);
        ck_assert_int_eq(q("PRAGMA user_version"), store_schema_version());
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message IS NULL"), 0);
        ck_assert_int_gt(q("SELECT count(*) FROM async_bounces"), 0);
        want = upgraded_rows();
        cmd = xasprintf("cp '%s.v1' '%s' && rm -f '%s-wal' '%s-shm'", d.db, d.db, d.db, d.db);
        ck_assert_int_eq(system(cmd), 0);

        /* Up to 8 kills inside the upgrade; a kill that came after it
         * before any came inside starts over from the schema 1 copy. */
        for (round = 0; round < 30 && interrupted < 8; round++) {
                long long version;

                daemon_rebind();
                daemon_start_expect_exit("", "");
                usleep((useconds_t) (rand() % (upgrade_us > 0 ? upgrade_us : 1)));
                kill9();
                version = t_query(d.db, "PRAGMA user_version");
                /* The whole upgrade is one transaction: 1 or the latest, nothing between. */
                ck_assert_msg(version == 1 || version == store_schema_version(), "seed %u: user_version %lld", seed,
                              version);
                if (version > 1 && interrupted > 0)
                        break;
                if (version > 1) {
                        ck_assert_int_eq(system(cmd), 0);
                        continue;
                }
                interrupted++;
                ck_assert_int_eq(t_query(d.db, "SELECT count(*) FROM sqlite_master WHERE name = 'messages'"), 0);
        }
        daemon_rebind();
        daemon_start("", "");
        ck_assert_int_eq(daemon_stop(), 0);
        ck_assert_int_eq(q("PRAGMA user_version"), store_schema_version());
        ck_assert_int_eq(q("SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"), 1);
        ck_assert_int_eq(q("SELECT count(*) FROM events"), 30000);
        got = upgraded_rows();
        ck_assert_msg(strcmp(got, want) == 0, "seed %u: the upgrade after %d kills differs from one never killed",
                      seed, interrupted);
        ck_assert_msg(interrupted > 0, "seed %u: no kill landed inside the %lld us upgrade", seed, (long long) upgrade_us);
        printf("check_crash: upgrade of 30,000 events (%lld ms) killed %d times\n",
               (long long) upgrade_us / 1000, interrupted);
        free(cmd);
        free(got);
        free(want);
}
END_TEST

int
main(void)
{
        Suite *s = suite_create("crash");
        TCase *tc = tcase_create("crash");

        tcase_add_unchecked_fixture(tc, make_certs, drop_certs);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 600);
        tcase_add_test(tc, test_kill9_under_load);
        tcase_add_test(tc, test_kill9_during_upgrade);
        return t_run(s, tc);
}
