/* msgcache: recently touched message rows, two generations of chained hash
 * tables (see msgcache.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "msgcache.h"

struct entry {
        struct entry *next;
        uint64_t hash;
        int kind;                       /* 0: by message id, 1: by mailing id, 2: address alone */
        int64_t server_id, rowid;
        char *id;                       /* message_id or mailing_id; NULL for kind 2 */
        char *address;
        struct corr_msg m;              /* its strings are own[] */
        char *own[3];
};

struct gen {
        struct entry **b;
        size_t n;
};

struct msgcache {
        struct gen g[2];                /* [0] young, [1] old */
        size_t cap, nb;                 /* rows a generation takes; buckets */
        uint64_t hits, misses;
};

static int
kind_of(const struct corr_key *k)
{
        return k->message_id ? 0 : k->mailing_id ? 1 : 2;
}

static const char *
id_of(const struct corr_key *k)
{
        return k->message_id ? k->message_id : k->mailing_id;
}

static int
fold(int c)
{
        return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* FNV-1a over the key; the address ASCII-folded, as messages.address
 * compares (COLLATE NOCASE). */
static uint64_t
key_hash(const struct corr_key *k)
{
        uint64_t h = 14695981039346656037ull ^ (uint64_t) kind_of(k);
        const unsigned char *p;
        int i;

        for (i = 0; i < 8; i++)
                h = (h ^ (((uint64_t) k->server_id >> (8 * i)) & 0xff)) * 1099511628211ull;
        for (p = (const unsigned char *) id_of(k); p && *p; p++)
                h = (h ^ *p) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull;
        for (p = (const unsigned char *) k->address; *p; p++)
                h = (h ^ (uint64_t) fold(*p)) * 1099511628211ull;
        return h;
}

static bool
key_eq(const struct entry *e, uint64_t h, const struct corr_key *k)
{
        const char *a = e->address, *b = k->address, *id = id_of(k);

        if (e->hash != h || e->kind != kind_of(k) || e->server_id != k->server_id)
                return false;
        if ((e->id == NULL) != (id == NULL) || (id && strcmp(e->id, id) != 0))
                return false;
        for (; *a && fold((unsigned char) *a) == fold((unsigned char) *b); a++, b++)
                ;
        return *a == '\0' && *b == '\0';
}

/* The link that points to k's entry in g (or to the chain's NULL end). */
static struct entry **
slot(struct msgcache *c, struct gen *g, uint64_t h, const struct corr_key *k)
{
        struct entry **p = &g->b[h & (c->nb - 1)];

        while (*p && !key_eq(*p, h, k))
                p = &(*p)->next;
        return p;
}

static void
entry_free(struct entry *e)
{
        int i;

        for (i = 0; i < 3; i++)
                free(e->own[i]);
        free(e->id);
        free(e->address);
        free(e);
}

static void
gen_clear(struct msgcache *c, struct gen *g)
{
        struct entry *e, *next;
        size_t i;

        for (i = 0; i < c->nb && g->n > 0; i++)
                for (e = g->b[i], g->b[i] = NULL; e; e = next) {
                        next = e->next;
                        entry_free(e);
                        g->n--;
                }
}

struct msgcache *
msgcache_new(size_t capacity)
{
        struct msgcache *c = xcalloc(1, sizeof(*c));

        c->cap = capacity ? capacity : 1;
        for (c->nb = 16; c->nb < 2 * c->cap; c->nb *= 2)
                ;
        c->g[0].b = xcalloc(c->nb, sizeof(struct entry *));
        c->g[1].b = xcalloc(c->nb, sizeof(struct entry *));
        return c;
}

void
msgcache_clear(struct msgcache *c)
{
        gen_clear(c, &c->g[0]);
        gen_clear(c, &c->g[1]);
}

void
msgcache_free(struct msgcache *c)
{
        if (c == NULL)
                return;
        msgcache_clear(c);
        free(c->g[0].b);
        free(c->g[1].b);
        free(c);
}

/* Link e into the young generation; a full one becomes the old one first. */
static void
add_young(struct msgcache *c, struct entry *e)
{
        struct entry **b;

        if (c->g[0].n >= c->cap) {
                gen_clear(c, &c->g[1]);
                b = c->g[1].b;
                c->g[1] = c->g[0];
                c->g[0] = (struct gen) { .b = b };
        }
        b = &c->g[0].b[e->hash & (c->nb - 1)];
        e->next = *b;
        *b = e;
        c->g[0].n++;
}

/* k's entry, moved to the young generation; NULL when absent. */
static struct entry *
lookup(struct msgcache *c, uint64_t h, const struct corr_key *k)
{
        struct entry **p = slot(c, &c->g[0], h, k), *e;

        if (*p)
                return *p;
        p = slot(c, &c->g[1], h, k);
        if ((e = *p) == NULL)
                return NULL;
        *p = e->next;
        c->g[1].n--;
        add_young(c, e);
        return e;
}

int64_t
msgcache_get(struct msgcache *c, const struct corr_key *k, struct corr_msg *m)
{
        struct entry *e = lookup(c, key_hash(k), k);

        if (e == NULL) {
                c->misses++;
                return 0;
        }
        c->hits++;
        *m = e->m;
        return e->rowid;
}

void
msgcache_put(struct msgcache *c, const struct corr_key *k, int64_t id, const struct corr_msg *m)
{
        uint64_t h = key_hash(k);
        struct entry *e = lookup(c, h, k);
        /* m's strings may be e's own: copy them before letting those go. */
        char *own[3] = {
                m->mailing_id ? xstrdup(m->mailing_id) : NULL,
                m->failure_type ? xstrdup(m->failure_type) : NULL,
                m->reason ? xstrdup(m->reason) : NULL,
        };
        int i;

        if (e == NULL) {
                e = xcalloc(1, sizeof(*e));
                e->hash = h;
                e->kind = kind_of(k);
                e->server_id = k->server_id;
                e->id = id_of(k) ? xstrdup(id_of(k)) : NULL;
                e->address = xstrdup(k->address);
                add_young(c, e);
        }
        for (i = 0; i < 3; i++) {
                free(e->own[i]);
                e->own[i] = own[i];
        }
        e->rowid = id;
        e->m = *m;
        e->m.mailing_id = own[0];
        e->m.failure_type = own[1];
        e->m.reason = own[2];
}

void
msgcache_stats(const struct msgcache *c, size_t *rows, uint64_t *hits, uint64_t *misses)
{
        *rows = c->g[0].n + c->g[1].n;
        *hits = c->hits;
        *misses = c->misses;
}
