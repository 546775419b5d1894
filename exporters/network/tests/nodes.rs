//! The network watcher against real nodes: anvil for agreement and disagreement, Lodestar for
//! the beacon side. Tools come from `scripts/test.sh` (ETHWATCH_ANVIL, ETHWATCH_LODESTAR).

use ethwatch_network::Running;
use ethwatch_testkit::{Anvil, Exporter, Lodestar, free_port, network, val as v};

/// The watcher polling every 300 ms with a 500 ms request timeout, and these flags.
async fn watcher(args: &[&str]) -> Exporter<Running> {
    let mut argv = vec!["--poll-interval", "300ms", "--request-timeout", "500ms"];
    argv.extend_from_slice(args);
    network(&argv).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_nodes_agree_and_disagree() {
    let node_a = Anvil::start_with(&["--accounts", "10"]);
    let a = node_a.url();
    let node_b = Anvil::start_with(&["--accounts", "3"]);
    let b = node_b.url();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let exp = watcher(&[
        "--execution-target",
        &format!("a1={a}"),
        "--execution-target",
        &format!("a2={a}"),
        "--execution-target",
        &format!("b1={b}"),
        "--execution-target",
        &format!("dead={dead}"),
    ])
    .await;
    let s = exp
        .wait_for(10, "three nodes up and compared", |s| {
            v(
                s,
                "eth_network_nodes",
                &[("layer", "execution"), ("state", "up")],
            ) == Some(3.0)
                && v(s, "eth_network_common_height", &[("layer", "execution")])
                    .is_some_and(|h| h >= 1.0)
        })
        .await;
    // Two targets on one chain agree with each other; the other chain is a split.
    assert_eq!(
        v(&s, "eth_network_distinct_heads", &[("layer", "execution")]),
        Some(2.0)
    );
    assert_eq!(
        v(
            &s,
            "eth_network_node_on_majority_chain",
            &[("layer", "execution"), ("node", "a1")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            &s,
            "eth_network_node_on_majority_chain",
            &[("layer", "execution"), ("node", "a2")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            &s,
            "eth_network_node_on_majority_chain",
            &[("layer", "execution"), ("node", "b1")]
        ),
        Some(0.0)
    );
    assert_eq!(
        v(
            &s,
            "eth_network_node_on_majority_chain",
            &[("layer", "execution"), ("node", "dead")]
        ),
        None
    );
    assert_eq!(
        v(
            &s,
            "eth_network_nodes",
            &[("layer", "execution"), ("state", "down")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            &s,
            "eth_network_node_up",
            &[("layer", "execution"), ("node", "dead")]
        ),
        Some(0.0)
    );
    assert!(
        v(
            &s,
            "eth_network_request_errors_total",
            &[("node", "dead"), ("kind", "connect")]
        )
        .is_some_and(|c| c >= 1.0)
    );
    assert!(v(&s, "eth_network_head_spread", &[("layer", "execution")]).is_some_and(|x| x <= 3.0));
    assert_eq!(
        v(&s, "eth_network_targets", &[("layer", "execution")]),
        Some(4.0)
    );
    assert!(
        v(
            &s,
            "eth_network_request_duration_seconds_count",
            &[("node", "a1"), ("call", "eth_getBlockByNumber")]
        )
        .is_some_and(|c| c >= 1.0)
    );
    exp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_chain_seen_twice_agrees() {
    let node_a = Anvil::start_with(&["--accounts", "10"]);
    let a = node_a.url();
    let exp = watcher(&[
        "--execution-target",
        &format!("x={a}"),
        "--execution-target",
        &format!("y={a}"),
    ])
    .await;
    let s = exp
        .wait_for(10, "two nodes compared", |s| {
            v(s, "eth_network_distinct_heads", &[("layer", "execution")]).is_some()
        })
        .await;
    assert_eq!(
        v(&s, "eth_network_distinct_heads", &[("layer", "execution")]),
        Some(1.0)
    );
    assert_eq!(
        v(
            &s,
            "eth_network_node_on_majority_chain",
            &[("layer", "execution"), ("node", "x")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            &s,
            "eth_network_node_on_majority_chain",
            &[("layer", "execution"), ("node", "y")]
        ),
        Some(1.0)
    );
    assert!(v(&s, "eth_network_head_spread", &[("layer", "execution")]).is_some_and(|x| x <= 1.0));
    assert_eq!(
        reqwest::get(format!("{}/readyz", exp.base))
            .await
            .expect("readyz")
            .status()
            .as_u16(),
        200
    );
    exp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacon_nodes_agree_and_report_finality() {
    let lodestar = Lodestar::dev();
    let url = lodestar.url();
    let exp = watcher(&[
        "--beacon-target",
        &format!("cl-a={url}"),
        "--beacon-target",
        &format!("cl-b={url}"),
    ])
    .await;
    let s = exp
        .wait_for(60, "beacon heads compared past slot 2", |s| {
            v(s, "eth_network_common_height", &[("layer", "consensus")]).is_some_and(|h| h >= 2.0)
        })
        .await;
    assert_eq!(
        v(
            &s,
            "eth_network_nodes",
            &[("layer", "consensus"), ("state", "up")]
        ),
        Some(2.0)
    );
    assert_eq!(
        v(&s, "eth_network_distinct_heads", &[("layer", "consensus")]),
        Some(1.0)
    );
    assert_eq!(
        v(
            &s,
            "eth_network_node_on_majority_chain",
            &[("layer", "consensus"), ("node", "cl-a")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(&s, "eth_network_finalized_epoch", &[("stat", "min")]),
        v(&s, "eth_network_finalized_epoch", &[("stat", "max")])
    );
    assert!(v(&s, "eth_network_finalized_epoch", &[("stat", "min")]).is_some());
    assert!(
        v(
            &s,
            "eth_network_request_duration_seconds_count",
            &[
                ("node", "cl-a"),
                ("call", "/eth/v1/beacon/headers/{block_id}")
            ]
        )
        .is_some_and(|c| c >= 1.0)
    );
    exp.stop().await;
}
