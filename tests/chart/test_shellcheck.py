"""shellcheck over the chart's shell (charts/eth-enclave/files/scripts: the genesis and validator-keys
Jobs' steps, the validator pods' keys and the node pods' JWT init containers, the validator client's
readiness probe), as shipped: the templates load these files unchanged (.Files.Get into the Jobs'
inputs ConfigMaps, or into a container's script), so what shellcheck reads is what runs."""

import subprocess

from conftest import CHART, RELEASE, one, render, tool

SCRIPTS = sorted((CHART / "files" / "scripts").glob("*.sh"))
FULL = f"{RELEASE}-eth-enclave"


def test_the_chart_scripts_pass_shellcheck():
    assert len(SCRIPTS) >= 6
    proc = subprocess.run([tool("ETHWATCH_SHELLCHECK"), "--severity=style", "--external-sources",
                           *map(str, SCRIPTS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck_finds_a_mistake():
    """The check is real: an unquoted expansion in a copy of a script is reported."""
    text = (CHART / "files" / "scripts" / "copy-jwt.sh").read_text().replace('cp "/jwt-secret/${key}"', "cp /jwt-secret/$key")
    proc = subprocess.run([tool("ETHWATCH_SHELLCHECK"), "-s", "sh", "-"], input=text, capture_output=True, text=True)
    assert proc.returncode != 0 and "SC2086" in proc.stdout


def test_the_rendered_scripts_are_the_checked_files():
    docs = render("multi-participant-values")
    files = {p.name: p.read_text() for p in SCRIPTS}
    assert one(docs, "ConfigMap", f"{FULL}-genesis-inputs")["data"]["generate.sh"] == files["genesis.sh"]
    keys = one(docs, "ConfigMap", f"{FULL}-validator-keys-inputs")["data"]
    assert keys["derive-keys.sh"] == files["derive-keys.sh"] and keys["store-keys.sh"] == files["store-keys.sh"]
    seen = set()
    for d in docs:
        if d["kind"] != "StatefulSet":
            continue
        spec = d["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []):
            if c["name"] == "jwt":
                assert c["args"][0] == files["copy-jwt.sh"]
                seen.add("jwt")
            if c["name"] == "keys":
                assert c["args"][0] == files["validator-keys.sh"]
                seen.add("keys")
        for c in spec["containers"]:
            if "readinessProbe" in c and "exec" in c["readinessProbe"]:
                assert c["readinessProbe"]["exec"]["command"][2] == files["vc-ready.sh"]
                seen.add("ready")
    assert seen == {"jwt", "keys", "ready"}
    # The Prysm beacon pods' peering sidecar (a native sidecar: an init container that stays).
    peering = [c for d in render("geth-prysm-values") if d["kind"] == "StatefulSet"
               for c in d["spec"]["template"]["spec"].get("initContainers", []) if c["name"] == "peering"]
    assert peering and all(c["args"][0] == files["prysm-peering.sh"] for c in peering)
