//! Pairing: a beacon node's head execution block against its paired execution node's head.
//! Real clients cannot show it here (the Lodestar dev chain has no execution payload), so the
//! fake nodes of the exporters' own tests stand in: the beacon fake's head block at slot S
//! carries execution block 1000 + S.

use ethwatch_testkit::beacon::{self, FakeBeacon, Reply, healthy};
use ethwatch_testkit::jsonrpc::FakeNode;
use ethwatch_testkit::{network, val};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beacon_node_and_its_execution_node_are_compared() {
    ethwatch_core::upstream::install_crypto();
    let el = FakeNode::start(100).await;
    let cl = FakeBeacon::start().await;
    let slot = 50;
    cl.set_all(healthy(ethwatch_core::unix_now() as u64 - 100, slot));
    let exp = network(&[
        "--poll-interval=300ms",
        &format!("--execution-target=el-1={}", el.url()),
        &format!("--beacon-target=cl-1={}", cl.url),
        "--pair=el-1=cl-1",
    ])
    .await;

    // The execution node is at 100, the beacon node's head says 1050: a mismatch of 950 blocks.
    let s = exp
        .wait_for(10, "a pair mismatch", |s| {
            val(s, "eth_network_pair_mismatch", &[("node", "cl-1")]) == Some(1.0)
        })
        .await;
    assert_eq!(
        val(&s, "eth_network_pair_distance_blocks", &[("node", "cl-1")]),
        Some(-950.0)
    );
    assert_eq!(
        val(&s, "eth_network_finalized_epoch", &[("stat", "min")]),
        Some(1.0)
    );

    // The execution node catches up to within the tolerance: no mismatch.
    el.mine(949);
    let s = exp
        .wait_for(10, "the pair to agree", |s| {
            val(s, "eth_network_pair_mismatch", &[("node", "cl-1")]) == Some(0.0)
        })
        .await;
    assert_eq!(
        val(&s, "eth_network_pair_distance_blocks", &[("node", "cl-1")]),
        Some(-1.0)
    );
    exp.stop().await;
}

/// A node that says it is syncing is counted as syncing but left out of the comparison: it does
/// not drag the common height back to its head, widen the finalized range or make its pair a
/// mismatch (a new node catching up would otherwise raise finality and pair alerts, and hide a
/// split at the tip until it has caught up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syncing_node_is_counted_but_not_compared() {
    ethwatch_core::upstream::install_crypto();
    let el = FakeNode::start(100).await;
    let genesis = ethwatch_core::unix_now() as u64 - 100;
    let synced = FakeBeacon::start().await;
    synced.set_all(healthy(genesis, 50));
    let syncing = FakeBeacon::start().await;
    syncing.set_all(healthy(genesis, 10));
    syncing.set(
        "/eth/v1/node/syncing",
        Reply::Body(
            200,
            r#"{"data":{"head_slot":"10","sync_distance":"40","is_syncing":true,"is_optimistic":false,"el_offline":false}}"#.into(),
        ),
    );
    let r0 = beacon::root(0);
    syncing.set(
        "/eth/v1/beacon/states/head/finality_checkpoints",
        Reply::Body(
            200,
            format!(r#"{{"data":{{"previous_justified":{{"epoch":"0","root":"{r0}"}},"current_justified":{{"epoch":"0","root":"{r0}"}},"finalized":{{"epoch":"0","root":"{r0}"}}}}}}"#),
        ),
    );
    let exp = network(&[
        "--poll-interval=300ms",
        &format!("--execution-target=el-1={}", el.url()),
        &format!("--beacon-target=cl-1={}", syncing.url),
        &format!("--beacon-target=cl-2={}", synced.url),
        "--pair=el-1=cl-1",
    ])
    .await;
    let s = exp
        .wait_for(10, "one syncing and one up beacon node", |s| {
            val(
                s,
                "eth_network_nodes",
                &[("layer", "consensus"), ("state", "syncing")],
            ) == Some(1.0)
                && val(
                    s,
                    "eth_network_nodes",
                    &[("layer", "consensus"), ("state", "up")],
                ) == Some(1.0)
        })
        .await;
    // Compared: only the node in sync, at its own head.
    assert_eq!(
        val(&s, "eth_network_common_height", &[("layer", "consensus")]),
        Some(50.0)
    );
    assert_eq!(
        val(&s, "eth_network_finalized_epoch", &[("stat", "min")]),
        Some(1.0),
        "the syncing node's finalized epoch 0 is not in the range"
    );
    // Its head is still reported, and its pair (1010 against 100) is not a mismatch.
    assert_eq!(
        val(
            &s,
            "eth_network_node_head",
            &[("layer", "consensus"), ("node", "cl-1")]
        ),
        Some(10.0)
    );
    assert_eq!(
        val(&s, "eth_network_pair_mismatch", &[("node", "cl-1")]),
        None
    );
    exp.stop().await;
}
