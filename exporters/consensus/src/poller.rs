//! The poll cycle and the collectors, and the head path shared with the event stream.
//!
//! | collector       | requests                                                          | when                                  |
//! |-----------------|-------------------------------------------------------------------|---------------------------------------|
//! | `sync`          | `GET /eth/v1/node/syncing` (first; its answer is `eth_cl_up`)       | every cycle                           |
//! | `health`        | `GET /eth/v1/node/health` (200, 206 and 503 are answers)          | every cycle                           |
//! | `head`          | `GET /eth/v1/beacon/headers/head`; for a new head `GET /eth/v2/beacon/blocks/{root}`, and `GET /eth/v1/beacon/headers/{root}` per parent walked over a gap | every cycle, and per head event |
//! | `finality`      | `GET /eth/v1/beacon/states/head/finality_checkpoints`             | every cycle                           |
//! | `peers`         | `GET /eth/v1/node/peer_count`, `GET /eth/v1/node/peers?state=connected` | `--peers-interval`              |
//! | `clock`         | `GET /eth/v1/beacon/genesis`, `GET /eth/v1/config/spec`           | start, `--info-interval`, node back   |
//! | `info`          | `GET /eth/v1/node/version`                                        | `--info-interval`                     |
//! | `validators`    | `GET /eth/v1/beacon/states/head/validators` (64 ids per request with `--validators.id`) | once per epoch |
//! | `participation` | `POST /eth/v1/beacon/rewards/attestations/{epoch}`, else `GET /eth/v1/beacon/headers/{slot}` (back to the epoch's last block) and `GET /eth/v2/debug/beacon/states/{slot}` | once per epoch, also after a failure |
//! | `proposals`     | `GET /eth/v1/validator/duties/proposer/{epoch}`; `GET /eth/v1/beacon/headers/{slot}` per duty of a watched validator (only with `--validators.id`) | once per epoch; per duty a slot after its slot |
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
use ethwatch_core::upstream::{ErrorKind, UpstreamError};

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

    async fn refresh_clock(&self) -> Result<(), UpstreamError> {
        let (g, s) = tokio::join!(
            self.api
                .get_data::<Genesis>(api::GENESIS, "/eth/v1/beacon/genesis"),
            self.api
                .get_data::<SpecTiming>(api::SPEC, "/eth/v1/config/spec"),
        );
        let (g, s) = (g?, s?);
        let (slot_ms, slots_per_epoch) = s
            .timing()
            .map_err(|e| self.api.decode_error(api::SPEC, e))?;
        // Unknown (a spec without the key): every block may carry a payload.
        self.payload_from_epoch
            .store(s.BELLATRIX_FORK_EPOCH.map_or(0, |e| e.0), Ordering::Relaxed);
        let clock = Clock {
            genesis_time: g.genesis_time.0,
            slot_ms,
            slots_per_epoch,
        };
        let old = self.metrics.state.lock().clock;
        if old == Some(clock) {
            return Ok(());
        }
        if let Some(old) = old {
            tracing::warn!(
                old_genesis = old.genesis_time,
                new_genesis = clock.genesis_time,
                "the beacon node is on a different chain now (genesis or slot timing changed); following it from scratch"
            );
            self.tracker.lock().await.reset();
            let mut st = self.metrics.state.lock();
            st.head_slot = None;
            st.head_execution_block_number = None;
            st.finalized_epoch = None;
            st.justified_epoch = None;
            st.participation = None;
            drop(st);
            let mut sc = self.sched();
            sc.validators_epoch = None;
            sc.participation_epoch = None;
        } else {
            tracing::info!(
                genesis_time = clock.genesis_time,
                seconds_per_slot = clock.seconds_per_slot(),
                slots_per_epoch,
                "chain clock known"
            );
        }
        self.metrics.state.lock().clock = Some(clock);
        Ok(())
    }

    async fn poll_version(&self) -> Result<(), UpstreamError> {
        let v: NodeVersion = self
            .api
            .get_data(api::VERSION, "/eth/v1/node/version")
            .await?;
        self.metrics.state.lock().client = Some(parse_client_version(&v.version));
        Ok(())
    }

    async fn poll_health(&self) -> Result<(), UpstreamError> {
        let (status, _) = self
            .api
            .get_raw(api::HEALTH, "/eth/v1/node/health", &[206, 503])
            .await?;
        let h = Health::from_status(status).ok_or_else(|| {
            self.api
                .decode_error(api::HEALTH, format!("unexpected health status {status}"))
        })?;
        self.metrics.state.lock().health = Some(h);
        Ok(())
    }

    async fn poll_finality(&self) -> Result<(), UpstreamError> {
        let head_epoch = self.head_epoch();
        let f: FinalityCheckpoints = self
            .api
            .get_data(
                api::FINALITY,
                "/eth/v1/beacon/states/head/finality_checkpoints",
            )
            .await?;
        let mut st = self.metrics.state.lock();
        st.finalized_epoch = Some(f.finalized.epoch.0);
        st.justified_epoch = Some(f.current_justified.epoch.0);
        drop(st);
        self.sched().finality_epoch = head_epoch;
        Ok(())
    }

    async fn poll_peers(&self) -> Result<(), UpstreamError> {
        let pc: PeerCount = self
            .api
            .get_data(api::PEER_COUNT, "/eth/v1/node/peer_count")
            .await?;
        self.metrics.state.lock().peers = Some([
            pc.disconnected.0,
            pc.connecting.0,
            pc.connected.0,
            pc.disconnecting.0,
        ]);
        if pc.connected.0 == 0 {
            // Nothing to list.
            self.metrics.state.lock().peers_by_direction = Some([0, 0]);
            return Ok(());
        }
        let max = self.cfg.peers_list_max;
        if pc.connected.0 > max {
            self.peers_list_too_long(pc.connected.0);
            return Ok(());
        }
        // The list is cut once it is longer than --peers.list-max entries could be, so the
        // memory it takes is bounded by that flag, not by --beacon-max-body-bytes.
        let cap = peers_body_cap(max);
        let (_, body) = match self
            .api
            .get_raw_capped(api::PEERS, "/eth/v1/node/peers?state=connected", cap)
            .await
        {
            Err(UpstreamError::TooLarge { .. }) => {
                self.peers_list_too_long(max + 1);
                return Ok(());
            }
            r => r?,
        };
        let (mut inbound, mut outbound, mut listed) = (0u64, 0u64, 0u64);
        let found = for_each_at(&body, &["data"], |p: PeerEntry| {
            listed += 1;
            if listed > max || p.state.as_deref().is_some_and(|s| s != "connected") {
                return;
            }
            match p.direction.as_deref() {
                Some("inbound") => inbound += 1,
                Some("outbound") => outbound += 1,
                _ => {}
            }
        })
        .map_err(|e| {
            self.api
                .decode_error(api::PEERS, format!("{}: {e}", api::PEERS.0))
        })?;
        if !found {
            return Err(self
                .api
                .decode_error(api::PEERS, "no data array in the peer list"));
        }
        if listed > max {
            self.metrics.error(api::PEERS, ErrorKind::TooLarge);
            self.peers_list_too_long(listed);
            return Ok(());
        }
        self.metrics.state.lock().peers_by_direction = Some([inbound, outbound]);
        Ok(())
    }

    fn peers_list_too_long(&self, n: u64) {
        self.metrics.state.lock().peers_by_direction = None;
        let mut sc = self.sched();
        if !sc.peers_list_too_long_logged {
            sc.peers_list_too_long_logged = true;
            tracing::warn!(
                peers = n,
                max = self.cfg.peers_list_max,
                "more connected peers than --peers.list-max; eth_cl_peers_by_direction is left out"
            );
        }
    }

    /// Whether a new head may walk back over headers now (see [`walkable`]).
    pub fn may_walk(&self) -> bool {
        let st = self.metrics.state.lock();
        walkable(
            st.syncing == Some(true),
            st.sync_distance,
            self.cfg.max_backfill,
        )
    }

    async fn poll_head(&self, may_walk: bool) -> Result<(), UpstreamError> {
        let h = self.api.header("head").await?;
        let seen = Seen {
            slot: h.slot,
            root: h.root,
            parent_root: Some(h.parent_root),
        };
        self.on_head(seen, HeadSource::Poll, may_walk).await
    }

    /// Processes a head from a poll or the event stream: the head slot and the arrival delay at
    /// once, then the block (execution block number, parent) and the block/missed-slot
    /// accounting. `may_walk` is false while the node syncs (no walking back over its backlog).
    pub async fn on_head(
        &self,
        seen: Seen,
        source: HeadSource,
        may_walk: bool,
    ) -> Result<(), UpstreamError> {
        let now = ethwatch_core::unix_now();
        let clock = self.clock();
        let clock_slot = clock.and_then(|c| c.slot_at(now));
        let mut tracker = self.tracker.lock().await;
        if source == HeadSource::Stream {
            self.stream_missed_heads.store(0, Ordering::Relaxed);
            self.last_stream_head_ms.store(unix_ms(), Ordering::Relaxed);
        }
        if !tracker.is_new(&seen.root) {
            return Ok(());
        }
        // A poll that answers with a head older than the one the open stream delivered is late,
        // not news (a real move to a lower head comes as a stream event too).
        let stream_on = self.stream_active.load(Ordering::Relaxed);
        if source == HeadSource::Poll
            && stream_on
            && tracker.head().is_some_and(|(slot, _)| seen.slot < slot)
        {
            return Ok(());
        }
        if source == HeadSource::Poll && stream_on {
            self.stream_missed_heads.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.state.lock().head_slot = Some(seen.slot);
        if source == HeadSource::Stream
            && let Some(c) = clock
        {
            let delay = now - c.slot_start(seen.slot);
            let epoch_secs = c.seconds_per_slot() * c.slots_per_epoch as f64;
            if (0.0..epoch_secs).contains(&delay) {
                self.metrics.arrival_delay.observe(delay);
            }
        }

        let mut seen = seen;
        let mut block_err = None;
        let payload_from = self.payload_from_epoch.load(Ordering::Relaxed);
        let no_payload = clock.is_some_and(|c| c.epoch_of(seen.slot) < payload_from);
        // The slot right after the last head leaves no slot between them to classify: its
        // parent changes no count (a depth-1 reorg there goes unseen when the block cannot be
        // fetched; the node's chain_reorg event then only logs it).
        let next_slot = seen.parent_root.is_none()
            && tracker
                .head()
                .is_some_and(|(slot, _)| seen.slot == slot + 1 && tracker.decided() == Some(slot));
        // (route, its answer as slot, parent and execution block number); before Bellatrix a
        // block has no execution payload, so its header (the parent) suffices, and the next
        // slot needs nothing at all.
        let fetched = if no_payload && next_slot {
            None
        } else if no_payload {
            let r = self.api.header(&seen.root.to_string()).await;
            Some((api::HEADER, r.map(|h| (h.slot, h.parent_root, None))))
        } else {
            let r = self.api.block(seen.root).await;
            Some((
                api::BLOCK,
                r.map(|b| {
                    (
                        b.message.slot.0,
                        b.message.parent_root,
                        b.execution_block_number(),
                    )
                }),
            ))
        };
        match fetched {
            None => self.metrics.state.lock().head_execution_block_number = None,
            Some((_, Ok((slot, parent, number)))) if slot == seen.slot => {
                self.metrics.state.lock().head_execution_block_number = number;
                seen.parent_root.get_or_insert(parent);
            }
            Some((route, Ok((slot, _, _)))) => {
                block_err = Some(self.api.decode_error(
                    route,
                    format!(
                        "{} {} is at slot {slot}, the head said {}",
                        route.0, seen.root, seen.slot
                    ),
                ));
            }
            Some((_, Err(e))) => block_err = Some(e),
        }
        let outcome = tracker
            .advance(seen, clock_slot, &self.api, may_walk)
            .await?;
        drop(tracker);
        self.metrics.blocks.inc_by(outcome.new_blocks);
        self.metrics.missed_slots.inc_by(outcome.missed);
        if let Some(d) = outcome.reorg_depth {
            // Another branch may have processed its epoch differently: read finality again.
            self.sched().finality_epoch = None;
            self.metrics.reorgs.inc();
            self.metrics.reorg_depth.observe(d as f64);
            tracing::warn!(depth = d, new_head = seen.slot, "reorg");
        }
        if outcome.unresolved > 0 {
            tracing::debug!(
                slots = outcome.unresolved,
                head = seen.slot,
                "slots left unclassified (gap beyond --max-backfill or node syncing)"
            );
        }
        match block_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A `chain_reorg` event. The reorg itself is counted from the heads (see [`crate::head`]),
    /// like on the execution side: clients compute the event's `depth` differently (Prysm and
    /// Lodestar do not count the old chain's blocks above the common ancestor).
    pub fn on_reorg(&self, slot: u64, depth: u64) {
        // Another branch may have processed its epoch differently: read finality again.
        self.sched().finality_epoch = None;
        tracing::info!(
            slot,
            client_depth = depth,
            "chain reorg reported by the node"
        );
    }

    /// A `finalized_checkpoint` event: finality moves at once, the poll confirms it.
    pub fn on_finalized(&self, epoch: u64) {
        let mut st = self.metrics.state.lock();
        if st.finalized_epoch.is_none_or(|e| epoch > e) {
            st.finalized_epoch = Some(epoch);
        }
    }

    /// The validators and participation collectors, when their epoch is due.
    pub async fn poll_validators(&self) {
        // Not before the node first answered, nor while it is down (the poll cycle marks these
        // collectors failed then, and they run again once it answers).
        if !self.collector_enabled(ClCollector::Validators)
            || self.last_ok_ms() == 0
            || !self.metrics.state.lock().up
        {
            return;
        }
        let Some(clock) = self.clock() else { return };
        let Some(slot) = clock.now_slot() else { return };
        let epoch = clock.epoch_of(slot);
        let retry_after = Duration::from_millis(clock.slot_ms.max(1000));
        let epoch_len =
            Duration::from_millis(clock.slot_ms.max(1000) * clock.slots_per_epoch.max(1));
        let now = Instant::now();
        let (counts_due, part_due, try_rewards, proposals_due) = {
            let sc = self.sched();
            let ready = |t: Option<Instant>| t.is_none_or(|t| now >= t);
            let proposals_due = !self.cfg.filter.is_all()
                && ready(sc.proposals_retry_at)
                && (sc.proposals.fetched_epoch != Some(epoch)
                    || !sc.proposals.ripe(slot).is_empty());
            (
                sc.validators_epoch != Some(epoch) && ready(sc.validators_retry_at),
                epoch >= 2
                    && sc.participation_epoch != Some(epoch - 2)
                    && sc.participation_failed_in != Some(epoch),
                ready(sc.rewards_unsupported_until),
                proposals_due,
            )
        };
        if counts_due {
            self.poll_validator_counts(epoch, now, retry_after, epoch_len)
                .instrument(collector_span(ClCollector::Validators))
                .await;
        }
        if part_due {
            self.poll_participation(epoch, now, clock.slots_per_epoch, try_rewards)
                .instrument(collector_span(ClCollector::Participation))
                .await;
        }
        if proposals_due {
            self.poll_proposals(epoch, slot, now, retry_after, clock.slots_per_epoch)
                .instrument(collector_span(ClCollector::Proposals))
                .await;
        }
    }

    /// Fetches the epoch's proposal duties of the watched validators once, then judges the ones
    /// whose slot is over by a full slot (see [`proposals`]).
    async fn poll_proposals(
        &self,
        epoch: u64,
        slot: u64,
        now: Instant,
        retry_after: Duration,
        slots_per_epoch: u64,
    ) {
        let t = Instant::now();
        let r = async {
            if self.sched().proposals.fetched_epoch != Some(epoch) {
                let duties = proposals::fetch_duties(&self.api, &self.cfg.filter, epoch).await?;
                let dropped = self.sched().proposals.add(epoch, duties, slots_per_epoch);
                if dropped > 0 {
                    tracing::warn!(
                        dropped,
                        "proposal duties dropped unjudged: the node did not answer for {} epochs",
                        proposals::MAX_PENDING_EPOCHS
                    );
                }
            }
            let ripe = self.sched().proposals.ripe(slot);
            for duty in ripe {
                let outcome = proposals::fetch_outcome(&self.api, duty).await?;
                self.metrics.proposal(outcome);
                self.sched().proposals.remove(duty);
                if outcome == proposals::Outcome::Missed {
                    tracing::info!(
                        slot = duty.slot,
                        validator_index = duty.validator_index,
                        "a watched validator missed its block proposal"
                    );
                }
            }
            Ok::<(), UpstreamError>(())
        }
        .await;
        if r.is_err() {
            self.sched().proposals_retry_at = Some(now + retry_after);
        }
        self.record(ClCollector::Proposals, t, r);
    }

    /// How long a failed validators collector waits: one slot, but after an
    /// answer larger than the body cap a growing number of epochs (one log line per streak).
    fn retry_delay(
        &self,
        e: &UpstreamError,
        streak: &mut u32,
        collector: &'static str,
        retry_after: Duration,
        epoch_len: Duration,
    ) -> Duration {
        if e.kind() != ErrorKind::TooLarge {
            *streak = 0;
            return retry_after;
        }
        *streak = streak.saturating_add(1);
        let epochs = too_large_backoff_epochs(*streak);
        if *streak == 1 {
            tracing::warn!(
                collector,
                "the answer is larger than --beacon-max-body-bytes; retrying after 1 epoch, then backing off to 32 epochs (raise the flag or narrow --validators.id)"
            );
        }
        epoch_len * epochs
    }

    async fn poll_validator_counts(
        &self,
        epoch: u64,
        now: Instant,
        retry_after: Duration,
        epoch_len: Duration,
    ) {
        {
            let t = Instant::now();
            let r = validators::fetch_counts(&self.api, &self.cfg.filter).await;
            match &r {
                Ok(c) => {
                    let mut st = self.metrics.state.lock();
                    st.validators = Some(c.by_status);
                    st.validators_balance_gwei = Some(c.balance_gwei);
                    drop(st);
                    let mut sc = self.sched();
                    sc.validators_epoch = Some(epoch);
                    sc.validators_too_large = 0;
                }
                Err(e) => {
                    let mut sc = self.sched();
                    sc.validators_retry_at = Some(
                        now + self.retry_delay(
                            e,
                            &mut sc.validators_too_large,
                            "validators",
                            retry_after,
                            epoch_len,
                        ),
                    );
                }
            }
            self.record(ClCollector::Validators, t, r.map(|_| ()));
        }
    }

    async fn poll_participation(
        &self,
        epoch: u64,
        now: Instant,
        slots_per_epoch: u64,
        try_rewards: bool,
    ) {
        {
            let t = Instant::now();
            let target = epoch - 2;
            let r = validators::fetch_participation(
                &self.api,
                &self.cfg.filter,
                target,
                slots_per_epoch,
                try_rewards,
            )
            .await;
            match &r {
                Ok((p, source)) => {
                    self.metrics.state.lock().participation = *p;
                    let mut sc = self.sched();
                    sc.participation_epoch = Some(target);
                    if try_rewards && *source == validators::Source::State {
                        sc.rewards_unsupported_until = Some(now + self.cfg.reprobe_interval);
                        drop(sc);
                        tracing::info!(
                            reprobe_in = ?self.cfg.reprobe_interval,
                            "the node has no attestation rewards endpoint; participation comes from the beacon state's participation flags"
                        );
                    }
                }
                Err(_) => self.sched().participation_failed_in = Some(epoch),
            }
            self.record(ClCollector::Participation, t, r.map(|_| ()));
        }
    }
}

/// Bytes one peer list entry may take (peer id, ENR, address, state, direction): real entries are
/// 300 to 700 bytes.
pub const PEER_ENTRY_BYTES: usize = 2048;

/// The body cap of the peer list: `list_max` generous entries and the envelope.
pub fn peers_body_cap(list_max: u64) -> usize {
    (list_max as usize)
        .saturating_mul(PEER_ENTRY_BYTES)
        .saturating_add(4096)
}

/// After an answer larger than the body cap, the next try waits this many epochs: 1, 2, 4 ...
/// up to 32 (the state does not shrink by itself; fetching it every slot costs the node and us
/// the full download each time).
fn too_large_backoff_epochs(streak: u32) -> u32 {
    1u32 << streak.saturating_sub(1).min(5)
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
