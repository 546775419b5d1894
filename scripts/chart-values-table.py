#!/usr/bin/env python3
"""Write the values table of charts/eth-enclave/README.md from the `# --` comments of its
values.yaml (the helm-docs convention), between the values-table markers.

    scripts/chart-values-table.py          # rewrite the table
    scripts/chart-values-table.py --check  # exit 1 if the table is stale or a value is undocumented

A comment `# -- text` (continued by further `#` lines) documents the key below it; `# @default --
text` replaces the shown default. Every leaf value must be documented by its own comment or by an
ancestor's (tests/chart/test_docs.py runs --check).
"""

import json
import re
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "eth-enclave"
START, END = "<!-- values-table:start -->", "<!-- values-table:end -->"
KEY = re.compile(r"^(\s*)([A-Za-z_][\w.-]*):(\s.*)?$")


def parse(text):
    """{dotted path: (description, default override)} for every commented key."""
    docs, stack, comment, override, list_indent = {}, [], None, None, None
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if list_indent is not None:
            if not stripped or stripped.startswith("#") or indent > list_indent or stripped.startswith("- "):
                continue
            list_indent = None
        if stripped.startswith("# --"):
            comment = stripped[4:].strip()
            continue
        if stripped.startswith("# @default --"):
            override = stripped[len("# @default --"):].strip()
            continue
        if stripped.startswith("#"):
            if comment is not None:
                comment += " " + stripped[1:].strip()
            continue
        if not stripped:
            continue
        if stripped.startswith("- "):
            list_indent = indent - 1 if indent else 0
            continue
        m = KEY.match(line)
        if not m:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [m.group(2)])
        if comment is not None:
            docs[path] = (comment, override)
        comment, override = None, None
        stack.append((indent, m.group(2)))
    return docs


def leaves(value, path=""):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from leaves(v, f"{path}.{k}" if path else k)
    else:
        yield path


def lookup(values, path):
    for part in path.split("."):
        values = values[part]
    return values


def kind(v):
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}.get(type(v), "null")


def table(values_text):
    values = yaml.safe_load(values_text)
    docs = parse(values_text)
    missing = [p for p in leaves(values) if not any(p == d or p.startswith(d + ".") for d in docs)]
    rows = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for path, (desc, override) in docs.items():
        v = lookup(values, path)
        default = override or json.dumps(v, separators=(", ", ": "))
        if len(default) > 60 and not override:
            default = default[:57] + "..."
        default = default.replace("|", "\\|")
        desc = desc.replace("|", "\\|")
        rows.append(f"| `{path}` | {kind(v)} | `{default}` | {desc} |")
    return "\n".join(rows) + "\n", missing


def main():
    check = sys.argv[1:] == ["--check"]
    readme = CHART / "README.md"
    text = readme.read_text()
    new_table, missing = table((CHART / "values.yaml").read_text())
    if missing:
        print("values without a `# --` comment (on them or a parent): " + ", ".join(missing), file=sys.stderr)
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{new_table}{END}{tail}"
    if check:
        if new != text:
            print("charts/eth-enclave/README.md's values table is stale: run scripts/chart-values-table.py", file=sys.stderr)
            return 1
        return 1 if missing else 0
    readme.write_text(new)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
