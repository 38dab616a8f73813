/* A fake of the SocketLabs v2 Event Webhook API for the tests: HTTPS on
 * 127.0.0.1 (the test certificate), Bearer authentication enforced, the
 * paths of PROTOCOL.md section 10 (list, get, create, update,
 * generate-secret-key, perform-test), answers wrapped in {"data": ...}, and a
 * perform-test that really POSTs a Delivered test event (the sample of the
 * Quickstart Guide) to the webhook's URL and reports the answer. Switches
 * make it misbehave. Runs in the test's process, on its own threads. */
#ifndef SLHOOKD_TESTS_FAKE_API_H
#define SLHOOKD_TESTS_FAKE_API_H

#include <stdbool.h>

enum fake_mode {
        FAKE_OK,
        FAKE_REJECT_KEY,        /* 401 to everything */
        FAKE_ERROR,             /* 500 to everything */
        FAKE_HANG,              /* no answer until stopped (or 60 s) */
        FAKE_MALFORMED,         /* 200 with a body that is not JSON */
        FAKE_NO_EVENT,          /* perform-test answers 200 but posts nothing */
        FAKE_WRONG_SECRET,      /* perform-test posts with another SecretKey */
};

struct fake_counts {
        unsigned lists, gets, creates, updates, secrets, tests, posted, unauthorized;
        unsigned hung;                  /* requests FAKE_HANG held */
};

struct fake_api;

/* Serve with cert/key (PEM files); accept only api_key; trust ca_file when
 * posting test events. */
struct fake_api *fake_api_start(const char *cert, const char *key, const char *api_key, const char *ca_file);
unsigned fake_api_port(const struct fake_api *f);
void fake_api_mode(struct fake_api *f, enum fake_mode m);
/* Answer the next n webhook updates (PUT) with 503, changing nothing. */
void fake_api_fail_updates(struct fake_api *f, unsigned n);
/* Answer in the other shapes PROTOCOL.md section 10 allows: bare arrays and
 * strings instead of {"data": ...}, "Id"/"Url"/"webhookId" member names. */
void fake_api_bare(struct fake_api *f, bool bare);
/* A webhook that exists before the daemon starts; returns its id. */
int fake_api_add(struct fake_api *f, const char *url, const char *secret);
struct fake_counts fake_api_counts(struct fake_api *f);
/* The secret webhook id holds (a copy, or NULL). */
char *fake_api_secret(struct fake_api *f, int id);
/* The HTTP status the last test post got from the webhook (0: none). */
long fake_api_last_post_status(struct fake_api *f);
void fake_api_stop(struct fake_api *f);

#endif
