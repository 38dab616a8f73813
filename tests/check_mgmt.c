/* The management thread end to end: the real daemon registers its webhook
 * with the fake SocketLabs API over TLS and self-tests it (the fake really
 * posts the test event to the daemon), and reports what went wrong when the
 * API misbehaves, while intake goes on. */
#include "config.h"

#include "daemon.h"
#include "fake_api.h"

#define API_KEY "live-api-key-3b9e1d"

static struct fake_api *fake;

static void
fake_setup(void)
{
        char *cert = xasprintf("%s/cert.pem", certdir), *key = xasprintf("%s/key.pem", certdir);

        setup();
        d.api_key = API_KEY;
        fake = fake_api_start(cert, key, API_KEY, cert);
        ck_assert_ptr_nonnull(fake);
        free(cert);
        free(key);
}

static void
fake_teardown(void)
{
        teardown();
        fake_api_stop(fake);
}

/* [api] for endpoint ep (path /PATH), with this self-test timeout. */
static char *
api_section(const char *ep, const char *path, unsigned timeout, const char *extra)
{
        char *key_file;

        if (d.port == 0)
                daemon_listen();
        key_file = file_in("api-key");
        t_write(key_file, API_KEY "\n");
        free(key_file);
        return xasprintf("[api]\n"
                         "base_url = https://127.0.0.1:%u/v2\n"
                         "key_file = api-key\n"
                         "endpoint = %s\n"
                         "public_url = https://127.0.0.1:@PORT@%s\n"
                         "ca_file = %s/cert.pem\n"
                         "self_test_interval = 3600\n"
                         "self_test_timeout = %u\n%s",
                         fake_api_port(fake), ep, path, certdir, timeout, extra ? extra : "");
}

static char *
public_url(const char *path)
{
        if (d.port == 0)
                daemon_listen();
        return xasprintf("https://127.0.0.1:%u%s", d.port, path);
}

/* Wait (bounded) until webhook_status holds a result for endpoint ep that
 * is want ("passed" or "failed"). */
static void
wait_result(const char *ep, const char *want)
{
        char *sql = xasprintf("SELECT count(*) FROM webhook_status WHERE endpoint = '%s' AND last_test_result = '%s'",
                              ep, want);
        int i;

        for (i = 0; i < 300; i++) {
                if (access(d.db, F_OK) == 0 && q(sql) == 1)
                        break;
                usleep(50 * 1000);
        }
        ck_assert_msg(q(sql) == 1, "no '%s' self-test result for %s in 15 s", want, ep);
        free(sql);
}

static char *
status_text(const char *col)
{
        char *sql = xasprintf("SELECT %s FROM webhook_status", col);
        char *v = t_rows(d.db, sql);

        free(sql);
        return v;
}

static void
assert_status(const char *col, const char *want)
{
        char *got = status_text(col);

        ck_assert_msg(strcmp(got, want) == 0, "%s: got %s want %s", col, got, want);
        free(got);
}

/* The API key is in no log line and no database page. */
static void
assert_key_nowhere(void)
{
        char *p = xasprintf("%s-wal", d.db);
        size_t n;
        char *s;

        s = t_slurp(d.log, &n);
        ck_assert(!t_contains(s, n, API_KEY));
        free(s);
        s = t_slurp(d.db, &n);
        ck_assert(!t_contains(s, n, API_KEY));
        free(s);
        if ((s = t_slurp(p, &n)) != NULL)
                ck_assert(!t_contains(s, n, API_KEY));
        free(s);
        free(p);
}

START_TEST(test_register_and_self_test)
{
        char *api = api_section("main", "/socketlabs/events", 10, NULL);
        struct fake_counts c;
        int nfd = notify_socket();

        daemon_start("", api);
        wait_result("main", "passed");
        ck_assert(notified(nfd, "STATUS=self-test passed (webhook 1001"));
        close(nfd);
        c = fake_api_counts(fake);
        ck_assert_int_eq(c.lists, 1);
        ck_assert_int_eq(c.creates, 1);         /* none was there: created */
        ck_assert_int_eq(c.tests, 1);
        ck_assert_int_eq(c.posted, 1);
        ck_assert_int_eq(c.unauthorized, 0);
        ck_assert_int_eq(fake_api_last_post_status(fake), 200);
        assert_status("webhook_id, last_test_step, last_test_http_status, last_error", "1001|wait|200|NULL\n");
        ck_assert_int_eq(q("SELECT count(*) FROM webhook_status WHERE registered_at IS NOT NULL "
                           "AND last_passed_at = last_test_at AND last_test_rtt_ms > 0"), 1);
        /* The test event made the whole trip into the database. */
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id = 'SampleMessageId' AND is_test = 1"), 1);
        ck_assert(log_has("self-test passed: webhook 1001"));
        /* The figure for the record: perform-test called to event stored. */
        {
                char *rtt = t_rows(d.db, "SELECT round(last_test_rtt_ms, 2) FROM webhook_status");

                rtt[strcspn(rtt, "\n")] = '\0';
                fprintf(stderr, "self-test round trip on loopback: %s ms\n", rtt);
                free(rtt);
        }
        /* Registered with the endpoint's own secret. */
        {
                char *s = fake_api_secret(fake, 1001);

                ck_assert_str_eq(s, T_SECRET);
                free(s);
        }
        expect_file("queued.json", 200);
        ck_assert_int_eq(daemon_stop(), 0);
        assert_key_nowhere();
        free(api);
}
END_TEST

START_TEST(test_reuses_registered_webhook)
{
        char *api = api_section("main", "/socketlabs/events", 10, NULL);
        char *url = public_url("/socketlabs/events");
        int id;

        fake_api_add(fake, "https://elsewhere.example/hook", "x");
        id = fake_api_add(fake, url, T_SECRET);
        daemon_start("", api);
        wait_result("main", "passed");
        ck_assert_int_eq(fake_api_counts(fake).creates, 0);
        ck_assert_int_eq(q("SELECT webhook_id FROM webhook_status"), id);
        ck_assert_int_eq(daemon_stop(), 0);
        free(url);
        free(api);
}
END_TEST

/* By webhook_id: no listing, no creation. */
START_TEST(test_webhook_id_configured)
{
        char *url = public_url("/socketlabs/events"), *api;
        char extra[64];
        int id = fake_api_add(fake, url, T_SECRET);

        snprintf(extra, sizeof(extra), "webhook_id = %d\n", id);
        api = api_section("main", "/socketlabs/events", 10, extra);
        daemon_start("", api);
        wait_result("main", "passed");
        ck_assert_int_eq(fake_api_counts(fake).lists, 0);
        ck_assert_int_eq(fake_api_counts(fake).gets, 1);
        ck_assert_int_eq(fake_api_counts(fake).creates, 0);
        ck_assert_int_eq(daemon_stop(), 0);
        free(url);
        free(api);
}
END_TEST

/* An endpoint without a secret gets one from the API, keeps it (0600) and
 * accepts it at once. */
START_TEST(test_secret_generated)
{
        char *api = api_section("gen", "/gen/events", 10, NULL), *sections, *file, *secret, *held, *body;
        struct stat st;
        struct resp r;
        CURL *h;

        sections = xasprintf("[endpoint gen]\npath = /gen/events\n%s", api);
        daemon_start("", sections);
        wait_result("gen", "passed");
        ck_assert_int_eq(fake_api_counts(fake).secrets, 1);
        file = file_in("gen.secret");
        ck_assert_int_eq(stat(file, &st), 0);
        ck_assert_int_eq(st.st_mode & 0777, 0600);
        secret = t_slurp(file, NULL);
        secret[strcspn(secret, "\n")] = '\0';
        held = fake_api_secret(fake, 1001);
        ck_assert_str_eq(held, secret);
        /* The listener takes it; main's secret is not gen's. */
        body = xasprintf("{\"Type\":\"Queued\",\"MessageId\":\"g1\",\"Address\":\"g@example.com\","
                         "\"SecretKey\":\"%s\"}", secret);
        h = client();
        r = request(h, "POST", "/gen/events", body, strlen(body), "application/json");
        ASSERT_STATUS(r, 200);
        resp_done(&r);
        free(body);
        body = xasprintf("{\"Type\":\"Queued\",\"MessageId\":\"g2\",\"SecretKey\":\"%s\"}", T_SECRET);
        r = request(h, "POST", "/gen/events", body, strlen(body), "application/json");
        ASSERT_STATUS(r, 401);
        resp_done(&r);
        curl_easy_cleanup(h);
        /* The secret is in its file only: not in the log, not in the database. */
        {
                size_t n;
                char *s = t_slurp(d.log, &n);

                ck_assert(!t_contains(s, n, secret));
                free(s);
        }
        ck_assert_int_eq(daemon_stop(), 0);
        free(body);
        free(held);
        free(secret);
        free(file);
        free(sections);
        free(api);
}
END_TEST

/* A webhook already registered, an endpoint without a secret: the new
 * secret is given to the webhook (update), and the self-test passes. */
START_TEST(test_secret_given_to_existing_webhook)
{
        char *api = api_section("gen", "/gen/events", 10, NULL), *sections, *file, *secret, *held;
        char *url = public_url("/gen/events");
        int id = fake_api_add(fake, url, "old-secret");

        sections = xasprintf("[endpoint gen]\npath = /gen/events\n%s", api);
        daemon_start("", sections);
        wait_result("gen", "passed");
        ck_assert_int_eq(fake_api_counts(fake).updates, 1);
        ck_assert_int_eq(fake_api_counts(fake).creates, 0);
        file = file_in("gen.secret");
        secret = t_slurp(file, NULL);
        secret[strcspn(secret, "\n")] = '\0';
        held = fake_api_secret(fake, id);
        ck_assert_str_eq(held, secret);
        ck_assert_int_eq(daemon_stop(), 0);
        free(held);
        free(secret);
        free(file);
        free(sections);
        free(url);
        free(api);
}
END_TEST

/* The secret of file (its first line). */
static char *
first_line(const char *name)
{
        char *file = file_in(name), *s = t_slurp(file, NULL);

        ck_assert_ptr_nonnull(s);
        s[strcspn(s, "\n")] = '\0';
        free(file);
        return s;
}

/* The daemon's listening socket again on the same port, for a restart
 * behind the same public_url. */
static void
rebind_same_port(void)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) d.port) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

        ck_assert_int_ge(fd, 0);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(fd, 256), 0);
        d.fd = fd;
}

/* A new secret that SocketLabs did not take (503 to the update) is given
 * again at the next run until it is, in the same process and after a
 * restart: the listener and SocketLabs end up with the same secret. */
START_TEST(test_update_retried)
{
        char *api = api_section("gen", "/gen/events", 10, NULL), *sections, *secret, *held;
        char *url = public_url("/gen/events");
        int id = fake_api_add(fake, url, "old-secret");

        sections = xasprintf("[endpoint gen]\npath = /gen/events\n%s", api);
        /* One 503: the next run (5 s later) gives it again. */
        fake_api_fail_updates(fake, 1);
        daemon_start("", sections);
        wait_result("gen", "passed");
        ck_assert_int_eq(fake_api_counts(fake).updates, 2);
        ck_assert(log_has("giving webhook 1001 the new secret: "));
        secret = first_line("gen.secret");
        held = fake_api_secret(fake, id);
        ck_assert_str_eq(held, secret);
        ck_assert_int_eq(daemon_stop(), 0);
        free(held);
        free(secret);

        /* The same with a restart in between: the new process gives it. */
        exec_rw("DELETE FROM webhook_status");
        {
                char *gen = file_in("gen.secret");

                ck_assert_int_eq(unlink(gen), 0);
                free(gen);
        }
        fake_api_fail_updates(fake, 1000);
        rebind_same_port();
        daemon_start("", sections);
        wait_result("gen", "failed");
        ck_assert_int_eq(daemon_stop(), 0);
        fake_api_fail_updates(fake, 0);
        exec_rw("DELETE FROM webhook_status");
        rebind_same_port();
        daemon_start("", sections);
        wait_result("gen", "passed");
        secret = first_line("gen.secret");
        held = fake_api_secret(fake, id);
        ck_assert_str_eq(held, secret);
        ck_assert_int_eq(fake_api_counts(fake).secrets, 2);
        ck_assert_int_eq(daemon_stop(), 0);
        free(held);
        free(secret);
        free(sections);
        free(url);
        free(api);
}
END_TEST

/* A generated secret is the listener's whether the management thread runs
 * or not: after a reload that cannot start it (the API key is gone), posts
 * with that secret are still stored. */
START_TEST(test_generated_secret_survives_reload)
{
        char *api = api_section("gen", "/gen/events", 10, NULL), *sections, *secret, *body, *key;
        int i;
        struct resp r;
        CURL *h;

        sections = xasprintf("[endpoint gen]\npath = /gen/events\n%s", api);
        daemon_start("", sections);
        wait_result("gen", "passed");
        secret = first_line("gen.secret");
        key = file_in("api-key");
        ck_assert_int_eq(unlink(key), 0);
        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
        for (i = 0; i < 1000 && !log_has("\"message\":\"reloaded "); i++)
                usleep(10 * 1000);
        ck_assert(log_has("the management thread cannot start"));
        body = xasprintf("{\"Type\":\"Queued\",\"MessageId\":\"kept\",\"SecretKey\":\"%s\"}", secret);
        h = client();
        r = request(h, "POST", "/gen/events", body, strlen(body), "application/json");
        ASSERT_STATUS(r, 200);
        resp_done(&r);
        curl_easy_cleanup(h);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id = 'kept' AND endpoint = 'gen'"), 1);
        ck_assert_int_eq(daemon_stop(), 0);
        free(body);
        free(key);
        free(secret);
        free(sections);
        free(api);
}
END_TEST

/* Each misbehaviour: a failed self-test, where and why, and intake goes on. */
START_TEST(test_failures)
{
        static const struct {
                enum fake_mode mode;
                const char *step, *error;
        } cases[] = {
                { FAKE_REJECT_KEY, "register|401", "listing webhooks: API key rejected (HTTP 401)" },
                { FAKE_ERROR, "register|500", "listing webhooks: GET /event-webhook: HTTP 500" },
                { FAKE_MALFORMED, "register|200", "listing webhooks: unexpected answer to the webhook list" },
                { FAKE_HANG, "register|NULL", "listing webhooks: GET /event-webhook: no answer within 2 s" },
                { FAKE_NO_EVENT, "wait|200", "the test event was not received within 2 s" },
                { FAKE_WRONG_SECRET, "wait|200", "the test event came with a wrong SecretKey (answered 401)" },
        };
        int i = _i;
        char *api, *got, *want;

        fake_api_mode(fake, cases[i].mode);
        api = api_section("main", "/socketlabs/events", 2, NULL);
        daemon_start("", api);
        wait_result("main", "failed");
        want = xasprintf("%s|%s\n", cases[i].step, cases[i].error);
        got = status_text("last_test_step, last_test_http_status, last_error");
        ck_assert_msg(strcmp(got, want) == 0, "mode %d: got %s want %s", cases[i].mode, got, want);
        ck_assert(log_has(cases[i].error));
        /* Intake is not touched. */
        expect_file("delivered.json", 200);
        ck_assert_int_eq(daemon_stop(), 0);
        assert_key_nowhere();
        free(got);
        free(want);
        free(api);
}
END_TEST

/* After a failure it tries again (backoff, 5 s first) and passes. */
START_TEST(test_recovers)
{
        char *api = api_section("main", "/socketlabs/events", 2, NULL);

        fake_api_mode(fake, FAKE_ERROR);
        daemon_start("", api);
        wait_result("main", "failed");
        fake_api_mode(fake, FAKE_OK);
        wait_result("main", "passed");
        assert_status("last_error", "NULL\n");
        ck_assert(log_has("self-test passed"));
        ck_assert_int_eq(daemon_stop(), 0);
        free(api);
}
END_TEST

/* SIGTERM while an API call hangs (the call's own timeout is 60 s): the
 * daemon still stops at once, cleanly. */
START_TEST(test_sigterm_interrupts_api)
{
        char *api = api_section("main", "/socketlabs/events", 60, NULL);
        int i, status = -1;

        fake_api_mode(fake, FAKE_HANG);
        daemon_start("", api);
        kill(d.pid, SIGTERM);
        for (i = 0; i < 200; i++) {
                if (waitpid(d.pid, &status, WNOHANG) == d.pid)
                        break;
                usleep(50 * 1000);
        }
        ck_assert_msg(i < 200, "slhookd still running 10 s after SIGTERM");
        d.pid = 0;
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        free(api);
}
END_TEST

START_TEST(test_missing_key_file)
{
        char *api = api_section("main", "/socketlabs/events", 2, NULL), *key = file_in("api-key");
        int i, status;

        unlink(key);
        daemon_start_expect_exit("", api);
        for (i = 0; i < 200 && waitpid(d.pid, &status, WNOHANG) != d.pid; i++)
                usleep(50 * 1000);
        d.pid = 0;
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 78);     /* EX_CONFIG: systemd does not restart */
        ck_assert(log_has("[api] key_file: cannot read '"));
        ck_assert(log_has("/api-key': No such file or directory"));
        free(key);
        free(api);
}
END_TEST

/* The unit's default when /etc/slhookd/api-key is absent (SetCredential=
 * api-key:\n): with [api] that is a configuration error naming both. */
START_TEST(test_empty_key_credential)
{
        char *api = api_section("main", "/socketlabs/events", 2, NULL), *key = file_in("api-key");
        char *creds = file_in("creds"), *cred;
        int i, status;

        unlink(key);
        ck_assert_int_eq(mkdir(creds, 0700), 0);
        cred = xasprintf("%s/api-key", creds);
        t_write(cred, "\n");
        setenv("CREDENTIALS_DIRECTORY", creds, 1);
        daemon_start_expect_exit("", api);
        for (i = 0; i < 200 && waitpid(d.pid, &status, WNOHANG) != d.pid; i++)
                usleep(50 * 1000);
        d.pid = 0;
        unsetenv("CREDENTIALS_DIRECTORY");
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 78);
        ck_assert(log_has("/api-key': No such file or directory, and the credential api-key is empty"));
        free(cred);
        free(creds);
        free(key);
        free(api);
}
END_TEST

/* No key file, but a systemd credential. */
START_TEST(test_key_from_credential)
{
        char *api = api_section("main", "/socketlabs/events", 10, NULL), *key = file_in("api-key");
        char *creds = file_in("creds"), *cred;

        unlink(key);
        ck_assert_int_eq(mkdir(creds, 0700), 0);
        cred = xasprintf("%s/api-key", creds);
        t_write(cred, API_KEY "\n");
        setenv("CREDENTIALS_DIRECTORY", creds, 1);
        daemon_start("", api);
        wait_result("main", "passed");
        ck_assert_int_eq(fake_api_counts(fake).unauthorized, 0);
        ck_assert_int_eq(daemon_stop(), 0);
        free(cred);
        free(creds);
        free(key);
        free(api);
}
END_TEST

int
main(void)
{
        Suite *s = suite_create("mgmt");
        TCase *tc = tcase_create("mgmt");

        tcase_add_unchecked_fixture(tc, make_certs, drop_certs);
        tcase_add_checked_fixture(tc, fake_setup, fake_teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_register_and_self_test);
        tcase_add_test(tc, test_empty_key_credential);
        tcase_add_test(tc, test_reuses_registered_webhook);
        tcase_add_test(tc, test_webhook_id_configured);
        tcase_add_test(tc, test_secret_generated);
        tcase_add_test(tc, test_secret_given_to_existing_webhook);
        tcase_add_test(tc, test_update_retried);
        tcase_add_test(tc, test_generated_secret_survives_reload);
        tcase_add_loop_test(tc, test_failures, 0, 6);
        tcase_add_test(tc, test_recovers);
        tcase_add_test(tc, test_sigterm_interrupts_api);
        tcase_add_test(tc, test_missing_key_file);
        tcase_add_test(tc, test_key_from_credential);
        return t_run(s, tc);
}
