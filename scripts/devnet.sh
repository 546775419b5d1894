#!/usr/bin/env bash
# Run ethwatch against a local devnet. Two kinds:
#
#   scripts/devnet.sh              # the real one (default): two participants, each geth + Prysm
#                                  # beacon node + Prysm validator client, peered over loopback,
#                                  # post-merge (Prague/Electra), 4 s slots; ethwatch execution and
#                                  # consensus beside every node, ethwatch network over all, and a
#                                  # Prometheus (the project's rules) with an Alertmanager
#   DEVNET=quick scripts/devnet.sh # the quick stand-in: anvil + ethwatch execution, a Lodestar
#                                  # dev chain + ethwatch consensus, ethwatch network over both
#
# Everything binds 127.0.0.1 on free ports; logs go to a run directory under $CACHE/devnet/.
# Ctrl-C stops it all. The real devnet's first start builds geth and Prysm from the Go module
# proxy (about 10 minutes on 2 cores, cached afterwards); later starts take about a minute.
#
# Environment knobs:
#   DEVNET=real|quick    which devnet (default real)
#   PAIRS=2              participants of the real devnet
#   VALIDATORS=64        validators of the real devnet, split evenly between participants
#   WITH_JAEGER=1        the real devnet's exporters send traces to a local Jaeger (URL printed)
#   BLOCK_TIME=2         anvil block time in seconds (quick)
#   WITH_CONSENSUS=0     execution side only (quick: no Lodestar, no consensus exporter)
#   NODES_ONLY=1         start only the nodes (quick: no cargo build, no ethwatch)
#   ETHWATCH_BIN=path    use this ethwatch binary instead of building one
#   EL_PORT, EXP_PORT, CL_PORT, CL_P2P_PORT, CL_EXP_PORT, NET_PORT   fixed ports (quick)
set -euo pipefail

cd "$(dirname "$0")/.."

CACHE="${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
DEVNET="${DEVNET:-real}"
BLOCK_TIME="${BLOCK_TIME:-2}"
WITH_CONSENSUS="${WITH_CONSENSUS:-1}"
NODES_ONLY="${NODES_ONLY:-0}"

LOG_TAG=devnet
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

case "$DEVNET" in
real)
  scripts/tools.sh geth prysm python prometheus alertmanager >/dev/null
  # shellcheck source=/dev/null
  source "$CACHE/tools/env.sh"
  if [[ -z "${ETHWATCH_BIN:-}" ]]; then
    log "building ethwatch (release)"
    cargo build --release -p ethwatch --locked
    ETHWATCH_BIN="$CARGO_TARGET_DIR/release/ethwatch"
  fi
  [[ -x "$ETHWATCH_BIN" ]] || die "no ethwatch binary at $ETHWATCH_BIN"
  new_run_dir "$CACHE/devnet" 4
  otel=()
  if [[ "${WITH_JAEGER:-0}" == 1 ]]; then
    # Traces of every exporter to a local Jaeger (scripts/jaeger.sh, 127.0.0.1 only).
    scripts/tools.sh jaeger >/dev/null
    # shellcheck source=/dev/null
    source "$CACHE/tools/env.sh"
    export JAEGER_STATE="$RUN/jaeger"
    eval "$(scripts/jaeger.sh start)"
    trap 'scripts/jaeger.sh stop >/dev/null 2>&1 || true' EXIT
    otel=(--otel)
  fi
  # The project's rules, with the low-peer thresholds of a two-node network
  # (tests/e2e/realnet-overlay.yaml), go into the devnet's Prometheus.
  "$ETHWATCH_PYTHON" -m tests.e2e.realnet --dir "$RUN" --ethwatch "$ETHWATCH_BIN" \
    --pairs "${PAIRS:-2}" --validators "${VALIDATORS:-64}" "${otel[@]}"
  exit $?
  ;;
quick) ;;
*) die "DEVNET must be real or quick, not '$DEVNET'" ;;
esac

# --- tools and binary ------------------------------------------------------------------------
tools=(anvil)
[[ "$WITH_CONSENSUS" == 1 ]] && tools+=(lodestar)
scripts/tools.sh "${tools[@]}" >/dev/null
# shellcheck source=/dev/null
source "$CACHE/tools/env.sh"

if [[ "$NODES_ONLY" != 1 && -z "${ETHWATCH_BIN:-}" ]]; then
  log "building ethwatch (release)"
  cargo build --release -p ethwatch --locked
  ETHWATCH_BIN="$CARGO_TARGET_DIR/release/ethwatch"
fi
if [[ "$NODES_ONLY" != 1 ]]; then
  [[ -x "$ETHWATCH_BIN" ]] || die "no ethwatch binary at $ETHWATCH_BIN"
fi

# --- ports and run directory -----------------------------------------------------------------
read -r p1 p2 p3 p4 p5 p6 < <(free_ports 6)
EL_PORT="${EL_PORT:-$p1}"         # anvil JSON-RPC (HTTP and websocket)
EXP_PORT="${EXP_PORT:-$p2}"       # ethwatch execution /metrics
CL_PORT="${CL_PORT:-$p3}"         # Lodestar beacon REST API
CL_P2P_PORT="${CL_P2P_PORT:-$p4}" # Lodestar libp2p (TCP, loopback only)
CL_EXP_PORT="${CL_EXP_PORT:-$p5}" # ethwatch consensus /metrics
NET_PORT="${NET_PORT:-$p6}"       # ethwatch network /metrics

new_run_dir "$CACHE/devnet" 4

# --- child processes (scripts/lib.sh: start, wait_until, stop on exit) ----------------------
stop_children_on_exit

# --- execution layer -------------------------------------------------------------------------
EL_URL="http://127.0.0.1:$EL_PORT"
EL_WS_URL="ws://127.0.0.1:$EL_PORT"
EXP_URL="http://127.0.0.1:$EXP_PORT/metrics"

start anvil "$RUN" "$ETHWATCH_ANVIL" --host 127.0.0.1 --port "$EL_PORT" \
  --block-time "$BLOCK_TIME" --prune-history
wait_until anvil "${PIDS[-1]}" 30 rpc "$EL_URL" eth_blockNumber

if [[ "$NODES_ONLY" != 1 ]]; then
  start ethwatch-execution "$RUN" "$ETHWATCH_BIN" execution \
    --rpc-url "$EL_URL" --ws-url "$EL_WS_URL" --web.listen-address "127.0.0.1:$EXP_PORT"
  wait_until ethwatch-execution "${PIDS[-1]}" 30 http_ok "$EXP_URL"
fi

# --- consensus layer (only with WITH_CONSENSUS=1) --------------------------------------------
CL_URL="http://127.0.0.1:$CL_PORT"
CL_EXP_URL="http://127.0.0.1:$CL_EXP_PORT/metrics"

# The consensus exporter answers eth_cl_up 1 and has seen a head block.
cl_sees_head() {
  local m
  m="$(curl -sf -m 2 "$1")" || return 1
  grep -q '^eth_cl_up 1$' <<<"$m" && grep -Eq '^eth_cl_head_slot [1-9]' <<<"$m"
}

# A one-node Lodestar dev chain (scripts/lib.sh): 8 interop validators in the same process, 2 s
# slots, minimal preset, in $RUN/lodestar.
start_consensus() {
  start_lodestar_dev "$RUN/lodestar" "$CL_PORT" "$CL_P2P_PORT"
  wait_until lodestar "${PIDS[-1]}" 60 http_ok "$CL_URL/eth/v1/node/version"

  if [[ "$NODES_ONLY" != 1 ]]; then
    start ethwatch-consensus "$RUN" "$ETHWATCH_BIN" consensus \
      --beacon-url "$CL_URL" --web.listen-address "127.0.0.1:$CL_EXP_PORT"
    wait_until ethwatch-consensus "${PIDS[-1]}" 30 http_ok "$CL_EXP_URL"
    # Up means the exporter reached the node; a head slot means the chain produces blocks (the
    # first one comes about 9 s after Lodestar starts).
    wait_until ethwatch-consensus "${PIDS[-1]}" 60 cl_sees_head "$CL_EXP_URL"
  fi
}
[[ "$WITH_CONSENSUS" == 1 ]] && start_consensus

# --- network watcher over every node ---------------------------------------------------------
NET_URL="http://127.0.0.1:$NET_PORT/metrics"
if [[ "$NODES_ONLY" != 1 ]]; then
  net_args=(--execution-target "el-1=$EL_URL")
  if [[ "$WITH_CONSENSUS" == 1 ]]; then
    net_args+=(--beacon-target "cl-1=$CL_URL" --pair "el-1=cl-1")
  fi
  start ethwatch-network "$RUN" "$ETHWATCH_BIN" network "${net_args[@]}" \
    --poll-interval 2s --web.listen-address "127.0.0.1:$NET_PORT"
  wait_until ethwatch-network "${PIDS[-1]}" 30 http_ok "$NET_URL"
fi

# --- report and wait -------------------------------------------------------------------------
# endpoints.env lets other scripts find this devnet: `source $CACHE/devnet/latest/endpoints.env`.
{
  echo "DEVNET_EL_URL=$EL_URL"
  echo "DEVNET_EL_WS_URL=$EL_WS_URL"
  [[ "$NODES_ONLY" != 1 ]] && echo "DEVNET_EL_METRICS_URL=$EXP_URL"
  if [[ "$WITH_CONSENSUS" == 1 ]]; then
    echo "DEVNET_CL_URL=$CL_URL"
    [[ "$NODES_ONLY" != 1 ]] && echo "DEVNET_CL_METRICS_URL=$CL_EXP_URL"
  fi
  [[ "$NODES_ONLY" != 1 ]] && echo "DEVNET_NETWORK_METRICS_URL=$NET_URL"
  true
} >"$RUN/endpoints.env"

echo
echo "devnet is up (logs and endpoints.env in $RUN)"
echo "  execution node (anvil):  $EL_URL  ($EL_WS_URL)"
[[ "$NODES_ONLY" != 1 ]] && echo "  execution metrics:       $EXP_URL"
if [[ "$WITH_CONSENSUS" == 1 ]]; then
  echo "  beacon node (lodestar):  $CL_URL"
  [[ "$NODES_ONLY" != 1 ]] && echo "  consensus metrics:       $CL_EXP_URL"
fi
[[ "$NODES_ONLY" != 1 ]] && echo "  network watcher metrics: $NET_URL"
echo "Press Ctrl-C to stop."

# Return when any child exits (an error: they should run until stopped) or a signal arrives.
set +e
wait -n "${PIDS[@]}"
set -e
for i in "${!PIDS[@]}"; do
  alive "${PIDS[$i]}" || child_failed "${NAMES[$i]}" "exited unexpectedly"
done
