//! Finding the ONNX Runtime library, which `ort` opens at run time (`load-dynamic`).
//!
//! The places, in order: the `library` option; `ORT_DYLIB_PATH`; `.assets/onnxruntime-gpu/` (where
//! `scripts/setup.sh --gpu` puts the GPU build, which runs CPU models too) and then
//! `.assets/onnxruntime/` (where `scripts/setup.sh` puts the CPU build) of the project the
//! `embedrt` executable (or the working directory) lies in; the `onnxruntime` package of the
//! `python3` on `PATH`; the system library path. The first that loads wins; when none does, the
//! error lists every place and why it failed.

use std::path::{Path, PathBuf};
use std::process::Command;

use ort::environment::Environment;

/// The library's file name on this platform.
const FILE: &str = "libonnxruntime.so";

/// Where a library may come from, and why a place had none.
struct Search {
    /// One line per place tried.
    tried: Vec<String>,
}

impl Search {
    /// Tries `path` (from `source`); returns the library when it loads.
    fn try_path(&mut self, source: &str, path: &Path) -> Option<Library> {
        let bare = path.components().count() == 1;
        if !bare && !path.is_file() {
            self.tried
                .push(format!("{source}: {}: no such file", path.display()));
            return None;
        }
        let loaded = ort::init_from(path)
            .map_err(|e| e.to_string())
            .and_then(|builder| {
                builder
                    .with_name("embedrt")
                    .build()
                    .map_err(|e| e.to_string())
            });
        match loaded {
            Ok(environment) => {
                tracing::info!(library = %path.display(), found_in = source, "ONNX Runtime loaded");
                Some(Library {
                    environment,
                    path: path.to_path_buf(),
                })
            }
            Err(error) => {
                self.tried
                    .push(format!("{source}: {}: {error}", path.display()));
                None
            }
        }
    }

    fn not_set(&mut self, source: &str) {
        self.tried.push(format!("{source}: not set"));
    }
}

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
    let mut search = Search { tried: Vec::new() };
    let mut found = None;
    match option {
        Some(path) => found = search.try_path("the `library` option", path),
        None => search.not_set("the `library` option"),
    }
    if found.is_none() {
        match std::env::var_os("ORT_DYLIB_PATH") {
            Some(path) => found = search.try_path("ORT_DYLIB_PATH", Path::new(&path)),
            None => search.not_set("ORT_DYLIB_PATH"),
        }
    }
    if found.is_none() {
        found = project_assets()
            .iter()
            .find_map(|path| search.try_path("the project's .assets", path));
    }
    if found.is_none() {
        found = match python_package() {
            Ok(path) => search.try_path("python3's onnxruntime package", &path),
            Err(why) => {
                search
                    .tried
                    .push(format!("python3's onnxruntime package: {why}"));
                None
            }
        };
    }
    if found.is_none() {
        found = search.try_path("the system library path", Path::new(FILE));
    }
    found.ok_or_else(|| {
        format!(
            "cannot find the ONNX Runtime library; looked in:\n  - {}\n\
             Run scripts/setup.sh (--gpu for the GPU build), `pip install onnxruntime`, set ORT_DYLIB_PATH, or give the \
             backend's `library` option",
            search.tried.join("\n  - ")
        )
    })
}

/// `.assets/onnxruntime-gpu/libonnxruntime.so`, then `.assets/onnxruntime/libonnxruntime.so`, in
/// every folder above the executable and the working directory, nearest first, without repeats.
fn project_assets() -> Vec<PathBuf> {
    let starts = [std::env::current_exe().ok(), std::env::current_dir().ok()];
    let mut paths: Vec<PathBuf> = Vec::new();
    for start in starts.into_iter().flatten() {
        for folder in start.ancestors() {
            for build in [".assets/onnxruntime-gpu", ".assets/onnxruntime"] {
                let path = folder.join(build).join(FILE);
                if !paths.contains(&path) {
                    paths.push(path);
                }
            }
        }
    }
    paths
}

/// The library inside the `onnxruntime` package of the `python3` on `PATH` (found without
/// importing it, so the package's own dependencies need not be there).
fn python_package() -> Result<PathBuf, String> {
    const SCRIPT: &str = "import importlib.util as u, sys\n\
        spec = u.find_spec('onnxruntime')\n\
        sys.exit('No module named onnxruntime') if spec is None or not spec.submodule_search_locations \
        else print(spec.submodule_search_locations[0])";
    let output = Command::new("python3")
        .args(["-c", SCRIPT])
        .output()
        .map_err(|e| format!("cannot run python3 ({e})"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .last()
            .unwrap_or("it failed")
            .trim()
            .to_string();
        return Err(format!("python3 has none ({last})"));
    }
    let package = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let capi = package.join("capi");
    let mut libraries: Vec<PathBuf> = std::fs::read_dir(&capi)
        .map_err(|e| format!("{}: {e}", capi.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(FILE))
        })
        .collect();
    libraries.sort();
    libraries
        .pop()
        .ok_or_else(|| format!("{} holds no {FILE}", capi.display()))
}
