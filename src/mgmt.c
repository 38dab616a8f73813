/* mgmt: register the webhook and self-test it through the SocketLabs API. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "api.h"
#include "log.h"
#include "metrics.h"
#include "mgmt.h"
#include "util.h"

#define BACKOFF_FIRST_US (5LL * 1000000)
#define BACKOFF_MAX_US (300LL * 1000000)
#define WAIT_STEP_US (5 * 1000)
#define DB_POLL_STEPS 10                /* the database every 10 steps: 50 ms */
#define RECORD_WAIT_US (30LL * 1000000)

struct mgmt {
        const struct cfg *cfg;
        const struct cfg_endpoint *ep;
        struct http *http;
        struct store *store;
        struct api *api;
        char *secret_path;              /* where a generated secret is kept */
        char *unsent_path;              /* there while SocketLabs may not hold m->secret yet */
        char *secret;                   /* the secret to register: the endpoint's or generated */
        bool unsent;                    /* SocketLabs must be given m->secret (a PUT) */
        char *webhook_id;
        struct db *db;                  /* during a run: its own connection, or NULL */
        struct db_stmt *watch;          /* on it: webhook_status's test_events and last_passed_at */

        pthread_t thread;
        bool started;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        atomic_bool stop;

        /* the last outcome, to log changes only */
        bool have_last, last_passed;
        char last_error[200];
};

/* ---- the record of a run ---- */

struct run {
        struct store_webhook_status st;
        char error[200];
};

/* A run's record on its way through the writer: it owns what the job
 * points to, so that the thread can stop waiting for a stalled writer (and
 * even end) while the job is still queued. The writer and the thread each
 * hold a reference. */
struct ticket {
        struct store_job job;
        struct store_webhook_status st;
        char *endpoint, *webhook_id, *error;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        bool done;
        int refs;
};

static void
ticket_unref(struct ticket *t)
{
        int refs;

        pthread_mutex_lock(&t->mu);
        refs = --t->refs;
        pthread_mutex_unlock(&t->mu);
        if (refs > 0)
                return;
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv);
        free(t->endpoint);
        free(t->webhook_id);
        free(t->error);
        free(t);
}

static void
recorded(struct store_job *job)
{
        struct ticket *t = job->userdata;

        pthread_mutex_lock(&t->mu);
        t->done = true;
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&t->mu);
        ticket_unref(t);
}

/* Write the run to webhook_status through the writer, and wait for it
 * (RECORD_WAIT_US at most, and not past mgmt_stop). */
static void
record(struct mgmt *m, struct run *r)
{
        struct ticket *t = xcalloc(1, sizeof(*t));
        int64_t until = time_mono_us() + RECORD_WAIT_US;
        pthread_condattr_t ca;

        pthread_mutex_init(&t->mu, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&t->cv, &ca);
        pthread_condattr_destroy(&ca);
        t->refs = 2;
        t->st = r->st;
        t->st.webhook_id = t->webhook_id = r->st.webhook_id ? xstrdup(r->st.webhook_id) : NULL;
        t->st.error = t->error = r->st.error ? xstrdup(r->st.error) : NULL;
        t->job.endpoint = t->endpoint = xstrdup(m->ep->name);
        t->job.status = &t->st;
        t->job.done = recorded;
        t->job.userdata = t;
        time_now_iso(t->job.received_at);
        if (store_submit(m->store, &t->job) < 0) {
                log_full(LOG_WARNING, LOG_MID_MGMT, NULL, "cannot record the self-test: the store is busy");
                t->refs = 1;
                ticket_unref(t);
                return;
        }
        pthread_mutex_lock(&t->mu);
        while (!t->done && !atomic_load(&m->stop) && time_mono_us() < until) {
                int64_t step = time_mono_us() + 50 * 1000;
                struct timespec ts = time_ts(step);

                pthread_cond_timedwait(&t->cv, &t->mu, &ts);
        }
        if (!t->done)
                log_full(LOG_WARNING, LOG_MID_MGMT, NULL, "the self-test's record is not written yet: the database "
                         "is slow; going on");
        pthread_mutex_unlock(&t->mu);
        ticket_unref(t);
}

/* Log and report the outcome; a repeated outcome only at debug level. */
static void
report(struct mgmt *m, struct run *r)
{
        struct log_fields f = LOG_FIELDS_NONE;
        bool changed = !m->have_last || m->last_passed != r->st.passed ||
                       (!r->st.passed && strcmp(m->last_error, r->error) != 0);

        f.endpoint = m->ep->name;
        f.status = (int) r->st.http_status;
        if (r->st.rtt_ms >= 0)
                f.latency_us = (int64_t) (r->st.rtt_ms * 1000);
        if (r->st.passed) {
                log_full(changed ? LOG_NOTICE : LOG_DEBUG, LOG_MID_MGMT, &f,
                         "self-test passed: webhook %s, test event stored %.0f ms after perform-test",
                         m->webhook_id ? m->webhook_id : "?", r->st.rtt_ms);
                sd_notifyf(0, "STATUS=self-test passed (webhook %s, %.0f ms)", m->webhook_id ? m->webhook_id : "?",
                           r->st.rtt_ms);
        } else {
                log_full(changed ? LOG_ERR : LOG_DEBUG, LOG_MID_MGMT, &f, "self-test failed at %s: %s",
                         r->st.step, r->error);
                sd_notifyf(0, "STATUS=self-test failed at %s: %s", r->st.step, r->error);
        }
        metrics_self_test(r->st.passed, r->st.rtt_ms);
        m->have_last = true;
        m->last_passed = r->st.passed;
        snprintf(m->last_error, sizeof(m->last_error), "%s", r->error);
}

static bool
fail(struct run *r, const char *step, const struct api_call *c, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static bool
fail(struct run *r, const char *step, const struct api_call *c, const char *fmt, ...)
{
        va_list ap;

        r->st.passed = false;
        r->st.step = step;
        if (c)
                r->st.http_status = c->http_status;
        va_start(ap, fmt);
        vsnprintf(r->error, sizeof(r->error), fmt, ap);
        va_end(ap);
        r->st.error = r->error;
        return false;
}

/* ---- the steps ---- */

/* A new secret from the API, kept in the state directory (0600) and
 * accepted by the listener from now on. */
static bool
new_secret(struct mgmt *m, struct run *r)
{
        struct api_call c;
        char *s = NULL, *line;
        int e;

        if (api_generate_secret(m->api, &s, &c) < 0)
                return fail(r, "secret", &c, "generate-secret-key: %s", c.error);
        line = xasprintf("%s\n", s);
        e = file_write_atomic(m->secret_path, line, strlen(line), 0600);
        freezero(line, strlen(line));
        if (e < 0) {
                freezero(s, strlen(s));
                return fail(r, "secret", NULL, "cannot keep the new secret in %s: %s", m->secret_path, strerror(-e));
        }
        /* Until SocketLabs holds it: a PUT at every run, across restarts. */
        if ((e = file_write_atomic(m->unsent_path, "", 0, 0600)) < 0)
                log_full(LOG_WARNING, LOG_MID_MGMT, NULL, "cannot write %s: %s", m->unsent_path, strerror(-e));
        m->unsent = true;
        http_set_secret(m->http, m->ep->name, s);
        if (m->secret)
                freezero(m->secret, strlen(m->secret));
        m->secret = s;
        log_full(LOG_NOTICE, LOG_MID_MGMT, NULL, "[endpoint %s] has a new secret from SocketLabs, kept in %s",
                 m->ep->name, m->secret_path);
        return true;
}

/* SocketLabs holds the secret now. */
static void
secret_sent(struct mgmt *m)
{
        if (unlink(m->unsent_path) < 0 && errno != ENOENT)
                log_full(LOG_WARNING, LOG_MID_MGMT, NULL, "cannot remove %s: %s", m->unsent_path, strerror(errno));
        m->unsent = false;
}

/* Find the webhook, or create it (with a new secret if the endpoint has
 * none), and give it the secret generated for it until that went
 * through. */
static bool
registered(struct mgmt *m, struct run *r)
{
        const char *url = m->cfg->api_public_url;
        struct api_call c;
        char *id = NULL;

        if (m->webhook_id && !m->unsent)
                return true;
        if (m->webhook_id) {
                if (api_update_webhook(m->api, m->webhook_id, url, m->secret, &c) < 0)
                        return fail(r, "secret", &c, "giving webhook %s the new secret: %s", m->webhook_id, c.error);
                secret_sent(m);
                return true;
        }
        if (m->cfg->api_webhook_id) {
                if (api_get_webhook(m->api, m->cfg->api_webhook_id, &c) < 0)
                        return fail(r, "register", &c, "webhook %s: %s", m->cfg->api_webhook_id, c.error);
                id = xstrdup(m->cfg->api_webhook_id);
        } else if (api_find_webhook(m->api, url, &id, &c) < 0)
                return fail(r, "register", &c, "listing webhooks: %s", c.error);
        if (m->secret == NULL && !new_secret(m, r))
                goto fail;
        if (id == NULL) {
                if (api_create_webhook(m->api, url, m->secret, &id, &c) < 0)
                        return fail(r, "register", &c, "creating the webhook for %s: %s", url, c.error);
                log_full(LOG_NOTICE, LOG_MID_MGMT, NULL, "created webhook %s for %s", id, url);
        } else if (m->unsent && api_update_webhook(m->api, id, url, m->secret, &c) < 0) {
                fail(r, "secret", &c, "giving webhook %s the new secret: %s", id, c.error);
                goto fail;
        }
        if (m->unsent)
                secret_sent(m);
        m->webhook_id = id;
        r->st.registered = true;
        r->st.webhook_id = id;
        return true;
fail:
        free(id);
        return false;
}

/* Sleep up to us, or until stopped; true when stopped. */
static bool
pause_for(struct mgmt *m, int64_t us)
{
        int64_t until = time_mono_us() + us;
        struct timespec ts = time_ts(until);

        pthread_mutex_lock(&m->lock);
        while (!atomic_load(&m->stop) && time_mono_us() < until)
                pthread_cond_timedwait(&m->wake, &m->lock, &ts);
        pthread_mutex_unlock(&m->lock);
        return atomic_load(&m->stop);
}

/* The test events stored for our endpoint by any instance (webhook_status),
 * and when the self-test last passed (any instance; "" never): 0, or -EIO. */
static int
db_tests(struct mgmt *m, int64_t *n, char passed_at[TIME_ISO_LEN])
{
        struct db_stmt *st = m->watch;
        int k;

        *n = 0;
        if (passed_at)
                passed_at[0] = '\0';
        db_bind_text(st, 1, m->ep->name);
        if ((k = db_step(st)) == 1) {
                *n = db_int(st, 0);
                if (passed_at && db_text(st, 1))
                        snprintf(passed_at, TIME_ISO_LEN, "%s", db_text(st, 1));
        }
        db_reset(st);
        return k < 0 ? -EIO : 0;
}

/* perform-test, then the test event must be stored: by our own listener, or
 * (m->watch, several instances behind one URL) by any instance. */
static bool
self_test(struct mgmt *m, struct run *r)
{
        int64_t t0, deadline, in_db0 = 0, in_db;
        uint64_t stored0, refused0, stored, refused;
        struct api_call c;
        bool watch = m->watch != NULL;
        unsigned step;
        int e;

        if (watch && db_tests(m, &in_db0, NULL) < 0) {
                log_full(LOG_WARNING, LOG_MID_MGMT, NULL, "self-test: cannot read webhook_status: %s; watching "
                         "this instance's listener only", db_errmsg(m->db));
                watch = false;
        }
        http_test_events(m->http, &stored0, &refused0);
        t0 = time_mono_us();
        if ((e = api_perform_test(m->api, m->webhook_id, "Sent", &c)) < 0) {
                if (e == -ENOENT) {
                        /* Deleted at SocketLabs: register again next time. */
                        free(m->webhook_id);
                        m->webhook_id = NULL;
                }
                return fail(r, "perform-test", &c, "perform-test: %s", c.error);
        }
        r->st.http_status = c.http_status;
        deadline = t0 + (int64_t) m->cfg->api_self_test_timeout * 1000000;
        for (step = 1;; step++) {
                http_test_events(m->http, &stored, &refused);
                if (stored > stored0)
                        break;
                if (watch && step % DB_POLL_STEPS == 0 && db_tests(m, &in_db, NULL) == 0 && in_db > in_db0)
                        break;
                if (refused > refused0)
                        return fail(r, "wait", NULL, "the test event came with a wrong SecretKey (answered 401)");
                if (time_mono_us() >= deadline)
                        return fail(r, "wait", NULL, "the test event was not received within %u s",
                                    m->cfg->api_self_test_timeout);
                if (pause_for(m, WAIT_STEP_US))
                        return fail(r, "wait", NULL, "stopped");
        }
        r->st.rtt_ms = (double) (time_mono_us() - t0) / 1000.0;
        r->st.passed = true;
        r->st.step = "wait";
        return true;
}

/* Several instances on one database (PostgreSQL): whether another one runs
 * the self-test now (it holds the lock) or passed it less than nine tenths
 * of an interval ago (1: leave it to them, why says so), or this one runs
 * it (0). -1: cannot tell, the database is lost (PostgreSQL): the run fails
 * without a call to the API, for the instances cannot agree on who runs it. */
static int
elsewhere(struct mgmt *m, char why[TIME_ISO_LEN + 64])
{
        char passed[TIME_ISO_LEN], since[TIME_ISO_LEN];
        bool shared = m->cfg->backend == DB_POSTGRESQL;
        int64_t n;
        int k;

        if (m->db == NULL)
                return shared ? -1 : 0;         /* connect_db() said why */
        if ((k = db_hold(m->db, STORE_LOCK(3))) == 0) {
                snprintf(why, TIME_ISO_LEN + 64, "another instance is running it");
                return 1;
        }
        if (k < 0) {
                log_full(LOG_WARNING, LOG_MID_MGMT, NULL, "self-test: cannot take its lock: %s", db_errmsg(m->db));
                return shared ? -1 : 0;
        }
        if (!shared)
                return 0;
        time_format_iso(time_now_us() - (int64_t) m->cfg->api_self_test_interval * 900000, since);
        if (db_tests(m, &n, passed) == 0 && strcmp(passed, since) > 0) {
                snprintf(why, TIME_ISO_LEN + 64, "it passed at %s", passed);
                return 1;
        }
        return 0;
}

/* Its own connection, for the lock and to see test events arrive; made
 * at each run, so a database that went away is found again. */
static void
connect_db(struct mgmt *m)
{
        char *err = NULL;

        if (store_connect(m->store, DB_READONLY, &m->db, &err) < 0) {
                log_full(LOG_WARNING, LOG_MID_MGMT, NULL, "self-test: %s", err);
                free(err);
        } else if (db_prepare(m->db, "SELECT test_events, last_passed_at FROM webhook_status WHERE endpoint = ?",
                              0, &m->watch) < 0) {
                log_full(LOG_WARNING, LOG_MID_MGMT, NULL, "self-test: cannot read webhook_status: %s",
                         db_errmsg(m->db));
                m->db = db_close(m->db);
        }
}

static void
disconnect_db(struct mgmt *m)
{
        db_finalize(m->watch);
        m->watch = NULL;
        m->db = db_close(m->db);
}

static bool
run_once(struct mgmt *m)
{
        struct run r = { .st = { .rtt_ms = -1 } };
        char why[TIME_ISO_LEN + 64];
        bool ok;

        connect_db(m);
        switch (elsewhere(m, why)) {
        case 1:
                log_full(LOG_INFO, LOG_MID_MGMT, NULL, "self-test left to the other instances: %s", why);
                sd_notifyf(0, "STATUS=self-test left to the other instances: %s", why);
                disconnect_db(m);
                return true;
        case -1:
                log_full(LOG_WARNING, LOG_MID_MGMT, NULL, "self-test postponed: the database is not reachable");
                sd_notifyf(0, "STATUS=self-test postponed: the database is not reachable");
                disconnect_db(m);
                return false;
        }
        ok = registered(m, &r) && self_test(m, &r);
        if (!atomic_load(&m->stop)) {
                report(m, &r);          /* the log line first: it never lags the row */
                record(m, &r);          /* under the lock: the next instance sees it */
        }
        disconnect_db(m);
        return ok;
}

static void *
mgmt_main(void *arg)
{
        struct mgmt *m = arg;
        int64_t interval = (int64_t) m->cfg->api_self_test_interval * 1000000, backoff = 0;

        while (!atomic_load(&m->stop)) {
                if (run_once(m))
                        backoff = 0;
                else
                        backoff = backoff ? backoff * 2 : BACKOFF_FIRST_US;
                if (backoff > BACKOFF_MAX_US)
                        backoff = BACKOFF_MAX_US;
                if (pause_for(m, backoff && backoff < interval ? backoff : interval))
                        break;
        }
        return NULL;
}

/* ---- start and stop ---- */

static char *
read_key(const struct cfg *cfg, char **reterr)
{
        const char *creds = getenv("CREDENTIALS_DIRECTORY");
        char *data = NULL, *path = NULL, *key;
        size_t len;
        int r = file_read(cfg->api_key_file, 4096, &data, &len), fr = r;

        if (r < 0 && creds && creds[0]) {
                path = xasprintf("%s/api-key", creds);
                r = file_read(path, 4096, &data, &len);
                free(path);
        }
        if (r < 0) {
                *reterr = xasprintf("%s: [api] key_file: cannot read '%s': %s", cfg->file, cfg->api_key_file,
                                    strerror(-fr));
                return NULL;
        }
        key = xstrdup(str_trim(data));
        freezero(data, len);
        if (key[0] == '\0' && fr < 0)   /* the unit's empty default: no key file */
                *reterr = xasprintf("%s: [api] key_file: cannot read '%s': %s, and the credential api-key "
                                    "is empty", cfg->file, cfg->api_key_file, strerror(-fr));
        else if (key[0] == '\0' || strpbrk(key, "\r\n"))
                *reterr = xasprintf("%s: [api] key_file: '%s' does not hold one API key", cfg->file,
                                    fr < 0 ? "$CREDENTIALS_DIRECTORY/api-key" : cfg->api_key_file);
        else
                return key;
        freezero(key, strlen(key));
        return NULL;
}

int
mgmt_start(const struct cfg *cfg, struct http *http, struct store *store, struct mgmt **ret, char **reterr)
{
        struct mgmt *m = xcalloc(1, sizeof(*m));
        pthread_condattr_t ca;
        char *key;
        size_t i;
        int r;

        for (i = 0; i < cfg->n_endpoints; i++)
                if (strcmp(cfg->endpoints[i].name, cfg->api_endpoint) == 0)
                        m->ep = &cfg->endpoints[i];
        if (m->ep == NULL || (key = read_key(cfg, reterr)) == NULL) {
                if (m->ep == NULL)
                        *reterr = xasprintf("%s: [api] endpoint: no [endpoint %s]", cfg->file, cfg->api_endpoint);
                free(m);
                return -EINVAL;
        }
        m->cfg = cfg;
        m->http = http;
        m->store = store;
        m->api = api_new(cfg->api_base_url, key, cfg->api_ca_file, cfg->api_self_test_timeout, &m->stop);
        freezero(key, strlen(key));
        /* A secret generated by an earlier run is among the endpoint's
         * (cfg reads the state directory), so the listener accepts it
         * whether this thread runs or not. */
        m->secret_path = cfg_state_secret(cfg, m->ep->name);
        m->unsent_path = xasprintf("%s.unsent", m->secret_path);
        m->unsent = access(m->unsent_path, F_OK) == 0;
        if (m->ep->n_secrets > 0)
                m->secret = xstrdup(m->ep->secrets[0]);
        pthread_mutex_init(&m->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&m->wake, &ca);
        pthread_condattr_destroy(&ca);
        if ((r = pthread_create(&m->thread, NULL, mgmt_main, m)) != 0) {
                *reterr = xasprintf("cannot start the management thread: %s", strerror(r));
                mgmt_stop(m);
                return -r;
        }
        m->started = true;
        *ret = m;
        return 0;
}

struct mgmt *
mgmt_stop(struct mgmt *m)
{
        if (m == NULL)
                return NULL;
        pthread_mutex_lock(&m->lock);
        atomic_store(&m->stop, true);
        pthread_cond_broadcast(&m->wake);
        pthread_mutex_unlock(&m->lock);
        if (m->started)
                pthread_join(m->thread, NULL);
        api_free(m->api);
        if (m->secret)
                freezero(m->secret, strlen(m->secret));
        free(m->secret_path);
        free(m->unsent_path);
        free(m->webhook_id);
        pthread_mutex_destroy(&m->lock);
        pthread_cond_destroy(&m->wake);
        free(m);
        return NULL;
}
