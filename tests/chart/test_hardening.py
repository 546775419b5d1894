"""The chart parts of issue 15's hardening, on the rendered objects of every scenario:

- every container declares ephemeral-storage and every emptyDir a size limit (values `emptyDir.*`,
  added to the writing container's ephemeral-storage, so a pod's total covers its volumes);
- the validator client's readiness (keys enabled and a beacon node available, from its own metrics,
  run for real against a local metrics server) differs from its liveness (the process runs);
- `monitoring.webConfig`: TLS and basic auth on every ethwatch listener, the ServiceMonitors'
  scheme, tlsConfig and basicAuth to match, the kubelet probes over HTTPS and without credentials
  (the exporter answers /healthz and /readyz without them: exporters/core/src/server.rs);
- the validator-keys Job's store step (files/scripts/store-keys.sh) against a local stand-in of
  the Kubernetes API: it creates the missing key Secrets, keeps those already there, replaces one
  with another range. test_objects.py covers the key plan, the derivation and the JWT copies."""

import json
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from conftest import CHART, NAMESPACE, RELEASE, by_kind, expected_participants, helm, one, pod_specs, render, values

FULL = f"{RELEASE}-eth-enclave"
SCRIPTS = CHART / "files" / "scripts"
UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
         "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(q):
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    assert m and m.group(2) in UNITS, f"not a storage quantity: {q}"
    return float(m.group(1)) * UNITS[m.group(2)]


def containers(spec):
    return spec["containers"] + spec.get("initContainers", [])


# ------------------------------------------------------------------------------------------------
# Ephemeral storage and emptyDir size limits


def test_every_container_has_ephemeral_storage_and_every_emptydir_a_size_limit(scenario):
    docs = render(scenario)
    for d, spec in pod_specs(docs):
        where = f"{d['kind']} {d['metadata']['name']}"
        for c in containers(spec):
            res = c["resources"]
            for kind in ("requests", "limits"):
                assert "ephemeral-storage" in res.get(kind, {}), f"{where}/{c['name']}: no {kind}.ephemeral-storage"
            assert quantity(res["requests"]["ephemeral-storage"]) <= quantity(res["limits"]["ephemeral-storage"])
        disk = 0
        for v in spec.get("volumes", []):
            if "emptyDir" in v:
                assert "sizeLimit" in (v["emptyDir"] or {}), f"{where}: emptyDir {v['name']} has no sizeLimit"
                if v["emptyDir"].get("medium") != "Memory":
                    disk += quantity(v["emptyDir"]["sizeLimit"])
        # the kubelet evicts a pod whose containers and emptyDirs together pass the sum of its
        # containers' limits: that sum covers every volume at its own limit
        # (while an init container runs, its own limit counts if larger: the pod's limit is the
        # larger of the containers' sum and the largest init container's)
        limit = lambda c: quantity(c["resources"]["limits"]["ephemeral-storage"])  # noqa: E731
        total = max([sum(limit(c) for c in spec["containers"])] + [limit(c) for c in spec.get("initContainers", [])])
        assert total >= disk, f"{where}: emptyDirs up to {disk} bytes, containers' limits {total}"


def test_emptydir_sizes_and_ephemeral_storage_follow_the_values():
    sets = ("--set", "emptyDir.tmp=3Gi", "--set", "emptyDir.executionData=7Gi",
            "--set", "utilityResources.limits.ephemeral-storage=100Mi")
    p = expected_participants("persistence-off-values")[0]
    sts = one(render("persistence-off-values", sets), "StatefulSet", p["el"])
    spec = sts["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["tmp"]["emptyDir"]["sizeLimit"] == "3Gi" and vols["data"]["emptyDir"]["sizeLimit"] == "7Gi"
    reth = next(c for c in spec["containers"] if c["name"] == "reth")
    # its own 1Gi and 256Mi, plus /tmp (limit only) and the data volume (limit and request)
    assert reth["resources"]["limits"]["ephemeral-storage"] == f"{1024 + 3072 + 7168}Mi"
    assert reth["resources"]["requests"]["ephemeral-storage"] == f"{256 + 7168}Mi"
    boot = next(c for c in spec["initContainers"] if c["name"] == "bootnode")
    assert boot["resources"]["limits"]["ephemeral-storage"] == "101Mi"  # + its 1Mi volume
    # on PVCs the data is not ephemeral
    sts = one(render("multi-participant-values", sets), "StatefulSet", expected_participants("multi-participant-values")[0]["el"])
    reth = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "reth")
    assert reth["resources"]["requests"]["ephemeral-storage"] == "256Mi"
    assert reth["resources"]["limits"]["ephemeral-storage"] == f"{1024 + 3072}Mi"


def test_a_quantity_the_chart_cannot_add_is_refused():
    proc = helm("template", "t", str(CHART), "--set", "emptyDir.tmp=1Gb", check=False)
    assert proc.returncode != 0 and "/emptyDir/tmp" in proc.stderr


# ------------------------------------------------------------------------------------------------
# Validator client probes


def vc_container(docs, p):
    spec = one(docs, "StatefulSet", p["vc"])["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] in ("lighthouse", "prysm"))


def test_validator_readiness_differs_from_liveness(scenario):
    docs = render(scenario)
    v = values(scenario)
    for p in expected_participants(scenario):
        if not p["validator_count"]:
            continue
        c = vc_container(docs, p)
        assert c["livenessProbe"]["tcpSocket"]["port"] == "metrics"
        ready = c["readinessProbe"]
        assert ready != c["livenessProbe"] and "tcpSocket" not in ready
        if c["name"] == "prysm":
            # Prysm's image has no shell: its own /healthz (its services, the beacon node
            # connection among them, healthy) on the metrics port
            assert ready["httpGet"] == {"path": "/healthz", "port": "metrics"}
            assert f"--monitoring-port={v['validator']['ports']['metrics']}" in c["args"]
            continue
        assert ready["exec"]["command"][:2] == ["/bin/bash", "-c"]
        assert ready["exec"]["command"][2].strip() == (SCRIPTS / "vc-ready.sh").read_text().strip()
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["VC_METRICS_PORT"] == str(v["validator"]["ports"]["metrics"])
        assert f"--metrics-port={v['validator']['ports']['metrics']}" in c["args"][0]


class Metrics(BaseHTTPRequestHandler):
    body = ""

    def log_message(self, *a):
        pass

    def do_GET(self):
        assert self.path == "/metrics"
        data = Metrics.body.encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def metrics_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


VC_METRICS = """# HELP vc_validators_enabled_count Number of enabled validators
# TYPE vc_validators_enabled_count gauge
vc_validators_enabled_count {keys}
vc_validators_total_count 64
# TYPE vc_beacon_nodes_available_count gauge
vc_beacon_nodes_available_count {nodes}
vc_beacon_nodes_total_count 1
"""


def test_validator_readiness_probe_reads_the_clients_metrics(metrics_server):
    c = vc_container(render("default-values"), expected_participants("default-values")[0])
    cmd = c["readinessProbe"]["exec"]["command"]

    def probe(port):
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20,
                              env={**os.environ, "VC_METRICS_PORT": str(port)})

    Metrics.body = VC_METRICS.format(keys=64, nodes=1)
    proc = probe(metrics_server)
    assert proc.returncode == 0 and "ready: 64 keys enabled, 1 beacon node(s) available" in proc.stdout
    Metrics.body = VC_METRICS.format(keys=0, nodes=1)  # keystores not loaded (yet)
    proc = probe(metrics_server)
    assert proc.returncode == 1 and "no validator key enabled" in proc.stdout
    Metrics.body = VC_METRICS.format(keys=64, nodes=0)  # its beacon node is unreachable
    proc = probe(metrics_server)
    assert proc.returncode == 1 and "no beacon node available" in proc.stdout
    Metrics.body = "# the client has not registered its metrics\n"
    assert probe(metrics_server).returncode == 1
    free = metrics_server
    proc = probe(1)  # nothing listens: not ready (the liveness probe decides about restarts)
    assert proc.returncode != 0 and free


# ------------------------------------------------------------------------------------------------
# TLS and basic auth on the ethwatch listeners


def ethwatch_containers(docs):
    for d, spec in pod_specs(docs):
        for c in spec["containers"]:
            if c["name"] == "ethwatch":
                yield d, spec, c


def test_web_config_is_off_by_default():
    docs = render("default-values")
    found = list(ethwatch_containers(docs))
    assert found
    for _, spec, c in found:
        assert not any(a.startswith("--web.config.file") for a in c["args"])
        for probe in (c["readinessProbe"], c["livenessProbe"]):
            assert probe["httpGet"].get("scheme", "HTTP") == "HTTP"
    for sm in by_kind(docs, "ServiceMonitor"):
        for ep in sm["spec"]["endpoints"]:
            assert "scheme" not in ep and "basicAuth" not in ep and "tlsConfig" not in ep
    assert not [d for d in by_kind(docs, "Secret") if d["metadata"]["name"] == f"{FULL}-web-config"]


def test_web_config_turns_on_tls_and_basic_auth_everywhere_it_is_scraped():
    scenario = "web-config-values"
    v = values(scenario)["monitoring"]["webConfig"]
    docs = render(scenario)
    secret = one(docs, "Secret", f"{FULL}-web-config")
    web = yaml.safe_load(secret["stringData"]["web-config.yml"])
    assert web == {
        "tls_server_config": {"cert_file": "/etc/ethwatch/tls/tls.crt", "key_file": "/etc/ethwatch/tls/tls.key",
                              "min_version": "TLS13"},
        "basic_auth_users": v["basicAuth"]["users"],
    }
    found = list(ethwatch_containers(docs))
    # both sidecars of every node and the network watcher
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d, _, _ in found} == {"execution", "beacon", "network"}
    for d, spec, c in found:
        where = d["metadata"]["name"]
        assert "--web.config.file=/etc/ethwatch/web/web-config.yml" in c["args"], where
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        vols = {x["name"]: x for x in spec["volumes"]}
        assert vols[mounts["/etc/ethwatch/web"]]["secret"]["secretName"] == f"{FULL}-web-config"
        tls = vols[mounts["/etc/ethwatch/tls"]]["secret"]
        assert tls["secretName"] == v["tls"]["secretName"]
        assert sorted(i["path"] for i in tls["items"]) == ["tls.crt", "tls.key"]
        # kubelet probes: HTTPS (not verified), no credentials needed for /healthz and /readyz
        for probe in (c["readinessProbe"], c["livenessProbe"]):
            assert probe["httpGet"]["scheme"] == "HTTPS", where
            assert probe["httpGet"]["path"] in ("/healthz", "/readyz") and "httpHeaders" not in probe["httpGet"]
    # every endpoint of an ethwatch port scrapes over https with the CA and the credentials
    scrape = v["basicAuth"]["scrapeSecret"]
    ethwatch_eps = 0
    for sm in by_kind(docs, "ServiceMonitor"):
        for ep in sm["spec"]["endpoints"]:
            if ep["port"] != "ethwatch":
                assert "scheme" not in ep and "basicAuth" not in ep  # the clients' own ports
                continue
            ethwatch_eps += 1
            assert ep["scheme"] == "https"
            assert ep["tlsConfig"] == {"ca": {"secret": {"name": v["tls"]["secretName"], "key": "ca.crt"}},
                                       "serverName": v["tls"]["serverName"]}
            assert ep["basicAuth"] == {"username": {"name": scrape["name"], "key": "username"},
                                       "password": {"name": scrape["name"], "key": "password"}}
    assert ethwatch_eps == 2
    # the helm test scrapes the sidecars the same way
    pod = one(docs, "Pod", f"{FULL}-test-metrics")
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["SCHEME"]["value"] == "https"
    assert env["SCRAPE_USER"]["valueFrom"]["secretKeyRef"] == {"name": scrape["name"], "key": "username"}


def test_web_config_with_basic_auth_only_keeps_http():
    sets = ("--set", "monitoring.webConfig.tls.secretName=")
    docs = render("web-config-values", sets)
    web = yaml.safe_load(one(docs, "Secret", f"{FULL}-web-config")["stringData"]["web-config.yml"])
    assert "tls_server_config" not in web and web["basic_auth_users"]
    for _, _, c in ethwatch_containers(docs):
        assert c["readinessProbe"]["httpGet"].get("scheme", "HTTP") == "HTTP"
        assert "/etc/ethwatch/tls" not in {m["mountPath"] for m in c["volumeMounts"]}
    for sm in by_kind(docs, "ServiceMonitor"):
        for ep in sm["spec"]["endpoints"]:
            if ep["port"] == "ethwatch":
                assert "scheme" not in ep and "tlsConfig" not in ep and "basicAuth" in ep


@pytest.mark.parametrize("args,message", [
    (("--set", "monitoring.webConfig.basicAuth.scrapeSecret.name="), "needs monitoring.webConfig.basicAuth.scrapeSecret.name"),
    (("--set", "monitoring.webConfig.tls.secretName=", "--set-json", "monitoring.webConfig.basicAuth.users={}"),
     "needs tls.secretName, basicAuth.users or both"),
    (("--set", "monitoring.webConfig.basicAuth.users.prometheus=plaintext"), "/monitoring/webConfig/basicAuth/users/prometheus"),
])
def test_web_config_mistakes_are_refused(args, message):
    proc = helm("template", "t", str(CHART), "-f", str(CHART / "ci" / "web-config-values.yaml"), *args, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------------------------
# The validator-keys Job's store step against a stand-in Kubernetes API


class Api(BaseHTTPRequestHandler):
    secrets = {}
    patches = []
    uid = "0d1f4c52-6a0e-4c1b-9d7e-3f2a1b0c9e8d"

    def log_message(self, *a):
        pass

    def answer(self, code, obj):
        data = json.dumps(obj, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        assert self.headers["authorization"] == "Bearer test-token"
        path = urlparse(self.path).path
        if path == f"/api/v1/namespaces/{NAMESPACE}/configmaps/{FULL}-genesis":
            return self.answer(200, {"kind": "ConfigMap", "metadata": {"name": f"{FULL}-genesis", "uid": Api.uid}})
        name = path.rsplit("/", 1)[1]
        if name in Api.secrets:
            return self.answer(200, {"kind": "Secret", "metadata": {
                "name": name, "uid": "other", "annotations": {"eth-enclave/key-range": Api.secrets[name]}}})
        self.answer(404, {"kind": "Status", "code": 404})

    def do_PATCH(self):
        url = urlparse(self.path)
        body = self.rfile.read(int(self.headers["content-length"])).decode()
        Api.patches.append((url.path.rsplit("/", 1)[1], parse_qs(url.query), self.headers["content-type"], body))
        self.answer(201, {"kind": "Secret"})


def test_store_step_creates_missing_key_secrets_once(tmp_path):
    from test_objects import derive, key_plan
    docs = render("multi-participant-values")
    plan = key_plan(docs)
    secrets = derive(docs, tmp_path / "job")
    out = tmp_path / "job" / "out"
    names = sorted(plan)
    kept, moved = names[0], names[1]
    Api.secrets = {kept: "%d-%d" % plan[kept], moved: "0-1"}
    Api.patches = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("test-token")
    (sa / "ca.crt").write_text("")
    job = one(docs, "Job", f"{FULL}-validator-keys")
    store = job["spec"]["template"]["spec"]["containers"][0]
    assert store["name"] == "store" and store["command"] == ["/bin/sh", "-e", "/inputs/store-keys.sh"]
    text = one(docs, "ConfigMap", f"{FULL}-validator-keys-inputs")["data"]["store-keys.sh"]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    text = text.replace("/tmp/", f"{scratch}/").replace("/out/", f"{out}/")
    env = {e["name"]: e["value"] for e in store["env"]}
    try:
        proc = subprocess.run(["/bin/sh", "-ec", text], capture_output=True, text=True, timeout=60,
                              env={**os.environ, **env, "SA_DIR": str(sa), "KUBE_API": f"http://127.0.0.1:{server.server_address[1]}"})
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{kept}: keys {'%d-%d' % plan[kept]} already stored, kept" in proc.stdout
    stored = {p[0]: p for p in Api.patches}
    assert sorted(stored) == sorted(n for n in names if n != kept), "a kept Secret was written again"
    for name, (_, query, ctype, body) in stored.items():
        assert ctype == "application/apply-patch+yaml"
        assert query == {"fieldManager": ["eth-enclave-keys"], "force": ["true"]}
        doc = yaml.safe_load(body)
        assert doc["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "ConfigMap",
                                                       "name": f"{FULL}-genesis", "uid": Api.uid}]
        want = dict(secrets[name])
        want["metadata"] = dict(want["metadata"], ownerReferences=doc["metadata"]["ownerReferences"])
        assert doc == want, f"{name}: the stored Secret is not the derived one"
    assert f"validator key Secrets: {len(names) - 1} stored, 1 kept" in proc.stdout
