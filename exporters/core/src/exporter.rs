//! The frame every exporter runs in: its registry with the shared self-metrics, the listener,
//! the task tracker, and the HTTP server started last.
//!
//! Every exporter thus serves `ethwatch_build_info`, the collector self-metrics, the trace
//! pipeline's counters, the volume gauges and `process_*`.
//!
//! An exporter's `start` binds a [`Frame`], registers its own metrics into
//! [`Frame::registry`], spawns its pollers with [`Frame::spawn`], then calls [`Frame::serve`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::collectors::Collector;
use crate::config::CommonArgs;
use crate::metrics::{CollectorStatus, register_build_info};
use crate::server::{self, Pages, ReadinessCheck, ServeOptions, ServerMetrics, ServerState};
use crate::volume::VolumeMetrics;

/// A started exporter: where it listens, what it polls with (tests inspect it), and the task that
/// ends when every task has drained after shutdown.
pub struct Running<P> {
    /// Where the HTTP server listens.
    pub addr: std::net::SocketAddr,
    /// The poller (the watcher, for `ethwatch network`).
    pub poller: std::sync::Arc<P>,
    /// Ends when every task has drained after shutdown.
    pub task: tokio::task::JoinHandle<()>,
}

/// The self-metrics every exporter's registry holds before its own: `ethwatch_build_info`, the
/// collector self-metrics, the trace pipeline's counters, `process_*`, the volume gauges and the
/// HTTP server's counters.
pub struct SelfMetrics {
    pub status: CollectorStatus,
    pub volume: VolumeMetrics,
    pub server: ServerMetrics,
}

impl SelfMetrics {
    /// Registers them into `registry`; `volume_paths` are the `--volume.path` flags.
    pub fn register(registry: &mut Registry, volume_paths: Vec<std::path::PathBuf>) -> Self {
        register_build_info(registry);
        let status = CollectorStatus::register(registry);
        crate::traces::register_metrics(registry);
        registry.register_collector(Box::new(crate::process::ProcessCollector));
        let volume = VolumeMetrics::register(registry, volume_paths);
        let server = ServerMetrics::register(registry);
        SelfMetrics {
            status,
            volume,
            server,
        }
    }
}

/// A registry holding the self-metrics with a value in each labelled family (every collector of
/// the table `C` has run once, one volume is read), for an exporter's `registry_for_docs`: the
/// metrics reference is generated from it.
pub fn docs_registry<C: Collector>() -> Registry {
    let mut registry = Registry::default();
    let m = SelfMetrics::register(&mut registry, vec![std::env::temp_dir()]);
    for &c in C::ALL {
        m.status.record(c.name(), std::time::Duration::ZERO, Ok(()));
    }
    let _ = m.volume.update();
    registry
}

/// See the module docs.
pub struct Frame {
    /// Where the exporter registers its metrics; already holds `ethwatch_build_info`, the
    /// collector self-metrics, the trace pipeline's counters and the volume gauges.
    pub registry: Registry,
    /// Per-collector status (self-metrics and the landing page).
    pub status: CollectorStatus,
    volume: VolumeMetrics,
    server_metrics: ServerMetrics,
    web: crate::webconfig::WebConfig,
    pages: Option<Arc<dyn Pages>>,
    listener: TcpListener,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Frame {
    /// Binds `--web.listen-address` (failing with a message naming it) and registers the shared
    /// self-metrics.
    pub async fn bind(common: &CommonArgs, shutdown: CancellationToken) -> anyhow::Result<Frame> {
        let web = match &common.web_config_file {
            Some(p) => crate::webconfig::WebConfig::load(p)?,
            None => crate::webconfig::WebConfig::default(),
        };
        let listener = server::bind(&common.listen_address).await?;
        let mut registry = Registry::default();
        let SelfMetrics {
            status,
            volume,
            server: server_metrics,
        } = SelfMetrics::register(&mut registry, common.volume_paths.clone());
        Ok(Frame {
            registry,
            status,
            volume,
            server_metrics,
            web,
            pages: None,
            listener,
            tracker: TaskTracker::new(),
            shutdown,
        })
    }

    /// Adds the exporter's live values to the landing page and its own routes to the server.
    pub fn set_pages(&mut self, pages: Arc<dyn Pages>) {
        self.pages = Some(pages);
    }

    /// Runs a task that must drain before the exporter stops.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// Starts the volume reader (when `--volume.path` is given) and the HTTP server. The handle
    /// ends when every task has drained after shutdown.
    pub fn serve(
        self,
        common: &CommonArgs,
        exporter: &'static str,
        upstream: String,
        readiness: ReadinessCheck,
    ) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
        let addr = self.listener.local_addr()?;
        if !self.volume.is_empty() {
            self.tracker.spawn(self.volume.run(
                self.status.clone(),
                common.volume_interval,
                self.shutdown.clone(),
            ));
        }
        tracing::info!(%addr, node = %upstream, "{exporter} exporter listening");
        let state = Arc::new(ServerState {
            registry: self.registry,
            telemetry_path: common.telemetry_path.clone(),
            readiness,
            exporter,
            upstream,
            status: self.status,
            metrics: self.server_metrics,
            web: self.web,
            pages: self.pages,
        });
        self.tracker.spawn(server::serve(
            self.listener,
            state,
            ServeOptions::from_args(common),
            self.shutdown,
        ));
        self.tracker.close();
        let tracker = self.tracker;
        Ok((addr, tokio::spawn(async move { tracker.wait().await })))
    }
}
