//! Traces end to end: a real OTLP/gRPC receiver (fake-opentelemetry-collector, a tonic server on
//! loopback) receives the exporter's spans while it polls a real anvil node, and a real
//! Prometheus scraping the exporter returns the same trace ids as exemplars.
//!
//! One test per binary: the tracing subscriber is global to the process.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ethwatch_execution::ExecutionArgs;
use ethwatch_testkit::exporter::{Exporter, args};
use ethwatch_testkit::scrape::{exemplar_trace_ids, openmetrics};
use ethwatch_testkit::{Anvil, Prometheus};
use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};

fn attr<'a>(s: &'a ExportedSpan, key: &str) -> &'a str {
    s.attributes.get(key).map(String::as_str).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_and_match_the_exemplars() {
    let mut collector = FakeCollectorServer::start().await.expect("collector");
    let anvil = Anvil::start();
    let anvil_port = anvil.port;

    let rpc = anvil.url();
    let endpoint = collector.endpoint();
    let args: ExecutionArgs = args(&[
        "--rpc-url",
        &rpc,
        "--poll-interval",
        "300ms",
        "--otel.endpoint",
        &endpoint,
        "--otel.protocol",
        "grpc",
        "--otel.resource-attributes",
        "k8s.pod.name=el-1,k8s.namespace.name=kt-test",
    ]);
    let guard = ethwatch_core::telemetry::setup(&args.common, "execution")
        .expect("trace setup")
        .expect("tracing is configured");
    let exp = Exporter::start(args, ethwatch_execution::start).await;
    let base = exp.base.clone();

    // A real Prometheus with exemplar storage scrapes the exporter every second.
    let prom = Prometheus::scraping(
        &exp.addr.to_string(),
        &["--enable-feature=exemplar-storage"],
    );
    let prom_port = prom.port;

    // Let a few polls happen, then flush and collect what the receiver got.
    tokio::time::sleep(Duration::from_secs(3)).await;
    guard.flush(Duration::from_secs(5)).await;
    let spans = collector.exported_spans(30, Duration::from_secs(10)).await;
    assert!(spans.len() >= 30, "only {} spans received", spans.len());
    let by_id: HashMap<&str, &ExportedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let parent = |s: &ExportedSpan| by_id.get(s.parent_span_id.as_str()).copied();

    // Names and the tree: poll -> collect <name> -> <method>; poll -> POST.
    let polls: Vec<&ExportedSpan> = spans.iter().filter(|s| s.name == "poll").collect();
    assert!(polls.len() >= 3, "poll spans: {}", polls.len());
    assert!(
        polls.iter().all(|p| p.parent_span_id.is_empty()),
        "poll spans are roots"
    );
    let head_calls: Vec<&ExportedSpan> = spans
        .iter()
        .filter(|s| {
            s.name == "eth_getBlockByNumber" && parent(s).is_some_and(|p| p.name == "collect head")
        })
        .collect();
    assert!(
        !head_calls.is_empty(),
        "eth_getBlockByNumber spans under 'collect head'"
    );
    for call in &head_calls {
        let collect = parent(call).expect("parent");
        let poll = parent(collect).expect("collect's parent");
        assert_eq!(poll.name, "poll");
        assert_eq!(call.trace_id, poll.trace_id);
        assert_eq!(call.kind, "SPAN_KIND_CLIENT");
        assert!(
            attr(call, "rpc.system").contains("\"jsonrpc\""),
            "{:?}",
            call.attributes
        );
        assert!(attr(call, "rpc.method").contains("\"eth_getBlockByNumber\""));
        assert!(attr(call, "rpc.jsonrpc.version").contains("\"2.0\""));
    }
    // Every method of the batch is visible, each under its collector.
    for (method, collector_name) in [
        ("eth_syncing", "collect sync"),
        ("txpool_status", "collect txpool"),
        ("eth_chainId", "collect info"),
        ("web3_clientVersion", "collect info"),
    ] {
        assert!(
            spans
                .iter()
                .any(|s| s.name == method && parent(s).is_some_and(|p| p.name == collector_name)),
            "{method} under {collector_name}"
        );
    }
    // anvil lacks net_peerCount: the span carries the JSON-RPC error code and an error status.
    let peers = spans
        .iter()
        .find(|s| s.name == "net_peerCount")
        .expect("net_peerCount span");
    assert!(
        attr(peers, "rpc.jsonrpc.error_code").contains("-32601"),
        "{:?}",
        peers.attributes
    );
    assert!(
        peers
            .status
            .as_ref()
            .is_some_and(|st| st.code == "STATUS_CODE_ERROR"),
        "{:?}",
        peers.status
    );
    // The HTTP exchange: a client span under the poll with the HTTP attributes.
    let post = spans.iter().find(|s| s.name == "POST").expect("POST span");
    assert_eq!(parent(post).map(|p| p.name.as_str()), Some("poll"));
    assert!(attr(post, "http.request.method").contains("\"POST\""));
    assert!(
        attr(post, "http.response.status_code").contains("200"),
        "{:?}",
        post.attributes
    );
    assert!(attr(post, "server.address").contains("\"127.0.0.1\""));
    assert!(attr(post, "server.port").contains(&anvil_port.to_string()));

    // Exemplars on /metrics (OpenMetrics) name exported traces.
    let trace_ids: HashSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
    let om = openmetrics(&base).await;
    let exemplar_ids = exemplar_trace_ids(&om, "eth_el_rpc_request_duration_seconds_bucket");
    assert!(!exemplar_ids.is_empty(), "no exemplars on /metrics:\n{om}");
    assert!(
        exemplar_ids
            .iter()
            .any(|id| trace_ids.contains(id.as_str())),
        "exemplar trace ids {exemplar_ids:?} are not among the exported traces"
    );

    // Prometheus stores and returns them from /api/v1/query_exemplars.
    let deadline = Instant::now() + Duration::from_secs(20);
    let prom_ids: Vec<String> = loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs();
        let url = format!(
            "http://127.0.0.1:{prom_port}/api/v1/query_exemplars?query=eth_el_rpc_request_duration_seconds_bucket&start={}&end={}",
            now - 600,
            now + 60
        );
        let v: serde_json::Value = match reqwest::get(&url).await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        let ids: Vec<String> = v["data"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|series| series["exemplars"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_string))
            .collect();
        if !ids.is_empty() {
            break ids;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus returned no exemplars: {v}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Flush again so the traces Prometheus saw are exported, then compare.
    guard.flush(Duration::from_secs(5)).await;
    let more = collector.exported_spans(1, Duration::from_secs(3)).await;
    let all_ids: HashSet<String> = spans
        .iter()
        .chain(more.iter())
        .map(|s| s.trace_id.clone())
        .collect();
    let known = prom_ids.iter().filter(|id| all_ids.contains(*id)).count();
    assert!(
        known > 0,
        "none of Prometheus' exemplar trace ids {prom_ids:?} were exported"
    );

    exp.stop().await;
}
