//! The ONNX Runtime engine: runs a model's `model.onnx` (or `onnx/model.onnx`) through `ort`, with
//! the ONNX Runtime library opened at run time (`load-dynamic`), on the CPU execution provider.
//!
//! The graph's inputs are bound by name from the session's metadata (`input_ids`,
//! `attention_mask`, and `token_type_ids` when the graph has it); its token-level output
//! (`last_hidden_state`, else `text_embeds`, else the first output) is pooled here, outside the
//! graph.
//!
//! A graph with a scalar `task_id` input (jina-embeddings-v3's official export) selects one task
//! adapter per run: such a model declares that it cannot mix tasks in a batch (the scheduler then
//! batches each task apart) and cannot run the base weights (task 0).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use embedrt_runtime::padded::{EncoderSpec, PaddedBatch, PaddedEncoder};
use embedrt_runtime::plugin::EngineConfig;
use embedrt_runtime::BackendError;
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;

/// Engine options (`options = { ... }` in the model's config).
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
    /// The ONNX Runtime library; default `$ORT_DYLIB_PATH`.
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
        .get_or_init(|| {
            let path = library
                .map(Path::to_path_buf)
                .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
                .ok_or("ONNX Runtime library not configured: set ORT_DYLIB_PATH or the `library` option")?;
            let builder = ort::init_from(&path)
                .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?;
            builder.with_name("embedrt").build().map_err(|e| e.to_string())
        })
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

impl OnnxBackend {
    /// Opens the model's ONNX graph with the engine options of `config`.
    pub fn load(config: &EngineConfig) -> Result<Self, BackendError> {
        let options: OnnxOptions = config.options()?;
        let card = &config.card;
        let file = model_file(&card.path, options.file.as_deref())?;
        let level = match options.optimization {
            0 => GraphOptimizationLevel::Disable,
            1 => GraphOptimizationLevel::Level1,
            2 => GraphOptimizationLevel::Level2,
            _ => GraphOptimizationLevel::Level3,
        };
        let threads = options
            .intra_threads
            .unwrap_or_else(embedrt_runtime::config::cores);
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
        let mut spec = EncoderSpec::from_card(card);
        spec.capabilities.base_task = !has_task_id;
        Ok(Self {
            session,
            spec,
            has_token_types,
            has_task_id,
            output,
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

/// The ONNX file to open: `file` when given, else `model.onnx`, else `onnx/model.onnx`.
fn model_file(dir: &Path, file: Option<&Path>) -> Result<PathBuf, BackendError> {
    let candidates = match file {
        Some(file) => vec![dir.join(file)],
        None => vec![dir.join("model.onnx"), dir.join("onnx/model.onnx")],
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
