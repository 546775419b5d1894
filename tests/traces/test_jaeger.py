"""Traces in a real backend: Jaeger (v2, in memory, built by scripts/tools.sh from its Go module,
configured by scripts/jaeger.sh to bind 127.0.0.1 only) receives the spans of `ethwatch execution`
processes polling a real anvil, configured with nothing but the standard OTEL_* variables: one
over OTLP/gRPC, one over OTLP/HTTP (protobuf).

- Jaeger's query API returns their traces;
- the trace id of an exemplar on a latency bucket in /metrics is a trace Jaeger has, with the tree
  docs/traces.md describes: poll -> collect head -> eth_getBlockByNumber (a JSON-RPC client span),
  and the batch's POST (an HTTP client span), with their semantic attributes;
- Jaeger goes away and comes back: the exporters' memory does not grow, the loss is counted, and
  traces arrive again.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import socket
import subprocess
import time
import urllib.request

import pytest

import trace_view

from e2e.devnet import ROOT, build_ethwatch, child_env, die_with_parent, tool
from e2e.stack import HOST, Stack, free_port, http_get, metric_value, wait_until

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
EXEMPLAR = re.compile(
    r'^eth_el_rpc_request_duration_seconds_bucket\{([^}]*)\} \S+ # \{trace_id="([0-9a-f]{32})"\}')


def jaeger_bin() -> str:
    path = os.environ.get("ETHWATCH_JAEGER")
    if not path:
        cache = pathlib.Path(os.environ.get("ETHWATCH_CACHE", pathlib.Path.home() / ".cache/ethwatch"))
        marker = next(iter(sorted((cache / "tools").glob("jaeger-*/.installed"))), None)
        path = marker.read_text().splitlines()[0] if marker else None
    if not path or not os.access(path, os.X_OK):
        pytest.fail("no jaeger: run scripts/tools.sh jaeger (or set ETHWATCH_JAEGER)")
    return path


def openmetrics(port: int) -> str:
    req = urllib.request.Request(f"http://{HOST}:{port}/metrics",
                                 headers={"Accept": "application/openmetrics-text"})
    with urllib.request.urlopen(req, timeout=2) as r:
        return r.read().decode()


def rss(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class Jaeger:
    def __init__(self, stack: Stack, tmp: pathlib.Path):
        self.stack = stack
        self.ports = {k: free_port() for k in ("grpc", "http", "qgrpc", "query")}
        cfg = subprocess.run(
            [str(ROOT / "scripts/jaeger.sh"), "config", *(str(self.ports[k]) for k in ("grpc", "http", "qgrpc", "query"))],
            check=True, capture_output=True, text=True).stdout
        self.config = tmp / "jaeger.yaml"
        self.config.write_text(cfg)
        self.bin = jaeger_bin()
        self.child = None
        self.starts = 0

    @property
    def query(self) -> str:
        return f"http://{HOST}:{self.ports['query']}"

    def start(self):
        self.starts += 1
        self.child = self.stack.start(f"jaeger-{self.starts}", [self.bin, "--config", f"file:{self.config}"],
                                      env=child_env(), preexec_fn=die_with_parent)
        wait_until("Jaeger's query API", lambda: http_get(f"{self.query}/api/services"), 60, self.stack)

    def stop(self):
        self.child.expected_exit = True
        self.child.stop()

    def services(self) -> list[str]:
        return json.loads(http_get(f"{self.query}/api/services"))["data"] or []

    def traces(self, service: str, limit: int = 20) -> list[dict]:
        return json.loads(http_get(f"{self.query}/api/traces?service={service}&limit={limit}&lookback=1h",
                                   timeout=5))["data"] or []

    def trace(self, trace_id: str) -> dict | None:
        try:
            data = json.loads(http_get(f"{self.query}/api/traces/{trace_id}", timeout=5))["data"]
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise
        return data[0] if data else None


def listening_ports(pid: int) -> set[str]:
    """Local addresses of the TCP sockets `pid` listens on (from /proc/net/tcp*)."""
    inodes = set()
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in pathlib.Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # LISTEN
                addr, port = f[1].split(":")
                if width == 8:
                    ip = ".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0))
                else:
                    ip = "::" if set(addr) == {"0"} else addr
                out.add(f"{ip}:{int(port, 16)}")
    return out


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("traces")
    ethwatch = build_ethwatch()
    stack = Stack(tmp)
    try:
        jaeger = Jaeger(stack, tmp)
        jaeger.start()
        anvil_port = free_port()
        stack.start("anvil", [tool("ETHWATCH_ANVIL", "anvil"), "--host", HOST, "--port", str(anvil_port),
                              "--block-time", "1", "--prune-history"], env=child_env(), preexec_fn=die_with_parent)
        wait_until("anvil", lambda: socket.create_connection((HOST, anvil_port), timeout=1).close() or True, 20, stack)
        exporters = {}
        for proto, port in (("grpc", jaeger.ports["grpc"]), ("http/protobuf", jaeger.ports["http"])):
            service = "ethwatch-test-" + proto.split("/")[0]
            web = free_port()
            env = {**child_env(),
                   "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{HOST}:{port}",
                   "OTEL_EXPORTER_OTLP_PROTOCOL": proto,
                   "OTEL_SERVICE_NAME": service}
            child = stack.start(service, [str(ethwatch), "execution", "--rpc-url", f"http://{HOST}:{anvil_port}",
                                          "--web.listen-address", f"{HOST}:{web}"],
                                env=env, preexec_fn=die_with_parent)
            exporters[service] = (child, web)
        for service, (_, web) in exporters.items():
            wait_until(f"{service} polling anvil",
                       lambda: metric_value(http_get(f"http://{HOST}:{web}/metrics").decode(), "eth_el_up") == 1,
                       30, stack)
        yield dict(stack=stack, jaeger=jaeger, exporters=exporters, anvil_port=anvil_port, tmp=tmp)
    finally:
        stack.stop_all()


def screenshot(page: pathlib.Path, out: pathlib.Path, tmp: pathlib.Path):
    """A picture of the drawn trace, for docs/traces.md, in the headless browser of tests/browser."""
    import sys
    sys.path.insert(0, str(ROOT / "tests" / "browser"))
    from cdp import Browser, find_chromium
    chromium = find_chromium()
    assert chromium, "ETHWATCH_UPDATE_SCREENSHOTS=1 needs chromium (scripts/tools.sh chromium)"
    with Browser(chromium, tmp) as b:
        p = b.new_page(1400, 460)
        p.goto(page.as_uri())
        p.screenshot(out)
        assert p.errors() == []


def span_tree(trace: dict):
    spans = {s["spanID"]: s for s in trace["spans"]}
    parent = {}
    for s in trace["spans"]:
        for r in s.get("references", []):
            if r["refType"] == "CHILD_OF" and r["spanID"] in spans:
                parent[s["spanID"]] = r["spanID"]
    return spans, parent


def tags(span: dict) -> dict:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def test_jaeger_binds_only_loopback(net):
    ports = listening_ports(net["jaeger"].child.pid)
    assert ports, "Jaeger listens on nothing?"
    assert all(p.startswith("127.0.0.1:") for p in ports), ports
    assert {f"127.0.0.1:{p}" for p in net["jaeger"].ports.values()} <= ports, ports


def test_exemplar_traces_are_in_jaeger_with_the_documented_tree(net):
    jaeger = net["jaeger"]
    for service, (_, web) in net["exporters"].items():
        wait_until(f"{service} in Jaeger", lambda: service in jaeger.services() and jaeger.traces(service), 30,
                   net["stack"])

        def exemplar_trace():
            # A bucket's exemplar is its latest observation, which can be a failed call (say, a
            # connection refused while anvil started): take one whose batch got an answer.
            for line in openmetrics(web).splitlines():
                m = EXEMPLAR.match(line)
                if m and 'method="eth_getBlockByNumber"' in m.group(1):
                    t = jaeger.trace(m.group(2))
                    if t and any(s["operationName"] == "POST" and "error.type" not in tags(s) for s in t["spans"]):
                        return m.group(2), t
            return None

        trace_id, trace = wait_until(f"an exemplar of {service} found in Jaeger", exemplar_trace, 30, net["stack"])
        assert trace["processes"][trace["spans"][0]["processID"]]["serviceName"] == service
        spans, parent = span_tree(trace)
        # eth_getBlockByNumber is asked for the head (collect head) and for the safe and
        # finalized blocks (collect finality): the head's call is the one under collect head.
        rpc = [s for s in spans.values() if s["operationName"] == "eth_getBlockByNumber"
               and s["spanID"] in parent and spans[parent[s["spanID"]]]["operationName"] == "collect head"]
        assert rpc, [(s["operationName"], spans[parent[s["spanID"]]]["operationName"] if s["spanID"] in parent else None)
                     for s in spans.values()]
        call = rpc[0]
        t = tags(call)
        assert (t.get("span.kind"), t.get("rpc.system"), t.get("rpc.method")) == \
            ("client", "jsonrpc", "eth_getBlockByNumber"), t
        assert t.get("rpc.jsonrpc.version") == "2.0", t
        collector = spans[parent[call["spanID"]]]
        root = spans[parent[collector["spanID"]]]
        assert root["operationName"] == "poll" and root["spanID"] not in parent
        post = [s for s in spans.values() if s["operationName"] == "POST"]
        assert post, [s["operationName"] for s in spans.values()]
        pt = tags(post[0])
        assert pt.get("span.kind") == "client" and pt.get("http.request.method") == "POST", pt
        # Typed as the semantic conventions say: the port and the status are integers.
        assert (pt.get("server.address"), pt.get("server.port")) == (HOST, net["anvil_port"]), pt
        assert pt.get("http.response.status_code") == 200, pt
        # Every span of the tree belongs to the exemplar's trace.
        assert all(s["traceID"].rjust(32, "0") == trace_id for s in spans.values())
        page = net["tmp"] / f"{service}-trace.html"
        page.write_text(trace_view.render(trace, "A poll of ethwatch execution, from Jaeger's query API"))
        if service.endswith("grpc") and os.environ.get("ETHWATCH_UPDATE_SCREENSHOTS") == "1":
            screenshot(page, ROOT / "docs" / "img" / "trace-jaeger.png", net["tmp"])


def test_a_backend_that_goes_away_and_comes_back(net):
    jaeger, stack = net["jaeger"], net["stack"]

    def counter(web, name):
        """The sum of every series of `name` (any labels)."""
        total = 0.0
        for line in http_get(f"http://{HOST}:{web}/metrics").decode().splitlines():
            series, _, value = line.partition(" ")
            if series == name or series.startswith(name + "{"):
                total += float(value.split()[0])
        return total
    before = {s: (rss(c.pid), counter(w, "ethwatch_trace_spans_dropped_total"),
                  counter(w, "ethwatch_trace_spans_exported_total")) for s, (c, w) in net["exporters"].items()}
    jaeger.stop()
    time.sleep(25)
    during = {s: rss(c.pid) for s, (c, _) in net["exporters"].items()}
    down_at = time.time()
    jaeger.start()  # the same ports, empty storage
    for service, (child, web) in net["exporters"].items():
        # Spans held while Jaeger was away may arrive first; then fresh traces must follow.
        wait_until(f"{service}'s new traces in the restarted Jaeger", lambda: any(
            min(s["startTime"] for s in t["spans"]) / 1e6 >= down_at for t in jaeger.traces(service)), 60, stack)
        rss0, dropped0, exported0 = before[service]
        grew = max(during[service], rss(child.pid)) - rss0
        print(f"{service}: RSS {rss0 / MiB:.1f} MiB before, {during[service] / MiB:.1f} MiB after 25 s without "
              f"Jaeger, {rss(child.pid) / MiB:.1f} MiB after it came back")
        assert grew < 2 * MiB, f"{service} grew by {grew / MiB:.1f} MiB"
        assert counter(web, "ethwatch_trace_spans_dropped_total") > dropped0, "the loss was not counted"
        wait_until(f"{service} exporting again",
                   lambda: counter(web, "ethwatch_trace_spans_exported_total") > exported0, 30, stack)


def test_jaeger_script_starts_prints_and_stops(tmp_path):
    """scripts/jaeger.sh start|status|stop, as a devnet calls it."""
    env = {**child_env(), "JAEGER_STATE": str(tmp_path / "state"), "ETHWATCH_JAEGER": jaeger_bin()}
    run = lambda *a: subprocess.run([str(ROOT / "scripts/jaeger.sh"), *a], env=env, capture_output=True,
                                    text=True, timeout=60)
    started = run("start")
    try:
        assert started.returncode == 0, started.stderr
        lines = dict(re.findall(r"^export (\w+)=(\S+)$", started.stdout, re.M))
        assert lines["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
        ui = lines["JAEGER_UI"]
        assert ui.startswith(f"http://{HOST}:") and lines["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith(f"http://{HOST}:")
        assert "data" in json.loads(http_get(f"{ui}/api/services"))  # the query API answers
        pid = int((tmp_path / "state" / "pid").read_text())
        assert all(p.startswith("127.0.0.1:") for p in listening_ports(pid)), listening_ports(pid)
        assert run("status").returncode == 0
    finally:
        stopped = run("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not pathlib.Path(f"/proc/{pid}").exists() or "zombie" in pathlib.Path(f"/proc/{pid}/status").read_text()
    assert run("status").returncode == 1
