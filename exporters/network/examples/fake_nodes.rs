//! A stand-in for many nodes, for the network watcher's scale benchmark (`scripts/bench-network.sh`).
//! It is not a node: it answers `POST /n/<i>` with the JSON-RPC a watcher asks an execution node
//! (latest block, eth_syncing, a block by number), every path sharing one chain that grows one
//! block per second. One process on one port stands in for N nodes without N processes.
//!
//! Usage: `cargo run --release -p ethwatch-network --example fake_nodes -- 127.0.0.1:0`
//! (prints the bound address on stdout).

use std::time::{SystemTime, UNIX_EPOCH};

use ethwatch_testkit::jsonrpc;
use serde_json::{Value, json};

fn head_number() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        - 1_700_000_000
}

fn block(n: u64) -> Value {
    let hash = |n: u64| format!("0x{:064x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    json!({
        "number": format!("{n:#x}"), "hash": hash(n), "parentHash": hash(n.saturating_sub(1)),
        "timestamp": format!("{:#x}", 1_700_000_000 + n), "gasUsed": "0x0", "gasLimit": "0x1c9c380",
        "baseFeePerGas": "0x7", "transactions": []
    })
}

fn answer(req: &Value) -> Value {
    let result = match req["method"].as_str() {
        Some("eth_syncing") => json!(false),
        Some("eth_getBlockByNumber") => match req["params"][0].as_str() {
            Some("latest") | None => block(head_number()),
            Some(n) => block(u64::from_str_radix(n.trim_start_matches("0x"), 16).unwrap_or(0)),
        },
        _ => return jsonrpc::error(req, -32601, "not here"),
    };
    jsonrpc::result(req, result)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    // The test kit's JSON-RPC server: every path answers, batches call by call.
    println!("{}", jsonrpc::serve_on(&addr, answer).await?);
    std::future::pending().await
}
