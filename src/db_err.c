/* db_err: a connection's error message, which the front (db.c) and the
 * backends (db_sqlite.c, db_pg.c) both set and read: below both, so that
 * the front calls the backends and never the other way round. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>

#include "db-backend.h"

void
db_one_line(char *s)
{
        char *o = s, *start = s;

        for (; *s; s++) {
                if (*s != '\n' && *s != '\r' && *s != '\t')
                        *o++ = *s;
                else if (o > start && o[-1] != ' ')     /* a line break and its indent: one space */
                        *o++ = ' ';
        }
        while (o > start && o[-1] == ' ')
                o--;
        *o = '\0';
}

void
db_fail(struct db *db, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(db->err, sizeof(db->err), fmt, ap);
        va_end(ap);
        db_one_line(db->err);
        db->timeout = false;
}

const char *
db_errmsg(const struct db *db)
{
        return db->err[0] ? db->err : "unknown error";
}
