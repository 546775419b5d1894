"""What the chart takes from alerts/ and dashboards/ must equal what they give: the Helm rule
templates in files/alerts and the monitoring.prometheusRule values and schema entries (generated
from alerts/templates and alerts/config.yaml by alerts/generate.py --chart), and the dashboards
copied into files/dashboards. scripts/sync-chart.sh makes them so; its --check mode fails on drift."""

import shutil
import subprocess

from conftest import CHART, ROOT

SYNC = ROOT / "scripts" / "sync-chart.sh"


def test_chart_copies_match_their_sources():
    proc = subprocess.run([str(SYNC), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, (
        "charts/eth-enclave drifted from alerts/ or dashboards/; run scripts/sync-chart.sh\n"
        + proc.stderr)


def test_check_names_every_drift_and_sync_repairs_it(tmp_path):
    """In a copy of the tree: a changed alert template, a changed default in alerts/config.yaml, a
    new dashboard and a rule file whose template is gone are each named by --check, and a plain run
    makes --check pass."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(SYNC, tmp_path / "scripts")
    shutil.copytree(ROOT / "alerts", tmp_path / "alerts")
    shutil.copytree(ROOT / "dashboards", tmp_path / "dashboards")
    chart = tmp_path / "charts" / "eth-enclave"
    shutil.copytree(CHART / "files", chart / "files")
    for name in ("values.yaml", "values.schema.json"):
        shutil.copy(CHART / name, chart / name)
    script = tmp_path / "scripts" / "sync-chart.sh"

    template = sorted((tmp_path / "alerts" / "templates").glob("*.yaml"))[0]
    template.write_text(template.read_text().replace("summary: ", "summary: Changed. ", 1))
    config = tmp_path / "alerts" / "config.yaml"
    config.write_text(config.read_text().replace("min_peers: 3", "min_peers: 4", 1))
    (tmp_path / "dashboards" / "new.json").write_text('{"title": "new"}\n')
    (chart / "files" / "alerts" / "gone.yaml").write_text("groups: []\n")

    proc = subprocess.run([str(script), "--check"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"files/alerts/{template.name} differs" in proc.stderr
    assert "eth-enclave/values.yaml differs" in proc.stderr
    assert "values.schema.json" not in proc.stderr  # same keys and types
    assert "files/dashboards/new.json differs" in proc.stderr
    assert "files/alerts/gone.yaml has no template" in proc.stderr

    subprocess.run([str(script)], check=True, capture_output=True)
    proc = subprocess.run([str(script), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert not (chart / "files" / "alerts" / "gone.yaml").exists()
    assert "min_peers: 4" in (chart / "values.yaml").read_text()
    assert "Changed. " in (chart / "files" / "alerts" / template.name).read_text()
