//! Starting, reloading and stopping the server: listen at once (HTTP, and gRPC when configured),
//! load models in the background, reload the config file on SIGHUP or `POST /admin/reload`,
//! drain both front ends on shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use embedrt_runtime::{Config, Registry, ReloadReport};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::grpc::MessageLimits;
use crate::routes::router;
use crate::state::AppState;

/// Where the configuration comes from, so that it can be read again.
#[derive(Clone, Debug)]
pub struct ConfigSource {
    /// The TOML file.
    pub path: PathBuf,
    /// `--http`: overrides the file's `[server] http`.
    pub http: Option<SocketAddr>,
    /// `--grpc`: overrides (or sets) the file's `[server] grpc`.
    pub grpc: Option<SocketAddr>,
}

impl ConfigSource {
    /// Reads and checks the file, with the command line's overrides and the default plugin folder
    /// (the one the `embedrt` executable is in).
    pub fn read(&self) -> Result<Config> {
        let mut config = Config::from_file(&self.path)?;
        if let Some(http) = self.http {
            config.server.http = http;
        }
        if let Some(grpc) = self.grpc {
            config.server.grpc = Some(grpc);
        }
        if config.server.plugin_dirs.is_empty() {
            let exe = std::env::current_exe().context("cannot locate the embedrt executable")?;
            config
                .server
                .plugin_dirs
                .extend(exe.parent().map(PathBuf::from));
        }
        Ok(config)
    }
}

/// Serves `config` (read from `source`) until SIGINT/SIGTERM, or until a model fails to load at
/// startup (an error).
///
/// The listeners open before models load, so `/health` answers at once and `/ready` (or gRPC
/// health) tells when the models are there. On shutdown, both front ends stop accepting,
/// in-flight requests finish and queued inputs are answered.
pub async fn serve(source: ConfigSource, config: Config) -> Result<()> {
    let http_listener = bind(config.server.http, "HTTP API").await?;
    let grpc_listener = match config.server.grpc {
        Some(address) => Some(bind(address, "gRPC API").await?),
        None => None,
    };
    let max_body_bytes = config.server.max_body_bytes;
    let grpc_limits = MessageLimits {
        request_bytes: config.server.grpc_max_request_bytes,
        response_bytes: config.server.grpc_max_response_bytes,
    };
    let state = Arc::new(AppState::new(
        crate::metrics::install()?,
        source,
        &config.server,
    )?);
    let (failed_tx, failed_rx) = oneshot::channel::<anyhow::Error>();
    let loader_state = Arc::clone(&state);
    tokio::task::spawn_blocking(move || match Registry::load(&config) {
        Ok(registry) => {
            loader_state.set_registry(Arc::new(registry));
            tracing::info!("all models loaded; ready");
        }
        Err(error) => {
            let _ = failed_tx.send(error);
        }
    });
    spawn_reload_on_sighup(Arc::clone(&state));

    let (stop_tx, stop_rx) = watch::channel(false);
    let watcher = tokio::spawn(async move {
        let failure = tokio::select! {
            _ = shutdown_signal() => None,
            Ok(error) = failed_rx => Some(error),
        };
        let _ = stop_tx.send(true);
        failure
    });
    let http = axum::serve(http_listener, router(Arc::clone(&state), max_body_bytes))
        .with_graceful_shutdown(until_stopped(stop_rx.clone()));
    let grpc = async {
        match grpc_listener {
            Some(listener) => {
                crate::grpc::serve(listener, Arc::clone(&state), grpc_limits, stop_rx).await
            }
            None => Ok(()),
        }
    };
    tokio::try_join!(async { http.await.map_err(anyhow::Error::from) }, grpc)?;
    tracing::info!("APIs stopped; draining engines");
    // The last reference to the models goes here: their queues drain and their engines stop.
    drop(state);
    match watcher.await? {
        Some(error) => Err(error.context("loading models failed")),
        None => Ok(()),
    }
}

/// Returns once `stop` turns true (or its sender is gone).
pub(crate) async fn until_stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|&stop| stop).await;
}

async fn bind(address: SocketAddr, what: &str) -> Result<TcpListener> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("{what}: cannot listen on {address}"))?;
    tracing::info!(address = %listener.local_addr()?, "{what} listening");
    Ok(listener)
}

/// Reads the config file again and swaps in a registry built from it: unchanged models keep
/// serving from their instances, new and changed ones are loaded and warmed up first. Requests
/// already running finish on the old registry. On any error the running configuration stays.
/// (`[server]` settings other than the models' need a restart.)
pub async fn reload(state: &Arc<AppState>) -> Result<ReloadReport> {
    let _one_at_a_time = state.reload_lock.lock().await;
    let config = state.source.read()?;
    let current = state
        .current_registry()
        .context("models are still loading")?;
    let (next, report) = tokio::task::spawn_blocking(move || current.reload(&config)).await??;
    state.set_registry(Arc::new(next));
    tracing::info!(loaded = ?report.loaded, kept = ?report.kept, removed = ?report.removed, "configuration reloaded");
    Ok(report)
}

fn spawn_reload_on_sighup(state: Arc<AppState>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /admin/reload");
            return;
        };
        while hangups.recv().await.is_some() {
            if let Err(error) = reload(&state).await {
                tracing::error!(
                    "reload on SIGHUP failed; the running configuration is unchanged: {error:#}"
                );
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
