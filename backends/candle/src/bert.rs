//! BERT-family encoders on candle, in any float dtype: BERT itself (MiniLM, bge, e5, gte with
//! absolute positions) and XLM-RoBERTa (bge-m3, multilingual-e5), which has BERT's layers and
//! differs only in how it numbers positions (from the padding id + 1, computed by the caller as
//! [`embedrt_backend_core::padded::Positions`] says) and in having one token type.
//!
//! The config and weight names are candle-transformers' (`Config`, `HiddenAct`, the same
//! tensor paths, with or without a `bert.` / `roberta.` prefix). The forward pass is this crate's
//! own so that it runs in f16: candle-transformers builds its padding mask from `f32::MIN`, which
//! is `-inf` in f16 and turns `0 × -inf` into NaN; here the mask comes from
//! [`attention::padding_mask`]. Its [`Layer`] serves MPNet too ([`crate::mpnet`]), whose layers
//! are BERT's under other tensor names.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};

use crate::attention;

/// Word, position and (when the model has them) token-type embeddings, summed and normalized.
pub(crate) struct Embeddings {
    words: Embedding,
    positions: Embedding,
    token_types: Option<Embedding>,
    norm: LayerNorm,
}

impl Embeddings {
    /// Loads `word_embeddings`, `position_embeddings`, `LayerNorm` and, for `token_types`
    /// kinds, `token_type_embeddings` from `vb`.
    pub(crate) fn load(
        vb: VarBuilder,
        config: &Config,
        token_types: Option<usize>,
    ) -> Result<Self> {
        let hidden = config.hidden_size;
        Ok(Self {
            words: candle_nn::embedding(config.vocab_size, hidden, vb.pp("word_embeddings"))?,
            positions: candle_nn::embedding(
                config.max_position_embeddings,
                hidden,
                vb.pp("position_embeddings"),
            )?,
            token_types: token_types
                .map(|kinds| candle_nn::embedding(kinds, hidden, vb.pp("token_type_embeddings")))
                .transpose()?,
            norm: candle_nn::layer_norm(hidden, config.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    /// `ids`, `positions` and (for a model with token types) `token_types`: `[rows, len]` (u32).
    pub(crate) fn forward(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        token_types: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mut x = (self.words.forward(ids)? + self.positions.forward(positions)?)?;
        if let (Some(table), Some(token_types)) = (&self.token_types, token_types) {
            x = (x + table.forward(token_types)?)?;
        }
        x.apply(&self.norm)
    }
}

/// Where a layer's tensors are, relative to the layer: BERT's names or MPNet's.
pub(crate) struct LayerNames {
    /// The query, key, value and attention output projections.
    pub(crate) projections: [&'static str; 4],
    /// The norm after attention.
    pub(crate) attention_norm: &'static str,
}

impl LayerNames {
    /// BERT's (and XLM-RoBERTa's) tensor names.
    const BERT: LayerNames = LayerNames {
        projections: [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ],
        attention_norm: "attention.output.LayerNorm",
    };
}

/// One post-LN transformer layer.
pub(crate) struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    activation: HiddenAct,
    down: Linear,
    norm: LayerNorm,
    heads: usize,
}

impl Layer {
    /// Loads one layer from `vb`, its tensors named as `names` says.
    pub(crate) fn load(vb: VarBuilder, config: &Config, names: &LayerNames) -> Result<Self> {
        let (hidden, inner, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        let [query, key, value, output] = names.projections;
        let square = |name: &str| candle_nn::linear(hidden, hidden, vb.pp(name));
        Ok(Self {
            query: square(query)?,
            key: square(key)?,
            value: square(value)?,
            output: square(output)?,
            attention_norm: candle_nn::layer_norm(hidden, eps, vb.pp(names.attention_norm))?,
            intermediate: candle_nn::linear(hidden, inner, vb.pp("intermediate.dense"))?,
            activation: config.hidden_act,
            down: candle_nn::linear(inner, hidden, vb.pp("output.dense"))?,
            norm: candle_nn::layer_norm(hidden, eps, vb.pp("output.LayerNorm"))?,
            heads: config.num_attention_heads,
        })
    }

    /// `x: [rows, len, hidden]`; `mask` a padding mask, `bias` an attention bias (see
    /// [`attention::attend`]).
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (rows, len, hidden) = x.dims3()?;
        let head_dim = hidden / self.heads;
        let heads = |linear: &Linear| -> Result<Tensor> {
            x.apply(linear)?
                .reshape((rows, len, self.heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let k = (heads(&self.key)? * (1.0 / (head_dim as f64).sqrt()))?;
        let context =
            attention::attend(&heads(&self.query)?, &k, &heads(&self.value)?, mask, bias)?;
        let x = (context.apply(&self.output)? + x)?.apply(&self.attention_norm)?;
        let inner = x.apply(&self.intermediate)?;
        let inner = match self.activation {
            HiddenAct::Gelu => inner.gelu_erf()?,
            HiddenAct::GeluApproximate => inner.gelu()?,
            HiddenAct::Relu => inner.relu()?,
        };
        (inner.apply(&self.down)? + x)?.apply(&self.norm)
    }
}

/// A BERT or XLM-RoBERTa encoder.
pub struct BertEncoder {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    dtype: DType,
}

impl BertEncoder {
    /// Loads the weights from `vb`, under `bert.`, `roberta.`, the config's `model_type`, or at
    /// the root, whichever the checkpoint has.
    ///
    /// # Errors
    ///
    /// When a tensor is missing or misshaped (the error names it).
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let vb = under_prefix(vb, config, "bert");
        let layers = (0..config.num_hidden_layers)
            .map(|l| {
                Layer::load(
                    vb.pp(format!("encoder.layer.{l}")),
                    config,
                    &LayerNames::BERT,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: Embeddings::load(
                vb.pp("embeddings"),
                config,
                Some(config.type_vocab_size),
            )?,
            layers,
            dtype: vb.dtype(),
        })
    }

    /// `ids`, `token_types`, `positions`, `mask`: `[rows, len]` (right-padded). Returns the last
    /// hidden states `[rows, len, hidden]`.
    ///
    /// # Errors
    ///
    /// When a shape does not fit or the device fails.
    pub fn forward(
        &self,
        ids: &Tensor,
        token_types: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
    ) -> Result<Tensor> {
        let mask = attention::padding_mask(mask, self.dtype)?;
        let mut x = self.embeddings.forward(
            &ids.to_dtype(DType::U32)?,
            &positions.to_dtype(DType::U32)?,
            Some(&token_types.to_dtype(DType::U32)?),
        )?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask, None)?;
        }
        Ok(x)
    }
}

/// `vb` under the first of `family.`, `roberta.` and the config's `model_type` that holds the
/// word embeddings, else `vb` itself (a checkpoint saved from the bare encoder).
pub(crate) fn under_prefix<'a>(
    vb: VarBuilder<'a>,
    config: &Config,
    family: &str,
) -> VarBuilder<'a> {
    let mut prefixes = vec![family.to_string(), "roberta".to_string()];
    prefixes.extend(config.model_type.clone());
    prefixes
        .iter()
        .find(|prefix| vb.contains_tensor(&format!("{prefix}.embeddings.word_embeddings.weight")))
        .map(|prefix| vb.pp(prefix))
        .unwrap_or(vb)
}
