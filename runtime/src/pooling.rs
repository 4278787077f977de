//! Pooling of token states into one vector per sequence, and the padded layout engines use.

use serde::{Deserialize, Serialize};

use crate::backend::Batch;

/// How token states become one sequence embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The mean of every token's state (padding excluded).
    Mean,
    /// The state of the first token (`[CLS]` / `<s>`).
    Cls,
}

impl Pooling {
    /// Pools `states` (row-major, `hidden` wide) over `spans` of `(first row, row count)`, one output
    /// row per span.
    pub fn pool(
        self,
        states: &[f32],
        hidden: usize,
        spans: impl IntoIterator<Item = (usize, usize)>,
    ) -> Vec<f32> {
        let mut out = Vec::new();
        for (start, len) in spans {
            let rows = &states[start * hidden..(start + len.max(1)) * hidden];
            match self {
                Pooling::Cls => out.extend_from_slice(&rows[..hidden]),
                Pooling::Mean => {
                    let mut sum = vec![0f32; hidden];
                    for row in rows.chunks_exact(hidden) {
                        sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
                    }
                    let scale = 1.0 / len.max(1) as f32;
                    out.extend(sum.into_iter().map(|s| s * scale));
                }
            }
        }
        out
    }
}

/// A batch laid out as `[rows, cols]` tensors, right-padded with zeros, as most engines take it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaddedBatch {
    /// Token ids, `rows * cols`.
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Token type ids, 0 for padding.
    pub token_type_ids: Vec<i64>,
    /// Number of sequences.
    pub rows: usize,
    /// Length of the longest sequence.
    pub cols: usize,
}

impl PaddedBatch {
    /// Pads every sequence of `batch` to its longest one with `pad_id`.
    pub fn new(batch: &Batch, pad_id: u32) -> Self {
        let (rows, cols) = (batch.len(), batch.max_len);
        let mut padded = PaddedBatch {
            input_ids: vec![pad_id as i64; rows * cols],
            attention_mask: vec![0; rows * cols],
            token_type_ids: vec![0; rows * cols],
            rows,
            cols,
        };
        for i in 0..rows {
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
        (0..self.rows).map(move |i| (i * self.cols, batch.span(i).len()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_cls() {
        let states = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
        assert_eq!(Pooling::Mean.pool(&states, 2, [(0, 2)]), vec![2.0, 3.0]);
        assert_eq!(Pooling::Cls.pool(&states, 2, [(1, 2)]), vec![3.0, 4.0]);
    }

    #[test]
    fn padding_round_trip() {
        let batch = Batch::from_sequences([(&[7, 8, 9][..], 0), (&[5][..], 0)]);
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
}
