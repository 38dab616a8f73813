# Shell functions of bench/http.sh and bench/pg.sh (sourced, with $top set):
# a work folder with a certificate and a secret, the daemon and the ceiling
# started and stopped, wrk runs, medians and means of /metrics histograms.
# Only 127.0.0.1 is a target; every run is bounded by wrk -d.

# need "TOOLS" "PACKAGES": stop unless every tool and the daemon are there.
need() {
        for t in $1; do
                command -v $t >/dev/null || { echo "bench: $t is needed (apt-get install $2)" >&2; exit 1; }
        done
        for f in "$top/src/slhookd" "$top/bench/ceiling"; do
                [ -x "$f" ] || { echo "bench: $f is missing: run make first" >&2; exit 1; }
        done
}

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

# start_slhookd NAME PORT METRICS_PORT STORE_LINES [SECTIONS]: slhookd with
# NAME.conf (SECTIONS appended), its pid in $spid once it answers.
start_slhookd() {
        cat > "$1.conf" <<CONF
[server]
listen = 127.0.0.1:$2
tls_cert = cert.pem
tls_key = key.pem
max_connections = 4096
max_connections_per_ip = 0
[endpoint main]
path = /socketlabs/events
secret_file = secret
[store]
$4
[log]
format = json
level = warning
[metrics]
listen = 127.0.0.1:$3
${5:-}
CONF
        "$top/src/slhookd" -c "$1.conf" 2>"$1.log" &
        spid=$!
        pids="$pids $spid"
        for i in $(seq 100); do curl -sk -o /dev/null "https://127.0.0.1:$2/" && return 0; sleep 0.1; done
        echo "bench: slhookd did not start: $(cat "$1.log")" >&2
        exit 1
}

start_ceiling() {
        "$top/bench/ceiling" cert.pem key.pem "$PORT_C" &
        cpid=$!
        pids="$pids $cpid"
        for i in $(seq 100); do curl -sk -o /dev/null "https://127.0.0.1:$PORT_C/" && return 0; sleep 0.1; done
        echo "bench: the ceiling did not start" >&2
        exit 1
}

stop() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }

# run PORT CONNS [close [THREADS]]: prints "rps requests non2xx errors p50_us p99_us"
run() {
        threads=${4:-2}
        [ "$2" -lt 2 ] && threads=1
        close=0
        [ "${3:-}" = close ] && close=1
        out=$(SLHOOKD_BENCH_CLOSE=$close wrk -t$threads -c"$2" -d"${DURATION}s" --timeout 10s \
                -s "$top/bench/events.lua" "https://127.0.0.1:$1/socketlabs/events" 2>&1)
        rps=$(echo "$out" | sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p')
        res=$(echo "$out" | sed -n 's/^RESULT //p')
        echo "${rps:-0} $(echo "$res" | sed 's/[a-z0-9_]*=//g')"
}

# cpu_now: the machine's busy and idle CPU time so far (jiffies, all CPUs;
# I/O wait counts as idle). cpu_since MARK EVENTS: since MARK, the idle
# share in percent and the busy CPU microseconds per event ("idle us").
cpu_now() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 "," $5 + $6 }' /proc/stat; }
cpu_since() {
        awk -F, -v m="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" '/^cpu / {
                split(m, a, ","); b = $0; split(b, f, " ")
                busy = f[2] + f[3] + f[4] + f[7] + f[8] + f[9] - a[1]; idle = f[5] + f[6] - a[2]
                printf "%.0f %.0f", busy + idle ? 100 * idle / (busy + idle) : 0, n ? busy * 1e6 / hz / n : 0 }' /proc/stat
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# mean HISTOGRAM FACTOR FORMAT [FILE]: its sum over its count, times FACTOR,
# in FILE (metrics.txt), a copy of slhookd's /metrics. batch: requests per
# transaction; commit_us: BEGIN to COMMIT, the durable commit included.
mean() { awk -v h="$1" -v f="$2" -v fmt="$3" '$1 == h "_sum" { s = $2 } $1 == h "_count" { n = $2 }
                                              END { printf fmt, n ? f * s / n : 0 }' "${4:-metrics.txt}"; }
