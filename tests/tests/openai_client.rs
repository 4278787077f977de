//! The official `openai` Python client, installed from PyPI into a test venv, works unchanged
//! against the server (including its base64 default).

use crate::common::python::{run_python_client, test_python};
use crate::common::{fixtures_dir, Model, Server};

/// The pinned client.
const OPENAI: &str = "openai==3.54.0";

#[test]
fn official_openai_client_works_unchanged() {
    let python = test_python(&[OPENAI]);
    for engine in ["onnx", "candle"] {
        let server = Server::builder()
            .model(Model::minilm("all-MiniLM-L6-v2").on(engine))
            .start();
        let base_url = format!("{}/v1", server.url);
        let expected = fixtures_dir().join("all-MiniLM-L6-v2/expected.json");
        run_python_client(
            &python,
            "openai_client.py",
            &[
                base_url.as_ref(),
                "all-MiniLM-L6-v2".as_ref(),
                expected.as_ref(),
            ],
        );
    }
}
