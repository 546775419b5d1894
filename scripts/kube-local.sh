#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, for running the eth-enclave chart (docs/kube-local.md).
#
#   scripts/kube-local.sh up                # start (idempotent); prints `export KUBECONFIG=...`
#   scripts/kube-local.sh import IMG.tar... # import OCI image archives into containerd (k8s.io)
#   scripts/kube-local.sh pv N [SIZE]       # N more local PersistentVolumes (default 1000Gi, nominal)
#   scripts/kube-local.sh status            # one line per component
#   scripts/kube-local.sh down              # stop everything, remove all it added, delete the state
#   scripts/kube-local.sh enclave ...       # scripts/kube-enclave.sh (the chart on this cluster)
#
# What runs (all as root, one cluster at a time): containerd + runc + the CNI bridge plugin
# (Debian), etcd (Debian), kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy (iptables mode) built from k8s.io/kubernetes by scripts/tools.sh, kube-router as the
# NetworkPolicy controller (always on), and CoreDNS as a pod serving cluster.local only. Binaries
# and images are cached under $ETHWATCH_CACHE/tools; the cluster's state (etcd, certificates,
# containerd's root, volumes, logs) lives in $ETHWATCH_KUBE_STATE (default
# $ETHWATCH_CACHE/kube-local/state), which `down` deletes. `up` also writes $STATE/env.sh.
#
# Network rules (kept here, checked by tests/kube):
# - every listener is on 127.0.0.1 or on $NODE_IP, the host end of the bridge $BRIDGE this script
#   creates: API server $NODE_IP:6443, kubelet $NODE_IP:10250; etcd, containerd's stream server,
#   the controller-manager, scheduler, kube-proxy and kubelet health/metrics ports on 127.0.0.1;
# - pods get routes to the pod and service ranges only (no default route, no masquerading);
# - the guard chain ETHWATCH-KUBE-GUARD (mangle table, jumped to first from FORWARD and INPUT)
#   drops what comes in from the bridge for any address outside the pod range, and for the host
#   itself but the API server port (replies to the host's own connections pass). It is in
#   mangle, not filter, because kube-router keeps its own jump first in filter FORWARD and
#   ACCEPTs policy-compliant traffic there: a filter guard after it would never see a pod's
#   packet to the outside;
# - the API server reaches the kubelet by the node's InternalIP (never the host's resolver);
# - pods' DNS is CoreDNS, which answers cluster.local (and reverse zones) only: other names are
#   REFUSED, and its binary has no forward plugin at all;
# - nothing is pulled: images are imported (`import`), and a ValidatingAdmissionPolicy rejects any
#   pod whose containers do not say `imagePullPolicy: Never` (a missing image would otherwise make
#   containerd try a registry).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LOG_TAG=kube-local
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

export ETHWATCH_CACHE="${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}"
STATE="$(realpath -m "${ETHWATCH_KUBE_STATE:-$ETHWATCH_CACHE/kube-local/state}")"
NODE=ethwatch-node
BRIDGE=ethwatch0
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1
DNS_IP=10.96.0.10
API_PORT=6443
ETCD_PORT=12379
ETCD_PEER_PORT=12380
STREAM_PORT=10010
GUARD=ETHWATCH-KUBE-GUARD
PAUSE_IMAGE=ethwatch.local/pause:1
BUSYBOX_IMAGE=ethwatch.local/busybox:1
INITIAL_PVS="${ETHWATCH_KUBE_PVS:-16}"
PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDDIR="$STATE/pids"
SOCK="$STATE/containerd/containerd.sock"
# The host processes, in the order `up` starts them (`status` lists them; CoreDNS is a pod).
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kube-router)
# Host sysctls that this setup, kubelet or kube-proxy may change: saved at the first `up`, restored by `down`.
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.ipv4.conf.all.route_localnet vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.netfilter.nf_conntrack_max)
# Host paths that containerd, CNI or kubelet may create outside $STATE: removed by `down` when
# they did not exist before the first `up`.
HOST_PATHS=(/run/containerd /var/lib/cni /var/log/containers /var/log/pods /var/lib/kubelet /etc/cni)

ETHWATCH_CTR="${ETHWATCH_CTR:-$(command -v ctr || echo ctr)}"
T0=$EPOCHREALTIME
elapsed() { awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $T0 }"; }
say() { log "[$(elapsed)s] $*"; }

[[ $EUID -eq 0 ]] || die "must run as root (it creates a bridge, iptables rules and mounts)"

# ---------------------------------------------------------------------------------------------
# The binaries: scripts/tools.sh builds or finds them and prints their env lines. `up` runs it;
# the other subcommands read $STATE/env.sh, which `up` wrote.
ensure_tools() {
  say "checking tools (scripts/tools.sh; a cold build takes 8 minutes on a quiet 2-core machine)"
  local lines
  lines="$("$ROOT/scripts/tools.sh" etcd kube-apiserver kube-debs kube-local kube-router coredns kube-images)" ||
    die "scripts/tools.sh failed"
  eval "$lines"
  local v
  for v in ETHWATCH_ETCD ETHWATCH_KUBE_APISERVER ETHWATCH_KUBE_LOCAL_BIN ETHWATCH_KUBE_ROUTER \
    ETHWATCH_COREDNS_IMAGE ETHWATCH_KUBE_IMAGES ETHWATCH_CONTAINERD ETHWATCH_CTR; do
    [[ -n "${!v:-}" ]] || die "$v is not set after scripts/tools.sh"
  done
  BIN="$ETHWATCH_KUBE_LOCAL_BIN"
  KUBECTL="$BIN/kubectl"
}
load_state_env() {
  [[ -f "$STATE/env.sh" ]] || return 1
  # shellcheck source=/dev/null
  source "$STATE/env.sh"
  BIN="$KUBE_LOCAL_BIN"
}
k() { "$KUBECTL" --kubeconfig "$STATE/admin.kubeconfig" "$@"; }
ctr_() { "$ETHWATCH_CTR" --address "$SOCK" "$@"; }

# ---------------------------------------------------------------------------------------------
# Processes: one pid file per component plus the binary it runs; a pid counts as ours only while
# /proc/PID/exe is that binary (pid files survive a reboot, pids get reused).
comp_pid() { # <name>: print the pid of a running component, else fail
  local pf="$PIDDIR/$1.pid" pid want
  [[ -f "$pf" && -f "$PIDDIR/$1.exe" ]] || return 1
  pid="$(cat "$pf")"
  want="$(cat "$PIDDIR/$1.exe")"
  [[ -n "$pid" && -d /proc/$pid && "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" == "$want" ]] || return 1
  echo "$pid"
}
comp_running() { comp_pid "$1" >/dev/null; }
STARTED=()
comp_start() { # <name> <binary> <args...>
  local name="$1" bin="$2"
  shift 2
  if comp_running "$name"; then return 0; fi
  say "starting $name"
  readlink -f "$bin" >"$PIDDIR/$name.exe"
  echo "=== $(date -u +%FT%TZ) start" >>"$LOGS/$name.log"
  setsid "$bin" "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
  echo $! >"$PIDDIR/$name.pid"
  STARTED+=("$name")
}
comp_stop() { # <name>...: SIGTERM to all at once, SIGKILL to what still runs after 15 s
  local n pid i live=() names=()
  for n in "$@"; do
    if pid="$(comp_pid "$n")"; then
      live+=("$pid")
      names+=("$n")
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  if ((${#live[@]})); then
    say "stopping ${names[*]} (pids ${live[*]})"
    for ((i = 0; i < 60; i++)); do
      for pid in "${live[@]}"; do [[ -d /proc/$pid ]] && break; done
      [[ -d /proc/$pid ]] || break
      sleep 0.25
    done
    for pid in "${live[@]}"; do
      if [[ -d /proc/$pid ]]; then
        say "pid $pid still alive after 15 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
  fi
  for n in "$@"; do rm -f "$PIDDIR/$n.pid"; done
}
all_alive() { # every component this run started still runs, else its log's end and exit
  local n
  for n in ${STARTED[@]+"${STARTED[@]}"}; do
    comp_running "$n" && continue
    tail -n 25 "$LOGS/$n.log" >&2
    die "$n exited (log above, full log $LOGS/$n.log)"
  done
}
wait_for() { # <what> <timeout s> <command...>
  local what="$1" t="$2" i
  shift 2
  for ((i = 0; i < t * 4; i++)); do
    if "$@" >/dev/null 2>&1; then
      say "$what: ok"
      return 0
    fi
    all_alive
    sleep 0.25
  done
  die "$what: not within $t s (logs in $LOGS)"
}
# Write stdin to <file> only when it differs: kube-proxy exits when its config file changes.
put() {
  local tmp="$1.new.$$"
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

# ---------------------------------------------------------------------------------------------
# Host network: the bridge, sysctls, the guard. What existed before is recorded once, so `down`
# removes only what this setup (or kubelet, kube-proxy, kube-router) added.
record_before() {
  [[ -f "$STATE/before/iptables" ]] && return 0
  mkdir -p "$STATE/before"
  local s p
  { iptables-save 2>/dev/null; ip6tables-save 2>/dev/null; } | sed -n 's/^:\([^ ]*\) .*/\1/p' | sort -u \
    >"$STATE/before/iptables.tmp"
  ipset list -n 2>/dev/null | sort -u >"$STATE/before/ipset" || true
  for s in "${SYSCTLS[@]}"; do
    if sysctl -n "$s" >/dev/null 2>&1; then echo "$s=$(sysctl -n "$s")"; fi
  done >"$STATE/before/sysctl"
  for p in "${HOST_PATHS[@]}"; do
    if [[ -e "$p" ]]; then echo "$p"; fi
  done >"$STATE/before/paths"
  mv "$STATE/before/iptables.tmp" "$STATE/before/iptables"
}
setup_network() {
  record_before
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  # no IPv6 on the host end: pods could otherwise reach host listeners on [::] by link-local address
  sysctl -qw "net.ipv6.conf.$BRIDGE.disable_ipv6=1" 2>/dev/null || true
  [[ "$(ip -4 -o addr show dev "$BRIDGE")" == *"inet $NODE_IP/24"* ]] || ip addr add "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  modprobe br_netfilter 2>/dev/null || true
  sysctl -qw net.ipv4.ip_forward=1                 # ClusterIP DNAT between pods on the bridge
  sysctl -qw net.bridge.bridge-nf-call-iptables=1  # bridged pod-to-pod traffic through iptables
  iptables -w -t mangle -N "$GUARD" 2>/dev/null || true
  iptables -w -t mangle -F "$GUARD"
  # what comes in from the bridge is pod traffic, whatever its source address says
  iptables -w -t mangle -A "$GUARD" ! -i "$BRIDGE" -j RETURN
  iptables -w -t mangle -A "$GUARD" -d "$CLUSTER_CIDR" -m addrtype ! --dst-type LOCAL -j RETURN
  iptables -w -t mangle -A "$GUARD" -d "$NODE_IP" -p tcp --dport "$API_PORT" -j RETURN
  iptables -w -t mangle -A "$GUARD" -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
  iptables -w -t mangle -A "$GUARD" -j DROP
  local c
  for c in FORWARD INPUT; do
    iptables -w -t mangle -C "$c" -j "$GUARD" 2>/dev/null || iptables -w -t mangle -I "$c" 1 -j "$GUARD"
  done
  cni_config
}

# Certificates, kubeconfigs and the components' config files: setup_pki, containerd_config,
# kubelet_config, kube_proxy_config, cni_config; the local PersistentVolumes: pv_create.
# shellcheck source=scripts/kube/node-config.sh
source "$ROOT/scripts/kube/node-config.sh"

# ---------------------------------------------------------------------------------------------
# Objects the cluster gets at `up`: scripts/kube/cluster.yaml (kube-router's RBAC, the never-pull
# policy, storage, CoreDNS as a kube-dns pod; why a pod and not a host process: see there).
cluster_objects() {
  sed -e "s|@DNS_IP@|$DNS_IP|g" -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE_NAME|g" "$ROOT/scripts/kube/cluster.yaml"
}

write_env() {
  put "$STATE/env.sh" <<EOF
# Written by scripts/kube-local.sh up: source it to use the local cluster.
export KUBECONFIG=$(printf %q "$STATE/admin.kubeconfig")
export KUBECTL=$(printf %q "$KUBECTL")
export KUBE_LOCAL_BIN=$(printf %q "$BIN")
export KUBE_LOCAL_STATE=$(printf %q "$STATE")
# containerd's client on this cluster's socket; images live in the k8s.io namespace
export CTR=$(printf %q "$ETHWATCH_CTR --address $SOCK")
export ETHWATCH_CTR=$(printf %q "$ETHWATCH_CTR")
export CONTAINERD_ADDRESS=$(printf %q "$SOCK")
export KUBE_LOCAL_NODE=$NODE
export NODE_IP=$NODE_IP
export KUBE_LOCAL_BRIDGE=$BRIDGE
export POD_CIDR=$POD_CIDR
export CLUSTER_CIDR=$CLUSTER_CIDR
export SERVICE_CIDR=$SERVICE_CIDR
export CLUSTER_DNS_IP=$DNS_IP
export CLUSTER_DOMAIN=cluster.local
export API_SERVER=https://$NODE_IP:$API_PORT
# Storage: the default StorageClass "local" (no provisioner), backed by pre-created local
# PersistentVolumes under \$KUBE_LOCAL_PV_DIR; \`scripts/kube-local.sh pv N [SIZE]\` adds N more.
export STORAGE_CLASS=local
export KUBE_LOCAL_PV_DIR=$(printf %q "$STATE/pv")
export KUBE_LOCAL_IMAGES=$(printf %q "$ETHWATCH_KUBE_IMAGES")
export PAUSE_IMAGE=$PAUSE_IMAGE
export BUSYBOX_IMAGE=$BUSYBOX_IMAGE
export COREDNS_IMAGE=$COREDNS_IMAGE_NAME
EOF
}

# (outputs are read whole before grep: with pipefail, `grep -q` exiting first would fail the pipe)
image_present() {
  local imgs
  imgs="$(ctr_ -n k8s.io images ls -q 2>/dev/null)" || return 1
  grep -qxF "$1" <<<"$imgs"
}
import_images() { # <tar>...
  local t
  for t in "$@"; do
    [[ -f "$t" ]] || die "no image archive $t"
    ctr_ -n k8s.io images import --no-unpack=false "$t" >&2 || die "importing $t failed"
  done
}

# ---------------------------------------------------------------------------------------------
cmd_up() {
  mkdir -p "$STATE" "$LOGS" "$PIDDIR"
  local all=1 c
  for c in "${COMPONENTS[@]}"; do comp_running "$c" || all=0; done
  if ((all)) && load_state_env && k get --raw /readyz >/dev/null 2>&1; then
    say "cluster already running (state $STATE)"
    echo "export KUBECONFIG=$STATE/admin.kubeconfig"
    return 0
  fi
  ensure_tools
  COREDNS_IMAGE_NAME="$(tar -xOf "$ETHWATCH_COREDNS_IMAGE" index.json |
    sed -n 's/.*"io.containerd.image.name": "\([^"]*\)".*/\1/p')"
  [[ -n "$COREDNS_IMAGE_NAME" ]] || die "no image name in $ETHWATCH_COREDNS_IMAGE"
  setup_network
  setup_pki
  containerd_config
  kubelet_config
  kube_proxy_config
  write_env

  comp_start containerd "$ETHWATCH_CONTAINERD" --config "$STATE/containerd/config.toml"
  wait_for "containerd" 30 ctr_ version
  local want=()
  image_present "$PAUSE_IMAGE" || want+=("$ETHWATCH_KUBE_IMAGES/pause.tar")
  image_present "$BUSYBOX_IMAGE" || want+=("$ETHWATCH_KUBE_IMAGES/busybox.tar")
  image_present "$COREDNS_IMAGE_NAME" || want+=("$ETHWATCH_COREDNS_IMAGE")
  if ((${#want[@]})); then
    import_images "${want[@]}"
    say "imported ${#want[@]} image(s)"
  fi

  comp_start etcd "$ETHWATCH_ETCD" --name ethwatch-local --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "ethwatch-local=http://127.0.0.1:$ETCD_PEER_PORT" \
    --quota-backend-bytes 1073741824
  comp_start kube-apiserver "$ETHWATCH_KUBE_APISERVER" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$API_PORT" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true \
    --kubelet-preferred-address-types=InternalIP \
    --profiling=false
  wait_for "kube-apiserver /readyz" 180 k get --raw /readyz

  comp_start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --allocate-node-cidrs=true --cluster-cidr="$CLUSTER_CIDR" --node-cidr-mask-size=24 \
    --service-cluster-ip-range="$SERVICE_CIDR" --profiling=false
  comp_start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --profiling=false
  comp_start kubelet "$BIN/kubelet" --config="$STATE/kubelet-config.yaml" \
    --kubeconfig="$STATE/kubelet.kubeconfig" --root-dir="$STATE/kubelet" \
    --hostname-override="$NODE" --node-ip="$NODE_IP"
  comp_start kube-proxy "$BIN/kube-proxy" --config="$STATE/kube-proxy-config.yaml"
  wait_for "node $NODE registered" 120 k get node "$NODE"

  # kube-router looks its Node up at start, so it comes after the Node exists. NetworkPolicy only:
  # no BGP routing, no IPVS service proxy, no CNI, no listening ports.
  cluster_objects | k apply -f - >/dev/null || die "applying the cluster objects failed"
  comp_start kube-router "$ETHWATCH_KUBE_ROUTER" --kubeconfig="$STATE/kube-router.kubeconfig" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --enable-ipv6=false --health-port=0 --metrics-port=0 --hostname-override="$NODE" \
    --service-cluster-ip-range="$SERVICE_CIDR"
  local pvs
  pvs="$(k get pv -l ethwatch.local/pv=true -o name)" || die "listing the PersistentVolumes failed"
  if [[ -z "$pvs" ]]; then
    pv_create "$INITIAL_PVS" | k apply -f - >/dev/null || die "creating the PersistentVolumes failed"
    say "created $INITIAL_PVS local PersistentVolumes"
  fi
  wait_for "node $NODE Ready" 180 k wait --for=condition=Ready --timeout=2s node/"$NODE"
  wait_for "default ServiceAccount" 60 k get serviceaccount default -n default
  wait_for "CoreDNS Ready" 180 k -n kube-system wait --for=condition=Available --timeout=2s deployment/coredns
  sleep 1
  all_alive
  say "cluster up: kubectl $KUBECTL; environment in $STATE/env.sh"
  echo "export KUBECONFIG=$STATE/admin.kubeconfig"
}

cmd_status() {
  local c pid rc=0 ready
  for c in "${COMPONENTS[@]}"; do
    if pid="$(comp_pid "$c")"; then
      printf '%-24s running (pid %s)\n' "$c" "$pid"
    else
      printf '%-24s not running\n' "$c"
      rc=1
    fi
  done
  if load_state_env 2>/dev/null && comp_running kube-apiserver &&
    ready="$(k -n kube-system get deployment coredns -o jsonpath='{.status.readyReplicas}' 2>/dev/null)" &&
    [[ "${ready:-0}" -ge 1 ]]; then
    printf '%-24s running (pod, kube-system/kube-dns %s)\n' coredns "$DNS_IP"
  else
    printf '%-24s not running\n' coredns
    rc=1
  fi
  return "$rc"
}

cmd_import() {
  (($#)) || die "usage: scripts/kube-local.sh import IMAGE.tar..."
  load_state_env || die "no cluster state in $STATE: run scripts/kube-local.sh up first"
  comp_running containerd || die "containerd is not running: run scripts/kube-local.sh up first"
  ETHWATCH_CTR="${ETHWATCH_CTR:-ctr}"
  import_images "$@"
}

cmd_pv() {
  local n="${1:-}" size="${2:-1000Gi}"
  [[ "$n" =~ ^[0-9]+$ ]] || die "usage: scripts/kube-local.sh pv COUNT [SIZE]"
  load_state_env || die "no cluster state in $STATE: run scripts/kube-local.sh up first"
  KUBECTL="$BIN/kubectl"
  pv_create "$n" "$size" | k apply -f - >&2
}

# ---------------------------------------------------------------------------------------------
cmd_down() {
  if [[ ! -d "$STATE" ]]; then
    say "no state in $STATE: nothing to do"
    return 0
  fi
  load_state_env || true
  KUBECTL="${BIN:+$BIN/kubectl}"
  local i c pid
  comp_stop kube-router kube-scheduler kube-controller-manager
  # Let kubelet tear the pods down through the CRI (CNI DEL frees their addresses and veths).
  if [[ -n "$KUBECTL" ]] && comp_running kubelet && comp_running kube-apiserver; then
    k delete pods --all -A --force --grace-period=0 --wait=false --request-timeout=10s >/dev/null 2>&1 || true
    for ((i = 0; i < 120; i++)); do
      [[ -z "$(ctr_ -n k8s.io tasks ls -q 2>/dev/null)" ]] && break
      sleep 0.25
    done
  fi
  comp_stop kube-proxy kubelet
  comp_stop kube-apiserver
  comp_stop etcd
  if comp_running containerd; then
    for c in $(ctr_ -n k8s.io tasks ls -q 2>/dev/null); do ctr_ -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true; done
    sleep 0.5
    for c in $(ctr_ -n k8s.io tasks ls -q 2>/dev/null); do ctr_ -n k8s.io tasks delete -f "$c" >/dev/null 2>&1 || true; done
    for c in $(ctr_ -n k8s.io containers ls -q 2>/dev/null); do ctr_ -n k8s.io containers rm "$c" >/dev/null 2>&1 || true; done
  fi
  comp_stop containerd
  # Shims of our containerd (their command line names our socket) and what is left in the pod
  # cgroups: by pid.
  for pid in $(own_leftover_pids); do
    say "killing leftover process $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-80))"
    kill -KILL "$pid" 2>/dev/null || true
  done
  sleep 0.3

  # Mounts under the state dir (netns bind mounts, overlay root file systems, shm, volumes),
  # deepest first.
  local m
  awk -v s="$STATE/" 'index($2, s) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done

  # Network: veths on our bridge, the bridge, the iptables chains added since the first `up`.
  local v
  for v in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
    ip link del "$v" 2>/dev/null || true
  done
  if ip link del "$BRIDGE" 2>/dev/null; then say "removed bridge $BRIDGE"; fi
  if [[ -n "${BIN:-}" && -x "$BIN/kube-proxy" ]]; then "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
  remove_chains
  local set
  for set in $(ipset list -n 2>/dev/null | grep -E '^(KUBE-|kube-router|inet6:KUBE-)' |
    { if [[ -f "$STATE/before/ipset" ]]; then grep -vxF -f "$STATE/before/ipset"; else cat; fi; } || true); do
    ipset destroy "$set" 2>/dev/null || true
  done
  local line key val
  if [[ -f "$STATE/before/sysctl" ]]; then
    while IFS= read -r line; do
      key="${line%%=*}"
      val="${line#*=}"
      [[ "$(sysctl -n "$key" 2>/dev/null)" == "$val" ]] || sysctl -qw "$key=$val" || true
    done <"$STATE/before/sysctl"
  fi

  # kubelet's cgroups, /var/log/containers links into the state, host paths that were not there.
  for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
    if [[ -d $c ]]; then find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true; fi
  done
  local l p
  for l in /var/log/containers/*; do
    if [[ -L $l && "$(readlink "$l")" == "$STATE"/* ]]; then rm -f "$l"; fi
  done
  if [[ -f "$STATE/before/paths" ]]; then
    for p in "${HOST_PATHS[@]}"; do
      if ! grep -qxF "$p" "$STATE/before/paths"; then rm -rf "$p"; fi
    done
  fi

  local left
  left="$(leftovers)"
  if [[ -n "$left" ]]; then
    log "ERROR: left behind (state kept in $STATE):"
    echo "$left" >&2
    return 1
  fi
  rm -rf "$STATE"
  say "down: nothing left behind"
}
own_leftover_pids() {
  local p pid cmd
  for p in /proc/[0-9]*; do
    pid="${p#/proc/}"
    [[ -r $p/cmdline ]] || continue
    cmd="$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)" || continue
    if [[ "$cmd" == *"$STATE/"* ]]; then echo "$pid"; fi
  done
  for p in /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/memory/kubepods; do
    if [[ -d $p ]]; then find "$p" -name cgroup.procs -exec cat {} + 2>/dev/null || true; fi
  done | sort -u
}
# Chains named KUBE-*, CNI-* or ETHWATCH-KUBE-* that were not there before the first `up`: the
# rules jumping to them first, then the chains.
remove_chains() {
  local fam t dump mine rule c
  for fam in iptables ip6tables; do
    for t in filter nat mangle raw; do
      dump="$("$fam-save" -t "$t" 2>/dev/null)" || continue
      mine="$(sed -n 's/^:\(\(KUBE\|CNI\|ETHWATCH-KUBE\)-[^ ]*\) .*/\1/p' <<<"$dump" |
        { if [[ -f "$STATE/before/iptables" ]]; then grep -vxF -f "$STATE/before/iptables"; else cat; fi; } || true)"
      [[ -n "$mine" ]] || continue
      while read -r rule; do
        [[ -n "$rule" ]] || continue
        eval "$fam -w -t $t -D ${rule#-A }" 2>/dev/null || true
      done < <(grep -E -- "-j ($(paste -sd'|' <<<"$mine"))( |$)" <<<"$dump" | grep '^-A ' || true)
      for c in $mine; do "$fam" -w -t "$t" -F "$c" 2>/dev/null || true; done
      for c in $mine; do "$fam" -w -t "$t" -X "$c" 2>/dev/null || true; done
      say "$fam -t $t: removed $(wc -w <<<"$mine") chains"
    done
  done
}
# What `down` must not leave: processes, mounts, veths, the bridge, chains, ipsets.
leftovers() {
  local pid fam t ch
  for pid in $(own_leftover_pids); do echo "process $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-100)"; done
  awk -v s="$STATE/" 'index($2, s) == 1 { print "mount " $2 }' /proc/mounts
  if ip link show "$BRIDGE" >/dev/null 2>&1; then echo "bridge $BRIDGE"; fi
  for fam in iptables ip6tables; do
    for t in filter nat mangle raw; do
      for ch in $("$fam-save" -t "$t" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\|ETHWATCH-KUBE\)-[^ ]*\) .*/\1/p' |
        { if [[ -f "$STATE/before/iptables" ]]; then grep -vxF -f "$STATE/before/iptables"; else cat; fi; } || true); do
        echo "$fam chain $t/$ch"
      done
    done
  done
  return 0
}

# ---------------------------------------------------------------------------------------------
main() {
  local cmd="${1:-}"
  (($#)) && shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    import) cmd_import "$@" ;;
    pv) cmd_pv "$@" ;;
    enclave) exec "$(dirname "$0")/kube-enclave.sh" "$@" ;;
    *) die "usage: scripts/kube-local.sh up|down|status|import IMAGE.tar...|pv COUNT [SIZE]|enclave ..." ;;
  esac
}

main "$@"
