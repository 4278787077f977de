//! MPNet encoders (all-mpnet-base-v2) on candle: BERT's post-LN layers ([`crate::bert::Layer`])
//! under MPNet's tensor names, RoBERTa-style absolute positions (computed by the caller), no
//! token types, and one bucketed relative-position bias, shared by every layer, added to the
//! attention scores.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Embedding, Module, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct, PositionEmbeddingType};
use serde::Deserialize;

use crate::attention;
use crate::bert::{self, Embeddings, Layer, LayerNames};

/// The parts of an MPNet config.json the forward pass needs.
#[derive(Clone, Debug, Deserialize)]
pub struct MpnetConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    hidden_act: HiddenAct,
    max_position_embeddings: usize,
    #[serde(default = "crate::default_norm_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_buckets")]
    relative_attention_num_buckets: usize,
    #[serde(default)]
    pad_token_id: usize,
}

fn default_buckets() -> usize {
    32
}

impl MpnetConfig {
    /// The same network described as BERT's config, for the layers MPNet shares with it.
    fn as_bert(&self) -> Config {
        Config {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            hidden_act: self.hidden_act,
            hidden_dropout_prob: 0.0,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: 0,
            initializer_range: 0.02,
            layer_norm_eps: self.layer_norm_eps,
            pad_token_id: self.pad_token_id,
            position_embedding_type: PositionEmbeddingType::Absolute,
            use_cache: false,
            classifier_dropout: None,
            model_type: Some("mpnet".into()),
        }
    }
}

/// MPNet's tensor names within a layer.
const MPNET_NAMES: LayerNames = LayerNames {
    projections: [
        "attention.attn.q",
        "attention.attn.k",
        "attention.attn.v",
        "attention.attn.o",
    ],
    attention_norm: "attention.LayerNorm",
};

/// The longest distance the buckets tell apart; farther keys share the last bucket.
const MAX_DISTANCE: f32 = 128.0;

/// The bucket of the key `j` for the query `i`, as MPNet's reference code computes it: half the
/// buckets for keys before the query and half for keys after, exact distances up to a quarter
/// of the buckets, then logarithmically wider ones up to [`MAX_DISTANCE`] (in f32, as the
/// reference does, so the boundaries fall where its do).
fn bucket(i: usize, j: usize, buckets: usize) -> u32 {
    let half = buckets / 2;
    let exact = half / 2;
    let after = if j > i { half } else { 0 };
    let distance = i.abs_diff(j);
    let within = if distance < exact {
        distance
    } else {
        let scale = (distance as f32 / exact as f32).ln() / (MAX_DISTANCE / exact as f32).ln();
        (exact + (scale * (half - exact) as f32) as usize).min(half - 1)
    };
    (after + within) as u32
}

/// An MPNet encoder.
pub struct MpnetEncoder {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    relative_bias: Embedding,
    buckets: usize,
    device: Device,
    dtype: DType,
}

impl MpnetEncoder {
    /// Loads the weights from `vb`, under `mpnet.` or at the root.
    ///
    /// # Errors
    ///
    /// When a tensor is missing or misshaped (the error names it).
    pub fn load(vb: VarBuilder, config: &MpnetConfig) -> Result<Self> {
        let bert_config = config.as_bert();
        let vb = bert::under_prefix(vb, &bert_config, "mpnet");
        let layers = (0..config.num_hidden_layers)
            .map(|l| {
                Layer::load(
                    vb.pp(format!("encoder.layer.{l}")),
                    &bert_config,
                    &MPNET_NAMES,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: Embeddings::load(vb.pp("embeddings"), &bert_config, None)?,
            layers,
            relative_bias: candle_nn::embedding(
                config.relative_attention_num_buckets,
                config.num_attention_heads,
                vb.pp("encoder.relative_attention_bias"),
            )?,
            buckets: config.relative_attention_num_buckets,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// The relative-position bias `[1, heads, len, len]`.
    fn position_bias(&self, len: usize) -> Result<Tensor> {
        let index: Vec<u32> = (0..len)
            .flat_map(|i| (0..len).map(move |j| bucket(i, j, self.buckets)))
            .collect();
        let index = Tensor::from_vec(index, (len, len), &self.device)?;
        self.relative_bias
            .forward(&index)? // [len, len, heads]
            .permute((2, 0, 1))?
            .unsqueeze(0)?
            .contiguous()
    }

    /// `ids`, `positions`, `mask`: `[rows, len]` (right-padded). Returns the last hidden states
    /// `[rows, len, hidden]`.
    ///
    /// # Errors
    ///
    /// When a shape does not fit or the device fails.
    pub fn forward(&self, ids: &Tensor, positions: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let len = ids.dim(1)?;
        let mask = attention::padding_mask(mask, self.dtype)?;
        let bias = self.position_bias(len)?;
        let mut x = self.embeddings.forward(
            &ids.to_dtype(DType::U32)?,
            &positions.to_dtype(DType::U32)?,
            None,
        )?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask, Some(&bias))?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buckets of `j - i` as the reference code gives them (transformers' MPNet, torch f32).
    #[test]
    fn buckets_match_the_reference() {
        let reference = [
            (-600, 15),
            (-128, 15),
            (-64, 14),
            (-63, 13),
            (-32, 12),
            (-31, 11),
            (-16, 10),
            (-15, 9),
            (-8, 8),
            (-7, 7),
            (-1, 1),
            (0, 0),
            (1, 17),
            (7, 23),
            (8, 24),
            (16, 26),
            (31, 27),
            (32, 28),
            (63, 29),
            (64, 30),
            (127, 31),
            (600, 31),
        ];
        for (offset, want) in reference {
            let (i, j) = if offset < 0 {
                (-offset as usize, 0)
            } else {
                (0, offset as usize)
            };
            assert_eq!(bucket(i, j, 32), want, "j - i = {offset}");
        }
    }
}
