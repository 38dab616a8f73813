/* Shared helpers for the check tests: temporary folders, test data, test
 * certificates made with certtool, and a real slhookd started on a loopback
 * socket the test binds (passed as a systemd socket-activation fd). */
#ifndef SLHOOKD_TESTS_LIB_H
#define SLHOOKD_TESTS_LIB_H

#include <arpa/inet.h>
#include <check.h>
#include <sqlite3.h>
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

/* A SQLite database for store_open(). */
#define T_SQLITE(file, full) (&(struct db_conf) { .backend = DB_SQLITE, .path = (file), .synchronous_full = (full) })

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

/* A self-signed certificate for localhost/127.0.0.1 in dir/cert.pem and
 * dir/key.pem, made with certtool, of key_type ("ecdsa", "rsa": an RSA one
 * may also encipher, so that a static RSA key exchange could use it).
 * days < 0 makes an expired one. */
static inline void
t_make_cert_type(const char *dir, int days, const char *key_type)
{
        char *tmpl = xasprintf("%s/cert.tmpl", dir), *validity, *cmd;

        validity = days < 0 ? xstrdup("activation_date = \"2020-01-01 00:00:00 UTC\"\n"
                                      "expiration_date = \"2020-06-01 00:00:00 UTC\"\n")
                            : xasprintf("expiration_days = %d\n", days);
        cmd = xasprintf("cn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\n"
                        "tls_www_server\nsigning_key\n%s%s", strcmp(key_type, "rsa") == 0 ? "encryption_key\n" : "",
                        validity);
        t_write(tmpl, cmd);
        free(validity);
        free(cmd);
        cmd = xasprintf("cd '%s' && certtool --generate-privkey --key-type=%s --outfile key.pem >/dev/null 2>&1 && "
                        "certtool --generate-self-signed --load-privkey key.pem --template cert.tmpl "
                        "--outfile cert.pem >/dev/null 2>&1", dir, key_type);
        ck_assert_msg(system(cmd) == 0, "certtool failed: %s", cmd);
        free(cmd);
        free(tmpl);
}

static inline void
t_make_cert(const char *dir, int days)
{
        t_make_cert_type(dir, days, "ecdsa");
}

/* First column of the first row of sql against the database file, or -1. */
static inline long long
t_query(const char *db, const char *sql)
{
        sqlite3 *h;
        sqlite3_stmt *s;
        long long v = -1;

        ck_assert_int_eq(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        ck_assert_msg(sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(h));
        if (sqlite3_step(s) == SQLITE_ROW)
                v = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
        sqlite3_close(h);
        return v;
}

/* Every row of sql, columns joined by '|' and rows ended by '\n' (NULL as
 * "NULL"); an allocated string. */
static inline char *
t_rows(const char *db, const char *sql)
{
        struct buf b = { 0 };
        sqlite3 *h;
        sqlite3_stmt *s;
        int i;

        ck_assert_int_eq(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        ck_assert_msg(sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(h));
        buf_puts(&b, "");
        while (sqlite3_step(s) == SQLITE_ROW) {
                for (i = 0; i < sqlite3_column_count(s); i++) {
                        const char *v = (const char *) sqlite3_column_text(s, i);

                        buf_printf(&b, "%s%s", i ? "|" : "", v ? v : "NULL");
                }
                buf_puts(&b, "\n");
        }
        sqlite3_finalize(s);
        sqlite3_close(h);
        return b.data;
}

/* Run sql on a second, writing connection (as another process would). */
static inline void
t_exec(const char *db, const char *sql)
{
        sqlite3 *h;

        ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
        sqlite3_busy_timeout(h, 5000);
        ck_assert_msg(sqlite3_exec(h, sql, NULL, NULL, NULL) == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(h));
        sqlite3_close(h);
}

/* Run a suite; the process exit status. */
static inline int
t_run(Suite *s, TCase *tc)
{
        SRunner *sr;
        int failed;

        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
