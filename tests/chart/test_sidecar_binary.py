"""The sidecars' and the network watcher's rendered arguments and environment, given to the real
`ethwatch` binary: it must accept them (a wrong flag or value fails at start with a message naming
it). Only the listen address is moved to a free loopback port.

- A sidecar serves /healthz and /metrics; the node it polls is absent, so /readyz stays 503, as it
  does in a pod until the client answers.
- The watcher (`--kubernetes.discovery`) with no Kubernetes configuration at all (no in-cluster
  variables, no kubeconfig) exits at once with a message naming the flag; with an API server that
  does not answer it starts, serves /healthz and /metrics, and logs the failed pod watch (which it
  retries). test_apiserver.py runs it against a real API server with its ServiceAccount's token."""

import subprocess
import time
import urllib.error
import urllib.request

import pytest

import yaml

from binary import Ethwatch, get, rendered_env
from conftest import RELEASE, by_kind, one, render, tool
from e2e.stack import free_port

SCENARIOS = ["default-values", "multi-participant-values", "monitoring-off-values"]


@pytest.mark.parametrize("scenario_name", SCENARIOS)
def test_sidecar_starts_with_the_rendered_flags(scenario_name, tmp_path):
    tool("ETHWATCH_BIN")
    for sts in by_kind(render(scenario_name), "StatefulSet"):
        side = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "ethwatch"]
        if not side:
            continue
        c = side[0]
        port = free_port()
        args = [a.replace("--volume.path=/data", f"--volume.path={tmp_path}") for a in c["args"]]
        with Ethwatch(args, rendered_env(c, port), tmp_path / "log") as ew:
            status = ew.wait_serving(lambda: get(f"http://127.0.0.1:{port}/healthz")[0],
                                     f"{sts['metadata']['name']}: ")
            assert status == 200
            code, body = get(f"http://127.0.0.1:{port}/metrics")
            assert code == 200 and "ethwatch_build_info" in body
            assert get(f"http://127.0.0.1:{port}/readyz")[0] == 503


def watcher_container(scenario_name):
    docs = render(scenario_name)
    dep = one(docs, "Deployment", f"{RELEASE}-eth-enclave-network")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c


def watcher_env(c, port, home):
    """The rendered environment and nothing of the Kubernetes client's own configuration from this
    machine (no ~/.kube/config either)."""
    return rendered_env(c, port, drop=("ETHWATCH_", "OTEL_", "KUBERNETES_", "KUBECONFIG"), HOME=str(home))


@pytest.mark.parametrize("scenario_name", SCENARIOS)
def test_network_watcher_without_kubernetes_fails_at_start(scenario_name, tmp_path):
    c = watcher_container(scenario_name)
    port = free_port()
    started = time.time()
    proc = subprocess.run([tool("ETHWATCH_BIN"), *c["args"]], env=watcher_env(c, port, tmp_path),
                          capture_output=True, text=True, timeout=30)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"ethwatch {c['args']} ran without any Kubernetes API:\n{out}"
    assert time.time() - started < 15, "it should fail at once, not hang"
    assert "--kubernetes.discovery" in out and "no Kubernetes API access" in out, out
    assert "panicked" not in out, out
    # it never listened
    with pytest.raises(OSError):
        get(f"http://127.0.0.1:{port}/healthz")


@pytest.mark.parametrize("scenario_name", SCENARIOS)
def test_network_watcher_serves_while_the_api_server_is_unreachable(scenario_name, tmp_path):
    c = watcher_container(scenario_name)
    port, dead = free_port(), free_port()  # nothing listens on `dead`
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": f"https://127.0.0.1:{dead}", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "t", "user": {"token": "x"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
    }))
    env = watcher_env(c, port, tmp_path)
    env["KUBECONFIG"] = str(kubeconfig)
    with Ethwatch(c["args"], env, tmp_path / "log") as ew:
        assert ew.wait_serving(lambda: get(f"http://127.0.0.1:{port}/healthz")[0]) == 200
        code, body = get(f"http://127.0.0.1:{port}/metrics")
        assert code == 200 and "ethwatch_build_info" in body
        # discovery found nothing: no node is polled, none is reported
        assert "eth_network_node_up{" not in body
        deadline = time.time() + 10
        while time.time() < deadline:
            text = ew.text()
            if "pod watch failed" in text:
                break
            time.sleep(0.2)
        assert "pod watch failed" in text, text
        assert f"app.kubernetes.io/instance={RELEASE}" in text, "the log names the selector"
        assert ew.proc.poll() is None, "a failing watch must not stop the watcher"
    assert ew.returncode == 0, "SIGTERM is a clean shutdown"


def test_sidecars_serve_tls_and_basic_auth_from_the_rendered_web_config(tmp_path):
    """monitoring.webConfig, end to end with the real binary: the web config file the chart writes
    (its Secret), a certificate where the chart mounts the TLS Secret, and the sidecar's rendered
    flags. /metrics needs https and the user's password; the kubelet probes as rendered (HTTPS, not
    verified, no credentials) pass; plain HTTP gets no answer."""
    import base64
    import ssl
    docs = render("web-config-values")
    web = one(docs, "Secret", f"{RELEASE}-eth-enclave-web-config")["stringData"]["web-config.yml"]
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ethwatch",
                    "-addext", "subjectAltName=DNS:ethwatch.devnet.svc,IP:127.0.0.1",
                    "-keyout", str(tls / "tls.key"), "-out", str(tls / "tls.crt")], check=True, capture_output=True)
    (tmp_path / "web-config.yml").write_text(web.replace("/etc/ethwatch/tls/", f"{tls}/"))
    sts = next(d for d in by_kind(docs, "StatefulSet") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "beacon")
    c = next(x for x in sts["spec"]["template"]["spec"]["containers"] if x["name"] == "ethwatch")
    port = free_port()
    args = [a.replace("--volume.path=/data", f"--volume.path={tmp_path}")
             .replace("/etc/ethwatch/web/", f"{tmp_path}/") for a in c["args"]]
    assert f"--web.config.file={tmp_path}/web-config.yml" in args
    unverified = ssl.create_default_context()
    unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE  # as kubelet probes
    verified = ssl.create_default_context(cafile=str(tls / "tls.crt"))  # as Prometheus with the CA

    def fetch(path, ctx, auth=None):
        req = urllib.request.Request(f"https://127.0.0.1:{port}{path}")
        if auth:
            req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""

    with Ethwatch(args, rendered_env(c, port), tmp_path / "log") as ew:
        ew.wait_serving(lambda: fetch("/healthz", unverified))
        for probe, want in ((c["livenessProbe"], 200), (c["readinessProbe"], 503)):  # no node: not ready
            assert probe["httpGet"]["scheme"] == "HTTPS"
            assert fetch(probe["httpGet"]["path"], unverified)[0] == want
        assert fetch("/metrics", verified)[0] == 401
        assert fetch("/metrics", verified, "prometheus:wrong")[0] == 401
        code, body = fetch("/metrics", verified, "prometheus:scrape-secret")
        assert code == 200 and "ethwatch_build_info" in body
        import http.client
        with pytest.raises((OSError, http.client.HTTPException)):  # a TLS alert, no HTTP answer
            get(f"http://127.0.0.1:{port}/metrics")
