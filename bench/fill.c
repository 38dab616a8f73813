/* bench/fill: synthetic SocketLabs events through the real write path (event
 * parser, store writer, group commit, message upkeep) into a database.
 *
 *   fill DB fill EVENTS MESSAGES DAYS   fill with EVENTS events over about
 *                                      MESSAGES messages spread over the last DAYS
 *   fill DB rate EVENTS [IN_FLIGHT]     store EVENTS new events one request each,
 *                                      IN_FLIGHT (256) at a time, synchronous=FULL, as live
 *                                      traffic (each event happened up to 5 s
 *                                      before it arrives), and print the rate:
 *                                      what the writer sustains
 *
 * DB is an SQLite file, or a PostgreSQL database as a postgresql:// URI, as
 * slhookctl -d takes it; the same writer then stores through PostgreSQL
 * (bench/README.md: the writer alone).
 *
 * Deterministic (a fixed seed per run label), so rounds are comparable. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "log.h"
#include "store.h"
#include "util.h"

static uint64_t rng = 88172645463325252ull;

static uint64_t
rnd(void)
{
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

static unsigned
below(unsigned n)
{
        return (unsigned) (rnd() % n);
}

/* ---- in-flight jobs ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static unsigned in_flight;
static unsigned long long failed;

struct job {
        struct store_job sj;
        struct event_batch b;
};

static void
on_done(struct store_job *sj)
{
        struct job *j = sj->userdata;

        pthread_mutex_lock(&mu);
        if (sj->result < 0)
                failed++;
        in_flight--;
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&mu);
        event_batch_done(&j->b);
        free(j);
}

static void
submit(struct store *s, const char *body, size_t len, const char *received_at, unsigned max_in_flight)
{
        struct job *j = xcalloc(1, sizeof(*j));
        char *err = NULL;
        size_t i;

        if (event_parse(body, len, false, &j->b, &err) < 0) {
                fprintf(stderr, "fill: generated a bad body: %s\n", err);
                exit(1);
        }
        for (i = 0; i < j->b.n; i++)
                event_digest(&j->b.v[i], "main");
        j->sj.batch = &j->b;
        j->sj.endpoint = "main";
        j->sj.peer = "142.0.176.10";
        snprintf(j->sj.received_at, sizeof(j->sj.received_at), "%s", received_at);
        j->sj.done = on_done;
        j->sj.userdata = j;
        pthread_mutex_lock(&mu);
        while (in_flight >= max_in_flight)
                pthread_cond_wait(&cv, &mu);
        in_flight++;
        pthread_mutex_unlock(&mu);
        while (store_submit(s, &j->sj) == -EAGAIN)
                ;
}

static void
drain(void)
{
        pthread_mutex_lock(&mu);
        while (in_flight > 0)
                pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
}

/* ---- synthetic mail ---- */

enum { T_QUEUED, T_DEFERRED, T_SENT, T_FAILED, T_OPEN, T_CLICK, T_COMPLAINT, T_UNSUB, T_N };
static const char *const type_names[T_N] = {
        "Queued", "Deferred", "Sent", "Failed", "Open", "Click", "Complaint", "Unsubscribe",
};
static unsigned long long counts[T_N];

/* One event of message m (to address a) at time t, appended to b. */
static void
event_json(struct buf *b, int type, const char *label, unsigned long m, unsigned a, int64_t t, bool async)
{
        char when[TIME_ISO_LEN];

        time_format_iso(t, when);
        counts[type]++;
        buf_printf(b, "{\"Type\":\"%s\",\"DateTime\":\"%s\",\"ServerId\":%lu,\"SubaccountId\":%u,"
                   "\"IpPoolId\":7,\"Address\":\"user%u@example-%u.com\",\"MailingId\":\"MAILING-%03lu\","
                   "\"MessageId\":\"%s-%lu-r1\",",
                   type == T_SENT ? "Delivered" : type >= T_OPEN && type != T_COMPLAINT ? "Tracking"
                                                                                       : type_names[type],
                   when, 40101 + m % 50, 40111 + (a % 5), a, a % 97, m / 2000, label, m);
        switch (type) {
        case T_QUEUED:
                buf_puts(b, "\"FromAddress\":\"orders@shop.example.com\",\"Subject\":\"Your order has shipped\","
                         "\"MessageSize\":18211,");
                break;
        case T_DEFERRED:
                buf_puts(b, "\"DeferralCode\":4001,\"Reason\":\"421 4.7.0 Temporary rate limit, try again later\","
                         "\"RemoteMta\":\"mx1.example.net\",\"LocalIp\":\"142.0.181.23\",");
                break;
        case T_SENT:
                buf_puts(b, "\"Response\":\"250 2.0.0 OK 1741076141 q7si123 - gsmtp\",\"LocalIp\":\"142.0.181.23\","
                         "\"RemoteMta\":\"mx1.example.net\",");
                break;
        case T_FAILED:
                buf_printf(b, "\"FailureType\":%d,\"FailureCode\":%d,\"Reason\":\"550 5.1.1 <user%u@example-%u.com>: "
                           "Recipient address rejected: user unknown\",\"RemoteMta\":\"mx.example.org\","
                           "\"BounceStatus\":\"%s\",\"DiagnosticCode\":\"%s\",",
                           async ? 1 : (int) below(2), async ? 2004 : 2001, a, a % 97, async ? "5.1.1" : "",
                           async ? "smtp; 550 5.1.1 user unknown" : "");
                break;
        case T_OPEN:
        case T_CLICK:
        case T_UNSUB:
                buf_printf(b, "\"TrackingType\":%d,\"UserAgent\":\"Mozilla/5.0 (Windows NT 10.0; Win64; x64)\","
                           "\"ClientIp\":\"203.0.113.%u\",%s", type == T_OPEN ? 1 : type == T_CLICK ? 0 : 2,
                           below(250), type == T_CLICK ? "\"Url\":\"https://shop.example.com/track/5521\"," : "");
                break;
        case T_COMPLAINT:
                buf_puts(b, "\"FblType\":\"abuse\",\"From\":\"news@shop.example.com\",\"Length\":3120,"
                         "\"UserAgent\":\"ExampleMail-Feedback/1.0\",");
                break;
        }
        buf_puts(b, "\"Data\":{\"Meta\":[{\"Key\":\"CustomerId\",\"Value\":\"8812\"}],\"Tags\":[\"Transactional\"]}}");
}

/* Live traffic: every event happened a few seconds before it arrives. */
static bool live;

/* Every event of message m, sent at t0 to one of `addresses` addresses,
 * appended to the array in b; returns how many. */
static unsigned
message(struct buf *b, const char *label, unsigned long m, unsigned addresses, int64_t t0, int64_t now, bool first)
{
        unsigned a = (unsigned) (rnd() % addresses), n = 0, k, i;
        int64_t t = t0;
        bool sent = below(100) < 95;

#define EMIT(type, when, async) \
        do { \
                int64_t at_ = (when); \
                if (!first || n) \
                        buf_puts(b, ","); \
                if (live) \
                        at_ = time_now_us() - 1000LL * below(5000); \
                event_json(b, type, label, m, a, live || at_ < now ? at_ : now, async); \
                n++; \
        } while (0)
        EMIT(T_QUEUED, t, false);
        for (k = below(100) < 40 ? 1 + below(6) : 0, i = 0; i < k; i++)
                EMIT(T_DEFERRED, t += 60000000LL * (1 + below(30)), false);
        EMIT(sent ? T_SENT : T_FAILED, t += 1000000LL * (1 + below(20)), false);
        if (!sent)
                return n;
        if (below(100) < 2)
                EMIT(T_FAILED, t + 1000000LL * (60 + below(3 * 86400)), true);  /* async bounce */
        for (k = below(9), i = 0; i < k; i++)
                EMIT(T_OPEN, t + 1000000LL * below(2 * 86400), false);
        for (k = below(5), i = 0; i < k; i++)
                EMIT(T_CLICK, t + 1000000LL * below(2 * 86400), false);
        if (below(1000) == 0)
                EMIT(T_COMPLAINT, t + 1000000LL * below(86400), false);
        if (below(200) == 0)
                EMIT(T_UNSUB, t + 1000000LL * below(86400), false);
#undef EMIT
        return n;
}

static int
fill(struct store *s, unsigned long long events, unsigned long messages, unsigned days)
{
        int64_t now = time_now_us(), span = (int64_t) days * 86400 * 1000000, t0, t1 = time_mono_us();
        unsigned long long done = 0, next_report = 1000000;
        unsigned long m = 0;
        char received[TIME_ISO_LEN];
        struct buf b = { 0 };
        int i;

        while (done < events) {
                b.len = 0;
                buf_puts(&b, "[");
                t0 = now - span + (int64_t) ((double) span * (double) done / (double) events);
                /* About 1,000 events a job: many requests' worth in one batch. */
                for (i = 0; i < 100 && done < events; i++, m++)
                        done += message(&b, "m", m, (unsigned) (messages / 5), t0, now, i == 0);
                buf_puts(&b, "]");
                time_format_iso(t0 + 2000000, received);
                submit(s, b.data, b.len, received, 4);
                if (done >= next_report) {
                        fprintf(stderr, "fill: %llu events, %lu messages, %.0f events/s\n", done, m,
                                (double) done / ((double) (time_mono_us() - t1) / 1e6));
                        next_report += 1000000;
                }
        }
        drain();
        buf_done(&b);
        printf("filled %llu events over %lu messages in %.1f s:", done, m, (double) (time_mono_us() - t1) / 1e6);
        for (i = 0; i < T_N; i++)
                printf(" %s %.1f%%", type_names[i], 100.0 * (double) counts[i] / (double) done);
        printf("\n");
        return failed ? 1 : 0;
}

/* Bytes this process has written so far (/proc/self/io wchar). */
static unsigned long long
written(void)
{
        unsigned long long v = 0;
        char line[128];
        FILE *f = fopen("/proc/self/io", "re");

        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "wchar: %llu", &v) == 1)
                        break;
        if (f)
                fclose(f);
        return v;
}

/* One request a job, as the daemon's writer sees them under load. */
static int
rate(struct store *s, unsigned long long events, unsigned window)
{
        int64_t now = time_now_us(), t1;
        uint64_t c0 = store_commits(s);
        unsigned long long w0;
        char received[TIME_ISO_LEN], label[32];
        unsigned long long done = 0, n;
        unsigned long m = 0;
        struct buf b = { 0 };
        char *p, *end;
        int depth;

        snprintf(label, sizeof(label), "rate%lld", (long long) (now / 1000000));
        live = true;
        time_format_iso(now, received);
        w0 = written();
        t1 = time_mono_us();
        while (done < events) {
                b.len = 0;
                n = message(&b, label, m++, 200000, now - 3600LL * 1000000, now, true);
                /* Split the message's events into one body each. */
                for (p = b.data; n-- > 0 && done < events; p = end + 1, done++) {
                        while (*p == ',')
                                p++;
                        for (end = p, depth = 0; *end; end++)
                                if (*end == '{')
                                        depth++;
                                else if (*end == '}' && --depth == 0)
                                        break;
                        submit(s, p, (size_t) (end + 1 - p), received, window);
                }
        }
        drain();
        printf("rate: %llu events in %.2f s = %.0f events/s, %llu commits (%.1f events each), "
               "%.1f KiB written per event (this process)\n", done,
               (double) (time_mono_us() - t1) / 1e6, (double) done / ((double) (time_mono_us() - t1) / 1e6),
               (unsigned long long) (store_commits(s) - c0),
               (double) done / (double) (store_commits(s) - c0 ? store_commits(s) - c0 : 1),
               (double) (written() - w0) / 1024.0 / (double) done);
        buf_done(&b);
        return failed ? 1 : 0;
}

int
main(int argc, char **argv)
{
        struct store *s = NULL;
        char *err = NULL;
        bool is_fill = argc == 6 && strcmp(argv[2], "fill") == 0;
        int r;

        if (!is_fill && !((argc == 4 || argc == 5) && strcmp(argv[2], "rate") == 0)) {
                fprintf(stderr, "usage: fill DB fill EVENTS MESSAGES DAYS\n       fill DB rate EVENTS [IN_FLIGHT]\n(DB: an SQLite file, or a postgresql:// URI)\n");
                return 2;
        }
        malloc_keep();          /* as slhookd's main does */
        log_setup(LOG_FORMAT_TEXT, LOG_WARNING);
        if (store_open(&(struct db_conf) { .backend = db_is_uri(argv[1]) ? DB_POSTGRESQL : DB_SQLITE,
                                           .path = argv[1], .dsn = argv[1], .synchronous_full = !is_fill },
                       &s, &err) < 0 || store_start(s, 4096, 0) < 0) {
                fprintf(stderr, "fill: %s\n", err ? err : "cannot start the writer");
                free(err);
                if (s)
                        store_close(s);
                return 1;
        }
        r = is_fill ? fill(s, strtoull(argv[3], NULL, 10), strtoul(argv[4], NULL, 10),
                           (unsigned) strtoul(argv[5], NULL, 10))
                    : rate(s, strtoull(argv[3], NULL, 10), argc == 5 ? (unsigned) strtoul(argv[4], NULL, 10) : 256);
        store_close(s);
        if (failed)
                fprintf(stderr, "fill: %llu jobs failed\n", failed);
        return r;
}
