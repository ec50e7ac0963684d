# Sourced by board/qemu-boot.sh and board/power-cut.sh: the arm64 guest both boot.
# Needs CACHE (the download cache both share), W (the work directory), I (the
# initramfs directory, for arm64_initramfs) and log().

# Debian's arm64 kernel and busybox-static, downloaded once into $CACHE and
# extracted; sets KERNEL, KVER and MODDIR.
arm64_kernel() {
  mkdir -p "$CACHE"
  if ! ls "$CACHE"/k/boot/vmlinuz-* >/dev/null 2>&1 || [ ! -x "$CACHE/bb/bin/busybox" ]; then
    dpkg --print-foreign-architectures | grep -x arm64 >/dev/null || { log "needs 'dpkg --add-architecture arm64 && apt-get update' (board/ci-setup.sh does it)"; exit 1; }
    local kpkg
    kpkg=$(apt-cache depends linux-image-cloud-arm64 | awk '/Depends: linux-image/{print $2; exit}')
    (cd "$CACHE" && rm -f ./*.deb && apt-get download "$kpkg" busybox-static:arm64 2>/dev/null)
    rm -rf "$CACHE/k" "$CACHE/bb"
    dpkg-deb -x "$CACHE"/linux-image-*.deb "$CACHE/k"
    dpkg-deb -x "$CACHE"/busybox-static_*.deb "$CACHE/bb"
  fi
  KERNEL=$(ls "$CACHE"/k/boot/vmlinuz-* | head -1)
  KVER=${KERNEL##*/vmlinuz-}
  MODDIR=$CACHE/k/lib/modules/$KVER/kernel/drivers
}

# The initramfs in $I (made anew): BusyBox, the virtio block modules, the simulator
# $1, and the box as the real installer lays it out (SysV flavour) with the agent $2
# and the license key $3 (kept in $W/key).
arm64_initramfs() {
  local sim=$1 agent=$2 key=$3
  mkdir -p "$I"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,data,srv,lib/modules,var/log}
  cp "$CACHE/bb/bin/busybox" "$I/bin/busybox"
  local m
  for m in virtio/virtio_ring virtio/virtio virtio/virtio_mmio block/virtio_blk; do
    cp "$MODDIR/$m.ko" "$I/lib/modules/"
  done
  cp "$sim" "$I/usr/bin/cybersensei-sim"
  printf '%s\n' "$key" >"$W/key"
  DESTDIR=$I AGENT_BIN=$agent INIT=sysv LICENSE_KEY_FILE=$W/key bash board/install.sh >/dev/null
}

# The installed config pointed at the in-guest simulator: updates automatic and
# checked every few seconds, test packages unsigned, everything else as shipped.
# $1: telemetry interval (s); $2 (optional): log level.
arm64_config() {
  python3 - "$I/etc/cybersensei/agent.json" "$1" "${2:-}" <<'PY'
import json, sys
p, interval, level = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = json.load(open(p))
c["backend"].update({"url": "https://127.0.0.1:8443", "ca_file": "/run/sim-ca.pem",
                     "retry_delay": 1, "timeout": 20})
c["updates"].update({"check_interval": 5, "auto_download": True, "auto_install": True,
                   "public_key": None})  # the test packages are unsigned
c["telemetry"]["interval"] = interval
if level:
    c["log"] = {"level": level}
c["services"] = {"health": [["/bin/sh", "-c", "test -x \"$CYBERSENSEI_SLOT_DIR/bin/cybersensei-agent\""]],
                 "health_timeout": 60}
c["schedule"] = {"splay": False}
json.dump(c, open(p, "w"), indent=2)
PY
}
