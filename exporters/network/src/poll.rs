//! One cycle over every node, in two phases per layer:
//!
//! 1. every node at once (bounded concurrency): its head, whether it syncs, and for beacon nodes
//!    the finality checkpoints and, for paired ones, the execution block in the head block;
//! 2. the common height is the lowest head among the nodes that answered; every node whose head
//!    is above it is asked for its block (root) at that height, so all are compared at one height.
//!
//! Execution nodes cost one JSON-RPC batch in phase 1 and at most one call in phase 2. Clients
//! and parsers are the sidecars' own (`ethwatch-execution`, `ethwatch-consensus`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use ethwatch_consensus::api::{self, BeaconApi};
use ethwatch_consensus::types::{FinalityCheckpoints, NodeVersion, PeerCount, Syncing};
use ethwatch_core::upstream::{Upstream, UpstreamError, UpstreamOptions};
use ethwatch_execution::rpc::{Call, METHOD_NOT_FOUND, RpcClient};
use ethwatch_execution::types::{ClientVersion, Header, Quantity, SyncStatus};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::watch;

use crate::compare::{self, Head, NodeStatus};
use crate::discovery::{Layer, Target, Targets};
use crate::metrics::{LayerReport, NetworkMetrics, NetworkState, NodeReport};
use crate::status::{Board, NodeSeen};

/// Settings of the cycle.
#[derive(Debug, Clone)]
pub struct CycleConfig {
    pub request: UpstreamOptions,
    pub concurrency: usize,
    pub pair_tolerance: u64,
    /// Blocks (slots) below the highest head before the status page says "behind".
    pub behind_tolerance: u64,
}

enum Client {
    Execution(RpcClient),
    Consensus(BeaconApi),
}

struct Node {
    target: Target,
    client: Client,
    /// Client name and version, asked until known and again after the node was down.
    version: Mutex<Option<(String, String)>>,
    /// The node answered "method not found" to net_peerCount (anvil): not asked again.
    peers_unsupported: AtomicBool,
}

/// Phase-1 observation of one node.
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    layer: Layer,
    status: NodeStatus,
    head: Option<Head>,
    finalized: Option<u64>,
    exec_block: Option<u64>,
    pair: Option<String>,
    peers: Option<u64>,
    /// How long the node took to answer phase 1.
    latency: Option<Duration>,
}

/// Polls every discovered node and publishes the comparison.
pub struct Watcher {
    targets: watch::Receiver<Targets>,
    /// One HTTP client (one connection pool) for every node.
    http: reqwest::Client,
    nodes: Mutex<HashMap<String, std::sync::Arc<Node>>>,
    metrics: NetworkMetrics,
    cfg: CycleConfig,
    /// What the status page and `/api/v1/status` show.
    board: Board,
    /// Whether each layer (execution, consensus) is split, so a split and its heal are logged
    /// once each.
    splits: Mutex<[compare::SplitWatch; 2]>,
}

impl Watcher {
    /// A watcher over the targets `targets` publishes.
    pub fn new(
        targets: watch::Receiver<Targets>,
        metrics: NetworkMetrics,
        cfg: CycleConfig,
    ) -> anyhow::Result<Self> {
        Ok(Watcher {
            http: Upstream::http_client(&cfg.request)?,
            targets,
            nodes: Mutex::new(HashMap::new()),
            metrics,
            board: Board::new(cfg.behind_tolerance, cfg.pair_tolerance),
            cfg,
            splits: Mutex::default(),
        })
    }

    /// The status page's state.
    pub fn board(&self) -> &Board {
        &self.board
    }

    /// The metrics this watcher updates.
    pub fn metrics(&self) -> &NetworkMetrics {
        &self.metrics
    }

    /// Brings the client map in line with the current targets; series of removed nodes go.
    fn sync_nodes(&self) -> Vec<std::sync::Arc<Node>> {
        let targets = self.targets.borrow().clone();
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.retain(|name, n| {
            let keep = targets.get(name).is_some_and(|t| *t == n.target);
            if !keep {
                let m = self.per_node(&n.target);
                for call in calls_of(n.target.layer) {
                    m.remove_target(call);
                }
            }
            keep
        });
        for (name, t) in &targets {
            if nodes.contains_key(name) {
                continue;
            }
            let up = Upstream::with_client(
                &t.url,
                self.cfg.request.clone(),
                self.per_node(t),
                self.http.clone(),
            );
            let client = match t.layer {
                Layer::Execution => Client::Execution(RpcClient::new(up)),
                Layer::Consensus => Client::Consensus(BeaconApi::new(up)),
            };
            nodes.insert(
                name.clone(),
                std::sync::Arc::new(Node {
                    target: t.clone(),
                    client,
                    version: Mutex::new(None),
                    peers_unsupported: AtomicBool::new(false),
                }),
            );
        }
        for layer in [Layer::Execution, Layer::Consensus] {
            let n = targets.values().filter(|t| t.layer == layer).count();
            self.metrics
                .targets
                .get_or_create(&[("layer", layer.as_str())])
                .set(n as i64);
        }
        nodes.values().cloned().collect()
    }

    /// One line when a layer splits (naming the distinct heads and their nodes) and one when it
    /// heals; nothing while it stays as it was.
    fn log_split(
        &self,
        layer: Layer,
        a: &compare::Agreement,
        nodes: &[(String, Option<Head>, Option<B256>)],
    ) {
        let i = match layer {
            Layer::Execution => 0,
            Layer::Consensus => 1,
        };
        let change = self.splits.lock().unwrap_or_else(|e| e.into_inner())[i].observe(a, nodes);
        match change {
            Some(compare::SplitChange::Split { height, heads }) => tracing::warn!(
                layer = layer.as_str(),
                height,
                distinct = a.distinct,
                heads = %heads,
                "network split: the nodes have different blocks at the common height"
            ),
            Some(compare::SplitChange::Healed { height, head }) => tracing::info!(
                layer = layer.as_str(),
                height,
                head = %head,
                "network healed: the nodes agree at the common height again"
            ),
            None => {}
        }
    }

    fn per_node(&self, t: &Target) -> ethwatch_core::upstream::RequestMetrics {
        self.metrics.requests.with_constant_labels(vec![
            ("layer", t.layer.as_str().to_string()),
            ("node", t.name.clone()),
        ])
    }

    /// One cycle over every node.
    pub async fn cycle(&self) {
        let start = Instant::now();
        let nodes = self.sync_nodes();
        let seen: Vec<(std::sync::Arc<Node>, Seen)> = futures_util::stream::iter(nodes)
            .map(|n| async move {
                let s = phase1(&n).await;
                (n, s)
            })
            .buffer_unordered(self.cfg.concurrency.max(1))
            .collect()
            .await;

        let mut compared = Vec::new();
        let mut state = NetworkState {
            pair_tolerance: self.cfg.pair_tolerance,
            ..NetworkState::default()
        };
        for layer in [Layer::Execution, Layer::Consensus] {
            // A node that says it is syncing is counted (eth_network_nodes) but not compared:
            // its head would drag the common height back to where it is, hiding a split at the
            // tip while it catches up.
            let of_layer: Vec<(std::sync::Arc<Node>, String, Option<Head>)> = seen
                .iter()
                .filter(|(n, _)| n.target.layer == layer)
                .map(|(n, s)| {
                    let head = s.head.filter(|_| s.status != NodeStatus::Syncing);
                    (n.clone(), s.name.clone(), head)
                })
                .collect();
            let common = compare::common_height(of_layer.iter().map(|(_, _, h)| h));
            let at_common: Vec<(String, Option<Head>, Option<B256>)> =
                futures_util::stream::iter(of_layer)
                    .map(|(n, name, head)| async move {
                        let at = match (common, head) {
                            (Some(c), Some((h, hash))) if h == c => Some(hash),
                            (Some(c), Some(_)) => phase2(&n, c).await,
                            _ => None,
                        };
                        (name, head, at)
                    })
                    .buffer_unordered(self.cfg.concurrency.max(1))
                    .collect()
                    .await;
            let mut at_common = at_common;
            at_common.sort_by(|a, b| a.0.cmp(&b.0));
            let report = LayerReport {
                agreement: compare::agree(&at_common),
            };
            self.log_split(layer, &report.agreement, &at_common);
            compared.push((layer, at_common));
            match layer {
                Layer::Execution => state.execution = report,
                Layer::Consensus => state.consensus = report,
            }
        }
        // Syncing nodes are behind on finality by nature; the range is over the others.
        let in_sync = |s: &Seen| s.status != NodeStatus::Syncing;
        let finalized: Vec<u64> = seen
            .iter()
            .filter(|(_, s)| in_sync(s))
            .filter_map(|(_, s)| s.finalized)
            .collect();
        state.finalized = finalized
            .iter()
            .min()
            .zip(finalized.iter().max())
            .map(|(a, b)| (*a, *b));
        for (_, cl) in seen
            .iter()
            .filter(|(_, s)| s.layer == Layer::Consensus && in_sync(s))
        {
            let Some(pair) = &cl.pair else { continue };
            let el = seen.iter().find(|(_, s)| {
                s.layer == Layer::Execution && s.pair.as_ref() == Some(pair) && in_sync(s)
            });
            if let (Some((_, el)), Some(exec)) = (el, cl.exec_block)
                && let Some((el_head, _)) = el.head
            {
                state
                    .pairs
                    .push((cl.name.clone(), el_head as i64 - exec as i64));
            }
        }
        state.pairs.sort();
        let seen_nodes: Vec<NodeSeen> = seen
            .iter()
            .map(|(n, s)| NodeSeen {
                name: s.name.clone(),
                layer: s.layer,
                status: s.status,
                head: s.head,
                finalized: s.finalized,
                peers: s.peers,
                client: n.version.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                latency: s.latency,
                pair: s.pair.clone(),
            })
            .collect();
        self.board
            .update(seen_nodes, &compared, &state, start.elapsed());
        let mut reports: Vec<NodeReport> = seen
            .into_iter()
            .map(|(_, s)| NodeReport {
                name: s.name,
                layer: s.layer,
                status: s.status,
                head: s.head.map(|(n, _)| n),
            })
            .collect();
        reports.sort_by(|a, b| (a.layer, &a.name).cmp(&(b.layer, &b.name)));
        state.nodes = reports;
        self.metrics.state.set(state);
        self.metrics
            .cycle_duration
            .set(start.elapsed().as_secs_f64());
    }
}

fn calls_of(layer: Layer) -> &'static [&'static str] {
    match layer {
        Layer::Execution => &[
            "eth_getBlockByNumber",
            "eth_syncing",
            "net_peerCount",
            "web3_clientVersion",
            ethwatch_core::upstream::BATCH,
        ],
        Layer::Consensus => &[
            api::HEADER.0,
            api::SYNCING.0,
            api::FINALITY.0,
            api::BLOCK.0,
            api::PEER_COUNT.0,
            api::VERSION.0,
        ],
    }
}

fn down(n: &Node) -> Seen {
    Seen {
        name: n.target.name.clone(),
        layer: n.target.layer,
        status: NodeStatus::Down,
        head: None,
        finalized: None,
        exec_block: None,
        pair: n.target.pair.clone(),
        peers: None,
        latency: None,
    }
}

async fn phase1(n: &Node) -> Seen {
    let s = phase1_inner(n).await;
    if s.status == NodeStatus::Down {
        // A node that comes back may be another build.
        *n.version.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
    s
}

async fn phase1_inner(n: &Node) -> Seen {
    let mut s = down(n);
    let started = Instant::now();
    let known_version = n
        .version
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some();
    match &n.client {
        Client::Execution(rpc) => {
            let mut calls = vec![
                Call::new("eth_getBlockByNumber", json!(["latest", false])),
                Call::new("eth_syncing", json!([])),
            ];
            let ask_peers = !n.peers_unsupported.load(Ordering::Relaxed);
            if ask_peers {
                calls.push(Call::new("net_peerCount", json!([])));
            }
            if !known_version {
                calls.push(Call::new("web3_clientVersion", json!([])));
            }
            let Ok(items) = rpc.batch(&calls).await else {
                return s;
            };
            s.latency = Some(started.elapsed());
            let mut items = items.into_iter();
            let head = items
                .next()
                .map(|i| rpc.decode::<Option<Header>>("eth_getBlockByNumber", i));
            let sync = items
                .next()
                .map(|i| rpc.decode::<SyncStatus>("eth_syncing", i));
            if ask_peers {
                match items.next() {
                    Some(Err(UpstreamError::Rpc { code, .. })) if code == METHOD_NOT_FOUND => {
                        n.peers_unsupported.store(true, Ordering::Relaxed);
                    }
                    Some(i) => {
                        s.peers = rpc.decode::<Quantity>("net_peerCount", i).ok().map(|q| q.0);
                    }
                    None => {}
                }
            }
            if !known_version
                && let Some(Ok(v)) = items
                    .next()
                    .map(|i| rpc.decode::<String>("web3_clientVersion", i))
            {
                let c = ClientVersion::parse(&v);
                *n.version.lock().unwrap_or_else(|e| e.into_inner()) = Some((c.client, c.version));
            }
            if let Some(Ok(Some(h))) = head {
                s.head = Some((h.number(), h.hash));
                s.status = match sync {
                    Some(Ok(SyncStatus::Syncing { .. })) => NodeStatus::Syncing,
                    _ => NodeStatus::Up,
                };
            }
        }
        Client::Consensus(api) => {
            let version = async {
                if known_version {
                    return None;
                }
                api.get_data::<NodeVersion>(api::VERSION, "/eth/v1/node/version")
                    .await
                    .ok()
            };
            let (head, sync, fin, peers, version) = tokio::join!(
                api.header("head"),
                api.get_data::<Syncing>(api::SYNCING, "/eth/v1/node/syncing"),
                api.get_data::<FinalityCheckpoints>(
                    api::FINALITY,
                    "/eth/v1/beacon/states/head/finality_checkpoints"
                ),
                api.get_data::<PeerCount>(api::PEER_COUNT, "/eth/v1/node/peer_count"),
                version,
            );
            let Ok(head) = head else { return s };
            s.latency = Some(started.elapsed());
            s.peers = peers.ok().map(|p| p.connected.0);
            if let Some(v) = version {
                *n.version.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(ethwatch_consensus::types::parse_client_version(&v.version));
            }
            s.head = Some((head.slot, B256::from(head.root.0)));
            s.status = match sync {
                Ok(sy) if sy.is_syncing => NodeStatus::Syncing,
                _ => NodeStatus::Up,
            };
            s.finalized = fin.ok().map(|f| f.finalized.epoch.0);
            if n.target.pair.is_some()
                && let Ok(b) = api.block(head.root).await
            {
                s.exec_block = b.message.body.execution_payload.map(|p| p.block_number.0);
            }
        }
    }
    s
}

/// The hash (root) a node has at `height`; `None` when it cannot say. A slot without a block
/// is compared as the zero root, so nodes that agree the slot is empty agree.
async fn phase2(n: &Node, height: u64) -> Option<B256> {
    match &n.client {
        Client::Execution(rpc) => rpc
            .call::<Option<Header>>(
                "eth_getBlockByNumber",
                json!([format!("{height:#x}"), false]),
            )
            .await
            .ok()
            .flatten()
            .map(|h| h.hash),
        // The 404 of an empty slot is the expected answer, not a request error.
        Client::Consensus(api) => match api.header_at_slot(height).await {
            Ok(Some(h)) => Some(B256::from(h.root.0)),
            Ok(None) => Some(B256::ZERO),
            Err(_) => None,
        },
    }
}
