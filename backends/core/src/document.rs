//! The load document: what a backend is told when it loads a model (the JSON contract of the
//! plugin ABI, documented key by key in `embedrt-plugin-abi`), and the files it asks for.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use embedrt_plugin_abi::{DTypeCode, LOAD_DOCUMENT_VERSION};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::backend::BackendError;
use crate::pooling::Pooling;

/// The model families backends implement, by the name the load document's
/// `card.architecture` gives them.
pub mod architecture {
    /// BERT-family encoders (BERT, MiniLM, bge, e5, gte) with absolute positions.
    pub const BERT: &str = "bert";
    /// jina-embeddings-v3: XLM-RoBERTa with rotary positions and stacked LoRA task adapters.
    pub const JINA_V3: &str = "jina-v3";
}

/// Everything a backend is told when it loads a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadDocument {
    /// The document's version; 0 for the ABI 1.0 form, which had no `version` key.
    #[serde(default)]
    pub version: u32,
    /// The model. (Named `card` since ABI 1.0.)
    pub card: ModelSpec,
    /// The backend's options, device and dtype.
    #[serde(flatten)]
    pub settings: BackendSettings,
    /// The largest batches the host will send (added within version 1: absent from older hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchLimits>,
    /// The CPU threads the host gives this copy of the model (added within version 1: absent
    /// from older hosts, meaning every core). A host that loads a model several times (replicas)
    /// splits the cores between the copies; see [`LoadDocument::cpu_threads`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_threads: Option<usize>,
}

/// The largest batch the host's scheduler forms for a model, for backends that plan for shapes
/// ahead of time (TensorRT's optimization profiles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchLimits {
    /// Most sequences in one batch.
    pub max_rows: usize,
    /// Most tokens in one batch (padding included).
    pub max_tokens: usize,
}

impl BatchLimits {
    /// What a host's scheduler forms on `device` unless configured otherwise: 64 rows and 16384
    /// tokens on the CPU, whose latency grows with batch size; 256 rows of 128 tokens on a GPU,
    /// enough to keep a data-centre GPU busy with short inputs while one batch stays in the tens of
    /// milliseconds for a jina-v3-size model.
    pub fn default_for(device: Device) -> Self {
        match device {
            Device::Cpu => Self {
                max_rows: 64,
                max_tokens: 16384,
            },
            Device::Cuda(_) => Self {
                max_rows: 256,
                max_tokens: 32768,
            },
        }
    }
}

/// What a backend is asked before the model's files are there: which weight files it needs for
/// these settings (the load document without its `card`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilesQuery {
    /// The query's version (that of the load document).
    #[serde(default)]
    pub version: u32,
    /// The backend's options, device and dtype.
    #[serde(flatten)]
    pub settings: BackendSettings,
}

/// How the config file sets a backend up: its own options, where it runs and in which format.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendSettings {
    /// The backend's own options from the config file (`options = { ... }`).
    #[serde(default)]
    pub options: serde_json::Value,
    /// Where to run.
    #[serde(default)]
    pub device: Device,
    /// The number format to compute in; `None`: the backend's default.
    #[serde(default)]
    pub dtype: Option<DType>,
}

/// What a backend knows about the model it loads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// The model folder (Hugging Face layout).
    pub path: PathBuf,
    /// The model family (see [`architecture`]): which of the backend's implementations runs it.
    pub architecture: String,
    /// Width of the pooled embedding.
    pub hidden_size: usize,
    /// Number of token ids the model knows.
    pub vocab_size: usize,
    /// Longest input in tokens, special tokens included.
    pub max_tokens: usize,
    /// How token states are pooled.
    pub pooling: Pooling,
    /// Whether the model's pipeline L2-normalizes its output (done by the host; informative).
    pub normalize: bool,
    /// The id used to pad batches.
    pub pad_token_id: u32,
    /// Task adapter names in adapter order: batch task id `k + 1` selects adapter `k`, 0 the base
    /// weights. Empty for models without adapters.
    #[serde(default)]
    pub tasks: Vec<String>,
}

impl LoadDocument {
    /// A document of the current version.
    pub fn new(card: ModelSpec, settings: BackendSettings) -> Self {
        Self {
            version: LOAD_DOCUMENT_VERSION,
            card,
            settings,
            batch: None,
            cpu_threads: None,
        }
    }

    /// This document with the host's batch limits.
    pub fn with_batch(mut self, limits: BatchLimits) -> Self {
        self.batch = Some(limits);
        self
    }

    /// This document with the host's CPU thread budget for this copy of the model.
    pub fn with_cpu_threads(mut self, threads: usize) -> Self {
        self.cpu_threads = Some(threads);
        self
    }

    /// How many threads a backend's own CPU pool should have when its options do not say: the
    /// host's budget, else every core (at least 1 either way).
    pub fn cpu_threads(&self) -> usize {
        self.cpu_threads
            .unwrap_or_else(crate::threads::cores)
            .max(1)
    }

    /// Reads a document from JSON.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] when the JSON does not hold a document, or holds one of a newer
    /// version than this crate knows.
    pub fn from_json(json: &str) -> Result<Self, BackendError> {
        read_versioned(json, "load document", |d: &Self| d.version)
    }

    /// The document as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a load document always serializes")
    }
}

impl FilesQuery {
    /// A query of the current version.
    pub fn new(settings: BackendSettings) -> Self {
        Self {
            version: LOAD_DOCUMENT_VERSION,
            settings,
        }
    }

    /// Reads a query from JSON.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] when the JSON does not hold a query, or holds one of a newer
    /// version than this crate knows.
    pub fn from_json(json: &str) -> Result<Self, BackendError> {
        read_versioned(json, "files query", |q: &Self| q.version)
    }

    /// The query as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a files query always serializes")
    }
}

/// Parses `json` as a `what`, refusing versions newer than [`LOAD_DOCUMENT_VERSION`].
fn read_versioned<T: serde::de::DeserializeOwned>(
    json: &str,
    what: &str,
    version: impl Fn(&T) -> u32,
) -> Result<T, BackendError> {
    let value: T =
        serde_json::from_str(json).map_err(|e| BackendError::Load(format!("bad {what}: {e}")))?;
    if version(&value) > LOAD_DOCUMENT_VERSION {
        return Err(BackendError::Load(format!(
            "{what} version {} is newer than this backend understands ({LOAD_DOCUMENT_VERSION})",
            version(&value)
        )));
    }
    Ok(value)
}

impl BackendSettings {
    /// Decodes the backend's `options` into `T` (its defaults when there are none).
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] naming the option when `T` refuses it (unknown key, wrong type).
    pub fn options<T: serde::de::DeserializeOwned + Default>(&self) -> Result<T, BackendError> {
        if self.options.is_null() {
            return Ok(T::default());
        }
        serde_json::from_value(self.options.clone())
            .map_err(|e| BackendError::Load(format!("bad backend options: {e}")))
    }

    /// Checks that `backend`, which runs on the CPU only, is asked for the CPU.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] saying so for any other device.
    pub fn require_cpu(&self, backend: &str) -> Result<(), BackendError> {
        match self.device {
            Device::Cpu => Ok(()),
            other => Err(BackendError::Load(format!(
                "the {backend} backend runs on the CPU only; device \"{other}\" is not supported"
            ))),
        }
    }

    /// The dtype to compute in: the one asked for when `supported` holds it, else the first of
    /// `supported` when none was asked for.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] naming the supported dtypes when the one asked for is not among them.
    pub fn dtype_among(&self, backend: &str, supported: &[DType]) -> Result<DType, BackendError> {
        match self.dtype {
            None => Ok(supported[0]),
            Some(dtype) if supported.contains(&dtype) => Ok(dtype),
            Some(dtype) => {
                let names: Vec<String> = supported.iter().map(DType::to_string).collect();
                Err(BackendError::Load(format!(
                    "the {backend} backend cannot compute in {dtype} on {}; supported: {}",
                    self.device,
                    names.join(", ")
                )))
            }
        }
    }
}

/// Where a model runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Device {
    /// The host's CPU.
    #[default]
    Cpu,
    /// CUDA GPU number N.
    Cuda(u32),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

impl FromStr for Device {
    type Err = String;

    /// Parses `"cpu"`, `"cuda"` (GPU 0) or `"cuda:N"`.
    fn from_str(text: &str) -> Result<Self, String> {
        let index = |n: &str| n.parse::<u32>().ok();
        match text {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => text
                .strip_prefix("cuda:")
                .and_then(index)
                .map(Device::Cuda)
                .ok_or_else(|| {
                    format!("device must be \"cpu\", \"cuda\" or \"cuda:N\", got {text:?}")
                }),
        }
    }
}

impl Serialize for Device {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The number format a model computes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// bfloat16.
    Bf16,
    /// 8-bit integer (quantized).
    Int8,
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
            DType::Int8 => "int8",
        })
    }
}

impl From<DType> for DTypeCode {
    fn from(dtype: DType) -> Self {
        match dtype {
            DType::F32 => DTypeCode::F32,
            DType::F16 => DTypeCode::F16,
            DType::Bf16 => DTypeCode::BF16,
            DType::Int8 => DTypeCode::INT8,
        }
    }
}

impl DType {
    /// The dtype of an ABI code; `None` for [`DTypeCode::UNKNOWN`] and codes this crate does not
    /// know.
    pub fn from_code(code: DTypeCode) -> Option<Self> {
        match code {
            DTypeCode::F32 => Some(DType::F32),
            DTypeCode::F16 => Some(DType::F16),
            DTypeCode::BF16 => Some(DType::Bf16),
            DTypeCode::INT8 => Some(DType::Int8),
            _ => None,
        }
    }
}

/// The files of a model repository a backend needs (the ABI's files answer).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightFiles {
    /// Sets of files in order of preference: the first one the repository has is used. Empty: the
    /// backend needs no weight files.
    pub alternatives: Vec<FileSet>,
}

/// One way to get a model's weights.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSet {
    /// Files that must all be there, relative to the repository's root.
    pub files: Vec<String>,
    /// Files needed when the repository has them (external weight data).
    #[serde(default)]
    pub companions: Vec<String>,
}

impl FileSet {
    /// A set of `files` with no companions.
    pub fn of(files: &[&str]) -> Self {
        Self {
            files: files.iter().map(|f| f.to_string()).collect(),
            companions: Vec::new(),
        }
    }

    /// This set with `companions` added.
    pub fn with_companions(mut self, companions: &[&str]) -> Self {
        self.companions = companions.iter().map(|f| f.to_string()).collect();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ModelSpec {
        ModelSpec {
            path: "/m".into(),
            architecture: architecture::BERT.into(),
            hidden_size: 8,
            vocab_size: 100,
            max_tokens: 16,
            pooling: Pooling::Mean,
            normalize: true,
            pad_token_id: 0,
            tasks: Vec::new(),
        }
    }

    #[test]
    fn devices_parse_and_print() {
        assert_eq!("cpu".parse(), Ok(Device::Cpu));
        assert_eq!("cuda".parse(), Ok(Device::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(Device::Cuda(3)));
        assert!("gpu".parse::<Device>().unwrap_err().contains("\"gpu\""));
        assert!("cuda:x".parse::<Device>().is_err());
        assert_eq!(Device::Cuda(1).to_string(), "cuda:1");
    }

    #[test]
    fn the_document_round_trips_and_reads_the_1_0_form() {
        let settings = BackendSettings {
            options: serde_json::json!({"a": 1}),
            device: Device::Cuda(0),
            dtype: Some(DType::Bf16),
        };
        let document = LoadDocument::new(spec(), settings.clone())
            .with_batch(BatchLimits {
                max_rows: 64,
                max_tokens: 16384,
            })
            .with_cpu_threads(1);
        let json = document.to_json();
        assert!(
            json.contains(r#""batch":{"max_rows":64,"max_tokens":16384}"#),
            "{json}"
        );
        assert!(json.contains(r#""cpu_threads":1"#), "{json}");
        assert_eq!(document.cpu_threads(), 1);
        assert!(
            json.contains(r#""device":"cuda:0""#) && json.contains(r#""dtype":"bf16""#),
            "{json}"
        );
        assert_eq!(LoadDocument::from_json(&json).unwrap(), document);
        // What an ABI 1.0 host sent: no version, device or dtype.
        let old = r#"{"card":{"path":"/m","architecture":"bert","hidden_size":8,"vocab_size":100,
            "max_tokens":16,"pooling":"mean","normalize":true,"pad_token_id":0},"options":null}"#;
        let read = LoadDocument::from_json(old).unwrap();
        assert_eq!(read.cpu_threads(), crate::threads::cores());
        assert_eq!(
            (read.version, read.settings, read.card.tasks, read.batch),
            (0, BackendSettings::default(), Vec::new(), None)
        );
        let newer = json.replace(r#""version":1"#, r#""version":2"#);
        assert!(LoadDocument::from_json(&newer)
            .unwrap_err()
            .to_string()
            .contains("version 2"));
        let query = FilesQuery::new(settings);
        assert_eq!(FilesQuery::from_json(&query.to_json()).unwrap(), query);
        assert!(!query.to_json().contains("card"));
    }

    #[test]
    fn placement_refusals_say_what_is_supported() {
        let mut settings = BackendSettings::default();
        assert_eq!(settings.dtype_among("x", &[DType::F32]), Ok(DType::F32));
        settings.dtype = Some(DType::F16);
        let err = settings.dtype_among("candle", &[DType::F32]).unwrap_err();
        assert!(
            err.to_string()
                .contains("candle backend cannot compute in f16 on cpu; supported: f32"),
            "{err}"
        );
        settings.device = Device::Cuda(0);
        let err = settings.require_cpu("onnx").unwrap_err();
        assert!(err.to_string().contains("\"cuda:0\""), "{err}");
    }
}
