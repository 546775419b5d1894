"""The genesis Job's and the node init containers' shell scripts, run for real with the generator
replaced by a stub: the genesis time and the mnemonic reach values.env, the ConfigMap manifest the
Job applies carries the generator's outputs byte for byte (genesis.ssz gzipped) and never the
mnemonic, and a beacon node's init container turns that ConfigMap back into a Lighthouse
--testnet-dir. The same manifest is then stored by the real API server (test_apiserver.py)."""

import base64
import gzip
import os
import subprocess
import time
from pathlib import Path

import yaml

from conftest import RELEASE, expected_participants, one, render, values

FULL = f"{RELEASE}-eth-enclave"
OUTPUTS = {
    "genesis.json": b'{"config": {"chainId": 3151908}, "alloc": {}}\n',
    "config.yaml": b"PRESET_BASE: mainnet\nSECONDS_PER_SLOT: 12\n",
    "deposit_contract.txt": b"0x4242424242424242424242424242424242424242\n",
    "deposit_contract_block.txt": b"0\n",
    "deposit_contract_block_hash.txt": b"0xabc",
    "genesis_validators_root.txt": b"0xdef",
    # not for the nodes: the mnemonic and a placeholder ENR
    "mnemonics.yaml": b"- mnemonic: secret words\n",
    "bootstrap_nodes.txt": b"enr:-placeholder\n",
}
# A genesis state like the mainnet preset's: over the 1 MiB ConfigMap limit, very compressible.
GENESIS_SSZ = (b"\x00" * 1_500_000) + (b"\x11" * 32) * 65536


def containers(pod_spec):
    return {c["name"]: c for c in pod_spec.get("initContainers", []) + pod_spec["containers"]}


def run_generate(scenario, tmp_path, ssz=GENESIS_SSZ):
    docs = render(scenario)
    job = one(docs, "Job", f"{FULL}-genesis")
    spec = job["spec"]["template"]["spec"]
    init = containers(spec)
    inputs = one(docs, "ConfigMap", f"{FULL}-genesis-inputs")["data"]
    dirs = {name: tmp_path / name for name in ("inputs", "secrets", "config", "data", "out", "work")}
    for d in dirs.values():
        d.mkdir(parents=True)
    for k, text in inputs.items():
        (dirs["inputs"] / k).write_text(text)
    (dirs["secrets"] / "mnemonic").write_text("giant issue aisle\n")
    # the config init container: the image's /config plus values.env
    copy = init["config"]["args"][0]
    assert copy == "cp -R /config/. /writable-config/ && cp /inputs/values.env /writable-config/values.env"
    (dirs["config"] / "values.env").write_text(inputs["values.env"])
    # the generator, stubbed: sources values.env as the real entrypoint does, writes the outputs
    fixtures = tmp_path / "outputs"
    fixtures.mkdir()
    for k, b in OUTPUTS.items():
        (fixtures / k).write_bytes(b)
    (fixtures / "genesis.ssz").write_bytes(ssz)
    stub = dirs["work"] / "entrypoint.sh"
    stub.write_text(
        "#!/bin/bash -e\n"
        f"source {dirs['config']}/values.env\n"
        f'echo "$GENESIS_TIMESTAMP|$NUMBER_OF_VALIDATORS|$EL_AND_CL_MNEMONIC|$GENESIS_DELAY" > {tmp_path}/seen\n'
        f"mkdir -p {dirs['data']}/metadata && cp {fixtures}/* {dirs['data']}/metadata/\n")
    stub.chmod(0o755)
    # the generator step runs files/scripts/genesis.sh from the inputs ConfigMap
    assert init["generate"]["command"] == ["/bin/bash", "-e", "/inputs/generate.sh"]
    text = inputs["generate.sh"]
    for path in ("/inputs", "/secrets", "/config", "/data", "/out", "/work"):
        text = text.replace(path + "/", f"{dirs[path[1:]]}/")
    env = {e["name"]: e["value"] for e in init["generate"]["env"]}
    started = int(time.time())
    proc = subprocess.run(["/bin/bash", "-ec", text], capture_output=True, text=True,
                          env={**os.environ, **env, "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return docs, started, (tmp_path / "seen").read_text().strip().split("|"), dirs["out"] / "genesis-configmap.yaml"


def test_genesis_job_fixes_the_time_once_and_stores_the_outputs(tmp_path):
    scenario = "network-params-values"
    v = values(scenario)
    docs, started, seen, manifest = run_generate(scenario, tmp_path)
    timestamp, validators, mnemonic, delay = seen
    nodes = sum(p["count"] for p in expected_participants(scenario))
    want = started + v["network_params"]["genesis_delay"] + v["genesis"]["podStartupSeconds"] + 5 + 5 * nodes
    assert want <= int(timestamp) <= want + 5, "genesis time is not now + delay + pod startup + 5 + 5 per node"
    assert (validators, mnemonic, delay) == ("128", "giant issue aisle", "0")

    cm = yaml.safe_load(manifest.read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == f"{FULL}-genesis"
    assert cm["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert cm["data"]["genesis_time.txt"] == timestamp
    files = {k: base64.b64decode(b) for k, b in cm["binaryData"].items()}
    for name in ("genesis.json", "config.yaml", "deposit_contract.txt", "deposit_contract_block.txt",
                 "deposit_contract_block_hash.txt", "genesis_validators_root.txt"):
        assert files[name] == OUTPUTS[name], name
    assert gzip.decompress(files["genesis.ssz.gz"]) == GENESIS_SSZ
    assert "mnemonics.yaml" not in files and "bootstrap_nodes.txt" not in files
    assert b"giant issue" not in manifest.read_bytes()
    assert manifest.stat().st_size < 1_000_000


def test_genesis_job_refuses_a_configmap_over_the_limit(tmp_path):
    try:
        run_generate("default-values", tmp_path, ssz=os.urandom(1_200_000))
    except AssertionError as e:
        assert "over the 1 MiB limit of a ConfigMap" in str(e)
    else:
        raise AssertionError("an incompressible 1.2 MB genesis state was accepted")


def test_testnet_dir_init_restores_the_generator_outputs(tmp_path):
    docs, _, _, manifest = run_generate("network-params-values", tmp_path / "job")
    cm = yaml.safe_load(manifest.read_text())
    genesis = tmp_path / "genesis"
    genesis.mkdir()
    for k, b in cm["binaryData"].items():  # what the ConfigMap volume shows the pod
        (genesis / k).write_bytes(base64.b64decode(b))
    for k, text in cm["data"].items():
        (genesis / k).write_text(text)
    out = tmp_path / "network-configs"
    out.mkdir()
    sts = one(docs, "StatefulSet", f"{FULL}-cl-1-lighthouse-reth")
    text = containers(sts["spec"]["template"]["spec"])["testnet-dir"]["args"][0]
    assert text.startswith("cd /genesis\n")
    text = text.replace("cd /genesis", f"cd {genesis}").replace("/network-configs", str(out))
    subprocess.run(["/bin/sh", "-ec", text], check=True, capture_output=True)
    assert (out / "genesis.ssz").read_bytes() == GENESIS_SSZ
    assert (out / "config.yaml").read_bytes() == OUTPUTS["config.yaml"]
    assert (out / "deploy_block.txt").read_bytes() == (out / "deposit_contract_block.txt").read_bytes() == b"0\n"
    assert not (out / "mnemonics.yaml").exists()


def test_every_node_pod_mounts_the_genesis(scenario):
    docs = render(scenario)
    for sts in [d for d in docs if d["kind"] == "StatefulSet"]:
        spec = sts["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in spec["volumes"]}
        assert vols["genesis"]["configMap"]["name"] == f"{FULL}-genesis"
        if sts["metadata"]["labels"]["app.kubernetes.io/component"] != "execution":
            assert "testnet-dir" in containers(spec)
