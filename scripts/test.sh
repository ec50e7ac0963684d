#!/usr/bin/env bash
# The whole test suite, as CI runs it: host tests, then (when the tools are there)
# the init scripts, the install layout, the ARM subset under qemu-user, and the
# arm64 boot test under qemu-system (SKIP_BOARD=1: host tests only).
# The host tests run once per simulator profile (docs/protocol.md §7): the whole suite
# against the first (default: the guide's backend), then every test file that talks to
# the simulator against the others (default: the real backend, `central`); the other
# files do not depend on the profile. SIM_PROFILES="central" runs one profile only.
set -euo pipefail
cd "$(dirname "$0")/.."
first=1
for profile in ${SIM_PROFILES:-guide central}; do
  if [ "$first" = 1 ]; then
    echo "== host tests, simulator profile $profile"
    CYBERSENSEI_SIM_PROFILE=$profile cargo test --workspace --locked "$@"
    first=0
    continue
  fi
  targets=()
  for f in tests/*.rs; do
    if grep -qw sim "$f"; then # a simulator named `sim` in the test
      targets+=(--test "$(basename "$f" .rs)")
    fi
  done
  echo "== host tests that use the simulator, profile $profile"
  CYBERSENSEI_SIM_PROFILE=$profile cargo test -p cybersensei-agent --locked "${targets[@]}" "$@"
done
if [ "${SKIP_BOARD:-0}" != 1 ]; then
  for t in board/test-init.sh board/test-install.sh board/test-arm.sh board/qemu-boot.sh board/power-cut.sh; do
    if [ -x "$t" ]; then
      echo "== $t"
      bash "$t"
    fi
  done
fi
