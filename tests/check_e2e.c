/* End to end: the real slhookd on 127.0.0.1 (a socket this test binds and
 * passes as a systemd socket-activation fd), real TLS with a certificate made
 * by certtool, libcurl clients, and the SQLite file checked directly. */
#include "config.h"

#include <sched.h>
#include <stdatomic.h>
#include <sys/mount.h>
#include <sys/time.h>

#include "daemon.h"

START_TEST(test_stored_after_commit)
{
        struct resp r;

        daemon_start("", "");
        r = post_file("delivered.json");
        ASSERT_STATUS(r, 200);
        ck_assert_uint_eq(r.body.len, 0);
        /* 200 means it is in the file now, as one row with every column. */
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE type = 'Sent' AND wire_type = 'Delivered' "
                           "AND endpoint = 'main' AND occurred_at = '2025-03-04T08:15:41.773000Z' "
                           "AND server_id = 40111 AND subaccount_id = 40111 AND ip_pool_id = 7 "
                           "AND message_id = 'o5521-r1' AND mailing_id = 'ORDERSHIP' "
                           "AND address = 'alice@example.net' AND local_ip = '142.0.181.23' "
                           "AND remote_mta = 'mx1.example.net' AND is_test = 0 AND peer = '127.0.0.1' "
                           "AND date_time = '2025-03-04T08:15:41.7730009Z' "
                           "AND meta = '[{\"Key\":\"CustomerId\",\"Value\":\"8812\"}]' "
                           "AND received_at LIKE '____-__-__T__:__:__.______Z' "
                           "AND digest = '00062f7fe0f510c889dba062c3073d00e5a08673a9c400f8a1f6f9048956800fb92d170165cbc347' "
                           "AND message = (SELECT id FROM messages WHERE message_id = 'o5521-r1') "
                           "AND raw NOT LIKE '%SecretKey%'"), 1);
        resp_done(&r);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

START_TEST(test_every_type)
{
        static const char *const files[] = {
                "queued.json", "deferred.json", "delivered.json", "failed.json", "complaint.json",
                "click.json", "open.json",
        };
        size_t i;

        daemon_start("", "");
        for (i = 0; i < ARRAY_SIZE(files); i++)
                expect_file(files[i], 200);
        ck_assert_int_eq(q("SELECT count(DISTINCT type) FROM events WHERE type IN "
                           "('Queued','Deferred','Sent','Failed','Complaint','Click','Open')"), 7);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE type = 'Failed' AND failure_type = 'Permanent' "
                           "AND failure_code = 2001"), 1);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE type = 'Complaint' AND fbl_type = 'abuse' "
                           "AND fbl_from = 'news@shop.example.com' AND length = 3120"), 1);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE type = 'Click' AND tracking_type = 'Click' "
                           "AND url = 'https://shop.example.com/track/5521'"), 1);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

START_TEST(test_redelivery_stored_once)
{
        int i;

        daemon_start("", "");
        for (i = 0; i < 3; i++)
                expect_file("failed.json", 200);
        ck_assert_int_eq(q("SELECT count(*) FROM events"), 1);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

START_TEST(test_secret)
{
        struct resp r;

        daemon_start("", "");
        r = post("{\"Type\":\"Queued\",\"SecretKey\":\"wrong\",\"MessageId\":\"x\"}");
        ASSERT_STATUS(r, 401);
        ck_assert(t_contains(r.body.data, r.body.len, "SecretKey"));
        resp_done(&r);
        expect("{\"Type\":\"Queued\",\"MessageId\":\"x\"}", 401);
        expect("{\"Type\":\"Queued\",\"SecretKey\":\"" T_SECRET "x\",\"MessageId\":\"x\"}", 401);
        /* 401 for an unauthenticated body even when it is not an event. */
        expect("{\"SecretKey\":\"wrong\"}", 401);
        ck_assert_int_eq(q("SELECT count(*) FROM events") + q("SELECT count(*) FROM quarantine"), 0);
        /* Every secret of the file is accepted (rotation). */
        expect("{\"Type\":\"Queued\",\"SecretKey\":\"rotated-previous-secret\",\"MessageId\":\"x\"}", 200);
        ck_assert_int_eq(q("SELECT count(*) FROM events"), 1);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

START_TEST(test_validation)
{
        struct resp r;

        daemon_start("", "");
        r = post_file("validation.json");
        ASSERT_STATUS(r, 200);
        ck_assert_str_eq(r.body.data, T_SECRET);
        ck_assert(t_contains(r.headers.data, r.headers.len, "Content-Type: text/plain"));
        resp_done(&r);
        ck_assert_int_eq(q("SELECT count(*) FROM events"), 0);
        ck_assert_int_eq(q("SELECT count(*) FROM webhook_status WHERE endpoint = 'main' "
                           "AND last_validation_at IS NOT NULL"), 1);
        r = post("{\"Type\":\"Validation\",\"SecretKey\":\"guessed-key-42\"}");
        ASSERT_STATUS(r, 401);
        ck_assert(!t_contains(r.body.data, r.body.len, "guessed-key-42"));     /* no echo */
        resp_done(&r);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

START_TEST(test_validation_key)
{
        struct resp r;

        daemon_start("", "validation_key = legacy-validation-key");
        r = post_file("validation.json");
        ASSERT_STATUS(r, 200);
        ck_assert_str_eq(r.body.data, "legacy-validation-key");
        resp_done(&r);
        r = post_file("queued.json");
        ASSERT_STATUS(r, 200);
        ck_assert_str_eq(r.body.data, "legacy-validation-key");
        resp_done(&r);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

START_TEST(test_routes)
{
        CURL *h;
        struct resp r;

        daemon_start("", "");
        h = client();
        r = request(h, "POST", "/other", "{}", 2, "application/json");
        ASSERT_STATUS(r, 404);
        resp_done(&r);
        r = request(h, "GET", "/socketlabs/events", NULL, 0, NULL);
        ASSERT_STATUS(r, 405);
        ck_assert(t_contains(r.headers.data, r.headers.len, "Allow: POST"));
        resp_done(&r);
        r = request(h, "PUT", "/socketlabs/events", "{}", 2, "application/json");
        ASSERT_STATUS(r, 405);
        resp_done(&r);
        r = request(h, "GET", "/", NULL, 0, NULL);
        ASSERT_STATUS(r, 404);
        resp_done(&r);
        curl_easy_cleanup(h);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

struct upload {
        const char *prefix;     /* sent first, then spaces */
        size_t left, sent;
};

static size_t
on_read(char *p, size_t size, size_t n, void *userdata)
{
        struct upload *u = userdata;
        size_t k = size * n < u->left ? size * n : u->left, i;

        for (i = 0; i < k; i++)
                p[i] = u->sent + i < strlen(u->prefix) ? u->prefix[u->sent + i] : ' ';
        u->left -= k;
        u->sent += k;
        return k;
}

/* POST size bytes of spaces through a read callback, with extra headers
 * (declared: Content-Length is set); the status, and *sent the body bytes
 * the client got to send. */
static long
upload(const char *header1, const char *header2, bool declared, size_t size, size_t *sent)
{
        struct upload u = { "{\"Type\":\"Queued\",\"SecretKey\":\"" T_SECRET "\",\"MessageId\":\"big\"}", size, 0 };
        struct curl_slist *hdrs = NULL;
        struct buf body = { 0 };
        CURL *h = client();
        char *url = xasprintf("https://127.0.0.1:%u/socketlabs/events", d.port);
        long status = 0;

        hdrs = curl_slist_append(hdrs, header1);
        hdrs = curl_slist_append(hdrs, header2);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &u);
        if (declared)
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) size);
        curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 10000L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
        curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(h);
        curl_slist_free_all(hdrs);
        free(url);
        buf_done(&body);
        *sent = u.sent;
        return status;
}

START_TEST(test_body_limit)
{
        size_t sent;

        daemon_start("max_body = 1024", "");
        /* Declared too large: 413 at once, the body is never read. */
        ck_assert_int_eq(upload("Content-Type: application/json", "Expect: 100-continue", true, 200000, &sent), 413);
        ck_assert_msg(sent == 0, "the client sent %zu body bytes before the 413", sent);
        /* A valid event padded past the limit in a chunked body: read to
         * its end and dropped, 413, nothing stored; more than 1 MiB past
         * the limit: the connection is closed, no answer. */
        ck_assert_int_eq(upload("Content-Type: application/json", "Transfer-Encoding: chunked", false, 200000, &sent),
                         413);
        ck_assert_int_lt(upload("Content-Type: application/json", "Transfer-Encoding: chunked", false, 2000000, &sent),
                         200);  /* 0, or 100 when "100 Continue" came before the close */
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id = 'big'"), 0);
        /* Within the limit is fine. */
        expect_file("queued.json", 200);
        ck_assert_int_eq(q("SELECT count(*) FROM events"), 1);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

START_TEST(test_bad_bodies)
{
        struct resp r;
        CURL *h;
        char *form;

        daemon_start("", "");
        expect("{\"Type\":\"Queued\",", 400);
        expect("not json at all", 400);
        expect("[]", 400);
        ck_assert_int_eq(q("SELECT count(*) FROM events") + q("SELECT count(*) FROM quarantine"), 0);

        /* A legacy form post is an event too. */
        form = t_data("legacy-form.txt");
        h = client();
        r = request(h, "POST", "/socketlabs/events", form, strlen(form), "application/x-www-form-urlencoded");
        ASSERT_STATUS(r, 200);
        resp_done(&r);
        curl_easy_cleanup(h);
        free(form);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE type = 'Sent' AND address = 'dave@example.com' "
                           "AND occurred_at = '2018-08-14T16:35:37.000000Z' AND server_id = 99999"), 1);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

START_TEST(test_quarantine)
{

        daemon_start("", "");
        expect("{\"SecretKey\":\"" T_SECRET "\",\"ServerId\":40111,\"Address\":\"x@example.com\"}", 200);
        expect("{\"Type\":\"Queued\",\"SecretKey\":\"" T_SECRET "\",\"ServerId\":{\"nested\":1}}", 200);
        ck_assert_int_eq(q("SELECT count(*) FROM events"), 0);
        ck_assert_int_eq(q("SELECT count(*) FROM quarantine WHERE endpoint = 'main' AND peer = '127.0.0.1' "
                           "AND raw NOT LIKE '%" T_SECRET "%'"), 2);
        ck_assert_int_eq(q("SELECT count(*) FROM quarantine WHERE reason = 'field ''Type'' is missing'"), 1);
        ck_assert_int_eq(q("SELECT count(*) FROM quarantine WHERE reason = 'field ''ServerId'' is not an integer'"), 1);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

START_TEST(test_array_and_wrapper)
{

        daemon_start("", "");
        expect("[{\"Type\":\"Queued\",\"SecretKey\":\"" T_SECRET "\",\"MessageId\":\"a1\"},"
                 "{\"Type\":\"Delivered\",\"SecretKey\":\"" T_SECRET "\",\"MessageId\":\"a1\"}]", 200);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id = 'a1'"), 2);
        /* One element without the secret: nothing of the body is stored. */
        expect("[{\"Type\":\"Queued\",\"SecretKey\":\"" T_SECRET "\",\"MessageId\":\"b1\"},"
                 "{\"Type\":\"Delivered\",\"SecretKey\":\"nope\",\"MessageId\":\"b1\"}]", 401);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id = 'b1'"), 0);
        /* {"data": {...}} is unwrapped; SampleMessageId marks a test event. */
        expect_file("sample-test.json", 200);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id = 'SampleMessageId' "
                           "AND type = 'Sent' AND is_test = 1 AND raw NOT LIKE '%\"data\"%'"), 1);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

START_TEST(test_invalid_utf8_kept)
{

        daemon_start("", "");
        expect("{\"Type\":\"Delivered\",\"SecretKey\":\"" T_SECRET "\",\"MessageId\":\"u1\","
                 "\"Address\":\"bad\xff\xfe" "byte@example.com\"}", 200);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id = 'u1' "
                           "AND address = 'bad' || char(65533) || char(65533) || 'byte@example.com'"), 1);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

START_TEST(test_storage_failure)
{
        struct resp r;

        daemon_start("", "");
        exec_rw("CREATE TRIGGER fail BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'simulated I/O error'); END");
        r = post_file("queued.json");
        ASSERT_STATUS(r, 503);
        ck_assert(t_contains(r.headers.data, r.headers.len, "Retry-After: "));
        resp_done(&r);
        still_running();
        exec_rw("DROP TRIGGER fail");
        expect_file("queued.json", 200);
        ck_assert_int_eq(q("SELECT count(*) FROM events"), 1);
        ck_assert(log_has("\"message_id\":\"d93dee04687d4954b522f1cea2ebd46b\""));
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

START_TEST(test_allow_list)
{
        struct resp r;

        daemon_start("allow = 10.0.0.0/8 ::1/128", "");
        r = post_file("queued.json");
        ck_assert_msg(r.status == 0 && r.rc != CURLE_OK, "a refused peer got HTTP %ld", r.status);
        resp_done(&r);
        ck_assert(log_has("\"message_id\":\"43a4ee6eef0c4e7f84c3eb6fab80b9d7\""));
        ck_assert(log_has("\"slhookd_peer\":\"127.0.0.1\""));
        ck_assert_int_eq(q("SELECT count(*) FROM events"), 0);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

START_TEST(test_tls_versions)
{
        CURL *h;
        struct resp r;

        daemon_start("", "");
        h = client();
        curl_easy_setopt(h, CURLOPT_SSLVERSION, (long) (CURL_SSLVERSION_TLSv1_0 | CURL_SSLVERSION_MAX_TLSv1_1));
        r = request(h, "POST", "/socketlabs/events", "{}", 2, "application/json");
        ck_assert_msg(r.status == 0 && r.rc != CURLE_OK, "TLS 1.1 was accepted");
        resp_done(&r);
        curl_easy_cleanup(h);
        h = client();
        curl_easy_setopt(h, CURLOPT_SSLVERSION, (long) (CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2));
        r = request(h, "POST", "/socketlabs/events", "{}", 2, "application/json");
        ASSERT_STATUS(r, 401);
        resp_done(&r);
        curl_easy_cleanup(h);
        h = client();
        curl_easy_setopt(h, CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_3);
        r = request(h, "POST", "/socketlabs/events", "{}", 2, "application/json");
        ASSERT_STATUS(r, 401);
        resp_done(&r);
        curl_easy_cleanup(h);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

/* Whether gnutls-cli with this priority string completes a handshake with
 * the daemon; the negotiated "- Description:" line in desc. */
static bool
handshake(const char *priority, char desc[256])
{
        char *cmd = xasprintf("timeout 20 gnutls-cli --x509cafile=%s --priority='%s' -p %u 127.0.0.1 </dev/null 2>&1",
                              d.cert, priority, d.port);
        FILE *f = popen(cmd, "r");
        char line[512];
        bool done = false;

        ck_assert_ptr_nonnull(f);
        desc[0] = '\0';
        while (fgets(line, sizeof(line), f) != NULL) {
                done |= strstr(line, "Handshake was completed") != NULL;
                if (strncmp(line, "- Description: ", 15) == 0)
                        snprintf(desc, 256, "%.200s", line + 15);
        }
        pclose(f);
        free(cmd);
        return done;
}

/* Whether gnutls-cli can offer anything with this priority string. */
static bool
client_offers(const char *priority)
{
        char *cmd = xasprintf("gnutls-cli --priority='%s' --list 2>/dev/null | grep -q '^TLS_'", priority);
        bool yes = system(cmd) == 0;

        free(cmd);
        return yes;
}

/* Only TLS 1.2 and 1.3 with AEAD ciphers: a client that offers nothing
 * else gets no handshake, whatever it offers (TLS 1.0/1.1, NULL, RC4,
 * 3DES, CBC with SHA-1 or SHA-256); a client offering everything gets
 * TLS 1.3. */
START_TEST(test_tls_suites)
{
        static const char *const refused[] = {
                "NORMAL:-VERS-ALL:+VERS-TLS1.0",
                "NORMAL:-VERS-ALL:+VERS-TLS1.1",
                "NORMAL:-VERS-ALL:+VERS-SSL3.0",
                "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+NULL:-MAC-ALL:+SHA1:+SHA256",
                "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+ARCFOUR-128:-MAC-ALL:+SHA1:+MD5",
                "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+3DES-CBC:-MAC-ALL:+SHA1",
                "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-CBC:+AES-256-CBC:-MAC-ALL:+SHA1",
                "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-CBC:+AES-256-CBC:-MAC-ALL:+SHA256:+SHA384",
        };
        static const char *const accepted[][2] = {
                { "NORMAL:-VERS-ALL:+VERS-TLS1.3", "(TLS1.3" },
                { "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM", "(TLS1.2-X.509)-(ECDHE" },
                { "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+CHACHA20-POLY1305", "(CHACHA20-POLY1305)" },
                { "NORMAL:+VERS-TLS1.0:+VERS-TLS1.1:+3DES-CBC:+ARCFOUR-128:+SHA1", "(TLS1.3" },
        };
        char desc[256];
        unsigned tried = 0;
        size_t i;

        daemon_start("", "");
        for (i = 0; i < ARRAY_SIZE(refused); i++) {
                if (!client_offers(refused[i])) {
                        printf("check_e2e: gnutls-cli cannot offer %s; not tried\n", refused[i]);
                        continue;
                }
                tried++;
                ck_assert_msg(!handshake(refused[i], desc), "%s was accepted: %s", refused[i], desc);
        }
        ck_assert_uint_ge(tried, ARRAY_SIZE(refused) - 1);
        for (i = 0; i < ARRAY_SIZE(accepted); i++) {
                ck_assert_msg(handshake(accepted[i][0], desc), "%s was refused", accepted[i][0]);
                ck_assert_msg(strstr(desc, accepted[i][1]) != NULL, "%s gave %s", accepted[i][0], desc);
        }
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

/* Forward secrecy only: with an RSA certificate that could do it, a
 * client that offers only the static RSA key exchange gets no handshake;
 * one that offers ECDHE with the same certificate does. */
START_TEST(test_tls_forward_secrecy)
{
        static const char rsa_kx[] = "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA";
        char desc[256], *rsa;

        daemon_listen();
        rsa = file_in("rsa");
        ck_assert_int_eq(mkdir(rsa, 0700), 0);
        t_make_cert_type(rsa, 30, "rsa");
        d.tls_dir = rsa;
        free(d.cert);
        d.cert = xasprintf("%s/cert.pem", rsa);
        ck_assert_msg(client_offers(rsa_kx), "gnutls-cli cannot offer %s", rsa_kx);
        daemon_start("", "");
        ck_assert_msg(!handshake(rsa_kx, desc), "static RSA key exchange was accepted: %s", desc);
        ck_assert_msg(handshake("NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+ECDHE-RSA", desc), "ECDHE-RSA was refused");
        ck_assert_msg(strstr(desc, "(ECDHE") != NULL && strstr(desc, "(RSA") != NULL, "ECDHE-RSA gave %s", desc);
        ck_assert_msg(handshake("NORMAL:-VERS-ALL:+VERS-TLS1.3", desc), "TLS 1.3 was refused");
        ck_assert_int_eq(daemon_stop(), 0);
        d.tls_dir = NULL;
        free(rsa);
}
END_TEST

/* Whether gnutls-cli, at TLS version vers, resumed its second connection
 * with the ticket the daemon gave on the first. */
static bool
resumed(const char *vers)
{
        char *cmd = xasprintf("timeout 20 gnutls-cli --x509cafile=%s --priority=NORMAL:-VERS-ALL:+VERS-%s "
                              "--resume --waitresumption -p %u 127.0.0.1 </dev/null 2>&1", d.cert, vers, d.port);
        FILE *f = popen(cmd, "r");
        char line[512];
        bool yes = false, full = false;

        ck_assert_ptr_nonnull(f);
        while (fgets(line, sizeof(line), f) != NULL) {
                yes |= strstr(line, "This is a resumed session") != NULL;
                full |= strstr(line, "Resume Handshake was completed") != NULL;
        }
        ck_assert_int_eq(pclose(f), 0);
        free(cmd);
        return yes && full;
}

/* A returning sender skips the full handshake: session tickets, TLS 1.3
 * and 1.2. */
START_TEST(test_tls_resumption)
{
        daemon_start("", "");
        ck_assert_msg(resumed("TLS1.3"), "no TLS 1.3 resumption");
        ck_assert_msg(resumed("TLS1.2"), "no TLS 1.2 resumption");
        expect_file("delivered.json", 200);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

#define CLIENTS 8
#define PER_CLIENT 250

struct worker {
        int id;
        int ok;
        long connects;
};

static void *
worker_main(void *arg)
{
        struct worker *w = arg;
        CURL *h = client();
        int i;

        for (i = 0; i < PER_CLIENT; i++) {
                char *body = xasprintf("{\"Type\":\"Delivered\",\"SecretKey\":\"" T_SECRET "\","
                                       "\"DateTime\":\"2026-01-01T00:00:00Z\",\"ServerId\":1,"
                                       "\"MessageId\":\"c%d-%d\",\"Address\":\"r%d@example.com\"}", w->id, i, i);
                struct resp r = request(h, "POST", "/socketlabs/events", body, strlen(body), "application/json");

                w->ok += r.status == 200;
                w->connects += r.connects;
                resp_done(&r);
                free(body);
        }
        curl_easy_cleanup(h);
        return NULL;
}

START_TEST(test_concurrent_clients)
{
        pthread_t t[CLIENTS];
        struct worker w[CLIENTS];
        int i, ok = 0;
        long connects = 0;

        daemon_start("", "");
        for (i = 0; i < CLIENTS; i++) {
                w[i] = (struct worker) { .id = i };
                ck_assert_int_eq(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
        }
        for (i = 0; i < CLIENTS; i++) {
                pthread_join(t[i], NULL);
                ok += w[i].ok;
                connects += w[i].connects;
        }
        ck_assert_int_eq(ok, CLIENTS * PER_CLIENT);
        ck_assert_int_eq(connects, CLIENTS);            /* keep-alive: one connection each */
        ck_assert_int_eq(q("SELECT count(*) FROM events"), CLIENTS * PER_CLIENT);
        ck_assert_int_eq(q("SELECT count(DISTINCT message_id) FROM events"), CLIENTS * PER_CLIENT);
        ck_assert_int_eq(daemon_stop(), 0);
        ck_assert_int_eq(q("SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"), 1);
}
END_TEST

START_TEST(test_logs_and_secrets)
{
        static const char *const files[] = { "slhookd.log", "events.db", "events.db-wal" };
        struct resp r;
        size_t i, n;

        daemon_start("", "");
        expect_file("failed.json", 200);
        r = post("{\"SecretKey\":\"" T_SECRET "\"}");     /* quarantined */
        ASSERT_STATUS(r, 200);
        resp_done(&r);
        expect("{\"Type\":\"Queued\",\"SecretKey\":\"guess-" T_SECRET "\"}", 401);
        /* One JSON line per request with the contract's fields. */
        ck_assert(log_has("\"message_id\":\"df4d770242be491089390db52c6629f7\""));
        ck_assert(log_has("\"slhookd_endpoint\":\"main\",\"slhookd_type\":\"Failed\","
                          "\"slhookd_message_id\":\"o5522-r1\",\"slhookd_peer\":\"127.0.0.1\","
                          "\"slhookd_status\":200,\"slhookd_latency_us\":"));
        ck_assert(log_has("\"slhookd_status\":401"));
        ck_assert(!log_has("bob@example.org"));         /* addresses only at debug level */
        /* Every refusal names the path and why (the sender is told less for
         * a secret: "missing or wrong"); never the query string. */
        expect("{\"Type\":\"Queued\"}", 401);
        expect("xyz", 400);
        {
                CURL *h = client();
                struct resp g = request(h, "GET", "/nope?token=abc", NULL, 0, NULL);

                ASSERT_STATUS(g, 404);
                resp_done(&g);
                g = request(h, "GET", "/socketlabs/events", NULL, 0, NULL);
                ASSERT_STATUS(g, 405);
                resp_done(&g);
                curl_easy_cleanup(h);
        }
        ck_assert(log_has("\"message\":\"/socketlabs/events 401: SecretKey wrong\""));
        ck_assert(log_has("\"slhookd_path\":\"/socketlabs/events\",\"slhookd_reason\":\"SecretKey wrong\""));
        ck_assert(log_has("\"slhookd_reason\":\"SecretKey missing\""));
        ck_assert(log_has("\"slhookd_status\":400,\"slhookd_latency_us\":"));
        ck_assert(log_has("\"slhookd_reason\":\"body is not valid JSON (error at byte 1)\""));
        ck_assert(log_has("\"message\":\"/nope 404: no endpoint at this path\""));
        ck_assert(log_has("\"slhookd_path\":\"/nope\",\"slhookd_reason\":\"no endpoint at this path\""));
        ck_assert(log_has("\"slhookd_reason\":\"only POST is allowed\""));
        ck_assert(!log_has("token=abc"));
        /* The secret reaches no file: not the log, the database or its WAL. */
        for (i = 0; i < ARRAY_SIZE(files); i++) {
                char *p = file_in(files[i]), *s = t_slurp(p, &n);

                ck_assert_msg(s != NULL, "%s missing", files[i]);
                ck_assert_msg(!t_contains(s, n, T_SECRET), "the secret is in %s", files[i]);
                free(s);
                free(p);
        }
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

START_TEST(test_sigterm_drains)
{
        pthread_t t[2];
        struct worker w[2] = { { .id = 100 }, { .id = 101 } };
        int i, status;

        daemon_start("", "");
        for (i = 0; i < 2; i++)
                ck_assert_int_eq(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
        usleep(200000);
        kill(d.pid, SIGTERM);
        for (i = 0; i < 2; i++)
                pthread_join(t[i], NULL);
        status = daemon_reap();
        ck_assert_msg(status == 0, "slhookd ended with status %d after SIGTERM under load (its log: above)", status);
        /* Every 200 is in the database (and maybe a few more that were
         * committed while their connection was closing). */
        ck_assert_int_ge(q("SELECT count(*) FROM events"), w[0].ok + w[1].ok);
        ck_assert_int_gt(w[0].ok + w[1].ok, 0);
        ck_assert_int_eq(q("SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"), 1);
        ck_assert(log_has("\"message_id\":\"3d93ca77652b46639c3500d07f386feb\""));
}
END_TEST

/* ---- systemd ---- */

static void *
post_one(void *arg)
{
        struct resp r = post_file("queued.json");

        *(long *) arg = r.status;
        resp_done(&r);
        return NULL;
}

/* The watchdog is fed while the writer works, and not while it is wedged
 * (another connection holds the database's write lock), then again. */
START_TEST(test_watchdog)
{
        int nfd = notify_socket(), pings = 0;
        sqlite3 *lock;
        pthread_t t;
        long status = 0;

        setenv("WATCHDOG_USEC", "400000", 1);
        daemon_start("", "");
        ck_assert(await_notification(nfd, "READY=1", NULL));
        ck_assert_msg(await_notification(nfd, "WATCHDOG=1", NULL), "no watchdog ping");
        expect_file("delivered.json", 200);
        ck_assert(await_notification(nfd, "WATCHDOG=1", NULL));

        ck_assert_int_eq(sqlite3_open(d.db, &lock), SQLITE_OK);
        ck_assert_int_eq(sqlite3_exec(lock, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
        ck_assert_int_eq(pthread_create(&t, NULL, post_one, &status), 0);
        ck_assert_msg(await_notification(nfd, "STATUS=stalled: the writer", NULL), "no stall reported");
        /* Wedged: half a second more (several ticks), not one ping. */
        usleep(500 * 1000);
        ck_assert(!notified(nfd, "WATCHDOG=1"));
        ck_assert_int_eq(sqlite3_exec(lock, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(lock);
        pthread_join(t, NULL);
        ck_assert_int_eq(status, 200);
        ck_assert(await_notification(nfd, "WATCHDOG=1", &pings));
        ck_assert(await_notification(nfd, "STATUS=2 events stored, 0 refused", NULL));
        ck_assert(log_has("the writer has made no progress"));
        ck_assert_int_eq(daemon_stop(), 0);
        close(nfd);
}
END_TEST

struct poster {
        const char *ca;
        atomic_bool stop;
        int ok, failed;
};

/* One keep-alive client posting distinct events until told to stop. */
static void *
poster_main(void *arg)
{
        struct poster *p = arg;
        CURL *h = client();
        char body[256];
        int i;

        curl_easy_setopt(h, CURLOPT_CAINFO, p->ca);
        for (i = 0; !atomic_load(&p->stop) && i < 100000; i++) {
                struct resp r;

                snprintf(body, sizeof(body), "{\"Type\":\"Queued\",\"MessageId\":\"hup-%d\","
                         "\"Address\":\"h@example.com\",\"SecretKey\":\"%s\"}", i, T_SECRET);
                r = request(h, "POST", "/socketlabs/events", body, strlen(body), "application/json");
                if (r.status == 200)
                        p->ok++;
                else
                        p->failed++;
                resp_done(&r);
        }
        curl_easy_cleanup(h);
        return NULL;
}

/* Whether a new connection trusting only ca gets 200 for a post with secret. */
static bool
served_with(const char *ca, const char *secret)
{
        static int probes;
        CURL *h = client();
        char *body = xasprintf("{\"Type\":\"Queued\",\"MessageId\":\"probe-%d\",\"SecretKey\":\"%s\"}",
                               ++probes, secret);
        struct resp r;
        bool ok;

        curl_easy_setopt(h, CURLOPT_CAINFO, ca);
        r = request(h, "POST", "/socketlabs/events", body, strlen(body), "application/json");
        ok = r.status == 200;
        resp_done(&r);
        curl_easy_cleanup(h);
        free(body);
        return ok;
}

static void
copy_file(const char *from, const char *to)
{
        size_t n;
        char *data = t_slurp(from, &n);

        ck_assert_ptr_nonnull(data);
        t_write(to, data);
        free(data);
}

/* SIGHUP with a new certificate and a new secret while a keep-alive client
 * goes on posting: no request fails, new connections get the new
 * certificate, the new secret works; a broken certificate is refused and
 * the running one stays. */
START_TEST(test_reload)
{
        struct poster p = { 0 };
        pthread_t t;
        char *newdir, *bundle, *cert, *key, *newcert, *old, *secret, *tmp;
        int i, before, nfd;

        daemon_listen();
        nfd = notify_socket();
        d.tls_dir = d.dir;
        cert = file_in("cert.pem");
        key = file_in("key.pem");
        old = xasprintf("%s/cert.pem", certdir);
        copy_file(old, cert);
        tmp = xasprintf("%s/key.pem", certdir);
        copy_file(tmp, key);
        free(tmp);
        newdir = file_in("new");
        ck_assert_int_eq(mkdir(newdir, 0700), 0);
        t_make_cert(newdir, 30);
        newcert = xasprintf("%s/cert.pem", newdir);
        /* The client trusts both, as a sender would across a renewal. */
        bundle = file_in("bundle.pem");
        {
                char *a = t_slurp(old, NULL), *b = t_slurp(newcert, NULL), *both = xasprintf("%s%s", a, b);

                t_write(bundle, both);
                free(a);
                free(b);
                free(both);
        }
        daemon_start("", "");
        p.ca = bundle;
        ck_assert_int_eq(pthread_create(&t, NULL, poster_main, &p), 0);
        for (i = 0; i < 500 && p.ok < 20; i++)
                usleep(10 * 1000);

        copy_file(newcert, cert);
        tmp = xasprintf("%s/key.pem", newdir);
        copy_file(tmp, key);
        free(tmp);
        secret = file_in("secret");
        t_write(secret, T_SECRET "\nbrand-new-secret\n");
        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
        wait_log("\"message\":\"reloaded ", 10);
        ck_assert(await_notification(nfd, "RELOADING=1", NULL));
        ck_assert(await_notification(nfd, "READY=1", NULL));
        ck_assert(served_with(newcert, "brand-new-secret"));
        ck_assert(!served_with(old, T_SECRET));         /* the old certificate is gone */
        before = p.ok;
        for (i = 0; i < 500 && p.ok < before + 20; i++)
                usleep(10 * 1000);

        /* A broken certificate: refused, the running one stays. */
        t_write(cert, "not a certificate\n");
        ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
        wait_log("reload refused", 10);
        ck_assert(await_notification(nfd, "STATUS=reload refused", NULL));
        ck_assert(served_with(newcert, T_SECRET));
        before = p.ok;
        for (i = 0; i < 500 && p.ok < before + 20; i++)
                usleep(10 * 1000);

        atomic_store(&p.stop, true);
        pthread_join(t, NULL);
        ck_assert_msg(p.failed == 0, "%d of %d requests failed", p.failed, p.ok + p.failed);
        ck_assert_int_gt(p.ok, 60);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id LIKE 'hup-%'"), p.ok);
        ck_assert_int_eq(daemon_stop(), 0);
        ck_assert(await_notification(nfd, "STOPPING=1", NULL));
        close(nfd);
        free(secret);
        free(bundle);
        free(newcert);
        free(newdir);
        free(old);
        free(key);
        free(cert);
}
END_TEST

/* Socket activation by systemd-socket-activate: slhookd is started by the
 * first connection, serves it on the passed socket and ignores listen. */
START_TEST(test_systemd_socket_activate)
{
        char addr[64];
        struct resp r;
        int i, status;

        daemon_listen();
        close(d.fd);            /* systemd-socket-activate binds a port of its own */
        d.port = free_port();
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", d.port);
        write_conf("", "");
        d.pid = fork();
        ck_assert_int_ge(d.pid, 0);
        if (d.pid == 0) {
                int out = open(d.log, O_WRONLY | O_CREAT | O_APPEND, 0600);

                prctl(PR_SET_PDEATHSIG, SIGKILL);
                dup2(out, 1);
                dup2(out, 2);
                unsetenv("LISTEN_FDS");
                execlp("systemd-socket-activate", "systemd-socket-activate", "-l", addr,
                       SLHOOKD_BIN, "-c", d.conf, (char *) NULL);
                _exit(127);
        }
        /* Bounded wait for it to listen; the first post starts slhookd. */
        for (i = 0; i < 500; i++) {
                r = post_file("queued.json");
                if (r.status == 200)
                        break;
                resp_done(&r);
                usleep(10 * 1000);
        }
        ASSERT_STATUS(r, 200);
        resp_done(&r);
        /* The listener may answer before the main thread has logged "ready"
         * (distcheck in CI). */
        wait_log("ready: https://(socket):", 5);
        ck_assert_int_eq(q("SELECT count(*) FROM events"), 1);
        expect_file("delivered.json", 200);
        status = daemon_stop();         /* prints the log's end when not 0 */
        ck_assert_int_eq(status, 0);
}
END_TEST

/* POST body with one extra header line, e.g. "X-Forwarded-For: …". */
static struct resp
post_with(const char *header, const char *body)
{
        struct resp r;

        d.header = header;
        r = post(body);
        d.header = NULL;
        return r;
}

/* A connection's memory is bounded (16 KiB): 10 KB of headers still work,
 * 40 KB get 431 and store nothing. */
START_TEST(test_header_limit)
{
        char *big = xmalloc(40 * 1000 + 16);
        struct resp r;
        int i;

        daemon_start("", "");
        memcpy(big, "X-Pad: ", 7);
        memset(big + 7, 'a', 10 * 1000);
        big[7 + 10 * 1000] = '\0';
        r = post_with(big, "{\"Type\":\"Queued\",\"MessageId\":\"pad-10k\",\"SecretKey\":\"" T_SECRET "\"}");
        ASSERT_STATUS(r, 200);
        resp_done(&r);
        memset(big + 7, 'a', 40 * 1000);
        big[7 + 40 * 1000] = '\0';
        /* The daemon answers 431 and closes while curl may still be sending
         * the rest of the headers: curl then fails its send (CURLE_SEND_ERROR)
         * without reading the answer. That is the client's race, so a send
         * error is tried again, a bounded number of times. */
        for (i = 0; i < 20; i++) {
                r = post_with(big, "{\"Type\":\"Queued\",\"MessageId\":\"pad-40k\",\"SecretKey\":\"" T_SECRET "\"}");
                if (r.rc != CURLE_SEND_ERROR)
                        break;
                resp_done(&r);
        }
        ASSERT_STATUS(r, 431);
        resp_done(&r);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id LIKE 'pad-%'"), 1);
        expect_file("delivered.json", 200);
        ck_assert_int_eq(daemon_stop(), 0);
        free(big);
}
END_TEST

/* Behind a reverse proxy on loopback: plain HTTP, and the client address
 * from X-Forwarded-For, for the allow-list and the stored peer. */
START_TEST(test_trusted_proxy)
{
        static const struct {
                const char *xff;
                long status;
                const char *peer;       /* stored, or NULL */
        } cases[] = {
                { "X-Forwarded-For: 142.0.181.23", 200, "142.0.181.23" },
                { "X-Forwarded-For: 198.51.100.7, 142.0.181.24, 127.0.0.1", 200, "142.0.181.24" },
                { "X-Forwarded-For: 203.0.113.9", 403, NULL },
                { "X-Forwarded-For: 142.0.181.25, 203.0.113.9", 403, NULL },
                /* Two lines are one list (a proxy adds its own line). */
                { "X-Forwarded-For: 142.0.176.5\nX-Forwarded-For: 203.0.113.9", 403, NULL },
                { "X-Forwarded-For: 52.152.150.178\nX-Forwarded-For: 203.0.113.9", 403, NULL },
                { "X-Forwarded-For: 203.0.113.9\nX-Forwarded-For: 142.0.176.6", 200, "142.0.176.6" },
                { "X-Forwarded-For: not-an-address", 400, NULL },
                { "X-Nothing: 1", 403, NULL },  /* the proxy itself is not allowed */
        };
        size_t i;
        char *sql;

        d.plain = true;
        daemon_start("allow = 142.0.176.0/20\ntrusted_proxies = 127.0.0.1/32\n", "");
        ck_assert(log_has("ready: http://(socket):"));
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *body = xasprintf("{\"Type\":\"Queued\",\"MessageId\":\"xff-%zu\",\"SecretKey\":\"%s\"}",
                                       i, T_SECRET);
                struct resp r = post_with(cases[i].xff, body);

                ck_assert_msg(r.status == cases[i].status, "%s: %ld", cases[i].xff, r.status);
                resp_done(&r);
                sql = xasprintf("SELECT count(*) FROM events WHERE message_id = 'xff-%zu' AND peer = '%s'", i,
                                cases[i].peer ? cases[i].peer : "");
                ck_assert_int_eq(q(sql), cases[i].peer ? 1 : 0);
                free(sql);
                free(body);
        }
        ck_assert(log_has("refused connection from 203.0.113.9"));
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

/* Without trusted_proxies the header means nothing. */
START_TEST(test_forwarded_for_ignored)
{
        char *body = xasprintf("{\"Type\":\"Queued\",\"MessageId\":\"x1\",\"SecretKey\":\"%s\"}", T_SECRET);
        struct resp r;

        daemon_start("", "");
        r = post_with("X-Forwarded-For: 203.0.113.9", body);
        ck_assert_int_eq(r.status, 200);
        resp_done(&r);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id = 'x1' AND peer = '127.0.0.1'"), 1);
        ck_assert_int_eq(daemon_stop(), 0);
        free(body);
}
END_TEST

/* line is in *text, the /metrics page, fetched again for up to 2 s while it
 * is not (a request is counted as it completes, after its answer went
 * out); else the test fails naming the line and what /metrics has of it
 * (the whole page is too long for check's message). */
static void
assert_metric(unsigned port, char **text, const char *line)
{
        char *want = xasprintf("\n%s\n", line), name[128];
        const char *family;
        int i;

        for (i = 0; i < 200 && strstr(*text, want) == NULL; i++) {
                usleep(10 * 1000);
                free(*text);
                ck_assert_int_eq(get_plain(port, "/metrics", text), 200);
        }
        if (strstr(*text, want) == NULL) {
                snprintf(name, sizeof(name), "\n%.*s", (int) strcspn(line, "{ "), line);
                family = strstr(*text, name);
                ck_abort_msg("no line '%s' in /metrics; it has: %.300s", line, family ? family + 1 : "(none)");
        }
        free(want);
}

/* /metrics counts known traffic; /healthz turns 503 while storage fails and
 * back. */
START_TEST(test_metrics_and_health)
{
        unsigned port = free_port();
        char *section = xasprintf("[metrics]\nlisten = 127.0.0.1:%u\n", port), *text;
        struct resp r;

        daemon_start("", section);
        ck_assert_int_eq(get_plain(port, "/healthz", &text), 200);
        ck_assert_str_eq(text, "{\"status\":\"ok\"}");
        free(text);

        expect_file("delivered.json", 200);
        expect_file("delivered.json", 200);     /* a redelivery */
        expect("{\"Type\":\"Delivered\",\"SecretKey\":\"wrong\"}", 401);
        expect("not json", 400);
        expect("{\"Type\":\"Delivered\",\"ServerId\":\"x\",\"SecretKey\":\"" T_SECRET "\"}", 200);
        {
                CURL *h = client();

                r = request(h, "GET", "/socketlabs/events", NULL, 0, NULL);
                resp_done(&r);
                curl_easy_cleanup(h);
        }
        ck_assert_int_eq(get_plain(port, "/metrics", &text), 200);
        assert_metric(port, &text, "slhookd_events_total{endpoint=\"main\",type=\"Sent\",outcome=\"stored\"} 1");
        assert_metric(port, &text, "slhookd_events_total{endpoint=\"main\",type=\"Sent\",outcome=\"duplicate\"} 1");
        assert_metric(port, &text, "slhookd_events_total{endpoint=\"main\",type=\"other\",outcome=\"quarantined\"} 1");
        assert_metric(port, &text, "slhookd_rejected_total{reason=\"unauthorized\"} 1");
        assert_metric(port, &text, "slhookd_rejected_total{reason=\"bad_request\"} 1");
        assert_metric(port, &text, "slhookd_rejected_total{reason=\"method_not_allowed\"} 1");
        assert_metric(port, &text, "slhookd_rejected_total{reason=\"allow_list\"} 0");
        assert_metric(port, &text, "slhookd_request_duration_seconds_count 6");
        assert_metric(port, &text, "slhookd_commits_total 3");
        assert_metric(port, &text, "slhookd_commit_duration_seconds_count 3");
        assert_metric(port, &text, "slhookd_queue_depth 0");
        assert_metric(port, &text, "slhookd_storage_failing 0");
        ck_assert_ptr_nonnull(strstr(text, "\nslhookd_database_bytes "));
        ck_assert(strstr(text, "\nslhookd_database_bytes 0\n") == NULL);
        /* What alerts are written on. */
        assert_metric(port, &text, "slhookd_build_info{version=\"" PACKAGE_VERSION "\"} 1");
        assert_metric(port, &text, "slhookd_queue_capacity 4096");
        assert_metric(port, &text, "slhookd_config_last_reload_successful 1");
        {
                long long now = (long long) time(NULL), v;
                const char *p;

                p = strstr(text, "\nslhookd_last_event_timestamp_seconds{endpoint=\"main\"} ");
                ck_assert_msg(p != NULL, "no last event timestamp");
                v = atoll(strchr(p, '}') + 2);
                ck_assert_msg(v >= now - 60 && v <= now, "last event at %lld, now %lld", v, now);
                p = strstr(text, "\nslhookd_tls_certificate_expiry_timestamp_seconds ");
                ck_assert_msg(p != NULL, "no certificate expiry");
                v = atoll(p + strlen("\nslhookd_tls_certificate_expiry_timestamp_seconds "));
                ck_assert_msg(v > now + 86400, "the certificate expires at %lld", v);
#define GAUGE(name) ((p = strstr(text, "\n" name " ")) ? atoll(p + strlen(name) + 2) : -1)
                ck_assert_msg(GAUGE("process_open_fds") > 3, "process_open_fds");
                ck_assert_msg(GAUGE("process_max_fds") >= 1024, "process_max_fds");
                v = GAUGE("process_start_time_seconds");
                ck_assert_msg(v <= now && v > now - 120, "process_start_time_seconds %lld, now %lld", v, now);
                ck_assert_msg(GAUGE("process_resident_memory_bytes") > 1000000, "process_resident_memory_bytes");
#undef GAUGE
        }
        /* No secret, no address. */
        ck_assert(strstr(text, T_SECRET) == NULL);
        ck_assert(strstr(text, "127.0.0.1") == NULL);
        ck_assert(strstr(text, "example") == NULL);
        free(text);

        exec_rw("CREATE TRIGGER fail BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'simulated I/O error'); END");
        expect_file("queued.json", 503);
        ck_assert_int_eq(get_plain(port, "/healthz", &text), 503);
        ck_assert_str_eq(text, "{\"status\":\"unhealthy\",\"reason\":\"storage is failing\"}");
        free(text);
        exec_rw("DROP TRIGGER fail");
        expect_file("queued.json", 200);
        ck_assert_int_eq(get_plain(port, "/healthz", &text), 200);
        free(text);
        ck_assert_int_eq(get_plain(port, "/metrics", &text), 200);
        assert_metric(port, &text, "slhookd_rejected_total{reason=\"unavailable\"} 1");
        free(text);
        /* GET / links both. */
        ck_assert_int_eq(get_plain(port, "/", &text), 200);
        ck_assert_ptr_nonnull(strstr(text, "<a href=\"/metrics\">"));
        ck_assert_ptr_nonnull(strstr(text, "<a href=\"/healthz\">"));
        free(text);
        ck_assert_int_eq(daemon_stop(), 0);
        free(section);
}
END_TEST

/* The descriptors process pid has open whose link starts with prefix (all
 * of them: prefix ""). */
static unsigned
fds_of(pid_t pid, const char *prefix)
{
        char path[64], link[64];
        struct dirent *e;
        unsigned n = 0;
        DIR *dir;

        snprintf(path, sizeof(path), "/proc/%ld/fd", (long) pid);
        if ((dir = opendir(path)) == NULL)
                return 0;
        while ((e = readdir(dir)) != NULL) {
                char *p;
                ssize_t len;

                if (e->d_name[0] == '.')
                        continue;
                p = xasprintf("%s/%s", path, e->d_name);
                len = readlink(p, link, sizeof(link) - 1);
                free(p);
                if (len >= 0 && (link[len] = '\0', strncmp(link, prefix, strlen(prefix)) == 0))
                        n++;
        }
        closedir(dir);
        return n;
}

/* A descriptor limit below max_connections + 64 (systemd's default soft
 * limit is 1024): slhookd warns and takes fewer connections at once, so that
 * more senders than that leave it descriptors for /healthz, the database
 * and the rest; once they go, events are stored again. */
START_TEST(test_fd_limit)
{
        enum { SOCKS = 200 };
        unsigned port = free_port();
        char *section = xasprintf("[metrics]\nlisten = 127.0.0.1:%u\n", port), *text;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fds[SOCKS], i;
        unsigned most = 0;

        d.nofile = 160;         /* soft and hard: it cannot raise it */
        daemon_start("", section);
        ck_assert(log_has("max_connections = 1024 needs 1088 file descriptors, the limit is 160: "
                          "at most 96 connections are taken"));
        sa.sin_port = htons((uint16_t) d.port);
        for (i = 0; i < SOCKS; i++) {
                fds[i] = socket(AF_INET, SOCK_STREAM, 0);
                ck_assert_int_ge(fds[i], 0);
                ck_assert_int_eq(connect(fds[i], (struct sockaddr *) &sa, sizeof(sa)), 0);
        }
        /* It takes 96 and leaves the rest in the backlog (it took them
         * all until accept() failed): watched for a second. */
        for (i = 0; i < 100; i++) {
                unsigned n = fds_of(d.pid, "socket:");

                most = n > most ? n : most;
                usleep(10 * 1000);
        }
        fprintf(stderr, "check_e2e: %d connections, descriptor limit 160: at most %u sockets open in slhookd\n",
                SOCKS, most);
        ck_assert_uint_ge(most, 96);
        ck_assert_uint_le(most, 96 + 8);        /* its listeners and the journal's */
        /* /healthz still answers. */
        ck_assert_int_eq(get_plain(port, "/healthz", &text), 200);
        free(text);
        for (i = 0; i < SOCKS; i++)
                close(fds[i]);
        expect_file("queued.json", 200);
        ck_assert_int_eq(daemon_stop(), 0);
        free(section);
}
END_TEST

/* Descriptors run out under slhookd anyway (here: its limit lowered while
 * it runs, as another process's or the system's would): libmicrohttpd
 * suspends accept(); that is one warning, not one line per connection, and
 * /healthz answers 503 with the reason until a connection closes. */
START_TEST(test_accept_starved)
{
        enum { SOCKS = 24 };
        unsigned port = free_port(), open;
        char *section = xasprintf("[metrics]\nlisten = 127.0.0.1:%u\n", port), *text;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        struct rlimit rl;
        int fds[SOCKS], i, status;

        daemon_start("", section);
        ck_assert_int_eq(get_plain(port, "/healthz", &text), 200);
        free(text);
        /* The soft limit only: raising it again needs no CAP_SYS_RESOURCE. */
        open = fds_of(d.pid, "");
        ck_assert_int_eq(prlimit(d.pid, RLIMIT_NOFILE, NULL, &rl), 0);
        ck_assert_uint_ge(rl.rlim_max, open + 4 + SOCKS + 16);
        rl.rlim_cur = open + 4;
        ck_assert_int_eq(prlimit(d.pid, RLIMIT_NOFILE, &rl, NULL), 0);
        sa.sin_port = htons((uint16_t) d.port);
        for (i = 0; i < SOCKS; i++) {
                fds[i] = socket(AF_INET, SOCK_STREAM, 0);
                ck_assert_int_ge(fds[i], 0);
                ck_assert_int_eq(connect(fds[i], (struct sockaddr *) &sa, sizeof(sa)), 0);
        }
        for (i = 0; i < 500 && !log_has("temporarily suspending accept()"); i++)
                usleep(10 * 1000);
        ck_assert_msg(log_has("libmicrohttpd: Hit process or system resource limit at "),
                      "accept() was not suspended (%u descriptors open, limit %u)", fds_of(d.pid, ""), open + 4);
        ck_assert(log_has("raise LimitNOFILE= or lower max_connections"));
        /* Room for /healthz's own connection, also when a listener thread
         * that had no connection takes the senders still waiting (it keeps
         * trying: libmicrohttpd's "at FIRST connection" case). */
        rl.rlim_cur = open + 4 + SOCKS + 16;
        ck_assert_int_eq(prlimit(d.pid, RLIMIT_NOFILE, &rl, NULL), 0);
        status = get_plain(port, "/healthz", &text);
        /* "suspended", or "fails" when a listener thread had no connection yet */
        ck_assert_msg(status == 503 && strstr(text, "\"reason\":\"accept() ") &&
                      strstr(text, ": out of file descriptors or memory\""), "/healthz: %d %s", status, text);
        free(text);
        ck_assert_int_eq(log_count("libmicrohttpd: Hit process or system resource limit"), 1);
        for (i = 0; i < SOCKS; i++)
                close(fds[i]);
        for (i = 0, text = NULL; i < 500; i++) {
                /* A connection accepted and closed: a report of a failed
                 * accept() that came after the closes above (a listener
                 * thread descheduled between the two) lasts until one. */
                int fd = socket(AF_INET, SOCK_STREAM, 0);

                ck_assert_int_ge(fd, 0);
                ck_assert_int_eq(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
                close(fd);
                free(text);
                status = get_plain(port, "/healthz", &text);
                if (status == 200)
                        break;
                usleep(10 * 1000);
        }
        ck_assert_msg(status == 200, "/healthz still %d after the connections closed: %s", status, text);
        free(text);
        expect_file("queued.json", 200);
        ck_assert_int_eq(daemon_stop(), 0);
        free(section);
}
END_TEST

/* journald: what libsystemd really sends. In a private mount namespace
 * (root only) a datagram socket stands at /run/systemd/journal/socket; the
 * daemon, with format = journal, logs to it; every datagram is copied to a
 * file the test reads. */
static void
journal_child(int listen_fd, const char *out_path, const char *pid_path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char buf[65536 + 4], pidtxt[32];
        int sock, out, status;
        pid_t pid;
        ssize_t n;

        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", "/run", "tmpfs", 0, NULL) < 0 || mkdir("/run/systemd", 0755) < 0 ||
            mkdir("/run/systemd/journal", 0755) < 0)
                _exit(77);
        sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "/run/systemd/journal/socket");
        if (sock < 0 || bind(sock, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                _exit(77);
        out = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        pid = fork();
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR);

                daemon_exec(null, null, listen_fd);
        }
        snprintf(pidtxt, sizeof(pidtxt), "%ld\n", (long) pid);
        t_write(pid_path, pidtxt);
        /* Each datagram, then a line of its own to end it, in one write: a
         * reader that sees an entry sees its end (with two writes the test
         * once read a datagram whose "--" had not come yet). */
        for (;;) {
                struct timeval tv = { 0, 100 * 1000 };

                setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
                if ((n = recv(sock, buf, sizeof(buf) - 4, 0)) > 0) {
                        memcpy(buf + n, "\n--\n", 4);
                        (void) !write(out, buf, (size_t) n + 4);
                } else if (waitpid(pid, &status, WNOHANG) == pid)
                        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
        }
}

START_TEST(test_journal_fields)
{
        char *out, *pidf, *text = NULL, *entry, *end;
        pid_t child;
        int i, status;
        long daemon_pid;

        daemon_listen();
        write_conf("", "");
        /* format = json in write_conf: this test wants the journal. */
        text = t_slurp(d.conf, NULL);
        *strstr(text, "format = json") = '\0';
        {
                char *conf = xasprintf("%sformat = journal\n", text);

                t_write(d.conf, conf);
                free(conf);
        }
        free(text);
        out = file_in("journal.out");
        pidf = file_in("daemon.pid");
        child = fork();
        ck_assert_int_ge(child, 0);
        if (child == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                journal_child(d.fd, out, pidf);
        }
        close(d.fd);
        /* Bounded wait for the ready line. */
        for (i = 0; i < 1000; i++) {
                text = t_slurp(out, NULL);
                if (text && strstr(text, "MESSAGE_ID=ab2a6aadb4bd4002a0e5b4ea49d975d1"))
                        break;
                free(text);
                text = NULL;
                if (waitpid(child, &status, WNOHANG) == child) {
                        ck_assert_msg(WEXITSTATUS(status) == 77, "journal helper failed: %d", WEXITSTATUS(status));
                        fprintf(stderr, "test_journal_fields: needs root for a private mount namespace; skipped\n");
                        return;
                }
                usleep(10 * 1000);
        }
        ck_assert_ptr_nonnull(text);
        free(text);
        expect_file("delivered.json", 200);
        for (i = 0; i < 1000; i++) {
                text = t_slurp(out, NULL);
                if (text && strstr(text, "SLHOOKD_STATUS=200") && strstr(strstr(text, "SLHOOKD_STATUS=200"), "\n--\n"))
                        break;
                free(text);
                text = NULL;
                usleep(10 * 1000);
        }
        ck_assert_ptr_nonnull(text);
        /* The request line's datagram, field by field. */
        entry = strstr(text, "MESSAGE_ID=df4d770242be491089390db52c6629f7");
        ck_assert_ptr_nonnull(entry);
        while (entry > text && !(entry[-1] == '\n' && entry - text >= 4 && strncmp(entry - 4, "\n--\n", 4) == 0))
                entry--;
        end = strstr(entry, "\n--\n");
        ck_assert_ptr_nonnull(end);
        *end = '\0';
        ck_assert_msg(strstr(entry, "\nPRIORITY=6\n") || strncmp(entry, "PRIORITY=6\n", 11) == 0, "%s", entry);
        ck_assert_msg(strstr(entry, "SYSLOG_IDENTIFIER=slhookd\n"), "%s", entry);
        ck_assert_msg(strstr(entry, "MESSAGE=/socketlabs/events 200: Sent stored"), "%s", entry);
        ck_assert_msg(strstr(entry, "SLHOOKD_ENDPOINT=main\n"), "%s", entry);
        ck_assert_msg(strstr(entry, "SLHOOKD_TYPE=Sent\n"), "%s", entry);
        ck_assert_msg(strstr(entry, "SLHOOKD_MESSAGE_ID=o5521-r1\n"), "%s", entry);
        ck_assert_msg(strstr(entry, "SLHOOKD_PEER=127.0.0.1\n"), "%s", entry);
        ck_assert_msg(strstr(entry, "SLHOOKD_STATUS=200\n"), "%s", entry);
        ck_assert_msg(strstr(entry, "SLHOOKD_LATENCY_US="), "%s", entry);
        ck_assert_msg(strstr(entry, "CODE_FILE="), "%s", entry);
        free(text);
        /* Stop it; no secret in anything it sent. */
        text = t_slurp(pidf, NULL);
        daemon_pid = atol(text);
        free(text);
        ck_assert_int_eq(kill((pid_t) daemon_pid, SIGTERM), 0);
        ck_assert_int_eq(waitpid(child, &status, 0), child);
        ck_assert_int_eq(WEXITSTATUS(status), 0);
        text = t_slurp(out, NULL);
        ck_assert(strstr(text, T_SECRET) == NULL);
        ck_assert_ptr_nonnull(strstr(text, "MESSAGE_ID=3d93ca77652b46639c3500d07f386feb"));
        free(text);
        free(pidf);
        free(out);
}
END_TEST

/* ---- command line ---- */

static int
run(const char *args, char **out)
{
        char *cmd = xasprintf("%s %s > '%s/out' 2>&1", SLHOOKD_BIN, args, d.dir), *p;
        int r = system(cmd);

        p = xasprintf("%s/out", d.dir);
        *out = t_slurp(p, NULL);
        free(p);
        free(cmd);
        return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

START_TEST(test_check_mode)
{
        char *out, *args, *bad, *secret;

        d.dir = t_tmpdir();
        d.conf = file_in("slhookd.conf");
        secret = file_in("secret");
        t_write(secret, T_SECRET "\n");
        write_conf("", "");
        args = xasprintf("-c '%s' --check", d.conf);
        ck_assert_int_eq(run(args, &out), 0);
        ck_assert_ptr_nonnull(strstr(out, "configuration OK"));
        free(out);
        free(args);

        write_conf("max_body = huge", "");
        args = xasprintf("-c '%s' --check", d.conf);
        ck_assert_int_eq(run(args, &out), 78);       /* EX_CONFIG */
        bad = xasprintf("%s:6: [server] max_body: 'huge'", d.conf);
        ck_assert_msg(strstr(out, bad) != NULL, "%s", out);
        free(bad);
        free(out);

        /* An expired certificate is refused, naming the file. */
        write_conf_tls("expired/", "expired/", "", "");
        ck_assert_int_eq(run(args, &out), 78);
        ck_assert_msg(strstr(out, "expired/cert.pem: certificate expired") != NULL, "%s", out);
        free(out);
        /* A key that does not belong to the certificate. */
        write_conf_tls("", "expired/", "", "");
        ck_assert_int_eq(run(args, &out), 78);
        ck_assert_msg(strstr(out, "expired/key.pem: private key does not belong") != NULL, "%s", out);
        free(out);
        free(args);
        free(secret);

        ck_assert_int_eq(run("--version", &out), 0);
        ck_assert_ptr_nonnull(strstr(out, "slhookd " PACKAGE_VERSION));
        free(out);
        ck_assert_int_eq(run("--no-such-flag", &out), 64);      /* EX_USAGE */
        free(out);
}
END_TEST

START_TEST(test_init_dir)
{
        char *out, *args, *trial;

        d.dir = t_tmpdir();
        trial = file_in("trial");
        args = xasprintf("--init '%s'", trial);
        ck_assert_int_eq(run(args, &out), 0);
        ck_assert_ptr_nonnull(strstr(out, "curl --cacert"));
        ck_assert_ptr_nonnull(strstr(out, "sqlite3"));
        /* slhookctl beside the slhookd that ran (the build tree). */
        ck_assert_ptr_nonnull(strstr(out, SLHOOKCTL_BIN " -c "));
        free(out);
        /* Idempotent: run again, keep what is there. */
        ck_assert_int_eq(run(args, &out), 0);
        free(out);
        free(args);
        args = xasprintf("-c '%s/slhookd.conf' --check", trial);
        ck_assert_int_eq(run(args, &out), 0);
        free(out);
        free(args);
        free(trial);
}
END_TEST

int
main(void)
{
        Suite *s = suite_create("e2e");
        TCase *tc = tcase_create("e2e");

        tcase_add_unchecked_fixture(tc, make_certs, drop_certs);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_stored_after_commit);
        tcase_add_test(tc, test_every_type);
        tcase_add_test(tc, test_redelivery_stored_once);
        tcase_add_test(tc, test_secret);
        tcase_add_test(tc, test_validation);
        tcase_add_test(tc, test_validation_key);
        tcase_add_test(tc, test_routes);
        tcase_add_test(tc, test_body_limit);
        tcase_add_test(tc, test_bad_bodies);
        tcase_add_test(tc, test_quarantine);
        tcase_add_test(tc, test_array_and_wrapper);
        tcase_add_test(tc, test_invalid_utf8_kept);
        tcase_add_test(tc, test_storage_failure);
        tcase_add_test(tc, test_allow_list);
        tcase_add_test(tc, test_tls_versions);
        tcase_add_test(tc, test_tls_suites);
        tcase_add_test(tc, test_tls_forward_secrecy);
        tcase_add_test(tc, test_tls_resumption);
        tcase_add_test(tc, test_concurrent_clients);
        tcase_add_test(tc, test_logs_and_secrets);
        tcase_add_test(tc, test_sigterm_drains);
        tcase_add_test(tc, test_watchdog);
        tcase_add_test(tc, test_reload);
        tcase_add_test(tc, test_systemd_socket_activate);
        tcase_add_test(tc, test_header_limit);
        tcase_add_test(tc, test_trusted_proxy);
        tcase_add_test(tc, test_forwarded_for_ignored);
        tcase_add_test(tc, test_metrics_and_health);
        tcase_add_test(tc, test_fd_limit);
        tcase_add_test(tc, test_accept_starved);
        tcase_add_test(tc, test_journal_fields);
        tcase_add_test(tc, test_check_mode);
        tcase_add_test(tc, test_init_dir);
        return t_run(s, tc);
}
