//! Bad input for the network watcher: one node misbehaves in every way the sidecar tests know
//! (the same fake node, shared with the execution exporter's tests) while two good nodes are
//! still compared, the bad one is reported down with its errors counted by kind, and the cycle
//! stays within its timeout.

use ethwatch_testkit::jsonrpc::{FakeNode, Mode};
use ethwatch_testkit::mem::rss_kib;
use ethwatch_testkit::{network, sum, val};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_node_does_not_blind_the_watcher() {
    let good1 = FakeNode::start(100).await;
    let good2 = FakeNode::start(100).await;
    let bad = FakeNode::start(100).await;
    let exp = network(&[
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
    .await;
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
            &exp.scrape().await,
            "eth_network_request_errors_total",
            &[("node", "bad"), ("kind", kind)],
        );
        let s = exp
            .wait_for(
                8,
                &format!("{mode:?}: a {kind} error counted for the bad node, and it down"),
                |s| {
                    let errors = sum(
                        s,
                        "eth_network_request_errors_total",
                        &[("node", "bad"), ("kind", kind)],
                    );
                    errors > before
                        && val(
                            s,
                            "eth_network_node_up",
                            &[("layer", "execution"), ("node", "bad")],
                        ) == Some(0.0)
                },
            )
            .await;
        // The good nodes are still compared and agree.
        assert_eq!(
            val(
                &s,
                "eth_network_nodes",
                &[("layer", "execution"), ("state", "up")]
            ),
            Some(2.0),
            "{mode:?}"
        );
        assert_eq!(
            val(&s, "eth_network_distinct_heads", &[("layer", "execution")]),
            Some(1.0),
            "{mode:?}"
        );
        assert_eq!(
            val(
                &s,
                "eth_network_node_on_majority_chain",
                &[("layer", "execution"), ("node", "good1")]
            ),
            Some(1.0)
        );
        assert!(
            val(&s, "eth_network_cycle_duration_seconds", &[]).is_some_and(|d| d < 2.0),
            "{mode:?}: cycle within its timeout"
        );
    }
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 40 * 1024,
        "memory grew by {grown} KiB over the bad inputs"
    );

    // Recovery: the bad node behaves again and rejoins the majority.
    bad.set_mode(Mode::Correct);
    exp.wait_for(8, "the node to recover", |s| {
        val(
            s,
            "eth_network_nodes",
            &[("layer", "execution"), ("state", "up")],
        ) == Some(3.0)
            && val(
                s,
                "eth_network_node_on_majority_chain",
                &[("layer", "execution"), ("node", "bad")],
            ) == Some(1.0)
    })
    .await;
    exp.stop().await;
}
