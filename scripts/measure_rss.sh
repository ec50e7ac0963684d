#!/usr/bin/env bash
# Size and memory of the agent (issues 3 and 6). Prints numbers; asserts nothing.
#   - stripped size of the x86_64 release binary (and of the ARM builds in
#     target/board/ when board/build.sh has made them)
#   - peak RSS of `validate` against the simulator over TLS
#   - RSS of the daemon (`run`) idle after its first steps (target <= 3 MiB), with
#     the admin API off, then on (issue 22: it adds <= 256 KiB), then after 50 and
#     after 1,000 requests to it (the status page and its JSON routes)
#   - RSS of the daemon loop after 10 and after 10,000 cycles with an accelerated
#     clock against the simulator (examples/soak.rs; target: equal within 64 KiB)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p cybersensei-agent -p cybersensei-sim
cargo build --release -q --example soak
source scripts/cargo-target-dir.sh
TARGET_DIR=$(cargo_target_dir)
BIN=$TARGET_DIR/release/cybersensei-agent
SIM_BIN=$TARGET_DIR/release/cybersensei-sim
SOAK=$TARGET_DIR/release/examples/soak
W=$(mktemp -d)
SIM=
AGENT=
trap 'kill $SIM $AGENT 2>/dev/null || true; rm -rf "$W"' EXIT

kib() { awk -v f="$1" '$1 == f {print $2}' "/proc/$2/status"; }

echo "== size (stripped, release profile)"
printf '  %-34s %9s bytes\n' x86_64-unknown-linux-gnu "$(stat -c %s "$BIN")"
for t in armv7-unknown-linux-gnueabihf armv7-unknown-linux-musleabihf aarch64-unknown-linux-gnu aarch64-unknown-linux-musl; do
  f=target/board/$t/cybersensei-agent
  if [ -f "$f" ]; then
    printf '  %-34s %9s bytes\n' "$t" "$(stat -c %s "$f")"
  else
    printf '  %-34s %9s (board/build.sh %s)\n' "$t" "-" "$t"
  fi
done

KEY="RSS-KEY-0001"
"$SIM_BIN" --tls --port 0 --ca-out "$W/ca.pem" --license "$KEY=valid" >"$W/sim.out" 2>"$W/sim.err" &
SIM=$!
for _ in $(seq 100); do grep -q '^URL ' "$W/sim.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^URL //p' "$W/sim.out" | head -1)
[ -n "$URL" ] || { echo "simulator did not start"; cat "$W/sim.err"; exit 1; }
echo "$KEY" >"$W/key"
chmod 600 "$W/key"
cat >"$W/agent.json" <<JSON
{"backend": {"url": "$URL", "ca_file": "$W/ca.pem", "retry_delay": 1},
 "license": {"key_file": "$W/key"},
 "install": {"root": "$W/opt"}, "state_dir": "$W/state",
 "log": {"file": "$W/agent.log", "level": "info"},
 "schedule": {"splay": false}}
JSON
API_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed 's#"schedule": {"splay": false}}#"schedule": {"splay": false}, "admin_api": {"listen": "127.0.0.1:'"$API_PORT"'", "auth": "none"}}#' \
  "$W/agent.json" >"$W/agent-api.json"

# rss_of BIN CONFIG LABEL: `run` idle after its first steps (and, with the API on,
# after 50 requests to it).
rss_of() {
  local bin=$1 cfg=$2 label=$3
  rm -rf "$W/state"
  "$bin" -c "$cfg" run 2>/dev/null &
  AGENT=$!
  for _ in $(seq 100); do
    grep -q '"lastSentAt": *"' "$W/state/status.json" 2>/dev/null &&
      grep -q '"lastCheckedAt": *"' "$W/state/status.json" 2>/dev/null && break
    sleep 0.1
  done
  sleep 2
  printf '  %-34s %9s KiB (RssAnon %s)\n' "$label" "$(kib VmRSS: $AGENT)" "$(kib RssAnon: $AGENT)"
  if [ "$cfg" = "$W/agent-api.json" ] && command -v curl >/dev/null; then
    # requests N: N requests, the status page and its JSON routes in turn.
    requests() {
      local i p
      for i in $(seq $(($1 / 5))); do
        for p in / /api/agent/status /api/update/check /api/update/history /api/license/info; do
          curl -s -o /dev/null "http://127.0.0.1:$API_PORT$p"
        done
      done
    }
    requests 50
    sleep 1
    printf '  %-34s %9s KiB (RssAnon %s)\n' "  after 50 API requests" "$(kib VmRSS: $AGENT)" "$(kib RssAnon: $AGENT)"
    requests 950
    sleep 1
    printf '  %-34s %9s KiB (RssAnon %s)\n' "  after 1,000 API requests" "$(kib VmRSS: $AGENT)" "$(kib RssAnon: $AGENT)"
  fi
  kill -TERM $AGENT
  wait $AGENT 2>/dev/null || true
  AGENT=
}

# measure BIN LABEL: peak RSS of `validate`, then `run` idle after its first steps.
measure() {
  local bin=$1 label=$2
  rm -rf "$W/state"
  echo "== $label: $(stat -c %s "$bin") bytes"
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -v "$bin" -c "$W/agent.json" validate >/dev/null 2>"$W/time.err" || true
    printf '  %-34s %9s KiB\n' "validate peak RSS" "$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$W/time.err")"
  else
    echo "  /usr/bin/time missing (apt install time): no validate figure"
  fi
  "$bin" -c "$W/agent.json" run 2>/dev/null &
  AGENT=$!
  for _ in $(seq 100); do
    grep -q '"lastSentAt": *"' "$W/state/status.json" 2>/dev/null &&
      grep -q '"lastCheckedAt": *"' "$W/state/status.json" 2>/dev/null && break
    sleep 0.1
  done
  sleep 2
  printf '  %-34s %9s KiB\n' "run idle VmRSS (target <= 3072)" "$(kib VmRSS: $AGENT)"
  printf '  %-34s %9s KiB\n' "  anonymous (heap, stacks: RssAnon)" "$(kib RssAnon: $AGENT)"
  printf '  %-34s %9s KiB\n' "  file-backed (code pages: RssFile)" "$(kib RssFile: $AGENT)"
  printf '  %-34s %9s KiB\n' "run peak so far (VmHWM)" "$(kib VmHWM: $AGENT)"
  kill -TERM $AGENT
  wait $AGENT 2>/dev/null || true
  AGENT=
  rss_of "$bin" "$W/agent.json" "run idle, admin API off"
  rss_of "$bin" "$W/agent-api.json" "run idle, admin API on"
}
measure "$BIN" "x86_64 gnu release (cargo build --release)"
MUSL=target/board/x86_64-unknown-linux-musl/cybersensei-agent
if [ -x "$MUSL" ]; then
  measure "$PWD/$MUSL" "x86_64 musl static, as the boards are built (board/build.sh)"
else
  echo "== (board/build.sh x86_64-unknown-linux-musl adds the static build the boards use)"
fi

echo "== daemon loop, accelerated clock (examples/soak.rs, release)"
rm -rf "$W/state"
"$SOAK" "$W/agent.json" 10 100 1000 10000 2>/dev/null | sed 's/^/  /' | tee "$W/soak.out"
field() { awk -v n="$1" -v f="$2" '$2 == n {for (i=1;i<=NF;i++) if ($i == f) print $(i+1)}' "$W/soak.out"; }
for f in VmRSS RssAnon RssFile; do
  a=$(field 10 $f); b=$(field 10000 $f)
  [ -n "$a" ] && [ -n "$b" ] && printf '  %-34s %9s KiB\n' "$f growth 10 -> 10,000 cycles" "$((b - a))"
done
echo "  (target: VmRSS equal within 64 KiB)"
