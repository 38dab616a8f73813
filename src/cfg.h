/* cfg: the configuration file (INI, parsed with inih) turned into an
 * immutable struct cfg. Every error names file, line, section and key.
 * Not thread-safe while loading; the result is read-only and may be shared. */
#ifndef SLHOOKD_CFG_H
#define SLHOOKD_CFG_H

#include <stdbool.h>
#include <stddef.h>

#include "acl.h"
#include "db.h"
#include "health.h"
#include "log.h"

#define CFG_DEFAULT_PATH "/etc/slhookd/slhookd.conf"
#define CFG_DEFAULT_ALLOW "142.0.176.0/20 52.152.150.178/32 127.0.0.0/8 ::1/128"
/* max_connections_per_ip when not set (and no trusted_proxies). */
#define CFG_DEFAULT_PER_IP(max_connections) ((max_connections) / 4 > 0 ? (max_connections) / 4 : 1)
/* TLS 1.3 and 1.2, AEAD ciphers only, and forward secrecy only: no static
 * RSA key exchange (-RSA; ECDHE and DHE stay). */
#define CFG_DEFAULT_PRIORITIES \
        "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:-RSA"

struct cfg_endpoint {
        char *name;             /* from "[endpoint NAME]" */
        char *path;             /* URL path, exact match */
        char *secret_file;
        char *secret_inline;    /* "secret = ..." (discouraged; warned about) */
        char *validation_key;   /* legacy: echoed in every 200 body */
        char **secrets;         /* loaded: every accepted secret (rotation) */
        size_t n_secrets;
        int line;               /* where the section starts */
};

/* [forward NAME]: where the stored events go on to (forward.h). */
struct cfg_forward {
        char *name;
        char *url;              /* https://, or http:// to a loopback address */
        char **types;           /* canonical types; NULL: every type */
        size_t n_types;
        char **endpoints;       /* [endpoint NAME]s; NULL: every endpoint */
        size_t n_endpoints;
        char **server_ids;      /* decimal ServerIds; NULL: every one */
        size_t n_server_ids;
        char *secret_file;
        unsigned char *key;     /* loaded: the signing key (whsec_ base64 decoded) */
        size_t key_len;
        unsigned batch;         /* events per POST, 1..500 (> 1: a JSON array) */
        unsigned timeout;       /* seconds per attempt */
        char *ca_file;
        int line;
};

struct cfg {
        char *file;

        /* [server] */
        char *listen_host;
        unsigned listen_port;
        char *tls_cert;                 /* NULL with tls_key: plain HTTP (loopback only) */
        char *tls_key;
        char *tls_priorities;
        struct acl *allow;
        struct acl *trusted_proxies;
        size_t max_body;
        unsigned threads;               /* resolved: never 0 */
        unsigned timeout;               /* idle connection, seconds */
        unsigned max_connections;
        unsigned max_connections_per_ip; /* 0 = no per-address limit; default max_connections / 4 */

        struct cfg_endpoint *endpoints;
        size_t n_endpoints;

        struct cfg_forward *forwards;
        size_t n_forwards;

        /* [store] */
        enum db_backend backend;
        char *database;                 /* sqlite */
        char *dsn;                      /* postgresql: a libpq connection string */
        char *db_password_file;         /* postgresql: password_file (read by cfg_db_conf) */
        bool synchronous_full;
        unsigned retention_days;
        unsigned queue_size;            /* bounded queue to the writer, in requests */
        unsigned statement_timeout;     /* seconds a statement (or a lock) may wait: then 503 */

        /* [api] (used by the management thread) */
        bool api;
        char *api_base_url;
        char *api_key_file;
        char *api_endpoint;
        char *api_public_url;
        char *api_webhook_id;
        char *api_ca_file;
        unsigned api_self_test_interval;
        unsigned api_self_test_timeout;

        /* [log] */
        enum log_format log_format;
        int log_level;

        /* [health]: thresholds, the window and how often the daemon looks */
        struct health_conf health;

        /* [metrics]: the listener runs only when the section is there */
        bool metrics;
        char *metrics_listen;

        /* Non-fatal findings ("FILE:LINE: ..."), for the caller to log. */
        char **warnings;
        size_t n_warnings;

        unsigned refs;                  /* cfg_ref / cfg_free; atomic */
};

/* cfg_load flags. CFG_NO_SECRETS: read no secret_file and require no
 * secret (for tools such as slhookctl that only need the database path). */
#define CFG_NO_SECRETS 1u

/* Load and validate path, reading every secret_file. Returns 0 and a new cfg,
 * or a negative errno with *reterr set to an allocated one-line message. */
int cfg_load(const char *path, unsigned flags, struct cfg **ret, char **reterr);
/* Another reference to c, for a holder that may outlive the loader's (the
 * listener's requests); any thread. Returns c. */
struct cfg *cfg_ref(struct cfg *c);
/* Drop a reference; the last one frees (wiping secrets). NULL-safe; any
 * thread; returns NULL. */
struct cfg *cfg_free(struct cfg *c);
/* The database c names, for store_open and query_open. With PostgreSQL
 * the password comes from the systemd credential "postgresql-password"
 * when there is one, else from password_file (its first line), else from
 * the DSN or libpq's own files: *ret_password is then NULL. Returns 0 or a
 * negative errno with *reterr set. Free *ret_password with freezero. */
int cfg_db_conf(const struct cfg *c, struct db_conf *ret, char **ret_password, char **reterr);

/* Where the secrets of endpoint live that are not in the configuration
 * (generated by the management thread, or written there to rotate one under
 * systemd): $STATE_DIRECTORY/NAME.secret, else NAME.secret beside the
 * database. Allocated. */
char *cfg_state_secret(const struct cfg *c, const char *endpoint);

/* Decode a Standard Webhooks signing secret, "whsec_" and base64 (the
 * prefix may be left out), into *key (16 to 64 bytes; free with freezero).
 * 0, or -EINVAL. */
int cfg_webhook_key(const char *secret, unsigned char **key, size_t *len);

/* The endpoint whose path equals url, or NULL. */
const struct cfg_endpoint *cfg_endpoint_by_path(const struct cfg *c, const char *url);

#endif
