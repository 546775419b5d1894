//! The event stream: `GET /eth/v1/events?topics=head&topics=block&topics=chain_reorg&topics=finalized_checkpoint`.
//!
//! A new head updates the metrics the moment the node announces it. The stream is read with the
//! bounded [`SseParser`]; a session ends (and is counted under `route="/eth/v1/events"`) when:
//! - the node closes it or the connection breaks (`connect`);
//! - an event or line exceeds `--events.max-event-bytes` (`too_large`);
//! - part of an event waits for its end longer than a slot (at least 2 s) (`timeout`);
//! - the poll found two new heads in a row that the stream had not delivered (`timeout`: the
//!   stream is open but stale).
//!
//! Undecodable events are counted as `decode` and skipped. After a session ends the stream
//! reconnects with exponential backoff (1 s doubling up to `--events.max-backoff`), reset once a
//! session stayed up for 30 s; polling covers the gap. Logging happens on transitions only: the
//! first connection, the loss of a stable stream, and its return to stability. Reconnect attempts
//! in between are logged at debug level, so a flapping node cannot flood the log.

use ethwatch_core::node::Backoff;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use ethwatch_core::upstream::{ErrorKind, Upstream, classify};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::api::{self, EVENTS_PATH};
use crate::collectors::ClCollector;
use crate::head::Seen;
use crate::poller::{HeadSource, Poller};
use crate::sse::{SseError, SseEvent, SseItem, SseParser};
use crate::types::{BlockEvent, FinalizedEvent, HeadEvent, ReorgEvent};
use ethwatch_core::collectors::Collector;

/// A session that lasted this long counts as stable: backoff resets and its loss is logged.
const STABLE: Duration = Duration::from_secs(30);

/// Settings of the stream task.
#[derive(Debug, Clone, Copy)]
pub struct EventsConfig {
    /// Largest line and largest event kept, in bytes.
    pub max_event_bytes: usize,
    /// Longest wait between reconnect attempts.
    pub max_backoff: Duration,
}

/// Why a session ended.
#[derive(Debug)]
struct End {
    kind: ErrorKind,
    msg: String,
    /// How long the stream was open (`None`: it never opened).
    open_for: Option<Duration>,
    /// Already counted (by the upstream call path).
    counted: bool,
}

/// Logging state: transitions only.
#[derive(Debug, Default)]
struct Transitions {
    ever_connected: bool,
    /// A loss was logged and no stable session followed yet.
    announced_down: bool,
    attempts: u64,
}

/// Runs the stream until shutdown.
///
/// `stream` is the node's endpoint for the stream: the same URL and metrics as the poller's, with
/// the open timeout of [`EventsConfig::open_timeout`].
pub async fn run(
    poller: Arc<Poller>,
    stream: Upstream,
    cfg: EventsConfig,
    shutdown: CancellationToken,
) {
    let url = stream.redacted_url().to_string();
    let mut backoff = Backoff::new(cfg.max_backoff);
    let mut log = Transitions::default();
    loop {
        let started = Instant::now();
        let end = tokio::select! {
            _ = shutdown.cancelled() => {
                poller.set_stream_state(false, false);
                return;
            }
            e = session(&poller, &stream, cfg, &mut log) => e,
        };
        poller.set_stream_state(false, false);
        if !end.counted {
            poller.metrics().error(api::EVENTS, end.kind);
        }
        poller.status().record(
            ClCollector::Events.name(),
            started.elapsed(),
            Err(end.msg.clone()),
        );
        if end.open_for.is_some_and(|d| d >= STABLE) {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        log.attempts += 1;
        if !log.announced_down {
            log.announced_down = true;
            log.attempts = 1;
            tracing::warn!(
                url = %url,
                kind = end.kind.as_str(),
                error = %end.msg,
                "event stream lost; polling covers the gap, reconnecting with backoff (further attempts at debug level)"
            );
        } else {
            tracing::debug!(kind = end.kind.as_str(), error = %end.msg, retry_in = ?delay, "event stream attempt ended");
        }
        if !Backoff::sleep(delay, &shutdown).await {
            return;
        }
    }
}

async fn session(
    poller: &Poller,
    stream: &Upstream,
    cfg: EventsConfig,
    log: &mut Transitions,
) -> End {
    poller.set_stream_state(true, false);
    // Every (re)connection is a span of its own: the request until the stream opens. The future
    // is boxed so it (and with it the span) can be dropped the moment the stream is open.
    let mut open = Box::pin(stream.get_stream(api::EVENTS.0, EVENTS_PATH).instrument(
        tracing::info_span!(
            "event_stream",
            otel.name = "event stream connect",
            otel.kind = "internal"
        ),
    ));
    // Checks for a half event stuck in the parser and for heads the poll saw first; a second is
    // fine-grained enough for both, and wakes an idle exporter rarely.
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let res = loop {
        tokio::select! {
            r = &mut open => match r {
                Ok(r) => break r,
                Err(e) => {
                    return End {
                        kind: e.kind(),
                        msg: e.to_string(),
                        open_for: None,
                        counted: true,
                    };
                }
            },
            _ = check.tick() => {
                if poller.stream_missed_heads() >= 2 {
                    return End {
                        kind: ErrorKind::Timeout,
                        msg: "the event stream did not open while the poll found new heads".into(),
                        open_for: None,
                        counted: false,
                    };
                }
            }
        }
    };
    drop(open);
    let opened = Instant::now();
    poller.set_stream_state(true, true);
    poller
        .status()
        .record(ClCollector::Events.name(), Duration::ZERO, Ok(()));
    if !log.ever_connected {
        log.ever_connected = true;
        if !log.announced_down {
            tracing::info!(
                "event stream connected (head, block, chain_reorg, finalized_checkpoint)"
            );
        }
    }
    let partial_timeout = poller
        .clock()
        .map_or(Duration::from_secs(12), |c| {
            Duration::from_millis(c.slot_ms)
        })
        .max(Duration::from_secs(2));
    let mut parser = SseParser::new(cfg.max_event_bytes, cfg.max_event_bytes);
    let mut body = res.bytes_stream();
    let mut last_bytes = Instant::now();
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut items: Vec<SseItem> = Vec::new();
    let mut logged_decode = false;
    let end = |kind: ErrorKind, msg: String| End {
        kind,
        msg,
        open_for: Some(opened.elapsed()),
        counted: false,
    };
    loop {
        if log.announced_down && opened.elapsed() >= STABLE {
            log.announced_down = false;
            tracing::info!(attempts = log.attempts, "event stream stable again");
        }
        tokio::select! {
            chunk = body.next() => match chunk {
                None => return end(ErrorKind::Connect, "the node closed the event stream".into()),
                Some(Err(e)) => {
                    let e = classify(e);
                    return end(e.kind(), format!("event stream broke: {e}"));
                }
                Some(Ok(bytes)) => {
                    last_bytes = Instant::now();
                    parser.push(&bytes, &mut |i| items.push(i));
                    for item in items.drain(..) {
                        match item {
                            SseItem::Event(ev) => {
                                if let Err(msg) = handle(poller, &ev).await {
                                    poller.metrics().error(api::EVENTS, ErrorKind::Decode);
                                    if !logged_decode {
                                        logged_decode = true;
                                        tracing::warn!(event = %ethwatch_core::upstream::truncate(&ev.event, 40), error = %msg, "undecodable event skipped (further ones in this session at debug level)");
                                    } else {
                                        tracing::debug!(error = %msg, "undecodable event skipped");
                                    }
                                }
                            }
                            SseItem::Error(SseError::Decode) => {
                                poller.metrics().error(api::EVENTS, ErrorKind::Decode);
                            }
                            SseItem::Error(SseError::TooLarge) => {
                                return end(ErrorKind::TooLarge, format!("an event stream line or event exceeded {} bytes", cfg.max_event_bytes));
                            }
                        }
                    }
                }
            },
            _ = check.tick() => {
                if parser.pending() && last_bytes.elapsed() > partial_timeout {
                    return end(ErrorKind::Timeout, format!("part of an event waited {partial_timeout:?} for its end"));
                }
                if poller.stream_missed_heads() >= 2 {
                    return end(ErrorKind::Timeout, "the poll found new heads the event stream did not deliver".into());
                }
            }
        }
    }
}

/// Acts on one event; `Err` when its data does not decode.
async fn handle(poller: &Poller, ev: &SseEvent) -> Result<(), serde_json::Error> {
    poller.metrics().event(&ev.event);
    match ev.event.as_str() {
        "head" => {
            let h: HeadEvent = serde_json::from_str(&ev.data)?;
            let seen = Seen {
                slot: h.slot.0,
                root: h.block,
                parent_root: None,
            };
            if let Err(e) = poller
                .on_head(seen, HeadSource::Stream, poller.may_walk())
                .await
            {
                tracing::debug!(error = %e, "processing a head event");
            }
        }
        "block" => {
            let _: BlockEvent = serde_json::from_str(&ev.data)?;
        }
        "chain_reorg" => {
            let r: ReorgEvent = serde_json::from_str(&ev.data)?;
            poller.on_reorg(r.slot.0, r.depth.0);
        }
        "finalized_checkpoint" => {
            let f: FinalizedEvent = serde_json::from_str(&ev.data)?;
            poller.on_finalized(f.epoch.0);
        }
        _ => {}
    }
    Ok(())
}
