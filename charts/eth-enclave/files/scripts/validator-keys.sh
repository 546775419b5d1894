#!/bin/sh
# The validator client's keys init container (templates/validator.yaml): puts this pod's own
# keystores, from its key Secret (written once by the validator-keys Job), into the keys volume in
# Lighthouse's layout (keys/<pubkey>/voting-keystore.json, secrets/<pubkey>). The pod never sees
# the mnemonic; the validator client container never mounts the Secrets.
#
# Files: /keys-src/<ordinal>/ (the participant's key Secrets, one directory per ordinal: a
# StatefulSet's pods share one template), /validator-keys (the keys volume).
set -eu

# The container runtime sets HOSTNAME to the pod name, <statefulset>-<ordinal>.
# shellcheck disable=SC3028
ord="${HOSTNAME##*-}"
src="/keys-src/${ord}"
dst=/validator-keys
if [ ! -s "${src}/range" ]; then
  echo "no key Secret for ordinal ${ord} (the validator-keys Job writes it on install and upgrade)" >&2
  exit 1
fi
range="$(cat "${src}/range")"
if [ "$(cat "${dst}/.range" 2>/dev/null)" != "${range}" ]; then
  # Other keys than last time (or none yet): their slashing protection does not apply.
  echo "keys ${range}: a new range, starting from an empty keys volume"
  rm -rf "${dst}/keys" "${dst}/secrets" "${dst}/.range"
fi
mkdir -p "${dst}/keys" "${dst}/secrets"
n=0
for f in "${src}"/0x*.json; do
  [ -e "${f}" ] || continue
  pub="$(basename "${f}" .json)"
  mkdir -p "${dst}/keys/${pub}"
  cp "${f}" "${dst}/keys/${pub}/voting-keystore.json"
  cp "${src}/${pub}.pass" "${dst}/secrets/${pub}"
  n=$((n + 1))
done
chmod -R go-rwx "${dst}/secrets"
if [ -s "${src}/prysm-accounts.json" ]; then
  # Prysm's wallet (--wallet-dir /validator-keys/prysm): one all-accounts keystore of the same
  # keys; Prysm refuses a wallet file others may read.
  mkdir -p "${dst}/prysm/direct/accounts"
  cp "${src}/prysm-accounts.json" "${dst}/prysm/direct/accounts/all-accounts.keystore.json"
  cp "${src}/prysm.pass" "${dst}/prysm/wallet-password.txt"
  chmod -R go-rwx "${dst}/prysm"
fi
echo "${range}" >"${dst}/.range"
echo "validator keys ${range}: ${n} keystores in place"
