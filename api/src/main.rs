//! The `embedrt` command: `embedrt serve --config FILE`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use embedrt_api::config_source::ConfigSource;

/// embedrt: one server for many text-embedding models on interchangeable backends (inference engines).
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the models of a config file over HTTP and gRPC (SIGHUP reloads the file).
    Serve {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Listen here instead of the config's `[server] http`.
        #[arg(long)]
        http: Option<SocketAddr>,
        /// Serve gRPC here (instead of the config's `[server] grpc`).
        #[arg(long)]
        grpc: Option<SocketAddr>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let Command::Serve { config, http, grpc } = cli.command;
    let source = ConfigSource {
        path: config,
        http,
        grpc,
    };
    let plan = source.read()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.server.async_threads)
        .thread_name("embedrt-io")
        .enable_all()
        .build()?;
    let served = runtime.block_on(embedrt_api::server::serve(source, plan));
    // Every task, and the models they held, is gone with the runtime; wait until each model's
    // queue is answered and its backend dropped.
    drop(runtime);
    embedrt_runtime::scheduler::join_stopped();
    served
}
