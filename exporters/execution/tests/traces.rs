//! Traces end to end: a real OTLP/gRPC receiver (fake-opentelemetry-collector, a tonic server on
//! loopback) receives the exporter's spans while it polls a real anvil node, and a real
//! Prometheus scraping the exporter returns the same trace ids as exemplars.
//!
//! One test per binary: the tracing subscriber is global to the process.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};
use tokio_util::sync::CancellationToken;

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn tool(var: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run the tests with scripts/test.sh"))
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ethwatch_execution::ExecutionArgs,
}

fn attr<'a>(s: &'a ExportedSpan, key: &str) -> &'a str {
    s.attributes.get(key).map(String::as_str).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_and_match_the_exemplars() {
    let mut collector = FakeCollectorServer::start().await.expect("collector");
    let anvil_port = free_port();
    let _anvil = Proc(
        Command::new(tool("ETHWATCH_ANVIL"))
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &anvil_port.to_string(),
                "--block-time",
                "1",
                "--prune-history",
                "--silent",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("anvil"),
    );
    wait_port(anvil_port);

    let rpc = format!("http://127.0.0.1:{anvil_port}");
    let endpoint = collector.endpoint();
    let cli = Cli::try_parse_from([
        "t",
        "--rpc-url",
        &rpc,
        "--web.listen-address",
        "127.0.0.1:0",
        "--poll-interval",
        "300ms",
        "--otel.endpoint",
        &endpoint,
        "--otel.protocol",
        "grpc",
        "--otel.resource-attributes",
        "k8s.pod.name=el-1,k8s.namespace.name=kt-test",
    ])
    .expect("args");
    let guard = ethwatch_core::telemetry::setup(&cli.args.common, "execution")
        .expect("trace setup")
        .expect("tracing is configured");
    let token = CancellationToken::new();
    let running = ethwatch_execution::start(cli.args, token.clone())
        .await
        .expect("start");
    let base = format!("http://{}", running.addr);

    // A real Prometheus with exemplar storage scrapes the exporter every second.
    let dir = std::env::temp_dir().join(format!("ethwatch-traces-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: ethwatch\n    static_configs: [{{targets: ['{}']}}]\n",
            running.addr
        ),
    )
    .expect("config");
    let prom_port = free_port();
    let _prom = Proc(
        Command::new(tool("ETHWATCH_PROMETHEUS"))
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--enable-feature=exemplar-storage")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus"),
    );
    wait_port(prom_port);

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
    let om = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let exemplar_ids: Vec<String> = om
        .lines()
        .filter(|l| l.starts_with("eth_el_rpc_request_duration_seconds_bucket"))
        .filter_map(|l| l.split("trace_id=\"").nth(1))
        .filter_map(|r| r.split('"').next())
        .map(str::to_string)
        .collect();
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

    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), running.task).await;
    let _ = std::fs::remove_dir_all(&dir);
}
