"""pytest set-up of the local-cluster tests (tests/kube): one real single-node cluster for the
whole directory, from `scripts/kube-local.sh up` to `scripts/kube-local.sh down`.

The session fixture `kube_cluster` starts a fresh cluster (it refuses to reuse or tear down one
that is already running), yields a `KubeCluster` (its environment with KUBECONFIG, the built
kubectl, the node IP and everything `up` wrote to $STATE/env.sh, with helpers: kubectl, apply,
exec, wait, jsonpath, import_images, add_volumes), and at the end of the session
runs `down` and checks that nothing is left behind: no process of the cluster, no mount under its
state, no veth, no bridge, no iptables chain or ipset that was not there before, the sysctls and
host paths as they were. Any test module in this directory that asks for `kube_cluster` shares
that one cluster. Run through `tests/kube/run.sh` (scripts/test.sh runs it, as group `kube`).
"""

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # e2e: the harness shared with the other suites
KUBE_LOCAL = ROOT / "scripts" / "kube-local.sh"
CACHE = Path(os.environ.get("ETHWATCH_CACHE", Path.home() / ".cache" / "ethwatch"))
STATE = Path(os.path.realpath(os.environ.get("ETHWATCH_KUBE_STATE", CACHE / "kube-local" / "state")))
# What `down` restores (scripts/kube-local.sh SYSCTLS and HOST_PATHS).
SYSCTLS = ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
           "net.ipv4.conf.all.route_localnet", "vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic",
           "kernel.panic_on_oops", "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes")
HOST_PATHS = ("/run/containerd", "/var/lib/cni", "/var/log/containers", "/var/log/pods", "/var/lib/kubelet",
              "/etc/cni")
OUR_CHAINS = re.compile(r"^:((?:KUBE|CNI|ETHWATCH-KUBE)-\S*) ", re.M)


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: end to end in a real Kubernetes node (scripts/kube-local.sh)")


def sh(*args, check=True, timeout=600, **kw):
    """Run a command; on failure the assertion shows its output."""
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{shlex.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
    return proc


@dataclass
class KubeCluster:
    env: dict            # os.environ plus everything in $STATE/env.sh (KUBECONFIG, KUBECTL, NODE_IP, ...)
    kubeconfig: str
    kubectl_path: str    # kubectl v1.34.4 built by scripts/tools.sh (tool kube-local)
    node_ip: str
    state: Path
    up_seconds: float
    timings: dict = field(default_factory=dict)

    def kubectl(self, *args, check=True, input=None, timeout=180):
        proc = subprocess.run([self.kubectl_path, *map(str, args)], capture_output=True, text=True,
                              env=self.env, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {shlex.join(map(str, args))} exited {proc.returncode}:\n"
                                 f"{proc.stderr}{proc.stdout}")
        return proc

    def apply(self, manifest: str, namespace=None):
        ns = ["-n", namespace] if namespace else []
        return self.kubectl(*ns, "apply", "-f", "-", input=manifest)

    def exec(self, namespace, pod, script, check=True, timeout=60):
        return self.kubectl("-n", namespace, "exec", pod, "--", "sh", "-c", script, check=check, timeout=timeout)

    def wait(self, namespace, what, condition, timeout=180):
        return self.kubectl("-n", namespace, "wait", f"--for={condition}", what, f"--timeout={timeout}s",
                            timeout=timeout + 30)

    def jsonpath(self, namespace, what, path):
        return self.kubectl("-n", namespace, "get", what, "-o", f"jsonpath={path}").stdout

    def import_images(self, *archives):
        """OCI archives (scripts/kube/mkimage.py) into containerd's k8s.io namespace."""
        return sh(KUBE_LOCAL, "import", *archives)

    def add_volumes(self, count, size="1000Gi"):
        """`count` more local PersistentVolumes of the default StorageClass."""
        return sh(KUBE_LOCAL, "pv", count, size)


def read_env_sh(path: Path) -> dict:
    out = sh("bash", "-c", 'set -a; source "$1"; env -0', "_", path).stdout
    return dict(kv.split("=", 1) for kv in out.split("\0") if "=" in kv)


def host_snapshot(state: Path) -> dict:
    """What the cluster may add to the host; `down` must bring each back to its value before `up`."""
    chains = set()
    for fam in ("iptables-save", "ip6tables-save"):
        for table in ("filter", "nat", "mangle", "raw"):
            dump = sh(fam, "-t", table, check=False).stdout
            chains |= {f"{fam}/{table}/{c}" for c in OUR_CHAINS.findall(dump)}
    veths = set(re.findall(r"^\d+: ([^:@]+)", sh("ip", "-o", "link", "show", "type", "veth").stdout, re.M))
    ipsets = set(sh("ipset", "list", "-n", check=False).stdout.split())
    procs = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"{state}/" in cmd:
                procs.add(f"{p.name}: {cmd[:120]}")
    mounts = {line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(f"{state}/")}
    sysctls = {}
    for s in SYSCTLS:
        r = sh("sysctl", "-n", s, check=False)
        if r.returncode == 0:
            sysctls[s] = r.stdout.strip()
    kubepods = {str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods")}
    return dict(chains=chains, veths=veths, ipsets=ipsets, procs=procs, mounts=mounts, sysctls=sysctls,
                paths={p for p in HOST_PATHS if os.path.exists(p)}, kubepods=kubepods,
                bridge=sh("ip", "link", "show", "ethwatch0", check=False).returncode == 0)


@pytest.fixture(scope="session")
def kube_cluster():
    status = sh(KUBE_LOCAL, "status", check=False)
    if re.search(r"^\S+\s+running", status.stdout, re.M):
        pytest.fail("a local cluster is already running (scripts/kube-local.sh status):\n"
                    f"{status.stdout}bring it down first (scripts/kube-local.sh down); the tests start their own")
    if STATE.exists():
        sh(KUBE_LOCAL, "down")  # a leftover state without processes: clean it first
    before = host_snapshot(STATE)
    t0 = time.monotonic()
    up = sh(KUBE_LOCAL, "up", check=False, timeout=3600)
    up_s = time.monotonic() - t0
    if up.returncode != 0:
        down = sh(KUBE_LOCAL, "down", check=False)
        pytest.fail(f"scripts/kube-local.sh up exited {up.returncode}:\n{up.stderr[-4000:]}\n"
                    f"(down after it exited {down.returncode}:\n{down.stderr[-2000:]})")
    exports = [line for line in up.stdout.splitlines() if line.strip()]
    assert len(exports) == 1 and exports[0].startswith("export KUBECONFIG="), \
        f"up must print exactly one export line on stdout, got:\n{up.stdout}"
    kubeconfig = exports[0].split("=", 1)[1]
    assert Path(kubeconfig).is_absolute() and Path(kubeconfig).is_file(), kubeconfig
    env = dict(os.environ, **read_env_sh(STATE / "env.sh"))
    assert env["KUBECONFIG"] == kubeconfig
    cluster = KubeCluster(env=env, kubeconfig=kubeconfig, kubectl_path=env["KUBECTL"], node_ip=env["NODE_IP"],
                          state=STATE, up_seconds=up_s)
    print(f"\nkube-local: up in {up_s:.1f} s")
    try:
        yield cluster
    finally:
        t0 = time.monotonic()
        down = sh(KUBE_LOCAL, "down", check=False, timeout=600)
        down_s = time.monotonic() - t0
        print(f"\nkube-local: down in {down_s:.1f} s")
        after = host_snapshot(STATE)
        assert down.returncode == 0, f"down exited {down.returncode}:\n{down.stderr}"
        problems = []
        for key in ("chains", "veths", "ipsets", "paths", "kubepods"):
            new = after[key] - before[key]
            if new:
                problems.append(f"{key} left behind: {sorted(new)}")
        for key in ("procs", "mounts"):
            if after[key]:
                problems.append(f"{key} left behind: {sorted(after[key])}")
        if after["sysctls"] != before["sysctls"]:
            problems.append(f"sysctls not restored: before {before['sysctls']}, after {after['sysctls']}")
        if after["bridge"]:
            problems.append("bridge ethwatch0 left behind")
        if STATE.exists():
            problems.append(f"state dir {STATE} left behind")
        assert not problems, "scripts/kube-local.sh down left things behind:\n" + "\n".join(problems)
