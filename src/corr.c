/* corr: message keys and message-state rules. */
#include "config.h"

#include <string.h>

#include "corr.h"

const char *const corr_time_columns[CT_COUNT] = {
        [CT_FIRST] = "first_at", [CT_LAST] = "last_at", [CT_UPDATED] = "updated_at",
        [CT_QUEUED] = "queued_at", [CT_DEFERRED] = "deferred_at", [CT_SENT] = "sent_at",
        [CT_FAILED] = "failed_at", [CT_COMPLAINED] = "complained_at", [CT_OPENED] = "opened_at",
        [CT_CLICKED] = "clicked_at", [CT_UNSUBSCRIBED] = "unsubscribed_at",
};

const char *const corr_count_columns[CC_COUNT] = {
        [CC_EVENTS] = "events", [CC_DEFERRED] = "deferred_count",
        [CC_OPENS] = "open_count", [CC_CLICKS] = "click_count",
};

/* Delivery states, least to most final: on equal event times the later one
 * in this list wins. */
static const struct {
        const char *name;
        enum corr_time t;
} states[] = {
        { "Queued", CT_QUEUED }, { "Deferred", CT_DEFERRED }, { "Sent", CT_SENT }, { "Failed", CT_FAILED },
};

static bool
empty(const char *s)
{
        return s == NULL || s[0] == '\0';
}

bool
corr_key(const struct event *ev, struct corr_key *k)
{
        memset(k, 0, sizeof(*k));
        if (ev->kind != EVENT_MAIL || empty(ev->str[EVS_ADDRESS]))
                return false;
        k->server_id = ev->has_num[EVN_SERVER_ID] ? ev->num[EVN_SERVER_ID] : 0;
        k->address = ev->str[EVS_ADDRESS];
        k->mailing_id = empty(ev->str[EVS_MAILING_ID]) ? NULL : ev->str[EVS_MAILING_ID];
        k->message_id = empty(ev->str[EVS_MESSAGE_ID]) ? NULL : ev->str[EVS_MESSAGE_ID];
        return true;
}

const char *
corr_state(const char *s)
{
        size_t i;

        for (i = 0; s && i < sizeof(states) / sizeof(states[0]); i++)
                if (strcmp(s, states[i].name) == 0)
                        return states[i].name;
        return NULL;
}

void
corr_init(struct corr_msg *m)
{
        memset(m, 0, sizeof(*m));
}

/* A time into a column: t may be a string shorter than the column (a
 * received_at read back from the database), so only its own bytes. */
static void
set_time(char *dst, const char *t)
{
        size_t n = strnlen(t, TIME_ISO_LEN - 1);

        memcpy(dst, t, n);
        dst[n] = '\0';
}

static void
set_min(char *dst, const char *t)
{
        if (dst[0] == '\0' || strcmp(t, dst) < 0)
                set_time(dst, t);
}

static void
set_max(char *dst, const char *t)
{
        if (strcmp(t, dst) > 0)
                set_time(dst, t);
}

static int
strcmp_null(const char *a, const char *b)
{
        return strcmp(a ? a : "", b ? b : "");
}

/* The earliest Failed gives the failure; equal times are decided by the
 * failure's own fields, so that the arrival order never matters. */
static void
apply_failure(struct corr_msg *m, const struct event *ev, const char *t)
{
        int64_t code = ev->has_num[EVN_FAILURE_CODE] ? ev->num[EVN_FAILURE_CODE] : -1;
        int64_t have = m->has_failure_code ? m->failure_code : -1;
        int c = m->t[CT_FAILED][0] ? strcmp(t, m->t[CT_FAILED]) : -1;

        if (c == 0) {
                c = strcmp_null(m->failure_type, ev->str[EVS_FAILURE_TYPE]);
                if (c == 0)
                        c = code > have ? -1 : code < have;
                if (c == 0)
                        c = strcmp_null(m->reason, ev->str[EVS_REASON]);
        }
        if (c >= 0)
                return;
        set_time(m->t[CT_FAILED], t);
        m->failure_type = ev->str[EVS_FAILURE_TYPE];
        m->reason = ev->str[EVS_REASON];
        m->failure_code = ev->num[EVN_FAILURE_CODE];
        m->has_failure_code = ev->has_num[EVN_FAILURE_CODE];
}

/* The latest delivery milestone by event time is the state. */
static void
settle_state(struct corr_msg *m)
{
        const char *best = NULL, *at = "";
        size_t i;

        for (i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
                const char *t = m->t[states[i].t];

                if (t[0] && strcmp(t, at) >= 0) {
                        best = states[i].name;
                        at = t;
                }
        }
        m->state = best;
}

void
corr_apply(struct corr_msg *m, const struct event *ev, const char *received_at)
{
        const char *t = ev->occurred_at[0] ? ev->occurred_at : received_at;
        const char *type = ev->type;

        m->n[CC_EVENTS]++;
        set_min(m->t[CT_FIRST], t);
        set_max(m->t[CT_LAST], t);
        set_max(m->t[CT_UPDATED], received_at);
        if (empty(m->mailing_id) && !empty(ev->str[EVS_MAILING_ID]))
                m->mailing_id = ev->str[EVS_MAILING_ID];

        if (strcmp(type, "Queued") == 0)
                set_min(m->t[CT_QUEUED], t);
        else if (strcmp(type, "Deferred") == 0) {
                m->n[CC_DEFERRED]++;
                set_max(m->t[CT_DEFERRED], t);
        } else if (strcmp(type, "Sent") == 0)
                set_min(m->t[CT_SENT], t);
        else if (strcmp(type, "Failed") == 0)
                apply_failure(m, ev, t);
        else if (strcmp(type, "Complaint") == 0)
                set_min(m->t[CT_COMPLAINED], t);
        else if (strcmp(type, "Open") == 0) {
                m->n[CC_OPENS]++;
                set_min(m->t[CT_OPENED], t);
        } else if (strcmp(type, "Click") == 0) {
                m->n[CC_CLICKS]++;
                set_min(m->t[CT_CLICKED], t);
        } else if (strcmp(type, "Unsubscribe") == 0)
                set_min(m->t[CT_UNSUBSCRIBED], t);
        settle_state(m);
}
