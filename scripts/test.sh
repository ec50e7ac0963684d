#!/usr/bin/env bash
# The whole test suite, as CI runs it: host tests, then the init scripts, the install
# layout, the ARM subset under qemu-user, the boot tests under qemu-system (aarch64 and
# armv7 guests) and bounded power-cut runs of both (SKIP_BOARD=1: host tests only).
# The host tests run once per simulator profile (docs/protocol.md §7): the whole suite
# against the first (default: the guide's backend), then every integration test module
# (a file of tests/, see tests/integration.rs) that talks to the simulator against the
# others (default: the real backend, `central`); the other modules do not depend on the
# profile. SIM_PROFILES="central" runs one profile only. Arguments go to both passes'
# `cargo test` (after `--`: to the test binary).
# A step whose tools are missing is skipped with their names and how to get them
# (board/ci-setup.sh); under CI=true a missing tool fails the run instead.
set -euo pipefail
cd "$(dirname "$0")/.."

in_ci() { [ "${CI:-}" = true ]; }
have() { command -v "$1" >/dev/null 2>&1; }
# cargo-zigbuild and zig come from PyPI (board/ci-setup.sh) and may sit off PATH.
for d in "${BOARD_TOOLS_VENV:-$HOME/.local/share/cybersensei-board/venv}/bin" "$HOME/.local/bin" "$HOME/.pyenv/shims"; do
  [ -x "$d/cargo-zigbuild" ] && PATH="$d:$PATH"
done
export PATH

# The tools a step needs that this machine lacks, space-separated. $1: the step's
# command line (environment assignments, the script, its arguments).
missing_for() {
  local m=() arch=arm64 qemu=qemu-system-aarch64
  case "$1" in *armv7*) arch=armhf qemu=qemu-system-arm ;; esac
  case "$(step_script "$1")" in
    host)
      have faketime || m+=(faketime)
      have strace || m+=(strace)
      # The admin page in headless Chromium, the board's proxy files in nginx and
      # Traefik (in the board tools' venv, where ci-setup puts it).
      have chromium || m+=(chromium)
      have chromedriver || m+=(chromedriver)
      [ -x /usr/sbin/nginx ] || m+=(nginx)
      have traefik || [ -x "${BOARD_TOOLS_VENV:-$HOME/.local/share/cybersensei-board/venv}/bin/traefik" ] || m+=(traefik)
      ;;
    board/test-init.sh)
      have start-stop-daemon || m+=(start-stop-daemon)
      ;;
    board/test-install.sh) ;;
    board/test-arm.sh)
      have cargo-zigbuild || m+=(cargo-zigbuild)
      have zig || python3 -m ziglang version >/dev/null 2>&1 || m+=(zig)
      have qemu-arm || m+=(qemu-arm)
      have qemu-aarch64 || m+=(qemu-aarch64)
      have file || m+=(file)
      rustup component list --toolchain nightly --installed 2>/dev/null | grep '^rust-src' >/dev/null ||
        m+=("nightly+rust-src")
      ;;
    board/qemu-boot.sh)
      m=($(missing_for board/test-arm.sh))
      have $qemu || m+=($qemu)
      have cpio || m+=(cpio)
      have mke2fs || m+=(mke2fs)
      have dpkg-deb || m+=(dpkg-deb)
      have python3 || m+=(python3)
      # The kernel deb is downloaded once into target/boot-cache/ARCH.
      if ! ls target/boot-cache/$arch/k/boot/vmlinuz-* >/dev/null 2>&1 &&
        ! dpkg --print-foreign-architectures 2>/dev/null | grep -x $arch >/dev/null; then
        m+=("dpkg-arch-$arch")
      fi
      ;;
    board/power-cut.sh)
      m=($(missing_for "board/qemu-boot.sh ${arch/armhf/armv7}"))
      have e2fsck || m+=(e2fsck)
      ;;
  esac
  echo "${m[*]}"
}

# The script of a step's command line (the first word that is not VAR=value).
step_script() {
  local w
  for w in $1; do
    case "$w" in *=*) ;; *) echo "$w"; return ;; esac
  done
}

skipped=()
# True when the step can run; else skips it (outside CI) or fails (CI=true).
ready() {
  local miss
  miss=$(missing_for "$1")
  [ -z "$miss" ] && return 0
  if in_ci; then
    echo "test.sh: $1 needs: $miss (CI=true, so this fails; bash board/ci-setup.sh installs them)" >&2
    exit 1
  fi
  echo "== $1: SKIPPED, missing: $miss"
  echo "   (bash board/ci-setup.sh installs them; README \"Prerequisites\"; SKIP_BOARD=1 runs the host tests only)"
  skipped+=("$1 ($miss)")
  return 1
}

miss=$(missing_for host)
if [ -n "$miss" ] && in_ci; then
  echo "test.sh: the host tests need: $miss (CI=true, so this fails; bash board/ci-setup.sh installs them)" >&2
  exit 1
elif [ -n "$miss" ]; then
  # The tests that need them say SKIPPED themselves.
  echo "== host tests: missing $miss: the tests that need them (clock, fsync audit, admin page, proxy) will be skipped (bash board/ci-setup.sh)"
fi
# Decided before the long host run: under CI a missing tool fails at once.
steps=()
if [ "${SKIP_BOARD:-0}" != 1 ]; then
  # The power-cut steps stay under 10 min together on 2 cores: aarch64 runs both
  # plans, POWER_CUT_CI_CUTS (default 2) random cuts and the replay; armv7 (slower
  # under TCG) both plans (their 3 cuts and 3 crashes), POWER_CUT_CI_CUTS_ARMV7
  # (default 0) random cuts.
  for t in board/test-init.sh board/test-install.sh board/test-arm.sh board/qemu-boot.sh \
    "board/qemu-boot.sh armv7" "board/power-cut.sh ${POWER_CUT_CI_CUTS:-2}" \
    "POWER_CUT_ARCH=armv7 POWER_CUT_REPLAY=0 board/power-cut.sh ${POWER_CUT_CI_CUTS_ARMV7:-0}"; do
    [ -x "$(step_script "$t")" ] || continue
    if ready "$t"; then steps+=("$t"); fi
  done
fi
first=1
for profile in ${SIM_PROFILES:-guide central}; do
  if [ "$first" = 1 ]; then
    echo "== host tests, simulator profile $profile"
    CYBERSENSEI_SIM_PROFILE=$profile cargo test --workspace --locked "$@"
    first=0
    continue
  fi
  # The integration tests are one binary with a module per file of tests/
  # (tests/integration.rs): the modules of the files that use the simulator, as
  # filters `name::`. Arguments after `--` (test options) go after them.
  filters=()
  for f in tests/*.rs; do
    [ "$f" = tests/integration.rs ] && continue
    if grep -qw sim "$f"; then # a simulator named `sim` in the test
      filters+=("$(basename "$f" .rs)::")
    fi
  done
  cargo_args=()
  test_args=()
  after=0
  for a in "$@"; do
    if [ "$after" = 0 ] && [ "$a" = -- ]; then
      after=1
    elif [ "$after" = 0 ]; then
      cargo_args+=("$a")
    else
      test_args+=("$a")
    fi
  done
  echo "== host tests that use the simulator (${#filters[@]} modules), profile $profile"
  CYBERSENSEI_SIM_PROFILE=$profile cargo test -p cybersensei-agent --locked --test integration \
    "${cargo_args[@]}" -- "${filters[@]}" "${test_args[@]}"
done
for t in "${steps[@]}"; do
  echo "== $t"
  # shellcheck disable=SC2086 # the step's words: assignments, script, arguments
  env $t
done
if [ ${#skipped[@]} -gt 0 ]; then
  echo "test.sh: passed, but skipped for missing tools: ${skipped[*]}"
else
  echo "test.sh: all passed"
fi
