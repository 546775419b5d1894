//! `ethwatch`: one binary for every exporter (one small image for every sidecar).
//!
//! This file only wires configuration, logging, shutdown and the chosen exporter; everything
//! testable lives in the library crates.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use ethwatch_core::config::merge_config_file;

#[derive(Debug, Parser)]
#[command(
    name = "ethwatch",
    version,
    about = "Prometheus exporters for Ethereum nodes",
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Export an execution node's head, block rate, sync, peers, txpool and RPC latency.
    Execution(ethwatch_execution::ExecutionArgs),
    /// Export a beacon node's head (live from its event stream), missed slots, finality, sync,
    /// peers and validators.
    Consensus(ethwatch_consensus::ConsensusArgs),
    /// Watch every node of an enclave (Kubernetes pods or a static list) and tell whether they
    /// agree on the chain.
    Network(ethwatch_network::NetworkArgs),
}

fn main() -> ExitCode {
    let args = match merge_config_file(&Cli::command(), std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Execution(args) => {
            let common = args.common.clone();
            serve(&common, "execution", |shutdown| async move {
                Ok(ethwatch_execution::start(args, shutdown).await?.task)
            })
            .await
        }
        Command::Consensus(args) => {
            let common = args.common.clone();
            serve(&common, "consensus", |shutdown| async move {
                Ok(ethwatch_consensus::start(args, shutdown).await?.task)
            })
            .await
        }
        Command::Network(args) => {
            let common = args.common.clone();
            serve(&common, "network", |shutdown| async move {
                Ok(ethwatch_network::start(args, shutdown).await?.task)
            })
            .await
        }
    }
}

/// Sets up logging and traces for `exporter`, starts it, and waits until a signal has drained
/// every task; then flushes the traces still queued.
async fn serve<F, Fut>(
    common: &ethwatch_core::config::CommonArgs,
    exporter: &str,
    start: F,
) -> anyhow::Result<()>
where
    F: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<tokio::task::JoinHandle<()>>>,
{
    let traces = ethwatch_core::telemetry::setup(common, exporter)?;
    let shutdown = ethwatch_core::shutdown::on_signal();
    let task = start(shutdown.clone()).await?;
    // The HTTP server closes what is left after --web.shutdown-timeout; the pollers stop at
    // their next await. Should anything still hang, the process exits anyway shortly after, so
    // Kubernetes never waits out the grace period.
    let grace = common.shutdown_timeout + std::time::Duration::from_secs(2);
    tokio::select! {
        r = task => r?,
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "tasks did not drain in time after the shutdown signal; exiting");
        }
    }
    if let Some(t) = traces {
        t.flush(std::time::Duration::from_secs(2)).await;
    }
    tracing::info!("stopped");
    Ok(())
}
