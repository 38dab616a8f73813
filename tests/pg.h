/* PostgreSQL for the end-to-end tests (check_pg, check_ha): a connection,
 * a command, one number, the mail events they post, and a daemon with
 * [api] on a database. Include once, after daemon.h and fake_api.h, in a
 * build with libpq. */
#ifndef SLHOOKD_TESTS_PG_H
#define SLHOOKD_TESTS_PG_H

#include <libpq-fe.h>

static inline PGconn *
pg_connect(const char *conninfo)
{
        PGconn *c = PQconnectdb(conninfo);

        ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s: %s", conninfo, PQerrorMessage(c));
        return c;
}

static inline void
pg_exec(const char *conninfo, const char *sql)
{
        PGconn *c = pg_connect(conninfo);
        PGresult *r = PQexec(c, sql);

        ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
                      "%s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(c);
}

/* The one value sql answers on conninfo's database (a copy). */
static inline char *
pq_text(const char *conninfo, const char *sql)
{
        PGconn *c = pg_connect(conninfo);
        PGresult *r = PQexec(c, sql);
        char *v;

        ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "%s: %s", sql,
                      PQresultErrorMessage(r));
        v = xstrdup(PQgetvalue(r, 0, 0));
        PQclear(r);
        PQfinish(c);
        return v;
}

/* The one value sql answers, as a number. */
static inline long long
pq_at(const char *conninfo, const char *sql)
{
        char *s = pq_text(conninfo, sql);
        long long v = strtoll(s, NULL, 10);

        free(s);
        return v;
}

/* Advisory locks held on the current database, in exclusive mode (each
 * writer holds one shared, to be counted: store_writer.c). */
#define HELD "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted " \
             "AND mode = 'ExclusiveLock' " \
             "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"

/* A new database of its own for a test on cluster (a libpq connection
 * string): its name (t_PID_N), *dsn the cluster's with it, *store_lines
 * the [store] lines of a daemon on it. */
static inline char *
pg_test_db(const char *cluster, char **dsn, char **store_lines)
{
        static unsigned dbs;
        char *name = xasprintf("t_%ld_%u", (long) getpid(), ++dbs), *sql = xasprintf("CREATE DATABASE %s", name);

        pg_exec(cluster, sql);
        free(sql);
        /* A later keyword wins: the cluster's, with our database. */
        *dsn = xasprintf("%s dbname=%s", cluster, name);
        *store_lines = xasprintf("backend = postgresql\ndsn = %s\n", *dsn);
        return name;
}

/* A Sent or Failed event of message n, at a time of its own. */
static inline char *
mail_event(const char *type, unsigned n, int at_s)
{
        return xasprintf("{\"Type\":\"%s\",\"SecretKey\":\"" T_SECRET "\",\"DateTime\":\"2026-03-01T10:%02d:%02dZ\","
                         "\"ServerId\":7,\"MessageId\":\"m-%u\",\"Address\":\"rcpt%u@example.com\""
                         "%s}", type, at_s / 60 % 60, at_s % 60, n, n,
                         strcmp(type, "Failed") == 0 ? ",\"FailureType\":\"Permanent\",\"FailureCode\":5001,"
                                                       "\"Reason\":\"mailbox gone\"" : "");
}

#define API_KEY "live-api-key-3b9e1d"

/* A new daemon in d on the database of store ([store] lines) with [api]
 * on the fake API: the public URL of the instance at url_port (where the
 * load balancer would send the test event; 0: its own), a self-test every
 * interval seconds, each API call bounded by timeout seconds. */
static inline void
start_pg_api_on(const char *store, struct fake_api *f, unsigned url_port, unsigned interval, unsigned timeout)
{
        char *key_file, *api;

        memset(&d, 0, sizeof(d));
        daemon_listen();
        key_file = file_in("api-key");
        t_write(key_file, API_KEY "\n");
        free(key_file);
        d.api_key = API_KEY;
        api = xasprintf("[api]\n"
                        "base_url = https://127.0.0.1:%u/v2\n"
                        "key_file = api-key\n"
                        "endpoint = main\n"
                        "public_url = https://127.0.0.1:%u/socketlabs/events\n"
                        "ca_file = %s/cert.pem\n"
                        "self_test_interval = %u\n"
                        "self_test_timeout = %u\n",
                        fake_api_port(f), url_port ? url_port : d.port, certdir, interval, timeout);
        d.store = store;
        daemon_start("", api);
        free(api);
}

#endif
