"""The enclave, for real: the chart installed into the local one-node cluster (scripts/kube-local.sh)
with two geth/Prysm participants built from the Go module proxy and packed as local images, then
checked as an operator would: genesis, readiness, blocks, peers, sidecars against their nodes, the
network watcher's agreement, the NetworkPolicies from inside and outside, `helm test`, a deleted
node pod coming back on its volume, and `helm uninstall`.

Probes are pods this test creates (the tools image: sh and curl): one in the enclave's namespace
with the labels of the chart's own test pods (the policies let those reach JSON-RPC, the Beacon API
and the sidecars), one in a `monitoring` namespace (where the policies let Prometheus in), one in a
namespace of its own (an outsider), and an ephemeral container inside a beacon node's pod (it
shares that pod's network identity, so that pod's policies apply to it).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from e2e.devnet import build_ethwatch  # noqa: E402
from e2e.stack import wait_until  # noqa: E402

from conftest import sh  # noqa: E402

RELEASE = "enclave"
NAMESPACE = "enclave"
PREFIX = f"{RELEASE}-eth-enclave"
EL = [f"{PREFIX}-el-{i}-geth-prysm-0" for i in (1, 2)]
CL = [f"{PREFIX}-cl-{i}-prysm-geth-0" for i in (1, 2)]
VC = [f"{PREFIX}-vc-{i}-geth-prysm-0" for i in (1, 2)]
# The participant test_helm_upgrade_adds_a_participant_that_syncs_and_joins adds (no validators).
EL3, CL3 = f"{PREFIX}-el-3-geth-prysm-0", f"{PREFIX}-cl-3-prysm-geth-0"
SLOT = 4
MONITORING = "monitoring"
# The test's values on top of the local enclave's: alerts that fire within the test's patience.
TEST_VALUES = ROOT / "tests/kube/enclave-test-values.yaml"


@pytest.fixture(scope="module")
def kube(kube_cluster):
    return kube_cluster


def jget(kube, *args):
    return json.loads(kube.kubectl(*args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def enclave(kube):
    """`scripts/kube-local.sh enclave`: images, helm install, blocks advancing on every node."""
    # The image packs the debug build the tests already have (the release build, which
    # `scripts/kube-local.sh enclave` packs by default, costs more CI time than this whole test).
    env = dict(kube.env, ENCLAVE_ETHWATCH_BIN=str(build_ethwatch()), ENCLAVE_VALUES=str(TEST_VALUES))
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(ROOT / "scripts/kube-local.sh"), "enclave"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    took = time.monotonic() - t0
    if proc.returncode != 0:
        diag = kube.kubectl("-n", NAMESPACE, "get", "pods,jobs,pvc", "-o", "wide", check=False).stdout
        raise AssertionError(
            f"scripts/kube-local.sh enclave failed ({proc.returncode}) after {took:.0f}s:\n"
            f"{proc.stderr[-4000:]}\n{diag}"
        )
    ready = [line for line in proc.stdout.splitlines() if line.startswith(f"enclave {RELEASE} ready")]
    assert ready, proc.stdout
    print(f"\nenclave install: {took:.0f}s; {ready[-1]}")
    yield {"install_seconds": took}


def probe_pod(kube, namespace, name, labels):
    """A pod with sh and curl (the tools image the chart's init containers use), Running."""
    image = jget(kube, "-n", NAMESPACE, "get", "pod", EL[0])["spec"]["initContainers"][0]["image"]
    kube.kubectl("create", "namespace", namespace, check=False)
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"],
                    "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 10001},
                }
            ],
            "terminationGracePeriodSeconds": 1,
        },
    }
    kube.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s")
    return namespace, name


@pytest.fixture(scope="module")
def probes(kube, enclave):
    inside = probe_pod(
        kube,
        NAMESPACE,
        "probe-inside",
        {
            "app.kubernetes.io/name": "eth-enclave",
            "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/component": "test",
        },
    )
    # The monitoring namespace is the monitoring stack's (scripts/kube/monitoring.sh): only the
    # probe pod goes at the end there; the outsider's namespace is the test's own.
    monitoring = probe_pod(kube, MONITORING, "probe-prometheus", {"app": "probe"})
    outsider = probe_pod(kube, "outsider", "probe-outsider", {"app": "probe"})
    yield {"inside": inside, "monitoring": monitoring, "outsider": outsider}
    kube.kubectl("-n", MONITORING, "delete", "pod", monitoring[1], "--wait=false", check=False)
    kube.kubectl("delete", "namespace", outsider[0], "--wait=false", check=False)


def pod_ip(kube, name):
    ip = jget(kube, "-n", NAMESPACE, "get", "pod", name)["status"].get("podIP")
    assert ip, f"{name} has no IP"
    return ip


def curl(kube, probe, url, data=None, timeout=5):
    """(HTTP status or 0 when nothing answered, body) of one request from a probe pod."""
    ns, name = probe
    cmd = ["curl", "-s", "-m", str(timeout), "-o", "/tmp/body", "-w", "%{http_code}"]
    if data is not None:
        cmd += ["-H", "content-type: application/json", "--data", data]
    cmd.append(url)
    proc = kube.kubectl(
        "-n", ns, "exec", name, "--", "sh", "-c", " ".join(f"'{c}'" for c in cmd) + "; echo; cat /tmp/body",
        check=False, timeout=timeout + 30,
    )
    first, _, body = proc.stdout.partition("\n")
    code = int(first) if first.strip().isdigit() else 0
    return code, body


def rpc(kube, probe, ip, method, params=None):
    code, body = curl(kube, probe, f"http://{ip}:8545",
                      json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}))
    assert code == 200, f"{method} at {ip}: HTTP {code} {body[:200]}"
    return json.loads(body)["result"]


def beacon(kube, probe, ip, path):
    code, body = curl(kube, probe, f"http://{ip}:5052{path}")
    assert code == 200, f"{path} at {ip}: HTTP {code} {body[:200]}"
    return json.loads(body)["data"]


def metrics(kube, probe, ip, port=9545):
    code, body = curl(kube, probe, f"http://{ip}:{port}/metrics")
    assert code == 200, f"/metrics at {ip}:{port}: HTTP {code}"
    out = {}
    for line in body.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)", line)
        if m:
            out.setdefault(m.group(1), []).append((m.group(2) or "", float(m.group(3))))
    return out


def one(samples, name):
    values = samples.get(name)
    assert values, f"no {name} in the scrape"
    return values[0][1]


# ---------------------------------------------------------------------------------------------


def test_genesis_and_keys_were_written(kube, enclave):
    cms = jget(kube, "-n", NAMESPACE, "get", "configmap", "-l", f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=genesis")
    genesis = [c for c in cms["items"] if "genesis_time.txt" in (c.get("data") or {})]
    assert len(genesis) == 1, [c["metadata"]["name"] for c in cms["items"]]
    assert int(genesis[0]["data"]["genesis_time.txt"]) > 1_700_000_000
    assert {"genesis.json", "config.yaml", "genesis.ssz.gz"} <= set(genesis[0]["binaryData"])
    secrets = jget(kube, "-n", NAMESPACE, "get", "secret")["items"]
    key_secrets = [s for s in secrets if "eth-enclave/key-range" in (s["metadata"].get("annotations") or {})]
    assert sorted(s["metadata"]["annotations"]["eth-enclave/key-range"] for s in key_secrets) == ["0-16", "16-32"]


def test_every_pod_becomes_ready(kube, enclave):
    kube.kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", "pod",
            "-l", f"app.kubernetes.io/instance={RELEASE}", "--timeout=300s", timeout=320)
    pods = jget(kube, "-n", NAMESPACE, "get", "pods", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    names = {p["metadata"]["name"] for p in pods}
    assert set(EL + CL + VC) <= names, names
    assert any(n.startswith(f"{PREFIX}-network-") for n in names), names
    # The node pods' readiness is the sidecar's /readyz (the node answers and is synced).
    for p in pods:
        if p["metadata"]["name"] in EL + CL:
            side = [c for c in p["spec"]["containers"] if c["name"] == "ethwatch"][0]
            assert side["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_blocks_advance_and_peers_on_both_layers(kube, probes):
    inside = probes["inside"]
    first = {el: int(rpc(kube, inside, pod_ip(kube, el), "eth_blockNumber"), 16) for el in EL}
    for el in EL:
        ip = pod_ip(kube, el)
        # A young chain misses a few slots while its nodes find each other: within 15 slots.
        wait_until(f"{el}'s head past {first[el]}", lambda: int(rpc(kube, inside, ip, "eth_blockNumber"), 16) > first[el], 15 * SLOT, interval=2.0)
        assert int(rpc(kube, inside, ip, "net_peerCount"), 16) >= 1, f"{el} has no peer"
    for cl in CL:
        peers = wait_until(f"{cl} connected to a peer", lambda: int(beacon(kube, inside, pod_ip(kube, cl), "/eth/v1/node/peer_count")["connected"]) >= 1, 90, interval=2.0)
        assert peers


def test_every_sidecar_matches_its_node(kube, probes):
    inside = probes["inside"]
    for el in EL:
        ip = pod_ip(kube, el)

        def close():
            node = int(rpc(kube, inside, ip, "eth_blockNumber"), 16)
            m = metrics(kube, inside, ip)
            side = one(m, "eth_el_head_block_number")
            assert one(m, "eth_el_up") == 1
            assert abs(side - node) <= 1, f"{el}: sidecar {side}, node {node}"
            assert one(m, "eth_el_peers") >= 1
            return True

        wait_until(f"{el}'s sidecar within a block of its node", close, 60, interval=2.0)
    for cl in CL:
        ip = pod_ip(kube, cl)

        def close():
            node = int(beacon(kube, inside, ip, "/eth/v1/beacon/headers/head")["header"]["message"]["slot"])
            m = metrics(kube, inside, ip)
            side = one(m, "eth_cl_head_slot")
            assert one(m, "eth_cl_up") == 1
            assert abs(side - node) <= 1, f"{cl}: sidecar slot {side}, node slot {node}"
            return True

        wait_until(f"{cl}'s sidecar within a slot of its node", close, 60, interval=2.0)


def test_network_watcher_finds_every_node_and_reports_agreement(kube, probes):
    pods = jget(kube, "-n", NAMESPACE, "get", "pods", "-l", f"app.kubernetes.io/component=network,app.kubernetes.io/instance={RELEASE}")
    ip = pods["items"][0]["status"]["podIP"]

    def agreed():
        code, body = curl(kube, probes["monitoring"], f"http://{ip}:9545/api/v1/status")
        assert code == 200, code
        status = json.loads(body)
        nodes = {n["name"]: n for n in status["nodes"]}
        assert len(nodes) == 4, sorted(nodes)
        assert all(n["state"] == "up" for n in nodes.values()), {k: n["state"] for k, n in nodes.items()}
        layers = {layer["layer"]: layer for layer in status["layers"]}
        assert layers["execution"]["distinct_heads"] == 1, layers["execution"]
        assert layers["consensus"]["distinct_heads"] == 1, layers["consensus"]
        return True

    wait_until("the watcher sees 4 nodes up and one head per layer", agreed, 120, interval=2.0)


def test_network_policies_hold(kube, probes):
    el1, el2, cl1, vc1 = (pod_ip(kube, n) for n in (EL[0], EL[1], CL[0], VC[0]))
    outsider, monitoring = probes["outsider"], probes["monitoring"]
    # From outside the enclave: no engine API, no validator client, no JSON-RPC, no Beacon API.
    for url in (f"http://{el1}:8551", f"http://{vc1}:8080/metrics", f"http://{el1}:8545", f"http://{cl1}:5052/eth/v1/node/version"):
        code, _ = curl(kube, outsider, url, timeout=4)
        assert code == 0, f"the outsider reached {url} (HTTP {code})"
    # Prometheus's namespace reaches the sidecars, the clients' metrics and the validator client.
    for url in (f"http://{el1}:9545/metrics", f"http://{cl1}:9545/metrics", f"http://{vc1}:8080/metrics"):
        code, _ = curl(kube, monitoring, url)
        assert code == 200, f"monitoring could not scrape {url} (HTTP {code})"
    # Inside pair 1's beacon node (an ephemeral container shares its network identity): its own
    # engine API answers (401 without the JWT), the other pair's does not.
    image = jget(kube, "-n", NAMESPACE, "get", "pod", EL[0])["spec"]["initContainers"][0]["image"]
    script = (
        f"a=$(curl -s -m 4 -o /dev/null -w '%{{http_code}}' http://{el1}:8551); "
        f"b=$(curl -s -m 4 -o /dev/null -w '%{{http_code}}' http://{el2}:8551); echo \"own=$a other=$b\""
    )
    kube.kubectl("-n", NAMESPACE, "debug", CL[0], f"--image={image}", "--image-pull-policy=Never",
            "--profile=restricted", "--container=engine-probe", "--", "sh", "-c", f"sleep 2; {script}; sleep 600")
    out = wait_until("the ephemeral container's answer", lambda: re.search(r"own=(\d+) other=(\d+)", kube.kubectl("-n", NAMESPACE, "logs", CL[0], "-c", "engine-probe", check=False).stdout), 90, interval=2.0)
    own, other = out.group(1), out.group(2)
    assert own == "401", f"pair 1's beacon node cannot reach its own engine API (HTTP {own})"
    assert other == "000", f"pair 1's beacon node reached pair 2's engine API (HTTP {other})"


def test_helm_test_passes(kube, enclave):
    proc = subprocess.run([os.environ["ETHWATCH_HELM"], "test", RELEASE, "-n", NAMESPACE, "--timeout", "5m"],
                          env=kube.env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- monitoring, as in a real cluster (scripts/kube/monitoring.sh) ---------------------------


def monitoring_get(kube, pod, port, path, timeout=10):
    """JSON from a monitoring pod's HTTP API, from this host (the node routes to its pods)."""
    ip = jget(kube, "-n", MONITORING, "get", "pod", pod)["status"]["podIP"]
    with urllib.request.urlopen(f"http://{ip}:{port}{path}", timeout=timeout) as r:
        return json.loads(r.read())


def prom(kube, path):
    body = monitoring_get(kube, "prometheus-ethwatch-0", 9090, path)
    assert body["status"] == "success", body
    return body["data"]


def prom_query(kube, expr):
    return prom(kube, "/api/v1/query?query=" + urllib.parse.quote(expr))["result"]


def pages(kube, alertname, pod):
    """The Alertmanager's active alerts of that name for that pod."""
    alerts = monitoring_get(kube, "alertmanager-ethwatch-0", 9093, "/api/v2/alerts?active=true&silenced=false")
    return [a for a in alerts if a["labels"].get("alertname") == alertname and a["labels"].get("pod") == pod
            and a["status"]["state"] == "active"]


def test_prometheus_scrapes_every_target_and_loads_the_rules(kube, enclave):
    """The operator's Prometheus found the chart's ServiceMonitors (sidecars, watcher, clients'
    own metrics) through the NetworkPolicies, and its PrometheusRule."""

    def all_up():
        targets = prom(kube, "/api/v1/targets?state=active")["activeTargets"]
        ours = [t for t in targets if t["labels"].get("namespace") == NAMESPACE]
        jobs = sorted(t["labels"]["job"] for t in ours)
        for job, n in (("ethwatch-execution", 2), ("ethwatch-consensus", 2), ("ethwatch-network", 1),
                       ("geth", 2), ("prysm-beacon", 2), ("prysm-validator", 2)):
            assert jobs.count(job) == n, f"{job}: {jobs.count(job)} targets, want {n} (all: {jobs})"
        down = [(t["labels"]["job"], t["labels"].get("pod"), t["lastError"]) for t in ours if t["health"] != "up"]
        assert not down, down
        return ours

    ours = wait_until("every target of the enclave up in the cluster's Prometheus", all_up, 180, interval=5.0)
    # The targets carry the labels the alerts and dashboards group by.
    side = [t for t in ours if t["labels"]["job"] == "ethwatch-execution"]
    assert {t["labels"]["eth_enclave_participant"] for t in side} == {"1", "2"}, side[0]["labels"]
    assert all(t["labels"].get("enclave") == RELEASE for t in side), side[0]["labels"]
    rules = {r["name"]: r for g in prom(kube, "/api/v1/rules")["groups"] for r in g["rules"]}
    for name in ("EthwatchExecutionNodeDown", "EthwatchConsensusNodeDown", "EthwatchNetworkChainSplit",
                 "EthwatchExporterDown"):
        assert name in rules, f"{name} not loaded (rules: {sorted(rules)[:10]}...)"
    assert rules["EthwatchExecutionNodeDown"]["duration"] == 15, rules["EthwatchExecutionNodeDown"]
    assert not [r for r in rules.values() if r.get("health") == "err"], "rules failing to evaluate"
    # Its Alertmanager is the operator's, and Prometheus sends to it.
    ams = prom(kube, "/api/v1/alertmanagers")["activeAlertmanagers"]
    assert ams and all(":9093" in a["url"] for a in ams), ams
    # The sidecars' values arrive: both heads, from the sidecars, within a few blocks of each other.
    heads = [float(r["value"][1]) for r in prom_query(kube, f'eth_el_head_block_number{{namespace="{NAMESPACE}"}}')]
    assert len(heads) == 2 and min(heads) > 0 and max(heads) - min(heads) <= 3, heads
    print_memory()


def print_memory():
    """RSS of the enclave's and the monitoring's programs on this node, summed per program (a
    measurement for docs/kube-local.md, not a check)."""
    rss = {}
    for line in sh("ps", "-eo", "rss=,comm=").stdout.splitlines():
        kb, _, comm = line.strip().partition(" ")
        if comm in ("geth", "beacon-chain", "validator", "ethwatch", "prometheus", "alertmanager", "operator",
                    "prometheus-conf", "coredns"):
            rss[comm] = rss.get(comm, 0) + int(kb) // 1024
    print(f"\nmemory (RSS MiB, summed per program): {rss}; total {sum(rss.values())} MiB")


def container_pid(kube, pod, container):
    """The host PID of a container's main process (containerd's task list)."""
    statuses = jget(kube, "-n", NAMESPACE, "get", "pod", pod)["status"]["containerStatuses"]
    cid = next(c["containerID"] for c in statuses if c["name"] == container).split("://", 1)[1]
    out = sh(*kube.env["CTR"].split(), "-n", "k8s.io", "task", "ls").stdout
    for line in out.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == cid:
            return int(fields[1])
    raise AssertionError(f"no task {cid} of {pod}/{container} in:\n{out}")


def test_a_hung_node_pages_through_alertmanager_and_resolves(kube, enclave):
    """geth frozen (SIGSTOP from the node: the process lives, its socket accepts, nothing answers)
    while its sidecar keeps serving: EthwatchExecutionNodeDown reaches the Alertmanager within its
    `for:` (15 s in tests/kube/enclave-test-values.yaml), then resolves once geth runs again.
    (Deleting the whole pod takes the sidecar with it: no target, no eth_el_up == 0 to page on;
    the pod comes back on its own, test_deleted_node_pod_comes_back_on_its_volume.)"""
    wait_until("no page before the fault", lambda: not pages(kube, "EthwatchExecutionNodeDown", EL[0]), 60, interval=3.0)
    pid = container_pid(kube, EL[0], "geth")
    t0 = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        alert = wait_until(f"EthwatchExecutionNodeDown for {EL[0]} in the Alertmanager",
                           lambda: (pages(kube, "EthwatchExecutionNodeDown", EL[0]) or [None])[0], 180, interval=3.0)
        paged = time.monotonic() - t0
    finally:
        os.kill(pid, signal.SIGCONT)
    assert alert["labels"]["namespace"] == NAMESPACE and alert["labels"]["severity"] == "critical", alert["labels"]
    assert "runbook_url" in alert["annotations"], alert["annotations"]
    # The other node did not page.
    assert not pages(kube, "EthwatchExecutionNodeDown", EL[1])
    t1 = time.monotonic()
    wait_until(f"the page for {EL[0]} resolved", lambda: not pages(kube, "EthwatchExecutionNodeDown", EL[0]), 180, interval=3.0)
    print(f"\npaged {paged:.0f} s after the node froze; resolved {time.monotonic() - t1:.0f} s after it ran again")


def test_helm_upgrade_adds_a_participant_that_syncs_and_joins(kube, probes):
    """`helm upgrade` with a third participant (no validators): its geth and Prysm start from the
    enclave's genesis, find the others, catch up and follow the head; the watcher adds them."""
    proc = subprocess.run([os.environ["ETHWATCH_HELM"], "upgrade", RELEASE, str(ROOT / "charts/eth-enclave"),
                           "-n", NAMESPACE, "--reuse-values", "-f", str(ROOT / "tests/kube/enclave-upgrade-values.yaml"),
                           "--timeout", "10m"], env=kube.env, capture_output=True, text=True, timeout=700)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    inside = probes["inside"]
    kube.kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", f"pod/{EL3}", f"pod/{CL3}", "--timeout=420s", timeout=450)
    el3, cl3 = pod_ip(kube, EL3), pod_ip(kube, CL3)

    def el_caught_up():
        head = int(rpc(kube, inside, pod_ip(kube, EL[0]), "eth_blockNumber"), 16)
        mine = int(rpc(kube, inside, el3, "eth_blockNumber"), 16)
        assert mine >= head - 1 and head > 0, f"{EL3} at {mine}, the network at {head}"
        assert int(rpc(kube, inside, el3, "net_peerCount"), 16) >= 1
        return mine

    def cl_caught_up():
        head = int(beacon(kube, inside, pod_ip(kube, CL[0]), "/eth/v1/beacon/headers/head")["header"]["message"]["slot"])
        sync = beacon(kube, inside, cl3, "/eth/v1/node/syncing")
        mine = int(sync["head_slot"])
        assert not sync["is_syncing"] and mine >= head - 1, f"{CL3} at slot {mine} (syncing {sync['is_syncing']}), the network at {head}"
        assert int(beacon(kube, inside, cl3, "/eth/v1/node/peer_count")["connected"]) >= 1
        return mine

    wait_until(f"{EL3} synced and peered", el_caught_up, 300, interval=4.0)
    first = wait_until(f"{CL3} synced and peered", cl_caught_up, 300, interval=4.0)
    # It follows: its head moves on with the network.
    wait_until(f"{CL3} following the head", lambda: cl_caught_up() > first, 60, interval=4.0)
    watcher = jget(kube, "-n", NAMESPACE, "get", "pods", "-l", f"app.kubernetes.io/component=network,app.kubernetes.io/instance={RELEASE}")["items"][0]["status"]["podIP"]

    def six_agree():
        code, body = curl(kube, probes["monitoring"], f"http://{watcher}:9545/api/v1/status")
        assert code == 200, code
        status = json.loads(body)
        assert len(status["nodes"]) == 6 and all(n["state"] == "up" for n in status["nodes"]), \
            {n["name"]: n["state"] for n in status["nodes"]}
        assert all(layer["distinct_heads"] == 1 for layer in status["layers"]), status["layers"]
        return True

    wait_until("the watcher sees 6 nodes up, one head per layer", six_agree, 180, interval=4.0)


def test_dashboards_show_data_from_the_clusters_prometheus(kube, probes):
    """The dashboards' live-query check (tests/dashboards/dashlib.py) against the operator's
    Prometheus: every query of every panel, with namespace=enclave and node=1 as Grafana would
    fill them, returns a value, except the cAdvisor/kube-state-metrics/kubelet series (not
    scraped here, by the same rule as tests/dashboards) and metrics no sidecar of this enclave
    exports (Prysm or geth lacks the call); a panel with such a query must still show data."""
    sys.path.insert(0, str(ROOT / "tests/dashboards"))
    from dashlib import dashboards, exported_metrics, fill, metric_names, needs_kubernetes, panels  # noqa: E402

    values = {"namespace": NAMESPACE, "node": "1"}
    # The dashboards' variables resolve to this enclave and its participants.
    assert NAMESPACE in prom(kube, "/api/v1/label/namespace/values?match[]=ethwatch_build_info")
    sel = urllib.parse.quote(f'ethwatch_build_info{{namespace="{NAMESPACE}"}}')
    assert {"1", "2"} <= set(prom(kube, f"/api/v1/label/eth_enclave_participant/values?match[]={sel}"))

    def live_names():
        names = set()
        for name in EL + CL:
            names |= set(metrics(kube, probes["inside"], pod_ip(kube, name)))
        return names

    live = live_names()
    documented = exported_metrics()

    def not_provided(t):
        ours = {m for m in metric_names(t["expr"]) if m in documented}
        return sorted(ours) if ours and not ours & live else []

    boards = dashboards()
    pending, answered, excluded = {}, set(), 0
    for fname, d in boards.items():
        for p in panels(d):
            for t in p["targets"]:
                if needs_kubernetes(t["expr"]):
                    excluded += 1
                else:
                    pending[(fname, p["title"], t["refId"])] = t
    total = len(pending)
    # Participation exists once an epoch has completed after the sidecar's start (32 slots of 4 s
    # here): a query on a metric no sidecar exports yet counts as "not exported" only once the chain
    # is three epochs old; until then (and at most ten minutes) the loop waits for it.
    cl0 = pod_ip(kube, CL[0])
    per_epoch = int(beacon(kube, probes["inside"], cl0, "/eth/v1/config/spec")["SLOTS_PER_EPOCH"])

    def settled():
        head = beacon(kube, probes["inside"], cl0, "/eth/v1/beacon/headers/head")
        return int(head["header"]["message"]["slot"]) >= 3 * per_epoch

    deadline = time.monotonic() + 600
    while pending and time.monotonic() < deadline:
        for key, t in list(pending.items()):
            result = prom_query(kube, fill(t["expr"], rate_interval="30s", values=values))
            if any(v[1] not in ("NaN", "+Inf", "-Inf") for v in (r["value"] for r in result)):
                del pending[key]
                answered.add(key)
        live = live_names()
        if all(not_provided(t) for t in pending.values()) and settled():
            break
        time.sleep(5)
    absent = {k: names for k, t in pending.items() if (names := not_provided(t))}
    for key in absent:
        del pending[key]
    empty = {f"{f} / {title} [{ref}]": fill(t["expr"], rate_interval="30s", values=values)
             for (f, title, ref), t in pending.items()}
    assert not empty, "panels with a query that returns no data from the cluster's Prometheus:\n" + json.dumps(empty, indent=1)
    # A panel with such a query still shows data: another of its queries answered.
    for (f, title, _), names in absent.items():
        assert any((f, title, t["refId"]) in answered for p in panels(boards[f]) if p["title"] == title
                   for t in p["targets"]), (
            f"{f} / {title}: only queries on metrics this enclave's sidecars do not export ({names})")
    print(f"\ndashboards: {total - len(absent)} of {total} queries returned data from the cluster's "
          f"Prometheus; {len(absent)} read metrics this enclave does not export; {excluded} read cluster series")


def test_deleted_node_pod_comes_back_on_its_volume(kube, probes):
    inside = probes["inside"]
    before = int(rpc(kube, inside, pod_ip(kube, EL[0]), "eth_blockNumber"), 16)
    uid = jget(kube, "-n", NAMESPACE, "get", "pod", EL[0])["metadata"]["uid"]
    kube.kubectl("-n", NAMESPACE, "delete", "pod", EL[0], "--wait=true", "--timeout=120s", timeout=150)

    def back():
        pod = jget(kube, "-n", NAMESPACE, "get", "pod", EL[0])
        assert pod["metadata"]["uid"] != uid
        conds = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        assert conds.get("Ready") == "True", conds
        return True

    wait_until(f"{EL[0]} Ready again", back, 240, interval=2.0)
    ip = pod_ip(kube, EL[0])
    # Its volume kept the chain: it starts from where it was, not from genesis, and follows again.
    start = int(rpc(kube, inside, ip, "eth_blockNumber"), 16)
    assert start >= before, f"{EL[0]} came back at block {start}, below {before}: its volume was not kept"
    other = int(rpc(kube, inside, pod_ip(kube, EL[1]), "eth_blockNumber"), 16)
    wait_until(f"{EL[0]} following the chain again", lambda: int(rpc(kube, inside, ip, "eth_blockNumber"), 16) > other, 120, interval=2.0)


def test_uninstall_removes_everything_but_the_documented_volumes(kube, probes):
    # The probe inside carries the release's labels (to pass its policies): it is the test's, not helm's.
    kube.kubectl("-n", NAMESPACE, "delete", "pod", probes["inside"][1], "--wait=true", timeout=120)
    proc = subprocess.run([os.environ["ETHWATCH_HELM"], "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "5m"],
                          env=kube.env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    def gone():
        left = kube.kubectl("-n", NAMESPACE, "get", "all,configmap,secret,networkpolicy,servicemonitor,prometheusrule",
                       "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "name").stdout.split()
        assert not left, left
        return True

    wait_until("every object of the release gone", gone, 120, interval=2.0)
    # The genesis ConfigMap (written by the Job, not by helm) goes with the cleanup hook.
    cms = kube.kubectl("-n", NAMESPACE, "get", "configmap", "-o", "name").stdout.split()
    assert not [c for c in cms if "genesis" in c], cms
    # PVCs are kept (storage.retentionPolicy.whenDeleted: Retain, as the chart README says).
    pvcs = kube.kubectl("-n", NAMESPACE, "get", "pvc", "-o", "name").stdout.split()
    # Two per node (execution, beacon) and one per validator client: 3 participants, 2 with validators.
    assert len(pvcs) == 8, pvcs
    kube.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=180s", timeout=200)
