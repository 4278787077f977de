//! The `embedrt` command: `embedrt serve --config FILE`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use embedrt_api::config_source::ConfigSource;

// One allocator for the whole process: with its unprefixed `malloc`, jemalloc also serves the
// allocations of the plugins and of ONNX Runtime, and returns a burst's pages to the system within
// seconds, where glibc keeps them (BENCHMARKS.md, "Memory after a burst").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its first allocation (`MALLOC_CONF` in the environment adds to
/// them): freed pages, those of a batch's large activations included (no `oversize_threshold`
/// arena, which hands them back at once), are kept a second for the next batch to reuse, then
/// handed back by jemalloc's background thread, also while the server is idle. Handing them back
/// at once cost 8% of the throughput of 10-sentence requests in page faults (BENCHMARKS.md,
/// "Memory after a burst").
#[cfg(feature = "jemalloc")]
#[no_mangle]
#[allow(non_upper_case_globals)]
static malloc_conf: JemallocConf = JemallocConf(
    c"background_thread:true,oversize_threshold:0,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr(),
);

/// A C string for jemalloc to read (`const char *malloc_conf`).
#[cfg(feature = "jemalloc")]
#[repr(transparent)]
struct JemallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a string literal, which nothing writes.
#[cfg(feature = "jemalloc")]
unsafe impl Sync for JemallocConf {}

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Starts a thread that hands glibc's free memory back to the system every second in the
/// `glibc-trim` build (measured against the other allocators); does nothing in the others.
fn trim_memory_every_second() {
    #[cfg(all(
        feature = "glibc-trim",
        not(any(feature = "jemalloc", feature = "mimalloc"))
    ))]
    std::thread::Builder::new()
        .name("embedrt-trim".into())
        .spawn(|| loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            // SAFETY: malloc_trim only returns free pages of glibc's heaps to the system.
            unsafe { libc::malloc_trim(0) };
        })
        .expect("a thread can be started at startup");
}

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
    trim_memory_every_second();
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
