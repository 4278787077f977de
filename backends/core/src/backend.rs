//! The backend interface: a synchronous, object-safe [`Backend`] that embeds padding-free batches.

use std::ops::Range;

use crate::document::DType;

/// What a loaded model can do, as its backend reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Width of the pooled embedding.
    pub hidden_size: usize,
    /// Longest sequence the backend accepts, special tokens included.
    pub max_tokens: usize,
    /// Whether one batch may hold sequences of different tasks.
    pub mixed_tasks: bool,
    /// Whether the backend pads the batch to its longest sequence (so padding costs compute).
    pub pads_batches: bool,
    /// Whether [`Backend::embed_tokens`] is implemented.
    pub token_states: bool,
    /// Whether task id 0 (the base weights, no adapter) can run.
    pub base_task: bool,
    /// The number format the model computes in; `None` when not reported (ABI 1.0 plugins).
    pub dtype: Option<DType>,
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
    /// One task id per sequence: 0 for the base weights (the only task of models without
    /// adapters), `k + 1` for adapter `k`.
    pub task_ids: Vec<u32>,
    /// Length of the longest sequence.
    pub max_len: usize,
}

impl Batch {
    /// Builds a batch from `(token ids, task id)` pairs; token types are all 0.
    pub fn from_sequences<'a>(sequences: impl IntoIterator<Item = (&'a [u32], u32)>) -> Self {
        let mut batch = Batch {
            cu_seq_lengths: vec![0],
            ..Batch::default()
        };
        for (ids, task) in sequences {
            batch.input_ids.extend_from_slice(ids);
            batch.position_ids.extend(0..ids.len() as u32);
            batch.cu_seq_lengths.push(batch.input_ids.len() as u32);
            batch.task_ids.push(task);
            batch.max_len = batch.max_len.max(ids.len());
        }
        batch.token_type_ids = vec![0; batch.input_ids.len()];
        batch
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.task_ids.len()
    }

    /// Whether the batch holds no sequence.
    pub fn is_empty(&self) -> bool {
        self.task_ids.is_empty()
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
    /// The batch holds something the backend cannot run (for example an unknown task).
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

    /// Pooled embeddings for every sequence of `batch`: `[batch.len(), hidden_size]`.
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
        let batch = Batch::from_sequences([(&[5, 6, 7][..], 1), (&[8][..], 2)]);
        assert_eq!(batch.cu_seq_lengths, vec![0, 3, 4]);
        assert_eq!(batch.position_ids, vec![0, 1, 2, 0]);
        assert_eq!(batch.task_ids, vec![1, 2]);
        assert_eq!(batch.max_len, 3);
        assert_eq!(batch.ids(1), &[8]);
        assert_eq!(batch.token_type_ids, vec![0; 4]);
    }

    #[test]
    fn matrix_rows() {
        let m = Matrix::new(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3);
        assert_eq!(m.rows(), 2);
        assert_eq!(m.row(1), &[4.0, 5.0, 6.0]);
    }
}
