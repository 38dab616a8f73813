/* cfg: a full good file, defaults, and every kind of error with file:line. */
#include "config.h"

#include "cfg.h"
#include "lib.h"

static char *dir;

static void
setup(void)
{
        char *p;

        dir = t_tmpdir();
        p = xasprintf("%s/secret", dir);
        t_write(p, "# current and previous secret (rotation)\nfirst-secret\n\n  second-secret  \n");
        free(p);
}

static void
teardown(void)
{
        t_rm_rf(dir);
        free(dir);
}

/* Load text as a configuration file; returns the error or NULL. */
static char *
load(const char *text, struct cfg **ret)
{
        char *path = xasprintf("%s/slhookd.conf", dir), *err = NULL;
        struct cfg *c = NULL;
        int r;

        t_write(path, text);
        r = cfg_load(path, 0, &c, &err);
        free(path);
        if (r < 0) {
                ck_assert_ptr_nonnull(err);
                ck_assert_ptr_null(c);
                return err;
        }
        ck_assert_ptr_null(err);
        if (ret)
                *ret = c;
        else
                cfg_free(c);
        return NULL;
}

#define MIN_EP "[endpoint main]\npath = /socketlabs/events\nsecret_file = secret\n"

START_TEST(test_full)
{
        struct cfg *c = NULL;
        char *err = load(
                "; full example\n"
                "[server]\n"
                "listen = [::1]:9443        ; inline comment\n"
                "tls_cert = tls/cert.pem\n"
                "tls_key = /abs/key.pem\n"
                "tls_priorities = NORMAL\n"
                "allow = 142.0.176.0/20 52.152.150.178/32\n"
                "allow = 10.0.0.0/8\n"
                "max_body = 1024\n"
                "threads = 3\n"
                "timeout = 10\n"
                "max_connections = 100\n"
                "max_connections_per_ip = 8\n"
                "trusted_proxies = 127.0.0.1\n"
                "\n"
                "[endpoint main]\n"
                "path = /socketlabs/events\n"
                "secret_file = secret\n"
                "validation_key = legacy-vk\n"
                "[endpoint sub]\n"
                "path = /sub\n"
                "secret = inline-secret\n"
                "[store]\n"
                "database = events.db\n"
                "synchronous = normal\n"
                "retention_days = 30\n"
                "backend = sqlite\n"
                "[api]\n"
                "key_file = api-key\n"
                "endpoint = main\n"
                "public_url = https://hooks.example.com/socketlabs/events\n"
                "self_test_interval = 600\n"
                "[log]\n"
                "format = json\n"
                "level = debug\n"
                "[metrics]\n"
                "listen = 127.0.0.1:9464\n", &c);

        ck_assert_msg(err == NULL, "%s", err);
        ck_assert_str_eq(c->listen_host, "::1");
        ck_assert_uint_eq(c->listen_port, 9443);
        ck_assert(strstr(c->tls_cert, "/tls/cert.pem") && c->tls_cert[0] == '/');
        ck_assert_str_eq(c->tls_key, "/abs/key.pem");
        ck_assert_uint_eq(acl_count(c->allow), 3);
        ck_assert_uint_eq(c->max_body, 1024);
        ck_assert_uint_eq(c->threads, 3);
        ck_assert_uint_eq(c->timeout, 10);
        ck_assert_uint_eq(c->max_connections, 100);
        ck_assert_uint_eq(c->max_connections_per_ip, 8);
        ck_assert_uint_eq(c->n_endpoints, 2);
        ck_assert_str_eq(c->endpoints[0].name, "main");
        ck_assert_uint_eq(c->endpoints[0].n_secrets, 2);
        ck_assert_str_eq(c->endpoints[0].secrets[0], "first-secret");
        ck_assert_str_eq(c->endpoints[0].secrets[1], "second-secret");
        ck_assert_str_eq(c->endpoints[0].validation_key, "legacy-vk");
        ck_assert_uint_eq(c->endpoints[1].n_secrets, 1);
        ck_assert_uint_eq(c->n_warnings, 1);    /* the inline secret */
        ck_assert_ptr_null(strstr(c->warnings[0], "inline-secret"));
        ck_assert(!c->synchronous_full);
        ck_assert_uint_eq(c->retention_days, 30);
        ck_assert(c->api);
        ck_assert_uint_eq(c->api_self_test_interval, 600);
        ck_assert_int_eq(c->log_format, LOG_FORMAT_JSON);
        ck_assert_int_eq(c->log_level, LOG_DEBUG);
        ck_assert_ptr_eq(cfg_endpoint_by_path(c, "/sub"), &c->endpoints[1]);
        ck_assert_ptr_null(cfg_endpoint_by_path(c, "/socketlabs/events/"));
        cfg_free(c);
}
END_TEST

START_TEST(test_defaults)
{
        struct cfg *c = NULL;
        char *err = load("[server]\ntls_cert = c.pem\ntls_key = k.pem\n" MIN_EP, &c);

        ck_assert_msg(err == NULL, "%s", err);
        ck_assert_str_eq(c->listen_host, "0.0.0.0");
        ck_assert_uint_eq(c->listen_port, 8443);
        ck_assert_uint_eq(c->max_body, 65536);
        ck_assert_uint_eq(c->timeout, 30);
        ck_assert_uint_ne(c->threads, 0);
        ck_assert(c->synchronous_full);
        ck_assert_uint_eq(acl_count(c->allow), 4);
        ck_assert_str_eq(c->database, "/var/lib/slhookd/events.db");
        ck_assert(!c->api);
        ck_assert_uint_eq(c->max_connections, 1024);
        ck_assert_uint_eq(c->max_connections_per_ip, 256);
        cfg_free(c);

        /* The per-address limit follows max_connections; behind a proxy
         * there is none unless one is set. */
        err = load("[server]\nlisten = 127.0.0.1:1\nmax_connections = 100\n" MIN_EP, &c);
        ck_assert_msg(err == NULL, "%s", err);
        ck_assert_uint_eq(c->max_connections_per_ip, 25);
        cfg_free(c);
        err = load("[server]\nlisten = 127.0.0.1:1\ntrusted_proxies = 127.0.0.1/32\n" MIN_EP, &c);
        ck_assert_msg(err == NULL, "%s", err);
        ck_assert_uint_eq(c->max_connections_per_ip, 0);
        cfg_free(c);
        err = load("[server]\nlisten = 127.0.0.1:1\ntrusted_proxies = 127.0.0.1/32\nmax_connections_per_ip = 9\n" MIN_EP, &c);
        ck_assert_msg(err == NULL, "%s", err);
        ck_assert_uint_eq(c->max_connections_per_ip, 9);
        cfg_free(c);
}
END_TEST

/* Each bad file, and what its error must say (file:line and the key). */
static const struct {
        const char *text;
        const char *expect;
} bad[] = {
        { MIN_EP "[server]\nlisten = 1.2.3.4:8443\nbogus = 1\n", "slhookd.conf:6: [server] unknown key 'bogus'" },
        { MIN_EP "[server]\nmax_body = lots\n", "slhookd.conf:5: [server] max_body: 'lots' is not a whole number" },
        { MIN_EP "[server]\nmax_body = 10\n", "slhookd.conf:5: [server] max_body: '10' is not a whole number from 64" },
        { MIN_EP "[server]\ntimeout = 5\ntimeout = 6\n", "slhookd.conf:6: [server] timeout: given twice" },
        { MIN_EP "[server]\nlisten = 8443\n", "slhookd.conf:5: [server] listen: '8443' is not host:port" },
        { MIN_EP "[server]\nlisten = 1.2.3.4:70000\n", "slhookd.conf:5: [server] listen: port in" },
        { MIN_EP "[server]\nallow = 142.0.176.0/33\n", "slhookd.conf:5: [server] allow: '142.0.176.0/33' is not" },
        { MIN_EP "[sever]\nlisten = 1.2.3.4:1\n", "slhookd.conf:4: unknown section [sever]" },
        { MIN_EP "[store]\nsynchronous = sometimes\n", "slhookd.conf:5: [store] synchronous: 'sometimes'" },
        { MIN_EP "[store]\nbackend = oracle\n", "[store] backend: 'oracle' is not sqlite or postgresql" },
        { MIN_EP "[log]\nlevel = loud\n", "slhookd.conf:5: [log] level: 'loud'" },
        { MIN_EP "[log]\nformat = xml\n", "slhookd.conf:5: [log] format: 'xml'" },
        { MIN_EP "[server]\nthis line has no equals sign\n", "slhookd.conf:5: syntax error" },
        { "listen = 1.2.3.4:1\n" MIN_EP, "slhookd.conf:1: 'listen' is outside any [section]" },
        { "[endpoint]\npath = /x\n", "slhookd.conf:1: [endpoint] needs a name" },
        { "[endpoint a b]\npath = /x\n", "endpoint name 'a b'" },
        { MIN_EP "[endpoint main]\npath = /y\n", "slhookd.conf:4: [endpoint main] is defined twice (first at line 1)" },
        { "[endpoint main]\nsecret_file = secret\n", "slhookd.conf:1: [endpoint main] path: missing" },
        { "[endpoint main]\npath = x\nsecret_file = secret\n", "[endpoint main] path: 'x' must start with '/'" },
        { MIN_EP "[endpoint b]\npath = /socketlabs/events\nsecret_file = secret\n",
          "[endpoint b] path: '/socketlabs/events' is already the path of [endpoint main]" },
        { "[endpoint main]\npath = /x\nsecret_file = missing-file\n",
          "slhookd.conf:1: [endpoint main] secret_file: cannot read '" },
        { "[endpoint main]\npath = /x\n", "[endpoint main] secret_file: no secret configured" },
        { "[endpoint main]\npath = /x\nsecret_file = empty\n", "holds no secret line" },
        { "[server]\nlisten = 1.2.3.4:1\n", "no [endpoint NAME] section" },
        { MIN_EP "[server]\nallow = \n", "slhookd.conf:5: [server] allow: empty value" },
        { MIN_EP "[api]\nendpoint = main\npublic_url = https://x/y\n", "[api] key_file: missing" },
        { MIN_EP "[api]\nkey_file = k\nendpoint = nope\npublic_url = https://x/y\n", "[api] endpoint: no [endpoint nope]" },
        { MIN_EP "[api]\nkey_file = k\npublic_url = http://x/y\n", "[api] public_url: missing or not an https:// URL" },
};

START_TEST(test_errors)
{
        char *p = xasprintf("%s/empty", dir), *err;

        t_write(p, "# nothing here\n\n");
        free(p);
        err = load(bad[_i].text, NULL);
        ck_assert_msg(err != NULL, "case %d loaded without error", _i);
        ck_assert_msg(strstr(err, bad[_i].expect) != NULL, "case %d: got '%s', expected '%s'", _i, err,
                      bad[_i].expect);
        free(err);
}
END_TEST

START_TEST(test_long_line)
{
        struct buf b = { 0 };
        char *err;
        int i;

        buf_puts(&b, MIN_EP "[server]\nallow = ");
        for (i = 0; i < 40; i++)
                buf_puts(&b, "10.0.0.0/8 ");
        buf_puts(&b, "\n");
        err = load(b.data, NULL);
        ck_assert_ptr_nonnull(err);
        ck_assert_msg(strstr(err, "slhookd.conf:5: line longer than") != NULL, "%s", err);
        free(err);
        buf_done(&b);
}
END_TEST

START_TEST(test_multiline_list)
{
        struct cfg *c = NULL;
        char *err = load(MIN_EP "[server]\ntls_cert = c.pem\ntls_key = k.pem\n"
                         "allow = 10.0.0.0/8\n  192.168.0.0/16\n  ::1\n", &c);

        ck_assert_msg(err == NULL, "%s", err);
        ck_assert_uint_eq(acl_count(c->allow), 3);
        cfg_free(c);
}
END_TEST

START_TEST(test_missing_file)
{
        struct cfg *c = NULL;
        char *err = NULL;

        ck_assert_int_eq(cfg_load("/nonexistent/slhookd.conf", 0, &c, &err), -ENOENT);
        ck_assert_ptr_nonnull(strstr(err, "/nonexistent/slhookd.conf: cannot open"));
        free(err);
}
END_TEST

START_TEST(test_api_secret_may_be_absent)
{
        struct cfg *c = NULL;
        char *err = load("[server]\nlisten = 127.0.0.1:8443\n[endpoint main]\npath = /x\nsecret_file = not-yet\n"
                         "[api]\nkey_file = k\npublic_url = https://hooks.example.com/x\n", &c);

        /* The management thread generates it; endpoint defaults to the only one. */
        ck_assert_msg(err == NULL, "%s", err);
        ck_assert_str_eq(c->api_endpoint, "main");
        ck_assert_uint_eq(c->endpoints[0].n_secrets, 0);
        ck_assert_uint_eq(c->n_warnings, 0);
        cfg_free(c);
#ifdef HAVE_POSTGRESQL
        /* Several instances on PostgreSQL cannot share a generated secret: said. */
        err = load("[server]\nlisten = 127.0.0.1:8443\n[endpoint main]\npath = /x\nsecret_file = not-yet\n"
                   "[store]\nbackend = postgresql\ndsn = dbname=x\n"
                   "[api]\nkey_file = k\npublic_url = https://hooks.example.com/x\n", &c);
        ck_assert_msg(err == NULL, "%s", err);
        ck_assert_uint_eq(c->n_warnings, 1);
        ck_assert_msg(strstr(c->warnings[0], ":3: [endpoint main] has no secret_file: the secret the management "
                             "thread generates stays with this instance"), "%s", c->warnings[0]);
        cfg_free(c);
#endif
}
END_TEST

/* TLS may be left out only on a loopback address (a local TLS proxy). */
START_TEST(test_plain_http_only_on_loopback)
{
        struct cfg *c = NULL;
        char *err;

        err = load("[server]\nlisten = 127.0.0.1:8080\n" MIN_EP, &c);
        ck_assert_msg(err == NULL, "%s", err);
        ck_assert_ptr_null(c->tls_cert);
        cfg_free(c);
        err = load("[server]\nlisten = 0.0.0.0:8080\n" MIN_EP, NULL);
        ck_assert_msg(err && strstr(err, "[server] tls_cert: missing; plain HTTP is allowed only when listen is a "
                                         "loopback address (behind a local TLS proxy), not '0.0.0.0'"), "%s", err);
        free(err);
        err = load("[server]\nlisten = 127.0.0.1:8080\ntls_cert = c.pem\n" MIN_EP, NULL);
        ck_assert_msg(err && strstr(err, "[server] tls_key: missing (tls_cert is given)"), "%s", err);
        free(err);
}
END_TEST

/* Under systemd the secret comes as the credential NAME.secret, which the
 * service's user can read where it cannot read secret_file. */
START_TEST(test_secret_from_credential)
{
        struct cfg *c = NULL;
        char *creds = xasprintf("%s/creds", dir), *file = xasprintf("%s/creds/main.secret", dir), *err;

        ck_assert_int_eq(mkdir(creds, 0700), 0);
        t_write(file, "from-credential\n# old\nsecond\n");
        setenv("CREDENTIALS_DIRECTORY", creds, 1);
        err = load("[server]\nlisten = [::1]:8443\n[endpoint main]\npath = /x\nsecret_file = /nonexistent/secret\n", &c);
        ck_assert_msg(err == NULL, "%s", err);
        ck_assert_uint_eq(c->endpoints[0].n_secrets, 2);
        ck_assert_str_eq(c->endpoints[0].secrets[0], "from-credential");
        ck_assert_str_eq(c->endpoints[0].secrets[1], "second");
        cfg_free(c);
        unsetenv("CREDENTIALS_DIRECTORY");
        free(file);
        free(creds);
}
END_TEST

int
main(void)
{
        Suite *s = suite_create("cfg");
        TCase *tc = tcase_create("cfg");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_full);
        tcase_add_test(tc, test_secret_from_credential);
        tcase_add_test(tc, test_plain_http_only_on_loopback);
        tcase_add_test(tc, test_defaults);
        tcase_add_loop_test(tc, test_errors, 0, (int) ARRAY_SIZE(bad));
        tcase_add_test(tc, test_long_line);
        tcase_add_test(tc, test_multiline_list);
        tcase_add_test(tc, test_missing_file);
        tcase_add_test(tc, test_api_secret_may_be_absent);
        return t_run(s, tc);
}
