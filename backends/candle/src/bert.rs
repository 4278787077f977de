//! BERT-family encoders (BERT, MiniLM, bge, e5, gte with absolute positions) on candle, in any
//! float dtype.
//!
//! The config and weight names are candle-transformers' (`Config`, `HiddenAct`, the same
//! tensor paths, with or without a `bert.` prefix). The forward pass is this crate's own so that
//! it runs in f16: candle-transformers builds its padding mask from `f32::MIN`, which is `-inf` in
//! f16 and turns `0 × -inf` into NaN; here the mask comes from [`attention::padding_mask`].

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};

use crate::attention;

/// Word, position and token-type embeddings, summed and normalized.
struct Embeddings {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let hidden = config.hidden_size;
        Ok(Self {
            words: candle_nn::embedding(config.vocab_size, hidden, vb.pp("word_embeddings"))?,
            positions: candle_nn::embedding(
                config.max_position_embeddings,
                hidden,
                vb.pp("position_embeddings"),
            )?,
            token_types: candle_nn::embedding(
                config.type_vocab_size,
                hidden,
                vb.pp("token_type_embeddings"),
            )?,
            norm: candle_nn::layer_norm(hidden, config.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    /// `ids`, `token_types`: `[rows, len]` (u32); positions restart at 0 in every row.
    fn forward(&self, ids: &Tensor, token_types: &Tensor) -> Result<Tensor> {
        let len = ids.dim(1)?;
        let positions = Tensor::arange(0u32, len as u32, ids.device())?.unsqueeze(0)?;
        let x = (self.words.forward(ids)? + self.token_types.forward(token_types)?)?
            .broadcast_add(&self.positions.forward(&positions)?)?;
        x.apply(&self.norm)
    }
}

/// One post-LN transformer layer.
struct Layer {
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
    fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let (hidden, inner, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        let attention = vb.pp("attention");
        let own = attention.pp("self");
        Ok(Self {
            query: candle_nn::linear(hidden, hidden, own.pp("query"))?,
            key: candle_nn::linear(hidden, hidden, own.pp("key"))?,
            value: candle_nn::linear(hidden, hidden, own.pp("value"))?,
            output: candle_nn::linear(hidden, hidden, attention.pp("output.dense"))?,
            attention_norm: candle_nn::layer_norm(hidden, eps, attention.pp("output.LayerNorm"))?,
            intermediate: candle_nn::linear(hidden, inner, vb.pp("intermediate.dense"))?,
            activation: config.hidden_act,
            down: candle_nn::linear(inner, hidden, vb.pp("output.dense"))?,
            norm: candle_nn::layer_norm(hidden, eps, vb.pp("output.LayerNorm"))?,
            heads: config.num_attention_heads,
        })
    }

    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (rows, len, hidden) = x.dims3()?;
        let head_dim = hidden / self.heads;
        let heads = |linear: &Linear| -> Result<Tensor> {
            x.apply(linear)?
                .reshape((rows, len, self.heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let k = (heads(&self.key)? * (1.0 / (head_dim as f64).sqrt()))?;
        let context = attention::attend(&heads(&self.query)?, &k, &heads(&self.value)?, mask)?;
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

/// A BERT-family encoder.
pub struct BertEncoder {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    dtype: DType,
}

impl BertEncoder {
    /// Loads the weights from `vb`, under `bert.`, under the config's `model_type`, or at the
    /// root, whichever the checkpoint has.
    ///
    /// # Errors
    ///
    /// When a tensor is missing or misshaped (the error names it).
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let mut prefixes = vec!["bert".to_string()];
        prefixes.extend(config.model_type.clone());
        let vb = prefixes
            .iter()
            .find(|prefix| {
                vb.contains_tensor(&format!("{prefix}.embeddings.word_embeddings.weight"))
            })
            .map(|prefix| vb.pp(prefix))
            .unwrap_or(vb);
        let layers = (0..config.num_hidden_layers)
            .map(|l| Layer::load(vb.pp(format!("encoder.layer.{l}")), config))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: Embeddings::load(vb.pp("embeddings"), config)?,
            layers,
            dtype: vb.dtype(),
        })
    }

    /// `ids`, `token_types`, `mask`: `[rows, len]` (right-padded). Returns the last hidden states
    /// `[rows, len, hidden]`.
    ///
    /// # Errors
    ///
    /// When a shape does not fit or the device fails.
    pub fn forward(&self, ids: &Tensor, token_types: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let mask = attention::padding_mask(mask, self.dtype)?;
        let mut x = self.embeddings.forward(
            &ids.to_dtype(DType::U32)?,
            &token_types.to_dtype(DType::U32)?,
        )?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask)?;
        }
        Ok(x)
    }
}
