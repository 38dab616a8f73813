/* store_writer: the bounded queue between the request threads and the one
 * writer thread, and group commit: every job that queued while a
 * transaction ran is the next transaction (see store-private.h). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "log.h"
#include "metrics.h"
#include "store-private.h"

/* One attempt at a transaction over jobs [first, end). */
static int
attempt(struct store *s, struct store_job *first, struct store_job *end)
{
        struct store_job *j;

        store_rows_clear(s);
        if (store_rows_begin(s) < 0)
                return -EIO;
        for (j = first; j != end; j = j->next)
                if (store_rows_job(s, j) < 0)
                        goto fail;
        if (store_rows_flush(s) < 0 || db_commit(s->db) < 0)
                goto fail;
        return 0;
fail:
        store_rows_rollback(s);
        return -EIO;
}

/* One transaction over jobs [first, end), run again while it loses
 * deadlocks to another instance. Returns 0 or -EIO. */
static int
transaction(struct store *s, struct store_job *first, struct store_job *end)
{
        int64_t t0 = time_mono_us();
        struct store_job *j;
        unsigned jobs = 0, tries;
        size_t i;

        for (j = first; j != end; j = j->next)
                jobs++;
        for (tries = 1; attempt(s, first, end) < 0; tries++) {
                if (!db_conflict(s->db) || tries == CONFLICT_TRIES)
                        goto fail;
                atomic_fetch_add(&s->conflicts, 1);
        }
        atomic_fetch_add(&s->commits, 1);
        metrics_commit(time_mono_us() - t0, jobs);
        for (j = first; j != end; j = j->next)
                for (i = 0; j->batch && i < j->batch->n; i++)
                        if (j->batch->v[i].outcome)
                                metrics_event(j->endpoint, j->batch->v[i].kind == EVENT_QUARANTINE ? NULL :
                                              j->batch->v[i].type, j->batch->v[i].outcome - 1);
        if (s->failing) {
                s->failing = false;
                metrics_storage(false);
                log_full(LOG_NOTICE, LOG_MID_STORE, NULL, "storage works again: %s", db_name(s->db));
        }
        return 0;
fail:
        if (!s->failing) {
                s->failing = true;
                metrics_storage(true);
                log_full(LOG_ERR, LOG_MID_STORE, NULL, "storage failed, answering 503: %s: %s",
                         db_name(s->db), db_errmsg(s->db));
        }
        return -EIO;
}

/* Whether the last transaction failed in a way every other one would now:
 * the connection is down, or a wait ran out (another process holds the
 * lock). */
static bool
stalled(struct store *s)
{
        return db_broken(s->db) || db_timeout(s->db);
}

static void
write_batch(struct store *s, struct store_job *head)
{
        struct store_job *j, *next;
        unsigned n = 0;
        int r;

        r = transaction(s, head, NULL);
        if (r < 0 && head->next && !stalled(s)) {
                /* Keep one bad job from failing the others: one transaction
                 * each, until one finds the database stalled: the rest then
                 * fail at once rather than wait a timeout each. */
                for (j = head, r = 0; j; j = j->next)
                        r = j->result = r < 0 && stalled(s) ? -EIO : transaction(s, j, j->next);
        } else
                for (j = head; j; j = j->next)
                        j->result = r;
        for (j = head; j; j = next) {
                next = j->next;
                j->next = NULL;
                j->done(j);
                n++;
        }
        pthread_mutex_lock(&s->lock);
        s->pending -= n;
        metrics_queue(s->pending);
        pthread_mutex_unlock(&s->lock);
}

/* PostgreSQL with several instances on one database: a transaction costs
 * the server about a millisecond of CPU whatever its size (two round
 * trips, ten statements, the commit), and the instances' transactions
 * contend for the CPU and for the hourly counts' rows. The writer then
 * lets a batch gather while requests keep arriving: until GATHER_GAP_US
 * pass without one, GATHER_MAX_US in all, or GATHER_JOBS have queued; and
 * only when the last batch, or the queue, holds more than one request
 * (one client alone would only wait). Two instances, 16 connections each
 * (bench/pg.sh, 6 rounds): batches 7.7 -> 14.1 requests, 7,821 -> 8,869
 * events/s, 0.85 -> 1.04 x one instance. Not with one writer, whose
 * transactions follow each other with nothing to contend with and the
 * machine 40% idle: there the wait was only latency (7,815 events/s
 * against 8,419), nor on SQLite, whose commit costs less than the wait
 * (13.4-14.0k -> 9.1-10.1k events/s at 32 connections). bench/README.md
 * has the figures. */
#define GATHER_GAP_US   150
#define GATHER_MAX_US   2000
#define GATHER_JOBS     64
#define WRITERS_EVERY_US 1000000        /* the writers are counted again */

/* With s->lock held and a job queued. */
static void
gather(struct store *s)
{
        int64_t now = time_mono_us(), cap = now + GATHER_MAX_US;
        unsigned most = s->queue_size < GATHER_JOBS ? s->queue_size : GATHER_JOBS;

        while (s->queued < most && !s->stopping && now < cap) {
                unsigned q = s->queued;
                int64_t until = now + GATHER_GAP_US < cap ? now + GATHER_GAP_US : cap;
                struct timespec ts = time_ts(until);

                while (s->queued == q && !s->stopping && now < until) {
                        pthread_cond_timedwait(&s->wake, &s->lock, &ts);
                        now = time_mono_us();
                }
                if (s->queued == q)
                        return;
        }
}

/* Count the writers on the database (outside a transaction); on failure
 * the last count stands. */
static void
count_writers(struct store *s)
{
        struct db_stmt *st = s->st[ST_WRITERS];

        s->writers_at = time_mono_us() + WRITERS_EVERY_US;
        db_bind_int(st, 1, (int64_t) ((uint64_t) LOCK_WRITERS >> 32));
        db_bind_int(st, 2, (int64_t) ((uint64_t) LOCK_WRITERS & 0xffffffffu));
        if (db_step(st) > 0) {
                s->writers = (unsigned) db_int(st, 0);
                metrics_writers(s->writers);
        }
        db_reset(st);
}

/* Writer side of retention: one batch, then the delay until the next. */
static int64_t
retention_step(struct store *s)
{
        char before[TIME_ISO_LEN];
        uint64_t ne, nm, nq;
        int r;

        time_format_iso(time_now_us() - (int64_t) s->retention_days * 86400 * 1000000, before);
        r = store_prune(s, before, &ne, &nm, &nq);
        if (r < 0) {
                log_full(LOG_WARNING, LOG_MID_STORE, NULL, "retention: cannot delete old events: %s: %s",
                         db_name(s->db), db_errmsg(s->db));
                return 60 * 1000000;
        }
        s->pruned_events += ne;
        s->pruned_messages += nm;
        s->pruned_quarantine += nq;
        if (r > 0)
                return 100 * 1000;      /* more to do: again soon, between batches */
        if (s->pruned_events || s->pruned_messages || s->pruned_quarantine)
                log_full(LOG_INFO, LOG_MID_STORE, NULL,
                         "retention: deleted %llu events, %llu messages and %llu quarantined payloads received "
                         "before %s", (unsigned long long) s->pruned_events, (unsigned long long) s->pruned_messages,
                         (unsigned long long) s->pruned_quarantine, before);
        s->pruned_events = s->pruned_messages = s->pruned_quarantine = 0;
        return 1000000;         /* an idle check is one index probe */
}

static void *
writer_main(void *arg)
{
        struct store *s = arg;
        struct store_job *batch;
        unsigned last = 0;              /* jobs in the last batch */
        int64_t next_prune = s->retention_days ? time_mono_us() : INT64_MAX;
        struct timespec ts;

        pthread_mutex_lock(&s->lock);
        for (;;) {
                while (s->head == NULL && !s->stopping && time_mono_us() < next_prune) {
                        if (next_prune == INT64_MAX) {
                                pthread_cond_wait(&s->wake, &s->lock);
                                continue;
                        }
                        ts = time_ts(next_prune);
                        pthread_cond_timedwait(&s->wake, &s->lock, &ts);
                }
                if (s->head == NULL && s->stopping)
                        break;
                /* With more than one client to wait for. */
                if (s->head && pg(s) && s->writers > 1 && (last > 1 || s->queued > 1))
                        gather(s);
                /* Everything that queued while we were busy is one batch. */
                batch = s->head;
                last = s->queued;
                s->head = s->tail = NULL;
                s->queued = 0;
                atomic_store(&s->busy, batch != NULL);
                pthread_mutex_unlock(&s->lock);
                if (batch) {
                        write_batch(s, batch);
                        atomic_store(&s->busy, false);
                        atomic_fetch_add(&s->batches, 1);
                }
                if (pg(s) && time_mono_us() >= s->writers_at)
                        count_writers(s);
                /* Retention runs between batches, one small transaction at a
                 * time, so ingestion waits for at most one of them. */
                if (time_mono_us() >= next_prune)
                        next_prune = time_mono_us() + retention_step(s);
                pthread_mutex_lock(&s->lock);
        }
        s->exited = true;
        pthread_cond_broadcast(&s->gone);
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

int
store_start(struct store *s, unsigned queue_size, unsigned retention_days)
{
        int r;

        s->queue_size = queue_size;
        s->retention_days = retention_days;
        r = pthread_create(&s->writer, NULL, writer_main, s);
        if (r != 0)
                return -r;
        s->started = true;
        return 0;
}

int
store_submit(struct store *s, struct store_job *job)
{
        int r = 0;

        job->next = NULL;
        job->result = 0;
        pthread_mutex_lock(&s->lock);
        if (s->stopping)
                r = -ESHUTDOWN;
        else if (s->queued >= s->queue_size)
                r = -EAGAIN;
        else {
                if (s->tail)
                        s->tail->next = job;
                else
                        s->head = job;
                s->tail = job;
                s->queued++;
                s->pending++;
                metrics_queue(s->pending);
                pthread_cond_signal(&s->wake);
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

unsigned
store_stop(struct store *s, unsigned seconds)
{
        int64_t until = time_mono_us() + (int64_t) seconds * 1000000;
        struct timespec ts = time_ts(until);
        unsigned left;

        if (s == NULL || !s->started)
                return 0;
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_signal(&s->wake);
        while (!s->exited && time_mono_us() < until)
                pthread_cond_timedwait(&s->gone, &s->lock, &ts);
        left = s->exited ? 0 : s->pending;
        pthread_mutex_unlock(&s->lock);
        if (left == 0) {
                pthread_join(s->writer, NULL);
                s->started = false;
        }
        return left;
}

bool
store_full(struct store *s)
{
        bool full;

        pthread_mutex_lock(&s->lock);
        full = s->queued >= s->queue_size;
        pthread_mutex_unlock(&s->lock);
        return full;
}

void
store_progress(struct store *s, uint64_t *batches, bool *idle)
{
        pthread_mutex_lock(&s->lock);
        *idle = s->queued == 0 && !atomic_load(&s->busy);
        pthread_mutex_unlock(&s->lock);
        *batches = atomic_load(&s->batches);
}

uint64_t
store_commits(const struct store *s)
{
        return atomic_load(&((struct store *) s)->commits);
}
