//! The network watcher: `ethwatch network` sees every node of an enclave and says whether they
//! agree on the chain.
//!
//! # Layout
//! - [`discovery`]: the nodes, from a static list or by watching pods through the Kubernetes API
//!   (presets for this project's chart and for Kurtosis enclaves).
//! - [`poll`]: one cycle over every node (bounded concurrency), in two phases per layer.
//! - [`compare`]: the pure comparison: common height, spread, distinct heads, majority.
//! - [`metrics`]: `eth_network_*`, encoded from the last cycle's result at scrape time.
//! - [`status`]: the live status page at `/` and its JSON, `/api/v1/status`.

pub mod compare;
pub mod discovery;
pub mod metrics;
pub mod poll;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use ethwatch_core::config::{CommonArgs, ConfigError, parse_duration};
use ethwatch_core::exporter::Frame;
use ethwatch_core::server;
use ethwatch_core::upstream::UpstreamOptions;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::discovery::{PodRules, Preset, Targets};
use crate::metrics::NetworkMetrics;
use crate::poll::{CycleConfig, Watcher};

/// Flags of `ethwatch network`. Every flag has an `ETHWATCH_*` environment twin.
#[derive(Debug, Clone, clap::Args)]
pub struct NetworkArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// An execution node to watch, `NAME=URL`. Repeatable; for use outside Kubernetes.
    #[arg(long = "execution-target", env = "ETHWATCH_EXECUTION_TARGETS", value_delimiter = ',', value_parser = discovery::parse_static)]
    pub execution_targets: Vec<(String, Url)>,

    /// A beacon node to watch, `NAME=URL`. Repeatable.
    #[arg(long = "beacon-target", env = "ETHWATCH_BEACON_TARGETS", value_delimiter = ',', value_parser = discovery::parse_static)]
    pub beacon_targets: Vec<(String, Url)>,

    /// An execution node and its beacon node, `EXECUTION_NAME=BEACON_NAME` (static targets).
    #[arg(long = "pair", env = "ETHWATCH_PAIRS", value_delimiter = ',', value_parser = discovery::parse_pair)]
    pub pairs: Vec<(String, String)>,

    /// Find the nodes by watching pods through the Kubernetes API (in-cluster or kubeconfig).
    #[arg(long = "kubernetes.discovery")]
    pub kubernetes: bool,

    /// Namespace to watch (default: the pod's own namespace, or the kubeconfig's).
    #[arg(long = "kubernetes.namespace")]
    pub namespace: Option<String>,

    /// Label conventions: `ethwatch` (this project's chart) or `kurtosis`.
    #[arg(long = "kubernetes.preset", value_enum, default_value_t = Preset::Ethwatch)]
    pub preset: Preset,

    /// Label selector overriding the preset's.
    #[arg(long = "kubernetes.selector")]
    pub selector: Option<String>,

    /// Name of the execution nodes' JSON-RPC container port.
    #[arg(long = "kubernetes.execution-port", default_value = "rpc")]
    pub execution_port: String,

    /// Name of the beacon nodes' API container port.
    #[arg(long = "kubernetes.beacon-port", default_value = "http")]
    pub beacon_port: String,

    /// How often to compare the nodes.
    #[arg(long = "poll-interval", default_value = "4s", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// Timeout of one request to a node.
    #[arg(long = "request-timeout", default_value = "2s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// A whole cycle over every node is cut after this.
    #[arg(long = "cycle-timeout", default_value = "10s", value_parser = parse_duration)]
    pub cycle_timeout: Duration,

    /// Nodes polled at once.
    #[arg(long = "concurrency", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,

    /// Largest response body accepted from a node, in bytes.
    #[arg(long = "max-body-bytes", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Blocks a beacon node's head execution block may be away from its execution node's head
    /// before eth_network_pair_mismatch says 1.
    #[arg(long = "pair-tolerance", default_value_t = 2)]
    pub pair_tolerance: u64,

    /// Blocks (slots) a node's head may be below the layer's highest before the status page
    /// and `/api/v1/status` say it is `behind`.
    #[arg(long = "behind-tolerance", default_value_t = 2)]
    pub behind_tolerance: u64,
}

impl NetworkArgs {
    /// Checks relations between flags; the message names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = ConfigError::invalid;
        if !self.kubernetes && self.execution_targets.is_empty() && self.beacon_targets.is_empty() {
            return Err(bad(
                "execution-target",
                "no nodes to watch: give --execution-target/--beacon-target or --kubernetes.discovery",
            ));
        }
        if self.kubernetes && !(self.execution_targets.is_empty() && self.beacon_targets.is_empty())
        {
            return Err(bad(
                "kubernetes.discovery",
                "cannot be combined with static --execution-target/--beacon-target",
            ));
        }
        if self.poll_interval < Duration::from_millis(200) {
            return Err(bad("poll-interval", "must be at least 200ms"));
        }
        if self.request_timeout.is_zero() || self.request_timeout > self.cycle_timeout {
            return Err(bad(
                "request-timeout",
                "must be more than 0 and at most --cycle-timeout",
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(bad("max-body-bytes", "must be at least 1024"));
        }
        discovery::static_targets(&self.execution_targets, &self.beacon_targets, &self.pairs)
            .map_err(|e| ConfigError::invalid(e.flag(), e.to_string()))?;
        Ok(())
    }
}

/// A started watcher.
pub type Running = ethwatch_core::exporter::Running<Watcher>;

/// Validates flags, connects discovery, binds the listener and starts every task.
pub async fn start(args: NetworkArgs, shutdown: CancellationToken) -> anyhow::Result<Running> {
    args.validate()?;
    let mut frame = Frame::bind(&args.common, shutdown.clone()).await?;
    let status = frame.status.clone();
    let metrics = NetworkMetrics::register(&mut frame.registry);
    let health = discovery::DiscoveryHealth {
        listed: Arc::default(),
        up: metrics.discovery_up.clone(),
    };

    let (upstream_shown, rx) = if args.kubernetes {
        let client = kube::Client::try_default().await.map_err(|e| {
            anyhow::anyhow!("--kubernetes.discovery: no Kubernetes API access: {e}")
        })?;
        let ns = args
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let rules = PodRules {
            preset: args.preset,
            selector: args.selector.clone(),
            execution_port: args.execution_port.clone(),
            beacon_port: args.beacon_port.clone(),
        };
        let shown = format!("pods in namespace {ns} matching {}", rules.selector());
        let (tx, rx) = watch::channel(Targets::new());
        frame.spawn(discovery::watch_pods(
            client,
            ns,
            rules,
            tx,
            health.clone(),
            shutdown.clone(),
        ));
        (shown, rx)
    } else {
        let t =
            discovery::static_targets(&args.execution_targets, &args.beacon_targets, &args.pairs)
                .map_err(|e| anyhow::anyhow!("--{}: {e}", e.flag()))?;
        let shown = format!("{} static targets", t.len());
        let (_tx, rx) = watch::channel(t);
        health.up.set(1);
        health
            .listed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        (shown, rx)
    };
    let watcher = Arc::new(Watcher::new(
        rx,
        metrics,
        CycleConfig {
            request: UpstreamOptions {
                timeout: args.request_timeout,
                max_body_bytes: args.max_body_bytes,
            },
            concurrency: args.concurrency as usize,
            pair_tolerance: args.pair_tolerance,
            behind_tolerance: args.behind_tolerance,
        },
    )?);
    // The status page refreshes about once a cycle, at most once a second.
    frame.set_pages(Arc::new(status::StatusPages {
        board: watcher.board().clone(),
        refresh: args.poll_interval.max(Duration::from_secs(1)),
    }));
    status.declare("network", true);
    let ready_window = (args.poll_interval * 3).max(args.cycle_timeout);
    let last_cycle = Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    let lc = last_cycle.clone();
    // Ready once discovery has listed the nodes and works, and a cycle finished recently: a
    // watcher that cannot see the pods must not look healthy.
    let h = health.clone();
    let readiness: server::ReadinessCheck = Arc::new(move || {
        if !h.listed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err("node discovery has not listed the pods yet".into());
        }
        if h.up.get() == 0 {
            return Err("node discovery is failing (see the log)".into());
        }
        match *lc.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(t) if t.elapsed() <= ready_window => Ok(()),
            Some(t) => Err(format!(
                "the last cycle finished {:.1} s ago",
                t.elapsed().as_secs_f64()
            )),
            None => Err("no cycle has finished yet".into()),
        }
    });
    {
        let w = watcher.clone();
        let s = status.clone();
        let timeout = args.cycle_timeout;
        frame.spawn(ethwatch_core::schedule::every(
            args.poll_interval,
            timeout,
            shutdown.clone(),
            move || {
                let w = w.clone();
                let s = s.clone();
                let lc = last_cycle.clone();
                async move {
                    use tracing::Instrument;
                    let start = std::time::Instant::now();
                    w.cycle()
                        .instrument(tracing::info_span!(
                            "network_cycle",
                            otel.name = "network cycle"
                        ))
                        .await;
                    *lc.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
                    s.record("network", start.elapsed(), Ok(()));
                }
            },
            move || {
                tracing::warn!(
                    ?timeout,
                    "network cycle timed out; raise --cycle-timeout or --concurrency"
                )
            },
        ));
    }
    let (addr, task) = frame.serve(&args.common, "network", upstream_shown, readiness)?;
    Ok(Running {
        addr,
        poller: watcher,
        task,
    })
}
