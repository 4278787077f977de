//! `POST /v1/embeddings`: OpenAI's request and response, plus Jina's fields (`task`,
//! `embedding_type`, `normalized`, `truncate`, `late_chunking`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use embedrt_runtime::{EmbedRequest, EmbedResponse, ServedBy};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::body::{self, BodyLimits};
use super::error::ApiError;
use super::fields::{model_field, optional, whole_number};
use super::openapi::requests::EmbeddingsBody;
use super::openapi::ApiErrors;
use crate::encoding::{base64_f32, offset_sign_bits, sign_bits, VectorEncoding};
use crate::state::AppState;

/// The response header naming the variant that answered.
pub(super) const VARIANT_HEADER: HeaderName = HeaderName::from_static("x-embedrt-variant");
/// The response header naming that variant's backend.
pub(super) const BACKEND_HEADER: HeaderName = HeaderName::from_static("x-embedrt-backend");
/// The response header naming where that variant runs.
pub(super) const DEVICE_HEADER: HeaderName = HeaderName::from_static("x-embedrt-device");

/// `POST /v1/embeddings`.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    operation_id = "createEmbedding",
    tag = "embeddings",
    summary = "Embeds texts or token ids",
    request_body = EmbeddingsBody,
    responses(
        (
            status = 200,
            description = "One vector per input",
            body = EmbeddingList
        ),
        ApiErrors,
    ),
    security(("api_key" = [])),
)]
pub(super) async fn handle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = super::body_or_error(body)?;
    let registry = state.registry()?;
    let mut parsed = parse_request(&body, BodyLimits::of(&registry))?;
    parsed.request.user = state.user(parsed.request.user.take(), &headers);
    let response = registry.embed(parsed.request).await?;
    let headers = served_by(&response.served_by);
    if response.embeddings.len() < SERIALIZE_APART {
        return Ok((headers, Json(write_response(response, parsed.encoding))).into_response());
    }
    // Tens of megabytes of JSON would hold the I/O thread, and every other request with it.
    let encoding = parsed.encoding;
    let json = tokio::task::spawn_blocking(move || {
        serde_json::to_vec(&write_response(response, encoding))
    })
    .await
    .map_err(|_| ApiError::internal("writing the response failed"))?
    .map_err(|e| ApiError::internal(format!("writing the response failed: {e}")))?;
    let content_type = (
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok((headers, [content_type], json).into_response())
}

/// Answers with at least this many vectors are written on a blocking thread.
const SERIALIZE_APART: usize = 64;

/// The response headers naming the variant that answered, its backend and its device.
pub(super) fn served_by(served_by: &ServedBy) -> [(HeaderName, HeaderValue); 3] {
    let header =
        |text: &str| HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("invalid"));
    [
        (VARIANT_HEADER, header(&served_by.variant)),
        (BACKEND_HEADER, header(&served_by.backend)),
        (DEVICE_HEADER, header(&served_by.device)),
    ]
}

/// A parsed request: the runtime's request plus how to encode the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRequest {
    /// What to embed.
    pub request: EmbedRequest,
    /// How to write the vectors.
    pub encoding: VectorEncoding,
}

/// Parses a request body, read within `limits`.
///
/// # Errors
///
/// 400 for invalid JSON, a missing `input` and bad values; 413 for more inputs than `limits`
/// allow; 422 for fields of the wrong type.
pub fn parse_request(body: &[u8], limits: BodyLimits) -> Result<ParsedRequest, ApiError> {
    let mut body = body::read(body, limits)?;
    let inputs = body.take_input()?;
    let fields = body.fields;
    let model = model_field(&fields)?;
    let encoding = encoding(&fields)?;
    // The type is checked here, the size (1 up to the model's width, or one of its Matryoshka
    // sizes) by the model.
    let dimensions = optional(
        &fields,
        "dimensions",
        |value| whole_number(value).and_then(|d| usize::try_from(d).ok()),
        "an integer (a size up to the model's width)",
    )?;
    let user = optional(&fields, "user", Value::as_str, "a string")?.map(str::to_string);
    let request = EmbedRequest {
        dimensions,
        truncate: optional(&fields, "truncate", Value::as_bool, "a boolean")?,
        task: optional(&fields, "task", Value::as_str, "a string")?.map(str::to_string),
        normalize: optional(&fields, "normalized", Value::as_bool, "a boolean")?,
        late_chunking: optional(&fields, "late_chunking", Value::as_bool, "a boolean")?
            .unwrap_or(false),
        user,
        ..EmbedRequest::new(model, inputs)
    };
    Ok(ParsedRequest { request, encoding })
}

/// OpenAI's `encoding_format` (float, base64) or Jina's `embedding_type` (also binary, ubinary);
/// both may be given only when they agree.
fn encoding(fields: &Map<String, Value>) -> Result<VectorEncoding, ApiError> {
    let read = |key: &'static str, allowed: &[&str]| -> Result<Option<VectorEncoding>, ApiError> {
        let Some(name) = optional(fields, key, Value::as_str, "a string")? else {
            return Ok(None);
        };
        match VectorEncoding::from_name(name).filter(|_| allowed.contains(&name)) {
            Some(format) => Ok(Some(format)),
            None => Err(ApiError::bad_request(
                Some(key),
                "invalid_value",
                format!(
                    "`{key}` must be one of {}, got {name:?}",
                    allowed.join(", ")
                ),
            )),
        }
    };
    let openai = read("encoding_format", &["float", "base64"])?;
    let jina = read("embedding_type", &["float", "base64", "binary", "ubinary"])?;
    match (openai, jina) {
        (Some(a), Some(b)) if a != b => Err(ApiError::bad_request(
            Some("embedding_type"),
            "invalid_value",
            "`encoding_format` and `embedding_type` disagree; give one of them",
        )),
        (a, b) => Ok(b.or(a).unwrap_or(VectorEncoding::Float)),
    }
}

/// The response body of `POST /v1/embeddings`.
#[derive(Serialize, ToSchema)]
pub struct EmbeddingList {
    /// Always `list`.
    object: &'static str,
    /// One vector per input, in input order.
    data: Vec<EmbeddingObject>,
    /// The model that answered (its name, whichever alias the request used).
    model: String,
    /// The tokens the request used.
    usage: Usage,
}

/// One vector of the list.
#[derive(Serialize, ToSchema)]
struct EmbeddingObject {
    /// Always `embedding`.
    object: &'static str,
    /// The position of its input in the request.
    index: usize,
    /// The vector, written as the request's encoding says.
    embedding: EmbeddingValue,
}

/// A vector in one of the encodings.
#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingValue {
    Float(Vec<f32>),
    Base64(String),
    Unsigned(Vec<u8>),
    Signed(Vec<i8>),
}

impl PartialSchema for EmbeddingValue {
    /// Any of the encodings: the byte arrays of `binary` and `ubinary` are arrays of numbers too,
    /// so the schema is `anyOf`, not `oneOf`.
    fn schema() -> RefOr<Schema> {
        let array = |items: ObjectBuilder, description: &str| {
            ArrayBuilder::new()
                .items(items)
                .description(Some(description))
        };
        let byte = |min: i32, max: i32| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(min))
                .maximum(Some(max))
        };
        AnyOfBuilder::new()
            .item(array(
                ObjectBuilder::new().schema_type(Type::Number),
                "`float`: the vector's values",
            ))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .content_encoding("base64")
                    .description(Some("`base64`: the values as little-endian f32 bytes")),
            )
            .item(array(
                byte(0, 255),
                "`ubinary`: sign bits, 8 values to a byte, most significant first",
            ))
            .item(array(
                byte(-128, 127),
                "`binary`: the `ubinary` bytes less 128",
            ))
            .into()
    }
}

impl ToSchema for EmbeddingValue {}

/// The `usage` of an answer (embeddings, rerank): the tokens processed.
#[derive(Serialize, ToSchema)]
pub(super) struct Usage {
    /// The tokens of the inputs.
    prompt_tokens: usize,
    /// The same: nothing is generated.
    total_tokens: usize,
}

impl Usage {
    /// The usage of an answer that processed `tokens` tokens, all of them prompt.
    pub(super) fn of(tokens: usize) -> Self {
        Self {
            prompt_tokens: tokens,
            total_tokens: tokens,
        }
    }
}

/// Writes `response` in OpenAI's format with vectors encoded as `encoding`.
pub fn write_response(response: EmbedResponse, encoding: VectorEncoding) -> EmbeddingList {
    let data = response
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(index, vector)| EmbeddingObject {
            object: "embedding",
            index,
            embedding: match encoding {
                VectorEncoding::Float => EmbeddingValue::Float(vector),
                VectorEncoding::Base64 => EmbeddingValue::Base64(base64_f32(&vector)),
                VectorEncoding::Ubinary => EmbeddingValue::Unsigned(sign_bits(&vector)),
                // JSON writes Jina's signed values, the same bytes read as i8.
                VectorEncoding::Binary => EmbeddingValue::Signed(
                    offset_sign_bits(&vector)
                        .into_iter()
                        .map(|byte| byte as i8)
                        .collect(),
                ),
            },
        })
        .collect();
    EmbeddingList {
        object: "list",
        data,
        model: response.model,
        usage: Usage::of(response.prompt_tokens),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use embedrt_runtime::Input;

    fn parse(body: &str) -> Result<ParsedRequest, ApiError> {
        parse_request(body.as_bytes(), BodyLimits::default())
    }

    #[test]
    fn every_input_shape() {
        let inputs = |body: &str| parse(body).unwrap().request.inputs;
        assert_eq!(
            inputs(r#"{"model":"m","input":"hi"}"#),
            vec![Input::Text("hi".into())]
        );
        assert_eq!(
            inputs(r#"{"model":"m","input":["a","b"]}"#),
            vec![Input::Text("a".into()), Input::Text("b".into())]
        );
        assert_eq!(
            inputs(r#"{"model":"m","input":[1,2]}"#),
            vec![Input::Tokens(vec![1, 2])]
        );
        assert_eq!(
            inputs(r#"{"model":"m","input":[[1],[2,3]]}"#),
            vec![Input::Tokens(vec![1]), Input::Tokens(vec![2, 3])]
        );
        assert_eq!(inputs(r#"{"model":"m","input":[]}"#), vec![]);
    }

    #[test]
    fn fields_and_defaults() {
        let parsed = parse(
            r#"{"model":"m","input":"x","encoding_format":"base64","dimensions":8,"user":"u"}"#,
        )
        .unwrap();
        assert_eq!(parsed.encoding, VectorEncoding::Base64);
        assert_eq!(parsed.request.dimensions, Some(8));
        let whole = parse(r#"{"model":"m","input":"x","dimensions":8.0}"#).unwrap();
        assert_eq!(whole.request.dimensions, Some(8));
        let parsed = parse(r#"{"input":"x"}"#).unwrap();
        assert_eq!(
            (parsed.request.model, parsed.encoding),
            (None, VectorEncoding::Float)
        );
    }

    #[test]
    fn bad_bodies() {
        let cases = [
            ("{not json", StatusCode::BAD_REQUEST),
            (r#"{"model":"m"}"#, StatusCode::BAD_REQUEST),
            (r#"[1]"#, StatusCode::UNPROCESSABLE_ENTITY),
            (
                r#"{"model":"m","input":5}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                r#"{"model":"m","input":["a",1]}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                r#"{"model":"m","input":[-1]}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                r#"{"model":"m","input":"x","dimensions":"8"}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                r#"{"model":"m","input":"x","dimensions":-8}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                r#"{"model":"m","input":"x","encoding_format":"hex"}"#,
                StatusCode::BAD_REQUEST,
            ),
        ];
        for (body, status) in cases {
            assert_eq!(parse(body).unwrap_err().status, status, "{body}");
        }
        assert_eq!(
            parse(r#"{"model":7,"input":"x"}"#).unwrap_err().param,
            Some("model")
        );
    }

    #[test]
    fn jina_fields() {
        let parsed = parse(
            r#"{"model":"m","input":["a"],"task":"retrieval.query","normalized":false,"late_chunking":true,"embedding_type":"ubinary"}"#,
        )
        .unwrap();
        assert_eq!(parsed.request.task.as_deref(), Some("retrieval.query"));
        assert_eq!(
            (parsed.request.normalize, parsed.request.late_chunking),
            (Some(false), true)
        );
        assert_eq!(parsed.encoding, VectorEncoding::Ubinary);
        let cases = [
            (
                r#"{"model":"m","input":"x","embedding_type":"int4"}"#,
                StatusCode::BAD_REQUEST,
            ),
            (
                r#"{"model":"m","input":"x","encoding_format":"binary"}"#,
                StatusCode::BAD_REQUEST,
            ),
            (
                r#"{"model":"m","input":"x","encoding_format":"base64","embedding_type":"binary"}"#,
                StatusCode::BAD_REQUEST,
            ),
            (
                r#"{"model":"m","input":"x","task":3}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                r#"{"model":"m","input":"x","late_chunking":"yes"}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        ];
        for (body, status) in cases {
            assert_eq!(parse(body).unwrap_err().status, status, "{body}");
        }
    }
}
