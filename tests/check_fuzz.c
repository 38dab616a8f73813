/* fuzz: every input kept under tests/fuzz/ (the seed and grown corpus, and
 * any crasher found) replayed through the fuzz targets, CHUNK inputs to a
 * process (a process each cost ~0.15 s under ASan with LeakSanitizer: 640
 * inputs went past the test's 120 s on a busy machine), the process telling
 * through shared memory which input it is on, so that a failure still names
 * its file; run in every build, so a fixed crash stays fixed without clang. */
#include "config.h"

#include <dirent.h>
#include <sys/mman.h>

#include "fuzz/fuzz.h"
#include "lib.h"

#define CHUNK 32

/* Run fn over every file of dir whose name starts with prefix; returns how
 * many there were. */
static size_t
replay(const char *dir, const char *prefix, int (*fn)(const uint8_t *, size_t))
{
        struct dirent **names;
        char **paths;
        size_t count = 0, k, at;
        size_t *current;
        int i, n, status;
        pid_t pid;

        n = scandir(dir, &names, NULL, alphasort);
        if (n < 0)
                return 0;
        paths = xcalloc((size_t) n + 1, sizeof(*paths));
        for (i = 0; i < n; i++) {
                if (names[i]->d_name[0] != '.' && strncmp(names[i]->d_name, prefix, strlen(prefix)) == 0)
                        paths[count++] = xasprintf("%s/%s", dir, names[i]->d_name);
                free(names[i]);
        }
        free(names);
        current = mmap(NULL, sizeof(*current), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ck_assert(current != MAP_FAILED);
        for (at = 0; at < count; at += CHUNK) {
                pid = fork();
                ck_assert_int_ge(pid, 0);
                if (pid == 0) {
                        for (k = at; k < count && k < at + CHUNK; k++) {
                                size_t len = 0;
                                char *data = t_slurp(paths[k], &len);

                                __atomic_store_n(current, k, __ATOMIC_SEQ_CST);
                                if (data == NULL)
                                        _exit(3);
                                fn((const uint8_t *) data, len);
                                free(data);
                        }
                        exit(0);        /* exit, not _exit: LeakSanitizer runs at exit */
                }
                ck_assert_int_eq(waitpid(pid, &status, 0), pid);
                /* A leak is reported at exit: by one of the chunk's inputs up to the one named. */
                ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                              "%s: the fuzz target failed on it or one before it in its chunk (%s %d)",
                              paths[__atomic_load_n(current, __ATOMIC_SEQ_CST)],
                              WIFEXITED(status) ? "exit" : "signal",
                              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        }
        munmap(current, sizeof(*current));
        for (k = 0; k < count; k++)
                free(paths[k]);
        free(paths);
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
