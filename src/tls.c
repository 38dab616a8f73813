/* tls: load, validate and generate certificates with GnuTLS. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "tls.h"
#include "util.h"

#define TLS_MAX_PEM (1024 * 1024)

static int
gnutls_fail(char **reterr, const char *what, const char *file, int r)
{
        *reterr = xasprintf("%s: %s: %s", file, what, gnutls_strerror(r));
        return -EINVAL;
}

static gnutls_datum_t ticket_key;
static int ticket_key_error;
static pthread_once_t ticket_key_once = PTHREAD_ONCE_INIT;

static void
ticket_key_make(void)
{
        ticket_key_error = gnutls_session_ticket_key_generate(&ticket_key);
}

int
tls_enable_tickets(void *session)
{
        pthread_once(&ticket_key_once, ticket_key_make);
        if (ticket_key_error < 0)
                return ticket_key_error;
        return gnutls_session_ticket_enable_server(session, &ticket_key);
}

int
tls_load(const char *cert_file, const char *key_file, const char *priorities,
         struct tls_creds **ret, char **reterr)
{
        struct tls_creds *t = xcalloc(1, sizeof(*t));
        gnutls_certificate_credentials_t creds = NULL;
        gnutls_priority_t prio = NULL;
        gnutls_x509_crt_t crt = NULL;
        gnutls_datum_t cd, kd;
        const char *errpos = NULL;
        size_t cert_len;
        time_t now = time(NULL), t_exp, t_act;
        int r;

        r = file_read(cert_file, TLS_MAX_PEM, &t->cert_pem, &cert_len);
        if (r < 0) {
                *reterr = xasprintf("%s: cannot read certificate: %s", cert_file, strerror(-r));
                goto fail;
        }
        r = file_read(key_file, TLS_MAX_PEM, &t->key_pem, &t->key_len);
        if (r < 0) {
                *reterr = xasprintf("%s: cannot read private key: %s", key_file, strerror(-r));
                goto fail;
        }
        cd.data = (unsigned char *) t->cert_pem;
        cd.size = (unsigned) cert_len;
        kd.data = (unsigned char *) t->key_pem;
        kd.size = (unsigned) t->key_len;

        if ((r = gnutls_x509_crt_init(&crt)) < 0 ||
            (r = gnutls_x509_crt_import(crt, &cd, GNUTLS_X509_FMT_PEM)) < 0) {
                r = gnutls_fail(reterr, "not a PEM certificate", cert_file, r);
                goto fail;
        }
        t_exp = gnutls_x509_crt_get_expiration_time(crt);
        t->expires = (long long) t_exp;
        t_act = gnutls_x509_crt_get_activation_time(crt);
        if (t_exp != (time_t) -1 && t_exp < now) {
                char when[TIME_ISO_LEN];

                time_format_iso((int64_t) t_exp * 1000000, when);
                *reterr = xasprintf("%s: certificate expired at %s", cert_file, when);
                r = -EKEYEXPIRED;
                goto fail;
        }
        if (t_act != (time_t) -1 && t_act > now + 300) {
                char when[TIME_ISO_LEN];

                time_format_iso((int64_t) t_act * 1000000, when);
                *reterr = xasprintf("%s: certificate is not valid before %s", cert_file, when);
                r = -EINVAL;
                goto fail;
        }
        if ((r = gnutls_certificate_allocate_credentials(&creds)) < 0) {
                r = gnutls_fail(reterr, "cannot allocate credentials", cert_file, r);
                goto fail;
        }
        r = gnutls_certificate_set_x509_key_mem2(creds, &cd, &kd, GNUTLS_X509_FMT_PEM, NULL, 0);
        if (r == GNUTLS_E_CERTIFICATE_KEY_MISMATCH) {
                *reterr = xasprintf("%s: private key does not belong to the certificate %s", key_file, cert_file);
                r = -EINVAL;
                goto fail;
        }
        if (r < 0) {
                r = gnutls_fail(reterr, "not a usable PEM private key", key_file, r);
                goto fail;
        }
        if ((r = gnutls_priority_init(&prio, priorities, &errpos)) < 0) {
                *reterr = xasprintf("tls_priorities: invalid GnuTLS priority string at '%s': %s",
                                    errpos ? errpos : priorities, gnutls_strerror(r));
                r = -EINVAL;
                goto fail;
        }
        gnutls_priority_deinit(prio);
        gnutls_certificate_free_credentials(creds);
        gnutls_x509_crt_deinit(crt);
        *ret = t;
        return 0;
fail:
        if (prio)
                gnutls_priority_deinit(prio);
        if (creds)
                gnutls_certificate_free_credentials(creds);
        if (crt)
                gnutls_x509_crt_deinit(crt);
        tls_free(t);
        return r < 0 ? r : -EINVAL;
}

struct tls_creds *
tls_free(struct tls_creds *t)
{
        if (t == NULL)
                return NULL;
        free(t->cert_pem);
        if (t->key_pem)
                freezero(t->key_pem, t->key_len);
        free(t);
        return NULL;
}

int
tls_random_secret(char *buf, size_t len)
{
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        unsigned char rnd;
        size_t i = 0;

        while (i < len) {
                if (gnutls_rnd(GNUTLS_RND_KEY, &rnd, 1) < 0)
                        return -EIO;
                if (rnd >= 248)
                        continue;       /* 248 = 4 * 62: keep the choice uniform */
                buf[i++] = alphabet[rnd % 62];
        }
        explicit_bzero(&rnd, sizeof(rnd));
        return 0;
}

int
tls_generate_self_signed(const char *cert_file, const char *key_file, unsigned days, char **reterr)
{
        gnutls_x509_privkey_t key = NULL;
        gnutls_x509_crt_t crt = NULL;
        gnutls_datum_t kout = { 0 }, cout = { 0 };
        unsigned char serial[16], ip4[4], ip6[16];
        time_t now = time(NULL);
        int r;

        if ((r = gnutls_x509_privkey_init(&key)) < 0 ||
            (r = gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
                                              GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0)) < 0 ||
            (r = gnutls_x509_crt_init(&crt)) < 0 ||
            (r = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
            (r = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial))) < 0)
                goto gfail;
        serial[0] &= 0x7f;
        inet_pton(AF_INET, "127.0.0.1", ip4);
        inet_pton(AF_INET6, "::1", ip6);
        if ((r = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial))) < 0 ||
            (r = gnutls_x509_crt_set_activation_time(crt, now - 3600)) < 0 ||
            (r = gnutls_x509_crt_set_expiration_time(crt, now + (time_t) days * 86400)) < 0 ||
            (r = gnutls_x509_crt_set_dn(crt, "CN=localhost,O=slhookd self-signed", NULL)) < 0 ||
            (r = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "localhost", 9,
                                                      GNUTLS_FSAN_SET)) < 0 ||
            (r = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip4, 4,
                                                      GNUTLS_FSAN_APPEND)) < 0 ||
            (r = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip6, 16,
                                                      GNUTLS_FSAN_APPEND)) < 0 ||
            (r = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
            (r = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE)) < 0 ||
            (r = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0)) < 0 ||
            (r = gnutls_x509_crt_set_key(crt, key)) < 0 ||
            (r = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0)) < 0 ||
            (r = gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &kout)) < 0 ||
            (r = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &cout)) < 0)
                goto gfail;
        if ((r = file_write_atomic(key_file, kout.data, kout.size, 0600)) < 0) {
                *reterr = xasprintf("%s: cannot write private key: %s", key_file, strerror(-r));
                goto out;
        }
        if ((r = file_write_atomic(cert_file, cout.data, cout.size, 0644)) < 0) {
                *reterr = xasprintf("%s: cannot write certificate: %s", cert_file, strerror(-r));
                goto out;
        }
        r = 0;
        goto out;
gfail:
        *reterr = xasprintf("cannot generate a self-signed certificate: %s", gnutls_strerror(r));
        r = -EIO;
out:
        if (kout.data) {
                explicit_bzero(kout.data, kout.size);
                gnutls_free(kout.data);
        }
        gnutls_free(cout.data);
        if (crt)
                gnutls_x509_crt_deinit(crt);
        if (key)
                gnutls_x509_privkey_deinit(key);
        return r;
}
