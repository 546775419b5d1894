#!/bin/bash
# The validator-keys Job's derivation step (templates/validator-keys.yaml): for every validator
# client pod of the release, its keystores, derived from the mnemonic with eth2-val-tools (as
# Kurtosis does), written as the manifest of that pod's own key Secret. The store step then
# creates the Secrets that do not exist yet (or hold another key range); the mnemonic stays in
# this Job.
#
# Environment: NAMESPACE. Files: /inputs/keys.plan (one "<secret> <first key> <end key> <client>"
# line per validator client pod, end exclusive; a prysm client also gets the Prysm wallet that
# eth2-val-tools writes, one all-accounts keystore under the password in prysm.pass), /inputs/labels.yaml, /secrets/mnemonic, /work (scratch),
# /out (one <secret>.yaml per line of the plan).
set -euo pipefail

mnemonic="$(cat /secrets/mnemonic)"
while read -r name start end client; do
  [ -n "${name}" ] || continue
  work="/work/${name}"
  rm -rf "${work}"
  echo "${name}: deriving validator keys ${start}..$((end - 1))"
  eth2-val-tools keystores --insecure --prysm-pass password \
    --out-loc "${work}" \
    --source-mnemonic "${mnemonic}" \
    --source-min "${start}" --source-max "${end}" >/dev/null
  out="/out/${name}.yaml"
  {
    echo "apiVersion: v1"
    echo "kind: Secret"
    echo "metadata:"
    echo "  name: ${name}"
    echo "  namespace: ${NAMESPACE}"
    echo "  labels:"
    sed 's/^/    /' /inputs/labels.yaml
    echo "  annotations:"
    echo "    eth-enclave/key-range: \"${start}-${end}\""
    # Owned by the genesis ConfigMap (its uid is filled in by the store step): the keys go when
    # that genesis goes (the uninstall cleanup), and a new install derives them again.
    echo "  ownerReferences:"
    echo "    - apiVersion: v1"
    echo "      kind: ConfigMap"
    echo "      name: GENESIS_CONFIGMAP_NAME"
    echo "      uid: GENESIS_CONFIGMAP_UID"
    echo "type: Opaque"
    echo "data:"
    echo "  range: $(printf '%s' "${start}-${end}" | base64 -w0)"
    n=0
    for dir in "${work}"/keys/0x*; do
      pub="$(basename "${dir}")"
      echo "  ${pub}.json: $(base64 -w0 "${dir}/voting-keystore.json")"
      echo "  ${pub}.pass: $(base64 -w0 "${work}/secrets/${pub}")"
      n=$((n + 1))
    done
    if [ "${client:-}" = prysm ]; then
      echo "  prysm-accounts.json: $(base64 -w0 "${work}/prysm/direct/accounts/all-accounts.keystore.json")"
      echo "  prysm.pass: $(printf '%s' password | base64 -w0)"
    fi
  } >"${out}"
  rm -rf "${work}"
  keys=$(grep -c '^  0x.*\.json: ' "${out}" || true)
  if [ "${keys}" -ne $((end - start)) ]; then
    echo "${name}: eth2-val-tools gave ${keys} keystores, not $((end - start))" >&2
    exit 1
  fi
  size=$(wc -c <"${out}")
  if [ "${size}" -gt 1000000 ]; then
    echo "${name}: ${keys} keystores make ${size} bytes, over the 1 MiB limit of a Secret; give the participant fewer validator_count per copy and more copies" >&2
    exit 1
  fi
  echo "${name}: ${keys} keystores, ${size} bytes"
done </inputs/keys.plan
