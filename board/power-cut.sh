#!/usr/bin/env bash
# Power cuts on a real kernel: boots the guest of the boot test (qemu-system, Debian's
# kernel, BusyBox, the static agent and simulator, the SysV init script; aarch64 by
# default, POWER_CUT_ARCH=armv7 for the armhf guest) N times on one persistent ext4 disk image, lets the agent install an update
# (download, verify, extract, sync, switch, self-update exec, health check, commit;
# telemetry queued then flushed; license cache rewritten) and cuts the power (SIGKILL
# of qemu) at a seeded random instant, aimed at the agent's journal steps and the
# disk's flushes as often as at a plain time. After each cut: the image copy is
# checked from the host (e2fsck journal replay + check-box), the guest boots again,
# checks the box before the agent starts, lets the agent finish or undo the update,
# installs a further one, shuts down cleanly, and the image passes `e2fsck -fn`.
#
# The disk is served to qemu by board/power-cut.py over NBD with a volatile write
# cache: what the guest did not flush is lost at the cut (docs/board.md, "Power cuts").
#
# Two plans run first (issue 26, item 4): three power cuts in a row during the first
# start of a freshly installed slot (its health check held), before its commit: the
# box must then commit that slot, not mark it bad; and an update whose agent crashes
# 2 s after each start (the guest restarts it, as a supervisor would): after three
# failed starts the init script falls back to the factory agent, which rolls the
# update back and marks the slot bad.
#
#   board/power-cut.sh [N]        N cuts (default 5, what CI runs)
# Env: POWER_CUT_SEED (default: random, printed), POWER_CUT_WORKDIR (default
#      target/power-cut), POWER_CUT_TIMEOUT (seconds per boot, default 300),
#      POWER_CUT_VERBOSE=1 (echo the console), POWER_CUT_STOP=1 (stop at the first
#      failure), POWER_CUT_REPLAY=0 (skip the replay of every flush boundary),
#      POWER_CUT_AGENT (another aarch64 agent binary, e.g. a mutant that skips a
#      sync, to see the test fail), BOOT_SKIP_BUILD=1 (reuse target/board binaries),
#      POWER_CUT_ARCH (aarch64 | armv7), POWER_CUT_PLANS=0 (skip the two plans).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${1:-5}
source board/guest.sh
guest_arch "${POWER_CUT_ARCH:-aarch64}"
W=${POWER_CUT_WORKDIR:-$ROOT/target/power-cut-$GUEST_ARCH}
KEY='POWER-CUT-KEY-0001+x/y='
log() { echo "power-cut: $*"; }

# 1. The static guest binaries, and the host checker (cybersensei-sim check-box).
if [ "${BOOT_SKIP_BUILD:-0}" != 1 ] || [ ! -x target/board/$T/cybersensei-sim ]; then
  board/build.sh $T --sim >/dev/null
fi
cargo build -q -p cybersensei-sim
AGENT=${POWER_CUT_AGENT:-$ROOT/target/board/$T/cybersensei-agent}
SIM=$ROOT/target/board/$T/cybersensei-sim
source "$ROOT/scripts/cargo-target-dir.sh"
HOST_SIM=$(cargo_target_dir)/debug/cybersensei-sim

# 2. Debian's kernel and busybox-static (shared cache with board/qemu-boot.sh).
guest_kernel

# 3. The initramfs: the box as board/install.sh lays it out.
rm -rf "$W"
I=$W/initramfs
guest_initramfs "$SIM" "$AGENT" "$KEY"
guest_config 3 debug
# Two packages (versions alternate between them): the agent itself (self-update),
# 40 small files, a 256 KiB blob, and SHA256SUMS of every file, which check-box
# verifies in the slot. No manifest.json (a manifest must carry a version) and no
# VERSION: the version is the check's latestVersion, so one package serves any.
python3 - "$I/srv" "$AGENT" <<'PY'
import hashlib, random, sys, zipfile
out, agent = sys.argv[1], sys.argv[2]
for variant in (0, 1):
    rng = random.Random(variant)
    files = [("bin/cybersensei-agent", open(agent, "rb").read(), 0o755)]
    for i in range(40):
        files.append((f"app/part-{i:02d}.txt", f"variant {variant} part {i}\n".encode() * (i + 1), 0o644))
    files.append(("app/blob.bin", bytes(rng.getrandbits(8) for _ in range(256 * 1024)), 0o644))
    sums = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d, _ in files)
    with zipfile.ZipFile(f"{out}/pkg-{variant}.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for n, d, mode in files + [("SHA256SUMS", sums.encode(), 0o644)]:
            zi = zipfile.ZipInfo(n, (2025, 1, 1, 0, 0, 0))
            zi.external_attr = (0o100000 | mode) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, d)
# The crashing agent: answers the --version probe and `config check` through the
# factory agent, and dies of SIGSEGV 2 s after each start (after the init script's
# start check: a crash the script cannot see at once).
crash = b"""#!/bin/sh
case "$1" in --version|-V) exec /usr/bin/cybersensei-agent "$@" ;; esac
[ "$3" = config ] && exec /usr/bin/cybersensei-agent "$@"
echo "crashing agent: dies 2 s after its start" >&2
sleep 2
kill -SEGV $$
"""
files = [("bin/cybersensei-agent", crash, 0o755), ("app/crash.txt", b"crash\n", 0o644)]
sums = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d, _ in files)
with zipfile.ZipFile(f"{out}/pkg-crash.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for n, d, mode in files + [("SHA256SUMS", sums.encode(), 0o644)]:
        zi = zipfile.ZipInfo(n, (2025, 1, 1, 0, 0, 0))
        zi.external_attr = (0o100000 | mode) << 16
        zi.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(zi, d)
PY

cat >"$I/init" <<EOF_INIT
#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs run /run; mount -t tmpfs tmp /tmp
# One writer on the console: the agent's stderr and the GUEST markers go through a
# FIFO (each line one atomic write) to a single reader, so lines never interleave.
mkfifo /run/console.fifo
( while IFS= read -r l; do echo "\$l"; done <>/run/console.fifo >/dev/console 2>&1 ) &
say() { echo "GUEST: \$*" >/run/console.fifo; }
fail() { say "FAIL \$*"; sleep 1; sync; poweroff -f; sleep 60; }
for w in \$(cat /proc/cmdline); do case "\$w" in pcmode=*) mode=\${w#pcmode=} ;; pcver=*) ver=\${w#pcver=} ;; esac; done
for m in \$(cat /lib/modules/order); do insmod /lib/modules/\$m.ko || fail "insmod \$m"; done
i=0; while [ ! -b /dev/vda ] && [ \$i -lt 50 ]; do sleep 0.1; i=\$((i+1)); done
mount -t ext4 /dev/vda /data || fail "mount /dev/vda"
dmesg | grep 'EXT4-fs (vda)' | sed 's/^\[[ 0-9.]*\] /GUEST: dmesg: /' >/run/console.fifo
say "boot: \$mode, offering \$ver"
mkdir -p /data/state /data/opt /var/lib/cybersensei-agent
mount --bind /data/state /var/lib/cybersensei-agent
mount --bind /data/opt /opt/cybersensei
box() { cybersensei-sim check-box --sums-required /data/state /data/opt; }
if [ "\$mode" = setup ]; then
  # The factory image: slot a holds version 1.0.0 (no agent of its own).
  mkdir -p /opt/cybersensei/slots/a/app /opt/cybersensei/slots/b
  echo 1.0.0 > /opt/cybersensei/slots/a/VERSION
  ln -s slots/a /opt/cybersensei/current
  sync
fi
if [ "\$mode" = check ]; then say "PRE \$(box)"; fi
ifconfig lo 127.0.0.1 up
fails=; [ "\$mode" = work ] && fails="--fail /telemetry=2"
pkg=/srv/pkg-\$(( \${ver##*.} % 2 )).zip; [ "\$mode" = crashes ] && pkg=/srv/pkg-crash.zip
# firststart: the health check waits (a cut lands before the commit).
[ "\$mode" = firststart ] && touch /run/hold-health
cybersensei-sim --tls --port 8443 --ca-out /run/sim-ca.pem --license-key '$KEY' --quiet \$fails \
  --update \$ver=\$pkg >/run/sim.out 2>/run/sim.err &
i=0; while ! grep -q '^URL' /run/sim.out 2>/dev/null; do sleep 0.2; i=\$((i+1)); [ \$i -lt 150 ] || fail "simulator did not start"; done
say "AGENT-START"
STDERR_LOG=/run/console.fifo START_CHECK=1 /etc/init.d/cybersensei-agent start >/dev/null || fail "init script start"
S=/data/state/status.json
plan_result() {
  pid=\$(cat /run/cybersensei-agent.pid 2>/dev/null)
  say "PLAN-RESULT \$(box) failed-id=\$(cat /data/state/update/failed-id 2>/dev/null || echo none) bad=\$(cd /data/opt/slots && ls *.bad 2>/dev/null | tr '\n' ,) starts=\$(tr ' ' / </data/state/agent-starts 2>/dev/null || echo none) exe=\$(readlink /proc/\$pid/exe 2>/dev/null) ustate=\$(sed -n 's/.*"state": "\([a-z-]*\)".*/\1/p' \$S | tail -1)"
}
if [ "\$mode" = crashes ]; then
  # A supervisor: the agent is started again whenever it is gone, until the update
  # is undone (the factory agent rolled it back).
  i=0
  until grep -q '"state": "rolled-back"' \$S 2>/dev/null && [ ! -e /data/state/update/journal.json ]; do
    if ! /etc/init.d/cybersensei-agent status >/dev/null 2>&1; then
      say "supervisor: the agent is gone: start again"
      STDERR_LOG=/run/console.fifo START_CHECK=1 /etc/init.d/cybersensei-agent start >/run/console.fifo 2>&1
    fi
    sleep 1; i=\$((i+1)); [ \$i -lt 240 ] || fail "not rolled back in 240 s: \$(box)"
  done
  sleep 2; plan_result
  /etc/init.d/cybersensei-agent stop >/dev/null
  say "PLAN-PASS"; sleep 0.5
  sync; umount /var/lib/cybersensei-agent /opt/cybersensei; umount /data
  poweroff -f
fi
# Done = no journal, status idle on the offered version.
updated() { [ ! -e /data/state/update/journal.json ] && grep -q "\"version\": \"\$ver\"" \$S 2>/dev/null && grep -q '"state": "idle"' \$S; }
if [ "\$mode" = check ]; then
  # The agent's start-up recovery finishes or undoes the interrupted update.
  i=0; while [ -e /data/state/update/journal.json ] || [ ! -e \$S ]; do sleep 0.5; i=\$((i+1)); [ \$i -lt 240 ] || fail "journal still there 120 s after start: \$(box)"; done
  say "RECOVERED \$(box)"
fi
i=0; until updated; do sleep 1; i=\$((i+1)); [ \$i -lt 240 ] || fail "update \$ver not installed in 240 s: \$(box)"; done
say "WORK-DONE"
if [ "\$mode" = plancheck ]; then
  plan_result
  /etc/init.d/cybersensei-agent stop >/dev/null
  say "PLAN-PASS"; sleep 0.5
  sync; umount /var/lib/cybersensei-agent /opt/cybersensei; umount /data
  poweroff -f
fi
if [ "\$mode" = work ] || [ "\$mode" = firststart ]; then
  sleep 3600   # the host cuts the power
fi
[ "\$mode" = check ] && say "UPDATED \$(box)"
/etc/init.d/cybersensei-agent stop >/dev/null || fail "stop"
post=\$(box); say "POST \$post"
case "\$post" in "BOX ok"*) ;; *) fail "post check" ;; esac
[ "\$mode" = check ] && say "CHECK-PASS" || say "SETUP-PASS"
sleep 0.5   # the console reader echoes the last lines
sync; umount /var/lib/cybersensei-agent /opt/cybersensei; umount /data
poweroff -f
EOF_INIT
chmod 755 "$I/init"
(cd "$I" && find . | cpio -o -H newc --quiet | gzip -1 >"$W/initramfs.cpio.gz")
truncate -s 64M "$W/disk.img"
mke2fs -q -t ext4 -b 4096 -F "$W/disk.img"
log "kernel $KVER, initramfs $(stat -c %s "$W/initramfs.cpio.gz") bytes, $N cut(s)"

cp "$HOST_SIM" "$W/host-check-box"   # a rebuild during a long run does not change it
guest_qemu
args=(--workdir "$W" --qemu "${QEMU_CMD[*]}" --initrd "$W/initramfs.cpio.gz" --sim "$W/host-check-box"
      --cuts "$N" --boot-timeout "${POWER_CUT_TIMEOUT:-300}")
[ -n "${POWER_CUT_SEED:-}" ] && args+=(--seed "$POWER_CUT_SEED")
[ "${POWER_CUT_VERBOSE:-0}" = 1 ] && args+=(--verbose)
[ "${POWER_CUT_STOP:-0}" = 1 ] && args+=(--stop-on-failure)
[ "${POWER_CUT_REPLAY:-1}" = 1 ] && args+=(--replay)
[ "${POWER_CUT_PLANS:-1}" = 1 ] && args+=(--plans)
exec python3 board/power-cut.py "${args[@]}"
