"""The real `ethwatch` binary run with a rendered container's arguments and environment
(test_sidecar_binary.py, test_apiserver.py): only its listener moves to a free loopback port."""

import os
import subprocess
import time
import urllib.error
import urllib.request

from conftest import tool


def get(url):
    """(status, body) of a GET; an HTTP error status is an answer, a refused connection raises."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def rendered_env(c, port, drop=("ETHWATCH_", "OTEL_"), **extra):
    """The container's environment on this machine: none of this machine's variables that start
    with one of `drop`, the container's own (a downward API value stands in as test-<name>), the
    web listener on 127.0.0.1:<port>, then `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    for e in c["env"]:
        env[e["name"]] = e.get("value", "test-" + e["name"].lower())
    env["ETHWATCH_WEB_LISTEN_ADDRESS"] = f"127.0.0.1:{port}"
    env.update(extra)
    return env


class Ethwatch:
    """`ethwatch <args>` with its output in the file `log`; stopped with SIGTERM by stop() or at the
    end of a `with` block, after which `returncode` is its exit status."""

    def __init__(self, args, env, log):
        self.args, self.log = args, log
        self._out = open(log, "w")
        self.proc = subprocess.Popen([tool("ETHWATCH_BIN"), *args], env=env, stdout=self._out,
                                     stderr=subprocess.STDOUT)
        self.returncode = None

    def text(self):
        return self.log.read_text()

    def wait_serving(self, probe, what=""):
        """Polls probe() for 15 s until it answers (does not raise OSError) and returns its answer
        (None if it never did); fails when the binary has exited."""
        deadline, answer = time.time() + 15, None
        while time.time() < deadline and self.proc.poll() is None:
            try:
                answer = probe()
                break
            except OSError:
                time.sleep(0.1)
        assert self.proc.poll() is None, f"{what}ethwatch {self.args} exited:\n{self.text()}"
        return answer

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        """SIGTERM; returns the exit status."""
        self.proc.terminate()
        self.returncode = self.proc.wait(timeout=10)
        self._out.close()
        return self.returncode
