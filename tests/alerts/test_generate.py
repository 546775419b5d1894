"""The generator: checked-in rules match the configuration, and bad configuration fails loudly."""

from __future__ import annotations

import sys

import pytest
import yaml

from common import ALERTS, E2E_OVERLAY, GENERATE, RULES, alert_rules, promtool, run


def generate(*args) -> "subprocess.CompletedProcess":  # noqa: F821
    return run([sys.executable, str(GENERATE), *map(str, args)])


def test_checked_in_rules_match_config_and_templates():
    r = generate("--check", "--out", RULES)
    assert r.returncode == 0, (
        "alerts/rules/ is stale: run `python3 alerts/generate.py` and commit the result\n"
        + r.stdout + r.stderr
    )


def test_every_template_alert_is_configured_and_rendered():
    cfg = yaml.safe_load((ALERTS / "config.yaml").read_text())
    rendered = {r["alert"] for r in alert_rules()}
    assert rendered == set(cfg["alerts"])  # all enabled by default


@pytest.mark.parametrize(
    "overlay, message",
    [
        ("alerts: {EthwatchExecutionLowPeers: {min_peer: 3}}", "unknown key 'alerts.EthwatchExecutionLowPeers.min_peer'"),
        ("alerts: {EthwatchExecutionLowPeers: {min_peers: three}}", "'alerts.EthwatchExecutionLowPeers.min_peers' must be a number"),
        ("alerts: {EthwatchExecutionNodeDown: {for: 2 minutes}}", "is not a Prometheus duration"),
        ("selector: {ethwatch: ''}", "unknown key 'selector'"),
        ("alerts: {EthwatchNoSuchAlert: {for: 1m}}", "unknown key 'alerts.EthwatchNoSuchAlert'"),
    ],
)
def test_bad_overlay_fails_naming_the_key(tmp_path, overlay, message):
    f = tmp_path / "overlay.yaml"
    f.write_text(overlay)
    r = generate("--overlay", f, "--out", tmp_path / "rules")
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr


def test_overlay_changes_thresholds_and_drops_disabled_alerts(tmp_path):
    f = tmp_path / "single-node.yaml"
    f.write_text(
        "selectors: {ethwatch: 'namespace=\"devnet\"'}\n"
        "alerts:\n"
        "  EthwatchExecutionLowPeers: {enabled: false}\n"
        "  EthwatchConsensusLowPeers: {enabled: false}\n"
        "  EthwatchExecutionBlockProductionStopped: {intervals: 8, for: 30s}\n"
    )
    out = tmp_path / "rules"
    r = generate("--overlay", f, "--out", out)
    assert r.returncode == 0, r.stderr
    rules = {x["alert"]: x for x in alert_rules(out)}
    assert "EthwatchExecutionLowPeers" not in rules and "EthwatchConsensusLowPeers" not in rules
    bp = rules["EthwatchExecutionBlockProductionStopped"]
    assert bp["for"] == "30s"
    assert '> 8 * eth_el_expected_block_interval_seconds{namespace="devnet"}' in bp["expr"]
    assert "more than 8 expected block intervals" in bp["annotations"]["description"]
    # A selector fills into matchers that have other labels too.
    assert 'eth_cl_peers{state="connected", namespace="devnet"}' not in str(rules)  # disabled
    assert 'eth_el_reorg_depth_bucket{le="2.0", namespace="devnet"}' in rules["EthwatchExecutionDeepReorg"]["expr"]
    c = run([promtool(), "check", "rules", *map(str, sorted(out.glob("*.yaml")))])
    assert c.returncode == 0, c.stdout + c.stderr


def test_e2e_overlay_renders_valid_rules(tmp_path):
    out = tmp_path / "rules"
    r = generate("--overlay", E2E_OVERLAY, "--out", out)
    assert r.returncode == 0, r.stderr
    c = run([promtool(), "check", "rules", *map(str, sorted(out.glob("*.yaml")))])
    assert c.returncode == 0, c.stdout + c.stderr


def test_any_alert_can_be_disabled(tmp_path):
    """`enabled` is a key of every alert (config.yaml sets it only where it is the usual choice),
    so an overlay, or the chart's values, can leave out any alert."""
    f = tmp_path / "overlay.yaml"
    f.write_text("alerts: {EthwatchExecutionBlockProductionStopped: {enabled: false}}\n")
    out = tmp_path / "rules"
    r = generate("--overlay", f, "--out", out)
    assert r.returncode == 0, r.stderr
    names = {x["alert"] for x in alert_rules(out)}
    assert "EthwatchExecutionBlockProductionStopped" not in names
    assert "EthwatchExecutionNodeDown" in names


def test_chart_is_in_sync_with_the_generator(tmp_path):
    """`--chart DIR --check` (what scripts/sync-chart.sh --check runs) passes on the checked-in
    chart; tests/chart/test_alerts.py renders it and compares the rules with the generator's."""
    r = generate("--chart", ALERTS.parent / "charts" / "eth-enclave", "--check")
    assert r.returncode == 0, r.stdout + r.stderr
