/* Storage faults that need root to make: a full filesystem (a small tmpfs
 * this test mounts) and database files the filesystem refuses to write
 * (chattr +i). Exit 77 (skipped) when not root. */
#include "config.h"

#include <sys/mount.h>
#include <sys/statvfs.h>

#include "daemon.h"

static char *fs;                /* the tmpfs mount point, while mounted */

static void
root_teardown(void)
{
        daemon_kill();          /* before the umount: its files are there */
        if (fs) {
                secrets_scan();
                umount2(fs, MNT_DETACH);
                free(fs);
                fs = NULL;
        }
        teardown();
}

/* The database on a 16 MiB tmpfs that fills up: 503 + Retry-After while it
 * is full, every acknowledged event kept, and intake back by itself once
 * space is freed, without a restart. */
START_TEST(test_disk_full)
{
        char *filler, *cmd, id[32];
        unsigned acked = 0, refused = 0, i;
        struct statvfs sv;
        bool retry_after = false;
        CURL *h;

        daemon_listen();
        fs = file_in("fs");
        ck_assert_int_eq(mkdir(fs, 0700), 0);
        ck_assert_msg(mount("tmpfs", fs, "tmpfs", 0, "size=16m") == 0, "mount tmpfs: %s", strerror(errno));
        free(d.db);
        d.db = xasprintf("%s/events.db", fs);
        daemon_start("", "");
        expect_file("queued.json", 200);

        /* Leave 2 MiB. */
        ck_assert_int_eq(statvfs(fs, &sv), 0);
        filler = xasprintf("%s/filler", fs);
        cmd = xasprintf("head -c %llu /dev/zero > '%s'",
                        (unsigned long long) sv.f_bavail * sv.f_frsize - 2 * 1024 * 1024, filler);
        ck_assert_int_eq(system(cmd), 0);
        free(cmd);

        h = client();
        for (i = 0; i < 5000 && refused == 0; i++) {
                long status;

                snprintf(id, sizeof(id), "f%u", i);
                status = post_id(h, id, 4096, &retry_after);
                ck_assert_msg(status == 200 || status == 503, "event %u: status %ld", i, status);
                acked += status == 200;
                refused += status == 503;
        }
        ck_assert_msg(refused == 1 && retry_after, "no 503 + Retry-After after %u events", i);
        ck_assert(log_has("storage failed, answering 503"));
        ck_assert(log_has("database or disk is full"));
        /* Still full: still refused, still running. */
        ck_assert_int_eq(post_id(h, "again", 4096, NULL), 503);
        still_running();

        ck_assert_int_eq(unlink(filler), 0);
        snprintf(id, sizeof(id), "f%u", i - 1);         /* the refused one, retried */
        ck_assert_int_eq(post_id(h, id, 4096, NULL), 200);
        ck_assert_int_eq(post_id(h, "again", 4096, NULL), 200);
        ck_assert(log_has("storage works again"));
        curl_easy_cleanup(h);
        printf("check_root: disk full after %u events of 4 KB; intake resumed once space was back\n", acked);

        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id LIKE 'f%'"), acked + 1);
        ck_assert_int_eq(q("SELECT count(DISTINCT message_id) FROM events WHERE message_id LIKE 'f%'"), acked + 1);
        ck_assert_int_eq(daemon_stop(), 0);
        ck_assert_int_eq(q("SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"), 1);
        free(filler);
}
END_TEST

/* Whether chattr could set or clear the immutable flag of these files. */
static bool
chattr(const char *flag)
{
        char *cmd = xasprintf("chattr %s '%s' '%s-wal' 2>/dev/null", flag, d.db, d.db);
        bool ok = system(cmd) == 0;

        free(cmd);
        return ok;
}

/* The database and its -wal made immutable underneath: 503s and a log line
 * that names the file and the system's error, no crash; writable again,
 * stored again. */
START_TEST(test_unwritable)
{
        CURL *h;

        daemon_start("", "");
        h = client();
        ck_assert_int_eq(post_id(h, "w1", 0, NULL), 200);
        if (!chattr("+i")) {
                printf("check_root: this filesystem has no immutable flag; test_unwritable skipped\n");
                curl_easy_cleanup(h);
                return;
        }
        ck_assert_int_eq(post_id(h, "w2", 0, NULL), 503);
        ck_assert_int_eq(post_id(h, "w3", 0, NULL), 503);
        still_running();
        ck_assert(log_has("storage failed, answering 503: "));
        ck_assert(log_has("(Operation not permitted)"));
        ck_assert(chattr("-i"));
        ck_assert_int_eq(post_id(h, "w2", 0, NULL), 200);
        curl_easy_cleanup(h);
        ck_assert(log_has("storage works again"));
        ck_assert_int_eq(daemon_stop(), 0);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id IN ('w1', 'w2')"), 2);
        ck_assert_int_eq(q("SELECT count(*) FROM events WHERE message_id = 'w3'"), 0);
        ck_assert_int_eq(q("SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"), 1);
}
END_TEST

int
main(void)
{
        Suite *s = suite_create("root");
        TCase *tc = tcase_create("root");

        if (geteuid() != 0) {
                printf("check_root: needs root (to mount a tmpfs and to chattr); skipped\n");
                return 77;
        }
        tcase_add_unchecked_fixture(tc, make_certs, drop_certs);
        tcase_add_checked_fixture(tc, setup, root_teardown);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, test_disk_full);
        tcase_add_test(tc, test_unwritable);
        return t_run(s, tc);
}
