#!/usr/bin/env python3
"""A counting HTTP proxy in front of a JSON-RPC node, for scripts/bench.sh.

    countproxy.py --listen 127.0.0.1:PORT --upstream http://127.0.0.1:NODE_PORT [--counts-file F]

Every POST is forwarded as is to the upstream (one kept-alive connection per client
connection) and its answer is sent back unchanged. On the way it counts:

  requests       HTTP requests (POSTs) forwarded to the node
  calls          JSON-RPC calls, batches counted item by item
  batches        requests whose body was a JSON array
  head_polls     eth_getBlockByNumber("latest") calls: the exporter asks for the latest block
                 once per poll cycle, so this counts cycles as the node saw them
  methods        calls per method
  errors         requests the proxy could not forward (answered 502)
  bytes_in/out   request and response body bytes

`GET /counts` answers the counters as one JSON object (they only grow, so a window is the
difference of two readings); with --counts-file they are also written there at exit.
Websocket upgrades are not proxied: connect a websocket client to the node directly.
Binds only the address given (use loopback). Python 3 standard library only.
"""

import argparse
import http.client
import json
import signal
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.calls = 0
        self.batches = 0
        self.head_polls = 0
        self.errors = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.methods = {}

    def record(self, body: bytes):
        try:
            msg = json.loads(body)
        except ValueError:
            msg = None
        items = msg if isinstance(msg, list) else [msg]
        with self.lock:
            self.requests += 1
            self.bytes_in += len(body)
            if isinstance(msg, list):
                self.batches += 1
            for item in items:
                self.calls += 1
                method = item.get("method") if isinstance(item, dict) else None
                method = method if isinstance(method, str) else "<unparsed>"
                self.methods[method] = self.methods.get(method, 0) + 1
                if method == "eth_getBlockByNumber":
                    params = item.get("params")
                    if isinstance(params, list) and params and params[0] == "latest":
                        self.head_polls += 1

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "requests": self.requests,
                "calls": self.calls,
                "batches": self.batches,
                "head_polls": self.head_polls,
                "errors": self.errors,
                "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out,
                "methods": dict(sorted(self.methods.items())),
            }


def make_handler(upstream: urllib.parse.ParseResult, counts: Counts, timeout: float):
    host = upstream.hostname
    port = upstream.port or 80
    path = upstream.path or "/"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like a real node

        def setup(self):
            super().setup()
            self.upstream_conn = None

        def finish(self):
            super().finish()
            if self.upstream_conn is not None:
                self.upstream_conn.close()

        def log_message(self, fmt, *args):  # quiet: one line per request would swamp the log
            pass

        def read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def reply(self, status: int, body: bytes, ctype: str):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path.split("?")[0] == "/counts":
                body = json.dumps(counts.snapshot()).encode() + b"\n"
                self.reply(200, body, "application/json")
            else:
                self.reply(404, b"not found\n", "text/plain")

        def forward(self, body: bytes):
            if self.upstream_conn is None:
                self.upstream_conn = http.client.HTTPConnection(host, port, timeout=timeout)
            headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
            if self.headers.get("Authorization"):
                headers["Authorization"] = self.headers["Authorization"]
            self.upstream_conn.request("POST", path, body=body, headers=headers)
            res = self.upstream_conn.getresponse()
            return res.status, res.read(), res.getheader("Content-Type", "application/json")

        def do_POST(self):
            body = self.read_body()
            counts.record(body)
            try:
                try:
                    status, data, ctype = self.forward(body)
                except (http.client.HTTPException, ConnectionError):
                    # The node closed an idle kept-alive connection: retry once on a new one.
                    if self.upstream_conn is not None:
                        self.upstream_conn.close()
                    self.upstream_conn = None
                    status, data, ctype = self.forward(body)
            except OSError as e:
                with counts.lock:
                    counts.errors += 1
                self.upstream_conn = None
                self.reply(502, f"upstream: {e}\n".encode(), "text/plain")
                return
            with counts.lock:
                counts.bytes_out += len(data)
            self.reply(status, data, ctype)

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT to bind (loopback)")
    ap.add_argument("--upstream", required=True, help="the node's JSON-RPC URL (http://...)")
    ap.add_argument("--counts-file", help="write the counts here as JSON at exit")
    ap.add_argument("--timeout", type=float, default=10.0, help="upstream timeout in seconds")
    args = ap.parse_args()

    host, _, port = args.listen.rpartition(":")
    upstream = urllib.parse.urlparse(args.upstream)
    if upstream.scheme != "http" or not upstream.hostname:
        sys.exit(f"countproxy: --upstream must be an http:// URL, got {args.upstream!r}")
    counts = Counts()
    server = ThreadingHTTPServer((host, int(port)), make_handler(upstream, counts, args.timeout))
    server.daemon_threads = True

    def stop(_signum, _frame):
        # shutdown() waits for serve_forever() to return, so it must run on another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"countproxy: listening on {host}:{server.server_address[1]}, "
          f"forwarding to {args.upstream}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if args.counts_file:
            with open(args.counts_file, "w") as f:
                json.dump(counts.snapshot(), f, indent=1)
                f.write("\n")


if __name__ == "__main__":
    main()
