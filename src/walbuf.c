/* walbuf: a SQLite VFS that gathers the writes to a WAL file into one buffer.
 *
 * SQLite writes each WAL frame with two write(2) calls (its 24-byte header,
 * then the page), so a commit of 400 pages was 800 system calls, and on a
 * virtual machine each costs far more than the bytes it copies
 * (bench/README.md). The frames of one commit are contiguous: here they
 * collect in a buffer and reach the file in a few large writes.
 *
 * The buffer is flushed before anything that must see the file as SQLite
 * wrote it: a sync, a read, a truncate, its size, a close, a write that does
 * not continue the buffer, a full buffer. With PRAGMA synchronous = FULL,
 * SQLite syncs the WAL at every commit before it publishes the commit in the
 * shared WAL index, so no reader, in this process or another, can look for
 * a frame still in the buffer, and a transaction is durable exactly when it
 * was without this file. With NORMAL there is no such sync: the VFS is only
 * for connections with FULL (db_sqlite.c). Every other file passes through. */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "walbuf.h"

#define WALBUF_SIZE (1 << 20)

struct walfile {
        sqlite3_file base;
        sqlite3_file *real;             /* the default VFS's file, after this struct */
        unsigned char *buf;             /* WALBUF_SIZE bytes, once written to */
        sqlite3_int64 off;              /* where buf[0] goes in the file */
        int len;
};

static sqlite3_vfs vfs;
static sqlite3_vfs *real_vfs;
static int real_offset;                 /* of the real file in a struct walfile */
static int init_rc = SQLITE_ERROR;

#define W(f) ((struct walfile *) (f))

/* The default VFS writes at most 128 KiB - 1 at a time (it masks larger
 * counts: SQLite itself never writes more than a page and a frame header). */
#define WRITE_MAX 0x1f000

static int
flush(struct walfile *w)
{
        int rc = SQLITE_OK, done, n;

        for (done = 0; done < w->len && rc == SQLITE_OK; done += n) {
                n = w->len - done < WRITE_MAX ? w->len - done : WRITE_MAX;
                rc = w->real->pMethods->xWrite(w->real, w->buf + done, n, w->off + done);
        }
        w->len = 0;
        return rc;
}

static int
wal_close(sqlite3_file *f)
{
        struct walfile *w = W(f);
        int rc = flush(w), rc2 = w->real->pMethods->xClose(w->real);

        free(w->buf);
        w->buf = NULL;
        return rc != SQLITE_OK ? rc : rc2;
}

static int
wal_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
        struct walfile *w = W(f);
        int rc = flush(w);

        return rc != SQLITE_OK ? rc : w->real->pMethods->xRead(w->real, p, n, off);
}

static int
wal_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
        struct walfile *w = W(f);
        int rc;

        if (w->len > 0 && (off != w->off + w->len || w->len + n > WALBUF_SIZE) && (rc = flush(w)) != SQLITE_OK)
                return rc;
        if (n > WRITE_MAX)
                return w->real->pMethods->xWrite(w->real, p, n, off);
        if (w->buf == NULL && (w->buf = malloc(WALBUF_SIZE)) == NULL)
                return w->real->pMethods->xWrite(w->real, p, n, off);
        if (w->len == 0)
                w->off = off;
        memcpy(w->buf + w->len, p, (size_t) n);
        w->len += n;
        return SQLITE_OK;
}

static int
wal_truncate(sqlite3_file *f, sqlite3_int64 size)
{
        struct walfile *w = W(f);
        int rc = flush(w);

        return rc != SQLITE_OK ? rc : w->real->pMethods->xTruncate(w->real, size);
}

static int
wal_sync(sqlite3_file *f, int flags)
{
        struct walfile *w = W(f);
        int rc = flush(w);

        return rc != SQLITE_OK ? rc : w->real->pMethods->xSync(w->real, flags);
}

static int
wal_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
        struct walfile *w = W(f);
        int rc = flush(w);

        return rc != SQLITE_OK ? rc : w->real->pMethods->xFileSize(w->real, size);
}

static int
wal_lock(sqlite3_file *f, int lock)
{
        return W(f)->real->pMethods->xLock(W(f)->real, lock);
}

static int
wal_unlock(sqlite3_file *f, int lock)
{
        return W(f)->real->pMethods->xUnlock(W(f)->real, lock);
}

static int
wal_check_reserved(sqlite3_file *f, int *out)
{
        return W(f)->real->pMethods->xCheckReservedLock(W(f)->real, out);
}

static int
wal_file_control(sqlite3_file *f, int op, void *arg)
{
        return W(f)->real->pMethods->xFileControl(W(f)->real, op, arg);
}

static int
wal_sector_size(sqlite3_file *f)
{
        return W(f)->real->pMethods->xSectorSize(W(f)->real);
}

static int
wal_device(sqlite3_file *f)
{
        return W(f)->real->pMethods->xDeviceCharacteristics(W(f)->real);
}

static const sqlite3_io_methods wal_methods = {
        .iVersion = 1,
        .xClose = wal_close,
        .xRead = wal_read,
        .xWrite = wal_write,
        .xTruncate = wal_truncate,
        .xSync = wal_sync,
        .xFileSize = wal_file_size,
        .xLock = wal_lock,
        .xUnlock = wal_unlock,
        .xCheckReservedLock = wal_check_reserved,
        .xFileControl = wal_file_control,
        .xSectorSize = wal_sector_size,
        .xDeviceCharacteristics = wal_device,
};

/* A WAL gets the buffer, with the real file after it; any other file is
 * the real one, at the start of the space SQLite gave (so SQLite calls the
 * default VFS's methods on it directly). */
static int
vfs_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
        struct walfile *w = W(f);
        int rc;

        (void) v;
        if (!(flags & SQLITE_OPEN_WAL))
                return real_vfs->xOpen(real_vfs, name, f, flags, out_flags);
        memset(w, 0, sizeof(*w));
        w->real = (sqlite3_file *) ((char *) f + real_offset);
        rc = real_vfs->xOpen(real_vfs, name, w->real, flags, out_flags);
        /* Without methods SQLite does not close the file. */
        w->base.pMethods = w->real->pMethods ? &wal_methods : NULL;
        return rc;
}

static void
init(void)
{
        if ((real_vfs = sqlite3_vfs_find(NULL)) == NULL)
                return;
        real_offset = (int) ((sizeof(struct walfile) + 15) & ~(size_t) 15);
        vfs = *real_vfs;
        vfs.pNext = NULL;
        vfs.zName = WALBUF_VFS;
        vfs.szOsFile = real_offset + real_vfs->szOsFile;
        vfs.xOpen = vfs_open;
        init_rc = sqlite3_vfs_register(&vfs, 0);
}

int
walbuf_register(void)
{
        static pthread_once_t once = PTHREAD_ONCE_INIT;

        pthread_once(&once, init);
        return init_rc;
}
