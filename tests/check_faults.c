/* Faults under a running slhookd that need no privileges: the database
 * deleted underneath, a long read transaction in another process, and a
 * writer that falls behind. (A full filesystem and an unwritable file need
 * root: check_root.) */
#include "config.h"

#include "daemon.h"
#include "store.h"

static void
expect_event(const char *id, int status)
{
        bool retry_after = false;
        long got = post_id(NULL, id, 0, &retry_after);

        ck_assert_msg(got == status, "%s: status %ld, expected %d", id, got, status);
        if (status == 503)
                ck_assert_msg(retry_after, "%s: 503 without Retry-After", id);
}

/* The database file, then (another time) its -wal, deleted while slhookd
 * runs: a COMMIT would go to a file nobody opens again, so 503s and one
 * clear log line, and no crash. A restart makes a new database. */
START_TEST(test_db_deleted)
{
        static const char *const victims[] = { "", "-wal" };
        size_t i;

        daemon_listen();
        for (i = 0; i < 2; i++) {
                char *path = xasprintf("%s%s", d.db, victims[i]);
                int before = log_count("deleted or replaced while open");

                if (i > 0)
                        daemon_rebind();
                daemon_start("", "");
                expect_event(i ? "before-wal" : "before", 200);
                ck_assert_int_eq(unlink(path), 0);
                expect_event("after-1", 503);
                expect_event("after-2", 503);
                still_running();
                ck_assert_int_eq(log_count("deleted or replaced while open"), before + 1);
                ck_assert_int_eq(daemon_stop(), 0);
                free(path);
        }
        /* What remains is the database the first restart made, without the
         * 503'd events. */
        daemon_rebind();
        daemon_start("", "");
        expect_event("after-restart", 200);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id LIKE 'after-_'"), 0);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id = 'after-restart'"), 1);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

static long long
file_size(const char *path)
{
        struct stat st;

        return stat(path, &st) == 0 ? (long long) st.st_size : -1;
}

struct poster {
        int id;
        unsigned n, ok;
        atomic_bool *stop;
};

static void *
poster_main(void *arg)
{
        struct poster *p = arg;
        CURL *h = client();

        while (!atomic_load(p->stop) && p->n < 20000) {
                char id[32];

                snprintf(id, sizeof(id), "p%d-%u", p->id, p->n++);
                p->ok += post_id(h, id, 0, NULL) == 200;
        }
        curl_easy_cleanup(h);
        return NULL;
}

/* Post from 4 keep-alive clients until the -wal is over wal_bytes (or
 * 80,000 events); returns the events posted, every one answered 200. */
static unsigned
post_until_wal(long long wal_bytes)
{
        struct poster p[4];
        pthread_t t[4];
        atomic_bool stop = false;
        char *wal = xasprintf("%s-wal", d.db);
        static int round;
        unsigned n = 0, ok = 0;
        int i;

        for (i = 0; i < 4; i++) {
                p[i] = (struct poster) { .id = round * 4 + i, .stop = &stop };
                ck_assert_int_eq(pthread_create(&t[i], NULL, poster_main, &p[i]), 0);
        }
        for (i = 0; i < 6000 && file_size(wal) <= wal_bytes; i++)
                usleep(10 * 1000);
        atomic_store(&stop, true);
        for (i = 0; i < 4; i++) {
                pthread_join(t[i], NULL);
                n += p[i].n;
                ok += p[i].ok;
        }
        round++;
        ck_assert_int_eq(ok, n);
        free(wal);
        return n;
}

/* Another process (sqlite3) holds a read transaction open: ingestion goes
 * on (WAL), the -wal grows past DB_SQLITE_WAL_LIMIT because no checkpoint can
 * restart it, and once the reader ends it is cut back to the limit. */
START_TEST(test_long_reader)
{
        char *wal, *mark, *cmd, *s;
        unsigned posted, more, i;
        FILE *reader;

        daemon_listen();
        wal = file_in("events.db-wal");
        mark = file_in("reader.out");
        daemon_start("", "");
        expect_event("first", 200);
        cmd = xasprintf("sqlite3 '%s' >/dev/null", d.db);
        reader = popen(cmd, "w");
        ck_assert_ptr_nonnull(reader);
        fprintf(reader, "BEGIN;\nSELECT count(*) FROM events;\n.output %s\nSELECT 'held';\n", mark);
        fflush(reader);
        for (i = 0; i < 1000 && !((s = t_slurp(mark, NULL)) && strstr(s, "held")); i++) {
                free(s);
                usleep(10 * 1000);
        }
        ck_assert_msg(s && strstr(s, "held"), "the reader did not start");
        free(s);

        posted = post_until_wal(3LL * DB_SQLITE_WAL_LIMIT / 2);
        ck_assert_msg(file_size(wal) > DB_SQLITE_WAL_LIMIT, "the -wal grew only to %lld bytes", file_size(wal));
        printf("check_faults: %u events stored beside a reader, -wal %lld bytes\n", posted, file_size(wal));

        fprintf(reader, "COMMIT;\n.quit\n");
        ck_assert_int_eq(pclose(reader), 0);
        for (more = 0; more < 5000 && file_size(wal) > DB_SQLITE_WAL_LIMIT; more++) {
                char id[32];

                snprintf(id, sizeof(id), "after-%u", more);
                expect_event(id, 200);
        }
        ck_assert_msg(file_size(wal) <= DB_SQLITE_WAL_LIMIT, "the -wal is still %lld bytes after %u more events",
                      file_size(wal), more);
        printf("check_faults: -wal back to %lld bytes after %u more events\n", file_size(wal), more);
        ck_assert_int_eq(q("SELECT count(*) FROM events"), 1 + posted + more);
        ck_assert_int_eq(daemon_stop(), 0);
        ck_assert_int_eq(q("SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"), 1);
        free(cmd);
        free(mark);
        free(wal);
}
END_TEST

#define FLOOD 400
#define QUEUE 16
#define PAD (48 * 1024)

struct flood {
        char *bodies[FLOOD];
        long status[FLOOD];
        bool retry_after[FLOOD];
        atomic_uint done;
        unsigned n200, n503;
};

static void *
flood_main(void *arg)
{
        struct flood *f = arg;

        post_many(FLOOD, f->bodies, f->status, f->retry_after, &f->done);
        return NULL;
}

/* 400 concurrent 48 KB posts while lock holds the write lock. Returns once
 * all but the requests the writer may hold (its batch and the queue) are
 * answered (within 60 s), with the flood going on in *t. */
static struct flood *
flood_start(int round, pthread_t *t)
{
        struct flood *f = xcalloc(1, sizeof(*f));
        unsigned i;

        for (i = 0; i < FLOOD; i++) {
                char id[32];

                snprintf(id, sizeof(id), "flood-%d-%u", round, i);
                f->bodies[i] = event_json(id, PAD);
        }
        ck_assert_int_eq(pthread_create(t, NULL, flood_main, f), 0);
        /* The lock is held all along: the bound only stops a hung flood. It
         * is wide because 400 TLS handshakes take seconds on a machine busy
         * with the other suites (make -j check). */
        for (i = 0; i < 60000 && atomic_load(&f->done) < FLOOD - 2 * QUEUE; i++)
                usleep(1000);
        ck_assert_msg(atomic_load(&f->done) >= FLOOD - 2 * QUEUE,
                      "only %u of %u answered while the writer was stuck", atomic_load(&f->done), FLOOD);
        return f;
}

static void
flood_end(struct flood *f, pthread_t t)
{
        unsigned i;

        pthread_join(t, NULL);
        for (i = 0; i < FLOOD; i++) {
                f->n200 += f->status[i] == 200;
                f->n503 += f->status[i] == 503;
                ck_assert_msg(f->status[i] == 200 || (f->status[i] == 503 && f->retry_after[i]),
                              "request %u: status %ld%s", i, f->status[i],
                              f->retry_after[i] ? "" : " without Retry-After");
                free(f->bodies[i]);
        }
}

/* The writer falls behind (another connection holds the write lock): its
 * queue of QUEUE requests fills, and the rest of 400 concurrent 48 KB posts
 * get 503 + Retry-After while it is stuck. Once the lock goes, those that
 * waited are stored and answered 200. Memory follows the connections, not
 * the requests: the peak RSS stays under a bound per connection. */
START_TEST(test_writer_behind)
{
        struct flood *f[2];
        long rss0, rss[2];
        sqlite3 *lock;
        pthread_t t;
        int round;

        daemon_start("max_connections_per_ip = 0", "[store]\nqueue_size = 16\n");
        expect_event("warm-up", 200);
        rss0 = peak_rss_kib(d.pid);
        ck_assert_int_eq(sqlite3_open(d.db, &lock), SQLITE_OK);
        for (round = 0; round < 2; round++) {
                ck_assert_int_eq(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
                f[round] = flood_start(round, &t);
                rss[round] = peak_rss_kib(d.pid);
                ck_assert_int_eq(sqlite3_exec(lock, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
                flood_end(f[round], t);
                printf("check_faults: writer stuck, 400 concurrent posts: %u answered 200, %u 503; "
                       "peak RSS %ld KiB (%ld before)\n", f[round]->n200, f[round]->n503, rss[round], rss0);
                ck_assert_int_ge(f[round]->n503, FLOOD - 2 * QUEUE);
                ck_assert_int_gt(f[round]->n200, 0);
        }
        sqlite3_close(lock);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id LIKE 'flood-%'"), f[0]->n200 + f[1]->n200);
        expect_event("afterwards", 200);
        ck_assert_int_eq(daemon_stop(), 0);
#if !defined(__SANITIZE_ADDRESS__)      /* ASan keeps freed memory in quarantine */
        /* At most 320 KiB a connection (a 64 KiB body, TLS and
         * libmicrohttpd's buffers; a body that cannot be queued is not
         * parsed), through both floods. Measured alone and beside 4 busy
         * loops: 85-138 KiB; 178-285 KiB (339 in one CI run)
         * while those bodies were still parsed. */
        ck_assert_msg(rss[1] - rss0 < FLOOD * 320, "peak RSS grew by %ld KiB", rss[1] - rss0);
#endif
        free(f[0]);
        free(f[1]);
}
END_TEST

/* Fill the writer's queue for good while the test holds the write lock.
 * The writer takes its batch out of the queue once and then waits in BEGIN
 * (statement_timeout), so a writer that took it only after the waiters
 * had filled the queue left it empty, and the next request would wait for
 * the lock instead of being refused. Probes (1.5 s each at most: a queued
 * one waits) until the writer is seen holding a batch (more requests
 * pending than the queue of 4 holds) and a probe is refused. */
static void
queue_full(unsigned port)
{
        CURL *h = client();
        char id[32];
        long status = 0, depth = 0;
        int i;

        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 1500L);
        for (i = 0; i < 200; i++) {
                snprintf(id, sizeof(id), "probe-%d", i);
                status = post_id(h, id, 0, NULL);
                if (status == 503 && (depth = gauge(port, "\nslhookd_queue_depth ")) > 4)
                        break;
                if (status == 503)
                        usleep(10 * 1000);
        }
        ck_assert_msg(status == 503 && depth > 4, "the queue is not full behind a waiting writer: %ld, %ld pending",
                      status, depth);
        curl_easy_cleanup(h);
}

/* With the writer behind (its queue full), a request is answered 503 +
 * Retry-After even while its body is still on the way: the answer comes
 * after the body (which is dropped, never held), so the sender reads the
 * 503 instead of a reset, and the connection stays open for its retry. */
START_TEST(test_busy_slow_body)
{
        unsigned port = free_port();
        char *sections = xasprintf("[store]\nqueue_size = 4\nstatement_timeout = 60\n"
                                   "[metrics]\nlisten = 127.0.0.1:%u\n", port);
        char *body = event_json("slow", PAD);
        struct waiters *w;
        struct resp r;
        sqlite3 *lock;
        CURL *h;
        bool ra;
        int n503, n200, i;

        daemon_start("max_connections_per_ip = 0", sections);
        expect_event("warm-up", 200);
        ck_assert_int_eq(sqlite3_open(d.db, &lock), SQLITE_OK);
        ck_assert_int_eq(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
        w = waiters_start("held");
        waiters_ready(w, port, NULL);
        ck_assert_msg(atomic_load(&w->done) > 0, "the queue of 4 took all %d requests", WAITERS);
        queue_full(port);

        /* 48 KB at 16 KB/s: the body takes 3 s to send. */
        h = client();
        curl_easy_setopt(h, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t) 16 * 1024);
        r = request(h, "POST", "/socketlabs/events", body, strlen(body), "application/json");
        ck_assert_msg(r.rc == CURLE_OK, "no answer to a slow body while the writer is behind: %s",
                      curl_easy_strerror(r.rc));
        ck_assert_int_eq(r.status, 503);
        ck_assert(t_contains(r.headers.data, r.headers.len, "Retry-After: "));
        resp_done(&r);
        /* The same connection serves the retry. */
        curl_easy_setopt(h, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t) 0);
        ck_assert_int_eq(post_id(h, "quick", 0, &ra), 503);
        ck_assert(ra);
        curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &r.connects);
        ck_assert_msg(r.connects == 0, "the connection was closed after the 503");

        ck_assert_int_eq(sqlite3_exec(lock, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(lock);
        waiters_answers(w, 30, &n503, &n200);
        ck_assert_int_eq(n503 + n200, WAITERS);
        /* The probes the queue held are written too. */
        for (i = 0; i < 1000 && gauge(port, "\nslhookd_queue_depth ") != 0; i++)
                usleep(10 * 1000);
        ck_assert_int_eq(gauge(port, "\nslhookd_queue_depth "), 0);
        ck_assert_int_eq(post_id(h, "slow", PAD, NULL), 200);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id = 'slow'"), 1);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id LIKE 'held-%'"), n200);
        curl_easy_cleanup(h);
        ck_assert_int_eq(daemon_stop(), 0);
        waiters_free(w);
        free(body);
        free(sections);
}
END_TEST

/* A POST whose headers go first (Expect: 100-continue) and whose body
 * waits in the read callback until the test releases it (60 s at most). */
struct held {
        pthread_t t;
        const char *body;
        size_t len, off;
        atomic_bool started, release;
        bool after_100;                 /* the body went only after the daemon's 100 Continue */
        struct resp r;
};

static size_t
held_read(char *p, size_t size, size_t n, void *arg)
{
        struct held *hb = arg;
        size_t k = hb->len - hb->off;
        int i;

        if (!atomic_load(&hb->started)) {
                hb->after_100 = t_contains(hb->r.headers.data, hb->r.headers.len, " 100 Continue");
                atomic_store(&hb->started, true);
        }
        for (i = 0; i < 6000 && !atomic_load(&hb->release); i++)
                usleep(10 * 1000);
        if (k > size * n)
                k = size * n;
        memcpy(p, hb->body + hb->off, k);
        hb->off += k;
        return k;
}

static void *
held_main(void *arg)
{
        struct held *hb = arg;
        CURL *h = client();
        struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
        char *url = xasprintf("https://127.0.0.1:%u/socketlabs/events", d.port);

        hdrs = curl_slist_append(hdrs, "Expect: 100-continue");
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) hb->len);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, held_read);
        curl_easy_setopt(h, CURLOPT_READDATA, hb);
        curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 60000L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 90L);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &hb->r.body);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &hb->r.headers);
        buf_append(&hb->r.body, "", 0);
        buf_append(&hb->r.headers, "", 0);
        hb->r.rc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &hb->r.status);
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(h);
        free(url);
        atomic_store(&hb->started, true);       /* also when it failed before its body */
        return NULL;
}

/* A request whose headers came while the writer had room, and whose body
 * is in only once the queue is full, is answered 503 + Retry-After
 * without being parsed: its body here is not JSON, and no 400 and no
 * bad_request count show that it was looked at. */
START_TEST(test_busy_at_body_end)
{
        unsigned port = free_port();
        char *sections = xasprintf("[store]\nqueue_size = 4\nstatement_timeout = 60\n"
                                   "[metrics]\nlisten = 127.0.0.1:%u\n", port);
        struct held hb = { .body = "this is not JSON", .len = 16 };
        struct waiters *w;
        sqlite3 *lock;
        int n503, n200, i;

        daemon_start("max_connections_per_ip = 0", sections);
        expect_event("warm-up", 200);
        ck_assert_int_eq(sqlite3_open(d.db, &lock), SQLITE_OK);
        ck_assert_int_eq(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
        ck_assert_int_eq(pthread_create(&hb.t, NULL, held_main, &hb), 0);
        for (i = 0; i < 1000 && !atomic_load(&hb.started); i++)
                usleep(10 * 1000);
        ck_assert_msg(atomic_load(&hb.started) && hb.after_100,
                      "the held request's headers were not answered 100 Continue in 10 s (curl: %s)",
                      curl_easy_strerror(hb.r.rc));
        w = waiters_start("held");
        waiters_ready(w, port, NULL);
        queue_full(port);
        atomic_store(&hb.release, true);
        pthread_join(hb.t, NULL);
        ck_assert_msg(hb.r.rc == CURLE_OK, "no answer to the held body: %s", curl_easy_strerror(hb.r.rc));
        ck_assert_msg(hb.r.status == 503, "a body that ends while the writer is behind: %ld %s", hb.r.status,
                      hb.r.body.data);
        ck_assert(t_contains(hb.r.headers.data, hb.r.headers.len, "Retry-After: 5"));
        ck_assert_int_eq(gauge(port, "slhookd_rejected_total{reason=\"bad_request\"} "), 0);

        ck_assert_int_eq(sqlite3_exec(lock, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(lock);
        waiters_answers(w, 30, &n503, &n200);
        ck_assert_int_eq(n503 + n200, WAITERS);
        /* Once the writer caught up, the same body is looked at: 400. */
        expect("this is not JSON", 400);
        ck_assert_int_eq(gauge(port, "slhookd_rejected_total{reason=\"bad_request\"} "), 1);
        ck_assert_int_eq(daemon_stop(), 0);
        resp_done(&hb.r);
        waiters_free(w);
        free(sections);
}
END_TEST

int
main(void)
{
        Suite *s = suite_create("faults");
        TCase *tc = tcase_create("faults");

        tcase_add_unchecked_fixture(tc, make_certs, drop_certs);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, test_db_deleted);
        tcase_add_test(tc, test_long_reader);
        tcase_add_test(tc, test_writer_behind);
        tcase_add_test(tc, test_busy_slow_body);
        tcase_add_test(tc, test_busy_at_body_end);
        return t_run(s, tc);
}
