//! The HTTP API (axum): OpenAI's `POST /v1/embeddings` with Jina's fields, `POST /v1/tokenize`,
//! `GET /v1/models`, reranking in Cohere's and TEI's shapes (`POST /v1/rerank`, `/v2/rerank`,
//! `/rerank`), and the operational routes (`/health`, `/ready`, `/metrics`,
//! `POST /admin/reload`). Errors take OpenAI's shape ([`error::ApiError`]).

pub mod body;
pub mod connections;
pub mod embeddings;
pub mod error;
mod fields;
mod models;
pub mod openapi;
mod ops;
pub mod rerank;
pub mod tokenize;

use std::sync::Arc;

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper::body::{Frame, SizeHint};
use tokio_stream::StreamExt;
use tower_http::catch_panic::CatchPanicLayer;

use crate::admission::{BodyBytes, Refusal};
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
            within_deadline,
        ))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_api_key,
        ))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            move |state: State<Arc<AppState>>, request: Request, next: Next| {
                admit(state, max_body_bytes, request, next)
            },
        ));
    Router::new()
        .merge(api)
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/admin/reload", post(ops::admin_reload))
        .merge(openapi::routes())
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

/// Lets a `/v1` request in when there is a place for it and bytes for its body (by its
/// `Content-Length`, else `max_body_bytes`), before the body is read; else answers 429 with
/// `Retry-After`. The body then takes its bytes as they arrive.
async fn admit(
    State(state): State<Arc<AppState>>,
    max_body_bytes: usize,
    request: Request,
    next: Next,
) -> Response {
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(max_body_bytes)
        // A longer body is refused with 413 once it is read that far.
        .min(max_body_bytes);
    match state.admission.admit(length) {
        Ok(ticket) => {
            let bytes = ticket.body();
            let request = request.map(|body| {
                Body::new(Metered {
                    body,
                    bytes,
                    refused: false,
                    linger_bytes: max_body_bytes,
                })
            });
            let response = next.run(request).await;
            drop(ticket);
            response
        }
        Err(refusal) => {
            linger(request.into_body(), max_body_bytes);
            ApiError::busy(refusal).into_response()
        }
    }
}

/// How long the rest of a refused request's body is still read.
const LINGER: Duration = Duration::from_secs(2);

/// Reads the rest of a refused request's body in the background and throws it away, for at most
/// [`LINGER`] and `max_bytes`, as nginx's lingering close does: a connection closed with bytes
/// left unread is reset, and a client still sending its body would read a broken pipe instead of
/// the refusal. Nothing read is kept, so the bytes cost no memory.
fn linger(body: Body, max_bytes: usize) {
    // A body is dropped on the server's runtime; without one there is nobody to read it.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut data = body.into_data_stream();
        let mut left = max_bytes;
        let read_rest = async {
            while let Some(Ok(chunk)) = data.next().await {
                left = left.saturating_sub(chunk.len());
                if left == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, read_rest).await;
    });
}

/// A request body that takes its bytes of the admission budget as they arrive; when they run
/// out, the request is refused and the rest of the body [`linger`]s.
struct Metered {
    body: Body,
    bytes: Arc<BodyBytes>,
    /// Whether the budget ran out while the body arrived.
    refused: bool,
    /// At most this much of the rest is read after a refusal.
    linger_bytes: usize,
}

impl Drop for Metered {
    fn drop(&mut self) {
        if self.refused {
            linger(std::mem::take(&mut self.body), self.linger_bytes);
        }
    }
}

impl hyper::body::Body for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        let arrived = match &frame {
            Some(Ok(frame)) => frame.data_ref().map_or(0, Bytes::len),
            _ => 0,
        };
        if let Err(refusal) = self.bytes.take(arrived) {
            self.refused = true;
            return Poll::Ready(Some(Err(axum::Error::new(refusal))));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Answers a `/v1` request within `[server] request_timeout_ms` (reading its body included), or
/// with a 504 past it; the request's work is dropped then.
async fn within_deadline(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    match state.within_deadline(None, next.run(request)).await {
        Ok(response) => response,
        Err(exceeded) => ApiError::timeout(exceeded).into_response(),
    }
}

/// The request body, or a 413 / 400 in the API's format.
fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        // A body that ran out of the admission budget while it arrived.
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&rejection);
        while let Some(error) = cause {
            if let Some(refusal) = error.downcast_ref::<Refusal>() {
                return ApiError::busy(*refusal);
            }
            cause = error.source();
        }
        ApiError {
            status: rejection.status(),
            message: rejection.body_text(),
            code: if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "invalid_body"
            },
            ..ApiError::bad_request(None, "", "")
        }
    })
}
