#!/usr/bin/env bash
# Runs a subset of the integration tests against the ARM builds of the agent under
# qemu-user: the tests spawn the binary through tests/common (agent_command), which
# honours CYBERSENSEI_AGENT_BIN and CYBERSENSEI_AGENT_RUNNER.
#   board/test-arm.sh            # ARM_TARGETS, default: both static musl builds
# Env: ARM_TARGETS (any of the four board targets), ARM_TEST_TIMEOUT (seconds per
#      target for the test run, default 600), ARM_SKIP_BUILD=1 (reuse target/board).
# Subset: license (valid, every refusal, key never leaks), telemetry (delivered with
# the protocol's field names; 503 -> queued then delivered in order), the daemon
# (steps, SIGTERM -> exit 0 quickly), updates (full update from the backend then an
# unhealthy update rolled back; install twice alternating slots; bad packages refused).
set -euo pipefail
cd "$(dirname "$0")/.."
ARM_TARGETS=${ARM_TARGETS:-"armv7-unknown-linux-musleabihf aarch64-unknown-linux-musl"}
TIMEOUT=${ARM_TEST_TIMEOUT:-600}

TESTS=(--test license_cli --test telemetry_sim --test daemon_cli --test board_update --test update_install)
FILTERS=(
  valid_license_prints_tenant_and_records_status
  each_refusal_has_its_exit_code_and_state
  key_never_leaks_to_output_logs_or_state
  once_delivers_with_protocol_field_names
  once_on_503_exits_non_zero_and_queues_then_delivers_in_order
  runs_steps_then_exits_0_on_sigterm_quickly
  update_from_backend_then_unhealthy_update_rolls_back
  install_twice_alternates_slots_and_keeps_the_first
  bad_packages_are_rejected_before_the_switch
)

# Host test binaries once (the tests and the simulator run natively; only the agent
# is ARM).
cargo test --locked --no-run "${TESTS[@]}" >/dev/null 2>&1 || cargo test --locked --no-run "${TESTS[@]}"

rc=0
for t in $ARM_TARGETS; do
  case "$t" in
    armv7-*) qemu=qemu-arm; sysroot=/usr/arm-linux-gnueabihf ;;
    aarch64-*) qemu=qemu-aarch64; sysroot=/usr/aarch64-linux-gnu ;;
    *) echo "test-arm: not an ARM target: $t" >&2; exit 2 ;;
  esac
  runner=$qemu
  case "$t" in *-gnu*) runner="$qemu -L $sysroot" ;; esac
  bin=$PWD/target/board/$t/cybersensei-agent
  if [ "${ARM_SKIP_BUILD:-0}" != 1 ] || [ ! -x "$bin" ]; then
    board/build.sh "$t" >/dev/null
  fi
  echo "== $t: $(file -b "$bin" | cut -d, -f1-2), $(stat -c %s "$bin") bytes, runner: $runner"
  # shellcheck disable=SC2086
  $runner "$bin" --version
  start=$SECONDS
  if CYBERSENSEI_AGENT_BIN=$bin CYBERSENSEI_AGENT_RUNNER=$runner \
    timeout "$TIMEOUT" cargo test --locked "${TESTS[@]}" -- "${FILTERS[@]}" 2>&1 |
    grep -E '^test |^test result|panicked|FAILED|failures' ; [ "${PIPESTATUS[0]}" = 0 ]; then
    echo "== $t: subset passed in $((SECONDS - start)) s"
  else
    echo "== $t: subset FAILED (or timed out after ${TIMEOUT}s)"
    rc=1
  fi
done
exit $rc
