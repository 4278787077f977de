//! Reranking over HTTP in the two shapes clients send:
//!
//! - Cohere's (which Jina's follows): `POST /v1/rerank` and `POST /v2/rerank` with `query`,
//!   `documents` (strings or `{ "text": ... }`), `top_n`, `return_documents`,
//!   `max_tokens_per_doc`, plus `truncate` and `raw_scores`; answered with `results` best first
//!   (`index`, `relevance_score`, `document` when asked), `model`, `usage`, `id` and `meta`;
//! - TEI's: `POST /rerank` with `query`, `texts`, `raw_scores`, `return_text`, `truncate`,
//!   answered with a bare array of `{ index, score, text? }` best first. `/rerank` takes
//!   Cohere's shape too, told apart by the body: `texts` is TEI's, `documents` Cohere's.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use embedrt_runtime::{RerankRequest, RerankResponse};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::body::{self, BodyLimits};
use super::embeddings::{served_by, Usage};
use super::error::ApiError;
use super::fields::{model_field, optional, whole_number};
use super::openapi::requests::{AnyRerankBody, CohereRerankBody};
use super::openapi::ApiErrors;
use crate::state::AppState;

/// The two request shapes, and so the two answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// Cohere's (and Jina's), of API version `1` or `2`.
    Cohere { version: &'static str },
    /// Text Embeddings Inference's.
    Tei,
}

/// A parsed rerank request and the shape its answer takes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Parsed {
    request: RerankRequest,
    shape: Shape,
}

/// `POST /v1/rerank` (Cohere's API version 1 and Jina's).
#[utoipa::path(
    post,
    path = "/v1/rerank",
    operation_id = "rerankV1",
    tag = "rerank",
    summary = "Ranks documents for a query (Cohere's API version 1, Jina's)",
    request_body = CohereRerankBody,
    responses(
        (
            status = 200,
            description = "The documents, best first",
            body = CohereAnswer
        ),
        ApiErrors,
    ),
    security(("api_key" = [])),
)]
pub(super) async fn v1(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    answer(state, headers, body, RerankRoute::V1).await
}

/// `POST /v2/rerank` (Cohere's API version 2).
#[utoipa::path(
    post,
    path = "/v2/rerank",
    operation_id = "rerankV2",
    tag = "rerank",
    summary = "Ranks documents for a query (Cohere's API version 2)",
    request_body = CohereRerankBody,
    responses(
        (
            status = 200,
            description = "The documents, best first",
            body = CohereAnswer
        ),
        ApiErrors,
    ),
    security(("api_key" = [])),
)]
pub(super) async fn v2(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    answer(state, headers, body, RerankRoute::V2).await
}

/// `POST /rerank`: TEI's request when the body has `texts`, Cohere's when it has `documents`.
#[utoipa::path(
    post,
    path = "/rerank",
    operation_id = "rerank",
    tag = "rerank",
    summary = "Ranks documents for a query (Text Embeddings Inference's API, or Cohere's)",
    request_body = AnyRerankBody,
    responses(
        (
            status = 200,
            description = "TEI's bare array (for `texts`) or Cohere's answer (for `documents`), \
                           best first",
            body = RerankAnswer
        ),
        ApiErrors,
    ),
    security(("api_key" = [])),
)]
pub(super) async fn any_shape(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    answer(state, headers, body, RerankRoute::AnyShape).await
}

/// The rerank routes, each with the request shapes it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RerankRoute {
    /// `/v1/rerank`: Cohere's request, API version 1.
    V1,
    /// `/v2/rerank`: Cohere's request, API version 2.
    V2,
    /// `/rerank`: TEI's request (with `texts`) or Cohere's (with `documents`).
    AnyShape,
}

/// Parses a body sent to `route`, read within `limits`.
///
/// # Errors
///
/// As [`body::read`]; 400 for a missing `query` or `documents` (or `texts`), 422 for fields of
/// the wrong type.
pub fn parse_rerank_request(
    body: &[u8],
    limits: BodyLimits,
    route: RerankRoute,
) -> Result<RerankRequest, ApiError> {
    parse(body, limits, route).map(|parsed| parsed.request)
}

/// Parses a body sent to `route`, and the shape its answer takes.
fn parse(body: &[u8], limits: BodyLimits, route: RerankRoute) -> Result<Parsed, ApiError> {
    let fields = body::read(body, limits)?.fields;
    match route {
        RerankRoute::V1 => parse_cohere(&fields, "1"),
        RerankRoute::V2 => parse_cohere(&fields, "2"),
        RerankRoute::AnyShape if fields.contains_key("texts") => parse_tei(&fields),
        RerankRoute::AnyShape if fields.contains_key("documents") => parse_cohere(&fields, "2"),
        RerankRoute::AnyShape => Err(ApiError::bad_request(
            Some("texts"),
            "missing_documents",
            "`/rerank` needs `texts` (Text Embeddings Inference's request) or `documents` \
             (Cohere's)",
        )),
    }
}

/// Reads, parses and answers a rerank request sent to `route`.
async fn answer(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    route: RerankRoute,
) -> Result<Response, ApiError> {
    let body = super::body_or_error(body)?;
    let registry = state.registry()?;
    let mut parsed = parse(&body, BodyLimits::of(&registry), route)?;
    parsed.request.user = state.user(parsed.request.user.take(), &headers);
    let response = registry.rerank(parsed.request).await?;
    let headers = served_by(&response.served_by);
    let answer = match parsed.shape {
        Shape::Cohere { version } => RerankAnswer::Cohere(cohere_answer(response, version)),
        Shape::Tei => RerankAnswer::Tei(tei_answer(response)),
    };
    Ok((headers, Json(answer)).into_response())
}

/// Parses Cohere's request (of API `version`).
///
/// # Errors
///
/// 400 for a missing `query` or `documents`, 422 for fields of the wrong type.
fn parse_cohere(fields: &Map<String, Value>, version: &'static str) -> Result<Parsed, ApiError> {
    let documents = match fields.get("documents") {
        None | Some(Value::Null) => return Err(missing("documents")),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| document_text(i, item))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(ApiError::wrong_type(
                Some("documents"),
                "`documents` must be an array of strings or of objects with a `text`",
            ))
        }
    };
    let request = RerankRequest {
        top_n: count(fields, "top_n")?,
        max_tokens_per_doc: count(fields, "max_tokens_per_doc")?,
        return_documents: flag(fields, "return_documents")?,
        ..common(fields, documents)?
    };
    Ok(Parsed {
        request,
        shape: Shape::Cohere { version },
    })
}

/// Parses TEI's request.
///
/// # Errors
///
/// 400 for a missing `query`, a left truncation; 422 for fields of the wrong type.
fn parse_tei(fields: &Map<String, Value>) -> Result<Parsed, ApiError> {
    let texts = optional(
        fields,
        "texts",
        |value| {
            value
                .as_array()?
                .iter()
                .map(|text| text.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        },
        "an array of strings",
    )?
    .ok_or_else(|| missing("texts"))?;
    let direction = optional(fields, "truncation_direction", Value::as_str, "a string")?;
    if direction.is_some_and(|d| !d.eq_ignore_ascii_case("right")) {
        return Err(ApiError::bad_request(
            Some("truncation_direction"),
            "invalid_value",
            "`truncation_direction` must be \"Right\": embedrt cuts pairs at their end, as the \
             reference cross-encoders do",
        ));
    }
    Ok(Parsed {
        request: RerankRequest {
            return_documents: flag(fields, "return_text")?,
            ..common(fields, texts)?
        },
        shape: Shape::Tei,
    })
}

/// The fields both shapes share: `model`, `query`, `truncate`, `raw_scores`, `user`.
fn common(fields: &Map<String, Value>, documents: Vec<String>) -> Result<RerankRequest, ApiError> {
    let query = optional(fields, "query", Value::as_str, "a string")?
        .ok_or_else(|| missing("query"))?
        .to_string();
    Ok(RerankRequest {
        truncate: optional(fields, "truncate", Value::as_bool, "a boolean")?,
        raw_scores: flag(fields, "raw_scores")?,
        user: optional(fields, "user", Value::as_str, "a string")?.map(str::to_string),
        ..RerankRequest::new(model_field(fields)?, query, documents)
    })
}

/// A document given as a string or as an object with a string `text`.
fn document_text(index: usize, item: &Value) -> Result<String, ApiError> {
    let text = match item {
        Value::String(text) => Some(text.clone()),
        Value::Object(object) => object
            .get("text")
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    };
    text.ok_or_else(|| {
        ApiError::wrong_type(
            Some("documents"),
            format!("documents[{index}] must be a string or an object with a string `text`"),
        )
    })
}

/// An optional boolean field, false when absent.
fn flag(fields: &Map<String, Value>, key: &'static str) -> Result<bool, ApiError> {
    Ok(optional(fields, key, Value::as_bool, "a boolean")?.unwrap_or(false))
}

/// An optional count (a non-negative integer; the model refuses 0 where it means nothing).
fn count(fields: &Map<String, Value>, key: &'static str) -> Result<Option<usize>, ApiError> {
    optional(
        fields,
        key,
        |value| whole_number(value).map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        "a positive integer",
    )
}

fn missing(key: &'static str) -> ApiError {
    ApiError::bad_request(Some(key), "missing_field", format!("`{key}` is required"))
}

/// Cohere's answer.
#[derive(Serialize, ToSchema)]
pub(super) struct CohereAnswer {
    /// A fresh id for the call.
    id: String,
    /// The documents, best first (the best `top_n` when asked).
    results: Vec<CohereResult>,
    /// The model that answered.
    model: String,
    /// The tokens of the (query, document) pairs.
    usage: Usage,
    /// Cohere's call metadata.
    meta: Meta,
}

/// One ranked document.
#[derive(Serialize, ToSchema)]
struct CohereResult {
    /// The document's position in the request.
    index: usize,
    /// How relevant it is: a probability, or the raw logit with `raw_scores`.
    relevance_score: f32,
    /// The document, with `return_documents`.
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<Document>,
}

/// A document of a result.
#[derive(Serialize, ToSchema)]
struct Document {
    /// Its text.
    text: String,
}

/// Cohere's `meta`.
#[derive(Serialize, ToSchema)]
struct Meta {
    /// The API version of the request's route.
    api_version: ApiVersion,
    /// What the call is billed as.
    billed_units: BilledUnits,
}

/// Cohere's `api_version`.
#[derive(Serialize, ToSchema)]
struct ApiVersion {
    /// `1` or `2`.
    version: &'static str,
}

/// Cohere bills a rerank call as one search unit; clients that read `meta` find it here.
#[derive(Serialize, ToSchema)]
struct BilledUnits {
    /// Always 1.
    search_units: u32,
}

fn cohere_answer(response: RerankResponse, version: &'static str) -> CohereAnswer {
    CohereAnswer {
        id: uuid::Uuid::new_v4().to_string(),
        results: response
            .results
            .into_iter()
            .map(|result| CohereResult {
                index: result.index,
                relevance_score: result.score,
                document: result.document.map(|text| Document { text }),
            })
            .collect(),
        model: response.model,
        usage: Usage::of(response.prompt_tokens),
        meta: Meta {
            api_version: ApiVersion { version },
            billed_units: BilledUnits { search_units: 1 },
        },
    }
}

/// What `POST /rerank` answers: TEI's array or Cohere's object, as the request's shape was.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
enum RerankAnswer {
    /// For TEI's request.
    Tei(Vec<TeiResult>),
    /// For Cohere's request.
    Cohere(CohereAnswer),
}

/// One entry of TEI's answer (a bare array of them, best first).
#[derive(Serialize, ToSchema)]
pub(super) struct TeiResult {
    /// The text's position in the request.
    index: usize,
    /// How relevant it is: a probability, or the raw logit with `raw_scores`.
    score: f32,
    /// The text, with `return_text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

fn tei_answer(response: RerankResponse) -> Vec<TeiResult> {
    response
        .results
        .into_iter()
        .map(|result| TeiResult {
            index: result.index,
            score: result.score,
            text: result.document,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn fields(body: &str) -> Map<String, Value> {
        body::read(body.as_bytes(), BodyLimits::default())
            .unwrap()
            .fields
    }

    #[test]
    fn cohere_requests_take_strings_or_objects_and_every_option() {
        let parsed = parse_cohere(
            &fields(
                r#"{"model":"r","query":"q","documents":["a",{"text":"b","title":"t"}],
                    "top_n":1,"return_documents":true,"max_tokens_per_doc":64,
                    "truncate":false,"raw_scores":true}"#,
            ),
            "2",
        )
        .unwrap();
        assert_eq!(parsed.request.documents, ["a", "b"]);
        assert_eq!(
            (
                parsed.request.top_n,
                parsed.request.max_tokens_per_doc,
                parsed.request.truncate,
                parsed.request.raw_scores
            ),
            (Some(1), Some(64), Some(false), true)
        );
        assert!(parsed.request.return_documents);
        assert_eq!(parsed.request.model.as_deref(), Some("r"));
        let plain = parse_cohere(&fields(r#"{"query":"q","documents":["a"]}"#), "1").unwrap();
        assert_eq!(
            (
                plain.request.top_n,
                plain.request.return_documents,
                plain.request.raw_scores
            ),
            (None, false, false)
        );
    }

    #[test]
    fn tei_requests_read_texts_and_return_text() {
        let parsed = parse_tei(&fields(
            r#"{"query":"q","texts":["a","b"],"return_text":true,"raw_scores":true,"truncation_direction":"Right"}"#,
        ))
        .unwrap();
        assert_eq!(parsed.shape, Shape::Tei);
        assert_eq!(parsed.request.documents, ["a", "b"]);
        assert!(parsed.request.return_documents && parsed.request.raw_scores);
        let left = parse_tei(&fields(
            r#"{"query":"q","texts":["a"],"truncation_direction":"Left"}"#,
        ))
        .unwrap_err();
        assert_eq!(left.param, Some("truncation_direction"));
    }

    #[test]
    fn bad_rerank_bodies_name_their_field() {
        for (body, status, param) in [
            (r#"{"documents":["a"]}"#, StatusCode::BAD_REQUEST, "query"),
            (r#"{"query":"q"}"#, StatusCode::BAD_REQUEST, "documents"),
            (
                r#"{"query":"q","documents":[1]}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "documents",
            ),
            (
                r#"{"query":"q","documents":[{"title":"x"}]}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "documents",
            ),
            (
                r#"{"query":"q","documents":"a"}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "documents",
            ),
            (
                r#"{"query":"q","documents":["a"],"top_n":-1}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "top_n",
            ),
            (
                r#"{"query":3,"documents":["a"]}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "query",
            ),
        ] {
            let err = parse_cohere(&fields(body), "2").unwrap_err();
            assert_eq!((err.status, err.param), (status, Some(param)), "{body}");
        }
        let err = parse_tei(&fields(r#"{"query":"q","texts":[1]}"#)).unwrap_err();
        assert_eq!(err.param, Some("texts"));
    }
}
