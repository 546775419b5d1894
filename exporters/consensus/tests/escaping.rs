//! Label values from a node or an operator come out escaped (issue 15, item 1).
//!
//! A beacon node whose version string holds `"`, `\` and ` # `, and a `--volume.path` whose
//! directory name holds `"`, `\`, ` # ` and a line feed: the exporter's `/metrics` must stay
//! parseable in both formats. Checked by reference parsers: `promtool check metrics` on the
//! Prometheus text, and a real Prometheus scraping the exporter (it asks for OpenMetrics) whose
//! query API must return `up` 1 and the label values exactly as given.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::fake::{FakeBeacon, Reply, healthy};
use support::{Exporter, Proc, Scratch, free_port, must};

/// The version string the node reports: client `Evil # "house\`, version `v1"2\3`.
const VERSION_JSON: &str = r#"{"data":{"version":"Evil # \"house\\/v1\"2\\3/x86_64-linux"}}"#;
const CLIENT: &str = "Evil # \"house\\";
const VERSION: &str = "v1\"2\\3";

fn promtool_check(text: &str) -> (bool, String) {
    let promtool = std::env::var("ETHWATCH_PROMTOOL").unwrap_or_else(|_| {
        panic!("ETHWATCH_PROMTOOL is not set: run the tests with scripts/test.sh")
    });
    let mut child = Command::new(promtool)
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
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn prometheus_query(port: u16, q: &str) -> serde_json::Value {
    let url = url::Url::parse_with_params(
        &format!("http://127.0.0.1:{port}/api/v1/query"),
        &[("query", q)],
    )
    .expect("url");
    let text = match reqwest::get(url).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

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
    let exp = Exporter::start(
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
    let om = reqwest::Client::new()
        .get(format!("{}/metrics", exp.base))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let oms = ethwatch_core::exposition::parse(&om);
    must(
        &oms,
        "eth_cl_client_info",
        &[("client", CLIENT), ("version", VERSION)],
    );

    // A real Prometheus scrapes it (OpenMetrics first, as it asks) and stores the values as given.
    let prom_port = free_port();
    let addr = exp.base.trim_start_matches("http://");
    std::fs::write(
        scratch.path().join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: ethwatch\n    static_configs: [{{targets: ['{addr}']}}]\n"
        ),
    )
    .expect("config");
    let prometheus = std::env::var("ETHWATCH_PROMETHEUS").unwrap_or_else(|_| {
        panic!("ETHWATCH_PROMETHEUS is not set: run the tests with scripts/test.sh")
    });
    let mut cmd = Command::new(prometheus);
    cmd.arg("--config.file=prometheus.yml")
        .arg("--storage.tsdb.path=data")
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"));
    let _prom = Proc::spawn("prometheus", cmd, scratch.path());

    let deadline = Instant::now() + Duration::from_secs(30);
    let (info, vols) = loop {
        let up = prometheus_query(prom_port, "up").await;
        let info = prometheus_query(prom_port, "eth_cl_client_info").await;
        let vols = prometheus_query(prom_port, "ethwatch_volume_size_bytes").await;
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
