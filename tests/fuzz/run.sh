#!/usr/bin/env bash
# Run one libFuzzer target (built by ./configure CC=clang --enable-fuzzing) for
# a bounded time from its seed corpus: run.sh TARGET SECONDS FUZZ_SRCDIR.
# New inputs go to tests/fuzz/run/TARGET in the build tree; a crash, leak,
# timeout or broken invariant fails the run and keeps the input as
# FUZZ_SRCDIR/crashers/TARGET-*. Prints the executions made.
set -euo pipefail
t=$1 secs=$2 src=$3
bin=tests/fuzz/fuzz_$t run=tests/fuzz/run/$t log=tests/fuzz/run/$t.log
mkdir -p "$run" "$src/crashers"
echo "fuzz $t: $secs s"
if ! "$bin" -max_total_time="$secs" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -dict="$src/$t.dict" -artifact_prefix="$src/crashers/$t-" \
        "$run" "$src/corpus/$t" > "$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz $t: FAILED; the input is kept in $src/crashers/ (replayed by tests/check_fuzz)"
        exit 1
fi
final_stat() { sed -n "s/^stat::$1: *//p" "$log"; }
echo "fuzz $t: $(final_stat number_of_executed_units) executions in $secs s," \
        "$(ls "$src/corpus/$t" | wc -l) seed inputs, $(ls "$run" | wc -l) new," \
        "$(final_stat peak_rss_mb) MB peak RSS, no failure"
