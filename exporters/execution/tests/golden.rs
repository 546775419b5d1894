//! Golden test: recorded real responses in, `/metrics` exposition out, compared with the checked-in
//! `golden/execution.prom` and linted with `promtool check metrics`.
//!
//! Regenerate the golden file with `ETHWATCH_BLESS=1 cargo test -p ethwatch-execution --test golden`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ethwatch_testkit::{golden, jsonrpc};
use serde_json::Value;

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
        Some(r) => jsonrpc::result(req, r.clone()),
        None => jsonrpc::error(req, -32601, "the method does not exist"),
    }
}

/// Volatile series: their values depend on time or machine speed (request counts grow with every
/// poll: only the series are kept).
const VOLATILE: [&str; 7] = [
    "process_",
    "ethwatch_http_open_connections",
    "ethwatch_collector_duration_seconds",
    "ethwatch_collector_last_success_timestamp_seconds",
    "eth_el_head_age_seconds",
    "eth_el_rpc_request_duration_seconds",
    "eth_el_rpc_requests_total",
];

#[tokio::test]
async fn fixtures_in_exposition_out() {
    let answers = answers();
    let node = jsonrpc::serve(move |call| answer(&answers, call)).await;
    let exp = ethwatch_testkit::execution(&[
        "--rpc-url",
        &node,
        "--poll-interval",
        "100ms",
        "--expected-block-interval",
        "12s",
    ])
    .await;
    // Wait for every collector to have succeeded once.
    let text = golden::wait_collectors(
        &exp.base,
        &["head", "finality", "sync", "peers", "txpool", "info"],
        10,
    )
    .await;
    exp.token.cancel();
    // The classic text format (as scraped by curl, without Accept) is linted by promtool, then
    // compared.
    golden::check(
        env!("CARGO_MANIFEST_DIR"),
        "execution.prom",
        &text,
        &VOLATILE,
    );
}
