//! The HTTP routes and their handlers.

use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use embedrt_runtime::config::ServerConfig;
use embedrt_runtime::Registry;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::openai::{parse_request, write_response};
use crate::server::ConfigSource;

/// What every handler shares: the models (swapped whole on reload), the metrics, and where the
/// configuration comes from.
pub struct AppState {
    registry: RwLock<Option<Arc<Registry>>>,
    metrics: PrometheusHandle,
    /// The config file, read again on reload.
    pub source: ConfigSource,
    admin_key: Option<String>,
    sticky_header: Option<HeaderName>,
    /// Reloads run one at a time.
    pub reload_lock: tokio::sync::Mutex<()>,
}

impl AppState {
    /// State that renders `/metrics` with `metrics` and reloads from `source`; models come later.
    /// `server` gives the admin key and the sticky header.
    pub fn new(
        metrics: PrometheusHandle,
        source: ConfigSource,
        server: &ServerConfig,
    ) -> anyhow::Result<Self> {
        let sticky_header = server
            .sticky_header
            .as_deref()
            .map(|name| HeaderName::try_from(name.to_ascii_lowercase()))
            .transpose()
            .map_err(|e| anyhow::anyhow!("`server.sticky_header`: {e}"))?;
        Ok(Self {
            registry: RwLock::new(None),
            metrics,
            source,
            admin_key: server.admin_key.clone(),
            sticky_header,
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

    /// The models serving now, or a 503 while they load.
    fn registry(&self) -> Result<Arc<Registry>, ApiError> {
        self.current_registry().ok_or_else(ApiError::loading)
    }
}

/// The API's router; request bodies over `max_body_bytes` get 413.
pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(admin_reload))
        .fallback(|| async { ApiError::no_route() })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // A bug in a handler answers 500 in the API's format instead of dropping the connection.
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("the request handler failed").into_response()
        }))
        .with_state(state)
}

/// `POST /v1/embeddings`.
async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| ApiError {
        status: rejection.status(),
        message: rejection.body_text(),
        code: if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "invalid_body"
        },
        ..ApiError::bad_request(None, "", "")
    })?;
    let registry = state.registry()?;
    let mut names = registry.models().map(|m| m.name());
    let only_model = match (names.next(), names.next()) {
        (Some(name), None) => Some(name),
        _ => None,
    };
    let mut parsed = parse_request(&body, only_model)?;
    if parsed.request.user.is_none() {
        let sticky = state
            .sticky_header
            .as_ref()
            .and_then(|name| headers.get(name));
        parsed.request.user = sticky
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
    }
    let response = registry.embed(parsed.request).await?;
    let headers = [
        (VARIANT_HEADER, header_value(&response.variant)),
        (BACKEND_HEADER, header_value(&response.engine)),
    ];
    Ok((headers, Json(write_response(response, parsed.encoding))).into_response())
}

/// The response header naming the variant that answered.
const VARIANT_HEADER: HeaderName = HeaderName::from_static("x-embedrt-variant");
/// The response header naming that variant's engine.
const BACKEND_HEADER: HeaderName = HeaderName::from_static("x-embedrt-backend");

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("invalid"))
}

/// `GET /v1/models`: OpenAI's model list, with each model's engine and limits.
async fn models(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let data: Vec<_> = state
        .registry()?
        .models()
        .map(|model| {
            let variants: Vec<_> = model
                .variants()
                .iter()
                .map(|v| {
                    json!({ "name": v.name(), "backend": v.engine(), "weight": v.weight(), "shadow": v.shadow_rate().is_some() })
                })
                .collect();
            let card = model.card();
            let dimensions =
                if card.matryoshka_dimensions.is_empty() { vec![card.hidden_size] } else { card.matryoshka_dimensions.clone() };
            json!({
                "id": model.name(),
                "object": "model",
                "created": 0,
                "owned_by": "embedrt",
                "aliases": model.aliases(),
                "backend": model.variants()[0].engine(),
                "variants": variants,
                "tasks": card.tasks,
                "dimensions": card.hidden_size,
                "matryoshka_dimensions": dimensions,
                "max_tokens": model.max_tokens(),
            })
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })).into_response())
}

/// `POST /admin/reload`: reads the config file again and swaps the models in (see
/// [`crate::server::reload`]); needs `Authorization: Bearer <admin_key>` when one is configured.
async fn admin_reload(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(key) = &state.admin_key {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return Err(ApiError::unauthorized());
        }
    }
    match crate::server::reload(&state).await {
        Ok(report) => Ok(Json(json!({ "status": "reloaded", "loaded": report.loaded, "kept": report.kept, "removed": report.removed })).into_response()),
        Err(error) => {
            tracing::error!("reload failed; the running configuration is unchanged: {error:#}");
            Err(ApiError::bad_request(
                None,
                "reload_failed",
                format!("reload failed, the running configuration is unchanged: {error:#}"),
            ))
        }
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let content_type = [(
        axum::http::header::CONTENT_TYPE,
        "text/plain; version=0.0.4",
    )];
    (content_type, state.metrics.render()).into_response()
}

/// `GET /health`: the process is up.
async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /ready`: 200 once every model is loaded, warmed up and healthy, else 503.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.current_registry() {
        Some(registry) => {
            let unhealthy: Vec<&str> = registry
                .models()
                .filter(|m| !m.is_healthy())
                .map(|m| m.name())
                .collect();
            if unhealthy.is_empty() {
                Json(json!({ "status": "ready" })).into_response()
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({ "status": "unhealthy", "models": unhealthy })),
                )
                    .into_response()
            }
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "loading" })),
        )
            .into_response(),
    }
}
