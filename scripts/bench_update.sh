#!/usr/bin/env bash
# Update engine benchmarks (issue 4). Prints numbers; asserts nothing.
#   - peak RSS of `update` (GNU time -v) on incompressible packages (default 5 and 50 MB)
#   - download time of the agent vs curl: same URL, same simulator (cybersensei-sim,
#     release build, HTTPS with its throwaway CA), best and median of $RUNS runs each
#   - `install ZIP` vs `unzip -q` of the same file
#   - the whole `update` (check, download, verify, extract, fsyncs, switch, commit)
#     against `curl` followed by `unzip -q` of the same URL (issue 14: target <= 1.0x)
#   - a content package of 1 MB onto a 50 MB installation (copy of the active slot +
#     extraction + syncfs + switch) against `cp -a` of that installation (target
#     <= 0.5 s and <= 2x cp -a)
#   - peak RSS of the static musl build (board/build.sh x86_64-unknown-linux-musl,
#     when present in target/board/) during the update of the largest size
# The agent's time is its own log line ("downloaded ... in X s": request, body, digest,
# fsync, rename), on the connection the update check opened; curl's is time_total
# (connect + TLS handshake + transfer) and, stricter, time_total - time_appconnect.
# Usage: scripts/bench_update.sh [sizes in MB...]   RUNS=5 scripts/bench_update.sh 50
set -euo pipefail
[ -n "${BENCH_DEBUG:-}" ] && set -x
cd "$(dirname "$0")/.."
SIZES=("$@")
[ $# -eq 0 ] && SIZES=(5 50)
RUNS=${RUNS:-3}
cargo build --release -q -p cybersensei-agent -p cybersensei-sim
source scripts/cargo-target-dir.sh
TARGET_DIR=$(cargo_target_dir)
BIN=$TARGET_DIR/release/cybersensei-agent
SIMBIN=$TARGET_DIR/release/cybersensei-sim
W=$(mktemp -d)
SRV=
stop_sim() { if [ -n "$SRV" ]; then kill "$SRV" 2>/dev/null || true; wait "$SRV" 2>/dev/null || true; SRV=; fi; }
trap 'stop_sim; rm -rf "$W"' EXIT
echo KEY-BENCH > "$W/key"

start_sim() { # serves $W/pkg.zip as version 2.0.0; sets URL and ID
  stop_sim
  "$SIMBIN" --tls --quiet --ca-out "$W/ca.pem" --license-key KEY-BENCH \
    --update "2.0.0=$W/pkg.zip" >"$W/sim.out" 2>"$W/sim.err" &
  SRV=$!
  for _ in $(seq 100); do grep -q '^URL ' "$W/sim.out" 2>/dev/null && break; sleep 0.05; done
  URL=$(awk '/^URL / {print $2}' "$W/sim.out")
  ID=$(grep -o 'published as [^ ]*' "$W/sim.err" | awk '{print $3}')
  if [ -z "$URL" ] || [ -z "$ID" ]; then cat "$W/sim.err"; exit 1; fi
}
mkbox() {
  rm -rf "$W/box"; mkdir -p "$W/box"
  cat > "$W/box/agent.json" <<JSON
{"backend": {"url": "$URL", "timeout": 30, "retry_attempts": 1,
             "retry_delay": 0, "ca_file": "$W/ca.pem"},
 "license": {"key_file": "$W/key"}, "install": {"root": "$W/box/opt"},
 "state_dir": "$W/box/state", "log": {"level": "debug"}}
JSON
}
secs() { date +%s.%N; }
# best and median of numbers on stdin
stats() { sort -g | awk '{v[NR]=$1} END {printf "%.3f %.3f\n", v[1], v[int((NR+1)/2)]}'; }
row() { printf '%-6s %-34s %s\n' "$1" "$2" "$3"; }

row size measure value
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
  start_sim
  : >"$W/agent.t"; : >"$W/curl.t"; : >"$W/curlx.t"; : >"$W/whole.t"; : >"$W/cu.t"
  for r in $(seq "$RUNS"); do
    mkbox
    t0=$(secs)
    /usr/bin/time -v "$BIN" -c "$W/box/agent.json" update >"$W/out" 2>"$W/err" \
      || { echo "update failed:"; cat "$W/err"; exit 1; }
    t1=$(secs)
    awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f\n", b-a}' >>"$W/whole.t"
    rm -rf "$W/unz"
    t0=$(secs)
    curl -s --cacert "$W/ca.pem" -o "$W/cu.zip" "$URL/update/download/$ID"
    unzip -q "$W/cu.zip" -d "$W/unz"
    t1=$(secs)
    awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f\n", b-a}' >>"$W/cu.t"
    [ "$r" = 1 ] && row "${MB}MB" "update peak RSS" \
      "$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$W/err") KiB"
    grep -o "downloaded $ID .* in [0-9.]* s" "$W/err" | awk '{print $(NF-1)}' >>"$W/agent.t"
    curl -s --cacert "$W/ca.pem" -o "$W/curl.bin" \
      -w '%{time_total} %{time_appconnect}\n' "$URL/update/download/$ID" >"$W/c"
    awk '{print $1}' "$W/c" >>"$W/curl.t"; awk '{print $1-$2}' "$W/c" >>"$W/curlx.t"
    cmp -s "$W/curl.bin" "$W/pkg.zip" || echo "curl download differs!"
  done
  read -r ab am < <(stats <"$W/agent.t")
  read -r cb cm < <(stats <"$W/curl.t")
  read -r xb xm < <(stats <"$W/curlx.t")
  row "${MB}MB" "agent download (best / median)" "$ab / $am s"
  row "${MB}MB" "curl time_total (best / median)" "$cb / $cm s"
  row "${MB}MB" "curl minus handshake (best / med)" "$xb / $xm s"
  row "${MB}MB" "ratio agent/curl (best, median)" \
    "$(awk -v a="$ab" -v b="$cb" -v c="$am" -v d="$cm" 'BEGIN{printf "%.2fx, %.2fx", a/b, c/d}')"
  read -r wb wm < <(stats <"$W/whole.t")
  read -r ub um < <(stats <"$W/cu.t")
  row "${MB}MB" "whole update (best / median)" "$wb / $wm s"
  row "${MB}MB" "curl + unzip -q (best / median)" "$ub / $um s"
  row "${MB}MB" "ratio update/(curl+unzip) (b, m)" \
    "$(awk -v a="$wb" -v b="$ub" -v c="$wm" -v d="$um" 'BEGIN{printf "%.2fx, %.2fx", a/b, c/d}')"
  MUSL=target/board/x86_64-unknown-linux-musl/cybersensei-agent
  if [ -x "$MUSL" ]; then
    mkbox
    /usr/bin/time -v "$MUSL" -c "$W/box/agent.json" update >"$W/out" 2>"$W/err" \
      || { echo "musl update failed:"; cat "$W/err"; exit 1; }
    row "${MB}MB" "update peak RSS, static musl" \
      "$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$W/err") KiB"
  else
    row "${MB}MB" "update peak RSS, static musl" "- (board/build.sh x86_64-unknown-linux-musl)"
  fi
  # install vs unzip (same file, warm cache)
  mkbox
  t0=$(secs); /usr/bin/time -v "$BIN" -c "$W/box/agent.json" install "$W/pkg.zip" >"$W/out" 2>"$W/err"; t1=$(secs)
  row "${MB}MB" "install ZIP" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}') s"
  row "${MB}MB" "install peak RSS" "$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$W/err") KiB"
  rm -rf "$W/unz"; t0=$(secs); unzip -q "$W/pkg.zip" -d "$W/unz"; t1=$(secs)
  row "${MB}MB" "unzip -q" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}') s"
done

# Content package: 1 MB (version.json + exercises) onto a 50 MB installation of 200
# files; the installation is put in place by a full `install` first (not timed).
python3 - "$W/full.zip" "$W/content.zip" <<'PY'
import zipfile, os, sys, json
with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_STORED) as z:
    z.writestr('VERSION', '1.0.0\n')
    for i in range(200):
        z.writestr(f'app/part{i:03}.bin', os.urandom(256 << 10))
with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('version.json', json.dumps({"version": "1.1.0", "changelog": "bench",
               "requiredNodeVersion": "1.0.0"}, indent=2))
    z.writestr('exercises.json', os.urandom(1 << 20).hex()[: 1 << 20])
PY
: >"$W/content.t"; : >"$W/cp.t"; : >"$W/cps.t"
for r in $(seq "$RUNS"); do
  mkbox
  "$BIN" -c "$W/box/agent.json" install "$W/full.zip" >/dev/null 2>"$W/err" \
    || { echo "full install failed:"; cat "$W/err"; exit 1; }
  sync
  t0=$(secs)
  "$BIN" -c "$W/box/agent.json" install "$W/content.zip" >/dev/null 2>"$W/err" \
    || { echo "content install failed:"; cat "$W/err"; exit 1; }
  t1=$(secs)
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f\n", b-a}' >>"$W/content.t"
  rm -rf "$W/cpa"; sync
  t0=$(secs); cp -a "$W/box/opt/slots/a" "$W/cpa"; t1=$(secs); sync; t2=$(secs)
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f\n", b-a}' >>"$W/cp.t"
  awk -v a="$t0" -v b="$t2" 'BEGIN{printf "%.4f\n", b-a}' >>"$W/cps.t"
done
read -r kb km < <(stats <"$W/content.t")
read -r pb pm < <(stats <"$W/cp.t")
row content "1 MB onto 50 MB: install (b / m)" "$kb / $km s"
row content "cp -a of the 50 MB slot (b / m)" "$pb / $pm s"
read -r sb sm < <(stats <"$W/cps.t")
row content "cp -a + sync (durable, as the agent)" "$sb / $sm s"
row content "ratio install/(cp -a + sync) (b, m)" \
  "$(awk -v a="$kb" -v b="$sb" -v c="$km" -v d="$sm" 'BEGIN{printf "%.2fx, %.2fx", a/b, c/d}')"
row content "ratio install/cp -a (b, m)" \
  "$(awk -v a="$kb" -v b="$pb" -v c="$km" -v d="$pm" 'BEGIN{printf "%.2fx, %.2fx", a/b, c/d}')"

