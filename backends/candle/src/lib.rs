//! The candle backend: [`bert`] for BERT and XLM-RoBERTa, [`mpnet`] for MPNet, [`modernbert`]
//! for ModernBERT, [`qwen3`] for Qwen3 decoders (Qwen3-Embedding) and [`jina`] for
//! jina-embeddings-v3 (whose adapters it applies per row, so
//! batches may mix tasks, on the GPU too). Each family the backend runs is one model file, picked
//! by the load document's model architecture (`card.architecture` in its JSON). BERT and
//! XLM-RoBERTa cross-encoders (rerankers) end in a [`classifier`] head when the load document
//! asks for one (`card.head`).
//!
//! **Devices and dtypes.** On the CPU it computes in f32 by default (f16 and bf16 run too, slowly,
//! which is how the half-precision paths are tested on machines without a GPU). On `cuda:N` it
//! computes in f16 by default, bf16 or f32 when asked. CUDA needs the plugin built with the `cuda`
//! feature (`scripts/build-cuda-plugin.sh`); the default build refuses a CUDA device with a load
//! error that says how to get one.
//!
//! **Attention over padding.** candle has no variable-length attention without
//! `candle-flash-attn`, whose build fetches CUTLASS from GitHub; so batches are padded to their
//! longest input and the scheduler groups inputs of similar length (length-bucketed padding), and
//! masks are built in the dtype's own finite minimum ([`attention`]).
//!
//! The backend owns a rayon pool of `threads` threads and runs every forward pass inside it, so its
//! CPU parallelism is sized by the config rather than by whatever else runs in the process.

#![deny(missing_docs)]

use std::ffi::CStr;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config as BertConfig;
use embedrt_backend_core::guest::BackendPlugin;
use embedrt_backend_core::padded::{EncoderSpec, PaddedBatch, PaddedEncoder, Positions};
use embedrt_backend_core::{
    architecture, BackendError, BackendSettings, FileSet, FilesQuery, Head, LoadDocument,
    WeightFiles,
};
use serde::Deserialize;

/// Backend options (`options = { ... }` in the model's config).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CandleOptions {
    /// Threads for one forward pass; default: the host's budget for this copy of the model (every
    /// core, split between a variant's replicas).
    pub threads: Option<usize>,
}

mod attention;
pub mod bert;
pub mod classifier;
pub mod jina;
pub mod modernbert;
pub mod mpnet;
pub mod qwen3;
mod rope;

use bert::BertEncoder;
use classifier::Classifier;
use jina::{JinaConfig, JinaModel};
use modernbert::{ModernBertConfig, ModernBertEncoder};
use mpnet::{MpnetConfig, MpnetEncoder};
use qwen3::{Qwen3Config, Qwen3Encoder};

/// The norm epsilon of configs that name none (transformers' default for these families).
fn default_norm_eps() -> f64 {
    1e-5
}

/// The config `base` with the keys of `extra` over it (for the model files' config tests).
#[cfg(test)]
fn config_with<T: serde::de::DeserializeOwned>(
    mut base: serde_json::Value,
    extra: serde_json::Value,
) -> T {
    base.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(base).unwrap()
}

/// The networks this backend runs.
enum Model {
    /// BERT and XLM-RoBERTa.
    Bert(Box<BertEncoder>),
    Mpnet(Box<MpnetEncoder>),
    ModernBert(Box<ModernBertEncoder>),
    Qwen3(Box<Qwen3Encoder>),
    JinaV3(Box<JinaModel>),
}

/// A model running on candle.
pub struct CandleBackend {
    model: Model,
    device: Device,
    threads: rayon::ThreadPool,
    spec: EncoderSpec,
    positions: Positions,
    /// The classifier the encoder's states go through, for a cross-encoder.
    classifier: Option<Classifier>,
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

    /// Loads `model.safetensors` (stored in any float dtype) of the model `document` describes,
    /// on its device and in its dtype (see the crate docs for the defaults).
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] for a CUDA device this build or this machine cannot open, int8, bad
    /// options, a family this backend does not implement, or weights that do not fit the config.
    fn load(document: &LoadDocument) -> Result<Self, BackendError> {
        let settings = &document.settings;
        if settings.dtype == Some(embedrt_backend_core::DType::Int8) {
            return Err(BackendError::Load(
                "the candle backend has no int8; int8 runs on the onnx backend (backend = \"onnx\", \
                 dtype = \"int8\", on the CPU, with the graph scripts/quantize_onnx.py makes)"
                    .into(),
            ));
        }
        let device = open_device(settings)?;
        let dtype = settings.dtype_among("candle", supported_dtypes(&device))?;
        let options: CandleOptions = settings.options()?;
        let card = &document.model;
        let config_path = card.path.join("config.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| load_error(format!("{}: {e}", config_path.display())))?;
        let bad_config =
            |e: serde_json::Error| load_error(format!("{}: {e}", config_path.display()));
        let weights = card.path.join(WEIGHTS);
        // SAFETY: the file is mapped read-only and not modified while the model lives.
        let vars =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], compute(dtype), &device) }
                .map_err(|e| load_error(format!("{}: {e}", weights.display())))?;
        let bad_weights = |e: candle_core::Error| load_error(format!("{}: {e}", weights.display()));
        let mut spec = EncoderSpec::new(card, dtype);
        let classifier = match card.head {
            Head::Pooled => None,
            Head::Classifier { labels } => match card.architecture.as_str() {
                architecture::BERT | architecture::XLM_ROBERTA => Some(
                    Classifier::load(vars.clone(), card.hidden_size, labels)
                        .map_err(bad_weights)?,
                ),
                other => {
                    return Err(BackendError::Load(format!(
                        "the candle backend runs classifier heads (rerankers) on bert and                          xlm-roberta encoders, not on {other:?}"
                    )))
                }
            },
        };
        let model = match card.architecture.as_str() {
            architecture::BERT | architecture::XLM_ROBERTA => {
                let bert: BertConfig = serde_json::from_str(&text).map_err(bad_config)?;
                Model::Bert(Box::new(
                    BertEncoder::load(vars, &bert).map_err(bad_weights)?,
                ))
            }
            architecture::MPNET => {
                let mpnet: MpnetConfig = serde_json::from_str(&text).map_err(bad_config)?;
                Model::Mpnet(Box::new(
                    MpnetEncoder::load(vars, &mpnet).map_err(bad_weights)?,
                ))
            }
            architecture::MODERNBERT => {
                let config: ModernBertConfig = serde_json::from_str(&text).map_err(bad_config)?;
                Model::ModernBert(Box::new(
                    ModernBertEncoder::load(vars, &config).map_err(bad_weights)?,
                ))
            }
            architecture::QWEN3 => {
                let config: Qwen3Config = serde_json::from_str(&text).map_err(bad_config)?;
                Model::Qwen3(Box::new(
                    Qwen3Encoder::load(vars, &config).map_err(bad_weights)?,
                ))
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
            .num_threads(options.threads.unwrap_or_else(|| document.cpu_threads()))
            .thread_name(|i| format!("candle-{i}"))
            .build()
            .map_err(load_error)?;
        Ok(Self {
            model,
            device,
            threads,
            spec,
            positions: Positions::of(&card.architecture, card.pad_token_id),
            classifier,
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
                let positions = || tensor(&padded.position_ids(self.positions));
                let states = match &self.model {
                    Model::Bert(bert) => {
                        bert.forward(&ids, &tensor(&padded.token_type_ids)?, &positions()?, &mask)?
                    }
                    Model::Mpnet(mpnet) => mpnet.forward(&ids, &positions()?, &mask)?,
                    Model::ModernBert(modernbert) => modernbert.forward(&ids, &mask)?,
                    Model::Qwen3(qwen3) => qwen3.forward(&ids, &mask)?,
                    Model::JinaV3(jina) => jina.forward(&ids, &mask, &padded.adapter_ids)?,
                };
                let output = match &self.classifier {
                    Some(classifier) => classifier.forward(&states)?,
                    None => states,
                };
                output.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
            })
            .map_err(inference_error)
    }
}

/// The dtypes the backend computes in on `device`, its default first.
fn supported_dtypes(device: &Device) -> &'static [embedrt_backend_core::DType] {
    use embedrt_backend_core::DType::{Bf16, F16, F32};
    if device.is_cpu() {
        &[F32, F16, Bf16]
    } else {
        &[F16, Bf16, F32]
    }
}

/// candle's dtype for a supported `dtype`.
fn compute(dtype: embedrt_backend_core::DType) -> DType {
    match dtype {
        embedrt_backend_core::DType::F16 => DType::F16,
        embedrt_backend_core::DType::Bf16 => DType::BF16,
        _ => DType::F32,
    }
}

/// Opens the device `settings` ask for.
///
/// # Errors
///
/// [`BackendError::Load`] when this build has no CUDA (naming the script that builds one), or
/// when CUDA cannot open the GPU (no driver, no such GPU).
fn open_device(settings: &BackendSettings) -> Result<Device, BackendError> {
    let index = match settings.device {
        embedrt_backend_core::Device::Cpu => return Ok(Device::Cpu),
        embedrt_backend_core::Device::Cuda(index) => index,
    };
    Device::new_cuda(index as usize).map_err(|e| match e {
        candle_core::Error::NotCompiledWithCudaSupport => BackendError::Load(format!(
            "device \"{}\": this candle plugin was built without CUDA; build the CUDA one with \
             scripts/build-cuda-plugin.sh and put its folder first in `plugin_dirs` (README, GPU)",
            settings.device
        )),
        other => BackendError::Load(format!(
            "cannot open CUDA device {}: {other} (it needs an NVIDIA GPU with that index and the \
             driver's libcuda.so.1)",
            settings.device
        )),
    })
}
