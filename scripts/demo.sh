#!/usr/bin/env bash
# The agent's main job against the bundled backend simulator playing the real central
# backend (profile central, docs/protocol.md), over TLS on loopback:
# validate the license, check for an update, install it, send telemetry, show status.
# Everything lives in a temporary directory; the simulator stops when the demo ends.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p cybersensei-agent -p cybersensei-sim
# Ask cargo where the binaries are (CARGO_TARGET_DIR, .cargo/config.toml).
source scripts/cargo-target-dir.sh
TARGET_DIR=$(cargo_target_dir)
AGENT=$TARGET_DIR/debug/cybersensei-agent
SIM=$TARGET_DIR/debug/cybersensei-sim
work=$(mktemp -d)
sim_pid=
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

KEY='DEMO-A1B2C3D4+E5F6/G7H8='
# A package: the ZIP's root is the slot's root.
mkdir -p "$work/pkg/app" "$work/pkg/bin"
echo "CyberSensei application 1.2.0" > "$work/pkg/app/README"
printf '#!/bin/sh\necho healthy\n' > "$work/pkg/bin/health"; chmod +x "$work/pkg/bin/health"
echo "1.2.0" > "$work/pkg/VERSION"
# The real backend refuses packages without version.json (docs/protocol.md §3); a
# complete installation says `kind: full` (without it, it would be a content package).
printf '{"version": "1.2.0", "kind": "full", "changelog": "- Correctifs de sécurité", "requiredNodeVersion": "0.0.0"}\n' \
  > "$work/pkg/version.json"
(cd "$work/pkg" && python3 - <<'PY'
import zipfile, os
with zipfile.ZipFile("../update-1.2.0.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for root, _, files in os.walk("."):
        for f in files:
            p = os.path.join(root, f)[2:]
            info = zipfile.ZipInfo(p); info.external_attr = (os.stat(p).st_mode & 0o777) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, open(p, "rb").read())
PY
)

"$SIM" --profile central --tls --port 0 --ca-out "$work/ca.pem" --license "$KEY=valid" \
  --update "1.2.0=$work/update-1.2.0.zip" --changelog "- Correctifs de sécurité" \
  --telemetry-log "$work/telemetry.jsonl" > "$work/sim.out" 2> "$work/sim.err" &
sim_pid=$!
for _ in $(seq 50); do grep -q '^URL ' "$work/sim.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^URL //p' "$work/sim.out" | head -1)
[ -n "$URL" ] || { echo "simulator did not start"; cat "$work/sim.err"; exit 1; }

printf '%s\n' "$KEY" > "$work/license.key"; chmod 600 "$work/license.key"
cat > "$work/agent.json" <<JSON
{
  "backend": {"url": "$URL", "timeout": 10, "retry_attempts": 3, "retry_delay": 1,
              "ca_file": "$work/ca.pem"},
  "license": {"key_file": "$work/license.key"},
  "telemetry": {"app_metrics_file": "$work/metrics.json"},
  "install": {"root": "$work/opt"},
  "services": {"health": ["$work/opt/current/bin/health"], "health_timeout": 10},
  "state_dir": "$work/state"
}
JSON
echo '{"activeUsers": 3, "exercisesCompletedToday": 12, "aiLatency": 240.5}' > "$work/metrics.json"

run() { echo; echo "\$ cybersensei-agent $*"; "$AGENT" -c "$work/agent.json" "$@"; }
echo "simulator: $URL (TLS, throwaway CA)"
run validate
run check-update
run update
run telemetry --once
run status
echo
echo "telemetry received by the simulator:"
cat "$work/telemetry.jsonl"
