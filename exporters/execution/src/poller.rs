//! The poll cycle: one batched JSON-RPC request per cycle for every due collector, plus at most
//! one more when the head skipped blocks or reorged (fetching what was missed).
//!
//! Over 600 lines on purpose: the poll cycle and the subscription path share the head handling,
//! the method-support probing and the per-collector logging; they read best side by side.
//!
//! The collectors and the calls each contributes to the batch are the table [`ElCollector`]
//! (rendered in `docs/execution.md`).
//!
//! A method the node does not implement (-32601) is dropped from the batch, its signal becomes
//! absent and its collector reports success 0; it is logged once and re-probed every
//! `--reprobe-interval`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ethwatch_core::collectors::Collector;
use ethwatch_core::metrics::CollectorStatus;
use ethwatch_core::node::NodeHealth;
use ethwatch_core::upstream::UpstreamError;
use serde_json::json;

use crate::collectors::{ElCollector, Enabled};
use crate::head::{BlockSource, HeadTracker};
use crate::metrics::ExecutionMetrics;
use crate::rpc::{Call, ItemResult, METHOD_NOT_FOUND, RpcClient};
use crate::types::{ClientVersion, Header, Quantity, SyncStatus, TxpoolStatus};

/// Why a collector's run failed (its `ethwatch_collector_success` is 0 and the landing page
/// shows this message).
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The node's answer to the collector's call was an error or could not be read.
    #[error(transparent)]
    Node(#[from] UpstreamError),
    /// `eth_getBlockByNumber("latest")` answered null.
    #[error("the node returned null for the latest block")]
    NullHead,
    /// One of the info calls failed (the first one, named).
    #[error("{method}: {source}")]
    Info {
        method: &'static str,
        source: UpstreamError,
    },
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
    /// Whether the node answers, and when it last did (readiness).
    health: NodeHealth,
    /// Collectors whose last run failed, so a failing collector logs once, not every poll.
    failing: Mutex<HashSet<ElCollector>>,
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
        for &c in ElCollector::ALL {
            status.declare(c.name(), cfg.enabled.enabled(c));
        }
        let mut tracker = HeadTracker::new(128, cfg.max_backfill);
        if cfg.max_backfill == 0 {
            tracker = HeadTracker::new(128, 1);
        }
        let health = NodeHealth::new("execution node", rpc.upstream().redacted_url().to_string());
        Poller {
            rpc,
            metrics,
            status,
            tracker: tokio::sync::Mutex::new(tracker),
            cfg,
            unsupported: Mutex::default(),
            next_info: Mutex::new(None),
            health,
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
        self.health.last_ok_ms()
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
        let mut plan: Vec<(ElCollector, Call)> = Vec::with_capacity(9);
        let info_due = {
            let next = self.next_info.lock().unwrap_or_else(|e| e.into_inner());
            next.is_none_or(|t| start >= t)
        };
        for &c in ElCollector::ALL {
            if !self.cfg.enabled.enabled(c) || (c == ElCollector::Info && !info_due) {
                continue;
            }
            let calls = c.calls();
            let first = calls[0].method;
            let before = plan.len();
            plan.extend(
                calls
                    .into_iter()
                    .filter(|call| !c.optional() || self.supported(call.method, start))
                    .map(|call| (c, call)),
            );
            // A collector whose every method is unsupported reports failure without a call.
            if plan.len() == before && c != ElCollector::Info {
                self.status.record(
                    c.name(),
                    Duration::ZERO,
                    Err(format!("{first} is not supported by the node")),
                );
            }
        }
        if plan.is_empty() {
            return;
        }

        let mut spans: Vec<(ElCollector, tracing::Span)> = Vec::new();
        for (c, _) in &plan {
            if !spans.iter().any(|(n, _)| n == c) {
                let name = c.name();
                let s = tracing::info_span!(
                    "collect",
                    otel.name = %format!("collect {name}"),
                    otel.status_code = tracing::field::Empty,
                    ethwatch.collector = name,
                );
                spans.push((*c, s));
            }
        }
        let span_of = |c: ElCollector| {
            spans
                .iter()
                .find(|(n, _)| *n == c)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(tracing::Span::none)
        };
        let calls: Vec<Call> = plan
            .iter()
            .map(|(c, call)| call.clone().under(&span_of(*c)))
            .collect();
        let results = match self.rpc.batch(&calls).await {
            Ok(r) => r,
            Err(e) => {
                self.node_failed(&e);
                // Every enabled collector depends on the node, so every one reports the failure,
                // not only those in this batch (info runs every --info-interval but is as blind);
                // info runs again as soon as the node answers.
                let elapsed = start.elapsed();
                for &c in ElCollector::ALL {
                    if self.cfg.enabled.enabled(c) {
                        self.status.record(c.name(), elapsed, Err(e.to_string()));
                    }
                }
                *self.next_info.lock().unwrap_or_else(|e| e.into_inner()) = None;
                return;
            }
        };
        self.node_answered();

        for (c, items) in group(plan.into_iter().zip(results)) {
            use tracing::Instrument;
            let span = span_of(c);
            let r = self.handle(c, items, start).instrument(span.clone()).await;
            if r.is_err() {
                span.record("otel.status_code", "ERROR");
            }
            self.log_collector(c, &r, start);
            self.status
                .record(c.name(), start.elapsed(), r.map_err(|e| e.to_string()));
        }
        let expected = self.cfg.expected_interval.map(|d| d.as_secs_f64()).or(self
            .tracker
            .lock()
            .await
            .learnt_interval());
        self.metrics.state.lock().expected_interval = expected;
    }

    /// A collector's handler: reads its answers into the state.
    async fn handle(
        &self,
        c: ElCollector,
        items: Vec<(Call, ItemResult)>,
        cycle_start: Instant,
    ) -> Result<(), CollectError> {
        match c {
            ElCollector::Head => self.handle_head(items).await,
            ElCollector::Finality => self.handle_finality(items),
            ElCollector::Sync => self.handle_sync(items),
            ElCollector::Peers => self.handle_peers(items),
            ElCollector::Txpool => self.handle_txpool(items),
            ElCollector::Info => {
                *self.next_info.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(cycle_start + self.cfg.info_interval);
                self.handle_info(items)
            }
        }
    }

    /// Logs a collector that starts failing once (a warning naming the cause) and when it works
    /// again; a method the node lacks is logged by [`Self::check_unsupported`] instead.
    fn log_collector(&self, c: ElCollector, r: &Result<(), CollectError>, cycle_start: Instant) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match r {
            Err(e) if failing.insert(c) && !self.found_unsupported(c, cycle_start) => {
                tracing::warn!(
                    node = self.rpc.upstream().redacted_url(),
                    collector = c.name(),
                    error = %e,
                    "collector failed; its last values are kept and go stale until it succeeds"
                );
            }
            Err(e) => tracing::debug!(collector = c.name(), error = %e, "collector failed"),
            Ok(()) => {
                if failing.remove(&c) {
                    tracing::info!(
                        node = self.rpc.upstream().redacted_url(),
                        collector = c.name(),
                        "collector works again"
                    );
                }
            }
        }
    }

    /// Whether this cycle found a method of collector `c` unsupported.
    fn found_unsupported(&self, c: ElCollector, cycle_start: Instant) -> bool {
        if !c.optional() {
            return false;
        }
        let map = self.unsupported.lock().unwrap_or_else(|e| e.into_inner());
        c.calls().iter().any(|call| {
            map.get(call.method)
                .is_some_and(|until| *until >= cycle_start + self.cfg.reprobe_interval)
        })
    }

    fn node_failed(&self, e: &UpstreamError) {
        self.metrics.state.lock().up = false;
        self.health.failed(e);
    }

    fn node_answered(&self) {
        self.metrics.state.lock().up = true;
        self.health.answered();
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

    async fn handle_head(&self, items: Vec<(Call, ItemResult)>) -> Result<(), CollectError> {
        for (call, item) in items {
            let h: Option<Header> = self.decode(call.method, item)?;
            let h = h.ok_or(CollectError::NullHead)?;
            self.on_head(h, HeadSource::Poll).await?;
        }
        Ok(())
    }

    fn handle_finality(&self, items: Vec<(Call, ItemResult)>) -> Result<(), CollectError> {
        let mut values = [None, None];
        let mut err = None;
        for (i, (call, item)) in items.into_iter().enumerate() {
            match self.decode::<Option<Header>>(call.method, item) {
                Ok(h) => values[i.min(1)] = h.map(|h| h.number()),
                // Pre-merge and dev chains answer "finalized block not found" as an error: the
                // value is simply absent, not a failure.
                Err(UpstreamError::Rpc { code, .. }) if code != METHOD_NOT_FOUND => {}
                Err(e) => err = Some(e),
            }
        }
        if let Some(e) = err {
            return Err(e.into());
        }
        let mut s = self.metrics.state.lock();
        s.finalized = values[0];
        s.safe = values[1];
        Ok(())
    }

    fn handle_sync(&self, items: Vec<(Call, ItemResult)>) -> Result<(), CollectError> {
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
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    fn handle_peers(&self, items: Vec<(Call, ItemResult)>) -> Result<(), CollectError> {
        for (call, item) in items {
            match self.decode::<Quantity>(call.method, item) {
                Ok(q) => self.metrics.state.lock().peers = Some(q.0),
                Err(e) => {
                    self.clear_on_unsupported(&e, |s| s.peers = None);
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    fn handle_txpool(&self, items: Vec<(Call, ItemResult)>) -> Result<(), CollectError> {
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
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    fn handle_info(&self, items: Vec<(Call, ItemResult)>) -> Result<(), CollectError> {
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
            if let Err(source) = r {
                first_err.get_or_insert(CollectError::Info {
                    method: call.method,
                    source,
                });
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
        let mut plan: Vec<(ElCollector, Call)> = vec![(
            ElCollector::Head,
            Call::new("eth_getBlockByHash", json!([announced.hash, false])),
        )];
        for c in [ElCollector::Finality, ElCollector::Txpool] {
            if self.cfg.enabled.enabled(c) {
                plan.extend(
                    c.calls()
                        .into_iter()
                        .filter(|call| !c.optional() || self.supported(call.method, start))
                        .map(|call| (c, call)),
                );
            }
        }
        let calls: Vec<Call> = plan.iter().map(|(_, c)| c.clone()).collect();
        let mut results = self.rpc.batch(&calls).await?.into_iter();
        let head_item = results
            .next()
            .unwrap_or_else(|| Err(UpstreamError::decode("empty answer")));
        let block: Option<Header> = self.decode("eth_getBlockByHash", head_item)?;
        // The pool and the safe and finalized blocks first: a scrape that shows the new head
        // shows them as read with it.
        for (c, items) in group(plan.into_iter().skip(1).zip(results)) {
            let r = self.handle(c, items, start).await;
            self.log_collector(c, &r, start);
            self.status
                .record(c.name(), start.elapsed(), r.map_err(|e| e.to_string()));
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

/// The answers of a batch grouped by collector, in batch order.
fn group(
    answers: impl Iterator<Item = ((ElCollector, Call), ItemResult)>,
) -> Vec<(ElCollector, Vec<(Call, ItemResult)>)> {
    let mut out: Vec<(ElCollector, Vec<(Call, ItemResult)>)> = Vec::new();
    for ((c, call), r) in answers {
        match out.iter_mut().find(|(n, _)| *n == c) {
            Some((_, v)) => v.push((call, r)),
            None => out.push((c, vec![(call, r)])),
        }
    }
    out
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
