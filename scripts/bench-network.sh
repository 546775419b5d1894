#!/usr/bin/env bash
# Scale benchmark of the network watcher: cost per node from 1 to 1,000 nodes.
#
# One stand-in process (exporters/network/examples/fake_nodes.rs) answers for N execution nodes
# on N URL paths, so the numbers measure the watcher, not N real nodes (documented in
# docs/benchmarks.md). For each N the watcher runs for BENCH_SECONDS with --poll-interval
# BENCH_INTERVAL and the table shows the cycle time, CPU per cycle and memory.
#
#   scripts/bench-network.sh                 # N = 1 10 100 1000
#   BENCH_NODES="1 1000" BENCH_SECONDS=30 scripts/bench-network.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

CACHE="${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
NODES="${BENCH_NODES:-1 10 100 1000}"
SECONDS_PER_RUN="${BENCH_SECONDS:-24}"
INTERVAL="${BENCH_INTERVAL:-4}"

cargo build --release --locked -p ethwatch -p ethwatch-network --example fake_nodes >&2
BIN="$CARGO_TARGET_DIR/release/ethwatch"
FAKE="$CARGO_TARGET_DIR/release/examples/fake_nodes"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

out=$(mktemp)
"$FAKE" 127.0.0.1:0 >"$out" &
pids+=($!)
for _ in $(seq 50); do [[ -s "$out" ]] && break; sleep 0.1; done
FAKE_ADDR=$(head -n1 "$out")
TICK=$(getconf CLK_TCK)

# Reads the whole page first: with 1,000 nodes it is large, and an early-exiting reader would
# kill curl with SIGPIPE (and the script with it, under pipefail).
metrics_page() { curl -s "http://127.0.0.1:$1/metrics" >"$page"; }
metric() { awk -v m="$1" '$1==m {v=$2} END {print v}' "$page"; }
page=$(mktemp)
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

printf '| nodes | cycle (s) | CPU per cycle (ms) | CPU per node per cycle (ms) | RSS (MiB) | RSS per node (KiB) |\n'
printf '|---:|---:|---:|---:|---:|---:|\n'
base_rss=""
for n in $NODES; do
  targets=$(python3 -c "import sys; n=int(sys.argv[1]); a=sys.argv[2]; print(','.join(f'n{i}=http://{a}/n/{i}' for i in range(n)))" "$n" "$FAKE_ADDR")
  port=$(free_port)
  ETHWATCH_EXECUTION_TARGETS="$targets" "$BIN" network --web.listen-address "127.0.0.1:$port" \
    --poll-interval "${INTERVAL}s" --cycle-timeout 12s --request-timeout 5s 2>/dev/null &
  wp=$!
  pids+=("$wp")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  sleep "$INTERVAL"   # first cycle done, connections warm
  t0=$(cpu_ticks "$wp")
  sleep "$SECONDS_PER_RUN"
  t1=$(cpu_ticks "$wp")
  cycles=$(python3 -c "print(max(1, round($SECONDS_PER_RUN / $INTERVAL)))")
  metrics_page "$port"
  cycle=$(metric eth_network_cycle_duration_seconds)
  up=$(metric 'eth_network_nodes{layer="execution",state="up"}')
  rss=$(rss_kib "$wp")
  [[ -z "$base_rss" ]] && base_rss=$rss
  python3 - "$n" "$cycle" "$t0" "$t1" "$TICK" "$cycles" "$rss" "$base_rss" "$up" <<'PY'
import sys
n, cycle, t0, t1, tick, cycles, rss, base, up = sys.argv[1:]
n = int(n); cpu_ms = (int(t1) - int(t0)) * 1000 / int(tick) / int(cycles)
per_node_rss = (int(rss) - int(base)) / n if n > 1 else 0
print(f"| {n} | {float(cycle):.3f} | {cpu_ms:.1f} | {cpu_ms / n:.3f} | {int(rss) / 1024:.1f} | {per_node_rss:.1f} |" + ("" if up and int(float(up)) == n else f" (only {up} of {n} up)"))
PY
  kill "$wp"; wait "$wp" 2>/dev/null || true
done
echo
echo "poll interval ${INTERVAL}s, ${SECONDS_PER_RUN}s per size, stand-in server at $FAKE_ADDR; CPU from /proc/PID/stat (utime+stime), RSS from VmRSS; per-node RSS is growth over the 1-node run."
