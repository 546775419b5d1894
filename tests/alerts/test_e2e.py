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

import json
import os
import signal
import sys
import time

import pytest

from common import E2E_OVERLAY, GENERATE, run, tool
from e2e.devnet import Devnet, Labels, build_ethwatch, child_env, die_with_parent, has_command
from e2e.stack import HOST, Stack, Webhook, free_port, http_get, metric_value, rpc, wait_until

pytestmark = pytest.mark.e2e


def test_alerts_reach_the_webhook_end_to_end(tmp_path):
    ethwatch = build_ethwatch()
    assert has_command(ethwatch, "consensus"), f"{ethwatch} has no `consensus` subcommand"
    lodestar = tool("ETHWATCH_LODESTAR", "lodestar")
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
        _run(stack, hook, tmp_path, rules, ethwatch, lodestar, alertmanager, timings)
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


def _run(stack, hook, tmp, rules, ethwatch, lodestar, alertmanager, timings):
    # --- nodes and exporters: tests/e2e/devnet.py ----------------------------------------------
    # anvil + ethwatch execution (watching this test's directory's volume), the Lodestar dev chain
    # + ethwatch consensus, and the watcher over both (a network of one per layer: it must stay
    # quiet). It returns once the nodes answer through their exporters: Prometheus starts only
    # then, since a node still booting is really unreachable, and a test with 2 s `for:`s would
    # rightly page for it.
    net = Devnet.start(stack, tmp, ethwatch, consensus=bool(lodestar), network=bool(lodestar),
                       labels=Labels("anvil-0", "lodestar-0", "ethwatch-network-0", chart=False),
                       otel=False, pair=False, volume=tmp)
    p = {**net.ports, "am": free_port()}
    el_url = net.el_url
    el_metrics = f"http://{HOST}:{p['el_exp']}/metrics"
    pre = dict(env=child_env(), preexec_fn=die_with_parent)
    wait_until("the execution exporter's expected block interval",
               lambda: metric_value(http_get(el_metrics).decode(),
                                    "eth_el_expected_block_interval_seconds") is not None,
               60, stack)

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
    prom = net.spawn_prometheus(rules, alertmanager_port=p["am"])

    # Children are all spawned (preexec_fn is not thread-safe): now the webhook may serve.
    hook.start()
    net.wait_prometheus(prom)
    wait_until("Alertmanager ready", lambda: http_get(f"http://{HOST}:{p['am']}/-/ready"), 60, stack)
    groups = len(list(rules.glob("*.yaml")))  # one group per rendered file
    wait_until("Prometheus to load the rules",
               lambda: len(json.loads(http_get(f"{prom.base}/api/v1/rules"))["data"]["groups"]) == groups,
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
