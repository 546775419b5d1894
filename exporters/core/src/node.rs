//! What the exporters share about the one node they watch: whether it answers (logged once per
//! change, not per poll), when it last did (readiness), and the reconnect backoff of their
//! long-lived streams (the consensus event stream, the execution `newHeads` subscription).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::BackoffBuilder;
use tokio_util::sync::CancellationToken;

use crate::upstream::UpstreamError;

/// Whether the node answers. A node that goes down logs one warning (again only when the kind of
/// failure changes) and one line when it is back; the exporter keeps serving its last values.
#[derive(Debug)]
pub struct NodeHealth {
    /// "execution node" or "beacon node", for the log lines.
    what: &'static str,
    /// The node's URL with credentials redacted.
    node: String,
    /// Unix milliseconds of the last answer (0: none yet).
    last_ok_ms: AtomicU64,
    /// The kind of the failure last logged, while the node fails.
    last_failure: Mutex<Option<&'static str>>,
}

impl NodeHealth {
    /// The health of the node at `node` (redacted URL), a `what` ("beacon node").
    pub fn new(what: &'static str, node: String) -> Self {
        NodeHealth {
            what,
            node,
            last_ok_ms: AtomicU64::new(0),
            last_failure: Mutex::new(None),
        }
    }

    /// A request failed: logs a warning when the node starts failing or fails another way.
    pub fn failed(&self, e: &UpstreamError) {
        let kind = e.kind().as_str();
        let mut last = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        if *last != Some(kind) {
            tracing::warn!(
                node = self.node,
                kind,
                error = %e,
                "{} unreachable or misbehaving; serving last known values as stale",
                self.what
            );
            *last = Some(kind);
        }
    }

    /// The node answered. Returns whether it had been failing (and logs that it is back).
    pub fn answered(&self) -> bool {
        self.last_ok_ms
            .store(crate::unix_now_ms(), Ordering::Relaxed);
        let mut last = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        let recovered = last.take().is_some();
        if recovered {
            tracing::info!(node = self.node, "{} answers again", self.what);
        }
        recovered
    }

    /// Unix milliseconds of the last answer (0 if none).
    pub fn last_ok_ms(&self) -> u64 {
        self.last_ok_ms.load(Ordering::Relaxed)
    }
}

/// Exponential reconnect backoff without jitter: 1 s, doubling, at most `max` (and never less
/// than 1 s), restarting from 1 s after [`Backoff::reset`] (a session that lasted).
#[derive(Debug)]
pub struct Backoff {
    builder: backon::ExponentialBuilder,
    delays: backon::ExponentialBackoff,
}

impl Backoff {
    /// A backoff from 1 s up to `max`.
    pub fn new(max: Duration) -> Self {
        let builder = backon::ExponentialBuilder::new()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(max.max(Duration::from_secs(1)))
            .with_factor(2.0)
            .without_max_times();
        Backoff {
            delays: builder.build(),
            builder,
        }
    }

    /// Starts again from the shortest delay.
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(Duration::from_secs(1))
    }

    /// Sleeps `delay` unless shutdown comes first; false on shutdown.
    pub async fn sleep(delay: Duration, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(30));
        let d: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        // A cap below a second is raised to one.
        let mut b = Backoff::new(Duration::from_millis(10));
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn health_logs_transitions_only() {
        let h = NodeHealth::new("beacon node", "http://127.0.0.1:1/".into());
        assert_eq!(h.last_ok_ms(), 0);
        assert!(!h.answered(), "never failed: no recovery");
        assert!(h.last_ok_ms() > 0);
        h.failed(&UpstreamError::decode("x"));
        h.failed(&UpstreamError::decode("y"));
        assert!(h.answered(), "failed, then answered: recovered");
        assert!(!h.answered());
    }
}
