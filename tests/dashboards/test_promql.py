"""Every dashboard query parses (promtool checks them wrapped as recording rules, with the
template variables filled in) and reads only metrics that ethwatch exports (docs/metrics.md) or
that alerts/standard-metrics.yaml documents as standard series."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from dashlib import ROOT, dashboards, exported_metrics, fill, metric_names, queries, standard_metrics

sys_tool = __import__("common").promtool

DASH = dashboards()


def all_queries():
    out = []
    for name, d in DASH.items():
        for p, t in queries(d):
            out.append((name, p["title"], t["refId"], t["expr"]))
    # Variable queries: label_values(<selector>, label) -> the selector must parse too.
    for name, d in DASH.items():
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                m = re.fullmatch(r"label_values\((.*),\s*\w+\)", v["query"]["query"])
                assert m, f"{name}: variable {v['name']}: {v['query']['query']}"
                out.append((name, f"variable {v['name']}", "-", m.group(1)))
    return out


QUERIES = all_queries()


def test_every_expression_parses_with_promtool(tmp_path):
    rules = []
    for i, (name, title, ref, expr) in enumerate(QUERIES):
        rules.append({"record": f"dashboard:query_{i}", "expr": fill(expr)})
    path = tmp_path / "dashboards.rules.yaml"
    # JSON is YAML: no PyYAML needed to write it.
    path.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}, indent=1))
    r = subprocess.run([sys_tool(), "check", "rules", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        # Name the panels behind the failing rules.
        bad = set(int(n) for n in re.findall(r"dashboard:query_(\d+)", r.stdout + r.stderr))
        where = [f"{QUERIES[i][0]} / {QUERIES[i][1]} [{QUERIES[i][2]}]: {fill(QUERIES[i][3])}" for i in sorted(bad)]
        pytest.fail(f"promtool check rules failed:\n{r.stdout}{r.stderr}\n" + "\n".join(where))
    assert f"SUCCESS: {len(rules)} rules found" in r.stdout, r.stdout


def test_variables_are_all_known():
    for name, title, ref, expr in QUERIES:
        fill(expr)  # raises KeyError on a variable the dashboards do not define


@pytest.mark.parametrize("name", sorted(DASH))
def test_every_metric_is_exported_or_standard(name):
    exported = exported_metrics()
    standard = standard_metrics()
    assert any(m.startswith("eth_cl_") for m in exported), "docs/metrics.md has no consensus section"
    unknown = {}
    for p, t in queries(DASH[name]):
        used = metric_names(t["expr"])
        assert used, f"{p['title']}: no metric found in {t['expr']}"
        bad = sorted(m for m in used if m not in exported and m not in standard)
        if bad:
            unknown[f"{p['title']} [{t['refId']}]"] = bad
    assert not unknown, (
        f"{name} reads metrics that ethwatch does not export (docs/metrics.md) and "
        f"alerts/standard-metrics.yaml does not list: {json.dumps(unknown, indent=1)}")


def test_labels_used_exist_on_the_metrics():
    """A matcher on a label the metric does not have empties the panel: check the ones that
    docs/metrics.md describes (labels column), for ethwatch metrics, beside the target labels."""
    doc = (ROOT / "docs" / "metrics.md").read_text()
    labels_of = {}
    for m in re.finditer(r"^\|\s*`(\w+)`\s*\|\s*([^|]*)\|\s*([^|]*)\|", doc, re.M):
        labels = set(re.findall(r"`(\w+)`", m.group(3)))
        base = m.group(1)
        for suffix in ("", "_bucket", "_sum", "_count"):
            labels_of[base + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    target_labels = {"namespace", "pod", "container", "job", "instance", "eth_enclave_participant",
                     "eth_enclave_client"}
    problems = []
    for name, d in DASH.items():
        for p, t in queries(d):
            for sel in re.finditer(r"\b(\w+)\{([^}]*)\}", t["expr"]):
                metric, matchers = sel.groups()
                if metric not in labels_of:
                    continue
                for lab in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers):
                    if lab not in labels_of[metric] | target_labels:
                        problems.append(f"{name} / {p['title']}: {metric} has no label {lab}")
    assert not problems, "\n".join(problems)
