"""promtool: every rule file is valid, and every alert has unit tests that fire and that don't."""

from __future__ import annotations

import pytest
import yaml

from common import RULES, UNIT_TESTS, alert_rules, promtool, rule_files, run


@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_promtool_check_rules(path):
    r = run([promtool(), "check", "rules", str(path)])
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", sorted(UNIT_TESTS.glob("*.test.yaml")), ids=lambda p: p.name)
def test_promtool_test_rules(path):
    r = run([promtool(), "test", "rules", path.name], cwd=path.parent)
    assert r.returncode == 0, r.stdout + r.stderr


def test_unit_tests_cover_every_rule_file():
    covered = set()
    for path in UNIT_TESTS.glob("*.test.yaml"):
        for f in yaml.safe_load(path.read_text())["rule_files"]:
            covered.add((path.parent / f).resolve())
    missing = [p.name for p in rule_files() if p.resolve() not in covered]
    assert not missing, f"rule files without a promtool unit test file: {missing}"


def test_every_alert_has_a_firing_and_a_silent_case():
    fires, silent = set(), set()
    for path in UNIT_TESTS.glob("*.test.yaml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                exp = case.get("exp_alerts") or []
                if exp:
                    for a in exp:
                        assert a.get("exp_annotations"), f"{path.name}: {case['alertname']} case without annotations"
                        assert "severity" in a.get("exp_labels", {}), f"{path.name}: {case['alertname']} case without labels"
                    fires.add(case["alertname"])
                else:
                    silent.add(case["alertname"])
    names = {r["alert"] for r in alert_rules(RULES)}
    assert not names - fires, f"alerts without a firing unit test: {sorted(names - fires)}"
    assert not names - silent, f"alerts without a non-firing unit test: {sorted(names - silent)}"
