//! Integration tests against a real node: anvil, installed by `scripts/tools.sh` and found through
//! `ETHWATCH_ANVIL` (set by `scripts/test.sh`). Without it these tests fail, they never skip.

use std::time::{Duration, Instant};

use ethwatch_testkit::scrape::Sample;
use ethwatch_testkit::{Anvil, execution, hex, rpc, val};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_real_node_and_survives_its_death() {
    let mut anvil = Anvil::start();
    let url = anvil.url();
    let ws = url.replace("http://", "ws://");
    let exp = execution(&[
        &format!("--rpc-url={url}"),
        &format!("--ws-url={ws}"),
        "--poll-interval=250ms",
        "--streaming-poll-interval=1s",
        "--rpc-timeout=500ms",
        "--ready-intervals=4",
        "--volume.path=/tmp",
        "--volume.interval=1s",
    ])
    .await;

    // Head, chain id, client.
    let s = exp
        .wait_for(10, "a head", |s| {
            val(s, "eth_el_head_block_number", &[]).is_some_and(|v| v >= 2.0)
        })
        .await;
    let node_head = hex(&rpc(&url, "eth_blockNumber", json!([])).await) as f64;
    let ours = val(&s, "eth_el_head_block_number", &[]).expect("head");
    assert!(
        (node_head - ours).abs() <= 1.0,
        "node {node_head} vs exporter {ours}"
    );
    assert_eq!(val(&s, "eth_el_chain_id", &[]), Some(31337.0));
    assert_eq!(val(&s, "eth_el_network_id", &[]), Some(31337.0));
    assert_eq!(
        val(&s, "eth_el_client_info", &[("client", "anvil")]),
        Some(1.0)
    );
    assert_eq!(val(&s, "eth_el_up", &[]), Some(1.0));
    assert_eq!(val(&s, "eth_el_syncing", &[]), Some(0.0));
    assert_eq!(exp.status("/readyz").await, 200);
    assert_eq!(exp.status("/healthz").await, 200);
    let size = val(&s, "ethwatch_volume_size_bytes", &[("path", "/tmp")]).expect("volume size");
    let avail =
        val(&s, "ethwatch_volume_available_bytes", &[("path", "/tmp")]).expect("volume available");
    assert!(
        size > 0.0 && avail <= size,
        "statvfs of /tmp: {avail} of {size}"
    );
    assert!(
        reqwest::get(format!("{}/", exp.base))
            .await
            .expect("landing")
            .text()
            .await
            .expect("t")
            .contains("/metrics")
    );

    // Block rate: about N blocks in N seconds, intervals of about 1 s.
    let b0 = val(&s, "eth_el_blocks_total", &[]).expect("blocks");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = exp.scrape().await;
    let grown = val(&s, "eth_el_blocks_total", &[]).expect("blocks") - b0;
    assert!(
        (4.0..=6.0).contains(&grown),
        "{grown} blocks in 5 s at 1 s block time"
    );
    let count = val(&s, "eth_el_block_interval_seconds_count", &[]).expect("count");
    let sum = val(&s, "eth_el_block_interval_seconds_sum", &[]).expect("sum");
    assert!(
        count >= 4.0 && (sum / count - 1.0).abs() < 0.25,
        "mean interval {}",
        sum / count
    );
    assert_eq!(
        val(&s, "eth_el_expected_block_interval_seconds", &[]),
        Some(1.0)
    );
    assert!(val(&s, "eth_el_block_arrival_delay_seconds_count", &[]).is_some_and(|c| c >= 3.0));
    assert_eq!(val(&s, "eth_el_subscription_connected", &[]), Some(1.0));
    // While subscribed, one poll cycle per --streaming-poll-interval (1 s), not per tick
    // (250 ms); /readyz stays ready between cycles.
    let calls = |s: &[Sample]| {
        val(
            s,
            "eth_el_rpc_request_duration_seconds_count",
            &[("method", "eth_syncing")],
        )
        .unwrap_or(0.0)
    };
    let c0 = calls(&s);
    for _ in 0..8 {
        assert_eq!(exp.status("/readyz").await, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let polled = calls(&exp.scrape().await) - c0;
    assert!(
        (3.0..=6.0).contains(&polled),
        "{polled} poll cycles in 4 s while subscribed (16 at every tick)"
    );
    assert_eq!(val(&s, "eth_el_reorgs_total", &[]), Some(0.0));

    // Peers: anvil has no net_peerCount. Absent, collector failing, no error storm.
    assert_eq!(val(&s, "eth_el_peers", &[]), None);
    assert_eq!(
        val(&s, "ethwatch_collector_success", &[("collector", "peers")]),
        Some(0.0)
    );
    assert_eq!(
        val(
            &s,
            "eth_el_rpc_errors_total",
            &[("method", "net_peerCount"), ("kind", "rpc_error")]
        ),
        Some(1.0),
        "net_peerCount must be probed once, not every poll"
    );

    // A transaction shows in the pending pool until mined.
    rpc(&url, "evm_setIntervalMining", json!([0])).await;
    rpc(&url, "evm_setAutomine", json!([false])).await;
    let accounts = rpc(&url, "eth_accounts", json!([])).await;
    let from = accounts[0].as_str().expect("account").to_string();
    let to = accounts[1].as_str().expect("account").to_string();
    rpc(
        &url,
        "eth_sendTransaction",
        json!([{"from": from, "to": to, "value": "0x1"}]),
    )
    .await;
    exp.wait_for(5, "one pending transaction", |s| {
        val(s, "eth_el_txpool_transactions", &[("status", "pending")]) == Some(1.0)
    })
    .await;

    // Mining stopped: head age grows.
    let a1 = val(&exp.scrape().await, "eth_el_head_age_seconds", &[]).expect("age");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a2 = val(&exp.scrape().await, "eth_el_head_age_seconds", &[]).expect("age");
    assert!(
        a2 >= a1 + 1.5,
        "head age must grow while mining is stopped: {a1} then {a2}"
    );

    // Mine it: the pool empties and the head block carries it.
    rpc(&url, "evm_mine", json!([])).await;
    let s = exp
        .wait_for(5, "the transaction mined", |s| {
            val(s, "eth_el_txpool_transactions", &[("status", "pending")]) == Some(0.0)
                && val(s, "eth_el_head_transactions", &[]) == Some(1.0)
        })
        .await;
    assert!(val(&s, "eth_el_head_gas_used", &[]).is_some_and(|g| g >= 21000.0));
    rpc(&url, "evm_setIntervalMining", json!([1])).await;
    let head_before_kill = exp
        .wait_for(5, "mining again", |s| {
            val(s, "eth_el_head_age_seconds", &[]).is_some_and(|a| a < 2.0)
        })
        .await;
    let head_before_kill = val(&head_before_kill, "eth_el_head_block_number", &[]).expect("head");

    // Kill the node: up 0, connect errors counted, last values served, not ready.
    let requests =
        |s: &[Sample]| val(s, "eth_el_rpc_requests_total", &[("method", "batch")]).unwrap_or(0.0);
    let requests_before = requests(&exp.scrape().await);
    anvil.kill();
    let s = exp
        .wait_for(5, "eth_el_up 0", |s| val(s, "eth_el_up", &[]) == Some(0.0))
        .await;
    // Each refused request is one error (under method="batch"), not one per call in it. The
    // poll is sequential, so at most one request counted before the kill was still in flight
    // when the node died and fails after it: its error is counted, its request was not.
    let refused = val(
        &s,
        "eth_el_rpc_errors_total",
        &[("method", "batch"), ("kind", "connect")],
    )
    .unwrap_or(0.0);
    assert!(
        refused >= 1.0 && refused <= requests(&s) - requests_before + 1.0,
        "{refused} connect errors for {} requests since the kill (+1 in flight)",
        requests(&s) - requests_before
    );
    assert_eq!(
        val(
            &s,
            "eth_el_rpc_errors_total",
            &[("method", "eth_getBlockByNumber"), ("kind", "connect")]
        ),
        None,
        "a refused batch is not an error of each of its methods"
    );
    // Every collector is blind, info included (it is polled only every --info-interval).
    for c in ["head", "info", "sync", "txpool", "finality"] {
        assert_eq!(
            val(&s, "ethwatch_collector_success", &[("collector", c)]),
            Some(0.0),
            "collector {c} while the node is down"
        );
    }
    assert!(
        val(&s, "eth_el_head_block_number", &[]).is_some_and(|v| v >= head_before_kill),
        "last value kept"
    );
    assert_eq!(
        val(&s, "ethwatch_collector_success", &[("collector", "head")]),
        Some(0.0)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while exp.status("/readyz").await != 503 {
        assert!(
            Instant::now() < deadline,
            "/readyz must turn 503 while the node is down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Restart on the same port: everything recovers within about one interval.
    let _anvil2 = Anvil::start_on(anvil.port);
    let t = Instant::now();
    let s = exp
        .wait_for(5, "recovery", |s| {
            val(s, "eth_el_up", &[]) == Some(1.0)
                && val(s, "ethwatch_collector_success", &[("collector", "head")]) == Some(1.0)
        })
        .await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "recovered after {:?}",
        t.elapsed()
    );
    assert_eq!(val(&s, "eth_el_chain_id", &[]), Some(31337.0));
    // A fresh chain restarts at a low height: that is a reorg to a shorter chain, or an
    // unresolvable jump; either way the head follows the new node.
    exp.wait_for(5, "head follows the new node", |s| {
        val(s, "eth_el_head_block_number", &[]).is_some_and(|v| v < head_before_kill)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while exp.status("/readyz").await != 200 {
        assert!(Instant::now() < deadline, "/readyz must return to 200");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    exp.wait_for(35, "subscription reconnected", |s| {
        val(s, "eth_el_subscription_connected", &[]) == Some(1.0)
    })
    .await;

    exp.drain().await;
}

/// The block `number` as the node has it: (transactions, gas used).
async fn block_values(url: &str, number: u64) -> (f64, f64) {
    let b = rpc(
        url,
        "eth_getBlockByNumber",
        json!([format!("{number:#x}"), false]),
    )
    .await;
    (
        b["transactions"].as_array().expect("transactions").len() as f64,
        hex(&b["gasUsed"]) as f64,
    )
}

/// Sends `n` plain transfers (mining stopped, they wait in the pool).
async fn send_transfers(url: &str, n: usize) {
    let accounts = rpc(url, "eth_accounts", json!([])).await;
    let from = accounts[0].as_str().expect("account").to_string();
    let to = accounts[1].as_str().expect("account").to_string();
    for _ in 0..n {
        rpc(
            url,
            "eth_sendTransaction",
            json!([{"from": from, "to": to, "value": "0x1"}]),
        )
        .await;
    }
}

/// A `newHeads` endpoint shaped like geth's: anvil's notifications carry the block's transaction
/// list, geth's (the header only) do not, and that is where a subscribed exporter went wrong. This
/// relay subscribes nobody upstream: it watches anvil's head over HTTP and announces each new
/// block as a header without `transactions`, the way geth does. Returns the ws URL.
async fn geth_shaped_new_heads(anvil_url: String) -> String {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let anvil_url = anvil_url.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(sock).await else {
                    return;
                };
                // The subscribe request, answered with a subscription id.
                let Some(Ok(_)) = ws.next().await else { return };
                let ok = r#"{"jsonrpc":"2.0","id":1,"result":"0x9c"}"#;
                if ws.send(Message::text(ok)).await.is_err() {
                    return;
                }
                let mut last = hex(&rpc(&anvil_url, "eth_blockNumber", json!([])).await);
                loop {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let head = hex(&rpc(&anvil_url, "eth_blockNumber", json!([])).await);
                    for n in last + 1..=head {
                        let mut b = rpc(
                            &anvil_url,
                            "eth_getBlockByNumber",
                            json!([format!("{n:#x}"), false]),
                        )
                        .await;
                        let obj = b.as_object_mut().expect("block object");
                        for field in ["transactions", "uncles", "size", "totalDifficulty"] {
                            obj.remove(field);
                        }
                        let note = json!({
                            "jsonrpc": "2.0",
                            "method": "eth_subscription",
                            "params": {"subscription": "0x9c", "result": b},
                        });
                        if ws.send(Message::text(note.to_string())).await.is_err() {
                            return;
                        }
                    }
                    last = head;
                }
            });
        }
    });
    format!("ws://127.0.0.1:{port}")
}

/// With `--ws-url`, a newHeads notification (geth's) carries no transaction list: every value
/// exported for the head must still come from the block whose number is shown, at every scrape,
/// the pool is read with it, and the transactions of every new block are counted once in
/// eth_el_transactions_total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_heads_carry_their_own_block_values() {
    ethwatch_core::upstream::install_crypto();
    let anvil = Anvil::start();
    let url = anvil.url();
    rpc(&url, "evm_setIntervalMining", json!([0])).await;
    rpc(&url, "evm_setAutomine", json!([false])).await;
    let ws = geth_shaped_new_heads(url.clone()).await;
    // The poll runs rarely while subscribed: what the exporter shows between heads comes from
    // the subscription path.
    let exp = execution(&[
        &format!("--rpc-url={url}"),
        &format!("--ws-url={ws}"),
        "--poll-interval=250ms",
        "--streaming-poll-interval=60s",
    ])
    .await;
    let s = exp
        .wait_for(10, "subscribed with a head", |s| {
            val(s, "eth_el_subscription_connected", &[]) == Some(1.0)
                && val(s, "eth_el_head_block_number", &[]).is_some()
        })
        .await;
    let tx0 = val(&s, "eth_el_transactions_total", &[]).unwrap_or(0.0);
    // Let the poll loop settle on the streaming interval (its last fast tick may be pending).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A transaction with a nonce gap stays queued through every block.
    let accounts = rpc(&url, "eth_accounts", json!([])).await;
    let gap = json!([{"from": accounts[2], "to": accounts[1], "value": "0x1", "nonce": "0x5"}]);
    rpc(&url, "eth_sendTransaction", gap).await;
    let mut sent = 0.0;
    for n in [3usize, 0, 5] {
        send_transfers(&url, n).await;
        rpc(&url, "evm_mine", json!([])).await;
        let number = hex(&rpc(&url, "eth_blockNumber", json!([])).await);
        let (txs, gas) = block_values(&url, number).await;
        assert_eq!(txs, n as f64, "the node mined the block as sent");
        sent += txs;
        let pool = rpc(&url, "txpool_status", json!([])).await;
        let (pending, queued) = (hex(&pool["pending"]) as f64, hex(&pool["queued"]) as f64);
        // Every scrape that shows the new number shows its block's values.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = 0;
        while seen < 5 {
            assert!(
                Instant::now() < deadline,
                "head {number} not shown within 5 s"
            );
            let s = exp.scrape().await;
            if val(&s, "eth_el_head_block_number", &[]) == Some(number as f64) {
                seen += 1;
                assert_eq!(
                    (
                        val(&s, "eth_el_head_transactions", &[]),
                        val(&s, "eth_el_head_gas_used", &[])
                    ),
                    (Some(txs), Some(gas)),
                    "block {number}: the values shown must be that block's"
                );
                // The pool is read with the block.
                assert_eq!(
                    (
                        val(&s, "eth_el_txpool_transactions", &[("status", "pending")]),
                        val(&s, "eth_el_txpool_transactions", &[("status", "queued")])
                    ),
                    (Some(pending), Some(queued)),
                    "txpool read with head {number}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let s = exp.scrape().await;
    assert_eq!(
        val(&s, "eth_el_transactions_total", &[]).map(|t| t - tx0),
        Some(sent),
        "each new block's transactions counted once"
    );
    exp.stop().await;
}

/// A reorg to a lower height (anvil's evm_revert to a snapshot, then a different block at the
/// next height): eth_el_blocks_total grows by the chain's height gain, never counting a height
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_to_a_lower_height_counts_no_height_twice() {
    ethwatch_core::upstream::install_crypto();
    let anvil = Anvil::start();
    let url = anvil.url();
    rpc(&url, "evm_setIntervalMining", json!([0])).await;
    rpc(&url, "evm_setAutomine", json!([false])).await;
    let exp = execution(&["--rpc-url", &url, "--poll-interval", "200ms"]).await;
    let h0 = hex(&rpc(&url, "eth_blockNumber", json!([])).await);
    let s = exp
        .wait_for(10, "the head", |s| {
            val(s, "eth_el_head_block_number", &[]) == Some(h0 as f64)
        })
        .await;
    let b0 = val(&s, "eth_el_blocks_total", &[]).expect("blocks");
    let t0 = val(&s, "eth_el_transactions_total", &[]).unwrap_or(0.0);

    let snapshot = rpc(&url, "evm_snapshot", json!([])).await;
    send_transfers(&url, 2).await;
    rpc(&url, "anvil_mine", json!(["0xa"])).await;
    exp.wait_for(10, "ten blocks", |s| {
        val(s, "eth_el_head_block_number", &[]) == Some((h0 + 10) as f64)
    })
    .await;
    // Back to h0, then another block at h0 + 1 (a different transaction makes it differ).
    assert_eq!(
        rpc(&url, "evm_revert", json!([snapshot])).await,
        json!(true)
    );
    send_transfers(&url, 1).await;
    rpc(&url, "evm_mine", json!([])).await;
    let s = exp
        .wait_for(10, "the reorg to h0 + 1", |s| {
            val(s, "eth_el_head_block_number", &[]) == Some((h0 + 1) as f64)
        })
        .await;
    assert_eq!(val(&s, "eth_el_reorgs_total", &[]), Some(1.0));
    assert_eq!(val(&s, "eth_el_reorg_depth_sum", &[]), Some(10.0));
    // The chain grows again through heights counted before, to h0 + 12.
    rpc(&url, "anvil_mine", json!(["0xb"])).await;
    let s = exp
        .wait_for(10, "h0 + 12", |s| {
            val(s, "eth_el_head_block_number", &[]) == Some((h0 + 12) as f64)
        })
        .await;
    assert_eq!(
        val(&s, "eth_el_blocks_total", &[]).map(|b| b - b0),
        Some(12.0),
        "12 heights above h0, each counted once"
    );
    // Transactions: the two of the first h0 + 1 (the one replacing it at that height is not
    // added).
    assert_eq!(
        val(&s, "eth_el_transactions_total", &[]).map(|t| t - t0),
        Some(2.0)
    );
    exp.stop().await;
}
