//! The ONNX Runtime backends: run a model's `model.onnx` (or `onnx/model.onnx`) through `ort`,
//! with the ONNX Runtime library opened at run time (`load-dynamic`; [`library`] finds it).
//!
//! - [`OnnxBackend`] (`onnx`) runs the graph as exported (f32) on the CPU, or on `cuda:N` through
//!   the CUDA execution provider; with `dtype = "int8"` (CPU) it runs the int8 graph that
//!   `scripts/quantize_onnx.py` makes beside the fp32 one (`model_int8.onnx`).
//! - [`TensorRtBackend`] (`tensorrt`) hands the graph to TensorRT through ONNX Runtime's TensorRT
//!   execution provider, in f16 by default ([`tensorrt`] says why this way).
//!
//! GPU providers are registered so that failing to start them is a load error ([`providers`]):
//! a GPU variant never silently runs on the CPU. Building them needs no GPU library: `ort`'s
//! `cuda` and `tensorrt` features only add the option types, and `load-dynamic` links nothing.
//!
//! The graph's inputs are bound by name from the session's metadata: exactly those it declares
//! among `input_ids`, `attention_mask`, `token_type_ids` and `position_ids` (numbered as the
//! model's family does, [`Positions`]); a graph asking for anything else is refused at load
//! with the input's name (a decoder exported with its KV cache, `past_key_values.*`, with the
//! export an embedder needs: embeddings take one pass and no cache). Its token-level output
//! (`last_hidden_state`, else `text_embeds`, else the first output) is pooled here, outside the
//! graph. A cross-encoder's graph (the load document's `card.head` is a classifier) is read at
//! its `logits` output, `[batch, labels]`, as it is.
//!
//! A graph with a scalar `task_id` input (jina-embeddings-v3's official export) selects one task
//! adapter per run: such a model declares that it cannot mix tasks in a batch (the scheduler then
//! batches each task apart) and cannot run the base weights (task 0).

#![deny(missing_docs)]

pub mod library;
mod providers;
pub mod tensorrt;

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use embedrt_backend_core::graph::{self, GraphInputs};
use embedrt_backend_core::guest::BackendPlugin;
use embedrt_backend_core::padded::{EncoderSpec, PaddedBatch, PaddedEncoder};
use embedrt_backend_core::{
    BackendError, DType, Device, FileSet, FilesQuery, Head, LoadDocument, ModelSpec, WeightFiles,
};
use library::Library;
use ort::ep::{self, ExecutionProviderDispatch};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;

/// Backend options (`options = { ... }` in the model's config).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnnxOptions {
    /// Intra-op threads; default: the host's budget for this copy of the model (every core,
    /// split between a variant's replicas).
    pub intra_threads: Option<usize>,
    /// Let idle intra-op threads spin (costly on a small shared machine; off by default).
    pub spinning: bool,
    /// Graph optimization level, 0 (none) to 3 (all).
    pub optimization: u8,
    /// The ONNX file, relative to the model folder; default `model.onnx`, then `onnx/model.onnx`.
    pub file: Option<PathBuf>,
    /// The ONNX Runtime library; default: found as [`library`] describes.
    pub library: Option<PathBuf>,
    /// On a GPU: a folder holding CUDA's libraries (`libcudart.so.13`, `libcublas.so.13`, ...),
    /// loaded before the CUDA provider starts; default: the system's library path.
    pub cuda_libraries: Option<PathBuf>,
    /// Keep ONNX Runtime's CPU memory arena, which holds on to the largest batch's buffers for
    /// the life of the session; off by default, so a burst's memory goes back to the allocator.
    pub cpu_arena: bool,
}

pub use tensorrt::{TensorRtBackend, TensorRtOptions};

impl Default for OnnxOptions {
    fn default() -> Self {
        Self {
            intra_threads: None,
            spinning: false,
            optimization: 3,
            file: None,
            library: None,
            cuda_libraries: None,
            cpu_arena: false,
        }
    }
}

/// The ONNX Runtime library of the process, with its one environment (ONNX Runtime allows only
/// one); the first load's `library` option decides where it comes from.
static LIBRARY: OnceLock<Result<Library, String>> = OnceLock::new();

fn library(option: Option<&Path>) -> Result<&'static Library, BackendError> {
    LIBRARY
        .get_or_init(|| library::load(option))
        .as_ref()
        .map_err(|e| BackendError::Load(e.clone()))
}

/// How to open a session: what both ONNX Runtime backends decide before opening one.
struct SessionPlan<'a> {
    /// The ONNX file, relative to the model folder; `None`: the first of [`DEFAULT_FILES`] (of
    /// [`INT8_FILES`] for int8).
    file: Option<&'a Path>,
    /// Intra-op threads.
    threads: usize,
    /// Whether idle intra-op threads spin.
    spinning: bool,
    /// Graph optimization level, 0 to 3.
    optimization: u8,
    /// Execution providers in order of preference before the CPU's, which always comes last.
    providers: Vec<ExecutionProviderDispatch>,
    /// Whether the CPU keeps ONNX Runtime's memory arena.
    cpu_arena: bool,
    /// The dtype the session computes in (reported, not converted).
    dtype: DType,
}

/// A model running in an ONNX Runtime session.
pub struct OnnxBackend {
    session: Session,
    spec: EncoderSpec,
    /// The optional inputs the graph takes.
    inputs: GraphInputs,
    output: String,
}

fn load_error(e: impl std::fmt::Display) -> BackendError {
    BackendError::Load(e.to_string())
}

fn inference_error(e: impl std::fmt::Display) -> BackendError {
    BackendError::Inference(e.to_string())
}

/// The ONNX files this backend looks for, in order, unless the `file` option names one.
const DEFAULT_FILES: [&str; 2] = ["model.onnx", "onnx/model.onnx"];

/// The int8 graphs `scripts/quantize_onnx.py` writes beside [`DEFAULT_FILES`], looked for in order
/// for `dtype = "int8"`.
const INT8_FILES: [&str; 2] = ["model_int8.onnx", "onnx/model_int8.onnx"];

impl BackendPlugin for OnnxBackend {
    const NAME: &'static CStr = c"onnx";

    /// Opens the model's ONNX graph with the settings of `document`: on the CPU (f32, or int8
    /// from the quantized graph), or on a GPU through the CUDA execution provider (f32).
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] for another dtype, bad options, no ONNX Runtime library, a library
    /// without the CUDA provider (or one that cannot start) for a GPU device, no ONNX file (for
    /// int8: no quantized graph, with the command that makes it), or a graph without the inputs
    /// it needs.
    fn load(document: &LoadDocument) -> Result<Self, BackendError> {
        let settings = &document.settings;
        let supported: &[DType] = match settings.device {
            Device::Cpu => &[DType::F32, DType::Int8],
            Device::Cuda(_) => &[DType::F32],
        };
        let dtype = settings.dtype_among("onnx", supported)?;
        let options: OnnxOptions = settings.options()?;
        let library = library(options.library.as_deref())?;
        let providers = match settings.device {
            Device::Cpu => Vec::new(),
            Device::Cuda(index) => {
                providers::preload_cuda(options.cuda_libraries.as_deref())?;
                vec![providers::cuda(library, index)?]
            }
        };
        let plan = SessionPlan {
            file: options.file.as_deref(),
            threads: options
                .intra_threads
                .unwrap_or_else(|| document.cpu_threads()),
            spinning: options.spinning,
            optimization: options.optimization,
            providers,
            cpu_arena: options.cpu_arena,
            dtype,
        };
        Self::open(&document.model, library, plan)
    }

    /// The ONNX file (the `file` option, else `model.onnx`, else `onnx/model.onnx`), with its
    /// external weight data (`<file>_data`) when the repository has it.
    fn files(query: &FilesQuery) -> Result<WeightFiles, BackendError> {
        let options: OnnxOptions = query.settings.options()?;
        Ok(weight_files(options.file.as_deref()))
    }
}

/// The files to download for the ONNX file `file` (else the first of [`DEFAULT_FILES`] the
/// repository has), each with its external weight data (`<file>_data`) when there is some.
fn weight_files(file: Option<&Path>) -> WeightFiles {
    let files: Vec<String> = match file {
        Some(file) => vec![file.to_string_lossy().into_owned()],
        None => DEFAULT_FILES.iter().map(|f| f.to_string()).collect(),
    };
    WeightFiles {
        alternatives: files
            .iter()
            .map(|file| FileSet::of(&[file]).with_companions(&[&format!("{file}_data")]))
            .collect(),
    }
}

impl OnnxBackend {
    /// Opens the ONNX graph of `card` in a session of `library` as `plan` says.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] when a provider cannot start, there is no ONNX file, or the graph
    /// lacks the inputs it needs.
    fn open(card: &ModelSpec, library: &Library, plan: SessionPlan) -> Result<Self, BackendError> {
        let file = model_file(&card.path, plan.file, plan.dtype)?;
        let level = match plan.optimization {
            0 => GraphOptimizationLevel::Disable,
            1 => GraphOptimizationLevel::Level1,
            2 => GraphOptimizationLevel::Level2,
            _ => GraphOptimizationLevel::Level3,
        };
        let builder = Session::builder(&library.environment)
            .map_err(load_error)?
            .with_optimization_level(level)
            .map_err(load_error)?
            .with_intra_threads(plan.threads)
            .map_err(load_error)?
            .with_intra_op_spinning(plan.spinning)
            .map_err(load_error)?;
        let mut execution_providers = plan.providers;
        execution_providers.push(
            ep::CPU::default()
                .with_arena_allocator(plan.cpu_arena)
                .build(),
        );
        let mut builder = builder
            .with_execution_providers(&execution_providers)
            .map_err(|e| providers::registration_error(library, &execution_providers, e))?;
        let session = builder
            .commit_from_file(&file)
            .map_err(|e| BackendError::Load(format!("{}: {e}", file.display())))?;

        let input_names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        let inputs = GraphInputs::of(&file, &input_names, card)?;
        let output_names: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let output = graph::output_of(&file, &output_names, &card.head)?;
        let provider_names: Vec<&str> = execution_providers.iter().map(|p| p.name()).collect();
        tracing::info!(
            file = %file.display(),
            threads = plan.threads,
            output = %output,
            providers = ?provider_names,
            cpu_arena = plan.cpu_arena,
            "ONNX Runtime session ready"
        );
        let mut spec = EncoderSpec::new(card, plan.dtype);
        spec.capabilities.base_task = !inputs.task_id;
        Ok(Self {
            session,
            spec,
            inputs,
            output,
        })
    }
}

/// The ONNX file to open: `file` when given, else the first of [`DEFAULT_FILES`] (for int8:
/// [`INT8_FILES`]) there is.
fn model_file(dir: &Path, file: Option<&Path>, dtype: DType) -> Result<PathBuf, BackendError> {
    let defaults = if dtype == DType::Int8 {
        INT8_FILES
    } else {
        DEFAULT_FILES
    };
    graph::find_file(dir, file, &defaults).map_err(|looked| {
        let hint = if dtype == DType::Int8 && file.is_none() {
            format!(
                "; make the int8 graph from the fp32 one with `.assets/venv/bin/python \
                 scripts/quantize_onnx.py {}` (scripts/setup.sh does it for the default model)",
                dir.display()
            )
        } else {
            String::new()
        };
        BackendError::Load(format!("no ONNX file: {looked}{hint}"))
    })
}

impl PaddedEncoder for OnnxBackend {
    fn spec(&self) -> &EncoderSpec {
        &self.spec
    }

    fn encode_padded(&mut self, padded: &PaddedBatch) -> Result<Vec<f32>, BackendError> {
        let shape = [padded.rows, padded.cols];
        let tensor = |values: &Vec<i64>| {
            Tensor::from_array((shape, values.clone())).map_err(inference_error)
        };
        let mut inputs = ort::inputs![
            "input_ids" => tensor(&padded.input_ids)?,
            "attention_mask" => tensor(&padded.attention_mask)?,
        ];
        if self.inputs.token_types {
            inputs.push((
                "token_type_ids".into(),
                tensor(&padded.token_type_ids)?.into(),
            ));
        }
        if let Some(positions) = self.inputs.positions {
            inputs.push((
                "position_ids".into(),
                tensor(&padded.position_ids(positions))?.into(),
            ));
        }
        if self.inputs.task_id {
            let adapter = graph::single_adapter(&padded.adapter_ids)?;
            let task_id = Tensor::from_array(((), vec![adapter])).map_err(inference_error)?;
            inputs.push(("task_id".into(), task_id.into()));
        }
        let outputs = self.session.run(inputs).map_err(inference_error)?;
        let (out_shape, values) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(inference_error)?;
        let width = self.spec.capabilities.hidden_size as i64;
        let expected: Vec<i64> = match self.spec.head {
            Head::Pooled => vec![padded.rows as i64, padded.cols as i64, width],
            Head::Classifier { .. } => vec![padded.rows as i64, width],
        };
        if **out_shape != *expected {
            return Err(BackendError::Inference(format!(
                "output shape {:?}, expected {expected:?}",
                &**out_shape
            )));
        }
        Ok(values.to_vec())
    }
}
