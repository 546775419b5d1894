//! The one path every request to a node goes through.
//!
//! Over 600 lines on purpose: this is the one path every request to a node takes, and its
//! guarantees (timeout, body cap, no redirects, error kinds, redaction, latency with exemplars)
//! are audited together; splitting them would hide how they interact on one request.
//!
//! [`Upstream`] applies the timeout to the whole exchange (headers and body), caps the body size
//! while it streams in, classifies every failure into a fixed [`ErrorKind`], records the latency
//! into a histogram (with a trace-id exemplar when one is known) and counts errors by kind. URLs in
//! errors and logs have their credentials redacted.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use url::Url;

/// Why a request to a node failed; a fixed, bounded label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No complete answer within the timeout (includes a body that never ends).
    Timeout,
    /// The connection could not be made or broke.
    Connect,
    /// The node answered with a non-success HTTP status.
    HttpStatus,
    /// The body was not what the API promises (bad JSON, bad hex, numbers out of range, wrong ids).
    Decode,
    /// A JSON-RPC error object in the answer.
    RpcError,
    /// The body exceeded the configured size limit.
    TooLarge,
    /// The node answered with a redirect (3xx). Redirects are never followed: they could point
    /// the exporter (and the request body) at any other address.
    Redirect,
}

impl ErrorKind {
    /// Every kind, for documentation and tests.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Timeout,
        ErrorKind::Connect,
        ErrorKind::HttpStatus,
        ErrorKind::Decode,
        ErrorKind::RpcError,
        ErrorKind::TooLarge,
        ErrorKind::Redirect,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::Decode => "decode",
            ErrorKind::RpcError => "rpc_error",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Redirect => "redirect",
        }
    }
}

/// A failed request to a node. The message never contains credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("HTTP status {status}: {snippet}")]
    HttpStatus { status: u16, snippet: String },
    #[error("response body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("HTTP status {status}: a redirect (to {location}), not followed")]
    Redirect { status: u16, location: String },
    #[error("cannot decode the response: {0}")]
    Decode(String),
    #[error("JSON-RPC error {code}: {message}")]
    Rpc { code: i64, message: String },
}

impl UpstreamError {
    /// The fixed kind label of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            UpstreamError::Timeout(_) => ErrorKind::Timeout,
            UpstreamError::Connect(_) => ErrorKind::Connect,
            UpstreamError::HttpStatus { .. } => ErrorKind::HttpStatus,
            UpstreamError::TooLarge { .. } => ErrorKind::TooLarge,
            UpstreamError::Redirect { .. } => ErrorKind::Redirect,
            UpstreamError::Decode(_) => ErrorKind::Decode,
            UpstreamError::Rpc { .. } => ErrorKind::RpcError,
        }
    }

    /// A decode error with a message.
    pub fn decode(msg: impl std::fmt::Display) -> Self {
        UpstreamError::Decode(truncate(&msg.to_string(), 200))
    }
}

/// Labels of a request series: constant labels of the endpoint (the network watcher's `layer`
/// and `node`; none for a sidecar), the target under the exporter's key (`method`, `route`),
/// and for error counters the kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct CallLabels {
    constant: Option<std::sync::Arc<[(&'static str, String)]>>,
    key: &'static str,
    target: &'static str,
    kind: Option<&'static str>,
}

impl prometheus_client::encoding::EncodeLabelSet for CallLabels {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        for (k, v) in self.constant.iter().flat_map(|c| c.iter()) {
            (*k, crate::metrics::Escaped(v.as_str())).encode(encoder.encode_label())?;
        }
        (self.key, self.target).encode(encoder.encode_label())?;
        if let Some(kind) = self.kind {
            ("kind", kind).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// The exemplar label set: the trace id of the call.
pub type TraceLabels = Vec<(&'static str, String)>;

/// Latency buckets for calls to a node, in seconds (1 ms to 10 s).
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn latency_histogram() -> HistogramWithExemplars<TraceLabels> {
    HistogramWithExemplars::new(LATENCY_BUCKETS.into_iter())
}

/// Request latency and error counters for one exporter, labelled by `key` (`method` or `route`).
#[derive(Clone)]
pub struct RequestMetrics {
    key: &'static str,
    constant: Option<std::sync::Arc<[(&'static str, String)]>>,
    duration: Family<
        CallLabels,
        HistogramWithExemplars<TraceLabels>,
        fn() -> HistogramWithExemplars<TraceLabels>,
    >,
    errors: Family<CallLabels, Counter>,
    /// Requests by the same label as `errors` counts failures (see [`Self::register_requests`]);
    /// registered by the exporters whose error ratio needs it.
    requests: Option<Family<CallLabels, Counter>>,
}

/// The label value of an exchange that carried several calls (a JSON-RPC batch).
pub const BATCH: &str = "batch";

/// The target an exchange is counted under: its one target, or [`BATCH`] for several.
pub fn exchange_target(targets: &[&'static str]) -> &'static str {
    match targets {
        [one] => one,
        _ => BATCH,
    }
}

impl RequestMetrics {
    /// Registers `<duration_name>` (histogram, seconds) and `<errors_name>` (counter) under the
    /// label `key`. Names are given without the `_seconds`/`_total` suffixes the encoder adds.
    pub fn register(
        registry: &mut Registry,
        key: &'static str,
        duration_name: &str,
        duration_help: &str,
        errors_name: &str,
        errors_help: &str,
    ) -> Self {
        let duration = Family::new_with_constructor(
            latency_histogram as fn() -> HistogramWithExemplars<TraceLabels>,
        );
        let errors = Family::<CallLabels, Counter>::default();
        registry.register_with_unit(
            duration_name,
            duration_help,
            prometheus_client::registry::Unit::Seconds,
            duration.clone(),
        );
        registry.register(errors_name, errors_help, errors.clone());
        RequestMetrics {
            key,
            constant: None,
            duration,
            errors,
            requests: None,
        }
    }

    /// Registers `<name>` (counter): one per exchange with the node, under the target the
    /// exchange's failure would be counted under ([`exchange_target`]: its one target, or
    /// `batch` for a JSON-RPC batch), so that errors divided by requests compares like with like.
    pub fn register_requests(&mut self, registry: &mut Registry, name: &str, help: &str) {
        let requests = Family::<CallLabels, Counter>::default();
        registry.register(name, help, requests.clone());
        self.requests = Some(requests);
    }

    /// Counts one exchange under `target` (when a requests counter is registered).
    pub fn request(&self, target: &'static str) {
        if let Some(r) = &self.requests {
            r.get_or_create(&self.labels(target, None)).inc();
        }
    }

    /// The request count for a target (0 without a requests counter; for tests).
    pub fn request_count(&self, target: &'static str) -> u64 {
        self.requests
            .as_ref()
            .map_or(0, |r| r.get_or_create(&self.labels(target, None)).get())
    }

    /// The same families, recording with constant labels added (one endpoint among many, as in
    /// the network watcher: `[("layer", "execution"), ("node", "el-1")]`).
    pub fn with_constant_labels(&self, labels: Vec<(&'static str, String)>) -> Self {
        RequestMetrics {
            constant: Some(labels.into()),
            ..self.clone()
        }
    }

    fn labels(&self, target: &'static str, kind: Option<ErrorKind>) -> CallLabels {
        CallLabels {
            constant: self.constant.clone(),
            key: self.key,
            target,
            kind: kind.map(ErrorKind::as_str),
        }
    }

    /// Removes the series of this endpoint's constant labels (a node that left the network).
    pub fn remove_target(&self, target: &'static str) {
        self.duration.remove(&self.labels(target, None));
        if let Some(r) = &self.requests {
            r.remove(&self.labels(target, None));
        }
        for k in ErrorKind::ALL {
            self.errors.remove(&self.labels(target, Some(k)));
        }
    }

    /// Records one call's latency, with the trace id as an exemplar when known.
    pub fn observe(&self, target: &'static str, elapsed: Duration, trace_id: Option<String>) {
        let exemplar = trace_id.map(|t| vec![("trace_id", t)]);
        self.duration
            .get_or_create(&self.labels(target, None))
            .observe(elapsed.as_secs_f64(), exemplar, None);
    }

    /// Counts one failed call.
    pub fn error(&self, target: &'static str, kind: ErrorKind) {
        self.errors
            .get_or_create(&self.labels(target, Some(kind)))
            .inc();
    }

    /// The error count for a target and kind (for tests and the landing page).
    pub fn error_count(&self, target: &'static str, kind: ErrorKind) -> u64 {
        self.errors
            .get_or_create(&self.labels(target, Some(kind)))
            .get()
    }
}

/// Settings for an [`Upstream`].
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    /// The whole exchange (connect, headers, body) must finish within this.
    pub timeout: Duration,
    /// Bodies larger than this are refused while streaming, with [`ErrorKind::TooLarge`].
    pub max_body_bytes: usize,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        UpstreamOptions {
            timeout: Duration::from_secs(5),
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

/// An HTTP endpoint of a node, with the shared call path.
#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
    /// The URL without credentials; credentials travel as a basic-auth header.
    base: Url,
    user: Option<(String, Option<String>)>,
    redacted: String,
    opts: UpstreamOptions,
    metrics: RequestMetrics,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.redacted)
            .finish()
    }
}

/// The URL as it may appear in logs: any password (and user name) replaced by `***`.
pub fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    if !u.username().is_empty() {
        let _ = u.set_username("***");
    }
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}

/// Installs the TLS crypto provider (ring) that every HTTP client of the process uses; must run
/// before the first `reqwest::Client` is built. Later calls do nothing.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Upstream {
    /// The HTTP client an endpoint uses; endpoints may share one (the network watcher does, so
    /// a thousand nodes do not cost a thousand connection pools).
    pub fn http_client(opts: &UpstreamOptions) -> anyhow::Result<reqwest::Client> {
        install_crypto();
        Ok(reqwest::Client::builder()
            // A node (or whatever answers at its address) must not send us, with our request
            // body and credentials, to another address: a 3xx is an error of kind `redirect`.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(opts.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(4)
            .user_agent(concat!("ethwatch/", env!("CARGO_PKG_VERSION")))
            .build()?)
    }

    /// Creates the endpoint. Fails only when the HTTP client cannot be built.
    pub fn new(url: &Url, opts: UpstreamOptions, metrics: RequestMetrics) -> anyhow::Result<Self> {
        let client = Self::http_client(&opts)?;
        Ok(Self::with_client(url, opts, metrics, client))
    }

    /// Creates the endpoint on an existing HTTP client (see [`Upstream::http_client`]).
    pub fn with_client(
        url: &Url,
        opts: UpstreamOptions,
        metrics: RequestMetrics,
        client: reqwest::Client,
    ) -> Self {
        let mut base = url.clone();
        let user = if base.username().is_empty() {
            None
        } else {
            let u = (
                percent_decode(base.username()),
                base.password().map(percent_decode),
            );
            let _ = base.set_username("");
            let _ = base.set_password(None);
            Some(u)
        };
        Upstream {
            client,
            redacted: redact_url(url),
            base,
            user,
            opts,
            metrics,
        }
    }

    /// The URL for logs and the landing page, credentials redacted.
    pub fn redacted_url(&self) -> &str {
        &self.redacted
    }

    /// The request metrics this endpoint records into.
    pub fn metrics(&self) -> &RequestMetrics {
        &self.metrics
    }

    /// POSTs a JSON body to the base URL (JSON-RPC). Latency is recorded for every target in
    /// `targets` (the methods of a batch share the round trip); the exchange is one request, and
    /// when it fails one error, under [`exchange_target`] (the one method, or `batch`).
    pub async fn post_json(
        &self,
        targets: &[&'static str],
        body: Vec<u8>,
    ) -> Result<Bytes, UpstreamError> {
        let req = self
            .client
            .post(self.base.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send_accepting(targets, "POST", None, req, &[])
            .await
            .map(|(_, b)| b)
    }

    /// GETs `path` (with query) relative to the base URL (REST APIs). Any 2xx status is a success
    /// and returned with the body; other statuses are [`ErrorKind::HttpStatus`] unless listed in
    /// `accept_status` (e.g. 206 and 503 from `/eth/v1/node/health`).
    pub async fn get(
        &self,
        target: &'static str,
        path: &str,
        accept_status: &[u16],
    ) -> Result<(u16, Bytes), UpstreamError> {
        self.get_capped(target, path, accept_status, self.opts.max_body_bytes)
            .await
    }

    /// [`Upstream::get`] with a smaller body cap for this call (at most the endpoint's): a list
    /// whose useful length is bounded (`--peers.list-max`) is cut as soon as it is longer, instead
    /// of being buffered up to the general cap.
    pub async fn get_capped(
        &self,
        target: &'static str,
        path: &str,
        accept_status: &[u16],
        max_body_bytes: usize,
    ) -> Result<(u16, Bytes), UpstreamError> {
        let url = self.join(path)?;
        let req = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        let limit = max_body_bytes.min(self.opts.max_body_bytes);
        self.send_with_limit(&[target], "GET", Some(target), req, accept_status, limit)
            .await
    }

    /// POSTs a JSON body to `path` (with query) relative to the base URL (REST APIs whose
    /// queries take a body, e.g. the Beacon API's rewards endpoints). Statuses are handled as in
    /// [`Upstream::get`].
    pub async fn post(
        &self,
        target: &'static str,
        path: &str,
        body: Vec<u8>,
        accept_status: &[u16],
    ) -> Result<(u16, Bytes), UpstreamError> {
        let url = self.join(path)?;
        let req = self
            .client
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send_accepting(&[target], "POST", Some(target), req, accept_status)
            .await
    }

    /// Opens a streaming GET (server-sent events). Only the connection and headers are under the
    /// timeout; the caller reads the body with its own limits.
    pub async fn get_stream(
        &self,
        target: &'static str,
        path: &str,
    ) -> Result<reqwest::Response, UpstreamError> {
        let url = self.join(path)?;
        let mut req = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some((u, p)) = &self.user {
            req = req.basic_auth(u, p.as_ref());
        }
        use tracing::Instrument;
        let span = self.http_span("GET", Some(target));
        let start = Instant::now();
        let res =
            tokio::time::timeout(self.opts.timeout, req.send().instrument(span.clone())).await;
        let res = match res {
            Err(_) => Err(UpstreamError::Timeout(self.opts.timeout)),
            Ok(Err(e)) => Err(classify(e)),
            Ok(Ok(r)) if r.status().is_redirection() => Err(redirect_error(&r)),
            Ok(Ok(r)) if !r.status().is_success() => Err(UpstreamError::HttpStatus {
                status: r.status().as_u16(),
                snippet: String::new(),
            }),
            Ok(Ok(r)) => Ok(r),
        };
        match &res {
            Ok(r) => record_outcome(&span, Ok(r.status().as_u16())),
            Err(e) => record_outcome(&span, Err(e)),
        }
        let trace_id = crate::traces::trace_id_of(&span);
        drop(span);
        self.metrics.observe(target, start.elapsed(), trace_id);
        self.metrics.request(target);
        if let Err(e) = &res {
            self.metrics.error(target, e.kind());
        }
        res
    }

    fn join(&self, path: &str) -> Result<Url, UpstreamError> {
        let mut base = self.base.clone();
        let prefix = base.path().trim_end_matches('/').to_string();
        let (p, q) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        base.set_path(&format!("{prefix}{p}"));
        base.set_query(q);
        Ok(base)
    }

    /// An HTTP client span following the OpenTelemetry semantic conventions.
    fn http_span(&self, method: &'static str, template: Option<&'static str>) -> tracing::Span {
        let name = match template {
            Some(t) => format!("{method} {t}"),
            None => method.to_string(),
        };
        tracing::info_span!(
            "http_request",
            otel.name = %name,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = method,
            url.template = template,
            server.address = self.base.host_str().unwrap_or(""),
            // Integers as i64: the OpenTelemetry layer turns unsigned ones into strings, and the
            // semantic conventions type these attributes as int.
            server.port = self.base.port_or_known_default().map(i64::from),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        )
    }

    async fn send_accepting(
        &self,
        targets: &[&'static str],
        method: &'static str,
        template: Option<&'static str>,
        req: reqwest::RequestBuilder,
        accept_status: &[u16],
    ) -> Result<(u16, Bytes), UpstreamError> {
        let limit = self.opts.max_body_bytes;
        self.send_with_limit(targets, method, template, req, accept_status, limit)
            .await
    }

    async fn send_with_limit(
        &self,
        targets: &[&'static str],
        method: &'static str,
        template: Option<&'static str>,
        mut req: reqwest::RequestBuilder,
        accept_status: &[u16],
        limit: usize,
    ) -> Result<(u16, Bytes), UpstreamError> {
        use tracing::Instrument;
        if let Some((u, p)) = &self.user {
            req = req.basic_auth(u, p.as_ref());
        }
        let span = self.http_span(method, template);
        let start = Instant::now();
        let result = match tokio::time::timeout(
            self.opts.timeout,
            exchange(req, limit, accept_status).instrument(span.clone()),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout(self.opts.timeout)),
        };
        let elapsed = start.elapsed();
        match &result {
            Ok((status, _)) => record_outcome(&span, Ok(*status)),
            Err(e) => record_outcome(&span, Err(e)),
        }
        let trace_id = crate::traces::trace_id_of(&span);
        drop(span);
        for t in targets {
            self.metrics.observe(t, elapsed, trace_id.clone());
        }
        // One exchange, one request and at most one error, however many calls it carried.
        let exchange = exchange_target(targets);
        self.metrics.request(exchange);
        if let Err(e) = &result {
            self.metrics.error(exchange, e.kind());
        }
        result
    }
}

async fn exchange(
    req: reqwest::RequestBuilder,
    limit: usize,
    accept_status: &[u16],
) -> Result<(u16, Bytes), UpstreamError> {
    let res = req.send().await.map_err(classify)?;
    let status = res.status();
    if status.is_redirection() && !accept_status.contains(&status.as_u16()) {
        return Err(redirect_error(&res));
    }
    if let Some(len) = res.content_length()
        && len > limit as u64
    {
        return Err(UpstreamError::TooLarge { limit });
    }
    let body = read_capped(res, limit).await?;
    if !status.is_success() && !accept_status.contains(&status.as_u16()) {
        return Err(UpstreamError::HttpStatus {
            status: status.as_u16(),
            snippet: truncate(&String::from_utf8_lossy(&body), 120),
        });
    }
    Ok((status.as_u16(), body))
}

/// A 3xx answer as an error; the target is shown (cut, without credentials or query) so the log
/// line tells where the node wanted to send us.
fn redirect_error(res: &reqwest::Response) -> UpstreamError {
    let location = res
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| match Url::parse(l) {
            Ok(mut u) => {
                u.set_query(None);
                redact_url(&u)
            }
            Err(_) => l.split('?').next().unwrap_or("").to_string(),
        })
        .unwrap_or_else(|| "nowhere".to_string());
    UpstreamError::Redirect {
        status: res.status().as_u16(),
        location: truncate(&location, 120),
    }
}

/// Reads a body, failing as soon as it grows beyond `limit` bytes.
pub async fn read_capped(res: reqwest::Response, limit: usize) -> Result<Bytes, UpstreamError> {
    let mut stream = res.bytes_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(classify)?;
        if buf.len() + chunk.len() > limit {
            return Err(UpstreamError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Maps a reqwest error to our kinds, without its URL (which may hold credentials).
pub fn classify(e: reqwest::Error) -> UpstreamError {
    let e = e.without_url();
    if e.is_timeout() {
        UpstreamError::Timeout(Duration::ZERO)
    } else if e.is_decode() {
        UpstreamError::decode(error_chain(&e))
    } else {
        UpstreamError::Connect(truncate(&error_chain(&e), 200))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = inner.source();
    }
    s
}

/// Cuts a message to at most `max` characters, on a character boundary, without line breaks.
pub fn truncate(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if s.chars().count() > max {
        format!("{flat}…")
    } else {
        flat
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Records a request's outcome on its span: the HTTP status when there is one, and for a
/// failure its kind as `error.type` and the span's status as an error.
fn record_outcome(span: &tracing::Span, outcome: Result<u16, &UpstreamError>) {
    let status = match outcome {
        Ok(s) => Some(s),
        Err(UpstreamError::HttpStatus { status, .. }) => Some(*status),
        Err(_) => None,
    };
    if let Some(s) = status {
        span.record("http.response.status_code", i64::from(s));
    }
    if let Err(e) = outcome {
        span.record("error.type", e.kind().as_str());
        span.record("otel.status_code", "ERROR");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo() {
        let u = Url::parse("http://alice:s3cret@node:8545/path").expect("url");
        let r = redact_url(&u);
        assert!(!r.contains("s3cret"), "{r}");
        assert!(!r.contains("alice"), "{r}");
        assert!(r.contains("node:8545/path"), "{r}");
    }

    #[test]
    fn join_keeps_base_path_and_query() {
        let mut reg = Registry::default();
        let m = RequestMetrics::register(&mut reg, "route", "d", "d", "e", "e");
        let up = Upstream::new(
            &Url::parse("http://u:p@127.0.0.1:1/prefix/").expect("url"),
            UpstreamOptions::default(),
            m,
        )
        .expect("upstream");
        let j = up
            .join("/eth/v1/events?topics=head&topics=block")
            .expect("join");
        assert_eq!(
            j.as_str(),
            "http://127.0.0.1:1/prefix/eth/v1/events?topics=head&topics=block"
        );
        assert!(!up.redacted_url().contains(":p@"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b"), "a@b");
        assert_eq!(percent_decode("abc%"), "abc%");
    }

    #[test]
    fn truncate_flattens() {
        assert_eq!(truncate("a\nb", 10), "a b");
        assert_eq!(truncate("abcdef", 3), "abc…");
    }
}
