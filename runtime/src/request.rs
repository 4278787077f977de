//! The request types every front end (HTTP, gRPC) turns its wire formats into (embeddings,
//! tokenization, reranking), their answers, and the errors they can get back.

/// One input: text to tokenize, or token ids used as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Text; the model's tokenizer adds its special tokens.
    Text(String),
    /// Token ids: of the model's own vocabulary, used as they are; or OpenAI's, read back into
    /// text, for a model with `token_ids = "cl100k_base"` (see [`crate::cl100k`]).
    Tokens(Vec<u32>),
}

/// An embedding request, already parsed from the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbedRequest {
    /// The served model's name; `None`: the only model, when one is served.
    pub model: Option<String>,
    /// The inputs, answered in this order.
    pub inputs: Vec<Input>,
    /// Matryoshka size: keep this many leading dimensions.
    pub dimensions: Option<usize>,
    /// Cut over-long inputs (true) or reject them (false); the model's default when `None`.
    pub truncate: Option<bool>,
    /// The task (adapter) to run, e.g. `retrieval.query`, or `none` for the base weights; the
    /// model's default when `None`. Only for models with adapters.
    pub task: Option<String>,
    /// L2-normalize the vectors; the model's own default when `None`. (Jina's HTTP field is
    /// `normalized`, the gRPC field `normalize`.)
    pub normalize: Option<bool>,
    /// Treat the inputs as consecutive chunks of one document, encoded in one pass, and return
    /// one vector per chunk.
    pub late_chunking: bool,
    /// The caller's user id: requests with the same one go to the same variant.
    pub user: Option<String>,
}

impl EmbedRequest {
    /// A request to `model` for `inputs` with every option at its default.
    pub fn new(model: Option<String>, inputs: Vec<Input>) -> Self {
        Self {
            model,
            inputs,
            dimensions: None,
            truncate: None,
            task: None,
            normalize: None,
            late_chunking: false,
            user: None,
        }
    }
}

/// A request for the token ids an [`EmbedRequest`] with the same fields would run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizeRequest {
    /// The served model's name; `None`: the only model, when one is served.
    pub model: Option<String>,
    /// The texts to tokenize.
    pub texts: Vec<String>,
    /// The task whose instruction prefix is counted; the model's default when `None`.
    pub task: Option<String>,
    /// Cut over-long texts (true) or reject them (false); the model's default when `None`.
    pub truncate: Option<bool>,
}

impl From<TokenizeRequest> for EmbedRequest {
    /// The embedding request whose token ids `request` asks for: its texts, task and truncation.
    fn from(request: TokenizeRequest) -> Self {
        EmbedRequest {
            task: request.task,
            truncate: request.truncate,
            ..EmbedRequest::new(
                request.model,
                request.texts.into_iter().map(Input::Text).collect(),
            )
        }
    }
}

/// The answer to a [`TokenizeRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizeResponse {
    /// The model that answered.
    pub model: String,
    /// Each text's token ids, special tokens and instruction included, in input order.
    pub tokens: Vec<Vec<u32>>,
}

/// The answer to an [`EmbedRequest`].
#[derive(Clone, Debug, PartialEq)]
pub struct EmbedResponse {
    /// The model that answered.
    pub model: String,
    /// One vector per input, in input order.
    pub embeddings: Vec<Vec<f32>>,
    /// Tokens processed, special tokens included.
    pub prompt_tokens: usize,
    /// The variant that answered.
    pub served_by: ServedBy,
}

/// The variant that answered a request: its name, its backend and where it runs (`cpu`,
/// `cuda:0`), as the HTTP API's `x-embedrt-*` headers and gRPC answers report them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedBy {
    /// The variant's name.
    pub variant: String,
    /// Its backend.
    pub backend: String,
    /// Its device.
    pub device: String,
}

/// A rerank request: score each document's relevance to the query with a cross-encoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RerankRequest {
    /// The served model's name; `None`: the only model, when one is served.
    pub model: Option<String>,
    /// The query every document is scored against.
    pub query: String,
    /// The documents, answered by their index in this list.
    pub documents: Vec<String>,
    /// Keep only the best this many results; all when `None`.
    pub top_n: Option<usize>,
    /// Cut each document to this many tokens before pairing it with the query.
    pub max_tokens_per_doc: Option<usize>,
    /// Cut over-long pairs (true) or reject them (false); the model's default when `None`.
    pub truncate: Option<bool>,
    /// Return the model's logits instead of scores after its activation.
    pub raw_scores: bool,
    /// Return each result's document text.
    pub return_documents: bool,
    /// The caller's user id: requests with the same one go to the same variant.
    pub user: Option<String>,
}

impl RerankRequest {
    /// A request to `model` ranking `documents` against `query`, every option at its default.
    pub fn new(model: Option<String>, query: String, documents: Vec<String>) -> Self {
        Self {
            model,
            query,
            documents,
            top_n: None,
            max_tokens_per_doc: None,
            truncate: None,
            raw_scores: false,
            return_documents: false,
            user: None,
        }
    }
}

/// One document's place in a [`RerankResponse`].
#[derive(Clone, Debug, PartialEq)]
pub struct RerankResult {
    /// The document's index in the request.
    pub index: usize,
    /// Its relevance: the model's score (its logit when raw scores were asked for).
    pub score: f32,
    /// Its text, when the request asked for the documents back.
    pub document: Option<String>,
}

/// The answer to a [`RerankRequest`].
#[derive(Clone, Debug, PartialEq)]
pub struct RerankResponse {
    /// The model that answered.
    pub model: String,
    /// The documents best first (ties in request order), at most `top_n` of them.
    pub results: Vec<RerankResult>,
    /// Tokens processed (every pair's, special tokens included).
    pub prompt_tokens: usize,
    /// The variant that answered.
    pub served_by: ServedBy,
}

/// Why a request got no embeddings. Front ends map each kind to their own status codes.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum EmbedError {
    /// The request is malformed or asks for something the model cannot do.
    #[error("{message}")]
    InvalidRequest {
        /// What is wrong, for the client.
        message: String,
        /// The request field at fault.
        param: Option<&'static str>,
    },
    /// No model of that name is served.
    #[error("the model `{0}` does not exist")]
    ModelNotFound(String),
    /// The request names no model, and several are served.
    #[error("`model` is required: this server serves several models")]
    MissingModel,
    /// More inputs than the model allows in one request.
    #[error("too many inputs: {count}, the limit is {limit}")]
    TooManyInputs {
        /// Inputs sent.
        count: usize,
        /// The model's limit.
        limit: usize,
    },
    /// The model's queue is full; the client should retry later.
    #[error("the server is busy: {0}")]
    Overloaded(String),
    /// The model cannot serve now (loading, shutting down, or its backend failed).
    #[error("the model is unavailable: {0}")]
    Unavailable(String),
    /// An unexpected backend failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EmbedError {
    /// An [`EmbedError::InvalidRequest`] about `param`.
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        EmbedError::InvalidRequest {
            message: message.into(),
            param: Some(param),
        }
    }
}
