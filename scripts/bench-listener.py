#!/usr/bin/env python3
"""Hostile clients against the exporter's HTTP listener; prints a table (docs/benchmarks.md).

Starts `ethwatch network` (no node needed: one static target on a closed loopback port) and runs
each scenario against it on loopback, reading the exporter's VmRSS and VmHWM from /proc and
timing a normal scrape while the attack is on:

- trickle:  N connections each sending a request head one byte every 0.5 s (never finishing);
- bighead:  N connections each sending 390 KB of an unfinished header, then holding;
- idle:     N connections that connect and send nothing.

Usage: scripts/bench-listener.py [--bin target/release/ethwatch] [--conns 2000] [--hold 15]
A benchmark, not a test: it prints figures and asserts nothing.
"""

import argparse
import resource
import socket
import subprocess
import sys
import threading
import time

from benchlib import fds, free_port, http_get, proc_mem, wait_port


def scrape_ms(port):
    t = time.monotonic()
    ok = http_get(port).startswith(b"HTTP/1.1 200")
    return (time.monotonic() - t) * 1000, ok


def attack(kind, port, n, hold, stop):
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.setblocking(False)
            if kind == "bighead":
                head = b"GET /metrics HTTP/1.1\r\nHost: b\r\nX-Big: " + b"a" * (390 * 1024)
                try:
                    s.sendall(head)
                except OSError:
                    pass
            elif kind == "trickle":
                try:
                    s.send(b"GET /metrics HTTP/1.1\r\nHost: b\r\n")
                except OSError:
                    pass
            socks.append(s)
        except OSError:
            pass
    end = time.monotonic() + hold
    while time.monotonic() < end and not stop.is_set():
        if kind == "trickle":
            for s in socks:
                try:
                    s.send(b"X")
                except OSError:
                    pass
        time.sleep(0.5)
    alive = 0
    for s in socks:
        # Open means: no EOF and no reset; an answer (431) followed by EOF counts as closed.
        state = "open"
        try:
            while True:
                chunk = s.recv(65536)
                if chunk == b"":
                    state = "closed"
                    break
        except BlockingIOError:
            pass
        except OSError:
            state = "closed"
        alive += state == "open"
        s.close()
    return len(socks), alive


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/ethwatch")
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--hold", type=float, default=15.0)
    ap.add_argument("--extra", default="", help="extra flags for ethwatch")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, a.conns * 2 + 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))

    rows = []
    for kind in ("trickle", "bighead", "idle"):
        port = free_port()
        cmd = [a.bin, "network", "--execution-target", "el=http://127.0.0.1:1",
               "--web.listen-address", f"127.0.0.1:{port}"] + a.extra.split()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, 5)
            time.sleep(1)
            base = proc_mem(p.pid)
            stop = threading.Event()
            result = {}
            t = threading.Thread(target=lambda: result.update(
                r=attack(kind, port, a.conns, a.hold, stop)))
            t.start()
            time.sleep(min(5, a.hold / 2))
            during = proc_mem(p.pid)
            nfds = fds(p.pid)
            lat, ok = scrape_ms(port)
            t.join()
            opened, alive = result["r"]
            time.sleep(1)
            after = proc_mem(p.pid)
            rows.append((kind, opened, alive, nfds, base["VmRSS"], during["VmRSS"],
                         after["VmHWM"], after["VmRSS"], lat, ok))
        finally:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    print(f"{a.conns} hostile connections per scenario, held {a.hold:.0f} s; memory in MiB")
    print()
    print("| scenario | connected | still open at end | exporter fds during | RSS before | "
          "RSS during | peak RSS | RSS after | scrape during (ms) | scrape ok |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]/1024:.1f} | {r[5]/1024:.1f} | "
              f"{r[6]/1024:.1f} | {r[7]/1024:.1f} | {r[8]:.0f} | {'yes' if r[9] else 'no'} |")


if __name__ == "__main__":
    sys.exit(main())
