#!/usr/bin/env bash
# Measures `telemetry --once` (CPU time user+sys, peak RSS, wall) against the simulator
# over TLS, and the on-disk size of a full queue at the default bound (288).
# Prints the numbers; asserts nothing. Release build, as shipped.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}

if [ ! -x /usr/bin/time ]; then
  echo "GNU time missing: apt-get install -y time" >&2
  exit 1
fi

cargo build --release --quiet -p cybersensei-agent
source scripts/cargo-target-dir.sh
AGENT=$(cargo_target_dir)/release/cybersensei-agent

work=$(mktemp -d)
sim_pid=
cleanup() {
  if [ -n "$sim_pid" ]; then kill "$sim_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The backend: SIM_URL + SIM_CA (a server already running, its CA PEM file), else the
# simulator binary of tests/sim, started here on loopback with a throwaway CA.
if [ -n "${SIM_URL:-}" ] && [ -n "${SIM_CA:-}" ]; then
  cp "$SIM_CA" "$work/ca.pem"
  echo "backend: $SIM_URL (external)"
else
  cargo build --release --quiet -p cybersensei-sim
  echo "simulator binary not wired yet; set SIM_URL and SIM_CA" >&2; exit 1
fi

KEY=BENCH-KEY-0001
printf '%s\n' "$KEY" >"$work/license.key"
chmod 600 "$work/license.key"
cat >"$work/agent.json" <<JSON
{"backend": {"url": "$SIM_URL", "ca_file": "$work/ca.pem", "timeout": 5,
             "retry_attempts": 1, "retry_delay": 0},
 "license": {"key_file": "$work/license.key"},
 "telemetry": {"app_metrics_file": "$work/metrics.json"},
 "install": {"root": "$work/opt"},
 "state_dir": "$work/state",
 "log": {"level": "warn"}}
JSON
echo '{"activeUsers": 3, "exercisesCompletedToday": 12, "aiLatency": 240.5}' >"$work/metrics.json"
"$AGENT" -c "$work/agent.json" validate >/dev/null

echo "telemetry --once against the backend over TLS, release build:"
# Peak RSS and wall time per run; GNU time's CPU figures have 10 ms resolution, so the
# CPU time is taken over all runs together (children's rusage) and divided.
max_rss=0
for i in $(seq 1 "$RUNS"); do
  /usr/bin/time -v -o "$work/time.txt" "$AGENT" -c "$work/agent.json" telemetry --once >/dev/null
  r=$(awk -F': ' '/Maximum resident/ {print $2}' "$work/time.txt")
  w=$(awk -F': ' '/Elapsed \(wall/ {print $2}' "$work/time.txt")
  echo "  run $i: peak RSS ${r} KiB, wall $w"
  [ "$r" -gt "$max_rss" ] && max_rss=$r
done
/usr/bin/time -v -o "$work/time.txt" bash -c \
  'for i in $(seq 1 '"$RUNS"'); do "$0" -c "$1" telemetry --once >/dev/null || exit 1; done' \
  "$AGENT" "$work/agent.json"
u=$(awk -F': ' '/User time/ {print $2}' "$work/time.txt")
s=$(awk -F': ' '/System time/ {print $2}' "$work/time.txt")
awk -v u="$u" -v s="$s" -v n="$RUNS" 'BEGIN {
  printf "CPU time per run (user+sys, mean of %d): %.1f ms (user %.1f ms, sys %.1f ms)\n",
    n, (u + s) * 1000 / n, u * 1000 / n, s * 1000 / n }'
echo "peak RSS (max over $RUNS runs): ${max_rss} KiB"
echo "(wall time includes the 250 ms window of the first CPU sample, spent asleep)"

# A full queue: real entries written by the agent while the backend is unreachable,
# 288 of them (the default bound), measured with du.
qcfg="$work/queue.json"
sed -e "s#\"url\": \"$SIM_URL\"#\"url\": \"https://127.0.0.1:9\"#" "$work/agent.json" >"$qcfg"
n=${QUEUE_N:-288}
echo
echo "filling the queue with $n samples (backend unreachable; ~0.3 s each)..."
for _ in $(seq 1 "$n"); do
  "$AGENT" -c "$qcfg" telemetry --once >/dev/null 2>&1 || true
done
qdir="$work/state/telemetry/queue"
count=$(find "$qdir" -name '*.sample' | wc -l)
apparent=$(find "$qdir" -name '*.sample' -printf '%s\n' | awk '{s += $1} END {print s}')
blocks=$(du -sk "$qdir" | awk '{print $1}')
echo "full queue: $count entries, $apparent bytes of data ($((apparent / count)) per entry), $blocks KiB on disk (du, $(stat -f -c %S "$qdir")-byte blocks)"
