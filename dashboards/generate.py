#!/usr/bin/env python3
"""Write ethwatch's Grafana dashboards: this file -> dashboards/*.json (the JSON the chart ships).

    python3 dashboards/generate.py           # rewrite dashboards/*.json
    python3 dashboards/generate.py --check   # exit 1 (with a diff) if a JSON file is stale

Dashboards as code, as the monitoring mixins do: every panel is made by the same few helpers, so
each one gets the `${datasource}` variable, a unit, a description and a place in the grid that
does not overlap another, and the variables, links and uids are the same on all five. Edit this
file, run it, then run scripts/sync-chart.sh (the chart's copies are tested for drift).

Label conventions (what the chart's ServiceMonitors put on every sidecar series):
- `namespace`: the enclave; `pod`: the node's pod (a sidecar shares its node's pod);
- `eth_enclave_participant`: the participant index, the same on the execution and the beacon pod
  of one node, so one variable (`node`) shows both sides of it.
Only the standard library is used. Over 600 lines on purpose: most of it is the five dashboards'
panels, one call each, and a dashboard reads best as one list in one place.
"""

from __future__ import annotations

import argparse
import difflib
import json
import pathlib
import sys

DIR = pathlib.Path(__file__).resolve().parent
SCHEMA_VERSION = 39
NODE_LABEL = "eth_enclave_participant"
TAGS = ["ethwatch", "ethereum"]

UIDS = {
    "overview": "ethwatch-network-overview",
    "node": "ethwatch-node-details",
    "validators": "ethwatch-validators",
    "resources": "ethwatch-resources",
    "txpool": "ethwatch-txpool",
}
FILES = {
    "overview": "network-overview.json",
    "node": "node-details.json",
    "validators": "validator-performance.json",
    "resources": "resource-utilisation.json",
    "txpool": "transaction-pool.json",
}

DS = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace="$namespace"'
NODE1 = f'namespace="$namespace", {NODE_LABEL}="$node"'  # node details: one node
NODES = f'namespace="$namespace", {NODE_LABEL}=~"$node"'  # the others: one, several or all
RI = "$__rate_interval"
# Containers of the pods, without the pod cgroup ("") and the pause container.
CONTAINERS = 'container!="", container!="POD"'


def node_link(var: str) -> str:
    """URL of Node details for the node named by `var` (a Grafana data-link variable)."""
    return (f"/d/{UIDS['node']}/ethwatch-node-details?var-datasource=${{datasource}}"
            f"&var-tempo=${{tempo}}&var-namespace=${{namespace}}&var-node={var}&${{__url_time_range}}")


# --- panels ------------------------------------------------------------------------------------


class Grid:
    """Places panels left to right in rows of 24 columns; a new row starts when one is full."""

    def __init__(self):
        self.panels: list[dict] = []
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def _newline(self):
        self.y += self.row_h
        self.x = 0
        self.row_h = 0

    def row(self, title: str):
        if self.x:
            self._newline()
        self.panels.append({"type": "row", "id": self.next_id, "title": title, "collapsed": False,
                            "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}, "panels": []})
        self.next_id += 1
        self.y += 1

    def add(self, panel: dict, w: int, h: int):
        if self.x + w > 24:
            self._newline()
        panel["id"] = self.next_id
        self.next_id += 1
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)
        if self.x >= 24:
            self._newline()


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False,
           exemplar: bool = False, table: bool = False) -> dict:
    t = {"datasource": DS, "refId": ref, "expr": expr, "legendFormat": legend or "__auto",
         "range": not instant, "instant": instant, "editorMode": "code"}
    if exemplar:
        t["exemplar"] = True
    if table:
        t["format"] = "table"
    return t


def targets(*exprs) -> list[dict]:
    """(expr, legend) pairs, or dicts of target() arguments, refIds A, B, ..."""
    out = []
    for i, e in enumerate(exprs):
        kw = dict(e) if isinstance(e, dict) else {"expr": e[0], "legend": e[1]}
        out.append(target(ref=chr(ord("A") + i), **kw))
    return out


def _panel(kind: str, title: str, desc: str, unit: str, tgts: list[dict], **extra) -> dict:
    p = {
        "type": kind, "title": title, "description": desc, "datasource": DS, "targets": tgts,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
    }
    p.update(extra)
    return p


def timeseries(title, desc, unit, *exprs, stack=False, min0=True, links=None, decimals=None,
               max1=False, legend_calcs=("lastNotNull",), draw="line", log=None):
    custom = {"drawStyle": draw, "lineWidth": 1, "fillOpacity": 10 if not stack else 40,
              "showPoints": "never", "spanNulls": False,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    if log:
        custom["scaleDistribution"] = {"type": "log", "log": log}
    if draw == "points":
        custom.update({"showPoints": "always", "pointSize": 5, "fillOpacity": 0})
    d = {"unit": unit, "custom": custom, "color": {"mode": "palette-classic"}}
    if min0:
        d["min"] = 0
    if max1:
        d["max"] = 1
    if decimals is not None:
        d["decimals"] = decimals
    if links:
        d["links"] = links
    p = _panel("timeseries", title, desc, unit, targets(*exprs))
    p["fieldConfig"]["defaults"] = d
    p["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                               "calcs": list(legend_calcs)},
                    "tooltip": {"mode": "multi", "sort": "desc"}}
    return p


def stat(title, desc, unit, *exprs, thresholds=None, mappings=None, color_mode="background",
         decimals=None, links=None):
    d = {"unit": unit, "color": {"mode": "thresholds"},
         "thresholds": {"mode": "absolute",
                        "steps": thresholds or [{"color": "green", "value": None}]}}
    if mappings:
        d["mappings"] = mappings
    if decimals is not None:
        d["decimals"] = decimals
    if links:
        d["links"] = links
    tg = targets(*exprs)
    for t in tg:
        t["instant"], t["range"] = True, False
    p = _panel("stat", title, desc, unit, tg)
    p["fieldConfig"]["defaults"] = d
    p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": color_mode, "graphMode": "none", "textMode": "value_and_name",
                    "justifyMode": "auto", "orientation": "auto"}
    return p


def bargauge(title, desc, unit, *exprs, max_=None, thresholds=None):
    d = {"unit": unit, "min": 0, "color": {"mode": "thresholds"},
         "thresholds": {"mode": "absolute",
                        "steps": thresholds or [{"color": "green", "value": None}]}}
    if max_ is not None:
        d["max"] = max_
    tg = targets(*exprs)
    for t in tg:
        t["instant"], t["range"] = True, False
    p = _panel("bargauge", title, desc, unit, tg)
    p["fieldConfig"]["defaults"] = d
    p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True}
    return p


def table(title, desc, unit, columns, join_on, links_on=None, overrides=None):
    """An instant table: one query per column (`{label: expr}`), joined on `join_on`."""
    tg = []
    for i, (name, expr) in enumerate(columns.items()):
        t = target(expr, ref=chr(ord("A") + i), instant=True, table=True)
        t["legendFormat"] = name
        tg.append(t)
    p = _panel("table", title, desc, unit, tg)
    renames = {f"Value #{t['refId']}": name for t, name in zip(tg, columns)}
    p["transformations"] = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {
            "excludeByName": {"Time": True},
            "indexByName": {join_on: 0, **{n: i + 1 for i, n in enumerate(columns)}},
            "renameByName": renames}},
    ]
    ov = list(overrides or [])
    if links_on:
        ov.append({"matcher": {"id": "byName", "options": links_on[0]},
                   "properties": [{"id": "links", "value": [links_on[1]]}]})
    p["fieldConfig"]["overrides"] = ov
    p["options"] = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    return p


def unit_override(name_regex: str, unit: str) -> dict:
    return {"matcher": {"id": "byRegexp", "options": name_regex},
            "properties": [{"id": "unit", "value": unit}]}


# --- dashboard ---------------------------------------------------------------------------------


def variables(node: str | None) -> list[dict]:
    """`datasource` (Prometheus), `tempo`, `namespace` and, unless None, the node variable:
    "single" (Node details) or "multi" (with All)."""
    vs = [
        {"type": "datasource", "name": "datasource", "label": "Prometheus", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
        {"type": "datasource", "name": "tempo", "label": "Tempo", "query": "tempo",
         "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
        {"type": "query", "name": "namespace", "label": "Namespace", "datasource": DS,
         "definition": "label_values(ethwatch_build_info, namespace)",
         "query": {"query": "label_values(ethwatch_build_info, namespace)",
                   "refId": "PrometheusVariableQueryEditor-VariableQuery"},
         "refresh": 2, "sort": 1, "current": {}, "hide": 0, "includeAll": False, "multi": False,
         "options": [], "regex": ""},
    ]
    if node:
        q = f'label_values(ethwatch_build_info{{namespace="$namespace"}}, {NODE_LABEL})'
        vs.append({
            "type": "query", "name": "node", "label": "Node (participant)", "datasource": DS,
            "description": "A node of the enclave: its execution and beacon pods share the "
                           "participant label the chart's ServiceMonitors set.",
            "definition": q, "query": {"query": q, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2, "sort": 3, "current": {}, "hide": 0, "regex": "", "options": [],
            "includeAll": node == "multi", "multi": node == "multi",
        })
    return vs


def dashboard(key: str, title: str, desc: str, grid: Grid, node: str | None,
              refresh: str = "30s", time_from: str = "now-1h") -> dict:
    return {
        "uid": UIDS[key],
        "title": title,
        "description": desc,
        "tags": TAGS,
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "__inputs": [],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.4.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            {"type": "datasource", "id": "tempo", "name": "Tempo", "version": "1.0.0"},
        ],
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": [{"title": "ethwatch dashboards", "type": "dashboards", "tags": ["ethwatch"],
                   "asDropdown": True, "includeVars": True, "keepTime": True,
                   "targetBlank": False, "icon": "external link", "tooltip": "", "url": ""}],
        "templating": {"list": variables(node)},
        "panels": grid.panels,
    }


# --- the five dashboards -------------------------------------------------------------------------

BUILDERS: dict = {}  # key -> a function returning the dashboard, in the order of this file


def board(key: str, title: str, node: str | None, desc: str):
    """A dashboard: the decorated function adds its rows and panels to a fresh Grid; it becomes a
    function returning the whole dashboard (uid, title, variables...), listed in BUILDERS."""
    def wrap(fill):
        def build() -> dict:
            g = Grid()
            fill(g)
            return dashboard(key, title, desc, g, node)
        build.__name__ = fill.__name__
        BUILDERS[key] = build
        return build
    return wrap

UP_MAP = [{"type": "value", "options": {"0": {"text": "down", "color": "red"},
                                        "1": {"text": "up", "color": "green"}}}]
NO_YES = [{"type": "value", "options": {"0": {"text": "no"}, "1": {"text": "yes"}}}]
RED_ABOVE_0 = [{"color": "green", "value": None}, {"color": "red", "value": 1}]
TO_NODE = {"title": "Node details of participant ${__field.labels.%s}" % NODE_LABEL,
           "url": node_link("${__field.labels.%s}" % NODE_LABEL)}


def latency(metric: str, by: str, sel: str, q: float) -> str:
    return (f"histogram_quantile({q}, sum by (pod, {by}, le) "
            f"(rate({metric}_bucket{{{sel}}}[{RI}])))")


def mean(metric: str, by: str, sel: str) -> str:
    return (f"sum by (pod, {by}) (rate({metric}_sum{{{sel}}}[{RI}]))"
            f" / sum by (pod, {by}) (rate({metric}_count{{{sel}}}[{RI}]))")


def error_ratio(errors: str, requests: str, by: str, sel: str) -> str:
    """Errors / requests per `by`; 0 (not nothing) for what had requests and no error."""
    return (f"(sum by (pod, {by}) (rate({errors}{{{sel}}}[{RI}]))"
            f" or sum by (pod, {by}) (rate({requests}_count{{{sel}}}[{RI}])) * 0)"
            f" / sum by (pod, {by}) (rate({requests}_count{{{sel}}}[{RI}]))")


# The panels Node details has once per layer (execution, consensus), of one node (NODE1).
def traced_latency(title: str, desc: str, histogram: str, by: str) -> dict:
    """p99 of the sidecar's requests to its node per `by`, with exemplars and a link to its traces."""
    return timeseries(title, desc, "s",
                      {"expr": latency(histogram, by, NODE1, 0.99), "legend": "{{%s}}" % by, "exemplar": True},
                      links=[{"title": "Traces of this node in Tempo", "url": tempo_search("${__field.labels.pod}")}])


def error_ratio_by(title: str, desc: str, errors: str, histogram: str, by: str) -> dict:
    """Failed requests over all requests, per `by`."""
    return timeseries(title, desc, "percentunit", (error_ratio(errors, histogram, by, NODE1), "{{%s}}" % by))


def arrival_delay(title: str, desc: str, histogram: str) -> dict:
    """Mean and p99 of a block arrival delay histogram."""
    return timeseries(title, desc, "s", (mean(histogram, NODE_LABEL, NODE1), "mean"),
                      (latency(histogram, NODE_LABEL, NODE1, 0.99), "p99"))


@board("overview", "ethwatch / Network overview", node=None,
       desc="Every node of the enclave in one view: heads, blocks, finality, peers, alerts and agreement.")
def overview(g: Grid) -> None:
    g.row("Is the network healthy?")
    g.add(stat("Execution nodes up", "Execution sidecars whose node answered their last poll, out of all execution sidecars (eth_el_up).", "none",
               (f"sum(eth_el_up{{{NS}}})", "up"), (f"count(eth_el_up{{{NS}}})", "of")), 4, 4)
    g.add(stat("Beacon nodes up", "Beacon sidecars whose node answered their last poll, out of all beacon sidecars (eth_cl_up).", "none",
               (f"sum(eth_cl_up{{{NS}}})", "up"), (f"count(eth_cl_up{{{NS}}})", "of")), 4, 4)
    g.add(stat("Nodes down or syncing", "Nodes that did not answer, and nodes that report they are syncing (either layer). Anything above 0 is red.", "none",
               (f"sum(1 - eth_el_up{{{NS}}}) + sum(1 - eth_cl_up{{{NS}}})", "down"),
               (f"sum(eth_el_syncing{{{NS}}}) + sum(eth_cl_syncing{{{NS}}})", "syncing"),
               thresholds=RED_ABOVE_0), 4, 4)
    g.add(stat("Exporters down", "ethwatch targets Prometheus could not scrape (up == 0): their nodes are unobserved, not necessarily down.", "none",
               (f'sum(1 - up{{{NS}, job=~".*ethwatch.*"}})', "down"), thresholds=RED_ABOVE_0), 4, 4)
    g.add(stat("Alerts firing", "ethwatch alerts firing in this namespace, by severity (ALERTS from the rules in alerts/).", "none",
              (f'count(ALERTS{{{NS}, alertstate="firing", severity="critical"}}) or vector(0)', "critical"),
              (f'count(ALERTS{{{NS}, alertstate="firing", severity="warning"}}) or vector(0)', "warning"),
              thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}]), 4, 4)
    g.add(stat("Finality distance", "The worst beacon node's wall-clock epoch minus finalized epoch; a healthy chain finalizes 2 epochs back.", "none",
               (f"max(eth_cl_finality_distance_epochs{{{NS}}})", "epochs"),
               thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 4}, {"color": "red", "value": 8}]), 4, 4)
    g.add(table("Nodes", "One row per node (participant): both layers' state at a glance. Click a participant for its Node details.", "none", {
        "execution up": f"max by ({NODE_LABEL}) (eth_el_up{{{NS}}})",
        "beacon up": f"max by ({NODE_LABEL}) (eth_cl_up{{{NS}}})",
        "head block": f"max by ({NODE_LABEL}) (eth_el_head_block_number{{{NS}}})",
        "head slot": f"max by ({NODE_LABEL}) (eth_cl_head_slot{{{NS}}})",
        "head age (s)": f"max by ({NODE_LABEL}) (eth_el_head_age_seconds{{{NS}}})",
        "slots behind clock": f"max by ({NODE_LABEL}) (eth_cl_head_lag_slots{{{NS}}})",
        "beacon peers": f'max by ({NODE_LABEL}) (eth_cl_peers{{{NS}, state="connected"}})',
    }, NODE_LABEL, links_on=(NODE_LABEL, {"title": "Node details",
                                          "url": node_link("${__value.raw}")}),
        overrides=[{"matcher": {"id": "byRegexp", "options": ".* up"},
                    "properties": [{"id": "mappings", "value": UP_MAP},
                                   {"id": "custom.cellOptions", "value": {"type": "color-background"}}]}]),
        24, 6)

    g.row("Heads and blocks")
    g.add(timeseries("Execution head behind the best node", "Each execution node's head block, minus the highest head in the namespace: 0 is in step, a growing gap is a node falling behind. Click a line for its Node details.", "none",
                     (f"scalar(max(eth_el_head_block_number{{{NS}}})) - eth_el_head_block_number{{{NS}}}", "{{pod}}"),
                     links=[TO_NODE], decimals=0), 8, 8)
    g.add(timeseries("Beacon head lag", "Wall-clock slot minus each beacon node's head slot (computed by the sidecar at scrape time): 0 or 1 is healthy.", "none",
                     (f"eth_cl_head_lag_slots{{{NS}}}", "{{pod}}"), links=[TO_NODE], decimals=0), 8, 8)
    g.add(timeseries("Head age", "Seconds since each execution node's head block was made, against the expected block interval (dashed).", "s",
                     (f"eth_el_head_age_seconds{{{NS}}}", "{{pod}}"),
                     (f"max(eth_el_expected_block_interval_seconds{{{NS}}})", "expected interval"),
                     links=[TO_NODE]), 8, 8)
    g.add(timeseries("Block rate", "New head blocks per second seen by each node's sidecar (execution blocks and beacon blocks).", "ops",
                     (f"rate(eth_el_blocks_total{{{NS}}}[{RI}])", "{{pod}} execution"),
                     (f"rate(eth_cl_blocks_total{{{NS}}}[{RI}])", "{{pod}} beacon"),
                     links=[TO_NODE]), 8, 8)
    g.add(timeseries("Block interval", "Mean and 99th percentile of the time between consecutive execution blocks' timestamps, per node.", "s",
                     (mean("eth_el_block_interval_seconds", NODE_LABEL, NS), "{{pod}} mean"),
                     (latency("eth_el_block_interval_seconds", NODE_LABEL, NS, 0.99), "{{pod}} p99")), 8, 8)
    g.add(timeseries("Missed slots and reorgs", "Slots with no canonical block, and reorgs (both layers), per node over the rate interval.", "short",
                     (f"increase(eth_cl_missed_slots_total{{{NS}}}[{RI}])", "{{pod}} missed slots"),
                     (f"increase(eth_cl_reorgs_total{{{NS}}}[{RI}])", "{{pod}} beacon reorgs"),
                     (f"increase(eth_el_reorgs_total{{{NS}}}[{RI}])", "{{pod}} execution reorgs"),
                     draw="bars"), 8, 8)

    g.row("Finality and peers")
    g.add(timeseries("Finality distance", "Wall-clock epoch minus finalized epoch per beacon node; above 4 the chain is not finalizing (EthwatchConsensusFinalityStalled).", "none",
                     (f"eth_cl_finality_distance_epochs{{{NS}}}", "{{pod}}"), links=[TO_NODE], decimals=0), 8, 8)
    g.add(timeseries("Finalized and justified epoch", "The finality checkpoints each beacon node reports.", "none",
                     (f"eth_cl_finalized_epoch{{{NS}}}", "{{pod}} finalized"),
                     (f"eth_cl_justified_epoch{{{NS}}}", "{{pod}} justified"), min0=False, decimals=0), 8, 8)
    g.add(timeseries("Peers per node", "Connected peers of each node: beacon (peer_count) and execution (net_peerCount, absent on clients without it, such as anvil).", "short",
                     (f'eth_cl_peers{{{NS}, state="connected"}}', "{{pod}} beacon"),
                     (f"eth_el_peers{{{NS}}}", "{{pod}} execution"), links=[TO_NODE], decimals=0), 8, 8)

    g.row("Do the nodes agree? (ethwatch network)")
    g.add(stat("Distinct heads", "Distinct block hashes (roots) at the height every node reached, per layer: more than 1 means the network is split.", "none",
               ('eth_network_distinct_heads{%s}' % NS, "{{layer}}"),
               thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 2}]), 6, 6)
    g.add(stat("Nodes by state", "What the network watcher saw in its last cycle: nodes up, syncing or down, per layer.", "none",
               (f'sum by (layer, state) (eth_network_nodes{{{NS}}})', "{{layer}} {{state}}"),
               color_mode="value"), 6, 6)
    g.add(timeseries("Head spread", "Highest head minus lowest head among the nodes that answered (blocks for execution, slots for consensus).", "none",
                     (f"eth_network_head_spread{{{NS}}}", "{{layer}}"), decimals=0), 6, 6)
    g.add(timeseries("Nodes off the majority chain", "Nodes whose block at the common height is not the one most nodes have (0 is healthy).", "none",
                     (f"sum by (layer) (1 - eth_network_node_on_majority_chain{{{NS}}})", "{{layer}}"),
                     decimals=0), 6, 6)


@board("node", "ethwatch / Node details", node="single",
       desc="One node, execution and consensus side by side: latency with traces, errors, sync, peers, volume.")
def node_details(g: Grid) -> None:
    g.row("Execution | Consensus")
    g.add(stat("Execution node", "Whether the execution node answered its sidecar's last poll, and whether it is syncing.", "none",
               (f"eth_el_up{{{NODE1}}}", "up"), (f"eth_el_syncing{{{NODE1}}}", "syncing"),
               mappings=NO_YES), 4, 4)
    g.add(stat("Execution head", "Head block number and seconds since its timestamp.", "none",
               (f"eth_el_head_block_number{{{NODE1}}}", "block"),
               {"expr": f"eth_el_head_age_seconds{{{NODE1}}}", "legend": "age (s)"}, decimals=0,
               color_mode="value"), 8, 4)
    g.add(stat("Beacon node", "Whether the beacon node answered, whether it is syncing, and whether its head is optimistic (payload not verified by its execution client).", "none",
               (f"eth_cl_up{{{NODE1}}}", "up"), (f"eth_cl_syncing{{{NODE1}}}", "syncing"),
               (f"eth_cl_optimistic{{{NODE1}}}", "optimistic"),
               mappings=NO_YES), 4, 4)
    g.add(stat("Beacon head", "Head slot, slots behind the wall clock, and finality distance in epochs.", "none",
               (f"eth_cl_head_slot{{{NODE1}}}", "slot"), (f"eth_cl_head_lag_slots{{{NODE1}}}", "lag"),
               (f"eth_cl_finality_distance_epochs{{{NODE1}}}", "finality"), decimals=0,
               color_mode="value"), 8, 4)

    g.add(traced_latency("JSON-RPC latency by method", "99th percentile of the sidecar's JSON-RPC calls to the execution node, per method (methods of one batch share its round trip). Dots are exemplars: hover one and follow its trace_id to Tempo.",
                         "eth_el_rpc_request_duration_seconds", "method"), 12, 8)
    g.add(traced_latency("Beacon API latency by route", "99th percentile of the sidecar's Beacon API requests per templated route (for the event stream: until it opened). Dots are exemplars linking to the trace in Tempo.",
                         "eth_cl_api_request_duration_seconds", "route"), 12, 8)
    g.add(error_ratio_by("JSON-RPC error ratio by method", "Failed calls over all calls, per method (0 while a method has calls and no failure). Kinds: timeout, connect, http_status, decode, rpc_error, too_large.",
                         "eth_el_rpc_errors_total", "eth_el_rpc_request_duration_seconds", "method"), 6, 8)
    g.add(timeseries("JSON-RPC errors by kind", "Failed JSON-RPC calls per second by method and kind (rpc_error on a method the client lacks is counted once per re-probe).", "reqps",
                     (f"sum by (method, kind) (rate(eth_el_rpc_errors_total{{{NODE1}}}[{RI}]))", "{{method}} {{kind}}")), 6, 8)
    g.add(error_ratio_by("Beacon API error ratio by route", "Failed requests over all requests, per route (0 while a route has requests and no failure).",
                         "eth_cl_api_errors_total", "eth_cl_api_request_duration_seconds", "route"), 6, 8)
    g.add(timeseries("Beacon API requests by route", "Beacon API requests per second the sidecar makes, per route: its load on the node.", "reqps",
                     (f"sum by (route) (rate(eth_cl_api_request_duration_seconds_count{{{NODE1}}}[{RI}]))", "{{route}}")), 6, 8)

    g.add(timeseries("Execution sync", "Blocks between the node's synced block and the highest it knows of (0 when not syncing), and whether eth_syncing reports progress.", "none",
                     (f"eth_el_sync_highest_block{{{NODE1}}} - eth_el_sync_current_block{{{NODE1}}}", "blocks to sync"),
                     (f"eth_el_syncing{{{NODE1}}}", "syncing"), decimals=0), 6, 7)
    g.add(arrival_delay("Execution block arrival delay", "When a newHeads notification arrived, minus the block's timestamp (mean and p99).",
                        "eth_el_block_arrival_delay_seconds"), 6, 7)
    g.add(timeseries("Beacon sync", "Slots the node reports it still has to sync, and its syncing and optimistic flags.", "none",
                     (f"eth_cl_sync_distance_slots{{{NODE1}}}", "sync distance"),
                     (f"eth_cl_syncing{{{NODE1}}}", "syncing"),
                     (f"eth_cl_optimistic{{{NODE1}}}", "optimistic"), decimals=0), 6, 7)
    g.add(arrival_delay("Beacon block arrival delay", "When a head event arrived, from the start of its slot (mean and p99).",
                        "eth_cl_block_arrival_delay_seconds"), 6, 7)

    g.add(timeseries("Peers", "Connected peers: beacon by direction (inbound, outbound), and the execution node's net_peerCount where the client has it.", "short",
                     (f"eth_cl_peers_by_direction{{{NODE1}}}", "beacon {{direction}}"),
                     (f'eth_cl_peers{{{NODE1}, state="connected"}}', "beacon connected"),
                     (f"eth_el_peers{{{NODE1}}}", "execution"), decimals=0), 8, 7)
    g.add(timeseries("Streams", "1 while the execution newHeads subscription and the beacon event stream are open; a 0 means heads arrive only by polling.", "none",
                     (f"eth_el_subscription_connected{{{NODE1}}}", "execution newHeads"),
                     (f"eth_cl_events_stream_connected{{{NODE1}}}", "beacon events"),
                     max1=True, decimals=0), 8, 7)
    g.add(timeseries("Volume use", "Share of each data volume in use, as the sidecars read it with statvfs (alerts at 80 % and 90 %).", "percentunit",
                     (f"1 - ethwatch_volume_available_bytes{{{NODE1}}} / ethwatch_volume_size_bytes{{{NODE1}}}", "{{pod}} {{path}}"),
                     max1=True), 8, 7)
    g.add(timeseries("Collectors failing", "How many collectors of each sidecar failed their last run or ask for a method the node lacks (0 is healthy); the Collector status table names them.", "none",
                     (f"sum by (pod) (1 - ethwatch_collector_success{{{NODE1}}})", "{{pod}}"), decimals=0), 6, 7)
    g.add(table("Collector status", "Each collector of the node's sidecars: 1 when its last run succeeded, 0 when it failed or the node lacks its method (anvil has no net_peerCount), and how stale its values are.", "none", {
        "ok": f"ethwatch_collector_success{{{NODE1}}}",
        "seconds since success": f"time() - ethwatch_collector_last_success_timestamp_seconds{{{NODE1}}}",
    }, "collector", overrides=[
        {"matcher": {"id": "byName", "options": "ok"},
         "properties": [{"id": "mappings", "value": [{"type": "value", "options": {
             "0": {"text": "failing", "color": "red"}, "1": {"text": "ok", "color": "green"}}}]},
                        {"id": "custom.cellOptions", "value": {"type": "color-background"}}]},
        unit_override("seconds since success", "s")]), 6, 7)
    g.add(timeseries("Beacon events by topic", "Events per second on the beacon node's event stream, by topic.", "ops",
                     (f"sum by (topic) (rate(eth_cl_events_total{{{NODE1}}}[{RI}]))", "{{topic}}")), 12, 7)


def tempo_search(pod_var: str) -> str:
    """Explore on the Tempo data source: the node's traces (resource attribute k8s.pod.name)."""
    query = json.dumps({"datasource": "${tempo}", "queries": [{
        "refId": "A", "datasource": {"type": "tempo", "uid": "${tempo}"}, "queryType": "traceql",
        "query": '{resource.k8s.pod.name="%s"}' % pod_var}], "range": {"from": "${__from}", "to": "${__to}"}},
        separators=(",", ":"))
    return "/explore?left=" + query


@board("validators", "ethwatch / Validator performance", node="multi",
       desc="Validators by status, balance, participation per epoch and missed proposals.")
def validators(g: Grid) -> None:
    g.row("Validators")
    # Every sidecar reports the same network-wide set (unless --validators.id): max, not sum.
    g.add(stat("Active validators", "Validators active now (active_ongoing + active_exiting), as the selected beacon nodes report them.", "none",
               (f'max(sum by (pod) (eth_cl_validators{{{NODES}, status=~"active_ongoing|active_exiting"}}))', "active"),
               color_mode="value"), 6, 5)
    g.add(stat("Total balance", "Total balance of the counted validators (eth_cl_validators_balance_gwei / 1e9).", "suffix: ETH",
               (f"max(eth_cl_validators_balance_gwei{{{NODES}}}) / 1e9", "balance"), decimals=3,
               color_mode="value"), 6, 5)
    g.add(stat("Participation (last complete epoch)", "Share of active validators whose timely vote was correct, per duty, for the epoch in eth_cl_epoch_participation_epoch (clock epoch minus 2).", "percentunit",
               (f"min by (duty) (eth_cl_epoch_participation_ratio{{{NODES}}})", "{{duty}}"),
               thresholds=[{"color": "red", "value": None}, {"color": "orange", "value": 0.8},
                           {"color": "green", "value": 0.95}], decimals=1), 6, 5)
    g.add(stat("Missed slots (1h)", "Slots with no canonical block in the last hour, as the worst of the selected beacon nodes saw them.", "none",
               (f"max(increase(eth_cl_missed_slots_total{{{NODES}}}[1h]))", "missed"), decimals=0,
               thresholds=RED_ABOVE_0), 6, 5)
    g.add(timeseries("Validators by status", "Validators per status of the Beacon API (pending, active, exited, withdrawal...).", "none",
                     (f"max by (status) (eth_cl_validators{{{NODES}}}) > 0", "{{status}}"),
                     stack=True, decimals=0), 12, 8)
    g.add(timeseries("Balance change per epoch", "Slope of the counted validators' total balance, scaled to one epoch: rewards minus penalties (negative while validators miss duties).", "suffix: ETH",
                     (f"max(deriv(eth_cl_validators_balance_gwei{{{NODES}}}[{RI}])"
                      f" * eth_cl_seconds_per_slot{{{NODES}}} * eth_cl_slots_per_epoch{{{NODES}}}) / 1e9", "per epoch"),
                     min0=False), 12, 8)
    g.add(timeseries("Participation per epoch", "Participation ratio of each duty for the latest complete epoch, per beacon node (from attestation rewards or liveness).", "percentunit",
                     (f"eth_cl_epoch_participation_ratio{{{NODES}}}", "{{pod}} {{duty}}"), max1=True), 12, 8)
    g.add(timeseries("Missed slots and block production", "Blocks added to the head and slots missed, per second, per beacon node: a missed slot is a missed proposal.", "ops",
                     (f"rate(eth_cl_blocks_total{{{NODES}}}[{RI}])", "{{pod}} blocks"),
                     (f"rate(eth_cl_missed_slots_total{{{NODES}}}[{RI}])", "{{pod}} missed slots")), 12, 8)
    g.add(timeseries("Missed slot ratio", "Missed slots over all slots that passed (missed + blocks), per beacon node.", "percentunit",
                     (f"rate(eth_cl_missed_slots_total{{{NODES}}}[{RI}])"
                      f" / (rate(eth_cl_missed_slots_total{{{NODES}}}[{RI}]) + rate(eth_cl_blocks_total{{{NODES}}}[{RI}]))", "{{pod}}"),
                     max1=True), 12, 7)
    g.add(timeseries("Epochs", "The epoch the participation describes, the finalized and the justified epoch.", "none",
                     (f"eth_cl_epoch_participation_epoch{{{NODES}}}", "{{pod}} participation epoch"),
                     (f"eth_cl_finalized_epoch{{{NODES}}}", "{{pod}} finalized"),
                     (f"eth_cl_justified_epoch{{{NODES}}}", "{{pod}} justified"), min0=False, decimals=0), 12, 7)

    g.row("Each node's own validators (sidecars with --validators.id)")
    g.add(table("Own validators per node", "Per beacon node: how many validator ids its sidecar watches (--validators.id; 0 = the whole network, and the columns below describe the network), the share of them that attested in time in the last complete epoch (EthwatchValidatorsNotAttesting below 50 %), and their proposals in the last hour (EthwatchValidatorsMissedProposals on any miss; only with --validators.id).", "none", {
        "watched ids": f"eth_cl_validators_watched_ids{{{NODES}}}",
        "attested (source)": f'eth_cl_epoch_participation_ratio{{{NODES}, duty="source"}}',
        "proposed (1h)": f'sum by (pod) (increase(eth_cl_validators_proposals_total{{{NODES}, result="proposed"}}[1h]))',
        "missed proposals (1h)": f'sum by (pod) (increase(eth_cl_validators_proposals_total{{{NODES}, result="missed"}}[1h]))',
    }, "pod", overrides=[
        unit_override(r"attested \(source\)", "percentunit"),
        {"matcher": {"id": "byName", "options": "missed proposals (1h)"},
         "properties": [{"id": "decimals", "value": 0},
                        {"id": "thresholds", "value": {"mode": "absolute", "steps": RED_ABOVE_0}},
                        {"id": "custom.cellOptions", "value": {"type": "color-text"}}]}]), 12, 7)
    g.add(timeseries("Own validators' proposals", "Proposals of each node's watched validators (--validators.id), proposed and missed, each judged a slot after its slot; beside them the missed slots of the whole network as the node saw them.", "none",
                     (f"sum by (pod, result) (increase(eth_cl_validators_proposals_total{{{NODES}}}[{RI}]))", "{{pod}} own {{result}}"),
                     (f"increase(eth_cl_missed_slots_total{{{NODES}}}[{RI}])", "{{pod}} missed slots (network)"),
                     decimals=0, draw="bars"), 12, 7)


@board("resources", "ethwatch / Resource utilisation", node=None,
       desc="CPU, memory, volumes and restarts per pod against requests and limits, and the exporters' own footprint.")
def resources(g: Grid) -> None:
    k8s = " Kubernetes series (cAdvisor, kube-state-metrics, kubelet): empty without them."
    cpu = f"rate(container_cpu_usage_seconds_total{{{NS}, {CONTAINERS}}}[{RI}])"
    mem = f"container_memory_working_set_bytes{{{NS}, {CONTAINERS}}}"
    g.row("Pods against their requests and limits")
    g.add(timeseries("CPU per container", "CPU cores each container uses, with its request and limit (dashed)." + k8s, "short",
                     (f"sum by (pod, container) ({cpu})", "{{pod}} {{container}}"),
                     (f'sum by (pod, container) (kube_pod_container_resource_requests{{{NS}, resource="cpu", {CONTAINERS}}})', "{{pod}} {{container}} request"),
                     (f'sum by (pod, container) (kube_pod_container_resource_limits{{{NS}, resource="cpu", {CONTAINERS}}})', "{{pod}} {{container}} limit")), 12, 8)
    g.add(timeseries("Memory per container", "Working set of each container (what the OOM killer judges), with its request and limit." + k8s, "bytes",
                     (f"sum by (pod, container) ({mem})", "{{pod}} {{container}}"),
                     (f'sum by (pod, container) (kube_pod_container_resource_requests{{{NS}, resource="memory", {CONTAINERS}}})', "{{pod}} {{container}} request"),
                     (f'sum by (pod, container) (kube_pod_container_resource_limits{{{NS}, resource="memory", {CONTAINERS}}})', "{{pod}} {{container}} limit")), 12, 8)
    g.add(bargauge("CPU use of the limit", "CPU use over the CPU limit per container; the alert fires above 80 %." + k8s, "percentunit",
                   (f"sum by (pod, container) ({cpu}) / sum by (pod, container) (kube_pod_container_resource_limits{{{NS}, resource=\"cpu\", {CONTAINERS}}})", "{{pod}} {{container}}"),
                   max_=1, thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 0.8}, {"color": "red", "value": 0.95}]), 8, 8)
    g.add(bargauge("Memory use of the limit", "Working set over the memory limit per container; the alert fires above 80 %." + k8s, "percentunit",
                   (f"sum by (pod, container) ({mem}) / sum by (pod, container) (kube_pod_container_resource_limits{{{NS}, resource=\"memory\", {CONTAINERS}}})", "{{pod}} {{container}}"),
                   max_=1, thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 0.8}, {"color": "red", "value": 0.95}]), 8, 8)
    g.add(bargauge("Restarts (1h)", "Container restarts in the last hour; more than 2 pages (EthwatchPodRestarting)." + k8s, "none",
                   (f"sum by (pod, container) (increase(kube_pod_container_status_restarts_total{{{NS}, {CONTAINERS}}}[1h]))", "{{pod}} {{container}}"),
                   thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}, {"color": "red", "value": 3}]), 8, 8)

    g.row("Volumes")
    g.add(timeseries("Volume use (sidecars)", "Share of each node's data volume in use, read by its ethwatch sidecar (statvfs on --volume.path).", "percentunit",
                     (f"1 - ethwatch_volume_available_bytes{{{NS}}} / ethwatch_volume_size_bytes{{{NS}}}", "{{pod}} {{path}}"),
                     max1=True), 8, 8)
    g.add(timeseries("Volume free (sidecars)", "Bytes still available on each node's data volume, and its size.", "bytes",
                     (f"ethwatch_volume_available_bytes{{{NS}}}", "{{pod}} available"),
                     (f"ethwatch_volume_size_bytes{{{NS}}}", "{{pod}} size")), 8, 8)
    g.add(timeseries("PVC use (kubelet)", "Used over capacity of each PersistentVolumeClaim, from the kubelet's volume stats." + k8s, "percentunit",
                     (f"kubelet_volume_stats_used_bytes{{{NS}}} / kubelet_volume_stats_capacity_bytes{{{NS}}}", "{{persistentvolumeclaim}}"),
                     max1=True), 8, 8)

    g.row("The exporters' own footprint")
    g.add(timeseries("Sidecar CPU and memory", "CPU cores and working set of the ethwatch sidecar containers (container=\"ethwatch\")." + k8s, "short",
                     (f'sum by (pod) (rate(container_cpu_usage_seconds_total{{{NS}, container="ethwatch"}}[{RI}]))', "{{pod}} CPU"),
                     (f'sum by (pod) (container_memory_working_set_bytes{{{NS}, container="ethwatch"}})', "{{pod}} memory")), 8, 8)
    p = g.panels[-1]
    p["fieldConfig"]["overrides"] = [unit_override(".* memory", "bytes")]
    g.add(timeseries("Slowest collector run", "How long the slowest collector's last run took in each exporter (per-collector times: ethwatch_collector_duration_seconds).", "s",
                     (f"max by (pod) (ethwatch_collector_duration_seconds{{{NS}}})", "{{pod}}")), 8, 8)
    g.add(timeseries("Scrape duration", "Time Prometheus spends scraping each ethwatch exporter.", "s",
                     (f'scrape_duration_seconds{{{NS}, job=~".*ethwatch.*"}}', "{{pod}}")), 6, 7)
    g.add(timeseries("Samples per scrape", "Samples each ethwatch exporter serves per scrape: the driver of its scrape cost and of Prometheus' storage.", "short",
                     (f'scrape_samples_scraped{{{NS}, job=~".*ethwatch.*"}}', "{{pod}}"), decimals=0), 6, 7)
    g.add(timeseries("Requests to the nodes", "Requests per second each exporter makes to its node(s) (JSON-RPC, Beacon API, and the network watcher's calls).", "reqps",
                     (f"sum by (pod) (rate(eth_el_rpc_request_duration_seconds_count{{{NS}}}[{RI}]))", "{{pod}} JSON-RPC"),
                     (f"sum by (pod) (rate(eth_cl_api_request_duration_seconds_count{{{NS}}}[{RI}]))", "{{pod}} Beacon API"),
                     (f"sum by (pod) (rate(eth_network_request_duration_seconds_count{{{NS}}}[{RI}]))", "{{pod}} watcher")), 6, 7)
    g.add(timeseries("Trace spans", "Spans per second sent to Tempo, and spans dropped (receiver down or slow: queue_full; failed batch: export_failed).", "ops",
                     (f"sum by (pod) (rate(ethwatch_trace_spans_exported_total{{{NS}}}[{RI}]))", "{{pod}} exported"),
                     (f"sum by (pod) (rate(ethwatch_trace_spans_dropped_total{{{NS}}}[{RI}]))", "{{pod}} dropped")), 6, 7)


@board("txpool", "ethwatch / Transaction pool", node="multi",
       desc="Pending and queued transactions per node, gas used against the limit, base fee and transactions per block.")
def txpool(g: Grid) -> None:
    g.row("Transaction pool")
    g.add(stat("Pending", "Transactions ready to be included, per node (txpool_status).", "none",
               (f'eth_el_txpool_transactions{{{NODES}, status="pending"}}', "{{pod}}"), color_mode="value"), 6, 5)
    g.add(stat("Queued", "Transactions waiting on a nonce gap or funds, per node.", "none",
               (f'eth_el_txpool_transactions{{{NODES}, status="queued"}}', "{{pod}}"), color_mode="value"), 6, 5)
    g.add(stat("Base fee", "Base fee per gas of each node's head block (1 Gwei = 1e9 wei).", "si:wei",
               (f"eth_el_head_base_fee_per_gas_wei{{{NODES}}}", "{{pod}}"), color_mode="value"), 6, 5)
    g.add(stat("Block fullness", "Gas used over gas limit of each node's head block.", "percentunit",
               (f"eth_el_head_gas_used{{{NODES}}} / eth_el_head_gas_limit{{{NODES}}}", "{{pod}}"), decimals=1,
               color_mode="value"), 6, 5)
    g.add(timeseries("Pending and queued per node", "Transactions in each node's pool by status: pending grows when blocks cannot keep up, queued when senders skip nonces.", "short",
                     (f"eth_el_txpool_transactions{{{NODES}}}", "{{pod}} {{status}}"), decimals=0), 12, 8)
    g.add(timeseries("Gas used vs gas limit", "Gas used by each node's head block, against the block's gas limit.", "short",
                     (f"eth_el_head_gas_used{{{NODES}}}", "{{pod}} used"),
                     (f"eth_el_head_gas_limit{{{NODES}}}", "{{pod}} limit")), 12, 8)
    g.add(timeseries("Base fee", "Base fee per gas of the head block, on a log scale: it rises up to 12.5 % a block while blocks are more than half full and falls while they are less.", "si:wei",
                     (f"eth_el_head_base_fee_per_gas_wei{{{NODES}}}", "{{pod}}"), min0=False, log=10), 8, 8)
    g.add(timeseries("Transactions per block", "Transactions in each node's polled head block.", "short",
                     (f"eth_el_head_transactions{{{NODES}}}", "{{pod}}"), decimals=0, draw="points"), 8, 8)
    g.add(timeseries("Transactions per second", "Estimate: average transactions per head block times blocks per second.", "ops",
                     (f"avg_over_time(eth_el_head_transactions{{{NODES}}}[{RI}]) * rate(eth_el_blocks_total{{{NODES}}}[{RI}])", "{{pod}}")), 8, 8)




def render() -> dict[str, str]:
    return {FILES[k]: json.dumps(b(), indent=2, ensure_ascii=False) + "\n" for k, b in BUILDERS.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if dashboards/*.json are stale")
    ap.add_argument("--out", type=pathlib.Path, default=DIR)
    args = ap.parse_args()
    out = render()
    if args.check:
        stale = []
        for name, text in out.items():
            path = args.out / name
            have = path.read_text() if path.exists() else ""
            if have != text:
                stale.append(name)
                sys.stdout.writelines(difflib.unified_diff(
                    have.splitlines(True), text.splitlines(True), str(path), f"{name} (generated)", n=1))
        extra = sorted(p.name for p in args.out.glob("*.json") if p.name not in out)
        if stale or extra:
            print(f"dashboards out of date: {stale} {('not generated: ' + str(extra)) if extra else ''};"
                  " run python3 dashboards/generate.py", file=sys.stderr)
            return 1
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in out.items():
        (args.out / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
