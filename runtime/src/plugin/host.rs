//! The host side of the ABI: find, open and check plugin libraries, and wrap their models as
//! [`Backend`]s.
//!
//! Libraries are opened once and never unloaded (unloading Rust or C++ code with thread-locals is
//! not safe on every platform); only the configured folders are searched.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use embedrt_plugin_abi::{
    BatchFn, BatchView, Capabilities as AbiCapabilities, EntryFn, ErrorBuf, ModelHandle, PluginApi,
    Status, ABI_MAJOR, ABI_MINOR, ENTRY_SYMBOL, PLUGIN_API_V1_0_SIZE,
};

use super::EngineConfig;
use crate::backend::{Backend, BackendError, Batch, Capabilities, Embeddings, Matrix, TokenStates};

/// Why a plugin library could not be used.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PluginError {
    /// The engine name holds characters a library name may not.
    #[error("invalid engine name {0:?}: use letters, digits, '-' and '_'")]
    InvalidName(String),
    /// No plugin folder holds the library.
    #[error("no plugin for engine {engine:?}: {file} is in none of {dirs:?}")]
    NotFound {
        /// The engine asked for.
        engine: String,
        /// The library file looked for.
        file: String,
        /// The folders searched.
        dirs: Vec<PathBuf>,
    },
    /// The dynamic loader refused the library.
    #[error("cannot open plugin {path}: {message}")]
    Open {
        /// The library.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },
    /// The library does not export the entry symbol.
    #[error("{path} is not an embedrt plugin: it does not export `embedrt_plugin_entry_v1`")]
    MissingEntry {
        /// The library.
        path: PathBuf,
    },
    /// The plugin was built for an ABI this host does not speak.
    #[error("plugin {path} speaks ABI {major}.{minor}; this host needs {ABI_MAJOR}.x with x >= {ABI_MINOR}")]
    AbiMismatch {
        /// The library.
        path: PathBuf,
        /// The plugin's major version.
        major: u32,
        /// The plugin's minor version.
        minor: u32,
    },
    /// The plugin's function table is shorter than ABI 1.0 requires.
    #[error(
        "plugin {path} has a function table of {size} bytes; ABI 1.0 needs {PLUGIN_API_V1_0_SIZE}"
    )]
    TableTooSmall {
        /// The library.
        path: PathBuf,
        /// The table's declared size.
        size: usize,
    },
}

/// Opens plugin libraries from a fixed list of folders.
#[derive(Clone, Debug)]
pub struct PluginHost {
    dirs: Vec<PathBuf>,
}

/// Libraries opened so far, by path; never closed.
static OPENED: Mutex<Option<HashMap<PathBuf, &'static PluginApi>>> = Mutex::new(None);

impl PluginHost {
    /// A host that searches `dirs`, in order.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Self { dirs }
    }

    /// The file name of engine `engine`'s plugin on this platform (`libembedrt_plugin_onnx.so`).
    pub fn file_name(engine: &str) -> Result<String, PluginError> {
        if engine.is_empty()
            || !engine
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(PluginError::InvalidName(engine.to_string()));
        }
        let stem = format!("embedrt_plugin_{}", engine.replace('-', "_"));
        Ok(libloading::library_filename(stem)
            .to_string_lossy()
            .into_owned())
    }

    /// Finds and opens the plugin of `engine`.
    pub fn open(&self, engine: &str) -> Result<&'static PluginApi, PluginError> {
        let file = Self::file_name(engine)?;
        let path = self
            .dirs
            .iter()
            .map(|dir| dir.join(&file))
            .find(|path| path.is_file())
            .ok_or_else(|| PluginError::NotFound {
                engine: engine.to_string(),
                file: file.clone(),
                dirs: self.dirs.clone(),
            })?;
        open_library(&path)
    }

    /// Loads a model with the plugin of `engine`.
    pub fn load_model(
        &self,
        engine: &str,
        config: &EngineConfig,
    ) -> Result<PluginBackend, BackendError> {
        let api = self
            .open(engine)
            .map_err(|e| BackendError::Load(e.to_string()))?;
        PluginBackend::load(api, config)
    }
}

/// Opens the library at `path` (once per process) and checks its ABI version.
pub fn open_library(path: &Path) -> Result<&'static PluginApi, PluginError> {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut opened = OPENED.lock().unwrap_or_else(|p| p.into_inner());
    let opened = opened.get_or_insert_with(HashMap::new);
    if let Some(api) = opened.get(&path) {
        return Ok(api);
    }
    // SAFETY: loading a library runs its initializers; only configured folders are searched.
    let library = unsafe { libloading::Library::new(&path) }.map_err(|e| PluginError::Open {
        path: path.clone(),
        message: e.to_string(),
    })?;
    // The library stays loaded for the life of the process, so the table it returns stays valid.
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    // SAFETY: the symbol has the `EntryFn` signature by the ABI's definition.
    let entry = unsafe { library.get::<EntryFn>(ENTRY_SYMBOL) }
        .map_err(|_| PluginError::MissingEntry { path: path.clone() })?;
    // SAFETY: the entry point returns a pointer to a static table.
    let api = unsafe { entry().as_ref() }
        .ok_or_else(|| PluginError::MissingEntry { path: path.clone() })?;
    // While ABI_MINOR is 0 the minor check is vacuous; it guards the appended fields of later minors.
    #[allow(clippy::absurd_extreme_comparisons)]
    let too_old = api.abi_minor < ABI_MINOR;
    if api.abi_major != ABI_MAJOR || too_old {
        return Err(PluginError::AbiMismatch {
            path,
            major: api.abi_major,
            minor: api.abi_minor,
        });
    }
    if api.struct_size < PLUGIN_API_V1_0_SIZE {
        return Err(PluginError::TableTooSmall {
            path,
            size: api.struct_size,
        });
    }
    opened.insert(path, api);
    Ok(api)
}

const ERROR_CAPACITY: usize = 2048;

/// Calls a plugin function with a fresh error buffer; a non-OK status becomes a [`BackendError`].
fn call(
    make_error: fn(String) -> BackendError,
    f: impl FnOnce(*mut ErrorBuf) -> Status,
) -> Result<(), BackendError> {
    let mut message = vec![0u8; ERROR_CAPACITY];
    let mut len = 0usize;
    let mut buf = ErrorBuf {
        data: message.as_mut_ptr(),
        capacity: message.len(),
        len: &mut len,
    };
    let status = f(&mut buf);
    let message = String::from_utf8_lossy(&message[..len.min(ERROR_CAPACITY)]).into_owned();
    match status {
        Status::OK => Ok(()),
        Status::INVALID_ARGUMENT => Err(BackendError::InvalidInput(message)),
        Status::PANIC => Err(BackendError::Unhealthy(message)),
        Status::UNSUPPORTED => Err(BackendError::Unsupported(message)),
        _ => Err(make_error(message)),
    }
}

/// A model loaded by a plugin, usable wherever a [`Backend`] is.
pub struct PluginBackend {
    api: &'static PluginApi,
    handle: ModelHandle,
    capabilities: Capabilities,
    engine: String,
    broken: Option<String>,
}

// SAFETY: the ABI requires a model handle to be usable from any thread, one call at a time, which
// `&mut self` on every call guarantees.
unsafe impl Send for PluginBackend {}

impl PluginBackend {
    /// Loads a model through `api`.
    pub fn load(api: &'static PluginApi, config: &EngineConfig) -> Result<Self, BackendError> {
        let json = serde_json::to_string(config).map_err(|e| BackendError::Load(e.to_string()))?;
        let json = CString::new(json).map_err(|e| BackendError::Load(e.to_string()))?;
        let mut handle: ModelHandle = std::ptr::null_mut();
        // SAFETY: arguments are valid for the call; the plugin writes the handle on success.
        call(BackendError::Load, |err| unsafe {
            (api.model_load)(json.as_ptr(), &mut handle, err)
        })?;
        // SAFETY: `name` is a static NUL-terminated string by the ABI's definition.
        let engine = unsafe { CStr::from_ptr(api.name) }
            .to_string_lossy()
            .into_owned();
        let mut backend = Self {
            api,
            handle,
            capabilities: Capabilities::from(AbiCapabilities::default()),
            engine,
            broken: None,
        };
        let mut caps = AbiCapabilities::default();
        // SAFETY: the handle is live; `caps` is a valid output location.
        call(BackendError::Load, |err| unsafe {
            (api.model_capabilities)(handle, &mut caps, err)
        })?;
        backend.capabilities = Capabilities::from(caps);
        Ok(backend)
    }

    /// The engine's name as the plugin reports it.
    pub fn engine(&self) -> &str {
        &self.engine
    }

    /// Runs one of the plugin's batch functions into a fresh `[rows, hidden]` buffer.
    fn run(
        &mut self,
        batch: &Batch,
        rows: usize,
        function: BatchFn,
    ) -> Result<Matrix, BackendError> {
        if let Some(why) = &self.broken {
            return Err(BackendError::Unhealthy(why.clone()));
        }
        let hidden = self.capabilities.hidden_size;
        let view = BatchView {
            num_seqs: batch.len(),
            num_tokens: batch.input_ids.len(),
            input_ids: batch.input_ids.as_ptr(),
            token_type_ids: batch.token_type_ids.as_ptr(),
            position_ids: batch.position_ids.as_ptr(),
            cu_seq_lengths: batch.cu_seq_lengths.as_ptr(),
            task_ids: batch.task_ids.as_ptr(),
            max_len: batch.max_len as u32,
        };
        let mut out = vec![0f32; rows * hidden];
        let handle = self.handle;
        // SAFETY: the view borrows `batch`, which outlives the call; `out` has `out.len()` values.
        let result = call(BackendError::Inference, |err| unsafe {
            function(handle, &view, out.as_mut_ptr(), out.len(), err)
        });
        if let Err(BackendError::Unhealthy(why)) = &result {
            self.broken = Some(why.clone());
        }
        result.map(|()| Matrix::new(out, hidden))
    }
}

impl From<AbiCapabilities> for Capabilities {
    fn from(caps: AbiCapabilities) -> Self {
        Capabilities {
            hidden_size: caps.hidden_size as usize,
            max_tokens: caps.max_tokens as usize,
            mixed_tasks: caps.mixed_tasks != 0,
            pads_batches: caps.pads_batches != 0,
            token_states: caps.token_states != 0,
            base_task: caps.base_task != 0,
        }
    }
}

impl Backend for PluginBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn embed(&mut self, batch: &Batch) -> Result<Embeddings, BackendError> {
        self.run(batch, batch.len(), self.api.model_embed)
    }

    fn embed_tokens(&mut self, batch: &Batch) -> Result<TokenStates, BackendError> {
        self.run(batch, batch.input_ids.len(), self.api.model_embed_tokens)
    }

    fn health(&mut self) -> Result<(), BackendError> {
        if let Some(why) = &self.broken {
            return Err(BackendError::Unhealthy(why.clone()));
        }
        let handle = self.handle;
        // SAFETY: the handle is live.
        call(BackendError::Inference, |err| unsafe {
            (self.api.model_health)(handle, err)
        })
    }
}

impl Drop for PluginBackend {
    fn drop(&mut self) {
        // SAFETY: the handle came from this plugin's `model_load` and is freed once.
        unsafe { (self.api.model_free)(self.handle) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_checked() {
        assert_eq!(
            PluginHost::file_name("onnx").unwrap(),
            libloading::library_filename("embedrt_plugin_onnx").to_string_lossy()
        );
        assert!(matches!(
            PluginHost::file_name("../evil"),
            Err(PluginError::InvalidName(_))
        ));
        assert!(matches!(
            PluginHost::file_name(""),
            Err(PluginError::InvalidName(_))
        ));
    }

    #[test]
    fn missing_plugin_names_the_folders() {
        let host = PluginHost::new(vec![PathBuf::from("/nonexistent")]);
        let err = host.open("onnx").unwrap_err();
        assert!(matches!(err, PluginError::NotFound { .. }));
        assert!(err.to_string().contains("/nonexistent"), "{err}");
    }
}
