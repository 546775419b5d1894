#!/bin/sh
# The validator-keys Job's store step (templates/validator-keys.yaml), in the tools image (sh and
# curl, no kubectl): each key Secret the derivation wrote is created through the Kubernetes API
# unless it exists already with the same key range, so keys are derived once and kept; a Secret
# with another range (a participant list changed against the docs' advice) is replaced.
#
# Environment: NAMESPACE, GENESIS_CONFIGMAP; KUBE_API and SA_DIR only to point the tests elsewhere.
# Files: /out/*.yaml (the manifests), the pod's service-account token.
set -eu

sa="${SA_DIR:-/var/run/secrets/kubernetes.io/serviceaccount}"
api="${KUBE_API:-https://${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}}"
token="$(cat "${sa}/token")"
body=/tmp/answer.json

# call <method> <path> [curl arguments]: prints the HTTP status, the body goes to $body.
call() {
  method="$1"
  path="$2"
  shift 2
  curl -sS -m 30 --cacert "${sa}/ca.crt" -H "Authorization: Bearer ${token}" \
    -o "${body}" -w '%{http_code}' -X "${method}" "$@" "${api}${path}"
}

# first_value <key>: the first "<key>": "<value>" of the answer (the API's JSON is one line).
first_value() {
  grep -o "\"$1\": *\"[^\"]*\"" "${body}" | head -n 1 | sed 's/.*: *"\(.*\)"/\1/'
}

status="$(call GET "/api/v1/namespaces/${NAMESPACE}/configmaps/${GENESIS_CONFIGMAP}")"
if [ "${status}" != 200 ]; then
  echo "the genesis ConfigMap ${GENESIS_CONFIGMAP} cannot be read (HTTP ${status}); the keys belong to it" >&2
  cat "${body}" >&2
  exit 1
fi
uid="$(first_value uid)"

created=0
kept=0
for manifest in /out/*.yaml; do
  name="$(basename "${manifest}" .yaml)"
  want="$(sed -n 's/^    eth-enclave\/key-range: "\(.*\)"$/\1/p' "${manifest}")"
  status="$(call GET "/api/v1/namespaces/${NAMESPACE}/secrets/${name}")"
  if [ "${status}" = 200 ] && [ "$(first_value 'eth-enclave/key-range')" = "${want}" ]; then
    echo "${name}: keys ${want} already stored, kept"
    kept=$((kept + 1))
    continue
  fi
  sed -e "s/GENESIS_CONFIGMAP_NAME/${GENESIS_CONFIGMAP}/" -e "s/GENESIS_CONFIGMAP_UID/${uid}/" \
    "${manifest}" >/tmp/secret.yaml
  status="$(call PATCH "/api/v1/namespaces/${NAMESPACE}/secrets/${name}?fieldManager=eth-enclave-keys&force=true" \
    -H 'Content-Type: application/apply-patch+yaml' --data-binary @/tmp/secret.yaml)"
  case "${status}" in
    200 | 201) echo "${name}: keys ${want} stored" ;;
    *)
      echo "${name}: storing the keys failed (HTTP ${status})" >&2
      cat "${body}" >&2
      exit 1
      ;;
  esac
  rm -f /tmp/secret.yaml
  created=$((created + 1))
done
echo "validator key Secrets: ${created} stored, ${kept} kept"
