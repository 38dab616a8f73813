#!/bin/sh
# The PostgreSQL backend's durable events/s (bench/README.md): slhookd on
# PostgreSQL with one instance and with two on one database, against
# slhookd on SQLite and the bare ceiling (bench/ceiling), all over TLS with
# wrk, and PostgreSQL's own commit rate (pgbench, one 600-byte INSERT per
# transaction) as the limit: one slhookd instance writes through one
# connection, so it stores at most (commits/s of 1 client) x (events per
# transaction). Runs itself under tests/pgtmp (a throwaway cluster: Unix
# socket, fsync on) unless $SLHOOKD_TEST_PG names one.
#
#   bench/pg.sh      $CONNS (32) keep-alive connections in all (two instances:
#                    half each), $ROUNDS (3) rounds of $DURATION (10) s, interleaved;
#                    medians. Prints a table and writes bench/pg.csv.
#   PROFILE=1        also the statements of the first one-instance round by
#                    time spent in the server (pg_stat_statements), into
#                    bench/pg-profile.txt.
#   PERF=1           also where the machine's CPU goes in the first round of
#                    SQLite and of one PostgreSQL instance (perf record -a, by
#                    process and by symbol), into bench/pg-perf-NAME.txt.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${SLHOOKD_TEST_PG:-}" ]; then
        [ -n "${PROFILE:-}" ] && export PGTMP_CONF="shared_preload_libraries = 'pg_stat_statements'"
        exec "$top/tests/pgtmp" "$0" "$@"
fi
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
PORT_C=${PORT_C:-18451}
PORT_S=${PORT_S:-18452}
PORT_S2=${PORT_S2:-18453}
PORT_M=${PORT_M:-18454}
PORT_M2=${PORT_M2:-18455}
CSV=$top/bench/pg.csv
ulimit -n 8192 2>/dev/null || ulimit -n 4096

. "$top/bench/lib.sh"
need "wrk certtool curl psql pgbench sqlite3" "wrk gnutls-bin curl postgresql sqlite3"

pg() { PGOPTIONS="-c client_min_messages=warning" psql "$SLHOOKD_TEST_PG dbname=$1" -qAtX -c "$2"; }
fresh_db() { pg postgres "DROP DATABASE IF EXISTS $1" && pg postgres "CREATE DATABASE $1"; }
pg_store() { printf 'backend = postgresql\ndsn = %s dbname=bench' "$SLHOOKD_TEST_PG"; }

# single NAME STORE_LINES ROWS_COMMAND: a round of one instance, into the CSV.
single() {
        start_slhookd "$1" $PORT_S $PORT_M "$2"
        profile=""
        if [ -n "${PROFILE:-}" ] && [ "$1" = postgresql ] && [ "$r" = 1 ]; then
                profile=1
                pg bench "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()" >/dev/null
        fi
        perf=""
        if [ -n "${PERF:-}" ] && [ "$r" = 1 ]; then
                perf=$top/bench/pg-perf-$1
                perf record -q -a -g -F 499 -o "$perf.data" -- sleep "$DURATION" 2>/dev/null &
                perf_pid=$!
        fi
        c0=$(cpu_now)
        set -- "$1" "$3" $(run $PORT_S "$CONNS")
        if [ -n "$perf" ]; then
                wait "$perf_pid" || true
                { perf report -q -i "$perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep -v '^$' | head -8
                  echo
                  perf report -q -i "$perf.data" --no-children --sort comm,dso,sym --stdio -g none 2>/dev/null |
                          grep -v '^$' | head -40; } > "$perf.txt"
                rm -f "$perf.data"
        fi
        cpu=$(cpu_since "$c0" "$(($4 - $5))")
        if [ -n "$profile" ]; then
                pg bench "SELECT calls, round(total_exec_time) AS total_ms, round(mean_exec_time * 1000) AS mean_us,
                                 rows, left(regexp_replace(query, '\s+', ' ', 'g'), 100)
                            FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12" |
                        sed 's/^/  /' > "$top/bench/pg-profile.txt"
        fi
        curl -s "http://127.0.0.1:$PORT_M/metrics" > metrics.txt || true
        stop "$spid"
        echo "$1,$r,$3,$(($4 - $5)),$(eval "$2"),$(mean slhookd_batch_requests 1 %.1f),$(mean slhookd_commit_duration_seconds 1e6 %.0f),${cpu% *},${cpu#* }" >> "$CSV"
}

echo "server,round,rps,acked,rows,batch,commit_us,idle_pct,cpu_us_per_event" > "$CSV"
for r in $(seq "$ROUNDS"); do
        start_ceiling
        c0=$(cpu_now)
        set -- $(run $PORT_C "$CONNS")
        cpu=$(cpu_since "$c0" "$(awk -v r="$1" -v d="$DURATION" 'BEGIN { printf "%.0f", r * d }')")
        echo "ceiling,$r,$1,,,,,${cpu% *},${cpu#* }" >> "$CSV"
        stop "$cpid"

        rm -f events.db events.db-wal events.db-shm
        single sqlite "database = events.db" "sqlite3 events.db 'SELECT count(*) FROM events'"
        fresh_db bench
        single postgresql "$(pg_store)" "pg bench 'SELECT count(*) FROM events'"

        fresh_db bench
        start_slhookd pg1 $PORT_S $PORT_M "$(pg_store)"
        s1=$spid
        start_slhookd pg2 $PORT_S2 $PORT_M2 "$(pg_store)"
        s2=$spid
        c0=$(cpu_now)
        SLHOOKD_BENCH_TAG=a run $PORT_S $((CONNS / 2)) keepalive 1 > a.out &
        wa=$!
        SLHOOKD_BENCH_TAG=b run $PORT_S2 $((CONNS / 2)) keepalive 1 > b.out
        wait $wa
        set -- $(cat a.out) $(cat b.out)
        cpu=$(cpu_since "$c0" "$(($2 - $3 + $8 - $9))")
        curl -s "http://127.0.0.1:$PORT_M/metrics" > m1.txt || true
        curl -s "http://127.0.0.1:$PORT_M2/metrics" > m2.txt || true
        stop "$s1"
        stop "$s2"
        echo "postgresql x2,$r,$(awk -v a="$1" -v b="$7" 'BEGIN { printf "%.2f", a + b }'),$(($2 - $3 + $8 - $9)),$(pg bench 'SELECT count(*) FROM events'),$(mean slhookd_batch_requests 1 %.1f m1.txt)/$(mean slhookd_batch_requests 1 %.1f m2.txt),$(mean slhookd_commit_duration_seconds 1e6 %.0f m1.txt)/$(mean slhookd_commit_duration_seconds 1e6 %.0f m2.txt),${cpu% *},${cpu#* }" >> "$CSV"
done

# PostgreSQL's commit rate: one 600-byte row per transaction, durable.
fresh_db pgbench
pg pgbench "CREATE TABLE t (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text NOT NULL)"
echo "INSERT INTO t (v) VALUES (repeat('x', 600));" > insert.sql
echo "clients,tps" > pgbench.csv
for c in 1 2 8 32; do
        tps=$(PGOPTIONS='-c synchronous_commit=on' pgbench -n -c $c -j $((c < 2 ? 1 : 2)) -T "$DURATION" \
                -f insert.sql "$SLHOOKD_TEST_PG dbname=pgbench" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
        echo "$c,$tps" >> pgbench.csv
done

field() { awk -F, -v s="$1" -v k="$2" '$1 == s { print $k }' "$CSV"; }
ce=$(field ceiling 3 | median)
lite=$(field sqlite 3 | median)
tps1=$(awk -F, '$1 == 1 { print $2 }' pgbench.csv)
printf '%-15s %10s %9s %10s %10s %13s %11s %6s %7s %s\n' server events/s ratio_sql ratio_ceil 'rows>=acked' batch commit_us idle% cpu_us commit_limit/s
for s in ceiling sqlite postgresql 'postgresql x2'; do
        v=$(field "$s" 3 | median)
        ok=$(awk -F, -v s="$s" '$1 == s && $5 < $4 { bad = 1 } END { print bad ? "NO" : "yes" }' "$CSV")
        batch=$(field "$s" 6 | tail -1)
        commit=$(field "$s" 7 | tail -1)
        limit=""
        case $s in
        postgresql) limit=$(awk -v t="$tps1" -v b="$batch" 'BEGIN { printf "%.0f", t * b }') ;;
        esac
        idle=$(field "$s" 8 | median)
        cpu=$(field "$s" 9 | median)
        [ "$s" = ceiling ] && ok="" && batch="" && commit=""
        printf '%-15s %10.0f %9.2f %10.2f %13s %11s %11s %6s %7s %s\n' "$s" "$v" \
                "$(awk -v a="$v" -v b="$lite" 'BEGIN { print b ? a / b : 0 }')" \
                "$(awk -v a="$v" -v b="$ce" 'BEGIN { print b ? a / b : 0 }')" "$ok" "$batch" "$commit" "$idle" "$cpu" \
                "$limit"
done
echo
echo "pgbench, one 600-byte INSERT per transaction (synchronous_commit = on), $DURATION s:"
awk -F, 'NR > 1 { printf "  %2d clients: %8.0f commits/s\n", $1, $2 }' pgbench.csv
echo "(batch and commit_us: the last round's means from /metrics, requests per transaction and BEGIN to"
echo " COMMIT; commit_limit/s: pgbench's 1-client commits/s x batch, what one writer connection would reach"
echo " if its commits were all it waited for; idle%: the machine's idle CPU (I/O wait included) during the"
echo " load, cpu_us: busy CPU microseconds of the whole machine (wrk, slhookd, PostgreSQL) per event; medians)"
