//! Running the server: listen at once (HTTP, and gRPC when configured), load models in the
//! background, reload on SIGHUP, drain both front ends on shutdown. Nothing else in the crate
//! depends on this module.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use embedrt_runtime::config::Plan;
use embedrt_runtime::Registry;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::config_source::ConfigSource;
use crate::state::AppState;

/// Serves `plan` (read from `source`) until SIGINT/SIGTERM, or until a model fails to load at
/// startup (an error).
///
/// The listeners open before models load, so `/health` answers at once and `/ready` (or gRPC
/// health) tells when the models are there. On shutdown, both front ends stop accepting,
/// in-flight requests finish and queued inputs are answered.
///
/// # Errors
///
/// When a listener cannot be bound, the metrics exporter cannot be installed, a model fails to
/// load at startup, or a server fails.
pub async fn serve(source: ConfigSource, plan: Plan) -> Result<()> {
    let listeners = plan.server.listeners;
    let http_listener = bind(listeners.http, "HTTP API").await?;
    let grpc_listener = match listeners.grpc {
        Some(address) => Some(bind(address, "gRPC API").await?),
        None => None,
    };
    let limits = plan.server.limits;
    let connections = plan.server.connections;
    let drain_delay = plan.server.drain_delay;
    let state = Arc::new(AppState::new(
        crate::metrics::install()?,
        source,
        &plan.server,
    ));
    let (failed_tx, failed_rx) = oneshot::channel::<anyhow::Error>();
    let loader_state = Arc::clone(&state);
    tokio::task::spawn_blocking(move || match Registry::load(&plan) {
        Ok(registry) => {
            loader_state.set_registry(Arc::new(registry));
            tracing::info!("all models loaded; ready");
        }
        Err(error) => {
            let _ = failed_tx.send(error);
        }
    });
    crate::reload::on_sighup(Arc::clone(&state));

    let (stop_tx, stop_rx) = watch::channel(false);
    let watcher_state = Arc::clone(&state);
    let watcher = tokio::spawn(async move {
        let failure = tokio::select! {
            _ = crate::shutdown::signal() => None,
            Ok(error) = failed_rx => Some(error),
        };
        if failure.is_none() {
            // Say "not ready" first and keep serving a while, so balancers stop sending before
            // the listeners close.
            watcher_state.begin_draining();
            tracing::info!(
                seconds = drain_delay.as_secs_f32(),
                "shutting down: draining"
            );
            tokio::time::sleep(drain_delay).await;
        }
        let _ = stop_tx.send(true);
        failure
    });
    let router = crate::http::router(Arc::clone(&state), limits.max_body_bytes);
    let http = crate::http::connections::serve(
        http_listener,
        router,
        connections,
        crate::shutdown::until_stopped(stop_rx.clone()),
    );
    let grpc = async {
        match grpc_listener {
            Some(listener) => {
                crate::grpc::serve(listener, Arc::clone(&state), limits, stop_rx).await
            }
            None => Ok(()),
        }
    };
    tokio::try_join!(
        async {
            http.await;
            Ok(())
        },
        grpc
    )?;
    tracing::info!("APIs stopped; draining backends");
    // Dropping the models never blocks: each queue drains on its own inference thread, and
    // `embedrt_runtime::scheduler::join_stopped` (called by `main` once the runtime is gone)
    // waits for them.
    drop(state);
    match watcher.await? {
        Some(error) => Err(error.context("loading models failed")),
        None => Ok(()),
    }
}

async fn bind(address: SocketAddr, what: &str) -> Result<TcpListener> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("{what}: cannot listen on {address}"))?;
    tracing::info!(address = %listener.local_addr()?, "{what} listening");
    Ok(listener)
}
