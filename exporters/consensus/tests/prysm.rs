//! Prysm v6.0.4's recorded answers (tests/fixtures/prysm-6.0.4, recorded by its record.sh from the
//! real post-merge devnet of tests/e2e/realnet.py): each decoded into the exporter's types with the
//! recorded values checked, the event stream parsed, the error answers' shapes, and the whole set
//! served to a running exporter, whose `/metrics` is compared with `golden/consensus-prysm.prom`.
//!
//! Regenerate the golden file with
//! `ETHWATCH_BLESS=1 cargo test -p ethwatch-consensus --test prysm`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ethwatch_consensus::sse::{SseItem, SseParser};
use ethwatch_consensus::types::{
    BlockData, Envelope, FinalityCheckpoints, FinalizedEvent, Genesis, HeadEvent, HeaderData,
    NodeVersion, PeerCount, SpecTiming, Syncing, for_each_at, parse_client_version,
};
use ethwatch_consensus::validators::{self, Counts, ValidatorFilter};
use ethwatch_testkit::beacon::{FakeBeacon, Reply, Stream};
use ethwatch_testkit::{consensus, golden, val};
use serde::de::DeserializeOwned;

const DIR: &str = "prysm-6.0.4";

fn path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(DIR)
        .join(rel)
}

fn fixture(rel: &str) -> String {
    let p = path(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn data<T: DeserializeOwned>(rel: &str) -> T {
    serde_json::from_str::<Envelope<T>>(&fixture(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .data
}

/// The HTTP status record.sh saved beside an answer.
fn status(rel: &str) -> u16 {
    fixture(&format!("{rel}.status"))
        .trim()
        .parse()
        .expect("a status")
}

// ---------------------------------------------------------------------------------------------
// Every answer decodes into the exporter's types, with the recorded values.

#[test]
fn clock_sync_version_peers_and_finality() {
    let g: Genesis = data("beacon_genesis.json");
    assert_eq!(g.genesis_time.0, 1_796_422_796);
    let spec: SpecTiming = data("config_spec.json");
    assert_eq!(
        spec.timing().expect("timing"),
        (4000, 6),
        "the devnet's 4 s slots, 6-slot epochs"
    );
    assert_eq!(
        spec.BELLATRIX_FORK_EPOCH.map(|e| e.0),
        Some(0),
        "post-merge from genesis"
    );

    let s: Syncing = data("node_syncing.json");
    assert_eq!(
        (s.head_slot.0, s.sync_distance.0, s.is_syncing),
        (44, 0, false)
    );
    assert_eq!(s.is_optimistic, Some(false));
    assert_eq!(s.el_offline, Some(false), "Prysm sends el_offline");

    let v: NodeVersion = data("node_version.json");
    assert_eq!(v.version, "Prysm/v6.0.4 (linux amd64)");
    assert_eq!(
        parse_client_version(&v.version),
        ("Prysm".to_string(), "v6.0.4".to_string()),
        "the platform after a space is not part of the version"
    );

    let pc: PeerCount = data("node_peer_count.json");
    assert_eq!(
        (
            pc.connected.0,
            pc.connecting.0,
            pc.disconnecting.0,
            pc.disconnected.0
        ),
        (1, 0, 0, 0),
        "the other beacon node of the two-pair devnet"
    );
    // The peers list: one connected outbound peer, its ENR empty under --no-discovery.
    let mut peers = Vec::new();
    let found = for_each_at(
        fixture("node_peers.json").as_bytes(),
        &["data"],
        |p: serde_json::Value| peers.push(p),
    )
    .expect("peers decode");
    assert!(found);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["state"], "connected");
    assert_eq!(peers[0]["direction"], "outbound");
    assert_eq!(peers[0]["enr"], "");

    let f: FinalityCheckpoints = data("finality_checkpoints.json");
    assert_eq!((f.current_justified.epoch.0, f.finalized.epoch.0), (6, 5));
}

#[test]
fn head_header_and_electra_block() {
    let h: HeaderData = data("header_head.json");
    assert_eq!(h.header.message.slot.0, 44);
    assert_eq!(
        h.root.to_string(),
        "0xe042d185947f1b34c2b61fd7b58282cbf6271c9a32b1aaa862c99e4301ad0875"
    );
    let raw: serde_json::Value =
        serde_json::from_str(&fixture("block_v2_electra.json")).expect("json");
    assert_eq!(raw["version"], "electra");
    let b: BlockData = data("block_v2_electra.json");
    assert_eq!(b.message.slot.0, 44);
    assert_eq!(b.message.parent_root, h.header.message.parent_root);
    // Post-merge: every slot's block carries a payload; on this devnet block N is at slot N.
    assert_eq!(b.execution_block_number(), Some(44));
}

#[test]
fn validators_rewards_and_state_participation() {
    let mut c = Counts::default();
    c.add_body(fixture("validators.json").as_bytes())
        .expect("validators decode");
    assert_eq!(c.by_status.iter().sum::<u64>(), 64, "64 interop validators");
    assert_eq!(c.balance_gwei, 2_048_559_591_655);
    let mut some = Counts::default();
    some.add_body(fixture("validators_id_repeated.json").as_bytes())
        .expect("validators by id decode");
    assert_eq!(some.by_status.iter().sum::<u64>(), 3, "id=0&id=1&id=2");

    let epoch: u64 = fixture("rewards_attestations.epoch")
        .trim()
        .parse()
        .expect("epoch");
    assert_eq!(status("rewards_attestations.json"), 200);
    let p = validators::from_rewards(fixture("rewards_attestations.json").as_bytes(), epoch)
        .expect("rewards decode");
    assert_eq!(p.epoch, epoch);
    assert_eq!(
        (p.source, p.target, p.head),
        (Some(1.0), Some(1.0), Some(1.0)),
        "every validator of a healthy devnet attested correctly"
    );
    let p = validators::from_rewards(fixture("rewards_attestations_ids.json").as_bytes(), epoch)
        .expect("rewards for two ids decode");
    assert_eq!(p.head, Some(1.0));

    // The same epoch from the (trimmed) state: the fallback agrees with the rewards.
    assert_eq!(status("debug_state.json"), 200);
    let all = ValidatorFilter::parse(&[]).expect("filter");
    let s = validators::from_state(fixture("debug_state.json").as_bytes(), epoch, &all)
        .expect("state decodes")
        .expect("Electra states have participation flags");
    assert_eq!(
        (s.source, s.target, s.head),
        (Some(1.0), Some(1.0), Some(1.0))
    );
    let two = ValidatorFilter::parse(&["0".into(), "1".into()]).expect("filter");
    assert!(
        validators::from_state(fixture("debug_state.json").as_bytes(), epoch, &two)
            .expect("state decodes")
            .is_some()
    );
}

/// Prysm's error answers: a JSON object with `message` and `code` equal to the HTTP status.
#[test]
fn error_answers() {
    for (rel, want, says) in [
        (
            "header_no_block_404.json",
            404,
            "Could not find requested block",
        ),
        // The epoch before the current one: "after two epoch transitions"; the exporter asks
        // for the epoch two back (poller.rs), which Prysm answers.
        (
            "rewards_attestations_too_recent_404.json",
            404,
            "Attestation rewards are available after two epoch transitions",
        ),
        // A state ahead of the head: 500, not 404.
        (
            "debug_state_future_500.json",
            500,
            "requested slot is in the future",
        ),
        // Under --no-discovery there is no ENR, and the identity endpoint fails.
        ("node_identity_500.json", 500, "Could not obtain enr"),
    ] {
        assert_eq!(status(rel), want, "{rel}");
        let v: serde_json::Value = serde_json::from_str(&fixture(rel)).expect(rel);
        assert_eq!(v["code"], want, "{rel}: code in the body");
        let msg = v["message"].as_str().expect("a message");
        assert!(msg.contains(says), "{rel}: {msg}");
    }
    assert_eq!(status("node_health.txt"), 200);
    assert_eq!(fixture("node_health.txt"), "", "health answers no body");
}

#[test]
fn the_recorded_event_stream_decodes() {
    let text = fixture("events.txt");
    assert!(
        text.lines().any(|l| l == ":"),
        "Prysm sends comment lines (':') as keep-alives"
    );
    let mut parser = SseParser::new(64 * 1024, 64 * 1024);
    let mut items = Vec::new();
    parser.push(text.as_bytes(), &mut |i| items.push(i));
    let (mut heads, mut blocks, mut finalized) = (Vec::new(), 0, Vec::new());
    for item in items {
        let SseItem::Event(e) = item else {
            panic!("not an event: {item:?}")
        };
        match e.event.as_str() {
            "head" => {
                let h: HeadEvent = serde_json::from_str(&e.data).expect("head");
                heads.push(h.slot.0);
            }
            "block" => {
                let b: ethwatch_consensus::types::BlockEvent =
                    serde_json::from_str(&e.data).expect("block");
                assert!(b.slot.0 > 0);
                blocks += 1;
            }
            "finalized_checkpoint" => {
                let f: FinalizedEvent = serde_json::from_str(&e.data).expect("finalized");
                finalized.push(f.epoch.0);
            }
            other => panic!("unexpected topic {other}"),
        }
    }
    assert_eq!((heads.len(), blocks), (7, 7), "one block and head per slot");
    assert!(
        heads.windows(2).all(|w| w[1] == w[0] + 1),
        "no slot missed: {heads:?}"
    );
    assert_eq!(finalized.len(), 2, "an epoch boundary is in the recording");
}

// ---------------------------------------------------------------------------------------------
// Fixtures in, exposition out.

/// Serves every recorded Prysm answer at its path.
fn serve_prysm(fake: &FakeBeacon) {
    let ok = |rel: &str| Reply::Body(200, fixture(rel));
    fake.set("/eth/v1/beacon/genesis", ok("beacon_genesis.json"));
    fake.set("/eth/v1/config/spec", ok("config_spec.json"));
    fake.set("/eth/v1/node/syncing", ok("node_syncing.json"));
    fake.set("/eth/v1/node/health", Reply::Body(200, String::new()));
    fake.set("/eth/v1/node/version", ok("node_version.json"));
    fake.set("/eth/v1/node/peer_count", ok("node_peer_count.json"));
    fake.set("/eth/v1/node/peers", ok("node_peers.json"));
    fake.set(
        "/eth/v1/beacon/states/head/finality_checkpoints",
        ok("finality_checkpoints.json"),
    );
    fake.set("/eth/v1/beacon/headers/head", ok("header_head.json"));
    let h: HeaderData = data("header_head.json");
    fake.set(
        &format!("/eth/v2/beacon/blocks/{}", h.root),
        ok("block_v2_electra.json"),
    );
    // Any other header or block: Prysm's own 404.
    fake.set(
        "/eth/v1/beacon/headers/*",
        Reply::Body(404, fixture("header_no_block_404.json")),
    );
    fake.set(
        "/eth/v1/beacon/states/head/validators",
        ok("validators.json"),
    );
    fake.set(
        "/eth/v1/beacon/rewards/attestations/*",
        ok("rewards_attestations.json"),
    );
    fake.set(
        "/eth/v2/debug/beacon/states/*",
        Reply::Body(500, fixture("debug_state_future_500.json")),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prysm_fixtures_in_exposition_out() {
    let fake = FakeBeacon::start().await;
    serve_prysm(&fake);
    fake.stream(Stream::Status(404));

    golden::check_consensus(
        &fake.url,
        env!("CARGO_MANIFEST_DIR"),
        "consensus-prysm.prom",
    )
    .await;
}

/// The recorded stream served to a running exporter: every event is counted under its topic,
/// and the keep-alive comment lines are neither events nor errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorded_stream_through_the_exporter() {
    let fake = FakeBeacon::start().await;
    serve_prysm(&fake);
    fake.stream(Stream::Send(fixture("events.txt").into_bytes()));
    let exp = consensus(&fake.url, &["--poll-interval", "100ms"]).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let want = [("head", 7.0), ("block", 7.0), ("finalized_checkpoint", 2.0)];
    let s = loop {
        let s = exp.scrape().await;
        if want
            .iter()
            .all(|(t, n)| val(&s, "eth_cl_events_total", &[("topic", t)]) == Some(*n))
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "events not counted as recorded:\n{}",
            exp.text().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    exp.stop().await;
    assert_eq!(
        val(&s, "eth_cl_events_total", &[("topic", "chain_reorg")]).unwrap_or(0.0),
        0.0
    );
    assert_eq!(
        val(
            &s,
            "eth_cl_api_errors_total",
            &[("route", "/eth/v1/events")]
        )
        .unwrap_or(0.0),
        0.0,
        "the stream decoded without an error"
    );
}
