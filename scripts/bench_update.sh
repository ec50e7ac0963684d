#!/usr/bin/env bash
# Update engine benchmarks (issue 4). Prints numbers; asserts nothing.
#   - peak RSS of `update` (GNU time -v) on 5 MB and 50 MB incompressible packages
#   - download time of the agent vs curl, same URL, same TLS server
#   - `install ZIP` vs `unzip -q` of the same file
# The backend is a small TLS server (Python, self-signed cert for 127.0.0.1) that
# speaks the check/download routes with Range support, until the simulator crate
# grows a standalone binary.
# Usage: scripts/bench_update.sh [sizes in MB...]   (default: 5 50)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("${@:-5 50}")
[ $# -eq 0 ] && SIZES=(5 50)
cargo build --release -q
BIN=$PWD/target/release/cybersensei-agent
W=$(mktemp -d)
trap 'kill $SRV 2>/dev/null || true; rm -rf "$W"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$W/key.pem" -out "$W/cert.pem" -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE 2>/dev/null
cat > "$W/server.py" <<'PY'
import http.server, ssl, sys, json, hashlib, os
PKG = {}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a): pass
    def js(self, o):
        b = json.dumps(o).encode()
        self.send_response(200); self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)
    def do_GET(self):
        path = os.environ['PKG_FILE']
        if self.path.startswith('/api/license/validate'):
            return self.js({"valid": True, "tenantId": "t-1", "tenantName": "Bench",
                            "expiresAt": "2099-12-31T23:59:59.000Z"})
        if self.path.startswith('/update/check'):
            data = open(path, 'rb').read()
            return self.js({"updateAvailable": True, "currentVersion": "0.0.0",
                            "latestVersion": "2.0.0", "updateId": "bench", "changelog": "bench",
                            "fileSize": len(data), "checksum": "sha256:" + hashlib.sha256(data).hexdigest()})
        if self.path.startswith('/update/download/'):
            size = os.path.getsize(path)
            self.send_response(200); self.send_header('Content-Type', 'application/zip')
            self.send_header('Content-Length', str(size)); self.end_headers()
            with open(path, 'rb') as f:
                while True:
                    b = f.read(256 * 1024)
                    if not b: break
                    self.wfile.write(b)
            return
        self.send_response(404); self.send_header('Content-Length', '0'); self.end_headers()
srv = http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[2], sys.argv[3])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
PORT=$((20000 + RANDOM % 20000))
ln -sf "$W/pkg.zip" "$W/current.zip"
PKG_FILE="$W/current.zip" python3 "$W/server.py" $PORT "$W/cert.pem" "$W/key.pem" &
SRV=$!
sleep 1
echo KEY-BENCH > "$W/key"
mkbox() {
  rm -rf "$W/box"; mkdir -p "$W/box"
  cat > "$W/box/agent.json" <<JSON
{"backend": {"url": "https://127.0.0.1:$PORT", "timeout": 30, "retry_attempts": 1,
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
  # update: peak RSS and the agent's own download time (logged)
  mkbox
  /usr/bin/time -v "$BIN" -c "$W/box/agent.json" update >"$W/out" 2>"$W/err"
  rss=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$W/err")
  dl=$(grep -o "downloaded bench .* in [0-9.]* s" "$W/err" | awk "{print \$(NF-1)}" || true)
  printf '%-8s %-28s %7s KiB\n' "${MB}MB" "update peak RSS" "$rss"
  printf '%-8s %-28s %9s s\n' "${MB}MB" "agent download" "$dl"
  t0=$(secs); curl -s --cacert "$W/cert.pem" -o "$W/curl.bin" "https://127.0.0.1:$PORT/update/download/bench"; t1=$(secs)
  printf '%-8s %-28s %9s s\n' "${MB}MB" "curl download" "$(awk -v a=$t0 -v b=$t1 'BEGIN{printf "%.3f", b-a}')"
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
