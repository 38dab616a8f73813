/* forward: [forward NAME] delivery threads (see forward.h). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "forward.h"
#include "log.h"
#include "metrics.h"
#include "out.h"
#include "query.h"
#include "util.h"

#define BACKOFF_FIRST_MS 1000
#define BACKOFF_CAP_MS (10 * 60 * 1000)
#define POLL_MS 250             /* caught up: look for new events this often */
#define REWIND_CHECK_MS 1000    /* how soon a rewind is seen, whatever the state */
#define LOCK_RETRY_MS 5000      /* PostgreSQL: another instance forwards; try again */

struct forwarder;

struct dest {
        struct forwarder *fw;
        const struct cfg_forward *c;
        pthread_t thread;
        bool started;
        struct query *q;        /* the events, read only */
        struct db *db;          /* the cursor */
        struct db_stmt *get, *put, *err;
        CURL *curl;
        struct query_args args;
        struct query_follow f;
        int64_t persisted;      /* the cursor as the database has it */
        int64_t rewound;
        int64_t last_put_us;
        int64_t lag_at_us;      /* when the lag gauge was last set */
        bool failing;
        char error[256];
};

struct forwarder {
        struct cfg *cfg;        /* a reference: the destinations point into it */
        struct db_conf db;
        char *password;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        atomic_bool stop;
        struct dest *d;
        size_t n;
};

char *
forward_signature(const unsigned char *key, size_t key_len, const char *id, long long timestamp, const char *body,
                  size_t len)
{
        unsigned char mac[32];
        gnutls_hmac_hd_t h;
        gnutls_datum_t in = { mac, sizeof(mac) }, out = { NULL, 0 };
        char ts[24], *sig;

        snprintf(ts, sizeof(ts), "%lld", timestamp);
        if (gnutls_hmac_init(&h, GNUTLS_MAC_SHA256, key, key_len) < 0)
                return NULL;
        gnutls_hmac(h, id, strlen(id));
        gnutls_hmac(h, ".", 1);
        gnutls_hmac(h, ts, strlen(ts));
        gnutls_hmac(h, ".", 1);
        gnutls_hmac(h, body, len);
        gnutls_hmac_deinit(h, mac);
        if (gnutls_base64_encode2(&in, &out) < 0)
                return NULL;
        sig = xasprintf("v1,%.*s", (int) out.size, (const char *) out.data);
        gnutls_free(out.data);
        return sig;
}

long long
forward_lock_key(const char *name)
{
        /* FNV-1a, in a range of its own (the management thread's lock is
         * another constant). */
        unsigned long long h = 1469598103934665603ull;

        for (; *name; name++)
                h = (h ^ (unsigned char) *name) * 1099511628211ull;
        return (long long) ((h & 0x0000ffffffffffffull) | 0x5f0000000000000ull);
}

/* Wait ms, or less if told to stop. Returns false once stopping. */
static bool
nap(struct forwarder *fw, unsigned ms)
{
        struct timespec ts = time_ts(time_mono_us() + (int64_t) ms * 1000);

        pthread_mutex_lock(&fw->lock);
        while (!atomic_load(&fw->stop) && pthread_cond_timedwait(&fw->wake, &fw->lock, &ts) == 0)
                ;
        pthread_mutex_unlock(&fw->lock);
        return !atomic_load(&fw->stop);
}

static void
now_iso(char out[TIME_ISO_LEN])
{
        time_now_iso(out);
}

/* One line per change of state, not per attempt. */
static void
set_failing(struct dest *d, bool failing, const char *why)
{
        struct log_fields lf = LOG_FIELDS_NONE;

        lf.forward = d->c->name;
        if (failing && !d->failing)
                log_full(LOG_WARNING, LOG_MID_FORWARD, &lf, "forward %s: delivery to %s fails, events wait: %s",
                         d->c->name, d->c->url, why);
        else if (!failing && d->failing)
                log_full(LOG_NOTICE, LOG_MID_FORWARD, &lf, "forward %s: delivery to %s works again", d->c->name,
                         d->c->url);
        d->failing = failing;
}

static void
disconnect(struct dest *d)
{
        db_finalize(d->get);
        db_finalize(d->put);
        db_finalize(d->err);
        d->get = d->put = d->err = NULL;
        d->db = db_close(d->db);
        d->q = query_close(d->q);
}

/* The cursor row: made when the destination is new (after the newest
 * event: history only by a rewind). 1 read, 0 failed (d->error says why). */
static int
cursor_read(struct dest *d, int64_t *cursor, int64_t *rewound)
{
        int rc;

        db_bind_text(d->get, 1, d->c->name);
        rc = db_step(d->get);
        if (rc > 0) {
                *cursor = db_int(d->get, 0);
                *rewound = db_int(d->get, 1);
        }
        db_reset(d->get);
        if (rc < 0)
                snprintf(d->error, sizeof(d->error), "reading its cursor: %s", db_errmsg(d->db));
        return rc;
}

/* A destination's cursor, unless it has one: after the newest event. */
#define CURSOR_NEW_SQL "INSERT INTO forward_cursors (forward, cursor, created_at, updated_at) " \
        "SELECT ?1, coalesce(max(id), 0), ?2, ?2 FROM events WHERE true ON CONFLICT (forward) DO NOTHING"

/* The cursors of the destinations that have none, made now: forward_start
 * runs before the listener starts (and at a reload), so a new destination
 * starts after the newest event stored when the configuration naming it
 * was taken, however late its thread gets to the database (on PostgreSQL
 * it waits while another instance holds its lock). Should this fail, each
 * thread makes its own when it connects. */
static void
cursors_new(struct forwarder *fw)
{
        struct db_conf wc = fw->db;
        struct db *db = NULL;
        struct db_stmt *ins = NULL;
        char *err = NULL, now[TIME_ISO_LEN];
        size_t i;
        int r = -EIO;

        wc.synchronous_full = false;
        if (db_open(&wc, 0, &db, &err) == 0 && db_prepare(db, CURSOR_NEW_SQL, 0, &ins) == 0 && db_begin(db) == 0) {
                now_iso(now);
                for (i = 0, r = 0; i < fw->n && r == 0; i++) {
                        db_bind_text(ins, 1, fw->d[i].c->name);
                        db_bind_text(ins, 2, now);
                        r = db_run(ins) < 0 ? -EIO : 0;
                }
                if (r == 0)
                        r = db_commit(db);
                if (r < 0)
                        db_rollback(db);
        }
        if (r < 0)
                log_full(LOG_WARNING, LOG_MID_FORWARD, NULL, "forwarding: cannot write the new destinations' cursors "
                         "now (%s); each starts after the newest event when its thread connects",
                         err ? err : db ? db_errmsg(db) : "no database");
        free(err);
        db_finalize(ins);
        db_close(db);
}

static int
connect_dest(struct dest *d)
{
        struct forwarder *fw = d->fw;
        struct db_conf wc = fw->db;
        struct db_stmt *ins = NULL;
        char *err = NULL, now[TIME_ISO_LEN];
        int rc;

        /* The cursor's writes need no fsync of their own: a cursor lost to a
         * power cut sends a few events again, which at-least-once allows. */
        wc.synchronous_full = false;
        if (query_open(&fw->db, &d->q, &err) < 0 || db_open(&wc, 0, &d->db, &err) < 0) {
                snprintf(d->error, sizeof(d->error), "%s", err);
                free(err);
                disconnect(d);
                return -EIO;
        }
        if (db_backend(d->db) == DB_POSTGRESQL && (rc = db_hold(d->db, forward_lock_key(d->c->name))) <= 0) {
                snprintf(d->error, sizeof(d->error), "%s", rc < 0 ? db_errmsg(d->db) : "");
                disconnect(d);
                return rc < 0 ? -EIO : -EBUSY;
        }
        if (db_prepare(d->db, "SELECT cursor, rewound FROM forward_cursors WHERE forward = ?1", 0, &d->get) < 0 ||
            db_prepare(d->db, "UPDATE forward_cursors SET cursor = CAST(?2 AS bigint), updated_at = ?3, "
                       "delivered = delivered + CAST(?4 AS bigint), last_success_at = coalesce(?5, last_success_at), "
                       "last_error = CASE WHEN ?5 IS NULL THEN last_error END "
                       "WHERE forward = ?1 AND rewound = CAST(?6 AS bigint)", 0, &d->put) < 0 ||
            db_prepare(d->db, "UPDATE forward_cursors SET last_error = ?2, last_error_at = ?3 WHERE forward = ?1", 0,
                       &d->err) < 0 ||
            db_prepare(d->db, CURSOR_NEW_SQL, 0, &ins) < 0)
                goto fail;
        now_iso(now);
        db_bind_text(ins, 1, d->c->name);
        db_bind_text(ins, 2, now);
        if (db_begin(d->db) < 0 || db_run(ins) < 0 || db_commit(d->db) < 0) {
                db_rollback(d->db);
                goto fail;
        }
        db_finalize(ins);
        if (cursor_read(d, &d->persisted, &d->rewound) <= 0)
                goto fail_read;
        query_follow_done(&d->f);
        d->f = (struct query_follow) { .cursor = d->persisted };
        return 0;
fail:
        snprintf(d->error, sizeof(d->error), "%s", db_errmsg(d->db));
fail_read:
        db_finalize(ins);
        disconnect(d);
        return -EIO;
}

/* Write the cursor: delivered events (n > 0), or passed ones. 0, or
 * -ESTALE when a rewind came in between (the cursor then stays as the
 * rewind set it), or -EIO. */
static int
cursor_put(struct dest *d, unsigned n)
{
        char c[24], dn[24], rw[24], now[TIME_ISO_LEN];
        int changed;

        snprintf(c, sizeof(c), "%lld", (long long) d->f.cursor);
        snprintf(dn, sizeof(dn), "%u", n);
        snprintf(rw, sizeof(rw), "%lld", (long long) d->rewound);
        now_iso(now);
        db_bind_text(d->put, 1, d->c->name);
        db_bind_text(d->put, 2, c);
        db_bind_text(d->put, 3, now);
        db_bind_text(d->put, 4, dn);
        db_bind_text(d->put, 5, n ? now : NULL);
        db_bind_text(d->put, 6, rw);
        if (db_begin(d->db) < 0 || (changed = db_run(d->put)) < 0 || db_commit(d->db) < 0) {
                snprintf(d->error, sizeof(d->error), "writing its cursor: %s", db_errmsg(d->db));
                db_rollback(d->db);
                return -EIO;
        }
        d->last_put_us = time_mono_us();
        if (changed == 0)
                return -ESTALE;
        d->persisted = d->f.cursor;
        return 0;
}

static void
error_put(struct dest *d)
{
        char now[TIME_ISO_LEN];

        now_iso(now);
        db_bind_text(d->err, 1, d->c->name);
        db_bind_text(d->err, 2, d->error);
        db_bind_text(d->err, 3, now);
        if (db_begin(d->db) < 0 || db_run(d->err) < 0 || db_commit(d->db) < 0)
                db_rollback(d->db);
}

/* A rewind (slhookctl forward rewind) since we read the cursor: take its. */
static int
check_rewind(struct dest *d)
{
        int64_t cursor, rewound;

        if (cursor_read(d, &cursor, &rewound) <= 0)
                return -EIO;
        if (rewound != d->rewound) {
                struct log_fields lf = LOG_FIELDS_NONE;

                lf.forward = d->c->name;
                log_full(LOG_NOTICE, LOG_MID_FORWARD, &lf, "forward %s: rewound: the next event is the first after "
                         "id %lld", d->c->name, (long long) cursor);
                d->rewound = rewound;
                d->persisted = cursor;
                query_follow_done(&d->f);
                d->f = (struct query_follow) { .cursor = cursor };
        }
        return 0;
}

static size_t
on_data(char *p, size_t size, size_t n, void *arg)
{
        (void) p;
        (void) arg;
        return size * n;        /* the answer's body is not kept */
}

static int
on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t e)
{
        (void) a;
        (void) b;
        (void) c;
        (void) e;
        return atomic_load(&((struct forwarder *) arg)->stop);
}

/* POST body; true on a 2xx, else d->error says what came back. */
static bool
post(struct dest *d, const char *id, const char *body, size_t len)
{
        const struct cfg_forward *c = d->c;
        struct curl_slist *hdr = NULL;
        long long ts = (long long) (time_now_us() / 1000000);
        char *sig = forward_signature(c->key, c->key_len, id, ts, body, len), *h;
        long status = 0;
        CURLcode rc;

        if (sig == NULL) {
                snprintf(d->error, sizeof(d->error), "cannot sign the request");
                return false;
        }
        if (d->curl == NULL && (d->curl = curl_easy_init()) == NULL) {
                snprintf(d->error, sizeof(d->error), "cannot set up an HTTP client");
                free(sig);
                return false;
        }
        hdr = curl_slist_append(hdr, "Content-Type: application/json");
        h = xasprintf("webhook-id: %s", id);
        hdr = curl_slist_append(hdr, h);
        free(h);
        h = xasprintf("webhook-timestamp: %lld", ts);
        hdr = curl_slist_append(hdr, h);
        free(h);
        h = xasprintf("webhook-signature: %s", sig);
        hdr = curl_slist_append(hdr, h);
        free(h);
        free(sig);
        curl_easy_reset(d->curl);
        curl_easy_setopt(d->curl, CURLOPT_URL, c->url);
        curl_easy_setopt(d->curl, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(d->curl, CURLOPT_PROTOCOLS_STR, "https,http");
        curl_easy_setopt(d->curl, CURLOPT_USERAGENT, "slhookd/" PACKAGE_VERSION);
        curl_easy_setopt(d->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(d->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
        curl_easy_setopt(d->curl, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(d->curl, CURLOPT_SSL_VERIFYHOST, 2L);
        if (c->ca_file)
                curl_easy_setopt(d->curl, CURLOPT_CAINFO, c->ca_file);
        curl_easy_setopt(d->curl, CURLOPT_CONNECTTIMEOUT, (long) (c->timeout < 10 ? c->timeout : 10));
        curl_easy_setopt(d->curl, CURLOPT_TIMEOUT, (long) c->timeout);
        curl_easy_setopt(d->curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(d->curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(d->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(d->curl, CURLOPT_XFERINFODATA, d->fw);
        curl_easy_setopt(d->curl, CURLOPT_WRITEFUNCTION, on_data);
        rc = curl_easy_perform(d->curl);
        curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(hdr);
        if (rc != CURLE_OK) {
                snprintf(d->error, sizeof(d->error), "POST %s: %s", c->url, curl_easy_strerror(rc));
                return false;
        }
        if (status < 200 || status > 299) {
                snprintf(d->error, sizeof(d->error), "POST %s: HTTP %ld", c->url, status);
                return false;
        }
        return true;
}

/* The next batch as one body: a JSON object (batch 1) or an array; its
 * webhook-id is the event id, or FIRST-LAST for several. Returns the
 * events in it, 0 none, -1 a database failure. */
static int
next_batch(struct dest *d, struct buf *body, char id[48])
{
        char *text = NULL, *err = NULL, *line, *nl;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        struct out *o;
        long long first = 0, last = 0;
        int n;

        if (mem == NULL)
                return -1;
        o = out_new(mem, OUT_JSON, 0, false);
        n = query_follow(d->q, &d->args, &d->f, d->c->batch, o, &err);
        out_end(o);
        fclose(mem);
        if (n < 0) {
                snprintf(d->error, sizeof(d->error), "%s", err ? err : "reading events failed");
                free(err);
                free(text);
                return -1;
        }
        body->len = 0;
        if (d->c->batch > 1)
                buf_puts(body, "[");
        for (line = text; n > 0 && line && *line; line = nl ? nl + 1 : NULL) {
                nl = strchr(line, '\n');
                if (strncmp(line, "{\"id\":", 6) == 0) {
                        last = strtoll(line + 6, NULL, 10);
                        if (first == 0)
                                first = last;
                }
                if (body->len > 1 || (d->c->batch == 1 && body->len > 0))
                        buf_puts(body, ",");
                buf_append(body, line, nl ? (size_t) (nl - line) : strlen(line));
        }
        if (d->c->batch > 1)
                buf_puts(body, "]");
        buf_append(body, "", 0);        /* its terminating NUL, for an empty batch too */
        free(text);
        if (first == last)
                snprintf(id, 48, "%lld", first);
        else
                snprintf(id, 48, "%lld-%lld", first, last);
        return n;
}

/* The events stored after the cursor (of any kind: an upper bound of
 * those waiting for this destination, 0 once it has caught up). */
static void
update_lag(struct dest *d)
{
        int64_t newest;

        d->lag_at_us = time_mono_us();
        if (query_newest_id(d->q, &newest) == 0)
                metrics_forward_lag(d->c->name, newest > d->persisted ? newest - d->persisted : 0);
}

static void *
dest_main(void *arg)
{
        struct dest *d = arg;
        struct forwarder *fw = d->fw;
        struct buf body = { 0 };
        unsigned backoff = BACKOFF_FIRST_MS;
        int64_t rewind_at = 0;
        char id[48];
        int n, r;

        while (!atomic_load(&fw->stop)) {
                if (d->db == NULL) {
                        r = connect_dest(d);
                        if (r == -EBUSY) {      /* another instance forwards it */
                                nap(fw, LOCK_RETRY_MS);
                                continue;
                        }
                        if (r < 0) {
                                set_failing(d, true, d->error);
                                nap(fw, backoff);
                                backoff = backoff * 2 > BACKOFF_CAP_MS ? BACKOFF_CAP_MS : backoff * 2;
                                continue;
                        }
                }
                if (time_mono_us() >= rewind_at) {
                        if (check_rewind(d) < 0)
                                goto db_failed;
                        rewind_at = time_mono_us() + REWIND_CHECK_MS * 1000;
                }
                {
                        int64_t before = d->f.cursor;

                        if ((n = next_batch(d, &body, id)) < 0)
                                goto db_failed;
                        if (n == 0) {
                                /* Passed events not for it: keep the cursor
                                 * near, without a write at every look. */
                                if (d->f.cursor != d->persisted && time_mono_us() - d->last_put_us > 1000000 &&
                                    cursor_put(d, 0) == -EIO)
                                        goto db_failed;
                                update_lag(d);
                                nap(fw, POLL_MS);
                                continue;
                        }
                        if (post(d, id, body.data, body.len)) {
                                long long now = (long long) (time_now_us() / 1000000);

                                metrics_forward_delivered(d->c->name, (unsigned) n, now);
                                set_failing(d, false, NULL);
                                backoff = BACKOFF_FIRST_MS;
                                r = cursor_put(d, (unsigned) n);
                                if (r == -ESTALE)
                                        rewind_at = 0;
                                else if (r < 0)
                                        goto db_failed;
                                if (time_mono_us() - d->lag_at_us > 1000000)
                                        update_lag(d);
                                continue;
                        }
                        /* Not delivered: the same events again after the backoff. */
                        d->f.cursor = before;
                        metrics_forward_failure(d->c->name);
                        set_failing(d, true, d->error);
                        error_put(d);
                        update_lag(d);
                }
                {
                        /* 1 s doubling to 10 min, each wait 75-100% of it. */
                        unsigned wait = backoff - (unsigned) (random() % (backoff / 4 + 1)), slept = 0;

                        while (slept < wait && !atomic_load(&fw->stop)) {
                                unsigned step = wait - slept < REWIND_CHECK_MS ? wait - slept : REWIND_CHECK_MS;
                                int64_t rw = d->rewound;

                                nap(fw, step);
                                slept += step;
                                if (check_rewind(d) < 0 || d->rewound != rw)
                                        break;  /* a rewind: try at once */
                        }
                        backoff = backoff * 2 > BACKOFF_CAP_MS ? BACKOFF_CAP_MS : backoff * 2;
                }
                continue;
db_failed:
                set_failing(d, true, d->error);
                disconnect(d);
                nap(fw, backoff);
                backoff = backoff * 2 > BACKOFF_CAP_MS ? BACKOFF_CAP_MS : backoff * 2;
        }
        buf_done(&body);
        return NULL;
}

int
forward_start(const struct cfg *cfg, const struct db_conf *db, struct forwarder **ret, char **reterr)
{
        struct forwarder *fw;
        pthread_condattr_t ca;
        size_t i;

        *ret = NULL;
        if (cfg->n_forwards == 0)
                return 0;
        fw = xcalloc(1, sizeof(*fw));
        fw->cfg = cfg_ref((struct cfg *) cfg);
        fw->db = *db;
        fw->db.upgrading = NULL;
        if (db->password)
                fw->db.password = fw->password = xstrdup(db->password);
        pthread_mutex_init(&fw->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&fw->wake, &ca);
        pthread_condattr_destroy(&ca);
        fw->n = cfg->n_forwards;
        fw->d = xcalloc(fw->n, sizeof(*fw->d));
        for (i = 0; i < fw->n; i++) {
                fw->d[i].fw = fw;
                fw->d[i].c = &cfg->forwards[i];
        }
        cursors_new(fw);
        for (i = 0; i < fw->n; i++) {
                struct dest *d = &fw->d[i];
                const struct cfg_forward *c = d->c;

                d->args = (struct query_args) { .types = c->types, .n_types = c->n_types,
                                                .endpoints = c->endpoints, .n_endpoints = c->n_endpoints,
                                                .server_ids = c->server_ids, .n_server_ids = c->n_server_ids,
                                                .no_tests = true };
                if (pthread_create(&d->thread, NULL, dest_main, d) != 0) {
                        *reterr = xasprintf("[forward %s]: cannot start its thread", c->name);
                        forward_stop(fw);
                        return -EAGAIN;
                }
                d->started = true;
        }
        *ret = fw;
        return 0;
}

struct forwarder *
forward_stop(struct forwarder *fw)
{
        size_t i;

        if (fw == NULL)
                return NULL;
        pthread_mutex_lock(&fw->lock);
        atomic_store(&fw->stop, true);
        pthread_cond_broadcast(&fw->wake);
        pthread_mutex_unlock(&fw->lock);
        /* Each thread ends within its current statement (statement_timeout)
         * or transfer (stopped by on_progress within a second). */
        for (i = 0; i < fw->n; i++) {
                struct dest *d = &fw->d[i];

                if (d->started)
                        pthread_join(d->thread, NULL);
                disconnect(d);
                query_follow_done(&d->f);
                if (d->curl)
                        curl_easy_cleanup(d->curl);
        }
        free(fw->d);
        pthread_cond_destroy(&fw->wake);
        pthread_mutex_destroy(&fw->lock);
        if (fw->password)
                freezero(fw->password, strlen(fw->password));
        cfg_free(fw->cfg);
        free(fw);
        return NULL;
}
