//! What operators and generic clients rely on: health (following the models), reflection, A/B
//! routing sticky by user or metadata, API keys on both APIs, shared metrics, and a clean drain
//! on SIGTERM.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use embedrt_proto::v1 as pb;
use embedrt_proto::v1::embed_stream_response::Outcome;
use embedrt_proto::v1::embedder_client::EmbedderClient;
use serde_json::{json, Value};
use tokio_stream::StreamExt;
use tonic::{Code, Request};

use super::{channel, client, run, server, texts};
use crate::common::{Exit, Model, Server};

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
    let server = Server::builder()
        .server("api_keys", vec!["key-1", "key-2"])
        .model(Model::minilm("m").on("echo"))
        .start();
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
    // token 999 makes the engine panic, and `load_once` makes loading it again fail, which
    // leaves the model down.
    let mut server = Server::builder()
        .model(
            Model::minilm("slow")
                .on("echo")
                .option("delay_ms", 2500)
                .option("panic_on_token", 999)
                .option("load_once", true),
        )
        .model(Model::minilm("steady").on("echo"))
        .spawn();
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
    let server = Server::builder()
        .model(
            Model::minilm("slow")
                .on("echo")
                .option("delay_ms", 50)
                .batching("max_batch_requests", 2),
        )
        .start();
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
    let Exit { code, log } = server.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{log}");
}
