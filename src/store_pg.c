/* store_pg: a transaction's mail events, set-based on PostgreSQL (see
 * store_pg.h), in two round trips whatever its size (libpq's pipeline):
 *   1. sent together, one wait: the duplicate check (the digests already
 *      stored, one statement); the message rows its events belong to, FOR
 *      UPDATE, one statement per kind of key (message id, mailing id,
 *      address alone) that it has, each locking in key order, the kinds
 *      always in that order, so that two instances take their locks in one
 *      order and cannot deadlock; and an id for each key, in advance;
 *   2. queued, answered with the COMMIT: the messages the events touched,
 *      brought up to date, in one statement (the new ones inserted, those
 *      found in 1 written back by primary key); the events inserted,
 *      linked to their messages; the store's hourly counts.
 * Another instance that creates one of the new messages, or stores one of
 * the events, between 1 and 2 makes an insert fail on a unique index: that
 * is a conflict, and the store runs the transaction again, which then
 * finds it.
 * Addresses are citext, which folds case as the database's LC_CTYPE does:
 * ASCII letters here, as SQLite's NOCASE, unless a batch has an address
 * beyond ASCII; then a round before round 1 asks the database how it folds
 * the batch's addresses, so that the store groups them as the unique
 * indexes do (in a UTF-8 database "Émile" and "émile" are one message). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corr.h"
#include "store_pg.h"

enum { SP_SEEN, SP_BY_MESSAGE, SP_BY_MAILING, SP_BY_ADDRESS, SP_IDS, SP_FOLD, SP_COUNT };

/* Rows (events, or messages) written by one statement at most; a
 * statement is prepared for each number of rows up to it, when first
 * needed. */
#define MAX_ROWS 64

#define MSG_NCOLS (5 + 2 + CT_COUNT + CC_COUNT + 3)
#define EVENT_NCOLS (12 + EVS_COUNT + EVN_COUNT)
/* The columns of a found message row before its key's ordinal (find_sql):
 * its id and its state. */
#define FIND_NCOLS (1 + 2 + CT_COUNT + CC_COUNT + 3)
#define NARR 3

/* One message row the transaction writes. */
struct msg {
        struct corr_key k;              /* borrowed from its first event */
        const char *fold;               /* and its fold, or NULL */
        struct corr_msg m;
        int64_t id;                     /* the row's, or taken for it in advance */
        bool found;                     /* its row was read in round 1 */
        bool touched;                   /* a new event of the transaction is its */
        bool is_test;                   /* one of its events is */
        char *own[3];                   /* copies of the row's strings m points to */
};

struct item {
        struct store_job *job;
        struct event *ev;
        struct corr_key k;              /* its message's, when keyed */
        char *fold;                     /* k.address as the database folds it, or NULL: as ASCII */
        bool keyed;
        struct msg *msg;                /* or NULL: no message, or a redelivery */
        bool dup;
};

struct store_pg {
        struct db *db;
        struct db_stmt *st[SP_COUNT];
        struct db_stmt *events[MAX_ROWS + 1];  /* [n]: the insert of n rows, or NULL */
        struct db_stmt *messages[MAX_ROWS + 1];        /* [n]: the write of n rows, or NULL */
        struct item *items;
        size_t n, cap;
        struct msg *msgs;
        size_t nmsgs;
        struct item **by_digest;        /* the items, in digest order */
        struct msg **keyed[3];          /* by kind of key, the messages in the order round 1 sent them */
        size_t nkeyed[3];
        bool sent[SP_COUNT];            /* queued in the first round */
        struct buf arr[NARR];
};

static int
key_kind(const struct corr_key *k)
{
        return k->message_id ? 0 : k->mailing_id ? 1 : 2;
}

/* citext in the "C" collation: ASCII letters fold, nothing else does. */
static int
ascii_casecmp(const char *a, const char *b)
{
        for (;; a++, b++) {
                int x = (unsigned char) *a, y = (unsigned char) *b;

                x += x >= 'A' && x <= 'Z' ? 'a' - 'A' : 0;
                y += y >= 'A' && y <= 'Z' ? 'a' - 'A' : 0;
                if (x != y || x == 0)
                        return x - y;
        }
}

/* The order of the keys, equal where the database's unique indexes are:
 * addresses compare by their folds when both have one. */
static int
key_cmp(const struct corr_key *a, const char *fa, const struct corr_key *b, const char *fb)
{
        int c = key_kind(a) - key_kind(b);

        if (c == 0 && a->server_id != b->server_id)
                c = a->server_id < b->server_id ? -1 : 1;
        if (c == 0 && key_kind(a) < 2)
                c = strcmp(key_kind(a) == 0 ? a->message_id : a->mailing_id,
                           key_kind(b) == 0 ? b->message_id : b->mailing_id);
        if (c)
                return c;
        return fa && fb ? strcmp(fa, fb) : ascii_casecmp(a->address, b->address);
}

void
store_pg_arr_text(struct buf *b, const char *v)
{
        const char *p, *q;

        buf_puts(b, b->len ? "," : "{");
        if (v == NULL) {
                buf_puts(b, "NULL");
                return;
        }
        buf_puts(b, "\"");
        for (p = v; (q = strpbrk(p, "\"\\")) != NULL; p = q + 1) {
                buf_append(b, p, (size_t) (q - p));
                buf_append(b, "\\", 1);
                buf_append(b, q, 1);
        }
        buf_puts(b, p);
        buf_puts(b, "\"");
}

void
store_pg_arr_int(struct buf *b, bool has, int64_t v)
{
        buf_puts(b, b->len ? "," : "{");
        if (has)
                buf_printf(b, "%lld", (long long) v);
        else
                buf_puts(b, "NULL");
}

void
store_pg_arr_end(struct buf *b)
{
        buf_puts(b, b->len ? "}" : "{}");
}

static void
msg_columns(struct buf *b, const char *prefix, const char *suffix)
{
        size_t i;

        buf_printf(b, "%smailing_id%s, %sstate%s", prefix, suffix, prefix, suffix);
        for (i = 0; i < CT_COUNT; i++)
                buf_printf(b, ", %s%s%s", prefix, corr_time_columns[i], suffix);
        for (i = 0; i < CC_COUNT; i++)
                buf_printf(b, ", %s%s%s", prefix, corr_count_columns[i], suffix);
        buf_printf(b, ", %sfailure_type%s, %sfailure_code%s, %sreason%s", prefix, suffix, prefix, suffix, prefix,
                   suffix);
}

static char *
find_sql(int which)
{
        static const char *const keys[] = {
                [SP_BY_MESSAGE] = "message_id, address, server_id",
                [SP_BY_MAILING] = "mailing_id, address, server_id",
                [SP_BY_ADDRESS] = "address, server_id",
        };
        static const char *const where[] = {
                /* The id tests let the planner pick the partial unique indexes. */
                [SP_BY_MESSAGE] = "x.message_id = k.message_id AND x.address = k.address "
                                  "AND x.server_id = k.server_id AND x.message_id IS NOT NULL",
                [SP_BY_MAILING] = "x.mailing_id = k.mailing_id AND x.address = k.address "
                                  "AND x.server_id = k.server_id AND x.message_id IS NULL",
                [SP_BY_ADDRESS] = "x.address = k.address AND x.server_id = k.server_id "
                                  "AND x.mailing_id IS NULL AND x.message_id IS NULL",
        };
        struct buf b = { 0 };

        /* One unique-index lookup a key, locked in the order of the keys
         * (store_pg_flush sorts them, as every instance does): a LATERAL
         * subquery with LIMIT is planned alone, so its plan is the
         * row-by-row one, whatever the statistics. A join could be planned
         * as a hash join over a whole table that was tiny when the plan was
         * cached: seen on a table growing from empty under load, 2 ms and
         * growing for 16 keys. */
        buf_puts(&b, "SELECT m.*, k.i FROM unnest(");
        buf_puts(&b, which == SP_BY_ADDRESS ? "CAST(?1 AS citext[]), CAST(?2 AS bigint[])" :
                 "CAST(?1 AS text[]), CAST(?2 AS citext[]), CAST(?3 AS bigint[])");
        buf_printf(&b, ") WITH ORDINALITY AS k(%s, i) CROSS JOIN LATERAL "
                   "(SELECT x.id, ", keys[which]);
        msg_columns(&b, "x.", "");
        buf_printf(&b, " FROM messages AS x WHERE %s LIMIT 1 FOR UPDATE) AS m ORDER BY k.i", where[which]);
        return b.data;
}

/* "(?, ?, ...), ..." for n rows of ncols parameters. */
static void
values_rows(struct buf *b, size_t n, size_t ncols)
{
        size_t i, k;

        for (k = 0; k < n; k++) {
                buf_puts(b, k ? ", (?" : "(?");
                for (i = 1; i < ncols; i++)
                        buf_puts(b, ", ?");
                buf_puts(b, ")");
        }
}

/* The messages an event of the transaction touched, n rows, new or found
 * alike: a new one has an id taken in advance (SP_IDS) and is inserted; a
 * found one conflicts on its id and is written back, found through the
 * primary key (an UPDATE ... FROM a list could be planned as a hash join
 * over the whole table: see find_sql). A key another instance inserted
 * meanwhile conflicts on the other unique indexes, which ON CONFLICT (id)
 * does not arbitrate: a unique violation, and the transaction runs again
 * (db_pg counts it a conflict). A multi-row VALUES: unnest over the 23
 * column arrays cost three times as much in the server. */
static char *
write_msg_sql(size_t n)
{
        struct buf b = { 0 };
        size_t i;

        buf_puts(&b, "INSERT INTO messages AS m (id, server_id, message_id, address, is_test, ");
        msg_columns(&b, "", "");
        buf_puts(&b, ") VALUES ");
        values_rows(&b, n, MSG_NCOLS);
        buf_puts(&b, " ON CONFLICT (id) DO UPDATE SET mailing_id = excluded.mailing_id, state = excluded.state");
        for (i = 0; i < CT_COUNT; i++)
                buf_printf(&b, ", %s = excluded.%s", corr_time_columns[i], corr_time_columns[i]);
        for (i = 0; i < CC_COUNT; i++)
                buf_printf(&b, ", %s = excluded.%s", corr_count_columns[i], corr_count_columns[i]);
        /* A message any of whose events is a test is a test message. */
        buf_puts(&b, ", failure_type = excluded.failure_type, failure_code = excluded.failure_code, "
                 "reason = excluded.reason, is_test = CASE WHEN excluded.is_test <> 0 THEN 1 ELSE m.is_test END");
        return b.data;
}

/* The events: a multi-row VALUES of n rows, one parameter a column.
 * unnest over the 40 column arrays cost twice as much in the server (each
 * array unpacked into a store of its own), and the values need no
 * escaping. */
static char *
insert_event_sql(size_t n)
{
        struct buf b = { 0 };
        size_t i;

        buf_puts(&b, "INSERT INTO events (received_at, endpoint, type, wire_type, occurred_at, meta, tags, is_test, "
                 "peer, raw, digest, message");
        for (i = 0; i < EVS_COUNT; i++)
                buf_printf(&b, ", %s", event_str_fields[i].column);
        for (i = 0; i < EVN_COUNT; i++)
                buf_printf(&b, ", %s", event_num_fields[i].column);
        buf_puts(&b, ") VALUES ");
        values_rows(&b, n, EVENT_NCOLS);
        /* In row order: ids follow the order the events came in. No ON
         * CONFLICT (digest): an event another instance stored since the
         * duplicate check is a unique violation, and the transaction runs
         * again, where the check finds it. */
        return b.data;
}

int
store_pg_open(struct db *db, struct store_pg **ret)
{
        struct store_pg *p = xcalloc(1, sizeof(*p));
        char *sql[SP_COUNT] = {
                /* LATERAL, LIMIT: one index lookup a digest (find_sql). */
                [SP_SEEN] = xstrdup("SELECT e.digest FROM unnest(CAST(?1 AS text[])) AS d(digest) CROSS JOIN LATERAL "
                                    "(SELECT x.digest FROM events AS x WHERE x.digest = d.digest LIMIT 1) AS e"),
                [SP_BY_MESSAGE] = find_sql(SP_BY_MESSAGE),
                [SP_BY_MAILING] = find_sql(SP_BY_MAILING),
                [SP_BY_ADDRESS] = find_sql(SP_BY_ADDRESS),
                /* The sequence named once, in an InitPlan: as nextval()'s
                 * argument it was looked up again for every row (60 us a
                 * call of ~6.5 rows, 32 us this way). */
                [SP_IDS] = xstrdup("SELECT nextval((SELECT CAST(pg_get_serial_sequence('messages', 'id') AS regclass))) "
                                   "FROM generate_series(1, CAST(?1 AS integer))"),
                /* citext folds with the database's default collation. */
                [SP_FOLD] = xstrdup("SELECT lower(a COLLATE \"default\") FROM unnest(CAST(?1 AS text[])) "
                                    "WITH ORDINALITY AS u(a, i) ORDER BY i"),
        };
        int i, r = 0;

        p->db = db;
        for (i = 0; i < SP_COUNT; i++) {
                if (r == 0 && db_prepare(db, sql[i], 0, &p->st[i]) < 0)
                        r = -EIO;
                free(sql[i]);
        }
        if (r < 0)
                store_pg_close(p);
        else
                *ret = p;
        return r;
}

static void
msgs_clear(struct store_pg *p)
{
        size_t i;
        int k;

        for (i = 0; i < p->nmsgs; i++)
                for (k = 0; k < 3; k++)
                        free(p->msgs[i].own[k]);
        free(p->msgs);
        p->msgs = NULL;
        p->nmsgs = 0;
}

static void
folds_clear(struct store_pg *p)
{
        size_t i;

        for (i = 0; i < p->n; i++) {
                free(p->items[i].fold);
                p->items[i].fold = NULL;
        }
}

void
store_pg_close(struct store_pg *p)
{
        int i;

        if (p == NULL)
                return;
        for (i = 0; i < SP_COUNT; i++)
                db_finalize(p->st[i]);
        for (i = 0; i <= MAX_ROWS; i++) {
                db_finalize(p->events[i]);
                db_finalize(p->messages[i]);
        }
        for (i = 0; i < NARR; i++)
                buf_done(&p->arr[i]);
        folds_clear(p);
        msgs_clear(p);
        for (i = 0; i < 3; i++)
                free(p->keyed[i]);
        free(p->by_digest);
        free(p->items);
        free(p);
}

void
store_pg_clear(struct store_pg *p)
{
        folds_clear(p);
        p->n = 0;
        msgs_clear(p);
}

#define STR_(x) #x
#define STR(x) STR_(x)
#define TOO_LONG(field) \
        "field '" field "' is longer than " STR(STORE_PG_MAX_KEY) " bytes, more than PostgreSQL's indexes take"

const char *
store_pg_unindexable(const struct event *ev)
{
        static const struct { int field; const char *why; } keys[] = {
                { EVS_MESSAGE_ID, TOO_LONG("MessageId") },
                { EVS_MAILING_ID, TOO_LONG("MailingId") },
                { EVS_ADDRESS, TOO_LONG("Address") },
        };
        size_t i;

        if (strlen(ev->type) > STORE_PG_MAX_KEY)
                return TOO_LONG("Type");
        for (i = 0; i < ARRAY_SIZE(keys); i++)
                if (ev->str[keys[i].field] && strlen(ev->str[keys[i].field]) > STORE_PG_MAX_KEY)
                        return keys[i].why;
        return NULL;
}

void
store_pg_add(struct store_pg *p, struct store_job *job, struct event *ev)
{
        if (p->n == p->cap) {
                p->cap = p->cap ? 2 * p->cap : 64;
                p->items = xreallocarray(p->items, p->cap, sizeof(*p->items));
        }
        p->items[p->n] = (struct item) { .job = job, .ev = ev };
        p->items[p->n].keyed = corr_key(ev, &p->items[p->n].k);
        p->n++;
}

static void
arrs_reset(struct store_pg *p)
{
        int i;

        for (i = 0; i < NARR; i++) {
                p->arr[i].len = 0;
                if (p->arr[i].data)
                        p->arr[i].data[0] = '\0';
        }
}

/* Bind arrays [0, n) as parameters 1..n. */
static void
arrs_bind(struct store_pg *p, struct db_stmt *st, int n)
{
        int i;

        for (i = 0; i < n; i++) {
                store_pg_arr_end(&p->arr[i]);
                db_bind_text(st, i + 1, p->arr[i].data);
        }
}

static int
item_digest_cmp(const void *a, const void *b)
{
        const struct item *const *x = a, *const *y = b;
        int c = strcmp((*x)->ev->digest, (*y)->ev->digest);

        return c ? c : *x < *y ? -1 : *x > *y;
}

static int
str_cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Round 1: the digests already stored, in one statement (in-batch
 * duplicates are marked here). */
static int
send_seen(struct store_pg *p)
{
        struct item **v = p->by_digest = xreallocarray(p->by_digest, p->n, sizeof(*v));
        size_t i;

        for (i = 0; i < p->n; i++)
                v[i] = &p->items[i];
        qsort(v, p->n, sizeof(*v), item_digest_cmp);
        arrs_reset(p);
        for (i = 0; i < p->n; i++) {
                v[i]->dup = i > 0 && strcmp(v[i]->ev->digest, v[i - 1]->ev->digest) == 0;
                if (!v[i]->dup)
                        store_pg_arr_text(&p->arr[0], v[i]->ev->digest);
        }
        arrs_bind(p, p->st[SP_SEEN], 1);
        p->sent[SP_SEEN] = true;
        return db_send(p->st[SP_SEEN]);
}

static int
read_seen(struct store_pg *p)
{
        struct db_stmt *st = p->st[SP_SEEN];
        char **seen = NULL;
        size_t i, nseen = 0, cap = 0;
        int rc;

        while ((rc = db_step(st)) > 0) {
                if (nseen == cap) {
                        cap = cap ? 2 * cap : 16;
                        seen = xreallocarray(seen, cap, sizeof(*seen));
                }
                seen[nseen++] = xstrdup(db_text(st, 0));
        }
        db_reset(st);
        if (rc == 0 && nseen > 0) {
                qsort(seen, nseen, sizeof(*seen), str_cmp);
                for (i = 0; i < p->n; i++) {
                        const char *d = p->by_digest[i]->ev->digest;

                        p->by_digest[i]->dup |= bsearch(&d, seen, nseen, sizeof(*seen), str_cmp) != NULL;
                }
        }
        for (i = 0; i < nseen; i++)
                free(seen[i]);
        free(seen);
        return rc < 0 ? -1 : 0;
}

/* Before round 1, only for a batch with an address beyond ASCII: how the
 * database folds each keyed event's address, in one round trip. */
static int
fold_addresses(struct store_pg *p)
{
        struct db_stmt *st = p->st[SP_FOLD];
        const unsigned char *a;
        size_t i;
        int rc;

        folds_clear(p);
        for (i = 0; i < p->n; i++) {
                if (!p->items[i].keyed)
                        continue;
                for (a = (const unsigned char *) p->items[i].k.address; *a && *a < 0x80; a++)
                        ;
                if (*a)
                        break;
        }
        if (i == p->n)
                return 0;
        arrs_reset(p);
        for (i = 0; i < p->n; i++)
                if (p->items[i].keyed)
                        store_pg_arr_text(&p->arr[0], p->items[i].k.address);
        arrs_bind(p, st, 1);
        if (db_send(st) < 0 || db_sync(p->db) < 0)
                return -1;
        for (i = 0; (rc = db_step(st)) > 0;) {
                while (i < p->n && !p->items[i].keyed)
                        i++;
                if (i < p->n)
                        p->items[i++].fold = xstrdup(db_text(st, 0));
        }
        db_reset(st);
        if (rc < 0)
                return -1;
        /* Every keyed address folded, or none: folds compare only with folds. */
        for (i = 0; i < p->n; i++)
                if (p->items[i].keyed && p->items[i].fold == NULL) {
                        folds_clear(p);
                        return -1;
                }
        return 0;
}

static int
item_key_cmp(const void *a, const void *b)
{
        const struct item *const *x = a, *const *y = b;
        int c = key_cmp(&(*x)->k, (*x)->fold, &(*y)->k, (*y)->fold);

        return c ? c : *x < *y ? -1 : *x > *y;
}

/* One message per distinct key of the events, in key order; each event
 * points to its own. (Which events are redeliveries is not known yet: a
 * message only they name is read, but neither inserted nor written.) */
static void
gather_messages(struct store_pg *p)
{
        struct item **v = xreallocarray(NULL, p->n, sizeof(*v));
        size_t i, n = 0;

        for (i = 0; i < p->n; i++)
                if (p->items[i].keyed)
                        v[n++] = &p->items[i];
        qsort(v, n, sizeof(*v), item_key_cmp);
        p->msgs = xcalloc(n ? n : 1, sizeof(*p->msgs));
        for (i = 0; i < n; i++) {
                if (p->nmsgs == 0 || key_cmp(&p->msgs[p->nmsgs - 1].k, p->msgs[p->nmsgs - 1].fold, &v[i]->k,
                                             v[i]->fold) != 0) {
                        p->msgs[p->nmsgs].k = v[i]->k;
                        p->msgs[p->nmsgs].fold = v[i]->fold;
                        corr_init(&p->msgs[p->nmsgs].m);
                        p->nmsgs++;
                }
                v[i]->msg = &p->msgs[p->nmsgs - 1];
        }
        free(v);
}

static char *
own(struct msg *x, int i, const char *s)
{
        free(x->own[i]);
        return x->own[i] = s ? xstrdup(s) : NULL;
}

/* Round 1: the rows of the messages that exist, read and locked, one
 * statement per kind of key; and as many new ids as there are keys. */
static int
send_finds(struct store_pg *p)
{
        int which;

        for (which = SP_BY_MESSAGE; which <= SP_BY_ADDRESS; which++) {
                struct db_stmt *st = p->st[which];
                int kind = which - SP_BY_MESSAGE, nkeys = 0;
                size_t i;

                p->keyed[kind] = xreallocarray(p->keyed[kind], p->nmsgs ? p->nmsgs : 1, sizeof(**p->keyed));
                arrs_reset(p);
                for (i = 0; i < p->nmsgs; i++) {
                        const struct corr_key *k = &p->msgs[i].k;
                        int a = 0;

                        if (key_kind(k) != kind)
                                continue;
                        if (kind < 2)
                                store_pg_arr_text(&p->arr[a++], kind == 0 ? k->message_id : k->mailing_id);
                        store_pg_arr_text(&p->arr[a++], k->address);
                        store_pg_arr_int(&p->arr[a++], true, k->server_id);
                        p->keyed[kind][nkeys++] = &p->msgs[i];
                }
                p->nkeyed[kind] = (size_t) nkeys;
                if (nkeys == 0)
                        continue;
                arrs_bind(p, st, kind < 2 ? 3 : 2);
                p->sent[which] = true;
                if (db_send(st) < 0)
                        return -1;
        }
        if (p->nmsgs == 0)
                return 0;
        db_bind_int(p->st[SP_IDS], 1, (int64_t) p->nmsgs);
        p->sent[SP_IDS] = true;
        return db_send(p->st[SP_IDS]);
}

static int
read_finds(struct store_pg *p)
{
        int which, rc = 0;
        size_t i = 0;

        for (which = SP_BY_MESSAGE; which <= SP_BY_ADDRESS && rc == 0; which++) {
                struct db_stmt *st = p->st[which];

                if (!p->sent[which])
                        continue;
                /* A row is its key's, by the key's place in the list sent:
                 * the row's own address may be another spelling of it. */
                while ((rc = db_step(st)) > 0) {
                        int64_t ord = db_int(st, FIND_NCOLS);
                        struct msg *x;
                        struct corr_msg *m;
                        const char *t;
                        int c = 1, j;

                        if (ord < 1 || (size_t) ord > p->nkeyed[which - SP_BY_MESSAGE])
                                continue;
                        x = p->keyed[which - SP_BY_MESSAGE][ord - 1];
                        if (x->found)
                                continue;
                        x->found = true;
                        x->id = db_int(st, 0);
                        m = &x->m;
                        m->mailing_id = own(x, 0, db_text(st, c++));
                        m->state = corr_state(db_text(st, c++));
                        for (j = 0; j < CT_COUNT; j++, c++)
                                if ((t = db_text(st, c)) != NULL)
                                        snprintf(m->t[j], TIME_ISO_LEN, "%s", t);
                        for (j = 0; j < CC_COUNT; j++)
                                m->n[j] = db_int(st, c++);
                        m->failure_type = own(x, 1, db_text(st, c++));
                        m->has_failure_code = !db_null(st, c);
                        m->failure_code = db_int(st, c++);
                        m->reason = own(x, 2, db_text(st, c++));
                }
                db_reset(st);
        }
        if (rc < 0 || !p->sent[SP_IDS])
                return rc < 0 ? -1 : 0;
        /* The ids taken, to the messages not found. */
        while ((rc = db_step(p->st[SP_IDS])) > 0) {
                while (i < p->nmsgs && p->msgs[i].found)
                        i++;
                if (i < p->nmsgs)
                        p->msgs[i++].id = db_int(p->st[SP_IDS], 0);
        }
        db_reset(p->st[SP_IDS]);
        return rc < 0 ? -1 : 0;
}

/* stmts[n], prepared from make(n) when first needed. */
static struct db_stmt *
rows_stmt(struct store_pg *p, struct db_stmt **stmts, size_t n, char *(*make)(size_t))
{
        if (stmts[n] == NULL) {
                char *sql = make(n);

                db_prepare(p->db, sql, 0, &stmts[n]);
                free(sql);
        }
        return stmts[n];
}

/* Bind message x's row from parameter a on; the next one after it. */
static int
bind_msg(struct db_stmt *st, int a, const struct msg *x)
{
        const struct corr_msg *m = &x->m;
        int j;

        db_bind_int(st, a++, x->id);
        db_bind_int(st, a++, x->k.server_id);
        db_bind_text(st, a++, x->k.message_id);
        db_bind_text(st, a++, x->k.address);
        db_bind_int(st, a++, x->is_test);
        db_bind_text(st, a++, m->mailing_id);
        db_bind_text(st, a++, m->state);
        for (j = 0; j < CT_COUNT; j++)
                db_bind_text(st, a++, m->t[j][0] ? m->t[j] : NULL);
        for (j = 0; j < CC_COUNT; j++)
                db_bind_int(st, a++, m->n[j]);
        db_bind_text(st, a++, m->failure_type);
        db_bind_opt_int(st, a++, m->has_failure_code, m->failure_code);
        db_bind_text(st, a++, m->reason);
        return a;
}

/* Round 2: the messages a new event touched, found or new, in key order,
 * MAX_ROWS a statement. */
static int
send_messages(struct store_pg *p)
{
        const struct msg *v[MAX_ROWS];
        size_t i, k, n = 0;

        for (i = 0; i <= p->nmsgs; i++) {
                if (n == MAX_ROWS || (i == p->nmsgs && n > 0)) {
                        struct db_stmt *st = rows_stmt(p, p->messages, n, write_msg_sql);
                        int a = 1;

                        if (st == NULL)
                                return -1;
                        for (k = 0; k < n; k++)
                                a = bind_msg(st, a, v[k]);
                        if (db_send(st) < 0)
                                return -1;
                        n = 0;
                }
                if (i < p->nmsgs && p->msgs[i].touched)
                        v[n++] = &p->msgs[i];
        }
        return 0;
}

/* Round 2: queue the insert of n events (items v[0..n)). */
static int
send_event_rows(struct store_pg *p, struct item *const *v, size_t n)
{
        struct db_stmt *st = rows_stmt(p, p->events, n, insert_event_sql);
        size_t k;
        int a = 1, c;

        if (st == NULL)
                return -1;
        for (k = 0; k < n; k++) {
                const struct item *it = v[k];
                const struct event *ev = it->ev;

                db_bind_text(st, a++, it->job->received_at);
                db_bind_text(st, a++, it->job->endpoint);
                db_bind_text(st, a++, ev->type);
                db_bind_text(st, a++, ev->wire_type);
                db_bind_text(st, a++, ev->occurred_at[0] ? ev->occurred_at : NULL);
                db_bind_text(st, a++, ev->meta);
                db_bind_text(st, a++, ev->tags);
                db_bind_int(st, a++, ev->is_test);
                db_bind_text(st, a++, it->job->peer);
                db_bind_text(st, a++, ev->raw);
                db_bind_text(st, a++, ev->digest);
                db_bind_opt_int(st, a++, it->msg != NULL, it->msg ? it->msg->id : 0);
                for (c = 0; c < EVS_COUNT; c++)
                        db_bind_text(st, a++, ev->str[c]);
                for (c = 0; c < EVN_COUNT; c++)
                        db_bind_opt_int(st, a++, ev->has_num[c], ev->num[c]);
        }
        return db_send(st);
}

/* Round 2: the new events, MAX_ROWS a statement. */
static int
send_events(struct store_pg *p)
{
        struct item *v[MAX_ROWS];
        size_t i, n = 0;

        for (i = 0; i <= p->n; i++) {
                if (n == MAX_ROWS || (i == p->n && n > 0)) {
                        if (send_event_rows(p, v, n) < 0)
                                return -1;
                        n = 0;
                }
                if (i < p->n && !p->items[i].dup)
                        v[n++] = &p->items[i];
        }
        return 0;
}

int
store_pg_flush(struct store_pg *p, store_pg_apply_fn apply,
               void (*done)(void *arg, struct store_job *job, struct event *ev, bool stored), void *arg)
{
        size_t i;

        if (p->n == 0)
                return 0;
        memset(p->sent, 0, sizeof(p->sent));
        if (fold_addresses(p) < 0)
                return -1;
        gather_messages(p);
        /* Round 1, one wait: the duplicates, the message rows, new ids. */
        if (send_seen(p) < 0 || send_finds(p) < 0 || db_sync(p->db) < 0 || read_seen(p) < 0 ||
            read_finds(p) < 0)
                return -1;
        /* The messages brought up to date, event by event as they came. */
        for (i = 0; i < p->n; i++) {
                struct item *it = &p->items[i];

                if (it->dup || it->msg == NULL)
                        continue;
                apply(arg, &it->msg->k, &it->msg->m, it->ev, it->job->received_at);
                it->msg->is_test |= it->ev->is_test;
                it->msg->touched = true;
        }
        /* Round 2, queued: its answers come with the COMMIT's. */
        if (send_messages(p) < 0 || send_events(p) < 0)
                return -1;
        for (i = 0; i < p->n; i++)
                done(arg, p->items[i].job, p->items[i].ev, !p->items[i].dup);
        return 0;
}
