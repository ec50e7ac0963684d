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

cargo build --release --quiet -p cybersensei-agent -p cybersensei-sim
AGENT=$PWD/target/release/cybersensei-agent
SIM=$PWD/target/release/cybersensei-sim

work=$(mktemp -d)
sim_pid=
cleanup() {
  if [ -n "$sim_pid" ]; then kill "$sim_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# SIM_START: start the simulator, export SIM_URL and write its CA to $work/ca.pem.
SIM_START

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

echo "telemetry --once against the simulator (TLS), $RUNS runs, release build:"
printf '%6s %10s %10s %10s %10s\n' run user_s sys_s cpu_ms maxrss_kb
tot_cpu=0; max_rss=0
for i in $(seq 1 "$RUNS"); do
  /usr/bin/time -v -o "$work/time.txt" "$AGENT" -c "$work/agent.json" telemetry --once >/dev/null
  u=$(awk -F': ' '/User time/ {print $2}' "$work/time.txt")
  s=$(awk -F': ' '/System time/ {print $2}' "$work/time.txt")
  r=$(awk -F': ' '/Maximum resident/ {print $2}' "$work/time.txt")
  c=$(awk -v u="$u" -v s="$s" 'BEGIN {printf "%d", (u + s) * 1000}')
  printf '%6s %10s %10s %10s %10s\n' "$i" "$u" "$s" "$c" "$r"
  tot_cpu=$((tot_cpu + c))
  [ "$r" -gt "$max_rss" ] && max_rss=$r
done
echo "mean CPU time (user+sys): $((tot_cpu / RUNS)) ms; peak RSS (max over runs): ${max_rss} KiB"
echo "(wall time includes the 250 ms window of the first CPU sample)"

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
