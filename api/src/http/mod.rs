//! The HTTP API (axum): OpenAI's `POST /v1/embeddings` with Jina's fields, `POST /v1/tokenize`,
//! `GET /v1/models`, reranking in Cohere's and TEI's shapes (`POST /v1/rerank`, `/v2/rerank`,
//! `/rerank`), and the operational routes (`/health`, `/ready`, `/metrics`,
//! `POST /admin/reload`). Errors take OpenAI's shape ([`error::ApiError`]).

pub mod embeddings;
pub mod error;
mod fields;
mod models;
mod ops;
mod rerank;
pub mod tokenize;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use crate::state::AppState;
use error::ApiError;

/// The API's router; request bodies over `max_body_bytes` get 413.
pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    let api = Router::new()
        .route("/v1/embeddings", post(embeddings::handle))
        .route("/v1/tokenize", post(tokenize::handle))
        .route("/v1/models", get(models::handle))
        .route("/v1/rerank", post(rerank::v1))
        .route("/v2/rerank", post(rerank::v2))
        .route("/rerank", post(rerank::any_shape))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_api_key,
        ));
    Router::new()
        .merge(api)
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/admin/reload", post(ops::admin_reload))
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
    if state.accepts_api_key(request.headers()) {
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
