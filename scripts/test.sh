#!/usr/bin/env bash
# The whole test suite, as CI runs it: host tests, then (when the tools are there)
# the init scripts, the install layout, the ARM subset under qemu-user, and the
# arm64 boot test under qemu-system (SKIP_BOARD=1: host tests only).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
if [ "${SKIP_BOARD:-0}" != 1 ]; then
  for t in board/test-init.sh board/test-install.sh board/test-arm.sh board/qemu-boot.sh board/power-cut.sh; do
    if [ -x "$t" ]; then
      echo "== $t"
      bash "$t"
    fi
  done
fi
