//! The operational routes: liveness, readiness, metrics and reload.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::ApiError;
use crate::reload::reload;
use crate::state::{AdminRefusal, AppState, Readiness};

/// `GET /health`: the process is up.
pub(super) async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /ready`: 200 once every model is loaded, warmed up and healthy, else 503 (also while
/// shutting down).
pub(super) async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.readiness() {
        Readiness::Ready => Json(json!({ "status": "ready" })).into_response(),
        Readiness::Loading => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "loading" })),
        )
            .into_response(),
        Readiness::Draining => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        )
            .into_response(),
        Readiness::Unhealthy(models) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unhealthy", "models": models })),
        )
            .into_response(),
    }
}

/// `GET /metrics`: Prometheus text format.
pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let content_type = [(
        axum::http::header::CONTENT_TYPE,
        "text/plain; version=0.0.4",
    )];
    if let Some(registry) = state.current_registry() {
        registry.record_gauges();
    }
    (content_type, state.metrics.render()).into_response()
}

/// `POST /admin/reload`: reads the config file again and swaps the models in (see
/// [`reload`]); needs `Authorization: Bearer <admin_key>` when one is configured, and is
/// refused when the endpoint is off.
pub(super) async fn admin_reload(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match state.check_admin(&headers) {
        Ok(()) => {}
        Err(AdminRefusal::WrongKey) => return Err(ApiError::unauthorized()),
        Err(AdminRefusal::Off) => return Err(ApiError::admin_off()),
    }
    match reload(&state).await {
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
