#!/usr/bin/env bash
# The newcomer test: what someone who just cloned the project does, with the habits of
# a Rust engineer (CARGO_TARGET_DIR set elsewhere). Clones the committed HEAD into a
# temporary directory and runs the README's two commands there:
#   bash scripts/demo.sh    in full; its output must show each step succeeding
#   bash scripts/test.sh    bounded: SKIP_BOARD=1, one simulator profile, the newcomer tests only
#                           (NEWCOMER_TESTS, default "--test integration newcomer_cli::"),
#                           because CI already runs the whole suite in the checkout; this
#                           proves the command works from a clone, not the suite again.
#                           NEWCOMER_FULL=1 runs the README command unbounded.
# Then checks that nothing was built inside the clone (target/ is elsewhere).
# Env: NEWCOMER_TARGET_DIR (the CARGO_TARGET_DIR used; default a "newcomer" directory
#      in this checkout's target dir, kept between runs so dependencies build once).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/cargo-target-dir.sh
TD=${NEWCOMER_TARGET_DIR:-$(cargo_target_dir)/newcomer}
mkdir -p "$TD"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
git diff --quiet HEAD -- 2>/dev/null || echo "newcomer: note: uncommitted changes are not in the clone (HEAD is tested)"

t0=$SECONDS
git clone -q --no-hardlinks "$ROOT" "$W/repo"
echo "newcomer: cloned $(git -C "$W/repo" rev-parse --short HEAD) into $W/repo; CARGO_TARGET_DIR=$TD"
cd "$W/repo"
export CARGO_TARGET_DIR=$TD
unset CYBERSENSEI_AGENT_CONFIG CYBERSENSEI_LICENSE_KEY

fails=0
t=$SECONDS
if bash scripts/demo.sh >"$W/demo.out" 2>&1; then
  for want in "License: valid" "Installed version 1.2.0 in slot" "Telemetry delivered" \
    "Health:    healthy" "telemetry received by the simulator:"; do
    grep -qF "$want" "$W/demo.out" || { echo "newcomer: demo output lacks \"$want\""; fails=$((fails + 1)); }
  done
  echo "newcomer: demo passed in $((SECONDS - t)) s"
else
  echo "newcomer: demo FAILED:"; sed 's/^/  | /' "$W/demo.out"; fails=$((fails + 1))
fi
[ "$fails" = 0 ] || sed 's/^/  | /' "$W/demo.out"

t=$SECONDS
if [ "${NEWCOMER_FULL:-0}" = 1 ]; then
  test_cmd=(bash scripts/test.sh)
else
  read -r -a extra <<<"${NEWCOMER_TESTS:---test integration newcomer_cli::}"
  test_cmd=(env SKIP_BOARD=1 SIM_PROFILES=guide bash scripts/test.sh "${extra[@]}")
fi
if "${test_cmd[@]}" >"$W/test.out" 2>&1; then
  echo "newcomer: '${test_cmd[*]}' passed in $((SECONDS - t)) s ($(grep -c '^test .* ok$' "$W/test.out") tests)"
else
  echo "newcomer: '${test_cmd[*]}' FAILED:"; tail -40 "$W/test.out" | sed 's/^/  | /'; fails=$((fails + 1))
fi

if [ -e "$W/repo/target" ]; then
  echo "newcomer: something built into the clone's target/ despite CARGO_TARGET_DIR:"
  find "$W/repo/target" -maxdepth 2 | head | sed 's/^/  | /'
  fails=$((fails + 1))
fi
if [ "$fails" -gt 0 ]; then echo "newcomer: $fails failure(s)"; exit 1; fi
echo "newcomer: all passed in $((SECONDS - t0)) s"
