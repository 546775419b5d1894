"""pytest set-up of the alert tests: run `tests/run.sh`, or from here `pytest -m "not e2e"` for
the fast ones."""

import sys
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # common
sys.path.insert(0, str(HERE.parent))  # e2e.stack: the harness shared with tests/dashboards


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "e2e: end to end through real nodes, exporters, Prometheus and Alertmanager"
    )
