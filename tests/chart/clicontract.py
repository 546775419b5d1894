"""A client's command line checked against its recorded CLI contract (tests/chart/fixtures/cli/).

A contract is the data of one clap command as the client declares it at one release: every flag, its
short form and aliases, whether it takes a value and in which format, which pairs conflict, which
flags need others, which are required. `check(argv, contract)` parses an argv the way clap does for
these flags and returns every problem it finds (an empty list: the client accepts the line):
unknown flags, a value given to a flag that takes none, a missing or malformed value, a flag given
twice that may be given once, a conflicting pair, a missing required or required-by flag.
"""

import ipaddress
import re
from pathlib import Path
from urllib.parse import urlparse

import yaml

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cli"

HEX = re.compile(r"^[0-9a-fA-F]+$")
HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
ENODE = re.compile(r"^enode://[0-9a-fA-F]{128}@(?P<host>[^:/?]+):(?P<port>\d+)(\?discport=\d+)?$")
ENR = re.compile(r"^enr:-[A-Za-z0-9_-]+$")
PEER_ID = re.compile(r"^(16Uiu2|12D3Koo|Qm)[1-9A-HJ-NP-Za-km-z]+$")
MULTIADDR = re.compile(r"^/(ip4|ip6|dns|dns4|dns6)/[^/]+/(tcp|udp)/\d+(/quic-v1)?(/p2p/[1-9A-HJ-NP-Za-km-z]+)?$")
BUILTIN_CHAINS = {"mainnet", "sepolia", "holesky", "hoodi", "dev"}


def load(name):
    """The contract in fixtures/cli/<name>.yaml, with an alias -> flag index."""
    contract = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())
    index, shorts = {}, {}
    for flag, spec in contract["flags"].items():
        index[flag] = flag
        for alias in spec.get("aliases", []):
            index[alias] = flag
        if "short" in spec:
            shorts[spec["short"]] = flag
    contract["_index"], contract["_shorts"] = index, shorts
    return contract


def _port(v):
    return v.isdigit() and 0 <= int(v) <= 65535


def _ip(v, version=None):
    try:
        ip = ipaddress.ip_address(v)
    except ValueError:
        return False
    return version is None or ip.version == version


def _url(v):
    u = urlparse(v)
    return u.scheme in ("http", "https") and bool(u.hostname) and (u.port is None or _port(str(u.port)))


def _peer(v):
    m = ENODE.match(v)
    if m:
        host = m.group("host")
        return (_ip(host) or bool(HOSTNAME.match(host))) and _port(m.group("port"))
    return bool(ENR.match(v))


def _items(v):
    items = v.split(",")
    return items if all(items) else None


def value_error(kind, v, spec):
    """None when `v` is a valid value of this kind, else why not."""
    if v == "" and kind != "string":
        return "an empty value"
    ok = True
    if kind == "path":
        ok = "\n" not in v
    elif kind == "port":
        ok = _port(v)
    elif kind == "uint":
        ok = v.isdigit()
    elif kind == "ip":
        ok = _ip(v)
    elif kind == "ipv4":
        ok = _ip(v, 4)
    elif kind == "ipv6":
        ok = _ip(v, 6)
    elif kind == "host":
        ok = _ip(v) or bool(HOSTNAME.match(v))
    elif kind == "socket":
        host, _, port = v.rpartition(":")
        ok = _port(port) and (host == "" or _ip(host.strip("[]")) or host == "localhost")
    elif kind == "url":
        ok = _url(v)
    elif kind == "url-list":
        ok = (items := _items(v)) is not None and all(_url(i) for i in items)
    elif kind == "address":
        ok = v.startswith("0x") and len(v) == 42 and bool(HEX.match(v[2:]))
    elif kind == "hex32":
        h = v[2:] if v.startswith("0x") else v
        ok = len(h) == 64 and bool(HEX.match(h))
    elif kind == "enum":
        ok = v in spec["values"]
    elif kind in ("enum-list", "modules"):
        ok = (items := _items(v)) is not None and all(i in spec["values"] for i in items)
    elif kind == "nat":
        ok = v in ("any", "none", "upnp", "publicip") or (v.startswith("extip:") and _ip(v[6:]))
    elif kind == "chain":
        ok = v in BUILTIN_CHAINS or v.startswith("/")
    elif kind == "peer-list":
        ok = (items := _items(v)) is not None and all(_peer(i) for i in items)
    elif kind == "enr-or-multiaddr-list":
        ok = (items := _items(v)) is not None and all(ENR.match(i) or MULTIADDR.match(i) for i in items)
    elif kind == "multiaddr-list":
        ok = (items := _items(v)) is not None and all(MULTIADDR.match(i) for i in items)
    elif kind == "peer-id-list":
        ok = (items := _items(v)) is not None and all(PEER_ID.match(i) for i in items)
    elif kind == "string":
        ok = v != ""
    else:
        raise ValueError(f"unknown value kind {kind!r} in a CLI fixture")
    return None if ok else f"{v!r} is not a valid {kind}"


def check(argv, contract):
    """Problems with `argv` (the client's argv after the binary name) under `contract`."""
    errors = []
    command = contract["command"]
    if argv[: len(command)] != command:
        return [f"expected the subcommand {' '.join(command)}, got {argv[:len(command)]}"]
    seen = {}
    args = list(argv[len(command):])
    i = 0
    while i < len(args):
        tok = args[i]
        i += 1
        if tok.startswith("--"):
            name, eq, inline = tok[2:].partition("=")
            flag = contract["_index"].get(name)
            if flag is None:
                errors.append(f"unknown flag --{name}")
                continue
        elif tok.startswith("-") and len(tok) > 1:
            chars = tok[1:]
            flag = contract["_shorts"].get(chars[0])
            if flag is None:
                errors.append(f"unknown flag -{chars[0]}")
                continue
            spec = contract["flags"][flag]
            if spec.get("count"):
                if set(chars) != {chars[0]}:
                    errors.append(f"bad short flags {tok}")
                seen[flag] = seen.get(flag, 0) + len(chars)
                continue
            eq, inline = ("=", chars[1:].lstrip("=")) if len(chars) > 1 else ("", "")
        else:
            errors.append(f"unexpected argument {tok!r}")
            continue
        spec = contract["flags"][flag]
        kind = spec.get("value")
        values = []
        if kind is None:
            if eq:
                errors.append(f"--{flag} takes no value, got {inline!r}")
        elif eq:
            values.append(inline)
        elif spec.get("optional_value") and (i >= len(args) or args[i].startswith("-")):
            pass
        elif i < len(args) and not args[i].startswith("--"):
            values.append(args[i])
            i += 1
        else:
            errors.append(f"--{flag} needs a value")
        for v in values:
            problem = value_error(kind, v, spec)
            if problem:
                errors.append(f"--{flag}: {problem}")
        seen[flag] = seen.get(flag, 0) + 1
        limit = spec.get("multiple", 1)
        if limit is not True and seen[flag] > limit and not spec.get("count"):
            errors.append(f"--{flag} given {seen[flag]} times (at most {limit})")
    for flag in contract.get("required", []):
        if flag not in seen:
            errors.append(f"the required flag --{flag} is missing")
    for a, b in contract.get("conflicts", []):
        if a in seen and b in seen:
            errors.append(f"--{a} cannot be used with --{b}")
    for flag, needs in (contract.get("requires") or {}).items():
        if flag not in seen:
            continue
        for need in needs:
            options = need if isinstance(need, list) else [need]
            if not any(o in seen for o in options):
                errors.append(f"--{flag} requires --{' or --'.join(options)}")
    return errors
