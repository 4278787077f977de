//! Backends that run right-padded `[rows, cols]` tensors (most ONNX graphs, candle's BERT): the
//! padded layout, and the pooling and unpadding they all share.

use crate::backend::{
    AdapterId, Backend, BackendError, Batch, Capabilities, Embeddings, TokenStates,
};
use crate::document::{Head, ModelSpec};
use crate::placement::DType;
use crate::pooling::Pooling;

/// A batch laid out as `[rows, cols]` tensors, right-padded (token ids with the model's pad id,
/// the mask and token types with zeros), as most backends take it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaddedBatch {
    /// Token ids, `rows * cols`.
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Token type ids, 0 for padding.
    pub token_type_ids: Vec<i64>,
    /// The adapter of each row (see [`Batch::adapter_ids`]).
    pub adapter_ids: Vec<AdapterId>,
    /// Number of sequences.
    pub rows: usize,
    /// Length of the longest sequence.
    pub cols: usize,
}

impl PaddedBatch {
    /// Pads every sequence of `batch` to its longest one with `pad_id`.
    pub fn new(batch: &Batch, pad_id: u32) -> Self {
        Self::in_shape(batch, pad_id, (batch.len(), batch.max_len))
    }

    /// Lays `batch` out as `rows` x `cols` (at least its own size): each sequence padded with
    /// `pad_id` to `cols`, and rows past the batch's all padding (with the first row's adapter).
    /// An engine that keeps state per input shape runs a few such shapes instead of every one a
    /// scheduler forms ([`PaddedEncoder::padded_shape`]).
    pub fn in_shape(batch: &Batch, pad_id: u32, (rows, cols): (usize, usize)) -> Self {
        let (rows, cols) = (rows.max(batch.len()), cols.max(batch.max_len));
        let mut adapter_ids = batch.adapter_ids.clone();
        if let Some(&first) = batch.adapter_ids.first() {
            adapter_ids.resize(rows, first);
        }
        let mut padded = PaddedBatch {
            input_ids: vec![pad_id as i64; rows * cols],
            attention_mask: vec![0; rows * cols],
            token_type_ids: vec![0; rows * cols],
            adapter_ids,
            rows,
            cols,
        };
        for i in 0..batch.len() {
            let span = batch.span(i);
            let row = i * cols..i * cols + span.len();
            padded.input_ids[row.clone()]
                .iter_mut()
                .zip(&batch.input_ids[span.clone()])
                .for_each(|(d, s)| *d = *s as i64);
            padded.token_type_ids[row.clone()]
                .iter_mut()
                .zip(&batch.token_type_ids[span])
                .for_each(|(d, s)| *d = *s as i64);
            padded.attention_mask[row].fill(1);
        }
        padded
    }

    /// The `(first row, length)` of each sequence in a `[rows * cols, hidden]` output.
    pub fn spans<'a>(&'a self, batch: &'a Batch) -> impl Iterator<Item = (usize, usize)> + 'a {
        (0..batch.len()).map(move |i| (i * self.cols, batch.span(i).len()))
    }

    /// Copies the real (unpadded) rows of a `[rows * cols, hidden]` output into the flat token order
    /// of `batch`.
    pub fn unpad(&self, batch: &Batch, states: &[f32], hidden: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(batch.input_ids.len() * hidden);
        for (start, len) in self.spans(batch) {
            out.extend_from_slice(&states[start * hidden..(start + len) * hidden]);
        }
        out
    }
}

/// How a model family numbers the positions of its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Positions {
    /// 0, 1, 2, ... in every row, padding included (BERT, ModernBERT, jina-v3's rotary).
    FromZero,
    /// RoBERTa's numbering (XLM-RoBERTa, MPNet): real tokens count up from the padding id + 1,
    /// padding tokens get the padding id itself.
    AfterPadding {
        /// The model's padding id.
        pad_token_id: u32,
    },
}

impl Positions {
    /// How models of `architecture` (see [`crate::architecture`]) with padding id
    /// `pad_token_id` number positions.
    pub fn of(architecture: &str, pad_token_id: u32) -> Self {
        match architecture {
            crate::architecture::XLM_ROBERTA | crate::architecture::MPNET => {
                Positions::AfterPadding { pad_token_id }
            }
            _ => Positions::FromZero,
        }
    }
}

impl PaddedBatch {
    /// The position id of every token, `rows * cols`, numbered as `positions` says; a token is
    /// padding when its id is the padding id (as the reference RoBERTa code decides).
    pub fn position_ids(&self, positions: Positions) -> Vec<i64> {
        match positions {
            Positions::FromZero => (0..self.rows).flat_map(|_| 0..self.cols as i64).collect(),
            Positions::AfterPadding { pad_token_id } => {
                let pad = pad_token_id as i64;
                self.input_ids
                    .chunks(self.cols.max(1))
                    .flat_map(|row| {
                        let mut count = 0;
                        row.iter().map(move |&id| {
                            if id == pad {
                                pad
                            } else {
                                count += 1;
                                pad + count
                            }
                        })
                    })
                    .collect()
            }
        }
    }
}

/// What a padded encoder needs to know besides its weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncoderSpec {
    /// What the backend reports.
    pub capabilities: Capabilities,
    /// How token states are pooled (for [`Head::Pooled`]).
    pub pooling: Pooling,
    /// The id padding positions get.
    pub pad_token_id: u32,
    /// What the network ends in: what [`PaddedEncoder::encode_padded`] returns.
    pub head: Head,
}

impl EncoderSpec {
    /// The spec of a single-task encoder of `model`, computing in `dtype`, that pads batches and
    /// can return token states (unless it ends in a classifier).
    pub fn new(model: &ModelSpec, dtype: DType) -> Self {
        Self {
            capabilities: Capabilities {
                hidden_size: model.head.output_width(model.hidden_size),
                max_input_tokens: model.max_input_tokens,
                mixed_tasks: false,
                pads_batches: true,
                token_states: model.head.is_pooled(),
                base_task: true,
                dtype: Some(dtype),
            },
            pooling: model.pooling,
            pad_token_id: model.pad_token_id,
            head: model.head,
        }
    }
}

/// A backend that encodes a right-padded batch into `[rows * cols, hidden]` token states, or
/// (for a model with a classifier head) into `[rows, labels]` logits.
///
/// Every such encoder is a [`Backend`]: padding, pooling and unpadding are done here, once.
pub trait PaddedEncoder: Send {
    /// The encoder's spec.
    fn spec(&self) -> &EncoderSpec;

    /// For [`Head::Pooled`]: the last-layer states of every position of `batch`, padding
    /// included, row-major. For [`Head::Classifier`]: each row's logits.
    fn encode_padded(&mut self, batch: &PaddedBatch) -> Result<Vec<f32>, BackendError>;

    /// The `[rows, cols]` to lay a batch of `rows` sequences of at most `cols` tokens out as (at
    /// least that): the batch's own by default.
    fn padded_shape(&self, rows: usize, cols: usize) -> (usize, usize) {
        (rows, cols)
    }
}

/// `batch` laid out in the shape `encoder` runs it as.
fn pad_for<E: PaddedEncoder>(encoder: &E, batch: &Batch) -> PaddedBatch {
    let shape = encoder.padded_shape(batch.len(), batch.max_len);
    PaddedBatch::in_shape(batch, encoder.spec().pad_token_id, shape)
}

impl<E: PaddedEncoder> Backend for E {
    fn capabilities(&self) -> &Capabilities {
        &self.spec().capabilities
    }

    fn embed(&mut self, batch: &Batch) -> Result<Embeddings, BackendError> {
        let padded = pad_for(self, batch);
        let mut states = self.encode_padded(&padded)?;
        let hidden = self.spec().capabilities.hidden_size;
        if let Head::Classifier { labels } = self.spec().head {
            if states.len() != padded.rows * labels {
                return Err(BackendError::Inference(format!(
                    "the classifier returned {} values for {} sequences of {labels} labels",
                    states.len(),
                    padded.rows
                )));
            }
            // The rows past the batch's (padding only) are dropped.
            states.truncate(batch.len() * labels);
            return Ok(Embeddings::new(states, labels));
        }
        Ok(Embeddings::new(
            self.spec()
                .pooling
                .pool(&states, hidden, padded.spans(batch)),
            hidden,
        ))
    }

    fn embed_tokens(&mut self, batch: &Batch) -> Result<TokenStates, BackendError> {
        if !self.spec().head.is_pooled() {
            return Err(BackendError::Unsupported(
                "token states of a model with a classifier head".into(),
            ));
        }
        let padded = pad_for(self, batch);
        let states = self.encode_padded(&padded)?;
        let hidden = self.spec().capabilities.hidden_size;
        Ok(TokenStates::new(
            padded.unpad(batch, &states, hidden),
            hidden,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_round_trip() {
        let base = AdapterId::BASE;
        let batch = Batch::from_sequences([(&[7, 8, 9][..], base), (&[5][..], base)]);
        let padded = PaddedBatch::new(&batch, 0);
        assert_eq!(padded.input_ids, vec![7, 8, 9, 5, 0, 0]);
        assert_eq!(padded.attention_mask, vec![1, 1, 1, 1, 0, 0]);
        let states: Vec<f32> = (0..6).map(|v| v as f32).collect();
        assert_eq!(padded.unpad(&batch, &states, 1), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(
            Pooling::Mean.pool(&states, 1, padded.spans(&batch)),
            vec![1.0, 3.0]
        );
    }

    #[test]
    fn a_larger_shape_pads_rows_and_columns_and_keeps_the_spans() {
        let batch = Batch::from_sequences([(&[7, 8][..], AdapterId(3)), (&[5][..], AdapterId(3))]);
        let padded = PaddedBatch::in_shape(&batch, 9, (4, 3));
        assert_eq!((padded.rows, padded.cols), (4, 3));
        assert_eq!(padded.input_ids, vec![7, 8, 9, 5, 9, 9, 9, 9, 9, 9, 9, 9]);
        assert_eq!(
            padded.attention_mask,
            vec![1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(padded.adapter_ids, vec![AdapterId(3); 4]);
        // Token states of width 2: the real rows' real positions come back.
        let states: Vec<f32> = (0..24).map(|v| v as f32).collect();
        assert_eq!(
            padded.unpad(&batch, &states, 2),
            vec![0.0, 1.0, 2.0, 3.0, 6.0, 7.0]
        );
        // Never smaller than the batch.
        assert_eq!(
            PaddedBatch::in_shape(&batch, 9, (1, 1)),
            PaddedBatch::new(&batch, 9)
        );
    }

    #[test]
    fn positions_from_zero_or_after_the_padding_id() {
        let base = AdapterId::BASE;
        let batch = Batch::from_sequences([(&[0, 8, 2][..], base), (&[0, 2][..], base)]);
        let padded = PaddedBatch::new(&batch, 1);
        assert_eq!(
            padded.position_ids(Positions::FromZero),
            vec![0, 1, 2, 0, 1, 2]
        );
        let roberta = Positions::of(crate::architecture::XLM_ROBERTA, 1);
        assert_eq!(roberta, Positions::AfterPadding { pad_token_id: 1 });
        assert_eq!(padded.position_ids(roberta), vec![2, 3, 4, 2, 3, 1]);
        assert_eq!(
            Positions::of(crate::architecture::BERT, 0),
            Positions::FromZero
        );
    }
}
