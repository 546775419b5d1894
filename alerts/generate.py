#!/usr/bin/env python3
"""Render ethwatch's alert rules: alerts/templates/*.yaml + alerts/config.yaml -> alerts/rules/*.yaml.

    python3 alerts/generate.py                          # rewrite alerts/rules/ from the defaults
    python3 alerts/generate.py --check                  # exit 1 if alerts/rules/ is stale
    python3 alerts/generate.py --overlay my.yaml --out DIR   # a deployment's own thresholds
    python3 alerts/generate.py --chart charts/eth-enclave [--check]   # scripts/sync-chart.sh

The configuration is alerts/config.yaml, optionally overlaid by files that may only set keys it
already has (same type), so a typo fails instead of being ignored. In a template, `${key}` is the
alert's own key under `alerts.<name>` or else a global key by its dotted path; `|seconds`,
`|percent` and `|le` format a value. The generator adds each rule's `for:` and `runbook_url`, drops
rules with `enabled: false` (every alert has `enabled`, true unless config.yaml says otherwise), and
fails on an unknown placeholder, an alert without configuration or a configuration key that no
template uses. `--chart` writes the chart's Helm version of all this (see "the chart" below). Needs PyYAML (scripts/tools.sh puts it in the venv
that $ETHWATCH_PYTHON names).
"""

from __future__ import annotations

import argparse
import copy
import difflib
import pathlib
import re
import sys

import yaml

ALERTS_DIR = pathlib.Path(__file__).resolve().parent
DEFAULT_CONFIG = ALERTS_DIR / "config.yaml"
TEMPLATES_DIR = ALERTS_DIR / "templates"
RULES_DIR = ALERTS_DIR / "rules"

PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.]+)(?:\|([a-z]+))?\}")
DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")
DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
# Milliseconds per unit: whole numbers, so that the chart's Helm helper (integer arithmetic too)
# gets the same seconds for the same duration.
UNIT_MS = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000, "w": 604800000, "y": 31536000000}
# Keys every alert's configuration may have that are not template placeholders.
RESERVED = {"enabled", "for"}


class ConfigError(Exception):
    pass


# --- configuration ---------------------------------------------------------------------------


def load_yaml(path: pathlib.Path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def same_type(a, b) -> bool:
    number = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, number) and isinstance(b, number):
        return True
    return type(a) is type(b)


def merge(base: dict, over: dict, where: str, path: str = "") -> None:
    """Overlays `over` onto `base` in place; only keys that `base` has, with the same type."""
    if not isinstance(over, dict):
        raise ConfigError(f"{where}: {path or 'top level'} must be a mapping")
    for key, value in over.items():
        full = f"{path}{key}"
        if key not in base:
            raise ConfigError(f"{where}: unknown key '{full}' (not in {DEFAULT_CONFIG.name})")
        if isinstance(base[key], dict):
            merge(base[key], value, where, full + ".")
        elif not same_type(base[key], value):
            kind = {bool: "true or false", int: "a number", float: "a number", str: "a string"}
            raise ConfigError(
                f"{where}: '{full}' must be {kind.get(type(base[key]), type(base[key]).__name__)},"
                f" not {value!r}"
            )
        else:
            base[key] = value


def load_defaults() -> dict:
    """alerts/config.yaml, with `enabled: true` first in every alert that does not set it, so an
    overlay (or the chart's values) can turn any alert off."""
    cfg = load_yaml(DEFAULT_CONFIG)
    for name, acfg in cfg["alerts"].items():
        if "enabled" not in acfg:
            cfg["alerts"][name] = {"enabled": True, **acfg}
    return cfg


def load_config(overlays: list[pathlib.Path]) -> dict:
    cfg = load_defaults()
    for path in overlays:
        merge(cfg, load_yaml(path) or {}, str(path))
    for name, acfg in cfg["alerts"].items():
        if "for" not in acfg:
            raise ConfigError(f"alerts.{name}: missing 'for'")
        for key, value in acfg.items():
            if key in ("for", "window", "lookback", "horizon") and not DURATION.match(str(value)):
                raise ConfigError(f"alerts.{name}.{key}: '{value}' is not a Prometheus duration")
    return cfg


# --- rendering -------------------------------------------------------------------------------


def seconds(value) -> float:
    text = str(value)
    if not DURATION.match(text):
        raise ConfigError(f"'{text}' is not a Prometheus duration")
    ms = sum(int(n) * UNIT_MS[u] for n, u in DURATION_PART.findall(text))
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def number(value) -> str:
    """A number as PromQL and humans read it: 3, 0.05, 1.5."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{value!r} is not a number")
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def fmt(value, filt: str | None) -> str:
    if filt is None:
        if isinstance(value, bool) or isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{value!r} cannot be put into a rule")
        return number(value) if isinstance(value, (int, float)) else str(value)
    if filt == "seconds":
        return number(seconds(value))
    if filt == "percent":
        return number(round(float(value) * 100, 6)) + "%"
    if filt == "le":
        # Bucket bounds as the exporters' Rust client writes them: always with a decimal point.
        return repr(float(value))
    raise ConfigError(f"unknown filter '|{filt}'")


def lookup(cfg: dict, acfg: dict, key: str, used: set):
    if "." not in key and key in acfg:
        used.add(key)
        return acfg[key]
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node or part == "alerts":
            raise KeyError(key)
        node = node[part]
    return node


def substitute(text: str, cfg: dict, acfg: dict, used: set, name: str) -> str:
    def repl(m: re.Match) -> str:
        try:
            value = lookup(cfg, acfg, m.group(1), used)
        except KeyError:
            raise ConfigError(f"{name}: unknown placeholder ${{{m.group(1)}}}") from None
        try:
            return fmt(value, m.group(2))
        except ConfigError as e:
            raise ConfigError(f"{name}: ${{{m.group(0)[2:-1]}}}: {e}") from None

    return PLACEHOLDER.sub(repl, text)


def tidy_expr(expr: str) -> str:
    """Drops what an empty selector leaves behind: `{}`, `{, a}`, `{a, }`."""
    expr = re.sub(r"\{\s*,\s*", "{", expr)
    expr = re.sub(r",\s*\}", "}", expr)
    expr = re.sub(r"\{\s*\}", "", expr)
    return expr.rstrip("\n") + ("\n" if "\n" in expr.rstrip("\n") else "")


def render_rule(rule: dict, cfg: dict, name: str, used: set) -> dict | None:
    acfg = cfg["alerts"][name]
    if acfg.get("enabled", True) is False:
        used.update(acfg)
        return None
    for key in ("for", "runbook_url"):
        if key in rule or key in rule.get("annotations", {}):
            raise ConfigError(f"{name}: the template must not set '{key}' (the generator adds it)")
    used.update(RESERVED & acfg.keys())
    sub = lambda s: substitute(s, cfg, acfg, used, name)  # noqa: E731
    out: dict = {"alert": name, "expr": tidy_expr(sub(rule["expr"]))}
    if seconds(acfg["for"]) > 0:
        out["for"] = str(acfg["for"])
    out["labels"] = {k: sub(str(v)) for k, v in rule.get("labels", {}).items()}
    annotations = {k: sub(str(v)).strip() for k, v in rule.get("annotations", {}).items()}
    annotations["runbook_url"] = f"{cfg['runbook_url']}#{name.lower()}"
    out["annotations"] = annotations
    return out


HEADER = """\
# Generated by alerts/generate.py from alerts/templates/{template} and alerts/config.yaml{overlays}.
# Do not edit: change the template or the configuration and run `python3 alerts/generate.py`.
"""


def render_all(cfg: dict, overlays: list[pathlib.Path]) -> dict[str, str]:
    """Returns {file name: rule file text} for every template."""
    unseen = set(cfg["alerts"])
    files: dict[str, str] = {}
    for template in sorted(TEMPLATES_DIR.glob("*.yaml")):
        doc = load_yaml(template)
        groups = []
        for group in doc["groups"]:
            rules = []
            for rule in group["rules"]:
                name = rule["alert"]
                if name not in cfg["alerts"]:
                    raise ConfigError(f"{template.name}: {name} has no entry under 'alerts' in config")
                if name not in unseen:
                    raise ConfigError(f"{template.name}: {name} is defined twice")
                unseen.discard(name)
                used: set = set()
                rendered = render_rule(rule, cfg, name, used)
                unused = set(cfg["alerts"][name]) - used
                if unused:
                    raise ConfigError(f"alerts.{name}: {sorted(unused)} not used by its template")
                if rendered:
                    rules.append(rendered)
            groups.append({"name": group["name"], "rules": rules})
        note = "".join(f" + {p}" for p in overlays)
        files[template.name] = HEADER.format(template=template.name, overlays=note) + dump(
            {"groups": groups}
        )
    if unseen:
        raise ConfigError(f"config has alerts no template defines: {sorted(unseen)}")
    return files


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(doc) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100000, allow_unicode=True)


# --- the chart ---------------------------------------------------------------------------------
#
# The chart (charts/eth-enclave) renders the same rules from its values: `--chart DIR` (run by
# scripts/sync-chart.sh) writes
#   - files/alerts/*.yaml: the templates with every ${key} turned into a Helm expression reading
#     .Values.monitoring.prometheusRule (the chart's PrometheusRule runs them through `tpl`), and
#     the generator's own work (for:, runbook_url, enabled, tidying empty selectors) done by the
#     helpers in templates/_alerts.tpl;
#   - values.yaml: monitoring.prometheusRule.{runbook_url, selectors, alerts} between the BEGIN/END
#     markers, copied from config.yaml with its comments as `# --` documentation;
#   - values.schema.json: the same keys with their types, every key required and no other allowed.
# So the chart's values and a generator overlay are the same document, and for the same values the
# chart renders the generator's rules (tests/chart/test_alerts.py checks it).

VALUES_PATH = "monitoring.prometheusRule"
VALUES_BEGIN = "# BEGIN alerts/config.yaml"
VALUES_END = "# END alerts/config.yaml"
DURATION_KEYS = ("for", "window", "lookback", "horizon")

HELM_HEADER = """\
# Generated by alerts/generate.py --chart from alerts/templates/{template} (scripts/sync-chart.sh).
# Do not edit: a Helm template of the rules, rendered with `tpl` by templates/servicemonitor.yaml;
# each ${{key}} of the source reads .Values.{values}, formatted by templates/_alerts.tpl.
{{{{- $c := .Values.{values} }}}}
"""


def go_string(text: str) -> str:
    """A Go template string literal (JSON's escapes are Go's); Prometheus's own {{ }} inside it
    are plain text to Helm."""
    import json

    return json.dumps(text, ensure_ascii=False)


def helm_value(key: str, cfg: dict, acfg: dict, name: str) -> tuple[str, str]:
    """(Helm expression, path under monitoring.prometheusRule) of a placeholder's key."""
    if "." not in key and key in acfg:
        return helm_field("$a", key), f"alerts.{name}.{key}"
    node, expr = cfg, "$c"
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node or part == "alerts":
            raise ConfigError(f"{name}: unknown placeholder ${{{key}}}")
        node, expr = node[part], helm_field(expr, part)
    return expr, key


def helm_field(expr: str, key: str) -> str:
    return f"{expr}.{key}" if re.fullmatch(r"[A-Za-z_]\w*", key) else f'(index {expr} "{key}")'


def helm_string(text: str, cfg: dict, acfg: dict, name: str, used: set) -> str:
    """A `print` of the text's literal parts and its placeholders' formatted values."""
    parts, last = [], 0
    for m in PLACEHOLDER.finditer(text):
        if m.start() > last:
            parts.append(go_string(text[last:m.start()]))
        key, filt = m.group(1), m.group(2) or ""
        if filt not in ("", "seconds", "percent", "le"):
            raise ConfigError(f"{name}: unknown filter '|{filt}'")
        if "." not in key and key in acfg:
            used.add(key)
        value, path = helm_value(key, cfg, acfg, name)
        parts.append(f'(include "eth-enclave.alerts.fmt" (list {value} "{filt}" "{path}"))')
        last = m.end()
    if last < len(text) or not parts:
        parts.append(go_string(text[last:]))
    if len(parts) == 1 and parts[0].startswith('"'):
        return parts[0]
    return "(print " + " ".join(parts) + ")"


def helm_rule(rule: dict, cfg: dict, name: str, used: set) -> list[str]:
    acfg = cfg["alerts"][name]
    for key in ("for", "runbook_url"):
        if key in rule or key in rule.get("annotations", {}):
            raise ConfigError(f"{name}: the template must not set '{key}' (the generator adds it)")
    used.update(RESERVED & acfg.keys())
    h = lambda s: helm_string(str(s), cfg, acfg, name, used)  # noqa: E731
    lines = [
        f"{{{{- $a := {helm_field('$c.alerts', name)} }}}}",
        "{{- if $a.enabled }}",
        f"  - alert: {name}",
        f'    expr: {{{{ include "eth-enclave.alerts.expr" {h(rule["expr"])} }}}}',
        f'    {{{{- include "eth-enclave.alerts.for" (list $a.for "alerts.{name}.for") }}}}',
    ]
    labels = rule.get("labels", {})
    lines.append("    labels:" + ("" if labels else " {}"))
    lines += [f"      {k}: {{{{ {h(v)} | toJson }}}}" for k, v in labels.items()]
    lines.append("    annotations:")
    lines += [f"      {k}: {{{{ {h(v)} | trim | toJson }}}}" for k, v in rule.get("annotations", {}).items()]
    lines.append(f'      runbook_url: {{{{ print $c.runbook_url {go_string("#" + name.lower())} | toJson }}}}')
    lines.append("{{- end }}")
    return lines


def helm_files(cfg: dict) -> dict[str, str]:
    """{file name: Helm template of its rules} for every template (cfg: the defaults)."""
    files: dict[str, str] = {}
    for template in sorted(TEMPLATES_DIR.glob("*.yaml")):
        lines = ["groups:"]
        for group in load_yaml(template)["groups"]:
            names = [r["alert"] for r in group["rules"]]
            enabled = " ".join(f"{helm_field('$c.alerts', n)}.enabled" for n in names)
            lines += [f"- name: {group['name']}",
                      f"  rules:{{{{ if not (or {enabled}) }}}} []{{{{ end }}}}"]
            for rule in group["rules"]:
                used: set = set()
                lines += helm_rule(rule, cfg, rule["alert"], used)
                unused = set(cfg["alerts"][rule["alert"]]) - used
                if unused:
                    raise ConfigError(f"alerts.{rule['alert']}: {sorted(unused)} not used by its template")
        files[template.name] = (HELM_HEADER.format(template=template.name, values=VALUES_PATH)
                                + "\n".join(lines) + "\n")
    return files


def values_block(indent: str) -> str:
    """config.yaml as chart values: its keys and values verbatim, indented under
    monitoring.prometheusRule, each key's comment as its `# --` documentation, `enabled: true` in
    every alert (load_defaults), and the file's header dropped."""
    cfg, raw = load_defaults(), load_yaml(DEFAULT_CONFIG)
    out = [f"{indent}# The keys of alerts/config.yaml: chart values under {VALUES_PATH} are a",
           f"{indent}# `generate.py --overlay` file and give the same rules (docs/alerts.md). Set them in your",
           f"{indent}# own values (-f or --set-json: --set passes 0.5 as a string); change the defaults there."]
    pending: list[str] = []
    seen_key = False
    key_line = re.compile(r"^(\s*)([A-Za-z_][\w-]*):(.*)$")
    stack: list[tuple[int, str]] = []
    for line in DEFAULT_CONFIG.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped:
            if pending and not seen_key:
                pending = []  # the file's header
            if seen_key and out[-1].strip():
                out.append("")
            continue
        if stripped.startswith("#"):
            text = stripped[1:].strip()
            if text.startswith("---"):
                title = text.strip("- ").strip()
                out.append(f"{indent}{line[:len(line) - len(line.lstrip())]}# {title}")
            else:
                pending.append(text)
            continue
        m = key_line.match(line)
        if not m:
            raise ConfigError(f"config.yaml: cannot turn into values: {line!r}")
        seen_key = True
        depth = len(m.group(1))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        stack.append((depth, m.group(2)))
        if m.group(2) == "alerts" and depth == 0:
            pending = pending or ["Per alert: `enabled` (false leaves it out of the PrometheusRule), `for:`",
                                  "and its thresholds; a key without a comment is explained by its neighbours."]
        for i, text in enumerate(pending):
            out.append(f"{indent}{m.group(1)}# {'-- ' if i == 0 else ''}{text}".rstrip())
        pending = []
        out.append(indent + line)
        path = [k for _, k in stack]
        if len(path) == 2 and path[0] == "alerts" and "enabled" not in raw["alerts"][path[1]]:
            out.append(f"{indent}{m.group(1)}  enabled: true")
    while out and not out[-1].strip():
        out.pop()
    # The values are the defaults, key for key.
    parsed = yaml.safe_load("\n".join(x[len(indent):] if x.startswith(indent) else x for x in out))
    if parsed != {k: cfg[k] for k in parsed} or set(parsed) != set(cfg):
        raise ConfigError("values block differs from config.yaml")
    return "\n".join(out) + "\n"


def schema_of(value, key: str, description: str | None = None) -> dict:
    if isinstance(value, dict):
        out = {"type": "object"}
        if description:
            out["description"] = description
        out["properties"] = {k: schema_of(v, k) for k, v in value.items()}
        out["required"] = list(value)
        out["additionalProperties"] = False
        return out
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, (int, float)):
        return {"type": "number"}
    if key in DURATION_KEYS:
        return {"type": "string", "pattern": DURATION.pattern.replace(r"\d", "[0-9]"),
                "description": "A Prometheus duration (e.g. 30s, 5m, 1h30m)."}
    return {"type": "string"}


def schema_block() -> dict:
    cfg = load_defaults()
    return {
        "runbook_url": {"type": "string", "description": "Base URL of the runbooks; `#<alert in lower case>` is appended."},
        "selectors": schema_of(cfg["selectors"], "selectors", "Label matchers and grouping labels of the rules (alerts/config.yaml)."),
        "alerts": schema_of(cfg["alerts"], "alerts", "Each alert's enabled, for: and thresholds (alerts/config.yaml)."),
    }


def chart_files(chart: pathlib.Path) -> dict[pathlib.Path, str]:
    """{path: the text it must have} for everything --chart writes."""
    out = {chart / "files" / "alerts" / n: t for n, t in helm_files(load_config([])).items()}
    values_path = chart / "values.yaml"
    text = values_path.read_text(encoding="utf-8")
    m = re.search(rf"^([ ]*){re.escape(VALUES_BEGIN)}[^\n]*\n(.*?)^[ ]*{re.escape(VALUES_END)}",
                  text, re.M | re.S)
    if not m:
        raise ConfigError(f"{values_path}: no '{VALUES_BEGIN}' ... '{VALUES_END}' markers")
    out[values_path] = text[:m.start(2)] + values_block(m.group(1)) + text[m.end(2):]
    schema_path = chart / "values.schema.json"
    import json

    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    rule = schema["properties"]["monitoring"]["properties"]["prometheusRule"]
    rule["properties"] = {k: v for k, v in rule["properties"].items() if k not in ("runbook_url", "selectors", "alerts")}
    rule["properties"].update(schema_block())
    rule["required"] = ["runbook_url", "selectors", "alerts"]
    out[schema_path] = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    return out


def sync_chart(chart: pathlib.Path, check: bool) -> int:
    want = chart_files(chart)
    alerts_dir = chart / "files" / "alerts"
    drift = 0
    for stale in sorted(p for p in alerts_dir.glob("*.yaml") if p not in want):
        drift = 1
        if check:
            print(f"drift: {stale} has no template in alerts/templates", file=sys.stderr)
        else:
            stale.unlink()
            print(f"removed {stale}", file=sys.stderr)
    for path, text in want.items():
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old == text:
            continue
        drift = 1
        if check:
            print(f"drift: {path} differs from what alerts/ generates", file=sys.stderr)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}", file=sys.stderr)
    return drift if check else 0


# --- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--overlay", action="append", default=[], type=pathlib.Path,
                    help="YAML file of values to change (repeatable; later ones win)")
    ap.add_argument("--out", type=pathlib.Path, default=RULES_DIR, help="output directory")
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 and show a diff if --out differs")
    ap.add_argument("--chart", type=pathlib.Path, metavar="CHART_DIR",
                    help="write the chart's Helm rule templates, values and schema (scripts/sync-chart.sh)")
    args = ap.parse_args(argv)
    if args.chart:
        try:
            return sync_chart(args.chart, args.check)
        except (ConfigError, OSError, yaml.YAMLError, KeyError) as e:
            print(f"generate.py: error: {e}", file=sys.stderr)
            return 2
    try:
        files = render_all(load_config(args.overlay), args.overlay)
    except (ConfigError, OSError, yaml.YAMLError) as e:
        print(f"generate.py: error: {e}", file=sys.stderr)
        return 2
    if args.check:
        stale = False
        existing = {p.name for p in args.out.glob("*.yaml")} if args.out.is_dir() else set()
        for name in sorted(existing | set(files)):
            path = args.out / name
            old = path.read_text(encoding="utf-8") if path.exists() else ""
            new = files.get(name, "")
            if old != new:
                stale = True
                sys.stdout.writelines(difflib.unified_diff(
                    old.splitlines(True), new.splitlines(True), str(path), f"{path} (generated)"))
        if stale:
            print("generate.py: the rule files are stale: run `python3 alerts/generate.py`",
                  file=sys.stderr)
            return 1
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in set(p.name for p in args.out.glob("*.yaml")) - set(files):
        (args.out / stale).unlink()
    for name, text in files.items():
        (args.out / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
