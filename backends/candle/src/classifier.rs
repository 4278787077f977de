//! Sequence-classification heads, as cross-encoder rerankers end: the first token's state
//! through a dense layer and tanh, then a projection to one logit per label. BERT calls the
//! dense layer its pooler (`bert.pooler.dense`, then `classifier`); XLM-RoBERTa keeps both in
//! its head (`classifier.dense`, `classifier.out_proj`). The arithmetic is the same; only the
//! tensor names differ. Dropout, which both apply in training, is the identity here.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

/// A classifier head on the first token.
pub struct Classifier {
    dense: Linear,
    out: Linear,
}

/// Where BERT checkpoints keep the pooler, by the prefix they save the encoder under.
const POOLERS: [&str; 3] = ["bert.pooler.dense", "roberta.pooler.dense", "pooler.dense"];

impl Classifier {
    /// Loads the head of a model `hidden` wide with `labels` labels from the checkpoint's root
    /// `vb`, in XLM-RoBERTa's layout when it has `classifier.out_proj`, else in BERT's. The head
    /// computes in f32 whatever the encoder's dtype: it runs on one token per pair, so it costs
    /// nothing, and a half-precision logit would carry the rounding of its last two layers.
    ///
    /// # Errors
    ///
    /// When the tensors of neither layout are there, or are misshaped (the error names them).
    pub fn load(vb: VarBuilder, hidden: usize, labels: usize) -> Result<Self> {
        let vb = vb.set_dtype(DType::F32);
        if vb.contains_tensor("classifier.out_proj.weight") {
            return Ok(Self {
                dense: candle_nn::linear(hidden, hidden, vb.pp("classifier.dense"))?,
                out: candle_nn::linear(hidden, labels, vb.pp("classifier.out_proj"))?,
            });
        }
        let pooler = POOLERS
            .into_iter()
            .find(|prefix| vb.contains_tensor(&format!("{prefix}.weight")))
            .ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "no classifier head: the checkpoint has neither `classifier.out_proj` \
                     (XLM-RoBERTa) nor a pooler ({POOLERS:?}) with `classifier` (BERT)"
                ))
            })?;
        Ok(Self {
            dense: candle_nn::linear(hidden, hidden, vb.pp(pooler))?,
            out: candle_nn::linear(hidden, labels, vb.pp("classifier"))?,
        })
    }

    /// The logits `[rows, labels]` (f32) of last-layer states `[rows, len, hidden]`
    /// (right-padded, so the first position is every row's first token).
    ///
    /// # Errors
    ///
    /// When a shape does not fit or the device fails.
    pub fn forward(&self, states: &Tensor) -> Result<Tensor> {
        let first = states.narrow(1, 0, 1)?.squeeze(1)?.to_dtype(DType::F32)?;
        self.out.forward(&self.dense.forward(&first)?.tanh()?)
    }
}
