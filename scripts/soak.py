#!/usr/bin/env python3
"""Soak: the exporters against a churning node and a hostile scraper; prints a table over time.

Starts a real anvil node, `ethwatch execution` against it and `ethwatch network` watching it, then
for --duration seconds:
- churns the node: every --churn seconds anvil is stopped, left down 5 s, and started again on
  the same port (a fresh chain each time);
- attacks both exporters' listeners: --trickle connections sending a request head one byte a
  second, --idle silent connections (both reopened as the server closes them), and a flood of
  --flood scrapes per second;
- scrapes each exporter once a second like Prometheus and counts the answers.

Every --every seconds it prints one row per exporter: resident memory (VmRSS) and its peak
(VmHWM) in MiB, open file descriptors, the share of the normal scrapes answered 200 in that
window, and eth_el_up as the execution exporter reports it. A benchmark, not a test: it asserts
nothing. Needs ETHWATCH_ANVIL (scripts/tools.sh) and an ethwatch binary (--bin).

Usage: scripts/soak.py [--bin target/release/ethwatch] [--duration 3600] [--every 60]
"""

import argparse
import os
import resource
import socket
import subprocess
import sys
import threading
import time

from benchlib import fds, free_port, http_get, proc_mem, wait_port


def get(port, path="/metrics", timeout=5):
    return http_get(port, path, timeout)


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            try:
                return float(line.rsplit(" ", 1)[1])
            except ValueError:
                return None
    return None


class Anvil:
    def __init__(self, bin_, port):
        self.bin, self.port, self.p = bin_, port, None

    def start(self):
        self.p = subprocess.Popen(
            [self.bin, "--host", "127.0.0.1", "--port", str(self.port), "--block-time", "1",
             "--prune-history", "--silent"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        if self.p:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
            self.p = None


def hostile(port, trickle, idle, flood, stop):
    """Keeps `trickle` + `idle` hostile connections open and floods `flood` scrapes a second."""
    conns = []

    def refill():
        alive = []
        for kind, s in conns:
            try:
                if kind == "trickle":
                    s.send(b"X")
                alive.append((kind, s))
            except OSError:
                s.close()
        conns[:] = alive
        for kind, want in (("trickle", trickle), ("idle", idle)):
            have = sum(1 for k, _ in conns if k == kind)
            for _ in range(want - have):
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=1)
                    s.setblocking(False)
                    if kind == "trickle":
                        s.send(b"GET /metrics HTTP/1.1\r\nHost: h\r\n")
                    conns.append((kind, s))
                except OSError:
                    break

    def flooder():
        while not stop.is_set():
            t = time.monotonic()
            for _ in range(flood):
                get(port, timeout=2)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))

    if flood:
        threading.Thread(target=flooder, daemon=True).start()
    while not stop.is_set():
        refill()
        time.sleep(1)
    for _, s in conns:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/ethwatch")
    ap.add_argument("--duration", type=float, default=3600)
    ap.add_argument("--every", type=float, default=60)
    ap.add_argument("--churn", type=float, default=60)
    ap.add_argument("--trickle", type=int, default=300)
    ap.add_argument("--idle", type=int, default=300)
    ap.add_argument("--flood", type=int, default=20)
    a = ap.parse_args()
    anvil_bin = os.environ.get("ETHWATCH_ANVIL")
    if not anvil_bin:
        sys.exit("ETHWATCH_ANVIL is not set: source ~/.cache/ethwatch/tools/env.sh")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))

    anvil = Anvil(anvil_bin, free_port())
    anvil.start()
    rpc = f"http://127.0.0.1:{anvil.port}"
    ex_port, nw_port = free_port(), free_port()
    exps = {
        "execution": subprocess.Popen(
            [a.bin, "execution", "--rpc-url", rpc, "--web.listen-address", f"127.0.0.1:{ex_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        "network": subprocess.Popen(
            [a.bin, "network", "--execution-target", f"el={rpc}",
             "--web.listen-address", f"127.0.0.1:{nw_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    }
    ports = {"execution": ex_port, "network": nw_port}
    for p in ports.values():
        wait_port(p)

    stop = threading.Event()
    for p in ports.values():
        threading.Thread(target=hostile, args=(p, a.trickle, a.idle, a.flood, stop),
                         daemon=True).start()

    ok = {k: 0 for k in ports}
    tried = {k: 0 for k in ports}
    up = {"v": None}

    def scraper():
        while not stop.is_set():
            t = time.monotonic()
            for k, p in ports.items():
                data = get(p)
                tried[k] += 1
                if data.startswith(b"HTTP/1.1 200"):
                    ok[k] += 1
                    if k == "execution":
                        up["v"] = metric(data.decode("utf-8", "replace"), "eth_el_up")
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))

    threading.Thread(target=scraper, daemon=True).start()

    print(f"soak: {a.duration:.0f} s, node churn every {a.churn:.0f} s, per exporter "
          f"{a.trickle} trickling + {a.idle} idle connections and {a.flood} flood scrapes/s")
    print()
    print("| t (s) | exporter | RSS (MiB) | peak RSS (MiB) | open fds | scrapes ok | eth_el_up |")
    print("|---|---|---|---|---|---|---|")
    start = time.monotonic()
    next_churn = start + a.churn
    next_row = start + a.every
    try:
        while time.monotonic() - start < a.duration:
            now = time.monotonic()
            if now >= next_churn:
                anvil.stop()
                time.sleep(5)
                anvil.start()
                next_churn = time.monotonic() + a.churn
            if now >= next_row:
                for k, pr in exps.items():
                    m = proc_mem(pr.pid)
                    share = ok[k] / tried[k] if tried[k] else 0.0
                    upv = "" if k != "execution" or up["v"] is None else f"{up['v']:.0f}"
                    dead = " (exited)" if pr.poll() is not None else ""
                    print(f"| {now - start:.0f} | {k}{dead} | {m['VmRSS'] / 1024:.1f} | "
                          f"{m['VmHWM'] / 1024:.1f} | {fds(pr.pid)} | {ok[k]}/{tried[k]} "
                          f"({100 * share:.0f} %) | {upv} |", flush=True)
                    ok[k] = tried[k] = 0
                next_row += a.every
            time.sleep(0.2)
    finally:
        stop.set()
        for pr in exps.values():
            pr.terminate()
        for pr in exps.values():
            try:
                pr.wait(10)
            except subprocess.TimeoutExpired:
                pr.kill()
        anvil.stop()


if __name__ == "__main__":
    sys.exit(main())
