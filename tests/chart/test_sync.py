"""The chart's copies of alerts/rules and dashboards/ (charts/eth-enclave/files) must equal their
sources; scripts/sync-chart.sh makes them so, and its --check mode is what fails on drift."""

import shutil
import subprocess

from conftest import CHART, ROOT

SYNC = ROOT / "scripts" / "sync-chart.sh"


def test_chart_copies_match_their_sources():
    proc = subprocess.run([str(SYNC), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, (
        "charts/eth-enclave/files drifted from alerts/rules or dashboards/; run scripts/sync-chart.sh\n"
        + proc.stderr)


def test_check_names_every_drift_and_sync_repairs_it(tmp_path):
    """In a copy of the tree: a changed rule, a new dashboard and a deleted source are each named by
    --check, and a plain run makes --check pass."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(SYNC, tmp_path / "scripts")
    shutil.copytree(ROOT / "alerts" / "rules", tmp_path / "alerts" / "rules")
    shutil.copytree(ROOT / "dashboards", tmp_path / "dashboards")
    shutil.copytree(CHART / "files", tmp_path / "charts" / "eth-enclave" / "files")
    script = tmp_path / "scripts" / "sync-chart.sh"

    rule = sorted((tmp_path / "alerts" / "rules").glob("*.yaml"))[0]
    rule.write_text(rule.read_text() + "\n# changed\n")
    (tmp_path / "dashboards" / "new.json").write_text('{"title": "new"}\n')
    (tmp_path / "charts" / "eth-enclave" / "files" / "alerts" / "gone.yaml").write_text("groups: []\n")

    proc = subprocess.run([str(script), "--check"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"files/alerts/{rule.name} differs" in proc.stderr
    assert "files/dashboards/new.json differs" in proc.stderr
    assert "files/alerts/gone.yaml has no source" in proc.stderr

    subprocess.run([str(script)], check=True, capture_output=True)
    proc = subprocess.run([str(script), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "charts" / "eth-enclave" / "files" / "alerts" / "gone.yaml").exists()
