"""The chart against a real Kubernetes API server: etcd (Debian's etcd-server) plus kube-apiserver
built from the Go module proxy by scripts/tools.sh, both on loopback ports, with the Prometheus
Operator CRDs (generated from the operator's Go API module) applied. The server validates every
object (schemas, immutable fields, CRD schemas with unknown-field pruning reported as warnings
turned into failures by --validate=strict on the dry runs).

There is no controller-manager, scheduler or kubelet: objects are stored, not run. So `helm
install` runs with --no-hooks (the genesis Job could never finish), and the hooks and helm test
pods are created with a server-side dry run instead. The network watcher runs for real against
this server, with its ServiceAccount's token, over node pods this test creates and marks running.
"""

import base64
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from binary import Ethwatch, rendered_env
from conftest import CHART, RELEASE, SCENARIOS, SCENARIO_IDS, helm, is_hook, render, tool
from e2e.stack import free_port

CRDS = ("servicemonitors", "podmonitors", "prometheusrules")


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.procs = []
        self.kubeconfig = root / "kubeconfig"
        self.env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))

    def start(self):
        client, peer, secure = free_port(), free_port(), free_port()
        etcd_log = open(self.root / "etcd.log", "w")
        self.procs.append(subprocess.Popen([
            tool("ETHWATCH_ETCD"), "--name", "test", "--data-dir", str(self.root / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"test=http://127.0.0.1:{peer}",
        ], stdout=etcd_log, stderr=subprocess.STDOUT))
        subprocess.run(["openssl", "genrsa", "-out", str(self.root / "sa.key"), "2048"],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", str(self.root / "sa.key"), "-pubout",
                        "-out", str(self.root / "sa.pub")], check=True, capture_output=True)
        (self.root / "tokens.csv").write_text("test-token,admin,admin,system:masters\n")
        api_log = open(self.root / "apiserver.log", "w")
        self.procs.append(subprocess.Popen([
            tool("ETHWATCH_KUBE_APISERVER"),
            f"--etcd-servers=http://127.0.0.1:{client}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={secure}",
            f"--cert-dir={self.root / 'certs'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={self.root / 'sa.pub'}",
            f"--service-account-signing-key-file={self.root / 'sa.key'}",
            f"--token-auth-file={self.root / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            # No controller-manager creates the default ServiceAccounts the admission plugin wants.
            "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none",
            "--service-cluster-ip-range=10.96.0.0/16",
        ], stdout=api_log, stderr=subprocess.STDOUT))
        self.url = f"https://127.0.0.1:{secure}"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": f"https://127.0.0.1:{secure}",
                                                       "insecure-skip-tls-verify": True}}],
            "users": [{"name": "admin", "user": {"token": "test-token"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        }))
        deadline = time.time() + 90
        while time.time() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise AssertionError(f"{p.args[0]} exited {p.returncode}:\n" + self.logs())
            if self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0:
                return
            time.sleep(1)
        raise AssertionError("kube-apiserver was not ready within 90 s:\n" + self.logs())

    def logs(self):
        return "".join(f"--- {f.name}\n" + f.read_text()[-3000:] for f in sorted(self.root.glob("*.log")))

    def stop(self):
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def kubectl(self, *args, check=True, input=None):
        proc = subprocess.run([tool("ETHWATCH_KUBECTL"), *args], capture_output=True, text=True,
                              env=self.env, input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
        return proc

    def helm(self, *args, check=True):
        return helm(*args, check=check, env=self.env)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("apiserver"))
    try:
        c.start()
        crds = Path(tool("ETHWATCH_PROMETHEUS_OPERATOR_CRDS"))
        files = [str(crds / f"monitoring.coreos.com_{name}.yaml") for name in CRDS]
        c.kubectl("apply", "--server-side", *sum((["-f", f] for f in files), []))
        c.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                  *[f"crd/{name}.monitoring.coreos.com" for name in CRDS])
        yield c
    finally:
        c.stop()


def test_server_is_the_version_the_chart_is_rendered_for(cluster):
    out = cluster.kubectl("version", "-o", "yaml").stdout
    assert yaml.safe_load(out)["serverVersion"]["gitVersion"] == "v1.34.4"


@pytest.mark.parametrize("path", SCENARIOS, ids=SCENARIO_IDS)
def test_install_every_scenario(cluster, path):
    ns = "s-" + path.stem.replace("-values", "")
    cluster.kubectl("create", "namespace", ns)
    proc = cluster.helm("install", RELEASE, str(CHART), "-n", ns, "-f", str(path), "--no-hooks")
    assert "STATUS: deployed" in proc.stdout
    # every object the chart renders (hooks aside) is stored in the server
    stored = set()
    for kind in ("statefulsets", "deployments", "services", "serviceaccounts", "roles", "rolebindings",
                 "secrets", "configmaps", "networkpolicies", "poddisruptionbudgets", "servicemonitors",
                 "prometheusrules"):
        out = cluster.kubectl("get", kind, "-n", ns, "-o", "yaml").stdout
        stored |= {(i["kind"], i["metadata"]["name"]) for i in yaml.safe_load(out)["items"]}
    rendered = {(d["kind"], d["metadata"]["name"]) for d in render(path.stem) if not is_hook(d)}
    assert rendered <= stored, f"not stored: {sorted(rendered - stored)}"
    # the hooks (genesis Job and its RBAC, cleanup Job, helm test pods), validated by the server
    hooks = cluster.helm("get", "hooks", RELEASE, "-n", ns).stdout
    assert "kind: Job" in hooks
    dry = cluster.kubectl("create", "--dry-run=server", "--validate=strict", "-n", ns, "-f", "-", input=hooks)
    assert "(server dry run)" in dry.stdout
    # a re-apply of the same release changes nothing and is accepted (immutable fields untouched)
    cluster.helm("upgrade", RELEASE, str(CHART), "-n", ns, "-f", str(path), "--no-hooks")
    cluster.helm("uninstall", RELEASE, "-n", ns, "--no-hooks")
    left = cluster.kubectl("get", "statefulsets,deployments,services,networkpolicies,roles,rolebindings",
                           "-n", ns, "-o", "name").stdout
    assert not left.strip(), left


def jwts(cluster, ns):
    out = cluster.kubectl("get", "secret", f"{RELEASE}-eth-enclave-jwt", "-n", ns, "-o", "yaml").stdout
    return {k: base64.b64decode(v).decode() for k, v in yaml.safe_load(out)["data"].items()}


def node_keys(cluster, ns):
    out = cluster.kubectl("get", "secret", f"{RELEASE}-eth-enclave-node-keys", "-n", ns, "-o", "yaml").stdout
    return {k: base64.b64decode(v) for k, v in yaml.safe_load(out)["data"].items()}


def test_upgrade_keeps_each_pairs_jwt_and_scales(cluster, tmp_path):
    """The JWTs and the node keys are generated once: an upgrade that adds a copy keeps the existing
    pairs' tokens and the existing nodes' identities (lookup against the live Secrets) and gives the
    new pair and node their own."""
    ns = "upgrade"
    cluster.kubectl("create", "namespace", ns)
    scenario = CHART / "ci" / "network-params-values.yaml"
    cluster.helm("install", RELEASE, str(CHART), "-n", ns, "-f", str(scenario), "--no-hooks")
    before = jwts(cluster, ns)
    assert sorted(before) == ["jwt-1-0", "jwt-1-1"]
    ids = node_keys(cluster, ns)
    assert sorted(ids) == ["cl-1-0", "cl-1-1", "el-1-0", "el-1-1"]

    values = yaml.safe_load(scenario.read_text())
    values["participants"][0]["count"] = 3
    bigger = tmp_path / "bigger.yaml"
    bigger.write_text(yaml.safe_dump(values))
    cluster.helm("upgrade", RELEASE, str(CHART), "-n", ns, "-f", str(bigger), "--no-hooks")
    after = jwts(cluster, ns)
    assert {k: after[k] for k in before} == before, "an upgrade changed an existing pair's JWT"
    assert sorted(after) == ["jwt-1-0", "jwt-1-1", "jwt-1-2"] and after["jwt-1-2"] not in before.values()
    ids_after = node_keys(cluster, ns)
    assert {k: ids_after[k] for k in ids} == ids, "an upgrade changed an existing node's identity"
    assert sorted(ids_after) == ["cl-1-0", "cl-1-1", "cl-1-2", "el-1-0", "el-1-1", "el-1-2"]
    assert ids_after["el-1-2"] not in ids.values() and ids_after["cl-1-2"] not in ids.values()
    for sts in ("el-1-reth-lighthouse", "cl-1-lighthouse-reth", "vc-1-reth-lighthouse"):
        out = cluster.kubectl("get", "statefulset", f"{RELEASE}-eth-enclave-{sts}", "-n", ns,
                              "-o", "jsonpath={.spec.replicas}").stdout
        assert out == "3", sts
    # the new ordinal's engine-API policy exists
    cluster.kubectl("get", "networkpolicy", f"{RELEASE}-eth-enclave-el-1-reth-lighthouse-2-engine", "-n", ns)
    # the genesis hook is pre-install only: an upgrade never regenerates the chain
    hooks = yaml.safe_load_all(cluster.helm("get", "hooks", RELEASE, "-n", ns).stdout)
    job = next(d for d in hooks if d and d["kind"] == "Job" and d["metadata"]["name"].endswith("-genesis"))
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install"
    cluster.helm("uninstall", RELEASE, "-n", ns, "--no-hooks")


def test_server_rejects_what_the_chart_must_never_render(cluster):
    """The server really validates: a PrometheusRule with a wrong type is refused by the CRD schema,
    so the installs above are meaningful."""
    bad = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up", "for": 5}]}]},
    }
    proc = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(bad), check=False)
    assert proc.returncode != 0 and "for" in proc.stderr, proc.stderr


def test_genesis_job_rbac_stores_the_genesis_and_cleanup_deletes_it(cluster, tmp_path):
    """The genesis Job's ServiceAccount, with only the Role the chart gives it, can apply the
    ConfigMap its script builds (run here with the generator stubbed, test_genesis.py), exactly as
    its kubectl container does; it cannot delete it; the post-delete cleanup Job's account can."""
    from test_genesis import run_generate

    ns = "devnet"  # the namespace the scenario is rendered for
    cluster.kubectl("create", "namespace", ns)
    scenario = CHART / "ci" / "network-params-values.yaml"
    cluster.helm("install", RELEASE, str(CHART), "-n", ns, "-f", str(scenario), "--no-hooks")
    hooks = [d for d in yaml.safe_load_all(cluster.helm("get", "hooks", RELEASE, "-n", ns).stdout) if d]
    rbac = [d for d in hooks if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    assert len(rbac) == 9  # genesis, validator keys, uninstall cleanup
    cluster.kubectl("create", "-n", ns, "-f", "-", input=yaml.safe_dump_all(rbac))

    _, _, _, manifest = run_generate("network-params-values", tmp_path)
    job = next(d for d in hooks if d["kind"] == "Job" and d["metadata"]["name"] == f"{RELEASE}-eth-enclave-genesis")
    store = next(c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "store")
    args = [a.replace("/out/genesis-configmap.yaml", str(manifest)) for a in store["args"]]
    genesis_sa = f"--as=system:serviceaccount:{ns}:{job['spec']['template']['spec']['serviceAccountName']}"
    cleanup_sa = f"--as=system:serviceaccount:{ns}:{RELEASE}-eth-enclave-genesis-cleanup"
    for _ in range(2):  # a retried Job applies again
        cluster.kubectl(*args, genesis_sa)
    stored = yaml.safe_load(cluster.kubectl("get", "configmap", f"{RELEASE}-eth-enclave-genesis", "-n", ns, "-o", "yaml").stdout)
    assert set(stored["binaryData"]) >= {"genesis.json", "config.yaml", "genesis.ssz.gz"}
    denied = cluster.kubectl("delete", "configmap", f"{RELEASE}-eth-enclave-genesis", "-n", ns, genesis_sa, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr
    cleanup = next(d for d in hooks if d["kind"] == "Job" and d["metadata"]["name"].endswith("-cleanup"))
    cargs = cleanup["spec"]["template"]["spec"]["containers"][0]["args"]
    cluster.kubectl(*cargs, cleanup_sa)
    gone = cluster.kubectl("get", "configmap", f"{RELEASE}-eth-enclave-genesis", "-n", ns, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    cluster.helm("uninstall", RELEASE, "-n", ns, "--no-hooks")


def test_validator_keys_job_stores_each_pods_secret_once_with_its_own_token(cluster, tmp_path):
    """The validator-keys Job's store step (files/scripts/store-keys.sh, curl in the tools image)
    with a token of the ServiceAccount the chart gives that Job, against the real API server: it
    creates every validator pod's key Secret, owned by the genesis ConfigMap; a second run (the next
    upgrade) keeps them untouched; one holding another range is replaced. The account can read no
    other Secret and list none."""
    from test_objects import derive

    ns = "devnet"  # the namespace the scenario is rendered for
    cluster.kubectl("create", "namespace", ns, check=False)
    scenario = CHART / "ci" / "multi-participant-values.yaml"
    cluster.helm("install", RELEASE, str(CHART), "-n", ns, "-f", str(scenario), "--no-hooks")
    full = f"{RELEASE}-eth-enclave"
    try:
        hooks = [d for d in yaml.safe_load_all(cluster.helm("get", "hooks", RELEASE, "-n", ns).stdout) if d]
        mine = [d for d in hooks if d["metadata"]["name"] == f"{full}-validator-keys"
                and d["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
        assert len(mine) == 3
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(mine))
        # the genesis Job's ConfigMap (its own test stores the real one)
        cluster.kubectl("create", "configmap", f"{full}-genesis", "-n", ns, "--from-literal=genesis_time.txt=1")
        uid = cluster.kubectl("get", "configmap", f"{full}-genesis", "-n", ns, "-o", "jsonpath={.metadata.uid}").stdout
        docs = render("multi-participant-values")
        secrets = derive(docs, tmp_path / "job")
        sa = tmp_path / "sa"
        sa.mkdir()
        token = cluster.kubectl("create", "token", f"{full}-validator-keys", "-n", ns, "--duration=10m").stdout.strip()
        (sa / "token").write_text(token)
        # the server's self-signed certificate is its own CA (in a pod: the service-account ca.crt)
        (sa / "ca.crt").write_bytes((cluster.root / "certs" / "apiserver.crt").read_bytes())
        job = next(d for d in hooks if d["kind"] == "Job" and d["metadata"]["name"] == f"{full}-validator-keys")
        store = job["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in store["env"]}
        scratch = tmp_path / "tmp"
        scratch.mkdir()
        text = next(d for d in hooks if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{full}-validator-keys-inputs")["data"]["store-keys.sh"]
        text = text.replace("/tmp/", f"{scratch}/").replace("/out/", f"{tmp_path / 'job' / 'out'}/")

        def run():
            proc = subprocess.run(["/bin/sh", "-ec", text], capture_output=True, text=True, timeout=120,
                                  env={**os.environ, **env, "SA_DIR": str(sa), "KUBE_API": cluster.url})
            assert proc.returncode == 0, proc.stdout + proc.stderr
            return proc.stdout

        def stored():
            out = cluster.kubectl("get", "secrets", "-n", ns, "-l", "app.kubernetes.io/component=validator-keys", "-o", "yaml").stdout
            return {i["metadata"]["name"]: i for i in yaml.safe_load(out)["items"]}

        out = run()
        assert f"{len(secrets)} stored, 0 kept" in out
        first = stored()
        assert sorted(first) == sorted(secrets)
        for name, s in first.items():
            assert s["data"] == secrets[name]["data"], name
            assert s["metadata"]["annotations"]["eth-enclave/key-range"] == secrets[name]["metadata"]["annotations"]["eth-enclave/key-range"]
            assert s["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "ConfigMap", "name": f"{full}-genesis", "uid": uid}]
        # the next upgrade derives again (other salts) but stores nothing: the keys are kept
        again = derive(docs, tmp_path / "job2")
        text2 = text.replace(str(tmp_path / "job" / "out"), str(tmp_path / "job2" / "out"))
        proc = subprocess.run(["/bin/sh", "-ec", text2], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **env, "SA_DIR": str(sa), "KUBE_API": cluster.url})
        assert proc.returncode == 0 and f"0 stored, {len(again)} kept" in proc.stdout, proc.stdout + proc.stderr
        assert {n: s["metadata"]["resourceVersion"] for n, s in stored().items()} == \
            {n: s["metadata"]["resourceVersion"] for n, s in first.items()}
        # a Secret holding another range is replaced
        victim = sorted(first)[0]
        cluster.kubectl("annotate", "secret", victim, "-n", ns, "--overwrite", "eth-enclave/key-range=0-1")
        assert "1 stored" in run()
        assert stored()[victim]["metadata"]["annotations"]["eth-enclave/key-range"] == first[victim]["metadata"]["annotations"]["eth-enclave/key-range"]
        # nothing else: no list, no other Secret, no delete
        as_sa = f"--as=system:serviceaccount:{ns}:{full}-validator-keys"
        for verb, what in (("list", "secrets"), ("get", f"secret/{full}-jwt"), ("delete", f"secret/{victim}"),
                           ("get", f"secret/{full}-node-keys"), ("patch", f"configmap/{full}-genesis")):
            proc = cluster.kubectl("auth", "can-i", verb, what, "-n", ns, as_sa, check=False)
            assert proc.stdout.strip() == "no", f"the validator-keys account may {verb} {what}"
    finally:
        cluster.helm("uninstall", RELEASE, "-n", ns, "--no-hooks", check=False)
        cluster.kubectl("delete", "secrets,configmaps,serviceaccounts,roles,rolebindings", "-n", ns,
                        "-l", f"app.kubernetes.io/instance={RELEASE}", check=False)
        cluster.kubectl("delete", "configmap", f"{full}-genesis", "-n", ns, check=False)


class Recorder(BaseHTTPRequestHandler):
    """Stands in for one node's port: records what it is asked and answers 503."""

    def log_message(self, *a):
        pass

    def handle_one(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        self.server.seen.append((self.command, self.path))
        self.send_response(503)
        self.send_header("content-length", "0")
        self.end_headers()

    do_GET = do_POST = handle_one


def recorder():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    srv.seen = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def metric(body, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{name}{{{re.escape(want)}}} (\S+)$", body, re.M)
    return float(m.group(1)) if m else None


def wait_for(what, check, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_network_watcher_watches_its_release_with_its_own_token(cluster, tmp_path):
    """Two releases in one namespace. The watcher of release t, started with exactly the rendered
    args and env and with a token of the ServiceAccount the chart gives it (so only its Role
    applies), lists and watches pods: it finds t's execution and beacon pods once they have an IP,
    Ready or not (a pod starting, failing and being deleted are watch events), polls them on their named ports,
    and leaves t's validator client and release u's nodes alone. The Role allows nothing else."""
    ns = "watch"
    cluster.kubectl("create", "namespace", ns)
    for release in (RELEASE, "u"):
        cluster.helm("install", release, str(CHART), "-n", ns, "--no-hooks")
    sa = f"{RELEASE}-eth-enclave-network"
    who = f"--as=system:serviceaccount:{ns}:{sa}"

    # RBAC: get/list/watch pods in its namespace, nothing more
    def can(*args):
        return cluster.kubectl("auth", "can-i", *args, who, check=False).stdout.strip() == "yes"
    for verb in ("get", "list", "watch"):
        assert can(verb, "pods", "-n", ns), verb
    for args in (("create", "pods"), ("delete", "pods"), ("patch", "pods"), ("get", "pods", "--subresource=log"),
                 ("create", "pods", "--subresource=exec"), ("update", "pods", "--subresource=status"),
                 ("get", "secrets"), ("list", "configmaps"), ("list", "services"),
                 ("list", "endpointslices.discovery.k8s.io")):
        assert not can(*args, "-n", ns), args
    assert not can("list", "pods", "-n", "default")
    assert not can("list", "pods", "--all-namespaces")
    # release u's watcher has its own account and binding
    rb = yaml.safe_load(cluster.kubectl("get", "rolebinding", "u-eth-enclave-network", "-n", ns, "-o", "yaml").stdout)
    assert rb["subjects"][0]["name"] == "u-eth-enclave-network" and rb["roleRef"]["name"] == "u-eth-enclave-network"

    # node pods as the StatefulSets would make them, each named port on its own local stand-in
    manifests = {r: [d for d in yaml.safe_load_all(cluster.helm("get", "manifest", r, "-n", ns).stdout) if d]
                 for r in (RELEASE, "u")}
    servers = {}

    def make_pod(release, sts_suffix, ready, running=True):
        sts = next(d for d in manifests[release] if d["kind"] == "StatefulSet"
                   and d["metadata"]["name"] == f"{release}-eth-enclave-{sts_suffix}")
        name = f"{sts['metadata']['name']}-0"
        containers = []
        for c in sts["spec"]["template"]["spec"]["containers"]:
            cports = []
            for p in c.get("ports", []):
                p = dict(p)
                if p["name"] in ("rpc", "http"):
                    srv = recorder()
                    servers[(name, p["name"])] = srv
                    p["containerPort"] = srv.server_address[1]
                cports.append(p)
            containers.append({"name": c["name"], "image": c["image"], "ports": cports})
        labels = dict(sts["spec"]["template"]["metadata"]["labels"],
                      **{"apps.kubernetes.io/pod-index": "0", "statefulset.kubernetes.io/pod-name": name})
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns, "labels": labels},
               "spec": {"nodeName": "node-1", "automountServiceAccountToken": False, "containers": containers}}
        cluster.kubectl("create", "-f", "-", input=yaml.safe_dump(pod))
        if running:
            set_status(name, "Running", ready)
        return name

    def set_status(name, phase, ready):
        status = {"status": {"phase": phase, "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
                             "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
        cluster.kubectl("patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge",
                        "-p", json.dumps(status))

    el = make_pod(RELEASE, "el-1-reth-lighthouse", True)
    cl = make_pod(RELEASE, "cl-1-lighthouse-reth", False, running=False)  # pending: no IP yet
    vc = make_pod(RELEASE, "vc-1-reth-lighthouse", True)
    other_el = make_pod("u", "el-1-reth-lighthouse", True)
    other_cl = make_pod("u", "cl-1-lighthouse-reth", True)
    assert (vc, "rpc") not in servers and (vc, "http") not in servers

    # the watcher of release t: its Deployment as stored, its ServiceAccount's token
    dep = yaml.safe_load(cluster.kubectl("get", "deployment", sa, "-n", ns, "-o", "yaml").stdout)
    pod_spec = dep["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == sa and pod_spec["automountServiceAccountToken"] is True
    (c,) = pod_spec["containers"]
    assert f"--kubernetes.namespace={ns}" in c["args"]
    token = cluster.kubectl("create", "token", sa, "-n", ns, "--duration=15m").stdout.strip()
    server = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    kubeconfig = tmp_path / "watcher-kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa", "namespace": ns}}],
    }))
    port = free_port()
    env = rendered_env(c, port, drop=("ETHWATCH_", "OTEL_", "KUBERNETES_"), KUBECONFIG=str(kubeconfig),
                       HOME=str(tmp_path))
    watcher = Ethwatch(c["args"], env, tmp_path / "watcher.log")

    def metrics():
        assert watcher.proc.poll() is None, "the watcher exited:\n" + watcher.text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                return r.read().decode()
        except (urllib.error.URLError, OSError):
            return ""

    def targets(layer):
        return metric(metrics(), "eth_network_targets", layer=layer)

    try:
        # the running execution pod of t is found and polled on its "rpc" port; the pending beacon
        # pod (no IP), the validator client and u's nodes are not
        wait_for("t's execution node polled", lambda: servers[(el, "rpc")].seen)
        wait_for("one execution target", lambda: targets("execution") == 1)
        assert servers[(el, "rpc")].seen[0][0] == "POST"
        assert not targets("consensus")
        body = metrics()
        assert metric(body, "eth_network_node_up", layer="execution", node=el) == 0  # its stand-in answers 503
        # a pod that starts running is a watch event: t's beacon node is found and polled on
        # "http", although it is not Ready (a node that is not ready must show in the comparison)
        set_status(cl, "Running", False)
        wait_for("t's beacon node polled", lambda: servers[(cl, "http")].seen)
        wait_for("one consensus target", lambda: targets("consensus") == 1)
        assert servers[(cl, "http")].seen[0][0] == "GET" and servers[(cl, "http")].seen[0][1].startswith("/eth/")
        # the beacon pod fails (a finished pod), then the execution pod is deleted: both leave
        set_status(cl, "Failed", False)
        wait_for("the failed beacon node dropped", lambda: targets("consensus") == 0)
        cluster.kubectl("delete", "pod", el, "-n", ns, "--wait=false")
        wait_for("the deleted execution node dropped", lambda: targets("execution") == 0)
        body = metrics()
        assert f'node="{el}"' not in body, "a deleted node's series must go with it"
        # release u's nodes were never asked anything, nor were they reported
        assert not servers[(other_el, "rpc")].seen and not servers[(other_cl, "http")].seen
        assert "u-eth-enclave" not in body
        text = watcher.text()
        assert "pod watch failed" not in text and "forbidden" not in text.lower(), text
    finally:
        rc = watcher.stop()
        for srv in servers.values():
            srv.shutdown()
            srv.server_close()
    assert rc == 0
    for release in (RELEASE, "u"):
        cluster.helm("uninstall", release, "-n", ns, "--no-hooks")
