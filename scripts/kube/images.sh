# shellcheck shell=bash
# The local images of the enclave (sourced by scripts/kube-enclave.sh): each one a root
# filesystem assembled from what the project already builds or installs, written as a one-layer
# OCI archive by scripts/kube/mkimage.py and imported into the local node's containerd. Nothing is
# pulled: the chart runs them with `imagePullPolicy: Never` (charts/eth-enclave/ci/kube-local-values.yaml).
#
#   image            what it holds                                      stands in for
#   ethwatch         the static release binary, CA certificates, uid 65532  the Dockerfile's image
#   geth             busybox sh + geth v1.17.10 (+ its shared libs)     ethereum/client-go
#   prysm-beacon     beacon-chain v6.0.4 as entrypoint, no shell        Prysm's beacon-chain image
#   prysm-validator  validator v6.0.4 as entrypoint, no shell           Prysm's validator image
#   tools            busybox sh + curl (+ its shared libs)              curlimages/curl
#   kubectl          kubectl v1.34.4 (the one kube-local builds)        registry.k8s.io/kubectl
#   genesis          scripts/kube/images-genesis.sh (docs/genesis-image.md) the genesis generator
#
# Archives are cached under $KUBE_IMAGES keyed by a hash of their inputs (binaries, scripts), so a
# warm run only imports them.
#
# Needs: CACHE, ROOT (the repository), TOOLS_ENV (tools.sh's env.sh, sourced), and log/die.

IMAGE_PREFIX="${IMAGE_PREFIX:-ethwatch.local}"
KUBE_IMAGES="${KUBE_IMAGES:-$CACHE/kube-local/images}"
IMAGE_PATH_ENV='PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

# rootfs_base <dir>: the directories, users and name-service files every image has.
rootfs_base() {
  local r="$1"
  mkdir -p "$r"/{bin,etc,tmp,usr/local/bin,data,proc,sys,dev}
  chmod 1777 "$r/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\nnogroup:x:65534:\n' >"$r/etc/group"
  printf 'hosts: files dns\n' >"$r/etc/nsswitch.conf"
}

# rootfs_busybox <dir>: /bin/sh and the usual applets from Debian's static busybox.
rootfs_busybox() {
  local r="$1" a
  [[ -x /bin/busybox ]] || die "no /bin/busybox (Debian busybox-static; scripts/tools.sh kube-local installs it)"
  file -L /bin/busybox | grep -q 'statically linked' || die "/bin/busybox is not the static build"
  install -m755 /bin/busybox "$r/bin/busybox"
  for a in $(/bin/busybox --list); do
    [[ "$a" == busybox || -e "$r/bin/$a" ]] || ln -s busybox "$r/bin/$a"
  done
}

# rootfs_bin <dir> <binary> <path in image>: the binary and, if it is dynamic, the shared
# libraries and loader it needs, at the same paths as on this machine.
rootfs_bin() {
  local r="$1" src="$2" dst="$3" lib
  [[ -x "$src" ]] || die "no executable $src"
  mkdir -p "$r/$(dirname "$dst")"
  install -m755 "$src" "$r/$dst"
  if ldd "$src" >/dev/null 2>&1; then
    for lib in $(ldd "$src" | grep -o '/[^ ]*'); do
      [[ -e "$r$lib" ]] && continue
      mkdir -p "$r$(dirname "$lib")"
      cp -L "$lib" "$r$lib"
    done
  fi
}

# inputs_hash <file>...: a short hash of files' contents (the cache key of an image).
inputs_hash() { cat "$@" | sha256sum | cut -c1-16; }

# make_image <name> <tag> <hash> <config json> <builder function>: IMAGE_REF_<name> is set to the
# reference, IMAGE_TAR_<name> to the archive (built unless cached).
make_image() {
  local name="$1" tag="$2" hash="$3" config="$4" builder="$5"
  local tar="$KUBE_IMAGES/$name-$tag-$hash.tar" ref="$IMAGE_PREFIX/$name:$tag" r
  if [[ ! -s "$tar" ]]; then
    log "building image $ref"
    mkdir -p "$KUBE_IMAGES"
    r="$(mktemp -d "$KUBE_IMAGES/rootfs.XXXXXX")"
    "$builder" "$r"
    python3 "$ROOT/scripts/kube/mkimage.py" "$tar.part" "$ref" "$r" "$config" >/dev/null ||
      die "mkimage.py failed for $ref"
    rm -rf "$r"
    rm -f "$KUBE_IMAGES/$name-$tag-"*.tar
    mv "$tar.part" "$tar"
  fi
  local var="${name//-/_}"
  printf -v "IMAGE_REF_$var" '%s' "$ref"
  printf -v "IMAGE_TAR_$var" '%s' "$tar"
}

_img_ethwatch() {
  rootfs_base "$1"
  rootfs_bin "$1" "$ETHWATCH_STATIC" /usr/local/bin/ethwatch
  strip --strip-debug "$1/usr/local/bin/ethwatch" # a no-op on the release build (stripped already)
  # As distroless/static: CA certificates (the HTTP clients load them at start).
  mkdir -p "$1/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/"
}
_img_geth() { rootfs_base "$1"; rootfs_busybox "$1"; rootfs_bin "$1" "$ETHWATCH_GETH" /usr/local/bin/geth; }
_img_prysm_beacon() { rootfs_base "$1"; rootfs_bin "$1" "$(dirname "$ETHWATCH_PRYSM_BEACON")/beacon-chain" /app/cmd/beacon-chain/beacon-chain; }
_img_prysm_validator() { rootfs_base "$1"; rootfs_bin "$1" "$(dirname "$ETHWATCH_PRYSM_BEACON")/validator" /app/cmd/validator/validator; }
_img_tools() { rootfs_base "$1"; rootfs_busybox "$1"; rootfs_bin "$1" /usr/bin/curl /usr/bin/curl; }
_img_kubectl() { rootfs_base "$1"; rootfs_busybox "$1"; rootfs_bin "$1" "$KUBECTL" /bin/kubectl; }
# The genesis image is scripts/kube/images-genesis.sh's (it wants an empty directory).
_img_genesis() { build_genesis_rootfs "$1"; }

# build_images: every image of the enclave (IMAGE_REF_* / IMAGE_TAR_* set for each).
build_images() {
  command -v file >/dev/null || die "the image builder needs file(1)"
  # The release binary the Dockerfile ships (static), unless ENCLAVE_ETHWATCH_BIN names another
  # build of it (the tests pack the debug build they already have, with its shared libraries:
  # a release build with fat LTO costs more CI time than the whole cluster test).
  if [[ -n "${ENCLAVE_ETHWATCH_BIN:-}" ]]; then
    ETHWATCH_STATIC="$ENCLAVE_ETHWATCH_BIN"
  else
    ETHWATCH_STATIC="$("$ROOT/scripts/build-static.sh")" || die "scripts/build-static.sh failed"
  fi
  local env user='"User":"65532:65532"' penv="\"Env\":[\"$IMAGE_PATH_ENV\"]"
  # Tags are the versions the tools were built at (their cache directories are <name>-<version>).
  local geth_version prysm_version kube_version
  geth_version="$(basename "$(dirname "$ETHWATCH_GETH")")"; geth_version="${geth_version##*-}"
  prysm_version="$(basename "$(dirname "$ETHWATCH_PRYSM_BEACON")")"; prysm_version="${prysm_version##*-}"
  kube_version="$("$KUBECTL" version --client 2>/dev/null | sed -n 's/^Client Version: //p')"
  [[ -n "$kube_version" ]] || die "$KUBECTL reports no client version"
  make_image ethwatch "$(cut -d' ' -f2 <<<"$("$ETHWATCH_STATIC" --version | head -n1)")" \
    "$(inputs_hash "$ETHWATCH_STATIC")" \
    "{\"Entrypoint\":[\"/usr/local/bin/ethwatch\"],\"Cmd\":[\"--help\"],$user,$penv}" _img_ethwatch
  make_image geth "$geth_version" "$(inputs_hash "$ETHWATCH_GETH")" \
    "{\"Entrypoint\":[\"geth\"],$penv}" _img_geth
  make_image prysm-beacon "$prysm_version" "$(inputs_hash "$(dirname "$ETHWATCH_PRYSM_BEACON")/beacon-chain")" \
    "{\"Entrypoint\":[\"/app/cmd/beacon-chain/beacon-chain\"],$penv}" _img_prysm_beacon
  make_image prysm-validator "$prysm_version" "$(inputs_hash "$(dirname "$ETHWATCH_PRYSM_BEACON")/validator")" \
    "{\"Entrypoint\":[\"/app/cmd/validator/validator\"],$penv}" _img_prysm_validator
  make_image tools "$(curl --version | head -n1 | cut -d' ' -f2)" "$(inputs_hash /usr/bin/curl /bin/busybox)" \
    "{\"Entrypoint\":[\"curl\"],\"Cmd\":[\"--help\"],\"User\":\"100:101\",$penv}" _img_tools
  make_image kubectl "$kube_version" "$(inputs_hash "$KUBECTL")" \
    "{\"Entrypoint\":[\"kubectl\"],$user,$penv}" _img_kubectl
  make_image genesis local "$(genesis_tool_hash)" "$(genesis_image_config)" _img_genesis
  env=""
  for env in ethwatch geth prysm_beacon prysm_validator tools kubectl genesis; do
    local v="IMAGE_REF_$env"
    [[ -n "${!v}" ]] || die "no image reference for $env"
  done
}
