#!/bin/bash
# Readiness of the validator client (templates/validator.yaml, an exec probe in the Lighthouse
# image, which has bash but no curl): ready once its own metrics say it has validator keys enabled
# and a beacon node it can use. Liveness stays a TCP check of the metrics port (the process runs).
#
# Environment: VC_METRICS_PORT; VC_METRICS_HOST only to point the tests elsewhere.
set -euo pipefail

exec 3<>"/dev/tcp/${VC_METRICS_HOST:-127.0.0.1}/${VC_METRICS_PORT}"
printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
awk '
  $1 == "vc_validators_enabled_count" { keys = $2 }
  $1 == "vc_beacon_nodes_available_count" { nodes = $2 }
  END {
    if (keys + 0 < 1) { print "not ready: no validator key enabled"; exit 1 }
    if (nodes + 0 < 1) { print "not ready: no beacon node available"; exit 1 }
    print "ready: " keys " keys enabled, " nodes " beacon node(s) available"
  }' <&3
