#!/bin/sh
# Sending health on a large database (bench/README.md):
#   1. slhookctl health as an operator runs it (the binary, table output to
#      /dev/null): the default window (7 days ending now, so both its end
#      hours are cut and counted from events), by mailing, 30 days; median
#      of 7 runs each;
#   2. GET /dashboard from a slhookd on the same database: the page, and the
#      page with a search; median of 7;
#   3. the writer's ingest rate (bench/fill rate: $RATE_EVENTS new events,
#      synchronous=FULL) with nothing else, with /dashboard fetched once a
#      second, and with it rendered back to back beside it; $ROUNDS
#      interleaved rounds, medians.
#
#   bench/health.sh [DB]      (default /tmp/slhookd-bench/10m.db, filled by
#                              bench/queries.sh on first use)
# Only 127.0.0.1 is a target; every loop is bounded in count. Prints a table
# and writes bench/health.csv.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
DB=${1:-/tmp/slhookd-bench/10m.db}
ROUNDS=${ROUNDS:-3}
RATE_EVENTS=${RATE_EVENTS:-100000}
PORT_S=${PORT_S:-18461}
PORT_M=${PORT_M:-18462}
CTL=$top/src/slhookctl
CSV=$top/bench/health.csv
case $DB in /*) ;; *) DB=$PWD/$DB ;; esac

. "$top/bench/lib.sh"
need "curl sqlite3 certtool" "curl sqlite3 gnutls-bin"
[ -f "$DB" ] || { echo "health.sh: $DB is missing: bench/queries.sh fills it" >&2; exit 1; }

echo "kind,name,value" > "$CSV"
events=$(sqlite3 "$DB" "SELECT max(id) FROM events")
servers=$(sqlite3 "$DB" "SELECT count(DISTINCT server_id) FROM health_counts")
rows=$(sqlite3 "$DB" "SELECT count(*) FROM health_counts")
echo "database: $DB, $events events, $servers ServerIds, $rows health_counts rows; $(nproc) CPUs"
echo

ms_of() {       # ms_of CMD...: median wall time of 7 runs, in ms
        for i in 1 2 3 4 5 6 7; do
                t0=$(date +%s%N)
                "$@" >/dev/null 2>&1
                t1=$(date +%s%N)
                echo $(( (t1 - t0) / 1000 ))
        done | median | awk '{ printf "%.1f", $1 / 1000 }'
}

row() {         # row NAME MS DETAIL
        printf '%-36s %8s ms   %s\n' "$1" "$2" "$3"
        echo "ms,$1,$2" >> "$CSV"
}

row "health, 7 days by server" "$(ms_of "$CTL" -d "$DB" health)" \
        "$("$CTL" -d "$DB" -f csv health | tail -n +2 | wc -l) rows"
row "health, 7 days by mailing" "$(ms_of "$CTL" -d "$DB" health --by mailing)" \
        "$("$CTL" -d "$DB" -f csv health --by mailing | tail -n +2 | wc -l) rows"
row "health, 30 days by server" "$(ms_of "$CTL" -d "$DB" health --since 30d)" ""
row "health, 7 days, one ServerId" "$(ms_of "$CTL" -d "$DB" health --server-id 40111)" ""

start_slhookd health $PORT_S $PORT_M "database = $DB
retention_days = 0"
page=http://127.0.0.1:$PORT_M/dashboard
addr=$(sqlite3 "$DB" "SELECT address FROM messages WHERE id = (SELECT max(id) / 3 FROM messages)")
curl -sf -o page.html "$page"
row "/dashboard" "$(ms_of curl -sf -o /dev/null "$page")" "$(wc -c < page.html) bytes"
row "/dashboard?q=ADDRESS" "$(ms_of curl -sf -o /dev/null "$page?q=$addr")" ""

rate_of() { "$top/bench/fill" "$DB" rate "$RATE_EVENTS" | sed -n 's/.* = \([0-9]*\) events\/s.*/\1/p'; }
: > alone
: > beside
: > renders
: > paced
for r in $(seq "$ROUNDS"); do
        rate_of >> alone
        # The page once a second (a browser left open and reloaded: at most 600).
        touch go
        (n=0; while [ -f go ] && [ $n -lt 600 ]; do curl -sf -o /dev/null "$page"; n=$((n + 1)); sleep 1; done) &
        loop=$!
        rate_of >> paced
        rm -f go
        wait $loop
        # The page rendered back to back (at most 10,000 times) while the writer runs.
        touch go
        (n=0; while [ -f go ] && [ $n -lt 10000 ]; do curl -sf -o /dev/null "$page"; n=$((n + 1)); done
         echo $n > n) &
        loop=$!
        t0=$(date +%s%N)
        rate_of >> beside
        t1=$(date +%s%N)
        rm -f go
        wait $loop
        awk -v n="$(cat n)" -v t=$(( (t1 - t0) / 1000000 )) 'BEGIN { printf "%.1f\n", n * 1000 / t }' >> renders
done
a=$(median < alone)
b=$(median < beside)
p=$(median < paced)
echo
printf 'ingest alone                  %8s events/s   (rounds: %s)\n' "$a" "$(tr '\n' ' ' < alone)"
printf 'ingest, /dashboard every 1 s  %8s events/s   (rounds: %s)\n' "$p" "$(tr '\n' ' ' < paced)"
printf 'ingest beside /dashboard      %8s events/s   (rounds: %s; pages/s: %s)\n' "$b" "$(tr '\n' ' ' < beside)" \
        "$(tr '\n' ' ' < renders)"
printf 'ratio, every 1 s / back to back %6s / %s\n' "$(awk -v a="$a" -v b="$p" 'BEGIN { printf "%.2f", b / a }')" \
        "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')"
echo "ingest,alone,$a" >> "$CSV"
echo "ingest,beside_dashboard,$b" >> "$CSV"
echo "ingest,dashboard_every_second,$p" >> "$CSV"
