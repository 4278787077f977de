//! The official `openai` Python client, installed from PyPI into a test venv, works unchanged
//! against the server (including its base64 default).

mod common;

use common::{fixtures_dir, minilm_model, run_python_client, test_python, Server};

/// The pinned client.
const OPENAI: &str = "openai==3.54.0";

#[test]
fn official_openai_client_works_unchanged() {
    let python = test_python(&[OPENAI]);
    for engine in ["onnx", "candle"] {
        let server = Server::start("", &minilm_model("all-MiniLM-L6-v2", engine, ""));
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
