#!/usr/bin/env bash
# Build the static ethwatch binary that the container image ships (musl libc, no shared
# libraries), idempotently, and print its path on stdout (progress goes to stderr).
#
#   scripts/build-static.sh            # release build for this machine's architecture
#
# Why static: a sidecar runs one small process per node, and with glibc every process maps its
# own view of libc, libm and the loader (about 1.5 MiB of resident file pages each). The static
# binary keeps only the libc code it calls: about 1.8 MiB less RSS per process, measured in
# docs/benchmarks.md. It installs, once: the Rust target (rustup) and musl-gcc (Debian's
# musl-tools), which compiles ring's C code for that target. The target directory is
# $CARGO_TARGET_DIR, or ${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}/target.
set -euo pipefail

cd "$(dirname "$0")/.."
LOG_TAG=build-static.sh
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

CACHE="${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
case "$(uname -m)" in
  x86_64) TARGET=x86_64-unknown-linux-musl ;;
  aarch64) TARGET=aarch64-unknown-linux-musl ;;
  *) die "no musl target known for $(uname -m)" ;;
esac

if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  log "rustup target add $TARGET"
  rustup target add "$TARGET" >&2 || die "cannot add the Rust target $TARGET"
fi
if ! command -v musl-gcc >/dev/null; then
  log "apt-get install musl-tools"
  if ! apt-get install -y --no-install-recommends musl-tools >&2; then
    apt-get update >&2
    apt-get install -y --no-install-recommends musl-tools >&2 || die "cannot install musl-tools"
  fi
fi

cc_var="CC_${TARGET//-/_}"
export "$cc_var=musl-gcc"
cargo build --release --locked -p ethwatch --target "$TARGET" >&2
bin="$CARGO_TARGET_DIR/$TARGET/release/ethwatch"
"$bin" --version >/dev/null || die "the static binary does not run: $bin"
echo "$bin"
