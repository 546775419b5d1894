//! The exporter's HTTP server: `/metrics`, `/healthz`, `/readyz` and a landing page at `/`.
//!
//! Over 600 lines on purpose: the listener's defences (the accept loop, the per-connection clock,
//! the I/O wrapper that feeds it, the open-connection cap and eviction, the bounded drain) act
//! together on every connection, and are reviewed as one piece.
//!
//! It sits in a node's pod with a small memory limit and must survive hostile or broken clients:
//! every connection has a deadline (the request head within `--web.read-header-timeout` of its
//! first byte, the next request or any progress within `--web.idle-timeout`), the number of open
//! connections and the head's size are capped, requests are limited by `--web.max-requests`,
//! failed accepts back off and log once per interval, and shutdown closes whatever is left after
//! `--web.shutdown-timeout`.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::CollectorStatus;

/// OpenMetrics text, which carries exemplars.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The classic Prometheus text format, for clients that do not ask for OpenMetrics.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites OpenMetrics text into the classic Prometheus text format (what `promtool check
/// metrics`, curl and older scrapers read): counter and info families are named with their
/// `_total`/`_info` suffix, state sets become gauges, `# UNIT`, `# EOF` and exemplars are dropped.
pub fn to_prometheus_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    // OpenMetrics puts HELP before TYPE; hold it until the TYPE tells the family's suffix.
    let mut help: Option<(&str, &str)> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, help.take(), "");
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (suffix, kind) = match kind {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "stateset" | "gaugehistogram" => ("", "gauge"),
                k @ ("gauge" | "histogram" | "summary") => ("", k),
                _ => ("", "untyped"),
            };
            match help.take() {
                Some(h) if h.0 == name => flush_help(&mut out, Some(h), suffix),
                other => flush_help(&mut out, other, ""),
            }
            let _ = writeln!(out, "# TYPE {name}{suffix} {kind}");
            continue;
        }
        flush_help(&mut out, help.take(), "");
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        out.push_str(crate::exposition::strip_exemplar(line));
        out.push('\n');
    }
    flush_help(&mut out, help, "");
    out
}

fn flush_help(out: &mut String, help: Option<(&str, &str)>, suffix: &str) {
    if let Some((name, text)) = help {
        let _ = writeln!(out, "# HELP {name}{suffix} {text}");
    }
}

/// Decides readiness: `Ok` when ready, `Err(reason)` when not. The reason is the sentence the
/// `/readyz` body carries, for a person to read; nothing matches on it, so it stays a `String`.
pub type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A response of an exporter's own route.
#[derive(Debug, Clone)]
pub struct Page {
    /// HTTP status code.
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// What an exporter adds to the server: live values beside the landing page's collector table,
/// and routes of its own (asked before the built-in `/healthz`, `/readyz` and `/`, after the
/// telemetry path). Both read in-memory state only, like `/metrics`.
pub trait Pages: Send + Sync {
    /// HTML shown on the landing page above the collector table (escaped by the implementor).
    fn landing_html(&self) -> Option<String> {
        None
    }
    /// The answer for `path`, or `None` to leave it to the built-in routes.
    fn route(&self, _path: &str) -> Option<Page> {
        None
    }
}

/// Everything the server needs to answer.
pub struct ServerState {
    /// The registry `/metrics` encodes. Encoding reads in-memory state only.
    pub registry: Registry,
    /// Where metrics are served (`--web.telemetry-path`).
    pub telemetry_path: String,
    /// `/readyz` answers 200 when this returns `Ok`.
    pub readiness: ReadinessCheck,
    /// For the landing page: which exporter this is.
    pub exporter: &'static str,
    /// For the landing page: the node's URL, credentials redacted.
    pub upstream: String,
    /// For the landing page: collector status.
    pub status: CollectorStatus,
    /// The listener's own counters (`ethwatch_http_*`).
    pub metrics: ServerMetrics,
    /// TLS and basic auth from `--web.config.file` (none by default).
    pub web: crate::webconfig::WebConfig,
    /// The exporter's live values and own routes, if any.
    pub pages: Option<Arc<dyn Pages>>,
}

/// Largest request head (request line and headers) accepted; a larger one gets 431 and the
/// connection is closed. Prometheus, kubelet probes and curl send well under 1 KiB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The read buffer of one connection is capped at this (hyper's minimum is 8 KiB), so an
/// unfinished head costs at most this much memory.
const MAX_BUF_BYTES: usize = MAX_HEADER_BYTES + 1024;

/// Response bodies are handed to the connection in pieces of this size, so a client that reads
/// slowly keeps its request counted (see `--web.max-requests`) until most of it is sent.
const BODY_CHUNK: usize = 64 * 1024;

/// How failed `accept` calls are reported at most: one line per this interval, with the count.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The listener's limits, from the `--web.*` flags.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Requests served at once (`--web.max-requests`); `/metrics` and `/` beyond it get 503.
    /// `/healthz` and `/readyz` are not counted, so probes keep working under a scrape flood.
    pub max_requests: usize,
    /// Open connections at once (`--web.max-connections`). When that many are open, a new one
    /// makes room by closing the connection that has waited longest without being answered
    /// (idle, or its head still arriving); if every one is being answered, the new one is closed.
    pub max_connections: usize,
    /// The request head must arrive within this from its first byte (`--web.read-header-timeout`).
    pub read_header_timeout: Duration,
    /// A connection waiting for its next request, or on which no byte moves while answering, is
    /// closed after this (`--web.idle-timeout`).
    pub idle_timeout: Duration,
    /// After shutdown, open connections get this long to finish; then they are closed
    /// (`--web.shutdown-timeout`).
    pub shutdown_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_requests: 40,
            max_connections: 256,
            read_header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

impl ServeOptions {
    /// The options of the `--web.*` flags.
    pub fn from_args(a: &crate::config::CommonArgs) -> Self {
        ServeOptions {
            max_requests: a.max_requests as usize,
            max_connections: a.max_connections as usize,
            read_header_timeout: a.read_header_timeout,
            idle_timeout: a.idle_timeout,
            shutdown_timeout: a.shutdown_timeout,
        }
    }
}

/// Why the server closed a connection on its own.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    reason: &'static str,
}

/// `ethwatch_http_*`: what the listener refused or cut, so a hostile or broken client shows.
#[derive(Clone, Default)]
pub struct ServerMetrics {
    open: Gauge,
    rejected_connections: Counter,
    closed: Family<ClosedLabels, Counter>,
    rejected_requests: Counter,
    accept_errors: Counter,
    tls_errors: Counter,
    unauthorized: Counter,
}

impl ServerMetrics {
    /// Registers the listener's metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let m = ServerMetrics::default();
        registry.register(
            "ethwatch_http_open_connections",
            "Connections to the exporter's HTTP server open now",
            m.open.clone(),
        );
        registry.register(
            "ethwatch_http_rejected_connections",
            "Connections closed right after accept because --web.max-connections were open and all were being answered",
            m.rejected_connections.clone(),
        );
        registry.register(
            "ethwatch_http_closed_connections",
            "Connections the server closed on its own, by reason (header_timeout, idle_timeout, evicted to make room under --web.max-connections, shutdown)",
            m.closed.clone(),
        );
        for reason in ["header_timeout", "idle_timeout", "evicted", "shutdown"] {
            let _ = m.closed.get_or_create(&ClosedLabels { reason });
        }
        registry.register(
            "ethwatch_http_rejected_requests",
            "Requests answered 503 because --web.max-requests were being served",
            m.rejected_requests.clone(),
        );
        registry.register(
            "ethwatch_http_tls_handshake_errors",
            "TLS handshakes that failed (with --web.config.file tls_server_config)",
            m.tls_errors.clone(),
        );
        registry.register(
            "ethwatch_http_unauthorized_requests",
            "Requests answered 401: missing or wrong basic auth (with --web.config.file basic_auth_users)",
            m.unauthorized.clone(),
        );
        registry.register(
            "ethwatch_http_accept_errors",
            "Failed accept calls (e.g. the file descriptor limit was reached)",
            m.accept_errors.clone(),
        );
        m
    }

    fn closed(&self, reason: &'static str) {
        self.closed.get_or_create(&ClosedLabels { reason }).inc();
    }
}

/// Binds the listen address, with an error that names the flag.
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --web.listen-address {addr}: {e}"))
}

/// Milliseconds since `base`, for the connection clocks.
fn ms_since(base: Instant) -> u64 {
    base.elapsed().as_millis() as u64
}

/// What one connection is doing, shared by its I/O wrapper, its service and its watchdog.
struct ConnClock {
    base: Instant,
    /// Last time a byte was read or written.
    last_io: AtomicU64,
    /// 0: waiting for a request (idle); 1: a request head is arriving; 2: answering.
    phase: AtomicU8,
    /// When the current phase began.
    phase_since: AtomicU64,
}

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const ANSWERING: u8 = 2;

impl ConnClock {
    fn new(base: Instant) -> Self {
        let now = ms_since(base);
        ConnClock {
            base,
            last_io: AtomicU64::new(now),
            phase: AtomicU8::new(IDLE),
            phase_since: AtomicU64::new(now),
        }
    }

    fn set_phase(&self, p: u8) {
        self.phase_since
            .store(ms_since(self.base), Ordering::Relaxed);
        self.phase.store(p, Ordering::Relaxed);
    }

    /// Whether a request is being answered, and since when the current phase runs (for
    /// choosing which connection to evict).
    fn answering(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == ANSWERING
    }

    fn since_ms(&self) -> u64 {
        self.phase_since.load(Ordering::Relaxed)
    }

    fn read_some(&self) {
        let now = ms_since(self.base);
        self.last_io.store(now, Ordering::Relaxed);
        if self
            .phase
            .compare_exchange(IDLE, HEAD, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.phase_since.store(now, Ordering::Relaxed);
        }
    }

    fn wrote_some(&self) {
        self.last_io.store(ms_since(self.base), Ordering::Relaxed);
    }

    /// When the connection must be closed if nothing changes, and why.
    fn deadline(&self, o: &ServeOptions) -> (Instant, &'static str) {
        let since = self.phase_since.load(Ordering::Relaxed);
        let at = |ms: u64, d: Duration| self.base + Duration::from_millis(ms) + d;
        match self.phase.load(Ordering::Relaxed) {
            // Idle: waiting for the next request; bytes of the last answer still being written
            // count as progress.
            IDLE => (
                at(
                    self.last_io.load(Ordering::Relaxed).max(since),
                    o.idle_timeout,
                ),
                "idle_timeout",
            ),
            HEAD => (at(since, o.read_header_timeout), "header_timeout"),
            _ => (
                at(
                    self.last_io.load(Ordering::Relaxed).max(since),
                    o.idle_timeout,
                ),
                "idle_timeout",
            ),
        }
    }
}

/// The connection's socket, marking the clock on every byte that moves.
struct ClockedIo<T> {
    inner: T,
    clock: Arc<ConnClock>,
}

impl<T: AsyncRead + Unpin> AsyncRead for ClockedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.read_some();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ClockedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.wrote_some();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.wrote_some();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection's byte stream, with the connection clock marking every byte that moves: a plain
/// socket is wrapped here, a TLS stream already runs over a wrapped socket.
trait ClockIo {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn clocked(self, clock: &Arc<ConnClock>) -> Self::Io;
}

impl ClockIo for TcpStream {
    type Io = ClockedIo<TcpStream>;
    fn clocked(self, clock: &Arc<ConnClock>) -> Self::Io {
        ClockedIo {
            inner: self,
            clock: clock.clone(),
        }
    }
}

impl ClockIo for tokio_rustls::server::TlsStream<ClockedIo<TcpStream>> {
    type Io = Self;
    fn clocked(self, _clock: &Arc<ConnClock>) -> Self::Io {
        self
    }
}

/// A response body handed out in [`BODY_CHUNK`] pieces. It holds the request's
/// `--web.max-requests` permit until its last piece is taken, and marks the connection idle when
/// it is done.
pub struct ResponseBody {
    data: Bytes,
    _permit: Option<OwnedSemaphorePermit>,
    clock: Option<Arc<ConnClock>>,
}

impl ResponseBody {
    fn new(data: impl Into<Bytes>) -> Self {
        ResponseBody {
            data: data.into(),
            _permit: None,
            clock: None,
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(c) = &self.clock {
            c.set_phase(IDLE);
        }
    }
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.data.len().min(BODY_CHUNK);
        let chunk = self.data.split_to(n);
        Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.data.len() as u64)
    }
}

/// Reports failed accepts: the first at once, then one line per [`ACCEPT_LOG_INTERVAL`] with the
/// number of failures since; the accept loop backs off from 10 ms to 1 s meanwhile.
struct AcceptErrors {
    last_log: Option<Instant>,
    since_log: u64,
    backoff: Duration,
}

impl AcceptErrors {
    fn new() -> Self {
        AcceptErrors {
            last_log: None,
            since_log: 0,
            backoff: Duration::ZERO,
        }
    }

    /// Records a failure; returns how long to wait before accepting again.
    fn failed(&mut self, e: &std::io::Error, metrics: &ServerMetrics) -> Duration {
        metrics.accept_errors.inc();
        self.since_log += 1;
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= ACCEPT_LOG_INTERVAL)
        {
            tracing::warn!(
                error = %e,
                failures = self.since_log,
                "accept failed (logged at most every {} s; see ethwatch_http_accept_errors_total)",
                ACCEPT_LOG_INTERVAL.as_secs()
            );
            self.last_log = Some(Instant::now());
            self.since_log = 0;
        }
        self.backoff = (self.backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        self.backoff
    }

    fn succeeded(&mut self) {
        self.backoff = Duration::ZERO;
    }
}

/// Serves until `shutdown`, then lets open connections finish their current request for at most
/// `opts.shutdown_timeout` and closes the rest. See [`ServeOptions`] for the limits.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ServerState>,
    opts: ServeOptions,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let requests = Arc::new(Semaphore::new(opts.max_requests.max(1)));
    // The open connections, for the cap and for eviction; one clock base so phases compare.
    let open = Arc::new(std::sync::Mutex::new(OpenConns::default()));
    let base = Instant::now();
    // Cancelled when the drain deadline passes: every connection still open is dropped.
    let force = CancellationToken::new();
    let mut accept_errors = AcceptErrors::new();
    let opts = Arc::new(opts);
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => {
                    accept_errors.succeeded();
                    x
                }
                Err(e) => {
                    let wait = accept_errors.failed(&e, &state.metrics);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            },
        };
        let clock = Arc::new(ConnClock::new(base));
        let evict = CancellationToken::new();
        let id = {
            let mut o = open.lock().unwrap_or_else(|e| e.into_inner());
            if o.conns.len() >= opts.max_connections.max(1) {
                // Make room: close the connection that has waited longest without being
                // answered. Hostile clients holding idle or half-sent connections thus cannot
                // lock a scraper out; if all are being answered, refuse the new one.
                let victim = o
                    .conns
                    .iter()
                    .filter(|(_, (c, _))| !c.answering())
                    .min_by_key(|(_, (c, _))| c.since_ms())
                    .map(|(id, _)| *id);
                match victim.and_then(|v| o.conns.remove(&v)) {
                    Some((_, t)) => {
                        t.cancel();
                        state.metrics.closed("evicted");
                    }
                    None => {
                        drop(o);
                        state.metrics.rejected_connections.inc();
                        // A reset, no memory kept; the client fails fast.
                        let _ = stream.set_zero_linger();
                        drop(stream);
                        continue;
                    }
                }
            }
            o.next += 1;
            let id = o.next;
            o.conns.insert(id, (clock.clone(), evict.clone()));
            id
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let requests = requests.clone();
        let shutdown = shutdown.clone();
        let force = force.clone();
        let opts = opts.clone();
        let open = open.clone();
        tracker.spawn(async move {
            state.metrics.open.inc();
            let conn = Conn {
                clock,
                evict,
                shutdown: &shutdown,
                force: &force,
            };
            match state.web.tls.clone() {
                None => serve_connection(stream, &state, requests, &opts, conn).await,
                Some(tls) => {
                    // The handshake is part of the request head: same deadline.
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                    let io = ClockedIo {
                        inner: stream,
                        clock: conn.clock.clone(),
                    };
                    let hs = tokio::time::timeout(opts.read_header_timeout, acceptor.accept(io));
                    let tls_stream = tokio::select! {
                        r = hs => r,
                        _ = conn.evict.cancelled() => Ok(Err(std::io::ErrorKind::Interrupted.into())),
                        _ = conn.force.cancelled() => Ok(Err(std::io::ErrorKind::Interrupted.into())),
                    };
                    match tls_stream {
                        Ok(Ok(s)) => serve_connection(s, &state, requests, &opts, conn).await,
                        Ok(Err(_)) => {
                            state.metrics.tls_errors.inc();
                        }
                        Err(_) => state.metrics.closed("header_timeout"),
                    }
                }
            }
            state.metrics.open.dec();
            open.lock()
                .unwrap_or_else(|e| e.into_inner())
                .conns
                .remove(&id);
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(opts.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tracker.len(),
            "connections still open after --web.shutdown-timeout {:?}; closing them",
            opts.shutdown_timeout
        );
        force.cancel();
        tracker.wait().await;
    }
}

/// The open connections: their clocks and eviction tokens.
#[derive(Default)]
struct OpenConns {
    next: u64,
    conns: std::collections::HashMap<u64, (Arc<ConnClock>, CancellationToken)>,
}

/// What one connection's task watches besides its socket.
struct Conn<'a> {
    clock: Arc<ConnClock>,
    /// Cancelled when a newer connection needs the room.
    evict: CancellationToken,
    shutdown: &'a CancellationToken,
    force: &'a CancellationToken,
}

async fn serve_connection<S>(
    stream: S,
    state: &Arc<ServerState>,
    requests: Arc<Semaphore>,
    opts: &ServeOptions,
    c: Conn<'_>,
) where
    S: ClockIo,
{
    let Conn {
        clock,
        evict,
        shutdown,
        force,
    } = c;
    let io = stream.clocked(&clock);
    let svc = {
        let state = state.clone();
        let clock = clock.clone();
        service_fn(move |req| {
            let state = state.clone();
            let requests = requests.clone();
            let clock = clock.clone();
            async move {
                clock.set_phase(ANSWERING);
                let mut res = handle(req, &state, &requests);
                res.body_mut().clock = Some(clock);
                Ok::<_, Infallible>(res)
            }
        })
    };
    let conn = http1::Builder::new()
        .keep_alive(true)
        .max_buf_size(MAX_BUF_BYTES)
        .max_header_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let (deadline, reason) = clock.deadline(opts);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = force.cancelled() => {
                state.metrics.closed("shutdown");
                return;
            }
            _ = evict.cancelled() => return,
            _ = tokio::time::sleep_until(deadline.into()) => {
                // The phase may have moved on while sleeping; close only if the deadline of
                // the current phase has passed.
                let (now_deadline, now_reason) = clock.deadline(opts);
                if now_deadline <= Instant::now() && now_reason == reason {
                    state.metrics.closed(reason);
                    return;
                }
            }
        }
    }
}

fn handle(
    req: Request<Incoming>,
    state: &ServerState,
    requests: &Arc<Semaphore>,
) -> Response<ResponseBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    let path = req.uri().path();
    match path {
        "/healthz" => return text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            return match (state.readiness)() {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("not ready: {why}\n"),
                ),
            };
        }
        _ => {}
    }
    if state.web.needs_auth() {
        let h = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !state.web.authorized(h) {
            state.metrics.unauthorized.inc();
            let mut res = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
            res.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ethwatch\""),
            );
            return res;
        }
    }
    // The permit travels with the body: a request counts until its answer is handed over.
    let Ok(permit) = requests.clone().try_acquire_owned() else {
        state.metrics.rejected_requests.inc();
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many concurrent requests\n",
        );
    };
    let mut res = if path == state.telemetry_path {
        metrics_response(&req, state)
    } else if let Some(page) = state.pages.as_ref().and_then(|p| p.route(path)) {
        let mut res = Response::new(ResponseBody::new(page.body));
        *res.status_mut() =
            StatusCode::from_u16(page.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(page.content_type));
        res.headers_mut().insert(
            hyper::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        res
    } else if path == "/" {
        landing(state)
    } else {
        text(StatusCode::NOT_FOUND, "not found\n")
    };
    res.body_mut()._permit = Some(permit);
    res
}

fn metrics_response(req: &Request<Incoming>, state: &ServerState) -> Response<ResponseBody> {
    let mut buf = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut buf, &state.registry) {
        tracing::error!(error = %e, "encoding metrics failed");
        return text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n");
    }
    let openmetrics = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let (body, ctype) = if openmetrics {
        (buf, OPENMETRICS_CONTENT_TYPE)
    } else {
        (to_prometheus_text(&buf), PROMETHEUS_CONTENT_TYPE)
    };
    let mut res = Response::new(ResponseBody::new(body));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    res
}

fn text(status: StatusCode, body: &str) -> Response<ResponseBody> {
    let mut res = Response::new(ResponseBody::new(Bytes::copy_from_slice(body.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

fn landing(state: &ServerState) -> Response<ResponseBody> {
    let now = crate::unix_now();
    let mut rows = String::new();
    for (name, r) in state.status.reports() {
        let last = match r.last_success {
            Some(t) => format!("{:.1} s ago", (now - t).max(0.0)),
            None => "never".to_string(),
        };
        let status = if !r.enabled {
            "disabled".to_string()
        } else {
            match &r.last_error {
                Some(e) => format!("failing: {}", html_escape(e)),
                None if r.last_success.is_some() => "ok".to_string(),
                None => "waiting".to_string(),
            }
        };
        let _ = writeln!(
            rows,
            "<tr><td>{name}</td><td>{last}</td><td>{status}</td></tr>"
        );
    }
    let ready = match (state.readiness)() {
        Ok(()) => "ready".to_string(),
        Err(e) => format!("not ready: {}", html_escape(&e)),
    };
    let live = state
        .pages
        .as_ref()
        .and_then(|p| p.landing_html())
        .unwrap_or_default();
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><link rel=\"icon\" href=\"data:,\">\
<title>ethwatch {exp}</title></head><body>\
<h1>ethwatch {exp}</h1>\
<p>version {ver} (revision {rev})</p>\
<p>upstream: <code>{up}</code></p>\
<p>status: {ready}</p>\
{live}\
<table border=\"1\" cellpadding=\"4\"><tr><th>collector</th><th>last success</th><th>status</th></tr>\n{rows}</table>\
<p><a href=\"{path}\">metrics</a> · <a href=\"/healthz\">healthz</a> · <a href=\"/readyz\">readyz</a></p>\
</body></html>\n",
        exp = state.exporter,
        ver = crate::VERSION,
        rev = crate::REVISION,
        up = html_escape(&state.upstream),
        path = html_escape(&state.telemetry_path),
    );
    let mut res = Response::new(ResponseBody::new(body));
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res
}

/// The landing page's table of live values (`label: value`, `–` when unknown), escaped.
pub fn live_values(values: &[(&str, Option<String>)]) -> String {
    let mut out = String::from(
        "<table id=\"live\" border=\"1\" cellpadding=\"4\"><tr><th colspan=\"2\">live</th></tr>",
    );
    for (k, v) in values {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td></tr>",
            html_escape(k),
            v.as_deref().map_or_else(|| "–".to_string(), html_escape)
        );
    }
    out.push_str("</table>");
    out
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_to_prometheus_text() {
        let om = "# HELP a_blocks Blocks.\n# TYPE a_blocks counter\na_blocks_total 3\n\
# HELP lat Latency.\n# TYPE lat histogram\n# UNIT lat seconds\nlat_bucket{le=\"1.0\"} 1 # {trace_id=\"ab\"} 0.5\n\
# HELP st Health.\n# TYPE st stateset\nst{st=\"ready\"} 1\n# EOF\n";
        let p = to_prometheus_text(om);
        assert_eq!(
            p,
            "# HELP a_blocks_total Blocks.\n# TYPE a_blocks_total counter\na_blocks_total 3\n\
# HELP lat Latency.\n# TYPE lat histogram\nlat_bucket{le=\"1.0\"} 1\n\
# HELP st Health.\n# TYPE st gauge\nst{st=\"ready\"} 1\n"
        );
    }
}
