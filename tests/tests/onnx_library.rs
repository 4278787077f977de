//! The onnx backend finds ONNX Runtime by itself: the binary serves the default config with no
//! `ORT_DYLIB_PATH`, finds the library in `.assets` above the executable or in the `onnxruntime`
//! package of the `python3` on `PATH`, and otherwise stops with an error that lists every place
//! it looked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::common::python::test_python;
use crate::common::{build_dir, ok, repo_root, Exit, Model, Server, TempDir};

/// The places the error must name, in order.
const PLACES: [&str; 5] = [
    "the `library` option: not set",
    "ORT_DYLIB_PATH: not set",
    ".assets/onnxruntime/libonnxruntime.so",
    "python3's onnxruntime package",
    "the system library path",
];

/// Links (or copies) `file` of the build folder into `dir`.
fn place(file: &str, dir: &Path) {
    let (from, to) = (build_dir().join(file), dir.join(file));
    if std::fs::hard_link(&from, &to).is_err() {
        std::fs::copy(&from, &to).unwrap();
    }
}

/// Starts the `embedrt` binary and the plugin of `backend` from the folder `outside` (outside
/// the project, so no `.assets` lies above them, nor above the working directory), serving
/// all-MiniLM-L6-v2 on `backend`, with no `ORT_DYLIB_PATH` or `OPENVINO_LIBRARY`, no
/// `LD_LIBRARY_PATH` and `path` as `PATH`.
pub(crate) fn serve_from(outside: &TempDir, path: &Path, backend: &str) -> Server {
    place("embedrt", outside.path());
    place(&format!("libembedrt_plugin_{backend}.so"), outside.path());
    Server::builder()
        .binary(&outside.path().join("embedrt"))
        .without_plugin_dirs()
        .current_dir(outside.path())
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("OPENVINO_LIBRARY")
        .env_remove("LD_LIBRARY_PATH")
        .env("PATH", path)
        .model(Model::minilm("m").on(backend))
        .spawn()
}

#[test]
fn the_binary_alone_serves_the_default_config() {
    let server = Server::builder()
        .config_file(&repo_root().join("configs/default.toml"))
        .env_remove("ORT_DYLIB_PATH")
        .start();
    let body = ok(server.embed(json!({ "input": "hello" })));
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 384);
}

#[test]
fn without_a_library_the_error_lists_every_place_it_looked() {
    let empty = TempDir::new("empty-path");
    let outside = TempDir::new("no-ort");
    let Exit { code, log } =
        serve_from(&outside, empty.path(), "onnx").wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("cannot find the ONNX Runtime library"),
        "{log}"
    );
    let mut from = 0;
    for place in PLACES {
        let at = log[from..]
            .find(place)
            .unwrap_or_else(|| panic!("{place:?} missing or out of order in:\n{log}"));
        from += at;
    }
    assert!(log.contains("cannot run python3"), "{log}");
}

#[test]
fn the_onnxruntime_package_of_python3_on_path_is_found() {
    let python = test_python(&["onnxruntime==1.31.1"]);
    let bin: PathBuf = python.parent().unwrap().to_path_buf();
    let outside = TempDir::new("pip-ort");
    let mut server = serve_from(&outside, &bin, "onnx");
    server.wait_ready();
    server.signal(libc::SIGTERM);
    let Exit { code, log } = server.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{log}");
    let loaded = log
        .lines()
        .find(|line| line.contains("ONNX Runtime loaded"))
        .unwrap_or_else(|| panic!("no library was loaded:\n{log}"));
    assert!(
        loaded.contains("python3's onnxruntime package") && loaded.contains("site-packages"),
        "{loaded}"
    );
}
