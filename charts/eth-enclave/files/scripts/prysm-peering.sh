#!/bin/sh
# The peering sidecar of Prysm beacon pods: makes this node trust every other beacon node of the
# enclave, through the node's own API (POST /prysm/node/trusted_peers), and again after a restart
# of either side. Prysm scores a peer bad after five bad answers and drops it for an hour (both
# fixed in Prysm), which two nodes starting together reach in their first seconds; a trusted peer
# is never scored bad, and Prysm redials it every few seconds.
#
# Environment: HTTP_PORT (the Beacon API port of every beacon node), P2P_PORT (their libp2p port).
# Files: /peers/cl (the peers ConfigMap: the first 16 beacon nodes' host names, re-read every
# round, so nodes a `helm upgrade` adds are trusted too).
api="http://127.0.0.1:$HTTP_PORT"
while :; do
  trusted=$(curl -sf -m 3 "$api/prysm/node/trusted_peers") || trusted=""
  hosts=$(cat /peers/cl) # one line, space-separated
  for h in $hosts; do
    # The container runtime sets HOSTNAME to the pod name, the first label of its own host name.
    # shellcheck disable=SC3028
    case "$h" in "$HOSTNAME".*) continue ;; esac
    id=$(curl -sf -m 3 "http://$h:$HTTP_PORT/eth/v1/node/identity") || continue
    peer=$(echo "$id" | sed -n 's/.*"peer_id" *: *"\([^"]*\)".*/\1/p')
    [ -n "$peer" ] || continue
    case "$trusted" in *"$peer"*) continue ;; esac
    if curl -sf -m 3 -X POST -H 'content-type: application/json' \
      --data "{\"addr\": \"/dns4/$h/tcp/$P2P_PORT/p2p/$peer\"}" "$api/prysm/node/trusted_peers"; then
      echo "trusting $h ($peer)"
    fi
  done
  sleep 10
done
