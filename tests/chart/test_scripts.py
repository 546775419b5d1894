"""The node pods' shell, run for real: the bootnode init containers against a local server that
answers like Reth's admin_nodeInfo and Lighthouse's /eth/v1/node/identity (once with an error
first, so the retry path runs), and the client containers' start lines with stub `reth` and
`lighthouse` binaries that print the argv they got (ordinal, JWT file, node key, engine endpoint,
bootnodes, extra params, quoting). The harness is nodeshell.py."""

import json
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import NAMESPACE, RELEASE, expected_participants, one, render
from nodeshell import DOWN, ENODE_ID, ENR, NOWHERE, PEER, UP, NodeServer, bootnode_init, start_argv

FULL = f"{RELEASE}-eth-enclave"


@pytest.fixture
def node():
    """A node that fails its first request (the retry path)."""
    server = NodeServer(failures=1)
    yield server.port
    server.close()


@pytest.fixture
def running():
    """A node that answers at once (the others, already running when node 0 restarts)."""
    server = NodeServer()
    yield server.port
    server.close()


NET = "network-params-values"
CLIENT_PORT = {"el": 8545, "cl": 5052}  # the port the bootnode init asks (admin_nodeInfo, identity)
# The line of a node that joins through node 0 (10.1.2.3) with UP running as its other node.
JOINED = {
    "el": f"--bootnodes=enode://{ENODE_ID}@10.1.2.3:30303 --trusted-peers=enode://{ENODE_ID}@{UP}:30303",
    "cl": f"--boot-nodes={ENR} --trusted-peers={PEER} --libp2p-addresses=/dns4/{UP}/tcp/9000/p2p/{PEER}",
}


def sts_of(layer, scenario=NET, participant=0):
    return one(render(scenario), "StatefulSet", expected_participants(scenario)[participant][layer])


def init(layer, ordinal, tmp_path, port, scenario=NET, **kw):
    """The bootnode init of pod `ordinal` of the first participant's `layer`: its line and log."""
    return bootnode_init(sts_of(layer, scenario), ordinal, tmp_path, port, layer, CLIENT_PORT[layer], **kw)


def env_of(sts, scenario=NET):
    """The bootnode init container's environment, values from ConfigMaps (the peers list) resolved
    against the same render."""
    init = next(c for c in sts["spec"]["template"]["spec"]["initContainers"] if c["name"] == "bootnode")
    env = {}
    for e in init["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["configMapKeyRef"]
            env[e["name"]] = one(render(scenario), "ConfigMap", ref["name"])["data"][ref["key"]]
    return env


def test_execution_bootnode_discovery(node, tmp_path):
    p = expected_participants(NET)[0]
    env = env_of(sts_of("el"))
    assert env["BOOTNODE"] == f"{p['el']}-0.{p['el']}.{NAMESPACE}.svc.cluster.local"
    assert env["PEERS"].split() == [f"{p['el']}-{o}.{p['el']}.{NAMESPACE}.svc.cluster.local" for o in range(2)]
    line, log = init("el", 1, tmp_path, node)
    assert "waiting for the bootnode" in log  # the 503 was retried
    assert line == JOINED["el"]


def test_execution_node_0_of_a_new_network_runs_without_discovery(node, tmp_path):
    """Nobody to join: without --bootnodes Reth falls back to mainnet's bootnodes on a custom chain,
    so node 0 of a new network runs with discovery off (the others dial it as a trusted peer)."""
    line, log = init("el", 0, tmp_path, node, bootnode=NOWHERE, peers=(DOWN,))
    assert line == "--disable-discovery" and "discovery off" in log


@pytest.mark.parametrize("layer, peers", [("el", (DOWN, UP)), ("cl", (UP, DOWN))])
def test_node_0_restarting_joins_the_running_nodes(running, tmp_path, layer, peers):
    """After a restart node 0 finds the other nodes running and joins them (IP and DNS forms).
    Lighthouse dials --libp2p-addresses only at start: a restarted node 0 gets the running nodes."""
    line, _ = init(layer, 0, tmp_path, running, bootnode=NOWHERE, peers=peers)
    assert line == JOINED[layer]


def test_beacon_bootnode_discovery(node, tmp_path):
    assert init("cl", 0, tmp_path, node, bootnode=NOWHERE)[0] == ""
    line, log = init("cl", 1, tmp_path, node)
    assert "waiting for the bootnode" in log
    assert line == JOINED["cl"]


def test_second_participant_joins_through_the_network_node_0(node, tmp_path):
    """Ordinal 0 of a later participant is not a bootnode: it is node `nodeOffset` of the network."""
    sts = sts_of("el", "multi-participant-values", participant=1)
    first = expected_participants("multi-participant-values")[0]
    assert env_of(sts)["BOOTNODE"].startswith(f"{first['el']}-0.")
    line, _ = bootnode_init(sts, 0, tmp_path, node, "el", CLIENT_PORT["el"])
    assert line.startswith("--bootnodes=enode://")


def test_client_start_lines(tmp_path):
    scenario = "network-params-values"
    docs = render(scenario)
    p = expected_participants(scenario)[0]
    el, _ = start_argv(one(docs, "StatefulSet", p["el"]), "reth", 1, tmp_path,
                       {"el": "--bootnodes=enode://x@1.2.3.4:30303 --trusted-peers=enode://x@h:30303"}, "reth")
    assert el[0] == "node"
    assert "--authrpc.jwtsecret=/jwt/jwt.hex" in el and "--chain=/genesis/genesis.json" in el
    assert "--p2p-secret-key=/node-key/el-1-1" in el
    assert "--nat=extip:10.9.8.7" in el and "--http.corsdomain=*" in el
    assert "--bootnodes=enode://x@1.2.3.4:30303" in el and "--trusted-peers=enode://x@h:30303" in el
    assert el[-1] == "--rpc.max-connections=500"  # el_extra_params, last
    cl, root = start_argv(one(docs, "StatefulSet", p["cl"]), "lighthouse", 1, tmp_path,
                          {"cl": f"--boot-nodes={ENR} --trusted-peers={PEER}"}, "lighthouse")
    assert cl[0] == "beacon_node"
    assert "--jwt-secrets=/jwt/jwt.hex" in cl and "--enr-address=10.9.8.7" in cl
    assert f"--execution-endpoints=http://{p['el']}-1.{p['el']}.{NAMESPACE}.svc.cluster.local:8551" in cl
    assert f"--boot-nodes={ENR}" in cl and "--testnet-dir=/network-configs" in cl
    assert cl[-1] == "--target-peers=16"
    # the node's fixed key is where Lighthouse loads it: <network-dir>/key, byte for byte
    assert "--network-dir=/data/lighthouse/beacon/network" in cl
    assert (root / "data/lighthouse/beacon/network/key").read_bytes() == (root / "node-key/cl-1-1").read_bytes()
    vc, _ = start_argv(one(docs, "StatefulSet", p["vc"]), "lighthouse", 1, tmp_path, {}, "lighthouse")
    assert vc[0] == "validator_client"
    assert f"--beacon-nodes=http://{p['cl']}-1.{p['cl']}.{NAMESPACE}.svc.cluster.local:5052" in vc
    assert "--validators-dir=/validator-keys/keys" in vc and "--init-slashing-protection" in vc


def test_extra_params_are_passed_as_single_arguments(tmp_path):
    """A user's flag with spaces or shell characters arrives as one argument, unexpanded."""
    from conftest import helm, CHART, RENDER_KUBE_VERSION
    import yaml
    text = helm("template", "t", str(CHART), "--kube-version", RENDER_KUBE_VERSION, "-n", NAMESPACE,
                "--set-json", 'participants=[{"el_extra_params":["--x=a b","--y=$(id)"],"count":1}]').stdout
    sts = next(d for d in yaml.safe_load_all(text) if d and d["kind"] == "StatefulSet" and "-el-1-" in d["metadata"]["name"])
    el, _ = start_argv(sts, "reth", 0, tmp_path, {"el": ""}, "reth")
    assert el[-2:] == ["--x=a b", "--y=$(id)"]


class Enclave(BaseHTTPRequestHandler):
    """Answers like every node of an enclave at once: JSON-RPC, and ethwatch's /metrics."""
    block = 0x10
    metrics = "eth_el_up 1\neth_cl_up 1\neth_cl_head_slot 42\n"

    def log_message(self, *a):
        pass

    def send(self, body, ctype="application/json"):
        data = body.encode()
        self.send_response(200)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if req["method"] == "eth_blockNumber":
            Enclave.block += 1
            result = hex(Enclave.block)
        else:
            result = "0x3017a4"
        self.send(json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": result}))

    def do_GET(self):
        assert self.path == "/metrics"
        self.send(Enclave.metrics, "text/plain; version=0.0.4")


@pytest.fixture
def enclave():
    Enclave.metrics = "eth_el_up 1\neth_cl_up 1\neth_cl_head_slot 42\n"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Enclave)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def helm_test(docs, name, port, extra_env=None):
    pod = one(docs, "Pod", f"{FULL}-test-{name}")
    text = pod["spec"]["containers"][0]["args"][0]
    text = re.sub(rf"\b{FULL}-[a-z0-9.-]+\.svc\.cluster\.local", "127.0.0.1", text)
    text = re.sub(r":(8545|9545)\b", f":{port}", text)
    env = dict(os.environ, **{e["name"]: e["value"] for e in pod["spec"]["containers"][0].get("env", []) if "value" in e})
    env.update(extra_env or {})
    return subprocess.run(["/bin/sh", "-ec", text], capture_output=True, text=True, timeout=60, env=env)


def test_helm_test_pods_pass_on_a_healthy_enclave_and_name_the_failure(enclave):
    docs = render("multi-participant-values")
    for name in ("rpc", "blocks", "metrics"):
        proc = helm_test(docs, name, enclave)
        assert proc.returncode == 0, f"{name}: {proc.stdout}{proc.stderr}"
        assert "ok:" in proc.stdout
    assert proc.stdout.count("ethwatch execution metrics") == 6
    Enclave.metrics = "eth_el_up 0\n"
    proc = helm_test(docs, "metrics", enclave)
    assert proc.returncode != 0 and "FAIL: 127.0.0.1 serves no eth_el_up 1" in proc.stdout
