/* store: the database (SQLite, or PostgreSQL: db.h). Opens and migrates it,
 * then owns one writer thread with this process's only write connection:
 * requests hand it jobs through a bounded queue, it stores every job that
 * queued while it was busy in one transaction (group commit: one fsync
 * acknowledges them all) and then calls each job's done callback. Several
 * processes may write one PostgreSQL database at once. */
#ifndef SLHOOKD_STORE_H
#define SLHOOKD_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "event.h"
#include "util.h"

struct store;

/* The advisory locks (PostgreSQL) of slhookd's instances on one database:
 * n names what they exclude each other from. */
#define STORE_LOCK(n) ((int64_t) 0x736c686b00000000LL + (n))

/* What the management thread last did, for webhook_status. */
struct store_webhook_status {
        const char *webhook_id;         /* NULL: unchanged */
        bool registered;                /* found or created now: registered_at */
        bool passed;
        const char *step;               /* where the self-test ended */
        long http_status;               /* of the last API call, 0: none */
        double rtt_ms;                  /* < 0: none */
        const char *error;              /* NULL when passed */
};

/* One request's worth of work. Owned by the caller; the store borrows it from
 * store_submit() until it calls done(). */
struct store_job {
        struct event_batch *batch;      /* EVENT_MAIL and EVENT_QUARANTINE items are stored */
        const char *endpoint;
        const char *peer;               /* sender address as text */
        char received_at[TIME_ISO_LEN];
        bool validation;                /* record a Validation for endpoint */
        const struct store_webhook_status *status;      /* or NULL; time: received_at */

        /* Set by the writer before done(): 0, or a negative errno. */
        int result;
        unsigned stored, duplicates, quarantined;

        /* Called on the writer thread once the job's transaction ended. */
        void (*done)(struct store_job *job);
        void *userdata;
        struct store_job *next;         /* queue link: the store's */
};

/* Open (creating it if needed) and migrate the database. Returns 0, or a
 * negative errno with *reterr an allocated message naming the database.
 * Call from main before any thread uses the store. */
int store_open(const struct db_conf *c, struct store **ret, char **reterr);

/* Another connection to the store's database (db_open flags), for a
 * thread of its own (the management thread); any thread. */
int store_connect(struct store *s, unsigned flags, struct db **ret, char **reterr);

/* The database, for messages: its file, or postgresql://USER@HOST:PORT/DB. */
const char *store_name(const struct store *s);

/* The schema version this build creates and upgrades to. */
int store_schema_version(void);

/* Start the writer thread; queue_size bounds the jobs waiting for it. With
 * retention_days > 0 it also deletes, between batches and a small
 * transaction at a time, what store_prune() deletes for now - retention_days. */
int store_start(struct store *s, unsigned queue_size, unsigned retention_days);

/* Queue a job (any thread). Returns 0, -EAGAIN when the queue is full, or
 * -ESHUTDOWN once store_stop() has begun. On error done() is not called. */
int store_submit(struct store *s, struct store_job *job);

/* Finish every queued job, then stop the writer thread, waiting at most
 * seconds for it. Returns 0 once it stopped, else the jobs it has not
 * finished (it is stuck in a transaction: their done() has not been called;
 * the writer still runs and the store must not be closed). Main thread. */
unsigned store_stop(struct store *s, unsigned seconds);

/* Close the database (checkpointing the WAL); NULL-safe; returns NULL. */
struct store *store_close(struct store *s);

/* The calls below use the store's connection: call them only while no
 * writer thread runs (slhookctl), except from the writer itself. */

/* One retention step, in one transaction: delete up to 1000 events and up
 * to 1000 quarantined payloads received before `before` (ISO-8601 UTC), and
 * of the next 1000 messages of a walk by id, those with no event received
 * since. Returns 1 while there is more to do (call again), 0 once every
 * event, payload and a whole walk are done, or -EIO. */
int store_prune(struct store *s, const char *before, uint64_t *ret_events, uint64_t *ret_messages,
                uint64_t *ret_quarantine);

/* Re-parse every quarantined payload with the current parser: those that now
 * make an event move into events (and their messages), the others stay with
 * the current reason. Returns 0 or -EIO; commits every 100 rows. */
int store_replay_quarantine(struct store *s, unsigned *moved, unsigned *kept);

/* The database's last error message, for the calls above. */
const char *store_error(const struct store *s);

/* Whether store_submit() would return -EAGAIN now. Any thread. */
bool store_full(struct store *s);

/* For the watchdog: batches the writer has finished (committed or not), and
 * whether it has nothing to do. Any thread. */
void store_progress(struct store *s, uint64_t *batches, bool *idle);

/* Transactions committed so far; moves while the writer makes progress. */
uint64_t store_commits(const struct store *s);

#endif
