//! The trace pipeline as users configure it: the `ethwatch` binary with the standard
//! `OTEL_*` variables and the downward-API variables the chart sets, exporting over
//! OTLP/HTTP (protobuf) to a receiver in the test; and with the receiver down, bounded memory,
//! counted drops and unaffected metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use ethwatch_testkit::mem::rss_kib_of;
use ethwatch_testkit::scrape::Sample;
use ethwatch_testkit::{Anvil, Proc, listening, wait_port};

#[derive(Default, Debug)]
struct Received {
    paths: Vec<String>,
    resource: BTreeMap<String, String>,
    span_names: Vec<String>,
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// An OTLP/HTTP receiver: decodes protobuf export requests and answers 200.
async fn otlp_http_receiver() -> (u16, Arc<Mutex<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got = Arc::new(Mutex::new(Received::default()));
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let g = g.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 16384];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 16384];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let req = ExportTraceServiceRequest::decode(&buf[head_end..head_end + len]);
                    buf.drain(..head_end + len);
                    {
                        let mut r = g.lock().expect("lock");
                        r.paths.push(path);
                        if let Ok(req) = req {
                            for rs in req.resource_spans {
                                if let Some(res) = rs.resource {
                                    for kv in res.attributes {
                                        r.resource.insert(kv.key.clone(), text(&kv.value));
                                    }
                                }
                                for ss in rs.scope_spans {
                                    for s in ss.spans {
                                        r.span_names.push(s.name);
                                    }
                                }
                            }
                        }
                    }
                    let res = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if sock.write_all(res.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, got)
}

async fn scrape(port: u16) -> Vec<Sample> {
    ethwatch_core::upstream::install_crypto();
    ethwatch_testkit::scrape::scrape(&format!("http://127.0.0.1:{port}")).await
}

/// `ethwatch execution` polling `anvil` every `poll`, on a free port: its command and port.
fn exporter(anvil: &Anvil, poll: &str) -> (std::process::Command, u16) {
    let rpc = format!("--rpc-url={}", anvil.url());
    let poll = format!("--poll-interval={poll}");
    listening(env!("CARGO_BIN_EXE_ethwatch"), &["execution", &rpc, &poll])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_variables_configure_otlp_http_with_kubernetes_attributes() {
    let anvil = Anvil::start();
    let (otlp_port, got) = otlp_http_receiver().await;
    let (mut cmd, port) = exporter(&anvil, "250ms");
    let _ew = Proc::start(
        "ethwatch",
        cmd.env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{otlp_port}"),
        )
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_TRACES_SAMPLER", "always_on")
        .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=devnet")
        .env("POD_NAME", "el-1-reth-lighthouse-0")
        .env("POD_NAMESPACE", "kt-devnet")
        .env("NODE_NAME", "worker-1"),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        {
            let r = got.lock().expect("lock");
            if r.span_names.iter().any(|n| n == "poll") && !r.resource.is_empty() {
                assert!(
                    r.paths.iter().all(|p| p == "/v1/traces"),
                    "paths {:?}",
                    r.paths
                );
                for (key, want) in [
                    ("service.name", "ethwatch-execution"),
                    ("service.version", env!("CARGO_PKG_VERSION")),
                    ("k8s.pod.name", "el-1-reth-lighthouse-0"),
                    ("k8s.namespace.name", "kt-devnet"),
                    ("k8s.node.name", "worker-1"),
                    ("deployment.environment", "devnet"),
                ] {
                    assert_eq!(r.resource.get(key).map(String::as_str), Some(want), "{key}");
                }
                assert!(
                    r.span_names.iter().any(|n| n == "eth_getBlockByNumber"),
                    "{:?}",
                    r.span_names
                );
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no spans over OTLP/HTTP: {:?}",
            got.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = scrape(port).await;
    assert!(
        ethwatch_core::exposition::value(&s, "ethwatch_trace_spans_exported_total", &[])
            .is_some_and(|v| v > 0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_costs_counted_drops_not_memory() {
    let anvil = Anvil::start();
    // A receiver that accepts connections and never answers.
    let hole = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hole_port = hole.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });
    let (mut cmd, port) = exporter(&anvil, "100ms");
    let ew = Proc::start(
        "ethwatch",
        cmd.args(["--otel.queue-size", "64", "--otel.export-timeout", "300ms"])
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{hole_port}"),
            )
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    );
    wait_port(port, 20);
    let pid = ew.pid();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_early = rss_kib_of(pid);
    let s = scrape(port).await;
    let blocks_early =
        ethwatch_core::exposition::value(&s, "eth_el_blocks_total", &[]).expect("blocks");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let t = Instant::now();
    let s = scrape(port).await;
    let scrape_time = t.elapsed();
    let rss_late = rss_kib_of(pid);
    let dropped = ethwatch_core::exposition::value(
        &s,
        "ethwatch_trace_spans_dropped_total",
        &[("reason", "queue_full")],
    )
    .unwrap_or(0.0)
        + ethwatch_core::exposition::value(
            &s,
            "ethwatch_trace_spans_dropped_total",
            &[("reason", "export_failed")],
        )
        .unwrap_or(0.0);
    assert!(
        dropped > 100.0,
        "dropped spans must be counted, got {dropped}"
    );
    assert!(
        rss_late <= rss_early + 4 * 1024,
        "memory grew from {rss_early} KiB to {rss_late} KiB with the receiver down"
    );
    // Metrics are unaffected: the node is up, blocks keep counting, /metrics answers at once.
    assert_eq!(
        ethwatch_core::exposition::value(&s, "eth_el_up", &[]),
        Some(1.0)
    );
    let blocks_late =
        ethwatch_core::exposition::value(&s, "eth_el_blocks_total", &[]).expect("blocks");
    assert!(
        blocks_late >= blocks_early + 4.0,
        "blocks {blocks_early} -> {blocks_late}"
    );
    assert!(
        scrape_time < Duration::from_millis(500),
        "scrape took {scrape_time:?}"
    );
    eprintln!("receiver down: RSS {rss_early} KiB -> {rss_late} KiB, {dropped} spans dropped");
}
