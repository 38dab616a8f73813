/* migrate: copy a SQLite database into PostgreSQL (see migrate.h).
 *
 * events and quarantine only ever gain rows (an id and a digest each), in id
 * order: a run starts past the last id the destination holds when that row
 * is the source's own (same digest), and inserts with ON CONFLICT DO
 * NOTHING. A row that conflicts must be there already: under its id with its
 * digest, or (a redelivery an instance stored there) under another id. An id
 * that holds another event means the destination has rows of its own: the
 * run stops there rather than skip history. messages, event_counts,
 * health_counts and webhook_status change in place: every run walks them whole and updates the
 * rows that differ, so the source's latest state wins. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate.h"
#include "store.h"
#include "util.h"

static const struct table {
        const char *name;
        const char *key;        /* the order of the walk, the conflict target */
        bool append;            /* rows are only added: id and digest */
} tables[MIGRATE_TABLES] = {
        { "events", "id", true },
        { "messages", "id", false },
        { "event_counts", "hour, type", false },
        { "quarantine", "id", true },
        { "webhook_status", "endpoint", false },
        { "health_counts", "hour, server_id, mailing_id, kind", false },
        { "health_hours", "hour, server_id", false },
};

struct run {
        struct db *src, *dst;
        const struct table *t;
        struct migrate_count *c;
        migrate_progress_fn progress;
        void *arg;
        char *err;
};

static int __attribute__((format(printf, 3, 4)))
failed(struct run *r, struct db *db, const char *fmt, ...)
{
        va_list ap;
        char *what;

        if (r->err)
                return -EIO;
        va_start(ap, fmt);
        if (vasprintf(&what, fmt, ap) < 0)
                what = NULL;
        va_end(ap);
        r->err = xasprintf("%s: %s: %s", db_name(db), what ? what : "out of memory", db_errmsg(db));
        free(what);
        return -EIO;
}

/* The one value of sql (with ?1 = arg when has_arg): 1 and *v, 0 when NULL
 * or no row, -EIO. */
static int
one_int(struct run *r, struct db *db, const char *sql, bool has_arg, int64_t arg, int64_t *v)
{
        struct db_stmt *st;
        int k;

        if (db_prepare(db, sql, 0, &st) < 0)
                return failed(r, db, "%s", sql);
        if (has_arg)
                db_bind_int(st, 1, arg);
        k = db_step(st);
        if (k < 0) {
                db_finalize(st);
                return failed(r, db, "%s", sql);
        }
        if (k == 1 && db_null(st, 0))
                k = 0;
        if (k == 1)
                *v = db_int(st, 0);
        db_finalize(st);
        return k;
}

/* The digest of row id (allocated), or NULL with *rc 0 (no row) or -EIO. */
static char *
digest_of(struct run *r, struct db *db, int64_t id, int *rc)
{
        char *sql = xasprintf("SELECT digest FROM %s WHERE id = ?", r->t->name), *v = NULL;
        struct db_stmt *st;

        *rc = 0;
        if (db_prepare(db, sql, 0, &st) < 0) {
                *rc = failed(r, db, "%s", sql);
                free(sql);
                return NULL;
        }
        db_bind_int(st, 1, id);
        if ((*rc = db_step(st)) == 1 && db_text(st, 0))
                v = xstrdup(db_text(st, 0));
        else if (*rc < 0)
                failed(r, db, "%s", sql);
        db_finalize(st);
        free(sql);
        return v;
}

/* The destination holds another row than the source's under id. */
static int
foreign(struct run *r, int64_t id)
{
        r->err = xasprintf("%s: %s id %" PRId64 " holds another row than the source's: this database has rows "
                           "of its own. Migrate into a database no slhookd instance has written to, and start "
                           "the instances once it is done", db_name(r->dst), r->t->name, id);
        return -EEXIST;
}

/* Where an append table's walk starts: past the destination's last id when
 * that row is the source's; at the beginning when the source no longer has
 * it (retention), so that every row is checked. */
static int
resume_point(struct run *r, int64_t *from)
{
        char *sql, *a = NULL, *b = NULL;
        int64_t src_max, dst_max;
        int k, ka, kb;

        *from = 0;
        sql = xasprintf("SELECT max(id) FROM %s", r->t->name);
        k = one_int(r, r->src, sql, false, 0, &src_max);
        free(sql);
        if (k <= 0)
                return k;
        sql = xasprintf("SELECT max(id) FROM %s WHERE id <= ?", r->t->name);
        k = one_int(r, r->dst, sql, true, src_max, &dst_max);
        free(sql);
        if (k <= 0)
                return k;
        a = digest_of(r, r->src, dst_max, &ka);
        b = digest_of(r, r->dst, dst_max, &kb);
        if (ka < 0 || kb < 0)
                k = -EIO;
        else if (a && b && strcmp(a, b) == 0)
                *from = dst_max;
        else if (a)
                k = foreign(r, dst_max);
        free(a);
        free(b);
        return k < 0 ? k : 0;
}

static bool
is_key(const struct table *t, const char *col)
{
        size_t n = strlen(col);
        const char *k = t->key;

        while (*k) {
                size_t len = strcspn(k, ", ");

                if (len == n && strncmp(k, col, n) == 0)
                        return true;
                k += len;
                k += strspn(k, ", ");
        }
        return false;
}

/* The destination's statement for the source's columns. */
static char *
insert_sql(const struct table *t, struct db_stmt *src)
{
        struct buf b = { 0 }, set = { 0 }, old = { 0 }, new = { 0 };
        int i, n = db_columns(src);

        buf_printf(&b, "INSERT INTO %s (", t->name);
        for (i = 0; i < n; i++)
                buf_printf(&b, "%s\"%s\"", i ? ", " : "", db_column_name(src, i));
        buf_puts(&b, ") VALUES (");
        for (i = 0; i < n; i++)
                buf_printf(&b, "%s?%d", i ? ", " : "", i + 1);
        if (t->append) {
                buf_puts(&b, ") ON CONFLICT DO NOTHING");
        } else {
                for (i = 0; i < n; i++) {
                        const char *c = db_column_name(src, i);

                        if (is_key(t, c))
                                continue;
                        buf_printf(&set, "%s\"%s\" = excluded.\"%s\"", set.len ? ", " : "", c, c);
                        buf_printf(&old, "%s%s.\"%s\"", old.len ? ", " : "", t->name, c);
                        buf_printf(&new, "%sexcluded.\"%s\"", new.len ? ", " : "", c);
                }
                buf_printf(&b, ") ON CONFLICT (%s) DO UPDATE SET %.*s WHERE (%.*s) IS DISTINCT FROM (%.*s) "
                           "RETURNING (xmax = 0)", t->key, (int) set.len, set.data, (int) old.len, old.data,
                           (int) new.len, new.data);
                buf_done(&set);
                buf_done(&old);
                buf_done(&new);
        }
        buf_append(&b, "", 0);
        return b.data;
}

static int
column(struct db_stmt *st, const char *name)
{
        int i;

        for (i = 0; i < db_columns(st); i++)
                if (strcmp(db_column_name(st, i), name) == 0)
                        return i;
        return -1;
}

/* An append row the destination refused: there already, or another's. */
static int
conflict(struct run *r, struct db_stmt *src, int id_col, int digest_col)
{
        int64_t id = db_int(src, id_col);
        const char *want = db_text(src, digest_col);
        char *have;
        int k;

        have = digest_of(r, r->dst, id, &k);
        if (k < 0)
                return k;
        if (have && strcmp(have, want) != 0) {
                free(have);
                return foreign(r, id);
        }
        free(have);
        r->c->unchanged++;      /* under its id, or stored under another by an instance */
        return 0;
}

static int
copy_table(struct run *r)
{
        const struct table *t = r->t;
        struct db_stmt *src = NULL, *ins = NULL;
        int64_t from = 0, total = 0, rows = 0;
        uint64_t done = 0;
        int id_col = -1, digest_col = -1, k, rc = 0, i;
        bool open = false;
        char *sql;

        if (t->append && (rc = resume_point(r, &from)) < 0)
                return rc;
        sql = xasprintf("SELECT count(*) FROM %s", t->name);
        k = one_int(r, r->src, sql, false, 0, &rows);
        free(sql);
        if (k < 0)
                return -EIO;
        total = rows;
        if (t->append) {
                sql = xasprintf("SELECT count(*) FROM %s WHERE id > ?", t->name);
                k = one_int(r, r->src, sql, true, from, &total);
                free(sql);
                if (k < 0)
                        return -EIO;
        }
        r->c->rows = (uint64_t) rows;
        r->c->unchanged = (uint64_t) (rows - total);
        if (r->progress)
                r->progress(r->c, 0, (uint64_t) total, r->arg);

        sql = t->append ? xasprintf("SELECT * FROM %s WHERE id > ? ORDER BY id", t->name)
                        : xasprintf("SELECT * FROM %s ORDER BY %s", t->name, t->key);
        if (db_prepare(r->src, sql, DB_STREAM, &src) < 0) {
                rc = failed(r, r->src, "%s", sql);
                free(sql);
                return rc;
        }
        free(sql);
        if (t->append)
                db_bind_int(src, 1, from);
        while ((k = db_step(src)) == 1) {
                if (ins == NULL) {
                        sql = insert_sql(t, src);
                        if (db_prepare(r->dst, sql, 0, &ins) < 0)
                                rc = failed(r, r->dst, "%s: cannot write the source's columns", t->name);
                        free(sql);
                        id_col = column(src, "id");
                        digest_col = column(src, "digest");
                        if (rc == 0 && t->append && (id_col < 0 || digest_col < 0)) {
                                r->err = xasprintf("%s: %s has no id or digest column", db_name(r->src),
                                                   t->name);
                                rc = -EINVAL;
                        }
                        if (rc < 0)
                                break;
                }
                if (!open && db_begin(r->dst) < 0) {
                        rc = failed(r, r->dst, "%s: cannot begin a transaction", t->name);
                        break;
                }
                open = true;
                for (i = 0; i < db_columns(src); i++)
                        db_bind_text(ins, i + 1, db_text(src, i));
                if (t->append) {
                        if ((k = db_run(ins)) < 0) {
                                rc = failed(r, r->dst, "%s id %" PRId64, t->name, db_int(src, id_col));
                                break;
                        }
                        if (k == 1)
                                r->c->copied++;
                        else if ((rc = conflict(r, src, id_col, digest_col)) < 0)
                                break;
                } else {
                        if ((k = db_step(ins)) < 0) {
                                rc = failed(r, r->dst, "%s %s %s", t->name, db_column_name(src, 0),
                                            db_text(src, 0));
                                break;
                        }
                        if (k == 0)
                                r->c->unchanged++;
                        else if (strcmp(db_text(ins, 0), "t") == 0)
                                r->c->copied++;
                        else
                                r->c->updated++;
                        db_reset(ins);
                }
                if (++done % MIGRATE_BATCH == 0) {
                        open = false;
                        if (db_commit(r->dst) < 0) {
                                rc = failed(r, r->dst, "%s: cannot commit", t->name);
                                break;
                        }
                        if (r->progress)
                                r->progress(r->c, done, (uint64_t) total, r->arg);
                }
        }
        if (k < 0 && rc == 0)
                rc = failed(r, r->src, "cannot read %s", t->name);
        if (open && rc == 0 && db_commit(r->dst) < 0)
                rc = failed(r, r->dst, "%s: cannot commit", t->name);
        else if (open && rc < 0)
                db_rollback(r->dst);
        if (rc == 0 && done % MIGRATE_BATCH && r->progress)
                r->progress(r->c, done, (uint64_t) total, r->arg);
        db_finalize(ins);
        db_finalize(src);
        return rc;
}

/* Identity columns go on past the ids copied (never back). */
static const char set_sequences[] =
        "SELECT setval(s, m) FROM (SELECT CAST(pg_get_serial_sequence(t, 'id') AS regclass) AS s, m "
        "  FROM (SELECT 'events' AS t, (SELECT max(id) FROM events) AS m "
        "        UNION ALL SELECT 'messages', (SELECT max(id) FROM messages) "
        "        UNION ALL SELECT 'quarantine', (SELECT max(id) FROM quarantine)) AS a) AS b "
        " WHERE m > coalesce(pg_sequence_last_value(s), 0)";

/* The source at this build's schema version: older ones are upgraded as
 * slhookd would at start-up. */
static int
source_ready(const struct db_conf *from, char **reterr)
{
        struct db *db = NULL;
        struct store *s = NULL;
        int v, want = store_schema_version();

        if (db_open(from, DB_READONLY, &db, reterr) < 0)
                return -EIO;
        v = db_schema_version(db);
        if (v < 0)
                *reterr = xasprintf("%s: cannot read the schema version: %s", db_name(db), db_errmsg(db));
        else if (v == 0)
                *reterr = xasprintf("%s: not a slhookd database (no schema)", db_name(db));
        else if (v > want)
                *reterr = xasprintf("%s: schema version %d is newer than this slhookctl's (%d)", db_name(db), v,
                                    want);
        db_close(db);
        if (v <= 0 || v > want)
                return -EINVAL;
        if (v < want) {
                if (store_open(from, &s, reterr) < 0)
                        return -EIO;
                store_close(s);
        }
        return 0;
}

int
migrate_run(const struct db_conf *from, const struct db_conf *to, migrate_progress_fn progress, void *arg,
            struct migrate_count counts[MIGRATE_TABLES], char **reterr)
{
        struct run r = { .progress = progress, .arg = arg };
        struct store *s = NULL;
        size_t i;
        int rc = 0;

        *reterr = NULL;
        if (from->backend != DB_SQLITE || to->backend != DB_POSTGRESQL) {
                *reterr = xstrdup("migrate copies a SQLite database into a PostgreSQL one");
                return -EINVAL;
        }
        if ((rc = source_ready(from, reterr)) < 0)
                return rc;
        /* The destination's schema, made or upgraded as an instance would. */
        if (store_open(to, &s, reterr) < 0)
                return -EIO;
        store_close(s);
        if (db_open(from, DB_READONLY, &r.src, reterr) < 0)
                return -EIO;
        if (db_open(to, 0, &r.dst, reterr) < 0) {
                db_close(r.src);
                return -EIO;
        }
        /* One snapshot of the source, however long the copy takes. */
        if (db_exec(r.src, "BEGIN") < 0)
                rc = failed(&r, r.src, "cannot begin a read transaction");
        for (i = 0; rc == 0 && i < MIGRATE_TABLES; i++) {
                r.t = &tables[i];
                r.c = &counts[i];
                memset(r.c, 0, sizeof(*r.c));
                r.c->table = tables[i].name;
                rc = copy_table(&r);
        }
        if (rc == 0 && db_exec(r.dst, set_sequences) < 0)
                rc = failed(&r, r.dst, "cannot move the id sequences past the ids copied");
        db_exec(r.src, "ROLLBACK");
        db_close(r.src);
        db_close(r.dst);
        if (rc == -EIO && r.err) {
                *reterr = xasprintf("%s (what was copied stays: run it again to go on)", r.err);
                free(r.err);
        } else {
                *reterr = r.err;
        }
        return rc;
}
