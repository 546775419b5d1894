//! Logging and tracing set-up: `RUST_LOG` (default `info`) through tracing-subscriber, as text
//! or JSON lines, plus the OTLP trace layer when [`crate::traces`] is configured.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::FilterExt as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The log line format, chosen by `--log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global subscriber: logs filtered by `RUST_LOG`, and, when a tracer is given,
/// the spans of ethwatch's own crates exported over OTLP (whatever the log level). Safe to call
/// more than once (later calls are ignored), which tests rely on.
pub fn init(format: LogFormat, tracer: Option<opentelemetry_sdk::trace::SdkTracer>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match format {
        // Colour codes only on a terminal: in a file, a pipe or a log collector they are noise.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .boxed(),
    }
    // Log lines only: spans are left to the OTLP layer. With tracing off no layer wants a span,
    // so creating one costs next to nothing (the text layer would otherwise format every span's
    // fields on every poll and head, a third of an idle exporter's CPU).
    .with_filter(filter.and(tracing_subscriber::filter::filter_fn(|m| m.is_event())));
    let otel = tracer.map(|t| {
        tracing_opentelemetry::layer().with_tracer(t).with_filter(
            Targets::new()
                .with_target("ethwatch", LevelFilter::INFO)
                .with_target("ethwatch_core", LevelFilter::INFO)
                .with_target("ethwatch_execution", LevelFilter::INFO)
                .with_target("ethwatch_consensus", LevelFilter::INFO)
                .with_target("ethwatch_network", LevelFilter::INFO),
        )
    });
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
}

/// Sets up logging and, when configured, the OTLP trace pipeline for `exporter` (its default
/// `service.name` is `ethwatch-<exporter>`). Keep the guard until shutdown, then flush it.
pub fn setup(
    common: &crate::config::CommonArgs,
    exporter: &str,
) -> anyhow::Result<Option<crate::traces::TraceGuard>> {
    let built = crate::traces::build(&common.traces, exporter)?;
    let (tracer, guard) = match built {
        Some((t, g)) => (Some(t), Some(g)),
        None => (None, None),
    };
    init(common.log_format, tracer);
    if guard.is_some() {
        tracing::info!(sampler = %common.traces.sampler, protocol = %common.traces.protocol, "exporting traces over OTLP");
    }
    Ok(guard)
}
