#!/usr/bin/env bash
# Prints where cargo puts build output for this workspace, asking cargo itself, so
# that CARGO_TARGET_DIR, build.target-dir in a .cargo/config.toml, or a shared
# target directory all work. Sourced by the scripts (function cargo_target_dir) or
# run: `scripts/cargo-target-dir.sh` -> /path/to/target
_cargo_target_dir_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cargo_target_dir() {
  local dir
  dir=$(cd "$_cargo_target_dir_repo" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  if [ -z "$dir" ]; then
    echo "cargo-target-dir: 'cargo metadata' failed in $_cargo_target_dir_repo" >&2
    return 1
  fi
  printf '%s\n' "$dir"
}
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cargo_target_dir
fi
