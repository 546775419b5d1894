"""The Reth and Lighthouse pods against what the clients need (issue 18): the validator client
without the --datadir its --validators-dir/--secrets-dir conflict with, node identities that
survive pod replacement without persistence, a key reserve that still lets the chain finalize,
Reth's discv5 port exposed and allowed, and a genesis time that leaves the pods time to start.
(Node 0's bootnodes are run for real in test_scripts.py; every command line is parsed against the
clients' recorded CLIs in test_cli_contract.py.)"""

import base64
import re

import pytest
import yaml

from conftest import (CHART, NAMESPACE, RELEASE, RENDER_KUBE_VERSION, expected_participants, helm, one, render,
                      values)

FULL = f"{RELEASE}-eth-enclave"
# The order of secp256k1's group: a secret key is an integer in [1, N).
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def container(sts, name):
    return next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def script(sts, name):
    return container(sts, name)["args"][0]


def script_of(c):
    return c["args"][0]


def client_of(sts):
    return sts["metadata"]["labels"]["eth-enclave/client"]


def init(sts, name):
    return next(c for c in sts["spec"]["template"]["spec"]["initContainers"] if c["name"] == name)


def volumes(sts):
    return {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}


def test_validator_client_has_no_datadir(scenario):
    """Lighthouse declares --validators-dir and --secrets-dir in conflict with --datadir: with all
    three every validator client exits at argument parsing."""
    docs = render(scenario)
    vcs = [p for p in expected_participants(scenario) if p["validator_count"] > 0]
    assert vcs
    for p in vcs:
        sts = one(docs, "StatefulSet", p["vc"])
        if client_of(sts) == "prysm":
            # Prysm: its wallet and its slashing-protection database, both on the keys volume
            args = container(sts, "prysm")["args"]
            assert "--wallet-dir=/validator-keys/prysm" in args and "--datadir=/validator-keys/prysm-db" in args
            assert "--wallet-password-file=/validator-keys/prysm/wallet-password.txt" in args
            continue
        text = script(sts, "lighthouse")
        assert "--validators-dir=/validator-keys/keys" in text and "--secrets-dir=/validator-keys/secrets" in text
        assert "--datadir" not in text.replace("No --datadir", ""), f"{p['vc']} still passes --datadir"


def node_keys(docs):
    secret = one(docs, "Secret", f"{FULL}-node-keys")
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def test_every_node_has_a_fixed_identity_from_the_node_key_secret(scenario):
    """Reth gets --p2p-secret-key and Lighthouse a pre-seeded <network-dir>/key from one Secret, so a
    replaced pod keeps the enode id and peer id the other nodes pin, even on emptyDir storage."""
    docs = render(scenario)
    keys = node_keys(docs)
    want = set()
    for p in expected_participants(scenario):
        i = p["index"]
        want |= {f"el-{i}-{o}" for o in range(p["count"])} | {f"cl-{i}-{o}" for o in range(p["count"])}
        el, cl = one(docs, "StatefulSet", p["el"]), one(docs, "StatefulSet", p["cl"])
        if client_of(el) == "geth":
            assert f"--nodekey=/node-key/el-{i}-${{ORD}}" in script(el, "geth")  # geth reads the same hex
        else:
            assert f"--p2p-secret-key=/node-key/el-{i}-${{ORD}}" in script(el, "reth")
        cl_holder = client_of(cl)
        if client_of(cl) == "prysm":
            # Prysm reads the key as hex from --p2p-priv-key: the bootnode init container writes it
            # (the image has no shell) and the flags file points at it
            boot = script_of(init(cl, "bootnode"))
            assert f'od -An -v -tx1 "/node-key/cl-{i}-${{ORD}}" | tr -d \' \\n\' > /bootnodes/p2p-key' in boot
            assert 'echo "p2p-priv-key: /bootnodes/p2p-key"' in boot
            assert "--config-file=/bootnodes/cl.yaml" in container(cl, "prysm")["args"]
            cl_holder = None
        else:
            text = script(cl, "lighthouse")
            assert f"cp /node-key/cl-{i}-${{ORD}} /data/lighthouse/beacon/network/key" in text
            assert "--network-dir=/data/lighthouse/beacon/network" in text
            assert text.index("/beacon/network/key") < text.index("exec lighthouse"), "the key must be there before start"
        for sts, layer, client in ((el, "el", client_of(el)), (cl, "cl", cl_holder)):
            vol = volumes(sts)["node-key"]["secret"]
            assert vol["secretName"] == f"{FULL}-node-keys"
            assert [x["key"] for x in vol["items"]] == [f"{layer}-{i}-{o}" for o in range(p["count"])]
            holder = container(sts, client) if client else init(sts, "bootnode")
            mounts = {m["name"]: m for m in holder["volumeMounts"]}
            assert mounts["node-key"] == {"name": "node-key", "mountPath": "/node-key", "readOnly": True}
    assert set(keys) == want
    for k, raw in keys.items():
        if k.startswith("el-"):
            # Reth parses the file as exactly 64 hex characters (a newline would not parse)
            assert re.fullmatch(rb"[0-9a-f]{64}", raw), k
            secret = int(raw, 16)
        else:
            assert len(raw) == 32, k  # Lighthouse reads the 32 raw bytes
            secret = int.from_bytes(raw, "big")
        assert 0 < secret < SECP256K1_N, f"{k} is not a secp256k1 secret key"
    assert len(set(keys.values())) == len(keys), "two nodes share a key"


def test_node_keys_from_an_existing_secret():
    docs = render("default-values", ("--set", "secrets.nodeKeys.existingSecret=devnet-node-keys"))
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("node-keys")]
    p = expected_participants("default-values")[0]
    for name in (p["el"], p["cl"]):
        assert volumes(one(docs, "StatefulSet", name))["node-key"]["secret"]["secretName"] == "devnet-node-keys"


def genesis_and_held(scenario):
    want = expected_participants(scenario)
    held = sum(p["count"] * p["validator_count"] for p in want)
    return max(held, values(scenario)["network_params"]["preregistered_validator_count"]), held


def test_every_scenario_can_finalize(scenario):
    """Finality needs two thirds of the genesis validators attesting; keys no validator client holds
    never attest."""
    genesis, held = genesis_and_held(scenario)
    assert held * 3 >= genesis * 2, f"{scenario}: {held} of {genesis} validators held: it can never finalize"


@pytest.mark.parametrize("pre,ok", [(192, True), (193, False), (512, False)])
def test_a_reserve_over_one_third_is_refused(pre, ok):
    """The default participant holds 128 keys: up to 192 in genesis (a 64-key reserve, one third)
    can finalize, 193 never can."""
    proc = helm("template", "t", str(CHART), "--kube-version", RENDER_KUBE_VERSION,
                "--set", f"network_params.preregistered_validator_count={pre}", check=False)
    if ok:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode != 0
        assert (f"preregistered_validator_count is {pre} but validator clients hold only 128 of those keys"
                in proc.stderr and "could never finalize" in proc.stderr), proc.stderr


def test_notes_explain_the_reserve():
    """helm template leaves NOTES.txt out; a client-side dry-run install renders it."""
    proc = helm("install", "t", str(CHART), "--dry-run=client", "-n", NAMESPACE,
                "--set", "network_params.preregistered_validator_count=160")
    assert "validator clients hold 128 of the 160 genesis validators (80%)" in proc.stdout, proc.stdout
    # two thirds of 160 is 106.7: 107 must attest, so 21 of the 128 may be offline
    assert "it stops once more than 21 of the held validators are offline" in proc.stdout
    plain = helm("install", "t", str(CHART), "--dry-run=client", "-n", NAMESPACE)
    assert "Key reserve" not in plain.stdout


def test_reth_discv5_port_is_set_exposed_and_allowed(scenario):
    """Reth runs discv5 beside discv4 on its own UDP port: the chart sets it, exposes it and lets
    execution nodes reach each other on it."""
    v = values(scenario)
    port = v["execution"]["ports"]["discv5"]
    assert port != v["execution"]["ports"]["p2p"], "discv4 and discv5 cannot share one UDP port"
    docs = render(scenario)
    for p in expected_participants(scenario):
        sts = one(docs, "StatefulSet", p["el"])
        if client_of(sts) != "reth":
            continue  # geth runs discv5 on its discovery port (--discovery.port), beside discv4
        assert f"--discovery.v5.port={port}" in script(sts, "reth")
        ports = {x["name"]: x for x in container(sts, "reth")["ports"]}
        assert ports["discv5"] == {"name": "discv5", "containerPort": port, "protocol": "UDP"}
        svc = {x["name"]: x for x in one(docs, "Service", p["el"])["spec"]["ports"]}
        assert svc["discv5"]["port"] == port and svc["discv5"]["protocol"] == "UDP"
    if v["networkPolicy"]["enabled"]:
        pol = one(docs, "NetworkPolicy", f"{FULL}-execution")["spec"]
        udp = {"port": port, "protocol": "UDP"}
        assert any(udp in r.get("ports", []) and any(
            f.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "execution"
            for f in r["from"]) for r in pol["ingress"]), "execution pods do not accept discv5"
        assert any(udp in r.get("ports", []) for r in pol["egress"]), "execution pods may not send discv5"


def test_genesis_time_leaves_the_pods_time_to_start():
    """The genesis time is fixed when the Job runs, before any node pod exists: pulling the client
    images and running the init containers takes minutes on a fresh node, not Kurtosis's 25 s."""
    v = yaml.safe_load((CHART / "values.yaml").read_text())
    assert v["genesis"]["podStartupSeconds"] >= 60
    for extra, startup in (((), v["genesis"]["podStartupSeconds"]), (("--set", "genesis.podStartupSeconds=0"), 0)):
        job = one(render("default-values", extra), "Job", f"{FULL}-genesis")
        gen = next(c for c in job["spec"]["template"]["spec"]["initContainers"] if c["name"] == "generate")
        env = {e["name"]: e["value"] for e in gen["env"]}
        assert (env["GENESIS_TIME"], env["GENESIS_DELAY"], env["POD_STARTUP_SECONDS"], env["TOTAL_NODES"]) == (
            "0", str(v["network_params"]["genesis_delay"]), str(startup), "1")
    # the script adds them all (test_genesis.py runs it and checks the time it fixes)
    script = (CHART / "files" / "scripts" / "genesis.sh").read_text()
    assert "GENESIS_DELAY + POD_STARTUP_SECONDS + 5 + 5 * TOTAL_NODES" in script


def test_geth_is_initialised_from_the_genesis_before_it_starts(scenario):
    """geth keeps its genesis in its database: the geth-init init container writes it from the
    genesis Job's genesis.json into the datadir geth then runs on, on the same data volume."""
    v = values(scenario)
    docs = render(scenario)
    for p in expected_participants(scenario):
        sts = one(docs, "StatefulSet", p["el"])
        if client_of(sts) != "geth":
            continue
        spec = sts["spec"]["template"]["spec"]
        inits = [c["name"] for c in spec["initContainers"]]
        assert "geth-init" in inits and "geth" not in inits
        gi = init(sts, "geth-init")
        assert gi["image"] == container(sts, "geth")["image"], "geth init must be the same geth"
        assert gi["args"][0].strip() == "exec geth init --datadir=/data/geth /genesis/genesis.json"
        mounts = {m["name"]: m["mountPath"] for m in gi["volumeMounts"]}
        assert mounts["data"] == "/data" and mounts["genesis"] == "/genesis"
        text = script(sts, "geth")
        assert "--datadir=/data/geth " in text
        assert f"--networkid={v['network_params']['network_id']} " in text
        ports = {x["name"]: x["containerPort"] for x in container(sts, "geth")["ports"]}
        e = v["execution"]["ports"]
        assert f"--authrpc.port={e['engine']} " in text and ports["engine"] == e["engine"]
        assert "--authrpc.addr=0.0.0.0 " in text and "--authrpc.jwtsecret=/jwt/jwt.hex" in text
        assert f"--http.port={e['rpc']} " in text and ports["rpc"] == e["rpc"]
        assert f"--metrics.port={e['metrics']} " in text and ports["metrics"] == e["metrics"]
        # the execution sidecar polls geth's HTTP JSON-RPC
        side = container(sts, "ethwatch")["args"]
        assert f"--rpc-url=http://127.0.0.1:{e['rpc']}" in side
        # the genesis ConfigMap the init container reads holds the execution genesis
        cm = next(x for x in spec["volumes"] if x["name"] == "genesis")["configMap"]["name"]
        assert cm == f"{FULL}-genesis"


def test_prysm_listens_where_the_sidecar_and_its_validator_client_look(scenario):
    """Prysm's Beacon API port is the one the consensus sidecar polls and the Service exposes; its
    gRPC port is the one its validator client dials; the engine endpoint is its pair's."""
    v = values(scenario)
    docs = render(scenario)
    b = v["beacon"]["ports"]
    for p in expected_participants(scenario):
        cl = one(docs, "StatefulSet", p["cl"])
        if client_of(cl) != "prysm":
            continue
        args = container(cl, "prysm")["args"]
        assert f"--http-port={b['http']}" in args and "--http-host=0.0.0.0" in args
        assert f"--rpc-port={b['grpc']}" in args and f"--monitoring-port={b['metrics']}" in args
        assert "--jwt-secret=/jwt/jwt.hex" in args and "--accept-terms-of-use" in args
        ports = {x["name"]: x["containerPort"] for x in container(cl, "prysm")["ports"]}
        assert ports["http"] == b["http"] and ports["grpc"] == b["grpc"]
        assert f"--beacon-url=http://127.0.0.1:{b['http']}" in container(cl, "ethwatch")["args"]
        svc = {x["name"]: x["port"] for x in one(docs, "Service", p["cl"])["spec"]["ports"]}
        assert svc["http"] == b["http"] and svc["grpc"] == b["grpc"]
        boot = script_of(init(cl, "bootnode"))
        assert (f'echo "execution-endpoint: http://{p["el"]}-${{ORD}}.{p["el"]}.{NAMESPACE}.svc.'
                f'{v["clusterDomain"]}:{v["execution"]["ports"]["engine"]}"') in boot
        if p["validator_count"]:
            vc = one(docs, "StatefulSet", p["vc"])
            if client_of(vc) == "prysm":
                keys = script_of(init(vc, "keys"))
                assert f"svc.{v['clusterDomain']}:{b['grpc']}\" > /validator-keys/prysm-flags.yaml" in keys
