/* slhookctl run from a test: its exit status, stdout and stderr. Include
 * after daemon.h (file_in) in a test that links SLHOOKCTL_BIN's path. */
#ifndef SLHOOKD_TESTS_CTL_H
#define SLHOOKD_TESTS_CTL_H

#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>

struct ctl {
        int status;
        char *out, *err;
};

/* Run slhookctl with args (shell words), env before it (may be ""). */
static inline struct ctl
ctl_env(const char *env, const char *args)
{
        struct ctl c;
        char *o = file_in("ctl.out"), *e = file_in("ctl.err");
        char *cmd = xasprintf("%s %s %s > '%s' 2> '%s'", env, SLHOOKCTL_BIN, args, o, e);
        int r = system(cmd);

        c.status = WIFEXITED(r) ? WEXITSTATUS(r) : -1;
        c.out = t_slurp(o, NULL);
        c.err = t_slurp(e, NULL);
        free(cmd);
        free(o);
        free(e);
        return c;
}

/* ctl_env with the arguments formatted from fmt and ap. */
static inline struct ctl __attribute__((format(printf, 2, 0)))
ctl_envv(const char *env, const char *fmt, va_list ap)
{
        char *args;
        struct ctl c;

        ck_assert_int_ge(vasprintf(&args, fmt, ap), 0);
        c = ctl_env(env, args);
        free(args);
        return c;
}

static inline struct ctl
ctl(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static inline struct ctl
ctl(const char *fmt, ...)
{
        va_list ap;
        struct ctl c;

        va_start(ap, fmt);
        c = ctl_envv("", fmt, ap);
        va_end(ap);
        return c;
}

static inline void
ctl_done(struct ctl *c)
{
        free(c->out);
        free(c->err);
}

#define ASSERT_OK(c) ck_assert_msg((c).status == 0, "exit %d: %s", (c).status, (c).err)

#endif
