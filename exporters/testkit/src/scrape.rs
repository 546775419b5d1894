//! Scrape and parse `/metrics`, find a sample by name and labels, wait until a condition holds.

use std::time::{Duration, Instant};

pub use ethwatch_core::exposition::{Sample, parse};

/// The text of `BASE/metrics` (as scraped without an `Accept` header).
pub async fn text(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body")
}

/// `BASE/metrics`, parsed.
pub async fn scrape(base: &str) -> Vec<Sample> {
    parse(&text(base).await)
}

/// The HTTP status of `GET BASE PATH`.
pub async fn status(base: &str, path: &str) -> u16 {
    reqwest::get(format!("{base}{path}"))
        .await
        .expect("get")
        .status()
        .as_u16()
}

/// The value of the series `name` whose labels include `labels`.
pub fn val(s: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    ethwatch_core::exposition::value(s, name, labels)
}

/// A value that must be there.
pub fn must(s: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    val(s, name, labels).unwrap_or_else(|| panic!("{name}{labels:?} is missing"))
}

/// The sum over every series of `name` whose labels include `labels` (0 when there is none).
pub fn sum(s: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    s.iter()
        .filter(|x| x.name == name && labels.iter().all(|(k, v)| x.label(k) == Some(*v)))
        .map(|x| x.value)
        .sum()
}

/// The samples worth showing when a wait times out: the nodes' and the exporter's, no buckets.
pub fn dump(s: &[Sample]) -> String {
    s.iter()
        .filter(|x| {
            (x.name.starts_with("eth_") || x.name.starts_with("ethwatch_collector_success"))
                && !x.name.contains("bucket")
        })
        .map(|x| format!("{} {:?} {}", x.name, x.labels, x.value))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Scrapes `BASE/metrics` every 100 ms until `cond` holds, and returns that scrape; panics after
/// `secs` naming `what` and showing the last scrape.
pub async fn wait_for(
    base: &str,
    secs: u64,
    what: &str,
    cond: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = scrape(base).await;
        if cond(&s) {
            return s;
        }
        if Instant::now() > deadline {
            panic!("timed out after {secs} s waiting for: {what}\n{}", dump(&s));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `GET BASE PATH` every 100 ms until it answers `want`; panics after `secs` with `what`.
pub async fn wait_status(base: &str, path: &str, want: u16, secs: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while status(base, path).await != want {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of `BASE/metrics` in OpenMetrics (with exemplars), as Prometheus asks for it.
pub async fn openmetrics(base: &str) -> String {
    reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body")
}

/// The `trace_id`s of the exemplars on the lines of `text` that start with `series`.
pub fn exemplar_trace_ids(text: &str, series: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.split("trace_id=\"").nth(1))
        .filter_map(|r| r.split('"').next())
        .map(str::to_string)
        .collect()
}
