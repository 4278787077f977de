//! Starting and stopping the server: listen at once, load models in the background, drain on
//! shutdown.

use std::sync::Arc;

use anyhow::{Context, Result};
use embedrt_runtime::{Config, Registry};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::routes::{router, AppState};

/// Serves `config` until SIGINT/SIGTERM, or until a model fails to load (an error).
///
/// The listener opens before models load, so `/health` answers at once and `/ready` tells when
/// the models are there. On shutdown, in-flight requests finish and queued inputs are answered.
pub async fn serve(config: Config) -> Result<()> {
    let listener = TcpListener::bind(config.server.http)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.http))?;
    tracing::info!(address = %listener.local_addr()?, "HTTP API listening");

    let state = Arc::new(AppState::new(crate::metrics::install()?));
    let (failed_tx, failed_rx) = oneshot::channel::<anyhow::Error>();
    let loader_state = Arc::clone(&state);
    let max_body_bytes = config.server.max_body_bytes;
    tokio::task::spawn_blocking(move || match Registry::load(&config) {
        Ok(registry) => {
            loader_state.set_registry(Arc::new(registry));
            tracing::info!("all models loaded; ready");
        }
        Err(error) => {
            let _ = failed_tx.send(error);
        }
    });

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        tokio::select! {
            _ = shutdown_signal() => { let _ = stop_tx.send(()); None }
            Ok(error) = failed_rx => { let _ = stop_tx.send(()); Some(error) }
        }
    });
    axum::serve(listener, router(Arc::clone(&state), max_body_bytes))
        .with_graceful_shutdown(async {
            let _ = stop_rx.await;
        })
        .await?;
    tracing::info!("HTTP API stopped; draining engines");
    // The last reference to the models goes here: their queues drain and their engines stop.
    drop(state);
    match watcher.await? {
        Some(error) => Err(error.context("loading models failed")),
        None => Ok(()),
    }
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
