//! Metric names, and the labels that identify a model variant in them. Recording goes through the
//! `metrics` facade; the binary installs the Prometheus exporter that serves `GET /metrics`.

use metrics::Label;

use crate::request::EmbedError;

/// Requests answered, by `status` (`ok`, `invalid`, `overloaded`, `unavailable`, `internal`).
pub const REQUESTS: &str = "embedrt_requests_total";
/// Whole request time inside the runtime (tokenization, queue, inference, post-processing).
pub const REQUEST_SECONDS: &str = "embedrt_request_duration_seconds";
/// Time a sequence waited in the queue before its batch started.
pub const QUEUE_SECONDS: &str = "embedrt_queue_duration_seconds";
/// Time the backend took for one batch.
pub const INFERENCE_SECONDS: &str = "embedrt_inference_duration_seconds";
/// Sequences per batch.
pub const BATCH_SIZE: &str = "embedrt_batch_size";
/// Tokens per batch (without padding).
pub const BATCH_TOKENS: &str = "embedrt_batch_tokens";
/// Queued inputs dropped unrun because their caller stopped waiting (it disconnected, cancelled
/// or ran past its deadline).
pub const ABANDONED_INPUTS: &str = "embedrt_abandoned_inputs_total";
/// Tokenizer-pool jobs skipped because their caller stopped waiting before a thread took them.
pub const ABANDONED_JOBS: &str = "embedrt_abandoned_tokenize_jobs_total";
/// Replicas loaded again after their backend failed fatally.
pub const REPLICA_RESTARTS: &str = "embedrt_replica_restarts_total";
/// HTTP connections closed as soon as they were accepted, because `max_connections` were open.
pub const REFUSED_CONNECTIONS: &str = "embedrt_refused_connections_total";
/// Sequences waiting in a variant's queue.
pub const QUEUE_DEPTH: &str = "embedrt_queue_depth";
/// Loaded instances of a variant: 1 while it serves, 2 for a moment while a reload swaps it.
pub const MODEL_LOADED: &str = "embedrt_model_loaded";
/// Lowest cosine between a shadow's vectors and the answer's, per request.
pub const SHADOW_COSINE_MIN: &str = "embedrt_shadow_cosine_min";
/// Mean cosine between a shadow's vectors and the answer's, per request.
pub const SHADOW_COSINE_MEAN: &str = "embedrt_shadow_cosine_mean";
/// Largest absolute difference between a shadow's rerank logits and the answer's, per request
/// (a reranker's shadows record this instead of cosines, which mean nothing for one value).
pub const SHADOW_LOGIT_DIFF_MAX: &str = "embedrt_shadow_logit_diff_max";

/// Inputs whose vector a cache layer had, by `layer` (`memory`, `redis`) and `model`.
pub const CACHE_HITS: &str = "embedrt_cache_hits_total";
/// Inputs a cache layer was asked for and did not have, by `layer` and `model`.
pub const CACHE_MISSES: &str = "embedrt_cache_misses_total";
/// Bytes the in-process cache layer holds (`layer` = `memory`).
pub const CACHE_BYTES: &str = "embedrt_cache_bytes";
/// Redis calls that failed or were skipped, by `kind` (`error`, `timeout`, `circuit_open`) and
/// `model`; the requests went on without Redis.
pub const CACHE_ERRORS: &str = "embedrt_cache_errors_total";

/// The labels of one model variant: `model`, `variant`, `backend`, `device`.
#[derive(Clone, Debug, Default)]
pub struct VariantLabels(Vec<Label>);

impl VariantLabels {
    /// Labels for `variant` of `model`, running on `backend` on `device`.
    pub fn new(model: &str, variant: &str, backend: &str, device: &str) -> Self {
        Self(vec![
            Label::new("model", model.to_string()),
            Label::new("variant", variant.to_string()),
            Label::new("backend", backend.to_string()),
            Label::new("device", device.to_string()),
        ])
    }

    /// These labels, in the form the `metrics` macros take.
    pub fn labels(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    /// These labels plus `key = value`.
    pub fn with(&self, key: &'static str, value: &'static str) -> Vec<Label> {
        let mut labels = self.0.clone();
        labels.push(Label::new(key, value));
        labels
    }
}

/// The `status` label of [`REQUESTS`] for a request's outcome.
pub fn status_label<T>(result: &Result<T, EmbedError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(
            EmbedError::InvalidRequest { .. }
            | EmbedError::TooManyInputs { .. }
            | EmbedError::MissingModel,
        ) => "invalid",
        Err(EmbedError::Overloaded(_)) => "overloaded",
        Err(EmbedError::Unavailable(_) | EmbedError::ModelNotFound(_)) => "unavailable",
        Err(EmbedError::Internal(_)) => "internal",
    }
}
