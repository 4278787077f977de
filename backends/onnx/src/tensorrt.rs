//! The `tensorrt` backend: the model's ONNX graph compiled by TensorRT, through ONNX Runtime's
//! TensorRT execution provider.
//!
//! **Why through ONNX Runtime.** The native Rust bindings do not fit: `tensorrt-rs`/`tensorrt-sys`
//! bind TensorRT 5-7 and are unmaintained, `easy-tensorrt-sys` binds 8.6, and `trtx` targets
//! TensorRT-RTX on client GPUs; none binds TensorRT 10 on data-centre GPUs. ONNX Runtime's
//! provider (what Infinity uses too) builds the engine from the same ONNX file the `onnx` backend
//! runs, and `ort` opens it at run time, so this plugin builds and loads on machines without
//! TensorRT and refuses to load a model there with a message that says what is missing.
//!
//! **No rebuild at run time.** TensorRT builds an engine per input-shape range (minutes for a large
//! model). The optimization profile is derived from the host's batch limits (the load document's
//! `batch`): shapes from `1×1` to `max_batch_rows × max_input_tokens`, optimal at short inputs, so no
//! batch the scheduler forms falls outside it. Engines and timing data are cached in `cache_dir`,
//! so a restart with the same model, precision, profile, GPU and TensorRT version loads them
//! instead of building.
//!
//! **Precision.** f16 by default (bf16 or f32 when asked; int8 needs calibration data and is
//! refused). The graph's inputs and outputs stay as exported.
//!
//! **Fallback.** Nodes TensorRT does not take run on the next provider: the CUDA provider when
//! `cuda_fallback` is on, else the CPU. Off by default so that a model TensorRT cannot take whole
//! shows up in the load log instead of quietly using the CUDA provider.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use embedrt_backend_core::guest::BackendPlugin;
use embedrt_backend_core::padded::{EncoderSpec, PaddedBatch, PaddedEncoder};
use embedrt_backend_core::{
    architecture, BackendError, BatchLimits, DType, Device, FilesQuery, LoadDocument, ModelSpec,
    WeightFiles,
};
use ort::ep::TensorRT;
use serde::Deserialize;

use crate::{providers, weight_files, OnnxBackend, SessionPlan};

/// Options of the `tensorrt` backend (`options = { ... }` in the model's config).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TensorRtOptions {
    /// The ONNX file, relative to the model folder; default `model.onnx`, then `onnx/model.onnx`.
    pub file: Option<PathBuf>,
    /// The ONNX Runtime library (a GPU build); default: found as [`crate::library`] describes.
    pub library: Option<PathBuf>,
    /// A folder holding CUDA's libraries, loaded before the providers start; default: the
    /// system's library path.
    pub cuda_libraries: Option<PathBuf>,
    /// Where engines and timing data are cached; default `$XDG_CACHE_HOME/embedrt/tensorrt`, else
    /// `$HOME/.cache/embedrt/tensorrt`. Relative paths are relative to the working directory.
    pub cache_dir: Option<PathBuf>,
    /// Register the CUDA provider after TensorRT for the nodes TensorRT does not take.
    pub cuda_fallback: bool,
    /// The builder's workspace in bytes; default: TensorRT's.
    pub max_workspace_bytes: Option<usize>,
    /// The builder's optimization level, 0 to 5; default: TensorRT's (3).
    pub builder_optimization_level: Option<u8>,
}

/// Inputs are optimized for this many tokens per row (short sentences, the common case).
const OPTIMAL_TOKENS: usize = 128;

/// A TensorRT optimization profile: the shapes (`name:rowsxtokens,...`) of every dynamic input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The smallest shapes.
    pub min: String,
    /// The shapes TensorRT tunes for.
    pub opt: String,
    /// The largest shapes.
    pub max: String,
}

impl Profile {
    /// The profile for `model`'s graph inputs under `limits`: rows up to `max_batch_rows`,
    /// tokens per row up to the model's `max_input_tokens`, tuned for rows of [`OPTIMAL_TOKENS`]
    /// filling the batch's token budget.
    pub fn for_model(model: &ModelSpec, limits: BatchLimits) -> Self {
        let mut inputs = vec!["input_ids", "attention_mask"];
        // BERT-family exports take token types; jina-v3's official export does not (its scalar
        // `task_id` has no dynamic shape).
        if model.architecture == architecture::BERT {
            inputs.push("token_type_ids");
        }
        let max_tokens = model.max_input_tokens.max(1);
        let max_rows = limits.max_batch_rows.max(1);
        let opt_tokens = OPTIMAL_TOKENS.min(max_tokens);
        let opt_rows = (limits.max_batch_tokens / opt_tokens).clamp(1, max_rows);
        let shapes = |rows: usize, tokens: usize| {
            inputs
                .iter()
                .map(|name| format!("{name}:{rows}x{tokens}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        Self {
            min: shapes(1, 1),
            opt: shapes(opt_rows, opt_tokens),
            max: shapes(max_rows, max_tokens),
        }
    }
}

/// A model compiled by TensorRT (a session of the ONNX backend with the TensorRT provider).
pub struct TensorRtBackend(OnnxBackend);

impl BackendPlugin for TensorRtBackend {
    const NAME: &'static CStr = c"tensorrt";

    /// Opens the model's ONNX graph with TensorRT on the document's GPU (see the module docs).
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] for the CPU, int8, bad options, a library without the TensorRT
    /// provider or one that cannot start (TensorRT's libraries missing), a cache folder that
    /// cannot be made, or what the `onnx` backend refuses.
    fn load(document: &LoadDocument) -> Result<Self, BackendError> {
        let settings = &document.settings;
        let Device::Cuda(index) = settings.device else {
            return Err(BackendError::Load(
                "the tensorrt backend runs on an NVIDIA GPU: set device = \"cuda\" or \"cuda:N\""
                    .into(),
            ));
        };
        let dtype = settings.dtype_among("tensorrt", &[DType::F16, DType::Bf16, DType::F32])?;
        let options: TensorRtOptions = settings.options()?;
        let library = crate::library(options.library.as_deref())?;
        providers::require::<TensorRT>(library, providers::TENSORRT_NEEDS)?;
        let cache = cache_dir(options.cache_dir.as_deref())?;
        let model = &document.model;
        // A host from before the load document's `batch` key schedules with the defaults.
        let limits = document
            .batch
            .unwrap_or(BatchLimits::default_for(settings.device));
        let profile = Profile::for_model(model, limits);
        let cache_path = cache.to_string_lossy();
        let mut tensorrt = TensorRT::default()
            .with_device_id(index as i32)
            .with_fp16(dtype == DType::F16)
            .with_bf16(dtype == DType::Bf16)
            .with_engine_cache(true)
            .with_engine_cache_path(&cache_path)
            .with_timing_cache(true)
            .with_timing_cache_path(&cache_path)
            .with_profile_min_shapes(&profile.min)
            .with_profile_opt_shapes(&profile.opt)
            .with_profile_max_shapes(&profile.max);
        if let Some(bytes) = options.max_workspace_bytes {
            tensorrt = tensorrt.with_max_workspace_size(bytes);
        }
        if let Some(level) = options.builder_optimization_level {
            tensorrt = tensorrt.with_builder_optimization_level(level);
        }
        providers::preload_cuda(options.cuda_libraries.as_deref())?;
        let mut providers = vec![tensorrt.build().error_on_failure()];
        if options.cuda_fallback {
            providers.push(providers::cuda(library, index)?);
        }
        tracing::info!(cache = %cache.display(), max = %profile.max, "building or loading the TensorRT engine");
        let plan = SessionPlan {
            file: options.file.as_deref(),
            // The GPU does the work; CPU threads only run the nodes TensorRT and CUDA leave.
            threads: 1,
            spinning: false,
            optimization: 3,
            providers,
            cpu_arena: false,
            dtype,
        };
        OnnxBackend::open(model, library, plan).map(Self)
    }

    /// The same files as the `onnx` backend.
    fn files(query: &FilesQuery) -> Result<WeightFiles, BackendError> {
        let options: TensorRtOptions = query.settings.options()?;
        Ok(weight_files(options.file.as_deref()))
    }
}

/// The engine cache folder (`option`, else the user's cache folder), created when missing.
fn cache_dir(option: Option<&Path>) -> Result<PathBuf, BackendError> {
    let folder = match option {
        Some(folder) => folder.to_path_buf(),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
            .ok_or_else(|| {
                BackendError::Load(
                    "no `cache_dir` option and neither XDG_CACHE_HOME nor HOME is set".into(),
                )
            })?
            .join("embedrt/tensorrt"),
    };
    std::fs::create_dir_all(&folder).map_err(|e| {
        BackendError::Load(format!(
            "cannot make the TensorRT cache folder {}: {e}",
            folder.display()
        ))
    })?;
    Ok(folder)
}

impl PaddedEncoder for TensorRtBackend {
    fn spec(&self) -> &EncoderSpec {
        self.0.spec()
    }

    fn encode_padded(&mut self, padded: &PaddedBatch) -> Result<Vec<f32>, BackendError> {
        self.0.encode_padded(padded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedrt_backend_core::Pooling;

    fn model(architecture: &str, max_input_tokens: usize) -> ModelSpec {
        ModelSpec {
            path: "/m".into(),
            architecture: architecture.into(),
            hidden_size: 8,
            vocab_size: 100,
            max_input_tokens,
            pooling: Pooling::Mean,
            normalize: true,
            pad_token_id: 0,
            tasks: Vec::new(),
            head: Default::default(),
        }
    }

    #[test]
    fn the_profile_covers_every_batch_the_scheduler_forms() {
        let limits = BatchLimits {
            max_batch_rows: 256,
            max_batch_tokens: 32768,
        };
        let profile = Profile::for_model(&model(architecture::BERT, 512), limits);
        assert_eq!(
            profile.min,
            "input_ids:1x1,attention_mask:1x1,token_type_ids:1x1"
        );
        assert_eq!(
            profile.opt,
            "input_ids:256x128,attention_mask:256x128,token_type_ids:256x128"
        );
        assert_eq!(
            profile.max,
            "input_ids:256x512,attention_mask:256x512,token_type_ids:256x512"
        );
        // jina-v3: no token types; a small budget tunes for fewer rows.
        let small = BatchLimits {
            max_batch_rows: 64,
            max_batch_tokens: 1024,
        };
        let profile = Profile::for_model(&model(architecture::JINA_V3, 8194), small);
        assert_eq!(profile.opt, "input_ids:8x128,attention_mask:8x128");
        assert_eq!(profile.max, "input_ids:64x8194,attention_mask:64x8194");
    }

    #[test]
    fn the_cache_folder_is_made() {
        let folder = std::env::temp_dir().join(format!("embedrt-trt-cache-{}", std::process::id()));
        let made = cache_dir(Some(&folder.join("a/b"))).unwrap();
        assert!(made.is_dir());
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
