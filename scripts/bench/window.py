#!/usr/bin/env python3
"""One measurement window of scripts/bench-compare.sh: memory, CPU and node traffic of processes.

    window.py --seconds 120 --run 1 --out results.tsv --pid NAME=PID ... --proxy NAME=URL ... \
        [--scrape URL ... --scrape-every 15] [--routes-out routes.json]

Samples VmRSS and Pss (/proc/PID/smaps_rollup) of every process once a second; at both ends of
the window reads CPU time two ways (utime+stime from /proc/PID/stat, in clock ticks, which keep
the time of threads that have exited; and the scheduler's nanoseconds summed over
/proc/PID/task/*/schedstat, exact but over live threads only) and each counting proxy's
`/counts`. With --scrape it GETs each URL every --scrape-every seconds, as Prometheus would.
Appends `run<TAB>subject<TAB>key<TAB>value` lines to --out:

  NAME: rss_mib (median of the samples), pss_mib, hwm_mib (VmHWM at the end), anon_mib, file_mib,
        cpu_ticks_s_h, cpu_sched_s_h (CPU seconds per hour of wall time), threads
  machine: busy_pct (share of all cores busy during the window, every process included)
  proxy NAME: req_per_min, calls_per_min (JSON-RPC items, countproxy only), streams (event
        streams opened in the window), open_streams (at the end), errors
Python 3 standard library only.
"""

import argparse
import glob
import json
import os
import statistics
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(") ", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def sched_ns(pid):
    n = 0
    for p in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(p) as f:
                n += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return n


def machine():
    """(busy, total) clock ticks of all cores from /proc/stat (busy includes steal)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    return busy, busy + v[3] + v[4]


def counts(url):
    with urllib.request.urlopen(url.rstrip("/") + "/counts", timeout=5) as r:
        return json.load(r)


def scrape(url):
    try:
        req = urllib.request.Request(url, headers={"Accept-Encoding": "identity"})
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()
    except OSError:
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pid", action="append", default=[])
    ap.add_argument("--proxy", action="append", default=[])
    ap.add_argument("--scrape", action="append", default=[])
    ap.add_argument("--scrape-every", type=float, default=15)
    ap.add_argument("--routes-out")
    args = ap.parse_args()
    pids = dict(p.split("=", 1) for p in args.pid)
    proxies = dict(p.split("=", 1) for p in args.proxy)

    c0 = {n: counts(u) for n, u in proxies.items()}
    k0 = {n: ticks(p) for n, p in pids.items()}
    s0 = {n: sched_ns(p) for n, p in pids.items()}
    m0 = machine()
    t0 = time.monotonic()
    rss = {n: [] for n in pids}
    pss = {n: [] for n in pids}
    next_scrape = t0
    i = 0
    while True:
        i += 1
        now = time.monotonic()
        if args.scrape and now >= next_scrape:
            for u in args.scrape:
                scrape(u)
            next_scrape += args.scrape_every
        target = t0 + i
        if target > t0 + args.seconds:
            break
        time.sleep(max(0.0, target - time.monotonic()))
        for n, p in pids.items():
            rss[n].append(status(p, "VmRSS"))
            pss[n].append(pss_kib(p))
    k1 = {n: ticks(p) for n, p in pids.items()}
    s1 = {n: sched_ns(p) for n, p in pids.items()}
    t1 = time.monotonic()
    m1 = machine()
    c1 = {n: counts(u) for n, u in proxies.items()}
    elapsed = t1 - t0

    rows = []
    for n, p in pids.items():
        rows += [
            (n, "rss_mib", statistics.median(rss[n]) / 1024),
            (n, "pss_mib", statistics.median(pss[n]) / 1024),
            (n, "hwm_mib", status(p, "VmHWM") / 1024),
            (n, "anon_mib", status(p, "RssAnon") / 1024),
            (n, "file_mib", status(p, "RssFile") / 1024),
            (n, "cpu_ticks_s_h", (k1[n] - k0[n]) / TICK / elapsed * 3600),
            (n, "cpu_sched_s_h", (s1[n] - s0[n]) / 1e9 / elapsed * 3600),
            (n, "threads", status(p, "Threads")),
        ]
    rows.append(("machine", "busy_pct", (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * 100))
    routes = {}
    for n in proxies:
        a, b = c0[n], c1[n]
        rows += [
            (n, "req_per_min", (b["requests"] - a["requests"]) / elapsed * 60),
            (n, "errors", b.get("errors", 0) - a.get("errors", 0)),
        ]
        if "calls" in b:
            rows.append((n, "calls_per_min", (b["calls"] - a["calls"]) / elapsed * 60))
        if "streams" in b:
            rows.append((n, "streams", b["streams"] - a["streams"]))
            rows.append((n, "open_streams", b["open_streams"]))
        per = b.get("methods") or b.get("routes") or {}
        before = a.get("methods") or a.get("routes") or {}
        routes[n] = {k: round((v - before.get(k, 0)) / elapsed * 60, 2) for k, v in per.items()
                     if v - before.get(k, 0)}
    with open(args.out, "a") as f:
        for subject, key, value in rows:
            f.write(f"{args.run}\t{subject}\t{key}\t{value}\n")
    if args.routes_out:
        with open(args.routes_out, "w") as f:
            json.dump({"seconds": elapsed, "per_minute": routes}, f, indent=1)


if __name__ == "__main__":
    main()
