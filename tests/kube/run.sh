#!/usr/bin/env bash
# The local cluster's tests (tests/kube): one real single-node Kubernetes brought up by
# `scripts/kube-local.sh up` for the whole directory and torn down by `down` at the end (the
# teardown checks that nothing is left behind). Must run as root; one cluster at a time, so it
# refuses to start when one is already running.
#
#   tests/kube/run.sh               # everything (tests/run.sh calls this, as group `kube`, last)
#   tests/kube/run.sh -k dns        # extra args go to pytest
#
# Tools come from scripts/tools.sh through ~/.cache/ethwatch/tools/env.sh.
set -euo pipefail

cd "$(dirname "$0")/../.."

fail() { echo "tests/kube/run.sh: FAILED: $*" >&2; exit 1; }

export ETHWATCH_CACHE="${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}"
# The cluster's tools (idempotent; if CI is still building them in the background, this waits for
# that build and then finds them installed).
scripts/tools.sh kube >/dev/null || fail "scripts/tools.sh kube failed"
if [[ -f "$ETHWATCH_CACHE/tools/env.sh" ]]; then
  # shellcheck source=/dev/null
  source "$ETHWATCH_CACHE/tools/env.sh"
fi
for var in ETHWATCH_PYTHON ETHWATCH_ETCD ETHWATCH_KUBE_APISERVER ETHWATCH_KUBE_LOCAL_BIN ETHWATCH_KUBE_ROUTER \
  ETHWATCH_COREDNS ETHWATCH_COREDNS_IMAGE ETHWATCH_KUBE_IMAGES ETHWATCH_CONTAINERD ETHWATCH_CTR; do
  [[ -n "${!var:-}" ]] || fail "$var is not set: run scripts/tools.sh (it installs the tools and writes env.sh)"
done
[[ $EUID -eq 0 ]] || fail "the local cluster needs root"

export PYTHONDONTWRITEBYTECODE=1
echo "== kube: a real single-node cluster: pods, volumes, DNS, NetworkPolicy, network rules, teardown (tests/kube)"
# (test_genesis_image.py runs on its own, in a private network namespace: tests/run.sh.)
skip=(--ignore=tests/kube/test_genesis_image.py)
"$ETHWATCH_PYTHON" -m pytest tests/kube "${skip[@]}" -p no:cacheprovider -ra -s "$@"
