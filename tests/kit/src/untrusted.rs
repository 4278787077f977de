//! What every parser of untrusted input must do with any input: answer (a request, or a refusal
//! in the API's own terms) without panicking, within its limits. Each function takes raw bytes,
//! runs one parser and asserts its invariants; the fuzz targets (`fuzz/`, libFuzzer on nightly)
//! and the property tests (`tests/tests/parsers.rs`, proptest on stable, with every file of the
//! fuzz corpus and of its regressions) call the same functions.

use std::path::Path;
use std::sync::OnceLock;

use embedrt_api::grpc::convert;
use embedrt_api::http::body::BodyLimits;
use embedrt_api::http::embeddings::parse_request;
use embedrt_api::http::error::ApiError;
use embedrt_api::http::rerank::{parse_rerank_request, RerankRoute};
use embedrt_api::http::tokenize::parse_tokenize_request;
use embedrt_proto::v1 as pb;
use embedrt_runtime::config::{Config, Overrides, TokenIds};
use embedrt_runtime::tokenize::{TextTokenizer, TokenizeError, MAX_CHARS_PER_TOKEN};
use embedrt_runtime::Input;
use prost::Message;

/// A check of one parser, over raw bytes.
pub type Check = fn(&[u8]);

/// Every check, under the name of its fuzz target (`fuzz/fuzz_targets/<name>.rs`).
pub const CHECKS: [(&str, Check); 4] = [
    ("http_body", http_body),
    ("grpc_messages", grpc_messages),
    ("config_file", config_file),
    ("truncation", truncation),
];

/// The limits bodies are read within: small, so that inputs reach them.
pub const LIMITS: BodyLimits = BodyLimits {
    max_inputs: 8,
    max_tokens: 64,
};

/// The token limit of the tokenizer [`truncation`] cuts with: small, so that texts reach it.
pub const MAX_TOKENS: usize = 16;

/// Reads `body` as each HTTP route would (embeddings, tokenize, the three rerank routes).
///
/// # Panics
///
/// When a parser panics, takes more inputs or token ids than [`LIMITS`], or refuses with a
/// status other than 400, 413 or 422, or without a message and a code.
pub fn http_body(body: &[u8]) {
    match parse_request(body, LIMITS) {
        Ok(parsed) => {
            let inputs = &parsed.request.inputs;
            assert!(inputs.len() <= LIMITS.max_inputs, "{} inputs", inputs.len());
            let ids: usize = inputs
                .iter()
                .map(|input| match input {
                    Input::Tokens(ids) => ids.len(),
                    Input::Text(_) => 0,
                })
                .sum();
            assert!(ids <= LIMITS.max_tokens, "{ids} token ids");
        }
        Err(refusal) => check_refusal(&refusal),
    }
    match parse_tokenize_request(body, LIMITS) {
        Ok(request) => assert!(request.texts.len() <= LIMITS.max_inputs),
        Err(refusal) => check_refusal(&refusal),
    }
    for route in [RerankRoute::V1, RerankRoute::V2, RerankRoute::AnyShape] {
        if let Err(refusal) = parse_rerank_request(body, LIMITS, route) {
            check_refusal(&refusal);
        }
    }
}

/// A client's fault, said in OpenAI's terms.
fn check_refusal(refusal: &ApiError) {
    assert!(
        [400, 413, 422].contains(&refusal.status.as_u16()),
        "status {} for {}",
        refusal.status,
        refusal.message
    );
    assert!(!refusal.message.is_empty() && !refusal.code.is_empty());
}

/// Decodes `message` as each `embedrt.v1` request and converts what decodes, as the gRPC API
/// does.
///
/// # Panics
///
/// When decoding or converting panics, a request loses or gains inputs, or a refusal is not
/// INVALID_ARGUMENT.
pub fn grpc_messages(message: &[u8]) {
    if let Ok(request) = pb::EmbedRequest::decode(message) {
        let inputs = request.texts.len().max(request.tokens.len());
        match convert::embed_request(request) {
            Ok((request, _)) => assert_eq!(request.inputs.len(), inputs),
            Err(status) => assert_eq!(status.code(), tonic::Code::InvalidArgument),
        }
    }
    if let Ok(request) = pb::RerankRequest::decode(message) {
        let documents = request.documents.len();
        assert_eq!(convert::rerank_request(request).documents.len(), documents);
    }
    if let Ok(request) = pb::TokenizeRequest::decode(message) {
        let texts = request.texts.len();
        assert_eq!(convert::tokenize_request(request).texts.len(), texts);
    }
}

/// Reads `file` as a config file and resolves it, as the server does at start and on reload.
///
/// # Panics
///
/// When reading or resolving panics, or a resolved plan serves a model without a serving
/// variant or with a limit of 0.
pub fn config_file(file: &[u8]) {
    let Ok(text) = std::str::from_utf8(file) else {
        return;
    };
    let Ok(config) = Config::parse(text) else {
        return;
    };
    let Ok(plan) = config.resolve(Path::new("/nonexistent/embedrt"), &Overrides::default()) else {
        return;
    };
    for model in &plan.models {
        assert!(model.variants.iter().any(|v| v.serves()), "{}", model.name);
        assert!(
            model.max_inputs >= 1 && model.max_tokens >= 1,
            "{}",
            model.name
        );
    }
}

/// all-MiniLM-L6-v2's tokenizer (as `scripts/setup.sh` prepares it) cutting at [`MAX_TOKENS`],
/// the same reading the whole of any text, and one reading token ids as cl100k_base's.
fn tokenizers() -> &'static [TextTokenizer; 3] {
    static TOKENIZERS: OnceLock<[TextTokenizer; 3]> = OnceLock::new();
    TOKENIZERS.get_or_init(|| {
        let card = crate::minilm::card();
        let load = |max| TextTokenizer::load(&card.path, max, card.vocab_size).unwrap();
        [
            load(MAX_TOKENS),
            load(1 << 24),
            load(MAX_TOKENS).reading_ids_as(TokenIds::Cl100kBase),
        ]
    })
}

/// Tokenizes `bytes` (as lossy UTF-8) with and without truncation, and reads them as cl100k_base
/// token ids (4 bytes an id).
///
/// # Panics
///
/// When tokenizing panics; an answer is longer than [`MAX_TOKENS`]; a text that fits is not
/// tokenized as a whole, or one that does not is not cut to the whole's first tokens (for a text
/// read whole) or refused without truncation; or ids are refused for another reason than not
/// being cl100k_base's.
pub fn truncation(bytes: &[u8]) {
    let [cut, whole, cl100k] = tokenizers();
    let text = String::from_utf8_lossy(bytes);
    let reference = whole.encode(&text, true).expect("a text always tokenizes");
    // Texts longer than this are read no further (see `MAX_CHARS_PER_TOKEN`).
    let read_whole = text.chars().count() <= MAX_CHARS_PER_TOKEN * (MAX_TOKENS - 1);
    for truncate in [true, false] {
        match cut.encode(&text, truncate) {
            Ok(ids) if reference.len() <= MAX_TOKENS && read_whole => assert_eq!(ids, reference),
            Ok(ids) => {
                assert!(ids.len() <= MAX_TOKENS, "{} tokens", ids.len());
                if read_whole {
                    assert!(truncate, "an over-long text was taken without truncation");
                    assert_eq!(ids[..MAX_TOKENS - 1], reference[..MAX_TOKENS - 1]);
                    assert_eq!(ids.last(), reference.last());
                }
            }
            Err(TokenizeError::TooLong { .. }) => {
                assert!(!truncate && reference.len() > MAX_TOKENS);
            }
            Err(TokenizeError::TooManyChars { .. }) => assert!(!truncate && !read_whole),
            Err(other) => panic!("{other}"),
        }
    }
    let ids: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|id| u32::from_le_bytes([id[0], id[1], id[2], id[3]]) % 110_000)
        .collect();
    match cl100k.encode_ids(ids, "", true) {
        Ok(ids) => assert!(ids.len() <= MAX_TOKENS),
        Err(TokenizeError::NotCl100kId(_) | TokenizeError::Empty) => {}
        Err(other) => panic!("{other}"),
    }
}
