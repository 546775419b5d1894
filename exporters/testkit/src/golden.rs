//! Golden tests: fixtures in, exposition out, linted by `promtool check metrics`, normalised and
//! compared with a checked-in `.prom` file (rewritten instead with `ETHWATCH_BLESS=1`).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::scrape::{self, val};

/// Scrapes `BASE/metrics` every 50 ms until every one of `collectors` has succeeded, and returns
/// that text; panics after `secs` showing the last one.
pub async fn wait_collectors(base: &str, collectors: &[&str], secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = scrape::text(base).await;
        let s = scrape::parse(&text);
        if collectors
            .iter()
            .all(|c| val(&s, "ethwatch_collector_success", &[("collector", c)]) == Some(1.0))
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "collectors did not all succeed:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `promtool check metrics` on `text`: (passed, what it printed).
pub fn promtool_check(text: &str) -> (bool, String) {
    let mut child = std::process::Command::new(crate::tool("ETHWATCH_PROMTOOL"))
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

/// Asserts that `promtool check metrics` finds nothing in `text`.
pub fn assert_promtool_clean(text: &str) {
    let (ok, out) = promtool_check(text);
    assert!(ok, "promtool check metrics found problems:\n{out}");
}

/// The values of the series starting with one of `volatile` (they depend on the clock or the
/// machine's speed) become `X`, with their exemplars; the samples of each family are sorted
/// (label sets live in hash maps, so their order varies). Everything else must match.
pub fn normalize(text: &str, volatile: &[&str]) -> String {
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
        } else if volatile.iter().any(|v| line.starts_with(v)) {
            let (series, _) = line.rsplit_once(' ').expect("a sample line");
            let series = series.split(" # ").next().unwrap_or(series);
            block.push(format!("{series} X"));
        } else {
            block.push(line.to_string());
        }
    }
    flush(&mut block, &mut out);
    out
}

/// Compares `normalized` with the golden file `CRATE/tests/golden/NAME`; with `ETHWATCH_BLESS`
/// set, writes it first.
pub fn assert_golden(manifest_dir: &str, name: &str, normalized: &str) {
    let golden = Path::new(manifest_dir).join("tests/golden").join(name);
    if std::env::var_os("ETHWATCH_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().expect("dir")).expect("mkdir");
        std::fs::write(&golden, normalized).expect("write golden");
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(
        expected == normalized,
        "exposition differs from tests/golden/{name} (bless with ETHWATCH_BLESS=1 if intended):\n--- expected\n{expected}\n--- got\n{normalized}"
    );
}

/// The whole golden check of a scraped text: promtool, normalise with `volatile`, compare.
pub fn check(manifest_dir: &str, name: &str, text: &str, volatile: &[&str]) {
    assert_promtool_clean(text);
    assert_golden(manifest_dir, name, &normalize(text, volatile));
}

/// The consensus exporter's series whose values depend on the wall clock or machine speed.
pub const CONSENSUS_VOLATILE: [&str; 10] = [
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

/// The consensus exporter's golden test against a fake node serving fixtures at `beacon_url`:
/// polls every 100 ms without the event stream until every collector has succeeded, then
/// [`check`]s the text against `CRATE/tests/golden/NAME`.
pub async fn check_consensus(beacon_url: &str, manifest_dir: &str, name: &str) {
    let exp = crate::consensus(
        beacon_url,
        &["--poll-interval", "100ms", "--collector.events=false"],
    )
    .await;
    // Every collector but the two that need the event stream or validator indices.
    use ethwatch_consensus::collectors::ClCollector;
    use ethwatch_core::collectors::Collector;
    let collectors: Vec<&str> = ClCollector::ALL
        .iter()
        .filter(|c| !matches!(c, ClCollector::Proposals | ClCollector::Events))
        .map(|c| c.name())
        .collect();
    let text = wait_collectors(&exp.base, &collectors, 15).await;
    exp.stop().await;
    // The text as scraped without an Accept header is linted by promtool, then compared.
    check(manifest_dir, name, &text, &CONSENSUS_VOLATILE);
}
