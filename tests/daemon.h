/* The real slhookd for end-to-end tests: a config and certificate of its
 * own in a temporary folder, started with a 127.0.0.1 socket this process
 * binds and passes as a socket-activation fd, and libcurl clients that talk
 * TLS to it. Include once, after lib.h. */
#ifndef SLHOOKD_TESTS_DAEMON_H
#define SLHOOKD_TESTS_DAEMON_H

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/un.h>

#include <curl/curl.h>

#include "lib.h"

struct daemon {
        pid_t pid;
        unsigned port;
        int fd;                 /* the listening socket, until the daemon has it */
        char *dir, *conf, *db, *log, *cert;
        const char *tls_dir;    /* the certificate and key, when not certdir's */
        bool plain;             /* no TLS: plain HTTP on 127.0.0.1 */
        const char *header;     /* more request header lines ('\n' between them), or NULL */
        const char *api_key;    /* a secret too, when the test has one */
        const char *store;      /* more [store] lines (backend, dsn), or NULL */
        unsigned nofile;        /* RLIMIT_NOFILE (soft and hard) for the daemon; 0: as inherited */
};

/* The secrets a daemon of this harness holds. */
#define SECRET_2 "rotated-previous-secret"

/* The journal MESSAGE_ID of "ready". */
#define READY_ID "\"message_id\":\"ab2a6aadb4bd4002a0e5b4ea49d975d1\""

static char *certdir;           /* shared certificates, made once */
static struct daemon d;

static inline void
make_certs(void)
{
        char *expired;

        certdir = t_tmpdir();
        t_make_cert(certdir, 30);
        expired = xasprintf("%s/expired", certdir);
        ck_assert_int_eq(mkdir(expired, 0700), 0);
        t_make_cert(expired, -1);
        free(expired);
        curl_global_init(CURL_GLOBAL_DEFAULT);
}

static inline void
drop_certs(void)
{
        t_rm_rf(certdir);
        free(certdir);
}

static inline char *
file_in(const char *name)
{
        return xasprintf("%s/%s", d.dir, name);
}

/* The configuration; cert_dir and key_dir pick the certificate and key
 * under certdir: "expired/" for the expired pair, "" for the good one. */
static inline void
write_conf_tls(const char *cert_dir, const char *key_dir, const char *server_extra, const char *sections_extra)
{
        const char *dir = d.tls_dir ? d.tls_dir : certdir;
        char *tls = d.plain ? xstrdup("") : xasprintf("tls_cert = %s/%scert.pem\ntls_key = %s/%skey.pem\n",
                                                      dir, cert_dir, dir, key_dir);
        char *text = xasprintf("[server]\n"
                               "listen = 127.0.0.1:1\n"
                               "%s"
                               "threads = 2\n"
                               "%s\n"
                               "[endpoint main]\n"
                               "path = /socketlabs/events\n"
                               "secret_file = secret\n"
                               "%s\n"
                               "[store]\n"
                               "%s"
                               "database = %s\n"
                               "[log]\n"
                               "format = json\n",
                               tls, server_extra, sections_extra, d.store ? d.store : "", d.db);

        t_write(d.conf, text);
        free(text);
        free(tls);
}

static inline void
write_conf(const char *server_extra, const char *sections_extra)
{
        write_conf_tls("", "", server_extra, sections_extra);
}

/* How many times needle occurs in the log. */
static inline int
log_count(const char *needle)
{
        size_t n = 0, len = strlen(needle);
        char *s = t_slurp(d.log, &n), *p = s;
        int count = 0;

        while (s && (p = memmem(p, n - (size_t) (p - s), needle, len)) != NULL) {
                count++;
                p += len;
        }
        free(s);
        return count;
}

/* Whether the log holds a line with this message id. */
static inline int
log_has(const char *needle)
{
        return log_count(needle) > 0;
}

/* Wait (bounded: seconds) until the daemon in d has logged needle; else
 * the test fails naming it. */
static inline void
wait_log(const char *needle, unsigned seconds)
{
        unsigned i;

        for (i = 0; i < seconds * 100 && !log_has(needle); i++)
                usleep(10 * 1000);
        ck_assert_msg(log_has(needle), "no '%s' in %s after %u s", needle, d.log, seconds);
}

/* A port nothing listens on, for a program that binds it itself. It is
 * taken below the kernel's ephemeral range, so no connect() or bind() to port
 * 0 anywhere on the machine can take it between this check and that bind. */
static inline unsigned
free_port(void)
{
        struct sockaddr_in sa = { .sin_family = AF_INET };
        unsigned lo = 32768, hi = 60999, span, first, i;
        FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");

        if (f != NULL) {
                if (fscanf(f, "%u %u", &lo, &hi) != 2)
                        lo = 32768;
                fclose(f);
        }
        ck_assert_msg(lo > 11024, "the ephemeral port range starts too low: %u", lo);
        span = lo - 11024;                              /* ports 11024 .. lo-1 */
        first = (unsigned) getpid() * 7919u % span;     /* parallel tests start apart */
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        for (i = 0; i < span; i++) {
                int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

                ck_assert_int_ge(fd, 0);
                sa.sin_port = htons((uint16_t) (11024 + (first + i) % span));
                ok = bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0;
                close(fd);
                if (ok)
                        return ntohs(sa.sin_port);
        }
        ck_abort_msg("no free port below %u", lo);
        return 0;
}

/* Print why and the end of the daemon's log (the fixture deletes the log:
 * the cause stays on record). */
static inline void
log_tail(const char *why)
{
        size_t n = 0;
        char *log = t_slurp(d.log, &n), *tail = log;

        if (log && n > 4000 && (tail = strchr(log + n - 4000, '\n')) == NULL)
                tail = log + n - 4000;
        fprintf(stderr, "%s; the end of its log:\n%s\n", why, tail ? tail : "(none)");
        free(log);
}

static inline void daemon_rebind(void);

/* The daemon's folder and its listening socket on 127.0.0.1 (so its port is
 * known before it starts); daemon_start does this when it was not done. */
static inline void
daemon_listen(void)
{
        char *secret;

        d.dir = t_tmpdir();
        d.conf = file_in("slhookd.conf");
        d.db = file_in("events.db");
        d.log = file_in("slhookd.log");
        d.cert = xasprintf("%s/cert.pem", certdir);
        secret = file_in("secret");
        t_write(secret, T_SECRET "\n" SECRET_2 "\n");
        free(secret);
        daemon_rebind();
}

/* A new listening socket (and port) for the next start in the same folder,
 * as after a crash. */
static inline void
daemon_rebind(void)
{
        struct sockaddr_in sa = { .sin_family = AF_INET };
        socklen_t sl = sizeof(sa);
        int fd;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(fd, 256), 0);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *) &sa, &sl), 0);
        d.port = ntohs(sa.sin_port);
        d.fd = fd;
}

static inline void daemon_spawn(const char *server_extra, const char *sections_extra, bool wait_ready);

/* In a child: become slhookd with stdin in_fd, stdout and stderr out_fd, and
 * listen_fd as its socket-activation fd 3. */
static inline void __attribute__((noreturn))
daemon_exec(int in_fd, int out_fd, int listen_fd)
{
        char pid[32];

        dup2(in_fd, 0);
        dup2(out_fd, 1);
        dup2(out_fd, 2);
        dup2(listen_fd, 3);                     /* clears CLOEXEC on the copy */
        snprintf(pid, sizeof(pid), "%ld", (long) getpid());
        setenv("LISTEN_FDS", "1", 1);
        setenv("LISTEN_PID", pid, 1);
        unsetenv("JOURNAL_STREAM");
        if (d.nofile) {
                struct rlimit rl = { d.nofile, d.nofile };

                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        _exit(126);
        }
        execl(SLHOOKD_BIN, "slhookd", "-c", d.conf, (char *) NULL);
        _exit(127);
}

static inline void
daemon_start(const char *server_extra, const char *sections_extra)
{
        daemon_spawn(server_extra, sections_extra, true);
}

/* Start it for a test that expects it to refuse to start. */
static inline void
daemon_start_expect_exit(const char *server_extra, const char *sections_extra)
{
        daemon_spawn(server_extra, sections_extra, false);
}

static inline void
daemon_spawn(const char *server_extra, const char *sections_extra, bool wait_ready)
{
        int fd, i, status, ready;

        if (d.port == 0)
                daemon_listen();
        fd = d.fd;
        d.fd = -1;
        ready = log_count(READY_ID);
        /* "@PORT@" in the extra sections is the daemon's port. */
        {
                struct buf b = { 0 };
                const char *p = sections_extra, *at;
                char port[16];

                snprintf(port, sizeof(port), "%u", d.port);
                buf_puts(&b, "");
                while ((at = strstr(p, "@PORT@")) != NULL) {
                        buf_append(&b, p, (size_t) (at - p));
                        buf_puts(&b, port);
                        p = at + 6;
                }
                buf_puts(&b, p);
                write_conf(server_extra, b.data);
                buf_done(&b);
        }

        d.pid = fork();
        ck_assert_int_ge(d.pid, 0);
        if (d.pid == 0) {
                int out = open(d.log, O_WRONLY | O_CREAT | O_APPEND, 0600);
                int null = open("/dev/null", O_RDONLY);

                prctl(PR_SET_PDEATHSIG, SIGKILL);       /* never outlive a failed test */
                setenv("LIBC_FATAL_STDERR_", "1", 1);   /* glibc's abort messages into the log */
                daemon_exec(null, out, fd);
        }
        close(fd);
        if (!wait_ready)
                return;
        /* Wait for the "ready" line (bounded), or for an early exit. */
        for (i = 0; i < 1000; i++) {
                if (log_count(READY_ID) > ready)
                        return;
                ck_assert_msg(waitpid(d.pid, &status, WNOHANG) == 0, "slhookd exited at start-up");
                usleep(10000);
        }
        log_tail("slhookd did not get ready in 10 s");
        ck_abort_msg("slhookd did not get ready in 10 s");
}

/* The exit status of the daemon, once it ends (after a signal the caller
 * sent). Anything but a clean exit prints the end of the daemon's log,
 * which the fixture deletes: the cause stays on record. */
static inline int
daemon_reap(void)
{
        int status = -1;

        if (d.pid > 0) {
                ck_assert_int_eq(waitpid(d.pid, &status, 0), d.pid);
                d.pid = 0;
                if (status != 0) {
                        char *why = xasprintf("slhookd ended with status %d (%s %d)", status,
                                              WIFSIGNALED(status) ? "signal" : "exit",
                                              WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));

                        log_tail(why);
                        free(why);
                }
        }
        return status;
}

/* SIGTERM and the exit status (daemon_reap). */
static inline int
daemon_stop(void)
{
        if (d.pid > 0)
                kill(d.pid, SIGTERM);
        return daemon_reap();
}

static inline void
setup(void)
{
        memset(&d, 0, sizeof(d));
}

/* The secret in these n bytes, or NULL. */
static inline const char *
secret_in(const char *s, size_t n)
{
        if (t_contains(s, n, T_SECRET))
                return T_SECRET;
        if (t_contains(s, n, SECRET_2))
                return SECRET_2;
        if (d.api_key && t_contains(s, n, d.api_key))
                return d.api_key;
        return NULL;
}

/* After every test: no secret in the database, its WAL or any log. */
static inline void
secrets_scan(void)
{
        const char *suffixes[] = { "", "-wal", "-journal" };
        struct dirent *e;
        size_t i, n;
        DIR *dir;

        for (i = 0; d.db && i < ARRAY_SIZE(suffixes); i++) {
                char *p = xasprintf("%s%s", d.db, suffixes[i]), *s = t_slurp(p, &n);

                ck_assert_msg(s == NULL || secret_in(s, n) == NULL, "a secret is in %s", p);
                free(s);
                free(p);
        }
        if (d.dir == NULL || (dir = opendir(d.dir)) == NULL)
                return;
        while ((e = readdir(dir)) != NULL)
                if (strstr(e->d_name, ".log") != NULL) {
                        char *p = file_in(e->d_name), *s = t_slurp(p, &n);

                        ck_assert_msg(s == NULL || secret_in(s, n) == NULL, "a secret is in %s", p);
                        free(s);
                        free(p);
                }
        closedir(dir);
}

/* SIGKILL the daemon, if it runs, and reap it. */
static inline void
daemon_kill(void)
{
        if (d.pid > 0) {
                kill(d.pid, SIGKILL);
                waitpid(d.pid, NULL, 0);
                d.pid = 0;
        }
}

static inline void
still_running(void)
{
        ck_assert_msg(waitpid(d.pid, NULL, WNOHANG) == 0, "slhookd exited");
}

static inline void
teardown(void)
{
        daemon_kill();
        secrets_scan();
        if (d.dir && !getenv("T_KEEP"))
                t_rm_rf(d.dir);
        free(d.dir);
        free(d.conf);
        free(d.db);
        free(d.log);
        free(d.cert);
}

/* ---- client ---- */

struct resp {
        CURLcode rc;
        long status;
        struct buf body;
        struct buf headers;
        long connects;
};

static inline size_t
on_data(char *p, size_t size, size_t n, void *userdata)
{
        buf_append(userdata, p, size * n);
        return size * n;
}

static inline CURL *
client(void)
{
        CURL *h = curl_easy_init();

        curl_easy_setopt(h, CURLOPT_CAINFO, d.cert);
        curl_easy_setopt(h, CURLOPT_CAPATH, NULL);      /* not the system's store too: 10 ms a handshake */
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        return h;
}

static inline struct resp
request(CURL *h, const char *method, const char *path, const char *body, size_t len, const char *ctype)
{
        struct resp r = { 0 };
        struct curl_slist *hdrs = NULL;
        char *url = xasprintf("%s://127.0.0.1:%u%s", d.plain ? "http" : "https", d.port, path);

        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        if (body) {
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
        }
        if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
                curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        if (ctype) {
                char *line = xasprintf("Content-Type: %s", ctype);

                hdrs = curl_slist_append(hdrs, line);
                free(line);
        }
        /* One more header line, or several separated by '\n'. */
        for (const char *hl = d.header, *nl; hl && *hl; hl = nl ? nl + 1 : NULL) {
                char *line;

                nl = strchr(hl, '\n');
                line = nl ? xstrndup(hl, (size_t) (nl - hl)) : xstrdup(hl);
                hdrs = curl_slist_append(hdrs, line);
                free(line);
        }
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &r.body);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &r.headers);
        buf_append(&r.body, "", 0);
        buf_append(&r.headers, "", 0);
        r.rc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
        /* Only the Validation answer may hold a secret: it echoes it. */
        ck_assert_msg(secret_in(r.body.data, r.body.len) == NULL || (body && strstr(body, "\"Validation\"")),
                      "a secret is in the answer to %s %s: %s", method, path, r.body.data);
        curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &r.connects);
        curl_slist_free_all(hdrs);
        free(url);
        return r;
}

static inline struct resp
post(const char *body)
{
        CURL *h = client();
        struct resp r = request(h, "POST", "/socketlabs/events", body, strlen(body), "application/json");

        curl_easy_cleanup(h);
        return r;
}

/* An event with its own MessageId, padded with an unknown field (kept in
 * raw) to about pad bytes. */
static inline char *
event_json(const char *id, size_t pad)
{
        char *fill = xmalloc(pad + 1), *s;

        memset(fill, 'x', pad);
        fill[pad] = '\0';
        s = xasprintf("{\"Type\":\"Delivered\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"2026-01-01T00:00:00Z\","
                      "\"ServerId\":1,\"MessageId\":\"%s\",\"Address\":\"%s@example.com\",\"Pad\":\"%s\"}",
                      id, id, fill);
        free(fill);
        return s;
}

/* POST bodies[0..n) on n connections at once (curl multi, one thread):
 * status[i] (0 when there was no answer), and retry_after[i] whether the
 * answer had a Retry-After. *done counts the answers as they come. */
static inline void
post_many(size_t n, char *const *bodies, long *status, bool *retry_after, atomic_uint *done)
{
        CURLM *m = curl_multi_init();
        CURL **h = xcalloc(n, sizeof(*h));
        struct buf *hdrs = xcalloc(n, sizeof(*hdrs)), sink = { 0 };
        struct curl_slist *ctype = curl_slist_append(NULL, "Content-Type: application/json");
        char *url = xasprintf("https://127.0.0.1:%u/socketlabs/events", d.port);
        int running = 1, left;
        size_t i;
        CURLMsg *msg;

        curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) n);
        for (i = 0; i < n; i++) {
                h[i] = client();
                curl_easy_setopt(h[i], CURLOPT_URL, url);
                curl_easy_setopt(h[i], CURLOPT_POSTFIELDS, bodies[i]);
                curl_easy_setopt(h[i], CURLOPT_HTTPHEADER, ctype);
                curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, on_data);
                curl_easy_setopt(h[i], CURLOPT_WRITEDATA, &sink);
                curl_easy_setopt(h[i], CURLOPT_HEADERFUNCTION, on_data);
                curl_easy_setopt(h[i], CURLOPT_HEADERDATA, &hdrs[i]);
                curl_easy_setopt(h[i], CURLOPT_TIMEOUT, 60L);
                curl_easy_setopt(h[i], CURLOPT_PRIVATE, (void *) (uintptr_t) i);
                curl_multi_add_handle(m, h[i]);
        }
        while (running) {
                ck_assert_int_eq(curl_multi_perform(m, &running), CURLM_OK);
                while ((msg = curl_multi_info_read(m, &left)) != NULL) {
                        void *p = NULL;

                        if (msg->msg != CURLMSG_DONE)
                                continue;
                        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &p);
                        i = (uintptr_t) p;
                        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status[i]);
                        if (msg->data.result != CURLE_OK)
                                fprintf(stderr, "post_many: request %zu: %s\n", i,
                                        curl_easy_strerror(msg->data.result));
                        retry_after[i] = t_contains(hdrs[i].data, hdrs[i].len, "Retry-After: ");
                        if (done)
                                atomic_fetch_add(done, 1);
                }
                if (running)
                        curl_multi_poll(m, NULL, 0, 100, NULL);
        }
        ck_assert_msg(secret_in(sink.data, sink.len) == NULL, "a secret is in an answer: %s", sink.data);
        for (i = 0; i < n; i++) {
                curl_multi_remove_handle(m, h[i]);
                curl_easy_cleanup(h[i]);
                buf_done(&hdrs[i]);
        }
        curl_multi_cleanup(m);
        curl_slist_free_all(ctype);
        buf_done(&sink);
        free(hdrs);
        free(h);
        free(url);
}

/* A process's peak resident set (VmHWM), in KiB. */
static inline long
peak_rss_kib(pid_t pid)
{
        char *path = xasprintf("/proc/%ld/status", (long) pid), line[256];
        FILE *f = fopen(path, "r");
        long kib = -1;

        ck_assert_ptr_nonnull(f);
        while (fgets(line, sizeof(line), f) != NULL)
                if (strncmp(line, "VmHWM:", 6) == 0)
                        kib = strtol(line + 6, NULL, 10);
        fclose(f);
        free(path);
        ck_assert_int_gt(kib, 0);
        return kib;
}

static inline void
resp_done(struct resp *r)
{
        buf_done(&r->body);
        buf_done(&r->headers);
}

/* POST event_json(id, pad) on h (a new connection when NULL); the status,
 * and whether a Retry-After came. */
static inline long
post_id(CURL *h, const char *id, size_t pad, bool *retry_after)
{
        CURL *own = h ? NULL : client();
        char *body = event_json(id, pad);
        struct resp r = request(h ? h : own, "POST", "/socketlabs/events", body, strlen(body), "application/json");
        long status = r.status;

        if (retry_after)
                *retry_after = t_contains(r.headers.data, r.headers.len, "Retry-After: ");
        resp_done(&r);
        free(body);
        if (own)
                curl_easy_cleanup(own);
        return status;
}

static inline struct resp
post_file(const char *name)
{
        char *body = t_data(name);
        struct resp r = post(body);

        free(body);
        return r;
}

/* GET path from the plain HTTP listener on port ([metrics]): the status (0
 * when there was no answer within 10 s) and the body (allocated). */
static inline long
get_plain(unsigned port, const char *path, char **body)
{
        CURL *h = curl_easy_init();
        struct buf b = { 0 };
        char *url = xasprintf("http://127.0.0.1:%u%s", port, path);
        long status = 0;

        buf_puts(&b, "");
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
        if (curl_easy_perform(h) == CURLE_OK)
                curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(h);
        free(url);
        *body = b.data;
        return status;
}

/* The value of the gauge name in /metrics on port, or -1. */
static inline long
gauge(unsigned port, const char *name)
{
        char *text = NULL, *p;
        long v = -1;

        if (get_plain(port, "/metrics", &text) == 200 && (p = strstr(text, name)) != NULL)
                v = strtol(p + strlen(name), NULL, 10);
        free(text);
        return v;
}

/* WAITERS requests posted at once (from a thread of their own) at a
 * database that does not answer, for the tests of stalls: their statuses,
 * and how many were answered so far. */
#define WAITERS 16

struct waiters {
        pthread_t t;
        char *bodies[WAITERS];
        long status[WAITERS];
        bool retry_after[WAITERS];
        atomic_uint done;
};

static inline void *
waiters_main(void *arg)
{
        struct waiters *w = arg;

        post_many(WAITERS, w->bodies, w->status, w->retry_after, &w->done);
        return NULL;
}

/* Post WAITERS events, MessageIds PREFIX-0 ... */
static inline struct waiters *
waiters_start(const char *prefix)
{
        struct waiters *w = xcalloc(1, sizeof(*w));
        int i;

        for (i = 0; i < WAITERS; i++) {
                char id[32];

                snprintf(id, sizeof(id), "%s-%d", prefix, i);
                w->bodies[i] = event_json(id, 100);
        }
        ck_assert_int_eq(pthread_create(&w->t, NULL, waiters_main, w), 0);
        return w;
}

/* Wait (10 s at most) until every request waits for the writer, as
 * /metrics on port counts them, or was answered already (a transaction
 * that ran out of time before the last ones were read); *first (when not
 * NULL): when the first one waited. */
static inline void
waiters_ready(struct waiters *w, unsigned port, int64_t *first)
{
        long waiting = 0;
        int i;

        if (first)
                *first = 0;
        for (i = 0; i < 1000 && (waiting = gauge(port, "\nslhookd_queue_depth ")) + atomic_load(&w->done) < WAITERS;
             i++) {
                if (first && waiting > 0 && *first == 0)
                        *first = time_mono_us();
                usleep(10 * 1000);
        }
        ck_assert_msg(waiting + atomic_load(&w->done) == WAITERS, "%ld of %d requests wait for the writer, %u answered",
                      waiting, WAITERS, atomic_load(&w->done));
        if (first && *first == 0)
                *first = time_mono_us();
}

/* Wait for every answer (seconds at most) and count them: 503 with
 * Retry-After, and 200. */
static inline void
waiters_answers(struct waiters *w, int seconds, int *n503, int *n200)
{
        int i;

        for (i = 0; i < seconds * 100 && atomic_load(&w->done) < WAITERS; i++)
                usleep(10 * 1000);
        ck_assert_msg(atomic_load(&w->done) == WAITERS, "%u of %d answered in %d s", atomic_load(&w->done), WAITERS,
                      seconds);
        pthread_join(w->t, NULL);
        *n503 = *n200 = 0;
        for (i = 0; i < WAITERS; i++) {
                *n503 += w->status[i] == 503 && w->retry_after[i];
                *n200 += w->status[i] == 200;
        }
}

static inline void
waiters_free(struct waiters *w)
{
        int i;

        for (i = 0; i < WAITERS; i++)
                free(w->bodies[i]);
        free(w);
}

/* A datagram socket standing in for systemd's NOTIFY_SOCKET. */
static inline int
notify_socket(void)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char *path;
        int fd;

        if (d.port == 0)
                daemon_listen();
        path = file_in("notify");
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        ck_assert_int_ge(fd, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        setenv("NOTIFY_SOCKET", path, 1);
        free(path);
        return fd;
}

/* Whether a notification so far holds needle. */
static inline bool
notified(int fd, const char *needle)
{
        char msg[4096];
        ssize_t n;
        bool found = false;

        while ((n = recv(fd, msg, sizeof(msg) - 1, 0)) > 0) {
                msg[n] = '\0';
                found |= strstr(msg, needle) != NULL;
        }
        return found;
}

/* Wait (bounded, 10 s) for a notification holding needle; whether one came.
 * *pings counts the WATCHDOG=1 seen meanwhile, when pings is not NULL. */
static inline bool
await_notification(int fd, const char *needle, int *pings)
{
        char msg[4096];
        ssize_t n;
        int i;

        for (i = 0; i < 1000; i++) {
                while ((n = recv(fd, msg, sizeof(msg) - 1, 0)) > 0) {
                        msg[n] = '\0';
                        if (pings && strstr(msg, "WATCHDOG=1"))
                                (*pings)++;
                        if (strstr(msg, needle))
                                return true;
                }
                usleep(10 * 1000);
        }
        return false;
}

#define q(sql) t_query(d.db, sql)
#define exec_rw(sql) t_exec(d.db, sql)

#define ASSERT_STATUS(r, code) \
        ck_assert_msg((r).status == (code), "status %ld (curl %d), expected %d; body: %s", \
                      (r).status, (int) (r).rc, (code), (r).body.data)

/* POST body (or the test data file name) and check the status. */
static inline void
expect(const char *body, int status)
{
        struct resp r = post(body);

        ASSERT_STATUS(r, status);
        resp_done(&r);
}

static inline void
expect_file(const char *name, int status)
{
        struct resp r = post_file(name);

        ASSERT_STATUS(r, status);
        resp_done(&r);
}

/* ---- the HTTP table of DESIGN.md section 4 ---- */

#endif
