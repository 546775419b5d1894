"""Draws one trace, as Jaeger's query API returns it (`/api/traces/{id}`), as a self-contained HTML
waterfall: one row per span in tree order, a bar from its start to its end, its key attributes.
Jaeger's own UI is not part of its Go module (see docs/traces.md), so the documentation's picture
of a real trace is drawn with this."""

from __future__ import annotations

import html

KEY_ATTRIBUTES = ("rpc.method", "rpc.jsonrpc.error_code", "http.request.method", "server.address",
                  "server.port", "http.response.status_code", "error.type")


def render(trace: dict, title: str) -> str:
    spans = {s["spanID"]: s for s in trace["spans"]}
    children: dict[str | None, list[dict]] = {}
    for s in trace["spans"]:
        parents = [r["spanID"] for r in s.get("references", []) if r["spanID"] in spans]
        children.setdefault(parents[0] if parents else None, []).append(s)
    start = min(s["startTime"] for s in trace["spans"])
    end = max(s["startTime"] + s["duration"] for s in trace["spans"])
    total = max(end - start, 1)
    service = trace["processes"][trace["spans"][0]["processID"]]["serviceName"]
    rows = []

    def walk(s: dict, depth: int):
        tags = {t["key"]: t["value"] for t in s.get("tags", [])}
        error = tags.get("otel.status_code") == "ERROR" or "error.type" in tags
        attrs = " ".join(f"{k}={tags[k]}" for k in KEY_ATTRIBUTES if k in tags)
        left = (s["startTime"] - start) / total * 100
        width = max(s["duration"] / total * 100, 0.3)
        rows.append(
            f'<tr><td class="op" style="padding-left:{0.4 + depth * 1.2}rem">{html.escape(s["operationName"])}'
            f'<span class="kind">{html.escape(str(tags.get("span.kind", "")))}</span></td>'
            f'<td class="d">{s["duration"] / 1000:.2f} ms</td>'
            f'<td class="bar"><div class="{"err" if error else "ok"}" style="left:{left:.2f}%;width:{width:.2f}%">'
            f'</div></td>'
            f'<td class="attrs">{html.escape(attrs)}</td></tr>')
        for c in sorted(children.get(s["spanID"], []), key=lambda c: (c["startTime"], c["operationName"])):
            walk(c, depth + 1)

    for root in children.get(None, []):
        walk(root, 0)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>
body{{font-family:system-ui,sans-serif;margin:1rem;font-size:14px}}h1{{font-size:1.1rem;margin:0 0 .2rem}}
p{{margin:0 0 .8rem;color:#555}}table{{border-collapse:collapse;width:100%}}td{{padding:.2rem .4rem;border-bottom:1px solid #eee;white-space:nowrap}}
td.op{{width:16rem}}.kind{{color:#888;font-size:.75rem;margin-left:.4rem}}td.bar{{position:relative;width:45%}}
td.bar div{{position:absolute;top:.35rem;height:.8rem;border-radius:2px}}.ok{{background:#1f77b4}}.err{{background:#d62728}}
td.d{{font-size:.75rem;color:#333;text-align:right;width:4rem}}td.attrs{{font-family:monospace;font-size:.75rem;color:#444}}
</style></head><body><h1>{html.escape(title)}</h1>
<p>service {html.escape(service)} · trace {html.escape(trace["traceID"])} · {len(trace["spans"])} spans · {total / 1000:.2f} ms</p>
<table>{"".join(rows)}</table></body></html>
"""
