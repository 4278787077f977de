//! jina-embeddings-v3 through the HTTP API, on both engines at once: every task and Matryoshka
//! size from many concurrent clients, late chunking, long inputs, binary embeddings and bad input.

mod common;

use std::sync::OnceLock;

use common::{
    concurrently, embeddings_of, jina_dir, jina_model, max_abs_diff, minilm_model, Server,
};
use embedrt_runtime::postprocess::finish;
use embedrt_runtime::tokenize::TextTokenizer;
use embedrt_runtime::ModelCard;
use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};

const TOLERANCE: f32 = 1e-4;
const ENGINES: [&str; 2] = ["jina-candle", "jina-onnx"];

fn expected() -> &'static Value {
    static EXPECTED: OnceLock<Value> = OnceLock::new();
    EXPECTED.get_or_init(|| {
        serde_json::from_str(&std::fs::read_to_string(jina_dir().join("expected.json")).unwrap())
            .unwrap()
    })
}

/// One server: the tiny jina checkpoint on candle and on ONNX Runtime, the same split 50/50
/// between the two, and a model without adapters.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let ab = format!(
            "[[models]]\nname = \"jina-ab\"\npath = {:?}\n\
             [[models.variants]]\nname = \"candle\"\nbackend = \"candle\"\n\
             [[models.variants]]\nname = \"onnx\"\nbackend = \"onnx\"\n",
            common::jina_dir().display().to_string()
        );
        let models = jina_model("jina-candle", "candle")
            + &jina_model("jina-onnx", "onnx")
            + &minilm_model("plain", "echo", "")
            + &ab;
        Server::start("", &models)
    })
}

fn post(body: Value) -> Response {
    Client::new()
        .post(format!("{}/v1/embeddings", server().url))
        .json(&body)
        .send()
        .unwrap()
}

fn vectors(response: Response) -> Vec<Vec<f32>> {
    assert_eq!(response.status(), 200);
    embeddings_of(&response.json().unwrap())
}

fn error(response: Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().unwrap();
    body["error"].clone()
}

#[test]
fn concurrent_clients_with_different_tasks_and_sizes_each_get_their_own_answer() {
    let cases = expected()["cases"].as_array().unwrap();
    let texts = &expected()["texts"];
    let jobs: Vec<(&str, &Value)> = ENGINES
        .iter()
        .flat_map(|engine| cases.iter().map(move |case| (*engine, case)))
        .collect();
    let results = concurrently(jobs.len(), |i| {
        let (engine, case) = jobs[i];
        let mut body = json!({ "model": engine, "input": texts, "dimensions": case["dimensions"] });
        body["task"] = case
            .get("task")
            .filter(|t| !t.is_null())
            .cloned()
            .unwrap_or(json!("none"));
        if let Some(normalized) = case.get("normalized") {
            body["normalized"] = normalized.clone();
        }
        post(body)
    });
    for ((engine, case), response) in jobs.into_iter().zip(results) {
        if engine == "jina-onnx" && case["task"].is_null() {
            let err = error(response, 400);
            assert_eq!(err["param"], "task", "{err}");
            continue;
        }
        let got = vectors(response);
        for (i, want) in case["embeddings"].as_array().unwrap().iter().enumerate() {
            let want: Vec<f32> = serde_json::from_value(want.clone()).unwrap();
            let diff = max_abs_diff(&got[i], &want);
            assert!(
                diff <= TOLERANCE,
                "{engine} {case:?}: text {i}: {diff}",
                case = (&case["task"], &case["dimensions"])
            );
        }
    }
}

#[test]
fn the_default_task_is_text_matching_and_prefixes_count_as_tokens() {
    let texts = &expected()["texts"];
    let token_ids = &expected()["token_ids"];
    for engine in ENGINES {
        let default = vectors(post(json!({ "model": engine, "input": texts })));
        let matching = vectors(post(
            json!({ "model": engine, "input": texts, "task": "text-matching" }),
        ));
        assert_eq!(default, matching);
        let body: Value =
            post(json!({ "model": engine, "input": texts, "task": "retrieval.query" }))
                .json()
                .unwrap();
        let tokens: usize = token_ids["retrieval.query"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ids| ids.as_array().unwrap().len())
            .sum();
        assert_eq!(
            body["usage"]["prompt_tokens"], tokens,
            "the instruction is counted"
        );
    }
}

/// `<s> [instruction] chunk1 chunk2 </s>`, pooled per chunk from the official token states.
#[test]
fn late_chunking_pools_each_chunk_of_one_pass() {
    let card = ModelCard::load(&jina_dir()).unwrap();
    let tokenizer = TextTokenizer::load(&card.path, card.max_tokens, card.vocab_size).unwrap();
    let chunks = ["The quick brown fox", "jumps over the lazy dog."];
    for states in expected()["token_states"].as_array().unwrap() {
        let task = states["task"].as_str().unwrap();
        let document = tokenizer
            .encode_document(card.instruction(card.task_id(task).unwrap()), &chunks)
            .unwrap();
        let fixture_ids: Vec<u32> = serde_json::from_value(states["input_ids"].clone()).unwrap();
        assert_eq!(
            document.ids, fixture_ids,
            "the chunks tokenize as the whole text does ({task})"
        );
        let rows: Vec<Vec<f32>> =
            serde_json::from_value(states["last_hidden_state"].clone()).unwrap();
        let want: Vec<Vec<f32>> = document
            .spans
            .iter()
            .map(|span| {
                let mut mean = vec![0f32; rows[0].len()];
                for row in &rows[span.clone()] {
                    mean.iter_mut()
                        .zip(row)
                        .for_each(|(m, v)| *m += v / span.len() as f32);
                }
                finish(mean, Some(16), true)
            })
            .collect();
        for engine in ENGINES {
            let got = vectors(post(
                json!({ "model": engine, "input": chunks, "task": task, "late_chunking": true, "dimensions": 16 }),
            ));
            assert_eq!(got.len(), 2);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    max_abs_diff(g, w) <= TOLERANCE,
                    "{engine}, {task}: {}",
                    max_abs_diff(g, w)
                );
            }
        }
    }
}

#[test]
fn late_chunking_rejects_a_document_over_the_limit() {
    let chunk =
        "Late chunking pools token embeddings after encoding the whole document. ".repeat(30);
    for engine in ENGINES {
        let err = error(
            post(
                json!({ "model": engine, "input": vec![chunk.as_str(); 10], "late_chunking": true }),
            ),
            400,
        );
        let message = err["message"].as_str().unwrap();
        assert!(
            message.contains("8192") && message.contains("tokens"),
            "{message}"
        );
    }
}

#[test]
fn inputs_up_to_the_real_limit_run_and_longer_ones_are_cut_or_refused() {
    // Well over 8192 tokens of text: cut to 8192 by default, refused with truncate = false.
    let long = "embedding servers batch requests. ".repeat(600);
    for engine in ENGINES {
        let body: Value = post(json!({ "model": engine, "input": long, "dimensions": 8 }))
            .json()
            .unwrap();
        assert_eq!(body["usage"]["prompt_tokens"], 8192, "{body}");
        assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 8);
        let err = error(
            post(json!({ "model": engine, "input": long, "truncate": false })),
            400,
        );
        assert!(
            err["message"].as_str().unwrap().contains("limit of 8192"),
            "{err}"
        );
    }
}

#[test]
fn binary_embeddings_pack_the_float_signs() {
    for engine in ENGINES {
        let float = vectors(post(json!({ "model": engine, "input": "Paris" })));
        let ubinary: Value =
            post(json!({ "model": engine, "input": "Paris", "embedding_type": "ubinary" }))
                .json()
                .unwrap();
        let binary: Value =
            post(json!({ "model": engine, "input": "Paris", "embedding_type": "binary" }))
                .json()
                .unwrap();
        let bytes: Vec<u8> =
            serde_json::from_value(ubinary["data"][0]["embedding"].clone()).unwrap();
        let signed: Vec<i8> =
            serde_json::from_value(binary["data"][0]["embedding"].clone()).unwrap();
        assert_eq!(bytes.len(), 32 / 8);
        for (j, v) in float[0].iter().enumerate() {
            assert_eq!(
                bytes[j / 8] >> (7 - j % 8) & 1 == 1,
                *v > 0.0,
                "dimension {j}"
            );
        }
        assert!(bytes
            .iter()
            .zip(&signed)
            .all(|(&u, &s)| s as i16 == u as i16 - 128));
    }
}

#[test]
fn bad_jina_requests_get_clear_errors() {
    let err = error(
        post(json!({ "model": "jina-candle", "input": "x", "task": "summarization" })),
        400,
    );
    assert!(
        err["message"].as_str().unwrap().contains("retrieval.query"),
        "lists the tasks: {err}"
    );
    let err = error(
        post(json!({ "model": "jina-candle", "input": "x", "dimensions": 12 })),
        400,
    );
    assert!(
        err["message"].as_str().unwrap().contains("8, 16, 32"),
        "lists the sizes: {err}"
    );
    let err = error(
        post(json!({ "model": "plain", "input": "x", "task": "retrieval.query" })),
        400,
    );
    assert_eq!(err["param"], "task");
    let err = error(
        post(json!({ "model": "jina-onnx", "input": "x", "embedding_type": "int4" })),
        400,
    );
    assert_eq!(err["param"], "embedding_type");
    let err = error(
        post(json!({ "model": "jina-onnx", "input": [[0, 5, 2]], "late_chunking": true })),
        400,
    );
    assert!(
        err["message"].as_str().unwrap().contains("text chunks"),
        "{err}"
    );
    error(
        post(json!({ "model": "jina-candle", "input": ["ok", ""], "late_chunking": true })),
        400,
    );
}

#[test]
fn a_task_is_accepted_or_refused_by_the_deployment_whichever_variant_is_drawn() {
    // candle can run the base weights, the official ONNX graph cannot: with both serving, `none`
    // is refused for every user, and an adapter task is served by both.
    let mut variants = std::collections::HashSet::new();
    for user in 0..30 {
        let user = format!("user-{user}");
        let err = error(
            post(json!({ "model": "jina-ab", "input": "x", "task": "none", "user": user })),
            400,
        );
        assert_eq!(err["param"], "task", "{err}");
        let response = post(
            json!({ "model": "jina-ab", "input": "x", "task": "retrieval.query", "user": user }),
        );
        assert_eq!(response.status(), 200);
        variants.insert(
            response.headers()["x-embedrt-variant"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(variants.len(), 2, "both variants served: {variants:?}");
}
