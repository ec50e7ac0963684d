#!/usr/bin/env bash
# Admin API under load (issue 22 item 7). Prints numbers; asserts nothing.
#  1. `POST /api/update/apply` of a full 50 MB package (the time until its answer, after
#     the commit), interleaved runs: alone; while ONE client process (scripts/admin_load.py)
#     sends 1,000 requests (the page's polls: check, progress, status, history) paced evenly
#     over the baseline apply time; while it sends them back to back. Also the CPU time of
#     the daemon's `admin-api` thread for those 1,000 requests (what a box pays whatever
#     this machine's load).
#     A control case sends the same paced load to a second, idle daemon's API (another
#     process): what the client and the kernel cost the update, the listener aside.
#  2. Telemetry lateness: the daemon idle with telemetry.interval 1 s, TELE_SECS seconds
#     without and with API requests at the rate of part 1 (1,000 per baseline apply); the simulator's request log is stamped
#     on arrival and the gaps between telemetry posts compared with the 1 s schedule.
# Unlike scripts/bench_admin.sh (1,000 curl processes), one process makes the load, so
# this measures the listener, not process spawning.
# The client process runs at CLIENT_NICE (default 0; 19 keeps most of its own CPU off the
# update, leaving the listener's: on a box the client is a browser on another machine).
# BINS="label=path ..." compares agent binaries, interleaved run by run (default: this
# tree's release build, "main"); the telemetry part uses the first one. PIN=1 pins the
# daemon to CPU 1 and the simulator, the client and curl to CPU 0 (the update then
# competes for its core only with the listener's thread, as on a box whose simulator
# is the real backend, far away). Each apply also prints the daemon's and the
# simulator's CPU (ms, from /proc/PID/stat) and the page's latency
# (median, p99, max ms) while the update runs.
# LINK_MBPS=N puts scripts/link_relay.py between the box and the simulator: the download
# then runs at a box's link speed (N Mbit/s) instead of loopback speed, and 1,000 requests
# paced over the update come at the rate a box would see them.
# Usage: scripts/bench_admin_load.sh     RUNS=5 (runs of each case)  TELE_SECS=20 (0: skip)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
TELE_SECS=${TELE_SECS:-20}
CLIENT_NICE=${CLIENT_NICE:-0}
PIN=${PIN:-0}
LOGLEVEL=info
[ -n "${KEEP_LOGS:-}" ] && LOGLEVEL=debug
cargo build --release -q -p cybersensei-agent -p cybersensei-sim
source scripts/cargo-target-dir.sh
TD=$(cargo_target_dir)
BIN=$TD/release/cybersensei-agent
SIMBIN=$TD/release/cybersensei-sim
LOADPY=$PWD/scripts/admin_load.py
RELAYPY=$PWD/scripts/link_relay.py
BINS=${BINS:-main=$BIN}
ON0=()
ON1=()
if [ "$PIN" = 1 ]; then ON0=(taskset -c 0); ON1=(taskset -c 1); fi
# pcpu PID: the process's CPU so far, ms (all its threads, ended ones included: the
# simulator serves each connection on a thread of its own), at the clock tick's resolution.
TICK=$(getconf CLK_TCK)
pcpu() { awk -v t="$TICK" '{printf "%.0f", ($14 + $15) * 1000 / t}' /proc/"$1"/stat 2>/dev/null || echo 0; }
# BENCH_TMP: where the box and packages live (default /tmp; /dev/shm takes the disk's
# fsync times, which other jobs on this machine make vary, out of the measure).
W=$(mktemp -d -p "${BENCH_TMP:-/tmp}")
SRV=
AGENT=
LOAD=
RELAY=
OTHER=
cleanup() {
  [ -n "$LOAD" ] && kill "$LOAD" 2>/dev/null || true
  [ -n "$AGENT" ] && kill "$AGENT" 2>/dev/null || true
  [ -n "$SRV" ] && kill "$SRV" 2>/dev/null || true
  [ -n "$RELAY" ] && kill "$RELAY" 2>/dev/null || true
  [ -n "$OTHER" ] && kill "$OTHER" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
echo KEY-BENCH >"$W/key"
chmod 600 "$W/key"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PORT2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); client nice $CLIENT_NICE; pinned $PIN; link ${LINK_MBPS:-loopback} Mbit/s; $(nproc) CPUs; box on $(stat -f -c %T "$W")"

python3 - "$W" <<'PY'
import zipfile, os, sys
w = sys.argv[1]
with zipfile.ZipFile(f'{w}/base.zip', 'w', zipfile.ZIP_STORED) as z:
    z.writestr('VERSION', '1.0.0\n')
    for i in range(200):
        z.writestr(f'app/part{i:03}.bin', os.urandom(256 << 10))
with zipfile.ZipFile(f'{w}/small.zip', 'w', zipfile.ZIP_STORED) as z:
    z.writestr('VERSION', '1.0.0\n')
    z.writestr('app/a.bin', os.urandom(1 << 10))
with zipfile.ZipFile(f'{w}/full.zip', 'w', zipfile.ZIP_STORED) as z:
    z.writestr('VERSION', '2.0.0\n')
    for i in range(7):
        z.writestr(f'app/blob{i}.bin', os.urandom((50 << 20) // 7))
PY

stop_all() {
  if [ -n "$OTHER" ]; then kill "$OTHER" 2>/dev/null || true; wait "$OTHER" 2>/dev/null || true; OTHER=; fi
  if [ -n "$RELAY" ]; then kill "$RELAY" 2>/dev/null || true; wait "$RELAY" 2>/dev/null || true; RELAY=; fi
  if [ -n "$AGENT" ]; then kill "$AGENT" 2>/dev/null || true; wait "$AGENT" 2>/dev/null || true; AGENT=; fi
  if [ -n "$SRV" ]; then kill "$SRV" 2>/dev/null || true; wait "$SRV" 2>/dev/null || true; SRV=; fi
}

# box BASE EXTRA_JSON SIM_ARGS...: a simulator and a daemon with the API on; sets SRV, AGENT.
box() {
  local base=$1 extra=$2
  shift 2
  stop_all
  rm -f "$W/sim.out" "$W/sim.err" "$W/stamps"
  "${ON0[@]}" "$SIMBIN" --tls --ca-out "$W/ca.pem" --license-key KEY-BENCH "$@" >"$W/sim.out" \
    2> >(python3 -u -c '
import sys, time
for line in sys.stdin:
    print(f"{time.monotonic():.6f} {line}", end="", flush=True)' >"$W/stamps") &
  SRV=$!
  for _ in $(seq 100); do grep -q '^URL ' "$W/sim.out" 2>/dev/null && break; sleep 0.05; done
  local url
  url=$(awk '/^URL / {print $2}' "$W/sim.out")
  if [ -n "${LINK_MBPS:-}" ]; then
    python3 "$RELAYPY" "${url##*:}" "$LINK_MBPS" >"$W/relay.out" &
    RELAY=$!
    for _ in $(seq 100); do grep -q '^PORT ' "$W/relay.out" 2>/dev/null && break; sleep 0.05; done
    url=https://127.0.0.1:$(awk '/^PORT / {print $2}' "$W/relay.out")
  fi
  rm -rf "$W/box"
  mkdir -p "$W/box"
  cat >"$W/box/agent.json" <<JSON
{"backend": {"url": "$url", "retry_attempts": 1, "retry_delay": 0, "ca_file": "$W/ca.pem"},
 "license": {"key_file": "$W/key"}, "install": {"root": "$W/box/opt"},
 "schedule": {"splay": false, "jitter_percent": 0},
 "state_dir": "$W/box/state", "log": {"file": "$W/box/agent.log", "level": "$LOGLEVEL"},
 "admin_api": {"listen": "127.0.0.1:$PORT", "auth": "none"}$extra}
JSON
  "$ABIN" -c "$W/box/agent.json" install "$base" >/dev/null 2>&1
  "${ON1[@]}" "$ABIN" -c "$W/box/agent.json" run 2>/dev/null &
  AGENT=$!
}

# other: a second daemon (same binary, its own box and port PORT2, the update's
# simulator) whose API takes the load in the control case: the same client and kernel
# work, but not in the updating process. Sets OTHER.
other() {
  rm -rf "$W/ctl"
  mkdir -p "$W/ctl"
  sed -e "s|$W/box/|$W/ctl/|g" -e "s|127.0.0.1:$PORT\"|127.0.0.1:$PORT2\"|" "$W/box/agent.json" >"$W/ctl/agent.json"
  "$ABIN" -c "$W/ctl/agent.json" install "$W/small.zip" >/dev/null 2>&1
  "${ON1[@]}" "$ABIN" -c "$W/ctl/agent.json" run 2>/dev/null &
  OTHER=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT2/api/agent/progress" && break; sleep 0.05; done
}

# apply SPAN: one apply of full.zip by $ABIN; SPAN "" = no load, 0 = back to back, else
# paced over SPAN s; xSPAN: paced over SPAN s, sent to the other daemon (control).
# Prints "seconds http_code agent_cpu_ms sim_cpu_ms" and, loaded, the client's line.
apply() {
  local span=$1 lport=$PORT lpid
  box "$W/base.zip" "" --quiet --update "2.0.0=$W/full.zip"
  lpid=$AGENT
  if [ "${span#x}" != "$span" ]; then
    span=${span#x}
    other
    lport=$PORT2
    lpid=$OTHER
  fi
  local id
  for _ in $(seq 100); do
    id=$(grep -o 'published as [^ ]*' "$W/stamps" 2>/dev/null | awk '{print $3}' || true)
    [ -n "$id" ] && break
    sleep 0.05
  done
  for _ in $(seq 200); do
    python3 - "$PORT" <<'PY' 2>/dev/null && break
import sys, http.client
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
c.request("GET", "/api/update/check")
sys.exit(0 if b'"updateAvailable":true' in c.getresponse().read() else 1)
PY
    sleep 0.05
  done
  : >"$W/load.out"
  if [ -n "$span" ]; then
    "${ON0[@]}" nice -n "$CLIENT_NICE" python3 "$LOADPY" "$lport" 1000 "$span" "$lpid" >"$W/load.out" &
    LOAD=$!
  fi
  local t0 t1 code a0 s0 a1 s1
  a0=$(pcpu "$AGENT")
  s0=$(pcpu "$SRV")
  t0=$(date +%s.%N)
  code=$("${ON0[@]}" curl -s -o "$W/answer" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    -d "{\"updateId\": \"$id\"}" "http://127.0.0.1:$PORT/api/update/apply")
  t1=$(date +%s.%N)
  a1=$(pcpu "$AGENT")
  s1=$(pcpu "$SRV")
  if [ -n "$LOAD" ]; then wait "$LOAD" 2>/dev/null || true; LOAD=; fi
  stop_all
  # KEEP_LOGS=DIR keeps each apply's agent log (debug level), named by its time.
  if [ -n "${KEEP_LOGS:-}" ]; then
    cp "$W/box/agent.log" "$KEEP_LOGS/$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')-${span:-alone}-$RANDOM.log"
  fi
  awk -v a="$t0" -v b="$t1" -v c="$code" -v x="$((a1 - a0))" -v y="$((s1 - s0))" \
    'BEGIN{printf "%.3f %s %s %s ", b-a, c, x, y}'
  if [ -s "$W/load.out" ]; then cat "$W/load.out"; else echo; fi
}

row() { printf '%-52s %s\n' "$1" "$2"; }
med() { sort -g | awk '{v[NR]=$1} END {printf "%.3f", v[int((NR+1)/2)]}'; }
best() { sort -g | awk 'NR==1 {printf "%.3f", $1}'; }
col() { awk -v c="$1" '{print $c}' "$2"; }
# quart: "p25 / median / p75" of numbers on stdin.
quart() { sort -g | awk '{v[NR]=$1} END {printf "%.3f / %.3f / %.3f", v[int((NR+3)/4)], v[int((NR+1)/2)], v[int((3*NR+3)/4)]}'; }
# paired A B: the change of each loaded run against the alone run of its own round, %.
paired() { paste -d' ' "$1" "$2" | awk '{printf "%.2f\n", ($5 / $1 - 1) * 100}'; }

# Part 0: the listener's CPU per request, route by route, the daemon idle with an update
# on offer (COST_N requests back to back per route and binary; 0 skips it).
COST_N=${COST_N:-3000}
if [ "$COST_N" != 0 ]; then
  echo "admin-api thread CPU per request, µs (median of 3 x $COST_N back to back, daemon idle):"
  printf '  %-22s' route
  for b in $BINS; do printf '%10s' "${b%%=*}"; done
  echo
  for r in /api/agent/progress /api/update/check /api/update/history /api/agent/status /api/license/info /; do
    printf '  %-22s' "$r"
    for b in $BINS; do
      ABIN=${b#*=}
      box "$W/small.zip" "" --quiet --update "2.0.0=$W/full.zip"
      for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/api/update/check" | grep -q '"updateAvailable":true' && break; sleep 0.05; done
      for _ in 1 2 3; do
        ADMIN_PATHS=$r "${ON0[@]}" nice -n "$CLIENT_NICE" python3 "$LOADPY" "$PORT" "$COST_N" 0 "$AGENT" |
          awk -v n="$COST_N" '{printf "%.1f\n", $4 * 1000 / n}'
      done | med | xargs printf '%10s'
      stop_all
    done
    echo
  done
fi

# Baseline first (two runs, the first binary), to pace the load over the update's own time.
ABIN=${BINS%% *}
ABIN=${ABIN#*=}
[ "$RUNS" = 0 ] && [ "$TELE_SECS" = 0 ] && exit 0
SPAN=1
if [ "$RUNS" != 0 ] || [ -z "${TELE_RATE:-}" ]; then
  apply "" >/dev/null
  apply "" >>"$W/pace.raw"
  apply "" >>"$W/pace.raw"
  SPAN=$(col 1 "$W/pace.raw" | med)
  row "baseline apply time for pacing" "${SPAN} s (1,000 requests over it: $(awk -v s="$SPAN" 'BEGIN{printf "%.0f", 1000/s}') req/s)"
fi
: >"$W/loadavg"
# Each round runs every binary's four cases (alone, paced, back to back, the control),
# their order rotated round by round so that no case always comes first.
for k in $(seq "$RUNS"); do
  for b in $BINS; do
    ABIN=${b#*=}
    l=${b%%=*}
    for j in 0 1 2 3; do
      case $(((j + k) % 4)) in
        0) apply "" >>"$W/$l.none.raw" ;;
        1) apply "$SPAN" >>"$W/$l.paced.raw" ;;
        2) apply 0 >>"$W/$l.b2b.raw" ;;
        3) apply "x$SPAN" >>"$W/$l.ctl.raw" ;;
      esac
    done
  done
  cut -d' ' -f1 /proc/loadavg >>"$W/loadavg"
done
if [ "$RUNS" != 0 ]; then
row "load average (1 min) after each round" "$(tr '\n' ' ' <"$W/loadavg")"
for b in $BINS; do
  l=${b%%=*}
  echo "== $l (${b#*=})"
  N=$W/$l.none.raw
  row "full 50 MB apply, alone" "$(col 1 "$N" | best) / $(col 1 "$N" | med) s (best / median of $(wc -l <"$N"); HTTP $(col 2 "$N" | sort -u | tr '\n' ' '))"
  row "  quartiles" "$(col 1 "$N" | quart) s"
  row "  CPU during it: daemon, simulator (median)" "$(col 3 "$N" | med | cut -d. -f1) ms, $(col 4 "$N" | med | cut -d. -f1) ms"
  for c in paced b2b ctl; do
    R=$W/$l.$c.raw
    case $c in
      paced) what="1,000 requests paced over the update";;
      b2b) what="1,000 requests back to back";;
      ctl) what="control: paced, to ANOTHER daemon's API";;
    esac
    row "same, $what" "$(col 1 "$R" | best) / $(col 1 "$R" | med) s (HTTP $(col 2 "$R" | sort -u | tr '\n' ' '))"
    row "  quartiles" "$(col 1 "$R" | quart) s"
    row "  change (best; median)" "$(awk -v a="$(col 1 "$N" | best)" -v b="$(col 1 "$R" | best)" -v m="$(col 1 "$N" | med)" -v n="$(col 1 "$R" | med)" 'BEGIN{printf "%+.1f %%; %+.1f %%", (b-a)/a*100, (n-m)/m*100}')"
    row "  change paired by round: p25 / median / p75" "$(paired "$N" "$R" | quart) %"
    row "  CPU during it: daemon, simulator (median)" "$(col 3 "$R" | med | cut -d. -f1) ms, $(col 4 "$R" | med | cut -d. -f1) ms"
    row "  client: wall s (median), errors (sum)" "$(col 7 "$R" | med) s, $(awk '{s+=$6} END{print s}' "$R")"
    row "  admin-api thread CPU for 1,000 (median, min-max)" "$(col 8 "$R" | med) ms ($(col 8 "$R" | sort -g | sed -n '1p;$p' | tr '\n' ' ')ms)"
    row "  the client process's own CPU (median)" "$(col 9 "$R" | med) ms"
    row "  request latency ms: median, p99, max (medians)" "$(col 10 "$R" | med), $(col 11 "$R" | med), $(col 12 "$R" | med) (worst max $(col 12 "$R" | sort -g | tail -1))"
  done
done
echo "raw (s code daemon_cpu_ms sim_cpu_ms | n errors wall listener_cpu_ms client_cpu_ms lat_med lat_p99 lat_max):"
for b in $BINS; do
  l=${b%%=*}
  for c in none paced b2b ctl; do sed "s/^/  $l $c /" "$W/$l.$c.raw"; done
done
fi
ABIN=${BINS%% *}
ABIN=${ABIN#*=}
[ "$TELE_SECS" = 0 ] && exit 0

# Telemetry lateness. TELE_RATE: the loaded runs' requests per second (default the paced
# rate of part 1, 1,000 per baseline apply; the page asks for the progress once a second
# during an update, for the rest every 15 s).
TELE_RATE=${TELE_RATE:-$(awk -v s="$SPAN" 'BEGIN{printf "%d", 1000/s}')}
# ksoftirqd_ms: the CPU of the kernel's softirq threads so far (loopback TCP work the
# scheduler gives them when it piles up: no nice applies to it).
ksoftirqd_ms() {
  local p t=0
  for p in /proc/[0-9]*; do
    case $(cat "$p/comm" 2>/dev/null) in ksoftirqd/*) t=$((t + $(pcpu "${p#/proc/}"))) ;; esac
  done
  echo "$t"
}
tele() {
  local loaded=$1
  box "$W/small.zip" ', "telemetry": {"interval": 1}' --telemetry-log "$W/tele.log"
  sleep 2
  local start
  start=$(python3 -c 'import time; print(f"{time.monotonic():.6f}")')
  local d0 k0 s0
  d0=$(cat /proc/"$AGENT"/task/"$AGENT"/schedstat)
  k0=$(ksoftirqd_ms)
  s0=$(pcpu "$SRV")
  if [ "$loaded" = 1 ]; then
    "${ON0[@]}" nice -n "$CLIENT_NICE" python3 "$LOADPY" "$PORT" "$(awk -v t="$TELE_SECS" -v r="$TELE_RATE" 'BEGIN{printf "%d", t*r}')" \
      "$TELE_SECS" "$AGENT" >>"$W/tele-load.out" &
    LOAD=$!
  fi
  sleep "$TELE_SECS"
  if [ -n "$LOAD" ]; then wait "$LOAD" 2>/dev/null || true; LOAD=; fi
  local end
  end=$(python3 -c 'import time; print(f"{time.monotonic():.6f}")')
  # The loop thread's (tid = pid) CPU and run-queue wait, the kernel's softirq threads'
  # and the simulator's CPU over the window.
  echo "$d0 $(cat /proc/"$AGENT"/task/"$AGENT"/schedstat) $k0 $(ksoftirqd_ms) $s0 $(pcpu "$SRV")" |
    awk '{printf "%.1f %.1f %d %d\n", ($4-$1)/1e6, ($5-$2)/1e6, $8-$7, $10-$9}' >>"$W/diag.$loaded"
  stop_all
  awk -v s="$start" -v e="$end" '$3 == "POST" && $4 ~ /telemetry/ && $1 >= s && $1 <= e {print $1}' "$W/stamps" |
    awk 'NR > 1 {g = ($1 - p) * 1000 - 1000; print g} {p = $1}' >"$W/gaps.$loaded"
  # the posts themselves, for the count
  awk -v s="$start" -v e="$end" '$3 == "POST" && $4 ~ /telemetry/ && $1 >= s && $1 <= e' "$W/stamps" | wc -l >"$W/posts.$loaded"
}
TELE_RUNS=${TELE_RUNS:-2}
for b in $BINS; do
  l=${b%%=*}
  : >"$W/$l.tele-load.out"
  for x in 0 1; do : >"$W/$l.all.$x"; : >"$W/$l.diag.$x"; done
done
# Idle and loaded in turn, every binary, TELE_RUNS times.
for _ in $(seq "$TELE_RUNS"); do
  for b in $BINS; do
    ABIN=${b#*=}
    l=${b%%=*}
    for x in 0 1; do
      : >"$W/diag.$x"
      : >"$W/tele-load.out"
      tele $x
      cat "$W/gaps.$x" >>"$W/$l.all.$x"
      cat "$W/diag.$x" >>"$W/$l.diag.$x"
      cat "$W/tele-load.out" >>"$W/$l.tele-load.out"
    done
  done
done
echo "telemetry every 1 s, $TELE_RUNS x $TELE_SECS s idle and loaded at $TELE_RATE req/s, in turn:"
for b in $BINS; do
  l=${b%%=*}
  echo "== $l"
  for x in 0 1; do
    case $x in 0) what="API idle";; 1) what="API loaded";; esac
    A=$W/$l.all.$x
    row "  $what: post gap - 1 s" "median $(med <"$A") ms, max $(sort -g "$A" | tail -1) ms, $(awk '$1 > 10' "$A" | wc -l) of $(wc -l <"$A") gaps > 10 ms late"
    echo "    gaps > 5 ms: $(awk '$1 > 5 {printf "%.1f ", $1}' "$A")"
    row "    loop thread CPU, run-queue wait (ms per run)" "$(awk '{printf "%s/%s ", $1, $2}' "$W/$l.diag.$x")"
    row "    ksoftirqd, simulator CPU (ms per run)" "$(awk '{printf "%s/%s ", $3, $4}' "$W/$l.diag.$x")"
  done
  row "  API requests meanwhile" "$(awk '{n+=$1; e+=$2; c+=$4} END{printf "%d (errors %d), admin-api CPU %.0f ms", n, e, c}' "$W/$l.tele-load.out")"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
