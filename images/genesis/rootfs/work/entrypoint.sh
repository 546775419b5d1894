#!/bin/bash
# The genesis image's entrypoint (docs/genesis-image.md): the command of the
# ethereum-genesis-generator image that charts/eth-enclave's genesis Job runs, `entrypoint.sh all`.
# It reads /config/values.env (export lines) and writes the genesis of a post-merge testnet for geth
# and Prysm into /data/metadata: genesis.json, config.yaml, genesis.ssz, deposit_contract.txt,
# deposit_contract_block.txt, deposit_contract_block_hash.txt, genesis_validators_root.txt.
#
# Environment: CONFIG_DIR (default /config), DATA_DIR (default /data).
set -euo pipefail

CONFIG_DIR="${CONFIG_DIR:-/config}"
DATA_DIR="${DATA_DIR:-/data}"

usage() {
  echo "usage: $0 all    (the execution and consensus genesis from ${CONFIG_DIR}/values.env)" >&2
  exit 2
}

case "${1:-}" in
  all) ;;
  -h | --help) usage ;;
  *)
    echo "$0: unknown command '${1:-}' (this image does 'all' only: geth + Prysm genesis)" >&2
    usage
    ;;
esac

values="${CONFIG_DIR}/values.env"
[ -f "${values}" ] || {
  echo "$0: no ${values}" >&2
  exit 1
}
# values.env is `export KEY="value"` lines, written by the chart (shell syntax on purpose).
# shellcheck source=/dev/null
source "${values}"

mkdir -p "${DATA_DIR}/metadata"
exec /usr/local/bin/ethgenesis genesis --config-dir "${CONFIG_DIR}" --out "${DATA_DIR}/metadata"
