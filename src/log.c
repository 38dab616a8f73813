/* log: journald / JSON lines / text, with escaping of untrusted bytes. */
#include "config.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "log.h"
#include "util.h"

static enum log_format log_format = LOG_FORMAT_JSON;
static atomic_int log_max = LOG_INFO;

static const char *const prio_names[] = {
        "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
};

static bool
stderr_is_journal(void)
{
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (e == NULL || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void
log_setup(enum log_format format, int max_priority)
{
        if (format == LOG_FORMAT_AUTO)
                format = stderr_is_journal() ? LOG_FORMAT_JOURNAL : LOG_FORMAT_JSON;
        log_format = format;
        log_set_level(max_priority);
}

void
log_set_level(int max_priority)
{
        atomic_store(&log_max, max_priority);
}

int
log_enabled(int priority)
{
        return priority <= atomic_load_explicit(&log_max, memory_order_relaxed);
}

int
log_level_from_string(const char *s)
{
        static const struct { const char *name; int prio; } t[] = {
                { "error", LOG_ERR }, { "err", LOG_ERR }, { "warning", LOG_WARNING },
                { "warn", LOG_WARNING }, { "notice", LOG_NOTICE }, { "info", LOG_INFO },
                { "debug", LOG_DEBUG },
        };
        size_t i;

        for (i = 0; i < ARRAY_SIZE(t); i++)
                if (strcasecmp(s, t[i].name) == 0)
                        return t[i].prio;
        return -1;
}

/* Append s escaped: control bytes and invalid UTF-8 become \u00XX (JSON) or
 * \xXX (text and journal), so a log line is always one valid line. */
static void
escape(struct buf *b, const char *s, bool json)
{
        const unsigned char *p = (const unsigned char *) s;
        size_t n = strlen(s);

        while (n > 0) {
                size_t k = utf8_seq_len(p, n);

                if (k == 1 && *p >= 0x20 && *p != 0x7f && !(json && (*p == '"' || *p == '\\'))) {
                        buf_append(b, p, 1);
                } else if (k > 1) {
                        buf_append(b, p, k);
                } else {
                        if (json && (*p == '"' || *p == '\\'))
                                buf_printf(b, "\\%c", *p);
                        else if (json)
                                buf_printf(b, "\\u%04x", *p);
                        else
                                buf_printf(b, "\\x%02x", *p);
                        k = 1;
                }
                p += k;
                n -= k;
        }
}

static void
json_field(struct buf *b, const char *key, const char *val)
{
        buf_printf(b, ",\"%s\":\"", key);
        escape(b, val, true);
        buf_puts(b, "\"");
}

static void
write_json(int prio, const char *mid, const struct log_fields *f, const char *msg)
{
        struct buf b = { 0 };
        char now[TIME_ISO_LEN];

        time_now_iso(now);
        buf_printf(&b, "{\"time\":\"%s\",\"priority\":%d,\"level\":\"%s\","
                   "\"syslog_identifier\":\"slhookd\",\"message_id\":\"%s\"",
                   now, prio, prio_names[prio], mid);
        json_field(&b, "message", msg);
        if (f) {
                if (f->endpoint)
                        json_field(&b, "slhookd_endpoint", f->endpoint);
                if (f->type)
                        json_field(&b, "slhookd_type", f->type);
                if (f->message_id)
                        json_field(&b, "slhookd_message_id", f->message_id);
                if (f->peer)
                        json_field(&b, "slhookd_peer", f->peer);
                if (f->status >= 0)
                        buf_printf(&b, ",\"slhookd_status\":%d", f->status);
                if (f->latency_us >= 0)
                        buf_printf(&b, ",\"slhookd_latency_us\":%lld", (long long) f->latency_us);
                if (f->path)
                        json_field(&b, "slhookd_path", f->path);
                if (f->reason)
                        json_field(&b, "slhookd_reason", f->reason);
                if (f->forward)
                        json_field(&b, "slhookd_forward", f->forward);
                if (f->server_id >= 0)
                        buf_printf(&b, ",\"slhookd_server_id\":%lld", (long long) f->server_id);
                if (f->health_flag)
                        json_field(&b, "slhookd_health_flag", f->health_flag);
                if (f->rate)
                        json_field(&b, "slhookd_rate", f->rate);
        }
        buf_puts(&b, "}\n");
        (void) !write(STDERR_FILENO, b.data, b.len);
        buf_done(&b);
}

static void
write_text(int prio, const struct log_fields *f, const char *msg)
{
        struct buf b = { 0 };
        char now[TIME_ISO_LEN];

        time_now_iso(now);
        buf_printf(&b, "%s slhookd[%ld] %s: ", now, (long) getpid(), prio_names[prio]);
        escape(&b, msg, false);
        if (f && f->peer) {
                buf_puts(&b, " peer=");
                escape(&b, f->peer, false);
        }
        if (f && f->latency_us >= 0)
                buf_printf(&b, " latency_us=%lld", (long long) f->latency_us);
        buf_puts(&b, "\n");
        (void) !write(STDERR_FILENO, b.data, b.len);
        buf_done(&b);
}

static void
write_journal(const char *file, int line, const char *func, int prio, const char *mid,
              const struct log_fields *f, const char *msg)
{
        /* 7 fields always, 12 more at most: every one has its place. */
        struct buf field[19] = { { 0 } };
        struct iovec iov[19];
        int n = 0, i;

#define ADD(...) do { buf_printf(&field[n], __VA_ARGS__); n++; } while (0)
#define ADD_ESC(key, val) do { buf_puts(&field[n], key "="); escape(&field[n], val, false); n++; } while (0)
        ADD_ESC("MESSAGE", msg);
        ADD("PRIORITY=%d", prio);
        ADD("SYSLOG_IDENTIFIER=slhookd");
        ADD("MESSAGE_ID=%s", mid);
        ADD("CODE_FILE=%s", file);
        ADD("CODE_LINE=%d", line);
        ADD("CODE_FUNC=%s", func);
        if (f) {
                if (f->endpoint)
                        ADD_ESC("SLHOOKD_ENDPOINT", f->endpoint);
                if (f->type)
                        ADD_ESC("SLHOOKD_TYPE", f->type);
                if (f->message_id)
                        ADD_ESC("SLHOOKD_MESSAGE_ID", f->message_id);
                if (f->peer)
                        ADD_ESC("SLHOOKD_PEER", f->peer);
                if (f->status >= 0)
                        ADD("SLHOOKD_STATUS=%d", f->status);
                if (f->latency_us >= 0)
                        ADD("SLHOOKD_LATENCY_US=%lld", (long long) f->latency_us);
                if (f->path)
                        ADD_ESC("SLHOOKD_PATH", f->path);
                if (f->reason)
                        ADD_ESC("SLHOOKD_REASON", f->reason);
                if (f->forward)
                        ADD_ESC("SLHOOKD_FORWARD", f->forward);
                if (f->server_id >= 0)
                        ADD("SLHOOKD_SERVER_ID=%lld", (long long) f->server_id);
                if (f->health_flag)
                        ADD_ESC("SLHOOKD_HEALTH_FLAG", f->health_flag);
                if (f->rate)
                        ADD_ESC("SLHOOKD_RATE", f->rate);
        }
#undef ADD
#undef ADD_ESC
        for (i = 0; i < n; i++) {
                iov[i].iov_base = field[i].data;
                iov[i].iov_len = field[i].len;
        }
        if (sd_journal_sendv(iov, n) < 0)
                write_json(prio, mid, f, msg);
        for (i = 0; i < n; i++)
                buf_done(&field[i]);
}

void
log_write(const char *file, int line, const char *func, int priority,
          const char *message_id, const struct log_fields *f, const char *fmt, ...)
{
        va_list ap;
        char *msg;

        if (priority < 0 || priority > LOG_DEBUG)
                priority = LOG_ERR;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (msg == NULL)
                return;
        switch (log_format) {
        case LOG_FORMAT_JOURNAL:
                write_journal(file, line, func, priority, message_id, f, msg);
                break;
        case LOG_FORMAT_TEXT:
                write_text(priority, f, msg);
                break;
        default:
                write_json(priority, message_id, f, msg);
                break;
        }
        free(msg);
}
