//! Qwen3-Embedding (a decoder: causal attention, last-token pooling on the appended
//! `<|endoftext|>`, the query instruction as a task) through the HTTP API on both engines, driven
//! by the official `openai` client: every prompt case against sentence-transformers' left-padded
//! reference, the token ids `/v1/tokenize` reports, texts of 1 to 127 tokens batched together and
//! from concurrent clients, `dimensions`, the query task by name and by an alias; and inputs
//! past the family's bound of 8,192 tokens.

use std::sync::OnceLock;

use serde_json::json;

use crate::common::python::{run_python_client, test_python};
use crate::common::{error, fixtures_dir, ok, served, Model, Server, ENGINES};
use crate::openai_client::OPENAI;

/// The fixture.
const QWEN3: &str = "qwen3-embedding-tiny";

/// The alias of the model on `engine` whose requests get the `query` task.
fn query_alias(engine: &str) -> String {
    format!("{}-query", served(QWEN3, engine))
}

/// One server: the fixture on both engines, each with its query alias.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let mut builder = Server::builder();
        for engine in ENGINES {
            builder = builder
                .model(Model::fixture_on(QWEN3, engine).task_alias(&query_alias(engine), "query"));
        }
        builder.shared().start()
    })
}

#[test]
fn the_official_openai_client_gets_the_references_vectors_on_both_engines() {
    let python = test_python(&[OPENAI]);
    let base_url = format!("{}/v1", server().url);
    let expected = fixtures_dir().join(QWEN3).join("expected.json");
    for engine in ENGINES {
        run_python_client(
            &python,
            "openai_decoder.py",
            &[
                base_url.as_ref(),
                served(QWEN3, engine).as_ref(),
                query_alias(engine).as_ref(),
                expected.as_ref(),
            ],
        );
    }
}

/// The family bounds inputs at 8,192 tokens (its position table allows 32,768; README, "Model
/// families"): a longer input is cut there, or refused with `truncate: false`.
#[test]
fn inputs_past_8192_tokens_are_cut_or_refused() {
    let long = "word ".repeat(9000);
    for engine in ENGINES {
        let model = served(QWEN3, engine);
        let body = ok(server().post("/v1/tokenize", &json!({ "model": model, "input": long })));
        assert_eq!(body["data"][0]["count"], 8192, "{model}");
        let tokens = body["data"][0]["tokens"].as_array().unwrap();
        assert_eq!(
            tokens.last().unwrap(),
            0,
            "{model}: still ends with <|endoftext|>"
        );
        let err = error(
            server().embed(json!({ "model": model, "input": long, "truncate": false })),
            400,
        );
        assert!(
            err["message"].as_str().unwrap().contains("limit of 8192"),
            "{err}"
        );
    }
    let body = ok(server().embed(json!({ "model": served(QWEN3, "onnx"), "input": long })));
    assert_eq!(body["usage"]["prompt_tokens"], 8192);
}
