# Sourced by board/qemu-boot.sh, board/power-cut.sh and board/guest-figures.sh: the
# guests they boot, one per architecture (aarch64, the default, and armv7).
# Needs ROOT (the repository), W (the work directory), I (the initramfs directory,
# for guest_initramfs) and log().

# guest_arch ARCH: sets what differs between the two guests.
#   T        the Rust target of the static agent and simulator
#   DEB_ARCH Debian's architecture of the kernel and busybox-static debs
#   KMETA    the kernel metapackage whose dependency is the kernel deb
#   MODS     the modules to insmod, in order, relative to lib/modules/KVER/kernel
#            (arm64's cloud kernel has ext4 built in; armhf's armmp has it as a module)
#   QEMU     the machine: emulator, board and CPU (TCG)
#   CACHE    where the debs are downloaded and extracted (once)
guest_arch() {
  case "$1" in
    aarch64 | arm64)
      GUEST_ARCH=aarch64 T=aarch64-unknown-linux-musl DEB_ARCH=arm64 KMETA=linux-image-cloud-arm64
      MODS="drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_mmio drivers/block/virtio_blk"
      QEMU="qemu-system-aarch64 -M virt -cpu cortex-a57"
      ;;
    armv7 | armhf)
      # Debian's armmp kernel is not LPAE: keep the machine's RAM and devices low.
      GUEST_ARCH=armv7 T=armv7-unknown-linux-musleabihf DEB_ARCH=armhf KMETA=linux-image-armmp
      MODS="drivers/virtio/virtio_mmio drivers/block/virtio_blk lib/crc16 fs/mbcache fs/jbd2/jbd2 crypto/crc32c_generic fs/ext4/ext4"
      QEMU="qemu-system-arm -M virt,highmem=off -cpu cortex-a15"
      ;;
    *)
      echo "unknown guest architecture '$1' (aarch64 or armv7)" >&2
      exit 2
      ;;
  esac
  CACHE=$ROOT/target/boot-cache/$DEB_ARCH
}

# Debian's kernel and busybox-static for $DEB_ARCH, downloaded once into $CACHE and
# extracted; sets KERNEL, KVER and MODDIR.
guest_kernel() {
  mkdir -p "$CACHE"
  if ! ls "$CACHE"/k/boot/vmlinuz-* >/dev/null 2>&1 || [ ! -x "$CACHE/bb/bin/busybox" ]; then
    dpkg --print-foreign-architectures | grep -x "$DEB_ARCH" >/dev/null || { log "needs 'dpkg --add-architecture $DEB_ARCH && apt-get update' (board/ci-setup.sh does it)"; exit 1; }
    local kpkg
    kpkg=$(apt-cache depends "$KMETA:$DEB_ARCH" | awk '/Depends: linux-image/{print $2; exit}')
    (cd "$CACHE" && rm -f ./*.deb && apt-get download "$kpkg" "busybox-static:$DEB_ARCH" 2>/dev/null)
    rm -rf "$CACHE/k" "$CACHE/bb"
    dpkg-deb -x "$CACHE"/linux-image-*.deb "$CACHE/k"
    dpkg-deb -x "$CACHE"/busybox-static_*.deb "$CACHE/bb"
  fi
  KERNEL=$(ls "$CACHE"/k/boot/vmlinuz-* | head -1)
  KVER=${KERNEL##*/vmlinuz-}
  MODDIR=$CACHE/k/lib/modules/$KVER/kernel
}

# The qemu command line (without the disk and the kernel command line) as an array
# in QEMU_CMD: 2 CPUs, 512 MiB, serial console, no network device.
guest_qemu() {
  read -r -a QEMU_CMD <<<"$QEMU"
  QEMU_CMD+=(-smp 2 -m 512 -nographic -kernel "$KERNEL" -nic none)
}

# The initramfs in $I (made anew): BusyBox, the block and ext4 modules (their names in
# /lib/modules/order, which the guest's /init loads in order), the simulator $1, and
# the box as the real installer lays it out (SysV flavour) with the agent $2 and the
# license key $3 (kept in $W/key).
guest_initramfs() {
  local sim=$1 agent=$2 key=$3
  mkdir -p "$I"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,data,srv,lib/modules,var/log}
  cp "$CACHE/bb/bin/busybox" "$I/bin/busybox"
  local m
  : >"$I/lib/modules/order"
  for m in $MODS; do
    cp "$MODDIR/$m.ko" "$I/lib/modules/"
    echo "${m##*/}" >>"$I/lib/modules/order"
  done
  cp "$sim" "$I/usr/bin/cybersensei-sim"
  printf '%s\n' "$key" >"$W/key"
  DESTDIR=$I AGENT_BIN=$agent INIT=sysv LICENSE_KEY_FILE=$W/key bash "$ROOT/board/install.sh" >/dev/null
}

# The installed config pointed at the in-guest simulator: updates automatic and
# checked every few seconds, test packages unsigned, everything else as shipped.
# $1: telemetry interval (s); $2 (optional): log level.
guest_config() {
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
# Healthy: the slot brought an agent, or it is the factory slot (VERSION laid by
# hand). /run/hold-health (tmpfs: gone at the next boot) holds the check, so that a
# power cut can be aimed at a start before its commit (board/power-cut.sh).
c["services"] = {"health": [["/bin/sh", "-c",
                             "while [ -e /run/hold-health ]; do sleep 0.2; done; "
                             "test -x \"$CYBERSENSEI_SLOT_DIR/bin/cybersensei-agent\" || test -e \"$CYBERSENSEI_SLOT_DIR/VERSION\""]],
                 "health_timeout": 60}
c["schedule"] = {"splay": False}
json.dump(c, open(p, "w"), indent=2)
PY
}
