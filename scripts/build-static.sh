#!/usr/bin/env bash
# Build the static ethwatch binary that the container image ships (no shared libraries),
# idempotently, and print its path on stdout (progress goes to stderr).
#
#   scripts/build-static.sh            # release build for this machine's architecture
#
# Why static: a sidecar runs one small process per node, and with a dynamic libc every process
# maps its own view of libc, libm and the loader (about 1.5 MiB of resident file pages each). The
# static binary keeps only the libc code it calls (docs/benchmarks.md, docs/container.md).
#
# How: glibc linked statically (`-C target-feature=+crt-static`) on the Rust target that is
# already installed, so nothing is fetched: adding another target (musl) would reach rustup's own
# server, which is not a package registry. Host names still resolve (glibc's built-in files and
# dns lookups: /etc/hosts, /etc/resolv.conf); tests/kube runs this binary alone in an image.
# The target directory is $CARGO_TARGET_DIR, or ${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}/target.
set -euo pipefail

cd "$(dirname "$0")/.."
LOG_TAG=build-static.sh
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

CACHE="${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
TARGET="$(rustc -vV | sed -n 's/^host: //p')"
[[ "$TARGET" == *-linux-gnu ]] || die "expected a *-linux-gnu host target, not '$TARGET'"

# With an explicit --target, RUSTFLAGS apply to the target's crates only (not to build scripts
# and proc macros, which stay dynamic and run on the host).
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked -p ethwatch --target "$TARGET" >&2
bin="$CARGO_TARGET_DIR/$TARGET/release/ethwatch"
"$bin" --version >/dev/null || die "the static binary does not run: $bin"
if grep -q '=>' <<<"$(ldd "$bin" 2>&1)"; then
  die "$bin is not static (it needs: $(ldd "$bin" 2>&1 | grep -o '^[[:space:]]*[^ ]*' | tr -d '\t' | tr '\n' ' '))"
fi
echo "$bin"
