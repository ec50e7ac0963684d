#!/usr/bin/env bash
# Admin API benchmarks (issue 22). Prints numbers; asserts nothing.
#   - `POST /api/update/apply` of a content package (1 MB onto a 50 MB installation of
#     200 files) through the daemon: the time until its answer (after the commit), to
#     compare with the dashboard's 30 s give-up (and the API's own 25 s answer limit)
#   - the same for a full 50 MB package, alone and while 1,000 curl processes send requests
#     to the API (this measures process spawning; scripts/bench_admin_load.sh measures
#     the listener with one client)
# The services commands are empty (no services to stop, start or health-check): on a
# box, `services.health` with its `health_timeout` adds its own time to every apply.
# Usage: scripts/bench_admin.sh        RUNS=3 (runs of each case)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
cargo build --release -q -p cybersensei-agent -p cybersensei-sim
source scripts/cargo-target-dir.sh
TD=$(cargo_target_dir)
BIN=$TD/release/cybersensei-agent
SIMBIN=$TD/release/cybersensei-sim
W=$(mktemp -d)
SRV=
AGENT=
LOAD=
cleanup() {
  [ -n "$LOAD" ] && kill "$LOAD" 2>/dev/null || true
  [ -n "$AGENT" ] && kill "$AGENT" 2>/dev/null || true
  [ -n "$SRV" ] && kill "$SRV" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
echo KEY-BENCH >"$W/key"
chmod 600 "$W/key"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

python3 - "$W" <<'PY'
import zipfile, os, sys, json
w = sys.argv[1]
with zipfile.ZipFile(f'{w}/base.zip', 'w', zipfile.ZIP_STORED) as z:
    z.writestr('VERSION', '1.0.0\n')
    for i in range(200):
        z.writestr(f'app/part{i:03}.bin', os.urandom(256 << 10))
with zipfile.ZipFile(f'{w}/content.zip', 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('version.json', json.dumps({"version": "1.1.0", "changelog": "bench",
               "requiredNodeVersion": "1.0.0"}, indent=2))
    z.writestr('exercises.json', os.urandom(1 << 20).hex()[: 1 << 20])
with zipfile.ZipFile(f'{w}/full.zip', 'w', zipfile.ZIP_STORED) as z:
    z.writestr('VERSION', '2.0.0\n')
    for i in range(7):
        z.writestr(f'app/blob{i}.bin', os.urandom((50 << 20) // 7))
PY

# apply PKG VERSION LOADED: one apply through the API; prints "seconds http_code late".
apply() {
  local pkg=$1 version=$2 loaded=$3
  [ -n "$SRV" ] && { kill "$SRV" 2>/dev/null || true; wait "$SRV" 2>/dev/null || true; }
  "$SIMBIN" --tls --quiet --ca-out "$W/ca.pem" --license-key KEY-BENCH \
    --update "$version=$pkg" >"$W/sim.out" 2>"$W/sim.err" &
  SRV=$!
  for _ in $(seq 100); do grep -q '^URL ' "$W/sim.out" 2>/dev/null && break; sleep 0.05; done
  local url id
  url=$(awk '/^URL / {print $2}' "$W/sim.out")
  id=$(grep -o 'published as [^ ]*' "$W/sim.err" | awk '{print $3}')
  rm -rf "$W/box"
  mkdir -p "$W/box"
  cat >"$W/box/agent.json" <<JSON
{"backend": {"url": "$url", "retry_attempts": 1, "retry_delay": 0, "ca_file": "$W/ca.pem"},
 "license": {"key_file": "$W/key"}, "install": {"root": "$W/box/opt"},
 "schedule": {"splay": false, "jitter_percent": 0},
 "state_dir": "$W/box/state", "log": {"file": "$W/box/agent.log", "level": "info"},
 "admin_api": {"listen": "127.0.0.1:$PORT", "auth": "none"}}
JSON
  "$BIN" -c "$W/box/agent.json" install "$W/base.zip" >/dev/null 2>&1
  "$BIN" -c "$W/box/agent.json" run 2>/dev/null &
  AGENT=$!
  for _ in $(seq 200); do
    curl -s "http://127.0.0.1:$PORT/api/update/check" 2>/dev/null | grep -q '"updateAvailable":true' && break
    sleep 0.05
  done
  if [ "$loaded" = 1 ]; then
    (for _ in $(seq 200); do for p in / /api/agent/progress /api/update/check /api/update/history /api/agent/status; do
      curl -s -o /dev/null "http://127.0.0.1:$PORT$p"; done; done) &
    LOAD=$!
  fi
  local t0 t1 code
  t0=$(date +%s.%N)
  code=$(curl -s -o "$W/answer" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    -d "{\"updateId\": \"$id\"}" "http://127.0.0.1:$PORT/api/update/apply")
  t1=$(date +%s.%N)
  if [ -n "$LOAD" ]; then wait "$LOAD" 2>/dev/null || true; LOAD=; fi
  kill "$AGENT" 2>/dev/null || true
  wait "$AGENT" 2>/dev/null || true
  AGENT=
  awk -v a="$t0" -v b="$t1" -v c="$code" 'BEGIN{printf "%.3f %s\n", b-a, c}'
}

row() { printf '%-44s %s\n' "$1" "$2"; }
stats() { sort -g | awk '{v[NR]=$1} END {printf "%.3f / %.3f s", v[1], v[int((NR+1)/2)]}'; }
: >"$W/c.t"; : >"$W/f.t"; : >"$W/l.t"
for _ in $(seq "$RUNS"); do
  apply "$W/content.zip" 1.1.0 0 | tee -a "$W/c.raw" | awk '{print $1}' >>"$W/c.t"
  apply "$W/full.zip" 2.0.0 0 | tee -a "$W/f.raw" | awk '{print $1}' >>"$W/f.t"
  apply "$W/full.zip" 2.0.0 1 | tee -a "$W/l.raw" | awk '{print $1}' >>"$W/l.t"
done >/dev/null
row "content 1 MB onto 50 MB, apply answered" "$(stats <"$W/c.t") (best / median; HTTP $(awk '{print $2}' "$W/c.raw" | sort -u | tr '\n' ' '))"
row "full 50 MB, apply answered" "$(stats <"$W/f.t") (HTTP $(awk '{print $2}' "$W/f.raw" | sort -u | tr '\n' ' '))"
row "full 50 MB, with 1,000 API requests meanwhile" "$(stats <"$W/l.t") (HTTP $(awk '{print $2}' "$W/l.raw" | sort -u | tr '\n' ' '))"
row "change with the requests (medians)" "$(paste <(sort -g "$W/f.t") <(sort -g "$W/l.t") | awk '{a[NR]=$1; b[NR]=$2} END {m=int((NR+1)/2); printf "%+.1f %%", (b[m]-a[m])/a[m]*100}')"
