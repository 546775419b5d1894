#!/usr/bin/env bash
# Jaeger (v2, in-memory storage) as a local trace backend for a devnet or a test, bound to
# 127.0.0.1 only: OTLP gRPC and HTTP in, the query API and UI out. The binary comes from
# scripts/tools.sh (tool `jaeger`, a build of its Go module).
#
#   scripts/jaeger.sh start     # start it (free ports), wait until it answers, print the UI URL and
#                               #   the OTEL_* lines an exporter needs; `eval "$(scripts/jaeger.sh start)"`
#   scripts/jaeger.sh stop      # stop the one started from this state directory
#   scripts/jaeger.sh status    # print the same lines again, exit 1 when it is not running
#   scripts/jaeger.sh config OTLP_GRPC OTLP_HTTP QUERY_GRPC QUERY_HTTP   # print its config file
#
# State (pid, ports, config, log) lives in $JAEGER_STATE (default $ETHWATCH_CACHE/run/jaeger).
# Jaeger's own defaults listen on every interface (the query API and UI on :16686, its metrics
# on :8888); the config written here names 127.0.0.1 for every listener and turns its own
# metrics off, so nothing else listens.
set -euo pipefail

cd "$(dirname "$0")/.."

CACHE="${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}"
STATE="${JAEGER_STATE:-$CACHE/run/jaeger}"

LOG_TAG=jaeger.sh
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

config() { # <otlp grpc> <otlp http> <query grpc> <query http>
  cat <<EOF
# Written by scripts/jaeger.sh: Jaeger v2 all-in-one, in memory, 127.0.0.1 only.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$1
      http:
        endpoint: 127.0.0.1:$2
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 20000
  jaeger_query:
    storage:
      traces: memstore
    grpc:
      endpoint: 127.0.0.1:$3
    http:
      endpoint: 127.0.0.1:$4
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
EOF
}

jaeger_bin() {
  if [[ -n "${ETHWATCH_JAEGER:-}" ]]; then echo "$ETHWATCH_JAEGER"; return; fi
  local env="$CACHE/tools/env.sh"
  if [[ -f "$env" ]]; then
    # shellcheck source=/dev/null
    (source "$env"; [[ -n "${ETHWATCH_JAEGER:-}" ]] && echo "$ETHWATCH_JAEGER") && return
  fi
  local m
  for m in "$CACHE"/tools/jaeger-*/.installed; do
    [[ -f "$m" ]] && { head -n1 "$m"; return; }
  done
  die "no jaeger binary: run scripts/tools.sh jaeger"
}

running() { daemon_running "$STATE/pid"; }

print_env() {
  # shellcheck source=/dev/null
  source "$STATE/ports"
  echo "# Jaeger UI and query API: http://127.0.0.1:$QUERY_HTTP (traces: /api/traces/TRACE_ID)"
  echo "export JAEGER_UI=http://127.0.0.1:$QUERY_HTTP"
  echo "export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$OTLP_GRPC"
  echo "export OTEL_EXPORTER_OTLP_PROTOCOL=grpc"
  echo "# or HTTP/protobuf: OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$OTLP_HTTP OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
}

start_jaeger() {
  if running; then
    log "already running (pid $(cat "$STATE/pid"))"
    print_env
    return
  fi
  local bin
  bin="$(jaeger_bin)"
  mkdir -p "$STATE"
  local g h qg qh
  g="${JAEGER_OTLP_GRPC_PORT:-$(free_port)}"
  h="${JAEGER_OTLP_HTTP_PORT:-$(free_port)}"
  qg="${JAEGER_QUERY_GRPC_PORT:-$(free_port)}"
  qh="${JAEGER_QUERY_HTTP_PORT:-$(free_port)}"
  config "$g" "$h" "$qg" "$qh" >"$STATE/config.yaml"
  printf 'OTLP_GRPC=%s\nOTLP_HTTP=%s\nQUERY_GRPC=%s\nQUERY_HTTP=%s\n' "$g" "$h" "$qg" "$qh" >"$STATE/ports"
  daemon_start "$STATE/pid" "$STATE/jaeger.log" "$bin" --config "file:$STATE/config.yaml"
  local i
  for i in $(seq 1 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$qh/api/services" 2>/dev/null &&
      (exec 3<>"/dev/tcp/127.0.0.1/$g") 2>/dev/null; then
      log "started (pid $(cat "$STATE/pid"), log $STATE/jaeger.log)"
      print_env
      return
    fi
    running || break
    sleep 0.2
  done
  tail -n 20 "$STATE/jaeger.log" >&2 || true
  stop_jaeger
  die "jaeger did not come up"
}

stop_jaeger() {
  local pid
  pid="$(daemon_stop "$STATE/pid")"
  if [[ -n "$pid" ]]; then log "stopped (pid $pid)"; fi
}

case "${1:-}" in
  start) start_jaeger ;;
  stop) stop_jaeger ;;
  status) running || { log "not running"; exit 1; }; print_env ;;
  config) shift; [[ $# -eq 4 ]] || die "config needs 4 ports"; config "$@" ;;
  *) die "usage: scripts/jaeger.sh start|stop|status|config PORTS..." ;;
esac
