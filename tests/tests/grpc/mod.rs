//! The gRPC API, driven by a tonic client against the running server, in four parts:
//! `parity` (every method gives what HTTP gives), `streams` (many messages and streams at once,
//! answered by id), `errors` (status codes, limits, a full queue) and `ops` (health,
//! reflection, A/B routing, keys, metrics, loading and draining on shutdown).

mod errors;
mod ops;
mod parity;
mod streams;

use std::sync::OnceLock;

use embedrt_proto::v1 as pb;
use embedrt_proto::v1::embedder_client::EmbedderClient;
use serde_json::Value;
use tonic::transport::Channel;

use crate::common::{Model, Server, Variant};

/// How far two runs of the same input may drift (batch composition changes float sums).
const DRIFT: f32 = 1e-5;

/// The largest gRPC message the shared server accepts.
const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// One server for most tests: all-MiniLM on ONNX Runtime (and copies with a low input limit and
/// reading OpenAI's token ids),
/// the tiny jina-embeddings-v3 on candle and on ONNX Runtime, and an A/B model.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        Server::builder()
            .server("grpc_max_request_bytes", MAX_REQUEST_BYTES as i64)
            .server("sticky_header", "x-user-id")
            .model(
                Model::minilm("minilm")
                    .on("onnx")
                    .set("aliases", vec!["mini"]),
            )
            .model(
                Model::minilm("small")
                    .on("onnx")
                    .set("max_inputs_per_request", 2),
            )
            .model(Model::minilm("counted").on("onnx"))
            .model(
                Model::minilm("openai-ids")
                    .on("onnx")
                    .set("token_ids", "cl100k_base"),
            )
            .model(
                Model::minilm("tight")
                    .on("echo")
                    .option("delay_ms", 300)
                    .batching("max_batch_requests", 1)
                    .batching("max_queued_inputs", 2),
            )
            .model(Model::jina("jina-candle").on("candle"))
            .model(
                Model::jina("jina-onnx")
                    .on("onnx")
                    .task_alias("jina-query", "retrieval.query"),
            )
            .model(
                Model::minilm("ab")
                    .variant(Variant::on("onnx").named("a"))
                    .variant(Variant::on("candle").named("b")),
            )
            .shared()
            .start()
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

/// An `Embedder` client of `server` that takes answers of any size.
async fn client(server: &Server) -> EmbedderClient<Channel> {
    EmbedderClient::connect(server.grpc_url.clone())
        .await
        .unwrap()
        .max_decoding_message_size(64 << 20)
}

/// An `Embed` request for `texts` of `model`.
fn texts(model: &str, texts: &[&str]) -> pb::EmbedRequest {
    pb::EmbedRequest {
        model: model.into(),
        texts: texts.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

/// `POST path` with `body` (`GET` without one) on the shared server; the status and the JSON
/// answer.
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
