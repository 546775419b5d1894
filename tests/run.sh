#!/usr/bin/env bash
# Tests that are not cargo tests; scripts/test.sh runs this after `cargo test`. Today: the alert
# rules (tests/alerts/): generator drift, promtool check and unit tests, the lint, and the
# end-to-end test through real nodes, exporters, Prometheus and Alertmanager; the dashboards
# (tests/dashboards/): model, PromQL and metrics, and no empty panel end to end; the chart; the
# network watcher's status page in a headless Chromium (tests/browser/); traces in Jaeger
# (tests/traces/); the local genesis image (tests/kube/test_genesis_image.py); last, a real
# single-node Kubernetes with the enclave on it (tests/kube/, scripts/kube-local.sh).
#
#   tests/run.sh                     # everything
#   tests/run.sh -m "not e2e"        # without the end-to-end test (extra args go to pytest)
#
# The tools come from scripts/tools.sh (it writes ~/.cache/ethwatch/tools/env.sh); pytest and
# PyYAML from the venv it names in ETHWATCH_PYTHON.
set -euo pipefail

cd "$(dirname "$0")/.."

fail() { echo "tests/run.sh: FAILED: $*" >&2; exit 1; }

export ETHWATCH_CACHE="${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ETHWATCH_CACHE/target}"
if [[ -z "${ETHWATCH_PYTHON:-}" ]]; then
  [[ -f "$ETHWATCH_CACHE/tools/env.sh" ]] || fail "no $ETHWATCH_CACHE/tools/env.sh: run scripts/tools.sh first"
  # shellcheck source=/dev/null
  source "$ETHWATCH_CACHE/tools/env.sh"
fi
for var in ETHWATCH_PYTHON ETHWATCH_PROMTOOL ETHWATCH_PROMETHEUS ETHWATCH_ALERTMANAGER ETHWATCH_ANVIL ETHWATCH_LODESTAR \
  ETHWATCH_GETH ETHWATCH_PRYSM_BEACON ETHWATCH_PRYSM_VALIDATOR ETHWATCH_PRYSMCTL ETHWATCH_IPTABLES; do
  [[ -n "${!var:-}" ]] || fail "$var is not set: run scripts/tools.sh (it installs the tools and writes env.sh)"
done

export PYTHONDONTWRITEBYTECODE=1

# group <ok statuses> <what> <command...>: run one group; fail unless it exits with one of <ok
# statuses>. 5 is pytest's "every test deselected": the groups that are all end to end allow it,
# since `-m "not e2e"` leaves none of their tests.
group() {
  local ok="$1" what="$2" status=0
  shift 2
  "$@" || status=$?
  [[ " $ok " == *" $status "* ]] || fail "$what exited with $status (see above)"
}
# pytest_in [--netns] <path> [pytest args...]: the pytest of a group. --netns: in a private network
# namespace with its own loopback: the nodes bind 127.0.0.1 there, and iptables rules (the real
# network's partition) cannot touch the host's network.
pytest_in() {
  local netns=()
  if [[ "$1" == --netns ]]; then
    netns=(unshare --net -- sh -c 'ip link set lo up && exec "$0" "$@"')
    shift
  fi
  "${netns[@]}" "$ETHWATCH_PYTHON" -m pytest "$1" -p no:cacheprovider -ra -s "${@:2}"
}

echo "== alert rules: generator, promtool, lint, end to end (tests/alerts)"
group 0 "pytest tests/alerts" pytest_in tests/alerts "$@"

echo "== dashboards: model, PromQL, metrics, no empty panel end to end (tests/dashboards)"
group 0 "pytest tests/dashboards" pytest_in tests/dashboards "$@"

echo "== real network: geth + Prysm, every signal against the nodes, a partition and heal (tests/realnet)"
group "0 5" "pytest tests/realnet" pytest_in --netns tests/realnet "$@"

echo "== the local genesis image: the chart's genesis and key Jobs in its rootfs, then geth + Prysm (tests/kube)"
# Root (unshare, mount, chroot).
group "0 5" "pytest tests/kube/test_genesis_image.py" pytest_in --netns tests/kube/test_genesis_image.py "$@"

echo "== the network watcher's status page in a headless Chromium (tests/browser)"
export ETHWATCH_CHROMIUM="${ETHWATCH_CHROMIUM:-$(command -v chromium || true)}"
[[ -n "$ETHWATCH_CHROMIUM" ]] || fail "no chromium: run scripts/tools.sh chromium"
group "0 5" "pytest tests/browser" pytest_in tests/browser "$@"

echo "== traces in a real backend: Jaeger (tests/traces)"
export ETHWATCH_JAEGER="${ETHWATCH_JAEGER:-}"
[[ -n "$ETHWATCH_JAEGER" ]] || fail "ETHWATCH_JAEGER is not set: run scripts/tools.sh jaeger"
group "0 5" "pytest tests/traces" pytest_in tests/traces "$@"

# The Helm chart (tests/chart): lint, render, validation, assertions, sync drift, real API server.
tests/chart/run.sh || fail "tests/chart/run.sh exited with $? (see above)"

# The local cluster (tests/kube), last: a real single-node Kubernetes (scripts/kube-local.sh) that
# runs pods, brought up once for the directory and torn down at the end.
group "0 5" tests/kube/run.sh tests/kube/run.sh "$@"
echo "tests/run.sh: all passed"
