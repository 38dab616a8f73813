/* event: a bounded tree built with yajl's callback API, then interpreted. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "event.h"

const struct event_field event_str_fields[EVS_COUNT] = {
        [EVS_ADDRESS] = { "Address", NULL, "address" },
        [EVS_FROM_ADDRESS] = { "FromAddress", NULL, "from_address" },
        [EVS_SUBJECT] = { "Subject", "SubjectLine", "subject" },
        [EVS_MAILING_ID] = { "MailingId", NULL, "mailing_id" },
        [EVS_MESSAGE_ID] = { "MessageId", NULL, "message_id" },
        [EVS_REASON] = { "Reason", NULL, "reason" },
        [EVS_RESPONSE] = { "Response", NULL, "response" },
        [EVS_LOCAL_IP] = { "LocalIp", NULL, "local_ip" },
        [EVS_REMOTE_MTA] = { "RemoteMta", NULL, "remote_mta" },
        [EVS_BOUNCE_STATUS] = { "BounceStatus", NULL, "bounce_status" },
        [EVS_DIAGNOSTIC_CODE] = { "DiagnosticCode", NULL, "diagnostic_code" },
        [EVS_FAILURE_TYPE] = { "FailureType", NULL, "failure_type" },
        [EVS_TRACKING_TYPE] = { "TrackingType", NULL, "tracking_type" },
        [EVS_USER_AGENT] = { "UserAgent", NULL, "user_agent" },
        [EVS_CLIENT_IP] = { "ClientIp", NULL, "client_ip" },
        [EVS_URL] = { "Url", NULL, "url" },
        [EVS_TAG] = { "Tag", NULL, "tag" },
        [EVS_FBL_TYPE] = { "FblType", NULL, "fbl_type" },
        [EVS_FBL_FROM] = { "From", NULL, "fbl_from" },
        [EVS_FBL_TO] = { "To", NULL, "fbl_to" },
        [EVS_DATE_TIME] = { "DateTime", NULL, "date_time" },
};

const struct event_field event_num_fields[EVN_COUNT] = {
        [EVN_SERVER_ID] = { "ServerId", NULL, "server_id" },
        [EVN_SUBACCOUNT_ID] = { "SubaccountId", NULL, "subaccount_id" },
        [EVN_IP_POOL_ID] = { "IpPoolId", NULL, "ip_pool_id" },
        [EVN_MESSAGE_SIZE] = { "MessageSize", NULL, "message_size" },
        [EVN_DEFERRAL_CODE] = { "DeferralCode", NULL, "deferral_code" },
        [EVN_FAILURE_CODE] = { "FailureCode", NULL, "failure_code" },
        [EVN_LENGTH] = { "Length", NULL, "length" },
};

/* ---- arena: every allocation of one batch, freed (and wiped) at once ---- */

struct arena_block {
        struct arena_block *next;
        size_t used, cap;
        max_align_t data[];
};

struct arena {
        struct arena_block *head;
};

static void *
arena_alloc(struct arena *a, size_t n)
{
        struct arena_block *b = a->head;
        void *p;

        n = (n + 15) & ~(size_t) 15;
        if (b == NULL || b->cap - b->used < n) {
                size_t cap = n > 16384 ? n : 16384;

                b = xmalloc(sizeof(*b) + cap);
                b->cap = cap;
                b->used = 0;
                b->next = a->head;
                a->head = b;
        }
        p = (char *) b->data + b->used;
        b->used += n;
        return p;
}

static char *
arena_strndup(struct arena *a, const char *s, size_t n)
{
        char *p = arena_alloc(a, n + 1);

        memcpy(p, s, n);
        p[n] = '\0';
        return p;
}

static void
arena_free(struct arena *a)
{
        struct arena_block *b, *next;

        if (a == NULL)
                return;
        for (b = a->head; b; b = next) {
                next = b->next;
                explicit_bzero(b->data, b->used);
                free(b);
        }
        free(a);
}

/* ---- the tree ---- */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_OBJ, J_ARR };

struct jval {
        enum jtype t;
        const char *s;          /* J_STR (valid UTF-8, no NUL), J_NUM (text), J_BOOL */
        size_t len;
        const char *key;        /* member name inside an object */
        size_t keylen;
        struct jval *child, *last, *next;
        size_t count;
};

struct builder {
        struct arena *arena;
        struct jval *root;
        struct jval *stack[EVENT_MAX_DEPTH + 1];
        int depth;
        const char *pending_key;
        size_t pending_keylen;
        size_t nodes;
        const char *limit;      /* why we cancelled, or NULL */
};

/* Copy s, replacing invalid UTF-8 and NUL bytes with U+FFFD, so that no
 * authenticated event is lost to a bad byte and every stored text is valid. */
static const char *
sanitize(struct arena *a, const char *s, size_t len, size_t *ret_len)
{
        const unsigned char *p = (const unsigned char *) s;
        size_t i, n = 0, bad = 0;
        char *out;

        for (i = 0; i < len;) {
                size_t k = utf8_seq_len(p + i, len - i);

                if (k == 0 || p[i] == 0) {
                        bad++;
                        i++;
                } else
                        i += k;
        }
        out = arena_alloc(a, len + 2 * bad + 1);
        for (i = 0; i < len;) {
                size_t k = utf8_seq_len(p + i, len - i);

                if (k == 0 || p[i] == 0) {
                        memcpy(out + n, "\xef\xbf\xbd", 3);
                        n += 3;
                        i++;
                } else {
                        memcpy(out + n, p + i, k);
                        n += k;
                        i += k;
                }
        }
        out[n] = '\0';
        *ret_len = n;
        return out;
}

static struct jval *
add(struct builder *b, enum jtype t)
{
        struct jval *v, *parent;

        if (++b->nodes > EVENT_MAX_NODES) {
                b->limit = "too many JSON values";
                return NULL;
        }
        v = arena_alloc(b->arena, sizeof(*v));
        memset(v, 0, sizeof(*v));
        v->t = t;
        parent = b->depth > 0 ? b->stack[b->depth - 1] : NULL;
        if (parent == NULL) {
                b->root = v;
                return v;
        }
        if (parent->t == J_OBJ) {
                v->key = b->pending_key;
                v->keylen = b->pending_keylen;
        }
        if (parent->last)
                parent->last->next = v;
        else
                parent->child = v;
        parent->last = v;
        parent->count++;
        return v;
}

static int
cb_scalar(struct builder *b, enum jtype t, const char *s, size_t len)
{
        struct jval *v = add(b, t);

        if (v == NULL)
                return 0;
        if (t == J_STR)
                v->s = sanitize(b->arena, s, len, &v->len);
        else {
                v->s = arena_strndup(b->arena, s, len);
                v->len = len;
        }
        return 1;
}

static int
cb_null(void *ctx)
{
        return cb_scalar(ctx, J_NULL, "null", 4);
}

static int
cb_bool(void *ctx, int val)
{
        return cb_scalar(ctx, J_BOOL, val ? "true" : "false", val ? 4 : 5);
}

static int
cb_number(void *ctx, const char *s, size_t len)
{
        return cb_scalar(ctx, J_NUM, s, len);
}

static int
cb_string(void *ctx, const unsigned char *s, size_t len)
{
        return cb_scalar(ctx, J_STR, (const char *) s, len);
}

static int
cb_start(struct builder *b, enum jtype t)
{
        struct jval *v;

        if (b->depth >= EVENT_MAX_DEPTH) {
                b->limit = "JSON nested too deeply";
                return 0;
        }
        v = add(b, t);
        if (v == NULL)
                return 0;
        b->stack[b->depth++] = v;
        return 1;
}

static int
cb_start_map(void *ctx)
{
        return cb_start(ctx, J_OBJ);
}

static int
cb_start_array(void *ctx)
{
        return cb_start(ctx, J_ARR);
}

static int
cb_end(void *ctx)
{
        struct builder *b = ctx;

        b->depth--;
        return 1;
}

static int
cb_key(void *ctx, const unsigned char *s, size_t len)
{
        struct builder *b = ctx;

        b->pending_key = sanitize(b->arena, (const char *) s, len, &b->pending_keylen);
        return 1;
}

static const yajl_callbacks callbacks = {
        cb_null, cb_bool, NULL, NULL, cb_number, cb_string,
        cb_start_map, cb_key, cb_end, cb_start_array, cb_end,
};

static int
build_json(struct builder *b, const char *body, size_t len, char **reterr)
{
        yajl_handle h = yajl_alloc(&callbacks, NULL, b);
        yajl_status st;

        yajl_config(h, yajl_dont_validate_strings, 1);
        st = yajl_parse(h, (const unsigned char *) body, len);
        if (st == yajl_status_ok)
                st = yajl_complete_parse(h);
        if (st == yajl_status_client_canceled) {
                *reterr = xstrdup(b->limit ? b->limit : "JSON rejected");
        } else if (st != yajl_status_ok) {
                *reterr = xasprintf("body is not valid JSON (error at byte %zu)",
                                    yajl_get_bytes_consumed(h));
        }
        yajl_free(h);
        return st == yajl_status_ok ? 0 : -EINVAL;
}

/* ---- legacy form posts: key=value&... into a flat object of strings ---- */

static int
hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

static char *
form_decode(struct arena *a, const char *s, size_t len, size_t *ret_len)
{
        char *out = arena_alloc(a, len + 1);
        size_t i, n = 0;

        for (i = 0; i < len; i++) {
                if (s[i] == '+')
                        out[n++] = ' ';
                else if (s[i] == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
                        out[n++] = (char) (hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
                        i += 2;
                } else
                        out[n++] = s[i];
        }
        out[n] = '\0';
        *ret_len = n;
        return out;
}

static int
build_form(struct builder *b, const char *body, size_t len, char **reterr)
{
        const char *p = body, *end = body + len;

        if (cb_start(b, J_OBJ) == 0)
                goto limit;
        while (p < end) {
                const char *amp = memchr(p, '&', (size_t) (end - p));
                const char *pair_end = amp ? amp : end;
                const char *eq = memchr(p, '=', (size_t) (pair_end - p));
                size_t klen, vlen;
                char *k, *v;

                if (pair_end > p) {
                        if (eq == NULL) {
                                *reterr = xstrdup("form body has a field without '='");
                                return -EINVAL;
                        }
                        k = form_decode(b->arena, p, (size_t) (eq - p), &klen);
                        v = form_decode(b->arena, eq + 1, (size_t) (pair_end - eq - 1), &vlen);
                        if (cb_key(b, (const unsigned char *) k, klen) == 0 ||
                            cb_string(b, (const unsigned char *) v, vlen) == 0)
                                goto limit;
                }
                p = pair_end + 1;
        }
        b->depth--;
        return 0;
limit:
        *reterr = xstrdup(b->limit ? b->limit : "form body rejected");
        return -EINVAL;
}

/* ---- serialisation of a subtree back to JSON ---- */

static void
gen_value(yajl_gen g, const struct jval *v, bool skip_secret)
{
        const struct jval *c;

        switch (v->t) {
        case J_NULL:
                yajl_gen_null(g);
                break;
        case J_BOOL:
                yajl_gen_bool(g, v->s[0] == 't');
                break;
        case J_NUM:
                yajl_gen_number(g, v->s, v->len);
                break;
        case J_STR:
                yajl_gen_string(g, (const unsigned char *) v->s, v->len);
                break;
        case J_OBJ:
                yajl_gen_map_open(g);
                for (c = v->child; c; c = c->next) {
                        if (skip_secret && str_eq_ci(c->key, c->keylen, "SecretKey"))
                                continue;
                        yajl_gen_string(g, (const unsigned char *) c->key, c->keylen);
                        gen_value(g, c, false);
                }
                yajl_gen_map_close(g);
                break;
        case J_ARR:
                yajl_gen_array_open(g);
                for (c = v->child; c; c = c->next)
                        gen_value(g, c, false);
                yajl_gen_array_close(g);
                break;
        }
}

static char *
to_json(struct arena *a, const struct jval *v, bool skip_secret, size_t *ret_len)
{
        yajl_gen g = yajl_gen_alloc(NULL);
        const unsigned char *out;
        size_t len;
        char *s;

        gen_value(g, v, skip_secret);
        yajl_gen_get_buf(g, &out, &len);
        s = arena_strndup(a, (const char *) out, len);
        yajl_gen_free(g);
        if (ret_len)
                *ret_len = len;
        return s;
}

/* ---- interpretation ---- */

static const struct jval *
member(const struct jval *obj, const char *name)
{
        const struct jval *c;

        for (c = obj->child; c; c = c->next)
                if (str_eq_ci(c->key, c->keylen, name))
                        return c;
        return NULL;
}

static bool
name_is(const struct jval *c, const struct event_field *f)
{
        return str_eq_ci(c->key, c->keylen, f->wire) || (f->alt && str_eq_ci(c->key, c->keylen, f->alt));
}

static void __attribute__((format(printf, 3, 4)))
quarantine(struct event *ev, struct arena *a, const char *fmt, ...)
{
        va_list ap;
        char *r;

        if (ev->kind == EVENT_QUARANTINE)
                return;         /* keep the first reason */
        va_start(ap, fmt);
        if (vasprintf(&r, fmt, ap) < 0)
                r = NULL;
        va_end(ap);
        ev->kind = EVENT_QUARANTINE;
        ev->reason = r ? arena_strndup(a, r, strlen(r)) : "unreadable event";
        free(r);
}

/* A name or number from a small enumeration, canonicalised. Unknown values
 * are kept as sent. */
static const char *
enum_value(struct arena *a, const struct jval *v, const char *const names[], size_t n)
{
        size_t i;
        int64_t k;

        if (str_to_i64(v->s, v->len, 0, (int64_t) n - 1, &k) == 0)
                return names[k];
        for (i = 0; i < n; i++)
                if (str_eq_ci(v->s, v->len, names[i]))
                        return names[i];
        return arena_strndup(a, v->s, v->len);
}

static const char *const failure_types[] = { "Temporary", "Permanent", "Suppressed" };
static const char *const tracking_types[] = { "Click", "Open", "Unsubscribe" };

static const char *
canonical_type(const char *wire, size_t len, const char *tracking)
{
        static const struct { const char *wire, *canon; } t[] = {
                { "Queued", "Queued" }, { "Delivered", "Sent" }, { "Sent", "Sent" },
                { "Failed", "Failed" }, { "Deferred", "Deferred" }, { "Complaint", "Complaint" },
                { "Click", "Click" }, { "Open", "Open" }, { "Unsubscribe", "Unsubscribe" },
        };
        size_t i;

        if (str_eq_ci(wire, len, "Tracking")) {
                for (i = 0; i < ARRAY_SIZE(tracking_types); i++)
                        if (tracking && strcmp(tracking, tracking_types[i]) == 0)
                                return tracking_types[i];
                return "Tracking";
        }
        for (i = 0; i < ARRAY_SIZE(t); i++)
                if (str_eq_ci(wire, len, t[i].wire))
                        return t[i].canon;
        return NULL;
}

static void
interpret(struct arena *a, const struct jval *obj, struct event *ev)
{
        const struct jval *c, *type = NULL, *data = NULL;
        bool seen_secret = false, validation = false;
        size_t i;

        memset(ev, 0, sizeof(*ev));
        ev->kind = EVENT_MAIL;

        for (c = obj->child; c; c = c->next) {
                bool known = false;

                if (str_eq_ci(c->key, c->keylen, "SecretKey")) {
                        if (seen_secret || c->t != J_STR)
                                ev->secret_bad = true;
                        seen_secret = true;
                        ev->secret = c->s;
                        ev->secret_len = c->len;
                        continue;
                }
                if (str_eq_ci(c->key, c->keylen, "Type")) {
                        if (type)
                                quarantine(ev, a, "field '%s' given twice", "Type");
                        type = c;
                        continue;
                }
                if (str_eq_ci(c->key, c->keylen, "Data")) {
                        if (data)
                                quarantine(ev, a, "field '%s' given twice", "Data");
                        data = c;
                        continue;
                }
                for (i = 0; i < EVS_COUNT && !known; i++) {
                        if (!name_is(c, &event_str_fields[i]))
                                continue;
                        known = true;
                        if (ev->str[i])
                                quarantine(ev, a, "field '%s' given twice", event_str_fields[i].wire);
                        else if (c->t == J_STR || c->t == J_NUM)
                                ev->str[i] = c->s;
                        else if (c->t != J_NULL)
                                quarantine(ev, a, "field '%s' is not a string", event_str_fields[i].wire);
                }
                for (i = 0; i < EVN_COUNT && !known; i++) {
                        if (!name_is(c, &event_num_fields[i]))
                                continue;
                        known = true;
                        if (ev->has_num[i])
                                quarantine(ev, a, "field '%s' given twice", event_num_fields[i].wire);
                        else if ((c->t == J_NUM || c->t == J_STR) && c->len > 0) {
                                if (str_to_i64(c->s, c->len, INT64_MIN, INT64_MAX, &ev->num[i]) < 0)
                                        quarantine(ev, a, "field '%s' is not an integer", event_num_fields[i].wire);
                                else
                                        ev->has_num[i] = true;
                        } else if (c->t != J_NULL && c->t != J_STR)
                                quarantine(ev, a, "field '%s' is not an integer", event_num_fields[i].wire);
                }
                /* Anything else is kept in raw only. */
        }

        if (ev->str[EVS_FAILURE_TYPE]) {
                struct jval v = { .s = ev->str[EVS_FAILURE_TYPE], .len = strlen(ev->str[EVS_FAILURE_TYPE]) };

                ev->str[EVS_FAILURE_TYPE] = enum_value(a, &v, failure_types, ARRAY_SIZE(failure_types));
        }
        if (ev->str[EVS_TRACKING_TYPE]) {
                struct jval v = { .s = ev->str[EVS_TRACKING_TYPE], .len = strlen(ev->str[EVS_TRACKING_TYPE]) };

                ev->str[EVS_TRACKING_TYPE] = enum_value(a, &v, tracking_types, ARRAY_SIZE(tracking_types));
        }

        if (type == NULL)
                quarantine(ev, a, "field '%s' is missing", "Type");
        else if (type->t != J_STR || type->len == 0)
                quarantine(ev, a, "field '%s' is not a non-empty string", "Type");
        else {
                ev->wire_type = type->s;
                ev->type = canonical_type(type->s, type->len, ev->str[EVS_TRACKING_TYPE]);
                if (ev->type == NULL)
                        ev->type = type->s;
                validation = str_eq_ci(type->s, type->len, "Validation");
        }

        if (ev->str[EVS_DATE_TIME]) {
                const char *dt = ev->str[EVS_DATE_TIME];

                if (event_parse_time(dt, strlen(dt), &ev->occurred_us) < 0)
                        quarantine(ev, a, "field '%s' is not an ISO-8601 time", "DateTime");
                else
                        time_format_iso(ev->occurred_us, ev->occurred_at);
        }

        if (data && data->t == J_OBJ) {
                const struct jval *m = member(data, "Meta"), *t = member(data, "Tags");

                if (m && m->t != J_NULL)
                        ev->meta = to_json(a, m, false, NULL);
                if (t && t->t != J_NULL)
                        ev->tags = to_json(a, t, false, NULL);
        } else if (data && data->t != J_NULL)
                quarantine(ev, a, "field '%s' is not an object", "Data");

        /* A Validation is answered whatever else it carries. */
        if (validation)
                ev->kind = EVENT_VALIDATION;
        ev->is_test = ev->str[EVS_MESSAGE_ID] && strcmp(ev->str[EVS_MESSAGE_ID], "SampleMessageId") == 0;
        ev->raw = to_json(a, obj, true, &ev->raw_len);
}

/* {"data": {...event...}} → the inner object, when the outer one has no Type. */
static const struct jval *
unwrap(const struct jval *obj)
{
        const struct jval *d;

        if (member(obj, "Type"))
                return obj;
        d = member(obj, "data");
        if (d && d->t == J_OBJ && member(d, "Type"))
                return d;
        return obj;
}

int
event_parse(const char *body, size_t len, bool form, struct event_batch *ret, char **reterr)
{
        struct builder b = { 0 };
        const struct jval *c;
        size_t i;
        int r;

        memset(ret, 0, sizeof(*ret));
        b.arena = xcalloc(1, sizeof(struct arena));
        r = form ? build_form(&b, body, len, reterr) : build_json(&b, body, len, reterr);
        if (r < 0)
                goto fail;
        if (b.root == NULL || (b.root->t != J_OBJ && b.root->t != J_ARR)) {
                *reterr = xstrdup("body is not a JSON object or array");
                goto fail;
        }
        if (b.root->t == J_ARR) {
                if (b.root->count == 0) {
                        *reterr = xstrdup("body is an empty array");
                        goto fail;
                }
                for (c = b.root->child, i = 0; c; c = c->next, i++)
                        if (c->t != J_OBJ) {
                                *reterr = xasprintf("array element %zu is not an object", i);
                                goto fail;
                        }
        }
        ret->arena = b.arena;
        ret->n = b.root->t == J_ARR ? b.root->count : 1;
        ret->v = arena_alloc(b.arena, ret->n * sizeof(struct event));
        if (b.root->t == J_OBJ)
                interpret(b.arena, unwrap(b.root), &ret->v[0]);
        else
                for (c = b.root->child, i = 0; c; c = c->next, i++)
                        interpret(b.arena, unwrap(c), &ret->v[i]);
        return 0;
fail:
        arena_free(b.arena);
        return -EINVAL;
}

void
event_batch_done(struct event_batch *b)
{
        if (b == NULL)
                return;
        arena_free(b->arena);
        memset(b, 0, sizeof(*b));
}

void
event_digest(struct event *ev, const char *endpoint)
{
        unsigned char md[32];
        gnutls_hash_hd_t h;

        if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0)
                abort();
        gnutls_hash(h, endpoint, strlen(endpoint) + 1);
        gnutls_hash(h, ev->raw, ev->raw_len);
        gnutls_hash_deinit(h, md);
        if (ev->kind == EVENT_MAIL) {
                /* Led by the event time, so the unique index grows at its
                 * recent end instead of at a random page per event. */
                snprintf(ev->digest, 17, "%016llx",
                         (unsigned long long) (ev->occurred_at[0] && ev->occurred_us > 0 ? ev->occurred_us : 0));
                hex_encode(md, sizeof(md), ev->digest + 16);
        } else
                hex_encode(md, sizeof(md), ev->digest);
}

/* ---- time ---- */

static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
        int64_t era;
        unsigned yoe, doy, doe;

        y -= m <= 2;
        era = (y >= 0 ? y : y - 399) / 400;
        yoe = (unsigned) (y - era * 400);
        doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + (int64_t) doe - 719468;
}

static unsigned
days_in_month(int64_t y, unsigned m)
{
        static const unsigned d[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

        return m == 2 && leap ? 29 : d[m - 1];
}

static bool
digits(const char *s, size_t len, size_t at, size_t n, int64_t *ret)
{
        if (at + n > len)
                return false;
        return str_to_i64(s + at, n, 0, INT64_MAX, ret) == 0;
}

static int
combine(int64_t y, int64_t mo, int64_t d, int64_t h, int64_t mi, int64_t sec,
        int64_t frac_us, int64_t offset_s, int64_t *ret_us)
{
        /* Years 1-9999 in UTC: what the stored ISO form can say. */
        static const int64_t first = -62135596800LL * 1000000, last = 253402300799LL * 1000000 + 999999;
        int64_t us;

        if (y < 1 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, (unsigned) mo) ||
            h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60)
                return -EINVAL;
        if (sec == 60)
                sec = 59;       /* a leap second is kept inside its minute */
        us = ((days_from_civil(y, (unsigned) mo, (unsigned) d) * 86400 + h * 3600 + mi * 60 + sec -
               offset_s) * 1000000) + frac_us;
        if (us < first || us > last)
                return -EINVAL;
        *ret_us = us;
        return 0;
}

static int
parse_rfc1123(const char *s, size_t len, int64_t *ret_us)
{
        static const char *const months[] = {
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        };
        char buf[64], mon[4], zone[8];
        int d, y, h, mi, sec, n = 0;
        const char *p;
        size_t i;

        if (len >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, s, len);
        buf[len] = '\0';
        p = strchr(buf, ',');
        p = p ? p + 1 : buf;
        if (sscanf(p, " %2d %3s %4d %2d:%2d:%2d %7s%n", &d, mon, &y, &h, &mi, &sec, zone, &n) != 7 ||
            p[n] != '\0' || (strcmp(zone, "GMT") != 0 && strcmp(zone, "UTC") != 0 && strcmp(zone, "+0000") != 0))
                return -EINVAL;
        for (i = 0; i < ARRAY_SIZE(months); i++)
                if (strcmp(mon, months[i]) == 0)
                        return combine(y, (int64_t) i + 1, d, h, mi, sec, 0, 0, ret_us);
        return -EINVAL;
}

int
event_parse_time(const char *s, size_t len, int64_t *ret_us)
{
        int64_t y, mo, d, h, mi, sec, frac = 0, oh, om, offset = 0;
        size_t i = 19, nd = 0;

        if (!(digits(s, len, 0, 4, &y) && len >= 19 && s[4] == '-' && digits(s, len, 5, 2, &mo) &&
              s[7] == '-' && digits(s, len, 8, 2, &d) && (s[10] == 'T' || s[10] == 't' || s[10] == ' ') &&
              digits(s, len, 11, 2, &h) && s[13] == ':' && digits(s, len, 14, 2, &mi) && s[16] == ':' &&
              digits(s, len, 17, 2, &sec)))
                return parse_rfc1123(s, len, ret_us);
        if (i < len && s[i] == '.') {
                for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, nd++)
                        if (nd < 6)
                                frac = frac * 10 + (s[i] - '0');
                if (nd == 0 || nd > 9)
                        return -EINVAL;
                for (; nd < 6; nd++)
                        frac *= 10;
        }
        if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
                i++;
        } else if (i < len && (s[i] == '+' || s[i] == '-')) {
                if (!(digits(s, len, i + 1, 2, &oh) && i + 3 < len && s[i + 3] == ':' &&
                      digits(s, len, i + 4, 2, &om)) || oh > 23 || om > 59)
                        return -EINVAL;
                offset = (oh * 3600 + om * 60) * (s[i] == '-' ? -1 : 1);
                i += 6;
        }
        if (i != len)
                return -EINVAL;
        return combine(y, mo, d, h, mi, sec, frac, offset, ret_us);
}

bool
event_hour_of(const char *t, char hour[14])
{
        snprintf(hour, 14, "%.13s", t);
        return strcmp(t + 13, ":00:00.000000Z") == 0;
}

void
event_next_hour(const char *hour, char out[TIME_ISO_LEN])
{
        char t[32];
        int64_t us = 0;

        snprintf(t, sizeof(t), "%.13s:00:00Z", hour);
        (void) event_parse_time(t, strlen(t), &us);
        time_format_iso(us + 3600LL * 1000000, out);
}
