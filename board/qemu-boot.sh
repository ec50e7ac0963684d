#!/usr/bin/env bash
# Boot test: qemu-system (virt machine, TCG software emulation) boots Debian's kernel
# for the architecture (aarch64: arm64 cloud kernel, the default; armv7: armhf armmp)
# with an initramfs holding BusyBox, the static agent and simulator of that
# architecture, the SysV init script and a config (laid out by board/install.sh), and
# a small ext4 disk (virtio-blk) for state_dir and install.root.
#   board/qemu-boot.sh [aarch64|armv7]
#   boot 1: factory box (slot a = 1.0.0, no agent in the slot). The simulator starts on
#           the guest's loopback (HTTPS, its own CA), serves a license and update
#           1.1.0 (a package that carries bin/cybersensei-agent). The init script
#           starts the factory agent, which validates, checks, downloads, verifies
#           and installs 1.1.0 into slot b. The guest stops the agent and reboots.
#   boot 2: the init script now runs the agent from the new slot
#           (/opt/cybersensei/current/bin/cybersensei-agent -> slots/b); the guest
#           checks version 1.1.0 on slot b, license valid, telemetry delivered, a
#           `validate`; stops the agent, `rollback` to slot a (1.0.0), starts the
#           init script again (the factory agent: slot a has none), and powers off.
# Everything talks over the guest's loopback; the guest has no network device.
# Env: BOOT_TIMEOUT (seconds for the whole qemu run, default 900), BOOT_SKIP_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source board/guest.sh
guest_arch "${1:-aarch64}"
W=$ROOT/target/boot-$GUEST_ARCH
TIMEOUT=${BOOT_TIMEOUT:-900}
KEY='BOOT-TEST-KEY-0001+x/y='
log() { echo "qemu-boot: $*"; }

# 1. The static binaries.
if [ "${BOOT_SKIP_BUILD:-0}" != 1 ] || [ ! -x target/board/$T/cybersensei-sim ]; then
  board/build.sh $T --sim >/dev/null
fi
AGENT=$ROOT/target/board/$T/cybersensei-agent
SIM=$ROOT/target/board/$T/cybersensei-sim

# 2. Debian's kernel and busybox-static (downloaded once, extracted).
guest_kernel
log "$GUEST_ARCH: kernel $KVER; virtio_blk is $(grep '^CONFIG_VIRTIO_BLK=' "$CACHE/k/boot/config-$KVER"), ext4 $(grep '^CONFIG_EXT4_FS=' "$CACHE/k/boot/config-$KVER")"

# 3. The initramfs.
rm -rf "$W"
I=$W/initramfs
guest_initramfs "$SIM" "$AGENT" "$KEY"
# The installed default config, pointed at the in-guest simulator (telemetry every 30 s).
guest_config 30
# The update package: the same static agent as bin/cybersensei-agent (self-update
# path), a VERSION and an app file.
python3 - "$W/update-1.1.0.zip" "$AGENT" <<'PY'
import sys, zipfile
out, agent = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    def add(name, data, mode):
        zi = zipfile.ZipInfo(name, (2025, 1, 1, 0, 0, 0))
        zi.external_attr = (0o100000 | mode) << 16
        zi.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(zi, data)
    add("VERSION", b"1.1.0\n", 0o644)
    add("app/hello.txt", b"CyberSensei 1.1.0\n", 0o644)
    add("bin/cybersensei-agent", open(agent, "rb").read(), 0o755)
PY
cp "$W/update-1.1.0.zip" "$I/srv/"

cat >"$I/init" <<EOF_INIT
#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs run /run; mount -t tmpfs tmp /tmp
say() { echo "GUEST: \$*"; }
fail() { say "BOOT-TEST: FAIL: \$*"; cat /data/agent-stderr.log 2>/dev/null | tail -20; sync; poweroff -f; }
for m in \$(cat /lib/modules/order); do insmod /lib/modules/\$m.ko || fail "insmod \$m"; done
i=0; while [ ! -b /dev/vda ] && [ \$i -lt 50 ]; do sleep 0.1; i=\$((i+1)); done
mount -t ext4 /dev/vda /data || fail "mount /dev/vda"
boot=\$(( \$(cat /data/boots 2>/dev/null || echo 0) + 1 )); echo \$boot > /data/boots; sync
say "boot \$boot, kernel \$(uname -r), \$(date -u)"
mkdir -p /data/state /data/opt /var/lib/cybersensei-agent
mount --bind /data/state /var/lib/cybersensei-agent
mount --bind /data/opt /opt/cybersensei
if [ "\$boot" = 1 ]; then
  # The factory image: slot a holds version 1.0.0 (no agent of its own).
  mkdir -p /opt/cybersensei/slots/a/app /opt/cybersensei/slots/b
  echo 1.0.0 > /opt/cybersensei/slots/a/VERSION
  ln -s slots/a /opt/cybersensei/current
fi
ifconfig lo 127.0.0.1 up
cybersensei-sim --tls --port 8443 --ca-out /run/sim-ca.pem --license-key '$KEY' \
  --update 1.1.0=/srv/update-1.1.0.zip >/run/sim.out 2>/data/sim-boot\$boot.log &
i=0; while ! grep -q '^URL' /run/sim.out 2>/dev/null; do sleep 0.2; i=\$((i+1)); [ \$i -lt 150 ] || fail "simulator did not start"; done
say "simulator: \$(cat /run/sim.out)"
st() { cybersensei-agent status --json 2>/dev/null; }
# SIGTERM must stop the agent within the script's 10 s, whatever it was doing. (A
# foreground command, not \$(...): while this shell, pid 1, reads a substitution it
# does not reap the agent, whose zombie would answer the script's kill -0.)
stop_agent() { /etc/init.d/cybersensei-agent stop >/run/stop.out 2>&1; cat /run/stop.out; ! grep -q "did not stop" /run/stop.out || fail "the agent ignored SIGTERM"; }
sent() { st | sed -n 's/.*"lastSentAt": *"\([^"]*\)".*/\1/p'; }
sent0=\$(sent)
STDERR_LOG=/data/agent-stderr.log START_CHECK=2 /etc/init.d/cybersensei-agent start || fail "init script start"
STDERR_LOG=/data/agent-stderr.log /etc/init.d/cybersensei-agent status
pid=\$(cat /run/cybersensei-agent.pid)
say "agent pid \$pid runs \$(readlink /proc/\$pid/exe)"
if [ "\$boot" = 1 ]; then
  i=0
  until st | grep -q '"version": *"1.1.0"' && st | grep -q '"state": *"idle"'; do
    sleep 2; i=\$((i+1)); [ \$i -lt 150 ] || fail "update not applied in 300 s: \$(st)"
  done
  say "update applied: current -> \$(readlink /opt/cybersensei/current)"
  st | sed 's/^/GUEST status: /'
  /etc/init.d/cybersensei-agent reload
  stop_agent
  say "rebooting"
  sync; umount /var/lib/cybersensei-agent /opt/cybersensei; umount /data
  reboot -f
else
  exe=\$(readlink /proc/\$pid/exe)
  case "\$exe" in /data/opt/slots/b/bin/cybersensei-agent|/opt/cybersensei/slots/b/bin/cybersensei-agent) say "agent runs from the new slot: \$exe" ;;
    *) fail "agent runs \$exe, not slot b's agent" ;; esac
  i=0; until st | grep -q '"state": *"valid"'; do sleep 1; i=\$((i+1)); [ \$i -lt 120 ] || fail "license not validated after reboot"; done
  st | sed 's/^/GUEST status: /'
  st | grep -q '"version": *"1.1.0"' || fail "version after reboot"
  st | grep -q '"slot": *"b"' || fail "slot after reboot"
  i=0; until [ -n "\$(sent)" ] && [ "\$(sent)" != "\$sent0" ]; do sleep 1; i=\$((i+1)); [ \$i -lt 120 ] || fail "no telemetry delivered in this boot: \$(st)"; done
  say "telemetry delivered at \$(sent) (before this boot: \${sent0:-never})"
  cybersensei-agent validate || fail "validate"
  stop_agent
  cybersensei-agent rollback || fail "rollback"
  st | grep -q '"slot": *"a"' && st | grep -q '"version": *"1.0.0"' || fail "not on slot a 1.0.0 after the rollback: \$(st)"
  say "rolled back: current -> \$(readlink /opt/cybersensei/current)"
  STDERR_LOG=/data/agent-stderr.log START_CHECK=2 /etc/init.d/cybersensei-agent start || fail "start after the rollback"
  pid=\$(cat /run/cybersensei-agent.pid)
  [ "\$(readlink /proc/\$pid/exe)" = /usr/bin/cybersensei-agent ] || fail "after the rollback the agent runs \$(readlink /proc/\$pid/exe), not the factory one"
  stop_agent
  say "BOOT-TEST: PASS ($GUEST_ARCH: boot 2 on slot b, version 1.1.0, agent from the slot; telemetry, validate; rolled back to slot a, factory agent)"
  sync; umount /var/lib/cybersensei-agent /opt/cybersensei; umount /data
  poweroff -f
fi
EOF_INIT
chmod 755 "$I/init"
(cd "$I" && find . | cpio -o -H newc --quiet | gzip -1 >"$W/initramfs.cpio.gz")
truncate -s 64M "$W/disk.img"
mke2fs -q -t ext4 -F "$W/disk.img"
log "initramfs $(stat -c %s "$W/initramfs.cpio.gz") bytes; booting (timeout ${TIMEOUT}s)"

start=$SECONDS
set +e
guest_qemu
timeout "$TIMEOUT" nice -n "${QEMU_NICE:-10}" "${QEMU_CMD[@]}" -initrd "$W/initramfs.cpio.gz" \
  -append "console=ttyAMA0 rdinit=/init panic=-1 quiet loglevel=3" \
  -drive "file=$W/disk.img,if=none,format=raw,id=d" -device virtio-blk-device,drive=d \
  </dev/null 2>&1 | tee "$W/console.log" | grep --line-buffered -E 'GUEST|cybersensei-agent:|Kernel panic|BUG'
rc=${PIPESTATUS[0]}
set -e
log "qemu exited ($rc) after $((SECONDS - start)) s; console in $W/console.log"
if grep -q 'BOOT-TEST: PASS' "$W/console.log"; then
  log "PASS"
  exit 0
fi
[ "$rc" = 124 ] && log "timed out"
log "FAIL"
exit 1
