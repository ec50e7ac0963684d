#!/usr/bin/env python3
"""Power-cut driver for board/power-cut.sh (see docs/board.md, "Power cuts").

Boots the arm64 guest again and again on one persistent ext4 disk image and cuts its
power (SIGKILL of qemu) at seeded random instants of the agent's work. The disk is
served to qemu over NBD (a Unix socket) by VolatileDisk below, which models a drive
with a volatile write cache: a write is only kept in memory until the guest flushes
(NBD_CMD_FLUSH, or a write with FUA); at the cut, what was not flushed is lost
(all of it, a random subset, or an in-order prefix: all three are things a real drive
may do). The image file on the host therefore only ever holds what the guest made
durable, and nothing else touches it between cuts.

Cycle i: a work boot (the agent installs an update; cut) -> host check of a copy of
the image (e2fsck replays the journal, debugfs copies the box out, check-box) -> a
check boot (check-box inside the guest before the agent starts, the agent recovers,
a further update installs, check-box again, clean shutdown) -> e2fsck -fn of the
image itself.
"""

import argparse
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

SECTOR = 512

# NBD protocol constants (fixed newstyle handshake, simple replies).
NBDMAGIC = b"NBDMAGIC"
IHAVEOPT = 0x49484156454F5054
OPT_EXPORT_NAME, OPT_ABORT, OPT_INFO, OPT_GO = 1, 2, 6, 7
REP_ACK, REP_INFO, REP_ERR_UNSUP = 1, 3, 0x80000001
REP_MAGIC = 0x3E889045565A9
REQ_MAGIC, SIMPLE_REPLY_MAGIC = 0x25609513, 0x67446698
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM = 0, 1, 2, 3, 4
FLAG_HAS_FLAGS, FLAG_SEND_FLUSH, FLAG_SEND_FUA = 1, 4, 8
CMD_FLAG_FUA = 1


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


class VolatileDisk:
    """A raw image behind a volatile write cache, served over NBD.

    `overlay` (sector -> data) is what the guest wrote and has not flushed; reads see
    it, the file does not. `log` keeps those writes in order, for the cut models that
    keep part of them. FLUSH (or FUA) writes the overlay to the file.
    """

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_RDWR)
        self.size = os.fstat(self.fd).st_size
        self.lock = threading.Lock()
        self.overlay = {}
        self.log = []
        self.frozen = False
        self.trigger = None  # ("flush"|"write", k, apply_first) armed by the driver
        self.record = None  # when a list: every write (off, data) and flush (None)
        self.wake_w = None
        self.reset_counters()

    def reset_counters(self):
        self.writes = self.flushes = self.bytes_written = 0
        self.mark_writes = self.mark_flushes = None

    def mark(self):
        """Counts from here (the agent starts)."""
        with self.lock:
            self.mark_writes, self.mark_flushes = self.writes, self.flushes

    def since_mark(self):
        if self.mark_writes is None:
            return 0, 0
        return self.writes - self.mark_writes, self.flushes - self.mark_flushes

    def read(self, off, n):
        data = bytearray(os.pread(self.fd, n, off))
        data += bytes(n - len(data))
        if self.overlay:
            first, last = off // SECTOR, (off + n - 1) // SECTOR
            for s in range(first, last + 1):
                o = self.overlay.get(s)
                if o is not None:
                    a = s * SECTOR - off
                    lo, hi = max(a, 0), min(a + SECTOR, n)
                    data[lo:hi] = o[lo - a:hi - a]
        return bytes(data)

    def write(self, off, data):
        n = len(data)
        if off % SECTOR or n % SECTOR:
            # Read-modify-write to whole sectors (qemu is told 512 is the minimum).
            start = off - off % SECTOR
            end = -(-(off + n) // SECTOR) * SECTOR
            base = bytearray(self.read(start, end - start))
            base[off - start:off - start + n] = data
            off, data = start, bytes(base)
        first = off // SECTOR
        for i in range(len(data) // SECTOR):
            self.overlay[first + i] = data[i * SECTOR:(i + 1) * SECTOR]
        self.log.append((off, data))
        if self.record is not None:
            self.record.append((off, data))
        self.writes += 1
        self.bytes_written += len(data)

    def flush(self):
        for s in sorted(self.overlay):
            os.pwrite(self.fd, self.overlay[s], s * SECTOR)
        self.overlay.clear()
        self.log.clear()
        if self.record is not None:
            self.record.append(None)  # a flush boundary
        self.flushes += 1

    def power_off(self):
        """From now on no request reaches the disk (the next one finds it frozen)."""
        with self.lock:
            self.frozen = True

    def power_cut(self, model, rng):
        """The cut: the cache's content is lost, all or in part. Returns a summary."""
        with self.lock:
            self.frozen = True
            pending = len(self.log)
            kept = 0
            if model == "keep-subset":
                # Each 4 KiB piece of each unflushed write independently reached the
                # media or not; later writes of a piece win when both did.
                for off, data in self.log:
                    for a in range(0, len(data), 4096):
                        if rng.random() < 0.5:
                            os.pwrite(self.fd, data[a:a + 4096], off + a)
                            kept += 1
            elif model == "keep-prefix":
                k = rng.randint(0, pending)
                for off, data in self.log[:k]:
                    os.pwrite(self.fd, data, off)
                kept = k
            self.overlay.clear()
            self.log.clear()
            return f"{pending} unflushed write(s) {model}" + (f" ({kept} kept)" if kept else "")

    def serve(self, sock_path):
        """Listens on a Unix socket; serves one connection in a thread."""
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(sock_path)
        srv.listen(1)
        self.frozen = False
        t = threading.Thread(target=self._accept, args=(srv,), daemon=True)
        t.start()
        return t

    def _accept(self, srv):
        try:
            conn, _ = srv.accept()
        finally:
            srv.close()
        try:
            self._session(conn)
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    def _session(self, c):
        c.sendall(NBDMAGIC + struct.pack(">QH", IHAVEOPT, 3))  # FIXED_NEWSTYLE|NO_ZEROES
        cflags = struct.unpack(">I", recv_exact(c, 4))[0]
        tflags = FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA

        def reply(opt, typ, data=b""):
            c.sendall(struct.pack(">QIII", REP_MAGIC, opt, typ, len(data)) + data)

        while True:
            magic, opt, ln = struct.unpack(">QII", recv_exact(c, 16))
            if magic != IHAVEOPT:
                return
            if ln:
                recv_exact(c, ln)  # the option's data (export name, info requests): unused
            if opt == OPT_EXPORT_NAME:
                c.sendall(struct.pack(">QH", self.size, tflags) + (b"" if cflags & 2 else bytes(124)))
                break
            if opt in (OPT_GO, OPT_INFO):
                reply(opt, REP_INFO, struct.pack(">HQH", 0, self.size, tflags))
                # NBD_INFO_BLOCK_SIZE: min 512, preferred 4096, max 32 MiB
                reply(opt, REP_INFO, struct.pack(">HIII", 3, 512, 4096, 32 << 20))
                reply(opt, REP_ACK)
                if opt == OPT_GO:
                    break
                continue
            if opt == OPT_ABORT:
                reply(opt, REP_ACK)
                return
            reply(opt, REP_ERR_UNSUP)
        while True:
            magic, flags, typ, handle, off, ln = struct.unpack(">IHHQQI", recv_exact(c, 28))
            if magic != REQ_MAGIC:
                return
            data = recv_exact(c, ln) if typ == CMD_WRITE else None
            if typ == CMD_DISC:
                return
            with self.lock:
                if self.frozen:
                    return  # the power is off: nothing more reaches the disk
                err, out = 0, b""
                if off + (ln if typ in (CMD_READ, CMD_WRITE) else 0) > self.size:
                    err = 22
                elif typ == CMD_READ:
                    out = self.read(off, ln)
                elif typ == CMD_WRITE:
                    if self._fire("write"):
                        return
                    self.write(off, data)
                    if flags & CMD_FLAG_FUA:
                        self.flush()  # persisting more than asked is allowed
                elif typ == CMD_FLUSH:
                    if self._fire("flush"):
                        return
                    self.flush()
                # CMD_TRIM and anything else: nothing to do (advisory / not advertised)
            c.sendall(struct.pack(">IIQ", SIMPLE_REPLY_MAGIC, err, handle) + out)

    def _fire(self, kind):
        """Cut before the k-th write/flush since the mark (or after it, for a flush)."""
        t = self.trigger
        if not t or t[0] != kind or self.mark_writes is None:
            return False
        w, f = self.since_mark()
        count = (w if kind == "write" else f) + 1
        if count < t[1]:
            return False
        if kind == "flush" and t[2]:
            self.flush()  # the flush reached the media; its completion did not reach the guest
        self.frozen = True
        self.trigger = None
        os.write(self.wake_w, b"x")
        return True


# What the agent was doing, from its log lines (last match wins).
PHASES = [
    (re.compile(r"journal: staging"), "stage (extract, sync)"),
    (re.compile(r"journal: switching"), "switch"),
    (re.compile(r"journal: switched"), "health check"),
    (re.compile(r"journal: rolling-back"), "rollback"),
    (re.compile(r"journal: committed"), "commit"),
    (re.compile(r"version \S+ committed"), "after commit"),
    (re.compile(r"staged version"), "switch"),
    (re.compile(r"handing|exec", re.I), "exec new agent"),
    (re.compile(r"^installing without a signature"), "verify"),
    (re.compile(r"^security:"), "start"),
    (re.compile(r"^Call<"), None),  # ureq's own debug lines: not a step
    (re.compile(r"download", re.I), "download"),
    (re.compile(r"verif", re.I), "verify"),
    (re.compile(r"telemetry", re.I), "telemetry"),
    (re.compile(r"licen[cs]e", re.I), "license"),
    (re.compile(r"update", re.I), "update check"),
]
AGENT_LINE = re.compile(r"^\S+ \[(ERROR|WARN|INFO|DEBUG|TRACE)\] (.*)")
# Log lines a cut may be aimed at (then 0-400 ms later).
AIM = [
    r"journal: staging", r"journal: switching", r"journal: switched",
    r"journal: committed", r"staged version", r"version \S+ committed",
    r"download", r"telemetry", r"licen[cs]e",
]


class Run:
    def __init__(self, a):
        self.a = a
        self.w = a.workdir
        self.disk = VolatileDisk(os.path.join(self.w, "disk.img"))
        self.rfd, self.disk.wake_w = os.pipe()
        self.sock = os.path.join(self.w, "nbd.sock")
        self.ver = 0
        self.calib = {"t": 20.0, "writes": 400, "flushes": 60}
        self.rows = []
        self.failures = []

    def next_version(self):
        self.ver += 1
        return f"2.0.{self.ver}"

    def qemu(self, mode, ver):
        # The machine (board/guest.sh: emulator, board, CPU, memory, kernel), niced:
        # TCG takes whole cores from a shared machine.
        cmd = ["nice", "-n", str(self.a.nice)] + self.a.qemu.split() + [
            "-initrd", self.a.initrd,
            "-append", f"console=ttyAMA0 rdinit=/init panic=-1 quiet loglevel=3 pcmode={mode} pcver={ver}",
            # cache=writeback: the guest sees a volatile write cache and sends flushes,
            # which qemu passes on as NBD_CMD_FLUSH (writethrough would hide the cache;
            # unsafe would drop the flushes).
            "-drive", f"file=nbd+unix:///?socket={self.sock},format=raw,if=none,id=d,cache=writeback",
            "-device", "virtio-blk-device,drive=d",
        ]
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def boot(self, name, mode, ver, plan=None, timeout=300):
        """One boot. plan: the cut (None: run to poweroff). Returns what was seen."""
        d = self.disk
        d.reset_counters()
        d.trigger = plan.get("trigger") if plan else None
        while select.select([self.rfd], [], [], 0)[0]:
            os.read(self.rfd, 64)
        srv = d.serve(self.sock)
        q = self.qemu(mode, ver)
        logf = open(os.path.join(self.w, f"{name}.log"), "wb")
        seen = {"guest": [], "phase": "boot", "agent_start": None, "done": None, "lines": 0}
        buf = b""
        t0 = time.monotonic()
        deadline = t0 + timeout
        cut_at = None
        cut_reason = None
        fired = False
        while True:
            now = time.monotonic()
            if plan and seen["agent_start"] is not None and not fired:
                if plan["kind"] == "time" and cut_at is None:
                    cut_at = seen["agent_start"] + plan["at"]
                if seen["done"] is not None and cut_at is None:
                    # after-done, or a trigger the update never reached: cut the idle box
                    cut_at = seen["done"] + (plan["at"] if plan["kind"] == "after-done" else 1.0)
            wait = max(0.0, min(deadline, cut_at or deadline) - now)
            r, _, _ = select.select([q.stdout, self.rfd], [], [], min(wait, 0.5))
            now = time.monotonic()
            if self.rfd in r:
                os.read(self.rfd, 64)
                cut_reason = f"{plan['kind']} #{plan['k']}" if plan else "?"
                fired = True
            elif cut_at is not None and now >= cut_at and not fired:
                fired = True
                cut_reason = plan["kind"]
                d.power_off()
            if fired and plan:
                break
            if q.stdout in r:
                chunk = os.read(q.stdout.fileno(), 65536)
                if not chunk:
                    break
                logf.write(chunk)
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self.on_line(line.decode("utf-8", "replace").rstrip("\r"), seen, plan)
                    if plan and plan["kind"] == "log" and plan.get("hit") and cut_at is None:
                        cut_at = time.monotonic() + plan["delay"]
            if now >= deadline:
                seen["timeout"] = True
                break
        result = {"seen": seen}
        if fired and plan:
            t_cut = time.monotonic()
            os.killpg(q.pid, signal.SIGKILL)
            q.wait()
            rng = random.Random(f"{self.a.seed}:{name}:cache")
            result["cache"] = d.power_cut(plan["cache"], rng)
            w, f = d.since_mark()
            result["instant"] = t_cut - (seen["agent_start"] or t0)
            result["counts"] = (w, f)
            result["how"] = cut_reason
        else:
            if q.poll() is None:
                os.killpg(q.pid, signal.SIGKILL)
                q.wait()
                d.power_cut("drop", random.Random(0))
            result["counts"] = d.since_mark()
        srv.join(timeout=5)
        logf.close()
        result["elapsed"] = time.monotonic() - t0
        return result

    def on_line(self, line, seen, plan):
        seen["lines"] += 1
        if self.a.verbose:
            print(f"  | {line}", flush=True)
        at = line.find("GUEST: ")
        if at >= 0:
            # The agent's stderr shares the console: a marker may follow a piece of
            # one of its lines ("20GUEST: ...").
            g = line[at + 7:]
            seen["guest"].append(g)
            if g.startswith("AGENT-START"):
                self.disk.mark()
                seen["agent_start"] = time.monotonic()
            elif g.startswith("WORK-DONE"):
                seen["done"] = time.monotonic()
                if seen["agent_start"] is not None:
                    seen["work_t"] = seen["done"] - seen["agent_start"]
                    seen["work_counts"] = self.disk.since_mark()
            return
        m = AGENT_LINE.match(line)
        if not m:
            return
        msg = m.group(2)
        for rx, phase in PHASES:
            if rx.search(msg):
                seen["phase"] = phase or seen["phase"]
                break
        if plan and plan["kind"] == "log" and not plan.get("hit") and seen["agent_start"]:
            if re.search(plan["pattern"], msg):
                plan["nth_left"] -= 1
                if plan["nth_left"] <= 0:
                    plan["hit"] = msg[:60]

    def plan(self, i):
        rng = random.Random(f"{self.a.seed}:{i}")
        c = self.calib
        kind = rng.choices(["flush", "log", "write", "time", "after-done"],
                           weights=[35, 25, 12, 22, 6])[0]
        cache = rng.choices(["drop", "keep-subset", "keep-prefix"], weights=[50, 30, 20])[0]
        p = {"kind": kind, "cache": cache}
        if kind == "flush":
            p["k"] = rng.randint(1, max(1, c["flushes"]))
            p["after"] = rng.random() < 0.5
            p["trigger"] = ("flush", p["k"], p["after"])
            p["desc"] = f"flush #{p['k']}/{c['flushes']} ({'after' if p['after'] else 'before'} it)"
        elif kind == "write":
            p["k"] = rng.randint(1, max(1, c["writes"]))
            p["trigger"] = ("write", p["k"], False)
            p["desc"] = f"write #{p['k']}/{c['writes']}"
        elif kind == "time":
            p["at"] = rng.uniform(0, c["t"] * 1.05)
            p["desc"] = f"t+{p['at']:.2f}s/{c['t']:.1f}s"
        elif kind == "after-done":
            p["at"] = rng.uniform(0, 3)
            p["desc"] = f"idle +{p['at']:.2f}s"
        else:
            p["pattern"] = rng.choice(AIM)
            p["nth_left"] = 1 if p["pattern"].startswith("journal") else rng.randint(1, 2)
            p["delay"] = rng.choice([0, 0, rng.uniform(0, 0.4)])
            p["desc"] = f"log /{p['pattern']}/+{p['delay']*1000:.0f}ms"
        return p

    def host_check(self, tag, src=None, keep_log=True):
        """e2fsck replays the journal on a copy; debugfs copies the box; check-box."""
        cp = os.path.join(self.w, "copy.img")
        shutil.copyfile(src or self.disk.path, cp)
        r1 = subprocess.run(["e2fsck", "-fy", cp], capture_output=True, text=True)
        r2 = subprocess.run(["e2fsck", "-fn", cp], capture_output=True, text=True)
        out = os.path.join(self.w, "copy")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        subprocess.run(["debugfs", "-R", f"rdump /state /opt {out}", cp],
                       capture_output=True, text=True)
        b = subprocess.run([self.a.sim, "check-box", "--sums-required", f"{out}/state", f"{out}/opt"],
                           capture_output=True, text=True)
        problems = []
        # 0: clean; 1: errors fixed (journal replay alone gives 0 or 1 depending on
        # the version: what counts is that the second pass finds nothing).
        if r1.returncode > 1:
            problems.append(f"e2fsck -fy of the cut image: rc {r1.returncode}")
        if r2.returncode != 0:
            problems.append(f"e2fsck -fn after journal replay: rc {r2.returncode}: {r2.stdout.strip()[-300:]}")
        # The superblock's free block/inode totals are not journaled (ext4 recomputes
        # them at mount), so a replayed image always has them stale: not damage.
        lines = r1.stdout.splitlines()
        fixes = [ln for k, ln in enumerate(lines)
                 if re.search(r"Fix\? yes|Clear\? yes|Salvage", ln)
                 and not re.match(r"Free (blocks|inodes) count wrong \(", lines[k - 1] if k else "")
                 and not re.match(r"Free (blocks|inodes) count wrong \(", ln)]
        if fixes:
            problems.append("e2fsck had to repair: " + "; ".join(fixes[:3]))
        with open(os.path.join(self.w, f"{tag}-fsck.txt"), "w") if keep_log else open(os.devnull, "w") as f:
            f.write(f"== e2fsck -fy (rc {r1.returncode})\n{r1.stdout}{r1.stderr}\n"
                    f"== e2fsck -fn (rc {r2.returncode})\n{r2.stdout}{r2.stderr}\n")
        box = b.stdout.strip()
        if b.returncode != 0:
            problems.append(f"host {box}")
        os.unlink(cp)
        return box, problems

    def replay(self, base, rec):
        """dm-log-writes style: rebuild the image at every flush boundary of the
        recorded update (plus, at each, a random half of the writes that followed it
        before the next flush: what a drive may have written early), check each."""
        t0 = time.monotonic()
        segs, cur = [], []
        for e in rec or []:
            if e is None:
                segs.append(cur)
                cur = []
            else:
                cur.append(e)
        segs.append(cur)  # unflushed tail (lost at the cut)
        work = os.path.join(self.w, "replay.img")
        torn = os.path.join(self.w, "replay-torn.img")
        shutil.copyfile(base, work)
        fd = os.open(work, os.O_RDWR)
        rng = random.Random(f"{self.a.seed}:replay")
        points = bad = 0
        journals = {}
        try:
            for k, seg in enumerate(segs):
                # The image holds exactly what flushes 1..k made durable.
                variants = [(work, "exact")]
                if seg:
                    shutil.copyfile(work, torn)
                    tfd = os.open(torn, os.O_RDWR)
                    for off, data in seg:
                        for a in range(0, len(data), 4096):
                            if rng.random() < 0.5:
                                os.pwrite(tfd, data[a:a + 4096], off + a)
                    os.close(tfd)
                    variants.append((torn, "torn"))
                for img, kind in variants:
                    points += 1
                    box, prob = self.host_check(f"replay-{k:03d}-{kind}", img, keep_log=False)
                    j = _fact(box, "journal") or "?"
                    journals[j] = journals.get(j, 0) + 1
                    if prob:
                        bad += 1
                        print(f"replay: flush {k}/{len(segs) - 1} ({kind}): " + "; ".join(prob), flush=True)
                for off, data in seg if k < len(segs) - 1 else []:
                    os.pwrite(fd, data, off)
        finally:
            os.close(fd)
            for f in (work, torn):
                if os.path.exists(f):
                    os.unlink(f)
        n_w = sum(len(x) for x in segs)
        print(f"replay: {len(segs) - 1} flush boundaries of one update ({n_w} writes), "
              f"{points} images checked from the host in {time.monotonic() - t0:.0f} s, "
              f"{bad} bad; journal at the points: " +
              ", ".join(f"{k} {v}" for k, v in sorted(journals.items(), key=lambda kv: -kv[1])),
              flush=True)
        self.replay_result = (len(segs) - 1, points, bad)
        if bad:
            self.failures.append("replay")

    def fsck_image(self):
        r = subprocess.run(["e2fsck", "-fn", self.disk.path], capture_output=True, text=True)
        return r.returncode, r.stdout.strip()[-400:]

    def guest_result(self, res):
        g = res["seen"]["guest"]
        get = lambda p: next((x[len(p):].strip() for x in g if x.startswith(p)), None)
        return get

    def calibrate(self, res):
        s = res["seen"]
        if "work_t" in s:
            w, f = s["work_counts"]
            self.calib = {"t": s["work_t"], "writes": max(w, 1), "flushes": max(f, 1)}

    def run(self):
        a = self.a
        print(f"power-cut: seed {a.seed}, {a.cuts} cut(s), disk {self.disk.size >> 20} MiB "
              f"served by the volatile-cache NBD model", flush=True)
        v = self.next_version()
        res = self.boot("boot-000-setup", "setup", v, timeout=a.boot_timeout)
        get = self.guest_result(res)
        if get("SETUP-PASS") is None:
            print(f"power-cut: setup boot failed: {res['seen']['guest'][-5:]}")
            return 1
        self.calibrate(res)
        rc, txt = self.fsck_image()
        if rc != 0:
            print(f"power-cut: e2fsck after setup: rc {rc}\n{txt}")
            return 1
        print(f"power-cut: setup: version {v} installed in {self.calib['t']:.1f} s, "
              f"{self.calib['writes']} writes, {self.calib['flushes']} flushes", flush=True)
        t_start = time.monotonic()
        self.t_start = t_start
        if a.plans:
            self.plan_first_start_cuts()
            self.plan_crashes()
            if self.failures and a.stop_on_failure:
                self.summary(time.monotonic() - t_start)
                return 1
        if a.replay:
            # One update recorded write by write (cut when idle afterwards), then every
            # flush boundary of it rebuilt from the host and checked.
            base = os.path.join(self.w, "replay-base.img")
            shutil.copyfile(self.disk.path, base)
            p = {"kind": "after-done", "at": 1.0, "cache": "drop", "desc": "recorded update, idle +1s"}
            recorded = self.cycle(0, p, record=True)
            self.replay(base, recorded)
            os.unlink(base)
        for i in range(1, a.cuts + 1):
            self.cycle(i, self.plan(i))
            if self.failures and a.stop_on_failure:
                break
        self.summary(time.monotonic() - t_start)
        return 1 if self.failures else 0

    def plan_first_start_cuts(self, cuts=3):
        """Issue 26, item 4: `cuts` power cuts in a row during the first start of a
        freshly installed slot (the health check held, so before its commit): the
        first in the agent the daemon exec'd, the next ones in the slot's agent the
        init script starts at boot. Then a boot without the hold: the box must commit
        that slot (current on it, no failed-id, not marked bad)."""
        t0 = time.monotonic()
        v = self.next_version()
        problems = []
        for k in range(1, cuts + 1):
            p = {"kind": "log", "pattern": r"recovering an interrupted update at step switched",
                 "nth_left": 1, "delay": 1.0, "cache": rng_choice(self.a.seed, k), "desc": f"first start {k}"}
            res = self.boot(f"plan-a-{k}-firststart", "firststart", v, plan=p, timeout=self.a.boot_timeout)
            if "how" not in res:
                problems.append(f"cut {k}: no cut (the first start never reached its recovery): {res['seen']['guest'][-2:]}")
                break
            box, prob = self.host_check(f"plan-a-{k}")
            problems += [f"cut {k}: {x}" for x in prob]
            print(f"plan A: cut {k}/{cuts} at {res['instant']:.2f}s in the start's health check "
                  f"(cache {res['cache']}): {box}", flush=True)
        res = self.boot("plan-a-check", "plancheck", v, timeout=self.a.boot_timeout)
        got = self.guest_result(res)("PLAN-RESULT")
        print(f"plan A: after {cuts} cuts: {got}", flush=True)
        if got is None or self.guest_result(res)("PLAN-PASS") is None:
            problems.append(f"no result: {res['seen']['guest'][-3:]}")
        else:
            if _fact(got, "version") != v:
                problems.append(f"not on {v}")
            if "failed-id=none" not in got:
                problems.append("failed-id written")
            if "bad= " not in got + " ":
                problems.append("a slot marked bad")
            if "/usr/bin/" in (_fact(got, "exe") or ""):
                problems.append("the factory agent runs")
        rc, txt = self.fsck_image()
        if rc != 0:
            problems.append(f"e2fsck: {txt}")
        self.plan_report("A (3 cuts during a first start)", problems, t0)

    def plan_crashes(self):
        """Issue 26, item 4: an update whose agent crashes 2 s after every start; the
        guest restarts it whenever it is gone. After 3 failed starts in this boot the
        init script falls back to the factory agent, which rolls back and marks the
        slot bad (failed-id written: the same update is not installed again)."""
        t0 = time.monotonic()
        v = self.next_version()
        problems = []
        res = self.boot("plan-b-crashes", "crashes", v, timeout=self.a.boot_timeout)
        get = self.guest_result(res)
        got = get("PLAN-RESULT")
        print(f"plan B: {got}", flush=True)
        restarts = sum(1 for g in res["seen"]["guest"] if g.startswith("supervisor:"))
        log = open(os.path.join(self.w, "plan-b-crashes.log"), "rb").read().decode("utf-8", "replace")
        fell_back = "failed 3 starts: using /usr/bin/cybersensei-agent" in log
        print(f"plan B: {restarts} restart(s) by the supervisor; init script fell back after 3 failed starts: "
              f"{'yes' if fell_back else 'no'}", flush=True)
        if got is None or get("PLAN-PASS") is None:
            problems.append(f"no result: {res['seen']['guest'][-3:]}")
        else:
            if _fact(got, "version") == v:
                problems.append(f"still on {v}")
            if "failed-id=none" in got:
                problems.append("no failed-id")
            if "bad= " in got + " ":
                problems.append("no slot marked bad")
            if "/usr/bin/cybersensei-agent" not in got:
                problems.append("the factory agent does not run")
        if not fell_back:
            problems.append("the init script did not fall back after 3 failed starts")
        rc, txt = self.fsck_image()
        if rc != 0:
            problems.append(f"e2fsck: {txt}")
        self.plan_report("B (3 crashes at start)", problems, t0)

    def plan_report(self, name, problems, t0):
        ok = "PASS" if not problems else "FAIL"
        print(f"plan {name}: {ok} in {time.monotonic() - t0:.0f} s", flush=True)
        for pr in problems:
            print(f"      problem: {pr}", flush=True)
        if problems:
            self.failures.append(f"plan {name}")

    def cycle(self, i, p, record=False):
        """One cut and its check: work boot (cut), host check, check boot, e2fsck."""
        a = self.a
        v = self.next_version()
        name = f"boot-{i:03d}"
        self.disk.record = [] if record else None
        res = self.boot(f"{name}-work", "work", v, plan=p, timeout=a.boot_timeout)
        recorded, self.disk.record = self.disk.record, None
        self.disk.trigger = None
        row = {"i": i, "plan": p["desc"], "cache": p["cache"], "problems": []}
        if "how" not in res:
            # No cut: the guest powered off by itself (it failed) or the boot timed out.
            if not res["seen"].get("timeout"):
                row["problems"].append("no cut happened: the guest stopped by itself")
            row["instant"] = "-"
            row["flight"] = "(not cut: " + ("timeout" if res["seen"].get("timeout") else "ended") + ")"
            row["cachesum"] = "-"
            if res["seen"].get("timeout") and res["seen"]["done"] is None:
                row["problems"].append("work boot timed out before the update was done")
        else:
            row["instant"] = f"{res['instant']:.2f}s"
            row["flight"] = res["seen"]["phase"] if res["seen"]["agent_start"] else "boot (before agent)"
            if res["seen"]["done"] is not None:
                row["flight"] = "idle after update"
            row["cachesum"] = res["cache"]
            row["counts"] = res["counts"]
        hbox, hprob = self.host_check(name)
        row["problems"] += hprob
        row["host_box"] = hbox
        v2 = self.next_version()
        res2 = self.boot(f"{name}-check", "check", v2, timeout=a.boot_timeout)
        get = self.guest_result(res2)
        pre, rec, post = get("PRE "), get("RECOVERED"), get("UPDATED")
        row["journal"] = _fact(pre, "journal") or "?"
        row["back_on"] = f"{_fact(rec, 'current') or '?'} {_fact(rec, 'version') or '?'} {_fact(rec, 'status') or ''}".strip()
        row["further"] = v2 if post is not None else "NO"
        if pre is None or not pre.startswith("BOX ok"):
            row["problems"].append(f"guest pre-check: {pre}")
        if rec is None:
            row["problems"].append("the agent did not finish or undo the interrupted update")
        if post is None:
            fail = get("FAIL") or res2["seen"]["guest"][-1:] 
            row["problems"].append(f"further update {v2} not installed: {fail}")
        elif get("CHECK-PASS") is None:
            row["problems"].append(f"check boot did not pass: {res2['seen']['guest'][-2:]}")
        if pre and hbox and _strip(pre) != _strip(hbox):
            row["problems"].append(f"host and guest disagree: host {hbox} / guest {pre}")
        rc, txt = self.fsck_image()
        if rc != 0:
            row["problems"].append(f"e2fsck -fn of the image after the check boot: rc {rc}: {txt}")
        self.calibrate(res2)
        self.rows.append(row)
        ok = "ok" if not row["problems"] else "FAIL"
        print(f"{'cut' if i else 'rec'} {i:3d}/{a.cuts} {ok:4s} {row['instant']:>7s} {row['plan']:<34s} "
              f"in flight: {row['flight']:<22s} journal: {row['journal']:<12s} "
              f"cache: {row['cachesum']:<40s} back on: {row['back_on']:<24s} "
              f"then {row['further']}  [{time.monotonic() - self.t_start:.0f}s]", flush=True)
        for pr in row["problems"]:
            print(f"      problem: {pr}", flush=True)
        if row["problems"]:
            self.failures.append(i)
        return recorded

    def summary(self, secs):
        rows = self.rows
        print()
        print(f"power-cut: {len(rows)} cut(s) in {secs:.0f} s, seed {self.a.seed}, "
              f"{len(self.failures)} failure(s)")
        tally = {}
        for r in rows:
            tally[r["flight"]] = tally.get(r["flight"], 0) + 1
        print("power-cut: in flight at the cut: " +
              ", ".join(f"{k} {v}" for k, v in sorted(tally.items(), key=lambda kv: -kv[1])))
        tj = {}
        for r in rows:
            tj[r["journal"]] = tj.get(r["journal"], 0) + 1
        print("power-cut: journal found after the cut: " +
              ", ".join(f"{k} {v}" for k, v in sorted(tj.items(), key=lambda kv: -kv[1])))
        if self.failures:
            print(f"power-cut: FAIL (cuts {self.failures}); consoles in {self.w}")
        else:
            print("power-cut: PASS")


def rng_choice(seed, k):
    return random.Random(f"{seed}:plan-a:{k}").choice(["drop", "keep-subset", "keep-prefix"])


def _fact(line, key):
    if not line:
        return None
    m = re.search(rf"\b{key}=(\S+)", line)
    return m.group(1) if m else None


def _strip(box):
    # The guest sees the same files as the host copy; ignore nothing but whitespace.
    return " ".join(box.split())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--qemu", required=True, help="the machine's command line (board/guest.sh)")
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--sim", required=True, help="host build of cybersensei-sim (check-box)")
    ap.add_argument("--cuts", type=int, default=10)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--boot-timeout", type=int, default=300)
    ap.add_argument("--stop-on-failure", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--plans", action="store_true",
                    help="the two plans: cuts during a first start, crashes at start")
    ap.add_argument("--replay", action="store_true",
                    help="record one update and check every flush boundary from the host")
    a = ap.parse_args()
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 1 << 31)
    sys.exit(Run(a).run())


if __name__ == "__main__":
    main()
