"""A real post-merge devnet: N participants, each geth + Prysm beacon node + Prysm validator client
holding its share of the validators, peered on both layers over loopback, with `ethwatch
execution` and `ethwatch consensus` beside every node and `ethwatch network` over all of them.
Used by `scripts/devnet.sh` (the README's main command) and by the truth tests in tests/realnet/.

Chain: Prague/Electra from genesis, 4 s slots, 6-slot epochs (finality within a couple of minutes),
64 interop validators split evenly. Every listener binds 127.0.0.1 (geth's devp2p listener too,
through its TOML config). The clients are built by `scripts/tools.sh geth prysm`.

Over 600 lines on purpose: the whole network's life (genesis, the three processes of each pair,
peering, the exporters, faults and their undoing) in one class, as the devnet and the truth tests
drive it; its parts share the pairs' ports and state.

    stack = Stack(tmp)
    net = RealNet.start(stack, tmp, pairs=2)      # nodes peered, exporters up, first block seen
    net.start_monitoring(rules_dir, overlay)       # Prometheus (+ Alertmanager -> webhook)
    Traffic(net.pairs[0].el_url).start()           # signed EIP-1559 transfers
    net.split(); net.heal()                        # needs a private network namespace (iptables)
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field

from .devnet import build_ethwatch, child_env, die_with_parent, tool
from .stack import HOST, Prometheus, Stack, free_port, http_get, metric_value, rpc, wait_until

NAMESPACE = "devnet"
CHAIN_ID = 32382
SLOT_SECONDS = 4
SLOTS_PER_EPOCH = 6
FEE_RECIPIENT = "0x8943545177806ED17B9F23F0a21ee5948eCaa776"
DEPOSIT_CONTRACT = "0x4242424242424242424242424242424242424242"
# A public test key (the one in ../shared/realnet), prefunded in this devnet's
# genesis only. Never use it anywhere else.
TEST_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcaf784d7bf4f2ff80"
TEST_ADDRESS = "0x500d75F1329cf98352c32Cf238c2192ca78faFFE"
SECOND_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # the second one
SLOW = 240  # seconds: bound of any single wait (a cold start on a busy 2-core machine)


def chain_config(validators: int) -> str:
    """The consensus chain config: every fork through Electra at epoch 0, Fulu never."""
    forks = ["ALTAIR", "BELLATRIX", "CAPELLA", "DENEB", "ELECTRA"]
    lines = ["CONFIG_NAME: ethwatch-devnet", "PRESET_BASE: mainnet",
             "GENESIS_FORK_VERSION: 0x20000089"]
    for i, f in enumerate(forks):
        lines += [f"{f}_FORK_EPOCH: 0", f"{f}_FORK_VERSION: 0x{0x20000090 + i:08x}"]
    lines += ["FULU_FORK_VERSION: 0x20000095", "FULU_FORK_EPOCH: 18446744073709551615",
              "TERMINAL_TOTAL_DIFFICULTY: 0", f"SECONDS_PER_SLOT: {SLOT_SECONDS}",
              f"SLOTS_PER_EPOCH: {SLOTS_PER_EPOCH}", f"SECONDS_PER_ETH1_BLOCK: {SLOT_SECONDS}",
              f"MIN_GENESIS_ACTIVE_VALIDATOR_COUNT: {validators}", f"DEPOSIT_CHAIN_ID: {CHAIN_ID}",
              f"DEPOSIT_NETWORK_ID: {CHAIN_ID}", f"DEPOSIT_CONTRACT_ADDRESS: {DEPOSIT_CONTRACT}"]
    return "\n".join(lines) + "\n"


def el_genesis_template(dev_genesis: dict) -> dict:
    """Every fork at 0 and TTD 0; the system contracts (EIP-4788, 2935, 7002, 7251) and the blob
    schedule copied from geth's own dev genesis; the test key prefunded; a stub at the deposit
    contract address that answers get_deposit_count() with zero (keeps Prysm's deposit poller
    quiet; deposits do not work on this devnet)."""
    alloc = {a: v for a, v in dev_genesis["alloc"].items() if v.get("code")}
    alloc[TEST_ADDRESS.lower().removeprefix("0x")] = {"balance": hex(10**6 * 10**18)}
    alloc[DEPOSIT_CONTRACT.lower().removeprefix("0x")] = {
        "balance": "0x0", "code": "0x602060005260086020526060" + "6000f3"}
    config = {"chainId": CHAIN_ID, "terminalTotalDifficulty": 0,
              "depositContractAddress": DEPOSIT_CONTRACT,
              "blobSchedule": dev_genesis["config"]["blobSchedule"]}
    for k in ("homestead", "eip150", "eip155", "eip158", "byzantium", "constantinople",
              "petersburg", "istanbul", "muirGlacier", "berlin", "london", "arrowGlacier",
              "grayGlacier"):
        config[f"{k}Block"] = 0
    for k in ("shanghai", "cancun", "prague"):
        config[f"{k}Time"] = 0
    zero32 = "0x" + "00" * 32
    return {"config": config, "nonce": "0x0", "timestamp": "0x0", "extraData": "0x",
            "gasLimit": "0x3938700", "difficulty": "0x0", "mixHash": zero32,
            "coinbase": "0x" + "00" * 20, "number": "0x0", "gasUsed": "0x0", "parentHash": zero32,
            "baseFeePerGas": "0x3b9aca00", "alloc": alloc}


def get_json(url: str, timeout: float = 3.0):
    return json.loads(http_get(url, timeout=timeout))


def send_json(url: str, method: str, body=None, timeout: float = 3.0):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


@dataclass
class Pair:
    """One participant: geth, a Prysm beacon node, a Prysm validator client, their exporters."""
    index: int  # 1-based, as Kurtosis numbers participants
    dir: pathlib.Path
    ports: dict
    validators: range
    children: dict = field(default_factory=dict)

    @property
    def el_name(self) -> str:
        return f"el-{self.index}-geth-prysm"

    @property
    def cl_name(self) -> str:
        return f"cl-{self.index}-prysm-geth"

    @property
    def el_url(self) -> str:
        return f"http://{HOST}:{self.ports['el_http']}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.ports['el_ws']}"

    @property
    def beacon_url(self) -> str:
        return f"http://{HOST}:{self.ports['cl_http']}"

    @property
    def el_metrics(self) -> str:
        return f"http://{HOST}:{self.ports['el_exp']}/metrics"

    @property
    def cl_metrics(self) -> str:
        return f"http://{HOST}:{self.ports['cl_exp']}/metrics"

    def beacon(self, path: str):
        return get_json(self.beacon_url + path)

    def el(self, method: str, *params):
        return rpc(self.el_url, method, *params)

    def p2p_ports(self) -> list[int]:
        return [self.ports["el_p2p"], self.ports["cl_tcp"]]

    def cl_multiaddr(self) -> str | None:
        """Prysm's own multiaddr, from its "Node started p2p server" log line: under
        --no-discovery /eth/v1/node/identity answers 500 (no ENR)."""
        log = self.children["beacon"].log.read_text(errors="replace")
        found = re.findall(r'multiAddr="(/ip4/127\.0\.0\.1/tcp/\d+/p2p/\w+)"', log)
        return found[-1] if found else None


class RealNet:
    def __init__(self, stack: Stack, tmp: pathlib.Path, ethwatch: pathlib.Path | None,
                 pairs: list[Pair], genesis_time: int):
        self.stack = stack
        self.tmp = tmp
        self.ethwatch = ethwatch
        self.pairs = pairs
        self.genesis_time = genesis_time
        self.targets: list = []  # (job, port, labels) for Prometheus
        self.split_active = False
        self.bin = {"geth": tool("ETHWATCH_GETH", "geth"),
                    "beacon": tool("ETHWATCH_PRYSM_BEACON", "beacon-chain"),
                    "validator": tool("ETHWATCH_PRYSM_VALIDATOR", "validator")}
        self.net_port: int | None = None
        self.otel = False  # pass this process's OTEL_* variables to the exporters

    # -- start -----------------------------------------------------------------------------------
    @classmethod
    def start(cls, stack: Stack, tmp: pathlib.Path, ethwatch: pathlib.Path | None = None,
              pairs: int = 2, validators: int = 64, exporters: bool = True,
              genesis_delay: int | None = None, wait_finality: bool = False,
              otel: bool = False) -> "RealNet":
        """Writes the genesis, starts every node, peers them, starts the exporters (unless
        `exporters` is false) and returns once execution blocks advance on every node."""
        if exporters and ethwatch is None:
            ethwatch = build_ethwatch()
        geth = tool("ETHWATCH_GETH", "geth")
        prysmctl = tool("ETHWATCH_PRYSMCTL", "prysmctl")
        tmp.mkdir(parents=True, exist_ok=True)
        gdir = tmp / "genesis"
        gdir.mkdir(exist_ok=True)
        (gdir / "config.yml").write_text(chain_config(validators))
        dev = subprocess.run([geth, "--dev", "dumpgenesis"], capture_output=True, text=True,
                             env=child_env(), check=True).stdout
        (gdir / "template.json").write_text(json.dumps(el_genesis_template(json.loads(dev))))
        # Genesis far enough ahead that every node is up and peered at slot 0.
        delay = genesis_delay if genesis_delay is not None else 20 + 5 * pairs
        r = subprocess.run([
            prysmctl, "testnet", "generate-genesis", "--fork", "electra",
            "--num-validators", str(validators), "--genesis-time-delay", str(delay),
            "--chain-config-file", str(gdir / "config.yml"),
            "--geth-genesis-json-in", str(gdir / "template.json"),
            "--geth-genesis-json-out", str(gdir / "genesis.json"),
            "--output-ssz", str(gdir / "genesis.ssz")], capture_output=True, text=True,
            env=child_env())
        assert r.returncode == 0, f"prysmctl generate-genesis failed:\n{r.stdout}\n{r.stderr}"
        g = json.loads((gdir / "genesis.json").read_text())
        # prysmctl writes the fork times as the genesis time; 0 gives the same genesis header.
        for k in ("shanghaiTime", "cancunTime", "pragueTime"):
            g["config"][k] = 0
        (gdir / "genesis.json").write_text(json.dumps(g))
        ts = g["timestamp"]
        genesis_time = int(ts, 16) if isinstance(ts, str) else int(ts)

        per = validators // pairs
        plist = []
        for i in range(1, pairs + 1):
            d = tmp / f"pair-{i}"
            (d / "el").mkdir(parents=True, exist_ok=True)
            (d / "volume").mkdir(exist_ok=True)
            (d / "jwt.hex").write_text(secrets.token_hex(32))
            ports = {k: free_port() for k in ("el_http", "el_ws", "el_auth", "el_p2p", "cl_http",
                                               "cl_grpc", "cl_tcp", "cl_udp", "cl_quic", "cl_mon",
                                               "vc_mon", "el_exp", "cl_exp")}
            start = (i - 1) * per
            count = per if i < pairs else validators - start
            plist.append(Pair(i, d, ports, range(start, start + count)))
            r = subprocess.run([geth, "init", "--datadir", str(d / "el"), str(gdir / "genesis.json")],
                               capture_output=True, text=True, env=child_env())
            assert r.returncode == 0, f"geth init failed:\n{r.stderr[-3000:]}"

        net = cls(stack, tmp, ethwatch, plist, genesis_time)
        net.otel = otel
        for p in plist:
            net._start_geth(p)
        for p in plist:
            net._start_beacon(p)
        for p in plist:
            net._start_validator(p)
        net.peer_all()
        if exporters:
            net._start_exporters()
        wait_until("execution blocks on every node",
                   lambda: all(int(p.el("eth_blockNumber"), 16) >= 2 for p in plist),
                   delay + SLOW, stack, interval=1)
        if wait_finality:
            net.wait_finality()
        return net

    def _pre(self):
        return dict(env=child_env(), preexec_fn=die_with_parent)

    def _start_geth(self, p: Pair) -> None:
        # devp2p on loopback only: --port would bind every interface, the TOML can say where.
        (p.dir / "geth.toml").write_text(
            f'[Node.P2P]\nListenAddr = "{HOST}:{p.ports["el_p2p"]}"\nNoDiscovery = true\n'
            f'MaxPeers = 8\n')
        p.children["geth"] = self.stack.start(f"geth-{p.index}", [
            self.bin["geth"], "--config", str(p.dir / "geth.toml"), "--datadir", str(p.dir / "el"),
            "--networkid", str(CHAIN_ID), "--syncmode", "full",
            "--http", "--http.addr", HOST, "--http.port", str(p.ports["el_http"]),
            "--http.api", "eth,net,web3,txpool,admin",
            "--ws", "--ws.addr", HOST, "--ws.port", str(p.ports["el_ws"]), "--ws.api", "eth,net,web3",
            "--authrpc.addr", HOST, "--authrpc.port", str(p.ports["el_auth"]),
            "--authrpc.vhosts", "localhost,127.0.0.1", "--authrpc.jwtsecret", str(p.dir / "jwt.hex"),
            "--nodiscover", "--nat", "none", "--netrestrict", "127.0.0.0/8", "--ipcdisable",
            "--verbosity", "3"], **self._pre())

    def _start_beacon(self, p: Pair, extra: list[str] | None = None) -> None:
        g = self.tmp / "genesis"
        (p.dir / "cl").mkdir(exist_ok=True)
        p.children["beacon"] = self.stack.start(f"beacon-{p.index}", [
            self.bin["beacon"], "--datadir", str(p.dir / "cl"), "--accept-terms-of-use",
            "--genesis-state", str(g / "genesis.ssz"), "--chain-config-file", str(g / "config.yml"),
            "--chain-id", str(CHAIN_ID), "--contract-deployment-block", "0",
            "--interop-eth1data-votes", "--execution-endpoint", f"http://{HOST}:{p.ports['el_auth']}",
            "--jwt-secret", str(p.dir / "jwt.hex"), "--min-sync-peers", "0",
            "--minimum-peers-per-subnet", "0", "--no-discovery", "--bootstrap-node=",
            "--p2p-static-id", "--p2p-local-ip", HOST, "--p2p-host-ip", HOST,
            "--p2p-tcp-port", str(p.ports["cl_tcp"]), "--p2p-udp-port", str(p.ports["cl_udp"]),
            "--p2p-quic-port", str(p.ports["cl_quic"]), "--disable-quic",
            "--rpc-host", HOST, "--rpc-port", str(p.ports["cl_grpc"]),
            "--http-host", HOST, "--http-port", str(p.ports["cl_http"]),
            "--monitoring-host", HOST, "--monitoring-port", str(p.ports["cl_mon"]),
            "--suggested-fee-recipient", FEE_RECIPIENT, "--verbosity", "info", *(extra or [])],
            **self._pre())

    def _start_validator(self, p: Pair) -> None:
        g = self.tmp / "genesis"
        p.children["validator"] = self.stack.start(f"validator-{p.index}", [
            self.bin["validator"], "--datadir", str(p.dir / "vc"), "--accept-terms-of-use",
            "--force-clear-db", "--beacon-rpc-provider", f"{HOST}:{p.ports['cl_grpc']}",
            "--chain-config-file", str(g / "config.yml"),
            "--interop-num-validators", str(len(p.validators)),
            "--interop-start-index", str(p.validators.start),
            "--suggested-fee-recipient", FEE_RECIPIENT, "--monitoring-host", HOST,
            "--monitoring-port", str(p.ports["vc_mon"]), "--verbosity", "info"], **self._pre())

    def _exporter_pre(self):
        """The exporters' environment: the children's, plus the standard OTEL_* variables of
        this process when `otel` was asked for (traces to a local Jaeger, scripts/devnet.sh)."""
        env = child_env()
        if self.otel:
            env.update({k: v for k, v in os.environ.items() if k.startswith("OTEL_")})
        return dict(env=env, preexec_fn=die_with_parent)

    def _start_exporters(self) -> None:
        e = str(self.ethwatch)
        for p in self.pairs:
            self.stack.start(f"ethwatch-execution-{p.index}", [
                e, "execution", "--rpc-url", p.el_url, "--ws-url", p.ws_url,
                "--web.listen-address", f"{HOST}:{p.ports['el_exp']}",
                "--volume.path", str(p.dir / "volume")], **self._exporter_pre())
            self.targets.append(("ethwatch-execution", p.ports["el_exp"], {
                "namespace": NAMESPACE, "pod": f"{p.el_name}-0", "container": "ethwatch",
                "eth_enclave_participant": str(p.index), "eth_enclave_client": "geth"}))
            self.stack.start(f"ethwatch-consensus-{p.index}", [
                e, "consensus", "--beacon-url", p.beacon_url,
                "--validators.id", ",".join(str(v) for v in p.validators),
                "--web.listen-address", f"{HOST}:{p.ports['cl_exp']}",
                "--volume.path", str(p.dir / "volume")], **self._exporter_pre())
            self.targets.append(("ethwatch-consensus", p.ports["cl_exp"], {
                "namespace": NAMESPACE, "pod": f"{p.cl_name}-0", "container": "ethwatch",
                "eth_enclave_participant": str(p.index), "eth_enclave_client": "prysm"}))
        self.net_port = free_port()
        cmd = [e, "network", "--web.listen-address", f"{HOST}:{self.net_port}", "--poll-interval", "2s"]
        for p in self.pairs:
            cmd += ["--execution-target", f"{p.el_name}={p.el_url}",
                    "--beacon-target", f"{p.cl_name}={p.beacon_url}",
                    "--pair", f"{p.el_name}={p.cl_name}"]
        self.stack.start("ethwatch-network", cmd, **self._exporter_pre())
        self.targets.append(("ethwatch-network", self.net_port, {
            "namespace": NAMESPACE, "pod": "ethwatch-network-0", "container": "ethwatch"}))

    # -- peering ---------------------------------------------------------------------------------
    def enode(self, p: Pair) -> str:
        e = p.el("admin_nodeInfo")["enode"]
        return re.sub(r"@[^:]+:", f"@{HOST}:", e).split("?")[0]

    def peer_all(self) -> None:
        """geth: admin_addTrustedPeer + admin_addPeer both ways (trusted peers are redialled).
        Prysm: the other beacon nodes as trusted peers through Prysm's own API, both ways."""
        for p in self.pairs:
            wait_until(f"geth {p.index} answering", lambda p=p: p.el("admin_nodeInfo"), SLOW,
                       self.stack, interval=0.5)
        for a in self.pairs:
            for b in self.pairs:
                if a is not b:
                    a.el("admin_addTrustedPeer", self.enode(b))
                    a.el("admin_addPeer", self.enode(b))
        addrs = {}
        for p in self.pairs:
            addrs[p.index] = wait_until(f"beacon node {p.index}'s p2p address", p.cl_multiaddr,
                                        SLOW, self.stack, interval=0.5)
        for a in self.pairs:
            wait_until(f"beacon node {a.index}'s API", lambda a=a: a.beacon("/eth/v1/node/version"),
                       SLOW, self.stack, interval=0.5)
            for b in self.pairs:
                if a is not b:
                    send_json(a.beacon_url + "/prysm/node/trusted_peers", "POST",
                              {"addr": addrs[b.index]})

    def unpeer_all(self) -> None:
        for a in self.pairs:
            for b in self.pairs:
                if a is not b:
                    for m in ("admin_removeTrustedPeer", "admin_removePeer"):
                        try:
                            a.el(m, self.enode(b))
                        except Exception:
                            pass
                    pid = (b.cl_multiaddr() or "").rsplit("/", 1)[-1]
                    try:
                        send_json(f"{a.beacon_url}/prysm/node/trusted_peers/{pid}", "DELETE")
                    except Exception:
                        pass

    def _iptables(self, op: str) -> None:
        ipt = tool("ETHWATCH_IPTABLES", "iptables")
        for p in self.pairs:
            for port in p.p2p_ports():
                for d in ("--dport", "--sport"):
                    subprocess.run([ipt, op, "OUTPUT", "-o", "lo", "-p", "tcp", d, str(port),
                                    "-j", "REJECT", "--reject-with", "tcp-reset"], check=True)

    def split(self) -> None:
        """Cuts every pair off from every other on both layers. Only inside a private network
        namespace (tests/realnet runs under `unshare -n`): the rules are that namespace's."""
        assert in_private_netns(), "split() needs a private network namespace"
        self._iptables("-A")
        self.split_active = True
        self.unpeer_all()

    def heal(self) -> None:
        if self.split_active:
            self._iptables("-D")
            self.split_active = False
        self.peer_all()

    # -- validators ------------------------------------------------------------------------------
    def stop_validator(self, p: Pair) -> None:
        p.children["validator"].stop()
        p.children["validator"].expected_exit = True

    def start_validator(self, p: Pair) -> None:
        self._start_validator(p)

    # -- queries ---------------------------------------------------------------------------------
    def slot_now(self) -> int:
        return max(0, int((time.time() - self.genesis_time) // SLOT_SECONDS))

    def finalized_epoch(self, p: Pair) -> int:
        d = p.beacon("/eth/v1/beacon/states/head/finality_checkpoints")["data"]
        return int(d["finalized"]["epoch"])

    def wait_finality(self, epoch: int = 1) -> None:
        wait_until(f"finalized epoch {epoch} on every beacon node",
                   lambda: all(self.finalized_epoch(p) >= epoch for p in self.pairs),
                   SLOW + 4 * SLOTS_PER_EPOCH * SLOT_SECONDS, self.stack, interval=2)

    # -- monitoring ------------------------------------------------------------------------------
    def scrape_configs(self) -> str:
        """One job per exporter kind, one static target per exporter with the labels the
        chart's ServiceMonitors give."""
        jobs: dict[str, list] = {}
        for job, port, labels in self.targets:
            jobs.setdefault(job, []).append((port, labels))
        out = ""
        for job, targets in jobs.items():
            out += f"  - job_name: {job}\n    static_configs:\n"
            for port, labels in targets:
                lab = ", ".join(f"{k}: '{v}'" for k, v in labels.items())
                out += f"      - targets: ['{HOST}:{port}']\n        labels: {{{lab}}}\n"
        return out

    def start_monitoring(self, rules_dir: pathlib.Path | None = None,
                         webhook_url: str | None = None, scrape: str = "2s") -> dict:
        """Prometheus over every exporter with the project's rules, and Alertmanager (sending to
        `webhook_url` if given). Returns their URLs."""
        prometheus = tool("ETHWATCH_PROMETHEUS", "prometheus")
        alertmanager = tool("ETHWATCH_ALERTMANAGER", "prometheus-alertmanager")
        am_port, prom_port = free_port(), free_port()
        receiver = (f"    webhook_configs:\n      - url: '{webhook_url}'\n        send_resolved: true\n"
                    if webhook_url else "")
        (self.tmp / "alertmanager.yml").write_text(
            "route:\n  receiver: default\n  group_by: [alertname]\n  group_wait: 0s\n"
            f"  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: default\n{receiver}")
        self.stack.start("alertmanager", [
            alertmanager, f"--config.file={self.tmp / 'alertmanager.yml'}",
            f"--storage.path={self.tmp / 'am'}", f"--web.listen-address={HOST}:{am_port}",
            "--cluster.listen-address="], **self._pre())
        rules = f"rule_files: ['{rules_dir}/*.yaml']\n" if rules_dir else ""
        cfg = self.tmp / "prometheus.yml"
        cfg.write_text(
            f"global:\n  scrape_interval: {scrape}\n  scrape_timeout: {scrape}\n"
            f"  evaluation_interval: {scrape}\n{rules}"
            f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{HOST}:{am_port}']\n"
            f"scrape_configs:\n{self.scrape_configs()}")
        self.stack.start("prometheus", [
            prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={self.tmp / 'tsdb'}",
            f"--web.listen-address={HOST}:{prom_port}", "--rules.alert.resend-delay=1s",
            "--enable-feature=exemplar-storage"], **self._pre())
        prom = Prometheus(prom_port)
        wait_until("Prometheus ready", lambda: http_get(f"{prom.base}/-/ready"), 60, self.stack)
        wait_until("Alertmanager ready", lambda: http_get(f"http://{HOST}:{am_port}/-/ready"), 60,
                   self.stack)
        n = len(self.targets)
        wait_until("Prometheus scraping every exporter",
                   lambda: prom.value("min(up)") == 1 and prom.value("count(up)") == n, 60, self.stack)
        return {"prometheus": prom, "prometheus_url": prom.base,
                "alertmanager_url": f"http://{HOST}:{am_port}"}

    def metric(self, url: str, name: str, labels: str = "") -> float | None:
        return metric_value(http_get(url).decode(), name, labels)


def in_private_netns() -> bool:
    """True when loopback is this process's only network interface (a namespace of our own,
    as `unshare --net` makes): nothing sent from here can leave the machine."""
    try:
        lines = pathlib.Path("/proc/self/net/dev").read_text().splitlines()[2:]
    except OSError:
        return False
    return [ln.split(":", 1)[0].strip() for ln in lines] == ["lo"]


class Traffic:
    """Signed EIP-1559 transfers from the prefunded test key, in bursts (some blocks carry
    dozens of transactions, some none), so gas, transaction counts and the pool move."""

    def __init__(self, url: str, burst: int = 20, every: float = 6.0):
        from eth_account import Account  # in the project's venv (scripts/tools.sh)
        self.url = url
        self.acct = Account.from_key(TEST_KEY)
        assert self.acct.address == TEST_ADDRESS
        self.burst = burst
        self.every = every
        self.sent = 0
        self.errors = 0
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.nonce = int(rpc(url, "eth_getTransactionCount", TEST_ADDRESS, "pending"), 16)

    def send(self, n: int, gap: bool = False) -> list[str]:
        """n transfers now; with `gap`, one more transaction with a nonce gap that stays queued."""
        hashes = []
        for _ in range(n):
            hashes.append(self._send(self.nonce))
            self.nonce += 1
        if gap:
            hashes.append(self._send(self.nonce + 3))
        return hashes

    def _send(self, nonce: int) -> str:
        tx = dict(type=2, chainId=CHAIN_ID, nonce=nonce,
                  to="0x70997970C51812dc3A010C7d01b50e0d17dc79C8", value=10**12, gas=21000,
                  maxFeePerGas=50 * 10**9, maxPriorityFeePerGas=10**9)
        raw = self.acct.sign_transaction(tx).raw_transaction.hex()
        try:
            h = rpc(self.url, "eth_sendRawTransaction", "0x" + raw.removeprefix("0x"))
            self.sent += 1
            return h
        except Exception:
            self.errors += 1
            self.nonce = int(rpc(self.url, "eth_getTransactionCount", TEST_ADDRESS, "pending"), 16)
            return ""

    def fund_queued(self) -> str:
        """Funds a second test account and sends from it one transaction with a nonce gap: it
        stays in the pool's queue for good (txpool_status queued >= 1)."""
        from eth_account import Account
        other = Account.from_key(SECOND_KEY)
        tx = dict(type=2, chainId=CHAIN_ID, nonce=self.nonce, to=other.address, value=10**18,
                  gas=21000, maxFeePerGas=50 * 10**9, maxPriorityFeePerGas=10**9)
        rpc(self.url, "eth_sendRawTransaction",
            "0x" + self.acct.sign_transaction(tx).raw_transaction.hex().removeprefix("0x"))
        self.nonce += 1
        # geth admits a queued transaction only from an account that can pay for it.
        deadline = time.monotonic() + 20 * SLOT_SECONDS
        while int(rpc(self.url, "eth_getBalance", other.address, "latest"), 16) == 0:
            assert time.monotonic() < deadline, "the funding transaction was never included"
            time.sleep(0.5)
        gap = dict(type=2, chainId=CHAIN_ID, nonce=5, to=TEST_ADDRESS, value=1, gas=21000,
                   maxFeePerGas=50 * 10**9, maxPriorityFeePerGas=10**9)
        return rpc(self.url, "eth_sendRawTransaction",
                   "0x" + other.sign_transaction(gap).raw_transaction.hex().removeprefix("0x"))

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                self.send(self.burst)
            except Exception:
                self.errors += 1

    def stop(self) -> None:
        self.stopped.set()
        if self.thread:
            self.thread.join(timeout=10)


def main() -> None:
    """`python3 -m tests.e2e.realnet`: the real devnet for scripts/devnet.sh; runs until Ctrl-C."""
    import argparse
    import signal
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--dir", required=True, type=pathlib.Path)
    ap.add_argument("--ethwatch", type=pathlib.Path)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--validators", type=int, default=64)
    ap.add_argument("--rules", type=pathlib.Path,
                    help="a rules directory; default: alerts/ rendered with realnet-overlay.yaml")
    ap.add_argument("--no-traffic", action="store_true")
    ap.add_argument("--otel", action="store_true",
                    help="give the exporters this process's OTEL_* variables (traces)")
    ap.add_argument("--no-exporters", action="store_true",
                    help="only the nodes: no ethwatch, no Prometheus or Alertmanager (for recording "
                    "fixtures and for scripts/bench-compare.sh BENCH_NODES=real)")
    ap.add_argument("--endpoints-json", type=pathlib.Path,
                    help="also write every participant's URLs and ports to this JSON file (for scripts)")
    args = ap.parse_args()
    stack = Stack(args.dir)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    traffic = None
    try:
        t0 = time.monotonic()
        print(f"devnet: starting {args.pairs} geth + Prysm pairs ({args.validators} validators) "
              f"in {args.dir}", flush=True)
        net = RealNet.start(stack, args.dir, args.ethwatch, pairs=args.pairs,
                            validators=args.validators, exporters=not args.no_exporters,
                            otel=args.otel)
        rules = args.rules
        if args.no_exporters:
            mon = None
        elif rules is None:
            rules = args.dir / "rules"
            root = pathlib.Path(__file__).resolve().parents[2]
            subprocess.run([sys.executable, str(root / "alerts" / "generate.py"), "--overlay",
                            str(pathlib.Path(__file__).with_name("realnet-overlay.yaml")),
                            "--out", str(rules)], check=True)
        if not args.no_exporters:
            mon = net.start_monitoring(rules)
        if not args.no_traffic:
            traffic = Traffic(net.pairs[0].el_url)
            traffic.start()
        lines = [f"devnet is up in {time.monotonic() - t0:.0f} s (logs in {stack.logdir})"]
        for p in net.pairs:
            lines += [f"  participant {p.index}: geth {p.el_url} (ws {p.ws_url})",
                      f"                 prysm beacon node {p.beacon_url}"]
            if mon:
                lines += [f"                 execution metrics {p.el_metrics}",
                          f"                 consensus metrics {p.cl_metrics}"]
        if mon:
            if args.otel and os.environ.get("JAEGER_UI"):
                lines += [f"  traces (Jaeger):  {os.environ['JAEGER_UI']}  (/api/traces/TRACE_ID)"]
            lines += [f"  network watcher:  http://{HOST}:{net.net_port}/  (metrics: /metrics)",
                      f"  prometheus:       {mon['prometheus_url']}  (try: ALERTS, eth_el_head_block_number)",
                      f"  alertmanager:     {mon['alertmanager_url']}"]
        lines += [f"  test key (devnet only): {TEST_ADDRESS}",
                  "Ctrl-C stops everything."]
        if args.endpoints_json:
            tmp_json = args.endpoints_json.with_suffix(".tmp")
            tmp_json.write_text(json.dumps({
                "genesis_time": net.genesis_time, "slot_seconds": SLOT_SECONDS,
                "slots_per_epoch": SLOTS_PER_EPOCH, "logs": str(stack.logdir),
                "pairs": [{"index": p.index, "el_url": p.el_url, "ws_url": p.ws_url,
                           "beacon_url": p.beacon_url, "validators": [p.validators.start,
                                                                      p.validators.stop],
                           "ports": p.ports} for p in net.pairs]}, indent=1))
            tmp_json.replace(args.endpoints_json)  # appears whole: a script may poll for it
        (args.dir / "endpoints.txt").write_text("\n".join(lines) + "\n")
        print("\n".join(lines), flush=True)
        while True:
            for c in stack.children:
                if not c.alive() and not getattr(c, "expected_exit", False):
                    raise SystemExit(f"devnet: {c.name} exited; its log:\n{c.tail()}")
            time.sleep(2)
    except KeyboardInterrupt:
        pass
    finally:
        if traffic:
            traffic.stop()
        print("devnet: stopping", flush=True)
        stack.stop_all()


if __name__ == "__main__":
    main()
