//! Pairing: a beacon node's head execution block against its paired execution node's head.
//! Real clients cannot show it here (the Lodestar dev chain has no execution payload), so the
//! fake nodes of the exporters' own tests stand in: the beacon fake's head block at slot S
//! carries execution block 1000 + S.

#[path = "../../consensus/tests/support/fake.rs"]
mod cl_fake;
#[path = "../../execution/tests/support/mod.rs"]
mod el_support;

use std::time::{Duration, Instant};

use clap::Parser;
use ethwatch_core::exposition::{self, Sample};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ethwatch_network::NetworkArgs,
}

async fn wait_for(base: &str, what: &str, cond: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = reqwest::get(format!("{base}/metrics"))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        let s = exposition::parse(&text);
        if cond(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the watcher polling every 300 ms with these target and pair flags; returns it, its
/// shutdown token and its base URL.
async fn watcher(flags: &[String]) -> (ethwatch_network::Running, CancellationToken, String) {
    let mut argv = vec![
        "t".to_string(),
        "--web.listen-address".into(),
        "127.0.0.1:0".into(),
        "--poll-interval".into(),
        "300ms".into(),
    ];
    argv.extend_from_slice(flags);
    let cli = Cli::try_parse_from(argv).expect("args");
    let token = CancellationToken::new();
    let r = ethwatch_network::start(cli.args, token.clone())
        .await
        .expect("start");
    let base = format!("http://{}", r.addr);
    (r, token, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beacon_node_and_its_execution_node_are_compared() {
    ethwatch_core::upstream::install_crypto();
    let el = el_support::FakeNode::start(100).await;
    let cl = cl_fake::FakeBeacon::start().await;
    let slot = 50;
    cl.set_all(cl_fake::healthy(
        ethwatch_core::unix_now() as u64 - 100,
        slot,
    ));
    let (r, token, base) = watcher(&[
        "--execution-target".into(),
        format!("el-1={}", el.url()),
        "--beacon-target".into(),
        format!("cl-1={}", cl.url),
        "--pair".into(),
        "el-1=cl-1".into(),
    ])
    .await;

    // The execution node is at 100, the beacon node's head says 1050: a mismatch of 950 blocks.
    let s = wait_for(&base, "a pair mismatch", |s| {
        exposition::value(s, "eth_network_pair_mismatch", &[("node", "cl-1")]) == Some(1.0)
    })
    .await;
    assert_eq!(
        exposition::value(&s, "eth_network_pair_distance_blocks", &[("node", "cl-1")]),
        Some(-950.0)
    );
    assert_eq!(
        exposition::value(&s, "eth_network_finalized_epoch", &[("stat", "min")]),
        Some(1.0)
    );

    // The execution node catches up to within the tolerance: no mismatch.
    el.mine(949);
    let s = wait_for(&base, "the pair to agree", |s| {
        exposition::value(s, "eth_network_pair_mismatch", &[("node", "cl-1")]) == Some(0.0)
    })
    .await;
    assert_eq!(
        exposition::value(&s, "eth_network_pair_distance_blocks", &[("node", "cl-1")]),
        Some(-1.0)
    );
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), r.task).await;
}

/// A node that says it is syncing is counted as syncing but left out of the comparison: it does
/// not drag the common height back to its head, widen the finalized range or make its pair a
/// mismatch (a new node catching up would otherwise raise finality and pair alerts, and hide a
/// split at the tip until it has caught up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syncing_node_is_counted_but_not_compared() {
    ethwatch_core::upstream::install_crypto();
    let el = el_support::FakeNode::start(100).await;
    let genesis = ethwatch_core::unix_now() as u64 - 100;
    let synced = cl_fake::FakeBeacon::start().await;
    synced.set_all(cl_fake::healthy(genesis, 50));
    let syncing = cl_fake::FakeBeacon::start().await;
    syncing.set_all(cl_fake::healthy(genesis, 10));
    syncing.set(
        "/eth/v1/node/syncing",
        cl_fake::Reply::Body(
            200,
            r#"{"data":{"head_slot":"10","sync_distance":"40","is_syncing":true,"is_optimistic":false,"el_offline":false}}"#.into(),
        ),
    );
    let r0 = cl_fake::root(0);
    syncing.set(
        "/eth/v1/beacon/states/head/finality_checkpoints",
        cl_fake::Reply::Body(
            200,
            format!(r#"{{"data":{{"previous_justified":{{"epoch":"0","root":"{r0}"}},"current_justified":{{"epoch":"0","root":"{r0}"}},"finalized":{{"epoch":"0","root":"{r0}"}}}}}}"#),
        ),
    );
    let (r, token, base) = watcher(&[
        "--execution-target".into(),
        format!("el-1={}", el.url()),
        "--beacon-target".into(),
        format!("cl-1={}", syncing.url),
        "--beacon-target".into(),
        format!("cl-2={}", synced.url),
        "--pair".into(),
        "el-1=cl-1".into(),
    ])
    .await;
    let s = wait_for(&base, "one syncing and one up beacon node", |s| {
        exposition::value(
            s,
            "eth_network_nodes",
            &[("layer", "consensus"), ("state", "syncing")],
        ) == Some(1.0)
            && exposition::value(
                s,
                "eth_network_nodes",
                &[("layer", "consensus"), ("state", "up")],
            ) == Some(1.0)
    })
    .await;
    // Compared: only the node in sync, at its own head.
    assert_eq!(
        exposition::value(&s, "eth_network_common_height", &[("layer", "consensus")]),
        Some(50.0)
    );
    assert_eq!(
        exposition::value(&s, "eth_network_finalized_epoch", &[("stat", "min")]),
        Some(1.0),
        "the syncing node's finalized epoch 0 is not in the range"
    );
    // Its head is still reported, and its pair (1010 against 100) is not a mismatch.
    assert_eq!(
        exposition::value(
            &s,
            "eth_network_node_head",
            &[("layer", "consensus"), ("node", "cl-1")]
        ),
        Some(10.0)
    );
    assert_eq!(
        exposition::value(&s, "eth_network_pair_mismatch", &[("node", "cl-1")]),
        None
    );
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), r.task).await;
}
