/* out: rows written as a terminal table, JSON lines or CSV. Values are
 * untrusted text (they came in over the webhook): the table shows control
 * characters and broken UTF-8 as '?', JSON and CSV escape and quote them.
 * The table writes times ("YYYY-MM-DDTHH:MM:SS.ffffffZ") to the second. */
#ifndef SLHOOKD_OUT_H
#define SLHOOKD_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum out_format { OUT_TABLE, OUT_JSON, OUT_CSV };

struct out_col {
        const char *name;
        bool brief;             /* shown in the table (JSON and CSV show every column) */
        bool flex;              /* free text the table cuts first when it must narrow */
};

struct out;

/* "table", "json" or "csv" → *ret; -EINVAL otherwise. */
int out_parse_format(const char *s, enum out_format *ret);

/* width: the table's width in columns (0: no limit). vertical: the table
 * shows each row as "name: value" lines instead (for single records). */
struct out *out_new(FILE *f, enum out_format fmt, unsigned width, bool vertical);

/* Times in the rows to come are written in the local zone (TZ), with their
 * offset, instead of UTC. */
void out_local_times(struct out *o);

/* The columns of the rows to come; the array must outlive the out. */
void out_columns(struct out *o, const struct out_col *cols, size_t n);

/* One row: n values (NULL is SQL NULL); num[i] marks numbers (JSON writes
 * them unquoted, the table right-aligns them). */
void out_row(struct out *o, const char *const *values, const bool *num);

/* Write the rows given so far and flush f: for rows that keep coming. The
 * table is sized by the first rows it writes (the header is written once,
 * with them); later longer values are cut. 0, or -EIO when writing failed
 * (errno says why: EPIPE when the reader went away). */
int out_flush(struct out *o);

/* Write what is buffered (the table) and free o. Returns 0, or -EIO when
 * writing failed. */
int out_end(struct out *o);

#endif
