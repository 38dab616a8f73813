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
for t in wrk certtool curl; do
        command -v $t >/dev/null || { echo "http.sh: $t is needed (apt-get install wrk gnutls-bin curl)" >&2; exit 1; }
done
for f in "$top/src/slhookd" "$top/bench/ceiling"; do
        [ -x "$f" ] || { echo "http.sh: $f is missing: run make first" >&2; exit 1; }
done
ulimit -n 8192 2>/dev/null || ulimit -n 4096

work=$(mktemp -d)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
certtool --generate-privkey --key-type=ecdsa --outfile key.pem >/dev/null 2>&1
printf 'cn = localhost\nip_address = 127.0.0.1\ntls_www_server\nsigning_key\nexpiration_days = 2\n' > tmpl
certtool --generate-self-signed --load-privkey key.pem --template tmpl --outfile cert.pem >/dev/null 2>&1
export SLHOOKD_BENCH_SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$SLHOOKD_BENCH_SECRET" > secret

start_slhookd() {
        rm -f events.db events.db-wal events.db-shm
        cat > slhookd.conf <<CONF
[server]
listen = 127.0.0.1:$PORT_S
tls_cert = cert.pem
tls_key = key.pem
max_connections = 4096
max_connections_per_ip = 0
[endpoint main]
path = /socketlabs/events
secret_file = secret
[store]
database = events.db
[log]
format = json
level = warning
[metrics]
listen = 127.0.0.1:$PORT_M
CONF
        "$top/src/slhookd" -c slhookd.conf 2>slhookd.log &
        spid=$!
        pids="$pids $spid"
        for i in $(seq 100); do curl -sk -o /dev/null "https://127.0.0.1:$PORT_S/" && return 0; sleep 0.1; done
        echo "http.sh: slhookd did not start: $(cat slhookd.log)" >&2
        exit 1
}

start_ceiling() {
        "$top/bench/ceiling" cert.pem key.pem "$PORT_C" &
        cpid=$!
        pids="$pids $cpid"
        for i in $(seq 100); do curl -sk -o /dev/null "https://127.0.0.1:$PORT_C/" && return 0; sleep 0.1; done
        echo "http.sh: the ceiling did not start" >&2
        exit 1
}

stop() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }

# run PORT CONNS [close]: prints "rps p50_us p99_us requests non2xx errors"
run() {
        threads=2
        [ "$2" -lt 2 ] && threads=1
        close=0
        [ "${3:-}" = close ] && close=1
        out=$(SLHOOKD_BENCH_CLOSE=$close wrk -t$threads -c"$2" -d"${DURATION}s" --timeout 10s \
                -s "$top/bench/events.lua" "https://127.0.0.1:$1/socketlabs/events" 2>&1)
        rps=$(echo "$out" | sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p')
        res=$(echo "$out" | sed -n 's/^RESULT //p')
        echo "${rps:-0} $(echo "$res" | sed 's/[a-z0-9_]*=//g')"
}

# field SERVER N: field N of SERVER's rounds at $mode and $c in the CSV
field() { awk -F, -v m="$mode" -v c="$c" -v s="$1" -v k="$2" '$1 == m && $2 == c && $3 == s { print $k }' "$CSV"; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# mean HISTOGRAM FACTOR FORMAT: its sum over its count, times FACTOR, in the
# metrics.txt of the last slhookd round. batch: requests per transaction;
# commit_us: BEGIN to COMMIT, fdatasync included.
mean() { awk -v h="$1" -v f="$2" -v fmt="$3" '$1 == h "_sum" { s = $2 } $1 == h "_count" { n = $2 }
                                              END { printf fmt, n ? f * s / n : 0 }' metrics.txt; }
echo "mode,conns,server,round,rps,p50_us,p99_us,requests,non2xx,errors,rows,rss_kib,batch,commit_us" > "$CSV"
for mode in keepalive close; do
        if [ $mode = close ]; then list=32; else list=$CONNS; fi
        for c in $list; do
                for r in $(seq "$ROUNDS"); do
                        start_ceiling
                        set -- $(run $PORT_C "$c" $mode)
                        echo "$mode,$c,ceiling,$r,$1,$5,$6,$2,$3,$4,,,," >> "$CSV"
                        stop "$cpid"
                        start_slhookd
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
