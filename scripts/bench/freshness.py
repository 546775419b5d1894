#!/usr/bin/env python3
"""Freshness of exporters: from a new block on the node to the block showing in /metrics.

    freshness.py --el-ws ws://127.0.0.1:P --cl-url http://127.0.0.1:P --blocks 50 --out F.json \
        --target NAME=LAYER=URL=METRIC[{LABEL="VALUE",...}] ...

Subscribes to the nodes directly: `eth_subscribe newHeads` on the execution node's websocket and
`/eth/v1/events?topics=head` on the beacon node. The moment a subscriber has parsed a new block
(number or slot) is its time zero, on this process's monotonic clock (anvil's block timestamps
are whole seconds, so they cannot serve). Then every target of that layer is scraped until its
metric (the line whose name and labels match; extra labels are allowed) shows that number or a
higher one; the block's freshness for that target is the time the answer of that scrape had
arrived, minus time zero: an upper bound, by at most one scrape's duration. While a target has
blocks pending it is scraped every 5 ms for the first 300 ms, then every 20 ms; idle targets are
not scraped.

It stops when every layer that has targets has at least --blocks blocks seen by all its targets
(or after --timeout seconds), and writes {target: {"layer":, "ms": [...], "lower_ms": [...],
"unresolved": n}} where lower_ms uses the time the scrape was sent (a lower bound). A block that
no scrape showed within 60 s is counted as unresolved. Python 3 standard library only.
"""

import argparse
import base64
import http.client
import json
import os
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse

LOCK = threading.Condition()
STOP = threading.Event()


class Target:
    def __init__(self, spec: str):
        name, layer, url, metric = spec.split("=", 3)
        self.name, self.layer, self.url = name, layer, url
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?", metric)
        if not m:
            raise SystemExit(f"freshness: bad metric {metric!r}")
        self.metric = m.group(1)
        self.labels = re.findall(r'[a-zA-Z_]+="[^"]*"', m.group(3) or "")
        self.pending = []  # (number, t0)
        self.ms = []
        self.lower_ms = []
        self.unresolved = 0
        self.resolved_numbers = set()
        self.scrapes = 0
        self.errors = 0

    def value(self, text: str):
        best = None
        prefix = self.metric
        for line in text.split("\n"):
            if not line.startswith(prefix):
                continue
            rest = line[len(prefix):]
            if rest[:1] not in ("{", " "):
                continue
            if rest.startswith("{"):
                labels, _, tail = rest[1:].partition("} ")
                if any(lbl not in labels for lbl in self.labels):
                    continue
            else:
                if self.labels:
                    continue
                tail = rest[1:]
            try:
                v = float(tail.split()[0])
            except (ValueError, IndexError):
                continue
            best = v if best is None else max(best, v)
        return best

    def run(self):
        u = urllib.parse.urlsplit(self.url)
        conn = None
        while not STOP.is_set():
            with LOCK:
                while not self.pending and not STOP.is_set():
                    LOCK.wait(0.5)
                if STOP.is_set():
                    return
                oldest = min(t for _, t in self.pending)
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
                t_send = time.monotonic()
                conn.request("GET", u.path or "/metrics", headers={"Accept-Encoding": "identity"})
                body = conn.getresponse().read().decode("utf-8", "replace")
                t_recv = time.monotonic()
                self.scrapes += 1
            except (OSError, http.client.HTTPException):
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
                continue
            v = self.value(body)
            with LOCK:
                keep = []
                for n, t0 in self.pending:
                    if v is not None and v >= n:
                        self.ms.append((t_recv - t0) * 1000)
                        self.lower_ms.append(max(0.0, (t_send - t0) * 1000))
                        self.resolved_numbers.add(n)
                    elif t_recv - t0 > 60:
                        self.unresolved += 1
                    else:
                        keep.append((n, t0))
                self.pending = keep
                LOCK.notify_all()
            age = time.monotonic() - oldest
            time.sleep(0.005 if age < 0.3 else 0.02)


def announce(layer: str, number: int, targets, seen: dict):
    t0 = time.monotonic()
    with LOCK:
        if number in seen[layer]:
            return
        seen[layer][number] = t0
        for t in targets:
            if t.layer == layer:
                t.pending.append((number, t0))
        LOCK.notify_all()


# --- a minimal websocket client (RFC 6455), enough for eth_subscribe ----------------------------
def ws_connect(url: str) -> socket.socket:
    u = urllib.parse.urlsplit(url)
    s = socket.create_connection((u.hostname, u.port or 80), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {u.path or '/'} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
              .encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            raise ConnectionError("websocket handshake closed")
        head += chunk
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise ConnectionError(f"websocket handshake refused: {head[:80]!r}")
    s.settimeout(None)
    return s


def ws_send(s: socket.socket, payload: bytes, opcode: int = 1):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("websocket closed")
        buf += chunk
    return buf


def ws_messages(s: socket.socket):
    message = b""
    while True:
        b1, b2 = recv_exact(s, 2)
        opcode, n = b1 & 0x0F, b2 & 0x7F
        if n == 126:
            n = struct.unpack("!H", recv_exact(s, 2))[0]
        elif n == 127:
            n = struct.unpack("!Q", recv_exact(s, 8))[0]
        mask = recv_exact(s, 4) if b2 & 0x80 else None
        data = recv_exact(s, n)
        if mask:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        if opcode == 9:
            ws_send(s, data, 10)
        elif opcode == 8:
            return
        elif opcode in (0, 1, 2):
            message += data
            if b1 & 0x80:
                yield message
                message = b""


def el_subscriber(url: str, targets, seen):
    while not STOP.is_set():
        try:
            s = ws_connect(url)
            ws_send(s, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                                   "params": ["newHeads"]}).encode())
            for msg in ws_messages(s):
                if STOP.is_set():
                    return
                d = json.loads(msg)
                head = (d.get("params") or {}).get("result")
                if isinstance(head, dict) and "number" in head:
                    announce("el", int(head["number"], 16), targets, seen)
        except (OSError, ValueError) as e:
            print(f"freshness: execution subscription: {e}; reconnecting", file=sys.stderr)
            time.sleep(1)


def cl_subscriber(base: str, targets, seen):
    u = urllib.parse.urlsplit(base)
    while not STOP.is_set():
        try:
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=None)
            conn.request("GET", "/eth/v1/events?topics=head", headers={"Accept": "text/event-stream"})
            res = conn.getresponse()
            if res.status != 200:
                raise ConnectionError(f"events: HTTP {res.status}")
            event = None
            while not STOP.is_set():
                line = res.readline()
                if not line:
                    raise ConnectionError("event stream closed")
                line = line.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "head":
                    announce("cl", int(json.loads(line[5:])["slot"]), targets, seen)
                elif not line:
                    event = None
        except (OSError, ValueError, http.client.HTTPException) as e:
            print(f"freshness: beacon event stream: {e}; reconnecting", file=sys.stderr)
            time.sleep(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--el-ws")
    ap.add_argument("--cl-url")
    ap.add_argument("--blocks", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--out", required=True)
    ap.add_argument("--target", action="append", default=[], help="NAME=LAYER=URL=METRIC")
    args = ap.parse_args()
    targets = [Target(t) for t in args.target]
    layers = sorted({t.layer for t in targets})
    seen = {"el": {}, "cl": {}}
    threads = [threading.Thread(target=t.run, daemon=True) for t in targets]
    if "el" in layers:
        threads.append(threading.Thread(target=el_subscriber, args=(args.el_ws, targets, seen), daemon=True))
    if "cl" in layers:
        threads.append(threading.Thread(target=cl_subscriber, args=(args.cl_url, targets, seen), daemon=True))
    for th in threads:
        th.start()
    deadline = time.monotonic() + args.timeout
    last_report = 0.0
    while time.monotonic() < deadline:
        time.sleep(0.5)
        with LOCK:
            done = all(min(len(t.ms) for t in targets if t.layer == layer) >= args.blocks
                       for layer in layers)
            counts = {t.name: len(t.ms) for t in targets}
        if time.monotonic() - last_report > 20:
            print(f"freshness: blocks seen so far {counts}", file=sys.stderr)
            last_report = time.monotonic()
        if done:
            break
    STOP.set()
    with LOCK:
        LOCK.notify_all()
        out = {t.name: {"layer": t.layer, "ms": t.ms, "lower_ms": t.lower_ms,
                        "unresolved": t.unresolved, "scrapes": t.scrapes,
                        "scrape_errors": t.errors} for t in targets}
    with open(args.out, "w") as f:
        json.dump(out, f)
    short = [t.name for t in targets if len(t.ms) < args.blocks]
    if short:
        print(f"freshness: fewer than {args.blocks} blocks for {short} before the timeout", file=sys.stderr)


if __name__ == "__main__":
    main()
