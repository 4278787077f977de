//! The official `openai` Python client, installed from PyPI into a test venv, works unchanged
//! against the server (including its base64 default).

mod common;

use std::process::Command;

use common::{fixtures_dir, minilm_model, repo_root, test_python, Server};

/// The pinned client.
const OPENAI: &str = "openai==3.54.0";

#[test]
fn official_openai_client_works_unchanged() {
    let python = test_python(&[OPENAI]);
    for engine in ["onnx", "candle"] {
        let server = Server::start("", &minilm_model("all-MiniLM-L6-v2", engine, ""));
        let output = Command::new(&python)
            .arg(repo_root().join("tests/python/openai_client.py"))
            .arg(format!("{}/v1", server.url))
            .arg("all-MiniLM-L6-v2")
            .arg(fixtures_dir().join("all-MiniLM-L6-v2/expected.json"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.trim() == "ok",
            "{engine}: {stdout}\n{stderr}"
        );
    }
}
