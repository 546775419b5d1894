//! The `newHeads` subscription over a websocket: a head is seen the moment the node has it.
//!
//! The task connects, subscribes, and feeds every header to [`Poller::on_subscription_head`],
//! which fetches the block (a `newHeads` header has no transaction list) with the safe and
//! finalized blocks and the txpool in one batch. When the
//! connection drops it reconnects with exponential backoff (1 s to 30 s); polling covers the gap.

use ethwatch_core::node::Backoff;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ethwatch_core::metrics::CollectorStatus;
use ethwatch_core::upstream::{ErrorKind, redact_url};
use futures_util::{SinkExt, StreamExt};
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use url::Url;

use crate::poller::Poller;
use crate::types::Header;

/// The collector name of the subscription on the landing page and in self-metrics.
pub const COLLECTOR: &str = "subscription";

#[derive(Deserialize)]
struct Notification {
    params: Option<NotificationParams>,
    /// Present on the answer to `eth_subscribe`.
    #[serde(default)]
    result: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct NotificationParams {
    result: Header,
}

/// Runs the subscription until shutdown.
pub async fn run(
    url: Url,
    poller: Arc<Poller>,
    status: CollectorStatus,
    max_message_bytes: usize,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    let connected = poller
        .metrics()
        .subscription_connected
        .clone()
        .unwrap_or_default();
    status.declare(COLLECTOR, true);
    let shown = redact_url(&url);
    let mut backoff = Backoff::new(Duration::from_secs(30));
    // Log a lost subscription once, not at every failed reconnect.
    let mut logged_down = false;
    loop {
        let started = Instant::now();
        poller.metrics().rpc.request("eth_subscribe");
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = session(&url, &poller, &status, &connected, max_message_bytes, timeout) => r,
        };
        let was_connected = connected.get() == 1;
        connected.set(0);
        if was_connected {
            poller.subscription_lost();
            logged_down = false;
            backoff.reset();
        }
        let (kind, msg) = match result {
            Ok(()) => (
                ErrorKind::Connect,
                "the node closed the subscription".to_string(),
            ),
            Err(e) => e,
        };
        poller.metrics().rpc.error("eth_subscribe", kind);
        status.record(COLLECTOR, started.elapsed(), Err(msg.clone()));
        if !logged_down {
            tracing::warn!(url = %shown, kind = kind.as_str(), error = %msg, "newHeads subscription lost; polling covers the gap, reconnecting with backoff");
            logged_down = true;
        } else {
            tracing::debug!(url = %shown, kind = kind.as_str(), error = %msg, "subscription reconnect failed");
        }
        if !Backoff::sleep(backoff.next_delay(), &shutdown).await {
            return;
        }
    }
}

async fn session(
    url: &Url,
    poller: &Poller,
    status: &CollectorStatus,
    connected: &Gauge,
    max_message_bytes: usize,
    timeout: Duration,
) -> Result<(), (ErrorKind, String)> {
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(max_message_bytes);
    config.max_frame_size = Some(max_message_bytes);
    // The (re)connection is a span of its own: connect, handshake and the subscribe request.
    let span = tracing::info_span!(
        "subscribe",
        otel.name = "eth_subscribe newHeads",
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        rpc.system = "jsonrpc",
        rpc.method = "eth_subscribe",
        server.address = url.host_str().unwrap_or(""),
        server.port = url.port_or_known_default(),
        error.type = tracing::field::Empty,
    );
    let fail = |kind: ErrorKind, msg: String| {
        span.record("error.type", kind.as_str());
        span.record("otel.status_code", "ERROR");
        (kind, msg)
    };
    // wss:// uses rustls with the system roots (SSL_CERT_FILE/SSL_CERT_DIR are honoured) on
    // the process's ring provider.
    ethwatch_core::upstream::install_crypto();
    let connect = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
    let (mut ws, _) = match tokio::time::timeout(timeout, connect.instrument(span.clone())).await {
        Err(_) => {
            return Err((
                ErrorKind::Timeout,
                format!("no websocket handshake within {timeout:?}"),
            ));
        }
        Ok(Err(e)) => return Err((ErrorKind::Connect, e.to_string())),
        Ok(Ok(x)) => x,
    };
    let sub = r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#;
    ws.send(Message::text(sub))
        .instrument(span.clone())
        .await
        .map_err(|e| fail(ErrorKind::Connect, e.to_string()))?;
    let mut span = Some(span);
    let mut subscribed = false;
    loop {
        // Without a header for a long time the node may be stuck or the socket half-dead; the
        // poll loop covers the head meanwhile, so only a generous idle limit applies here.
        let msg = match tokio::time::timeout(Duration::from_secs(300), ws.next()).await {
            Err(_) => return Err((ErrorKind::Timeout, "no message for 300 s".into())),
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => {
                let kind = match e {
                    tokio_tungstenite::tungstenite::Error::Capacity(_) => ErrorKind::TooLarge,
                    _ => ErrorKind::Connect,
                };
                return Err((kind, e.to_string()));
            }
            Ok(Some(Ok(m))) => m,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(b) => match String::from_utf8(b.to_vec()) {
                Ok(s) => s.into(),
                Err(_) => continue,
            },
            Message::Close(_) => return Ok(()),
            _ => continue,
        };
        let start = Instant::now();
        if subscribed {
            poller.metrics().rpc.request("eth_subscribe");
        }
        let n: Notification = match serde_json::from_str(text.as_str()) {
            Ok(n) => n,
            Err(e) => {
                poller
                    .metrics()
                    .rpc
                    .error("eth_subscribe", ErrorKind::Decode);
                tracing::warn!(error = %e, "undecodable newHeads notification skipped");
                continue;
            }
        };
        if let Some(err) = n.error {
            if let Some(s) = span.take() {
                s.record("error.type", ErrorKind::RpcError.as_str());
                s.record("otel.status_code", "ERROR");
            }
            return Err((
                ErrorKind::RpcError,
                format!(
                    "eth_subscribe refused: {}",
                    ethwatch_core::upstream::truncate(&err.to_string(), 200)
                ),
            ));
        }
        if !subscribed && n.result.is_some() {
            subscribed = true;
            drop(span.take());
            connected.set(1);
            status.record(COLLECTOR, start.elapsed(), Ok(()));
            tracing::info!("subscribed to newHeads");
            continue;
        }
        if let Some(p) = n.params {
            let head_span = tracing::info_span!(
                "new_head",
                otel.name = "newHeads notification",
                block.number = p.result.number(),
            );
            let r = poller
                .on_subscription_head(p.result)
                .instrument(head_span)
                .await;
            status.record(COLLECTOR, start.elapsed(), r.map_err(|e| e.to_string()));
        }
    }
}
