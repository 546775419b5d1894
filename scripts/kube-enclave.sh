#!/usr/bin/env bash
# The enclave in the local one-node cluster (`scripts/kube-local.sh enclave ...` runs this):
#
#   scripts/kube-local.sh enclave            # build + import the local images, helm install the
#                                            #   two-participant geth/Prysm enclave, return once
#                                            #   execution blocks advance on every node
#   scripts/kube-local.sh enclave uninstall  # helm uninstall, then the namespace and its PVs
#   scripts/kube-local.sh enclave monitoring # only the monitoring (scripts/kube/monitoring.sh)
#
# The install brings up the monitoring first, as a real cluster has it before the enclave comes:
# the Prometheus Operator with a Prometheus and an Alertmanager in namespace `monitoring`
# (scripts/kube/monitoring.sh; ENCLAVE_MONITORING=0 skips it), which pick up the chart's
# ServiceMonitors and PrometheusRule.
#
# Needs a running cluster (`scripts/kube-local.sh up`) and the tools (scripts/tools.sh). The
# release is `enclave` in namespace `enclave` unless ENCLAVE_RELEASE / ENCLAVE_NAMESPACE say
# otherwise; ENCLAVE_VALUES adds values files (space-separated) after
# charts/eth-enclave/ci/kube-local-values.yaml and the generated image values. Progress goes to
# stderr; on success the last stdout line is `enclave <release> ready: ...`.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$PWD"
LOG_TAG=kube-enclave
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

CACHE="${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}"
STATE="${ETHWATCH_KUBE_STATE:-$CACHE/kube-local/state}"
RELEASE="${ENCLAVE_RELEASE:-enclave}"
NAMESPACE="${ENCLAVE_NAMESPACE:-enclave}"
BLOCK_TIMEOUT="${ENCLAVE_BLOCK_TIMEOUT:-600}"

[[ -f "$CACHE/tools/env.sh" ]] || die "no $CACHE/tools/env.sh: run scripts/tools.sh first"
# shellcheck source=/dev/null
source "$CACHE/tools/env.sh"
[[ -f "$STATE/env.sh" ]] || die "no local cluster ($STATE/env.sh): run scripts/kube-local.sh up first"
# shellcheck source=/dev/null
source "$STATE/env.sh"
export KUBECONFIG
for v in ETHWATCH_HELM ETHWATCH_GETH ETHWATCH_PRYSM_BEACON ETHWATCH_PROMETHEUS_OPERATOR_CRDS KUBECTL; do
  [[ -n "${!v:-}" ]] || die "$v is not set (scripts/tools.sh, scripts/kube-local.sh up)"
done
helm() { "$ETHWATCH_HELM" "$@"; }
kubectl() { "$KUBECTL" "$@"; }

# shellcheck source=scripts/kube/images.sh
source scripts/kube/images.sh
# shellcheck source=scripts/kube/images-genesis.sh
source scripts/kube/images-genesis.sh
# shellcheck source=scripts/kube/monitoring.sh
source scripts/kube/monitoring.sh

# The image values: every image of the chart is a local one, never pulled.
write_image_values() {
  local out="$1"
  image_yaml() { printf 'repository: %s\n    tag: "%s"' "${1%:*}" "${1##*:}"; }
  cat >"$out" <<EOF
# Written by scripts/kube-enclave.sh: the local images (scripts/kube/images.sh).
clientImages:
  geth: $IMAGE_REF_geth
  prysm: $IMAGE_REF_prysm_beacon
  prysmValidator: $IMAGE_REF_prysm_validator
  pullPolicy: Never
genesis:
  image:
    $(image_yaml "$IMAGE_REF_genesis")
    pullPolicy: Never
  kubectl:
    $(image_yaml "$IMAGE_REF_kubectl")
    pullPolicy: Never
toolsImage:
  $(image_yaml "$IMAGE_REF_tools" | sed 's/^    /  /')
  pullPolicy: Never
ethwatch:
  image:
    $(image_yaml "$IMAGE_REF_ethwatch")
    pullPolicy: Never
EOF
}

# el_heads: one "<pod> <block number>" line per execution pod, asked inside the pod (`geth attach`
# on its own loopback JSON-RPC, so no NetworkPolicy is in the way); -1 while it does not answer.
el_heads() {
  local pod n
  for pod in $(kubectl -n "$NAMESPACE" get pods -o name \
    -l app.kubernetes.io/instance="$RELEASE",app.kubernetes.io/component=execution,eth-enclave/client=geth); do
    n="$(kubectl -n "$NAMESPACE" exec "$pod" -c geth -- geth attach --exec eth.blockNumber \
      http://127.0.0.1:8545 2>/dev/null | tr -dc '0-9')" || n=""
    echo "${pod#pod/} ${n:--1}"
  done
}

enclave_install() {
  local t0=$SECONDS
  if [[ "${ENCLAVE_MONITORING:-1}" != 0 ]]; then monitoring_install; fi
  build_images
  local tars=() v
  for v in ethwatch geth prysm_beacon prysm_validator tools kubectl genesis; do
    v="IMAGE_TAR_$v"
    tars+=("${!v}")
  done
  log "importing ${#tars[@]} images"
  scripts/kube-local.sh import "${tars[@]}" >&2
  write_image_values "$STATE/enclave-images-values.yaml"

  # The chart's ServiceMonitors and PrometheusRule need their CRDs: the operator's (monitoring
  # above), else the ones scripts/tools.sh generates.
  if ! kubectl get crd servicemonitors.monitoring.coreos.com prometheusrules.monitoring.coreos.com >/dev/null 2>&1; then
    kubectl apply --server-side -f "$ETHWATCH_PROMETHEUS_OPERATOR_CRDS" >&2
  fi
  kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >&2
  local extra=() f
  for f in ${ENCLAVE_VALUES:-}; do extra+=(-f "$f"); done
  log "helm install $RELEASE (the genesis and validator-keys Jobs run first)"
  helm upgrade --install "$RELEASE" charts/eth-enclave -n "$NAMESPACE" \
    -f charts/eth-enclave/ci/kube-local-values.yaml -f "$STATE/enclave-images-values.yaml" "${extra[@]}" \
    --timeout 15m >&2 || die "helm install failed (kubectl -n $NAMESPACE get pods,jobs; kubectl -n $NAMESPACE describe pod ...)"

  log "waiting for execution blocks to advance on every node (up to ${BLOCK_TIMEOUT}s)"
  local deadline=$((SECONDS + BLOCK_TIMEOUT)) now ok
  while :; do
    now="$(el_heads)"
    ok=1
    if [[ -z "$now" ]]; then ok=0; fi
    while read -r pod n; do
      [[ -n "$pod" ]] || continue
      if ((n < 2)); then ok=0; fi
    done <<<"$now"
    if ((ok)); then break; fi
    ((SECONDS < deadline)) || die "execution blocks did not advance within ${BLOCK_TIMEOUT}s: $(tr '\n' ';' <<<"$now")"
    sleep 4
  done
  echo "enclave $RELEASE ready in $((SECONDS - t0))s: $(tr '\n' ' ' <<<"$now")(namespace $NAMESPACE, KUBECONFIG=$KUBECONFIG)"
}

enclave_uninstall() {
  helm uninstall "$RELEASE" -n "$NAMESPACE" --wait --timeout 5m >&2 || true
  kubectl delete namespace "$NAMESPACE" --ignore-not-found --wait=true --timeout=5m >&2
  # The chart keeps its claims' volumes (Retain), so the namespace's PersistentVolumes are now
  # Released and never bound again: delete them with their data and make as many fresh ones, so
  # the next install finds volumes.
  local released name ns path n=0
  released="$(kubectl get pv -o jsonpath='{range .items[?(@.status.phase=="Released")]}{.metadata.name} {.spec.claimRef.namespace} {.spec.local.path}{"\n"}{end}')"
  while read -r name ns path; do
    [[ -n "$name" && "$ns" == "$NAMESPACE" ]] || continue
    [[ "$path" == "$KUBE_LOCAL_STATE/pv/"* ]] || die "PersistentVolume $name is not a local one ($path)"
    kubectl delete pv "$name" --wait=true >&2
    rm -rf "$path"
    n=$((n + 1))
  done <<<"$released"
  if ((n)); then scripts/kube-local.sh pv "$n" >&2; fi
  log "uninstalled $RELEASE; $n volumes recycled"
}

case "${1:-install}" in
  install) enclave_install ;;
  uninstall) enclave_uninstall ;;
  monitoring) monitoring_install ;;
  *) die "usage: scripts/kube-local.sh enclave [install|uninstall|monitoring]" ;;
esac
