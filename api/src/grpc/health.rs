//! `grpc.health.v1` statuses kept in step with the models: the whole server (service `""` and
//! `embedrt.v1.Embedder`) serves once every model is loaded and healthy; each model name is a
//! service of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::shutdown::until_stopped;
use crate::state::{AppState, Readiness};

/// How often model health is read.
const POLL: Duration = Duration::from_millis(250);

/// The service name of the embedding API.
const EMBEDDER: &str = "embedrt.v1.Embedder";

/// Publishes the current statuses, then keeps them current in the background until `shutdown`
/// turns true, when every service turns NOT_SERVING.
pub async fn track(
    state: Arc<AppState>,
    reporter: HealthReporter,
    shutdown: watch::Receiver<bool>,
) {
    let mut published = Published {
        reporter,
        statuses: HashMap::new(),
    };
    published.update(current(&state)).await;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = every.tick() => published.update(current(&state)).await,
                _ = until_stopped(shutdown.clone()) => break,
            }
        }
        let stopped = published
            .statuses
            .keys()
            .map(|name| (name.clone(), ServingStatus::NotServing))
            .collect();
        published.update(stopped).await;
    });
}

/// Every service's status as the models stand now: the whole server's by its readiness, each
/// model's by its own health.
fn current(state: &AppState) -> HashMap<String, ServingStatus> {
    let serving = |yes: bool| {
        if yes {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    };
    let mut statuses: HashMap<String, ServingStatus> = state
        .current_registry()
        .iter()
        .flat_map(|registry| registry.models())
        .map(|model| (model.name().to_string(), serving(model.is_healthy())))
        .collect();
    let whole = serving(state.readiness() == Readiness::Ready);
    statuses.insert(String::new(), whole);
    statuses.insert(EMBEDDER.to_string(), whole);
    statuses
}

/// The statuses the health service reports, changed only where they differ (so watchers hear
/// of changes, not of polls).
struct Published {
    reporter: HealthReporter,
    statuses: HashMap<String, ServingStatus>,
}

impl Published {
    async fn update(&mut self, next: HashMap<String, ServingStatus>) {
        for (name, &status) in &next {
            if self.statuses.get(name) != Some(&status) {
                self.reporter.set_service_status(name, status).await;
            }
        }
        for name in self
            .statuses
            .keys()
            .filter(|name| !next.contains_key(*name))
        {
            self.reporter.clear_service_status(name).await;
        }
        self.statuses = next;
    }
}
