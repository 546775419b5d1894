"""The sidecars' rendered arguments and environment, given to the real `ethwatch` binary: it must
accept them (a wrong flag or value fails at start with a message naming it) and serve /healthz
and /metrics. Only the listen address is moved to a free loopback port; the node it polls is absent,
so /readyz stays 503, as it does in a pod until the client answers."""

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import by_kind, render, tool

SCENARIOS = ["default-values", "multi-participant-values", "monitoring-off-values"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


@pytest.mark.parametrize("scenario_name", SCENARIOS)
def test_sidecar_starts_with_the_rendered_flags(scenario_name, tmp_path):
    binary = tool("ETHWATCH_BIN")
    for sts in by_kind(render(scenario_name), "StatefulSet"):
        side = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "ethwatch"]
        if not side:
            continue
        c = side[0]
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ETHWATCH_", "OTEL_"))}
        for e in c["env"]:
            env[e["name"]] = e.get("value", "test-" + e["name"].lower())  # downward API stand-ins
        env["ETHWATCH_WEB_LISTEN_ADDRESS"] = f"127.0.0.1:{port}"
        args = [a.replace("--volume.path=/data", f"--volume.path={tmp_path}") for a in c["args"]]
        log = open(tmp_path / "log", "w+")
        proc = subprocess.Popen([binary, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline, status = time.time() + 15, None
            while time.time() < deadline and proc.poll() is None:
                try:
                    status, _ = get(f"http://127.0.0.1:{port}/healthz")
                    break
                except OSError:
                    time.sleep(0.1)
            log.seek(0)
            assert proc.poll() is None, f"{sts['metadata']['name']}: ethwatch {args} exited:\n{log.read()}"
            assert status == 200
            code, body = get(f"http://127.0.0.1:{port}/metrics")
            assert code == 200 and "ethwatch_build_info" in body
            assert get(f"http://127.0.0.1:{port}/readyz")[0] == 503
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            log.close()
