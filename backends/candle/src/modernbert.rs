//! ModernBERT encoders (modernbert-embed, gte-modernbert) on candle: pre-norm layers without
//! biases, rotary positions with one base for the global-attention layers and another for the
//! sliding-window ones, a bidirectional sliding window (keys at most half the window away) on
//! the local layers, and a GeGLU feed-forward.
//!
//! candle-transformers has a ModernBERT too; this one is the crate's own for the reasons of
//! [`crate::bert`] (its masks are built from `f32::MIN` and its rotary tables in the compute
//! dtype, so f16 breaks) and because it reads only transformers 4.x's config keys, where the hub
//! repos written by transformers 5 name each layer's type and rotary base instead.

use candle_core::{DType, Device, IndexOp, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, Module, VarBuilder};
use serde::Deserialize;
use serde_json::Value;

use crate::attention;
use crate::rope::{self, Rotary};

/// The parts of a ModernBERT config.json the forward pass needs, in either layout.
#[derive(Clone, Debug, Deserialize)]
pub struct ModernBertConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "crate::default_norm_eps")]
    norm_eps: f64,
    #[serde(default)]
    norm_bias: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default = "default_activation")]
    hidden_activation: String,
    local_attention: usize,
    /// transformers 5: each layer's type, `full_attention` or `sliding_attention`.
    #[serde(default)]
    layer_types: Option<Vec<String>>,
    /// transformers 5: the rotary base of each layer type.
    #[serde(default)]
    rope_parameters: Option<Value>,
    /// transformers 4: every n-th layer (from the first) attends globally.
    #[serde(default)]
    global_attn_every_n_layers: Option<usize>,
    /// transformers 4: the rotary base of the global layers.
    #[serde(default)]
    global_rope_theta: Option<f32>,
    /// transformers 4: the rotary base of the local layers.
    #[serde(default)]
    local_rope_theta: Option<f32>,
}

fn default_activation() -> String {
    "gelu".into()
}

impl ModernBertConfig {
    /// Whether layer `index` attends globally (else through the sliding window).
    fn is_global(&self, index: usize) -> Result<bool> {
        if let Some(types) = &self.layer_types {
            return match types.get(index).map(String::as_str) {
                Some("full_attention") => Ok(true),
                Some("sliding_attention") => Ok(false),
                other => Err(candle_core::Error::Msg(format!(
                    "config.json: layer {index} has the type {other:?}, not full_attention or \
                     sliding_attention"
                ))),
            };
        }
        Ok(index.is_multiple_of(self.global_attn_every_n_layers.unwrap_or(1)))
    }

    /// The rotary base of the global (`true`) or local layers.
    fn rope_theta(&self, global: bool) -> Result<f32> {
        let (kind, legacy) = if global {
            ("full_attention", self.global_rope_theta)
        } else {
            ("sliding_attention", self.local_rope_theta)
        };
        let from_parameters = self
            .rope_parameters
            .as_ref()
            .and_then(|p| p.get(kind))
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
            .map(|theta| theta as f32);
        from_parameters.or(legacy).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "config.json names no rotary base for the {kind} layers (`rope_parameters.{kind}.\
                 rope_theta`, or `{}_rope_theta`)",
                if global { "global" } else { "local" }
            ))
        })
    }
}

fn norm(hidden: usize, config: &ModernBertConfig, vb: VarBuilder) -> Result<LayerNorm> {
    if config.norm_bias {
        candle_nn::layer_norm(hidden, config.norm_eps, vb)
    } else {
        candle_nn::layer_norm_no_bias(hidden, config.norm_eps, vb)
    }
}

/// The GeGLU activation's gate.
#[derive(Clone, Copy)]
enum Activation {
    Gelu,
    GeluTanh,
}

/// One pre-norm layer.
struct Layer {
    /// `None` in the first layer, whose input is the normalized embeddings already.
    attention_norm: Option<LayerNorm>,
    qkv: Linear,
    output: Linear,
    mlp_norm: LayerNorm,
    up: Linear,
    down: Linear,
    activation: Activation,
    heads: usize,
    /// Whether it attends globally (else through the sliding window).
    global: bool,
}

impl Layer {
    fn load(vb: VarBuilder, global: bool, config: &ModernBertConfig) -> Result<Self> {
        let (hidden, inner) = (config.hidden_size, config.intermediate_size);
        let linear = |i, o, bias, name: &str| candle_nn::linear_b(i, o, bias, vb.pp(name));
        let activation = match config.hidden_activation.as_str() {
            "gelu" => Activation::Gelu,
            "gelu_pytorch_tanh" | "gelu_new" => Activation::GeluTanh,
            other => {
                return Err(candle_core::Error::Msg(format!(
                    "config.json: hidden_activation {other:?} is not supported (gelu, gelu_pytorch_tanh)"
                )))
            }
        };
        Ok(Self {
            attention_norm: if vb.contains_tensor("attn_norm.weight") {
                Some(norm(hidden, config, vb.pp("attn_norm"))?)
            } else {
                None
            },
            qkv: linear(hidden, 3 * hidden, config.attention_bias, "attn.Wqkv")?,
            output: linear(hidden, hidden, config.attention_bias, "attn.Wo")?,
            mlp_norm: norm(hidden, config, vb.pp("mlp_norm"))?,
            up: linear(hidden, 2 * inner, config.mlp_bias, "mlp.Wi")?,
            down: linear(inner, hidden, config.mlp_bias, "mlp.Wo")?,
            activation,
            heads: config.num_attention_heads,
            global,
        })
    }

    /// `x: [rows, len, hidden]`; `mask` the padding mask, `tables` the rotary tables of this
    /// layer's kind, `window` the sliding-window mask (local layers).
    fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        tables: &(Tensor, Tensor),
        window: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (rows, len, hidden) = x.dims3()?;
        let head_dim = hidden / self.heads;
        let normed = match &self.attention_norm {
            Some(norm) => x.apply(norm)?,
            None => x.clone(),
        };
        // Columns [0, H) are Q, [H, 2H) K, [2H, 3H) V, each head-major.
        let qkv = normed
            .apply(&self.qkv)?
            .reshape((rows, len, 3, self.heads, head_dim))?;
        let part = |i: usize| qkv.i((.., .., i))?.transpose(1, 2)?.contiguous();
        let q = rope::rotate(&part(0)?, tables)?;
        let k = (rope::rotate(&part(1)?, tables)? * (1.0 / (head_dim as f64).sqrt()))?;
        let context = attention::attend(&q, &k, &part(2)?, mask, window)?;
        let x = (x + context.apply(&self.output)?)?;
        let up = x.apply(&self.mlp_norm)?.apply(&self.up)?;
        let inner = up.dim(2)? / 2;
        let (input, gate) = (up.narrow(2, 0, inner)?, up.narrow(2, inner, inner)?);
        let input = match self.activation {
            Activation::Gelu => input.gelu_erf()?,
            Activation::GeluTanh => input.gelu()?,
        };
        x + (input * gate)?.apply(&self.down)?
    }
}

/// A ModernBERT encoder.
pub struct ModernBertEncoder {
    words: Embedding,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    final_norm: LayerNorm,
    /// The rotary bases of the global and of the local layers, each when some layer has it.
    global_rotary: Option<Rotary>,
    local_rotary: Option<Rotary>,
    half_window: usize,
    device: Device,
    dtype: DType,
}

impl ModernBertEncoder {
    /// Loads the weights from `vb`, under `model.` or at the root.
    ///
    /// # Errors
    ///
    /// When a tensor is missing or misshaped (the error names it), or the config names no
    /// rotary base or an unknown layer type or activation.
    pub fn load(vb: VarBuilder, config: &ModernBertConfig) -> Result<Self> {
        let vb = if vb.contains_tensor("model.embeddings.tok_embeddings.weight") {
            vb.pp("model")
        } else {
            vb
        };
        let hidden = config.hidden_size;
        let kinds = (0..config.num_hidden_layers)
            .map(|l| config.is_global(l))
            .collect::<Result<Vec<bool>>>()?;
        let layers = kinds
            .iter()
            .enumerate()
            .map(|(l, &global)| Layer::load(vb.pp(format!("layers.{l}")), global, config))
            .collect::<Result<Vec<_>>>()?;
        let head_dim = hidden / config.num_attention_heads;
        let rotary = |global: bool| -> Result<Option<Rotary>> {
            kinds
                .contains(&global)
                .then(|| {
                    let theta = config.rope_theta(global)?;
                    Ok(Rotary::new(head_dim, theta, vb.device(), vb.dtype()))
                })
                .transpose()
        };
        Ok(Self {
            words: candle_nn::embedding(
                config.vocab_size,
                hidden,
                vb.pp("embeddings.tok_embeddings"),
            )?,
            embedding_norm: norm(hidden, config, vb.pp("embeddings.norm"))?,
            layers,
            final_norm: norm(hidden, config, vb.pp("final_norm"))?,
            global_rotary: rotary(true)?,
            local_rotary: rotary(false)?,
            half_window: config.local_attention / 2,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// `ids`, `mask`: `[rows, len]` (right-padded). Returns the last hidden states
    /// `[rows, len, hidden]`.
    ///
    /// # Errors
    ///
    /// When a shape does not fit or the device fails.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let len = ids.dim(1)?;
        let mask = attention::padding_mask(mask, self.dtype)?;
        // Built once per pass for all the layers of their kind, not once per layer.
        let tables = |rotary: &Option<Rotary>| rotary.as_ref().map(|r| r.tables(len)).transpose();
        let (global, local) = (tables(&self.global_rotary)?, tables(&self.local_rotary)?);
        let window = local
            .is_some()
            .then(|| attention::window_mask(len, self.half_window, self.dtype, &self.device))
            .transpose()?;
        let mut x = self
            .words
            .forward(&ids.to_dtype(DType::U32)?)?
            .apply(&self.embedding_norm)?;
        for layer in &self.layers {
            let (tables, window) = if layer.global {
                (global.as_ref(), None)
            } else {
                (local.as_ref(), window.as_ref())
            };
            let tables = tables.ok_or_else(|| {
                candle_core::Error::Msg("no rotary table for a layer's kind".into())
            })?;
            x = layer.forward(&x, &mask, tables, window)?;
        }
        x.apply(&self.final_norm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: Value) -> ModernBertConfig {
        let base = serde_json::json!({
            "vocab_size": 8, "hidden_size": 4, "num_hidden_layers": 4,
            "num_attention_heads": 1, "intermediate_size": 4, "local_attention": 16,
        });
        crate::config_with(base, extra)
    }

    #[test]
    fn layer_types_and_bases_come_from_either_config_layout() {
        let v5 = config(serde_json::json!({
            "layer_types": ["full_attention", "sliding_attention", "sliding_attention", "full_attention"],
            "rope_parameters": {
                "full_attention": { "rope_theta": 160000.0 },
                "sliding_attention": { "rope_theta": 10000.0 },
            },
        }));
        let v4 = config(serde_json::json!({
            "global_attn_every_n_layers": 3, "global_rope_theta": 160000.0, "local_rope_theta": 10000.0,
        }));
        for config in [&v5, &v4] {
            let global: Vec<bool> = (0..4).map(|l| config.is_global(l).unwrap()).collect();
            assert_eq!(global, [true, false, false, true]);
            assert_eq!(config.rope_theta(true).unwrap(), 160000.0);
            assert_eq!(config.rope_theta(false).unwrap(), 10000.0);
        }
        let bare = config(serde_json::json!({}));
        let err = bare.rope_theta(false).unwrap_err().to_string();
        assert!(err.contains("sliding_attention"), "{err}");
        assert!(v5.is_global(4).is_err(), "a layer the list does not name");
    }
}
