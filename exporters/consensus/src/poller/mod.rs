//! The poll cycle and the collectors, and the head path shared with the event stream.
//!
//! Over 600 lines on purpose: the poller's state, its schedule and readiness belong together;
//! the work each schedule does is in the submodules below.
//!
//! The collectors, what they ask and when, are the table in [`crate::collectors`]. This module
//! holds the poller's state and the cycle; its parts are split by schedule:
//! - [`node`]: the node's own facts (clock, version, health, finality, peers);
//! - [`chain`]: following the head (poll or event stream), blocks and missed slots, reorgs;
//! - [`epoch`]: once per epoch (validators, participation, proposals).
//!
//! A cycle runs every `--poll-interval` (default: half a slot). When `/eth/v1/node/syncing`
//! fails, the rest of the cycle is skipped (a down node would otherwise cost one timeout per
//! request), `eth_cl_up` drops to 0 and the last values stay, marked stale by
//! `ethwatch_collector_success` 0 and an old `ethwatch_collector_last_success_timestamp_seconds`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ethwatch_core::collectors::Collector;
use ethwatch_core::metrics::CollectorStatus;
use ethwatch_core::node::NodeHealth;
use ethwatch_core::upstream::UpstreamError;

use tracing::Instrument;

use crate::api::{self, BeaconApi};
use crate::clock::Clock;
use crate::collectors::{ClCollector, Enabled};
use crate::head::{HeadTracker, Seen};
use crate::metrics::{ConsensusMetrics, Health};
use crate::proposals;
use crate::types::{
    FinalityCheckpoints, Genesis, NodeVersion, PeerCount, PeerEntry, SpecTiming, Syncing,
    for_each_at, parse_client_version,
};
use crate::validators::{self, ValidatorFilter};

/// Whether collector `c` runs with this configuration.
/// A new head may walk back over headers unless the node is syncing a backlog longer than one
/// walk may fetch. A node that reports syncing a few slots behind (as one does while it switches
/// to the other side of a healed split) still has its reorg measured.
fn walkable(syncing: bool, sync_distance: Option<u64>, max_backfill: u64) -> bool {
    !syncing || sync_distance.is_some_and(|d| d <= max_backfill)
}

fn collector_enabled(cfg: &PollerConfig, c: ClCollector) -> bool {
    cfg.enabled.enabled(c) && (c != ClCollector::Proposals || !cfg.filter.is_all())
}

/// `/readyz` thresholds.
#[derive(Debug, Clone, Copy)]
pub struct ReadyConfig {
    /// Not ready once the node's sync distance exceeds this.
    pub max_sync_distance: u64,
    /// Ready again once it is back at or below this (hysteresis).
    pub resume_sync_distance: u64,
    /// Not ready when the node has not answered for this many poll intervals (at least 2 s).
    pub answer_intervals: u32,
}

/// Settings of the poller.
#[derive(Debug, Clone)]
pub struct PollerConfig {
    pub enabled: Enabled,
    /// `None`: half a slot once the slot length is known (1 s before).
    pub poll_interval: Option<Duration>,
    /// While the event stream delivers heads, the full cycle (sync, health, peers, info) runs
    /// only this often; see [`Poller::poll_tick`].
    pub streaming_interval: Duration,
    pub info_interval: Duration,
    pub peers_interval: Duration,
    pub reprobe_interval: Duration,
    pub max_backfill: u64,
    /// The peer list is fetched only while at most this many peers are connected.
    pub peers_list_max: u64,
    pub filter: ValidatorFilter,
    pub ready: ReadyConfig,
}

/// Where a head came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadSource {
    Poll,
    Stream,
}

#[derive(Debug, Default)]
struct Schedule {
    next_info: Option<Instant>,
    next_peers: Option<Instant>,
    /// The clock must be (re)read: unknown, or the node just came back.
    clock_stale: bool,
    validators_epoch: Option<u64>,
    participation_epoch: Option<u64>,
    /// After a failure, the validators collector waits until then.
    validators_retry_at: Option<Instant>,
    proposals_retry_at: Option<Instant>,
    /// Proposal duties of watched validators waiting to be judged.
    proposals: proposals::Pending,
    /// The clock epoch in which participation last failed: it is asked again in the next epoch
    /// at the earliest (a failure is mostly a large state the node cannot serve: asking every
    /// cycle would fetch it again and again).
    participation_failed_in: Option<u64>,
    /// Validator lists in a row larger than the body cap: the retry backs off by epochs.
    validators_too_large: u32,
    rewards_unsupported_until: Option<Instant>,
    peers_list_too_long_logged: bool,
    /// When the last full cycle started.
    last_full: Option<Instant>,
    /// The head's epoch when the finality checkpoints were last read; `None`: read them at the
    /// next tick.
    finality_epoch: Option<u64>,
}

/// Polls one beacon node and keeps its state. Shared by the poll loop, the validators loop and
/// the event stream.
pub struct Poller {
    api: BeaconApi,
    metrics: ConsensusMetrics,
    status: CollectorStatus,
    cfg: PollerConfig,
    tracker: tokio::sync::Mutex<HeadTracker>,
    sched: Mutex<Schedule>,
    /// Whether the node answers, and when `/eth/v1/node/syncing` last did (readiness).
    health: NodeHealth,
    /// Collectors whose failure was logged and that have not worked since.
    failing: Mutex<std::collections::HashSet<&'static str>>,
    /// The sync-distance half of readiness, with hysteresis.
    ready: AtomicBool,
    /// The stream is opening or open: heads the poll finds first count against it.
    stream_active: AtomicBool,
    /// New heads the poll found before the stream delivered them, since the stream's last head.
    stream_missed_heads: AtomicU32,
    /// The event stream is open (its response has started).
    stream_open: AtomicBool,
    /// Unix milliseconds of the last head event (0: none yet).
    last_stream_head_ms: AtomicU64,
    /// The first epoch whose blocks carry an execution payload (`BELLATRIX_FORK_EPOCH`); 0 until
    /// the spec is read, so every head's block is fetched.
    payload_from_epoch: AtomicU64,
    /// Wakes the poll loop early: the stream closed, so the poll must take over at once.
    wake: std::sync::Arc<tokio::sync::Notify>,
}

use ethwatch_core::unix_now_ms as unix_ms;

mod chain;
mod epoch;
mod node;

pub use node::{PEER_ENTRY_BYTES, peers_body_cap};

impl Poller {
    /// A poller for `api`.
    pub fn new(
        api: BeaconApi,
        metrics: ConsensusMetrics,
        status: CollectorStatus,
        cfg: PollerConfig,
    ) -> Self {
        for &c in ClCollector::ALL {
            status.declare(c.name(), collector_enabled(&cfg, c));
        }
        metrics
            .validators_watched_ids
            .set(i64::try_from(cfg.filter.len()).unwrap_or(i64::MAX));
        if collector_enabled(&cfg, ClCollector::Proposals) {
            // Both results from the start, so the first miss is an increase from 0.
            for o in proposals::Outcome::ALL {
                let _ = metrics.proposals.get_or_create(&[("result", o.as_str())]);
            }
        }
        let health = NodeHealth::new("beacon node", api.upstream().redacted_url().to_string());
        Poller {
            api,
            metrics,
            status,
            tracker: tokio::sync::Mutex::new(HeadTracker::new(256, cfg.max_backfill)),
            cfg,
            sched: Mutex::new(Schedule {
                clock_stale: true,
                ..Schedule::default()
            }),
            health,
            failing: Mutex::default(),
            ready: AtomicBool::new(true),
            stream_active: AtomicBool::new(false),
            stream_missed_heads: AtomicU32::new(0),
            stream_open: AtomicBool::new(false),
            last_stream_head_ms: AtomicU64::new(0),
            payload_from_epoch: AtomicU64::new(0),
            wake: std::sync::Arc::default(),
        }
    }

    /// The metrics this poller updates.
    pub fn metrics(&self) -> &ConsensusMetrics {
        &self.metrics
    }

    /// The API client.
    pub fn api(&self) -> &BeaconApi {
        &self.api
    }

    /// The collector status.
    pub fn status(&self) -> &CollectorStatus {
        &self.status
    }

    /// The settings.
    pub fn config(&self) -> &PollerConfig {
        &self.cfg
    }

    fn sched(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The chain's clock, once known.
    pub fn clock(&self) -> Option<Clock> {
        self.metrics.state.lock().clock
    }

    /// Unix milliseconds of the last time the node answered (0 if never).
    pub fn last_ok_ms(&self) -> u64 {
        self.health.last_ok_ms()
    }

    /// The time between cycles: the flag, or half a slot (at least 250 ms), or 1 s while the
    /// slot length is unknown.
    pub fn poll_interval(&self) -> Duration {
        self.cfg
            .poll_interval
            .unwrap_or_else(|| match self.clock() {
                Some(c) => Duration::from_millis((c.slot_ms / 2).max(250)),
                None => Duration::from_secs(1),
            })
    }

    /// `/readyz`: `Ok` while the node answers and is not syncing far behind.
    pub fn readiness(&self) -> Result<(), String> {
        let last = self.last_ok_ms();
        if last == 0 {
            return Err("the beacon node has not answered yet".into());
        }
        // A head event is an answer too, good until the stream counts as quiet; the window
        // starts from there, so a quiet stream hands over to the poll without a gap. A closed
        // stream proves nothing (the node may be gone): only the poll's answers count then.
        let open = self.stream_open.load(Ordering::Relaxed);
        let stream_until = match (
            self.last_stream_head_ms.load(Ordering::Relaxed),
            self.clock(),
        ) {
            (t, Some(c)) if open && t > 0 => t + stream_grace_ms(c),
            _ => 0,
        };
        let age = unix_ms().saturating_sub(last.max(stream_until));
        let window = (self.poll_interval() * self.cfg.ready.answer_intervals)
            .max(Duration::from_secs(2))
            .as_millis() as u64;
        if age > window {
            return Err(format!(
                "the beacon node last answered {:.1} s ago",
                age as f64 / 1000.0
            ));
        }
        if !self.ready.load(Ordering::Relaxed) {
            let d = self.metrics.state.lock().sync_distance;
            return Err(format!(
                "the beacon node is {} slots behind (ready again at {} or less)",
                d.map_or("unknown".to_string(), |d| d.to_string()),
                self.cfg.ready.resume_sync_distance
            ));
        }
        Ok(())
    }

    fn update_ready(&self, sync_distance: u64) {
        let was = self.ready.load(Ordering::Relaxed);
        let now = if was {
            sync_distance <= self.cfg.ready.max_sync_distance
        } else {
            sync_distance <= self.cfg.ready.resume_sync_distance
        };
        if now != was {
            self.ready.store(now, Ordering::Relaxed);
            if now {
                tracing::info!(sync_distance, "beacon node caught up; ready");
            } else {
                tracing::warn!(
                    sync_distance,
                    max = self.cfg.ready.max_sync_distance,
                    "beacon node is behind; not ready"
                );
            }
        }
    }

    /// The event stream is being opened (`active`), is open (`open`), or neither.
    pub fn set_stream_state(&self, active: bool, open: bool) {
        self.stream_active.store(active || open, Ordering::Relaxed);
        let was_open = self.stream_open.swap(open, Ordering::Relaxed);
        if was_open && !open {
            self.wake.notify_one();
        }
        self.stream_missed_heads.store(0, Ordering::Relaxed);
        self.metrics.stream_connected.set(i64::from(open));
    }

    /// New heads the poll saw first since the stream's last head.
    pub fn stream_missed_heads(&self) -> u32 {
        self.stream_missed_heads.load(Ordering::Relaxed)
    }

    /// The event stream is open and delivered a head within the last two slots (and a second):
    /// the head comes from the stream, and the poll can slow down.
    pub fn stream_live(&self) -> bool {
        if !self.stream_open.load(Ordering::Relaxed) {
            return false;
        }
        let last = self.last_stream_head_ms.load(Ordering::Relaxed);
        match self.clock() {
            Some(c) if last > 0 => unix_ms().saturating_sub(last) <= stream_grace_ms(c),
            _ => false,
        }
    }

    /// The time between full cycles now: [`Self::poll_interval`], or the streaming interval
    /// while [`Self::stream_live`].
    pub fn cycle_interval(&self) -> Duration {
        if self.stream_live() {
            self.cfg.streaming_interval.max(self.poll_interval())
        } else {
            self.poll_interval()
        }
    }

    /// How long the poll loop sleeps after a tick: [`Self::poll_interval`] without a live
    /// stream; with one, a slot (the stream going quiet, an epoch starting and missed slots
    /// are all noticed within one), but never past the next full cycle.
    pub fn next_tick_in(&self) -> Duration {
        let poll = self.poll_interval();
        if !self.stream_live() {
            return poll;
        }
        let slot = self
            .clock()
            .map_or(poll, |c| Duration::from_millis(c.slot_ms))
            .max(poll);
        let until_full = self
            .sched()
            .last_full
            .map(|t| (t + self.cycle_interval()).saturating_duration_since(Instant::now()));
        until_full.map_or(slot, |u| slot.min(u.max(Duration::from_millis(50))))
    }

    /// Notified when the poll loop should tick before its sleep ends (the stream closed).
    pub fn wake(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    /// What the poll loop runs at every tick (see [`Self::next_tick_in`]). Without a live event stream, a
    /// full cycle. While the stream delivers heads, a full cycle only every streaming interval
    /// (sync, health, peers and info change slowly; the head comes from the stream), and in
    /// between only what is due: the finality checkpoints once the head enters a new epoch
    /// (they change only at epoch processing), and missed slots by the clock. A tick with
    /// nothing due sends no request.
    pub async fn poll_tick(&self) {
        let full_due = {
            let sc = self.sched();
            sc.last_full
                .is_none_or(|t| t.elapsed() + Duration::from_millis(50) >= self.cycle_interval())
        };
        if full_due || !self.stream_live() {
            return self.poll_once().await;
        }
        if self.finality_due() {
            async {
                let t = Instant::now();
                let r = self.poll_finality().await;
                self.record(ClCollector::Finality, t, r);
            }
            .instrument(collector_span(ClCollector::Finality))
            .instrument(tracing::info_span!(
                "poll",
                otel.name = "poll",
                otel.kind = "internal"
            ))
            .await;
        }
        self.decide_by_clock().await;
    }

    /// The epoch of the current head, once the head and the clock are known.
    fn collector_enabled(&self, c: ClCollector) -> bool {
        collector_enabled(&self.cfg, c)
    }

    fn head_epoch(&self) -> Option<u64> {
        let st = self.metrics.state.lock();
        st.head_slot.zip(st.clock).map(|(s, c)| c.epoch_of(s))
    }

    /// The head's epoch (or either side unknown) differs from the one the finality checkpoints
    /// were read at.
    fn finality_due(&self) -> bool {
        let head_epoch = self.head_epoch();
        head_epoch.is_none() || self.sched().finality_epoch != head_epoch
    }

    async fn decide_by_clock(&self) {
        if let Some(slot) = self.clock().and_then(|c| c.now_slot()) {
            let missed = self.tracker.lock().await.on_clock(slot);
            self.metrics.missed_slots.inc_by(missed);
        }
    }

    /// One poll cycle, traced as a `poll` span with a child span per collector run (and, under
    /// those, the HTTP client spans of the upstream call path).
    pub async fn poll_once(&self) {
        self.poll_cycle()
            .instrument(tracing::info_span!(
                "poll",
                otel.name = "poll",
                otel.kind = "internal"
            ))
            .await
    }

    async fn poll_cycle(&self) {
        let start = Instant::now();
        self.sched().last_full = Some(start);
        // While the stream delivers heads, the head and (within an epoch) the finality
        // checkpoints need no request: they are current, so their collectors report success.
        let live = self.stream_live();
        let poll_head = !live;
        let poll_finality = !live || self.finality_due();
        let sync_span = collector_span(ClCollector::Sync);
        let syncing = self
            .api
            .get_data::<Syncing>(api::SYNCING, "/eth/v1/node/syncing")
            .instrument(sync_span.clone())
            .await;
        let s = match syncing {
            Ok(s) => s,
            Err(e) => {
                sync_span.record("otel.status_code", "ERROR");
                self.node_failed(&e);
                // Every collector that asks the node is as blind, not only those of every cycle;
                // the ones on their own schedule run again as soon as the node answers. The
                // event stream reports its own state.
                let msg = e.to_string();
                for &c in ClCollector::ALL {
                    if c != ClCollector::Events && self.collector_enabled(c) {
                        self.status
                            .record(c.name(), start.elapsed(), Err(msg.clone()));
                    }
                }
                let mut sc = self.sched();
                sc.next_info = None;
                sc.next_peers = None;
                sc.validators_epoch = None;
                sc.participation_epoch = None;
                return;
            }
        };
        self.node_answered();
        {
            let mut st = self.metrics.state.lock();
            st.syncing = Some(s.is_syncing);
            st.sync_distance = Some(s.sync_distance.0);
            st.optimistic = s.is_optimistic;
            st.el_offline = s.el_offline;
        }
        self.update_ready(s.sync_distance.0);
        self.status
            .record(ClCollector::Sync.name(), start.elapsed(), Ok(()));

        let (clock_due, info_due, peers_due) = {
            let now = Instant::now();
            let sc = self.sched();
            let due = |t: Option<Instant>| t.is_none_or(|t| now >= t);
            (
                sc.clock_stale || due(sc.next_info),
                due(sc.next_info),
                self.collector_enabled(ClCollector::Peers) && due(sc.next_peers),
            )
        };
        if clock_due {
            async {
                let t = Instant::now();
                let r = self.refresh_clock().await;
                if r.is_ok() {
                    self.sched().clock_stale = false;
                }
                self.record(ClCollector::Clock, t, r);
            }
            .instrument(collector_span(ClCollector::Clock))
            .await;
        }
        let info = async {
            if info_due {
                async {
                    let t = Instant::now();
                    let r = self.poll_version().await;
                    self.sched().next_info = Some(start + self.cfg.info_interval);
                    self.record(ClCollector::Info, t, r);
                }
                .instrument(collector_span(ClCollector::Info))
                .await;
            }
        };
        let health = async {
            let t = Instant::now();
            let r = self.poll_health().await;
            self.record(ClCollector::Health, t, r);
        }
        .instrument(collector_span(ClCollector::Health));
        let head = async {
            let t = Instant::now();
            let r = if poll_head {
                self.poll_head(walkable(
                    s.is_syncing,
                    Some(s.sync_distance.0),
                    self.cfg.max_backfill,
                ))
                .await
            } else {
                Ok(())
            };
            self.record(ClCollector::Head, t, r);
        }
        .instrument(collector_span(ClCollector::Head));
        let finality = async {
            let t = Instant::now();
            let r = if poll_finality {
                self.poll_finality().await
            } else {
                Ok(())
            };
            self.record(ClCollector::Finality, t, r);
        }
        .instrument(collector_span(ClCollector::Finality));
        let peers = async {
            if peers_due {
                async {
                    let t = Instant::now();
                    let r = self.poll_peers().await;
                    self.sched().next_peers = Some(start + self.cfg.peers_interval);
                    self.record(ClCollector::Peers, t, r);
                }
                .instrument(collector_span(ClCollector::Peers))
                .await;
            }
        };
        tokio::join!(info, health, head, finality, peers);
        self.decide_by_clock().await;
    }

    /// Records a collector run; a failure is logged when it starts and when it ends, not per run,
    /// and marks the current (collector) span as failed.
    fn record(&self, c: ClCollector, started: Instant, r: Result<(), UpstreamError>) {
        let collector = c.name();
        if r.is_err() {
            tracing::Span::current().record("otel.status_code", "ERROR");
        }
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match &r {
            Err(e) if failing.insert(collector) => tracing::warn!(
                node = self.api.upstream().redacted_url(),
                collector,
                kind = e.kind().as_str(),
                error = %e,
                "collector failing; its values are kept and marked stale (logged again when it works)"
            ),
            Err(e) => tracing::debug!(collector, error = %e, "collector still failing"),
            Ok(()) if failing.remove(collector) => {
                tracing::info!(collector, "collector works again")
            }
            Ok(()) => {}
        }
        drop(failing);
        self.status
            .record(collector, started.elapsed(), r.map_err(|e| e.to_string()));
    }

    fn node_failed(&self, e: &UpstreamError) {
        self.metrics.state.lock().up = false;
        self.health.failed(e);
    }

    /// Marks the node up; after a failure, the clock is read again (a restarted dev node may
    /// have a new genesis).
    fn node_answered(&self) {
        self.metrics.state.lock().up = true;
        if self.health.answered() {
            self.sched().clock_stale = true;
        }
    }
}

/// How long after its last head event the stream still counts as delivering: two slots (one
/// may be missed) and a second.
fn stream_grace_ms(c: Clock) -> u64 {
    2 * c.slot_ms + 1000
}

/// A span for one collector run, child of the current (poll) span.
fn collector_span(c: ClCollector) -> tracing::Span {
    let name = c.name();
    tracing::info_span!(
        "collect",
        otel.name = %format!("collect {name}"),
        otel.status_code = tracing::field::Empty,
        ethwatch.collector = name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_a_few_slots_behind_still_has_its_reorgs_walked() {
        assert!(walkable(false, None, 64));
        assert!(walkable(false, Some(10_000), 64));
        // A healed split: the node reports syncing, 9 slots behind (seen with Prysm v6.0.4).
        assert!(walkable(true, Some(9), 64));
        assert!(walkable(true, Some(64), 64));
        // A real backlog: no walk per head.
        assert!(!walkable(true, Some(65), 64));
        assert!(!walkable(true, None, 64));
    }
}
