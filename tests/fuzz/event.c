/* Fuzz target: event_parse() on any body, as JSON and as a form post.
 * Invariants: an error is one short message; an accepted body gives events
 * whose raw JSON is valid UTF-8 without a SecretKey, parses again to the same
 * event (same raw, same kind, same digest: a redelivery is recognised), and
 * whose event time reads back as itself. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "event.h"
#include "fuzz.h"

static bool
valid_utf8(const char *s, size_t len)
{
        size_t i, n;

        for (i = 0; i < len; i += n) {
                n = utf8_seq_len((const unsigned char *) s + i, len - i);
                if (n == 0)
                        return false;
        }
        return true;
}

static void
check_event(struct event *ev)
{
        struct event_batch again;
        struct event *ev2;
        char *err = NULL;
        int64_t us;
        size_t i;

        FUZZ_ASSERT(ev->kind == EVENT_MAIL || ev->kind == EVENT_VALIDATION || ev->kind == EVENT_QUARANTINE);
        FUZZ_ASSERT(ev->kind != EVENT_QUARANTINE || (ev->reason && ev->reason[0]));
        FUZZ_ASSERT(ev->kind == EVENT_QUARANTINE || ev->type != NULL);
        FUZZ_ASSERT(ev->raw != NULL && ev->raw[0] == '{' && strlen(ev->raw) == ev->raw_len);
        FUZZ_ASSERT(valid_utf8(ev->raw, ev->raw_len));
        for (i = 0; i < EVS_COUNT; i++)
                FUZZ_ASSERT(ev->str[i] == NULL || valid_utf8(ev->str[i], strlen(ev->str[i])));
        if (ev->occurred_at[0]) {
                FUZZ_ASSERT(event_parse_time(ev->occurred_at, strlen(ev->occurred_at), &us) == 0);
                FUZZ_ASSERT(us == ev->occurred_us);
        }
        event_digest(ev, "main");
        FUZZ_ASSERT(strlen(ev->digest) == (ev->kind == EVENT_MAIL ? 80u : 64u));
        FUZZ_ASSERT(strspn(ev->digest, "0123456789abcdef") == strlen(ev->digest));

        FUZZ_ASSERT(event_parse(ev->raw, ev->raw_len, false, &again, &err) == 0 && err == NULL);
        FUZZ_ASSERT(again.n == 1);
        ev2 = &again.v[0];
        FUZZ_ASSERT(ev2->secret == NULL);
        FUZZ_ASSERT(ev2->kind == ev->kind);
        FUZZ_ASSERT(ev2->raw_len == ev->raw_len && memcmp(ev2->raw, ev->raw, ev->raw_len) == 0);
        event_digest(ev2, "main");
        FUZZ_ASSERT(strcmp(ev2->digest, ev->digest) == 0);
        event_batch_done(&again);
}

static void
one(const uint8_t *data, size_t size, bool form)
{
        struct event_batch b;
        char *err = NULL;
        size_t i;
        int r;

        r = event_parse((const char *) data, size, form, &b, &err);
        if (r < 0) {
                FUZZ_ASSERT(r == -EINVAL && err != NULL && strlen(err) < 128);
                free(err);
                return;
        }
        FUZZ_ASSERT(r == 0 && err == NULL && b.n >= 1);
        for (i = 0; i < b.n; i++)
                check_event(&b.v[i]);
        event_batch_done(&b);
}

int
fuzz_event(const uint8_t *data, size_t size)
{
        one(data, size, false);
        one(data, size, true);
        return 0;
}

#ifdef FUZZ_ENTRY
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        return fuzz_event(data, size);
}
#endif
