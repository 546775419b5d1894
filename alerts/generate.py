#!/usr/bin/env python3
"""Render ethwatch's alert rules: alerts/templates/*.yaml + alerts/config.yaml -> alerts/rules/*.yaml.

    python3 alerts/generate.py                          # rewrite alerts/rules/ from the defaults
    python3 alerts/generate.py --check                  # exit 1 if alerts/rules/ is stale
    python3 alerts/generate.py --overlay my.yaml --out DIR   # a deployment's own thresholds

The configuration is alerts/config.yaml, optionally overlaid by files that may only set keys it
already has (same type), so a typo fails instead of being ignored. In a template, `${key}` is the
alert's own key under `alerts.<name>` or else a global key by its dotted path; `|seconds`,
`|percent` and `|le` format a value. The generator adds each rule's `for:` and `runbook_url`, drops
rules with `enabled: false`, and fails on an unknown placeholder, an alert without configuration
or a configuration key that no template uses. Needs PyYAML (scripts/tools.sh puts it in the venv
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
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
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


def load_config(overlays: list[pathlib.Path]) -> dict:
    cfg = load_yaml(DEFAULT_CONFIG)
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
    return sum(int(n) * UNIT_SECONDS[u] for n, u in DURATION_PART.findall(text))


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


# --- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--overlay", action="append", default=[], type=pathlib.Path,
                    help="YAML file of values to change (repeatable; later ones win)")
    ap.add_argument("--out", type=pathlib.Path, default=RULES_DIR, help="output directory")
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 and show a diff if --out differs")
    args = ap.parse_args(argv)
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
