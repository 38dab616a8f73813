/* The fake SocketLabs v2 API (see fake_api.h). */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <microhttpd.h>

#include "fake_api.h"
#include "util.h"

#define MAX_HOOKS 16

struct hook {
        int id;
        char *url, *secret;
};

struct fake_api {
        struct MHD_Daemon *mhd;
        char *cert, *key, *api_key, *ca_file;
        pthread_mutex_t mu;
        enum fake_mode mode;
        bool bare;
        unsigned fail_updates;          /* PUTs still to answer 503 */
        struct hook hooks[MAX_HOOKS];
        int n;
        struct fake_counts counts;
        long last_post;
        atomic_bool stopping;
};

struct req {
        struct buf body;
};

/* The sample Delivered event of the Quickstart Guide (perform-test type=Sent). */
static const char sample_event[] =
        "{\"Type\":\"Delivered\",\"Response\":\"Sample Response\",\"LocalIp\":\":01\","
        "\"RemoteMta\":\"Sample RemoteMTA\",\"DateTime\":\"2022-09-07T17:49:08.8139901Z\","
        "\"MailingId\":\"SLNL-0-9999999-9999999\",\"MessageId\":\"SampleMessageId\","
        "\"Address\":\"email@example.com\",\"ServerId\":40111,\"SecretKey\":\"%s\","
        "\"Data\":{\"Meta\":{\"Key\":\"x-mycustommetadata\",\"Value\":\"I am custom metadata\"},"
        "\"Tags\":[\"Sample Tag\",\"Sample Message\"]}}";

static enum MHD_Result
reply(struct MHD_Connection *c, unsigned status, const char *body)
{
        struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *) body,
                                                                 MHD_RESPMEM_MUST_COPY);
        enum MHD_Result ret;

        MHD_add_response_header(r, "Content-Type", "application/json");
        ret = MHD_queue_response(c, status, r);
        MHD_destroy_response(r);
        return ret;
}

/* The value of "name":"…" in a JSON body (the daemon's requests are simple). */
static char *
field(const char *body, const char *name)
{
        char *pat = xasprintf("\"%s\":\"", name), *p = strstr(body, pat), *end;
        char *v = NULL;

        if (p) {
                p += strlen(pat);
                if ((end = strchr(p, '"')) != NULL)
                        v = xasprintf("%.*s", (int) (end - p), p);
        }
        free(pat);
        return v;
}

static size_t
discard(char *p, size_t size, size_t n, void *userdata)
{
        return size * n;
}

/* POST the test event to the webhook, as SocketLabs would. */
static long
post_test_event(struct fake_api *f, const char *url, const char *secret)
{
        char *body = xasprintf(sample_event, secret);
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
        CURL *c = curl_easy_init();
        long status = 0;

        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_CAINFO, f->ca_file);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
        if (curl_easy_perform(c) == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        curl_slist_free_all(h);
        free(body);
        return status;
}

static struct hook *
hook_by_id(struct fake_api *f, const char *id)
{
        int i;

        for (i = 0; i < f->n; i++)
                if (atoi(id) == f->hooks[i].id)
                        return &f->hooks[i];
        return NULL;
}

static enum MHD_Result
route(struct fake_api *f, struct MHD_Connection *c, const char *method, const char *url, const char *body)
{
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        char *want = xasprintf("Bearer %s", f->api_key), out[1024], id[32];
        struct hook *hk;
        enum fake_mode mode;
        bool authorized = auth && strcmp(auth, want) == 0;
        int i, n;

        free(want);
        pthread_mutex_lock(&f->mu);
        mode = f->mode;
        if (!authorized)
                f->counts.unauthorized++;
        else if (mode == FAKE_HANG)
                f->counts.hung++;
        pthread_mutex_unlock(&f->mu);
        if (!authorized || mode == FAKE_REJECT_KEY)
                return reply(c, 401, "{\"error\":\"Unauthorized\"}");
        if (mode == FAKE_ERROR)
                return reply(c, 500, "{\"error\":\"Internal Server Error\"}");
        if (mode == FAKE_HANG) {
                for (i = 0; i < 600 && !atomic_load(&f->stopping); i++)
                        usleep(100 * 1000);
                return reply(c, 504, "{}");
        }
        if (mode == FAKE_MALFORMED)
                return reply(c, 200, "<html>Service Unavailable</html>");

        pthread_mutex_lock(&f->mu);
        if (strcmp(url, "/v2/event-webhook") == 0 && strcmp(method, "GET") == 0) {
                f->counts.lists++;
                n = snprintf(out, sizeof(out), f->bare ? "[" : "{\"data\":[");
                for (i = 0; i < f->n; i++) {
                        if (f->bare)
                                n += snprintf(out + n, sizeof(out) - (size_t) n,
                                              "%s{\"Name\":\"hook\",\"Url\":\"%s\",\"Id\":\"%d\"}",
                                              i ? "," : "", f->hooks[i].url, f->hooks[i].id);
                        else
                                n += snprintf(out + n, sizeof(out) - (size_t) n,
                                              "%s{\"id\":%d,\"name\":\"hook\",\"url\":\"%s\",\"enabled\":true}",
                                              i ? "," : "", f->hooks[i].id, f->hooks[i].url);
                }
                snprintf(out + n, sizeof(out) - (size_t) n, f->bare ? "]" : "]}");
                pthread_mutex_unlock(&f->mu);
                return reply(c, 200, out);
        }
        if (strcmp(url, "/v2/event-webhook") == 0 && strcmp(method, "POST") == 0) {
                char *u = field(body, "url"), *s = field(body, "secretKey");

                f->counts.creates++;
                if (u == NULL || s == NULL || f->n == MAX_HOOKS) {
                        pthread_mutex_unlock(&f->mu);
                        free(u);
                        free(s);
                        return reply(c, 400, "{\"error\":\"url and secretKey are required\"}");
                }
                hk = &f->hooks[f->n++];
                hk->id = 1000 + f->n;
                hk->url = u;
                hk->secret = s;
                if (f->bare)
                        snprintf(out, sizeof(out), "{\"webhookId\":\"%d\",\"url\":\"%s\"}", hk->id, u);
                else
                        snprintf(out, sizeof(out), "{\"data\":{\"id\":%d,\"url\":\"%s\",\"enabled\":true}}",
                                 hk->id, u);
                pthread_mutex_unlock(&f->mu);
                return reply(c, 201, out);
        }
        if (strcmp(url, "/v2/event-webhook/generate-secret-key") == 0 && strcmp(method, "POST") == 0) {
                f->counts.secrets++;
                snprintf(out, sizeof(out), f->bare ? "\"gen-%08x%08x\"" : "{\"data\":\"gen-%08x%08x\"}",
                         (unsigned) random(), (unsigned) random());
                pthread_mutex_unlock(&f->mu);
                return reply(c, 200, out);
        }
        if (sscanf(url, "/v2/event-webhook/%31[0-9]", id) == 1 && (hk = hook_by_id(f, id)) != NULL) {
                const char *rest = url + strlen("/v2/event-webhook/") + strlen(id);

                if (rest[0] == '\0' && strcmp(method, "GET") == 0) {
                        f->counts.gets++;
                        snprintf(out, sizeof(out), "{\"data\":{\"id\":%d,\"url\":\"%s\"}}", hk->id, hk->url);
                        pthread_mutex_unlock(&f->mu);
                        return reply(c, 200, out);
                }
                if (rest[0] == '\0' && strcmp(method, "PUT") == 0) {
                        char *s = field(body, "secretKey");

                        f->counts.updates++;
                        if (f->fail_updates > 0) {
                                f->fail_updates--;
                                pthread_mutex_unlock(&f->mu);
                                free(s);
                                return reply(c, 503, "{\"error\":\"Service Unavailable\"}");
                        }
                        if (s) {
                                free(hk->secret);
                                hk->secret = s;
                        }
                        snprintf(out, sizeof(out), "{\"data\":{\"id\":%d}}", hk->id);
                        pthread_mutex_unlock(&f->mu);
                        return reply(c, 200, out);
                }
                if (strcmp(rest, "/perform-test") == 0 && strcmp(method, "GET") == 0) {
                        const char *type = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "type");
                        char *u = xstrdup(hk->url), *s = xstrdup(mode == FAKE_WRONG_SECRET ? "wrong-secret"
                                                                                           : hk->secret);
                        long status = 0;

                        f->counts.tests++;
                        pthread_mutex_unlock(&f->mu);
                        if (type == NULL || strcmp(type, "Sent") != 0) {
                                free(u);
                                free(s);
                                return reply(c, 400, "{\"error\":\"type must be an event name\"}");
                        }
                        if (mode != FAKE_NO_EVENT) {
                                status = post_test_event(f, u, s);
                                pthread_mutex_lock(&f->mu);
                                f->counts.posted++;
                                f->last_post = status;
                                pthread_mutex_unlock(&f->mu);
                        }
                        snprintf(out, sizeof(out), "{\"data\":{\"responseCode\":%ld}}", status);
                        free(u);
                        free(s);
                        return reply(c, 200, out);
                }
        }
        pthread_mutex_unlock(&f->mu);
        return reply(c, 404, "{\"error\":\"Not Found\"}");
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
           const char *data, size_t *size, void **con_cls)
{
        struct req *r = *con_cls;

        if (r == NULL) {
                r = xcalloc(1, sizeof(*r));
                buf_puts(&r->body, "");
                *con_cls = r;
                return MHD_YES;
        }
        if (*size) {
                buf_append(&r->body, data, *size);
                *size = 0;
                return MHD_YES;
        }
        return route(cls, c, method, url, r->body.data);
}

static void
on_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
        struct req *r = *con_cls;

        if (r) {
                buf_done(&r->body);
                free(r);
        }
}

struct fake_api *
fake_api_start(const char *cert, const char *key, const char *api_key, const char *ca_file)
{
        struct fake_api *f = xcalloc(1, sizeof(*f));
        struct sockaddr_in sa = { .sin_family = AF_INET };
        size_t len;

        pthread_mutex_init(&f->mu, NULL);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        f->api_key = xstrdup(api_key);
        f->ca_file = xstrdup(ca_file);
        if (file_read(cert, 1 << 20, &f->cert, &len) < 0 || file_read(key, 1 << 20, &f->key, &len) < 0)
                return NULL;
        f->mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TLS |
                                  MHD_USE_ITC, 0, NULL, NULL, on_request, f,
                                  MHD_OPTION_HTTPS_MEM_CERT, f->cert, MHD_OPTION_HTTPS_MEM_KEY, f->key,
                                  MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL,
                                  MHD_OPTION_SOCK_ADDR, (const struct sockaddr *) &sa,
                                  MHD_OPTION_END);
        return f->mhd ? f : NULL;
}

unsigned
fake_api_port(const struct fake_api *f)
{
        const union MHD_DaemonInfo *i = MHD_get_daemon_info(f->mhd, MHD_DAEMON_INFO_BIND_PORT);

        return i ? i->port : 0;
}

void
fake_api_bare(struct fake_api *f, bool bare)
{
        pthread_mutex_lock(&f->mu);
        f->bare = bare;
        pthread_mutex_unlock(&f->mu);
}

void
fake_api_fail_updates(struct fake_api *f, unsigned n)
{
        pthread_mutex_lock(&f->mu);
        f->fail_updates = n;
        pthread_mutex_unlock(&f->mu);
}

void
fake_api_mode(struct fake_api *f, enum fake_mode m)
{
        pthread_mutex_lock(&f->mu);
        f->mode = m;
        pthread_mutex_unlock(&f->mu);
}

int
fake_api_add(struct fake_api *f, const char *url, const char *secret)
{
        struct hook *hk;
        int id;

        pthread_mutex_lock(&f->mu);
        hk = &f->hooks[f->n++];
        hk->id = id = 1000 + f->n;
        hk->url = xstrdup(url);
        hk->secret = xstrdup(secret);
        pthread_mutex_unlock(&f->mu);
        return id;
}

struct fake_counts
fake_api_counts(struct fake_api *f)
{
        struct fake_counts c;

        pthread_mutex_lock(&f->mu);
        c = f->counts;
        pthread_mutex_unlock(&f->mu);
        return c;
}

char *
fake_api_secret(struct fake_api *f, int id)
{
        char buf[16], *s = NULL;
        struct hook *hk;

        snprintf(buf, sizeof(buf), "%d", id);
        pthread_mutex_lock(&f->mu);
        if ((hk = hook_by_id(f, buf)) != NULL)
                s = xstrdup(hk->secret);
        pthread_mutex_unlock(&f->mu);
        return s;
}

long
fake_api_last_post_status(struct fake_api *f)
{
        long s;

        pthread_mutex_lock(&f->mu);
        s = f->last_post;
        pthread_mutex_unlock(&f->mu);
        return s;
}

void
fake_api_stop(struct fake_api *f)
{
        int i;

        if (f == NULL)
                return;
        atomic_store(&f->stopping, true);
        MHD_stop_daemon(f->mhd);
        for (i = 0; i < f->n; i++) {
                free(f->hooks[i].url);
                free(f->hooks[i].secret);
        }
        free(f->cert);
        free(f->key);
        free(f->api_key);
        free(f->ca_file);
        pthread_mutex_destroy(&f->mu);
        free(f);
}
