/* What a backend of db.h provides: db.c checks the arguments common to all
 * and dispatches here. Each backend's struct db and struct db_stmt begin
 * with the common part below. */
#ifndef SLHOOKD_DB_BACKEND_H
#define SLHOOKD_DB_BACKEND_H

#include "db.h"

struct db_ops {
        void (*close)(struct db *db);
        int (*exec)(struct db *db, const char *sql);
        int (*begin)(struct db *db);
        int (*commit)(struct db *db);
        void (*rollback)(struct db *db);
        int (*lock)(struct db *db, int64_t key, bool wait);
        int (*hold)(struct db *db, int64_t key);
        int (*schema_version)(struct db *db);
        void (*progress)(struct db *db, void (*fn)(void *), void *arg);     /* optional */
        int (*prepare)(struct db *db, const char *sql, unsigned flags, struct db_stmt **ret);
        void (*finalize)(struct db_stmt *st);
        void (*bind_text)(struct db_stmt *st, int i, const char *v);
        void (*bind_int)(struct db_stmt *st, int i, int64_t v);
        void (*bind_double)(struct db_stmt *st, int i, double v);
        void (*bind_null)(struct db_stmt *st, int i);
        int (*step)(struct db_stmt *st);
        void (*reset)(struct db_stmt *st);
        int64_t (*changes)(struct db_stmt *st);
        int (*columns)(struct db_stmt *st);
        const char *(*column_name)(struct db_stmt *st, int i);
        const char *(*text)(struct db_stmt *st, int i);
        size_t (*bytes)(struct db_stmt *st, int i);
        int64_t (*integer)(struct db_stmt *st, int i);
        bool (*null)(struct db_stmt *st, int i);
        bool (*numeric)(struct db_stmt *st, int i);
        int (*send)(struct db_stmt *st);        /* NULL: no pipeline */
        int (*sync)(struct db *db);
};

struct db {
        const struct db_ops *ops;
        enum db_backend backend;
        char *name;
        char err[1024];                 /* db_errmsg */
        bool conflict, broken, timeout; /* of the last failure */
};

struct db_stmt {
        struct db *db;
};

/* db_err.c, below the front and the backends: */

/* Make s one line: line breaks become spaces, a trailing one goes.
 * libpq's messages end in one and carry DETAIL and HINT lines. */
void db_one_line(char *s);

/* Set db's error message (one line) for a failure. */
void db_fail(struct db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The backends, which db.c opens: */
int db_sqlite_open(const struct db_conf *c, unsigned flags, struct db **ret, char **reterr);
int db_pg_dsn_check(const char *dsn, bool *has_password, char **reterr);
int db_pg_open(const struct db_conf *c, unsigned flags, struct db **ret, char **reterr);

#endif
