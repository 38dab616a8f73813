/* store_pg: the mail events of a transaction written set-based on
 * PostgreSQL, for the store (store.c). Row by row, each event took four
 * round trips to the server (duplicate check, its message row FOR UPDATE,
 * the message write, the event insert); here a transaction takes one
 * statement for each of those steps, whatever its number of events (up to
 * 64 events a statement), with columns passed as arrays (unnest), the
 * events as a multi-row VALUES. The messages are brought up to date in
 * memory with corr_apply(), in the order their events came, as row by row.
 * SQLite, in process, keeps the row-by-row path: its statements cost
 * microseconds, not round trips. */
#ifndef SLHOOKD_STORE_PG_H
#define SLHOOKD_STORE_PG_H

#include <stdbool.h>
#include <stdint.h>

#include "corr.h"
#include "db.h"
#include "event.h"
#include "store.h"
#include "util.h"

struct store_pg;

/* Prepare for db (a PostgreSQL connection); 0 or -EIO. */
int store_pg_open(struct db *db, struct store_pg **ret);
void store_pg_close(struct store_pg *p);        /* NULL-safe */

/* Start a transaction's set (an attempt: what an earlier one added goes). */
void store_pg_clear(struct store_pg *p);

/* Why a mail event cannot be an events row here, or NULL: a Type,
 * MessageId, MailingId or Address over STORE_PG_MAX_KEY bytes. They are
 * indexed, and a B-tree entry holds 2,704 bytes at most (message id and
 * address together): PostgreSQL refused the row, and the request with it.
 * The store, and a quarantine replay, quarantine such an event (SQLite
 * stores it). */
#define STORE_PG_MAX_KEY 1000
const char *store_pg_unindexable(const struct event *ev);

/* Add a mail event (EVENT_MAIL) of job; it is written by store_pg_flush. */
void store_pg_add(struct store_pg *p, struct store_job *job, struct event *ev);

/* corr_apply() as the store does it (it counts what the event moved). */
typedef void (*store_pg_apply_fn)(void *arg, const struct corr_key *k, struct corr_msg *m, const struct event *ev,
                                  const char *received_at);

/* Write what was added, inside the transaction. Each new event is applied
 * to its message with apply(arg, ...), in the order added; then for each
 * event, in that order: done(arg, job, ev, stored), stored false for a
 * redelivery.
 * Returns 0, or -1 with db_errmsg() saying why (db_conflict() when another
 * instance wrote one of the same rows meanwhile: run the transaction again). */
int store_pg_flush(struct store_pg *p, store_pg_apply_fn apply,
                   void (*done)(void *arg, struct store_job *job, struct event *ev, bool stored), void *arg);

/* Append v to a PostgreSQL array literal being built in b ("{" first,
 * then elements, then store_pg_arr_end): text (NULL: NULL), or an integer. */
void store_pg_arr_text(struct buf *b, const char *v);
void store_pg_arr_int(struct buf *b, bool has, int64_t v);
void store_pg_arr_end(struct buf *b);

#endif
