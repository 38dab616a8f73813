/* store-private.h: what the store's three files share, and no one else:
 *   store.c         open, schema upgrade, statements, close;
 *   store_writer.c  the bounded queue, the writer thread, group commit;
 *   store_rows.c    an event's rows: its message (cache, find, create,
 *                   update), the hourly counts, retention, quarantine replay.
 * The write path: store_submit -> writer_main -> write_batch -> transaction
 * -> store_rows_job (each job) -> store_rows_flush -> COMMIT. */
#ifndef SLHOOKD_STORE_PRIVATE_H
#define SLHOOKD_STORE_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "store.h"

/* Advisory locks (PostgreSQL) that keep instances on one database from
 * doing the same work at once. */
#define LOCK_SCHEMA     STORE_LOCK(1)
#define LOCK_RETENTION  STORE_LOCK(2)
/* Held in shared mode by every writer's connection: the writers on one
 * database count each other (store_writer.c). (3 is the management
 * thread's, mgmt.c.) */
#define LOCK_WRITERS    STORE_LOCK(4)

/* Times a transaction that lost a deadlock to another instance is tried. */
#define CONFLICT_TRIES 8

enum {
        ST_EVENT, ST_QUARANTINE, ST_VALIDATION, ST_STATUS, ST_TEST_EVENT,
        ST_MSG_BY_MESSAGE, ST_MSG_BY_MAILING, ST_MSG_BY_ADDRESS, ST_MSG_INSERT, ST_MSG_UPDATE, ST_MSG_DELETE,
        ST_EVENT_MESSAGE, ST_COUNT_ADD, ST_PRUNE_COUNTS, ST_PRUNE_ZERO, ST_PRUNE_EVENTS, ST_PRUNE_MESSAGES,
        ST_PRUNE_CURSOR, ST_PRUNE_QUARANTINE, ST_EVENT_SEEN, ST_QUARANTINE_SEEN, ST_DATA_VERSION,
        ST_HEALTH_ADD, ST_PRUNE_HEALTH_EVENTS, ST_PRUNE_HEALTH_MESSAGES, ST_PRUNE_HEALTH_ZERO,
        ST_HOURS_ADD, ST_PRUNE_HOURS_ZERO, ST_WRITERS,
        ST_COUNT
};

/* Message rows the SQLite writer keeps in memory, per generation (see
 * msgcache.h): about 4 MB at most. */
#define MSGCACHE_ROWS 4096

#define PRUNE_BATCH 1000

/* Events a transaction adds to event_counts, written at its end. */
struct count {
        char hour[14];
        char *type;             /* a copy: the event may go before the counts are written */
        int64_t n;
};

/* What a transaction adds to (or takes from) health_counts (and, summed
 * over mailings, health_hours). */
struct hcount {
        char hour[14];
        int64_t server_id;
        char *mailing_id;       /* a copy; "" for none */
        int kind;               /* enum health_kind */
        int64_t n;
};

struct store {
        struct db *db;
        struct db_stmt *st[ST_COUNT];
        struct db_conf conf;            /* for store_connect(): its strings are the store's */

        pthread_t writer;
        bool started;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        pthread_cond_t gone;            /* the writer has returned (exited) */
        bool exited;
        unsigned pending;               /* jobs queued or in the writer's batch */
        struct store_job *head, *tail;
        unsigned queued, queue_size;
        bool stopping;
        bool failing;                   /* last transaction failed: log recovery once */
        atomic_uint_fast64_t commits;
        atomic_uint_fast64_t batches;   /* written, committed or not: progress */
        atomic_uint_fast64_t conflicts; /* transactions run again after a deadlock */
        atomic_bool busy;               /* writing a batch now */
        unsigned writers;               /* PostgreSQL: instances writing to the database, this one too */
        int64_t writers_at;             /* when to count them again (time_mono_us) */

        struct store_pg *bulk;          /* PostgreSQL: the mail events, set-based */
        struct msgcache *cache;         /* SQLite: message rows lately touched */
        int64_t data_version;           /* SQLite: PRAGMA data_version the cache is good for */
        struct count *counts;           /* this transaction's, unsorted */
        size_t ncounts, counts_cap;
        struct hcount *hcounts;         /* this transaction's, unsorted */
        size_t nhcounts, hcounts_cap;

        unsigned retention_days;        /* 0: keep forever */
        uint64_t pruned_events, pruned_messages, pruned_quarantine;     /* this retention pass */
        int64_t prune_cursor;           /* messages are walked by id, PRUNE_BATCH a step */
};

static inline bool
pg(const struct store *s)
{
        return db_backend(s->db) == DB_POSTGRESQL;
}

/* store_rows.c, for the writer: */

/* BEGIN a transaction (and check the message cache is still good), and
 * ROLLBACK one (forgetting what the cache took from it). */
int store_rows_begin(struct store *s);
void store_rows_rollback(struct store *s);
/* Forget what an attempt gathered (hourly counts, PostgreSQL's set). */
void store_rows_clear(struct store *s);
/* One job's rows, inside the transaction. */
int store_rows_job(struct store *s, struct store_job *job);
/* What the transaction gathered, written before its COMMIT. */
int store_rows_flush(struct store *s);
/* Fill messages from the events stored (upgrade from schema 1). */
int store_rows_rebuild(struct store *s, char **reterr);

#endif
