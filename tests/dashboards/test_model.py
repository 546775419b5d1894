"""The dashboards are valid Grafana dashboard models that follow the project's conventions:
generated from dashboards/generate.py without drift, schemaVersion, stable unique uids, the
${datasource} / Tempo / namespace / node variables, panels with datasource, targets, a unit, a
description and a grid place that overlaps no other, $__rate_interval in every rate, exemplars on
latency panels, and links between the dashboards that point at dashboards that exist."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from dashlib import DASHBOARDS, ROOT, dashboards, panels

DASH = dashboards()
NAMES = sorted(DASH)
EXPECTED = {"network-overview.json", "node-details.json", "validator-performance.json",
            "resource-utilisation.json", "transaction-pool.json"}
UIDS = {d["uid"] for d in DASH.values()}


def test_the_five_dashboards_exist():
    assert set(NAMES) == EXPECTED


def test_generated_without_drift():
    r = subprocess.run([sys.executable, str(DASHBOARDS / "generate.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"dashboards/*.json differ from generate.py's output:\n{r.stdout}{r.stderr}"


def test_chart_copies_are_in_sync():
    r = subprocess.run([str(ROOT / "scripts/sync-chart.sh"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_model(name):
    d = DASH[name]
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36, name
    assert re.fullmatch(r"ethwatch-[a-z0-9-]+", d["uid"]) and len(d["uid"]) <= 40, d["uid"]
    assert d["title"].startswith("ethwatch / ") and d["description"]
    assert "ethwatch" in d["tags"]
    assert d["time"]["from"] and d["refresh"]
    assert "id" not in d or d["id"] is None, "a dashboard id is per Grafana instance: leave it out"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["tempo"]["type"] == "datasource" and variables["tempo"]["query"] == "tempo"
    assert variables["namespace"]["datasource"]["uid"] == "${datasource}"
    # Links to the other dashboards (by tag), keeping the variables and the time range.
    link = d["links"][0]
    assert link["type"] == "dashboards" and link["includeVars"] and link["keepTime"]


def test_uids_are_unique_and_stable():
    assert len(UIDS) == len(DASH)
    assert {d["uid"] for d in DASH.values()} == {
        "ethwatch-network-overview", "ethwatch-node-details", "ethwatch-validators",
        "ethwatch-resources", "ethwatch-txpool"}


@pytest.mark.parametrize("name", NAMES)
def test_panels(name):
    d = DASH[name]
    seen_ids = set()
    for p in d["panels"]:
        assert p["id"] not in seen_ids, f"{name}: panel id {p['id']} twice"
        seen_ids.add(p["id"])
        gp = p["gridPos"]
        assert all(isinstance(gp[k], int) and gp[k] >= 0 for k in ("x", "y", "w", "h")), p["title"]
        assert gp["w"] > 0 and gp["h"] > 0 and gp["x"] + gp["w"] <= 24, p["title"]
    for p in panels(d):
        where = f"{name} / {p['title']}"
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert p["description"].strip(), f"{where}: no description"
        assert p["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"
        assert p["targets"], f"{where}: no query"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), f"{where}: refIds {refs}"
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", where
            assert t["expr"].strip(), where
            assert 'namespace="$namespace"' in t["expr"], f"{where}: query not scoped to $namespace: {t['expr']}"


@pytest.mark.parametrize("name", NAMES)
def test_no_overlapping_panels(name):
    cells = {}
    for p in DASH[name]["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{name}: '{p['title']}' overlaps '{cells[(x, y)]}' at {x},{y}"
                cells[(x, y)] = p["title"]


@pytest.mark.parametrize("name", NAMES)
def test_ranges_use_rate_interval(name):
    """Every range selector is $__rate_interval, except deliberate fixed windows of an hour in
    instant summaries: stat panels ("missed slots (1h)") and tables ("missed proposals (1h)")."""
    for p in panels(DASH[name]):
        for t in p["targets"]:
            for rng in re.findall(r"\[([^\]]+)\]", t["expr"]):
                assert rng == "$__rate_interval" or (rng == "1h" and p["type"] in ("stat", "bargauge", "table")), (
                    f"{name} / {p['title']}: range [{rng}] in {t['expr']}")


def test_latency_panels_have_exemplars_and_a_way_to_tempo():
    found = 0
    for name, d in DASH.items():
        for p in panels(d):
            for t in p["targets"]:
                if "histogram_quantile" in t["expr"] and "_request_duration_seconds" in t["expr"]:
                    found += 1
                    assert t.get("exemplar") is True, f"{name} / {p['title']}: no exemplars"
                    links = p["fieldConfig"]["defaults"].get("links", [])
                    assert any("${tempo}" in l["url"] for l in links), f"{name} / {p['title']}: no Tempo link"
    assert found >= 2  # JSON-RPC and Beacon API


def test_links_reach_node_details_with_the_node_preselected():
    """Links (data links, table cell links) point at dashboards that exist, and the overview's
    lead to Node details with var-node set."""
    urls = []
    for name, d in DASH.items():
        for p in panels(d):
            fc = p["fieldConfig"]
            for l in fc["defaults"].get("links", []):
                urls.append((name, l["url"]))
            for o in fc.get("overrides", []):
                for prop in o["properties"]:
                    if prop["id"] == "links":
                        urls.extend((name, l["url"]) for l in prop["value"])
    for name, url in urls:
        m = re.match(r"^/d/([^/]+)/", url)
        if m:
            assert m.group(1) in UIDS, f"{name}: link to unknown dashboard {url}"
    to_node = [u for n, u in urls if n == "network-overview.json" and u.startswith("/d/ethwatch-node-details/")]
    assert to_node, "the overview has no link to Node details"
    for u in to_node:
        assert re.search(r"var-node=\$\{__(field\.labels\.eth_enclave_participant|value\.raw)\}", u), u
        assert "var-namespace=${namespace}" in u and "var-datasource=${datasource}" in u, u


def test_node_variables():
    node = {v["name"]: v for v in DASH["node-details.json"]["templating"]["list"]}["node"]
    assert not node["multi"] and not node["includeAll"], "Node details shows one node"
    for name in ("validator-performance.json", "transaction-pool.json"):
        v = {v["name"]: v for v in DASH[name]["templating"]["list"]}["node"]
        assert v["multi"] and v["includeAll"], name
    for name, d in DASH.items():
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                assert "$namespace" in v["query"]["query"] or v["name"] == "namespace", (name, v["name"])
