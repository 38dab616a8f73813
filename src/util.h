/* util: allocation that never fails, strict number parsing, small buffers,
 * time formatting and file reading.  Pure; safe from any thread. */
#ifndef SLHOOKD_UTIL_H
#define SLHOOKD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Keep freed memory for the next malloc (call once, first thing in main). */
void malloc_keep(void);

/* Allocation wrappers: abort the process with a message on out-of-memory. */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xreallocarray(void *p, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Wipe then free; NULL-safe. For buffers that held key material. */
void freezero(void *p, size_t n);

/* Strict decimal parse of the whole string into [min, max]: no sign unless
 * min < 0, no spaces, no trailing bytes. Returns 0 or -EINVAL / -ERANGE. */
int str_to_i64(const char *s, size_t len, int64_t min, int64_t max, int64_t *ret);

/* ASCII case-insensitive equality of (s, len) with the C string lit. */
bool str_eq_ci(const char *s, size_t len, const char *lit);

/* Trim ASCII white space in place; returns s. */
char *str_trim(char *s);

/* Length (1-4) of the valid UTF-8 sequence that starts at p (n bytes left),
 * or 0 when the bytes there are not valid UTF-8 (overlong, surrogate...). */
size_t utf8_seq_len(const unsigned char *p, size_t n);

/* Constant-time equality of two byte strings: the time depends only on the
 * lengths, never on where they differ. */
bool str_eq_ct(const void *a, size_t alen, const void *b, size_t blen);

/* A growable byte buffer, always NUL-terminated after len. */
struct buf {
        char *data;
        size_t len;
        size_t cap;
};
void buf_append(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_done(struct buf *b);

/* Current wall-clock time as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (28 bytes + NUL). */
#define TIME_ISO_LEN 32
void time_now_iso(char out[TIME_ISO_LEN]);
/* Wall-clock time in microseconds since the epoch. */
int64_t time_now_us(void);
/* Format microseconds since the epoch the same way. */
void time_format_iso(int64_t usec, char out[TIME_ISO_LEN]);
/* The same instant in the local zone (TZ) with its offset:
 * "YYYY-MM-DDTHH:MM:SS.ffffff+HH:MM" (32 bytes + NUL). */
#define TIME_LOCAL_LEN 40
void time_format_local(int64_t usec, char out[TIME_LOCAL_LEN]);
/* Monotonic clock in microseconds. */
int64_t time_mono_us(void);
/* us microseconds as a timespec: a span, or a deadline on the clock us is
 * read from (pthread_cond_timedwait with CLOCK_MONOTONIC: time_mono_us). */
static inline struct timespec
time_ts(int64_t us)
{
        return (struct timespec) { .tv_sec = (time_t) (us / 1000000), .tv_nsec = (long) (us % 1000000) * 1000 };
}

/* Read a whole regular file of at most max bytes into a new NUL-terminated
 * buffer. Returns 0, or a negative errno (-EFBIG when larger than max). */
int file_read(const char *path, size_t max, char **ret, size_t *ret_len);

/* Write data to path atomically (temp file + rename) with the given mode. */
int file_write_atomic(const char *path, const void *data, size_t len, unsigned mode);

/* Hex-encode n bytes into out (2n+1 bytes). */
void hex_encode(const unsigned char *p, size_t n, char *out);

#endif
