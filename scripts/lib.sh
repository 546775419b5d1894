# shellcheck shell=bash
# The helpers the scripts share; sourced, never run:
#
#   LOG_TAG=devnet                       # the prefix of log lines (default: the script's name)
#   source "$(dirname "$0")/lib.sh"
#
# What it gives (docs/development.md, "Scripts"):
#   log MSG / die MSG                    a line on stderr; die exits 1
#   free_ports N / free_port             N distinct free loopback ports (held open together)
#   new_run_dir DIR KEEP                 RUN=DIR/run-<time>-<pid>, DIR/latest -> it; keeps the
#                                        KEEP newest runs
#   start NAME WORKDIR CMD...            a child with its output in $RUN/NAME.log; sets CHILD,
#                                        appends to PIDS and NAMES
#   alive PID                            it still runs
#   stop_pids PID...                     SIGTERM; a second SIGTERM after 1 s (Lodestar hangs after
#                                        "Stopping gracefully" until it gets one); SIGKILL after
#                                        10 s; reaps
#   stop_children                        stop_pids on every child still running, once
#   stop_children_on_exit                trap: stop_children on exit, exit 130/143 on INT/TERM
#   child_failed NAME WHAT               die with the end of $RUN/NAME.log
#   wait_until NAME PID SECS CMD...      poll CMD every 0.2 s until it succeeds; fail when PID
#                                        exits or SECS pass
#   rpc URL METHOD / http_ok URL         one JSON-RPC call without params / a 2xx answer
#   start_lodestar_dev DIR REST P2P      `start lodestar`: the one-node Lodestar dev chain in DIR
#   daemon_start PIDFILE LOG CMD...      a process in its own session that outlives the script
#   daemon_running PIDFILE / daemon_stop PIDFILE
#                                        is it alive / SIGTERM, SIGKILL after 5 s, pid file removed

log() { echo "${LOG_TAG:-$(basename "$0" .sh)}: $*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# Ask the kernel for N distinct free loopback ports (all held open at once, so no duplicates).
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
free_port() { free_ports 1; }

# new_run_dir <dir> <keep>: a fresh run directory, the older ones pruned to the <keep> newest.
new_run_dir() {
  local dir="$1" keep="$2"
  mkdir -p "$dir"
  shopt -s nullglob
  local old=("$dir"/run-*)
  shopt -u nullglob
  if ((${#old[@]} > keep)); then rm -rf "${old[@]:0:${#old[@]}-keep}"; fi
  RUN="$dir/run-$(date +%Y%m%d-%H%M%S)-$$"
  mkdir -p "$RUN"
  ln -sfn "$RUN" "$dir/latest"
}

PIDS=()  # every child started with `start`, in start order
NAMES=() # a name per child, for messages

# start <name> <workdir> <command...>: a child with its output in $RUN/<name>.log; sets CHILD.
start() {
  local name="$1" dir="$2"
  shift 2
  (cd "$dir" && exec "$@") >"$RUN/$name.log" 2>&1 </dev/null &
  CHILD=$!
  PIDS+=("$CHILD")
  NAMES+=("$name")
  log "started $name (pid $CHILD, log $RUN/$name.log)"
}

alive() { kill -0 "$1" 2>/dev/null; }

# stop_pids <pid...>: SIGTERM; a second SIGTERM after 1 s; SIGKILL after 10 s; reap.
stop_pids() {
  local pid i any
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for i in {1..40}; do
    any=0
    for pid in "$@"; do alive "$pid" && any=1; done
    ((any)) || break
    if ((i == 4)); then for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done; fi
    if ((i == 40)); then for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done; fi
    sleep 0.25
  done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

STOPPED=0
stop_children() {
  ((STOPPED)) && return 0
  STOPPED=1
  local live=() pid
  for pid in "${PIDS[@]}"; do alive "$pid" && live+=("$pid"); done
  ((${#live[@]})) || return 0
  log "stopping"
  stop_pids "${live[@]}"
  log "stopped; logs in $RUN"
}

stop_children_on_exit() {
  trap stop_children EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# Fail with the end of a child's log.
child_failed() { # <name> <what>
  log "ERROR: $1 $2; last lines of $RUN/$1.log:"
  tail -n 20 "$RUN/$1.log" >&2 || true
  exit 1
}

# wait_until <name> <pid> <timeout s> <command...>: poll the command until it succeeds.
wait_until() {
  local name="$1" pid="$2" timeout="$3"
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    alive "$pid" || child_failed "$name" "exited during start-up"
    ((SECONDS < deadline)) || child_failed "$name" "did not answer within ${timeout}s"
    sleep 0.2
  done
}

rpc() { # <url> <method>: one JSON-RPC call with no params
  curl -sf -m 2 -H 'Content-Type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":[]}" "$1"
}
http_ok() { curl -sf -m 2 -o /dev/null "$1"; }

# start_lodestar_dev <dir> <rest port> <p2p port>: a one-node Lodestar dev chain (`start lodestar`,
# so CHILD is its pid): 8 interop validators in the same process, 2 s slots, minimal preset,
# Altair at genesis, no peers. It writes genesis.ssz to its working directory, so it runs in
# <dir>; --beaconNodes must name the REST port, or no block is ever produced.
start_lodestar_dev() {
  local dir="$1" rest="$2" p2p="$3"
  mkdir -p "$dir"
  start lodestar "$dir" "$ETHWATCH_LODESTAR" dev \
    --genesisValidators 8 --startValidators 0..7 --reset \
    --rest --rest.address 127.0.0.1 --rest.port "$rest" --rest.namespace '*' \
    --beaconNodes "http://127.0.0.1:$rest" \
    --listenAddress 127.0.0.1 --port "$p2p" --discv5 false --mdns false --targetPeers 0 \
    --params.SECONDS_PER_SLOT 2 --params.ALTAIR_FORK_EPOCH 0 \
    --dataDir "$dir/data"
}

# daemon_start <pidfile> <log> <command...>: a process in its own session, its pid in <pidfile>.
daemon_start() {
  local pidfile="$1" logfile="$2"
  shift 2
  setsid "$@" </dev/null >"$logfile" 2>&1 &
  echo $! >"$pidfile"
}
daemon_running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
# daemon_stop <pidfile>: SIGTERM, SIGKILL after 5 s; the pid file goes. Prints the pid it stopped.
daemon_stop() {
  local pidfile="$1" pid i
  daemon_running "$pidfile" || {
    rm -f "$pidfile"
    return 0
  }
  pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  rm -f "$pidfile"
  echo "$pid"
}
