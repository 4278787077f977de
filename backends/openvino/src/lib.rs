//! The OpenVINO backend (`openvino`): runs a model's OpenVINO IR (`openvino_model.xml` with its
//! `.bin`, as many hub repositories ship), else its ONNX graph, on the CPU through OpenVINO's C
//! library, opened at run time ([`library`] finds it).
//!
//! - `dtype = "f32"` (the default) computes in f32;
//! - `dtype = "bf16"` asks the CPU plugin for bf16 (`INFERENCE_PRECISION_HINT`) on the same
//!   graph: near-lossless at about int8's speed on CPUs with AVX512_BF16 or AMX, and refused
//!   elsewhere (OpenVINO would silently compute in f32);
//! - `dtype = "int8"` runs the quantized IR `scripts/quantize_openvino.py` makes from the fp32
//!   graph (`openvino_model_int8.xml`).
//!
//! Inputs and output are bound by name as for ONNX Runtime (`embedrt_backend_core::graph`):
//! batch and sequence dimensions stay dynamic, so one compiled model serves every batch, each
//! padded up to one of a few shapes ([`shapes`]) so that the memory OpenVINO keeps per shape is
//! bounded, and the model is compiled afresh once it has kept more than a budget and sat idle
//! ([`rebuild`]), which hands back the working memory of the largest batches.

#![deny(missing_docs)]

pub mod library;
pub mod rebuild;
pub mod shapes;

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use embedrt_backend_core::graph::{self, GraphInputs};
use embedrt_backend_core::guest::BackendPlugin;
use embedrt_backend_core::padded::{EncoderSpec, PaddedBatch, PaddedEncoder};
use embedrt_backend_core::{
    BackendError, DType, Device, FileSet, FilesQuery, Head, LoadDocument, ModelSpec, WeightFiles,
};
use openvino::{Core, DeviceType, ElementType, PropertyKey, RwPropertyKey, Shape, Tensor};
use rebuild::{RebuildPolicy, Rebuilding, Session};
use serde::Deserialize;

/// Backend options (`options = { ... }` in the model's config).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenVinoOptions {
    /// Inference threads; default: the host's budget for this copy of the model (every core,
    /// split between a variant's replicas).
    pub threads: Option<usize>,
    /// The graph, relative to the model folder (an `.xml` IR or an `.onnx` file); default: the
    /// first of [`GRAPH_FILES`] there is (for int8, of [`INT8_FILES`]).
    pub file: Option<PathBuf>,
    /// OpenVINO's C library; default: found as [`library`] describes.
    pub library: Option<PathBuf>,
    /// Runs each batch in its own shape instead of padding it up to one of [`shapes`]' buckets:
    /// no padded work, but OpenVINO keeps memory for every new shape, without bound.
    pub exact_shapes: bool,
    /// How long (ms) the model must have run nothing before it is compiled afresh to hand back
    /// the memory OpenVINO kept ([`rebuild`]); 0 never rebuilds it.
    pub rebuild_idle_ms: u64,
    /// How much memory (MB) the model must have kept since it was compiled for that.
    pub rebuild_kept_mb: u64,
}

impl Default for OpenVinoOptions {
    fn default() -> Self {
        Self {
            threads: None,
            file: None,
            library: None,
            exact_shapes: false,
            rebuild_idle_ms: 500,
            rebuild_kept_mb: 64,
        }
    }
}

impl OpenVinoOptions {
    /// When the model is compiled afresh; none when `rebuild_idle_ms` is 0.
    fn rebuild_policy(&self) -> Option<RebuildPolicy> {
        (self.rebuild_idle_ms > 0).then(|| RebuildPolicy {
            idle: Duration::from_millis(self.rebuild_idle_ms),
            kept_bytes: self.rebuild_kept_mb << 20,
        })
    }
}

/// The graphs looked for, in order, unless the `file` option names one: the IR, else the ONNX
/// file.
pub const GRAPH_FILES: [&str; 4] = [
    "openvino_model.xml",
    "openvino/openvino_model.xml",
    "model.onnx",
    "onnx/model.onnx",
];
/// The quantized IRs `scripts/quantize_openvino.py` writes, looked for for `dtype = "int8"`.
pub const INT8_FILES: [&str; 2] = [
    "openvino_model_int8.xml",
    "openvino/openvino_model_int8.xml",
];

/// Whether the library loaded, once tried (the first load's `library` option decides).
static LIBRARY: OnceLock<Result<(), String>> = OnceLock::new();

/// Opens OpenVINO's library (once per process) and a core on it.
fn core(option: Option<&Path>) -> Result<Core, BackendError> {
    LIBRARY
        .get_or_init(|| library::load(option))
        .as_ref()
        .map_err(|e| BackendError::Load(e.clone()))?;
    Core::new().map_err(load_error)
}

fn load_error(e: impl std::fmt::Display) -> BackendError {
    BackendError::Load(e.to_string())
}

fn inference_error(e: impl std::fmt::Display) -> BackendError {
    BackendError::Inference(e.to_string())
}

/// Whether this CPU computes bf16 natively, as OpenVINO's CPU plugin reports it
/// (`OPTIMIZATION_CAPABILITIES` lists `BF16` with AVX512_BF16 or AMX).
/// `EMBEDRT_OPENVINO_CAPABILITIES` replaces the report, so that the refusal can be tested on a
/// CPU that has bf16.
fn has_bf16(core: &Core) -> Result<bool, BackendError> {
    let capabilities = match std::env::var("EMBEDRT_OPENVINO_CAPABILITIES") {
        Ok(forced) => forced,
        Err(_) => core
            .get_property(&DeviceType::CPU, &PropertyKey::DeviceCapabilities)
            .map_err(load_error)?,
    };
    Ok(capabilities.split_whitespace().any(|c| c == "BF16"))
}

/// A model compiled for OpenVINO's CPU plugin, with its one inference request.
pub struct OpenVinoBackend {
    session: Rebuilding,
    /// Whether batches run in their own shapes (the `exact_shapes` option).
    exact_shapes: bool,
    spec: EncoderSpec,
    inputs: GraphInputs,
    output: String,
}

impl BackendPlugin for OpenVinoBackend {
    const NAME: &'static CStr = c"openvino";

    /// Compiles the model's graph for the CPU in the document's dtype with its threads.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] for a GPU device, another dtype, bf16 on a CPU without it, bad
    /// options, no OpenVINO library, no graph (for int8: no quantized IR, with the command that
    /// makes it), or a graph without the inputs it needs.
    fn load(document: &LoadDocument) -> Result<Self, BackendError> {
        let settings = &document.settings;
        if settings.device != Device::Cpu {
            return Err(BackendError::Load(format!(
                "the openvino backend runs on the CPU only, not {}",
                settings.device
            )));
        }
        let dtype = settings.dtype_among("openvino", &[DType::F32, DType::Bf16, DType::Int8])?;
        let options: OpenVinoOptions = settings.options()?;
        let mut core = core(options.library.as_deref())?;
        if dtype == DType::Bf16 && !has_bf16(&core)? {
            return Err(BackendError::Load(
                "dtype bf16 needs a CPU that computes bf16 (AVX512_BF16 or AMX), and this one \
                 does not (OpenVINO's CPU plugin lists no BF16 capability); use f32 or int8"
                    .into(),
            ));
        }
        let threads = options.threads.unwrap_or_else(|| document.cpu_threads());
        // int8 IRs carry their precision in the graph: the hint stays f32 for what is not
        // quantized.
        let precision = if dtype == DType::Bf16 { "bf16" } else { "f32" };
        for (key, value) in [
            (RwPropertyKey::HintInferencePrecision, precision.to_string()),
            (RwPropertyKey::InferenceNumThreads, threads.to_string()),
            (RwPropertyKey::NumStreams, "1".to_string()),
            (RwPropertyKey::HintPerformanceMode, "LATENCY".to_string()),
        ] {
            core.set_property(&DeviceType::CPU, &key, &value)
                .map_err(|e| BackendError::Load(format!("OpenVINO CPU property {key:?}: {e}")))?;
        }
        let file = model_file(&document.model.path, options.file.as_deref(), dtype)?;
        Self::compile(core, &document.model, &file, dtype, threads, &options)
    }

    /// The graph: the `file` option, else the IR (with its `.bin`), else the ONNX file (with its
    /// external data).
    fn files(query: &FilesQuery) -> Result<WeightFiles, BackendError> {
        let options: OpenVinoOptions = query.settings.options()?;
        let files: Vec<String> = match options.file {
            Some(file) => vec![file.to_string_lossy().into_owned()],
            None => GRAPH_FILES.iter().map(|f| f.to_string()).collect(),
        };
        Ok(WeightFiles {
            alternatives: files
                .iter()
                .map(|file| FileSet::of(&[file]).with_companions(&[&companion(file)]))
                .collect(),
        })
    }
}

/// The file a graph's weights are in: an IR's `.bin`, an ONNX file's external data.
fn companion(file: &str) -> String {
    ir_weights(file).unwrap_or_else(|| format!("{file}_data"))
}

/// The `.bin` of the IR `file`; none for a file that is no IR.
fn ir_weights(file: &str) -> Option<String> {
    file.strip_suffix(".xml").map(|stem| format!("{stem}.bin"))
}

/// The graph to compile: `file` when given, else the first there is of [`GRAPH_FILES`] (for
/// int8: [`INT8_FILES`]).
fn model_file(dir: &Path, file: Option<&Path>, dtype: DType) -> Result<PathBuf, BackendError> {
    let defaults: &[&str] = if dtype == DType::Int8 {
        &INT8_FILES
    } else {
        &GRAPH_FILES
    };
    graph::find_file(dir, file, defaults).map_err(|looked| {
        let hint = if dtype == DType::Int8 && file.is_none() {
            format!(
                "; make the int8 IR from the fp32 graph with `.assets/openvino-venv/bin/python \
                 scripts/quantize_openvino.py {}` (scripts/setup.sh does it for the default model)",
                dir.display()
            )
        } else {
            String::new()
        };
        BackendError::Load(format!("no graph for OpenVINO: {looked}{hint}"))
    })
}

impl OpenVinoBackend {
    /// Reads the graph in `file` (a model of `card`) and compiles it for the CPU with `core`,
    /// which then rebuilds it as `options` say.
    fn compile(
        mut core: Core,
        card: &ModelSpec,
        file: &Path,
        dtype: DType,
        threads: usize,
        options: &OpenVinoOptions,
    ) -> Result<Self, BackendError> {
        let path = file.to_string_lossy();
        // An ONNX file names its own external data.
        let weights = ir_weights(&path).unwrap_or_default();
        let at = |e: openvino::InferenceError| BackendError::Load(format!("{path}: {e}"));
        let model = core.read_model_from_file(&path, &weights).map_err(at)?;
        let names = |count: usize, node: &dyn Fn(usize) -> Result<openvino::Node, _>| {
            (0..count)
                .map(|i| node(i).and_then(|n| n.get_name()))
                .collect::<Result<Vec<String>, _>>()
        };
        let inputs = names(model.get_inputs_len().map_err(at)?, &|i| {
            model.get_input_by_index(i)
        })
        .map_err(at)?;
        let outputs = names(model.get_outputs_len().map_err(at)?, &|i| {
            model.get_output_by_index(i)
        })
        .map_err(at)?;
        let input_names: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let output_names: Vec<&str> = outputs.iter().map(String::as_str).collect();
        let graph_inputs = GraphInputs::of(file, &input_names, card)?;
        let output = graph::output_of(file, &output_names, &card.head)?;
        let session = Session::compile(&mut core, &model).map_err(at)?;
        tracing::info!(
            file = %file.display(),
            %dtype,
            threads,
            output = %output,
            "OpenVINO model compiled"
        );
        let mut spec = EncoderSpec::new(card, dtype);
        spec.capabilities.base_task = !graph_inputs.task_id;
        Ok(Self {
            session: Rebuilding::start(core, model, session, options.rebuild_policy()),
            exact_shapes: options.exact_shapes,
            spec,
            inputs: graph_inputs,
            output,
        })
    }
}

/// Sets `session`'s input `name` to the `[rows, cols]` i64 `values`.
fn set_input(
    session: &mut Session,
    name: &str,
    shape: [i64; 2],
    values: &[i64],
) -> Result<(), BackendError> {
    let shape = Shape::new(&shape).map_err(inference_error)?;
    let mut tensor = Tensor::new(ElementType::I64, &shape).map_err(inference_error)?;
    tensor
        .get_data_mut::<i64>()
        .map_err(inference_error)?
        .copy_from_slice(values);
    session
        .request()
        .set_tensor(name, &tensor)
        .map_err(inference_error)
}

impl PaddedEncoder for OpenVinoBackend {
    fn spec(&self) -> &EncoderSpec {
        &self.spec
    }

    fn padded_shape(&self, rows: usize, cols: usize) -> (usize, usize) {
        if self.exact_shapes {
            return (rows, cols);
        }
        shapes::bucket(rows, cols, self.spec.capabilities.max_input_tokens)
    }

    fn encode_padded(&mut self, padded: &PaddedBatch) -> Result<Vec<f32>, BackendError> {
        let shape = [padded.rows as i64, padded.cols as i64];
        let mut session = self.session.lock();
        set_input(&mut session, "input_ids", shape, &padded.input_ids)?;
        set_input(
            &mut session,
            "attention_mask",
            shape,
            &padded.attention_mask,
        )?;
        if self.inputs.token_types {
            set_input(
                &mut session,
                "token_type_ids",
                shape,
                &padded.token_type_ids,
            )?;
        }
        if let Some(positions) = self.inputs.positions {
            let ids = padded.position_ids(positions);
            set_input(&mut session, "position_ids", shape, &ids)?;
        }
        if self.inputs.task_id {
            let adapter = graph::single_adapter(&padded.adapter_ids)?;
            // A scalar: OpenVINO's C API makes no shape of rank 0, but the request holds the
            // input's tensor already (its shape is static).
            let mut task_id = session
                .request()
                .get_tensor("task_id")
                .map_err(inference_error)?;
            task_id.get_data_mut::<i64>().map_err(inference_error)?[0] = adapter;
        }
        session.infer().map_err(inference_error)?;
        let output = session
            .request()
            .get_tensor(&self.output)
            .map_err(inference_error)?;
        let out_shape = output.get_shape().map_err(inference_error)?;
        let width = self.spec.capabilities.hidden_size as i64;
        let expected: Vec<i64> = match self.spec.head {
            Head::Pooled => vec![shape[0], shape[1], width],
            Head::Classifier { .. } => vec![shape[0], width],
        };
        if out_shape.get_dimensions() != expected.as_slice() {
            return Err(BackendError::Inference(format!(
                "output shape {:?}, expected {expected:?}",
                out_shape.get_dimensions()
            )));
        }
        Ok(output.get_data::<f32>().map_err(inference_error)?.to_vec())
    }
}
