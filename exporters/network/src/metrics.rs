//! The network watcher's metrics. The result of the last cycle is one [`NetworkState`], replaced
//! whole at the end of each cycle and encoded at scrape time, so series of nodes that left the
//! network disappear with them.

use std::fmt;
use std::sync::{Arc, Mutex};

use ethwatch_core::metrics::Escaped;
use ethwatch_core::upstream::RequestMetrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

use crate::compare::{Agreement, NodeStatus};
use crate::discovery::Layer;

/// One node as seen in the last cycle.
#[derive(Debug, Clone)]
pub struct NodeReport {
    pub name: String,
    pub layer: Layer,
    pub status: NodeStatus,
    /// Head number (execution) or slot (consensus).
    pub head: Option<u64>,
}

/// One layer's result.
#[derive(Debug, Clone, Default)]
pub struct LayerReport {
    pub agreement: Agreement,
}

/// The result of the last cycle.
#[derive(Debug, Clone, Default)]
pub struct NetworkState {
    pub nodes: Vec<NodeReport>,
    pub execution: LayerReport,
    pub consensus: LayerReport,
    /// Finalized epochs of the answering beacon nodes: (min, max).
    pub finalized: Option<(u64, u64)>,
    /// Per paired beacon node: its paired execution node's head minus the execution block in
    /// the beacon node's head block.
    pub pairs: Vec<(String, i64)>,
    /// Blocks of tolerance before a pair counts as mismatched.
    pub pair_tolerance: u64,
}

/// Shared handle to the state.
#[derive(Debug, Clone, Default)]
pub struct SharedState(pub Arc<Mutex<NetworkState>>);

impl SharedState {
    /// Replaces the state.
    pub fn set(&self, s: NetworkState) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }
    /// A copy of the state.
    pub fn get(&self) -> NetworkState {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[derive(Debug)]
struct StateCollector(SharedState);

fn family<'a>(
    enc: &'a mut DescriptorEncoder,
    name: &'a str,
    help: &str,
    unit: Option<&'a Unit>,
) -> Result<prometheus_client::encoding::MetricEncoder<'a>, fmt::Error> {
    enc.encode_descriptor(name, help, unit, MetricType::Gauge)
}

impl Collector for StateCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let s = self.0.get();
        let layers = [
            (Layer::Execution, &s.execution),
            (Layer::Consensus, &s.consensus),
        ];
        {
            let mut m = family(
                &mut enc,
                "eth_network_nodes",
                "Nodes by layer and state (up, syncing, down) in the last cycle",
                None,
            )?;
            for layer in [Layer::Execution, Layer::Consensus] {
                for st in [NodeStatus::Up, NodeStatus::Syncing, NodeStatus::Down] {
                    let n = s
                        .nodes
                        .iter()
                        .filter(|n| n.layer == layer && n.status == st)
                        .count();
                    ConstGauge::new(n as i64).encode(
                        m.encode_family(&[("layer", layer.as_str()), ("state", st.as_str())])?,
                    )?;
                }
            }
        }
        {
            let mut m = family(
                &mut enc,
                "eth_network_head_spread",
                "Highest head minus lowest head among answering nodes (blocks or slots)",
                None,
            )?;
            for (layer, r) in layers {
                if let Some(v) = r.agreement.spread {
                    ConstGauge::new(v as i64)
                        .encode(m.encode_family(&[("layer", layer.as_str())])?)?;
                }
            }
        }
        {
            let mut m = family(
                &mut enc,
                "eth_network_distinct_heads",
                "Distinct block hashes (roots) among the nodes at the highest height they all reached; more than 1 means the network is split",
                None,
            )?;
            for (layer, r) in layers {
                if r.agreement.common_height.is_some() {
                    ConstGauge::new(r.agreement.distinct as i64)
                        .encode(m.encode_family(&[("layer", layer.as_str())])?)?;
                }
            }
        }
        {
            let mut m = family(
                &mut enc,
                "eth_network_common_height",
                "The highest block (slot) every answering node has reached; where heads are compared",
                None,
            )?;
            for (layer, r) in layers {
                if let Some(v) = r.agreement.common_height {
                    ConstGauge::new(v as i64)
                        .encode(m.encode_family(&[("layer", layer.as_str())])?)?;
                }
            }
        }
        {
            let mut m = family(
                &mut enc,
                "eth_network_node_on_majority_chain",
                "1 when the node's block at the common height is the one most nodes have, 0 otherwise (also 0 for all in a tie)",
                None,
            )?;
            for (layer, r) in layers {
                for (node, on) in &r.agreement.on_majority {
                    ConstGauge::new(i64::from(*on)).encode(m.encode_family(&[
                        ("layer", Escaped(layer.as_str())),
                        ("node", Escaped(node.as_str())),
                    ])?)?;
                }
            }
        }
        {
            let mut m = family(
                &mut enc,
                "eth_network_node_head",
                "Each node's head block number (execution) or slot (consensus)",
                None,
            )?;
            for n in &s.nodes {
                if let Some(h) = n.head {
                    ConstGauge::new(h as i64).encode(m.encode_family(&[
                        ("layer", Escaped(n.layer.as_str())),
                        ("node", Escaped(n.name.as_str())),
                    ])?)?;
                }
            }
        }
        {
            let mut m = family(
                &mut enc,
                "eth_network_node_up",
                "1 when the node answered in the last cycle",
                None,
            )?;
            for n in &s.nodes {
                ConstGauge::new(i64::from(n.status != NodeStatus::Down)).encode(
                    m.encode_family(&[
                        ("layer", Escaped(n.layer.as_str())),
                        ("node", Escaped(n.name.as_str())),
                    ])?,
                )?;
            }
        }
        if let Some((min, max)) = s.finalized {
            let mut m = family(
                &mut enc,
                "eth_network_finalized_epoch",
                "Finalized epoch across answering beacon nodes: the lowest (min) and highest (max)",
                None,
            )?;
            ConstGauge::new(min as i64).encode(m.encode_family(&[("stat", "min")])?)?;
            ConstGauge::new(max as i64).encode(m.encode_family(&[("stat", "max")])?)?;
        }
        if !s.pairs.is_empty() {
            {
                let mut m = family(
                    &mut enc,
                    "eth_network_pair_mismatch",
                    "1 when a beacon node's head execution block is more than the tolerance away from its paired execution node's head",
                    None,
                )?;
                for (node, d) in &s.pairs {
                    ConstGauge::new(i64::from(d.unsigned_abs() > s.pair_tolerance))
                        .encode(m.encode_family(&[("node", Escaped(node.as_str()))])?)?;
                }
            }
            let mut m = family(
                &mut enc,
                "eth_network_pair_distance_blocks",
                "Paired execution node's head minus the execution block in the beacon node's head (blocks)",
                None,
            )?;
            for (node, d) in &s.pairs {
                ConstGauge::new(*d)
                    .encode(m.encode_family(&[("node", Escaped(node.as_str()))])?)?;
            }
        }
        Ok(())
    }
}

/// Every metric of the network watcher.
#[derive(Clone)]
pub struct NetworkMetrics {
    pub state: SharedState,
    /// Per-node request latency and errors (`node`, `layer` labels).
    pub requests: RequestMetrics,
    pub cycle_duration: Gauge<f64, AtomicU64>,
    pub targets:
        prometheus_client::metrics::family::Family<[(&'static str, &'static str); 1], Gauge>,
    /// `eth_network_discovery_up`: 1 while discovery works (always 1 for static targets).
    pub discovery_up: Gauge,
}

impl NetworkMetrics {
    /// Registers everything.
    pub fn register(registry: &mut Registry) -> Self {
        let state = SharedState::default();
        registry.register_collector(Box::new(StateCollector(state.clone())));
        let requests = RequestMetrics::register(
            registry,
            "call",
            "eth_network_request_duration",
            "Latency of the watcher's requests per node and call (JSON-RPC method or Beacon API route)",
            "eth_network_request_errors",
            "Failed requests of the watcher per node, call and kind: a failed JSON-RPC batch counts once, under call=\"batch\"; the 404 of an empty slot is the expected answer, not a failure",
        );
        let cycle_duration = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "eth_network_cycle_duration",
            "How long the last cycle over every node took",
            Unit::Seconds,
            cycle_duration.clone(),
        );
        let targets = prometheus_client::metrics::family::Family::default();
        registry.register(
            "eth_network_targets",
            "Nodes discovered (static list or Kubernetes pods) by layer",
            targets.clone(),
        );
        let discovery_up = Gauge::default();
        registry.register(
            "eth_network_discovery_up",
            "1 while node discovery works (the Kubernetes pod watch lists and watches; static targets: always 1)",
            discovery_up.clone(),
        );
        NetworkMetrics {
            state,
            requests,
            cycle_duration,
            targets,
            discovery_up,
        }
    }
}

/// A registry with every metric of `ethwatch network` present, for the metrics reference.
pub fn registry_for_docs() -> Registry {
    let mut registry = Registry::default();
    let m = NetworkMetrics::register(&mut registry);
    let per_node = m
        .requests
        .with_constant_labels(vec![("layer", "execution".into()), ("node", "el-1".into())]);
    per_node.observe("eth_getBlockByNumber", std::time::Duration::ZERO, None);
    per_node.error(
        "eth_getBlockByNumber",
        ethwatch_core::upstream::ErrorKind::Timeout,
    );
    let _ = m.targets.get_or_create(&[("layer", "execution")]);
    m.discovery_up.set(1);
    let agreement = Agreement {
        common_height: Some(1),
        spread: Some(0),
        distinct: 1,
        on_majority: vec![("el-1".into(), true)],
    };
    m.state.set(NetworkState {
        nodes: vec![NodeReport {
            name: "el-1".into(),
            layer: Layer::Execution,
            status: NodeStatus::Up,
            head: Some(1),
        }],
        execution: LayerReport { agreement },
        consensus: LayerReport::default(),
        finalized: Some((1, 1)),
        pairs: vec![("cl-1".into(), 0)],
        pair_tolerance: 2,
    });
    registry
}
