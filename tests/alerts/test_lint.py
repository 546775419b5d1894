"""Lint of the rendered rules: names, severities, annotations, runbooks, and that every metric a
rule reads is one ethwatch exports (docs/metrics.md) or a documented standard series
(alerts/standard-metrics.yaml)."""

from __future__ import annotations

import re

import pytest

from common import (
    ROOT, RULES, alert_rules, exported_metrics, metric_names, runbook_anchors, standard_metrics,
)

RULES_LIST = alert_rules(RULES)
IDS = [r["alert"] for r in RULES_LIST]
RUNBOOK_PREFIX = "https://github.com/ethwatch/ethwatch/blob/main/docs/runbooks.md#"
# Alerts about a container rather than an ethwatch target have no exporter `instance` to name.
NO_INSTANCE = {"EthwatchContainerCpuHigh", "EthwatchContainerMemoryHigh", "EthwatchPodRestarting"}


def test_there_are_rules_in_every_layer():
    files = {r["_file"] for r in RULES_LIST}
    assert files == {"execution.yaml", "consensus.yaml", "network.yaml", "resources.yaml", "validators.yaml"}


@pytest.mark.parametrize("rule", RULES_LIST, ids=IDS)
def test_name_severity_and_annotations(rule):
    name = rule["alert"]
    assert re.fullmatch(r"Ethwatch(?:[A-Z][a-z0-9]+)+", name), f"{name}: not CamelCase with the Ethwatch prefix"
    assert rule["labels"].get("severity") in {"critical", "warning", "info"}, name
    ann = rule["annotations"]
    assert set(ann) == {"summary", "description", "runbook_url"}, f"{name}: {sorted(ann)}"
    assert ann["summary"].endswith(".") and "{{" not in ann["summary"], f"{name}: summary must be a fixed sentence"
    desc = ann["description"]
    need = ["$labels.namespace", "$labels.pod", "$value"]
    if name not in NO_INSTANCE:
        need.append("$labels.instance")
    for n in need:
        assert n in desc, f"{name}: description does not name {n}"
    assert "${" not in str(rule), f"{name}: unrendered placeholder"


@pytest.mark.parametrize("rule", RULES_LIST, ids=IDS)
def test_runbook_section_exists(rule):
    url = rule["annotations"]["runbook_url"]
    assert url.startswith(RUNBOOK_PREFIX), url
    anchor = url[len(RUNBOOK_PREFIX):]
    sections = runbook_anchors()
    assert anchor in sections, f"docs/runbooks.md has no section '## {rule['alert']}'"
    body = sections[anchor]
    for part in ("Meaning", "Confirm", "Act"):
        assert f"**{part}" in body, f"runbook of {rule['alert']} lacks a **{part}** paragraph"
    assert "```promql" in body, f"runbook of {rule['alert']} has no query to confirm it"


def test_no_runbook_section_without_alert():
    anchors = set(runbook_anchors())
    alerts = {r["alert"].lower() for r in RULES_LIST}
    extra = {a for a in anchors if a.startswith("ethwatch")} - alerts
    assert not extra, f"runbook sections for alerts that do not exist: {sorted(extra)}"


@pytest.mark.parametrize("rule", RULES_LIST, ids=IDS)
def test_every_metric_is_exported_or_standard(rule):
    exported = exported_metrics()
    standard = standard_metrics()
    used = metric_names(rule["expr"])
    assert used, f"{rule['alert']}: no metric found in its expression"
    unknown = sorted(m for m in used if m not in exported and m not in standard)
    assert not unknown, (
        f"{rule['alert']} reads {unknown}: not exported by ethwatch (docs/metrics.md) nor listed "
        f"in alerts/standard-metrics.yaml"
    )


def test_histogram_bucket_bounds_exist():
    """A rule matching le="x" must use a bound the exporter really has (from the golden files)."""
    bounds: dict[str, set[str]] = {}
    for prom in ROOT.glob("exporters/*/tests/golden/*.prom"):
        for m in re.finditer(r'^(\w+_bucket)\{(?:[^}]*,)?le="([^"]+)"', prom.read_text(), re.M):
            bounds.setdefault(m.group(1), set()).add(m.group(2))
    checked = 0
    for rule in RULES_LIST:
        for m in re.finditer(r'(\w+_bucket)\{[^}]*le="([^"]+)"', rule["expr"]):
            metric, le = m.groups()
            if metric in bounds:
                checked += 1
                assert le in bounds[metric], f"{rule['alert']}: {metric} has no bucket le=\"{le}\" (has {sorted(bounds[metric])})"
    assert checked, "no bucket bound was checked against a golden file"


def dashboard_exprs() -> list[str]:
    """Every query of the dashboards (dashboards/*.json), which read the same list of series."""
    import json
    out = []
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for p in [panel, *panel.get("panels", [])]:
                out.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
    return out


def test_standard_metrics_are_documented_and_used():
    exprs = [r["expr"] for r in RULES_LIST] + dashboard_exprs()
    used = set().union(*(metric_names(e) for e in exprs))
    for name, entry in standard_metrics().items():
        for key in ("source", "labels", "used_by", "why"):
            assert entry.get(key), f"alerts/standard-metrics.yaml: {name} lacks '{key}'"
        assert name in used, f"alerts/standard-metrics.yaml: {name} is listed but no rule or dashboard uses it"


def test_metric_name_extraction():
    expr = (
        'histogram_quantile(0.99, sum without (method) (rate(a_bucket{le="1.0", x=~"y|z"}[5m])))'
        " > 1 and ignoring (method) b == 1 or on (ns) group_left (pod) c offset 5m"
        " - max by (namespace) (d:rec) unless floor(e / f)"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c", "d:rec", "e", "f"}
