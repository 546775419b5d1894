//! Golden test: recorded real responses (Lodestar 1.5.1) and the spec's examples in, `/metrics`
//! exposition out, compared with the checked-in `golden/consensus.prom` and linted with
//! `promtool check metrics`.
//!
//! Regenerate the golden file with `ETHWATCH_BLESS=1 cargo test -p ethwatch-consensus --test golden`.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::Exporter;
use support::fake::{FakeBeacon, Reply, Stream};

fn fixture(rel: &str) -> String {
    let p: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Values that depend on the wall clock or machine speed are replaced by `X`, and the samples of
/// each family are sorted (label sets live in hash maps); everything else must match.
fn normalize(text: &str) -> String {
    const VOLATILE: [&str; 10] = [
        "process_",
        "ethwatch_http_open_connections",
        "ethwatch_collector_duration_seconds",
        "ethwatch_collector_last_success_timestamp_seconds",
        "eth_cl_api_request_duration_seconds",
        "eth_cl_clock_slot",
        "eth_cl_clock_epoch",
        "eth_cl_head_lag_slots",
        "eth_cl_finality_distance_epochs",
        "eth_cl_epoch_participation_epoch",
    ];
    let mut out = String::new();
    let mut block: Vec<String> = Vec::new();
    let flush = |block: &mut Vec<String>, out: &mut String| {
        block.sort();
        for l in block.drain(..) {
            out.push_str(&l);
            out.push('\n');
        }
    };
    for line in text.lines() {
        if line.starts_with('#') {
            flush(&mut block, &mut out);
            out.push_str(line);
            out.push('\n');
        } else if VOLATILE.iter().any(|v| line.starts_with(v)) {
            let (series, _) = line.rsplit_once(' ').expect("a sample line");
            // Exemplars (` # {...}`) go too.
            let series = series.split(" # ").next().unwrap_or(series);
            block.push(format!("{series} X"));
        } else {
            block.push(line.to_string());
        }
    }
    flush(&mut block, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_in_exposition_out() {
    let fake = FakeBeacon::start().await;
    let ok = |rel: &str| Reply::Body(200, fixture(rel));
    let lodestar = "lodestar-1.5.1";
    fake.set(
        "/eth/v1/beacon/genesis",
        ok(&format!("{lodestar}/beacon_genesis.json")),
    );
    fake.set(
        "/eth/v1/config/spec",
        ok(&format!("{lodestar}/config_spec.json")),
    );
    fake.set(
        "/eth/v1/node/syncing",
        ok(&format!("{lodestar}/node_syncing.json")),
    );
    fake.set("/eth/v1/node/health", Reply::Body(200, String::new()));
    fake.set(
        "/eth/v1/node/version",
        ok(&format!("{lodestar}/node_version.json")),
    );
    fake.set(
        "/eth/v1/node/peer_count",
        ok("beacon-APIs/node_peer_count.json"),
    );
    fake.set("/eth/v1/node/peers", ok("beacon-APIs/node_peers.json"));
    fake.set(
        "/eth/v1/beacon/states/head/finality_checkpoints",
        ok(&format!("{lodestar}/finality_checkpoints.json")),
    );
    fake.set(
        "/eth/v1/beacon/headers/head",
        ok(&format!("{lodestar}/header_head.json")),
    );
    let header: serde_json::Value =
        serde_json::from_str(&fixture(&format!("{lodestar}/header_head.json"))).expect("json");
    let root = header["data"]["root"].as_str().expect("root");
    fake.set(
        &format!("/eth/v2/beacon/blocks/{root}"),
        ok(&format!("{lodestar}/block_v2_altair.json")),
    );
    fake.set(
        "/eth/v1/beacon/states/head/validators",
        ok(&format!("{lodestar}/validators.json")),
    );
    fake.set(
        "/eth/v1/beacon/rewards/attestations/*",
        ok("beacon-APIs/rewards_attestations.json"),
    );
    fake.stream(Stream::Status(404));

    let exp = Exporter::start(
        &fake.url,
        &["--poll-interval", "100ms", "--collector.events=false"],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let collectors = [
        "sync",
        "health",
        "head",
        "finality",
        "peers",
        "clock",
        "info",
        "validators",
        "participation",
    ];
    let text = loop {
        let text = exp.text().await;
        let s = ethwatch_core::exposition::parse(&text);
        if collectors.iter().all(|c| {
            ethwatch_core::exposition::value(&s, "ethwatch_collector_success", &[("collector", c)])
                == Some(1.0)
        }) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "collectors did not all succeed:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    exp.stop().await;

    // The text as scraped without an Accept header is linted by promtool.
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

    let normalized = normalize(&text);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/consensus.prom");
    if std::env::var_os("ETHWATCH_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().expect("dir")).expect("mkdir");
        std::fs::write(&golden, &normalized).expect("write golden");
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(
        expected == normalized,
        "exposition differs from tests/golden/consensus.prom (bless with ETHWATCH_BLESS=1 if intended):\n--- expected\n{expected}\n--- got\n{normalized}"
    );
}
