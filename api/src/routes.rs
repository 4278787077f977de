//! The HTTP routes and their handlers.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::openai::{parse_request, write_response};
use crate::state::AppState;
use crate::tokenize::{parse_tokenize_request, write_tokenize_response};

/// The API's router; request bodies over `max_body_bytes` get 413.
pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    let api = Router::new()
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/tokenize", post(tokenize))
        .route("/v1/models", get(models))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_api_key,
        ));
    Router::new()
        .merge(api)
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

/// Lets a request through to the `/v1` routes only with a configured API key (when there are
/// any).
async fn require_api_key(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if state.accepts_api_key(authorization) {
        next.run(request).await
    } else {
        ApiError::invalid_api_key().into_response()
    }
}

/// The request body, or a 413 / 400 in the API's format.
fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| ApiError {
        status: rejection.status(),
        message: rejection.body_text(),
        code: if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "invalid_body"
        },
        ..ApiError::bad_request(None, "", "")
    })
}

/// `POST /v1/embeddings`.
async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(body)?;
    let registry = state.registry()?;
    let mut parsed = parse_request(&body, registry.default_model())?;
    if parsed.request.user.is_none() {
        let sticky = state.sticky_header().and_then(|name| headers.get(name));
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

/// `POST /v1/tokenize`: the token ids `/v1/embeddings` would run for the same texts.
async fn tokenize(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(body)?;
    let registry = state.registry()?;
    let request = parse_tokenize_request(&body, registry.default_model())?;
    let response = registry.tokenize(request).await?;
    Ok(Json(write_tokenize_response(response)).into_response())
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
                "matryoshka_dimensions": card.matryoshka_dimensions,
                "max_tokens": model.max_tokens(),
                "max_inputs": model.max_inputs(),
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
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !state.accepts_admin_key(authorization) {
        return Err(ApiError::unauthorized());
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
