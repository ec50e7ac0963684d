#!/usr/bin/env bash
# The size budgets of the shipped binaries, in one place, and their check.
#
#   board/size-budget.sh TARGET [BINARY]   # exit 1 when BINARY is over TARGET's budget
#   source board/size-budget.sh            # just defines size_budget TARGET (bytes, 0: none)
#
# Budgets (stripped bytes): every armv7 target <= 1.1 MiB, aarch64 musl <= 1.55 MiB;
# aarch64 gnu has none (glibc boxes have the room). BINARY defaults to
# target/board/TARGET/cybersensei-agent (board/build.sh's output). board/test-arm.sh
# runs the check after each build, so CI fails when a change goes over; what pays
# to cut is in board/size-report.sh's output and docs/board.md.

size_budget() {
  case "$1" in
    armv7-*) echo $((1048576 * 11 / 10)) ;;
    aarch64-unknown-linux-musl) echo $((1048576 * 155 / 100)) ;;
    *) echo 0 ;;
  esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cd "$(dirname "$0")/.."
  [ $# -ge 1 ] || { sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
  t=$1
  f=${2:-target/board/$t/cybersensei-agent}
  [ -f "$f" ] || { echo "size-budget: $f: no such binary" >&2; exit 2; }
  s=$(stat -c %s "$f")
  b=$(size_budget "$t")
  if [ "$b" = 0 ]; then
    echo "size: $t $s bytes (no budget)"
  elif [ "$s" -le "$b" ]; then
    echo "size: $t $s bytes, budget $b: ok ($((b - s)) to spare)"
  else
    echo "size: $t $s bytes, budget $b: OVER by $((s - b)) (board/size-report.sh shows what to cut)"
    exit 1
  fi
fi
