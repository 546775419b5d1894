"""The CLI contract of geth and Prysm, against the real binaries: geth v1.17.10 and Prysm v6.0.4
are installed here (scripts/tools.sh), the releases the chart's default images carry. Every flag
a geth or Prysm container of every ci/ scenario passes, on the command line or in the flags file
its init container writes (Prysm's image has no shell: --config-file), is one the binary's
`--help` lists. The geth argv is the real one (its start script run with a stub binary after the
real bootnode init container wrote its flags), and geth itself parses it (`dumpconfig`)."""

import functools
import os
import re
import subprocess

import pytest
import yaml

from conftest import CHART, expected_participants, render
from nodeshell import DOWN, ENODE_ID, NOWHERE, UP, NodeServer, bootnode_init, start_argv

BINARIES = {"geth": "ETHWATCH_GETH", "beacon-chain": "ETHWATCH_PRYSM_BEACON", "validator": "ETHWATCH_PRYSM_VALIDATOR"}
# secp256k1's generator point, uncompressed without its 04 prefix: a valid enode id
G = ("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
     "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8")
IMAGES = {"geth": ("geth", "v1.17.10"), "prysm": ("beacon-chain", "v6.0.4"), "prysmValidator": ("validator", "v6.0.4")}


def binary(name):
    path = os.environ.get(BINARIES[name])
    assert path and os.access(path, os.X_OK), f"${BINARIES[name]} is not set: source ~/.cache/ethwatch/tools/env.sh"
    return path


@functools.lru_cache(maxsize=None)
def help_flags(name, *sub):
    """Every flag name (and alias) the binary's --help lists."""
    out = subprocess.run([binary(name), *sub, "--help"], capture_output=True, text=True, timeout=60)
    flags = set()
    for line in (out.stdout + out.stderr).splitlines():
        st = line.strip()
        if st.startswith("--"):
            flags |= set(re.findall(r"--([A-Za-z0-9][\w.-]*)", re.split(r"\s{2,}", st)[0]))
    assert len(flags) > (5 if sub else 50), f"{name} {sub} --help listed {len(flags)} flags"
    return flags


def names(argv):
    return [a[2:].split("=", 1)[0] for a in argv if a.startswith("--")]


def unknown(argv, name, *sub):
    return sorted(set(names(argv)) - help_flags(name, *sub))


@pytest.fixture(scope="module")
def running():
    server = NodeServer()
    yield server.port
    server.close()


def test_the_check_finds_what_the_binaries_refuse():
    assert unknown(["--http.port=1", "--trusted-peers=x"], "geth") == ["trusted-peers"]
    assert unknown(["--p2p-priv-key=/k", "--boot-nodes=x"], "beacon-chain") == ["boot-nodes"]
    assert unknown(["--wallet-dir=/w", "--beacon-nodes=x"], "validator") == ["beacon-nodes"]


def test_the_binaries_are_the_releases_the_chart_defaults_to():
    """Bumping clientImages.geth/prysm/prysmValidator without checking the new release fails here."""
    v = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    annotated = {i["name"]: i["image"] for i in yaml.safe_load(chart["annotations"]["artifacthub.io/images"])}
    for key, (name, tag) in IMAGES.items():
        assert v["clientImages"][key].endswith(f":{tag}"), f"clientImages.{key} is not {tag}"
        assert annotated[key] == v["clientImages"][key], "Chart.yaml's artifacthub.io/images disagrees"
        out = subprocess.run([binary(name), "--version"], capture_output=True, text=True, timeout=60)
        assert tag.lstrip("v") in out.stdout + out.stderr, f"{name} here is not {tag}: {out.stdout}"


def client_sets(docs, client):
    for sts in (d for d in docs if d["kind"] == "StatefulSet"):
        if sts["metadata"]["labels"].get("eth-enclave/client") == client:
            yield sts


def containers(sts, kind="containers"):
    return {c["name"]: c for c in sts["spec"]["template"]["spec"].get(kind, [])}


def flags_file_keys(script, path):
    """The flag names an init script writes into a YAML flags file (echo "<flag>: ..." > path)."""
    keys = re.findall(r'echo "([a-z0-9-]+): [^"]*"(?: >>? ' + re.escape(path) + r')?', script)
    assert keys, f"no flags written to {path}"
    return keys


def test_geth_command_lines_are_accepted_by_geth(scenario, running, tmp_path):
    docs = render(scenario)
    first_el = expected_participants(scenario)[0]["el"]
    checked = 0
    for sts in client_sets(docs, "geth"):
        port = int(next(p["containerPort"] for p in containers(sts)["geth"]["ports"] if p["name"] == "rpc"))
        # node 0 of a new network (nobody answers), node 0 restarting into a running network, a
        # node joining through node 0
        node0 = sts["metadata"]["name"] == first_el
        cases = [(0, NOWHERE, (DOWN,)), (0, NOWHERE, (UP,))] if node0 else [(0, UP, (DOWN,))]
        for ordinal, bootnode, peers in cases:
            line, _ = bootnode_init(sts, ordinal, tmp_path, running, "el", port, bootnode, peers)
            # the test server's enode id is not a curve point: give geth a real public key (G)
            line = line.replace(ENODE_ID, G)
            argv, root = start_argv(sts, "geth", ordinal, tmp_path, {"el": line}, "geth")
            assert unknown(argv, "geth") == [], f"{sts['metadata']['name']}: {argv}"
            # geth itself parses the values (ports, nat, bootnodes, apis, the node key) and builds
            # its config; the node key as the chart's Secret holds it (64 hex characters)
            for f in (root / "node-key").iterdir():
                f.write_text(os.urandom(32).hex())
            cfg = subprocess.run([binary("geth"), *[a.replace("/node-key/", f"{root}/node-key/").replace(
                "/data/", f"{tmp_path}/data/").replace("/jwt/", f"{tmp_path}/jwt/") for a in argv], "dumpconfig"],
                capture_output=True, text=True, timeout=60)
            assert cfg.returncode == 0, f"geth refused {argv}:\n{cfg.stderr[-2000:]}"
            assert "NetworkId = " in cfg.stdout
            checked += 1
        init = containers(sts, "initContainers")["geth-init"]
        assert re.search(r"exec geth init --datadir=/data/geth /genesis/genesis.json", init["args"][0])
        assert unknown(["--datadir"], "geth", "init") == []
    if "geth" in render_clients(docs):
        assert checked


def render_clients(docs):
    return {d["metadata"]["labels"].get("eth-enclave/client") for d in docs if d["kind"] == "StatefulSet"}


def test_prysm_command_lines_are_accepted_by_prysm(scenario):
    docs = render(scenario)
    checked = 0
    for sts in client_sets(docs, "prysm"):
        comp = sts["metadata"]["labels"]["app.kubernetes.io/component"]
        c = containers(sts)["prysm"]
        assert "command" not in c, "Prysm's image has no shell: the chart must use its entrypoint"
        if comp == "beacon":
            name, script, path = "beacon-chain", containers(sts, "initContainers")["bootnode"]["args"][0], "/bootnodes/cl.yaml"
        else:
            name, script, path = "validator", containers(sts, "initContainers")["keys"]["args"][0], "/validator-keys/prysm-flags.yaml"
        argv = c["args"]
        assert f"--config-file={path}" in argv
        assert unknown(argv, name) == [], f"{sts['metadata']['name']}: {argv}"
        keys = flags_file_keys(script, path)
        assert unknown([f"--{k}" for k in keys], name) == [], f"{sts['metadata']['name']} flags file: {keys}"
        checked += 1
    if "prysm" in render_clients(docs):
        assert checked
