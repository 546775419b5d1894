"""End to end, all real: anvil and a Lodestar dev chain, both ethwatch exporters, Prometheus and
Alertmanager (Debian's packages), and a webhook receiver, all on 127.0.0.1. The rules are rendered
from alerts/config.yaml with tests/alerts/e2e-overlay.yaml (the same overlay mechanism users have;
it shortens the `for:`s). Then, measuring from the fault to the webhook:

1. the beacon dev node has no peers    -> EthwatchConsensusLowPeers pages;
2. an idle, healthy devnet otherwise   -> nothing else fires or is pending;
3. anvil's mining stopped              -> EthwatchExecutionBlockProductionStopped pages;
4. mining resumed                      -> it resolves;
5. anvil and Lodestar killed           -> EthwatchExecutionNodeDown and EthwatchConsensusNodeDown page;
6. the execution exporter killed       -> EthwatchExporterDown pages.

Timings go to stdout and to <tmp>/timings.json; docs/alerts.md records a run of them.
"""

from __future__ import annotations

import ctypes
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from common import E2E_OVERLAY, GENERATE, ROOT, run, tool
from e2e.stack import (
    HOST, Prometheus, Stack, Webhook, free_port, http_get, metric_value, rpc, wait_until,
)

SLOW = 120  # seconds: bound of any single wait (a cold Lodestar start is the slowest)

pytestmark = pytest.mark.e2e


def _die_with_parent():
    """Runs in the child before exec: SIGKILL it if the test process dies without cleaning up."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def child_env() -> dict:
    """The environment without ethwatch's and OpenTelemetry's variables (flags are explicit)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("ETHWATCH_", "OTEL_")) and k != "RUST_LOG"}


def build_ethwatch() -> pathlib.Path:
    cache = pathlib.Path(os.environ.get("ETHWATCH_CACHE", pathlib.Path.home() / ".cache/ethwatch"))
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", cache / "target"))
    r = subprocess.run(
        ["cargo", "build", "-p", "ethwatch", "--locked"], cwd=ROOT,
        env={**os.environ, "CARGO_TARGET_DIR": str(target)}, capture_output=True, text=True,
    )
    assert r.returncode == 0, f"cargo build -p ethwatch failed:\n{r.stderr[-4000:]}"
    binary = target / "debug" / "ethwatch"
    assert binary.is_file(), binary
    return binary


def has_consensus(ethwatch: pathlib.Path) -> bool:
    return subprocess.run([str(ethwatch), "consensus", "--help"], capture_output=True).returncode == 0


def test_alerts_reach_the_webhook_end_to_end(tmp_path):
    ethwatch = build_ethwatch()
    assert has_consensus(ethwatch), f"{ethwatch} has no `consensus` subcommand"
    anvil = tool("ETHWATCH_ANVIL", "anvil")
    lodestar = tool("ETHWATCH_LODESTAR", "lodestar")
    prometheus = tool("ETHWATCH_PROMETHEUS", "prometheus")
    alertmanager = tool("ETHWATCH_ALERTMANAGER", "prometheus-alertmanager")

    rules = tmp_path / "rules"
    r = run([sys.executable, str(GENERATE), "--overlay", str(E2E_OVERLAY), "--out", str(rules)])
    assert r.returncode == 0, r.stderr

    stack = Stack(tmp_path)
    hook = Webhook()
    hook_t0 = time.time()
    old_term = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    timings: dict[str, float] = {}
    try:
        _run(stack, hook, tmp_path, rules, ethwatch, anvil, lodestar, prometheus, alertmanager, timings)
    finally:
        stack.stop_all()
        hook.close()
        signal.signal(signal.SIGTERM, old_term)
        (tmp_path / "timings.json").write_text(json.dumps(timings, indent=2))
        with hook.lock:
            pages = [(round(t - hook_t0, 1), a["status"], a["labels"]["alertname"]) for t, a in hook.alerts]
        print(f"\nwebhook notifications (s since start, status, alert): {pages}")
        if timings:
            print("\nfault-to-page times (s):")
            for k, v in timings.items():
                print(f"  {k:<55} {v:6.2f}")
            print(f"  (logs and timings.json in {tmp_path})")


def _run(stack, hook, tmp, rules, ethwatch, anvil, lodestar, prometheus, alertmanager, timings):
    env = child_env()
    p = {k: free_port() for k in ("anvil", "el_exp", "beacon", "p2p", "cl_exp", "net", "am", "prom")}
    el_url = f"http://{HOST}:{p['anvil']}"
    el_metrics = f"http://{HOST}:{p['el_exp']}/metrics"
    cl_metrics = f"http://{HOST}:{p['cl_exp']}/metrics"
    pre = dict(env=env, preexec_fn=_die_with_parent)

    # --- nodes and exporters -----------------------------------------------------------------
    stack.start("anvil", [anvil, "--host", HOST, "--port", str(p["anvil"]), "--block-time", "1",
                          "--prune-history"], **pre)
    stack.start("ethwatch-execution", [
        str(ethwatch), "execution", "--rpc-url", el_url, "--ws-url", f"ws://{HOST}:{p['anvil']}",
        "--web.listen-address", f"{HOST}:{p['el_exp']}", "--volume.path", str(tmp)], **pre)
    if lodestar:
        beacon_dir = tmp / "lodestar"
        beacon_dir.mkdir()
        beacon_url = f"http://{HOST}:{p['beacon']}"
        stack.start("lodestar", [
            lodestar, "dev", "--genesisValidators", "8", "--startValidators", "0..7", "--reset",
            "--rest", "--rest.address", HOST, "--rest.port", str(p["beacon"]),
            "--beaconNodes", beacon_url, "--rest.namespace", "*", "--listenAddress", HOST,
            "--port", str(p["p2p"]), "--discv5", "false", "--mdns", "false", "--targetPeers", "0",
            "--params.SECONDS_PER_SLOT", "2", "--params.ALTAIR_FORK_EPOCH", "0",
            "--dataDir", str(beacon_dir / "data")], cwd=beacon_dir, signals_to_stop=2, **pre)
        stack.start("ethwatch-consensus", [
            str(ethwatch), "consensus", "--beacon-url", beacon_url,
            "--web.listen-address", f"{HOST}:{p['cl_exp']}"], **pre)
        # The network watcher over both nodes (a network of one per layer: it must stay quiet).
        stack.start("ethwatch-network", [
            str(ethwatch), "network", "--execution-target", f"anvil-0={el_url}",
            "--beacon-target", f"lodestar-0={beacon_url}", "--poll-interval", "1s",
            "--web.listen-address", f"{HOST}:{p['net']}"], **pre)

    # --- nodes answering -----------------------------------------------------------------------
    # Prometheus starts only once the nodes answer through their exporters: a node still booting
    # is really unreachable, and a test with 2 s `for:`s would rightly page for it.
    def exporter_says(url, name, labels=""):
        return metric_value(http_get(url).decode(), name, labels)

    wait_until("anvil answering through ethwatch execution",
               lambda: exporter_says(el_metrics, "eth_el_up") == 1
               and exporter_says(el_metrics, "eth_el_expected_block_interval_seconds") is not None
               and exporter_says(el_metrics, "eth_el_subscription_connected") == 1,
               60, stack)
    if lodestar:
        wait_until("Lodestar's first block, seen through ethwatch consensus",
                   lambda: exporter_says(cl_metrics, "eth_cl_up") == 1
                   and (exporter_says(cl_metrics, "eth_cl_head_slot") or 0) > 0
                   and exporter_says(cl_metrics, "eth_cl_events_stream_connected") == 1,
                   SLOW, stack)

    # --- Alertmanager and Prometheus ---------------------------------------------------------
    (tmp / "alertmanager.yml").write_text(f"""\
route:
  receiver: webhook
  group_by: ['...']      # every alert its own notification
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: webhook
    webhook_configs:
      - url: {hook.url}
        send_resolved: true
""")
    stack.start("alertmanager", [
        alertmanager, f"--config.file={tmp / 'alertmanager.yml'}", f"--storage.path={tmp / 'am'}",
        f"--web.listen-address={HOST}:{p['am']}", "--cluster.listen-address="], **pre)
    targets = f"""\
  - job_name: ethwatch-execution
    static_configs:
      - targets: ['{HOST}:{p['el_exp']}']
        labels: {{namespace: e2e, pod: anvil-0}}
"""
    if lodestar:
        targets += f"""\
  - job_name: ethwatch-consensus
    static_configs:
      - targets: ['{HOST}:{p['cl_exp']}']
        labels: {{namespace: e2e, pod: lodestar-0}}
  - job_name: ethwatch-network
    static_configs:
      - targets: ['{HOST}:{p['net']}']
        labels: {{namespace: e2e, pod: ethwatch-network-0}}
"""
    (tmp / "prometheus.yml").write_text(f"""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: ['{rules}/*.yaml']
alerting:
  alertmanagers:
    - static_configs: [{{targets: ['{HOST}:{p['am']}']}}]
scrape_configs:
{targets}""")
    stack.start("prometheus", [
        prometheus, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address={HOST}:{p['prom']}", "--rules.alert.resend-delay=1s"], **pre)
    prom = Prometheus(p["prom"])

    # Children are all spawned (preexec_fn is not thread-safe): now the webhook may serve.
    hook.start()
    wait_until("Prometheus ready", lambda: http_get(f"{prom.base}/-/ready"), 60, stack)
    wait_until("Alertmanager ready", lambda: http_get(f"http://{HOST}:{p['am']}/-/ready"), 60, stack)
    groups = len(list(rules.glob("*.yaml")))  # one group per rendered file
    wait_until("Prometheus to load the rules",
               lambda: len(json.loads(http_get(f"{prom.base}/api/v1/rules"))["data"]["groups"]) == groups,
               30, stack)
    wait_until("Prometheus scraping the exporters",
               lambda: prom.value("min(up)") == 1 and prom.value("count(up)") == (3 if lodestar else 1),
               30, stack)

    # --- 1. no peers on the beacon dev node -> low peers pages ----------------------------------
    if lodestar:
        page = wait_until("EthwatchConsensusLowPeers at the webhook",
                          lambda: hook.first("EthwatchConsensusLowPeers", pod="lodestar-0"), 60, stack)
        # The fault is there from the start: measure from the first sample in which Prometheus
        # saw 0 connected peers.
        samples = prom.query('eth_cl_peers{state="connected", pod="lodestar-0"}[5m]')[0]["values"]
        first_zero = min(float(t) for t, v in samples if float(v) == 0)
        timings["consensus low peers (first 0-peer sample -> page)"] = page[0] - first_zero
        a = page[1]
        assert a["labels"]["severity"] == "warning" and a["labels"]["state"] == "connected"
        assert "e2e/lodestar-0" in a["annotations"]["description"]
        assert "it has 0." in a["annotations"]["description"]

    # --- 2. an idle, healthy devnet: nothing else fires ----------------------------------------
    # Every `for:` is shortened to at most 10 s, so any rule that is true on a healthy devnet fires
    # within this wait. Pending alerts with long `for:`s are not pages (EthwatchVolumeFillingUp's
    # prediction over a few seconds of a shared disk is noise; its `for: 1h` is what absorbs it).
    time.sleep(12)
    expected_idle = {"EthwatchConsensusLowPeers"} if lodestar else set()
    st = os.statvfs(tmp)  # the volume the execution exporter reports: really that full?
    used = 1 - st.f_bavail / st.f_blocks
    expected_idle |= {"EthwatchVolumeUsageHigh"} if used > 0.78 else set()
    expected_idle |= {"EthwatchVolumeUsageCritical"} if used > 0.88 else set()
    firing = {a["labels"]["alertname"]: a for a in prom.alerts() if a["state"] == "firing"}
    unexpected = {k: v for k, v in firing.items() if k not in expected_idle}
    assert not unexpected, f"alerts on an idle, healthy devnet: {json.dumps(unexpected, indent=1)}"
    assert hook.names() <= expected_idle, f"unexpected pages: {hook.names() - expected_idle}"

    # --- 3. stop mining -> block production stopped pages ---------------------------------------
    t0 = time.time()
    rpc(el_url, "evm_setIntervalMining", 0)
    page = wait_until("EthwatchExecutionBlockProductionStopped at the webhook",
                      lambda: hook.first("EthwatchExecutionBlockProductionStopped", after=t0), 60, stack)
    timings["execution block production stopped (mining off -> page)"] = page[0] - t0
    a = page[1]
    assert a["labels"] == {"alertname": "EthwatchExecutionBlockProductionStopped", "severity": "critical",
                           "job": "ethwatch-execution", "namespace": "e2e", "pod": "anvil-0",
                           "instance": f"{HOST}:{p['el_exp']}"}, a["labels"]
    assert a["annotations"]["description"].startswith(
        f"Execution node e2e/anvil-0 ({HOST}:{p['el_exp']}) has seen no new block for ")
    assert a["annotations"]["runbook_url"].endswith("docs/runbooks.md#ethwatchexecutionblockproductionstopped")

    # --- 4. resume mining -> it resolves --------------------------------------------------------
    t1 = time.time()
    rpc(el_url, "evm_setIntervalMining", 1)
    page = wait_until("EthwatchExecutionBlockProductionStopped resolved at the webhook",
                      lambda: hook.first("EthwatchExecutionBlockProductionStopped", status="resolved",
                                         after=t1), 60, stack)
    timings["execution block production resumed (mining on -> resolved)"] = page[0] - t1

    # --- 5. kill the nodes -> their down alerts page ---------------------------------------------
    nodes = [("anvil", "EthwatchExecutionNodeDown", "anvil-0")]
    if lodestar:
        nodes.append(("lodestar", "EthwatchConsensusNodeDown", "lodestar-0"))
    killed = {}
    for child_name, _, _ in nodes:
        child = next(c for c in stack.children if c.name == child_name)
        child.expected_exit = True
        killed[child_name] = time.time()
        child.kill()
    for child_name, alert, pod in nodes:
        page = wait_until(f"{alert} at the webhook",
                          lambda: hook.first(alert, after=killed[child_name], pod=pod), 60, stack)
        timings[f"{alert} ({child_name} killed -> page)"] = page[0] - killed[child_name]
        assert page[1]["labels"]["severity"] == "critical"
        assert f"e2e/{pod}" in page[1]["annotations"]["description"]

    # --- 6. kill an exporter -> Prometheus's `up` pages ------------------------------------------
    exporter = next(c for c in stack.children if c.name == "ethwatch-execution")
    exporter.expected_exit = True
    t4 = time.time()
    exporter.kill()
    page = wait_until("EthwatchExporterDown at the webhook",
                      lambda: hook.first("EthwatchExporterDown", after=t4, job="ethwatch-execution"),
                      60, stack)
    timings["EthwatchExporterDown (ethwatch execution killed -> page)"] = page[0] - t4
    assert page[1]["labels"]["severity"] == "warning"

    # Nothing but the faults we caused paged, before or after (a dead node pages once: its
    # stale head, stream and errors are suppressed while it is down).
    allowed = (expected_idle | {"EthwatchExecutionBlockProductionStopped", "EthwatchExporterDown"}
               | {n[1] for n in nodes})
    time.sleep(4)
    assert hook.names() <= allowed, f"unexpected pages: {hook.names() - allowed}"
