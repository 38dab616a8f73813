/* mgmt: the management thread. At start-up and every self_test_interval it
 * makes sure the [api] endpoint's webhook is registered at SocketLabs (by
 * webhook_id, else by public_url, else created), gives the endpoint a
 * generated secret when it has none, asks SocketLabs to post a test event and
 * waits for that event to be stored, by our own listener or by another
 * instance on the same database (webhook_status.test_events). Instances on
 * one PostgreSQL database take turns: one runs it under an advisory lock,
 * and one that passed less than 0.9 interval ago spares the others. Every run is
 * recorded in webhook_status, logged when its outcome changes and reported
 * with sd_notify STATUS=. Failures never touch intake; they are retried with
 * a capped exponential backoff. */
#ifndef SLHOOKD_MGMT_H
#define SLHOOKD_MGMT_H

#include "cfg.h"
#include "http.h"
#include "store.h"

struct mgmt;

/* Read the API key (key_file, else $CREDENTIALS_DIRECTORY/api-key) and a
 * secret generated earlier, then start the thread. Call after http_start and
 * store_start. Returns 0 or a negative errno with *reterr set (it never
 * quotes the key). */
int mgmt_start(const struct cfg *cfg, struct http *http, struct store *store, struct mgmt **ret, char **reterr);

/* Stop the thread, interrupting an API call or a wait under way. NULL-safe;
 * returns NULL. */
struct mgmt *mgmt_stop(struct mgmt *m);

#endif
