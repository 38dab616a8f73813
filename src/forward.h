/* forward: the stored events sent on to the customer's own platform, one
 * [forward NAME] each, signed as the Standard Webhooks specification says,
 * at least once and in id order. Each destination has a thread with a
 * read-only connection for the committed events and one of its own for its
 * cursor (forward_cursors), which moves only after a 2xx: a slow or dead
 * destination costs intake nothing, and a restart goes on where the last
 * delivery ended. With several instances on PostgreSQL one forwards each
 * destination at a time (an advisory lock, let go when it dies). */
#ifndef SLHOOKD_FORWARD_H
#define SLHOOKD_FORWARD_H

#include <stddef.h>

#include "cfg.h"
#include "db.h"

struct forwarder;

/* Start a thread for each of cfg's [forward NAME]s (none: *ret NULL) on
 * the database db names (copied). 0, or a negative errno with *reterr set. */
int forward_start(const struct cfg *cfg, const struct db_conf *db, struct forwarder **ret, char **reterr);

/* Stop them: an attempt under way is abandoned (its events are sent again
 * later), each thread joined within a second or two. NULL-safe; NULL. */
struct forwarder *forward_stop(struct forwarder *f);

/* "v1,<base64 HMAC-SHA256 of id.timestamp.body>", allocated. */
char *forward_signature(const unsigned char *key, size_t key_len, const char *id, long long timestamp,
                        const char *body, size_t len);

/* The advisory lock of forward NAME (PostgreSQL). */
long long forward_lock_key(const char *name);

#endif
