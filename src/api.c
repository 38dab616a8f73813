/* api: SocketLabs v2 Event Webhook API client (libcurl + yajl). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "api.h"
#include "util.h"

/* ---- every path and field name of the API ---- */

#define PATH_WEBHOOKS           "/event-webhook"
#define PATH_WEBHOOK            "/event-webhook/%s"
#define PATH_GENERATE_SECRET    "/event-webhook/generate-secret-key"
#define PATH_PERFORM_TEST       "/event-webhook/%s/perform-test?type=%s"

/* Request bodies (camelCase, as the v2 API's other resources). */
#define F_NAME          "name"
#define F_URL           "url"
#define F_SECRET        "secretKey"
#define F_ENABLED       "enabled"
#define F_EVENTS        "eventTypes"
#define WEBHOOK_NAME    "slhookd"

/* What answers may call an id or a URL, matched without regard to case. */
static const char *const id_keys[] = { "id", "webhookId", "eventWebhookId" };
static const char *const url_keys[] = { "url", "endpointUrl", "endpoint", "webhookUrl" };

/* Every event type a new webhook subscribes to. */
static const char *const all_events[] = {
        "Queued", "Sent", "Failed", "Deferred", "Complaint", "Click", "Open", "Unsubscribe",
};

#define MAX_ANSWER (1024 * 1024)

struct api {
        char *base;
        char *auth;                     /* "Authorization: Bearer KEY": wiped on free */
        char *ca_file;
        unsigned timeout;
        const atomic_bool *stop;
        CURL *curl;
};

struct api *
api_new(const char *base_url, const char *key, const char *ca_file, unsigned timeout, const atomic_bool *stop)
{
        struct api *a = xcalloc(1, sizeof(*a));
        size_t n = strlen(base_url);

        while (n > 0 && base_url[n - 1] == '/')
                n--;
        a->base = xasprintf("%.*s", (int) n, base_url);
        a->auth = xasprintf("Authorization: Bearer %s", key);
        a->ca_file = ca_file ? xstrdup(ca_file) : NULL;
        a->timeout = timeout;
        a->stop = stop;
        return a;
}

struct api *
api_free(struct api *a)
{
        if (a) {
                if (a->curl)
                        curl_easy_cleanup(a->curl);
                free(a->base);
                freezero(a->auth, strlen(a->auth));
                free(a->ca_file);
                free(a);
        }
        return NULL;
}

/* ---- answers: a flat list of the scalars, with the object each is in ---- */

struct item {
        int obj;                /* index of the enclosing object, -1 at the top */
        int depth;
        char *key;              /* NULL inside an array */
        char *val;              /* text of a string or number */
        bool str;
};

struct answer {
        struct item *v;
        size_t n;
        int objs;
        int stack[32];
        int depth;
        char *key;
        bool too_deep;
};

static int
add_item(struct answer *w, const char *s, size_t len, bool str)
{
        if (w->n >= 10000)
                return 0;
        w->v = xreallocarray(w->v, w->n + 1, sizeof(*w->v));
        w->v[w->n].obj = w->depth > 0 ? w->stack[w->depth - 1] : -1;
        w->v[w->n].depth = w->depth;
        w->v[w->n].key = w->key;
        w->v[w->n].val = xasprintf("%.*s", (int) len, s);
        w->v[w->n].str = str;
        w->key = NULL;
        w->n++;
        return 1;
}

static int
on_string(void *ctx, const unsigned char *s, size_t len)
{
        return add_item(ctx, (const char *) s, len, true);
}

static int
on_number(void *ctx, const char *s, size_t len)
{
        return add_item(ctx, s, len, false);
}

static int
on_other(void *ctx)
{
        struct answer *w = ctx;

        free(w->key);
        w->key = NULL;
        return 1;
}

static int
on_bool(void *ctx, int b)
{
        return on_other(ctx);
}

static int
on_key(void *ctx, const unsigned char *s, size_t len)
{
        struct answer *w = ctx;

        free(w->key);
        w->key = xasprintf("%.*s", (int) len, (const char *) s);
        return 1;
}

static int
on_start(void *ctx)
{
        struct answer *w = ctx;

        free(w->key);
        w->key = NULL;
        if (w->depth == 32) {
                w->too_deep = true;
                return 0;
        }
        w->stack[w->depth++] = w->objs++;
        return 1;
}

static int
on_end(void *ctx)
{
        struct answer *w = ctx;

        w->depth--;
        return 1;
}

static void
answer_free(struct answer *w)
{
        size_t i;

        for (i = 0; i < w->n; i++) {
                free(w->v[i].key);
                free(w->v[i].val);
        }
        free(w->v);
        free(w->key);
}

static int
answer_parse(const char *body, size_t len, struct answer *w)
{
        static const yajl_callbacks cb = {
                on_other, on_bool, NULL, NULL, on_number, on_string,
                on_start, on_key, on_end, on_start, on_end,
        };
        yajl_handle h = yajl_alloc(&cb, NULL, w);
        int ok;

        memset(w, 0, sizeof(*w));
        yajl_config(h, yajl_dont_validate_strings, 0);
        ok = yajl_parse(h, (const unsigned char *) body, len) == yajl_status_ok &&
             yajl_complete_parse(h) == yajl_status_ok;
        yajl_free(h);
        return ok && !w->too_deep ? 0 : -EPROTO;
}

static bool
key_in(const char *key, const char *const names[], size_t n)
{
        size_t i;

        for (i = 0; key && i < n; i++)
                if (strcasecmp(key, names[i]) == 0)
                        return true;
        return false;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* The value of the first id-like member of object obj. */
static const char *
id_of(const struct answer *w, int obj)
{
        size_t i;

        for (i = 0; i < w->n; i++)
                if (w->v[i].obj == obj && key_in(w->v[i].key, id_keys, N(id_keys)))
                        return w->v[i].val;
        return NULL;
}

/* An id goes into a URL path: letters, digits, '-' and '_' only. */
static bool
id_ok(const char *id)
{
        return id[0] && strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == strlen(id) &&
               strlen(id) < 100;
}

/* ---- requests ---- */

struct body {
        struct buf b;
        bool over;
};

static size_t
on_data(char *p, size_t size, size_t n, void *userdata)
{
        struct body *body = userdata;

        if (body->b.len + size * n > MAX_ANSWER) {
                body->over = true;
                return 0;
        }
        buf_append(&body->b, p, size * n);
        return size * n;
}

static int
on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
        struct api *a = userdata;

        return a->stop && atomic_load(a->stop);
}

/* One call: method, path (below the base URL), JSON body or NULL. On 2xx,
 * the answer is in *ret (allocated, NUL-terminated). */
static int
call(struct api *a, const char *method, const char *path, const char *json, char **ret, struct api_call *c)
{
        struct curl_slist *hdr = NULL;
        struct body body = { 0 };
        char *url = xasprintf("%s%s", a->base, path);
        int64_t t0 = time_mono_us();
        CURLcode rc;
        int r = 0;

        memset(c, 0, sizeof(*c));
        *ret = NULL;
        if (a->curl == NULL && (a->curl = curl_easy_init()) == NULL) {
                snprintf(c->error, sizeof(c->error), "cannot start an HTTP client");
                free(url);
                return -ENOMEM;
        }
        curl_easy_reset(a->curl);
        hdr = curl_slist_append(hdr, a->auth);
        hdr = curl_slist_append(hdr, "Accept: application/json");
        if (json)
                hdr = curl_slist_append(hdr, "Content-Type: application/json");
        buf_puts(&body.b, "");
        curl_easy_setopt(a->curl, CURLOPT_URL, url);
        curl_easy_setopt(a->curl, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(a->curl, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(a->curl, CURLOPT_PROTOCOLS_STR, "https");
        curl_easy_setopt(a->curl, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(a->curl, CURLOPT_SSL_VERIFYHOST, 2L);
        if (a->ca_file) {
                /* The test's (or a private) CA, beside the system's. */
                curl_easy_setopt(a->curl, CURLOPT_CAINFO, a->ca_file);
                curl_easy_setopt(a->curl, CURLOPT_CAPATH, "/etc/ssl/certs");
        }
        curl_easy_setopt(a->curl, CURLOPT_CONNECTTIMEOUT, (long) (a->timeout < 10 ? a->timeout : 10));
        curl_easy_setopt(a->curl, CURLOPT_TIMEOUT, (long) a->timeout);
        curl_easy_setopt(a->curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(a->curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(a->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(a->curl, CURLOPT_XFERINFODATA, a);
        curl_easy_setopt(a->curl, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(a->curl, CURLOPT_WRITEDATA, &body);
        curl_easy_setopt(a->curl, CURLOPT_POSTFIELDS, json ? json : (strcmp(method, "GET") ? "" : NULL));
        if (strcmp(method, "GET") == 0)
                curl_easy_setopt(a->curl, CURLOPT_HTTPGET, 1L);
        rc = curl_easy_perform(a->curl);
        curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &c->http_status);
        c->latency_us = time_mono_us() - t0;
        curl_slist_free_all(hdr);
        if (rc == CURLE_ABORTED_BY_CALLBACK) {
                snprintf(c->error, sizeof(c->error), "stopped");
                r = -ECANCELED;
        } else if (rc == CURLE_OPERATION_TIMEDOUT) {
                snprintf(c->error, sizeof(c->error), "%s %s: no answer within %u s", method, path, a->timeout);
                r = -ETIMEDOUT;
        } else if (rc == CURLE_WRITE_ERROR && body.over) {
                snprintf(c->error, sizeof(c->error), "%s %s: answer larger than %d bytes", method, path, MAX_ANSWER);
                r = -EPROTO;
        } else if (rc != CURLE_OK) {
                snprintf(c->error, sizeof(c->error), "%s %s: %s", method, a->base, curl_easy_strerror(rc));
                r = -ECONNREFUSED;
        } else if (c->http_status == 401 || c->http_status == 403) {
                snprintf(c->error, sizeof(c->error), "API key rejected (HTTP %ld)", c->http_status);
                r = -EACCES;
        } else if (c->http_status == 404) {
                snprintf(c->error, sizeof(c->error), "%s %s: not found (HTTP 404)", method, path);
                r = -ENOENT;
        } else if (c->http_status < 200 || c->http_status > 299) {
                snprintf(c->error, sizeof(c->error), "%s %s: HTTP %ld", method, path, c->http_status);
                r = -EIO;
        }
        if (r == 0)
                *ret = body.b.data;
        else
                buf_done(&body.b);
        free(url);
        return r;
}

/* A call whose answer is parsed into w (then the caller's to free). The
 * body is wiped: it may hold a secret. Returns call()'s result, or -EPROTO
 * with c->error naming what when the answer is not JSON. */
static int
call_json(struct api *a, const char *method, const char *path, const char *json, struct answer *w,
          struct api_call *c, const char *what)
{
        char *body;
        int r;

        memset(w, 0, sizeof(*w));
        if ((r = call(a, method, path, json, &body, c)) < 0)
                return r;
        r = answer_parse(body, strlen(body), w);
        freezero(body, strlen(body));
        if (r < 0) {
                answer_free(w);
                memset(w, 0, sizeof(*w));
                snprintf(c->error, sizeof(c->error), "unexpected answer to %s", what);
        }
        return r;
}

static int
malformed(struct api_call *c, const char *what)
{
        snprintf(c->error, sizeof(c->error), "unexpected answer to %s", what);
        return -EPROTO;
}

int
api_find_webhook(struct api *a, const char *url, char **ret_id, struct api_call *c)
{
        struct answer w;
        size_t i;
        int r;

        *ret_id = NULL;
        if ((r = call_json(a, "GET", PATH_WEBHOOKS, NULL, &w, c, "the webhook list")) < 0)
                return r;
        /* Any object, at any depth ("data", "items"...), whose URL is ours. */
        for (i = 0; i < w.n && *ret_id == NULL; i++)
                if (w.v[i].str && key_in(w.v[i].key, url_keys, N(url_keys)) && strcmp(w.v[i].val, url) == 0) {
                        const char *id = id_of(&w, w.v[i].obj);

                        if (id && id_ok(id))
                                *ret_id = xstrdup(id);
                }
        answer_free(&w);
        return 0;
}

int
api_get_webhook(struct api *a, const char *id, struct api_call *c)
{
        char *path = xasprintf(PATH_WEBHOOK, id), *body;
        int r = call(a, "GET", path, NULL, &body, c);

        free(path);
        free(body);
        return r;
}

static char *
webhook_json(const char *url, const char *secret)
{
        yajl_gen g = yajl_gen_alloc(NULL);
        const unsigned char *p;
        size_t len, i;
        char *out;

#define S(x) yajl_gen_string(g, (const unsigned char *) (x), strlen(x))
        yajl_gen_map_open(g);
        S(F_NAME);
        S(WEBHOOK_NAME);
        S(F_URL);
        S(url);
        S(F_SECRET);
        S(secret);
        S(F_ENABLED);
        yajl_gen_bool(g, 1);
        S(F_EVENTS);
        yajl_gen_array_open(g);
        for (i = 0; i < N(all_events); i++)
                S(all_events[i]);
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
#undef S
        yajl_gen_get_buf(g, &p, &len);
        out = xasprintf("%.*s", (int) len, (const char *) p);
        yajl_gen_clear(g);
        yajl_gen_free(g);
        return out;
}

int
api_create_webhook(struct api *a, const char *url, const char *secret, char **ret_id, struct api_call *c)
{
        char *json = webhook_json(url, secret);
        struct answer w;
        const char *id = NULL;
        size_t i;
        int r, depth;

        *ret_id = NULL;
        r = call_json(a, "POST", PATH_WEBHOOKS, json, &w, c, "creating the webhook");
        freezero(json, strlen(json));
        if (r < 0)
                return r;
        /* The new webhook's id: the shallowest id-like member. */
        for (i = 0, depth = 0; i < w.n; i++)
                if (key_in(w.v[i].key, id_keys, N(id_keys)) && (id == NULL || w.v[i].depth < depth)) {
                        id = w.v[i].val;
                        depth = w.v[i].depth;
                }
        if (id && id_ok(id))
                *ret_id = xstrdup(id);
        answer_free(&w);
        return *ret_id ? 0 : malformed(c, "creating the webhook");
}

int
api_update_webhook(struct api *a, const char *id, const char *url, const char *secret, struct api_call *c)
{
        char *json = webhook_json(url, secret), *path = xasprintf(PATH_WEBHOOK, id), *body;
        int r = call(a, "PUT", path, json, &body, c);

        freezero(json, strlen(json));
        free(path);
        free(body);
        return r;
}

int
api_generate_secret(struct api *a, char **ret_secret, struct api_call *c)
{
        struct answer w;
        const char *s = NULL;
        size_t i;
        int r;

        *ret_secret = NULL;
        if ((r = call_json(a, "POST", PATH_GENERATE_SECRET, NULL, &w, c, "generate-secret-key")) < 0)
                return r;
        /* A bare string, {"data": "…"}, or the first string member whose
         * name says secret or key. */
        for (i = 0; i < w.n && s == NULL; i++)
                if (w.v[i].str && (w.v[i].key == NULL || strcasecmp(w.v[i].key, "data") == 0 ||
                                   strcasestr(w.v[i].key, "secret") || strcasestr(w.v[i].key, "key")))
                        s = w.v[i].val;
        if (s && s[0] && strlen(s) < 256 && strpbrk(s, "\r\n") == NULL)
                *ret_secret = xstrdup(s);
        for (i = 0; i < w.n; i++)
                explicit_bzero(w.v[i].val, strlen(w.v[i].val));
        answer_free(&w);
        return *ret_secret ? 0 : malformed(c, "generate-secret-key");
}

int
api_perform_test(struct api *a, const char *id, const char *type, struct api_call *c)
{
        char *path = xasprintf(PATH_PERFORM_TEST, id, type), *body;
        int r = call(a, "GET", path, NULL, &body, c);

        free(path);
        free(body);
        return r;
}
