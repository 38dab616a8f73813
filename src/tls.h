/* tls: certificate and key files read and validated with GnuTLS before the
 * listener uses them; self-signed certificates for the embedded defaults.
 * Main thread only. */
#ifndef SLHOOKD_TLS_H
#define SLHOOKD_TLS_H

#include <stddef.h>

struct tls_creds {
        char *cert_pem;         /* NUL-terminated PEM */
        char *key_pem;          /* NUL-terminated PEM, wiped by tls_free */
        size_t key_len;
        long long expires;      /* the certificate's notAfter, Unix seconds (-1: none) */
};

/* A certificate that expires within this many days is worth a warning. */
#define TLS_EXPIRY_WARN_DAYS 14

/* Read cert_file and key_file and check that they parse, that the key belongs
 * to the certificate, that the certificate is valid now, and that priorities is
 * a valid GnuTLS priority string. Returns 0, or a negative errno with *reterr
 * an allocated message naming the file at fault. */
int tls_load(const char *cert_file, const char *key_file, const char *priorities,
             struct tls_creds **ret, char **reterr);

/* Wipe and free; NULL-safe; returns NULL. */
struct tls_creds *tls_free(struct tls_creds *t);

/* Write a new ECDSA P-256 key (mode 0600) and a self-signed certificate for
 * "localhost" and 127.0.0.1/::1, valid for days. Returns 0 or a negative errno. */
int tls_generate_self_signed(const char *cert_file, const char *key_file, unsigned days, char **reterr);

/* Let a new server session (a gnutls_session_t) issue TLS session tickets,
 * so that a returning client resumes instead of doing a full handshake. The
 * ticket key is made once per process (GnuTLS rotates what it derives from it)
 * and kept across reloads, so tickets stay good until they expire. Any thread.
 * Returns 0 or a GnuTLS error code. */
int tls_enable_tickets(void *session);

/* Fill buf with len random characters from [A-Za-z0-9] (a SocketLabs-like
 * secret). Returns 0 or a negative errno. */
int tls_random_secret(char *buf, size_t len);

#endif
