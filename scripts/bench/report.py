#!/usr/bin/env python3
"""Print scripts/bench.sh's results as one markdown table (median and min-max over runs).

    report.py PARAMS_TSV RESULTS_TSV

PARAMS_TSV: `key<TAB>value` lines. RESULTS_TSV: `mode<TAB>run<TAB>key<TAB>value` lines, where
mode is `poll` (polling only) or `ws` (polling plus a newHeads subscription). Python 3 stdlib.
"""

import statistics
import sys

MIB = 1024 * 1024

# (mode, key, metric label, value format, target text, predicate on the value or None)
ROWS = [
    ("poll", "rss_median_mib", "steady RSS (median of VmRSS over the window)", "{:.2f} MiB",
     "< 12 MiB", lambda v: v < 12),
    ("poll", "hwm_window_mib", "peak RSS while polling (VmHWM at window end)", "{:.2f} MiB", "", None),
    ("poll", "hwm_after_load_mib", "peak RSS after the /metrics load (VmHWM)", "{:.2f} MiB", "", None),
    ("poll", "rss_anon_mib", "of which anonymous memory (RssAnon, window end)", "{:.2f} MiB", "", None),
    ("poll", "rss_file_mib", "of which mapped file pages (RssFile: the binary, libc)", "{:.2f} MiB", "",
     None),
    ("poll", "cpu_s_per_hour", "CPU time while polling (utime+stime, 10 ms ticks, extrapolated)",
     "{:.1f} s/h", "", None),
    ("poll", "cpu_sched_s_per_hour", "CPU time while polling (scheduler ns, extrapolated)",
     "{:.2f} s/h", "", None),
    ("poll", "http_per_cycle", "HTTP requests to the node per poll cycle", "{:.2f}", "<= 2",
     lambda v: v <= 2),
    ("poll", "calls_per_cycle", "JSON-RPC calls to the node per poll cycle", "{:.2f}", "", None),
    ("poll", "cycles", "poll cycles seen by the node in the window", "{:.0f}", "", None),
    ("poll", "paced_rps", "/metrics paced load: achieved rate", "{:.0f} req/s", "", None),
    ("poll", "paced_p50_ms", "/metrics p50 under the paced load", "{:.3f} ms", "", None),
    ("poll", "paced_p99_ms", "/metrics p99 under the paced load", "{:.3f} ms", "< 2 ms",
     lambda v: v < 2),
    ("poll", "paced_max_ms", "/metrics max under the paced load", "{:.3f} ms", "", None),
    ("poll", "paced_others_pct", "CPU used by other processes during the paced load (all cores)",
     "{:.0f} %", "", None),
    ("poll", "paced_cpu_us_per_req", "exporter CPU per /metrics request (paced)", "{:.0f} us", "", None),
    ("poll", "sat_rps", "/metrics closed loop: capacity", "{:.0f} req/s", "", None),
    ("poll", "sat_p50_ms", "/metrics p50, closed loop", "{:.3f} ms", "", None),
    ("poll", "sat_p99_ms", "/metrics p99, closed loop", "{:.3f} ms", "", None),
    ("poll", "metrics_body_bytes", "/metrics body size", "{:.0f} bytes", "", None),
    ("poll", "threads", "threads of the exporter", "{:.0f}", "", None),
    ("ws", "rss_median_mib", "with --ws-url: steady RSS", "{:.2f} MiB", "< 12 MiB", lambda v: v < 12),
    ("ws", "cpu_sched_s_per_hour", "with --ws-url: CPU time (scheduler ns)", "{:.2f} s/h", "", None),
    ("ws", "http_per_cycle", "with --ws-url: HTTP requests per poll cycle", "{:.2f}", "<= 2",
     lambda v: v <= 2),
    ("ws", "calls_per_cycle", "with --ws-url: JSON-RPC calls per poll cycle", "{:.2f}", "", None),
    ("ws", "threads", "with --ws-url: threads", "{:.0f}", "", None),
]

PARAM_LABELS = [
    ("date", "date"),
    ("machine", "machine"),
    ("ethwatch", "ethwatch"),
    ("node", "node"),
    ("exporter_flags", "exporter flags"),
    ("window", "runs"),
    ("load", "/metrics load"),
]


def main():
    params = {}
    with open(sys.argv[1]) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("\t")
            params[k] = v
    values = {}
    runs = set()
    with open(sys.argv[2]) as f:
        for line in f:
            mode, run, key, value = line.rstrip("\n").split("\t")
            values.setdefault((mode, key), []).append(float(value))
            runs.add(run)
    n = len(runs)

    out = ["| parameter | value |", "|---|---|"]
    for key, label in PARAM_LABELS:
        if key in params:
            out.append(f"| {label} | {params[key]} |")
    out.append("")
    head = f"median of {n} runs (min–max)" if n > 1 else "value"
    out.append(f"| metric | {head} | target | ok? |")
    out.append("|---|---|---|---|")
    for mode, key, label, fmt, target, ok in ROWS:
        vs = values.get((mode, key))
        if not vs:
            continue
        med = statistics.median(vs)
        text = fmt.format(med)
        if len(vs) > 1:
            lo, hi = fmt.format(min(vs)), fmt.format(max(vs))
            lo, hi = lo.split(" ")[0], hi.split(" ")[0]
            text += f" ({lo}–{hi})"
        verdict = "—"
        if ok is not None:
            verdict = "yes" if ok(med) else "**NO**"
            if len(vs) > 1:
                verdict += f" ({sum(1 for v in vs if ok(v))}/{len(vs)} runs)"
        out.append(f"| {label} | {text} | {target or '—'} | {verdict} |")
    size = float(params.get("binary_stripped_bytes", "nan"))
    out.append(f"| binary size (stripped release) | {size / MIB:.2f} MiB | — | — |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
