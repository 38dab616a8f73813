/* slhookctl: ask slhookd's database what happened to the mail. Read-only
 * against the live database (WAL: it never blocks the daemon nor waits for
 * it), except `prune` and `quarantine replay`, which write in small
 * transactions. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "log.h"
#include "migrate.h"
#include "out.h"
#include "query.h"
#include "store.h"
#include "util.h"

/* Options, as bits, so each command can say which it takes. */
enum {
        O_TYPE = 1 << 0, O_ADDRESS = 1 << 1, O_MESSAGE_ID = 1 << 2, O_MAILING_ID = 1 << 3,
        O_SINCE = 1 << 4, O_UNTIL = 1 << 5, O_LIMIT = 1 << 6, O_ASYNC = 1 << 7, O_BY = 1 << 8,
        O_BEFORE = 1 << 9, O_TO = 1 << 10, O_DRY_RUN = 1 << 11, O_FOLLOW = 1 << 12, O_AFTER = 1 << 13,
        O_SERVER_ID = 1 << 14,
};

static const struct {
        int bit;
        const char *name;
} option_names[] = {
        { O_TYPE, "--type" }, { O_ADDRESS, "--address" }, { O_MESSAGE_ID, "--message-id" },
        { O_MAILING_ID, "--mailing-id" }, { O_SINCE, "--since" }, { O_UNTIL, "--until" },
        { O_LIMIT, "--limit" }, { O_ASYNC, "--async" }, { O_BY, "--by" }, { O_BEFORE, "--before" },
        { O_TO, "--to" }, { O_DRY_RUN, "--dry-run" }, { O_FOLLOW, "--follow" }, { O_AFTER, "--after" },
        { O_SERVER_ID, "--server-id" },
};

typedef int (*query_fn)(struct query *, const struct query_args *, struct out *, bool *, char **);

static const struct command {
        const char *name;
        const char *sub;        /* "quarantine list|show|replay" */
        int options;
        query_fn fn;
        long default_limit;
} commands[] = {
        { "events", NULL, O_TYPE | O_ADDRESS | O_MESSAGE_ID | O_MAILING_ID | O_SINCE | O_UNTIL | O_LIMIT |
          O_FOLLOW | O_AFTER, query_events, 100 },
        { "bounces", NULL, O_ASYNC | O_ADDRESS | O_MESSAGE_ID | O_MAILING_ID | O_SINCE | O_UNTIL | O_LIMIT,
          query_bounces, 100 },
        { "timeline", NULL, O_ADDRESS | O_MESSAGE_ID | O_SINCE | O_UNTIL | O_LIMIT, query_timeline, 1000 },
        { "stats", NULL, O_SINCE | O_UNTIL | O_BY | O_LIMIT, query_stats, 0 },
        { "health", NULL, O_SINCE | O_UNTIL | O_BY | O_SERVER_ID | O_LIMIT, query_health, 0 },
        { "suppressions", NULL, O_ADDRESS | O_SINCE | O_UNTIL | O_LIMIT, query_suppressions, 100 },
        { "quarantine", "list", O_SINCE | O_UNTIL | O_LIMIT, query_quarantine_list, 100 },
        { "quarantine", "show", 0, query_quarantine_show, 0 },
        { "quarantine", "replay", 0, NULL, 0 },
        { "status", NULL, 0, query_status, 0 },
        { "forward", "status", 0, query_forward_status, 0 },
        { "forward", "rewind", O_TO, NULL, 0 },
        { "info", NULL, 0, query_info, 0 },
        { "prune", NULL, O_BEFORE | O_DRY_RUN, NULL, 0 },
        { "migrate", NULL, O_TO, NULL, 0 },
};

static const char *arg_config;
static const char *arg_database;
static enum out_format arg_format = OUT_TABLE;
static int arg_given;
static struct query_args arg_q;
static char arg_before[TIME_ISO_LEN];
static const char *arg_to;
static const char *arg_name;    /* forward rewind NAME */
static bool arg_help, arg_local;
static int64_t arg_after;
static const char *arg_by;

static void
usage(FILE *f)
{
        fprintf(f,
                "Usage: slhookctl [-c CONF | -d DB] [-f table|json|csv] COMMAND [OPTIONS]\n"
                "Ask slhookd's database about the mail it was told of.\n\n"
                "Commands:\n"
                "  events        [--type T] [--address A] [--message-id ID] [--mailing-id ID]\n"
                "                [--since TIME] [--until TIME] [--limit N]   newest first\n"
                "                [--after ID] [-F|--follow]   oldest first, strictly after the event\n"
                "                ID; --follow: then each new one as it is stored, until interrupted\n"
                "                (the newest N first with --limit N)\n"
                "  bounces       [--async] [--address A] [--message-id ID] [--mailing-id ID]\n"
                "                [--since TIME] [--until TIME] [--limit N]\n"
                "  timeline      --message-id ID | --address A  [--since TIME] [--until TIME]\n"
                "  stats         [--since TIME] [--until TIME] [--by hour|day]\n"
                "  health        [--since TIME] [--until TIME] [--by server|mailing] [--server-id N]\n"
                "                sending health per subaccount (or mailing), worst first: sent,\n"
                "                failures, async bounces, complaints, opens, clicks, their rates,\n"
                "                and the [health] thresholds crossed (default range: its window)\n"
                "  suppressions  [--address A] [--since TIME] [--until TIME] [--limit N]\n"
                "  quarantine    [list [--since TIME] [--limit N] | show ID | replay]\n"
                "  status        each endpoint's webhook, last self-test and validation\n"
                "  info          the database: size, schema version, rows, newest arrival\n"
                "  forward       [status | rewind NAME --to ID|TIME]   each [forward NAME]: how far\n"
                "                it is; rewind: ID (or the first event received at or after TIME)\n"
                "                is the next one sent, picked up by the daemon within seconds\n"
                "  prune         --before TIME [--dry-run]   delete events received before TIME\n"
                "                (--dry-run: count what would go, delete nothing)\n"
                "  migrate       --to DSN   copy the SQLite database into PostgreSQL (again:\n"
                "                what is new since)\n\n"
                "Options:\n"
                "  -c, --config CONF   read where the database is from slhookd's configuration\n"
                "                      (default %s)\n"
                "  -d, --database DB   the database itself: a SQLite file or a postgresql:// URI\n"
                "  -f, --format F      table (default), json (one object per line) or csv\n"
                "  -n, --limit N       at most N rows (0: all; default 100, timeline 1000)\n"
                "      --local         times in the local zone (TZ), printed and read\n"
                "  -V, --version       print the version and exit\n"
                "  -h, --help          print this help and exit\n\n"
                "TIME, in UTC (local with --local) unless it names an offset: 2026-01-31,\n"
                "2026-01-31 10:00[:00], 2026-01-31T10:00:00Z, 2026-01-31T10:00+01:00, now,\n"
                "today, yesterday, @UNIX, or that long ago: 30s, 90m, -2h, 7d, 2w.\n"
                "--since/--until select by event time, --before by arrival time.\n"
                "See slhookctl(1).\n",
                CFG_DEFAULT_PATH);
}

/* COMMAND --help: its lines of the usage, and how TIME is written; the
 * whole usage without a command (or for one it does not know). */
static void
command_help(const char *name)
{
        char *text = NULL, *line, *save = NULL, *key;
        size_t len = 0;
        bool in = false, found = false;
        FILE *f = open_memstream(&text, &len);

        if (f == NULL || name == NULL) {
                if (f)
                        fclose(f);
                free(text);
                usage(stdout);
                return;
        }
        usage(f);
        fclose(f);
        key = xasprintf("  %s ", name);
        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                if (strncmp(line, "  ", 2) == 0 && line[2] != ' ')
                        in = strncmp(line, key, strlen(key)) == 0;
                if (strncmp(line, "TIME", 4) == 0 && found) {
                        in = true;      /* the closing paragraph: how TIME is written */
                        printf("\n");
                }
                if (in && !found)
                        printf("Usage: slhookctl [-c CONF | -d DB] [-f table|json|csv] %s\n", name);
                if (in) {
                        printf("%s\n", line);
                        found = true;
                }
        }
        free(key);
        free(text);
        if (!found)
                usage(stdout);
}

static int __attribute__((format(printf, 1, 2)))
fail(const char *fmt, ...)
{
        va_list ap;

        fputs("slhookctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return -EINVAL;
}

static int
parse_time_arg(const char *opt, const char *v, char out[TIME_ISO_LEN])
{
        if (v && query_parse_time(v, time_now_us(), arg_local, out) < 0)
                return fail("%s: '%s' is not a time (2026-01-31, 2026-01-31 10:00, 2026-01-31T10:00:00Z, "
                            "an offset such as +01:00, today, yesterday, now, @UNIX, or that long ago: 90m, -2h, 7d)",
                            opt, v);
        return 0;
}

static int
parse_args(int argc, char **argv)
{
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "database", required_argument, NULL, 'd' },
                { "format", required_argument, NULL, 'f' },
                { "limit", required_argument, NULL, 'n' },
                { "type", required_argument, NULL, 't' },
                { "address", required_argument, NULL, 'a' },
                { "message-id", required_argument, NULL, 'm' },
                { "mailing-id", required_argument, NULL, 'g' },
                { "since", required_argument, NULL, 's' },
                { "until", required_argument, NULL, 'u' },
                { "before", required_argument, NULL, 'b' },
                { "by", required_argument, NULL, 'y' },
                { "server-id", required_argument, NULL, 'S' },
                { "to", required_argument, NULL, 'T' },
                { "async", no_argument, NULL, 'A' },
                { "dry-run", no_argument, NULL, 'D' },
                { "follow", no_argument, NULL, 'F' },
                { "after", required_argument, NULL, 'I' },
                { "local", no_argument, NULL, 'L' },
                { "version", no_argument, NULL, 'V' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        const char *since = NULL, *until = NULL, *before = NULL;
        int64_t n;
        int c;

        while ((c = getopt_long(argc, argv, "c:d:f:n:FVh", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        arg_config = optarg;
                        break;
                case 'd':
                        arg_database = optarg;
                        break;
                case 'f':
                        if (out_parse_format(optarg, &arg_format) < 0)
                                return fail("--format: '%s' is not one of table, json, csv", optarg);
                        break;
                case 'n':
                        if (str_to_i64(optarg, strlen(optarg), 0, 100000000, &n) < 0)
                                return fail("--limit: '%s' is not a number of rows (0 for all)", optarg);
                        arg_q.limit = (long) n;
                        arg_given |= O_LIMIT;
                        break;
                case 't':
                        if ((arg_q.type = query_type(optarg)) == NULL)
                                return fail("--type: Tracking events are stored as Click, Open or Unsubscribe");
                        arg_given |= O_TYPE;
                        break;
                case 'a':
                        arg_q.address = optarg;
                        arg_given |= O_ADDRESS;
                        break;
                case 'm':
                        arg_q.message_id = optarg;
                        arg_given |= O_MESSAGE_ID;
                        break;
                case 'g':
                        arg_q.mailing_id = optarg;
                        arg_given |= O_MAILING_ID;
                        break;
                case 's':
                        since = optarg;
                        arg_given |= O_SINCE;
                        break;
                case 'u':
                        until = optarg;
                        arg_given |= O_UNTIL;
                        break;
                case 'b':
                        before = optarg;
                        arg_given |= O_BEFORE;
                        break;
                case 'y':
                        arg_by = optarg;        /* its words depend on the command */
                        arg_given |= O_BY;
                        break;
                case 'S':
                        if (str_to_i64(optarg, strlen(optarg), 0, INT64_MAX, &n) < 0)
                                return fail("--server-id: '%s' is not a ServerId (a whole number)", optarg);
                        arg_q.server_id = n;
                        arg_q.has_server_id = true;
                        arg_given |= O_SERVER_ID;
                        break;
                case 'T':
                        arg_to = optarg;
                        arg_given |= O_TO;
                        break;
                case 'A':
                        arg_q.async = true;
                        arg_given |= O_ASYNC;
                        break;
                case 'D':
                        arg_given |= O_DRY_RUN;
                        break;
                case 'F':
                        arg_given |= O_FOLLOW;
                        break;
                case 'I':
                        if (str_to_i64(optarg, strlen(optarg), 0, INT64_MAX, &n) < 0)
                                return fail("--after: '%s' is not an event id (the 'id' of events --format json)",
                                            optarg);
                        arg_after = n;
                        arg_given |= O_AFTER;
                        break;
                case 'L':
                        arg_local = true;
                        break;
                case 'V':
                        printf("slhookctl %s\n", PACKAGE_VERSION);
                        exit(EXIT_SUCCESS);
                case 'h':
                        arg_help = true;
                        break;
                default:
                        fputs("Try 'slhookctl --help'.\n", stderr);
                        return -EINVAL;
                }
        }
        if (arg_help) {
                command_help(optind < argc ? argv[optind] : NULL);
                exit(EXIT_SUCCESS);
        }
        if (arg_config && arg_database)
                return fail("give -c CONF or -d DB, not both");
        /* After every option: --local changes how they read. */
        if (parse_time_arg("--since", since, arg_q.since) < 0 || parse_time_arg("--until", until, arg_q.until) < 0 ||
            parse_time_arg("--before", before, arg_before) < 0)
                return -EINVAL;
        return 0;
}

/* The command named by the words left after the options. */
static const struct command *
find_command(int argc, char **argv)
{
        const char *name = optind < argc ? argv[optind] : NULL;
        const char *sub = optind + 1 < argc ? argv[optind + 1] : NULL;
        size_t i;
        int extra;

        if (name == NULL) {
                fail("no command given; try 'slhookctl --help'");
                return NULL;
        }
        if (strcmp(name, "quarantine") == 0 && sub == NULL)
                sub = "list";
        if (strcmp(name, "forward") == 0 && sub == NULL)
                sub = "status";
        for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
                const struct command *c = &commands[i];

                if (strcmp(c->name, name) != 0 || (c->sub && strcmp(c->sub, sub) != 0))
                        continue;
                extra = argc - optind - 1 - (c->sub && optind + 1 < argc);
                if (c->sub && strcmp(c->sub, "show") == 0) {
                        int64_t id;

                        if (extra != 1 || str_to_i64(argv[optind + 2], strlen(argv[optind + 2]), 1,
                                                     INT64_MAX, &id) < 0) {
                                fail("quarantine show: give the id of one entry (see 'quarantine list')");
                                return NULL;
                        }
                        arg_q.id = id;
                        extra = 0;
                }
                if (c->sub && strcmp(c->sub, "rewind") == 0) {
                        if (extra != 1) {
                                fail("forward rewind: give the NAME of one [forward NAME], and --to ID|TIME");
                                return NULL;
                        }
                        arg_name = argv[optind + 2];
                        extra = 0;
                }
                if (extra > 0) {
                        fail("%s: unexpected argument '%s'", name, argv[argc - extra]);
                        return NULL;
                }
                return c;
        }
        if (strcmp(name, "quarantine") == 0)
                fail("quarantine: '%s' is not one of list, show, replay", sub);
        else if (strcmp(name, "forward") == 0)
                fail("forward: '%s' is not one of status, rewind", sub);
        else
                fail("'%s' is not a command; try 'slhookctl --help'", name);
        return NULL;
}

static int
check_options(const struct command *c)
{
        size_t i;

        for (i = 0; i < sizeof(option_names) / sizeof(option_names[0]); i++)
                if ((arg_given & option_names[i].bit) && !(c->options & option_names[i].bit))
                        return fail("%s%s%s: %s is not an option of this command", c->name,
                                    c->sub ? " " : "", c->sub ? c->sub : "", option_names[i].name);
        if (strcmp(c->name, "timeline") == 0 && !(arg_given & (O_MESSAGE_ID | O_ADDRESS)))
                return fail("timeline: give --message-id ID or --address A");
        if (strcmp(c->name, "prune") == 0 && !(arg_given & O_BEFORE))
                return fail("prune: give --before TIME (events received before it are deleted)");
        if (strcmp(c->name, "migrate") == 0 && !(arg_given & O_TO))
                return fail("migrate: give --to DSN, the PostgreSQL database to copy into");
        if (strcmp(c->name, "forward") == 0 && c->sub && strcmp(c->sub, "rewind") == 0 && !(arg_given & O_TO))
                return fail("forward rewind: give --to ID (that event is the next sent) or --to TIME (the first "
                            "event received at or after it)");
        if (arg_by && strcmp(c->name, "stats") == 0) {
                if (strcmp(arg_by, "hour") == 0)
                        arg_q.by = 'h';
                else if (strcmp(arg_by, "day") == 0)
                        arg_q.by = 'd';
                else
                        return fail("--by: '%s' is not one of hour, day", arg_by);
        }
        if (arg_by && strcmp(c->name, "health") == 0) {
                if (strcmp(arg_by, "server") == 0)
                        arg_q.by = 's';
                else if (strcmp(arg_by, "mailing") == 0)
                        arg_q.by = 'm';
                else
                        return fail("--by: '%s' is not one of server, mailing", arg_by);
        }
        if ((arg_given & (O_FOLLOW | O_AFTER | O_LIMIT)) == (O_FOLLOW | O_AFTER | O_LIMIT))
                return fail("events: --limit does not go with --follow --after: every event after ID is shown");
        if (!(arg_given & O_LIMIT))
                arg_q.limit = arg_given & (O_FOLLOW | O_AFTER) ? 0 : c->default_limit;
        return 0;
}

/* The database: -d DB (a SQLite file, or a postgresql:// URI), else the
 * [store] of -c CONF or of the default configuration. */
struct target {
        struct db_conf conf;
        char *password;                 /* from the configuration's password_file or credential */
        struct cfg *cfg;
};

/* Whether path starts as a SQLite database does. */
static bool
is_sqlite_file(const char *path)
{
        char head[16];
        FILE *f = fopen(path, "re");
        bool yes;

        if (f == NULL)
                return false;
        yes = fread(head, 1, sizeof(head), f) == sizeof(head) && memcmp(head, "SQLite format 3", 16) == 0;
        fclose(f);
        return yes;
}

static int
target_load(struct target *t)
{
        char *err = NULL;

        memset(t, 0, sizeof(*t));
        if (arg_database) {
                if (db_is_uri(arg_database))
                        t->conf = (struct db_conf) { .backend = DB_POSTGRESQL, .dsn = arg_database };
                else
                        t->conf = (struct db_conf) { .backend = DB_SQLITE, .path = arg_database,
                                                     .synchronous_full = true };
                return 0;
        }
        if (arg_config && is_sqlite_file(arg_config))
                return fail("-c %s: that is a SQLite database, not a configuration; give it with -d %s",
                            arg_config, arg_config);
        if (cfg_load(arg_config ? arg_config : CFG_DEFAULT_PATH, CFG_NO_SECRETS, &t->cfg, &err) < 0 ||
            cfg_db_conf(t->cfg, &t->conf, &t->password, &err) < 0) {
                fail("%s%s", err, arg_config || t->cfg ? "" : " (give -c CONF or -d DB)");
                free(err);
                t->cfg = cfg_free(t->cfg);
                return -EINVAL;
        }
        t->conf.synchronous_full = true;
        t->conf.timeout_ms = 0;         /* an operator's query may run long: the defaults */
        return 0;
}

static void
target_done(struct target *t)
{
        freezero(t->password, t->password ? strlen(t->password) : 0);
        cfg_free(t->cfg);
}

static unsigned
table_width(void)
{
        struct winsize ws;
        const char *cols = getenv("COLUMNS");
        int64_t n;

        if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
                return ws.ws_col;
        if (cols && str_to_i64(cols, strlen(cols), 20, 10000, &n) == 0)
                return (unsigned) n;
        return 0;
}

static const struct out_col replay_cols[] = { { "moved", true, false }, { "kept", true, false } };
static const struct out_col prune_cols[] = { { "before", true, false }, { "events", true, false }, { "messages", true, false } };

/* After a prune: the pages now free inside the SQLite file, which does
 * not shrink by itself, and how to give them back. */
static void
free_pages_note(const struct db_conf *conf)
{
        struct db *db = NULL;
        struct db_stmt *st = NULL;
        char *err = NULL;

        if (db_open(conf, DB_READONLY, &db, &err) < 0 ||
            db_prepare(db, "SELECT freelist_count, page_size FROM pragma_freelist_count(), pragma_page_size()", 0,
                       &st) < 0) {
                free(err);
                db_close(db);
                return;
        }
        if (db_step(st) > 0 && db_int(st, 0) > 0)
                fprintf(stderr, "slhookctl: %s: %lld pages (%lld bytes) are free inside the file, which does not "
                        "shrink by itself; to give them back: sqlite3 %s 'VACUUM' (see doc/operations.md)\n",
                        conf->path, (long long) db_int(st, 0), (long long) (db_int(st, 0) * db_int(st, 1)), conf->path);
        db_finalize(st);
        db_close(db);
}

/* prune --dry-run: what prune would delete, read only. */
static int
prune_dry_run(const struct db_conf *conf, struct out *o)
{
        static const char *const sql =
                "SELECT (SELECT count(*) FROM events WHERE received_at < ?1), "
                "(SELECT count(*) FROM messages WHERE updated_at < ?1), "
                "(SELECT count(*) FROM quarantine WHERE received_at < ?1)";
        struct db *db = NULL;
        struct db_stmt *st = NULL;
        char *err = NULL, a[24], b[24];
        const char *vals[3] = { arg_before, a, b };
        bool num[3] = { false, true, true };
        int r = -EIO;

        if (db_open(conf, DB_READONLY, &db, &err) < 0) {
                fail("%s", err);
                free(err);
                return -EIO;
        }
        if (db_prepare(db, sql, 0, &st) == 0) {
                db_bind_text(st, 1, arg_before);
                if (db_step(st) > 0) {
                        snprintf(a, sizeof(a), "%lld", (long long) db_int(st, 0));
                        snprintf(b, sizeof(b), "%lld", (long long) db_int(st, 1));
                        out_columns(o, prune_cols, 3);
                        out_row(o, vals, num);
                        fprintf(stderr, "slhookctl: dry run, nothing deleted; %lld quarantined payloads would go too\n",
                                (long long) db_int(st, 2));
                        r = 0;
                }
        }
        if (r < 0)
                fail("%s: %s", db_name(db), db_errmsg(db));
        db_finalize(st);
        db_close(db);
        return r;
}

/* The two writing commands go through the store, as the daemon does. */
static int
write_command(const struct command *c, const struct db_conf *conf, struct out *o)
{
        struct store *s = NULL;
        struct stat sb;
        char *err = NULL, a[24], b[24];
        const char *vals[3], *path;
        bool num[3] = { true, true, true };
        int r;

        /* Never create a SQLite database here. */
        if (conf->backend == DB_SQLITE && stat(conf->path, &sb) < 0)
                return fail("%s: cannot open database: %s", conf->path, strerror(errno));
        if (arg_given & O_DRY_RUN)
                return prune_dry_run(conf, o);
        if (store_open(conf, &s, &err) < 0) {
                fail("%s", err);
                free(err);
                return -EIO;
        }
        path = store_name(s);
        if (strcmp(c->name, "prune") == 0) {
                uint64_t ne, nm, nq, te = 0, tm = 0, tq = 0;

                while ((r = store_prune(s, arg_before, &ne, &nm, &nq)) >= 0) {
                        te += ne;
                        tm += nm;
                        tq += nq;
                        if (r == 0)
                                break;
                }
                if (r < 0) {
                        fail("%s: prune failed after deleting %llu events: %s", path,
                             (unsigned long long) te, store_error(s));
                        store_close(s);
                        return -EIO;
                }
                snprintf(a, sizeof(a), "%llu", (unsigned long long) te);
                snprintf(b, sizeof(b), "%llu", (unsigned long long) tm);
                vals[0] = arg_before;
                vals[1] = a;
                vals[2] = b;
                num[0] = false;
                out_columns(o, prune_cols, 3);
                /* Beside the table, whose columns scripts read. */
                if (tq)
                        fprintf(stderr, "slhookctl: also deleted %llu quarantined payloads received before %s\n",
                                (unsigned long long) tq, arg_before);
                if (conf->backend == DB_SQLITE)
                        free_pages_note(conf);
        } else {
                unsigned moved, kept;

                if (store_replay_quarantine(s, &moved, &kept) < 0) {
                        fail("%s: quarantine replay failed: %s", path, store_error(s));
                        store_close(s);
                        return -EIO;
                }
                snprintf(a, sizeof(a), "%u", moved);
                snprintf(b, sizeof(b), "%u", kept);
                vals[0] = a;
                vals[1] = b;
                out_columns(o, replay_cols, 2);
        }
        out_row(o, vals, num);
        store_close(s);
        return 0;
}

static const struct out_col rewind_cols[] = { { "forward", true, false }, { "cursor", true, false },
                                               { "next_id", true, false } };

/* forward rewind NAME --to ID|TIME: the cursor set before that event (a
 * destination not yet started starts there), and rewound counted, which
 * the daemon's forwarding thread watches. */
static int
rewind_command(const struct target *t, struct out *o)
{
        static const char find_sql[] =
                "SELECT coalesce((SELECT id FROM events WHERE received_at >= ?1 ORDER BY received_at, id LIMIT 1), "
                "(SELECT coalesce(max(id), 0) + 1 FROM events)) - 1";
        static const char upsert[] =
                "INSERT INTO forward_cursors (forward, cursor, rewound, created_at, updated_at) "
                "VALUES (?1, CAST(?2 AS bigint), 1, ?3, ?3) ON CONFLICT (forward) DO UPDATE SET "
                "cursor = excluded.cursor, rewound = forward_cursors.rewound + 1, updated_at = excluded.updated_at";
        struct db *db = NULL;
        struct db_stmt *st = NULL;
        char *err = NULL, now[TIME_ISO_LEN], when[TIME_ISO_LEN], c[24], next[24];
        const char *v[3] = { arg_name, c, next };
        bool num[3] = { false, true, true }, known = false;
        int64_t id, cursor = -1;
        size_t i;
        int r = -EIO;

        if (t->cfg) {
                for (i = 0; i < t->cfg->n_forwards; i++)
                        known |= strcmp(t->cfg->forwards[i].name, arg_name) == 0;
                if (!known)
                        return fail("forward rewind: %s has no [forward %s] section", t->cfg->file, arg_name);
        }
        if (str_to_i64(arg_to, strlen(arg_to), 1, INT64_MAX, &id) == 0)
                cursor = id - 1;
        else if (query_parse_time(arg_to, time_now_us(), arg_local, when) < 0)
                return fail("--to: '%s' is not an event id nor a time (2026-01-31 10:00, -2h, @UNIX, ...)", arg_to);
        if (db_open(&t->conf, 0, &db, &err) < 0) {
                fail("%s", err);
                free(err);
                return -EIO;
        }
        if (db_schema_version(db) < 7) {
                r = fail("%s: schema version %d has no forwarding yet; start slhookd once to upgrade it",
                         db_name(db), db_schema_version(db));
                db_close(db);
                return r;
        }
        if (!known) {           /* -d DB: only a destination the database knows */
                if (db_prepare(db, "SELECT count(*) FROM forward_cursors WHERE forward = ?1", 0, &st) < 0)
                        goto out;
                db_bind_text(st, 1, arg_name);
                if (db_step(st) <= 0)
                        goto out;
                known = db_int(st, 0) > 0;
                db_finalize(st);
                st = NULL;
                if (!known) {
                        r = fail("forward rewind: %s knows no forward '%s' (give -c CONF to rewind one that has not "
                                 "started yet)", db_name(db), arg_name);
                        db_close(db);
                        return r;
                }
        }
        if (db_begin(db) < 0)
                goto out;
        if (cursor < 0) {
                if (db_prepare(db, find_sql, 0, &st) < 0)
                        goto rollback;
                db_bind_text(st, 1, when);
                if (db_step(st) <= 0)
                        goto rollback;
                cursor = db_int(st, 0);
                db_finalize(st);
                st = NULL;
        }
        snprintf(c, sizeof(c), "%lld", (long long) cursor);
        snprintf(next, sizeof(next), "%lld", (long long) cursor + 1);
        time_now_iso(now);
        if (db_prepare(db, upsert, 0, &st) < 0)
                goto rollback;
        db_bind_text(st, 1, arg_name);
        db_bind_text(st, 2, c);
        db_bind_text(st, 3, now);
        if (db_run(st) < 0 || db_commit(db) < 0)
                goto rollback;
        out_columns(o, rewind_cols, 3);
        out_row(o, v, num);
        r = 0;
        goto out;
rollback:
        db_rollback(db);
out:
        if (r < 0)
                fail("%s: forward rewind failed: %s", db_name(db), db_errmsg(db));
        db_finalize(st);
        db_close(db);
        return r;
}

/* migrate's progress on stderr: one line kept up to date on a terminal,
 * else a line at every tenth of a table and at its end. */
static void
on_progress(const struct migrate_count *c, uint64_t done, uint64_t total, void *arg)
{
        static const char *table;
        static unsigned tenth;
        bool tty = *(bool *) arg;
        unsigned now = total ? (unsigned) (done * 10 / total) : 10;

        if (table != c->table) {
                table = c->table;
                tenth = 0;
        } else if (!tty && now == tenth && done < total) {
                return;
        }
        tenth = now;
        fprintf(stderr, "%sslhookctl: %s: %llu of %llu rows to copy (%llu%%)%s", tty ? "\r\033[K" : "", c->table,
                (unsigned long long) done, (unsigned long long) total,
                (unsigned long long) (total ? done * 100 / total : 100), tty && done < total ? "" : "\n");
}

static const struct out_col migrate_cols[] = {
        { "table", true, false }, { "rows", true, false }, { "copied", true, false },
        { "updated", true, false }, { "unchanged", true, false },
};

static int
migrate_command(const struct db_conf *from, struct out *o)
{
        struct migrate_count counts[MIGRATE_TABLES];
        struct db_conf to = { .backend = DB_POSTGRESQL, .dsn = arg_to };
        bool tty = isatty(STDERR_FILENO), has_password, num[5] = { false, true, true, true, true };
        char *err = NULL, n[4][24];
        const char *vals[5];
        size_t i, j;

        if (from->backend != DB_SQLITE)
                return fail("migrate: copies from a SQLite database, and this one is PostgreSQL (give -d FILE, "
                            "or the -c CONF that names it)");
        if (db_dsn_check(arg_to, &has_password, &err) < 0) {
                fail("--to: %s", err);
                free(err);
                return -EINVAL;
        }
        if (migrate_run(from, &to, on_progress, &tty, counts, &err) < 0) {
                fail("migrate: %s", err);
                free(err);
                return -EIO;
        }
        out_columns(o, migrate_cols, 5);
        for (i = 0; i < MIGRATE_TABLES; i++) {
                const uint64_t v[4] = { counts[i].rows, counts[i].copied, counts[i].updated, counts[i].unchanged };

                vals[0] = counts[i].table;
                for (j = 0; j < 4; j++) {
                        snprintf(n[j], sizeof(n[j]), "%llu", (unsigned long long) v[j]);
                        vals[j + 1] = n[j];
                }
                out_row(o, vals, num);
        }
        return 0;
}

static volatile sig_atomic_t stopping;

static void
on_stop(int sig)
{
        (void) sig;
        stopping = 1;
}

/* events --after ID, --follow: oldest first, in batches; following, each
 * new event as it is stored (polled: bench/README.md), until SIGINT or
 * SIGTERM, or until the reader of stdout goes away (| head). */
static int
follow_command(struct query *q, struct out *o, char **reterr)
{
        const struct sigaction sa = { .sa_handler = on_stop };  /* no SA_RESTART: the wait ends */
        const bool follow = arg_given & O_FOLLOW;
        const long batch = 1000;
        struct query_follow f = { .cursor = arg_after };
        long left = follow ? 0 : arg_q.limit;   /* --after without --follow: at most --limit rows */
        int r = 0, n;

        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (follow && !(arg_given & O_AFTER) && (r = query_follow_start(q, &arg_q, arg_q.limit, &f.cursor, reterr)) < 0)
                return r;
        while (!stopping) {
                n = query_follow(q, &arg_q, &f, left > 0 && left < batch ? left : batch, o, reterr);
                if (n < 0) {
                        r = n;
                        break;
                }
                if (out_flush(o) < 0) {
                        if (errno != EPIPE)
                                r = fail("cannot write the output: %s", strerror(errno));
                        break;
                }
                if (left > 0 && (left -= n) == 0)
                        break;
                if (n == batch)
                        continue;
                if (!follow)
                        break;
                /* Caught up: look again in a quarter of a second, unless
                 * the reader of stdout has gone away meanwhile (a pipe's
                 * writing end then polls as an error). */
                if (poll(&(struct pollfd) { .fd = STDOUT_FILENO }, 1, 250) > 0)
                        break;
        }
        query_follow_done(&f);
        return r;
}

int
main(int argc, char **argv)
{
        const struct command *c;
        struct query *q = NULL;
        struct target t;
        struct out *o;
        char *err = NULL;
        bool more = false;
        int r;

        log_setup(LOG_FORMAT_TEXT, LOG_WARNING);
        if (parse_args(argc, argv) < 0 || (c = find_command(argc, argv)) == NULL || check_options(c) < 0)
                return 2;
        if (target_load(&t) < 0)
                return 1;
        o = out_new(stdout, arg_format, table_width(), c->sub && strcmp(c->sub, "show") == 0);
        if (arg_local)
                out_local_times(o);
        if (strcmp(c->name, "migrate") == 0)
                r = migrate_command(&t.conf, o);
        else if (strcmp(c->name, "forward") == 0 && strcmp(c->sub, "rewind") == 0)
                r = rewind_command(&t, o);
        else if (c->fn == NULL)
                r = write_command(c, &t.conf, o);
        else if ((arg_q.health = t.cfg ? &t.cfg->health : NULL), (r = query_open(&t.conf, &q, &err)) == 0)
                r = arg_given & (O_FOLLOW | O_AFTER) ? follow_command(q, o, &err) : c->fn(q, &arg_q, o, &more, &err);
        if (r < 0 && err)
                fail("%s", err);
        free(err);
        query_close(q);
        target_done(&t);
        if (out_end(o) < 0 && r >= 0 && errno != EPIPE)
                r = fail("cannot write the output: %s", strerror(errno));
        if (r >= 0 && more)
                fprintf(stderr, "slhookctl: only the first %ld rows are shown; --limit 0 shows all\n",
                        arg_q.limit);
        return r < 0 ? 1 : 0;
}
