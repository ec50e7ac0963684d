#!/usr/bin/env bash
# A site's boxes behind one NAT address against the real backend's throttler
# (60 requests/min per address and route): N real daemons in one process on one
# injected clock shared with the simulator's central profile (examples/fleet.rs).
# Prints, for each N, the 429s and posts of 2 h of steady state, then after a 24 h
# outage (every queue full) the 429s and the time until every backlog is delivered.
#   scripts/fleet.sh            N = 10 and 50 (4-8 min on 2 shared cores, debug build)
#   scripts/fleet.sh 5 20 100   other sizes
# State goes to $FLEET_DIR (default /dev/shm when present: thousands of fsyncs).
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10 50)
if [ -z "${FLEET_DIR:-}" ]; then
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then FLEET_DIR=/dev/shm; else FLEET_DIR=${TMPDIR:-/tmp}; fi
fi
export FLEET_DIR
cargo build --locked -q --example fleet
source scripts/cargo-target-dir.sh
echo "fleet: simulated time; throttler 60/min per address and route; telemetry every 300 s"
"$(cargo_target_dir)/debug/examples/fleet" "${sizes[@]}"
