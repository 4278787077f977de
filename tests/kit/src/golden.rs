//! The fixtures' reference outputs, as their `expected.json` files hold them.

use std::collections::HashMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::paths::fixtures_dir;

/// Reads and parses the JSON file `path`.
///
/// # Panics
///
/// When the file cannot be read or does not hold a `T`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// sentence-transformers' output for all-MiniLM-L6-v2.
#[derive(Clone, Debug, Deserialize)]
pub struct MiniLm {
    /// The input texts.
    pub texts: Vec<String>,
    /// Token ids per text, special tokens included.
    pub token_ids: Vec<Vec<u32>>,
    /// Normalized embeddings per text.
    pub embeddings: Vec<Vec<f32>>,
}

/// Reads the all-MiniLM-L6-v2 golden data.
pub fn minilm() -> MiniLm {
    read_json(&fixtures_dir().join("all-MiniLM-L6-v2/expected.json"))
}

/// The official code's outputs for a jina-embeddings-v3 fixture.
#[derive(Clone, Debug, Deserialize)]
pub struct Jina {
    /// The input texts of every case.
    pub texts: Vec<String>,
    /// One case per task, size and normalization.
    pub cases: Vec<JinaCase>,
    /// The token ids of the texts, per task name (`none` included).
    #[serde(default)]
    pub token_ids: HashMap<String, Vec<Vec<u32>>>,
    /// One batch mixing every adapter.
    pub mixed_batch: Option<MixedBatch>,
    /// Last-layer token states of single documents.
    #[serde(default)]
    pub token_states: Vec<JinaTokenStates>,
}

/// One case: the texts run with a task at a size.
#[derive(Clone, Debug, Deserialize)]
pub struct JinaCase {
    /// The task; `None` for the base weights.
    pub task: Option<String>,
    /// The Matryoshka size.
    pub dimensions: usize,
    /// Whether the vectors are normalized; `None`: they are.
    pub normalized: Option<bool>,
    /// One vector per text.
    pub embeddings: Vec<Vec<f32>>,
}

/// A batch whose rows run different adapters.
#[derive(Clone, Debug, Deserialize)]
pub struct MixedBatch {
    /// Each row's text and task.
    pub rows: Vec<MixedRow>,
    /// One normalized vector per row, at the full size.
    pub embeddings: Vec<Vec<f32>>,
}

/// One row of a [`MixedBatch`].
#[derive(Clone, Debug, Deserialize)]
pub struct MixedRow {
    /// The text.
    pub text: String,
    /// Its task.
    pub task: String,
}

/// The token states of one document with one task.
#[derive(Clone, Debug, Deserialize)]
pub struct JinaTokenStates {
    /// The task.
    pub task: String,
    /// The document's token ids (instruction and special tokens included).
    pub input_ids: Vec<u32>,
    /// One row per token.
    pub last_hidden_state: Vec<Vec<f32>>,
}

/// Reads the golden data of the jina fixture in `dir`.
pub fn jina(dir: &Path) -> Jina {
    read_json(&dir.join("expected.json"))
}

/// sentence-transformers' outputs for one of the encoder fixtures (XLM-RoBERTa, MPNet,
/// ModernBERT).
#[derive(Clone, Debug, Deserialize)]
pub struct Encoder {
    /// The input texts of every case.
    pub texts: Vec<String>,
    /// The token limit the reference truncated at.
    pub max_seq_length: usize,
    /// One case per prompt: none first, then each of `config_sentence_transformers.json`'s.
    pub cases: Vec<EncoderCase>,
}

/// One prompt's outputs.
#[derive(Clone, Debug, Deserialize)]
pub struct EncoderCase {
    /// The prompt's name (the task requests name); `None` for no prompt.
    pub prompt_name: Option<String>,
    /// The text put before each input.
    pub prompt: String,
    /// Token ids per text, prompt and special tokens included.
    pub token_ids: Vec<Vec<u32>>,
    /// One vector per text, as `encode` returns them (normalized).
    pub embeddings: Vec<Vec<f32>>,
}

/// Reads the golden data of the encoder fixture in `dir`.
pub fn encoder(dir: &Path) -> Encoder {
    read_json(&dir.join("expected.json"))
}

/// sentence-transformers' `CrossEncoder` outputs for one of the reranker fixtures.
#[derive(Clone, Debug, Deserialize)]
pub struct CrossEncoder {
    /// The query every document was scored against.
    pub query: String,
    /// The documents, in request order.
    pub documents: Vec<String>,
    /// Each (query, document) pair's token ids, special tokens included.
    pub token_ids: Vec<Vec<u32>>,
    /// The model's one logit per pair.
    pub raw_logits: Vec<f32>,
    /// The logits after the model's activation.
    pub scores: Vec<f32>,
    /// The documents by score, best first.
    pub ranking: Vec<Ranked>,
}

/// One place of a [`CrossEncoder`]'s ranking.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Ranked {
    /// The document's index.
    pub corpus_id: usize,
    /// Its score.
    pub score: f32,
}

/// Reads the golden data of the cross-encoder fixture in `dir`.
pub fn cross_encoder(dir: &Path) -> CrossEncoder {
    read_json(&dir.join("expected.json"))
}
