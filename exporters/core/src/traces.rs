//! Traces of the exporter's own work, shipped over OTLP (to Tempo or any OTLP receiver).
//!
//! Configured by the standard OpenTelemetry variables, each also a flag:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (`--otel.endpoint`; `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` wins
//! when set), `OTEL_EXPORTER_OTLP_PROTOCOL` (`--otel.protocol`: `grpc` or `http/protobuf`),
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG`. Tracing is off when no endpoint is set.
//!
//! Finished spans go into a bounded queue ([`BoundedProcessor`]); a background task exports them
//! in batches under a timeout. When the receiver is down or slow the queue fills and further spans
//! are dropped and counted in `ethwatch_trace_spans_dropped_total{reason}`: the exporter never
//! stalls or grows because of its traces.

use std::sync::LazyLock;
use std::time::Duration;

use crate::config::ValueError;
use opentelemetry::KeyValue;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

/// Flags of the trace pipeline (every exporter has them).
#[derive(Debug, Clone, clap::Args)]
pub struct TraceArgs {
    /// OTLP endpoint (Tempo: `http://tempo:4317` for grpc, `http://tempo:4318` for
    /// http/protobuf). Tracing is off when neither this nor OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set.
    #[arg(long = "otel.endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub endpoint: Option<String>,

    /// OTLP transport: `grpc` or `http/protobuf`.
    #[arg(long = "otel.protocol", env = "OTEL_EXPORTER_OTLP_PROTOCOL", default_value = "http/protobuf", value_parser = ["grpc", "http/protobuf"])]
    pub protocol: String,

    /// `service.name` of the spans (default `ethwatch-<exporter>`).
    #[arg(long = "otel.service-name", env = "OTEL_SERVICE_NAME")]
    pub service_name: Option<String>,

    /// Extra resource attributes, `key=value,key=value` (the chart passes k8s.pod.name,
    /// k8s.namespace.name and k8s.node.name through the downward API).
    #[arg(long = "otel.resource-attributes", env = "OTEL_RESOURCE_ATTRIBUTES")]
    pub resource_attributes: Option<String>,

    /// Sampler: always_on, always_off, traceidratio, parentbased_always_on,
    /// parentbased_always_off, parentbased_traceidratio.
    #[arg(long = "otel.sampler", env = "OTEL_TRACES_SAMPLER", default_value = "parentbased_always_on", value_parser = ["always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"])]
    pub sampler: String,

    /// The sampler's argument (the ratio for the traceidratio samplers, 0 to 1).
    #[arg(long = "otel.sampler-arg", env = "OTEL_TRACES_SAMPLER_ARG", value_parser = parse_ratio)]
    pub sampler_arg: Option<f64>,

    /// Most finished spans held for export; more are dropped and counted.
    #[arg(long = "otel.queue-size", default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub queue_size: u32,

    /// Timeout of one export to the OTLP receiver.
    #[arg(long = "otel.export-timeout", default_value = "5s", value_parser = crate::config::parse_duration)]
    pub export_timeout: Duration,
}

fn parse_ratio(s: &str) -> Result<f64, ValueError> {
    let v: f64 = s
        .parse()
        .map_err(|_| ValueError::NotANumber(s.to_string()))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(ValueError::NotARatio(v))
    }
}

/// Trace export that cannot be set up; the text names the flag.
#[derive(Debug, thiserror::Error)]
pub enum TraceSetupError {
    #[error("--otel.endpoint: cannot build the HTTP client: {0}")]
    HttpClient(reqwest::Error),
    #[error("--otel.protocol: '{0}' is not grpc or http/protobuf")]
    Protocol(String),
    #[error("--otel.endpoint: {0}")]
    Exporter(opentelemetry_otlp::ExporterBuildError),
    #[error(transparent)]
    ResourceAttribute(#[from] ResourceAttributeError),
}

/// A `--otel.resource-attributes` entry that is not `key=value`.
#[derive(Debug, thiserror::Error)]
#[error("--otel.resource-attributes: '{0}' is not key=value")]
pub struct ResourceAttributeError(String);

impl TraceArgs {
    fn traces_endpoint_env() -> Option<String> {
        std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .ok()
            .filter(|s| !s.is_empty())
    }

    /// Whether tracing is configured.
    pub fn enabled(&self) -> bool {
        self.endpoint.as_deref().is_some_and(|s| !s.is_empty())
            || Self::traces_endpoint_env().is_some()
    }

    fn sampler(&self) -> Sampler {
        let ratio = self.sampler_arg.unwrap_or(1.0);
        match self.sampler.as_str() {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::TraceIdRatioBased(ratio),
            "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            "parentbased_traceidratio" => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
            }
            _ => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        }
    }

    fn resource(&self, exporter: &str) -> Result<Resource, ResourceAttributeError> {
        let mut attrs = vec![KeyValue::new("service.version", crate::VERSION)];
        if let Some(s) = &self.resource_attributes {
            for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| ResourceAttributeError(pair.to_string()))?;
                let v = percent_encoding::percent_decode_str(v.trim())
                    .decode_utf8_lossy()
                    .into_owned();
                attrs.push(KeyValue::new(k.trim().to_string(), v));
            }
        }
        // Downward-API variables the chart sets, when the attributes do not already say.
        for (var, key) in [
            ("POD_NAME", "k8s.pod.name"),
            ("POD_NAMESPACE", "k8s.namespace.name"),
            ("NODE_NAME", "k8s.node.name"),
        ] {
            if let Ok(v) = std::env::var(var)
                && !v.is_empty()
                && !attrs.iter().any(|kv| kv.key.as_str() == key)
            {
                attrs.push(KeyValue::new(key, v));
            }
        }
        let name = self
            .service_name
            .clone()
            .unwrap_or_else(|| format!("ethwatch-{exporter}"));
        Ok(Resource::builder_empty()
            .with_service_name(name)
            .with_attributes(attrs)
            .build())
    }
}

/// Counters of the trace pipeline, shared by the processor and every registry.
#[derive(Clone, Default)]
pub struct TraceMetrics {
    dropped: Family<[(&'static str, &'static str); 1], Counter>,
    exported: Counter,
}

static METRICS: LazyLock<TraceMetrics> = LazyLock::new(TraceMetrics::default);

/// Registers `ethwatch_trace_spans_dropped_total{reason}` and `ethwatch_trace_spans_exported_total`.
pub fn register_metrics(registry: &mut Registry) {
    let m = METRICS.clone();
    // Both reasons exist from the start so a rate() over them is never empty.
    for r in ["queue_full", "export_failed"] {
        let _ = m.dropped.get_or_create(&[("reason", r)]);
    }
    registry.register(
        "ethwatch_trace_spans_dropped",
        "Spans not delivered to the OTLP receiver: queue_full (receiver down or slow) or export_failed",
        m.dropped,
    );
    registry.register(
        "ethwatch_trace_spans_exported",
        "Spans delivered to the OTLP receiver",
        m.exported,
    );
}

/// A span processor with a bounded queue and counted drops.
#[derive(Debug)]
pub struct BoundedProcessor {
    tx: mpsc::Sender<SpanData>,
    flush: mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
}

const BATCH: usize = 512;

impl BoundedProcessor {
    /// Starts the export task on the current tokio runtime.
    pub fn start<E: SpanExporter + 'static>(exporter: E, queue: usize, timeout: Duration) -> Self {
        let (tx, mut rx) = mpsc::channel::<SpanData>(queue.max(1));
        let (flush, mut flush_rx) = mpsc::channel::<tokio::sync::oneshot::Sender<()>>(4);
        tokio::spawn(async move {
            let mut batch: Vec<SpanData> = Vec::with_capacity(BATCH);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut logged = false;
            loop {
                let mut flushed = None;
                tokio::select! {
                    n = rx.recv_many(&mut batch, BATCH) => {
                        if n == 0 {
                            return;
                        }
                        if batch.len() < BATCH {
                            continue;
                        }
                    }
                    _ = tick.tick() => {}
                    f = flush_rx.recv() => {
                        while let Ok(s) = rx.try_recv() {
                            batch.push(s);
                        }
                        flushed = f;
                    }
                }
                if !batch.is_empty() {
                    let spans = std::mem::take(&mut batch);
                    let n = spans.len() as u64;
                    match tokio::time::timeout(timeout, exporter.export(spans)).await {
                        Ok(Ok(())) => {
                            METRICS.exported.inc_by(n);
                            if logged {
                                tracing::info!("trace export works again");
                                logged = false;
                            }
                        }
                        res => {
                            METRICS
                                .dropped
                                .get_or_create(&[("reason", "export_failed")])
                                .inc_by(n);
                            if !logged {
                                let why = match res {
                                    Err(_) => format!("timed out after {timeout:?}"),
                                    Ok(Err(e)) => e.to_string(),
                                    Ok(Ok(())) => String::new(),
                                };
                                tracing::warn!(error = %why, "trace export failed; spans are dropped and counted until it works");
                                logged = true;
                            }
                        }
                    }
                }
                if let Some(f) = flushed {
                    let _ = f.send(());
                }
            }
        });
        BoundedProcessor { tx, flush }
    }
}

impl SpanProcessor for BoundedProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.tx.try_send(span).is_err() {
            METRICS
                .dropped
                .get_or_create(&[("reason", "queue_full")])
                .inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let (tx, _rx) = tokio::sync::oneshot::channel();
        let _ = self.flush.try_send(tx);
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.force_flush()
    }
}

/// A running trace pipeline; flushes what it can on drop.
#[derive(Debug)]
pub struct TraceGuard {
    provider: SdkTracerProvider,
    flush: mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
}

impl TraceGuard {
    /// Sends what is queued and waits up to `timeout` for it to be exported.
    pub async fn flush(&self, timeout: Duration) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.flush.send(tx).await.is_ok() {
            let _ = tokio::time::timeout(timeout, rx).await;
        }
    }
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Builds the OTLP pipeline, or `None` when tracing is not configured. Must be called inside a
/// tokio runtime. Returns the tracer layer's tracer and a guard.
pub fn build(
    args: &TraceArgs,
    exporter_name: &str,
) -> Result<Option<(opentelemetry_sdk::trace::SdkTracer, TraceGuard)>, TraceSetupError> {
    if !args.enabled() {
        return Ok(None);
    }
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| args.protocol.clone());
    // A generic endpoint gets the signal path for HTTP, as the specification says; a
    // traces-specific endpoint variable is used as it is (the OTLP crate reads it itself).
    let explicit = if TraceArgs::traces_endpoint_env().is_some() {
        None
    } else {
        args.endpoint.clone().map(|e| {
            if protocol == "grpc" {
                e
            } else {
                format!("{}/v1/traces", e.trim_end_matches('/'))
            }
        })
    };
    let mut exporter = match protocol.as_str() {
        "grpc" => {
            let mut b = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_timeout(args.export_timeout);
            if let Some(e) = explicit {
                b = b.with_endpoint(e);
            }
            b.build()
        }
        "http/protobuf" => {
            crate::upstream::install_crypto();
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(args.export_timeout)
                .build()
                .map_err(TraceSetupError::HttpClient)?;
            let mut b = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_timeout(args.export_timeout);
            if let Some(e) = explicit {
                b = b.with_endpoint(e);
            }
            b.build()
        }
        other => {
            return Err(TraceSetupError::Protocol(other.to_string()));
        }
    }
    .map_err(TraceSetupError::Exporter)?;
    let resource = args.resource(exporter_name)?;
    exporter.set_resource(&resource);
    let processor =
        BoundedProcessor::start(exporter, args.queue_size as usize, args.export_timeout);
    let flush = processor.flush.clone();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(args.sampler())
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("ethwatch");
    Ok(Some((tracer, TraceGuard { provider, flush })))
}

/// The trace id of `span`, when it is exported and sampled (for exemplars).
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let span = cx.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled()).then(|| sc.trace_id().to_string())
}
