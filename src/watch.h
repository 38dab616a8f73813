/* watch: the daemon's eye on sending health. Every [health] interval a
 * thread of its own, on a read-only connection of its own (intake never
 * waits for it), adds up the [health] window of every subaccount
 * (health_report) and says what changed: one warning when a ServerId
 * crosses a threshold (SLHOOKD_SERVER_ID, SLHOOKD_HEALTH_FLAG,
 * SLHOOKD_RATE), one notice when it is back under; and it sets
 * slhookd_health_servers_flagged{flag}, which has no per-subaccount labels. */
#ifndef SLHOOKD_WATCH_H
#define SLHOOKD_WATCH_H

#include "db.h"
#include "health.h"

struct watch;

/* Start watching the database db names (copied) with c (copied). 0, or a
 * negative errno with *reterr set. */
int watch_start(const struct health_conf *c, const struct db_conf *db, struct watch **ret, char **reterr);

/* New thresholds, window or interval (a reload): taken at the next
 * evaluation, which comes at once; what was already crossed is remembered. */
void watch_reload(struct watch *w, const struct health_conf *c);

/* Stop: an evaluation under way ends within its statement timeout (10 s).
 * NULL-safe; returns NULL. */
struct watch *watch_stop(struct watch *w);

#endif
