//! What the HTTP and gRPC front ends share: the served models (swapped whole on reload), the
//! metrics, the configuration's source, and the access rules.

use std::sync::{Arc, RwLock};

use embedrt_runtime::config::ServerConfig;
use embedrt_runtime::{EmbedError, Registry};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::server::ConfigSource;

/// The state behind both APIs.
pub struct AppState {
    registry: RwLock<Option<Arc<Registry>>>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The config file, read again on reload.
    pub source: ConfigSource,
    admin_key: Option<String>,
    api_keys: Vec<String>,
    sticky_header: Option<String>,
    /// Reloads run one at a time.
    pub reload_lock: tokio::sync::Mutex<()>,
}

impl AppState {
    /// State that renders `/metrics` with `metrics` and reloads from `source`; models come later.
    /// `server` gives the keys and the sticky header.
    pub fn new(
        metrics: PrometheusHandle,
        source: ConfigSource,
        server: &ServerConfig,
    ) -> anyhow::Result<Self> {
        if let Some(name) = &server.sticky_header {
            axum::http::HeaderName::try_from(name.to_ascii_lowercase())
                .map_err(|e| anyhow::anyhow!("`server.sticky_header`: {e}"))?;
        }
        Ok(Self {
            registry: RwLock::new(None),
            metrics,
            source,
            admin_key: server.admin_key.clone(),
            api_keys: server.api_keys.clone(),
            sticky_header: server
                .sticky_header
                .as_ref()
                .map(|h| h.to_ascii_lowercase()),
            reload_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Publishes a set of models; new requests are served from it from now on.
    pub fn set_registry(&self, registry: Arc<Registry>) {
        *self.registry.write().unwrap_or_else(|p| p.into_inner()) = Some(registry);
    }

    /// The models serving now, if loaded.
    pub fn current_registry(&self) -> Option<Arc<Registry>> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The models serving now, or [`EmbedError::Unavailable`] while they load.
    pub fn registry(&self) -> Result<Arc<Registry>, EmbedError> {
        self.current_registry()
            .ok_or_else(|| EmbedError::Unavailable("models are still loading".into()))
    }

    /// Whether an `Authorization` value may use the embedding API: any value when no API keys are
    /// configured, else `Bearer <key>` with one of them.
    pub fn accepts_api_key(&self, authorization: Option<&str>) -> bool {
        self.api_keys.is_empty()
            || bearer(authorization).is_some_and(|given| self.api_keys.iter().any(|k| k == given))
    }

    /// Whether an `Authorization` value may use the admin endpoints: any value when no admin key
    /// is configured, else `Bearer <admin_key>`.
    pub fn accepts_admin_key(&self, authorization: Option<&str>) -> bool {
        match &self.admin_key {
            None => true,
            Some(key) => bearer(authorization) == Some(key.as_str()),
        }
    }

    /// The lower-case name of the header (or gRPC metadata key) whose value keeps a caller on one
    /// variant when the request has no `user`.
    pub fn sticky_header(&self) -> Option<&str> {
        self.sticky_header.as_deref()
    }
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer(authorization: Option<&str>) -> Option<&str> {
    authorization?.strip_prefix("Bearer ")
}
