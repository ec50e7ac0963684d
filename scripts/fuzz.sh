#!/bin/sh
# Runs every cargo-fuzz target for a bounded time and prints executions per target.
# Usage: scripts/fuzz.sh [target...]   (FUZZ_SECONDS per target, default 60)
# Needs cargo-fuzz and a nightly toolchain. Crashes land in fuzz/artifacts/<target>/.
set -eu
cd "$(dirname "$0")/../fuzz"
secs="${FUZZ_SECONDS:-60}"
targets="${*:-config protocol dates zip http}"
mkdir -p logs
summary=""
status=0
for t in $targets; do
    mkdir -p "corpus/$t"
    log="logs/$t.log"
    # Committed seeds (valid inputs to mutate from) are read, never written.
    seeds=""
    [ -d "seeds/$t" ] && seeds="seeds/$t"
    # shellcheck disable=SC2086 # $seeds is empty or one path
    if cargo +nightly fuzz run "$t" "corpus/$t" $seeds -- -max_total_time="$secs" \
        -max_len=65536 -rss_limit_mb=512 -timeout=10 >"$log" 2>&1; then
        result=ok
    else
        result="CRASH (see $log, fuzz/artifacts/$t/)"
        status=1
    fi
    # "Done N runs" at a clean end; the last "#N" status line after a crash.
    execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
    [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -n 1 | tr -d '#')
    line=$(printf '%-10s %12s executions in %ss: %s' "$t" "${execs:-?}" "$secs" "$result")
    echo "$line"
    summary="$summary$line
"
done
echo "---"
printf '%s' "$summary"
exit $status
