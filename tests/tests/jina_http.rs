//! jina-embeddings-v3 through the HTTP API, on both engines at once: every task and Matryoshka
//! size from many concurrent clients, late chunking, long inputs, binary embeddings and bad input.

use std::sync::OnceLock;

use embedrt_runtime::postprocess::finish;
use embedrt_testkit::golden::{self, Jina};
use embedrt_testkit::jina::{fixture, tokenizer};
use serde_json::{json, Value};

use crate::common::{
    assert_each_pair, concurrently, embeddings_of, error, header, jina_dir, max_abs_diff, ok,
    Model, Server, Variant,
};

const TOLERANCE: f32 = 1e-4;
const ENGINES: [&str; 2] = ["jina-candle", "jina-onnx"];

fn expected() -> &'static Jina {
    static EXPECTED: OnceLock<Jina> = OnceLock::new();
    EXPECTED.get_or_init(|| golden::jina(&jina_dir()))
}

/// One server: the tiny jina checkpoint on candle and on ONNX Runtime, the same split 50/50
/// between the two, and a model without adapters.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        Server::builder()
            .model(Model::jina("jina-candle").on("candle"))
            .model(Model::jina("jina-onnx").on("onnx"))
            .model(Model::minilm("plain").on("echo"))
            .model(
                Model::jina("jina-ab")
                    .variant(Variant::on("candle").named("candle"))
                    .variant(Variant::on("onnx").named("onnx")),
            )
            .shared()
            .start()
    })
}

fn vectors(body: Value) -> Vec<Vec<f32>> {
    embeddings_of(&ok(server().embed(body)))
}

#[test]
fn concurrent_clients_with_different_tasks_and_sizes_each_get_their_own_answer() {
    let expected = expected();
    let jobs: Vec<(&str, &golden::JinaCase)> = ENGINES
        .iter()
        .flat_map(|engine| expected.cases.iter().map(move |case| (*engine, case)))
        .collect();
    let results = concurrently(jobs.len(), |i| {
        let (engine, case) = jobs[i];
        let mut body = json!({
            "model": engine,
            "input": expected.texts,
            "dimensions": case.dimensions,
            "task": case.task.as_deref().unwrap_or("none"),
        });
        if let Some(normalized) = case.normalized {
            body["normalized"] = json!(normalized);
        }
        server().embed(body)
    });
    let mut checked = 0;
    for ((engine, case), response) in jobs.into_iter().zip(results) {
        if engine == "jina-onnx" && case.task.is_none() {
            let err = error(response, 400);
            assert_eq!(err["param"], "task", "{err}");
            continue;
        }
        let got = embeddings_of(&ok(response));
        assert_each_pair(&got, &case.embeddings, |i, got, want| {
            let diff = max_abs_diff(got, want);
            assert!(
                diff <= TOLERANCE,
                "{engine} {:?} {}: text {i}: {diff}",
                case.task,
                case.dimensions
            );
        });
        checked += 1;
    }
    assert_eq!(
        checked,
        24 + 20,
        "candle runs every case, onnx all but the base weights"
    );
}

#[test]
fn the_default_task_is_text_matching_and_prefixes_count_as_tokens() {
    let expected = expected();
    for engine in ENGINES {
        let default = vectors(json!({ "model": engine, "input": expected.texts }));
        let matching =
            vectors(json!({ "model": engine, "input": expected.texts, "task": "text-matching" }));
        assert_eq!(default, matching);
        let body = ok(server()
            .embed(json!({ "model": engine, "input": expected.texts, "task": "retrieval.query" })));
        let tokens: usize = expected.token_ids["retrieval.query"]
            .iter()
            .map(Vec::len)
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
    let (card, _) = fixture("");
    let tokenizer = tokenizer(&card);
    let chunks = ["The quick brown fox", "jumps over the lazy dog."];
    let mut documents = 0;
    for states in &expected().token_states {
        let task = &states.task;
        let instruction = card.task(card.task_id(task).unwrap()).instruction;
        let document = tokenizer.encode_document(&instruction, &chunks).unwrap();
        assert_eq!(
            document.ids, states.input_ids,
            "the chunks tokenize as the whole text does ({task})"
        );
        let rows = &states.last_hidden_state;
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
            let got = vectors(
                json!({ "model": engine, "input": chunks, "task": task, "late_chunking": true, "dimensions": 16 }),
            );
            assert_eq!(got.len(), 2);
            assert_each_pair(&got, &want, |_, g, w| {
                assert!(
                    max_abs_diff(g, w) <= TOLERANCE,
                    "{engine}, {task}: {}",
                    max_abs_diff(g, w)
                );
            });
        }
        documents += 1;
    }
    assert!(documents > 0, "the fixture has token states");
}

#[test]
fn late_chunking_rejects_a_document_over_the_limit() {
    let chunk =
        "Late chunking pools token embeddings after encoding the whole document. ".repeat(30);
    for engine in ENGINES {
        let err = error(
            server().embed(
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
        let body = ok(server().embed(json!({ "model": engine, "input": long, "dimensions": 8 })));
        assert_eq!(body["usage"]["prompt_tokens"], 8192, "{body}");
        assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 8);
        let err = error(
            server().embed(json!({ "model": engine, "input": long, "truncate": false })),
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
        let float = vectors(json!({ "model": engine, "input": "Paris" }));
        let ubinary = ok(server()
            .embed(json!({ "model": engine, "input": "Paris", "embedding_type": "ubinary" })));
        let binary = ok(server()
            .embed(json!({ "model": engine, "input": "Paris", "embedding_type": "binary" })));
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
        assert_each_pair(&bytes, &signed, |_, &u, &s| {
            assert_eq!(s as i16, u as i16 - 128);
        });
    }
}

#[test]
fn bad_jina_requests_get_clear_errors() {
    let server = server();
    let err = error(
        server.embed(json!({ "model": "jina-candle", "input": "x", "task": "summarization" })),
        400,
    );
    assert!(
        err["message"].as_str().unwrap().contains("retrieval.query"),
        "lists the tasks: {err}"
    );
    let err = error(
        server.embed(json!({ "model": "jina-candle", "input": "x", "dimensions": 12 })),
        400,
    );
    assert!(
        err["message"].as_str().unwrap().contains("8, 16, 32"),
        "lists the sizes: {err}"
    );
    let err = error(
        server.embed(json!({ "model": "plain", "input": "x", "task": "retrieval.query" })),
        400,
    );
    assert_eq!(err["param"], "task");
    let err = error(
        server.embed(json!({ "model": "jina-onnx", "input": "x", "embedding_type": "int4" })),
        400,
    );
    assert_eq!(err["param"], "embedding_type");
    let err = error(
        server.embed(json!({ "model": "jina-onnx", "input": [[0, 5, 2]], "late_chunking": true })),
        400,
    );
    assert!(
        err["message"].as_str().unwrap().contains("text chunks"),
        "{err}"
    );
    error(
        server.embed(json!({ "model": "jina-candle", "input": ["ok", ""], "late_chunking": true })),
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
            server()
                .embed(json!({ "model": "jina-ab", "input": "x", "task": "none", "user": user })),
            400,
        );
        assert_eq!(err["param"], "task", "{err}");
        let response = server().embed(
            json!({ "model": "jina-ab", "input": "x", "task": "retrieval.query", "user": user }),
        );
        assert_eq!(response.status(), 200);
        variants.insert(header(&response, "x-embedrt-variant"));
    }
    assert_eq!(variants.len(), 2, "both variants served: {variants:?}");
}
