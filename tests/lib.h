/* Shared helpers for the check tests: temporary folders, test data, test
 * certificates made with certtool, and a real slhookd started on a loopback
 * socket the test binds (passed as a systemd socket-activation fd). */
#ifndef SLHOOKD_TESTS_LIB_H
#define SLHOOKD_TESTS_LIB_H

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define T_SECRET "Kx9PqW2mZt7RvB4nLs1e"

static inline char *
t_tmpdir(void)
{
        const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        char *d = xasprintf("%s/slhookd-test.XXXXXX", base);

        ck_assert_ptr_nonnull(mkdtemp(d));
        return d;
}

static inline void
t_rm_rf(const char *dir)
{
        char *cmd = xasprintf("rm -rf '%s'", dir);

        ck_assert_int_eq(system(cmd), 0);
        free(cmd);
}

static inline void
t_write(const char *path, const char *content)
{
        FILE *f = fopen(path, "w");

        ck_assert_msg(f != NULL, "cannot write %s", path);
        fputs(content, f);
        fclose(f);
}

/* Contents of a file, or NULL when it cannot be read. */
static inline char *
t_slurp(const char *path, size_t *len)
{
        char *data = NULL;
        size_t n = 0;

        if (file_read(path, 64 * 1024 * 1024, &data, &n) < 0)
                return NULL;
        if (len)
                *len = n;
        return data;
}

static inline char *
t_data(const char *name)
{
        char *path = xasprintf("%s/%s", TEST_DATA_DIR, name);
        char *d = t_slurp(path, NULL);

        ck_assert_msg(d != NULL, "missing test data %s", path);
        free(path);
        return d;
}

/* Whether needle occurs in the first n bytes of hay. */
static inline int
t_contains(const char *hay, size_t n, const char *needle)
{
        return hay && memmem(hay, n, needle, strlen(needle)) != NULL;
}

/* A self-signed ECDSA certificate for localhost/127.0.0.1 in dir/cert.pem and
 * dir/key.pem, made with certtool. days < 0 makes an expired one. */
static inline void
t_make_cert(const char *dir, int days)
{
        char *tmpl = xasprintf("%s/cert.tmpl", dir);
        char *cmd;

        t_write(tmpl, "cn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\n"
                      "tls_www_server\nsigning_key\n");
        if (days < 0) {
                FILE *f = fopen(tmpl, "a");

                fputs("activation_date = \"2020-01-01 00:00:00 UTC\"\n"
                      "expiration_date = \"2020-06-01 00:00:00 UTC\"\n", f);
                fclose(f);
        } else {
                FILE *f = fopen(tmpl, "a");

                fprintf(f, "expiration_days = %d\n", days);
                fclose(f);
        }
        cmd = xasprintf("cd '%s' && certtool --generate-privkey --key-type=ecdsa --outfile key.pem >/dev/null 2>&1 && "
                        "certtool --generate-self-signed --load-privkey key.pem --template cert.tmpl "
                        "--outfile cert.pem >/dev/null 2>&1", dir);
        ck_assert_msg(system(cmd) == 0, "certtool failed: %s", cmd);
        free(cmd);
        free(tmpl);
}

#endif
