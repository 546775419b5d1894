"""The watcher's status page in a real headless Chromium, over a devnet of real nodes.

Nodes: anvil A (watched twice, as el-1 and el-2), el-3 behind a loopback TCP relay that forwards to
anvil A and later to anvil B (a different chain: the network splits on the execution layer), and
a Lodestar dev chain (cl-1, paired with el-1). Then anvil B dies. At each step the page, loaded
once, must show it through its own refresh from /api/v1/status, without console errors.

Screenshots of the healthy and split states go to the test's directory, and to docs/img/ when
ETHWATCH_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import threading

import pytest

from cdp import Browser, find_chromium
from e2e.devnet import ROOT, build_ethwatch, child_env, die_with_parent, lodestar_dev, tool
from e2e.stack import HOST, Stack, free_port, http_get, wait_until

pytestmark = pytest.mark.e2e


class Relay:
    """A loopback TCP forwarder whose upstream can be switched; switching drops every open
    connection, as a node re-pointed at another chain would."""

    def __init__(self, upstream: int):
        self.upstream = upstream
        self.sock = socket.create_server((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                up = socket.create_connection((HOST, self.upstream), timeout=2)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, up]
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def switch(self, upstream: int):
        with self.lock:
            self.upstream = upstream
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self.conns.clear()

    def close(self):
        self.sock.close()
        self.switch(self.upstream)


def status(port: int) -> dict:
    return json.loads(http_get(f"http://{HOST}:{port}/api/v1/status"))


ROWS = "Array.from(document.querySelectorAll('#rows tr')).map(r => [r.dataset.node, r.dataset.state])"


def distinct(layer: str) -> str:
    return f"(document.querySelector('#agreement .layer[data-layer={layer}]') || {{dataset: {{}}}}).dataset.distinct"


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    chromium = find_chromium()
    if not chromium:
        pytest.fail("no Chromium: run scripts/tools.sh chromium (or set ETHWATCH_CHROMIUM)")
    tmp = tmp_path_factory.mktemp("status-page")
    ethwatch = build_ethwatch()
    stack = Stack(tmp)
    pre = dict(env=child_env(), preexec_fn=die_with_parent)
    anvil = tool("ETHWATCH_ANVIL", "anvil")
    lodestar = tool("ETHWATCH_LODESTAR", "lodestar")
    p = {k: free_port() for k in ("a", "b", "beacon", "p2p", "net")}
    relay = None
    try:
        for name, accounts in (("a", 10), ("b", 3)):
            stack.start(f"anvil-{name}", [anvil, "--host", HOST, "--port", str(p[name]), "--block-time", "1",
                                          "--prune-history", "--accounts", str(accounts)], **pre)
        beacon_dir = tmp / "lodestar"
        beacon_dir.mkdir()
        beacon = f"http://{HOST}:{p['beacon']}"
        stack.start("lodestar", lodestar_dev(lodestar, p["beacon"], p["p2p"], beacon_dir / "data"),
                    cwd=beacon_dir, signals_to_stop=2, **pre)
        relay = Relay(p["a"])
        a = f"http://{HOST}:{p['a']}"
        stack.start("ethwatch-network", [
            str(ethwatch), "network", "--web.listen-address", f"{HOST}:{p['net']}", "--poll-interval", "1s",
            "--execution-target", f"el-1={a}", "--execution-target", f"el-2={a}",
            "--execution-target", f"el-3=http://{HOST}:{relay.port}",
            "--beacon-target", f"cl-1={beacon}", "--pair", "el-1=cl-1"], **pre)
        wait_until("every node up and Lodestar past slot 1", lambda: (
            (s := status(p["net"]))
            and len(s["nodes"]) == 4
            and all(n["state"] == "up" for n in s["nodes"])
            and all(l["distinct_heads"] == 1 for l in s["layers"])
            and next(n for n in s["nodes"] if n["name"] == "cl-1")["head"] >= 2), 120, stack)
        with Browser(chromium, tmp) as browser:
            yield dict(stack=stack, ports=p, relay=relay, browser=browser, tmp=tmp)
    finally:
        if relay:
            relay.close()
        stack.stop_all()


def save(page, tmp: pathlib.Path, name: str):
    path = tmp / name
    page.screenshot(path)
    if os.environ.get("ETHWATCH_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(path, ROOT / "docs" / "img" / name)


def test_status_page_follows_the_network(devnet):
    b, p, tmp = devnet["browser"], devnet["ports"], devnet["tmp"]
    base = f"http://{HOST}:{p['net']}/"
    page = b.new_page(1280, 720)
    page.goto(base)
    assert page.eval("document.title") == "ethwatch network"
    # Healthy: every node of the devnet has a row and is up; both layers agree.
    rows = page.wait("every node up", f"(r => r.length === 4 && r.every(x => x[1] === 'up') && r)({ROWS})")
    assert sorted(n for n, _ in rows) == ["cl-1", "el-1", "el-2", "el-3"]
    assert page.eval(distinct("execution")) == "1" and page.eval(distinct("consensus")) == "1"
    client = page.eval("document.querySelector('#rows tr[data-node=\"el-1\"] td:nth-child(4)').textContent")
    assert client == "anvil 1.7.1"
    # The script refreshes in place: the head number moves without a reload.
    head = lambda: int(page.eval("document.querySelector('#rows tr[data-node=\"el-1\"] .head').textContent"))
    first = head()
    page.wait("el-1's head to move", f"+document.querySelector('#rows tr[data-node=\"el-1\"] .head').textContent > {first}", 10)
    page.eval("window.__sameDocument = true")
    save(page, tmp, "status-healthy.png")

    # Split: el-3 now reaches another chain. The same document shows it.
    devnet["relay"].switch(p["b"])
    page.wait("the execution layer split", f"{distinct('execution')} === '2'", 15)
    page.wait("el-3 marked on another chain",
              "document.querySelector('#rows tr[data-node=\"el-3\"]').textContent.includes('other chain')", 5)
    assert "other chain" not in page.eval("document.querySelector('#rows tr[data-node=\"el-1\"]').textContent")
    page.wait("a split in the history", "!!document.querySelector('#events li[data-kind=split][data-layer=execution]')", 5)
    assert page.eval("window.__sameDocument") is True
    save(page, tmp, "status-split.png")

    # A node dies: anvil B stops; el-3 turns down, and the execution layer is one chain again.
    anvil_b = next(c for c in devnet["stack"].children if c.name == "anvil-b")
    anvil_b.kill()
    page.wait("el-3 down", "document.querySelector('#rows tr[data-node=\"el-3\"]').dataset.state === 'down'", 15)
    page.wait("a heal in the history", "!!document.querySelector('#events li[data-kind=heal]')", 5)
    assert page.eval(distinct("execution")) == "1"
    assert page.eval("window.__sameDocument") is True
    assert page.errors() == []


def test_status_page_without_javascript_and_on_a_phone(devnet):
    b, p = devnet["browser"], devnet["ports"]
    base = f"http://{HOST}:{p['net']}/"
    page = b.new_page(390, 844, mobile=True, scale=2)
    page.send("Emulation.setScriptExecutionDisabled", {"value": True})
    page.goto(base)
    # Server-rendered: every row is there without the script (evaluation still works over CDP).
    rows = page.eval(ROWS)
    assert sorted(n for n, _ in rows) == ["cl-1", "el-1", "el-2", "el-3"]
    assert page.eval("document.querySelector('#finalized').textContent").startswith("finalized epochs")
    # Fits a phone: nothing wider than the screen but the table, which scrolls in its own box.
    assert page.eval("document.documentElement.scrollWidth <= window.innerWidth"), \
        page.eval("[document.documentElement.scrollWidth, window.innerWidth]")
    assert page.errors() == []
