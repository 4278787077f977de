//! The official `openai` Python client, installed from PyPI into a test venv, works unchanged
//! against the server (including its base64 default); LangChain's `OpenAIEmbeddings` at its
//! defaults, which sends OpenAI's token ids, gets the vectors of its texts.

use serde_json::json;

use crate::common::process::stdout_of;
use crate::common::python::{run_python_client, test_python, venv_python};
use crate::common::{fixtures_dir, jina_dir, ok, Model, Server};

/// The pinned client (also `decoders_http`'s).
pub(crate) const OPENAI: &str = "openai==3.54.0";

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

/// Clients that cannot send a task (Mem0, LangChain's `OpenAIEmbeddings`, ...) choose one by
/// model name: aliases that carry a task, on multilingual-e5's prompts and jina-v3's adapters.
#[test]
fn aliases_carry_tasks_for_the_official_openai_client() {
    let python = test_python(&[OPENAI]);
    let e5_dir = fixtures_dir().join("multilingual-e5-tiny");
    let server = Server::builder()
        .model(
            Model::named("e5")
                .path(&e5_dir)
                .on("onnx")
                .task_alias("e5-query", "query")
                .task_alias("e5-passage", "passage"),
        )
        .model(
            Model::jina("jina")
                .on("candle")
                .task_alias("jina-query", "retrieval.query"),
        )
        .start();
    let models = ok(server.get("/v1/models"));
    let e5 = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "e5")
        .unwrap();
    assert_eq!(e5["aliases"], json!(["e5-query", "e5-passage"]));
    assert_eq!(
        e5["alias_tasks"],
        json!({ "e5-query": "query", "e5-passage": "passage" })
    );
    let base_url = format!("{}/v1", server.url);
    run_python_client(
        &python,
        "openai_alias_tasks.py",
        &[
            base_url.as_ref(),
            e5_dir.join("expected.json").as_ref(),
            jina_dir().join("expected.json").as_ref(),
        ],
    );
    // A task named in the request still wins over the alias's.
    let named = ok(server.embed(json!({ "model": "e5-query", "input": "x", "task": "passage" })));
    let passage = ok(server.embed(json!({ "model": "e5-passage", "input": "x" })));
    assert_eq!(named["data"], passage["data"]);
}

#[test]
fn an_alias_with_a_task_the_model_lacks_stops_startup() {
    let exit = Server::builder()
        .model(
            Model::named("e5")
                .path(&fixtures_dir().join("multilingual-e5-tiny"))
                .on("onnx")
                .task_alias("e5-q", "qeury"),
        )
        .run_to_exit();
    assert_eq!(exit.code, Some(1));
    assert!(
        exit.log.contains("the task of the alias \"e5-q\"") && exit.log.contains("\"qeury\""),
        "{}",
        exit.log
    );
}

/// LangChain's `OpenAIEmbeddings` at its defaults sends tiktoken's cl100k_base ids, not texts: a
/// model with `token_ids = "cl100k_base"` reads them back into the texts (the same vectors as
/// the strings), and one without refuses them with a 400 naming the option.
#[test]
fn langchain_token_arrays_mean_the_texts_they_encode() {
    let python = venv_python("langchain-venv", &["langchain-openai==1.8.1"]);
    let server = Server::builder()
        .model(
            Model::minilm("minilm-cl100k")
                .on("onnx")
                .set("aliases", vec!["text-embedding-3-small"])
                .set("token_ids", "cl100k_base"),
        )
        .model(Model::minilm("minilm").on("onnx"))
        .start();
    // tiktoken would download its encoding; it finds it in its cache instead, under the SHA-1
    // of the address it would fetch, written from tiktoken-rs's (tiktoken checks the file's
    // SHA-256 and would try the network on a mismatch, so a wrong copy fails the test).
    let cache = embedrt_testkit::TempDir::new("tiktoken-cache");
    write_cl100k_base(
        &cache
            .path()
            .join("9b5ad71b2ce5302211f9c61530b329a4922fc6a4"),
    );
    let stdout = stdout_of(
        std::process::Command::new(&python)
            .arg(embedrt_testkit::paths::repo_root().join("tests/python/langchain_token_ids.py"))
            .args([&server.url, "text-embedding-3-small", "minilm"])
            .env("TIKTOKEN_CACHE_DIR", cache.path()),
    );
    assert_eq!(stdout.trim(), "ok");
}

/// Writes cl100k_base's ranks as tiktoken's `.tiktoken` file (a line per regular token, in rank
/// order: the token's bytes in base64, a space, its rank) from the encoding compiled into
/// tiktoken-rs, so that no download, cargo cache or earlier run is needed.
fn write_cl100k_base(path: &std::path::Path) {
    use base64::Engine as _;
    use std::fmt::Write as _;
    let encoding = tiktoken_rs::cl100k_base_singleton();
    let special: std::collections::HashSet<&str> = encoding.special_tokens();
    let mut file = String::new();
    // Regular tokens are ranked 0, 1, ... without gaps; the special ones come after them.
    for rank in 0u32.. {
        let Ok(bytes) = encoding.decode_bytes(&[rank]) else {
            break;
        };
        if std::str::from_utf8(&bytes).is_ok_and(|text| special.contains(text)) {
            break;
        }
        let token = base64::engine::general_purpose::STANDARD.encode(&bytes);
        writeln!(file, "{token} {rank}").unwrap();
    }
    std::fs::write(path, file).unwrap();
}
