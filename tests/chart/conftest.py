"""Shared fixtures of the chart tests: paths, the helm runner, and each ci/ scenario rendered once.

Every scenario in charts/eth-enclave/ci/ is a test parameter, so a new scenario file is linted,
rendered, validated and checked without touching the tests.
"""

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # e2e: the harness shared with the other suites
CHART = ROOT / "charts" / "eth-enclave"
SCENARIOS = sorted((CHART / "ci").glob("*.yaml"))
SCENARIO_IDS = [p.stem for p in SCENARIOS]
RELEASE = "t"
NAMESPACE = "devnet"
# Kubernetes versions the chart supports (Chart.yaml kubeVersion >=1.29); kubernetes-validate
# 1.37.0 carries schemas up to 1.37.
KUBE_VERSIONS = [f"1.{m}.0" for m in range(29, 38)]
# The version helm renders for (the API server the tests build is the same minor).
RENDER_KUBE_VERSION = "1.34.4"
MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def tool(var):
    value = os.environ.get(var)
    if not value:
        pytest.fail(f"{var} is not set: run scripts/tools.sh and source ~/.cache/ethwatch/tools/env.sh")
    return value


def helm(*args, check=True, env=None):
    """Run helm; on failure the assertion shows its stderr."""
    proc = subprocess.run([tool("ETHWATCH_HELM"), *args], capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
    return proc


@functools.lru_cache(maxsize=None)
def render_text(scenario: str, extra: tuple = ()) -> str:
    return helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
        "--kube-version", RENDER_KUBE_VERSION, "-f", str(CHART / "ci" / f"{scenario}.yaml"), *extra,
    ).stdout


def render(scenario: str, extra: tuple = ()):
    """The rendered objects of a scenario (hooks and helm tests included)."""
    return [d for d in yaml.safe_load_all(render_text(scenario, extra)) if d]


def merge(base, over):
    """Helm's values merge: maps merge key by key, anything else (lists too) is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(over)


@functools.lru_cache(maxsize=None)
def _values(scenario):
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    over = yaml.safe_load((CHART / "ci" / f"{scenario}.yaml").read_text()) or {}
    return merge(defaults, over)


def values(scenario):
    """The scenario's effective values (chart defaults overlaid with the scenario file)."""
    return copy.deepcopy(_values(scenario))


def expected_participants(scenario):
    """Participants as the chart must expand them: defaults, numbering, node and key offsets."""
    v = values(scenario)
    np = v["network_params"]
    out, key, node = [], 0, 0
    for i, p in enumerate(v["participants"], start=1):
        count = p.get("count", 1)
        vc = p.get("validator_count")
        vc = np["num_validator_keys_per_node"] if vc is None else vc
        el, cl = p.get("el_type", "reth"), p.get("cl_type", "lighthouse")
        full = f"{RELEASE}-eth-enclave"
        out.append(dict(
            index=i, count=count, validator_count=vc, key_start=key, node_offset=node,
            el=f"{full}-el-{i}-{el}-{cl}", cl=f"{full}-cl-{i}-{cl}-{el}", vc=f"{full}-vc-{i}-{el}-{cl}",
        ))
        key += count * vc
        node += count
    return out


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_specs(docs):
    """(object, pod spec) of every object that runs pods."""
    for d in docs:
        if d["kind"] in ("StatefulSet", "Job", "Deployment"):
            yield d, d["spec"]["template"]["spec"]
        elif d["kind"] == "Pod":
            yield d, d["spec"]


def is_hook(doc):
    return "helm.sh/hook" in (doc["metadata"].get("annotations") or {})


@pytest.fixture(params=SCENARIOS, ids=SCENARIO_IDS)
def scenario(request):
    return request.param.stem
