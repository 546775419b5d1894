//! The execution-layer exporter: `ethwatch execution --rpc-url URL [--ws-url URL]`.
//!
//! # Layout
//! - [`types`]: the JSON shapes read from the node, decoded leniently (hex or decimal quantities).
//! - [`rpc`]: JSON-RPC batches over the core's upstream call path.
//! - [`collectors`]: the collectors' table (flags, self-metric labels, docs).
//! - [`head`]: following the head: skipped blocks, intervals, reorgs.
//! - [`poller`]: the poll cycle (one batch per cycle) and the collectors.
//! - [`ws`]: the `newHeads` subscription.
//! - [`metrics`]: every metric, and the state encoded at scrape time.
//!
//! Works with any client that speaks the standard JSON-RPC: Reth, Geth, Nethermind, anvil.

pub mod collectors;
pub mod head;
pub mod metrics;
pub mod poller;
pub mod rpc;
pub mod types;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use ethwatch_core::collectors::{Collector, Collectors};
use ethwatch_core::config::{
    CommonArgs, ConfigError, parse_duration, parse_http_url, parse_ws_url,
};
use ethwatch_core::exporter::Frame;
use ethwatch_core::server;
use ethwatch_core::upstream::{Upstream, UpstreamOptions};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::collectors::ElCollector;
use crate::metrics::ExecutionMetrics;
use crate::poller::{Poller, PollerConfig};
use crate::rpc::RpcClient;

/// Flags of `ethwatch execution`. Every flag has an `ETHWATCH_*` environment twin.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecutionArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// JSON-RPC HTTP endpoint of the execution node. Credentials in the URL are sent as basic
    /// auth and redacted from logs.
    #[arg(long = "rpc-url", value_parser = parse_http_url)]
    pub rpc_url: Url,

    /// Optional websocket endpoint; subscribes to newHeads so heads are seen the moment the
    /// node has them, and exports eth_el_block_arrival_delay_seconds.
    #[arg(long = "ws-url", value_parser = parse_ws_url)]
    pub ws_url: Option<Url>,

    /// How often to poll the node (one batched request per cycle).
    #[arg(long = "poll-interval", default_value = "1s", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// While the newHeads subscription (--ws-url) is up, how often to poll: the head comes from
    /// the subscription, so the batch (sync, peers, txpool, safe and finalized blocks, and the
    /// head as a check) is needed less often. Without a subscription every poll interval is a
    /// cycle.
    #[arg(long = "streaming-poll-interval", default_value = "5s", value_parser = parse_duration)]
    pub streaming_poll_interval: Duration,

    /// Timeout of one request to the node (connect, headers and body).
    #[arg(long = "rpc-timeout", default_value = "2s", value_parser = parse_duration)]
    pub rpc_timeout: Duration,

    /// Largest response body accepted from the node, in bytes.
    #[arg(long = "rpc-max-body-bytes", default_value_t = 16 * 1024 * 1024)]
    pub rpc_max_body_bytes: usize,

    /// How often to refresh chain id, network id and client version.
    #[arg(long = "info-interval", default_value = "5m", value_parser = parse_duration)]
    pub info_interval: Duration,

    /// How often to probe again a method the node said it does not support (-32601).
    #[arg(long = "reprobe-interval", default_value = "5m", value_parser = parse_duration)]
    pub reprobe_interval: Duration,

    /// Expected time between blocks; learnt from the chain (median of recent intervals) if unset.
    #[arg(long = "expected-block-interval", value_parser = parse_duration)]
    pub expected_block_interval: Option<Duration>,

    /// Most blocks fetched to fill a gap or walk back a reorg for one new head.
    #[arg(long = "max-backfill", default_value_t = 64)]
    pub max_backfill: u64,

    /// /readyz fails when the node has not answered for this many poll intervals.
    #[arg(long = "ready-intervals", default_value_t = 3)]
    pub ready_intervals: u32,

    /// The `--collector.*` flags, one per entry of [`ElCollector`]'s table.
    #[command(flatten)]
    pub collectors: Collectors<ElCollector>,
}

impl ExecutionArgs {
    /// Checks relations between flags; the message names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ms100 = Duration::from_millis(100);
        ConfigError::check_min("poll-interval", self.poll_interval, ms100)?;
        ConfigError::check_min(
            "streaming-poll-interval",
            self.streaming_poll_interval,
            ms100,
        )?;
        if self.rpc_timeout.is_zero() {
            return Err(ConfigError::invalid("rpc-timeout", "must be more than 0"));
        }
        ConfigError::check_bytes("rpc-max-body-bytes", self.rpc_max_body_bytes)?;
        if self.ready_intervals == 0 {
            return Err(ConfigError::invalid(
                "ready-intervals",
                "must be at least 1",
            ));
        }
        if self.expected_block_interval.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::invalid(
                "expected-block-interval",
                "must be more than 0",
            ));
        }
        Ok(())
    }
}

/// A started exporter.
pub type Running = ethwatch_core::exporter::Running<Poller>;

/// Validates the flags, binds the listener and starts every task.
pub async fn start(args: ExecutionArgs, shutdown: CancellationToken) -> anyhow::Result<Running> {
    args.validate()?;
    let mut frame = Frame::bind(&args.common, shutdown.clone()).await?;
    let status = frame.status.clone();
    let metrics = ExecutionMetrics::register(&mut frame.registry, args.ws_url.is_some());
    let upstream = Upstream::new(
        &args.rpc_url,
        UpstreamOptions {
            timeout: args.rpc_timeout,
            max_body_bytes: args.rpc_max_body_bytes,
        },
        metrics.rpc.clone(),
    )?;
    let upstream_shown = upstream.redacted_url().to_string();
    let poller = Arc::new(Poller::new(
        RpcClient::new(upstream),
        metrics,
        status.clone(),
        PollerConfig {
            enabled: args.collectors,
            poll_interval: args.poll_interval,
            streaming_interval: args.streaming_poll_interval,
            info_interval: args.info_interval,
            reprobe_interval: args.reprobe_interval,
            expected_interval: args.expected_block_interval,
            max_backfill: args.max_backfill,
        },
    ));

    let p = poller.clone();
    let intervals = args.ready_intervals;
    let readiness: server::ReadinessCheck = Arc::new(move || p.readiness(intervals));
    // The poll loop: a cycle every poll interval, or streaming interval while subscribed, and
    // at once when the subscription is lost. A cycle gets three request timeouts: the batch, a
    // backfill, and slack.
    let (p, pace) = (poller.clone(), poller.clone());
    frame.spawn(ethwatch_core::schedule::poll_cycles(
        status.clone(),
        ElCollector::Head.name(),
        args.rpc_timeout * 3,
        shutdown.clone(),
        poller.wake(),
        move || {
            let p = p.clone();
            async move { p.poll_once().await }
        },
        move || pace.cycle_interval(),
    ));
    if let Some(ws_url) = args.ws_url.clone() {
        frame.spawn(ws::run(
            ws_url,
            poller.clone(),
            status.clone(),
            args.rpc_max_body_bytes,
            args.rpc_timeout,
            shutdown.clone(),
        ));
    }
    frame.set_pages(Arc::new(metrics::LandingValues(
        poller.metrics().state.clone(),
    )));
    let (addr, task) = frame.serve(&args.common, "execution", upstream_shown, readiness)?;
    Ok(Running { addr, poller, task })
}
