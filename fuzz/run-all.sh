#!/usr/bin/env bash
# Build every target (cargo fuzz build takes one name or all), then run fuzz targets for SECONDS (default 600) each, JOBS (default 2) at a time, without a
# sanitizer (stable Rust); every target when none is named.
#
#   fuzz/run-all.sh [SECONDS] [TARGET...]
#
# Logs go to $LOGS (default /tmp/fuzz-logs); the end is a markdown table (runs, seconds,
# coverage, corpus, crashes) read from libFuzzer's own final lines, and a last line
# `fuzz: PASS` or `fuzz: FAIL (...)`. A crash leaves its input in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:-600}
shift || true
JOBS=${JOBS:-2}
LOGS=${LOGS:-/tmp/fuzz-logs}
mkdir -p "$LOGS"
if [ $# -gt 0 ]; then targets="$*"; else targets=$(cargo fuzz list); fi
cargo fuzz build -s none -O >"$LOGS/build.log" 2>&1 || { cat "$LOGS/build.log" >&2; exit 1; }
: >"$LOGS/summary.txt"
# shellcheck disable=SC2086
printf '%s\n' $targets | xargs -P "$JOBS" -I{} sh -c \
  "cargo fuzz run -s none -O {} -- -max_total_time=$SECONDS_EACH -rss_limit_mb=2048 > $LOGS/{}.log 2>&1; echo \"{} \$?\" >> $LOGS/summary.txt"

echo "| target | runs | seconds | coverage (edges) | features | corpus (entries / bytes) | result |"
echo "|---|---|---|---|---|---|---|"
failed=""
for t in $targets; do
    log="$LOGS/$t.log"
    rc=$(awk -v t="$t" '$1 == t {print $2}' "$LOGS/summary.txt")
    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 || true)
    runs=$(echo "$done_line" | awk '{print $2}')
    secs=$(echo "$done_line" | awk '{print $5}')
    stat=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(echo "$stat" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$stat" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$stat" | sed -n 's/.* corp: \([^ ]*\).*/\1/p')
    if [ "$rc" = 0 ] && [ -n "$done_line" ]; then
        result="no crash"
    else
        result="FAILED (exit $rc; $(grep -m1 -E 'ERROR: libFuzzer|panicked|Test unit written' "$log" | cut -c1-120 || true))"
        failed="$failed $t"
    fi
    echo "| \`$t\` | ${runs:-?} | ${secs:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $result |"
done
if [ -z "$failed" ]; then echo "fuzz: PASS"; else echo "fuzz: FAIL ($failed )"; exit 1; fi
