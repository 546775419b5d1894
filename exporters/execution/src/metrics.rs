//! The execution exporter's metrics.
//!
//! Counters and histograms are registered metrics updated as events happen. Gauges that describe
//! the node's current state live in [`NodeState`] and are encoded at scrape time by
//! [`StateCollector`]: a value the exporter never learnt (an unsupported method) is absent rather
//! than zero, and `eth_el_head_age_seconds` is computed at the moment of the scrape.

use std::fmt;

use ethwatch_core::state::{StateMetric, Value, family, gauge, info, seconds, uint};
use ethwatch_core::upstream::RequestMetrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::types::ClientVersion;

/// Buckets for block intervals and arrival delays, seconds (devnets at 1–2 s to mainnet at 12 s).
const BLOCK_TIME_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 60.0,
];
const REORG_DEPTH_BUCKETS: [f64; 8] = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 64.0];

/// The node's last known state. `None` means unknown (never learnt or not supported).
#[derive(Debug, Clone, Default)]
pub struct NodeState {
    pub up: bool,
    pub head_number: Option<u64>,
    pub head_timestamp: Option<u64>,
    pub head_gas_used: Option<u64>,
    pub head_gas_limit: Option<u64>,
    pub head_base_fee: Option<u128>,
    pub head_transactions: Option<u64>,
    pub expected_interval: Option<f64>,
    pub finalized: Option<u64>,
    pub safe: Option<u64>,
    pub syncing: Option<bool>,
    pub sync_current: Option<u64>,
    pub sync_highest: Option<u64>,
    pub peers: Option<u64>,
    pub chain_id: Option<u64>,
    pub network_id: Option<u64>,
    pub client: Option<ClientVersion>,
    pub txpool_pending: Option<u64>,
    pub txpool_queued: Option<u64>,
}

/// Shared handle to the state.
pub type SharedState = ethwatch_core::metrics::Shared<NodeState>;

/// Encodes [`NodeState`] at scrape time.
#[derive(Debug)]
pub struct StateCollector(pub SharedState);

/// The metrics of [`NodeState`], encoded at scrape time in this order.
const STATE_METRICS: &[StateMetric<NodeState>] = &[
    gauge(
        "eth_el_up",
        "1 when the last poll reached the node and it answered",
        |s| Some(Value::from(s.up)),
    ),
    uint(
        "eth_el_head_block_number",
        "Number of the node's head block",
        |s| s.head_number,
    ),
    seconds(
        "eth_el_head_block_timestamp",
        "Timestamp of the node's head block",
        |s| s.head_timestamp.map(Value::uint),
    ),
    seconds(
        "eth_el_head_age",
        "Seconds since the head block's timestamp, computed at scrape time",
        |s| {
            s.head_timestamp
                .map(|t| Value::from((ethwatch_core::unix_now() - t as f64).max(0.0)))
        },
    ),
    uint("eth_el_head_gas_used", "Gas used by the head block", |s| {
        s.head_gas_used
    }),
    uint(
        "eth_el_head_gas_limit",
        "Gas limit of the head block",
        |s| s.head_gas_limit,
    ),
    gauge(
        "eth_el_head_base_fee_per_gas_wei",
        "Base fee per gas of the head block, in wei",
        |s| s.head_base_fee.map(|v| Value::from(v as f64)),
    ),
    uint(
        "eth_el_head_transactions",
        "Transactions in the head block (the block of eth_el_head_block_number; with --ws-url it is fetched for every announced head)",
        |s| s.head_transactions,
    ),
    seconds(
        "eth_el_expected_block_interval",
        "Expected time between blocks: configured, or the median of recent intervals",
        |s| s.expected_interval.map(Value::from),
    ),
    uint(
        "eth_el_finalized_block_number",
        "Number of the finalized block",
        |s| s.finalized,
    ),
    uint(
        "eth_el_safe_block_number",
        "Number of the safe block",
        |s| s.safe,
    ),
    gauge(
        "eth_el_syncing",
        "1 when eth_syncing reports sync progress, 0 when it returns false",
        |s| s.syncing.map(Value::from),
    ),
    uint(
        "eth_el_sync_current_block",
        "Block the node has synced to (eth_syncing currentBlock; the head when not syncing)",
        |s| s.sync_current,
    ),
    uint(
        "eth_el_sync_highest_block",
        "Highest block the node knows of (eth_syncing highestBlock; the head when not syncing)",
        |s| s.sync_highest,
    ),
    uint("eth_el_peers", "Connected peers (net_peerCount)", |s| {
        s.peers
    }),
    uint("eth_el_chain_id", "Chain id (eth_chainId)", |s| s.chain_id),
    uint("eth_el_network_id", "Network id (net_version)", |s| {
        s.network_id
    }),
    info(
        "eth_el_client_info",
        "Client name and version from web3_clientVersion",
        |s| {
            s.client
                .as_ref()
                .map(|c| vec![("client", c.client.clone()), ("version", c.version.clone())])
        },
    ),
    family(
        "eth_el_txpool_transactions",
        "Transactions in the pool by status (txpool_status)",
        "status",
        |s| {
            [("pending", s.txpool_pending), ("queued", s.txpool_queued)]
                .into_iter()
                .filter_map(|(st, v)| v.map(|v| (st, Value::uint(v))))
                .collect()
        },
    ),
];

impl Collector for StateCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let s = self.0.lock().clone();
        ethwatch_core::state::encode(&mut enc, STATE_METRICS, &s)
    }
}

/// Every metric of the execution exporter.
#[derive(Clone)]
pub struct ExecutionMetrics {
    pub state: SharedState,
    pub blocks: Counter,
    /// `eth_el_transactions_total`: transactions of the blocks counted in `blocks`.
    pub transactions: Counter,
    pub block_interval: Histogram,
    pub reorgs: Counter,
    pub reorg_depth: Histogram,
    /// Registered only when a websocket subscription is configured.
    pub arrival_delay: Option<Histogram>,
    /// `eth_el_subscription_connected`; registered only with a websocket subscription.
    pub subscription_connected: Option<Gauge>,
    pub rpc: RequestMetrics,
}

impl ExecutionMetrics {
    /// Registers everything into `registry`.
    pub fn register(registry: &mut Registry, with_subscription: bool) -> Self {
        let state = SharedState::default();
        registry.register_collector(Box::new(StateCollector(state.clone())));
        let blocks = Counter::default();
        registry.register("eth_el_blocks", "New head blocks observed, including blocks the poll skipped over; rate() is the block rate. Each height counts once: after a reorg to a lower height, the heights counted before are not counted again", blocks.clone());
        let transactions = Counter::default();
        registry.register("eth_el_transactions", "Transactions in new canonical blocks, each block counted once when its height is first counted in eth_el_blocks_total (skipped blocks are fetched; beyond --max-backfill their transactions are left out); rate() is the transaction rate whatever the scrape interval. A reorg adds nothing for heights already counted: the replaced block's transactions stay counted, the replacing block's are not added", transactions.clone());
        let block_interval = Histogram::new(BLOCK_TIME_BUCKETS);
        registry.register_with_unit(
            "eth_el_block_interval",
            "Time between consecutive blocks' timestamps",
            Unit::Seconds,
            block_interval.clone(),
        );
        let reorgs = Counter::default();
        registry.register(
            "eth_el_reorgs",
            "Reorgs seen: a new head whose ancestry does not contain the previous head",
            reorgs.clone(),
        );
        let reorg_depth = Histogram::new(REORG_DEPTH_BUCKETS);
        registry.register(
            "eth_el_reorg_depth",
            "Depth of reorgs in blocks (old head minus common ancestor)",
            reorg_depth.clone(),
        );
        let arrival_delay = with_subscription.then(|| {
            let h = Histogram::new(BLOCK_TIME_BUCKETS);
            registry.register_with_unit(
                "eth_el_block_arrival_delay",
                "When a newHeads notification arrived, minus the block's timestamp",
                Unit::Seconds,
                h.clone(),
            );
            h
        });
        let subscription_connected = with_subscription.then(|| {
            let g = Gauge::default();
            registry.register(
                "eth_el_subscription_connected",
                "1 while the newHeads websocket subscription is established",
                g.clone(),
            );
            g
        });
        let mut rpc = RequestMetrics::register(
            registry,
            "method",
            "eth_el_rpc_request_duration",
            "JSON-RPC request latency by method; the methods of one batch share its round trip",
            "eth_el_rpc_errors",
            "JSON-RPC failures by method and kind: a request that fails as a whole (no answer, a bad status, an unreadable body, one error object for the whole batch) counts once, under its method or method=\"batch\" when it carried several calls; a call answered with an error object or an undecodable result counts once under its method; eth_subscribe counts failed subscription attempts and undecodable notifications",
        );
        rpc.register_requests(
            registry,
            "eth_el_rpc_requests",
            "JSON-RPC requests to the node, counted as eth_el_rpc_errors_total counts failures: one per HTTP request, under its method or method=\"batch\" when it carried several calls; eth_subscribe counts subscription attempts and notifications",
        );
        ExecutionMetrics {
            state,
            blocks,
            transactions,
            block_interval,
            reorgs,
            reorg_depth,
            arrival_delay,
            subscription_connected,
            rpc,
        }
    }
}

/// A registry with every metric of `ethwatch execution` present (all state filled, one child per
/// labelled family), for the generated metrics reference. Self-metrics of the core are included.
pub fn registry_for_docs() -> Registry {
    let mut registry = ethwatch_core::exporter::docs_registry::<crate::collectors::ElCollector>();
    let m = ExecutionMetrics::register(&mut registry, true);
    m.rpc
        .observe("eth_getBlockByNumber", std::time::Duration::ZERO, None);
    m.rpc.request(ethwatch_core::upstream::BATCH);
    m.rpc.error(
        "eth_getBlockByNumber",
        ethwatch_core::upstream::ErrorKind::Timeout,
    );
    *m.state.lock() = NodeState {
        up: true,
        head_number: Some(1),
        head_timestamp: Some(1),
        head_gas_used: Some(1),
        head_gas_limit: Some(1),
        head_base_fee: Some(1),
        head_transactions: Some(1),
        expected_interval: Some(1.0),
        finalized: Some(1),
        safe: Some(1),
        syncing: Some(false),
        sync_current: Some(1),
        sync_highest: Some(1),
        peers: Some(1),
        chain_id: Some(1),
        network_id: Some(1),
        client: Some(ClientVersion::parse("reth/v1.0.0")),
        txpool_pending: Some(1),
        txpool_queued: Some(1),
    };
    registry
}

/// The landing page's live values: head, its age, peers, sync, client.
pub struct LandingValues(pub SharedState);

impl ethwatch_core::server::Pages for LandingValues {
    fn landing_html(&self) -> Option<String> {
        let s = self.0.lock().clone();
        let now = ethwatch_core::unix_now();
        let head = s.head_number.map(|n| n.to_string());
        let age = s
            .head_timestamp
            .map(|t| format!("{:.1} s", (now - t as f64).max(0.0)));
        let sync = s.syncing.map(|x| {
            if x {
                match (s.sync_current, s.sync_highest) {
                    (Some(c), Some(h)) => format!("syncing ({c} of {h})"),
                    _ => "syncing".to_string(),
                }
            } else {
                "synced".to_string()
            }
        });
        let client = s
            .client
            .as_ref()
            .map(|c| format!("{} {}", c.client, c.version));
        Some(ethwatch_core::server::live_values(&[
            ("node", Some(if s.up { "up" } else { "down" }.to_string())),
            ("head", head),
            ("head age", age),
            ("peers", s.peers.map(|p| p.to_string())),
            ("sync", sync),
            ("finalized", s.finalized.map(|n| n.to_string())),
            ("client", client),
        ]))
    }
}
