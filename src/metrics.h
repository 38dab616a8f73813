/* metrics: counters, gauges and histograms of the daemon, served in
 * Prometheus text format at GET /metrics, and GET /healthz, on a plain HTTP
 * listener of their own ([metrics] listen, loopback by default). One
 * process-wide registry: the recording functions are lock-free and safe
 * from any thread, and cheap enough for the request path. No secrets and
 * no addresses are ever recorded. */
#ifndef SLHOOKD_METRICS_H
#define SLHOOKD_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "cfg.h"
#include "health.h"


enum metrics_outcome { METRIC_STORED, METRIC_DUPLICATE, METRIC_QUARANTINED };

enum metrics_reject {
        REJECT_ALLOW_LIST, REJECT_UNAUTHORIZED, REJECT_BAD_REQUEST, REJECT_TOO_LARGE, REJECT_UNAVAILABLE,
        REJECT_NOT_FOUND, REJECT_METHOD, REJECT_FORBIDDEN,
        REJECT_COUNT
};

/* Set up the registry and count cfg's endpoints (before any thread
 * records); called again after a reload, it adds the endpoints that are
 * new (up to 256 in all). Main thread. */
void metrics_init(const struct cfg *cfg);

void metrics_event(const char *endpoint, const char *type, enum metrics_outcome o);
void metrics_reject(enum metrics_reject why);
void metrics_request(int64_t latency_us);
void metrics_commit(int64_t latency_us, unsigned jobs);
void metrics_self_test(bool passed, double rtt_ms);

/* One line for sd_notify STATUS=: events stored, refused, self-test. */
void metrics_summary(char *out, size_t len);

/* The store's writer: jobs queued or being written, and whether its last
 * transaction failed (until one commits). Any thread. */
void metrics_queue(unsigned depth);
void metrics_storage(bool failing);
/* Instances writing to the database, this one too (PostgreSQL). */
void metrics_writers(unsigned n);

/* Health, as the main thread's watchdog ticks see it. */
void metrics_health(bool writer_ok, bool listener_ok);
/* The listener stopped accepting for want of descriptors or memory (why),
 * or (NULL) a connection closed since, and it accepts again. Any thread. */
void metrics_accept_starved(const char *why);
/* The served certificate's notAfter (Unix seconds; 0: none). */
void metrics_certificate(long long expires);
/* [forward NAME]: n events delivered (at: Unix seconds), or an attempt
 * failed; the events after its cursor. Any thread. */
void metrics_forward_delivered(const char *name, unsigned n, long long at);
void metrics_forward_failure(const char *name);
void metrics_forward_lag(const char *name, long long events);
/* [health]: how many subaccounts are over each threshold (enum
 * health_flag), after an evaluation; NULL: none made (not exported). */
void metrics_health_flagged(const long long flagged[HF_COUNT]);

/* A reload was taken (ok) or refused. */
void metrics_reload(bool ok);

struct metrics_server;

/* Serve /, /metrics, /healthz (and /dashboard) on listen ("host:port"); database (SQLite's
 * file, and its WAL; NULL for PostgreSQL) is asked for its size.
 * self_test: /healthz also needs the last self-test to have passed.
 * Returns 0 or a negative errno with *reterr set. */
int metrics_start(const char *listen, const char *database, bool self_test, struct metrics_server **ret,
                  char **reterr);
struct metrics_server *metrics_stop(struct metrics_server *m);

/* Serve /dashboard from the database db names (copied, the first time)
 * with the thresholds and window of c (again on reload). NULL-safe. */
void metrics_dashboard(struct metrics_server *m, const struct db_conf *db, const struct health_conf *c);


#endif
