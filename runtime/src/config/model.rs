//! The file's `[[models]]` tables and their `[[models.variants]]`, as written.

use std::path::PathBuf;

use embedrt_backend_core::{DType, Device};
use serde::Deserialize;

/// `[[models]]`: one served model.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name clients put in `model`.
    pub name: String,
    /// More names for the same deployment, each optionally with the task its requests get
    /// when they name none: `aliases = ["m2", { name = "e5-query", task = "query" }]`.
    #[serde(default)]
    pub aliases: Vec<AliasConfig>,
    /// The model folder, relative to the config file; or a hub id (`owner/name`) to download.
    pub path: PathBuf,
    /// The backend plugin that runs it (`onnx`, `candle`, ...): shorthand for one variant. Give
    /// either this or `variants`.
    #[serde(default)]
    pub backend: Option<String>,
    /// Backend options of the `backend` shorthand, handed to the plugin as JSON.
    #[serde(default)]
    pub options: toml::Table,
    /// Device of the `backend` shorthand.
    #[serde(default)]
    pub device: Device,
    /// Number format of the `backend` shorthand; default: the backend's.
    #[serde(default)]
    pub dtype: Option<DType>,
    /// Copies of the `backend` shorthand's model, each on its own share of the cores.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// `[[models.variants]]`: backends serving this model side by side (A/B tests, shadows).
    #[serde(default)]
    pub variants: Vec<VariantConfig>,
    /// Most inputs in one request.
    #[serde(default = "default_max_inputs")]
    pub max_inputs_per_request: usize,
    /// Most tokens in one request, summed over its inputs (OpenAI's limit is 300,000).
    #[serde(default = "default_max_tokens")]
    pub max_tokens_per_request: usize,
    /// Whether over-long inputs are cut (true) or rejected (false) when a request does not say.
    #[serde(default = "default_truncate")]
    pub truncate: bool,
    /// For models with task adapters: the task of requests that name none (default
    /// `text-matching`; `none` selects the base weights).
    #[serde(default)]
    pub default_task: Option<String>,
    /// Batching limits.
    #[serde(default)]
    pub batching: BatchingConfig,
    /// Whether this model uses the `[cache]` (when one is configured).
    #[serde(default = "default_cache")]
    pub cache: bool,
    /// Whose token ids requests send as `input`: the model's (`model`, the default) or
    /// OpenAI's (`cl100k_base`).
    #[serde(default)]
    pub token_ids: TokenIds,
}

/// Whose vocabulary the token ids of a request's `input` are in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum TokenIds {
    /// The model's own: used as they are.
    #[default]
    #[serde(rename = "model")]
    Model,
    /// OpenAI's `cl100k_base`, made by tiktoken (LangChain's `OpenAIEmbeddings` and other
    /// OpenAI clients send texts so): decoded to text, which the model then tokenizes.
    #[serde(rename = "cl100k_base")]
    Cl100kBase,
}

/// One entry of a model's `aliases`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(
    untagged,
    expecting = "an alias: a name, or a table with `name` and optionally `task` (nothing else)"
)]
pub enum AliasConfig {
    /// `"m2"`: another name, with the model's default task.
    Name(String),
    /// `{ name = "e5-query", task = "query" }`: another name whose requests run `task` when they
    /// name none (for clients that cannot send a task, such as OpenAI's).
    Table(AliasTable),
}

/// `{ name = ..., task = ... }` in `aliases`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasTable {
    /// The name.
    pub name: String,
    /// The task of requests through this name that name none; default: the model's.
    #[serde(default)]
    pub task: Option<String>,
}

/// `[[models.variants]]`: one backend serving a model, with its share of the traffic.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantConfig {
    /// The variant's name (in metrics and the `x-embedrt-variant` header); default: the backend.
    #[serde(default)]
    pub name: Option<String>,
    /// The backend plugin.
    pub backend: String,
    /// Backend options, handed to the plugin as JSON.
    #[serde(default)]
    pub options: toml::Table,
    /// Where the backend runs: `"cpu"` (default), `"cuda"` or `"cuda:N"`.
    #[serde(default)]
    pub device: Device,
    /// The number format to compute in (`"f32"`, `"f16"`, `"bf16"`, `"int8"`); default: the
    /// backend's. A backend refuses what it cannot run.
    #[serde(default)]
    pub dtype: Option<DType>,
    /// Share of the traffic, relative to the other serving variants' weights.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// A shadow gets a copy of the traffic after the serving variant answered; its vectors are
    /// compared with the answer (metrics) and never returned.
    #[serde(default)]
    pub shadow: bool,
    /// For shadows: the fraction of requests copied, 0 to 1.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: f64,
    /// How many copies of the model the backend loads, each with `cores / replicas` threads and
    /// its own inference thread, all taking batches from the variant's one queue. On a CPU, 2
    /// single-threaded copies on 2 cores answer more than one 2-threaded copy (see BENCHMARKS.md,
    /// "Replicas") at the cost of memory (one copy of the weights each) and of single-request
    /// latency (one core per batch).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
}

/// `batching = { ... }`: how the scheduler forms batches.
///
/// The batch size limits default by device, per variant: a GPU is fed larger batches (more work per
/// kernel launch) than a CPU, whose latency grows with batch size.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingConfig {
    /// Most tokens in one batch (padding counted for backends that pad); default: by the
    /// variant's device ([`BatchLimits::default_for`](embedrt_backend_core::BatchLimits::default_for)).
    pub max_batch_tokens: Option<usize>,
    /// Most sequences in one batch (the misnomer is kept for compatibility: one request may
    /// bring many sequences); default: by the variant's device.
    pub max_batch_requests: Option<usize>,
    /// How long the oldest queued input may wait for others to join its batch, in milliseconds.
    /// 0: an idle backend starts at once; under load, batches still form from what queued while
    /// the backend was busy.
    pub max_wait_ms: u64,
    /// Most inputs waiting; beyond it requests get 429 (a request larger than this is taken
    /// when nothing is waiting).
    pub max_queued_inputs: usize,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self {
            max_batch_tokens: None,
            max_batch_requests: None,
            max_wait_ms: 0,
            max_queued_inputs: 4096,
        }
    }
}

fn default_weight() -> u32 {
    1
}

fn default_sample_rate() -> f64 {
    1.0
}

fn default_replicas() -> usize {
    1
}

fn default_max_tokens() -> usize {
    300_000
}

fn default_max_inputs() -> usize {
    2048
}

fn default_truncate() -> bool {
    true
}

fn default_cache() -> bool {
    true
}
