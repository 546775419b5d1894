"""Assertions on the rendered objects of every scenario: the sidecars, the network watcher (its
Deployment's flags, its pod selector, its read-only RBAC), the monitors that select them, the rules
and dashboards against their source folders, replicas and validator key ranges against the
participants, one JWT per execution/beacon pair, pod security, storage, and the network policies
(evaluated flow by flow against the list in the chart README).

Over 600 lines on purpose: one file per question "is every rendered object right", sharing one
set of rendered scenarios (rendered once per session) and the policy evaluator; splitting it would
render the scenarios again per file or spread the evaluator's helpers over several."""

import base64
import ipaddress
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import (NAMESPACE, RELEASE, ROOT, by_kind, expected_participants, is_hook, one, pod_specs,
                      render, values)

FULL = f"{RELEASE}-eth-enclave"
def client_of(sts):
    """The client a node StatefulSet runs (its eth-enclave/client label, from el/cl/vc_type)."""
    return sts["metadata"]["labels"]["eth-enclave/client"]
SUBCOMMAND = {"execution": "execution", "beacon": "consensus"}


def component(doc):
    return doc["metadata"]["labels"].get("app.kubernetes.io/component")


def node_sets(docs, comp=None):
    return [d for d in by_kind(docs, "StatefulSet") if comp in (None, component(d))]


def container(pod_spec, name):
    found = [c for c in pod_spec["containers"] if c["name"] == name]
    assert len(found) == 1, f"no single container {name}"
    return found[0]


def ports(c):
    return {p["name"]: p["containerPort"] for p in c.get("ports", [])}


def script(c):
    """The shell script a container runs (command sh -c, script in args)."""
    assert c["command"][:2] in (["/bin/sh", "-ec"], ["/bin/bash", "-ec"]), c["command"]
    return c["args"][0]


def flag(text, name):
    m = re.search(rf"--{re.escape(name)}=(\S+)", text)
    return m and m.group(1).strip('"')


# ------------------------------------------------------------------------------------------------
# Sidecars


def test_every_node_pod_has_its_sidecar(scenario):
    v = values(scenario)
    docs = render(scenario)
    port = v["ethwatch"]["port"]
    sets = node_sets(docs, "execution") + node_sets(docs, "beacon")
    assert sets
    for sts in sets:
        comp = component(sts)
        spec = sts["spec"]["template"]["spec"]
        client = container(spec, client_of(sts))
        side = container(spec, "ethwatch")
        where = sts["metadata"]["name"]
        # the exporter for its layer, talking to the client in the same pod on the client's port
        assert side["args"][0] == SUBCOMMAND[comp], where
        if comp == "execution":
            url = next(a for a in side["args"] if a.startswith("--rpc-url="))
            assert url == f"--rpc-url=http://127.0.0.1:{ports(client)['rpc']}", where
        else:
            url = next(a for a in side["args"] if a.startswith("--beacon-url="))
            assert url == f"--beacon-url=http://127.0.0.1:{ports(client)['http']}", where
        # its port, its probes
        assert ports(side) == {"ethwatch": port}, where
        env = {e["name"]: e for e in side["env"]}
        assert env["ETHWATCH_WEB_LISTEN_ADDRESS"]["value"] == f"0.0.0.0:{port}"
        # (over HTTPS when monitoring.webConfig serves TLS: test_hardening.py)
        web = v["monitoring"]["webConfig"]
        tls = {"scheme": "HTTPS"} if web["enabled"] and web["tls"]["secretName"] else {}
        assert side["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ethwatch", **tls}, where
        assert side["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ethwatch", **tls}, where
        # readiness of the pod comes from the sidecar only; liveness of the client from its port
        assert "readinessProbe" not in client, where
        assert client["livenessProbe"]["tcpSocket"]["port"] in ports(client), where
        # the data volume: read-write for the client, read-only for the sidecar's volume metrics
        cmount = {m["name"]: m for m in client["volumeMounts"]}["data"]
        smount = {m["name"]: m for m in side["volumeMounts"]}["data"]
        assert not cmount.get("readOnly") and smount["readOnly"] is True, where
        assert f"--volume.path={smount['mountPath']}" in side["args"], where
        volumes = {vol["name"]: vol for vol in spec["volumes"]}
        claims = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
        if v["persistent"]:
            assert "data" in claims and "data" not in volumes, where
        else:
            assert "emptyDir" in volumes["data"] and not claims, where
        # pod identity for the traces, OTLP only when tracing is on
        for var, path in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"),
                          ("NODE_NAME", "spec.nodeName")):
            assert env[var]["valueFrom"]["fieldRef"]["fieldPath"] == path, where
        if v["tracing"]["enabled"]:
            assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == v["tracing"]["endpoint"]
            assert env["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == v["tracing"]["protocol"]
        else:
            assert not any(k.startswith("OTEL_") for k in env), where
        # plain Prometheus annotations for users without the operator
        ann = sts["spec"]["template"]["metadata"].get("annotations") or {}
        if v["monitoring"]["podAnnotations"]:
            assert ann["prometheus.io/port"] == str(port) and ann["prometheus.io/scrape"] == "true"
        else:
            assert not any(k.startswith("prometheus.io/") for k in ann)


def test_no_sidecar_without_a_node_and_no_node_without_a_sidecar(scenario):
    docs = render(scenario)
    for sts in node_sets(docs):
        names = [c["name"] for c in sts["spec"]["template"]["spec"]["containers"]]
        if component(sts) == "validator":
            assert names == [client_of(sts)]
        else:
            assert sorted(names) == sorted([client_of(sts), "ethwatch"])


# ------------------------------------------------------------------------------------------------
# The network watcher (`ethwatch network`, docs/network.md)


def parse_selector(text):
    """A Kubernetes label selector string as (key, op, values): `k=v`, `k!=v`, `k in (a,b)`,
    `k notin (a,b)`, `k`, `!k`."""
    reqs = []
    for part in re.findall(r"[^,(]+(?:\([^)]*\))?", text):
        part = part.strip().lstrip(",").strip()
        if not part:
            continue
        m = re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", part)
        if m:
            reqs.append((m.group(1), m.group(2), {x.strip() for x in m.group(3).split(",")}))
        elif "!=" in part:
            k, val = part.split("!=", 1)
            reqs.append((k.strip(), "!=", {val.strip()}))
        elif "=" in part:
            k, val = part.split("=", 1)
            reqs.append((k.strip(), "=", {val.strip().lstrip("=")}))
        elif part.startswith("!"):
            reqs.append((part[1:].strip(), "!", set()))
        else:
            reqs.append((part, "exists", set()))
    return reqs


def selector_matches(reqs, labels):
    for key, op, vals in reqs:
        have = labels.get(key)
        if op in ("=", "in") and have not in vals:
            return False
        if op in ("!=", "notin") and have in vals:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "!" and key in labels:
            return False
    return True


def test_parse_selector():
    reqs = parse_selector("a=1,b in (x, y),c!=2,!d")
    assert reqs == [("a", "=", {"1"}), ("b", "in", {"x", "y"}), ("c", "!=", {"2"}), ("d", "!", set())]
    assert selector_matches(reqs, {"a": "1", "b": "y"}) and not selector_matches(reqs, {"a": "1", "b": "z"})


def network_objects(docs):
    return [d for d in docs if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "network"]


def watcher_args(args):
    """`--flag=value` and bare `--flag` arguments as a dict (values of repeated flags in a list)."""
    out = {}
    for a in args[1:]:
        k, _, val = a.partition("=")
        out.setdefault(k, []).append(val if _ else True)
    return out


def test_network_watcher_deployment(scenario):
    v = values(scenario)
    docs = render(scenario)
    nw = v["ethwatch"]["network"]
    if not nw["enabled"]:
        assert not network_objects(docs), [f"{d['kind']} {d['metadata']['name']}" for d in network_objects(docs)]
        assert "component: network" not in yaml.safe_dump_all(docs)
        return
    dep = one(docs, "Deployment", f"{FULL}-network")
    assert by_kind(docs, "Deployment") == [dep], "the watcher is the chart's only Deployment"
    assert dep["spec"]["replicas"] == 1
    tmpl = dep["spec"]["template"]
    assert selects(dep["spec"]["selector"], tmpl["metadata"]["labels"])
    assert tmpl["metadata"]["labels"]["app.kubernetes.io/component"] == "network"
    spec = tmpl["spec"]
    (c,) = spec["containers"]
    assert c["name"] == "ethwatch" and not spec.get("initContainers")
    # the exact command line
    port = v["ethwatch"]["port"]
    assert c["args"] == [
        "network",
        "--kubernetes.discovery",
        "--kubernetes.preset=ethwatch",
        f"--kubernetes.namespace={NAMESPACE}",
        f"--kubernetes.selector=app.kubernetes.io/name=eth-enclave,app.kubernetes.io/instance={RELEASE},"
        "app.kubernetes.io/component in (execution,beacon)",
        "--kubernetes.execution-port=rpc",
        "--kubernetes.beacon-port=http",
        f"--poll-interval={nw['pollInterval']}",
        f"--request-timeout={nw['requestTimeout']}",
        f"--cycle-timeout={nw['cycleTimeout']}",
        f"--concurrency={nw['concurrency']}",
        *nw["extraArgs"],
    ] + (["--web.config.file=/etc/ethwatch/web/web-config.yml"] if v["monitoring"]["webConfig"]["enabled"] else [])
    # the same image, environment (log settings, downward API, OTLP) and port as the sidecars
    sts = node_sets(docs, "execution")[0]
    side = container(sts["spec"]["template"]["spec"], "ethwatch")
    assert c["image"] == side["image"] and c["imagePullPolicy"] == side["imagePullPolicy"]
    assert c["env"] == side["env"]
    assert ports(c) == {"ethwatch": port}
    web = v["monitoring"]["webConfig"]
    tls = {"scheme": "HTTPS"} if web["enabled"] and web["tls"]["secretName"] else {}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ethwatch", **tls}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ethwatch", **tls}
    assert c["resources"] == nw["resources"]
    assert c["securityContext"] == v["containerSecurityContext"]
    assert spec["securityContext"] == v["podSecurityContext"]
    ann = tmpl["metadata"].get("annotations") or {}
    if v["monitoring"]["podAnnotations"]:
        assert ann == {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}
    else:
        assert not ann


def test_network_watcher_selects_its_release_nodes_only(scenario):
    """The selector the watcher is started with: this release's execution and beacon pods, not
    another release's in the same namespace, not validators, test pods, genesis Jobs or itself."""
    v = values(scenario)
    if not v["ethwatch"]["network"]["enabled"]:
        return
    docs = render(scenario)
    dep = one(docs, "Deployment", f"{FULL}-network")
    text = watcher_args(dep["spec"]["template"]["spec"]["containers"][0]["args"])["--kubernetes.selector"][0]
    reqs = parse_selector(text)
    assert ("app.kubernetes.io/instance", "=", {RELEASE}) in reqs
    assert ("app.kubernetes.io/name", "=", {"eth-enclave"}) in reqs
    for d, spec in pod_specs(docs):
        labels = (d["spec"]["template"]["metadata"] if d["kind"] != "Pod" else d["metadata"])["labels"]
        node = d["kind"] == "StatefulSet" and component(d) in ("execution", "beacon")
        assert selector_matches(reqs, labels) is node, f"{d['kind']} {d['metadata']['name']}"
        if node:
            other = dict(labels, **{"app.kubernetes.io/instance": "other-release"})
            assert not selector_matches(reqs, other), "another release's nodes would be watched too"
            # the named ports the watcher looks up exist on the node's pods
            named = {p["name"] for ct in spec["containers"] for p in ct.get("ports", [])}
            want = "rpc" if component(d) == "execution" else "http"
            assert want in named, d["metadata"]["name"]
            # and pairs are known from the participant label (plus the pod index Kubernetes adds)
            assert "eth-enclave/participant" in labels


def test_network_watcher_rbac_is_read_only_on_pods_in_its_namespace(scenario):
    v = values(scenario)
    if not v["ethwatch"]["network"]["enabled"]:
        return
    docs = render(scenario)
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    spec = one(docs, "Deployment", f"{FULL}-network")["spec"]["template"]["spec"]
    sa_name = spec["serviceAccountName"]
    sa = one(docs, "ServiceAccount", sa_name)
    assert sa["metadata"]["namespace"] == NAMESPACE and not is_hook(sa)
    bindings = [b for b in by_kind(docs, "RoleBinding")
                if any(s["kind"] == "ServiceAccount" and s["name"] == sa_name for s in b["subjects"])]
    assert len(bindings) == 1
    (b,) = bindings
    assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa_name, "namespace": NAMESPACE}]
    assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": b["roleRef"]["name"]}
    role = one(docs, "Role", b["roleRef"]["name"])
    assert role["metadata"]["namespace"] == b["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]


def network_alert_job():
    """The job the network alerts' unit tests give the watcher's series."""
    text = (ROOT / "alerts" / "tests" / "network.test.yaml").read_text()
    jobs = set(re.findall(r'eth_network_\w+\{job="([^"]+)"', text))
    assert len(jobs) == 1, jobs
    return jobs.pop()


def test_network_watcher_is_scraped_as_the_alerts_expect(scenario):
    v = values(scenario)
    if not v["ethwatch"]["network"]["enabled"]:
        return
    docs = render(scenario)
    dep = one(docs, "Deployment", f"{FULL}-network")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    svcs = [s for s in by_kind(docs, "Service") if selects({"matchLabels": s["spec"]["selector"]}, pod_labels)]
    assert [s["metadata"]["name"] for s in svcs] == [f"{FULL}-network"]
    (svc,) = svcs
    # the Service selects the watcher only
    for sts in node_sets(docs):
        assert not selects({"matchLabels": svc["spec"]["selector"]}, sts["spec"]["template"]["metadata"]["labels"])
    assert {(p["name"], p["targetPort"]) for p in svc["spec"]["ports"]} == {("ethwatch", "ethwatch")}
    monitors = [m for m in by_kind(docs, "ServiceMonitor") if selects(m["spec"]["selector"], svc["metadata"]["labels"])]
    if not v["prometheus_params"]["enabled"]:
        assert not monitors
        return
    assert len(monitors) == 1, "the watcher is scraped once"
    (sm,) = monitors
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == "ethwatch" and ep["path"] == "/metrics"
    comp = svc["metadata"]["labels"]["app.kubernetes.io/component"]
    jobs = [r["replacement"] for r in ep["relabelings"]
            if r.get("targetLabel") == "job" and re.fullmatch(r["regex"], comp)]
    assert jobs == [network_alert_job()] == ["ethwatch-network"]
    assert alerts_job_regex().fullmatch(jobs[0]), "the exporter-down alert would not see the watcher"


# ------------------------------------------------------------------------------------------------
# Monitors


SELECTOR_OPS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def selects(selector, labels):
    """A LabelSelector object (matchLabels, matchExpressions), matched as its string form."""
    reqs = [(k, "=", {val}) for k, val in (selector.get("matchLabels") or {}).items()]
    reqs += [(e["key"], SELECTOR_OPS[e["operator"]], set(e.get("values", [])))
             for e in selector.get("matchExpressions") or []]
    return selector_matches(reqs, labels)


def alerts_job_regex():
    """The job matcher the alerts use for ethwatch targets (up{job=~"..."})."""
    text = (ROOT / "alerts" / "rules" / "resources.yaml").read_text()
    m = re.search(r'up\{job=~"([^"]+)"\}', text)
    assert m, "alerts/rules/resources.yaml has no up{job=~...} matcher"
    return re.compile(m.group(1))


def test_monitors_select_every_sidecar_and_client(scenario):
    v = values(scenario)
    docs = render(scenario)
    monitors = by_kind(docs, "ServiceMonitor")
    if not v["prometheus_params"]["enabled"]:
        assert not monitors and not by_kind(docs, "PrometheusRule")
        return
    services = by_kind(docs, "Service")
    covered = {}  # (statefulset, port name) -> job
    for sm in monitors:
        assert sm["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
        for k, val in v["monitoring"]["serviceMonitor"]["additionalLabels"].items():
            assert sm["metadata"]["labels"][k] == val
        chosen = [s for s in services if selects(sm["spec"]["selector"], s["metadata"]["labels"])]
        assert chosen, f"{sm['metadata']['name']} selects no Service"
        for ep in sm["spec"]["endpoints"]:
            for svc in chosen:
                comp = svc["metadata"]["labels"]["app.kubernetes.io/component"]
                meta = {"__meta_kubernetes_service_label_" + re.sub(r"[^A-Za-z0-9_]", "_", k): val
                        for k, val in svc["metadata"]["labels"].items()}
                svc_ports = {p["name"] for p in svc["spec"]["ports"]}
                assert ep["port"] in svc_ports, f"{svc['metadata']['name']} has no port {ep['port']}"
                # the job label the relabelings give this Service's targets
                job = None
                for r in ep["relabelings"]:
                    # Prometheus' relabeling: source labels joined with ";", a full match of the
                    # regex, $N in the replacement
                    if r.get("targetLabel") == "job":
                        m = re.fullmatch(r["regex"], ";".join(meta.get(x, "") for x in r["sourceLabels"]))
                        if m:
                            job = m.expand(re.sub(r"\$(\d+)", r"\\\1", r["replacement"]))
                assert job, f"no job for {comp} in {sm['metadata']['name']}"
                # every target names its enclave (the release): the "behind the network" alerts
                # group by it, so two releases in one namespace are two networks
                enclave = [r for r in ep["relabelings"] if r.get("targetLabel") == "enclave"]
                assert [(r.get("sourceLabels"), r["replacement"]) for r in enclave] == [(None, RELEASE)], \
                    f"{sm['metadata']['name']}: enclave relabeling {enclave}"
                # the Service's pods
                for sts in node_sets(docs):
                    if selects({"matchLabels": svc["spec"]["selector"]}, sts["spec"]["template"]["metadata"]["labels"]):
                        cports = {p["name"]: p["containerPort"] for c in sts["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
                        assert ep["port"] in cports
                        covered[(sts["metadata"]["name"], ep["port"])] = job
    rules = [r for pr in by_kind(docs, "PrometheusRule") for g in pr["spec"]["groups"] for r in g["rules"]]
    behind = [r for r in rules if r.get("alert", "").endswith("HeadBehindNetwork")]
    for r in behind:
        assert "max by (namespace, enclave)" in r["expr"], r["expr"]
    ethwatch_jobs = alerts_job_regex()
    for sts in node_sets(docs):
        name, comp = sts["metadata"]["name"], component(sts)
        if comp in SUBCOMMAND:
            job = covered.get((name, "ethwatch"))
            assert job, f"no ServiceMonitor scrapes the sidecar of {name}"
            assert ethwatch_jobs.fullmatch(job), f"job {job} escapes the alerts' matcher"
        if v["monitoring"]["serviceMonitor"]["clientMetrics"]:
            job = covered.get((name, "metrics"))
            assert job, f"no ServiceMonitor scrapes the client metrics of {name}"
            assert not ethwatch_jobs.fullmatch(job), f"client job {job} would count as ethwatch"
            # the job names the client: reth or geth, <client>-beacon, <client>-validator
            want = client_of(sts) if comp == "execution" else f"{client_of(sts)}-{comp}"
            assert job == want, f"{name}: client metrics job {job}, expected {want}"


def test_headless_services_select_their_pods_only(scenario):
    docs = render(scenario)
    for sts in node_sets(docs):
        svc = one(docs, "Service", sts["spec"]["serviceName"])
        assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
        matched = [s["metadata"]["name"] for s in node_sets(docs)
                   if selects({"matchLabels": svc["spec"]["selector"]}, s["spec"]["template"]["metadata"]["labels"])]
        assert matched == [sts["metadata"]["name"]]
        assert selects(sts["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"])
        # selectors use name + instance + component (+ participant) only: never version or chart
        assert not {"helm.sh/chart", "app.kubernetes.io/version"} & set(sts["spec"]["selector"]["matchLabels"])


def test_rules_equal_the_alerts_folder(scenario):
    v = values(scenario)
    docs = render(scenario)
    rules = by_kind(docs, "PrometheusRule")
    if not (v["prometheus_params"]["enabled"] and v["monitoring"]["prometheusRule"]["enabled"]):
        assert not rules
        return
    assert len(rules) == 1
    source = []
    for f in sorted((ROOT / "alerts" / "rules").glob("*.yaml")):
        source += yaml.safe_load(f.read_text())["groups"]
    assert source, "alerts/rules is empty"
    assert rules[0]["spec"]["groups"] == source


def test_dashboards_equal_the_dashboards_folder(scenario):
    v = values(scenario)
    docs = render(scenario)
    maps = [d for d in by_kind(docs, "ConfigMap") if component(d) == "dashboards"]
    sources = sorted((ROOT / "dashboards").glob("*.json"))
    if not v["grafana_params"]["enabled"]:
        assert not maps
        return
    assert len(maps) == len(sources)
    rendered = {}
    for cm in maps:
        d = v["monitoring"]["dashboards"]
        assert cm["metadata"]["labels"][d["label"]] == d["labelValue"]
        assert cm["metadata"]["annotations"]["grafana_folder"] == d["folder"]
        (key, text), = cm["data"].items()
        rendered[key] = json.loads(text)
    for f in sources:
        assert rendered[f.name] == json.loads(f.read_text()), f"{f.name} differs from its ConfigMap"


# ------------------------------------------------------------------------------------------------
# Participants: replicas, key ranges, pairing, JWTs


def test_replicas_match_the_participants(scenario):
    docs = render(scenario)
    want = expected_participants(scenario)
    names = set()
    for p in want:
        for comp, name in (("execution", p["el"]), ("beacon", p["cl"]), ("validator", p["vc"])):
            if comp == "validator" and p["validator_count"] == 0:
                assert not [d for d in docs if d["metadata"]["name"] == name]
                continue
            sts = one(docs, "StatefulSet", name)
            assert sts["spec"]["replicas"] == p["count"], name
            assert sts["metadata"]["labels"]["eth-enclave/participant"] == str(p["index"])
            names.add(name)
    assert {s["metadata"]["name"] for s in node_sets(docs)} == names


def genesis_env(docs):
    cm = one(docs, "ConfigMap", f"{FULL}-genesis-inputs")
    return dict(re.findall(r'^export (\w+)="?([^"\n]*)"?$', cm["data"]["values.env"], re.M))


def test_genesis_inputs_follow_network_params(scenario):
    v = values(scenario)
    np = v["network_params"]
    env = genesis_env(render(scenario))
    want = expected_participants(scenario)
    total = sum(p["count"] * p["validator_count"] for p in want)
    assert env["CHAIN_ID"] == str(np["network_id"])
    assert env["DEPOSIT_CONTRACT_ADDRESS"] == np["deposit_contract_address"]
    assert env["PRESET_BASE"] == np["preset"]
    assert env["SLOT_DURATION_MS"] == str(np["seconds_per_slot"] * 1000)
    assert env["SLOT_DURATION_IN_SECONDS"] == str(np["seconds_per_slot"])
    assert env["NUMBER_OF_VALIDATORS"] == str(max(total, np["preregistered_validator_count"]))
    # the delay is in the genesis time the Job computes once, not in the generator's GENESIS_DELAY
    assert env["GENESIS_DELAY"] == "0"
    assert env["GENESIS_TIMESTAMP"] == "${ENCLAVE_GENESIS_TIMESTAMP}"
    for fork in ("altair", "bellatrix", "capella", "deneb", "electra", "fulu"):
        e = np[f"{fork}_fork_epoch"]
        assert env[f"{fork.upper()}_FORK_EPOCH"] == ("18446744073709551615" if e >= 2**63 else str(e))
    job = one(docs := render(scenario), "Job", f"{FULL}-genesis")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install"
    gen = next(c for c in job["spec"]["template"]["spec"]["initContainers"] if c["name"] == "generate")
    genv = {e["name"]: e["value"] for e in gen["env"]}
    assert genv["GENESIS_TIME"] == str(np["genesis_time"])
    assert genv["VALIDATORS"] == env["NUMBER_OF_VALIDATORS"]
    assert genv["TOTAL_NODES"] == str(sum(p["count"] for p in want))
    assert genv["POD_STARTUP_SECONDS"] == str(v["genesis"]["podStartupSeconds"])
    assert genv["GENESIS_DELAY"] == str(np["genesis_delay"])


SCRIPTS = ROOT / "charts" / "eth-enclave" / "files" / "scripts"


def key_plan(docs):
    """The validator-keys Job's plan: {secret name: (first key, end key)}."""
    cm = one(docs, "ConfigMap", f"{FULL}-validator-keys-inputs")
    plan = {}
    for line in cm["data"]["keys.plan"].splitlines():
        if line.strip():
            name, lo, hi, _client = line.split()
            plan[name] = (int(lo), int(hi))
    return plan


def pubkey(i):
    return "0x" + f"{i:096x}"


def derive(docs, tmp_path):
    """Run the validator-keys Job's derive step (files/scripts/derive-keys.sh from its inputs
    ConfigMap) with a stub eth2-val-tools that lays out keystores as the real one does
    (keys/<pubkey>/voting-keystore.json, secrets/<pubkey>, the Prysm wallet under prysm/) for
    exactly the asked range; return
    the Secret manifests it wrote, by name."""
    cm = one(docs, "ConfigMap", f"{FULL}-validator-keys-inputs")["data"]
    d = {n: tmp_path / n for n in ("inputs", "secrets", "work", "out", "bin")}
    for p in d.values():
        p.mkdir(parents=True)
    for k, text in cm.items():
        (d["inputs"] / k).write_text(text)
    (d["secrets"] / "mnemonic").write_text("test words\n")
    stub = d["bin"] / "eth2-val-tools"
    stub.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do case "$1" in\n'
                    '  --out-loc) out=$2;; --source-min) min=$2;; --source-max) max=$2;;\n'
                    '  --source-mnemonic) [ "$2" = "test words" ] || exit 9;; esac; shift; done\n'
                    'i=$min; while [ $i -lt $max ]; do p=$(printf "0x%096x" $i)\n'
                    '  mkdir -p "$out/keys/$p" "$out/secrets"; echo "{\\"index\\": $i}" > "$out/keys/$p/voting-keystore.json"\n'
                    '  echo "pass-$i" > "$out/secrets/$p"; i=$((i+1)); done\n'
                    'mkdir -p "$out/prysm/direct/accounts"; echo "{}" > "$out/prysm/direct/accounts/all-accounts.keystore.json"\n')
    stub.chmod(0o755)
    job = one(docs, "Job", f"{FULL}-validator-keys")
    step = next(c for c in job["spec"]["template"]["spec"]["initContainers"] if c["name"] == "derive")
    assert step["command"] == ["/bin/bash", "-e", "/inputs/derive-keys.sh"]
    text = cm["derive-keys.sh"]
    for path in ("/inputs/", "/work/", "/out/"):
        text = text.replace(path, f"{d[path[1:-1]]}/")
    text = text.replace("/secrets/mnemonic", f"{d['secrets']}/mnemonic")
    env = {e["name"]: e["value"] for e in step["env"]}
    subprocess.run(["/bin/bash", "-ec", text], check=True, capture_output=True,
                   env={**os.environ, **env, "PATH": f"{d['bin']}:{os.environ['PATH']}"})
    return {p.stem: yaml.safe_load(p.read_text()) for p in d["out"].glob("*.yaml")}


def install_keys(secret, pod, tmp_path, keys_dir):
    """Run a validator pod's keys init container (files/scripts/validator-keys.sh) with the key
    Secret `secret` where the pod's own ordinal's Secret volume is."""
    src = tmp_path / "keys-src" / pod.rsplit("-", 1)[1]
    src.mkdir(parents=True, exist_ok=True)
    for k, b in secret["data"].items():
        (src / k).write_bytes(base64.b64decode(b))
    text = (SCRIPTS / "validator-keys.sh").read_text()
    text = text.replace("/keys-src/", f"{tmp_path}/keys-src/").replace("/validator-keys", str(keys_dir))
    return subprocess.run(["/bin/sh", "-ec", text], check=True, capture_output=True, text=True,
                          env={**os.environ, "HOSTNAME": pod}).stdout


def test_validator_key_ranges_cover_every_key_once(scenario, tmp_path):
    """Every validator client pod gets its own key Secret, derived once by the validator-keys Job:
    the plan covers every held key exactly once, and each Secret holds exactly its pod's range."""
    docs = render(scenario)
    want = expected_participants(scenario)
    genesis = int(genesis_env(docs)["NUMBER_OF_VALIDATORS"])
    plan = key_plan(docs)
    names = []
    for p in want:
        for ordinal in range(p["count"] if p["validator_count"] else 0):
            name = f"{p['vc']}-keys-{ordinal}"
            lo = p["key_start"] + ordinal * p["validator_count"]
            assert plan[name] == (lo, lo + p["validator_count"]), name
            names.append(name)
    assert sorted(plan) == sorted(names)
    at = 0
    for name, (lo, hi) in sorted(plan.items(), key=lambda x: x[1]):
        assert lo == at, f"{name} starts at {lo}: keys {at}..{lo - 1} are {'unused' if lo > at else 'shared'}"
        at = hi
    assert at == sum(p["count"] * p["validator_count"] for p in want) <= genesis
    secrets = derive(docs, tmp_path)
    assert sorted(secrets) == sorted(plan)
    prysm_vcs = {n for sts in node_sets(docs, "validator") if client_of(sts) == "prysm"
                 for n in plan if n.startswith(sts["metadata"]["name"] + "-keys-")}
    for name, (lo, hi) in plan.items():
        s = secrets[name]
        assert s["kind"] == "Secret" and s["metadata"]["name"] == name
        assert s["metadata"]["namespace"] == NAMESPACE
        assert s["metadata"]["annotations"]["eth-enclave/key-range"] == f"{lo}-{hi}"
        assert s["metadata"]["ownerReferences"][0]["kind"] == "ConfigMap"
        assert base64.b64decode(s["data"]["range"]).decode() == f"{lo}-{hi}"
        assert sorted(k for k in s["data"] if k.startswith("0x") and k.endswith(".json")) == sorted(f"{pubkey(i)}.json" for i in range(lo, hi))
        # a Prysm validator client's Secret also holds the Prysm wallet of the same keys, others not
        prysm = name in prysm_vcs
        assert ("prysm-accounts.json" in s["data"]) == prysm and ("prysm.pass" in s["data"]) == prysm, name
        assert b"test words" not in json.dumps(s).encode()


def test_each_validator_pod_installs_only_its_own_keys(tmp_path):
    scenario = "multi-participant-values"
    docs = render(scenario)
    secrets = derive(docs, tmp_path / "job")
    p = expected_participants(scenario)[0]
    keys_dir = tmp_path / "validator-keys"
    # a pod is given the Secrets of every ordinal of its participant; it takes its own
    for ordinal in range(p["count"]):
        install_keys(secrets[f"{p['vc']}-keys-{ordinal}"], f"{p['vc']}-{ordinal}", tmp_path / "pod", keys_dir / str(ordinal))
    for ordinal in range(p["count"]):
        lo = p["key_start"] + ordinal * p["validator_count"]
        want = {pubkey(i) for i in range(lo, lo + p["validator_count"])}
        root = keys_dir / str(ordinal)
        assert {x.name for x in (root / "keys").iterdir()} == want
        assert {x.name for x in (root / "secrets").iterdir()} == want
        k = pubkey(lo)
        assert json.loads((root / "keys" / k / "voting-keystore.json").read_text()) == {"index": lo}
        assert (root / "secrets" / k).read_text() == f"pass-{lo}\n"
        assert (root / "secrets" / k).stat().st_mode & 0o077 == 0
    # a restart keeps the slashing protection database; another range starts from an empty volume
    root = keys_dir / "0"
    (root / "keys" / "slashing_protection.sqlite").write_text("db")
    out = install_keys(secrets[f"{p['vc']}-keys-0"], f"{p['vc']}-0", tmp_path / "again", root)
    assert (root / "keys" / "slashing_protection.sqlite").exists() and "new range" not in out
    out = install_keys(secrets[f"{p['vc']}-keys-1"], f"{p['vc']}-0", tmp_path / "other", root)
    assert "new range" in out and not (root / "keys" / "slashing_protection.sqlite").exists()


def test_validator_pods_never_see_the_mnemonic(scenario):
    """No validator pod mounts the mnemonic (nor any Secret but its participant's key Secrets, and
    those only in the keys init container); the validator client container mounts no Secret."""
    v = values(scenario)
    docs = render(scenario)
    mnemonic_secrets = {f"{FULL}-genesis-mnemonic", f"{FULL}-mnemonic", v["secrets"]["mnemonic"]["existingSecret"]}
    for p in expected_participants(scenario):
        if not p["validator_count"]:
            continue
        spec = one(docs, "StatefulSet", p["vc"])["spec"]["template"]["spec"]
        secret_vols = {x["name"]: x["secret"]["secretName"] for x in spec["volumes"] if "secret" in x}
        assert secret_vols == {f"keys-src-{o}": f"{p['vc']}-keys-{o}" for o in range(p["count"])}
        assert not set(secret_vols.values()) & mnemonic_secrets
        for c in spec["containers"] + spec["initContainers"]:
            mounts = {m["name"] for m in c.get("volumeMounts", [])}
            if c["name"] == "keys":
                assert mounts >= set(secret_vols)
            else:
                assert not mounts & set(secret_vols), f"{p['vc']}/{c['name']} mounts a key Secret"
            assert "mnemonic" not in json.dumps(c.get("env", [])).lower()
    # the release keeps no mnemonic Secret; the Jobs' hook Secret is gone once the hooks succeed
    for d in by_kind(docs, "Secret"):
        if "mnemonic" in d["metadata"]["name"]:
            assert is_hook(d) and "hook-succeeded" in d["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
            assert d["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"


def test_validator_keys_job_may_only_write_its_secrets(scenario):
    docs = render(scenario)
    plan = key_plan(docs)
    role = one(docs, "Role", f"{FULL}-validator-keys")
    rules = sorted((tuple(r["resources"]), tuple(r["verbs"]), tuple(r.get("resourceNames", []))) for r in role["rules"])
    assert rules == sorted([
        (("secrets",), ("create",), ()),
        (("secrets",), ("get", "patch"), tuple(plan)),
        (("configmaps",), ("get",), (f"{FULL}-genesis",)),
    ])
    assert all(r["apiGroups"] == [""] for r in role["rules"])
    job = one(docs, "Job", f"{FULL}-validator-keys")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    # after the genesis Job, whose ConfigMap owns the key Secrets
    gen = one(docs, "Job", f"{FULL}-genesis")
    assert int(job["metadata"]["annotations"]["helm.sh/hook-weight"]) > int(gen["metadata"]["annotations"]["helm.sh/hook-weight"])


def run_copy_jwt(sts, ordinal, tmp_path):
    """Run an execution/beacon pod's jwt init container for one ordinal, its Secret volume holding
    the keys the volume lists (each key's value is its own name); return the JWT the client gets."""
    spec = sts["spec"]["template"]["spec"]
    init = next(c for c in spec["initContainers"] if c["name"] == "jwt")
    vol = {x["name"]: x for x in spec["volumes"]}["jwt-secret"]
    base = tmp_path / f"{sts['metadata']['name']}-{ordinal}"
    src, dst = base / "jwt-secret", base / "jwt"
    src.mkdir(parents=True)
    dst.mkdir()
    for item in vol["secret"]["items"]:
        (src / item["path"]).write_text(item["key"])
    text = script(init).replace("/jwt-secret/", f"{src}/").replace("/jwt/", f"{dst}/")
    env = {e["name"]: e["value"] for e in init["env"]}
    subprocess.run(["/bin/sh", "-ec", text], check=True, capture_output=True,
                   env={**os.environ, **env, "HOSTNAME": f"{sts['metadata']['name']}-{ordinal}"})
    assert [x.name for x in dst.iterdir()] == ["jwt.hex"]
    return (dst / "jwt.hex").read_text()


def test_each_pair_shares_one_jwt_and_talks_ordinal_to_ordinal(scenario, tmp_path):
    v = values(scenario)
    docs = render(scenario)
    existing = v["secrets"]["jwt"]["existingSecret"]
    all_keys = []
    for p in expected_participants(scenario):
        el, cl = one(docs, "StatefulSet", p["el"]), one(docs, "StatefulSet", p["cl"])
        specs = [s["spec"]["template"]["spec"] for s in (el, cl)]
        vols = [{x["name"]: x for x in s["volumes"]} for s in specs]
        assert vols[0]["jwt-secret"] == vols[1]["jwt-secret"], "the pair mounts different JWT Secrets"
        # the clients see only a memory volume with their own pair's JWT; the Secret volume (every
        # ordinal of the participant) is mounted only in the jwt init container
        for spec, vs, client in ((specs[0], vols[0], client_of(el)), (specs[1], vols[1], client_of(cl))):
            assert vs["jwt"]["emptyDir"]["medium"] == "Memory"
            for c in spec["containers"] + spec["initContainers"]:
                mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
                assert ("jwt-secret" in mounts) == (c["name"] == "jwt"), f"{c['name']} mounts the JWT Secret"
            assert {m["name"]: m for m in container(spec, client)["volumeMounts"]}["jwt"]["readOnly"] is True
        el_path = flag(script(container(specs[0], client_of(el))), "authrpc.jwtsecret")
        prysm = client_of(cl) == "prysm"
        if prysm:
            # no shell in Prysm's image: flags are its arguments, the pod-dependent ones are in the
            # flags file its bootnode init container writes
            cl_text = " ".join(container(specs[1], "prysm")["args"])
            boot = script(next(c for c in specs[1]["initContainers"] if c["name"] == "bootnode"))
            engine = re.search(r"execution-endpoint: (\S+)\"", boot).group(1)
            assert "--config-file=/bootnodes/cl.yaml" in cl_text.split()
        else:
            cl_text = script(container(specs[1], "lighthouse"))
            engine = flag(cl_text, "execution-endpoints")
        assert el_path == flag(cl_text, "jwt-secret" if prysm else "jwt-secrets") == "/jwt/jwt.hex"
        keys = [i["key"] for i in vols[0]["jwt-secret"]["secret"]["items"]]
        for ordinal in range(p["count"]):
            got = {run_copy_jwt(s, ordinal, tmp_path / comp) for s, comp in ((el, "el"), (cl, "cl"))}
            assert got == {existing and v["secrets"]["jwt"]["existingSecretKey"] or f"jwt-{p['index']}-{ordinal}"}, \
                "the pair of this ordinal does not get its own JWT"
        if existing:
            assert vols[0]["jwt-secret"]["secret"]["secretName"] == existing
            assert keys == [v["secrets"]["jwt"]["existingSecretKey"]]
            continue
        assert vols[0]["jwt-secret"]["secret"]["secretName"] == f"{FULL}-jwt"
        # only this participant's keys, one per ordinal
        assert keys == [f"jwt-{p['index']}-{o}" for o in range(p["count"])]
        all_keys += keys
        # the beacon node of ordinal N drives the execution node of ordinal N of its participant
        assert engine.startswith(f"http://{p['el']}-${{ORD}}.{p['el']}.{NAMESPACE}.svc.")
        assert engine.endswith(f":{v['execution']['ports']['engine']}")
        if p["validator_count"]:
            vc = one(docs, "StatefulSet", p["vc"])
            vspec = vc["spec"]["template"]["spec"]
            if client_of(vc) == "prysm":
                keys = script(next(c for c in vspec["initContainers"] if c["name"] == "keys"))
                beacon = re.search(r"beacon-rpc-provider: (\S+)\"", keys).group(1)
                assert beacon == (f"{p['cl']}-${{ord}}.{p['cl']}.{NAMESPACE}.svc.{v['clusterDomain']}:"
                                  f"{v['beacon']['ports']['grpc']}")
                assert "--config-file=/validator-keys/prysm-flags.yaml" in container(vspec, "prysm")["args"]
            else:
                beacon = flag(script(container(vspec, "lighthouse")), "beacon-nodes")
                assert beacon.startswith(f"http://{p['cl']}-${{ORD}}.{p['cl']}.{NAMESPACE}.svc.")
    if not existing:
        secret = one(docs, "Secret", f"{FULL}-jwt")
        assert sorted(secret["data"]) == sorted(all_keys)
        tokens = [base64.b64decode(x).decode() for x in secret["data"].values()]
        assert all(re.fullmatch(r"[0-9a-f]{64}", t) for t in tokens)
        assert len(set(tokens)) == len(tokens), "two pairs share a JWT"


# ------------------------------------------------------------------------------------------------
# Security, storage, disruption budgets


def test_pod_security(scenario):
    docs = render(scenario)
    for d, spec in pod_specs(docs):
        where = f"{d['kind']} {d['metadata']['name']}"
        sc = spec["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, where
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
        # only the genesis Jobs and the network watcher talk to the Kubernetes API
        talks = d["kind"] == "Job" or (d["kind"] == "Deployment" and component(d) == "network")
        assert spec["automountServiceAccountToken"] is talks, where
        if talks:
            sa = one(docs, "ServiceAccount", spec["serviceAccountName"])
            assert sa["automountServiceAccountToken"] is False, "only the pod asks for the token"
        for c in spec["containers"] + spec.get("initContainers", []):
            csc = c["securityContext"]
            assert csc["readOnlyRootFilesystem"] is True, f"{where}/{c['name']}"
            assert csc["allowPrivilegeEscalation"] is False, f"{where}/{c['name']}"
            assert csc["capabilities"]["drop"] == ["ALL"], f"{where}/{c['name']}"
            assert "add" not in csc["capabilities"], f"{where}/{c['name']}"
            assert c["resources"]["limits"]["memory"], f"{where}/{c['name']}"
    # keys and JWTs only in Secrets: no mnemonic in any ConfigMap, Secret or pod spec text
    mnemonic = values(scenario)["network_params"]["preregistered_validator_keys_mnemonic"]
    for d in docs:
        if d["kind"] != "Secret":
            assert mnemonic not in json.dumps(d), f"the mnemonic is in {d['kind']} {d['metadata']['name']}"


def test_storage(scenario):
    v = values(scenario)
    docs = render(scenario)
    size = {"execution": "executionSize", "beacon": "consensusSize", "validator": "keysSize"}
    for sts in node_sets(docs):
        claims = sts["spec"].get("volumeClaimTemplates", [])
        if not v["persistent"]:
            assert not claims and "persistentVolumeClaimRetentionPolicy" not in sts["spec"]
            continue
        (claim,) = claims
        spec = claim["spec"]
        assert spec["resources"]["requests"]["storage"] == v["storage"][size[component(sts)]]
        assert spec.get("storageClassName", "") == v["storage"]["storageClassName"]
        assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == v["storage"]["retentionPolicy"]


def test_design_defaults():
    v = values("default-values")
    assert (v["storage"]["executionSize"], v["storage"]["consensusSize"], v["storage"]["keysSize"],
            v["storage"]["storageClassName"]) == ("200Gi", "100Gi", "1Gi", "fast-ssd")
    assert v["execution"]["resources"] == {"requests": {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "256Mi"},
                                           "limits": {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "1Gi"}}


def test_disruption_budgets_and_anti_affinity(scenario):
    v = values(scenario)
    docs = render(scenario)
    pdbs = by_kind(docs, "PodDisruptionBudget")
    for sts in node_sets(docs):
        labels = sts["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in pdbs if selects(p["spec"]["selector"], labels)]
        if v["podDisruptionBudget"]["enabled"] and sts["spec"]["replicas"] > 1:
            assert len(mine) == 1, sts["metadata"]["name"]
        else:
            assert not mine
        aff = sts["spec"]["template"]["spec"].get("affinity", {})
        mode = v["scheduling"]["podAntiAffinity"]
        anti = aff.get("podAntiAffinity", {})
        if mode == "hard":
            term = anti["requiredDuringSchedulingIgnoredDuringExecution"][0]
        elif mode == "soft":
            term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
        else:
            assert not anti
            continue
        assert selects(term["labelSelector"], labels), "anti-affinity does not select its own copies"
        if v["scheduling"]["nodeAffinity"]:
            assert aff["nodeAffinity"] == v["scheduling"]["nodeAffinity"]


def test_helm_tests(scenario):
    v = values(scenario)
    docs = render(scenario)
    tests = [d for d in by_kind(docs, "Pod") if d["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    if not v["tests"]["enabled"]:
        assert not tests
        return
    assert sorted(t["metadata"]["name"] for t in tests) == [f"{FULL}-test-{n}" for n in ("blocks", "metrics", "rpc")]
    text = {t["metadata"]["name"].rsplit("-", 1)[1]: t["spec"]["containers"][0]["args"][0] for t in tests}
    for p in expected_participants(scenario):
        for o in range(p["count"]):
            assert f"{p['el']}-{o}.{p['el']}." in text["rpc"] and f"{p['el']}-{o}.{p['el']}." in text["metrics"]
            assert f"{p['cl']}-{o}.{p['cl']}." in text["metrics"]
    assert "eth_blockNumber" in text["blocks"]


# ------------------------------------------------------------------------------------------------
# Network policies: evaluate every (source, destination, port) and compare with the listed flows.


class Endpoint:
    def __init__(self, name, namespace=None, labels=None, ports=(), ip=None):
        self.name, self.namespace, self.labels, self.ports, self.ip = name, namespace, labels or {}, set(ports), ip

    def __repr__(self):
        return self.name


NS_LABELS = {ns: {"kubernetes.io/metadata.name": ns}
             for ns in (NAMESPACE, "monitoring", "kube-system", "dapps", "explorers", "other")}


def world(docs, v):
    """Pods of the release (StatefulSet replicas, Job pods, test pods) and the outside world."""
    eps = []
    for d, spec in pod_specs(docs):
        portset = {(p["containerPort"], p.get("protocol", "TCP")) for c in spec["containers"] for p in c.get("ports", [])}
        if d["kind"] == "StatefulSet":
            for o in range(d["spec"]["replicas"]):
                name = f"{d['metadata']['name']}-{o}"
                labels = dict(d["spec"]["template"]["metadata"]["labels"], **{"statefulset.kubernetes.io/pod-name": name})
                eps.append(Endpoint(name, NAMESPACE, labels, portset))
        elif d["kind"] == "Deployment":
            for r in range(d["spec"]["replicas"]):
                eps.append(Endpoint(f"{d['metadata']['name']}-{r}", NAMESPACE, d["spec"]["template"]["metadata"]["labels"], portset))
        elif d["kind"] == "Job":
            eps.append(Endpoint(d["metadata"]["name"], NAMESPACE, d["spec"]["template"]["metadata"]["labels"]))
        else:
            eps.append(Endpoint(d["metadata"]["name"], NAMESPACE, d["metadata"]["labels"]))
    eps += [
        Endpoint("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}, {(9090, "TCP")}),
        Endpoint("tempo", "monitoring", {"app.kubernetes.io/name": "tempo"}, {(v["tracing"]["port"], "TCP")}),
        Endpoint("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, {(53, "UDP"), (53, "TCP")}),
        Endpoint("dapp", "dapps", {"app": "dapp"}),
        Endpoint("explorer", "explorers", {"app": "explorer"}),
        Endpoint("other-ns-pod", "other", {"app": "x"}),
        Endpoint("same-ns-stranger", NAMESPACE, {"app": "stranger"}, {(8080, "TCP")}),
        Endpoint("lb-client", ip="10.20.5.5"),
        Endpoint("internet", ip="198.51.100.7"),
        Endpoint("apiserver", ip="172.20.0.1", ports={(443, "TCP"), (6443, "TCP")}),
    ]
    return eps


def peer_matches(peer, policy_ns, ep):
    if "ipBlock" in peer:
        if ep.ip is None:
            return False
        ip = ipaddress.ip_address(ep.ip)
        return ip in ipaddress.ip_network(peer["ipBlock"]["cidr"]) and not any(
            ip in ipaddress.ip_network(x) for x in peer["ipBlock"].get("except", []))
    if ep.namespace is None:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], NS_LABELS[ep.namespace]):
            return False
    elif ep.namespace != policy_ns:
        return False
    return selects(peer.get("podSelector", {}), ep.labels)


def port_matches(rule_ports, port, proto):
    if not rule_ports:
        return True
    return any(p.get("protocol", "TCP") == proto and (p.get("port") is None or p["port"] == port
               or (p.get("endPort") and p["port"] <= port <= p["endPort"])) for p in rule_ports)


def allowed(policies, src, dst, port, proto):
    def direction(ep, kind, peer_key, other):
        if ep.namespace != NAMESPACE:
            return True  # only the release's namespace has policies
        mine = [p for p in policies if kind in p["spec"].get("policyTypes", ["Ingress"])
                and selects(p["spec"]["podSelector"], ep.labels)]
        if not mine:
            return True
        for p in mine:
            for rule in p["spec"].get(kind.lower(), []) or []:
                peers = rule.get(peer_key)
                if (not peers or any(peer_matches(x, NAMESPACE, other) for x in peers)) and \
                        port_matches(rule.get("ports"), port, proto):
                    return True
        return False
    return direction(dst, "Ingress", "from", src) and direction(src, "Egress", "to", dst)


def expected_flows(docs, v, eps):
    """The flows the chart README lists, computed from the participants and the values."""
    np_ = v["networkPolicy"]
    el, cl, vcp = v["execution"]["ports"], v["beacon"]["ports"], v["validator"]["ports"]["metrics"]
    sidecar = v["ethwatch"]["port"]
    ours = [e for e in eps if e.labels.get("app.kubernetes.io/instance") == RELEASE and e.namespace == NAMESPACE]

    def comp(c):
        return [e for e in ours if e.labels.get("app.kubernetes.io/component") == c]

    EL, CL, VC, TEST, GEN = comp("execution"), comp("beacon"), comp("validator"), comp("test"), comp("genesis")
    NET = comp("network")
    assert len(NET) == (1 if v["ethwatch"]["network"]["enabled"] else 0)
    named = {e.name: e for e in eps}
    monitoring = [named["prometheus"], named["tempo"]]
    flows = set()

    def add(srcs, dsts, portlist):
        for s in srcs:
            for d in dsts:
                if s is d:
                    continue
                for port, proto in portlist:
                    if (port, proto) in d.ports:
                        flows.add((s.name, d.name, port, proto))

    add(ours, [named["kube-dns"]], [(53, "UDP"), (53, "TCP")])
    add(EL, EL, [(el["p2p"], "TCP"), (el["p2p"], "UDP"), (el["discv5"], "UDP"), (el["rpc"], "TCP")])
    add(CL, CL, [(cl["p2p"], "TCP"), (cl["p2p"], "UDP"), (cl["quic"], "UDP"), (cl["http"], "TCP")])
    for p in expected_participants_from_docs(docs):
        for o in range(p["count"]):
            add([named[f"{p['cl']}-{o}"]], [named[f"{p['el']}-{o}"]], [(el["engine"], "TCP")])
            if f"{p['vc']}-{o}" in named:
                # the Beacon API, and Prysm's gRPC where the beacon node listens on it (Prysm)
                add([named[f"{p['vc']}-{o}"]], [named[f"{p['cl']}-{o}"]], [(cl["http"], "TCP"), (cl["grpc"], "TCP")])
    add(TEST, EL, [(el["rpc"], "TCP"), (sidecar, "TCP")])
    add(TEST, CL, [(cl["http"], "TCP"), (sidecar, "TCP")])
    rpc_sources = [e for e in eps if e.namespace and any(peer_matches(x, NAMESPACE, e) for x in np_["rpcAllowedFrom"])]
    if v["services"]["rpcLoadBalancer"]["enabled"]:
        rpc_sources += [e for e in eps if e.ip and any(
            ipaddress.ip_address(e.ip) in ipaddress.ip_network(c)
            for c in v["services"]["rpcLoadBalancer"]["loadBalancerSourceRanges"])]
    add(rpc_sources, EL, [(el["rpc"], "TCP"), (el["ws"], "TCP")])
    beacon_sources = [e for e in eps if e.namespace and any(peer_matches(x, NAMESPACE, e) for x in np_["beaconApiAllowedFrom"])]
    add(beacon_sources, CL, [(cl["http"], "TCP")])
    add(monitoring, EL, [(el["metrics"], "TCP"), (sidecar, "TCP")])
    add(monitoring, CL, [(cl["metrics"], "TCP"), (sidecar, "TCP")])
    add(monitoring, VC, [(vcp, "TCP")])
    # the network watcher: the nodes' JSON-RPC and Beacon API, the API server; scraped like the sidecars
    add(NET, EL, [(el["rpc"], "TCP")])
    add(NET, CL, [(cl["http"], "TCP")])
    add(monitoring, NET, [(sidecar, "TCP")])
    if v["tracing"]["enabled"]:
        add(EL + CL + NET, monitoring, [(v["tracing"]["port"], "TCP")])
    add(GEN + NET, [e for e in eps if e is not None], [(p, "TCP") for p in np_["apiServer"]["ports"]])
    return flows


def expected_participants_from_docs(docs):
    out = []
    for sts in node_sets(docs, "execution"):
        idx = sts["metadata"]["labels"]["eth-enclave/participant"]
        cl = next(s for s in node_sets(docs, "beacon") if s["metadata"]["labels"]["eth-enclave/participant"] == idx)
        vc = sts["metadata"]["name"].replace("-el-", "-vc-", 1)
        out.append(dict(count=sts["spec"]["replicas"], el=sts["metadata"]["name"], cl=cl["metadata"]["name"], vc=vc))
    return out


def test_network_policies_allow_exactly_the_listed_flows(scenario):
    v = values(scenario)
    docs = render(scenario)
    policies = by_kind(docs, "NetworkPolicy")
    if not v["networkPolicy"]["enabled"]:
        assert not policies
        return
    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert len(deny) == (1 if v["networkPolicy"]["defaultDeny"] else 0)
    if deny:
        assert sorted(deny[0]["spec"]["policyTypes"]) == ["Egress", "Ingress"]
        assert not deny[0]["spec"].get("ingress") and not deny[0]["spec"].get("egress")
    eps = world(docs, v)
    ours = {e.name for e in eps if e.labels.get("app.kubernetes.io/instance") == RELEASE}
    got = set()
    for src in eps:
        for dst in eps:
            if src is dst or not (src.name in ours or dst.name in ours):
                continue
            for port, proto in dst.ports:
                if allowed(policies, src, dst, port, proto):
                    got.add((src.name, dst.name, port, proto))
    want = expected_flows(docs, v, eps)
    extra, missing = sorted(got - want), sorted(want - got)
    assert not extra and not missing, f"allowed but not listed: {extra[:20]}\nlisted but blocked: {missing[:20]}"
    # and the flows that matter are really there (the comparison above is not vacuous)
    assert any(f[3] == "UDP" and f[2] == 53 for f in got)
    assert any(f[2] == v["execution"]["ports"]["engine"] for f in got)
    if v["networkPolicy"]["defaultDeny"]:
        assert not any(f[0] == "same-ns-stranger" for f in got)
    if v["ethwatch"]["network"]["enabled"]:
        watcher = f"{FULL}-network-0"
        assert (watcher, "apiserver", 6443, "TCP") in got
        assert (watcher, f"{expected_participants(scenario)[0]['el']}-0", v["execution"]["ports"]["rpc"], "TCP") in got
        assert ("prometheus", watcher, v["ethwatch"]["port"], "TCP") in got
        # not the websocket, the engine API or the clients' metrics
        assert not any(f[0] == watcher and f[2] in (v["execution"]["ports"]["ws"], v["execution"]["ports"]["engine"],
                                                    v["execution"]["ports"]["metrics"]) for f in got)
