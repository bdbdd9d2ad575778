#!/usr/bin/env bash
# Run every fuzz target for SECONDS (default 600) each, JOBS (default 2) at a time,
# without a sanitizer (stable Rust). Logs go to $LOGS (default /tmp/fuzz-logs).
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:-600}
JOBS=${JOBS:-2}
LOGS=${LOGS:-/tmp/fuzz-logs}
mkdir -p "$LOGS"
targets=$(cargo fuzz list)
printf '%s\n' $targets | xargs -P "$JOBS" -I{} sh -c \
  "cargo fuzz run -s none -O {} -- -max_total_time=$SECONDS_EACH -rss_limit_mb=2048 > $LOGS/{}.log 2>&1; echo \"{} exit \$?\" >> $LOGS/summary.txt"
cat "$LOGS/summary.txt"
