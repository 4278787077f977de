//! The gRPC API, driven by a tonic client against the running server: every method gives what
//! HTTP gives for the same inputs, streams of 1,000 messages and several streams at once are
//! answered by id, and bad input gets the right status codes. Health, reflection, A/B routing,
//! API keys, metrics and draining on shutdown are covered too.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::Duration;

use common::{
    embeddings_of, jina_dir, jina_model, max_abs_diff, minilm_expected, minilm_model, Server,
};
use embedrt_proto::v1 as pb;
use embedrt_proto::v1::embed_stream_response::Outcome;
use embedrt_proto::v1::embedder_client::EmbedderClient;
use serde_json::{json, Value};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// How far two runs of the same input may drift (batch composition changes float sums).
const DRIFT: f32 = 1e-5;

/// The largest gRPC message the shared server accepts.
const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// One server for most tests: all-MiniLM on ONNX Runtime (and a copy with a low input limit),
/// the tiny jina-embeddings-v3 on candle and on ONNX Runtime, and an A/B model.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let ab = format!(
            "[[models]]\nname = \"ab\"\npath = {:?}\n\
             [[models.variants]]\nname = \"a\"\nbackend = \"onnx\"\n\
             [[models.variants]]\nname = \"b\"\nbackend = \"candle\"\n",
            common::minilm_dir().display().to_string()
        );
        let models = minilm_model("minilm", "onnx", "aliases = [\"mini\"]")
            + &minilm_model("small", "onnx", "max_inputs_per_request = 2")
            + &minilm_model("counted", "onnx", "")
            + &minilm_model(
                "tight",
                "echo",
                "options = { delay_ms = 300 }\nbatching = { max_batch_requests = 1, max_queued_inputs = 2 }",
            )
            + &jina_model("jina-candle", "candle")
            + &jina_model("jina-onnx", "onnx")
            + &ab;
        Server::start(
            &format!("grpc_max_request_bytes = {MAX_REQUEST_BYTES}\nsticky_header = \"x-user-id\""),
            &models,
        )
    })
}

/// Runs `test` on a fresh multi-threaded runtime.
fn run<F: std::future::Future>(test: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(test)
}

/// A connection to `server`'s gRPC API.
async fn channel(server: &Server) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(server.grpc_url.clone())
        .unwrap()
        .connect()
        .await
}

async fn client(server: &Server) -> EmbedderClient<Channel> {
    EmbedderClient::connect(server.grpc_url.clone())
        .await
        .unwrap()
        .max_decoding_message_size(64 << 20)
}

fn texts(model: &str, texts: &[&str]) -> pb::EmbedRequest {
    pb::EmbedRequest {
        model: model.into(),
        texts: texts.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

/// `POST path` with `body` on the shared server; the status and the JSON answer.
async fn http(path: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", server().url);
    let request = match body {
        Some(body) => client.post(url).json(&body),
        None => client.get(url),
    };
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Asserts that `bits` are the sign bits of `vector`, except where a value is so close to zero
/// that another run may have given it the other sign.
fn assert_sign_bits(bits: &[u8], vector: &[f32], signed: bool) {
    assert_eq!(bits.len(), vector.len().div_ceil(8));
    for (j, &v) in vector.iter().enumerate() {
        let byte = if signed {
            bits[j / 8].wrapping_add(128)
        } else {
            bits[j / 8]
        };
        let bit = byte >> (7 - j % 8) & 1;
        if v.abs() > DRIFT {
            assert_eq!(bit == 1, v > 0.0, "dimension {j}: {v}");
        }
    }
}

/// Each gRPC request beside the HTTP body that asks the same.
fn same_requests() -> Vec<(pb::EmbedRequest, Value)> {
    let sentences = [
        "The quick brown fox jumps over the lazy dog.",
        "",
        "How do I reset my password?",
    ];
    let jina_texts = [
        "Tối ưu hoá dịch vụ embedding.",
        "A second chunk follows the first.",
    ];
    vec![
        (
            texts("minilm", &sentences),
            json!({ "model": "minilm", "input": sentences }),
        ),
        (
            pb::EmbedRequest {
                dimensions: Some(16),
                normalize: Some(false),
                ..texts("mini", &sentences)
            },
            json!({ "model": "mini", "input": sentences, "dimensions": 16, "normalized": false }),
        ),
        (
            pb::EmbedRequest {
                tokens: vec![
                    pb::TokenIds {
                        ids: vec![101, 7592, 2088, 102],
                    },
                    pb::TokenIds {
                        ids: vec![101, 102],
                    },
                ],
                ..texts("minilm", &[])
            },
            json!({ "model": "minilm", "input": [[101, 7592, 2088, 102], [101, 102]] }),
        ),
        (
            pb::EmbedRequest {
                task: Some("retrieval.query".into()),
                dimensions: Some(32),
                ..texts("jina-candle", &jina_texts)
            },
            json!({ "model": "jina-candle", "input": jina_texts, "task": "retrieval.query", "dimensions": 32 }),
        ),
        (
            pb::EmbedRequest {
                task: Some("classification".into()),
                ..texts("jina-onnx", &jina_texts)
            },
            json!({ "model": "jina-onnx", "input": jina_texts, "task": "classification" }),
        ),
        (
            pb::EmbedRequest {
                task: Some("retrieval.passage".into()),
                late_chunking: true,
                ..texts("jina-candle", &jina_texts)
            },
            json!({ "model": "jina-candle", "input": jina_texts, "task": "retrieval.passage", "late_chunking": true }),
        ),
    ]
}

#[test]
fn embed_gives_what_http_gives_for_every_field() {
    let server = server();
    run(async {
        let mut client = client(server).await;
        for (message, body) in same_requests() {
            let context = format!("{body}");
            let (status, want) = http("/v1/embeddings", Some(body)).await;
            assert_eq!(status, 200, "{context}: {want}");
            let want_vectors = embeddings_of(&want);
            let got = client.embed(message.clone()).await.unwrap().into_inner();
            assert_eq!(got.model, want["model"], "{context}");
            let usage = got.usage.unwrap();
            assert_eq!(
                usage.prompt_tokens, want["usage"]["prompt_tokens"],
                "{context}"
            );
            assert_eq!(got.embeddings.len(), want_vectors.len(), "{context}");
            for (embedding, want) in got.embeddings.iter().zip(&want_vectors) {
                assert!(embedding.bits.is_empty());
                assert!(max_abs_diff(&embedding.values, want) <= DRIFT, "{context}");
            }
            for (kind, signed) in [
                (pb::EmbeddingType::Ubinary, false),
                (pb::EmbeddingType::Binary, true),
            ] {
                let binary = pb::EmbedRequest {
                    embedding_type: kind as i32,
                    ..message.clone()
                };
                let got = client.embed(binary).await.unwrap().into_inner();
                for (embedding, want) in got.embeddings.iter().zip(&want_vectors) {
                    assert!(embedding.values.is_empty());
                    assert_sign_bits(&embedding.bits, want, signed);
                }
            }
        }
    });
}

#[test]
fn compressed_calls_and_answers_give_the_same_vectors() {
    use tonic::codec::CompressionEncoding;

    let server = server();
    run(async {
        let mut plain = client(server).await;
        let request = texts("minilm", &["compressed both ways", "and back"]);
        let want = plain.embed(request.clone()).await.unwrap().into_inner();
        for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
            let mut compressed = client(server)
                .await
                .send_compressed(encoding)
                .accept_compressed(encoding);
            let response = compressed.embed(request.clone()).await.unwrap();
            let header = response.metadata().get("grpc-encoding").cloned();
            assert_eq!(
                header.as_ref().and_then(|v| v.to_str().ok()),
                Some(encoding.to_string().as_str()),
                "the answer is compressed"
            );
            for (got, want) in response
                .into_inner()
                .embeddings
                .iter()
                .zip(&want.embeddings)
            {
                assert!(max_abs_diff(&got.values, &want.values) <= DRIFT);
            }
        }
    });
}

#[test]
fn jina_tasks_and_sizes_match_the_official_outputs() {
    let server = server();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(jina_dir().join("expected.json")).unwrap())
            .unwrap();
    let texts: Vec<String> = serde_json::from_value(expected["texts"].clone()).unwrap();
    run(async {
        let mut client = client(server).await;
        for case in expected["cases"].as_array().unwrap() {
            let Some(task) = case["task"].as_str() else {
                continue;
            };
            let request = pb::EmbedRequest {
                model: "jina-onnx".into(),
                texts: texts.clone(),
                task: Some(task.into()),
                dimensions: case["dimensions"].as_u64().map(|d| d as u32),
                normalize: case.get("normalized").and_then(Value::as_bool),
                ..Default::default()
            };
            let got = client.embed(request).await.unwrap().into_inner();
            for (embedding, want) in got
                .embeddings
                .iter()
                .zip(case["embeddings"].as_array().unwrap())
            {
                let want: Vec<f32> = serde_json::from_value(want.clone()).unwrap();
                assert!(
                    max_abs_diff(&embedding.values, &want) <= 1e-4,
                    "{task} {}",
                    case["dimensions"]
                );
            }
        }
    });
}

#[test]
fn tokenize_gives_http_ids_and_counts_what_embed_counts() {
    let server = server();
    let golden = minilm_expected();
    run(async {
        let mut client = client(server).await;
        let minilm = client
            .tokenize(pb::TokenizeRequest {
                model: "minilm".into(),
                texts: golden.texts.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let ids: Vec<Vec<u32>> = minilm.tokens.iter().map(|t| t.ids.clone()).collect();
        assert_eq!(ids, golden.token_ids, "sentence-transformers' tokenization");
        assert!(minilm
            .tokens
            .iter()
            .all(|t| t.count as usize == t.ids.len()));

        let jina_texts = ["Tối ưu hoá dịch vụ embedding.", "short"];
        let request = pb::TokenizeRequest {
            model: "jina-candle".into(),
            texts: jina_texts.iter().map(|t| t.to_string()).collect(),
            task: Some("retrieval.query".into()),
            ..Default::default()
        };
        let got = client.tokenize(request).await.unwrap().into_inner();
        let (status, want) = http(
            "/v1/tokenize",
            Some(json!({ "model": "jina-candle", "input": jina_texts, "task": "retrieval.query" })),
        )
        .await;
        assert_eq!(status, 200, "{want}");
        for (tokens, want) in got.tokens.iter().zip(want["data"].as_array().unwrap()) {
            assert_eq!(json!(tokens.ids), want["tokens"]);
            assert_eq!(json!(tokens.count), want["count"]);
        }
        assert_eq!(got.total_tokens, want["usage"]["total_tokens"]);
        let embedded = client
            .embed(pb::EmbedRequest {
                task: Some("retrieval.query".into()),
                ..texts("jina-candle", &jina_texts)
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            got.total_tokens,
            embedded.usage.unwrap().prompt_tokens,
            "the instruction is counted"
        );
    });
}

#[test]
fn list_models_describes_what_http_describes() {
    let server = server();
    run(async {
        let got = client(server)
            .await
            .list_models(pb::ListModelsRequest {})
            .await
            .unwrap()
            .into_inner();
        let (status, want) = http("/v1/models", None).await;
        assert_eq!(status, 200);
        let want = want["data"].as_array().unwrap();
        assert_eq!(got.models.len(), want.len());
        for (model, want) in got.models.iter().zip(want) {
            assert_eq!(model.name, want["id"]);
            assert_eq!(json!(model.aliases), want["aliases"]);
            assert_eq!(model.backend, want["backend"]);
            assert_eq!(json!(model.tasks), want["tasks"]);
            assert_eq!(json!(model.dimensions), want["dimensions"]);
            assert_eq!(
                json!(model.matryoshka_dimensions),
                want["matryoshka_dimensions"]
            );
            assert_eq!(json!(model.max_tokens), want["max_tokens"]);
            assert_eq!(json!(model.max_inputs), want["max_inputs"]);
            let variants: Vec<Value> = model
                .variants
                .iter()
                .map(|v| {
                    let dtype = (!v.dtype.is_empty()).then_some(&v.dtype);
                    json!({ "name": v.name, "backend": v.backend, "device": v.device, "dtype": dtype, "weight": v.weight, "shadow": v.shadow, "replicas": v.replicas })
                })
                .collect();
            assert_eq!(json!(variants), want["variants"]);
        }
        let jina = got.models.iter().find(|m| m.name == "jina-onnx").unwrap();
        assert_eq!(jina.tasks.len(), 5);
        assert!(jina.matryoshka_dimensions.contains(&32));
    });
}

/// The sentences of the load generator's data set.
fn sentences() -> Vec<String> {
    std::fs::read_to_string(common::repo_root().join("benches/data/sentences.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// What one stream message asks, and what its answer must be.
#[derive(Clone)]
enum Expect {
    /// This vector (from a unary call).
    Vector(Vec<f32>),
    /// An error with this code.
    Error(Code),
}

/// Unary answers for `requests`, one call at a time.
async fn unary_vectors(
    client: &mut EmbedderClient<Channel>,
    requests: &[pb::EmbedRequest],
) -> Vec<Vec<f32>> {
    let mut vectors = Vec::new();
    for request in requests {
        let response = client.embed(request.clone()).await.unwrap().into_inner();
        vectors.push(response.embeddings[0].values.clone());
    }
    vectors
}

/// Sends `messages` on one stream (all at once, without waiting for answers) and checks that
/// each id is answered exactly once as `expected` says, and that the stream ends cleanly.
async fn check_stream(
    client: &mut EmbedderClient<Channel>,
    messages: Vec<(pb::EmbedStreamRequest, Expect)>,
) {
    let expected: HashMap<u64, Expect> = messages.iter().map(|(m, e)| (m.id, e.clone())).collect();
    let outbound = tokio_stream::iter(messages.into_iter().map(|(m, _)| m));
    let mut answers = client.embed_stream(outbound).await.unwrap().into_inner();
    let mut seen = HashSet::new();
    while let Some(answer) = answers.next().await {
        let answer = answer.expect("the stream ends cleanly");
        assert!(seen.insert(answer.id), "id {} answered twice", answer.id);
        match (&expected[&answer.id], answer.outcome.unwrap()) {
            (Expect::Vector(want), Outcome::Response(response)) => {
                assert!(
                    max_abs_diff(&response.embeddings[0].values, want) <= DRIFT,
                    "id {}",
                    answer.id
                );
            }
            (Expect::Error(code), Outcome::Error(error)) => {
                assert_eq!(
                    error.code, *code as i32,
                    "id {}: {}",
                    answer.id, error.message
                );
                assert!(!error.message.is_empty());
            }
            (_, outcome) => panic!("id {}: unexpected {outcome:?}", answer.id),
        }
    }
    assert_eq!(seen.len(), expected.len(), "every message is answered");
}

#[test]
fn a_stream_of_1000_messages_answers_each_id_once_and_survives_bad_ones() {
    let server = server();
    let sentences = sentences();
    run(async {
        let mut client = client(server).await;
        let requests: Vec<pb::EmbedRequest> = sentences
            .iter()
            .take(100)
            .map(|s| texts("minilm", &[s]))
            .collect();
        let vectors = unary_vectors(&mut client, &requests).await;
        let messages = (0..1000u64)
            .map(|id| {
                let i = id as usize % requests.len();
                let (request, expect) = match id % 100 {
                    7 => (
                        Some(texts("no-such-model", &["x"])),
                        Expect::Error(Code::NotFound),
                    ),
                    42 => (None, Expect::Error(Code::InvalidArgument)),
                    77 => (
                        Some(texts("minilm", &[])),
                        Expect::Error(Code::InvalidArgument),
                    ),
                    _ => (
                        Some(requests[i].clone()),
                        Expect::Vector(vectors[i].clone()),
                    ),
                };
                (pb::EmbedStreamRequest { id, request }, expect)
            })
            .collect();
        check_stream(&mut client, messages).await;
    });
}

#[test]
fn concurrent_streams_each_get_their_own_answers() {
    let server = server();
    let sentences = sentences();
    run(async {
        let mut client = client(server).await;
        let tasks = [
            "retrieval.query",
            "retrieval.passage",
            "separation",
            "classification",
            "text-matching",
        ];
        let requests: Vec<pb::EmbedRequest> = sentences
            .iter()
            .skip(100)
            .take(60)
            .enumerate()
            .map(|(i, s)| match i % 3 {
                0 => texts("minilm", &[s]),
                1 => pb::EmbedRequest {
                    task: Some(tasks[i % 5].into()),
                    dimensions: Some(16),
                    ..texts("jina-candle", &[s])
                },
                _ => pb::EmbedRequest {
                    task: Some(tasks[i % 5].into()),
                    ..texts("jina-onnx", &[s])
                },
            })
            .collect();
        let vectors = unary_vectors(&mut client, &requests).await;
        let streams = (0..6).map(|stream| {
            let mut client = client.clone();
            let messages = (0..150u64)
                .map(|id| {
                    let i = (id as usize * 7 + stream) % requests.len();
                    let message = pb::EmbedStreamRequest {
                        id,
                        request: Some(requests[i].clone()),
                    };
                    (message, Expect::Vector(vectors[i].clone()))
                })
                .collect();
            tokio::spawn(async move { check_stream(&mut client, messages).await })
        });
        for stream in streams.collect::<Vec<_>>() {
            stream.await.unwrap();
        }
    });
}

async fn code_of(result: Result<tonic::Response<pb::EmbedResponse>, Status>) -> (Code, String) {
    let status = result.expect_err("the call must fail");
    (status.code(), status.message().to_string())
}

#[test]
fn bad_input_gets_status_codes_and_the_server_keeps_serving() {
    let server = server();
    run(async {
        let mut client = client(server).await;
        let cases = [
            (
                texts("no-such-model", &["x"]),
                Code::NotFound,
                "no-such-model",
            ),
            (texts("minilm", &[]), Code::InvalidArgument, "empty"),
            (
                pb::EmbedRequest {
                    task: Some("retrieval.bogus".into()),
                    ..texts("jina-onnx", &["x"])
                },
                Code::InvalidArgument,
                "unknown task",
            ),
            (
                pb::EmbedRequest {
                    task: Some("retrieval.query".into()),
                    ..texts("minilm", &["x"])
                },
                Code::InvalidArgument,
                "no task adapters",
            ),
            (
                pb::EmbedRequest {
                    dimensions: Some(100),
                    ..texts("jina-candle", &["x"])
                },
                Code::InvalidArgument,
                "`dimensions` must be one of",
            ),
            (
                pb::EmbedRequest {
                    dimensions: Some(0),
                    ..texts("minilm", &["x"])
                },
                Code::InvalidArgument,
                "between 1",
            ),
            (
                texts("small", &["a", "b", "c"]),
                Code::InvalidArgument,
                "too many inputs",
            ),
            (
                pb::EmbedRequest {
                    tokens: vec![pb::TokenIds { ids: vec![1] }],
                    ..texts("minilm", &["x"])
                },
                Code::InvalidArgument,
                "not both",
            ),
            (
                pb::EmbedRequest {
                    tokens: vec![pb::TokenIds {
                        ids: vec![10_000_000],
                    }],
                    ..texts("minilm", &[])
                },
                Code::InvalidArgument,
                "vocabulary",
            ),
            (
                pb::EmbedRequest {
                    embedding_type: 42,
                    ..texts("minilm", &["x"])
                },
                Code::InvalidArgument,
                "EmbeddingType",
            ),
            (
                texts("", &["x"]),
                Code::InvalidArgument,
                "`model` is required",
            ),
        ];
        for (request, want_code, want_message) in cases {
            let (code, message) = code_of(client.embed(request.clone()).await).await;
            assert_eq!(code, want_code, "{request:?}: {message}");
            assert!(message.contains(want_message), "{request:?}: {message}");
        }

        let oversize = texts(
            "minilm",
            &["word ".repeat(MAX_REQUEST_BYTES / 5 + 10).as_str()],
        );
        let (code, message) = code_of(client.embed(oversize.clone()).await).await;
        assert_eq!(code, Code::OutOfRange, "{message}");
        assert!(
            message.contains(&MAX_REQUEST_BYTES.to_string()),
            "{message}"
        );

        // On a stream, the messages before an oversize one are answered, then the stream fails.
        let good = |id| pb::EmbedStreamRequest {
            id,
            request: Some(texts("minilm", &["fine"])),
        };
        let outbound = tokio_stream::iter([
            good(1),
            good(2),
            pb::EmbedStreamRequest {
                id: 3,
                request: Some(oversize),
            },
        ]);
        let mut answers = client.embed_stream(outbound).await.unwrap().into_inner();
        let mut ids = Vec::new();
        let ending = loop {
            match answers.next().await {
                Some(Ok(answer)) => ids.push(answer.id),
                Some(Err(status)) => break Some(status.code()),
                None => break None,
            }
        };
        ids.sort();
        assert_eq!((ids, ending), (vec![1, 2], Some(Code::OutOfRange)));

        let fine = client
            .embed(texts("minilm", &["still serving"]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(fine.embeddings[0].values.len(), 384);
    });
}

/// The services that server reflection `$version` (`v1` or `v1alpha`: the same messages in
/// different modules) lists on `$channel`.
macro_rules! listed_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        let request = tonic_reflection::pb::$version::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let answer = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner()
            .next()
            .await;
        let Some(MessageResponse::ListServicesResponse(list)) =
            answer.unwrap().unwrap().message_response
        else {
            panic!("{} reflection did not list services", stringify!($version));
        };
        list.service
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<String>>()
    }};
}

#[test]
fn a_full_queue_is_resource_exhausted_and_loses_nothing_accepted() {
    let server = server();
    run(async {
        let client = client(server).await;
        let calls = (0..8).map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                client
                    .embed(texts("tight", &[&format!("request {i}")]))
                    .await
            })
        });
        let mut codes = Vec::new();
        for call in calls.collect::<Vec<_>>() {
            match call.await.unwrap() {
                Ok(answer) => {
                    assert_eq!(answer.into_inner().embeddings[0].values.len(), 384);
                    codes.push(Code::Ok);
                }
                Err(status) => codes.push(status.code()),
            }
        }
        assert!(
            codes.contains(&Code::ResourceExhausted),
            "8 concurrent calls must overflow a queue of 2: {codes:?}"
        );
        assert!(
            codes
                .iter()
                .all(|c| matches!(c, Code::Ok | Code::ResourceExhausted)),
            "{codes:?}"
        );
        assert!(codes.contains(&Code::Ok), "{codes:?}");
    });
}

#[test]
fn health_and_reflection_work_for_generic_clients() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let server = server();
    run(async {
        let mut health = HealthClient::new(channel(server).await.unwrap());
        for service in ["", "embedrt.v1.Embedder", "minilm", "jina-onnx"] {
            let status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status;
            assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
        }
        let unknown = health
            .check(HealthCheckRequest {
                service: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);

        let wanted = ["embedrt.v1.Embedder", "grpc.health.v1.Health"];
        let v1 = listed_services!(v1, channel(server).await.unwrap());
        let v1alpha = listed_services!(v1alpha, channel(server).await.unwrap());
        for names in [v1, v1alpha] {
            assert!(
                wanted.iter().all(|w| names.iter().any(|n| n == w)),
                "{names:?}"
            );
        }
    });
}

#[test]
fn variants_are_split_and_sticky_per_user_or_metadata() {
    let server = server();
    run(async {
        let mut client = client(server).await;
        let mut by_user = HashMap::new();
        for user in 0..24 {
            let request = pb::EmbedRequest {
                user: format!("user-{user}"),
                ..texts("ab", &["hello"])
            };
            let first = client.embed(request.clone()).await.unwrap().into_inner();
            let again = client.embed(request).await.unwrap().into_inner();
            assert_eq!(first.variant, again.variant, "sticky per user");
            assert_eq!(
                first.backend,
                if first.variant == "a" {
                    "onnx"
                } else {
                    "candle"
                }
            );
            by_user.insert(user, first.variant);
        }
        let variants: HashSet<&String> = by_user.values().collect();
        assert_eq!(variants.len(), 2, "both variants serve: {by_user:?}");

        // Without `user`, the sticky metadata key decides, the same way.
        for user in 0..6 {
            let mut request = Request::new(texts("ab", &["hello"]));
            request
                .metadata_mut()
                .insert("x-user-id", format!("user-{user}").parse().unwrap());
            let answer = client.embed(request).await.unwrap().into_inner();
            assert_eq!(answer.variant, by_user[&user]);
        }
    });
}

/// The value of `embedrt_requests_total` for `model` with status `ok` (0 when absent).
async fn ok_requests(model: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", server().url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "embedrt_requests_total")
        .filter(|s| s.labels.get("model") == Some(model) && s.labels.get("status") == Some("ok"))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn grpc_requests_are_counted_in_the_same_metrics() {
    let server = server();
    run(async {
        let mut client = client(server).await;
        let before = ok_requests("counted").await;
        for _ in 0..3 {
            client.embed(texts("counted", &["one"])).await.unwrap();
        }
        let messages = (0..5).map(|id| pb::EmbedStreamRequest {
            id,
            request: Some(texts("counted", &["two"])),
        });
        let answers: Vec<_> = client
            .embed_stream(tokio_stream::iter(messages))
            .await
            .unwrap()
            .into_inner()
            .collect()
            .await;
        assert_eq!(answers.len(), 5);
        assert_eq!(ok_requests("counted").await - before, 8.0);
    });
}

#[test]
fn api_keys_guard_both_apis_but_not_health() {
    let server = Server::start(
        "api_keys = [\"key-1\", \"key-2\"]",
        &minilm_model("m", "echo", ""),
    );
    run(async {
        let mut client = EmbedderClient::connect(server.grpc_url.clone())
            .await
            .unwrap();
        let without = client.embed(texts("m", &["x"])).await.unwrap_err();
        assert_eq!(without.code(), Code::Unauthenticated);
        let listed = client
            .list_models(pb::ListModelsRequest {})
            .await
            .unwrap_err();
        assert_eq!(listed.code(), Code::Unauthenticated);
        let stream = client
            .embed_stream(tokio_stream::iter(Vec::<pb::EmbedStreamRequest>::new()))
            .await;
        assert_eq!(stream.unwrap_err().code(), Code::Unauthenticated);
        for (key, ok) in [("key-2", true), ("key-3", false)] {
            let mut request = Request::new(texts("m", &["x"]));
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {key}").parse().unwrap());
            assert_eq!(client.embed(request).await.is_ok(), ok, "{key}");
        }
        let mut health =
            tonic_health::pb::health_client::HealthClient::new(channel(&server).await.unwrap());
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();

        let http = reqwest::Client::new();
        let url = format!("{}/v1/embeddings", server.url);
        let body = json!({ "model": "m", "input": "x" });
        let refused = http.post(&url).json(&body).send().await.unwrap();
        assert_eq!(refused.status(), 401);
        let error: Value = refused.json().await.unwrap();
        assert_eq!(error["error"]["code"], "invalid_api_key", "{error}");
        let accepted = http
            .post(&url)
            .bearer_auth("key-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(accepted.status(), 200);
        let models = http
            .get(format!("{}/v1/models", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(models.status(), 401);
        for open in ["/health", "/ready", "/metrics"] {
            let response = http
                .get(format!("{}{open}", server.url))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{open}");
        }
    });
}

#[test]
fn loading_is_unavailable_and_health_follows_the_models() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    // The echo engine's warm-up takes `delay_ms`, so the server is up but loading for a while;
    // token 999 makes the engine panic, which marks the model unhealthy.
    let models = minilm_model(
        "slow",
        "echo",
        "options = { delay_ms = 2500, panic_on_token = 999 }",
    ) + &minilm_model("steady", "echo", "");
    let mut server = Server::spawn("", &models);
    run(async {
        let (mut client, health) = loop {
            match (
                EmbedderClient::connect(server.grpc_url.clone()).await,
                channel(&server).await.map(HealthClient::new),
            ) {
                (Ok(client), Ok(health)) => break (client, health),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let loading = client.embed(texts("slow", &["x"])).await.unwrap_err();
        assert_eq!(loading.code(), Code::Unavailable, "{loading:?}");
        let status = |service: &str| {
            let mut health = health.clone();
            let request = HealthCheckRequest {
                service: service.into(),
            };
            async move { health.check(request).await.unwrap().into_inner().status }
        };
        assert_eq!(status("").await, ServingStatus::NotServing as i32);
        let mut watch = health
            .clone()
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut seen = Vec::new();
        while let Some(update) = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .unwrap()
        {
            seen.push(update.unwrap().status);
            if seen.last() == Some(&(ServingStatus::Serving as i32)) {
                break;
            }
        }
        assert_eq!(
            seen.first(),
            Some(&(ServingStatus::NotServing as i32)),
            "{seen:?}"
        );
        assert_eq!(status("slow").await, ServingStatus::Serving as i32);

        let panicked = pb::EmbedRequest {
            tokens: vec![pb::TokenIds {
                ids: vec![101, 999, 102],
            }],
            ..texts("slow", &[])
        };
        assert!(client.embed(panicked).await.is_err());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(status("slow").await, ServingStatus::NotServing as i32);
        assert_eq!(status("steady").await, ServingStatus::Serving as i32);
        assert_eq!(status("").await, ServingStatus::NotServing as i32);
    });
    assert!(server.is_running());
}

#[test]
fn sigterm_answers_what_each_stream_received_then_exits_cleanly() {
    let models = minilm_model(
        "slow",
        "echo",
        "options = { delay_ms = 50 }\nbatching = { max_batch_requests = 2 }",
    );
    let server = Server::start("", &models);
    let answered = run(async {
        let mut client = EmbedderClient::connect(server.grpc_url.clone())
            .await
            .unwrap();
        let (sender, outbound) = tokio::sync::mpsc::channel(64);
        let mut answers = client
            .embed_stream(tokio_stream::wrappers::ReceiverStream::new(outbound))
            .await
            .unwrap()
            .into_inner();
        for id in 0..20 {
            sender
                .send(pb::EmbedStreamRequest {
                    id,
                    request: Some(texts("slow", &["x"])),
                })
                .await
                .unwrap();
        }
        let first = answers.next().await.unwrap().unwrap();
        server.signal(libc::SIGTERM);
        // The client keeps its side open: the server must still end the stream by itself.
        let mut answered = vec![first];
        while let Some(answer) = tokio::time::timeout(Duration::from_secs(30), answers.next())
            .await
            .unwrap()
        {
            answered.push(answer.expect("the stream ends cleanly"));
        }
        drop(sender);
        answered
    });
    assert!(answered
        .iter()
        .all(|a| matches!(a.outcome, Some(Outcome::Response(_)))));
    let (code, log) = server.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{log}");
}
