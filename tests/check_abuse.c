/* Abuse of a running slhookd with its default limits: many slow
 * connections from one address. */
#include "config.h"

#include <poll.h>
#include <sys/resource.h>

#include "daemon.h"

#define SLOW 500

/* Whether the daemon has closed fd (EOF or reset); never blocks. */
static bool
closed_by_peer(int fd)
{
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);

        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* Slowloris: 500 connections from 127.0.0.1 trickle the first bytes of a
 * TLS ClientHello, one byte each every 100 ms, never finishing it. The
 * default per-address limit (a quarter of 1,024) has the daemon close the
 * connections past 256 at once, and a sender at 127.0.0.2 is served
 * meanwhile, as quickly as usual. */
START_TEST(test_slowloris)
{
        static const unsigned char hello[] = { 0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0xfc, 0x03, 0x03 };
        struct sockaddr_in sa = { .sin_family = AF_INET };
        struct rlimit rl;
        int fds[SLOW], i, round, open_now = 0;
        int64_t t0, served_us = -1;
        CURL *h;

        ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
        if (rl.rlim_cur < 2 * SLOW) {
                rl.rlim_cur = rl.rlim_max;
                ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
        }
        daemon_start("", "");
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t) d.port);
        for (i = 0; i < SLOW; i++) {
                fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                ck_assert_int_ge(fds[i], 0);
                ck_assert_msg(connect(fds[i], (struct sockaddr *) &sa, sizeof(sa)) == 0, "connect %d: %s", i,
                              strerror(errno));
        }
        for (round = 0; round < (int) sizeof(hello); round++) {
                for (i = 0; i < SLOW; i++)
                        if (fds[i] >= 0 && (closed_by_peer(fds[i]) ||
                                            send(fds[i], &hello[round], 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1)) {
                                close(fds[i]);
                                fds[i] = -1;
                        }
                if (round == 5) {
                        struct resp r;
                        char *body = t_data("queued.json");

                        h = client();
                        curl_easy_setopt(h, CURLOPT_INTERFACE, "host!127.0.0.2");
                        t0 = time_mono_us();
                        r = request(h, "POST", "/socketlabs/events", body, strlen(body), "application/json");
                        served_us = time_mono_us() - t0;
                        ASSERT_STATUS(r, 200);
                        resp_done(&r);
                        curl_easy_cleanup(h);
                        free(body);
                }
                usleep(100 * 1000);
        }
        for (i = 0; i < SLOW; i++)
                if (fds[i] >= 0) {
                        open_now += !closed_by_peer(fds[i]);
                        close(fds[i]);
                }
        printf("check_abuse: %d of %d slow connections still open after %zu bytes; "
               "a sender from 127.0.0.2 served in %lld ms\n", open_now, SLOW, sizeof(hello),
               (long long) served_us / 1000);
        ck_assert_int_le(open_now, 256);
        ck_assert_int_ge(open_now, 200);                /* the slow ones are not all cut off either */
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE peer = '127.0.0.2'"), 1);
        ck_assert_int_eq(daemon_stop(), 0);
}
END_TEST

int
main(void)
{
        Suite *s = suite_create("abuse");
        TCase *tc = tcase_create("abuse");

        tcase_add_unchecked_fixture(tc, make_certs, drop_certs);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_slowloris);
        return t_run(s, tc);
}
