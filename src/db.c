/* db: the backend-neutral front of a database connection. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db-backend.h"
#include "util.h"

bool
db_available(enum db_backend b)
{
#ifdef HAVE_POSTGRESQL
        return b == DB_SQLITE || b == DB_POSTGRESQL;
#else
        return b == DB_SQLITE;
#endif
}

int
db_dsn_check(const char *dsn, bool *has_password, char **reterr)
{
#ifdef HAVE_POSTGRESQL
        return db_pg_dsn_check(dsn, has_password, reterr);
#else
        (void) dsn;
        (void) reterr;
        *has_password = false;
        return 0;
#endif
}

int
db_open(const struct db_conf *c, unsigned flags, struct db **ret, char **reterr)
{
        *ret = NULL;
        if (c->backend == DB_SQLITE)
                return db_sqlite_open(c, flags, ret, reterr);
#ifdef HAVE_POSTGRESQL
        if (c->backend == DB_POSTGRESQL)
                return db_pg_open(c, flags, ret, reterr);
#endif
        *reterr = xasprintf("the postgresql backend is not available in this build (./configure --with-postgresql)");
        return -ENOTSUP;
}

struct db *
db_close(struct db *db)
{
        if (db) {
                char *name = db->name;

                db->ops->close(db);
                free(name);
        }
        return NULL;
}

void
db_set_error(struct db *db, const char *msg)
{
        db_fail(db, "%s", msg);
        db->conflict = db->broken = false;
}

void
db_set_conflict(struct db *db, const char *msg)
{
        db_set_error(db, msg);
        db->conflict = true;
}

bool
db_is_uri(const char *s)
{
        return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0;
}

enum db_backend db_backend(const struct db *db) { return db->backend; }
const char *db_name(const struct db *db) { return db->name; }
bool db_conflict(const struct db *db) { return db->conflict; }
bool db_broken(const struct db *db) { return db->broken; }
bool db_timeout(const struct db *db) { return db->timeout; }

int db_exec(struct db *db, const char *sql) { return db->ops->exec(db, sql); }
int db_begin(struct db *db) { return db->ops->begin(db); }
int db_commit(struct db *db) { return db->ops->commit(db); }
void db_rollback(struct db *db) { db->ops->rollback(db); }
int db_lock(struct db *db, int64_t key, bool wait) { return db->ops->lock(db, key, wait); }
int db_hold(struct db *db, int64_t key) { return db->ops->hold(db, key); }
int db_schema_version(struct db *db) { return db->ops->schema_version(db); }

void
db_progress(struct db *db, void (*fn)(void *), void *arg)
{
        if (db->ops->progress)
                db->ops->progress(db, fn, arg);
}

int
db_prepare(struct db *db, const char *sql, unsigned flags, struct db_stmt **ret)
{
        return db->ops->prepare(db, sql, flags, ret);
}

void
db_finalize(struct db_stmt *st)
{
        if (st)
                st->db->ops->finalize(st);
}

void db_bind_text(struct db_stmt *st, int i, const char *v) { st->db->ops->bind_text(st, i, v); }
void db_bind_int(struct db_stmt *st, int i, int64_t v) { st->db->ops->bind_int(st, i, v); }
void db_bind_double(struct db_stmt *st, int i, double v) { st->db->ops->bind_double(st, i, v); }
void db_bind_null(struct db_stmt *st, int i) { st->db->ops->bind_null(st, i); }

void
db_bind_opt_int(struct db_stmt *st, int i, bool has, int64_t v)
{
        if (has)
                db_bind_int(st, i, v);
        else
                db_bind_null(st, i);
}
int db_step(struct db_stmt *st) { return st->db->ops->step(st); }
void db_reset(struct db_stmt *st) { st->db->ops->reset(st); }
int64_t db_changes(struct db_stmt *st) { return st->db->ops->changes(st); }

int
db_send(struct db_stmt *st)
{
        if (st->db->ops->send == NULL) {
                db_fail(st->db, "internal error: no pipeline on %s", st->db->name);
                return -ENOTSUP;
        }
        return st->db->ops->send(st);
}

int
db_sync(struct db *db)
{
        return db->ops->sync ? db->ops->sync(db) : 0;
}
int db_columns(struct db_stmt *st) { return st->db->ops->columns(st); }
const char *db_column_name(struct db_stmt *st, int i) { return st->db->ops->column_name(st, i); }
const char *db_text(struct db_stmt *st, int i) { return st->db->ops->text(st, i); }
size_t db_bytes(struct db_stmt *st, int i) { return st->db->ops->bytes(st, i); }
int64_t db_int(struct db_stmt *st, int i) { return st->db->ops->integer(st, i); }
bool db_null(struct db_stmt *st, int i) { return st->db->ops->null(st, i); }
bool db_numeric(struct db_stmt *st, int i) { return st->db->ops->numeric(st, i); }

int
db_run(struct db_stmt *st)
{
        int rc;

        while ((rc = db_step(st)) > 0)
                ;
        db_reset(st);
        return rc < 0 ? -1 : (int) db_changes(st);
}
