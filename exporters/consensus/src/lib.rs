//! The consensus-layer exporter: `ethwatch consensus --beacon-url URL`.
//!
//! # Layout
//! - [`types`]: the Beacon API JSON shapes, decoded leniently (numbers as strings, unknown
//!   fields and forks), and a streaming walk over large arrays.
//! - [`api`]: typed calls over the core's upstream call path, one templated route each.
//! - [`sse`]: a bounded parser for the event stream.
//! - [`events`]: the event stream task (live head, reorgs, finality), with reconnect and backoff.
//! - [`clock`]: the wall-clock slot from genesis and slot length.
//! - [`head`]: head accounting: blocks, missed slots (the exact definition is there).
//! - [`collectors`]: the collectors' table (flags, self-metric labels, docs).
//! - [`poller`]: the poll cycle and its collectors; the head path shared with the stream.
//! - [`validators`]: validator counts, balance and epoch participation.
//! - [`metrics`]: every metric, the state encoded at scrape time, [`metrics::registry_for_docs`].
//!
//! Works with any beacon node that speaks the standard Beacon API: Lighthouse, Lodestar, Teku,
//! Prysm, Nimbus. See `docs/consensus.md`.

pub mod api;
pub mod clock;
pub mod collectors;
pub mod events;
pub mod head;
pub mod metrics;
pub mod poller;
pub mod proposals;
pub mod sse;
pub mod types;
pub mod validators;

use std::sync::Arc;
use std::time::Duration;

use ethwatch_core::collectors::{Collector, Collectors};
use ethwatch_core::config::{CommonArgs, ConfigError, parse_duration, parse_http_url};
use ethwatch_core::exporter::Frame;
use ethwatch_core::server;
use ethwatch_core::upstream::{Upstream, UpstreamOptions};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::api::BeaconApi;
use crate::collectors::ClCollector;
use crate::events::EventsConfig;
use crate::metrics::ConsensusMetrics;
use crate::poller::{Poller, PollerConfig, ReadyConfig};
use crate::validators::ValidatorFilter;

/// Flags of `ethwatch consensus`. Every flag has an `ETHWATCH_*` environment twin.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsensusArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Beacon API endpoint of the consensus node. Credentials in the URL are sent as basic auth
    /// and redacted from logs.
    #[arg(long = "beacon-url", value_parser = parse_http_url)]
    pub beacon_url: Url,

    /// How often to poll the node; default half a slot (1 s until the slot length is known).
    #[arg(long = "poll-interval", value_parser = parse_duration)]
    pub poll_interval: Option<Duration>,

    /// While the event stream delivers heads, how often to read sync state, health, peers and
    /// client info (the head comes from the stream; finality is read once per epoch). Without a
    /// live stream every poll interval is a full cycle.
    #[arg(long = "streaming-poll-interval", default_value = "12s", value_parser = parse_duration)]
    pub streaming_poll_interval: Duration,

    /// Timeout of one request to the node (connect, headers and body).
    #[arg(long = "beacon-timeout", default_value = "5s", value_parser = parse_duration)]
    pub beacon_timeout: Duration,

    /// Largest response body accepted from the node, in bytes (validator lists and states grow
    /// with the network).
    #[arg(long = "beacon-max-body-bytes", default_value_t = 64 * 1024 * 1024)]
    pub beacon_max_body_bytes: usize,

    /// How often to refresh the client version, genesis and chain spec.
    #[arg(long = "info-interval", default_value = "5m", value_parser = parse_duration)]
    pub info_interval: Duration,

    /// How often to read peer counts and the peer list.
    #[arg(long = "peers-interval", default_value = "15s", value_parser = parse_duration)]
    pub peers_interval: Duration,

    /// The peer list (for eth_cl_peers_by_direction) is read only while at most this many peers
    /// are connected, and only this many entries are counted.
    #[arg(long = "peers.list-max", default_value_t = 1000)]
    pub peers_list_max: u64,

    /// How often to probe again an endpoint the node did not offer (attestation rewards).
    #[arg(long = "reprobe-interval", default_value = "5m", value_parser = parse_duration)]
    pub reprobe_interval: Duration,

    /// Most headers fetched to walk back over a gap or a reorg for one new head (as many as the
    /// execution exporter fetches, so both layers measure reorgs up to the same depth).
    #[arg(long = "max-backfill", default_value_t = 64)]
    pub max_backfill: u64,

    /// /readyz fails when the node has not answered for this many poll intervals (at least 2 s).
    #[arg(long = "ready-intervals", default_value_t = 3)]
    pub ready_intervals: u32,

    /// /readyz fails once the node's sync distance exceeds this many slots.
    #[arg(long = "ready.max-sync-distance", default_value_t = 8)]
    pub ready_max_sync_distance: u64,

    /// After failing, /readyz passes again only at this sync distance or less (hysteresis);
    /// default half of --ready.max-sync-distance.
    #[arg(long = "ready.resume-sync-distance")]
    pub ready_resume_sync_distance: Option<u64>,

    /// Largest event stream line or event kept, in bytes; a larger one ends the session.
    #[arg(long = "events.max-event-bytes", default_value_t = 256 * 1024)]
    pub events_max_event_bytes: usize,

    /// How long to wait for the event stream to open. Some nodes (Lodestar 1.5) answer only
    /// with their first event, so keep this above a slot.
    #[arg(long = "events.open-timeout", default_value = "60s", value_parser = parse_duration)]
    pub events_open_timeout: Duration,

    /// Longest wait between event stream reconnect attempts (backoff doubles from 1 s).
    #[arg(long = "events.max-backoff", default_value = "30s", value_parser = parse_duration)]
    pub events_max_backoff: Duration,

    /// Validators to watch (indices or 0x public keys, comma-separated or repeated); all when
    /// unset.
    #[arg(long = "validators.id", value_delimiter = ',')]
    pub validators_id: Vec<String>,

    /// The `--collector.*` flags, one per switch of [`ClCollector`]'s table.
    #[command(flatten)]
    pub collectors: Collectors<ClCollector>,
}

impl ConsensusArgs {
    /// Checks relations between flags (the message names the field) and returns the parsed
    /// `--validators.id` filter.
    pub fn validate(&self) -> Result<ValidatorFilter, ConfigError> {
        if let Some(d) = self.poll_interval {
            ConfigError::check_min("poll-interval", d, Duration::from_millis(100))?;
        }
        if self.beacon_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "beacon-timeout",
                "must be more than 0",
            ));
        }
        ConfigError::check_bytes("beacon-max-body-bytes", self.beacon_max_body_bytes)?;
        for (field, d) in [
            ("streaming-poll-interval", self.streaming_poll_interval),
            ("info-interval", self.info_interval),
            ("peers-interval", self.peers_interval),
            ("reprobe-interval", self.reprobe_interval),
        ] {
            ConfigError::check_min(field, d, Duration::from_secs(1))?;
        }
        if self.ready_intervals == 0 {
            return Err(ConfigError::invalid(
                "ready-intervals",
                "must be at least 1",
            ));
        }
        if let Some(r) = self.ready_resume_sync_distance
            && r > self.ready_max_sync_distance
        {
            return Err(ConfigError::invalid(
                "ready.resume-sync-distance",
                format!(
                    "{r} is above --ready.max-sync-distance {}",
                    self.ready_max_sync_distance
                ),
            ));
        }
        ConfigError::check_bytes("events.max-event-bytes", self.events_max_event_bytes)?;
        ConfigError::check_min(
            "events.max-backoff",
            self.events_max_backoff,
            Duration::from_secs(1),
        )?;
        ValidatorFilter::parse(&self.validators_id)
            .map_err(|e| ConfigError::invalid("validators.id", e.to_string()))
    }
}

/// A started exporter.
pub type Running = ethwatch_core::exporter::Running<Poller>;

/// Validates the flags, binds the listener and starts every task.
pub async fn start(args: ConsensusArgs, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let filter = args.validate()?;
    let mut frame = Frame::bind(&args.common, shutdown.clone()).await?;
    let status = frame.status.clone();
    let metrics = ConsensusMetrics::register(&mut frame.registry);
    let upstream = Upstream::new(
        &args.beacon_url,
        UpstreamOptions {
            timeout: args.beacon_timeout,
            max_body_bytes: args.beacon_max_body_bytes,
        },
        metrics.api.clone(),
    )?;
    let upstream_shown = upstream.redacted_url().to_string();
    let poller = Arc::new(Poller::new(
        BeaconApi::new(upstream),
        metrics,
        status.clone(),
        PollerConfig {
            enabled: args.collectors,
            poll_interval: args.poll_interval,
            streaming_interval: args.streaming_poll_interval,
            info_interval: args.info_interval,
            peers_interval: args.peers_interval,
            reprobe_interval: args.reprobe_interval,
            max_backfill: args.max_backfill,
            peers_list_max: args.peers_list_max,
            filter,
            ready: ReadyConfig {
                max_sync_distance: args.ready_max_sync_distance,
                resume_sync_distance: args
                    .ready_resume_sync_distance
                    .unwrap_or(args.ready_max_sync_distance / 2),
                answer_intervals: args.ready_intervals,
            },
        },
    ));

    let p = poller.clone();
    let readiness: server::ReadinessCheck = Arc::new(move || p.readiness());
    // The poll loop: a cycle gets three request timeouts (sync, then the parallel requests, then
    // a walk back over a gap).
    frame.spawn(poll_loop(
        poller.clone(),
        args.beacon_timeout * 3,
        shutdown.clone(),
    ));
    if args.collectors.enabled(ClCollector::Validators) {
        frame.spawn(validators_loop(
            poller.clone(),
            args.beacon_timeout,
            shutdown.clone(),
        ));
    }
    if args.collectors.enabled(ClCollector::Events) {
        // Some nodes (Lodestar 1.5) send the stream's response headers only with the first
        // event, so opening it gets its own, longer timeout.
        let stream = Upstream::new(
            &args.beacon_url,
            UpstreamOptions {
                timeout: args.events_open_timeout.max(args.beacon_timeout),
                max_body_bytes: args.beacon_max_body_bytes,
            },
            poller.metrics().api.clone(),
        )?;
        frame.spawn(events::run(
            poller.clone(),
            stream,
            EventsConfig {
                max_event_bytes: args.events_max_event_bytes,
                max_backoff: args.events_max_backoff,
            },
            shutdown.clone(),
        ));
    }
    frame.set_pages(Arc::new(metrics::LandingValues(
        poller.metrics().state.clone(),
    )));
    let (addr, task) = frame.serve(&args.common, "consensus", upstream_shown, readiness)?;
    Ok(Running { addr, poller, task })
}

/// Ticks as [`Poller::next_tick_in`] says (half a slot, or a slot while the event stream is
/// live), and at once when the stream closes; see [`Poller::poll_tick`] for what a tick polls.
async fn poll_loop(poller: Arc<Poller>, cycle_timeout: Duration, shutdown: CancellationToken) {
    let (p, pace) = (poller.clone(), poller.clone());
    ethwatch_core::schedule::poll_cycles(
        poller.status().clone(),
        ClCollector::Head.name(),
        cycle_timeout,
        shutdown,
        poller.wake(),
        move || {
            let p = p.clone();
            async move { p.poll_tick().await }
        },
        move || pace.next_tick_in(),
    )
    .await
}

/// Checks once a slot whether the validators collectors are due (once per epoch).
async fn validators_loop(
    poller: Arc<Poller>,
    request_timeout: Duration,
    shutdown: CancellationToken,
) {
    let filter_requests = poller.config().filter.validator_paths().len() as u32;
    // Counts, participation (two requests at most) and proposals (duties and a few headers).
    let timeout =
        request_timeout * (filter_requests + 3 + 1 + crate::proposals::MAX_JUDGED_PER_RUN as u32);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(timeout, poller.poll_validators()) => {
                if r.is_err() {
                    tracing::warn!(?timeout, "validators collectors timed out");
                    poller.status().record(ClCollector::Validators.name(), timeout, Err("timed out".into()));
                }
            }
        }
        // Due once per epoch (or a slot after a failure): checking once a slot is enough.
        let slot = poller
            .clock()
            .map_or(Duration::ZERO, |c| Duration::from_millis(c.slot_ms));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(poller.poll_interval().max(slot)) => {}
        }
    }
}

/// A recorded answer under `tests/fixtures/` (the unit tests' fixtures).
#[cfg(test)]
fn fixture_bytes(path: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
