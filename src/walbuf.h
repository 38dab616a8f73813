/* walbuf: a SQLite VFS that gathers each commit's WAL writes into a few
 * large ones (see walbuf.c). Only for connections with synchronous = FULL. */
#ifndef SLHOOKD_WALBUF_H
#define SLHOOKD_WALBUF_H

#define WALBUF_VFS "slhookd-walbuf"

/* Register the VFS (once; the default VFS stays the default). Returns
 * SQLITE_OK, or SQLite's error: then open without it. */
int walbuf_register(void);

#endif
