//! Label values from a node or an operator come out escaped (issue 15, item 1).
//!
//! A beacon node whose version string holds `"`, `\` and ` # `, and a `--volume.path` whose
//! directory name holds `"`, `\`, ` # ` and a line feed: the exporter's `/metrics` must stay
//! parseable in both formats. Checked by reference parsers: `promtool check metrics` on the
//! Prometheus text, and a real Prometheus scraping the exporter (it asks for OpenMetrics) whose
//! query API must return `up` 1 and the label values exactly as given.

use std::time::{Duration, Instant};

use ethwatch_testkit::beacon::{FakeBeacon, Reply, healthy};
use ethwatch_testkit::golden::promtool_check;
use ethwatch_testkit::scrape::openmetrics;
use ethwatch_testkit::{Prometheus, Scratch, consensus, must};

/// The version string the node reports: client `Evil # "house\`, version `v1"2\3`.
const VERSION_JSON: &str = r#"{"data":{"version":"Evil # \"house\\/v1\"2\\3/x86_64-linux"}}"#;
const CLIENT: &str = "Evil # \"house\\";
const VERSION: &str = "v1\"2\\3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_label_values_stay_parseable() {
    let scratch = Scratch::new("escaping");
    let vol = scratch.path().join("vol \"q\" \\b # x\nline");
    std::fs::create_dir_all(&vol).expect("hostile dir");
    let vol_str = vol.display().to_string();

    let genesis = ethwatch_core::unix_now() as u64 - 100;
    let node = FakeBeacon::start().await;
    node.set_all(healthy(genesis, 50));
    node.set(
        "/eth/v1/node/version",
        Reply::Body(200, VERSION_JSON.to_string()),
    );
    let exp = consensus(
        &node.url,
        &["--volume.path", &vol_str, "--volume.interval", "200ms"],
    )
    .await;
    let s = exp
        .wait_for(10, "client info and volume", |s| {
            s.iter().any(|x| x.name == "eth_cl_client_info")
                && s.iter().any(|x| x.name == "ethwatch_volume_size_bytes")
        })
        .await;
    // Our own reader gets the values back.
    must(
        &s,
        "eth_cl_client_info",
        &[("client", CLIENT), ("version", VERSION)],
    );
    must(&s, "ethwatch_volume_size_bytes", &[("path", &vol_str)]);

    // The Prometheus text passes promtool; every line is a comment or a sample our reader reads.
    let text = exp.text().await;
    let (ok, out) = promtool_check(&text);
    assert!(ok, "promtool check metrics rejected the exposition:\n{out}");
    for line in text.lines() {
        assert!(
            line.starts_with('#') || !ethwatch_core::exposition::parse(line).is_empty(),
            "unparseable line: {line:?}"
        );
    }
    // The OpenMetrics text keeps one sample per line as well.
    let om = openmetrics(&exp.base).await;
    let oms = ethwatch_core::exposition::parse(&om);
    must(
        &oms,
        "eth_cl_client_info",
        &[("client", CLIENT), ("version", VERSION)],
    );

    // A real Prometheus scrapes it (OpenMetrics first, as it asks) and stores the values as given.
    let prom = Prometheus::scraping(exp.base.trim_start_matches("http://"), &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (info, vols) = loop {
        let up = prom.query("up").await;
        let info = prom.query("eth_cl_client_info").await;
        let vols = prom.query("ethwatch_volume_size_bytes").await;
        let up_value = up["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_string);
        if up_value.as_deref() == Some("1")
            && !info["data"]["result"].as_array().is_none_or(Vec::is_empty)
            && !vols["data"]["result"].as_array().is_none_or(Vec::is_empty)
        {
            break (info, vols);
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not ingest the scrape: up {up_value:?}\n{info}\n{vols}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let metric = &info["data"]["result"][0]["metric"];
    assert_eq!(metric["client"], CLIENT, "{info}");
    assert_eq!(metric["version"], VERSION, "{info}");
    assert_eq!(
        vols["data"]["result"][0]["metric"]["path"],
        vol_str.as_str()
    );
    exp.stop().await;
}
