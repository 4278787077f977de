//! A client not written in Rust: Python's `grpcio`, with stubs generated from the proto by
//! `grpcio-tools` at test time, calls `Embed` and `EmbedStream`, and the standard health and
//! reflection services answer `grpcio-health-checking` and `grpcio-reflection`.

mod common;

use std::process::Command;

use common::{fixtures_dir, minilm_model, repo_root, test_python, Server, TempDir};

/// The pinned gRPC packages (one release line).
const GRPC: [&str; 4] = [
    "grpcio==1.85.1",
    "grpcio-tools==1.85.1",
    "grpcio-health-checking==1.85.1",
    "grpcio-reflection==1.85.1",
];

#[test]
fn python_grpcio_client_with_generated_stubs() {
    let python = test_python(&GRPC);
    let server = Server::start("", &minilm_model("all-MiniLM-L6-v2", "onnx", ""));
    let stubs = TempDir::new("grpc-stubs");
    let output = Command::new(&python)
        .arg(repo_root().join("tests/python/grpc_client.py"))
        .arg(server.grpc_url.trim_start_matches("http://"))
        .arg("all-MiniLM-L6-v2")
        .arg(fixtures_dir().join("all-MiniLM-L6-v2/expected.json"))
        .arg(repo_root().join("api/proto"))
        .arg(&stubs.0)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim() == "ok",
        "{stdout}\n{stderr}"
    );
}
