"""No empty panel, end to end: real anvil and Lodestar with the ethwatch exporters (and the
network watcher when the binary has `ethwatch network`), Prometheus scraping them with the
chart's labels and evaluating the alert rules, transaction traffic on anvil. Then every query of
every panel runs against that Prometheus with the dashboard variables filled in (namespace e2e,
node 1, $__rate_interval 10s), as Grafana would run it (range or instant), and must return a
value that is not NaN. Latency panels must also have exemplars with a trace_id.

Excluded, by rule (dashlib.needs_kubernetes): queries on the cAdvisor, kube-state-metrics and
kubelet series of alerts/standard-metrics.yaml, which only a cluster has. When the binary lacks
`ethwatch consensus` or `ethwatch network`, the queries on eth_cl_* or eth_network_* are reported
as skipped (the test says so), not passed.

A panel passes when every query returns data; the one documented exception is a query whose every
ethwatch metric is absent from the live exporters' /metrics although docs/metrics.md lists it
(the devnet's node lacks the method, as anvil lacks net_peerCount): it is reported, and its panel
must still show data from another query. The run also renders the README pictures
(dashboards/render.py) into the test's directory, so that script cannot rot.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time

import pytest

from dashlib import (
    ROOT, dashboards, exported_metrics, fill, metric_names, needs_kubernetes, panels,
)
from e2e.devnet import Devnet, Traffic, build_ethwatch
from e2e.stack import HOST, Stack, http_get, wait_until

pytestmark = pytest.mark.e2e

WINDOW = 60  # seconds of history a range query looks at (the devnet's whole life, about)
DEADLINE = 240  # seconds to wait for every panel to have data (participation needs 3 epochs)
SETTLE = 75  # seconds from the start before a metric still absent counts as not provided


def has_value(result: list[dict]) -> bool:
    for s in result:
        vals = s.get("values") or ([s["value"]] if "value" in s else [])
        if any(not math.isnan(float(v)) for _, v in vals):
            return True
    return False


def run_target(prom, target: dict, now: float) -> list[dict]:
    expr = fill(target["expr"])
    if target.get("instant"):
        return prom.query(expr)
    return prom.query_range(expr, now - WINDOW, now, 1)


def live_metric_names(net: Devnet) -> set[str]:
    names = set()
    for _, port, _ in net.targets:
        for line in http_get(f"http://{HOST}:{port}/metrics").decode().splitlines():
            if line and not line.startswith("#"):
                names.add(line.split("{")[0].split(" ")[0])
    return names


def test_no_empty_panel(tmp_path):
    ethwatch = build_ethwatch()
    rules = tmp_path / "rules"
    r = __import__("subprocess").run(
        [sys.executable, str(ROOT / "alerts/generate.py"), "--overlay",
         str(ROOT / "tests/alerts/e2e-overlay.yaml"), "--out", str(rules)],
        capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

    stack = Stack(tmp_path)
    traffic = None
    old_term = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    t0 = time.monotonic()
    try:
        net = Devnet.start(stack, tmp_path, ethwatch)
        prom = net.start_prometheus(rules)
        traffic = Traffic(net.el_url)
        traffic.start()
        _check(net, prom, tmp_path, t0)
    finally:
        if traffic:
            traffic.stop()
        stack.stop_all()
        signal.signal(signal.SIGTERM, old_term)
        print(f"\n(logs in {tmp_path / 'logs'}; {time.monotonic() - t0:.0f} s in all)")


def _check(net: Devnet, prom, tmp_path, t0):
    dash = dashboards()
    documented = exported_metrics()
    pending: dict[tuple, tuple] = {}  # (file, panel, refId) -> (panel, target)
    k8s, skipped = [], []
    for name, d in dash.items():
        for p in panels(d):
            for t in p["targets"]:
                key = (name, p["title"], t["refId"])
                used = metric_names(t["expr"])
                if needs_kubernetes(t["expr"]):
                    k8s.append(key)
                elif not net.consensus and any(m.startswith("eth_cl_") for m in used):
                    skipped.append((key, "no `ethwatch consensus` in this binary"))
                elif not net.network and any(m.startswith("eth_network_") for m in used):
                    skipped.append((key, "no `ethwatch network` in this binary"))
                else:
                    pending[key] = (p, t)
    total = len(pending)

    def not_provided(t) -> list[str]:
        """The query's ethwatch metrics when docs/metrics.md lists them all but none is on the
        live exporters' /metrics: the devnet's node does not provide them (anvil has no
        net_peerCount). Such a query may stay empty; its panel must still show data."""
        ours = {m for m in metric_names(t["expr"]) if m in documented}
        return sorted(ours) if ours and not ours & live else []

    # Poll until every query has data (the chain needs a few epochs for finality and
    # participation) or the deadline passes; each query that has data is done.
    start = time.monotonic()
    got = {}
    while time.monotonic() - start < DEADLINE:
        now = time.time()
        for key, (p, t) in list(pending.items()):
            if has_value(run_target(prom, t, now)):
                del pending[key]
                got[key] = time.monotonic() - start
        live = live_metric_names(net)
        # What is still missing may be what the node never provides, but only once the chain
        # has had time to produce everything (participation needs a few epochs).
        if time.monotonic() - t0 > SETTLE and all(not_provided(t) for _, t in pending.values()):
            break
        time.sleep(3)
    slowest = sorted(got.items(), key=lambda kv: -kv[1])[:3]
    print(f"\n{total - len(pending)} of {total} queries returned data after "
          f"{time.monotonic() - start:.0f} s of polling ({time.monotonic() - t0:.0f} s since start); "
          f"slowest: {[(f'{k[0]} / {k[1]} [{k[2]}]', round(v)) for k, v in slowest]}")

    live = live_metric_names(net)
    absent_ok = {key: not_provided(t) for key, (p, t) in pending.items() if not_provided(t)}
    for key in absent_ok:
        del pending[key]
    for key, names in absent_ok.items():
        others = [k for k in ((key[0], key[1], t["refId"])
                              for p in panels(dash[key[0]]) if p["title"] == key[1]
                              for t in p["targets"]) if k != key]
        assert any(k not in pending and k not in absent_ok for k in others), (
            f"{key[0]} / {key[1]}: its query {key[2]} reads {names}, which the devnet's node does "
            f"not provide, and no other query of the panel has data: the panel would be empty")

    print("excluded (Kubernetes series, by rule):")
    for k in sorted(set((f, p) for f, p, _ in k8s)):
        print(f"  {k[0]} / {k[1]}")
    for k, why in skipped:
        print(f"skipped ({why}): {k[0]} / {k[1]} [{k[2]}]")
    for k, names in absent_ok.items():
        print(f"no data, metric not provided by the devnet's node {names}: {k[0]} / {k[1]} [{k[2]}]"
              " (the panel has data from its other queries)")

    empty = {f"{f} / {title} [{ref}]": fill(t["expr"]) for (f, title, ref), (_, t) in pending.items()}
    assert not empty, "panels with a query that returns no data:\n" + json.dumps(empty, indent=1)

    # Exemplars with a trace id on the latency panels (the way to Tempo).
    now = time.time()
    for name, d in dash.items():
        for p in panels(d):
            for t in p["targets"]:
                if not t.get("exemplar"):
                    continue
                if not net.consensus and "eth_cl_" in t["expr"]:
                    continue
                got = prom.exemplars(fill(t["expr"]), now - WINDOW, now)
                ids = {e["labels"].get("trace_id") for s in got for e in s["exemplars"]}
                ids.discard(None)
                assert ids, f"{name} / {p['title']}: no exemplar with a trace_id for {fill(t['expr'])}"

    # The README pictures, from this Prometheus (dashboards/render.py).
    sys.path.insert(0, str(ROOT / "dashboards"))
    import render  # noqa: E402
    out = tmp_path / "img"
    written = render.render_all(prom.base, out, window=WINDOW)
    assert written and all(p.stat().st_size > 20_000 for p in written), written
    print(f"pictures: {[str(p) for p in written]}")
