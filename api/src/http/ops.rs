//! The operational routes: liveness, readiness, metrics and reload.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use crate::reload::reload;
use crate::state::{AdminRefusal, AppState, Readiness};

/// `GET /health`: the process is up.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "operations",
    summary = "Says the process is up",
    responses((status = 200, description = "Up", body = Status)),
)]
pub(super) async fn health() -> Json<Status> {
    Json(Status {
        status: "ok",
        models: None,
    })
}

/// The answer of `/health` and `/ready`.
#[derive(Serialize, ToSchema)]
pub(super) struct Status {
    /// `ok` (`/health`); `ready`, `loading`, `draining` or `unhealthy` (`/ready`).
    #[schema(example = "ready")]
    status: &'static str,
    /// The models whose backends failed, when `unhealthy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    models: Option<Vec<String>>,
}

/// `GET /ready`: 200 once every model is loaded, warmed up and healthy, else 503 (also while
/// shutting down).
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "ready",
    tag = "operations",
    summary = "Says whether the server takes requests",
    responses(
        (status = 200, description = "Every model is loaded and healthy", body = Status),
        (
            status = 503,
            description = "Loading, draining (shutting down), or a backend failed",
            body = Status
        ),
    ),
)]
pub(super) async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let (status, models) = match state.readiness() {
        Readiness::Ready => {
            return Json(Status {
                status: "ready",
                models: None,
            })
            .into_response()
        }
        Readiness::Loading => ("loading", None),
        Readiness::Draining => ("draining", None),
        Readiness::Unhealthy(models) => ("unhealthy", Some(models)),
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(Status { status, models }),
    )
        .into_response()
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    responses((
        status = 200,
        description = "Prometheus' text format",
        body = String,
        content_type = "text/plain"
    )),
)]
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
#[utoipa::path(
    post,
    path = "/admin/reload",
    operation_id = "reload",
    tag = "operations",
    summary = "Reads the config file again and swaps the models in",
    responses(
        (status = 200, description = "Reloaded", body = Reloaded),
        (
            status = 400,
            description = "The new configuration failed; the running one is unchanged",
            body = ErrorBody
        ),
        (status = 401, description = "The admin key is missing or wrong", body = ErrorBody),
        (status = 403, description = "The admin endpoint is off", body = ErrorBody),
    ),
    security(("admin_key" = [])),
)]
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
        Ok(report) => Ok(Json(Reloaded {
            status: "reloaded",
            loaded: report.loaded,
            kept: report.kept,
            removed: report.removed,
        })
        .into_response()),
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

/// The answer of a reload.
#[derive(Serialize, ToSchema)]
pub(super) struct Reloaded {
    /// Always `reloaded`.
    status: &'static str,
    /// Models loaded anew (new, or changed in the file).
    loaded: Vec<String>,
    /// Models whose configuration did not change, still serving.
    kept: Vec<String>,
    /// Models no longer in the file.
    removed: Vec<String>,
}
