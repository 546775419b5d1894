"""The CLI contract: every client container of every ci/ scenario starts with a command line its
client accepts. Reth and Lighthouse cannot run here, so their command lines are checked against
their CLIs as recorded in fixtures/cli/ (the flags, value formats, conflicts and requirements each
client declares at the image tag the chart defaults to; each fixture names its source); geth and
Prysm run here, so test_cli_real.py checks theirs against the real binaries. The argv is
the real one: the container's start script run with a stub binary, after the real bootnode init
container wrote its flags, for node 0 of a new network, node 0 restarting into a running one, and a
node joining (clicontract.py parses it the way clap does)."""

import pytest
import yaml

from clicontract import FIXTURES, check, load
from conftest import CHART, expected_participants, one, render, values
from nodeshell import DOWN, NOWHERE, UP, NodeServer, bootnode_init, start_argv

# (component, container) -> the fixture of its command, and the client image value it belongs to.
CONTRACTS = {
    ("execution", "reth"): ("reth-node", "reth"),
    ("beacon", "lighthouse"): ("lighthouse-beacon_node", "lighthouse"),
    ("validator", "lighthouse"): ("lighthouse-validator_client", "lighthouse"),
}
BINARY = {"reth": "reth", "lighthouse": "lighthouse"}


@pytest.fixture(scope="module")
def running():
    server = NodeServer()
    yield server.port
    server.close()


def test_each_fixture_is_for_the_image_tag_the_chart_defaults_to():
    """Bumping a client image without refreshing its recorded CLI fails here."""
    v = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    annotated = {i["name"]: i["image"] for i in yaml.safe_load(chart["annotations"]["artifacthub.io/images"])}
    for name, image_value in CONTRACTS.values():
        c = load(name)
        default = v["clientImages"][image_value]
        assert default == f"{c['image']}:{c['tag']}", (
            f"clientImages.{image_value} is {default} but fixtures/cli/{name}.yaml records the CLI of "
            f"{c['image']}:{c['tag']}: refresh the fixture from the new release's CLI")
        assert annotated[image_value] == default, "Chart.yaml's artifacthub.io/images disagrees with values.yaml"
        assert c["source"]["repository"] and c["source"]["commit"], f"{name}: the fixture must name its source"


def test_every_fixture_is_covered():
    assert sorted(p.stem for p in FIXTURES.glob("*.yaml")) == sorted(n for n, _ in CONTRACTS.values())


# The checker itself, on the mistakes it exists to catch (and on lines the clients accept).
@pytest.mark.parametrize("name,argv,problem", [
    ("lighthouse-validator_client",
     ["validator_client", "--datadir=/d", "--validators-dir=/k", "--secrets-dir=/s"],
     "--validators-dir cannot be used with --datadir"),
    ("lighthouse-beacon_node", ["beacon_node", "--http-port=5052"], "the required flag --execution-endpoint is missing"),
    ("lighthouse-beacon_node", ["beacon_node", "--execution-endpoint=http://e:8551", "--http-port=5052"],
     "--http-port requires --http or --gui or --staking"),
    ("lighthouse-beacon_node", ["beacon_node", "--execution-endpoints=http://e:8551", "--metrics-port=x", "--metrics"],
     "--metrics-port: 'x' is not a valid port"),
    ("lighthouse-beacon_node", ["beacon_node", "--execution-endpoint=http://e:8551", "--http=true"],
     "--http takes no value"),
    ("lighthouse-beacon_node", ["beacon_node", "--execution-endpoint=http://e:8551", "--no-such-flag"],
     "unknown flag --no-such-flag"),
    ("lighthouse-beacon_node", ["beacon_node", "--execution-endpoint=http://e:8551", "--debug-level=loud"],
     "--debug-level: 'loud' is not a valid enum"),
    ("reth-node", ["node", "--p2p-secret-key=/k", "--p2p-secret-key-hex=" + "ab" * 32],
     "--p2p-secret-key cannot be used with --p2p-secret-key-hex"),
    ("reth-node", ["node", "--disable-discovery", "--disable-discv4-discovery"],
     "--disable-discovery cannot be used with --disable-discv4-discovery"),
    ("reth-node", ["node", "--bootnodes=enode://nothex@1.2.3.4:30303"], "is not a valid peer-list"),
    ("reth-node", ["node", "--http.api=eth,nonsense"], "is not a valid modules"),
    ("reth-node", ["node", "--metrics=9001x"], "is not a valid socket"),
    ("reth-node", ["node", "--port=30303", "--port=30304"], "--port given 2 times"),
    ("reth-node", ["node", "--full", "--minimal"], "--full cannot be used with --minimal"),
])
def test_the_checker_finds_what_the_clients_refuse(name, argv, problem):
    errors = check(argv, load(name))
    assert any(problem in e for e in errors), errors


@pytest.mark.parametrize("name,argv", [
    ("reth-node", ["node", "-vvv", "--metrics=0.0.0.0:9001", "--nat=extip:10.0.0.1", "-d", "--http.api=eth,net",
                   "--trusted-peers=enode://" + "ab" * 64 + "@node-0.svc.cluster.local:30303"]),
    ("lighthouse-beacon_node", ["beacon_node", "--execution-endpoints=http://e:8551", "--jwt-secrets=/j",
                                "--http", "--http-port=5052", "--log-color", "--debug-level", "debug"]),
    ("lighthouse-validator_client", ["validator_client", "--beacon-nodes=http://a:5052,http://b:5052",
                                     "--validators-dir=/k", "--secrets-dir=/s", "--builder-proposals"]),
])
def test_the_checker_accepts_lines_the_clients_accept(name, argv):
    assert check(argv, load(name)) == []


def client_pods(scenario):
    """(StatefulSet, container, contract name, ordinals) of every client container of a scenario."""
    docs = render(scenario)
    for sts in [d for d in docs if d["kind"] == "StatefulSet"]:
        component = sts["metadata"]["labels"]["app.kubernetes.io/component"]
        for c in sts["spec"]["template"]["spec"]["containers"]:
            key = (component, c["name"])
            if key in CONTRACTS:
                n = sts["spec"]["replicas"]
                yield sts, c["name"], CONTRACTS[key][0], sorted({0, n - 1})


def test_every_client_container_parses_against_its_cli(scenario, running, tmp_path):
    v = values(scenario)
    checked = 0
    node0 = {p["el"]: p for p in expected_participants(scenario)[:1]}
    node0.update({p["cl"]: p for p in expected_participants(scenario)[:1]})
    for sts, container, name, ordinals in client_pods(scenario):
        contract = load(name)
        layer = {"execution": "el", "beacon": "cl"}.get(sts["metadata"]["labels"]["app.kubernetes.io/component"])
        port = {"el": v["execution"]["ports"]["rpc"], "cl": v["beacon"]["ports"]["http"]}.get(layer)
        for ordinal in ordinals:
            cases = [{}]
            if layer:
                if ordinal == 0 and sts["metadata"]["name"] in node0:
                    # node 0: a new network (nobody answers), then restarting into a running one
                    cases = [{layer: bootnode_init(sts, 0, tmp_path, running, layer, port, NOWHERE, (DOWN,))[0]},
                             {layer: bootnode_init(sts, 0, tmp_path, running, layer, port, NOWHERE, (UP,))[0]}]
                else:
                    cases = [{layer: bootnode_init(sts, ordinal, tmp_path, running, layer, port, UP, (DOWN,))[0]}]
            for bootnodes in cases:
                argv, _ = start_argv(sts, container, ordinal, tmp_path, bootnodes, BINARY[container])
                errors = check(argv, contract)
                assert not errors, (f"{sts['metadata']['name']}-{ordinal} {container} ({bootnodes}) does not parse "
                                    f"against fixtures/cli/{name}.yaml: {errors}\nargv: {argv}")
                checked += 1
    # geth and Prysm containers are checked against the real binaries (test_cli_real.py)
    recorded = [sts for sts in render(scenario) if sts["kind"] == "StatefulSet"
                and sts["metadata"]["labels"].get("eth-enclave/client") in BINARY]
    assert checked >= min(3, len(recorded)), "no client container was checked"
