//! The candle engine, on the CPU in f32: candle-transformers' BERT for BERT-family models, and
//! [`jina`] for jina-embeddings-v3 (whose adapters it applies per row, so batches may mix tasks).
//!
//! The engine owns a rayon pool of `threads` threads and runs every forward pass inside it, so its
//! parallelism is sized by the config rather than by whatever else runs in the process.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use embedrt_runtime::model::Architecture;
use embedrt_runtime::padded::{EncoderSpec, PaddedBatch, PaddedEncoder};
use embedrt_runtime::plugin::EngineConfig;
use embedrt_runtime::BackendError;
use serde::Deserialize;

/// Engine options (`options = { ... }` in the model's config).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CandleOptions {
    /// Threads for one forward pass; default: every core.
    pub threads: Option<usize>,
}

pub mod jina;

use jina::{JinaConfig, JinaModel};

/// The networks this engine runs.
enum Model {
    Bert(Box<BertModel>),
    JinaV3(Box<JinaModel>),
}

/// A model running on candle.
pub struct CandleBackend {
    model: Model,
    device: Device,
    threads: rayon::ThreadPool,
    spec: EncoderSpec,
}

fn load_error(e: impl std::fmt::Display) -> BackendError {
    BackendError::Load(e.to_string())
}

fn inference_error(e: candle_core::Error) -> BackendError {
    BackendError::Inference(e.to_string())
}

impl CandleBackend {
    /// Loads `model.safetensors` (f32 or bf16; computed in f32) of the model in `config`.
    pub fn load(config: &EngineConfig) -> Result<Self, BackendError> {
        let options: CandleOptions = config.options()?;
        let card = &config.card;
        let config_path = card.path.join("config.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| load_error(format!("{}: {e}", config_path.display())))?;
        let bad_config =
            |e: serde_json::Error| load_error(format!("{}: {e}", config_path.display()));
        let weights = card.path.join("model.safetensors");
        let device = Device::Cpu;
        // SAFETY: the file is mapped read-only and not modified while the model lives.
        let vars = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .map_err(|e| load_error(format!("{}: {e}", weights.display())))?;
        let bad_weights = |e: candle_core::Error| load_error(format!("{}: {e}", weights.display()));
        let mut spec = EncoderSpec::from_card(card);
        let model = match card.architecture {
            Architecture::Bert => {
                let bert: BertConfig = serde_json::from_str(&text).map_err(bad_config)?;
                Model::Bert(Box::new(BertModel::load(vars, &bert).map_err(bad_weights)?))
            }
            Architecture::JinaV3 => {
                let jina: JinaConfig = serde_json::from_str(&text).map_err(bad_config)?;
                spec.capabilities.mixed_tasks = true;
                Model::JinaV3(Box::new(JinaModel::load(vars, &jina).map_err(bad_weights)?))
            }
        };
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
            spec,
        })
    }
}

impl PaddedEncoder for CandleBackend {
    fn spec(&self) -> &EncoderSpec {
        &self.spec
    }

    fn encode_padded(&mut self, padded: &PaddedBatch) -> Result<Vec<f32>, BackendError> {
        let shape = (padded.rows, padded.cols);
        let tensor = |values: &Vec<i64>| Tensor::from_slice(values, shape, &self.device);
        self.threads
            .install(|| {
                let (ids, mask) = (tensor(&padded.input_ids)?, tensor(&padded.attention_mask)?);
                let states = match &self.model {
                    Model::Bert(bert) => {
                        bert.forward(&ids, &tensor(&padded.token_type_ids)?, Some(&mask))?
                    }
                    Model::JinaV3(jina) => jina.forward(&ids, &mask, &padded.task_ids)?,
                };
                states.flatten_all()?.to_vec1::<f32>()
            })
            .map_err(inference_error)
    }
}
