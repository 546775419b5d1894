#!/usr/bin/env bash
# Side-by-side benchmark of ethwatch (execution + consensus) against ethpandaops'
# ethereum-metrics-exporter (Go, "the peer") on the same anvil and Lodestar nodes, in one run,
# plus the network watcher's scale run. Prints one markdown table with a ratio column and the
# targets of issue 9; see docs/benchmarks.md ("Side by side with ethereum-metrics-exporter").
# A measurement, not a test: it exits 0 when a target is missed (the table says so).
#
# What it does:
#   1. Installs what it needs into ${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}: anvil and Lodestar
#      (scripts/tools.sh); the peer at PEER_VERSION from the Go module proxy with the machine's Go
#      toolchain (`go mod download -json`, then `go build` in a copy of the directory it reports:
#      the module's go.mod has a `replace` line, so `go install ...@version` refuses it); vegeta (an
#      open-loop load generator, `go install`); and ethwatch (cargo build --release --locked).
#   2. Runs the measurement in a private network namespace whose only interface is loopback
#      (`unshare --net`): the peer has no listen-address option and listens on every interface,
#      so it must not run in the machine's own namespace. Everything else binds 127.0.0.1 too.
#      There: anvil (--block-time 1) and a Lodestar dev chain (2 s slots), a counting proxy in
#      front of each node for each exporter (scripts/bench/countproxy.py for JSON-RPC,
#      scripts/bench/streamproxy.py for the Beacon API and its event stream), and per run fresh
#      exporters: `ethwatch execution` (polling through its proxy, newHeads subscribed on anvil
#      directly), `ethwatch consensus` (event stream on), and the peer with execution + consensus,
#      its txpool module and its event stream on. Each run: warm-up, a window for memory, CPU and
#      requests (scripts/bench/window.py), freshness over at least BENCH_BLOCKS blocks per layer
#      (scripts/bench/freshness.py), and /metrics latency at BENCH_RATE requests per second,
#      open loop (vegeta), for each of the three /metrics endpoints in turn.
#   3. Runs scripts/bench-network.sh (the network watcher from 1 to 1,000 nodes) unless
#      BENCH_NETWORK=0, and prints everything as markdown (scripts/bench/compare_report.py).
#
# Environment knobs:
#   BENCH_RUNS=3            runs (fresh exporters each); rows show the median and min-max
#   BENCH_WARMUP=30         seconds after every exporter has seen a head, before the window
#   BENCH_SECONDS=120       memory/CPU/requests window per run
#   BENCH_BLOCKS=50         freshness: at least this many blocks per layer per run
#   BENCH_RATE=500          /metrics load, requests per second (open loop)
#   BENCH_LOAD_SECONDS=20   length of each /metrics load phase
#   BENCH_SCRAPE_EVERY=15   during the window every /metrics is scraped this often (0: never)
#   BENCH_PEER_TOPICS=head,block,chain_reorg,finalized_checkpoint   the peer's event topics
#                           (the ones ethwatch subscribes to; empty: the peer's own default list)
#   BENCH_NETWORK=1         also run scripts/bench-network.sh (0 skips it)
#   BENCH_NODES=standin     which nodes: standin (anvil + Lodestar dev chain, above) or real: one
#                           participant of the real post-merge devnet (tests/e2e/realnet.py: geth
#                           v1.17.10 + Prysm v6.0.4 beacon node + validator client holding all 64
#                           validators, 4 s slots, Traffic's signed transfers: 20 every 6 s),
#                           started inside the namespace without exporters; ethwatch subscribes to
#                           newHeads on geth's own websocket port, freshness listens there too.
#                           Needs `scripts/tools.sh geth prysm` (run here) and its Python venv.
#   BENCH_EL_ARGS="" BENCH_CL_ARGS=""   more flags for `ethwatch execution` / `ethwatch consensus`
#                           (word-split), for experiments such as --poll-interval 5s
#   ETHWATCH_BIN=path       benchmark this ethwatch binary instead of building one
#   BENCH_BUILD=static      which ethwatch to build: static (crt-static glibc, as the image ships; default)
#                           or glibc (plain cargo build --release)
#   BENCH_OUT=path          also write the report to this file
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$PWD"

CACHE="${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
BENCH_RUNS="${BENCH_RUNS:-3}"
BENCH_WARMUP="${BENCH_WARMUP:-30}"
BENCH_SECONDS="${BENCH_SECONDS:-120}"
BENCH_BLOCKS="${BENCH_BLOCKS:-50}"
BENCH_RATE="${BENCH_RATE:-500}"
BENCH_LOAD_SECONDS="${BENCH_LOAD_SECONDS:-20}"
BENCH_SCRAPE_EVERY="${BENCH_SCRAPE_EVERY:-15}"
BENCH_PEER_TOPICS="${BENCH_PEER_TOPICS-head,block,chain_reorg,finalized_checkpoint}"
BENCH_NETWORK="${BENCH_NETWORK:-1}"
BENCH_NODES="${BENCH_NODES:-standin}"
BENCH_EL_ARGS="${BENCH_EL_ARGS:-}"
BENCH_CL_ARGS="${BENCH_CL_ARGS:-}"

PEER_MODULE=github.com/ethpandaops/ethereum-metrics-exporter
PEER_VERSION=v0.29.2
VEGETA_MODULE=github.com/tsenart/vegeta/v12
VEGETA_VERSION=v12.13.0

LOG_TAG=bench-compare
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

for v in BENCH_RUNS BENCH_WARMUP BENCH_SECONDS BENCH_BLOCKS BENCH_RATE BENCH_LOAD_SECONDS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
[[ "$BENCH_SCRAPE_EVERY" =~ ^[0-9]+$ ]] || die "BENCH_SCRAPE_EVERY must be an integer"
[[ "$BENCH_NODES" == standin || "$BENCH_NODES" == real ]] ||
  die "BENCH_NODES must be standin or real, got '$BENCH_NODES'"
export BENCH_NODES

# =============================================================================================
# Outside the namespace: installs, builds, then the namespace, the network run and the report.
# =============================================================================================
if [[ "${BENCH_COMPARE_INNER:-0}" != 1 ]]; then
  if [[ "$BENCH_NODES" == real ]]; then
    scripts/tools.sh geth prysm python >/dev/null
    # shellcheck source=/dev/null
    source "$CACHE/tools/env.sh"
    [[ -n "${ETHWATCH_GETH:-}" && -n "${ETHWATCH_PRYSM_BEACON:-}" && -n "${ETHWATCH_PYTHON:-}" ]] ||
      die "tools.sh did not provide geth, Prysm and the Python venv"
  else
    scripts/tools.sh anvil lodestar >/dev/null
    # shellcheck source=/dev/null
    source "$CACHE/tools/env.sh"
    [[ -n "${ETHWATCH_ANVIL:-}" && -n "${ETHWATCH_LODESTAR:-}" ]] || die "tools.sh did not provide anvil and Lodestar"
  fi
  command -v go >/dev/null || die "the peer and vegeta are built with the Go toolchain, and 'go' is not on PATH"
  { command -v unshare && command -v ip; } >/dev/null ||
    die "needs unshare and ip (util-linux, iproute2) for the private network namespace"
  GO_VERSION="$(go env GOVERSION)"

  # --- the peer: go mod download, copy, go build ---------------------------------------------
  PEER_DIR="$CACHE/peer/ethereum-metrics-exporter-$PEER_VERSION"
  PEER_BIN="$PEER_DIR/ethereum-metrics-exporter"
  peer_spec="$PEER_MODULE@$PEER_VERSION $GO_VERSION"
  if [[ ! -x "$PEER_BIN" || "$(cat "$PEER_DIR/.installed" 2>/dev/null)" != "$peer_spec" ]]; then
    log "installing the peer $PEER_MODULE@$PEER_VERSION with $GO_VERSION into $PEER_DIR"
    rm -rf "$PEER_DIR"
    mkdir -p "$PEER_DIR"
    # GOTOOLCHAIN=local: build with this machine's Go or say why not (never fetch another one).
    if ! GOTOOLCHAIN=local go mod download -json "$PEER_MODULE@$PEER_VERSION" >"$PEER_DIR/download.json" 2>"$PEER_DIR/download.err"; then
      cat "$PEER_DIR/download.json" "$PEER_DIR/download.err" >&2
      die "go mod download $PEER_MODULE@$PEER_VERSION failed (above)"
    fi
    src_dir="$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("Dir") or ""); e=d.get("Error"); e and sys.exit("go mod download: " + e)' "$PEER_DIR/download.json")" ||
      die "go mod download reported an error (see $PEER_DIR/download.json)"
    [[ -d "$src_dir" ]] || die "go mod download reported no source directory"
    # The module cache is read-only: build in a writable copy.
    cp -r "$src_dir" "$PEER_DIR/src"
    chmod -R u+w "$PEER_DIR/src"
    log "building the peer (a few minutes cold: it pulls go-ethereum and the Docker client)"
    if ! (cd "$PEER_DIR/src" && GOTOOLCHAIN=local go build -trimpath -buildvcs=false -o "$PEER_BIN" .) >"$PEER_DIR/build.log" 2>&1; then
      tail -n 30 "$PEER_DIR/build.log" >&2
      die "go build of $PEER_MODULE@$PEER_VERSION failed with $GO_VERSION (above; whole log in $PEER_DIR/build.log)"
    fi
    # Its main() waits for a signal even after --help, hence the timeout.
    timeout -s KILL 10 "$PEER_BIN" --help >"$PEER_DIR/help.txt" 2>&1 || true
    grep -q -- --metrics-port "$PEER_DIR/help.txt" ||
      die "the built peer does not run: $PEER_BIN --help printed no usage (see $PEER_DIR/help.txt)"
    printf '%s\n' "$peer_spec" >"$PEER_DIR/.installed"
  fi

  # --- vegeta: an open-loop, fixed-rate HTTP load generator (wrk is closed loop) -------------
  VEGETA_DIR="$CACHE/tools/vegeta-$VEGETA_VERSION"
  VEGETA_BIN="$VEGETA_DIR/vegeta"
  if [[ ! -x "$VEGETA_BIN" ]]; then
    log "installing vegeta $VEGETA_VERSION into $VEGETA_DIR"
    mkdir -p "$VEGETA_DIR"
    GOTOOLCHAIN=local GOBIN="$VEGETA_DIR" go install "$VEGETA_MODULE@$VEGETA_VERSION" >&2 ||
      die "go install $VEGETA_MODULE@$VEGETA_VERSION failed"
  fi

  # --- ethwatch -------------------------------------------------------------------------------
  if [[ -z "${ETHWATCH_BIN:-}" ]]; then
    if [[ "${BENCH_BUILD:-static}" == static ]]; then
      # The binary the container image ships (scripts/build-static.sh: no shared libraries).
      log "building ethwatch (release, static)"
      ETHWATCH_BIN="$(scripts/build-static.sh)"
    else
      log "building ethwatch (release, glibc)"
      cargo build --release -p ethwatch --locked
      ETHWATCH_BIN="$CARGO_TARGET_DIR/release/ethwatch"
    fi
  fi
  [[ -x "$ETHWATCH_BIN" ]] || die "no ethwatch binary at $ETHWATCH_BIN"

  unshare --net true 2>/dev/null ||
    die "cannot create a private network namespace (unshare --net; run as root): the peer listens on every interface and is only run inside one"

  # --- run directory --------------------------------------------------------------------------
  new_run_dir "$CACHE/bench-compare" 4
  : >"$RUN/results.tsv"
  : >"$RUN/params.tsv"
  param() { printf '%s\t%s\n' "$1" "$2" >>"$RUN/params.tsv"; }

  size_stripped() { # <binary>: bytes of a stripped copy (ethwatch's release profile already strips)
    local tmp="$RUN/strip.tmp"
    if strip -o "$tmp" "$1" 2>/dev/null; then stat -c %s "$tmp"; else stat -c %s "$1"; fi
    rm -f "$tmp"
  }
  started_at=$SECONDS
  param date "$(date -u '+%Y-%m-%d %H:%M UTC')"
  param machine "$(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
  param ethwatch "$("$ETHWATCH_BIN" --version 2>/dev/null | head -n1) (tree $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- exporters Cargo.toml Cargo.lock 2>/dev/null || echo ', modified')), $(file -b "$ETHWATCH_BIN" | grep -q 'static' && echo 'static' || echo 'dynamic (glibc)')"
  param peer "ethereum-metrics-exporter $PEER_VERSION ($PEER_MODULE), go build -trimpath with $GO_VERSION"
  param bin_ethwatch "$(size_stripped "$ETHWATCH_BIN")"
  param bin_peer "$(size_stripped "$PEER_BIN")"
  param bin_peer_asbuilt "$(stat -c %s "$PEER_BIN")"
  param loadgen "vegeta $VEGETA_VERSION"

  # --- the measurement, in a private network namespace ----------------------------------------
  INNER_PID=""
  # shellcheck disable=SC2317 # called from the traps
  stop_inner() {
    if [[ -n "$INNER_PID" ]] && kill -0 "$INNER_PID" 2>/dev/null; then
      kill -TERM "$INNER_PID" 2>/dev/null || true
    fi
  }
  trap stop_inner EXIT
  trap 'stop_inner; exit 130' INT
  trap 'stop_inner; exit 143' TERM
  log "measuring in a private network namespace; logs and raw data in $RUN"
  # unshare --fork ignores SIGINT/SIGTERM while it waits, so the inner script writes its pid and
  # is signalled directly; --kill-child stops it should unshare itself be killed.
  BENCH_COMPARE_INNER=1 RUN="$RUN" ETHWATCH_BIN="$ETHWATCH_BIN" PEER_BIN="$PEER_BIN" \
    VEGETA_BIN="$VEGETA_BIN" ETHWATCH_ANVIL="${ETHWATCH_ANVIL:-}" ETHWATCH_LODESTAR="${ETHWATCH_LODESTAR:-}" \
    unshare --net --fork --kill-child=TERM bash "$ROOT/scripts/bench-compare.sh" &
  UNSHARE_PID=$!
  for _ in $(seq 50); do [[ -s "$RUN/inner.pid" ]] && break; sleep 0.1; done
  INNER_PID="$(cat "$RUN/inner.pid" 2>/dev/null || true)"
  inner_rc=0
  wait "$UNSHARE_PID" || inner_rc=$?
  INNER_PID=""
  ((inner_rc == 0)) || die "the measurement failed (exit $inner_rc); logs in $RUN"
  param compare_seconds "$((SECONDS - started_at))"

  # --- the network watcher's scale run (binds 127.0.0.1 only; outside the namespace) ---------
  if [[ "$BENCH_NETWORK" == 1 ]]; then
    log "network watcher scale run (scripts/bench-network.sh)"
    net_started=$SECONDS
    scripts/bench-network.sh >"$RUN/network.md" 2>"$RUN/network.log" ||
      { tail -n 20 "$RUN/network.log" >&2; die "scripts/bench-network.sh failed"; }
    param network_seconds "$((SECONDS - net_started))"
  fi
  param total_seconds "$((SECONDS - started_at))"

  python3 "$ROOT/scripts/bench/compare_report.py" "$RUN" >"$RUN/report.md"
  if [[ -n "${BENCH_OUT:-}" ]]; then cp "$RUN/report.md" "$BENCH_OUT"; fi
  echo
  cat "$RUN/report.md"
  exit 0
fi

# =============================================================================================
# Inside the private network namespace (only loopback exists here).
# =============================================================================================
echo $$ >"$RUN/inner.pid"
ip link set lo up
RESULTS="$RUN/results.tsv"

# Children: start, wait_until, stop_pids of scripts/lib.sh.
stop_all() {
  trap '' INT TERM
  stop_children
  # The real devnet's chain data is about 1 GiB after a run; its logs stay.
  if [[ "$BENCH_NODES" == real ]]; then rm -rf "$RUN"/realnet/pair-*; fi
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# metric_positive <url> <regex>: the page has a line matching the regex whose value is >= 1.
metric_positive() {
  curl -sf -m 2 -H 'Accept-Encoding: identity' "$1" | awk -v re="$2" '$0 ~ re && $NF + 0 >= 1 {ok = 1} END {exit !ok}'
}
# (printf "%.0f", not "%d" or print: Debian's awk is mawk, whose %d stops at 2^31, 2.1 s in ns.)
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
machine_ticks() { awk '/^cpu / {b = $2+$3+$4+$7+$8+$9; printf "%.0f %.0f\n", b, b+$5+$6; exit}' /proc/stat; }

read -r EL_PORT CL_PORT CL_P2P_PORT PX_EW PX_EP PX_CW PX_CP M_EW M_CW M_P < <(free_ports 10)

# --- nodes ------------------------------------------------------------------------------------
if [[ "$BENCH_NODES" == real ]]; then
  # One participant of the real devnet, without exporters; the harness writes its URLs to a file
  # once execution blocks advance (geth's HTTP and websocket are separate ports).
  SLOT_S=4
  mkdir -p "$RUN/realnet"
  start realnet "$ROOT" "$ETHWATCH_PYTHON" -m tests.e2e.realnet --dir "$RUN/realnet" --pairs 1 \
    --no-exporters --endpoints-json "$RUN/realnet/endpoints.json"
  REALNET_PID=$CHILD
  wait_until realnet "$REALNET_PID" 600 test -s "$RUN/realnet/endpoints.json"
  read -r EL_URL EL_WS CL_URL < <(python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["pairs"][0]; print(p["el_url"], p["ws_url"], p["beacon_url"])' "$RUN/realnet/endpoints.json")
  cl_has_block() { curl -sf -m 2 "$CL_URL/eth/v1/beacon/headers/head" | grep -Eq '"slot":"[1-9]'; }
  wait_until realnet "$REALNET_PID" 120 cl_has_block
else
  SLOT_S=2
  EL_URL="http://127.0.0.1:$EL_PORT"
  EL_WS="ws://127.0.0.1:$EL_PORT"
  CL_URL="http://127.0.0.1:$CL_PORT"
  start anvil "$RUN" "$ETHWATCH_ANVIL" --host 127.0.0.1 --port "$EL_PORT" --block-time 1 --prune-history
  wait_until anvil "$CHILD" 30 rpc "$EL_URL" eth_blockNumber

  start_lodestar_dev "$RUN/lodestar" "$CL_PORT" "$CL_P2P_PORT"
  LODESTAR_PID=$CHILD
  wait_until lodestar "$LODESTAR_PID" 90 http_ok "$CL_URL/eth/v1/node/version"
  cl_has_block() { curl -sf -m 2 "$CL_URL/eth/v1/beacon/headers/head" | grep -Eq '"slot":"[1-9]'; }
  wait_until lodestar "$LODESTAR_PID" 90 cl_has_block
fi

# --- one counting proxy per exporter per node ---------------------------------------------------
# proxy <name> <script> <port> <upstream>
proxy() {
  start "proxy-$1" "$RUN" python3 "$ROOT/scripts/bench/$2" --listen "127.0.0.1:$3" --upstream "$4" \
    --counts-file "$RUN/counts-$1.json"
  wait_until "proxy-$1" "$CHILD" 10 http_ok "http://127.0.0.1:$3/counts"
}
proxy el-ethwatch countproxy.py "$PX_EW" "$EL_URL"
proxy el-peer countproxy.py "$PX_EP" "$EL_URL"
proxy cl-ethwatch streamproxy.py "$PX_CW" "$CL_URL"
proxy cl-peer streamproxy.py "$PX_CP" "$CL_URL"

# --- the peer's configuration (only the two proxies, on 127.0.0.1) ----------------------------
{
  echo "# Written by scripts/bench-compare.sh: execution + consensus, txpool module and event stream on."
  echo "execution:"
  echo "  enabled: true"
  echo "  name: execution"
  echo "  url: \"http://127.0.0.1:$PX_EP\""
  echo "  modules: [eth, net, web3, txpool]"
  echo "consensus:"
  echo "  enabled: true"
  echo "  name: consensus"
  echo "  url: \"http://127.0.0.1:$PX_CP\""
  echo "  eventStream:"
  echo "    enabled: true"
  if [[ -n "$BENCH_PEER_TOPICS" ]]; then echo "    topics: [${BENCH_PEER_TOPICS//,/, }]"; fi
  echo "diskUsage:"
  echo "  enabled: false"
  echo "docker:"
  echo "  enabled: false"
} >"$RUN/peer.yaml"

cl_version() { curl -sf "$CL_URL/eth/v1/node/version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["version"])'; }
{
  if [[ "$BENCH_NODES" == real ]]; then
    printf 'node_el\t%s\n' "$(rpc "$EL_URL" web3_clientVersion | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"])'), post-merge (tests/e2e/realnet.py, one participant), signed transfers: 20 every 6 s"
    printf 'node_cl\t%s\n' "$(cl_version), Electra from genesis, 64 validators in one Prysm validator client, 4 s slots, no peers"
  else
    printf 'node_el\t%s\n' "$("$ETHWATCH_ANVIL" --version | head -n1), --block-time 1 --prune-history"
    printf 'node_cl\t%s\n' "Lodestar $(cl_version), dev chain, 8 validators, 2 s slots"
  fi
  printf 'ethwatch_flags\t%s\n' "execution --ws-url (direct) --rpc-url (proxy)${BENCH_EL_ARGS:+ $BENCH_EL_ARGS}, consensus --beacon-url (proxy)${BENCH_CL_ARGS:+ $BENCH_CL_ARGS}; defaults otherwise"
  printf 'peer_flags\t%s\n' "--config peer.yaml: modules eth, net, web3, txpool; eventStream on, topics ${BENCH_PEER_TOPICS:-(its defaults)}"
  printf 'method\t%s\n' "$BENCH_RUNS run(s): ${BENCH_WARMUP}s warm-up, ${BENCH_SECONDS}s window (scrape every ${BENCH_SCRAPE_EVERY}s), freshness over >= $BENCH_BLOCKS blocks per layer, /metrics at $BENCH_RATE req/s for ${BENCH_LOAD_SECONDS}s per endpoint"
  printf 'runs\t%s\n' "$BENCH_RUNS"
  printf 'blocks\t%s\n' "$BENCH_BLOCKS"
  printf 'rate\t%s\n' "$BENCH_RATE"
} >>"$RUN/params.tsv"

# --- one run ----------------------------------------------------------------------------------
EW_URL="http://127.0.0.1:$M_EW/metrics"
CW_URL="http://127.0.0.1:$M_CW/metrics"
P_URL="http://127.0.0.1:$M_P/metrics"

# load <run> <subject> <pid> <url>: BENCH_RATE requests per second for BENCH_LOAD_SECONDS, open
# loop (vegeta starts a new request on schedule whether or not earlier ones have answered).
load() {
  local run="$1" subject="$2" pid="$3" url="$4" n0 n1 m0 m1 out="$RUN/vegeta-$2-$1"
  n0="$(cpu_ns "$pid")"
  m0="$(machine_ticks)"
  echo "GET $url" | "$VEGETA_BIN" attack -rate "$BENCH_RATE/s" -duration "${BENCH_LOAD_SECONDS}s" \
    -laddr 127.0.0.1 -max-body 0 -header 'Accept-Encoding: identity' -timeout 5s >"$out.bin" ||
    die "vegeta failed against $subject"
  m1="$(machine_ticks)"
  n1="$(cpu_ns "$pid")"
  read -r b0 t0 <<<"$m0"
  read -r b1 t1 <<<"$m1"
  "$VEGETA_BIN" encode -to csv "$out.bin" | python3 "$ROOT/scripts/bench/latency.py" --run "$run" \
    --subject "$subject" --out "$RESULTS" --cpu-ns "$((n1 - n0))" \
    --busy-pct "$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) 'BEGIN {print (t ? b / t * 100 : 0)}')"
  rm -f "$out.bin"
}

measure() {
  local run="$1"
  log "run $run/$BENCH_RUNS: starting the exporters"
  local el_extra=() cl_extra=()
  # shellcheck disable=SC2206 # word-splitting is the point
  el_extra=($BENCH_EL_ARGS)
  # shellcheck disable=SC2206
  cl_extra=($BENCH_CL_ARGS)
  start "ethwatch-execution-$run" "$RUN" "$ETHWATCH_BIN" execution --rpc-url "http://127.0.0.1:$PX_EW" \
    --ws-url "$EL_WS" --web.listen-address "127.0.0.1:$M_EW" "${el_extra[@]}"
  local ew=$CHILD
  start "ethwatch-consensus-$run" "$RUN" "$ETHWATCH_BIN" consensus --beacon-url "http://127.0.0.1:$PX_CW" \
    --web.listen-address "127.0.0.1:$M_CW" "${cl_extra[@]}"
  local cw=$CHILD
  start "peer-$run" "$RUN" "$PEER_BIN" --config "$RUN/peer.yaml" --metrics-port "$M_P"
  local pp=$CHILD
  wait_until "ethwatch-execution-$run" "$ew" 60 metric_positive "$EW_URL" '^eth_el_head_block_number '
  wait_until "ethwatch-consensus-$run" "$cw" 60 metric_positive "$CW_URL" '^eth_cl_head_slot '
  wait_until "peer-$run" "$pp" 60 metric_positive "$P_URL" '^eth_exe_block_most_recent_number\{.*identifier="head"'
  wait_until "peer-$run" "$pp" 60 metric_positive "$P_URL" '^eth_con_beacon_slot\{block_id="head"'
  log "run $run: all three see heads; warm-up ${BENCH_WARMUP}s"
  sleep "$BENCH_WARMUP"

  log "run $run: window ${BENCH_SECONDS}s (memory, CPU, requests to the nodes)"
  local scrape=()
  if ((BENCH_SCRAPE_EVERY > 0)); then
    scrape=(--scrape "$EW_URL" --scrape "$CW_URL" --scrape "$P_URL" --scrape-every "$BENCH_SCRAPE_EVERY")
  fi
  python3 "$ROOT/scripts/bench/window.py" --seconds "$BENCH_SECONDS" --run "$run" --out "$RESULTS" \
    --pid "ethwatch_el=$ew" --pid "ethwatch_cl=$cw" --pid "peer=$pp" \
    --proxy "px_el_ethwatch=http://127.0.0.1:$PX_EW" --proxy "px_el_peer=http://127.0.0.1:$PX_EP" \
    --proxy "px_cl_ethwatch=http://127.0.0.1:$PX_CW" --proxy "px_cl_peer=http://127.0.0.1:$PX_CP" \
    "${scrape[@]}" --routes-out "$RUN/routes-$run.json"
  for pid in "$ew" "$cw" "$pp"; do alive "$pid" || die "an exporter exited during the window (logs in $RUN)"; done

  # The pages as served, for the coverage table and body sizes.
  curl -sf -m 5 -H 'Accept-Encoding: identity' "$EW_URL" >"$RUN/metrics-ethwatch-execution-$run.txt"
  curl -sf -m 5 -H 'Accept-Encoding: identity' "$CW_URL" >"$RUN/metrics-ethwatch-consensus-$run.txt"
  curl -sf -m 5 -H 'Accept-Encoding: identity' "$P_URL" >"$RUN/metrics-peer-$run.txt"

  log "run $run: freshness over at least $BENCH_BLOCKS blocks per layer"
  python3 "$ROOT/scripts/bench/freshness.py" --el-ws "$EL_WS" --cl-url "$CL_URL" \
    --blocks "$BENCH_BLOCKS" --timeout $((BENCH_BLOCKS * SLOT_S * 3 + 120)) --out "$RUN/freshness-$run.json" \
    --target "ethwatch_el=el=$EW_URL=eth_el_head_block_number" \
    --target "peer_el=el=$P_URL=eth_exe_block_most_recent_number{identifier=\"head\"}" \
    --target "ethwatch_cl=cl=$CW_URL=eth_cl_head_slot" \
    --target "peer_cl=cl=$P_URL=eth_con_beacon_slot{block_id=\"head\"}" 2>>"$RUN/freshness.log"

  log "run $run: /metrics at $BENCH_RATE req/s, ${BENCH_LOAD_SECONDS}s per endpoint"
  # Rotate the order per run, so no exporter always goes first.
  local order=(ethwatch_el ethwatch_cl peer) k i
  for ((i = 0; i < 3; i++)); do
    k="${order[$(((i + run - 1) % 3))]}"
    case "$k" in
    ethwatch_el) load "$run" ethwatch_el "$ew" "$EW_URL" ;;
    ethwatch_cl) load "$run" ethwatch_cl "$cw" "$CW_URL" ;;
    peer) load "$run" peer "$pp" "$P_URL" ;;
    esac
  done
  local name pid
  for name in ethwatch_el:$ew ethwatch_cl:$cw peer:$pp; do
    pid="${name#*:}"
    alive "$pid" || die "${name%%:*} exited under load (logs in $RUN)"
    printf '%s\t%s\t%s\t%s\n' "$run" "${name%%:*}" hwm_end_mib \
      "$(awk '/^VmHWM:/ {print $2 / 1024}' "/proc/$pid/status")" >>"$RUN/results.tsv"
  done

  stop_pids "$ew" "$cw" "$pp"
  # Forget them: stop_all must not signal reused pids later.
  local keep=() keepn=() j
  for j in "${!PIDS[@]}"; do
    case " $ew $cw $pp " in *" ${PIDS[$j]} "*) ;; *) keep+=("${PIDS[$j]}"); keepn+=("${NAMES[$j]}") ;; esac
  done
  PIDS=("${keep[@]}")
  NAMES=("${keepn[@]}")
}

for ((run = 1; run <= BENCH_RUNS; run++)); do
  measure "$run"
done
log "measurement done"
