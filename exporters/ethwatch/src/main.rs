//! `ethwatch`: one binary for every exporter (one small image for every sidecar).
//!
//! This file only wires configuration, logging, shutdown and the chosen exporter; everything
//! testable lives in the library crates.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use ethwatch_core::config::{env_twins, merge_config_file, try_parse};

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
    let cmd = env_twins(Cli::command());
    let args = match merge_config_file(&cmd, std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli: Cli = try_parse(args).unwrap_or_else(|e| e.exit());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag of every subcommand has an environment twin, named by the one rule unless its
    /// `#[arg]` names another variable.
    #[test]
    fn every_flag_has_an_environment_twin() {
        let mut cmd = env_twins(Cli::command());
        cmd.build();
        let mut derived = 0;
        for sub in cmd.get_subcommands() {
            for a in sub.get_arguments() {
                let Some(long) = a.get_long() else { continue };
                if matches!(
                    a.get_action(),
                    clap::ArgAction::Help | clap::ArgAction::Version
                ) {
                    continue;
                }
                let env = a
                    .get_env()
                    .unwrap_or_else(|| panic!("--{long} has no twin"));
                if env == ethwatch_core::config::env_twin(long).as_str() {
                    derived += 1;
                }
            }
        }
        assert!(derived > 50, "{derived}");
        let exec = cmd.find_subcommand("execution").expect("execution");
        let env = |long: &str| {
            exec.get_arguments()
                .find(|a| a.get_long() == Some(long))
                .and_then(|a| a.get_env())
                .map(|e| e.to_string_lossy().into_owned())
        };
        assert_eq!(
            env("max-backfill").as_deref(),
            Some("ETHWATCH_MAX_BACKFILL")
        );
        assert_eq!(
            env("web.listen-address").as_deref(),
            Some("ETHWATCH_WEB_LISTEN_ADDRESS")
        );
        assert_eq!(
            env("otel.endpoint").as_deref(),
            Some("OTEL_EXPORTER_OTLP_ENDPOINT")
        );
    }
}
