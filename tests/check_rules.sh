#!/bin/sh
# The shipped Prometheus rules and Grafana dashboard: promtool accepts the
# rules and their unit tests pass (tests/slhookd.rules.test.yml); the
# dashboard is JSON, and every metric a rule or a panel names is one
# slhookd exports (a "# TYPE" line or a histogram of src/metrics.c) or
# Prometheus' `up`;
# every metric slhookd(8) lists is exported. Skipped (77) without promtool.
set -eu
top_srcdir=${top_srcdir:-$(dirname "$0")/..}
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v promtool >/dev/null || { echo "promtool missing (apt-get install prometheus): skipped"; exit 77; }
rules=$top_srcdir/etc/prometheus/slhookd.rules.yml
dash=$top_srcdir/etc/grafana/slhookd.json
promtool check rules "$rules"
(cd "$top_srcdir/tests" && promtool test rules slhookd.rules.test.yml)

exported=$( { grep -o '# TYPE [a-z_]*' "$top_srcdir/src/metrics.c" | awk '{print $3}'
              grep -o 'hist_text(&b, "[a-z_]*"' "$top_srcdir/src/metrics.c" | cut -d'"' -f2; } | sort -u)
[ -n "$exported" ] || fail "no metric found in src/metrics.c"
known() {
        case $1 in up) return 0 ;; esac
        base=$(echo "$1" | sed 's/_\(bucket\|sum\|count\)$//')
        echo "$exported" | grep -qx "$1" || echo "$exported" | grep -qx "$base"
}
queries=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
for p in d["panels"]:
    for t in p.get("targets", []):
        print(t["expr"])
print(d["templating"]["list"][0]["query"])
' "$dash") || fail "$dash is not JSON a dashboard"
n=0
for m in $(printf '%s\n' "$queries" | grep -o '\b\(slhookd\|process\)_[a-z_]*' | sort -u) \
         $(grep '^ *expr:' -A3 "$rules" | grep -o '\b\(up\|slhookd_[a-z_]*\|process_[a-z_]*\)\b' | sort -u); do
        known "$m" || fail "$m is named by a rule or panel but slhookd does not export it"
        n=$((n + 1))
done
for m in $(sed -n 's/^\.BR \(slhookd_[a-z_]*\|process_[a-z_]*\) .*/\1/p' "$top_srcdir/man/slhookd.8.in"); do
        echo "$exported" | grep -qx "$m" || fail "slhookd(8) lists $m, which slhookd does not export"
done
for m in $exported; do
        grep -q "^\.BR $m " "$top_srcdir/man/slhookd.8.in" || fail "$m is exported but not in slhookd(8)'s METRICS list"
done
listed=$(sed -n 's/^\.BR \(slhookd_[a-z_]*\|process_[a-z_]*\) .*/\1/p' "$top_srcdir/man/slhookd.8.in" | wc -l)
echo "rules and dashboard: $n metric names checked; $(echo "$exported" | grep -c .) exported, $listed in slhookd(8)"
