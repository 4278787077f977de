//! XLM-RoBERTa (bge-m3, multilingual-e5), MPNet (all-mpnet) and ModernBERT (modernbert-embed)
//! through the HTTP API on both engines: every prompt case against sentence-transformers, the
//! token ids `/v1/tokenize` reports, texts batched with strangers, truncation at each model's
//! limit, `dimensions`, an A/B split between the engines, and folders the server refuses.

use std::collections::HashSet;
use std::sync::OnceLock;

use embedrt_runtime::postprocess::finish;
use embedrt_testkit::encoders::{fixture, F32, FIXTURES};
use embedrt_testkit::golden::{Encoder, EncoderCase};
use serde_json::{json, Value};

use crate::common::{
    assert_each_pair, broken_copy, concurrently, embeddings_of, error, fixtures_dir, header, ok,
    refusal, served, Model, Server, Variant, ENGINES,
};

/// One server: every encoder fixture on both engines, and modernbert-embed split 50/50
/// between them.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let mut builder = Server::builder();
        for name in FIXTURES {
            for engine in ENGINES {
                builder = builder.model(Model::fixture_on(name, engine));
            }
        }
        builder
            .model(
                Model::named("modernbert-ab")
                    .path(&fixtures_dir().join("modernbert-embed-tiny"))
                    .variant(Variant::on("candle").named("candle"))
                    .variant(Variant::on("onnx").named("onnx")),
            )
            .shared()
            .start()
    })
}

fn expected(name: &str) -> &'static Encoder {
    static EXPECTED: OnceLock<Vec<(&'static str, Encoder)>> = OnceLock::new();
    let all = EXPECTED.get_or_init(|| FIXTURES.iter().map(|n| (*n, fixture(n).1)).collect());
    &all.iter().find(|(n, _)| *n == name).unwrap().1
}

/// A request body for `model` with `input`, naming the case's prompt as the task when it has
/// one (a model without prompts takes no `task`).
fn body(model: &str, input: impl Into<Value>, case: &EncoderCase) -> Value {
    let input: Value = input.into();
    let mut body = json!({ "model": model, "input": input });
    if let Some(task) = &case.prompt_name {
        body["task"] = json!(task);
    }
    body
}

fn check(got: &[Vec<f32>], want: &[Vec<f32>], what: &str) {
    assert_each_pair(got, want, |i, got, want| {
        if let Err(why) = F32.accepts(got, want) {
            panic!("{what}, text {i}: {why}");
        }
    });
}

#[test]
fn every_prompt_case_matches_the_reference_on_both_engines() {
    let mut checked = 0;
    for name in FIXTURES {
        let expected = expected(name);
        for engine in ENGINES {
            let model = served(name, engine);
            for case in &expected.cases {
                let body = ok(server().embed(body(&model, expected.texts.clone(), case)));
                check(
                    &embeddings_of(&body),
                    &case.embeddings,
                    &format!("{model} {case:?}"),
                );
                let tokens: usize = case.token_ids.iter().map(Vec::len).sum();
                assert_eq!(body["usage"]["prompt_tokens"], tokens, "{model}");
                checked += 1;
            }
        }
    }
    assert_eq!(
        checked,
        2 * (1 + 3 + 1 + 3),
        "every case of every fixture on both engines"
    );
}

#[test]
fn tokenize_reports_the_reference_token_ids() {
    for name in FIXTURES {
        for case in &expected(name).cases {
            let request = body(&served(name, "onnx"), expected(name).texts.clone(), case);
            let body = ok(server().post("/v1/tokenize", &request));
            let got: Vec<Vec<u32>> = body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| serde_json::from_value(item["tokens"].clone()).unwrap())
                .collect();
            assert_eq!(got, case.token_ids, "{name} {:?}", case.prompt_name);
        }
    }
}

/// Every text of every case alone, all at once from many clients: each request is batched with
/// strangers of other lengths and prompts, and gets its own vector.
#[test]
fn concurrent_single_texts_each_get_their_own_vector() {
    let jobs: Vec<(String, &EncoderCase, usize)> = FIXTURES
        .iter()
        .flat_map(|name| {
            ENGINES.iter().flat_map(move |engine| {
                expected(name).cases.iter().flat_map(move |case| {
                    (0..case.embeddings.len()).map(move |i| (served(name, engine), case, i))
                })
            })
        })
        .collect();
    let results = concurrently(jobs.len(), |k| {
        let (model, case, i) = &jobs[k];
        let texts = &expected(model.rsplit_once('-').unwrap().0).texts;
        server().embed(body(model, texts[*i].as_str(), case))
    });
    for ((model, case, i), response) in jobs.iter().zip(results) {
        let got = embeddings_of(&ok(response));
        check(
            &got,
            std::slice::from_ref(&case.embeddings[*i]),
            &format!("{model} {:?} text {i}", case.prompt_name),
        );
    }
}

#[test]
fn long_inputs_are_cut_at_each_models_limit() {
    let long = "word ".repeat(700);
    for (name, limit) in [("multilingual-e5-tiny", 512), ("all-mpnet-tiny", 384)] {
        for engine in ENGINES {
            let model = served(name, engine);
            let body = ok(server().embed(json!({ "model": model, "input": long })));
            assert_eq!(body["usage"]["prompt_tokens"], limit, "{model}");
            let err = error(
                server().embed(json!({ "model": model, "input": long, "truncate": false })),
                400,
            );
            assert!(
                err["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("limit of {limit}")),
                "{err}"
            );
        }
        let body = ok(server().post(
            "/v1/tokenize",
            &json!({ "model": served(name, "onnx"), "input": long }),
        ));
        assert_eq!(body["data"][0]["count"], limit, "{name}");
    }
}

#[test]
fn dimensions_cut_and_renormalize() {
    for name in FIXTURES {
        let case = &expected(name).cases[0];
        for engine in ENGINES {
            let body = ok(server().embed(
                json!({ "model": served(name, engine), "input": expected(name).texts, "dimensions": 16 }),
            ));
            let want: Vec<Vec<f32>> = case
                .embeddings
                .iter()
                .map(|v| finish(v.clone(), Some(16), true))
                .collect();
            let got = embeddings_of(&body);
            assert!(got.iter().all(|v| v.len() == 16));
            check(&got, &want, &format!("{name} {engine} at 16 dimensions"));
        }
    }
}

#[test]
fn an_ab_split_between_the_engines_serves_the_same_vectors() {
    let case = &expected("modernbert-embed-tiny").cases[2];
    let mut variants = HashSet::new();
    for user in 0..24 {
        let mut request = body(
            "modernbert-ab",
            expected("modernbert-embed-tiny").texts.clone(),
            case,
        );
        request["user"] = json!(format!("user-{user}"));
        let response = server().embed(request);
        variants.insert(header(&response, "x-embedrt-variant"));
        check(
            &embeddings_of(&ok(response)),
            &case.embeddings,
            "modernbert-ab",
        );
    }
    assert_eq!(variants.len(), 2, "both variants served: {variants:?}");
}

#[test]
fn unknown_families_and_missing_files_stop_startup_with_the_reason() {
    let renamed = broken_copy("all-mpnet-tiny", |c| c["model_type"] = json!("t5"), &[]);
    let log = refusal(renamed.path(), "candle");
    assert!(
        log.contains("model_type \"t5\" is not a family embedrt serves"),
        "{log}"
    );
    let no_weights = broken_copy("modernbert-embed-tiny", |_| {}, &["model.safetensors"]);
    let log = refusal(no_weights.path(), "candle");
    assert!(log.contains("model.safetensors"), "{log}");
    let no_graph = broken_copy("bge-m3-tiny", |_| {}, &["onnx/model.onnx"]);
    let log = refusal(no_graph.path(), "onnx");
    assert!(log.contains("no ONNX file"), "{log}");
}
