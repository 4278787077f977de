//! What embedrt's test suites share: the end-to-end suite (`tests/`) and each backend's own
//! (`backends/<name>/tests/`).
//!
//! - [`paths`]: the repository, the build folder, the fixtures and the default model;
//! - [`golden`]: the reference outputs of the fixtures (sentence-transformers' and the models'
//!   own code), read into types;
//! - [`vectors`]: comparing vectors and lists of them; [`int8`]: the quality gates of an int8
//!   variant against its fp32 one;
//! - [`minilm`], [`jina`], [`encoders`] and [`rerankers`]: the fixture checks a backend runs
//!   in-process;
//! - [`TempDir`]: a temporary folder removed when dropped;
//! - [`load_document`]: what a backend is told for a fixture model;
//! - [`untrusted`]: the invariants of every parser of untrusted input, for the fuzz targets and
//!   the property tests.

#![deny(missing_docs)]

pub mod encoders;
pub mod golden;
pub mod int8;
pub mod jina;
pub mod minilm;
pub mod paths;
pub mod rerankers;
pub mod untrusted;
pub mod vectors;

use std::path::{Path, PathBuf};

use embedrt_runtime::backend_core::{BackendSettings, LoadDocument};
use embedrt_runtime::ModelCard;

/// A temporary folder, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates an empty folder named after `label` (and this process, and a counter).
    ///
    /// # Panics
    ///
    /// When the folder cannot be made.
    pub fn new(label: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("embedrt-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Creates a folder named after `label` holding a copy of everything under `source`.
    ///
    /// # Panics
    ///
    /// When a file cannot be read or copied.
    pub fn copy_of(label: &str, source: &Path) -> Self {
        fn copy(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).unwrap();
            for entry in std::fs::read_dir(from).unwrap() {
                let path = entry.unwrap().path();
                let target = to.join(path.file_name().unwrap());
                if path.is_dir() {
                    copy(&path, &target);
                } else {
                    std::fs::copy(&path, &target).unwrap();
                }
            }
        }
        let dir = Self::new(label);
        copy(source, dir.path());
        dir
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The load document a backend gets for `card` with `options`, on the CPU in its default dtype.
pub fn load_document(card: &ModelCard, options: serde_json::Value) -> LoadDocument {
    LoadDocument::new(
        card.spec(),
        BackendSettings {
            options,
            ..BackendSettings::default()
        },
    )
}
