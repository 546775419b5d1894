#!/usr/bin/env python3
"""A counting HTTP proxy for the Beacon API that streams answers through, for scripts/bench-compare.sh.

    streamproxy.py --listen 127.0.0.1:PORT --upstream http://127.0.0.1:NODE_PORT [--counts-file F]

scripts/bench/countproxy.py counts JSON-RPC POSTs but buffers every answer, so it cannot carry an
event stream (/eth/v1/events never ends). This one forwards any request (GET, POST, ...) on a
kept-alive upstream connection per client connection and copies the answer back as it arrives:
fixed-length bodies, chunked bodies chunk by chunk, and bodies that end with the connection (or
never end: server-sent events) byte by byte as they come, so a streamed event reaches the client
without waiting. On the way it counts:

  requests       HTTP requests forwarded to the node (an event stream is one request)
  routes         requests per route: the path without its query, with ids, numbers and roots
                 replaced by {id} (/eth/v2/beacon/blocks/0xab... -> /eth/v2/beacon/blocks/{id})
  streams        requests for /eth/v1/events (each (re)connection counts once)
  open_streams   those still open right now (counted from the request: Lodestar 1.5.1 sends the
                 answer's head only with the first event)
  errors         requests the proxy could not forward (answered 502)
  bytes_in/out   request and response bytes (heads included)

`GET /counts` answers the counters as one JSON object (they only grow, except open_streams);
with --counts-file they are also written there at exit. Binds only the address given (use
loopback). Python 3 standard library only.
"""

import argparse
import asyncio
import json
import re
import signal
import sys
import urllib.parse

ID_SEGMENT = re.compile(r"^(0x[0-9a-fA-F]*|[0-9]+|head|finalized|justified)$")


def route_of(target: str) -> str:
    path = urllib.parse.urlsplit(target).path or "/"
    parts = [("{id}" if ID_SEGMENT.match(p) else p) for p in path.split("/")]
    return "/".join(parts)


class Counts:
    def __init__(self):
        self.requests = 0
        self.routes = {}
        self.streams = 0
        self.open_streams = 0
        self.errors = 0
        self.bytes_in = 0
        self.bytes_out = 0

    def snapshot(self) -> dict:
        return {
            "requests": self.requests,
            "routes": dict(sorted(self.routes.items())),
            "streams": self.streams,
            "open_streams": self.open_streams,
            "errors": self.errors,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }


async def read_head(reader: asyncio.StreamReader):
    """Read an HTTP message head; returns (first line, [(name, value)], raw bytes) or None at EOF."""
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers, raw


def header(headers, name):
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


async def read_request_body(reader, headers) -> bytes:
    te = (header(headers, "Transfer-Encoding") or "").lower()
    if "chunked" in te:
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return b"".join(chunks)
            chunks.append((await reader.readexactly(size + 2))[:-2])
    return await reader.readexactly(int(header(headers, "Content-Length") or 0))


async def copy_response_body(reader, writer, headers, counts) -> bool:
    """Copy one response body from the node to the client as it arrives. Returns False when the
    body ended with the connection (the caller must close)."""
    te = (header(headers, "Transfer-Encoding") or "").lower()
    length = header(headers, "Content-Length")
    if "chunked" in te:
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            data = await reader.readexactly(size + 2) if size else b""
            writer.write(line + data)
            counts.bytes_out += len(line) + len(data)
            if size == 0:
                while True:  # trailers, up to the empty line
                    t = await reader.readuntil(b"\r\n")
                    writer.write(t)
                    if t == b"\r\n":
                        break
                await writer.drain()
                return True
            await writer.drain()
    if length is not None:
        left = int(length)
        while left:
            data = await reader.read(min(left, 65536))
            if not data:
                raise ConnectionError("body cut short")
            writer.write(data)
            counts.bytes_out += len(data)
            left -= len(data)
            await writer.drain()
        return True
    # Until the connection closes (server-sent events without chunking end this way).
    while True:
        data = await reader.read(65536)
        if not data:
            return False
        writer.write(data)
        counts.bytes_out += len(data)
        await writer.drain()


class Proxy:
    def __init__(self, upstream, counts):
        self.host = upstream.hostname
        self.port = upstream.port or 80
        self.prefix = upstream.path.rstrip("/")
        self.counts = counts

    async def handle(self, creader, cwriter):
        up = None  # (reader, writer) to the node, kept alive across requests
        try:
            while True:
                try:
                    first, headers, raw = await read_head(creader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                method, target, _version = first.split(" ", 2)
                if method == "GET" and target.split("?")[0] == "/counts":
                    body = json.dumps(self.counts.snapshot()).encode() + b"\n"
                    cwriter.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
                    await cwriter.drain()
                    continue
                self.counts.requests += 1
                r = route_of(target)
                self.counts.routes[r] = self.counts.routes.get(r, 0) + 1
                self.counts.bytes_in += len(raw)
                try:
                    body = await read_request_body(creader, headers)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    return
                self.counts.bytes_in += len(body)
                stream = r == "/eth/v1/events"
                if stream:
                    self.counts.streams += 1
                    self.counts.open_streams += 1
                out = [f"{method} {self.prefix}{target} HTTP/1.1"]
                for k, v in headers:
                    if k.lower() in ("content-length", "transfer-encoding"):
                        continue
                    out.append(f"{k}: {self.host}:{self.port}" if k.lower() == "host" else f"{k}: {v}")
                if body or method in ("POST", "PUT", "PATCH"):
                    out.append(f"Content-Length: {len(body)}")
                request = ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body
                if stream:
                    # An event stream may stay silent for long (Lodestar 1.5.1 sends even the
                    # answer's head only with the first event): watch the client meanwhile, so a
                    # client that gave up is noticed and its upstream connection closed.
                    exchange = asyncio.ensure_future(self.exchange_stream(request, cwriter))
                    gone = asyncio.ensure_future(creader.read(1))
                    await asyncio.wait({exchange, gone}, return_when=asyncio.FIRST_COMPLETED)
                    if not exchange.done():
                        exchange.cancel()
                        try:
                            await exchange
                        except (asyncio.CancelledError, Exception):  # noqa: BLE001
                            pass
                    else:
                        gone.cancel()
                        if exchange.exception() is not None:
                            self.counts.errors += 1
                    self.counts.open_streams -= 1
                    return
                status_line = None
                for attempt in (1, 2):
                    # A kept-alive upstream connection the node closed while idle fails at once:
                    # retry once on a new connection.
                    fresh = up is None
                    try:
                        if up is None:
                            up = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
                        ureader, uwriter = up
                        uwriter.write(request)
                        await uwriter.drain()
                        status_line, rheaders, rraw = await read_head(ureader)
                        break
                    except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                        if up is not None:
                            up[1].close()
                        up = None
                        if fresh or attempt == 2:
                            error = e
                            break
                if status_line is None:
                    self.counts.errors += 1
                    msg = f"upstream: {error}\n".encode()
                    cwriter.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n"
                                  b"Content-Length: %d\r\n\r\n" % len(msg) + msg)
                    await cwriter.drain()
                    continue
                status = int(status_line.split(" ", 2)[1])
                cwriter.write(rraw)
                self.counts.bytes_out += len(rraw)
                await cwriter.drain()
                no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
                keep = no_body or await copy_response_body(ureader, cwriter, rheaders, self.counts)
                if not keep or (header(rheaders, "Connection") or "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            if up is not None:
                up[1].close()
            cwriter.close()


    async def exchange_stream(self, request, cwriter):
        """One event-stream request on its own upstream connection, copied until either side ends."""
        ureader, uwriter = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        try:
            uwriter.write(request)
            await uwriter.drain()
            _status, rheaders, rraw = await read_head(ureader)
            cwriter.write(rraw)
            self.counts.bytes_out += len(rraw)
            await cwriter.drain()
            await copy_response_body(ureader, cwriter, rheaders, self.counts)
        finally:
            uwriter.close()


async def main_async(args):
    host, _, port = args.listen.rpartition(":")
    upstream = urllib.parse.urlparse(args.upstream)
    if upstream.scheme != "http" or not upstream.hostname:
        sys.exit(f"streamproxy: --upstream must be an http:// URL, got {args.upstream!r}")
    counts = Counts()
    proxy = Proxy(upstream, counts)
    server = await asyncio.start_server(proxy.handle, host, int(port), limit=1 << 20)
    print(f"streamproxy: listening on {host}:{port}, forwarding to {args.upstream}",
          file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    if args.counts_file:
        with open(args.counts_file, "w") as f:
            json.dump(counts.snapshot(), f, indent=1)
            f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT to bind (loopback)")
    ap.add_argument("--upstream", required=True, help="the node's URL (http://...)")
    ap.add_argument("--counts-file", help="write the counts here as JSON at exit")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
