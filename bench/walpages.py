#!/usr/bin/env python3
"""Which b-trees a WAL's commits wrote, in pages per commit.

    bench/walpages.py WAL DB

WAL is a copy of a database's -wal file taken while slhookd runs (cp it mid-run:
the frames since the WAL last started over are in it); DB is the database
(its pages are named through SQLite's dbstat table). Every page a commit
changes is written whole to the WAL, so this is where the writer's I/O goes.
"""
import collections
import sqlite3
import struct
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: walpages.py WAL DB")
    with open(sys.argv[1], "rb") as f:
        wal = f.read()
    if len(wal) < 32:
        sys.exit(f"{sys.argv[1]}: not a WAL file (shorter than its header)")
    magic, _, page_size, _, salt1, salt2, _, _ = struct.unpack(">8I", wal[:32])
    if magic not in (0x377F0682, 0x377F0683):
        sys.exit(f"{sys.argv[1]}: not a WAL file (bad magic)")
    frames, commits, off = [], 0, 32
    while off + 24 + page_size <= len(wal):
        page, size_after, s1, s2 = struct.unpack(">4I", wal[off:off + 16])
        if (s1, s2) != (salt1, salt2):
            break               # a frame left from before the WAL started over
        frames.append(page)
        commits += size_after != 0
        off += 24 + page_size
    try:
        names = dict(sqlite3.connect(f"file:{sys.argv[2]}?mode=ro", uri=True)
                     .execute("SELECT pageno, name FROM dbstat"))
    except sqlite3.Error as e:
        sys.exit(f"{sys.argv[2]}: {e}")
    per = max(commits, 1)
    print(f"page size {page_size}, {len(frames)} frames, {commits} commits, "
          f"{len(frames) / per:.1f} pages per commit")
    for name, n in collections.Counter(names.get(p, "(new page)") for p in frames).most_common():
        print(f"{name:32} {n:7} {n / per:7.2f}")


if __name__ == "__main__":
    main()
