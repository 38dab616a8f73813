/* api: a small client for the SocketLabs v2 Event Webhook API over libcurl.
 * Bearer authentication, TLS verification always on (system CAs, plus a CA
 * file when given), a timeout on every call, responses parsed with yajl and
 * accepted in the shapes PROTOCOL.md section 10 allows. Every path and JSON
 * field name the API uses is in api.c. The API key never reaches a URL, a
 * log line or an error message. One struct api per thread. */
#ifndef SLHOOKD_API_H
#define SLHOOKD_API_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct api;

/* What a call did, for the caller's records. */
struct api_call {
        long http_status;               /* 0 when no answer came */
        int64_t latency_us;
        char error[160];                /* "" on success; never holds the key */
};

/* base_url: e.g. "https://api.socketlabs.com/v2"; key: the API key (copied;
 * wiped on free); ca_file: an extra CA for the API's TLS, or NULL; timeout:
 * seconds per call; stop: when it becomes true, a call under way ends at
 * once with -ECANCELED. */
struct api *api_new(const char *base_url, const char *key, const char *ca_file, unsigned timeout,
                    const atomic_bool *stop);
struct api *api_free(struct api *a);

/* Each returns 0, or a negative errno: -EACCES (401/403: the key was
 * rejected), -ENOENT (404), -EIO (another HTTP status), -ETIMEDOUT,
 * -ECONNREFUSED (no answer: unreachable, TLS failure), -EPROTO (an answer
 * that is not what the API gives), -ECANCELED (stop). c says more. */

/* The id of the webhook whose URL is url, or *ret_id NULL when none is. */
int api_find_webhook(struct api *a, const char *url, char **ret_id, struct api_call *c);
/* Whether the webhook with this id exists (-ENOENT when not). */
int api_get_webhook(struct api *a, const char *id, struct api_call *c);
/* Create an enabled webhook for url with secret, for every event type. */
int api_create_webhook(struct api *a, const char *url, const char *secret, char **ret_id, struct api_call *c);
/* Give webhook id this secret (and url), enabled. */
int api_update_webhook(struct api *a, const char *id, const char *url, const char *secret, struct api_call *c);
/* A new secret key from the API (allocated; wipe it when done). */
int api_generate_secret(struct api *a, char **ret_secret, struct api_call *c);
/* Ask SocketLabs to post a test event of this type ("Sent") to the webhook. */
int api_perform_test(struct api *a, const char *id, const char *type, struct api_call *c);

#endif
