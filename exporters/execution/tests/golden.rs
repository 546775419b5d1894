//! Golden test: recorded real responses in, `/metrics` exposition out, compared with the checked-in
//! `golden/execution.prom` and linted with `promtool check metrics`.
//!
//! Regenerate the golden file with `ETHWATCH_BLESS=1 cargo test -p ethwatch-execution --test golden`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The `<<` response of a `.io` fixture.
fn response(rel: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join(rel)).expect("fixture");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("<< "))
        .expect("a response line");
    serde_json::from_str(line).expect("fixture JSON")
}

/// What the fixture node answers, keyed by method and first parameter.
fn answers() -> HashMap<String, Value> {
    let mut m = HashMap::new();
    let blocks = "execution-apis/eth_getBlockByNumber";
    m.insert(
        "eth_getBlockByNumber/latest".into(),
        response(&format!("{blocks}/get-latest.io"))["result"].clone(),
    );
    m.insert(
        "eth_getBlockByNumber/finalized".into(),
        response(&format!("{blocks}/get-finalized.io"))["result"].clone(),
    );
    m.insert(
        "eth_getBlockByNumber/safe".into(),
        response(&format!("{blocks}/get-safe.io"))["result"].clone(),
    );
    m.insert(
        "eth_syncing".into(),
        response("execution-apis/eth_syncing/check-syncing.io")["result"].clone(),
    );
    m.insert(
        "txpool_status".into(),
        response("execution-apis/txpool_status/get-status.io")["result"].clone(),
    );
    m.insert(
        "eth_chainId".into(),
        response("execution-apis/eth_chainId/get-chain-id.io")["result"].clone(),
    );
    m.insert(
        "net_version".into(),
        response("execution-apis/net_version/get-network-id.io")["result"].clone(),
    );
    m.insert(
        "net_peerCount".into(),
        response("quirks/net_peerCount.io")["result"].clone(),
    );
    m.insert(
        "web3_clientVersion".into(),
        response("quirks/web3_clientVersion.io")["result"].clone(),
    );
    m
}

fn answer(answers: &HashMap<String, Value>, req: &Value) -> Value {
    let method = req["method"].as_str().unwrap_or_default();
    let key = match req["params"][0].as_str() {
        Some(p) if method == "eth_getBlockByNumber" => format!("{method}/{p}"),
        _ => method.to_string(),
    };
    match answers.get(&key) {
        Some(r) => json!({"jsonrpc": "2.0", "id": req["id"], "result": r}),
        None => {
            json!({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32601, "message": "the method does not exist"}})
        }
    }
}

/// A minimal HTTP/1.1 JSON-RPC server answering from the fixtures (single calls and batches).
async fn fixture_node() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let answers = std::sync::Arc::new(answers());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // Read one request: headers, then Content-Length bytes.
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
                    let body: Value = serde_json::from_slice(&buf[head_end..head_end + len])
                        .unwrap_or(Value::Null);
                    buf.drain(..head_end + len);
                    let out = match &body {
                        Value::Array(items) => {
                            Value::Array(items.iter().map(|r| answer(&answers, r)).collect())
                        }
                        single => answer(&answers, single),
                    };
                    let out = out.to_string();
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
    });
    format!("http://{addr}")
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ethwatch_execution::ExecutionArgs,
}

/// Values that depend on time or machine speed are replaced by `X`, and the samples of each
/// family are sorted (label sets are kept in hash maps, so their order varies); everything
/// else must match.
fn normalize(text: &str) -> String {
    let mut out = String::new();
    let mut block: Vec<String> = Vec::new();
    for line in mask(text).lines() {
        if line.starts_with('#') {
            block.sort();
            for l in block.drain(..) {
                out.push_str(&l);
                out.push('\n');
            }
            out.push_str(line);
            out.push('\n');
        } else {
            block.push(line.to_string());
        }
    }
    block.sort();
    for l in block {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn mask(text: &str) -> String {
    const VOLATILE: [&str; 7] = [
        "process_",
        "ethwatch_http_open_connections",
        "ethwatch_collector_duration_seconds",
        "ethwatch_collector_last_success_timestamp_seconds",
        "eth_el_head_age_seconds",
        "eth_el_rpc_request_duration_seconds",
        "eth_el_rpc_requests_total",
    ];
    let mut out = String::new();
    for line in text.lines() {
        let volatile = !line.starts_with('#') && VOLATILE.iter().any(|v| line.starts_with(v));
        if volatile {
            let (series, _) = line.rsplit_once(' ').expect("a sample line");
            out.push_str(series);
            out.push_str(" X\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[tokio::test]
async fn fixtures_in_exposition_out() {
    let node = fixture_node().await;
    let cli = Cli::try_parse_from([
        "t",
        "--rpc-url",
        &node,
        "--web.listen-address",
        "127.0.0.1:0",
        "--poll-interval",
        "100ms",
        "--expected-block-interval",
        "12s",
    ])
    .expect("args");
    let token = CancellationToken::new();
    let running = ethwatch_execution::start(cli.args, token.clone())
        .await
        .expect("start");
    let base = format!("http://{}", running.addr);
    // Wait for every collector to have succeeded once, then for one more full cycle so the
    // request counts are stable relative to each other.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = reqwest::get(format!("{base}/metrics"))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        let s = ethwatch_core::exposition::parse(&text);
        let all_ok = ["head", "finality", "sync", "peers", "txpool", "info"]
            .iter()
            .all(|c| {
                ethwatch_core::exposition::value(
                    &s,
                    "ethwatch_collector_success",
                    &[("collector", c)],
                ) == Some(1.0)
            });
        if all_ok {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "collectors did not all succeed:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    token.cancel();

    // The classic text format is linted by promtool (as scraped by curl, without Accept).
    let promtool = std::env::var("ETHWATCH_PROMTOOL").unwrap_or_else(|_| {
        panic!("ETHWATCH_PROMTOOL is not set: run the tests with scripts/test.sh")
    });
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), text.as_bytes())
        .expect("write");
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Request counts grow with every poll: keep only the series, not the counts.
    let normalized: String = normalize(&text);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/execution.prom");
    if std::env::var_os("ETHWATCH_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().expect("dir")).expect("mkdir");
        std::fs::write(&golden, &normalized).expect("write golden");
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(
        expected == normalized,
        "exposition differs from tests/golden/execution.prom (bless with ETHWATCH_BLESS=1 if intended):\n--- expected\n{expected}\n--- got\n{normalized}"
    );
}
