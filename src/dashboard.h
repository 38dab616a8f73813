/* dashboard: the /dashboard page of the [metrics] listener. One HTML page,
 * rendered on the server from the database (a read-only connection of the
 * listener's own, so intake never waits for it): events per hour by type
 * over the [health] window as an inline SVG chart, the health table worst
 * first with each rate drawn against its thresholds, the latest async
 * bounces and complaints, the self-test and storage status, and a search
 * (an address or a message id: its timeline). No script at all, nothing
 * from another host: dashboard_csp() forbids both. Everything taken from
 * the database is HTML-escaped. */
#ifndef SLHOOKD_DASHBOARD_H
#define SLHOOKD_DASHBOARD_H

#include "db.h"
#include "health.h"

/* The page for the window of c ending now; search (may be NULL or "") an
 * address or message id whose timeline is shown; storage one line about
 * the writer (plain text). Allocated; NULL with db_errmsg(db) on failure. */
char *dashboard_render(struct db *db, const struct health_conf *c, const char *search, const char *storage);

/* The Content-Security-Policy the page is served with (static). */
const char *dashboard_csp(void);

#endif
