//! `POST /v1/tokenize`: `{"model", "input", "task", "truncate"}` in, each text's token ids and
//! count out (the ids `/v1/embeddings` would run, so clients can budget tokens).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use embedrt_runtime::{Input, TokenizeRequest, TokenizeResponse};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::body::{self, BodyLimits};
use super::error::ApiError;
use super::fields::{model_field, optional};
use super::openapi::requests::TokenizeBody;
use super::openapi::ApiErrors;
use crate::state::AppState;

/// `POST /v1/tokenize`.
#[utoipa::path(
    post,
    path = "/v1/tokenize",
    operation_id = "tokenize",
    tag = "embeddings",
    summary = "Tokenizes texts as /v1/embeddings would",
    request_body = TokenizeBody,
    responses(
        (status = 200, description = "Each text's token ids", body = TokenizeList),
        ApiErrors,
    ),
    security(("api_key" = [])),
)]
pub(super) async fn handle(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = super::body_or_error(body)?;
    let registry = state.registry()?;
    let request = parse_tokenize_request(&body, BodyLimits::of(&registry))?;
    let response = registry.tokenize(request).await?;
    Ok(Json(write_tokenize_response(response)).into_response())
}

/// Parses a request body.
///
/// # Errors
///
/// As [`parse_request`](super::embeddings::parse_request); token-id inputs are a 422.
pub fn parse_tokenize_request(
    body: &[u8],
    limits: BodyLimits,
) -> Result<TokenizeRequest, ApiError> {
    let mut body = body::read(body, limits)?;
    let texts = body
        .take_input()?
        .into_iter()
        .map(|input| match input {
            Input::Text(text) => Ok(text),
            Input::Tokens(_) => Err(ApiError::wrong_type(
                Some("input"),
                "`input` must be a string or an array of strings",
            )),
        })
        .collect::<Result<_, _>>()?;
    let fields = body.fields;
    Ok(TokenizeRequest {
        model: model_field(&fields)?,
        texts,
        task: optional(&fields, "task", Value::as_str, "a string")?.map(str::to_string),
        truncate: optional(&fields, "truncate", Value::as_bool, "a boolean")?,
    })
}

/// The response body of `POST /v1/tokenize`.
#[derive(Serialize, ToSchema)]
pub struct TokenizeList {
    /// Always `list`.
    object: &'static str,
    /// One entry per text, in order.
    data: Vec<TokenizedText>,
    /// The model whose tokenizer answered.
    model: String,
    /// The tokens of all the texts.
    usage: TokenUsage,
}

/// The tokens of one text.
#[derive(Serialize, ToSchema)]
struct TokenizedText {
    /// The position of the text in the request.
    index: usize,
    /// The token ids `/v1/embeddings` would run, special tokens and instruction included.
    tokens: Vec<u32>,
    /// How many there are.
    count: usize,
}

/// The tokens of a `/v1/tokenize` answer.
#[derive(Serialize, ToSchema)]
struct TokenUsage {
    /// The tokens of all the texts.
    total_tokens: usize,
}

/// Writes `response` as JSON: one entry per text, in order.
pub fn write_tokenize_response(response: TokenizeResponse) -> TokenizeList {
    let total_tokens = response.tokens.iter().map(Vec::len).sum();
    TokenizeList {
        object: "list",
        data: response
            .tokens
            .into_iter()
            .enumerate()
            .map(|(index, tokens)| TokenizedText {
                index,
                count: tokens.len(),
                tokens,
            })
            .collect(),
        model: response.model,
        usage: TokenUsage { total_tokens },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn parses_texts_and_options() {
        let request = parse_tokenize_request(
            br#"{"model":"m","input":["a","b"],"task":"retrieval.query","truncate":false}"#,
            BodyLimits::default(),
        )
        .unwrap();
        assert_eq!(request.model.as_deref(), Some("m"));
        assert_eq!(request.texts, ["a", "b"]);
        assert_eq!(request.task.as_deref(), Some("retrieval.query"));
        assert_eq!(request.truncate, Some(false));
    }

    #[test]
    fn refuses_bad_bodies() {
        let status = |body: &str| {
            parse_tokenize_request(body.as_bytes(), BodyLimits::default())
                .unwrap_err()
                .status
        };
        assert_eq!(
            status(r#"{"input":[1,2]}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(status(r#"{"model":"m"}"#), StatusCode::BAD_REQUEST);
        assert_eq!(status("[]"), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
