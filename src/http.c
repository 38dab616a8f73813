/* http: libmicrohttpd daemon, accept policy, routing, body limit, replies. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <microhttpd.h>

#include "acl.h"
#include "event.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"

/* One libmicrohttpd daemon on the listening socket: the one accepting, or
 * one a reload replaced, which serves the connections it has (answering
 * "Connection: close") until it can go. */
struct listener {
        struct http *h;
        struct MHD_Daemon *mhd;
        struct cfg *cfg;                /* its options and accept policy (a reference) */
        atomic_uint in_flight;          /* requests begun, not yet completed */
        atomic_uint jobs;               /* requests suspended, waiting for the writer */
        atomic_bool draining;           /* no longer accepting */
        atomic_bool closing;            /* about to stop: no job may start (see listener_reap) */
        int64_t drained_at;             /* when it stopped accepting */
        struct listener *next;          /* the replaced ones, main thread only */
};

/* A secret an endpoint was given while running (http_set_secret). The list
 * only grows; a replaced secret lives until http_stop (a request may be
 * reading it). */
struct extra {
        char *endpoint;
        _Atomic(char *) secret;
        struct extra *next;
};

struct http {
        struct listener *cur;           /* accepting; main thread */
        struct listener *old;           /* replaced, still serving; main thread */
        pthread_mutex_t lock;           /* cfg: taken with a reference */
        struct cfg *cfg;                /* what requests are judged by */
        struct store *store;
        int fd;
        unsigned port;
        bool quiesced;                  /* http_quiesce: nothing accepts */
        atomic_ullong refused;
        atomic_llong refused_logged_at;

        _Atomic(struct extra *) extra;
        char **retired;                 /* under lock */
        size_t n_retired;

        atomic_ullong test_stored, test_refused;

        /* Progress, for the watchdog: requests read and not yet answered,
         * and answers given. */
        atomic_uint waiting;
        atomic_ullong answered;
};

enum req_state { REQ_READING, REQ_WAITING, REQ_ANSWERED };

struct req {
        struct http *h;
        struct listener *l;
        struct cfg *cfg;                /* the configuration in force when it began (a reference) */
        struct MHD_Connection *conn;
        const struct cfg_endpoint *ep;
        enum req_state state;
        int64_t t0;
        char peer[ACL_ADDR_LEN];
        char *body;
        size_t len, cap;
        bool form;
        struct event_batch batch;
        struct store_job job;
        bool counted;                   /* in h->waiting */
        size_t dropped;                 /* of a chunked body past max_body, or of a busy one: read and dropped */
        bool busy;                      /* the writer was behind when it began: 503 once its body is in */
        bool close;                     /* framing in doubt: close after the answer */
        char *path;                     /* as asked, without the query; for the log */
        const char *reason;             /* why it is refused, while reply_error answers */
};

static const char *const json_type = "application/json";

/* How much of a chunked body past max_body is read (and dropped) so that it
 * can be answered 413; more closes the connection. */
#define HTTP_DROP_MAX (1024 * 1024)

static void
log_request(struct req *r, int status)
{
        const struct event *ev = r->batch.n > 0 ? &r->batch.v[0] : NULL;
        static const struct {
                int status;
                enum metrics_reject why;
        } rejects[] = {
                { 400, REJECT_BAD_REQUEST }, { 401, REJECT_UNAUTHORIZED }, { 403, REJECT_FORBIDDEN },
                { 404, REJECT_NOT_FOUND }, { 405, REJECT_METHOD }, { 413, REJECT_TOO_LARGE },
                { 503, REJECT_UNAVAILABLE },
        };
        int64_t latency = time_mono_us() - r->t0;
        size_t i;
        struct log_fields f = {
                .endpoint = r->ep ? r->ep->name : NULL,
                .type = ev ? (ev->type ? ev->type : "-") : NULL,
                .message_id = ev ? ev->str[EVS_MESSAGE_ID] : NULL,
                .peer = r->peer,
                .status = status,
                .latency_us = latency,
                .path = r->path,
                .reason = r->reason,
                .server_id = -1,
        };
        const char *path = r->path ? r->path : "-";

        metrics_request(latency);
        for (i = 0; i < sizeof(rejects) / sizeof(rejects[0]); i++)
                if (rejects[i].status == status)
                        metrics_reject(rejects[i].why);
        if (!log_enabled(LOG_INFO))
                return;
        if (r->batch.n > 1)
                log_full(LOG_INFO, LOG_MID_REQUEST, &f, "%s %d: %zu events (%u stored, %u duplicate, %u quarantined)",
                         r->ep ? r->ep->path : "-", status, r->batch.n,
                         r->job.stored, r->job.duplicates, r->job.quarantined);
        else if (ev && r->state == REQ_WAITING)
                log_full(LOG_INFO, LOG_MID_REQUEST, &f, "%s %d: %s %s", r->ep->path, status,
                         ev->kind == EVENT_VALIDATION ? "Validation" : ev->type ? ev->type : "event",
                         ev->kind == EVENT_VALIDATION ? "answered" :
                         r->job.quarantined ? "quarantined" : r->job.duplicates ? "duplicate" :
                         status == 200 ? "stored" : "not stored");
        else if (r->reason)
                log_full(LOG_INFO, LOG_MID_REQUEST, &f, "%s %d: %s", path, status, r->reason);
        else
                log_full(LOG_INFO, LOG_MID_REQUEST, &f, "%s %d", path, status);
        if (ev && ev->str[EVS_ADDRESS] && log_enabled(LOG_DEBUG))
                log_full(LOG_DEBUG, LOG_MID_REQUEST, &f, "address %s", ev->str[EVS_ADDRESS]);
}

/* Queue a response; body is copied. */
static enum MHD_Result
reply(struct req *r, unsigned status, const char *content_type, const char *body,
      const char *h1, const char *v1)
{
        struct MHD_Response *resp;
        enum MHD_Result ret;

        resp = MHD_create_response_from_buffer(strlen(body), (void *) body, MHD_RESPMEM_MUST_COPY);
        if (resp == NULL)
                return MHD_NO;
        if (body[0])
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        if (h1)
                (void) MHD_add_response_header(resp, h1, v1);
        if (r->close || atomic_load(&r->l->draining))
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
        ret = MHD_queue_response(r->conn, status, resp);
        MHD_destroy_response(resp);
        log_request(r, (int) status);
        r->state = REQ_ANSWERED;
        if (r->counted) {
                r->counted = false;
                atomic_fetch_sub(&r->h->waiting, 1);
                atomic_fetch_add(&r->h->answered, 1);
        }
        return ret;
}

static enum MHD_Result
reply_error(struct req *r, unsigned status, const char *msg)
{
        struct buf b = { 0 };
        enum MHD_Result ret;
        const char *p;

        /* Messages are ours, but escape anyway: JSON must stay JSON. */
        buf_puts(&b, "{\"error\":\"");
        for (p = msg; *p; p++) {
                if (*p == '"' || *p == '\\')
                        buf_printf(&b, "\\%c", *p);
                else if ((unsigned char) *p < 0x20)
                        buf_printf(&b, "\\u%04x", (unsigned char) *p);
                else
                        buf_append(&b, p, 1);
        }
        buf_puts(&b, "\"}\n");
        if (r->reason == NULL)
                r->reason = msg;        /* for the log line reply() writes */
        if (status == MHD_HTTP_SERVICE_UNAVAILABLE)
                ret = reply(r, status, json_type, b.data, MHD_HTTP_HEADER_RETRY_AFTER,
                            r->job.result == -EAGAIN ? "5" : "60");
        else if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
                ret = reply(r, status, json_type, b.data, MHD_HTTP_HEADER_ALLOW, "POST");
        else
                ret = reply(r, status, json_type, b.data, NULL, NULL);
        r->reason = NULL;
        buf_done(&b);
        return ret;
}

/* The writer is behind (or the listener stops): 503, Retry-After: 5. */
static enum MHD_Result
reply_busy(struct req *r)
{
        r->job.result = -EAGAIN;
        return reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "busy, retry later");
}

static struct extra *
extra_find(struct http *h, const char *endpoint)
{
        struct extra *e;

        for (e = atomic_load(&h->extra); e; e = e->next)
                if (strcmp(e->endpoint, endpoint) == 0)
                        return e;
        return NULL;
}

/* Compare against every secret of the endpoint, never stopping early. */
static bool
secret_ok(struct http *h, const struct cfg_endpoint *ep, const struct event *ev)
{
        const struct extra *e = extra_find(h, ep->name);
        const char *extra = e ? atomic_load(&e->secret) : NULL;
        bool ok = false;
        size_t i;

        if (ev->secret == NULL || ev->secret_bad)
                return false;
        for (i = 0; i < ep->n_secrets; i++)
                ok |= str_eq_ct(ev->secret, ev->secret_len, ep->secrets[i], strlen(ep->secrets[i]));
        if (extra)
                ok |= str_eq_ct(ev->secret, ev->secret_len, extra, strlen(extra));
        return ok;
}

static bool
has_test_event(const struct event_batch *b)
{
        size_t i;

        for (i = 0; i < b->n; i++)
                if (b->v[i].is_test)
                        return true;
        return false;
}

/* Writer thread: the job's transaction ended; wake its connection. Once
 * resumed, r may be answered and freed at any time: the listener, which
 * outlives its jobs, is read first. */
static void
job_done(struct store_job *job)
{
        struct req *r = job->userdata;
        struct listener *l = r->l;

        if (job->result == 0 && has_test_event(&r->batch))
                atomic_fetch_add(&r->h->test_stored, 1);
        MHD_resume_connection(r->conn);
        atomic_fetch_sub(&l->jobs, 1);
}

static enum MHD_Result
answer_stored(struct req *r)
{
        const struct event *v = NULL;
        size_t i;

        if (r->job.result < 0)
                return reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
                                   r->job.result == -EAGAIN ? "busy, retry later" : "storage unavailable, retry later");
        for (i = 0; i < r->batch.n; i++)
                if (r->batch.v[i].kind == EVENT_VALIDATION) {
                        v = &r->batch.v[i];
                        break;
                }
        if (r->ep->validation_key)
                return reply(r, MHD_HTTP_OK, "text/plain", r->ep->validation_key, NULL, NULL);
        if (v) {
                /* The caller proved it knows the key: echoing it leaks nothing. */
                char *echo = xstrndup(v->secret, v->secret_len);
                enum MHD_Result ret = reply(r, MHD_HTTP_OK, "text/plain", echo, NULL, NULL);

                freezero(echo, v->secret_len);
                return ret;
        }
        return reply(r, MHD_HTTP_OK, "text/plain", "", NULL, NULL);
}

static bool
looks_like_json(const char *p, size_t len)
{
        size_t i;

        for (i = 0; i < len; i++)
                if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
                        return p[i] == '{' || p[i] == '[';
        return false;
}

/* The whole body is in: parse, authenticate, hand to the writer. */
static enum MHD_Result
process(struct req *r)
{
        struct http *h = r->h;
        char *err = NULL;
        bool validation = false;
        size_t i;
        int rc;

        r->counted = true;
        atomic_fetch_add(&h->waiting, 1);
        rc = event_parse(r->body ? r->body : "", r->len, r->form && !looks_like_json(r->body, r->len),
                         &r->batch, &err);
        if (r->body) {                          /* it held the secret; the batch has its own copies */
                freezero(r->body, r->cap + 1);
                r->body = NULL;
        }
        if (rc < 0) {
                enum MHD_Result ret = reply_error(r, MHD_HTTP_BAD_REQUEST, err);

                free(err);
                return ret;
        }
        for (i = 0; i < r->batch.n; i++)
                if (!secret_ok(h, r->ep, &r->batch.v[i])) {
                        if (has_test_event(&r->batch))
                                atomic_fetch_add(&h->test_refused, 1);
                        /* The sender is told no more than this; the log tells which. */
                        r->reason = r->batch.v[i].secret ? "SecretKey wrong" : "SecretKey missing";
                        return reply_error(r, MHD_HTTP_UNAUTHORIZED, "SecretKey missing or wrong");
                }
        for (i = 0; i < r->batch.n; i++) {
                struct event *ev = &r->batch.v[i];

                if (ev->kind == EVENT_VALIDATION) {
                        validation = true;
                        continue;
                }
                if (strcmp(r->peer, EVENT_TEST_PEER) == 0)
                        ev->is_test = true;
                event_digest(ev, r->ep->name);
        }
        r->job.batch = &r->batch;
        r->job.endpoint = r->ep->name;
        r->job.peer = r->peer;
        r->job.validation = validation;
        r->job.done = job_done;
        r->job.userdata = r;
        time_now_iso(r->job.received_at);

        /* A listener about to stop takes no job: it counts the job first
         * and then looks, listener_reap sets closing first and then
         * counts, so that one of the two sees the other. */
        atomic_fetch_add(&r->l->jobs, 1);
        if (atomic_load(&r->l->closing)) {
                atomic_fetch_sub(&r->l->jobs, 1);
                r->close = true;
                return reply_busy(r);
        }
        r->state = REQ_WAITING;
        MHD_suspend_connection(r->conn);
        rc = store_submit(h->store, &r->job);
        if (rc < 0) {
                r->job.result = rc == -ESHUTDOWN ? -EIO : rc;
                MHD_resume_connection(r->conn);
                atomic_fetch_sub(&r->l->jobs, 1);
        }
        return MHD_YES;
}

/* Count a refused peer; one log line a second at most, so that a scan
 * cannot flood the log. */
static void
refused(struct http *h, const char *peer)
{
        metrics_reject(REJECT_ALLOW_LIST);
        unsigned long long n = atomic_fetch_add(&h->refused, 1) + 1;
        long long now = time_mono_us(), last = atomic_load(&h->refused_logged_at);

        if (now - last >= 1000000 && atomic_compare_exchange_strong(&h->refused_logged_at, &last, now)) {
                struct log_fields f = LOG_FIELDS_NONE;

                f.peer = peer;
                log_full(LOG_NOTICE, LOG_MID_REFUSED, &f,
                         "refused connection from %s: not in the allow list (%llu refused so far)", peer, n);
        }
}

/* The client in the X-Forwarded-For list xff: see proxied_peer. */
static int
xff_client(const struct cfg *cfg, const char *xff, char peer[ACL_ADDR_LEN])
{
        struct sockaddr_storage ss;
        char item[INET6_ADDRSTRLEN + 1];
        const char *end, *start, *seg;
        size_t n;

        for (end = xff + strlen(xff); end > xff;) {
                for (seg = end; seg > xff && seg[-1] != ','; seg--)
                        ;
                start = seg;
                while (start < end && (*start == ' ' || *start == '\t'))
                        start++;
                n = (size_t) (end - start);
                while (n > 0 && (start[n - 1] == ' ' || start[n - 1] == '\t'))
                        n--;
                if (n == 0 || n >= sizeof(item))
                        return -1;
                memcpy(item, start, n);
                item[n] = '\0';
                memset(&ss, 0, sizeof(ss));
                if (inet_pton(AF_INET, item, &((struct sockaddr_in *) &ss)->sin_addr) == 1)
                        ss.ss_family = AF_INET;
                else if (inet_pton(AF_INET6, item, &((struct sockaddr_in6 *) &ss)->sin6_addr) == 1)
                        ss.ss_family = AF_INET6;
                else
                        return -1;
                acl_format_addr((struct sockaddr *) &ss, peer);
                if (!acl_match(cfg->trusted_proxies, (struct sockaddr *) &ss) || seg == xff)
                        return acl_match(cfg->allow, (struct sockaddr *) &ss);
                end = seg - 1;          /* the comma before */
        }
        return -1;
}

struct xff {
        struct buf all;
        unsigned lines;
};

static enum MHD_Result
join_xff(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
        struct xff *x = cls;

        (void) kind;
        if (strcasecmp(key, "X-Forwarded-For") == 0) {
                buf_puts(&x->all, x->lines++ ? "," : "");
                buf_puts(&x->all, value ? value : "");
        }
        return MHD_YES;
}

/* For a request from a trusted proxy: the client is the right-most
 * X-Forwarded-For address that is not itself a trusted proxy (the proxy
 * when there is none). Every X-Forwarded-For line counts, in order, as one
 * list (RFC 9110 5.3): a proxy such as HAProxy adds a line of its own
 * rather than extend the last. Writes the client to peer; returns 1 when it
 * is allowed, 0 when not, -1 when the header is not a list of addresses. */
static int
proxied_peer(const struct cfg *cfg, struct MHD_Connection *conn, const struct sockaddr *proxy, char peer[ACL_ADDR_LEN])
{
        struct xff x = { { 0 }, 0 };
        int r;

        MHD_get_connection_values(conn, MHD_HEADER_KIND, join_xff, &x);
        if (x.lines == 0)
                return acl_match(cfg->allow, proxy);
        r = xff_client(cfg, x.all.data ? x.all.data : "", peer);
        buf_done(&x.all);
        return r;
}

static enum MHD_Result
count_framing(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
        unsigned *n = cls;

        (void) kind;
        (void) value;
        if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
                n[0]++;
        else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0)
                n[1]++;
        return MHD_YES;
}

/* Why the request's framing is in doubt (RFC 9112, 6.1 and 6.3: a request
 * two parties could split differently, the root of request smuggling) or
 * why it is not valid HTTP/1.1 (3.2: Host is required), or NULL.
 * libmicrohttpd 0.9.75 takes the first of several Content-Length headers,
 * waits out a body in a transfer coding it does not know, and lets a
 * missing Host pass. */
static const char *
bad_framing(struct MHD_Connection *conn, const char *version)
{
        const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        unsigned n[2] = { 0, 0 };

        MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, n);
        if (n[0] > 1 || n[1] > 1)
                return "Content-Length or Transfer-Encoding given more than once";
        if (n[0] && n[1])
                return "both Content-Length and Transfer-Encoding";
        if (te && strcasecmp(te, "chunked") != 0)
                return "Transfer-Encoding other than chunked";
        if (strcmp(version, MHD_HTTP_VERSION_1_1) == 0 &&
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST) == NULL)
                return "HTTP/1.1 request without Host";
        return NULL;
}

/* The configuration in force, with a reference for the caller. */
static struct cfg *
current_cfg(struct http *h)
{
        struct cfg *c;

        pthread_mutex_lock(&h->lock);
        c = cfg_ref(h->cfg);
        pthread_mutex_unlock(&h->lock);
        return c;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
        struct listener *l = cls;
        struct http *h = l->h;
        struct req *r = *con_cls;

        if (r == NULL) {
                const union MHD_ConnectionInfo *ci;
                const char *cl, *ct, *why;
                int64_t n = -1;

                r = xcalloc(1, sizeof(*r));
                r->h = h;
                r->l = l;
                /* Judged by the configuration in force now, whichever
                 * listener serves it (a reload may have replaced this one). */
                r->cfg = current_cfg(h);
                r->conn = conn;
                r->t0 = time_mono_us();
                n = (int64_t) strcspn(url, "?");
                r->path = xstrndup(url, n < 256 ? (size_t) n : 256);
                n = -1;
                ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
                acl_format_addr(ci ? ci->client_addr : NULL, r->peer);
                atomic_fetch_add(&l->in_flight, 1);
                *con_cls = r;
                if ((why = bad_framing(conn, version)) != NULL) {
                        r->close = true;
                        return reply_error(r, MHD_HTTP_BAD_REQUEST, why);
                }
                if (ci && acl_match(r->cfg->trusted_proxies, ci->client_addr)) {
                        int ok = proxied_peer(r->cfg, conn, ci->client_addr, r->peer);

                        if (ok < 0)
                                return reply_error(r, MHD_HTTP_BAD_REQUEST, "X-Forwarded-For is not a list of addresses");
                        if (ok == 0) {
                                refused(h, r->peer);
                                return reply_error(r, MHD_HTTP_FORBIDDEN, "not in the allow list");
                        }
                }

                r->ep = cfg_endpoint_by_path(r->cfg, url);
                if (r->ep == NULL)
                        return reply_error(r, MHD_HTTP_NOT_FOUND, "no endpoint at this path");
                if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
                        return reply_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, "only POST is allowed");
                cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
                if (cl && str_to_i64(cl, strlen(cl), 0, INT64_MAX, &n) < 0)
                        return reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid Content-Length");
                if (n > (int64_t) r->cfg->max_body)
                        return reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "body larger than max_body");
                /* The writer is behind: the body could not be queued, so
                 * it is read and dropped, never held, and answered 503 at
                 * its end. An answer before the body would close the
                 * connection on unread data: the sender would see a reset
                 * (sending the rest fails), not the 503 and its
                 * Retry-After. */
                if (store_full(h->store)) {
                        r->busy = true;
                        return MHD_YES;
                }
                ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
                r->form = ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
                r->cap = n >= 0 ? (size_t) n : 4096;
                r->body = xmalloc(r->cap + 1);
                return MHD_YES;
        }
        if (r->state == REQ_READING && *upload_data_size > 0) {
                size_t k = *upload_data_size;

                if (r->busy || r->dropped || k > r->cfg->max_body - r->len) {
                        /* A busy body (dropped up to max_body for its
                         * 503), or a chunked one past max_body (MHD
                         * enforces Content-Length). libmicrohttpd 0.9.75
                         * queues no answer mid-upload (MHD_queue_response
                         * refuses it while the body is read), so the rest
                         * is read and dropped, HTTP_DROP_MAX at most, for
                         * a 413 at its end; past that the connection is
                         * closed. */
                        r->dropped += k;
                        if (r->dropped > (r->busy ? r->cfg->max_body : 0) + HTTP_DROP_MAX) {
                                log_full(LOG_INFO, LOG_MID_REQUEST, NULL, "%s: chunked body over max_body from %s "
                                         "by more than %d bytes, closing", r->ep->path, r->peer, HTTP_DROP_MAX);
                                return MHD_NO;
                        }
                        *upload_data_size = 0;
                        return MHD_YES;
                }
                if (r->len + k > r->cap) {
                        size_t cap = r->cap * 2 > r->len + k ? r->cap * 2 : r->len + k;

                        if (cap > r->cfg->max_body)
                                cap = r->cfg->max_body;
                        r->body = xreallocarray(r->body, cap + 1, 1);
                        r->cap = cap;
                }
                memcpy(r->body + r->len, upload_data, k);
                r->len += k;
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (r->state == REQ_READING && r->busy && r->dropped <= r->cfg->max_body)
                return reply_busy(r);
        if (r->state == REQ_READING && r->dropped) {
                r->close = true;
                return reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "body larger than max_body");
        }
        /* The writer fell behind while the body came in: it could not be
         * queued, so it is not parsed either (a parse holds about three
         * times the body until the answer). */
        if (r->state == REQ_READING && store_full(h->store))
                return reply_busy(r);
        if (r->state == REQ_READING)
                return process(r);
        if (r->state == REQ_WAITING)
                return answer_stored(r);
        return MHD_NO;
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
        struct listener *l = cls;
        struct req *r = *con_cls;

        if (r == NULL)
                return;
        if (r->body)
                freezero(r->body, r->cap + 1);
        event_batch_done(&r->batch);
        if (r->counted)
                atomic_fetch_sub(&l->h->waiting, 1);
        cfg_free(r->cfg);
        free(r->path);
        free(r);
        *con_cls = NULL;
        atomic_fetch_sub(&l->in_flight, 1);
}

static enum MHD_Result
on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
        struct listener *l = cls;
        char peer[ACL_ADDR_LEN];

        /* A trusted proxy is let in: its client is checked per request. */
        if (acl_match(l->cfg->allow, addr) || acl_match(l->cfg->trusted_proxies, addr))
                return MHD_YES;
        acl_format_addr(addr, peer);
        refused(l->h, peer);
        return MHD_NO;
}

/* libmicrohttpd's messages at info, except that running out of
 * descriptors or memory is a warning (at most one line in 10 s, with the
 * count of those it stood for) and makes /healthz answer 503 until a
 * connection closes: then libmicrohttpd accepts again. accept()'s own
 * error for it is not logged: the "Hit ... limit" line follows it. */
static void __attribute__((format(printf, 2, 0)))
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
        static atomic_llong last_warned;
        static atomic_uint held;
        char *msg;
        size_t n;
        int64_t now;

        (void) cls;
        if (vasprintf(&msg, fmt, ap) < 0)
                return;
        n = strlen(msg);
        while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
                msg[--n] = '\0';
        if (strncmp(msg, "Error accepting connection: ", 28) == 0 &&
            (strstr(msg, "open files") || strstr(msg, "allocate memory") || strstr(msg, "buffer space"))) {
                free(msg);
                return;
        }
        if (strncmp(msg, "Hit process or system resource limit", 36) == 0) {
                metrics_accept_starved(strstr(msg, "FIRST") ? "accept() fails: out of file descriptors or memory"
                                       : "accept() suspended: out of file descriptors or memory");
                now = time_mono_us();
                if (atomic_load(&last_warned) != 0 && now - atomic_load(&last_warned) < 10 * 1000000) {
                        atomic_fetch_add(&held, 1);
                } else {
                        unsigned more = atomic_exchange(&held, 0);

                        atomic_store(&last_warned, now);
                        if (more)
                                log_full(LOG_WARNING, LOG_MID_TLS, NULL, "libmicrohttpd: %s (and %u such messages "
                                         "in the last 10 s); raise LimitNOFILE= or lower max_connections", msg, more);
                        else
                                log_full(LOG_WARNING, LOG_MID_TLS, NULL, "libmicrohttpd: %s; raise LimitNOFILE= "
                                         "or lower max_connections", msg);
                }
        } else
                log_full(LOG_INFO, LOG_MID_TLS, NULL, "libmicrohttpd: %s", msg);
        free(msg);
}

static bool
loopback(const struct sockaddr *sa)
{
        if (sa->sa_family == AF_INET)
                return (ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr) >> 24) == 127;
        if (sa->sa_family == AF_INET6) {
                const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;

                return IN6_IS_ADDR_LOOPBACK(a) ||
                       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
        }
        return false;
}

static int
bind_listen(const struct cfg *cfg, char **reterr)
{
        struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM };
        struct addrinfo *res = NULL;
        char port[8];
        int fd = -1, one = 1, zero = 0, r;

        snprintf(port, sizeof(port), "%u", cfg->listen_port);
        r = getaddrinfo(cfg->listen_host, port, &hints, &res);
        if (r != 0) {
                *reterr = xasprintf("listen: cannot resolve '%s': %s", cfg->listen_host, gai_strerror(r));
                return -EINVAL;
        }
        fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
        if (fd < 0)
                goto fail;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (res->ai_family == AF_INET6)
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1024) < 0)
                goto fail;
        freeaddrinfo(res);
        return fd;
fail:
        r = -errno;
        *reterr = xasprintf("listen: cannot listen on %s:%u: %s", cfg->listen_host, cfg->listen_port, strerror(errno));
        if (fd >= 0)
                close(fd);
        freeaddrinfo(res);
        return r;
}

static atomic_bool tickets_off_logged;

/* A new TLS connection, before its handshake: let it issue session
 * tickets. A connection closed: accepting resumes if it was suspended. */
static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
              enum MHD_ConnectionNotificationCode code)
{
        const union MHD_ConnectionInfo *ci;
        int r;

        (void) cls;
        (void) socket_context;
        if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
                metrics_accept_starved(NULL);   /* libmicrohttpd accepts again */
                return;
        }
        if (code != MHD_CONNECTION_NOTIFY_STARTED ||
            (ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION)) == NULL)
                return;
        if ((r = tls_enable_tickets(ci->tls_session)) < 0 && !atomic_exchange(&tickets_off_logged, true))
                log_warning("TLS session tickets are off (logged once): %s", gnutls_strerror(r));
}

unsigned
http_connection_limit(unsigned max_connections)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
            rl.rlim_cur >= (rlim_t) max_connections + HTTP_OWN_FDS)
                return max_connections;
        return rl.rlim_cur > 2 * HTTP_OWN_FDS ? (unsigned) (rl.rlim_cur - HTTP_OWN_FDS) : (unsigned) (rl.rlim_cur / 2);
}

/* A new listener on h's socket, serving cfg (it takes a reference). */
static int
listener_start(struct http *h, struct cfg *cfg, const struct tls_creds *tls, struct listener **ret, char **reterr)
{
        struct listener *l = xcalloc(1, sizeof(*l));
        struct MHD_OptionItem opts[] = {
                { MHD_OPTION_EXTERNAL_LOGGER, (intptr_t) on_mhd_log, l },
                { MHD_OPTION_LISTEN_SOCKET, h->fd, NULL },
                { MHD_OPTION_THREAD_POOL_SIZE, cfg->threads, NULL },
                { MHD_OPTION_CONNECTION_LIMIT, http_connection_limit(cfg->max_connections), NULL },
                { MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_connections_per_ip, NULL },
                { MHD_OPTION_CONNECTION_TIMEOUT, cfg->timeout, NULL },
                /* Bodies are copied out as they arrive, so a connection's
                 * pool holds only the request line, the headers (up to
                 * about 12 KiB; more gets 431) and the reply: half of
                 * libmicrohttpd's 32 KiB default, ~18 MiB less at 1,000
                 * connections (bench/README.md). */
                { MHD_OPTION_CONNECTION_MEMORY_LIMIT, 16 * 1024, NULL },
                { MHD_OPTION_NOTIFY_COMPLETED, (intptr_t) on_completed, l },
                { MHD_OPTION_NOTIFY_CONNECTION, (intptr_t) on_connection, l },
                /* last, so that plain HTTP ends the array before them */
                { tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, tls ? tls->cert_pem : NULL },
                { MHD_OPTION_HTTPS_MEM_KEY, 0, tls ? tls->key_pem : NULL },
                { MHD_OPTION_HTTPS_PRIORITIES, 0, cfg->tls_priorities },
                { MHD_OPTION_END, 0, NULL },
        };

        l->h = h;
        l->cfg = cfg_ref(cfg);
        l->mhd = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | (tls ? MHD_USE_TLS : 0) | MHD_USE_ERROR_LOG |
                                  MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME,
                                  0, on_accept, l, on_request, l,
                                  MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
        if (l->mhd == NULL) {
                *reterr = xasprintf("cannot start the HTTPS listener on port %u (see the libmicrohttpd message above)",
                                    h->port);
                cfg_free(l->cfg);
                free(l);
                return -EIO;
        }
        *ret = l;
        return 0;
}

/* Stop accepting; the connections it has go on, each answer saying
 * "Connection: close". */
static void
listener_quiesce(struct listener *l)
{
        if (atomic_exchange(&l->draining, true))
                return;
        (void) MHD_quiesce_daemon(l->mhd);
        l->drained_at = time_mono_us();
}

static unsigned
listener_connections(struct listener *l)
{
        const union MHD_DaemonInfo *i = MHD_get_daemon_info(l->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);

        return i ? i->num_connections : 0;
}

/* Stop and free l if it can go now: libmicrohttpd aborts when a daemon
 * stops with a connection suspended, so only once no job of it waits for
 * the writer, and none can start any more (closing). With force, it closes
 * what connections it still has; else it waits until it has none, or until
 * it has drained for HTTP_DRAIN_SECONDS. Returns whether it went. */
static bool
listener_reap(struct listener *l, bool force)
{
        if (!atomic_load(&l->closing)) {
                if (!force && listener_connections(l) > 0 &&
                    time_mono_us() - l->drained_at < (int64_t) HTTP_DRAIN_SECONDS * 1000000)
                        return false;
                atomic_store(&l->closing, true);
        }
        if (atomic_load(&l->jobs) > 0)
                return false;
        MHD_stop_daemon(l->mhd);
        cfg_free(l->cfg);
        free(l);
        return true;
}

int
http_start(struct cfg *cfg, const struct tls_creds *tls, struct store *store,
           int listen_fd, struct http **ret, char **reterr)
{
        struct http *h = xcalloc(1, sizeof(*h));
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int r;

        pthread_mutex_init(&h->lock, NULL);
        h->cfg = cfg_ref(cfg);
        h->store = store;
        h->fd = listen_fd >= 0 ? listen_fd : bind_listen(cfg, reterr);
        if (h->fd < 0) {
                r = h->fd;
                goto fail;
        }
        if (getsockname(h->fd, (struct sockaddr *) &ss, &sl) == 0)
                h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &ss)->sin6_port
                                                         : ((struct sockaddr_in *) &ss)->sin_port);
        atomic_store(&h->refused_logged_at, -1000000000);
        if (tls == NULL && !loopback((struct sockaddr *) &ss)) {
                *reterr = xstrdup("[server] tls_cert: missing; plain HTTP is allowed only on a loopback address "
                                  "(behind a local TLS proxy)");
                r = -EINVAL;
                goto fail;
        }
        if ((r = listener_start(h, cfg, tls, &h->cur, reterr)) < 0)
                goto fail;
        *ret = h;
        return 0;
fail:
        if (listen_fd < 0 && h->fd >= 0)
                close(h->fd);
        cfg_free(h->cfg);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return r;
}

int
http_reload(struct http *h, struct cfg *cfg, const struct tls_creds *tls, char **reterr)
{
        struct listener *l;
        struct cfg *old;
        int r;

        if (h->quiesced)
                return -ESHUTDOWN;
        if ((r = listener_start(h, cfg, tls, &l, reterr)) < 0)
                return r;
        /* Both serve the socket for a moment; then the old one stops
         * accepting and every request is judged by cfg. */
        pthread_mutex_lock(&h->lock);
        old = h->cfg;
        h->cfg = cfg_ref(cfg);
        pthread_mutex_unlock(&h->lock);
        cfg_free(old);
        listener_quiesce(h->cur);
        h->cur->next = h->old;
        h->old = h->cur;
        h->cur = l;
        return 0;
}

unsigned
http_tick(struct http *h)
{
        struct listener **p = &h->old, *l;
        unsigned n = 0;

        while ((l = *p) != NULL) {
                struct listener *next = l->next;

                if (listener_reap(l, false))
                        *p = next;
                else {
                        n++;
                        p = &l->next;
                }
        }
        return n;
}

unsigned
http_port(const struct http *h)
{
        return h->port;
}

void
http_quiesce(struct http *h)
{
        h->quiesced = true;
        listener_quiesce(h->cur);
}

/* Sum f over every listener. */
static unsigned
sum(struct http *h, unsigned (*f)(struct listener *))
{
        struct listener *l;
        unsigned n = f(h->cur);

        for (l = h->old; l; l = l->next)
                n += f(l);
        return n;
}

static unsigned
listener_in_flight(struct listener *l)
{
        return atomic_load(&l->in_flight);
}

unsigned
http_in_flight(struct http *h)
{
        return sum(h, listener_in_flight);
}

struct http *
http_stop(struct http *h)
{
        struct listener *l, *next;
        struct extra *e, *en;
        size_t i;
        int k;

        if (h == NULL)
                return NULL;
        h->cur->next = h->old;
        h->old = NULL;
        /* The store has stopped: every job is done, or (a request that came
         * after) answered at once; the wait covers the resume under way. */
        for (l = h->cur; l; l = next) {
                next = l->next;
                for (k = 0; k < 500 && !listener_reap(l, true); k++)
                        usleep(10 * 1000);
                if (k == 500)
                        log_full(LOG_ERR, LOG_MID_STOP, NULL, "a listener still has %u requests waiting for the "
                                 "writer; left running", atomic_load(&l->jobs));
        }
        h->cur = NULL;
        /* A quiesced daemon leaves the listening socket to us. */
        if (h->quiesced && h->fd >= 0)
                close(h->fd);
        for (e = atomic_load(&h->extra); e; e = en) {
                char *sec = atomic_load(&e->secret);

                en = e->next;
                if (sec)
                        freezero(sec, strlen(sec));
                free(e->endpoint);
                free(e);
        }
        for (i = 0; i < h->n_retired; i++)
                freezero(h->retired[i], strlen(h->retired[i]));
        free(h->retired);
        cfg_free(h->cfg);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return NULL;
}

int
http_set_secret(struct http *h, const char *endpoint, const char *secret)
{
        struct extra *e;
        struct cfg *c = current_cfg(h);
        char *old;
        size_t i;
        bool found;

        for (i = 0; i < c->n_endpoints && strcmp(c->endpoints[i].name, endpoint) != 0; i++)
                ;
        found = i < c->n_endpoints;
        cfg_free(c);
        if (!found)
                return -ENOENT;
        pthread_mutex_lock(&h->lock);
        if ((e = extra_find(h, endpoint)) == NULL) {
                e = xcalloc(1, sizeof(*e));
                e->endpoint = xstrdup(endpoint);
                e->next = atomic_load(&h->extra);
                atomic_store(&h->extra, e);
        }
        /* Requests may be reading the old one: it lives until http_stop. */
        old = atomic_exchange(&e->secret, xstrdup(secret));
        if (old) {
                h->retired = xreallocarray(h->retired, h->n_retired + 1, sizeof(char *));
                h->retired[h->n_retired++] = old;
        }
        pthread_mutex_unlock(&h->lock);
        return 0;
}

void
http_progress(struct http *h, uint64_t *answered, unsigned *waiting)
{
        *answered = atomic_load(&h->answered);
        *waiting = atomic_load(&h->waiting);
}

void
http_test_events(struct http *h, uint64_t *stored, uint64_t *refused)
{
        *stored = atomic_load(&h->test_stored);
        *refused = atomic_load(&h->test_refused);
}
