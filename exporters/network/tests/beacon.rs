//! The watcher against beacon nodes that answer as real ones do, where no real node here does on
//! demand (an empty slot at the common height): the consensus exporter's fake beacon node.

#[path = "../../consensus/tests/support/fake.rs"]
mod fake;

use std::time::{Duration, Instant};

use clap::Parser;
use ethwatch_core::exposition::{self, Sample};
use fake::{FakeBeacon, healthy};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ethwatch_network::NetworkArgs,
}

async fn scrape(base: &str) -> Vec<Sample> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    exposition::parse(&text)
}

fn v(s: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition::value(s, name, labels)
}

/// The watcher compares nodes at the lowest head; a node whose chain has no block at that slot
/// answers 404 for its header. That is the expected answer (compared as an empty slot), not a
/// request error: an alert on the error counter must not fire on a healthy chain with missed
/// slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_slot_is_not_a_request_error() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let genesis = now - 200;
    let low = FakeBeacon::start().await;
    low.set_all(healthy(genesis, 50));
    // Head at 52; no block at slot 50 (unknown paths answer 404).
    let high = FakeBeacon::start().await;
    high.set_all(healthy(genesis, 52));
    let cli = Cli::try_parse_from([
        "t",
        "--web.listen-address",
        "127.0.0.1:0",
        "--poll-interval",
        "200ms",
        "--beacon-target",
        &format!("low={}", low.url),
        "--beacon-target",
        &format!("high={}", high.url),
    ])
    .expect("args");
    let token = CancellationToken::new();
    let r = ethwatch_network::start(cli.args, token.clone())
        .await
        .expect("start");
    let base = format!("http://{}", r.addr);
    let route = "/eth/v1/beacon/headers/{block_id}";
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = scrape(&base).await;
        let asked = v(
            &s,
            "eth_network_request_duration_seconds_count",
            &[("node", "high"), ("call", route)],
        )
        .unwrap_or(0.0);
        // Every cycle asks `high` for its head and for slot 50: a few cycles.
        if v(&s, "eth_network_common_height", &[("layer", "consensus")]) == Some(50.0)
            && asked >= 6.0
        {
            break s;
        }
        assert!(Instant::now() < deadline, "no comparison at slot 50");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(high.requests("/eth/v1/beacon/headers/50") >= 2);
    let errors: Vec<&Sample> = s
        .iter()
        .filter(|x| x.name == "eth_network_request_errors_total" && x.label("node") == Some("high"))
        .collect();
    assert!(
        errors.is_empty(),
        "the 404 of an empty slot counted as an error: {errors:?}"
    );
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), r.task).await;
}
