/* util: strict numbers, constant-time compare, UTF-8, time, buffers. */
#include "config.h"

#ifdef HAVE_VALGRIND_MEMCHECK_H
#include <valgrind/memcheck.h>
#endif

#include "lib.h"

START_TEST(test_str_to_i64)
{
        int64_t v = 0;

        ck_assert_int_eq(str_to_i64("0", 1, 0, 10, &v), 0);
        ck_assert_int_eq(v, 0);
        ck_assert_int_eq(str_to_i64("9223372036854775807", 19, INT64_MIN, INT64_MAX, &v), 0);
        ck_assert(v == INT64_MAX);
        ck_assert_int_eq(str_to_i64("-9223372036854775808", 20, INT64_MIN, INT64_MAX, &v), 0);
        ck_assert(v == INT64_MIN);
        ck_assert_int_eq(str_to_i64("9223372036854775808", 19, INT64_MIN, INT64_MAX, &v), -ERANGE);
        ck_assert_int_eq(str_to_i64("11", 2, 0, 10, &v), -ERANGE);
        ck_assert_int_eq(str_to_i64("-1", 2, 0, 10, &v), -EINVAL);
        ck_assert_int_eq(str_to_i64("", 0, 0, 10, &v), -EINVAL);
        ck_assert_int_eq(str_to_i64("-", 1, -5, 10, &v), -EINVAL);
        ck_assert_int_eq(str_to_i64("1 ", 2, 0, 10, &v), -EINVAL);
        ck_assert_int_eq(str_to_i64("+1", 2, 0, 10, &v), -EINVAL);
        ck_assert_int_eq(str_to_i64("1.5", 3, 0, 10, &v), -EINVAL);
        /* the length is respected: "12" of "123" */
        ck_assert_int_eq(str_to_i64("123", 2, 0, 100, &v), 0);
        ck_assert_int_eq(v, 12);
}
END_TEST

START_TEST(test_eq_ct)
{
        ck_assert(str_eq_ct("secret", 6, "secret", 6));
        ck_assert(!str_eq_ct("secreT", 6, "secret", 6));
        ck_assert(!str_eq_ct("secret1", 7, "secret", 6));
        ck_assert(!str_eq_ct("secre", 5, "secret", 6));
        ck_assert(!str_eq_ct("", 0, "secret", 6));
        ck_assert(str_eq_ct("", 0, "", 0));
        /* a prefix of the right length differing only in the last byte */
        ck_assert(!str_eq_ct("secres", 6, "secret", 6));
}
END_TEST

/* No early exit: under valgrind's memcheck, with the bytes of both strings
 * marked undefined, the comparison makes no jump that depends on them (a
 * jump on them is an error memcheck counts). Outside valgrind it says so and
 * checks nothing more; .ci/run runs this suite under memcheck. */
START_TEST(test_eq_ct_no_branch)
{
#ifdef HAVE_VALGRIND_MEMCHECK_H
        char a[] = "Kx9PqW2mZt7RvB4nLs1e", b[] = "Kx9PqW2mZt7RvB4nLs1f", c[] = "xx";
        unsigned before;
        bool r[3];

        if (!RUNNING_ON_VALGRIND) {
                printf("check_util: not under valgrind, the constant-time check is left to .ci/run\n");
                return;
        }
        VALGRIND_MAKE_MEM_UNDEFINED(a, sizeof(a));
        VALGRIND_MAKE_MEM_UNDEFINED(b, sizeof(b));
        VALGRIND_MAKE_MEM_UNDEFINED(c, sizeof(c));
        before = VALGRIND_COUNT_ERRORS;
        r[0] = str_eq_ct(a, sizeof(a) - 1, b, sizeof(b) - 1);
        r[1] = str_eq_ct(a, sizeof(a) - 1, a, sizeof(a) - 1);
        r[2] = str_eq_ct(c, sizeof(c) - 1, a, sizeof(a) - 1);
        ck_assert_uint_eq(VALGRIND_COUNT_ERRORS, before);
        VALGRIND_MAKE_MEM_DEFINED(r, sizeof(r));
        ck_assert(!r[0] && r[1] && !r[2]);
#else
        printf("check_util: built without valgrind/memcheck.h, the constant-time check is left out\n");
#endif
}
END_TEST

START_TEST(test_utf8)
{
        ck_assert_uint_eq(utf8_seq_len((const unsigned char *) "a", 1), 1);
        ck_assert_uint_eq(utf8_seq_len((const unsigned char *) "\xc3\xa9", 2), 2);
        ck_assert_uint_eq(utf8_seq_len((const unsigned char *) "\xe2\x82\xac", 3), 3);
        ck_assert_uint_eq(utf8_seq_len((const unsigned char *) "\xf0\x9f\x98\x80", 4), 4);
        ck_assert_uint_eq(utf8_seq_len((const unsigned char *) "\xc3", 1), 0);          /* truncated */
        ck_assert_uint_eq(utf8_seq_len((const unsigned char *) "\xc0\xaf", 2), 0);      /* overlong */
        ck_assert_uint_eq(utf8_seq_len((const unsigned char *) "\xed\xa0\x80", 3), 0);  /* surrogate */
        ck_assert_uint_eq(utf8_seq_len((const unsigned char *) "\xff", 1), 0);
        ck_assert_uint_eq(utf8_seq_len((const unsigned char *) "\x80", 1), 0);
        ck_assert_uint_eq(utf8_seq_len((const unsigned char *) "\xf4\x90\x80\x80", 4), 0); /* > U+10FFFF */
}
END_TEST

START_TEST(test_time_format)
{
        char out[TIME_ISO_LEN];

        time_format_iso(0, out);
        ck_assert_str_eq(out, "1970-01-01T00:00:00.000000Z");
        time_format_iso(INT64_C(1741076141773000), out);
        ck_assert_str_eq(out, "2025-03-04T08:15:41.773000Z");
        time_format_iso(-1, out);
        ck_assert_str_eq(out, "1969-12-31T23:59:59.999999Z");
}
END_TEST

START_TEST(test_buf_and_trim)
{
        struct buf b = { 0 };
        char s[] = " \t value \r\n";
        int i;

        for (i = 0; i < 1000; i++)
                buf_printf(&b, "%d,", i);
        ck_assert_uint_eq(b.len, strlen(b.data));
        ck_assert(strncmp(b.data, "0,1,2,", 6) == 0);
        buf_done(&b);
        ck_assert_str_eq(str_trim(s), "value");
}
END_TEST

START_TEST(test_file_roundtrip)
{
        char *dir = t_tmpdir(), *p = xasprintf("%s/f", dir), *data = NULL;
        struct stat st;
        size_t n;

        ck_assert_int_eq(file_write_atomic(p, "hello", 5, 0600), 0);
        ck_assert_int_eq(stat(p, &st), 0);
        ck_assert_int_eq(st.st_mode & 0777, 0600);
        ck_assert_int_eq(file_read(p, 100, &data, &n), 0);
        ck_assert_uint_eq(n, 5);
        ck_assert_str_eq(data, "hello");
        free(data);
        ck_assert_int_eq(file_read(p, 4, &data, &n), -EFBIG);
        ck_assert_int_eq(file_read(dir, 100, &data, &n), -EISDIR);
        t_rm_rf(dir);
        free(p);
        free(dir);
}
END_TEST

int
main(void)
{
        Suite *s = suite_create("util");
        TCase *tc = tcase_create("util");

        tcase_add_test(tc, test_str_to_i64);
        tcase_add_test(tc, test_eq_ct);
        tcase_add_test(tc, test_eq_ct_no_branch);
        tcase_add_test(tc, test_utf8);
        tcase_add_test(tc, test_time_format);
        tcase_add_test(tc, test_buf_and_trim);
        tcase_add_test(tc, test_file_roundtrip);
        return t_run(s, tc);
}
