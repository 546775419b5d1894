"""pytest set-up of the alert tests: run `tests/run.sh`, or from here `pytest -m "not e2e"` for
the fast ones."""

import sys
import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "e2e: end to end through real nodes, exporters, Prometheus and Alertmanager"
    )
