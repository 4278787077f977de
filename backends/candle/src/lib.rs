//! The candle engine: candle-transformers' BERT on the CPU in f32, pooled here.
//!
//! The engine owns a rayon pool of `threads` threads and runs every forward pass inside it, so its
//! parallelism is sized by the config rather than by whatever else runs in the process.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use embedrt_runtime::plugin::EngineConfig;
use embedrt_runtime::pooling::{PaddedBatch, Pooling};
use embedrt_runtime::{Backend, BackendError, Batch, Capabilities, Embeddings, TokenStates};
use serde::Deserialize;

/// Engine options (`options = { ... }` in the model's config).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CandleOptions {
    /// Threads for one forward pass; default: every core.
    pub threads: Option<usize>,
}

/// A BERT-family model running on candle.
pub struct CandleBackend {
    model: BertModel,
    device: Device,
    threads: rayon::ThreadPool,
    capabilities: Capabilities,
    pooling: Pooling,
    pad_token_id: u32,
}

fn load_error(e: impl std::fmt::Display) -> BackendError {
    BackendError::Load(e.to_string())
}

fn inference_error(e: candle_core::Error) -> BackendError {
    BackendError::Inference(e.to_string())
}

impl CandleBackend {
    /// Loads `model.safetensors` of the model in `config`.
    pub fn load(config: &EngineConfig) -> Result<Self, BackendError> {
        let options: CandleOptions = config.options()?;
        let card = &config.card;
        let config_path = card.path.join("config.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| load_error(format!("{}: {e}", config_path.display())))?;
        let bert_config: BertConfig = serde_json::from_str(&text)
            .map_err(|e| load_error(format!("{}: {e}", config_path.display())))?;
        let weights = card.path.join("model.safetensors");
        let device = Device::Cpu;
        // SAFETY: the file is mapped read-only and not modified while the model lives.
        let vars = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .map_err(|e| load_error(format!("{}: {e}", weights.display())))?;
        let model = BertModel::load(vars, &bert_config)
            .map_err(|e| load_error(format!("{}: {e}", weights.display())))?;
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(
                options
                    .threads
                    .unwrap_or_else(embedrt_runtime::config::cores),
            )
            .thread_name(|i| format!("candle-{i}"))
            .build()
            .map_err(load_error)?;
        Ok(Self {
            model,
            device,
            threads,
            capabilities: Capabilities {
                hidden_size: card.hidden_size,
                max_tokens: card.max_tokens,
                mixed_tasks: false,
                pads_batches: true,
                token_states: true,
            },
            pooling: card.pooling,
            pad_token_id: card.pad_token_id,
        })
    }

    /// Runs the encoder on `batch`; returns the padded `[rows * cols, hidden]` states and the layout.
    fn forward(&self, batch: &Batch) -> Result<(Vec<f32>, PaddedBatch), BackendError> {
        let padded = PaddedBatch::new(batch, self.pad_token_id);
        let shape = (padded.rows, padded.cols);
        let tensor = |values: &Vec<i64>| {
            Tensor::from_slice(values, shape, &self.device).map_err(inference_error)
        };
        let (ids, types, mask) = (
            tensor(&padded.input_ids)?,
            tensor(&padded.token_type_ids)?,
            tensor(&padded.attention_mask)?,
        );
        let states = self
            .threads
            .install(|| {
                self.model
                    .forward(&ids, &types, Some(&mask))?
                    .flatten_all()?
                    .to_vec1::<f32>()
            })
            .map_err(inference_error)?;
        Ok((states, padded))
    }
}

impl Backend for CandleBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn embed(&mut self, batch: &Batch) -> Result<Embeddings, BackendError> {
        let hidden = self.capabilities.hidden_size;
        let (states, padded) = self.forward(batch)?;
        Ok(Embeddings::new(
            self.pooling.pool(&states, hidden, padded.spans(batch)),
            hidden,
        ))
    }

    fn embed_tokens(&mut self, batch: &Batch) -> Result<TokenStates, BackendError> {
        let hidden = self.capabilities.hidden_size;
        let (states, padded) = self.forward(batch)?;
        Ok(TokenStates::new(
            padded.unpad(batch, &states, hidden),
            hidden,
        ))
    }
}
