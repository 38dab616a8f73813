/* out: table, JSON lines, CSV. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "out.h"
#include "util.h"

struct out {
        FILE *f;
        enum out_format fmt;
        unsigned width;
        bool vertical, local;
        const struct out_col *cols;
        size_t ncols;
        /* table: every row kept (sanitised) until out_end sizes the columns */
        char **cells;
        bool *nums;
        size_t nrows, cap;
        /* table, after out_flush: the widths of the rows shown so far, kept
         * for the rows to come (the header is written once) */
        size_t *w;
};

int
out_parse_format(const char *s, enum out_format *ret)
{
        if (strcmp(s, "table") == 0)
                *ret = OUT_TABLE;
        else if (strcmp(s, "json") == 0)
                *ret = OUT_JSON;
        else if (strcmp(s, "csv") == 0)
                *ret = OUT_CSV;
        else
                return -EINVAL;
        return 0;
}

struct out *
out_new(FILE *f, enum out_format fmt, unsigned width, bool vertical)
{
        struct out *o = xcalloc(1, sizeof(*o));

        o->f = f;
        o->fmt = fmt;
        o->width = width;
        o->vertical = vertical;
        return o;
}

void
out_local_times(struct out *o)
{
        o->local = true;
}

static void
csv_field(FILE *f, const char *v)
{
        if (v == NULL)
                return;
        if (strpbrk(v, ",\"\r\n") == NULL && v[0] != ' ' && (v[0] == '\0' || v[strlen(v) - 1] != ' ')) {
                fputs(v, f);
                return;
        }
        fputc('"', f);
        for (; *v; v++) {
                if (*v == '"')
                        fputc('"', f);
                fputc(*v, f);
        }
        fputc('"', f);
}

static void
csv_header(struct out *o)
{
        size_t i;

        for (i = 0; i < o->ncols; i++) {
                if (i)
                        fputc(',', o->f);
                csv_field(o->f, o->cols[i].name);
        }
        fputc('\n', o->f);
}

void
out_columns(struct out *o, const struct out_col *cols, size_t n)
{
        if (o->cols == cols && o->ncols == n)
                return;         /* the same again (following: each batch) */
        o->cols = cols;
        o->ncols = n;
        if (o->fmt == OUT_CSV)
                csv_header(o);
}

static void
json_string(FILE *f, const char *s)
{
        const unsigned char *p = (const unsigned char *) s;
        size_t k;

        fputc('"', f);
        while (*p) {
                if (*p == '"' || *p == '\\') {
                        fputc('\\', f);
                        fputc(*p++, f);
                } else if (*p < 0x20 || *p == 0x7f) {
                        fprintf(f, "\\u%04x", *p++);
                } else if (*p < 0x80) {
                        fputc(*p++, f);
                } else if ((k = utf8_seq_len(p, strlen((const char *) p))) > 0) {
                        fwrite(p, 1, k, f);
                        p += k;
                } else {
                        fputs("\\ufffd", f);
                        p++;
                }
        }
        fputc('"', f);
}

/* A stored time, "YYYY-MM-DDTHH:MM:SS.ffffffZ"? */
static bool
is_time(const char *v)
{
        return v && strlen(v) == 27 && v[4] == '-' && v[10] == 'T' && v[19] == '.' && v[26] == 'Z';
}

/* A time out_row wrote in the local zone, "…SS.ffffff+HH:MM"? */
static bool
is_local_time(const char *v)
{
        return v && strlen(v) == 32 && v[4] == '-' && v[10] == 'T' && v[19] == '.' &&
               (v[26] == '+' || v[26] == '-') && v[29] == ':';
}

/* A table cell: controls and broken UTF-8 as '?', so no value can move the
 * cursor or change the terminal; times to the second. */
static char *
sanitize(const char *v)
{
        struct buf b = { 0 };
        const unsigned char *p = (const unsigned char *) v;
        size_t k;

        if (is_time(v)) {
                buf_append(&b, v, 19);
                buf_puts(&b, "Z");
                return b.data;
        }
        if (is_local_time(v)) {         /* to the second, and the offset */
                buf_append(&b, v, 19);
                buf_puts(&b, v + 26);
                return b.data;
        }
        buf_puts(&b, "");
        while (p && *p) {
                if (*p < 0x20 || *p == 0x7f) {
                        buf_append(&b, *p == '\t' || *p == '\n' || *p == '\r' ? " " : "?", 1);
                        p++;
                } else if (*p < 0x80) {
                        buf_append(&b, p++, 1);
                } else if ((k = utf8_seq_len(p, strlen((const char *) p))) > 0 &&
                           !(k == 2 && p[0] == 0xc2 && p[1] < 0xa0)) {  /* C1 controls */
                        buf_append(&b, p, k);
                        p += k;
                } else {
                        buf_append(&b, "?", 1);
                        p++;
                }
        }
        return b.data;
}

void
out_row(struct out *o, const char *const *values, const bool *num)
{
        const char *const *v = values;
        const char **lv = NULL;
        char (*ltime)[TIME_LOCAL_LEN] = NULL;
        int64_t us;
        size_t i;

        if (o->local) {
                lv = xreallocarray(NULL, o->ncols, sizeof(*lv));
                ltime = xreallocarray(NULL, o->ncols, sizeof(*ltime));
                for (i = 0; i < o->ncols; i++) {
                        lv[i] = values[i];
                        if (is_time(values[i]) && event_parse_time(values[i], 27, &us) == 0) {
                                time_format_local(us, ltime[i]);
                                lv[i] = ltime[i];
                        }
                }
                v = lv;
        }

        switch (o->fmt) {
        case OUT_JSON:
                fputc('{', o->f);
                for (i = 0; i < o->ncols; i++) {
                        if (i)
                                fputc(',', o->f);
                        json_string(o->f, o->cols[i].name);
                        fputc(':', o->f);
                        if (v[i] == NULL)
                                fputs("null", o->f);
                        else if (num[i])
                                fputs(v[i], o->f);
                        else
                                json_string(o->f, v[i]);
                }
                fputs("}\n", o->f);
                break;
        case OUT_CSV:
                for (i = 0; i < o->ncols; i++) {
                        if (i)
                                fputc(',', o->f);
                        csv_field(o->f, v[i]);
                }
                fputc('\n', o->f);
                break;
        case OUT_TABLE:
                if (o->nrows == o->cap) {
                        o->cap = o->cap ? o->cap * 2 : 64;
                        o->cells = xreallocarray(o->cells, o->cap * o->ncols, sizeof(char *));
                        o->nums = xreallocarray(o->nums, o->cap * o->ncols, sizeof(bool));
                }
                for (i = 0; i < o->ncols; i++) {
                        o->cells[o->nrows * o->ncols + i] = sanitize(v[i]);
                        o->nums[o->nrows * o->ncols + i] = num[i];
                }
                o->nrows++;
                break;
        }
        free(lv);
        free(ltime);
}

/* Display width: one column per code point. */
static size_t
display_len(const char *s)
{
        size_t n = 0;

        for (; *s; s++)
                n += ((unsigned char) *s & 0xc0) != 0x80;
        return n;
}

/* Print s in w columns: cut with an ellipsis when longer, padded on the
 * left (right-aligned) or the right. */
static void
cell(FILE *f, const char *s, size_t w, bool right, bool last)
{
        size_t n = display_len(s), pad;
        const char *p;

        if (n > w) {
                size_t keep = w ? w - 1 : 0;

                for (p = s; *p && keep; keep--)
                        for (p++; ((unsigned char) *p & 0xc0) == 0x80; p++)
                                ;
                fwrite(s, 1, (size_t) (p - s), f);
                if (w)
                        fputs("\u2026", f);
                return;
        }
        pad = w - n;
        if (right)
                fprintf(f, "%*s", (int) pad, "");
        fputs(s, f);
        if (!right && !last)
                fprintf(f, "%*s", (int) pad, "");
}

static void
table(struct out *o)
{
        size_t *w = xcalloc(o->ncols, sizeof(size_t)), *minw = xcalloc(o->ncols, sizeof(size_t));
        size_t i, r, total, shown = 0, last = 0, widest;
        bool fixed = o->w != NULL;

        if (fixed)
                memcpy(w, o->w, o->ncols * sizeof(size_t));
        for (i = 0; i < o->ncols; i++) {
                if (!o->cols[i].brief)
                        continue;
                shown++;
                last = i;
                if (fixed)
                        continue;
                w[i] = display_len(o->cols[i].name);
                minw[i] = w[i] < 8 ? 8 : w[i];
                for (r = 0; r < o->nrows; r++) {
                        size_t n = display_len(o->cells[r * o->ncols + i]);

                        if (n > w[i])
                                w[i] = n;
                }
                if (minw[i] > w[i])
                        minw[i] = w[i];
        }
        /* Narrow the widest free-text column, one step at a time, until the
         * table fits; then, if it must, the widest of the others (no column
         * below its header or 8). */
        for (; !fixed;) {
                size_t flex = SIZE_MAX;

                total = shown ? 2 * (shown - 1) : 0;
                widest = SIZE_MAX;
                for (i = 0; i < o->ncols; i++)
                        if (o->cols[i].brief) {
                                total += w[i];
                                if (w[i] <= minw[i])
                                        continue;
                                if (widest == SIZE_MAX || w[i] > w[widest])
                                        widest = i;
                                if (o->cols[i].flex && (flex == SIZE_MAX || w[i] > w[flex]))
                                        flex = i;
                        }
                if (o->width == 0 || total <= o->width || widest == SIZE_MAX)
                        break;
                w[flex != SIZE_MAX ? flex : widest]--;
        }
        for (r = fixed ? 1 : 0; r <= o->nrows; r++)
                for (i = 0; i < o->ncols; i++)
                        if (o->cols[i].brief) {
                                bool header = r == 0;
                                size_t k = (r - 1) * o->ncols + i;

                                cell(o->f, header ? o->cols[i].name : o->cells[k], w[i],
                                     !header && o->nums[k], i == last);
                                fputs(i == last ? "\n" : "  ", o->f);
                        }
        free(o->w);
        o->w = w;
        free(minw);
}

/* One record per block of "name: value" lines, nothing cut. */
static void
vertical(struct out *o)
{
        size_t i, r, w = 0;

        for (i = 0; i < o->ncols; i++)
                if (display_len(o->cols[i].name) > w)
                        w = display_len(o->cols[i].name);
        for (r = 0; r < o->nrows; r++) {
                if (r)
                        fputc('\n', o->f);
                for (i = 0; i < o->ncols; i++)
                        fprintf(o->f, "%s:%*s %s\n", o->cols[i].name,
                                (int) (w - display_len(o->cols[i].name)), "", o->cells[r * o->ncols + i]);
        }
}

/* The table's buffered rows written (sized the first time), and dropped. */
static void
write_rows(struct out *o)
{
        size_t i;

        if (o->fmt == OUT_TABLE && o->cols && (o->nrows > 0 || o->w == NULL)) {
                if (o->vertical)
                        vertical(o);
                else
                        table(o);
        }
        for (i = 0; i < o->nrows * o->ncols; i++)
                free(o->cells[i]);
        o->nrows = 0;
}

int
out_flush(struct out *o)
{
        if (o->fmt != OUT_TABLE || o->nrows > 0)
                write_rows(o);
        return fflush(o->f) == 0 && !ferror(o->f) ? 0 : -EIO;
}

int
out_end(struct out *o)
{
        int r;

        write_rows(o);
        free(o->cells);
        free(o->nums);
        free(o->w);
        r = fflush(o->f) == 0 && !ferror(o->f) ? 0 : -EIO;
        free(o);
        return r;
}
