#!/bin/sh
# The runbook's online backup and restore (doc/operations.md): while
# slhookd stores events from 4 posting loops, `sqlite3 DB ".backup COPY"`
# and `VACUUM INTO` make copies that pass integrity_check and hold every
# event acknowledged before the copy began; `cp` of the database file alone
# is shown to miss the rows still in the WAL. Then the restore steps: stop,
# put the copy in place without the old -wal/-shm, start: exactly the
# copy's events, and new posts are stored on top. Then the runbook's
# reclaiming of space: prune, VACUUM while slhookd stores events.
set -eu
top_builddir=${top_builddir:-.}
bin=$(cd "$top_builddir/src" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v sqlite3 >/dev/null || fail "sqlite3 is missing (apt-get install sqlite3)"
command -v curl >/dev/null || fail "curl is missing"
dir=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
"$bin/slhookd" --init "$dir/t" >/dev/null
sed -i "s|^listen = .*|listen = 127.0.0.1:0|" "$dir/t/slhookd.conf"      # the port it took is in the log
secret=$(cat "$dir/t/secret")
start() {
        : > "$dir/log"
        "$bin/slhookd" -c "$dir/t/slhookd.conf" 2>>"$dir/log" &
        pid=$!
        i=0
        until port=$(sed -n 's|.* ready: https://127.0.0.1:\([0-9]*\)/.*|\1|p' "$dir/log") && [ -n "$port" ] &&
              curl -s -o /dev/null --cacert "$dir/t/cert.pem" "https://127.0.0.1:$port/"; do
                i=$((i + 1)); [ $i -lt 100 ] || fail "slhookd did not start: $(cat "$dir/log")"; sleep 0.1
        done
}
stop() { kill "$pid"; wait "$pid" || true; pid=""; }
post() {        # post ID: 0 when answered 200
        code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$dir/t/cert.pem" \
                "https://127.0.0.1:$port/socketlabs/events" -H 'Content-Type: application/json' \
                -d '{"Type":"Delivered","DateTime":"2026-01-31T10:00:00Z","ServerId":1,"MessageId":"'"$1"'","Address":"a@example.net","SecretKey":"'"$secret"'"}')
        [ "$code" = 200 ]
}
loop() {        # loop N TAG: N posts, the acknowledged ids in $dir/acked.TAG
        n=0
        while [ $n -lt "$1" ]; do
                post "$2-$n" && echo "$2-$n" >> "$dir/acked.$2"
                n=$((n + 1))
        done
}
db=$dir/t/events.db
count() { sqlite3 "$1" "SELECT count(*) FROM events"; }

start
loops=""
for t in a b c d; do loop 150 "$t" & loops="$loops $!"; done
i=0
until [ "$(cat "$dir"/acked.* 2>/dev/null | wc -l)" -ge 100 ]; do
        i=$((i + 1)); [ $i -lt 600 ] || fail "100 posts not acknowledged within 30 s: $(cat "$dir/log")"; sleep 0.05
done
before=$(cat "$dir"/acked.* | sort)
sqlite3 "$db" ".backup '$dir/backup.db'"
sqlite3 "$db" "VACUUM INTO '$dir/vacuum.db'"
cp "$db" "$dir/cp.db"
for l in $loops; do wait "$l"; done
for copy in backup vacuum; do
        [ "$(sqlite3 "$dir/$copy.db" "PRAGMA integrity_check")" = ok ] || fail "$copy.db: integrity_check"
        missing=$(echo "$before" | while read -r id; do
                [ "$(sqlite3 "$dir/$copy.db" "SELECT count(*) FROM events WHERE message_id = '$id'")" = 1 ] || echo "$id"
        done)
        [ -z "$missing" ] || fail "$copy.db lacks events acknowledged before it: $missing"
        echo "$copy.db: ok, $(count "$dir/$copy.db") events ($(echo "$before" | wc -l) acknowledged before it began)"
done
cp_rows=$( (sqlite3 "$dir/cp.db" "SELECT count(*) FROM events" 2>/dev/null) || echo unreadable)
echo "cp of the file alone: $cp_rows events (the rest were in the WAL)"

# Restore: stop, the copy in place, no old -wal/-shm, start.
acked=$(cat "$dir"/acked.* | wc -l)
[ "$(count "$db")" = "$acked" ] || fail "live database: $(count "$db") events, $acked acknowledged"
stop
kept=$(count "$dir/backup.db")
install -m 0600 "$dir/backup.db" "$db"
rm -f "$db-wal" "$db-shm"
start
post restored-1 || fail "a post after the restore was not stored"
[ "$(count "$db")" = $((kept + 1)) ] || fail "after the restore: $(count "$db") events, not $kept + 1"
echo "restored: $kept events from the backup, 1 posted after; $acked were acknowledged before the restore"

# Reclaiming space: prune says how many pages it freed and to VACUUM; a
# VACUUM while slhookd stores events gives them back, and every event
# acknowledged meanwhile is kept.
pages=$(sqlite3 "$db" "PRAGMA page_count")
out=$("$bin/slhookctl" -d "$db" prune --before now 2>&1) || fail "prune: $out"
echo "prune: $out"
echo "$out" | grep -q "VACUUM" || fail "prune does not say how to give the pages back"
free=$(sqlite3 "$db" "PRAGMA freelist_count")
[ "$free" -gt 0 ] || fail "prune freed no page"
rm -f "$dir"/acked.*
loops=""
for t in e f; do loop 20 "$t" & loops="$loops $!"; done
after=$(sqlite3 "$db" "VACUUM" "PRAGMA freelist_count" "PRAGMA page_count") || fail "VACUUM while slhookd runs"
for l in $loops; do wait "$l"; done
[ "$(echo "$after" | head -1)" = 0 ] || fail "VACUUM left $(echo "$after" | head -1) free pages"
after=$(echo "$after" | tail -1)
[ "$after" -lt "$pages" ] || fail "VACUUM: $pages pages before, $after after"
post vacuumed-1 || fail "a post after VACUUM was not stored"
missing=$(cat "$dir"/acked.* 2>/dev/null | while read -r id; do
        [ "$(sqlite3 "$db" "SELECT count(*) FROM events WHERE message_id = '$id'")" = 1 ] || echo "$id"
done)
[ -z "$missing" ] || fail "acknowledged during VACUUM but not stored: $missing"
echo "VACUUM: $pages pages ($free free after the prune) became $after; $(cat "$dir"/acked.* | wc -l) posts acknowledged by loops running across it, all stored"
stop
echo PASS
