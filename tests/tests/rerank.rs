//! Rerankers (cross-encoders) through the server on both engines: every fixture's logits,
//! scores and ranking over the three HTTP shapes (`/v1/rerank`, `/v2/rerank`, `/rerank`) and
//! gRPC; `top_n`, returned documents, documents as objects; concurrent requests batched
//! together; an A/B split between the engines, a shadow, a reload; the real clients (the Cohere
//! SDK, LlamaIndex's TEI reranker, Open WebUI's request); the kind of each model and the errors a
//! request of the wrong kind, or a bad one, gets.

use std::collections::HashSet;
use std::sync::OnceLock;

use embedrt_proto::v1 as pb;
use embedrt_proto::v1::embedder_client::EmbedderClient;
use embedrt_runtime::ModelCard;
use embedrt_testkit::golden::CrossEncoder;
use embedrt_testkit::rerankers::{check_logits, fixture, logit_close, RERANKERS};
use serde_json::{json, Value};

use crate::common::python::{run_python_client, venv_python};
use crate::common::{
    broken_copy, concurrently, error, fixtures_dir, header, ok, refusal, served, Model, Server,
    Variant, ENGINES,
};

/// One server: each reranker fixture on both engines, bge-reranker split 50/50 between them, a
/// reranker that takes two documents a request, and an embedding model.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let mut builder = Server::builder();
        for name in RERANKERS {
            for engine in ENGINES {
                builder = builder.model(Model::fixture_on(name, engine));
            }
        }
        builder
            .model(
                Model::named("bge-ab")
                    .path(&fixtures_dir().join("bge-reranker-tiny"))
                    .variant(Variant::on("candle").named("candle"))
                    .variant(Variant::on("onnx").named("onnx")),
            )
            .model(
                Model::named("ms-marco-shadowed")
                    .path(&fixtures_dir().join("ms-marco-reranker-tiny"))
                    .variant(Variant::on("onnx").named("onnx"))
                    .variant(Variant::on("candle").named("check").shadow(1.0)),
            )
            .model(
                Model::named("two-docs")
                    .path(&fixtures_dir().join("ms-marco-reranker-tiny"))
                    .on("onnx")
                    .set("max_inputs_per_request", 2),
            )
            .model(Model::minilm("minilm").on("onnx"))
            .shared()
            .start()
    })
}

fn expected(name: &str) -> &'static (ModelCard, CrossEncoder) {
    static EXPECTED: OnceLock<Vec<(&'static str, (ModelCard, CrossEncoder))>> = OnceLock::new();
    let all = EXPECTED.get_or_init(|| RERANKERS.iter().map(|n| (*n, fixture(n))).collect());
    &all.iter().find(|(n, _)| *n == name).unwrap().1
}

/// The logits of a Cohere-shaped answer, put back in document order.
fn logits_in_order(results: &Value, documents: usize) -> Vec<f32> {
    let mut logits = vec![f32::NAN; documents];
    for result in results.as_array().unwrap() {
        logits[result["index"].as_u64().unwrap() as usize] =
            result["relevance_score"].as_f64().unwrap() as f32;
    }
    logits
}

fn indices(results: &Value, key: &str) -> Vec<usize> {
    results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[key].as_u64().unwrap() as usize)
        .collect()
}

fn want_ranking(expected: &CrossEncoder) -> Vec<usize> {
    expected.ranking.iter().map(|r| r.corpus_id).collect()
}

#[test]
fn every_fixture_ranks_as_the_reference_on_both_engines_and_every_shape() {
    for name in RERANKERS {
        let (card, expected) = expected(name);
        let n = expected.documents.len();
        for engine in ENGINES {
            let model = served(name, engine);
            let label = model.clone();
            for path in ["/v1/rerank", "/v2/rerank", "/rerank"] {
                let raw = ok(server().post(
                    path,
                    &json!({ "model": model, "query": expected.query,
                             "documents": expected.documents, "raw_scores": true }),
                ));
                check_logits(
                    card,
                    expected,
                    &logits_in_order(&raw["results"], n),
                    &format!("{label} {path}"),
                );
                assert_eq!(raw["model"], model.as_str());
                assert!(raw["id"].as_str().is_some_and(|id| !id.is_empty()));
                let tokens: usize = expected.token_ids.iter().map(Vec::len).sum();
                assert_eq!(raw["usage"]["total_tokens"], tokens);
                // Scores after the model's activation, best first, no texts unless asked.
                let scored = ok(server().post(
                    path,
                    &json!({ "model": model, "query": expected.query,
                             "documents": expected.documents }),
                ));
                assert_eq!(indices(&scored["results"], "index"), want_ranking(expected));
                for result in scored["results"].as_array().unwrap() {
                    let i = result["index"].as_u64().unwrap() as usize;
                    let score = result["relevance_score"].as_f64().unwrap() as f32;
                    assert!(
                        logit_close(score, expected.scores[i]),
                        "{label} {path}: document {i}: {score} vs {}",
                        expected.scores[i]
                    );
                    assert!(result.get("document").is_none());
                }
            }
            // TEI's shape: a bare array of { index, score, text }.
            let tei = ok(server().post(
                "/rerank",
                &json!({ "model": model, "query": expected.query, "texts": expected.documents,
                         "raw_scores": true, "return_text": true }),
            ));
            assert_eq!(indices(&tei, "index"), want_ranking(expected));
            for result in tei.as_array().unwrap() {
                let i = result["index"].as_u64().unwrap() as usize;
                let score = result["score"].as_f64().unwrap() as f32;
                assert!(
                    logit_close(score, expected.raw_logits[i]),
                    "{label} TEI {i}"
                );
                assert_eq!(result["text"], expected.documents[i].as_str());
            }
        }
    }
}

#[test]
fn top_n_returned_documents_and_documents_as_objects() {
    let (_, expected) = expected("bge-reranker-tiny");
    let objects: Vec<Value> = expected
        .documents
        .iter()
        .map(|text| json!({ "text": text, "title": "ignored" }))
        .collect();
    for engine in ENGINES {
        let model = served("bge-reranker-tiny", engine);
        let body = ok(server().post(
            "/v2/rerank",
            &json!({ "model": model, "query": expected.query, "documents": objects,
                     "top_n": 2, "return_documents": true }),
        ));
        let results = body["results"].as_array().unwrap();
        assert_eq!(
            indices(&body["results"], "index"),
            want_ranking(expected)[..2]
        );
        for result in results {
            let i = result["index"].as_u64().unwrap() as usize;
            assert_eq!(result["document"]["text"], expected.documents[i].as_str());
        }
        // A top_n beyond the documents returns them all.
        let all = ok(server().post(
            "/v1/rerank",
            &json!({ "model": model, "query": expected.query, "documents": expected.documents,
                     "top_n": 100 }),
        ));
        assert_eq!(
            all["results"].as_array().unwrap().len(),
            expected.documents.len()
        );
    }
}

#[test]
fn max_tokens_per_doc_and_truncate_bound_each_pair() {
    let (_, expected) = expected("ms-marco-reranker-tiny");
    let long = "capital gains are taxed differently in france ".repeat(200);
    for engine in ENGINES {
        let model = served("ms-marco-reranker-tiny", engine);
        let refused = error(
            server().post(
                "/v1/rerank",
                &json!({ "model": model, "query": expected.query, "documents": [long],
                         "truncate": false }),
            ),
            400,
        );
        assert_eq!(refused["param"], "documents", "{refused}");
        assert!(
            refused["message"].as_str().unwrap().contains("512"),
            "{refused}"
        );
        let cut = ok(server().post(
            "/v1/rerank",
            &json!({ "model": model, "query": expected.query, "documents": [long] }),
        ));
        assert_eq!(
            cut["usage"]["total_tokens"], 512,
            "cut at the model's limit"
        );
        let short = ok(server().post(
            "/v1/rerank",
            &json!({ "model": model, "query": expected.query, "documents": [long],
                     "max_tokens_per_doc": 10 }),
        ));
        let query_tokens = expected.token_ids[0]
            .iter()
            .position(|&id| id == 3)
            .unwrap()
            + 1;
        assert_eq!(short["usage"]["total_tokens"], query_tokens + 10 + 1);
    }
}

#[test]
fn concurrent_requests_are_batched_and_answer_as_one_at_a_time() {
    let (_, expected) = expected("ms-marco-reranker-tiny");
    for engine in ENGINES {
        let model = served("ms-marco-reranker-tiny", engine);
        // Each request ranks a different rotation of the documents against its own query.
        let request = |k: usize| {
            let mut documents = expected.documents.clone();
            let n = documents.len();
            documents.rotate_left(k % n);
            json!({ "model": model, "query": format!("{} {k}", expected.query),
                    "documents": documents, "raw_scores": true })
        };
        let alone: Vec<Value> = (0..24)
            .map(|k| ok(server().post("/v1/rerank", &request(k))))
            .collect();
        let batches_before = server().metric("embedrt_batch_size_count", &[("model", &model)]);
        let together = concurrently(24, |k| ok(server().post("/v1/rerank", &request(k))));
        let batches =
            server().metric("embedrt_batch_size_count", &[("model", &model)]) - batches_before;
        assert!(
            (1.0..24.0).contains(&batches),
            "24 concurrent requests ran in {batches} batches: none were batched together"
        );
        for (k, (one, many)) in alone.iter().zip(&together).enumerate() {
            let n = expected.documents.len();
            let (one, many) = (
                logits_in_order(&one["results"], n),
                logits_in_order(&many["results"], n),
            );
            for (a, b) in one.iter().zip(&many) {
                assert!((a - b).abs() <= 1e-4, "{model} request {k}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn an_ab_split_between_the_engines_ranks_the_same() {
    let (card, expected) = expected("bge-reranker-tiny");
    let mut variants = HashSet::new();
    for user in 0..24 {
        let response = server().post(
            "/v1/rerank",
            &json!({ "model": "bge-ab", "query": expected.query, "user": format!("user-{user}"),
                     "documents": expected.documents, "raw_scores": true }),
        );
        let variant = header(&response, "x-embedrt-variant");
        assert_eq!(header(&response, "x-embedrt-backend"), variant);
        let body = ok(response);
        check_logits(
            card,
            expected,
            &logits_in_order(&body["results"], expected.documents.len()),
            &variant,
        );
        variants.insert(variant);
    }
    assert_eq!(variants.len(), 2, "both engines served: {variants:?}");
}

#[test]
fn a_rerankers_shadow_reports_how_far_its_logits_are_from_the_answer() {
    let (card, expected) = expected("ms-marco-reranker-tiny");
    for _ in 0..10 {
        let response = server().post(
            "/v1/rerank",
            &json!({ "model": "ms-marco-shadowed", "query": expected.query,
                     "documents": expected.documents, "raw_scores": true }),
        );
        assert_eq!(
            header(&response, "x-embedrt-variant"),
            "onnx",
            "a shadow never answers"
        );
        let body = ok(response);
        let logits = logits_in_order(&body["results"], expected.documents.len());
        check_logits(card, expected, &logits, "shadowed");
    }
    // The copies run in the background: wait for all 10 to be recorded.
    let labels = [("model", "ms-marco-shadowed"), ("variant", "check")];
    let mut recorded = 0.0;
    for _ in 0..100 {
        recorded = server().metric("embedrt_shadow_logit_diff_max_count", &labels);
        if recorded == 10.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(recorded, 10.0);
    let worst = server().metric("embedrt_shadow_logit_diff_max_sum", &labels);
    assert!(
        worst < 10.0 * 1e-3,
        "candle agrees with onnx: {worst} over 10 requests"
    );
}

#[test]
fn a_reload_swaps_a_rerankers_engine_and_its_answers_stay_the_reference() {
    let (card, expected) = expected("bge-reranker-tiny");
    let mut server = Server::builder()
        .server("admin_key", "secret")
        .model(Model::fixture_on("bge-reranker-tiny", "onnx"))
        .start();
    let model = served("bge-reranker-tiny", "onnx");
    let rerank = |server: &Server| {
        let response = server.post(
            "/v1/rerank",
            &json!({ "model": model, "query": expected.query,
                     "documents": expected.documents, "raw_scores": true }),
        );
        let backend = header(&response, "x-embedrt-backend");
        let logits = logits_in_order(&ok(response)["results"], expected.documents.len());
        check_logits(card, expected, &logits, &backend);
        backend
    };
    assert_eq!(rerank(&server), "onnx");
    server.rewrite_models(&[Model::named(&model)
        .path(&fixtures_dir().join("bge-reranker-tiny"))
        .on("candle")]);
    let (status, body) = server.reload(Some("secret"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(rerank(&server), "candle");
}

#[test]
fn models_say_their_kind_and_requests_of_the_other_kind_are_refused() {
    let models = ok(server().get("/v1/models"));
    let kind = |id: &str| {
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap()["kind"]
            .clone()
    };
    assert_eq!(kind("minilm"), "embedding");
    assert_eq!(kind("bge-ab"), "rerank");
    let embed = error(
        server().embed(json!({ "model": "bge-ab", "input": "hello" })),
        400,
    );
    assert_eq!(embed["param"], "model");
    assert!(
        embed["message"].as_str().unwrap().contains("/v1/rerank"),
        "{embed}"
    );
    let rerank = error(
        server().post(
            "/v1/rerank",
            &json!({ "model": "minilm", "query": "q", "documents": ["a"] }),
        ),
        400,
    );
    assert!(
        rerank["message"]
            .as_str()
            .unwrap()
            .contains("embedding model"),
        "{rerank}"
    );
    for (body, param) in [
        (json!({ "model": "bge-ab", "documents": ["a"] }), "query"),
        (json!({ "model": "bge-ab", "query": "q" }), "documents"),
        (
            json!({ "model": "bge-ab", "query": "q", "documents": [] }),
            "documents",
        ),
        (
            json!({ "model": "bge-ab", "query": "", "documents": ["a"] }),
            "query",
        ),
        (
            json!({ "model": "two-docs", "query": "q", "documents": ["a", "b", "c"] }),
            "documents",
        ),
        (
            json!({ "model": "bge-ab", "query": "q", "documents": ["a"], "top_n": 0 }),
            "top_n",
        ),
    ] {
        let err = error(server().post("/v2/rerank", &body), 400);
        assert_eq!(err["param"], param, "{body}: {err}");
    }
    let neither = error(server().post("/rerank", &json!({ "query": "q" })), 400);
    assert!(
        neither["message"].as_str().unwrap().contains("texts"),
        "{neither}"
    );
    let unknown = error(
        server().post(
            "/v1/rerank",
            &json!({ "model": "nope", "query": "q", "documents": ["a"] }),
        ),
        404,
    );
    assert_eq!(unknown["code"], "model_not_found");
}

/// The clients rerankers are called through, pinned (the venv is `.assets/rerank-venv`, apart
/// from the others: the Cohere SDK brings its own pydantic and httpx pins).
const RERANK_CLIENTS: [&str; 3] = [
    "cohere==7.3.1",
    "llama-index-postprocessor-tei-rerank==0.6.0",
    "httpx==0.28.1",
];

/// The Cohere SDK (v2 and v1), LlamaIndex's TEI reranker and Open WebUI's request, each
/// against a server that serves one reranker (TEI's client names no model), on both engines.
#[test]
fn real_clients_rank_as_the_reference() {
    let python = venv_python("rerank-venv", &RERANK_CLIENTS);
    for (name, engine) in [
        ("ms-marco-reranker-tiny", "onnx"),
        ("bge-reranker-tiny", "candle"),
    ] {
        let dir = fixtures_dir().join(name);
        let server = Server::builder()
            .model(Model::named("reranker").path(&dir).on(engine))
            .start();
        run_python_client(
            &python,
            "rerank_clients.py",
            &[
                server.url.as_ref(),
                "reranker".as_ref(),
                dir.join("expected.json").as_ref(),
            ],
        );
    }
}

#[test]
fn classifiers_embedrt_cannot_score_stop_startup_with_the_reason() {
    let two_labels = broken_copy(
        "ms-marco-reranker-tiny",
        |c| c["id2label"] = json!({ "0": "no", "1": "yes" }),
        &[],
    );
    let log = refusal(two_labels.path(), "onnx");
    assert!(log.contains("2 labels"), "{log}");
    let softmax = broken_copy(
        "bge-reranker-tiny",
        |c| {
            c["sentence_transformers"] =
                json!({ "activation_fn": "torch.nn.modules.activation.Softmax" })
        },
        &[],
    );
    let log = refusal(softmax.path(), "candle");
    assert!(log.contains("Softmax"), "{log}");
}

fn run<F: std::future::Future>(test: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(test)
}

#[test]
fn grpc_rerank_answers_as_http_does() {
    run(async {
        let mut client = EmbedderClient::connect(server().grpc_url.clone())
            .await
            .unwrap();
        for name in RERANKERS {
            let (card, expected) = expected(name);
            for engine in ENGINES {
                let model = served(name, engine);
                let request = pb::RerankRequest {
                    model: model.clone(),
                    query: expected.query.clone(),
                    documents: expected.documents.clone(),
                    raw_scores: true,
                    ..Default::default()
                };
                let answer = client.rerank(request.clone()).await.unwrap().into_inner();
                let mut logits = vec![f32::NAN; expected.documents.len()];
                for result in &answer.results {
                    logits[result.index as usize] = result.relevance_score;
                    assert_eq!(result.document, None);
                }
                check_logits(card, expected, &logits, &format!("gRPC {model}"));
                assert_eq!(answer.model, model);
                let top = pb::RerankRequest {
                    top_n: Some(2),
                    return_documents: true,
                    raw_scores: false,
                    ..request
                };
                let top = client.rerank(top).await.unwrap().into_inner();
                let order: Vec<usize> = top.results.iter().map(|r| r.index as usize).collect();
                assert_eq!(order, want_ranking(expected)[..2]);
                for result in &top.results {
                    let i = result.index as usize;
                    assert_eq!(
                        result.document.as_deref(),
                        Some(expected.documents[i].as_str())
                    );
                    assert!(logit_close(result.relevance_score, expected.scores[i]));
                }
            }
        }
        let models = client
            .list_models(pb::ListModelsRequest {})
            .await
            .unwrap()
            .into_inner()
            .models;
        let kind = |name: &str| models.iter().find(|m| m.name == name).unwrap().kind.clone();
        assert_eq!(
            (kind("minilm").as_str(), kind("bge-ab").as_str()),
            ("embedding", "rerank")
        );
        let wrong_kind = client
            .rerank(pb::RerankRequest {
                model: "minilm".into(),
                query: "q".into(),
                documents: vec!["a".into()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(wrong_kind.code(), tonic::Code::InvalidArgument);
        assert!(
            wrong_kind.message().contains("embedding model"),
            "{wrong_kind:?}"
        );
        let embed = client
            .embed(pb::EmbedRequest {
                model: "bge-ab".into(),
                texts: vec!["a".into()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(embed.code(), tonic::Code::InvalidArgument);
        assert!(embed.message().contains("reranker"), "{embed:?}");
        let empty = client
            .rerank(pb::RerankRequest {
                model: "bge-ab".into(),
                query: "q".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(empty.code(), tonic::Code::InvalidArgument);
    });
}
