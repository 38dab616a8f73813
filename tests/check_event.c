/* event: every type and field of PROTOCOL.md, both enum forms, case-insensitive
 * keys, wrong shapes, arrays, the wrapper, bad bytes, hostile input, digests. */
#include "config.h"

#include "event.h"
#include "lib.h"

static struct event_batch batch;

static void
teardown(void)
{
        event_batch_done(&batch);
}

/* Parse s; it must be accepted with n elements. */
static struct event *
parse_n(const char *s, size_t n)
{
        char *err = NULL;
        int r;

        event_batch_done(&batch);
        r = event_parse(s, strlen(s), false, &batch, &err);
        ck_assert_msg(r == 0, "rejected: %s", err ? err : "?");
        ck_assert_uint_eq(batch.n, n);
        return &batch.v[0];
}

static struct event *
parse1(const char *s)
{
        return parse_n(s, 1);
}

static struct event *
parse_file(const char *name)
{
        char *s = t_data(name);
        struct event *ev = parse1(s);

        free(s);
        return ev;
}

/* Parse s; it must be refused (400) with a message containing expect. */
static void
refuse_as(const char *s, size_t len, bool form, const char *expect)
{
        struct event_batch b;
        char *err = NULL;

        ck_assert_int_eq(event_parse(s, len, form, &b, &err), -EINVAL);
        ck_assert_ptr_nonnull(err);
        ck_assert_msg(strstr(err, expect) != NULL, "error '%s' lacks '%s'", err, expect);
        free(err);
}

#define refuse(s, len, expect) refuse_as(s, len, false, expect)
#define refuse_str(s, expect) refuse_as(s, strlen(s), false, expect)

#define S(ev, f) ((ev)->str[EVS_##f])
#define N(ev, f) ((ev)->num[EVN_##f])
#define HAS(ev, f) ((ev)->has_num[EVN_##f])

START_TEST(test_queued)
{
        struct event *ev = parse_file("queued.json");

        ck_assert_int_eq(ev->kind, EVENT_MAIL);
        ck_assert_str_eq(ev->type, "Queued");
        ck_assert_str_eq(ev->occurred_at, "2025-03-04T08:15:02.512003Z");
        ck_assert_str_eq(S(ev, DATE_TIME), "2025-03-04T08:15:02.5120034Z");
        ck_assert(HAS(ev, SERVER_ID) && N(ev, SERVER_ID) == 40111);
        ck_assert(HAS(ev, SUBACCOUNT_ID) && N(ev, SUBACCOUNT_ID) == 40111);
        ck_assert(HAS(ev, MESSAGE_SIZE) && N(ev, MESSAGE_SIZE) == 18432);
        ck_assert_str_eq(S(ev, SUBJECT), "Your order 5521 has shipped");
        ck_assert_str_eq(S(ev, FROM_ADDRESS), "orders@shop.example.com");
        ck_assert_str_eq(S(ev, ADDRESS), "alice@example.net");
        ck_assert_str_eq(S(ev, MAILING_ID), "ORDERSHIP");
        ck_assert_str_eq(S(ev, MESSAGE_ID), "o5521-r1");
        ck_assert_str_eq(ev->meta, "[{\"Key\":\"CustomerId\",\"Value\":\"8812\"}]");
        ck_assert_str_eq(ev->tags, "[\"Transactional\"]");
        ck_assert_str_eq(ev->secret, T_SECRET);
        ck_assert(!ev->is_test);
}
END_TEST

START_TEST(test_deferred)
{
        struct event *ev = parse_file("deferred.json");

        ck_assert_str_eq(ev->type, "Deferred");
        ck_assert(N(ev, DEFERRAL_CODE) == 4001 && N(ev, IP_POOL_ID) == 7);
        ck_assert_str_eq(S(ev, REASON), "421 4.7.0 Temporary rate limit, try again later");
        ck_assert_str_eq(ev->meta, "[]");
}
END_TEST

START_TEST(test_delivered)
{
        struct event *ev = parse_file("delivered.json");

        ck_assert_str_eq(ev->type, "Sent");
        ck_assert_str_eq(ev->wire_type, "Delivered");
        ck_assert_str_eq(S(ev, RESPONSE), "250 2.0.0 OK 1741076141 q7si123 - gsmtp");
        ck_assert_str_eq(S(ev, LOCAL_IP), "142.0.181.23");
        ck_assert_str_eq(S(ev, REMOTE_MTA), "mx1.example.net");
}
END_TEST

START_TEST(test_failed)
{
        struct event *ev = parse_file("failed.json");

        ck_assert_str_eq(ev->type, "Failed");
        ck_assert_str_eq(S(ev, FAILURE_TYPE), "Permanent");
        ck_assert(N(ev, FAILURE_CODE) == 2001);
        ck_assert_str_eq(S(ev, BOUNCE_STATUS), "");
        ck_assert_str_eq(S(ev, DIAGNOSTIC_CODE), "");
        ck_assert_str_eq(S(ev, REMOTE_MTA), "mx.example.org");
}
END_TEST

START_TEST(test_complaint)
{
        struct event *ev = parse_file("complaint.json");

        ck_assert_str_eq(ev->type, "Complaint");
        ck_assert_str_eq(S(ev, FBL_TYPE), "abuse");
        ck_assert_str_eq(S(ev, FBL_FROM), "news@shop.example.com");
        ck_assert_str_eq(S(ev, FBL_TO), "carol@example.com");
        ck_assert_str_eq(S(ev, USER_AGENT), "ExampleMail-Feedback/1.0");
        ck_assert(N(ev, LENGTH) == 3120);
        ck_assert(!HAS(ev, SUBACCOUNT_ID));
        ck_assert_ptr_null(ev->meta);
}
END_TEST

START_TEST(test_tracking)
{
        struct event *ev = parse_file("click.json");

        ck_assert_str_eq(ev->type, "Click");
        ck_assert_str_eq(ev->wire_type, "Tracking");
        ck_assert_str_eq(S(ev, TRACKING_TYPE), "Click");
        ck_assert_str_eq(S(ev, URL), "https://shop.example.com/track/5521");
        ck_assert_str_eq(S(ev, CLIENT_IP), "198.51.100.24");
        ev = parse_file("open.json");
        ck_assert_str_eq(ev->type, "Open");
        ck_assert_str_eq(ev->occurred_at, "2025-03-04T09:02:00.000000Z");
        ev = parse1("{\"Type\":\"Tracking\",\"TrackingType\":2,\"SecretKey\":\"k\"}");
        ck_assert_str_eq(ev->type, "Unsubscribe");
        ev = parse1("{\"Type\":\"Tracking\",\"TrackingType\":\"unsubscribe\",\"SecretKey\":\"k\"}");
        ck_assert_str_eq(ev->type, "Unsubscribe");
        /* Tracking without (or with an unknown) TrackingType keeps the wire type. */
        ev = parse1("{\"Type\":\"Tracking\",\"SecretKey\":\"k\"}");
        ck_assert_str_eq(ev->type, "Tracking");
        ev = parse1("{\"Type\":\"Tracking\",\"TrackingType\":9,\"SecretKey\":\"k\"}");
        ck_assert_str_eq(ev->type, "Tracking");
        ck_assert_str_eq(S(ev, TRACKING_TYPE), "9");
}
END_TEST

START_TEST(test_enum_forms)
{
        static const struct { const char *in, *out; } ft[] = {
                { "0", "Temporary" }, { "1", "Permanent" }, { "2", "Suppressed" },
                { "\"0\"", "Temporary" }, { "\"Permanent\"", "Permanent" }, { "\"suppressed\"", "Suppressed" },
                { "\"TEMPORARY\"", "Temporary" }, { "7", "7" }, { "\"Soft\"", "Soft" },
        };
        size_t i;

        for (i = 0; i < ARRAY_SIZE(ft); i++) {
                char *s = xasprintf("{\"Type\":\"Failed\",\"FailureType\":%s,\"SecretKey\":\"k\"}", ft[i].in);
                struct event *ev = parse1(s);

                ck_assert_int_eq(ev->kind, EVENT_MAIL);
                ck_assert_msg(strcmp(S(ev, FAILURE_TYPE), ft[i].out) == 0, "%s -> %s", ft[i].in, S(ev, FAILURE_TYPE));
                free(s);
        }
}
END_TEST

START_TEST(test_types)
{
        static const struct { const char *wire, *canon; } t[] = {
                { "Queued", "Queued" }, { "Delivered", "Sent" }, { "Sent", "Sent" }, { "delivered", "Sent" },
                { "Failed", "Failed" }, { "Deferred", "Deferred" }, { "Complaint", "Complaint" },
                { "Click", "Click" }, { "Open", "Open" }, { "Unsubscribe", "Unsubscribe" },
                { "Bounced", "Bounced" }, { "FutureThing", "FutureThing" },
        };
        size_t i;

        for (i = 0; i < ARRAY_SIZE(t); i++) {
                char *s = xasprintf("{\"Type\":\"%s\",\"SecretKey\":\"k\"}", t[i].wire);
                struct event *ev = parse1(s);

                ck_assert_int_eq(ev->kind, EVENT_MAIL);
                ck_assert_str_eq(ev->type, t[i].canon);
                ck_assert_str_eq(ev->wire_type, t[i].wire);
                free(s);
        }
}
END_TEST

START_TEST(test_validation)
{
        struct event *ev = parse_file("validation.json");

        ck_assert_int_eq(ev->kind, EVENT_VALIDATION);
        ck_assert_str_eq(ev->secret, T_SECRET);
        /* A Validation is answered even with odd extra fields. */
        ev = parse1("{\"type\":\"validation\",\"secretkey\":\"k\",\"ServerId\":\"x\",\"DateTime\":\"?\"}");
        ck_assert_int_eq(ev->kind, EVENT_VALIDATION);
}
END_TEST

START_TEST(test_case_insensitive_keys)
{
        struct event *ev = parse1("{\"TYPE\":\"delivered\",\"serverid\":5,\"SERVERID_X\":1,\"messageID\":\"m\","
                                  "\"LocalIP\":\"1.2.3.4\",\"RemoteMTA\":\"mx\",\"URL\":\"u\",\"secretkey\":\"k\","
                                  "\"subjectline\":\"hello\",\"datetime\":\"2025-01-01T00:00:00Z\"}");

        ck_assert_str_eq(ev->type, "Sent");
        ck_assert(N(ev, SERVER_ID) == 5);
        ck_assert_str_eq(S(ev, MESSAGE_ID), "m");
        ck_assert_str_eq(S(ev, LOCAL_IP), "1.2.3.4");
        ck_assert_str_eq(S(ev, REMOTE_MTA), "mx");
        ck_assert_str_eq(S(ev, URL), "u");
        ck_assert_str_eq(S(ev, SUBJECT), "hello");
        ck_assert_str_eq(ev->secret, "k");
        ck_assert_str_eq(ev->occurred_at, "2025-01-01T00:00:00.000000Z");
        ck_assert_ptr_nonnull(strstr(ev->raw, "\"SERVERID_X\":1"));
}
END_TEST

START_TEST(test_missing_and_extra)
{
        struct event *ev = parse1("{\"Type\":\"Delivered\",\"SecretKey\":\"k\",\"NewField\":{\"a\":[1,true,null]},"
                                  "\"ServerId\":null,\"SubaccountId\":\"\",\"IpPoolId\":\"12\"}");

        ck_assert_int_eq(ev->kind, EVENT_MAIL);
        ck_assert_str_eq(ev->occurred_at, "");
        ck_assert(!HAS(ev, SERVER_ID));
        ck_assert(!HAS(ev, SUBACCOUNT_ID));
        ck_assert(HAS(ev, IP_POOL_ID) && N(ev, IP_POOL_ID) == 12);     /* numeric string */
        ck_assert_ptr_null(S(ev, MESSAGE_ID));
        ck_assert_str_eq(ev->raw, "{\"Type\":\"Delivered\",\"NewField\":{\"a\":[1,true,null]},"
                                  "\"ServerId\":null,\"SubaccountId\":\"\",\"IpPoolId\":\"12\"}");
        /* numbers for string fields are kept as their text */
        ev = parse1("{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"MessageId\":1209957964}");
        ck_assert_str_eq(S(ev, MESSAGE_ID), "1209957964");
}
END_TEST

START_TEST(test_wrong_shapes)
{
        static const struct { const char *body, *reason; } q[] = {
                { "{\"SecretKey\":\"k\",\"ServerId\":1}", "'Type' is missing" },
                { "{\"Type\":5,\"SecretKey\":\"k\"}", "'Type' is not a non-empty string" },
                { "{\"Type\":\"\",\"SecretKey\":\"k\"}", "'Type' is not a non-empty string" },
                { "{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"ServerId\":\"abc\"}", "'ServerId' is not an integer" },
                { "{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"ServerId\":1.5}", "'ServerId' is not an integer" },
                { "{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"ServerId\":{}}", "'ServerId' is not an integer" },
                { "{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"ServerId\":99999999999999999999}", "'ServerId' is not an integer" },
                { "{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"Address\":[\"a\"]}", "'Address' is not a string" },
                { "{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"Address\":true}", "'Address' is not a string" },
                { "{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"Data\":\"x\"}", "'Data' is not an object" },
                { "{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"DateTime\":\"yesterday\"}", "'DateTime' is not an ISO-8601" },
                { "{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"DateTime\":\"2025-02-30T00:00:00Z\"}", "'DateTime'" },
                { "{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"DateTime\":20250101}", "'DateTime'" },
                { "{\"Type\":\"Queued\",\"type\":\"Failed\",\"SecretKey\":\"k\"}", "'Type' given twice" },
                { "{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"MessageId\":\"a\",\"MESSAGEID\":\"b\"}", "'MessageId' given twice" },
        };
        size_t i;

        for (i = 0; i < ARRAY_SIZE(q); i++) {
                struct event *ev = parse1(q[i].body);

                ck_assert_msg(ev->kind == EVENT_QUARANTINE, "case %zu not quarantined", i);
                ck_assert_msg(strstr(ev->reason, q[i].reason) != NULL, "case %zu: reason '%s'", i, ev->reason);
                ck_assert_str_eq(ev->secret, "k");
                ck_assert_ptr_null(strstr(ev->raw, "SecretKey"));
        }
}
END_TEST

START_TEST(test_secret_shapes)
{
        struct event *ev;

        ev = parse1("{\"Type\":\"Queued\",\"SecretKey\":\"a\",\"secretKEY\":\"b\"}");
        ck_assert(ev->secret_bad);
        ck_assert_ptr_null(strstr(ev->raw, "ecret"));
        ev = parse1("{\"Type\":\"Queued\",\"SecretKey\":123}");
        ck_assert(ev->secret_bad);
        ev = parse1("{\"Type\":\"Queued\"}");
        ck_assert_ptr_null(ev->secret);
}
END_TEST

START_TEST(test_arrays_and_wrapper)
{
        struct event *ev;
        char *err = NULL;

        ev = parse_n("[{\"Type\":\"Queued\",\"SecretKey\":\"k\"},{\"Type\":\"Delivered\",\"SecretKey\":\"k\"},"
                     "{\"data\":{\"Type\":\"Failed\",\"SecretKey\":\"k\"}}]", 3);
        ck_assert_str_eq(ev[0].type, "Queued");
        ck_assert_str_eq(ev[1].type, "Sent");
        ck_assert_str_eq(ev[2].type, "Failed");
        ck_assert_str_eq(ev[2].raw, "{\"Type\":\"Failed\"}");

        ev = parse_file("sample-test.json");
        ck_assert_str_eq(ev->type, "Sent");
        ck_assert(ev->is_test);
        ck_assert_str_eq(ev->secret, T_SECRET);
        ck_assert_ptr_null(strstr(ev->raw, "\"data\""));

        /* An object with a Type of its own is not unwrapped. */
        ev = parse1("{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"data\":{\"Type\":\"Failed\"}}");
        ck_assert_str_eq(ev->type, "Queued");

        refuse_str("[]", "empty array");
        refuse_str("[{\"Type\":\"Queued\"}, 5]", "array element 1 is not an object");
        refuse_str("[[{\"Type\":\"Queued\"}]]", "array element 0 is not an object");
        refuse_str("\"just a string\"", "not a JSON object or array");
        refuse_str("42", "not a JSON object or array");
        (void) err;
}
END_TEST

START_TEST(test_not_json)
{
        refuse_str("", "not valid JSON");
        refuse_str("garbage", "not valid JSON");
        refuse_str("{\"Type\":\"Queued\"", "not valid JSON");
        refuse_str("{\"Type\":\"Queued\"}x", "not valid JSON");
        refuse_str("{\"Type\":\"Queued\"}{}", "not valid JSON");
        refuse_str("/* c */ {\"Type\":\"Queued\"}", "not valid JSON");
        refuse_str("{'Type':'Queued'}", "not valid JSON");
        refuse_str("{\"a\":1,}", "not valid JSON");
}
END_TEST

START_TEST(test_bad_bytes)
{
        static const char body[] = "{\"Type\":\"Delivered\",\"SecretKey\":\"k\",\"Address\":\"al\xff" "ce\","
                                   "\"Reason\":\"nul\\u0000here\",\"Subject\":\"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00\"}";
        struct event *ev;
        char *err = NULL;
        int r;

        event_batch_done(&batch);
        r = event_parse(body, sizeof(body) - 1, false, &batch, &err);
        ck_assert_msg(r == 0, "%s", err);
        ev = &batch.v[0];
        ck_assert_int_eq(ev->kind, EVENT_MAIL);
        ck_assert_str_eq(S(ev, ADDRESS), "al\xef\xbf\xbd" "ce");
        ck_assert_str_eq(S(ev, REASON), "nul\xef\xbf\xbdhere");
        ck_assert_str_eq(S(ev, SUBJECT), "caf\xc3\xa9 \xc3\xa9 \xf0\x9f\x98\x80");
        ck_assert_uint_eq(strlen(ev->raw), ev->raw_len);       /* no NUL inside */
}
END_TEST

START_TEST(test_hostile)
{
        struct buf b = { 0 };
        int i;

        /* deep nesting is refused, never recursed into */
        for (i = 0; i < 100000; i++)
                buf_puts(&b, "[");
        refuse(b.data, b.len, "nested too deeply");
        buf_done(&b);
        for (i = 0; i < 20; i++)
                buf_puts(&b, "{\"a\":");
        buf_puts(&b, "1");
        for (i = 0; i < 20; i++)
                buf_puts(&b, "}");
        parse1(b.data);         /* moderately deep is fine */
        buf_done(&b);

        /* too many values */
        buf_puts(&b, "[");
        for (i = 0; i < 150000; i++)
                buf_puts(&b, "1,");
        buf_puts(&b, "1]");
        refuse(b.data, b.len, "too many JSON values");
        buf_done(&b);

        /* a 1 MB string is just a long field */
        buf_puts(&b, "{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"Subject\":\"");
        for (i = 0; i < 1024 * 1024; i++)
                buf_append(&b, "x", 1);
        buf_puts(&b, "\"}");
        ck_assert_uint_eq(strlen(S(parse1(b.data), SUBJECT)), 1024 * 1024);
        buf_done(&b);

        /* huge numbers stay text where text is wanted */
        ck_assert_str_eq(S(parse1("{\"Type\":\"Queued\",\"SecretKey\":\"k\",\"MessageId\":1e999999}"), MESSAGE_ID),
                         "1e999999");
}
END_TEST

START_TEST(test_form)
{
        char *s = t_data("legacy-form.txt");
        struct event *ev;
        char *err = NULL;
        int r;

        event_batch_done(&batch);
        r = event_parse(s, strlen(s), true, &batch, &err);
        ck_assert_msg(r == 0, "%s", err);
        ev = &batch.v[0];
        ck_assert_int_eq(ev->kind, EVENT_MAIL);
        ck_assert_str_eq(ev->type, "Sent");
        ck_assert_str_eq(ev->occurred_at, "2018-08-14T16:35:37.000000Z");
        ck_assert(N(ev, SERVER_ID) == 99999);
        ck_assert_str_eq(S(ev, ADDRESS), "dave@example.com");
        ck_assert_str_eq(S(ev, MAILING_ID), "");
        ck_assert_str_eq(S(ev, RESPONSE), "250 2.0.0 OK");
        ck_assert_str_eq(ev->secret, T_SECRET);
        ck_assert_ptr_null(strstr(ev->raw, "SecretKey"));
        free(s);
        refuse_as("Type=Queued&junk", 16, true, "without '='");
}
END_TEST

static const struct { const char *in; int64_t us; } times[] = {
        { "2025-03-04T08:15:02.5120034Z", INT64_C(1741076102512003) },
        { "2025-03-04T08:15:02Z", INT64_C(1741076102000000) },
        { "2025-03-04T08:15:02.5Z", INT64_C(1741076102500000) },
        { "2025-03-04T08:15:02.123456789Z", INT64_C(1741076102123456) },
        { "2025-03-04 08:15:02", INT64_C(1741076102000000) },
        { "2025-03-04T10:15:02+02:00", INT64_C(1741076102000000) },
        { "2025-03-04T03:15:02.1-05:00", INT64_C(1741076102100000) },
        { "2024-02-29T00:00:00Z", INT64_C(1709164800000000) },
        { "1970-01-01T00:00:00Z", 0 },
        { "Tue, 14 Aug 2018 16:35:37 GMT", INT64_C(1534264537000000) },
};

START_TEST(test_times)
{
        int64_t us = -1;

        ck_assert_int_eq(event_parse_time(times[_i].in, strlen(times[_i].in), &us), 0);
        ck_assert_msg(us == times[_i].us, "%s -> %lld", times[_i].in, (long long) us);
}
END_TEST

START_TEST(test_bad_times)
{
        static const char *const bad[] = {
                "", "2025", "2025-03-04", "2025-13-01T00:00:00Z", "2025-02-29T00:00:00Z", "2025-03-04T24:00:00Z",
                "2025-03-04T08:60:00Z", "2025-03-04T08:15:02.Z", "2025-03-04T08:15:02ZZ", "2025-03-04T08:15:02+0200",
                "2025-03-04T08:15:02.1234567890Z", "Tue, 14 Foo 2018 16:35:37 GMT", "yesterday",
                /* past either end of years 1-9999 once the offset is applied */
                "0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59.999999-00:01",
                "Tue, 14 Aug 2018 -1:35:37 GMT", "Tue, 14 Aug 2018 16:-5:37 GMT", "Tue, 14 Aug 2018 16:35:-7 GMT",
        };
        size_t i;
        int64_t us;

        for (i = 0; i < ARRAY_SIZE(bad); i++)
                ck_assert_msg(event_parse_time(bad[i], strlen(bad[i]), &us) == -EINVAL, "accepted '%s'", bad[i]);
}
END_TEST

static const char *
digest_of(const char *body, const char *endpoint)
{
        static char out[81];
        struct event *ev = parse1(body);

        event_digest(ev, endpoint);
        memcpy(out, ev->digest, sizeof(out));
        return out;
}

START_TEST(test_digest)
{
        char *file = t_data("delivered.json");
        char a[81], b[81];

        /* Pinned: dedup across upgrades depends on the digest never changing
         * (sql/migrate/002 turns schema 1's digests into this form). */
        strcpy(a, digest_of(file, "main"));
        ck_assert_str_eq(a, "00062f7fe0f510c8"
                            "89dba062c3073d00e5a08673a9c400f8a1f6f9048956800fb92d170165cbc347");
        /* White space and the SecretKey do not matter (redelivery after rotation). */
        strcpy(b, digest_of("{\"Type\": \"Delivered\",  \"DateTime\":\"2025-03-04T08:15:41.7730009Z\",\n"
                            "\"ServerId\":40111,\"SubaccountId\":40111,\"IpPoolId\":7,\"SecretKey\":\"other\","
                            "\"Address\":\"alice@example.net\",\"MailingId\":\"ORDERSHIP\",\"MessageId\":\"o5521-r1\","
                            "\"Response\":\"250 2.0.0 OK 1741076141 q7si123 - gsmtp\",\"LocalIp\":\"142.0.181.23\","
                            "\"RemoteMta\":\"mx1.example.net\",\"Data\":{\"Meta\":[{\"Key\":\"CustomerId\","
                            "\"Value\":\"8812\"}],\"Tags\":[\"Transactional\"]}}", "main"));
        ck_assert_str_eq(a, b);
        /* Another endpoint, or any other value, is another event. */
        ck_assert_str_ne(a, digest_of(file, "sub"));
        strcpy(a, digest_of("{\"Type\":\"Open\",\"SecretKey\":\"k\",\"DateTime\":\"2025-01-01T00:00:00.1Z\"}", "main"));
        strcpy(b, digest_of("{\"Type\":\"Open\",\"SecretKey\":\"k\",\"DateTime\":\"2025-01-01T00:00:00.2Z\"}", "main"));
        ck_assert_str_ne(a, b);
        /* Led by the event time: none, no time. */
        ck_assert(strncmp(digest_of("{\"Type\":\"Open\"}", "main"), "0000000000000000", 16) == 0);
        ck_assert_int_eq(strlen(digest_of("{\"Type\":\"Open\"}", "main")), 80);
        free(file);
}
END_TEST

int
main(void)
{
        Suite *s = suite_create("event");
        TCase *tc = tcase_create("event");

        tcase_add_checked_fixture(tc, NULL, teardown);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_queued);
        tcase_add_test(tc, test_deferred);
        tcase_add_test(tc, test_delivered);
        tcase_add_test(tc, test_failed);
        tcase_add_test(tc, test_complaint);
        tcase_add_test(tc, test_tracking);
        tcase_add_test(tc, test_enum_forms);
        tcase_add_test(tc, test_types);
        tcase_add_test(tc, test_validation);
        tcase_add_test(tc, test_case_insensitive_keys);
        tcase_add_test(tc, test_missing_and_extra);
        tcase_add_test(tc, test_wrong_shapes);
        tcase_add_test(tc, test_secret_shapes);
        tcase_add_test(tc, test_arrays_and_wrapper);
        tcase_add_test(tc, test_not_json);
        tcase_add_test(tc, test_bad_bytes);
        tcase_add_test(tc, test_hostile);
        tcase_add_test(tc, test_form);
        tcase_add_loop_test(tc, test_times, 0, (int) ARRAY_SIZE(times));
        tcase_add_test(tc, test_bad_times);
        tcase_add_test(tc, test_digest);
        return t_run(s, tc);
}
