//! What the HTTP and gRPC front ends share: the served models (swapped whole on reload), the
//! metrics, the configuration's source, and the rules both apply the same way: API and admin
//! keys, the sticky-user key, and readiness.
//!
//! Both front ends read their callers' headers as an [`http::HeaderMap`](axum::http::HeaderMap)
//! (gRPC metadata is one underneath), so each rule is written once, here.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::{header, HeaderMap};
use embedrt_runtime::config::{AdminAccess, ServerPlan};
use embedrt_runtime::{EmbedError, Registry};
use metrics_exporter_prometheus::PrometheusHandle;
use subtle::ConstantTimeEq;

use crate::admission::Admission;
use crate::config_source::ConfigSource;

/// The state behind both APIs.
pub struct AppState {
    registry: RwLock<Option<Arc<Registry>>>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The config file, read again on reload.
    pub source: ConfigSource,
    admin: AdminAccess,
    api_keys: Vec<String>,
    sticky_header: Option<String>,
    /// Reloads run one at a time.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// Set when shutdown begins: readiness says so, so balancers stop sending.
    draining: AtomicBool,
    /// `[server] request_timeout_ms`, when not 0.
    request_timeout: Option<Duration>,
    /// Room for requests in flight, shared by both front ends.
    pub admission: Admission,
}

/// A request ran past its deadline, which was this long.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the request did not complete within its deadline of {} ms (`[server] request_timeout_ms`, \
     or the call's own deadline when shorter)",
    .0.as_millis()
)]
pub struct DeadlineExceeded(pub Duration);

/// Why a caller may not use the admin endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminRefusal {
    /// The endpoint is off (`admin = "off"`).
    Off,
    /// The admin key is missing or wrong.
    WrongKey,
}

/// Whether the server can answer embedding requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// The models are still loading.
    Loading,
    /// The server is shutting down: it still answers, but wants no new work.
    Draining,
    /// Every model is loaded, warmed up and healthy.
    Ready,
    /// These models' backends failed; the others serve.
    Unhealthy(Vec<String>),
}

impl AppState {
    /// State that renders `/metrics` with `metrics` and reloads from `source`; models come later.
    /// `server` gives the keys and the sticky header.
    pub fn new(metrics: PrometheusHandle, source: ConfigSource, server: &ServerPlan) -> Self {
        Self {
            registry: RwLock::new(None),
            metrics,
            source,
            admin: server.access.admin.clone(),
            api_keys: server.access.api_keys.clone(),
            sticky_header: server.sticky_header.clone(),
            reload_lock: tokio::sync::Mutex::new(()),
            draining: AtomicBool::new(false),
            request_timeout: server.request_timeout,
            admission: Admission::new(server.admission),
        }
    }

    /// Runs `work` within the request's deadline: `[server] request_timeout_ms`, or `asked` (the
    /// caller's own, a gRPC `grpc-timeout`) when that is shorter.
    ///
    /// # Errors
    ///
    /// [`DeadlineExceeded`] when `work` runs past it; `work` is dropped then, and with it the
    /// request's queued inputs.
    pub async fn within_deadline<T>(
        &self,
        asked: Option<Duration>,
        work: impl Future<Output = T>,
    ) -> Result<T, DeadlineExceeded> {
        let Some(deadline) = [self.request_timeout, asked].into_iter().flatten().min() else {
            return Ok(work.await);
        };
        tokio::time::timeout(deadline, work)
            .await
            .map_err(|_| DeadlineExceeded(deadline))
    }

    /// Marks the server as shutting down: from now on readiness is [`Readiness::Draining`].
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
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

    /// The models serving now.
    ///
    /// # Errors
    ///
    /// [`EmbedError::Unavailable`] while they load.
    pub fn registry(&self) -> Result<Arc<Registry>, EmbedError> {
        self.current_registry()
            .ok_or_else(|| EmbedError::Unavailable("models are still loading".into()))
    }

    /// Whether the server can answer, and which models cannot.
    pub fn readiness(&self) -> Readiness {
        if self.draining.load(Ordering::Relaxed) {
            return Readiness::Draining;
        }
        let Some(registry) = self.current_registry() else {
            return Readiness::Loading;
        };
        let unhealthy: Vec<String> = registry
            .models()
            .filter(|m| !m.is_healthy())
            .map(|m| m.name().to_string())
            .collect();
        if unhealthy.is_empty() {
            Readiness::Ready
        } else {
            Readiness::Unhealthy(unhealthy)
        }
    }

    /// Whether the embedding API asks callers for an API key (some are configured).
    pub fn needs_api_key(&self) -> bool {
        !self.api_keys.is_empty()
    }

    /// Whether the admin endpoint asks for the admin key (one is configured and it is not off).
    pub fn needs_admin_key(&self) -> bool {
        matches!(self.admin, AdminAccess::Key(_))
    }

    /// Whether a caller with `headers` may use the embedding API: anyone when no API keys are
    /// configured, else `Authorization: Bearer <key>` with one of them. Every key is compared,
    /// each in constant time, so the time taken says nothing about how much of one matched.
    pub fn accepts_api_key(&self, headers: &HeaderMap) -> bool {
        if !self.needs_api_key() {
            return true;
        }
        let Some(given) = bearer(headers) else {
            return false;
        };
        let matched = self
            .api_keys
            .iter()
            .fold(subtle::Choice::from(0), |matched, key| {
                matched | key.as_bytes().ct_eq(given.as_bytes())
            });
        matched.into()
    }

    /// Whether a caller with `headers` may use the admin endpoint, as the plan's
    /// [`AdminAccess`] says; the key is compared in constant time.
    ///
    /// # Errors
    ///
    /// [`AdminRefusal::Off`] when the endpoint is off, [`AdminRefusal::WrongKey`] without the
    /// right `Authorization: Bearer <admin_key>`.
    pub fn check_admin(&self, headers: &HeaderMap) -> Result<(), AdminRefusal> {
        match &self.admin {
            AdminAccess::Open => Ok(()),
            AdminAccess::Off => Err(AdminRefusal::Off),
            AdminAccess::Key(key) => {
                let given = bearer(headers).unwrap_or_default();
                if bool::from(key.as_bytes().ct_eq(given.as_bytes())) {
                    Ok(())
                } else {
                    Err(AdminRefusal::WrongKey)
                }
            }
        }
    }

    /// The user key that picks a caller's variant: the request's own `user`, else the value of
    /// the configured sticky header (or gRPC metadata key) in `headers`.
    pub fn user(&self, user: Option<String>, headers: &HeaderMap) -> Option<String> {
        user.or_else(|| {
            let value = headers.get(self.sticky_header.as_deref()?)?;
            value.to_str().ok().map(str::to_string)
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}
