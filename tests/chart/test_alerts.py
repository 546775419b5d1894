"""The PrometheusRule's alerts are configurable through the chart's values and render what
alerts/generate.py renders for the same configuration.

files/alerts/*.yaml are alerts/templates/*.yaml with each ${key} turned into a Helm expression by
scripts/sync-chart.sh (alerts/generate.py --chart); monitoring.prometheusRule.{runbook_url,
selectors, alerts} in values.yaml are alerts/config.yaml's keys and defaults. So: the default values
render exactly alerts/rules/*.yaml, an overlay given as chart values renders exactly
`generate.py --overlay` of the same overlay, both pass promtool, the values do not drift from the
configuration, and the schema rejects what the generator rejects, naming the value."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import CHART, NAMESPACE, RELEASE, RENDER_KUBE_VERSION, ROOT, by_kind, helm, render

GENERATE = ROOT / "alerts" / "generate.py"
E2E_OVERLAY = ROOT / "tests" / "alerts" / "e2e-overlay.yaml"

# Overlays in the generator's format (alerts/config.yaml's keys); as chart values they go under
# monitoring.prometheusRule. Together they reach every formatting path of the Helm helpers.
OVERLAYS = {
    "single-node-devnet": {
        "selectors": {"ethwatch": 'namespace="devnet"', "kubernetes": 'namespace="devnet", container!=""'},
        "alerts": {
            "EthwatchExecutionLowPeers": {"enabled": False},
            "EthwatchConsensusLowPeers": {"enabled": False},
            "EthwatchExecutionBlockProductionStopped": {"enabled": False},
        },
    },
    "thresholds-and-durations": {
        "runbook_url": "https://runbooks.example.org/ethwatch.md",
        "selectors": {"network_by": "namespace, cluster"},
        "alerts": {
            "EthwatchConsensusLowPeers": {"min_peers": 1, "for": "90s"},
            "EthwatchExecutionNodeDown": {"for": "0s"},  # no `for:` at all
            "EthwatchExecutionBlockProductionStopped": {"intervals": 8, "for": "30s"},
            "EthwatchExecutionRpcLatencyHigh": {"quantile": 0.95, "threshold_seconds": 0.25, "window": "2m30s"},
            "EthwatchExecutionRpcErrorsHigh": {"ratio": 0.125},  # |percent: 12.5%
            "EthwatchExecutionDeepReorg": {"max_depth": 4, "for": "1m"},  # |le: "4.0"
            "EthwatchConsensusDeepReorg": {"max_depth": 2.5},  # |le: "2.5"
            "EthwatchVolumeFillingUp": {"horizon": "1d12h", "lookback": "1500ms", "min_used_ratio": 0.33},
            "EthwatchPodRestarting": {"restarts": 5, "window": "2h"},
        },
    },
    "whole-group-off": {  # a group with no rule left renders `rules: []`, as the generator does
        "alerts": {name: {"enabled": False} for name in (
            "EthwatchExecutionHeadBehindNetwork", "EthwatchConsensusHeadBehindNetwork",
            "EthwatchNetworkChainSplit", "EthwatchNetworkNodeOffMajorityChain",
            "EthwatchNetworkPairMismatch", "EthwatchNetworkFinalityDiverged")},
    },
    "e2e": yaml.safe_load(E2E_OVERLAY.read_text()),  # the end-to-end test's shortened for:s
}


def generator():
    spec = importlib.util.spec_from_file_location("alerts_generate", GENERATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def promtool():
    path = os.environ.get("ETHWATCH_PROMTOOL") or shutil.which("promtool")
    if not path:
        pytest.fail("promtool not found: run scripts/tools.sh and source ~/.cache/ethwatch/tools/env.sh")
    return path


def generated_groups(out_dir):
    groups = []
    for f in sorted(out_dir.glob("*.yaml")):
        groups += yaml.safe_load(f.read_text())["groups"]
    return groups


def chart_groups(extra=()):
    rules = by_kind(render("default-values", tuple(extra)), "PrometheusRule")
    assert len(rules) == 1
    return rules[0]["spec"]["groups"]


def values_file(tmp_path, overlay):
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump({"monitoring": {"prometheusRule": overlay}}))
    return path


def promtool_check(tmp_path, groups):
    f = tmp_path / "chart-rules.yaml"
    f.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    proc = subprocess.run([promtool(), "check", "rules", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_default_values_render_alerts_rules(tmp_path):
    groups = chart_groups()
    assert groups == generated_groups(ROOT / "alerts" / "rules")
    promtool_check(tmp_path, groups)


@pytest.mark.parametrize("name", sorted(OVERLAYS))
def test_values_render_what_the_generator_renders_for_them(tmp_path, name):
    overlay_path = tmp_path / "overlay.yaml"
    overlay_path.write_text(yaml.safe_dump(OVERLAYS[name]))
    out = tmp_path / "rules"
    proc = subprocess.run([sys.executable, str(GENERATE), "--overlay", str(overlay_path), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    expected = generated_groups(out)
    assert expected != generated_groups(ROOT / "alerts" / "rules")  # the overlay changes something
    groups = chart_groups(("-f", str(values_file(tmp_path, OVERLAYS[name]))))
    assert groups == expected
    promtool_check(tmp_path, groups)


def test_prometheus_templates_survive_helm():
    """{{ $labels.* }} and {{ $value }} reach Prometheus as text, not evaluated by Helm."""
    for group in chart_groups():
        for rule in group["rules"]:
            assert "{{ $labels.namespace }}/{{ $labels.pod }}" in rule["annotations"]["description"]
            assert "{{ $value" in rule["annotations"]["description"]


def test_values_are_the_configuration():
    """The drift test: values.yaml carries alerts/config.yaml's keys and defaults (with `enabled`
    in every alert), and every value is documented and typed in the schema."""
    gen = generator()
    values = yaml.safe_load((CHART / "values.yaml").read_text())["monitoring"]["prometheusRule"]
    config = gen.load_defaults()
    assert {k: values[k] for k in config} == config
    assert set(values) == set(config) | {"enabled", "additionalLabels"}
    schema = json.loads((CHART / "values.schema.json").read_text())
    rule = schema["properties"]["monitoring"]["properties"]["prometheusRule"]
    assert rule["additionalProperties"] is False
    alerts = rule["properties"]["alerts"]
    assert alerts["additionalProperties"] is False and set(alerts["required"]) == set(config["alerts"])
    for name, acfg in config["alerts"].items():
        entry = alerts["properties"][name]
        assert entry["additionalProperties"] is False and set(entry["required"]) == set(acfg)


@pytest.mark.parametrize(
    "setting, message",
    [
        (["--set", "monitoring.prometheusRule.alerts.EthwatchExecutionLowPeers.min_peer=3"],
         "at '/monitoring/prometheusRule/alerts/EthwatchExecutionLowPeers': additional properties 'min_peer' not allowed"),
        (["--set", "monitoring.prometheusRule.alerts.EthwatchExecutionLowPeers.min_peers=three"],
         "at '/monitoring/prometheusRule/alerts/EthwatchExecutionLowPeers/min_peers': got string, want number"),
        (["--set", "monitoring.prometheusRule.alerts.EthwatchExecutionNodeDown.for=2 minutes"],
         "at '/monitoring/prometheusRule/alerts/EthwatchExecutionNodeDown/for': '2 minutes' does not match pattern"),
        (["--set", "monitoring.prometheusRule.alerts.EthwatchNoSuchAlert.for=1m"],
         "at '/monitoring/prometheusRule/alerts': additional properties 'EthwatchNoSuchAlert' not allowed"),
        (["--set", "monitoring.prometheusRule.selector.ethwatch=x"],
         "at '/monitoring/prometheusRule': additional properties 'selector' not allowed"),
        (["--set", "monitoring.prometheusRule.alerts.EthwatchExecutionLowPeers.enabled=maybe"],
         "at '/monitoring/prometheusRule/alerts/EthwatchExecutionLowPeers/enabled': got string, want boolean"),
        (["--set", "monitoring.prometheusRule.alerts.EthwatchExecutionLowPeers.min_peers=null"],
         "at '/monitoring/prometheusRule/alerts/EthwatchExecutionLowPeers': missing property 'min_peers'"),
        (["--set", "monitoring.prometheusRule.selectors.ethwatch=null"],
         "at '/monitoring/prometheusRule/selectors': missing property 'ethwatch'"),
    ],
    ids=["unknown-key", "wrong-type", "bad-duration", "unknown-alert", "unknown-group", "bool",
         "removed-key", "removed-selector"],
)
def test_schema_rejects_bad_alert_values_naming_them(setting, message):
    proc = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                "--kube-version", RENDER_KUBE_VERSION, *setting, check=False)
    assert proc.returncode != 0, "helm accepted it"
    assert message in proc.stderr, proc.stderr
