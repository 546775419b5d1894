#!/usr/bin/env bash
# Bring the chart (charts/eth-enclave) up to date with alerts/ and dashboards/, which stay the single
# source of truth: edit them, then run this.
#   - alerts: `alerts/generate.py --chart` writes files/alerts/*.yaml (alerts/templates/ with each
#     ${key} turned into a Helm expression reading .Values.monitoring.prometheusRule, rendered into
#     the PrometheusRule by templates/servicemonitor.yaml), the monitoring.prometheusRule block of
#     values.yaml (alerts/config.yaml's keys, values and comments) and its values.schema.json entries;
#   - dashboards: dashboards/*.json are copied into files/dashboards (dashboard ConfigMaps).
#
#   scripts/sync-chart.sh          # write (removes copies whose source is gone)
#   scripts/sync-chart.sh --check  # exit 1 and name every file that differs; writes nothing
#
# tests/chart/test_sync.py runs --check, so a change to the sources without a sync fails the tests.
# The generator needs PyYAML: $ETHWATCH_PYTHON (scripts/tools.sh) if set, else python3.
set -euo pipefail

cd "$(dirname "$0")/.."

CHECK=0
case "${1:-}" in
  --check) CHECK=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

CHART=charts/eth-enclave/files
PAIRS=("dashboards:$CHART/dashboards:json")
drift=0

gen=(alerts/generate.py --chart charts/eth-enclave)
((CHECK)) && gen+=(--check)
if ! "${ETHWATCH_PYTHON:-python3}" "${gen[@]}"; then
  drift=1
  ((CHECK)) || exit 1
fi

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
  echo "the chart's alerts and dashboards are out of date with alerts/ and dashboards/: run scripts/sync-chart.sh" >&2
  exit 1
fi
