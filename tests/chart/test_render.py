"""helm lint --strict and helm template for every scenario, the schema's and the templates' refusals
of bad values, kubernetes-validate --strict for every supported Kubernetes version, and the
Prometheus Operator objects against the operator's own schemas."""

import json
import os
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest

from conftest import (CHART, KUBE_VERSIONS, MONITORING_KINDS, RENDER_KUBE_VERSION, SCENARIOS,
                      SCENARIO_IDS, helm, render, tool)

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("path", SCENARIOS, ids=SCENARIO_IDS)
def test_lint_strict(path):
    proc = helm("lint", "--strict", str(CHART), "-f", str(path), "--kube-version", RENDER_KUBE_VERSION)
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


def test_scenarios_cover_the_issue():
    names = {p.stem for p in SCENARIOS}
    for wanted in ("default-values", "network-params-values", "minimal-two-node-values",
                   "persistence-off-values", "monitoring-off-values", "multi-participant-values"):
        assert wanted in names


def test_template_renders(scenario):
    docs = render(scenario)
    assert docs, "nothing rendered"
    seen = set()
    for d in docs:
        assert d.get("apiVersion") and d.get("kind"), d
        key = (d["kind"], d["metadata"]["name"])
        assert key not in seen, f"{key} rendered twice"
        seen.add(key)
        assert len(d["metadata"]["name"]) <= 63, d["metadata"]["name"]


# Mistakes a user makes, and the message that must name them (schema first, template checks next).
BAD_VALUES = [
    (["--set", "participants[0].el_tpye=reth"], "additional properties 'el_tpye' not allowed"),
    (["--set", "participants[0].el_type=nethermind"], "/participants/0/el_type"),
    (["--set", "participants[0].count=0"], "/participants/0/count"),
    (["--set", "network_params.seconds_per_slot=twelve"], "/network_params/seconds_per_slot"),
    (["--set", "network_params.deposit_contract_address=0x42"], "/network_params/deposit_contract_address"),
    (["--set", "network_params.preset=testnet"], "/network_params/preset"),
    (["--set", "storage.executionSize=200GB"], "/storage/executionSize"),
    (["--set", "scheduling.podAntiAffinity=always"], "/scheduling/podAntiAffinity"),
    (["--set", "persistant=true"], "additional properties 'persistant' not allowed"),
    (["--set", "prometheus_params.enable=true"], "additional properties 'enable' not allowed"),
    (["--set", "tracing.protocol=http"], "/tracing/protocol"),
    (["--set", "ethwatch.network.pollInterval=4"], "/ethwatch/network/pollInterval"),
    (["--set", "ethwatch.network.concurrency=0"], "/ethwatch/network/concurrency"),
    (["--set", "ethwatch.network.replicas=2"], "additional properties 'replicas' not allowed"),
    (["--set", "fullnameOverride=a-very-long-name-that-does-not-fit-anywhere"], "/fullnameOverride"),
    (["--set", "network_params.preregistered_validator_count=10"],
     "preregistered_validator_count is 10 but the participants hold 128 validator keys"),
    (["--set", "participants[0].validator_count=0"], "the network has no validators"),
]


@pytest.mark.parametrize("args,message", BAD_VALUES, ids=[m for _, m in BAD_VALUES])
def test_bad_values_fail_with_a_clear_message(args, message):
    proc = helm("template", "t", str(CHART), "--kube-version", RENDER_KUBE_VERSION, *args, check=False)
    assert proc.returncode != 0, f"{args} rendered"
    assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_kubernetes_validate_strict(scenario, version):
    """Every built-in object against the OpenAPI schemas of each supported version, rejecting
    unknown fields. Custom resources have no schema there; they are checked below."""
    for doc in render(scenario):
        if doc["kind"] in MONITORING_KINDS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(doc, version, strict=True)
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']} on {version}: {e.message} at {list(e.path)}")


def validate_operator_objects(docs):
    """Run the npm package @kubernetes-models/prometheus-operator's validation over the objects."""
    tool("ETHWATCH_K8S_MODELS")
    return subprocess.run(["node", str(HERE / "validate_operator.mjs")], input=json.dumps(docs),
                          capture_output=True, text=True)


def test_operator_objects_validate(scenario):
    docs = [d for d in render(scenario) if d["kind"] in MONITORING_KINDS]
    proc = validate_operator_objects(docs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(docs)} valid" in proc.stdout, proc.stdout


def test_operator_validator_catches_mistakes():
    """The validator itself: wrong types and missing fields are refused."""
    docs = [d for d in render("default-values") if d["kind"] == "ServiceMonitor"][:1]
    assert docs
    broken = json.loads(json.dumps(docs))
    broken[0]["spec"]["endpoints"][0]["interval"] = 15
    proc = validate_operator_objects(broken)
    assert proc.returncode != 0 and "interval" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    rule = [d for d in render("default-values") if d["kind"] == "PrometheusRule"][:1]
    broken = json.loads(json.dumps(rule))
    del broken[0]["spec"]["groups"][0]["rules"][0]["expr"]
    proc = validate_operator_objects(broken)
    assert proc.returncode != 0 and "expr" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
