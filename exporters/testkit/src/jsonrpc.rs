//! A misbehaving JSON-RPC node for tests, on `127.0.0.1:0`.
//!
//! [`FakeNode`] serves a tiny in-memory chain (blocks with parent links, `latest`, `safe`,
//! `finalized`, by number and by hash, sync status, peers, txpool, chain id, network id, client
//! version, batches) and can be switched at run time to misbehave in one of the ways a real node,
//! proxy or load balancer does: see [`Mode`]. Large and endless bodies are streamed from one
//! static chunk, so the server itself allocates nothing per byte sent.
//!
//! [`replay`] serves one fixed body to every request (recorded responses); [`serve`] answers
//! every call with a function of it (batches call by call).
//!
//! (Over 600 lines: the three servers share the response body type and the JSON-RPC framing;
//! apart, each would need the other's internals made public.)

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How the node answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Correct answers from the in-memory chain.
    Correct,
    /// HTTP 200 whose body is not JSON.
    Garbage,
    /// Bytes that are not HTTP at all, then the connection is closed.
    NotHttp,
    /// The connection is accepted and closed at once.
    Reset,
    /// This HTTP status (500, 429, ...) with a short text body.
    Status(u16),
    /// Well-formed JSON-RPC answers whose ids match no request.
    WrongIds,
    /// A 100 MB body, announced with `Content-Length` or chunked.
    Huge { content_length: bool },
    /// A chunked body that never ends, as fast as the client reads.
    Endless,
    /// A body that never ends, one byte every 50 ms.
    Trickle,
    /// The connection is accepted and never answered (the request is not even read).
    Hang,
    /// Correct framing, but every quantity is invalid hex (`"0xzz"`).
    InvalidHex,
    /// Correct framing, but every quantity is 2^64, one beyond `u64`.
    BeyondU64,
}

impl Mode {
    /// Modes decided when the connection is accepted, before any HTTP.
    fn tcp_level(self) -> bool {
        matches!(self, Mode::NotHttp | Mode::Reset | Mode::Hang)
    }
}

/// How correct quantities are written: the spec's hex, or the decimal strings and JSON numbers
/// some clients and proxies send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Hex,
    Decimal,
    Number,
}

/// The size of the huge body.
pub const HUGE_BODY_BYTES: u64 = 100 * 1024 * 1024;
/// Chain id and network id of the fake chain.
pub const CHAIN_ID: u64 = 31337;
/// Peers the fake node reports.
pub const PEERS: u64 = 5;
/// Pending and queued transactions the fake node reports.
pub const TXPOOL: (u64, u64) = (3, 1);
/// The fake node's `web3_clientVersion`.
pub const CLIENT_VERSION: &str = "Geth/v1.14.11-stable-f3c696fa/linux-amd64/go1.23.2";
/// `finalized` and `safe` trail the head by this many blocks.
pub const FINALIZED_LAG: u64 = 4;
pub const SAFE_LAG: u64 = 2;

static CHUNK: [u8; 64 * 1024] = [b'0'; 64 * 1024];

struct Shared {
    mode: watch::Sender<Mode>,
    chain: Mutex<Chain>,
}

struct Chain {
    head: u64,
    /// Timestamp of block 0; block `n` is `genesis_time + 2 n`.
    genesis_time: u64,
    style: Style,
    unsupported: HashSet<String>,
}

/// A running fake node. The server stops with the test's runtime.
pub struct FakeNode {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeNode {
    /// Starts a node whose chain has blocks `0..=head`, the head timestamped now.
    pub async fn start(head: u64) -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake node");
        let addr = listener.local_addr().expect("local addr");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let shared = Arc::new(Shared {
            mode: watch::Sender::new(Mode::Correct),
            chain: Mutex::new(Chain {
                head,
                genesis_time: now.saturating_sub(2 * head),
                style: Style::Hex,
                unsupported: HashSet::new(),
            }),
        });
        tokio::spawn(accept_loop(listener, shared.clone()));
        FakeNode { addr, shared }
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// `127.0.0.1:PORT`, to find this node in log lines.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// Switches behaviour. Connections held by a TCP-level mode are dropped; open HTTP
    /// connections are dropped when the new mode is decided at the TCP level.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.send_replace(mode);
    }

    /// Appends `n` blocks.
    pub fn mine(&self, n: u64) {
        self.chain().head += n;
    }

    /// The head block number.
    pub fn head(&self) -> u64 {
        self.chain().head
    }

    /// How correct quantities are written.
    pub fn set_style(&self, style: Style) {
        self.chain().style = style;
    }

    /// Makes `method` answer -32601 (or work again).
    pub fn set_unsupported(&self, method: &str, unsupported: bool) {
        let mut c = self.chain();
        if unsupported {
            c.unsupported.insert(method.to_string());
        } else {
            c.unsupported.remove(method);
        }
    }

    fn chain(&self) -> std::sync::MutexGuard<'_, Chain> {
        self.shared.chain.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let mut rx = shared.mode.subscribe();
        let mode = *rx.borrow_and_update();
        tokio::spawn(serve_connection(stream, shared.clone(), mode, rx));
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    shared: Arc<Shared>,
    mode: Mode,
    mut rx: watch::Receiver<Mode>,
) {
    match mode {
        Mode::Reset => drop(stream),
        Mode::NotHttp => {
            let _ = stream
                .write_all(b"\x16\x03\x01 SSH-2.0-not-http \xff\xfe\r\n\r\n")
                .await;
        }
        Mode::Hang => {
            // Hold the connection, unread, until the behaviour changes.
            let _ = rx.changed().await;
            drop(stream);
        }
        _ => {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(req, &shared).await) }
            });
            let conn = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            loop {
                tokio::select! {
                    _ = conn.as_mut() => return,
                    changed = rx.changed() => {
                        // A pooled keep-alive connection must not outlive a switch to a mode
                        // that is decided when a connection is accepted.
                        if changed.is_err() || rx.borrow_and_update().tcp_level() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

async fn handle(req: Request<Incoming>, shared: &Shared) -> Response<FakeBody> {
    let mode = *shared.mode.borrow();
    match mode {
        Mode::Garbage => respond(
            StatusCode::OK,
            FakeBody::full(&b"\x00\xff<html>502 Bad Gateway</html> {\"jsonrpc\": oops"[..]),
        ),
        Mode::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut res = respond(
                status,
                FakeBody::full(&b"the node is having a bad day\n"[..]),
            );
            if code == 429 {
                res.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            res
        }
        Mode::Huge { content_length } => respond(
            StatusCode::OK,
            FakeBody::stream(
                &b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"0x"[..],
                Some(HUGE_BODY_BYTES),
                None,
                content_length,
            ),
        ),
        Mode::Endless => respond(
            StatusCode::OK,
            FakeBody::stream(
                &b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"0x"[..],
                None,
                None,
                false,
            ),
        ),
        Mode::Trickle => respond(
            StatusCode::OK,
            FakeBody::stream(
                &b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":"[..],
                None,
                Some(Duration::from_millis(50)),
                false,
            ),
        ),
        Mode::Correct | Mode::WrongIds | Mode::InvalidHex | Mode::BeyondU64 => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return respond(StatusCode::BAD_REQUEST, FakeBody::full(&b""[..])),
            };
            let answer = match serde_json::from_slice::<Value>(&body) {
                Ok(request) => {
                    let chain = shared.chain.lock().unwrap_or_else(|e| e.into_inner());
                    let q = match mode {
                        Mode::InvalidHex => Quantities::InvalidHex,
                        Mode::BeyondU64 => Quantities::BeyondU64,
                        _ => Quantities::Good(chain.style),
                    };
                    answer_packet(&chain, q, mode == Mode::WrongIds, &request)
                }
                Err(_) => rpc_error(Value::Null, -32700, "parse error"),
            };
            respond(
                StatusCode::OK,
                FakeBody::full(serde_json::to_vec(&answer).expect("encode answer")),
            )
        }
        // Decided when the connection was accepted; a request can still arrive on a connection
        // accepted just before the switch.
        Mode::NotHttp | Mode::Reset | Mode::Hang => std::future::pending().await,
    }
}

fn respond(status: StatusCode, body: FakeBody) -> Response<FakeBody> {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

#[derive(Clone, Copy)]
enum Quantities {
    Good(Style),
    InvalidHex,
    BeyondU64,
}

impl Quantities {
    fn q(self, n: u64) -> Value {
        match self {
            Quantities::Good(Style::Hex) => Value::String(format!("{n:#x}")),
            Quantities::Good(Style::Decimal) => Value::String(n.to_string()),
            Quantities::Good(Style::Number) => json!(n),
            Quantities::InvalidHex => Value::String("0xzz".into()),
            Quantities::BeyondU64 => Value::String("0x10000000000000000".into()),
        }
    }
}

fn answer_packet(chain: &Chain, q: Quantities, wrong_ids: bool, request: &Value) -> Value {
    match request {
        Value::Array(calls) if calls.is_empty() => rpc_error(Value::Null, -32600, "empty batch"),
        Value::Array(calls) => Value::Array(
            calls
                .iter()
                .map(|c| answer_call(chain, q, wrong_ids, c))
                .collect(),
        ),
        call => answer_call(chain, q, wrong_ids, call),
    }
}

fn answer_call(chain: &Chain, q: Quantities, wrong_ids: bool, call: &Value) -> Value {
    let mut id = call.get("id").cloned().unwrap_or(Value::Null);
    if wrong_ids {
        id = json!(id.as_u64().unwrap_or(0) + 1_000_000);
    }
    let method = call.get("method").and_then(Value::as_str).unwrap_or("");
    let params = call.get("params").cloned().unwrap_or(Value::Null);
    if chain.unsupported.contains(method) {
        return rpc_error(
            id,
            -32601,
            &format!("the method {method} does not exist/is not available"),
        );
    }
    let result = match method {
        "eth_getBlockByNumber" => {
            let head = chain.head;
            let n = match params.get(0).and_then(Value::as_str) {
                Some("latest" | "pending") => Some(head),
                Some("safe") => Some(head.saturating_sub(SAFE_LAG)),
                Some("finalized") => Some(head.saturating_sub(FINALIZED_LAG)),
                Some("earliest") => Some(0),
                Some(hex) => hex
                    .strip_prefix("0x")
                    .and_then(|h| u64::from_str_radix(h, 16).ok()),
                None => None,
            };
            match n {
                Some(n) if n <= head => block(chain, q, n),
                _ => Value::Null,
            }
        }
        "eth_getBlockByHash" => {
            let wanted = params.get(0).and_then(Value::as_str).unwrap_or("");
            (0..=chain.head)
                .find(|n| block_hash(*n) == wanted)
                .map_or(Value::Null, |n| block(chain, q, n))
        }
        "eth_blockNumber" => q.q(chain.head),
        "eth_syncing" => Value::Bool(false),
        "net_peerCount" => q.q(PEERS),
        "txpool_status" => json!({ "pending": q.q(TXPOOL.0), "queued": q.q(TXPOOL.1) }),
        "eth_chainId" => q.q(CHAIN_ID),
        // net_version is a decimal string in every client; only the broken modes change it.
        "net_version" => match q {
            Quantities::Good(_) => Value::String(CHAIN_ID.to_string()),
            bad => bad.q(CHAIN_ID),
        },
        "web3_clientVersion" => Value::String(CLIENT_VERSION.into()),
        _ => {
            return rpc_error(
                id,
                -32601,
                &format!("the method {method} does not exist/is not available"),
            );
        }
    };
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

fn rpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

/// The hash of block `n` (distinct per block, never zero).
pub fn block_hash(n: u64) -> String {
    format!("{:#066x}", (u128::from(n) << 64) | 0xe7e7_0000_0000_0001)
}

/// Transactions in block `n`.
pub fn block_transactions(n: u64) -> u64 {
    n % 4
}

/// Base fee of block `n`, in wei.
pub fn block_base_fee(n: u64) -> u64 {
    1_000_000_000 + n
}

fn block(chain: &Chain, q: Quantities, n: u64) -> Value {
    let parent = if n == 0 {
        format!("{:#066x}", 0)
    } else {
        block_hash(n - 1)
    };
    let txs: Vec<String> = (0..block_transactions(n))
        .map(|i| format!("{:#066x}", (u128::from(n) << 16) | u128::from(i)))
        .collect();
    json!({
        "number": q.q(n),
        "hash": block_hash(n),
        "parentHash": parent,
        "timestamp": q.q(chain.genesis_time + 2 * n),
        "gasUsed": q.q(21_000 * block_transactions(n)),
        "gasLimit": q.q(30_000_000),
        "baseFeePerGas": q.q(block_base_fee(n)),
        "miner": "0x0000000000000000000000000000000000000000",
        "extraData": "0x",
        "transactions": txs,
    })
}

/// A response body: a fixed prefix, then a static chunk repeated up to a total (or forever),
/// optionally one byte per `delay`.
pub struct FakeBody {
    prefix: Option<Bytes>,
    /// Bytes after the prefix still to send; `None` is endless.
    remaining: Option<u64>,
    delay: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Announce the length (hyper then writes `Content-Length` instead of chunks).
    exact: bool,
}

impl FakeBody {
    fn full(bytes: impl Into<Bytes>) -> FakeBody {
        FakeBody {
            prefix: Some(bytes.into()),
            remaining: Some(0),
            delay: None,
            sleep: None,
            exact: true,
        }
    }

    fn stream(
        prefix: &'static [u8],
        total: Option<u64>,
        delay: Option<Duration>,
        exact: bool,
    ) -> FakeBody {
        FakeBody {
            prefix: Some(Bytes::from_static(prefix)),
            remaining: total.map(|t| t.saturating_sub(prefix.len() as u64)),
            delay,
            sleep: None,
            exact: exact && total.is_some(),
        }
    }
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if let Some(p) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        if this.remaining == Some(0) {
            return Poll::Ready(None);
        }
        let mut max = CHUNK.len();
        if let Some(d) = this.delay {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
            max = 1;
        }
        let n = this.remaining.map_or(max, |r| r.min(max as u64) as usize);
        if let Some(r) = &mut this.remaining {
            *r -= n as u64;
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match (self.exact, self.remaining) {
            (true, Some(r)) => {
                SizeHint::with_exact(r + self.prefix.as_ref().map_or(0, |p| p.len() as u64))
            }
            _ => SizeHint::default(),
        }
    }
}

/// A server that answers every request with `body` (a recorded response), HTTP 200.
pub async fn replay(body: impl Into<Bytes>) -> String {
    let body: Bytes = body.into();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind replay");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let body = body.clone();
                    async move {
                        let _ = req.into_body().collect().await;
                        Ok::<_, Infallible>(respond(StatusCode::OK, FakeBody::full(body)))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}/")
}

/// A JSON-RPC server on `addr` (`127.0.0.1:0` for any port) that answers every call with
/// `answer(call)`, a batch call by call; returns where it listens. It runs until the runtime ends.
pub async fn serve_on(
    addr: &str,
    answer: impl Fn(&Value) -> Value + Send + Sync + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let answer = answer.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let out = match body.ok().and_then(|b| serde_json::from_slice(&b).ok()) {
                            Some(Value::Array(calls)) => {
                                Value::Array(calls.iter().map(|c| answer(c)).collect())
                            }
                            Some(call) => answer(&call),
                            None => rpc_error(Value::Null, -32700, "parse error"),
                        };
                        let bytes = serde_json::to_vec(&out).expect("encode answer");
                        Ok::<_, Infallible>(respond(StatusCode::OK, FakeBody::full(bytes)))
                    }
                });
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// [`serve_on`] a free loopback port; returns `http://127.0.0.1:PORT`.
pub async fn serve(answer: impl Fn(&Value) -> Value + Send + Sync + 'static) -> String {
    let addr = serve_on("127.0.0.1:0", answer)
        .await
        .expect("bind JSON-RPC server");
    format!("http://{addr}")
}

/// A JSON-RPC result for `call`.
pub fn result(call: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": call["id"], "result": result})
}

/// A JSON-RPC error for `call`.
pub fn error(call: &Value, code: i64, message: &str) -> Value {
    rpc_error(call["id"].clone(), code, message)
}

/// The exporter's own JSON-RPC client talking to a [`replay`] server of `body` (a fresh client
/// numbers its first request 1, like the recordings), and its request metrics.
pub async fn replay_client(
    body: impl Into<Bytes>,
) -> (
    ethwatch_execution::rpc::RpcClient,
    ethwatch_core::upstream::RequestMetrics,
) {
    use ethwatch_core::upstream::{RequestMetrics, Upstream, UpstreamOptions};
    let url = replay(body).await;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = RequestMetrics::register(&mut registry, "method", "d", "d", "e", "e");
    let upstream = Upstream::new(
        &url::Url::parse(&url).expect("url"),
        UpstreamOptions::default(),
        metrics.clone(),
    )
    .expect("upstream");
    (ethwatch_execution::rpc::RpcClient::new(upstream), metrics)
}
