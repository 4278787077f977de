//! The gRPC front end: `embedrt.v1.Embedder` (tonic), the standard `grpc.health.v1` service and
//! server reflection (v1 and v1alpha), over the same models, validation, routing and keys as
//! the HTTP API.

pub mod convert;
mod deadline;
mod health;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use embedrt_proto::v1 as pb;
use embedrt_proto::v1::embedder_server::{Embedder, EmbedderServer};
use embedrt_runtime::config::MessageLimits;
use embedrt_runtime::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};
use tower_http::catch_panic::CatchPanicLayer;

use crate::admission::Ticket;
use crate::shutdown::until_stopped;
use crate::state::AppState;

/// How often an idle gRPC connection is pinged (HTTP/2 and TCP keep-alive).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most calls (streams) open at once on one gRPC connection.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// Serves gRPC on `listener`, with the gRPC message sizes of `limits`, until `shutdown` turns
/// true; then it stops accepting, finishes the calls in flight (open streams answer what they
/// received, then end) and returns.
///
/// # Errors
///
/// When the reflection service cannot be built or the server fails.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: MessageLimits,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    health::track(Arc::clone(&state), reporter, shutdown.clone()).await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let embedder = EmbedderServer::new(EmbedderService {
        state,
        shutdown: shutdown.clone(),
    })
    .max_decoding_message_size(limits.grpc_request_bytes)
    .max_encoding_message_size(limits.grpc_response_bytes)
    // Clients that compress (gzip is common in grpc-go and grpc-java setups) are understood, and
    // get compressed answers when they ask for them.
    .accept_compressed(CompressionEncoding::Gzip)
    .accept_compressed(CompressionEncoding::Zstd)
    .send_compressed(CompressionEncoding::Gzip)
    .send_compressed(CompressionEncoding::Zstd);
    // Without TCP_NODELAY, a small answer waits for the client's delayed ACK (40 ms on Linux).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        // Dead peers are found by HTTP/2 pings (and TCP keep-alive) instead of holding their
        // connection forever, and one connection carries at most this many calls at once.
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tcp_keepalive(Some(KEEPALIVE_INTERVAL))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        // A bug in a handler answers INTERNAL instead of dropping the connection.
        .layer(CatchPanicLayer::custom(|_| {
            Status::internal("the request handler failed").into_http::<tonic::body::Body>()
        }))
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(embedder)
        .serve_with_incoming_shutdown(incoming, until_stopped(shutdown))
        .await?;
    Ok(())
}

/// Answers one `EmbedRequest` (a unary call, or one stream message) with `registry`; an empty
/// `user` takes the sticky key of the call's `headers`.
async fn embed(
    state: &AppState,
    registry: &Registry,
    message: pb::EmbedRequest,
    headers: &HeaderMap,
) -> Result<pb::EmbedResponse, Status> {
    let (mut request, format) = convert::embed_request(message)?;
    request.user = state.user(request.user.take(), headers);
    let response = registry.embed(request).await.map_err(convert::status)?;
    Ok(convert::embed_response(response, format))
}

/// `embedrt.v1.Embedder`.
struct EmbedderService {
    state: Arc<AppState>,
    /// Turns true when the server shuts down; open streams then stop reading.
    shutdown: watch::Receiver<bool>,
}

impl EmbedderService {
    /// Checks the API key (`authorization: Bearer <key>` metadata), takes a place among the
    /// requests in flight, and returns the models and the place (held until dropped).
    fn admit<T>(&self, request: &Request<T>) -> Result<(Arc<Registry>, Ticket), Status> {
        if !self.state.accepts_api_key(request.metadata().as_ref()) {
            return Err(Status::unauthenticated(
                "this server needs `authorization: Bearer <api key>` metadata with a valid key",
            ));
        }
        let ticket = self
            .state
            .admission
            .admit(0)
            .map_err(|refusal| Status::resource_exhausted(refusal.to_string()))?;
        let registry = self.state.registry().map_err(convert::status)?;
        Ok((registry, ticket))
    }
}

#[tonic::async_trait]
impl Embedder for EmbedderService {
    async fn embed(
        &self,
        request: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        let (registry, _ticket) = self.admit(&request)?;
        let (metadata, _, message) = request.into_parts();
        let headers = metadata.as_ref();
        let work = embed(&self.state, &registry, message, headers);
        let response = deadline::within(&self.state, headers, work).await?;
        Ok(Response::new(response))
    }

    type EmbedStreamStream = stream::Answers;

    async fn embed_stream(
        &self,
        request: Request<Streaming<pb::EmbedStreamRequest>>,
    ) -> Result<Response<Self::EmbedStreamStream>, Status> {
        let (_, ticket) = self.admit(&request)?;
        let (metadata, _, inbound) = request.into_parts();
        Ok(Response::new(stream::answer(
            Arc::clone(&self.state),
            inbound,
            metadata.into_headers(),
            self.shutdown.clone(),
            ticket,
        )))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let (registry, _ticket) = self.admit(&request)?;
        let models = registry
            .models()
            .map(|m| convert::model(m.info()))
            .collect();
        Ok(Response::new(pb::ListModelsResponse { models }))
    }

    async fn tokenize(
        &self,
        request: Request<pb::TokenizeRequest>,
    ) -> Result<Response<pb::TokenizeResponse>, Status> {
        let (registry, _ticket) = self.admit(&request)?;
        let (metadata, _, message) = request.into_parts();
        let work = async {
            let request = convert::tokenize_request(message);
            registry.tokenize(request).await.map_err(convert::status)
        };
        let response = deadline::within(&self.state, metadata.as_ref(), work).await?;
        Ok(Response::new(convert::tokenize_response(response)))
    }

    async fn rerank(
        &self,
        request: Request<pb::RerankRequest>,
    ) -> Result<Response<pb::RerankResponse>, Status> {
        let (registry, _ticket) = self.admit(&request)?;
        let (metadata, _, message) = request.into_parts();
        let mut request = convert::rerank_request(message);
        request.user = self.state.user(request.user.take(), metadata.as_ref());
        let work = async { registry.rerank(request).await.map_err(convert::status) };
        let response = deadline::within(&self.state, metadata.as_ref(), work).await?;
        Ok(Response::new(convert::rerank_response(response)))
    }
}
