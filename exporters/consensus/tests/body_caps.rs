//! Answers larger than the body cap (issue 15, item 5): a validator list over
//! `--beacon-max-body-bytes` is not fetched again every slot but backs off by epochs (counted as
//! `too_large` each time it is tried), and the peer list is cut at what `--peers.list-max`
//! entries can take, so that flag, not the general body cap, bounds its memory.

use std::time::Duration;

use ethwatch_testkit::beacon::live_chain as chain;
use ethwatch_testkit::beacon::{FakeBeacon, Reply, api_errors, healthy};
use ethwatch_testkit::consensus;
use ethwatch_testkit::mem::hwm_kib;

const VALIDATORS: &str = "/eth/v1/beacon/states/head/validators";

fn too_large(s: &[ethwatch_core::exposition::Sample], route: &str) -> Option<f64> {
    api_errors(s, route, "too_large")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_validator_list_is_not_fetched_every_slot() {
    let fake = FakeBeacon::start().await;
    let (genesis, slot) = chain();
    fake.set_all(healthy(genesis, slot));
    // About 300 KB of validators against a 64 KiB cap.
    fake.set(
        VALIDATORS,
        Reply::Repeat {
            prefix: r#"{"data":["#.into(),
            item:
                r#"{"index":"0","balance":"32000000000","status":"active_ongoing","validator":{}}"#
                    .into(),
            count: 4000,
            suffix: "]}".into(),
        },
    );
    let exp = consensus(
        &fake.url,
        &[
            "--poll-interval",
            "200ms",
            "--beacon-max-body-bytes",
            "65536",
            "--collector.events=false",
        ],
    )
    .await;
    exp.wait_for(15, "the first too_large", |s| {
        too_large(s, "/eth/v1/beacon/states/{state_id}/validators").is_some()
    })
    .await;
    let first = fake.requests(VALIDATORS);
    // Half an epoch (8 slots of 2 s): a per-slot retry would fetch it about 4 more times.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let later = fake.requests(VALIDATORS);
    assert!(
        later <= first,
        "the oversized list was fetched {} more times within half an epoch",
        later - first
    );
    exp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_list_max_bounds_the_memory_of_the_peer_list() {
    let fake = FakeBeacon::start().await;
    let (genesis, slot) = chain();
    fake.set_all(healthy(genesis, slot));
    let peer = r#"{"peer_id":"16Uiu2HAmQbfsHYsJaxKRjFE3CVBqb5pWLQKEbKfRUPZZAXgjzjGQ","enr":"enr:-IS4QHCYrYZbAKWCBRlAy5zzaDZXJBGkcnh4MHcBFZntXNFrdvJjX04jRzjzCBOonrkTfj499SZuOh8R33Ls8RRcy5wBgmlkgnY0gmlwhH8AAAGJc2VjcDI1NmsxoQPKY0yuDUmstAHYpMa2_oxVtw0RW_QAdpzBQA8yWM0xOIN1ZHCCdl8","last_seen_p2p_address":"/ip4/7.7.7.7/tcp/4242/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N","state":"connected","direction":"inbound"}"#;
    // The node says 10 peers but lists 200,000 (about 80 MB); the general cap would allow 96 MiB.
    fake.set(
        "/eth/v1/node/peer_count",
        Reply::Body(
            200,
            r#"{"data":{"disconnected":"0","connecting":"0","connected":"10","disconnecting":"0"}}"#
                .into(),
        ),
    );
    fake.set(
        "/eth/v1/node/peers",
        Reply::Repeat {
            prefix: r#"{"data":["#.into(),
            item: peer.into(),
            count: 200_000,
            suffix: "]}".into(),
        },
    );
    let before = hwm_kib();
    let exp = consensus(
        &fake.url,
        &[
            "--peers-interval",
            "1s",
            "--peers.list-max",
            "10",
            "--beacon-max-body-bytes",
            "100663296",
            "--collector.validators=false",
            "--collector.events=false",
        ],
    )
    .await;
    exp.wait_for(20, "the peer list flagged too large", |s| {
        too_large(s, "/eth/v1/node/peers").is_some()
    })
    .await;
    let grown_mib = hwm_kib().saturating_sub(before) as f64 / 1024.0;
    eprintln!(
        "peer list of 200,000 entries, --peers.list-max 10: peak RSS grew {grown_mib:.1} MiB"
    );
    assert!(
        grown_mib < 16.0,
        "peak memory grew by {grown_mib:.1} MiB for a list capped at 10 entries"
    );
    exp.stop().await;
}
