//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use embedrt_runtime::EmbedError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::admission::Refusal;
use crate::state::DeadlineExceeded;

/// An error response of the HTTP API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Human-readable explanation.
    pub message: String,
    /// OpenAI's error `type`.
    pub kind: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<&'static str>,
    /// A stable machine-readable code.
    pub code: &'static str,
}

impl ApiError {
    /// A 400 about `param`.
    pub fn bad_request(
        param: Option<&'static str>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code,
        }
    }

    /// A 422: the JSON is well-formed but a field has the wrong type.
    pub fn wrong_type(param: Option<&'static str>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_type",
            ..Self::bad_request(param, "", message)
        }
    }

    /// A 404 for a path the API does not have.
    pub fn no_route() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            ..Self::bad_request(
                None,
                "",
                "no such endpoint; see /v1/embeddings, /v1/rerank and /v1/models",
            )
        }
    }

    /// A 401: the admin key is missing or wrong.
    pub fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: "this endpoint needs `Authorization: Bearer <admin_key>`".into(),
            kind: "authentication_error",
            param: None,
            code: "invalid_admin_key",
        }
    }

    /// A 403: the admin endpoint is off (`[server] admin = "off"`).
    pub fn admin_off() -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: "the admin endpoint is off (`[server] admin = \"off\"`); send the server \
                      SIGHUP to reload"
                .into(),
            kind: "permission_error",
            param: None,
            code: "admin_off",
        }
    }

    /// A 401: the embedding API needs an API key and got none or a wrong one.
    pub fn invalid_api_key() -> Self {
        Self {
            message: "this server needs `Authorization: Bearer <api key>` with a valid key".into(),
            code: "invalid_api_key",
            ..Self::unauthorized()
        }
    }

    /// A 429: there is no room for the request now (see [`crate::admission`]).
    pub fn busy(refusal: Refusal) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: refusal.to_string(),
            kind: "rate_limit_error",
            param: None,
            code: "server_busy",
        }
    }

    /// A 504: the request ran past its deadline.
    pub fn timeout(error: DeadlineExceeded) -> Self {
        Self {
            status: StatusCode::GATEWAY_TIMEOUT,
            message: error.to_string(),
            kind: "timeout_error",
            param: None,
            code: "request_timeout",
        }
    }

    /// A 500 for a failure inside the server.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: "internal_error",
        }
    }
}

impl From<EmbedError> for ApiError {
    fn from(error: EmbedError) -> Self {
        let message = error.to_string();
        let (status, kind, param, code) = match error {
            EmbedError::InvalidRequest { param, .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                param,
                "invalid_value",
            ),
            EmbedError::ModelNotFound(_) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model"),
                "model_not_found",
            ),
            EmbedError::MissingModel => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("model"),
                "missing_model",
            ),
            EmbedError::TooManyInputs { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                Some("input"),
                "too_many_inputs",
            ),
            EmbedError::Overloaded(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                None,
                "queue_full",
            ),
            EmbedError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                None,
                "unavailable",
            ),
            EmbedError::Internal(_) => return Self::internal(message),
        };
        Self {
            status,
            message,
            kind,
            param,
            code,
        }
    }
}

/// The body of every error: OpenAI's `ErrorResponse`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": {
    "message": "`input` is required",
    "type": "invalid_request_error",
    "param": "input",
    "code": "missing_input"
}}))]
pub(super) struct ErrorBody<'a> {
    /// What went wrong.
    error: ErrorFields<'a>,
}

/// OpenAI's `Error`.
#[derive(Serialize, ToSchema)]
struct ErrorFields<'a> {
    /// What went wrong, for people.
    message: &'a str,
    /// The class of error (`invalid_request_error`, `rate_limit_error`, `server_error`, ...).
    #[serde(rename = "type")]
    kind: &'a str,
    /// The request field at fault, or null.
    #[schema(required = true)]
    param: Option<&'a str>,
    /// A stable code for programs (`missing_input`, `model_not_found`, `server_busy`, ...).
    code: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorFields {
                message: &self.message,
                kind: self.kind,
                param: self.param,
                code: self.code,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_get_their_status_and_param() {
        let cases = [
            (
                EmbedError::invalid("task", "bad"),
                StatusCode::BAD_REQUEST,
                Some("task"),
            ),
            (
                EmbedError::MissingModel,
                StatusCode::BAD_REQUEST,
                Some("model"),
            ),
            (
                EmbedError::ModelNotFound("x".into()),
                StatusCode::NOT_FOUND,
                Some("model"),
            ),
            (
                EmbedError::TooManyInputs { count: 3, limit: 2 },
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("input"),
            ),
            (
                EmbedError::Overloaded("full".into()),
                StatusCode::TOO_MANY_REQUESTS,
                None,
            ),
            (
                EmbedError::Unavailable("x".into()),
                StatusCode::SERVICE_UNAVAILABLE,
                None,
            ),
            (
                EmbedError::Internal("x".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
            ),
        ];
        for (error, status, param) in cases {
            let api = ApiError::from(error);
            assert_eq!((api.status, api.param), (status, param), "{}", api.message);
        }
    }
}
