#!/usr/bin/env bash
# Tests the SysV/BusyBox init script for real: start, status, reload (SIGHUP),
# restart, stop, LSB exit codes, stale pidfiles, the updated-binary/factory choice,
# against the real agent (`run`) and the simulator (HTTPS on loopback).
# Runs once with the system start-stop-daemon and /bin/sh, and once more under
# BusyBox (sh + start-stop-daemon applets) when busybox is installed.
# Also: an update whose agent answers --version but dies before its recovery (at
# `run`, or rejecting the config) is rolled back by the factory agent the script falls
# back to; the start counter sends a slot agent that keeps failing to the factory one.
# Env: AGENT_BIN / SIM_BIN / PACK_BIN to use prebuilt binaries (default: cargo build,
# with the test-seams feature: the kill point `journal:switched` needs its crash hook).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCRIPT=$ROOT/board/init.d/cybersensei-agent
KEY='A1B2C3D4-E5F6+G7H8/I9J0=K1L2'

if [ -z "${AGENT_BIN:-}" ] || [ -z "${SIM_BIN:-}" ] || [ -z "${PACK_BIN:-}" ]; then
  cargo build --locked -q -p cybersensei-agent --features cybersensei-agent/test-seams -p cybersensei-sim -p cybersensei-pack
  source "$ROOT/scripts/cargo-target-dir.sh"
  TARGET_DIR=$(cargo_target_dir)
  AGENT_BIN=${AGENT_BIN:-$TARGET_DIR/debug/cybersensei-agent}
  SIM_BIN=${SIM_BIN:-$TARGET_DIR/debug/cybersensei-sim}
  PACK_BIN=${PACK_BIN:-$TARGET_DIR/debug/cybersensei-pack}
fi

T=$(mktemp -d)
SIM_PID=
cleanup() {
  # stop anything this test started, by pid
  if [ -f "$T/run/agent.pid" ]; then kill -KILL "$(cat "$T/run/agent.pid")" 2>/dev/null || true; fi
  [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT

FAILS=0
ok() { echo "  ok   $*"; }
bad() { echo "  FAIL $*"; FAILS=$((FAILS + 1)); }
expect_rc() { # expect_rc WANT DESCRIPTION -- command...
  local want=$1 what=$2; shift 3
  local rc=0 out
  out=$("$@" 2>&1) || rc=$?
  if [ "$rc" = "$want" ]; then ok "$what -> $rc ($out)"; else bad "$what: want $want, got $rc ($out)"; fi
}
wait_for() { # wait_for SECONDS DESCRIPTION -- command...
  local secs=$1 what=$2; shift 3
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then bad "$what (not within ${secs}s)"; return 1; fi
    sleep 0.1
  done
  ok "$what"
}

# The simulator, HTTPS with a throwaway CA, one valid key.
mkdir -p "$T/etc" "$T/run"
"$SIM_BIN" --tls --ca-out "$T/etc/ca.pem" --license-key "$KEY" --quiet >"$T/sim.out" 2>"$T/sim.err" &
SIM_PID=$!
for _ in $(seq 100); do grep -q '^URL ' "$T/sim.out" 2>/dev/null && break; sleep 0.05; done
URL=$(sed -n 's/^URL //p' "$T/sim.out")
[ -n "$URL" ] || { echo "simulator did not start: $(cat "$T/sim.err")"; exit 1; }

printf '%s\n' "$KEY" >"$T/etc/license.key"
chmod 600 "$T/etc/license.key"
cat >"$T/etc/agent.json" <<JSON
{
  "backend": {"url": "$URL", "timeout": 5, "retry_attempts": 1, "retry_delay": 0,
              "ca_file": "$T/etc/ca.pem"},
  "license": {"key_file": "$T/etc/license.key"},
  "telemetry": {"interval": 300, "app_metrics_file": "$T/run/metrics.json"},
  "updates": {"check_interval": 3600},
  "install": {"root": "$T/opt"},
  "state_dir": "$T/state",
  "log": {"file": "$T/agent.log", "level": "info"}
}
JSON

export DEFAULTS=$T/no-defaults CONFIG=$T/etc/agent.json PIDFILE=$T/run/agent.pid \
  INSTALL_ROOT=$T/opt DAEMON_FACTORY=$AGENT_BIN STDERR_LOG=$T/stderr.log STOP_TIMEOUT=8 \
  STATE_DIR=$T/state

agent_pid() { cat "$PIDFILE" 2>/dev/null; }
license_valid() { grep -q '"state": *"valid"' "$T/state/status.json"; }
log_has() { grep -q "$1" "$T/agent.log"; }
not_alive() { ! kill -0 "$1" 2>/dev/null; }

suite() { # suite SHELL SSD
  local sh=$1
  export SSD=$2
  local init=("$sh" "$SCRIPT")
  echo "== init script under: $sh, $SSD"
  rm -rf "$T/state" "$T/opt" "$T/agent.log" "$PIDFILE"

  expect_rc 3 "status before start" -- "${init[@]}" status
  expect_rc 0 "stop when not running" -- "${init[@]}" stop
  expect_rc 7 "reload when not running" -- "${init[@]}" reload
  expect_rc 3 "unknown action" -- "${init[@]}" frobnicate

  CONFIG=$T/etc/missing.json expect_rc 6 "start without config" -- "${init[@]}" start
  echo '{"backend": {"ur1": "x"}}' >"$T/etc/bad.json"
  CONFIG=$T/etc/bad.json expect_rc 6 "start with a config with an unknown key" -- "${init[@]}" start
  DAEMON_FACTORY=$T/nope expect_rc 5 "start without any binary" -- "${init[@]}" start
  [ ! -e "$PIDFILE" ] && ok "no pidfile after failed starts" || bad "pidfile left after failed start"

  expect_rc 0 "start" -- "${init[@]}" start
  local pid; pid=$(agent_pid)
  expect_rc 0 "status while running" -- "${init[@]}" status
  if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$AGENT_BIN -c $CONFIG run"; then
    ok "pid $pid is the agent: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
  else
    bad "pid $pid is not the agent: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
  fi
  wait_for 15 "daemon validated the license with the simulator" -- license_valid
  expect_rc 0 "second start is a no-op" -- "${init[@]}" start
  [ "$(agent_pid)" = "$pid" ] && ok "same pid after second start" || bad "pid changed on second start"

  expect_rc 0 "reload" -- "${init[@]}" reload
  wait_for 5 "SIGHUP reloaded the configuration" -- log_has "configuration reloaded"
  [ "$(agent_pid)" = "$pid" ] && kill -0 "$pid" && ok "still running after reload" || bad "died on reload"

  local t0=$SECONDS
  expect_rc 0 "stop" -- "${init[@]}" stop
  if not_alive "$pid" && [ $((SECONDS - t0)) -le 6 ]; then ok "agent gone within $((SECONDS - t0))s"; else bad "agent still alive or slow to stop"; fi
  log_has "stopping on signal" && ok "agent logged a clean stop" || bad "no clean stop in the agent log"
  if grep -q "did not stop" "$T/stderr.log" 2>/dev/null; then bad "needed SIGKILL"; fi
  expect_rc 3 "status after stop" -- "${init[@]}" status
  [ ! -e "$PIDFILE" ] && ok "pidfile removed" || bad "pidfile left after stop"

  # A stale pidfile (a pid that is not running) is "dead, pidfile exists".
  sh -c 'exit 0' & local dead=$!; wait $dead
  echo "$dead" >"$PIDFILE"
  expect_rc 1 "status with a stale pidfile" -- "${init[@]}" status
  # A live pid that is not the agent must not be taken for it (nor signalled).
  sleep 30 & local other=$!
  echo "$other" >"$PIDFILE"
  expect_rc 1 "status with a pidfile naming another process" -- "${init[@]}" status
  expect_rc 0 "start over a stale pidfile" -- "${init[@]}" start
  kill -0 "$other" && ok "unrelated process untouched" || bad "unrelated process was killed"
  kill "$other" 2>/dev/null || true

  # restart gives a new process
  pid=$(agent_pid)
  expect_rc 0 "restart" -- "${init[@]}" restart
  local pid2; pid2=$(agent_pid)
  if [ -n "$pid2" ] && [ "$pid2" != "$pid" ] && not_alive "$pid" && kill -0 "$pid2"; then ok "restart: $pid -> $pid2"; else bad "restart did not replace the process ($pid -> $pid2)"; fi
  expect_rc 0 "stop" -- "${init[@]}" stop

  # The self-update path: an executable agent in install.root/current/bin is preferred.
  mkdir -p "$T/opt/slots/b/bin"
  cp "$AGENT_BIN" "$T/opt/slots/b/bin/cybersensei-agent"
  echo 1.1.0 >"$T/opt/slots/b/VERSION"
  ln -sfn slots/b "$T/opt/current"
  expect_rc 0 "start with an updated agent in the slot" -- "${init[@]}" start
  pid=$(agent_pid)
  if [ "$(readlink -f "/proc/$pid/exe")" = "$(readlink -f "$T/opt/slots/b/bin/cybersensei-agent")" ]; then
    ok "runs the slot's agent ($(readlink "/proc/$pid/exe"))"
  else
    bad "does not run the slot's agent: $(readlink "/proc/$pid/exe")"
  fi
  # After a switch `current` points elsewhere: the running agent is still found.
  mkdir -p "$T/opt/slots/a"
  ln -sfn slots/a "$T/opt/current"
  expect_rc 0 "status after current moved" -- "${init[@]}" status
  expect_rc 0 "stop after current moved" -- "${init[@]}" stop
  not_alive "$pid" && ok "slot agent stopped" || bad "slot agent still running"

  # A slot agent that cannot run here (wrong arch, truncated) -> the factory copy.
  mkdir -p "$T/opt/slots/a/bin"
  head -c 4000 "$AGENT_BIN" >"$T/opt/slots/a/bin/cybersensei-agent"
  chmod 755 "$T/opt/slots/a/bin/cybersensei-agent"
  expect_rc 0 "start with a broken slot agent" -- "${init[@]}" start
  pid=$(agent_pid)
  if [ "$(readlink -f "/proc/$pid/exe")" = "$(readlink -f "$AGENT_BIN")" ]; then
    ok "fell back to the factory agent"
  else
    bad "did not fall back: $(readlink "/proc/$pid/exe")"
  fi
  expect_rc 0 "stop" -- "${init[@]}" stop
  # One that hangs on --version: bounded by VERSION_TIMEOUT, then the factory copy.
  printf '#!/bin/sh\nexec sleep 60\n' >"$T/opt/slots/a/bin/cybersensei-agent"
  local t1=$SECONDS
  VERSION_TIMEOUT=2 expect_rc 0 "start with a slot agent that hangs" -- "${init[@]}" start
  pid=$(agent_pid)
  if [ "$(readlink -f "/proc/$pid/exe")" = "$(readlink -f "$AGENT_BIN")" ] && [ $((SECONDS - t1)) -le 8 ]; then
    ok "fell back to the factory agent after $((SECONDS - t1))s"
  else
    bad "hanging slot agent: $(readlink "/proc/$pid/exe") after $((SECONDS - t1))s"
  fi
  expect_rc 0 "stop" -- "${init[@]}" stop
  rm -rf "$T/opt"

  # An update whose agent answers --version but dies before its start-up recovery:
  # at `run` (variant run), or rejecting the config (variant config). The journal is
  # left at `switched` (kill point), as after a daemon's hand-over to the new agent.
  local variant
  for variant in run config; do
    rm -rf "$T/opt" "$T/state" "$T/pkg1" "$T/pkg2"
    mkdir -p "$T/pkg1" "$T/pkg2/bin"
    echo 1.0.0 >"$T/pkg1/VERSION"
    echo 2.0.0 >"$T/pkg2/VERSION"
    cat >"$T/pkg2/bin/cybersensei-agent" <<AGENT
#!/bin/sh
case "\$1" in --version|-V) echo "cybersensei-agent 2.0.0"; exit 0 ;; esac
[ "$variant" = run ] && [ "\$3" = config ] && exit 0
echo "broken agent 2.0.0: exits before recovery" >&2
exit 2
AGENT
    chmod 755 "$T/pkg1" "$T/pkg2" "$T/pkg2/bin" "$T/pkg2/bin/cybersensei-agent"
    chmod 644 "$T/pkg1/VERSION" "$T/pkg2/VERSION"
    "$PACK_BIN" pack "$T/pkg1" -o "$T/p1.zip" --unsigned >/dev/null
    "$PACK_BIN" pack "$T/pkg2" -o "$T/p2.zip" --unsigned >/dev/null
    expect_rc 0 "install 1.0.0" -- "$AGENT_BIN" -c "$CONFIG" install "$T/p1.zip"
    local rc=0
    CYBERSENSEI_TEST_CRASH_AT=journal:switched "$AGENT_BIN" -c "$CONFIG" install "$T/p2.zip" >/dev/null 2>&1 || rc=$?
    if [ "$rc" = 0 ]; then
      echo "  skip ($variant) this agent build has no crash hook (test-seams feature only)"
      continue
    fi
    if [ "$(readlink "$T/opt/current")" = slots/b ] && grep -q switched "$T/state/update/journal.json"; then
      ok "($variant) 2.0.0 switched, journal at switched"
    else
      bad "($variant) setup: current $(readlink "$T/opt/current"), journal $(cat "$T/state/update/journal.json" 2>/dev/null)"
    fi
    expect_rc 0 "($variant) start with an updated agent that dies before recovery" -- "${init[@]}" start
    pid=$(agent_pid)
    if [ "$(readlink -f "/proc/$pid/exe")" = "$(readlink -f "$AGENT_BIN")" ]; then
      ok "($variant) the factory agent runs"
    else
      bad "($variant) not the factory agent: $(readlink "/proc/$pid/exe" 2>/dev/null)"
    fi
    wait_for 15 "($variant) the factory agent rolled 2.0.0 back to slot a" -- \
      sh -c "[ \"\$(readlink '$T/opt/current')\" = slots/a ] && grep -q rolled-back '$T/state/status.json'"
    log_has "failed to start; the init script fell back" && ok "($variant) reason logged" || bad "($variant) no reason in the log"
    [ ! -e "$T/state/update/journal.json" ] && ok "($variant) journal cleared" || bad "($variant) journal left"
    expect_rc 0 "($variant) stop" -- "${init[@]}" stop
    # The next start runs slot a (no agent there): the factory copy, no fallback.
    expect_rc 0 "($variant) start after the rollback" -- "${init[@]}" start
    wait_for 10 "($variant) counter cleared by a confirmed start" -- test ! -e "$T/state/agent-starts"
    expect_rc 0 "($variant) stop" -- "${init[@]}" stop
  done

  # The counter: a slot agent with MAX_AGENT_STARTS unconfirmed starts is skipped.
  rm -rf "$T/opt" "$T/state"
  mkdir -p "$T/opt/slots/b/bin" "$T/state"
  cp "$AGENT_BIN" "$T/opt/slots/b/bin/cybersensei-agent"
  echo 1.1.0 >"$T/opt/slots/b/VERSION"
  ln -sfn slots/b "$T/opt/current"
  echo "3 slots/b" >"$T/state/agent-starts"
  expect_rc 0 "start with 3 failed starts of the slot agent" -- "${init[@]}" start
  pid=$(agent_pid)
  if [ "$(readlink -f "/proc/$pid/exe")" = "$(readlink -f "$AGENT_BIN")" ] && [ "$pid" ] &&
    tr '\0' '\n' <"/proc/$pid/environ" | grep -q '^CYBERSENSEI_AGENT_FALLBACK=1$'; then
    ok "the factory agent runs, told it is the fallback"
  else
    bad "counter ignored: $(readlink "/proc/$pid/exe" 2>/dev/null)"
  fi
  expect_rc 0 "stop" -- "${init[@]}" stop
  [ "$(cat "$T/state/agent-starts" 2>/dev/null)" = "3 slots/b" ] && ok "count kept while on the fallback" || bad "count: $(cat "$T/state/agent-starts" 2>/dev/null)"
  # A counter for another slot does not count.
  echo "3 slots/a" >"$T/state/agent-starts"
  expect_rc 0 "start with a count for another slot" -- "${init[@]}" start
  pid=$(agent_pid)
  [ "$(readlink -f "/proc/$pid/exe")" = "$(readlink -f "$T/opt/slots/b/bin/cybersensei-agent")" ] && ok "the slot agent runs" || bad "slot agent not run: $(readlink "/proc/$pid/exe" 2>/dev/null)"
  wait_for 10 "its confirmed start clears the count" -- test ! -e "$T/state/agent-starts"
  expect_rc 0 "stop" -- "${init[@]}" stop
  # Power cuts: 3 counted starts, the last in another boot (a power cut ended it, the
  # agent never confirmed): not a failed start, the slot agent runs again.
  local boot; boot=$(cat /proc/sys/kernel/random/boot_id)
  BOOT_ID_FILE=$T/boot-id
  export BOOT_ID_FILE
  echo "$boot" >"$BOOT_ID_FILE"
  echo "3 slots/b 00000000-0000-0000-0000-00000000dead 0" >"$T/state/agent-starts"
  local out
  out=$("${init[@]}" start 2>&1) || bad "start after 3 starts, the last cut by a reboot: $out"
  pid=$(agent_pid)
  [ "$(readlink -f "/proc/$pid/exe")" = "$(readlink -f "$T/opt/slots/b/bin/cybersensei-agent")" ] && ok "3 starts, the last cut by a reboot: the slot agent runs" || bad "cut start counted: $(readlink "/proc/$pid/exe" 2>/dev/null)"
  case "$out" in *"cut by a reboot: not a failed start (1 of 10 forgiven)"*) ok "forgiveness said" ;; *) bad "no forgiveness in: $out" ;; esac
  expect_rc 0 "stop" -- "${init[@]}" stop
  # The script's own record: the slot agent killed before it confirmed, then 3 boots
  # in a row whose start never confirmed: each forgiven, and the count stays at 3.
  rm -f "$T/state/agent-starts"
  printf '#!/bin/sh\ncase "$1" in --version) echo cybersensei-agent 1.1.0; exit 0 ;; esac\n[ "$3" = config ] && exit 0\nwhile :; do sleep 1; done\n' >"$T/opt/slots/b/bin/cybersensei-agent"
  local k
  for k in 1 2 3 4; do
    echo "boot-$k" >"$BOOT_ID_FILE"
    expect_rc 0 "boot $k: start of an agent that never confirms (power cut before it does)" -- "${init[@]}" start
    tr '\0' ' ' <"/proc/$(agent_pid)/cmdline" | grep -q "current/bin/cybersensei-agent -c" && ok "the slot agent runs" || bad "not the slot agent: $(tr '\0' ' ' <"/proc/$(agent_pid)/cmdline")"
    [ "$(cat "$T/state/agent-starts")" = "1 slots/b boot-$k $((k - 1))" ] && ok "count $(cat "$T/state/agent-starts")" || bad "count after boot $k: $(cat "$T/state/agent-starts")"
    kill -KILL "$(agent_pid)"; rm -f "$PIDFILE"   # the power cut
  done
  # Real failures: the same boot, starts that never confirm: counted; the 4th start
  # falls back to the factory agent.
  for k in 2 3; do
    expect_rc 0 "same boot, start $k" -- "${init[@]}" start
    tr '\0' ' ' <"/proc/$(agent_pid)/cmdline" | grep -q "current/bin/cybersensei-agent -c" && ok "the slot agent runs" || bad "not the slot agent"
    kill -KILL "$(agent_pid)"; rm -f "$PIDFILE"   # a crash
  done
  [ "$(cat "$T/state/agent-starts")" = "3 slots/b boot-4 3" ] && ok "3 failed starts counted in one boot" || bad "count: $(cat "$T/state/agent-starts")"
  expect_rc 0 "start after 3 failed starts in this boot" -- "${init[@]}" start
  pid=$(agent_pid)
  [ "$(readlink -f "/proc/$pid/exe")" = "$(readlink -f "$AGENT_BIN")" ] && ok "the factory agent runs" || bad "no fallback: $(readlink "/proc/$pid/exe" 2>/dev/null)"
  expect_rc 0 "stop" -- "${init[@]}" stop
  # Forgiveness is bounded: after MAX_CUT_STARTS (10) forgiven cuts, a cut counts.
  echo "boot-x" >"$BOOT_ID_FILE"
  echo "3 slots/b boot-4 10" >"$T/state/agent-starts"
  expect_rc 0 "start after 10 forgiven cuts" -- "${init[@]}" start
  pid=$(agent_pid)
  [ "$(readlink -f "/proc/$pid/exe")" = "$(readlink -f "$AGENT_BIN")" ] && ok "the 11th cut counts: factory agent" || bad "unbounded forgiveness: $(readlink "/proc/$pid/exe" 2>/dev/null)"
  expect_rc 0 "stop" -- "${init[@]}" stop
  unset BOOT_ID_FILE
  rm -rf "$T/opt"

  # A daemon that dies at once is a failed start (another instance holds run.lock).
  "$AGENT_BIN" -c "$CONFIG" run 2>/dev/null & local holder=$!
  wait_for 5 "a manual run holds the state" -- test -e "$T/state/run.lock"
  sleep 0.5
  expect_rc 1 "start while another run holds the state" -- "${init[@]}" start
  kill -TERM "$holder"; wait "$holder" 2>/dev/null || true
  expect_rc 3 "status after the failed start" -- "${init[@]}" status
}

suite /bin/sh start-stop-daemon
if command -v busybox >/dev/null 2>&1; then
  BB=$T/bb
  mkdir -p "$BB"
  # A BusyBox userland first on PATH: the script sees BusyBox's applets only where
  # they exist (sh, start-stop-daemon, sleep, tr, grep, ...).
  for a in sh start-stop-daemon sleep tr grep cat rm mkdir dirname kill timeout; do ln -sf "$(command -v busybox)" "$BB/$a"; done
  PATH=$BB:$PATH suite "$BB/sh" "$BB/start-stop-daemon"
else
  echo "== busybox not installed: BusyBox pass skipped"
fi

if [ "$FAILS" -gt 0 ]; then echo "test-init: $FAILS failure(s)"; exit 1; fi
echo "test-init: all passed"
