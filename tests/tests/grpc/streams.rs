//! `EmbedStream`: a stream of 1,000 messages and several streams at once, each id answered once
//! with what a unary call answers, bad messages answered with their error.

use std::collections::{HashMap, HashSet};

use embedrt_proto::v1 as pb;
use embedrt_proto::v1::embed_stream_response::Outcome;
use embedrt_proto::v1::embedder_client::EmbedderClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

use super::{client, run, server, texts, DRIFT};
use crate::common::{max_abs_diff, repo_root};

/// The sentences of the load generator's data set.
fn sentences() -> Vec<String> {
    std::fs::read_to_string(repo_root().join("benches/data/sentences.txt"))
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
