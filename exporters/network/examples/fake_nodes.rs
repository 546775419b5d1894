//! A stand-in for many nodes, for the network watcher's scale benchmark (`scripts/bench-network.sh`).
//! It is not a node: it answers `POST /n/<i>` with the JSON-RPC a watcher asks an execution node
//! (latest block, eth_syncing, a block by number), every path sharing one chain that grows one
//! block per second. One process on one port stands in for N nodes without N processes.
//!
//! Usage: `cargo run --release -p ethwatch-network --example fake_nodes -- 127.0.0.1:0`
//! (prints the bound address on stdout).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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
        _ => {
            return json!({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32601, "message": "not here"}});
        }
    };
    json!({"jsonrpc": "2.0", "id": req["id"], "result": result})
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("{}", listener.local_addr()?);
    loop {
        let (mut sock, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            loop {
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    let mut chunk = [0u8; 8192];
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let mut chunk = [0u8; 8192];
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body: Value =
                    serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
                buf.drain(..head_end + len);
                let out = match &body {
                    Value::Array(items) => Value::Array(items.iter().map(answer).collect()),
                    one => answer(one),
                }
                .to_string();
                let res = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{out}",
                    out.len()
                );
                if sock.write_all(res.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}
