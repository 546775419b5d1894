//! Golden test: recorded real responses (Lodestar 1.5.1) and the spec's examples in, `/metrics`
//! exposition out, compared with the checked-in `golden/consensus.prom` and linted with
//! `promtool check metrics`.
//!
//! Regenerate the golden file with `ETHWATCH_BLESS=1 cargo test -p ethwatch-consensus --test golden`.

use ethwatch_testkit::beacon::{FakeBeacon, Reply, Stream};
use ethwatch_testkit::golden;
use std::path::{Path, PathBuf};

fn fixture(rel: &str) -> String {
    let p: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_in_exposition_out() {
    let fake = FakeBeacon::start().await;
    let ok = |rel: &str| Reply::Body(200, fixture(rel));
    let lodestar = "lodestar-1.5.1";
    fake.set(
        "/eth/v1/beacon/genesis",
        ok(&format!("{lodestar}/beacon_genesis.json")),
    );
    fake.set(
        "/eth/v1/config/spec",
        ok(&format!("{lodestar}/config_spec.json")),
    );
    fake.set(
        "/eth/v1/node/syncing",
        ok(&format!("{lodestar}/node_syncing.json")),
    );
    fake.set("/eth/v1/node/health", Reply::Body(200, String::new()));
    fake.set(
        "/eth/v1/node/version",
        ok(&format!("{lodestar}/node_version.json")),
    );
    fake.set(
        "/eth/v1/node/peer_count",
        ok("beacon-APIs/node_peer_count.json"),
    );
    fake.set("/eth/v1/node/peers", ok("beacon-APIs/node_peers.json"));
    fake.set(
        "/eth/v1/beacon/states/head/finality_checkpoints",
        ok(&format!("{lodestar}/finality_checkpoints.json")),
    );
    fake.set(
        "/eth/v1/beacon/headers/head",
        ok(&format!("{lodestar}/header_head.json")),
    );
    let header: serde_json::Value =
        serde_json::from_str(&fixture(&format!("{lodestar}/header_head.json"))).expect("json");
    let root = header["data"]["root"].as_str().expect("root");
    fake.set(
        &format!("/eth/v2/beacon/blocks/{root}"),
        ok(&format!("{lodestar}/block_v2_altair.json")),
    );
    fake.set(
        "/eth/v1/beacon/states/head/validators",
        ok(&format!("{lodestar}/validators.json")),
    );
    fake.set(
        "/eth/v1/beacon/rewards/attestations/*",
        ok("beacon-APIs/rewards_attestations.json"),
    );
    fake.stream(Stream::Status(404));

    golden::check_consensus(&fake.url, env!("CARGO_MANIFEST_DIR"), "consensus.prom").await;
}
