/* cfg: INI configuration via inih, table-driven, with file:line errors. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <ini.h>

#include "cfg.h"
#include "util.h"

enum sect { S_SERVER, S_ENDPOINT, S_STORE, S_API, S_LOG, S_METRICS, S_FORWARD, S_HEALTH };

static const char *const sect_names[] = {
        "server", "endpoint", "store", "api", "log", "metrics", "forward", "health",
};

enum kind { K_STR, K_PATH, K_UINT, K_CUSTOM };

struct parser;
typedef int (*custom_fn)(struct parser *p, const char *value);

struct key {
        enum sect sect;
        const char *name;
        enum kind kind;
        size_t off;             /* into struct cfg, struct cfg_endpoint (S_ENDPOINT) or cfg_forward (S_FORWARD) */
        int64_t min, max;
        custom_fn fn;
        bool list;              /* may repeat: values accumulate */
};

struct parser {
        struct cfg *cfg;
        FILE *f;
        int line;
        int sect;               /* -1 before the first section */
        struct cfg_endpoint *ep;
        struct cfg_forward *fw;
        const struct key *key;
        char *err;
        char *allow_text;       /* accumulated lists */
        char *proxies_text;
        char *listen_text;
        uint64_t seen[8];       /* per-section bitmap of keys already given */
        char *cur_section;      /* the section of the key being read */
        int section_line;       /* line of the last "[...]" header */
        bool new_section;       /* a header was read since the last key */
};

static int parse_listen(struct parser *p, const char *v);
static int parse_list(struct parser *p, const char *v);
static int parse_sync(struct parser *p, const char *v);
static int parse_backend(struct parser *p, const char *v);
static int parse_format(struct parser *p, const char *v);
static int parse_level(struct parser *p, const char *v);
static int parse_dsn(struct parser *p, const char *v);
static int parse_words(struct parser *p, const char *v);
static int parse_rate(struct parser *p, const char *v);
static int parse_duration(struct parser *p, const char *v);

#define C(f) offsetof(struct cfg, f)
#define E(f) offsetof(struct cfg_endpoint, f)
#define F(f) offsetof(struct cfg_forward, f)
static const struct key keys[] = {
        { S_SERVER, "listen", K_CUSTOM, 0, 0, 0, parse_listen, false },
        { S_SERVER, "tls_cert", K_PATH, C(tls_cert), 0, 0, NULL, false },
        { S_SERVER, "tls_key", K_PATH, C(tls_key), 0, 0, NULL, false },
        { S_SERVER, "tls_priorities", K_STR, C(tls_priorities), 0, 0, NULL, false },
        { S_SERVER, "allow", K_CUSTOM, 0, 0, 0, parse_list, true },
        { S_SERVER, "trusted_proxies", K_CUSTOM, 0, 0, 0, parse_list, true },
        { S_SERVER, "max_body", K_UINT, C(max_body), 64, 64 * 1024 * 1024, NULL, false },
        { S_SERVER, "threads", K_UINT, C(threads), 0, 256, NULL, false },
        { S_SERVER, "timeout", K_UINT, C(timeout), 1, 3600, NULL, false },
        { S_SERVER, "max_connections", K_UINT, C(max_connections), 1, 1000000, NULL, false },
        { S_SERVER, "max_connections_per_ip", K_UINT, C(max_connections_per_ip), 0, 1000000, NULL, false },
        { S_ENDPOINT, "path", K_STR, E(path), 0, 0, NULL, false },
        { S_ENDPOINT, "secret_file", K_PATH, E(secret_file), 0, 0, NULL, false },
        { S_ENDPOINT, "secret", K_STR, E(secret_inline), 0, 0, NULL, false },
        { S_ENDPOINT, "validation_key", K_STR, E(validation_key), 0, 0, NULL, false },
        { S_STORE, "database", K_PATH, C(database), 0, 0, NULL, false },
        { S_STORE, "synchronous", K_CUSTOM, 0, 0, 0, parse_sync, false },
        { S_STORE, "retention_days", K_UINT, C(retention_days), 0, 100000, NULL, false },
        { S_STORE, "queue_size", K_UINT, C(queue_size), 1, 1000000, NULL, false },
        { S_STORE, "statement_timeout", K_UINT, C(statement_timeout), 1, 3600, NULL, false },
        { S_STORE, "backend", K_CUSTOM, 0, 0, 0, parse_backend, false },
        { S_STORE, "dsn", K_CUSTOM, 0, 0, 0, parse_dsn, false },
        { S_STORE, "password_file", K_PATH, C(db_password_file), 0, 0, NULL, false },
        { S_API, "base_url", K_STR, C(api_base_url), 0, 0, NULL, false },
        { S_API, "key_file", K_PATH, C(api_key_file), 0, 0, NULL, false },
        { S_API, "endpoint", K_STR, C(api_endpoint), 0, 0, NULL, false },
        { S_API, "public_url", K_STR, C(api_public_url), 0, 0, NULL, false },
        { S_API, "webhook_id", K_STR, C(api_webhook_id), 0, 0, NULL, false },
        { S_API, "ca_file", K_PATH, C(api_ca_file), 0, 0, NULL, false },
        { S_API, "self_test_interval", K_UINT, C(api_self_test_interval), 10, 86400 * 7, NULL, false },
        { S_API, "self_test_timeout", K_UINT, C(api_self_test_timeout), 1, 3600, NULL, false },
        { S_LOG, "format", K_CUSTOM, 0, 0, 0, parse_format, false },
        { S_LOG, "level", K_CUSTOM, 0, 0, 0, parse_level, false },
        { S_METRICS, "listen", K_STR, C(metrics_listen), 0, 0, NULL, false },
        { S_FORWARD, "url", K_STR, F(url), 0, 0, NULL, false },
        { S_FORWARD, "types", K_CUSTOM, F(types), 0, 0, parse_words, true },
        { S_FORWARD, "endpoints", K_CUSTOM, F(endpoints), 0, 0, parse_words, true },
        { S_FORWARD, "server_ids", K_CUSTOM, F(server_ids), 0, 0, parse_words, true },
        { S_FORWARD, "secret_file", K_PATH, F(secret_file), 0, 0, NULL, false },
        { S_FORWARD, "batch", K_UINT, F(batch), 1, 500, NULL, false },
        { S_FORWARD, "timeout", K_UINT, F(timeout), 1, 3600, NULL, false },
        { S_FORWARD, "ca_file", K_PATH, F(ca_file), 0, 0, NULL, false },
        { S_HEALTH, "complaint_rate_warn", K_CUSTOM, C(health.complaint_rate_warn), 0, 0, parse_rate, false },
        { S_HEALTH, "complaint_rate_max", K_CUSTOM, C(health.complaint_rate_max), 0, 0, parse_rate, false },
        { S_HEALTH, "bounce_rate_max", K_CUSTOM, C(health.bounce_rate_max), 0, 0, parse_rate, false },
        { S_HEALTH, "min_sent", K_UINT, C(health.min_sent), 0, 1000000000, NULL, false },
        { S_HEALTH, "window", K_CUSTOM, C(health.window), 3600, 366 * 86400, parse_duration, false },
        { S_HEALTH, "interval", K_CUSTOM, C(health.interval), 1, 86400, parse_duration, false },
};
#undef C
#undef E
#undef F

/* Where a key's value goes: the section's own struct. */
static void *
key_base(struct parser *p, const struct key *k)
{
        return k->sect == S_ENDPOINT ? (void *) p->ep : k->sect == S_FORWARD ? (void *) p->fw : (void *) p->cfg;
}

static int __attribute__((format(printf, 2, 3)))
fail(struct parser *p, const char *fmt, ...)
{
        va_list ap;
        char *msg;

        if (p->err)
                return 0;       /* keep the first error */
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (p->key)
                p->err = xasprintf("%s:%d: [%s] %s: %s", p->cfg->file, p->line,
                                   p->cur_section, p->key->name, msg ? msg : "error");
        else
                p->err = xasprintf("%s:%d: %s", p->cfg->file, p->line, msg ? msg : "error");
        free(msg);
        return 0;
}

static void __attribute__((format(printf, 2, 3)))
warn(struct cfg *c, const char *fmt, ...)
{
        va_list ap;
        char *msg;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                return;
        va_end(ap);
        c->warnings = xreallocarray(c->warnings, c->n_warnings + 1, sizeof(char *));
        c->warnings[c->n_warnings++] = msg;
}

/* Relative paths are taken relative to the configuration file's folder. */
static char *
resolve_path(const char *file, const char *v)
{
        const char *slash = strrchr(file, '/');

        if (v[0] == '/' || slash == NULL)
                return xstrdup(v);
        return xasprintf("%.*s/%s", (int) (slash - file), file, v);
}

static int
parse_listen(struct parser *p, const char *v)
{
        const char *colon;
        int64_t port;

        if (v[0] == '[') {
                const char *end = strchr(v, ']');

                if (end == NULL || end[1] != ':')
                        return fail(p, "'%s' is not [v6-address]:port", v);
                free(p->cfg->listen_host);
                p->cfg->listen_host = xstrndup(v + 1, (size_t) (end - v - 1));
                colon = end + 1;
        } else {
                colon = strrchr(v, ':');
                if (colon == NULL || colon == v)
                        return fail(p, "'%s' is not host:port", v);
                free(p->cfg->listen_host);
                p->cfg->listen_host = xstrndup(v, (size_t) (colon - v));
        }
        if (str_to_i64(colon + 1, strlen(colon + 1), 0, 65535, &port) < 0)
                return fail(p, "port in '%s' is not a number from 0 to 65535", v);
        p->cfg->listen_port = (unsigned) port;
        return 1;
}

static int
parse_list(struct parser *p, const char *v)
{
        struct acl *scratch = acl_new();
        char **text = strcmp(p->key->name, "allow") == 0 ? &p->allow_text : &p->proxies_text;
        char *err = NULL;

        if (acl_add_list(scratch, v, &err) < 0) {
                fail(p, "%s", err);
                free(err);
        } else {
                char *joined = xasprintf("%s %s", *text ? *text : "", v);

                free(*text);
                *text = joined;
        }
        acl_free(scratch);
        return 1;
}

static int
parse_sync(struct parser *p, const char *v)
{
        if (strcasecmp(v, "full") == 0)
                p->cfg->synchronous_full = true;
        else if (strcasecmp(v, "normal") == 0)
                p->cfg->synchronous_full = false;
        else
                return fail(p, "'%s' is not full or normal", v);
        return 1;
}

static int
parse_backend(struct parser *p, const char *v)
{
        if (strcasecmp(v, "sqlite") == 0)
                p->cfg->backend = DB_SQLITE;
        else if (strcasecmp(v, "postgresql") == 0) {
                if (!db_available(DB_POSTGRESQL))
                        return fail(p, "the postgresql backend is not available in this build "
                                    "(built with ./configure --without-postgresql)");
                p->cfg->backend = DB_POSTGRESQL;
        } else
                return fail(p, "'%s' is not sqlite or postgresql", v);
        return 1;
}

static int
parse_format(struct parser *p, const char *v)
{
        static const char *const names[] = { "auto", "journal", "json", "text" };
        size_t i;

        for (i = 0; i < ARRAY_SIZE(names); i++)
                if (strcasecmp(v, names[i]) == 0) {
                        p->cfg->log_format = (enum log_format) i;
                        return 1;
                }
        return fail(p, "'%s' is not auto, journal, json or text", v);
}

static int
parse_level(struct parser *p, const char *v)
{
        int l = log_level_from_string(v);

        if (l < 0)
                return fail(p, "'%s' is not error, warning, notice, info or debug", v);
        p->cfg->log_level = l;
        return 1;
}

/* A rate threshold: a fraction from 0 to 1 ("0.003"), or a percentage ("0.3%"). */
static int
parse_rate(struct parser *p, const char *v)
{
        double *dst = (double *) ((char *) p->cfg + p->key->off), d;
        size_t len = strlen(v);
        bool percent = len > 1 && v[len - 1] == '%';
        char *end;

        errno = 0;
        d = strtod(v, &end);
        if (errno || end == v || end != v + len - percent || !(d >= 0) || d > (percent ? 100 : 1))
                return fail(p, "'%s' is not a rate: a fraction from 0 to 1 (0.003) or a percentage (0.3%%)", v);
        *dst = percent ? d / 100 : d;
        return 1;
}

/* A duration: a whole number of seconds, or with a unit: 30s, 5m, 2h, 7d, 2w. */
static int
parse_duration(struct parser *p, const char *v)
{
        unsigned *dst = (unsigned *) ((char *) p->cfg + p->key->off);
        size_t len = strlen(v), digits = strspn(v, "0123456789");
        int64_t n, unit = 1;

        if (digits > 0 && digits + 1 == len) {
                switch (v[len - 1]) {
                case 's': unit = 1; break;
                case 'm': unit = 60; break;
                case 'h': unit = 3600; break;
                case 'd': unit = 86400; break;
                case 'w': unit = 7 * 86400; break;
                default: unit = 0; break;
                }
                len--;
        }
        if (digits == 0 || digits != len || unit == 0 || str_to_i64(v, digits, 0, INT32_MAX, &n) < 0 ||
            n * unit < p->key->min || n * unit > p->key->max)
                return fail(p, "'%s' is not a duration from %llds to %llds (a number of seconds, or with s, m, h, "
                            "d or w: 30s, 5m, 2h, 7d)",
                            v, (long long) p->key->min, (long long) p->key->max);
        *dst = (unsigned) (n * unit);
        return 1;
}

static int
parse_dsn(struct parser *p, const char *v)
{
        char *err = NULL;
        bool has_password = false;

        /* libpq's own check; its message names the part at fault. */
        if (db_dsn_check(v, &has_password, &err) < 0) {
                fail(p, "%s", err);
                free(err);
                return 0;
        }
        if (has_password)
                warn(p->cfg, "%s:%d: [store] dsn: a password written in the configuration file is readable by "
                     "anyone who can read the file; prefer password_file", p->cfg->file, p->line);
        free(p->cfg->dsn);
        p->cfg->dsn = xstrdup(v);
        return 1;
}

/* The stored name of an event type given in [forward] types, or NULL. */
static const char *
event_type_name(const char *w)
{
        static const char *const names[] = { "Queued", "Sent", "Failed", "Deferred", "Complaint", "Click",
                                             "Open", "Unsubscribe" };
        size_t i;

        if (strcasecmp(w, "Delivered") == 0)
                return "Sent";
        for (i = 0; i < ARRAY_SIZE(names); i++)
                if (strcasecmp(w, names[i]) == 0)
                        return names[i];
        return NULL;
}

/* A [forward] list (types, endpoints, server_ids): words apart by spaces
 * or commas, each checked; the key may repeat. */
static int
parse_words(struct parser *p, const char *v)
{
        struct cfg_forward *fw = p->fw;
        char **list = *(char ***) ((char *) fw + p->key->off), *copy = xstrdup(v), *save = NULL, *w;
        size_t *n = p->key->off == offsetof(struct cfg_forward, types) ? &fw->n_types
                    : p->key->off == offsetof(struct cfg_forward, endpoints) ? &fw->n_endpoints : &fw->n_server_ids;
        int64_t id;

        for (w = strtok_r(copy, " \t,", &save); w; w = strtok_r(NULL, " \t,", &save)) {
                const char *add = w;

                if (p->key->off == offsetof(struct cfg_forward, server_ids) &&
                    str_to_i64(w, strlen(w), 0, INT64_MAX, &id) < 0) {
                        fail(p, "'%s' is not a ServerId (a whole number)", w);
                        break;
                }
                if (p->key->off == offsetof(struct cfg_forward, types) && (add = event_type_name(w)) == NULL) {
                        fail(p, "'%s' is not an event type (Queued, Sent, Failed, Deferred, Complaint, Click, "
                             "Open, Unsubscribe)", w);
                        break;
                }
                list = xreallocarray(list, *n + 1, sizeof(char *));
                list[(*n)++] = xstrdup(add);
        }
        *(char ***) ((char *) fw + p->key->off) = list;
        free(copy);
        return 1;
}

/* The NAME of "[kind NAME]" when section is one (else NULL): checked, or
 * *bad set after reporting what is wrong with it. */
static const char *
section_name(struct parser *p, const char *kind, bool *bad)
{
        const char *section = p->cur_section, *name;
        size_t i, k = strlen(kind);

        *bad = false;
        if (strncmp(section, kind, k) != 0 || (section[k] != ' ' && section[k] != '\0'))
                return NULL;
        for (name = section + k; *name == ' '; name++)
                ;
        *bad = true;
        if (*name == '\0')
                return fail(p, "[%s] needs a name: [%s NAME]", kind, kind), NULL;
        for (i = 0; name[i]; i++)
                if (!(name[i] == '-' || name[i] == '_' || name[i] == '.' || (name[i] >= '0' && name[i] <= '9') ||
                      (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z')))
                        return fail(p, "%s name '%s' may use only letters, digits, '-', '_' and '.'", kind, name),
                               NULL;
        if (i > 64)
                return fail(p, "%s name '%s' is longer than 64 characters", kind, name), NULL;
        *bad = false;
        return name;
}

static int
start_section(struct parser *p)
{
        const char *section = p->cur_section, *name;
        struct cfg *c = p->cfg;
        bool bad;
        size_t i;

        p->key = NULL;
        p->ep = NULL;
        p->fw = NULL;
        if ((name = section_name(p, "forward", &bad)) != NULL) {
                for (i = 0; i < c->n_forwards; i++)
                        if (strcmp(c->forwards[i].name, name) == 0)
                                return fail(p, "[forward %s] is defined twice (first at line %d)",
                                            name, c->forwards[i].line);
                c->forwards = xreallocarray(c->forwards, c->n_forwards + 1, sizeof(*c->forwards));
                p->fw = &c->forwards[c->n_forwards++];
                memset(p->fw, 0, sizeof(*p->fw));
                p->fw->name = xstrdup(name);
                p->fw->line = p->section_line;
                p->fw->batch = 1;
                p->fw->timeout = 10;
                p->sect = S_FORWARD;
                p->seen[S_FORWARD] = 0;
                return 1;
        }
        if (!bad && (name = section_name(p, "endpoint", &bad)) != NULL) {
                for (i = 0; i < c->n_endpoints; i++)
                        if (strcmp(c->endpoints[i].name, name) == 0)
                                return fail(p, "[endpoint %s] is defined twice (first at line %d)",
                                            name, c->endpoints[i].line);
                c->endpoints = xreallocarray(c->endpoints, c->n_endpoints + 1, sizeof(*c->endpoints));
                p->ep = &c->endpoints[c->n_endpoints++];
                memset(p->ep, 0, sizeof(*p->ep));
                p->ep->name = xstrdup(name);
                p->ep->line = p->section_line;
                p->sect = S_ENDPOINT;
                p->seen[S_ENDPOINT] = 0;
                return 1;
        }
        if (bad) {
                p->sect = -2;
                return 0;
        }
        for (i = 0; i < ARRAY_SIZE(sect_names); i++)
                if (i != S_ENDPOINT && i != S_FORWARD && strcmp(section, sect_names[i]) == 0) {
                        p->sect = (int) i;
                        if (i == S_API)
                                p->cfg->api = true;
                        if (i == S_METRICS)
                                p->cfg->metrics = true;
                        return 1;
                }
        p->sect = -2;
        return fail(p, "unknown section [%s] (expected server, endpoint NAME, store, api, log, metrics, "
                    "forward NAME or health)",
                    section);
}

static int
handler(void *user, const char *section, const char *name, const char *value)
{
        struct parser *p = user;
        const struct key *k = NULL;
        size_t i;
        int line;
        char *v;

        if (p->err)
                return 1;
        if (section[0] == '\0')
                return fail(p, "'%s' is outside any [section]", name);
        if (p->new_section || p->cur_section == NULL || strcmp(p->cur_section, section) != 0) {
                p->new_section = false;
                free(p->cur_section);
                p->cur_section = xstrdup(section);
                /* Errors about a section point at its header. */
                line = p->line;
                if (p->section_line > 0)
                        p->line = p->section_line;
                start_section(p);
                p->line = line;
                if (p->err)
                        return 1;
        }
        if (p->sect < 0)
                return 1;
        for (i = 0; i < ARRAY_SIZE(keys); i++)
                if ((int) keys[i].sect == p->sect && strcmp(keys[i].name, name) == 0) {
                        k = &keys[i];
                        break;
                }
        p->key = NULL;
        if (k == NULL)
                return fail(p, "[%s] unknown key '%s'", section, name);
        p->key = k;
        if (!k->list && (p->seen[k->sect] & (1ull << (k - keys) % 64)))
                return fail(p, "given twice");
        p->seen[k->sect] |= 1ull << (k - keys) % 64;

        v = str_trim(xstrdup(value));
        if (v[0] == '\0' && k->kind != K_CUSTOM) {
                free(v);
                return fail(p, "empty value");
        }
        switch (k->kind) {
        case K_STR:
        case K_PATH: {
                char **dst = (char **) ((char *) key_base(p, k) + k->off);

                free(*dst);
                *dst = k->kind == K_PATH ? resolve_path(p->cfg->file, v) : xstrdup(v);
                break;
        }
        case K_UINT: {
                int64_t n;

                if (str_to_i64(v, strlen(v), k->min, k->max, &n) < 0)
                        fail(p, "'%s' is not a whole number from %lld to %lld", v,
                             (long long) k->min, (long long) k->max);
                else if (k->off == offsetof(struct cfg, max_body))
                        p->cfg->max_body = (size_t) n;
                else
                        *(unsigned *) ((char *) key_base(p, k) + k->off) = (unsigned) n;
                break;
        }
        case K_CUSTOM:
                if (v[0] == '\0')
                        fail(p, "empty value");
                else
                        k->fn(p, v);
                break;
        }
        if (k->sect == S_ENDPOINT && k->off == offsetof(struct cfg_endpoint, secret_inline))
                explicit_bzero(v, strlen(v));
        free(v);
        return 1;
}

/* inih reader that counts lines, so the handler knows where it is. */
static char *
reader(char *str, int num, void *stream)
{
        struct parser *p = stream;
        char *r = fgets(str, num, p->f);
        size_t n;

        if (r == NULL)
                return NULL;
        n = strlen(r);
        if (r[strspn(r, " \t")] == '[') {
                p->new_section = true;
                p->section_line = p->line + 1;
        }
        if (n > 0 && r[n - 1] == '\n') {
                p->line++;
        } else if (!feof(p->f)) {
                int ch;

                /* Over-long line: remember, skip its rest, report from the handler. */
                p->line++;
                p->key = NULL;
                if (!p->err)
                        fail(p, "line longer than %d characters", num - 2);
                while ((ch = fgetc(p->f)) != EOF && ch != '\n')
                        ;
        } else
                p->line++;
        return r;
}

/* Add the secret lines of data (one a line; blank and # lines skipped). */
static void
add_secret_lines(struct cfg_endpoint *ep, char *data, size_t len)
{
        char *save = NULL, *line;

        for (line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                str_trim(line);
                if (line[0] == '\0' || line[0] == '#')
                        continue;
                ep->secrets = xreallocarray(ep->secrets, ep->n_secrets + 1, sizeof(char *));
                ep->secrets[ep->n_secrets++] = xstrdup(line);
        }
        freezero(data, len + 1);
}

/* Every secret the endpoint accepts, from each of its sources: the inline
 * secret, the systemd credential NAME.secret (fixed while the unit runs),
 * secret_file, and the state directory's NAME.secret (generated by the
 * management thread, or written there to rotate under systemd). A reload
 * reads them all again. */
static int
load_secrets(struct cfg *c, struct cfg_endpoint *ep, char **reterr)
{
        const char *creds = getenv("CREDENTIALS_DIRECTORY");
        char *data = NULL, *path;
        size_t len, had;
        int r;

        if (ep->secret_inline) {
                warn(c, "%s:%d: [endpoint %s] secret: a secret written in the configuration file "
                     "is readable by anyone who can read the file; prefer secret_file",
                     c->file, ep->line, ep->name);
                ep->secrets = xreallocarray(ep->secrets, ep->n_secrets + 1, sizeof(char *));
                ep->secrets[ep->n_secrets++] = xstrdup(ep->secret_inline);
        }
        /* The credential: the service's own user may not read secret_file. */
        if (creds && creds[0]) {
                path = xasprintf("%s/%s.secret", creds, ep->name);
                if (file_read(path, 1024 * 1024, &data, &len) == 0)
                        add_secret_lines(ep, data, len);
                free(path);
        }
        had = ep->n_secrets;
        if (ep->secret_file) {
                r = file_read(ep->secret_file, 1024 * 1024, &data, &len);
                if (r == 0)
                        add_secret_lines(ep, data, len);
                else if (had > 0)
                        warn(c, "%s:%d: [endpoint %s] secret_file: cannot read '%s' (%s); the credential's "
                             "secrets are used", c->file, ep->line, ep->name, ep->secret_file, strerror(-r));
                else if (!(r == -ENOENT && c->api)) {   /* else the management thread may generate one */
                        *reterr = xasprintf("%s:%d: [endpoint %s] secret_file: cannot read '%s': %s",
                                            c->file, ep->line, ep->name, ep->secret_file, strerror(-r));
                        return r;
                }
        }
        path = cfg_state_secret(c, ep->name);
        r = file_read(path, 1024 * 1024, &data, &len);
        if (r == 0)
                add_secret_lines(ep, data, len);
        else if (r != -ENOENT)
                warn(c, "%s: [endpoint %s]: cannot read '%s': %s", c->file, ep->name, path, strerror(-r));
        free(path);
        return 0;
}

int
cfg_webhook_key(const char *secret, unsigned char **key, size_t *len)
{
        gnutls_datum_t in, out = { NULL, 0 };

        if (strncmp(secret, "whsec_", 6) == 0)
                secret += 6;
        in.data = (unsigned char *) secret;
        in.size = (unsigned) strlen(secret);
        if (in.size == 0 || gnutls_base64_decode2(&in, &out) < 0)
                return -EINVAL;
        if (out.size < 16 || out.size > 64) {
                gnutls_memset(out.data, 0, out.size);
                gnutls_free(out.data);
                return -EINVAL;
        }
        *key = xmalloc(out.size);
        memcpy(*key, out.data, out.size);
        *len = out.size;
        gnutls_memset(out.data, 0, out.size);
        gnutls_free(out.data);
        return 0;
}

/* http:// only to this machine: the events would cross a network in clear. */
static bool
url_ok(const char *url)
{
        const char *h;
        size_t n;

        if (strncasecmp(url, "https://", 8) == 0)
                return url[8] != '\0' && url[8] != '/';
        if (strncasecmp(url, "http://", 7) != 0)
                return false;
        h = url + 7;
        if (h[0] == '[')
                return strncmp(h, "[::1]", 5) == 0 && (h[5] == '\0' || h[5] == ':' || h[5] == '/');
        n = strcspn(h, ":/?#");
        return (n == 9 && strncasecmp(h, "localhost", 9) == 0) || (n >= 9 && strncmp(h, "127.", 4) == 0 &&
                                                                   strspn(h, "0123456789.") >= n);
}

/* [forward NAME]: what it must have, and its signing key (the systemd
 * credential forward-NAME first, then secret_file). */
static int
validate_forward(struct cfg *c, struct cfg_forward *fw, unsigned flags, char **reterr)
{
        const char *creds = getenv("CREDENTIALS_DIRECTORY");
        char *data = NULL, *path = NULL, *nl;
        size_t i, j, len = 0;
        int r = -ENOENT;

        if (fw->url == NULL) {
                *reterr = xasprintf("%s:%d: [forward %s] url: missing (e.g. url = https://app.example.com/hooks)",
                                    c->file, fw->line, fw->name);
                return -EINVAL;
        }
        if (!url_ok(fw->url)) {
                *reterr = xasprintf("%s:%d: [forward %s] url: '%s' is not an https:// URL (http:// only to a "
                                    "loopback address: 127.0.0.1, [::1], localhost)", c->file, fw->line, fw->name,
                                    fw->url);
                return -EINVAL;
        }
        if (fw->n_server_ids > 100 || fw->n_endpoints > 64 || fw->n_types > 16) {
                *reterr = xasprintf("%s:%d: [forward %s] %s: more than %d", c->file, fw->line, fw->name,
                                    fw->n_server_ids > 100 ? "server_ids" : fw->n_endpoints > 64 ? "endpoints" : "types",
                                    fw->n_server_ids > 100 ? 100 : fw->n_endpoints > 64 ? 64 : 16);
                return -EINVAL;
        }
        for (i = 0; i < fw->n_endpoints; i++) {
                for (j = 0; j < c->n_endpoints && strcmp(c->endpoints[j].name, fw->endpoints[i]) != 0; j++)
                        ;
                if (j == c->n_endpoints) {
                        *reterr = xasprintf("%s:%d: [forward %s] endpoints: no [endpoint %s] section", c->file,
                                            fw->line, fw->name, fw->endpoints[i]);
                        return -EINVAL;
                }
        }
        if (flags & CFG_NO_SECRETS)
                return 0;
        if (creds && creds[0]) {
                path = xasprintf("%s/forward-%s", creds, fw->name);
                r = file_read(path, 64 * 1024, &data, &len);
        }
        if (r < 0) {
                free(path);
                path = NULL;
                if (fw->secret_file == NULL) {
                        *reterr = xasprintf("%s:%d: [forward %s] secret_file: missing (the key that signs each "
                                            "POST: whsec_ and base64, e.g. from: echo whsec_$(head -c 32 "
                                            "/dev/urandom | base64))", c->file, fw->line, fw->name);
                        return -EINVAL;
                }
                r = file_read(fw->secret_file, 64 * 1024, &data, &len);
                if (r < 0) {
                        *reterr = xasprintf("%s:%d: [forward %s] secret_file: cannot read '%s': %s", c->file,
                                            fw->line, fw->name, fw->secret_file, strerror(-r));
                        return r;
                }
        }
        if ((nl = strpbrk(data, "\r\n")) != NULL)
                *nl = '\0';
        r = cfg_webhook_key(str_trim(data), &fw->key, &fw->key_len);
        freezero(data, len + 1);
        if (r < 0)
                *reterr = xasprintf("%s:%d: [forward %s] %s: '%s' does not hold a signing key (its first line: "
                                    "whsec_ and the base64 of 16 to 64 bytes)", c->file, fw->line, fw->name,
                                    path ? "credential" : "secret_file", path ? path : fw->secret_file);
        free(path);
        return r;
}

static int
validate(struct parser *p, unsigned flags, char **reterr)
{
        struct cfg *c = p->cfg;
        const char *creds;
        size_t i, j;
        char *err = NULL;

        c->allow = acl_new();
        if (acl_add_list(c->allow, p->allow_text ? p->allow_text : CFG_DEFAULT_ALLOW, &err) < 0)
                goto bad;
        if (acl_count(c->allow) == 0) {
                err = xstrdup("[server] allow: the allow list is empty; use \"*\" to accept anyone");
                goto bad;
        }
        c->trusted_proxies = acl_new();
        if (p->proxies_text && acl_add_list(c->trusted_proxies, p->proxies_text, &err) < 0)
                goto bad;
        if (c->n_endpoints == 0) {
                err = xstrdup("no [endpoint NAME] section: at least one webhook endpoint is needed");
                goto bad;
        }
        if (c->api && c->api_endpoint == NULL && c->n_endpoints == 1)
                c->api_endpoint = xstrdup(c->endpoints[0].name);
        for (i = 0; i < c->n_endpoints; i++) {
                struct cfg_endpoint *ep = &c->endpoints[i];

                if (ep->path == NULL) {
                        *reterr = xasprintf("%s:%d: [endpoint %s] path: missing (e.g. path = /socketlabs/events)",
                                            c->file, ep->line, ep->name);
                        return -EINVAL;
                }
                if (ep->path[0] != '/') {
                        *reterr = xasprintf("%s:%d: [endpoint %s] path: '%s' must start with '/'",
                                            c->file, ep->line, ep->name, ep->path);
                        return -EINVAL;
                }
                for (j = 0; j < i; j++)
                        if (strcmp(c->endpoints[j].path, ep->path) == 0) {
                                *reterr = xasprintf("%s:%d: [endpoint %s] path: '%s' is already the path of [endpoint %s]",
                                                    c->file, ep->line, ep->name, ep->path, c->endpoints[j].name);
                                return -EINVAL;
                        }
                if (flags & CFG_NO_SECRETS)
                        continue;
                if (load_secrets(c, ep, reterr) < 0)
                        return -EINVAL;
                if (ep->n_secrets == 0 && !(c->api && c->api_endpoint && strcmp(c->api_endpoint, ep->name) == 0)) {
                        *reterr = xasprintf("%s:%d: [endpoint %s] secret_file: no secret configured%s%s%s",
                                            c->file, ep->line, ep->name,
                                            ep->secret_file ? " ('" : "",
                                            ep->secret_file ? ep->secret_file : "",
                                            ep->secret_file ? "' holds no secret line)" : "");
                        return -EINVAL;
                }
        }
        for (i = 0; i < c->n_forwards; i++)
                if (validate_forward(c, &c->forwards[i], flags, reterr) < 0)
                        return -EINVAL;
        if (c->backend == DB_POSTGRESQL && c->dsn == NULL) {
                err = xstrdup("[store] dsn: missing (backend = postgresql needs a libpq connection string, "
                              "e.g. dsn = host=db.example.com dbname=slhookd user=slhookd)");
                goto bad;
        }
        if (c->backend == DB_SQLITE && (c->dsn || c->db_password_file))
                warn(c, "%s: [store] %s: ignored with backend = sqlite", c->file, c->dsn ? "dsn" : "password_file");
        if (c->api) {
                if (c->api_key_file == NULL) {
                        err = xstrdup("[api] key_file: missing");
                        goto bad;
                }
                if (c->api_endpoint == NULL) {
                        err = xstrdup("[api] endpoint: missing (which [endpoint NAME] to register)");
                        goto bad;
                }
                for (i = 0; i < c->n_endpoints; i++)
                        if (strcmp(c->endpoints[i].name, c->api_endpoint) == 0)
                                break;
                if (i == c->n_endpoints) {
                        err = xasprintf("[api] endpoint: no [endpoint %s] section", c->api_endpoint);
                        goto bad;
                }
                if (c->backend == DB_POSTGRESQL && !(flags & CFG_NO_SECRETS) && c->endpoints[i].n_secrets == 0)
                        warn(c, "%s:%d: [endpoint %s] has no secret_file: the secret the management thread "
                             "generates stays with this instance, and other instances on the database answer "
                             "401; give every instance the same secret_file", c->file, c->endpoints[i].line,
                             c->api_endpoint);
                if (c->api_public_url == NULL || strncmp(c->api_public_url, "https://", 8) != 0) {
                        err = xstrdup("[api] public_url: missing or not an https:// URL");
                        goto bad;
                }
                if (strncmp(c->api_base_url, "https://", 8) != 0) {
                        err = xasprintf("[api] base_url: '%s' is not an https:// URL", c->api_base_url);
                        goto bad;
                }
        }
        /* The key as the systemd credential tls-key comes first: the
         * service's own (dynamic) user cannot read a root-only key file. */
        if (c->tls_cert && (creds = getenv("CREDENTIALS_DIRECTORY")) && creds[0]) {
                char *cred = xasprintf("%s/tls-key", creds);

                if (access(cred, F_OK) == 0) {
                        free(c->tls_key);
                        c->tls_key = cred;
                } else
                        free(cred);
        }
        /* Last: every other mistake is named first. */
        if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
                err = xstrdup(c->tls_cert ? "[server] tls_key: missing (tls_cert is given)"
                                          : "[server] tls_cert: missing (tls_key is given)");
                goto bad;
        }
        if (c->tls_cert == NULL && strncmp(c->listen_host, "127.", 4) != 0 && strcmp(c->listen_host, "::1") != 0 &&
            strcmp(c->listen_host, "localhost") != 0) {
                err = xasprintf("[server] tls_cert: missing; plain HTTP is allowed only when listen is a loopback "
                                "address (behind a local TLS proxy), not '%s'", c->listen_host);
                goto bad;
        }
        return 0;
bad:
        *reterr = xasprintf("%s: %s", c->file, err);
        free(err);
        return -EINVAL;
}

int
cfg_load(const char *path, unsigned flags, struct cfg **ret, char **reterr)
{
        struct parser p = { 0 };
        struct cfg *c = xcalloc(1, sizeof(*c));
        long ncpu;
        int r;

        c->file = xstrdup(path);
        c->listen_host = xstrdup("0.0.0.0");
        c->listen_port = 8443;
        c->tls_priorities = xstrdup(CFG_DEFAULT_PRIORITIES);
        c->max_body = 65536;
        c->timeout = 30;
        c->max_connections = 1024;
        c->max_connections_per_ip = UINT_MAX;   /* unset: see cfg_load */
        c->database = xstrdup("/var/lib/slhookd/events.db");
        c->synchronous_full = true;
        c->queue_size = 4096;
        c->statement_timeout = 5;
        c->refs = 1;
        c->api_base_url = xstrdup("https://api.socketlabs.com/v2");
        c->api_self_test_interval = 3600;
        c->api_self_test_timeout = 60;
        c->log_format = LOG_FORMAT_AUTO;
        c->log_level = LOG_INFO;
        c->metrics_listen = xstrdup("127.0.0.1:9464");
        c->health = (struct health_conf) HEALTH_CONF_DEFAULT;

        p.cfg = c;
        p.sect = -1;
        p.f = fopen(path, "re");
        if (p.f == NULL) {
                r = -errno;
                *reterr = xasprintf("%s: cannot open configuration file: %s", path, strerror(errno));
                goto fail;
        }
        r = ini_parse_stream(reader, &p, handler, &p);
        fclose(p.f);
        if (p.err) {
                *reterr = p.err;
                p.err = NULL;
                r = -EINVAL;
                goto fail;
        }
        if (r != 0) {
                /* inih's own syntax error (no '=' or ']'): it returns the line. */
                *reterr = xasprintf("%s:%d: syntax error (expected [section] or key = value)", path, r);
                r = -EINVAL;
                goto fail;
        }
        r = validate(&p, flags, reterr);
        if (r < 0)
                goto fail;
        if (c->health.complaint_rate_warn > c->health.complaint_rate_max) {
                *reterr = xasprintf("%s: [health] complaint_rate_warn (%g) is above complaint_rate_max (%g): the "
                                    "warning must come first",
                                    path, c->health.complaint_rate_warn, c->health.complaint_rate_max);
                r = -EINVAL;
                goto fail;
        }
        /* One address may hold a quarter of the connections, so that a slow
         * or stuck sender leaves room for the others; behind a reverse proxy
         * every connection comes from it, so no limit unless one is set. */
        if (c->max_connections_per_ip == UINT_MAX)
                c->max_connections_per_ip = acl_count(c->trusted_proxies) ? 0 : CFG_DEFAULT_PER_IP(c->max_connections);
        if (c->threads == 0) {
                ncpu = sysconf(_SC_NPROCESSORS_ONLN);
                c->threads = ncpu > 0 ? (unsigned) ncpu : 1;
        }
        free(p.allow_text);
        free(p.proxies_text);
        free(p.cur_section);
        *ret = c;
        return 0;
fail:
        free(p.allow_text);
        free(p.proxies_text);
        free(p.cur_section);
        cfg_free(c);
        return r;
}

struct cfg *
cfg_ref(struct cfg *c)
{
        __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
        return c;
}

struct cfg *
cfg_free(struct cfg *c)
{
        size_t i, j;

        if (c == NULL || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        for (i = 0; i < c->n_endpoints; i++) {
                struct cfg_endpoint *ep = &c->endpoints[i];

                for (j = 0; j < ep->n_secrets; j++)
                        freezero(ep->secrets[j], strlen(ep->secrets[j]));
                free(ep->secrets);
                if (ep->secret_inline)
                        freezero(ep->secret_inline, strlen(ep->secret_inline));
                free(ep->name);
                free(ep->path);
                free(ep->secret_file);
                free(ep->validation_key);
        }
        free(c->endpoints);
        for (i = 0; i < c->n_forwards; i++) {
                struct cfg_forward *fw = &c->forwards[i];

                for (j = 0; j < fw->n_types; j++)
                        free(fw->types[j]);
                for (j = 0; j < fw->n_endpoints; j++)
                        free(fw->endpoints[j]);
                for (j = 0; j < fw->n_server_ids; j++)
                        free(fw->server_ids[j]);
                free(fw->types);
                free(fw->endpoints);
                free(fw->server_ids);
                if (fw->key)
                        freezero(fw->key, fw->key_len);
                free(fw->name);
                free(fw->url);
                free(fw->secret_file);
                free(fw->ca_file);
        }
        free(c->forwards);
        for (i = 0; i < c->n_warnings; i++)
                free(c->warnings[i]);
        free(c->warnings);
        acl_free(c->allow);
        acl_free(c->trusted_proxies);
        free(c->file);
        free(c->listen_host);
        free(c->tls_cert);
        free(c->tls_key);
        free(c->tls_priorities);
        free(c->database);
        free(c->dsn);
        free(c->db_password_file);
        free(c->api_base_url);
        free(c->api_key_file);
        free(c->api_endpoint);
        free(c->api_public_url);
        free(c->api_webhook_id);
        free(c->api_ca_file);
        free(c->metrics_listen);
        free(c);
        return NULL;
}

int
cfg_db_conf(const struct cfg *c, struct db_conf *ret, char **ret_password, char **reterr)
{
        const char *creds = getenv("CREDENTIALS_DIRECTORY");
        char *data = NULL, *cred, *nl;
        size_t len = 0;
        int r = -ENOENT;

        *ret_password = NULL;
        *ret = (struct db_conf) { .backend = c->backend, .path = c->database,
                                  .synchronous_full = c->synchronous_full, .dsn = c->dsn,
                                  .timeout_ms = c->statement_timeout * 1000 };
        if (c->backend != DB_POSTGRESQL)
                return 0;
        if (creds && creds[0]) {
                cred = xasprintf("%s/postgresql-password", creds);
                r = file_read(cred, 64 * 1024, &data, &len);
                free(cred);
        }
        if (r < 0 && c->db_password_file) {
                r = file_read(c->db_password_file, 64 * 1024, &data, &len);
                if (r < 0) {
                        *reterr = xasprintf("%s: [store] password_file: cannot read '%s': %s", c->file,
                                            c->db_password_file, strerror(-r));
                        return r;
                }
        }
        if (r < 0)
                return 0;
        if ((nl = strpbrk(data, "\r\n")) != NULL)
                *nl = '\0';
        ret->password = *ret_password = xstrdup(data);
        freezero(data, len + 1);
        return 0;
}

char *
cfg_state_secret(const struct cfg *c, const char *endpoint)
{
        const char *sd = getenv("STATE_DIRECTORY");
        const char *slash = strrchr(c->database, '/');

        if (sd && sd[0])
                return xasprintf("%.*s/%s.secret", (int) strcspn(sd, ":"), sd, endpoint);
        if (slash)
                return xasprintf("%.*s/%s.secret", (int) (slash - c->database), c->database, endpoint);
        return xasprintf("%s.secret", endpoint);
}

const struct cfg_endpoint *
cfg_endpoint_by_path(const struct cfg *c, const char *url)
{
        size_t i;

        for (i = 0; i < c->n_endpoints; i++)
                if (strcmp(c->endpoints[i].path, url) == 0)
                        return &c->endpoints[i];
        return NULL;
}
