//! The official `openai` Python client, installed from PyPI into a test venv, works unchanged
//! against the server (including its base64 default).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{fixtures_dir, minilm_model, repo_root, Server};

/// The pinned client version.
const OPENAI_VERSION: &str = "3.54.0";

/// `.assets/test-venv` with the `openai` client, created on first use.
fn venv_python() -> PathBuf {
    let venv = repo_root().join(".assets/test-venv");
    let python = venv.join("bin/python");
    let installed = Command::new(&python)
        .args([
            "-c",
            &format!("import openai, sys; sys.exit(openai.__version__ != {OPENAI_VERSION:?})"),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        let status = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .unwrap();
        assert!(status.success(), "python3 -m venv failed");
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(format!("openai=={OPENAI_VERSION}"))
            .status()
            .unwrap();
        assert!(
            status.success(),
            "pip install openai=={OPENAI_VERSION} failed"
        );
    }
    python
}

#[test]
fn official_openai_client_works_unchanged() {
    let python = venv_python();
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
