#!/usr/bin/env bash
# Install the external tools that ethwatch's tests and devnet use, idempotently.
#
#   scripts/tools.sh                 # everything
#   scripts/tools.sh anvil lodestar  # only these (anvil lodestar prometheus alertmanager wrk python)
#
# Node tools go into ${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}/tools/<name>-<version>/ and are
# marked done only after the binary has run, so a half install is retried. Debian packages are
# skipped when their binaries already exist. At the end $CACHE/tools/env.sh is written with one
# `export ETHWATCH_<TOOL>=<abs path>` line per installed tool, and the same lines go to stdout
# (all progress messages go to stderr), so `eval "$(scripts/tools.sh)"` works too.
set -euo pipefail

cd "$(dirname "$0")/.."

CACHE="${ETHWATCH_CACHE:-$HOME/.cache/ethwatch}"
TOOLS="$CACHE/tools"
ENV_FILE="$TOOLS/env.sh"

ANVIL_VERSION=1.7.1
LODESTAR_VERSION=1.5.1
ALL_TOOLS=(anvil lodestar prometheus alertmanager wrk python)

log() { echo "tools.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# A marker holds the absolute path of the verified binary plus a spec line; both must match.
marker_ok() { # <marker> <spec>
  [[ -f "$1" ]] || return 1
  local bin spec
  { read -r bin; read -r spec; } <"$1" || return 1
  [[ "$spec" == "$2" && -x "$bin" ]]
}
marker_bin() { head -n1 "$1"; }

# ---------------------------------------------------------------------------------------------
# anvil: one static binary shipped inside an npm package.
ANVIL_DIR="$TOOLS/anvil-$ANVIL_VERSION"
ANVIL_SPEC="@foundry-rs/anvil-linux-amd64@$ANVIL_VERSION"
install_anvil() {
  marker_ok "$ANVIL_DIR/.installed" "$ANVIL_SPEC" && return 0
  log "installing anvil $ANVIL_VERSION into $ANVIL_DIR"
  rm -f "$ANVIL_DIR/.installed"
  mkdir -p "$ANVIL_DIR"
  npm install --prefix "$ANVIL_DIR" --no-audit --no-fund --loglevel=error "$ANVIL_SPEC" >&2
  local bin
  bin="$(find "$ANVIL_DIR/node_modules" -type f -name anvil -perm -u+x | head -n1)"
  [[ -n "$bin" ]] || die "no anvil binary found under $ANVIL_DIR/node_modules"
  "$bin" --version | grep -q "$ANVIL_VERSION" || die "$bin --version does not report $ANVIL_VERSION"
  printf '%s\n%s\n' "$bin" "$ANVIL_SPEC" >"$ANVIL_DIR/.installed"
}

# ---------------------------------------------------------------------------------------------
# Lodestar: 1.5.1 is the only version whose whole dependency tree is on the registry reached here;
# the overrides keep npm from pulling newer, missing or Node-22-only packages (see TOOLS.md).
LODESTAR_DIR="$TOOLS/lodestar-$LODESTAR_VERSION"
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
    "@multiformats/mafmt": "11.1.1"
  }
}
EOF
}
install_lodestar() {
  local pkg spec
  pkg="$(lodestar_package_json)"
  spec="lodestar-$LODESTAR_VERSION-$(printf '%s' "$pkg" | sha256sum | cut -c1-16)"
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
  printf '%s\n%s\n' "$bin" "$spec" >"$LODESTAR_DIR/.installed"
}

# ---------------------------------------------------------------------------------------------
# Python: a venv with the pinned packages the non-cargo tests and alerts/generate.py use, so they
# never depend on what happens to be installed system-wide. Keyed by the pins and the interpreter.
PYTHON_PINS=(pyyaml==6.0.3 pytest==9.0.3)
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
  "$dir/bin/python" -c 'import yaml, pytest' || die "the venv in $dir cannot import yaml and pytest"
  printf '%s\n%s\n' "$dir/bin/python" "$spec" >"$dir/.installed"
}

# ---------------------------------------------------------------------------------------------
# Debian packages. apt-get update runs only when a plain install fails (stale or empty lists).
apt_install() { # <package>...
  export DEBIAN_FRONTEND=noninteractive
  log "apt-get install $*"
  if ! apt-get install -y --no-install-recommends "$@" >&2; then
    log "install failed; running apt-get update and retrying"
    apt-get update >&2
    apt-get install -y --no-install-recommends "$@" >&2
  fi
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

# ---------------------------------------------------------------------------------------------
# env.sh lists every tool that is installed now, selected this run or not.
env_lines() {
  if marker_ok "$ANVIL_DIR/.installed" "$ANVIL_SPEC"; then
    printf 'export ETHWATCH_ANVIL=%q\n' "$(marker_bin "$ANVIL_DIR/.installed")"
  fi
  if [[ -f "$LODESTAR_DIR/.installed" ]]; then
    local bin
    bin="$(marker_bin "$LODESTAR_DIR/.installed")"
    if [[ -x "$bin" ]]; then printf 'export ETHWATCH_LODESTAR=%q\n' "$bin"; fi
  fi
  local pydir
  pydir="$(python_dir)"
  if marker_ok "$pydir/.installed" "$(python_spec)"; then
    printf 'export ETHWATCH_PYTHON=%q\n' "$(marker_bin "$pydir/.installed")"
  fi
  local var bin
  for var in PROMTOOL:promtool PROMETHEUS:prometheus ALERTMANAGER:prometheus-alertmanager WRK:wrk; do
    if bin="$(command -v "${var#*:}")"; then printf 'export ETHWATCH_%s=%q\n' "${var%%:*}" "$bin"; fi
  done
}

main() {
  local selected=("$@") t
  ((${#selected[@]})) || selected=("${ALL_TOOLS[@]}")
  for t in "${selected[@]}"; do
    [[ " ${ALL_TOOLS[*]} " == *" $t "* ]] || die "unknown tool '$t' (known: ${ALL_TOOLS[*]})"
  done

  mkdir -p "$TOOLS"
  # One installer at a time (test.sh and devnet.sh may start together).
  exec 9>"$TOOLS/.lock"
  flock 9

  for t in "${selected[@]}"; do "install_$t"; done

  local lines
  lines="$(env_lines)"
  printf '# Written by scripts/tools.sh; source it to find the test tools.\n%s\n' "$lines" \
    >"$ENV_FILE.tmp.$$"
  mv -f "$ENV_FILE.tmp.$$" "$ENV_FILE"
  printf '%s\n' "$lines"
}

main "$@"
