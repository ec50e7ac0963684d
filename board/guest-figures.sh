#!/usr/bin/env bash
# Figures measured inside the guest of the boot test (Debian's kernel under
# qemu-system TCG, the shipped static binaries, the SysV init script), printed:
#   - the daemon's idle VmRSS (after its first validation and telemetry);
#   - CPU per telemetry cycle: utime + stime from /proc/PID/stat over 30 s of a
#     daemon sending telemetry every 2 s, divided by the samples the simulator
#     received (update checks every hour: nothing else runs);
#   - VmHWM while the daemon installs a 50 MB update from the simulator (download,
#     verify, stage, self-update exec, health check, commit): /proc/PID/status read
#     every 0.1 s, the highest value of both images (exec starts a new HWM);
#   - the update's time as a ratio to cp + sync of the same files in the same guest:
#     `cybersensei-agent install` of the package (verify, extract, fsync, switch,
#     health check, commit) against `cp -a` of its extracted files + `sync`, both
#     from RAM to the same ext4 disk.
# TCG is not hardware speed: only the memory figures and the ratio mean something for
# a box (docs/board.md, "Figures measured in the guests").
#   board/guest-figures.sh [aarch64|armv7]     (BOOT_SKIP_BUILD=1 reuses the builds)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source board/guest.sh
guest_arch "${1:-aarch64}"
W=$ROOT/target/figures-$GUEST_ARCH
KEY='FIGURES-KEY-0001+x/y='
log() { echo "guest-figures: $*"; }

if [ "${BOOT_SKIP_BUILD:-0}" != 1 ] || [ ! -x target/board/$T/cybersensei-sim ]; then
  board/build.sh $T --sim >/dev/null
fi
AGENT=$ROOT/target/board/$T/cybersensei-agent
SIM=$ROOT/target/board/$T/cybersensei-sim
guest_kernel
rm -rf "$W"
I=$W/initramfs
guest_initramfs "$SIM" "$AGENT" "$KEY"
guest_config 2
python3 - "$I/etc/cybersensei/agent.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["updates"]["check_interval"] = 3600   # phase 1: telemetry only
json.dump(c, open(p, "w"), indent=2)
PY
# The 50 MB package: the agent (self-update path), VERSION, 10 files of 5 MB of
# incompressible data (stored as they are, as a real firmware blob would be).
python3 - "$I/srv" "$AGENT" <<'PY'
import os, random, sys, zipfile
out, agent = sys.argv[1], sys.argv[2]
rng = random.Random(50)
files = [("VERSION", b"1.1.0\n", 0o644), ("bin/cybersensei-agent", open(agent, "rb").read(), 0o755)]
for i in range(10):
    files.append((f"app/blob-{i}.bin", rng.randbytes(5 * 1000 * 1000), 0o644))
with zipfile.ZipFile(f"{out}/pkg50.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for n, d, mode in files:
        zi = zipfile.ZipInfo(n, (2025, 1, 1, 0, 0, 0))
        zi.external_attr = (0o100000 | mode) << 16
        zi.compress_type = zipfile.ZIP_DEFLATED if n.startswith("bin/") or n == "VERSION" else zipfile.ZIP_STORED
        z.writestr(zi, d)
print(os.path.getsize(f"{out}/pkg50.zip"))
PY

cat >"$I/init" <<EOF_INIT
#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs run /run; mount -t tmpfs tmp /tmp
say() { echo "GUEST: \$*"; }
fail() { say "FIGURES: FAIL: \$*"; tail -20 /data/agent.log 2>/dev/null; sync; poweroff -f; sleep 60; }
for m in \$(cat /lib/modules/order); do insmod /lib/modules/\$m.ko || fail "insmod \$m"; done
i=0; while [ ! -b /dev/vda ] && [ \$i -lt 50 ]; do sleep 0.1; i=\$((i+1)); done
mount -t ext4 /dev/vda /data || fail "mount /dev/vda"
mkdir -p /data/state /data/opt /var/lib/cybersensei-agent
mount --bind /data/state /var/lib/cybersensei-agent
mount --bind /data/opt /opt/cybersensei
mkdir -p /opt/cybersensei/slots/a/app /opt/cybersensei/slots/b
echo 1.0.0 > /opt/cybersensei/slots/a/VERSION
ln -s slots/a /opt/cybersensei/current
sync
ifconfig lo 127.0.0.1 up
up() { cut -d' ' -f1 /proc/uptime | tr -d .; }   # centiseconds
sim() {
  kill \$SIMPID 2>/dev/null; sleep 0.5
  cybersensei-sim --tls --port 8443 --ca-out /run/sim-ca.pem --license-key '$KEY' --quiet "\$@" >/run/sim.out 2>/run/sim.err &
  SIMPID=\$!
  i=0; while ! grep -q '^URL' /run/sim.out 2>/dev/null; do sleep 0.2; i=\$((i+1)); [ \$i -lt 150 ] || fail "simulator did not start"; done
}
# Shell builtins only (no fork: the sampling loop must not load the guest).
# (Their own variable names: sh has no locals, and the sampling loop counts in n.)
kib() { _v=; while read -r _k _n _u; do [ "\$_k" = "\$2:" ] && _v=\$_n; done </proc/\$1/status; echo "\$_v"; }
hwm_rss() { HWM=; RSS=; while read -r _k _n _u; do case "\$_k" in VmHWM:) HWM=\$_n ;; VmRSS:) RSS=\$_n ;; esac; done </proc/\$1/status; }
ticks() { awk '{print \$14 + \$15}' /proc/\$1/stat; }
posts() { grep -c 'POST /telemetry -> 20' /data/agent.log 2>/dev/null || echo 0; }
SIMPID=
: > /run/sim.out
sim
STDERR_LOG=/data/agent.log /etc/init.d/cybersensei-agent start >/dev/null || fail "start"
pid=\$(cat /run/cybersensei-agent.pid)
i=0; until grep -q '"state": "valid"' /data/state/status.json 2>/dev/null; do sleep 0.5; i=\$((i+1)); [ \$i -lt 120 ] || fail "no validation"; done
sleep 10
rss=\$(kib \$pid VmRSS); hwm0=\$(kib \$pid VmHWM)
t0=\$(ticks \$pid); p0=\$(posts); sleep 30; t1=\$(ticks \$pid); p1=\$(posts)
say "FIGURE idle_vmrss_kib=\$rss idle_vmhwm_kib=\$hwm0 cpu_ticks=\$((t1 - t0)) clk_tck=\$(getconf CLK_TCK 2>/dev/null || echo 100) telemetry_cycles=\$((p1 - p0))"
/etc/init.d/cybersensei-agent stop >/dev/null
# Phase 2: the 50 MB update from the simulator, through the daemon.
sim --update 1.1.0=/srv/pkg50.zip
# Telemetry every 5 min now: a sample due pauses a download (resumed with Range).
sed -i 's/"check_interval": 3600/"check_interval": 5/; s/"interval": 2,/"interval": 300,/' /etc/cybersensei/agent.json
grep -q '"interval": 300' /etc/cybersensei/agent.json || fail "config edit"
a0=\$(up)
STDERR_LOG=/data/agent.log /etc/init.d/cybersensei-agent start >/dev/null || fail "start 2"
pid=\$(cat /run/cybersensei-agent.pid)
hwm=0; rssmax=0; n=0
while :; do
  hwm_rss \$pid
  [ -n "\$HWM" ] && [ "\$HWM" -gt "\$hwm" ] && hwm=\$HWM
  [ -n "\$RSS" ] && [ "\$RSS" -gt "\$rssmax" ] && rssmax=\$RSS
  n=\$((n + 1))
  if [ \$((n % 20)) = 0 ]; then
    grep -q '"version": "1.1.0"' /data/state/status.json 2>/dev/null && [ ! -e /data/state/update/journal.json ] &&
      grep -q '"state": "idle"' /data/state/status.json && break
    [ \$(( \$(up) - a0 )) -lt 90000 ] || fail "update not done in 900 s"
  fi
  usleep 100000
done
a1=\$(up)
say "FIGURE update_vmhwm_kib=\$hwm update_vmrss_max_kib=\$rssmax daemon_update_cs=\$((a1 - a0)) exe=\$(readlink /proc/\$pid/exe)"
/etc/init.d/cybersensei-agent stop >/dev/null
# Phase 3: the install of the same package against cp + sync of its files.
cybersensei-agent rollback >/dev/null || fail "rollback"
mkdir -p /tmp/files && (cd /tmp/files && unzip -q /srv/pkg50.zip) || fail "unzip"
sync; echo 3 > /proc/sys/vm/drop_caches
c0=\$(up); cp -a /tmp/files /data/copy && sync; c1=\$(up)
rm -rf /data/copy; sync; echo 3 > /proc/sys/vm/drop_caches
i0=\$(up); cybersensei-agent install /srv/pkg50.zip >/run/install.out 2>&1 || { cat /run/install.out; fail "install"; }; i1=\$(up)
say "FIGURE install_cs=\$((i1 - i0)) cp_sync_cs=\$((c1 - c0))"
say "FIGURES: DONE"
kill \$SIMPID 2>/dev/null
sync; umount /var/lib/cybersensei-agent /opt/cybersensei; umount /data
poweroff -f
EOF_INIT
chmod 755 "$I/init"
(cd "$I" && find . | cpio -o -H newc --quiet | gzip -1 >"$W/initramfs.cpio.gz")
truncate -s 384M "$W/disk.img"
mke2fs -q -t ext4 -F "$W/disk.img"
log "$GUEST_ARCH: kernel $KVER, initramfs $(stat -c %s "$W/initramfs.cpio.gz") bytes; booting"
guest_qemu
set +e
timeout "${FIGURES_TIMEOUT:-1500}" nice -n "${QEMU_NICE:-10}" "${QEMU_CMD[@]}" -m 1024 -initrd "$W/initramfs.cpio.gz" \
  -append "console=ttyAMA0 rdinit=/init panic=-1 quiet loglevel=3" \
  -drive "file=$W/disk.img,if=none,format=raw,id=d" -device virtio-blk-device,drive=d \
  </dev/null >"$W/console.log" 2>&1
set -e
grep -q 'FIGURES: DONE' "$W/console.log" || { log "FAIL"; grep GUEST "$W/console.log" | tail -5; exit 1; }
python3 - "$GUEST_ARCH" "$W/console.log" <<'PY'
import re, sys
arch, path = sys.argv[1], sys.argv[2]
f = {}
for line in open(path, errors="replace"):
    if "GUEST: FIGURE " in line:
        for k, v in re.findall(r"(\w+)=(\S+)", line.split("FIGURE ", 1)[1]):
            f[k] = v
mib = lambda k: int(f[k]) / 1024
cpu_ms = int(f["cpu_ticks"]) * 1000 / int(f["clk_tck"]) / max(1, int(f["telemetry_cycles"]))
ratio = int(f["install_cs"]) / max(1, int(f["cp_sync_cs"]))
print(f"guest-figures {arch}: idle VmRSS {mib('idle_vmrss_kib'):.1f} MiB; "
      f"VmHWM during the 50 MB update {mib('update_vmhwm_kib'):.1f} MiB "
      f"(VmRSS max {mib('update_vmrss_max_kib'):.1f} MiB); "
      f"CPU per telemetry cycle {cpu_ms:.1f} ms ({f['cpu_ticks']} ticks over {f['telemetry_cycles']} cycles, TCG); "
      f"install of the 50 MB package {int(f['install_cs'])/100:.2f} s vs cp + sync {int(f['cp_sync_cs'])/100:.2f} s: "
      f"ratio {ratio:.2f}; the daemon's whole update (download over loopback TLS included) "
      f"{int(f['daemon_update_cs'])/100:.1f} s (TCG)")
PY
