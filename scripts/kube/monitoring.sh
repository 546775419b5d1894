# shellcheck shell=bash
# The local cluster's monitoring, wired as in a real cluster (sourced by scripts/kube-enclave.sh):
# the Prometheus Operator, built from its Go module (scripts/tools.sh prometheus-operator), runs in
# namespace `monitoring` and manages one Prometheus (built from its Go module by the same tool:
# Debian's prometheus 2.42 has no Kubernetes service discovery, which every ServiceMonitor needs)
# and one Alertmanager (Debian's binary). The Prometheus selects every ServiceMonitor and PrometheusRule of every
# namespace, so the chart's own objects (monitoring on) are what it scrapes and evaluates, and it
# sends its alerts to the Alertmanager. The namespace's name is the one the chart's NetworkPolicies
# let in (networkPolicy.monitoringNamespaceSelector).
#
#   image                        what it holds                              stands in for
#   prometheus-operator          operator v0.85.0 (static), as entrypoint   the operator's image
#   prometheus-config-reloader   its config reloader (static)               the reloader's image
#   prometheus                   Prometheus v3.16.0 (static, Kubernetes SD)  the Prometheus image
#   alertmanager                 Debian's alertmanager 0.25 (+ libc, its     the Alertmanager image
#                                templates)
#
# The CRDs and the RBAC objects are the operator module's own example files, applied as they are
# (the namespace set to `monitoring`); the Deployment, the Prometheus and the Alertmanager are
# written here, because they name the local images.
#
# Needs: scripts/kube/images.sh sourced (make_image, rootfs_*), kubectl, log/die, and from
# tools.sh's env.sh ETHWATCH_PROMETHEUS_OPERATOR, ETHWATCH_PROMETHEUS_CONFIG_RELOADER,
# ETHWATCH_PROMETHEUS_OPERATOR_SRC, ETHWATCH_PROMETHEUS_K8S and ETHWATCH_ALERTMANAGER.

MONITORING_NAMESPACE="${MONITORING_NAMESPACE:-monitoring}"

_img_promop() { rootfs_base "$1"; rootfs_bin "$1" "$ETHWATCH_PROMETHEUS_OPERATOR" /bin/operator; }
_img_reloader() { rootfs_base "$1"; rootfs_bin "$1" "$ETHWATCH_PROMETHEUS_CONFIG_RELOADER" /bin/prometheus-config-reloader; }
_img_prometheus() {
  rootfs_base "$1"
  rootfs_bin "$1" "$ETHWATCH_PROMETHEUS_K8S" /bin/prometheus
  mkdir -p "$1/etc/prometheus" "$1/prometheus"
}
_img_alertmanager() {
  rootfs_base "$1"
  rootfs_bin "$1" "$ETHWATCH_ALERTMANAGER" /bin/alertmanager
  mkdir -p "$1/etc/alertmanager" "$1/alertmanager" "$1/usr/share/prometheus"
  # Debian's build reads its notification templates from here.
  cp -a /usr/share/prometheus/alertmanager "$1/usr/share/prometheus/"
}

# binary_version <binary>: the version a Prometheus-style binary reports (3.16.0). The output is
# captured first, so no reader leaves the pipe early (pipefail).
binary_version() {
  local out
  out="$("$1" --version 2>&1)" || return 1
  sed -n 's/.* version \([0-9][0-9.]*\).*/\1/p' <<<"$out" | sed -n 1p
}

# build_monitoring_images: IMAGE_REF_/IMAGE_TAR_ promop, reloader, prometheus, alertmanager.
build_monitoring_images() {
  local v penv="\"Env\":[\"$IMAGE_PATH_ENV\"]" nobody='"User":"65534:65534"'
  for v in ETHWATCH_PROMETHEUS_OPERATOR ETHWATCH_PROMETHEUS_CONFIG_RELOADER ETHWATCH_PROMETHEUS_OPERATOR_SRC \
    ETHWATCH_PROMETHEUS_K8S ETHWATCH_ALERTMANAGER; do
    [[ -n "${!v:-}" ]] || die "$v is not set (scripts/tools.sh prometheus-operator alertmanager)"
  done
  PROMOP_VERSION="$(binary_version "$ETHWATCH_PROMETHEUS_OPERATOR")"
  PROMETHEUS_VERSION="$(binary_version "$ETHWATCH_PROMETHEUS_K8S")"
  ALERTMANAGER_VERSION="$(binary_version "$ETHWATCH_ALERTMANAGER")"
  [[ -n "$PROMOP_VERSION" && -n "$PROMETHEUS_VERSION" && -n "$ALERTMANAGER_VERSION" ]] ||
    die "cannot read the versions of the operator ($PROMOP_VERSION), prometheus ($PROMETHEUS_VERSION), alertmanager ($ALERTMANAGER_VERSION)"
  make_image prometheus-operator "$PROMOP_VERSION" "$(inputs_hash "$ETHWATCH_PROMETHEUS_OPERATOR")" \
    "{\"Entrypoint\":[\"/bin/operator\"],$nobody,$penv}" _img_promop
  make_image prometheus-config-reloader "$PROMOP_VERSION" "$(inputs_hash "$ETHWATCH_PROMETHEUS_CONFIG_RELOADER")" \
    "{\"Entrypoint\":[\"/bin/prometheus-config-reloader\"],$nobody,$penv}" _img_reloader
  make_image prometheus "$PROMETHEUS_VERSION" "$(inputs_hash "$ETHWATCH_PROMETHEUS_K8S")" \
    "{\"Entrypoint\":[\"/bin/prometheus\"],$nobody,$penv,\"WorkingDir\":\"/prometheus\"}" _img_prometheus
  make_image alertmanager "$ALERTMANAGER_VERSION" "$(inputs_hash "$ETHWATCH_ALERTMANAGER" /usr/share/prometheus/alertmanager/default.tmpl)" \
    "{\"Entrypoint\":[\"/bin/alertmanager\"],$nobody,$penv,\"WorkingDir\":\"/alertmanager\"}" _img_alertmanager
}

# monitoring_manifest: the Deployment of the operator, the Prometheus and the Alertmanager.
monitoring_manifest() {
  local ns="$MONITORING_NAMESPACE"
  cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: prometheus-operator
  namespace: $ns
  labels: {app.kubernetes.io/name: prometheus-operator, app.kubernetes.io/component: controller}
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: prometheus-operator, app.kubernetes.io/component: controller}
  template:
    metadata:
      labels: {app.kubernetes.io/name: prometheus-operator, app.kubernetes.io/component: controller}
    spec:
      serviceAccountName: prometheus-operator
      # The module's ServiceAccount does not automount its token; the operator needs it.
      automountServiceAccountToken: true
      securityContext: {runAsNonRoot: true, runAsUser: 65534, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: prometheus-operator
          image: $IMAGE_REF_prometheus_operator
          imagePullPolicy: Never
          args:
            - --prometheus-config-reloader=$IMAGE_REF_prometheus_config_reloader
            - --log-level=info
          env: [{name: GOGC, value: "30"}]
          ports: [{containerPort: 8080, name: http}]
          resources:
            requests: {cpu: 20m, memory: 64Mi}
            limits: {cpu: 500m, memory: 256Mi}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
---
apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata:
  name: ethwatch
  namespace: $ns
spec:
  image: $IMAGE_REF_prometheus
  version: v$PROMETHEUS_VERSION
  imagePullPolicy: Never
  replicas: 1
  serviceAccountName: prometheus
  # Every ServiceMonitor and PrometheusRule of every namespace: the chart's are picked up as a
  # kube-prometheus-stack Prometheus with permissive selectors would.
  serviceMonitorSelector: {}
  serviceMonitorNamespaceSelector: {}
  podMonitorSelector: {}
  podMonitorNamespaceSelector: {}
  ruleSelector: {}
  ruleNamespaceSelector: {}
  evaluationInterval: 5s
  scrapeInterval: 15s
  retention: 6h
  resources:
    requests: {cpu: 50m, memory: 128Mi}
    limits: {memory: 1Gi}
  alerting:
    alertmanagers:
      - namespace: $ns
        name: alertmanager-operated
        port: web
---
apiVersion: monitoring.coreos.com/v1
kind: Alertmanager
metadata:
  name: ethwatch
  namespace: $ns
spec:
  image: $IMAGE_REF_alertmanager
  version: v$ALERTMANAGER_VERSION
  imagePullPolicy: Never
  replicas: 1
  resources:
    requests: {cpu: 10m, memory: 32Mi}
    limits: {memory: 256Mi}
EOF
}

# monitoring_install: images imported, CRDs, RBAC, the operator, Prometheus and Alertmanager
# running (their pods Ready).
monitoring_install() {
  local ns="$MONITORING_NAMESPACE" src="$ETHWATCH_PROMETHEUS_OPERATOR_SRC/example" t0=$SECONDS
  build_monitoring_images
  log "importing the monitoring images"
  scripts/kube-local.sh import "$IMAGE_TAR_prometheus_operator" "$IMAGE_TAR_prometheus_config_reloader" \
    "$IMAGE_TAR_prometheus" "$IMAGE_TAR_alertmanager" >&2
  # The operator's own CRDs (all of them: the operator watches Prometheus, Alertmanager, ...).
  kubectl apply --server-side --force-conflicts -f "$src/prometheus-operator-crd/" >&2
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >&2
  local f
  for f in "$src"/rbac/prometheus-operator/prometheus-operator-{service-account,cluster-role,cluster-role-binding}.yaml \
    "$src"/rbac/prometheus/prometheus-{service-account,cluster-role,cluster-role-binding}.yaml; do
    sed "s/namespace: default/namespace: $ns/" "$f"
    echo "---"
  done | kubectl apply -n "$ns" -f - >&2
  kubectl wait --for=condition=Established --timeout=60s crd/prometheuses.monitoring.coreos.com \
    crd/alertmanagers.monitoring.coreos.com >&2
  monitoring_manifest | kubectl apply -f - >&2
  log "waiting for the operator, Prometheus and Alertmanager"
  kubectl -n "$ns" rollout status deployment/prometheus-operator --timeout=180s >&2 ||
    die "the Prometheus Operator did not start (kubectl -n $ns logs deploy/prometheus-operator)"
  local sts deadline=$((SECONDS + 240))
  for sts in prometheus-ethwatch alertmanager-ethwatch; do
    until kubectl -n "$ns" get statefulset "$sts" >/dev/null 2>&1; do
      ((SECONDS < deadline)) || die "the operator made no StatefulSet $sts (kubectl -n $ns logs deploy/prometheus-operator)"
      sleep 2
    done
    kubectl -n "$ns" rollout status "statefulset/$sts" --timeout=240s >&2 ||
      die "$sts did not become ready (kubectl -n $ns describe pod ${sts}-0)"
  done
  log "monitoring ready in $((SECONDS - t0))s (operator $PROMOP_VERSION, prometheus $PROMETHEUS_VERSION, alertmanager $ALERTMANAGER_VERSION)"
}
