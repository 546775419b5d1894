//! The network watcher's metrics. The result of the last cycle is one [`NetworkState`], replaced
//! whole at the end of each cycle and encoded at scrape time, so series of nodes that left the
//! network disappear with them.

use std::fmt;
use std::sync::{Arc, Mutex};

use ethwatch_core::state::{Series, StateMetric, Value, series};
use ethwatch_core::upstream::RequestMetrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::gauge::Gauge;
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

/// The layers, each with its agreement report, in output order.
fn layers(s: &NetworkState) -> [(Layer, &LayerReport); 2] {
    [
        (Layer::Execution, &s.execution),
        (Layer::Consensus, &s.consensus),
    ]
}

/// A `layer` label.
fn by_layer(layer: Layer) -> Vec<(&'static str, String)> {
    vec![("layer", layer.as_str().to_string())]
}

/// One series per layer whose agreement has a value `f`.
fn per_layer(s: &NetworkState, f: fn(&Agreement) -> Option<u64>) -> Option<Series> {
    Some(
        layers(s)
            .into_iter()
            .filter_map(|(l, r)| f(&r.agreement).map(|v| (by_layer(l), Value::Int(v as i64))))
            .collect(),
    )
}

/// `layer` and `node` labels.
fn by_node(layer: Layer, node: &str) -> Vec<(&'static str, String)> {
    vec![
        ("layer", layer.as_str().to_string()),
        ("node", node.to_string()),
    ]
}

/// The metrics of [`NetworkState`], encoded at scrape time in this order.
const STATE_METRICS: &[StateMetric<NetworkState>] = &[
    series(
        "eth_network_nodes",
        "Nodes by layer and state (up, syncing, down) in the last cycle",
        |s| {
            let mut out = Vec::new();
            for layer in [Layer::Execution, Layer::Consensus] {
                for st in [NodeStatus::Up, NodeStatus::Syncing, NodeStatus::Down] {
                    let n = s
                        .nodes
                        .iter()
                        .filter(|n| n.layer == layer && n.status == st)
                        .count();
                    let labels = vec![
                        ("layer", layer.as_str().to_string()),
                        ("state", st.as_str().to_string()),
                    ];
                    out.push((labels, Value::Int(n as i64)));
                }
            }
            Some(out)
        },
    ),
    series(
        "eth_network_head_spread",
        "Highest head minus lowest head among answering nodes (blocks or slots)",
        |s| per_layer(s, |a| a.spread),
    ),
    series(
        "eth_network_distinct_heads",
        "Distinct block hashes (roots) among the nodes at the highest height they all reached; more than 1 means the network is split",
        |s| per_layer(s, |a| a.common_height.map(|_| a.distinct as u64)),
    ),
    series(
        "eth_network_common_height",
        "The highest block (slot) every answering node has reached; where heads are compared",
        |s| per_layer(s, |a| a.common_height),
    ),
    series(
        "eth_network_node_on_majority_chain",
        "1 when the node's block at the common height is the one most nodes have, 0 otherwise (also 0 for all in a tie)",
        |s| {
            Some(
                layers(s)
                    .into_iter()
                    .flat_map(|(l, r)| {
                        r.agreement
                            .on_majority
                            .iter()
                            .map(move |(node, on)| (by_node(l, node), Value::from(*on)))
                    })
                    .collect(),
            )
        },
    ),
    series(
        "eth_network_node_head",
        "Each node's head block number (execution) or slot (consensus)",
        |s| {
            Some(
                s.nodes
                    .iter()
                    .filter_map(|n| {
                        n.head
                            .map(|h| (by_node(n.layer, &n.name), Value::Int(h as i64)))
                    })
                    .collect(),
            )
        },
    ),
    series(
        "eth_network_node_up",
        "1 when the node answered in the last cycle",
        |s| {
            Some(
                s.nodes
                    .iter()
                    .map(|n| {
                        (
                            by_node(n.layer, &n.name),
                            Value::from(n.status != NodeStatus::Down),
                        )
                    })
                    .collect(),
            )
        },
    ),
    series(
        "eth_network_finalized_epoch",
        "Finalized epoch across answering beacon nodes: the lowest (min) and highest (max)",
        |s| {
            s.finalized.map(|(min, max)| {
                vec![
                    (vec![("stat", "min".to_string())], Value::Int(min as i64)),
                    (vec![("stat", "max".to_string())], Value::Int(max as i64)),
                ]
            })
        },
    ),
    series(
        "eth_network_pair_mismatch",
        "1 when a beacon node's head execution block is more than the tolerance away from its paired execution node's head",
        |s| {
            (!s.pairs.is_empty()).then(|| {
                s.pairs
                    .iter()
                    .map(|(node, d)| {
                        let off = d.unsigned_abs() > s.pair_tolerance;
                        (vec![("node", node.clone())], Value::from(off))
                    })
                    .collect()
            })
        },
    ),
    series(
        "eth_network_pair_distance_blocks",
        "Paired execution node's head minus the execution block in the beacon node's head (blocks)",
        |s| {
            (!s.pairs.is_empty()).then(|| {
                s.pairs
                    .iter()
                    .map(|(node, d)| (vec![("node", node.clone())], Value::Int(*d)))
                    .collect()
            })
        },
    ),
];

impl Collector for StateCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        ethwatch_core::state::encode(&mut enc, STATE_METRICS, &self.0.get())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: NetworkState) -> String {
        let mut r = Registry::default();
        let state = SharedState::default();
        state.set(s);
        r.register_collector(Box::new(StateCollector(state)));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).expect("encode");
        out
    }

    /// The exposition of a split network with a mismatched pair, as the hand-written encoder
    /// wrote it before the table (`want` was captured from it): same families, order, labels and
    /// number formats; a node name that needs escaping stays parseable.
    #[test]
    fn state_encodes_as_before() {
        let node = |name: &str, layer, status, head| NodeReport {
            name: name.into(),
            layer,
            status,
            head,
        };
        let s = NetworkState {
            nodes: vec![
                node("el-1", Layer::Execution, NodeStatus::Up, Some(120)),
                node("el\"2", Layer::Execution, NodeStatus::Syncing, Some(100)),
                node("cl-1", Layer::Consensus, NodeStatus::Down, None),
            ],
            execution: LayerReport {
                agreement: Agreement {
                    common_height: Some(100),
                    spread: Some(20),
                    distinct: 2,
                    on_majority: vec![("el-1".into(), true), ("el\"2".into(), false)],
                },
            },
            consensus: LayerReport::default(),
            finalized: Some((3, 4)),
            pairs: vec![("cl-1".into(), -5)],
            pair_tolerance: 2,
        };
        let got = text(s);
        let want = include_str!("../tests/fixtures/network-state.prom");
        if std::env::var_os("ETHWATCH_BLESS").is_some() {
            std::fs::write(
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/network-state.prom"
                ),
                &got,
            )
            .expect("bless");
        }
        assert_eq!(got, want);
        assert_eq!(text(NetworkState::default()).matches("# HELP").count(), 7);
    }
}
