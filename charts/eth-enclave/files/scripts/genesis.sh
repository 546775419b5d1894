#!/bin/bash
# The genesis Job's generator step (templates/genesis.yaml, run with bash -e from the Job's inputs
# ConfigMap): fix the genesis time once, run the pinned ethereum-genesis-generator, and write the
# manifest of the genesis ConfigMap the Job's store container applies. The mnemonic and the raw
# outputs the nodes do not need (mnemonics.yaml, bootstrap_nodes.txt) never reach the manifest.
#
# Environment (set by the template): GENESIS_TIME (0: now + the delays below), GENESIS_DELAY,
# POD_STARTUP_SECONDS, TOTAL_NODES, VALIDATORS, CONFIGMAP, NAMESPACE.
# Files: /inputs (values.env, labels.yaml), /secrets/mnemonic, /data (the generator's output),
# /out (the manifest).
set -euo pipefail

if [ "${GENESIS_TIME}" -gt 0 ]; then
  ENCLAVE_GENESIS_TIMESTAMP="${GENESIS_TIME}"
else
  # As Kurtosis (now + genesis_delay + 5 + 5 per node), plus the time the node pods need after
  # this Job to pull their images and run their init containers (genesis.podStartupSeconds);
  # fixed here once per install.
  ENCLAVE_GENESIS_TIMESTAMP=$(($(date +%s) + GENESIS_DELAY + POD_STARTUP_SECONDS + 5 + 5 * TOTAL_NODES))
fi
ENCLAVE_MNEMONIC="$(cat /secrets/mnemonic)"
export ENCLAVE_GENESIS_TIMESTAMP ENCLAVE_MNEMONIC
echo "genesis time ${ENCLAVE_GENESIS_TIMESTAMP} ($(date -u -d @"${ENCLAVE_GENESIS_TIMESTAMP}" 2>/dev/null || true)), ${VALIDATORS} validators"
/work/entrypoint.sh all

m=/data/metadata
for f in genesis.json config.yaml genesis.ssz deposit_contract_block.txt; do
  [ -s "$m/$f" ] || { echo "the generator wrote no $m/$f" >&2; exit 1; }
done
out=/out/genesis-configmap.yaml
{
  echo "apiVersion: v1"
  echo "kind: ConfigMap"
  echo "metadata:"
  echo "  name: ${CONFIGMAP}"
  echo "  namespace: ${NAMESPACE}"
  echo "  labels:"
  sed 's/^/    /' /inputs/labels.yaml
  echo "data:"
  echo "  genesis_time.txt: \"${ENCLAVE_GENESIS_TIMESTAMP}\""
  echo "binaryData:"
  for f in genesis.json config.yaml deposit_contract.txt deposit_contract_block.txt deposit_contract_block_hash.txt genesis_validators_root.txt; do
    if [ -f "$m/$f" ]; then echo "  $f: $(base64 -w0 "$m/$f")"; fi
  done
  echo "  genesis.ssz.gz: $(gzip -9c "$m/genesis.ssz" | base64 -w0)"
} >"$out"
size=$(wc -c <"$out")
if [ "$size" -gt 1000000 ]; then
  echo "the genesis ConfigMap would be $size bytes, over the 1 MiB limit of a ConfigMap" >&2
  exit 1
fi
echo "genesis ConfigMap: $size bytes"
