#!/usr/bin/env bash
# The local genesis image's root filesystem (docs/genesis-image.md): the contract of the
# ethereum-genesis-generator image that charts/eth-enclave's genesis and validator-keys Jobs run,
# for geth + Prysm, from what installs here: our tool images/genesis (Go, on Prysm's packages),
# Debian's busybox-static and bash-static.
#
#   source scripts/kube/images-genesis.sh
#   build_genesis_rootfs DIR      # DIR must not exist or be empty; fills it with the image's files
#   genesis_image_config          # the image config to pack it with (JSON on stdout)
#
# or run it: scripts/kube/images-genesis.sh DIR (the same, printing the config JSON).
#
# The tool's build is cached under ${ETHWATCH_CACHE:-~/.cache/ethwatch}/images/genesis-tool-<hash>
# (the hash of images/genesis, the Go version and the build flags); the Debian packages under
# .../images/debs/. The Go build shares Go's build cache and flags with scripts/tools.sh's Prysm.
#
# Layout of DIR:
#   bin/busybox (static) and a link per applet (sh, cp, date, base64, gzip, sed, ...); bin/bash
#   (static); usr/local/bin/ethgenesis (static) and eth2-val-tools -> ethgenesis;
#   work/entrypoint.sh; config/{cl/config.yaml,cl/mnemonics.yaml,el/genesis-config.yaml};
#   etc/{passwd,group}; empty mount points (dev, proc, sys, and the Jobs' data, out, inputs,
#   secrets, writable-config) and tmp (1777).

GENESIS_PRYSM_MODULE=github.com/OffchainLabs/prysm/v6
GENESIS_PRYSM_VERSION=v6.0.4
GENESIS_DEBS=(busybox-static bash-static)
GENESIS_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

_genesis_log() { echo "images-genesis: $*" >&2; }
_genesis_die() {
  _genesis_log "ERROR: $*"
  return 1
}
_genesis_cache() { printf '%s/images' "${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}"; }

# The flags of the Go build: the same CGO_CFLAGS and -trimpath as scripts/tools.sh's Prysm build,
# so Prysm's packages come from Go's build cache; linked statically.
_GENESIS_CGO_CFLAGS="-O2 -D__BLST_PORTABLE__"
_GENESIS_LDFLAGS="-s -w -linkmode external -extldflags -static"

genesis_tool_hash() {
  (
    cd "$GENESIS_REPO/images/genesis" || exit 1
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    go version
    printf '%s\n%s\n%s@%s\n' "$_GENESIS_CGO_CFLAGS" "$_GENESIS_LDFLAGS" "$GENESIS_PRYSM_MODULE" "$GENESIS_PRYSM_VERSION"
  ) | sha256sum | cut -c1-16
}

# build_genesis_tool: builds (or finds in the cache) the static ethgenesis binary; prints its path.
build_genesis_tool() {
  local hash dir
  hash="$(genesis_tool_hash)" || return 1
  dir="$(_genesis_cache)/genesis-tool-$hash"
  if [[ -x "$dir/ethgenesis" && -f "$dir/.built" ]]; then
    printf '%s\n' "$dir/ethgenesis"
    return 0
  fi
  mkdir -p "$dir"
  (
    # One builder per hash; another process may be building the same one.
    exec 9>"$dir.lock"
    flock 9
    if [[ -x "$dir/ethgenesis" && -f "$dir/.built" ]]; then exit 0; fi
    _genesis_log "building ethgenesis ($hash) with Prysm $GENESIS_PRYSM_VERSION's packages (minutes cold; seconds when Prysm is in Go's build cache)"
    rm -rf "$dir/src" "$dir/ethgenesis" "$dir/.built"
    cp -R "$GENESIS_REPO/images/genesis" "$dir/src"
    cd "$dir/src" || exit 1
    export GOTOOLCHAIN=local GOFLAGS=-mod=readonly
    # The deposit contract's creation code, from Prysm's module (embedded by genesis.go).
    local prysm
    prysm="$(go mod download -json "$GENESIS_PRYSM_MODULE@$GENESIS_PRYSM_VERSION" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -f "$prysm/contracts/deposit/bytecode.bin" ]] || _genesis_die "no contracts/deposit/bytecode.bin in $prysm" || exit 1
    cp "$prysm/contracts/deposit/bytecode.bin" cmd/ethgenesis/deposit_contract.bin
    # Its unit tests first (EIP-2333 vector, the chart mnemonic's keys, templates), then the binary.
    CGO_ENABLED=1 CGO_CFLAGS="$_GENESIS_CGO_CFLAGS" nice go test -trimpath ./cmd/ethgenesis >&2 ||
      _genesis_die "go test failed" || exit 1
    CGO_ENABLED=1 CGO_CFLAGS="$_GENESIS_CGO_CFLAGS" nice go build -trimpath -ldflags "$_GENESIS_LDFLAGS" \
      -o "$dir/ethgenesis" ./cmd/ethgenesis >&2 || _genesis_die "go build failed" || exit 1
    "$dir/ethgenesis" --help >/dev/null || _genesis_die "$dir/ethgenesis does not run" || exit 1
    if ldd "$dir/ethgenesis" >/dev/null 2>&1; then _genesis_die "$dir/ethgenesis is not static" || exit 1; fi
    touch "$dir/.built"
  ) || return 1
  printf '%s\n' "$dir/ethgenesis"
}

# _genesis_debs: the Debian packages unpacked under the cache (keyed by their versions); prints
# the directory.
_genesis_debs() {
  local versions="" p v dir
  for p in "${GENESIS_DEBS[@]}"; do
    v="$(apt-cache policy "$p" | sed -n 's/^  Candidate: //p')"
    if [[ -z "$v" || "$v" == "(none)" ]]; then
      apt-get update >&2 || true
      v="$(apt-cache policy "$p" | sed -n 's/^  Candidate: //p')"
    fi
    [[ -n "$v" && "$v" != "(none)" ]] || _genesis_die "apt knows no $p" || return 1
    versions+="$p=$v "
  done
  dir="$(_genesis_cache)/debs/$(printf '%s' "$versions" | sha256sum | cut -c1-16)"
  if [[ -f "$dir/.unpacked" ]]; then
    printf '%s\n' "$dir"
    return 0
  fi
  mkdir -p "$dir"
  (
    exec 9>"$dir.lock"
    flock 9
    [[ -f "$dir/.unpacked" ]] && exit 0
    _genesis_log "downloading ${versions% }"
    rm -rf "$dir/debs" "$dir/root"
    mkdir -p "$dir/debs" "$dir/root"
    cd "$dir/debs" || exit 1
    # shellcheck disable=SC2086 # one word per package=version
    apt-get download $versions >&2 || _genesis_die "apt-get download failed" || exit 1
    local deb
    for deb in ./*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
    [[ -x "$dir/root/bin/busybox" && -x "$dir/root/bin/bash-static" ]] ||
      _genesis_die "the packages hold no bin/busybox or bin/bash-static" || exit 1
    printf '%s\n' "$versions" >"$dir/versions"
    touch "$dir/.unpacked"
  ) || return 1
  printf '%s\n' "$dir"
}

# build_genesis_rootfs DIR: the image's files in DIR (which must not exist or be empty).
build_genesis_rootfs() {
  local out="${1:?usage: build_genesis_rootfs DIR}" tool debs a
  if [[ -e "$out" && -n "$(ls -A "$out" 2>/dev/null)" ]]; then
    _genesis_die "$out exists and is not empty" || return 1
  fi
  tool="$(build_genesis_tool)" || return 1
  debs="$(_genesis_debs)" || return 1
  mkdir -p "$out"/{bin,usr/local/bin,usr/bin,work,config,etc,dev,proc,sys,data,out,inputs,secrets,writable-config,tmp}
  chmod 1777 "$out/tmp"
  install -m 0755 "$debs/root/bin/busybox" "$out/bin/busybox"
  for a in $("$out/bin/busybox" --list); do
    case "$a" in busybox | bash) continue ;; esac
    ln -s busybox "$out/bin/$a"
  done
  install -m 0755 "$debs/root/bin/bash-static" "$out/bin/bash"
  install -m 0755 "$tool" "$out/usr/local/bin/ethgenesis"
  ln -s ethgenesis "$out/usr/local/bin/eth2-val-tools"
  install -m 0755 "$GENESIS_REPO/images/genesis/rootfs/work/entrypoint.sh" "$out/work/entrypoint.sh"
  cp -R "$GENESIS_REPO/images/genesis/config/." "$out/config/"
  chmod -R a+rX "$out/config"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\ngenesis:x:10001:10001:genesis:/tmp:/bin/sh\n' >"$out/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\ngenesis:x:10001:\n' >"$out/etc/group"
  cp "$debs/versions" "$out/etc/genesis-image-packages"
  _genesis_log "rootfs in $out ($(du -sh "$out" | cut -f1))"
}

# genesis_image_config: the image config (OCI image-spec "config" fields) for the rootfs. The
# chart sets the command of every container; the entrypoint is for running the image by hand.
genesis_image_config() {
  cat <<'JSON'
{
  "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp"],
  "Entrypoint": ["/work/entrypoint.sh"],
  "Cmd": ["all"],
  "WorkingDir": "/work",
  "User": "10001:10001"
}
JSON
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  build_genesis_rootfs "${1:?usage: $0 DIR}"
  genesis_image_config
fi
