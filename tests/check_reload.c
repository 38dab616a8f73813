/* Off the happy path of the running daemon: reloads (SIGHUP) with
 * connections opened before them, a writer stalled behind another process's
 * lock, secrets from a systemd credential and the state directory, endpoints
 * a reload adds, and a stop (SIGTERM) that a stalled database must not hold
 * past its bound. The real slhookd, real TLS, a real SQLite file. */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>

#include "daemon.h"

/* SIGHUP and wait (10 s at most) for the next "reloaded" line; whether it
 * came. */
static bool
reload_daemon(void)
{
        int before = log_count("\"message\":\"reloaded "), i;

        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
        for (i = 0; i < 1000; i++) {
                if (log_count("\"message\":\"reloaded ") > before)
                        return true;
                usleep(10 * 1000);
        }
        return false;
}

static void
write_secret(const char *name, const char *text)
{
        char *p = file_in(name);

        t_write(p, text);
        free(p);
}

/* A Queued event with its own MessageId, posted on h with secret. */
static long
post_on(CURL *h, const char *id, const char *secret, long *connects)
{
        char *body = xasprintf("{\"Type\":\"Queued\",\"MessageId\":\"%s\",\"Address\":\"k@example.com\","
                               "\"SecretKey\":\"%s\"}", id, secret);
        struct resp r = request(h, "POST", "/socketlabs/events", body, strlen(body), "application/json");
        long status = r.status;

        if (connects)
                *connects = r.connects;
        resp_done(&r);
        free(body);
        return status;
}

/* A keep-alive connection opened before a reload is judged by the new
 * secrets: the new one works on it, and a secret the reload took away does
 * not work on a new connection. */
START_TEST(test_keepalive_new_secret)
{
        CURL *h;
        long connects = -1;

        daemon_start("", "");
        h = client();
        ck_assert_int_eq(post_on(h, "ka-1", T_SECRET, &connects), 200);
        ck_assert_int_eq(connects, 1);

        write_secret("secret", "brand-new-secret\n");
        ck_assert_msg(reload_daemon(), "no reload logged");
        /* The same connection (no new connect), the new secret. */
        ck_assert_int_eq(post_on(h, "ka-2", "brand-new-secret", &connects), 200);
        ck_assert_msg(connects == 0, "the request went on a new connection (%ld connects)", connects);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id = 'ka-2'"), 1);
        curl_easy_cleanup(h);

        /* The old secret is gone, whatever connection serves it. */
        h = client();
        ck_assert_int_eq(post_on(h, "ka-3", T_SECRET, NULL), 401);
        ck_assert_int_eq(post_on(h, "ka-4", "brand-new-secret", NULL), 200);
        curl_easy_cleanup(h);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id LIKE 'ka-%'"), 3);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

/* Another process takes the database's write lock, then WAITERS requests
 * are posted (see waiters_ready). */
static struct waiters *
stall(unsigned port, const char *prefix, sqlite3 **lock, int64_t *first)
{
        struct waiters *w;

        ck_assert_int_eq(sqlite3_open(d.db, lock), SQLITE_OK);
        ck_assert_int_eq(sqlite3_exec(*lock, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
        w = waiters_start(prefix);
        waiters_ready(w, port, first);
        return w;
}

/* Requests of the flood answered so far, from the access log (a line per
 * answer). */
static unsigned
answered(const char *prefix)
{
        char *needle = xasprintf("\"slhookd_message_id\":\"%s-", prefix);
        unsigned n = (unsigned) log_count(needle);

        free(needle);
        return n;
}

/* SIGHUP while requests wait on a writer that another process's write lock
 * holds back (each transaction waits 10 s for it): the daemon reloads at
 * once, keeps running, answers every waiting request (503, the lock is
 * still held) and stores again once the lock goes. The listener they came
 * on goes only after its last job (libmicrohttpd aborts the process when a
 * daemon stops with a connection suspended). */
START_TEST(test_hup_stalled_writer)
{
        unsigned port = free_port();
        char *sections = xasprintf("[store]\nstatement_timeout = 10\n[metrics]\nlisten = 127.0.0.1:%u\n", port);
        struct waiters *f;
        sqlite3 *lock;
        int n503, n200;

        daemon_start("max_connections_per_ip = 0", sections);
        expect("{\"Type\":\"Queued\",\"MessageId\":\"warm\",\"SecretKey\":\"" T_SECRET "\"}", 200);
        f = stall(port, "stall", &lock, NULL);      /* each waits 10 s at least */
        write_secret("secret", T_SECRET "\nafter-stall\n");
        ck_assert_msg(reload_daemon(), "no reload while the writer was stalled");
        still_running();
        ck_assert_int_eq(atomic_load(&f->done), 0);     /* the reload did not wait for them */
        /* Every request is answered (two transactions of 10 s; 45 s at
         * most), the lock still held: none with 200. */
        waiters_answers(f, 45, &n503, &n200);
        printf("check_reload: SIGHUP with %d requests waiting on a stalled writer: %d answered 503, %d 200\n",
               WAITERS, n503, n200);
        ck_assert_int_eq(n200, 0);
        ck_assert_int_eq(n503, WAITERS);
        still_running();
        ck_assert_int_eq(sqlite3_exec(lock, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(lock);
        expect("{\"Type\":\"Queued\",\"MessageId\":\"after\",\"SecretKey\":\"after-stall\"}", 200);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id LIKE 'stall-%'"), 0);
        ck_assert_int_eq(answered("stall"), WAITERS);
        ck_assert_int_eq(daemon_stop(), 0);
        waiters_free(f);
        free(sections);
}
END_TEST

/* A batch that finds the database locked fails whole: each of its
 * requests gets 503 within about one busy timeout (statement_timeout, 5 s
 * by default), not one timeout per request of the batch. */
START_TEST(test_stalled_batch)
{
        unsigned port = free_port();
        char *sections = xasprintf("[metrics]\nlisten = 127.0.0.1:%u\n", port);
        struct waiters *f;
        sqlite3 *lock;
        int64_t t0;
        int n503, n200;
        double took;

        daemon_start("max_connections_per_ip = 0", sections);
        f = stall(port, "batch", &lock, &t0);
        waiters_answers(f, 60, &n503, &n200);
        took = (double) (time_mono_us() - t0) / 1e6;
        printf("check_reload: %d requests behind a locked database: %d answered 503 within %.1f s "
               "(busy timeout 5 s)\n", WAITERS, n503, took);
        ck_assert_int_eq(n503, WAITERS);
        ck_assert_int_eq(n200, 0);
        /* The writer takes what queued while it waited: two batches, maybe
         * three, each failing after one timeout. */
        ck_assert_msg(took < 4 * 5 + 4, "%d requests took %.1f s to get their 503", WAITERS, took);
        ck_assert_int_eq(sqlite3_exec(lock, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(lock);
        expect("{\"Type\":\"Queued\",\"MessageId\":\"after\",\"SecretKey\":\"" T_SECRET "\"}", 200);
        ck_assert_int_eq(daemon_stop(), 0);
        waiters_free(f);
        free(sections);
}
END_TEST

/* SIGTERM while the writer is stuck in one transaction that would wait 60 s
 * for another process's lock: the daemon still exits within its drain bound
 * (20 s, below systemd's TimeoutStopSec=30s), and no request that was not
 * committed got 200. */
START_TEST(test_term_stalled_writer)
{
        unsigned port = free_port();
        char *sections = xasprintf("[store]\nstatement_timeout = 60\n[metrics]\nlisten = 127.0.0.1:%u\n", port);
        struct waiters *f;
        sqlite3 *lock;
        int i, status = 0, n200 = 0;
        int64_t t0;
        pid_t w = 0;

        daemon_start("max_connections_per_ip = 0", sections);
        f = stall(port, "term", &lock, NULL);
        ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
        t0 = time_mono_us();
        for (i = 0; i < 2800 && (w = waitpid(d.pid, &status, WNOHANG)) == 0; i++)
                usleep(10 * 1000);
        ck_assert_msg(w == d.pid, "slhookd did not exit within 28 s of SIGTERM with a stalled writer");
        printf("check_reload: SIGTERM with a writer stalled for 60 s: exited after %.1f s with status %d\n",
               (double) (time_mono_us() - t0) / 1e6, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        d.pid = 0;
        ck_assert(WIFEXITED(status));
        ck_assert_int_eq(WEXITSTATUS(status), 1);
        ck_assert(log_has("not stored"));
        pthread_join(f->t, NULL);
        for (i = 0; i < WAITERS; i++)
                n200 += f->status[i] == 200;
        ck_assert_int_eq(sqlite3_exec(lock, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(lock);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id LIKE 'term-%'"), n200);
        ck_assert_int_eq(n200, 0);
        waiters_free(f);
        free(sections);
}
END_TEST

/* Under systemd the credential NAME.secret is fixed for the unit's life.
 * secret_file adds to it, and so does the state directory's NAME.secret,
 * which a reload reads again: that is how a secret is rotated without a
 * restart. */
START_TEST(test_rotate_with_credential)
{
        char *creds, *state, *p;

        daemon_listen();
        creds = file_in("creds");
        state = file_in("state");
        ck_assert_int_eq(mkdir(creds, 0700), 0);
        ck_assert_int_eq(mkdir(state, 0700), 0);
        p = xasprintf("%s/main.secret", creds);
        t_write(p, T_SECRET "\n");
        free(p);
        write_secret("secret", SECRET_2 "\n");
        setenv("CREDENTIALS_DIRECTORY", creds, 1);
        setenv("STATE_DIRECTORY", state, 1);
        daemon_start("", "");
        unsetenv("CREDENTIALS_DIRECTORY");
        unsetenv("STATE_DIRECTORY");

        expect("{\"Type\":\"Queued\",\"MessageId\":\"cred\",\"SecretKey\":\"" T_SECRET "\"}", 200);
        expect("{\"Type\":\"Queued\",\"MessageId\":\"file\",\"SecretKey\":\"" SECRET_2 "\"}", 200);
        expect("{\"Type\":\"Queued\",\"MessageId\":\"rot\",\"SecretKey\":\"rotated-secret\"}", 401);

        p = xasprintf("%s/main.secret", state);
        t_write(p, "rotated-secret\n");
        ck_assert_msg(reload_daemon(), "no reload logged");
        expect("{\"Type\":\"Queued\",\"MessageId\":\"rot\",\"SecretKey\":\"rotated-secret\"}", 200);
        expect("{\"Type\":\"Queued\",\"MessageId\":\"cred2\",\"SecretKey\":\"" T_SECRET "\"}", 200);

        /* Taken out of the state directory: no longer accepted. */
        ck_assert_int_eq(unlink(p), 0);
        ck_assert_msg(reload_daemon(), "no reload logged");
        expect("{\"Type\":\"Queued\",\"MessageId\":\"rot2\",\"SecretKey\":\"rotated-secret\"}", 401);
        ck_assert_int_eq(daemon_stop(), 0);
        free(p);
        free(state);
        free(creds);
}
END_TEST

/* An endpoint a reload adds takes events and is counted in /metrics. */
START_TEST(test_reload_adds_endpoint)
{
        unsigned port = free_port();
        char *metrics = xasprintf("[metrics]\nlisten = 127.0.0.1:%u\n", port), *more, *text;
        struct resp r;
        CURL *h;

        daemon_start("", metrics);
        more = xasprintf("%s\n[endpoint second]\npath = /second\nsecret_file = secret\n", metrics);
        write_conf("", more);
        ck_assert_msg(reload_daemon(), "no reload logged");
        h = client();
        r = request(h, "POST", "/second", "{\"Type\":\"Queued\",\"MessageId\":\"s-1\",\"SecretKey\":\"" T_SECRET "\"}",
                    strlen("{\"Type\":\"Queued\",\"MessageId\":\"s-1\",\"SecretKey\":\"" T_SECRET "\"}"),
                    "application/json");
        ASSERT_STATUS(r, 200);
        resp_done(&r);
        curl_easy_cleanup(h);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE endpoint = 'second' AND message_id = 's-1'"), 1);
        ck_assert_int_eq(get_plain(port, "/metrics", &text), 200);
        ck_assert_msg(strstr(text, "slhookd_events_total{endpoint=\"second\",type=\"Queued\",outcome=\"stored\"} 1\n"),
                      "the new endpoint is not counted:\n%s", text);
        free(text);
        ck_assert_int_eq(daemon_stop(), 0);
        free(more);
        free(metrics);
}
END_TEST

int
main(void)
{
        Suite *s = suite_create("reload");
        TCase *tc = tcase_create("reload");

        tcase_add_unchecked_fixture(tc, make_certs, drop_certs);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_keepalive_new_secret);
        tcase_add_test(tc, test_rotate_with_credential);
        tcase_add_test(tc, test_reload_adds_endpoint);
        tcase_add_test(tc, test_stalled_batch);
        tcase_add_test(tc, test_hup_stalled_writer);
        tcase_add_test(tc, test_term_stalled_writer);
        return t_run(s, tc);
}
