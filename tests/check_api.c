/* api: the SocketLabs v2 client against the fake API over real TLS. */
#include "config.h"

#include <pthread.h>

#include <curl/curl.h>

#include "api.h"
#include "fake_api.h"
#include "lib.h"

#define API_KEY "test-api-key-7f3c9a"

static char *dir, *cert, *key, *base;
static struct fake_api *fake;
static atomic_bool stop;

static void
setup(void)
{
        dir = t_tmpdir();
        t_make_cert(dir, 30);
        cert = xasprintf("%s/cert.pem", dir);
        key = xasprintf("%s/key.pem", dir);
        curl_global_init(CURL_GLOBAL_DEFAULT);
        fake = fake_api_start(cert, key, API_KEY, cert);
        ck_assert_ptr_nonnull(fake);
        base = xasprintf("https://127.0.0.1:%u/v2", fake_api_port(fake));
        atomic_store(&stop, false);
}

static void
teardown(void)
{
        fake_api_stop(fake);
        t_rm_rf(dir);
        free(dir);
        free(cert);
        free(key);
        free(base);
}

static struct api *
client(const char *api_key, unsigned timeout)
{
        return api_new(base, api_key, cert, timeout, &stop);
}

START_TEST(test_register_and_find)
{
        struct api *a = client(API_KEY, 10);
        struct api_call c;
        char *id = NULL, *found = NULL, *secret = NULL, *held;

        ck_assert_int_eq(api_find_webhook(a, "https://hooks.example.com/e", &id, &c), 0);
        ck_assert_ptr_null(id);
        ck_assert_int_eq(c.http_status, 200);
        ck_assert_int_eq(api_generate_secret(a, &secret, &c), 0);
        ck_assert_msg(strncmp(secret, "gen-", 4) == 0, "%s", secret);
        ck_assert_int_eq(api_create_webhook(a, "https://hooks.example.com/e", secret, &id, &c), 0);
        ck_assert_int_eq(c.http_status, 201);
        ck_assert_int_eq(api_find_webhook(a, "https://hooks.example.com/e", &found, &c), 0);
        ck_assert_str_eq(found, id);
        ck_assert_int_eq(api_get_webhook(a, id, &c), 0);
        held = fake_api_secret(fake, atoi(id));
        ck_assert_str_eq(held, secret);
        free(held);
        ck_assert_int_eq(api_update_webhook(a, id, "https://hooks.example.com/e", "rotated", &c), 0);
        held = fake_api_secret(fake, atoi(id));
        ck_assert_str_eq(held, "rotated");
        free(held);
        ck_assert_int_eq(api_get_webhook(a, "999", &c), -ENOENT);
        ck_assert_int_eq(c.http_status, 404);
        ck_assert_int_eq(api_perform_test(a, id, "Sent", &c), 0);
        ck_assert_int_eq(fake_api_counts(fake).tests, 1);
        ck_assert_int_eq(fake_api_counts(fake).unauthorized, 0);
        free(secret);
        free(found);
        free(id);
        api_free(a);
}
END_TEST

/* The other answer shapes: bare array and string, other member names. */
START_TEST(test_bare_shapes)
{
        struct api *a = client(API_KEY, 10);
        struct api_call c;
        char *id = NULL, *found = NULL, *secret = NULL;

        fake_api_bare(fake, true);
        ck_assert_int_eq(api_generate_secret(a, &secret, &c), 0);
        ck_assert_msg(strncmp(secret, "gen-", 4) == 0, "%s", secret);
        ck_assert_int_eq(api_create_webhook(a, "https://hooks.example.com/b", secret, &id, &c), 0);
        ck_assert_str_eq(id, "1001");
        fake_api_add(fake, "https://hooks.example.com/other", "s");
        ck_assert_int_eq(api_find_webhook(a, "https://hooks.example.com/b", &found, &c), 0);
        ck_assert_str_eq(found, "1001");
        free(found);
        ck_assert_int_eq(api_find_webhook(a, "https://hooks.example.com/other", &found, &c), 0);
        ck_assert_str_eq(found, "1002");
        free(found);
        free(secret);
        free(id);
        api_free(a);
}
END_TEST

START_TEST(test_key_rejected)
{
        struct api *a = client("not-the-key", 10);
        struct api_call c;
        char *id = NULL;

        ck_assert_int_eq(api_find_webhook(a, "https://x.example/", &id, &c), -EACCES);
        ck_assert_int_eq(c.http_status, 401);
        ck_assert_str_eq(c.error, "API key rejected (HTTP 401)");
        ck_assert_int_eq(fake_api_counts(fake).unauthorized, 1);
        api_free(a);
        /* The right key, but the API says no anyway. */
        a = client(API_KEY, 10);
        fake_api_mode(fake, FAKE_REJECT_KEY);
        ck_assert_int_eq(api_perform_test(a, "1001", "Sent", &c), -EACCES);
        ck_assert(strstr(c.error, API_KEY) == NULL);
        api_free(a);
}
END_TEST

START_TEST(test_misbehaving_api)
{
        struct api *a = client(API_KEY, 2);
        struct api_call c;
        char *s = NULL;

        fake_api_mode(fake, FAKE_ERROR);
        ck_assert_int_eq(api_generate_secret(a, &s, &c), -EIO);
        ck_assert_int_eq(c.http_status, 500);
        fake_api_mode(fake, FAKE_MALFORMED);
        ck_assert_int_eq(api_generate_secret(a, &s, &c), -EPROTO);
        ck_assert_str_eq(c.error, "unexpected answer to generate-secret-key");
        ck_assert_int_eq(api_find_webhook(a, "https://x.example/", &s, &c), -EPROTO);
        fake_api_mode(fake, FAKE_HANG);
        ck_assert_int_eq(api_generate_secret(a, &s, &c), -ETIMEDOUT);
        ck_assert_ptr_null(s);
        api_free(a);
}
END_TEST

static void *
stopper(void *arg)
{
        usleep(200 * 1000);
        atomic_store(&stop, true);
        return NULL;
}

/* A stop request ends a call under way, long before its timeout. */
START_TEST(test_stop_interrupts)
{
        struct api *a = client(API_KEY, 60);
        struct api_call c;
        pthread_t t;
        char *s = NULL;

        fake_api_mode(fake, FAKE_HANG);
        ck_assert_int_eq(pthread_create(&t, NULL, stopper, NULL), 0);
        ck_assert_int_eq(api_generate_secret(a, &s, &c), -ECANCELED);
        pthread_join(t, NULL);
        api_free(a);
}
END_TEST

START_TEST(test_tls_verified)
{
        struct api_call c;
        struct api *a;
        char *id = NULL, *other = xasprintf("%s/other", dir), *bad;

        /* A CA that did not sign the API's certificate: no call gets through. */
        ck_assert_int_eq(mkdir(other, 0700), 0);
        t_make_cert(other, 30);
        bad = xasprintf("%s/cert.pem", other);
        a = api_new(base, API_KEY, bad, 10, &stop);
        ck_assert_int_eq(api_find_webhook(a, "https://x.example/", &id, &c), -ECONNREFUSED);
        ck_assert_int_eq(fake_api_counts(fake).lists, 0);
        api_free(a);
        /* Nothing listens: unreachable. */
        a = api_new("https://127.0.0.1:1/v2", API_KEY, cert, 10, &stop);
        ck_assert_int_eq(api_find_webhook(a, "https://x.example/", &id, &c), -ECONNREFUSED);
        ck_assert_int_eq(c.http_status, 0);
        ck_assert(strstr(c.error, API_KEY) == NULL);
        api_free(a);
        free(bad);
        free(other);
}
END_TEST

int
main(void)
{
        Suite *s = suite_create("api");
        TCase *tc = tcase_create("api");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_register_and_find);
        tcase_add_test(tc, test_bare_shapes);
        tcase_add_test(tc, test_key_rejected);
        tcase_add_test(tc, test_misbehaving_api);
        tcase_add_test(tc, test_stop_interrupts);
        tcase_add_test(tc, test_tls_verified);
        return t_run(s, tc);
}
