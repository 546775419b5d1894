//! The poll cycle: one batched JSON-RPC request per cycle for every due collector, plus at most
//! one more when the head skipped blocks or reorged (fetching what was missed).
//!
//! Collectors and the calls each contributes to the batch:
//!
//! | collector  | calls                                                       | interval           |
//! |------------|-------------------------------------------------------------|--------------------|
//! | `head`     | `eth_getBlockByNumber("latest", false)`                     | `--poll-interval`  |
//! | `finality` | `eth_getBlockByNumber("finalized"/"safe", false)`           | `--poll-interval`  |
//! | `sync`     | `eth_syncing`                                               | `--poll-interval`  |
//! | `peers`    | `net_peerCount`                                             | `--poll-interval`  |
//! | `txpool`   | `txpool_status`                                             | `--poll-interval`  |
//! | `info`     | `eth_chainId`, `net_version`, `web3_clientVersion`          | `--info-interval`  |
//!
//! A method the node does not implement (-32601) is dropped from the batch, its signal becomes
//! absent and its collector reports success 0; it is logged once and re-probed every
//! `--reprobe-interval`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ethwatch_core::metrics::CollectorStatus;
use ethwatch_core::upstream::UpstreamError;
use serde_json::json;

use crate::head::{BlockSource, HeadTracker};
use crate::metrics::ExecutionMetrics;
use crate::rpc::{Call, ItemResult, METHOD_NOT_FOUND, RpcClient};
use crate::types::{ClientVersion, Header, Quantity, SyncStatus, TxpoolStatus};

/// The collectors of the execution exporter, in batch order.
pub const COLLECTORS: [&str; 6] = ["head", "finality", "sync", "peers", "txpool", "info"];

/// The methods of collectors that can be unsupported by a client (-32601).
const COLLECTOR_METHODS: [(&str, &str); 6] = [
    ("sync", "eth_syncing"),
    ("peers", "net_peerCount"),
    ("txpool", "txpool_status"),
    ("info", "eth_chainId"),
    ("info", "net_version"),
    ("info", "web3_clientVersion"),
];

/// Which collectors run.
#[derive(Debug, Clone, Copy)]
pub struct Enabled {
    pub head: bool,
    pub finality: bool,
    pub sync: bool,
    pub peers: bool,
    pub txpool: bool,
    pub info: bool,
}

impl Enabled {
    fn get(&self, name: &str) -> bool {
        match name {
            "head" => self.head,
            "finality" => self.finality,
            "sync" => self.sync,
            "peers" => self.peers,
            "txpool" => self.txpool,
            "info" => self.info,
            _ => false,
        }
    }
}

/// Settings of the poller.
#[derive(Debug, Clone)]
pub struct PollerConfig {
    pub enabled: Enabled,
    pub poll_interval: Duration,
    /// While the newHeads subscription is up, a cycle runs only this often (see
    /// [`Poller::cycle_interval`]).
    pub streaming_interval: Duration,
    pub info_interval: Duration,
    pub reprobe_interval: Duration,
    pub expected_interval: Option<Duration>,
    pub max_backfill: u64,
}

/// Where a head came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadSource {
    Poll,
    Subscription,
}

/// Polls one node and keeps its state. Shared by the poll loop and the subscription task.
pub struct Poller {
    rpc: RpcClient,
    metrics: ExecutionMetrics,
    status: CollectorStatus,
    cfg: PollerConfig,
    tracker: tokio::sync::Mutex<HeadTracker>,
    /// Methods found unsupported, with when to probe them again.
    unsupported: Mutex<HashMap<&'static str, Instant>>,
    next_info: Mutex<Option<Instant>>,
    /// Unix milliseconds of the last answered poll (readiness).
    last_ok_ms: AtomicU64,
    /// The last transport failure logged, so a down node logs once, not every poll.
    last_failure: Mutex<Option<&'static str>>,
    /// Collectors whose last run failed, so a failing collector logs once, not every poll.
    failing: Mutex<HashSet<&'static str>>,
    /// Unix milliseconds of the moment the subscription was last lost (readiness).
    subscription_lost_ms: AtomicU64,
    /// Wakes the poll loop early: the subscription was lost, so the poll must take over at once.
    wake: std::sync::Arc<tokio::sync::Notify>,
}

impl Poller {
    /// A poller for `rpc`.
    pub fn new(
        rpc: RpcClient,
        metrics: ExecutionMetrics,
        status: CollectorStatus,
        cfg: PollerConfig,
    ) -> Self {
        for c in COLLECTORS {
            status.declare(c, cfg.enabled.get(c));
        }
        let mut tracker = HeadTracker::new(128, cfg.max_backfill);
        if cfg.max_backfill == 0 {
            tracker = HeadTracker::new(128, 1);
        }
        Poller {
            rpc,
            metrics,
            status,
            tracker: tokio::sync::Mutex::new(tracker),
            cfg,
            unsupported: Mutex::default(),
            next_info: Mutex::new(None),
            last_ok_ms: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            failing: Mutex::default(),
            subscription_lost_ms: AtomicU64::new(0),
            wake: std::sync::Arc::default(),
        }
    }

    /// The metrics this poller updates.
    pub fn metrics(&self) -> &ExecutionMetrics {
        &self.metrics
    }

    /// The RPC client.
    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    /// Unix milliseconds of the last poll the node answered (0 if none).
    pub fn last_ok_ms(&self) -> u64 {
        self.last_ok_ms.load(Ordering::Relaxed)
    }

    /// The newHeads subscription is up: heads arrive the moment the node has them.
    pub fn subscription_live(&self) -> bool {
        self.metrics
            .subscription_connected
            .as_ref()
            .is_some_and(|g| g.get() == 1)
    }

    /// The subscription was lost now (readiness counts the poll's window from here).
    pub fn subscription_lost(&self) {
        self.subscription_lost_ms
            .store(ethwatch_core::unix_now_ms(), Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Notified when the poll loop should run before its sleep ends (the subscription was lost).
    pub fn wake(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    /// The time between cycles now: the streaming interval while the subscription is up,
    /// else the poll interval.
    pub fn cycle_interval(&self) -> Duration {
        if self.subscription_live() {
            self.cfg.streaming_interval.max(self.cfg.poll_interval)
        } else {
            self.cfg.poll_interval
        }
    }

    /// `/readyz`: the node answered within `intervals` cycles (at least 2 s); after the
    /// subscription is lost, the window starts from that moment.
    pub fn readiness(&self, intervals: u32) -> Result<(), String> {
        let last = self.last_ok_ms();
        if last == 0 {
            return Err("the node has not answered yet".into());
        }
        let window = (self.cycle_interval() * intervals)
            .max(Duration::from_secs(2))
            .as_millis() as u64;
        let since = last.max(self.subscription_lost_ms.load(Ordering::Relaxed));
        let age = ethwatch_core::unix_now_ms().saturating_sub(since);
        if age > window {
            Err(format!(
                "the node last answered {:.1} s ago",
                ethwatch_core::unix_now_ms().saturating_sub(last) as f64 / 1000.0
            ))
        } else {
            Ok(())
        }
    }

    fn supported(&self, method: &'static str, now: Instant) -> bool {
        let map = self.unsupported.lock().unwrap_or_else(|e| e.into_inner());
        map.get(method).is_none_or(|until| now >= *until)
    }

    /// One poll cycle, traced as a `poll` span with a child span per collector run and, under
    /// those, a span per node call.
    pub async fn poll_once(&self) {
        use tracing::Instrument;
        let span = tracing::info_span!("poll", otel.name = "poll", otel.kind = "internal");
        self.poll_cycle().instrument(span).await
    }

    async fn poll_cycle(&self) {
        let start = Instant::now();
        let mut plan: Vec<(&'static str, Call)> = Vec::with_capacity(9);
        let latest = || json!(["latest", false]);
        if self.cfg.enabled.head {
            plan.push(("head", Call::new("eth_getBlockByNumber", latest())));
        }
        if self.cfg.enabled.finality {
            plan.push((
                "finality",
                Call::new("eth_getBlockByNumber", json!(["finalized", false])),
            ));
            plan.push((
                "finality",
                Call::new("eth_getBlockByNumber", json!(["safe", false])),
            ));
        }
        if self.cfg.enabled.sync && self.supported("eth_syncing", start) {
            plan.push(("sync", Call::new("eth_syncing", json!([]))));
        }
        if self.cfg.enabled.peers && self.supported("net_peerCount", start) {
            plan.push(("peers", Call::new("net_peerCount", json!([]))));
        }
        if self.cfg.enabled.txpool && self.supported("txpool_status", start) {
            plan.push(("txpool", Call::new("txpool_status", json!([]))));
        }
        let info_due = self.cfg.enabled.info && {
            let next = self.next_info.lock().unwrap_or_else(|e| e.into_inner());
            next.is_none_or(|t| start >= t)
        };
        if info_due {
            for m in ["eth_chainId", "net_version", "web3_clientVersion"] {
                if self.supported(m, start) {
                    plan.push(("info", Call::new(m, json!([]))));
                }
            }
        }
        // Collectors whose every method is unsupported report failure without a call.
        for (c, methods) in [
            ("sync", &["eth_syncing"][..]),
            ("peers", &["net_peerCount"][..]),
            ("txpool", &["txpool_status"][..]),
        ] {
            if self.cfg.enabled.get(c) && !plan.iter().any(|(pc, _)| *pc == c) {
                let m = methods[0];
                self.status.record(
                    c,
                    Duration::ZERO,
                    Err(format!("{m} is not supported by the node")),
                );
            }
        }
        if plan.is_empty() {
            return;
        }

        let mut spans: Vec<(&'static str, tracing::Span)> = Vec::new();
        for (c, _) in &plan {
            if !spans.iter().any(|(n, _)| n == c) {
                let s = tracing::info_span!(
                    "collect",
                    otel.name = %format!("collect {c}"),
                    otel.status_code = tracing::field::Empty,
                    ethwatch.collector = *c,
                );
                spans.push((c, s));
            }
        }
        let span_of = |c: &str| {
            spans
                .iter()
                .find(|(n, _)| *n == c)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(tracing::Span::none)
        };
        let calls: Vec<Call> = plan
            .iter()
            .map(|(c, call)| call.clone().under(&span_of(c)))
            .collect();
        let results = match self.rpc.batch(&calls).await {
            Ok(r) => r,
            Err(e) => {
                self.node_failed(&e);
                // Every enabled collector depends on the node, so every one reports the failure,
                // not only those in this batch (info runs every --info-interval but is as blind);
                // info runs again as soon as the node answers.
                let elapsed = start.elapsed();
                for c in COLLECTORS {
                    if self.cfg.enabled.get(c) {
                        self.status.record(c, elapsed, Err(e.to_string()));
                    }
                }
                *self.next_info.lock().unwrap_or_else(|e| e.into_inner()) = None;
                return;
            }
        };
        self.node_answered();

        let mut by_collector: Vec<(&'static str, Vec<(Call, ItemResult)>)> = Vec::new();
        for ((c, call), r) in plan.into_iter().zip(results) {
            match by_collector.iter_mut().find(|(n, _)| *n == c) {
                Some((_, v)) => v.push((call, r)),
                None => by_collector.push((c, vec![(call, r)])),
            }
        }
        for (c, items) in by_collector {
            use tracing::Instrument;
            let span = span_of(c);
            let r = match c {
                "head" => self.handle_head(items).instrument(span.clone()).await,
                "finality" => span.in_scope(|| self.handle_finality(items)),
                "sync" => span.in_scope(|| self.handle_sync(items)),
                "peers" => span.in_scope(|| self.handle_peers(items)),
                "txpool" => span.in_scope(|| self.handle_txpool(items)),
                "info" => {
                    *self.next_info.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(start + self.cfg.info_interval);
                    span.in_scope(|| self.handle_info(items))
                }
                _ => Ok(()),
            };
            if r.is_err() {
                span.record("otel.status_code", "ERROR");
            }
            self.log_collector(c, &r, start);
            self.status.record(c, start.elapsed(), r);
        }
        let expected = self.cfg.expected_interval.map(|d| d.as_secs_f64()).or(self
            .tracker
            .lock()
            .await
            .learnt_interval());
        self.metrics.state.lock().expected_interval = expected;
    }

    /// Logs a collector that starts failing once (a warning naming the cause) and when it works
    /// again; a method the node lacks is logged by [`Self::check_unsupported`] instead.
    fn log_collector(&self, c: &'static str, r: &Result<(), String>, cycle_start: Instant) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match r {
            Err(e) if failing.insert(c) && !self.found_unsupported(c, cycle_start) => {
                tracing::warn!(
                    node = self.rpc.upstream().redacted_url(),
                    collector = c,
                    error = %e,
                    "collector failed; its last values are kept and go stale until it succeeds"
                );
            }
            Err(e) => tracing::debug!(collector = c, error = %e, "collector failed"),
            Ok(()) => {
                if failing.remove(c) {
                    tracing::info!(
                        node = self.rpc.upstream().redacted_url(),
                        collector = c,
                        "collector works again"
                    );
                }
            }
        }
    }

    /// Whether this cycle found a method of collector `c` unsupported.
    fn found_unsupported(&self, c: &str, cycle_start: Instant) -> bool {
        let map = self.unsupported.lock().unwrap_or_else(|e| e.into_inner());
        COLLECTOR_METHODS
            .iter()
            .filter(|(cc, _)| *cc == c)
            .any(|(_, m)| {
                map.get(m)
                    .is_some_and(|until| *until >= cycle_start + self.cfg.reprobe_interval)
            })
    }

    fn node_failed(&self, e: &UpstreamError) {
        self.metrics.state.lock().up = false;
        let kind = e.kind().as_str();
        let mut last = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        if *last != Some(kind) {
            tracing::warn!(
                node = self.rpc.upstream().redacted_url(),
                kind,
                error = %e,
                "execution node unreachable or misbehaving; serving last known values as stale"
            );
            *last = Some(kind);
        }
    }

    fn node_answered(&self) {
        self.metrics.state.lock().up = true;
        self.last_ok_ms
            .store(ethwatch_core::unix_now_ms(), Ordering::Relaxed);
        let mut last = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        if last.take().is_some() {
            tracing::info!(
                node = self.rpc.upstream().redacted_url(),
                "execution node answers again"
            );
        }
    }

    /// Handles "method not found": marks it, logs once. Returns the error for the collector.
    fn check_unsupported(&self, method: &'static str, e: &UpstreamError) {
        if let UpstreamError::Rpc { code, .. } = e
            && *code == METHOD_NOT_FOUND
        {
            let mut map = self.unsupported.lock().unwrap_or_else(|e| e.into_inner());
            let first = !map.contains_key(method);
            map.insert(method, Instant::now() + self.cfg.reprobe_interval);
            if first {
                tracing::warn!(
                    method,
                    reprobe_in = ?self.cfg.reprobe_interval,
                    "the node does not support this method; its signal is absent until a re-probe succeeds"
                );
            }
        }
    }

    fn mark_supported(&self, method: &'static str) {
        let mut map = self.unsupported.lock().unwrap_or_else(|e| e.into_inner());
        if map.remove(method).is_some() {
            tracing::info!(method, "the node now supports this method");
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        item: ItemResult,
    ) -> Result<T, UpstreamError> {
        match self.rpc.decode::<T>(method, item) {
            Ok(v) => {
                self.mark_supported(method);
                Ok(v)
            }
            Err(e) => {
                self.check_unsupported(method, &e);
                Err(e)
            }
        }
    }

    async fn handle_head(&self, items: Vec<(Call, ItemResult)>) -> Result<(), String> {
        for (call, item) in items {
            let h: Option<Header> = self.decode(call.method, item).map_err(|e| e.to_string())?;
            let h = h.ok_or("the node returned null for the latest block")?;
            self.on_head(h, HeadSource::Poll)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn handle_finality(&self, items: Vec<(Call, ItemResult)>) -> Result<(), String> {
        let mut values = [None, None];
        let mut err = None;
        for (i, (call, item)) in items.into_iter().enumerate() {
            match self.decode::<Option<Header>>(call.method, item) {
                Ok(h) => values[i.min(1)] = h.map(|h| h.number()),
                // Pre-merge and dev chains answer "finalized block not found" as an error: the
                // value is simply absent, not a failure.
                Err(UpstreamError::Rpc { code, .. }) if code != METHOD_NOT_FOUND => {}
                Err(e) => err = Some(e.to_string()),
            }
        }
        if let Some(e) = err {
            return Err(e);
        }
        let mut s = self.metrics.state.lock();
        s.finalized = values[0];
        s.safe = values[1];
        Ok(())
    }

    fn handle_sync(&self, items: Vec<(Call, ItemResult)>) -> Result<(), String> {
        for (call, item) in items {
            match self.decode::<SyncStatus>(call.method, item) {
                Ok(st) => {
                    let mut s = self.metrics.state.lock();
                    match st {
                        SyncStatus::Synced => {
                            s.syncing = Some(false);
                            s.sync_current = s.head_number;
                            s.sync_highest = s.head_number;
                        }
                        SyncStatus::Syncing { current, highest } => {
                            s.syncing = Some(true);
                            s.sync_current = Some(current);
                            s.sync_highest = Some(highest);
                        }
                    }
                }
                Err(e) => {
                    self.clear_on_unsupported(&e, |s| {
                        s.syncing = None;
                        s.sync_current = None;
                        s.sync_highest = None;
                    });
                    return Err(e.to_string());
                }
            }
        }
        Ok(())
    }

    fn handle_peers(&self, items: Vec<(Call, ItemResult)>) -> Result<(), String> {
        for (call, item) in items {
            match self.decode::<Quantity>(call.method, item) {
                Ok(q) => self.metrics.state.lock().peers = Some(q.0),
                Err(e) => {
                    self.clear_on_unsupported(&e, |s| s.peers = None);
                    return Err(e.to_string());
                }
            }
        }
        Ok(())
    }

    fn handle_txpool(&self, items: Vec<(Call, ItemResult)>) -> Result<(), String> {
        for (call, item) in items {
            match self.decode::<TxpoolStatus>(call.method, item) {
                Ok(t) => {
                    let mut s = self.metrics.state.lock();
                    s.txpool_pending = Some(t.pending.0);
                    s.txpool_queued = Some(t.queued.0);
                }
                Err(e) => {
                    self.clear_on_unsupported(&e, |s| {
                        s.txpool_pending = None;
                        s.txpool_queued = None;
                    });
                    return Err(e.to_string());
                }
            }
        }
        Ok(())
    }

    fn handle_info(&self, items: Vec<(Call, ItemResult)>) -> Result<(), String> {
        let mut first_err = None;
        for (call, item) in items {
            let r = match call.method {
                "eth_chainId" => self
                    .decode::<Quantity>(call.method, item)
                    .map(|q| self.metrics.state.lock().chain_id = Some(q.0)),
                "net_version" => self
                    .decode::<Quantity>(call.method, item)
                    .map(|q| self.metrics.state.lock().network_id = Some(q.0)),
                "web3_clientVersion" => self
                    .decode::<String>(call.method, item)
                    .map(|v| self.metrics.state.lock().client = Some(ClientVersion::parse(&v))),
                _ => Ok(()),
            };
            if let Err(e) = r {
                first_err.get_or_insert(format!("{}: {e}", call.method));
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn clear_on_unsupported(
        &self,
        e: &UpstreamError,
        clear: impl FnOnce(&mut crate::metrics::NodeState),
    ) {
        if matches!(e, UpstreamError::Rpc { code, .. } if *code == METHOD_NOT_FOUND) {
            clear(&mut self.metrics.state.lock());
        }
    }

    /// A head announced by the `newHeads` subscription, which carries no transaction list: the
    /// block itself is fetched (one batch, with the safe and finalized blocks and the txpool,
    /// which move with the head) before the head is taken, so every per-head value describes
    /// the block whose number is shown. A block the node no longer has (it reorged away at once)
    /// is skipped: the next head or poll covers it.
    pub async fn on_subscription_head(&self, announced: Header) -> Result<(), UpstreamError> {
        let arrived = ethwatch_core::unix_now();
        let start = Instant::now();
        let mut plan: Vec<(&'static str, Call)> = vec![(
            "head",
            Call::new("eth_getBlockByHash", json!([announced.hash, false])),
        )];
        if self.cfg.enabled.finality {
            plan.push((
                "finality",
                Call::new("eth_getBlockByNumber", json!(["finalized", false])),
            ));
            plan.push((
                "finality",
                Call::new("eth_getBlockByNumber", json!(["safe", false])),
            ));
        }
        if self.cfg.enabled.txpool && self.supported("txpool_status", start) {
            plan.push(("txpool", Call::new("txpool_status", json!([]))));
        }
        let calls: Vec<Call> = plan.iter().map(|(_, c)| c.clone()).collect();
        let mut results = self.rpc.batch(&calls).await?.into_iter();
        let head_item = results
            .next()
            .unwrap_or_else(|| Err(UpstreamError::decode("empty answer")));
        let block: Option<Header> = self.decode("eth_getBlockByHash", head_item)?;
        let mut rest: Vec<(&'static str, Vec<(Call, ItemResult)>)> = Vec::new();
        for ((c, call), r) in plan.into_iter().skip(1).zip(results) {
            match rest.iter_mut().find(|(n, _)| *n == c) {
                Some((_, v)) => v.push((call, r)),
                None => rest.push((c, vec![(call, r)])),
            }
        }
        // The pool and the safe and finalized blocks first: a scrape that shows the new head
        // shows them as read with it.
        for (c, items) in rest {
            let r = match c {
                "finality" => self.handle_finality(items),
                _ => self.handle_txpool(items),
            };
            self.log_collector(c, &r, start);
            self.status.record(c, start.elapsed(), r);
        }
        match block {
            Some(b) if b.hash == announced.hash => {
                self.take_head(b, HeadSource::Subscription, Some(arrived))
                    .await?
            }
            Some(b) => {
                return Err(self.rpc_decode_error(
                    "eth_getBlockByHash",
                    format!(
                        "asked for block {}, the node answered {}",
                        announced.hash, b.hash
                    ),
                ));
            }
            None => tracing::debug!(
                number = announced.number(),
                hash = %announced.hash,
                "the announced head is gone already; the next head covers it"
            ),
        }
        Ok(())
    }

    fn rpc_decode_error(&self, method: &'static str, msg: String) -> UpstreamError {
        self.rpc
            .upstream()
            .metrics()
            .error(method, ethwatch_core::upstream::ErrorKind::Decode);
        UpstreamError::decode(msg)
    }

    /// Processes a head from a poll or the subscription: counts new blocks (fetching skipped
    /// ones), their transactions, intervals and reorgs, and updates the head gauges.
    pub async fn on_head(&self, h: Header, source: HeadSource) -> Result<(), UpstreamError> {
        self.take_head(h, source, None).await
    }

    /// [`Self::on_head`], with the moment a subscription's notification arrived.
    async fn take_head(
        &self,
        h: Header,
        source: HeadSource,
        arrived: Option<f64>,
    ) -> Result<(), UpstreamError> {
        let mut tracker = self.tracker.lock().await;
        let adv = tracker.advance(&h, &RpcBlocks(self)).await?;
        let current = tracker.head().map(|(_, hash)| hash);
        drop(tracker);
        if adv.is_new {
            self.metrics.blocks.inc_by(adv.new_blocks);
            self.metrics.transactions.inc_by(adv.new_transactions);
            for i in &adv.intervals {
                self.metrics.block_interval.observe(*i);
            }
            if let Some(d) = adv.reorg_depth {
                self.metrics.reorgs.inc();
                self.metrics.reorg_depth.observe(d as f64);
                tracing::warn!(depth = d, new_head = h.number(), "reorg");
            }
            if source == HeadSource::Subscription
                && let Some(hist) = &self.metrics.arrival_delay
            {
                let at = arrived.unwrap_or_else(ethwatch_core::unix_now);
                hist.observe((at - h.timestamp() as f64).max(0.0));
            }
            // Every per-head value from this one block: a value it does not carry is absent,
            // never another block's.
            let mut s = self.metrics.state.lock();
            s.head_number = Some(h.number());
            s.head_timestamp = Some(h.timestamp());
            s.head_gas_used = Some(h.gas_used.0);
            s.head_gas_limit = Some(h.gas_limit.0);
            s.head_base_fee = h.base_fee_per_gas.map(|q| q.0);
            s.head_transactions = h.transactions;
            if s.syncing == Some(false) {
                s.sync_current = s.head_number;
                s.sync_highest = s.head_number;
            }
        } else if current == Some(h.hash) && h.transactions.is_some() {
            self.metrics.state.lock().head_transactions = h.transactions;
        }
        Ok(())
    }
}

/// Fetches missed blocks through the poller's client, in one batch.
struct RpcBlocks<'a>(&'a Poller);

impl BlockSource for RpcBlocks<'_> {
    async fn blocks(
        &self,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Vec<Header>, UpstreamError> {
        let this = self.0;
        let calls: Vec<Call> = range
            .map(|n| Call::new("eth_getBlockByNumber", json!([format!("{n:#x}"), false])))
            .collect();
        let items = this.rpc.batch(&calls).await?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let h: Option<Header> = this.rpc.decode("eth_getBlockByNumber", item)?;
            match h {
                Some(h) => out.push(h),
                None => break,
            }
        }
        Ok(out)
    }
}
