//! Integration against a real beacon node: Lodestar 1.5.1, installed by `scripts/tools.sh` and
//! found through `ETHWATCH_LODESTAR` (set by `scripts/test.sh`). Without it this test fails; it
//! never skips.
//!
//! One node serves every scenario in sequence, because finality takes about 70 s to appear on a
//! fresh dev chain: healthy chain, finality and participation, a stalled chain (validator
//! stopped), a dead node, and a node that comes back (on a new genesis, as `lodestar dev --reset`
//! does).
//!
//! The node runs as two processes, as docs/consensus.md describes: the beacon node (`lodestar
//! dev` without `--startValidators`) and `lodestar validator`, so the chain can be stalled on
//! demand.

use std::time::{Duration, Instant};

use ethwatch_testkit::beacon::api_errors;
use ethwatch_testkit::scrape::Sample;
use ethwatch_testkit::{Lodestar, consensus, must, val};

fn now() -> f64 {
    ethwatch_core::unix_now()
}

fn step(t0: Instant, what: &str) {
    eprintln!("[{:6.1} s] {what}", t0.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lodestar_end_to_end() {
    let t0 = Instant::now();
    let mut node = Lodestar::new();
    node.start_node();
    node.wait_rest(60).await;
    node.start_validator();
    step(t0, "beacon node answers; validator started");

    let exp = consensus(
        &node.url(),
        &[
            "--events.max-backoff",
            "2s",
            "--ready.max-sync-distance",
            "4",
            "--peers-interval",
            "2s",
        ],
    )
    .await;
    // A second sidecar that watches half the validators, as a node's own (--validators.id):
    // the proposals collector runs only there.
    let own = consensus(
        &node.url(),
        &["--validators.id", "0,1,2,3", "--collector.events=false"],
    )
    .await;

    // --- a healthy chain ------------------------------------------------------------------
    exp.wait_for(60, "the first blocks", |s| {
        val(s, "eth_cl_head_slot", &[]).is_some_and(|h| h >= 3.0)
            && val(s, "eth_cl_blocks_total", &[]).is_some_and(|b| b >= 2.0)
    })
    .await;
    step(t0, "blocks are flowing");
    let genesis = node
        .num("/eth/v1/beacon/genesis", "/data/genesis_time")
        .await;
    let s = exp
        .wait_for(20, "static values, peers, client, health, stream", |s| {
            val(s, "eth_cl_peers_by_direction", &[("direction", "inbound")]).is_some()
                && val(s, "eth_cl_client_info", &[("client", "Lodestar")]).is_some()
                && val(s, "eth_cl_events_stream_connected", &[]) == Some(1.0)
                && val(s, "eth_cl_health_status", &[("status", "ready")]) == Some(1.0)
        })
        .await;
    assert_eq!(must(&s, "eth_cl_up", &[]), 1.0);
    assert_eq!(must(&s, "eth_cl_seconds_per_slot", &[]), 2.0);
    assert_eq!(must(&s, "eth_cl_slots_per_epoch", &[]), 8.0);
    assert_eq!(must(&s, "eth_cl_genesis_time_seconds", &[]), genesis as f64);
    let clock_slot = must(&s, "eth_cl_clock_slot", &[]);
    let expected = ((now() - genesis as f64) / 2.0).floor();
    assert!(
        (clock_slot - expected).abs() <= 1.0,
        "clock slot {clock_slot}, time says {expected}"
    );
    assert_eq!(must(&s, "eth_cl_peers", &[("state", "connected")]), 0.0);
    assert_eq!(
        must(&s, "eth_cl_peers_by_direction", &[("direction", "inbound")]),
        0.0
    );
    assert_eq!(
        must(
            &s,
            "eth_cl_peers_by_direction",
            &[("direction", "outbound")]
        ),
        0.0
    );
    assert_eq!(
        must(
            &s,
            "eth_cl_client_info",
            &[("client", "Lodestar"), ("version", "v1.5.1")]
        ),
        1.0
    );
    assert_eq!(must(&s, "eth_cl_syncing", &[]), 0.0);
    assert_eq!(must(&s, "eth_cl_optimistic", &[]), 0.0);
    assert_eq!(
        val(&s, "eth_cl_el_offline", &[]),
        None,
        "Lodestar 1.5.1 has no el_offline: absent"
    );
    assert_eq!(
        val(&s, "eth_cl_head_execution_block_number", &[]),
        None,
        "pre-merge blocks: absent"
    );
    assert_eq!(exp.status("/readyz").await, 200);

    // The head within one slot of the node's, several times.
    for _ in 0..5 {
        let theirs = node
            .num("/eth/v1/beacon/headers/head", "/data/header/message/slot")
            .await as f64;
        let ours = must(&exp.scrape().await, "eth_cl_head_slot", &[]);
        assert!(
            (ours - theirs).abs() <= 1.0,
            "exporter head {ours}, node head {theirs}"
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
    }

    // Blocks counted one per slot, no missed slots, arrival delays observed.
    let a = exp.scrape().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let b = exp.scrape().await;
    let d = |n: &str| must(&b, n, &[]) - must(&a, n, &[]);
    let (head_d, blocks_d, missed_d) = (
        d("eth_cl_head_slot"),
        d("eth_cl_blocks_total"),
        d("eth_cl_missed_slots_total"),
    );
    assert!(head_d >= 4.0, "the head advanced by {head_d} slots in 10 s");
    assert_eq!(blocks_d, head_d, "one block per slot");
    assert_eq!(missed_d, 0.0, "no missed slots on a healthy chain");
    let arrivals = d("eth_cl_block_arrival_delay_seconds_count");
    let mean = d("eth_cl_block_arrival_delay_seconds_sum") / arrivals;
    assert!(
        arrivals >= head_d - 1.0,
        "{arrivals} arrival delays for {head_d} heads"
    );
    assert!((0.0..2.0).contains(&mean), "mean arrival delay {mean} s");
    assert!(must(&b, "eth_cl_events_total", &[("topic", "head")]) >= head_d);
    assert!(must(&b, "eth_cl_events_total", &[("topic", "block")]) >= head_d);
    for e in b.iter().filter(|x| x.name == "eth_cl_api_errors_total") {
        assert_eq!(
            e.label("route"),
            Some("/eth/v1/beacon/rewards/attestations/{epoch}"),
            "only the missing rewards endpoint of Lodestar 1.5.1 may fail: {e:?}"
        );
    }
    let s = exp
        .wait_for(30, "8 active validators", |s| {
            val(s, "eth_cl_validators", &[("status", "active_ongoing")]) == Some(8.0)
        })
        .await;
    assert!(must(&s, "eth_cl_validators_balance_gwei", &[]) >= 8.0 * 31e9);
    assert_eq!(
        must(&s, "eth_cl_validators", &[("status", "pending_queued")]),
        0.0
    );
    step(t0, "healthy-chain checks passed");

    // --- finality and participation ----------------------------------------------------------
    let first_finalized = must(&exp.scrape().await, "eth_cl_finalized_epoch", &[]);
    let s = exp
        .wait_for(150, "finality to advance", |s| {
            val(s, "eth_cl_finalized_epoch", &[])
                .is_some_and(|f| f >= first_finalized + 1.0 && f >= 2.0)
        })
        .await;
    let fin = must(&s, "eth_cl_finalized_epoch", &[]);
    assert!(must(&s, "eth_cl_justified_epoch", &[]) >= fin);
    let distance = must(&s, "eth_cl_finality_distance_epochs", &[]);
    assert!(
        (1.0..=4.0).contains(&distance),
        "finality distance {distance}"
    );
    step(t0, &format!("finalized epoch {first_finalized} -> {fin}"));
    let s = exp
        .wait_for(40, "participation of a complete epoch", |s| {
            val(s, "eth_cl_epoch_participation_ratio", &[("duty", "target")]).is_some()
        })
        .await;
    for duty in ["source", "target", "head"] {
        let r = must(&s, "eth_cl_epoch_participation_ratio", &[("duty", duty)]);
        assert!(r >= 0.75, "{duty} participation {r}");
    }
    let clock_epoch = must(&s, "eth_cl_clock_epoch", &[]);
    let part_epoch = must(&s, "eth_cl_epoch_participation_epoch", &[]);
    assert!(
        clock_epoch - part_epoch <= 3.0 && clock_epoch - part_epoch >= 2.0,
        "participation epoch {part_epoch} at clock epoch {clock_epoch}"
    );
    assert!(
        must(
            &s,
            "eth_cl_api_request_duration_seconds_count",
            &[("route", "/eth/v2/debug/beacon/states/{state_id}")]
        ) >= 1.0,
        "Lodestar 1.5.1 has no rewards endpoint: participation comes from the state"
    );
    assert!(
        must(
            &s,
            "eth_cl_events_total",
            &[("topic", "finalized_checkpoint")]
        ) >= 1.0
    );
    step(t0, "participation checks passed");

    // The watched half: its counts, and its proposals found in the node's canonical blocks.
    let s = own
        .wait_for(40, "proposals of the watched validators", |s| {
            val(
                s,
                "eth_cl_validators_proposals_total",
                &[("result", "proposed")],
            )
            .is_some_and(|p| p >= 2.0)
        })
        .await;
    assert_eq!(must(&s, "eth_cl_validators_watched_ids", &[]), 4.0);
    assert_eq!(
        must(&s, "eth_cl_validators", &[("status", "active_ongoing")]),
        4.0
    );
    assert_eq!(
        must(
            &s,
            "ethwatch_collector_success",
            &[("collector", "proposals")]
        ),
        1.0
    );
    assert_eq!(
        must(&exp.scrape().await, "eth_cl_validators_watched_ids", &[]),
        0.0
    );
    step(t0, "proposals of the watched validators counted");

    // --- a stalled chain ----------------------------------------------------------------------
    let own_a = own.scrape().await;
    node.stop_validator();
    let a = exp.scrape().await;
    step(t0, "validator stopped");
    let missed0 = must(&a, "eth_cl_missed_slots_total", &[]);
    let blocks0 = must(&a, "eth_cl_blocks_total", &[]);
    let s = exp
        .wait_for(40, "missed slots and head lag to grow", |s| {
            val(s, "eth_cl_missed_slots_total", &[]).is_some_and(|m| m >= missed0 + 4.0)
                && val(s, "eth_cl_head_lag_slots", &[]).is_some_and(|l| l >= 5.0)
        })
        .await;
    // Every slot since the stop is a block or a missed slot, each counted once.
    let lag = must(&s, "eth_cl_head_lag_slots", &[]);
    let missed = must(&s, "eth_cl_missed_slots_total", &[]) - missed0;
    assert!(
        missed <= lag,
        "{missed} missed slots for a head lag of {lag}"
    );
    assert!(must(&s, "eth_cl_blocks_total", &[]) - blocks0 <= 1.0);
    step(
        t0,
        &format!("stalled: {missed} missed slots, head lag {lag}"),
    );
    // The watched validators' duties after the stop (half of all slots) find no block: missed.
    // Duties are judged in slot order, so once a miss is counted after the stall every earlier
    // duty is judged (the collector may lag behind the chain on a busy machine); from then on
    // nothing more counts as proposed while misses keep coming. An empty slot's 404 is an
    // answer, not a request error.
    let proposals = |s: &[Sample], result: &str| {
        val(
            s,
            "eth_cl_validators_proposals_total",
            &[("result", result)],
        )
        .unwrap_or(0.0)
    };
    let missed_stall = proposals(&own.scrape().await, "missed");
    let first = own
        .wait_for(
            40,
            "a missed proposal of a watched validator after the stall",
            |s| proposals(s, "missed") >= missed_stall + 1.0,
        )
        .await;
    let (missed_first, proposed_first) =
        (proposals(&first, "missed"), proposals(&first, "proposed"));
    assert!(
        missed_first
            > must(
                &own_a,
                "eth_cl_validators_proposals_total",
                &[("result", "missed")]
            ),
        "the stop is counted as missed proposals"
    );
    // Later slots of the stalled chain: nothing is counted as proposed and the missed count
    // never goes back. (Another miss is not awaited: once the head is an epoch behind, the dev
    // node may refuse the next epoch's duties and the proposals collector then fails, as CI saw.)
    tokio::time::sleep(Duration::from_secs(10)).await;
    let s = own.scrape().await;
    assert!(
        proposals(&s, "missed") >= missed_first,
        "the missed proposals count went back"
    );
    assert_eq!(
        proposals(&s, "proposed"),
        proposed_first,
        "no proposal counted as proposed on a stalled chain"
    );
    assert_eq!(
        api_errors(&s, "/eth/v1/beacon/headers/{block_id}", "http_status"),
        None,
        "an empty slot's 404 is not an error"
    );
    own.stop().await;
    step(t0, "missed proposals of the watched validators counted");
    exp.wait_for(60, "readiness to fail as the node falls behind", |s| {
        val(s, "eth_cl_sync_distance_slots", &[]).is_some_and(|d| d > 4.0)
    })
    .await;
    assert_eq!(
        exp.status("/readyz").await,
        503,
        "not ready while far behind"
    );
    step(t0, "readiness fails while the node is behind");

    // --- a dead node --------------------------------------------------------------------------
    let head_before = must(&exp.scrape().await, "eth_cl_head_slot", &[]);
    node.kill_node();
    step(t0, "beacon node killed");
    let s = exp
        .wait_for(15, "eth_cl_up 0 and the stream down", |s| {
            val(s, "eth_cl_up", &[]) == Some(0.0)
                && val(s, "eth_cl_events_stream_connected", &[]) == Some(0.0)
        })
        .await;
    assert_eq!(
        must(&s, "eth_cl_head_slot", &[]),
        head_before,
        "the last head is kept"
    );
    assert_eq!(
        must(&s, "ethwatch_collector_success", &[("collector", "sync")]),
        0.0
    );
    assert!(
        api_errors(&s, "/eth/v1/node/syncing", "connect").expect("eth_cl_api_errors_total") >= 1.0
    );
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(exp.status("/readyz").await, 503);
    let opens_before = must(
        &exp.scrape().await,
        "eth_cl_api_request_duration_seconds_count",
        &[("route", "/eth/v1/events")],
    );

    // --- the node comes back (a new dev chain) -----------------------------------------------
    node.start_node();
    node.wait_rest(60).await;
    node.start_validator();
    step(t0, "beacon node restarted");
    let new_genesis = node
        .num("/eth/v1/beacon/genesis", "/data/genesis_time")
        .await;
    assert_ne!(
        new_genesis, genesis,
        "lodestar dev --reset starts a new chain"
    );
    let heads_before = must(
        &exp.scrape().await,
        "eth_cl_events_total",
        &[("topic", "head")],
    );
    let s = exp
        .wait_for(90, "the stream reconnected and heads flowing again", |s| {
            val(s, "eth_cl_up", &[]) == Some(1.0)
                && val(s, "eth_cl_events_stream_connected", &[]) == Some(1.0)
                && val(s, "eth_cl_events_total", &[("topic", "head")])
                    .is_some_and(|h| h >= heads_before + 2.0)
        })
        .await;
    assert_eq!(
        must(&s, "eth_cl_genesis_time_seconds", &[]),
        new_genesis as f64,
        "the new genesis is followed"
    );
    assert!(
        must(
            &s,
            "eth_cl_api_request_duration_seconds_count",
            &[("route", "/eth/v1/events")]
        ) > opens_before
    );
    let theirs = node
        .num("/eth/v1/beacon/headers/head", "/data/header/message/slot")
        .await as f64;
    let ours = must(&s, "eth_cl_head_slot", &[]);
    assert!(
        (ours - theirs).abs() <= 1.0,
        "after the restart: exporter head {ours}, node head {theirs}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while exp.status("/readyz").await != 200 {
        assert!(Instant::now() < deadline, "/readyz did not recover");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    step(
        t0,
        "recovered: stream reconnected, new chain followed, ready",
    );
    exp.stop().await;
}
