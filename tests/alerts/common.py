"""Paths and helpers shared by the alert tests (tests/alerts/)."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ALERTS = ROOT / "alerts"
RULES = ALERTS / "rules"
UNIT_TESTS = ALERTS / "tests"
GENERATE = ALERTS / "generate.py"
METRICS_DOC = ROOT / "docs" / "metrics.md"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
STANDARD_METRICS = ALERTS / "standard-metrics.yaml"
E2E_OVERLAY = pathlib.Path(__file__).resolve().parent / "e2e-overlay.yaml"


def tool(env_name: str, fallback: str) -> str:
    """A tool's path from the ETHWATCH_* variable scripts/tools.sh exports, else from PATH."""
    path = os.environ.get(env_name) or shutil.which(fallback)
    if not path:
        raise RuntimeError(
            f"{fallback} not found: run scripts/tools.sh and `source ~/.cache/ethwatch/tools/env.sh`"
            f" (or set {env_name})"
        )
    return path


def promtool() -> str:
    return tool("ETHWATCH_PROMTOOL", "promtool")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def rule_files(directory: pathlib.Path = RULES) -> list[pathlib.Path]:
    return sorted(directory.glob("*.yaml"))


def alert_rules(directory: pathlib.Path = RULES) -> list[dict]:
    """Every alerting rule of the rule files in `directory`, with its file name under `_file`."""
    out = []
    for path in rule_files(directory):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    out.append({**rule, "_file": path.name})
    return out


# --- PromQL: which metrics an expression reads -------------------------------------------------

_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "atan2", "inf", "nan",
}
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, keywords or label names)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range and subquery selectors
    s = _LABEL_LIST.sub(" ", s)  # label lists of aggregations and vector matching
    names = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", s):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _KEYWORDS:
            continue
        if re.fullmatch(r"\d", word[:1]):
            continue
        names.add(word)
    return names


def exported_metrics(doc: pathlib.Path = METRICS_DOC) -> dict[str, str]:
    """{series name: section} for every metric in docs/metrics.md, histograms expanded."""
    out: dict[str, str] = {}
    section = ""
    for line in doc.read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        m = re.match(r"^\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|\s*([^|]*)\|", line)
        if not m:
            continue
        name, kind = m.group(1), m.group(2).strip()
        out[name] = section
        if kind.startswith("histogram"):
            for suffix in ("_bucket", "_sum", "_count"):
                out[name + suffix] = section
        if kind.startswith("summary"):
            for suffix in ("_sum", "_count"):
                out[name + suffix] = section
    return out


def standard_metrics() -> dict:
    return yaml.safe_load(STANDARD_METRICS.read_text())


def runbook_anchors(doc: pathlib.Path = RUNBOOKS) -> dict[str, str]:
    """{GitHub anchor: section text} for each `## ` section of docs/runbooks.md."""
    sections: dict[str, str] = {}
    current = None
    for line in doc.read_text().splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            current = re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-")
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections
