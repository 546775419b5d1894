#!/usr/bin/env bash
# Benchmark `ethwatch execution` against a real anvil node and print one markdown table:
# steady and peak RSS, CPU seconds per hour, HTTP requests and JSON-RPC calls to the node per poll
# cycle, /metrics latency under load, threads and binary size, against the targets of issue 2.
# A measurement script, not a test: it exits 0 when a target is missed (the table says so).
# See docs/benchmarks.md for what each number means.
#
# Layout: anvil (--block-time 1 --prune-history) <- countproxy.py (counts requests and calls)
#         <- ethwatch (polling only, --poll-interval 1s) <- wrk on /metrics.
# With BENCH_WS=1 a second exporter per run also subscribes to newHeads directly on anvil (the
# proxy does not carry websockets) while it polls through the proxy.
#
# Environment knobs:
#   BENCH_SECONDS=60      measurement window per run, seconds
#   BENCH_WARMUP=10       seconds between the exporter answering and the window
#   BENCH_RUNS=1          repeat the measurement (fresh exporter each run); N>1 prints the median
#                         and the min-max spread
#   BENCH_POLL=1s         --poll-interval of the exporter
#   BENCH_RATE=300        paced /metrics load, requests per second (over BENCH_CONNS connections)
#   BENCH_CONNS=4         wrk connections
#   BENCH_LOAD_SECONDS=10 duration of each /metrics load phase
#   BENCH_WS=1            also measure an exporter with --ws-url (0 to skip)
#   BENCH_EXTRA_ARGS=""   extra flags for `ethwatch execution` (word-split), for experiments
#   ETHWATCH_BIN=path     use this binary instead of building one
#   BENCH_OUT=path        also write the table to this file
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$PWD"

CACHE="${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
BENCH_SECONDS="${BENCH_SECONDS:-60}"
BENCH_WARMUP="${BENCH_WARMUP:-10}"
BENCH_RUNS="${BENCH_RUNS:-1}"
BENCH_POLL="${BENCH_POLL:-1s}"
BENCH_RATE="${BENCH_RATE:-300}"
BENCH_CONNS="${BENCH_CONNS:-4}"
BENCH_LOAD_SECONDS="${BENCH_LOAD_SECONDS:-10}"
BENCH_WS="${BENCH_WS:-1}"
BENCH_EXTRA_ARGS="${BENCH_EXTRA_ARGS:-}"

LOG_TAG=bench
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# The poll interval in seconds (for nominal cycle counts): 1s, 500ms, 2m.
POLL_SECONDS="$(awk -v d="$BENCH_POLL" 'BEGIN {
  if (d ~ /^[0-9.]+ms$/) print substr(d, 1, length(d) - 2) / 1000
  else if (d ~ /^[0-9.]+s$/) print substr(d, 1, length(d) - 1) + 0
  else if (d ~ /^[0-9.]+m$/) print substr(d, 1, length(d) - 1) * 60
  else print "bad" }')"
[[ "$POLL_SECONDS" != bad ]] || die "BENCH_POLL must look like 1s, 500ms or 2m, got '$BENCH_POLL'"

for v in BENCH_SECONDS BENCH_WARMUP BENCH_RUNS BENCH_RATE BENCH_CONNS BENCH_LOAD_SECONDS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done

# --- tools and binary ------------------------------------------------------------------------
scripts/tools.sh anvil wrk >/dev/null
# shellcheck source=/dev/null
source "$CACHE/tools/env.sh"
[[ -n "${ETHWATCH_ANVIL:-}" && -n "${ETHWATCH_WRK:-}" ]] || die "tools.sh did not provide anvil and wrk"

BUILT=0
if [[ -z "${ETHWATCH_BIN:-}" ]]; then
  BUILT=1
  log "building ethwatch (release)"
  cargo build --release -p ethwatch --locked
  ETHWATCH_BIN="$CARGO_TARGET_DIR/release/ethwatch"
fi
[[ -x "$ETHWATCH_BIN" ]] || die "no ethwatch binary at $ETHWATCH_BIN"

# --- ports and run directory -----------------------------------------------------------------
read -r EL_PORT PROXY_PORT EXP_PORT < <(free_ports 3)

new_run_dir "$CACHE/bench" 9
RESULTS="$RUN/results.tsv" # mode <tab> run <tab> key <tab> value
PARAMS="$RUN/params.tsv"   # key <tab> value
: >"$RESULTS"
: >"$PARAMS"

# --- child processes (scripts/lib.sh: start, wait_until, stop on exit) ----------------------
stop_children_on_exit

# --- measurements ----------------------------------------------------------------------------
CLK_TCK="$(getconf CLK_TCK)"

status_kb() { # <pid> <field>: a kB value from /proc/PID/status
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}
cpu_ticks() { # <pid>: utime + stime in clock ticks (fields 14 and 15 of /proc/PID/stat)
  local stat rest
  stat="$(<"/proc/$1/stat")"
  rest="${stat##*) }" # the command name may hold spaces; fields restart after ") "
  read -ra f <<<"$rest"
  echo $((f[11] + f[12]))
}
# CPU time in nanoseconds from the scheduler (/proc/PID/task/*/schedstat, first field), summed
# over the live threads: far finer than the 10 ms ticks of utime+stime, which an exporter that
# wakes for well under a millisecond a second barely registers.
cpu_ns() {
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'
}
# The whole machine from /proc/stat, in ticks: "busy total" (busy includes steal).
machine_ticks() { awk '/^cpu / {b = $2+$3+$4+$7+$8+$9; print b, b+$5+$6; exit}' /proc/stat; }
now() { date +%s.%N; }
counts() { curl -sf -m 5 "http://127.0.0.1:$PROXY_PORT/counts"; }
count_of() { # <json> <key>
  python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

record() { # <mode> <run> <key> <value>
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"
}
param() { printf '%s\t%s\n' "$1" "$2" >>"$PARAMS"; }

# wrk_load <mode> <run> <prefix> <delay ms>: one load phase on /metrics, results under <prefix>_*.
wrk_load() {
  local mode="$1" run="$2" prefix="$3" delay="$4" out t0 t1 n0 n1 m0 m1 o0 o1 line
  out="$RUN/wrk-$mode-$run-$prefix.txt"
  t0="$(cpu_ticks "$EXP_PID")"
  n0="$(cpu_ns "$EXP_PID")"
  o0="$(own_ticks)"
  m0="$(machine_ticks)"
  # `times` in the subshell reports the CPU time of its child, wrk, for the share of the rest.
  (
    "$ETHWATCH_WRK" -t1 -c"$BENCH_CONNS" -d"${BENCH_LOAD_SECONDS}s" --latency \
      -s "$ROOT/scripts/bench/metrics.lua" "http://127.0.0.1:$EXP_PORT/metrics" -- "$delay" >"$out" 2>&1
    rc=$?
    times >"$out.times"
    exit $rc
  ) || { cat "$out" >&2; die "wrk failed"; }
  m1="$(machine_ticks)"
  o1="$(own_ticks)"
  n1="$(cpu_ns "$EXP_PID")"
  t1="$(cpu_ticks "$EXP_PID")"
  # What the rest of the machine (other processes, not ethwatch, anvil, the proxy or wrk) used
  # of all cores during the load: a busy neighbour shows up in the latency tail.
  local wrk_ticks
  wrk_ticks="$(awk -v hz="$CLK_TCK" 'END { n = 0
    for (i = 1; i <= NF; i++) { split($i, p, /[ms]/); n += p[1] * 60 + p[2] }
    printf "%d\n", n * hz }' "$out.times")"
  read -r mb0 mt0 <<<"$m0"
  read -r mb1 mt1 <<<"$m1"
  record "$mode" "$run" "${prefix}_others_pct" "$(awk -v b=$((mb1 - mb0)) -v t=$((mt1 - mt0)) \
    -v own=$((o1 - o0 + wrk_ticks)) 'BEGIN { x = (b - own) / t * 100; print (x < 0 ? 0 : x) }')"
  local requests=0 duration=1
  while IFS='=' read -r k v; do
    case "$k" in
    wrk_requests) requests="$v" ;;
    wrk_duration_us) duration="$v" ;;
    wrk_errors) record "$mode" "$run" "${prefix}_errors" "$v" ;;
    wrk_p50_us) record "$mode" "$run" "${prefix}_p50_ms" "$(awk -v x="$v" 'BEGIN{print x/1000}')" ;;
    wrk_p99_us) record "$mode" "$run" "${prefix}_p99_ms" "$(awk -v x="$v" 'BEGIN{print x/1000}')" ;;
    wrk_max_us) record "$mode" "$run" "${prefix}_max_ms" "$(awk -v x="$v" 'BEGIN{print x/1000}')" ;;
    esac
  done < <(grep '^wrk_' "$out")
  ((requests > 0)) || die "wrk made no requests (see $out)"
  record "$mode" "$run" "${prefix}_rps" "$(awk -v n="$requests" -v d="$duration" 'BEGIN{print n/(d/1e6)}')"
  record "$mode" "$run" "${prefix}_cpu_us_per_req" \
    "$(awk -v ns=$((n1 - n0)) -v n="$requests" 'BEGIN{print ns/1000/n}')"
  line="$(awk '/Requests\/sec/ {print $2}' "$out")"
  log "  $prefix: ${line:-?} req/s"
}

# own_ticks: CPU ticks of the long-lived children (anvil, proxy, exporter).
own_ticks() {
  local pid n=0
  for pid in "${PIDS[@]}"; do
    if alive "$pid"; then n=$((n + $(cpu_ticks "$pid"))); fi
  done
  echo "$n"
}

# measure <mode> <run>: start an exporter, warm up, measure a window, stop it.
#   poll: polling only, through the proxy; then /metrics load phases.
#   ws:   polling through the proxy plus a newHeads subscription directly on anvil.
measure() {
  local mode="$1" run="$2"
  local args=(execution --rpc-url "http://127.0.0.1:$PROXY_PORT"
    --web.listen-address "127.0.0.1:$EXP_PORT" --poll-interval "$BENCH_POLL")
  if [[ "$mode" == ws ]]; then args+=(--ws-url "ws://127.0.0.1:$EL_PORT"); fi
  # shellcheck disable=SC2206 # word-splitting is the point
  if [[ -n "$BENCH_EXTRA_ARGS" ]]; then args+=($BENCH_EXTRA_ARGS); fi

  log "run $run/$BENCH_RUNS, $mode: exporter up, warming up ${BENCH_WARMUP}s, window ${BENCH_SECONDS}s"
  start "ethwatch-$mode-$run" "$ROOT" "$ETHWATCH_BIN" "${args[@]}"
  EXP_PID=$CHILD
  wait_until "ethwatch-$mode-$run" "$EXP_PID" 30 http_ok "http://127.0.0.1:$EXP_PORT/metrics"
  sleep "$BENCH_WARMUP"
  alive "$EXP_PID" || child_failed "ethwatch-$mode-$run" "exited during warm-up"

  # The window: counts, CPU time and wall time at both ends; VmRSS sampled every second.
  local c0 c1 k0 k1 n0 n1 t0 t1 i rss=()
  c0="$(counts)"
  k0="$(cpu_ticks "$EXP_PID")"
  n0="$(cpu_ns "$EXP_PID")"
  t0="$(now)"
  for ((i = 0; i < BENCH_SECONDS; i++)); do
    sleep 1
    rss+=("$(status_kb "$EXP_PID" VmRSS)")
  done
  c1="$(counts)"
  k1="$(cpu_ticks "$EXP_PID")"
  n1="$(cpu_ns "$EXP_PID")"
  t1="$(now)"
  alive "$EXP_PID" || child_failed "ethwatch-$mode-$run" "exited during the window"

  local elapsed requests calls head_polls errors
  elapsed="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')"
  requests=$(($(count_of "$c1" requests) - $(count_of "$c0" requests)))
  calls=$(($(count_of "$c1" calls) - $(count_of "$c0" calls)))
  head_polls=$(($(count_of "$c1" head_polls) - $(count_of "$c0" head_polls)))
  errors=$(($(count_of "$c1" errors) - $(count_of "$c0" errors)))
  ((head_polls > 0)) || die "no poll cycle reached the node during the window"
  ((errors == 0)) || log "WARNING: the proxy failed to forward $errors requests"
  printf '%s\n' "${rss[@]}" >"$RUN/rss-$mode-$run.txt"

  record "$mode" "$run" rss_median_mib "$(printf '%s\n' "${rss[@]}" | sort -n |
    awk '{a[NR]=$1} END{m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; print m/1024}')"
  record "$mode" "$run" hwm_window_mib "$(awk -v k="$(status_kb "$EXP_PID" VmHWM)" 'BEGIN{print k/1024}')"
  record "$mode" "$run" cpu_s_per_hour \
    "$(awk -v t=$((k1 - k0)) -v hz="$CLK_TCK" -v e="$elapsed" 'BEGIN{print t/hz/e*3600}')"
  record "$mode" "$run" cpu_ticks_window $((k1 - k0))
  record "$mode" "$run" cpu_sched_s_per_hour \
    "$(awk -v ns=$((n1 - n0)) -v e="$elapsed" 'BEGIN{print ns/1e9/e*3600}')"
  record "$mode" "$run" rss_anon_mib "$(awk -v k="$(status_kb "$EXP_PID" RssAnon)" 'BEGIN{print k/1024}')"
  record "$mode" "$run" rss_file_mib "$(awk -v k="$(status_kb "$EXP_PID" RssFile)" 'BEGIN{print k/1024}')"
  record "$mode" "$run" cycles "$head_polls"
  record "$mode" "$run" cycles_nominal \
    "$(awk -v e="$elapsed" -v p="$POLL_SECONDS" 'BEGIN{print e/p}')"
  record "$mode" "$run" http_per_cycle "$(awk -v r="$requests" -v c="$head_polls" 'BEGIN{print r/c}')"
  record "$mode" "$run" calls_per_cycle "$(awk -v r="$calls" -v c="$head_polls" 'BEGIN{print r/c}')"
  record "$mode" "$run" threads "$(status_kb "$EXP_PID" Threads)"
  log "  window: $requests HTTP requests, $calls calls, $head_polls cycles in ${elapsed}s"

  if [[ "$mode" == poll ]]; then
    record "$mode" "$run" metrics_body_bytes \
      "$(curl -sf -m 2 "http://127.0.0.1:$EXP_PORT/metrics" | wc -c)"
    # Paced: BENCH_CONNS connections, each pausing so that together they send ~BENCH_RATE/s.
    local delay=$(((BENCH_CONNS * 1000 + BENCH_RATE / 2) / BENCH_RATE))
    ((delay > 0)) || delay=1
    wrk_load "$mode" "$run" paced "$delay"
    # Closed loop: as fast as the exporter answers (its capacity, and latency when saturated).
    wrk_load "$mode" "$run" sat 0
    record "$mode" "$run" hwm_after_load_mib \
      "$(awk -v k="$(status_kb "$EXP_PID" VmHWM)" 'BEGIN{print k/1024}')"
    record "$mode" "$run" rss_after_load_mib \
      "$(awk -v k="$(status_kb "$EXP_PID" VmRSS)" 'BEGIN{print k/1024}')"
  fi
  alive "$EXP_PID" || child_failed "ethwatch-$mode-$run" "exited under load"
  stop_pids "$EXP_PID"
  unset 'PIDS[-1]' 'NAMES[-1]'
}

# --- the node and the proxy ------------------------------------------------------------------
start anvil "$ROOT" "$ETHWATCH_ANVIL" --host 127.0.0.1 --port "$EL_PORT" --block-time 1 --prune-history
wait_until anvil "$CHILD" 30 rpc "http://127.0.0.1:$EL_PORT" eth_blockNumber
start countproxy "$ROOT" python3 "$ROOT/scripts/bench/countproxy.py" --listen "127.0.0.1:$PROXY_PORT" \
  --upstream "http://127.0.0.1:$EL_PORT" --counts-file "$RUN/counts-final.json"
wait_until countproxy "$CHILD" 10 counts

# --- parameters ------------------------------------------------------------------------------
param date "$(date -u '+%Y-%m-%d %H:%M UTC')"
param machine "$(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), \
$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
tree="$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
git diff --quiet HEAD -- exporters Cargo.toml Cargo.lock 2>/dev/null || tree+=", modified"
if [[ "$BUILT" == 1 ]]; then
  param ethwatch "$("$ETHWATCH_BIN" --version 2>/dev/null | head -n1), built from tree $tree"
else
  param ethwatch "$("$ETHWATCH_BIN" --version 2>/dev/null | head -n1), ETHWATCH_BIN=$ETHWATCH_BIN (tree now $tree)"
fi
param node "$("$ETHWATCH_ANVIL" --version | head -n1), --block-time 1 --prune-history, behind countproxy.py"
param exporter_flags "--poll-interval $BENCH_POLL${BENCH_EXTRA_ARGS:+ $BENCH_EXTRA_ARGS}"
param window "${BENCH_RUNS} run(s) x (${BENCH_WARMUP}s warm-up + ${BENCH_SECONDS}s window), fresh exporter per run"
param load "wrk 4.1 -t1 -c$BENCH_CONNS, ${BENCH_LOAD_SECONDS}s paced at ~$BENCH_RATE req/s, then ${BENCH_LOAD_SECONDS}s closed loop"
param poll_seconds "$POLL_SECONDS"

bin_bytes="$(stat -c %s "$ETHWATCH_BIN")"
stripped="$RUN/ethwatch.stripped"
if command -v strip >/dev/null && strip -o "$stripped" "$ETHWATCH_BIN" 2>/dev/null; then
  param binary_stripped_bytes "$(stat -c %s "$stripped")"
  rm -f "$stripped"
else
  param binary_stripped_bytes "$bin_bytes"
fi
param binary_bytes "$bin_bytes"

# --- runs ------------------------------------------------------------------------------------
for ((run = 1; run <= BENCH_RUNS; run++)); do
  measure poll "$run"
  if [[ "$BENCH_WS" == 1 ]]; then measure ws "$run"; fi
done

table="$(python3 "$ROOT/scripts/bench/report.py" "$PARAMS" "$RESULTS")"
printf '%s\n' "$table" >"$RUN/table.md"
if [[ -n "${BENCH_OUT:-}" ]]; then printf '%s\n' "$table" >"$BENCH_OUT"; fi
echo
printf '%s\n' "$table"
