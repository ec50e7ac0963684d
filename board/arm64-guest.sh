# Sourced by board/qemu-boot.sh and board/power-cut.sh: the arm64 guest both boot.
# Needs CACHE (the download cache both share), W (the work directory), I (the
# initramfs directory, for arm64_initramfs) and log().

# Debian's arm64 kernel and busybox-static, downloaded once into $CACHE and
# extracted; sets KERNEL, KVER and MODDIR.
arm64_kernel() {
  mkdir -p "$CACHE"
  if ! ls "$CACHE"/k/boot/vmlinuz-* >/dev/null 2>&1 || [ ! -x "$CACHE/bb/bin/busybox" ]; then
    dpkg --print-foreign-architectures | grep -qx arm64 || { log "needs 'dpkg --add-architecture arm64 && apt-get update' (board/ci-setup.sh does it)"; exit 1; }
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
