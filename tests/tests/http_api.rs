//! The OpenAI-compatible HTTP API, driven by a real HTTP client against the running server: every
//! input shape, encodings, dimensions, and every kind of bad input.

use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::common::{concurrently, cosine, error, ok, Model, Server};

/// One server shared by the tests of this module: all-MiniLM-L6-v2 on ONNX Runtime with small
/// limits.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        Server::builder()
            .server("max_body_bytes", 65536)
            .model(
                Model::minilm("minilm")
                    .on("onnx")
                    .set("max_inputs_per_request", 4),
            )
            .model(Model::minilm("strict").on("onnx").set("truncate", false))
            .shared()
            .start()
    })
}

fn embedding(response: &Value, i: usize) -> Vec<f32> {
    serde_json::from_value(response["data"][i]["embedding"].clone()).unwrap()
}

#[test]
fn every_input_shape_gives_the_same_vectors_in_order() {
    let server = server();
    let texts = ok(server
        .embed(json!({ "model": "minilm", "input": ["hello", "a longer sentence about foxes"] })));
    assert_eq!(texts["object"], "list");
    assert_eq!(texts["data"][0]["object"], "embedding");
    assert_eq!(
        (
            texts["data"][0]["index"].as_u64(),
            texts["data"][1]["index"].as_u64()
        ),
        (Some(0), Some(1))
    );
    let hello = embedding(&texts, 0);
    assert_eq!(hello.len(), 384);

    let single = ok(server.embed(json!({ "model": "minilm", "input": "hello" })));
    assert!(cosine(&embedding(&single, 0), &hello) > 0.99999);
    // "hello" is [CLS] hello [SEP] = 101 7592 102 in this vocabulary.
    let ids = ok(server.embed(json!({ "model": "minilm", "input": [101, 7592, 102] })));
    assert!(cosine(&embedding(&ids, 0), &hello) > 0.99999);
    let id_lists =
        ok(server.embed(json!({ "model": "minilm", "input": [[101, 102], [101, 7592, 102]] })));
    assert!(cosine(&embedding(&id_lists, 1), &hello) > 0.99999);
    assert!(cosine(&embedding(&id_lists, 0), &hello) < 0.99);
    // Order is kept: the second of two is the second.
    let reversed = ok(server
        .embed(json!({ "model": "minilm", "input": ["a longer sentence about foxes", "hello"] })));
    assert!(cosine(&embedding(&reversed, 1), &hello) > 0.99999);
}

#[test]
fn base64_is_little_endian_f32_of_the_float_vector() {
    let server = server();
    let float = ok(server.embed(json!({ "model": "minilm", "input": "base64 check" })));
    let encoded = ok(server
        .embed(json!({ "model": "minilm", "input": "base64 check", "encoding_format": "base64" })));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(decoded, embedding(&float, 0));
}

#[test]
fn dimensions_truncate_then_normalize() {
    let server = server();
    let full = embedding(
        &ok(server.embed(json!({ "model": "minilm", "input": "matryoshka" }))),
        0,
    );
    let short = embedding(
        &ok(server.embed(json!({ "model": "minilm", "input": "matryoshka", "dimensions": 64 }))),
        0,
    );
    assert_eq!(short.len(), 64);
    let norm = short.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    assert!(cosine(&short, &full[..64]) > 0.99999);
    for bad in [0, 385] {
        let err = error(
            server.embed(json!({ "model": "minilm", "input": "x", "dimensions": bad })),
            400,
        );
        assert_eq!(err["param"], "dimensions");
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .contains("between 1 and 384"),
            "{err}"
        );
    }
}

#[test]
fn long_inputs_are_truncated_or_rejected() {
    let server = server();
    let long = "word ".repeat(600);
    let cut = ok(server.embed(json!({ "model": "minilm", "input": long })));
    assert_eq!(
        cut["usage"]["prompt_tokens"], 256,
        "cut at the model's real limit"
    );
    let err = error(
        server.embed(json!({ "model": "minilm", "input": long, "truncate": false })),
        400,
    );
    assert!(
        err["message"].as_str().unwrap().contains("602 tokens"),
        "{err}"
    );
    // A model configured with truncate = false rejects unless the request allows it.
    error(
        server.embed(json!({ "model": "strict", "input": long })),
        400,
    );
    ok(server.embed(json!({ "model": "strict", "input": long, "truncate": true })));
    let err = error(
        server.embed(json!({ "model": "minilm", "input": vec![101u32; 300], "truncate": false })),
        400,
    );
    assert!(
        err["message"].as_str().unwrap().contains("300 tokens"),
        "{err}"
    );
}

#[test]
fn malformed_requests_get_openai_errors() {
    let server = server();
    error(
        server.post_raw("/v1/embeddings", "{\"model\": \"minilm\", ".into()),
        400,
    );
    error(server.post_raw("/v1/embeddings", "[1, 2]".into()), 422);
    assert_eq!(
        error(server.embed(json!({ "model": "minilm", "input": 42 })), 422)["param"],
        "input"
    );
    assert_eq!(
        error(
            server.embed(json!({ "model": "minilm", "input": ["a", 1] })),
            422
        )["param"],
        "input"
    );
    assert_eq!(
        error(
            server.embed(json!({ "model": "minilm", "input": "x", "dimensions": "8" })),
            422
        )["param"],
        "dimensions"
    );
    assert_eq!(
        error(server.embed(json!({ "model": "minilm" })), 400)["param"],
        "input"
    );
    assert_eq!(
        error(
            server.embed(json!({ "model": "minilm", "input": "x", "encoding_format": "hex" })),
            400
        )["param"],
        "encoding_format"
    );
    let err = error(server.embed(json!({ "input": "x" })), 400);
    assert_eq!(
        err["param"], "model",
        "two models are served, so `model` is required"
    );
}

#[test]
fn unknown_model_is_404() {
    let err = error(
        server().embed(json!({ "model": "gpt-5", "input": "x" })),
        404,
    );
    assert_eq!(err["code"], "model_not_found");
    assert!(err["message"].as_str().unwrap().contains("gpt-5"));
}

#[test]
fn empty_inputs_are_rejected_but_an_empty_string_is_embedded() {
    let server = server();
    error(server.embed(json!({ "model": "minilm", "input": [] })), 400);
    error(
        server.embed(json!({ "model": "minilm", "input": [[]] })),
        400,
    );
    // As in sentence-transformers, "" is [CLS] [SEP], a valid input.
    let empty = ok(server.embed(json!({ "model": "minilm", "input": ["ok", ""] })));
    assert_eq!(empty["usage"]["prompt_tokens"], 3 + 2);
}

#[test]
fn out_of_vocabulary_token_ids_are_rejected() {
    let err = error(
        server().embed(json!({ "model": "minilm", "input": [101, 999999, 102] })),
        400,
    );
    assert!(err["message"].as_str().unwrap().contains("999999"));
}

#[test]
fn limits_answer_413() {
    let server = server();
    let err = error(
        server.embed(json!({ "model": "minilm", "input": ["a", "b", "c", "d", "e"] })),
        413,
    );
    assert_eq!(err["code"], "too_many_inputs");
    let err = error(
        server.embed(json!({ "model": "minilm", "input": "x".repeat(70_000) })),
        413,
    );
    assert_eq!(err["code"], "body_too_large");
}

#[test]
fn models_health_ready_and_unknown_routes() {
    let server = server();
    let models = server.models();
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["minilm", "strict"]);
    assert_eq!(models["data"][0]["backend"], "onnx");
    assert_eq!(models["data"][0]["dimensions"], 384);
    assert_eq!(server.get("/health").status(), 200);
    assert_eq!(server.get("/ready").status(), 200);
    error(server.get("/v2/nothing"), 404);
}

#[test]
fn a_full_queue_answers_429_with_retry_after_and_loses_nothing_accepted() {
    let server = Server::builder()
        .model(
            Model::minilm("slow")
                .on("echo")
                .option("delay_ms", 300)
                .batching("max_batch_requests", 1)
                .batching("max_queued_inputs", 2)
                .batching("max_wait_ms", 0),
        )
        .start();
    let statuses = concurrently(8, |i| {
        let response = server.embed(json!({ "model": "slow", "input": format!("request {i}") }));
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (
            response.status().as_u16(),
            retry,
            response.json::<Value>().unwrap(),
        )
    });
    let rejected: Vec<_> = statuses
        .iter()
        .filter(|(status, ..)| *status == 429)
        .collect();
    let accepted: Vec<_> = statuses
        .iter()
        .filter(|(status, ..)| *status == 200)
        .collect();
    assert!(
        !rejected.is_empty(),
        "8 concurrent requests must overflow a queue of 2"
    );
    assert_eq!(rejected.len() + accepted.len(), 8, "{statuses:?}");
    for (_, retry, body) in &rejected {
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(body["error"]["code"], "queue_full");
    }
    for (_, _, body) in &accepted {
        assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 384);
    }
}

#[test]
fn a_bad_input_does_not_fail_the_rest_of_its_batch() {
    let server = Server::builder()
        .model(
            Model::minilm("picky")
                .on("echo")
                .option("reject_token", 4242)
                .batching("max_wait_ms", 200)
                .batching("max_batch_requests", 64),
        )
        .start();
    let results = concurrently(6, |i| {
        let input = if i == 3 {
            json!([101, 4242, 102])
        } else {
            json!(format!("fine {i}"))
        };
        let response = server.embed(json!({ "model": "picky", "input": input }));
        (
            i,
            response.status().as_u16(),
            response.json::<Value>().unwrap(),
        )
    });
    for (i, status, body) in results {
        if i == 3 {
            assert_eq!(status, 400, "{body}");
            assert!(body["error"]["message"].as_str().unwrap().contains("4242"));
        } else {
            assert_eq!(status, 200, "request {i}: {body}");
        }
    }
}
