/* Bad input against a running slhookd: thousands of malformed bodies over
 * one keep-alive libcurl connection, then malformed HTTP over raw TLS
 * connections (GnuTLS) and raw bytes on the TLS port. No answer may be a 5xx
 * other than 503, the daemon must keep running, what carries the secret and
 * is an object must be stored (as an event or in quarantine), and a valid
 * event is accepted afterwards. The same again on PostgreSQL (under
 * tests/pgtmp), where no answer may be a 503 at all: with the database up,
 * a 503 is a row the server refuses, answered 503 on every retry. */
#include "config.h"

#include <gnutls/gnutls.h>
#include <netinet/tcp.h>
#include <sys/time.h>

#include "daemon.h"
#include "event.h"
#ifdef HAVE_POSTGRESQL
#include "fake_api.h"
#include "pg.h"
#endif

#define MAX_BODY (4u * 1024 * 1024)
#define SEC "\"SecretKey\":\"" T_SECRET "\""

static CURL *h;
static char *pg_dsn;                    /* the PostgreSQL barrage's database, or NULL */

/* The one value sql answers on the daemon's database. */
static long long
db_value(const char *sql)
{
#ifdef HAVE_POSTGRESQL
        if (pg_dsn)
                return pq_at(pg_dsn, sql);
#endif
        return q(sql);
}
static unsigned sent, by_status[600], closed;
static uint64_t rng;

static uint64_t
rnd(void)
{
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

static void
count(long status)
{
        sent++;
        if (status > 0 && status < 600)
                by_status[status]++;
        else
                closed++;
}

/* POST body on the keep-alive connection; expect is the status it must
 * get, or 0 for any answer that is not a 5xx other than 503. */
static long
body_case(const char *what, const char *body, size_t len, const char *ctype, long expect)
{
        struct resp r = request(h, "POST", "/socketlabs/events", body, len, ctype);
        long status = r.status;

        count(status);
        ck_assert_msg(r.rc == CURLE_OK && status > 0, "%s: no answer (curl %d)", what, (int) r.rc);
        ck_assert_msg(status < 500 || status == 503, "%s: status %ld: %s", what, status, r.body.data);
        ck_assert_msg(expect == 0 || status == expect, "%s: status %ld, expected %ld: %s", what, status, expect,
                      r.body.data);
        resp_done(&r);
        return status;
}

static long
json_case(const char *what, const char *body, long expect)
{
        return body_case(what, body, strlen(body), "application/json", expect);
}

/* ---- raw connections ---- */

static int
raw_connect(void)
{
        struct sockaddr_in sa = { .sin_family = AF_INET };
        struct timeval tv = { .tv_sec = 5 };
        int one = 1;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t) d.port);
        ck_assert_int_eq(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
        ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
        ck_assert_int_eq(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
        return fd;
}

/* Whether buf holds a whole answer (head, and the body its Content-Length
 * announces). */
static bool
answer_complete(const struct buf *b)
{
        const char *end = b->len ? memmem(b->data, b->len, "\r\n\r\n", 4) : NULL, *cl;
        size_t head;

        if (end == NULL)
                return false;
        head = (size_t) (end - b->data) + 4;
        cl = memmem(b->data, head, "Content-Length: ", 16);
        return cl == NULL || b->len >= head + strtoul(cl + 16, NULL, 10);
}

/* The status of the first answer in buf, or 0 when there is none. */
static long
answer_status(const struct buf *b)
{
        if (b->len < 12 || strncmp(b->data, "HTTP/1.", 7) != 0)
                return 0;
        return strtol(b->data + 9, NULL, 10);
}

/* Send req over a new TLS connection (half-closing it after when shut)
 * and read the first answer. Returns its status, 0 when the daemon closed
 * the connection (or let it time out) without one. */
static long
raw_tls(const char *what, const char *req, size_t len, bool shut)
{
        gnutls_certificate_credentials_t cred;
        gnutls_session_t s;
        struct buf b = { 0 };
        char chunk[16384];
        size_t off = 0;
        long status;
        ssize_t n = 0;
        int64_t t0;
        int fd = raw_connect(), rc;

        ck_assert_int_eq(gnutls_certificate_allocate_credentials(&cred), 0);
        ck_assert_int_eq(gnutls_certificate_set_x509_trust_file(cred, d.cert, GNUTLS_X509_FMT_PEM), 1);
        ck_assert_int_eq(gnutls_init(&s, GNUTLS_CLIENT), 0);
        ck_assert_int_eq(gnutls_set_default_priority(s), 0);
        ck_assert_int_eq(gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred), 0);
        gnutls_session_set_verify_cert(s, "localhost", 0);
        gnutls_transport_set_int(s, fd);
        do
                rc = gnutls_handshake(s);
        while (rc < 0 && !gnutls_error_is_fatal(rc));
        ck_assert_msg(rc == 0, "%s: TLS handshake: %s", what, gnutls_strerror(rc));
        /* The daemon may answer and close before it has read everything. */
        while (off < len && (n = gnutls_record_send(s, req + off, len - off < 16384 ? len - off : 16384)) > 0)
                off += (size_t) n;
        if (shut)
                gnutls_bye(s, GNUTLS_SHUT_WR);
        t0 = time_mono_us();
        while (!answer_complete(&b) && time_mono_us() - t0 < 10 * 1000000) {
                n = gnutls_record_recv(s, chunk, sizeof(chunk));
                if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
                        continue;
                if (n <= 0)
                        break;
                buf_append(&b, chunk, (size_t) n);
        }
        buf_append(&b, "", 0);
        status = answer_status(&b);
        ck_assert_msg(secret_in(b.data, b.len) == NULL, "%s: a secret is in the answer", what);
        /* 505 is libmicrohttpd's answer to an HTTP version it does not
         * speak (RFC 9110, 15.6.6): a protocol answer, not a fault. */
        ck_assert_msg(status < 500 || status == 503 || status == 505, "%s: status %ld: %s", what, status, b.data);
        count(status);
        buf_done(&b);
        gnutls_deinit(s);
        gnutls_certificate_free_credentials(cred);
        close(fd);
        return status;
}

static long
raw_tls_str(const char *what, const char *req, long expect)
{
        long status = raw_tls(what, req, strlen(req), false);

        ck_assert_msg(expect < 0 || status == expect, "%s: status %ld, expected %ld", what, status, expect);
        return status;
}

/* Bytes that are not TLS, on the TLS port: the daemon closes. */
static void
raw_plain(const char *what, const void *bytes, size_t len)
{
        char c[256];
        ssize_t n;
        int fd = raw_connect();

        (void) send(fd, bytes, len, MSG_NOSIGNAL);
        shutdown(fd, SHUT_WR);
        while ((n = recv(fd, c, sizeof(c), 0)) > 0)
                ck_assert_msg(memmem(c, (size_t) n, "HTTP/1.", 7) == NULL, "%s: an HTTP answer without TLS", what);
        ck_assert_msg(n == 0 || errno == ECONNRESET, "%s: not closed (%s)", what, strerror(errno));
        count(0);
        close(fd);
}

/* ---- the barrage ---- */

static void
random_bodies(void)
{
        static const char *const ctypes[] = { "application/json", "application/x-www-form-urlencoded", "text/plain", NULL };
        char body[4096];
        unsigned i;

        for (i = 0; i < 600; i++) {
                size_t len = rnd() % (i % 4 ? 64 : sizeof(body)), k;

                for (k = 0; k < len; k++)
                        body[k] = (char) rnd();
                if (len > 0 && i % 3 == 0)
                        body[0] = i % 2 ? '{' : '[';
                body_case("random bytes", body, len, ctypes[i % 4], 0);
        }
}

/* Every proper prefix of every sample event is refused; the whole is stored. */
static void
truncated(void)
{
        static const char *const files[] = { "queued.json", "delivered.json", "failed.json", "deferred.json",
                                             "complaint.json", "click.json", "open.json" };
        size_t f, len, end;

        for (f = 0; f < ARRAY_SIZE(files); f++) {
                char *s = t_data(files[f]);

                end = (size_t) (strrchr(s, '}') - s) + 1;
                for (len = 0; len < end; len++)
                        body_case(files[f], s, len, "application/json", 400);
                body_case(files[f], s, strlen(s), "application/json", 200);
                free(s);
        }
}

static char *
nest(const char *open, const char *close, unsigned depth, const char *inner, bool closed_)
{
        struct buf b = { 0 };
        unsigned i;

        for (i = 0; i < depth; i++)
                buf_append(&b, open, strlen(open));
        buf_append(&b, inner, strlen(inner));
        for (i = 0; closed_ && i < depth; i++)
                buf_append(&b, close, strlen(close));
        buf_append(&b, "", 1);
        return b.data;
}

static void
deep(void)
{
        static const unsigned depths[] = { 33, 100, 10000, 500000 };
        char *s, *ev;
        size_t i;

        for (i = 0; i < ARRAY_SIZE(depths); i++) {
                s = nest("[", "]", depths[i], "1", true);
                json_case("deep array", s, 400);
                free(s);
                s = nest("{\"a\":", "}", depths[i], "1", true);
                json_case("deep object", s, 400);
                free(s);
                s = nest("[{\"k\":", "}]", depths[i] / 2, "[]", false);
                json_case("deep, unclosed", s, 400);
                free(s);
        }
        /* An event may nest to the limit in its Data: stored. */
        s = nest("[", "]", EVENT_MAX_DEPTH - 2, "1", true);
        ev = xasprintf("{\"Type\":\"Sent\"," SEC ",\"MessageId\":\"deep-ok\",\"Data\":{\"Meta\":%s}}", s);
        json_case("deep, within the limit", ev, 200);
        free(ev);
        free(s);
        s = nest("[", "]", EVENT_MAX_DEPTH - 1, "1", true);
        ev = xasprintf("{\"Type\":\"Sent\"," SEC ",\"MessageId\":\"deep-no\",\"Data\":{\"Meta\":%s}}", s);
        json_case("deep, one past the limit", ev, 400);
        free(ev);
        free(s);
}

static char *
repeat(const char *unit, size_t n)
{
        size_t k = strlen(unit), i;
        char *s = xmalloc(k * n + 1);

        for (i = 0; i < n; i++)
                memcpy(s + i * k, unit, k);
        s[k * n] = '\0';
        return s;
}

static void
big_strings(void)
{
        char *mb = repeat("a", 1024 * 1024), *esc = repeat("\\u0000", 256 * 1024), *bad = repeat("\xff", 1024 * 1024);
        char *mb5 = repeat("a", 5 * 1024 * 1024);
        /* Each body: head, fill, tail. */
        const struct {
                const char *what, *head, *fill, *tail;
                long expect;
        } cases[] = {
                { "1 MB Subject", "{\"Type\":\"Sent\"," SEC ",\"MessageId\":\"big-subject\",\"Subject\":\"", mb, "\"}", 200 },
                { "1 MB key", "{\"Type\":\"Sent\"," SEC ",\"MessageId\":\"big-key\",\"", mb, "\":1}", 200 },
                { "256 Ki escaped NULs", "{\"Type\":\"Sent\"," SEC ",\"MessageId\":\"big-nul\",\"Reason\":\"", esc, "\"}", 200 },
                { "1 MB of bytes that are not UTF-8",
                  "{\"Type\":\"Sent\"," SEC ",\"MessageId\":\"big-bad\",\"Response\":\"", bad, "\"}", 200 },
                { "1 MB MessageId", "{\"Type\":\"Sent\"," SEC ",\"MessageId\":\"", mb, "\"}", 200 },
                { "5 MB body", "[\"", mb5, "\"]", 413 },
        };
        size_t i;

        for (i = 0; i < ARRAY_SIZE(cases); i++) {
                char *body = xasprintf("%s%s%s", cases[i].head, cases[i].fill, cases[i].tail);

                json_case(cases[i].what, body, cases[i].expect);
                free(body);
        }
        free(mb);
        free(mb5);
        free(esc);
        free(bad);

        ck_assert_int_eq(db_value("SELECT length(subject) FROM events WHERE message_id = 'big-subject'"), 1024 * 1024);
        /* Every NUL became U+FFFD, every bad byte too: valid text, nothing lost. */
        ck_assert_int_eq(db_value("SELECT length(reason) FROM events WHERE message_id = 'big-nul'"), 256 * 1024);
        ck_assert_int_eq(db_value("SELECT length(response) FROM events WHERE message_id = 'big-bad'"), 1024 * 1024);
        /* PostgreSQL cannot index it: quarantined there (store_pg_unindexable). */
        if (pg_dsn)
                ck_assert_int_eq(db_value("SELECT count(*) FROM quarantine "
                                          "WHERE reason LIKE '%''MessageId'' is longer%'"), 1);
        else
                ck_assert_int_eq(db_value("SELECT length(message_id) FROM events WHERE length(message_id) > 1000"),
                                 1024 * 1024);
}

static void
nul_bytes(void)
{
        static const char raw_nul[] = "{\"Type\":\"Sent\"," SEC ",\"MessageId\":\"a\0b\"}";
        static const char after[] = "{\"Type\":\"Sent\"," SEC ",\"MessageId\":\"nul-after\"}\0";
        static const char form[] = "Type=Sent&SecretKey=" T_SECRET "&MessageId=nul%00form&Sub%00ject=x%00y%ff";

        body_case("a raw NUL in a string", raw_nul, sizeof(raw_nul) - 1, "application/json", 400);
        body_case("a NUL after the object", after, sizeof(after) - 1, "application/json", 400);
        body_case("a NUL first", "\0{}", 3, "application/json", 400);
        json_case("an escaped NUL in a key", "{\"Type\":\"Sent\"," SEC ",\"Mess\\u0000ageId\":\"k\"}", 200);
        json_case("an escaped NUL in MessageId", "{\"Type\":\"Sent\"," SEC ",\"MessageId\":\"nul\\u0000id\"}", 200);
        body_case("NULs in a form", form, sizeof(form) - 1, "application/x-www-form-urlencoded", 200);
        ck_assert_int_eq(db_value("SELECT count(*) FROM events WHERE message_id = 'nul\xef\xbf\xbdid'"), 1);
        ck_assert_int_eq(db_value("SELECT count(*) FROM events WHERE message_id = 'nul\xef\xbf\xbd" "form'"), 1);
}

/* Every field with every wrong type and every hostile number: what carries
 * the secret is stored (as an event or in quarantine), a bad SecretKey is
 * refused. */
static void
wrong_types(void)
{
        static const char *const values[] = {
                "{}", "[]", "[1,{\"a\":[]}]", "true", "false", "null", "1.5", "-1", "0", "\"\"", "\"x\"",
                "1e999999", "-1e999999", "99999999999999999999999999", "-9223372036854775809",
                "9223372036854775808", "9223372036854775807", "1E2", "-0", "0.0000001", "\"123abc\"",
                "\"\\ud800\"", "\"\\u0000\"", "\"9999-12-31T23:59:59.999999999-23:59\"",
                "\"0001-01-01T00:00:00+23:59\"", "\"Tue, 14 Aug 2018 -1:-1:-1 GMT\"",
        };
        const char *names[EVS_COUNT + EVN_COUNT + 5];
        size_t n = 0, i, j;
        unsigned stored = 0;

        for (i = 0; i < EVS_COUNT; i++)
                names[n++] = event_str_fields[i].wire;
        for (i = 0; i < EVN_COUNT; i++)
                names[n++] = event_num_fields[i].wire;
        names[n++] = "Type";
        names[n++] = "Data";
        names[n++] = "SubjectLine";
        names[n++] = "TrackingType";
        names[n++] = "SecretKey";
        for (i = 0; i < n; i++)
                for (j = 0; j < ARRAY_SIZE(values); j++) {
                        bool secret = strcmp(names[i], "SecretKey") == 0;
                        char *what = xasprintf("%s = %s", names[i], values[j]);
                        char *s = secret ? xasprintf("{\"Type\":\"Failed\",\"MessageId\":\"wt\",\"%s\":%s}", names[i],
                                                     values[j])
                                         : xasprintf("{\"Type\":\"Failed\"," SEC ",\"MessageId\":\"wt-%zu-%zu\","
                                                     "\"Data\":{\"Meta\":%s,\"Tags\":%s},\"%s\":%s}",
                                                     i, j, values[j], values[j], names[i], values[j]);

                        stored += json_case(what, s, secret ? 401 : 200) == 200;
                        free(s);
                        free(what);
                }
        /* Times past either end of years 1-9999 (after the offset) are
         * quarantined, not stored as a different time. */
        ck_assert_int_eq(db_value("SELECT count(*) FROM events WHERE occurred_at < '0001'"), 0);
        ck_assert_int_eq(db_value("SELECT (SELECT count(*) FROM events WHERE message_id LIKE 'wt-%') + "
                                  "(SELECT count(*) FROM quarantine WHERE raw LIKE '%\"wt-%')"), (int) stored);
}

static void
case_duplicates(void)
{
        json_case("Type and type", "{\"Type\":\"Sent\",\"type\":\"Failed\"," SEC ",\"MessageId\":\"dup-1\"}", 200);
        json_case("MessageId and MESSAGEID",
                  "{\"Type\":\"Sent\"," SEC ",\"MessageId\":\"dup-2\",\"MESSAGEID\":\"dup-3\"}", 200);
        json_case("DateTime twice", "{\"Type\":\"Sent\"," SEC ",\"MessageId\":\"dup-4\",\"datetime\":"
                  "\"2025-01-01T00:00:00Z\",\"DateTime\":\"2026-01-01T00:00:00Z\"}", 200);
        json_case("SecretKey and secretkey, both right",
                  "{\"Type\":\"Sent\"," SEC ",\"secretkey\":\"" T_SECRET "\",\"MessageId\":\"dup-5\"}", 401);
        json_case("a wrong SecretKey, then the right one in capitals",
                  "{\"Type\":\"Sent\",\"SecretKey\":\"wrong\",\"SECRETKEY\":\"" T_SECRET "\",\"MessageId\":\"dup-6\"}",
                  401);
        json_case("the right SecretKey, then a wrong one",
                  "{\"Type\":\"Sent\"," SEC ",\"secretKEY\":\"wrong\",\"MessageId\":\"dup-7\"}", 401);
        json_case("Data and data", "{\"Type\":\"Sent\"," SEC ",\"MessageId\":\"dup-8\",\"Data\":{},\"data\":[]}", 200);
        /* Repeated fields are quarantined, never silently resolved. */
        ck_assert_int_eq(db_value("SELECT count(*) FROM events WHERE message_id LIKE 'dup-%'"), 0);
        ck_assert_int_eq(db_value("SELECT count(*) FROM quarantine WHERE raw LIKE '%\"dup-%'"), 4);
}

/* Malformed HTTP on raw TLS connections. */
static void
bad_http(void)
{
        static const char ev[] = "{\"Type\":\"Sent\"," SEC ",\"MessageId\":\"raw-1\"}";
        static const char smuggled[] = "{\"Type\":\"Sent\"," SEC ",\"MessageId\":\"smuggled\"}";
        char *big = repeat("a", 100 * 1024), *s;
        unsigned i, far;

        s = xasprintf("POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\nContent-Length: 2\r\n\r\n{}", big);
        raw_tls_str("a 100 KB header", s, -1);
        free(s);
        s = xasprintf("POST /socketlabs/events?%s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", big);
        raw_tls_str("a 100 KB URL", s, -1);
        free(s);
        free(big);
        big = repeat("X-Many: 1\r\n", 3000);
        s = xasprintf("POST /socketlabs/events HTTP/1.1\r\nHost: x\r\n%sContent-Length: 2\r\n\r\n{}", big);
        raw_tls_str("3000 headers", s, -1);
        free(s);
        free(big);

        /* Content-Length that does not fit the body. */
        s = xasprintf("POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n%s", sizeof(ev) + 100, ev);
        raw_tls("Content-Length past the body, then EOF", s, strlen(s), true);
        free(s);
        s = xasprintf("POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Content-Length: 10\r\n\r\n%s", ev);
        raw_tls_str("Content-Length short of the body", s, 400);
        free(s);
        raw_tls_str("Content-Length past max_body",
                    "POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nContent-Length: 4194305\r\n\r\n{}", 413);
        raw_tls_str("Content-Length of 2^64",
                    "POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n{}", -1);
        raw_tls_str("Content-Length -1", "POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}", -1);
        raw_tls_str("Content-Length abc", "POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}", -1);
        raw_tls_str("two Content-Lengths",
                    "POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}", 400);
        raw_tls_str("Content-Length and chunked",
                    "POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "2\r\n{}\r\n0\r\n\r\n", 400);

        /* Ambiguous framing answers 400 and closes: a request hidden
         * behind it is never read. */
        s = xasprintf("POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: %zu\r\n\r\n{}"
                      "POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s",
                      sizeof(smuggled) - 1 + 60, sizeof(smuggled) - 1, smuggled);
        raw_tls_str("a request behind two Content-Lengths", s, 400);
        free(s);
        s = xasprintf("POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "0\r\n\r\nPOST /socketlabs/events HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s",
                      sizeof(smuggled) - 1, smuggled);
        raw_tls_str("a request behind Content-Length and chunked", s, 400);
        free(s);
        ck_assert_int_eq(db_value("SELECT count(*) FROM events WHERE message_id = 'smuggled'"), 0);

        /* Chunked bodies: past max_body by 256 KiB (read to its end and
         * answered 413), by more than 1 MiB (closed: libmicrohttpd 0.9.75
         * cannot answer mid-upload), and broken framing. */
        for (far = 0; far < 2; far++) {
                struct buf b = { 0 };
                char *chunk = repeat(" ", 0x8000);
                const char *head = "POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n";

                buf_append(&b, head, strlen(head));
                for (i = 0; i < MAX_BODY / 0x8000 + (far ? 40 : 8); i++) {
                        buf_append(&b, "8000\r\n", 6);
                        buf_append(&b, chunk, 0x8000);
                        buf_append(&b, "\r\n", 2);
                }
                buf_append(&b, "0\r\n\r\n", 5);
                ck_assert_int_eq(raw_tls(far ? "chunked far past max_body" : "chunked past max_body", b.data, b.len,
                                         false), far ? 0 : 413);
                buf_done(&b);
                free(chunk);
        }
        raw_tls_str("chunk size zz", "POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "zz\r\n{}\r\n0\r\n\r\n", -1);
        raw_tls_str("chunk size 2^72", "POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "FFFFFFFFFFFFFFFFFF\r\n{}\r\n0\r\n\r\n", -1);
        raw_tls("chunked, never finished", "POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                "2\r\n{}\r\n", 42, true);
        raw_tls_str("Transfer-Encoding gzip",
                    "POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{}", 400);

        /* Request lines and headers that are not HTTP. */
        raw_tls_str("HTTP/9.9", "POST /socketlabs/events HTTP/9.9\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 505);
        raw_tls_str("HTTP/1.1 without Host", "POST /socketlabs/events HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 400);
        raw_tls_str("a header without a colon", "POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", -1);
        raw_tls_str("a NUL in a header", "POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", -1);
        raw_tls_str("method FOO", "FOO /socketlabs/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", -1);
        raw_tls_str("a bare LF", "POST /socketlabs/events HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}", -1);
        raw_tls_str("Expect: 100-continue past max_body",
                    "POST /socketlabs/events HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n",
                    413);
        for (i = 0; i < 200; i++) {
                char junk[512];
                size_t len = 1 + rnd() % sizeof(junk), k;

                for (k = 0; k < len; k++)
                        junk[k] = (char) rnd();
                if (i % 2)
                        memcpy(junk, "POST /socketlabs/events HTTP/1.1\r\n", len < 34 ? len : 34);
                if (len > 4)    /* the end of a head, so most get an answer, not the timeout */
                        memcpy(junk + len - 4, "\r\n\r\n", 4);
                raw_tls("random bytes in TLS", junk, len, true);
        }

        /* Bytes that are not TLS. */
        raw_plain("plain HTTP on the TLS port", "POST /socketlabs/events HTTP/1.1\r\nHost: x\r\n\r\n", 44);
        for (i = 0; i < 100; i++) {
                unsigned char junk[512];
                size_t len = 1 + rnd() % sizeof(junk), k;

                for (k = 0; k < len; k++)
                        junk[k] = (unsigned char) rnd();
                if (i % 2)
                        junk[0] = 0x16; /* a TLS handshake record, then garbage */
                raw_plain("random bytes", junk, len);
        }
}

static void
phase(const char *name, void (*fn)(void))
{
        unsigned before = sent;
        int64_t t0 = time_mono_us();

        fn();
        printf("check_barrage: %s: %u requests in %lld ms\n", name, sent - before,
               (long long) (time_mono_us() - t0) / 1000);
}

static void
barrage(void)
{
        char *server = xasprintf("max_body = %u\ntimeout = 1\n", MAX_BODY);
        const char *seed = getenv("BARRAGE_SEED");
        unsigned i;

        signal(SIGPIPE, SIG_IGN);
        rng = seed ? strtoull(seed, NULL, 10) : (uint64_t) time_mono_us();
        rng |= 1;
        printf("check_barrage: BARRAGE_SEED=%llu\n", (unsigned long long) rng);
        daemon_start(server, "");
        free(server);
        h = client();

        phase("random bodies", random_bodies);
        phase("truncated events", truncated);
        phase("deep nesting", deep);
        phase("big strings", big_strings);
        phase("NUL bytes", nul_bytes);
        phase("wrong types", wrong_types);
        phase("duplicate keys", case_duplicates);
        curl_easy_cleanup(h);
        h = client();
        phase("bad HTTP", bad_http);

        still_running();
        json_case("a valid event afterwards", "{\"Type\":\"Sent\"," SEC ",\"MessageId\":\"after-barrage\"}", 200);
        ck_assert_int_eq(db_value("SELECT count(*) FROM events WHERE message_id = 'after-barrage'"), 1);
        curl_easy_cleanup(h);
        printf("check_barrage: %s: %u requests sent; answers:", pg_dsn ? "PostgreSQL" : "SQLite", sent);
        for (i = 0; i < ARRAY_SIZE(by_status); i++)
                if (by_status[i])
                        printf(" %u×%u", by_status[i], i);
        printf("; %u closed without an answer\n", closed);
        ck_assert_int_eq(daemon_stop(), 0);
}

START_TEST(test_barrage)
{
        char *integrity;

        barrage();
        integrity = t_rows(d.db, "PRAGMA integrity_check");
        ck_assert_str_eq(integrity, "ok\n");
        free(integrity);
}
END_TEST

/* The same on PostgreSQL (skipped without a cluster): not one 503. */
START_TEST(test_barrage_pg)
{
#ifdef HAVE_POSTGRESQL
        const char *cluster = getenv("SLHOOKD_TEST_PG");
        char *store;

        if (cluster == NULL || cluster[0] == '\0') {
                printf("check_barrage: PostgreSQL: skipped, no cluster (run the tests under tests/pgtmp)\n");
                return;
        }
        free(pg_test_db(cluster, &pg_dsn, &store));
        d.store = store;
        barrage();
        ck_assert_msg(by_status[503] == 0, "%u answers 503 with the database up", by_status[503]);
        free(store);
        free(pg_dsn);
        pg_dsn = NULL;
#else
        printf("check_barrage: PostgreSQL: skipped, built without it\n");
#endif
}
END_TEST

int
main(void)
{
        Suite *s = suite_create("barrage");
        TCase *tc = tcase_create("barrage");

        tcase_add_unchecked_fixture(tc, make_certs, drop_certs);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, test_barrage);
        tcase_add_test(tc, test_barrage_pg);
        return t_run(s, tc);
}
