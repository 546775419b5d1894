"""The node pods' shell, run for real: the bootnode init containers against a local server that
answers like Reth's admin_nodeInfo and Lighthouse's /eth/v1/node/identity (once with an error
first, so the retry path runs), and the client containers' start lines with stub `reth` and
`lighthouse` binaries that print the argv they got (ordinal, JWT file, engine endpoint, bootnodes,
extra params, quoting)."""

import json
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import NAMESPACE, RELEASE, expected_participants, one, render

FULL = f"{RELEASE}-eth-enclave"
ENODE = "enode://" + "ab" * 64 + "@10.1.2.3:30303?discport=30303"
ENR = "enr:-Iu4QExample"
PEER = "16Uiu2HAmExamplePeerId"


class Node(BaseHTTPRequestHandler):
    failures = {"rpc": 1, "identity": 1}  # answer 503 this many times first

    def log_message(self, *a):
        pass

    def reply(self, kind, body):
        if Node.failures[kind] > 0:
            Node.failures[kind] -= 1
            self.send_response(503)
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["content-length"])))
        assert req["method"] == "admin_nodeInfo"
        self.reply("rpc", {"jsonrpc": "2.0", "id": req["id"], "result": {
            "id": "ab" * 32, "name": "reth/v2.5.1", "enode": ENODE, "enr": ENR,
            "ip": "10.1.2.3", "ports": {"discovery": 30303, "listener": 30303}}})

    def do_GET(self):
        assert self.path == "/eth/v1/node/identity"
        self.reply("identity", {"data": {"peer_id": PEER, "enr": ENR,
                                         "p2p_addresses": ["/ip4/10.1.2.4/tcp/9000/p2p/" + PEER],
                                         "discovery_addresses": [], "metadata": {"seq_number": "1"}}})


@pytest.fixture
def node():
    Node.failures = {"rpc": 1, "identity": 1}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Node)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server.server_address[1]
    server.shutdown()


def init(sts, name):
    return next(c for c in sts["spec"]["template"]["spec"]["initContainers"] if c["name"] == name)


def run(text, hostname, env=None, tmp_path=None, replace=()):
    for a, b in replace:
        text = text.replace(a, b)
    e = dict(os.environ, HOSTNAME=hostname, **(env or {}))
    return subprocess.run(["/bin/sh", "-ec", text], capture_output=True, text=True, env=e, timeout=60)


def bootnode_file(sts, ordinal, port, tmp_path, layer):
    c = init(sts, "bootnode")
    text = c["args"][0]
    client_port = {"el": ":8545", "cl": ":5052"}[layer]
    assert f'"http://$BOOTNODE{client_port}' in text
    out = tmp_path / f"bootnodes-{ordinal}"
    out.mkdir()
    proc = run(text, f"{sts['metadata']['name']}-{ordinal}", {"BOOTNODE": "127.0.0.1"},
               replace=[("/bootnodes/", f"{out}/"), (f"$BOOTNODE{client_port}", f"$BOOTNODE:{port}")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return (out / layer).read_text().strip(), proc.stdout


def test_execution_bootnode_discovery(node, tmp_path):
    docs = render("network-params-values")
    p = expected_participants("network-params-values")[0]
    sts = one(docs, "StatefulSet", p["el"])
    env = {e["name"]: e["value"] for e in init(sts, "bootnode")["env"]}
    assert env["BOOTNODE"] == f"{p['el']}-0.{p['el']}.{NAMESPACE}.svc.cluster.local"
    first, log = bootnode_file(sts, 0, node, tmp_path, "el")
    assert first == "" and "bootnode itself" in log
    line, log = bootnode_file(sts, 1, node, tmp_path, "el")
    assert "waiting for the bootnode" in log  # the 503 was retried
    assert line == f"--bootnodes=enode://{'ab' * 64}@10.1.2.3:30303 --trusted-peers=enode://{'ab' * 64}@127.0.0.1:30303"


def test_beacon_bootnode_discovery(node, tmp_path):
    docs = render("network-params-values")
    p = expected_participants("network-params-values")[0]
    sts = one(docs, "StatefulSet", p["cl"])
    assert bootnode_file(sts, 0, node, tmp_path, "cl")[0] == ""
    line, log = bootnode_file(sts, 1, node, tmp_path, "cl")
    assert "waiting for the bootnode" in log
    assert line == f"--boot-nodes={ENR} --trusted-peers={PEER} --libp2p-addresses=/dns4/127.0.0.1/tcp/9000/p2p/{PEER}"


def test_second_participant_joins_through_the_network_node_0(node, tmp_path):
    """Ordinal 0 of a later participant is not a bootnode: it is node `nodeOffset` of the network."""
    docs = render("multi-participant-values")
    p = expected_participants("multi-participant-values")[1]
    sts = one(docs, "StatefulSet", p["el"])
    first = expected_participants("multi-participant-values")[0]
    env = {e["name"]: e["value"] for e in init(sts, "bootnode")["env"]}
    assert env["BOOTNODE"].startswith(f"{first['el']}-0.")
    line, _ = bootnode_file(sts, 0, node, tmp_path, "el")
    assert line.startswith("--bootnodes=enode://")


def stub_bin(tmp_path, name):
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    f = d / name
    f.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    f.chmod(0o755)
    return d


def start_args(sts, client, ordinal, tmp_path, bootnodes):
    c = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == client)
    bdir = tmp_path / "boot"
    bdir.mkdir(exist_ok=True)
    for k, v in bootnodes.items():
        (bdir / k).write_text(v + "\n")
    bin_dir = stub_bin(tmp_path, {"reth": "reth", "lighthouse": "lighthouse"}[client])
    proc = run(c["args"][0], f"{sts['metadata']['name']}-{ordinal}",
               {"PATH": f"{bin_dir}:{os.environ['PATH']}", "POD_IP": "10.9.8.7"},
               replace=[("/bootnodes/", f"{bdir}/")])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_client_start_lines(tmp_path):
    scenario = "network-params-values"
    docs = render(scenario)
    p = expected_participants(scenario)[0]
    el = start_args(one(docs, "StatefulSet", p["el"]), "reth", 1, tmp_path,
                    {"el": "--bootnodes=enode://x@1.2.3.4:30303 --trusted-peers=enode://x@h:30303"})
    assert el[0] == "node"
    assert "--authrpc.jwtsecret=/jwt/jwt-1-1" in el and "--chain=/genesis/genesis.json" in el
    assert "--nat=extip:10.9.8.7" in el and "--http.corsdomain=*" in el
    assert "--bootnodes=enode://x@1.2.3.4:30303" in el and "--trusted-peers=enode://x@h:30303" in el
    assert el[-1] == "--rpc.max-connections=500"  # el_extra_params, last
    cl = start_args(one(docs, "StatefulSet", p["cl"]), "lighthouse", 1, tmp_path,
                    {"cl": f"--boot-nodes={ENR} --trusted-peers={PEER}"})
    assert cl[0] == "beacon_node"
    assert "--jwt-secrets=/jwt/jwt-1-1" in cl and "--enr-address=10.9.8.7" in cl
    assert f"--execution-endpoints=http://{p['el']}-1.{p['el']}.{NAMESPACE}.svc.cluster.local:8551" in cl
    assert f"--boot-nodes={ENR}" in cl and "--testnet-dir=/network-configs" in cl
    assert cl[-1] == "--target-peers=16"
    vc = start_args(one(docs, "StatefulSet", p["vc"]), "lighthouse", 1, tmp_path, {})
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
    el = start_args(sts, "reth", 0, tmp_path, {"el": ""})
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


def helm_test(docs, name, port):
    pod = one(docs, "Pod", f"{FULL}-test-{name}")
    text = pod["spec"]["containers"][0]["args"][0]
    text = re.sub(rf"\b{FULL}-[a-z0-9.-]+\.svc\.cluster\.local", "127.0.0.1", text)
    text = re.sub(r":(8545|9545)\b", f":{port}", text)
    return subprocess.run(["/bin/sh", "-ec", text], capture_output=True, text=True, timeout=60)


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
