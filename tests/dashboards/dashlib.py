"""What the dashboard tests (and dashboards/render.py) share: the dashboards, their panels and
queries, the variables filled in, and which metrics a query reads and where they come from."""

from __future__ import annotations

import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
sys.path.insert(0, str(ROOT / "tests" / "alerts"))
sys.path.insert(0, str(ROOT / "tests"))

from common import exported_metrics, metric_names, standard_metrics  # noqa: E402

# What the end-to-end devnet (tests/e2e/devnet.py) calls its enclave and its node.
E2E_VARS = {"namespace": "e2e", "node": "1"}
# $__rate_interval in Grafana is max(4 x scrape interval, step + scrape interval); with the
# devnet's 1 s scrapes, 10 s holds several samples of every counter.
E2E_RATE_INTERVAL = "10s"

# The standard series that only a Kubernetes cluster has (cAdvisor, kube-state-metrics, kubelet):
# a panel reading one of them cannot have data on a devnet of local processes. Decided by the
# `source` that alerts/standard-metrics.yaml documents for the series, not by a list of panels.
K8S_SOURCES = re.compile(r"cAdvisor|kube-state-metrics|kubelet", re.I)


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dash: dict) -> list[dict]:
    """Every panel that is not a row (rows nested in collapsed rows included)."""
    out = []
    for p in dash["panels"]:
        if p["type"] == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


def queries(dash: dict) -> list[tuple[dict, dict]]:
    """(panel, target) for every query of every panel."""
    return [(p, t) for p in panels(dash) for t in p.get("targets", [])]


def fill(expr: str, rate_interval: str = E2E_RATE_INTERVAL, values: dict | None = None) -> str:
    """The expression with Grafana's variables replaced: $var and ${var} by `values` (E2E_VARS by
    default), $__rate_interval and $__interval by a duration."""
    values = {**E2E_VARS, **(values or {})}
    s = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)

    def sub(m):
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"unknown variable ${name} in {expr}")
        return values[name]

    s = re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, s)
    return s


def k8s_metrics() -> set[str]:
    return {name for name, e in standard_metrics().items() if K8S_SOURCES.search(e.get("source", ""))}


def needs_kubernetes(expr: str) -> bool:
    """True when the query reads a series only a Kubernetes cluster provides."""
    return bool(metric_names(expr) & k8s_metrics())


__all__ = ["ROOT", "DASHBOARDS", "E2E_VARS", "E2E_RATE_INTERVAL", "dashboards", "panels", "queries",
           "fill", "needs_kubernetes", "k8s_metrics", "metric_names", "exported_metrics",
           "standard_metrics"]
