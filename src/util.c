/* util: allocation, strict parsing, buffers, time and files. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static void
oom(void)
{
        static const char msg[] = "slhookd: out of memory\n";

        (void) !write(STDERR_FILENO, msg, sizeof(msg) - 1);
        abort();
}

/* glibc hands the free top of a thread's arena back to the kernel once more
 * than 128 KiB lies there (madvise), and the next malloc faults it in again.
 * The writer's SQLite statement journals crossed that line at most statements:
 * 1,700 madvise calls a second under load, each a TLB flush on every CPU
 * (bench/README.md). Keep up to 16 MiB free in an arena; allocations from
 * 1 MiB on are mapped on their own (a fixed trim threshold also fixes the
 * mmap threshold, which would otherwise stay at 128 KiB). */
void
malloc_keep(void)
{
        mallopt(M_MMAP_THRESHOLD, 1 << 20);
        mallopt(M_TRIM_THRESHOLD, 16 << 20);
}

void *
xmalloc(size_t n)
{
        void *p = malloc(n ? n : 1);

        if (p == NULL)
                oom();
        return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
        void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

        if (p == NULL)
                oom();
        return p;
}

void *
xreallocarray(void *p, size_t nmemb, size_t size)
{
        if (size != 0 && nmemb > SIZE_MAX / size)
                oom();
        p = realloc(p, nmemb * size != 0 ? nmemb * size : 1);
        if (p == NULL)
                oom();
        return p;
}

char *
xstrdup(const char *s)
{
        return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
        char *p = xmalloc(n + 1);

        memcpy(p, s, n);
        p[n] = '\0';
        return p;
}

char *
xasprintf(const char *fmt, ...)
{
        va_list ap;
        char *s;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                oom();
        va_end(ap);
        return s;
}

void
freezero(void *p, size_t n)
{
        if (p == NULL)
                return;
        explicit_bzero(p, n);
        free(p);
}

int
str_to_i64(const char *s, size_t len, int64_t min, int64_t max, int64_t *ret)
{
        bool neg = false;
        uint64_t v = 0, lim;
        size_t i = 0;

        if (len == 0)
                return -EINVAL;
        if (s[0] == '-') {
                if (min >= 0)
                        return -EINVAL;
                neg = true;
                i = 1;
                if (len == 1)
                        return -EINVAL;
        }
        lim = neg ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;
        for (; i < len; i++) {
                unsigned d;

                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                d = (unsigned) (s[i] - '0');
                if (v > (lim - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        if (neg) {
                int64_t r = v == (uint64_t) INT64_MAX + 1 ? INT64_MIN : -(int64_t) v;

                if (r < min)
                        return -ERANGE;
                *ret = r;
                return 0;
        }
        if ((int64_t) v > max || (int64_t) v < min)
                return -ERANGE;
        *ret = (int64_t) v;
        return 0;
}

bool
str_eq_ci(const char *s, size_t len, const char *lit)
{
        size_t n = strlen(lit);

        return n == len && strncasecmp(s, lit, n) == 0;
}

char *
str_trim(char *s)
{
        char *p = s, *e;

        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
                p++;
        memmove(s, p, strlen(p) + 1);
        e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
                *--e = '\0';
        return s;
}

size_t
utf8_seq_len(const unsigned char *p, size_t n)
{
        unsigned char c = p[0];
        size_t len, i;
        uint32_t cp;

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf) {
                len = 2;
                cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
                len = 3;
                cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
                len = 4;
                cp = c & 0x07;
        } else
                return 0;
        if (n < len)
                return 0;
        for (i = 1; i < len; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return len;
}

bool
str_eq_ct(const void *a, size_t alen, const void *b, size_t blen)
{
        const volatile unsigned char *pa = a, *pb = b;
        unsigned char diff = 0;
        size_t i;

        /* Walk the full length of b (the secret) whatever a is. */
        for (i = 0; i < blen; i++)
                diff |= (unsigned char) ((i < alen ? pa[i] : 0) ^ pb[i]);
        /* No branch on diff: the answer is all the comparison tells. */
        return ((unsigned) diff | (unsigned) (alen != blen)) == 0;
}

void
buf_append(struct buf *b, const void *p, size_t n)
{
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 256;

                while (cap < b->len + n + 1)
                        cap *= 2;
                b->data = xreallocarray(b->data, cap, 1);
                b->cap = cap;
        }
        if (n)
                memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
}

void
buf_puts(struct buf *b, const char *s)
{
        buf_append(b, s, strlen(s));
}

void
buf_printf(struct buf *b, const char *fmt, ...)
{
        va_list ap;
        char *s;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (n < 0)
                oom();
        buf_append(b, s, (size_t) n);
        free(s);
}

void
buf_done(struct buf *b)
{
        free(b->data);
        b->data = NULL;
        b->len = b->cap = 0;
}

void
time_format_iso(int64_t usec, char out[TIME_ISO_LEN])
{
        time_t sec = (time_t) (usec / 1000000);
        long frac = (long) (usec % 1000000);
        struct tm tm;

        if (frac < 0) {
                frac += 1000000;
                sec--;
        }
        gmtime_r(&sec, &tm);
        snprintf(out, TIME_ISO_LEN, "%04u-%02u-%02uT%02u:%02u:%02u.%06luZ",
                 (unsigned) (tm.tm_year + 1900) % 10000u, (unsigned) (tm.tm_mon + 1) % 100u,
                 (unsigned) tm.tm_mday % 100u, (unsigned) tm.tm_hour % 100u,
                 (unsigned) tm.tm_min % 100u, (unsigned) tm.tm_sec % 100u,
                 (unsigned long) frac % 1000000ul);
}

void
time_format_local(int64_t usec, char out[TIME_LOCAL_LEN])
{
        time_t sec = (time_t) (usec / 1000000);
        long frac = (long) (usec % 1000000), off;
        struct tm tm;

        if (frac < 0) {
                frac += 1000000;
                sec--;
        }
        localtime_r(&sec, &tm);
        off = tm.tm_gmtoff / 60;
        snprintf(out, TIME_LOCAL_LEN, "%04u-%02u-%02uT%02u:%02u:%02u.%06lu%c%02u:%02u",
                 (unsigned) (tm.tm_year + 1900) % 10000u, (unsigned) (tm.tm_mon + 1) % 100u,
                 (unsigned) tm.tm_mday % 100u, (unsigned) tm.tm_hour % 100u,
                 (unsigned) tm.tm_min % 100u, (unsigned) tm.tm_sec % 100u,
                 (unsigned long) frac % 1000000ul, off < 0 ? '-' : '+',
                 (unsigned) (labs(off) / 60) % 100u, (unsigned) (labs(off) % 60));
}

int64_t
time_now_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
time_now_iso(char out[TIME_ISO_LEN])
{
        time_format_iso(time_now_us(), out);
}

int64_t
time_mono_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int
file_read(const char *path, size_t max, char **ret, size_t *ret_len)
{
        struct stat st;
        char *data;
        size_t len = 0;
        int fd, r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                goto fail;
        }
        if (!S_ISREG(st.st_mode)) {
                r = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
                goto fail;
        }
        if ((uint64_t) st.st_size > max) {
                r = -EFBIG;
                goto fail;
        }
        data = xmalloc((size_t) st.st_size + 1);
        for (;;) {
                ssize_t n = read(fd, data + len, (size_t) st.st_size - len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        freezero(data, (size_t) st.st_size + 1);
                        goto fail;
                }
                if (n == 0 || (len += (size_t) n) == (size_t) st.st_size)
                        break;
        }
        data[len] = '\0';
        close(fd);
        *ret = data;
        if (ret_len)
                *ret_len = len;
        return 0;
fail:
        close(fd);
        return r;
}

int
file_write_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
        char *tmp = xasprintf("%s.tmp.%ld", path, (long) getpid());
        const char *p = data;
        int fd, r = 0;

        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0) {
                r = -errno;
                goto out;
        }
        while (len > 0) {
                ssize_t n = write(fd, p, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        break;
                }
                p += n;
                len -= (size_t) n;
        }
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                (void) unlink(tmp);
out:
        free(tmp);
        return r;
}

void
hex_encode(const unsigned char *p, size_t n, char *out)
{
        static const char hex[] = "0123456789abcdef";
        size_t i;

        for (i = 0; i < n; i++) {
                out[2 * i] = hex[p[i] >> 4];
                out[2 * i + 1] = hex[p[i] & 15];
        }
        out[2 * n] = '\0';
}
