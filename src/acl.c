/* acl: CIDR allow-list parse and match. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"
#include "util.h"

struct acl_entry {
        int family;             /* AF_INET, AF_INET6, or AF_UNSPEC for "*" */
        unsigned prefix;
        unsigned char addr[16];
};

struct acl {
        struct acl_entry *v;
        size_t n;
};

struct acl *
acl_new(void)
{
        return xcalloc(1, sizeof(struct acl));
}

struct acl *
acl_free(struct acl *a)
{
        if (a == NULL)
                return NULL;
        free(a->v);
        free(a);
        return NULL;
}

size_t
acl_count(const struct acl *a)
{
        return a->n;
}

static void
mask(unsigned char *addr, size_t len, unsigned prefix)
{
        size_t i;

        for (i = 0; i < len; i++) {
                unsigned bits = prefix >= 8 * (i + 1) ? 8 : prefix > 8 * i ? prefix - 8 * i : 0;

                addr[i] &= (unsigned char) (0xff00 >> bits);
        }
}

int
acl_add(struct acl *a, const char *text, char **reterr)
{
        struct acl_entry e = { 0 };
        char host[INET6_ADDRSTRLEN + 1];
        const char *slash = strchr(text, '/');
        size_t hlen = slash ? (size_t) (slash - text) : strlen(text);
        unsigned max;

        if (strcmp(text, "*") == 0) {
                e.family = AF_UNSPEC;
                goto add;
        }
        if (hlen == 0 || hlen >= sizeof(host))
                goto bad;
        memcpy(host, text, hlen);
        host[hlen] = '\0';
        if (inet_pton(AF_INET, host, e.addr) == 1) {
                e.family = AF_INET;
                max = 32;
        } else if (inet_pton(AF_INET6, host, e.addr) == 1) {
                e.family = AF_INET6;
                max = 128;
        } else
                goto bad;
        e.prefix = max;
        if (slash) {
                int64_t p;

                if (str_to_i64(slash + 1, strlen(slash + 1), 0, max, &p) < 0)
                        goto bad;
                e.prefix = (unsigned) p;
        }
        /* Keep the network address only, so 10.1.2.3/8 means 10.0.0.0/8. */
        mask(e.addr, e.family == AF_INET ? 4 : 16, e.prefix);
add:
        a->v = xreallocarray(a->v, a->n + 1, sizeof(*a->v));
        a->v[a->n++] = e;
        return 0;
bad:
        if (reterr)
                *reterr = xasprintf("'%s' is not an address or CIDR (a.b.c.d/n, v6::/n or *)", text);
        return -EINVAL;
}

int
acl_add_list(struct acl *a, const char *list, char **reterr)
{
        char *copy = xstrdup(list), *save = NULL, *tok;
        int r = 0;

        for (tok = strtok_r(copy, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save))
                if ((r = acl_add(a, tok, reterr)) < 0)
                        break;
        free(copy);
        return r;
}

static bool
prefix_eq(const unsigned char *x, const unsigned char *net, unsigned prefix)
{
        unsigned full = prefix / 8, rest = prefix % 8;

        if (memcmp(x, net, full) != 0)
                return false;
        if (rest == 0)
                return true;
        return ((x[full] ^ net[full]) & (unsigned char) (0xff00 >> rest)) == 0;
}

/* Normalise sa into (family, bytes): IPv4-mapped IPv6 becomes IPv4. */
static int
addr_bytes(const struct sockaddr *sa, unsigned char out[16])
{
        if (sa == NULL)
                return AF_UNSPEC;
        if (sa->sa_family == AF_INET) {
                memcpy(out, &((const struct sockaddr_in *) sa)->sin_addr, 4);
                return AF_INET;
        }
        if (sa->sa_family == AF_INET6) {
                const struct in6_addr *in6 = &((const struct sockaddr_in6 *) sa)->sin6_addr;

                if (IN6_IS_ADDR_V4MAPPED(in6)) {
                        memcpy(out, in6->s6_addr + 12, 4);
                        return AF_INET;
                }
                memcpy(out, in6->s6_addr, 16);
                return AF_INET6;
        }
        return AF_UNSPEC;
}

bool
acl_match(const struct acl *a, const struct sockaddr *sa)
{
        unsigned char x[16];
        int fam = addr_bytes(sa, x);
        size_t i;

        for (i = 0; i < a->n; i++) {
                const struct acl_entry *e = &a->v[i];

                if (e->family == AF_UNSPEC)
                        return true;
                if (e->family == fam && prefix_eq(x, e->addr, e->prefix))
                        return true;
        }
        return false;
}

void
acl_format_addr(const struct sockaddr *sa, char out[ACL_ADDR_LEN])
{
        unsigned char x[16];
        int fam = addr_bytes(sa, x);

        if (fam == AF_UNSPEC || inet_ntop(fam, x, out, ACL_ADDR_LEN) == NULL)
                strcpy(out, "unknown");
}
