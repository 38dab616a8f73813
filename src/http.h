/* http: the HTTPS listener (libmicrohttpd + GnuTLS, epoll, thread pool).
 * Peers outside the allow-list are closed before the TLS handshake; a POST to
 * an endpoint is parsed, authenticated, handed to the store with its
 * connection suspended, and answered after the COMMIT that holds it. Start,
 * quiesce and stop from the main thread. */
#ifndef SLHOOKD_HTTP_H
#define SLHOOKD_HTTP_H

#include <stdint.h>

#include <stdint.h>

#include "cfg.h"
#include "store.h"
#include "tls.h"

struct http;

/* Start listening. listen_fd >= 0: serve on that listening socket (socket
 * activation); otherwise bind cfg->listen_host:listen_port. Borrows cfg, tls
 * (only during the call) and store (until http_stop). tls NULL: plain HTTP,
 * refused unless the socket is a loopback one (behind a local TLS proxy).
 * Returns 0 or a negative errno with *reterr set. */
int http_start(const struct cfg *cfg, const struct tls_creds *tls, struct store *store,
               int listen_fd, struct http **ret, char **reterr);

/* The TCP port actually listened on. */
unsigned http_port(const struct http *h);

/* Stop accepting new connections; requests already under way go on and are
 * answered with "Connection: close". */
void http_quiesce(struct http *h);

/* The listening socket (to start a successor on it, see http_handover). */
int http_listen_fd(const struct http *h);

/* Stop accepting, as http_quiesce, and leave the listening socket open for
 * the successor already serving it. */
void http_handover(struct http *h);

/* Connections open now. */
unsigned http_connections(struct http *h);

/* Requests received but not yet answered. */
unsigned http_in_flight(const struct http *h);

/* Accept secret for endpoint too, from now on (a secret the management
 * thread generated). Any thread. Returns 0 or -ENOENT. */
int http_set_secret(struct http *h, const char *endpoint, const char *secret);

/* Requests carrying a test event (MessageId SampleMessageId, or from
 * SocketLabs' test address) that were stored (or found stored already), and
 * that were refused for their SecretKey. Both only grow. Any thread. */
void http_test_events(struct http *h, uint64_t *stored, uint64_t *refused);

/* For the watchdog: answers given so far, and requests read but not yet
 * answered (the listener's own work, not the sending). Any thread. */
void http_progress(struct http *h, uint64_t *answered, unsigned *waiting);

/* Close every connection and free; NULL-safe; returns NULL. The store must
 * have been stopped first so that no connection still waits for it. */
struct http *http_stop(struct http *h);

#endif
