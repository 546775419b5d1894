#!/usr/bin/env bash
# Copy the alert rules (alerts/rules/*.yaml) and the Grafana dashboards (dashboards/*.json) into the
# chart (charts/eth-enclave/files/), which packages them as a PrometheusRule and dashboard
# ConfigMaps. alerts/ and dashboards/ stay the single source of truth: edit them, then run this.
#
#   scripts/sync-chart.sh          # copy (removes copies whose source is gone)
#   scripts/sync-chart.sh --check  # exit 1 and name every file that differs; copies nothing
#
# tests/chart/test_sync.py runs --check, so a change to the sources without a sync fails the tests.
set -euo pipefail

cd "$(dirname "$0")/.."

CHECK=0
case "${1:-}" in
  --check) CHECK=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

CHART=charts/eth-enclave/files
PAIRS=("alerts/rules:$CHART/alerts:yaml" "dashboards:$CHART/dashboards:json")
drift=0

for pair in "${PAIRS[@]}"; do
  IFS=: read -r src dst ext <<<"$pair"
  mkdir -p "$dst"
  # Copies whose source is gone.
  for f in "$dst"/*."$ext"; do
    [[ -e "$f" ]] || continue
    if [[ ! -e "$src/$(basename "$f")" ]]; then
      if ((CHECK)); then
        echo "drift: $f has no source $src/$(basename "$f")" >&2; drift=1
      else
        rm -f "$f"; echo "removed $f" >&2
      fi
    fi
  done
  # New or changed sources.
  for f in "$src"/*."$ext"; do
    [[ -e "$f" ]] || continue
    target="$dst/$(basename "$f")"
    if ! cmp -s "$f" "$target"; then
      if ((CHECK)); then
        echo "drift: $target differs from $f" >&2; drift=1
      else
        cp "$f" "$target"; echo "copied $f -> $target" >&2
      fi
    fi
  done
done

if ((CHECK && drift)); then
  echo "the chart's copies of alerts/ and dashboards/ are out of date: run scripts/sync-chart.sh" >&2
  exit 1
fi
