"""A devnet of real nodes with ethwatch attached, for end-to-end tests and the dashboards'
pictures: anvil + `ethwatch execution`, a Lodestar dev chain + `ethwatch consensus` (when the
binary has it), `ethwatch network` over both (when the binary has it), a Prometheus scraping them
with the labels the chart's ServiceMonitors give (namespace, pod, container,
eth_enclave_participant, eth_enclave_client), and a little transaction traffic so the pool, gas and
fee series move. Everything binds 127.0.0.1 and is a child of a `Stack`, so `stack.stop_all()`
ends it.

    stack = Stack(tmp)
    try:
        net = Devnet.start(stack, tmp)           # nodes and exporters, waits until they answer
        prom = net.start_prometheus(rules_dir)   # then Prometheus (and nothing else is spawned)
        traffic = Traffic(net.el_url); traffic.start()
        ...
    finally:
        traffic.stop(); stack.stop_all()
"""

from __future__ import annotations

import ctypes
import os
import pathlib
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

from .stack import HOST, Prometheus, Stack, free_port, http_get, metric_value, rpc, wait_until

ROOT = pathlib.Path(__file__).resolve().parents[2]
NAMESPACE = "e2e"
PARTICIPANT = "1"
EL_POD = "el-1-anvil-0"
CL_POD = "cl-1-lodestar-0"
WATCHER_POD = "ethwatch-network-0"
SLOW = 120  # seconds: bound of any single wait (a cold Lodestar start is the slowest)


def tool(env_name: str, fallback: str) -> str:
    import shutil
    path = os.environ.get(env_name) or shutil.which(fallback)
    if not path:
        raise RuntimeError(f"{fallback} not found: run scripts/tools.sh and source "
                           f"~/.cache/ethwatch/tools/env.sh (or set {env_name})")
    return path


def die_with_parent():
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


def has_command(ethwatch: pathlib.Path, name: str) -> bool:
    return subprocess.run([str(ethwatch), name, "--help"], capture_output=True).returncode == 0


LODESTAR_PARAMS = ["--params.SECONDS_PER_SLOT", "2", "--params.ALTAIR_FORK_EPOCH", "0"]


def lodestar_dev(lodestar: str, rest_port: int, p2p_port: int, data_dir: pathlib.Path,
                 validators: bool = True) -> list[str]:
    """The Lodestar 1.5.1 dev chain (docs/consensus.md): 8 genesis validators, 2 s slots, Altair
    at genesis, no peers, REST on `rest_port`. With `validators` the 8 validators run in the same
    process (then `--beaconNodes` must name the REST port, or no block is ever produced); without,
    they run as `lodestar validator` clients (`lodestar_validator`). Run it in its own directory
    (it writes genesis.ssz to its working directory) with `signals_to_stop=2`."""
    cmd = [lodestar, "dev", "--genesisValidators", "8"]
    if validators:
        cmd += ["--startValidators", "0..7"]
    cmd += ["--reset", "--rest", "--rest.address", HOST, "--rest.port", str(rest_port)]
    if validators:
        cmd += ["--beaconNodes", f"http://{HOST}:{rest_port}"]
    return cmd + ["--rest.namespace", "*", "--listenAddress", HOST, "--port", str(p2p_port),
                  "--discv5", "false", "--mdns", "false", "--targetPeers", "0", *LODESTAR_PARAMS,
                  "--dataDir", str(data_dir)]


@dataclass(frozen=True)
class Labels:
    """What the devnet's exporters are called: the pods (also the watcher's target names) and
    whether the scrape targets carry the chart's extra labels (container, participant, client)."""
    el_pod: str = EL_POD
    cl_pod: str = CL_POD
    watcher_pod: str = WATCHER_POD
    chart: bool = True


@dataclass
class Devnet:
    stack: Stack
    tmp: pathlib.Path
    ports: dict
    consensus: bool
    network: bool
    targets: list = field(default_factory=list)  # (job, port, labels)

    @property
    def el_url(self) -> str:
        return f"http://{HOST}:{self.ports['anvil']}"

    @classmethod
    def start(cls, stack: Stack, tmp: pathlib.Path, ethwatch: pathlib.Path | None = None,
              consensus: bool | None = None, network: bool | None = None,
              labels: Labels = Labels(), otel: bool = True, pair: bool = True,
              volume: pathlib.Path | None = None) -> "Devnet":
        """Starts the nodes and exporters and waits until Lodestar's first block is seen through
        its exporter. `consensus`/`network` default to whether the binary has the command.
        `labels` names the pods; `otel` sends traces to a dead port (exemplars without a
        backend); `pair` pairs the two nodes in the watcher; `volume` is the one path
        watched, by the execution exporter at its default interval (else each exporter watches a
        directory of its own every 2 s)."""
        ethwatch = ethwatch or build_ethwatch()
        consensus = has_command(ethwatch, "consensus") if consensus is None else consensus
        network = has_command(ethwatch, "network") if network is None else network
        anvil = tool("ETHWATCH_ANVIL", "anvil")
        p = {k: free_port() for k in ("anvil", "el_exp", "beacon", "p2p", "cl_exp", "net_exp", "otlp")}
        net = cls(stack, tmp, p, consensus, network)
        pre = dict(env=child_env(), preexec_fn=die_with_parent)
        # Traces go to a port nobody listens on: the spans are dropped (and counted), and the
        # latency histograms still carry their trace ids as exemplars.
        otel_args = ["--otel.endpoint", f"http://{HOST}:{p['otlp']}", "--otel.protocol", "grpc"] if otel else []
        vol = tmp / "volumes"
        (vol / "el").mkdir(parents=True)
        (vol / "cl").mkdir(parents=True)
        el_volume = ["--volume.path", str(volume)] if volume else [
            "--volume.path", str(vol / "el"), "--volume.interval", "2s"]
        cl_volume = [] if volume else ["--volume.path", str(vol / "cl"), "--volume.interval", "2s"]

        def target_labels(pod: str, client: str | None) -> dict:
            out = {"namespace": NAMESPACE, "pod": pod}
            if labels.chart:
                out["container"] = "ethwatch"
                if client:
                    out |= {"eth_enclave_participant": PARTICIPANT, "eth_enclave_client": client}
            return out

        stack.start("anvil", [anvil, "--host", HOST, "--port", str(p["anvil"]), "--block-time", "1",
                              "--prune-history"], **pre)
        stack.start("ethwatch-execution", [
            str(ethwatch), "execution", "--rpc-url", net.el_url, "--ws-url", f"ws://{HOST}:{p['anvil']}",
            "--web.listen-address", f"{HOST}:{p['el_exp']}", *el_volume, *otel_args], **pre)
        net.targets.append(("ethwatch-execution", p["el_exp"], target_labels(labels.el_pod, "anvil")))
        beacon_url = f"http://{HOST}:{p['beacon']}"
        if consensus:
            lodestar = tool("ETHWATCH_LODESTAR", "lodestar")
            beacon_dir = tmp / "lodestar"
            beacon_dir.mkdir()
            stack.start("lodestar", lodestar_dev(lodestar, p["beacon"], p["p2p"], beacon_dir / "data"),
                        cwd=beacon_dir, signals_to_stop=2, **pre)
            stack.start("ethwatch-consensus", [
                str(ethwatch), "consensus", "--beacon-url", beacon_url,
                "--web.listen-address", f"{HOST}:{p['cl_exp']}", *cl_volume, *otel_args], **pre)
            net.targets.append(("ethwatch-consensus", p["cl_exp"], target_labels(labels.cl_pod, "lodestar")))
        if network:
            cmd = [str(ethwatch), "network", "--execution-target", f"{labels.el_pod}={net.el_url}",
                   "--web.listen-address", f"{HOST}:{p['net_exp']}", "--poll-interval", "1s"]
            if consensus:
                cmd += ["--beacon-target", f"{labels.cl_pod}={beacon_url}"]
                if pair:
                    cmd += ["--pair", f"{labels.el_pod}={labels.cl_pod}"]
            stack.start("ethwatch-network", cmd, **pre)
            net.targets.append(("ethwatch-network", p["net_exp"], target_labels(labels.watcher_pod, None)))

        def says(port, name, labels=""):
            return metric_value(http_get(f"http://{HOST}:{port}/metrics").decode(), name, labels)

        wait_until("anvil answering through ethwatch execution",
                   lambda: says(p["el_exp"], "eth_el_up") == 1
                   and says(p["el_exp"], "eth_el_subscription_connected") == 1, 60, stack)
        if consensus:
            wait_until("Lodestar's first block, seen through ethwatch consensus",
                       lambda: says(p["cl_exp"], "eth_cl_up") == 1
                       and (says(p["cl_exp"], "eth_cl_head_slot") or 0) > 0
                       and says(p["cl_exp"], "eth_cl_events_stream_connected") == 1, SLOW, stack)
        if network:
            wait_until("ethwatch network comparing the nodes",
                       lambda: says(p["net_exp"], "eth_network_common_height", 'layer="execution"') is not None,
                       60, stack)
        return net

    def scrape_configs(self) -> str:
        out = ""
        for job, port, labels in self.targets:
            lab = ", ".join(f"{k}: '{v}'" for k, v in labels.items())
            out += (f"  - job_name: {job}\n    static_configs:\n"
                    f"      - targets: ['{HOST}:{port}']\n        labels: {{{lab}}}\n")
        return out

    def spawn_prometheus(self, rules_dir: pathlib.Path | None = None,
                         alertmanager_port: int | None = None) -> Prometheus:
        """Prometheus (1 s scrapes, exemplar storage) over every exporter, with the rules in
        `rules_dir` and alerts to the Alertmanager on `alertmanager_port` (resent every second);
        returns at once (`wait_prometheus` waits). The last child to spawn before threads run
        (preexec_fn is not thread-safe)."""
        prometheus = tool("ETHWATCH_PROMETHEUS", "prometheus")
        port = free_port()
        rules = f"rule_files: ['{rules_dir}/*.yaml']\n" if rules_dir else ""
        if alertmanager_port:
            rules += ("alerting:\n  alertmanagers:\n"
                      f"    - static_configs: [{{targets: ['{HOST}:{alertmanager_port}']}}]\n")
        cfg = self.tmp / "prometheus.yml"
        cfg.write_text(f"global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
                       f"{rules}scrape_configs:\n{self.scrape_configs()}")
        resend = ["--rules.alert.resend-delay=1s"] if alertmanager_port else []
        self.stack.start("prometheus", [
            prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={self.tmp / 'tsdb'}",
            f"--web.listen-address={HOST}:{port}", "--enable-feature=exemplar-storage", *resend],
            env=child_env(), preexec_fn=die_with_parent)
        return Prometheus(port)

    def wait_prometheus(self, prom: Prometheus) -> Prometheus:
        """Waits until Prometheus is ready and scrapes every exporter."""
        wait_until("Prometheus ready", lambda: http_get(f"{prom.base}/-/ready"), 60, self.stack)
        n = len(self.targets)
        wait_until("Prometheus scraping every exporter",
                   lambda: prom.value("min(up)") == 1 and prom.value("count(up)") == n, 30, self.stack)
        return prom

    def start_prometheus(self, rules_dir: pathlib.Path | None = None) -> Prometheus:
        """`spawn_prometheus` and `wait_prometheus`. Spawn nothing after this call once threads
        run (preexec_fn is not thread-safe)."""
        return self.wait_prometheus(self.spawn_prometheus(rules_dir))


class Traffic:
    """Transactions to anvil from its unlocked dev accounts, in waves, so pending, gas used,
    base fee and transactions per block move; one transaction with a nonce gap stays queued."""

    def __init__(self, url: str, seed: int = 7):
        self.url = url
        self.rng = random.Random(seed)
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.sent = 0
        self.errors = 0

    def start(self) -> None:
        accounts = rpc(self.url, "eth_accounts")
        self.senders, self.gapper = accounts[:8], accounts[9]
        nonce = int(rpc(self.url, "eth_getTransactionCount", self.gapper, "pending"), 16)
        rpc(self.url, "eth_sendTransaction", {"from": self.gapper, "to": accounts[0], "value": "0x1",
                                              "nonce": hex(nonce + 5)})
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self.stopped.wait(0.25):
            # A wave of about a minute: from a trickle of transfers to blocks over half full.
            phase = ((time.monotonic() - t0) % 60) / 60
            heavy = phase > 0.6
            for _ in range(self.rng.randint(0, 3 if not heavy else 8)):
                frm = self.rng.choice(self.senders)
                tx = {"from": frm, "to": self.rng.choice(self.senders), "value": hex(self.rng.randint(1, 10**15))}
                if heavy:  # calldata costs 16 gas per non-zero byte: ~600k gas each
                    tx["data"] = "0x" + "ab" * 36_000
                try:
                    rpc(self.url, "eth_sendTransaction", tx)
                    self.sent += 1
                except Exception:
                    self.errors += 1

    def stop(self) -> None:
        self.stopped.set()
        if self.thread:
            self.thread.join(timeout=5)
