#!/usr/bin/env bash
# Measures the stripped size of the agent for several release-profile settings on one
# target (default aarch64-unknown-linux-musl) and prints a table. Each row is a full
# rebuild in target/matrix (minutes each on 2 cores).
#   board/profile-matrix.sh [TARGET]     (MATRIX_ROWS: newline-separated rows to run)
# Row: opt-level, lto, codegen-units, panic (abort | unwind | immediate-abort: nightly
# build-std), extra (buildstd: std rebuilt with the profile).
set -uo pipefail
cd "$(dirname "$0")/.."
TARGET=${1:-aarch64-unknown-linux-musl}
export CARGO_TARGET_DIR=$PWD/target/matrix
rows=(
  "z fat 1 abort -"
  "s fat 1 abort -"
  "3 fat 1 abort -"
  "z thin 1 abort -"
  "z false 16 abort -"
  "z fat 1 unwind -"
  "z fat 1 abort buildstd"
  "z fat 1 immediate-abort buildstd"
  "s fat 1 immediate-abort buildstd"
)
[ -n "${MATRIX_ROWS:-}" ] && mapfile -t rows <<<"$MATRIX_ROWS"
printf '%-6s %-6s %-4s %-7s %-20s %10s\n' opt lto cgu panic extra bytes
for r in "${rows[@]}"; do
  read -r opt lto cgu panic extra <<<"$r"
  env=(CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt CARGO_PROFILE_RELEASE_LTO=$lto
       CARGO_PROFILE_RELEASE_CODEGEN_UNITS=$cgu BOARD_OUT=$CARGO_TARGET_DIR/out)
  case "$panic" in
    immediate-abort) env+=(BOARD_PANIC=immediate-abort) ;;
    *) env+=(BOARD_PANIC=abort CARGO_PROFILE_RELEASE_PANIC=$panic) ;;
  esac
  case "$extra" in
    buildstd) env+=(BUILD_STD=1) ;;
  esac
  rm -f "$CARGO_TARGET_DIR/out/cybersensei-agent"
  if env "${env[@]}" board/build.sh "$TARGET" >"$CARGO_TARGET_DIR/last.log" 2>&1; then
    size=$(stat -c %s "$CARGO_TARGET_DIR/out/cybersensei-agent")
  else
    size="failed($(grep -m1 '^error' "$CARGO_TARGET_DIR/last.log" | cut -c1-60))"
  fi
  printf '%-6s %-6s %-4s %-7s %-20s %10s\n' "$opt" "$lto" "$cgu" "$panic" "$extra" "$size"
done
