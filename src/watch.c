/* watch: the daemon's eye on sending health (see watch.h). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event.h"
#include "log.h"
#include "metrics.h"
#include "util.h"
#include "watch.h"

/* A statement of the evaluation waits at most this long (a stalled
 * database holds the thread, and so a shutdown, no longer). */
#define WATCH_TIMEOUT_MS 10000

struct flagged {
        int64_t server_id;
        unsigned flags;
};

struct watch {
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        bool stop, changed;             /* under lock */
        struct health_conf conf;        /* under lock */
        struct db_conf db;
        struct db *conn;
        struct flagged *was;            /* the last evaluation's flagged servers */
        size_t nwas;
        bool failing;                   /* the last evaluation failed (said once) */
};

/* The rate behind a flag, as the log prints it. */
static void
rate_text(const struct health_row *w, int flag, char *buf, size_t size, char *what, size_t wsize)
{
        if (flag == HF_BOUNCE_MAX) {
                snprintf(buf, size, "%.10g", w->rate[HR_BOUNCE]);
                snprintf(what, wsize, "hard-bounce rate %s (%lld Permanent failures of %lld sent or failed)", buf,
                         (long long) w->n[HK_FAILED_PERMANENT],
                         (long long) (w->n[HK_SENT] + w->n[HK_FAILED_PERMANENT] + w->n[HK_FAILED_TEMPORARY] +
                                      w->n[HK_FAILED_SUPPRESSED]));
        } else {
                snprintf(buf, size, "%.10g", w->rate[HR_COMPLAINT]);
                snprintf(what, wsize, "complaint rate %s (%lld complaints of %lld sent)", buf,
                         (long long) w->n[HK_COMPLAINTS], (long long) w->n[HK_SENT]);
        }
}

static double
threshold(const struct health_conf *c, int flag)
{
        return flag == HF_COMPLAINT_WARN ? c->complaint_rate_warn
               : flag == HF_COMPLAINT_MAX ? c->complaint_rate_max : c->bounce_rate_max;
}

/* Crossing complaint_rate_max sets complaint_rate_warn too: one line says
 * it (the higher one), as one says when it is back under both. */
static unsigned
said(unsigned flags)
{
        if (flags & (1u << HF_COMPLAINT_MAX))
                flags &= ~(1u << HF_COMPLAINT_WARN);
        return flags;
}

static void
tell(const struct health_conf *c, int64_t server_id, const struct health_row *w, unsigned before, unsigned now)
{
        /* max to warn is only a notice; warn to max only a warning. */
        unsigned up = said(now) & ~before, down = said(before) & ~now;
        char rate[32], what[160] = "";
        int f;

        for (f = 0; f < HF_COUNT; f++) {
                struct log_fields lf = LOG_FIELDS_NONE;

                if (!((up | down) & (1u << f)))
                        continue;
                lf.server_id = server_id;
                lf.health_flag = health_flags[f];
                if (w) {
                        rate_text(w, f, rate, sizeof(rate), what, sizeof(what));
                        lf.rate = rate;
                }
                if (up & (1u << f))
                        log_full(LOG_WARNING, LOG_MID_HEALTH, &lf,
                                 "health: ServerId %lld crossed %s (%.10g): %s over the last %u s", (long long) server_id,
                                 health_flags[f], threshold(c, f), what, c->window);
                else
                        log_full(LOG_NOTICE, LOG_MID_HEALTH, &lf, "health: ServerId %lld is back under %s (%.10g): %s",
                                 (long long) server_id, health_flags[f], threshold(c, f),
                                 w ? what : "no mail of it in the window now");
        }
}

static unsigned
flags_was(const struct watch *w, int64_t server_id)
{
        size_t i;

        for (i = 0; i < w->nwas; i++)
                if (w->was[i].server_id == server_id)
                        return w->was[i].flags;
        return 0;
}

static void
evaluate(struct watch *w, const struct health_conf *c)
{
        struct health_report r;
        struct flagged *now = NULL;
        long long count[HF_COUNT] = { 0 };
        char since[TIME_ISO_LEN], until[TIME_ISO_LEN];
        int64_t us = time_now_us();
        size_t i, j, n = 0;
        char *err = NULL;
        int f;

        if (w->conn == NULL && db_open(&w->db, DB_READONLY, &w->conn, &err) < 0) {
                if (!w->failing)
                        log_full(LOG_WARNING, LOG_MID_HEALTH, NULL, "health: cannot evaluate: %s", err);
                w->failing = true;
                free(err);
                return;
        }
        time_format_iso(us, until);
        time_format_iso(us - (int64_t) c->window * 1000000, since);
        if (health_report(w->conn, since, until, false, -1, c, &r) < 0) {
                if (!w->failing)
                        log_full(LOG_WARNING, LOG_MID_HEALTH, NULL, "health: cannot evaluate: %s: %s",
                                 db_name(w->conn), db_errmsg(w->conn));
                w->failing = true;
                if (db_broken(w->conn))
                        w->conn = db_close(w->conn);
                return;
        }
        if (w->failing)
                log_full(LOG_NOTICE, LOG_MID_HEALTH, NULL, "health: evaluating again");
        w->failing = false;
        for (i = 0; i < r.n; i++) {
                const struct health_row *row = &r.rows[i];

                tell(c, row->server_id, row, flags_was(w, row->server_id), row->flags);
                for (f = 0; f < HF_COUNT; f++)
                        count[f] += (row->flags >> f) & 1;
                if (row->flags) {
                        now = xreallocarray(now, n + 1, sizeof(*now));
                        now[n++] = (struct flagged) { row->server_id, row->flags };
                }
        }
        /* Flagged before, and no mail in the window now. */
        for (i = 0; i < w->nwas; i++) {
                for (j = 0; j < r.n && r.rows[j].server_id != w->was[i].server_id; j++)
                        ;
                if (j == r.n)
                        tell(c, w->was[i].server_id, NULL, w->was[i].flags, 0);
        }
        free(w->was);
        w->was = now;
        w->nwas = n;
        metrics_health_flagged(count);
        health_report_done(&r);
}

static void *
watch_main(void *arg)
{
        struct watch *w = arg;
        struct health_conf c;
        struct timespec ts;

        pthread_mutex_lock(&w->lock);
        while (!w->stop) {
                c = w->conf;
                w->changed = false;
                pthread_mutex_unlock(&w->lock);
                evaluate(w, &c);
                pthread_mutex_lock(&w->lock);
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_sec += (time_t) c.interval;
                while (!w->stop && !w->changed && pthread_cond_timedwait(&w->wake, &w->lock, &ts) == 0)
                        ;
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

int
watch_start(const struct health_conf *c, const struct db_conf *db, struct watch **ret, char **reterr)
{
        struct watch *w = xcalloc(1, sizeof(*w));
        pthread_condattr_t ca;
        int r;

        pthread_mutex_init(&w->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&w->wake, &ca);
        pthread_condattr_destroy(&ca);
        w->conf = *c;
        w->db = *db;
        w->db.path = db->path ? xstrdup(db->path) : NULL;
        w->db.dsn = db->dsn ? xstrdup(db->dsn) : NULL;
        w->db.password = db->password ? xstrdup(db->password) : NULL;
        w->db.upgrading = NULL;
        w->db.timeout_ms = WATCH_TIMEOUT_MS;
        if ((r = pthread_create(&w->thread, NULL, watch_main, w)) != 0) {
                *reterr = xasprintf("cannot start the health thread: %s", strerror(r));
                w->thread = 0;
                watch_stop(w);
                return -r;
        }
        *ret = w;
        return 0;
}

void
watch_reload(struct watch *w, const struct health_conf *c)
{
        if (w == NULL)
                return;
        pthread_mutex_lock(&w->lock);
        w->conf = *c;
        w->changed = true;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
}

struct watch *
watch_stop(struct watch *w)
{
        if (w == NULL)
                return NULL;
        if (w->thread) {
                pthread_mutex_lock(&w->lock);
                w->stop = true;
                pthread_cond_signal(&w->wake);
                pthread_mutex_unlock(&w->lock);
                pthread_join(w->thread, NULL);
        }
        db_close(w->conn);
        free(w->was);
        free((char *) w->db.path);
        free((char *) w->db.dsn);
        if (w->db.password)
                freezero((char *) w->db.password, strlen(w->db.password));
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        free(w);
        return NULL;
}
