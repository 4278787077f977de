//! The onnx backend finds ONNX Runtime by itself: the binary serves the default config with no
//! `ORT_DYLIB_PATH`, finds the library in `.assets` above the executable or in the `onnxruntime`
//! package of the `python3` on `PATH`, and otherwise stops with an error that lists every place
//! it looked.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{build_dir, free_port, minilm_dir, repo_root, test_python, Server, TempDir};
use serde_json::{json, Value};

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

/// Starts the `embedrt` binary and the onnx plugin from a folder outside the project (so no
/// `.assets` lies above them, nor above the working directory), serving all-MiniLM-L6-v2 on
/// onnx, with no `ORT_DYLIB_PATH`, no `LD_LIBRARY_PATH` and `path` as `PATH`.
fn serve_from_outside(label: &str, path: &Path) -> Server {
    let dir = TempDir::new(label);
    place("embedrt", &dir.0);
    place("libembedrt_plugin_onnx.so", &dir.0);
    let ports = (free_port(), free_port());
    let config = format!(
        "[server]\nhttp = \"127.0.0.1:{}\"\ngrpc = \"127.0.0.1:{}\"\n\
         [[models]]\nname = \"m\"\npath = {:?}\nbackend = \"onnx\"\n",
        ports.0,
        ports.1,
        minilm_dir().display().to_string()
    );
    let config_path = dir.0.join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    let (binary, cwd) = (dir.0.join("embedrt"), dir.0.clone());
    Server::launch(
        &binary,
        &config_path,
        ports,
        dir,
        |command: &mut Command| {
            command
                .current_dir(cwd)
                .env_remove("ORT_DYLIB_PATH")
                .env_remove("LD_LIBRARY_PATH")
                .env("PATH", path);
        },
    )
}

#[test]
fn the_binary_alone_serves_the_default_config() {
    let ports = (free_port(), free_port());
    let (http, grpc) = (
        format!("127.0.0.1:{}", ports.0),
        format!("127.0.0.1:{}", ports.1),
    );
    let config = repo_root().join("configs/default.toml");
    let binary = build_dir().join("embedrt");
    let dir = TempDir::new("default-config");
    let mut server = Server::launch(&binary, &config, ports, dir, |command| {
        command
            .args(["--http", &http, "--grpc", &grpc])
            .env_remove("ORT_DYLIB_PATH");
    });
    server.wait_ready();
    let body: Value = reqwest::blocking::Client::new()
        .post(format!("{}/v1/embeddings", server.url))
        .json(&json!({ "input": "hello" }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 384);
}

#[test]
fn without_a_library_the_error_lists_every_place_it_looked() {
    let empty = TempDir::new("empty-path");
    let server = serve_from_outside("no-ort", &empty.0);
    let (code, log) = server.wait_exit(Duration::from_secs(60));
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
    let mut server = serve_from_outside("pip-ort", &bin);
    server.wait_ready();
    server.signal(libc::SIGTERM);
    let (code, log) = server.wait_exit(Duration::from_secs(30));
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
