//! Traces of the consensus exporter reach a real OTLP/gRPC receiver: a `poll` root per cycle, a
//! child per collector run, the HTTP client spans of the Beacon API calls under them, the event
//! stream's (re)connection as a span, and trace ids as exemplars on the latency histogram.
//! One test per binary: the tracing subscriber is global to the process.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ethwatch_consensus::ConsensusArgs;
use ethwatch_testkit::beacon::{FakeBeacon, Stream, head_event, healthy};
use ethwatch_testkit::exporter::{Exporter, args};
use ethwatch_testkit::scrape::{exemplar_trace_ids, openmetrics};
use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_runs_and_api_calls_are_spans_linked_to_exemplars() {
    let mut collector = FakeCollectorServer::start().await.expect("collector");
    let fake = FakeBeacon::start().await;
    let genesis = ethwatch_core::unix_now() as u64 - 100;
    let slot = 50;
    fake.set_all(healthy(genesis, slot));
    fake.stream(Stream::Send(head_event(slot).into_bytes()));

    let endpoint = collector.endpoint();
    let args: ConsensusArgs = args(&[
        "--beacon-url",
        &fake.url,
        "--poll-interval",
        "300ms",
        "--collector.validators=false",
        "--otel.endpoint",
        &endpoint,
        "--otel.protocol",
        "grpc",
    ]);
    let guard = ethwatch_core::telemetry::setup(&args.common, "consensus")
        .expect("setup")
        .expect("tracing configured");
    let exp = Exporter::start(args, ethwatch_consensus::start).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    guard.flush(Duration::from_secs(5)).await;
    let spans = collector.exported_spans(20, Duration::from_secs(10)).await;
    let by_id: HashMap<&str, &ExportedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let parent = |s: &ExportedSpan| by_id.get(s.parent_span_id.as_str()).copied();

    assert!(
        spans
            .iter()
            .any(|s| s.name == "poll" && s.parent_span_id.is_empty()),
        "a poll root span"
    );
    for c in ["sync", "health", "head", "finality"] {
        let name = format!("collect {c}");
        assert!(
            spans
                .iter()
                .any(|s| s.name == name && parent(s).is_some_and(|p| p.name == "poll")),
            "{name} under poll"
        );
    }
    let health = spans
        .iter()
        .find(|s| {
            s.name == "GET /eth/v1/node/health"
                && parent(s).is_some_and(|p| p.name == "collect health")
        })
        .expect("the health call's HTTP span under its collector");
    assert_eq!(health.kind, "SPAN_KIND_CLIENT");
    assert!(
        health
            .attributes
            .get("http.response.status_code")
            .is_some_and(|v| v.contains("200")),
        "{:?}",
        health.attributes
    );
    assert!(
        health
            .attributes
            .get("url.template")
            .is_some_and(|v| v.contains("/eth/v1/node/health"))
    );
    assert!(
        spans.iter().any(|s| s.name == "event stream connect"),
        "the stream's connection is a span"
    );

    let om = openmetrics(&exp.base).await;
    let trace_ids: HashSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
    let exemplars = exemplar_trace_ids(&om, "eth_cl_api_request_duration_seconds_bucket");
    assert!(
        !exemplars.is_empty(),
        "exemplars on the Beacon API latency histogram"
    );
    assert!(
        exemplars.iter().any(|id| trace_ids.contains(id.as_str())),
        "exemplars name exported traces"
    );
    exp.stop().await;
}
