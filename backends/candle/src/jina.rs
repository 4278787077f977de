//! jina-embeddings-v3 on candle: XLM-RoBERTa with rotary positions, post-LayerNorm blocks,
//! erf-GELU, and five stacked LoRA task adapters on the word and token-type embeddings and on
//! every linear layer.
//!
//! Adapters are applied in low-rank form per row, `y = x Wᵀ + b + s · (x Aₖᵀ) Bₖᵀ`, with each row's
//! own adapter `k`, so one batch may mix tasks and no merged weight (let alone a merged
//! 250k × 1024 embedding delta) is ever materialised. Task id 0 runs the base weights.

use candle_core::{DType, Device, IndexOp, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use embedrt_backend_core::AdapterId;
use serde::Deserialize;

use crate::attention;
use crate::rope::{self, Rotary};

/// The parts of jina-embeddings-v3's config.json the forward pass needs.
#[derive(Clone, Debug, Deserialize)]
pub struct JinaConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "crate::default_norm_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_rotary_base")]
    rotary_emb_base: f32,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    lora_adaptations: Vec<String>,
    #[serde(default = "default_rank")]
    lora_rank: usize,
    #[serde(default = "default_alpha")]
    lora_alpha: f64,
}

fn default_rotary_base() -> f32 {
    10_000.0
}
fn default_type_vocab() -> usize {
    1
}
fn default_rank() -> usize {
    4
}
fn default_alpha() -> f64 {
    1.0
}

/// Which adapter each row of a batch uses.
struct Adapters {
    /// Adapter index per row (0 for base rows, whose scale is 0).
    index: Tensor,
    /// The same, on the host.
    indices: Vec<u32>,
    /// `[rows, 1, 1]`: the LoRA scale for rows with an adapter, 0 for base rows.
    scale: Tensor,
    /// Whether any row uses an adapter.
    any: bool,
}

impl Adapters {
    fn new(adapters: &[AdapterId], scale: f64, device: &Device, dtype: DType) -> Result<Self> {
        // A base row gathers adapter 0 and scales it by 0.
        let index: Vec<u32> = adapters
            .iter()
            .map(|a| a.index().unwrap_or(0) as u32)
            .collect();
        let scales: Vec<f32> = adapters
            .iter()
            .map(|a| {
                if a.index().is_none() {
                    0.0
                } else {
                    scale as f32
                }
            })
            .collect();
        Ok(Self {
            index: Tensor::new(index.as_slice(), device)?,
            indices: index,
            scale: Tensor::from_vec(scales, (adapters.len(), 1, 1), device)?.to_dtype(dtype)?,
            any: adapters.iter().any(|&a| a != AdapterId::BASE),
        })
    }
}

/// The stacked adapters of one weight: `A: [tasks, a_rows, a_cols]`, `B: [tasks, b_rows, b_cols]`.
struct Lora {
    a: Tensor,
    b: Tensor,
}

impl Lora {
    fn load(vb: &VarBuilder, tasks: usize, a: (usize, usize), b: (usize, usize)) -> Result<Self> {
        let vb = vb.pp("parametrizations.weight.0");
        Ok(Self {
            a: vb.get((tasks, a.0, a.1), "lora_A")?,
            b: vb.get((tasks, b.0, b.1), "lora_B")?,
        })
    }
}

/// A linear layer `[out, in]` with per-row LoRA: `A: [tasks, rank, in]`, `B: [tasks, out, rank]`.
struct LoraLinear {
    weight: Tensor,
    bias: Tensor,
    lora: Lora,
}

impl LoraLinear {
    fn load(vb: VarBuilder, inputs: usize, outputs: usize, config: &JinaConfig) -> Result<Self> {
        let (tasks, rank) = (config.lora_adaptations.len(), config.lora_rank);
        Ok(Self {
            weight: vb.get((outputs, inputs), "parametrizations.weight.original")?,
            bias: vb.get(outputs, "bias")?,
            lora: Lora::load(&vb, tasks, (rank, inputs), (outputs, rank))?,
        })
    }

    /// `x: [rows, len, in]` to `[rows, len, out]`.
    fn forward(&self, x: &Tensor, adapters: &Adapters) -> Result<Tensor> {
        let base = x
            .broadcast_matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)?;
        if !adapters.any {
            return Ok(base);
        }
        let a = self.lora.a.index_select(&adapters.index, 0)?; // [rows, rank, in]
        let b = self.lora.b.index_select(&adapters.index, 0)?; // [rows, out, rank]
        let delta = x.matmul(&a.transpose(1, 2)?)?.matmul(&b.transpose(1, 2)?)?;
        base + delta.broadcast_mul(&adapters.scale)?
    }
}

/// Word and token-type embeddings with their adapters (`A: [tasks, rows, rank]`,
/// `B: [tasks, rank, hidden]`: for embeddings the product is `A @ B`).
struct Embeddings {
    words: Tensor,
    words_lora: Lora,
    token_type: Tensor,
    token_type_lora: Lora,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, config: &JinaConfig) -> Result<Self> {
        let (tasks, rank, hidden) = (
            config.lora_adaptations.len(),
            config.lora_rank,
            config.hidden_size,
        );
        let words = vb.pp("embeddings.word_embeddings");
        let types = vb.pp("embeddings.token_type_embeddings");
        let types_n = config.type_vocab_size;
        Ok(Self {
            words: words.get(
                (config.vocab_size, hidden),
                "parametrizations.weight.original",
            )?,
            words_lora: Lora::load(&words, tasks, (config.vocab_size, rank), (rank, hidden))?,
            token_type: types.get((types_n, hidden), "parametrizations.weight.original")?,
            token_type_lora: Lora::load(&types, tasks, (types_n, rank), (rank, hidden))?,
            norm: candle_nn::layer_norm(hidden, config.layer_norm_eps, vb.pp("emb_ln"))?,
        })
    }

    /// `ids: [rows, len]` (u32) to normalized embeddings `[rows, len, hidden]`; token types are 0.
    fn forward(&self, ids: &Tensor, adapters: &Adapters) -> Result<Tensor> {
        let (rows, len) = ids.dims2()?;
        let hidden = self.words.dim(1)?;
        let flat = ids.flatten_all()?;
        let mut x = self
            .words
            .index_select(&flat, 0)?
            .reshape((rows, len, hidden))?;
        let mut token_type = self.token_type.i(0..1)?.unsqueeze(0)?; // [1, 1, hidden]
        if adapters.any {
            // Gather the rows of A for each token's id in its row's adapter; never build A @ B whole.
            let (tasks, vocab, rank) = self.words_lora.a.dims3()?;
            let offsets: Vec<u32> = adapters.indices.iter().map(|&k| k * vocab as u32).collect();
            let offsets = Tensor::from_vec(offsets, (rows, 1), ids.device())?;
            let rows_index = ids.broadcast_add(&offsets)?.flatten_all()?;
            let a = self
                .words_lora
                .a
                .reshape((tasks * vocab, rank))?
                .index_select(&rows_index, 0)?;
            let b = self.words_lora.b.index_select(&adapters.index, 0)?; // [rows, rank, hidden]
            let delta = a.reshape((rows, len, rank))?.matmul(&b)?;
            x = (x + delta.broadcast_mul(&adapters.scale)?)?;
            let a = self
                .token_type_lora
                .a
                .index_select(&adapters.index, 0)?
                .narrow(1, 0, 1)?;
            let b = self.token_type_lora.b.index_select(&adapters.index, 0)?;
            token_type =
                token_type.broadcast_add(&a.matmul(&b)?.broadcast_mul(&adapters.scale)?)?;
        }
        x.broadcast_add(&token_type)?.apply(&self.norm)
    }
}

/// One post-LN transformer block.
struct Block {
    qkv: LoraLinear,
    out: LoraLinear,
    norm1: LayerNorm,
    fc1: LoraLinear,
    fc2: LoraLinear,
    norm2: LayerNorm,
    heads: usize,
}

impl Block {
    fn load(vb: VarBuilder, config: &JinaConfig) -> Result<Self> {
        let (hidden, inner, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        Ok(Self {
            qkv: LoraLinear::load(vb.pp("mixer.Wqkv"), hidden, 3 * hidden, config)?,
            out: LoraLinear::load(vb.pp("mixer.out_proj"), hidden, hidden, config)?,
            norm1: candle_nn::layer_norm(hidden, eps, vb.pp("norm1"))?,
            fc1: LoraLinear::load(vb.pp("mlp.fc1"), hidden, inner, config)?,
            fc2: LoraLinear::load(vb.pp("mlp.fc2"), inner, hidden, config)?,
            norm2: candle_nn::layer_norm(hidden, eps, vb.pp("norm2"))?,
            heads: config.num_attention_heads,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        rope: &(Tensor, Tensor),
        adapters: &Adapters,
    ) -> Result<Tensor> {
        let (rows, len, hidden) = x.dims3()?;
        let head_dim = hidden / self.heads;
        // Columns [0, H) are Q, [H, 2H) K, [2H, 3H) V, each head-major.
        let qkv = self
            .qkv
            .forward(x, adapters)?
            .reshape((rows, len, 3, self.heads, head_dim))?;
        let part = |i: usize| qkv.i((.., .., i))?.transpose(1, 2)?.contiguous(); // [rows, heads, len, d]
        let q = rope::rotate(&part(0)?, rope)?;
        let k = (rope::rotate(&part(1)?, rope)? * (1.0 / (head_dim as f64).sqrt()))?;
        let v = part(2)?;
        let context = attention::attend(&q, &k, &v, mask, None)?;
        let x = (self.out.forward(&context, adapters)? + x)?.apply(&self.norm1)?;
        let inner = self.fc1.forward(&x, adapters)?.gelu_erf()?;
        (self.fc2.forward(&inner, adapters)? + x)?.apply(&self.norm2)
    }
}

/// The jina-embeddings-v3 encoder.
pub struct JinaModel {
    embeddings: Embeddings,
    blocks: Vec<Block>,
    rotary: Rotary,
    lora_scale: f64,
    device: Device,
    dtype: DType,
}

impl JinaModel {
    /// Loads the weights under `roberta.` from `vb`.
    ///
    /// # Errors
    ///
    /// When a tensor is missing or has another shape than `config` implies; the message names
    /// it.
    pub fn load(vb: VarBuilder, config: &JinaConfig) -> Result<Self> {
        let vb = vb.pp("roberta");
        let blocks = (0..config.num_hidden_layers)
            .map(|l| Block::load(vb.pp(format!("encoder.layers.{l}")), config))
            .collect::<Result<Vec<_>>>()?;
        let head_dim = config.hidden_size / config.num_attention_heads;
        let rotary = Rotary::new(head_dim, config.rotary_emb_base, vb.device(), vb.dtype());
        Ok(Self {
            embeddings: Embeddings::load(vb.clone(), config)?,
            blocks,
            rotary,
            lora_scale: config.lora_alpha / config.lora_rank as f64,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// `ids`, `mask`: `[rows, len]` (right-padded); `adapters`: one per row.
    /// Returns the last hidden states `[rows, len, hidden]`.
    ///
    /// # Errors
    ///
    /// When a tensor operation fails (shapes that do not fit, device errors).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor, adapters: &[AdapterId]) -> Result<Tensor> {
        let len = ids.dim(1)?;
        let adapters = Adapters::new(adapters, self.lora_scale, &self.device, self.dtype)?;
        let mut x = self
            .embeddings
            .forward(&ids.to_dtype(DType::U32)?, &adapters)?;
        let additive = attention::padding_mask(mask, self.dtype)?;
        let rope = self.rotary.tables(len)?;
        for block in &self.blocks {
            x = block.forward(&x, &additive, &rope, &adapters)?;
        }
        Ok(x)
    }
}
