//! The candle backend, on the CPU in f32: candle-transformers' BERT for BERT-family models, and
//! [`jina`] for jina-embeddings-v3 (whose adapters it applies per row, so batches may mix tasks).
//! Each family the backend runs is one model file, picked by the load document's
//! `card.architecture`.
//!
//! The backend owns a rayon pool of `threads` threads and runs every forward pass inside it, so its
//! parallelism is sized by the config rather than by whatever else runs in the process.

#![deny(missing_docs)]

use std::ffi::CStr;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use embedrt_backend_core::guest::BackendPlugin;
use embedrt_backend_core::padded::{EncoderSpec, PaddedBatch, PaddedEncoder};
use embedrt_backend_core::{
    architecture, BackendError, FileSet, FilesQuery, LoadDocument, WeightFiles,
};
use serde::Deserialize;

/// Backend options (`options = { ... }` in the model's config).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CandleOptions {
    /// Threads for one forward pass; default: every core.
    pub threads: Option<usize>,
}

pub mod jina;

use jina::{JinaConfig, JinaModel};

/// The networks this backend runs.
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

/// The weights this backend reads.
const WEIGHTS: &str = "model.safetensors";

impl BackendPlugin for CandleBackend {
    const NAME: &'static CStr = c"candle";

    /// Loads `model.safetensors` (f32 or bf16; computed in f32) of the model `document` describes.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] for a device other than the CPU or a dtype other than f32, bad
    /// options, a family this backend does not implement, or weights that do not fit the config.
    fn load(document: &LoadDocument) -> Result<Self, BackendError> {
        let settings = &document.settings;
        settings.require_cpu("candle")?;
        let dtype = settings.dtype_among("candle", &[embedrt_backend_core::DType::F32])?;
        let options: CandleOptions = settings.options()?;
        let card = &document.card;
        let config_path = card.path.join("config.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| load_error(format!("{}: {e}", config_path.display())))?;
        let bad_config =
            |e: serde_json::Error| load_error(format!("{}: {e}", config_path.display()));
        let weights = card.path.join(WEIGHTS);
        let device = Device::Cpu;
        // SAFETY: the file is mapped read-only and not modified while the model lives.
        let vars = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .map_err(|e| load_error(format!("{}: {e}", weights.display())))?;
        let bad_weights = |e: candle_core::Error| load_error(format!("{}: {e}", weights.display()));
        let mut spec = EncoderSpec::new(card, dtype);
        let model = match card.architecture.as_str() {
            architecture::BERT => {
                let bert: BertConfig = serde_json::from_str(&text).map_err(bad_config)?;
                Model::Bert(Box::new(BertModel::load(vars, &bert).map_err(bad_weights)?))
            }
            architecture::JINA_V3 => {
                let jina: JinaConfig = serde_json::from_str(&text).map_err(bad_config)?;
                spec.capabilities.mixed_tasks = true;
                Model::JinaV3(Box::new(JinaModel::load(vars, &jina).map_err(bad_weights)?))
            }
            other => {
                return Err(BackendError::Load(format!(
                    "the candle backend does not implement the model family {other:?}"
                )))
            }
        };
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(
                options
                    .threads
                    .unwrap_or_else(embedrt_backend_core::threads::cores),
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

    fn files(_: &FilesQuery) -> Result<WeightFiles, BackendError> {
        Ok(WeightFiles {
            alternatives: vec![FileSet::of(&[WEIGHTS])],
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
