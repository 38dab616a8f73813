#!/bin/sh
# Query and ingest figures on a large database (bench/README.md).
#
#   bench/queries.sh [DB]
#
# DB (default /tmp/slhookd-bench/10m.db) is filled on first use with
# $EVENTS events (10,000,000) over $MESSAGES messages (1,000,000) spread over
# the last 30 days, through the real write path. Then:
#   - the wall time of typical slhookctl queries, run as an operator would
#     (the binary, table output to /dev/null), median of 7 runs each;
#   - the writer's ingest rate ($RATE_EVENTS new events, one request each,
#     synchronous=FULL) on DB and on an empty database, interleaved, 3 rounds
#     each, medians and their ratio.
# Prints a table on stdout and writes the same figures to bench/queries.csv.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
FILL=$top/bench/fill
CTL=$top/src/slhookctl
DB=${1:-/tmp/slhookd-bench/10m.db}
EVENTS=${EVENTS:-10000000}
MESSAGES=${MESSAGES:-1000000}
RATE_EVENTS=${RATE_EVENTS:-100000}
CSV=$top/bench/queries.csv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for f in "$FILL" "$CTL"; do
        [ -x "$f" ] || { echo "queries.sh: $f is missing: run make first" >&2; exit 1; }
done
command -v sqlite3 >/dev/null || { echo "queries.sh: sqlite3 is needed (apt-get install sqlite3)" >&2; exit 1; }

if [ ! -f "$DB" ]; then
        mkdir -p "$(dirname "$DB")"
        echo "filling $DB with $EVENTS events over $MESSAGES messages (minutes)..." >&2
        "$FILL" "$DB" fill "$EVENTS" "$MESSAGES" 30 >&2
fi

now_ns() { date +%s%N; }

# median of the numbers on stdin
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# time_query NAME ARGS...: median wall time of 7 runs, in ms, and the rows
time_query() {
        name=$1
        shift
        rows=$("$CTL" -d "$DB" -f json "$@" 2>/dev/null | wc -l)
        for i in 1 2 3 4 5 6 7; do
                t0=$(now_ns)
                "$CTL" -d "$DB" "$@" >/dev/null 2>&1
                t1=$(now_ns)
                echo $(( (t1 - t0) / 1000 ))
        done | median > "$work/m"
        ms=$(awk '{ printf "%.1f", $1 / 1000 }' "$work/m")
        printf '%-34s %9s ms %8s rows   slhookctl %s\n' "$name" "$ms" "$rows" "$*"
        echo "query,$name,$ms,$rows" >> "$CSV"
}

rate_of() { "$FILL" "$1" rate "$RATE_EVENTS" | sed -n 's/.* = \([0-9]*\) events\/s.*/\1/p'; }

events=$(sqlite3 "$DB" "SELECT max(id) FROM events")
messages=$(sqlite3 "$DB" "SELECT max(id) FROM messages")
msg=$(sqlite3 "$DB" "SELECT message_id FROM messages WHERE id >= $messages / 2 AND message_id IS NOT NULL LIMIT 1")
addr=$(sqlite3 "$DB" "SELECT address FROM messages WHERE id >= $messages / 3 LIMIT 1")
mailing=$(sqlite3 "$DB" "SELECT mailing_id FROM messages WHERE id >= $messages / 4 AND mailing_id IS NOT NULL LIMIT 1")
size=$(du -m "$DB" | cut -f1)

echo "kind,name,value,rows" > "$CSV"
echo "database: $DB, $events events, $messages messages, $size MiB; $(nproc) CPUs, $(uname -r)"
echo
time_query "timeline of one message" timeline --message-id "$msg"
time_query "events of one address" events --address "$addr"
time_query "events of one mailing" events --mailing-id "$mailing"
time_query "async bounces of the last day" bounces --async --since 1d
time_query "stats of the last day" stats --since 1d
time_query "stats of the last day by hour" stats --since 1d --by hour
time_query "newest 100 events" events
time_query "failed events of the last day" events --type failed --since 1d

echo
rm -f "$work"/empty.db*
for round in 1 2 3; do
        rm -f "$work"/empty.db*
        rate_of "$work/empty.db" >> "$work/empty"
        rate_of "$DB" >> "$work/big"
done
e=$(median < "$work/empty")
b=$(median < "$work/big")
ratio=$(awk -v b="$b" -v e="$e" 'BEGIN { printf "%.2f", b / e }')
printf 'ingest, empty database      %8s events/s   (rounds: %s)\n' "$e" "$(tr '\n' ' ' < "$work/empty")"
printf 'ingest, %-8s-row database %8s events/s   (rounds: %s)\n' "$events" "$b" "$(tr '\n' ' ' < "$work/big")"
printf 'ratio                       %8s\n' "$ratio"
echo "ingest,empty,$e," >> "$CSV"
echo "ingest,large,$b," >> "$CSV"
echo "ingest,ratio,$ratio," >> "$CSV"
