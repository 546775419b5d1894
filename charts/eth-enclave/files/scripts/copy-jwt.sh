#!/bin/sh
# The jwt init container of execution and beacon pods: copies this pod's own engine-API JWT out of
# the participant's JWT Secret volume (mounted only here: a StatefulSet's pods share one template,
# so the volume holds every ordinal's key) into a memory volume, the only JWT the client sees.
#
# Environment: JWT_KEY (the key in the Secret; "jwt-<participant>-ORD" names one per ordinal).
# Files: /jwt-secret (the Secret), /jwt (the memory volume).
set -eu

# The container runtime sets HOSTNAME to the pod name, <statefulset>-<ordinal>.
# shellcheck disable=SC3028
ord="${HOSTNAME##*-}"
key="$(printf '%s' "${JWT_KEY}" | sed "s/ORD\$/${ord}/")"
if [ ! -s "/jwt-secret/${key}" ]; then
  echo "no JWT ${key} in the Secret" >&2
  exit 1
fi
cp "/jwt-secret/${key}" /jwt/jwt.hex
chmod 0400 /jwt/jwt.hex
echo "JWT ${key} in place"
