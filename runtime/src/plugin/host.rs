//! The host side of the ABI: find, open and check plugin libraries, and wrap their models as
//! [`Backend`]s.
//!
//! Libraries are opened once and never unloaded (unloading Rust or C++ code with thread-locals is
//! not safe on every platform); only the configured folders are searched. The host speaks every
//! minor version of ABI 1: it copies a plugin's table as far as both sides know it and uses a
//! minor's functions only where the plugin has them (an older plugin lacks them; a newer one's
//! extra fields are not read).

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use embedrt_backend_core::{
    Backend, BackendError, Batch, Capabilities, DType, Device, Embeddings, FileSet, FilesQuery,
    LoadDocument, Matrix, TokenStates, WeightFiles,
};
use embedrt_plugin_abi::{
    read_table, BatchFn, BatchView, Capabilities as AbiCapabilities, EntryFn, ModelDescription,
    ModelHandle, PluginApi, Status, TableError, TextBuf, ABI_MAJOR, ABI_MINOR, ENTRY_SYMBOL,
    PLUGIN_API_V1_0_SIZE,
};

use super::log;

/// Why a plugin library could not be used.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PluginError {
    /// The backend name holds characters a library name may not.
    #[error("invalid backend name {0:?}: use letters, digits, '-' and '_'")]
    InvalidName(String),
    /// No plugin folder holds the library.
    #[error("no plugin for backend {backend:?}: {file} is in none of {dirs:?}")]
    NotFound {
        /// The backend asked for.
        backend: String,
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
    #[error("plugin {path} speaks ABI {major}.{minor}; this host speaks ABI {ABI_MAJOR}.x (up to {ABI_MAJOR}.{ABI_MINOR})")]
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

/// An opened plugin library: its function table (copied as far as the plugin's version reaches)
/// and its name.
#[derive(Debug)]
pub struct Plugin {
    api: PluginApi,
    path: PathBuf,
    name: String,
}

/// Opens plugin libraries from a fixed list of folders.
#[derive(Clone, Debug)]
pub struct PluginHost {
    dirs: Vec<PathBuf>,
}

/// Libraries opened so far, by path; never closed.
static OPENED: Mutex<Option<HashMap<PathBuf, &'static Plugin>>> = Mutex::new(None);

impl PluginHost {
    /// A host that searches `dirs`, in order.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Self { dirs }
    }

    /// The file name of backend `backend`'s plugin on this platform
    /// (`libembedrt_plugin_onnx.so`).
    ///
    /// # Errors
    ///
    /// [`PluginError::InvalidName`] for names that are empty or hold other characters than
    /// letters, digits, `-` and `_`.
    pub fn file_name(backend: &str) -> Result<String, PluginError> {
        if backend.is_empty()
            || !backend
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(PluginError::InvalidName(backend.to_string()));
        }
        let stem = format!("embedrt_plugin_{}", backend.replace('-', "_"));
        Ok(libloading::library_filename(stem)
            .to_string_lossy()
            .into_owned())
    }

    /// Finds and opens the plugin of `backend`.
    ///
    /// # Errors
    ///
    /// When no folder holds it, or it is no usable plugin (see [`open_library`]).
    pub fn open(&self, backend: &str) -> Result<&'static Plugin, PluginError> {
        let file = Self::file_name(backend)?;
        let path = self
            .dirs
            .iter()
            .map(|dir| dir.join(&file))
            .find(|path| path.is_file())
            .ok_or_else(|| PluginError::NotFound {
                backend: backend.to_string(),
                file: file.clone(),
                dirs: self.dirs.clone(),
            })?;
        open_library(&path)
    }

    /// Loads a model with the plugin of `backend`.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] when the plugin cannot be opened or refuses the model.
    pub fn load_model(
        &self,
        backend: &str,
        document: &LoadDocument,
    ) -> Result<PluginBackend, BackendError> {
        let plugin = self
            .open(backend)
            .map_err(|e| BackendError::Load(e.to_string()))?;
        plugin.load(document)
    }
}

/// Opens the library at `path` (once per process), checks its ABI version and hands it the
/// host's log sink.
///
/// # Errors
///
/// When the library cannot be opened, exports no entry symbol, speaks another ABI major, or has a
/// table shorter than ABI 1.0's.
pub fn open_library(path: &Path) -> Result<&'static Plugin, PluginError> {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut opened = OPENED.lock().unwrap_or_else(|p| p.into_inner());
    let opened = opened.get_or_insert_with(HashMap::new);
    if let Some(plugin) = opened.get(&path) {
        return Ok(plugin);
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
    // SAFETY: the entry point returns a pointer to a static table of at least its `struct_size`.
    let api = unsafe { read_table(entry()) }.map_err(|e| match e {
        TableError::Null => PluginError::MissingEntry { path: path.clone() },
        TableError::TooSmall { size } => PluginError::TableTooSmall {
            path: path.clone(),
            size,
        },
    })?;
    if api.abi_major != ABI_MAJOR {
        return Err(PluginError::AbiMismatch {
            path,
            major: api.abi_major,
            minor: api.abi_minor,
        });
    }
    if let Some(set_log_sink) = api.set_log_sink {
        // SAFETY: `forward` has the `LogFn` signature and lives as long as the process.
        unsafe { set_log_sink(log::forward, log::max_level()) };
    }
    // SAFETY: `name` is a static NUL-terminated string by the ABI's definition.
    let name = unsafe { CStr::from_ptr(api.name) }
        .to_string_lossy()
        .into_owned();
    let plugin: &'static Plugin = Box::leak(Box::new(Plugin {
        api,
        path: path.clone(),
        name,
    }));
    opened.insert(path, plugin);
    Ok(plugin)
}

/// Room for an error message from a plugin.
const ERROR_CAPACITY: usize = 2048;
/// Room for a plugin's JSON answer.
const ANSWER_CAPACITY: usize = 64 * 1024;

/// A host-owned text buffer for one call.
struct Text {
    data: Vec<u8>,
    len: usize,
}

impl Text {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            data: vec![0; capacity],
            len: 0,
        }
    }

    /// The ABI view of this buffer, valid while `self` is borrowed.
    fn buf(&mut self) -> TextBuf {
        TextBuf {
            data: self.data.as_mut_ptr(),
            capacity: self.data.len(),
            len: &mut self.len,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data[..self.len.min(self.data.len())]).into_owned()
    }
}

/// Calls a plugin function with a fresh error buffer; a non-OK status becomes a [`BackendError`].
fn call(
    make_error: fn(String) -> BackendError,
    f: impl FnOnce(*mut TextBuf) -> Status,
) -> Result<(), BackendError> {
    let mut message = Text::with_capacity(ERROR_CAPACITY);
    let mut buf = message.buf();
    let status = f(&mut buf);
    let message = message.text();
    match status {
        Status::OK => Ok(()),
        Status::INVALID_ARGUMENT => Err(BackendError::InvalidInput(message)),
        Status::PANIC => Err(BackendError::Unhealthy(message)),
        Status::UNSUPPORTED => Err(BackendError::Unsupported(message)),
        _ => Err(make_error(message)),
    }
}

/// `json` as a C string for the plugin.
fn c_string(json: String) -> Result<CString, BackendError> {
    CString::new(json).map_err(|e| BackendError::Load(e.to_string()))
}

/// The weights an ABI 1.0 plugin, which cannot say, may need.
fn files_before_1_1() -> WeightFiles {
    WeightFiles {
        alternatives: vec![
            FileSet::of(&["model.safetensors"]),
            FileSet::of(&["onnx/model.onnx"]).with_companions(&["onnx/model.onnx_data"]),
            FileSet::of(&["model.onnx"]).with_companions(&["model.onnx_data"]),
        ],
    }
}

impl Plugin {
    /// The backend's name as the plugin reports it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ABI minor version the plugin was built against.
    pub fn abi_minor(&self) -> u32 {
        self.api.abi_minor
    }

    /// The files of a model repository this backend needs with `query`'s settings.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] when the plugin refuses the query or answers nonsense.
    pub fn files(&self, query: &FilesQuery) -> Result<WeightFiles, BackendError> {
        let Some(model_files) = self.api.model_files else {
            return Ok(files_before_1_1());
        };
        let json = c_string(query.to_json())?;
        let mut answer = Text::with_capacity(ANSWER_CAPACITY);
        let mut out = answer.buf();
        // SAFETY: the document and both buffers are valid for the call.
        call(BackendError::Load, |err| unsafe {
            model_files(json.as_ptr(), &mut out, err)
        })?;
        serde_json::from_str(&answer.text()).map_err(|e| {
            BackendError::Load(format!("{}: bad files answer: {e}", self.path.display()))
        })
    }

    /// Loads a model with this plugin.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] when the plugin refuses the model, or when an ABI 1.0 plugin (which
    /// cannot be told a device or dtype) is asked for anything but the CPU in its own precision.
    pub fn load(&'static self, document: &LoadDocument) -> Result<PluginBackend, BackendError> {
        let settings = &document.settings;
        if self.api.abi_minor == 0 && (settings.device != Device::Cpu || settings.dtype.is_some()) {
            return Err(BackendError::Load(format!(
                "plugin {} speaks ABI 1.0, which cannot be told a device or dtype (it runs on the \
                 CPU in its own precision): leave out `device` and `dtype`, or rebuild the plugin \
                 against ABI 1.1",
                self.path.display()
            )));
        }
        let json = c_string(document.to_json())?;
        let mut handle: ModelHandle = std::ptr::null_mut();
        // SAFETY: arguments are valid for the call; the plugin writes the handle on success.
        call(BackendError::Load, |err| unsafe {
            (self.api.model_load)(json.as_ptr(), &mut handle, err)
        })?;
        // Wrapped before it is described, so that a failing description still frees the handle.
        let mut backend = PluginBackend {
            plugin: self,
            handle,
            capabilities: capabilities(AbiCapabilities::default(), None),
            broken: None,
        };
        backend.capabilities = self.describe(handle)?;
        Ok(backend)
    }

    /// What the model behind `handle` can do: the sized 1.1 description when the plugin has it,
    /// else the 1.0 capabilities.
    fn describe(&self, handle: ModelHandle) -> Result<Capabilities, BackendError> {
        let Some(describe) = self.api.model_describe else {
            let mut caps = AbiCapabilities::default();
            // SAFETY: the handle is live; `caps` is a valid output location.
            call(BackendError::Load, |err| unsafe {
                (self.api.model_capabilities)(handle, &mut caps, err)
            })?;
            return Ok(capabilities(caps, None));
        };
        let mut description = ModelDescription {
            struct_size: std::mem::size_of::<ModelDescription>(),
            ..ModelDescription::default()
        };
        // SAFETY: the handle is live; `description` is a valid, sized output location.
        call(BackendError::Load, |err| unsafe {
            describe(handle, &mut description, err)
        })?;
        Ok(capabilities(
            description.capabilities,
            DType::from_code(description.dtype),
        ))
    }
}

/// A model loaded by a plugin, usable wherever a [`Backend`] is.
pub struct PluginBackend {
    plugin: &'static Plugin,
    handle: ModelHandle,
    capabilities: Capabilities,
    broken: Option<String>,
}

// SAFETY: the ABI requires a model handle to be usable from any thread, one call at a time, which
// `&mut self` on every call guarantees.
unsafe impl Send for PluginBackend {}

impl PluginBackend {
    /// The backend's name as the plugin reports it.
    pub fn name(&self) -> &str {
        self.plugin.name()
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

/// The capabilities of the ABI's fields, computing in `dtype`.
fn capabilities(caps: AbiCapabilities, dtype: Option<DType>) -> Capabilities {
    Capabilities {
        hidden_size: caps.hidden_size as usize,
        max_tokens: caps.max_tokens as usize,
        mixed_tasks: caps.mixed_tasks != 0,
        pads_batches: caps.pads_batches != 0,
        token_states: caps.token_states != 0,
        base_task: caps.base_task != 0,
        dtype,
    }
}

impl Backend for PluginBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn embed(&mut self, batch: &Batch) -> Result<Embeddings, BackendError> {
        self.run(batch, batch.len(), self.plugin.api.model_embed)
    }

    fn embed_tokens(&mut self, batch: &Batch) -> Result<TokenStates, BackendError> {
        self.run(
            batch,
            batch.input_ids.len(),
            self.plugin.api.model_embed_tokens,
        )
    }

    fn health(&mut self) -> Result<(), BackendError> {
        if let Some(why) = &self.broken {
            return Err(BackendError::Unhealthy(why.clone()));
        }
        let handle = self.handle;
        // SAFETY: the handle is live.
        call(BackendError::Inference, |err| unsafe {
            (self.plugin.api.model_health)(handle, err)
        })
    }
}

impl Drop for PluginBackend {
    fn drop(&mut self) {
        // SAFETY: the handle came from this plugin's `model_load` and is freed once.
        unsafe { (self.plugin.api.model_free)(self.handle) }
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
