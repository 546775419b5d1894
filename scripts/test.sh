#!/usr/bin/env bash
# The project's test command: installs the test tools, then runs the Rust tests and the
# non-cargo test hook. Extra arguments go to `cargo test`, e.g.
#   scripts/test.sh -p ethwatch-execution -- --nocapture
set -euo pipefail

cd "$(dirname "$0")/.."

export ETHWATCH_CACHE="${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ETHWATCH_CACHE/target}"

# Tools the tests start (anvil, lodestar, promtool, ...); their paths arrive as ETHWATCH_* vars.
# The local cluster's tools (scripts/tools.sh kube) are installed by its own group, last
# (tests/kube/run.sh), so CI can build them while the other tests run.
scripts/tools.sh base
# shellcheck source=/dev/null
source "$ETHWATCH_CACHE/tools/env.sh"

echo "== cargo test (target dir $CARGO_TARGET_DIR)"
cargo test --workspace --locked "$@"

# Hook for tests that are not cargo tests (promtool rule tests, golden-file lints, ...).
if [[ -x tests/run.sh ]]; then
  echo "== tests/run.sh"
  tests/run.sh
elif [[ -e tests/run.sh ]]; then
  echo "test.sh: ERROR: tests/run.sh exists but is not executable (chmod +x it)" >&2
  exit 1
fi
