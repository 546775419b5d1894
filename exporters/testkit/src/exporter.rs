//! An exporter started in-process through its public API (`start(args, shutdown)`), listening on
//! `127.0.0.1:0`, stopped when dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::scrape::{self, Sample};

/// What the three exporters' `start` returns (`Running`): where it listens and the task that
/// ends when everything has drained.
pub trait Started {
    fn addr(&self) -> SocketAddr;
    fn into_task(self) -> JoinHandle<()>;
}

macro_rules! started {
    ($t:ty) => {
        impl Started for $t {
            fn addr(&self) -> SocketAddr {
                self.addr
            }
            fn into_task(self) -> JoinHandle<()> {
                self.task
            }
        }
    };
}
started!(ethwatch_execution::Running);
started!(ethwatch_consensus::Running);
started!(ethwatch_network::Running);

#[derive(Parser)]
struct Cli<A: clap::Args> {
    #[command(flatten)]
    args: A,
}

/// Parses `argv` (without the program name) as an exporter's flags, after
/// `--web.listen-address 127.0.0.1:0`.
pub fn args<A: clap::Args, S: AsRef<str>>(argv: &[S]) -> A {
    let mut all = vec!["t", "--web.listen-address", "127.0.0.1:0"];
    all.extend(argv.iter().map(AsRef::as_ref));
    ethwatch_core::config::try_parse::<Cli<A>, _, _>(all)
        .expect("args")
        .args
}

/// A running exporter; cancelled when dropped.
pub struct Exporter<R: Started> {
    running: Option<R>,
    pub token: CancellationToken,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://ADDR`.
    pub base: String,
}

impl<R: Started> Exporter<R> {
    /// Starts an exporter with `start` (the crate's `start` function) and these flags.
    pub async fn start<A, F, Fut>(args: A, start: F) -> Exporter<R>
    where
        F: FnOnce(A, CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<R>>,
    {
        ethwatch_core::upstream::install_crypto();
        let token = CancellationToken::new();
        let running = start(args, token.clone()).await.expect("start exporter");
        let addr = running.addr();
        Exporter {
            running: Some(running),
            token,
            addr,
            base: format!("http://{addr}"),
        }
    }

    /// What `start` returned (the poller or watcher for tests that inspect it).
    pub fn running(&self) -> &R {
        self.running.as_ref().expect("running")
    }

    pub async fn scrape(&self) -> Vec<Sample> {
        scrape::scrape(&self.base).await
    }

    pub async fn text(&self) -> String {
        scrape::text(&self.base).await
    }

    /// The HTTP status of `GET PATH`.
    pub async fn status(&self, path: &str) -> u16 {
        scrape::status(&self.base, path).await
    }

    /// Scrapes until `cond` holds or `secs` pass (see [`scrape::wait_for`]).
    pub async fn wait_for(
        &self,
        secs: u64,
        what: &str,
        cond: impl Fn(&[Sample]) -> bool,
    ) -> Vec<Sample> {
        scrape::wait_for(&self.base, secs, what, cond).await
    }

    /// Cancels and gives the tasks up to 10 s to drain.
    pub async fn stop(mut self) {
        self.token.cancel();
        if let Some(r) = self.running.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), r.into_task()).await;
        }
    }

    /// Cancels and asserts that every task drains within 5 s and none panicked.
    pub async fn drain(mut self) {
        self.token.cancel();
        let r = self.running.take().expect("running");
        tokio::time::timeout(Duration::from_secs(5), r.into_task())
            .await
            .expect("the exporter drains within 5 s of shutdown")
            .expect("the exporter's task did not panic");
    }
}

impl<R: Started> Drop for Exporter<R> {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// `ethwatch execution ARGS` (give it `--rpc-url`).
pub async fn execution(argv: &[&str]) -> Exporter<ethwatch_execution::Running> {
    Exporter::start(args(argv), ethwatch_execution::start).await
}

/// `ethwatch consensus --beacon-url URL ARGS`.
pub async fn consensus(beacon_url: &str, argv: &[&str]) -> Exporter<ethwatch_consensus::Running> {
    let mut all = vec!["--beacon-url", beacon_url];
    all.extend_from_slice(argv);
    Exporter::start(args(&all), ethwatch_consensus::start).await
}

/// `ethwatch network ARGS` (give it the targets).
pub async fn network(argv: &[&str]) -> Exporter<ethwatch_network::Running> {
    Exporter::start(args(argv), ethwatch_network::start).await
}
