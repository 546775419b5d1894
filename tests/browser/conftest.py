"""pytest set-up of the headless browser tests (the watcher's status page): run `tests/run.sh`."""

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # the shared e2e package


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: end to end through real nodes and a real browser")
