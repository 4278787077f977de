//! Finding, opening and checking plugin libraries: the folders searched, the file name a backend
//! has, the ABI version check, and the process-wide table of libraries opened (never closed:
//! unloading Rust or C++ code with thread-locals is not safe on every platform).

use std::collections::HashMap;
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use embedrt_plugin_abi::{
    read_table, EntryFn, PluginApi, TableError, ABI_MAJOR, ABI_MINOR, ENTRY_SYMBOL,
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
    pub(super) api: PluginApi,
    pub(super) path: PathBuf,
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

impl Plugin {
    /// The backend's name as the plugin reports it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ABI minor version the plugin was built against.
    pub fn abi_minor(&self) -> u32 {
        self.api.abi_minor
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
