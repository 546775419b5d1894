# shellcheck shell=bash
# The local cluster's certificates, kubeconfigs, component configs and volumes, sourced by
# scripts/kube-local.sh (its globals: STATE, PKI, NODE, NODE_IP, BRIDGE, ranges, ports, SOCK).
# Every file goes through `put`, which rewrites a file only when it changes (kube-proxy exits
# when its config file is touched).

# Certificates (EC P-256, openssl), the service-account key (RSA) and the kubeconfigs.
mkcert() { # <name> <subject> [<SAN list>]
  [[ -s "$PKI/$1.crt" ]] && return 0
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$1.key" 2>/dev/null
  openssl req -new -key "$PKI/$1.key" -subj "$2" -out "$PKI/$1.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n "${3:-}" ]]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$3"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$PKI/$1.ext"
  openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$PKI/$1.ext" -out "$PKI/$1.crt" 2>/dev/null
  rm -f "$PKI/$1.csr" "$PKI/$1.ext"
}
kubeconfig() { # <file> <cert name>
  put "$STATE/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
current-context: ethwatch-local
clusters:
- name: ethwatch-local
  cluster: {server: "https://$NODE_IP:$API_PORT", certificate-authority: "$PKI/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$PKI/$2.crt", client-key: "$PKI/$2.key"}
contexts:
- name: ethwatch-local
  context: {cluster: ethwatch-local, user: $2}
EOF
}
setup_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [[ ! -s "$PKI/ca.crt" ]]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=ethwatch-kube-local-ca" -days 30 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$PKI/ca.crt" 2>/dev/null
  fi
  mkcert apiserver "/CN=kube-apiserver" \
    "IP:$NODE_IP,IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  mkcert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  mkcert admin "/O=system:masters/CN=admin"
  mkcert controller-manager "/CN=system:kube-controller-manager"
  mkcert scheduler "/CN=system:kube-scheduler"
  mkcert kubelet-client "/O=system:nodes/CN=system:node:$NODE"
  mkcert kube-proxy "/CN=system:kube-proxy"
  mkcert kube-router "/CN=ethwatch:kube-router"
  mkcert kubelet "/CN=$NODE" "IP:$NODE_IP,DNS:$NODE,DNS:localhost"
  if [[ ! -s "$PKI/sa.key" ]]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  kubeconfig admin admin
  kubeconfig controller-manager controller-manager
  kubeconfig scheduler scheduler
  kubeconfig kubelet kubelet-client
  kubeconfig kube-proxy kube-proxy
  kubeconfig kube-router kube-router
}

# ---------------------------------------------------------------------------------------------
containerd_config() {
  mkdir -p "$STATE/containerd"
  put "$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "$STREAM_PORT"
  netns_mounts_under_state_dir = true
  # No CAP_SYS_RESOURCE on these VMs: a negative oom_score_adj (the pause container gets -998)
  # makes runc fail with "failed to update /proc/self/oom_score_adj: Permission denied".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$STATE/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
EOF
}

kubelet_config() {
  mkdir -p "$STATE/kubelet" "$STATE/pod-logs"
  put "$STATE/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
# containerd 1.6 lacks the CRI RuntimeConfig call: kubelet logs one error and uses cgroupfs.
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$SOCK
podLogsDir: $STATE/pod-logs
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
# Pods with dnsPolicy Default (CoreDNS itself) get this file: no upstream resolver at all.
resolvConf: $STATE/resolv.conf
maxPods: 60
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
# No CAP_SYS_RESOURCE: kubelet's own -999 would fail.
oomScoreAdj: 0
EOF
  printf 'nameserver 127.0.0.1\noptions ndots:1\n' | put "$STATE/resolv.conf"
}

kube_proxy_config() {
  put "$STATE/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
hostnameOverride: $NODE
mode: iptables
clusterCIDR: $CLUSTER_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
oomScoreAdj: 0
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

# The CNI network: the bridge plugin on $BRIDGE with host-local addresses from the pod range,
# routes to the pod and service ranges only (no default route), no masquerading.
cni_config() {
  mkdir -p "$STATE/cni/net.d"
  put "$STATE/cni/net.d/10-ethwatch.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "ethwatch",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "10.244.0.10", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "$CLUSTER_CIDR"}, {"dst": "$SERVICE_CIDR"}]
      }
    }
  ]
}
EOF
}

# pv_create <count> [size]: local PersistentVolumes local-pv-NN (next free numbers), each a
# directory $STATE/pv/local-pv-NN (mode 1777, so pods of any uid write; fsGroup applies too).
# Capacity is nominal: nothing enforces it, it only has to cover the claims' requests.
pv_create() {
  local n="$1" size="${2:-1000Gi}" i=0 made=0 name
  mkdir -p "$STATE/pv"
  while ((made < n)); do
    i=$((i + 1))
    name="$(printf 'local-pv-%02d' "$i")"
    [[ -e "$STATE/pv/$name" ]] && continue
    mkdir -m 1777 "$STATE/pv/$name"
    chmod 1777 "$STATE/pv/$name"
    cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: $name, labels: {ethwatch.local/pv: "true"}}
spec:
  capacity: {storage: $size}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local
  local: {path: $STATE/pv/$name}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [$NODE]}
EOF
    made=$((made + 1))
  done
}
