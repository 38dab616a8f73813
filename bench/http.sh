#!/bin/sh
# Throughput and latency of the whole daemon over TLS, against the bare
# ceiling (bench/ceiling: libmicrohttpd + GnuTLS reading the body and
# answering 200), in the same run (bench/README.md).
#
#   bench/http.sh            keep-alive at 1, 8, 32, 256 and 1,000 connections, and one
#                            new TLS connection per request; $ROUNDS rounds of $DURATION s
#                            each, ceiling and slhookd interleaved; medians
#
# Needs wrk, certtool and curl. Only 127.0.0.1 is a target; every run is
# bounded by -d. Prints a table and writes bench/http.csv.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-"1 8 32 256 1000"}
PORT_C=${PORT_C:-18441}
PORT_S=${PORT_S:-18442}
PORT_M=${PORT_M:-18443}
CSV=$top/bench/http.csv
ulimit -n 8192 2>/dev/null || ulimit -n 4096

. "$top/bench/lib.sh"
need "wrk certtool curl sqlite3" "wrk gnutls-bin curl sqlite3"

# field SERVER N: field N of SERVER's rounds at $mode and $c in the CSV
field() { awk -F, -v m="$mode" -v c="$c" -v s="$1" -v k="$2" '$1 == m && $2 == c && $3 == s { print $k }' "$CSV"; }
echo "mode,conns,server,round,rps,p50_us,p99_us,requests,non2xx,errors,rows,rss_kib,batch,commit_us" > "$CSV"
for mode in keepalive close; do
        if [ $mode = close ]; then list=32; else list=$CONNS; fi
        for c in $list; do
                for r in $(seq "$ROUNDS"); do
                        start_ceiling
                        set -- $(run $PORT_C "$c" $mode)
                        echo "$mode,$c,ceiling,$r,$1,$5,$6,$2,$3,$4,,,," >> "$CSV"
                        stop "$cpid"
                        rm -f events.db events.db-wal events.db-shm
                        start_slhookd slhookd $PORT_S $PORT_M "database = events.db"
                        set -- $(run $PORT_S "$c" $mode)
                        rss=$(awk '/^VmHWM/ { print $2 }' /proc/$spid/status)
                        curl -s "http://127.0.0.1:$PORT_M/metrics" > metrics.txt || true
                        stop "$spid"
                        rows=$(sqlite3 events.db "SELECT count(*) FROM events" 2>/dev/null || echo 0)
                        echo "$mode,$c,slhookd,$r,$1,$5,$6,$2,$3,$4,$rows,$rss,$(mean slhookd_batch_requests 1 %.1f),$(mean slhookd_commit_duration_seconds 1e6 %.0f)" >> "$CSV"
                done
        done
done

printf '%-10s %6s %12s %12s %7s %9s %9s %10s %9s %7s %10s\n' mode conns ceiling/s slhookd/s ratio p50_ms p99_ms 'rows>=200' rss_MiB batch commit_us
for mode in keepalive close; do
        if [ $mode = close ]; then list=32; else list=$CONNS; fi
        for c in $list; do
                ce=$(field ceiling 5 | median)
                sl=$(field slhookd 5 | median)
                p50=$(field slhookd 6 | median)
                p99=$(field slhookd 7 | median)
                ok=$(awk -F, -v m=$mode -v c=$c '$1==m && $2==c && $3=="slhookd" && $11 < $8 - $9 {bad=1} END {print bad ? "NO" : "yes"}' "$CSV")
                rss=$(field slhookd 12 | sort -n | tail -1)
                batch=$(field slhookd 13 | median)
                commit=$(field slhookd 14 | median)
                printf '%-10s %6s %12.0f %12.0f %7.2f %9.2f %9.2f %10s %9.1f %7.1f %10.0f\n' $mode $c "$ce" "$sl" \
                        "$(awk -v a="$sl" -v b="$ce" 'BEGIN { print b ? a / b : 0 }')" \
                        "$(awk -v v="$p50" 'BEGIN { print v / 1000 }')" "$(awk -v v="$p99" 'BEGIN { print v / 1000 }')" \
                        "$ok" "$(awk -v v="$rss" 'BEGIN { print v / 1024 }')" "$batch" "$commit"
        done
done
echo "(batch: requests per transaction; commit_us: BEGIN to COMMIT, fdatasync included; from slhookd's /metrics)"
