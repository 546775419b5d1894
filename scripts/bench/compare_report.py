#!/usr/bin/env python3
"""Print scripts/bench-compare.sh's results as markdown: the comparison table, requests by call,
signal coverage and the network watcher's scale table.

    compare_report.py RUN_DIR

RUN_DIR holds params.tsv (key<TAB>value), results.tsv (run<TAB>subject<TAB>key<TAB>value),
freshness-<run>.json, routes-<run>.json, metrics-<exporter>-1.txt and network.md (optional).
Every row shows the median over runs and, with more than one run, the min-max spread. The ratio
is ethwatch's median divided by the peer's. Python 3 standard library only.
"""

import json
import os
import re
import statistics
import sys
from collections import defaultdict

MIB = 1024 * 1024


def load(run_dir):
    params = {}
    with open(os.path.join(run_dir, "params.tsv")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("\t")
            params[k] = v
    values = defaultdict(dict)  # (subject, key) -> {run: value}
    with open(os.path.join(run_dir, "results.tsv")) as f:
        for line in f:
            run, subject, key, value = line.rstrip("\n").split("\t")
            values[(subject, key)][run] = float(value)
    fresh = {}
    for name in sorted(os.listdir(run_dir)):
        m = re.fullmatch(r"metrics-(ethwatch-execution|ethwatch-consensus|peer)-(\d+)\.txt", name)
        if m:
            subject = {"ethwatch-execution": "ethwatch_el", "ethwatch-consensus": "ethwatch_cl"}.get(m.group(1), "peer")
            values[(subject, "page_bytes")][m.group(2)] = os.path.getsize(os.path.join(run_dir, name))
        m = re.fullmatch(r"freshness-(\d+)\.json", name)
        if m:
            with open(os.path.join(run_dir, name)) as f:
                fresh[m.group(1)] = json.load(f)
    return params, values, fresh


def per_run(values, *pairs, op=sum):
    """{run: op(values of the pairs)} over runs where every pair has a value."""
    runs = set.intersection(*(set(values.get(p, {})) for p in pairs)) if pairs else set()
    return {r: op(values[p][r] for p in pairs) for r in runs}


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    i = max(0, min(len(xs) - 1, -(-int(q * len(xs) * 1000) // 1000) - 1))
    return xs[i]


def summary(d, fmt):
    vs = list(d.values()) if isinstance(d, dict) else list(d)
    if not vs:
        return "n/a", None
    med = statistics.median(vs)
    text = fmt.format(med)
    if len(vs) > 1:
        lo, hi = fmt.format(min(vs)).split(" ")[0], fmt.format(max(vs)).split(" ")[0]
        text += f" ({lo}–{hi})"
    return text, med


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    r = a / b
    if r < 0.1:
        return f"{r:.2g}×"
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def main():
    run_dir = sys.argv[1]
    params, values, fresh = load(run_dir)
    runs = int(params.get("runs", "1"))
    out = []
    w = out.append

    w("| parameter | value |")
    w("|---|---|")
    for key, label in [("date", "date"), ("machine", "machine"), ("ethwatch", "ethwatch"),
                       ("peer", "peer"), ("node_el", "execution node"), ("node_cl", "beacon node"),
                       ("ethwatch_flags", "ethwatch flags"), ("peer_flags", "peer flags"),
                       ("method", "method"), ("loadgen", "/metrics load generator")]:
        if key in params:
            w(f"| {label} | {params[key]} |")
    if "compare_seconds" in params:
        t = f"{int(params['compare_seconds']) // 60} min {int(params['compare_seconds']) % 60} s"
        if "network_seconds" in params:
            t += f", then the network scale run {int(params['network_seconds']) // 60} min {int(params['network_seconds']) % 60} s"
        w(f"| time taken | {t} (after installs and builds) |")
    w("")

    head = f"median of {runs} runs (min–max)" if runs > 1 else "value"
    w(f"| {head} | ethwatch (execution + consensus) | peer (one process) | ratio | target | met? |")
    w("|---|---|---|---|---|---|")

    def row(label, ours, theirs, fmt, target="—", ok=None, show_ratio=True):
        a, am = summary(ours, fmt) if ours is not None else ("—", None)
        b, bm = summary(theirs, fmt) if theirs is not None else ("—", None)
        verdict = "—"
        if ok is not None and am is not None:
            good = ok(am, bm)
            verdict = "yes" if good else "**no**"
            if isinstance(ours, dict) and isinstance(theirs, dict) and len(ours) > 1:
                n = sum(1 for r in ours if r in theirs and ok(ours[r], theirs[r]))
                verdict += f" ({n}/{len(ours)} runs)"
        w(f"| {label} | {a} | {b} | {ratio(am, bm) if show_ratio else '—'} | {target} | {verdict} |")

    E, C, P = "ethwatch_el", "ethwatch_cl", "peer"
    half = lambda a, b: b is not None and a <= 0.5 * b  # noqa: E731
    fewer = lambda a, b: b is not None and a < b  # noqa: E731

    row("steady RSS (median of 1 s samples; ethwatch: sum of both processes)",
        per_run(values, (E, "rss_mib"), (C, "rss_mib")), per_run(values, (P, "rss_mib")),
        "{:.1f} MiB", "≤ 0.5 × peer", half)
    def pair(label, key, fmt):
        a, _ = summary(per_run(values, (E, key)), fmt)
        b, _ = summary(per_run(values, (C, key)), fmt)
        w(f"| {label} | {a} / {b} | — | — | — | — |")

    pair("… ethwatch execution / ethwatch consensus alone", "rss_mib", "{:.1f} MiB")
    row("steady PSS (shared pages split between processes)",
        per_run(values, (E, "pss_mib"), (C, "pss_mib")), per_run(values, (P, "pss_mib")), "{:.1f} MiB")
    row("of which anonymous (heap, stacks) at window end",
        per_run(values, (E, "anon_mib"), (C, "anon_mib")), per_run(values, (P, "anon_mib")), "{:.1f} MiB")
    row("peak RSS while polling (VmHWM at window end; ethwatch: sum)",
        per_run(values, (E, "hwm_mib"), (C, "hwm_mib")), per_run(values, (P, "hwm_mib")), "{:.1f} MiB")
    row("peak RSS after freshness and /metrics load (VmHWM)",
        per_run(values, (E, "hwm_end_mib"), (C, "hwm_end_mib")), per_run(values, (P, "hwm_end_mib")),
        "{:.1f} MiB")
    row("CPU per hour (scheduler ns, live threads; ethwatch: sum)",
        per_run(values, (E, "cpu_sched_s_h"), (C, "cpu_sched_s_h")),
        per_run(values, (P, "cpu_sched_s_h")), "{:.1f} s/h", "≤ 0.5 × peer", half)
    pair("… ethwatch execution / ethwatch consensus alone", "cpu_sched_s_h", "{:.1f} s/h")
    row("CPU per hour (utime+stime, 10 ms ticks)",
        per_run(values, (E, "cpu_ticks_s_h"), (C, "cpu_ticks_s_h")),
        per_run(values, (P, "cpu_ticks_s_h")), "{:.1f} s/h", "≤ 0.5 × peer", half)
    be, bp = float(params.get("bin_ethwatch", "nan")), float(params.get("bin_peer", "nan"))
    row("binary size (stripped; one ethwatch binary runs both)", [be / MIB], [bp / MIB], "{:.1f} MiB")
    if "bin_peer_asbuilt" in params:
        row("… peer as `go build` leaves it (with symbols)", None,
            [float(params["bin_peer_asbuilt"]) / MIB], "{:.1f} MiB", show_ratio=False)
    row("machine busy during the window (all cores, every process)", per_run(values, ("machine", "busy_pct")),
        None, "{:.0f} %", show_ratio=False)
    row("threads", per_run(values, (E, "threads"), (C, "threads")), per_run(values, (P, "threads")), "{:.0f}")
    el_e, el_p = per_run(values, ("px_el_ethwatch", "req_per_min")), per_run(values, ("px_el_peer", "req_per_min"))
    cl_e, cl_p = per_run(values, ("px_cl_ethwatch", "req_per_min")), per_run(values, ("px_cl_peer", "req_per_min"))
    row("HTTP requests to the execution node per minute", el_e, el_p, "{:.1f}", "fewer than peer", fewer)
    row("… JSON-RPC calls inside them per minute", per_run(values, ("px_el_ethwatch", "calls_per_min")),
        per_run(values, ("px_el_peer", "calls_per_min")), "{:.1f}")
    row("HTTP requests to the beacon node per minute", cl_e, cl_p, "{:.1f}", "fewer than peer", fewer)
    row("requests to both nodes per minute",
        per_run(values, ("px_el_ethwatch", "req_per_min"), ("px_cl_ethwatch", "req_per_min")),
        per_run(values, ("px_el_peer", "req_per_min"), ("px_cl_peer", "req_per_min")),
        "{:.1f}", "fewer than peer", fewer)
    row("event-stream connections open to the beacon node (window end)",
        per_run(values, ("px_cl_ethwatch", "open_streams")), per_run(values, ("px_cl_peer", "open_streams")),
        "{:.0f}", show_ratio=False)

    # Freshness: per run the median and p95 over that run's blocks; rows show their medians.
    def fresh_stat(name, q):
        return {r: pct(d[name]["ms"], q) for r, d in fresh.items() if name in d and d[name]["ms"]}

    def fresh_n(name):
        return sum(len(d[name]["ms"]) for d in fresh.values() if name in d)

    under = lambda a, b: a < 100  # noqa: E731
    for layer, lname, ours, theirs in [("el", "execution (newHeads → head block number)", "ethwatch_el", "peer_el"),
                                       ("cl", "consensus (head event → head slot)", "ethwatch_cl", "peer_cl")]:
        row(f"freshness, {lname}: median", fresh_stat(ours, 0.5), fresh_stat(theirs, 0.5), "{:.0f} ms",
            "< 100 ms", under)
        row(f"freshness, {lname}: p95", fresh_stat(ours, 0.95), fresh_stat(theirs, 0.95), "{:.0f} ms",
            "< 100 ms", under)
        row(f"… blocks measured (all runs; unresolved: ethwatch "
            f"{sum(d[ours]['unresolved'] for d in fresh.values() if ours in d)}, peer "
            f"{sum(d[theirs]['unresolved'] for d in fresh.values() if theirs in d)})",
            [fresh_n(ours)], [fresh_n(theirs)], "{:.0f}", show_ratio=False)

    rate = params.get("rate", "500")
    for subj, label in [(E, "ethwatch execution"), (C, "ethwatch consensus")]:
        row(f"/metrics p50 at {rate} req/s, {label} vs peer", per_run(values, (subj, "lat_p50_ms")),
            per_run(values, (P, "lat_p50_ms")), "{:.2f} ms")
        row(f"/metrics p99 at {rate} req/s, {label} vs peer", per_run(values, (subj, "lat_p99_ms")),
            per_run(values, (P, "lat_p99_ms")), "{:.2f} ms")
    row("/metrics max (ethwatch: worse of the two)",
        per_run(values, (E, "lat_max_ms"), (C, "lat_max_ms"), op=max), per_run(values, (P, "lat_max_ms")),
        "{:.1f} ms")
    row("… achieved rate (ethwatch: lower of the two)",
        per_run(values, (E, "lat_rps"), (C, "lat_rps"), op=min), per_run(values, (P, "lat_rps")),
        "{:.0f} req/s", show_ratio=False)
    row("… failed requests (ethwatch: both)", per_run(values, (E, "lat_errors"), (C, "lat_errors")),
        per_run(values, (P, "lat_errors")), "{:.0f}", show_ratio=False)
    row("… exporter CPU per /metrics request (ethwatch: execution)", per_run(values, (E, "lat_cpu_us_per_req")),
        per_run(values, (P, "lat_cpu_us_per_req")), "{:.0f} µs")
    row("… /metrics body after the window (ethwatch: both pages)",
        per_run(values, (E, "page_bytes"), (C, "page_bytes")), per_run(values, (P, "page_bytes")), "{:.0f} bytes")
    row("… machine busy during the load (all cores, everything)",
        per_run(values, (E, "lat_busy_pct"), (C, "lat_busy_pct"), op=max), per_run(values, (P, "lat_busy_pct")),
        "{:.0f} %", show_ratio=False)

    # Requests by call, from the first run's window.
    path = os.path.join(run_dir, "routes-1.json")
    if os.path.exists(path):
        with open(path) as f:
            routes = json.load(f)["per_minute"]
        w("")
        w("Requests to the nodes per minute by call (run 1's window):")
        w("")
        w("| node | call | ethwatch | peer |")
        w("|---|---|---|---|")
        for node, a, b in [("execution", "px_el_ethwatch", "px_el_peer"), ("beacon", "px_cl_ethwatch", "px_cl_peer")]:
            ra, rb = routes.get(a, {}), routes.get(b, {})
            for call in sorted(set(ra) | set(rb)):
                w(f"| {node} | `{call}` | {ra.get(call, 0):.1f} | {rb.get(call, 0):.1f} |")

    cov = coverage(run_dir)
    if cov:
        w("")
        out.extend(cov)

    net = os.path.join(run_dir, "network.md")
    if os.path.exists(net):
        w("")
        w("Network watcher, cost per node (scripts/bench-network.sh):")
        w("")
        with open(net) as f:
            out.extend(line.rstrip("\n") for line in f)
    print("\n".join(out))


# --- coverage -----------------------------------------------------------------------------------
# (signal, ethwatch metric selectors, peer metric selectors, note). A selector is a metric name,
# optionally with one label="value" that a series must carry. Presence is read from the pages the
# exporters actually served in run 1, not assumed.
SIGNALS = [
    ("EL", "head block number", ["eth_el_head_block_number"],
     ['eth_exe_block_most_recent_number{identifier="head"}'], ""),
    ("EL", "head block timestamp and age", ["eth_el_head_block_timestamp_seconds", "eth_el_head_age_seconds"], [], ""),
    ("EL", "block rate, block intervals, expected interval",
     ["eth_el_blocks_total", "eth_el_block_interval_seconds_count", "eth_el_expected_block_interval_seconds"], [], ""),
    ("EL", "block arrival delay (subscription)", ["eth_el_block_arrival_delay_seconds_count"], [], ""),
    ("EL", "reorgs and their depth", ["eth_el_reorgs_total", "eth_el_reorg_depth_count"], [], ""),
    ("EL", "finalized and safe block numbers", ["eth_el_finalized_block_number", "eth_el_safe_block_number"],
     ['eth_exe_block_most_recent_number{identifier="safe"}'],
     "the peer registers a safe-block series but its safe-block code is never scheduled in v0.29.2"),
    ("EL", "head gas used and limit", ["eth_el_head_gas_used", "eth_el_head_gas_limit"],
     ["eth_exe_block_head_gas_used", "eth_exe_block_head_gas_limit"], ""),
    ("EL", "head base fee", ["eth_el_head_base_fee_per_gas_wei"], ["eth_exe_block_head_base_fee_per_gas"],
     "the peer's gauge is registered but never set (always 0)"),
    ("EL", "transactions in the head block", ["eth_el_head_transactions"], ["eth_exe_block_head_transactions_in_block"], ""),
    ("EL", "head block size", [], ["eth_exe_block_head_block_size_bytes"], ""),
    ("EL", "safe-block totals (gas, size, fee, transactions)", [], ["eth_exe_block_safe_*"],
     "counters never incremented (see above)"),
    ("EL", "syncing, current and highest block", ["eth_el_syncing", "eth_el_sync_current_block", "eth_el_sync_highest_block"],
     ["eth_exe_sync_is_syncing", "eth_exe_sync_current_block", "eth_exe_sync_highest_block"], ""),
    ("EL", "sync percentage and starting block", [], ["eth_exe_sync_percentage", "eth_exe_sync_starting_block"], ""),
    ("EL", "peers (net_peerCount)", ["eth_el_peers"], ["eth_exe_net_peer_count"],
     "anvil lacks net_peerCount: ethwatch leaves the metric absent, the peer serves 0"),
    ("EL", "transaction pool pending / queued", ['eth_el_txpool_transactions{status="pending"}'],
     ['eth_exe_txpool_transactions{status="pending"}'], ""),
    ("EL", "chain id, network id", ["eth_el_chain_id", "eth_el_network_id"], ["eth_exe_chain_id", "eth_exe_network_id"], ""),
    ("EL", "client version", ["eth_el_client_info"], ["eth_exe_web3_client_version"], ""),
    ("EL", "gas price", [], ["eth_exe_gas_price_gwei"], ""),
    ("EL", "node up / answered", ["eth_el_up"], [], ""),
    ("EL", "request latency and errors by method", ["eth_el_rpc_request_duration_seconds_count", "eth_el_rpc_errors_total"], [],
     "errors appear once one happened"),
    ("EL", "subscription connected", ["eth_el_subscription_connected"], [], "the peer has no execution subscription"),
    ("CL", "head slot", ["eth_cl_head_slot"], ['eth_con_beacon_slot{block_id="head"}', "eth_con_sync_head_slot"], ""),
    ("CL", "wall-clock slot and epoch, head lag", ["eth_cl_clock_slot", "eth_cl_clock_epoch", "eth_cl_head_lag_slots"], [], ""),
    ("CL", "sync distance, syncing, optimistic",
     ["eth_cl_sync_distance_slots", "eth_cl_syncing", "eth_cl_optimistic"],
     ["eth_con_sync_distance", "eth_con_sync_is_syncing", "eth_con_sync_is_optimistic"], ""),
    ("CL", "execution client offline (el_offline)", ["eth_cl_el_offline"], [], "Lodestar 1.5.1 does not send the field"),
    ("CL", "sync percentage, estimated highest slot", [], ["eth_con_sync_percentage", "eth_con_sync_estimated_highest_slot"], ""),
    ("CL", "finalized and justified epochs", ["eth_cl_finalized_epoch", "eth_cl_justified_epoch"],
     ['eth_con_beacon_finality_checkpoint_epochs{checkpoint="finalized"}',
      'eth_con_beacon_finality_checkpoint_epochs{checkpoint="justified"}'], ""),
    ("CL", "previous justified epoch", [], ['eth_con_beacon_finality_checkpoint_epochs{checkpoint="previous_justified"}'], ""),
    ("CL", "finality distance (clock epoch minus finalized)", ["eth_cl_finality_distance_epochs"], [], ""),
    ("CL", "node health endpoint", ["eth_cl_health_status"], ["eth_con_health_up"],
     "the peer's is its own up/down verdict from /eth/v1/node/syncing, not /eth/v1/node/health"),
    ("CL", "node up / answered", ["eth_cl_up"], ["eth_con_health_check_results_total"], ""),
    ("CL", "peers by state", ["eth_cl_peers"], ["eth_con_peers"], ""),
    ("CL", "peers by direction", ["eth_cl_peers_by_direction"], ["eth_con_peers"], ""),
    ("CL", "client version", ["eth_cl_client_info"], ["eth_con_node_version"], ""),
    ("CL", "genesis time", ["eth_cl_genesis_time_seconds"], [], ""),
    ("CL", "slot length, slots per epoch", ["eth_cl_seconds_per_slot", "eth_cl_slots_per_epoch"],
     ["eth_con_spec_seconds_per_slot", "eth_con_spec_slots_per_epoch"], ""),
    ("CL", "other spec constants (~25), forks", [], ["eth_con_spec_*", "eth_con_fork_*"], ""),
    ("CL", "blocks counted", ["eth_cl_blocks_total"], [], ""),
    ("CL", "missed slots", ["eth_cl_missed_slots_total"], ["eth_con_beacon_empty_slots_count"],
     "the peer's counter needs empty-slot detection, which the exporter leaves off: always 0"),
    ("CL", "block arrival delay from slot start", ["eth_cl_block_arrival_delay_seconds_count"],
     ["eth_con_beacon_proposer_delay_count"], ""),
    ("CL", "reorgs and depth", ["eth_cl_reorgs_total", "eth_cl_reorg_depth_count"],
     ["eth_con_beacon_reorg_count", "eth_con_beacon_reorg_depth"], ""),
    ("CL", "events received by topic", ["eth_cl_events_total"], ["eth_con_event_count"], ""),
    ("CL", "event stream connected / time since last event", ["eth_cl_events_stream_connected"],
     ["eth_con_event_time_since_last_subscription_event_ms"], ""),
    ("CL", "head block contents (attestations, deposits, slashings, exits, transactions, withdrawals, blobs)", [],
     ['eth_con_beacon_attestations{block_id="head"}', 'eth_con_beacon_deposits{block_id="head"}',
      'eth_con_beacon_slashings{block_id="head"}', 'eth_con_beacon_voluntary_exits{block_id="head"}',
      'eth_con_beacon_transactions{block_id="head"}'], "withdrawals and blob series appear only after Capella / Deneb"),
    ("CL", "finalized block contents", [], ['eth_con_beacon_attestations{block_id="finalized"}'], ""),
    ("CL", "execution block number in the head", ["eth_cl_head_execution_block_number"], [],
     "absent before the merge (this dev chain has no execution payloads)"),
    ("CL", "validators by status, balance", ["eth_cl_validators", "eth_cl_validators_balance_gwei"], [], ""),
    ("CL", "participation (source, target, head) and its epoch",
     ["eth_cl_epoch_participation_ratio", "eth_cl_epoch_participation_epoch"], [], ""),
    ("CL", "API latency and errors by route", ["eth_cl_api_request_duration_seconds_count", "eth_cl_api_errors_total"], [],
     "errors appear once one happened"),
    ("both", "per-collector success and staleness", ["ethwatch_collector_success", "ethwatch_collector_last_success_timestamp_seconds"], [], ""),
    ("both", "collector run time", ["ethwatch_collector_duration_seconds"], [], ""),
    ("both", "trace export counters", ["ethwatch_trace_spans_exported_total", "ethwatch_trace_spans_dropped_total"], [], ""),
    ("both", "build info", ["ethwatch_build_info"], [], ""),
    ("both", "process CPU, memory, threads, fds, start time", ["process_resident_memory_bytes", "process_cpu_seconds_total"],
     ["process_resident_memory_bytes", "process_cpu_seconds_total"], "ethwatch: on each of its two pages"),
    ("both", "Go runtime (GC, heap, goroutines)", [], ["go_memstats_alloc_bytes", "go_goroutines"], ""),
]


def parse_page(path):
    series = []
    if not os.path.exists(path):
        return None
    with open(path) as f:
        for line in f:
            if not line or line.startswith("#"):
                continue
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s", line)
            if m:
                series.append((m.group(1), m.group(2) or ""))
    return series


def present(series, selector):
    if selector.endswith("*"):
        return any(n.startswith(selector[:-1]) for n, _ in series)
    m = re.fullmatch(r"([^{]+)(\{(.*)\})?", selector)
    name, label = m.group(1), m.group(3)
    return any(n == name and (not label or label in lbls) for n, lbls in series)


def family(name):
    return re.sub(r"_(bucket|count|sum|total|created)$", "", name)


def coverage(run_dir):
    ours = []
    for part in ("execution", "consensus"):
        s = parse_page(os.path.join(run_dir, f"metrics-ethwatch-{part}-1.txt"))
        if s is None:
            return []
        ours += s
    peer = parse_page(os.path.join(run_dir, "metrics-peer-1.txt"))
    if peer is None:
        return []
    out = ["Coverage: the signals each exports for the same two nodes, read from the pages served in run 1",
           "(✓ on the page; ✗ exported by that exporter but not on this page; — not exported at all):",
           "",
           "| layer | signal | ethwatch | peer | note |",
           "|---|---|---|---|---|"]
    ours_only = theirs_only = both = 0
    used_ours, used_peer = set(), set()

    def cell(series, sels, used):
        if not sels:
            return "—", False
        marks = []
        any_present = False
        for sel in sels:
            ok = present(series, sel)
            any_present |= ok
            used.add(family(re.sub(r"\{.*", "", sel)))
            if sel.endswith("*"):
                used.add(sel)
            marks.append(f"`{sel}` {'✓' if ok else '✗'}")
        return "<br>".join(marks), any_present

    for layer, signal, a, b, note in SIGNALS:
        ca, pa = cell(ours, a, used_ours)
        cb, pb = cell(peer, b, used_peer)
        if a and b:
            both += 1
        elif a:
            ours_only += 1
        elif b:
            theirs_only += 1
        out.append(f"| {layer} | {signal} | {ca} | {cb} | {note} |")
    fam_ours = sorted({family(n) for n, _ in ours})
    fam_peer = sorted({family(n) for n, _ in peer})
    out.append("")
    out.append(f"Signals in both: {both}; only ethwatch: {ours_only}; only the peer: {theirs_only}. "
               f"Metric families on the pages: ethwatch {len(fam_ours)} (two pages), peer {len(fam_peer)} "
               f"(of which {sum(1 for f in fam_peer if f.startswith(('go_', 'process_', 'promhttp_')))} "
               f"are Go runtime and process metrics); series: ethwatch {len(ours)}, peer {len(peer)}.")
    prefixes = tuple(u[:-1] for u in used_ours | used_peer if u.endswith("*"))

    def named(f, used):
        return f in used or (prefixes and f.startswith(prefixes))

    left_ours = [f for f in fam_ours if not named(f, used_ours) and not f.startswith("process_")]
    left_peer = [f for f in fam_peer if not named(f, used_peer) and not f.startswith(("go_", "process_", "promhttp_"))]
    if left_ours or left_peer:
        out.append("")
        out.append("Families on the pages not named in the table above (so nothing is hidden): ethwatch: "
                   + (", ".join(f"`{f}`" for f in left_ours) or "none") + "; peer: "
                   + (", ".join(f"`{f}`" for f in left_peer) or "none") + ".")
    return out


if __name__ == "__main__":
    main()
