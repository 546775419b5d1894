//! The HTTP listener against hostile and broken clients (issue 15, items 2 to 4): raw TCP
//! clients on loopback against [`ethwatch_core::server::serve`] with short limits.
//!
//! Each test asserts what a client can observe: the server closes the connection (a read gives
//! EOF or a reset) within a bound, answers 431 or 503, or `serve` returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ethwatch_core::metrics::CollectorStatus;
use ethwatch_core::server::{ServeOptions, ServerMetrics, ServerState, serve};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A collector writing `n` series, to make `/metrics` as large as needed.
#[derive(Debug)]
struct Big(usize);

impl Collector for Big {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut m = enc.encode_descriptor("big", "Padding", None, MetricType::Gauge)?;
        for i in 0..self.0 {
            let v = i.to_string();
            ConstGauge::new(1i64).encode(m.encode_family(&[("i", v.as_str())])?)?;
        }
        Ok(())
    }
}

struct Server {
    addr: std::net::SocketAddr,
    token: CancellationToken,
    task: JoinHandle<()>,
}

async fn start(opts: ServeOptions, series: usize) -> Server {
    let mut registry = Registry::default();
    let metrics = ServerMetrics::register(&mut registry);
    let status = CollectorStatus::register(&mut registry);
    if series > 0 {
        registry.register_collector(Box::new(Big(series)));
    }
    let state = Arc::new(ServerState {
        registry,
        telemetry_path: "/metrics".into(),
        readiness: Arc::new(|| Ok(())),
        exporter: "test",
        upstream: "none".into(),
        status,
        metrics,
        web: Default::default(),
        pages: None,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let token = CancellationToken::new();
    let task = tokio::spawn(serve(listener, state, opts, token.clone()));
    Server { addr, token, task }
}

fn opts() -> ServeOptions {
    ServeOptions {
        max_requests: 40,
        max_connections: 64,
        read_header_timeout: Duration::from_millis(600),
        idle_timeout: Duration::from_millis(800),
        shutdown_timeout: Duration::from_millis(500),
    }
}

/// Reads until EOF or an error; returns what was read and when the connection ended, or `None`
/// if it is still open after `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<(Vec<u8>, Duration)> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((got, start.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One request on a fresh connection; returns the status code.
async fn get(addr: std::net::SocketAddr, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let (body, _) = closed_within(&mut s, Duration::from_secs(10))
        .await
        .expect("answer");
    status_of(&body)
}

fn status_of(resp: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(&resp[..resp.len().min(64)]);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// `/metrics` of the server, parsed.
async fn scrape(addr: std::net::SocketAddr) -> Vec<ethwatch_core::exposition::Sample> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let (body, _) = closed_within(&mut s, Duration::from_secs(10))
        .await
        .expect("answer");
    ethwatch_core::exposition::parse(&String::from_utf8_lossy(&body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_header_is_cut_at_the_header_timeout() {
    let srv = start(opts(), 0).await;
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")
        .await
        .expect("write");
    // Keep sending a header byte every 100 ms: the connection is never idle, the head never ends.
    let mut w = s;
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if w.write_all(b"X").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    let start = Instant::now();
    let cut = tokio::time::timeout(Duration::from_secs(5), trickle)
        .await
        .ok()
        .and_then(Result::ok);
    assert_eq!(
        cut,
        Some(true),
        "a head trickled for {:?} was not cut (header timeout 600 ms)",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let m = scrape(srv.addr).await;
    assert_eq!(
        ethwatch_core::exposition::value(
            &m,
            "ethwatch_http_closed_connections_total",
            &[("reason", "header_timeout")]
        ),
        Some(1.0)
    );
    srv.token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let srv = start(opts(), 0).await;
    // A connection that never sends anything.
    let mut silent = TcpStream::connect(srv.addr).await.expect("connect");
    // A keep-alive connection after one answered request.
    let mut kept = TcpStream::connect(srv.addr).await.expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.expect("read");
    assert_eq!(status_of(&buf[..n]), 200);
    let a = closed_within(&mut silent, Duration::from_secs(4)).await;
    let b = closed_within(&mut kept, Duration::from_secs(4)).await;
    assert!(a.is_some(), "a silent connection stayed open");
    assert!(b.is_some(), "an idle keep-alive connection stayed open");
    srv.token.cancel();
}

/// At the cap, a new client is served by evicting the connection that waited longest without
/// being answered: hostile idle connections cannot lock a scraper out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_longest_waiting_connection_makes_room() {
    let srv = start(
        ServeOptions {
            max_connections: 5,
            idle_timeout: Duration::from_secs(30),
            read_header_timeout: Duration::from_secs(30),
            ..opts()
        },
        0,
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(srv.addr).await.expect("connect"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A scrape while 5 silent connections fill the cap is served.
    assert_eq!(get(srv.addr, "/healthz").await, 200);
    // The oldest silent connection was closed for it; the newest ones are still open.
    assert!(
        closed_within(&mut held[0], Duration::from_secs(1))
            .await
            .is_some(),
        "the oldest idle connection was not evicted"
    );
    assert!(
        closed_within(&mut held[4], Duration::from_millis(200))
            .await
            .is_none(),
        "a newer connection was evicted instead of the oldest"
    );
    let m = scrape(srv.addr).await;
    assert_eq!(
        ethwatch_core::exposition::value(
            &m,
            "ethwatch_http_closed_connections_total",
            &[("reason", "evicted")]
        ),
        Some(1.0),
        "one eviction for the probe (the scrape found room after it)"
    );
    srv.token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_header_gets_431() {
    let srv = start(opts(), 0).await;
    let mut s = TcpStream::connect(srv.addr).await.expect("connect");
    let mut req = b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Pad: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 64 * 1024));
    req.extend_from_slice(b"\r\n\r\n");
    let _ = s.write_all(&req).await;
    let (resp, _) = closed_within(&mut s, Duration::from_secs(3))
        .await
        .expect("the connection stayed open");
    assert_eq!(
        status_of(&resp),
        431,
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    srv.token.cancel();
}

/// A client that asks for `/metrics` and does not read the answer keeps its request counted: with
/// `--web.max-requests 1` a second scrape gets 503, probes still get 200, and once the first
/// answer is read the next scrape is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_counts_requests_until_answered() {
    // About 12 MB of exposition: more than the socket buffers hold.
    let srv = start(
        ServeOptions {
            max_requests: 1,
            idle_timeout: Duration::from_secs(30),
            read_header_timeout: Duration::from_secs(30),
            ..opts()
        },
        500_000,
    )
    .await;
    let sock = TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut slow = sock.connect(srv.addr).await.expect("connect");
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    // Wait until the answer has started: the first bytes arrive.
    let mut first = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(20), slow.read(&mut first))
        .await
        .expect("first bytes")
        .expect("read");
    assert_eq!(status_of(&first[..n]), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(
        get(srv.addr, "/metrics").await,
        503,
        "a second scrape was served while the first was still being answered"
    );
    assert_eq!(
        get(srv.addr, "/healthz").await,
        200,
        "probes are not counted"
    );
    assert_eq!(
        get(srv.addr, "/readyz").await,
        200,
        "probes are not counted"
    );

    // Read the first answer to its end; then scrapes are served again.
    let mut sink = vec![0u8; 1 << 20];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut sink))
            .await
            .expect("reading the first answer")
            .expect("read");
        if m == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "answer never ended");
    }
    drop(slow);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(srv.addr, "/metrics").await, 200);
    srv.token.cancel();
}

/// Shutdown ends within the drain deadline even while a client holds a half-sent request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_whatever_clients_do() {
    let srv = start(
        ServeOptions {
            read_header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_millis(500),
            ..opts()
        },
        0,
    )
    .await;
    let mut half = TcpStream::connect(srv.addr).await.expect("connect");
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Half: ")
        .await
        .expect("write");
    let _idle = TcpStream::connect(srv.addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    srv.token.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(5), srv.task).await;
    assert!(
        ended.is_ok(),
        "serve did not return within 5 s of shutdown (drain deadline 500 ms)"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(
        closed_within(&mut half, Duration::from_secs(1))
            .await
            .is_some()
    );
}

/// Thousands of connections each holding an unfinished head: memory stays bounded because the
/// cap closes the excess and each held connection buffers at most the header limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_unfinished_heads_are_capped() {
    let srv = start(
        ServeOptions {
            max_connections: 100,
            read_header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            ..opts()
        },
        0,
    )
    .await;
    let mut conns = Vec::new();
    for _ in 0..1000 {
        match TcpStream::connect(srv.addr).await {
            Ok(mut s) => {
                let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nX-Big: ").await;
                let _ = s.write_all(&[b'a'; 12 * 1024]).await;
                conns.push(s);
            }
            Err(_) => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Every connection beyond the cap was closed; the server still answers.
    let mut open = 0;
    for s in &mut conns {
        let mut b = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(5), s.read(&mut b))
            .await
            .is_err()
        {
            open += 1;
        }
    }
    assert!(open <= 100, "{open} connections held open (cap 100)");
    drop(conns);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(srv.addr, "/healthz").await, 200);
    srv.token.cancel();
}
