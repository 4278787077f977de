//! A client not written in Rust: Python's `grpcio`, with stubs generated from the proto by
//! `grpcio-tools` at test time, calls `Embed` and `EmbedStream`, and the standard health and
//! reflection services answer `grpcio-health-checking` and `grpcio-reflection`.

use crate::common::python::{run_python_client, test_python};
use crate::common::{fixtures_dir, repo_root, Model, Server, TempDir};

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
    let server = Server::builder()
        .model(Model::minilm("all-MiniLM-L6-v2").on("onnx"))
        .start();
    let stubs = TempDir::new("grpc-stubs");
    let expected = fixtures_dir().join("all-MiniLM-L6-v2/expected.json");
    let proto_root = repo_root().join("api/proto");
    run_python_client(
        &python,
        "grpc_client.py",
        &[
            server.grpc_url.trim_start_matches("http://").as_ref(),
            "all-MiniLM-L6-v2".as_ref(),
            expected.as_ref(),
            proto_root.as_ref(),
            stubs.path().as_ref(),
        ],
    );
}
