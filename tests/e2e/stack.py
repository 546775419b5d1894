"""A real monitoring stack on loopback for the end-to-end tests (tests/alerts, tests/dashboards):
child processes that are always cleaned up, a webhook receiver that records Alertmanager's notifications, and small
Prometheus and JSON-RPC clients. Only 127.0.0.1 is bound."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def http_post_json(url: str, body, timeout: float = 2.0):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def rpc(url: str, method: str, *params):
    res = http_post_json(url, {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    if "error" in res:
        raise RuntimeError(f"{method}: {res['error']}")
    return res["result"]


class Child:
    """One child process in its own session (process group), its output in a log file."""

    def __init__(self, name: str, cmd: list[str], logdir: pathlib.Path, cwd=None, env=None,
                 signals_to_stop: int = 1, preexec_fn=None):
        self.name = name
        self.cmd = cmd
        self.log = logdir / f"{name}.log"
        self.signals_to_stop = signals_to_stop
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=preexec_fn,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _signal(self, sig) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # the group we created for this child only
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """A crash: SIGKILL now."""
        self._signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (twice for Lodestar, which hangs after the first), then SIGKILL."""
        if not self.alive():
            self._signal(signal.SIGKILL)  # stray grandchildren, if any
            return
        for i in range(self.signals_to_stop):
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=1.5 if i + 1 < self.signals_to_stop else timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        if self.alive():
            self._signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._signal(signal.SIGKILL)

    def tail(self, n: int = 25) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


class Stack:
    """Owns every child; stop_all() is safe to call more than once and from a signal handler."""

    def __init__(self, workdir: pathlib.Path):
        self.workdir = workdir
        self.logdir = workdir / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.children: list[Child] = []
        self._stopped = False

    def start(self, name: str, cmd: list[str], **kw) -> Child:
        c = Child(name, cmd, self.logdir, **kw)
        self.children.append(c)
        return c

    def stop_all(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for c in reversed(self.children):
            try:
                c.stop()
            except Exception as e:  # keep stopping the others
                print(f"stack: stopping {c.name} (pid {c.pid}) failed: {e}")

    def diagnostics(self) -> str:
        return "\n".join(
            f"--- {c.name} (pid {c.pid}, {'running' if c.alive() else f'exited {c.proc.returncode}'})"
            f", log {c.log}:\n{c.tail()}"
            for c in self.children
        )


def wait_until(what: str, check, timeout: float, stack: Stack | None = None, interval=0.1):
    """Polls check() until it returns something truthy; fails with the children's logs."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # not up yet
            last_error = e
        if stack:
            for c in stack.children:
                if not c.alive() and not getattr(c, "expected_exit", False):
                    raise AssertionError(f"{c.name} exited while waiting for {what}\n{stack.diagnostics()}")
        time.sleep(interval)
    diag = stack.diagnostics() if stack else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})\n{diag}")


class Webhook:
    """Alertmanager's webhook receiver: records (arrival time, alert) for every alert of every
    notification."""

    def __init__(self):
        self.alerts: list[tuple[float, dict]] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                now = time.time()
                try:
                    payload = json.loads(body)
                    with hook.lock:
                        for a in payload.get("alerts", []):
                            hook.alerts.append((now, a))
                finally:
                    self.send_response(200)
                    self.end_headers()

            def log_message(self, *args):
                pass

        # Bound now (its URL goes into Alertmanager's config), served from start() on: a test
        # spawns its children first, as preexec_fn is not safe once threads run.
        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def first(self, alertname: str, status: str = "firing", after: float = 0.0, **labels):
        """(arrival time, alert) of the first matching alert that arrived after `after`."""
        with self.lock:
            for t, a in self.alerts:
                lab = a.get("labels", {})
                if (t >= after and a.get("status") == status and lab.get("alertname") == alertname
                        and all(lab.get(k) == v for k, v in labels.items())):
                    return t, a
        return None

    def wait(self, alertname: str, timeout: float, stack: Stack | None = None, status: str = "firing",
             after: float = 0.0, interval: float = 0.1, **labels):
        """wait_until the first matching alert arrives ("<alertname> paged" or "... resolved")."""
        what = f"{alertname} {'paged' if status == 'firing' else status}"
        return wait_until(what, lambda: self.first(alertname, status, after, **labels), timeout, stack,
                          interval)

    def names(self, status: str = "firing") -> set[str]:
        with self.lock:
            return {a["labels"]["alertname"] for _, a in self.alerts if a.get("status") == status}

    def close(self):
        if self.thread:
            self.server.shutdown()
        self.server.server_close()


class Prometheus:
    def __init__(self, port: int):
        self.base = f"http://{HOST}:{port}"

    def query(self, q: str) -> list[dict]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        res = json.loads(http_get(url))
        assert res["status"] == "success", res
        return res["data"]["result"]

    def value(self, q: str) -> float | None:
        r = self.query(q)
        return float(r[0]["value"][1]) if r else None

    def alerts(self) -> list[dict]:
        return json.loads(http_get(f"{self.base}/api/v1/alerts"))["data"]["alerts"]

    def _get(self, path: str, **params) -> dict:
        res = json.loads(http_get(f"{self.base}{path}?" + urllib.parse.urlencode(params), timeout=10))
        assert res["status"] == "success", res
        return res["data"]

    def query_range(self, q: str, start: float, end: float, step: float) -> list[dict]:
        """A range query's matrix: [{"metric": {...}, "values": [[t, "v"], ...]}, ...]."""
        return self._get("/api/v1/query_range", query=q, start=start, end=end, step=step)["result"]

    def exemplars(self, q: str, start: float, end: float) -> list[dict]:
        """/api/v1/query_exemplars: [{"seriesLabels": {...}, "exemplars": [{"labels", "value",
        "timestamp"}]}] (needs --enable-feature=exemplar-storage)."""
        return self._get("/api/v1/query_exemplars", query=q, start=start, end=end)


def metric_value(text: str, name: str, labels: str = "") -> float | None:
    """The value of `name{labels}` in a text exposition (labels as written, e.g. 'state="connected"')."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, rest = line.partition(" ")
        if series == name or (labels and series.startswith(name + "{") and labels in series):
            return float(rest.split()[0])
    return None
