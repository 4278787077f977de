//! Every `embedrt.v1` method gives what the HTTP API gives for the same inputs: vectors (float
//! and binary), compressed calls, jina-v3's tasks and sizes, token ids and the model list.

use embedrt_proto::v1 as pb;
use embedrt_testkit::golden;
use serde_json::{json, Value};

use super::{client, http, run, server, texts, DRIFT};
use crate::common::{assert_each_pair, embeddings_of, jina_dir, max_abs_diff};

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
        // OpenAI's ids for "hello world" (cl100k_base), read back into the text.
        (
            pb::EmbedRequest {
                tokens: vec![pb::TokenIds {
                    ids: vec![15339, 1917],
                }],
                ..texts("openai-ids", &[])
            },
            json!({ "model": "openai-ids", "input": "hello world" }),
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
            assert_each_pair(&got.embeddings, &want_vectors, |_, embedding, want| {
                assert!(embedding.bits.is_empty());
                assert!(max_abs_diff(&embedding.values, want) <= DRIFT, "{context}");
            });
            for (kind, signed) in [
                (pb::EmbeddingType::Ubinary, false),
                (pb::EmbeddingType::Binary, true),
            ] {
                let binary = pb::EmbedRequest {
                    embedding_type: kind as i32,
                    ..message.clone()
                };
                let got = client.embed(binary).await.unwrap().into_inner();
                assert_each_pair(&got.embeddings, &want_vectors, |_, embedding, want| {
                    assert!(embedding.values.is_empty());
                    assert_sign_bits(&embedding.bits, want, signed);
                });
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
            assert_each_pair(
                &response.into_inner().embeddings,
                &want.embeddings,
                |_, got, want| assert!(max_abs_diff(&got.values, &want.values) <= DRIFT),
            );
        }
    });
}

#[test]
fn jina_tasks_and_sizes_match_the_official_outputs() {
    let server = server();
    let expected = golden::jina(&jina_dir());
    run(async {
        let mut client = client(server).await;
        let mut checked = 0;
        // The official ONNX export runs every adapter, not the base weights (`task` null).
        for case in &expected.cases {
            let Some(task) = &case.task else {
                continue;
            };
            let request = pb::EmbedRequest {
                model: "jina-onnx".into(),
                texts: expected.texts.clone(),
                task: Some(task.clone()),
                dimensions: Some(case.dimensions as u32),
                normalize: case.normalized,
                ..Default::default()
            };
            let got = client.embed(request).await.unwrap().into_inner();
            assert_each_pair(&got.embeddings, &case.embeddings, |_, embedding, want| {
                assert!(
                    max_abs_diff(&embedding.values, want) <= 1e-4,
                    "{task} {}",
                    case.dimensions
                );
            });
            checked += 1;
        }
        assert_eq!(checked, 20, "5 adapters x 4 cases");
    });
}

#[test]
fn tokenize_gives_http_ids_and_counts_what_embed_counts() {
    let server = server();
    let golden = golden::minilm();
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
        assert_each_pair(
            &got.tokens,
            want["data"].as_array().unwrap(),
            |_, tokens, want| {
                assert_eq!(json!(tokens.ids), want["tokens"]);
                assert_eq!(json!(tokens.count), want["count"]);
            },
        );
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
        assert_each_pair(&got.models, want, |_, model, want| {
            assert_eq!(model.name, want["id"]);
            assert_eq!(json!(model.aliases), want["aliases"]);
            assert_eq!(json!(model.alias_tasks), want["alias_tasks"]);
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
        });
        let jina = got.models.iter().find(|m| m.name == "jina-onnx").unwrap();
        assert_eq!(jina.tasks.len(), 5);
        assert!(jina.matryoshka_dimensions.contains(&32));
        assert_eq!(jina.alias_tasks["jina-query"], "retrieval.query");
    });
}
