//! Bad input for the network watcher: one node misbehaves in every way the sidecar tests know
//! (the same fake node, shared with the execution exporter's tests) while two good nodes are
//! still compared, the bad one is reported down with its errors counted by kind, and the cycle
//! stays within its timeout.

#[path = "../../execution/tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use clap::Parser;
use ethwatch_core::exposition::{self, Sample};
use support::{FakeNode, Mode};
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

/// The sum over every series matching the labels (errors are per call).
fn sum(s: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    s.iter()
        .filter(|x| x.name == name && labels.iter().all(|(k, val)| x.label(k) == Some(*val)))
        .map(|x| x.value)
        .sum()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_node_does_not_blind_the_watcher() {
    let good1 = FakeNode::start(100).await;
    let good2 = FakeNode::start(100).await;
    let bad = FakeNode::start(100).await;
    let cli = Cli::try_parse_from([
        "t",
        "--web.listen-address",
        "127.0.0.1:0",
        "--poll-interval",
        "300ms",
        "--request-timeout",
        "400ms",
        "--cycle-timeout",
        "2s",
        "--max-body-bytes",
        "1048576",
        "--execution-target",
        &format!("good1={}", good1.url()),
        "--execution-target",
        &format!("good2={}", good2.url()),
        "--execution-target",
        &format!("bad={}", bad.url()),
    ])
    .expect("args");
    let token = CancellationToken::new();
    let r = ethwatch_network::start(cli.args, token.clone())
        .await
        .expect("start");
    let base = format!("http://{}", r.addr);
    let rss_before = rss_kib();

    for (mode, kind) in [
        (Mode::Garbage, "decode"),
        (Mode::Status(500), "http_status"),
        (Mode::Status(429), "http_status"),
        (Mode::WrongIds, "decode"),
        (Mode::InvalidHex, "decode"),
        (Mode::BeyondU64, "decode"),
        (
            Mode::Huge {
                content_length: false,
            },
            "too_large",
        ),
        (
            Mode::Huge {
                content_length: true,
            },
            "too_large",
        ),
        (Mode::Endless, "too_large"),
        (Mode::Trickle, "timeout"),
        (Mode::Hang, "timeout"),
        (Mode::Reset, "connect"),
    ] {
        bad.set_mode(mode);
        let before = sum(
            &scrape(&base).await,
            "eth_network_request_errors_total",
            &[("node", "bad"), ("kind", kind)],
        );
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let s = scrape(&base).await;
            let errors = sum(
                &s,
                "eth_network_request_errors_total",
                &[("node", "bad"), ("kind", kind)],
            );
            let bad_down = v(
                &s,
                "eth_network_node_up",
                &[("layer", "execution"), ("node", "bad")],
            ) == Some(0.0);
            if errors > before && bad_down {
                // The good nodes are still compared and agree.
                assert_eq!(
                    v(
                        &s,
                        "eth_network_nodes",
                        &[("layer", "execution"), ("state", "up")]
                    ),
                    Some(2.0),
                    "{mode:?}"
                );
                assert_eq!(
                    v(&s, "eth_network_distinct_heads", &[("layer", "execution")]),
                    Some(1.0),
                    "{mode:?}"
                );
                assert_eq!(
                    v(
                        &s,
                        "eth_network_node_on_majority_chain",
                        &[("layer", "execution"), ("node", "good1")]
                    ),
                    Some(1.0)
                );
                assert!(
                    v(&s, "eth_network_cycle_duration_seconds", &[]).is_some_and(|d| d < 2.0),
                    "{mode:?}: cycle within its timeout"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{mode:?}: no {kind} error counted for the bad node, or it is not down"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 40 * 1024,
        "memory grew by {grown} KiB over the bad inputs"
    );

    // Recovery: the bad node behaves again and rejoins the majority.
    bad.set_mode(Mode::Correct);
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let s = scrape(&base).await;
        if v(
            &s,
            "eth_network_nodes",
            &[("layer", "execution"), ("state", "up")],
        ) == Some(3.0)
            && v(
                &s,
                "eth_network_node_on_majority_chain",
                &[("layer", "execution"), ("node", "bad")],
            ) == Some(1.0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "the node did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), r.task).await;
}
