/* db: one connection to the database, SQLite or PostgreSQL. This is the seam
 * where a storage backend plugs in: store and query write their SQL once,
 * with ? or ?N parameters, in the part of SQL both dialects share, and ask
 * db_backend() at the few places where they differ. */
#ifndef SLHOOKD_DB_H
#define SLHOOKD_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum db_backend { DB_SQLITE, DB_POSTGRESQL };

/* SQLite: the size the WAL is cut back to when it restarts after growing
 * past it (a long reader holds the checkpoint back). */
#define DB_SQLITE_WAL_LIMIT (32 * 1024 * 1024)

/* Whether a database named on a command line is PostgreSQL: a
 * postgresql:// (or postgres://) URI; anything else is a SQLite file. */
bool db_is_uri(const char *s);

/* Where the database is. */
struct db_conf {
        enum db_backend backend;
        const char *path;               /* SQLite: the file */
        bool synchronous_full;          /* SQLite: fsync at every commit, not only at checkpoints */
        const char *dsn;                /* PostgreSQL: a libpq connection string or URI */
        const char *password;           /* PostgreSQL: or NULL (then the DSN's, or libpq's files) */
        unsigned timeout_ms;            /* how long a statement or a lock may wait (0: the defaults:
                                         * SQLite 5 s, 2 s read only; PostgreSQL none) */
        int64_t share_lock;             /* PostgreSQL: an advisory lock the connection holds in
                                         * shared mode from every connect on, so that others can
                                         * count the connections of its kind (pg_locks); 0: none */
        void (*upgrading)(void *arg);   /* store_open: called now and then while a schema upgrade
                                         * runs (SQLite), so that a caller can say it is alive */
        void *upgrading_arg;
};

struct db;
struct db_stmt;

enum {
        DB_READONLY = 1 << 0,           /* db_open: read only (slhookctl's questions) */
        DB_STREAM = 1 << 1,             /* db_prepare: rows arrive one by one; no other
                                         * statement runs until this one is reset */
};

/* Whether this build has the backend. */
bool db_available(enum db_backend b);

/* Check a PostgreSQL connection string's syntax (libpq's parser) without
 * connecting; *has_password when it carries one. 0, or -EINVAL with
 * *reterr an allocated message. */
int db_dsn_check(const char *dsn, bool *has_password, char **reterr);

/* Connect. Returns 0, or a negative errno with *reterr an allocated message
 * that names the database (never its password). */
int db_open(const struct db_conf *c, unsigned flags, struct db **ret, char **reterr);

/* NULL-safe; returns NULL. */
struct db *db_close(struct db *db);

enum db_backend db_backend(const struct db *db);

/* The database for messages: the SQLite file, or postgresql://USER@HOST:PORT/DB. */
const char *db_name(const struct db *db);

/* Why the last call failed, one line. */
const char *db_errmsg(const struct db *db);

/* Whether the last failure was a conflict with another connection that
 * running the whole transaction again can resolve (deadlock, serialization). */
bool db_conflict(const struct db *db);

/* Whether the last failure was a wait that ran out (SQLite busy, a
 * PostgreSQL lock_timeout or statement_timeout): another try now would
 * wait as long. */
bool db_timeout(const struct db *db);

/* Whether the last failure was the connection itself (lost, refused): every
 * transaction would fail the same way until it is back. */
bool db_broken(const struct db *db);

/* Set the message db_errmsg() returns, for a failure the caller found. */
void db_set_error(struct db *db, const char *msg);

/* The same, for a conflict with another connection the caller found:
 * db_conflict() is true. */
void db_set_conflict(struct db *db, const char *msg);

/* Run a script of statements; 0 or -EIO. */
int db_exec(struct db *db, const char *sql);

/* A write transaction. db_begin reconnects a lost PostgreSQL connection.
 * db_commit returns 0 only once the transaction is durable. */
int db_begin(struct db *db);
int db_commit(struct db *db);
void db_rollback(struct db *db);        /* when a transaction is open */

/* Inside a transaction: take the lock named key for the rest of it, waiting
 * for another connection to let it go, or not (PostgreSQL advisory lock;
 * SQLite's write transaction already excludes every other writer). Returns
 * 1 taken, 0 held elsewhere (wait false), -EIO. */
int db_lock(struct db *db, int64_t key, bool wait);

/* Outside a transaction: take the lock named key unless another connection
 * holds it, and keep it until db_close() (PostgreSQL session advisory lock;
 * on SQLite, where one process writes the file, always taken). Returns 1
 * taken, 0 held elsewhere, -EIO. */
int db_hold(struct db *db, int64_t key);

/* The schema version the database has (0: none, a new database), or -EIO. */
int db_schema_version(struct db *db);
/* Call fn(arg) now and then (every million SQLite VM steps) while a statement
 * runs; fn NULL stops it. PostgreSQL: nothing. */
void db_progress(struct db *db, void (*fn)(void *), void *arg);

/* Prepare sql for repeated use; 0 or -EIO. */
int db_prepare(struct db *db, const char *sql, unsigned flags, struct db_stmt **ret);
void db_finalize(struct db_stmt *st);   /* NULL-safe */

/* Parameters count from 1. Text is borrowed until db_reset(); NULL binds NULL. */
void db_bind_text(struct db_stmt *st, int i, const char *v);
void db_bind_int(struct db_stmt *st, int i, int64_t v);
void db_bind_double(struct db_stmt *st, int i, double v);
void db_bind_null(struct db_stmt *st, int i);
void db_bind_opt_int(struct db_stmt *st, int i, bool has, int64_t v);      /* v, or NULL unless has */

/* Next row: 1 a row, 0 no more, -EIO. */
int db_step(struct db_stmt *st);

/* Ready to run again; clears the bindings. */
void db_reset(struct db_stmt *st);

/* Step a statement that returns no rows to its end and reset it: the rows
 * it changed, or -1. */
int db_run(struct db_stmt *st);

/* Rows changed by the statement that just finished. */
int64_t db_changes(struct db_stmt *st);

/* PostgreSQL's pipeline: db_send() queues a bound statement without
 * waiting for it; db_sync() (or db_commit(), which queues the COMMIT) sends
 * what is queued and waits once for all of it. Then each statement's rows
 * are read with db_step() and db_changes() is the sum over the times it
 * was queued. After a failure the rest of the pipeline did not run.
 * 0 or -EIO; -ENOTSUP on SQLite, whose statements run in process. */
int db_send(struct db_stmt *st);
int db_sync(struct db *db);

/* The current row's columns, from 0. Text stays valid until the next step
 * or reset; NULL for NULL. */
int db_columns(struct db_stmt *st);
const char *db_column_name(struct db_stmt *st, int i);
const char *db_text(struct db_stmt *st, int i);
size_t db_bytes(struct db_stmt *st, int i);
int64_t db_int(struct db_stmt *st, int i);
bool db_null(struct db_stmt *st, int i);
bool db_numeric(struct db_stmt *st, int i);     /* a number, not NULL */

#endif
