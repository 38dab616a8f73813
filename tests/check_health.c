/* Sending health end to end: a designed set of events for four subaccounts
 * posted to the real daemon over TLS, then the real slhookctl asked about
 * them (every count and rate, exact), on SQLite and on PostgreSQL; the
 * daemon's own watch (its log lines and gauges); the [health] errors. */
#include "config.h"

#include <signal.h>
#include <sys/wait.h>

#include "daemon.h"
#include "ctl.h"
#include "event.h"

#define HEALTH_SECTION "[health]\ncomplaint_rate_warn = 0.1\ncomplaint_rate_max = 25%%\nbounce_rate_max = 0.2\n" \
                       "min_sent = 4\nwindow = 30d\ninterval = %s\n"

static int64_t h0;      /* an hour boundary two days ago: the story's times are after it */

/* The time min minutes after h0 (negative: before). */
static char *
at(int min)
{
        char t[TIME_ISO_LEN];

        time_format_iso(h0 + (int64_t) min * 60 * 1000000, t);
        return xstrdup(t);
}

static void
post_ev(const char *type, int min, int server, const char *id, const char *mailing, const char *extra)
{
        char *t = at(min);
        char *body = xasprintf("{\"SecretKey\":\"%s\",\"Type\":\"%s\",\"DateTime\":\"%s\",\"ServerId\":%d,"
                               "\"MessageId\":\"%s\",\"MailingId\":\"%s\",\"Address\":\"%s@example.com\"%s%s}",
                               T_SECRET, type, t, server, id, mailing, id, extra ? "," : "", extra ? extra : "");

        expect(body, 200);
        free(body);
        free(t);
}

#define PERMANENT "\"FailureType\":\"Permanent\",\"FailureCode\":2001,\"Reason\":\"550 unknown\""

/*
 * 40111 (mailings M1, and M2 for a8): 8 sent (a1-a8, a1 told twice), a9
 *   failed Permanent and a10 Temporary without a Sent, a4 Sent then Failed
 *   Permanent 5 h later (async), a1 deferred first; a2 a complaint, a3 an
 *   unsubscribe; a1 opened twice and clicked, a2 opened: 2 opens, 1 click.
 *   An older Sent, 40 days back, is outside the 30-day window.
 * 40112: 4 sent, b1's complaint, b5 suppressed.
 * 40113: 2 sent, 2 failed Permanent (too few sent to flag).
 * 40114: one Deferred only (no rate).
 */
static void
post_story(void)
{
        static const int sent_at[] = { 10, 10, 10, 10, 20, 50, 20, 20 };
        char id[8];
        int i;

        h0 = (time_now_us() / 3600000000LL - 48) * 3600000000LL;
        post_ev("Delivered", -40 * 24 * 60, 40111, "a0", "M1", NULL);
        post_ev("Deferred", 5, 40111, "a1", "M1", "\"DeferralCode\":4000");
        for (i = 0; i < 8; i++) {
                snprintf(id, sizeof(id), "a%d", i + 1);
                post_ev("Delivered", sent_at[i], 40111, id, i == 7 ? "M2" : "M1", NULL);
        }
        post_ev("Delivered", 10, 40111, "a1", "M1", NULL);     /* a redelivery */
        post_ev("Failed", 30, 40111, "a9", "M1", PERMANENT);
        post_ev("Failed", 30, 40111, "a10", "M1", "\"FailureType\":0,\"FailureCode\":4001");
        post_ev("Failed", 300, 40111, "a4", "M1", PERMANENT);
        post_ev("Complaint", 180, 40111, "a2", "M1", "\"FblType\":\"abuse\"");
        post_ev("Tracking", 180, 40111, "a3", "M1", "\"TrackingType\":2");
        post_ev("Tracking", 100, 40111, "a1", "M1", "\"TrackingType\":1");
        post_ev("Tracking", 65, 40111, "a1", "M1", "\"TrackingType\":\"Open\"");
        post_ev("Tracking", 101, 40111, "a1", "M1", "\"TrackingType\":0,\"Url\":\"https://x.example/\"");
        post_ev("Tracking", 120, 40111, "a2", "M1", "\"TrackingType\":1");
        for (i = 1; i <= 4; i++) {
                snprintf(id, sizeof(id), "b%d", i);
                post_ev("Delivered", 10, 40112, id, "N", NULL);
        }
        post_ev("Complaint", 120, 40112, "b1", "N", NULL);
        post_ev("Failed", 30, 40112, "b5", "N", "\"FailureType\":2,\"FailureCode\":9999");
        post_ev("Delivered", 10, 40113, "c1", "", NULL);
        post_ev("Delivered", 10, 40113, "c2", "", NULL);
        post_ev("Failed", 30, 40113, "c3", "", PERMANENT);
        post_ev("Failed", 30, 40113, "c4", "", PERMANENT);
        post_ev("Deferred", 10, 40114, "d1", "", NULL);
}

#define HEADER "server_id,sent,failed_permanent,failed_temporary,failed_suppressed,async_bounces,deferred," \
               "complaints,unsubscribes,opens,clicks,bounce_rate,complaint_rate,unsubscribe_rate,open_rate," \
               "click_rate,flags\n"

static void
assert_ctl(const char *args, const char *want)
{
        struct ctl c = ctl("-c '%s' health %s -f csv", d.conf, args);

        ck_assert_msg(c.status == 0, "health %s: exit %d: %s", args, c.status, c.err);
        ck_assert_msg(strcmp(c.out, want) == 0, "health %s:\n got: %s\nwant: %s", args, c.out, want);
        ctl_done(&c);
}

/* The figures, whatever the backend behind d. */
static void
assert_story(void)
{
        char *s, *u, *args;

        /* Worst first: two flags, one, then by complaint rate (none last). */
        assert_ctl("", HEADER
                   "40112,4,0,0,1,0,0,1,0,0,0,0,0.25,0,0,0,complaint_rate_warn complaint_rate_max\n"
                   "40111,8,2,1,0,1,1,1,1,2,1,0.1818181818,0.125,0.125,0.25,0.125,complaint_rate_warn\n"
                   "40113,2,2,0,0,0,0,0,0,0,0,0.5,0,0,0,0,\n"
                   "40114,0,0,0,0,0,1,0,0,0,0,,,,,,\n");
        /* A range that cuts its first hour at :30 (the Sent at :10 and :20
         * and the deferral at :05 are before it) ... */
        s = at(30);
        args = xasprintf("--since %s --server-id 40111", s);
        assert_ctl(args, HEADER "40111,1,2,1,0,1,0,1,1,2,1,0.5,1,1,2,1,\n");
        free(args);
        /* ... and one that cuts its last at 1:20: a1's first open (1:05) is
         * in, its click (1:41) is not; a4 failed after it. */
        u = at(80);
        free(s);
        s = at(0);
        args = xasprintf("--since %s --until %s --server-id 40111", s, u);
        assert_ctl(args, HEADER "40111,8,1,1,0,0,1,0,0,1,0,0.1,0,0,0.125,0,\n");
        free(args);
        /* A first open at 1:05 is counted there, not at a later open.
         * [1:30, 2:00) holds two events and [1:00, 1:30) one: this cut is
         * counted as hour 1 less [1:00, 1:30), the others directly. */
        free(s);
        s = at(90);
        args = xasprintf("--since %s --server-id 40111", s);
        assert_ctl(args, HEADER "40111,0,1,0,0,1,0,1,1,1,1,1,,,,,\n");
        free(args);
        free(s);
        free(u);
        /* By mailing: (40111, M1) is over the warning, (40111, M2) not. */
        assert_ctl("--by mailing --server-id 40111",
                   "server_id,mailing_id,sent,failed_permanent,failed_temporary,failed_suppressed,async_bounces,"
                   "deferred,complaints,unsubscribes,opens,clicks,bounce_rate,complaint_rate,unsubscribe_rate,"
                   "open_rate,click_rate,flags\n"
                   "40111,M1,7,2,1,0,1,1,1,1,2,1,0.2,0.1428571429,0.1428571429,0.2857142857,0.1428571429,"
                   "complaint_rate_warn bounce_rate_max\n"
                   "40111,M2,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,\n");
        /* The 40-day-old Sent is there for a range that asks for it. */
        assert_ctl("--since 60d --server-id 40111 -n 1",
                   HEADER "40111,9,2,1,0,1,1,1,1,2,1,0.1666666667,0.1111111111,0.1111111111,0.2222222222,"
                          "0.1111111111,complaint_rate_warn\n");
}

static void
start(const char *store_lines)
{
        char *health = xasprintf(HEALTH_SECTION, "5m");

        d.store = store_lines;
        daemon_start("", health);
        free(health);
}

START_TEST(test_health_sqlite)
{
        struct ctl c;

        start(NULL);
        post_story();
        assert_story();
        /* JSON: numbers, null where there is nothing to divide by. */
        c = ctl("-c '%s' health --server-id 40114 -f json", d.conf);
        ASSERT_OK(c);
        ck_assert_msg(strstr(c.out, "\"server_id\":40114") && strstr(c.out, "\"bounce_rate\":null") &&
                              strstr(c.out, "\"deferred\":1") && strstr(c.out, "\"flags\":\"\""),
                      "%s", c.out);
        ctl_done(&c);
        /* The table (it is written at the end, from the columns kept). */
        c = ctl("-c '%s' health", d.conf);
        ASSERT_OK(c);
        ck_assert_msg(strncmp(c.out, "server_id", 9) == 0 && strstr(c.out, "40112") != NULL &&
                              strstr(c.out, "40112") < strstr(c.out, "40111"),
                      "%s", c.out);
        ctl_done(&c);
        c = ctl("-c '%s' health --by hour", d.conf);
        ck_assert_int_eq(c.status, 2);
        ck_assert_msg(strstr(c.err, "slhookctl: --by: 'hour' is not one of server, mailing"), "%s", c.err);
        ctl_done(&c);
        c = ctl("-c '%s' health --server-id x", d.conf);
        ck_assert_int_eq(c.status, 2);
        ctl_done(&c);
}
END_TEST

/* The daemon's watch: a warning per threshold crossed, with the ServerId
 * and the rate as fields; the gauges; a notice once back under. */
START_TEST(test_health_watch)
{
        unsigned port = free_port();
        char *sections = xasprintf(HEALTH_SECTION "[metrics]\nlisten = 127.0.0.1:%u\n", "1s", port), *text;
        char id[8];
        int i;

        daemon_start("", sections);
        post_story();
        for (i = 0; i < 200 && !log_has("\"slhookd_health_flag\":\"complaint_rate_max\""); i++)
                usleep(50 * 1000);
        ck_assert_msg(log_has("\"slhookd_server_id\":40112,\"slhookd_health_flag\":\"complaint_rate_max\","
                              "\"slhookd_rate\":\"0.25\""),
                      "no warning for 40112 within 10 s");
        ck_assert(log_has("health: ServerId 40112 crossed complaint_rate_max (0.25): complaint rate 0.25 "
                          "(1 complaints of 4 sent) over the last 2592000 s"));
        ck_assert(log_has("\"slhookd_server_id\":40111,\"slhookd_health_flag\":\"complaint_rate_warn\""));
        /* One line for 40112: crossing max names warn too, and says it once. */
        ck_assert_int_eq(log_count("ServerId 40112 crossed"), 1);
        ck_assert_int_eq(log_count("ServerId 40113 crossed"), 0);       /* fewer than min_sent */
        ck_assert_int_eq(get_plain(port, "/metrics", &text), 200);
        ck_assert_msg(strstr(text, "slhookd_health_servers_flagged{flag=\"complaint_rate_warn\"} 2\n") &&
                              strstr(text, "slhookd_health_servers_flagged{flag=\"complaint_rate_max\"} 1\n") &&
                              strstr(text, "slhookd_health_servers_flagged{flag=\"bounce_rate_max\"} 0\n"),
                      "%s", text);
        free(text);
        /* 40112 sends 8 more: 1 of 12 is under 0.25, still over 0.1. */
        for (i = 6; i <= 13; i++) {
                snprintf(id, sizeof(id), "b%d", i);
                post_ev("Delivered", 15, 40112, id, "N", NULL);
        }
        for (i = 0; i < 200 && !log_has("ServerId 40112 is back under complaint_rate_max"); i++)
                usleep(50 * 1000);
        ck_assert_msg(log_has("ServerId 40112 is back under complaint_rate_max (0.25): complaint rate 0."),
                      "no notice within 10 s");
        /* 1 of 12 is under complaint_rate_warn too: said once that too. */
        for (i = 0; i < 200 && !log_has("ServerId 40112 is back under complaint_rate_warn"); i++)
                usleep(50 * 1000);
        ck_assert(log_has("ServerId 40112 is back under complaint_rate_warn (0.1): complaint rate 0.08333333333 "
                          "(1 complaints of 12 sent)") ||
                  log_has("ServerId 40112 is back under complaint_rate_max (0.25): complaint rate 0.08333333333"));
        ck_assert_int_eq(log_count("ServerId 40112 crossed"), 1);       /* going down never warns */
        free(sections);
}
END_TEST

/* Headless Chromium (Debian's chromium) on url: the DOM after load into
 * dom, its console into console, and (png non-NULL) a screenshot. */
static void
chromium(const char *url, const char *dom, const char *console, const char *png)
{
        char *profile, *cmd;
        int r;

        if (system("command -v chromium > /dev/null") != 0)
                ck_abort_msg("chromium is not installed (apt-get install chromium; the README's test command does)");
        profile = file_in("chromium-profile");
        cmd = xasprintf("timeout 60 chromium --headless --no-sandbox --disable-gpu --no-first-run "
                        "--user-data-dir='%s' --enable-logging=stderr --v=0 --window-size=1280,1600 %s%s%s "
                        "'%s' > '%s' 2> '%s'",
                        profile, png ? "--screenshot='" : "--dump-dom", png ? png : "", png ? "'" : "", url,
                        png ? "/dev/null" : dom, console);
        r = system(cmd);
        ck_assert_msg(WIFEXITED(r) && WEXITSTATUS(r) == 0, "chromium failed (%d): see %s", r, console);
        free(cmd);
        free(profile);
}

static int
count(const char *s, const char *needle)
{
        int n = 0;

        for (; (s = strstr(s, needle)) != NULL; s += strlen(needle))
                n++;
        return n;
}

/* The part of html from the element with id to the end of its table. */
static char *
table_of(const char *html, const char *id)
{
        char *want = xasprintf("id=\"%s\"", id);
        const char *p = strstr(html, want), *e;

        free(want);
        ck_assert_msg(p != NULL, "no element with id %s", id);
        e = strstr(p, "</table>");
        return xstrndup(p, e ? (size_t) (e - p) : strlen(p));
}

/* The console of a page load: no error, no refusal by the CSP. */
static void
assert_console_clean(const char *path)
{
        char *text = t_slurp(path, NULL), *line, *save = NULL;

        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                ck_assert_msg(!(strstr(line, "CONSOLE") && (strstr(line, "Refused") || strstr(line, "rror"))) &&
                                      !strstr(line, "Content Security Policy"),
                              "the console says: %s", line);
        free(text);
}

/* /dashboard: what the database holds is shown as text, never as markup;
 * in Chromium the page loads under its CSP without a console error, the
 * chart has one series per type present, the search finds a timeline;
 * a screenshot is kept (tests/artifacts/dashboard.png). */
START_TEST(test_dashboard)
{
        unsigned port = free_port();
        char *sections = xasprintf(HEALTH_SECTION "[metrics]\nlisten = 127.0.0.1:%u\n", "5m", port);
        char *html, *url, *dom, *console, *part, *png, *cmd;

        daemon_start("", sections);
        dom = file_in("dom.html");
        console = file_in("console.txt");
        post_story();
        /* An address and a Reason that are markup. */
        post_ev("Delivered", 30, 40115, "x1", "X", NULL);
        post_ev("Failed", 200, 40115, "x1", "X",
                "\"FailureType\":1,\"FailureCode\":2001,\"Reason\":\"550 \\\"><img src=x onerror=alert(1)>\"");
        expect("{\"SecretKey\":\"" T_SECRET "\",\"Type\":\"Complaint\",\"DateTime\":\"2026-01-01T00:00:00Z\","
               "\"ServerId\":40115,\"MessageId\":\"x2\",\"MailingId\":\"X\","
               "\"Address\":\"<script>alert(2)</script>@example.com\",\"FblType\":\"<b>abuse</b>\"}",
               200);

        /* The page as served: the markup escaped. */
        ck_assert_int_eq(get_plain(port, "/dashboard", &html), 200);
        ck_assert_msg(strstr(html, "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;") != NULL, "%s", html);
        ck_assert(strstr(html, "&lt;script&gt;alert(2)&lt;/script&gt;@example.com") != NULL);
        ck_assert(strstr(html, "&lt;b&gt;abuse&lt;/b&gt;") != NULL);
        ck_assert(strstr(html, "<img") == NULL && strstr(html, "<script") == NULL && strstr(html, "<b>") == NULL);
        part = table_of(html, "health");
        ck_assert_int_eq(count(part, "<td>40112</td>"), 1);
        free(part);
        free(html);

        /* In Chromium. */
        url = xasprintf("http://127.0.0.1:%u/dashboard?q=a1%%40example.com", port);
        chromium(url, dom, console, NULL);
        assert_console_clean(console);
        html = t_slurp(dom, NULL);
        ck_assert_msg(strstr(html, "id=\"chart\"") != NULL, "%s", html);
        /* Sent Deferred Failed Complaint Open Click Unsubscribe: no Queued. */
        ck_assert_int_eq(count(html, "class=\"series\""), 7);
        ck_assert(strstr(html, "data-type=\"Queued\"") == NULL);
        ck_assert(strstr(html, "<img") == NULL && strstr(html, "<script") == NULL);
        part = table_of(html, "timeline");
        ck_assert_int_eq(count(part, "<tr><td"), 5);   /* a1: Deferred, Sent, Open, Open, Click */
        ck_assert(strstr(part, "https://x.example/") != NULL);
        free(part);
        part = table_of(html, "health");
        ck_assert_msg(strstr(part, "40112") < strstr(part, "40111"), "not worst first");
        free(part);
        free(html);
        free(url);

        /* The screenshot, kept for CI: tests/artifacts/ of the build tree. */
        url = xasprintf("http://127.0.0.1:%u/dashboard", port);
        png = getenv("top_builddir") ? xasprintf("%s/tests/artifacts", getenv("top_builddir")) : xstrdup("artifacts");
        cmd = xasprintf("mkdir -p '%s'", png);
        ck_assert_int_eq(system(cmd), 0);
        free(cmd);
        cmd = png;
        png = xasprintf("%s/dashboard.png", cmd);
        free(cmd);
        (void) unlink(png);
        chromium(url, NULL, console, png);
        assert_console_clean(console);
        ck_assert_msg(access(png, R_OK) == 0, "no screenshot at %s", png);
        fprintf(stderr, "check_health: the dashboard's screenshot: %s\n", png);
        free(png);
        free(url);
        free(dom);
        free(console);
        free(sections);
}
END_TEST

START_TEST(test_health_config_errors)
{
        static const struct {
                const char *section, *expect;
        } cases[] = {
                { "[health]\ncomplaint_rate_max = 1.5\n",
                  "[health] complaint_rate_max: '1.5' is not a rate: a fraction from 0 to 1 (0.003) or a percentage" },
                { "[health]\nbounce_rate_max = lots\n", "[health] bounce_rate_max: 'lots' is not a rate" },
                { "[health]\nwindow = 7 days\n", "[health] window: '7 days' is not a duration" },
                { "[health]\ninterval = 0s\n", "[health] interval: '0s' is not a duration from 1s to 86400s" },
                { "[health]\nmin_sent = -1\n", "[health] min_sent: '-1' is not a whole number" },
                { "[health]\ncomplaint_rate_warn = 0.01\ncomplaint_rate_max = 0.003\n",
                  "[health] complaint_rate_warn (0.01) is above complaint_rate_max (0.003)" },
                { "[health]\nthreshold = 1\n", "[health] unknown key 'threshold'" },
        };
        size_t i;

        for (i = 0; i < ARRAY_SIZE(cases); i++) {
                int status;

                if (d.dir)
                        daemon_rebind();
                daemon_start_expect_exit("", cases[i].section);
                ck_assert_int_eq(waitpid(d.pid, &status, 0), d.pid);
                d.pid = 0;
                ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 78, "case %zu: status %d", i, status);
                ck_assert_msg(log_has(cases[i].expect), "case %zu: the log does not say: %s", i, cases[i].expect);
        }
}
END_TEST

#ifdef HAVE_POSTGRESQL
#include "fake_api.h"
#include "pg.h"

/* The same figures from PostgreSQL (its writer counts set-based). */
START_TEST(test_health_pg)
{
        char *dsn = NULL, *store_lines = NULL;

        free(pg_test_db(getenv("SLHOOKD_TEST_PG"), &dsn, &store_lines));
        start(store_lines);
        post_story();
        assert_story();
        free(dsn);
        free(store_lines);
}
END_TEST
#endif

int
main(void)
{
        Suite *s = suite_create("health");
        TCase *tc = tcase_create("health");

        tcase_add_unchecked_fixture(tc, make_certs, drop_certs);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_health_sqlite);
        tcase_add_test(tc, test_health_watch);
        tcase_add_test(tc, test_health_config_errors);
        tcase_add_test(tc, test_dashboard);
#ifdef HAVE_POSTGRESQL
        if (getenv("SLHOOKD_TEST_PG") && getenv("SLHOOKD_TEST_PG")[0])
                tcase_add_test(tc, test_health_pg);
        else
                fprintf(stderr, "check_health: no PostgreSQL cluster: the PostgreSQL test is left out\n");
#endif
        return t_run(s, tc);
}
