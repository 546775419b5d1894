//! What every ethwatch exporter shares.
//!
//! # Layout
//! - [`collectors`]: the typed table of an exporter's collectors, its `--collector.*` flags and docs.
//! - [`config`]: the flags every exporter takes (`--web.*`, `--log.format`, `--config.file`), the
//!   YAML config file merge, and value parsers (durations).
//! - [`exporter`]: the frame every exporter runs in (registry, listener, tasks, server).
//! - [`upstream`]: the one path every request to a node goes through: timeout, body cap, error kind,
//!   latency histogram with exemplars, credential redaction.
//! - [`exposition`]: reading the text exposition format back (tests, docs generator).
//! - [`metrics`]: the exporter's own health metrics (`ethwatch_*`) and shared metric helpers.
//! - [`node`]: the watched node's health (logged once per change) and the reconnect backoff.
//! - [`process`]: `process_*` metrics of the exporter itself.
//! - [`server`]: the HTTP server (`/metrics`, `/healthz`, `/readyz`, `/`).
//! - [`schedule`]: running a collector on its own interval under a timeout, recording its status.
//! - [`volume`]: `statvfs` usage of the node's data volumes.
//! - [`state`]: metrics read from an exporter's state at scrape time, declared as tables.
//! - [`telemetry`]: logging set-up.
//! - [`traces`]: OTLP traces of the exporter's own work, bounded and counted.
//! - [`shutdown`]: SIGTERM/SIGINT into a cancellation token.
//! - [`webconfig`]: `--web.config.file` (TLS and basic auth, exporter-toolkit format).
//!
//! Exporters poll their node on their own schedule and keep the last known state in memory;
//! `/metrics` only encodes that state and never calls the node.

pub mod collectors;
pub mod config;
pub mod exporter;
pub mod exposition;
pub mod metrics;
pub mod node;
pub mod process;
pub mod schedule;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod telemetry;
pub mod traces;
pub mod upstream;
pub mod volume;
pub mod webconfig;

pub use prometheus_client;

/// The version of this build, as in `Cargo.toml`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision of this build when the build environment provides it (`ETHWATCH_REVISION`).
pub const REVISION: &str = match option_env!("ETHWATCH_REVISION") {
    Some(r) => r,
    None => "unknown",
};

/// Milliseconds since the Unix epoch (0 if the clock is before it), for "last answered" marks.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch as a float, for timestamps in metrics.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
