#!/usr/bin/env python3
"""Latency of one /metrics load phase of scripts/bench-compare.sh, from vegeta's results.

    vegeta encode -to csv RESULTS.bin | latency.py --run 1 --subject NAME --out results.tsv \
        [--cpu-ns N] [--busy-pct P]

Reads vegeta's CSV lines (timestamp ns, status code, latency ns, bytes out, bytes in, error, ...)
and appends `run<TAB>subject<TAB>key<TAB>value` lines: lat_rps (achieved rate), lat_p50_ms,
lat_p90_ms, lat_p99_ms, lat_max_ms (exact order statistics over every request), lat_errors
(answers other than 200 and transport errors), and, when given, lat_cpu_us_per_req (the exporter's CPU time during the phase per request) and
lat_busy_pct (the machine's busy share of all cores during the phase). Python 3 stdlib only.
"""

import argparse
import csv
import sys


def quantile(sorted_values, q):
    # nearest rank: the smallest value with at least q of the values at or below it
    i = max(0, min(len(sorted_values) - 1, int(-(-q * len(sorted_values) // 1)) - 1))
    return sorted_values[i]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--subject", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cpu-ns", type=float)
    ap.add_argument("--busy-pct", type=float)
    args = ap.parse_args()
    ts, lat = [], []
    errors = 0
    for row in csv.reader(sys.stdin):
        if len(row) < 6:
            continue
        ts.append(int(row[0]))
        lat.append(int(row[2]) / 1e6)
        if row[1] != "200" or row[5]:
            errors += 1
    if not lat:
        sys.exit("latency.py: no results")
    lat.sort()
    span = (max(ts) - min(ts)) / 1e9 or 1
    rows = [
        ("lat_rps", (len(lat) - 1) / span),
        ("lat_p50_ms", quantile(lat, 0.50)),
        ("lat_p90_ms", quantile(lat, 0.90)),
        ("lat_p99_ms", quantile(lat, 0.99)),
        ("lat_max_ms", lat[-1]),
        ("lat_errors", errors),
    ]
    if args.cpu_ns is not None:
        rows.append(("lat_cpu_us_per_req", args.cpu_ns / 1000 / len(lat)))
    if args.busy_pct is not None:
        rows.append(("lat_busy_pct", args.busy_pct))
    with open(args.out, "a") as f:
        for k, v in rows:
            f.write(f"{args.run}\t{args.subject}\t{k}\t{v}\n")
    print(f"{args.subject}: {len(lat)} requests, {rows[0][1]:.0f}/s, p50 {rows[1][1]:.3f} ms, "
          f"p99 {rows[3][1]:.3f} ms, max {rows[4][1]:.1f} ms, {errors} errors", file=sys.stderr)


if __name__ == "__main__":
    main()
