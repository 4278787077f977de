//! Finding the ONNX Runtime library, which `ort` opens at run time (`load-dynamic`).
//!
//! The places, in order: the `library` option; `ORT_DYLIB_PATH`; `.assets/onnxruntime-gpu/` (where
//! `scripts/setup.sh --gpu` puts the GPU build, which runs CPU models too) and then
//! `.assets/onnxruntime/` (where `scripts/setup.sh` puts the CPU build) of the project the
//! `embedrt` executable (or the working directory) lies in; the `onnxruntime` package of the
//! `python3` on `PATH`; the system library path. The first that loads wins; when none does, the
//! error lists every place and why it failed.

use std::path::{Path, PathBuf};

use embedrt_backend_core::library::LibraryPlaces;
use ort::environment::Environment;

/// Where ONNX Runtime may be: the GPU build first, which runs CPU models too.
const PLACES: LibraryPlaces = LibraryPlaces {
    what: "the ONNX Runtime library",
    file: "libonnxruntime.so",
    env: "ORT_DYLIB_PATH",
    assets: &[".assets/onnxruntime-gpu", ".assets/onnxruntime"],
    python_package: ("onnxruntime", "capi"),
    hint: "Run scripts/setup.sh (--gpu for the GPU build), `pip install onnxruntime`, set \
           ORT_DYLIB_PATH, or give the backend's `library` option",
};

/// The loaded ONNX Runtime library.
pub struct Library {
    /// Its environment (ONNX Runtime allows one per process).
    pub environment: Environment,
    /// Where it was loaded from (a bare file name: from the system library path).
    pub path: PathBuf,
}

/// Loads ONNX Runtime from the first place that has a usable library (see the module docs).
///
/// # Errors
///
/// When no place has one: every place tried and why it failed, and how to get the library.
pub fn load(option: Option<&Path>) -> Result<Library, String> {
    let found = PLACES.find(option, |path| {
        ort::init_from(path)
            .map_err(|e| e.to_string())
            .and_then(|builder| {
                builder
                    .with_name("embedrt")
                    .build()
                    .map_err(|e| e.to_string())
            })
    })?;
    tracing::info!(
        library = %found.path.display(),
        found_in = %found.place,
        "ONNX Runtime loaded"
    );
    Ok(Library {
        environment: found.loaded,
        path: found.path,
    })
}
