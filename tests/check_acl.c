/* acl: CIDR parse and match, IPv4 and IPv6 edges, mapped addresses. */
#include "config.h"

#include "acl.h"
#include "lib.h"

static struct sockaddr_storage
addr(const char *text)
{
        struct sockaddr_storage ss = { 0 };

        if (strchr(text, ':')) {
                struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &ss;

                s6->sin6_family = AF_INET6;
                ck_assert_int_eq(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
        } else {
                struct sockaddr_in *s4 = (struct sockaddr_in *) &ss;

                s4->sin_family = AF_INET;
                ck_assert_int_eq(inet_pton(AF_INET, text, &s4->sin_addr), 1);
        }
        return ss;
}

static int
match(const char *list, const char *ip)
{
        struct acl *a = acl_new();
        struct sockaddr_storage ss = addr(ip);
        char *err = NULL;
        int r;

        ck_assert_msg(acl_add_list(a, list, &err) == 0, "%s", err ? err : "");
        r = acl_match(a, (struct sockaddr *) &ss);
        acl_free(a);
        return r;
}

START_TEST(test_v4)
{
        ck_assert(match("142.0.176.0/20", "142.0.176.0"));
        ck_assert(match("142.0.176.0/20", "142.0.191.255"));
        ck_assert(!match("142.0.176.0/20", "142.0.192.0"));
        ck_assert(!match("142.0.176.0/20", "142.0.175.255"));
        ck_assert(match("52.152.150.178/32", "52.152.150.178"));
        ck_assert(!match("52.152.150.178/32", "52.152.150.179"));
        ck_assert(match("52.152.150.178", "52.152.150.178"));   /* no prefix = host */
        ck_assert(match("0.0.0.0/0", "203.0.113.9"));
        ck_assert(!match("0.0.0.0/0", "2001:db8::1"));          /* /0 of v4 is v4 only */
        ck_assert(match("10.1.2.3/8", "10.200.0.1"));           /* host bits ignored */
        ck_assert(match("192.168.1.0/25", "192.168.1.127"));
        ck_assert(!match("192.168.1.0/25", "192.168.1.128"));
        ck_assert(match("127.0.0.0/8 ::1/128", "127.9.9.9"));
}
END_TEST

START_TEST(test_v6)
{
        ck_assert(match("::1/128", "::1"));
        ck_assert(!match("::1/128", "::2"));
        ck_assert(match("2001:db8::/32", "2001:db8:ffff::1"));
        ck_assert(!match("2001:db8::/32", "2001:db9::1"));
        ck_assert(match("::/0", "2a00::1"));
        ck_assert(!match("::/0", "10.0.0.1"));
        ck_assert(match("2001:db8::/33", "2001:db8:7fff::1"));
        ck_assert(!match("2001:db8::/33", "2001:db8:8000::1"));
        ck_assert(match("2001:db8::1/128", "2001:db8::1"));
}
END_TEST

START_TEST(test_mapped)
{
        /* A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d. */
        ck_assert(match("142.0.176.0/20", "::ffff:142.0.180.1"));
        ck_assert(!match("142.0.176.0/20", "::ffff:142.0.200.1"));
        ck_assert(match("127.0.0.0/8", "::ffff:127.0.0.1"));
        ck_assert(!match("::1/128", "::ffff:127.0.0.1"));
}
END_TEST

START_TEST(test_star_and_empty)
{
        struct acl *a = acl_new();
        struct sockaddr_storage ss = addr("198.51.100.1");

        ck_assert(!acl_match(a, (struct sockaddr *) &ss));       /* empty matches nothing */
        ck_assert(!acl_match(a, NULL));
        acl_free(a);
        ck_assert(match("*", "198.51.100.1"));
        ck_assert(match("*", "2001:db8::5"));
}
END_TEST

START_TEST(test_bad)
{
        static const char *const bad[] = {
                "142.0.176.0/33", "::1/129", "300.1.1.1", "1.2.3", "abc", "/8", "1.2.3.4/", "1.2.3.4/-1",
                "1.2.3.4/8x", "**", "fe80::1%eth0",
        };
        size_t i;

        for (i = 0; i < ARRAY_SIZE(bad); i++) {
                struct acl *a = acl_new();
                char *err = NULL;

                ck_assert_msg(acl_add(a, bad[i], &err) == -EINVAL, "accepted '%s'", bad[i]);
                ck_assert_ptr_nonnull(strstr(err, bad[i]));
                free(err);
                acl_free(a);
        }
}
END_TEST

START_TEST(test_format)
{
        struct sockaddr_storage ss = addr("::ffff:52.152.150.178");
        char out[ACL_ADDR_LEN];

        acl_format_addr((struct sockaddr *) &ss, out);
        ck_assert_str_eq(out, "52.152.150.178");
        ss = addr("2001:db8::7");
        acl_format_addr((struct sockaddr *) &ss, out);
        ck_assert_str_eq(out, "2001:db8::7");
}
END_TEST

int
main(void)
{
        Suite *s = suite_create("acl");
        TCase *tc = tcase_create("acl");

        tcase_add_test(tc, test_v4);
        tcase_add_test(tc, test_v6);
        tcase_add_test(tc, test_mapped);
        tcase_add_test(tc, test_star_and_empty);
        tcase_add_test(tc, test_bad);
        tcase_add_test(tc, test_format);
        return t_run(s, tc);
}
