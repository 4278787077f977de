//! Finding an engine's shared library, which a backend opens at run time (ONNX Runtime's,
//! OpenVINO's). Every engine looks in the same places, in this order:
//!
//! 1. the backend's `library` option;
//! 2. an environment variable (`ORT_DYLIB_PATH`, `OPENVINO_LIBRARY`);
//! 3. folders under `.assets/` of the project the `embedrt` executable (or the working
//!    directory) lies in, where `scripts/setup.sh` puts the libraries;
//! 4. the Python package of the `python3` on `PATH` that ships the library (found without
//!    importing it, so the package's own dependencies need not be there);
//! 5. the system library path.
//!
//! The first place whose library loads wins; when none does, the error lists every place and why
//! it failed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where an engine's library may be.
pub struct LibraryPlaces<'a> {
    /// What the error calls the library (`the ONNX Runtime library`).
    pub what: &'a str,
    /// The file's name as the system loader finds it (`libonnxruntime.so`), also the prefix of
    /// its versioned names in the Python package.
    pub file: &'a str,
    /// The environment variable naming the library's path.
    pub env: &'a str,
    /// Folders of `.assets/` holding the library, nearest first (`.assets/onnxruntime`).
    pub assets: &'a [&'a str],
    /// The Python package shipping the library, and its folder inside the package (`capi`).
    pub python_package: (&'a str, &'a str),
    /// What to do when nothing was found (`run scripts/setup.sh, ...`).
    pub hint: &'a str,
}

/// A library that loaded: what loading it gave, and where it came from.
pub struct Found<T> {
    /// What `load` returned.
    pub loaded: T,
    /// Its path (a bare file name: from the system library path).
    pub path: PathBuf,
    /// Which place it was found in.
    pub place: String,
}

impl LibraryPlaces<'_> {
    /// Loads the library from the first place where `load` succeeds; `option` is the backend's
    /// `library` option.
    ///
    /// # Errors
    ///
    /// When no place has a library that loads: every place tried and why it failed, and
    /// [`LibraryPlaces::hint`].
    pub fn find<T>(
        &self,
        option: Option<&Path>,
        load: impl FnMut(&Path) -> Result<T, String>,
    ) -> Result<Found<T>, String> {
        let mut search = Search {
            tried: Vec::new(),
            load,
        };
        let mut found = match option {
            Some(path) => search.attempt("the `library` option", path),
            None => search.nothing("the `library` option", "not set"),
        };
        if found.is_none() {
            found = match std::env::var_os(self.env) {
                Some(path) => search.attempt(self.env, Path::new(&path)),
                None => search.nothing(self.env, "not set"),
            };
        }
        if found.is_none() {
            found = self
                .project_assets()
                .iter()
                .find_map(|path| search.attempt("the project's .assets", path));
        }
        if found.is_none() {
            let place = format!("python3's {} package", self.python_package.0);
            found = match self.python_library() {
                Ok(path) => search.attempt(&place, &path),
                Err(why) => search.nothing(&place, &why),
            };
        }
        if found.is_none() {
            found = search.attempt("the system library path", Path::new(self.file));
        }
        found.ok_or_else(|| {
            format!(
                "cannot find {}; looked in:\n  - {}\n{}",
                self.what,
                search.tried.join("\n  - "),
                self.hint
            )
        })
    }

    /// The library in each of [`LibraryPlaces::assets`], in every folder above the executable
    /// and the working directory, nearest first, without repeats.
    fn project_assets(&self) -> Vec<PathBuf> {
        let starts = [std::env::current_exe().ok(), std::env::current_dir().ok()];
        let mut paths: Vec<PathBuf> = Vec::new();
        for start in starts.into_iter().flatten() {
            for folder in start.ancestors() {
                for assets in self.assets {
                    let path = folder.join(assets).join(self.file);
                    if !paths.contains(&path) {
                        paths.push(path);
                    }
                }
            }
        }
        paths
    }

    /// The library inside [`LibraryPlaces::python_package`] of the `python3` on `PATH`: the
    /// last (newest) of the files named after [`LibraryPlaces::file`] in its folder.
    fn python_library(&self) -> Result<PathBuf, String> {
        let (package, folder) = self.python_package;
        let script = format!(
            "import importlib.util as u, sys\n\
             spec = u.find_spec('{package}')\n\
             sys.exit('No module named {package}') if spec is None or not \
             spec.submodule_search_locations else print(spec.submodule_search_locations[0])"
        );
        let output = Command::new("python3")
            .args(["-c", &script])
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
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join(folder);
        let mut libraries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with(self.file))
            })
            .collect();
        libraries.sort();
        libraries
            .pop()
            .ok_or_else(|| format!("{} holds no {}", dir.display(), self.file))
    }
}

/// The places tried so far, and how a library is loaded.
struct Search<L> {
    /// One line per place tried.
    tried: Vec<String>,
    load: L,
}

impl<L> Search<L> {
    /// Tries the library at `path` (from `place`).
    fn attempt<T>(&mut self, place: &str, path: &Path) -> Option<Found<T>>
    where
        L: FnMut(&Path) -> Result<T, String>,
    {
        let bare = path.components().count() == 1;
        if !bare && !path.is_file() {
            self.tried
                .push(format!("{place}: {}: no such file", path.display()));
            return None;
        }
        match (self.load)(path) {
            Ok(loaded) => Some(Found {
                loaded,
                path: path.to_path_buf(),
                place: place.to_string(),
            }),
            Err(why) => {
                self.tried
                    .push(format!("{place}: {}: {why}", path.display()));
                None
            }
        }
    }

    /// Records that `place` had nothing to try, and `why`.
    fn nothing<T>(&mut self, place: &str, why: &str) -> Option<Found<T>> {
        self.tried.push(format!("{place}: {why}"));
        None
    }
}
