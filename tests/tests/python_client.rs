//! The Python client (`clients/python`): installed with pip into its own venv the way a user
//! installs it, then its pytest suite runs against real servers that it starts from this
//! build (`clients/python/tests/conftest.py`): golden vectors, splitting, 5,000 texts in one
//! call, coalescing, jina-v3 tasks and sizes, retries against a tiny queue, errors, the gRPC
//! transport, the LangChain and LlamaIndex integrations, and the package's typing (mypy --strict)
//! and Python 3.9 floor (vermin).

use std::process::Command;

use crate::common::process::stdout_of;
use crate::common::python::{pip_install, venv_python};
use crate::common::{alone, build_dir, fixtures_dir, minilm_dir, repo_root, TempDir};

/// The client's dependencies and its test tools, pinned (the venv is `.assets/client-venv`).
const REQUIREMENTS: [&str; 12] = [
    "httpx==0.28.1",
    "numpy==2.4.6",
    "grpcio==1.85.1",
    "grpcio-tools==1.85.1",
    "protobuf==7.36.2",
    "langchain-core==1.8.3",
    "llama-index-core==0.14.25",
    "pytest==9.2.0",
    "pytest-asyncio==1.5.0",
    "setuptools==84.2.1",
    "mypy==2.4.1",
    "vermin==1.9.2",
];

#[test]
fn python_client_test_suite() {
    let _alone = alone(); // the suite starts servers of its own and loads them
    let python = venv_python("client-venv", &REQUIREMENTS);
    let package = repo_root().join("clients/python");
    // A real install of the package as it stands (no editable link), built without fetching
    // anything (its build backend is the pinned setuptools above), from a copy so that no
    // build output lands in the checkout or lingers between runs.
    let copy = TempDir::new("python-client");
    let copied = Command::new("cp")
        .arg("-r")
        .args(["pyproject.toml", "README.md", "src"].map(|name| package.join(name)))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(copied.success(), "copying clients/python failed");
    pip_install(
        &python,
        &[
            "--no-deps".as_ref(),
            "--no-build-isolation".as_ref(),
            "--force-reinstall".as_ref(),
            copy.path().as_os_str(),
        ],
    );
    let stdout = stdout_of(
        Command::new(&python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
            .current_dir(&package)
            .env("EMBEDRT_BIN", build_dir().join("embedrt"))
            .env("EMBEDRT_PLUGIN_DIR", build_dir())
            .env("EMBEDRT_MINILM_DIR", minilm_dir())
            .env("EMBEDRT_FIXTURES", fixtures_dir()),
    );
    println!("{stdout}");
}
