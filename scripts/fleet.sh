#!/usr/bin/env bash
# A fleet behind one address against the real backend's throttler (60 requests/min per
# address and route; docs/telemetry.md "A fleet behind one address").
#   scripts/fleet.sh [N...]        the model (examples/fleet_model.rs): N boxes' telemetry
#                                  scheduling in simulated time, the agent's own pacing
#                                  functions against the simulator's throttler; 3 designs,
#                                  6 h steady, 2 h outage, 6 h recovery; default N = 300 1000,
#                                  under a second each (release build)
#     FLEET_PER_BOX=1              each box its own address (the backend trusting
#                                  X-Forwarded-For); FLEET_POLICY=old|fresh|paced one design;
#                                  FLEET_SEED=n other random draws
#   scripts/fleet.sh --real [N...] real daemons in one process over TLS on one injected clock
#                                  (examples/fleet.rs): the cross-check for small N (default
#                                  10 50: minutes of CPU on the debug build; state in
#                                  $FLEET_DIR, default /dev/shm)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cargo-target-dir.sh
if [ "${1:-}" = --real ]; then
  shift
  sizes=("$@")
  [ ${#sizes[@]} -gt 0 ] || sizes=(10 50)
  if [ -z "${FLEET_DIR:-}" ]; then
    if [ -d /dev/shm ] && [ -w /dev/shm ]; then FLEET_DIR=/dev/shm; else FLEET_DIR=${TMPDIR:-/tmp}; fi
  fi
  export FLEET_DIR
  cargo build --locked -q --example fleet
  echo "fleet (real daemons): simulated time; throttler 60/min per address and route; telemetry every 300 s"
  exec nice -n 10 "$(cargo_target_dir)/debug/examples/fleet" "${sizes[@]}"
fi
cargo build --locked -q --release --example fleet_model
exec nice -n 10 "$(cargo_target_dir)/release/examples/fleet_model" "$@"
