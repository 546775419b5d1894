//! The watcher against beacon nodes that answer as real ones do, where no real node here does on
//! demand (an empty slot at the common height): the consensus exporter's fake beacon node.

use ethwatch_testkit::beacon::{FakeBeacon, healthy};
use ethwatch_testkit::scrape::Sample;
use ethwatch_testkit::{network, val};

/// The watcher compares nodes at the lowest head; a node whose chain has no block at that slot
/// answers 404 for its header. That is the expected answer (compared as an empty slot), not a
/// request error: an alert on the error counter must not fire on a healthy chain with missed
/// slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_slot_is_not_a_request_error() {
    let now = ethwatch_core::unix_now() as u64;
    let genesis = now - 200;
    let low = FakeBeacon::start().await;
    low.set_all(healthy(genesis, 50));
    // Head at 52; no block at slot 50 (unknown paths answer 404).
    let high = FakeBeacon::start().await;
    high.set_all(healthy(genesis, 52));
    let exp = network(&[
        "--poll-interval",
        "200ms",
        "--beacon-target",
        &format!("low={}", low.url),
        "--beacon-target",
        &format!("high={}", high.url),
    ])
    .await;
    let route = "/eth/v1/beacon/headers/{block_id}";
    // Every cycle asks `high` for its head and for slot 50: a few cycles.
    let s = exp
        .wait_for(10, "a comparison at slot 50", |s| {
            let asked = val(
                s,
                "eth_network_request_duration_seconds_count",
                &[("node", "high"), ("call", route)],
            )
            .unwrap_or(0.0);
            val(s, "eth_network_common_height", &[("layer", "consensus")]) == Some(50.0)
                && asked >= 6.0
        })
        .await;
    assert!(high.requests("/eth/v1/beacon/headers/50") >= 2);
    let errors: Vec<&Sample> = s
        .iter()
        .filter(|x| x.name == "eth_network_request_errors_total" && x.label("node") == Some("high"))
        .collect();
    assert!(
        errors.is_empty(),
        "the 404 of an empty slot counted as an error: {errors:?}"
    );
    exp.stop().await;
}
