/* db_sqlite: the SQLite backend of db.h, the embedded default. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "db-backend.h"
#include "util.h"
#include "walbuf.h"

struct lite {
        struct db base;
        sqlite3 *db;
        sqlite3_stmt *begin, *commit, *rollback;
        char *wal_path;                 /* and its identity when opened: see files_moved() */
        dev_t wal_dev;
        ino_t wal_ino;
        struct {
                void (*fn)(void *);
                void *arg;
        } progress;
};

struct lite_stmt {
        struct db_stmt base;
        sqlite3_stmt *st;
        int64_t changes;
};

#define L(d) ((struct lite *) (d))
#define S(s) (((struct lite_stmt *) (s))->st)

/* The system's error behind a failed write: the WAL's, else the database
 * file's (sqlite3_system_errno() reads errno too late to be sure of it). */
static int
last_errno(struct lite *l)
{
        sqlite3_file *wal = NULL;
        int e = 0;

        if (sqlite3_file_control(l->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal) == SQLITE_OK &&
            wal && wal->pMethods && wal->pMethods->xFileControl(wal, SQLITE_FCNTL_LAST_ERRNO, &e) == SQLITE_OK && e)
                return e;
        if (sqlite3_file_control(l->db, "main", SQLITE_FCNTL_LAST_ERRNO, &e) == SQLITE_OK && e)
                return e;
        return 0;
}

/* Record SQLite's error, with the system's reason behind an I/O error. */
static void
fail(struct lite *l)
{
        int rc = sqlite3_extended_errcode(l->db), e;

        e = (rc & 0xff) == SQLITE_IOERR || (rc & 0xff) == SQLITE_FULL || (rc & 0xff) == SQLITE_CANTOPEN
                ? last_errno(l) : 0;
        db_fail(&l->base, "%s%s%s%s", sqlite3_errmsg(l->db), e ? " (" : "", e ? strerror(e) : "", e ? ")" : "");
        /* SQLITE_BUSY already waited out the busy timeout: not retried. */
        l->base.conflict = l->base.broken = false;
        l->base.timeout = (rc & 0xff) == SQLITE_BUSY;
}

/* Whether the database file or its WAL was deleted or replaced since it was
 * opened: a COMMIT would then go to a file nobody will open again. (SQLite
 * keeps the WAL while any connection is open, so its file stays the one
 * lite_open saw.) */
static bool
files_moved(struct lite *l)
{
        struct stat st;
        int moved = 0;

        if (sqlite3_file_control(l->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) != SQLITE_OK || moved)
                return true;
        return l->wal_ino && (stat(l->wal_path, &st) < 0 || st.st_ino != l->wal_ino || st.st_dev != l->wal_dev);
}

/* Note which file the WAL is, once there is one. */
static void
wal_identity(struct lite *l)
{
        struct stat st;

        if (stat(l->wal_path, &st) == 0) {
                l->wal_dev = st.st_dev;
                l->wal_ino = st.st_ino;
        }
}

static void
lite_close(struct db *d)
{
        struct lite *l = L(d);

        sqlite3_finalize(l->begin);
        sqlite3_finalize(l->commit);
        sqlite3_finalize(l->rollback);
        if (l->db)
                sqlite3_close(l->db);
        free(l->wal_path);
        free(l);
}

static int
lite_exec(struct db *d, const char *sql)
{
        struct lite *l = L(d);
        char *msg = NULL;

        if (sqlite3_exec(l->db, sql, NULL, NULL, &msg) == SQLITE_OK)
                return 0;
        if (msg) {
                db_fail(d, "%s", msg);
                d->conflict = d->broken = false;
        } else
                fail(l);
        sqlite3_free(msg);
        return -EIO;
}

static int
simple(struct lite *l, sqlite3_stmt *st)
{
        int rc = sqlite3_step(st);

        if (rc != SQLITE_DONE)
                fail(l);
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? 0 : -EIO;
}

static int
lite_begin(struct db *d)
{
        return simple(L(d), L(d)->begin);
}

static int
lite_commit(struct db *d)
{
        struct lite *l = L(d);

        if (files_moved(l)) {
                db_fail(d, "the database file or its -wal was deleted or replaced while open; put it back, "
                        "or stop slhookd, move the files aside and start it again");
                d->conflict = d->broken = false;
                return -EIO;
        }
        if (simple(l, l->commit) < 0)
                return -EIO;
        if (l->wal_ino == 0)
                wal_identity(l);        /* the first commit made the WAL */
        return 0;
}

static void
lite_rollback(struct db *d)
{
        struct lite *l = L(d);

        if (!sqlite3_get_autocommit(l->db))
                (void) sqlite3_step(l->rollback);
        sqlite3_reset(l->rollback);
}

static int
lite_lock(struct db *d, int64_t key, bool wait)
{
        (void) d;
        (void) key;
        (void) wait;
        return 1;
}

/* One process writes a SQLite file: nothing to take. */
static int
lite_hold(struct db *d, int64_t key)
{
        (void) d;
        (void) key;
        return 1;
}

/* sqlite3_progress_handler's callback: fn(arg), and go on. */
static int
lite_progress_cb(void *p)
{
        struct lite *l = p;

        l->progress.fn(l->progress.arg);
        return 0;
}

static void
lite_progress(struct db *d, void (*fn)(void *), void *arg)
{
        struct lite *l = L(d);

        l->progress.fn = fn;
        l->progress.arg = arg;
        sqlite3_progress_handler(l->db, fn ? 1000000 : 0, fn ? lite_progress_cb : NULL, l);
}

static int
lite_schema_version(struct db *d)
{
        struct lite *l = L(d);
        sqlite3_stmt *st;
        int v = -EIO;

        if (sqlite3_prepare_v2(l->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) {
                fail(l);
                return -EIO;
        }
        if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int(st, 0);
        else
                fail(l);
        sqlite3_finalize(st);
        return v;
}

static int
lite_prepare(struct db *d, const char *sql, unsigned flags, struct db_stmt **ret)
{
        struct lite *l = L(d);
        struct lite_stmt *s;
        sqlite3_stmt *st;

        (void) flags;
        if (sqlite3_prepare_v3(l->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
                fail(l);
                return -EIO;
        }
        s = xcalloc(1, sizeof(*s));
        s->base.db = d;
        s->st = st;
        *ret = &s->base;
        return 0;
}

static void
lite_finalize(struct db_stmt *s)
{
        sqlite3_finalize(S(s));
        free(s);
}

static void
lite_bind_text(struct db_stmt *s, int i, const char *v)
{
        if (v)
                sqlite3_bind_text(S(s), i, v, -1, SQLITE_STATIC);
        else
                sqlite3_bind_null(S(s), i);
}

static void lite_bind_int(struct db_stmt *s, int i, int64_t v) { sqlite3_bind_int64(S(s), i, v); }
static void lite_bind_double(struct db_stmt *s, int i, double v) { sqlite3_bind_double(S(s), i, v); }
static void lite_bind_null(struct db_stmt *s, int i) { sqlite3_bind_null(S(s), i); }

static int
lite_step(struct db_stmt *s)
{
        struct lite *l = L(s->db);
        int rc = sqlite3_step(S(s));

        if (rc == SQLITE_ROW)
                return 1;
        if (rc == SQLITE_DONE) {
                ((struct lite_stmt *) s)->changes = sqlite3_changes64(l->db);
                return 0;
        }
        fail(l);
        return -EIO;
}

static void
lite_reset(struct db_stmt *s)
{
        sqlite3_reset(S(s));
        sqlite3_clear_bindings(S(s));
}

static int64_t lite_changes(struct db_stmt *s) { return ((struct lite_stmt *) s)->changes; }
static int lite_columns(struct db_stmt *s) { return sqlite3_column_count(S(s)); }
static const char *lite_column_name(struct db_stmt *s, int i) { return sqlite3_column_name(S(s), i); }
static const char *lite_text(struct db_stmt *s, int i) { return (const char *) sqlite3_column_text(S(s), i); }
static size_t lite_bytes(struct db_stmt *s, int i) { return (size_t) sqlite3_column_bytes(S(s), i); }
static int64_t lite_integer(struct db_stmt *s, int i) { return sqlite3_column_int64(S(s), i); }
static bool lite_null(struct db_stmt *s, int i) { return sqlite3_column_type(S(s), i) == SQLITE_NULL; }

static bool
lite_numeric(struct db_stmt *s, int i)
{
        int t = sqlite3_column_type(S(s), i);

        return t == SQLITE_INTEGER || t == SQLITE_FLOAT;
}

static const struct db_ops lite_ops = {
        .close = lite_close, .exec = lite_exec, .begin = lite_begin, .commit = lite_commit,
        .rollback = lite_rollback, .lock = lite_lock, .hold = lite_hold, .schema_version = lite_schema_version,
        .progress = lite_progress,
        .prepare = lite_prepare, .finalize = lite_finalize, .bind_text = lite_bind_text,
        .bind_int = lite_bind_int, .bind_double = lite_bind_double, .bind_null = lite_bind_null,
        .step = lite_step, .reset = lite_reset, .changes = lite_changes, .columns = lite_columns,
        .column_name = lite_column_name, .text = lite_text, .bytes = lite_bytes, .integer = lite_integer,
        .null = lite_null, .numeric = lite_numeric,
};


/* No memory statistics: they take a global mutex at every allocation and
 * free, which the writer makes tens of times an event. Set once, before
 * SQLite initialises. */
static pthread_once_t lite_once = PTHREAD_ONCE_INIT;

static void
lite_init(void)
{
        (void) sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int
db_sqlite_open(const struct db_conf *c, unsigned flags, struct db **ret, char **reterr)
{
        struct lite *l = xcalloc(1, sizeof(*l));
        bool ro = flags & DB_READONLY;
        struct stat st;
        char *pragmas;
        int r;

        l->base.ops = &lite_ops;
        l->base.backend = DB_SQLITE;
        l->base.name = xstrdup(c->path);
        /* A reader never creates the file; SQLite's own message for a
         * missing one is "unable to open database file". */
        if (ro && stat(c->path, &st) < 0) {
                *reterr = xasprintf("%s: cannot open database: %s", c->path, strerror(errno));
                goto fail;
        }
        pthread_once(&lite_once, lite_init);
        /* A writer that syncs every commit gathers its WAL writes (walbuf.c). */
        if (sqlite3_open_v2(c->path, &l->db, (ro ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                            SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
                            !ro && c->synchronous_full && walbuf_register() == SQLITE_OK ? WALBUF_VFS : NULL)
            != SQLITE_OK) {
                *reterr = xasprintf("%s: cannot open database: %s", c->path,
                                    l->db ? sqlite3_errmsg(l->db) : "out of memory");
                goto fail;
        }
        sqlite3_busy_timeout(l->db, c->timeout_ms ? (int) c->timeout_ms : ro ? 2000 : 5000);
        if (sqlite3_prepare_v3(l->db, "BEGIN IMMEDIATE", -1, SQLITE_PREPARE_PERSISTENT, &l->begin, NULL) != SQLITE_OK ||
            sqlite3_prepare_v3(l->db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &l->commit, NULL) != SQLITE_OK ||
            sqlite3_prepare_v3(l->db, "ROLLBACK", -1, SQLITE_PREPARE_PERSISTENT, &l->rollback, NULL) != SQLITE_OK) {
                *reterr = xasprintf("%s: cannot open database: %s", c->path, sqlite3_errmsg(l->db));
                goto fail;
        }
        *ret = &l->base;
        if (ro)
                return 0;
        /* SQLite's automatic checkpoint (every 1,000 pages) is kept: every
         * 10,000 gave the writer 20% more events/s but each checkpoint then
         * stalled it for ~20 ms (p99 6 -> 24 ms); bench/README.md. */
        /* 8 KiB pages (a new database only; set before WAL mode writes the
         * header): fewer page writes per commit, 12% more events/s from the
         * writer and 5-8% more over HTTP than SQLite's 4 KiB (bench/README.md). */
        /* journal_size_limit: a WAL that grew while a long reader kept the
         * checkpoint from restarting it shrinks back at the next restart. */
        /* cache_size: 64 MiB of pages (taken as used) instead of SQLite's
         * 2 MiB, which a batch of ~130 events outgrew: the writer then
         * spilled pages to the WAL before COMMIT and read the rest back
         * through read(2). bench/fill: 9,315 -> 10,402 events/s, system
         * time 3.9 -> 2.6 s a run (bench/README.md). */
        pragmas = xasprintf("PRAGMA page_size = 8192; PRAGMA journal_mode = WAL; PRAGMA synchronous = %s; "
                            "PRAGMA journal_size_limit = %d; PRAGMA foreign_keys = ON; "
                            "PRAGMA cache_size = -65536;",
                            c->synchronous_full ? "FULL" : "NORMAL", DB_SQLITE_WAL_LIMIT);
        r = lite_exec(&l->base, pragmas);
        free(pragmas);
        if (r < 0) {
                *reterr = xasprintf("%s: %s", c->path, db_errmsg(&l->base));
                *ret = NULL;
                goto fail;
        }
        l->wal_path = xasprintf("%s-wal", c->path);
        wal_identity(l);
        return 0;
fail:
        free(l->base.name);
        lite_close(&l->base);
        return -EIO;
}
