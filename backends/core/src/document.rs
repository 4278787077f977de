//! The load document: what a backend is told when it loads a model, the JSON contract of the
//! plugin ABI. Its keys are documented once, in the table of `embedrt-plugin-abi`'s crate docs;
//! the Rust names here differ from the JSON keys where one key name means two things (`card` is
//! the model, `max_tokens` is per input in `card` and per batch in `batch`).

use std::path::PathBuf;

use embedrt_plugin_abi::LOAD_DOCUMENT_VERSION;
use serde::{Deserialize, Serialize};

use crate::backend::BackendError;
use crate::placement::{BackendSettings, Device};
use crate::pooling::Pooling;

/// The model families backends implement, by the name the load document's
/// `card.architecture` gives them.
pub mod architecture {
    /// BERT-family encoders (BERT, MiniLM, bge, e5, gte) with absolute positions.
    pub const BERT: &str = "bert";
    /// XLM-RoBERTa encoders (bge-m3, multilingual-e5): BERT's layers, positions counted from
    /// the padding id + 1, one token type.
    pub const XLM_ROBERTA: &str = "xlm-roberta";
    /// MPNet encoders (all-mpnet-base-v2): RoBERTa-style absolute positions plus a bucketed
    /// relative-position bias shared by every layer.
    pub const MPNET: &str = "mpnet";
    /// ModernBERT encoders (modernbert-embed): rotary positions with a global and a local base,
    /// global attention every few layers and a sliding window elsewhere, GeGLU, no biases.
    pub const MODERNBERT: &str = "modernbert";
    /// jina-embeddings-v3: XLM-RoBERTa with rotary positions and stacked LoRA task adapters.
    pub const JINA_V3: &str = "jina-v3";
    /// Qwen3 decoders as embedders (Qwen3-Embedding): causal attention with grouped-query
    /// heads, RMSNorm (q/k norms too), SwiGLU, rotary positions; pooled on the last token.
    pub const QWEN3: &str = "qwen3";
}

/// Everything a backend is told when it loads a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadDocument {
    /// The document's version; 0 for the ABI 1.0 form, which had no `version` key.
    #[serde(default)]
    pub version: u32,
    /// The model (the JSON key is `card`, as since ABI 1.0).
    #[serde(rename = "card")]
    pub model: ModelSpec,
    /// The backend's options, device and dtype.
    #[serde(flatten)]
    pub settings: BackendSettings,
    /// The largest batches the host will send (added within version 1: absent from older hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchLimits>,
    /// The CPU threads the host gives this copy of the model (added within version 1: absent
    /// from older hosts, meaning every core). A host that loads a model several times (replicas)
    /// splits the cores between the copies; see [`LoadDocument::cpu_threads`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_threads: Option<usize>,
}

/// The largest batch a host's scheduler forms for a model: the scheduler's limits, and what
/// backends that plan for shapes ahead of time (TensorRT's optimization profiles) plan for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchLimits {
    /// Most sequences in one batch (JSON `max_rows`; the config's `max_batch_requests`).
    #[serde(rename = "max_rows")]
    pub max_batch_rows: usize,
    /// Most tokens in one batch, padding included for backends that pad (JSON `max_tokens`).
    #[serde(rename = "max_tokens")]
    pub max_batch_tokens: usize,
}

impl BatchLimits {
    /// What a host's scheduler forms on `device` unless configured otherwise: 64 rows and 16384
    /// tokens on the CPU, whose latency grows with batch size; 256 rows of 128 tokens on a GPU,
    /// enough to keep a data-centre GPU busy with short inputs while one batch stays in the tens of
    /// milliseconds for a jina-v3-size model. It lives here, beside the document, because a
    /// backend loaded by an older host (whose document has no `batch`) plans for these.
    pub fn default_for(device: Device) -> Self {
        match device {
            Device::Cpu => Self {
                max_batch_rows: 64,
                max_batch_tokens: 16384,
            },
            Device::Cuda(_) => Self {
                max_batch_rows: 256,
                max_batch_tokens: 32768,
            },
        }
    }

    /// These limits with the token budget raised, when needed, to hold one input of
    /// `max_input_tokens`: the longest input a model takes must always fit a batch of its own.
    pub fn admitting(self, max_input_tokens: usize) -> Self {
        Self {
            max_batch_tokens: self.max_batch_tokens.max(max_input_tokens),
            ..self
        }
    }
}

/// What a backend knows about the model it loads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// The model folder (Hugging Face layout).
    pub path: PathBuf,
    /// The model family (see [`architecture`]): which of the backend's implementations runs it.
    pub architecture: String,
    /// Width of the pooled embedding.
    pub hidden_size: usize,
    /// Number of token ids the model knows.
    pub vocab_size: usize,
    /// Longest input in tokens, special tokens included (JSON `max_tokens`).
    #[serde(rename = "max_tokens")]
    pub max_input_tokens: usize,
    /// How token states are pooled.
    pub pooling: Pooling,
    /// Whether the model's pipeline L2-normalizes its output (done by the host; informative).
    pub normalize: bool,
    /// The id used to pad batches.
    pub pad_token_id: u32,
    /// Task adapter names in adapter order: [`AdapterId::adapter(k)`](crate::AdapterId::adapter)
    /// selects adapter `k`, [`AdapterId::BASE`](crate::AdapterId::BASE) the base weights. Empty
    /// for models without adapters.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// What the network ends in, and so what a backend returns per sequence (added within
    /// version 1: absent from older hosts and for every embedding model, meaning
    /// [`Head::Pooled`]).
    #[serde(default, skip_serializing_if = "Head::is_pooled")]
    pub head: Head,
}

/// What a model's network ends in, and so what [`Backend::embed`](crate::Backend::embed)
/// returns for each sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Head {
    /// The last-layer token states, pooled into one embedding of `hidden_size` values.
    #[default]
    Pooled,
    /// A sequence-classification head on the first token (a cross-encoder reranker): one logit
    /// per label, before any activation.
    Classifier {
        /// The number of labels (logits per sequence).
        labels: usize,
    },
}

impl Head {
    /// Whether this is [`Head::Pooled`].
    pub fn is_pooled(&self) -> bool {
        *self == Head::Pooled
    }

    /// How many values each sequence's output row holds for a model `hidden_size` wide.
    pub fn output_width(self, hidden_size: usize) -> usize {
        match self {
            Head::Pooled => hidden_size,
            Head::Classifier { labels } => labels,
        }
    }
}

impl LoadDocument {
    /// A document of the current version.
    pub fn new(model: ModelSpec, settings: BackendSettings) -> Self {
        Self {
            version: LOAD_DOCUMENT_VERSION,
            model,
            settings,
            batch: None,
            cpu_threads: None,
        }
    }

    /// This document with the host's batch limits.
    pub fn with_batch(mut self, limits: BatchLimits) -> Self {
        self.batch = Some(limits);
        self
    }

    /// This document with the host's CPU thread budget for this copy of the model.
    pub fn with_cpu_threads(mut self, threads: usize) -> Self {
        self.cpu_threads = Some(threads);
        self
    }

    /// How many threads a backend's own CPU pool should have when its options do not say: the
    /// host's budget, else every core (at least 1 either way).
    pub fn cpu_threads(&self) -> usize {
        self.cpu_threads
            .unwrap_or_else(crate::threads::cores)
            .max(1)
    }

    /// Reads a document from JSON.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] when the JSON does not hold a document, or holds one of a newer
    /// version than this crate knows.
    pub fn from_json(json: &str) -> Result<Self, BackendError> {
        read_versioned(json, "load document", |d: &Self| d.version)
    }

    /// The document as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a load document always serializes")
    }
}

/// Parses `json` as a `what`, refusing versions newer than [`LOAD_DOCUMENT_VERSION`].
pub(crate) fn read_versioned<T: serde::de::DeserializeOwned>(
    json: &str,
    what: &str,
    version: impl Fn(&T) -> u32,
) -> Result<T, BackendError> {
    let value: T =
        serde_json::from_str(json).map_err(|e| BackendError::Load(format!("bad {what}: {e}")))?;
    if version(&value) > LOAD_DOCUMENT_VERSION {
        return Err(BackendError::Load(format!(
            "{what} version {} is newer than this backend understands ({LOAD_DOCUMENT_VERSION})",
            version(&value)
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::DType;

    fn spec() -> ModelSpec {
        ModelSpec {
            path: "/m".into(),
            architecture: architecture::BERT.into(),
            hidden_size: 8,
            vocab_size: 100,
            max_input_tokens: 16,
            pooling: Pooling::Mean,
            normalize: true,
            pad_token_id: 0,
            tasks: Vec::new(),
            head: Head::Pooled,
        }
    }

    #[test]
    fn a_classifier_head_is_written_and_an_embedder_says_nothing_of_it() {
        let embedder = LoadDocument::new(spec(), BackendSettings::default());
        assert!(
            !embedder.to_json().contains("head"),
            "{}",
            embedder.to_json()
        );
        let reranker = LoadDocument::new(
            ModelSpec {
                head: Head::Classifier { labels: 1 },
                ..spec()
            },
            BackendSettings::default(),
        );
        let json = reranker.to_json();
        assert!(
            json.contains(r#""head":{"kind":"classifier","labels":1}"#),
            "{json}"
        );
        assert_eq!(LoadDocument::from_json(&json).unwrap(), reranker);
        assert_eq!(reranker.model.head.output_width(8), 1);
        assert_eq!(Head::Pooled.output_width(8), 8);
    }

    #[test]
    fn the_document_round_trips_and_reads_the_1_0_form() {
        let settings = BackendSettings {
            options: serde_json::json!({"a": 1}),
            device: Device::Cuda(0),
            dtype: Some(DType::Bf16),
        };
        let document = LoadDocument::new(spec(), settings)
            .with_batch(BatchLimits {
                max_batch_rows: 64,
                max_batch_tokens: 16384,
            })
            .with_cpu_threads(1);
        let json = document.to_json();
        assert!(
            json.contains(r#""batch":{"max_rows":64,"max_tokens":16384}"#),
            "{json}"
        );
        assert!(json.contains(r#""card":{"#) && json.contains(r#""max_tokens":16,"#));
        assert!(json.contains(r#""cpu_threads":1"#), "{json}");
        assert_eq!(document.cpu_threads(), 1);
        assert!(
            json.contains(r#""device":"cuda:0""#) && json.contains(r#""dtype":"bf16""#),
            "{json}"
        );
        assert_eq!(LoadDocument::from_json(&json).unwrap(), document);
        // What an ABI 1.0 host sent: no version, device or dtype.
        let old = r#"{"card":{"path":"/m","architecture":"bert","hidden_size":8,"vocab_size":100,
            "max_tokens":16,"pooling":"mean","normalize":true,"pad_token_id":0},"options":null}"#;
        let read = LoadDocument::from_json(old).unwrap();
        assert_eq!(read.cpu_threads(), crate::threads::cores());
        assert_eq!(read.model.max_input_tokens, 16);
        assert_eq!(
            (read.version, read.settings, read.model.tasks, read.batch),
            (0, BackendSettings::default(), Vec::new(), None)
        );
        let newer = json.replace(r#""version":1"#, r#""version":2"#);
        assert!(LoadDocument::from_json(&newer)
            .unwrap_err()
            .to_string()
            .contains("version 2"));
    }

    #[test]
    fn a_batch_always_admits_the_longest_input() {
        let limits = BatchLimits {
            max_batch_rows: 8,
            max_batch_tokens: 4096,
        };
        assert_eq!(limits.admitting(512), limits);
        assert_eq!(
            limits.admitting(8192),
            BatchLimits {
                max_batch_rows: 8,
                max_batch_tokens: 8192
            }
        );
    }
}
