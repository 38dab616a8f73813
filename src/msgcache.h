/* msgcache: the SQLite writer's copy of the message rows it touched lately,
 * so that a message's next event (its Queued, Sent and Open come seconds
 * apart) needs no SELECT. Only the writer uses it, and only on SQLite,
 * where it is the one writer of messages but for slhookctl (prune, replay),
 * which the store notices through PRAGMA data_version and answers by
 * clearing the cache. The store clears it too whenever a transaction fails
 * and after its own retention removed messages: an entry is always what the
 * table holds, or what this transaction wrote there.
 *
 * Two generations: lookups search both, new entries go to the young one;
 * when it is full the old one is dropped and the young one becomes old. So
 * at most 2 × capacity rows are held, and a row used within the last
 * capacity insertions is always found. */
#ifndef SLHOOKD_MSGCACHE_H
#define SLHOOKD_MSGCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "corr.h"

struct msgcache;

struct msgcache *msgcache_new(size_t capacity);
void msgcache_free(struct msgcache *c);

/* The row of key k: its id, and *m a copy whose strings are the cache's
 * (valid until the next msgcache_put or msgcache_clear). 0 when absent. */
int64_t msgcache_get(struct msgcache *c, const struct corr_key *k, struct corr_msg *m);

/* Remember row id of key k as m (strings copied). */
void msgcache_put(struct msgcache *c, const struct corr_key *k, int64_t id, const struct corr_msg *m);

/* Forget every row. */
void msgcache_clear(struct msgcache *c);

/* Rows held, lookups that found one, lookups that did not. */
void msgcache_stats(const struct msgcache *c, size_t *rows, uint64_t *hits, uint64_t *misses);

#endif
