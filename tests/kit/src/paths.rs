//! Where things are: the repository, the build folder of the running test binary, the
//! fixtures in `../shared/fixtures` and the default model `scripts/setup.sh` prepares.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/kit is two folders below the root")
        .to_path_buf()
}

/// `target/<profile>`, where the `embedrt` binary and the plugins are built: two folders above
/// the running test binary (`target/<profile>/deps/<test>`).
///
/// # Panics
///
/// When the test binary's path cannot be read.
pub fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// `../shared/fixtures`, the golden data made with the models' reference code.
pub fn fixtures_dir() -> PathBuf {
    repo_root().join("../shared/fixtures")
}

/// The tiny jina-embeddings-v3 checkpoint of the fixtures.
pub fn jina_dir() -> PathBuf {
    fixtures_dir().join("jina-v3-tiny")
}

/// The all-MiniLM-L6-v2 folder that `scripts/setup.sh` prepares (with its ONNX graphs).
///
/// # Panics
///
/// When setup has not run.
pub fn minilm_dir() -> PathBuf {
    let dir = repo_root().join(".assets/models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.onnx").is_file(),
        "{} is missing: run scripts/setup.sh",
        dir.display()
    );
    dir
}
