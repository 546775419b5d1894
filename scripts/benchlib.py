"""What the Python benchmarks (scripts/soak.py, scripts/bench-listener.py) share: loopback ports,
one raw HTTP GET, and a process's memory and file descriptors from /proc. Imported from the
script's own directory; the standard library only."""

import os
import socket
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, secs=20):
    """True once something accepts on 127.0.0.1:<port>, False after `secs`."""
    end = time.monotonic() + secs
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def http_get(port, path="/metrics", timeout=5):
    """The raw answer (status line, headers, body) to GET <path>; b"" on a socket error."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        return data
    except OSError:
        return b""


def proc_mem(pid):
    """VmRSS and VmHWM of a process in KiB (0 when it is gone)."""
    out = {"VmRSS": 0, "VmHWM": 0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in out:
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def fds(pid):
    """Open file descriptors of a process (-1 when it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1
