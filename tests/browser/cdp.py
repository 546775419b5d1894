"""A headless Chromium driven over the DevTools protocol through a pipe (`--remote-debugging-pipe`:
the browser reads commands on fd 3 and writes answers on fd 4, NUL-separated JSON), so no port is
opened and no driver or library is needed. The browser is told to resolve no host name at all
(it only ever loads 127.0.0.1) and to make no background connections.

    with Browser(chromium, tmp) as b:
        page = b.new_page(1280, 800)
        page.goto("http://127.0.0.1:PORT/")
        page.eval("document.title")
        page.screenshot(path)
        assert not page.errors()
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pathlib
import shutil
import subprocess
import threading
import time

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--no-default-browser-check",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
    "--disable-domain-reliability", "--disable-breakpad", "--metrics-recording-only",
    "--mute-audio", "--hide-scrollbars", "--no-proxy-server", "--disable-dev-shm-usage",
    # Nothing may query the resolver: every name fails, loopback addresses are used as they are.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def find_chromium() -> str | None:
    return os.environ.get("ETHWATCH_CHROMIUM") or shutil.which("chromium")


class CdpError(RuntimeError):
    pass


class Browser:
    def __init__(self, chromium: str, workdir: pathlib.Path):
        self.workdir = workdir
        profile = workdir / "chromium-profile"
        shutil.rmtree(profile, ignore_errors=True)
        profile.mkdir(parents=True)
        to_browser_r, self._w = os.pipe()
        self._r, from_browser_w = os.pipe()
        # The browser's ends are moved above 20 so that placing them on 3 and 4 clobbers nothing.
        to_browser_r, from_browser_w = (self._high(to_browser_r), self._high(from_browser_w))
        self.log = open(workdir / "chromium.log", "wb")
        # bash moves the pipe ends to fds 3 and 4, where Chromium expects them.
        script = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w} {to_browser_r}<&- {from_browser_w}>&-'
        self.proc = subprocess.Popen(
            ["bash", "-c", script, chromium, *FLAGS, f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "about:blank"],
            pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            env={k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ETHWATCH_"))},
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next = 0
        self._lock = threading.Lock()
        self._answers: dict[int, dict] = {}
        self._cond = threading.Condition(self._lock)
        self.events: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.version = self.send("Browser.getVersion", timeout=60)

    @staticmethod
    def _high(fd: int) -> int:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 20)
        os.close(fd)
        return high

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self._r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._answers[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._cond.notify_all()

    _closed = False

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict:
        with self._lock:
            self._next += 1
            mid = self._next
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise CdpError(f"{method}: no answer (browser log {self.workdir / 'chromium.log'})")
                self._cond.wait(left)
            ans = self._answers.pop(mid)
        if "error" in ans:
            raise CdpError(f"{method}: {ans['error']}")
        return ans.get("result", {})

    def wait_event(self, method: str, session: str, since: int, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events[since:]:
                    if e.get("method") == method and e.get("sessionId") == session:
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CdpError(f"no {method} within {timeout} s")
                self._cond.wait(left)

    def new_page(self, width: int, height: int, mobile: bool = False, scale: float = 1) -> "Page":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for m in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.send(m, session=session)
        self.send("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile}, session=session)
        return page

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Page:
    def __init__(self, browser: Browser, session: str):
        self.b = browser
        self.session = session

    def send(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        return self.b.send(method, params, session=self.session, timeout=timeout)

    def goto(self, url: str, timeout: float = 30):
        since = len(self.b.events)
        nav = self.send("Page.navigate", {"url": url})
        if nav.get("errorText"):
            raise CdpError(f"navigating to {url}: {nav['errorText']}")
        self.b.wait_event("Page.loadEventFired", self.session, since, timeout)

    def eval(self, expression: str):
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in r:
            raise CdpError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, what: str, expression: str, timeout: float = 30):
        """Polls a JavaScript expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.eval(expression)
            if last:
                return last
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what} (last value {last!r})")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors of this page so far."""
        out = []
        for e in list(self.b.events):
            if e.get("sessionId") != self.session:
                continue
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(f"exception: {p.get('exceptionDetails', {}).get('text')} "
                           f"{p.get('exceptionDetails', {}).get('exception', {}).get('description', '')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description")))
                                                        for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def screenshot(self, path: pathlib.Path, full_page: bool = True):
        params: dict = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        data = self.send("Page.captureScreenshot", params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
