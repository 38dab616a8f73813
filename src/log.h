/* log: structured log lines to journald (sd_journal_send) or as one JSON
 * object per line on stderr, or plain text. Escapes untrusted bytes. Every
 * function is safe from any thread. Never pass a secret. */
#ifndef SLHOOKD_LOG_H
#define SLHOOKD_LOG_H

#include <stdint.h>
#include <syslog.h>

enum log_format {
        LOG_FORMAT_AUTO,        /* journal when stderr is the journal stream, else JSON */
        LOG_FORMAT_JOURNAL,
        LOG_FORMAT_JSON,
        LOG_FORMAT_TEXT,
};

/* MESSAGE_ID of each kind of line (journald catalog style, 128-bit hex). */
#define LOG_MID_REQUEST  "df4d770242be491089390db52c6629f7" /* one per HTTP request */
#define LOG_MID_START    "ab2a6aadb4bd4002a0e5b4ea49d975d1" /* daemon ready */
#define LOG_MID_STOP     "3d93ca77652b46639c3500d07f386feb" /* daemon stopping/stopped */
#define LOG_MID_REFUSED  "43a4ee6eef0c4e7f84c3eb6fab80b9d7" /* peer not in allow list */
#define LOG_MID_STORE    "d93dee04687d4954b522f1cea2ebd46b" /* storage failure or recovery */
#define LOG_MID_CONFIG   "2720e942eeba4c438dde965e8873349a" /* configuration problem or warning */
#define LOG_MID_TLS      "87d001fd2f924ec0992e401d835b071c" /* TLS / HTTP library message */
#define LOG_MID_MGMT     "1e536cc4e9e74a5e81b9b16831747924" /* management thread: registration, self-test */
#define LOG_MID_FORWARD  "66dae5a328bb4069a7fa03da68f5c612" /* a [forward NAME] failing, or up again */
#define LOG_MID_HEALTH   "2d355bbb37b44653a11eaa1e458fd8c1" /* a subaccount over a [health] threshold, or back under */
#define LOG_MID_GENERAL  "d41e216e8dfd458c902143d9e678afc2" /* anything else */

/* Structured fields of a line. NULL strings and negative numbers are left out. */
struct log_fields {
        const char *endpoint;
        const char *type;
        const char *message_id;
        const char *peer;
        int status;
        int64_t latency_us;
        const char *path;               /* the request's path, without its query */
        const char *reason;             /* why a request was refused */
        const char *forward;            /* [forward NAME] */
        int64_t server_id;              /* a subaccount (ServerId) the line is about */
        const char *health_flag;        /* a [health] threshold crossed, or back under */
        const char *rate;               /* the rate that crossed it, as printed */
};
#define LOG_FIELDS_NONE { NULL, NULL, NULL, NULL, -1, -1, NULL, NULL, NULL, -1, NULL, NULL }

/* Choose format and the most verbose priority written (LOG_ERR..LOG_DEBUG).
 * Call from main before threads start; level may change later (reload). */
void log_setup(enum log_format format, int max_priority);
void log_set_level(int max_priority);
/* Whether lines of this priority are written. */
int log_enabled(int priority);
/* Parse "error|warning|notice|info|debug"; -1 when unknown. */
int log_level_from_string(const char *s);

void log_write(const char *file, int line, const char *func, int priority,
               const char *message_id, const struct log_fields *f,
               const char *fmt, ...) __attribute__((format(printf, 7, 8)));

#define log_full(prio, mid, fields, ...) \
        do { \
                if (log_enabled(prio)) \
                        log_write(__FILE__, __LINE__, __func__, prio, mid, fields, __VA_ARGS__); \
        } while (0)
#define log_error(...)   log_full(LOG_ERR, LOG_MID_GENERAL, NULL, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, LOG_MID_GENERAL, NULL, __VA_ARGS__)
#define log_notice(...)  log_full(LOG_NOTICE, LOG_MID_GENERAL, NULL, __VA_ARGS__)
#define log_info(...)    log_full(LOG_INFO, LOG_MID_GENERAL, NULL, __VA_ARGS__)
#define log_debug(...)   log_full(LOG_DEBUG, LOG_MID_GENERAL, NULL, __VA_ARGS__)

#endif
