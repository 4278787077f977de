//! Bad input gets the right status codes (and the server keeps serving), oversize messages end
//! what they must, and a full queue is `RESOURCE_EXHAUSTED` without losing what it accepted.

use embedrt_proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::{Code, Status};

use super::{client, run, server, texts, MAX_REQUEST_BYTES};

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
