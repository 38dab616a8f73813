#!/bin/sh
# Forwarding ([forward NAME], bench/README.md), in one run:
#   1. how many events a second slhookd sends on to a local receiver
#      (bench/ceiling: libmicrohttpd + GnuTLS answering 200) at batch 1 and
#      100: a backlog of what wrk stored in $FILL s, rewound and timed until
#      the cursor reaches the newest event;
#   2. intake (wrk, $CONNS keep-alive connections, $DURATION s) with
#      forwarding off, on (batch 1 to the receiver) and on to a destination
#      that refuses every connection; $ROUNDS interleaved rounds, medians.
# Needs wrk, certtool and curl. Only 127.0.0.1 is a target; every run is
# bounded (wrk -d; the backlog wait by $WAIT s). Prints a table and writes
# bench/forward.csv.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
FILL=${FILL:-5}
WAIT=${WAIT:-300}
CONNS=${CONNS:-32}
PORT_C=${PORT_C:-18451}
PORT_S=${PORT_S:-18452}
PORT_M=${PORT_M:-18453}
CSV=$top/bench/forward.csv

. "$top/bench/lib.sh"
need "wrk certtool curl sqlite3" "wrk gnutls-bin curl sqlite3"
echo "whsec_$(head -c 32 /dev/urandom | base64)" > fw.secret
forward() {     # forward NAME URL BATCH: a [forward] section
        printf '[forward %s]\nurl = %s\nsecret_file = fw.secret\nca_file = cert.pem\nbatch = %s\n' "$1" "$2" "$3"
}
start_ceiling
echo "part,setting,round,events,seconds,events_per_s" > "$CSV"

# 1. The backlog.
start_slhookd fill $PORT_S $PORT_M "database = backlog.db"
d0=$DURATION
DURATION=$FILL
run $PORT_S 32 >/dev/null
DURATION=$d0
stop "$spid"
n=$(sqlite3 backlog.db "SELECT max(id) FROM events")
for r in $(seq "$ROUNDS"); do
        for b in 1 100; do
                sections=$(forward "b$b" "https://127.0.0.1:$PORT_C/" "$b")
                start_slhookd "fw$b" $PORT_S $PORT_M "database = backlog.db" "$sections"
                stop "$spid"
                "$top/src/slhookctl" -c "fw$b.conf" forward rewind "b$b" --to 1 >/dev/null
                t0=$(date +%s.%N)
                start_slhookd "fw$b" $PORT_S $PORT_M "database = backlog.db" "$sections"
                deadline=$(( $(date +%s) + WAIT ))
                while [ "$(sqlite3 backlog.db "SELECT cursor FROM forward_cursors WHERE forward = 'b$b'")" -lt "$n" ]; do
                        [ "$(date +%s)" -lt $deadline ] || { echo "bench: b$b did not catch up in $WAIT s" >&2; exit 1; }
                        sleep 0.05
                done
                t1=$(date +%s.%N)
                stop "$spid"
                echo "forwarded,batch $b,$r,$n,$t0,$t1" | awk -F, -v OFS=, '{ s = $6 - $5; print $1, $2, $3, $4, s, $4 / s }' >> "$CSV"
        done
done

# 2. Intake, forwarding off / on / to a dead destination.
for r in $(seq "$ROUNDS"); do
        for mode in off on dead; do
                rm -f intake.db intake.db-wal intake.db-shm
                case $mode in
                off) sections="" ;;
                on) sections=$(forward live "https://127.0.0.1:$PORT_C/" 1) ;;
                dead) sections=$(forward dead "https://127.0.0.1:1/" 1) ;;
                esac
                start_slhookd "in-$mode" $PORT_S $PORT_M "database = intake.db" "$sections"
                set -- $(run $PORT_S "$CONNS")
                stop "$spid"
                echo "intake,$mode,$r,$2,$DURATION,$1" >> "$CSV"
        done
done

printf '%-10s %-10s %14s\n' part setting 'events/s (median)'
for key in "forwarded,batch 1" "forwarded,batch 100" "intake,off" "intake,on" "intake,dead"; do
        v=$(awk -F, -v k="$key" '$1 "," $2 == k { print $6 }' "$CSV" | median)
        printf '%-10s %-10s %14.0f\n' "${key%%,*}" "${key#*,}" "$v"
done
