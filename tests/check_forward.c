/* Forwarding end to end: the real daemon posts its stored events to a real
 * HTTPS receiver on 127.0.0.1 (libmicrohttpd with the test certificate),
 * which checks every Standard Webhooks signature with its own HMAC, and
 * the real slhookctl reads and rewinds the cursors. */
#include "config.h"

#include <microhttpd.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <yajl/yajl_tree.h>

#include "daemon.h"
#include "forward.h"

/* A shell command's stdout. */
static char *
sh_out(const char *cmd)
{
        FILE *f = popen(cmd, "r");
        struct buf b = { 0 };
        char chunk[4096];
        size_t n;

        ck_assert_ptr_nonnull(f);
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
                buf_append(&b, chunk, n);
        buf_append(&b, "", 0);
        pclose(f);
        return b.data;
}

/* ---- the receiver ---- */

struct path_log {
        long long *ids;                 /* event ids answered 2xx, in order */
        size_t n, cap;
        unsigned posts, arrays, objects, max_batch;
};

static struct receiver {
        struct MHD_Daemon *mhd;
        unsigned port;
        pthread_mutex_t mu;
        struct path_log all, bounces, late;
        unsigned bad_signatures, secrets_seen, not_json, stale;
        int fail_next;                  /* answer 500 to this many posts */
        unsigned delay_ms;              /* before each answer */
        unsigned hold_after;            /* posts to /all answered; the next waits until it is 0 */
        bool holding;                   /* a post to /all is waiting */
        pthread_cond_t cv;
        unsigned char key[32];
        char secret_file[256];
} rx;

struct rq {
        struct buf body;
};

static void
log_id(struct path_log *l, long long id)
{
        if (l->n == l->cap) {
                l->cap = l->cap ? l->cap * 2 : 256;
                l->ids = xreallocarray(l->ids, l->cap, sizeof(*l->ids));
        }
        l->ids[l->n++] = id;
}

/* The signature as the specification computes it, here apart from
 * src/forward.c: HMAC-SHA256 over "id.timestamp.body", base64. */
static bool
signature_ok(const char *id, const char *ts, const char *header, const struct buf *body)
{
        unsigned char mac[32];
        struct buf msg = { 0 };
        gnutls_datum_t in = { mac, sizeof(mac) }, out = { NULL, 0 };
        char *want, *copy, *tok, *save = NULL;
        bool ok = false;

        if (!id || !ts || !header)
                return false;
        buf_printf(&msg, "%s.%s.", id, ts);
        buf_append(&msg, body->data, body->len);
        gnutls_hmac_fast(GNUTLS_MAC_SHA256, rx.key, sizeof(rx.key), msg.data, msg.len, mac);
        buf_done(&msg);
        gnutls_base64_encode2(&in, &out);
        want = xasprintf("v1,%.*s", (int) out.size, (const char *) out.data);
        gnutls_free(out.data);
        copy = xstrdup(header);
        for (tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
                ok |= strcmp(tok, want) == 0;
        free(copy);
        free(want);
        return ok;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
           const char *upload, size_t *upload_size, void **con_cls)
{
        struct rq *r = *con_cls;
        struct MHD_Response *resp;
        struct path_log *l;
        const char *id, *ts, *sig;
        char err[256];
        yajl_val v;
        unsigned status = 200, n = 0;
        enum MHD_Result ret;
        long long t;

        (void) cls;
        (void) version;
        if (r == NULL) {
                *con_cls = xcalloc(1, sizeof(struct rq));
                return MHD_YES;
        }
        if (*upload_size) {
                buf_append(&r->body, upload, *upload_size);
                *upload_size = 0;
                return MHD_YES;
        }
        if (rx.delay_ms)
                usleep(rx.delay_ms * 1000);
        pthread_mutex_lock(&rx.mu);
        if (rx.hold_after && strcmp(url, "/all") == 0 && rx.all.posts >= rx.hold_after) {
                struct timespec until;

                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += 20;
                rx.holding = true;
                pthread_cond_broadcast(&rx.cv);
                while (rx.hold_after && pthread_cond_timedwait(&rx.cv, &rx.mu, &until) == 0)
                        ;
        }
        pthread_mutex_unlock(&rx.mu);
        id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-id");
        ts = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-timestamp");
        sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-signature");
        buf_append(&r->body, "", 0);    /* a string, also when empty */
        pthread_mutex_lock(&rx.mu);
        l = strcmp(url, "/bounces") == 0 ? &rx.bounces : strcmp(url, "/late") == 0 ? &rx.late : &rx.all;
        if (strcmp(method, "POST") != 0 || !signature_ok(id, ts, sig, &r->body)) {
                rx.bad_signatures++;
                status = 401;
        } else if (ts && llabs(strtoll(ts, NULL, 10) - (long long) time(NULL)) > 300) {
                rx.stale++;
                status = 400;
        } else if (rx.fail_next > 0) {
                rx.fail_next--;
                status = 500;
        }
        if (t_contains(r->body.data, r->body.len, T_SECRET))
                rx.secrets_seen++;
        v = yajl_tree_parse(r->body.data, err, sizeof(err));
        if (v == NULL || !(YAJL_IS_OBJECT(v) || YAJL_IS_ARRAY(v)))
                rx.not_json++;
        else if (status == 200) {
                const char *id_path[] = { "id", NULL };
                size_t i, k = YAJL_IS_ARRAY(v) ? v->u.array.len : 1;

                for (i = 0; i < k; i++) {
                        yajl_val e = YAJL_IS_ARRAY(v) ? v->u.array.values[i] : v;
                        yajl_val idv = yajl_tree_get(e, id_path, yajl_t_number);

                        if (idv == NULL || !YAJL_IS_INTEGER(idv)) {
                                rx.not_json++;
                                continue;
                        }
                        t = YAJL_GET_INTEGER(idv);
                        log_id(l, t);
                        n++;
                }
                l->posts++;
                if (YAJL_IS_ARRAY(v))
                        l->arrays++;
                else
                        l->objects++;
                if (n > l->max_batch)
                        l->max_batch = n;
        }
        yajl_tree_free(v);
        pthread_mutex_unlock(&rx.mu);
        resp = MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT);
        ret = MHD_queue_response(c, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static void
on_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
        struct rq *r = *con_cls;

        (void) cls;
        (void) c;
        (void) toe;
        if (r) {
                buf_done(&r->body);
                free(r);
        }
}

static void
rx_start(void)
{
        struct sockaddr_in sa = { .sin_family = AF_INET };
        char *cert = NULL, *key = NULL, *path, *sec, *line;
        gnutls_datum_t in, out = { NULL, 0 };
        size_t len;

        memset(&rx, 0, sizeof(rx));
        pthread_mutex_init(&rx.mu, NULL);
        pthread_cond_init(&rx.cv, NULL);
        gnutls_rnd(GNUTLS_RND_RANDOM, rx.key, sizeof(rx.key));
        in = (gnutls_datum_t) { rx.key, sizeof(rx.key) };
        gnutls_base64_encode2(&in, &out);
        sec = xasprintf("%s/forward.secret", certdir);
        line = xasprintf("whsec_%.*s\n", (int) out.size, (const char *) out.data);
        gnutls_free(out.data);
        t_write(sec, line);
        snprintf(rx.secret_file, sizeof(rx.secret_file), "%s", sec);
        free(line);
        free(sec);
        path = xasprintf("%s/cert.pem", certdir);
        ck_assert_int_eq(file_read(path, 1 << 20, &cert, &len), 0);
        free(path);
        path = xasprintf("%s/key.pem", certdir);
        ck_assert_int_eq(file_read(path, 1 << 20, &key, &len), 0);
        free(path);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rx.mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TLS |
                                  MHD_USE_ITC, 0, NULL, NULL, on_request, NULL,
                                  MHD_OPTION_HTTPS_MEM_CERT, cert, MHD_OPTION_HTTPS_MEM_KEY, key,
                                  MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL,
                                  MHD_OPTION_SOCK_ADDR, (const struct sockaddr *) &sa, MHD_OPTION_END);
        ck_assert_ptr_nonnull(rx.mhd);
        rx.port = MHD_get_daemon_info(rx.mhd, MHD_DAEMON_INFO_BIND_PORT)->port;
        free(cert);
        free(key);
}

static void
rx_stop(void)
{
        pthread_mutex_lock(&rx.mu);
        rx.hold_after = 0;
        pthread_cond_broadcast(&rx.cv);
        pthread_mutex_unlock(&rx.mu);
        if (rx.mhd)
                MHD_stop_daemon(rx.mhd);
        pthread_cond_destroy(&rx.cv);
        free(rx.all.ids);
        free(rx.bounces.ids);
        free(rx.late.ids);
        pthread_mutex_destroy(&rx.mu);
        memset(&rx, 0, sizeof(rx));
}

static void
fw_setup(void)
{
        setup();
        rx_start();
}

static void
fw_teardown(void)
{
        teardown();
        rx_stop();
}

/* How many ids l holds now. */
static size_t
received(struct path_log *l)
{
        size_t n;

        pthread_mutex_lock(&rx.mu);
        n = l->n;
        pthread_mutex_unlock(&rx.mu);
        return n;
}

/* Wait (20 s at most) until l holds at least n ids. */
static void
await_ids(struct path_log *l, size_t n)
{
        int i;

        for (i = 0; i < 2000 && received(l) < n; i++)
                usleep(10000);
        ck_assert_msg(received(l) >= n, "the receiver got %zu events, not %zu, in 20 s", received(l), n);
}

/* A [forward NAME] section to the receiver's path. */
static char *
forward_section(const char *name, const char *path, const char *more)
{
        return xasprintf("[forward %s]\nurl = https://127.0.0.1:%u%s\nsecret_file = %s\nca_file = %s/cert.pem\n%s\n",
                         name, rx.port, path, rx.secret_file, certdir, more);
}

static void
post_ok(const char *fields)
{
        char *body = xasprintf("{\"SecretKey\":\"%s\",%s}", T_SECRET, fields);

        expect(body, 200);
        free(body);
}

/* The ids l got are 1..n in order, each once (or n first ones). */
static void
assert_in_order(struct path_log *l, const long long *want, size_t n)
{
        size_t i;

        pthread_mutex_lock(&rx.mu);
        ck_assert_uint_eq(l->n, n);
        for (i = 0; i < n; i++)
                ck_assert_msg(l->ids[i] == want[i], "event %zu: id %lld, expected %lld", i, l->ids[i], want[i]);
        pthread_mutex_unlock(&rx.mu);
}

/* ---- tests ---- */

/* Filters, batch 1, signatures, the body, status, metrics. */
START_TEST(test_forward_filters)
{
        unsigned mport = free_port();
        char *all = forward_section("all", "/all", ""), *bounces = forward_section("bounces", "/bounces",
                                                                                     "types = failed, Complaint\n"
                                                                                     "server_ids = 40111\n"
                                                                                     "endpoints = main");
        char *sections = xasprintf("%s%s[metrics]\nlisten = 127.0.0.1:%u\n", all, bounces, mport);
        static const long long want_all[] = { 1, 2, 3, 4, 5 }, want_bounces[] = { 3, 5 };
        char *out, *cmd;

        daemon_start("", sections);
        post_ok("\"Type\":\"Queued\",\"DateTime\":\"2026-03-01T10:00:00Z\",\"ServerId\":40111,\"MessageId\":\"a\","
                "\"Address\":\"a@example.com\"");
        post_ok("\"Type\":\"Delivered\",\"DateTime\":\"2026-03-01T10:00:01Z\",\"ServerId\":40111,\"MessageId\":\"a\","
                "\"Address\":\"a@example.com\"");
        post_ok("\"Type\":\"Failed\",\"DateTime\":\"2026-03-01T10:00:02Z\",\"ServerId\":40111,\"MessageId\":\"b\","
                "\"Address\":\"b@example.com\",\"FailureType\":\"Permanent\",\"Reason\":\"<script>\\\"x\\\"</script>\"");
        post_ok("\"Type\":\"Failed\",\"DateTime\":\"2026-03-01T10:00:03Z\",\"ServerId\":40222,\"MessageId\":\"c\","
                "\"Address\":\"c@example.com\",\"FailureType\":\"Permanent\"");
        post_ok("\"Type\":\"Complaint\",\"DateTime\":\"2026-03-01T10:00:04Z\",\"ServerId\":40111,\"MessageId\":\"a\","
                "\"Address\":\"a@example.com\"");
        /* A SocketLabs test event is stored, and not forwarded. */
        post_ok("\"Type\":\"Delivered\",\"DateTime\":\"2026-03-01T10:00:05Z\",\"ServerId\":40111,"
                "\"MessageId\":\"SampleMessageId\",\"Address\":\"t@example.com\"");
        post_ok("\"Type\":\"Queued\",\"DateTime\":\"2026-03-01T10:00:06Z\",\"ServerId\":40111,\"MessageId\":\"z\","
                "\"Address\":\"z@example.com\"");
        await_ids(&rx.all, 6);
        await_ids(&rx.bounces, 2);
        {
                static const long long want6[] = { 1, 2, 3, 4, 5, 7 };

                assert_in_order(&rx.all, want6, 6);
        }
        (void) want_all;
        assert_in_order(&rx.bounces, want_bounces, 2);
        ck_assert_uint_eq(rx.bad_signatures, 0);
        ck_assert_uint_eq(rx.secrets_seen, 0);
        ck_assert_uint_eq(rx.not_json, 0);
        ck_assert_uint_eq(rx.stale, 0);
        ck_assert_uint_eq(rx.all.arrays, 0);           /* batch 1: one object a POST */
        ck_assert_uint_eq(rx.all.objects, 6);
        /* The cursor in the database: caught up. */
        cmd = xasprintf("%s -c '%s' -f json forward status", SLHOOKCTL_BIN, d.conf);
        out = sh_out(cmd);
        free(cmd);
        ck_assert_msg(strstr(out, "{\"forward\":\"all\",\"cursor\":7,\"lag_events\":0,\"lag_seconds\":0,") != NULL,
                      "%s", out);
        ck_assert_msg(strstr(out, "\"forward\":\"bounces\",\"cursor\":7,") != NULL, "%s", out);
        ck_assert(strstr(out, "\"delivered\":6") != NULL);
        free(out);
        ck_assert_int_eq(gauge(mport, "slhookd_forward_delivered_total{forward=\"all\"} "), 6);
        ck_assert_int_eq(gauge(mport, "slhookd_forward_delivered_total{forward=\"bounces\"} "), 2);
        ck_assert_int_eq(gauge(mport, "slhookd_forward_failures_total{forward=\"all\"} "), 0);
        ck_assert_int_gt(gauge(mport, "slhookd_forward_last_success_timestamp_seconds{forward=\"all\"} "), 0);
        ck_assert_int_eq(daemon_stop(), 0);
        free(sections);
        free(all);
        free(bounces);
}
END_TEST

/* batch 100 against a receiver that answers 500 at first: every event
 * arrives, in order, once, in arrays of at most 100; one log line when it
 * starts failing and one when it works again, however many retries. */
START_TEST(test_forward_batch_retry)
{
        unsigned mport = free_port();
        char *fw = forward_section("all", "/all", "batch = 100");
        char *sections = xasprintf("%s[metrics]\nlisten = 127.0.0.1:%u\n", fw, mport);
        enum { N = 250 };
        char *bodies[N], id[32];
        long status[N];
        bool ra[N];
        atomic_uint done = 0;
        long long want[N];
        size_t i;

        rx.fail_next = 3;
        daemon_start("max_connections_per_ip = 0", sections);
        for (i = 0; i < N; i++) {
                snprintf(id, sizeof(id), "b-%zu", i);
                bodies[i] = event_json(id, 10);
        }
        post_many(N, bodies, status, ra, &done);
        for (i = 0; i < N; i++) {
                ck_assert_int_eq(status[i], 200);
                free(bodies[i]);
                want[i] = (long long) i + 1;
        }
        await_ids(&rx.all, N);
        assert_in_order(&rx.all, want, N);
        ck_assert_uint_eq(rx.all.objects, 0);          /* batch > 1: always an array */
        ck_assert_uint_le(rx.all.max_batch, 100);
        ck_assert_uint_ge(rx.all.posts, 3);
        ck_assert_uint_eq(rx.bad_signatures, 0);
        ck_assert_int_eq(gauge(mport, "slhookd_forward_failures_total{forward=\"all\"} "), 3);
        ck_assert_int_eq(log_count("fails, events wait"), 1);
        ck_assert_int_eq(log_count("works again"), 1);
        ck_assert_int_ge(log_count("\"slhookd_forward\":\"all\""), 2);
        ck_assert_int_eq(daemon_stop(), 0);
        free(sections);
        free(fw);
}
END_TEST

/* kill -9 while forwarding: after the restart every event arrives, and the
 * only repeats are those of the batch in flight. */
START_TEST(test_forward_kill9)
{
        char *fw = forward_section("all", "/all", "batch = 10");
        enum { N = 200, BATCH = 10 };
        char *bodies[N], id[32];
        long status[N];
        bool ra[N], *seen = xcalloc(N + 1, sizeof(bool));
        atomic_uint done = 0;
        size_t i, repeats = 0;

        /* The receiver answers 5 posts and holds the 6th: forwarding is
         * under way at the kill however fast it went (a delay per batch
         * was not enough under the sanitizers with the CPUs busy). */
        rx.hold_after = 5;
        daemon_start("max_connections_per_ip = 0", fw);
        for (i = 0; i < N; i++) {
                snprintf(id, sizeof(id), "k-%zu", i);
                bodies[i] = event_json(id, 10);
        }
        post_many(N, bodies, status, ra, &done);
        for (i = 0; i < N; i++) {
                ck_assert_int_eq(status[i], 200);
                free(bodies[i]);
        }
        pthread_mutex_lock(&rx.mu);
        for (i = 0; i < 2000 && !rx.holding; i++) {
                pthread_mutex_unlock(&rx.mu);
                usleep(10000);
                pthread_mutex_lock(&rx.mu);
        }
        ck_assert_msg(rx.holding, "no sixth post to hold in 20 s");
        pthread_mutex_unlock(&rx.mu);
        daemon_kill();
        ck_assert_uint_le(received(&rx.all), 5 * BATCH);        /* it was under way */
        pthread_mutex_lock(&rx.mu);
        rx.hold_after = 0;                              /* the held post ends */
        pthread_cond_broadcast(&rx.cv);
        pthread_mutex_unlock(&rx.mu);
        daemon_rebind();
        daemon_start("max_connections_per_ip = 0", fw);
        await_ids(&rx.all, N);
        for (i = 0; i < 200 && received(&rx.all) < N + BATCH; i++)
                usleep(10000);                          /* a repeat would come now */
        pthread_mutex_lock(&rx.mu);
        for (i = 0; i < rx.all.n; i++) {
                long long v = rx.all.ids[i];

                ck_assert(v >= 1 && v <= N);
                if (seen[v])
                        repeats++;
                seen[v] = true;
        }
        pthread_mutex_unlock(&rx.mu);
        for (i = 1; i <= N; i++)
                ck_assert_msg(seen[i], "event %zu never arrived", i);
        fprintf(stderr, "check_forward: kill -9 mid-forward: %d events, %zu sent again after the restart\n", N,
                repeats);
        ck_assert_uint_le(repeats, BATCH);
        ck_assert_int_eq(daemon_stop(), 0);
        free(seen);
        free(fw);
}
END_TEST

/* A rewind replays, picked up without a reload; a reload adds a forward,
 * which starts after the newest event, and the other keeps its cursor. */
START_TEST(test_forward_rewind_reload)
{
        char *fw = forward_section("all", "/all", ""), *late = forward_section("late", "/late", "");
        char *both = xasprintf("%s%s", fw, late), *cmd, *out;
        static const long long want[] = { 1, 2, 3, 2, 3, 4 }, want_late[] = { 4 };
        int i, reloads;

        daemon_start("", fw);
        post_ok("\"Type\":\"Queued\",\"MessageId\":\"r1\",\"Address\":\"r@example.com\"");
        post_ok("\"Type\":\"Queued\",\"MessageId\":\"r2\",\"Address\":\"r@example.com\"");
        post_ok("\"Type\":\"Queued\",\"MessageId\":\"r3\",\"Address\":\"r@example.com\"");
        await_ids(&rx.all, 3);
        cmd = xasprintf("%s -c '%s' forward rewind all --to 2", SLHOOKCTL_BIN, d.conf);
        out = sh_out(cmd);
        free(cmd);
        ck_assert_msg(strstr(out, "all") && strstr(out, "1") && strstr(out, "2"), "%s", out);
        free(out);
        await_ids(&rx.all, 5);
        /* Reload with a second destination. */
        reloads = log_count("\"message\":\"reloaded ");
        write_conf("", both);
        kill(d.pid, SIGHUP);
        for (i = 0; i < 1000 && log_count("\"message\":\"reloaded ") == reloads; i++)
                usleep(10000);
        ck_assert_int_gt(log_count("\"message\":\"reloaded "), reloads);
        /* The new one has its cursor once its thread started. */
        for (i = 0; i < 1000; i++) {
                cmd = xasprintf("%s -c '%s' -f csv forward status", SLHOOKCTL_BIN, d.conf);
                out = sh_out(cmd);
                free(cmd);
                if (strstr(out, "\nlate,3,") != NULL)
                        break;
                free(out);
                out = NULL;
                usleep(10000);
        }
        ck_assert_msg(out != NULL, "the new forward has no cursor after 10 s");
        free(out);
        post_ok("\"Type\":\"Queued\",\"MessageId\":\"r4\",\"Address\":\"r@example.com\"");
        await_ids(&rx.all, 6);
        await_ids(&rx.late, 1);
        assert_in_order(&rx.all, want, 6);
        assert_in_order(&rx.late, want_late, 1);
        /* Wrong uses name what is wrong. */
        cmd = xasprintf("%s -c '%s' forward rewind nosuch --to 1 2>&1; echo rc=$?", SLHOOKCTL_BIN, d.conf);
        out = sh_out(cmd);
        free(cmd);
        ck_assert_msg(strstr(out, "no [forward nosuch] section") && strstr(out, "rc=1"), "%s", out);
        free(out);
        cmd = xasprintf("%s -c '%s' forward rewind all --to yesterdayish 2>&1; echo rc=$?", SLHOOKCTL_BIN, d.conf);
        out = sh_out(cmd);
        free(cmd);
        ck_assert_msg(strstr(out, "--to: 'yesterdayish'") && strstr(out, "rc=1"), "%s", out);
        free(out);
        ck_assert_int_eq(daemon_stop(), 0);
        free(both);
        free(fw);
        free(late);
}
END_TEST

/* A destination that refuses every connection: intake goes on (every
 * post 200 and stored), the events wait, one log line says so. */
START_TEST(test_forward_down)
{
        unsigned mport = free_port(), dead = 1;   /* nothing listens on port 1 */
        char *sections = xasprintf("[forward dead]\nurl = https://127.0.0.1:%u/x\nsecret_file = %s\n"
                                   "[metrics]\nlisten = 127.0.0.1:%u\n", dead, rx.secret_file, mport);
        char *cmd, *out;
        int i;

        daemon_start("", sections);
        for (i = 0; i < 20; i++) {
                char *f = xasprintf("\"Type\":\"Queued\",\"MessageId\":\"d%d\",\"Address\":\"d@example.com\"", i);

                post_ok(f);
                free(f);
        }
        ck_assert_int_eq(t_query(d.db, "SELECT count(*) FROM events"), 20);
        for (i = 0; i < 1000 && gauge(mport, "slhookd_forward_failures_total{forward=\"dead\"} ") < 2; i++)
                usleep(10000);
        ck_assert_int_ge(gauge(mport, "slhookd_forward_failures_total{forward=\"dead\"} "), 2);
        ck_assert_int_eq(log_count("fails, events wait"), 1);
        /* The lag is the forwarder's at its last attempt, which may have
         * come before the 20th event: the next one (backed off) sees all. */
        for (i = 0; i < 2000 && gauge(mport, "slhookd_forward_lag_events{forward=\"dead\"} ") != 20; i++)
                usleep(10000);
        ck_assert_int_eq(gauge(mport, "slhookd_forward_lag_events{forward=\"dead\"} "), 20);
        cmd = xasprintf("%s -c '%s' -f json forward status", SLHOOKCTL_BIN, d.conf);
        out = sh_out(cmd);
        free(cmd);
        ck_assert_msg(strstr(out, "\"cursor\":0,\"lag_events\":20,") && strstr(out, "Couldn't connect") &&
                      strstr(out, "\"last_success_at\":null"), "%s", out);
        free(out);
        ck_assert_int_eq(daemon_stop(), 0);
        free(sections);
}
END_TEST

/* Bad [forward] sections are refused at start, naming file, line and key. */
START_TEST(test_forward_config_errors)
{
        static const struct {
                const char *section, *expect;
        } cases[] = {
                { "[forward x]\nurl = http://app.example.com/h\nsecret_file = @S@\n",
                  "[forward x] url: 'http://app.example.com/h' is not an https:// URL" },
                { "[forward x]\nurl = https://app.example.com/h\n", "[forward x] secret_file: missing" },
                { "[forward x]\nurl = https://app.example.com/h\nsecret_file = @S@\ntypes = Sent Bounced\n",
                  "[forward x] types: 'Bounced' is not an event type" },
                { "[forward x]\nurl = https://app.example.com/h\nsecret_file = @S@\nendpoints = other\n",
                  "[forward x] endpoints: no [endpoint other] section" },
                { "[forward x]\nurl = https://app.example.com/h\nsecret_file = @S@\nbatch = 501\n",
                  "[forward x] batch: '501' is not a whole number from 1 to 500" },
                { "[forward x]\nurl = https://app.example.com/h\nsecret_file = @S@\nserver_ids = 4a\n",
                  "[forward x] server_ids: '4a' is not a ServerId" },
                { "[forward x]\nurl = https://app.example.com/h\nsecret_file = secret\n",
                  "does not hold a signing key" },
        };
        size_t i;

        for (i = 0; i < ARRAY_SIZE(cases); i++) {
                struct buf b = { 0 };
                const char *p = cases[i].section, *at;
                int status;

                buf_puts(&b, "");
                while ((at = strstr(p, "@S@")) != NULL) {
                        buf_append(&b, p, (size_t) (at - p));
                        buf_puts(&b, rx.secret_file);
                        p = at + 3;
                }
                buf_puts(&b, p);
                if (d.dir)
                        daemon_rebind();
                daemon_start_expect_exit("", b.data);
                ck_assert_int_eq(waitpid(d.pid, &status, 0), d.pid);
                d.pid = 0;
                ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 78, "case %zu: status %d", i, status);
                ck_assert_msg(log_has(cases[i].expect), "case %zu: the log does not say: %s", i, cases[i].expect);
                /* The secret of the webhook appears in no message. */
                ck_assert(!log_has(T_SECRET));
                buf_done(&b);
        }
}
END_TEST

#ifdef HAVE_POSTGRESQL
#include "fake_api.h"
#include "pg.h"

/* Two instances on one PostgreSQL database, one forward: one instance
 * forwards it at a time (an advisory lock), from the shared cursor, ids in
 * order with none lost; when that instance dies, the other takes over. */
START_TEST(test_forward_pg_two_instances)
{
        char *dsn = NULL, *store_lines = NULL, *fw = forward_section("all", "/all", "batch = 5");
        struct daemon a, b;
        size_t i, k, repeats = 0;
        char *name, *ids;
        int j;

        free(pg_test_db(getenv("SLHOOKD_TEST_PG"), &dsn, &store_lines));
        d.store = store_lines;
        daemon_start("", fw);
        a = d;
        memset(&d, 0, sizeof(d));
        d.store = store_lines;
        daemon_start("", fw);
        b = d;
        for (j = 0; j < 60; j++) {
                char *f = xasprintf("\"Type\":\"Queued\",\"MessageId\":\"p%d\",\"Address\":\"p@example.com\"", j);

                d = j % 2 ? b : a;
                post_ok(f);
                free(f);
        }
        await_ids(&rx.all, 60);
        ids = pq_text(dsn, "SELECT string_agg(id::text, ' ' ORDER BY id) FROM events");
        pthread_mutex_lock(&rx.mu);
        for (i = 0, name = strtok(ids, " "); name; name = strtok(NULL, " "), i++)
                ck_assert_msg(i < rx.all.n && rx.all.ids[i] == strtoll(name, NULL, 10), "event %zu: not id %s", i,
                              name);
        ck_assert_uint_eq(i, 60);
        ck_assert_uint_eq(rx.all.n, 60);
        pthread_mutex_unlock(&rx.mu);
        free(ids);
        /* Each dies in turn, the other going on: so the one that forwards
         * dies once while the other runs, which takes over the cursor. */
        d = a;
        daemon_kill();
        a = d;
        d = b;
        for (j = 60; j < 70; j++) {
                char *f = xasprintf("\"Type\":\"Queued\",\"MessageId\":\"p%d\",\"Address\":\"p@example.com\"", j);

                post_ok(f);
                free(f);
        }
        await_ids(&rx.all, 70);
        d = a;
        daemon_rebind();
        daemon_start("", fw);
        a = d;
        d = b;
        daemon_kill();
        b = d;
        d = a;
        for (j = 70; j < 80; j++) {
                char *f = xasprintf("\"Type\":\"Queued\",\"MessageId\":\"p%d\",\"Address\":\"p@example.com\"", j);

                post_ok(f);
                free(f);
        }
        ck_assert_int_eq(pq_at(dsn, "SELECT count(*) FROM events"), 80);
        await_ids(&rx.all, 80);
        pthread_mutex_lock(&rx.mu);
        for (i = 1; i < rx.all.n; i++) {
                if (rx.all.ids[i] > rx.all.ids[i - 1])
                        continue;
                /* A batch sent again (the dead instance's, in flight). */
                for (k = 0; k < i && rx.all.ids[k] != rx.all.ids[i]; k++)
                        ;
                ck_assert_msg(k < i, "id %lld came out of order", rx.all.ids[i]);
                repeats++;
        }
        pthread_mutex_unlock(&rx.mu);
        ck_assert_uint_le(repeats, 5);
        ck_assert_int_eq(pq_at(dsn, "SELECT count(*) FROM forward_cursors"), 1);
        ck_assert_int_eq(pq_at(dsn, "SELECT cursor FROM forward_cursors"), pq_at(dsn, "SELECT max(id) FROM events"));
        ck_assert_int_eq(daemon_stop(), 0);    /* a */
        d = b;
        teardown();                             /* b's folder; the fixture's teardown takes a's */
        d = a;
        free(fw);
        free(dsn);
        free(store_lines);
}
END_TEST

/* A destination whose thread cannot start forwarding at once (here a
 * session holds its lock, as another instance would) still sends every
 * event stored after the daemon started: its cursor is made before intake
 * begins, not when its thread gets to it. */
START_TEST(test_forward_pg_cursor_at_start)
{
        char *dsn = NULL, *store_lines = NULL, *fw = forward_section("all", "/all", "");
        char *sql = xasprintf("SELECT pg_advisory_lock(%lld)", forward_lock_key("all"));
        static const long long want[] = { 1, 2, 3 };
        PGconn *holder;
        PGresult *res;
        int j;

        free(pg_test_db(getenv("SLHOOKD_TEST_PG"), &dsn, &store_lines));
        holder = pg_connect(dsn);
        res = PQexec(holder, sql);
        ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
        PQclear(res);
        d.store = store_lines;
        daemon_start("", fw);
        for (j = 0; j < 3; j++) {
                char *f = xasprintf("\"Type\":\"Queued\",\"MessageId\":\"s%d\",\"Address\":\"s@example.com\"", j);

                post_ok(f);
                free(f);
        }
        ck_assert_uint_eq(received(&rx.all), 0);       /* the lock's holder forwards */
        PQfinish(holder);                               /* and dies */
        await_ids(&rx.all, 3);
        assert_in_order(&rx.all, want, 3);
        ck_assert_int_eq(daemon_stop(), 0);
        free(sql);
        free(fw);
        free(dsn);
        free(store_lines);
}
END_TEST
#endif

int
main(void)
{
        Suite *s = suite_create("forward");
        TCase *tc = tcase_create("forward");

        tcase_add_unchecked_fixture(tc, make_certs, drop_certs);
        tcase_add_checked_fixture(tc, fw_setup, fw_teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_forward_filters);
        tcase_add_test(tc, test_forward_batch_retry);
        tcase_add_test(tc, test_forward_kill9);
        tcase_add_test(tc, test_forward_rewind_reload);
        tcase_add_test(tc, test_forward_down);
        tcase_add_test(tc, test_forward_config_errors);
#ifdef HAVE_POSTGRESQL
        /* Under tests/pgtmp (make check runs there). */
        if (getenv("SLHOOKD_TEST_PG") && getenv("SLHOOKD_TEST_PG")[0]) {
                tcase_add_test(tc, test_forward_pg_two_instances);
                tcase_add_test(tc, test_forward_pg_cursor_at_start);
        } else
                fprintf(stderr, "check_forward: no PostgreSQL cluster: the PostgreSQL tests are left out\n");
#endif
        return t_run(s, tc);
}
