/* db_pg: the PostgreSQL backend of db.h (libpq), for several instances on
 * one database. Statements are prepared on the server once per connection;
 * a lost connection is made again by the next db_begin(). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "db-backend.h"
#include "util.h"

#define MAX_PARAMS 65535          /* the protocol's: a 16-bit count */

/* How much longer than timeout_ms an answer may take: the server's own
 * statement_timeout and lock_timeout answer first, unless it cannot (a
 * COMMIT waiting for a synchronous standby, a server that stopped). */
#define ANSWER_GRACE_MS 1000

/* What a pipeline waits for, in order. */
struct pending {
        struct pg_stmt *s;              /* NULL: the COMMIT */
        bool prepare;                   /* s's PREPARE, not s itself */
};

struct pg {
        struct db base;
        PGconn *conn;
        bool readonly;
        bool piped;                     /* in pipeline mode */
        bool lost;                      /* the pipeline was left half-read: connect again */
        bool timed_out;                 /* lost: no answer in time (that is the failure to report) */
        struct pending *q;
        size_t nq, qcap;
        unsigned timeout_ms;            /* lock_timeout and statement_timeout, 0: none */
        int64_t share_lock;             /* db_conf's: taken at every connect */
        unsigned gen;                   /* connections made: statements prepared on older ones are gone */
        unsigned next_name;
};

struct pg_stmt {
        struct db_stmt base;
        char *sql;                      /* with $N parameters */
        char name[24];
        unsigned gen;                   /* prepared on this connection (0: not yet) */
        bool stream;
        bool active;                    /* stream: sent, results pending */
        bool queued;                    /* in the pipeline being built */
        bool summed;                    /* res came from a pipeline: changes is its sum */
        int nparams;
        const char **values;            /* nparams */
        char (*num)[32];                /* text of numbers bound, nparams */
        PGresult *res;
        int row, nrows;
        int64_t changes;
};

#define P(d) ((struct pg *) (d))
#define S(s) ((struct pg_stmt *) (s))

/* Record the failure of res (or of the connection when res is NULL). */
static void
fail(struct pg *p, const PGresult *res)
{
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        const char *msg = res ? PQresultErrorMessage(res) : "";

        if (p->timed_out)
                return;                 /* what follows fails for that reason */
        if (!msg[0])
                msg = PQerrorMessage(p->conn);
        if (!msg[0])
                msg = "unknown error";
        if (strncmp(msg, "ERROR:  ", 8) == 0)
                msg += 8;
        db_fail(&p->base, "%s", msg);
        /* serialization_failure, deadlock_detected, and unique_violation:
         * another instance inserted the same key since this transaction
         * looked (its rows are inserted without ON CONFLICT: ids taken in
         * advance must not be skipped). Each runs the transaction again. */
        p->base.conflict = state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
                                     strcmp(state, "23505") == 0);
        p->base.broken = PQstatus(p->conn) != CONNECTION_OK;
        /* lock_not_available (lock_timeout), query_canceled (statement_timeout) */
        p->base.timeout = state && (strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0);
}

/* Wait, at most timeout_ms and the grace, until the next result can be
 * read without blocking. When the time runs out the connection is given
 * up (the next db_begin() connects again) and the failure recorded: a
 * timeout, so the requests get 503 at once; false. A COMMIT cut short this
 * way may still be stored: the event's redelivery is then a duplicate. */
static bool
ready(struct pg *p)
{
        int64_t end;

        if (p->timed_out)
                return false;
        if (p->timeout_ms == 0)
                return true;
        end = time_mono_us() + ((int64_t) p->timeout_ms + ANSWER_GRACE_MS) * 1000;
        while (PQisBusy(p->conn)) {
                struct pollfd pfd = { .fd = PQsocket(p->conn), .events = POLLIN };
                int64_t left = end - time_mono_us();

                if (left <= 0) {
                        db_fail(&p->base, "no answer from the database in %u ms", p->timeout_ms + ANSWER_GRACE_MS);
                        p->base.conflict = false;
                        p->base.broken = p->base.timeout = true;
                        p->lost = p->timed_out = true;
                        return false;
                }
                if (poll(&pfd, 1, (int) ((left + 999) / 1000)) < 0 && errno != EINTR)
                        return true;    /* PQgetResult() reports it */
                if (!PQconsumeInput(p->conn))
                        return true;
        }
        return true;
}

/* PQexec() for a command already sent (sent: the PQsend call's answer),
 * its wait bounded by ready(): the last result, or the first error; NULL
 * when it could not be sent or no answer came in time. */
static PGresult *
answer(struct pg *p, int sent)
{
        PGresult *res, *last = NULL;

        if (!sent)
                return NULL;
        while (ready(p) && (res = PQgetResult(p->conn)) != NULL) {
                if (last && PQresultStatus(last) == PGRES_FATAL_ERROR) {
                        PQclear(res);
                        continue;
                }
                PQclear(last);
                last = res;
        }
        if (p->timed_out) {
                PQclear(last);
                return NULL;
        }
        return last;
}

/* Run one command; true when it succeeded. */
static bool
command(struct pg *p, const char *sql)
{
        PGresult *res = answer(p, PQsendQuery(p->conn, sql));
        ExecStatusType t = PQresultStatus(res);
        bool ok = t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK;

        if (!ok)
                fail(p, res);
        PQclear(res);
        return ok;
}

/* What every connection of ours sets: a COMMIT returns only once it is
 * durable (whatever the server's default), and notices stay off stderr. */
static bool
session_setup(struct pg *p)
{
        char timeouts[96] = "", share[64] = "";

        /* A statement that waits for another session's lock, or runs too
         * long, fails after timeout_ms: the request gets 503 and the
         * watchdog never sees a writer stuck behind it. */
        if (p->timeout_ms)
                snprintf(timeouts, sizeof(timeouts), "; SET lock_timeout = %u; SET statement_timeout = %u",
                         p->timeout_ms, p->timeout_ms);
        /* A writer's statements are the same few, run thousands of times
         * a second, each planned for index lookups whatever its values
         * (store_pg.c): a custom plan at each call (the default, where the
         * generic plan's estimate looks costlier, as for arrays) is only
         * planning time; a sixth of the server's CPU per event. */
        if (!command(p, p->readonly ? "SET client_min_messages = warning; SET default_transaction_read_only = on"
                                    : "SET client_min_messages = warning; SET synchronous_commit = on; "
                                      "SET plan_cache_mode = force_generic_plan") ||
            (timeouts[0] && !command(p, timeouts + 2)))
                return false;
        /* Shared: it never waits, and it goes with the session. */
        if (!p->share_lock || p->readonly)
                return true;
        snprintf(share, sizeof(share), "SELECT pg_advisory_lock_shared(%" PRId64 ")", p->share_lock);
        return command(p, share);
}

/* postgresql://USER@HOST:PORT/DB, a socket directory in brackets: never
 * the password. */
static void
set_name(struct pg *p)
{
        const char *host = PQhost(p->conn);
        bool dir = host && host[0] == '/';

        free(p->base.name);
        p->base.name = xasprintf("postgresql://%s@%s%s%s:%s/%s", PQuser(p->conn), dir ? "[" : "",
                                 host ? host : "", dir ? "]" : "", PQport(p->conn), PQdb(p->conn));
}

static void
pg_close(struct db *d)
{
        struct pg *p = P(d);

        if (p->conn)
                PQfinish(p->conn);
        free(p->q);
        free(p);
}

static int
pg_exec(struct db *d, const char *sql)
{
        return command(P(d), sql) ? 0 : -EIO;
}

static int
pg_begin(struct db *d)
{
        struct pg *p = P(d);

        if (PQstatus(p->conn) != CONNECTION_OK || p->lost) {
                p->lost = p->piped = p->timed_out = false;
                PQreset(p->conn);
                if (PQstatus(p->conn) != CONNECTION_OK) {
                        fail(p, NULL);
                        return -EIO;
                }
                p->gen++;
                set_name(p);            /* a multi-host dsn: maybe another server now */
                if (!session_setup(p))
                        return -EIO;
        }
        /* A writer takes its xid before any id: a reader following the
         * ids then knows which transactions may still fill a gap (query.c). */
        return command(p, p->readonly ? "BEGIN" : "BEGIN; SELECT pg_current_xact_id()") ? 0 : -EIO;
}

static int pg_sync(struct db *d);
static void queue(struct pg *p, struct pg_stmt *s, bool prepare);

static int
pg_commit(struct db *d)
{
        struct pg *p = P(d);
        PGresult *res;

        if (p->piped) {
                if (!PQsendQueryParams(p->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0)) {
                        fail(p, NULL);
                        pg_sync(d);
                        return -EIO;
                }
                queue(p, NULL, false);
                return pg_sync(d);
        }
        res = answer(p, PQsendQuery(p->conn, "COMMIT"));
        int r = 0;

        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                fail(p, res);
                r = -EIO;
        } else if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
                /* COMMIT of a transaction that had failed rolls it back. */
                db_fail(d, "the transaction was rolled back (%s)", PQcmdStatus(res));
                d->conflict = d->broken = false;
                r = -EIO;
        }
        PQclear(res);
        return r;
}

static void
pg_rollback(struct db *d)
{
        struct pg *p = P(d);
        PGTransactionStatusType t;

        if (p->piped) {
                char err[sizeof(d->err)];

                memcpy(err, d->err, sizeof(err));       /* the failure that brought us here */
                pg_sync(d);
                memcpy(d->err, err, sizeof(err));
        }
        if (p->lost)
                return;                 /* the server ends it with the connection */
        t = PQtransactionStatus(p->conn);
        if (t == PQTRANS_INTRANS || t == PQTRANS_INERROR)
                PQclear(PQexec(p->conn, "ROLLBACK"));
}

/* One advisory lock call: sql answers (_, taken). */
static int
advisory(struct pg *p, const char *sql, int64_t key)
{
        char k[24];
        const char *v[1] = { k };
        PGresult *res;
        int r;

        snprintf(k, sizeof(k), "%" PRId64, key);
        res = answer(p, PQsendQueryParams(p->conn, sql, 1, NULL, v, NULL, NULL, 0));
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
                fail(p, res);
                r = -EIO;
        } else
                r = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
        PQclear(res);
        return r;
}

static int
pg_lock(struct db *d, int64_t key, bool wait)
{
        return advisory(P(d), wait ? "SELECT pg_advisory_xact_lock($1::bigint), true"
                                   : "SELECT 0, pg_try_advisory_xact_lock($1::bigint)", key);
}

static int
pg_hold(struct db *d, int64_t key)
{
        return advisory(P(d), "SELECT 0, pg_try_advisory_lock($1::bigint)", key);
}

static int
pg_schema_version(struct db *d)
{
        struct pg *p = P(d);
        PGresult *res = answer(p, PQsendQuery(p->conn, "SELECT to_regclass('slhookd_schema') IS NOT NULL"));
        int v = -EIO;

        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
                fail(p, res);
                PQclear(res);
                return -EIO;
        }
        if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
                PQclear(res);
                return 0;
        }
        PQclear(res);
        res = answer(p, PQsendQuery(p->conn, "SELECT coalesce(max(version), 0) FROM slhookd_schema"));
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
                v = atoi(PQgetvalue(res, 0, 0));
        else
                fail(p, res);
        PQclear(res);
        return v;
}

/* SQLite's parameters (? numbered in order, ?N) as PostgreSQL's $N. */
static char *
convert(const char *sql, int *nparams)
{
        struct buf b = { 0 };
        const char *s;
        char quote = 0;
        int max = 0;

        for (s = sql; *s; s++) {
                if (quote) {
                        if (*s == quote)
                                quote = 0;
                } else if (*s == '\'' || *s == '"')
                        quote = *s;
                else if (*s == '?') {
                        char *end;
                        long k = strtol(s + 1, &end, 10);

                        if (end == s + 1)
                                k = max + 1;
                        if (k > max)
                                max = (int) k;
                        buf_printf(&b, "$%ld", k);
                        s = end - 1;
                        continue;
                }
                buf_append(&b, s, 1);
        }
        *nparams = max;
        return b.data ? b.data : xstrdup("");
}

static int
pg_prepare(struct db *d, const char *sql, unsigned flags, struct db_stmt **ret)
{
        struct pg *p = P(d);
        struct pg_stmt *s = xcalloc(1, sizeof(*s));

        s->base.db = d;
        s->sql = convert(sql, &s->nparams);
        if (s->nparams > MAX_PARAMS) {
                db_fail(d, "internal error: %d parameters in one statement", s->nparams);
                free(s->sql);
                free(s);
                return -EIO;
        }
        s->values = xcalloc(s->nparams ? (size_t) s->nparams : 1, sizeof(*s->values));
        s->num = xcalloc(s->nparams ? (size_t) s->nparams : 1, sizeof(*s->num));
        s->stream = flags & DB_STREAM;
        snprintf(s->name, sizeof(s->name), "slhookd_%u", ++p->next_name);
        *ret = &s->base;
        return 0;
}

/* Read whatever a streamed statement still has coming, so that the
 * connection can run the next one. */
static void
drain(struct pg *p, struct pg_stmt *s)
{
        PGresult *res;

        if (s->active)
                while (ready(p) && (res = PQgetResult(p->conn)) != NULL)
                        PQclear(res);
        s->active = false;
}

static void
pg_reset(struct db_stmt *st)
{
        struct pg_stmt *s = S(st);

        drain(P(st->db), s);
        PQclear(s->res);
        s->res = NULL;
        s->row = s->nrows = 0;
        s->summed = false;
        memset(s->values, 0, (size_t) s->nparams * sizeof(*s->values));
}

static void
pg_finalize(struct db_stmt *st)
{
        struct pg_stmt *s = S(st);
        struct pg *p = P(st->db);
        char *sql;

        pg_reset(st);
        if (s->gen == p->gen && PQstatus(p->conn) == CONNECTION_OK &&
            PQtransactionStatus(p->conn) == PQTRANS_IDLE) {
                sql = xasprintf("DEALLOCATE %s", s->name);
                PQclear(PQexec(p->conn, sql));
                free(sql);
        }
        free(s->values);
        free(s->num);
        free(s->sql);
        free(s);
}

static void
pg_bind_text(struct db_stmt *st, int i, const char *v)
{
        if (i >= 1 && i <= S(st)->nparams)
                S(st)->values[i - 1] = v;
}

static void
pg_bind_int(struct db_stmt *st, int i, int64_t v)
{
        if (i >= 1 && i <= S(st)->nparams) {
                snprintf(S(st)->num[i - 1], sizeof(S(st)->num[0]), "%" PRId64, v);
                S(st)->values[i - 1] = S(st)->num[i - 1];
        }
}

static void
pg_bind_double(struct db_stmt *st, int i, double v)
{
        if (i >= 1 && i <= S(st)->nparams) {
                snprintf(S(st)->num[i - 1], sizeof(S(st)->num[0]), "%.17g", v);
                S(st)->values[i - 1] = S(st)->num[i - 1];
        }
}

static void
pg_bind_null(struct db_stmt *st, int i)
{
        pg_bind_text(st, i, NULL);
}

/* A finished command's result: the rows it changed. */
static void
finished(struct pg_stmt *s, const PGresult *res)
{
        const char *n = PQcmdTuples((PGresult *) res);

        s->changes = n[0] ? strtoll(n, NULL, 10) : 0;
}

static int
step_stream(struct pg *p, struct pg_stmt *s)
{
        ExecStatusType t;

        if (!s->active) {
                if (!PQsendQueryParams(p->conn, s->sql, s->nparams, NULL, s->values, NULL, NULL, 0)) {
                        fail(p, NULL);
                        return -EIO;
                }
                s->active = true;
                PQsetSingleRowMode(p->conn);
        }
        PQclear(s->res);
        s->res = ready(p) ? PQgetResult(p->conn) : NULL;
        s->row = 0;
        if (p->timed_out) {
                s->active = false;
                return -EIO;
        }
        t = PQresultStatus(s->res);
        if (s->res && t == PGRES_SINGLE_TUPLE)
                return 1;
        if (s->res && t != PGRES_TUPLES_OK && t != PGRES_COMMAND_OK) {
                fail(p, s->res);
                return -EIO;
        }
        if (s->res)
                finished(s, s->res);
        /* s->res stays, the last (empty) result: it names the columns. */
        drain(p, s);
        s->nrows = 0;
        return 0;
}

static int
pg_step(struct db_stmt *st)
{
        struct pg_stmt *s = S(st);
        struct pg *p = P(st->db);
        ExecStatusType t;

        if (s->stream)
                return step_stream(p, s);
        if (s->res == NULL) {
                if (s->gen != p->gen) {
                        PGresult *res = answer(p, PQsendPrepare(p->conn, s->name, s->sql, s->nparams, NULL));

                        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                                fail(p, res);
                                PQclear(res);
                                return -EIO;
                        }
                        PQclear(res);
                        s->gen = p->gen;
                }
                s->res = answer(p, PQsendQueryPrepared(p->conn, s->name, s->nparams, s->values, NULL, NULL, 0));
                t = PQresultStatus(s->res);
                if (t != PGRES_TUPLES_OK && t != PGRES_COMMAND_OK) {
                        fail(p, s->res);
                        PQclear(s->res);
                        s->res = NULL;
                        return -EIO;
                }
                s->nrows = t == PGRES_TUPLES_OK ? PQntuples(s->res) : 0;
                s->row = -1;
        }
        if (++s->row < s->nrows)
                return 1;
        if (!s->summed)
                finished(s, s->res);
        return 0;
}

static void
queue(struct pg *p, struct pg_stmt *s, bool prepare)
{
        if (p->nq == p->qcap) {
                p->qcap = p->qcap ? 2 * p->qcap : 16;
                p->q = xreallocarray(p->q, p->qcap, sizeof(*p->q));
        }
        p->q[p->nq++] = (struct pending) { .s = s, .prepare = prepare };
}

static int
pg_send(struct db_stmt *st)
{
        struct pg_stmt *s = S(st);
        struct pg *p = P(st->db);

        if (!p->piped) {
                if (!PQenterPipelineMode(p->conn)) {
                        fail(p, NULL);
                        return -EIO;
                }
                p->piped = true;
        }
        PQclear(s->res);
        s->res = NULL;
        s->row = s->nrows = 0;
        if (!s->queued)
                s->changes = 0;
        s->queued = true;
        if (s->gen != p->gen) {
                if (!PQsendPrepare(p->conn, s->name, s->sql, s->nparams, NULL)) {
                        fail(p, NULL);
                        return -EIO;
                }
                queue(p, s, true);
                s->gen = p->gen;
        }
        if (!PQsendQueryPrepared(p->conn, s->name, s->nparams, s->values, NULL, NULL, 0)) {
                fail(p, NULL);
                return -EIO;
        }
        queue(p, s, false);
        memset(s->values, 0, (size_t) s->nparams * sizeof(*s->values));        /* sent: copied */
        return 0;
}

/* One queued command's result; false when it failed (the first failure
 * is the one recorded). */
static bool
collect(struct pg *p, struct pending *e, PGresult *res, bool failed)
{
        ExecStatusType t = PQresultStatus(res);

        if (t == PGRES_FATAL_ERROR || t == PGRES_PIPELINE_ABORTED || res == NULL) {
                if (!failed)
                        fail(p, t == PGRES_FATAL_ERROR ? res : NULL);
                if (e->prepare)
                        e->s->gen = 0;          /* not prepared after all */
                PQclear(res);
                return false;
        }
        if (e->s == NULL) {
                bool ok = strcmp(PQcmdStatus(res), "COMMIT") == 0;

                if (!ok && !failed) {
                        db_fail(&p->base, "the transaction was rolled back (%s)", PQcmdStatus(res));
                        p->base.conflict = p->base.broken = false;
                }
                PQclear(res);
                return ok;
        }
        if (e->prepare) {
                PQclear(res);
                return true;
        }
        PQclear(e->s->res);
        e->s->res = res;
        e->s->nrows = t == PGRES_TUPLES_OK ? PQntuples(res) : 0;
        e->s->row = -1;
        e->s->summed = true;
        {
                const char *n = PQcmdTuples(res);

                e->s->changes += n[0] ? strtoll(n, NULL, 10) : 0;
        }
        return true;
}

static int
pg_sync(struct db *d)
{
        struct pg *p = P(d);
        bool failed = false, committed = false;
        PGresult *res;
        size_t i;

        if (!p->piped)
                return 0;
        if (!PQpipelineSync(p->conn)) {
                /* Nothing will answer what was sent: start over. */
                fail(p, NULL);
                for (i = 0; i < p->nq; i++)
                        if (p->q[i].s)
                                p->q[i].s->queued = false;
                p->nq = 0;
                p->piped = false;
                p->lost = p->base.broken = true;
                return -EIO;
        }
        for (i = 0; i < p->nq; i++) {
                struct pending *e = &p->q[i];

                if (e->s)
                        e->s->queued = false;
                if (failed && PQstatus(p->conn) != CONNECTION_OK)
                        continue;
                if (!ready(p)) {                /* false at once once timed out */
                        failed = true;
                        continue;
                }
                res = PQgetResult(p->conn);
                if (!collect(p, e, res, failed))
                        failed = true;
                else if (e->s == NULL)
                        committed = true;
                /* Each command's results end with a NULL. */
                while (res != NULL && ready(p) && (res = PQgetResult(p->conn)) != NULL)
                        PQclear(res);
        }
        p->nq = 0;
        /* The sync's own result, then out of pipeline mode. */
        while (PQstatus(p->conn) == CONNECTION_OK && ready(p) && (res = PQgetResult(p->conn)) != NULL) {
                ExecStatusType t = PQresultStatus(res);

                PQclear(res);
                if (t == PGRES_PIPELINE_SYNC)
                        break;
        }
        if (p->timed_out) {
                /* Left half-read: the next db_begin() connects again. */
                p->piped = false;
                return committed ? 0 : -EIO;
        }
        if (PQstatus(p->conn) != CONNECTION_OK || !PQexitPipelineMode(p->conn)) {
                p->lost = true;         /* the next db_begin() connects again */
                /* The server said COMMIT: the transaction is stored,
                 * whatever ends the connection after it (a fast shutdown
                 * terminates the session before the sync's answer). */
                if (!committed) {
                        if (!failed)
                                fail(p, NULL);
                        p->base.broken = true;
                        failed = true;
                }
        }
        p->piped = false;
        return failed ? -EIO : 0;
}

static int64_t pg_changes(struct db_stmt *st) { return S(st)->changes; }
static int pg_columns(struct db_stmt *st) { return S(st)->res ? PQnfields(S(st)->res) : 0; }

static const char *
pg_column_name(struct db_stmt *st, int i)
{
        return S(st)->res ? PQfname(S(st)->res, i) : NULL;
}

static bool
pg_null(struct db_stmt *st, int i)
{
        struct pg_stmt *s = S(st);

        return s->res == NULL || s->row >= PQntuples(s->res) || PQgetisnull(s->res, s->row, i);
}

static const char *
pg_text(struct db_stmt *st, int i)
{
        return pg_null(st, i) ? NULL : PQgetvalue(S(st)->res, S(st)->row, i);
}

static size_t
pg_bytes(struct db_stmt *st, int i)
{
        return pg_null(st, i) ? 0 : (size_t) PQgetlength(S(st)->res, S(st)->row, i);
}

static int64_t
pg_integer(struct db_stmt *st, int i)
{
        const char *v = pg_text(st, i);

        return v ? strtoll(v, NULL, 10) : 0;
}

static bool
pg_numeric(struct db_stmt *st, int i)
{
        /* int8, int2, int4, float4, float8, numeric (pg_type.dat) */
        switch (PQftype(S(st)->res, i)) {
        case 20: case 21: case 23: case 700: case 701: case 1700:
                return !pg_null(st, i);
        default:
                return false;
        }
}

static const struct db_ops pg_ops = {
        .close = pg_close, .exec = pg_exec, .begin = pg_begin, .commit = pg_commit,
        .rollback = pg_rollback, .lock = pg_lock, .hold = pg_hold, .schema_version = pg_schema_version,
        .prepare = pg_prepare, .finalize = pg_finalize, .bind_text = pg_bind_text,
        .bind_int = pg_bind_int, .bind_double = pg_bind_double, .bind_null = pg_bind_null,
        .step = pg_step, .reset = pg_reset, .changes = pg_changes, .columns = pg_columns,
        .column_name = pg_column_name, .text = pg_text, .bytes = pg_bytes, .integer = pg_integer,
        .null = pg_null, .numeric = pg_numeric, .send = pg_send, .sync = pg_sync,
};

int
db_pg_dsn_check(const char *dsn, bool *has_password, char **reterr)
{
        PQconninfoOption *opts, *o;
        char *err = NULL;

        *has_password = false;
        if ((opts = PQconninfoParse(dsn, &err)) == NULL) {
                *reterr = xstrdup(err ? err : "out of memory");
                db_one_line(*reterr);
                PQfreemem(err);
                return -EINVAL;
        }
        for (o = opts; o->keyword; o++)
                if (strcmp(o->keyword, "password") == 0 && o->val && o->val[0])
                        *has_password = true;
        PQconninfoFree(opts);
        return 0;
}

int
db_pg_open(const struct db_conf *c, unsigned flags, struct db **ret, char **reterr)
{
        /* Defaults first: the DSN's own settings, then the password, win.
         * Keepalives notice a server gone silent (a failover) in ~25 s. */
        const char *keys[] = { "connect_timeout", "keepalives_idle", "keepalives_interval", "keepalives_count",
                               "tcp_user_timeout", "application_name", "dbname", "password", NULL };
        const char *vals[] = { "10", "10", "5", "3", "30000", flags & DB_READONLY ? "slhookctl" : "slhookd",
                               c->dsn, c->password, NULL };
        struct pg *p = xcalloc(1, sizeof(*p));

        p->base.ops = &pg_ops;
        p->base.backend = DB_POSTGRESQL;
        p->readonly = flags & DB_READONLY;
        p->timeout_ms = c->timeout_ms;
        p->share_lock = c->share_lock;
        if (c->password == NULL)
                keys[7] = NULL;
        p->conn = PQconnectdbParams(keys, vals, 1);
        if (p->conn == NULL || PQstatus(p->conn) != CONNECTION_OK) {
                char *msg = xstrdup(p->conn ? PQerrorMessage(p->conn) : "out of memory");

                db_one_line(msg);
                *reterr = xasprintf("postgresql: cannot connect: %s", msg);
                free(msg);
                goto fail;
        }
        set_name(p);
        p->gen = 1;
        if (!session_setup(p)) {
                *reterr = xasprintf("%s: %s", p->base.name, db_errmsg(&p->base));
                goto fail;
        }
        *ret = &p->base;
        return 0;
fail:
        free(p->base.name);
        pg_close(&p->base);
        return -EIO;
}
