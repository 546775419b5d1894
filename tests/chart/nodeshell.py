"""The node pods' shell, run for real on this machine: the bootnode init containers against a local
server that answers like Reth's admin_nodeInfo and Lighthouse's /eth/v1/node/identity, and the
client containers' start lines with a stub binary that prints the argv it got. Paths the scripts
touch (/bootnodes, /data, /node-key) are redirected into a scratch directory; hosts are loopback
addresses only (nothing here resolves a name)."""

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Shapes of the real answers: a 64-byte node id, the EIP-778 example ENR, a secp256k1 libp2p peer id.
ENODE_ID = "ab" * 64
ENODE = f"enode://{ENODE_ID}@10.1.2.3:30303?discport=30303"
ENR = ("enr:-IS4QHCYrYZbAKWCBRlAy5zzaDZXJBGkcnh4MHcBFZntXNFrdvJjX04jRzjzCBOonrkTfj499SZuOh8R33Ls8RRcy5wBgmlk"
       "gnY0gmlwhH8AAAGJc2VjcDI1NmsxoQPKY0yuDUmstAHYpMa2_oxVtw0RW_QAdpzBQA8yWM0xOIN1ZHCCdl8")
PEER = "16Uiu2HAmPLe7Mzm8TsYUubgCAW1aJoeFScxrLj8ppHFivPo97bUZ"
# Loopback addresses: the answering node, and two where nothing listens (connection refused at once).
UP, DOWN, NOWHERE = "127.0.0.1", "127.0.0.2", "127.0.0.3"


class Node(BaseHTTPRequestHandler):
    """Answers like a running Reth and Lighthouse node; the first `failures` requests get a 503."""
    failures = 0

    def log_message(self, *a):
        pass

    def reply(self, body):
        if Node.failures > 0:
            Node.failures -= 1
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
        self.reply({"jsonrpc": "2.0", "id": req["id"], "result": {
            "id": "ab" * 32, "name": "reth/v2.5.1", "enode": ENODE, "enr": ENR,
            "ip": "10.1.2.3", "ports": {"discovery": 30303, "listener": 30303}}})

    def do_GET(self):
        assert self.path == "/eth/v1/node/identity"
        self.reply({"data": {"peer_id": PEER, "enr": ENR,
                             "p2p_addresses": ["/ip4/10.1.2.4/tcp/9000/p2p/" + PEER],
                             "discovery_addresses": [], "metadata": {"seq_number": "1"}}})


class NodeServer:
    def __init__(self, failures=0):
        Node.failures = failures
        self.server = ThreadingHTTPServer((UP, 0), Node)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def containers(sts):
    spec = sts["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}


def run(text, hostname, env=None, replace=()):
    for a, b in replace:
        text = text.replace(a, b)
    e = dict(os.environ, HOSTNAME=hostname, **(env or {}))
    return subprocess.run(["/bin/sh", "-ec", text], capture_output=True, text=True, env=e, timeout=120)


def bootnode_init(sts, ordinal, tmp_path, port, layer, client_port, bootnode=UP, peers=(DOWN,)):
    """Run the bootnode init container of pod `ordinal` with node 0 at `bootnode` and `peers` as
    the other nodes; the init container's output file and its log."""
    c = containers(sts)["bootnode"]
    text = c["args"][0]
    assert f"$2:{client_port}" in text, "the init container no longer asks $2:<client port>"
    out = tmp_path / f"bootnodes-{sts['metadata']['name']}-{ordinal}-{len(list(tmp_path.iterdir()))}"
    out.mkdir()
    keys = out / "node-key"  # the node keys of the participant (the Prysm init reads its own)
    keys.mkdir()
    for vol in sts["spec"]["template"]["spec"]["volumes"]:
        if vol["name"] == "node-key":
            for item in vol["secret"]["items"]:
                (keys / item["path"]).write_bytes(os.urandom(32))
    proc = run(text, f"{sts['metadata']['name']}-{ordinal}",
               {"BOOTNODE": bootnode, "PEERS": " ".join(peers), "POD_IP": "10.9.8.7"},
               replace=[("/bootnodes/", f"{out}/"), ("/node-key/", f"{keys}/"), (f"$2:{client_port}", f"$2:{port}")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return (out / layer).read_text().strip(), proc.stdout


def stub_bin(tmp_path, name):
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    f = d / name
    f.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    f.chmod(0o755)
    return d


def start_argv(sts, container, ordinal, tmp_path, bootnodes, binary):
    """The argv the client binary gets from the container's start script (binary name dropped),
    with `bootnodes` ({"el": line} / {"cl": line}) as the init container's output."""
    c = containers(sts)[container]
    root = tmp_path / f"pod-{sts['metadata']['name']}-{ordinal}-{len(list(tmp_path.iterdir()))}"
    for d in ("bootnodes", "data", "node-key"):
        (root / d).mkdir(parents=True)
    for k, v in bootnodes.items():
        (root / "bootnodes" / k).write_text(v + "\n")
    for vol in sts["spec"]["template"]["spec"]["volumes"]:
        if vol["name"] == "node-key":
            for item in vol["secret"]["items"]:
                (root / "node-key" / item["path"]).write_bytes(os.urandom(32))
    bin_dir = stub_bin(tmp_path, binary)
    proc = run(c["args"][0], f"{sts['metadata']['name']}-{ordinal}",
               {"PATH": f"{bin_dir}:{os.environ['PATH']}", "POD_IP": "10.9.8.7"},
               replace=[("/bootnodes/", f"{root}/bootnodes/"), ("/data/", f"{root}/data/"),
                        ("/node-key/", f"{root}/node-key/")])
    assert proc.returncode == 0, proc.stderr
    # the argv as the pod would see it: scratch paths back to the pod's own
    return [a.replace(f"{root}/", "/") for a in proc.stdout.splitlines()], root
