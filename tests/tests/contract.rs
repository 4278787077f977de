//! The API as a contract: the OpenAPI document at `/openapi.json` checked against the running
//! server (validity, examples, every route's answers, OpenAI's own schemas), schemathesis
//! generating requests from it for every route with all its checks, and the `/docs` page opened
//! in a real headless browser.

use std::sync::OnceLock;

use embedrt_testkit::paths::{fixtures_dir, repo_root};
use embedrt_testkit::TempDir;

use std::process::Command;

use crate::common::process::stdout_of;
use crate::common::python::{run_python_client, venv_python};
use serde_json::{json, Value};

use crate::common::{ok, Model, Server};

/// The pinned tools of these tests, in a venv of their own.
const TOOLS: [&str; 5] = [
    "openapi-spec-validator==0.9.0",
    "jsonschema==4.26.0",
    "schemathesis==4.32.5",
    "selenium==4.38.0",
    "pillow==12.0.0",
];
/// The embedding API's key.
const API_KEY: &str = "contract-key";
/// The admin key.
const ADMIN_KEY: &str = "contract-admin";

/// One server: an embedding model (with an alias) and a reranker, behind an API key and an
/// admin key, so that every route and both security schemes are in the document.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        Server::builder()
            .model(
                Model::minilm("minilm")
                    .on("onnx")
                    .set("aliases", vec!["text-embedding-3-small"]),
            )
            .model(
                Model::named("reranker")
                    .path(&fixtures_dir().join("ms-marco-reranker-tiny"))
                    .on("onnx"),
            )
            .server("api_keys", vec![API_KEY])
            .server("admin_key", ADMIN_KEY)
            .shared()
            .start()
    })
}

fn tools() -> std::path::PathBuf {
    venv_python("contract-venv", &TOOLS)
}

#[test]
fn the_openapi_document_holds_for_the_running_server() {
    let server = server();
    run_python_client(
        &tools(),
        "openapi_contract.py",
        &[server.url.as_ref(), API_KEY.as_ref(), ADMIN_KEY.as_ref()],
    );
}

#[test]
fn schemathesis_finds_nothing_on_any_route() {
    let server = server();
    let python = tools();
    let dir = TempDir::new("schemathesis");
    let config = dir.path().join("schemathesis.toml");
    // Each scheme its key; 413 (too many inputs) is a refusal of invalid data too.
    std::fs::write(
        &config,
        format!(
            "[auth.openapi.api_key]\nbearer = \"{API_KEY}\"\n\
             [auth.openapi.admin_key]\nbearer = \"{ADMIN_KEY}\"\n\
             [checks.negative_data_rejection]\nexpected-statuses = [\"400\", \"401\", \"403\", \
             \"404\", \"405\", \"406\", \"409\", \"413\", \"415\", \"422\", \"428\", \"429\"]\n"
        ),
    )
    .unwrap();
    let stdout = stdout_of(
        Command::new(python.with_file_name("st"))
            .arg("--config-file")
            .arg(&config)
            .args(["run", &format!("{}/openapi.json", server.url)])
            // Every check, every phase; bounded so that it fits in the suite, seeded so that a
            // failure reproduces.
            .args([
                "--checks",
                "all",
                "--max-examples",
                "60",
                "--seed",
                "20261204",
            ])
            .args(["--no-color", "--request-timeout", "30"])
            .env("EMBEDRT_URL", &server.url)
            .env("EMBEDRT_API_KEY", API_KEY)
            .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
            .env("PYTHONPATH", repo_root().join("tests/python"))
            .current_dir(dir.path()),
    );
    // Every route of the document was exercised.
    assert!(stdout.contains("Tested: 10"), "{stdout}");
}

#[test]
fn the_docs_page_renders_in_a_real_browser() {
    let server = server();
    let dir = TempDir::new("docs-page");
    let screenshot = dir.path().join("docs.png");
    run_python_client(
        &tools(),
        "docs_page.py",
        &[server.url.as_ref(), screenshot.as_ref()],
    );
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}

/// The document follows what is served: with one embedding model (jina-v3, with tasks and
/// Matryoshka sizes) and no keys, there are no rerank routes, `model` may be left out, `task`
/// and `dimensions` take that model's values, and no security scheme is asked for.
#[test]
fn the_document_follows_what_is_served() {
    let server = Server::builder()
        .model(Model::jina("jina").on("onnx"))
        .start();
    let document = ok(server.get("/openapi.json"));
    let paths: Vec<&String> = document["paths"].as_object().unwrap().keys().collect();
    assert!(
        paths.iter().all(|path| !path.contains("rerank")),
        "{paths:?}"
    );
    assert!(paths.iter().any(|path| *path == "/v1/embeddings"));
    let body = &document["components"]["schemas"]["EmbeddingsBody"];
    assert_eq!(body["properties"]["model"]["enum"], json!(["jina", null]));
    assert_eq!(body["required"], json!(["input"]));
    let model = &ok(server.get("/v1/models"))["data"][0];
    let mut tasks = model["tasks"].as_array().unwrap().clone();
    tasks.sort_by_key(|task| task.to_string());
    tasks.extend([json!("none"), Value::Null]);
    assert_eq!(body["properties"]["task"]["enum"], json!(tasks));
    let sizes = model["matryoshka_dimensions"].as_array().unwrap();
    assert!(!sizes.is_empty());
    assert_eq!(
        body["properties"]["dimensions"]["enum"],
        json!(sizes.iter().chain([&Value::Null]).collect::<Vec<_>>())
    );
    assert!(
        !document.to_string().contains("\"security\""),
        "no key is configured"
    );
}
