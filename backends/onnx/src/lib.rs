//! The ONNX Runtime backend: runs a model's `model.onnx` (or `onnx/model.onnx`) through `ort`, with
//! the ONNX Runtime library opened at run time (`load-dynamic`; [`library`] finds it), on the CPU
//! execution provider, in f32.
//!
//! The graph's inputs are bound by name from the session's metadata (`input_ids`,
//! `attention_mask`, and `token_type_ids` when the graph has it); its token-level output
//! (`last_hidden_state`, else `text_embeds`, else the first output) is pooled here, outside the
//! graph.
//!
//! A graph with a scalar `task_id` input (jina-embeddings-v3's official export) selects one task
//! adapter per run: such a model declares that it cannot mix tasks in a batch (the scheduler then
//! batches each task apart) and cannot run the base weights (task 0).

#![deny(missing_docs)]

pub mod library;

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use embedrt_backend_core::guest::BackendPlugin;
use embedrt_backend_core::padded::{EncoderSpec, PaddedBatch, PaddedEncoder};
use embedrt_backend_core::{BackendError, DType, FileSet, FilesQuery, LoadDocument, WeightFiles};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;

/// Backend options (`options = { ... }` in the model's config).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnnxOptions {
    /// Intra-op threads; default: every core.
    pub intra_threads: Option<usize>,
    /// Let idle intra-op threads spin (costly on a small shared machine; off by default).
    pub spinning: bool,
    /// Graph optimization level, 0 (none) to 3 (all).
    pub optimization: u8,
    /// The ONNX file, relative to the model folder; default `model.onnx`, then `onnx/model.onnx`.
    pub file: Option<PathBuf>,
    /// The ONNX Runtime library; default: found as [`library`] describes.
    pub library: Option<PathBuf>,
}

impl Default for OnnxOptions {
    fn default() -> Self {
        Self {
            intra_threads: None,
            spinning: false,
            optimization: 3,
            file: None,
            library: None,
        }
    }
}

/// The one ONNX Runtime environment of the process (ONNX Runtime allows only one).
static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

fn environment(library: Option<&Path>) -> Result<&'static Environment, BackendError> {
    ENVIRONMENT
        .get_or_init(|| library::load(library))
        .as_ref()
        .map_err(|e| BackendError::Load(e.clone()))
}

/// A model running in an ONNX Runtime session.
pub struct OnnxBackend {
    session: Session,
    spec: EncoderSpec,
    has_token_types: bool,
    has_task_id: bool,
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

impl BackendPlugin for OnnxBackend {
    const NAME: &'static CStr = c"onnx";

    /// Opens the model's ONNX graph with the settings of `document` (CPU, f32).
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] for a device other than the CPU or a dtype other than f32, bad
    /// options, no ONNX Runtime library, no ONNX file, or a graph without the inputs it needs.
    fn load(document: &LoadDocument) -> Result<Self, BackendError> {
        let settings = &document.settings;
        settings.require_cpu("onnx")?;
        let dtype = settings.dtype_among("onnx", &[DType::F32])?;
        let options: OnnxOptions = settings.options()?;
        let card = &document.card;
        let file = model_file(&card.path, options.file.as_deref())?;
        let level = match options.optimization {
            0 => GraphOptimizationLevel::Disable,
            1 => GraphOptimizationLevel::Level1,
            2 => GraphOptimizationLevel::Level2,
            _ => GraphOptimizationLevel::Level3,
        };
        let threads = options
            .intra_threads
            .unwrap_or_else(embedrt_backend_core::threads::cores);
        let session = Session::builder(environment(options.library.as_deref())?)
            .map_err(load_error)?
            .with_optimization_level(level)
            .map_err(load_error)?
            .with_intra_threads(threads)
            .map_err(load_error)?
            .with_intra_op_spinning(options.spinning)
            .map_err(load_error)?
            .commit_from_file(&file)
            .map_err(|e| BackendError::Load(format!("{}: {e}", file.display())))?;

        let input_names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for required in ["input_ids", "attention_mask"] {
            if !input_names.contains(&required) {
                return Err(BackendError::Load(format!(
                    "{} has no `{required}` input (inputs: {input_names:?})",
                    file.display()
                )));
            }
        }
        let has_token_types = input_names.contains(&"token_type_ids");
        let has_task_id = input_names.contains(&"task_id");
        let output_names: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let output = ["last_hidden_state", "text_embeds"]
            .into_iter()
            .find(|name| output_names.contains(name))
            .or(output_names.first().copied())
            .map(str::to_string)
            .ok_or_else(|| BackendError::Load(format!("{} has no output", file.display())))?;
        tracing::info!(file = %file.display(), threads, output = %output, "ONNX Runtime session ready");
        let mut spec = EncoderSpec::new(card, dtype);
        spec.capabilities.base_task = !has_task_id;
        Ok(Self {
            session,
            spec,
            has_token_types,
            has_task_id,
            output,
        })
    }

    /// The ONNX file (the `file` option, else `model.onnx`, else `onnx/model.onnx`), with its
    /// external weight data (`<file>_data`) when the repository has it.
    fn files(query: &FilesQuery) -> Result<WeightFiles, BackendError> {
        let options: OnnxOptions = query.settings.options()?;
        let named = options.file.map(|f| f.to_string_lossy().into_owned());
        let files: Vec<String> = match named {
            Some(file) => vec![file],
            None => DEFAULT_FILES.iter().map(|f| f.to_string()).collect(),
        };
        Ok(WeightFiles {
            alternatives: files
                .iter()
                .map(|file| FileSet::of(&[file]).with_companions(&[&format!("{file}_data")]))
                .collect(),
        })
    }
}

/// The adapter index (task id - 1) shared by every row; graphs with a scalar `task_id` run one
/// adapter per call and have no base-weights mode.
fn single_adapter(task_ids: &[u32]) -> Result<i64, BackendError> {
    let first = task_ids.first().copied().unwrap_or(0);
    if task_ids.iter().any(|&t| t != first) {
        return Err(BackendError::InvalidInput(
            "this ONNX graph runs one task per batch".into(),
        ));
    }
    if first == 0 {
        return Err(BackendError::InvalidInput(
            "this ONNX graph has no base-weights mode: task `none` is not available".into(),
        ));
    }
    Ok(first as i64 - 1)
}

/// The ONNX file to open: `file` when given, else the first of [`DEFAULT_FILES`] there is.
fn model_file(dir: &Path, file: Option<&Path>) -> Result<PathBuf, BackendError> {
    let candidates: Vec<PathBuf> = match file {
        Some(file) => vec![dir.join(file)],
        None => DEFAULT_FILES.iter().map(|f| dir.join(f)).collect(),
    };
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| BackendError::Load(format!("no ONNX file: looked for {candidates:?}")))
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
        if self.has_token_types {
            inputs.push((
                "token_type_ids".into(),
                tensor(&padded.token_type_ids)?.into(),
            ));
        }
        if self.has_task_id {
            let adapter = single_adapter(&padded.task_ids)?;
            let task_id = Tensor::from_array(((), vec![adapter])).map_err(inference_error)?;
            inputs.push(("task_id".into(), task_id.into()));
        }
        let outputs = self.session.run(inputs).map_err(inference_error)?;
        let (out_shape, values) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(inference_error)?;
        let expected = [
            padded.rows as i64,
            padded.cols as i64,
            self.spec.capabilities.hidden_size as i64,
        ];
        if **out_shape != expected {
            return Err(BackendError::Inference(format!(
                "output shape {:?}, expected {expected:?}",
                &**out_shape
            )));
        }
        Ok(values.to_vec())
    }
}
