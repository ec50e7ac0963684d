#!/usr/bin/env python3
"""A TCP relay that limits the backend-to-box direction to MBPS megabits a second, as a
box's link would (scripts/bench_admin_load.sh LINK_MBPS=...): the bytes, TLS included,
pass unchanged. Prints "PORT n" once listening.
Usage: link_relay.py TARGET_PORT MBPS"""
import socket, sys, threading, time

target, mbps = int(sys.argv[1]), float(sys.argv[2])
rate = mbps * 1e6 / 8  # bytes a second


def pipe(src, dst, limit):
    sent, t0 = 0, time.monotonic()
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
            if limit:
                sent += len(b)
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", 0))
ls.listen(16)
print(f"PORT {ls.getsockname()[1]}", flush=True)
while True:
    c, _ = ls.accept()
    try:
        u = socket.create_connection(("127.0.0.1", target))
    except OSError:
        c.close()
        continue
    threading.Thread(target=pipe, args=(c, u, False), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c, True), daemon=True).start()
