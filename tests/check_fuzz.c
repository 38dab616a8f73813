/* fuzz: every input kept under tests/fuzz/ (the seed and grown corpus, and
 * any crasher found) replayed through the fuzz targets, each in its own
 * process so that a failure names its file; run in every build, so a fixed
 * crash stays fixed without clang. */
#include "config.h"

#include <dirent.h>

#include "fuzz/fuzz.h"
#include "lib.h"

/* Run fn over every file of dir whose name starts with prefix; returns how
 * many there were. */
static size_t
replay(const char *dir, const char *prefix, int (*fn)(const uint8_t *, size_t))
{
        struct dirent **names;
        size_t count = 0;
        int i, n;

        n = scandir(dir, &names, NULL, alphasort);
        if (n < 0)
                return 0;
        for (i = 0; i < n; i++) {
                char *path, *data;
                size_t len = 0;
                int status;
                pid_t pid;

                if (names[i]->d_name[0] == '.' || strncmp(names[i]->d_name, prefix, strlen(prefix)) != 0) {
                        free(names[i]);
                        continue;
                }
                path = xasprintf("%s/%s", dir, names[i]->d_name);
                data = t_slurp(path, &len);
                ck_assert_msg(data != NULL, "cannot read %s", path);
                pid = fork();
                ck_assert_int_ge(pid, 0);
                if (pid == 0) {
                        fn((const uint8_t *) data, len);
                        exit(0);        /* exit, not _exit: LeakSanitizer runs at exit */
                }
                ck_assert_int_eq(waitpid(pid, &status, 0), pid);
                ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                              "%s: the fuzz target failed on it (%s %d)", path,
                              WIFEXITED(status) ? "exit" : "signal",
                              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
                count++;
                free(data);
                free(path);
                free(names[i]);
        }
        free(names);
        return count;
}

static void
replay_target(const char *name, int (*fn)(const uint8_t *, size_t), size_t min_corpus)
{
        char *corpus = xasprintf("%s/corpus/%s", FUZZ_DIR, name);
        char *prefix = xasprintf("%s-", name);
        size_t n, crashers;

        n = replay(corpus, "", fn);
        ck_assert_msg(n >= min_corpus, "%s: %zu inputs, expected at least %zu", corpus, n, min_corpus);
        crashers = replay(FUZZ_DIR "/crashers", prefix, fn);
        fprintf(stderr, "fuzz %s: %zu corpus inputs and %zu crashers replayed\n", name, n, crashers);
        free(prefix);
        free(corpus);
}

START_TEST(test_event_corpus)
{
        replay_target("event", fuzz_event, 10);
}
END_TEST

START_TEST(test_cfg_corpus)
{
        replay_target("cfg", fuzz_cfg, 5);
}
END_TEST

int
main(void)
{
        Suite *s = suite_create("fuzz");
        TCase *tc = tcase_create("replay");

        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_event_corpus);
        tcase_add_test(tc, test_cfg_corpus);
        return t_run(s, tc);
}
