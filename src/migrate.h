/* migrate: copy a SQLite database into PostgreSQL (slhookctl migrate), so
 * that a user moves to the PostgreSQL backend with the whole history. Ids are
 * kept (events.message names a messages.id). Idempotent and resumable: a run
 * copies what the destination lacks and brings up to date the rows that
 * change (messages, event_counts, webhook_status); one interrupted, or run
 * again after the source received more, goes on from where the destination
 * is. The source is read in one snapshot; the destination is written in
 * transactions of MIGRATE_BATCH rows. */
#ifndef SLHOOKD_MIGRATE_H
#define SLHOOKD_MIGRATE_H

#include <stdint.h>

#include "db.h"

#define MIGRATE_BATCH 2000
#define MIGRATE_TABLES 7

/* One table's outcome. */
struct migrate_count {
        const char *table;
        uint64_t rows;          /* in the source */
        uint64_t copied;        /* new in the destination */
        uint64_t updated;       /* there, and brought up to date */
        uint64_t unchanged;     /* there already, the same */
};

/* Told after every transaction: done of total rows of this pass over c->table. */
typedef void (*migrate_progress_fn)(const struct migrate_count *c, uint64_t done, uint64_t total, void *arg);

/* Copy from (SQLite: upgraded first if its schema is older) into to
 * (PostgreSQL: created or upgraded as slhookd does). Returns 0 with
 * counts[] filled in table order, or a negative errno with *reterr an
 * allocated message naming the database, table and row at fault. */
int migrate_run(const struct db_conf *from, const struct db_conf *to, migrate_progress_fn progress, void *arg,
                struct migrate_count counts[MIGRATE_TABLES], char **reterr);

#endif
