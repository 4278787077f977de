//! Qwen3 decoders as embedders (Qwen3-Embedding) on candle, in any float dtype: the forward pass
//! of transformers' `Qwen3Model` without its KV cache or LM head. Each layer is pre-norm
//! (RMSNorm), grouped-query causal attention with an RMSNorm on every query and key head and
//! rotary positions, then a SwiGLU MLP; a final RMSNorm. Batches are right-padded: every row's
//! positions count from 0 and its causal mask is its own, so a row's last real token (the
//! appended `<|endoftext|>`, which the host pools) sees exactly what it sees alone, as in the
//! reference's left-padded run.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, RmsNorm, VarBuilder};
use serde::Deserialize;
use serde_json::Value;

use crate::attention;
use crate::rope::{self, Rotary};

/// The keys of a Qwen3 `config.json` the forward pass reads.
#[derive(Clone, Debug, Deserialize)]
pub struct Qwen3Config {
    /// Token ids the model knows.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Width of the MLP's inner layer.
    pub intermediate_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key and value heads (grouped-query attention: each serves several query heads).
    pub num_key_value_heads: usize,
    /// Width of a head; default `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// The RMSNorms' epsilon.
    pub rms_norm_eps: f64,
    /// The rotary base as transformers 4 writes it.
    #[serde(default)]
    pub rope_theta: Option<f32>,
    /// transformers 5's form: `{ "rope_theta": ..., "rope_type": "default" }`.
    #[serde(default)]
    pub rope_parameters: Option<Value>,
    /// The MLP's activation (Qwen3: `silu`).
    #[serde(default = "default_activation")]
    pub hidden_act: String,
    /// Whether the attention projections have biases (Qwen3: no).
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether some layers attend through a sliding window (not implemented).
    #[serde(default)]
    pub use_sliding_window: bool,
}

fn default_activation() -> String {
    "silu".into()
}

impl Qwen3Config {
    /// The rotary base, from transformers 5's `rope_parameters` or 4's `rope_theta`.
    fn rope_theta(&self) -> Result<f32> {
        let from_parameters = self
            .rope_parameters
            .as_ref()
            .and_then(|p| {
                if let Some(kind) = p.get("rope_type").and_then(Value::as_str) {
                    if kind != "default" {
                        return Some(Err(kind.to_string()));
                    }
                }
                p.get("rope_theta").and_then(Value::as_f64).map(Ok)
            })
            .transpose()
            .map_err(|kind| {
                candle_core::Error::Msg(format!(
                    "config.json: rotary scaling {kind:?} is not implemented (only the default)"
                ))
            })?
            .map(|theta| theta as f32);
        from_parameters.or(self.rope_theta).ok_or_else(|| {
            candle_core::Error::Msg(
                "config.json names no rotary base (`rope_parameters.rope_theta` or `rope_theta`)"
                    .into(),
            )
        })
    }

    fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }
}

/// One decoder layer.
struct Layer {
    input_norm: RmsNorm,
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    query_norm: RmsNorm,
    key_norm: RmsNorm,
    post_attention_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Layer {
    fn load(vb: VarBuilder, config: &Qwen3Config) -> Result<Self> {
        let (hidden, head_dim) = (config.hidden_size, config.head_dim());
        let (heads, kv_heads) = (config.num_attention_heads, config.num_key_value_heads);
        let projection = |inputs: usize, outputs: usize, name: &str| {
            let vb = vb.pp("self_attn").pp(name);
            if config.attention_bias {
                candle_nn::linear(inputs, outputs, vb)
            } else {
                candle_nn::linear_no_bias(inputs, outputs, vb)
            }
        };
        let norm =
            |size: usize, name: &str| candle_nn::rms_norm(size, config.rms_norm_eps, vb.pp(name));
        let mlp = |inputs: usize, outputs: usize, name: &str| {
            candle_nn::linear_no_bias(inputs, outputs, vb.pp("mlp").pp(name))
        };
        Ok(Self {
            input_norm: norm(hidden, "input_layernorm")?,
            query: projection(hidden, heads * head_dim, "q_proj")?,
            key: projection(hidden, kv_heads * head_dim, "k_proj")?,
            value: projection(hidden, kv_heads * head_dim, "v_proj")?,
            output: projection(heads * head_dim, hidden, "o_proj")?,
            query_norm: norm(head_dim, "self_attn.q_norm")?,
            key_norm: norm(head_dim, "self_attn.k_norm")?,
            post_attention_norm: norm(hidden, "post_attention_layernorm")?,
            gate: mlp(hidden, config.intermediate_size, "gate_proj")?,
            up: mlp(hidden, config.intermediate_size, "up_proj")?,
            down: mlp(config.intermediate_size, hidden, "down_proj")?,
            heads,
            kv_heads,
            head_dim,
        })
    }

    /// `x`: `[rows, len, hidden]`; `mask`: the padding mask; `causal`: `[1, 1, len, len]`.
    fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        causal: &Tensor,
        tables: &(Tensor, Tensor),
    ) -> Result<Tensor> {
        let (rows, len, _) = x.dims3()?;
        let normed = x.apply(&self.input_norm)?;
        // `[rows, heads, len, head_dim]`, each head normalized, then rotated.
        let heads_of =
            |projection: &Linear, heads: usize, norm: Option<&RmsNorm>| -> Result<Tensor> {
                let states =
                    normed
                        .apply(projection)?
                        .reshape((rows, len, heads, self.head_dim))?;
                let states = match norm {
                    Some(norm) => states.apply(norm)?,
                    None => states,
                };
                states.transpose(1, 2)?.contiguous()
            };
        let q = rope::rotate(
            &heads_of(&self.query, self.heads, Some(&self.query_norm))?,
            tables,
        )?;
        let k = rope::rotate(
            &heads_of(&self.key, self.kv_heads, Some(&self.key_norm))?,
            tables,
        )?;
        let k = (self.repeat_kv(k)? * (1.0 / (self.head_dim as f64).sqrt()))?;
        let v = self.repeat_kv(heads_of(&self.value, self.kv_heads, None)?)?;
        let context = attention::attend(&q, &k, &v, mask, Some(causal))?;
        let x = (x + context.apply(&self.output)?)?;
        let normed = x.apply(&self.post_attention_norm)?;
        let inner = (normed.apply(&self.gate)?.silu()? * normed.apply(&self.up)?)?;
        x + inner.apply(&self.down)?
    }

    /// Key or value heads `[rows, kv_heads, len, head_dim]`, each repeated for the query heads it
    /// serves: `[rows, heads, len, head_dim]`.
    fn repeat_kv(&self, states: Tensor) -> Result<Tensor> {
        let groups = self.heads / self.kv_heads;
        if groups == 1 {
            return Ok(states);
        }
        let (rows, kv_heads, len, head_dim) = states.dims4()?;
        states
            .unsqueeze(2)?
            .expand((rows, kv_heads, groups, len, head_dim))?
            .reshape((rows, kv_heads * groups, len, head_dim))
    }
}

/// A Qwen3 decoder, as an encoder of token states.
pub struct Qwen3Encoder {
    words: Embedding,
    layers: Vec<Layer>,
    final_norm: RmsNorm,
    rotary: Rotary,
    dtype: DType,
}

impl Qwen3Encoder {
    /// Loads the weights from `vb`, at its root or under `model.` (a checkpoint saved from the
    /// causal LM).
    ///
    /// # Errors
    ///
    /// When a tensor is missing or misshaped (the error names it), or the config asks for what
    /// is not implemented (a sliding window, an activation other than SiLU, rotary scaling).
    pub fn load(vb: VarBuilder, config: &Qwen3Config) -> Result<Self> {
        if config.use_sliding_window {
            return Err(candle_core::Error::Msg(
                "config.json: `use_sliding_window` is not implemented for qwen3".into(),
            ));
        }
        if config.hidden_act != "silu" {
            return Err(candle_core::Error::Msg(format!(
                "config.json: the activation {:?} is not implemented for qwen3 (SiLU is)",
                config.hidden_act
            )));
        }
        let vb = if vb.contains_tensor("model.embed_tokens.weight") {
            vb.pp("model")
        } else {
            vb
        };
        let layers = (0..config.num_hidden_layers)
            .map(|l| Layer::load(vb.pp(format!("layers.{l}")), config))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            words: candle_nn::embedding(
                config.vocab_size,
                config.hidden_size,
                vb.pp("embed_tokens"),
            )?,
            layers,
            final_norm: candle_nn::rms_norm(
                config.hidden_size,
                config.rms_norm_eps,
                vb.pp("norm"),
            )?,
            rotary: Rotary::new(
                config.head_dim(),
                config.rope_theta()?,
                vb.device(),
                vb.dtype(),
            ),
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
        let device = ids.device();
        let mask = attention::padding_mask(mask, self.dtype)?;
        let causal = attention::causal_mask(len, self.dtype, device)?;
        let tables = self.rotary.tables(len)?;
        let mut x = self.words.forward(&ids.to_dtype(DType::U32)?)?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask, &causal, &tables)?;
        }
        x.apply(&self.final_norm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(extra: Value) -> Qwen3Config {
        let base = json!({
            "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 1, "rms_norm_eps": 1e-6,
        });
        crate::config_with(base, extra)
    }

    #[test]
    fn the_rotary_base_comes_from_either_config_layout() {
        let v5 =
            config(json!({ "rope_parameters": { "rope_theta": 1e6, "rope_type": "default" } }));
        assert_eq!(v5.rope_theta().unwrap(), 1e6);
        assert_eq!(
            config(json!({ "rope_theta": 1e4 })).rope_theta().unwrap(),
            1e4
        );
        assert!(config(json!({})).rope_theta().is_err());
        let scaled =
            config(json!({ "rope_parameters": { "rope_theta": 1e6, "rope_type": "yarn" } }));
        assert!(scaled
            .rope_theta()
            .unwrap_err()
            .to_string()
            .contains("yarn"));
        assert_eq!(config(json!({})).head_dim(), 4);
    }
}
