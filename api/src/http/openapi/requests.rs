//! The request bodies as the OpenAPI document states them. The handlers read bodies with their
//! own bounded reader (see [`super::super::body`]), so these types only describe: they are never
//! built. What depends on the models served (the `model` names, the widest limits, the tasks)
//! is filled in per document by [`super::served`].

use serde_json::{json, Value};
use utoipa::ToSchema;

/// Adds to `document` the rules of the request bodies that their types cannot state: fields
/// that depend on each other, and integers of any width.
pub(super) fn add_rules(document: &mut Value) {
    let schemas = &mut document["components"]["schemas"];
    let both = json!({"not": {"required": ["encoding_format", "embedding_type"]}});
    let absent = |field: &str| json!({"properties": {field: {"type": "null"}}});
    let same = |format: &str| {
        json!({"properties": {
            "encoding_format": {"const": format},
            "embedding_type": {"const": format}
        }})
    };
    schemas["EmbeddingsBody"]["allOf"] = json!([
        // `encoding_format` and `embedding_type` agree when both are given.
        {"anyOf": [
            both,
            absent("encoding_format"),
            absent("embedding_type"),
            same("float"),
            same("base64")
        ]},
        // Late chunking takes texts.
        {
            "if": {"properties": {"late_chunking": {"const": true}}, "required": ["late_chunking"]},
            "then": {"properties": {"input": {"anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}}
            ]}}}
        }
    ]);
    // Counts and ids are read as whole numbers of any size; the limits are in the schemas.
    for body in [
        "EmbeddingsBody",
        "EmbeddingInput",
        "CohereRerankBody",
        "TeiRerankBody",
    ] {
        drop_formats(&mut schemas[body]);
    }
}

/// Removes the integer widths (`int32`, `int64`) from `schema` and its subschemas.
fn drop_formats(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            if object
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| f.starts_with("int"))
            {
                object.remove("format");
            }
            object.values_mut().for_each(drop_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_formats),
        _ => {}
    }
}

/// An `input`: one text, several texts, one input as token ids, or several inputs as token ids.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    #[schema(title = "text")]
    Text(String),
    /// Several texts, answered in order.
    #[schema(title = "texts")]
    Texts(Vec<String>),
    /// One input as token ids (of the model's vocabulary, or cl100k_base's where the model is
    /// configured with `token_ids = "cl100k_base"`).
    #[schema(title = "token ids")]
    TokenIds(Vec<u32>),
    /// Several inputs as token ids.
    #[schema(title = "token-id arrays")]
    TokenIdArrays(Vec<Vec<u32>>),
}

/// The body of `POST /v1/embeddings`: OpenAI's request with Jina's fields. `null` stands for a
/// field left out.
#[derive(ToSchema)]
#[schema(example = json!({"model": "all-MiniLM-L6-v2", "input": ["The food was delicious."]}))]
pub struct EmbeddingsBody {
    /// The model (a name or an alias); may be left out when the server serves one model.
    pub model: Option<String>,
    /// What to embed.
    pub input: EmbeddingInput,
    /// `float` (the default) or `base64` (little-endian f32 bytes).
    pub encoding_format: Option<EncodingFormat>,
    /// Jina's name for the encoding, which adds `binary` (sign bits as signed bytes) and
    /// `ubinary` (sign bits as unsigned bytes); when both fields are given they must agree.
    pub embedding_type: Option<EmbeddingType>,
    /// A size to cut each vector to (Matryoshka): up to the model's width, or one of its
    /// Matryoshka sizes when it lists them (see `/v1/models`).
    #[schema(minimum = 1)]
    pub dimensions: Option<u32>,
    /// The task adapter or prompt (jina-embeddings-v3's `retrieval.query`, ...); only for models
    /// with tasks.
    pub task: Option<String>,
    /// Whether to scale each vector to unit length (the model's setting when left out).
    pub normalized: Option<bool>,
    /// Whether an input longer than the model's `max_tokens` is cut (true, the default) or
    /// refused with 400.
    pub truncate: Option<bool>,
    /// Embeds the inputs as chunks of one document, each chunk's vector seeing the whole
    /// document (texts only).
    pub late_chunking: Option<bool>,
    /// The caller, for sticky A/B routing and logs.
    pub user: Option<String>,
}

/// OpenAI's `encoding_format`.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// Arrays of numbers.
    Float,
    /// Base64 of little-endian f32 bytes.
    Base64,
}

/// Jina's `embedding_type`.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum EmbeddingType {
    /// Arrays of numbers.
    Float,
    /// Base64 of little-endian f32 bytes.
    Base64,
    /// Sign bits packed 8 to a byte, written as signed bytes (byte - 128).
    Binary,
    /// Sign bits packed 8 to a byte, written as unsigned bytes.
    Ubinary,
}

/// The body of `POST /v1/tokenize`.
#[derive(ToSchema)]
#[schema(example = json!({"model": "all-MiniLM-L6-v2", "input": "How many tokens is this?"}))]
pub struct TokenizeBody {
    /// The model (a name or an alias); may be left out when the server serves one model.
    pub model: Option<String>,
    /// The texts to tokenize.
    pub input: TokenizeInput,
    /// The task whose instruction is put before each text, as `/v1/embeddings` would.
    pub task: Option<String>,
    /// Whether a text longer than the model's `max_tokens` is cut (the default) or refused.
    pub truncate: Option<bool>,
}

/// What `/v1/tokenize` takes: one text or several.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum TokenizeInput {
    /// One text.
    #[schema(title = "text")]
    Text(String),
    /// Several texts, answered in order.
    #[schema(title = "texts")]
    Texts(Vec<String>),
}

/// A document to rank: its text, or an object with a `text` (other fields are ignored).
#[derive(ToSchema)]
#[serde(untagged)]
pub enum RerankDocument {
    /// The text.
    #[schema(title = "text")]
    Text(String),
    /// An object holding the text.
    #[schema(title = "object")]
    Object(DocumentObject),
}

/// A document given as an object.
#[derive(ToSchema)]
pub struct DocumentObject {
    /// The document's text.
    pub text: String,
}

/// The body of `POST /v1/rerank` and `/v2/rerank` (Cohere's and Jina's request), also taken by
/// `POST /rerank`.
#[derive(ToSchema)]
#[schema(example = json!({
    "model": "bge-reranker-v2-m3",
    "query": "What is the capital of France?",
    "documents": ["Paris is the capital of France.", "Berlin is in Germany."],
    "top_n": 1,
    "return_documents": true
}))]
pub struct CohereRerankBody {
    /// The reranker (a name or an alias); may be left out when the server serves one model.
    pub model: Option<String>,
    /// The query.
    pub query: String,
    /// The documents to rank.
    pub documents: Vec<RerankDocument>,
    /// Answers only the best `top_n` documents.
    #[schema(minimum = 1)]
    pub top_n: Option<u32>,
    /// Whether each result carries its document's text.
    pub return_documents: Option<bool>,
    /// Cuts each document to this many tokens before pairing it with the query.
    #[schema(minimum = 1)]
    pub max_tokens_per_doc: Option<u32>,
    /// Whether a pair longer than the model's `max_tokens` is cut (the default) or refused.
    pub truncate: Option<bool>,
    /// Whether scores are the model's raw logits instead of probabilities.
    pub raw_scores: Option<bool>,
    /// The caller, for sticky A/B routing and logs.
    pub user: Option<String>,
}

/// The body of `POST /rerank` in Text Embeddings Inference's shape (told apart by `texts`).
#[derive(ToSchema)]
#[schema(example = json!({"query": "What is Deep Learning?", "texts": ["Deep Learning is ...", "Cheese is ..."]}))]
pub struct TeiRerankBody {
    /// The reranker (a name or an alias); may be left out when the server serves one model.
    pub model: Option<String>,
    /// The query.
    pub query: String,
    /// The texts to rank.
    pub texts: Vec<String>,
    /// Whether each result carries its text.
    pub return_text: Option<bool>,
    /// Whether a pair longer than the model's `max_tokens` is cut (the default) or refused.
    pub truncate: Option<bool>,
    /// Only `Right` (pairs are cut at their end, as the reference cross-encoders do).
    #[schema(pattern = "^[Rr][Ii][Gg][Hh][Tt]$")]
    pub truncation_direction: Option<String>,
    /// Whether scores are the model's raw logits instead of probabilities.
    pub raw_scores: Option<bool>,
    /// The caller, for sticky A/B routing and logs.
    pub user: Option<String>,
}

/// The body `POST /rerank` takes: TEI's (with `texts`) or Cohere's (with `documents`).
#[derive(ToSchema)]
#[serde(untagged)]
pub enum AnyRerankBody {
    /// Text Embeddings Inference's request.
    Tei(TeiRerankBody),
    /// Cohere's request.
    Cohere(CohereRerankBody),
}
