#!/usr/bin/env bash
# Update engine benchmarks (issue 4). Prints numbers; asserts nothing.
#   - peak RSS of `update` (GNU time -v) on 5 MB and 50 MB incompressible packages
#   - download time of the agent vs curl, same URL, same TLS server
#   - `install ZIP` vs `unzip -q` of the same file
# The backend is the bundled simulator (tests/sim) over TLS with its throwaway CA;
# curl fetches the same download URL from the same simulator.
# Usage: scripts/bench_update.sh [sizes in MB...]   (default: 5 50)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("${@:-5 50}")
[ $# -eq 0 ] && SIZES=(5 50)
cargo build --release -q -p cybersensei-agent -p cybersensei-sim
BIN=$PWD/target/release/cybersensei-agent
SIM_BIN=$PWD/target/release/cybersensei-sim
W=$(mktemp -d)
SRV=
trap 'kill $SRV 2>/dev/null || true; rm -rf "$W"' EXIT
echo KEY-BENCH > "$W/key"
start_sim() { # start_sim ZIP: (re)starts the simulator publishing ZIP as 2.0.0
  [ -n "$SRV" ] && { kill "$SRV" 2>/dev/null || true; wait "$SRV" 2>/dev/null || true; }
  "$SIM_BIN" --tls --port 0 --ca-out "$W/cert.pem" --license "KEY-BENCH=valid" \
    --update "2.0.0=$1" >"$W/sim.out" 2>"$W/sim.err" &
  SRV=$!
  for _ in $(seq 100); do grep -q '^URL ' "$W/sim.out" 2>/dev/null && break; sleep 0.1; done
  URL=$(sed -n 's/^URL //p' "$W/sim.out" | head -1)
  [ -n "$URL" ] || { echo "simulator did not start"; cat "$W/sim.err"; exit 1; }
}
mkbox() {
  rm -rf "$W/box"; mkdir -p "$W/box"
  cat > "$W/box/agent.json" <<JSON
{"backend": {"url": "$URL", "timeout": 30, "retry_attempts": 1,
             "retry_delay": 0, "ca_file": "$W/cert.pem"},
 "license": {"key_file": "$W/key"}, "install": {"root": "$W/box/opt"},
 "state_dir": "$W/box/state", "log": {"level": "debug"}}
JSON
}
secs() { date +%s.%N; }
printf '%-8s %-28s %10s\n' size measure value
for MB in "${SIZES[@]}"; do
  python3 - "$W/pkg.zip" "$MB" <<'PY'
import zipfile, os, sys
with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_STORED) as z:
    z.writestr('VERSION', '2.0.0\n')
    left = int(sys.argv[2]) << 20
    i = 0
    while left > 0:
        n = min(left, 8 << 20)
        z.writestr(f'app/blob{i}.bin', os.urandom(n)); left -= n; i += 1
PY
  start_sim "$W/pkg.zip"
  # update: peak RSS and the agent's own download time (logged)
  mkbox
  /usr/bin/time -v "$BIN" -c "$W/box/agent.json" update >"$W/out" 2>"$W/err"
  rss=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$W/err")
  dl=$(grep -o "downloaded [^ ]* .* in [0-9.]* s" "$W/err" | awk "{print \$(NF-1)}" || true)
  printf '%-8s %-28s %7s KiB\n' "${MB}MB" "update peak RSS" "$rss"
  printf '%-8s %-28s %9s s\n' "${MB}MB" "agent download" "$dl"
  id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["update"]["updateId"])' "$W/box/state/status.json")
  t0=$(secs); curl -s --cacert "$W/cert.pem" -o "$W/curl.bin" "$URL/update/download/$id"; t1=$(secs)
  printf '%-8s %-28s %9s s\n' "${MB}MB" "curl download" "$(awk -v a=$t0 -v b=$t1 'BEGIN{printf "%.3f", b-a}')"
  # The agent fsyncs the package before using it (crash safety); curl does not.
  rm -f "$W/curl.bin"
  t0=$(secs); curl -s --cacert "$W/cert.pem" -o "$W/curl.bin" "$URL/update/download/$id"; sync "$W/curl.bin"; t1=$(secs)
  printf '%-8s %-28s %9s s\n' "${MB}MB" "curl download + fsync" "$(awk -v a=$t0 -v b=$t1 'BEGIN{printf "%.3f", b-a}')"
  cmp -s "$W/curl.bin" "$W/pkg.zip" || echo "curl download differs!"
  # install vs unzip (same file, warm cache)
  mkbox
  t0=$(secs); /usr/bin/time -v "$BIN" -c "$W/box/agent.json" install "$W/pkg.zip" >"$W/out" 2>"$W/err"; t1=$(secs)
  rss=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$W/err")
  printf '%-8s %-28s %9s s\n' "${MB}MB" "install ZIP" "$(awk -v a=$t0 -v b=$t1 'BEGIN{printf "%.3f", b-a}')"
  printf '%-8s %-28s %7s KiB\n' "${MB}MB" "install peak RSS" "$rss"
  rm -rf "$W/unz"; t0=$(secs); unzip -q "$W/pkg.zip" -d "$W/unz"; t1=$(secs)
  printf '%-8s %-28s %9s s\n' "${MB}MB" "unzip -q" "$(awk -v a=$t0 -v b=$t1 'BEGIN{printf "%.3f", b-a}')"
done
