/* http: the HTTPS listener (libmicrohttpd + GnuTLS, epoll, thread pool).
 * Peers outside the allow-list are closed before the TLS handshake; a POST to
 * an endpoint is parsed, authenticated, handed to the store with its
 * connection suspended, and answered after the COMMIT that holds it. Start,
 * quiesce and stop from the main thread. */
#ifndef SLHOOKD_HTTP_H
#define SLHOOKD_HTTP_H

#include <stdint.h>

#include "cfg.h"
#include "store.h"
#include "tls.h"

struct http;

/* Descriptors slhookd needs besides one per connection: listeners, the
 * database's files or socket, the metrics server, the API client, epoll and
 * wake-up pipes per thread, the journal. */
#define HTTP_OWN_FDS 64

/* The connections taken at once: max_connections, or fewer when the
 * descriptor limit leaves less room (then a new connection beyond it is
 * closed at once, and the rest of slhookd, /healthz included, still has
 * descriptors to work with). */
unsigned http_connection_limit(unsigned max_connections);

/* How long a listener a reload replaced keeps serving the connections it
 * has before it closes them (once none of its requests waits for the
 * writer). */
#define HTTP_DRAIN_SECONDS 20

/* Start listening. listen_fd >= 0: serve on that listening socket (socket
 * activation); otherwise bind cfg->listen_host:listen_port. Takes a
 * reference to cfg (cfg_ref); borrows tls only during the call and store
 * until http_stop. tls NULL: plain HTTP, refused unless the socket is a
 * loopback one (behind a local TLS proxy). Returns 0 or a negative errno
 * with *reterr set. Main thread. */
int http_start(struct cfg *cfg, const struct tls_creds *tls, struct store *store,
               int listen_fd, struct http **ret, char **reterr);

/* Serve cfg and tls from now on (a reload): a new listener on the same
 * socket takes the new connections, every request from now on is judged by
 * cfg whichever listener serves it, and the replaced listener finishes with
 * the connections it has (see http_tick). On failure all stays as it was.
 * Returns 0 or a negative errno with *reterr set. Main thread. */
int http_reload(struct http *h, struct cfg *cfg, const struct tls_creds *tls, char **reterr);

/* Let go of the replaced listeners that are done: those whose connections
 * are gone, or have drained for HTTP_DRAIN_SECONDS, and none of whose
 * requests waits for the writer. Never blocks. Returns how many remain.
 * Main thread, often while any remain. */
unsigned http_tick(struct http *h);

/* The TCP port actually listened on. */
unsigned http_port(const struct http *h);

/* Stop accepting new connections (at shutdown); requests already under way
 * go on and are answered with "Connection: close". Main thread. */
void http_quiesce(struct http *h);

/* Requests received but not yet completed, on every listener. Main thread. */
unsigned http_in_flight(struct http *h);

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
 * have been stopped first (store_stop returned 0) so that no connection
 * still waits for it. Main thread. */
struct http *http_stop(struct http *h);

#endif
