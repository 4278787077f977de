//! Reloading the configuration without a restart, on SIGHUP or `POST /admin/reload`.

use std::sync::Arc;

use anyhow::{Context, Result};
use embedrt_runtime::ReloadReport;

use crate::state::AppState;

/// Reads the config file again and swaps in a registry built from it: unchanged models keep
/// serving from their instances, new and changed ones are loaded and warmed up first. Requests
/// already running finish on the old registry. (`[server]` settings other than the models' need
/// a restart.)
///
/// # Errors
///
/// When the file is invalid, the models are still loading, or a model fails to load; the running
/// configuration then stays.
pub async fn reload(state: &Arc<AppState>) -> Result<ReloadReport> {
    let _one_at_a_time = state.reload_lock.lock().await;
    let plan = state.source.read()?;
    let current = state
        .current_registry()
        .context("models are still loading")?;
    let (next, report) = tokio::task::spawn_blocking(move || current.reload(&plan)).await??;
    state.set_registry(Arc::new(next));
    tracing::info!(loaded = ?report.loaded, kept = ?report.kept, removed = ?report.removed, "configuration reloaded");
    Ok(report)
}

/// Reloads on every SIGHUP (on Unix), logging failures.
pub fn on_sighup(state: Arc<AppState>) {
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
