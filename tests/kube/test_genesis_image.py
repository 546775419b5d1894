"""The local genesis image (images/genesis, docs/genesis-image.md) fulfils the chart's contract of
the ethereum-genesis-generator image, proven without Kubernetes:

- its root filesystem is built by scripts/kube/images-genesis.sh (build_genesis_rootfs);
- the genesis Job's two containers and the validator-keys Job's derive container run inside it
  (chroot, in a private mount namespace, as the chart's uid 10001, on a read-only root with the
  Job's volumes bound where the Job mounts them), with the commands, environment and inputs
  `helm template` renders for two geth/Prysm participants (ci/geth-prysm-values.yaml, 4 s slots,
  8 validators each): the chart's own genesis.sh and derive-keys.sh;
- the outputs go through the chart's ConfigMap and Secret manifests and back, as the node pods'
  init containers read them (testnet-dir, validator-keys.sh);
- a real geth (`geth init` with genesis.json), a Prysm beacon node (config.yaml, genesis.ssz) and
  both participants' Prysm validator clients (their wallets, as validator.yaml runs them) then
  make a chain: blocks proposed by those keys, on both layers.

Run as root (unshare, mount, chroot). The clients come from scripts/tools.sh (env.sh); Go builds
the tool on first use (cached under $ETHWATCH_CACHE/images).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import pathlib
import secrets
import shutil
import subprocess
import sys
import time

import pytest
import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # e2e: the harness shared with the other suites

from e2e.devnet import child_env, die_with_parent, tool  # noqa: E402
from e2e.stack import HOST, Stack, free_port, http_get, rpc, wait_until  # noqa: E402

CHART = ROOT / "charts" / "eth-enclave"
RELEASE, NAMESPACE = "t", "devnet"
UID = 10001  # podSecurityContext.runAsUser/runAsGroup/fsGroup
SLOT = 4
PER_NODE = 8  # validators per participant (two participants)
FEE_RECIPIENT = "0x8943545177806ED17B9F23F0a21ee5948eCaa776"
# The first account of the chart's default mnemonic (m/44'/60'/0'/0/0), premined by the template.
PREMINED = "0x8943545177806ED17B9F23F0a21ee5948eCaa776"
IMAGE_PATH = "/usr/local/bin:/usr/bin:/bin"  # the image config's PATH (genesis_image_config)
SLOW = 240

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (unshare, mount, chroot)")


# -- the image ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rootfs(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("image") / "rootfs"
    started = time.monotonic()
    r = subprocess.run(["bash", "-c", 'source scripts/kube/images-genesis.sh && build_genesis_rootfs "$1"',
                        "bash", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"build_genesis_rootfs failed:\n{r.stderr[-4000:]}"
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file() and not f.is_symlink())
    print(f"\ngenesis rootfs: {size / 2**20:.1f} MiB, built in {time.monotonic() - started:.1f} s")
    return out


def run_in_image(rootfs: pathlib.Path, argv: list[str], env: dict, mounts: dict[str, pathlib.Path],
                 read_only: tuple = ("/inputs", "/secrets")) -> subprocess.CompletedProcess:
    """One container: a private mount namespace, the rootfs read-only, the volumes bound at their
    mount paths, then chroot as the chart's user with exactly the container's environment."""
    host = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    mount, chroot, unshare = (shutil.which(c, path=host) for c in ("mount", "chroot", "unshare"))
    lines = ["set -e", f"{mount} --bind '{rootfs}' '{rootfs}'", f"{mount} -o remount,bind,ro '{rootfs}'",
             # the runtime's /dev: a tmpfs with the usual devices
             f"{mount} -t tmpfs -o mode=755,nosuid tmpfs '{rootfs}/dev'"]
    for dev in ("null", "zero", "random", "urandom"):
        lines += [f": > '{rootfs}/dev/{dev}'", f"{mount} --bind /dev/{dev} '{rootfs}/dev/{dev}'"]
    for dst, src in mounts.items():
        target = f"{rootfs}{dst}"
        lines.append(f"{mount} --bind '{src}' '{target}'")
        if dst in read_only:
            lines.append(f"{mount} -o remount,bind,ro '{target}'")
    lines.append(f'exec {chroot} --userspec={UID}:{UID} \'{rootfs}\' "$@"')
    return subprocess.run([unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                           "\n".join(lines), "sh", *argv],
                          env={"PATH": IMAGE_PATH, **env}, capture_output=True, text=True, timeout=600)


def volume(tmp: pathlib.Path, name: str) -> pathlib.Path:
    """An emptyDir: owned by the pod's fsGroup."""
    d = tmp / name
    d.mkdir(parents=True)
    os.chown(d, UID, UID)
    return d


# -- the chart -----------------------------------------------------------------------------------
def render() -> list[dict]:
    helm = tool("ETHWATCH_HELM", "helm")
    r = subprocess.run([
        helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
        "-f", str(CHART / "ci" / "geth-prysm-values.yaml"),
        "--set", f"network_params.seconds_per_slot={SLOT}",
        "--set", f"network_params.num_validator_keys_per_node={PER_NODE}",
        "--set", "network_params.genesis_delay=10",
        "--set", "genesis.podStartupSeconds=0",
    ], capture_output=True, text=True, env={**os.environ, "HELM_CACHE_HOME": "/tmp/helm-cache",
                                           "HELM_CONFIG_HOME": "/tmp/helm-config",
                                           "HELM_DATA_HOME": "/tmp/helm-data"})
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def one(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def containers(job) -> dict:
    spec = job["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}


def env_of(container) -> dict:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def mounts_of(container, volumes: dict[str, pathlib.Path]) -> dict[str, pathlib.Path]:
    """The container's volume mounts, each bound to the test's directory for that volume."""
    return {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}


def argv_of(container) -> list[str]:
    return list(container["command"]) + list(container.get("args", []))


def decode_manifest(path: pathlib.Path) -> dict[str, bytes]:
    """The files a ConfigMap (data as text, binaryData base64) or Secret (data base64) carries."""
    doc = yaml.safe_load(path.read_text())
    if doc["kind"] == "Secret":
        return {k: base64.b64decode(v) for k, v in (doc.get("data") or {}).items()}
    files = {k: v.encode() for k, v in (doc.get("data") or {}).items()}
    files.update({k: base64.b64decode(v) for k, v in (doc.get("binaryData") or {}).items()})
    return files


# -- the test ------------------------------------------------------------------------------------
def test_genesis_image_makes_a_chain_with_the_chart(rootfs, tmp_path):
    docs = render()
    full = f"{RELEASE}-eth-enclave"
    mnemonic = yaml.safe_load((CHART / "values.yaml").read_text())["network_params"][
        "preregistered_validator_keys_mnemonic"]

    # 1. The genesis Job: config init container, then the generator step (genesis.sh).
    job = containers(one(docs, "Job", f"{full}-genesis"))
    inputs = one(docs, "ConfigMap", f"{full}-genesis-inputs")["data"]
    gdir = tmp_path / "genesis-job"
    vols = {name: volume(gdir, name) for name in ("config", "data", "out", "tmp")}
    vols["inputs"], vols["mnemonic"] = gdir / "inputs", gdir / "secrets"
    for d in (vols["inputs"], vols["mnemonic"]):
        d.mkdir()
    for k, text in inputs.items():
        (vols["inputs"] / k).write_text(text)
    (vols["mnemonic"] / "mnemonic").write_text(mnemonic)
    os.chown(vols["mnemonic"] / "mnemonic", UID, UID)
    os.chmod(vols["mnemonic"] / "mnemonic", 0o400)
    # the config init container mounts the config volume at /writable-config
    init = job["config"]
    r = run_in_image(rootfs, argv_of(init), env_of(init), mounts_of(init, vols))
    assert r.returncode == 0, f"config init container:\n{r.stdout}{r.stderr}"
    for f in ("cl/config.yaml", "cl/mnemonics.yaml", "el/genesis-config.yaml", "values.env"):
        assert (vols["config"] / f).is_file(), f"the config volume has no {f}"
    gen = job["generate"]
    env = env_of(gen)
    started = int(time.time())
    r = run_in_image(rootfs, argv_of(gen), env, mounts_of(gen, vols))
    print(r.stdout)
    assert r.returncode == 0, f"generator step:\n{r.stdout}{r.stderr}"
    validators = int(env["VALIDATORS"])
    assert validators == 2 * PER_NODE

    # 2. The genesis ConfigMap, turned back into a testnet dir as the nodes' testnet-dir init does.
    cm = decode_manifest(vols["out"] / "genesis-configmap.yaml")
    assert mnemonic.split()[0].encode() not in b"".join(cm.values()), "the mnemonic left the Job"
    net = tmp_path / "network-configs"
    net.mkdir()
    for name in ("config.yaml", "deposit_contract.txt", "deposit_contract_block.txt",
                 "deposit_contract_block_hash.txt", "genesis_validators_root.txt", "genesis.json"):
        assert name in cm, f"the genesis ConfigMap has no {name}"
        (net / name).write_bytes(cm[name])
    (net / "genesis.ssz").write_bytes(gzip.decompress(cm["genesis.ssz.gz"]))
    genesis_time = int(cm["genesis_time.txt"])
    assert started < genesis_time < started + 120
    chain_cfg = yaml.safe_load((net / "config.yaml").read_text())
    assert chain_cfg["SECONDS_PER_SLOT"] == SLOT
    assert chain_cfg["MIN_GENESIS_ACTIVE_VALIDATOR_COUNT"] == validators
    el_genesis = json.loads((net / "genesis.json").read_text())
    assert int(str(el_genesis["timestamp"]), 0) == genesis_time
    chain_id = int(el_genesis["config"]["chainId"])

    # 3. The validator-keys Job's derive step (derive-keys.sh, eth2-val-tools in the image).
    vk_job = containers(one(docs, "Job", f"{full}-validator-keys"))
    vk_inputs = one(docs, "ConfigMap", f"{full}-validator-keys-inputs")["data"]
    kdir = tmp_path / "keys-job"
    kvols = {name: volume(kdir, name) for name in ("work", "out", "tmp")}
    kvols["inputs"], kvols["mnemonic"] = kdir / "inputs", vols["mnemonic"]
    kvols["inputs"].mkdir()
    for k, text in vk_inputs.items():
        (kvols["inputs"] / k).write_text(text)
    derive = vk_job["derive"]
    r = run_in_image(rootfs, argv_of(derive), env_of(derive), mounts_of(derive, kvols))
    print(r.stdout)
    assert r.returncode == 0, f"derive step:\n{r.stdout}{r.stderr}"
    plan = [line.split() for line in vk_inputs["keys.plan"].splitlines() if line.strip()]
    assert len(plan) == 2 and all(p[3] == "prysm" for p in plan)

    # 4. Each validator client's keys volume, as its keys init container (validator-keys.sh) fills
    #    it from the pod's key Secret.
    script = (CHART / "files" / "scripts" / "validator-keys.sh").read_text()
    key_dirs, pubkeys_by_index = [], {}
    for name, start, end, _ in plan:
        secret = decode_manifest(kvols["out"] / f"{name}.yaml")
        src, dst = tmp_path / "keys-src" / name / "0", tmp_path / "validator-keys" / name
        src.mkdir(parents=True)
        dst.mkdir(parents=True)
        for k, v in secret.items():
            (src / k).write_bytes(v)
        text = script.replace("/keys-src/", f"{tmp_path}/keys-src/{name}/").replace("/validator-keys", str(dst))
        r = subprocess.run(["sh", "-ec", text], env={**child_env(), "HOSTNAME": f"{name}-0"},
                           capture_output=True, text=True)
        assert r.returncode == 0, f"validator-keys.sh for {name}:\n{r.stdout}{r.stderr}"
        assert (dst / "prysm" / "direct" / "accounts" / "all-accounts.keystore.json").is_file()
        assert (dst / "prysm" / "wallet-password.txt").read_text() == "password"
        keys = sorted(p.name for p in (dst / "keys").iterdir())
        assert len(keys) == int(end) - int(start)
        for p in keys:
            ks = json.loads((dst / "keys" / p / "voting-keystore.json").read_text())
            assert "0x" + ks["pubkey"] == p and ks["version"] == 4
            assert ks["path"].startswith("m/12381/3600/") and ks["path"].endswith("/0/0")
            pubkeys_by_index[int(ks["path"].split("/")[3])] = p
        key_dirs.append(dst)
    assert sorted(pubkeys_by_index) == list(range(validators))

    # 5. geth (geth init with genesis.json), a Prysm beacon node and both validator clients.
    geth = tool("ETHWATCH_GETH", "geth")
    beacon = tool("ETHWATCH_PRYSM_BEACON", "beacon-chain")
    validator = tool("ETHWATCH_PRYSM_VALIDATOR", "validator")
    node = tmp_path / "node"
    (node / "el").mkdir(parents=True)
    (node / "jwt.hex").write_text(secrets.token_hex(32))
    r = subprocess.run([geth, "init", "--datadir", str(node / "el"), str(net / "genesis.json")],
                       capture_output=True, text=True, env=child_env())
    assert r.returncode == 0, f"geth init:\n{r.stderr[-3000:]}"

    # The system contracts are go-ethereum's own (this geth's dev genesis).
    dev = json.loads(subprocess.run([geth, "--dev", "dumpgenesis"], capture_output=True, text=True,
                                    env=child_env(), check=True).stdout)
    dev_code = {a.lower().removeprefix("0x"): v["code"] for a, v in dev["alloc"].items() if v.get("code")}
    ours = {a.lower().removeprefix("0x"): v for a, v in el_genesis["alloc"].items()}
    for addr in ("000f3df6d732807ef1319fb7b8bb8522d0beac02", "0000f90827f1c53a10cb7a02335b175320002935",
                 "00000961ef480eb55e80d19ad83579a64c007002", "0000bbddc7ce488642fb579f8b00f3a590007251"):
        assert ours[addr]["code"].lower() == dev_code[addr].lower(), f"system contract {addr} differs from geth's"

    ports = {k: free_port() for k in ("el_http", "el_auth", "el_p2p", "cl_http", "cl_grpc", "cl_tcp",
                                      "cl_udp", "cl_quic", "cl_mon", "vc1", "vc2")}
    stack = Stack(tmp_path / "stack")
    pre = dict(env=child_env(), preexec_fn=die_with_parent)
    try:
        (node / "geth.toml").write_text(f'[Node.P2P]\nListenAddr = "{HOST}:{ports["el_p2p"]}"\n'
                                        f'NoDiscovery = true\nMaxPeers = 0\n')
        stack.start("geth", [
            geth, "--config", str(node / "geth.toml"), "--datadir", str(node / "el"),
            "--networkid", str(chain_id), "--syncmode", "full",
            "--http", "--http.addr", HOST, "--http.port", str(ports["el_http"]), "--http.api", "eth,net,web3",
            "--authrpc.addr", HOST, "--authrpc.port", str(ports["el_auth"]),
            "--authrpc.vhosts", "localhost,127.0.0.1", "--authrpc.jwtsecret", str(node / "jwt.hex"),
            "--nodiscover", "--nat", "none", "--netrestrict", "127.0.0.0/8", "--ipcdisable"], **pre)
        # As beacon.yaml runs Prysm (its flags), on loopback and without peers.
        stack.start("beacon", [
            beacon, "--accept-terms-of-use", "--datadir", str(node / "cl"),
            "--chain-config-file", str(net / "config.yaml"), "--genesis-state", str(net / "genesis.ssz"),
            f"--chain-id={chain_id}", "--contract-deployment-block=0",
            "--jwt-secret", str(node / "jwt.hex"), "--execution-endpoint", f"http://{HOST}:{ports['el_auth']}",
            "--min-sync-peers=0", "--minimum-peers-per-subnet", "0", "--no-discovery", "--bootstrap-node=",
            "--p2p-local-ip", HOST, "--p2p-host-ip", HOST, "--p2p-tcp-port", str(ports["cl_tcp"]),
            "--p2p-udp-port", str(ports["cl_udp"]), "--p2p-quic-port", str(ports["cl_quic"]), "--disable-quic",
            "--rpc-host", HOST, "--rpc-port", str(ports["cl_grpc"]),
            "--http-host", HOST, "--http-port", str(ports["cl_http"]),
            "--monitoring-host", HOST, "--monitoring-port", str(ports["cl_mon"]),
            "--suggested-fee-recipient", FEE_RECIPIENT], **pre)
        # As validator.yaml runs each participant's client: its wallet and password from the keys
        # volume, the beacon node in a flags file.
        for i, dst in enumerate(key_dirs, start=1):
            (dst / "prysm-flags.yaml").write_text(
                f"beacon-rpc-provider: {HOST}:{ports['cl_grpc']}\n"
                f"beacon-rest-api-provider: http://{HOST}:{ports['cl_http']}\n")
            stack.start(f"validator-{i}", [
                validator, "--accept-terms-of-use", f"--datadir={dst}/prysm-db",
                f"--wallet-dir={dst}/prysm", f"--wallet-password-file={dst}/prysm/wallet-password.txt",
                f"--config-file={dst}/prysm-flags.yaml", f"--chain-config-file={net}/config.yaml",
                f"--suggested-fee-recipient={FEE_RECIPIENT}",
                "--monitoring-host", HOST, "--monitoring-port", str(ports[f"vc{i}"])], **pre)

        el = f"http://{HOST}:{ports['el_http']}"
        cl = f"http://{HOST}:{ports['cl_http']}"

        def beacon_get(path):
            return json.loads(http_get(cl + path, timeout=5))

        wait_until("the beacon node's API", lambda: beacon_get("/eth/v1/beacon/genesis"), SLOW, stack, interval=1)
        # The beacon node's genesis is ours: validators root, time, validator set.
        g = beacon_get("/eth/v1/beacon/genesis")["data"]
        assert g["genesis_validators_root"] == (net / "genesis_validators_root.txt").read_text().strip()
        assert int(g["genesis_time"]) == genesis_time
        vals = beacon_get("/eth/v1/beacon/states/genesis/validators")["data"]
        assert len(vals) == validators
        assert {int(v["index"]): v["validator"]["pubkey"] for v in vals} == pubkeys_by_index, \
            "the genesis state's validators are not the keystores' keys, in key order"
        assert all(v["status"] == "active_ongoing" for v in vals)
        # The execution genesis block is the one the genesis state commits to.
        block0 = rpc(el, "eth_getBlockByNumber", "0x0", False)
        assert block0["hash"] == (net / "deposit_contract_block_hash.txt").read_text().strip()
        assert int(rpc(el, "eth_getBalance", PREMINED, "0x0"), 16) == 10**9 * 10**18
        dc = (net / "deposit_contract.txt").read_text().strip()
        assert len(rpc(el, "eth_getCode", dc, "0x0")) > 2, "no deposit contract code"

        # Blocks proposed by these keys: the EL head passes 2, the CL head slot advances with blocks.
        def el_head():
            n = int(rpc(el, "eth_blockNumber"), 16)
            return n if n >= 4 else None
        wait_until("execution blocks past 3", el_head, max(0, genesis_time - time.time()) + SLOW, stack, interval=1)
        # Both participants' clients propose: blocks by keys of each key range (each key is in one
        # wallet only). Proposers are drawn per slot from all 16 keys, so within 20 slots both
        # halves have proposed unless something is wrong (chance of a miss by luck: 2 in 10^6).
        ranges = [range(int(start), int(end)) for _, start, end, _ in plan]
        seen: dict[int, int] = {}  # slot -> proposer of a block with an execution payload
        payloads: dict[int, str] = {}  # execution block number -> hash, as the beacon blocks carry them

        def scan():
            head_slot = int(beacon_get("/eth/v1/beacon/headers/head")["data"]["header"]["message"]["slot"])
            for slot in range(1, head_slot + 1):
                if slot in seen:
                    continue
                try:
                    b = beacon_get(f"/eth/v2/beacon/blocks/{slot}")["data"]["message"]
                except Exception:  # an empty slot answers 404
                    continue
                payload = b["body"]["execution_payload"]
                payloads[int(payload["block_number"])] = payload["block_hash"]
                seen[slot] = int(b["proposer_index"])
            both = all(any(p in r for p in seen.values()) for r in ranges)
            return both and len(seen) >= 3 and int(rpc(el, "eth_blockNumber"), 16) >= 3
        wait_until("execution blocks past 2, in beacon blocks proposed by both validator clients' keys",
                   scan, 20 * SLOT + 60, stack, interval=2)
        assert set(seen.values()) <= set(range(validators))
        assert sorted(payloads) == list(range(1, len(payloads) + 1)), f"payload numbers {sorted(payloads)}"
        for n, h in payloads.items():
            assert rpc(el, "eth_getBlockByNumber", hex(n), False)["hash"] == h, f"geth's block {n} is not the payload"
        print(f"genesis image: {len(seen)} blocks up to slot {max(seen)}, execution head "
              f"{int(rpc(el, 'eth_blockNumber'), 16)}, proposers {sorted(set(seen.values()))}")
    except BaseException:
        print(stack.diagnostics())
        raise
    finally:
        stack.stop_all()
