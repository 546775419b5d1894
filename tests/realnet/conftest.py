"""pytest set-up of the real-network tests (tests/realnet): run by tests/run.sh inside a private
network namespace (`unshare -n`), so the partition's iptables rules touch nothing else."""

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # e2e: the harness shared with tests/alerts and dashboards
sys.path.insert(0, str(HERE.parent / "alerts"))  # common: the rules' generator and helpers


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: end to end through real clients, exporters, Prometheus and Alertmanager")
