//! The backend interface: a synchronous, object-safe [`Backend`] that embeds padding-free batches.

use std::ops::Range;

use crate::placement::DType;

/// What a loaded model can do, as its backend reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Width of each row [`Backend::embed`] returns: the pooled embedding, or for a model loaded
    /// with a classifier head ([`Head::Classifier`](crate::Head::Classifier)) its number of
    /// labels.
    pub hidden_size: usize,
    /// Longest input the backend accepts, in tokens, special tokens included.
    pub max_input_tokens: usize,
    /// Whether one batch may hold sequences of different adapters.
    pub mixed_tasks: bool,
    /// Whether the backend pads the batch to its longest sequence (so padding costs compute).
    pub pads_batches: bool,
    /// Whether [`Backend::embed_tokens`] is implemented.
    pub token_states: bool,
    /// Whether [`AdapterId::BASE`] (the base weights, no adapter) can run.
    pub base_task: bool,
    /// The number format the model computes in; `None` when not reported (ABI 1.0 plugins).
    pub dtype: Option<DType>,
}

/// The weights a sequence runs with: the model's base weights, or one of its task adapters.
///
/// Adapter `k` (the `k`-th name of the load document's `model.tasks`) is `AdapterId::adapter(k)`;
/// across the ABI it is the integer `k + 1`, and [`AdapterId::BASE`] is 0. This is the backend's
/// id space, not the host's task ids: a task without an adapter (a prompt) runs on
/// [`AdapterId::BASE`].
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AdapterId(pub(crate) u32);

impl AdapterId {
    /// The base weights, without an adapter.
    pub const BASE: AdapterId = AdapterId(0);

    /// Adapter number `index` (0-based, in the load document's adapter order).
    ///
    /// # Panics
    ///
    /// When `index` does not fit the ABI's `u32` (more than four billion adapters).
    pub fn adapter(index: usize) -> Self {
        let raw = u32::try_from(index)
            .ok()
            .and_then(|i| i.checked_add(1))
            .expect("an adapter index fits in u32");
        AdapterId(raw)
    }

    /// The adapter's 0-based index; `None` for the base weights.
    pub fn index(self) -> Option<usize> {
        self.0.checked_sub(1).map(|i| i as usize)
    }
}

/// A padding-free ("varlen") batch: all sequences' tokens concatenated, with offsets.
///
/// Sequence `i` occupies `cu_seq_lengths[i]..cu_seq_lengths[i + 1]` of the flat arrays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Token ids of every sequence, concatenated.
    pub input_ids: Vec<u32>,
    /// Token type (segment) ids, parallel to `input_ids`.
    pub token_type_ids: Vec<u32>,
    /// Position of each token inside its own sequence, from 0.
    pub position_ids: Vec<u32>,
    /// `len() + 1` offsets into the flat arrays.
    pub cu_seq_lengths: Vec<u32>,
    /// The weights each sequence runs with ([`AdapterId::BASE`] for every sequence of a model
    /// without adapters).
    pub adapter_ids: Vec<AdapterId>,
    /// Length of the longest sequence.
    pub max_len: usize,
}

impl Batch {
    /// Builds a batch from `(token ids, adapter)` pairs; token types are all 0.
    pub fn from_sequences<'a>(sequences: impl IntoIterator<Item = (&'a [u32], AdapterId)>) -> Self {
        let mut batch = Batch {
            cu_seq_lengths: vec![0],
            ..Batch::default()
        };
        for (ids, adapter) in sequences {
            batch.input_ids.extend_from_slice(ids);
            batch.position_ids.extend(0..ids.len() as u32);
            batch.cu_seq_lengths.push(batch.input_ids.len() as u32);
            batch.adapter_ids.push(adapter);
            batch.max_len = batch.max_len.max(ids.len());
        }
        batch.token_type_ids = vec![0; batch.input_ids.len()];
        batch
    }

    /// Sets the token types of sequence `i` (a text pair's second segment is type 1 in BERT).
    ///
    /// # Panics
    ///
    /// When `types` is not as long as the sequence.
    pub fn set_token_types(&mut self, i: usize, types: &[u32]) {
        let span = self.span(i);
        self.token_type_ids[span].copy_from_slice(types);
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.adapter_ids.len()
    }

    /// Whether the batch holds no sequence.
    pub fn is_empty(&self) -> bool {
        self.adapter_ids.is_empty()
    }

    /// The range of sequence `i` in the flat arrays.
    pub fn span(&self, i: usize) -> Range<usize> {
        self.cu_seq_lengths[i] as usize..self.cu_seq_lengths[i + 1] as usize
    }

    /// Token ids of sequence `i`.
    pub fn ids(&self, i: usize) -> &[u32] {
        &self.input_ids[self.span(i)]
    }
}

/// A row-major `[rows, dim]` matrix of f32: pooled embeddings or token states.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Matrix {
    /// The values, row after row.
    pub data: Vec<f32>,
    /// Width of a row.
    pub dim: usize,
}

impl Matrix {
    /// Wraps `data` as rows of `dim` values.
    pub fn new(data: Vec<f32>, dim: usize) -> Self {
        debug_assert!(dim > 0 && data.len().is_multiple_of(dim));
        Self { data, dim }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Pooled embeddings, one row per sequence of the batch, in batch order.
pub type Embeddings = Matrix;
/// Last-layer token states, one row per token of the batch (flat, as in [`Batch::input_ids`]).
pub type TokenStates = Matrix;

/// Why a backend could not load a model or serve a batch.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackendError {
    /// The backend or model could not be loaded.
    #[error("load failed: {0}")]
    Load(String),
    /// The batch holds something the backend cannot run (for example an unknown adapter).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The backend failed while running a batch.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The backend panicked earlier or now; the model no longer serves.
    #[error("backend unhealthy: {0}")]
    Unhealthy(String),
    /// The requested operation is not implemented by this backend.
    #[error("not supported: {0}")]
    Unsupported(String),
}

impl BackendError {
    /// The message without the kind's prefix (the kind travels separately across the plugin ABI).
    pub fn message(&self) -> &str {
        match self {
            BackendError::Load(m)
            | BackendError::InvalidInput(m)
            | BackendError::Inference(m)
            | BackendError::Unhealthy(m)
            | BackendError::Unsupported(m) => m,
        }
    }
}

/// An inference engine holding one loaded model: a backend.
///
/// Calls come from one dedicated thread at a time (never from the async runtime), so methods take
/// `&mut self` and may block.
pub trait Backend: Send {
    /// What the loaded model can do.
    fn capabilities(&self) -> &Capabilities;

    /// Pooled embeddings for every sequence of `batch`: `[batch.len(), hidden_size]`; for a
    /// model loaded with a classifier head, each sequence's logits.
    fn embed(&mut self, batch: &Batch) -> Result<Embeddings, BackendError>;

    /// Last-layer token states for every token of `batch`: `[batch.input_ids.len(), hidden_size]`.
    fn embed_tokens(&mut self, batch: &Batch) -> Result<TokenStates, BackendError> {
        let _ = batch;
        Err(BackendError::Unsupported("token states".into()))
    }

    /// Checks that the model can still serve.
    fn health(&mut self) -> Result<(), BackendError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_offsets_and_positions() {
        let (first, second) = (AdapterId::adapter(0), AdapterId::adapter(1));
        let batch = Batch::from_sequences([(&[5, 6, 7][..], first), (&[8][..], second)]);
        assert_eq!(batch.cu_seq_lengths, vec![0, 3, 4]);
        assert_eq!(batch.position_ids, vec![0, 1, 2, 0]);
        assert_eq!(batch.adapter_ids, vec![first, second]);
        assert_eq!(batch.max_len, 3);
        assert_eq!(batch.ids(1), &[8]);
        assert_eq!(batch.token_type_ids, vec![0; 4]);
        let mut pair = batch;
        pair.set_token_types(0, &[0, 1, 1]);
        assert_eq!(pair.token_type_ids, vec![0, 1, 1, 0]);
    }

    #[test]
    fn adapters_count_from_zero_and_the_base_has_no_index() {
        assert_eq!(AdapterId::BASE.index(), None);
        assert_eq!(AdapterId::adapter(0).index(), Some(0));
        assert_eq!(AdapterId::adapter(4).index(), Some(4));
        assert_eq!(AdapterId::default(), AdapterId::BASE);
    }

    #[test]
    fn matrix_rows() {
        let m = Matrix::new(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3);
        assert_eq!(m.rows(), 2);
        assert_eq!(m.row(1), &[4.0, 5.0, 6.0]);
    }
}
