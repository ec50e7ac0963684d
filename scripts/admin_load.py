#!/usr/bin/env python3
"""One client process for scripts/bench_admin_load.sh: sends N requests to the admin API,
the routes the status page polls, over one fresh connection each (the listener serves one
request per connection), either paced evenly over SECONDS or back to back (SECONDS = 0);
N = 0: back to back until SECONDS have passed.
Prints "requests errors wall_s listener_cpu_ms client_cpu_ms lat_median_ms lat_p99_ms lat_max_ms"
where listener_cpu_ms is the CPU time of the daemon's `admin-api` thread during the requests
(/proc/PID/task/TID/schedstat, ns) and lat_* the time from connect to the whole answer.
Usage: [ADMIN_PATHS="/a /b"] admin_load.py PORT N SECONDS AGENT_PID"""
import os, socket, sys, time

port, n, span, pid = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
# ADMIN_PATHS (space-separated) replaces the page's four routes, to cost one at a time.
PATHS = os.environ.get("ADMIN_PATHS", "").split() or [
    "/api/update/check", "/api/agent/progress", "/api/agent/status", "/api/update/history"]


def listener_tid():
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() == "admin-api":
                    return tid
        except OSError:
            pass
    return None


def cpu_ns(tid):
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def get(path):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        return data.startswith(b"HTTP/1.1 200")
    finally:
        s.close()


tid = listener_tid()
c0 = cpu_ns(tid) if tid else 0
errors = 0
t0 = time.monotonic()
i = 0
lat = []
while (i < n) if n > 0 else (time.monotonic() - t0 < span):
    if n > 0 and span > 0:
        d = t0 + i * span / n - time.monotonic()
        if d > 0:
            time.sleep(d)
    t = time.monotonic()
    try:
        if not get(PATHS[i % len(PATHS)]):
            errors += 1
    except OSError:
        errors += 1
    lat.append(time.monotonic() - t)
    i += 1
wall = time.monotonic() - t0
c1 = cpu_ns(tid) if tid else 0
own = os.times()
lat.sort()
q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1e3 if lat else 0.0
print(f"{i} {errors} {wall:.3f} {(c1 - c0) / 1e6:.1f} {(own.user + own.system) * 1e3:.0f}"
      f" {q(0.5):.2f} {q(0.99):.2f} {q(1.0):.2f}")
