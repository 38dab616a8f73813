/* slhookctl end to end: events posted to the real daemon over TLS, then the
 * real slhookctl binary asked about them, in every output format. */
#include "config.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include <yajl/yajl_tree.h>

#include "daemon.h"
#include "event.h"
#include "query.h"
#include "store.h"

#include "ctl.h"

static int
count_lines(const char *s)
{
        int n = 0;

        for (; *s; s++)
                n += *s == '\n';
        return n;
}

/* One event; the SecretKey added. */
static void
post_event(const char *fields)
{
        char *body = xasprintf("{\"SecretKey\":\"%s\",%s}", T_SECRET, fields);

        expect(body, 200);
        free(body);
}

/* A message delivered, then bounced two days later: told in reverse. */
static void
post_story(void)
{
        post_event("\"Type\":\"Failed\",\"DateTime\":\"2025-03-06T08:15:41Z\",\"ServerId\":40111,"
                   "\"MessageId\":\"m1\",\"MailingId\":\"SPRING\",\"Address\":\"bob@example.org\","
                   "\"FailureType\":\"Permanent\",\"FailureCode\":2001,"
                   "\"Reason\":\"550 \\\"no such user\\\", sorry\\nbye \\u001b[31m\"");
        post_event("\"Type\":\"Delivered\",\"DateTime\":\"2025-03-04T08:15:41Z\",\"ServerId\":40111,"
                   "\"MessageId\":\"m1\",\"MailingId\":\"SPRING\",\"Address\":\"bob@example.org\","
                   "\"Response\":\"250 OK\"");
        post_event("\"Type\":\"Queued\",\"DateTime\":\"2025-03-04T08:15:00Z\",\"ServerId\":40111,"
                   "\"MessageId\":\"m1\",\"MailingId\":\"SPRING\",\"Address\":\"bob@example.org\"");
        post_event("\"Type\":\"Delivered\",\"DateTime\":\"2025-03-04T09:00:00Z\",\"ServerId\":40111,"
                   "\"MessageId\":\"m2\",\"MailingId\":\"SPRING\",\"Address\":\"carol@example.com\"");
        post_event("\"Type\":\"Tracking\",\"TrackingType\":0,\"DateTime\":\"2025-03-04T10:00:00Z\","
                   "\"ServerId\":40111,\"MessageId\":\"m2\",\"MailingId\":\"SPRING\","
                   "\"Address\":\"carol@example.com\",\"Url\":\"https://shop.example.com/a,b\"");
}

START_TEST(test_json_lines)
{
        struct ctl c;
        char err[256], *line, *save = NULL;
        int n = 0;

        daemon_start("", "");
        post_story();
        c = ctl("-c '%s' events --format json", d.conf);
        ASSERT_OK(c);
        ck_assert_int_eq(count_lines(c.out), 5);
        for (line = strtok_r(c.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
                const char *id_path[] = { "id", NULL }, *type_path[] = { "type", NULL };
                const char *reason_path[] = { "reason", NULL }, *occ[] = { "occurred_at", NULL };
                yajl_val v = yajl_tree_parse(line, err, sizeof(err));

                ck_assert_msg(v && YAJL_IS_OBJECT(v), "not a JSON object: %s (%s)", line, err);
                ck_assert(YAJL_IS_INTEGER(yajl_tree_get(v, id_path, yajl_t_number)));
                ck_assert_ptr_nonnull(yajl_tree_get(v, type_path, yajl_t_string));
                ck_assert_ptr_nonnull(yajl_tree_get(v, occ, yajl_t_string));
                /* Newest first: the bounce leads, with its reason intact. */
                if (n == 0)
                        ck_assert_str_eq(YAJL_GET_STRING(yajl_tree_get(v, reason_path, yajl_t_string)),
                                         "550 \"no such user\", sorry\nbye \x1b[31m");
                ck_assert(strstr(line, T_SECRET) == NULL);
                yajl_tree_free(v);
        }
        ctl_done(&c);
}
END_TEST

START_TEST(test_csv_quoting)
{
        struct ctl c;

        daemon_start("", "");
        post_story();
        c = ctl("-d '%s' bounces -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_str_eq(c.out,
                         "occurred_at,server_id,message_id,mailing_id,address,failure_type,failure_code,reason,"
                         "remote_mta,bounce_status,diagnostic_code\n"
                         "2025-03-06T08:15:41.000000Z,40111,m1,SPRING,bob@example.org,Permanent,2001,"
                         "\"550 \"\"no such user\"\", sorry\nbye \x1b[31m\",,,\n");
        ctl_done(&c);
        c = ctl("-d '%s' events --type click -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_int_eq(count_lines(c.out), 2);
        ck_assert_ptr_nonnull(strstr(c.out, ",\"https://shop.example.com/a,b\","));
        ctl_done(&c);
}
END_TEST

START_TEST(test_table_fits_terminal)
{
        struct ctl c;
        char *line, *save = NULL;
        size_t w;
        const char *p;

        daemon_start("", "");
        post_story();
        line = xasprintf("-d '%s' events", d.db);
        c = ctl_env("COLUMNS=60", line);
        free(line);
        ASSERT_OK(c);
        ck_assert_int_eq(count_lines(c.out), 6);
        /* No value can reach the terminal as a control sequence. */
        ck_assert(strchr(c.out, '\x1b') == NULL);
        for (line = strtok_r(c.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                for (w = 0, p = line; *p; p++)
                        w += ((unsigned char) *p & 0xc0) != 0x80;
                ck_assert_msg(w <= 60, "%zu columns: %s", w, line);
        }
        ctl_done(&c);
        /* Wide output is not cut without a terminal width. */
        c = ctl("-d '%s' bounces", d.db);
        ASSERT_OK(c);
        ck_assert_ptr_nonnull(strstr(c.out, "550 \"no such user\", sorry bye ?[31m"));
        ctl_done(&c);
}
END_TEST

START_TEST(test_async_bounces_and_timeline)
{
        struct ctl c;

        daemon_start("", "");
        post_story();
        c = ctl("-d '%s' bounces --async -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_str_eq(c.out,
                         "server_id,message_id,mailing_id,address,sent_at,failed_at,delay_seconds,"
                         "failure_type,failure_code,reason\n"
                         "40111,m1,SPRING,bob@example.org,2025-03-04T08:15:41.000000Z,"
                         "2025-03-06T08:15:41.000000Z,172800,Permanent,2001,"
                         "\"550 \"\"no such user\"\", sorry\nbye \x1b[31m\"\n");
        ctl_done(&c);
        /* --since selects by the failure's time. */
        c = ctl("-d '%s' bounces --async --since 2025-03-07 -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_int_eq(count_lines(c.out), 1);
        ctl_done(&c);

        /* The timeline is in event order, whatever the arrival order was. */
        c = ctl("-d '%s' timeline --message-id m1 -f json", d.db);
        ASSERT_OK(c);
        ck_assert_int_eq(count_lines(c.out), 3);
        ck_assert_ptr_nonnull(strstr(c.out, "\"type\":\"Queued\""));
        ck_assert(strstr(c.out, "\"type\":\"Queued\"") < strstr(c.out, "\"type\":\"Sent\""));
        ck_assert(strstr(c.out, "\"type\":\"Sent\"") < strstr(c.out, "\"type\":\"Failed\""));
        ctl_done(&c);
        c = ctl("-d '%s' timeline --address CAROL@example.com -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_int_eq(count_lines(c.out), 3);
        ctl_done(&c);
}
END_TEST

START_TEST(test_stats_and_suppressions)
{
        struct ctl c;

        daemon_start("", "");
        post_story();
        c = ctl("-d '%s' stats --since 2025-03-04 --until 2025-03-07 --by day -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_str_eq(c.out,
                         "from,to,total,queued,sent,failed,deferred,complaint,click,open,unsubscribe,other\n"
                         "2025-03-04T00:00:00.000000Z,2025-03-05T00:00:00.000000Z,4,1,2,0,0,0,1,0,0,0\n"
                         "2025-03-06T00:00:00.000000Z,2025-03-07T00:00:00.000000Z,1,0,0,1,0,0,0,0,0,0\n");
        ctl_done(&c);
        c = ctl("-d '%s' stats --since 2025-03-04T08:00:00Z --until 2025-03-04T09:00:00Z -f json", d.db);
        ASSERT_OK(c);
        ck_assert_str_eq(c.out,
                         "{\"from\":\"2025-03-04T08:00:00.000000Z\",\"to\":\"2025-03-04T09:00:00.000000Z\","
                         "\"total\":2,\"queued\":1,\"sent\":1,\"failed\":0,\"deferred\":0,\"complaint\":0,"
                         "\"click\":0,\"open\":0,\"unsubscribe\":0,\"other\":0}\n");
        ctl_done(&c);
        /* Cut hours at both ends are counted exactly: 08:15:41 and 09:00 only. */
        c = ctl("-d '%s' stats --since 2025-03-04T08:15:20Z --until 2025-03-04T10:00:00Z -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_str_eq(c.out,
                         "from,to,total,queued,sent,failed,deferred,complaint,click,open,unsubscribe,other\n"
                         "2025-03-04T08:15:20.000000Z,2025-03-04T10:00:00.000000Z,2,0,2,0,0,0,0,0,0,0\n");
        ctl_done(&c);
        c = ctl("-d '%s' stats --since 2025-03-04T08:15:20Z --until 2025-03-04T08:15:50Z -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_ptr_nonnull(strstr(c.out, "Z,1,0,1,0,"));
        ctl_done(&c);
        c = ctl("-d '%s' stats --since 2025-03-04T08:15:20Z --until 2025-03-04T10:00:01Z --by hour -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_str_eq(c.out,
                         "from,to,total,queued,sent,failed,deferred,complaint,click,open,unsubscribe,other\n"
                         "2025-03-04T08:00:00.000000Z,2025-03-04T09:00:00.000000Z,1,0,1,0,0,0,0,0,0,0\n"
                         "2025-03-04T09:00:00.000000Z,2025-03-04T10:00:00.000000Z,1,0,1,0,0,0,0,0,0,0\n"
                         "2025-03-04T10:00:00.000000Z,2025-03-04T11:00:00.000000Z,1,0,0,0,0,0,1,0,0,0\n");
        ctl_done(&c);
        /* No range: every hour with events. */
        c = ctl("-d '%s' stats -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_str_eq(c.out,
                         "from,to,total,queued,sent,failed,deferred,complaint,click,open,unsubscribe,other\n"
                         "2025-03-04T08:00:00.000000Z,2025-03-06T09:00:00.000000Z,5,1,2,1,0,0,1,0,0,0\n");
        ctl_done(&c);
        c = ctl("-d '%s' suppressions -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_str_eq(c.out,
                         "address,reasons,since,bounced_at,complained_at,unsubscribed_at\n"
                         "bob@example.org,bounce,2025-03-06T08:15:41.000000Z,2025-03-06T08:15:41.000000Z,,\n");
        ctl_done(&c);
}
END_TEST

START_TEST(test_relative_times)
{
        char now[TIME_ISO_LEN], before[TIME_ISO_LEN], *f;
        struct ctl c;

        daemon_start("", "");
        time_format_iso(time_now_us() - 30LL * 60 * 1000000, now);
        time_format_iso(time_now_us() - 3LL * 3600 * 1000000, before);
        f = xasprintf("\"Type\":\"Queued\",\"DateTime\":\"%s\",\"MessageId\":\"r1\",\"Address\":\"r@example.com\"", now);
        post_event(f);
        free(f);
        f = xasprintf("\"Type\":\"Queued\",\"DateTime\":\"%s\",\"MessageId\":\"r2\",\"Address\":\"r@example.com\"", before);
        post_event(f);
        free(f);
        c = ctl("-d '%s' events --since 2h -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_int_eq(count_lines(c.out), 2);
        ck_assert_ptr_nonnull(strstr(c.out, ",r1,"));
        ctl_done(&c);
        c = ctl("-d '%s' events --since 1d --until 90m -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_int_eq(count_lines(c.out), 2);
        ck_assert_ptr_nonnull(strstr(c.out, ",r2,"));
        ctl_done(&c);
}
END_TEST

/* What --since and --until take: journalctl's forms, in UTC. */
START_TEST(test_time_input)
{
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "2025-03-04", "2025-03-04T00:00:00.000000Z" },
                { "2025-03-04 10:00", "2025-03-04T10:00:00.000000Z" },
                { "2025-03-04 10:00:05", "2025-03-04T10:00:05.000000Z" },
                { "2025-03-04T10:00", "2025-03-04T10:00:00.000000Z" },
                { "2025-03-04T10:00:00Z", "2025-03-04T10:00:00.000000Z" },
                { "2025-03-04T10:00+01:00", "2025-03-04T09:00:00.000000Z" },
                { "2025-03-04 10:00:00-05:30", "2025-03-04T15:30:00.000000Z" },
                { "@1741076141", "2025-03-04T08:15:41.000000Z" },
                { "now", "2026-05-06T07:08:09.000000Z" },
                { "today", "2026-05-06T00:00:00.000000Z" },
                { "yesterday", "2026-05-05T00:00:00.000000Z" },
                { "tomorrow", "2026-05-07T00:00:00.000000Z" },
                { "2h", "2026-05-06T05:08:09.000000Z" },
                { "-2h", "2026-05-06T05:08:09.000000Z" },
                { "90m", "2026-05-06T05:38:09.000000Z" },
        };
        static const char *const bad[] = { "2025-03-04 10", "2025-13-04", "@x", "-", "soon", "2h ago", "--2h" };
        int64_t now;
        char out[TIME_ISO_LEN];
        size_t i;

        ck_assert_int_eq(event_parse_time("2026-05-06T07:08:09Z", 20, &now), 0);
        for (i = 0; i < ARRAY_SIZE(cases); i++) {
                ck_assert_msg(query_parse_time(cases[i].in, now, false, out) == 0, "'%s' refused", cases[i].in);
                ck_assert_msg(strcmp(out, cases[i].out) == 0, "'%s': %s, not %s", cases[i].in, out, cases[i].out);
        }
        for (i = 0; i < ARRAY_SIZE(bad); i++)
                ck_assert_msg(query_parse_time(bad[i], now, false, out) < 0, "'%s' taken as %s", bad[i], out);
        /* (test_errors: the command's refusal names the option and the forms.) */
}
END_TEST

/* --local: a TIME without Z or an offset, and the midnights, in the local
 * zone (a POSIX TZ rule with daylight saving, so no tzdata is needed). */
START_TEST(test_time_input_local)
{
        static const struct {
                const char *now, *in, *out;
        } cases[] = {
                { "2026-05-06T07:08:09Z", "2025-03-04", "2025-03-03T23:00:00.000000Z" },
                { "2026-05-06T07:08:09Z", "2025-03-04 10:00", "2025-03-04T09:00:00.000000Z" },
                { "2026-05-06T07:08:09Z", "2025-07-04T10:00:05", "2025-07-04T08:00:05.000000Z" },
                { "2026-05-06T07:08:09Z", "2025-03-04T10:00:00Z", "2025-03-04T10:00:00.000000Z" },
                { "2026-05-06T07:08:09Z", "2025-03-04T10:00+05:00", "2025-03-04T05:00:00.000000Z" },
                { "2026-05-06T07:08:09Z", "@1741076141", "2025-03-04T08:15:41.000000Z" },
                { "2026-05-06T07:08:09Z", "now", "2026-05-06T07:08:09.000000Z" },
                { "2026-05-06T07:08:09Z", "2h", "2026-05-06T05:08:09.000000Z" },
                { "2026-05-06T07:08:09Z", "today", "2026-05-05T22:00:00.000000Z" },
                { "2026-05-05T23:30:00Z", "today", "2026-05-05T22:00:00.000000Z" },   /* 01:30 local */
                /* 2026-03-29, the day daylight saving began, is 23 hours long */
                { "2026-03-29T12:00:00Z", "today", "2026-03-28T23:00:00.000000Z" },
                { "2026-03-29T12:00:00Z", "tomorrow", "2026-03-29T22:00:00.000000Z" },
                { "2026-03-29T12:00:00Z", "yesterday", "2026-03-27T23:00:00.000000Z" },
                { "2026-03-28T12:00:00Z", "tomorrow", "2026-03-28T23:00:00.000000Z" },
        };
        char out[TIME_ISO_LEN], loc[TIME_LOCAL_LEN];
        int64_t now;
        size_t i;

        setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3", 1);
        tzset();
        for (i = 0; i < ARRAY_SIZE(cases); i++) {
                ck_assert_int_eq(event_parse_time(cases[i].now, strlen(cases[i].now), &now), 0);
                ck_assert_msg(query_parse_time(cases[i].in, now, true, out) == 0, "'%s' refused", cases[i].in);
                ck_assert_msg(strcmp(out, cases[i].out) == 0, "'%s' at %s: %s, not %s", cases[i].in, cases[i].now,
                              out, cases[i].out);
        }
        ck_assert_int_eq(event_parse_time("2025-03-04T10:00:00.25Z", 23, &now), 0);
        time_format_local(now, loc);
        ck_assert_str_eq(loc, "2025-03-04T11:00:00.250000+01:00");
        setenv("TZ", "XXX+05:30", 1);
        tzset();
        time_format_local(now, loc);
        ck_assert_str_eq(loc, "2025-03-04T04:30:00.250000-05:30");
        unsetenv("TZ");
        tzset();
}
END_TEST

/* slhookctl ARGS with TZ set to 01:30 east of UTC */
static struct ctl
ctl_tz(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static struct ctl
ctl_tz(const char *fmt, ...)
{
        va_list ap;
        struct ctl c;

        va_start(ap, fmt);
        c = ctl_envv("TZ='XXX-01:30'", fmt, ap);
        va_end(ap);
        return c;
}

/* --local prints times in the local zone with their offset, in every
 * format, and reads TIME there too. */
START_TEST(test_local_output)
{
        struct ctl c;

        daemon_start("", "");
        post_story();
        c = ctl_tz("-d '%s' --local stats --since '2025-03-04 09:30' --until '2025-03-04 11:30' -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_str_eq(c.out,
                         "from,to,total,queued,sent,failed,deferred,complaint,click,open,unsubscribe,other\n"
                         "2025-03-04T09:30:00.000000+01:30,2025-03-04T11:30:00.000000+01:30,"
                         "3,1,2,0,0,0,0,0,0,0\n");
        ctl_done(&c);
        c = ctl_tz("-d '%s' timeline --message-id m1 --local -f json", d.db);
        ASSERT_OK(c);
        /* stored times move; date_time is the wire's own text and stays */
        ck_assert_msg(strstr(c.out, "\"occurred_at\":\"2025-03-04T09:45:41.000000+01:30\"") &&
                      strstr(c.out, "\"date_time\":\"2025-03-04T08:15:41Z\"") &&
                      strstr(c.out, "\"received_at\":\"") && !strstr(c.out, "000Z\""), "%s", c.out);
        ctl_done(&c);
        c = ctl_tz("-d '%s' timeline --message-id m1 --local", d.db);
        ASSERT_OK(c);
        ck_assert_msg(strstr(c.out, ":00+01:30 ") || strstr(c.out, "+01:30 "), "%s", c.out);
        ck_assert_ptr_null(strstr(c.out, "Z "));
        ctl_done(&c);
        /* without --local, the same zone changes nothing */
        c = ctl_tz("-d '%s' timeline --message-id m1 -f json", d.db);
        ASSERT_OK(c);
        ck_assert_ptr_null(strstr(c.out, "+01:30"));
        ctl_done(&c);
}
END_TEST

/* COMMAND --help is that command's help; -c given the database says so. */
START_TEST(test_help_and_wrong_file)
{
        struct ctl c;
        char *want;

        daemon_start("", "");
        post_event("\"Type\":\"Queued\",\"MessageId\":\"h1\",\"Address\":\"h@example.com\"");
        c = ctl("events --help");
        ASSERT_OK(c);
        ck_assert_msg(strncmp(c.out, "Usage: slhookctl [-c CONF | -d DB] [-f table|json|csv] events\n", 62) == 0,
                      "%s", c.out);
        ck_assert_ptr_nonnull(strstr(c.out, "--mailing-id ID"));
        ck_assert_ptr_nonnull(strstr(c.out, "\nTIME, in UTC"));
        ck_assert_ptr_null(strstr(c.out, "bounces"));
        ctl_done(&c);
        c = ctl("--help");
        ASSERT_OK(c);
        ck_assert_ptr_nonnull(strstr(c.out, "  bounces "));
        ctl_done(&c);
        /* info: the database in one row. */
        c = ctl("-d '%s' -f json info", d.db);
        ASSERT_OK(c);
        want = xasprintf("{\"database\":\"%s\",\"backend\":\"sqlite\",\"schema_version\":%d,", d.db,
                         store_schema_version());
        ck_assert_msg(strncmp(c.out, want, strlen(want)) == 0, "%s", c.out);
        free(want);
        ck_assert_ptr_nonnull(strstr(c.out, ",\"events\":1,\"messages\":1,\"quarantined\":0,\"newest_received_at\":\"20"));
        ck_assert_msg(strstr(c.out, ",\"size_bytes\":0,") == NULL, "%s", c.out);
        ctl_done(&c);
        c = ctl("-c '%s' events", d.db);
        ck_assert_int_eq(c.status, 1);
        want = xasprintf("slhookctl: -c %s: that is a SQLite database, not a configuration; give it with -d %s\n",
                         d.db, d.db);
        ck_assert_str_eq(c.err, want);
        free(want);
        ctl_done(&c);
}
END_TEST

START_TEST(test_quarantine_commands)
{
        struct ctl c;
        long long id;
        char *sql;

        daemon_start("", "");
        post_event("\"Type\":\"Delivered\",\"ServerId\":\"forty\",\"MessageId\":\"q1\",\"Address\":\"q@example.com\"");
        c = ctl("-d '%s' quarantine -f json", d.db);
        ASSERT_OK(c);
        ck_assert_int_eq(count_lines(c.out), 1);
        ck_assert_ptr_nonnull(strstr(c.out, "\"reason\":\"field 'ServerId' is not an integer\""));
        ctl_done(&c);
        id = q("SELECT id FROM quarantine");
        c = ctl("-d '%s' quarantine show %lld", d.db, id);
        ASSERT_OK(c);
        ck_assert_ptr_nonnull(strstr(c.out, "raw:"));
        ck_assert_ptr_nonnull(strstr(c.out, "\"ServerId\":\"forty\""));
        ck_assert(strstr(c.out, T_SECRET) == NULL);
        ctl_done(&c);
        c = ctl("-d '%s' quarantine show 999", d.db);
        ck_assert_int_eq(c.status, 1);
        ck_assert_str_eq(c.err, "slhookctl: quarantine: no entry with id 999\n");
        ctl_done(&c);

        /* The current parser still refuses it: it stays. */
        c = ctl("-c '%s' quarantine replay -f csv", d.conf);
        ASSERT_OK(c);
        ck_assert_str_eq(c.out, "moved,kept\n0,1\n");
        ctl_done(&c);
        /* As if an older parser had refused what this one reads. */
        sql = xasprintf("UPDATE quarantine SET raw = replace(raw, '\"forty\"', '40') WHERE id = %lld", id);
        exec_rw(sql);
        free(sql);
        c = ctl("-c '%s' quarantine replay -f json", d.conf);
        ASSERT_OK(c);
        ck_assert_str_eq(c.out, "{\"moved\":1,\"kept\":0}\n");
        ctl_done(&c);
        ck_assert_int_eq(q("SELECT count(*) FROM quarantine"), 0);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id = 'q1' AND server_id = 40"), 1);
        ck_assert_int_eq(q("SELECT count(*) FROM messages WHERE message_id = 'q1'"), 1);
        /* The daemon goes on storing beside it. */
        expect_file("queued.json", 200);
}
END_TEST

START_TEST(test_prune_and_empty)
{
        struct ctl c;
        char *f;
        int i;

        daemon_start("", "");
        post_story();
        /* Enough rows that pruning them frees whole pages. */
        for (i = 0; i < 60; i++) {
                f = xasprintf("\"Type\":\"Queued\",\"MessageId\":\"p%d\",\"Address\":\"p%d@example.com\","
                              "\"Padding\":\"%0400d\"", i, i, i);
                post_event(f);
                free(f);
        }
        c = ctl("-d '%s' prune --before 2020-01-01", d.db);
        ASSERT_OK(c);
        ck_assert_int_eq(q("SELECT count(*) FROM events"), 65);
        ctl_done(&c);
        expect("{\"Type\":\"Delivered\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"nope\"}", 200);  /* quarantined */
        ck_assert_int_eq(q("SELECT count(*) FROM quarantine"), 1);
        /* --dry-run counts what would go and deletes nothing. */
        c = ctl("-d '%s' prune --before 2100-01-01 --dry-run -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_msg(strstr(c.out, ",65,62\n") != NULL, "%s", c.out);
        ck_assert_msg(strstr(c.err, "dry run, nothing deleted; 1 quarantined payloads would go too") != NULL, "%s", c.err);
        ctl_done(&c);
        ck_assert_int_eq(q("SELECT count(*) FROM events"), 65);
        ck_assert_int_eq(q("SELECT count(*) FROM quarantine"), 1);
        c = ctl("-d '%s' prune --before 2100-01-01 -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_msg(strstr(c.out, ",65,62\n") != NULL, "%s", c.out);
        ck_assert_msg(strstr(c.err, "also deleted 1 quarantined payloads") != NULL, "%s", c.err);
        /* The space it freed, and how to give it back. */
        ck_assert_msg(strstr(c.err, "are free inside the file, which does not shrink by itself; to give them back: "
                                    "sqlite3 ") != NULL, "%s", c.err);
        ctl_done(&c);
        ck_assert_int_eq(q("SELECT count(*) FROM quarantine"), 0);
        ck_assert_int_eq(q("SELECT count(*) FROM events"), 0);
        ck_assert_int_eq(q("SELECT count(*) FROM messages"), 0);
        /* An empty answer is an answer: the header, exit 0. */
        c = ctl("-d '%s' events", d.db);
        ASSERT_OK(c);
        ck_assert_int_eq(count_lines(c.out), 1);
        ck_assert_str_eq(c.err, "");
        ctl_done(&c);
        c = ctl("-d '%s' events -f json", d.db);
        ASSERT_OK(c);
        ck_assert_str_eq(c.out, "");
        ctl_done(&c);
}
END_TEST

#define STATUS_HEAD "{\"endpoint\":\"main\",\"webhook_id\":null,\"last_test_result\":null,"

START_TEST(test_status)
{
        struct ctl c;

        daemon_start("", "");
        c = ctl("-d '%s' status -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_str_eq(c.out, "endpoint,webhook_id,last_test_result,last_test_at,last_test_rtt_ms,last_error,"
                                "last_test_step,last_test_http_status,last_passed_at,registered_at,"
                                "last_validation_at,last_validation_peer\n");
        ctl_done(&c);
        expect_file("validation.json", 200);
        c = ctl("-d '%s' status -f json", d.db);
        ASSERT_OK(c);
        ck_assert_msg(strncmp(c.out, STATUS_HEAD, strlen(STATUS_HEAD)) == 0, "%s", c.out);
        ck_assert_ptr_nonnull(strstr(c.out, "\"last_validation_at\":\"20"));
        ck_assert_ptr_nonnull(strstr(c.out, "\"last_validation_peer\":\"127.0.0.1\"}\n"));
        ctl_done(&c);
}
END_TEST

START_TEST(test_limit)
{
        struct ctl c;

        daemon_start("", "");
        post_story();
        c = ctl("-d '%s' events --limit 2 -f json", d.db);
        ASSERT_OK(c);
        ck_assert_int_eq(count_lines(c.out), 2);
        ck_assert_str_eq(c.err, "slhookctl: only the first 2 rows are shown; --limit 0 shows all\n");
        ctl_done(&c);
        c = ctl("-d '%s' events --limit 0 -f json", d.db);
        ASSERT_OK(c);
        ck_assert_int_eq(count_lines(c.out), 5);
        ctl_done(&c);
}
END_TEST

/* slhookctl events -f csv ARGS lists the ids SQL's own order gives for
 * WHERE: newest event time first, events without one last, ties by digest. */
static void
assert_events_order(const char *args, const char *where, const char *limit)
{
        char *cmd = xasprintf("test \"$(%s -d '%s' events -f csv %s | tail -n +2 | cut -d, -f1)\" = "
                              "\"$(sqlite3 '%s' 'SELECT id FROM events %s "
                              "ORDER BY occurred_at DESC NULLS LAST, digest DESC %s')\"",
                              SLHOOKCTL_BIN, d.db, args, d.db, where, limit);

        ck_assert_msg(system(cmd) == 0, "events %s: not in event-time order", args);
        free(cmd);
}

/* Without a filter narrower than time, the newest events of each type are
 * merged (events has no index on occurred_at alone): the one order, with
 * ties and events without a DateTime, also with more types than branches. */
START_TEST(test_events_order)
{
        static const char *const types[] = { "Queued", "Delivered", "Failed", "Deferred", "Complaint" };
        char *f;
        int i;

        daemon_start("", "");
        for (i = 0; i < 20; i++) {
                /* Event times out of arrival order, some equal across types. */
                f = xasprintf("\"Type\":\"%s\",\"DateTime\":\"2025-03-04T08:%02d:00Z\",\"ServerId\":1,"
                              "\"MessageId\":\"o%d\",\"Address\":\"a%d@example.org\"",
                              types[i % 5], (i * 7) % 13, i, i);
                post_event(f);
                free(f);
        }
        post_event("\"Type\":\"Queued\",\"ServerId\":1,\"MessageId\":\"nodate\",\"Address\":\"n@example.org\"");
        assert_events_order("--limit 0", "", "");
        assert_events_order("--limit 7", "", "LIMIT 7");
        assert_events_order("--since 2025-03-04T08:03:00Z --until 2025-03-04T08:09:00Z", "WHERE occurred_at >= "
                            "'\\''2025-03-04T08:03:00.000000Z'\\'' AND occurred_at < '\\''2025-03-04T08:09:00.000000Z'\\''",
                            "");
        /* Seventeen more types than the five: one plain scan instead. */
        for (i = 0; i < 17; i++) {
                f = xasprintf("\"Type\":\"Custom%02d\",\"DateTime\":\"2025-03-04T08:%02d:30Z\",\"ServerId\":1",
                              i, i % 13);
                post_event(f);
                free(f);
        }
        ck_assert_int_eq(t_query(d.db, "SELECT count(DISTINCT type) FROM events"), 22);
        assert_events_order("--limit 0", "", "");
        assert_events_order("--limit 9", "", "LIMIT 9");
}
END_TEST

/* Every mistake: one line on stderr naming it, a non-zero exit. */
START_TEST(test_errors)
{
        static const struct {
                bool db;        /* "-d DB" first */
                const char *args;
                int status;
                const char *err;
        } cases[] = {
                { false, "", 2, "slhookctl: no command given; try 'slhookctl --help'\n" },
                { true, "frobnicate", 2, "slhookctl: 'frobnicate' is not a command; try 'slhookctl --help'\n" },
                { true, "events --async", 2, "slhookctl: events: --async is not an option of this command\n" },
                { true, "events --since lately", 2,
                  "slhookctl: --since: 'lately' is not a time (2026-01-31, 2026-01-31 10:00, 2026-01-31T10:00:00Z, "
                  "an offset such as +01:00, today, yesterday, now, @UNIX, or that long ago: 90m, -2h, 7d)\n" },
                { true, "events -f xml", 2, "slhookctl: --format: 'xml' is not one of table, json, csv\n" },
                { true, "events --limit -3", 2, "slhookctl: --limit: '-3' is not a number of rows (0 for all)\n" },
                { true, "timeline", 2, "slhookctl: timeline: give --message-id ID or --address A\n" },
                { true, "prune", 2, "slhookctl: prune: give --before TIME (events received before it are deleted)\n" },
                { true, "quarantine show x", 2,
                  "slhookctl: quarantine show: give the id of one entry (see 'quarantine list')\n" },
                { true, "quarantine purge", 2, "slhookctl: quarantine: 'purge' is not one of list, show, replay\n" },
                { true, "stats --by week", 2, "slhookctl: --by: 'week' is not one of hour, day\n" },
                { true, "events extra", 2, "slhookctl: events: unexpected argument 'extra'\n" },
                { false, "-d /nonexistent/x.db events", 1,
                  "slhookctl: /nonexistent/x.db: cannot open database: No such file or directory\n" },
                { false, "-d /nonexistent/x.db prune --before 1d", 1,
                  "slhookctl: /nonexistent/x.db: cannot open database: No such file or directory\n" },
                { false, "-c /nonexistent/slhookd.conf events", 1,
                  "slhookctl: /nonexistent/slhookd.conf: cannot open configuration file: "
                  "No such file or directory\n" },
        };
        struct ctl c;
        char *other;
        size_t i;

        daemon_start("", "");
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *args = xasprintf("%s%s %s", cases[i].db ? "-d " : "", cases[i].db ? d.db : "", cases[i].args);
                c = ctl_env("", args);
                ck_assert_msg(c.status == cases[i].status, "%s: exit %d", args, c.status);
                ck_assert_msg(strcmp(c.err, cases[i].err) == 0, "%s:\n got: %s\nwant: %s", args, c.err,
                              cases[i].err);
                ck_assert_str_eq(c.out, "");
                ctl_done(&c);
                free(args);
        }
        /* A file that is not a slhookd database. */
        other = file_in("other.db");
        t_write(other, "not sqlite");
        c = ctl("-d '%s' events", other);
        ck_assert_int_eq(c.status, 1);
        ck_assert_int_eq(count_lines(c.err), 1);
        ctl_done(&c);
        free(other);
}
END_TEST

/* -c needs only the database path: an operator who may not read the secret
 * still can query. */
START_TEST(test_config_without_secret_access)
{
        struct ctl c;
        char *secret;

        daemon_start("", "");
        expect_file("queued.json", 200);
        secret = file_in("secret");
        ck_assert_int_eq(unlink(secret), 0);
        free(secret);
        c = ctl("-c '%s' events -f csv", d.conf);
        ASSERT_OK(c);
        ck_assert_int_eq(count_lines(c.out), 2);
        ctl_done(&c);
}
END_TEST

/* Queries while the daemon stores: neither waits for the other. */
static void *
poster_main(void *arg)
{
        int *done = arg, i;

        for (i = 0; i < 300; i++) {
                char *body = xasprintf("{\"SecretKey\":\"%s\",\"Type\":\"Delivered\","
                                       "\"DateTime\":\"2025-03-04T08:15:41Z\",\"MessageId\":\"live%d\","
                                       "\"Address\":\"l@example.com\"}", T_SECRET, i);
                struct resp r = post(body);

                if (r.status != 200)
                        break;
                resp_done(&r);
                free(body);
        }
        __atomic_store_n(done, i, __ATOMIC_SEQ_CST);
        return NULL;
}

START_TEST(test_live_queries)
{
        pthread_t t;
        struct ctl c;
        int done = -1, runs;

        daemon_start("", "");
        ck_assert_int_eq(pthread_create(&t, NULL, poster_main, &done), 0);
        for (runs = 0; runs < 100 && __atomic_load_n(&done, __ATOMIC_SEQ_CST) < 0; runs++) {
                c = ctl("-d '%s' %s -f csv", d.db, runs % 2 ? "stats" : "timeline --address l@example.com");
                ASSERT_OK(c);
                ctl_done(&c);
        }
        pthread_join(t, NULL);
        ck_assert_int_eq(done, 300);
        c = ctl("-d '%s' events --limit 0 -f csv", d.db);
        ASSERT_OK(c);
        ck_assert_int_eq(count_lines(c.out), 301);
        ctl_done(&c);
}
END_TEST

/* A follower: slhookctl ARGS with its stdout on a pipe we read. */
struct follower {
        pid_t pid;
        FILE *f;
};

static struct follower
follow_start(const char *args)
{
        struct follower w;
        int fd[2];
        char *cmd = xasprintf("exec %s %s", SLHOOKCTL_BIN, args);

        ck_assert_int_eq(pipe(fd), 0);
        w.pid = fork();
        ck_assert_int_ge(w.pid, 0);
        if (w.pid == 0) {
                dup2(fd[1], STDOUT_FILENO);
                close(fd[0]);
                close(fd[1]);
                execl("/bin/sh", "sh", "-c", cmd, (char *) NULL);
                _exit(127);
        }
        free(cmd);
        close(fd[1]);
        w.f = fdopen(fd[0], "r");
        ck_assert_ptr_nonnull(w.f);
        setvbuf(w.f, NULL, _IONBF, 0);  /* nothing read ahead: poll() tells */
        return w;
}

/* The next line, waiting at most 10 s for it (NULL: none came). */
static char *
follow_line(struct follower *w)
{
        static char line[65536];
        struct pollfd p = { .fd = fileno(w->f), .events = POLLIN };

        if (poll(&p, 1, 10000) > 0)
                return fgets(line, sizeof(line), w->f);
        return NULL;
}

/* The id of a JSON line. */
static long long
line_id(const char *line)
{
        const char *id_path[] = { "id", NULL };
        char err[256];
        yajl_val v = yajl_tree_parse(line, err, sizeof(err)), id;
        long long r;

        ck_assert_msg(v != NULL, "not JSON: %s", line);
        id = yajl_tree_get(v, id_path, yajl_t_number);
        ck_assert_msg(id && YAJL_IS_INTEGER(id), "no id: %s", line);
        r = YAJL_GET_INTEGER(id);
        yajl_tree_free(v);
        return r;
}

/* SIGINT, then its exit: 0, within 10 s. */
static void
follow_stop(struct follower *w)
{
        int status = -1, i;

        kill(w->pid, SIGINT);
        for (i = 0; i < 1000 && waitpid(w->pid, &status, WNOHANG) == 0; i++)
                usleep(10000);
        if (i == 1000) {
                kill(w->pid, SIGKILL);
                waitpid(w->pid, &status, 0);
                ck_abort_msg("slhookctl --follow did not end at SIGINT");
        }
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "slhookctl --follow: status %d", status);
        fclose(w->f);
}

START_TEST(test_follow)
{
        struct follower all, failed, tail;
        struct ctl c;
        char *line, *args;
        long long id, prev = 0;
        int i, r;

        daemon_start("", "");
        post_story();
        /* Every event, oldest first, then the new ones; and only the Failed
         * ones after the first two events. */
        args = xasprintf("-d '%s' -f json events --follow", d.db);
        all = follow_start(args);
        free(args);
        args = xasprintf("-d '%s' -f json events -F --after 2 --type failed", d.db);
        failed = follow_start(args);
        free(args);
        args = xasprintf("-d '%s' -f json events -F --limit 2", d.db);
        tail = follow_start(args);
        free(args);
        for (i = 0; i < 5; i++) {
                ck_assert_ptr_nonnull(line = follow_line(&all));
                ck_assert_int_gt(id = line_id(line), prev);
                prev = id;
                ck_assert(strstr(line, "\"raw\":\"{") != NULL);
                ck_assert(strstr(line, T_SECRET) == NULL);
        }
        /* --limit 2: the newest two first. */
        ck_assert_int_eq(line_id(follow_line(&tail)), 4);
        ck_assert_int_eq(line_id(follow_line(&tail)), 5);
        post_event("\"Type\":\"Failed\",\"DateTime\":\"2025-03-07T08:00:00Z\",\"ServerId\":40111,"
                   "\"MessageId\":\"m3\",\"Address\":\"dan@example.org\",\"FailureType\":\"Permanent\"");
        post_event("\"Type\":\"Delivered\",\"DateTime\":\"2025-03-07T09:00:00Z\",\"ServerId\":40111,"
                   "\"MessageId\":\"m4\",\"Address\":\"eve@example.org\"");
        ck_assert_ptr_nonnull(line = follow_line(&all));
        ck_assert_int_eq(line_id(line), 6);
        ck_assert(strstr(line, "\"type\":\"Failed\"") != NULL);
        ck_assert_ptr_nonnull(line = follow_line(&all));
        ck_assert_int_eq(line_id(line), 7);
        ck_assert_int_eq(line_id(follow_line(&tail)), 6);
        ck_assert_int_eq(line_id(follow_line(&tail)), 7);
        /* The old bounce (id 1, before --after 2) is not shown; the new one is. */
        ck_assert_ptr_nonnull(line = follow_line(&failed));
        ck_assert_int_eq(line_id(line), 6);
        follow_stop(&all);
        follow_stop(&failed);
        follow_stop(&tail);

        /* --after without --follow: the rest, oldest first, then the end. */
        c = ctl("-d '%s' -f csv events --after 5", d.db);
        ASSERT_OK(c);
        ck_assert_int_eq(count_lines(c.out), 3);
        ck_assert(strncmp(strchr(c.out, '\n') + 1, "6,", 2) == 0);
        ctl_done(&c);
        c = ctl("-d '%s' -f csv events --after 1 --limit 1", d.db);
        ASSERT_OK(c);
        ck_assert_int_eq(count_lines(c.out), 2);
        ck_assert(strncmp(strchr(c.out, '\n') + 1, "2,", 2) == 0);
        ctl_done(&c);
        /* | head: the follower ends when its reader does, with nothing new to write. */
        args = xasprintf("timeout 20 sh -c \"%s -d '%s' events -F | head -n 1 >/dev/null\"", SLHOOKCTL_BIN, d.db);
        r = system(args);
        free(args);
        ck_assert_msg(WIFEXITED(r) && WEXITSTATUS(r) == 0, "events -F | head: status %d", r);
        /* Wrong uses say what is wrong. */
        c = ctl("-d '%s' events -F --after 2 --limit 3", d.db);
        ck_assert_int_eq(c.status, 2);
        ck_assert(strstr(c.err, "--limit") != NULL);
        ctl_done(&c);
        c = ctl("-d '%s' events --after x", d.db);
        ck_assert_int_eq(c.status, 2);
        ck_assert(strstr(c.err, "--after: 'x'") != NULL);
        ctl_done(&c);
        c = ctl("-d '%s' bounces --follow", d.db);
        ck_assert_int_eq(c.status, 2);
        ck_assert(strstr(c.err, "--follow is not an option") != NULL);
        ctl_done(&c);
}
END_TEST

int
main(void)
{
        Suite *s = suite_create("slhookctl");
        TCase *tc = tcase_create("slhookctl");

        tcase_add_unchecked_fixture(tc, make_certs, drop_certs);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_json_lines);
        tcase_add_test(tc, test_csv_quoting);
        tcase_add_test(tc, test_table_fits_terminal);
        tcase_add_test(tc, test_async_bounces_and_timeline);
        tcase_add_test(tc, test_stats_and_suppressions);
        tcase_add_test(tc, test_relative_times);
        tcase_add_test(tc, test_time_input);
        tcase_add_test(tc, test_time_input_local);
        tcase_add_test(tc, test_local_output);
        tcase_add_test(tc, test_help_and_wrong_file);
        tcase_add_test(tc, test_quarantine_commands);
        tcase_add_test(tc, test_prune_and_empty);
        tcase_add_test(tc, test_status);
        tcase_add_test(tc, test_limit);
        tcase_add_test(tc, test_events_order);
        tcase_add_test(tc, test_errors);
        tcase_add_test(tc, test_config_without_secret_access);
        tcase_add_test(tc, test_live_queries);
        tcase_add_test(tc, test_follow);
        return t_run(s, tc);
}
