/* slhookd: receive SocketLabs Event Webhook posts over HTTPS and store them
 * durably in SQLite. This file only wires the modules together: arguments,
 * start-up order, signals, sd_notify and the shutdown order. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <gnutls/gnutls.h>
#include <systemd/sd-daemon.h>

#include "cfg.h"
#include "forward.h"
#include "watch.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "mgmt.h"
#include "store.h"
#include "tls.h"
#include "util.h"

#define DRAIN_SECONDS 20

static const char *arg_config = CFG_DEFAULT_PATH;
static const char *arg_init;
static bool arg_check;

static void
usage(FILE *f)
{
        fprintf(f,
                "Usage: slhookd [-c FILE] [--check]\n"
                "       slhookd --init DIR\n"
                "Receive SocketLabs Event Webhook posts over HTTPS and store them in SQLite.\n\n"
                "  -c, --config FILE  configuration file (default %s)\n"
                "      --check        validate the configuration, certificate and key, then exit\n"
                "      --init DIR     create DIR with a self-signed certificate, a new secret and a\n"
                "                     configuration for a local trial, then exit\n"
                "  -V, --version      print the version and exit\n"
                "  -h, --help         print this help and exit\n",
                CFG_DEFAULT_PATH);
}

static int
parse_args(int argc, char **argv)
{
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "check", no_argument, NULL, 'k' },
                { "init", required_argument, NULL, 'i' },
                { "version", no_argument, NULL, 'V' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        int c;

        while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        arg_config = optarg;
                        break;
                case 'k':
                        arg_check = true;
                        break;
                case 'i':
                        arg_init = optarg;
                        break;
                case 'V':
                        printf("slhookd %s\n", PACKAGE_VERSION);
                        return 0;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "slhookd: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

/* --init DIR: everything a local trial needs; existing files are kept. */
static int
init_dir(const char *prog, const char *dir)
{
        char *cert = xasprintf("%s/cert.pem", dir), *key = xasprintf("%s/key.pem", dir);
        char *secret = xasprintf("%s/secret", dir), *conf = xasprintf("%s/slhookd.conf", dir);
        char *err = NULL, *ctl = NULL, s[33];
        const char *slash;
        int r = 0;

        if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
                fprintf(stderr, "slhookd: cannot create %s: %s\n", dir, strerror(errno));
                r = -errno;
                goto out;
        }
        if (access(cert, F_OK) < 0 || access(key, F_OK) < 0) {
                r = tls_generate_self_signed(cert, key, 365, &err);
                if (r < 0)
                        goto fail;
        }
        if (access(secret, F_OK) < 0) {
                if ((r = tls_random_secret(s, 32)) < 0) {
                        err = xstrdup("cannot generate a secret");
                        goto fail;
                }
                s[32] = '\n';
                r = file_write_atomic(secret, s, 33, 0600);
                explicit_bzero(s, sizeof(s));
                if (r < 0) {
                        err = xasprintf("%s: %s", secret, strerror(-r));
                        goto fail;
                }
        }
        if (access(conf, F_OK) < 0) {
                static const char text[] =
                        "; slhookd configuration for a local trial, written by \"slhookd --init\".\n"
                        "; Relative paths are taken relative to this file's folder.\n"
                        "[server]\n"
                        "listen = 127.0.0.1:8443\n"
                        "tls_cert = cert.pem\n"
                        "tls_key = key.pem\n"
                        "\n"
                        "[endpoint main]\n"
                        "path = /socketlabs/events\n"
                        "secret_file = secret\n"
                        "\n"
                        "[store]\n"
                        "database = events.db\n"
                        "\n"
                        "[log]\n"
                        "format = text\n";

                if ((r = file_write_atomic(conf, text, sizeof(text) - 1, 0644)) < 0) {
                        err = xasprintf("%s: %s", conf, strerror(-r));
                        goto fail;
                }
        }
        /* slhookctl beside this slhookd (the build tree), else on PATH. */
        slash = strrchr(prog, '/');
        ctl = slash ? xasprintf("%.*s/slhookctl", (int) (slash - prog), prog) : NULL;
        if (ctl && access(ctl, X_OK) < 0) {
                free(ctl);
                ctl = NULL;
        }
        if (ctl == NULL)
                ctl = xstrdup("slhookctl");
        printf("slhookd: %s/ holds cert.pem, key.pem, secret and slhookd.conf\n\n"
               "Start it:\n"
               "  %s -c %s\n\n"
               "Post a sample event (from another terminal):\n"
               "  curl --cacert %s https://127.0.0.1:8443/socketlabs/events \\\n"
               "    -H 'Content-Type: application/json' \\\n"
               "    -d '{\"Type\":\"Delivered\",\"DateTime\":\"2026-01-31T10:00:00.1234567Z\",\"ServerId\":40111,"
               "\"MessageId\":\"hello-1\",\"MailingId\":\"trial\",\"Address\":\"alice@example.net\","
               "\"Response\":\"250 2.0.0 OK\",\"SecretKey\":\"'\"$(cat %s)\"'\"}'\n\n"
               "See it stored:\n"
               "  sqlite3 -header -column %s/events.db "
               "'SELECT id, received_at, type, message_id, address FROM events'\n"
               "  %s -c %s timeline --message-id hello-1\n",
               dir, prog, conf, cert, secret, dir, ctl, conf);
        goto out;
fail:
        fprintf(stderr, "slhookd: %s\n", err);
        free(err);
out:
        free(cert);
        free(key);
        free(secret);
        free(conf);
        free(ctl);
        return r;
}

/* The listening socket systemd passed, -1 when not socket-activated. */
static int
activated_socket(char **reterr)
{
        int n = sd_listen_fds(1);

        if (n < 0) {
                *reterr = xasprintf("socket activation: %s", strerror(-n));
                return n;
        }
        if (n == 0)
                return -1;
        if (n > 1) {
                *reterr = xasprintf("socket activation: %d sockets passed, slhookd takes one", n);
                return -E2BIG;
        }
        if (sd_is_socket_inet(SD_LISTEN_FDS_START, AF_UNSPEC, SOCK_STREAM, 1, 0) <= 0) {
                *reterr = xstrdup("socket activation: the passed descriptor is not a listening TCP socket");
                return -EINVAL;
        }
        return SD_LISTEN_FDS_START;
}

/* The watchdog: WATCHDOG=1 only while both the writer and the listener make
 * progress (each is idle, or finished something since the last tick). A
 * wedged one stops the pings, so that systemd restarts the service. */
struct watchdog {
        uint64_t batches, answered;
        bool stalled;
};

static void
watchdog_tick(struct watchdog *w, struct store *s, struct http *h, int64_t tick_us, bool ping)
{
        uint64_t batches, answered;
        unsigned waiting;
        bool idle, writer_ok, listener_ok;

        store_progress(s, &batches, &idle);
        http_progress(h, &answered, &waiting);
        writer_ok = idle || batches != w->batches;
        listener_ok = waiting == 0 || answered != w->answered;
        w->batches = batches;
        w->answered = answered;
        metrics_health(writer_ok, listener_ok);
        if (writer_ok && listener_ok) {
                char summary[160];

                if (ping)
                        (void) sd_notify(0, "WATCHDOG=1");
                metrics_summary(summary, sizeof(summary));
                (void) sd_notifyf(0, "STATUS=%s", summary);
                w->stalled = false;
                return;
        }
        if (!w->stalled)
                log_full(LOG_WARNING, LOG_MID_GENERAL, NULL, "the %s has made no progress for %lld ms; "
                         "the watchdog is no longer fed", writer_ok ? "listener" : "writer",
                         (long long) tick_us / 1000);
        (void) sd_notifyf(0, "STATUS=stalled: the %s has made no progress for %lld ms",
                          writer_ok ? "listener" : "writer", (long long) tick_us / 1000);
        w->stalled = true;
}

/* Two optional settings are the same. */
static bool
same(const char *a, const char *b)
{
        return a == b || (a && b && strcmp(a, b) == 0);
}

/* SIGHUP: the configuration, certificate, key, secrets and log level again.
 * A new listener serves the same socket at once, and every request from
 * then on is judged by the new configuration, whichever listener serves
 * it; the old listener finishes with its connections in the background
 * (http_tick). Anything wrong with the new files keeps all as it was. */
static void cert_expiry(const struct cfg *cfg, const struct tls_creds *tls);

/* The database the forwarding threads read, as at start (a reload does not
 * move the database: see reload). */
static struct db_conf fw_db;

static void
reload(struct cfg **cfg, struct http *http, struct mgmt **mgmt, struct store *store, struct forwarder **fw,
       struct watch *watch, struct metrics_server *metrics)
{
        struct cfg *nc = NULL, *oc = *cfg;
        struct tls_creds *tls = NULL;
        char *err = NULL;
        size_t i;

        (void) sd_notify(0, "RELOADING=1\nSTATUS=reloading");
        if (cfg_load(arg_config, 0, &nc, &err) < 0 ||
            (nc->tls_cert && tls_load(nc->tls_cert, nc->tls_key, nc->tls_priorities, &tls, &err) < 0) ||
            http_reload(http, nc, tls, &err) < 0) {
                log_full(LOG_ERR, LOG_MID_CONFIG, NULL, "reload refused, the running configuration stays: %s", err);
                metrics_reload(false);
                free(err);
                tls_free(tls);
                cfg_free(nc);
                (void) sd_notify(0, "READY=1\nSTATUS=reload refused; running as before");
                return;
        }
        if (tls)
                cert_expiry(nc, tls);
        metrics_certificate(tls ? tls->expires : 0);
        tls_free(tls);
        metrics_init(nc);
        metrics_reload(true);
        for (i = 0; i < nc->n_warnings; i++)
                log_full(LOG_WARNING, LOG_MID_CONFIG, NULL, "%s", nc->warnings[i]);
        if (strcmp(nc->database, oc->database) != 0 || nc->synchronous_full != oc->synchronous_full ||
            nc->backend != oc->backend || !same(nc->dsn, oc->dsn) ||
            !same(nc->db_password_file, oc->db_password_file) || nc->statement_timeout != oc->statement_timeout ||
            nc->queue_size != oc->queue_size || nc->retention_days != oc->retention_days ||
            strcmp(nc->listen_host, oc->listen_host) != 0 || nc->listen_port != oc->listen_port)
                log_notice("reload: [store] settings and listen take effect at the next restart");
        /* The thread borrows the configuration: it restarts with the new one
         * (it ends an API call or a wait under way, within a bound). */
        *mgmt = mgmt_stop(*mgmt);
        if (nc->api && mgmt_start(nc, http, store, mgmt, &err) < 0) {
                log_full(LOG_ERR, LOG_MID_CONFIG, NULL, "reload: the management thread cannot start: %s", err);
                free(err);
        }
        /* Forwarding restarts too: the cursors are in the database. */
        *fw = forward_stop(*fw);
        if (forward_start(nc, &fw_db, fw, &err) < 0) {
                log_full(LOG_ERR, LOG_MID_CONFIG, NULL, "reload: forwarding cannot start: %s", err);
                free(err);
        }
        watch_reload(watch, &nc->health);
        metrics_dashboard(metrics, &fw_db, &nc->health);
        cfg_free(oc);
        *cfg = nc;
        log_set_level(nc->log_level);
        log_full(LOG_NOTICE, LOG_MID_CONFIG, NULL, "reloaded %s: certificate, key, secrets and log level", nc->file);
        (void) sd_notifyf(0, "READY=1\nSTATUS=reloaded; listening on port %u", http_port(http));
}

/* SIGTERM: stop accepting, let the requests under way finish, then the
 * writer its queue, all within DRAIN_SECONDS (below systemd's
 * TimeoutStopSec). Returns the requests the writer did not finish: a
 * database that does not answer holds them, and they got no answer. */
static unsigned
drain(struct http *h, struct store *s)
{
        int64_t until = time_mono_us() + (int64_t) DRAIN_SECONDS * 1000000;
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        unsigned n;

        http_quiesce(h);
        /* The writer gets the last 5 s at least. */
        while (http_in_flight(h) > 0 && time_mono_us() < until - 5 * 1000000) {
                nanosleep(&ts, NULL);
                (void) http_tick(h);
        }
        if ((n = http_in_flight(h)) > 0)
                log_warning("%u requests still open after %d s; closing them", n, DRAIN_SECONDS - 5);
        /* The writer finishes every queued job (and wakes its connection)
         * before the listener closes what is left. */
        return store_stop(s, (unsigned) ((until - time_mono_us() + 999999) / 1000000));
}

/* Raise the soft limit on descriptors to the hard one (systemd's default
 * soft limit is 1024), then see that max_connections fits. Too few: a
 * warning, or with --check a refusal (-EMFILE). */
static int
fd_limit(const struct cfg *cfg, bool check)
{
        struct rlimit rl;
        unsigned long long need = (unsigned long long) cfg->max_connections + HTTP_OWN_FDS;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return 0;
        if (rl.rlim_cur < rl.rlim_max) {
                rlim_t was = rl.rlim_cur;

                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        rl.rlim_cur = was;      /* e.g. a seccomp filter: keep what we have */
        }
        if (rl.rlim_cur == RLIM_INFINITY || need <= rl.rlim_cur)
                return 0;
        if (check) {
                fprintf(stderr, "slhookd: %s: [server] max_connections = %u needs %llu file descriptors, "
                        "the limit is %llu: raise it (LimitNOFILE= in the unit) or lower max_connections\n",
                        cfg->file, cfg->max_connections, need, (unsigned long long) rl.rlim_cur);
                return -EMFILE;
        }
        log_full(LOG_WARNING, LOG_MID_CONFIG, NULL, "%s: [server] max_connections = %u needs %llu file descriptors, "
                 "the limit is %llu: at most %llu connections are taken (raise LimitNOFILE= or lower max_connections)",
                 cfg->file, cfg->max_connections, need, (unsigned long long) rl.rlim_cur,
                 (unsigned long long) http_connection_limit(cfg->max_connections));
        return 0;
}

/* A certificate that expires soon is worth a warning at every start,
 * reload and check. */
static void
cert_expiry(const struct cfg *cfg, const struct tls_creds *tls)
{
        long long left = tls->expires - (long long) time(NULL);
        char when[TIME_ISO_LEN];

        if (tls->expires < 0 || left >= (long long) TLS_EXPIRY_WARN_DAYS * 86400)
                return;
        time_format_iso((int64_t) tls->expires * 1000000, when);
        if (arg_check)
                fprintf(stderr, "slhookd: warning: %s: certificate expires at %s, in %lld days\n", cfg->tls_cert,
                        when, left / 86400);
        else
                log_full(LOG_WARNING, LOG_MID_CONFIG, NULL, "%s: certificate expires at %s, in %lld days",
                         cfg->tls_cert, when, left / 86400);
}

/* --check: the database can be opened. SQLite: the file read only, or its
 * directory writable when there is no file yet (a directory that does not
 * exist yet is a warning: under systemd StateDirectory= makes it); a
 * failure is a configuration error. PostgreSQL: the password can be read (else a
 * configuration error) and a connection made; a server that cannot be
 * reached now is only a warning, so that a reload (which runs --check
 * first) can still replace a certificate while the database is down, and
 * the service starts and waits for it. Changes nothing. 0 or a negative
 * errno, said on stderr. */
static int
check_database(const struct cfg *cfg)
{
        struct db_conf dbc;
        struct db *db = NULL;
        struct stat st;
        char *pw = NULL, *err = NULL, *dir, *slash;
        int r;

        if (cfg->backend == DB_SQLITE && access(cfg->database, F_OK) < 0) {
                dir = xstrdup(cfg->database);
                slash = strrchr(dir, '/');
                if (slash)
                        *(slash == dir ? slash + 1 : slash) = '\0';
                if (stat(slash ? dir : ".", &st) < 0)
                        r = -errno;
                else if (!S_ISDIR(st.st_mode))
                        r = -ENOTDIR;
                else
                        r = access(slash ? dir : ".", W_OK | X_OK) < 0 ? -errno : 0;
                if (r == -ENOENT) {     /* systemd's StateDirectory= makes it when the unit starts */
                        fprintf(stderr, "slhookd: warning: %s: [store] database: '%s' does not exist yet; "
                                "slhookd creates the file, not the directory\n", cfg->file, dir);
                        r = 0;
                } else if (r < 0)
                        fprintf(stderr, "slhookd: %s: [store] database: cannot create '%s': %s: %s\n", cfg->file,
                                cfg->database, slash ? dir : ".", strerror(-r));
                free(dir);
                return r;
        }
        if ((r = cfg_db_conf(cfg, &dbc, &pw, &err)) < 0) {
                fprintf(stderr, "slhookd: %s\n", err);
                free(err);
                return r;
        }
        r = db_open(&dbc, DB_READONLY, &db, &err);
        freezero(pw, pw ? strlen(pw) : 0);
        /* Opening reads nothing yet: read the schema's version. */
        if (r == 0 && db_schema_version(db) < 0) {
                err = xstrdup(db_errmsg(db));
                r = -EIO;
        }
        if (r < 0 && cfg->backend == DB_POSTGRESQL) {
                fprintf(stderr, "slhookd: warning: %s: [store] dsn: cannot connect now: %s\n", cfg->file, err);
                r = 0;
        } else if (r < 0)
                fprintf(stderr, "slhookd: %s: [store] database: '%s': %s\n", cfg->file, cfg->database, err);
        free(err);
        db_close(db);
        return r;
}

/* While a schema upgrade runs (it may rebuild a table for minutes), tell
 * systemd every few seconds that start-up goes on: more time than its
 * start timeout, and the watchdog fed. */
static void
upgrading(void *arg)
{
        static int64_t last;
        int64_t now = time_mono_us();

        (void) arg;
        if (last != 0 && now - last < 5000000)
                return;
        last = now;
        (void) sd_notify(0, "EXTEND_TIMEOUT_USEC=30000000\nWATCHDOG=1\nSTATUS=upgrading the database schema");
}

int
main(int argc, char **argv)
{
        struct cfg *cfg = NULL;
        struct tls_creds *tls = NULL;
        struct store *store = NULL;
        struct http *http = NULL;
        struct mgmt *mgmt = NULL;
        struct forwarder *fw = NULL;
        struct watch *watch = NULL;
        struct metrics_server *metrics = NULL;
        struct db_conf dbc;
        char *dbpw = NULL;
        struct watchdog wd = { 0 };
        struct timespec tick = { 0 };
        uint64_t watchdog_us = 0;
        int64_t next_check;
        unsigned stuck;
        bool watchdog;
        sigset_t sigs;
        char *err = NULL;
        size_t i;
        int r, fd, sig, status = EXIT_FAILURE;  /* at a fatal start-up error */

        malloc_keep();
        r = parse_args(argc, argv);
        if (r <= 0)
                return r == 0 ? EXIT_SUCCESS : EX_USAGE;
        if (gnutls_global_init() < 0) {
                fprintf(stderr, "slhookd: cannot initialise GnuTLS\n");
                return EXIT_FAILURE;
        }
        if (arg_init)
                return init_dir(argv[0], arg_init) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        if (cfg_load(arg_config, 0, &cfg, &err) < 0) {
                fprintf(stderr, "slhookd: %s\n", err);
                free(err);
                return EX_CONFIG;
        }
        log_setup(arg_check ? LOG_FORMAT_TEXT : cfg->log_format, cfg->log_level);
        metrics_init(cfg);
        for (i = 0; i < cfg->n_warnings; i++)
                log_full(LOG_WARNING, LOG_MID_CONFIG, NULL, "%s", cfg->warnings[i]);
        if (cfg->tls_cert && tls_load(cfg->tls_cert, cfg->tls_key, cfg->tls_priorities, &tls, &err) < 0) {
                if (arg_check)
                        fprintf(stderr, "slhookd: %s\n", err);
                else
                        log_full(LOG_ERR, LOG_MID_CONFIG, NULL, "%s", err);
                free(err);
                cfg_free(cfg);
                return EX_CONFIG;
        }
        r = fd_limit(cfg, arg_check);
        if (r == 0 && tls)
                cert_expiry(cfg, tls);
        metrics_certificate(tls ? tls->expires : 0);
        if (r == 0 && arg_check)
                r = check_database(cfg);
        if (arg_check) {
                if (r == 0)
                        printf("%s: configuration OK (%zu endpoint%s)\n", cfg->file, cfg->n_endpoints,
                               cfg->n_endpoints == 1 ? "" : "s");
                tls_free(tls);
                cfg_free(cfg);
                return r == 0 ? EXIT_SUCCESS : EX_CONFIG;
        }

        /* Signals are taken by this thread only: block them before any thread starts. */
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &sigs, NULL);
        signal(SIGPIPE, SIG_IGN);

        if (cfg_db_conf(cfg, &dbc, &dbpw, &err) < 0) {
                status = EX_CONFIG;
                goto fatal;
        }
        dbc.upgrading = upgrading;
        r = store_open(&dbc, &store, &err);
        fw_db = dbc;
        fw_db.path = dbc.path ? xstrdup(dbc.path) : NULL;
        fw_db.dsn = dbc.dsn ? xstrdup(dbc.dsn) : NULL;
        fw_db.password = dbpw ? xstrdup(dbpw) : NULL;
        fw_db.upgrading = NULL;
        freezero(dbpw, dbpw ? strlen(dbpw) : 0);
        if (r < 0 || store_start(store, cfg->queue_size, cfg->retention_days) < 0)
                goto fatal;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                err = xstrdup("cannot initialise libcurl");
                goto fatal;
        }
        /* Before the listener: a destination's cursor starts after the
         * newest event stored now, so every event acknowledged from the
         * first request on is forwarded. */
        if (forward_start(cfg, &fw_db, &fw, &err) < 0)
                goto fatal;
        fd = activated_socket(&err);
        if (fd < -1 || (fd == -1 && err))
                goto fatal;
        if (http_start(cfg, tls, store, fd, &http, &err) < 0)
                goto fatal;
        tls = tls_free(tls);    /* the listener has its own copy; wipe ours */
        if (cfg->api && (r = mgmt_start(cfg, http, store, &mgmt, &err)) < 0) {
                if (r == -EINVAL)
                        status = EX_CONFIG;     /* the API key cannot be read */
                goto fatal;
        }
        if (watch_start(&cfg->health, &fw_db, &watch, &err) < 0)
                goto fatal;
        /* Without metrics the receiver still does its job: say so, go on. */
        if (cfg->metrics && metrics_start(cfg->metrics_listen, cfg->backend == DB_SQLITE ? cfg->database : NULL, cfg->api, &metrics, &err) < 0) {
                log_full(LOG_ERR, LOG_MID_CONFIG, NULL, "%s", err);
                free(err);
                err = NULL;
        }
        metrics_dashboard(metrics, &fw_db, &cfg->health);

        log_full(LOG_INFO, LOG_MID_START, NULL,
                 "slhookd %s ready: %s://%s:%u%s, %zu endpoint%s, database %s",
                 PACKAGE_VERSION, cfg->tls_cert ? "https" : "http", fd >= 0 ? "(socket)" : cfg->listen_host,
                 http_port(http),
                 cfg->endpoints[0].path, cfg->n_endpoints, cfg->n_endpoints == 1 ? "" : "s", store_name(store));
        (void) sd_notifyf(0, "READY=1\nSTATUS=listening on port %u", http_port(http));

        /* The progress checks run every 5 s (for /healthz), or every half
         * watchdog period when systemd asks for pings. */
        /* While a listener a reload replaced is still there, the loop also
         * wakes every 100 ms to let it go once it is done. */
        watchdog = sd_watchdog_enabled(0, &watchdog_us) > 0;
        if (!watchdog)
                watchdog_us = 10 * 1000000;
        next_check = time_mono_us() + (int64_t) watchdog_us / 2;
        for (;;) {
                int64_t now = time_mono_us(), wait = next_check - now;

                if (http_tick(http) > 0 && wait > 100000)
                        wait = 100000;
                if (wait < 0)
                        wait = 0;
                tick = time_ts(wait);
                sig = sigtimedwait(&sigs, NULL, &tick);
                if (time_mono_us() >= next_check) {
                        watchdog_tick(&wd, store, http, (int64_t) watchdog_us / 2, watchdog);
                        next_check = time_mono_us() + (int64_t) watchdog_us / 2;
                }
                if (sig < 0)
                        continue;
                if (sig == SIGHUP) {
                        reload(&cfg, http, &mgmt, store, &fw, watch, metrics);
                        continue;
                }
                break;
        }
        (void) sd_notify(0, "STOPPING=1\nSTATUS=draining");
        log_full(LOG_INFO, LOG_MID_STOP, NULL, "%s: finishing open requests, then stopping",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
        mgmt = mgmt_stop(mgmt);  /* ends an API call or a wait under way */
        fw = forward_stop(fw);
        watch = watch_stop(watch);
        metrics = metrics_stop(metrics);
        if ((stuck = drain(http, store)) > 0) {
                /* The writer is inside a transaction the database does not
                 * finish: what it holds was not stored and got no 200;
                 * SocketLabs sends it again. Its threads cannot be joined. */
                log_full(LOG_ERR, LOG_MID_STOP, NULL, "%u requests not stored: %s did not finish a transaction "
                         "within %d s; they got no answer and will be sent again; exiting",
                         stuck, store_name(store), DRAIN_SECONDS);
                _exit(EXIT_FAILURE);
        }
        http = http_stop(http);
        store = store_close(store);
        log_full(LOG_INFO, LOG_MID_STOP, NULL, "stopped");
        curl_global_cleanup();
        cfg_free(cfg);
        gnutls_global_deinit();
        return EXIT_SUCCESS;

fatal:
        log_full(LOG_ERR, LOG_MID_CONFIG, NULL, "%s", err ? err : "start-up failed");
        free(err);
        mgmt_stop(mgmt);
        forward_stop(fw);
        watch_stop(watch);
        metrics_stop(metrics);
        store_stop(store, DRAIN_SECONDS);
        http_stop(http);
        store_close(store);
        tls_free(tls);
        cfg_free(cfg);
        return status;
}
