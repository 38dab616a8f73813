/* metrics: the registry and its HTTP listener. */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <microhttpd.h>

#include "dashboard.h"
#include "metrics.h"
#include "util.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *const types[] = {
        "Queued", "Sent", "Failed", "Deferred", "Complaint", "Click", "Open", "Unsubscribe", "other",
};
#define N_TYPES N(types)

static const char *const outcomes[] = { "stored", "duplicate", "quarantined" };

static const char *const reject_names[REJECT_COUNT] = {
        [REJECT_ALLOW_LIST] = "allow_list", [REJECT_UNAUTHORIZED] = "unauthorized",
        [REJECT_BAD_REQUEST] = "bad_request", [REJECT_TOO_LARGE] = "too_large",
        [REJECT_UNAVAILABLE] = "unavailable", [REJECT_NOT_FOUND] = "not_found",
        [REJECT_METHOD] = "method_not_allowed", [REJECT_FORBIDDEN] = "forbidden",
};

/* Upper bounds of the latency buckets, in microseconds (then +Inf). */
static const int64_t lat_bounds[] = {
        250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
};
static const int64_t batch_bounds[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024 };

struct hist {
        atomic_ullong b[N(lat_bounds) + 1];
        atomic_ullong count;
        atomic_ullong sum;              /* microseconds, or jobs */
};

/* Endpoints counted: those of the configuration, and those reloads add. */
#define MAX_ENDPOINTS 256
#define MAX_FORWARDS 256

static struct {
        char *endpoints[MAX_ENDPOINTS];
        atomic_size_t n_endpoints;      /* only grows; the names before it are set */
        atomic_ullong *events;          /* [endpoint][type][outcome] */
        atomic_ullong rejects[REJECT_COUNT];
        struct hist request, commit, batch;
        atomic_ullong commits;
        atomic_int self_test;           /* -1 none yet, 0 failed, 1 passed */
        atomic_llong self_test_at;      /* unix seconds */
        atomic_llong self_test_rtt_us;
        atomic_bool writer_ok, listener_ok;
        atomic_uint queue_depth;
        atomic_bool storage_failing;
        atomic_uint writers;            /* 0: not counted (SQLite) */
        _Atomic(const char *) starved;  /* accept() suspended: why (a static string) */
        atomic_llong last_stored[MAX_ENDPOINTS]; /* unix seconds of the newest event stored */
        atomic_llong cert_expiry;       /* unix seconds, 0: no certificate */
        atomic_int reload_ok;           /* the last reload: 1 taken, 0 refused */
        atomic_llong reload_at;         /* unix seconds of the last reload (or start) */
        atomic_uint queue_capacity;
        char *forwards[MAX_FORWARDS];
        atomic_size_t n_forwards;       /* only grows, as n_endpoints */
        atomic_ullong fw_delivered[MAX_FORWARDS], fw_failures[MAX_FORWARDS];
        atomic_llong fw_lag[MAX_FORWARDS], fw_last_success[MAX_FORWARDS];
        atomic_llong health_flagged[HF_COUNT];   /* servers over each threshold; -1: not evaluated yet */
        long long started;              /* unix seconds */
} reg = { .self_test = -1, .writer_ok = true, .listener_ok = true, .reload_ok = 1,
          .health_flagged = { -1, -1, -1 } };

void
metrics_health_flagged(const long long flagged[HF_COUNT])
{
        int i;

        for (i = 0; i < HF_COUNT; i++)
                atomic_store(&reg.health_flagged[i], flagged ? flagged[i] : -1);
}

void
metrics_init(const struct cfg *cfg)
{
        size_t i, e, n = atomic_load(&reg.n_endpoints);

        if (reg.events == NULL) {
                reg.events = xcalloc(MAX_ENDPOINTS * N_TYPES * N(outcomes), sizeof(*reg.events));
                reg.started = (long long) (time_now_us() / 1000000);
                atomic_store(&reg.reload_at, reg.started);
        }
        atomic_store(&reg.queue_capacity, cfg->queue_size);
        for (i = 0; i < cfg->n_endpoints && n < MAX_ENDPOINTS; i++) {
                for (e = 0; e < n && strcmp(reg.endpoints[e], cfg->endpoints[i].name) != 0; e++)
                        ;
                if (e < n)
                        continue;
                reg.endpoints[n] = xstrdup(cfg->endpoints[i].name);
                atomic_store(&reg.n_endpoints, ++n);    /* after the name: readers see it set */
        }
        n = atomic_load(&reg.n_forwards);
        for (i = 0; i < cfg->n_forwards && n < MAX_FORWARDS; i++) {
                for (e = 0; e < n && strcmp(reg.forwards[e], cfg->forwards[i].name) != 0; e++)
                        ;
                if (e < n)
                        continue;
                reg.forwards[n] = xstrdup(cfg->forwards[i].name);
                atomic_store(&reg.fw_lag[n], -1);
                atomic_store(&reg.n_forwards, ++n);
        }
}

static size_t
forward_index(const char *name)
{
        size_t i, n = atomic_load(&reg.n_forwards);

        for (i = 0; i < n && strcmp(reg.forwards[i], name) != 0; i++)
                ;
        return i < n ? i : SIZE_MAX;
}

void
metrics_forward_delivered(const char *name, unsigned n, long long at)
{
        size_t i = forward_index(name);

        if (i != SIZE_MAX) {
                atomic_fetch_add(&reg.fw_delivered[i], n);
                atomic_store(&reg.fw_last_success[i], at);
        }
}

void
metrics_forward_failure(const char *name)
{
        size_t i = forward_index(name);

        if (i != SIZE_MAX)
                atomic_fetch_add(&reg.fw_failures[i], 1);
}

void
metrics_forward_lag(const char *name, long long events)
{
        size_t i = forward_index(name);

        if (i != SIZE_MAX)
                atomic_store(&reg.fw_lag[i], events);
}

void
metrics_event(const char *endpoint, const char *type, enum metrics_outcome o)
{
        size_t e, t, n = atomic_load(&reg.n_endpoints);

        if (reg.events == NULL)
                return;
        for (e = 0; e < n && strcmp(reg.endpoints[e], endpoint) != 0; e++)
                ;
        for (t = 0; t < N_TYPES - 1 && (type == NULL || strcmp(types[t], type) != 0); t++)
                ;
        if (e < n) {
                atomic_fetch_add_explicit(&reg.events[(e * N_TYPES + t) * N(outcomes) + o], 1, memory_order_relaxed);
                if (o == METRIC_STORED)
                        atomic_store_explicit(&reg.last_stored[e], (long long) (time_now_us() / 1000000),
                                              memory_order_relaxed);
        }
}

void
metrics_certificate(long long expires)
{
        atomic_store(&reg.cert_expiry, expires > 0 ? expires : 0);
}

void
metrics_reload(bool ok)
{
        atomic_store(&reg.reload_ok, ok ? 1 : 0);
        atomic_store(&reg.reload_at, (long long) (time_now_us() / 1000000));
}

void
metrics_reject(enum metrics_reject why)
{
        atomic_fetch_add_explicit(&reg.rejects[why], 1, memory_order_relaxed);
}

static void
observe(struct hist *h, int64_t v, const int64_t *bounds, size_t n)
{
        size_t i;

        for (i = 0; i < n && v > bounds[i]; i++)
                ;
        atomic_fetch_add_explicit(&h->b[i], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&h->sum, (unsigned long long) (v > 0 ? v : 0), memory_order_relaxed);
}

void
metrics_request(int64_t latency_us)
{
        observe(&reg.request, latency_us, lat_bounds, N(lat_bounds));
}

void
metrics_commit(int64_t latency_us, unsigned jobs)
{
        observe(&reg.commit, latency_us, lat_bounds, N(lat_bounds));
        observe(&reg.batch, jobs, batch_bounds, N(batch_bounds));
        atomic_fetch_add_explicit(&reg.commits, 1, memory_order_relaxed);
}

void
metrics_self_test(bool passed, double rtt_ms)
{
        atomic_store(&reg.self_test, passed ? 1 : 0);
        atomic_store(&reg.self_test_at, (long long) (time_now_us() / 1000000));
        atomic_store(&reg.self_test_rtt_us, passed ? (long long) (rtt_ms * 1000) : 0);
}

void
metrics_summary(char *out, size_t len)
{
        unsigned long long stored = 0;
        size_t i;
        int st = atomic_load(&reg.self_test);

        for (i = 0; reg.events && i < atomic_load(&reg.n_endpoints) * N_TYPES; i++)
                stored += atomic_load(&reg.events[i * N(outcomes) + METRIC_STORED]);
        snprintf(out, len, "%llu events stored, %llu refused%s", stored,
                 atomic_load(&reg.rejects[REJECT_UNAUTHORIZED]) + atomic_load(&reg.rejects[REJECT_ALLOW_LIST]),
                 st < 0 ? "" : st ? "; last self-test passed" : "; last self-test FAILED");
}

void
metrics_accept_starved(const char *why)
{
        atomic_store(&reg.starved, why);
}

void
metrics_queue(unsigned depth)
{
        atomic_store(&reg.queue_depth, depth);
}

void
metrics_storage(bool failing)
{
        atomic_store(&reg.storage_failing, failing);
}

void
metrics_writers(unsigned n)
{
        atomic_store(&reg.writers, n);
}

void
metrics_health(bool writer_ok, bool listener_ok)
{
        atomic_store(&reg.writer_ok, writer_ok);
        atomic_store(&reg.listener_ok, listener_ok);
}

/* ---- the text ---- */

static void
hist_text(struct buf *b, const char *name, const char *help, const struct hist *h, bool seconds,
          const int64_t *bounds, size_t n)
{
        unsigned long long cum = 0;
        size_t i;

        buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
        for (i = 0; i <= n; i++) {
                cum += atomic_load(&h->b[i]);
                if (i == n)
                        buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, cum);
                else if (seconds)
                        buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, (double) bounds[i] / 1e6, cum);
                else
                        buf_printf(b, "%s_bucket{le=\"%lld\"} %llu\n", name, (long long) bounds[i], cum);
        }
        if (seconds)
                buf_printf(b, "%s_sum %.6f\n", name, (double) atomic_load(&h->sum) / 1e6);
        else
                buf_printf(b, "%s_sum %llu\n", name, atomic_load(&h->sum));
        buf_printf(b, "%s_count %llu\n", name, atomic_load(&h->count));
}

static off_t
size_of(const char *path)
{
        struct stat st;

        return stat(path, &st) == 0 ? st.st_size : 0;
}

/* The process's own gauges, as Prometheus' client libraries name them. */
static void
process_text(struct buf *b)
{
        struct rlimit rl;
        struct dirent *e;
        unsigned long long fds = 0;
        long pages = 0, rss = 0;
        FILE *f;
        DIR *d;

        if ((d = opendir("/proc/self/fd")) != NULL) {
                while ((e = readdir(d)) != NULL)
                        fds += e->d_name[0] != '.';
                closedir(d);
                fds--;                  /* opendir's own */
        }
        if ((f = fopen("/proc/self/statm", "re")) != NULL) {
                if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
                        rss = 0;
                fclose(f);
        }
        buf_printf(b, "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\n"
                   "process_open_fds %llu\n", fds);
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
                buf_printf(b, "# HELP process_max_fds The soft limit on file descriptors.\n"
                           "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n",
                           rl.rlim_cur == RLIM_INFINITY ? 0ULL : (unsigned long long) rl.rlim_cur);
        buf_printf(b, "# HELP process_start_time_seconds When the process started, Unix seconds.\n"
                   "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %lld\n"
                   "# HELP process_resident_memory_bytes Resident memory.\n"
                   "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %lld\n",
                   reg.started, (long long) rss * sysconf(_SC_PAGESIZE));
}

struct metrics_server {
        struct MHD_Daemon *mhd;
        char *database, *wal;
        bool self_test;
        /* /dashboard: its database (a read-only connection, opened when
         * first asked for; only the listener's one thread uses it) */
        pthread_mutex_t lock;           /* conf, health: set by metrics_dashboard */
        struct db_conf conf;
        bool dashboard;
        struct health_conf health;
        struct db *conn;
};

static char *
metrics_text(struct metrics_server *m)
{
        struct buf b = { 0 };
        unsigned queued = atomic_load(&reg.queue_depth), w;
        bool failing = atomic_load(&reg.storage_failing);
        size_t e, t, o, i, n = atomic_load(&reg.n_endpoints);

        buf_puts(&b, "# HELP slhookd_events_total Events by endpoint, type and outcome (stored, duplicate, "
                 "quarantined).\n# TYPE slhookd_events_total counter\n");
        for (e = 0; e < n; e++)
                for (t = 0; t < N_TYPES; t++)
                        for (o = 0; o < N(outcomes); o++) {
                                unsigned long long v = atomic_load(&reg.events[(e * N_TYPES + t) * N(outcomes) + o]);

                                if (v)
                                        buf_printf(&b, "slhookd_events_total{endpoint=\"%s\",type=\"%s\","
                                                   "outcome=\"%s\"} %llu\n", reg.endpoints[e], types[t], outcomes[o], v);
                        }
        buf_puts(&b, "# HELP slhookd_rejected_total Requests and connections refused, by reason.\n"
                 "# TYPE slhookd_rejected_total counter\n");
        for (i = 0; i < REJECT_COUNT; i++)
                buf_printf(&b, "slhookd_rejected_total{reason=\"%s\"} %llu\n", reject_names[i],
                           atomic_load(&reg.rejects[i]));
        hist_text(&b, "slhookd_request_duration_seconds", "Time from a request's first byte to its answer.",
                  &reg.request, true, lat_bounds, N(lat_bounds));
        hist_text(&b, "slhookd_commit_duration_seconds", "Time of one transaction, BEGIN to COMMIT with fsync.",
                  &reg.commit, true, lat_bounds, N(lat_bounds));
        hist_text(&b, "slhookd_batch_requests", "Requests stored by one transaction (group commit).", &reg.batch,
                  false, batch_bounds, N(batch_bounds));
        buf_printf(&b, "# HELP slhookd_commits_total Transactions committed.\n# TYPE slhookd_commits_total counter\n"
                   "slhookd_commits_total %llu\n", atomic_load(&reg.commits));
        buf_printf(&b, "# HELP slhookd_queue_depth Requests waiting for the writer.\n# TYPE slhookd_queue_depth gauge\n"
                   "slhookd_queue_depth %u\n", queued);
        buf_printf(&b, "# HELP slhookd_storage_failing 1 while the last transaction failed.\n"
                   "# TYPE slhookd_storage_failing gauge\nslhookd_storage_failing %d\n", failing);
        if ((w = atomic_load(&reg.writers)) > 0)
                buf_printf(&b, "# HELP slhookd_store_writers slhookd instances writing to this PostgreSQL database, "
                           "this one too.\n# TYPE slhookd_store_writers gauge\nslhookd_store_writers %u\n", w);
        if (m->database)        /* SQLite's: PostgreSQL's server reports its own */
                buf_printf(&b, "# HELP slhookd_database_bytes Size of the database file and its WAL.\n"
                           "# TYPE slhookd_database_bytes gauge\nslhookd_database_bytes %lld\n",
                           (long long) (size_of(m->database) + size_of(m->wal)));
        process_text(&b);
        buf_printf(&b, "# HELP slhookd_build_info The running version.\n# TYPE slhookd_build_info gauge\n"
                   "slhookd_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
        buf_printf(&b, "# HELP slhookd_queue_capacity Requests the writer's queue holds ([store] queue_size).\n"
                   "# TYPE slhookd_queue_capacity gauge\nslhookd_queue_capacity %u\n",
                   atomic_load(&reg.queue_capacity));
        buf_puts(&b, "# HELP slhookd_last_event_timestamp_seconds When the newest event was stored, by endpoint.\n"
                 "# TYPE slhookd_last_event_timestamp_seconds gauge\n");
        for (e = 0; e < n; e++)
                if (atomic_load(&reg.last_stored[e]) > 0)
                        buf_printf(&b, "slhookd_last_event_timestamp_seconds{endpoint=\"%s\"} %lld\n", reg.endpoints[e],
                                   (long long) atomic_load(&reg.last_stored[e]));
        if ((n = atomic_load(&reg.n_forwards)) > 0) {
                buf_puts(&b, "# HELP slhookd_forward_delivered_total Events delivered to a [forward NAME] (2xx).\n"
                         "# TYPE slhookd_forward_delivered_total counter\n");
                for (e = 0; e < n; e++)
                        buf_printf(&b, "slhookd_forward_delivered_total{forward=\"%s\"} %llu\n", reg.forwards[e],
                                   atomic_load(&reg.fw_delivered[e]));
                buf_puts(&b, "# HELP slhookd_forward_failures_total Attempts to deliver that failed (no 2xx).\n"
                         "# TYPE slhookd_forward_failures_total counter\n");
                for (e = 0; e < n; e++)
                        buf_printf(&b, "slhookd_forward_failures_total{forward=\"%s\"} %llu\n", reg.forwards[e],
                                   atomic_load(&reg.fw_failures[e]));
                buf_puts(&b, "# HELP slhookd_forward_lag_events Events stored after the forward's cursor.\n"
                         "# TYPE slhookd_forward_lag_events gauge\n");
                for (e = 0; e < n; e++)
                        if (atomic_load(&reg.fw_lag[e]) >= 0)
                                buf_printf(&b, "slhookd_forward_lag_events{forward=\"%s\"} %lld\n", reg.forwards[e],
                                           (long long) atomic_load(&reg.fw_lag[e]));
                buf_puts(&b, "# HELP slhookd_forward_last_success_timestamp_seconds When a delivery last "
                         "succeeded.\n# TYPE slhookd_forward_last_success_timestamp_seconds gauge\n");
                for (e = 0; e < n; e++)
                        if (atomic_load(&reg.fw_last_success[e]) > 0)
                                buf_printf(&b, "slhookd_forward_last_success_timestamp_seconds{forward=\"%s\"} %lld\n",
                                           reg.forwards[e], (long long) atomic_load(&reg.fw_last_success[e]));
        }
        if (atomic_load(&reg.health_flagged[0]) >= 0) {
                buf_puts(&b, "# HELP slhookd_health_servers_flagged Subaccounts (ServerIds) over a [health] "
                         "threshold in the window last evaluated.\n# TYPE slhookd_health_servers_flagged gauge\n");
                for (e = 0; e < HF_COUNT; e++)
                        buf_printf(&b, "slhookd_health_servers_flagged{flag=\"%s\"} %lld\n", health_flags[e],
                                   (long long) atomic_load(&reg.health_flagged[e]));
        }
        if (atomic_load(&reg.cert_expiry) > 0)
                buf_printf(&b, "# HELP slhookd_tls_certificate_expiry_timestamp_seconds When the served certificate "
                           "expires (notAfter).\n# TYPE slhookd_tls_certificate_expiry_timestamp_seconds gauge\n"
                           "slhookd_tls_certificate_expiry_timestamp_seconds %lld\n",
                           (long long) atomic_load(&reg.cert_expiry));
        buf_printf(&b, "# HELP slhookd_config_last_reload_successful 1 when the last reload was taken, 0 when "
                   "refused.\n# TYPE slhookd_config_last_reload_successful gauge\n"
                   "slhookd_config_last_reload_successful %d\n"
                   "# HELP slhookd_config_last_reload_timestamp_seconds When the configuration was last loaded "
                   "or refused.\n# TYPE slhookd_config_last_reload_timestamp_seconds gauge\n"
                   "slhookd_config_last_reload_timestamp_seconds %lld\n",
                   atomic_load(&reg.reload_ok), (long long) atomic_load(&reg.reload_at));
        if (atomic_load(&reg.self_test) >= 0)
                buf_printf(&b, "# HELP slhookd_self_test_passed 1 when the last self-test passed.\n"
                           "# TYPE slhookd_self_test_passed gauge\nslhookd_self_test_passed %d\n"
                           "# HELP slhookd_self_test_timestamp_seconds When the last self-test ended.\n"
                           "# TYPE slhookd_self_test_timestamp_seconds gauge\n"
                           "slhookd_self_test_timestamp_seconds %lld\n"
                           "# HELP slhookd_self_test_round_trip_seconds perform-test to test event stored.\n"
                           "# TYPE slhookd_self_test_round_trip_seconds gauge\n"
                           "slhookd_self_test_round_trip_seconds %.6f\n",
                           atomic_load(&reg.self_test), (long long) atomic_load(&reg.self_test_at),
                           (double) atomic_load(&reg.self_test_rtt_us) / 1e6);
        return b.data;
}

/* The first reason not to be healthy, or NULL. */
static const char *
unhealthy(struct metrics_server *m)
{
        const char *why;

        if (atomic_load(&reg.storage_failing))
                return "storage is failing";
        if (!atomic_load(&reg.writer_ok))
                return "the writer makes no progress";
        if (!atomic_load(&reg.listener_ok))
                return "the listener makes no progress";
        if ((why = atomic_load(&reg.starved)) != NULL)
                return why;
        if (m->self_test && atomic_load(&reg.self_test) == 0)
                return "the last self-test failed";
        return NULL;
}

static enum MHD_Result
answer(struct MHD_Connection *c, unsigned status, const char *type, char *body)
{
        struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        enum MHD_Result ret;

        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        if (strncmp(type, "text/html", 9) == 0) {
                MHD_add_response_header(r, "Content-Security-Policy", dashboard_csp());
                MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
                MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
                MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        }
        ret = MHD_queue_response(c, status, r);
        MHD_destroy_response(r);
        return ret;
}

/* One line about the writer, for the dashboard. */
static char *
storage_line(struct metrics_server *m)
{
        const char *why = unhealthy(m);

        return xasprintf("%s; %u requests queued for the writer (of %u), %llu commits since start", why ? why : "ok",
                         atomic_load(&reg.queue_depth), atomic_load(&reg.queue_capacity),
                         (unsigned long long) atomic_load(&reg.commits));
}

static enum MHD_Result
dashboard(struct metrics_server *m, struct MHD_Connection *c)
{
        const char *q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "q");
        struct health_conf h;
        char *page, *err = NULL, *storage;
        struct db_conf conf;
        bool on;

        pthread_mutex_lock(&m->lock);
        on = m->dashboard;
        h = m->health;
        conf = m->conf;
        pthread_mutex_unlock(&m->lock);
        if (!on)
                return answer(c, MHD_HTTP_NOT_FOUND, "application/json", xstrdup("{\"error\":\"not found\"}"));
        if (m->conn == NULL && db_open(&conf, DB_READONLY, &m->conn, &err) < 0) {
                page = xasprintf("the database cannot be read: %s\n", err);
                free(err);
                return answer(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", page);
        }
        storage = storage_line(m);
        page = dashboard_render(m->conn, &h, q, storage);
        free(storage);
        if (page == NULL) {
                page = xasprintf("the database cannot be read: %s: %s\n", db_name(m->conn), db_errmsg(m->conn));
                m->conn = db_close(m->conn);    /* the next request connects again */
                return answer(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", page);
        }
        return answer(c, MHD_HTTP_OK, "text/html; charset=utf-8", page);
}

void
metrics_dashboard(struct metrics_server *m, const struct db_conf *db, const struct health_conf *c)
{
        if (m == NULL)
                return;
        pthread_mutex_lock(&m->lock);
        m->health = *c;
        if (!m->dashboard) {
                /* The database does not change on reload. */
                m->conf = *db;
                m->conf.path = db->path ? xstrdup(db->path) : NULL;
                m->conf.dsn = db->dsn ? xstrdup(db->dsn) : NULL;
                m->conf.password = db->password ? xstrdup(db->password) : NULL;
                m->conf.upgrading = NULL;
                m->conf.timeout_ms = 10000;
                m->dashboard = true;
        }
        pthread_mutex_unlock(&m->lock);
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
           const char *data, size_t *size, void **con_cls)
{
        struct metrics_server *m = cls;
        const char *why;

        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
                return answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, "application/json", xstrdup("{\"error\":\"GET only\"}"));
        if (strcmp(url, "/") == 0)
                return answer(c, MHD_HTTP_OK, "text/html; charset=utf-8",
                              xstrdup("<!DOCTYPE html>\n<html><head><title>slhookd</title></head><body>\n"
                                      "<h1>slhookd " PACKAGE_VERSION "</h1>\n<ul>\n"
                                      "<li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>\n"
                                      "<li><a href=\"/healthz\">/healthz</a>: 200, or 503 with the reason</li>\n"
                                      "<li><a href=\"/dashboard\">/dashboard</a>: sending health per subaccount, "
                                      "events per hour</li>\n"
                                      "</ul>\n</body></html>\n"));
        if (strcmp(url, "/metrics") == 0)
                return answer(c, MHD_HTTP_OK, "text/plain; version=0.0.4", metrics_text(m));
        if (strcmp(url, "/healthz") == 0) {
                if ((why = unhealthy(m)) != NULL)
                        return answer(c, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json",
                                      xasprintf("{\"status\":\"unhealthy\",\"reason\":\"%s\"}", why));
                return answer(c, MHD_HTTP_OK, "application/json", xstrdup("{\"status\":\"ok\"}"));
        }
        if (strcmp(url, "/dashboard") == 0)
                return dashboard(m, c);
        return answer(c, MHD_HTTP_NOT_FOUND, "application/json", xstrdup("{\"error\":\"not found\"}"));
}

int
metrics_start(const char *listen, const char *database, bool self_test, struct metrics_server **ret,
              char **reterr)
{
        struct metrics_server *m = xcalloc(1, sizeof(*m));
        struct sockaddr_storage ss = { 0 };
        const char *colon = strrchr(listen, ':');
        char host[INET6_ADDRSTRLEN + 2];
        int64_t port;

        if (colon == NULL || (size_t) (colon - listen) >= sizeof(host) ||
            str_to_i64(colon + 1, strlen(colon + 1), 0, 65535, &port) < 0)
                goto bad;
        snprintf(host, sizeof(host), "%.*s", (int) (colon - listen), listen);
        if (host[0] == '[' && host[strlen(host) - 1] == ']') {
                memmove(host, host + 1, strlen(host));
                host[strlen(host) - 1] = '\0';
        }
        if (inet_pton(AF_INET, host, &((struct sockaddr_in *) &ss)->sin_addr) == 1) {
                ss.ss_family = AF_INET;
                ((struct sockaddr_in *) &ss)->sin_port = htons((uint16_t) port);
        } else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *) &ss)->sin6_addr) == 1) {
                ss.ss_family = AF_INET6;
                ((struct sockaddr_in6 *) &ss)->sin6_port = htons((uint16_t) port);
        } else
                goto bad;
        if (database) {
                m->database = xstrdup(database);
                m->wal = xasprintf("%s-wal", database);
        }
        m->self_test = self_test;
        pthread_mutex_init(&m->lock, NULL);
        m->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | (ss.ss_family == AF_INET6 ?
                                  MHD_USE_IPv6 : 0), (uint16_t) port, NULL, NULL, on_request, m,
                                  MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &ss,
                                  MHD_OPTION_CONNECTION_LIMIT, 64U,
                                  MHD_OPTION_CONNECTION_TIMEOUT, 10U,
                                  MHD_OPTION_END);
        if (m->mhd == NULL) {
                *reterr = xasprintf("[metrics] listen: cannot listen on %s", listen);
                metrics_stop(m);
                return -EADDRINUSE;
        }
        *ret = m;
        return 0;
bad:
        *reterr = xasprintf("[metrics] listen: '%s' is not address:port (e.g. 127.0.0.1:9464)", listen);
        free(m);
        return -EINVAL;
}

struct metrics_server *
metrics_stop(struct metrics_server *m)
{
        if (m) {
                if (m->mhd)
                        MHD_stop_daemon(m->mhd);
                db_close(m->conn);
                free((char *) m->conf.path);
                free((char *) m->conf.dsn);
                if (m->conf.password)
                        freezero((char *) m->conf.password, strlen(m->conf.password));
                pthread_mutex_destroy(&m->lock);
                free(m->database);
                free(m->wal);
                free(m);
        }
        return NULL;
}
