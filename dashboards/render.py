#!/usr/bin/env python3
"""Draw what each dashboard shows, from live data, as a PNG: the README's pictures (Grafana cannot
run where this project is built, so this plays its part for the main panels).

    # from a devnet it starts itself (anvil, Lodestar, the exporters, Prometheus, traffic):
    "$ETHWATCH_PYTHON" dashboards/render.py --devnet 240 --out docs/img
    # from a Prometheus that already scrapes ethwatch (variables as in the dashboards):
    "$ETHWATCH_PYTHON" dashboards/render.py --prometheus http://127.0.0.1:9090 \\
        --var namespace=e2e --var node=1 --out /tmp/img

Each dashboard's main panels (MAIN below) are queried exactly as the JSON says, with the
variables filled in, and drawn in Grafana's dark style: stat panels as numbers, time series as
lines, bar gauges as bars. Needs matplotlib (the venv of scripts/tools.sh has it).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import re
import sys
import time
import urllib.parse
import urllib.request

DIR = pathlib.Path(__file__).resolve().parent
ROOT = DIR.parent

# The panels each picture shows, by dashboard file and panel title, in order. Panels on
# Kubernetes-only series (cAdvisor, kube-state-metrics, kubelet) are left out: a devnet has none.
MAIN = {
    "network-overview.json": [
        "Execution nodes up", "Beacon nodes up", "Nodes down or syncing", "Alerts firing",
        "Finality distance",
        "Execution head behind the best node", "Beacon head lag", "Head age", "Block rate",
        "Block interval", "Peers per node",
    ],
    "node-details.json": [
        "Execution head", "Beacon head",
        "JSON-RPC latency by method", "Beacon API latency by route",
        "Execution block arrival delay", "Beacon block arrival delay", "Volume use",
        "Collectors failing",
    ],
    "validator-performance.json": [
        "Active validators", "Total balance", "Participation (last complete epoch)",
        "Missed slots (1h)", "Validators by status", "Participation per epoch",
        "Missed slots and block production", "Epochs",
    ],
    "resource-utilisation.json": [
        "Volume use (sidecars)", "Slowest collector run", "Requests to the nodes",
        "Scrape duration", "Samples per scrape", "Trace spans",
    ],
    "transaction-pool.json": [
        "Pending", "Queued", "Base fee", "Block fullness",
        "Pending and queued per node", "Gas used vs gas limit", "Base fee",
        "Transactions per block",
    ],
}

BG, PANEL, TEXT, GRID_C, MUTED = "#111217", "#181b1f", "#d8d9da", "#2c3235", "#8e8e8e"
COLORS = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9",
          "#705da0", "#37872d", "#fade2a", "#447ebc", "#c15c17"]


def fill(expr: str, values: dict, rate_interval: str) -> str:
    s = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], s)


def get(base: str, path: str, **params) -> list:
    url = f"{base}{path}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=15) as r:
        res = json.loads(r.read())
    if res["status"] != "success":
        raise RuntimeError(f"{path} {params}: {res}")
    return res["data"]["result"]


def legend(fmt: str, labels: dict) -> str:
    if not fmt or fmt == "__auto":
        inner = ", ".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__")
        return labels.get("__name__", "") + ("{" + inner + "}" if inner else "") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


SI = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m")]


def fmt_value(v: float, unit: str, decimals=None) -> str:
    if v is None or math.isnan(v):
        return "No data"
    if unit.startswith("si:"):  # Grafana's SI custom unit: si:wei -> 1.2 Gwei
        base = unit[3:]
        if v == 0:
            return f"0 {base}"
        for f, prefix in SI:
            if abs(v) >= f:
                return f"{v / f:.3g} {prefix}{base}"
        return f"{v:.3g} {base}"
    if unit.startswith("suffix:"):
        return f"{v:,.{3 if decimals is None else decimals}f} {unit[7:].strip()}"
    if unit == "percentunit":
        return f"{v * 100:.{1 if decimals is None else decimals}f} %"
    if unit == "s":
        if v == 0:
            return "0 s"
        if abs(v) < 1:
            return f"{v * 1000:.3g} ms"
        return f"{v:.3g} s"
    if unit == "bytes":
        for u in ("B", "KiB", "MiB", "GiB", "TiB"):
            if abs(v) < 1024 or u == "TiB":
                return f"{v:.3g} {u}"
            v /= 1024
    if unit in ("ops", "reqps"):
        return f"{v:.3g} {'req/s' if unit == 'reqps' else '/s'}"
    if decimals is not None:
        return f"{v:,.{decimals}f}"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.3g} M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.3g} K"
    return f"{v:.4g}"


def axis_formatter(unit: str):
    from matplotlib.ticker import FuncFormatter
    return FuncFormatter(lambda v, _: fmt_value(v, unit))


def threshold_color(panel: dict, v: float) -> str:
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
    color = "green"
    for s in steps:
        if s["value"] is None or (v is not None and not math.isnan(v) and v >= s["value"]):
            color = s["color"]
    return {"green": "#37872d", "red": "#c4162a", "orange": "#e0752d", "yellow": "#e0b400"}.get(color, color)


def mapped(panel: dict, v: float) -> str | None:
    for m in panel["fieldConfig"]["defaults"].get("mappings", []):
        opt = m.get("options", {}).get(str(int(v)) if v is not None and float(v).is_integer() else "")
        if opt:
            return opt["text"]
    return None


def draw_stat(ax, panel, base, values, ri):
    ax.set_axis_off()
    items = []
    for t in panel["targets"]:
        for s in get(base, "/api/v1/query", query=fill(t["expr"], values, ri)):
            items.append((legend(t.get("legendFormat"), s["metric"]), float(s["value"][1])))
    if not items:
        items = [("", float("nan"))]
    n = len(items)
    colored = panel["options"].get("colorMode") == "background"
    unit = panel["fieldConfig"]["defaults"]["unit"]
    dec = panel["fieldConfig"]["defaults"].get("decimals")
    for i, (name, v) in enumerate(items):
        x0, w = i / n, 1 / n
        if colored:
            ax.add_patch(__import__("matplotlib").patches.FancyBboxPatch(
                (x0 + 0.01, 0.04), w - 0.02, 0.92, boxstyle="round,pad=0,rounding_size=0.02",
                transform=ax.transAxes, color=threshold_color(panel, v)))
        text = mapped(panel, v) or fmt_value(v, unit, dec)
        ax.text(x0 + w / 2, 0.42, text, ha="center", va="center", fontsize=19 if n < 3 else 15,
                color="white" if colored else threshold_color(panel, v) if panel["fieldConfig"]["defaults"]["thresholds"]["steps"][1:] else "#73bf69",
                fontweight="bold", transform=ax.transAxes)
        ax.text(x0 + w / 2, 0.82, name, ha="center", va="center", fontsize=8.5,
                color="white" if colored else TEXT, transform=ax.transAxes)


def draw_bars(ax, panel, base, values, ri):
    items = []
    for t in panel["targets"]:
        for s in get(base, "/api/v1/query", query=fill(t["expr"], values, ri)):
            items.append((legend(t.get("legendFormat"), s["metric"]), float(s["value"][1])))
    unit = panel["fieldConfig"]["defaults"]["unit"]
    ax.barh([n for n, _ in items], [v for _, v in items], color="#73bf69")
    ax.xaxis.set_major_formatter(axis_formatter(unit))


def _limits(ax, defaults, lo, hi, ymax):
    if "min" in defaults:
        lo = defaults["min"]
    if "max" in defaults:
        hi = max(defaults["max"], hi if hi < defaults["max"] * 1.05 else defaults["max"])
    if not math.isfinite(ymax) or ymax <= lo:  # all zero (or no data): a flat line at the bottom
        hi = lo + 1
    else:
        hi = hi + (hi - lo) * 0.25  # room for the legend
    ax.set_ylim(lo, hi)


def draw_series(ax, panel, base, values, ri, start, end, step):
    unit = panel["fieldConfig"]["defaults"]["unit"]
    overrides = {}
    for o in panel["fieldConfig"].get("overrides", []):
        for prop in o["properties"]:
            if prop["id"] == "unit":
                overrides[o["matcher"]["options"]] = prop["value"]
    custom = panel["fieldConfig"]["defaults"].get("custom", {})
    n = 0
    ymax = -math.inf
    secondary = None
    for t in panel["targets"]:
        for s in get(base, "/api/v1/query_range", query=fill(t["expr"], values, ri),
                     start=start, end=end, step=step):
            xs = [(float(ts) - end) / 60 for ts, _ in s["values"]]
            ys = [float(v) for _, v in s["values"]]
            ymax = max([ymax] + [y for y in ys if math.isfinite(y)])
            name = legend(t.get("legendFormat"), s["metric"])
            name = name if len(name) <= 44 else name[:20] + "..." + name[-21:]
            target_ax = ax
            if any(re.fullmatch(rx, name) for rx in overrides):
                secondary = secondary or ax.twinx()
                target_ax = secondary
                secondary.yaxis.set_major_formatter(axis_formatter(next(iter(overrides.values()))))
                secondary.tick_params(colors=MUTED, labelsize=7)
            color = COLORS[n % len(COLORS)]
            dashed = any(w in name for w in ("limit", "request", "expected"))
            if custom.get("drawStyle") == "points":
                target_ax.scatter(xs, ys, s=6, color=color, label=name)
            elif custom.get("drawStyle") == "bars":
                target_ax.bar(xs, ys, width=step / 60 * 0.8, color=color, label=name, alpha=0.8)
            else:
                target_ax.plot(xs, ys, color=color, lw=1.3, ls="--" if dashed else "-", label=name)
            n += 1
    ax.yaxis.set_major_formatter(axis_formatter(unit))
    ax.set_xlabel("minutes ago", color=MUTED, fontsize=7)
    defaults = panel["fieldConfig"]["defaults"]
    if custom.get("scaleDistribution", {}).get("type") == "log":
        ax.set_yscale("log", base=custom["scaleDistribution"]["log"])
        ax.yaxis.set_major_formatter(axis_formatter(unit))
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * 10)  # room for the legend
    else:
        _limits(ax, defaults, *ax.get_ylim(), ymax)
    if n:
        handles, labels = ax.get_legend_handles_labels()
        if secondary:
            h2, l2 = secondary.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        if len(handles) > 8:
            handles, labels = handles[:8], labels[:7] + [f"... and {len(labels) - 7} more"]
        ax.legend(handles, labels, fontsize=6.5, loc="upper left", frameon=False, labelcolor=TEXT,
                  ncol=2 if len(handles) > 3 and max(map(len, labels)) <= 28 else 1)
    else:
        ax.text(0.5, 0.5, "No data", ha="center", va="center", color=MUTED, transform=ax.transAxes)


def render_dashboard(dash: dict, titles: list[str], base: str, values: dict, out: pathlib.Path,
                     window: float, ri: str) -> pathlib.Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_title = {}
    for p in dash["panels"]:
        for q in [p, *p.get("panels", [])]:
            if q["type"] != "row":
                by_title.setdefault(q["title"], []).append(q)
    chosen, seen = [], {}
    for t in titles:
        i = seen.get(t, 0)
        seen[t] = i + 1
        chosen.append(by_title[t][i])
    stats = [p for p in chosen if p["type"] == "stat"]
    graphs = [p for p in chosen if p["type"] != "stat"]
    cols = 3 if len(graphs) % 3 == 0 else 2
    rows = math.ceil(len(graphs) / cols)
    height = 0.75 + (1.35 if stats else 0) + rows * 2.9
    fig = plt.figure(figsize=(14, height), facecolor=BG)
    var_text = "  ".join(f"{k}={v}" for k, v in values.items())
    fig.text(0.012, 1 - 0.32 / height, dash["title"], color=TEXT, fontsize=14, fontweight="bold", va="center")
    fig.text(0.988, 1 - 0.32 / height, f"{var_text}   last {window / 60:.0f} min   (ethwatch end-to-end devnet)",
             color=MUTED, fontsize=8.5, va="center", ha="right")
    top = 1 - 0.75 / height
    gs_rows = ([0.85] if stats else []) + [2.6] * rows
    gs = fig.add_gridspec(len(gs_rows), 1, height_ratios=gs_rows, top=top, bottom=0.25 / height,
                          left=0.05, right=0.985, hspace=0.42)
    end = time.time()
    start, step = end - window, max(1, int(window / 240))

    def style(ax, title):
        ax.set_facecolor(PANEL)
        ax.set_title(title, color=TEXT, fontsize=9.5, loc="left", pad=5)
        for s in ax.spines.values():
            s.set_color(GRID_C)
        ax.tick_params(colors=MUTED, labelsize=7)
        ax.grid(color=GRID_C, lw=0.5)

    r0 = 0
    if stats:
        sub = gs[0].subgridspec(1, len(stats), wspace=0.06)
        for i, p in enumerate(stats):
            ax = fig.add_subplot(sub[0, i])
            style(ax, p["title"])
            draw_stat(ax, p, base, values, ri)
        r0 = 1
    for r in range(rows):
        row_panels = graphs[r * cols:(r + 1) * cols]
        sub = gs[r0 + r].subgridspec(1, cols, wspace=0.16)
        for i, p in enumerate(row_panels):
            ax = fig.add_subplot(sub[0, i])
            style(ax, p["title"])
            if p["type"] == "bargauge":
                draw_bars(ax, p, base, values, ri)
            else:
                draw_series(ax, p, base, values, ri, start, end, step)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, facecolor=BG)
    plt.close(fig)
    return out


def render_all(base: str, out_dir: pathlib.Path, values: dict | None = None, window: float = 600,
               rate_interval: str = "10s") -> list[pathlib.Path]:
    values = values or {"namespace": "e2e", "node": "1"}
    written = []
    for name, titles in MAIN.items():
        dash = json.loads((DIR / name).read_text())
        written.append(render_dashboard(dash, titles, base, values, out_dir / name.replace(".json", ".png"),
                                        window, rate_interval))
    return written


def from_devnet(seconds: float, out: pathlib.Path) -> list[pathlib.Path]:
    """Starts the end-to-end devnet (tests/e2e/devnet.py), lets it run, renders, cleans up."""
    import shutil
    import signal
    import subprocess
    import tempfile
    sys.path.insert(0, str(ROOT / "tests"))
    from e2e.devnet import Devnet, Traffic
    from e2e.stack import Stack

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ethwatch-render-"))
    rules = tmp / "rules"
    subprocess.run([sys.executable, str(ROOT / "alerts/generate.py"), "--overlay",
                    str(ROOT / "tests/alerts/e2e-overlay.yaml"), "--out", str(rules)], check=True)
    stack = Stack(tmp)
    traffic = None
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        net = Devnet.start(stack, tmp)
        prom = net.start_prometheus(rules)
        traffic = Traffic(net.el_url)
        traffic.start()
        print(f"devnet up; recording {seconds:.0f} s (logs in {tmp / 'logs'})", file=sys.stderr)
        time.sleep(seconds)
        written = render_all(prom.base, out, window=seconds)
    finally:
        if traffic:
            traffic.stop()
        stack.stop_all()
    shutil.rmtree(tmp, ignore_errors=True)  # kept (with the logs) only when something failed
    return written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--devnet", type=float, metavar="SECONDS", help="start the e2e devnet, record this long")
    src.add_argument("--prometheus", metavar="URL", help="a Prometheus that scrapes ethwatch")
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                    help="a dashboard variable (default namespace=e2e, node=1)")
    ap.add_argument("--window", type=float, default=600, help="seconds of history (with --prometheus)")
    ap.add_argument("--rate-interval", default="10s", help="what $__rate_interval stands for")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "img")
    args = ap.parse_args()
    if args.devnet:
        written = from_devnet(args.devnet, args.out)
    else:
        values = {"namespace": "e2e", "node": "1", **dict(v.split("=", 1) for v in args.var)}
        written = render_all(args.prometheus.rstrip("/"), args.out, values, args.window, args.rate_interval)
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
