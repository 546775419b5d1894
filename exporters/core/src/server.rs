//! The exporter's HTTP server: `/metrics`, `/healthz`, `/readyz` and a landing page at `/`.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
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

/// Decides readiness: `Ok` when ready, `Err(reason)` when not.
pub type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

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
}

/// Binds the listen address, with an error that names the flag.
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --web.listen-address {addr}: {e}"))
}

/// Serves until `shutdown`, then lets open connections finish their current request.
/// At most `max_requests` requests are served at once; more get 503 at once.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ServerState>,
    max_requests: usize,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(max_requests.max(1)));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let limit = limit.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                let limit = limit.clone();
                async move { Ok::<_, Infallible>(handle(req, &state, &limit, peer)) }
            });
            let conn = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => { let _ = r; }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

fn handle(
    req: Request<Incoming>,
    state: &ServerState,
    limit: &Semaphore,
    _peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let Ok(_permit) = limit.try_acquire() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many concurrent requests\n",
        );
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    let path = req.uri().path();
    if path == state.telemetry_path {
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
        let mut res = Response::new(Full::new(Bytes::from(body)));
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
        return res;
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match (state.readiness)() {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {why}\n"),
            ),
        },
        "/" => landing(state),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

fn landing(state: &ServerState) -> Response<Full<Bytes>> {
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
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ethwatch {exp}</title></head><body>\
<h1>ethwatch {exp}</h1>\
<p>version {ver} (revision {rev})</p>\
<p>upstream: <code>{up}</code></p>\
<p>status: {ready}</p>\
<table border=\"1\" cellpadding=\"4\"><tr><th>collector</th><th>last success</th><th>status</th></tr>\n{rows}</table>\
<p><a href=\"{path}\">metrics</a> · <a href=\"/healthz\">healthz</a> · <a href=\"/readyz\">readyz</a></p>\
</body></html>\n",
        exp = state.exporter,
        ver = crate::VERSION,
        rev = crate::REVISION,
        up = html_escape(&state.upstream),
        path = html_escape(&state.telemetry_path),
    );
    let mut res = Response::new(Full::new(Bytes::from(body)));
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
