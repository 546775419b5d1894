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


def volumes(sts):
    return {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}


def test_validator_client_has_no_datadir(scenario):
    """Lighthouse declares --validators-dir and --secrets-dir in conflict with --datadir: with all
    three every validator client exits at argument parsing."""
    docs = render(scenario)
    vcs = [p for p in expected_participants(scenario) if p["validator_count"] > 0]
    assert vcs
    for p in vcs:
        text = script(one(docs, "StatefulSet", p["vc"]), "lighthouse")
        assert "--validators-dir=/validator-keys/keys" in text and "--secrets-dir=/validator-keys/secrets" in text
        assert "--datadir" not in text.replace("No --datadir", ""), f"{p['vc']} still passes --datadir"
