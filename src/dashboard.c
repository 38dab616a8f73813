/* dashboard: the /dashboard page (see dashboard.h). */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "dashboard.h"
#include "event.h"
#include "util.h"

/* The page's one stylesheet; the CSP allows it by its hash and nothing else. */
static const char style[] =
        "body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1180px;padding:0 1em;color:#1d2330}"
        "h1{font-size:1.4em;margin:0}h2{font-size:1.1em;margin:1.6em 0 .5em;border-bottom:1px solid #d5d9e0}"
        "p.sub{color:#5a6275;margin:.2em 0 0}table{border-collapse:collapse;width:100%}"
        "th,td{padding:.25em .5em;text-align:left;border-bottom:1px solid #eceef2;vertical-align:top}"
        "th{font-weight:600;color:#5a6275}td.n{text-align:right;font-variant-numeric:tabular-nums}"
        "td.t{white-space:nowrap;font-variant-numeric:tabular-nums}td.w{word-break:break-word}"
        ".flag{color:#b42318;font-weight:600}.ok{color:#067647}.bad{color:#b42318}.none{color:#8a91a2}"
        "form{margin:.5em 0}input[type=search]{width:28em;max-width:100%;padding:.3em}"
        "svg text{font:11px system-ui,sans-serif;fill:#5a6275}svg .axis{stroke:#c4c9d4}"
        "svg .series{fill:none;stroke-width:1.6}svg .mark{stroke:#1d2330;stroke-width:1}";

static char csp[256];

static void
csp_init(void)
{
        unsigned char digest[32];
        gnutls_datum_t in = { digest, sizeof(digest) }, out = { NULL, 0 };

        if (gnutls_hash_fast(GNUTLS_DIG_SHA256, style, strlen(style), digest) == 0 &&
            gnutls_base64_encode2(&in, &out) == 0) {
                snprintf(csp, sizeof(csp),
                         "default-src 'none'; style-src 'sha256-%.*s'; form-action 'self'; base-uri 'none'; "
                         "frame-ancestors 'none'",
                         (int) out.size, out.data);
                gnutls_free(out.data);
        } else {
                snprintf(csp, sizeof(csp), "default-src 'none'; form-action 'self'; base-uri 'none'");
        }
}

const char *
dashboard_csp(void)
{
        static pthread_once_t once = PTHREAD_ONCE_INIT;

        pthread_once(&once, csp_init);
        return csp;
}

/* Text from the database (or the request) into the page. */
static void
esc(struct buf *b, const char *s)
{
        const char *p;

        for (p = s ? s : ""; *p; p++)
                switch (*p) {
                case '&': buf_puts(b, "&amp;"); break;
                case '<': buf_puts(b, "&lt;"); break;
                case '>': buf_puts(b, "&gt;"); break;
                case '"': buf_puts(b, "&quot;"); break;
                case '\'': buf_puts(b, "&#39;"); break;
                default: buf_append(b, p, 1); break;
                }
}

/* "2026-12-06T10:00:00.000000Z" as "2026-12-06 10:00:00". */
static void
td_time(struct buf *b, const char *t)
{
        buf_puts(b, "<td class=\"t\">");
        if (t && strlen(t) >= 19)
                buf_printf(b, "%.10s %.8s", t, t + 11);
        else
                esc(b, t);
        buf_puts(b, "</td>");
}

static void
td(struct buf *b, const char *cls, const char *s)
{
        buf_printf(b, "<td%s%s%s>", cls ? " class=\"" : "", cls ? cls : "", cls ? "\"" : "");
        if (s == NULL || s[0] == '\0')
                buf_puts(b, "<span class=\"none\">\u2014</span>");
        else
                esc(b, s);
        buf_puts(b, "</td>");
}

/* ---- events per hour by type ---- */

static const struct {
        const char *type, *color;
} series[] = {
        { "Queued", "#8a91a2" }, { "Sent", "#1f6feb" }, { "Deferred", "#d4a72c" }, { "Failed", "#cf222e" },
        { "Complaint", "#8250df" }, { "Open", "#2da44e" }, { "Click", "#0e7c86" }, { "Unsubscribe", "#bf5b04" },
};
#define N_SERIES (sizeof(series) / sizeof(series[0]))
#define HOURS_MAX (366 * 24)

static int64_t
hour_us(const char *hour)
{
        char t[32];
        int64_t us = 0;

        snprintf(t, sizeof(t), "%.13s:00:00Z", hour);
        (void) event_parse_time(t, strlen(t), &us);
        return us;
}

static int
chart(struct buf *b, struct db *db, int64_t from_us, int64_t to_us)
{
        enum { W = 1120, H = 240, L = 48, R = 12, T = 10, B = 28 };
        char from[TIME_ISO_LEN], to[TIME_ISO_LEN];
        size_t hours = (size_t) ((to_us - from_us) / 3600000000LL) + 1, i, k;
        int64_t *n, top = 0, base;
        bool present[N_SERIES] = { false };
        struct db_stmt *st;
        int rc, shown = 0;

        if (hours > HOURS_MAX)
                hours = HOURS_MAX;
        n = xcalloc(hours * N_SERIES, sizeof(*n));
        time_format_iso(from_us, from);
        time_format_iso(to_us, to);
        if (db_prepare(db, "SELECT hour, type, events FROM event_counts WHERE hour >= ?1 AND hour <= ?2 AND events > 0",
                       0, &st) < 0) {
                free(n);
                return -1;
        }
        from[13] = to[13] = '\0';
        base = hour_us(from);   /* the chart's first hour, once */
        db_bind_text(st, 1, from);
        db_bind_text(st, 2, to);
        while ((rc = db_step(st)) > 0) {
                const char *hour = db_text(st, 0), *type = db_text(st, 1);
                int64_t h;

                if (hour == NULL || type == NULL)
                        continue;
                h = (hour_us(hour) - base) / 3600000000LL;
                for (k = 0; k < N_SERIES && strcmp(series[k].type, type) != 0; k++)
                        ;
                if (k == N_SERIES || h < 0 || (size_t) h >= hours)
                        continue;
                n[(size_t) h * N_SERIES + k] += db_int(st, 2);
                present[k] = true;
        }
        db_finalize(st);
        if (rc < 0) {
                free(n);
                return -1;
        }
        for (i = 0; i < hours * N_SERIES; i++)
                if (n[i] > top)
                        top = n[i];
        buf_printf(b, "<svg id=\"chart\" role=\"img\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                      "xmlns=\"http://www.w3.org/2000/svg\"><title>Events per hour by type, %.10s %.2s:00 to "
                      "%.10s %.2s:00 UTC</title>",
                   W, H, W, H, from, from + 11, to, to + 11);
        buf_printf(b, "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>", L, H - B, W - R, H - B);
        buf_printf(b, "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>", L, T, L, H - B);
        buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%lld</text>", L - 4, T + 8, (long long) top);
        buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">0</text>", L - 4, H - B);
        /* A label at each midnight. */
        for (i = 0; i < hours; i++) {
                char t[TIME_ISO_LEN];
                int64_t us = base + (int64_t) i * 3600000000LL;

                time_format_iso(us, t);
                if (strncmp(t + 11, "00", 2) == 0 && (hours <= 24 * 14 || (us / 86400000000LL) % 7 == 0))
                        buf_printf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.5s</text>",
                                   L + (double) i * (W - L - R) / (double) (hours > 1 ? hours - 1 : 1), H - 8, t + 5);
        }
        for (k = 0; k < N_SERIES; k++) {
                if (!present[k])
                        continue;
                buf_printf(b, "<polyline class=\"series\" data-type=\"%s\" stroke=\"%s\" points=\"", series[k].type,
                           series[k].color);
                for (i = 0; i < hours; i++)
                        buf_printf(b, "%s%.1f,%.1f", i ? " " : "",
                                   L + (double) i * (W - L - R) / (double) (hours > 1 ? hours - 1 : 1),
                                   (double) (H - B) - (top ? (double) n[i * N_SERIES + k] * (H - B - T) / (double) top
                                                           : 0));
                buf_printf(b, "\"><title>%s</title></polyline>", series[k].type);
                buf_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                              "<text x=\"%d\" y=\"%d\">%s</text>",
                           L + 12 + shown * 96, T, series[k].color, L + 26 + shown * 96, T + 9, series[k].type);
                shown++;
        }
        if (shown == 0)
                buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">no events in the window</text>",
                           W / 2, H / 2);
        buf_puts(b, "</svg>\n");
        free(n);
        return 0;
}

/* ---- health ---- */

/* A rate as a bar against its thresholds (drawn at a half and at the
 * whole of the scale's width when there are two). */
static void
rate_bar(struct buf *b, bool has, double rate, double warn, double max, bool judged)
{
        enum { BW = 120, BH = 12 };
        double scale = 2 * max, w;
        const char *fill;

        buf_puts(b, "<td class=\"n\">");
        if (!has) {
                buf_puts(b, "<span class=\"none\">\u2014</span></td>");
                return;
        }
        w = rate >= scale ? BW : rate / scale * BW;
        fill = !judged ? "#8a91a2" : rate >= max ? "#cf222e" : warn > 0 && rate >= warn ? "#d4a72c" : "#2da44e";
        buf_printf(b, "%.3g%% <svg width=\"%d\" height=\"%d\" role=\"img\"><title>%.4f%% (threshold %.3f%%)</title>"
                      "<rect width=\"%d\" height=\"%d\" fill=\"#eceef2\"/><rect width=\"%.1f\" height=\"%d\" "
                      "fill=\"%s\"/>",
                   rate * 100, BW, BH, rate * 100, max * 100, BW, BH, w, BH, fill);
        if (warn > 0 && warn < max)
                buf_printf(b, "<line class=\"mark\" x1=\"%.1f\" y1=\"0\" x2=\"%.1f\" y2=\"%d\"/>", warn / scale * BW,
                           warn / scale * BW, BH);
        buf_printf(b, "<line class=\"mark\" x1=\"%d\" y1=\"0\" x2=\"%d\" y2=\"%d\"/></svg></td>", BW / 2, BW / 2, BH);
}

static int
health_table(struct buf *b, struct db *db, const struct health_conf *c, const char *since, const char *until)
{
        struct health_report r;
        char num[32], flags[128];
        size_t i;

        if (health_report(db, since, until, false, -1, c, &r) < 0)
                return -1;
        buf_printf(b, "<table id=\"health\"><tr><th>ServerId</th><th>sent</th><th>hard bounces</th><th>async "
                      "bounces</th><th>complaints</th><th>unsubscribes</th><th>bounce rate</th><th>complaint "
                      "rate</th><th>open rate</th><th>click rate</th><th>flags</th></tr>\n");
        for (i = 0; i < r.n; i++) {
                const struct health_row *w = &r.rows[i];
                bool judged = w->n[HK_SENT] >= (int64_t) c->min_sent;
                static const int cols[] = { HK_SENT, HK_FAILED_PERMANENT, HK_ASYNC_BOUNCES, HK_COMPLAINTS,
                                            HK_UNSUBSCRIBES };
                size_t k;

                buf_printf(b, "<tr><td>%lld</td>", (long long) w->server_id);
                for (k = 0; k < sizeof(cols) / sizeof(cols[0]); k++)
                        buf_printf(b, "<td class=\"n\">%lld</td>", (long long) w->n[cols[k]]);
                rate_bar(b, w->has_rate[HR_BOUNCE], w->rate[HR_BOUNCE], 0, c->bounce_rate_max, judged);
                rate_bar(b, w->has_rate[HR_COMPLAINT], w->rate[HR_COMPLAINT], c->complaint_rate_warn,
                         c->complaint_rate_max, judged);
                for (k = HR_OPEN; k <= HR_CLICK; k++) {
                        snprintf(num, sizeof(num), "%.3g%%", w->rate[k] * 100);
                        td(b, "n", w->has_rate[k] ? num : NULL);
                }
                buf_printf(b, "<td class=\"flag\">%s%s</td></tr>\n", health_flag_names(w->flags, flags, sizeof(flags)),
                           judged ? "" : "<span class=\"none\">fewer sent than min_sent</span>");
        }
        if (r.n == 0)
                buf_puts(b, "<tr><td colspan=\"11\" class=\"none\">no mail in the window</td></tr>\n");
        buf_puts(b, "</table>\n");
        health_report_done(&r);
        return 0;
}

/* ---- lists ---- */

/* Rows of sql (bound to params) as table rows; col_time: which columns
 * are times. Returns the rows, or -1. */
static int
rows(struct buf *b, struct db *db, const char *sql, const char *const *params, int nparams, unsigned col_time)
{
        struct db_stmt *st;
        int rc, i, n = 0;

        if (db_prepare(db, sql, 0, &st) < 0)
                return -1;
        for (i = 0; i < nparams; i++)
                db_bind_text(st, i + 1, params[i]);
        while ((rc = db_step(st)) > 0) {
                buf_puts(b, "<tr>");
                for (i = 0; i < db_columns(st); i++)
                        if (col_time & (1u << i))
                                td_time(b, db_text(st, i));
                        else
                                td(b, i == db_columns(st) - 1 ? "w" : NULL, db_text(st, i));
                buf_puts(b, "</tr>\n");
                n++;
        }
        db_finalize(st);
        return rc < 0 ? -1 : n;
}

static int
list(struct buf *b, struct db *db, const char *id, const char *title, const char *head, const char *sql,
     const char *const *params, int nparams, const char *empty)
{
        int n;

        buf_printf(b, "<h2>%s</h2>\n<table id=\"%s\"><tr>%s</tr>\n", title, id, head);
        if ((n = rows(b, db, sql, params, nparams, 1)) < 0)
                return -1;
        if (n == 0)
                buf_printf(b, "<tr><td colspan=\"6\" class=\"none\">%s</td></tr>\n", empty);
        buf_puts(b, "</table>\n");
        return 0;
}

static int
status(struct buf *b, struct db *db, const char *storage)
{
        struct db_stmt *st;
        int rc, n = 0;

        buf_puts(b, "<h2>Self-test and storage</h2>\n<p id=\"storage\">Storage: ");
        esc(b, storage);
        buf_puts(b, "</p>\n<table id=\"selftest\"><tr><th>endpoint</th><th>last self-test</th><th>result</th>"
                    "<th>last passed</th><th>last validation</th><th>error</th></tr>\n");
        if (db_prepare(db, "SELECT endpoint, last_test_at, last_test_result, last_passed_at, last_validation_at, "
                           "last_error FROM webhook_status ORDER BY endpoint", 0, &st) < 0)
                return -1;
        while ((rc = db_step(st)) > 0) {
                const char *result = db_text(st, 2);

                buf_puts(b, "<tr>");
                td(b, NULL, db_text(st, 0));
                td_time(b, db_text(st, 1));
                td(b, result && strcmp(result, "passed") == 0 ? "ok" : result ? "bad" : NULL, result);
                td_time(b, db_text(st, 3));
                td_time(b, db_text(st, 4));
                td(b, "w", db_text(st, 5));
                buf_puts(b, "</tr>\n");
                n++;
        }
        db_finalize(st);
        if (n == 0)
                buf_puts(b, "<tr><td colspan=\"6\" class=\"none\">no self-test yet (it runs with [api])</td></tr>\n");
        buf_puts(b, "</table>\n");
        return rc < 0 ? -1 : 0;
}

char *
dashboard_render(struct db *db, const struct health_conf *c, const char *search, const char *storage)
{
        struct buf b = { 0 };
        int64_t now = time_now_us(), from = now - (int64_t) c->window * 1000000;
        char since[TIME_ISO_LEN], until[TIME_ISO_LEN];
        const char *q[2] = { search, search };
        bool searching = search && search[0];

        time_format_iso(from, since);
        time_format_iso(now, until);
        buf_puts(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                     "<meta name=\"viewport\" content=\"width=device-width\">"
                     "<title>slhookd: sending health</title><style>");
        buf_puts(&b, style);
        buf_printf(&b, "</style></head><body>\n<h1>slhookd " PACKAGE_VERSION ": sending health</h1>\n"
                       "<p class=\"sub\">%s \u2014 the last %u h, to %.10s %.8s UTC. <a href=\"/metrics\">metrics</a> "
                       "\u00b7 <a href=\"/healthz\">healthz</a></p>\n",
                   db_backend(db) == DB_POSTGRESQL ? "PostgreSQL" : "SQLite", c->window / 3600, until, until + 11);
        buf_puts(&b, "<form method=\"get\" action=\"/dashboard\" role=\"search\"><input type=\"search\" name=\"q\" "
                     "placeholder=\"an address or a message id\" aria-label=\"address or message id\" value=\"");
        esc(&b, search);
        buf_puts(&b, "\"> <button type=\"submit\">Timeline</button></form>\n");
        if (searching) {
                buf_puts(&b, "<h2>Timeline of \u201c");
                esc(&b, search);
                buf_puts(&b, "\u201d</h2>\n<table id=\"timeline\"><tr><th>time</th><th>type</th><th>ServerId</th>"
                             "<th>address</th><th>message id</th><th>detail</th></tr>\n");
                switch (rows(&b, db,
                             "SELECT coalesce(e.occurred_at, e.received_at), e.type, e.server_id, e.address, "
                             "e.message_id, coalesce(e.reason, e.response, e.url, e.fbl_type, e.tracking_type) "
                             "FROM events e WHERE e.message IN (SELECT id FROM messages WHERE message_id = ?1 "
                             "UNION SELECT id FROM messages WHERE address = ?2) "
                             "ORDER BY coalesce(e.occurred_at, e.received_at), e.id LIMIT 500",
                             q, 2, 1)) {
                case -1:
                        goto fail;
                case 0:
                        buf_puts(&b, "<tr><td colspan=\"6\" class=\"none\">no events of that address or message "
                                     "id</td></tr>\n");
                        break;
                default:
                        break;
                }
                buf_puts(&b, "</table>\n");
        }
        buf_puts(&b, "<h2>Events per hour</h2>\n");
        if (chart(&b, db, from, now) < 0)
                goto fail;
        buf_printf(&b, "<h2>Subaccounts, worst first</h2>\n<p class=\"sub\">Thresholds: complaints %g%% (warning) "
                       "and %g%%, hard bounces %g%%; judged from %u sent. Bars: the rate against twice its "
                       "threshold; the ticks mark the thresholds.</p>\n",
                   c->complaint_rate_warn * 100, c->complaint_rate_max * 100, c->bounce_rate_max * 100, c->min_sent);
        if (health_table(&b, db, c, since, until) < 0)
                goto fail;
        if (list(&b, db, "bounces", "Latest async bounces",
                 "<th>failed</th><th>ServerId</th><th>address</th><th>message id</th><th>reason</th>",
                 "SELECT failed_at, server_id, address, message_id, reason FROM async_bounces "
                 "ORDER BY failed_at DESC LIMIT 15", NULL, 0, "none") < 0 ||
            list(&b, db, "complaints", "Latest complaints",
                 "<th>time</th><th>ServerId</th><th>address</th><th>message id</th><th>feedback type</th>",
                 "SELECT coalesce(occurred_at, received_at), server_id, address, message_id, fbl_type FROM events "
                 "WHERE type = 'Complaint' AND is_test = 0 ORDER BY occurred_at DESC NULLS LAST, id DESC LIMIT 15",
                 NULL, 0, "none") < 0 ||
            status(&b, db, storage) < 0)
                goto fail;
        buf_puts(&b, "</body></html>\n");
        return b.data;
fail:
        buf_done(&b);
        return NULL;
}
