//! The consensus exporter's metrics.
//!
//! Counters and histograms are registered metrics updated as events happen. Gauges that describe
//! the node's current state live in [`NodeState`] and are encoded at scrape time by
//! [`StateCollector`]: a value the exporter never learnt is absent rather than zero, and the
//! wall-clock values (`eth_cl_clock_slot`, head lag, finality distance) are computed at the
//! moment of the scrape.
//!
//! (Over 600 lines: the state table, the registered metrics and the docs registry that fills
//! each of them are one list read three ways; kept together so they cannot drift apart.)

use std::fmt;

use ethwatch_core::state::{StateMetric, Value, family, gauge, info, seconds, uint};
use ethwatch_core::upstream::{ErrorKind, RequestMetrics};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::api::{ROUTES, Route};
use crate::clock::Clock;

/// Buckets for block arrival delays, seconds (2 s devnet slots to 12 s mainnet slots and later).
const ARRIVAL_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 24.0, 60.0,
];
const REORG_DEPTH_BUCKETS: [f64; 8] = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 64.0];

/// The validator statuses of the Beacon API, always exported once the collector ran (0 when no
/// validator has that status). A status outside this list is counted as `other`.
pub const VALIDATOR_STATUSES: [&str; 10] = [
    "pending_initialized",
    "pending_queued",
    "active_ongoing",
    "active_exiting",
    "active_slashed",
    "exited_unslashed",
    "exited_slashed",
    "withdrawal_possible",
    "withdrawal_done",
    "other",
];

/// The event topics subscribed to; `other` counts events of any other name.
pub const TOPICS: [&str; 5] = [
    "head",
    "block",
    "chain_reorg",
    "finalized_checkpoint",
    "other",
];

/// `/eth/v1/node/health` as a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// 200.
    Ready,
    /// 206: syncing, or the execution node is optimistic or offline.
    Syncing,
    /// 503: not initialised or having issues.
    NotInitialized,
}

impl Health {
    pub const ALL: [Health; 3] = [Health::Ready, Health::Syncing, Health::NotInitialized];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ready => "ready",
            Health::Syncing => "syncing",
            Health::NotInitialized => "not_initialized",
        }
    }

    /// From the HTTP status.
    pub fn from_status(status: u16) -> Option<Health> {
        match status {
            200 => Some(Health::Ready),
            206 => Some(Health::Syncing),
            503 => Some(Health::NotInitialized),
            _ => None,
        }
    }
}

/// Participation of one epoch, as ratios in `[0, 1]`; a duty is `None` when it cannot be told
/// (head votes during an inactivity leak, where rewards carry no signal).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Participation {
    pub epoch: u64,
    pub source: Option<f64>,
    pub target: Option<f64>,
    pub head: Option<f64>,
}

/// The node's last known state. `None` means unknown (never learnt or not offered by the node).
#[derive(Debug, Clone, Default)]
pub struct NodeState {
    pub up: bool,
    pub clock: Option<Clock>,
    pub head_slot: Option<u64>,
    pub head_execution_block_number: Option<u64>,
    pub finalized_epoch: Option<u64>,
    pub justified_epoch: Option<u64>,
    pub syncing: Option<bool>,
    pub sync_distance: Option<u64>,
    pub optimistic: Option<bool>,
    pub el_offline: Option<bool>,
    pub health: Option<Health>,
    /// `(disconnected, connecting, connected, disconnecting)`.
    pub peers: Option<[u64; 4]>,
    /// `(inbound, outbound)` among connected peers.
    pub peers_by_direction: Option<[u64; 2]>,
    pub client: Option<(String, String)>,
    /// Counts by status, in the order of [`VALIDATOR_STATUSES`].
    pub validators: Option<[u64; VALIDATOR_STATUSES.len()]>,
    pub validators_balance_gwei: Option<u64>,
    pub participation: Option<Participation>,
}

/// Shared handle to the state.
pub type SharedState = ethwatch_core::metrics::Shared<NodeState>;

/// Encodes [`NodeState`] at scrape time.
#[derive(Debug)]
pub struct StateCollector {
    state: SharedState,
    /// Unix time to encode at; `None` is the system clock (tests and docs pin it).
    now: Option<f64>,
}

/// What one scrape encodes from: the state, and the wall clock's slot and epoch at the scrape.
pub struct Scrape {
    pub s: NodeState,
    pub clock_slot: Option<u64>,
    pub clock_epoch: Option<u64>,
}

/// The metrics of [`NodeState`], encoded at scrape time in this order.
const STATE_METRICS: &[StateMetric<Scrape>] = &[
    gauge(
        "eth_cl_up",
        "1 when the last poll reached the beacon node and it answered /eth/v1/node/syncing",
        |c| Some(Value::from(c.s.up)),
    ),
    seconds(
        "eth_cl_genesis_time",
        "Unix time of the chain's genesis (/eth/v1/beacon/genesis)",
        |c| c.s.clock.map(|k| Value::uint(k.genesis_time)),
    ),
    gauge(
        "eth_cl_seconds_per_slot",
        "Slot length in seconds (/eth/v1/config/spec)",
        |c| c.s.clock.map(|k| Value::from(k.seconds_per_slot())),
    ),
    gauge(
        "eth_cl_slots_per_epoch",
        "Slots per epoch (/eth/v1/config/spec)",
        |c| c.s.clock.map(|k| Value::uint(k.slots_per_epoch)),
    ),
    uint(
        "eth_cl_clock_slot",
        "The wall-clock slot from genesis time and slot length, computed at scrape time",
        |c| c.clock_slot,
    ),
    uint(
        "eth_cl_clock_epoch",
        "The wall-clock epoch, computed at scrape time",
        |c| c.clock_epoch,
    ),
    uint(
        "eth_cl_head_slot",
        "Slot of the node's head block (event stream, else poll)",
        |c| c.s.head_slot,
    ),
    gauge(
        "eth_cl_head_lag_slots",
        "Wall-clock slot minus head slot, computed at scrape time",
        |c| {
            c.clock_slot
                .zip(c.s.head_slot)
                .map(|(k, h)| Value::uint(k.saturating_sub(h)))
        },
    ),
    uint(
        "eth_cl_head_execution_block_number",
        "Execution block number in the head block's payload (absent before the merge)",
        |c| c.s.head_execution_block_number,
    ),
    uint(
        "eth_cl_finalized_epoch",
        "Epoch of the finalized checkpoint",
        |c| c.s.finalized_epoch,
    ),
    uint(
        "eth_cl_justified_epoch",
        "Epoch of the current justified checkpoint",
        |c| c.s.justified_epoch,
    ),
    gauge(
        "eth_cl_finality_distance_epochs",
        "Wall-clock epoch minus finalized epoch, computed at scrape time",
        |c| {
            c.clock_epoch
                .zip(c.s.finalized_epoch)
                .map(|(k, f)| Value::uint(k.saturating_sub(f)))
        },
    ),
    gauge(
        "eth_cl_syncing",
        "1 when the node reports is_syncing (/eth/v1/node/syncing)",
        |c| c.s.syncing.map(Value::from),
    ),
    uint(
        "eth_cl_sync_distance_slots",
        "Slots the node reports it still has to sync",
        |c| c.s.sync_distance,
    ),
    gauge(
        "eth_cl_optimistic",
        "1 when the node reports its head is optimistic (execution payload not yet verified)",
        |c| c.s.optimistic.map(Value::from),
    ),
    gauge(
        "eth_cl_el_offline",
        "1 when the node reports its execution client offline (absent on nodes without the field)",
        |c| c.s.el_offline.map(Value::from),
    ),
    family(
        "eth_cl_health_status",
        "Node health from /eth/v1/node/health: 1 for the current status (200 ready, 206 syncing, 503 not_initialized), 0 for the others",
        "status",
        |c| match c.s.health {
            Some(h) => Health::ALL
                .iter()
                .map(|x| (x.as_str(), Value::from(*x == h)))
                .collect(),
            None => Vec::new(),
        },
    ),
    family(
        "eth_cl_peers",
        "Peers by connection state (/eth/v1/node/peer_count)",
        "state",
        |c| match c.s.peers {
            Some(p) => ["disconnected", "connecting", "connected", "disconnecting"]
                .into_iter()
                .zip(p.map(Value::uint))
                .collect(),
            None => Vec::new(),
        },
    ),
    family(
        "eth_cl_peers_by_direction",
        "Connected peers by direction (/eth/v1/node/peers?state=connected)",
        "direction",
        |c| match c.s.peers_by_direction {
            Some(d) => ["inbound", "outbound"]
                .into_iter()
                .zip(d.map(Value::uint))
                .collect(),
            None => Vec::new(),
        },
    ),
    info(
        "eth_cl_client_info",
        "Client name and version from /eth/v1/node/version",
        |c| {
            c.s.client.as_ref().map(|(client, version)| {
                vec![("client", client.clone()), ("version", version.clone())]
            })
        },
    ),
    family(
        "eth_cl_validators",
        "Validators by status (all validators, or the ones --validators.id names), read from the head state once per epoch: up to one epoch (and one slot) old",
        "status",
        |c| match c.s.validators {
            Some(counts) => VALIDATOR_STATUSES
                .iter()
                .zip(counts)
                .map(|(st, n)| (*st, Value::uint(n)))
                .collect(),
            None => Vec::new(),
        },
    ),
    uint(
        "eth_cl_validators_balance_gwei",
        "Total balance of the counted validators, in gwei, read from the head state once per epoch (at the exporter's first validators run in the epoch): up to one epoch (and one slot) old; proposer and sync-committee rewards within the epoch show at the next read",
        |c| c.s.validators_balance_gwei,
    ),
    family(
        "eth_cl_epoch_participation_ratio",
        "Share of active validators whose timely vote for the duty was correct, for the epoch in eth_cl_epoch_participation_epoch",
        "duty",
        |c| match c.s.participation {
            Some(p) => [("source", p.source), ("target", p.target), ("head", p.head)]
                .into_iter()
                .filter_map(|(d, v)| v.map(|v| (d, Value::from(v))))
                .collect(),
            None => Vec::new(),
        },
    ),
    gauge(
        "eth_cl_epoch_participation_epoch",
        "The epoch eth_cl_epoch_participation_ratio describes (the latest complete one: clock epoch minus 2)",
        |c| c.s.participation.map(|p| Value::uint(p.epoch)),
    ),
];

impl Collector for StateCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let s = self.state.lock().clone();
        let now = self.now.unwrap_or_else(ethwatch_core::unix_now);
        let clock_slot = s.clock.and_then(|c| c.slot_at(now));
        let clock_epoch = s.clock.zip(clock_slot).map(|(c, slot)| c.epoch_of(slot));
        let scrape = Scrape {
            s,
            clock_slot,
            clock_epoch,
        };
        ethwatch_core::state::encode(&mut enc, STATE_METRICS, &scrape)
    }
}

/// Every metric of the consensus exporter.
#[derive(Clone)]
pub struct ConsensusMetrics {
    pub state: SharedState,
    pub blocks: Counter,
    pub missed_slots: Counter,
    pub arrival_delay: Histogram,
    pub reorgs: Counter,
    pub reorg_depth: Histogram,
    pub events: Family<[(&'static str, &'static str); 1], Counter>,
    pub stream_connected: Gauge,
    pub api: RequestMetrics,
    /// How many ids `--validators.id` names (0: every validator is counted), so rules can tell a
    /// node's own validators from the whole network's.
    pub validators_watched_ids: Gauge,
    /// Proposals of the watched validators by result (`proposed`, `missed`).
    pub proposals: Family<[(&'static str, &'static str); 1], Counter>,
}

impl ConsensusMetrics {
    /// Registers everything into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        Self::register_at(registry, None)
    }

    fn register_at(registry: &mut Registry, now: Option<f64>) -> Self {
        let state = SharedState::default();
        registry.register_collector(Box::new(StateCollector {
            state: state.clone(),
            now,
        }));
        let blocks = Counter::default();
        registry.register("eth_cl_blocks", "Slots with a block on the chain followed, including blocks found walking back over a gap; rate() is the block rate. Each slot is counted once, here or in eth_cl_missed_slots_total: a reorg or a late block adds nothing for a slot already counted (the first classification stays), and the slots counted after it follow the new chain", blocks.clone());
        let missed_slots = Counter::default();
        registry.register("eth_cl_missed_slots", "Slots that passed with no block on the canonical chain (see docs/consensus.md for the exact definition). Each slot is counted once, here or in eth_cl_blocks_total: a reorg or a late block adds nothing for a slot already counted (the first classification stays), and the slots counted after it follow the new chain", missed_slots.clone());
        let arrival_delay = Histogram::new(ARRIVAL_BUCKETS);
        registry.register_with_unit(
            "eth_cl_block_arrival_delay",
            "When a new head event arrived, measured from the start of its slot",
            Unit::Seconds,
            arrival_delay.clone(),
        );
        let reorgs = Counter::default();
        registry.register(
            "eth_cl_reorgs",
            "Reorgs seen: a new head that does not descend from the previous head (from the heads, as eth_el_reorgs_total; the node's chain_reorg events are only logged)",
            reorgs.clone(),
        );
        let reorg_depth = Histogram::new(REORG_DEPTH_BUCKETS);
        registry.register(
            "eth_cl_reorg_depth",
            "Depth of reorgs in blocks: the previous chain's blocks above the common ancestor (old head minus common ancestor, as eth_el_reorg_depth; not the client's own chain_reorg depth, which clients compute differently)",
            reorg_depth.clone(),
        );
        let events = Family::<[(&'static str, &'static str); 1], Counter>::default();
        registry.register(
            "eth_cl_events",
            "Events received on the node's event stream, by topic",
            events.clone(),
        );
        let stream_connected = Gauge::default();
        registry.register(
            "eth_cl_events_stream_connected",
            "1 while the event stream (/eth/v1/events) is open",
            stream_connected.clone(),
        );
        let api = RequestMetrics::register(
            registry,
            "route",
            "eth_cl_api_request_duration",
            "Beacon API request latency by templated route (for the event stream: until the stream opened)",
            "eth_cl_api_errors",
            "Failed Beacon API requests and stream faults by templated route and kind",
        );
        let validators_watched_ids = Gauge::default();
        registry.register(
            "eth_cl_validators_watched_ids",
            "Validator ids given with --validators.id (0: every validator is counted, the per-node validator alerts do not apply)",
            validators_watched_ids.clone(),
        );
        let proposals = Family::<[(&'static str, &'static str); 1], Counter>::default();
        registry.register(
            "eth_cl_validators_proposals",
            "Block proposals due to the validators --validators.id names, by result (proposed, missed), each judged once a slot after its slot and never re-counted after a reorg; absent without --validators.id",
            proposals.clone(),
        );
        ConsensusMetrics {
            state,
            blocks,
            missed_slots,
            arrival_delay,
            reorgs,
            reorg_depth,
            events,
            stream_connected,
            api,
            validators_watched_ids,
            proposals,
        }
    }

    /// Counts one event of `topic` (an unknown name counts as `other`).
    pub fn event(&self, topic: &str) {
        let t = TOPICS
            .iter()
            .find(|t| **t == topic)
            .copied()
            .unwrap_or("other");
        self.events.get_or_create(&[("topic", t)]).inc();
    }

    /// Counts a judged proposal of a watched validator.
    pub fn proposal(&self, outcome: crate::proposals::Outcome) {
        self.proposals
            .get_or_create(&[("result", outcome.as_str())])
            .inc();
    }

    /// Counts an error for a route.
    pub fn error(&self, route: Route, kind: ErrorKind) {
        self.api.error(route.0, kind);
    }
}

/// A registry with every metric of this exporter registered and every value filled in, so each
/// metric appears once when encoded: the docs generator reads names, types and help from it.
pub fn registry_for_docs() -> Registry {
    let mut registry = ethwatch_core::exporter::docs_registry::<crate::collectors::ClCollector>();
    let clock = Clock {
        genesis_time: 1_606_824_023,
        slot_ms: 12_000,
        slots_per_epoch: 32,
    };
    let now = clock.slot_start(100_000) + 1.0;
    let m = ConsensusMetrics::register_at(&mut registry, Some(now));
    {
        let mut s = m.state.lock();
        *s = NodeState {
            up: true,
            clock: Some(clock),
            head_slot: Some(100_000),
            head_execution_block_number: Some(21_000_000),
            finalized_epoch: Some(3_123),
            justified_epoch: Some(3_124),
            syncing: Some(false),
            sync_distance: Some(0),
            optimistic: Some(false),
            el_offline: Some(false),
            health: Some(Health::Ready),
            peers: Some([10, 1, 80, 0]),
            peers_by_direction: Some([50, 30]),
            client: Some(("Lighthouse".into(), "v8.0.1".into())),
            validators: Some([0, 0, 8, 0, 0, 0, 0, 0, 0, 0]),
            validators_balance_gwei: Some(256_000_000_000),
            participation: Some(Participation {
                epoch: 3_123,
                source: Some(1.0),
                target: Some(0.99),
                head: Some(0.98),
            }),
        };
    }
    m.blocks.inc();
    m.missed_slots.inc();
    m.arrival_delay.observe(1.2);
    m.reorgs.inc();
    m.reorg_depth.observe(1.0);
    for t in TOPICS {
        m.events.get_or_create(&[("topic", t)]).inc();
    }
    m.stream_connected.set(1);
    m.validators_watched_ids.set(2);
    for o in crate::proposals::Outcome::ALL {
        m.proposal(o);
    }
    for r in ROUTES {
        m.api
            .observe(r.0, std::time::Duration::from_millis(2), None);
    }
    m.api.error(crate::api::SYNCING.0, ErrorKind::Timeout);
    registry
}

/// The landing page's live values: head slot, its age, peers, sync, finality, client.
pub struct LandingValues(pub SharedState);

impl ethwatch_core::server::Pages for LandingValues {
    fn landing_html(&self) -> Option<String> {
        let s = self.0.lock().clone();
        let now = ethwatch_core::unix_now();
        let age = s
            .clock
            .zip(s.head_slot)
            .map(|(c, slot)| format!("{:.1} s", (now - c.slot_start(slot)).max(0.0)));
        let sync = s.syncing.map(|x| match (x, s.sync_distance) {
            (true, Some(d)) => format!("syncing ({d} slots behind)"),
            (true, None) => "syncing".to_string(),
            (false, _) => "synced".to_string(),
        });
        Some(ethwatch_core::server::live_values(&[
            ("node", Some(if s.up { "up" } else { "down" }.to_string())),
            ("head slot", s.head_slot.map(|n| n.to_string())),
            ("head age", age),
            ("peers", s.peers.map(|p| p[2].to_string())),
            ("sync", sync),
            ("finalized epoch", s.finalized_epoch.map(|n| n.to_string())),
            ("client", s.client.as_ref().map(|(c, v)| format!("{c} {v}"))),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ethwatch_core::exposition;

    fn encode(r: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, r).expect("encode");
        s
    }

    #[test]
    fn unknown_values_are_absent_not_zero() {
        let mut r = Registry::default();
        let m = ConsensusMetrics::register(&mut r);
        let text = encode(&r);
        let samples = exposition::parse(&text);
        assert_eq!(exposition::value(&samples, "eth_cl_up", &[]), Some(0.0));
        for absent in [
            "eth_cl_head_slot",
            "eth_cl_clock_slot",
            "eth_cl_el_offline",
            "eth_cl_health_status",
            "eth_cl_validators",
            "eth_cl_epoch_participation_ratio",
        ] {
            // A sample line of exactly that name (eth_cl_validators_watched_ids is another one).
            assert!(
                !text.contains(&format!("\n{absent}{{")) && !text.contains(&format!("\n{absent} ")),
                "{absent} must be absent:\n{text}"
            );
        }
        // Without --validators.id: no ids watched, and no proposals counted.
        assert_eq!(
            exposition::value(&samples, "eth_cl_validators_watched_ids", &[]),
            Some(0.0)
        );
        assert!(
            !text.contains("\neth_cl_validators_proposals_total"),
            "{text}"
        );
        m.state.lock().health = Some(Health::Syncing);
        let samples = exposition::parse(&encode(&r));
        assert_eq!(
            exposition::value(&samples, "eth_cl_health_status", &[("status", "syncing")]),
            Some(1.0)
        );
        assert_eq!(
            exposition::value(&samples, "eth_cl_health_status", &[("status", "ready")]),
            Some(0.0)
        );
    }

    #[test]
    fn the_docs_registry_has_every_contract_metric() {
        let text = encode(&registry_for_docs());
        let samples = exposition::parse(&text);
        for name in [
            "eth_cl_up",
            "eth_cl_head_slot",
            "eth_cl_clock_slot",
            "eth_cl_seconds_per_slot",
            "eth_cl_slots_per_epoch",
            "eth_cl_genesis_time_seconds",
            "eth_cl_blocks_total",
            "eth_cl_missed_slots_total",
            "eth_cl_block_arrival_delay_seconds_count",
            "eth_cl_reorgs_total",
            "eth_cl_reorg_depth_count",
            "eth_cl_finalized_epoch",
            "eth_cl_justified_epoch",
            "eth_cl_syncing",
            "eth_cl_sync_distance_slots",
            "eth_cl_optimistic",
            "eth_cl_el_offline",
            "eth_cl_health_status",
            "eth_cl_peers",
            "eth_cl_peers_by_direction",
            "eth_cl_client_info",
            "eth_cl_head_execution_block_number",
            "eth_cl_validators",
            "eth_cl_validators_balance_gwei",
            "eth_cl_epoch_participation_ratio",
            "eth_cl_validators_watched_ids",
            "eth_cl_validators_proposals_total",
            "eth_cl_api_request_duration_seconds_count",
            "eth_cl_api_errors_total",
            "eth_cl_events_total",
            "eth_cl_events_stream_connected",
            "ethwatch_collector_success",
            "ethwatch_build_info",
        ] {
            assert!(
                samples.iter().any(|s| s.name == name),
                "{name} missing:\n{text}"
            );
        }
        assert_eq!(
            exposition::value(&samples, "eth_cl_clock_slot", &[]),
            Some(100_000.0)
        );
        assert_eq!(
            exposition::value(&samples, "eth_cl_head_lag_slots", &[]),
            Some(0.0)
        );
    }
}
