//! A misbehaving beacon node: garbage JSON, 500/503, hangs, an event stream that sends half an
//! event and stalls, an endless line, a stream that closes every second, a huge peer list.
//! Every fault is counted by route and kind, nothing panics, memory stays bounded, the last
//! values are kept and marked stale, and the logs say it once.
//!
//! (Over 600 lines: one scenario per fault, each a set-up line, its waits and its assertions;
//! their set-up and helpers are the test kit's.)

use std::time::{Duration, Instant};

use ethwatch_testkit::beacon::{self, api_errors, live_chain as chain};
use ethwatch_testkit::beacon::{FakeBeacon, Reply, Stream, head_event, healthy};
use ethwatch_testkit::mem::rss_kib;
use ethwatch_testkit::{consensus, logs, must, val};

const FAST: [&str; 8] = [
    "--poll-interval",
    "200ms",
    "--info-interval",
    "1s",
    "--peers-interval",
    "1s",
    "--beacon-timeout",
    "500ms",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_answers_are_counted_and_last_values_kept_as_stale() {
    logs::capture();
    let fake = FakeBeacon::start().await;
    let (genesis, slot) = chain();
    fake.set_all(healthy(genesis, slot));
    fake.stream(Stream::Send(head_event(slot).into_bytes()));
    let mut args = FAST.to_vec();
    args.extend(["--collector.validators=false"]);
    let exp = consensus(&fake.url, &args).await;

    let s = exp
        .wait_for(10, "a healthy fake node seen", |s| {
            val(s, "eth_cl_head_execution_block_number", &[]) == Some(1000.0 + slot as f64)
                && val(s, "eth_cl_peers_by_direction", &[("direction", "outbound")]) == Some(2.0)
                && val(
                    s,
                    "eth_cl_client_info",
                    &[("client", "Fakehouse"), ("version", "v9.9.9")],
                )
                .is_some()
        })
        .await;
    assert_eq!(must(&s, "eth_cl_up", &[]), 1.0);
    assert_eq!(must(&s, "eth_cl_head_slot", &[]), slot as f64);
    assert_eq!(
        must(&s, "eth_cl_peers_by_direction", &[("direction", "inbound")]),
        1.0
    );
    assert_eq!(must(&s, "eth_cl_peers", &[("state", "connected")]), 3.0);
    assert_eq!(must(&s, "eth_cl_finalized_epoch", &[]), 1.0);
    assert_eq!(must(&s, "eth_cl_justified_epoch", &[]), 2.0);
    assert_eq!(must(&s, "eth_cl_el_offline", &[]), 0.0);
    assert_eq!(must(&s, "eth_cl_genesis_time_seconds", &[]), genesis as f64);

    // Garbage JSON from everything but /eth/v1/node/syncing (which keeps the node "up").
    fake.break_all(Reply::Body(200, r#"{"data": [garbage"#.into()));
    fake.set_all(
        healthy(genesis, slot)
            .into_iter()
            .filter(|(p, _)| p == "/eth/v1/node/syncing")
            .collect(),
    );
    let s = exp
        .wait_for(10, "decode errors on every polled route", |s| {
            [
                "/eth/v1/beacon/headers/{block_id}",
                "/eth/v1/beacon/states/{state_id}/finality_checkpoints",
                "/eth/v1/node/peer_count",
                "/eth/v1/node/version",
                "/eth/v1/beacon/genesis",
            ]
            .iter()
            .all(|r| api_errors(s, r, "decode").is_some_and(|n| n >= 1.0))
        })
        .await;
    assert_eq!(must(&s, "eth_cl_up", &[]), 1.0);
    for c in ["head", "finality", "peers", "info", "clock"] {
        assert_eq!(
            must(&s, "ethwatch_collector_success", &[("collector", c)]),
            0.0,
            "{c}"
        );
    }
    // The last known values stay, and their age shows they are stale.
    assert_eq!(must(&s, "eth_cl_head_slot", &[]), slot as f64);
    assert_eq!(must(&s, "eth_cl_finalized_epoch", &[]), 1.0);
    assert_eq!(
        must(
            &s,
            "eth_cl_peers_by_direction",
            &[("direction", "outbound")]
        ),
        2.0
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = exp.scrape().await;
    let head_ok = must(
        &s,
        "ethwatch_collector_last_success_timestamp_seconds",
        &[("collector", "head")],
    );
    let sync_ok = must(
        &s,
        "ethwatch_collector_last_success_timestamp_seconds",
        &[("collector", "sync")],
    );
    assert!(
        sync_ok - head_ok >= 1.0,
        "head is stale ({head_ok}) while sync is fresh ({sync_ok})"
    );

    // Garbage from /eth/v1/node/syncing too: the node counts as down.
    fake.set(
        "/eth/v1/node/syncing",
        Reply::Body(200, "<html>oops</html>".into()),
    );
    let s = exp
        .wait_for(5, "eth_cl_up 0 on garbage", |s| {
            val(s, "eth_cl_up", &[]) == Some(0.0)
        })
        .await;
    assert!(
        api_errors(&s, "/eth/v1/node/syncing", "decode").expect("eth_cl_api_errors_total") >= 1.0
    );
    assert_eq!(must(&s, "eth_cl_head_slot", &[]), slot as f64, "kept");

    // 500 and 503: counted as http_status.
    fake.break_all(Reply::Body(500, "internal error".into()));
    fake.set(
        "/eth/v1/node/syncing",
        Reply::Body(503, r#"{"code":503,"message":"not ready"}"#.into()),
    );
    exp.wait_for(5, "http_status errors", |s| {
        api_errors(s, "/eth/v1/node/syncing", "http_status").is_some_and(|n| n >= 2.0)
    })
    .await;

    // A node that answers syncing again but says 503 on health: an answer, not an error.
    fake.set_all(healthy(genesis, slot));
    fake.set("/eth/v1/node/health", Reply::Body(503, String::new()));
    let s = exp
        .wait_for(5, "health not_initialized", |s| {
            val(s, "eth_cl_health_status", &[("status", "not_initialized")]) == Some(1.0)
        })
        .await;
    assert_eq!(
        must(&s, "eth_cl_health_status", &[("status", "ready")]),
        0.0
    );
    assert_eq!(must(&s, "eth_cl_up", &[]), 1.0);
    assert_eq!(api_errors(&s, "/eth/v1/node/health", "http_status"), None);
    fake.set("/eth/v1/node/health", Reply::Body(206, String::new()));
    exp.wait_for(5, "health syncing", |s| {
        val(s, "eth_cl_health_status", &[("status", "syncing")]) == Some(1.0)
    })
    .await;

    // A node that hangs: timeouts.
    fake.set("/eth/v1/node/syncing", Reply::Hang);
    let s = exp
        .wait_for(10, "timeouts", |s| {
            api_errors(s, "/eth/v1/node/syncing", "timeout").is_some_and(|n| n >= 1.0)
                && val(s, "eth_cl_up", &[]) == Some(0.0)
        })
        .await;
    assert_eq!(must(&s, "eth_cl_head_slot", &[]), slot as f64);
    assert_eq!(
        exp.status("/metrics").await,
        200,
        "scrapes never wait for the node"
    );

    // One log line per change of failure kind, not one per poll.
    let port = format!(":{}", fake.port);
    let lines = logs::matching(&["beacon node unreachable or misbehaving", &port]);
    eprintln!("{} failure log lines:\n{}", lines.len(), lines.join("\n"));
    assert!(
        (2..=4).contains(&lines.len()),
        "{} lines:\n{}",
        lines.len(),
        lines.join("\n")
    );
    // Collectors that failed while the node answered: once when they start failing, not per poll
    // (about 100 polls ran).
    let failing = logs::matching(&["collector failing", &port]);
    eprintln!("{} collector failure lines", failing.len());
    assert!(
        (5..=14).contains(&failing.len()),
        "{} lines:\n{}",
        failing.len(),
        failing.join("\n")
    );
    exp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_event_then_silence_is_a_timeout_and_the_stream_reconnects() {
    let fake = FakeBeacon::start().await;
    let (genesis, slot) = chain();
    fake.set_all(healthy(genesis, slot));
    fake.stream(Stream::HalfThenStall);
    let exp = consensus(
        &fake.url,
        &["--collector.validators=false", "--events.max-backoff", "1s"],
    )
    .await;
    let s = exp
        .wait_for(15, "a timeout on the stalled stream", |s| {
            api_errors(s, "/eth/v1/events", "timeout").is_some_and(|n| n >= 2.0)
        })
        .await;
    assert!(
        fake.stream_opens.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "reconnected"
    );
    assert_eq!(must(&s, "eth_cl_up", &[]), 1.0, "polling carries on");
    assert_eq!(must(&s, "eth_cl_head_slot", &[]), slot as f64);
    assert_eq!(
        val(&s, "eth_cl_events_total", &[("topic", "head")]),
        None,
        "half an event is no event"
    );
    exp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_line_is_too_large_with_bounded_memory() {
    let fake = FakeBeacon::start().await;
    let (genesis, slot) = chain();
    fake.set_all(healthy(genesis, slot));
    fake.stream(Stream::EndlessLine);
    let before = rss_kib();
    let exp = consensus(
        &fake.url,
        &[
            "--collector.validators=false",
            "--events.max-backoff",
            "1s",
            "--events.max-event-bytes",
            "65536",
        ],
    )
    .await;
    let s = exp
        .wait_for(15, "too_large on the endless line, twice", |s| {
            api_errors(s, "/eth/v1/events", "too_large").is_some_and(|n| n >= 2.0)
        })
        .await;
    let sent = fake.stream_bytes.load(std::sync::atomic::Ordering::SeqCst);
    let grown_mib = rss_kib().saturating_sub(before) as f64 / 1024.0;
    eprintln!("endless line: the server sent {sent} bytes; RSS grew by {grown_mib:.1} MiB");
    assert!(sent > 2 * 65536, "the server sent {sent} bytes");
    assert!(grown_mib < 64.0, "memory grew by {grown_mib:.1} MiB");
    assert_eq!(must(&s, "eth_cl_up", &[]), 1.0);
    exp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_closing_every_second_backs_off_and_logs_once() {
    logs::capture();
    let fake = FakeBeacon::start().await;
    let (genesis, slot) = chain();
    fake.set_all(healthy(genesis, slot));
    fake.stream(Stream::CloseAfter(
        head_event(slot).into_bytes(),
        Duration::from_secs(1),
    ));
    let exp = consensus(&fake.url, &["--collector.validators=false"]).await;
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(14)).await;
    let s = exp.scrape().await;
    let opens = fake.stream_opens.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("closing stream: {opens} opens in {:?}", t.elapsed());
    // Sessions of 1 s with backoff 1, 2, 4, 8 s: about 4 opens in 14 s, never one per second.
    assert!(
        (3..=6).contains(&opens),
        "{opens} stream opens in {:?}",
        t.elapsed()
    );
    assert!(api_errors(&s, "/eth/v1/events", "connect").expect("eth_cl_api_errors_total") >= 2.0);
    assert!(must(&s, "eth_cl_events_total", &[("topic", "head")]) >= 2.0);
    let port = format!(":{}", fake.port);
    let lost = logs::matching(&["event stream lost", &port]);
    assert_eq!(
        lost.len(),
        1,
        "logged on the transition only:\n{}",
        lost.join("\n")
    );
    exp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_peer_lists_are_bounded() {
    let fake = FakeBeacon::start().await;
    let (genesis, slot) = chain();
    fake.set_all(healthy(genesis, slot));
    fake.stream(Stream::Send(Vec::new()));
    let peer = |dir: &str| {
        format!(
            r#"{{"peer_id":"16Uiu2HAmQbfsHYsJaxKRjFE3CVBqb5pWLQKEbKfRUPZZAXgjzjGQ","enr":"enr:-IS4QHCYrYZbAKWCBRlAy5zzaDZXJBGkcnh4MHcBFZntXNFrdvJjX04jRzjzCBOonrkTfj499SZuOh8R33Ls8RRcy5wBgmlkgnY0gmlwhH8AAAGJc2VjcDI1NmsxoQPKY0yuDUmstAHYpMa2_oxVtw0RW_QAdpzBQA8yWM0xOIN1ZHCCdl8","last_seen_p2p_address":"/ip4/7.7.7.7/tcp/4242/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N","state":"connected","direction":"{dir}"}}"#
        )
    };
    let list = |dir: &str, count: usize| Reply::Repeat {
        prefix: r#"{"data":["#.into(),
        item: peer(dir),
        count,
        suffix: r#"],"meta":{"count":0}}"#.into(),
    };
    let count = |n: u64| {
        Reply::Body(
            200,
            format!(
                r#"{{"data":{{"disconnected":"0","connecting":"0","connected":"{n}","disconnecting":"0"}}}}"#
            ),
        )
    };
    // Hundreds of peers: counted with a streaming walk.
    fake.set("/eth/v1/node/peer_count", count(800));
    fake.set("/eth/v1/node/peers", list("inbound", 800));
    let before = rss_kib();
    let exp = consensus(
        &fake.url,
        &[
            "--collector.validators=false",
            "--peers-interval",
            "1s",
            "--beacon-max-body-bytes",
            "4194304",
        ],
    )
    .await;
    exp.wait_for(10, "800 inbound peers", |s| {
        val(s, "eth_cl_peers_by_direction", &[("direction", "inbound")]) == Some(800.0)
    })
    .await;
    // A list longer than --peers.list-max (1000): not counted, flagged as too large.
    fake.set("/eth/v1/node/peers", list("outbound", 5000));
    let s = exp
        .wait_for(10, "a list over the limit", |s| {
            api_errors(s, "/eth/v1/node/peers", "too_large").is_some()
        })
        .await;
    assert_eq!(
        val(
            &s,
            "eth_cl_peers_by_direction",
            &[("direction", "outbound")]
        ),
        None
    );
    // More connected peers than the limit: the list is not even fetched.
    let fetched = fake.requests("/eth/v1/node/peers");
    fake.set("/eth/v1/node/peer_count", count(50_000));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(fake.requests("/eth/v1/node/peers") <= fetched + 1);
    // A 100 MB body is cut at --beacon-max-body-bytes.
    fake.set("/eth/v1/node/peer_count", count(10));
    fake.set("/eth/v1/node/peers", list("inbound", 200_000));
    let errors_before =
        api_errors(&exp.scrape().await, "/eth/v1/node/peers", "too_large").unwrap_or(0.0);
    let s = exp
        .wait_for(15, "the body cap", |s| {
            api_errors(s, "/eth/v1/node/peers", "too_large").is_some_and(|n| n > errors_before)
        })
        .await;
    assert_eq!(must(&s, "eth_cl_up", &[]), 1.0);
    let grown_mib = rss_kib().saturating_sub(before) as f64 / 1024.0;
    eprintln!("peer lists: RSS grew by {grown_mib:.1} MiB");
    assert!(grown_mib < 64.0, "memory grew by {grown_mib:.1} MiB");
    exp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_events_move_the_metrics_at_once() {
    let fake = FakeBeacon::start().await;
    let (genesis, slot) = chain();
    fake.set_all(healthy(genesis, slot));
    // The poll's head is one slot behind the stream's, so the stream's head is the news.
    fake.set(
        "/eth/v1/beacon/headers/head",
        Reply::Body(200, beacon::header(slot - 1)),
    );
    fake.set(
        &format!("/eth/v1/beacon/headers/{}", beacon::root(slot - 1)),
        Reply::Body(200, beacon::header(slot - 1)),
    );
    fake.set(
        &format!("/eth/v2/beacon/blocks/{}", beacon::root(slot - 1)),
        Reply::Body(200, beacon::block(slot - 1)),
    );
    let events = format!(
        "{}event: chain_reorg\ndata: {{\"slot\":\"{slot}\",\"depth\":\"2\",\"old_head_block\":\"{r}\",\"new_head_block\":\"{r}\",\"old_head_state\":\"{r}\",\"new_head_state\":\"{r}\",\"epoch\":\"1\",\"execution_optimistic\":false}}\n\nevent: block\ndata: {{\"slot\":\"{slot}\",\"block\":\"{r}\"}}\n\nevent: something_new\ndata: {{}}\n\nevent: head\ndata: not json\n\n",
        head_event(slot),
        r = beacon::root(slot)
    );
    fake.stream(Stream::Send(events.into_bytes()));
    let exp = consensus(&fake.url, &["--collector.validators=false"]).await;
    let s = exp
        .wait_for(10, "the stream's events counted", |s| {
            val(s, "eth_cl_events_total", &[("topic", "chain_reorg")]) == Some(1.0)
                && val(s, "eth_cl_events_total", &[("topic", "other")]) == Some(1.0)
        })
        .await;
    // Reorgs are counted from the heads, as on the execution side, not from the client's own
    // chain_reorg event (whose depth clients compute differently): the stream's head is a child
    // of the polled one, so there was none.
    assert_eq!(must(&s, "eth_cl_reorgs_total", &[]), 0.0);
    assert_eq!(must(&s, "eth_cl_reorg_depth_count", &[]), 0.0);
    assert_eq!(must(&s, "eth_cl_events_total", &[("topic", "head")]), 2.0);
    assert_eq!(must(&s, "eth_cl_events_total", &[("topic", "block")]), 1.0);
    assert_eq!(
        must(&s, "eth_cl_events_total", &[("topic", "chain_reorg")]),
        1.0
    );
    assert_eq!(
        api_errors(&s, "/eth/v1/events", "decode").expect("eth_cl_api_errors_total"),
        1.0
    );
    // The stream's head (slot) wins over the older polled one (slot - 1), and its block's payload
    // number is read.
    assert_eq!(must(&s, "eth_cl_head_slot", &[]), slot as f64);
    assert_eq!(
        must(&s, "eth_cl_head_execution_block_number", &[]),
        1000.0 + slot as f64
    );
    assert_eq!(
        must(&s, "eth_cl_block_arrival_delay_seconds_count", &[]),
        1.0
    );
    assert_eq!(must(&s, "eth_cl_events_stream_connected", &[]), 1.0);
    exp.stop().await;
}

/// While the event stream delivers heads, the poll slows to one full cycle per
/// --streaming-poll-interval and reads neither the head nor (within an epoch) finality; when the
/// stream goes quiet, every tick is a full cycle again, and /readyz stays ready throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_slows_the_poll_and_a_quiet_one_restores_it() {
    let fake = FakeBeacon::start().await;
    let (genesis, slot) = chain();
    fake.set_all(healthy(genesis, slot));
    // A pre-Bellatrix chain: heads in consecutive slots need no request at all.
    fake.set(
        "/eth/v1/config/spec",
        Reply::Body(
            200,
            r#"{"data":{"SECONDS_PER_SLOT":"2","SLOTS_PER_EPOCH":"8","BELLATRIX_FORK_EPOCH":"18446744073709551615"}}"#.into(),
        ),
    );
    fake.set(
        "/eth/v1/beacon/headers/*",
        Reply::Body(200, beacon::header(slot)),
    );
    fake.stream(Stream::Heads { genesis });
    let exp = consensus(
        &fake.url,
        &[
            "--poll-interval",
            "200ms",
            "--streaming-poll-interval",
            "3s",
            "--peers-interval",
            "1s",
            "--collector.validators=false",
        ],
    )
    .await;
    exp.wait_for(12, "two stream heads", |s| {
        val(s, "eth_cl_events_total", &[("topic", "head")]).unwrap_or(0.0) >= 2.0
    })
    .await;
    let paths = [
        "/eth/v1/node/syncing",
        "/eth/v1/node/health",
        "/eth/v1/node/peer_count",
        "/eth/v1/beacon/headers/head",
        "/eth/v1/beacon/states/head/finality_checkpoints",
    ];
    let counts = |fake: &FakeBeacon| paths.map(|p| fake.requests(p));
    let before = counts(&fake);
    let blocks_before = must(&exp.scrape().await, "eth_cl_blocks_total", &[]);
    let window = Duration::from_secs(6);
    let t0 = Instant::now();
    while t0.elapsed() < window {
        assert_eq!(
            exp.status("/readyz").await,
            200,
            "ready while the stream is live"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = counts(&fake);
    let d: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    // 6 s at one full cycle per 3 s: 2 or 3 cycles (30 at every 200 ms tick).
    assert!(
        (1..=3).contains(&d[0]),
        "syncing requests in 6 s while live: {d:?}"
    );
    assert!(
        (1..=3).contains(&d[1]),
        "health requests in 6 s while live: {d:?}"
    );
    assert!(d[2] <= 3, "peer_count requests in 6 s while live: {d:?}");
    assert_eq!(
        d[3], 0,
        "the head is not polled while the stream delivers it: {d:?}"
    );
    // An epoch is 16 s: the checkpoints are read at most once more in 6 s.
    assert!(d[4] <= 1, "finality requests in 6 s while live: {d:?}");
    assert_eq!(
        fake.requests(&format!("/eth/v2/beacon/blocks/{}", beacon::root(slot))),
        0
    );
    let s = exp.scrape().await;
    assert!(
        must(&s, "eth_cl_blocks_total", &[]) >= blocks_before + 2.0,
        "stream heads are counted as blocks"
    );
    assert_eq!(must(&s, "eth_cl_missed_slots_total", &[]), 0.0);
    assert_eq!(
        must(&s, "ethwatch_collector_success", &[("collector", "head")]),
        1.0
    );
    assert_eq!(
        must(
            &s,
            "ethwatch_collector_success",
            &[("collector", "finality")]
        ),
        1.0
    );

    // The stream goes quiet (open, no more heads): after two slots and a second, full cycles
    // every tick again, the head polled too.
    fake.stream(Stream::Send(Vec::new()));
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(7) {
        assert_eq!(
            exp.status("/readyz").await,
            200,
            "ready while the poll takes over"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let before = counts(&fake);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = counts(&fake);
    let d: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert!(
        d[0] >= 6,
        "syncing requests in 2 s once the stream is quiet: {d:?}"
    );
    assert!(
        d[3] >= 6,
        "head requests in 2 s once the stream is quiet: {d:?}"
    );
    assert!(
        d[4] >= 6,
        "finality requests in 2 s once the stream is quiet: {d:?}"
    );
    assert_eq!(exp.status("/readyz").await, 200);
    exp.stop().await;
}

/// Participation from the beacon state (no rewards endpoint, as Lodestar 1.5.1): the state asked
/// for is the one after the last block of the epoch, not the state at its last slot when that
/// slot is empty (a real node answered 500 for it, again at every cycle); the empty slot's 404 is
/// not an error; after a failure the state is asked again in the next epoch at the earliest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participation_reads_the_state_at_or_before_an_empty_slot_once_per_epoch() {
    let fake = FakeBeacon::start().await;
    let (genesis, slot) = chain();
    fake.set_all(healthy(genesis, slot));
    let state = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/lodestar-1.5.1/debug_state.json"),
    )
    .expect("state fixture");
    // 8 slots per epoch: in every epoch the last slot (8e + 7) is empty, 8e + 6 has a block.
    let epochs = 1..40u64;
    let state_path = |s: u64| format!("/eth/v2/debug/beacon/states/{s}");
    for e in epochs.clone() {
        let (empty, last_block) = (8 * e + 7, 8 * e + 6);
        fake.set(
            &format!("/eth/v1/beacon/headers/{last_block}"),
            Reply::Body(200, beacon::header(last_block)),
        );
        fake.set(
            &state_path(empty),
            Reply::Body(
                500,
                r#"{"code":500,"message":"no state for an empty slot"}"#.into(),
            ),
        );
        fake.set(&state_path(last_block), Reply::Body(200, state.clone()));
    }
    let state_requests = |f: &FakeBeacon| -> (u64, u64) {
        epochs.clone().fold((0, 0), |(empty, block), e| {
            (
                empty + f.requests(&state_path(8 * e + 7)),
                block + f.requests(&state_path(8 * e + 6)),
            )
        })
    };
    let exp = consensus(&fake.url, &[]).await;
    let s = exp
        .wait_for(20, "participation from the state", |s| {
            val(s, "eth_cl_epoch_participation_epoch", &[]).is_some()
        })
        .await;
    assert_eq!(
        must(
            &s,
            "ethwatch_collector_success",
            &[("collector", "participation")]
        ),
        1.0
    );
    let (empty, block) = state_requests(&fake);
    assert_eq!(empty, 0, "the state of an empty slot was asked for");
    assert!(block >= 1);
    assert_eq!(
        api_errors(&s, "/eth/v1/beacon/headers/{block_id}", "http_status"),
        None,
        "the 404 of an empty slot is not an error"
    );

    // Now the node cannot serve any state: one try per epoch, not one per cycle.
    for e in epochs.clone() {
        fake.set(
            &state_path(8 * e + 6),
            Reply::Body(500, r#"{"code":500,"message":"regen failed"}"#.into()),
        );
    }
    let before = state_requests(&fake).1;
    // The next epoch's try fails (an epoch is 16 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    while state_requests(&fake).1 == before {
        assert!(Instant::now() < deadline, "no try in the next epoch");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed_at = Instant::now();
    let s = exp
        .wait_for(5, "participation failing", |s| {
            val(
                s,
                "ethwatch_collector_success",
                &[("collector", "participation")],
            ) == Some(0.0)
        })
        .await;
    assert!(
        val(&s, "eth_cl_epoch_participation_epoch", &[]).is_some(),
        "last value kept"
    );
    // Most of an epoch later (many 2 s slots and poll cycles), still that one try.
    tokio::time::sleep(Duration::from_secs(12).saturating_sub(failed_at.elapsed())).await;
    let tries = state_requests(&fake).1 - before;
    assert_eq!(
        tries, 1,
        "{tries} state requests within the epoch of the failure"
    );
    exp.stop().await;
}
