#!/usr/bin/env bash
# The chart's tests (tests/chart): helm lint --strict and helm template of every charts/eth-enclave/ci
# scenario, kubernetes-validate --strict for each supported Kubernetes version, the Prometheus
# Operator objects against the operator's schemas, assertions on the rendered objects, the
# alerts/dashboards sync, and a real kube-apiserver (with etcd) that the chart is installed into.
#
#   tests/chart/run.sh              # everything (tests/run.sh calls this)
#   tests/chart/run.sh -k objects   # extra args go to pytest
#
# Tools come from scripts/tools.sh through ~/.cache/ethwatch/tools/env.sh.
set -euo pipefail

cd "$(dirname "$0")/../.."

fail() { echo "tests/chart/run.sh: FAILED: $*" >&2; exit 1; }

export ETHWATCH_CACHE="${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}"
if [[ -f "$ETHWATCH_CACHE/tools/env.sh" ]]; then
  # shellcheck source=/dev/null
  source "$ETHWATCH_CACHE/tools/env.sh"
fi
for var in ETHWATCH_PYTHON ETHWATCH_HELM ETHWATCH_KUBECTL ETHWATCH_K8S_MODELS ETHWATCH_ETCD \
  ETHWATCH_KUBE_APISERVER ETHWATCH_PROMETHEUS_OPERATOR_CRDS ETHWATCH_SHELLCHECK; do
  [[ -n "${!var:-}" ]] || fail "$var is not set: run scripts/tools.sh (it installs the tools and writes env.sh)"
done

# The sidecar test runs the real binary with the chart's flags (cargo test has usually built it).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ETHWATCH_CACHE/target}"
cargo build --locked -q -p ethwatch
export ETHWATCH_BIN="$CARGO_TARGET_DIR/debug/ethwatch"

# Helm keeps its state here, never in the user's ~/.config/helm.
HELM_HOME="$(mktemp -d)"
trap 'rm -rf "$HELM_HOME"' EXIT
export HELM_CACHE_HOME="$HELM_HOME/cache" HELM_CONFIG_HOME="$HELM_HOME/config" HELM_DATA_HOME="$HELM_HOME/data"
export PYTHONDONTWRITEBYTECODE=1

echo "== chart: lint, render, kubernetes-validate, operator schemas, assertions, sync, real API server (tests/chart)"
"$ETHWATCH_PYTHON" -m pytest tests/chart -p no:cacheprovider -ra "$@"
