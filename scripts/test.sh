#!/usr/bin/env bash
# The whole test suite, as CI runs it: host tests, then (when the tools are there)
# the ARM subset under qemu-user and the init-script test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
if [ "${SKIP_BOARD:-0}" != 1 ]; then
  for t in board/test-init.sh board/test-install.sh board/test-arm.sh; do
    if [ -x "$t" ]; then
      echo "== $t"
      bash "$t"
    fi
  done
fi
