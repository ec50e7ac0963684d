#!/usr/bin/env bash
# Runs the integration tests that drive the binary against the ARM builds under
# qemu-user: the tests spawn the agent through agent_command() (tests/harness/agent.rs),
# which honours CYBERSENSEI_AGENT_BIN and CYBERSENSEI_AGENT_RUNNER.
#   board/test-arm.sh            # ARM_TARGETS, default: both static musl builds
# Env: ARM_TARGETS (any of the four board targets), ARM_TEST_TIMEOUT (seconds per
#      target for the test run, default 600), ARM_SKIP_BUILD=1 (reuse target/board).
# Each build is also checked against its size budget (board/size-budget.sh); over
# budget fails the run like a failing test.
# What runs: every test of the integration modules that drive the binary (license_cli,
# telemetry_sim, daemon_cli, board_update, update_install: files of tests/, modules of
# the one test binary, tests/integration.rs; ARM_FILTERS=words to restrict to the tests
# whose names contain one of them). Not run: update_kill (needs the crash hook of debug
# builds; the ARM builds are release) and the in-process tests (no binary involved).
set -euo pipefail
cd "$(dirname "$0")/.."
ARM_TARGETS=${ARM_TARGETS:-"armv7-unknown-linux-musleabihf aarch64-unknown-linux-musl"}
TIMEOUT=${ARM_TEST_TIMEOUT:-600}

MODULES=(license_cli telemetry_sim daemon_cli board_update update_install)
read -r -a FILTERS <<<"${ARM_FILTERS:-}"

# The host test binary once (the tests and the simulator run natively; only the agent
# is ARM).
cargo test --locked --no-run --test integration >/dev/null 2>&1 || cargo test --locked --no-run --test integration
# The tests to run, by exact name: those of MODULES (whose names contain one of
# FILTERS, when given). Chosen here because libtest ORs its filters.
TESTS=()
while read -r name; do
  case " ${MODULES[*]} " in *" ${name%%::*} "*) ;; *) continue ;; esac
  keep=$((${#FILTERS[@]} == 0))
  for f in "${FILTERS[@]}"; do
    case "$name" in *"$f"*) keep=1 ;; esac
  done
  if [ "$keep" = 1 ]; then TESTS+=("$name"); fi
done < <(cargo test --locked -q --test integration -- --list 2>/dev/null | sed -n 's/: test$//p')
if [ ${#TESTS[@]} = 0 ]; then
  echo "test-arm: no test of ${MODULES[*]} matches ARM_FILTERS=${ARM_FILTERS:-}" >&2
  exit 2
fi

rc=0
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for t in $ARM_TARGETS; do
  case "$t" in
    armv7-*) qemu="qemu-arm"; sysroot=/usr/arm-linux-gnueabihf ;;
    aarch64-*) qemu="qemu-aarch64"; sysroot=/usr/aarch64-linux-gnu ;;
    *) echo "test-arm: not an ARM target: $t" >&2; exit 2 ;;
  esac
  runner=$qemu
  case "$t" in *-gnu*) runner="$qemu -L $sysroot" ;; esac
  bin=$PWD/target/board/$t/cybersensei-agent
  if [ "${ARM_SKIP_BUILD:-0}" != 1 ] || [ ! -x "$bin" ]; then
    board/build.sh "$t" >/dev/null
  fi
  echo "== $t: $(file -b "$bin" | cut -d, -f1-2), $(stat -c %s "$bin") bytes, runner: $runner"
  # The size budget (board/size-budget.sh): a change that grows the shipped binary
  # past it fails here, in CI, not at the next release.
  board/size-budget.sh "$t" "$bin" || rc=1
  # shellcheck disable=SC2086
  $runner "$bin" --version
  start=$SECONDS
  if CYBERSENSEI_AGENT_BIN=$bin CYBERSENSEI_AGENT_RUNNER=$runner \
    timeout "$TIMEOUT" cargo test --locked --test integration -- --exact "${TESTS[@]}" 2>&1 |
    grep -E '^test result|panicked|FAILED' | tee "$results"; [ "${PIPESTATUS[0]}" = 0 ]; then
    # The figure docs/board.md quotes: tests run per target, and how long they took.
    n=$(awk '/^test result/ {for (i = 1; i < NF; i++) if ($(i + 1) ~ /^passed/) s += $i} END {print s + 0}' "$results")
    echo "== $t: $n tests passed in $((SECONDS - start)) s"
  else
    echo "== $t: FAILED (or timed out after ${TIMEOUT}s)"
    rc=1
  fi
done
exit $rc
