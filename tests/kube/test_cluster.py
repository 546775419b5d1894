"""The local cluster of scripts/kube-local.sh, for real: a node that runs pods, volumes that bind
and are written by non-root pods, cluster DNS for services and StatefulSet pods (and nothing
else), NetworkPolicy enforced by kube-router, and the network rules: listeners only on loopback
or the bridge, pods routed to the pod and service ranges only, the guard dropping pod traffic to
the host, nothing pulled. The teardown checks (nothing left behind) are in conftest.py.

Traffic goes only to pods of the namespaces these tests create, to the cluster's own services,
and, for the guard, to the host's own address (a packet the guard drops before it is delivered).
"""

import ipaddress
import json
import os
import re
import time
import uuid

import pytest

from conftest import sh
from e2e.stack import wait_until

pytestmark = pytest.mark.e2e

BUSYBOX = "ethwatch.local/busybox:1"


def pod(name, command, labels=None, extra_container="", extra_spec=""):
    labels = labels or {"app": name}
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {json.dumps(labels)}}}
spec:
  terminationGracePeriodSeconds: 0
  {extra_spec}
  containers:
  - name: main
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: {json.dumps(command)}
    {extra_container}
---
"""


WEB = ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]
SLEEP = ["/bin/sleep", "100000"]
READY = "readinessProbe: {httpGet: {path: /index.html, port: 8080}, periodSeconds: 1}"


@pytest.fixture(scope="module")
def ns(kube_cluster):
    """A namespace of these tests: web (httpd), client, the StatefulSet db (headless service)."""
    name = f"kubetest-{uuid.uuid4().hex[:6]}"
    k = kube_cluster
    k.kubectl("create", "namespace", name)
    k.apply(pod("web", WEB, extra_container=READY) + pod("client", SLEEP) + f"""
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: db}}
spec:
  clusterIP: None
  selector: {{app: db}}
  ports: [{{port: 9000}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db}}
spec:
  serviceName: db
  replicas: 1
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      terminationGracePeriodSeconds: 0
      # as the chart's pods: non-root, fsGroup on the volume
      securityContext: {{runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001, runAsNonRoot: true}}
      containers:
      - name: db
        image: {BUSYBOX}
        imagePullPolicy: Never
        command: ["/bin/sh", "-c", "echo written-by-$(hostname)-as-$(id -u) > /data/marker && exec sleep 100000"]
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 200Gi}}}}
""", namespace=name)
    for p in ("web", "client", "db-0"):
        k.wait(name, f"pod/{p}", "condition=Ready")
    yield name
    k.kubectl("delete", "namespace", name, "--wait=false")


def test_node_ready(kube_cluster):
    k = kube_cluster
    node = json.loads(k.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert len(node) == 1
    conds = {c["type"]: c["status"] for c in node[0]["status"]["conditions"]}
    assert conds["Ready"] == "True", conds
    addrs = {a["type"]: a["address"] for a in node[0]["status"]["addresses"]}
    assert addrs["InternalIP"] == k.node_ip
    assert node[0]["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4"
    k.kubectl("-n", "default", "get", "serviceaccount", "default")
    sc = json.loads(k.kubectl("get", "storageclass", "-o", "json").stdout)["items"]
    assert [s["metadata"]["name"] for s in sc
            if s["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class") == "true"] \
        == [k.env["STORAGE_CLASS"]]


def test_pod_runs_logs_exec(kube_cluster, ns):
    k = kube_cluster
    assert "hello from ethwatch busybox" in k.exec(ns, "web", "cat /www/index.html").stdout
    # logs and exec go through the API server to the kubelet, by the node's InternalIP
    k.apply(pod("hello", ["/bin/sh", "-c", "echo hello from the pod; sleep 100000"]), namespace=ns)
    k.wait(ns, "pod/hello", "condition=Ready")
    for _ in range(20):
        if "hello from the pod" in k.kubectl("-n", ns, "logs", "hello").stdout:
            break
        time.sleep(0.5)
    else:
        pytest.fail("kubectl logs hello never showed the line")


def test_statefulset_volume_binds_and_is_written(kube_cluster, ns):
    k = kube_cluster
    pvc = json.loads(k.kubectl("-n", ns, "get", "pvc", "data-db-0", "-o", "json").stdout)
    assert pvc["status"]["phase"] == "Bound"
    assert pvc["spec"]["storageClassName"] == "local"  # the default class, not named by the claim
    pv = json.loads(k.kubectl("get", "pv", pvc["spec"]["volumeName"], "-o", "json").stdout)
    path = pv["spec"]["local"]["path"]
    assert path.startswith(k.env["KUBE_LOCAL_PV_DIR"] + "/")
    marker = os.path.join(path, "marker")
    for _ in range(40):
        if os.path.exists(marker):
            break
        time.sleep(0.25)
    with open(marker) as f:
        assert f.read().strip() == "written-by-db-0-as-10001"


def nslookup(k, ns, name):
    return k.exec(ns, "client", f"nslookup {name}", check=False)


def answers(out):
    """The addresses of the answer section of busybox nslookup's output (not the server's)."""
    text = out.split("\n\n", 1)[1] if "\n\n" in out else ""
    return re.findall(r"Address(?: \d+)?:\s*([0-9.]+)", text)


def test_dns(kube_cluster, ns):
    k = kube_cluster
    resolv = k.exec(ns, "client", "cat /etc/resolv.conf").stdout
    assert re.findall(r"^nameserver (\S+)", resolv, re.M) == [k.env["CLUSTER_DNS_IP"]], resolv
    assert f"search {ns}.svc.cluster.local svc.cluster.local cluster.local" in resolv, resolv
    web_ip = k.jsonpath(ns, "service/web", "{.spec.clusterIP}")
    db0_ip = k.jsonpath(ns, "pod/db-0", "{.status.podIP}")
    for name, want in ((f"web.{ns}.svc.cluster.local", web_ip), (f"db-0.db.{ns}.svc.cluster.local", db0_ip),
                       ("kubernetes.default.svc.cluster.local", "10.96.0.1")):
        r = nslookup(k, ns, name)
        assert answers(r.stdout) == [want], f"{name}: {r.stdout}{r.stderr}"
    # the search domains: <svc>, <svc>.<ns>, <pod>.<svc> as a Go or glibc resolver expands them
    for name in ("web", f"web.{ns}", "db-0.db"):
        r = k.exec(ns, "client", f"timeout 10 wget -q -O /dev/null -S http://{name}:80/index.html 2>&1; "
                   "echo rc=$?", check=False)
        if name == "db-0.db":  # nothing listens on the db pod: resolution is what counts
            assert "bad address" not in r.stdout, f"{name} did not resolve: {r.stdout}"
        else:
            assert "HTTP/1.0 200 OK" in r.stdout or "HTTP/1.1 200 OK" in r.stdout, f"{name}: {r.stdout}"
    # nothing outside cluster.local resolves: CoreDNS refuses, it forwards nowhere
    for name in ("example.com", "kubernetes.io"):
        r = nslookup(k, ns, name)
        assert r.returncode != 0 and not answers(r.stdout), f"{name} resolved: {r.stdout}"
        assert "REFUSED" in r.stdout + r.stderr or "NXDOMAIN" in r.stdout + r.stderr, r.stdout + r.stderr
    corefile = k.jsonpath("kube-system", "configmap/coredns", "{.data.Corefile}")
    assert "forward" not in corefile and "proxy" not in corefile, corefile
    plugins = sh(os.environ["ETHWATCH_COREDNS"], "-plugins").stdout.split()
    assert "kubernetes" in plugins and "forward" not in plugins, plugins


def deny(direction, name=None):
    """A NetworkPolicy that selects every pod for `direction` (Ingress, Egress) and allows nothing
    (until rules are appended)."""
    return f"""
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: {name or "default-deny-" + direction.lower()}}}
spec:
  podSelector: {{}}
  policyTypes: [{direction}]
"""


def test_network_policy_blocks_then_allows(kube_cluster):
    """kube-router enforces NetworkPolicy: a connection that works is cut by a default deny."""
    k = kube_cluster
    name = f"kubetest-np-{uuid.uuid4().hex[:6]}"
    k.kubectl("create", "namespace", name)
    try:
        k.apply(pod("srv", WEB, extra_container=READY) + pod("cli", SLEEP), namespace=name)
        k.wait(name, "pod/srv", "condition=Ready")
        k.wait(name, "pod/cli", "condition=Ready")
        ip = k.jsonpath(name, "pod/srv", "{.status.podIP}")
        fetch = f"timeout 3 wget -q -O- http://{ip}:8080/index.html"
        assert "hello" in k.exec(name, "cli", fetch).stdout
        k.apply(deny("Ingress"), namespace=name)
        wait_until("the default-deny policy to block cli -> srv",
                   lambda: k.exec(name, "cli", fetch, check=False).returncode != 0, 30, interval=0.5)
        # and the kubelet's probes still reach the pod (kube-router lets the node in)
        time.sleep(3)
        assert k.jsonpath(name, "pod/srv", '{.status.conditions[?(@.type=="Ready")].status}') == "True"
        # Egress denied but for DNS, the way the chart allows it (networkPolicy.dns: the kube-dns
        # pods of kube-system): names still resolve through the Service's DNAT to the CoreDNS pod,
        # and the API server's ClusterIP is cut.
        api = "timeout 3 wget -q -O /dev/null --no-check-certificate https://10.96.0.1/ 2>&1; echo rc=$?"
        assert "403 Forbidden" in k.exec(name, "cli", api).stdout  # reachable, anonymous
        k.apply(deny("Egress") + deny("Egress", "dns") + """
  egress:
  - to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
      podSelector: {matchLabels: {k8s-app: kube-dns}}
    ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]
""", namespace=name)
        wait_until("the default-deny egress policy to cut cli -> API server",
                   lambda: "403 Forbidden" not in k.exec(name, "cli", api).stdout, 30, interval=0.5)
        r = k.exec(name, "cli", "nslookup kubernetes.default.svc.cluster.local", check=False)
        assert answers(r.stdout) == ["10.96.0.1"], r.stdout + r.stderr
    finally:
        k.kubectl("delete", "namespace", name, "--wait=false")


def host_address(exclude):
    """An IPv4 address of this host outside the cluster's ranges (the default route's, first)."""
    out = sh("ip", "-4", "-o", "addr", "show", "scope", "global").stdout
    addrs = [ipaddress.ip_interface(m).ip for m in re.findall(r"inet (\S+)", out)]
    addrs = [a for a in addrs if not any(a in net for net in exclude)]
    assert addrs, f"no global IPv4 address on this host outside {exclude}"
    return str(addrs[0])


def guard_drops():
    out = sh("iptables", "-w", "-t", "mangle", "-L", "ETHWATCH-KUBE-GUARD", "-v", "-x", "-n").stdout
    return sum(int(line.split()[0]) for line in out.splitlines() if " DROP " in f" {line} ")


def test_pod_routes_and_guard(kube_cluster, ns):
    k = kube_cluster
    routes = k.exec(ns, "client", "ip -4 route").stdout
    dsts = sorted(line.split()[0] for line in routes.splitlines() if line.strip())
    assert dsts == sorted([k.env["POD_CIDR"], k.env["CLUSTER_CIDR"], k.env["SERVICE_CIDR"]]), routes
    for chain in ("FORWARD", "INPUT"):
        first = sh("iptables", "-w", "-t", "mangle", "-S", chain).stdout.splitlines()
        rules = [r for r in first if r.startswith("-A ")]
        assert rules and rules[0] == f"-A {chain} -j ETHWATCH-KUBE-GUARD", first
    # A pod that gives itself a default route (NET_ADMIN) still reaches nothing outside the pod
    # network: its connection to the host's own address is dropped by the guard (a timeout, not
    # the refusal a closed port would give), and the guard's DROP counter shows it.
    target = host_address([ipaddress.ip_network(k.env["CLUSTER_CIDR"]), ipaddress.ip_network("127.0.0.0/8")])
    listening = sh("ss", "-Hltn").stdout
    port = next(p for p in (9, 7, 13, 37, 79) if not re.search(rf"[:.]{p}\s", listening))
    k.apply(pod("escape", SLEEP, extra_container="securityContext: {capabilities: {add: [NET_ADMIN]}}"),
            namespace=ns)
    k.wait(ns, "pod/escape", "condition=Ready")
    k.exec(ns, "escape", f"ip route add default via {k.node_ip}")
    drops = guard_drops()
    t0 = time.monotonic()
    r = k.exec(ns, "escape", f"timeout 3 nc {target} {port} </dev/null; echo rc=$?", check=False)
    took = time.monotonic() - t0
    assert "refused" not in (r.stdout + r.stderr).lower(), f"reached {target}:{port}: {r.stdout}{r.stderr}"
    assert took >= 2.5, f"connection to {target}:{port} ended after {took:.1f} s: {r.stdout}{r.stderr}"
    assert guard_drops() > drops, "the guard's DROP counter did not move"
    # the host's other ports on the bridge are closed to pods too; the API server port is open
    r = k.exec(ns, "escape", f"timeout 3 nc {k.node_ip} 10250 </dev/null; echo rc=$?", check=False)
    assert "refused" not in r.stdout.lower() and "rc=0" not in r.stdout, r.stdout


def test_listeners_only_on_loopback_or_bridge(kube_cluster):
    k = kube_cluster
    pids = {}
    for f in (k.state / "pids").glob("*.pid"):
        pids[f.read_text().strip()] = f.stem
    assert set(pids.values()) >= {"containerd", "etcd", "kube-apiserver", "kube-controller-manager",
                                  "kube-scheduler", "kubelet", "kube-proxy", "kube-router"}
    seen = []
    for line in sh("ss", "-Hltunp").stdout.splitlines():
        for pid in re.findall(r"pid=(\d+)", line):
            if pid in pids:
                local = line.split()[4]
                addr = local.rsplit(":", 1)[0].strip("[]")
                seen.append((pids[pid], local))
                assert addr in ("127.0.0.1", k.node_ip), f"{pids[pid]} listens on {local}"
    assert ("kube-apiserver", f"{k.node_ip}:6443") in seen, seen


def test_nothing_is_pulled(kube_cluster, ns):
    k = kube_cluster
    r = k.kubectl("-n", ns, "apply", "--dry-run=server", "-f", "-", check=False,
                  input=pod("pull", SLEEP).replace("imagePullPolicy: Never", "imagePullPolicy: IfNotPresent"))
    assert r.returncode != 0 and "imagePullPolicy: Never" in r.stderr, r.stderr + r.stdout


def test_up_again_is_idempotent(kube_cluster):
    from conftest import KUBE_LOCAL
    k = kube_cluster
    pvs = k.kubectl("get", "pv", "-o", "name").stdout.split()
    t0 = time.monotonic()
    r = sh(KUBE_LOCAL, "up")
    assert r.stdout.strip() == f"export KUBECONFIG={k.kubeconfig}"
    assert "already running" in r.stderr
    assert time.monotonic() - t0 < 30
    # a component that died is started again on the same state, and nothing is created twice
    pidfile = k.state / "pids" / "kube-scheduler.pid"
    old = int(pidfile.read_text())
    os.kill(old, 15)
    for _ in range(60):
        if not os.path.exists(f"/proc/{old}"):
            break
        time.sleep(0.25)
    assert "kube-scheduler           not running" in sh(KUBE_LOCAL, "status", check=False).stdout
    r = sh(KUBE_LOCAL, "up")
    assert r.stdout.strip() == f"export KUBECONFIG={k.kubeconfig}"
    assert "starting kube-scheduler" in r.stderr and "starting kubelet" not in r.stderr, r.stderr
    assert int(pidfile.read_text()) != old
    status = sh(KUBE_LOCAL, "status").stdout
    assert "not running" not in status, status
    assert k.kubectl("get", "pv", "-o", "name").stdout.split() == pvs


def test_mkimage_import_and_pv(kube_cluster, tmp_path):
    """The way the enclave's images arrive: scripts/kube/mkimage.py, `kube-local.sh import`, a pod
    with imagePullPolicy Never; and `kube-local.sh pv N` adds volumes."""
    from conftest import ROOT
    k = kube_cluster
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_bytes(open("/bin/busybox", "rb").read())
    os.chmod(root / "bin" / "busybox", 0o755)
    (root / "msg").write_text("made by mkimage.py\n")
    name = f"ethwatch.local/kubetest-{uuid.uuid4().hex[:6]}:1"
    tar = tmp_path / "img.tar"
    sh("python3", ROOT / "scripts" / "kube" / "mkimage.py", tar, name, root,
       json.dumps({"Entrypoint": ["/bin/busybox"], "Cmd": ["cat", "/msg"]}))
    k.import_images(tar)
    listed = sh("bash", "-c", '$CTR -n k8s.io images ls -q', env=k.env).stdout.split()
    assert name in listed
    ns = f"kubetest-img-{uuid.uuid4().hex[:6]}"
    k.kubectl("create", "namespace", ns)
    try:
        k.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: img}}
spec:
  restartPolicy: Never
  containers: [{{name: main, image: "{name}", imagePullPolicy: Never}}]
""", namespace=ns)
        k.wait(ns, "pod/img", "jsonpath={.status.phase}=Succeeded", timeout=120)
        assert k.kubectl("-n", ns, "logs", "img").stdout == "made by mkimage.py\n"
    finally:
        k.kubectl("delete", "namespace", ns, "--wait=false")
    before = set(k.kubectl("get", "pv", "-o", "name").stdout.split())
    k.add_volumes(2, "5Gi")
    added = set(k.kubectl("get", "pv", "-o", "name").stdout.split()) - before
    assert len(added) == 2, added
    for pv in added:
        spec = json.loads(k.kubectl("get", pv, "-o", "json").stdout)["spec"]
        assert spec["capacity"]["storage"] == "5Gi" and spec["storageClassName"] == "local"
        assert os.path.isdir(spec["local"]["path"])
